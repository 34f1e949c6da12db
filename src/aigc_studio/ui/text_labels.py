"""The AI label on generated text in the web UI: a badge ("AI-generated" / "AI生成", in the page's
language) beside every generated item, and the label line on what is copied from one.

- The badge is CSS on the items' own elements: Chat's and the Code tab's assistant messages, the Write
  tab's article, the Compare panes and the Arena answers. It follows ``<html lang>``, which the page's
  language switch sets.
- Copying: Gradio's copy buttons write raw text with ``navigator.clipboard.writeText``, and a selection
  copied with Ctrl+C is raw text too. The page script (``COPY_SCRIPT``) adds the label line, as the
  settings ``label_text``, ``label_language`` and ``label_text_position`` say, to a copy made by a
  button of a generated item (the writeText call right after that click) and to a selection inside one
  (the ``copy`` event). It reads the line from an element the server fills at each page load
  (``label_holder``), so the page never states a setting of its own.
"""

from __future__ import annotations

import html
import json

import gradio as gr

from ..labels.text import TEXT_LABEL
from .common import UIContext
from .i18n import EN, ZH

__all__ = ["BADGE_CSS", "COPY_SCRIPT", "label_holder"]

# Where generated text is shown; the copy handler and the badges both go by these.
GENERATED = "#chat-log .bot-row, #code-log .bot-row, #write-editor, .cmp-pane, #arena-a, #arena-b"

_BADGE_TARGETS = (
    "#chat-log .bot-row .message-content::before",
    "#code-log .bot-row .message-content::before",
    "#write-editor [data-testid='block-info']::after",
    ".cmp-pane:not(.error):has(pre:not(:empty)) h4::after",
    "#arena-a:has(.md > *)::before",
    "#arena-b:has(.md > *)::before",
)


def _badge_css() -> str:
    style = (
        "display: inline-block; margin: 0 0 4px 6px; padding: 0 6px; border-radius: 4px; font-size: .72rem;"
        " font-weight: 500; line-height: 1.5; vertical-align: middle; color: var(--body-text-color-subdued);"
        " border: 1px solid var(--border-color-primary); background: var(--background-fill-secondary);"
    )
    rules = [f"{', '.join(_BADGE_TARGETS)} {{ content: {json.dumps(EN['text_badge'])}; {style} }}"]
    zh = ", ".join(f'html[lang="zh-CN"] {target}' for target in _BADGE_TARGETS)
    # Gradio adds a copy of each rule under its container's class (more specific); none matches an
    # <html> selector, so the page language's rule needs !important to win over the English one.
    rules.append(f"{zh} {{ content: {json.dumps(ZH['text_badge'], ensure_ascii=False)} !important; }}")
    # A message's badge sits on its own line above the text; the others beside a heading or label.
    rules.append(
        "#chat-log .bot-row .message-content::before, #code-log .bot-row .message-content::before"
        " { display: table; margin-left: 0; }"
    )
    rules.append("#aigc-text-label { display: none !important; }")
    return "\n".join(rules) + "\n"


BADGE_CSS = _badge_css()


def label_holder(ctx: UIContext) -> gr.HTML:
    """A hidden element holding the label line the copy handler adds (filled at each page load)."""

    def value() -> str:
        setting = ctx.studio.text_labels.copy_line()
        return (
            f'<span id="aigc-text-label-data" data-line="{html.escape(setting["line"])}"'
            f' data-position="{html.escape(setting["position"])}"></span>'
        )

    return gr.HTML(value, elem_id="aigc-text-label", container=False, padding=False)


COPY_SCRIPT = f"""
  // The label line on text copied from a generated item (ui/text_labels.py).
  const GENERATED = {json.dumps(GENERATED)};
  const LABEL_LINES = {json.dumps(list(TEXT_LABEL.values()), ensure_ascii=False)};
  function fromGenerated(node) {{
    const el = node instanceof Element ? node : node && node.parentElement;
    if (!el) return false;
    if (el.closest(GENERATED)) return true;
    // A chatbot's per-message buttons follow their message; "copy conversation" is in its top panel.
    const buttons = el.closest(".message-buttons");
    if (buttons) return !!(buttons.previousElementSibling && buttons.previousElementSibling.matches(".bot-row"));
    return !!(el.closest("#chat-log, #code-log") && el.closest(".top-panel"));
  }}
  window.aigcWithLabel = (text) => {{
    const data = document.getElementById("aigc-text-label-data");
    const line = data ? data.dataset.line : "";
    if (!line || !text.trim()) return text;
    const lines = text.trim().split(/\\r?\\n/).map((s) => s.trim());
    if (LABEL_LINES.includes(lines[0]) || LABEL_LINES.includes(lines[lines.length - 1])) return text;
    const body = text.replace(/^\\n+|\\n+$/g, "");
    return data.dataset.position === "start" ? `${{line}}\\n\\n${{body}}` : `${{body}}\\n\\n${{line}}`;
  }};
  let labelNextCopy = 0;
  document.addEventListener("click", (e) => {{
    const button = e.target instanceof Element && e.target.closest("button");
    labelNextCopy = button && fromGenerated(button) ? performance.now() + 3000 : 0;
  }}, true);
  if (navigator.clipboard && navigator.clipboard.writeText) {{
    const writeText = navigator.clipboard.writeText.bind(navigator.clipboard);
    navigator.clipboard.writeText = (text) => {{
      const label = performance.now() < labelNextCopy;
      labelNextCopy = 0;
      return writeText(label ? window.aigcWithLabel(String(text)) : text);
    }};
  }}
  document.addEventListener("copy", (e) => {{
    const active = document.activeElement;
    let text, from;
    if (active && /^(TEXTAREA|INPUT)$/.test(active.tagName) && typeof active.selectionStart === "number") {{
      text = active.value.slice(active.selectionStart, active.selectionEnd);
      from = active;
    }} else {{
      const selection = document.getSelection();
      text = selection ? selection.toString() : "";
      from = selection && selection.anchorNode;
    }}
    const label = performance.now() < labelNextCopy || fromGenerated(from);
    labelNextCopy = 0;
    if (!text || !label || !e.clipboardData) return;
    e.clipboardData.setData("text/plain", window.aigcWithLabel(text));
    e.preventDefault();
  }}, true);
"""
