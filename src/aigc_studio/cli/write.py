"""``aigc write`` (an article from a title) and ``aigc docs`` (the stored documents and their versions)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click
from pydantic import ValidationError

from ..errors import validation_message
from ..services.writing import ArticleRun, ArticleSpec
from ..storage.files import write_atomic
from .options import field_option
from .streaming import ReadingLine


def _spec(**fields) -> ArticleSpec:
    try:
        return ArticleSpec(**{k: v for k, v in fields.items() if v is not None})
    except ValidationError as exc:
        raise click.UsageError(validation_message(exc.errors())[0]) from None


def _render(run: ArticleRun, quiet: bool) -> bool:
    """Show a run's progress on stderr (the text as it comes, unless ``quiet``); False when it stopped
    short (Ctrl-C, an error). Ctrl-C stops the model and keeps what was written."""
    events = iter(run)
    total = 0
    reading = ReadingLine()  # a long prompt being read, on a terminal
    try:
        for event in events:
            kind = event.type
            if kind == "reading":
                what = f"section {event.section}'s prompt" if event.section else "the prompt"
                reading.show(event.read or 0, event.prompt_tokens or 0, what)
                continue
            reading.clear()
            if kind == "language":
                click.secho(f"warning: {event.message}", fg="yellow", err=True)
            elif kind == "outline":
                total = len(event.headings or [])
                click.secho(f"Outline ({event.document_id}):", fg="cyan", err=True)
                for i, heading in enumerate(event.headings or [], 1):
                    click.echo(f"  {i}. {heading}", err=True)
            elif kind == "section_start":
                click.secho(f"\n[section {event.section}/{event.total}] {event.heading}", fg="cyan", err=True)
            elif kind == "delta" and not quiet:
                click.secho(event.text, nl=False, dim=True, err=True)
            elif kind == "trimmed":
                click.secho(f"\n({event.message})", fg="yellow", err=True)
            elif kind == "abstract":
                click.secho("\n[abstract]", fg="cyan", err=True)
            elif kind == "tags":
                click.secho(f"[tags] {', '.join(event.tags or [])}", fg="cyan", err=True)
            elif kind == "cancelled":
                click.secho(f"\n{event.message}", fg="yellow", err=True)
                return False
            elif kind == "error":
                click.secho(f"\nError: {event.message}", fg="red", err=True)
                if run.document_id:
                    click.secho(f"what was written is kept in {run.document_id}", fg="yellow", err=True)
                return False
            elif kind == "done":
                where = f"{event.document_id}, version {event.version}" if event.version else event.document_id
                click.secho(f"\n[done: {where}; {total or len(run.article.sections)} sections]", fg="cyan", err=True)
    except KeyboardInterrupt:
        events.close()  # the run saves what was written before it ends
        if run.document_id:
            click.secho(
                f"\n[stopped] what was written is kept in {run.document_id}; continue with: "
                f"aigc docs continue {run.document_id}",
                fg="yellow",
                err=True,
            )
        return False
    return True


def _output(studio, document_id: str | None, output: Path | None) -> None:
    if document_id is None:
        return
    if output is None:
        # The terminal gets the article as written; a file is an export and carries the labels.
        click.echo(studio.writing.get(document_id)["version"]["content"], nl=False)
    else:
        write_atomic(output, studio.writing.export(document_id, "md").data)
        click.secho(f"wrote {output}", fg="cyan", err=True)


def register(cli: click.Group) -> None:
    from .main import _studio
    from .options import options_from, sampling_options

    @cli.command()
    @click.argument("title")
    @click.option("--outline-only", is_flag=True, help="Write the outline only (edit it, then `aigc docs continue`).")
    @click.option("--lang", "--language", "language", type=click.Choice(["en", "zh"]), help="en (default) or zh.")
    @field_option(ArticleSpec, "sections", "--sections")
    @field_option(ArticleSpec, "length", "--length")
    @field_option(ArticleSpec, "audience", "--audience")
    @field_option(ArticleSpec, "tone", "--tone")
    @click.option(
        "--notes", type=click.File("r", encoding="utf-8"), help="A file of reference notes (at most 20000 characters)."
    )
    @click.option(
        "--heading", "headings", multiple=True, help="Give the outline yourself: one heading each. Repeatable."
    )
    @click.option("-m", "--model", help="Text model (default: the default model).")
    @click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write the article here.")
    @click.option("-q", "--quiet", is_flag=True, help="Progress only, not the text as it is written.")
    @sampling_options
    def write(
        title, outline_only, language, sections, length, audience, tone, notes, headings, model, output, quiet, **kwargs
    ):
        """Write an article from TITLE (or keywords): outline, sections, abstract, tags.

        Progress goes to stderr, the Markdown to stdout (or -o). Ctrl-C stops and keeps what was
        written; `aigc docs continue ID` goes on from there. The document and each version are kept
        (`aigc docs list`).
        """
        options = options_from(kwargs)
        spec = _spec(
            title=title,
            language=language,
            sections=sections if sections is not None or not headings else len(headings),
            length=length,
            audience=audience,
            tone=tone,
            notes=notes.read() if notes else None,
            model=model,
            options=options.model_dump(exclude_unset=True),
        )
        studio = _studio()
        try:
            run = studio.writing.start(spec, headings=list(headings) or None, outline_only=outline_only)
            finished = _render(run, quiet)
            if outline_only and finished:
                click.secho(
                    f"edit it with `aigc docs outline {run.document_id} HEADING...`, then "
                    f"`aigc docs continue {run.document_id}`",
                    fg="cyan",
                    err=True,
                )
                return
            _output(studio, run.document_id, output)
            if not finished:
                sys.exit(1)
        finally:
            studio.close()

    @cli.group()
    def docs() -> None:
        """Documents from `aigc write`: list, search, show, versions, export, continue, regenerate."""

    @docs.command("list")
    @click.option("-s", "--search", "query", help="Only documents whose title or text contains this (any language).")
    @click.option("-n", "--limit", default=20, show_default=True, type=click.IntRange(1, 1000))
    @click.option("--json", "as_json", is_flag=True)
    def docs_list(query, limit, as_json):
        """Documents, most recently changed first."""
        rows = _studio().writing.list(limit, query)
        if as_json:
            click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
            return
        for r in rows:
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(r["updated"]))
            click.echo(f"{r['id']}  {when}  {r['language']}  v{r['versions']:<3} {r['title']}")

    @docs.command("show")
    @click.argument("document_id")
    @click.option("-v", "--version", type=int, help="This version (default: the latest).")
    @click.option("--json", "as_json", is_flag=True, help="Everything stored: sections, spec, model, sampling.")
    def docs_show(document_id, version, as_json):
        """A document's Markdown."""
        doc = _studio().writing.get(document_id, version)
        if as_json:
            click.echo(json.dumps(doc, ensure_ascii=False, indent=2))
            return
        v = doc["version"]
        click.secho(f"{doc['id']} version {v['number']}/{doc['versions']}: {v['reason']} ({v['model']})", err=True)
        for note in v["notes"]:
            click.secho(f"({note})", fg="yellow", err=True)
        click.echo(v["content"], nl=False)

    @docs.command("versions")
    @click.argument("document_id")
    def docs_versions(document_id):
        """A document's versions and what made each."""
        for v in _studio().writing.versions(document_id):
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(v["created"]))
            click.echo(f"{v['number']:>3}  {when}  {v['characters']:>7} chars  {v['model'] or '-':<14} {v['reason']}")

    @docs.command("export")
    @click.argument("document_id")
    @click.option("-f", "--format", "fmt", type=click.Choice(["md", "html", "docx"]), default="md", show_default=True)
    @click.option("-v", "--version", type=int, help="This version (default: the latest).")
    @click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Default: the title.")
    def docs_export(document_id, fmt, version, output):
        """Save a document as Markdown, a standalone HTML page, or Word (.docx)."""
        out = _studio().writing.export(document_id, fmt, version)
        path = output or Path(out.filename)
        write_atomic(path, out.data)
        click.echo(f"wrote {path}")

    @docs.command("exports")
    @click.argument("document_id")
    def docs_exports(document_id):
        """A document's exports and the AI labels each carried (the label line, the AIGC metadata)."""
        for e in _studio().writing.exports(document_id):
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e["created"]))
            line = f"line at {e['label_position']}" if e["label_line"] else "no line"
            meta = f"AIGC {e['digest']}" if e["label_metadata"] else "no AIGC metadata"
            click.echo(f"v{e['version']:<3} {when}  {e['format']:<4}  {line:<13}  {meta}")

    @docs.command("continue")
    @click.argument("document_id")
    @click.option("-m", "--model", help="Another model than the one that wrote it.")
    @click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path))
    @click.option("-q", "--quiet", is_flag=True)
    def docs_continue(document_id, model, output, quiet):
        """Write the sections still missing (a stopped one again from its start), then abstract and tags."""
        studio = _studio()
        try:
            finished = _render(studio.writing.continue_(document_id, model), quiet)
            _output(studio, document_id, output)
            if not finished:
                sys.exit(1)
        finally:
            studio.close()

    @docs.command("regenerate")
    @click.argument("document_id")
    @click.argument("section", type=int)
    @click.option("-i", "--instruction", help='What to do differently ("more examples").')
    @click.option("-m", "--model", help="Another model than the one that wrote it.")
    @click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path))
    @click.option("-q", "--quiet", is_flag=True)
    def docs_regenerate(document_id, section, instruction, model, output, quiet):
        """Write SECTION (from 1) again; the rest stays as it is. A new version."""
        studio = _studio()
        try:
            run = studio.writing.regenerate(document_id, section, instruction=instruction, model=model)
            finished = _render(run, quiet)
            _output(studio, document_id, output)
            if not finished:
                sys.exit(1)
        finally:
            studio.close()

    @docs.command("outline")
    @click.argument("document_id")
    @click.argument("headings", nargs=-1, required=True)
    def docs_outline(document_id, headings):
        """Replace the outline; sections whose heading is unchanged keep their text. A new version."""
        doc = _studio().writing.set_outline(document_id, list(headings))
        v = doc["version"]
        for i, s in enumerate(v["sections"], 1):
            click.echo(f"{i}. {s['heading']}  ({'kept' if s['state'] == 'done' else 'to write'})")
        click.echo(f"version {v['number']}; write the rest with: aigc docs continue {document_id}")

    @docs.command("save")
    @click.argument("document_id")
    @click.argument("file", type=click.File("r", encoding="utf-8"))
    def docs_save(document_id, file):
        """Save your own edit of a document (Markdown) as a new version."""
        doc = _studio().writing.save(document_id, file.read())
        click.echo(f"saved version {doc['version']['number']} of {document_id}")

    @docs.command("rm")
    @click.argument("document_ids", nargs=-1, required=True)
    def docs_rm(document_ids):
        """Delete documents with all their versions."""
        studio = _studio()
        for document_id in document_ids:
            studio.writing.delete(document_id)
            click.echo(f"deleted {document_id}")
