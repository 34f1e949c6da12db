"""Each user's items are their own, through every route of a real server on loopback.

The server runs with sign-in on (setting ``auth``), and alice and bob are real users who send their
own API keys (``Authorization: Bearer``), so the studio's own authentication decides who each request
acts for. The route list comes from the app's own route table: every operation has a
case below that proves bob cannot read, list, change or delete alice's items through it (and that each
sees their own), or an entry in ALLOWED saying why it holds no user's items. A new route without
either fails ``test_every_route_has_a_case``.
"""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import pytest
from fastapi.routing import iter_route_contexts
from PIL import Image

from aigc_studio.api.app import create_app, is_api_path
from aigc_studio.config import load_config
from aigc_studio.principal import acting_as
from aigc_studio.studio import Studio

from .conftest import LiveServer

SMALL = {"steps": 1, "width": 64, "height": 64}


@dataclass
class Env:
    url: str
    studio: Studio
    alice: httpx.Client
    bob: httpx.Client
    items: dict = field(default_factory=dict)

    def as_user(self, name: str):
        return acting_as(self.studio.users.principal_named(name))


def sse(response: httpx.Response) -> list:
    assert response.status_code == 200, response.text
    return [json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: {")]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    import os

    home = tmp_path_factory.mktemp("owners-home")
    old = os.environ.get("AIGC_HOME")
    os.environ["AIGC_HOME"] = str(home)
    studio = Studio(load_config(model="echo", image_model="plain", auth="on"))
    keys = {}
    for name in ("alice", "bob"):
        studio.users.add(name, f"{name}-password-1")
        keys[name] = studio.users.create_key(name).key
    with LiveServer(create_app(studio, load_default=False)) as live:
        clients = {
            n: httpx.Client(base_url=live.url, headers={"Authorization": f"Bearer {keys[n]}"}, timeout=60)
            for n in ("alice", "bob")
        }
        e = Env(live.url, studio, clients["alice"], clients["bob"])
        e.items = alices_items(e)
        e.items["key"] = keys["alice"].split("-")[1]
        yield e
        for client in clients.values():
            client.close()
    studio.close()
    if old is not None:
        os.environ["AIGC_HOME"] = old


def alices_items(e: Env) -> dict:
    """One of each kind of item, made by alice through the API."""
    a = e.alice
    items: dict = {}
    r = a.post(
        "/v1/chat/completions", json={"model": "echo", "messages": [{"role": "user", "content": "alice's plan"}]}
    )
    assert r.status_code == 200, r.text
    items["answer"] = r.json()["choices"][0]["message"]["content"]
    with e.as_user("alice"):
        items["conversation"] = e.studio.history.latest_id()
    r = a.post("/sdapi/v1/txt2img", json={"prompt": "alice's boat", "seed": 1, **SMALL})
    assert r.status_code == 200, r.text
    image = a.get("/api/images").json()[0]
    items["image"], items["job"], items["path"] = image["id"], image["job_id"], image["path"]
    items["png"] = a.get(f"/api/images/{image['id']}.png").content
    events = sse(a.post("/api/write/article", json={"title": "Alice's garden", "length": 100, "headings": ["Roses"]}))
    items["document"] = events[0]["document_id"]
    r = a.post("/api/code/run", json={"language": "python", "code": "print(6 * 7)", "title": "alice.py"})
    assert r.status_code == 200, r.text
    items["session"], items["version"] = r.json()["session_id"], r.json()["version_id"]
    r = a.post("/api/templates", json={"name": "alicet", "language": "en", "prompt": "Say it."})
    assert r.status_code == 201, r.text
    items["template"] = "alicet.en"
    assert a.post("/api/prompts/styles", json={"name": "AliceOil", "prompt": "oil"}).status_code == 200
    items["style"] = "AliceOil"
    r = a.post("/api/compare", json={"prompt": "red green blue", "models": ["echo", "echo2"], "stream": False})
    assert r.status_code == 200, r.text
    items["comparison"] = r.json()["id"]
    body = {"prompt": "a boat", "seed": 2, **SMALL, "models": ["plain", "plain2"]}
    r = a.post("/api/compare/images", json=body)
    assert r.status_code == 200, r.text
    items["grid"] = r.json()["id"]
    r = a.post("/api/arena/battles", json={"prompt": "red green blue", "models": ["echo", "echo2"], "seed": 1})
    assert r.status_code == 200, r.text
    items["battle"] = r.json()["id"]
    return items


def same_as_missing(e: Env, method: str, path: str, item: str, missing: str, **kwargs) -> None:
    """Bob's request on alice's ``item`` answers exactly what it answers for an id that does not exist
    (status and words, the id aside); alice's own succeeds."""
    swapped = dict(kwargs)
    if "json" in kwargs:
        swapped["json"] = json.loads(json.dumps(kwargs["json"]).replace(json.dumps(item)[1:-1], missing))
    fake = e.bob.request(method, path.replace(item, missing), **swapped)
    hers = e.bob.request(method, path, **kwargs)
    assert fake.status_code in (404, 422), fake.text  # /sdapi answers A1111's 422 shape for a bad id
    assert hers.status_code == fake.status_code
    assert hers.text.replace(item, missing) == fake.text
    own = e.alice.request(method, path, **kwargs)
    assert own.status_code < 300, own.text


def bob_lists(e: Env, path: str, params=None) -> str:
    r = e.bob.get(path, params=params)
    assert r.status_code == 200, r.text
    return r.text


def only_own_listed(e: Env, path: str, key: str, params=None) -> None:
    assert e.items[key] not in bob_lists(e, path, params)
    assert e.items[key] in e.alice.get(path, params=params).text


def made_is_callers(e: Env, method: str, path: str, listing: str, body: dict, stream: bool = False) -> None:
    """What bob makes through the route is his: in his listing, not in alice's."""
    r = e.bob.request(method, path, json=body)
    assert r.status_code < 300, r.text
    text = r.text
    made = json.loads(text.split("data: ", 1)[1].split("\n", 1)[0]) if stream else r.json()
    made_id = next(
        made[k] for k in ("document_id", "session_id", "id", "key", "name") if isinstance(made, dict) and k in made
    )
    assert str(made_id) in e.bob.get(listing).text
    assert str(made_id) not in e.alice.get(listing).text


def png_b64(color=(9, 9, 9)) -> str:
    out = io.BytesIO()
    Image.new("RGB", (64, 64), color).save(out, "PNG")
    return base64.b64encode(out.getvalue()).decode()


def running_job_of_alice(e: Env, check: Callable[[], None]) -> None:
    """While alice's slow job runs, ``check`` (bob's view) runs; then alice's job ends as she left it."""
    engine = e.studio.registry.image_engine("plain")
    engine.step_delay = 0.05
    done: dict = {}
    thread = threading.Thread(
        target=lambda: done.update(
            r=e.alice.post(
                "/sdapi/v1/txt2img", json={"prompt": "slow", "seed": 3, "steps": 30, "width": 64, "height": 64}
            )
        )
    )
    thread.start()
    try:
        deadline = time.time() + 30
        while (p := e.alice.get("/sdapi/v1/progress").json())["state"]["sampling_step"] < 2:
            assert time.time() < deadline, "alice's job did not start"
            time.sleep(0.02)
        assert p["state"]["job"].startswith("job-") and p["progress"] > 0
        check()
        assert e.studio.jobs.current is not None and not e.studio.jobs.current.control.interrupt.is_set()
        assert not e.studio.jobs.current.control.skip.is_set()
    finally:
        engine.step_delay = 0
        thread.join(60)
    info = json.loads(done["r"].json()["info"])
    assert info["interrupted"] is False and len(info["all_seeds"]) == 1


def bobs_progress_is_idle(e: Env) -> None:
    p = e.bob.get("/sdapi/v1/progress").json()
    assert p["progress"] == 0 and p["state"]["job"] == "" and p["state"]["job_count"] == 0


# -- the cases, by route ------------------------------------------------------------------------------


def chat_history(e: Env) -> None:
    """/v1 chats land in the caller's history; bob resending alice's conversation starts his own."""
    resent = [
        {"role": "user", "content": "alice's plan"},
        {"role": "assistant", "content": e.items["answer"]},
        {"role": "user", "content": "and then?"},
    ]
    assert e.bob.post("/v1/chat/completions", json={"model": "echo", "messages": resent}).status_code == 200
    with e.as_user("bob"):
        his = e.studio.history.latest_id()
        assert his != e.items["conversation"] and len(e.studio.history.get(his)["messages"]) == 4
    with e.as_user("alice"):
        assert len(e.studio.history.get(e.items["conversation"])["messages"]) == 2


def completion_history(e: Env) -> None:
    assert e.bob.post("/v1/completions", json={"model": "echo", "prompt": "bob's line"}).status_code == 200
    with e.as_user("bob"):
        assert e.studio.history.get(e.studio.history.latest_id())["title"] == "bob's line"
    with e.as_user("alice"):
        assert "bob's line" not in json.dumps(e.studio.history.list())


def openai_image_url(e: Env) -> None:
    r = e.alice.post(
        "/v1/images/generations",
        json={"prompt": "alice's kite", "model": "plain", "size": "64x64", "steps": 1, "response_format": "url"},
    )
    assert r.status_code == 200, r.text
    url = r.json()["data"][0]["url"]
    path = url.removeprefix(e.url)
    assert e.alice.get(path).status_code == 200
    image_id = path.rsplit("/", 1)[1].removesuffix(".png")
    same_as_missing(e, "GET", path, image_id, "img-00000000000000000")


def sdapi_image(mode: str) -> Callable[[Env], None]:
    def check(e: Env) -> None:
        body = {"prompt": f"bob's {mode}", "seed": 5, **SMALL}
        if mode == "img2img":
            body["init_images"] = [png_b64()]
        assert e.bob.post(f"/sdapi/v1/{mode}", json=body).status_code == 200
        assert f"bob's {mode}" in e.bob.get("/api/images").text
        assert f"bob's {mode}" not in e.alice.get("/api/images").text

    return check


def progress(e: Env) -> None:
    running_job_of_alice(e, lambda: bobs_progress_is_idle(e))


def interrupt(e: Env) -> None:
    def check():
        assert e.bob.post("/sdapi/v1/interrupt").status_code == 200
        bobs_progress_is_idle(e)

    running_job_of_alice(e, check)


def skip(e: Env) -> None:
    running_job_of_alice(e, lambda: e.bob.post("/sdapi/v1/skip").raise_for_status())


def job_state(e: Env) -> None:
    same_as_missing(e, "GET", f"/api/jobs/{e.items['job']}", e.items["job"], "job-00000000000000000")


def image_file(e: Env) -> None:
    same_as_missing(e, "GET", f"/api/images/{e.items['image']}.png", e.items["image"], "img-00000000000000000")


def styles_listed(path: str) -> Callable[[Env], None]:
    return lambda e: only_own_listed(e, path, "style")


def style_made(e: Env) -> None:
    made_is_callers(e, "POST", "/api/prompts/styles", "/api/prompts/styles", {"name": "BobInk", "prompt": "ink"})


def styles_imported(e: Env) -> None:
    csv = "name,prompt,negative_prompt\nBobCsv,charcoal,\n"
    assert e.bob.post("/api/prompts/styles.csv", json={"csv": csv}).status_code == 200
    assert "BobCsv" in e.bob.get("/api/prompts/styles").text and "BobCsv" not in e.alice.get("/api/prompts/styles").text
    assert e.items["style"] in e.alice.get("/api/prompts/styles").text  # alice's set untouched


def apply_styles(e: Env) -> None:
    body = {"prompt": "a cat", "styles": [e.items["style"]]}
    same_as_missing(e, "POST", "/api/prompts/apply-styles", e.items["style"], "NoSuchStyle", json=body)


def style_put(e: Env) -> None:
    """A PUT of a name bob does not have makes his own style of that name; alice's stays as it was."""
    name = e.items["style"]
    assert e.bob.put(f"/api/prompts/styles/{name}", json={"prompt": "bob's"}).status_code == 200
    assert e.bob.get(f"/api/prompts/styles/{name}").json()["prompt"] == "bob's"
    assert e.alice.get(f"/api/prompts/styles/{name}").json()["prompt"] == "oil"
    assert e.bob.delete(f"/api/prompts/styles/{name}").status_code == 200
    assert e.alice.put(f"/api/prompts/styles/{name}", json={"prompt": "oil"}).status_code == 200


def style_by_name(method: str) -> Callable[[Env], None]:
    def check(e: Env) -> None:
        kwargs = {"json": {"prompt": "changed"}} if method == "PUT" else {}
        same_as_missing(e, method, f"/api/prompts/styles/{e.items['style']}", e.items["style"], "NoSuchStyle", **kwargs)
        if method == "DELETE":  # alice's own delete succeeded: put it back for the other cases
            e.alice.post("/api/prompts/styles", json={"name": e.items["style"], "prompt": "oil"}).raise_for_status()

    return check


def templates_listed(e: Env) -> None:
    only_own_listed(e, "/api/templates", "template")


def template_made(e: Env) -> None:
    body = {"name": "bobt", "language": "en", "prompt": "Hi."}
    made_is_callers(e, "POST", "/api/templates", "/api/templates", body)


def template_by_key(method: str, suffix: str = "", body: dict | None = None) -> Callable[[Env], None]:
    def check(e: Env) -> None:
        key = e.items["template"]
        kwargs = {"json": body} if body is not None else {}
        same_as_missing(e, method, f"/api/templates/{key}{suffix}", key, "nosuch.en", **kwargs)
        if method == "DELETE":
            e.alice.post(
                "/api/templates", json={"name": "alicet", "language": "en", "prompt": "Say it."}
            ).raise_for_status()

    return check


def document_made(path: str, body: dict, stream: bool) -> Callable[[Env], None]:
    return lambda e: made_is_callers(e, "POST", path, "/api/documents", body, stream=stream)


def document_route(method: str, template: str, body: dict | None = None, params: dict | None = None):
    def check(e: Env) -> None:
        doc = e.items["document"]
        kwargs: dict = {}
        if body is not None:
            kwargs["json"] = body
        if params is not None:
            kwargs["params"] = params
        same_as_missing(e, method, template.format(doc=doc), doc, "doc-00000000000000000", **kwargs)
        if method == "DELETE":
            events = sse(
                e.alice.post(
                    "/api/write/article", json={"title": "Alice's garden", "length": 100, "headings": ["Roses"]}
                )
            )
            e.items["document"] = events[0]["document_id"]

    return check


def documents_listed(e: Env) -> None:
    only_own_listed(e, "/api/documents", "document")
    only_own_listed(e, "/api/documents", "document", params={"q": "garden"})


def code_generate(e: Env) -> None:
    prompt = "```python\nprint('bob')\n```"
    made_is_callers(e, "POST", "/api/code/generate", "/api/code/sessions", {"prompt": prompt, "stream": False})
    body = {"prompt": prompt, "session_id": e.items["session"], "stream": False}
    same_as_missing(e, "POST", "/api/code/generate", e.items["session"], "conv-00000000000000000", json=body)


def code_run(e: Env) -> None:
    made_is_callers(e, "POST", "/api/code/run", "/api/code/sessions", {"language": "python", "code": "print(1)"})
    version = str(e.items["version"])
    fake = e.bob.post("/api/code/run", json={"version_id": 999_999})
    hers = e.bob.post("/api/code/run", json={"version_id": int(version)})
    assert fake.status_code == hers.status_code == 404 and hers.text.replace(version, "999999") == fake.text
    assert e.alice.post("/api/code/run", json={"version_id": int(version)}).status_code == 200


def code_session(method: str, suffix: str = "", body: dict | None = None):
    def check(e: Env) -> None:
        session = e.items["session"]
        kwargs = {"json": body} if body is not None else {}
        same_as_missing(e, method, f"/api/code/sessions/{session}{suffix}", session, "conv-00000000000000000", **kwargs)
        if method == "DELETE":
            r = e.alice.post("/api/code/run", json={"language": "python", "code": "print(6 * 7)"})
            e.items["session"], e.items["version"] = r.json()["session_id"], r.json()["version_id"]

    return check


def code_listed(e: Env) -> None:
    only_own_listed(e, "/api/code/sessions", "session")


def code_diff(e: Env) -> None:
    version = str(e.items["version"])
    fake = e.bob.get("/api/code/diff", params={"a": 999_999, "b": 999_999})
    hers = e.bob.get("/api/code/diff", params={"a": version, "b": version})
    assert fake.status_code == hers.status_code == 404 and hers.text.replace(version, "999999") == fake.text
    assert e.alice.get("/api/code/diff", params={"a": version, "b": version}).status_code == 200


def compare_made(e: Env) -> None:
    body = {"prompt": "one two", "models": ["echo", "echo2"], "stream": False}
    made_is_callers(e, "POST", "/api/compare", "/api/compare", body)


def compare_images_made(e: Env) -> None:
    body = {"prompt": "a kite", "seed": 3, **SMALL, "models": ["plain", "plain2"]}
    made_is_callers(e, "POST", "/api/compare/images", "/api/compare", body)


def compare_listed(e: Env) -> None:
    only_own_listed(e, "/api/compare", "comparison")
    only_own_listed(e, "/api/compare", "grid", params={"kind": "image"})


def comparison(suffix: str, key: str) -> Callable[[Env], None]:
    return lambda e: same_as_missing(
        e, "GET", f"/api/compare/{e.items[key]}{suffix}", e.items[key], "cmp-00000000000000000"
    )


def battle_made(e: Env) -> None:
    r = e.bob.post("/api/arena/battles", json={"prompt": "one two", "models": ["echo", "echo2"], "seed": 2})
    assert r.status_code == 200, r.text
    battle = r.json()["id"]
    assert e.bob.get(f"/api/arena/battles/{battle}").status_code == 200
    assert e.alice.get(f"/api/arena/battles/{battle}").status_code == 404


def battle_shown(e: Env) -> None:
    same_as_missing(e, "GET", f"/api/arena/battles/{e.items['battle']}", e.items["battle"], "battle-00000000000000000")


def battle_vote(e: Env) -> None:
    path = f"/api/arena/battles/{e.items['battle']}/vote"
    same_as_missing(e, "POST", path, e.items["battle"], "battle-00000000000000000", json={"vote": "tie"})
    assert e.alice.get(f"/api/arena/battles/{e.items['battle']}").json()["vote"] == "tie"  # hers, not bob's


def inspect_file(e: Env) -> None:
    files = {"file": ("boat.png", e.items["png"], "image/png")}
    assert e.bob.post("/api/inspect", files=files).json()["item"] is None
    assert e.alice.post("/api/inspect", files=files).json()["item"]["id"] == e.items["image"]


def who_am_i(e: Env) -> None:
    assert e.alice.get("/api/me").json()["name"] == "alice" and e.bob.get("/api/me").json()["name"] == "bob"


def keys_listed(e: Env) -> None:
    assert e.items["key"] not in bob_lists(e, "/api/keys") and e.items["key"] in e.alice.get("/api/keys").text
    assert e.bob.get("/api/keys", params={"user": "alice"}).status_code == 403  # naming her needs admin


def key_made(e: Env) -> None:
    refused = e.bob.post("/api/keys", json={"name": "for her", "user": "alice"})
    assert refused.status_code == 403 and "needs the admin role" in refused.json()["error"]["message"]
    assert "for her" not in e.alice.get("/api/keys").text
    made = e.bob.post("/api/keys", json={"name": "his own"})
    assert made.status_code == 201 and made.json()["user"] == "bob"


def key_revoked(e: Env) -> None:
    spare = e.alice.post("/api/keys", json={"name": "spare"}).json()["id"]
    same_as_missing(e, "DELETE", f"/api/keys/{spare}", spare, "0000000000000000")
    assert e.alice.get("/api/me").status_code == 200  # her main key is untouched


def admin_only_on_users(method: str, path: str, body: dict | None = None) -> Callable[[Env], None]:
    def check(e: Env) -> None:
        r = e.bob.request(method, path, json=body)
        assert r.status_code == 403 and "needs the admin role" in r.json()["error"]["message"], r.text
        assert e.studio.users.sign_in("alice", "alice-password-1").name == "alice"  # she is as she was

    return check


CASES: dict[str, Callable[[Env], None]] = {
    "GET /api/me": who_am_i,
    "GET /api/keys": keys_listed,
    "POST /api/keys": key_made,
    "DELETE /api/keys/{key_id}": key_revoked,
    "GET /api/users": admin_only_on_users("GET", "/api/users"),
    "POST /api/users": admin_only_on_users("POST", "/api/users", {"name": "carol", "password": "carol-pass-1"}),
    "DELETE /api/users/{name}": admin_only_on_users("DELETE", "/api/users/alice"),
    "PUT /api/users/{name}/password": admin_only_on_users(
        "PUT", "/api/users/alice/password", {"password": "taken-over"}
    ),
    "POST /v1/chat/completions": chat_history,
    "POST /v1/completions": completion_history,
    "POST /v1/images/generations": openai_image_url,
    "POST /sdapi/v1/txt2img": sdapi_image("txt2img"),
    "POST /sdapi/v1/img2img": sdapi_image("img2img"),
    "GET /sdapi/v1/progress": progress,
    "POST /sdapi/v1/interrupt": interrupt,
    "POST /sdapi/v1/skip": skip,
    "GET /sdapi/v1/prompt-styles": styles_listed("/sdapi/v1/prompt-styles"),
    "GET /api/images/{image_id}.png": image_file,
    "GET /api/images": lambda e: only_own_listed(e, "/api/images", "image"),
    "GET /api/jobs/{job_id}": job_state,
    "GET /api/prompts/styles": styles_listed("/api/prompts/styles"),
    "POST /api/prompts/styles": style_made,
    "GET /api/prompts/styles.csv": styles_listed("/api/prompts/styles.csv"),
    "POST /api/prompts/styles.csv": styles_imported,
    "POST /api/prompts/apply-styles": apply_styles,
    "GET /api/prompts/styles/{name}": style_by_name("GET"),
    "PUT /api/prompts/styles/{name}": style_put,
    "DELETE /api/prompts/styles/{name}": style_by_name("DELETE"),
    "GET /api/templates": templates_listed,
    "POST /api/templates": template_made,
    "GET /api/templates/{key}": template_by_key("GET"),
    "PUT /api/templates/{key}": template_by_key("PUT", body={"prompt": "Changed."}),
    "DELETE /api/templates/{key}": template_by_key("DELETE"),
    "GET /api/templates/{key}/export": template_by_key("GET", "/export"),
    "POST /api/templates/{key}/run": template_by_key("POST", "/run", body={"model": "echo"}),
    "POST /api/write/outline": document_made("/api/write/outline", {"title": "Bob's shed", "length": 100}, False),
    "POST /api/write/article": document_made(
        "/api/write/article", {"title": "Bob's shed", "length": 100, "headings": ["Tools"]}, True
    ),
    "POST /api/write/{document_id}/continue": document_route("POST", "/api/write/{doc}/continue", body={}),
    "POST /api/write/{document_id}/sections/{section}/regenerate": document_route(
        "POST", "/api/write/{doc}/sections/1/regenerate", body={}
    ),
    "PUT /api/write/{document_id}/outline": document_route("PUT", "/api/write/{doc}/outline", body={"headings": ["X"]}),
    "POST /api/write/{document_id}/versions": document_route(
        "POST", "/api/write/{doc}/versions", body={"content": "# Mine\n"}
    ),
    "GET /api/documents": documents_listed,
    "GET /api/documents/{document_id}": document_route("GET", "/api/documents/{doc}"),
    "DELETE /api/documents/{document_id}": document_route("DELETE", "/api/documents/{doc}"),
    "GET /api/documents/{document_id}/versions": document_route("GET", "/api/documents/{doc}/versions"),
    "GET /api/documents/{document_id}/export": document_route(
        "GET", "/api/documents/{doc}/export", params={"format": "md"}
    ),
    "POST /api/code/generate": code_generate,
    "POST /api/code/run": code_run,
    "GET /api/code/sessions": code_listed,
    "GET /api/code/sessions/{session_id}": code_session("GET"),
    "DELETE /api/code/sessions/{session_id}": code_session("DELETE"),
    "POST /api/code/sessions/{session_id}/versions": code_session("POST", "/versions", body={"code": "print(2)"}),
    "GET /api/code/diff": code_diff,
    "POST /api/compare": compare_made,
    "GET /api/compare": compare_listed,
    "POST /api/compare/images": compare_images_made,
    "GET /api/compare/{comparison_id}": comparison("", "comparison"),
    "GET /api/compare/{comparison_id}/grid.png": comparison("/grid.png", "grid"),
    "POST /api/arena/battles": battle_made,
    "GET /api/arena/battles/{battle_id}": battle_shown,
    "POST /api/arena/battles/{battle_id}/vote": battle_vote,
    "POST /api/inspect": inspect_file,
}

# Routes that hold no user's items, and why.
ALLOWED = {
    "GET /health": "the server's state",
    "GET /v1/models": "the shared model catalog",
    "GET /v1/models/{model_id}": "the shared model catalog",
    "GET /api/models": "the shared model catalog and what is loaded",
    "POST /sdapi/v1/png-info": "reads the uploaded image's own text; looks nothing up",
    "GET /sdapi/v1/sd-models": "the shared model catalog",
    "POST /sdapi/v1/refresh-checkpoints": "rescans the shared model folder",
    "GET /sdapi/v1/samplers": "a fixed list",
    "GET /sdapi/v1/schedulers": "a fixed list",
    "GET /sdapi/v1/options": "server settings, not a user's item (who may change them is the auth part's)",
    "POST /sdapi/v1/options": "server settings, not a user's item (who may change them is the auth part's)",
    "GET /sdapi/v1/scripts": "a fixed list",
    "GET /sdapi/v1/script-info": "a fixed list",
    "POST /api/prompts/expand": "answers from the request and keeps nothing (no history)",
    "GET /api/prompts/wildcards": "the server's wildcard files, which no route writes",
    "POST /api/prompts/wildcards/preview": "draws from the request and the server's wildcard files; keeps nothing",
    "GET /api/write/ops": "a fixed list",
    "POST /api/write/edit": "edits the text in the request and keeps nothing (no history)",
    "GET /api/arena/leaderboard": "ranks models on the team's votes: counts only, no battle, prompt or voter",
}


def operations() -> set[str]:
    """Every API operation of the app's route table (the web UI's are Gradio's: its handlers call the
    same services, and its file route has a test of its own below)."""
    studio = Studio(load_config(model="echo"))
    try:
        app = create_app(studio, load_default=False)
    finally:
        studio.close()
    found = set()
    for route in iter_route_contexts(app.router.routes):
        if route.path_format and is_api_path(route.path_format):
            found |= {f"{method} {route.path_format}" for method in route.original_route.methods}
    return found


def test_every_route_has_a_case(aigc_home):
    routes = operations()
    assert not set(CASES) & set(ALLOWED)
    missing = routes - set(CASES) - set(ALLOWED)
    assert not missing, f"routes with no ownership case and no reason in ALLOWED: {sorted(missing)}"
    assert not (set(CASES) | set(ALLOWED)) - routes, "cases for routes that no longer exist"


@pytest.mark.parametrize("route", sorted(CASES))
def test_bob_cannot_reach_alices_items_and_each_sees_their_own(env, route):
    CASES[route](env)


def test_the_web_uis_file_route_sends_only_the_callers_own_files(env):
    path = env.items["path"]
    assert env.alice.get(f"/gradio_api/file={path}").status_code == 200
    missing = path.replace(env.items["image"], "img-00000000000000000")
    fake, hers = env.bob.get(f"/gradio_api/file={missing}"), env.bob.get(f"/gradio_api/file={path}")
    assert fake.status_code == hers.status_code == 403
    assert hers.json()["detail"] == fake.json()["detail"].replace(missing, path)
    # no one signed in: nothing (the local studio, with sign-in off, serves its files as before)
    assert httpx.get(f"{env.url}/gradio_api/file={path}").status_code == 401
