"""``aigc users`` and ``aigc keys`` on the local database, and ``aigc serve`` refusing to listen on an
address others reach while no one could sign in (a real subprocess, a real port)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from aigc_studio.cli.main import cli
from aigc_studio.config import load_config
from aigc_studio.services.users import UserService
from aigc_studio.storage.db import Database
from aigc_studio.storage.users import UserStore

SRC = Path(__file__).resolve().parent.parent / "src"


def run(*args: str, stdin: str | None = None):
    return CliRunner().invoke(cli, list(args), input=stdin, catch_exceptions=False)


def users() -> UserService:
    return UserService(UserStore(Database(load_config().database)))


def test_users_add_list_passwd_rm():
    assert run("users", "add", "Ann", "--admin", "--password-stdin", stdin="ann-password-1\n").exit_code == 0
    added = run("users", "add", "ben", "--password-stdin", stdin="ben-password-1\n")
    assert added.exit_code == 0 and "added ben (member" in added.output
    listed = run("users", "list").output.splitlines()
    assert [line.split()[:2] for line in listed] == [["Ann", "admin"], ["ben", "member"]]

    taken = run("users", "add", "ANN", "--password-stdin", stdin="another-pass\n")
    assert taken.exit_code == 1 and "already a user called 'ANN'" in taken.output
    short = run("users", "add", "cat", "--password-stdin", stdin="short\n")
    assert short.exit_code == 1 and "8 to 1024 characters, got 5" in short.output
    bad = run("users", "add", "a:b", "--password-stdin", stdin="long-enough-1\n")
    assert bad.exit_code == 1 and "letters, digits" in bad.output

    assert run("users", "passwd", "ben", "--password-stdin", stdin="ben-password-2\n").exit_code == 0
    assert users().sign_in("ben", "ben-password-2").name == "ben"

    last_admin = run("users", "rm", "ann")
    assert last_admin.exit_code == 1 and "only admin" in last_admin.output
    assert run("users", "rm", "ben").output.strip() == "removed ben"
    assert [u["name"] for u in users().store.users()] == ["Ann"]


def test_the_first_admin_is_told_of_the_local_items_and_adopts_them(aigc_home):
    from aigc_studio.principal import acting_as
    from aigc_studio.services.prompt_styles import StyleStore

    StyleStore(aigc_home / "styles.csv", per_user=False).save("Ink", "ink drawing")  # made before users
    added = run("users", "add", "ann", "--admin", "--password-stdin", stdin="ann-password-1\n")
    assert "stay hidden from every user (1 styles)" in added.output and "aigc users adopt ann" in added.output
    ann = users().principal_named("ann")
    with acting_as(ann):
        assert StyleStore(aigc_home / "styles.csv").all() == []

    assert run("users", "adopt", "ann").output.strip() == "ann now owns 1 styles"
    with acting_as(ann):
        assert [s.name for s in StyleStore(aigc_home / "styles.csv").all()] == ["Ink"]
    assert run("users", "adopt", "ann").output.strip() == "there were no items without an owner"
    missing = run("users", "adopt", "zed")
    assert missing.exit_code == 1 and "no user called 'zed'" in missing.output


def test_users_add_asks_for_the_password_twice(monkeypatch):
    answers = iter(["typed-password-1", "typed-password-1", "first-try-xx", "second-try-xx"])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    assert run("users", "add", "dan").exit_code == 0
    assert users().sign_in("dan", "typed-password-1").role == "member"
    differ = run("users", "add", "eve")
    assert differ.exit_code == 1 and "the two passwords differ" in differ.output
    assert users().store.user("eve") is None


def test_keys_create_list_revoke():
    run("users", "add", "fin", "--admin", "--password-stdin", stdin="fin-password-1\n")
    made = CliRunner().invoke(cli, ["keys", "create", "--name", "laptop", "--expires", "30"])
    assert made.exit_code == 0, made.output
    key = made.stdout.strip()  # alone on stdout, for `KEY=$(aigc keys create ...)`
    assert key.startswith("aigc-") and "not shown again" in made.stderr
    assert users().principal_for_key(key).name == "fin"

    listed = run("keys", "list").output
    key_id = key.split("-")[1]
    assert key_id in listed and "laptop" in listed and "active" in listed
    assert key.split("-", 2)[2] not in listed  # the secret is shown once only

    assert run("keys", "revoke", key_id).output.startswith(f"revoked {key_id} (fin, laptop)")
    assert "revoked" in run("keys", "list").output
    unknown = run("keys", "revoke", "0123456789abcdef")
    assert unknown.exit_code == 1 and "no API key with id 0123456789abcdef" in unknown.output

    run("users", "add", "gus", "--password-stdin", stdin="gus-password-1\n")
    ambiguous = run("keys", "create")
    assert ambiguous.exit_code == 1 and "there are 2 users: say whose key it is (--user NAME" in ambiguous.output
    assert run("keys", "create", "--user", "gus").exit_code == 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_serve_on_all_addresses_without_users_exits_before_binding(aigc_home):
    port = _free_port()
    env = {**os.environ, "AIGC_HOME": str(aigc_home), "PYTHONPATH": str(SRC)}
    done = subprocess.run(
        [sys.executable, "-m", "aigc_studio", "serve", "--host", "0.0.0.0", "--port", str(port)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert "aigc users add NAME --admin" in done.stderr and "refusing to serve on 0.0.0.0" in done.stderr
    assert "Traceback" not in done.stderr and "on http://" not in done.stderr  # no start banner
    assert not _listening(port)


def test_serve_with_auth_on_starts_once_there_is_a_user_and_asks_for_keys(aigc_home):
    import time

    import httpx

    port = _free_port()
    env = {**os.environ, "AIGC_HOME": str(aigc_home), "PYTHONPATH": str(SRC), "AIGC_AUTH": "on"}
    serve = [sys.executable, "-m", "aigc_studio", "serve", "--port", str(port), "--model", "echo"]
    refused = subprocess.run(serve, env=env, capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0 and "aigc users add NAME --admin" in refused.stderr  # auth on: loopback too

    assert run("users", "add", "hal", "--admin", "--password-stdin", stdin="hal-password-1\n").exit_code == 0
    key = CliRunner().invoke(cli, ["keys", "create", "--user", "hal"]).stdout.strip()
    server = subprocess.Popen(serve, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while True:
            assert server.poll() is None, server.stderr.read()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.time() < deadline, "the server did not start"
            time.sleep(0.2)
        assert httpx.get(f"http://127.0.0.1:{port}/v1/models").status_code == 401
        models = httpx.get(f"http://127.0.0.1:{port}/v1/models", headers={"Authorization": f"Bearer {key}"})
        assert models.status_code == 200 and "echo" in {m["id"] for m in models.json()["data"]}
    finally:
        server.terminate()
        _, stderr = server.communicate(timeout=60)
    assert "Sign-in required" in stderr
    assert key not in stderr and key.split("-", 2)[2] not in (aigc_home / "logs" / "server.log").read_text()
