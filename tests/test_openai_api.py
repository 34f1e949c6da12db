"""The OpenAI-compatible server, driven by the official openai client against a live uvicorn."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

MODEL = "smollm2-135m"
ASK = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def client(live):
    return openai.OpenAI(base_url=live.url + "/v1", api_key="anything", max_retries=0)


def conversations(live):
    return live.studio.history.list(limit=1000)


def test_health_and_models(live, client):
    health = httpx.get(live.url + "/health")
    assert health.status_code == 200 and health.json()["model"] == MODEL
    ids = [m.id for m in client.models.list()]
    assert MODEL in ids and "echo" in ids
    assert client.models.retrieve("smollm2").id == MODEL


def test_chat_non_streamed_is_deterministic_with_a_seed(client):
    a = client.chat.completions.create(model=MODEL, messages=ASK, seed=11, max_tokens=16, temperature=0.8)
    b = client.chat.completions.create(model=MODEL, messages=ASK, seed=11, max_tokens=16, temperature=0.8)
    assert a.choices[0].message.content and a.choices[0].message.content == b.choices[0].message.content
    assert a.choices[0].finish_reason in ("stop", "length")
    assert a.usage.completion_tokens <= 16 and a.usage.prompt_tokens > 5
    assert a.usage.total_tokens == a.usage.prompt_tokens + a.usage.completion_tokens
    assert a.model == MODEL


def test_stream_gives_the_same_text_and_a_usage_chunk(client):
    whole = client.chat.completions.create(model=MODEL, messages=ASK, seed=3, max_tokens=20)
    chunks = list(
        client.chat.completions.create(
            model=MODEL, messages=ASK, seed=3, max_tokens=20, stream=True, stream_options={"include_usage": True}
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 3  # really streamed
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == [whole.choices[0].finish_reason]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == whole.usage.completion_tokens


def test_completions_endpoint(client):
    out = client.completions.create(model=MODEL, prompt="The capital of France is", max_tokens=8, seed=1, temperature=0)
    assert out.choices[0].text and out.usage.completion_tokens <= 8
    streamed = client.completions.create(
        model=MODEL, prompt="The capital of France is", max_tokens=8, seed=1, temperature=0, stream=True
    )
    assert "".join(c.choices[0].text for c in streamed) == out.choices[0].text


def test_switch_model_per_request(client):
    out = client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "ping pong"}])
    assert out.choices[0].message.content == "ping pong"


def test_resent_conversation_continues_in_history(live, client):
    first = [{"role": "user", "content": "Remember the word apple."}]
    a1 = client.chat.completions.create(model=MODEL, messages=first, seed=2, max_tokens=10)
    follow = [
        *first,
        {"role": "assistant", "content": a1.choices[0].message.content},
        {"role": "user", "content": "Which word?"},
    ]
    client.chat.completions.create(model=MODEL, messages=follow, seed=2, max_tokens=10)
    conv = live.studio.history.get(conversations(live)[0]["id"])
    assert [m["content"] for m in conv["messages"]][:3] == [m["content"] for m in follow]
    assert len(conv["messages"]) == 4 and len(conv["responses"]) == 2


@pytest.mark.parametrize(
    "change, param, words",
    [
        ({"temperature": -1}, "temperature", "greater than or equal to 0"),
        ({"max_tokens": 0}, "max_tokens", "greater than or equal to 1"),
        ({"max_tokens": 10**9}, "max_tokens", "less than or equal to 1000000"),
        ({"top_p": 1.5}, "top_p", "less than or equal to 1"),
        ({"messages": []}, "messages", "at least 1"),
        ({"messages": [{"role": "wizard", "content": "hi"}]}, "messages", "'system', 'developer', 'user'"),
        ({"messages": [{"role": "system", "content": "only a system prompt"}]}, "messages", "user message"),
        ({"n": 2}, "n", "less than or equal to 1"),
    ],
)
def test_bad_input_is_a_clear_400(live, client, change, param, words):
    before = conversations(live)
    body = {"model": MODEL, "messages": ASK, **change}
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(**body)
    assert err.value.status_code == 400
    assert words in err.value.message and err.value.body["param"] == param
    assert conversations(live) == before


def test_unknown_model_is_404_and_lists_models(client):
    with pytest.raises(openai.NotFoundError) as err:
        client.chat.completions.create(model="gpt-17", messages=ASK)
    assert "gpt-17" in err.value.message and MODEL in err.value.message
    assert err.value.code == "model_not_found"


def test_prompt_longer_than_context_is_400_with_both_numbers(live, client):
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "sea " * 9000}], max_tokens=10
        )
    assert err.value.code == "context_length_exceeded"
    context = live.studio.registry.engine(MODEL).context_length  # per slot: 4096 of the model's 8192
    assert f"is {context} tokens" in err.value.message and "9" in err.value.message.split("requested")[1]
    # also too long once the completion is counted
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model=MODEL, messages=ASK, max_tokens=9000)
    assert "9000 in the completion" in err.value.message
    failed = live.studio.history.get(conversations(live)[0]["id"])
    assert failed["responses"][-1]["status"] == "error"


def test_malformed_json_is_400_and_the_server_keeps_serving(live, client):
    before = conversations(live)
    r = httpx.post(
        live.url + "/v1/chat/completions",
        content=b'{"model": "smollm2-135m", "messages": [',
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 400
    assert "not valid JSON" in r.json()["error"]["message"]
    assert conversations(live) == before
    ok = client.chat.completions.create(model=MODEL, messages=ASK, max_tokens=4)
    assert ok.choices[0].message.content


def test_client_going_away_cancels_and_keeps_the_partial_answer(live):
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Tell me a very long story."}],
        "max_tokens": 3000,
        "stream": True,
        "seed": 1,
        "temperature": 1.0,
    }
    received = []
    with httpx.stream("POST", live.url + "/v1/chat/completions", json=body, timeout=60) as r:
        rid = r.headers["x-aigc-response-id"]
        for line in r.iter_lines():
            if line.startswith("data: {") and (piece := json.loads(line[6:])["choices"][0]["delta"].get("content")):
                received.append(piece)
                if len(received) >= 5:
                    break
    # The server notices the disconnect, stops generating and records what it had.
    import time

    deadline = time.time() + 20
    while True:
        row = live.studio.db.conn.execute("SELECT * FROM responses WHERE id = ?", (rid,)).fetchone()
        if row is not None and row["status"] != "streaming":  # stored as streaming before the answer came
            break
        assert time.time() < deadline, "cancelled response was never recorded"
        time.sleep(0.05)
    assert row["status"] == "cancelled", str(dict(row))
    assert row["finish_reason"] == "cancelled"
    assert 5 <= row["completion_tokens"] < 100
    answer = live.studio.db.conn.execute("SELECT content FROM messages WHERE response_id = ?", (rid,)).fetchone()
    assert answer["content"].startswith("".join(received))


def test_four_concurrent_clients_get_what_they_would_get_alone(client):
    from concurrent.futures import ThreadPoolExecutor

    questions = [f"Give me a name for a cat, number {i}." for i in range(4)]

    def ask(i):
        out = client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": questions[i]}],
            seed=100 + i,
            max_tokens=12,
            temperature=0.9,
        )
        return out.choices[0].message.content

    alone = [ask(i) for i in range(4)]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(ask, range(4)))
    assert together == alone


def test_a_second_gguf_loads_on_request_and_the_default_stays_warm(live, client, smollm_path):
    registry = live.studio.registry
    registry.add(smollm_path, model_id="smol-copy")
    try:
        out = client.chat.completions.create(model="smol-copy", messages=ASK, max_tokens=4, seed=1)
        assert out.model == "smol-copy" and out.choices[0].message.content
        assert {"smollm2-135m", "smol-copy"} <= set(registry.loaded())
    finally:
        registry.remove("smol-copy")
    assert "smol-copy" not in registry.loaded() and MODEL in registry.loaded()


# -- response_format, tools, and every other field -------------------------------------------------

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "maxLength": 40}, "unit": {"enum": ["celsius", "fahrenheit"]}},
            "required": ["city", "unit"],
            "additionalProperties": False,
        },
    },
}
TIME = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "The local time in a time zone.",
        "parameters": {
            "type": "object",
            "properties": {"zone": {"type": "string", "maxLength": 40}},
            "required": ["zone"],
        },
    },
}
TOOLS = {"get_weather": WEATHER, "get_time": TIME}
WEATHER_ASK = [{"role": "user", "content": "What is the weather in Paris right now?"}]


def valid_call(call) -> dict:
    """Checks one tool call's shape and that its arguments match its function's schema; returns them."""
    import jsonschema

    assert call.type == "function" and call.id.startswith("call_") and len(call.id) > 10
    assert call.function.name in TOOLS
    arguments = json.loads(call.function.arguments)
    jsonschema.validate(arguments, TOOLS[call.function.name]["function"]["parameters"])
    return arguments


def test_json_object_answer_parses_as_a_json_object(client):
    out = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Describe a cat as JSON with its name and age."}],
        response_format={"type": "json_object"},
        seed=1,
        temperature=0,
        max_tokens=80,
    )
    assert out.choices[0].finish_reason == "stop"
    assert isinstance(json.loads(out.choices[0].message.content), dict)


# Every string is bounded, so the answer is complete within max_tokens whatever the model writes.
PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 12},
        "age": {"type": "integer"},
        "member": {"type": "boolean"},
        "role": {"enum": ["admin", "user", "guest"]},
        "tags": {"type": "array", "items": {"type": "string", "pattern": "^[a-z]{1,6}$"}, "maxItems": 2},
        "nickname": {"anyOf": [{"type": "string", "maxLength": 8}, {"type": "null"}]},
    },
    "required": ["name", "age", "member", "role", "tags", "nickname"],
    "additionalProperties": False,
}


def test_json_schema_answer_matches_the_schema_streamed_and_not(client):
    import jsonschema

    fmt = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON, "strict": True}}
    ask = [{"role": "user", "content": "Invent a user of a web forum."}]
    out = client.chat.completions.create(
        model=MODEL, messages=ask, response_format=fmt, seed=4, temperature=0.7, max_tokens=120
    )
    assert out.choices[0].finish_reason == "stop"
    jsonschema.validate(json.loads(out.choices[0].message.content), PERSON)
    streamed = client.chat.completions.create(
        model=MODEL, messages=ask, response_format=fmt, seed=4, temperature=0.7, max_tokens=120, stream=True
    )
    text = "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)
    assert text == out.choices[0].message.content


def test_a_schema_pattern_with_digit_classes_is_enforced(client):
    schema = {
        "type": "object",
        "properties": {
            "zip": {"type": "string", "pattern": "^\\d{5}$"},
            "phone": {"type": "string", "pattern": "\\d{3}-\\d{4}"},
        },
        "required": ["zip", "phone"],
    }
    out = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Give an address's zip code and a phone number."}],
        response_format={"type": "json_schema", "json_schema": {"name": "contact", "schema": schema}},
        seed=2,
        max_tokens=60,
    )
    import re

    answer = json.loads(out.choices[0].message.content)
    assert re.fullmatch(r"\d{5}", answer["zip"]) and re.search(r"\d{3}-\d{4}", answer["phone"])


@pytest.mark.parametrize(
    "schema, words",
    [
        ({"type": "object", "properties": {"age": {"type": "integer", "minimum": 0}}}, "'minimum'"),
        ({"oneOf": [{"type": "string"}, {"type": "integer"}]}, "'oneOf'"),
        ({"type": "string", "format": "email"}, "'email'"),
        ({"type": "array", "items": {"type": "string"}, "uniqueItems": True}, "'uniqueItems'"),
        ({"$ref": "https://example.com/schema.json"}, "'$ref'"),
        ({"type": "object", "properties": {"a": {"type": "string"}}, "required": ["b"]}, "required names b"),
        ({"type": ["string", "null"], "maxLength": 3}, "use anyOf"),
        ({"type": "string", "pattern": "^(?=a).*$"}, "(?...)"),
    ],
)
def test_a_schema_the_grammar_cannot_enforce_is_a_400_naming_the_feature(live, client, schema, words):
    before = conversations(live)
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(
            model=MODEL,
            messages=ASK,
            response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": schema}},
        )
    assert err.value.body["param"] == "response_format"
    assert words in err.value.message and "response_format.json_schema.schema" in err.value.message
    assert conversations(live) == before


@pytest.mark.parametrize("choice", ["required", {"type": "function", "function": {"name": "get_weather"}}])
def test_a_forced_tool_call_comes_back_in_openais_shape(client, choice):
    out = client.chat.completions.create(
        model=MODEL, messages=WEATHER_ASK, tools=[WEATHER, TIME], tool_choice=choice, seed=5, max_tokens=150
    )
    message, finish = out.choices[0].message, out.choices[0].finish_reason
    assert finish == "tool_calls" and message.content is None and message.role == "assistant"
    assert len(message.tool_calls) >= 1
    for call in message.tool_calls:
        valid_call(call)
    if isinstance(choice, dict):
        assert [c.function.name for c in message.tool_calls] == ["get_weather"]
    assert len({c.id for c in message.tool_calls}) == len(message.tool_calls)


def test_a_forced_tool_call_streams_as_openai_python_accumulates_it(client):
    kwargs = dict(model=MODEL, messages=WEATHER_ASK, tools=[WEATHER, TIME], tool_choice="required", seed=6)
    whole = client.chat.completions.create(**kwargs, max_tokens=150)
    chunks = list(client.chat.completions.create(**kwargs, max_tokens=150, stream=True))
    first = chunks[0].choices[0].delta
    assert (
        first.role == "assistant" and first.tool_calls[0].id.startswith("call_") and first.tool_calls[0].function.name
    )
    pieces = [d for c in chunks if c.choices for d in c.choices[0].delta.tool_calls or []]
    assert len(pieces) > 3  # the arguments really came piece by piece
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["tool_calls"]
    # openai-python's own accumulation of the stream gives the same calls as the whole answer.
    with client.chat.completions.stream(**kwargs, max_tokens=150) as stream:
        final = stream.get_final_completion()
    got = [(c.function.name, c.function.arguments) for c in final.choices[0].message.tool_calls]
    assert got == [(c.function.name, c.function.arguments) for c in whole.choices[0].message.tool_calls]
    for call in final.choices[0].message.tool_calls:
        valid_call(call)
    assert final.choices[0].finish_reason == "tool_calls"


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_auto_tool_choice_gives_an_answer_or_a_valid_call(client, seed):
    # One call at most, whose arguments are bounded by the schema, so a call always ends within max_tokens.
    kwargs = dict(
        model=MODEL,
        messages=WEATHER_ASK,
        tools=[WEATHER, TIME],
        parallel_tool_calls=False,
        seed=seed,
        temperature=1.0,
        max_tokens=150,
    )
    out = client.chat.completions.create(**kwargs)
    choice = out.choices[0]
    # Streamed, the same answer arrives as it is generated: a plain one in many pieces, not at the end.
    chunks = [c.choices[0] for c in client.chat.completions.create(**kwargs, stream=True) if c.choices]
    streamed = "".join(c.delta.content or "" for c in chunks)
    assert streamed == (choice.message.content or "")
    if choice.message.content:
        assert len([c for c in chunks if c.delta.content]) > 3
    if choice.finish_reason == "tool_calls":
        assert choice.message.content is None and len(choice.message.tool_calls) == 1
        valid_call(choice.message.tool_calls[0])
    else:
        # A plain answer, decoded out of {"response": "..."}; a long one may end at max_tokens.
        assert choice.finish_reason in ("stop", "length") and choice.message.tool_calls is None
        assert isinstance(choice.message.content, str) and '"response"' not in choice.message.content[:14]


def test_a_conversation_with_a_tool_result_continues_and_is_stored(live, client):
    first = client.chat.completions.create(
        model=MODEL, messages=WEATHER_ASK, tools=[WEATHER], tool_choice="required", seed=7, max_tokens=100
    )
    call = first.choices[0].message.tool_calls[0]
    follow = [
        *WEATHER_ASK,
        first.choices[0].message.model_dump(exclude_none=True),  # as clients append it
        {"role": "tool", "tool_call_id": call.id, "content": "18 degrees celsius, sunny"},
    ]
    second = client.chat.completions.with_raw_response.create(
        model=MODEL, messages=follow, tools=[WEATHER], tool_choice="none", seed=7, max_tokens=30
    )
    answer = second.parse()
    assert answer.choices[0].finish_reason in ("stop", "length") and answer.choices[0].message.content
    rid = second.headers["x-aigc-response-id"]
    cid = live.studio.db.conn.execute("SELECT conversation_id FROM responses WHERE id = ?", (rid,)).fetchone()[0]
    conv = live.studio.history.get(cid)
    assert len(conv["responses"]) == 2  # both requests, one conversation
    assert [m["role"] for m in conv["messages"]] == ["user", "assistant", "tool", "assistant"]
    stored_call = conv["messages"][1]["tool_calls"][0]
    assert stored_call == {"id": call.id, "name": call.function.name, "arguments": call.function.arguments}
    assert conv["messages"][2]["tool_call_id"] == call.id and conv["messages"][2]["content"].startswith("18 degrees")
    restored = live.studio.history.messages(cid)
    assert restored[1].tool_calls[0].id == call.id and restored[2].role == "tool"


def test_twelve_stop_strings_work_and_the_limit_is_named(client):
    stops = [f"zz{i}" for i in range(11)] + ["gamma"]
    out = client.chat.completions.create(
        model="echo", messages=[{"role": "user", "content": "alpha beta gamma delta"}], stop=stops
    )
    assert out.choices[0].message.content == "alpha beta "
    real = client.chat.completions.create(model=MODEL, messages=ASK, stop=stops, max_tokens=8, seed=1)
    assert real.choices[0].message.content is not None
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="echo", messages=ASK, stop=[f"s{i}" for i in range(65)])
    assert err.value.body["param"] == "stop" and "at most 64" in err.value.message


def test_a_latest_tag_names_the_model_and_another_tag_is_a_404(client):
    out = client.chat.completions.create(model="smollm2:latest", messages=ASK, max_tokens=4, seed=1)
    assert out.model == MODEL and out.choices[0].message.content
    assert client.models.retrieve("smollm2:latest").id == MODEL
    with pytest.raises(openai.NotFoundError) as err:
        client.chat.completions.create(model="smollm2:7b", messages=ASK, max_tokens=4)
    assert "smollm2:7b" in err.value.message and MODEL in err.value.message


@pytest.mark.parametrize(
    "field, value",
    [
        ("audio", {"voice": "alloy", "format": "mp3"}),
        ("modalities", ["text", "audio"]),
        ("prediction", {"type": "content", "content": "x"}),
        ("web_search_options", {}),
        ("reasoning_effort", "low"),
        ("verbosity", "low"),
        ("moderation", {"model": "omni-moderation-latest"}),
        ("functions", [WEATHER["function"]]),
        ("function_call", "auto"),
        ("best_of", 2),  # a completions field, unknown to chat
        ("cache_prompt", True),  # llama.cpp's, not OpenAI's
    ],
)
def test_a_field_the_studio_cannot_honour_is_a_400_naming_it(live, client, field, value):
    before = conversations(live)
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="echo", messages=ASK, extra_body={field: value})
    assert err.value.status_code == 400 and err.value.body["param"] == field
    assert field in err.value.message
    assert conversations(live) == before


def test_fields_that_cannot_change_the_answer_are_accepted(client):
    out = client.chat.completions.create(
        model="echo",
        messages=[{"role": "user", "content": "same words", "name": "ann"}],
        user="u-1",
        metadata={"k": "v"},
        store=True,
        service_tier="auto",
        prompt_cache_key="k",
        safety_identifier="s",
        logprobs=False,
        top_logprobs=0,
        modalities=["text"],
        parallel_tool_calls=False,
        stream_options=None,
        response_format={"type": "text"},
    )
    assert out.choices[0].message.content == "same words"


def test_completions_fields_echo_and_refusals(client):
    out = client.completions.create(model="echo", prompt="one two", echo=True)
    assert out.choices[0].text == "one twoone two"
    streamed = client.completions.create(model="echo", prompt="one two", echo=True, stream=True)
    assert "".join(c.choices[0].text for c in streamed) == "one twoone two"
    for field, value in [("best_of", 2), ("suffix", "end"), ("logprobs", 2)]:
        with pytest.raises(openai.BadRequestError) as err:
            client.completions.create(model="echo", prompt="x", extra_body={field: value})
        assert err.value.body["param"] == field, field


def test_empty_model_or_prompt_is_a_400_not_a_crash(live):
    r = httpx.post(live.url + "/v1/completions", json={"model": "", "prompt": ""})
    assert r.status_code == 400 and r.json()["error"]["param"] == "model"
    for model in (MODEL, "echo"):
        r = httpx.post(live.url + "/v1/completions", json={"model": model, "prompt": ""})
        assert r.status_code == 400, r.text
        assert r.json()["error"]["param"] == "prompt" and "empty" in r.json()["error"]["message"]
    r = httpx.post(live.url + "/v1/chat/completions", json={"model": "", "messages": ASK})
    assert r.status_code == 400 and r.json()["error"]["param"] == "model"


@pytest.mark.parametrize(
    "change, param, words",
    [
        ({"model": "echo", "tools": [WEATHER]}, "tools", "cannot call tools"),
        ({"model": "echo", "response_format": {"type": "json_object"}}, "response_format", "cannot constrain"),
        ({"tool_choice": "required"}, "tool_choice", "only allowed when tools are given"),
        (
            {"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
            "tool_choice",
            "'nope'",
        ),
        ({"tools": [WEATHER, WEATHER]}, "tools", "unique"),
        ({"messages": [{"role": "tool", "content": "18 degrees"}]}, "messages", "tool_call_id"),
        ({"messages": [{"role": "user", "content": "hi", "refusal": "no"}]}, "messages", "refusal"),
        ({"messages": [{"role": "user", "content": "hi", "colour": "red"}]}, "messages", "unknown field 'colour'"),
        ({"response_format": {"type": "json_schema"}}, "response_format", "json_schema"),
    ],
)
def test_bad_tool_and_format_requests_are_clear_400s(live, client, change, param, words):
    before = conversations(live)
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(**{"model": MODEL, "messages": ASK, **change})
    assert err.value.body["param"] == param and words in err.value.message, err.value.message
    assert conversations(live) == before


def test_catalog_defaults_apply_to_what_a_request_leaves_unset_and_reach_the_record(live, client, smollm_path):
    registry = live.studio.registry
    registry.add(smollm_path, model_id="qwen-like", defaults={"temperature": 0.3, "top_p": 0.8, "top_k": 20})
    try:

        def record(**kwargs):
            raw = client.chat.completions.with_raw_response.create(
                model="qwen-like", messages=ASK, max_tokens=4, seed=1, **kwargs
            )
            rid = raw.headers["x-aigc-response-id"]
            row = live.studio.db.conn.execute("SELECT options FROM responses WHERE id = ?", (rid,)).fetchone()
            return json.loads(row["options"])

        plain = record()
        assert (plain["temperature"], plain["top_p"], plain["top_k"]) == (0.3, 0.8, 20)
        assert plain["min_p"] == 0.05 and plain["repeat_penalty"] == 1.1  # the engine's own, as they ran
        mine = record(temperature=0.9)
        assert (mine["temperature"], mine["top_p"], mine["top_k"]) == (0.9, 0.8, 20)
    finally:
        registry.remove("qwen-like")


def test_logit_bias_steers_the_tokens(live, client):
    engine = live.studio.registry.engine(MODEL)

    def tokenize(text: str) -> list[int]:
        return engine._tokenize(text, special=False)

    banana = tokenize(" banana")
    assert len(banana) == 1
    forced = client.chat.completions.create(
        model=MODEL, messages=ASK, temperature=0, max_tokens=3, logit_bias={str(banana[0]): 100}
    )
    assert forced.choices[0].message.content == " banana banana banana"
    plain = client.chat.completions.create(model=MODEL, messages=ASK, temperature=0, max_tokens=3)
    first = tokenize(plain.choices[0].message.content)[0]
    banned = client.chat.completions.create(
        model=MODEL, messages=ASK, temperature=0, max_tokens=3, logit_bias={str(first): -100}
    )
    assert tokenize(banned.choices[0].message.content)[0] != first
    raw = client.completions.create(
        model=MODEL, prompt="I like", temperature=0, max_tokens=2, logit_bias={str(banana[0]): 100}
    )
    assert raw.choices[0].text == " banana banana"
    for bias, words in [({"999999": 5}, "outside this model's vocabulary"), ({"12": 101}, "from -100 to 100")]:
        with pytest.raises(openai.BadRequestError) as err:
            client.chat.completions.create(model=MODEL, messages=ASK, max_tokens=2, logit_bias=bias)
        assert err.value.body["param"] == "logit_bias" and words in err.value.message
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="echo", messages=ASK, logit_bias={"1": 1})
    assert err.value.body["param"] == "logit_bias"


def test_logprobs_come_with_each_token_streamed_and_not(live, client):
    import math

    # A seed makes each request evaluate the prompt afresh, so the same request gives the same numbers.
    # Without a repeat penalty, greedy decoding takes the likeliest token of the model's distribution.
    kwargs = dict(model=MODEL, messages=ASK, temperature=0, seed=1, max_tokens=6, logprobs=True, top_logprobs=3)
    kwargs["extra_body"] = {"repeat_penalty": 1.0}
    out = client.chat.completions.create(**kwargs)
    tokens = out.choices[0].logprobs.content
    assert "".join(t.token for t in tokens) == out.choices[0].message.content and len(tokens) == 6
    for t in tokens:
        assert t.logprob <= 0 and bytes(t.bytes).decode() == t.token and len(t.top_logprobs) == 3
        alternatives = [a.logprob for a in t.top_logprobs]
        assert alternatives == sorted(alternatives, reverse=True)
        # Greedy: the token taken is the likeliest one.
        assert t.top_logprobs[0].token == t.token and math.isclose(t.top_logprobs[0].logprob, t.logprob)
    streamed = list(client.chat.completions.create(**kwargs, stream=True))
    pieces = [t for c in streamed if c.choices and c.choices[0].logprobs for t in c.choices[0].logprobs.content]
    assert [(t.token, round(t.logprob, 4)) for t in pieces] == [(t.token, round(t.logprob, 4)) for t in tokens]
    # A stop string is left out, and so are its tokens.
    cut = out.choices[0].message.content.split()[-1]
    stopped = client.chat.completions.create(**kwargs | {"stop": [cut]})
    text = stopped.choices[0].message.content
    assert "".join(t.token for t in stopped.choices[0].logprobs.content) == text
    assert client.chat.completions.create(model=MODEL, messages=ASK, max_tokens=2).choices[0].logprobs is None
    for change, param in [({"top_logprobs": 3}, "top_logprobs"), ({"tools": [WEATHER], "logprobs": True}, "logprobs")]:
        with pytest.raises(openai.BadRequestError) as err:
            client.chat.completions.create(model=MODEL, messages=ASK, max_tokens=2, **change)
        assert err.value.body["param"] == param
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="echo", messages=ASK, logprobs=True)
    assert err.value.body["param"] == "logprobs"


def test_a_repeat_penalty_of_zero_is_refused_with_its_range(live):
    r = httpx.post(
        live.url + "/v1/chat/completions",
        json={
            "model": "smollm2",
            "messages": [{"role": "user", "content": "Hi"}],
            "repeat_penalty": 0,
            "response_format": {"type": "json_object"},
        },
    )
    assert r.status_code == 400 and r.json()["error"]["param"] == "repeat_penalty"
    assert "0.01" in r.json()["error"]["message"]


def test_return_progress_streams_llama_servers_prompt_progress_then_the_same_answer(live, client):
    """llama-server's extra: with stream, chunks with prompt_progress {total, cache, processed, time_ms}
    before the answer, from the cache to the whole prompt; the text is the one streamed without them."""
    long = [{"role": "user", "content": "Summarize: " + " ".join(f"river {i}" for i in range(120))}]
    plain = list(client.chat.completions.create(model=MODEL, messages=long, seed=5, max_tokens=4, stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in plain if c.choices)
    chunks = list(
        client.chat.completions.create(
            model=MODEL,
            messages=long,
            seed=5,
            max_tokens=4,
            stream=True,
            stream_options={"include_usage": True},
            extra_body={"return_progress": True},
        )
    )
    steps = [(i, c.model_extra["prompt_progress"]) for i, c in enumerate(chunks) if "prompt_progress" in c.model_extra]
    first_text = next(i for i, c in enumerate(chunks) if c.choices and c.choices[0].delta.content)
    total = chunks[-1].usage.prompt_tokens
    assert all(i < first_text for i, _ in steps) and len(steps) >= 3
    assert [set(s) for _, s in steps] == [{"total", "cache", "processed", "time_ms"}] * len(steps)
    processed = [s["processed"] for _, s in steps]
    assert processed[0] == 0 and processed[-1] == total and processed == sorted(processed)
    assert {s["total"] for _, s in steps} == {total} and {s["cache"] for _, s in steps} == {0}  # seeded: afresh
    for i, _ in steps:
        assert chunks[i].choices[0].delta.role == "assistant" and chunks[i].choices[0].delta.content is None
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text
    # /v1/completions too; without stream (or without the field) it changes nothing.
    pieces = list(
        client.completions.create(
            model=MODEL, prompt="The sea is", max_tokens=2, stream=True, extra_body={"return_progress": True}
        )
    )
    reported = [c.model_extra["prompt_progress"] for c in pieces if "prompt_progress" in c.model_extra]
    assert reported and reported[-1]["processed"] == reported[-1]["total"]
    whole = client.chat.completions.create(
        model=MODEL, messages=ASK, max_tokens=2, extra_body={"return_progress": True}
    )
    assert whole.choices[0].message.content and "prompt_progress" not in whole.model_extra
    assert not any("prompt_progress" in c.model_extra for c in plain)
