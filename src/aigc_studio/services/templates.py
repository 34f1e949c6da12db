"""Prompt templates: text with named variables (``{topic}``, ``{audience}``), kept as TOML files.

The studio's own templates ship in ``aigc_studio/templates/``; a user's live in ``AIGC_HOME/templates/``
and a user template with the name and language of a shipped one takes its place (removing it brings the
shipped one back). The article pipeline, the editing operations and the prompt expansion all speak to the
model through templates, so what they ask is data the user can read and change, not prose in code.

A template file::

    name = "polish"              # letters, digits, '-' and '_'
    language = "en"              # "en" or "zh"
    kind = "edit"                # "article", "edit", "prompt" (image prompts), "code" or "general"
    title = "Polish"
    description = "Fix grammar and flow without changing the meaning."
    system = "You are a careful editor."          # optional
    prompt = '''Polish this text. Answer with the text only.

    {text}'''

    [variables.text]
    description = "the text to polish"
    # required = true unless a default is given
    [variables.tone]
    description = "the tone to keep"
    default = "neutral"

``{name}`` is replaced by the variable's value as it is (a value's own braces are never read);
``{{`` and ``}}`` are literal braces. Every placeholder must be a declared variable and every declared
variable must be used; a render given a value no variable has, or missing a required one, is an error
that names it.
"""

from __future__ import annotations

import re
import string
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ..errors import InvalidRequest, NotFound
from ..storage.owners import owned_path

__all__ = [
    "BUILTIN_DIR",
    "KINDS",
    "LANGUAGES",
    "Template",
    "TemplateError",
    "TemplateStore",
    "Variable",
    "parse_template",
]

BUILTIN_DIR = Path(__file__).resolve().parent.parent / "templates"
LANGUAGES = ("en", "zh")
KINDS = ("article", "edit", "prompt", "code", "general")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
MAX_TEMPLATE_CHARS = 50_000

Source = Literal["builtin", "user"]


class TemplateError(InvalidRequest):
    """A template that cannot be read or rendered; the message says which and why."""

    code = "invalid_template"


@dataclass(frozen=True)
class Variable:
    name: str
    description: str = ""
    default: str | None = None

    @property
    def required(self) -> bool:
        return self.default is None


@dataclass(frozen=True)
class Template:
    name: str
    language: str
    kind: str
    prompt: str
    title: str = ""
    description: str = ""
    system: str | None = None
    variables: tuple[Variable, ...] = ()
    source: Source = "user"
    overrides_builtin: bool = field(default=False, compare=False)

    @property
    def key(self) -> str:
        """``name.language``: the template's identity, and its file name without ``.toml``."""
        return f"{self.name}.{self.language}"

    def render(self, values: dict[str, object] | None = None, /, **more: object) -> tuple[str | None, str]:
        """The system text (or None) and the prompt, with each ``{variable}`` replaced.

        Raises TemplateError naming any value given for no variable, and any required variable left out.
        """
        given = {**(values or {}), **more}
        declared = {v.name: v for v in self.variables}
        unknown = sorted(set(given) - set(declared))
        if unknown:
            raise TemplateError(
                f"template '{self.key}' has no variable {', '.join(map(repr, unknown))}; "
                f"its variables: {', '.join(declared) or 'none'}",
                param="variables",
            )
        missing = [name for name, v in declared.items() if v.required and given.get(name) is None]
        if missing:
            raise TemplateError(
                f"template '{self.key}' needs a value for {', '.join(map(repr, missing))}", param="variables"
            )
        filled = {name: str(given[name]) if given.get(name) is not None else v.default for name, v in declared.items()}
        system = _substitute(self.system, filled) if self.system is not None else None
        return system, _substitute(self.prompt, filled)

    def to_toml(self) -> str:
        """The template as a file ``parse_template`` reads back unchanged."""
        lines = [f"name = {_toml_str(self.name)}", f"language = {_toml_str(self.language)}"]
        lines.append(f"kind = {_toml_str(self.kind)}")
        if self.title:
            lines.append(f"title = {_toml_str(self.title)}")
        if self.description:
            lines.append(f"description = {_toml_str(self.description)}")
        if self.system is not None:
            lines.append(f"system = {_toml_str(self.system)}")
        lines.append(f"prompt = {_toml_str(self.prompt)}")
        for v in self.variables:
            lines += ["", f"[variables.{v.name}]"]
            if v.description:
                lines.append(f"description = {_toml_str(v.description)}")
            if v.default is not None:
                lines.append(f"default = {_toml_str(v.default)}")
        return "\n".join(lines) + "\n"


def _toml_str(value: str) -> str:
    # A TOML basic string: JSON's escapes are TOML's, bar \/ which json.dumps never writes. JSON leaves
    # DEL and lone surrogates raw, which TOML (and UTF-8) cannot hold: escaped, DEL reads back as
    # itself and a surrogate is refused as the invalid text it is, instead of failing the write.
    import json

    return re.sub(r"[\x7f\ud800-\udfff]", lambda m: f"\\u{ord(m.group()):04x}", json.dumps(value, ensure_ascii=False))


def placeholders(text: str, where: str) -> list[str]:
    """The variable names ``text`` uses, in order; TemplateError for unbalanced braces or a placeholder
    that is not a plain name (``{}``, ``{0}``, ``{a.b}``, ``{a[0]}``, ``{a!r}``, ``{a:>5}``)."""
    names = []
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise TemplateError(f"{where}: {exc} (write {{{{ and }}}} for literal braces)", param="template") from None
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if not IDENTIFIER.match(name) or spec or conversion:
            shown = "{" + name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
            raise TemplateError(
                f"{where}: placeholder {shown} is not a variable name (letters, digits and _; "
                "write {{ and }} for literal braces)",
                param="template",
            )
        names.append(name)
    return names


def _substitute(text: str, values: dict[str, str | None]) -> str:
    out = []
    for literal, name, _, _ in string.Formatter().parse(text):
        out.append(literal)
        if name is not None:
            out.append(values[name] or "")
    return "".join(out)


def parse_template(text: str, where: str, source: Source = "user") -> Template:
    """A template from the text of its TOML file; TemplateError (naming ``where``) when it is not one."""
    if len(text) > MAX_TEMPLATE_CHARS:
        raise TemplateError(f"{where}: a template is at most {MAX_TEMPLATE_CHARS} characters", param="template")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TemplateError(f"{where}: not a TOML file: {exc}", param="template") from None
    known = {"name", "language", "kind", "title", "description", "system", "prompt", "variables"}
    extra = sorted(set(data) - known)
    if extra:
        raise TemplateError(f"{where}: unknown key {', '.join(map(repr, extra))}", param="template")
    for key in ("name", "language", "kind", "prompt"):
        if not isinstance(data.get(key), str) or not data[key].strip():
            raise TemplateError(f"{where}: '{key}' is required and must be a non-empty string", param="template")
    for key in ("title", "description", "system"):
        if key in data and not isinstance(data[key], str):
            raise TemplateError(f"{where}: '{key}' must be a string", param="template")
    if not NAME.match(data["name"]):
        raise TemplateError(
            f"{where}: name '{data['name']}' must be 1-64 letters, digits, '-' or '_'", param="template"
        )
    if data["language"] not in LANGUAGES:
        raise TemplateError(f"{where}: language must be one of {', '.join(LANGUAGES)}", param="template")
    if data["kind"] not in KINDS:
        raise TemplateError(f"{where}: kind must be one of {', '.join(KINDS)}", param="template")
    raw_vars = data.get("variables", {})
    if not isinstance(raw_vars, dict):
        raise TemplateError(f"{where}: 'variables' must be a table of tables", param="template")
    variables = []
    for name, spec in raw_vars.items():
        if not IDENTIFIER.match(name):
            raise TemplateError(f"{where}: variable name '{name}' must be letters, digits and _", param="template")
        if not isinstance(spec, dict) or set(spec) - {"description", "default"}:
            raise TemplateError(f"{where}: variable '{name}' takes only 'description' and 'default'", param="template")
        default = spec.get("default")
        if default is not None and not isinstance(default, str):
            raise TemplateError(f"{where}: variable '{name}': default must be a string", param="template")
        variables.append(Variable(name, str(spec.get("description", "")), default))
    used = set(placeholders(data["prompt"], f"{where}: prompt"))
    if "system" in data:
        used |= set(placeholders(data["system"], f"{where}: system"))
    declared = {v.name for v in variables}
    if used - declared:
        names = ", ".join("{" + n + "}" for n in sorted(used - declared))
        raise TemplateError(f"{where}: {names} used but not declared under [variables]", param="template")
    if declared - used:
        names = ", ".join(sorted(declared - used))
        raise TemplateError(f"{where}: variable {names} declared but never used", param="template")
    return Template(
        name=data["name"],
        language=data["language"],
        kind=data["kind"],
        prompt=data["prompt"],
        title=data.get("title", ""),
        description=data.get("description", ""),
        system=data.get("system"),
        variables=tuple(variables),
        source=source,
    )


class TemplateStore:
    """The shipped templates and the user's, by ``name`` and language."""

    def __init__(self, user_dir: Path, builtin_dir: Path = BUILTIN_DIR):
        self.local_dir, self.builtin_dir = user_dir, builtin_dir

    @property
    def user_dir(self) -> Path:
        """The caller's templates: ``AIGC_HOME/templates``, or a signed-in user's own folder."""
        return owned_path(self.local_dir)

    def _read(self, folder: Path, source: Source) -> dict[str, Template]:
        found: dict[str, Template] = {}
        if folder.is_dir():
            for path in sorted(folder.glob("*.toml")):
                template = parse_template(path.read_text(encoding="utf-8"), str(path), source)
                if path.stem != template.key:
                    raise TemplateError(f"{path}: holds '{template.key}'; its file must be {template.key}.toml")
                found[template.key] = template
        return found

    def all(self) -> list[Template]:
        """Every template, a user's in place of the shipped one it overrides, sorted by kind and key."""
        builtin = self._read(self.builtin_dir, "builtin")
        user = {
            key: Template(**{**t.__dict__, "overrides_builtin": key in builtin})
            for key, t in self._read(self.user_dir, "user").items()
        }
        return sorted({**builtin, **user}.values(), key=lambda t: (KINDS.index(t.kind), t.key))

    def get(self, name: str, language: str = "en") -> Template:
        """The template ``name`` in ``language`` (``name.language`` also works); NotFound lists what exists."""
        if "." in name:
            name, language = name.rsplit(".", 1)
        key = f"{name}.{language}"
        user = self.user_dir / f"{key}.toml"
        if user.is_file():
            return parse_template(user.read_text(encoding="utf-8"), str(user))
        shipped = self.builtin_dir / f"{key}.toml"
        if shipped.is_file():
            return parse_template(shipped.read_text(encoding="utf-8"), str(shipped), "builtin")
        keys = [t.key for t in self.all()]
        raise NotFound(f"no template '{key}'; there are: {', '.join(keys) or 'none'}", code="template_not_found")
