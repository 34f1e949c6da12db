"""The template library (``studio.templates``): the templates a user lists, writes, deletes, exports,
imports and runs, over the files ``services/templates.py`` reads.

A template is named by its key, ``name.language`` (``blog-post.zh``). Shipped templates cannot be
deleted; saving a user template under a shipped one's key overrides it, and deleting that override
brings the shipped one back. Every write goes through ``parse_template`` first, so what lands in
``AIGC_HOME/templates`` is a template the studio can read; a file placed there by hand that is not one
is left out of the listing and reported by ``problems`` (with its line), not allowed to hide the rest.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..contracts import Message, TextOptions
from ..errors import NotFound, StudioError
from ..storage.files import write_atomic
from .chat import ChatService, PreparedChat
from .templates import (
    BUILTIN_DIR,
    KINDS,
    LANGUAGES,
    Template,
    TemplateError,
    TemplateStore,
    Variable,
    parse_template,
)

__all__ = [
    "KEY_PATTERN",
    "ShippedTemplate",
    "Source",
    "TemplateExists",
    "TemplateLibrary",
    "source_of",
    "template_from_fields",
]

# A key as the API, the CLI and file names use it.
KEY_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}\.(en|zh)$"
Source = Literal["shipped", "user", "override"]


class TemplateExists(StudioError):
    """A user template with that key exists and the caller did not ask to replace it."""

    status = 409
    code = "template_exists"


class ShippedTemplate(StudioError):
    """A shipped template cannot be deleted (a user's copy of it can)."""

    status = 409
    code = "template_is_shipped"


def source_of(template: Template) -> Source:
    """Where a template comes from: shipped with the studio, the user's own, or the user's in place of
    a shipped one."""
    if template.source == "builtin":
        return "shipped"
    return "override" if template.overrides_builtin else "user"


def split_key(key: str) -> tuple[str, str]:
    """``name.language`` as (name, language); TemplateError when it is not one."""
    if not re.match(KEY_PATTERN, key):
        raise TemplateError(
            f"a template key is NAME.LANGUAGE with NAME 1-64 letters, digits, '-' or '_' and LANGUAGE one of "
            f"{', '.join(LANGUAGES)} (e.g. polish.en), got {key!r}",
            param="key",
        )
    name, language = key.rsplit(".", 1)
    return name, language


def template_from_fields(
    *,
    name: str,
    language: str,
    kind: str,
    prompt: str,
    title: str = "",
    description: str = "",
    system: str | None = None,
    variables: dict[str, str | dict[str, str | None]] | None = None,
) -> str:
    """The TOML text of a template given as fields (a form, CLI options); checked by ``parse_template``
    when saved. ``variables`` maps a name to its description, or to ``{"description", "default"}``."""
    declared = []
    for var_name, spec in (variables or {}).items():
        if isinstance(spec, dict):
            declared.append(Variable(var_name, str(spec.get("description") or ""), spec.get("default")))
        else:
            declared.append(Variable(var_name, str(spec or "")))
    draft = Template(
        name=name,
        language=language,
        kind=kind,
        prompt=prompt,
        title=title,
        description=description,
        system=system or None,
        variables=tuple(declared),
    )
    return draft.to_toml()


@dataclass(frozen=True)
class Deleted:
    key: str
    restored: bool  # True: the user's override is gone and the shipped template is back


class TemplateLibrary:
    """The shipped templates and the user's (``user_dir``), with the operations a user has on them."""

    def __init__(self, user_dir: Path, chat: ChatService | None = None, builtin_dir: Path = BUILTIN_DIR):
        self.builtin_dir, self.chat = builtin_dir, chat
        self.store = TemplateStore(user_dir, builtin_dir)

    @property
    def user_dir(self) -> Path:
        """The caller's templates (each signed-in user has their own; shipped ones are everyone's)."""
        return self.store.user_dir

    # -- reading ---------------------------------------------------------------------------------

    def _shipped(self) -> dict[str, Template]:
        return self.store._read(self.builtin_dir, "builtin")

    def _user_files(self) -> list[Path]:
        return sorted(self.user_dir.glob("*.toml")) if self.user_dir.is_dir() else []

    def _read_user(self, path: Path) -> Template:
        template = parse_template(path.read_text(encoding="utf-8"), str(path))
        if path.stem != template.key:
            raise TemplateError(f"{path}: holds '{template.key}'; its file must be {template.key}.toml")
        return template

    def all(self, kind: str | None = None, language: str | None = None) -> list[Template]:
        """Every readable template (a user's in place of the shipped one it overrides), by kind and key;
        only those of ``kind`` / ``language`` when given."""
        if kind is not None and kind not in KINDS:
            raise TemplateError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}", param="kind")
        if language is not None and language not in LANGUAGES:
            raise TemplateError(f"language must be one of {', '.join(LANGUAGES)}, got {language!r}", param="language")
        found = self._shipped()
        for path in self._user_files():
            try:
                template = self._read_user(path)
            except TemplateError:
                continue  # reported by problems()
            found[template.key] = Template(**{**template.__dict__, "overrides_builtin": template.key in found})
        listed = sorted(found.values(), key=lambda t: (KINDS.index(t.kind), t.key))
        return [t for t in listed if kind in (None, t.kind) and language in (None, t.language)]

    def problems(self) -> list[str]:
        """What is wrong with each user template file that cannot be read (file, line and why)."""
        found = []
        for path in self._user_files():
            try:
                self._read_user(path)
            except TemplateError as exc:
                found.append(exc.message)
        return found

    def get(self, key: str, language: str | None = None) -> Template:
        """The template ``name.language`` (or ``get(name, language)``, as ``TemplateStore.get``); NotFound
        lists the keys there are."""
        name, language = split_key(key if language is None else f"{key}.{language}")
        template = self.store.get(name, language)
        if template.source == "user":
            shipped = (self.builtin_dir / f"{name}.{language}.toml").is_file()
            template = Template(**{**template.__dict__, "overrides_builtin": shipped})
        return template

    def export(self, key: str) -> tuple[str, str]:
        """(file name, the template's TOML file as it is kept), for a download."""
        template = self.get(key)
        folder = self.builtin_dir if template.source == "builtin" else self.user_dir
        return f"{template.key}.toml", (folder / f"{template.key}.toml").read_text(encoding="utf-8")

    # -- writing ---------------------------------------------------------------------------------

    def save(self, text: str, *, replace: bool = False, key: str | None = None, where: str = "template") -> Template:
        """Check ``text`` (a template file) and keep it as a user template; returns it.

        ``key``: the template must be that one (an edit of ``key``, which must exist). Without
        ``replace``, a user template of the same key is a TemplateExists error; a shipped one of the
        same key is overridden, never changed.
        """
        template = parse_template(text, where)
        if key is not None:
            self.get(key)  # NotFound when there is nothing to edit
            if template.key != key:
                raise TemplateError(
                    f"{where}: holds '{template.key}' but is saved as '{key}'; name and language must stay "
                    f"{key.rsplit('.', 1)[0]!r} and {key.rsplit('.', 1)[1]!r} (to rename, add it anew and delete "
                    "the old one)",
                    param="name",
                )
        path = self.user_dir / f"{template.key}.toml"
        if path.exists() and not replace:
            raise TemplateExists(
                f"a user template '{template.key}' already exists; replace it (--replace, \"replace\": true) "
                "or give this one another name",
                param="name",
            )
        self.user_dir.mkdir(parents=True, exist_ok=True)
        # Written whole, then renamed over: a crash leaves the old file or the new one, never half.
        write_atomic(path, text if text.endswith("\n") else text + "\n")
        return self.get(template.key)

    def delete(self, key: str) -> Deleted:
        """Delete the user template ``key``; a shipped template cannot be deleted, and deleting a
        user's override of one restores it."""
        name, language = split_key(key)
        path = self.user_dir / f"{key}.toml"
        shipped = (self.builtin_dir / f"{key}.toml").is_file()
        if not path.is_file():
            if shipped:
                raise ShippedTemplate(
                    f"'{key}' is a shipped template and cannot be deleted; to change it, edit it (your copy "
                    "then takes its place, and deleting your copy restores it)",
                    param="key",
                )
            self.store.get(name, language)  # raises NotFound with the keys there are
            raise NotFound(f"no template '{key}'", code="template_not_found")
        path.unlink()
        return Deleted(key, shipped)

    # -- running ---------------------------------------------------------------------------------

    def prepare_run(
        self,
        key: str,
        values: dict[str, str] | None = None,
        *,
        model: str | None = None,
        options: TextOptions | None = None,
        source: str = "templates",
    ) -> PreparedChat:
        """Render ``key`` with ``values`` and prepare a one-off generation of it (kept out of chat
        history); ``studio.chat.start`` runs it, streamed. TemplateError names an unknown or missing
        variable; ContextLengthExceeded gives the numbers when the prompt does not fit the model."""
        assert self.chat is not None, "a TemplateLibrary that runs templates needs the chat service"
        template = self.get(key)
        system, prompt = template.render(values or {})
        messages = ([Message(role="system", content=system)] if system else []) + [Message(role="user", content=prompt)]
        return self.chat.prepare(messages, model=model, options=options, source=source, store=False)
