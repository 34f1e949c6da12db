"""Export a Markdown document as a file: Markdown itself, a standalone HTML page, or Word (.docx).

HTML is rendered by markdown-it-py (CommonMark, with tables and strikethrough); the page carries its
own small stylesheet and loads nothing. The .docx is built with python-docx from the same parse:
headings, paragraphs, bulleted and numbered lists, bold, italic, inline code, code blocks, quotes and
tables; raw HTML in the Markdown (the pipeline's "unfinished" comment) is left out.

Each file can carry the AI-generated content labels (``labels/text.py``): the visible label line, and
the implicit ``AIGC`` field in Markdown front matter, an HTML ``<meta name="AIGC">`` or the .docx core
properties (``comments`` holds the JSON, ``keywords`` says "AIGC"), with ``ReservedCode1`` the digest of
the body that file carries.
"""

from __future__ import annotations

import html
import io
import re
from dataclasses import dataclass, replace

from markdown_it import MarkdownIt
from markdown_it.token import Token

from ..errors import InvalidRequest
from ..labels.aigc import text_digest
from ..labels.text import (
    DOCX_KEYWORD,
    TextLabeling,
    add_label_line,
    docx_body_text,
    front_matter,
    html_body_text,
    read_text_labels,
    strip_label_line,
)

__all__ = ["FORMATS", "ExportFile", "export_document", "to_docx", "to_html", "to_markdown"]

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
.aigc-label { color: #556; font-size: .9rem; border: 1px solid #ccd; border-radius: 4px; padding: .2rem .5rem;
  display: inline-block; }
"""


@dataclass
class ExportFile:
    filename: str
    media_type: str
    data: bytes
    # What the file carries: {"line": bool, "position": str | None, "metadata": bool, "digest": str | None}
    labels: dict | None = None


def _markdown() -> MarkdownIt:
    # html=False: raw HTML in a document is shown as text, never run in the exported page.
    return MarkdownIt("commonmark", {"html": False}).enable(["table", "strikethrough"])


def _without_comments(content: str) -> str:
    # The pipeline's notes to itself (an unfinished section) are HTML comment lines: not for readers.
    return re.sub(r"(?m)^<!--.*-->[ \t]*$", "", content)


def to_html(content: str, title: str, language: str = "en", labeling: TextLabeling | None = None) -> str:
    """A standalone HTML page of the Markdown ``content`` (inside ``<main>``), with the labels of
    ``labeling``: ``<meta name="AIGC">`` whose digest is over the text of ``<main>``, and the label line
    as a paragraph before or after it."""
    body = _markdown().render(_without_comments(content))
    lang = "zh-CN" if language == "zh" else "en"

    def page(meta: str) -> str:
        main = f"<main>\n{body}</main>\n"
        if labeling and labeling.line:
            line = f'<p class="aigc-label">{html.escape(labeling.line)}</p>\n'
            main = line + main if labeling.position == "start" else main + line
        return (
            f'<!DOCTYPE html>\n<html lang="{lang}">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n{meta}'
            f"<title>{html.escape(title)}</title>\n<style>{PAGE_STYLE}</style>\n</head>\n<body>\n{main}</body>\n</html>\n"
        )

    if not (labeling and labeling.aigc):
        return page("")
    aigc = replace(labeling.aigc, reserved_code1=text_digest(html_body_text(page(""))))
    return page(f'<meta name="AIGC" content="{html.escape(aigc.to_json(), quote=True)}">\n')


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


# Characters XML 1.0 cannot hold (a .docx is XML): python-docx refuses a string with any of them.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def to_docx(content: str, title: str, labeling: TextLabeling | None = None) -> bytes:
    """A Word document of the Markdown ``content``: ``#`` is Heading 1 (Word's Title is not used, so
    the outline pane lists every heading), lists keep their kind and depth. ``labeling``: the label
    line as the first or last paragraph, the AIGC JSON in the core property ``comments`` (its digest
    over ``docx_body_text``) and "AIGC" in ``keywords``. Characters XML cannot hold are written as
    U+FFFD in the text and title, and as \\u escapes in the AIGC JSON (the same label)."""
    from docx import Document
    from docx.shared import Pt

    content, title = _NOT_XML.sub("\ufffd", content), _NOT_XML.sub("\ufffd", title)
    document = Document()
    document.core_properties.title = title[:255]  # python-docx's limit; the body has the title whole
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
    if labeling and labeling.aigc:
        aigc = replace(labeling.aigc, reserved_code1=text_digest(docx_body_text(document)))
        # Set on the element itself: python-docx refuses more than 255 characters through its property, and
        # a label with a long producer name or ids is longer (core.xml itself has no limit; Word reads it).
        comments = document.core_properties._element._get_or_add("description")
        comments.text = _NOT_XML.sub(lambda m: f"\\u{ord(m[0]):04x}", aigc.to_json())
        document.core_properties.keywords = DOCX_KEYWORD
    if labeling and labeling.line:
        line = document.add_paragraph(labeling.line)
        if labeling.position == "start":
            document.element.body.remove(line._p)
            first = document.element.body[0]
            first.addprevious(line._p)
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


def to_markdown(content: str, title: str, labeling: TextLabeling | None = None) -> str:
    """The Markdown ``content`` with the labels of ``labeling``: front matter (``title`` and ``AIGC``,
    its digest over the Markdown after the front matter without the label line) and the label line."""
    if not labeling:
        return content
    body = content
    if labeling.language:
        body = add_label_line(content, labeling.language, labeling.position)
    if not labeling.aigc:
        return body
    aigc = replace(labeling.aigc, reserved_code1=text_digest(strip_label_line(body)))
    return front_matter(aigc, title) + body


def export_document(
    content: str, title: str, language: str, fmt: str, labeling: TextLabeling | None = None
) -> ExportFile:
    """``content`` (Markdown) as a file in ``fmt``: md, html or docx, carrying the labels of ``labeling``
    (None: none)."""
    if fmt not in FORMATS:
        raise InvalidRequest(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}", param="format")
    if fmt == "md":
        data = to_markdown(content, title, labeling).encode("utf-8")
    elif fmt == "html":
        data = to_html(content, title, language, labeling).encode("utf-8")
    else:
        data = to_docx(content, title, labeling)
    labels = None
    if labeling:
        # Read back what was written: the record says what the file really carries.
        found = read_text_labels(data, f"x.{fmt}")
        labels = {
            "line": found.label_line is not None,
            "position": found.label_position,
            "metadata": found.aigc is not None,
            "digest": found.aigc.reserved_code1 if found.aigc else None,
        }
    return ExportFile(_filename(title, fmt), FORMATS[fmt], data, labels)
