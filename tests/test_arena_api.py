"""/api/arena over a real server on loopback, with the echo test models."""

from __future__ import annotations

import httpx
import pytest

from .conftest import studio_server


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with studio_server(tmp_path_factory.mktemp("arena-home"), load_default=False, model="echo") as live:
        yield live


def test_a_blind_battle_its_vote_and_the_leaderboard(server):
    url = server.url + "/api/arena"
    r = httpx.post(
        url + "/battles", json={"prompt": "red green blue", "models": ["echo", "echo2"], "seed": 3}, timeout=60
    )
    assert r.status_code == 200, r.text
    battle = r.json()
    assert battle["state"] == "ready" and battle["params"] == {"seed": 3, "max_tokens": 512}
    assert [(a["label"], a["model"]) for a in battle["answers"]] == [("Model A", None), ("Model B", None)]
    assert "echo" not in r.text
    shown = httpx.get(f"{url}/battles/{battle['id']}")
    assert shown.status_code == 200 and "echo" not in shown.text

    echo_side = next(a["side"] for a in battle["answers"] if a["text"] == "red green blue")
    voted = httpx.post(f"{url}/battles/{battle['id']}/vote", json={"vote": echo_side})
    assert voted.status_code == 200
    assert {a["model"]: a["text"] for a in voted.json()["answers"]} == {
        "echo": "red green blue",
        "echo2": "blue green red",
    }
    again = httpx.post(f"{url}/battles/{battle['id']}/vote", json={"vote": "tie"})
    assert again.status_code == 409
    assert (
        again.json()["error"]["message"]
        == f"battle '{battle['id']}' already has its vote ({echo_side}); a battle takes one vote"
    )
    assert again.json()["error"]["code"] == "already_voted"

    board = httpx.get(url + "/leaderboard", params={"category": "chat", "bootstrap": 50}).json()
    rows = {s["model"]: s for s in board["standings"]}
    assert board["battles"] == 1 and board["category"] == "chat"  # this module's first battle
    assert (rows["echo"]["rank"], rows["echo"]["wins"], rows["echo2"]["losses"]) == (1, 1, 1)
    assert rows["echo"]["score"] > 1000 > rows["echo2"]["score"]
    assert rows["echo"]["elo"] == pytest.approx(1002)
    idle = httpx.get(url + "/leaderboard", params={"category": "image"}).json()
    assert [(s["model"], s["battles"], s["score"]) for s in idle["standings"]] == [
        ("plain", 0, None),
        ("plain2", 0, None),
    ]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "message"),
    [
        ("POST", "/battles", {"prompt": "hi", "models": ["echo"] * 3}, 400, "models: List should have at most 2 items"),
        (
            "POST",
            "/battles",
            {"prompt": "hi", "models": ["echo", "echo"]},
            400,
            "two different models, got 'echo' twice",
        ),
        ("POST", "/battles", {"prompt": "hi", "models": ["nope"]}, 404, "The model 'nope' does not exist"),
        (
            "POST",
            "/battles",
            {"prompt": "hi", "category": "poetry"},
            400,
            "category: Input should be 'chat', 'writing', 'code' or 'image'",
        ),
        ("POST", "/battles", {"prompt": " "}, 400, "prompt: String should match pattern"),
        (
            "POST",
            "/battles",
            {"prompt": "hi", "image": {"steps": 2}},
            400,
            "image parameters are for the image category only",
        ),
        ("GET", "/battles/battle-0", None, 404, "no arena battle with id 'battle-0'"),
        ("GET", "/battles/x", None, 404, "no arena battle with id 'x'"),
        ("POST", "/battles/battle-0/vote", {"vote": "a"}, 404, "no arena battle with id 'battle-0'"),
        ("GET", "/leaderboard?bootstrap=5000", None, 400, "bootstrap: Input should be less than or equal to 2000"),
    ],
)
def test_bad_input_is_a_4xx_that_says_what_is_allowed(server, method, path, body, status, message):
    count = "SELECT count(*) FROM arena_battles"
    before = server.studio.db.conn.execute(count).fetchone()[0]
    r = httpx.request(method, server.url + "/api/arena" + path, json=body, timeout=60)
    assert r.status_code == status, r.text
    assert message in r.json()["error"]["message"]
    assert server.studio.db.conn.execute(count).fetchone()[0] == before


def test_a_bad_vote_is_refused_and_the_battle_stays_open(server):
    battle = httpx.post(
        server.url + "/api/arena/battles", json={"prompt": "a b", "models": ["echo", "echo2"]}, timeout=60
    ).json()
    r = httpx.post(f"{server.url}/api/arena/battles/{battle['id']}/vote", json={"vote": "c"})
    assert r.status_code == 400 and "vote: Input should be 'a', 'b', 'tie' or 'bad'" in r.json()["error"]["message"]
    assert httpx.get(f"{server.url}/api/arena/battles/{battle['id']}").json()["state"] == "ready"


def test_the_schema_declares_each_answer(server):
    schema = httpx.get(server.url + "/openapi.json").json()["paths"]
    codes = {
        f"{method.upper()} {path}": {int(c) for c in operation["responses"]}
        for path, operations in schema.items()
        if path.startswith("/api/arena")
        for method, operation in operations.items()
    }
    assert codes == {
        "POST /api/arena/battles": {200, 400, 404, 413, 422, 429, 503},
        "GET /api/arena/battles/{battle_id}": {200, 404, 429},
        "POST /api/arena/battles/{battle_id}/vote": {200, 400, 404, 409, 413, 429},
        "GET /api/arena/leaderboard": {200, 400, 429},
    }
    body = httpx.get(server.url + "/openapi.json").json()["components"]["schemas"]["BattleRequest"]["properties"]
    assert body["models"]["maxItems"] == 2 and body["max_tokens"]["maximum"] == 4096
