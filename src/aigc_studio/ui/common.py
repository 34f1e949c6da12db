"""What every tab shares: the studio handle, per-browser-session runs, messages by the action that
failed, and widgets built from the parameter declarations (pydantic fields), so limits, defaults and
help never drift."""

from __future__ import annotations

import functools
import html
import inspect
import logging
import threading
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field

import gradio as gr
from fastapi import FastAPI
from pydantic import BaseModel, ValidationError

from ..errors import StudioError
from ..services.chat import ChatRun
from ..studio import Studio
from .i18n import t, text
from .messages import message_text, validation_text

log = logging.getLogger("aigc_studio.ui")

# Slider granularity where the declaration gives none (A1111's); width and height declare multiple_of.
SLIDER_STEPS = {"cfg_scale": 0.5, "image_cfg_scale": 0.05, "hr_scale": 0.05}


@dataclass
class UIContext:
    """The studio behind the UI, and what each browser session has running (to stop it)."""

    app: FastAPI | None
    fixed_studio: Studio | None = None
    # session hash -> its answer in progress (None: claimed, about to start)
    chat_runs: dict[str, ChatRun | None] = field(default_factory=dict)
    image_jobs: dict[str, str] = field(default_factory=dict)  # session hash -> job id
    write_runs: dict[str, object] = field(default_factory=dict)  # session hash -> its ArticleRun
    lock: threading.Lock = field(default_factory=threading.Lock)
    # What every event handler of the page goes through (the signed-in user, on a team server): applied
    # to the page's handlers when it is mounted, and to a tab's when the tab is built on first opening.
    handler_wrappers: list[Callable[[Callable], Callable]] = field(default_factory=list)

    @property
    def studio(self) -> Studio:
        # create_app() without a studio builds one in its lifespan; read it when a handler runs.
        return self.fixed_studio or self.app.state.studio


class Mistake(Exception):
    """A mistake the UI itself notices (nothing selected, an empty box): a key of the i18n table."""

    def __init__(self, key: str, **values: object):
        super().__init__(key)
        self.key, self.values = key, values


def note(message: str, kind: str = "error") -> str:
    """The HTML of a message shown by the action it is about: an error, or a confirmation ("ok")."""
    role = "alert" if kind == "error" else "status"
    icon = {"error": "⚠", "ok": "✓"}.get(kind, "")
    return f'<div class="aigc-note {kind}" role="{role}">{icon} {html.escape(message)}</div>'


def user_message(lang: str | None, exc: Exception) -> str:
    """What a user reads about ``exc`` (a mistake, a refused value, a studio error) in ``lang``."""
    if isinstance(exc, Mistake):
        return text(lang, exc.key, **exc.values)
    if isinstance(exc, ValidationError):
        return validation_text(lang, exc.errors())
    return message_text(lang, exc.message)  # type: ignore[attr-defined]


def reports_to(target: gr.Component) -> Callable[[Callable], Callable]:
    """Show a user's mistake as one message in ``target`` (a note by the action), and nothing else.

    A raised error would put Gradio's "Error" badge over every output of the event and a toast in
    English; instead the handler's other outputs stay as they were, the message is in the page's
    language (the handler's ``lang_value`` argument), and the server logs one line, not a traceback.
    ``target`` must be one of the event's outputs. Gradio passes ``gr.Request`` / ``gr.SelectData``
    to parameters annotated so only when they are positional: put them before any ``*values``.
    """

    def decorate(fn: Callable) -> Callable:
        signature = inspect.signature(fn)

        def shown(exc: Exception, args: tuple, kwargs: dict) -> dict:
            lang = signature.bind_partial(*args, **kwargs).arguments.get("lang_value")
            log.info("web UI, %s refused: %s", fn.__name__.removeprefix("on_"), user_message("en", exc))
            return {target: note(user_message(lang, exc))}

        if inspect.isgeneratorfunction(fn):

            @functools.wraps(fn)
            def gen_wrapper(*args, **kwargs):
                try:
                    yield from fn(*args, **kwargs)
                except (StudioError, ValidationError, Mistake) as exc:
                    yield shown(exc, args, kwargs)

            return gen_wrapper

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except (StudioError, ValidationError, Mistake) as exc:
                return shown(exc, args, kwargs)

        return wrapper

    return decorate


def _constraint(info, name: str):
    """A declared constraint of a field (``ge``, ``le``, ``multiple_of``, ``max_length``), or None."""
    return next((getattr(m, name) for m in info.metadata if getattr(m, name, None) is not None), None)


def _base_type(annotation) -> type:
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return next(a for a in typing.get_args(annotation) if a is not type(None))
    return typing.get_origin(annotation) or annotation


def field_widget(
    model: type[BaseModel], name: str, *, choices: list | None = None, unset: bool = False, **kwargs
) -> gr.Component:
    """A widget for one declared field: label and help from the i18n table (the English help is the
    field's description), limits and default from the declaration.

    ``choices``: a Radio for an int or bool field given (label, value) pairs (a bool's values are 0
    and 1), else a Dropdown. ``unset``: the field may stay empty (None: the model's own default), so a
    number box rather than a slider, which always holds a value.
    """
    info = model.model_fields[name]
    kind = _base_type(info.annotation)
    low, high = _constraint(info, "ge"), _constraint(info, "le")
    default = None if info.default_factory else info.default
    common = {"label": t(f"f_{name}"), "info": t(f"h_{name}"), "elem_id": f"{model.__name__.lower()}-{name}"}
    common.update(kwargs)
    if choices is not None:
        if kind in (int, bool) and all(isinstance(c, tuple) for c in choices):
            return gr.Radio(choices, value=int(default) if kind is bool else default, **common)
        return gr.Dropdown(choices, value=default, **common)
    if kind is bool:
        return gr.Checkbox(value=bool(default), **common)
    if kind in (int, float):
        step = _constraint(info, "multiple_of") or SLIDER_STEPS.get(name, 1 if kind is int else 0.01)
        if unset or low is None or high is None or high - low > 4096:
            number = gr.Number(
                value=default, minimum=low, maximum=high, step=step, precision=0 if kind is int else None, **common
            )
            # Gradio's own range check would answer in English, as a toast, with an "Error" badge on
            # every output; the declaration checks the range instead (the field's label in a message
            # by the action). The browser still gets the limits for the input's min and max.
            number.raise_if_out_of_bounds = lambda *_: None
            return number
        return gr.Slider(low, high, value=default, step=step, **common)
    max_length = _constraint(info, "max_length") if kind is str else None
    return gr.Textbox(value=default or "", max_length=max_length, **common)


def snaps_to_multiple(widget: gr.Slider, model: type[BaseModel], name: str) -> None:
    """Move a typed value to the nearest allowed multiple when its box is left, as the slider moves
    (A1111's size sliders go in steps of 8: a typed 513 becomes 512). Runs in the browser."""
    info = model.model_fields[name]
    multiple, low, high = (_constraint(info, key) for key in ("multiple_of", "ge", "le"))
    js = f"(v) => Math.min({high}, Math.max({low}, Math.round(Number(v) / {multiple}) * {multiple}))"
    widget.release(None, widget, widget, js=js)


def empty_to_none(value):
    """Empty widgets mean "not set": the declaration's default applies."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return value


def progress_bar(percent: float, label: str, done: bool = False) -> str:
    """The HTML of a progress bar with a label (image jobs, model pulls)."""
    return (
        f'<div class="aigc-progress{" done" if done else ""}"><div class="aigc-bar" style="width:{percent:.0f}%">'
        f"</div><span>{html.escape(label)}</span></div>"
    )
