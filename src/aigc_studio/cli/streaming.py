"""Printing a text answer as it streams, for every command that streams one."""

from __future__ import annotations

import sys
from collections.abc import Iterable

import click

from ..contracts import TextChunk


def echo_answer(chunks: Iterable[TextChunk], err: bool = False) -> None:
    """Print each chunk's text as it comes (on stderr with ``err``). While a long prompt is read, a
    terminal's stderr shows how far, on one line that the answer's first text clears; a pipe or a file
    gets only the answer."""
    shown = False
    tty = sys.stderr.isatty()
    for chunk in chunks:
        if chunk.prompt_progress is not None:
            if tty:
                done, total = chunk.prompt_progress
                click.echo(f"\r(reading the prompt: {done} of {total} tokens)", nl=False, err=True)
                shown = True
            continue
        if shown:
            click.echo("\r\033[K", nl=False, err=True)
            shown = False
        click.echo(chunk.text, nl=False, err=err)
