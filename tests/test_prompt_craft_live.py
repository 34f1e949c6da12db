"""Prompt expansion with the real embedded SmolLM2 through llama.cpp, over the studio's API: the grammar
holds even a 135M model's answer to the JSON schema, in English, and the same seed repeats it."""

from __future__ import annotations

import re

import httpx
import pytest

pytestmark = pytest.mark.timeout(300)

PROMPT_CHARS = re.compile(r"^[A-Za-z0-9 ,.:;()'!?&+/_-]*$")


def test_smollm2_expands_an_idea_into_an_english_sd_prompt(live):
    url = live.url + "/api/prompts/expand"
    first = httpx.post(url, json={"idea": "a lighthouse in a storm at night", "seed": 11}, timeout=120)
    body = first.json()
    assert first.status_code == 200, body
    assert body["model"] == "smollm2-135m" and body["structured"] is True and body["template"] == "sd-expand.en"
    assert body["seed"] == 11 and 1 <= len(body["prompt"]) <= 400 and len(body["negative_prompt"]) <= 200
    assert PROMPT_CHARS.match(body["prompt"]) and PROMPT_CHARS.match(body["negative_prompt"])
    assert len(body["prompt"].split()) >= 2
    again = httpx.post(url, json={"idea": "a lighthouse in a storm at night", "seed": 11}, timeout=120).json()
    assert (again["prompt"], again["negative_prompt"]) == (body["prompt"], body["negative_prompt"])
    # no chat was kept for it
    assert live.studio.db.conn.execute("SELECT count(*) FROM conversations").fetchone()[0] == 0


def test_a_chinese_idea_gives_an_english_prompt(live):
    r = httpx.post(live.url + "/api/prompts/expand", json={"idea": "雨中的红色雨伞", "seed": 2}, timeout=120)
    body = r.json()
    assert r.status_code == 200, body
    assert body["template"] == "sd-expand.zh" and body["prompt"].strip()
    assert PROMPT_CHARS.match(body["prompt"]), body["prompt"]
