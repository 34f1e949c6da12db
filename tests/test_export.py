"""Export: Markdown as it is, a standalone HTML page, and a Word file opened back with python-docx."""

from __future__ import annotations

import io

import docx
import pytest

from aigc_studio.errors import InvalidRequest
from aigc_studio.services.export import export_document

ARTICLE = """# 本地 AI 创作

An abstract with **bold** and *italic* words.

## What you need

- a laptop
- **patience**

1. install
2. run

```python
print("hello")
```

> A quote.

| model | size |
|---|---|
| SmolLM2 | 135M |

<!-- unfinished: the writing stopped part-way through this section -->

**Tags:** AI, 写作
"""


def test_markdown_is_the_document_itself():
    out = export_document(ARTICLE, "本地 AI 创作", "zh", "md")
    assert out.data.decode("utf-8") == ARTICLE
    assert out.media_type == "text/markdown; charset=utf-8" and out.filename == "本地-AI-创作.md"


def test_html_is_a_standalone_page():
    out = export_document(ARTICLE, "本地 AI 创作", "zh", "html")
    page = out.data.decode("utf-8")
    assert page.startswith("<!DOCTYPE html>") and '<html lang="zh-CN">' in page
    assert "<title>本地 AI 创作</title>" in page
    assert "<h1>本地 AI 创作</h1>" in page and "<h2>What you need</h2>" in page
    assert "<strong>bold</strong>" in page and "<em>italic</em>" in page
    assert '<code class="language-python">print(&quot;hello&quot;)' in page
    assert "<td>SmolLM2</td>" in page
    assert "unfinished" not in page and "http" not in page.replace("http-equiv", "")  # loads nothing
    assert out.media_type == "text/html; charset=utf-8"


def test_docx_has_headings_lists_emphasis_and_code():
    out = export_document(ARTICLE, "本地 AI 创作", "zh", "docx")
    assert out.filename.endswith(".docx")
    assert out.media_type == "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
    document = docx.Document(io.BytesIO(out.data))
    paragraphs = [(p.style.name, p.text) for p in document.paragraphs]
    assert ("Heading 1", "本地 AI 创作") in paragraphs and ("Heading 2", "What you need") in paragraphs
    assert ("List Bullet", "a laptop") in paragraphs and ("List Number", "run") in paragraphs
    assert ("No Spacing", 'print("hello")') in paragraphs and ("Quote", "A quote.") in paragraphs
    abstract = next(p for p in document.paragraphs if p.text.startswith("An abstract"))
    assert [r.text for r in abstract.runs if r.bold] == ["bold"] and [r.text for r in abstract.runs if r.italic] == [
        "italic"
    ]
    code = next(p for p in document.paragraphs if p.text == 'print("hello")')
    assert code.runs[0].font.name == "Consolas"
    assert document.tables[0].cell(1, 0).text == "SmolLM2"
    assert document.core_properties.title == "本地 AI 创作"
    assert not any("unfinished" in p.text for p in document.paragraphs)


def test_unknown_format_is_refused_with_the_formats():
    with pytest.raises(InvalidRequest, match="format must be one of md, html, docx, got 'pdf'"):
        export_document(ARTICLE, "x", "en", "pdf")
