"""Editing operations (``studio.editing``): continue, polish, expand, shorten, summarize, translate,
change tone, suggest titles, extract keywords — on a selection of a text or the whole of it.

Each operation is the shipped template ``<op>.<language>.toml`` (kind "edit"; a user's copy takes its
place), so what the model is asked is data, not prose in code. The template's language follows the
text (Chinese when it is mostly CJK characters) unless the caller names one. A run is a one-off
generation through ``ChatService.prepare(..., store=False)``: streamed, cancellable, in no chat
history. Its result is a proposal — the whole new text (the selection replaced; ``continue`` inserts
after the selection, or at the end), with a line diff and a display diff against the original — and
nothing is written anywhere: accepting or rejecting it is the caller's. ``titles`` and ``keywords``
answer with a list and leave the text as it is.

Offsets are Python string indices (Unicode code points), not UTF-16 units: a browser's
``selectionStart`` counts an emoji as two, and the web UI converts.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ..contracts import Message, TextChunk, TextOptions, Usage, json_int
from ..errors import ContextLengthExceeded, InvalidRequest
from .chat import ChatRun, ChatService, PreparedChat
from .language_fit import detect_language, language_fit
from .template_library import TemplateLibrary

__all__ = [
    "MAX_TEXT_CHARS",
    "OPERATIONS",
    "Change",
    "EditRequest",
    "EditResult",
    "EditRun",
    "EditingService",
    "Operation",
    "char_diff",
    "line_diff",
    "parse_list",
]

MAX_TEXT_CHARS = 200_000
OpName = Literal["continue", "polish", "expand", "shorten", "summarize", "translate", "tone", "titles", "keywords"]


@dataclass(frozen=True)
class Operation:
    name: str
    result: Literal["text", "list"] = "text"
    # "replace": the answer takes the selection's place; "insert": it goes after the selection.
    placement: Literal["replace", "insert", "none"] = "replace"
    takes: tuple[str, ...] = ()  # request fields only this operation uses
    # About how many answer tokens per selected token; the answer must have room for that much.
    answer_ratio: float = 0.0


OPERATIONS: dict[str, Operation] = {
    op.name: op
    for op in (
        Operation("continue", placement="insert"),
        Operation("polish", answer_ratio=1.0),
        Operation("expand", answer_ratio=2.0),
        Operation("shorten", answer_ratio=0.5),
        Operation("summarize"),
        Operation("translate", takes=("target",), answer_ratio=1.0),
        Operation("tone", takes=("tone",), answer_ratio=1.0),
        Operation("titles", result="list", placement="none"),
        Operation("keywords", result="list", placement="none"),
    )
}
# The target language's name as each template language writes it ("translate into {target}").
TARGET_NAMES = {("en", "en"): "English", ("en", "zh"): "Chinese", ("zh", "en"): "英文", ("zh", "zh"): "中文"}


class EditRequest(BaseModel):
    """An editing operation on ``text``, or on its selection ``start``:``end``."""

    model_config = ConfigDict(extra="forbid")

    op: OpName = Field(description="The operation: " + ", ".join(OPERATIONS) + ".")
    text: str = Field(min_length=1, max_length=MAX_TEXT_CHARS, description="The whole text being edited.")
    start: json_int(ge=0, le=MAX_TEXT_CHARS) | None = Field(  # type: ignore[valid-type]
        None, description="Selection start, in characters (code points) from 0; unset: 0."
    )
    end: json_int(ge=0, le=MAX_TEXT_CHARS) | None = Field(  # type: ignore[valid-type]
        None, description="Selection end (exclusive); unset: the end of the text."
    )
    language: Literal["en", "zh"] | None = Field(
        None, description="The template language; unset: the selected text's own (Chinese or English)."
    )
    tone: str | None = Field(
        None, min_length=1, max_length=100, description="op tone only: the tone to write in (formal, friendly...)."
    )
    target: Literal["en", "zh"] | None = Field(
        None, description="op translate only: the language to translate into; unset: the other one."
    )
    model: str | None = Field(None, min_length=1, max_length=200, description="Text model; unset: the default.")
    options: TextOptions | None = Field(None, description="Sampling options (temperature, seed, max_tokens...).")


@dataclass(frozen=True)
class Change:
    """A piece of a display diff: text both have, text the edit inserted, or text it deleted."""

    op: Literal["equal", "insert", "delete"]
    text: str


@dataclass
class EditResult:
    op: str
    language: str
    model: str
    start: int
    end: int
    original: str
    output: str  # the model's answer as it came
    text: str  # the whole text with the answer in place (the original for titles, keywords, a cancelled run)
    items: list[str] | None  # titles / keywords
    diff: str  # unified diff by line, original -> text
    changes: list[Change]  # for display: characters for Chinese, words for letters
    finish_reason: str
    usage: Usage
    response_id: str
    notes: list[str] = field(default_factory=list)  # language fit, an answer cut short, an empty answer

    @property
    def changed(self) -> bool:
        return self.text != self.original


@dataclass
class PreparedEdit:
    request: EditRequest
    operation: Operation
    language: str
    start: int
    end: int
    chat: PreparedChat
    notes: list[str]


class EditRun:
    """One editing run. Iterate it (sync or async) for the answer's chunks; ``result`` when it ends.
    ``cancel()`` stops it; the result of a stopped run keeps the original text."""

    def __init__(self, service: ChatService, prepared: PreparedEdit):
        self.prepared = prepared
        self._run: ChatRun = service.start(prepared.chat)
        self._cancelled = False
        self._started = False

    def __iter__(self) -> Iterator[TextChunk]:
        if self._begin():
            yield from self._run

    async def __aiter__(self) -> AsyncIterator[TextChunk]:
        if self._begin():
            async for chunk in self._run:
                yield chunk

    def _begin(self) -> bool:
        if self._cancelled:
            if self.prepared.chat.lease is not None:
                self.prepared.chat.lease.release()  # stopped before it began: free the model at once
                self.prepared.chat.lease = None
            if self.prepared.chat.slot is not None:
                self.prepared.chat.slot.release()
                self.prepared.chat.slot = None
            return False
        self._started = True
        return True

    def cancel(self) -> None:
        self._cancelled = True
        self._run.cancel()

    @property
    def result(self) -> EditResult:
        """The proposal: the new whole text and its diff (the original, unchanged, when cancelled)."""
        p = self.prepared
        if not self._started:  # stopped before it began (or never run): nothing was proposed
            return _result(p, "", "cancelled", Usage(), "")
        done = self._run.result
        return _result(p, done.text, done.finish_reason, done.usage, done.response_id)


def _result(p: PreparedEdit, output: str, finish: str, usage: Usage, response_id: str) -> EditResult:
    original, op, notes = p.request.text, p.operation, list(p.notes)
    new, items = original, None
    answer = output.strip()
    if finish == "cancelled":
        pass  # a stopped run proposes nothing: the text stays as it was
    elif op.result == "list":
        items = parse_list(answer, op.name)
    elif not answer:
        notes.append("the model gave an empty answer; the text is unchanged")
    elif op.placement == "insert":
        new = _insert(original, p.end, answer)
    else:
        selected = original[p.start : p.end]
        lead = selected[: len(selected) - len(selected.lstrip())]
        trail = selected[len(selected.rstrip()) :]
        new = original[: p.start] + lead + answer + trail + original[p.end :]
    if finish == "length":
        notes.append("the answer was cut short by the token limit or the model's context; it may end mid-sentence")
    if new == original:
        changes = [Change("equal", original)]
    else:
        # Outside the edited span the texts are the same by construction: diff only the span.
        head = _common_prefix(original, new)
        tail = _common_prefix(original[head:][::-1], new[head:][::-1])
        changes = [
            *([Change("equal", original[:head])] if head else []),
            *char_diff(original[head : len(original) - tail], new[head : len(new) - tail]),
            *([Change("equal", original[len(original) - tail :])] if tail else []),
        ]
    return EditResult(
        op=op.name,
        language=p.language,
        model=p.chat.model,
        start=p.start,
        end=p.end,
        original=original,
        output=output,
        text=new,
        items=items,
        diff=line_diff(original, new),
        changes=changes,
        finish_reason=finish,
        usage=usage,
        response_id=response_id,
        notes=notes,
    )


def _common_prefix(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


_CJK = re.compile(r"[\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef]")


def _insert(text: str, at: int, addition: str) -> str:
    """``addition`` inserted into ``text`` at ``at``, with a space on a side where two words would
    otherwise run together (never next to Chinese, which has no spaces)."""
    before, after = text[:at], text[at:]

    def joins(left: str, right: str) -> bool:
        return bool(left and right) and not (left.isspace() or right.isspace() or _CJK.match(left) or _CJK.match(right))

    lead = " " if joins(before[-1:], addition[:1]) else ""
    trail = " " if joins(addition[-1:], after[:1]) else ""
    return before + lead + addition + trail + after


def line_diff(original: str, edited: str) -> str:
    """A unified diff by line, ``original`` to ``edited`` ("" when they are the same)."""
    lines = difflib.unified_diff(original.splitlines(), edited.splitlines(), "original", "edited", lineterm="", n=2)
    return "\n".join(lines)


# A word of letters or digits, a run of spaces, or any one other character: a Chinese character is a
# piece of its own, so a Chinese diff is by character; an English one is by word.
_PIECES = re.compile(r"[A-Za-z0-9_'\u00c0-\u024f]+|\s+|.", re.DOTALL)


def char_diff(original: str, edited: str) -> list[Change]:
    """The changes from ``original`` to ``edited``, for display: equal, deleted and inserted runs, by
    character for Chinese and by word for letters, so that a changed Chinese character is one piece."""
    a, b = _PIECES.findall(original), _PIECES.findall(edited)
    out: list[Change] = []

    def add(op: Literal["equal", "insert", "delete"], pieces: list[str]) -> None:
        if not pieces:
            return
        if out and out[-1].op == op:
            out[-1] = Change(op, out[-1].text + "".join(pieces))
        else:
            out.append(Change(op, "".join(pieces)))

    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag == "equal":
            add("equal", a[i1:i2])
        else:
            add("delete", a[i1:i2])
            add("insert", b[j1:j2])
    return out


_BULLET = re.compile(r"^\s*(?:[-*•·]+|\d+\s*[.)、．:：]|[（(]\d+[)）]|#+)\s*")
_QUOTES = "\"'“”‘’「」『』《》`*"


def parse_list(answer: str, op: str) -> list[str]:
    """The items of a list answer (titles, keywords): one per line, without numbers, bullets or quotes;
    keywords given on one line are split at commas (、，, ; ；). Duplicates are dropped."""
    lines = [line for line in answer.splitlines() if line.strip()]
    if op == "keywords" and len(lines) == 1:
        lines = re.split(r"[,，、;；]", lines[0])
    items: list[str] = []
    for line in lines:
        item = _BULLET.sub("", line).strip().strip(_QUOTES).strip()
        if item and item not in items:
            items.append(item)
    return items


class EditingService:
    """The editing operations over the chat service and the template library."""

    def __init__(self, chat: ChatService, templates: TemplateLibrary):
        self.chat, self.templates = chat, templates

    def operations(self) -> list[dict]:
        """Each operation: its name, what it gives back ("text" or "list"), where the answer goes, the
        extra field it takes, and its title and description in each language (from its templates)."""
        listed = []
        for op in OPERATIONS.values():
            entry: dict = {"name": op.name, "result": op.result, "placement": op.placement, "takes": list(op.takes)}
            for language in ("en", "zh"):
                template = self.templates.get(f"{op.name}.{language}")
                entry[f"title_{language}"] = template.title or op.name
                entry[f"description_{language}"] = template.description
            listed.append(entry)
        return listed

    def prepare(self, request: EditRequest, *, source: str = "edit") -> PreparedEdit:
        """Check the request against its text and the model, render the operation's template and
        prepare the generation (blocking: may load the model). InvalidRequest names what is wrong:
        a selection outside the text (with the text's length), an empty one, a field the operation does
        not take; ContextLengthExceeded gives the numbers when the selection does not fit the model."""
        op = OPERATIONS[request.op]
        text, size = request.text, len(request.text)
        start = 0 if request.start is None else request.start
        end = size if request.end is None else request.end
        if start > size or end > size or start > end:
            raise InvalidRequest(
                f"the selection {start}:{end} is outside the text, which has {size} characters; "
                f"give 0 <= start <= end <= {size}",
                param="end" if end > size else "start",
            )
        for name in ("tone", "target"):
            if getattr(request, name) is not None and name not in op.takes:
                takes = next(o.name for o in OPERATIONS.values() if name in o.takes)
                raise InvalidRequest(f"{name} is only for the operation '{takes}', not '{op.name}'", param=name)
        if op.placement == "insert":
            source_text = text[:end]  # continue: what is written up to the cursor or the selection's end
            if not source_text.strip():
                raise InvalidRequest(
                    "there is no text before the cursor to continue; write something first or place the cursor "
                    "after some text",
                    param="end",
                )
        else:
            source_text = text[start:end]
            if not source_text.strip():
                what = "is empty" if start == end else "holds only spaces"
                raise InvalidRequest(
                    f"the selection {start}:{end} {what}; select the text to {op.name}, or give no selection "
                    "for the whole text",
                    param="start",
                )
        language = request.language or detect_language(source_text)
        values = {"text": source_text.strip()}
        if op.name == "tone":
            if request.tone is None or not request.tone.strip():
                raise InvalidRequest(
                    "the operation 'tone' needs the tone to write in, e.g. formal, friendly, persuasive",
                    param="tone",
                )
            values["tone"] = request.tone.strip()
        if op.name == "translate":
            source_language = detect_language(source_text)
            target = request.target or ("en" if source_language == "zh" else "zh")
            if target == source_language and request.target is not None:
                raise InvalidRequest(
                    f"the text is already in {TARGET_NAMES[('en', target)]}; translate it to "
                    f"{'zh' if target == 'en' else 'en'}",
                    param="target",
                )
            values["target"] = TARGET_NAMES[(language, target)]
        system, prompt = self.templates.get(f"{op.name}.{language}").render(values)
        messages = ([Message(role="system", content=system)] if system else []) + [Message(role="user", content=prompt)]
        if op.placement == "insert":
            selected = "text before the cursor"
        else:
            selected = "text" if (start, end) == (0, size) else "selection"
        try:
            prepared = self.chat.prepare(
                messages, model=request.model, options=request.options, source=source, store=False
            )
        except ContextLengthExceeded as exc:
            raise ContextLengthExceeded(
                f"the {selected} ({len(source_text)} characters) is too long for this model: {exc.message} "
                "Select a shorter part, or use a model with a longer context.",
                param="end",
            ) from None
        engine = prepared.lease.engine if prepared.lease is not None else None
        options = prepared.request.options
        if engine is not None and op.answer_ratio and options.max_tokens is None:
            # The answer replaces the selection: it needs about as many tokens as the selection has.
            # Refuse now, with the numbers, rather than cut the rewritten text off at the context's end.
            alone = engine.count_prompt_tokens([Message(role="user", content=source_text)], None, prepared.request)
            need = math.ceil(alone * op.answer_ratio)
            room = engine.context_length - prepared.prompt_tokens
            if need > room:
                prepared.lease.release()
                if prepared.slot is not None:
                    prepared.slot.release()
                raise ContextLengthExceeded(
                    f"the {selected} takes about {alone} tokens and the request to {op.name} it "
                    f"{prepared.prompt_tokens}; the answer needs about {need} more, but the model "
                    f"'{prepared.model}' has a context of "
                    f"{engine.context_length} tokens, which leaves {room}. Select a shorter part, or use a model "
                    "with a longer context.",
                    param="end",
                )
        notes = []
        fit = language_fit(self.chat.resolve_model(prepared.model), language)
        if fit:
            notes.append(fit)
        return PreparedEdit(request, op, language, start, end, prepared, notes)

    def start(self, prepared: PreparedEdit) -> EditRun:
        """A run of a prepared edit: iterate it for the answer's chunks, then read ``.result``."""
        return EditRun(self.chat, prepared)

    def run(self, request: EditRequest, *, source: str = "edit") -> EditResult:
        """Prepare and run an edit to its end; the proposal."""
        run = self.start(self.prepare(request, source=source))
        for _ in run:
            pass
        return run.result
