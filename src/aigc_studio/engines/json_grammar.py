"""JSON Schema to a llama.cpp grammar, refusing what the grammar cannot enforce.

llama.cpp's converter (``json_schema_to_grammar``: llguidance's form from xllamacpp's wheel, GBNF from a
build without llguidance) turns a schema into a grammar the sampler enforces token by token. Converters
drop keywords they do not know (``minimum``, ``uniqueItems``, ``not`` ...) without a word. An answer that
only *looks* constrained is worse than a clear refusal, so every schema is first checked against the
table below: a keyword the grammar is known to enforce passes, an annotation passes, anything else is a
400 that names the keyword and where it is. ``$defs`` of every schema in one grammar are renamed apart,
so two tools may each have a ``$defs/Item`` of their own.
"""

from __future__ import annotations

import json
import re
from typing import Any

from ..errors import InvalidRequest

# Keywords that describe and never constrain: they may appear anywhere.
ANNOTATIONS = frozenset(
    {"title", "description", "default", "examples", "$schema", "$id", "$comment", "deprecated", "readOnly", "writeOnly"}
)
# What the converter enforces, keyword -> the values it applies to (the grammar it writes).
ENFORCED: dict[str, str] = {
    "type": "one type, or a list of types with no other keywords beside it",
    "enum": "the listed values",
    "const": "the one value",
    "anyOf": "any of the schemas (no other keywords beside it)",
    "allOf": "with one schema only",
    "$ref": "to #/$defs/NAME or #/definitions/NAME",
    "$defs": "at the top of the schema",
    "definitions": "at the top of the schema",
    "properties": "objects",
    "required": "objects, naming listed properties",
    "additionalProperties": "objects: true, false or a schema",
    "items": "arrays: one schema, or a list (a tuple)",
    "prefixItems": "arrays (a tuple)",
    "minItems": "arrays with one item schema",
    "maxItems": "arrays with one item schema",
    "minLength": "strings without pattern or format",
    "maxLength": "strings without pattern or format",
    "pattern": "strings: a regular expression without (?...) groups",
    "format": "strings: date, time, date-time, uuid",
}
TYPES = ("string", "number", "integer", "boolean", "null", "object", "array")
FORMATS = frozenset({"date", "time", "date-time", "uuid", "uuid1", "uuid2", "uuid3", "uuid4", "uuid5"})
# The schema of "any JSON value", in a form the converter turns into exactly that (it reads an empty
# schema as "any object").
ANY: dict[str, Any] = {"type": ["string", "number", "boolean", "null", "object", "array"]}
_STRING_KEYWORDS = {"pattern", "format", "minLength", "maxLength"}
# The converter spells out every repetition (x{3} is "x x x"), so a large bound makes a grammar of
# millions of rules; beyond this many it is refused.
MAX_REPEAT = 1000
_ARRAY_KEYWORDS = {"items", "prefixItems", "minItems", "maxItems"}
_OBJECT_KEYWORDS = {"properties", "required", "additionalProperties"}


class SchemaGrammar:
    """Collects schemas (with their ``$defs``) for one grammar; ``gbnf(root)`` writes it.

    ``add`` checks a schema and returns it with its references renamed into the shared ``$defs``.
    Errors are InvalidRequest naming ``label`` (where the schema was given) and the OpenAI ``param``.
    """

    def __init__(self) -> None:
        self.defs: dict[str, Any] = {}
        self._count = 0

    def add(self, schema: Any, label: str, param: str) -> Any:
        self._count += 1
        prefix = f"zzdef{self._count}-"
        if not isinstance(schema, dict):
            raise InvalidRequest(f"{label} must be a JSON Schema object, got {json.dumps(schema)[:80]}", param=param)
        defs = {**schema.get("definitions", {}), **schema.get("$defs", {})}
        checker = _Checker(label, param, prefix, set(defs))
        for name, sub in defs.items():
            self.defs[prefix + name] = checker.check(sub, f"#/$defs/{name}")
        top = {k: v for k, v in schema.items() if k not in ("$defs", "definitions")}
        return checker.check(top, "#")

    def grammar(self, root: Any, param: str) -> str:
        """llama.cpp's grammar for ``root`` (a schema returned by ``add``, or one built from them)."""
        from xllamacpp import json_schema_to_grammar

        if "$ref" in root:
            # A converter does not look beside a $ref, so the $defs would go unread at the top.
            root = {"anyOf": [root]}
        document = {**root, "$defs": self.defs} if self.defs else {**root}
        # At most one space between tokens, where the model wants one. Free whitespace (line breaks and
        # indents) lets a small model spend its tokens on layout and drift out of the format; none at all
        # (compact JSON) forces separators whose tokens a small model does not expect, and it then writes
        # those characters inside the strings instead.
        document["x-guidance"] = {"whitespace_flexible": False, "whitespace_pattern": "[ ]?"}
        try:
            return one_space(json_schema_to_grammar(document))
        except (RuntimeError, ValueError) as exc:
            # The checks above should leave nothing for the converter to trip over; if one slips
            # through, it is still the schema's fault and a 400, never a 500.
            raise InvalidRequest(
                f"the JSON Schema of {param} cannot be turned into a grammar: {exc}", param=param
            ) from exc


_SPACE_RULE = re.compile(r"(?m)^space ::= .*$")


def one_space(grammar: str) -> str:
    """The same whitespace whichever way llama.cpp was built: xllamacpp's wheel converts to llguidance,
    which reads ``x-guidance``; a build without llguidance (``setup.sh --native``) writes GBNF, whose
    ``space`` rule allows line breaks and indents. There it becomes at most one space too."""
    if grammar.startswith("%llguidance"):
        return grammar
    return _SPACE_RULE.sub('space ::= " "?', grammar)


def schema_grammar(schema: dict, label: str, param: str) -> str:
    """The grammar for one schema (a response format's): checked, converted."""
    grammar = SchemaGrammar()
    return grammar.grammar(grammar.add(schema, label, param), param)


class _Checker:
    def __init__(self, label: str, param: str, prefix: str, def_names: set[str]):
        self.label, self.param, self.prefix, self.def_names = label, param, prefix, def_names

    def refuse(self, path: str, why: str) -> InvalidRequest:
        return InvalidRequest(f"{self.label}: {why} (at {path})", param=self.param)

    def not_enforced(self, keyword: str, path: str, why: str = "") -> InvalidRequest:
        supported = ", ".join(ENFORCED)
        return self.refuse(
            path,
            f"'{keyword}' {why or 'cannot be enforced by the llama.cpp grammar'}; the grammar enforces "
            f"{supported} (and ignores only annotations such as title and description)",
        )

    def check(self, schema: Any, path: str) -> Any:
        if schema is True:
            return dict(ANY)
        if schema is False:
            raise self.refuse(path, "the schema false accepts nothing")
        if not isinstance(schema, dict):
            raise self.refuse(path, f"a schema must be an object or a boolean, got {json.dumps(schema)[:80]}")
        keys = set(schema) - ANNOTATIONS
        for keyword in sorted(keys):
            if keyword not in ENFORCED:
                hint = "; use anyOf" if keyword == "oneOf" else ""
                raise self.not_enforced(keyword, path, f"cannot be enforced by the llama.cpp grammar{hint}")
        if "$defs" in keys or "definitions" in keys:
            raise self.not_enforced("$defs", path, "is only read at the top of a schema")
        if not keys:
            return dict(ANY)
        for alone in ("$ref", "anyOf", "allOf"):
            if alone in keys and keys != {alone}:
                others = ", ".join(sorted(keys - {alone}))
                raise self.refuse(path, f"'{alone}' cannot be combined with {others}: the grammar would drop them")
        if "$ref" in keys:
            return {"$ref": self._ref(schema["$ref"], path)}
        if "anyOf" in keys:
            return {
                "anyOf": [self.check(s, f"{path}/anyOf/{i}") for i, s in enumerate(self._list(schema, "anyOf", path))]
            }
        if "allOf" in keys:
            parts = self._list(schema, "allOf", path)
            if len(parts) != 1:
                raise self.not_enforced("allOf", path, "with more than one schema cannot be enforced")
            return self.check(parts[0], f"{path}/allOf/0")
        out = {k: schema[k] for k in keys}
        kind = schema.get("type")
        if isinstance(kind, list):
            if not kind or any(t not in TYPES for t in kind):
                raise self.refuse(path, f"type must name JSON types ({', '.join(TYPES)}), got {kind}")
            if keys != {"type"}:
                raise self.refuse(path, "a list of types cannot be combined with other keywords; use anyOf")
            return out
        if kind is not None and kind not in TYPES:
            raise self.refuse(path, f"unknown type {kind!r}; one of {', '.join(TYPES)}")
        if "const" in keys or "enum" in keys:
            if keys - {"type", "const", "enum"} or {"const", "enum"} <= keys:
                raise self.refuse(path, "const and enum take no other keywords beside type")
            if "enum" in keys and (not isinstance(schema["enum"], list) or not schema["enum"]):
                raise self.refuse(path, "enum must be a non-empty list")
            return out
        if kind is None:
            # The converter needs the type for string and array keywords; a value of that type is valid.
            kind = "string" if keys & _STRING_KEYWORDS else "array" if keys & _ARRAY_KEYWORDS else None
            if kind:
                out["type"] = kind
        if kind in (None, "object") and keys & _OBJECT_KEYWORDS:
            self._object(schema, out, path)
        if kind == "array":
            self._array(schema, out, path)
        if kind == "string":
            self._string(schema, out, path)
        return out

    def _list(self, schema: dict, keyword: str, path: str) -> list:
        value = schema[keyword]
        if not isinstance(value, list) or not value:
            raise self.refuse(path, f"{keyword} must be a non-empty list of schemas")
        return value

    def _ref(self, ref: Any, path: str) -> str:
        for base in ("#/$defs/", "#/definitions/"):
            if isinstance(ref, str) and ref.startswith(base) and ref[len(base) :] in self.def_names:
                return "#/$defs/" + self.prefix + ref[len(base) :]
        raise self.not_enforced("$ref", path, f"to {ref!r} is not supported: only #/$defs/NAME of this schema")

    def _object(self, schema: dict, out: dict, path: str) -> None:
        props = schema.get("properties", {})
        if not isinstance(props, dict):
            raise self.refuse(path, "properties must be an object")
        out["properties"] = {name: self.check(sub, f"{path}/properties/{name}") for name, sub in props.items()}
        required = schema.get("required", [])
        if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
            raise self.refuse(path, "required must be a list of property names")
        missing = [r for r in required if r not in props]
        if missing:
            raise self.refuse(path, f"required names {', '.join(missing)}, which properties does not list")
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            out["additionalProperties"] = (
                True if not set(extra) - ANNOTATIONS else self.check(extra, f"{path}/additionalProperties")
            )
        elif extra is not None and not isinstance(extra, bool):
            raise self.refuse(path, "additionalProperties must be true, false or a schema")
        elif extra is None and props:
            # JSON Schema allows other keys unless told not to, and a small model given that room adds
            # keys until it runs out of tokens; the properties listed are the answer asked for (as in
            # OpenAI's structured outputs), so other keys need additionalProperties said outright.
            out["additionalProperties"] = False

    def _array(self, schema: dict, out: dict, path: str) -> None:
        items, prefix = schema.get("items"), schema.get("prefixItems")
        if isinstance(items, list) or prefix is not None:
            tuple_items = items if isinstance(items, list) else prefix
            if (
                not isinstance(tuple_items, list)
                or ({"minItems", "maxItems"} & set(schema))
                or (prefix is not None and items is not None)
            ):
                raise self.refuse(
                    path, "a tuple (items as a list, or prefixItems) takes no items schema, minItems or maxItems"
                )
            out.pop("items", None)
            out["prefixItems"] = [self.check(s, f"{path}/prefixItems/{i}") for i, s in enumerate(tuple_items)]
            return
        out["items"] = self.check(True if items is None else items, f"{path}/items")
        self._bounds(schema, "minItems", "maxItems", path)

    def _string(self, schema: dict, out: dict, path: str) -> None:
        present = _STRING_KEYWORDS & set(schema)
        if ("pattern" in present and present != {"pattern"}) or ("format" in present and present != {"format"}):
            raise self.refuse(
                path, f"{', '.join(sorted(present))} together cannot be enforced: pattern and format each stand alone"
            )
        if "format" in present and schema["format"] not in FORMATS:
            raise self.not_enforced(
                "format", path, f"{schema['format']!r} cannot be enforced (only {', '.join(sorted(FORMATS))})"
            )
        if "pattern" in present:
            pattern = schema["pattern"]
            if not isinstance(pattern, str) or "(?" in pattern:
                raise self.not_enforced("pattern", path, f"{pattern!r} uses (?...) groups, which the grammar lacks")
            for low, high in re.findall(r"\{(\d*),?(\d*)\}", pattern):
                if max(int(low or 0), int(high or 0)) > MAX_REPEAT:
                    raise self.refuse(path, f"pattern {pattern!r} repeats more than {MAX_REPEAT} times")
            # JSON Schema patterns match anywhere in the string; the converter wants them anchored.
            # Matching the whole string is one way of containing a match, so the answer stays valid.
            core = pattern[1:] if pattern.startswith("^") else pattern
            core = core[:-1] if core.endswith("$") and not core.endswith("\\$") else core
            out["pattern"] = f"^({_class_escapes(core)})$"
        self._bounds(schema, "minLength", "maxLength", path)

    def _bounds(self, schema: dict, low: str, high: str, path: str) -> None:
        for bound in (low, high):
            value = schema.get(bound)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
                raise self.refuse(path, f"{bound} must be a whole number >= 0, got {value!r}")
            if value is not None and value > MAX_REPEAT:
                raise self.refuse(path, f"{bound} {value} is too large for a grammar: at most {MAX_REPEAT}")
        if schema.get(low) is not None and schema.get(high) is not None and schema[low] > schema[high]:
            raise self.refuse(path, f"{low} {schema[low]} is above {high} {schema[high]}: nothing can match")


_CLASSES = {"d": "0-9", "w": "a-zA-Z0-9_", "s": " \\t\\n\\r"}


def _class_escapes(pattern: str) -> str:
    """``\\d``, ``\\w`` and ``\\s`` spelled as character classes, which GBNF has (it lacks the escapes).

    ``\\D``, ``\\W`` and ``\\S`` become negated classes outside ``[...]``; inside one they are left as
    they are, and llama.cpp's grammar parser refuses them (a 400).
    """
    out, i, in_class = [], 0, False
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            nxt = pattern[i + 1]
            if nxt in _CLASSES:
                out.append(_CLASSES[nxt] if in_class else f"[{_CLASSES[nxt]}]")
            elif nxt.lower() in _CLASSES and nxt.isupper() and not in_class:
                out.append(f"[^{_CLASSES[nxt.lower()]}]")
            else:
                out.append(c + nxt)
            i += 2
            continue
        if c == "[" and not in_class:
            in_class = True
        elif c == "]" and in_class:
            in_class = False
        out.append(c)
        i += 1
    return "".join(out)
