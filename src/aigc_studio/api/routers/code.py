"""Code sessions under /api/code: generate and refine code (streamed as SSE, or one JSON answer), run a
version or a piece of code in the sandbox, list and read sessions, diff two versions, save an edit,
delete a session. The routes parse, call ``studio.code`` and render; the logic is the service's."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from ...contracts import RUN_LANGUAGES, RunLimits, json_int
from ...errors import InvalidRequest
from ...services.a1111_schema import NOT_BLANK
from ...services.code import (
    LANGUAGE_NAME,
    MAX_CALL,
    MAX_CODE,
    MAX_PROMPT,
    MAX_REPAIR,
    NO_NUL,
    CodeEvent,
    CodeTurn,
    RunSpec,
)
from ...studio import Studio
from ..deps import get_studio
from ..openapi import ErrorBody, errors
from ..waiting import events_of
from .editing import STRICT, OptionsIn

router = APIRouter(prefix="/api/code", tags=["code"])

SESSION_ID = "^conv-[0-9a-f]+$"
# Ids are SQLite integers; past 2**53 a JSON client cannot hold them exactly anyway.
MAX_ID = 2**53
RUN_NAMES = tuple(name for names in RUN_LANGUAGES.values() for name in names)
# Code and call text: not blank, no NUL (a program's source is a C string to the interpreter).
SOURCE_PATTERN = "^[^\\x00]*\\S[^\\x00]*$"


def _no_nul(value: str | None) -> str | None:
    if value is not None and "\x00" in value:
        raise ValueError("must not contain NUL characters (a program's arguments and source cannot hold them)")
    return value


def _not_blank(what: str) -> Any:
    def check(value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError(f"must not be empty: give {what}")
        return _no_nul(value)

    return AfterValidator(check)


# The schema says it with a pattern; the check says it in words a user can act on.
NoNul = Annotated[str, Field(json_schema_extra={"pattern": NO_NUL}), AfterValidator(_no_nul)]

_BAD = {
    400: "A field is missing, of the wrong type or out of range (a limit above the server's maximum, a "
    "language the sandbox does not run, empty code, repair without a run, ...); the message names it and "
    "what is allowed."
}
_MISSING = {404: "No such code session, version or model (the message names it)."}
_TOO_LARGE = {413: "The request body is over the server's limit (max_body_mb)."}
_SANDBOX = {
    503: "The sandbox cannot start here (bubblewrap missing, user namespaces off, no interpreter for the "
    "language); the message names what is missing. Nothing was run or stored."
}


# -- request bodies ---------------------------------------------------------------------------------


class LimitsIn(RunLimits):
    """What one run may use; each at most the server's maximum (settings run_max_*)."""

    model_config = STRICT


class RunSpecIn(BaseModel):
    """How to run: the call printed after the program, arguments, stdin, the expected output, limits."""

    model_config = STRICT

    call: Annotated[str, Field(json_schema_extra={"pattern": NO_NUL}), AfterValidator(_no_nul)] | None = Field(
        None, max_length=MAX_CALL, description=RunSpec.model_fields["call"].description
    )
    args: list[Annotated[NoNul, Field(max_length=4096)]] = Field(
        default_factory=list, max_length=64, description="Command-line arguments (no NUL characters)."
    )
    stdin: str = Field("", max_length=1_000_000, description="What the program reads on standard input.")
    expect: str | None = Field(None, max_length=1_000_000, description=RunSpec.model_fields["expect"].description)
    limits: LimitsIn = Field(default_factory=LimitsIn)

    def to_spec(self) -> RunSpec:
        return RunSpec(**self.model_dump())


def _generate_schema(schema: dict, _cls: type) -> None:
    # repair judges the code by a run: a nonzero repair comes with run.
    schema["anyOf"] = [
        {"properties": {"repair": {"const": 0}}},
        {"required": ["run"], "properties": {"run": {"type": "object"}}},
    ]


class GenerateIn(BaseModel):
    """A turn of a code session: a new program (no session_id) or a change to the session's code."""

    model_config = ConfigDict(**STRICT, json_schema_extra=_generate_schema)

    prompt: Annotated[str, _not_blank("what the program should do")] = Field(
        min_length=1,
        max_length=MAX_PROMPT,
        json_schema_extra={"pattern": NOT_BLANK},
        description='What to write ("write a JavaScript bubble sort") or change ("make it more concise").',
    )
    session_id: str | None = Field(
        None, pattern=SESSION_ID, description="Continue this session (conv-…); unset: a new session."
    )
    language: str | None = Field(
        None,
        pattern=LANGUAGE_NAME,
        description="The language to write in (python, py, javascript, js, or any other name, which is kept "
        "but not run); unset: the request's words, else the session's, else the answer's fences.",
    )
    model: str | None = Field(None, min_length=1, max_length=200, description="Text model; unset: the default.")
    options: OptionsIn | None = Field(None, description="Sampling options (temperature, seed, max_tokens...).")
    run: RunSpecIn | None = Field(
        None, description="Run the newest version of block 1 after the answer, as this says; unset: no run."
    )
    repair: json_int(ge=0, le=MAX_REPAIR) = Field(  # type: ignore[valid-type]
        0,
        description=f"With run: when the run fails (nonzero exit, a limit hit, output not as expected), send "
        f"the error back to the model up to this many times (0-{MAX_REPAIR}).",
    )
    stream: bool = Field(True, description="Stream server-sent events; false: one JSON answer at the end.")


def _run_body_schema(schema: dict, _cls: type) -> None:
    # Either a stored version, or a language with its code: never both, never neither.
    schema["anyOf"] = [
        {
            "required": ["version_id"],
            "properties": {
                "version_id": {"type": "integer"},
                "language": {"type": "null"},
                "code": {"type": "null"},
                "title": {"type": "null"},
            },
        },
        {
            "required": ["language", "code"],
            "properties": {"language": {"type": "string"}, "code": {"type": "string"}, "version_id": {"type": "null"}},
        },
    ]


class RunIn(RunSpecIn):
    """Run a stored version (``version_id``), or code given here (``language`` and ``code``: stored as a
    session of its own, titled ``title``)."""

    model_config = ConfigDict(**STRICT, json_schema_extra=_run_body_schema)

    version_id: json_int(ge=1, le=MAX_ID) | None = Field(  # type: ignore[valid-type]
        None, description="The stored version to run, as a session lists it."
    )
    language: Literal[RUN_NAMES] | None = Field(  # type: ignore[valid-type]
        None, description="With code: python (py, python3) or javascript (js, node, nodejs)."
    )
    code: Annotated[str, _not_blank("the program to run")] | None = Field(
        None,
        max_length=MAX_CODE,
        json_schema_extra={"pattern": SOURCE_PATTERN},
        description="With language: the program to run.",
    )
    title: str | None = Field(
        None, max_length=200, description="With code: the new session's title (e.g. a file name)."
    )


class EditIn(BaseModel):
    """The user's own code, as the next version of a block."""

    model_config = STRICT

    code: Annotated[str, _not_blank("the new version's code")] = Field(
        max_length=MAX_CODE, json_schema_extra={"pattern": SOURCE_PATTERN}, description="The new version's code."
    )
    language: str | None = Field(
        None, pattern=LANGUAGE_NAME, description="Its language; unset: the block's, else what the code reads as."
    )
    block: json_int(ge=1, le=1000) = Field(  # type: ignore[valid-type]
        1, description="The block (1: the session's program); one past the last starts a new block."
    )


# -- answers ----------------------------------------------------------------------------------------


class VersionOut(BaseModel):
    id: int
    session_id: str
    block: int = Field(description="Which code block of the session, from 1.")
    version: int = Field(description="The version of that block, from 1.")
    language: str = Field(description="python, javascript, another name as written (kept, not run), or ''.")
    code: str
    message_id: int | None = Field(description="The answer it came from; null for an edit or a file.")
    note: str = Field(description='What made it: "generated", "refined: …", "repair 2/3", "edited", "file: …".')
    created: float


class RunResultOut(BaseModel):
    language: Literal["python", "javascript"]
    runtime: str = Field(description='The interpreter, e.g. "Node.js v20.20.2".')
    stdout: str
    stderr: str
    exit_code: int | None = Field(description="null when it was killed by a signal.")
    signal: str | None
    wall_seconds: float
    cpu_seconds: float | None = Field(description="null when it was killed.")
    limit: Literal["wall", "cpu", "memory", "processes", "output", "files"] | None = Field(
        description="The limit that stopped it, if one did."
    )
    truncated: bool
    ok: bool = Field(description="exit code 0 and no limit hit.")
    limits: dict[str, float]


class RunSpecOut(BaseModel):
    call: str | None
    args: list[str]
    stdin: str
    expect: str | None
    limits: dict[str, float]


class RunRecordOut(BaseModel):
    id: int
    version_id: int
    session_id: str
    spec: RunSpecOut
    result: RunResultOut
    matched: bool | None = Field(description="Whether stdout matched expect; null when none was given.")
    created: float


class SessionSummary(BaseModel):
    id: str
    title: str
    model: str = Field(description="The model of the last answer ('' for a file run on its own).")
    language: str | None = Field(description="The language of block 1's newest version.")
    versions: int
    runs: int
    created: float
    updated: float


class MessageOut(BaseModel):
    role: str
    content: str
    created: float
    response_id: str | None


class SessionOut(BaseModel):
    id: str
    title: str
    model: str
    language: str | None
    created: float
    updated: float
    messages: list[MessageOut] = Field(description="The conversation, as chat history keeps it.")
    versions: list[VersionOut] = Field(description="Every version, oldest first.")
    runs: list[RunRecordOut] = Field(description="Every run, oldest first.")


class TurnOut(BaseModel):
    session_id: str | None = Field(description="The session (null when the turn stopped before any answer).")
    text: str = Field(description="The answers' text, the repair attempts' included, as streamed.")
    finish_reason: str | None = Field(description="How the last answer ended: stop, length, cancelled.")
    versions: list[VersionOut] = Field(description="The versions this turn made.")
    runs: list[RunRecordOut] = Field(description="The runs this turn made, the repair attempts' included.")
    attempts: int = Field(description="How many repair attempts ran.")
    notes: list[str] = Field(description="What the user should know (a model that does not write the language).")
    error: str | None = Field(
        description="Why the turn ended early, if it did (no code to run, the model failed); what was "
        "generated before is stored all the same."
    )


class DiffOut(BaseModel):
    a: int
    b: int
    diff: str = Field(description='Unified diff from a to b, labelled "v1", "v2"; empty when the same.')


class Deleted(BaseModel):
    deleted: str = Field(description="The id of the session deleted, with its versions and runs.")


# -- streaming a turn -------------------------------------------------------------------------------


def _sse(payload: dict | str) -> str:
    data = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
    return f"data: {data}\n\n"


def _turn_answer(events: list[CodeEvent], turn: CodeTurn) -> dict:
    end = events[-1] if events else None
    return {
        "session_id": turn.session_id,
        "text": "".join(e.text for e in events if e.kind == "delta"),
        "finish_reason": end.finish_reason if end is not None and end.kind == "done" else None,
        "versions": [e.version.to_dict() for e in events if e.kind == "version"],
        "runs": [e.run.to_dict() for e in events if e.kind == "run"],
        "attempts": sum(1 for e in events if e.kind == "attempt"),
        "notes": turn.notes,
        "error": end.message if end is not None and end.kind == "error" else None,
    }


def _event_stream() -> dict:
    event = {
        "type": "object",
        "properties": {
            "data": {
                "type": "string",
                "contentMediaType": "application/json",
                "description": "One CodeEvent as JSON: {kind: reading, read, prompt_tokens} while a long prompt is "
                "read, before the answer; {kind: delta, text} as the model writes; {kind: version, "
                "version}; {kind: run, run}; {kind: attempt, attempt, of} as a repair attempt starts; {kind: done, "
                "session_id, finish_reason, notes} or {kind: error, message, session_id} last; then [DONE].",
            }
        },
        "required": ["data"],
    }
    return {
        200: {
            "model": TurnOut,
            "content": {"text/event-stream": {"schema": event}},
            "description": "SSE events (stream true, the default), or the turn's JSON (stream false).",
        }
    }


# -- routes -----------------------------------------------------------------------------------------


@router.post(
    "/generate",
    response_model=None,
    responses=_event_stream() | errors(ErrorBody, {**_BAD, **_MISSING, **_TOO_LARGE, **_SANDBOX}),
)
async def generate(body: GenerateIn, request: Request, studio: Studio = Depends(get_studio)) -> Response:
    """A turn of a code session: the answer streams, its code blocks become versions, and with ``run``
    the newest version runs in the sandbox (with ``repair``, failed runs go back to the model)."""
    turn = await run_in_threadpool(
        lambda: studio.code.turn(
            body.prompt,
            session_id=body.session_id,
            language=body.language,
            model=body.model,
            options=body.options.to_options() if body.options is not None else None,
            run=body.run.to_spec() if body.run is not None else None,
            repair=body.repair,
        )
    )
    if not body.stream:
        events = [event async for event in events_of(request, turn, "code-turn")]
        return JSONResponse(_turn_answer(events, turn))

    async def stream() -> AsyncIterator[str]:
        async with contextlib.aclosing(events_of(request, turn, "code-turn")) as events:
            async for event in events:
                yield _sse(event.to_dict())
        yield _sse("[DONE]")

    return StreamingResponse(stream(), media_type="text/event-stream")


@router.post("/run", responses=errors(ErrorBody, {**_BAD, **_MISSING, **_TOO_LARGE, **_SANDBOX}))
def run_code(body: RunIn, studio: Studio = Depends(get_studio)) -> RunRecordOut:
    """Run a stored version (``version_id``) or the ``code`` given, in the sandbox; the stored run."""
    spec = RunSpec(**body.model_dump(include=set(RunSpecIn.model_fields)))
    if body.version_id is not None:
        if body.language is not None or body.code is not None or body.title is not None:
            raise InvalidRequest(
                "give either version_id, or language and code (and title), not both", param="version_id"
            )
        record = studio.code.run(body.version_id, spec)
    else:
        if body.language is None or body.code is None:
            raise InvalidRequest("give version_id, or language and code", param="code")
        record = studio.code.run_source(body.language, body.code, spec, title=body.title or "")
    return RunRecordOut(**record.to_dict())


@router.get("/sessions", responses=errors(ErrorBody, _BAD))
def list_sessions(
    limit: int = Query(50, ge=1, le=1000, description="At most this many, most recently changed first."),
    studio: Studio = Depends(get_studio),
) -> list[SessionSummary]:
    """The code sessions, most recently changed first."""
    return studio.code.sessions(limit)


_SESSION = Path(description="conv-…, as /api/code/sessions lists it.", pattern=SESSION_ID)


@router.get("/sessions/{session_id}", responses=errors(ErrorBody, {**_BAD, **_MISSING}))
def get_session(session_id: str = _SESSION, studio: Studio = Depends(get_studio)) -> SessionOut:
    """A session whole: its messages, every version and every run."""
    return SessionOut(**studio.code.session(session_id))


@router.post("/sessions/{session_id}/versions", responses=errors(ErrorBody, {**_BAD, **_MISSING, **_TOO_LARGE}))
def save_edit(body: EditIn, session_id: str = _SESSION, studio: Studio = Depends(get_studio)) -> VersionOut:
    """The user's own code as the next version of a block (note "edited")."""
    return VersionOut(**studio.code.edit(session_id, body.code, body.language, body.block).to_dict())


@router.delete("/sessions/{session_id}", responses=errors(ErrorBody, {**_BAD, **_MISSING}))
def delete_session(session_id: str = _SESSION, studio: Studio = Depends(get_studio)) -> Deleted:
    """Delete a session: its conversation, versions and runs."""
    studio.code.delete(session_id)
    return Deleted(deleted=session_id)


@router.get("/diff", responses=errors(ErrorBody, {**_BAD, **_MISSING}))
def diff(
    a: int = Query(ge=1, le=MAX_ID, description="The version diffed from (its id)."),
    b: int = Query(ge=1, le=MAX_ID, description="The version diffed to (its id)."),
    studio: Studio = Depends(get_studio),
) -> DiffOut:
    """A unified diff between two versions, labelled "v1", "v2"."""
    return DiffOut(a=a, b=b, diff=studio.code.diff(a, b))
