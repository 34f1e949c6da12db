"""The editing operations under /api/write: ``GET /api/write/ops`` lists them, ``POST /api/write/edit``
runs one on a text or its selection — a JSON answer, or (``stream``) server-sent events: ``data:
{"type": "delta", "text"}`` as the model writes, then ``data: {"type": "result", ...}`` with the whole
new text and the diff, then ``data: [DONE]``. Nothing is stored: the answer is a proposal the client
accepts or rejects."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from ...contracts import MAX_STOP, TextOptions, json_int, limits_of
from ...errors import StudioError
from ...services.editing import EditRequest, EditResult
from ...studio import Studio
from ..deps import get_studio
from ..openapi import ErrorBody, errors
from ..waiting import run_to_end

router = APIRouter(prefix="/api/write", tags=["editing"])


def sse(payload: dict | str) -> str:
    """One server-sent event: ``data: <JSON>`` (or a bare string such as ``[DONE]``)."""
    data = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
    return f"data: {data}\n\n"


def streamed(model: type[BaseModel], what: str) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route that answers JSON, or SSE when the request asks to stream."""
    event = {
        "type": "object",
        "properties": {
            "data": {
                "type": "string",
                "contentMediaType": "application/json",
                "description": f"JSON: a delta {{type: delta, text}}; last {what}; an error object if it fails; "
                "then [DONE].",
            },
            "event": {"type": "string"},
            "id": {"type": "string"},
            "retry": {"type": "integer"},
        },
        "required": ["data"],
    }
    return {200: {"model": model, "content": {"text/event-stream": {"schema": event}}}}


# Strict, as the schema declares: a value of another JSON type is refused, not converted.
STRICT = ConfigDict(extra="forbid", strict=True)


def _option(name: str, limits: bool = True) -> Any:
    """TextOptions' field ``name``: its description, and its limits unless its type carries them."""
    extra = limits_of(TextOptions, name) if limits else {}
    return Field(None, description=TextOptions.model_fields[name].description, **extra)


class OptionsIn(BaseModel):
    """Sampling options (TextOptions), with their limits; unset: the model's defaults."""

    model_config = STRICT

    temperature: float | None = _option("temperature")
    top_p: float | None = _option("top_p")
    top_k: json_int(**limits_of(TextOptions, "top_k")) | None = _option("top_k", limits=False)  # type: ignore[valid-type]
    min_p: float | None = _option("min_p")
    repeat_penalty: float | None = _option("repeat_penalty")
    presence_penalty: float | None = _option("presence_penalty")
    frequency_penalty: float | None = _option("frequency_penalty")
    seed: json_int(**limits_of(TextOptions, "seed")) | None = _option("seed", limits=False)  # type: ignore[valid-type]
    max_tokens: json_int(**limits_of(TextOptions, "max_tokens")) | None = _option("max_tokens", limits=False)  # type: ignore[valid-type]
    stop: list[Annotated[str, StringConstraints(min_length=1)]] = Field(
        default_factory=list, max_length=MAX_STOP, description=f"Stop at any of these strings (at most {MAX_STOP})."
    )

    def to_options(self) -> TextOptions:
        return TextOptions(**self.model_dump(exclude_none=True))


class UsageOut(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChangeOut(BaseModel):
    op: Literal["equal", "insert", "delete"]
    text: str


class EditAnswer(BaseModel):
    """The proposal: nothing is stored; the client accepts it (puts ``text`` in place) or rejects it."""

    op: str
    language: Literal["en", "zh"] = Field(description="The template language used.")
    model: str
    start: int = Field(description="The selection that was edited, as offsets into the original text.")
    end: int
    text: str = Field(
        description="The whole new text: the selection replaced (continue: the answer inserted after it). "
        "The original for titles, keywords and a stopped run."
    )
    output: str = Field(description="The model's answer as it came.")
    items: list[str] | None = Field(description="titles and keywords: the list; otherwise null.")
    changed: bool = Field(description="Whether text differs from the original.")
    diff: str = Field(description="Unified diff by line, original to text; empty when unchanged.")
    changes: list[ChangeOut] = Field(
        description="The same for display: equal, deleted and inserted runs (by character for Chinese, by word "
        "for letters); the equal and deleted runs make the original, the equal and inserted ones the new text."
    )
    finish_reason: str = Field(description="stop, length (cut short) or cancelled.")
    usage: UsageOut
    notes: list[str] = Field(
        description="What the user should know: a model that does not write the text's "
        "language (and the catalog model to pull), an answer cut short, an empty answer."
    )


class OperationOut(BaseModel):
    name: str
    result: Literal["text", "list"]
    placement: Literal["replace", "insert", "none"]
    takes: list[str] = Field(description="The request fields only this operation uses (tone, target).")
    title_en: str
    description_en: str
    title_zh: str
    description_zh: str


class EditBody(EditRequest):
    model_config = STRICT

    options: OptionsIn | None = Field(None, description="Sampling options (temperature, seed, max_tokens...).")
    stream: bool = Field(False, description="Stream server-sent events instead of one JSON answer.")


def answer_of(result: EditResult) -> dict:
    """The JSON of an edit's result (EditAnswer)."""
    usage = result.usage
    return {
        "op": result.op,
        "language": result.language,
        "model": result.model,
        "start": result.start,
        "end": result.end,
        "text": result.text,
        "output": result.output,
        "items": result.items,
        "changed": result.changed,
        "diff": result.diff,
        "changes": [{"op": c.op, "text": c.text} for c in result.changes],
        "finish_reason": result.finish_reason,
        "usage": {
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens,
        },
        "notes": result.notes,
    }


@router.get("/ops")
def list_operations(studio: Studio = Depends(get_studio)) -> list[OperationOut]:
    """The editing operations, with their titles in English and Chinese."""
    return studio.editing.operations()


_EDIT_ERRORS = {
    400: "A field is out of range or does not fit the text: the selection outside the text (the message gives "
    "its length), an empty selection, tone or target for an operation that takes none, a selection too long "
    "for the model's context (with the numbers).",
    404: "No text model has that name; the message lists the available ones.",
    413: "The request body is over the server's limit.",
}


@router.post(
    "/edit",
    response_model=None,
    responses=streamed(EditAnswer, "{type: result, ...EditAnswer}") | errors(ErrorBody, _EDIT_ERRORS),
)
async def edit(
    body: EditBody, request: Request, studio: Studio = Depends(get_studio)
) -> JSONResponse | StreamingResponse:
    """Run an editing operation on ``text`` (or ``start``:``end`` of it): the whole new text and its diff."""
    fields = body.model_dump(exclude={"stream", "options"})
    options = body.options.to_options() if body.options is not None else None
    prepared = await run_in_threadpool(studio.editing.prepare, EditRequest(**fields, options=options), source="api")
    run = studio.editing.start(prepared)
    if not body.stream:
        await run_to_end(request, run)
        return JSONResponse(answer_of(run.result))

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
        yield sse({"type": "result", **answer_of(run.result)})
        yield sse("[DONE]")

    return StreamingResponse(events(), media_type="text/event-stream")
