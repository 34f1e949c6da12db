"""The arena service: blind battles with the echo test models, one vote each, the leaderboard."""

from __future__ import annotations

import random
import time

import pytest

from aigc_studio.errors import Conflict, InvalidRequest, ModelNotFound, NotFound

from .conftest import make_studio


@pytest.fixture
def studio(aigc_home):
    studio = make_studio(aigc_home)
    yield studio
    studio.close()


def hidden(view: dict) -> bool:
    return all(a["model"] is None for a in view["answers"]) and "echo" not in str(view)


def test_a_battle_hides_the_models_until_the_vote_then_reveals_them(studio):
    view = studio.arena.battle("one two three", models=["echo", "echo2"], seed=5)
    assert view["state"] == "ready" and view["vote"] is None
    assert [a["label"] for a in view["answers"]] == ["Model A", "Model B"]
    assert sorted(a["text"] for a in view["answers"]) == ["one two three", "three two one"]
    assert hidden(view) and hidden(studio.arena.get(view["id"]))
    record = studio.arena.store.get(view["id"])
    assert {record["model_a"], record["model_b"]} == {"echo", "echo2"}
    assert record["params"] == {"seed": 5, "max_tokens": 512}

    voted = studio.arena.vote(view["id"], "a")
    assert voted["state"] == "voted" and voted["vote"] == "a"
    by_side = {a["side"]: a for a in voted["answers"]}
    assert by_side["a"]["model"] == record["model_a"] and by_side["b"]["model"] == record["model_b"]
    # The answer that echoes is echo's, whichever side it was drawn on.
    assert {a["model"]: a["text"] for a in voted["answers"]} == {"echo": "one two three", "echo2": "three two one"}
    assert studio.arena.get(view["id"])["answers"] == voted["answers"]
    # A battle leaves no conversation in chat history.
    assert studio.history.list(limit=10) == []


def test_one_vote_per_battle_and_a_bad_vote_is_refused(studio):
    view = studio.arena.battle("hi there", models=["echo", "echo2"])
    with pytest.raises(InvalidRequest, match="vote must be one of a, b, tie, bad, got 'c'"):
        studio.arena.vote(view["id"], "c")
    studio.arena.vote(view["id"], "tie")
    with pytest.raises(Conflict, match=r"already has its vote \(tie\); a battle takes one vote") as error:
        studio.arena.vote(view["id"], "b")
    assert error.value.status == 409
    assert studio.arena.get(view["id"])["vote"] == "tie"
    with pytest.raises(NotFound, match="no arena battle with id 'battle-0'"):
        studio.arena.vote("battle-0", "a")


def test_the_order_is_random_and_picks_are_among_the_available_models(studio):
    studio.arena.random = random.Random(3)
    assert set(studio.arena.available("chat")) >= {"echo", "echo2"}
    assert studio.arena.available("image") == ["plain", "plain2"]
    pairs = [studio.arena.pick_models("chat") for _ in range(40)]
    available = set(studio.arena.available("chat"))
    assert all(a != b and {a, b} <= available for a, b in pairs)
    assert len({frozenset(p) for p in pairs}) > 1  # not always the same two
    chosen = [studio.arena.pick_models("writing", ["echo", "echo2"]) for _ in range(30)]
    assert set(chosen) == {("echo", "echo2"), ("echo2", "echo")}  # both orders occur
    one = [studio.arena.pick_models("code", ["echo"]) for _ in range(20)]
    assert all("echo" in pair and len(set(pair)) == 2 for pair in one)


def test_a_battle_needs_two_models(studio, monkeypatch):
    with pytest.raises(InvalidRequest, match="give 0, 1 or 2, got 3"):
        studio.arena.pick_models("chat", ["echo", "echo2", "smollm2"])
    with pytest.raises(InvalidRequest, match="two different models, got 'echo' twice"):
        studio.arena.pick_models("chat", ["echo", "echo"])
    with pytest.raises(ModelNotFound, match="'nope' does not exist"):
        studio.arena.pick_models("chat", ["nope", "echo"])
    with pytest.raises(InvalidRequest, match="category must be one of chat, writing, code, image, got 'poetry'"):
        studio.arena.battle("hi", category="poetry")
    with pytest.raises(InvalidRequest, match="prompt must have at least one character"):
        studio.arena.battle("   ")
    monkeypatch.setattr(studio.arena, "available", lambda category: ["echo"])
    with pytest.raises(
        InvalidRequest, match=r"an arena battle needs two text models and only 1 can run here \(echo\); add another"
    ):
        studio.arena.battle("hi")
    assert (
        studio.arena.store.voted() == []
        and studio.db.conn.execute("SELECT count(*) FROM arena_battles").fetchone()[0] == 0
    )


def test_streamed_events_come_from_both_sides(studio):
    run = studio.arena.start("alpha beta gamma", models=["echo", "echo2"])
    text = {"a": "", "b": ""}
    ended = []
    for event in run:
        text[event.side] += event.text
        if event.done:
            ended.append(event.side)
    assert sorted(ended) == ["a", "b"]
    assert sorted(text.values()) == ["alpha beta gamma", "gamma beta alpha"]
    assert [a["text"] for a in run.wait()["answers"]] == [text["a"], text["b"]]


def test_image_battles_use_the_same_seed_and_parameters(studio):
    view = studio.arena.battle("a red square", category="image", seed=42, image={"steps": 2, "width": 64, "height": 64})
    assert view["state"] == "ready" and hidden(view) and "plain" not in str(view)
    ids = [a["image_id"] for a in view["answers"]]
    assert all(ids) and ids[0] != ids[1]
    records = {r["id"]: r for r in studio.images.list()}
    assert {records[i]["seed"] for i in ids} == {42}
    assert {(records[i]["width"], records[i]["params"]["steps"]) for i in ids} == {(64, 2)}
    voted = studio.arena.vote(view["id"], "bad")
    assert {a["model"] for a in voted["answers"]} == {"plain", "plain2"}
    assert {a["model"]: records[a["image_id"]]["model"] for a in voted["answers"]} == {
        "plain": "plain",
        "plain2": "plain2",
    }


def test_leaderboard_per_category_and_overall(studio):
    def battle(category: str, winner: str) -> None:
        view = studio.arena.battle("x y", category=category, models=["echo", "echo2"])
        record = studio.arena.store.get(view["id"])
        side = "a" if record["model_a"] == winner else "b"
        studio.arena.vote(view["id"], side)

    for _ in range(3):
        battle("chat", "echo")
    battle("code", "echo2")
    chat = studio.arena.leaderboard("chat", bootstrap=20)
    rows = {s.model: s for s in chat.standings}
    assert (rows["echo"].rank, rows["echo"].wins, rows["echo"].battles, rows["echo"].win_rate) == (1, 3, 3, 1.0)
    assert rows["echo2"].losses == 3 and rows["echo"].score > 1000 > rows["echo2"].score
    assert rows["smollm2-135m"].battles == 0 and rows["smollm2-135m"].rank is None
    code = {s.model: s for s in studio.arena.leaderboard("code", bootstrap=0).standings}
    assert code["echo2"].rank == 1 and code["echo2"].wins == 1
    overall = {s.model: s for s in studio.arena.leaderboard(None, bootstrap=0).standings}
    assert (overall["echo"].wins, overall["echo"].losses, overall["echo"].battles) == (3, 1, 4)
    assert overall["plain"].battles == 0
    assert studio.arena.leaderboard("image", bootstrap=0).notes == ["no battles yet: plain, plain2"]


def test_the_refusals_read_in_chinese_in_the_web_ui(studio, monkeypatch):
    from aigc_studio.ui.messages import message_text

    monkeypatch.setattr(studio.arena, "available", lambda category: ["plain"])
    with pytest.raises(InvalidRequest) as one:
        studio.arena.battle("a cat", category="image")
    assert message_text("zh-CN", one.value.message) == (
        "竞技场对战需要两个图像模型，这里只有 1 个能运行（plain）；"
        "请用 `aigc models pull` 或 `aigc models add-remote` 再添加一个"
    )


def test_both_answers_are_generated_at_the_same_time(studio):
    for name in ("echo", "echo2"):
        studio.registry.engine(name).delay = 0.1  # each answer alone takes 1 s
    started = time.perf_counter()
    view = studio.arena.battle("w1 w2 w3 w4 w5 w6 w7 w8 w9 w10", models=["echo", "echo2"])
    took = time.perf_counter() - started
    assert all(len(a["text"].split()) == 10 for a in view["answers"])
    assert 1.0 <= took < 1.6, f"{took:.2f} s: one after the other would take 2 s"


def test_a_battle_with_the_real_embedded_model(studio, smollm_path):
    first = studio.arena.battle("Name a colour.", models=["smollm2", "echo"], seed=7, max_tokens=8)
    again = studio.arena.battle("Name a colour.", models=["smollm2", "echo"], seed=7, max_tokens=8)
    answers = [{a["text"]: a for a in v["answers"]} for v in (first, again)]
    assert all("Name a colour." in a for a in answers)  # echo's
    smol = [next(a for t, a in ans.items() if t != "Name a colour.") for ans in answers]
    assert smol[0]["text"].strip() and smol[0]["finish_reason"] in ("stop", "length")
    assert smol[0]["text"] == smol[1]["text"]  # the battle's seed reached the model
    voted = studio.arena.vote(first["id"], smol[0]["side"])
    assert {a["side"]: a["model"] for a in voted["answers"]}[smol[0]["side"]] == "smollm2-135m"
