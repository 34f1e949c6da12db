"""Code sessions (``studio.code``): ask a model for a program, refine it over turns, keep every version
of its code, run a version in the sandbox, and let the model repair what fails.

A **session** is a chat conversation with source "code" (so it is in chat history too, and resumable
there) plus the code its answers held. Each turn sends the model the conversation and, once there is
code, the newest version of block 1, through the shipped templates ``code-generate``, ``code-refine``
and ``code-repair`` (English or Chinese, after the request's own language). History keeps the user's
own words for a turn, and the repair prompt (with the run's error) for a repair attempt.

The code blocks of each answer (``code_blocks.extract_blocks``) become **versions**: an answer's
block continues the session's lowest-numbered block of the same language not yet continued by that
answer, else it starts a new block; so a session's one program is block 1, and its versions are 1, 2,
... A block's language is its fence's tag; without one, the language the user chose, else the one
the request names, else the session's, else what the code reads as; empty when none of these tells.

A **run** executes a version in ``studio.sandbox`` (Python and JavaScript only) with a ``RunSpec``:
a call expression appended (``console.log(<call>);`` / ``print(<call>)``), arguments, stdin, an
expected output (it *matches* when both are equal after the ends are trimmed, every run of whitespace
is made one space, and spaces next to ``[ ] ( ) { } , : ;`` are dropped: node's ``[ 1, 2 ]``, Python's
``[1, 2]`` and ``[1,2]`` all match) and limits. With ``repair=N`` a failed run (nonzero exit, a limit hit, or
output that does not match) is sent back to the model up to N times; each attempt's answer, version
and run are streamed and stored.

What is stored lands whole: an answer, its messages and its versions in one transaction; a run and
its record together; a request refused (4xx) or a sandbox that cannot start (503) stores nothing.
"""

from __future__ import annotations

import difflib
import logging
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from ..contracts import RUN_LANGUAGES, Message, RunRequest, RunResult, TextOptions
from ..errors import InvalidRequest, StudioError
from ..sandbox import Sandbox, runtime
from ..storage.code import SESSION_SOURCE, CodeStore
from .chat import ChatRun, ChatService, PreparedChat
from .code_blocks import LANGUAGE_TITLES, CodeBlock, canonical_language, extract_blocks, language_in_request
from .code_blocks import sniff_language as _sniff
from .code_records import (
    LANGUAGE_NAME,
    MAX_CALL,
    MAX_CODE,
    MAX_PROMPT,
    MAX_REPAIR,
    NO_NUL,
    RUNNABLE,
    CodeEvent,
    CodeRunRecord,
    CodeVersion,
    RunSpec,
    normalise_output,
    output_matches,
    program_with_call,
    record_from_row,
    version_from_row,
)
from .language_fit import detect_language
from .models import ModelService
from .template_library import TemplateLibrary

# The records are re-exported: ``from aigc_studio.services.code import RunSpec`` is the one import a
# caller needs.
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
    "CodeService",
    "CodeTurn",
    "CodeVersion",
    "RunSpec",
    "assign_blocks",
    "normalise_output",
    "output_matches",
    "program_with_call",
]

log = logging.getLogger("aigc_studio.code")

# How much of a failed run's output the repair prompt quotes (the end of it, where errors are).
REPAIR_OUTPUT_CHARS = 2_000


def _tail(text: str, limit: int = REPAIR_OUTPUT_CHARS) -> str:
    return text if len(text) <= limit else "…" + text[-limit:]


def assign_blocks(existing: dict[int, str], languages: list[str]) -> list[int]:
    """The session block each of an answer's blocks continues: the lowest-numbered block of the same
    language not yet taken by this answer, else a new block after the last."""
    taken: set[int] = set()
    last = max(existing, default=0)
    out = []
    for language in languages:
        block = next((b for b in sorted(existing) if existing[b] == language and b not in taken), None)
        if block is None:
            last += 1
            block = last
        taken.add(block)
        out.append(block)
    return out


@dataclass
class _Turn:
    """What a turn was asked, resolved before anything runs."""

    prompt: str
    session_id: str | None
    language: str | None  # the user's choice, canonical
    requested: str | None  # the language the request's words name
    session_language: str | None
    template_language: str  # "en" | "zh"
    model: str | None
    options: TextOptions | None
    run: RunSpec | None
    repair: int
    refining: bool


class CodeTurn:
    """One turn of a code session. Iterate it for ``CodeEvent``s (blocking: the answer streams, then
    versions, the run and any repair attempts); ``cancel()`` stops it (from another thread);
    ``session_id`` is set once the first request is stored, as its answer starts (at once for an existing
    session)."""

    def __init__(self, service: CodeService, turn: _Turn, first: PreparedChat, notes: list[str]):
        self.service, self.turn = service, turn
        self.session_id = turn.session_id
        self._prepared: PreparedChat | None = first
        self._run: ChatRun | None = None
        self._cancelled = threading.Event()
        self._iterated = False
        self.notes = notes
        self._earlier: list[Message] = []  # the session's messages before the stored question (History.begin)

    def cancel(self) -> None:
        """Stop the turn: the answer being generated stops (what came so far is kept in history, no
        version is made from it) and no further run or repair attempt starts."""
        self._cancelled.set()
        if self._run is not None:
            self._run.cancel()

    def __iter__(self) -> Iterator[CodeEvent]:
        if self._iterated:
            raise RuntimeError("a code turn runs once; start another with CodeService.turn")
        self._iterated = True
        try:
            yield from self._events()
        finally:
            if self._prepared is not None and self._prepared.lease is not None:
                self._prepared.lease.release()  # stopped before the generation began: free the model
                self._prepared.lease = None
            if self._prepared is not None and self._prepared.slot is not None:
                self._prepared.slot.release()
                self._prepared.slot = None

    def _events(self) -> Iterator[CodeEvent]:
        turn, service = self.turn, self.service
        attempt, finish = 0, None
        note = f"refined: {turn.prompt.strip()[:200]}" if turn.refining else "generated"
        stored_prompt = turn.prompt
        while True:
            prepared, self._prepared = self._prepared, None
            if self._cancelled.is_set():
                if prepared.lease is not None:
                    prepared.lease.release()
                if prepared.slot is not None:
                    prepared.slot.release()
                yield CodeEvent("done", session_id=self.session_id, finish_reason="cancelled", notes=self.notes)
                return
            # The question is stored before the answer starts, so a server killed mid-answer keeps it.
            service._begin_answer(self, prepared, stored_prompt)
            self._run = run = service.chat.start(prepared)
            error: BaseException | None = None
            try:
                for chunk in run:
                    if self._cancelled.is_set():
                        run.cancel()
                    if chunk.prompt_progress is not None:  # a long prompt (the code sent back): how far read
                        read, tokens = chunk.prompt_progress.read, chunk.prompt_progress.total
                        yield CodeEvent("reading", read=read, prompt_tokens=tokens)
                    if chunk.text:
                        yield CodeEvent("delta", text=chunk.text)
            except KeyboardInterrupt:
                # Ctrl-C in the CLI: stop the model, keep what it wrote (as a cancelled answer), end the turn.
                self.cancel()
                run.cancel()
            except GeneratorExit:
                # The caller stopped iterating mid-answer: stop the model and keep what it wrote, as Ctrl-C.
                self.cancel()
                run.cancel()
                result = run.result
                service._store_answer(self, prepared, stored_prompt, result.text, result.finish_reason, note)
                raise
            except StudioError as exc:
                error = exc
            except Exception as exc:  # an engine failure: reported as the turn's error, the server lives on
                log.exception("code turn: the model failed")
                error = exc
            result = run.result
            finish = result.finish_reason
            try:
                versions = service._store_answer(self, prepared, stored_prompt, result.text, finish, note)
            except StudioError as exc:
                yield CodeEvent("error", message=exc.message, session_id=self.session_id)
                return
            for version in versions:
                yield CodeEvent("version", version=version)
            if error is not None:
                message = getattr(error, "message", None) or str(error) or type(error).__name__
                yield CodeEvent("error", message=f"the model failed: {message}", session_id=self.session_id)
                return
            if finish == "cancelled" or self._cancelled.is_set() or turn.run is None:
                break
            target = service.store.latest_version(self.session_id, 1) if self.session_id else None
            if target is None:
                yield CodeEvent(
                    "error",
                    message="the answer has no code block to run; ask again, or name the language "
                    "(python or javascript)",
                    session_id=self.session_id,
                )
                return
            try:
                record = service.run(target["id"], turn.run)
            except StudioError as exc:
                yield CodeEvent("error", message=exc.message, session_id=self.session_id)
                return
            except Exception as exc:  # a sandbox failure: the turn says so and ends; the server lives on
                log.exception("code turn: the run failed")
                message = f"the run failed: {type(exc).__name__}: {exc}"
                yield CodeEvent("error", message=message, session_id=self.session_id)
                return
            yield CodeEvent("run", run=record)
            if not record.failed or attempt >= turn.repair or self._cancelled.is_set():
                break
            attempt += 1
            yield CodeEvent("attempt", attempt=attempt, of=turn.repair)
            try:
                self._prepared, stored_prompt = service._prepare_repair(
                    turn, self.session_id, version_from_row(target), record
                )
            except StudioError as exc:
                yield CodeEvent("error", message=exc.message, session_id=self.session_id)
                return
            note = f"repair {attempt}/{turn.repair}"
        yield CodeEvent("done", session_id=self.session_id, finish_reason=finish, notes=self.notes)


class CodeService:
    """Code sessions over the chat service, the sandbox and their storage."""

    def __init__(
        self, chat: ChatService, sandbox: Sandbox, store: CodeStore, templates: TemplateLibrary, models: ModelService
    ):
        self.chat, self.sandbox, self.store, self.templates, self.models = chat, sandbox, store, templates, models

    # -- turns -----------------------------------------------------------------------------------

    def turn(
        self,
        prompt: str,
        *,
        session_id: str | None = None,
        language: str | None = None,
        model: str | None = None,
        options: TextOptions | None = None,
        run: RunSpec | None = None,
        repair: int = 0,
    ) -> CodeTurn:
        """A turn: ask for a program (no ``session_id``: a new session) or a change to the session's
        code; with ``run``, run the newest version of block 1 after the answer; with ``repair=N``,
        let the model fix a failed run up to N times. Checks everything and prepares the generation
        before returning (blocking: may load the model), so a bad request raises here (InvalidRequest,
        NotFound, ContextLengthExceeded, SandboxUnavailable when ``run`` is given and the sandbox
        cannot start) and nothing is stored; iterate the returned turn for its events."""
        if not isinstance(prompt, str) or not prompt.strip():
            raise InvalidRequest("prompt must not be empty: say what the program should do", param="prompt")
        if len(prompt) > MAX_PROMPT:
            raise InvalidRequest(f"prompt must be at most {MAX_PROMPT} characters, got {len(prompt)}", param="prompt")
        if isinstance(repair, bool) or not isinstance(repair, int) or not 0 <= repair <= MAX_REPAIR:
            raise InvalidRequest(f"repair must be 0-{MAX_REPAIR} attempts, got {repair!r}", param="repair")
        if repair and run is None:
            raise InvalidRequest(
                "repair needs a run to judge the code by: give run (a call, an expected output, or none of "
                "them to run the program as it is)",
                param="repair",
            )
        chosen = self._language(language)
        session_language = None
        if session_id is not None:
            row = self.store.session(session_id)
            session_language = row["language"] or None
        if run is not None:
            self.sandbox.check_limits(run.limits)
            if chosen is not None and chosen not in RUNNABLE:
                raise InvalidRequest(
                    f"{chosen} code cannot be run: the sandbox runs {' and '.join(RUNNABLE)}; leave out run, or "
                    "choose one of them",
                    param="language",
                )
            self.sandbox.check()
            expected = chosen or language_in_request(prompt) or session_language
            if expected in RUNNABLE:
                runtime(expected)  # SandboxUnavailable now, before anything is generated or stored
        latest = self.store.latest_version(session_id, 1) if session_id else None
        requested = language_in_request(prompt)
        turn = _Turn(
            prompt=prompt,
            session_id=session_id,
            language=chosen,
            requested=requested,
            session_language=session_language,
            template_language=detect_language(prompt),
            model=model,
            options=options,
            run=run,
            repair=repair,
            refining=latest is not None,
        )
        wanted = chosen or requested or session_language
        values = {
            "request": prompt.strip(),
            "language": LANGUAGE_TITLES.get(wanted, wanted),
            "call": run.call if run is not None else None,
        }
        if latest is not None:
            template = "code-refine"
            values["code"] = latest["code"].rstrip("\n")
        else:
            template = "code-generate"
        prepared = self._prepare(turn, template, values)
        notes = []
        fit = self.models.language_fit(prepared.model, turn.template_language).message
        if fit:
            notes.append(fit)
        return CodeTurn(self, turn, prepared, notes)

    @staticmethod
    def _language(language: str | None) -> str | None:
        if language is None or (isinstance(language, str) and not language.strip()):
            return None
        if not isinstance(language, str) or not re.match(LANGUAGE_NAME, language.strip()):
            raise InvalidRequest(
                "language must be a language's name (1-30 letters, digits, + # . _ -), e.g. python, javascript, "
                f"js, py; got {language!r}",
                param="language",
            )
        return canonical_language(language)

    def _prepare(self, turn: _Turn, template: str, values: dict) -> PreparedChat:
        """The messages for the model (the session's conversation, then the template rendered) and the
        prepared generation; the oldest turns are left out when the conversation does not fit."""
        system, prompt = self.templates.get(f"{template}.{turn.template_language}").render(values)
        history = self.chat.history.messages(turn.session_id) if turn.session_id else []
        messages = [
            *([Message(role="system", content=system)] if system else []),
            *[m for m in history if m.role != "system"],
            Message(role="user", content=prompt),
        ]
        return self.chat.prepare(
            messages, model=turn.model, options=turn.options, source=SESSION_SOURCE, store=False, trim=True
        )

    def _prepare_repair(
        self, turn: _Turn, session_id: str, target: CodeVersion, record: CodeRunRecord
    ) -> tuple[PreparedChat, str]:
        """The generation of a repair attempt and the prompt history keeps for it (the rendered
        ``code-repair`` template: what the model was told of the failure)."""
        result = record.result
        status = str(result.exit_code) if result.exit_code is not None else f"killed ({result.signal or 'signal'})"
        turn.session_id = session_id
        values = {
            "language": LANGUAGE_TITLES.get(target.language, target.language),
            "code": target.code.rstrip("\n"),
            "call": record.spec.call,
            "exit_status": status,
            "limit": result.limit,
            "stdout": _tail(result.stdout).rstrip("\n") or None,
            "stderr": _tail(result.stderr).rstrip("\n") or None,
            "expected": record.spec.expect,
        }
        system, prompt = self.templates.get(f"code-repair.{turn.template_language}").render(values)
        history = self.chat.history.messages(session_id)
        messages = [
            *([Message(role="system", content=system)] if system else []),
            *[m for m in history if m.role != "system"],
            Message(role="user", content=prompt),
        ]
        prepared = self.chat.prepare(
            messages, model=turn.model, options=turn.options, source=SESSION_SOURCE, store=False, trim=True
        )
        return prepared, prompt

    def _block_language(self, block: CodeBlock, turn: _Turn) -> str:
        return block.language or turn.language or turn.requested or turn.session_language or _sniff(block.code) or ""

    def _begin_answer(self, handle: CodeTurn, prepared: PreparedChat, prompt: str) -> None:
        """Store the turn's question (and the session, when new) before its answer streams; the answer
        is filled in by ``_store_answer``."""
        history = self.chat.history
        handle._earlier = history.messages(handle.session_id) if handle.session_id else []
        handle.session_id = history.begin(handle.session_id, [Message(role="user", content=prompt)], prepared.record)
        handle.turn.session_id = handle.session_id

    def _store_answer(
        self, handle: CodeTurn, prepared: PreparedChat, prompt: str, answer: str, finish: str, note: str
    ) -> list[CodeVersion]:
        """Keep the exchange in history and the answer's code as versions, in one transaction. A stopped
        or failed answer is kept in history but makes no version."""
        turn = handle.turn
        blocks = extract_blocks(answer) if finish in ("stop", "length") and prepared.record.status == "ok" else []
        languages = [self._block_language(b, turn) for b in blocks]
        rows: list[dict] = []

        def also(conn, session_id: str, message_id: int | None) -> None:
            numbers = assign_blocks(self.store.block_languages(conn, session_id), languages)
            for block, number, language in zip(blocks, numbers, languages, strict=True):
                why = note
                if not block.fenced:
                    why += "; no fenced block, the whole answer taken as code"
                elif not block.closed:
                    why += "; the answer ended inside the code block (cut off?)"
                rows.append(self.store.insert_version(conn, session_id, number, language, block.code, message_id, why))

        new = Message(role="user", content=prompt)
        handle.session_id = self.chat.history.record(
            handle.session_id, [], prepared.record, answer, [*handle._earlier, new], also=also, begun=True
        )
        turn.session_id = handle.session_id
        if turn.session_language is None and languages:
            turn.session_language = self.store.session(handle.session_id)["language"] or None
        return [version_from_row(r) for r in rows]

    # -- runs ------------------------------------------------------------------------------------

    def _execute(self, language: str, code: str, spec: RunSpec) -> tuple[RunResult, bool | None]:
        try:
            request = RunRequest(
                language=language,
                code=program_with_call(language, code, spec.call),
                args=spec.args,
                stdin=spec.stdin,
                limits=spec.limits,
            )
        except ValueError as exc:
            raise InvalidRequest(f"cannot run this code: {exc}", param="code") from None
        result = self.sandbox.run(request)
        matched = None if spec.expect is None else output_matches(result.stdout, spec.expect)
        return result, matched

    def run(self, version_id: int, spec: RunSpec | None = None) -> CodeRunRecord:
        """Run a stored version in the sandbox and store the run. NotFound for an unknown version,
        InvalidRequest for code the sandbox does not run or a limit above the maximum,
        SandboxUnavailable (nothing stored) when the sandbox cannot start."""
        spec = spec or RunSpec()
        version = self.store.version(version_id)
        if version["language"] not in RUNNABLE:
            shown = version["language"] or "of no known language"
            # "version <id>": the id a run names (the UI translates this sentence by its shape).
            raise InvalidRequest(
                f"version {version_id} is {shown} code; the sandbox runs {' and '.join(RUNNABLE)} only (edit the "
                "version with its language set to run it as one of them)",
                param="version_id",
            )
        result, matched = self._execute(version["language"], version["code"], spec)
        return record_from_row(self.store.add_run(version, spec.model_dump(), result.to_dict(), matched))

    def run_source(self, language: str, code: str, spec: RunSpec | None = None, title: str = "") -> CodeRunRecord:
        """Run code that is no session's yet (``aigc run FILE``): a session of its own, titled ``title``
        (the file's name), holds it as version 1 and the run. Nothing is stored when the run cannot
        start (a bad language or limit, no sandbox)."""
        spec = spec or RunSpec()
        canonical = canonical_language(language) if isinstance(language, str) else None
        if canonical not in RUNNABLE:
            allowed = ", ".join(n for names in RUN_LANGUAGES.values() for n in names)
            raise InvalidRequest(f"language must be one of {allowed}, got {language!r}", param="language")
        if not isinstance(code, str) or not code.strip():
            raise InvalidRequest("code must not be empty: give the program to run", param="code")
        if len(code) > MAX_CODE:
            raise InvalidRequest(f"code must be at most {MAX_CODE} characters, got {len(code)}", param="code")
        result, matched = self._execute(canonical, code, spec)
        name = " ".join(title.split())[:80] or f"{canonical} code"
        with self.store.db.tx() as conn:
            session_id = self.store.create_session(conn, name)
            version = self.store.insert_version(conn, session_id, 1, canonical, code, None, f"file: {name}")
            row = self.store.insert_run(conn, version, spec.model_dump(), result.to_dict(), matched)
        return record_from_row(row)

    # -- edits, reading, deleting ----------------------------------------------------------------

    def edit(self, session_id: str, code: str, language: str | None = None, block: int = 1) -> CodeVersion:
        """The user's own code as the next version of ``block`` (note "edited"). The language is the one
        given, else the block's, else what the code reads as."""
        self.store.session(session_id)
        if not isinstance(code, str) or not code.strip():
            raise InvalidRequest("code must not be empty: give the new version's code", param="code")
        if len(code) > MAX_CODE:
            raise InvalidRequest(f"code must be at most {MAX_CODE} characters, got {len(code)}", param="code")
        chosen = self._language(language)
        with self.store.db.tx() as conn:
            blocks = self.store.block_languages(conn, session_id)
            most = max(blocks, default=0) + 1
            if isinstance(block, bool) or not isinstance(block, int) or not 1 <= block <= most:
                raise InvalidRequest(
                    f"block must be 1-{most} (an existing block, or {most} for a new one), got {block!r}",
                    param="block",
                )
            resolved = chosen or blocks.get(block) or _sniff(code) or ""
            if not code.endswith("\n"):
                code += "\n"
            row = self.store.insert_version(conn, session_id, block, resolved, code, None, "edited")
        return version_from_row(row)

    def latest_session_id(self) -> str | None:
        """The code session changed last, or None when there is none."""
        return self.store.latest_session_id()

    def sessions(self, limit: int = 50) -> list[dict]:
        """The newest code sessions: id, title, language (of block 1), versions, runs, created, updated."""
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1000:
            raise InvalidRequest(f"limit must be 1-1000, got {limit!r}", param="limit")
        return self.store.sessions(limit)

    def session(self, session_id: str) -> dict:
        """A session whole: its row, its messages (chat history's), its versions and its runs."""
        out = self.store.session(session_id)
        out["messages"] = [
            {k: m[k] for k in ("role", "content", "created", "response_id")}
            for m in self.chat.history.get(session_id)["messages"]
        ]
        out["versions"] = [version_from_row(r).to_dict() for r in self.store.versions(session_id)]
        out["runs"] = [record_from_row(r).to_dict() for r in self.store.runs(session_id)]
        return out

    def version(self, version_id: int) -> CodeVersion:
        """A stored version; NotFound."""
        return version_from_row(self.store.version(version_id))

    def diff(self, a_version_id: int, b_version_id: int) -> str:
        """A unified diff from version ``a`` to version ``b``, labelled "v1", "v2" (with the block, and
        the session, where they differ); "" when the code is the same."""
        a, b = self.store.version(a_version_id), self.store.version(b_version_id)

        def label(v: dict) -> str:
            where = ""
            if a["session_id"] != b["session_id"]:
                where = f"{v['session_id']} "
            if a["block"] != b["block"] or where:
                where += f"block {v['block']} "
            return f"{where}v{v['version']}"

        lines = difflib.unified_diff(
            a["code"].splitlines(), b["code"].splitlines(), label(a), label(b), lineterm="", n=3
        )
        return "\n".join(lines)

    def delete(self, session_id: str) -> None:
        """Delete a code session: its conversation, versions and runs. NotFound when there is none."""
        self.store.delete(session_id)
