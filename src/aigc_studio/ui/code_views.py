"""How the Code tab shows things: a run in plain words, a diff with its lines coloured, a version's
note and label in the page's language, the code in the editor with its language's highlighting."""

from __future__ import annotations

import html
import re

import gradio as gr

from ..contracts import RunLimits
from .common import note
from .i18n import text

# gr.Code highlights these; a block in another language (bash, go, ...) shows as plain text.
EDITOR_LANGUAGES = {
    "python": "python",
    "javascript": "javascript",
    "typescript": "typescript",
    "bash": "shell",
    "sh": "shell",
    "shell": "shell",
    "html": "html",
    "css": "css",
    "json": "json",
    "sql": "sql",
    "c": "c",
    "cpp": "cpp",
    "c++": "cpp",
    "yaml": "yaml",
    "r": "r",
}


# Which limit field each kind of limit hit reads, and its unit (an i18n key: seconds are 秒 in Chinese).
_LIMIT_UNITS = {
    "wall": ("wall_seconds", "c_unit_s"),
    "cpu": ("cpu_seconds", "c_unit_s"),
    "memory": ("memory_mb", "c_unit_mib"),
    "processes": ("processes", None),
    "output": ("output_kb", "c_unit_kib"),
    "files": ("files_mb", "c_unit_mib"),
}


def _limit_value(lang: str | None, name: str, limits: dict) -> str:
    field, unit = _LIMIT_UNITS[name]
    value = limits.get(field)
    if not isinstance(value, (int, float)):
        return "?"
    return f"{value:g} {text(lang, unit)}" if unit else f"{value:g}"


def run_summary(lang: str | None, result: dict, matched: bool | None) -> str:
    """A run in plain words: how it ended (exit status, the signal and the limit that stopped it), its
    wall and CPU time, and whether its output matched the expected output."""
    r = result
    parts: list[str] = []
    if r.get("limit"):
        limit = text(lang, f"c_limit_{r['limit']}")
        parts.append(text(lang, "c_limit", limit=limit, value=_limit_value(lang, r["limit"], r.get("limits") or {})))
    if r.get("exit_code") is not None:
        parts.append(text(lang, "c_exit", code=r["exit_code"]))
    elif r.get("signal"):
        parts.append(text(lang, "c_signal", signal=r["signal"]))
    parts.append(text(lang, "c_wall", seconds=r.get("wall_seconds") or 0.0))
    if r.get("cpu_seconds") is not None:
        parts.append(text(lang, "c_cpu", seconds=r["cpu_seconds"]))
    if r.get("truncated"):
        parts.append(text(lang, "c_truncated"))
    if matched is not None:
        parts.append(text(lang, "c_matched" if matched else "c_mismatch"))
    if r.get("runtime"):
        parts.append(r["runtime"])
    return " · ".join(parts)


def result_html(lang: str | None, result: dict, matched: bool | None) -> str:
    """The run's summary as a note: "ok" when it exited 0, hit no limit and did not miss the expected output."""
    good = result.get("exit_code") == 0 and not result.get("limit") and matched is not False
    return note(run_summary(lang, result, matched), "ok" if good else "error")


def diff_html(diff: str) -> str:
    """A unified diff with its added and removed lines coloured."""
    rows = []
    for line in diff.splitlines():
        kind = "add" if line.startswith("+") and not line.startswith("+++") else ""
        kind = "del" if line.startswith("-") and not line.startswith("---") else kind
        kind = "hunk" if line.startswith("@@") else kind
        rows.append(f'<span class="{kind}">{html.escape(line) or " "}</span>')
    return f'<pre class="aigc-diff">{"".join(rows)}</pre>'


_NOTES = [
    (re.compile(r"generated"), "c_note_generated", ()),
    (re.compile(r"refined: (.*)", re.DOTALL), "c_note_refined", ("request",)),
    (re.compile(r"repair (\d+)/(\d+)"), "c_note_repair", ("n", "of")),
    (re.compile(r"edited"), "c_note_edited", ()),
    (re.compile(r"file: (.*)", re.DOTALL), "c_note_file", ("name",)),
]
_NOTE_SUFFIXES = {
    "; no fenced block, the whole answer taken as code": "c_note_unfenced",
    "; the answer ended inside the code block (cut off?)": "c_note_cut",
}


def note_text(lang: str | None, written: str) -> str:
    """A version's note ("generated", "refined: ...", "repair 1/3", "edited") in ``lang``."""
    tail = ""
    for end, key in _NOTE_SUFFIXES.items():
        if written.endswith(end):
            written, tail = written.removesuffix(end), text(lang, key)
            break
    for pattern, key, names in _NOTES:
        if match := pattern.fullmatch(written):
            return text(lang, key, **dict(zip(names, match.groups(), strict=True))) + tail
    return written + tail


def lowest(name: str) -> float:
    """The smallest value a limit may take, as its declaration says (``ge``; 0.1 s for ``gt=0``)."""
    for meta in RunLimits.model_fields[name].metadata:
        if getattr(meta, "ge", None) is not None:
            return meta.ge
    return 0.1


def conversation(messages: list[dict]) -> list[dict]:
    """A session's stored messages as the chatbot shows them: the questions and answers."""
    return [
        {"role": m["role"], "content": m["content"] if isinstance(m["content"], str) else str(m["content"])}
        for m in messages
        if m["role"] in ("user", "assistant") and not m.get("superseded")
    ]


def editor_update(version: dict | None) -> gr.Code:
    """The editor showing ``version`` (a stored version) with its language's highlighting."""
    if version is None:
        return gr.Code(value="", language=None)
    language = EDITOR_LANGUAGES.get((version["language"] or "").lower())
    return gr.Code(value=version["code"], language=language)


def version_label(lang: str | None, version: dict) -> str:
    """A version as the pickers list it: "v2 · refined: shorter · javascript" ("#2 v1 · ..." for block 2)."""
    block = version["block"]
    prefix = f"#{block} " if block != 1 else ""
    written = note_text(lang, version["note"])
    return f"{prefix}v{version['version']} · {written} · {version['language'] or '?'}"
