"""The request bodies of the OpenAI-compatible API, and what the studio does with every OpenAI field.

A field is honoured (declared on the request model below and passed on), ignored because it cannot
change the answer (``IGNORED``: it is accepted and dropped), or refused because the studio cannot do
what it asks (``REFUSED``: a 400 that names it, unless its value asks for nothing, such as
``logprobs: false``). A field OpenAI does not have is a 400 naming it too. The decision is the tables,
read by one validator; the OpenAPI schema lists every field with what is done with it.

Types are strict, as the schema declares them ("1" is not a number, true is not 1), and the schema
states each limit and each rule a message must follow for its role, so that a request the schema
accepts is served. What JSON Schema cannot state (tool names unique, a tool_choice among the tools, a
tool or answer schema the llama.cpp grammar can enforce, a model that can call tools, the context
length) is a 400 that names it, as the operations' 400 says.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ...contracts import (
    MAX_STOP,
    TOOL_NAME_PATTERN,
    Message,
    ResponseFormat,
    TextOptions,
    Tool,
    ToolCall,
    json_int,
    limits_of,
)
from ...errors import InvalidRequest, validation_message

# Fields the studio adds to OpenAI's, in llama.cpp's names (clients pass them in extra_body).
STUDIO_EXTRAS = ("top_k", "min_p", "repeat_penalty", "return_progress")


@dataclass(frozen=True)
class Policy:
    """What is done with a field the studio does not use: ``ignore`` it, or ``refuse`` it unless its
    value is one of ``harmless`` (values that ask for nothing)."""

    action: Literal["ignore", "refuse"]
    why: str
    harmless: tuple = (None,)

    def describe(self) -> str:
        if self.action == "ignore":
            return f"Accepted and ignored: {self.why}."
        allowed = " or ".join(json.dumps(v) for v in self.harmless)
        return f"Refused (400) unless {allowed}: {self.why}."


def ignore(why: str) -> Policy:
    return Policy("ignore", why)


def refuse(why: str, *harmless: Any) -> Policy:
    return Policy("refuse", why, (None, *harmless))


_NO_LOGPROBS = "legacy log probabilities of /v1/completions are not given (chat completions give them)"

# POST /v1/chat/completions: OpenAI's fields that the request model does not declare.
CHAT_FIELDS: dict[str, Policy] = {
    "user": ignore("it identifies your end user to OpenAI; it cannot change the answer"),
    "safety_identifier": ignore("it identifies your end user to OpenAI's abuse detection"),
    "metadata": ignore("tags for OpenAI's dashboard; the studio's history has its own record"),
    "store": ignore("OpenAI's storage for evals and distillation; the studio keeps every answer in history"),
    "service_tier": ignore("OpenAI's processing tier; a local model has just one"),
    "prompt_cache_key": ignore("OpenAI's cache bucketing; llama.cpp reuses a cached prompt prefix by itself"),
    "prompt_cache_retention": ignore("OpenAI's cache lifetime"),
    "prompt_cache_options": ignore("OpenAI's cache breakpoints"),
    "audio": refuse("the studio's text models give no audio"),
    "modalities": refuse("the studio's text models answer in text only", ["text"]),
    "prediction": refuse("predicted outputs are not used"),
    "web_search_options": refuse("the studio has no web search"),
    "reasoning_effort": refuse("the studio's models have no separate reasoning phase to set"),
    "verbosity": refuse("the studio's models have no verbosity setting"),
    "moderation": refuse("the studio runs no moderation model"),
    "functions": refuse("the deprecated functions field is not supported; send them as tools"),
    "function_call": refuse("the deprecated function_call field is not supported; use tool_choice"),
}
# POST /v1/completions.
COMPLETION_FIELDS: dict[str, Policy] = {
    "user": CHAT_FIELDS["user"],
    "logprobs": refuse(_NO_LOGPROBS),
    "best_of": refuse("only one completion is generated per request", 1),
    "suffix": refuse("text insertion (a suffix after the completion) is not supported", ""),
}
# Fields of a message that clients send back as they received them, and that carry nothing to use.
MESSAGE_FIELDS: dict[str, Policy] = {
    "refusal": refuse("the studio's models never refuse, so a refusal cannot be replayed", ""),
    "audio": refuse("the studio's text models give no audio"),
    "function_call": refuse("the deprecated function_call is not supported; use tool_calls"),
    "annotations": ignore("citations of OpenAI's web search, for the reader only"),
}


def _apply_policy(data: Any, declared: dict, policy: dict[str, Policy], where: str, param: str | None = None) -> Any:
    if not isinstance(data, dict):
        return data
    kept = {}
    for key, value in data.items():
        if key in declared:
            kept[key] = value
            continue
        rule = policy.get(key)
        if rule is None:
            known = sorted([*declared, *policy])
            raise InvalidRequest(
                f"unknown field '{key}'{where}: OpenAI's API has no such field (fields here: {', '.join(known)})",
                param=param or key,
            )
        if rule.action == "refuse" and value not in rule.harmless:
            raise InvalidRequest(f"{key}{where}: {rule.why}", param=param or key)
    return kept


def _policy_schema(rule: Policy) -> dict[str, Any]:
    # An ignored field takes any value; a refused one only the values that ask for nothing.
    if rule.action == "ignore":
        return {"description": rule.describe()}
    return {"enum": list(rule.harmless), "description": rule.describe()}


def _document(policy: dict[str, Policy]):
    def add(schema: dict, _cls: type) -> None:
        for name, rule in policy.items():
            schema.setdefault("properties", {})[name] = _policy_schema(rule)

    return add


def _bounds(field: str) -> dict[str, Any]:
    """TextOptions' limits on ``field``, to declare (and check) them on the OpenAI field of that name."""
    return limits_of(TextOptions, field)


# Strict: a value of another JSON type than declared is refused, not converted.
_STRICT = ConfigDict(extra="forbid", strict=True)


class _Strict(BaseModel):
    model_config = _STRICT


class ContentPart(_Strict):
    type: str = Field(json_schema_extra={"enum": ["text"]}, description="Only text parts are supported.")
    text: str | None = None


def _text(content: str | list[ContentPart] | None, where: str) -> str:
    if isinstance(content, list):
        kinds = sorted({p.type for p in content if p.type != "text"})
        if kinds:
            raise InvalidRequest(
                f"{where}: content parts of type {', '.join(kinds)} are not supported; only 'text'", param="messages"
            )
        return "".join(p.text or "" for p in content)
    return content or ""


class FunctionCallIn(_Strict):
    name: str = Field(min_length=1, max_length=200)
    arguments: str


class ToolCallIn(_Strict):
    id: str = Field(min_length=1, max_length=200)
    type: Literal["function"] = "function"
    function: FunctionCallIn


def _message_schema(schema: dict, cls: type) -> None:
    """What each role's message may hold (Message's rules): tool_calls only on an assistant's,
    tool_call_id (1 to 200 characters) on a tool's and only there."""
    _document(MESSAGE_FIELDS)(schema, cls)
    none_or_empty = {"anyOf": [{"type": "null"}, {"type": "array", "maxItems": 0}]}
    no_id = {"type": "null"}
    schema["anyOf"] = [
        {
            "properties": {
                "role": {"enum": ["system", "developer", "user"]},
                "tool_calls": none_or_empty,
                "tool_call_id": no_id,
            }
        },
        {"properties": {"role": {"const": "assistant"}, "tool_call_id": no_id}},
        {
            "properties": {
                "role": {"const": "tool"},
                "tool_calls": none_or_empty,
                "tool_call_id": {"type": "string", "minLength": 1, "maxLength": 200},
            },
            "required": ["tool_call_id"],
        },
    ]


class ChatMessageIn(_Strict):
    FIELD_POLICY: ClassVar[dict[str, Policy]] = MESSAGE_FIELDS
    model_config = ConfigDict(**_STRICT, json_schema_extra=_message_schema)

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = Field(None, max_length=200)
    tool_calls: list[ToolCallIn] | None = Field(None, description="Assistant messages: the calls it made.")
    tool_call_id: str | None = Field(None, description="Tool messages: the id of the call answered.")

    @model_validator(mode="before")
    @classmethod
    def _field_policy(cls, data: Any) -> Any:
        return _apply_policy(data, cls.model_fields, cls.FIELD_POLICY, " in a message", "messages")

    def to_message(self, index: int) -> Message:
        where = f"messages[{index}]"
        # "developer" is OpenAI's newer name for the system role.
        role = "system" if self.role == "developer" else self.role
        try:
            calls = [
                ToolCall(id=c.id, name=c.function.name, arguments=c.function.arguments) for c in self.tool_calls or []
            ]
            return Message(
                role=role,
                content=_text(self.content, where),
                name=self.name,
                tool_calls=calls,
                tool_call_id=self.tool_call_id,
            )
        except ValidationError as exc:
            raise InvalidRequest(f"{where}: {validation_message(exc.errors())[0]}", param="messages") from None


class StreamOptions(_Strict):
    include_usage: bool = False
    include_obfuscation: bool | None = Field(
        None, description="Accepted and ignored: padding against network side channels; the studio adds none."
    )


class FunctionIn(_Strict):
    name: str = Field(pattern=TOOL_NAME_PATTERN)
    description: str | None = None
    parameters: dict | None = Field(
        None,
        description="JSON Schema of the arguments object (unset: none); the keywords the llama.cpp grammar "
        "enforces, anything else is a 400 that names it.",
        json_schema_extra={"properties": {"type": {"const": "object"}}},
    )
    strict: bool | None = Field(None, description="Accepted: the arguments always match the schema.")


class ToolIn(_Strict):
    type: Literal["function"]
    function: FunctionIn

    def to_tool(self) -> Tool:
        f = self.function
        if f.parameters is not None and f.parameters.get("type", "object") != "object":
            raise InvalidRequest(
                f"tool '{f.name}': parameters must be a JSON Schema of type object, got type {f.parameters['type']!r}",
                param="tools",
            )
        extra = {"parameters": f.parameters} if f.parameters is not None else {}
        return Tool(name=f.name, description=f.description or "", **extra)


class NamedFunction(_Strict):
    name: str


class NamedToolChoice(_Strict):
    type: Literal["function"]
    function: NamedFunction


class JSONSchemaIn(_Strict):
    name: str = Field(pattern=TOOL_NAME_PATTERN)
    description: str | None = None
    schema_: dict = Field(
        alias="schema",
        description="The JSON Schema the answer must match: the keywords the llama.cpp grammar enforces, "
        "anything else is a 400 that names it.",
    )
    strict: bool | None = Field(None, description="Accepted: the answer always matches the schema.")


def _format_schema(schema: dict, _cls: type) -> None:
    # json_schema comes with type json_schema, and only then.
    schema["anyOf"] = [
        {"properties": {"type": {"enum": ["text", "json_object"]}, "json_schema": {"type": "null"}}},
        {
            "properties": {"type": {"const": "json_schema"}, "json_schema": {"type": "object"}},
            "required": ["json_schema"],
        },
    ]


class ResponseFormatIn(_Strict):
    model_config = ConfigDict(**_STRICT, json_schema_extra=_format_schema)

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JSONSchemaIn | None = None

    @model_validator(mode="after")
    def _schema_with_its_type(self) -> ResponseFormatIn:
        if (self.type == "json_schema") != (self.json_schema is not None):
            raise ValueError("json_schema is given with type json_schema, and only then")
        return self

    def to_format(self) -> ResponseFormat:
        s = self.json_schema
        if s is None:
            return ResponseFormat(type=self.type)
        return ResponseFormat(type="json_schema", name=s.name, schema=s.schema_, strict=s.strict)


class SamplingFields(_Strict):
    """Fields shared by both completion endpoints."""

    FIELD_POLICY: ClassVar[dict[str, Policy]] = {}

    model: str = Field(min_length=1, description="Model id or alias, as listed by GET /v1/models.")
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: json_int(ge=1, le=1) = Field(1, description="Only one choice per request is supported.")
    temperature: float | None = Field(None, **_bounds("temperature"))
    top_p: float | None = Field(None, **_bounds("top_p"))
    top_k: json_int(**_bounds("top_k")) | None = Field(
        None, description="The studio's extra (llama.cpp): keep the k most likely tokens."
    )
    min_p: float | None = Field(
        None, **_bounds("min_p"), description="The studio's extra (llama.cpp): drop unlikely tokens."
    )
    repeat_penalty: float | None = Field(
        None, **_bounds("repeat_penalty"), description="The studio's extra (llama.cpp): penalise repeats."
    )
    presence_penalty: float | None = Field(None, **_bounds("presence_penalty"))
    frequency_penalty: float | None = Field(None, **_bounds("frequency_penalty"))
    seed: json_int(**_bounds("seed")) | None = None
    return_progress: bool | None = Field(
        None,
        description="The studio's extra (llama-server's): with stream, chunks with prompt_progress {total, cache, "
        "processed, time_ms} while the prompt is read, as reading starts and after each step, the last included "
        "(GGUF models, and remote models on llama.cpp's server; other engines send none). Without stream it "
        "changes nothing, as in llama-server.",
    )
    max_tokens: json_int(**_bounds("max_tokens")) | None = None
    max_completion_tokens: json_int(**_bounds("max_tokens")) | None = None
    stop: str | list[str] | None = Field(
        None,
        description=f"Stop at this string, or at any of these (at most {MAX_STOP}); none of them empty.",
        json_schema_extra={
            "anyOf": [
                {"type": "string", "minLength": 1},
                {"type": "array", "items": {"type": "string", "minLength": 1}, "maxItems": MAX_STOP},
                {"type": "null"},
            ]
        },
    )
    logit_bias: dict[str, float] | None = Field(
        None,
        description="Token id (as a string) -> a bias from -100 to 100, added to its logit before sampling; "
        "an id past the model's vocabulary is a 400.",
        json_schema_extra={
            "anyOf": [
                {
                    "type": "object",
                    "propertyNames": {"pattern": "^[0-9]+$"},
                    "additionalProperties": {"type": "number", "minimum": -100, "maximum": 100},
                },
                {"type": "null"},
            ]
        },
    )

    @field_validator("logit_bias")
    @classmethod
    def _token_ids(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        for token, bias in (value or {}).items():
            if not (token.isascii() and token.isdigit()):
                raise ValueError(f"keys must be token ids (whole numbers), got {token!r}")
            if not -100 <= bias <= 100:
                raise ValueError(f"biases must be from -100 to 100, got {bias} for token {token}")
        return value

    def token_bias(self) -> dict[int, float]:
        return {int(k): v for k, v in (self.logit_bias or {}).items()}

    @model_validator(mode="before")
    @classmethod
    def _field_policy(cls, data: Any) -> Any:
        return _apply_policy(data, cls.model_fields, cls.FIELD_POLICY, "")

    def options(self) -> TextOptions:
        fields = self.model_dump(include=set(TextOptions.model_fields) - {"max_tokens"}, exclude_none=True)
        max_tokens = self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens
        # Validated here (not on this model) so the error names the OpenAI field and its allowed range.
        return TextOptions(**fields, max_tokens=max_tokens)


class ChatCompletionRequest(SamplingFields):
    FIELD_POLICY: ClassVar[dict[str, Policy]] = CHAT_FIELDS
    model_config = ConfigDict(**_STRICT, json_schema_extra=_document(CHAT_FIELDS))

    messages: list[ChatMessageIn] = Field(
        min_length=1,
        description="The conversation; at least one message that is not a system (or developer) message.",
        json_schema_extra={"contains": {"properties": {"role": {"enum": ["user", "assistant", "tool"]}}}},
    )
    response_format: ResponseFormatIn | None = Field(
        None, description="text, json_object, or json_schema (enforced by a llama.cpp grammar)."
    )
    tools: list[ToolIn] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = Field(None, description="Let one answer call several tools (default true).")
    logprobs: bool | None = Field(None, description="Give each answer token's log probability.")
    top_logprobs: json_int(ge=0, le=20) | None = Field(
        None, description="With logprobs: this many likeliest tokens too."
    )

    @model_validator(mode="after")
    def _top_logprobs_with_logprobs(self) -> ChatCompletionRequest:
        if self.top_logprobs and not self.logprobs:
            raise InvalidRequest("top_logprobs needs logprobs: true", param="top_logprobs")
        return self

    def logprobs_wanted(self) -> int | None:
        """None when no log probabilities are asked for, else how many alternatives per token."""
        return (self.top_logprobs or 0) if self.logprobs else None

    def tool_choice_name(self) -> str | None:
        choice = self.tool_choice
        return choice.function.name if isinstance(choice, NamedToolChoice) else choice


class CompletionRequest(SamplingFields):
    FIELD_POLICY: ClassVar[dict[str, Policy]] = COMPLETION_FIELDS
    model_config = ConfigDict(**_STRICT, json_schema_extra=_document(COMPLETION_FIELDS))

    prompt: str | list[str] = Field(
        description="The text to continue (a list holds exactly one); it must come to at least one token.",
        json_schema_extra={
            "anyOf": [
                {"type": "string", "minLength": 1},
                {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1, "maxItems": 1},
            ]
        },
    )
    echo: bool = Field(False, description="Put the prompt before the completion in the answer.")

    @field_validator("prompt")
    @classmethod
    def _one_prompt(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, list) and len(value) != 1:
            raise ValueError("exactly one prompt per request is supported")
        return value
