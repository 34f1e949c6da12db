"""Prompt craft over HTTP on a live server: /api/prompts (styles CRUD, import/export, apply, wildcards,
preview, expansion with the echo engine), and /sdapi/v1 styles, prompt-styles and the "Dynamic Prompts"
always-on script with the real `webuiapi` client."""

from __future__ import annotations

import json

import httpx
import pytest

from aigc_studio.config import load_config
from aigc_studio.images.infotext import parse_infotext
from aigc_studio.studio import Studio

from .conftest import a1111_server

CSV = '\ufeffname,prompt,negative_prompt\r\nCinematic,"cinematic still of {prompt}, film grain","cartoon, flat"\r\n'


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    import os

    home = tmp_path_factory.mktemp("prompts-home")
    os.environ["AIGC_HOME"] = str(home)
    studio = Studio(load_config(model="echo", image_model="plain"))
    (home / "wildcards").mkdir()
    (home / "wildcards" / "colors.txt").write_text("red\nblue\n", encoding="utf-8")
    with a1111_server(studio) as live:
        yield live
    studio.close()


@pytest.fixture
def styles(server):
    server.studio.prompts.styles.import_csv(CSV, replace=True)
    yield server.studio.prompts.styles


def test_styles_crud_import_export_over_http(server, styles):
    url = server.url + "/api/prompts/styles"
    assert httpx.get(url).json() == [
        {"name": "Cinematic", "prompt": "cinematic still of {prompt}, film grain", "negative_prompt": "cartoon, flat"}
    ]
    r = httpx.post(url, json={"name": "Oil", "prompt": "oil painting", "negative_prompt": ""})
    assert r.status_code == 200 and r.json()["name"] == "Oil"
    r = httpx.post(url, json={"name": "Oil", "prompt": "again"})
    assert r.status_code == 409 and "already exists" in r.json()["error"]["message"]
    assert httpx.put(url + "/Oil", json={"prompt": "oil, impasto"}).json()["prompt"] == "oil, impasto"
    r = httpx.post(
        server.url + "/api/prompts/apply-styles",
        json={"prompt": "a cat", "negative_prompt": "", "styles": ["Oil", "Cinematic"]},
    )
    assert r.json() == {
        "prompt": "cinematic still of a cat, oil, impasto, film grain",
        "negative_prompt": "cartoon, flat",
    }
    exported = httpx.get(server.url + "/api/prompts/styles.csv")
    assert exported.headers["content-type"].startswith("text/csv")
    assert exported.content.decode("utf-8-sig").splitlines()[2] == 'Oil,"oil, impasto",'
    assert httpx.delete(url + "/Oil").json() == {"name": "Oil", "prompt": "oil, impasto", "negative_prompt": ""}
    r = httpx.get(url + "/Oil")
    assert r.status_code == 404 and r.json()["error"]["message"] == "no style 'Oil'; the styles are: Cinematic"
    r = httpx.post(
        server.url + "/api/prompts/styles.csv", json={"csv": exported.content.decode("utf-8"), "replace": True}
    )
    assert [s["name"] for s in r.json()] == ["Cinematic", "Oil"]


def test_a_malformed_import_is_a_400_naming_the_line_and_keeps_the_styles(server, styles):
    before = styles.path.read_bytes()
    r = httpx.post(
        server.url + "/api/prompts/styles.csv",
        json={"csv": 'name,prompt\nok,fine\nbad,"open\n', "replace": True},
    )
    assert r.status_code == 400 and "line 3" in r.json()["error"]["message"]
    assert styles.path.read_bytes() == before


def test_wildcards_list_and_preview(server):
    assert httpx.get(server.url + "/api/prompts/wildcards").json() == [{"name": "colors", "values": ["blue", "red"]}]
    url = server.url + "/api/prompts/wildcards/preview"
    r = httpx.post(url, json={"template": "a __colors__ {car|boat}", "mode": "combinatorial"})
    assert sorted(r.json()["prompts"]) == ["a blue boat", "a blue car", "a red boat", "a red car"]
    once = httpx.post(url, json={"template": "a __colors__ {car|boat}", "count": 4, "seed": 9}).json()
    assert httpx.post(url, json={"template": "a __colors__ {car|boat}", "count": 4, "seed": 9}).json() == once
    r = httpx.post(url, json={"template": "a __nope__"})
    assert r.status_code == 400 and "no wildcard file for __nope__" in r.json()["error"]["message"]
    r = httpx.post(url, json={"template": "a {b|c"})
    assert r.status_code == 400 and "unbalanced braces" in r.json()["error"]["message"]


def test_expand_over_http_with_the_echo_engine(server):
    r = httpx.post(server.url + "/api/prompts/expand", json={"idea": "a red fox", "seed": 4})
    body = r.json()
    assert r.status_code == 200, body
    assert body["model"] == "echo" and body["template"] == "sd-expand.en" and body["seed"] == 4
    assert body["prompt"].endswith("Idea: a red fox")
    r = httpx.post(server.url + "/api/prompts/expand", json={"idea": ""})
    assert r.status_code == 400 and r.json()["error"]["param"] == "idea"


# -- /sdapi/v1 ----------------------------------------------------------------------------------------


def test_webuiapi_reads_the_prompt_styles(server, styles):
    assert server.api.get_prompt_styles() == [
        {"name": "Cinematic", "prompt": "cinematic still of {prompt}, film grain", "negative_prompt": "cartoon, flat"}
    ]


def test_txt2img_applies_styles_and_records_the_prompt_that_ran(server, styles):
    result = server.api.txt2img(
        prompt="a cat", negative_prompt="text", styles=["Cinematic"], steps=1, width=64, height=64
    )
    info = result.info
    assert info["prompt"] == "cinematic still of a cat, film grain"
    assert info["negative_prompt"] == "text, cartoon, flat" and info["styles"] == ["Cinematic"]
    parsed = parse_infotext(result.image.info["parameters"])
    assert (parsed.prompt, parsed.negative_prompt) == ("cinematic still of a cat, film grain", "text, cartoon, flat")


def test_an_unknown_style_is_a_422_naming_it_and_queues_nothing(server, styles):
    jobs = server.studio.db.conn.execute("SELECT count(*) FROM jobs").fetchone()[0]
    r = httpx.post(server.url + "/sdapi/v1/txt2img", json={"prompt": "x", "styles": ["Cinematic", "Nope"], "steps": 1})
    assert r.status_code == 422 and "no style 'Nope'" in r.json()["detail"]
    assert server.studio.db.conn.execute("SELECT count(*) FROM jobs").fetchone()[0] == jobs


def test_dynamic_prompts_as_the_extensions_alwayson_script(server):
    result = server.api.txt2img(
        prompt="a __colors__ {car|boat}",
        seed=50,
        steps=1,
        width=64,
        height=64,
        alwayson_scripts={"Dynamic Prompts v2.17.1": {"args": [True, True]}},
    )
    info = result.info
    assert sorted(info["all_prompts"]) == ["a blue boat", "a blue car", "a red boat", "a red car"]
    assert info["all_seeds"] == [50, 51, 52, 53] and len(result.images) == 4
    for image, prompt in zip(result.images, info["all_prompts"], strict=True):
        parsed = parse_infotext(image.info["parameters"])
        assert parsed.prompt == prompt and parsed.params["Template"] == "a __colors__ {car|boat}"


def test_without_the_script_braces_stay_literal(server):
    result = server.api.txt2img(prompt="a {red|blue} car", steps=1, width=64, height=64)
    assert result.info["prompt"] == "a {red|blue} car"


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"alwayson_scripts": {"ADetailer": {"args": []}}}, "always on script 'ADetailer' not found"),
        (
            {"alwayson_scripts": {"dynamic prompts": {"args": [True, False, 1, True]}}},
            "args[3] (magic prompt): the studio does not do 'magic prompt'",
        ),
        ({"prompt": "a {b|c", "alwayson_scripts": {"Dynamic Prompts": {"args": [True]}}}, "unbalanced braces"),
        ({"prompt": "a __nope__", "alwayson_scripts": {"Dynamic Prompts": {}}}, "no wildcard file for __nope__"),
    ],
)
def test_bad_dynamic_prompt_requests_are_422s(server, body, words):
    r = httpx.post(server.url + "/sdapi/v1/txt2img", json={"prompt": "x", "steps": 1, **body})
    assert r.status_code == 422, r.text
    assert words in r.json()["detail"]


def test_the_schema_declares_styles_and_the_script(server):
    schema = httpx.get(server.url + "/openapi.json").json()
    body = schema["components"]["schemas"]["StableDiffusionProcessingTxt2Img"]["properties"]
    assert "prompt-styles" in json.dumps(body["styles"]) or "styles.csv" in json.dumps(body["styles"])
    assert "/sdapi/v1/prompt-styles" in schema["paths"] and "/api/prompts/expand" in schema["paths"]


def test_images_api_gives_the_template_and_styles_of_a_record(server, styles):
    server.api.txt2img(
        prompt="a __colors__ kite",
        styles=["Cinematic"],
        steps=1,
        width=64,
        height=64,
        alwayson_scripts={"Dynamic Prompts": {"args": [True, False]}},
    )
    record = httpx.get(server.url + "/api/images", params={"limit": 1, "q": "__colors__ kite"}).json()[0]
    assert record["prompt_template"] == "cinematic still of a __colors__ kite, film grain"
    assert record["styles"] == ["Cinematic"] and record["prompt"] in (
        "cinematic still of a red kite, film grain",
        "cinematic still of a blue kite, film grain",
    )


@pytest.mark.parametrize("name", [" lead", "trail ", "two\nlines"])
def test_a_style_name_the_file_cannot_hold_is_a_400(server, name):
    r = httpx.post(server.url + "/api/prompts/styles", json={"name": name, "prompt": "x"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "name"
