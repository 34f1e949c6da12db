"""The editing operations panel under the Write tab's editor.

A placeholder with the agreed signature: the editing engineer's module (continue, polish, expand,
shorten, summarize, translate, ... on a selection of ``editor``) takes its place. It adds nothing yet.
"""

from __future__ import annotations

import gradio as gr

from .common import UIContext


def build(ctx: UIContext, editor: gr.Textbox) -> None:
    """Add the operations panel acting on ``editor`` (the Markdown being written). Adds nothing yet."""
