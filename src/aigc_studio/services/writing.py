"""Writing: an article from a title or keywords, shared by the CLI, the API and the web UI.

The pipeline, each step a shipped template (``article-outline``, ``article-section``,
``article-abstract``, ``article-tags``, in English and Chinese):

1. an outline of N headings (a JSON list where the engine can enforce a JSON Schema, else parsed from
   the answer's lines), stored as version 1 of a new document and editable from then on;
2. each section in turn, streamed, told the title, the outline and the opening sentences of the
   sections before it, always fitted to the model's context: when something must be left out (the
   oldest summaries first, then the end of the reference notes) the run says how much, in its events
   and in the stored version;
3. the abstract and the tags;
4. the assembled Markdown, stored as a new version.

A run is a stream of ``WriteEvent``s. Stopping it keeps every finished section and the one in progress,
marked unfinished; ``continue_`` writes what is missing; ``regenerate`` rewrites one section; editing
the outline keeps the sections whose headings did not change; a user's own edit is a version too.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field

from ..contracts import Message, ResponseFormat
from ..errors import ContextLengthExceeded, InvalidRequest, NotFound, StudioError
from ..storage.documents import DocumentStore, VersionRecord
from .article_spec import (
    MAX_CONTENT,
    MIN_SECTION_TOKENS,
    TOKENS_PER_UNIT,
    ArticleSpec,
    WriteEvent,
    check_headings,
)
from .article_text import ArticleParts, assemble_markdown, parse_headings, parse_markdown, parse_tags, summarize
from .chat import ChatRun, ChatService
from .export import ExportFile, export_document
from .language_fit import LanguageFit
from .models import ModelService
from .template_library import TemplateLibrary
from .text_labels import TextLabeler

__all__ = ["ArticleRun", "ArticleSpec", "WriteEvent", "WritingService"]

log = logging.getLogger("aigc_studio.writing")


@dataclass
class _Article:
    """A document's working state, from its latest version or a new spec."""

    spec: ArticleSpec
    model: str
    title: str
    headings: list[str] = field(default_factory=list)
    sections: list[dict] = field(default_factory=list)
    abstract: str = ""
    tags: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    options: dict = field(default_factory=dict)
    document_id: str | None = None

    def markdown(self) -> str:
        parts = ArticleParts(self.title, self.abstract, [(s["heading"], s["text"]) for s in self.sections], self.tags)
        partial = next((i for i, s in enumerate(self.sections) if s["state"] == "partial"), None)
        return assemble_markdown(parts, self.spec.language, unfinished=partial)

    def record(self, reason: str) -> VersionRecord:
        return VersionRecord(
            reason=reason,
            content=self.markdown(),
            outline=list(self.headings),
            sections=[dict(s) for s in self.sections],
            abstract=self.abstract,
            tags=list(self.tags),
            spec=self.spec.model_dump(mode="json", exclude_defaults=True),
            model=self.model,
            options=self.options,
            notes=list(self.notes),
        )


def _section(heading: str) -> dict:
    return {"heading": heading, "text": "", "state": "pending", "seed": None, "finish_reason": None, "tokens": 0}


class ArticleRun:
    """A run of the pipeline: iterate it for ``WriteEvent``s; ``cancel()`` (from any thread) stops it,
    keeping what was written. ``document_id`` is set once the document exists; ``fit`` says whether the
    model writes the article's language."""

    def __init__(self, service: WritingService, article: _Article, todo: list[int], mode: str, **kwargs):
        self.service, self.article, self.todo, self.mode, self.kwargs = service, article, todo, mode, kwargs
        self.fit: LanguageFit = service.models.language_fit(article.model, article.spec.language)
        self.cancelled = threading.Event()
        self.version: int | None = None
        self.last_result = None  # the last generation's ChatResult
        self._chat: ChatRun | None = None

    @property
    def document_id(self) -> str | None:
        return self.article.document_id

    def cancel(self) -> None:
        self.cancelled.set()
        chat = self._chat
        if chat is not None:
            chat.cancel()

    def __iter__(self) -> Iterator[WriteEvent]:
        return self.service._run(self)


class WritingService:
    def __init__(
        self,
        chat: ChatService,
        models: ModelService,
        store: DocumentStore,
        templates: TemplateLibrary,
        labeler: TextLabeler | None = None,
    ):
        self.chat, self.models, self.store, self.templates = chat, models, store, templates
        self.labeler = labeler  # None: exports carry no labels

    # -- starting runs -----------------------------------------------------------------------------

    def start(self, spec: ArticleSpec, *, headings: list[str] | None = None, outline_only: bool = False) -> ArticleRun:
        """A new article from ``spec``: the outline (or the given ``headings``), then, unless
        ``outline_only``, every section, the abstract and the tags. Raises before anything is stored
        when the model is unknown or the headings are not 1-20."""
        model = self.chat.resolve_model(spec.model or self.chat.registry.default_model).id
        article = _Article(spec=spec, model=model, title=spec.title)
        if headings is not None:
            article.headings = check_headings(headings)
            article.sections = [_section(h) for h in article.headings]
        return ArticleRun(self, article, [], "new", outline_only=outline_only)

    def continue_(self, document_id: str, model: str | None = None) -> ArticleRun:
        """Write the sections of a document not written yet (a stopped one is written again from its
        start), then the abstract and tags if they are missing."""
        article = self._load(document_id, model)
        todo = [i for i, s in enumerate(article.sections) if s["state"] != "done"]
        return ArticleRun(self, article, todo, "continue")

    def regenerate(
        self, document_id: str, section: int, *, instruction: str | None = None, model: str | None = None
    ) -> ArticleRun:
        """Write section ``section`` (from 1) of a document again, with ``instruction`` if given ("more
        examples"); every other section, the abstract and the tags stay as they are."""
        article = self._load(document_id, model)
        if not 1 <= section <= len(article.sections):
            raise NotFound(
                f"section must be 1-{len(article.sections)} (the document has {len(article.sections)}), got {section}",
                param="section",
            )
        if instruction is not None and len(instruction) > 1000:
            raise InvalidRequest(f"instruction must be at most 1000 characters, got {len(instruction)}")
        return ArticleRun(self, article, [section - 1], "regenerate", instruction=instruction or None)

    # -- changing a document without a model ------------------------------------------------------

    def set_outline(self, document_id: str, headings: list[str]) -> dict:
        """A new version with ``headings`` as the outline. A section whose heading is unchanged keeps its
        text (wherever it moved); the others are left to write (``continue_``)."""
        article = self._load(document_id)
        headings = check_headings(headings)
        kept = {s["heading"].casefold(): s for s in article.sections}
        article.sections = [dict(kept.get(h.casefold(), _section(h)), heading=h) for h in headings]
        article.headings = headings
        article.notes = []
        self.store.add_version(document_id, article.record("outline edited"))
        return self.get(document_id)

    def save(self, document_id: str, content: str) -> dict:
        """A new version holding the user's own Markdown; its title, abstract, sections and tags are read
        from it (``# title``, ``## heading`` per section, a ``**Tags:**`` line), so a later regenerate or
        continue works on what the user wrote."""
        if not content.strip():
            raise InvalidRequest("content is empty; an article needs at least its title", param="content")
        if len(content) > MAX_CONTENT:
            raise InvalidRequest(f"content must be at most {MAX_CONTENT} characters, got {len(content)}")
        article = self._load(document_id)
        parts = parse_markdown(content, article.title)
        article.title = parts.title
        article.abstract, article.tags = parts.abstract, parts.tags
        article.headings = [h for h, _ in parts.sections]
        article.sections = [
            dict(_section(h), text=body, state="done" if body else "pending") for h, body in parts.sections
        ]
        article.notes = []
        record = article.record("user edit")
        record.content = content
        self.store.add_version(document_id, record, title=parts.title)
        return self.get(document_id)

    # -- reading ----------------------------------------------------------------------------------

    def get(self, document_id: str, version: int | None = None) -> dict:
        """A document with one version (the latest unless ``version``); NotFound names what exists."""
        return self.store.get(document_id, version)

    def versions(self, document_id: str) -> list[dict]:
        """The versions of a document: number, reason ("section 3 regenerated"), model, created, characters."""
        return self.store.versions(document_id)

    def list(self, limit: int = 50, query: str | None = None) -> list[dict]:
        """Documents, newest first; ``query``: those whose title or any version contains it."""
        return self.store.list(limit, query)

    def delete(self, document_id: str) -> None:
        """Delete a document and its versions."""
        self.store.delete(document_id)
        if self.labeler:
            self.labeler.log.forget("document", document_id)

    def export(self, document_id: str, fmt: str, version: int | None = None) -> ExportFile:
        """A document's version as a file: Markdown (md), a standalone HTML page (html) or Word (docx),
        with the AI-generated content labels the settings ask for (ProduceID ``<document id>/v<number>``),
        recorded with the document (``studio.text_labels.exports("document", id)``)."""
        doc = self.get(document_id, version)
        number = doc["version"]["number"]
        labeling = self.labeler.labeling(f"{document_id}/v{number}") if self.labeler else None
        out = export_document(doc["version"]["content"], doc["title"], doc["language"], fmt, labeling)
        if self.labeler:
            self.labeler.record("document", document_id, fmt, out.labels, version=number)
        return out

    def exports(self, document_id: str) -> list[dict]:
        """The document's exports, oldest first, with the labels each carried (NotFound for no such
        document): version, format, label_line, label_position, label_metadata, digest, created."""
        self.store.get(document_id)
        return self.labeler.exports("document", document_id) if self.labeler else []

    # -- the pipeline -----------------------------------------------------------------------------

    def _load(self, document_id: str, model: str | None = None) -> _Article:
        doc = self.store.get(document_id)
        v = doc["version"]
        spec = ArticleSpec.model_validate(v["spec"])
        resolved = self.chat.resolve_model(model or v["model"] or self.chat.registry.default_model).id
        return _Article(
            spec=spec,
            model=resolved,
            title=doc["title"],
            headings=list(v["outline"]),
            sections=[dict(s) for s in v["sections"]],
            abstract=v["abstract"],
            tags=list(v["tags"]),
            options=v["options"],
            document_id=document_id,
        )

    def _run(self, run: ArticleRun) -> Iterator[WriteEvent]:
        article, spec = run.article, run.article.spec
        if run.fit.fits is False:
            yield WriteEvent(
                "language", document_id=article.document_id, message=run.fit.message, fit=run.fit.as_dict()
            )
        before = self._snapshot(article)
        current: int | None = None
        status, error = "done", None
        try:
            if article.document_id is None:
                if not article.headings:
                    yield from self._outline(run)
                article.document_id, _ = self.store.create(article.title, spec.language, article.record("outline"))
                before = self._snapshot(article)
                yield WriteEvent("outline", document_id=article.document_id, headings=list(article.headings))
                if run.kwargs.get("outline_only"):
                    run.version = 1
                    yield WriteEvent("done", document_id=article.document_id, version=1)
                    return
                run.todo = list(range(len(article.sections)))
            for i in run.todo:
                if run.cancelled.is_set():
                    status = "cancelled"
                    break
                current = i
                yield from self._write_section(run, i)
                if article.sections[i]["state"] != "done":
                    status = "cancelled"
                    break
                current = None
            complete = all(s["state"] == "done" for s in article.sections)
            if status == "done" and complete and run.mode != "regenerate" and not run.cancelled.is_set():
                if not article.abstract or run.mode == "new":
                    yield from self._abstract(run)
                if not article.tags and not run.cancelled.is_set():
                    yield from self._tags(run)
                if run.cancelled.is_set():
                    status = "cancelled"
        except _Stopped:
            status = "cancelled"
        except StudioError as exc:
            status, error = "error", exc.message
        except (GeneratorExit, KeyboardInterrupt):
            # The reader went away (a closed connection, Ctrl-C): keep what was written, then stop.
            status = "cancelled"
            run.cancel()
            raise
        except Exception as exc:
            # A bug: what was written is still kept, recorded as failed, and the error goes on up.
            status, error = "error", f"internal error ({type(exc).__name__})"
            raise
        finally:
            if current is not None and article.sections[current]["state"] == "writing":
                article.sections[current]["state"] = "partial" if article.sections[current]["text"] else "pending"
            if article.document_id is not None and self._snapshot(article) != before:
                run.version = self._save_version(run, status, current, error)
        if status == "error":
            yield WriteEvent("error", document_id=article.document_id, message=error, version=run.version)
        elif status == "cancelled":
            yield WriteEvent(
                "cancelled",
                document_id=article.document_id,
                version=run.version,
                message=self._stopped_message(article),
            )
        else:
            yield WriteEvent("done", document_id=article.document_id, version=run.version)

    @staticmethod
    def _snapshot(article: _Article) -> tuple:
        return [dict(s) for s in article.sections], article.abstract, list(article.tags)

    @staticmethod
    def _stopped_message(article: _Article) -> str:
        done = sum(s["state"] == "done" for s in article.sections)
        partial = [i + 1 for i, s in enumerate(article.sections) if s["state"] == "partial"]
        kept = f"; section {partial[0]} is kept unfinished" if partial else ""
        return (
            f"stopped: {done} of {len(article.sections)} sections written{kept}; "
            f"continue with `aigc docs continue {article.document_id}`"
        )

    def _save_version(self, run: ArticleRun, status: str, current: int | None, error: str | None) -> int:
        article, total = run.article, len(run.article.sections)
        if run.mode == "regenerate":
            reason = f"section {run.todo[0] + 1} regenerated"
        elif run.mode == "continue":
            written = [i + 1 for i in run.todo if article.sections[i]["state"] == "done"]
            reason = f"continued: section{'s' if len(written) != 1 else ''} {_ranges(written)} written"
        else:
            reason = "article written"
        if status == "cancelled":
            where = f" in section {current + 1} of {total}" if current is not None else ""
            reason += f", stopped{where}"
        elif status == "error":
            reason += f", failed: {error}"
        return self.store.add_version(article.document_id, article.record(reason))

    def _generate(
        self,
        run: ArticleRun,
        messages: list[Message],
        max_tokens: int,
        response_format: ResponseFormat | None = None,
        section: int | None = None,
    ) -> Iterator[str | WriteEvent]:
        """Stream one generation's text; stops when the run is cancelled. Records seed and sampling. A
        prompt the engine reads in steps (llama.cpp, a long one) comes first as ``reading`` events: how
        many of its tokens are read."""
        # The figures are the article's own shares of its length: kept within max_tokens_per_request.
        max_tokens = self.chat.limits.cap_tokens(max_tokens)
        options = run.article.spec.options.model_copy(update={"max_tokens": max_tokens})
        prepared = self.chat.prepare(
            messages,
            model=run.article.model,
            options=options,
            source="write",
            store=False,
            response_format=response_format,
        )
        chat = self.chat.start(prepared)
        run._chat = chat
        try:
            for chunk in chat:
                if run.cancelled.is_set():
                    chat.cancel()
                    break
                if chunk.prompt_progress is not None:
                    read, tokens = chunk.prompt_progress.read, chunk.prompt_progress.total
                    total = len(run.article.sections) if section is not None else None
                    yield WriteEvent(
                        "reading",
                        document_id=run.article.document_id,
                        section=section,
                        total=total,
                        read=read,
                        prompt_tokens=tokens,
                    )
                if chunk.text:
                    yield chunk.text
            result = chat.result
            run.last_result = result
            run.article.options = {k: v for k, v in prepared.record.options.items() if k != "response_format"}
        except BaseException:
            # Closed by its reader (a dropped connection, Ctrl-C): the engine stops too.
            chat.cancel()
            raise
        finally:
            run._chat = None

    def _answer(
        self, run: ArticleRun, messages: list[Message], max_tokens: int, response_format: ResponseFormat | None = None
    ) -> Generator[WriteEvent, None, str]:
        """A whole answer (outline, abstract, tags): its ``reading`` events are passed on, its text returned."""
        parts: list[str] = []
        for piece in self._generate(run, messages, max_tokens, response_format):
            if isinstance(piece, WriteEvent):
                yield piece
            else:
                parts.append(piece)
        return "".join(parts)

    def _messages(self, template: str, language: str, values: dict) -> list[Message]:
        system, prompt = self.templates.get(template, language).render(values)
        return ([Message(role="system", content=system)] if system else []) + [Message(role="user", content=prompt)]

    def _fit(
        self, run: ArticleRun, what: str, template: str, values: dict, max_tokens: int, trimmable: list[str]
    ) -> tuple[list[Message], int, list[str]]:
        """The messages for ``template`` fitted to the model's context with ``max_tokens`` of room: leave
        out the oldest earlier-section summaries (``values["previous"]`` as a list), then the end of each
        text value named in ``trimmable``, then shorten the answer's room to what is left; say each."""
        engine = self.chat.registry.engine(run.article.model)
        context, language = engine.context_length, run.article.spec.language
        previous: list[tuple[int, str]] = list(values.pop("previous", None) or [])
        dropped: list[int] = []
        notes: list[str] = []
        optional = {v.name for v in self.templates.get(template, language).variables if not v.required}

        def render() -> list[Message]:
            shown = dict(values)
            if previous or dropped:
                shown["previous"] = "\n".join(f"{k}. {s}" for k, s in previous) or None
            return self._messages(template, language, shown)

        def count(messages: list[Message]) -> int:
            return engine.count_prompt_tokens(messages, None, None)

        messages = render()
        n = count(messages)
        while n + max_tokens > context and previous:
            dropped.append(previous.pop(0)[0])
            messages = render()
            n = count(messages)
        if dropped:
            notes.append(
                f"{what}: left out the summaries of section{'s' if len(dropped) > 1 else ''} {_ranges(dropped)} "
                f"to fit the model's {context}-token context"
            )
        for key in trimmable:
            full = values.get(key) or ""
            if n + max_tokens <= context or not full:
                continue
            low, high = 0, len(full)  # the most characters of it that fit
            while low < high:
                mid = (low + high + 1) // 2
                values[key] = full[:mid]
                if count(render()) + max_tokens <= context:
                    low = mid
                else:
                    high = mid - 1
            values[key] = full[:low] or (None if key in optional else "")
            messages = render()
            n = count(messages)
            notes.append(
                f"{what}: left out {len(full) - low:,} of {len(full):,} characters of the {_LABELS.get(key, key)} "
                f"to fit the model's {context}-token context"
            )
        if n + max_tokens > context:
            room = context - n
            if room < MIN_SECTION_TOKENS:
                raise ContextLengthExceeded(
                    f"{what}: the prompt takes {n} tokens of the model's {context}-token context even with the "
                    f"earlier summaries and the notes left out, leaving {max(room, 0)} for the answer (at least "
                    f"{MIN_SECTION_TOKENS} needed); shorten the title or the outline, or use a model with a longer "
                    "context",
                    param="model",
                )
            notes.append(
                f"{what}: room for {room} new tokens only ({max_tokens} wanted) in the model's "
                f"{context}-token context; the text may come out shorter"
            )
            max_tokens = room
        return messages, max_tokens, notes

    def _note(self, run: ArticleRun, notes: list[str], section: int | None = None) -> Iterator[WriteEvent]:
        for message in notes:
            log.info("%s: %s", run.article.document_id, message)
            run.article.notes.append(message)
            total = len(run.article.sections) or None
            yield WriteEvent(
                "trimmed", document_id=run.article.document_id, section=section, total=total, message=message
            )

    def _common(self, article: _Article) -> dict:
        spec = article.spec
        return {"title": article.title, "audience": spec.audience or None, "tone": spec.tone or None}

    def _outline(self, run: ArticleRun) -> Iterator[WriteEvent]:
        article, spec = run.article, run.article.spec
        values = {
            **self._common(article),
            "length": spec.length,
            "sections": spec.sections,
            "notes": spec.notes or None,
        }
        engine = self.chat.registry.engine(article.model)
        response_format = None
        if engine.supports_response_format:
            # The grammar makes even a small model answer with exactly N headings, as a parseable list.
            # Up to 80 characters, the first not a space: a heading of blanks ("\n") is no heading.
            heading = {"type": "string", "pattern": "^\\S.{0,79}$"}
            schema = {
                "type": "object",
                "properties": {
                    "headings": {
                        "type": "array",
                        "items": heading,
                        "minItems": spec.sections,
                        "maxItems": spec.sections,
                    }
                },
                "required": ["headings"],
                "additionalProperties": False,
            }
            response_format = ResponseFormat(type="json_schema", name="outline", schema=schema)
        max_tokens = 40 * spec.sections + 32
        messages, max_tokens, notes = self._fit(run, "outline", "article-outline", values, max_tokens, ["notes"])
        yield from self._note(run, notes)
        answer = yield from self._answer(run, messages, max_tokens, response_format)
        if run.cancelled.is_set():
            raise _Stopped()
        headings = parse_headings(answer, spec.sections)
        if not headings:
            raise StudioError(
                f"model '{article.model}' gave no headings for the outline; write the outline yourself "
                "(one heading per line) or try again",
                code="empty_outline",
            )
        if len(headings) < spec.sections:
            short = (
                f"outline: the model gave {len(headings)} headings of the {spec.sections} asked; "
                "edit the outline to add more"
            )
            yield from self._note(run, [short])
        article.headings = headings
        article.sections = [_section(h) for h in headings]

    def _write_section(self, run: ArticleRun, i: int) -> Iterator[WriteEvent]:
        article, spec = run.article, run.article.spec
        total = len(article.sections)
        section = article.sections[i]
        per_section = max(spec.length // max(total, 1), 30)
        previous = [
            (k + 1, summarize(s["text"], spec.language))
            for k, s in enumerate(article.sections[:i])
            if s["text"].strip()
        ]
        values = {
            **self._common(article),
            "outline": "\n".join(f"{k}. {h}" for k, h in enumerate(article.headings, 1)),
            "previous": previous,
            "notes": spec.notes or None,
            "number": i + 1,
            "total": total,
            "heading": section["heading"],
            "length": per_section,
            "instruction": run.kwargs.get("instruction"),
        }
        wanted = spec.options.max_tokens or int(per_section * TOKENS_PER_UNIT[spec.language]) + 32
        messages, max_tokens, notes = self._fit(run, f"section {i + 1}", "article-section", values, wanted, ["notes"])
        yield WriteEvent(
            "section_start", document_id=article.document_id, section=i + 1, total=total, heading=section["heading"]
        )
        yield from self._note(run, notes, i + 1)
        section.update(text="", state="writing", seed=None, finish_reason=None, tokens=0)
        run.last_result = None
        for piece in self._generate(run, messages, max_tokens, section=i + 1):
            if isinstance(piece, WriteEvent):  # the prompt is being read
                yield piece
                continue
            section["text"] += piece
            yield WriteEvent("delta", document_id=article.document_id, section=i + 1, total=total, text=piece)
        result = run.last_result
        section["text"] = section["text"].strip()
        finished = result is not None and result.finish_reason in ("stop", "length") and not run.cancelled.is_set()
        if result is not None and result.finish_reason == "error":
            raise StudioError(f"section {i + 1}: the model failed", code="generation_failed")
        section["state"] = "done" if finished else ("partial" if section["text"] else "pending")
        if result is not None:
            section.update(seed=result.seed, finish_reason=result.finish_reason, tokens=result.usage.completion_tokens)
        yield WriteEvent(
            "section_done",
            document_id=article.document_id,
            section=i + 1,
            total=total,
            heading=section["heading"],
            text=section["text"],
            state=section["state"],
        )

    def _abstract(self, run: ArticleRun) -> Iterator[WriteEvent]:
        article, spec = run.article, run.article.spec
        summary = "\n".join(
            f"{k}. {s['heading']}: {summarize(s['text'], spec.language)}" for k, s in enumerate(article.sections, 1)
        )
        values = {"title": article.title, "audience": spec.audience or None, "summary": summary}
        wanted = min(200 if spec.language == "zh" else 160, spec.options.max_tokens or 1_000_000)
        messages, max_tokens, notes = self._fit(run, "abstract", "article-abstract", values, wanted, ["summary"])
        yield from self._note(run, notes)
        text = (yield from self._answer(run, messages, max_tokens)).strip()
        if not run.cancelled.is_set():
            article.abstract = text
            yield WriteEvent("abstract", document_id=article.document_id, text=text)

    def _tags(self, run: ArticleRun) -> Iterator[WriteEvent]:
        article = run.article
        values = {"title": article.title, "abstract": article.abstract or article.title}
        engine = self.chat.registry.engine(article.model)
        response_format = None
        if engine.supports_response_format:
            tag = {"type": "string", "minLength": 1, "maxLength": 30}
            schema = {
                "type": "object",
                "properties": {"tags": {"type": "array", "items": tag, "minItems": 3, "maxItems": 6}},
                "required": ["tags"],
                "additionalProperties": False,
            }
            response_format = ResponseFormat(type="json_schema", name="tags", schema=schema)
        wanted = min(120, article.spec.options.max_tokens or 1_000_000)
        messages, max_tokens, notes = self._fit(run, "tags", "article-tags", values, wanted, ["abstract"])
        yield from self._note(run, notes)
        answer = yield from self._answer(run, messages, max_tokens, response_format)
        if not run.cancelled.is_set():
            article.tags = parse_tags(answer)
            yield WriteEvent("tags", document_id=article.document_id, tags=list(article.tags))


class _Stopped(StudioError):
    """The run was stopped before the outline was complete."""


_LABELS = {"notes": "reference notes", "summary": "section summaries", "abstract": "abstract"}


def _ranges(numbers: list[int]) -> str:
    """1, 2, 3, 5 -> "1-3, 5"."""
    out: list[str] = []
    for n in sorted(numbers):
        if out and out[-1].split("-")[-1] == str(n - 1):
            out[-1] = f"{out[-1].split('-')[0]}-{n}"
        else:
            out.append(str(n))
    return ", ".join(out) or "none"
