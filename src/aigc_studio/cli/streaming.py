"""Printing a text answer as it streams, for every command that streams one."""

from __future__ import annotations

import sys
from collections.abc import Iterable

import click

from ..contracts import TextChunk


class ReadingLine:
    """While a long prompt is read, one line on a terminal's stderr says how far; the next text printed
    clears it. A pipe or a file gets nothing of it."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.shown = False

    def show(self, read: int, total: int, what: str = "the prompt") -> None:
        if self.tty:
            click.echo(f"\r\033[K(reading {what}: {read} of {total} tokens)", nl=False, err=True)
            self.shown = True

    def clear(self) -> None:
        if self.shown:
            click.echo("\r\033[K", nl=False, err=True)
            self.shown = False


def echo_answer(chunks: Iterable[TextChunk], err: bool = False) -> None:
    """Print each chunk's text as it comes (on stderr with ``err``), with a ``ReadingLine`` while a long
    prompt is read."""
    line = ReadingLine()
    for chunk in chunks:
        if chunk.prompt_progress is not None:
            line.show(chunk.prompt_progress.read, chunk.prompt_progress.total)
            continue
        line.clear()
        click.echo(chunk.text, nl=False, err=err)
