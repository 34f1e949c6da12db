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
    assert "8192" in err.value.message and "9" in err.value.message.split("requested")[1]
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
        if row is not None:
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
