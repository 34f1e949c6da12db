"""Tool calls for local models, the way llama.cpp's server does it for chat templates without a tool
format of their own (its "generic" format, ``common/chat.cpp``).

The model is told about the tools in the system prompt and must answer in JSON: ``{"tool_call": {"name",
"arguments"}}`` (or ``{"tool_calls": [...]}`` when several calls are allowed) to call a tool, or
``{"response": "..."}`` to answer in words. A grammar built from the tools' argument schemas makes any
other output impossible, so a forced call is always a valid call of one of the tools. ``GenericOutput``
reads that JSON while it is generated and hands out the answer text (decoded as it comes, so a plain
answer still streams) or the calls (name first, then the arguments text piece by piece, as OpenAI's
stream does).

Past turns are rendered the same way (llama.cpp's polyfills): an assistant turn that called tools
becomes that JSON, and a tool result becomes a user turn ``{"tool_response": ...}`` when the chat
template has no tool role of its own.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from ..contracts import Message, TextRequest, ToolCall, ToolCallDelta
from .json_grammar import SchemaGrammar


def openai_tools(request: TextRequest) -> list[dict]:
    """The tools on offer, in OpenAI's shape (what the system prompt shows the model)."""
    return [
        {"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.parameters}}
        for t in _offered(request)
    ]


def _offered(request: TextRequest):
    if request.tool_choice in ("auto", "required", "none"):
        return request.tools
    return [t for t in request.tools if t.name == request.tool_choice]


def _single(request: TextRequest) -> bool:
    # A named function is one call of it; otherwise several calls only when the client allows them.
    return not request.parallel_tool_calls or request.tool_choice not in ("auto", "required")


def system_note(request: TextRequest) -> str:
    """What the system prompt says about the tools and the answer's JSON form."""
    call = '{"tool_call": {"name": "<tool name>", "arguments": {<arguments>}}}'
    if not _single(request):
        call = '{"tool_calls": [{"name": "<tool name>", "arguments": {<arguments>}}, ...]}'
    tools = json.dumps(openai_tools(request), indent=2, ensure_ascii=False)
    if request.tool_choice == "auto":
        how = f'Reply in JSON: either {call} to call tools, or {{"response": "<your reply>"}} to answer the user.'
    else:
        how = f"Reply in JSON: {call} to call the tool."
    return f"You can call these tools to satisfy the user's requests:\n{tools}\n\n{how}"


def answer_schema(request: TextRequest, grammar: SchemaGrammar, response_schema: dict | None) -> dict:
    """The JSON Schema every answer must match (checked and renamed into ``grammar``)."""
    calls = []
    for i, tool in enumerate(request.tools):
        if tool not in _offered(request):
            continue
        arguments = grammar.add(tool.parameters, f"tools[{i}].function.parameters", "tools")
        calls.append(
            {
                "type": "object",
                "properties": {"name": {"const": tool.name}, "arguments": arguments},
                "required": ["name", "arguments"],
                # No other keys: given room, a small model adds keys to a call until it runs out of tokens
                # (as json_grammar says of any object with properties).
                "additionalProperties": False,
            }
        )
    one_call = calls[0] if len(calls) == 1 else {"anyOf": calls}
    if _single(request):
        call_form = {"type": "object", "properties": {"tool_call": one_call}, "required": ["tool_call"]}
        call_form["additionalProperties"] = False
    else:
        many = {"type": "array", "items": one_call, "minItems": 1}
        call_form = {"type": "object", "properties": {"tool_calls": many}, "required": ["tool_calls"]}
        call_form["additionalProperties"] = False
    if request.tool_choice != "auto":
        return call_form
    response = response_schema if response_schema is not None else {"type": "string"}
    reply_form = {"type": "object", "properties": {"response": response}, "required": ["response"]}
    reply_form["additionalProperties"] = False
    return {"anyOf": [call_form, reply_form]}


def render(messages: list[Message], request: TextRequest | None, native_tool_role: bool) -> list[dict]:
    """Messages as dicts for the chat template: tool calls and results written as the generic format
    writes them, and the tool note added to the system prompt when tools are offered."""
    names = {c.id: c.name for m in messages for c in m.tool_calls}
    single = request is not None and request.calls_tools and _single(request)
    out: list[dict] = []
    for m in messages:
        if m.tool_calls:
            calls = [{"name": c.name, "arguments": _parsed(c.arguments), "id": c.id} for c in m.tool_calls]
            body: dict[str, Any] = {"tool_call": calls[0]} if single and len(calls) == 1 else {"tool_calls": calls}
            if m.content:
                body["content"] = m.content
            out.append({"role": "assistant", "content": json.dumps(body, ensure_ascii=False)})
        elif m.role == "tool" and not native_tool_role:
            result: dict[str, Any] = {"tool": m.name or names.get(m.tool_call_id or "", ""), "content": m.content}
            result["tool_call_id"] = m.tool_call_id
            out.append({"role": "user", "content": json.dumps({"tool_response": result}, ensure_ascii=False)})
        else:
            out.append({"role": m.role, "content": m.content})
    if request is not None and request.calls_tools:
        note = system_note(request)
        if out and out[0]["role"] == "system":
            out[0] = {"role": "system", "content": f"{out[0]['content']}\n\n{note}"}
        else:
            out.insert(0, {"role": "system", "content": note})
    return out


def _parsed(arguments: str) -> Any:
    try:
        return json.loads(arguments)
    except ValueError:
        return arguments


def _call_field(path: tuple, field: str) -> bool:
    """Whether ``path`` is ``field`` of a call: {"tool_call": {field}} or {"tool_calls": [{field}]}."""
    if len(path) == 2:
        return path == ("tool_call", field)
    return len(path) == 3 and path[0] == "tool_calls" and isinstance(path[1], int) and path[2] == field


class _Container:
    __slots__ = ("expect_key", "kind", "position")

    def __init__(self, kind: str):
        self.kind = kind  # "obj" | "arr"
        self.position: str | int | None = 0 if kind == "arr" else None  # the current key or index
        self.expect_key = kind == "obj"


class GenericOutput:
    """Reads the generic format's JSON as it is generated.

    ``feed(text)`` returns what became known: answer text (``str``) and tool-call pieces
    (``ToolCallDelta``). The grammar guarantees the shape, so this only has to follow it, not check
    it. ``calls`` holds the complete calls so far.
    """

    def __init__(self) -> None:
        self.calls: list[ToolCall] = []
        self._stack: list[_Container] = []
        self._in_string = self._string_is_key = self._scalar = False
        self._string = ""  # raw text of the current string
        self._escape = 0  # -1 right after a backslash, then the hex digits of a \\u escape still to come
        self._unicode = self._high_surrogate = False
        self._safe = 0  # how much of a decoded string's raw text is whole escapes (safe to decode)
        self._capture: tuple[str, int, int] | None = None  # (what, call index, depth)
        self._decode_depth: int | None = None  # the response string is being decoded
        self._out: list[str | ToolCallDelta] = []

    @property
    def called(self) -> bool:
        return bool(self.calls)

    def feed(self, text: str) -> list[str | ToolCallDelta]:
        for c in text:
            self._char(c)
        self._flush_string()
        out, self._out = self._out, []
        return out

    # -- the scanner ------------------------------------------------------------------------------

    def _path(self) -> tuple:
        return tuple(c.position for c in self._stack)

    def _copy(self, c: str) -> None:
        if self._capture is not None:
            what, index, _ = self._capture
            if what == "content":
                self._emit_text(c)
            else:
                self.calls[index].arguments += c
                self._emit_delta(ToolCallDelta(index=index, arguments=c))

    def _char(self, c: str) -> None:
        if self._in_string:
            self._string_char(c)
            return
        if self._scalar:
            if c not in ",}] \t\r\n":
                self._copy(c)
                return
            self._scalar = False
            self._value_ended()
        if c in " \t\r\n":
            if self._capture is not None and len(self._stack) > self._capture[2]:
                self._copy(c)
            return
        top = self._stack[-1] if self._stack else None
        if c == '"':
            self._string_is_key = bool(top and top.kind == "obj" and top.expect_key)
            if not self._string_is_key:
                self._value_starting(c)
            self._copy(c)
            self._in_string, self._string, self._safe = True, "", 0
        elif c in "{[":
            self._value_starting(c)
            self._copy(c)
            self._stack.append(_Container("obj" if c == "{" else "arr"))
        elif c in "}]":
            self._copy(c)
            if self._stack:
                self._stack.pop()
            self._value_ended()
        elif c == ":" and top is not None:
            top.expect_key = False
            self._copy(c)
        elif c == "," and top is not None:
            if top.kind == "obj":
                top.expect_key, top.position = True, None
            else:
                top.position = int(top.position or 0) + 1
            self._copy(c)
        else:
            self._value_starting(c)
            self._scalar = True
            self._copy(c)

    def _string_char(self, c: str) -> None:
        self._copy(c)
        if self._escape:
            self._string += c
            if self._escape == -1:  # the character after the backslash
                self._unicode = c == "u"
                self._escape = 4 if self._unicode else 0
            else:
                self._escape -= 1
            if self._escape == 0:
                # Decode only whole characters: a high surrogate waits for its low half.
                self._high_surrogate = self._unicode and 0xD800 <= int(self._string[-4:], 16) <= 0xDBFF
                if not self._high_surrogate:
                    self._safe = len(self._string)
        elif c == "\\":
            self._string += c
            self._escape = -1
        elif c == '"':
            self._in_string = False
            self._string_ended()
        else:
            self._string += c
            if not self._high_surrogate:
                self._safe = len(self._string)

    def _string_ended(self) -> None:
        raw = self._string
        if self._string_is_key:
            self._stack[-1].position = json.loads(f'"{raw}"', strict=False)
            return
        if self._decode_depth is not None:
            self._safe = len(raw)
            self._flush_string()
            self._decode_depth = None
        if _call_field(self._path(), "name"):
            index = len(self.calls)
            call = ToolCall(id="call_" + secrets.token_hex(12), name=json.loads(f'"{raw}"', strict=False), arguments="")
            self.calls.append(call)
            self._emit_delta(ToolCallDelta(index=index, id=call.id, name=call.name))
        self._value_ended()

    def _value_starting(self, c: str) -> None:
        if self._capture is not None or self._decode_depth is not None:
            return
        path = self._path()
        if path == ("response",):
            if c == '"':
                self._decode_depth = len(self._stack)
            else:
                self._capture = ("content", 0, len(self._stack))
        elif _call_field(path, "arguments") and self.calls:
            self._capture = ("arguments", len(self.calls) - 1, len(self._stack))

    def _value_ended(self) -> None:
        if self._capture is not None and len(self._stack) == self._capture[2]:
            self._capture = None

    def _flush_string(self) -> None:
        if self._decode_depth is None or self._safe == 0:
            return
        piece = json.loads(f'"{self._string[: self._safe]}"', strict=False)
        self._string, self._safe = self._string[self._safe :], 0
        if piece:
            self._emit_text(piece)

    def _emit_text(self, text: str) -> None:
        if self._out and isinstance(self._out[-1], str):
            self._out[-1] += text
        else:
            self._out.append(text)

    def _emit_delta(self, delta: ToolCallDelta) -> None:
        last = self._out[-1] if self._out else None
        if isinstance(last, ToolCallDelta) and last.index == delta.index and delta.id is None:
            last.arguments += delta.arguments
        else:
            self._out.append(delta)
