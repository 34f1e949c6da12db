"""How the CLI prints a streamed answer: the text on stdout; how far a long prompt has been read on a
terminal's stderr only, on one line that the answer's first text clears."""

from __future__ import annotations

import sys

from aigc_studio.cli.streaming import echo_answer
from aigc_studio.contracts import PromptProgress, TextChunk

CHUNKS = [
    TextChunk("", prompt_progress=PromptProgress(0, 300)),
    TextChunk("", prompt_progress=PromptProgress(128, 300)),
    TextChunk("", prompt_progress=PromptProgress(256, 300)),
    TextChunk("Hello"),
    TextChunk(" there."),
    TextChunk("", finish_reason="stop"),
]


def test_on_a_terminal_the_reading_shows_on_stderr_and_is_cleared(capsys, monkeypatch):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    echo_answer(CHUNKS)
    out, err = capsys.readouterr()
    assert out == "Hello there."
    assert err == (
        "\r\033[K(reading the prompt: 0 of 300 tokens)\r\033[K(reading the prompt: 128 of 300 tokens)"
        "\r\033[K(reading the prompt: 256 of 300 tokens)\r\033[K"
    )


def test_in_a_pipe_only_the_answer_is_printed(capsys, monkeypatch):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    echo_answer(CHUNKS)
    assert capsys.readouterr() == ("Hello there.", "")


def test_the_answer_can_go_to_stderr(capsys, monkeypatch):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    echo_answer(CHUNKS, err=True)
    assert capsys.readouterr() == ("", "Hello there.")
