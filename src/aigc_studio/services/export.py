"""Export a Markdown document as a file: Markdown itself, a standalone HTML page, or Word (.docx).

HTML is rendered by markdown-it-py (CommonMark, with tables and strikethrough); the page carries its
own small stylesheet and loads nothing. The .docx is built with python-docx from the same parse:
headings, paragraphs, bulleted and numbered lists, bold, italic, inline code, code blocks, quotes and
tables; raw HTML in the Markdown (the pipeline's "unfinished" comment) is left out.
"""

from __future__ import annotations

import html
import io
import re
from dataclasses import dataclass

from markdown_it import MarkdownIt
from markdown_it.token import Token

from ..errors import InvalidRequest

__all__ = ["FORMATS", "ExportFile", "export_document", "to_docx", "to_html"]

FORMATS = {
    "md": "text/markdown; charset=utf-8",
    "html": "text/html; charset=utf-8",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
}

PAGE_STYLE = """
body { max-width: 46rem; margin: 2rem auto; padding: 0 1rem; line-height: 1.6;
  font-family: system-ui, -apple-system, "Segoe UI", "PingFang SC", "Microsoft YaHei", "Noto Sans CJK SC", sans-serif; }
pre { background: #f5f5f7; padding: .8rem; overflow-x: auto; border-radius: 6px; }
code { font-family: ui-monospace, Consolas, monospace; }
blockquote { border-left: 4px solid #ccd; margin-left: 0; padding-left: 1rem; color: #445; }
table { border-collapse: collapse; } td, th { border: 1px solid #ccd; padding: .3rem .6rem; }
"""


@dataclass
class ExportFile:
    filename: str
    media_type: str
    data: bytes


def _markdown() -> MarkdownIt:
    # html=False: raw HTML in a document is shown as text, never run in the exported page.
    return MarkdownIt("commonmark", {"html": False}).enable(["table", "strikethrough"])


def _without_comments(content: str) -> str:
    # The pipeline's notes to itself (an unfinished section) are HTML comment lines: not for readers.
    return re.sub(r"(?m)^<!--.*-->[ \t]*$", "", content)


def to_html(content: str, title: str, language: str = "en") -> str:
    """A standalone HTML page of the Markdown ``content``."""
    body = _markdown().render(_without_comments(content))
    lang = "zh-CN" if language == "zh" else "en"
    return (
        f'<!DOCTYPE html>\n<html lang="{lang}">\n<head>\n<meta charset="utf-8">\n'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(title)}</title>\n<style>{PAGE_STYLE}</style>\n</head>\n<body>\n{body}</body>\n</html>\n"
    )


def _inline(paragraph, token: Token) -> None:
    """Runs for an inline token's children: text, bold, italic, strikethrough, code, links, breaks."""
    bold = italic = strike = False
    for child in token.children or []:
        kind = child.type
        if kind == "strong_open":
            bold = True
        elif kind == "strong_close":
            bold = False
        elif kind == "em_open":
            italic = True
        elif kind == "em_close":
            italic = False
        elif kind == "s_open":
            strike = True
        elif kind == "s_close":
            strike = False
        elif kind in ("text", "code_inline"):
            run = paragraph.add_run(child.content)
            run.bold, run.italic, run.font.strike = bold or None, italic or None, strike or None
            if kind == "code_inline":
                run.font.name = "Consolas"
        elif kind in ("softbreak",):
            paragraph.add_run(" ")
        elif kind == "hardbreak":
            paragraph.add_run().add_break()
        elif kind == "image":
            paragraph.add_run(child.content or child.attrGet("alt") or "")


def to_docx(content: str, title: str) -> bytes:
    """A Word document of the Markdown ``content``: ``#`` is Heading 1 (Word's Title is not used, so
    the outline pane lists every heading), lists keep their kind and depth."""
    from docx import Document
    from docx.shared import Pt

    document = Document()
    document.core_properties.title = title
    tokens = _markdown().parse(_without_comments(content))
    lists: list[str] = []  # "bullet" or "ordered", innermost last
    quote = 0
    style_for_paragraph: str | None = None
    i = 0
    while i < len(tokens):
        token = tokens[i]
        kind = token.type
        if kind == "heading_open":
            level = int(token.tag[1])
            heading = document.add_heading(level=min(level, 9))
            _inline(heading, tokens[i + 1])
            i += 3
            continue
        if kind in ("bullet_list_open", "ordered_list_open"):
            lists.append("bullet" if kind == "bullet_list_open" else "ordered")
        elif kind in ("bullet_list_close", "ordered_list_close"):
            lists.pop()
        elif kind == "list_item_open":
            depth = min(len(lists), 3)
            base = "List Bullet" if lists[-1] == "bullet" else "List Number"
            style_for_paragraph = base if depth == 1 else f"{base} {depth}"
        elif kind == "blockquote_open":
            quote += 1
        elif kind == "blockquote_close":
            quote -= 1
        elif kind == "paragraph_open":
            style = style_for_paragraph or ("Quote" if quote else None)
            style_for_paragraph = None
            paragraph = document.add_paragraph(style=style)
            _inline(paragraph, tokens[i + 1])
            i += 3
            continue
        elif kind in ("fence", "code_block"):
            for line in token.content.rstrip("\n").split("\n"):
                paragraph = document.add_paragraph(style="No Spacing")
                run = paragraph.add_run(line)
                run.font.name, run.font.size = "Consolas", Pt(9.5)
        elif kind == "table_open":
            i = _table(document, tokens, i)
            continue
        elif kind == "hr":
            document.add_paragraph("⁂").alignment = 1
        i += 1
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def _table(document, tokens: list[Token], i: int) -> int:
    """Add the table starting at tokens[i]; the index after it."""
    rows: list[list[Token]] = []
    while tokens[i].type != "table_close":
        if tokens[i].type == "tr_open":
            rows.append([])
        elif tokens[i].type == "inline" and rows:
            rows[-1].append(tokens[i])
        i += 1
    width = max((len(r) for r in rows), default=0)
    if rows and width:
        table = document.add_table(rows=len(rows), cols=width)
        table.style = "Table Grid"
        for r, row in enumerate(rows):
            for c, cell in enumerate(row):
                _inline(table.cell(r, c).paragraphs[0], cell)
    return i + 1


def _filename(title: str, ext: str) -> str:
    # Letters of any script stay; what a file system or a header would choke on goes.
    stem = re.sub(r"[^\w\-]+", "-", title, flags=re.UNICODE).strip("-")[:80] or "article"
    return f"{stem}.{ext}"


def export_document(content: str, title: str, language: str, fmt: str) -> ExportFile:
    """``content`` (Markdown) as a file in ``fmt``: md, html or docx."""
    if fmt not in FORMATS:
        raise InvalidRequest(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}", param="format")
    if fmt == "md":
        data = content.encode("utf-8")
    elif fmt == "html":
        data = to_html(content, title, language).encode("utf-8")
    else:
        data = to_docx(content, title)
    return ExportFile(_filename(title, fmt), FORMATS[fmt], data)
