"""A1111's requests and options as the API schema declares them, from the field table (``a1111_fields``)
and ``ImageRequest``: so that the schema accepts exactly what the studio serves.

- The request models check each field's JSON type, strictly ("5" is not a number, true is not 1); an
  unknown field passes them so that the A1111 service can name it (and suggest the field meant).
- Everything else a field must satisfy is declared in its JSON Schema and checked by the service, whose
  messages say why (``ImageRequest`` for the honoured fields, the table for the neutral ones, the
  options table for ``override_settings``): ImageRequest's limits; for names (sampler, schedule type,
  hires upscaler) a pattern of what ImageRequest accepts — any case, spaces around, a schedule type
  after a sampler name, an empty text for the default; the values of a neutral field that change
  nothing; the options ``override_settings`` may hold, each with the values it accepts.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, create_model

from ..contracts import HR_UPSCALERS, SAMPLERS, SCHEDULERS, ImageRequest, JsonInt, limits_of
from .a1111_fields import (
    DYNAMIC_PROMPTS_ARGS,
    DYNAMIC_PROMPTS_SCRIPT,
    IMG2IMG,
    OPTIONS,
    TXT2IMG,
    Accepted,
    Handled,
    Honoured,
    Neutral,
    Option,
)

__all__ = [
    "DYNAMIC_PROMPTS_PATTERN",
    "IMAGE_FORMAT",
    "NAME_FIELDS",
    "SAMPLER_PATTERN",
    "SCHEDULE_PATTERN",
    "UPSCALER_PATTERN",
    "alwayson_scripts_schema",
    "image_string",
    "names_pattern",
    "option_schema",
    "options_model",
    "options_request_schema",
    "request_model",
]

# The JSON Schema format of an input image: a PNG, JPEG or WebP file, base64 (a data: URL too), so not
# plain contentEncoding base64. JSON Schema cannot say "decodes to an image"; a string that does not is a
# 422 that says so.
IMAGE_FORMAT = "base64-image"
_REGEX_SPECIAL = set("\\^$.|?*+()[]{}/")
# Whitespace as Python's str.strip() has it (ECMA's \s differs: U+FEFF is in, U+001C-U+001F and U+0085 out),
# spelled out so that the pattern means the same in both dialects.
WHITESPACE = "[" + "".join(f"\\u{c:04x}" for c in range(0x3001) if chr(c).isspace()) + "]"
# A pattern for text that is not blank as the services see it (they strip() it): one character that is
# not Python whitespace. r"\S" would let U+001C-U+001F and U+0085 through, which strip() removes.
NOT_BLANK = "[^" + WHITESPACE[1:-1] + "]"


def _any_case(text: str) -> str:
    # Each letter in both cases, as ``str.lower()`` compares them; the Kelvin sign is the one non-ASCII
    # character whose lower case is an ASCII letter ("K".lower() == "k").
    out = []
    for ch in text:
        if ch.isalpha():
            variants = sorted({ch.lower(), ch.upper()} | ({"\u212a"} if ch.lower() == "k" else set()))
            out.append("[" + "".join(variants) + "]")
        else:
            out.append("\\" + ch if ch in _REGEX_SPECIAL else ch)
    return "".join(out)


def names_pattern(names: list[str], suffixes: list[str] = ()) -> str:
    """A pattern (ECMA and Python alike) for the texts ImageRequest accepts as one of ``names``: any case,
    whitespace around, and optionally one of ``suffixes`` after a space (a sampler name carrying its
    schedule type, as ``contracts.split_sampler_name`` reads it); whitespace alone means the default.

    ``$`` comes after optional whitespace: Python's ``$`` also matches before a final newline, which that
    whitespace takes anyway, so the pattern means the same in both dialects."""
    alternatives = "|".join(_any_case(n) for n in names)
    suffix = f"(?:{WHITESPACE}* (?:{'|'.join(_any_case(s) for s in suffixes)}))?" if suffixes else ""
    return f"^{WHITESPACE}*(?:(?:{alternatives}){suffix})?{WHITESPACE}*$"


SAMPLER_PATTERN = names_pattern(
    list(SAMPLERS), sorted({*SCHEDULERS, *(label.lower() for label in SCHEDULERS.values())})
)
# ImageRequest reads a schedule type by its API name or its label ("sgm_uniform", "SGM Uniform").
SCHEDULE_PATTERN = names_pattern(sorted({*SCHEDULERS, *(label.lower() for label in SCHEDULERS.values())}))
UPSCALER_PATTERN = names_pattern(list(HR_UPSCALERS))
NAME_FIELDS = frozenset({"sampler_name", "hr_sampler_name", "scheduler", "hr_scheduler", "hr_upscaler"})
_NAME_PATTERNS = {
    "sampler_name": SAMPLER_PATTERN,
    "hr_sampler_name": SAMPLER_PATTERN,
    "scheduler": SCHEDULE_PATTERN,
    "hr_scheduler": SCHEDULE_PATTERN,
    "hr_upscaler": UPSCALER_PATTERN,
}
# Field limits, as JSON Schema keywords
_KEYWORDS = {
    "ge": "minimum",
    "le": "maximum",
    "gt": "exclusiveMinimum",
    "lt": "exclusiveMaximum",
    "multiple_of": "multipleOf",
    "min_length": "minLength",
    "max_length": "maxLength",
}


def _json_type(kind: Any) -> dict[str, Any]:
    base = getattr(kind, "__origin__", kind)
    if kind is bool:
        return {"type": "boolean"}
    if kind is int:
        return {"type": "integer"}
    if kind is float:
        return {"type": "number"}
    if kind is str:
        return {"type": "string"}
    if base is list:
        args = getattr(kind, "__args__", ())
        return {"type": "array", **({"items": _json_type(args[0])} if args else {})}
    if base is dict:
        return {"type": "object"}
    return {}


def _declared_limits(field: str) -> dict[str, Any]:
    """ImageRequest's limits on ``field`` as JSON Schema keywords (minimum, maximum, multipleOf, maxLength)."""
    return {_KEYWORDS[name]: value for name, value in limits_of(ImageRequest, field).items()}


def image_string(description: str) -> Any:
    """A str declared as an input image (``IMAGE_FORMAT``)."""
    schema = {"type": "string", "format": IMAGE_FORMAT, "description": description}
    return Annotated[str, WithJsonSchema(schema)]


def _nullable(kind: Any, schema: dict[str, Any], description: str) -> tuple[Any, Any]:
    # null is a field's default in every A1111 client: the same as leaving it out.
    kind = JsonInt if kind is int else kind
    return Annotated[kind, WithJsonSchema(schema)] | None, Field(None, description=description)


def _honoured(policy: Honoured) -> tuple[Any, Any]:
    declared = ImageRequest.model_fields[policy.field]
    schema = {**_json_type(policy.kind), **_declared_limits(policy.field)}
    description = f"{policy.describe()} {declared.description}"
    if policy.field in _NAME_PATTERNS:
        description += " Any case, spaces around; empty: the default."
        pattern = _NAME_PATTERNS[policy.field]
        if policy.same:  # "Use same sampler": exactly that text means the first pass's
            same = "|".join(_exact(s) for s in policy.same)
            pattern = f"^{WHITESPACE}*(?:{same}){WHITESPACE}*$|{pattern}"
        schema["pattern"] = pattern
    return _nullable(policy.kind, schema, description)


def _exact(text: str) -> str:
    return "".join("\\" + ch if ch in _REGEX_SPECIAL else ch for ch in text)


def _neutral(policy: Neutral) -> tuple[Any, Any]:
    schema = _json_type(policy.kind)
    if policy.schema is not None:
        schema.update(policy.schema)
    elif policy.allowed == ([],):
        schema["maxItems"] = 0
    elif policy.allowed == ({},):
        schema["maxProperties"] = 0
    else:
        schema["enum"] = _distinct(policy.allowed)
    return _nullable(policy.kind, schema, policy.describe())


def _distinct(values: tuple) -> list:
    # JSON has one number 0: (0, 0.0) is one value in an enum.
    seen: list = []
    for value in values:
        if not any(json.dumps(value) == json.dumps(v) or (value == v and type(value) is not bool) for v in seen):
            seen.append(value)
    return seen


def _handled(name: str, policy: Handled) -> tuple[Any, Any]:
    if name == "sampler_index":
        return _nullable(str, {"type": "string", "pattern": SAMPLER_PATTERN}, policy.describe())
    if name == "override_settings":
        return _nullable(dict[str, Any], options_request_schema(in_request=True), policy.describe())
    if name == "infotext":
        return _nullable(str, {"type": "string", "maxLength": 20_000}, policy.describe())
    if name == "styles":
        schema = {"type": "array", "items": {"type": "string", "minLength": 1, "maxLength": 200}, "maxItems": 20}
        return _nullable(list[str], schema, policy.describe())
    if name == "alwayson_scripts":
        return _nullable(dict[str, Any], alwayson_scripts_schema(), policy.describe())
    if name == "init_images":
        items = {"type": "string", "format": IMAGE_FORMAT}
        schema = {"type": "array", "items": items, "minItems": 1}
        # Required, and not null; left out or null, the service says what is missing.
        return Annotated[list[str] | None, WithJsonSchema(schema)], Field(None, description=policy.describe())
    if name == "mask":
        return image_string(policy.describe()) | None, Field(None, description=policy.describe())
    return _nullable(policy.kind, {**_json_type(policy.kind), **_declared_limits_or_none(name)}, policy.describe())


# "Dynamic Prompts", in any case, spaces around, a version such as " v2.17.1" after it.
DYNAMIC_PROMPTS_PATTERN = f"^{WHITESPACE}*{_any_case(DYNAMIC_PROMPTS_SCRIPT)}(?: [vV][0-9][0-9.]*)?{WHITESPACE}*$"


def alwayson_scripts_schema() -> dict[str, Any]:
    """The always-on scripts the studio runs: the sd-dynamic-prompts extension only, with the script args
    it honours (see ``a1111_fields.DYNAMIC_PROMPTS_ARGS``)."""
    args = {
        "type": "array",
        "prefixItems": [{**schema, "description": name} for name, schema, _ in DYNAMIC_PROMPTS_ARGS],
        "maxItems": len(DYNAMIC_PROMPTS_ARGS),
    }
    script = {"type": "object", "properties": {"args": args}, "additionalProperties": False}
    return {
        "type": "object",
        "patternProperties": {DYNAMIC_PROMPTS_PATTERN: script},
        "additionalProperties": False,
        "maxProperties": 1,
    }


def _declared_limits_or_none(name: str) -> dict[str, Any]:
    return _declared_limits(name) if name in ImageRequest.model_fields else {}


def request_model(endpoint: str) -> type[BaseModel]:
    """The request body of A1111's /sdapi/v1/<endpoint> (txt2img or img2img): every field of the table,
    with what the studio does with it and the values it accepts."""
    table = TXT2IMG if endpoint == "txt2img" else IMG2IMG
    fields: dict[str, Any] = {}
    for name, policy in table.items():
        if isinstance(policy, Honoured):
            fields[name] = _honoured(policy)
        elif isinstance(policy, Neutral):
            fields[name] = _neutral(policy)
        elif isinstance(policy, Accepted):
            fields[name] = _nullable(policy.kind, _json_type(policy.kind), policy.describe())
        else:
            fields[name] = _handled(name, policy)
    extra: dict[str, Any] = {"additionalProperties": False}
    if endpoint == "img2img":
        extra["required"] = ["init_images"]
    title = "StableDiffusionProcessingTxt2Img" if endpoint == "txt2img" else "StableDiffusionProcessingImg2Img"
    # extra="allow": the service refuses a field A1111 does not have, naming it (the schema says so too).
    config = ConfigDict(extra="allow", strict=True, json_schema_extra=extra)
    return create_model(title, __config__=config, **fields)


# ---------------------------------------------------------------------------------------------------
# Options


def option_schema(key: str, option: Option, *, in_request: bool) -> dict[str, Any]:
    """The values ``key`` accepts: in a request's override_settings (``in_request``) or in POST /options."""
    if key == "sd_model_checkpoint":
        return {"type": ["string", "null"], "description": "A model id, file name or title; null or '': unchanged."}
    if key == "CLIP_stop_at_last_layers":
        return {"type": "integer", "minimum": 1, "maximum": 12}
    if key == "token_merging_ratio":
        return {"type": "number", **_declared_limits(key)}
    if option.kind == "field" and in_request:
        # applies to the request's field of that name where the request does not set it
        return {**_json_type(type(option.default)), **_declared_limits(option.field or key)}
    if option.kind in ("field", "neutral"):
        return {"enum": _distinct((option.default, *option.also)), "description": option.why or None}
    if option.kind == "inert":
        return _json_type(type(option.default))
    return {"description": option.why}  # fixed: any value, the studio reports its own


def options_request_schema(*, in_request: bool) -> dict[str, Any]:
    """The options object: each option the studio knows with the values it accepts. In a request's
    override_settings an unknown option is refused; POST /options ignores it, as A1111 does."""
    properties = {}
    for key, option in OPTIONS.items():
        schema = option_schema(key, option, in_request=in_request)
        properties[key] = {k: v for k, v in schema.items() if v is not None}
    return {"type": "object", "properties": properties, "additionalProperties": not in_request}


def _reported_type(key: str, option: Option) -> Any:
    if key in ("sd_model_checkpoint", "sd_checkpoint_hash"):
        return str | None
    if isinstance(option.default, list):
        return list[Any]
    return type(option.default)


def options_model() -> type[BaseModel]:
    """GET /sdapi/v1/options: every option the studio knows, with its value."""
    fields = {
        key: (_reported_type(key, option), Field(description=option.why or None)) for key, option in OPTIONS.items()
    }
    return create_model("Options", **fields)
