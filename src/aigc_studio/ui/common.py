"""What every tab shares: the studio handle, per-browser-session runs, errors as toasts, and widgets
built from the parameter declarations (pydantic fields), so limits, defaults and help never drift."""

from __future__ import annotations

import functools
import html
import inspect
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field

import gradio as gr
from fastapi import FastAPI
from pydantic import BaseModel, ValidationError

from ..errors import StudioError, validation_message
from ..services.chat import ChatRun
from ..studio import Studio
from .i18n import t

# Slider granularity where the declaration gives none (A1111's); width and height declare multiple_of.
SLIDER_STEPS = {"cfg_scale": 0.5, "image_cfg_scale": 0.05}


@dataclass
class UIContext:
    """The studio behind the UI, and what each browser session has running (to stop it)."""

    app: FastAPI | None
    fixed_studio: Studio | None = None
    chat_runs: dict[str, ChatRun] = field(default_factory=dict)  # session hash -> its answer in progress
    image_jobs: dict[str, str] = field(default_factory=dict)  # session hash -> job id

    @property
    def studio(self) -> Studio:
        # create_app() without a studio builds one in its lifespan; read it when a handler runs.
        return self.fixed_studio or self.app.state.studio


def shows_errors(fn: Callable) -> Callable:
    """Turn a studio or validation error into a toast that says what was wrong, not a traceback.

    Gradio passes ``gr.Request`` / ``gr.SelectData`` to parameters annotated so only when they are
    positional: put them before any ``*values``.
    """

    def message(exc: Exception) -> str:
        if isinstance(exc, ValidationError):
            return validation_message(exc.errors())[0]
        return exc.message  # type: ignore[attr-defined]

    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def gen_wrapper(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except (StudioError, ValidationError) as exc:
                raise gr.Error(message(exc), print_exception=False) from None

        return gen_wrapper

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (StudioError, ValidationError) as exc:
            raise gr.Error(message(exc), print_exception=False) from None

    return wrapper


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

    ``unset``: the field may stay empty (None: the model's own default), so a number box rather than
    a slider, which always holds a value.
    """
    info = model.model_fields[name]
    kind = _base_type(info.annotation)
    low, high = _constraint(info, "ge"), _constraint(info, "le")
    default = None if info.default_factory else info.default
    common = {"label": t(f"f_{name}"), "info": t(f"h_{name}"), "elem_id": f"{model.__name__.lower()}-{name}"}
    common.update(kwargs)
    if choices is not None:
        if kind is int and all(isinstance(c, tuple) for c in choices):
            return gr.Radio(choices, value=default, **common)
        return gr.Dropdown(choices, value=default, **common)
    if kind is bool:
        return gr.Checkbox(value=bool(default), **common)
    if kind in (int, float):
        step = _constraint(info, "multiple_of") or SLIDER_STEPS.get(name, 1 if kind is int else 0.01)
        if unset or low is None or high is None or high - low > 4096:
            return gr.Number(
                value=default, minimum=low, maximum=high, step=step, precision=0 if kind is int else None, **common
            )
        return gr.Slider(low, high, value=default, step=step, **common)
    max_length = _constraint(info, "max_length") if kind is str else None
    return gr.Textbox(value=default or "", max_length=max_length, **common)


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
