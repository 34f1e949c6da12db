"""What a code session holds and reports: the run spec (``RunSpec``), versions (``CodeVersion``), runs
(``CodeRunRecord``), a turn's events (``CodeEvent``), and how a run's output is compared with the output
expected. ``services/code.py`` makes them; the API, the CLI and the web UI show them."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..contracts import RUN_LANGUAGES, RunLimits, RunResult

__all__ = [
    "LANGUAGE_NAME",
    "MAX_CALL",
    "MAX_CODE",
    "MAX_PROMPT",
    "MAX_REPAIR",
    "NO_NUL",
    "RUNNABLE",
    "CodeEvent",
    "CodeRunRecord",
    "CodeVersion",
    "EventKind",
    "RunSpec",
    "normalise_output",
    "output_matches",
    "program_with_call",
    "record_from_row",
    "version_from_row",
]

MAX_PROMPT = 20_000
MAX_CODE = 1_000_000
MAX_REPAIR = 10
MAX_CALL = 10_000
LANGUAGE_NAME = r"^[A-Za-z0-9_+#.-]{1,30}$"
# Text a process is given on its command line cannot hold NUL (the kernel ends a string there).
NO_NUL = "^[^\\x00]*$"
RUNNABLE = tuple(RUN_LANGUAGES)


class RunSpec(BaseModel):
    """How to run a version: what to call, its arguments and stdin, the output expected, the limits."""

    model_config = ConfigDict(extra="forbid")

    call: str | None = Field(
        None,
        max_length=MAX_CALL,
        pattern=NO_NUL,
        description="An expression whose value is printed after the program: JavaScript "
        "console.log(<call>); Python print(<call>). Unset or blank: the program runs as it is.",
    )
    args: list[Annotated[str, Field(max_length=4096, pattern=NO_NUL)]] = Field(
        default_factory=list, max_length=64, description="Command-line arguments (no NUL characters)."
    )
    stdin: str = Field("", max_length=1_000_000, description="What the program reads on standard input.")
    expect: str | None = Field(
        None,
        max_length=1_000_000,
        description="The expected stdout. It matches when both are equal after trimming the ends, making each "
        "run of whitespace one space and dropping spaces next to [ ] ( ) { } , : ; (so [ 1, 2 ] matches [1,2]). "
        "Unset: no check.",
    )
    limits: RunLimits = Field(default_factory=RunLimits)

    @field_validator("call", mode="before")
    @classmethod
    def _blank_call_is_none(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return None
        return value


@dataclass
class CodeVersion:
    """One version of one code block of a session."""

    id: int
    session_id: str
    block: int  # 1-based: which program of the session
    version: int  # 1-based per block
    language: str  # "python" | "javascript" | another name as written ("bash") | "" when unknown
    code: str
    message_id: int | None  # the answer it came from; None for an edit or a file
    note: str  # "generated", "refined: <request>", "repair 2/3", "edited", "file: <name>"
    created: float

    @property
    def runnable(self) -> bool:
        return self.language in RUNNABLE

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "session_id": self.session_id,
            "block": self.block,
            "version": self.version,
            "language": self.language,
            "code": self.code,
            "message_id": self.message_id,
            "note": self.note,
            "created": self.created,
        }


@dataclass
class CodeRunRecord:
    """A stored run of a version: its spec, the sandbox's result, whether the output matched."""

    id: int
    version_id: int
    session_id: str
    spec: RunSpec
    result: RunResult
    matched: bool | None  # None when no output was expected
    created: float

    @property
    def failed(self) -> bool:
        """A nonzero exit, a limit hit, or output that does not match what was expected."""
        return not self.result.ok or self.matched is False

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "version_id": self.version_id,
            "session_id": self.session_id,
            "spec": self.spec.model_dump(),
            "result": self.result.to_dict(),
            "matched": self.matched,
            "created": self.created,
        }


EventKind = Literal["reading", "delta", "version", "run", "attempt", "done", "error"]


@dataclass
class CodeEvent:
    """What a turn reports as it goes: how much of a long prompt the model has read ("reading": ``read``
    of ``prompt_tokens``, before the answer's text), answer text ("delta"), a new version, a run, the
    start of repair attempt ``attempt`` of ``of``, the end ("done", with the session and why the last
    answer ended), or an error (``message``; the turn ends after it)."""

    kind: EventKind
    text: str = ""
    version: CodeVersion | None = None
    run: CodeRunRecord | None = None
    attempt: int | None = None
    of: int | None = None
    message: str | None = None
    session_id: str | None = None
    finish_reason: str | None = None
    notes: list[str] = field(default_factory=list)
    read: int | None = None
    prompt_tokens: int | None = None

    def to_dict(self) -> dict:
        """The event as JSON for an SSE ``data:`` line: ``kind`` and the fields that kind has."""
        out: dict = {"kind": self.kind}
        if self.kind == "delta":
            out["text"] = self.text
        elif self.kind == "reading":
            out.update(read=self.read, prompt_tokens=self.prompt_tokens)
        elif self.kind == "version":
            out["version"] = self.version.to_dict()
        elif self.kind == "run":
            out["run"] = self.run.to_dict()
        elif self.kind == "attempt":
            out.update(attempt=self.attempt, of=self.of)
        elif self.kind == "error":
            out.update(message=self.message, session_id=self.session_id)
        else:
            out.update(session_id=self.session_id, finish_reason=self.finish_reason, notes=self.notes)
        return out


# Spaces around brackets, commas and colons are how a runtime prints a value, not what it is: node prints
# [ 1, 2, 3 ], Python [1, 2, 3], a user expects [1,2,3]; all three match.
_PUNCTUATION_SPACE = re.compile(r"\s*([\[\](){},:;])\s*")


def normalise_output(text: str) -> str:
    """``text`` with its ends trimmed, each run of whitespace made one space, and no space next to
    ``[ ] ( ) { } , : ;``: what ``expect`` is compared by."""
    return _PUNCTUATION_SPACE.sub(r"\1", " ".join(text.split()))


def output_matches(stdout: str, expect: str) -> bool:
    """True when ``stdout`` and ``expect`` are equal once normalised (``normalise_output``)."""
    return normalise_output(stdout) == normalise_output(expect)


def program_with_call(language: str, code: str, call: str | None) -> str:
    """The program with ``call``'s value printed after it (``console.log(...)``; ``print(...)``)."""
    if call is None:
        return code
    line = f"console.log({call});" if language == "javascript" else f"print({call})"
    return code.rstrip("\n") + "\n\n" + line + "\n"


def version_from_row(row: dict) -> CodeVersion:
    """A CodeVersion from its stored row."""
    return CodeVersion(**{name: row[name] for name in CodeVersion.__dataclass_fields__})


def record_from_row(row: dict) -> CodeRunRecord:
    """A CodeRunRecord from its stored row (spec and result as JSON-decoded dicts)."""
    stored = dict(row["result"])
    stored.pop("ok", None)
    stored["limits"] = RunLimits(**stored["limits"])
    return CodeRunRecord(
        id=row["id"],
        version_id=row["version_id"],
        session_id=row["session_id"],
        spec=RunSpec(**row["spec"]),
        result=RunResult(**stored),
        matched=row["matched"],
        created=row["created"],
    )
