"""How a generated image's labels look in the web UI (Images tab result, Gallery / History): the
badge, the NSFW score and action, and what was applied — from the record the labeling service stored."""

from __future__ import annotations

import html

from ..services.labeling import LABEL_KINDS, applied_labels
from .i18n import text

_BADGE = "display:inline-block;padding:1px 8px;border-radius:9px;font-size:.8rem;font-weight:600;margin-right:6px;"
_ON = _BADGE + "background:#1f6feb;color:#fff;"
_OFF = _BADGE + "background:var(--block-label-background-fill);color:var(--body-text-color-subdued);"
_WARN = _BADGE + "background:#d29922;color:#fff;"


def label_badge(lang: str | None, labels: dict | None) -> str:
    """The short form for a table cell: "AI生成" / "AI-generated", or "not labeled" for an old image."""
    return text(lang, "lab_not_labeled") if labels is None else text(lang, "lab_badge")


def nsfw_cell(lang: str | None, score: float | None, action: str | None) -> str:
    """ "NSFW 3% · allowed" for a table cell; empty for an image made before labels."""
    if score is None:
        return ""
    return f"{text(lang, 'lab_nsfw', score=f'{score * 100:.0f}')} · {text(lang, f'lab_action_{action}')}"


def labels_html(lang: str | None, labels: dict | None) -> str:
    """The badge, the NSFW line and the list of labels applied (and those that were off)."""
    if labels is None:
        badge = html.escape(text(lang, "lab_not_labeled"))
        return f'<div class="aigc-image-labels"><span style="{_OFF}">{badge}</span></div>'
    action = labels["nsfw_action"]
    nsfw = nsfw_cell(lang, labels["nsfw_score"], action)
    parts = [
        f'<span class="aigc-image-badge" style="{_ON}">{html.escape(text(lang, "lab_badge"))}</span>',
        f'<span class="aigc-image-nsfw" style="{_WARN if action != "none" else _OFF}">{html.escape(nsfw)}</span>',
    ]
    applied = applied_labels(labels) or []
    items = []
    for kind in applied:
        if kind == "visible":
            mark = labels["visible"]
            position = text(lang, f"lab_pos_{mark['position']}")
            items.append(text(lang, "lab_visible", text=mark["text"], position=position))
        elif kind == "watermark":
            items.append(text(lang, "lab_watermark", payload=f"0x{labels['watermark']:08x}"))
        elif kind == "metadata":
            items.append(text(lang, "lab_metadata", producer=labels.get("producer") or ""))
        else:
            items.append(text(lang, "lab_c2pa"))
    if labels.get("watermark_skipped"):
        items.append(text(lang, "lab_watermark_small"))
    skipped = {"watermark"} if labels.get("watermark_skipped") else set()
    off = [text(lang, f"lab_name_{kind}") for kind in LABEL_KINDS if kind not in applied and kind not in skipped]
    if not applied:
        items.append(text(lang, "lab_none"))
    elif off:
        items.append(text(lang, "lab_off", names=", ".join(off)))
    listed = "".join(f"<li>{html.escape(item)}</li>" for item in items)
    title = html.escape(text(lang, "lab_applied"))
    return (
        f'<div class="aigc-image-labels">{"".join(parts)}'
        f'<div style="margin-top:4px;font-size:.85rem">{title}:'
        f'<ul style="margin:2px 0 0 1.2em">{listed}</ul></div></div>'
    )
