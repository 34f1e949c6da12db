"""The text side of an article, apart from any model: the outline parsed from a model's answer, the
summaries that carry earlier sections into the next one's prompt, tags, and the Markdown the pipeline
assembles (and reads back when a user saves their own edit)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

__all__ = ["ArticleParts", "assemble_markdown", "parse_headings", "parse_markdown", "parse_tags", "summarize"]

_LIST_MARK = re.compile(
    r"^\s*(?:#{1,6}\s+|[-*+•]\s+|\(?\d{1,2}[.)、:：]\s*|第[一二三四五六七八九十\d]+[节章部分][:：、.\s]*)"
)
_SECTION_WORD = re.compile(r"^(?:section|part|chapter)\s+\d+\s*[:.\-–—]\s*", re.IGNORECASE)
_PREAMBLE = re.compile(r"[:：]\s*$")
_SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s*")
_TAG_SPLIT = re.compile(r"[,，、;；\n]|\s#")
UNFINISHED = "<!-- unfinished: the writing stopped part-way through this section -->"


def _clean_heading(line: str) -> str:
    line = _LIST_MARK.sub("", line.strip())
    line = _SECTION_WORD.sub("", line)
    line = line.strip().strip("*_`\"'“”「」《》").strip()
    return " ".join(line.split())


def parse_headings(answer: str, wanted: int) -> list[str]:
    """The section headings in a model's answer: a JSON list (or an object holding one), else the lines
    of a numbered or bulleted list, else every non-empty line; cleaned of numbers, bullets, quotes and
    Markdown marks, without repeats or lines that introduce the list ("Here is the outline:"), at most
    ``wanted`` of them."""
    text = answer.strip()
    fenced = re.search(r"```(?:json)?\s*(.*?)```", text, re.DOTALL)
    if fenced:
        text = fenced.group(1).strip()
    candidates: list[str] = []
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict):
        data = next((v for v in data.values() if isinstance(v, list)), None)
    if isinstance(data, list):
        candidates = [str(item) for item in data if isinstance(item, (str, int, float))]
    elif text[:1] in "{[" and text:
        # JSON cut short (the answer ran out of tokens): the complete strings in it, bar the key.
        strings = re.finditer(r'"((?:[^"\\]|\\.)*)"', text)
        candidates = [json.loads(f'"{m.group(1)}"') for m in strings if not text[m.end() :].lstrip().startswith(":")]
    else:
        lines = [line for line in text.splitlines() if line.strip()]
        listed = [line for line in lines if _LIST_MARK.match(line) or _SECTION_WORD.match(line.strip())]
        candidates = listed or [line for line in lines if not _PREAMBLE.search(line)]
    headings: list[str] = []
    for candidate in candidates:
        heading = _clean_heading(candidate)[:200]
        if heading and heading.casefold() not in (h.casefold() for h in headings):
            headings.append(heading)
    return headings[:wanted]


def summarize(text: str, language: str, limit: int | None = None) -> str:
    """The opening sentences of a section, up to ``limit`` characters (240 for English, 120 for
    Chinese): what the next section's prompt is told the section said. Cut at a sentence's end where
    one comes before the limit."""
    limit = limit or (120 if language == "zh" else 240)
    flat = " ".join(line.strip() for line in text.splitlines() if line.strip() and not line.startswith("<!--"))
    if len(flat) <= limit:
        return flat
    cut = flat[:limit]
    ends = [m.end() for m in _SENTENCE_END.finditer(cut) if m.end() > limit // 3]
    return (cut[: ends[-1]] if ends else cut).rstrip() + ("…" if not ends else "")


def parse_tags(answer: str, limit: int = 8) -> list[str]:
    """Tags from a model's answer: a JSON list, or text split at commas (either script), semicolons,
    newlines and hash marks; each cleaned of list marks and quotes, without repeats, at most ``limit``."""
    try:
        data = json.loads(answer)
    except ValueError:
        data = None
    if isinstance(data, dict):
        data = next((v for v in data.values() if isinstance(v, list)), None)
    pieces = [str(x) for x in data] if isinstance(data, list) else _TAG_SPLIT.split(answer)
    tags: list[str] = []
    for piece in pieces:
        tag = _clean_heading(piece).lstrip("#").strip().rstrip(".。")
        if tag and len(tag) <= 40 and tag.casefold() not in (t.casefold() for t in tags):
            tags.append(tag)
    return tags[:limit]


@dataclass
class ArticleParts:
    """An article's parts as its Markdown shows them."""

    title: str
    abstract: str = ""
    sections: list[tuple[str, str]] = field(default_factory=list)  # (heading, body)
    tags: list[str] = field(default_factory=list)


TAGS_LABEL = {"en": "Tags", "zh": "标签"}


def assemble_markdown(parts: ArticleParts, language: str, unfinished: int | None = None) -> str:
    """``# title``, the abstract, ``## heading`` and body per section, then the tags. A section not yet
    written is left out; ``unfinished`` (a 0-based index) marks the one the writing stopped in."""
    out = [f"# {parts.title}", ""]
    if parts.abstract:
        out += [parts.abstract.strip(), ""]
    for i, (heading, body) in enumerate(parts.sections):
        if not body.strip():
            continue
        out += [f"## {heading}", "", body.strip(), ""]
        if i == unfinished:
            out += [UNFINISHED, ""]
    if parts.tags:
        out += [f"**{TAGS_LABEL.get(language, 'Tags')}:** " + ", ".join(parts.tags), ""]
    return "\n".join(out).rstrip() + "\n"


_TAGS_LINE = re.compile(r"^\*\*(?:Tags|标签)[:：]\*\*\s*(.*)$")


def parse_markdown(content: str, fallback_title: str) -> ArticleParts:
    """An article's parts from its Markdown (a user's edit): the first ``# `` line is the title, the text
    before the first ``## `` the abstract, each ``## `` a section, a last ``**Tags:**`` line the tags."""
    parts = ArticleParts(title=fallback_title)
    current: list[str] = []
    heading: str | None = None
    in_fence = False
    abstract: list[str] = []
    for line in content.splitlines():
        if line.lstrip().startswith("```"):
            in_fence = not in_fence
        if not in_fence and line.startswith("# ") and heading is None and not abstract:
            parts.title = line[2:].strip() or fallback_title
            continue
        if not in_fence and line.startswith("## "):
            if heading is not None:
                parts.sections.append((heading, "\n".join(current).strip()))
            heading, current = line[3:].strip(), []
            continue
        tags = _TAGS_LINE.match(line.strip()) if not in_fence else None
        if tags:
            parts.tags = [t.strip() for t in re.split(r"[,，、]", tags.group(1)) if t.strip()]
            continue
        if line.strip() == UNFINISHED:
            continue
        (current if heading is not None else abstract).append(line)
    if heading is not None:
        parts.sections.append((heading, "\n".join(current).strip()))
    parts.abstract = "\n".join(abstract).strip()
    return parts
