"""Sign-in on a team server, through a real uvicorn server with auth on and the clients people use: the
official openai client (api_key), webuiapi (set_auth, A1111's --api-auth), curl-like httpx (Bearer, basic,
the login page's session cookie). Who may do what: members get a 403 naming the role on admin-only work."""

from __future__ import annotations

import base64
import logging
import time
from hashlib import sha256

import httpx
import openai
import pytest
import webuiapi

from aigc_studio import principal
from aigc_studio.api.app import create_app
from aigc_studio.config import load_config, save_settings
from aigc_studio.errors import Forbidden
from aigc_studio.principal import acting_as

from .conftest import LiveServer, make_studio, studio_server

ALICE, BOB = ("alice", "alice-password-1"), ("bob", "bob-password-22")


def _people(studio) -> None:
    studio.users.add(*ALICE, admin=True)
    studio.users.add(*BOB)
    keys = {
        "alice": studio.users.create_key("alice", "admin laptop"),
        "bob": studio.users.create_key("bob", "bob's script"),
        "revoked": studio.users.create_key("bob", "old"),
        "expired": studio.users.create_key("bob", "short-lived", expires_days=1),
    }
    studio.users.revoke_key(keys["revoked"].id)
    with studio.db.tx() as conn:  # a day has passed, as far as this key is concerned
        conn.execute("UPDATE api_keys SET expires = ? WHERE id = ?", (time.time() - 1, keys["expired"].id))
    studio.test_keys = {name: new.key for name, new in keys.items()}
    studio.test_key_ids = {name: new.id for name, new in keys.items()}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    home = tmp_path_factory.mktemp("auth-home")
    with studio_server(home, load_default=False, model="echo", image_model="plain", auth="on", prepare=_people) as live:
        live.keys = live.studio.test_keys
        live.key_ids = live.studio.test_key_ids
        yield live


def bearer(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def client(server, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0)


# -- who gets in ---------------------------------------------------------------------------------


def test_without_a_key_v1_is_refused_in_openais_shape(server):
    r = httpx.get(server.url + "/v1/models")
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"
    error = r.json()["error"]
    assert error["code"] == "invalid_api_key" and error["type"] == "invalid_request_error"
    assert "Authorization: Bearer" in error["message"] and "aigc keys create" in error["message"]


@pytest.mark.parametrize(
    "which, words",
    [
        ("wrong", "not valid"),
        ("revoked", "was revoked"),
        ("expired", "expired on"),
    ],
)
def test_a_wrong_revoked_or_expired_key_is_refused_by_the_openai_client(server, which, words):
    key = server.keys.get(which) or "aigc-0123456789abcdef-" + "x" * 43
    with pytest.raises(openai.AuthenticationError) as caught:
        client(server, key).chat.completions.create(model="echo", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.status_code == 401
    assert caught.value.code == "invalid_api_key"
    assert words in caught.value.message
    assert key not in caught.value.message and key.split("-", 2)[-1] not in caught.value.message  # the secret


def test_the_right_key_works_with_the_openai_client_and_names_its_user(server):
    answer = client(server, server.keys["bob"]).chat.completions.create(
        model="echo", messages=[{"role": "user", "content": "hello from bob"}]
    )
    assert answer.choices[0].message.content == "hello from bob"
    me = httpx.get(server.url + "/api/me", headers=bearer(server.keys["bob"])).json()
    assert me == {"signed_in": True, "user_id": me["user_id"], "name": "bob", "role": "member"}
    assert me["user_id"].startswith("usr-")


def test_a_key_records_when_it_was_last_used(server):
    httpx.get(server.url + "/api/me", headers=bearer(server.keys["alice"]))
    listed = httpx.get(server.url + "/api/keys", headers=bearer(server.keys["alice"])).json()
    mine = next(k for k in listed if k["id"] == server.key_ids["alice"])
    assert mine["last_used"] is not None and time.time() - mine["last_used"] < 600
    assert all("key" not in k for k in listed)  # never a secret in a listing


def test_webuiapi_signs_in_with_basic_auth_as_a1111s_api_auth(server):
    host, port = server.url.removeprefix("http://").split(":")
    api = webuiapi.WebUIApi(host=host, port=int(port))
    api.set_auth(*BOB)
    result = api.txt2img(prompt="a red door", steps=2, width=64, height=64, seed=3)
    assert len(result.images) == 1 and result.images[0].size == (64, 64)
    assert result.info["all_seeds"] == [3]


def test_sdapi_refuses_a_wrong_password_in_a1111s_shape_and_takes_bearer_keys(server):
    wrong = httpx.get(server.url + "/sdapi/v1/sd-models", auth=("bob", "not-his-password"))
    assert wrong.status_code == 401
    assert wrong.headers["www-authenticate"].startswith("Basic")
    assert wrong.json()["detail"] == "wrong user name or password"
    assert set(wrong.json()) == {"error", "detail", "body", "errors"}
    nobody = httpx.get(server.url + "/sdapi/v1/sd-models")
    assert nobody.status_code == 401 and "sign-in required" in nobody.json()["detail"]
    keyed = httpx.get(server.url + "/sdapi/v1/sd-models", headers=bearer(server.keys["bob"]))
    assert keyed.status_code == 200 and "plain" in {m["model_name"] for m in keyed.json()}


def test_api_routes_and_output_files_need_a_user(server):
    made = httpx.post(
        server.url + "/sdapi/v1/txt2img",
        json={"prompt": "a blue door", "steps": 2, "width": 64, "height": 64},
        headers=bearer(server.keys["bob"]),
        timeout=60,
    )
    assert made.status_code == 200, made.text
    image_id = httpx.get(server.url + "/api/images", headers=bearer(server.keys["bob"])).json()[0]["id"]
    assert httpx.get(f"{server.url}/api/images/{image_id}.png").status_code == 401
    assert httpx.get(f"{server.url}/api/images").status_code == 401
    shown = httpx.get(f"{server.url}/api/images/{image_id}.png", headers=bearer(server.keys["bob"]))
    assert shown.status_code == 200 and shown.headers["content-type"] == "image/png"
    # The same file through the web UI's file route: Gradio's own check turns it away without a session.
    path = server.studio.images.file(image_id)
    assert httpx.get(f"{server.url}/gradio_api/file={path}").status_code == 401


def test_health_and_the_api_description_stay_open(server):
    assert httpx.get(server.url + "/health").json()["status"] == "ok"
    assert "/api/keys" in httpx.get(server.url + "/openapi.json").json()["paths"]
    assert httpx.get(server.url + "/docs").status_code == 200


def test_an_unknown_api_path_needs_a_user_before_it_is_a_404(server):
    assert httpx.get(server.url + "/api/nothing-here").status_code == 401
    assert httpx.get(server.url + "/api/nothing-here", headers=bearer(server.keys["bob"])).status_code == 404


def test_a_malformed_authorization_header_is_a_401_that_says_what_is_taken(server):
    for header in ("Token abc", "Basic !!!not-base64", "Basic " + base64.b64encode(b"no-colon").decode()):
        r = httpx.get(server.url + "/api/me", headers={"Authorization": header})
        assert r.status_code == 401, header
        assert "Bearer" in r.json()["error"]["message"] or "user:password" in r.json()["error"]["message"]


# -- the web UI's login --------------------------------------------------------------------------


def test_a_browser_is_sent_to_the_login_page_and_its_session_signs_it_in(server):
    page = httpx.get(server.url + "/", headers={"Accept": "text/html"})
    assert page.status_code == 303 and page.headers["location"] == "/login?next=/"
    form = httpx.get(server.url + "/login?next=/")
    assert form.status_code == 200 and 'name="password"' in form.text

    wrong = httpx.post(server.url + "/login", data={"name": "bob", "password": "nope-nope", "next": "/"})
    assert wrong.status_code == 401 and "Wrong user name or password" in wrong.text
    assert "aigc_session" not in wrong.headers.get("set-cookie", "")

    signed = httpx.post(server.url + "/login", data={"name": "bob", "password": BOB[1], "next": "//evil.example/"})
    assert signed.status_code == 303 and signed.headers["location"] == "/"  # never to another site
    cookie = signed.cookies["aigc_session"]
    assert "httponly" in signed.headers["set-cookie"].lower() and "samesite=lax" in signed.headers["set-cookie"].lower()
    with httpx.Client(base_url=server.url, cookies={"aigc_session": cookie}) as browser:
        assert browser.get("/api/me").json()["name"] == "bob"
        assert browser.get("/", headers={"Accept": "text/html"}).status_code == 200  # the UI itself
        assert browser.get("/gradio_api/user").json() == "bob"  # what Gradio hands handlers as username
        assert browser.post("/logout").status_code == 303
    after = httpx.get(server.url + "/api/me", cookies={"aigc_session": cookie})
    assert after.status_code == 401  # the session ended on the server, not just in the browser


# -- who may do what -----------------------------------------------------------------------------

# Every HTTP route that only an admin may use (the web UI's are checked in the services, below).
ADMIN_ROUTES = [
    ("POST", "/sdapi/v1/options", {"CLIP_stop_at_last_layers": 2}),
    (
        "POST",
        "/sdapi/v1/txt2img",
        {
            "prompt": "x",
            "steps": 2,
            "width": 64,
            "height": 64,
            "override_settings": {"CLIP_stop_at_last_layers": 2},
            "override_settings_restore_afterwards": False,
        },
    ),
    ("GET", "/api/users", None),
    ("POST", "/api/users", {"name": "carol", "password": "carol-password"}),
    ("DELETE", "/api/users/alice", None),
    ("PUT", "/api/users/alice/password", {"password": "taken-over-1"}),
    ("GET", "/api/keys?user=alice", None),
    ("POST", "/api/keys", {"user": "alice", "name": "for me"}),
]
# Revoking another user's key is not here: to a member it answers exactly as a missing key does (404,
# tests/test_owners_http.py), so that a key id confirms nothing.


@pytest.mark.parametrize("method, path, body", ADMIN_ROUTES, ids=[f"{m} {p}" for m, p, _ in ADMIN_ROUTES])
def test_a_member_gets_403_naming_the_role_on_admin_routes(server, method, path, body):
    path = path.format(alice_key=server.key_ids["alice"])
    r = httpx.request(method, server.url + path, json=body, headers=bearer(server.keys["bob"]), timeout=60)
    assert r.status_code == 403, r.text
    message = r.json()["detail"] if path.startswith("/sdapi/") else r.json()["error"]["message"]
    assert "needs the admin role" in message and "'bob' (role member)" in message
    # Nothing changed: alice is still there, with her password and her key.
    assert server.studio.users.sign_in(*ALICE).role == "admin"
    assert server.studio.users.principal_for_key(server.keys["alice"]).name == "alice"
    assert load_config().clip_skip == 1


def test_an_admin_may_do_what_a_member_may_not(server):
    admin = bearer(server.keys["alice"])
    r = httpx.post(server.url + "/sdapi/v1/options", json={"CLIP_stop_at_last_layers": 1}, headers=admin)
    assert r.status_code == 200, r.text
    assert {u["name"] for u in httpx.get(server.url + "/api/users", headers=admin).json()} == {"alice", "bob"}


def test_members_manage_their_own_keys(server):
    mine = bearer(server.keys["bob"])
    created = httpx.post(server.url + "/api/keys", json={"name": "ci", "expires_days": 7}, headers=mine)
    assert created.status_code == 201, created.text
    new = created.json()
    assert new["user"] == "bob" and new["key"].startswith(f"aigc-{new['id']}-")
    assert httpx.get(server.url + "/api/me", headers=bearer(new["key"])).json()["name"] == "bob"
    listed = httpx.get(server.url + "/api/keys", headers=mine).json()
    assert {k["user"] for k in listed} == {"bob"}  # a member sees only their own
    assert httpx.delete(f"{server.url}/api/keys/{new['id']}", headers=mine).json()["revoked"] is not None
    assert httpx.get(server.url + "/api/me", headers=bearer(new["key"])).status_code == 401


def _service_calls(studio, tmp_path):
    (tmp_path / "x.gguf").write_bytes(b"GGUF")
    return {
        "add a model by a server path": lambda: studio.models.add(tmp_path / "x.gguf"),
        "import an A1111 folder": lambda: studio.models.import_a1111(tmp_path),
        "pull a catalog model": lambda: studio.models.pull("sd-turbo"),
        "add a remote model": lambda: studio.models.add_remote("far", "http://127.0.0.1:9/v1", "m", check=False),
        "set the default model": lambda: studio.models.set_default("echo"),
        "save settings": lambda: save_settings({"port": 9000}),
        "set A1111 options": lambda: studio.a1111.set_options({"CLIP_stop_at_last_layers": 2}),
        "add a user": lambda: studio.users.add("carol", "carol-password"),
        "list users": lambda: studio.users.users(),
    }


CALLS = [
    "add a model by a server path",
    "import an A1111 folder",
    "pull a catalog model",
    "add a remote model",
    "set the default model",
    "save settings",
    "set A1111 options",
    "add a user",
    "list users",
]


@pytest.mark.parametrize("what", CALLS)
def test_admin_only_work_is_refused_to_a_member_in_the_services_the_web_ui_calls(aigc_home, tmp_path, what):
    studio = make_studio(aigc_home, model="echo")
    try:
        studio.users.add(*BOB)
        member = studio.users.principal_named("bob")
        before = (studio.config.home / "config.toml").exists(), [m.id for m in studio.registry.all()]
        with acting_as(member), pytest.raises(Forbidden) as caught:
            _service_calls(studio, tmp_path)[what]()
        assert caught.value.status == 403 and "needs the admin role" in caught.value.message
        after = (studio.config.home / "config.toml").exists(), [m.id for m in studio.registry.all()]
        assert after == before  # nothing was written or added
        assert principal.current() is None
    finally:
        studio.close()


# -- secrets stay secret ---------------------------------------------------------------------------


def test_passwords_and_keys_are_stored_only_as_hashes(aigc_home):
    studio = make_studio(aigc_home, model="echo")
    try:
        studio.users.add("dora", "dora-plain-password", admin=True)
        new = studio.users.create_key("dora", "k")
        secret = new.key.split("-", 2)[2]
        stored = studio.db.conn.execute("SELECT password_hash FROM users").fetchone()[0]
        assert stored.startswith("$argon2id$")
        if studio.db.path is None:
            # PostgreSQL: what every row of the users' tables holds (its files are the server's).
            rows = [
                repr(tuple(row))
                for table in ("users", "api_keys", "web_sessions")
                for row in studio.db.conn.execute(f"SELECT * FROM {table}")
            ]
            files = "".join(rows).encode()
        else:
            studio.db.conn.execute("PRAGMA wal_checkpoint(FULL)")
            files = b"".join(p.read_bytes() for p in aigc_home.glob("studio.db*"))
        assert b"dora-plain-password" not in files
        assert secret.encode() not in files and new.key.encode() not in files
        assert sha256(secret.encode()).hexdigest().encode() in files
    finally:
        studio.close()


def test_a_password_hashed_with_old_parameters_is_rehashed_at_sign_in(aigc_home):
    from argon2 import PasswordHasher

    studio = make_studio(aigc_home, model="echo")
    try:
        studio.users.add("erin", "erin-password-1")
        weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash("erin-password-1")
        with studio.db.tx() as conn:
            conn.execute("UPDATE users SET password_hash = ? WHERE name = 'erin'", (weak,))
        assert studio.users.sign_in("erin", "erin-password-1").name == "erin"
        now = studio.db.conn.execute("SELECT password_hash FROM users WHERE name = 'erin'").fetchone()[0]
        assert now != weak and not studio.users.hasher.check_needs_rehash(now)
    finally:
        studio.close()


def test_no_key_or_password_reaches_the_log(aigc_home, caplog):
    caplog.set_level(logging.DEBUG)
    studio = make_studio(aigc_home, model="echo", auth="on")
    studio.users.add("fay", "fay-secret-password")
    key = studio.users.create_key("fay").key
    with LiveServer(create_app(studio, load_default=False)) as live:
        httpx.get(live.url + "/api/me", headers=bearer(key))
        httpx.get(live.url + "/api/me", headers=bearer(key[:-3] + "abc"))
        httpx.get(live.url + "/sdapi/v1/sd-models", auth=("fay", "fay-secret-password"))
        httpx.get(live.url + "/sdapi/v1/sd-models", auth=("fay", "fay-wrong-password"))
        httpx.post(live.url + "/login", data={"name": "fay", "password": "fay-wrong-password"})
        signed = httpx.post(live.url + "/login", data={"name": "fay", "password": "fay-secret-password"})
        cookie = signed.cookies["aigc_session"]
    studio.close()
    # The server's lines (the studio's, uvicorn's, Gradio's): not the test's own HTTP client, which logs
    # the headers it sends and receives at DEBUG.
    server_lines = [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    logged = "\n".join(f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in server_lines)
    assert "refused (401)" in logged  # the refusals were logged, as one line each
    for secret in (key, key.split("-", 2)[2], key[:-3] + "abc", "fay-secret-password", "fay-wrong-password", cookie):
        assert secret not in logged


def test_auth_is_off_on_loopback_and_on_elsewhere(aigc_home):
    assert not load_config().auth_required
    assert load_config(host="localhost").auth_required is False
    assert load_config(host="::1").auth_required is False
    assert load_config(host="0.0.0.0").auth_required is True
    assert load_config(host="192.168.1.5").auth_required is True
    assert load_config(auth="on").auth_required is True
    studio = make_studio(aigc_home, model="echo")
    with LiveServer(create_app(studio, load_default=False)) as live:
        assert httpx.get(live.url + "/api/me").json()["signed_in"] is False
        assert httpx.get(live.url + "/v1/models").status_code == 200
        assert httpx.get(live.url + "/login").status_code != 200  # no login page on a local studio
    studio.close()


def test_a_signed_in_server_needs_users_to_start(aigc_home):
    studio = make_studio(aigc_home, model="echo")
    try:
        with pytest.raises(Exception, match="aigc users add NAME --admin"):
            studio.users.check_can_serve("0.0.0.0", True)
        studio.users.check_can_serve("127.0.0.1", False)  # the local studio needs none
    finally:
        studio.close()


@pytest.mark.parametrize(
    "target, sent_to",
    [
        ("/?tab=images", "/?tab=images"),
        ("//evil.example/", "/"),
        ("/\t/evil.example/", "/"),
        ("https://evil.example/", "/"),
        ("/\\evil.example", "/"),
        ("", "/"),
    ],
)
def test_after_login_a_browser_goes_only_to_a_path_of_this_server(server, target, sent_to):
    signed = httpx.post(server.url + "/login", data={"name": "bob", "password": BOB[1], "next": target})
    assert signed.status_code == 303 and signed.headers["location"] == sent_to


def test_the_schema_says_how_to_sign_in_and_where_a_401_comes(server):
    schema = httpx.get(server.url + "/openapi.json").json()
    assert set(schema["components"]["securitySchemes"]) == {"apiKey", "password"}
    me = schema["paths"]["/api/me"]["get"]
    assert me["security"] == [{"apiKey": []}, {"password": []}]
    assert me["responses"]["401"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorBody")
    options = schema["paths"]["/sdapi/v1/options"]["post"]["responses"]["401"]
    assert options["content"]["application/json"]["schema"]["$ref"].endswith("/A1111ErrorBody")
    assert schema["paths"]["/health"]["get"]["security"] == [] and "401" not in schema["paths"]["/health"]["get"]


def test_schemathesis_finds_nothing_on_the_users_and_keys_routes_with_auth_on(aigc_home, tmp_path):
    """Bounded and repeatable, as tests/test_openapi.py runs the whole schema with auth off; here with an
    admin's key, so that the fuzzer may add and remove users and keys (and revoke its own key: a 401)."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    config = tmp_path / "schemathesis.toml"
    config.write_text(
        (root / "schemathesis.toml").read_text()
        + '\n[generation]\nmax-examples = 20\ndeterministic = true\ndatabase = "none"\n\n[cache]\nenabled = false\n'
    )
    studio = make_studio(aigc_home, model="echo", image_model="plain", auth="on")
    studio.users.add("root1", "root1-password", admin=True)
    key = studio.users.create_key("root1").key
    try:
        with LiveServer(create_app(studio, load_default=False)) as live:
            command = [str(Path(sys.executable).with_name("st")), "--config-file", str(config), "--no-color", "run"]
            command += [live.url + "/openapi.json", "--workers", "1", "--include-path-regex", "^/api/(users|keys|me)"]
            command += ["-H", f"Authorization: Bearer {key}", "--continue-on-failure"]
            run = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=500)
    finally:
        studio.close()
    report = run.stdout + run.stderr
    assert run.returncode == 0, report[-10_000:]
    assert "Tested: 8" in report, report[-3000:]
