"""Prompt templates under /api/templates: list, create, import, read, edit, delete, export (the TOML file)
and run (a one-off generation, JSON or server-sent events). A template's key is ``name.language``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Literal

from fastapi import APIRouter, Body, Depends, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, Field, StringConstraints

from ...errors import StudioError
from ...services.language_fit import language_fit
from ...services.template_library import KEY_PATTERN, source_of, template_from_fields
from ...services.templates import IDENTIFIER, KINDS, MAX_TEMPLATE_CHARS, NAME, Template
from ...studio import Studio
from ..deps import get_studio
from ..openapi import ErrorBody, errors
from ..waiting import run_to_end
from .editing import STRICT, OptionsIn, UsageOut, sse, streamed

router = APIRouter(prefix="/api/templates", tags=["templates"])

Kind = Literal["article", "edit", "prompt", "code", "general"]
assert set(KINDS) == set(Kind.__args__)  # one list of kinds: services/templates.py's
VariableName = Annotated[str, StringConstraints(pattern=IDENTIFIER.pattern)]
_KEY = Path(
    description="NAME.LANGUAGE, e.g. blog-post.zh (GET /api/templates lists them).",
    pattern=KEY_PATTERN,
    max_length=67,
)
_INVALID = {
    400: "The template is not valid: the message names the problem (a variable used but not declared or "
    "declared but unused, unbalanced braces, a malformed file with its line, a bad name)."
}
_NOT_FOUND = {404: "No template has that key; the message lists the keys there are."}
_TOO_LARGE = {413: "The request body is over the server's limit (max_body_mb)."}
_BAD_QUERY = {400: "kind or language is not one of the allowed values; the message lists them."}


class VariableOut(BaseModel):
    name: str
    description: str
    default: str | None
    required: bool


class TemplateOut(BaseModel):
    key: str = Field(description="NAME.LANGUAGE: the template's identity.")
    name: str
    language: Literal["en", "zh"]
    kind: Kind
    title: str
    description: str
    system: str | None
    prompt: str
    variables: list[VariableOut]
    source: Literal["shipped", "user", "override"] = Field(
        description="shipped with the studio; the user's own; or the user's in place of a shipped one."
    )


class VariableSpec(BaseModel):
    model_config = STRICT

    description: str = Field("", max_length=1000)
    default: str | None = Field(None, max_length=10_000, description="Unset: the variable must be given.")


class TemplateEdit(BaseModel):
    """A template's content, as fields; the studio writes it as a TOML file and checks it."""

    model_config = STRICT

    kind: Kind = "general"
    title: str = Field("", max_length=200)
    description: str = Field("", max_length=2000)
    system: str | None = Field(None, max_length=20_000, description="System prompt; may use the variables.")
    prompt: str = Field(
        min_length=1,
        max_length=MAX_TEMPLATE_CHARS // 2,
        description="The prompt with {variable} placeholders; {{ and }} are literal braces.",
    )
    variables: dict[VariableName, VariableSpec] = Field(
        default_factory=dict,
        max_length=50,
        description="Each placeholder's name (letters, digits, _): its description and optional default.",
        json_schema_extra={"propertyNames": {"pattern": IDENTIFIER.pattern}},
    )


class TemplateCreate(TemplateEdit):
    name: str = Field(pattern=NAME.pattern, description="Letters, digits, '-' and '_' (1-64).")
    language: Literal["en", "zh"]
    replace: bool = Field(False, description="Replace a user template of the same key (else a 409).")


class TemplateImport(BaseModel):
    model_config = STRICT

    toml: str = Field(min_length=1, max_length=MAX_TEMPLATE_CHARS, description="The template file's text.")
    replace: bool = Field(False, description="Replace a user template of the same key (else a 409).")


class Deleted(BaseModel):
    deleted: str
    restored: bool = Field(description="True when the shipped template of that key is back in its place.")


class RunBody(BaseModel):
    model_config = STRICT

    variables: dict[str, Annotated[str, StringConstraints(max_length=100_000)]] = Field(
        default_factory=dict,
        max_length=50,
        description="A value for each variable (those with defaults may be left out).",
    )
    model: str | None = Field(None, min_length=1, max_length=200, description="Text model; unset: the default.")
    options: OptionsIn | None = None
    stream: bool = Field(False, description="Stream server-sent events instead of one JSON answer.")


class RunAnswer(BaseModel):
    key: str
    model: str
    text: str
    finish_reason: str
    usage: UsageOut
    notes: list[str] = Field(description="E.g. a model that does not write the template's language, and what to pull.")


def template_out(template: Template) -> dict:
    return {
        "key": template.key,
        "name": template.name,
        "language": template.language,
        "kind": template.kind,
        "title": template.title,
        "description": template.description,
        "system": template.system,
        "prompt": template.prompt,
        "variables": [
            {"name": v.name, "description": v.description, "default": v.default, "required": v.required}
            for v in template.variables
        ],
        "source": source_of(template),
    }


def _toml(name: str, language: str, body: TemplateEdit) -> str:
    return template_from_fields(
        name=name,
        language=language,
        kind=body.kind,
        prompt=body.prompt,
        title=body.title,
        description=body.description,
        system=body.system,
        variables={k: v.model_dump() for k, v in body.variables.items()},
    )


@router.get("", responses=errors(ErrorBody, _BAD_QUERY))
def list_templates(
    kind: Kind | None = Query(None, description="Only templates of this kind."),
    language: Literal["en", "zh"] | None = Query(None, description="Only templates in this language."),
    studio: Studio = Depends(get_studio),
) -> list[TemplateOut]:
    """Every template, shipped and the user's (a user's in place of the shipped one it overrides)."""
    return [template_out(t) for t in studio.templates.all(kind=kind, language=language)]


_EXISTS = {409: "A user template with that key exists and replace was not asked."}


@router.post("", status_code=201, responses=errors(ErrorBody, _INVALID | _EXISTS | _TOO_LARGE))
def create_template(
    body: Annotated[
        TemplateCreate | TemplateImport,
        Body(description="A template as fields, or a template file to import ({toml, replace})."),
    ],
    studio: Studio = Depends(get_studio),
) -> TemplateOut:
    """Create a user template from fields, or import a template file (as GET /api/templates/{key}/export
    gives it). Checked before it is kept; one with a shipped template's key overrides it."""
    if isinstance(body, TemplateImport):
        saved = studio.templates.save(body.toml, replace=body.replace, where="the imported file")
    else:
        where = f"template '{body.name}.{body.language}'"
        saved = studio.templates.save(_toml(body.name, body.language, body), replace=body.replace, where=where)
    return template_out(saved)


@router.get("/{key}", responses=errors(ErrorBody, _NOT_FOUND | {400: "The key is not NAME.LANGUAGE."}))
def get_template(key: str = _KEY, studio: Studio = Depends(get_studio)) -> TemplateOut:
    return template_out(studio.templates.get(key))


@router.put("/{key}", responses=errors(ErrorBody, _INVALID | _NOT_FOUND | _TOO_LARGE))
def edit_template(body: TemplateEdit, key: str = _KEY, studio: Studio = Depends(get_studio)) -> TemplateOut:
    """Change a template. Changing a shipped one keeps the user's copy in its place (deleting the copy
    restores it)."""
    name, language = key.rsplit(".", 1)
    return template_out(
        studio.templates.save(_toml(name, language, body), key=key, replace=True, where=f"template '{key}'")
    )


@router.delete(
    "/{key}",
    responses=errors(
        ErrorBody, _NOT_FOUND | {400: "The key is not NAME.LANGUAGE.", 409: "A shipped template cannot be deleted."}
    ),
)
def delete_template(key: str = _KEY, studio: Studio = Depends(get_studio)) -> Deleted:
    """Delete a user template; deleting a user's override of a shipped template restores the shipped one."""
    done = studio.templates.delete(key)
    return {"deleted": done.key, "restored": done.restored}


@router.get(
    "/{key}/export",
    response_class=Response,
    responses={200: {"content": {"application/toml": {"schema": {"type": "string"}}}, "description": "The TOML file."}}
    | errors(ErrorBody, _NOT_FOUND | {400: "The key is not NAME.LANGUAGE."}),
)
def export_template(key: str = _KEY, studio: Studio = Depends(get_studio)) -> Response:
    """The template as its TOML file, for download (POST /api/templates with {toml} reads it back)."""
    filename, text = studio.templates.export(key)
    return Response(
        text, media_type="application/toml", headers={"Content-Disposition": f'attachment; filename="{filename}"'}
    )


_RUN_ERRORS = {
    400: "A variable the template does not have, or a required one left out (the message names it); a prompt "
    "longer than the model's context (with the numbers); an option out of range.",
    404: "No template with that key, or no text model of that name; the message lists what there is.",
    **_TOO_LARGE,
}


@router.post(
    "/{key}/run",
    response_model=None,
    responses=streamed(RunAnswer, "{type: result, ...RunAnswer}") | errors(ErrorBody, _RUN_ERRORS),
)
async def run_template(
    body: RunBody, request: Request, key: str = _KEY, studio: Studio = Depends(get_studio)
) -> JSONResponse | StreamingResponse:
    """Fill the template with ``variables`` and generate (one-off: kept out of chat history)."""
    template = studio.templates.get(key)
    prepared = await run_in_threadpool(
        studio.templates.prepare_run,
        key,
        body.variables,
        model=body.model,
        options=body.options.to_options() if body.options is not None else None,
        source="api",
    )
    fit = language_fit(studio.chat.resolve_model(prepared.model), template.language)
    notes = [fit] if fit else []
    run = studio.chat.start(prepared)

    def answer() -> dict:
        result = run.result
        usage = result.usage
        return {
            "key": template.key,
            "model": prepared.model,
            "text": result.text,
            "finish_reason": result.finish_reason,
            "usage": {
                "prompt_tokens": usage.prompt_tokens,
                "completion_tokens": usage.completion_tokens,
                "total_tokens": usage.total_tokens,
            },
            "notes": notes,
        }

    if not body.stream:
        await run_to_end(request, run)
        return JSONResponse(answer())

    async def events() -> AsyncIterator[str]:
        try:
            async for chunk in run:
                if chunk.prompt_progress is not None:  # a long prompt: how much of it is read
                    progress = chunk.prompt_progress
                    yield sse({"type": "progress", "read": progress.read, "total": progress.total})
                elif chunk.text:
                    yield sse({"type": "delta", "text": chunk.text})
        except StudioError as exc:
            yield sse(exc.to_openai())
            return
        yield sse({"type": "result", **answer()})
        yield sse("[DONE]")

    return StreamingResponse(events(), media_type="text/event-stream")
