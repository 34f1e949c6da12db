"""`aigc arena` as a user types it, with the echo test models."""

from __future__ import annotations

import json
import re

from click.testing import CliRunner

from aigc_studio.cli.main import cli


def aigc(*args, input=None):
    return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)


def test_a_battle_asks_for_the_vote_then_names_the_models(aigc_home):
    r = aigc("arena", "battle", "sun moon stars", "-m", "echo", "-m", "echo2", input="a\n")
    assert r.exit_code == 0, r.output
    before, after = r.stdout.split("Your vote")
    assert "── Model A ──" in before and "── Model B ──" in before and "echo" not in before
    assert sorted(re.findall(r"── Model [AB] ──\n(.+)\n", before)) == ["stars moon sun", "sun moon stars"]
    named = dict(re.findall(r"── Model ([AB]) = (echo2?) ──", after))
    assert sorted(named.values()) == ["echo", "echo2"]
    assert "vote: a" in after
    board = aigc("arena", "leaderboard", "--category", "chat", "--bootstrap", "20").stdout
    winner = named["A"]
    # one win with the tiny ridge: 1340 against 660 (the math is tests/test_ranking.py's); Elo moves by K/2
    assert re.search(rf"^   1  {winner} +1340  1340-1340 +1002 +1 +100%$", board, re.M), board
    assert "1 voted battle(s); a tie or both-bad counts half a win each" in board
    assert re.search(r"^   -  smollm2-135m +no battles yet$", board, re.M)


def test_vote_later_and_one_vote_only(aigc_home):
    r = aigc("arena", "battle", "x y", "--category", "code", "-m", "echo", "-m", "echo2", input="\n")
    assert r.exit_code == 0 and "not voted; later: aigc arena vote battle-" in r.stdout
    battle_id = re.search(r"aigc arena vote (battle-[0-9a-f]+)", r.stdout).group(1)
    assert "echo" not in aigc("arena", "show", battle_id).stdout.replace("aigc", "")
    voted = aigc("arena", "vote", battle_id, "bad")
    assert voted.exit_code == 0 and "vote: bad" in voted.stdout and "= echo2 ──" in voted.stdout
    again = CliRunner().invoke(cli, ["arena", "vote", battle_id, "a"])
    assert again.exit_code == 1
    assert f"battle '{battle_id}' already has its vote (bad); a battle takes one vote" in again.output


def test_json_vote_at_once_and_the_errors(aigc_home):
    r = aigc("arena", "battle", "p q", "-m", "echo", "-m", "echo2", "--vote", "tie", "--json")
    view = json.loads(r.stdout)
    assert view["vote"] == "tie" and {a["model"] for a in view["answers"]} == {"echo", "echo2"}
    three = CliRunner().invoke(cli, ["arena", "battle", "p", "-m", "echo", "-m", "echo2", "-m", "smollm2"])
    assert three.exit_code == 1 and "a battle is between 2 models; give 0, 1 or 2, got 3" in three.output
    bad = CliRunner().invoke(cli, ["arena", "battle", "p", "--vote", "c"])
    assert bad.exit_code == 2 and "'c' is not one of 'a', 'b', 'tie', 'bad'" in bad.output
    data = json.loads(aigc("arena", "leaderboard", "--json", "--bootstrap", "0").stdout)
    assert data["battles"] == 1 and {s["model"]: s["ties"] for s in data["standings"]}["echo"] == 1
