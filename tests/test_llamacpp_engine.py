"""The llama.cpp engine on the real embedded SmolLM2."""

from __future__ import annotations

import json
import threading

import pytest

from aigc_studio.contracts import Message, TextOptions, TextRequest
from aigc_studio.engines.llamacpp import LlamaCppEngine
from aigc_studio.engines.worker import EngineWorker
from aigc_studio.errors import ContextLengthExceeded

ASK = [Message(role="user", content="Write one sentence about the sea.")]


@pytest.fixture(scope="module")
def engine(smollm_path):
    eng = LlamaCppEngine("smollm2-135m", smollm_path)
    yield eng
    eng.close()


def generate(engine, messages=ASK, cancel_after: int | None = None, **options):
    cancel = threading.Event()
    pieces, final = [], None
    for chunk in engine.stream(TextRequest(messages, TextOptions(**options)), cancel):
        if chunk.finish_reason:
            final = chunk
        else:
            pieces.append(chunk.text)
            if cancel_after is not None and len(pieces) >= cancel_after:
                cancel.set()
    return "".join(pieces), final


def test_context_and_template_come_from_the_gguf(engine):
    # Each slot gets the trained length (8192), up to 4096 unless the `context` setting asks for more.
    assert engine.context_length == 4096 and engine.trained_context == 8192
    assert "<|im_start|>" in engine.metadata["tokenizer.chat_template"]
    one = engine.count_prompt_tokens(ASK)
    two = engine.count_prompt_tokens([*ASK, Message(role="assistant", content="Waves."), *ASK])
    assert 5 < one < two


def test_same_seed_gives_the_same_text(engine):
    first, f1 = generate(engine, seed=1234, temperature=0.9, max_tokens=24)
    generate(engine, seed=99, temperature=0.9, max_tokens=24)  # different state in between
    second, f2 = generate(engine, seed=1234, temperature=0.9, max_tokens=24)
    assert first and first == second
    assert f1.seed == f2.seed == 1234


def test_max_tokens_ends_with_length(engine):
    text, final = generate(engine, seed=7, max_tokens=5)
    assert final.finish_reason == "length"
    assert final.usage.completion_tokens == 5
    assert final.usage.prompt_tokens == engine.count_prompt_tokens(ASK)
    assert text


def test_stop_string_cuts_the_text_where_it_appears(engine):
    full, _ = generate(engine, seed=5, temperature=0, max_tokens=40)
    words = full.split()
    assert len(words) >= 4, full
    stop = words[3]
    cut = full.index(stop)
    text, final = generate(engine, seed=5, temperature=0, max_tokens=40, stop=[stop])
    assert text == full[:cut]
    assert final.finish_reason == "stop"


def test_unset_seed_is_chosen_and_reported(engine):
    _, final = generate(engine, max_tokens=2)
    assert isinstance(final.seed, int) and final.seed >= 0


def test_cancel_stops_between_tokens(engine):
    _text, final = generate(engine, seed=3, max_tokens=500, cancel_after=3)
    assert final.finish_reason == "cancelled"
    assert final.usage.completion_tokens <= 4


def test_run_hands_every_chunk_to_emit_on_the_calling_thread(engine):
    """The worker's path: llama.cpp's stream callback runs on the caller's thread and gives the chunks
    there, with no thread between; the text is what ``stream`` gives for the same seed."""
    request = TextRequest(ASK, TextOptions(seed=11, max_tokens=12))
    caller, seen = threading.get_ident(), []
    engine.run(request, threading.Event(), lambda chunk: seen.append((threading.get_ident(), chunk)))
    assert {thread for thread, _ in seen} == {caller}
    assert seen[-1][1].finish_reason == "length" and seen[-1][1].usage.completion_tokens == 12
    streamed, _ = generate(engine, seed=11, max_tokens=12)
    assert "".join(chunk.text for _, chunk in seen) == streamed


def test_an_error_in_emit_stops_the_slot_and_is_raised(engine):
    request = TextRequest(ASK, TextOptions(seed=5, max_tokens=400))
    calls = []

    def emit(chunk):
        calls.append(chunk)
        if len(calls) == 2:
            raise RuntimeError("the consumer broke")

    with pytest.raises(RuntimeError, match="the consumer broke"):
        engine.run(request, threading.Event(), emit)
    assert len(calls) == 2  # the slot stopped at the error: no chunk after it, no final chunk
    text, final = generate(engine, seed=5, max_tokens=4)  # and the engine serves the next request
    assert text and final.finish_reason == "length"


def test_prompt_longer_than_context_is_refused_with_both_numbers(engine):
    long = [Message(role="user", content="word " * 9000)]
    with pytest.raises(ContextLengthExceeded) as err:
        generate(engine, long, max_tokens=10)
    assert f"is {engine.context_length} tokens" in err.value.message and "in the messages" in err.value.message


def test_tokenizing_survives_a_connection_the_server_closed_and_threads_get_their_own(engine):
    """The engine tokenizes over keep-alive connections to its llama.cpp server, one per thread; one the
    server dropped (it closes idle ones) is replaced, and the answer is the same."""
    first = engine._tokenize("A sentence to count, with a number 12345.", special=False)
    engine._http._local.conn.sock.close()  # as if the server had dropped it
    engine._tokens.clear()
    assert engine._tokenize("A sentence to count, with a number 12345.", special=False) == first
    seen = []
    threads = [
        threading.Thread(target=lambda i=i: seen.append(engine._tokenize(f"thread {i}", special=False)))
        for i in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(seen) == 3 and len(set(map(tuple, seen))) == 3


def test_concurrent_jobs_do_not_mix(engine):
    worker = EngineWorker(engine)
    prompts = [f"Name a color number {i}." for i in range(4)]
    expected = [
        generate(engine, [Message(role="user", content=p)], seed=i, max_tokens=12)[0] for i, p in enumerate(prompts)
    ]
    jobs = [
        worker.submit(TextRequest([Message(role="user", content=p)], TextOptions(seed=i, max_tokens=12)))
        for i, p in enumerate(prompts)
    ]
    results = [None] * 4

    def read(i):
        results[i] = "".join(c.text for c in jobs[i])

    threads = [threading.Thread(target=read, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    # The worker is left parked on its empty queue: a stopped worker frees its engine as its thread
    # ends, and this engine is the module's, which its fixture closes.
    assert results == expected


# -- grammars: response formats and tool calls -------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_grammar_first_sampling_keeps_every_answer_inside_the_schema(engine, seed):
    """The fast path asks the grammar only about the sampled token; a refused token is sampled again
    with the full grammar pass, so whatever the model prefers, the answer matches the schema."""
    from aigc_studio.contracts import ResponseFormat

    schema = {
        "type": "object",
        "properties": {"colour": {"enum": ["red", "green", "blue"]}, "count": {"type": "integer"}},
        "required": ["colour", "count"],
    }
    request = TextRequest(
        [Message(role="user", content="Write a poem about the sea.")],  # an answer the model wants in prose
        TextOptions(seed=seed, temperature=1.0, max_tokens=40),
        response_format=ResponseFormat(type="json_schema", schema=schema),
    )
    chunks = list(engine.stream(request, threading.Event()))
    answer = json.loads("".join(c.text for c in chunks))
    assert answer["colour"] in ("red", "green", "blue") and isinstance(answer["count"], int)
    assert chunks[-1].finish_reason == "stop"


@pytest.mark.parametrize("parallel", [True, False])
@pytest.mark.parametrize("choice", ["auto", "required"])
def test_the_answer_forms_with_tools_allow_no_keys_but_their_own(parallel, choice):
    """A call object, its wrapper and the plain reply take only their own keys: given room, SmolLM2 added
    keys to a call ("description", "type", ...) and once wrote a key string until max_tokens ran out."""
    from aigc_studio.contracts import Tool
    from aigc_studio.engines.generic_tools import answer_schema
    from aigc_studio.engines.json_grammar import SchemaGrammar

    tools = [Tool(name="get_weather", parameters={"type": "object", "properties": {"city": {"type": "string"}}})]
    tools.append(Tool(name="get_time"))
    request = TextRequest(ASK, tools=tools, tool_choice=choice, parallel_tool_calls=parallel)
    schema = answer_schema(request, SchemaGrammar(), None)
    objects = []

    def walk(node):
        if isinstance(node, dict):
            if "properties" in node:
                objects.append(node)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    wrappers = {"tool_calls", "tool_call", "response"} & {key for o in objects for key in o["properties"]}
    assert wrappers == ({"tool_calls"} if parallel else {"tool_call"}) | ({"response"} if choice == "auto" else set())
    calls = [o for o in objects if set(o["properties"]) == {"name", "arguments"}]
    assert len(calls) == 2
    # (an arguments object is the tool's own schema, checked as any schema is: not asked here)
    own = [o for o in objects if set(o["properties"]) & {"name", "tool_calls", "tool_call", "response"}]
    assert len(own) == 3 + (choice == "auto")
    assert all(o.get("additionalProperties") is False for o in own), own


def test_tool_results_are_rendered_for_templates_without_a_tool_role():
    from aigc_studio.contracts import Tool, ToolCall
    from aigc_studio.engines.generic_tools import render

    call = ToolCall(id="call_1", name="get_weather", arguments='{"city": "Paris"}')
    messages = [
        Message(role="user", content="Weather in Paris?"),
        Message(role="assistant", tool_calls=[call]),
        Message(role="tool", tool_call_id="call_1", content="18 C"),
    ]
    plain = render(messages, None, native_tool_role=False)
    assert json.loads(plain[1]["content"]) == {
        "tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}, "id": "call_1"}]
    }
    assert plain[2]["role"] == "user"
    assert json.loads(plain[2]["content"]) == {
        "tool_response": {"tool": "get_weather", "content": "18 C", "tool_call_id": "call_1"}
    }
    native = render(messages, None, native_tool_role=True)
    assert native[2] == {"role": "tool", "content": "18 C"}
    # Offering tools adds the note to the system prompt, after the client's own.
    offered = TextRequest([Message(role="system", content="Be brief."), *messages], tools=[Tool(name="get_weather")])
    with_tools = render(offered.messages, offered, native_tool_role=True)
    assert with_tools[0]["content"].startswith("Be brief.\n\nYou can call these tools")
    assert '"get_weather"' in with_tools[0]["content"] and '{"response": "<your reply>"}' in with_tools[0]["content"]


@pytest.mark.parametrize("step", [1, 2, 7, 1000])
def test_generic_output_is_read_as_it_streams(step):
    from aigc_studio.contracts import ToolCallDelta
    from aigc_studio.engines.generic_tools import GenericOutput

    def read(text):
        reader, pieces = GenericOutput(), []
        for i in range(0, len(text), step):
            pieces += reader.feed(text[i : i + step])
        return reader, pieces

    _, pieces = read('{ "response": "Caf\\u00e9 \\ud83d\\ude00 \\"ok\\"\\nbye" }')
    assert "".join(pieces) == 'Café 😀 "ok"\nbye'
    reader, pieces = read(
        '{"tool_calls": [{"name": "f", "arguments": {"name": "x", "list": [1, {"b": "}]"}]}}, '
        '{"name": "g", "arguments": {} }]}'
    )
    assert [(c.name, c.arguments) for c in reader.calls] == [
        ("f", '{"name": "x", "list": [1, {"b": "}]"}]}'),
        ("g", "{}"),
    ]
    deltas = [p for p in pieces if isinstance(p, ToolCallDelta)]
    assert [d.name for d in deltas if d.id] == ["f", "g"] and all(d.id.startswith("call_") for d in deltas if d.id)
    for index in (0, 1):
        assert "".join(d.arguments for d in deltas if d.index == index) == reader.calls[index].arguments
    _, pieces = read('{"response": {"a": [1, 2]} }')
    assert "".join(pieces) == '{"a": [1, 2]}'


@pytest.mark.parametrize(
    "schema, words",
    [
        ({"type": "integer", "exclusiveMaximum": 3}, "'exclusiveMaximum'"),
        ({"type": "object", "patternProperties": {"^a": {}}}, "'patternProperties'"),
        ({"not": {"type": "string"}}, "'not'"),
        ({"allOf": [{"type": "string"}, {"maxLength": 3}]}, "'allOf' with more than one schema"),
        ({"$ref": "#/$defs/missing"}, "'$ref' to '#/$defs/missing'"),
        ({"type": "string", "pattern": "^a+$", "maxLength": 3}, "maxLength, pattern together"),
        ({"type": "object", "properties": {"p": {"type": "string", "format": "uri"}}}, "#/properties/p"),
        ({"type": "array", "prefixItems": [{"type": "string"}], "minItems": 1}, "a tuple"),
        (False, "JSON Schema object"),
        ({"type": "string", "minLength": 10**6}, "too large for a grammar: at most 1000"),
        ({"type": "array", "items": {}, "minItems": 3, "maxItems": 2}, "nothing can match"),
        ({"type": "string", "pattern": "^a{1,5000}$"}, "repeats more than 1000"),
    ],
)
def test_schema_keywords_the_grammar_cannot_enforce_are_named(schema, words):
    from aigc_studio.engines.json_grammar import schema_grammar
    from aigc_studio.errors import InvalidRequest

    with pytest.raises(InvalidRequest) as err:
        schema_grammar(schema, "response_format.json_schema.schema", "response_format")
    assert words in err.value.message and err.value.param == "response_format"


def test_schemas_with_defs_enums_and_optionals_convert():
    """What pydantic writes for a model with an enum, an optional field and a nested model."""
    from aigc_studio.engines.json_grammar import SchemaGrammar, schema_grammar

    schema = {
        "$defs": {
            "Colour": {"enum": ["red", "blue"], "title": "Colour", "type": "string"},
            "Point": {"properties": {"x": {"type": "integer"}}, "required": ["x"], "type": "object"},
        },
        "properties": {
            "colour": {"$ref": "#/$defs/Colour"},
            "at": {"anyOf": [{"$ref": "#/$defs/Point"}, {"type": "null"}], "default": None},
            "any": {},
            "when": {"type": "string", "format": "date"},
        },
        "required": ["colour"],
        "title": "Thing",
        "type": "object",
    }
    gbnf = schema_grammar(schema, "s", "response_format")
    # llguidance's form (xllamacpp's wheel) names the values as JSON, GBNF (setup.sh --native) as quoted literals
    assert ('"red"' in gbnf or r'"\"red\""' in gbnf) and "zzdef1-Colour" in gbnf
    # A recursive schema (a linked list) refers to itself through $defs, from the very top.
    linked = {
        "$defs": {
            "Node": {"type": "object", "properties": {"next": {"anyOf": [{"$ref": "#/$defs/Node"}, {"type": "null"}]}}}
        },
        "$ref": "#/$defs/Node",
    }
    assert "zzdef1-Node" in schema_grammar(linked, "s", "response_format")
    # Two schemas with the same $defs name each keep their own.
    grammar = SchemaGrammar()
    a = grammar.add({"$defs": {"T": {"enum": [1]}}, "$ref": "#/$defs/T"}, "a", "tools")
    b = grammar.add({"$defs": {"T": {"enum": [2]}}, "$ref": "#/$defs/T"}, "b", "tools")
    assert a != b and set(grammar.defs) == {"zzdef1-T", "zzdef2-T"}


def test_a_gbnf_grammar_gets_the_studios_one_space_and_llguidance_is_left_as_it_is():
    """llama.cpp built without llguidance (setup.sh --native) writes GBNF whose whitespace allows line
    breaks and indents, on which a small model spends its tokens; the studio keeps it to one space."""
    from aigc_studio.engines.json_grammar import one_space

    gbnf = (
        'root ::= "{" space kv space "}"\n'
        'space ::= | " " | "\\n"{1,2} [ \\t]{0,20}\n'
        'kv ::= "\\"a\\"" space ":" space "1"\n'
    )
    assert one_space(gbnf).splitlines() == [
        'root ::= "{" space kv space "}"',
        'space ::= " "?',
        'kv ::= "\\"a\\"" space ":" space "1"',
    ]
    llg = '%llguidance {}\nstart: %json {"type":"object","x-guidance":{"whitespace_pattern":"[ ]?"}}'
    assert one_space(llg) == llg


@pytest.mark.parametrize("seed", [1, 2])
def test_strings_in_a_constrained_answer_hold_no_raw_control_characters(engine, seed):
    """A poem wants newlines; inside a JSON string they must come escaped, or the answer does not parse."""
    from aigc_studio.contracts import ResponseFormat

    schema = {"type": "object", "properties": {"poem": {"type": "string", "maxLength": 60}}, "required": ["poem"]}
    request = TextRequest(
        [Message(role="user", content="Write a poem of four short lines about rain.")],
        TextOptions(seed=seed, temperature=1.0, max_tokens=60),
        response_format=ResponseFormat(type="json_schema", schema=schema),
    )
    text = "".join(c.text for c in engine.stream(request, threading.Event()))
    assert isinstance(json.loads(text)["poem"], str)  # strict JSON: a raw newline in a string fails here


def test_loading_models_leaves_the_processs_signal_handlers_as_they_were(engine, smollm_path):
    """llama.cpp's own server code installs SIGINT/SIGTERM handlers that stop only the server; loading
    models here (two at once on two threads, as a comparison's do) must leave the process's handlers as
    they were, so that Ctrl-C and a service manager's SIGTERM still reach the studio."""
    import ctypes
    import os
    import signal
    import time

    libc = ctypes.CDLL(None)

    def handlers() -> list[bytes]:
        out = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            buf = ctypes.create_string_buffer(512)
            libc.sigaction(int(sig), None, buf)
            out.append(buf.raw[:8])  # sa_handler: the function the kernel calls
        return out

    def load_and_close():
        LlamaCppEngine("smollm2-135m", smollm_path, context_length=256, parallel=1).close()

    # Python's own handlers, set here: whatever ran before in this process, the kernel now calls
    # Python's C-level handler for both signals.
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: None)
    try:
        pythons = handlers()
        for _ in range(2):
            threads = [threading.Thread(target=load_and_close) for _ in range(2)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(120)
        assert handlers() == pythons
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def test_a_model_loaded_and_closed_at_once_closes(smollm_path):
    """Closing a server whose loop had not started yet used to wait forever; each close here ends."""

    def cycle():
        for _ in range(2):
            LlamaCppEngine("smollm2-135m", smollm_path, context_length=512, parallel=1).close()

    thread = threading.Thread(target=cycle, daemon=True)
    thread.start()
    thread.join(120)
    assert not thread.is_alive(), "a model's close did not end"
