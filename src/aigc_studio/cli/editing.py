"""`aigc rewrite`: an editing operation on a file (or stdin), streamed, with the diff on request."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import click

from ..services.editing import OPERATIONS, EditRequest
from ..storage.files import write_atomic
from .options import options_from, sampling_options
from .streaming import echo_answer
from .templates import read_input, studio_for

_SELECTION = re.compile(r"^\s*(\d*)\s*:\s*(\d*)\s*$")


def parse_selection(value: str | None) -> tuple[int | None, int | None]:
    """``START:END`` (either side may be left out) as offsets; UsageError for anything else."""
    if value is None:
        return None, None
    match = _SELECTION.match(value)
    if not match:
        raise click.UsageError(f"--selection takes START:END in characters (e.g. 0:120, 300:), got {value!r}")
    start, end = (int(g) if g else None for g in match.groups())
    return start, end


def _write(path: Path, text: str) -> None:
    # Whole or not at all: the file is replaced only once the new text is written beside it.
    write_atomic(path, text)


def register(cli: click.Group) -> None:
    @cli.command()
    @click.argument("file")
    @click.option("--op", type=click.Choice(list(OPERATIONS)), required=True, help="The editing operation.")
    @click.option("--selection", help="Edit only characters START:END of the file (0-based, END excluded).")
    @click.option(
        "--lang", "language", type=click.Choice(["en", "zh"]), help="Template language (default: the text's)."
    )
    @click.option("--tone", help="--op tone: the tone to write in (formal, friendly, persuasive, ...).")
    @click.option(
        "--to", "target", type=click.Choice(["en", "zh"]), help="--op translate: the language to translate into."
    )
    @click.option("-m", "--model", help="Text model (default: the default model).")
    @click.option(
        "-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write the whole new text here."
    )
    @click.option("--in-place", is_flag=True, help="Write the whole new text back to FILE.")
    @click.option("--diff", "show_diff", is_flag=True, help="Print the unified diff against the original.")
    @sampling_options
    def rewrite(file, op, selection, language, tone, target, model, output, in_place, show_diff, **kwargs):
        """Run an editing operation on FILE (- for stdin): continue, polish, expand, shorten, summarize,
        translate (--to), tone (--tone), titles, keywords.

        The model's answer streams to the terminal (to stderr when -o or --in-place take the result).
        FILE is never changed unless --in-place; -o writes the whole new text elsewhere; --diff prints
        the diff. titles and keywords print a list and change no text.
        """
        options = options_from(kwargs)
        start, end = parse_selection(selection)
        if in_place and output is not None:
            raise click.UsageError("give -o OUT or --in-place, not both")
        if in_place and file == "-":
            raise click.UsageError("--in-place needs a FILE; stdin cannot be written back")
        is_list = OPERATIONS[op].result == "list"
        if is_list and (in_place or output is not None or show_diff):
            raise click.UsageError(f"{op} gives a list and changes no text: -o, --in-place and --diff do not apply")
        text, _ = read_input(file)
        if not text:
            raise click.UsageError(f"{file} is empty: there is no text to {op}")
        request = EditRequest(
            op=op,
            text=text,
            start=start,
            end=end,
            language=language,
            tone=tone,
            target=target,
            model=model,
            options=options,
        )
        destination = file if in_place else output
        studio = studio_for()
        try:
            prepared = studio.editing.prepare(request, source="cli")
            for note in prepared.notes:
                click.secho(f"note: {note}", fg="yellow", err=True)
            run = studio.editing.start(prepared)
            to_stderr = destination is not None or is_list
            try:
                echo_answer(run, err=to_stderr)
            except KeyboardInterrupt:
                run.cancel()
                click.secho("\n[stopped: nothing was written]", fg="yellow", err=True)
                sys.exit(130)
            click.echo(err=to_stderr)
            result = run.result
            for note in result.notes[len(prepared.notes) :]:
                click.secho(f"note: {note}", fg="yellow", err=True)
            if is_list:
                for item in result.items or []:
                    click.echo(item)
                return
            if destination is not None:
                if result.changed:
                    _write(Path(destination), result.text)
                    click.secho(f"wrote {destination}", fg="cyan", err=True)
                else:
                    click.secho(f"no change; {destination} not written", fg="yellow", err=True)
            if show_diff:
                click.echo(result.diff or "(no change)")
        finally:
            studio.close()
