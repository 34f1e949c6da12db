"""CLI options made from the pydantic declarations, so a flag's type, range and help never drift from
the parameter it sets."""

from __future__ import annotations

import types
import typing
from collections.abc import Callable

import click
from pydantic import BaseModel, ValidationError

from ..contracts import TextOptions
from ..errors import validation_message


def field_option(model: type[BaseModel], name: str, *decls: str, suffix: str = "") -> Callable:
    """A click option for ``model``'s field ``name``: its type, ``[ge..le]`` range and description.

    The default stays unset (None) so that only what the user typed reaches the request, and the
    declaration's own default applies otherwise.
    """
    field = model.model_fields[name]
    ann = field.annotation
    kinds = [a for a in typing.get_args(ann) if a is not type(None)] if isinstance(ann, types.UnionType) else [ann]
    low = next((m.ge for m in field.metadata if hasattr(m, "ge")), None)
    high = next((m.le for m in field.metadata if hasattr(m, "le")), None)
    rng = f" [{low}..{'' if high is None else high}]" if low is not None else ""
    decls = decls or ("--" + name.replace("_", "-"),)
    if kinds[0] is bool:  # an on/off switch: --tiling / --no-tiling
        switch = "--" + name.replace("_", "-")
        return click.option(
            f"{switch}/--no-{switch[2:]}", name, default=None, show_envvar=True, help=f"{field.description}{suffix}"
        )
    if typing.get_origin(kinds[0]) is list:
        return click.option(*decls, name, multiple=True, show_envvar=True, help=f"{field.description} Repeatable.")
    return click.option(
        *decls, name, type=kinds[0], default=None, show_envvar=True, help=f"{field.description}{rng}{suffix}"
    )


def sampling_options(fn: Callable) -> Callable:
    """One CLI option per TextOptions field, with the range and help declared there."""
    for name in reversed(TextOptions.model_fields):
        fn = field_option(TextOptions, name)(fn)
    return fn


def options_from(kwargs: dict) -> TextOptions:
    """The TextOptions the user typed (the rest stay unset), taken out of ``kwargs``."""
    fields = {k: kwargs.pop(k) for k in list(kwargs) if k in TextOptions.model_fields}
    try:
        return TextOptions(**{k: v for k, v in fields.items() if v not in (None, ())})
    except ValidationError as exc:
        raise click.UsageError(validation_message(exc.errors())[0]) from None
