"""The arena's leaderboard math against known answers (services/ranking.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from aigc_studio.services.ranking import SCALE, Battle, fit_bradley_terry, leaderboard, online_elo


def synthetic(strengths: dict[str, float], n: int, rng: np.random.Generator) -> list[Battle]:
    """``n`` battles between random pairs, won with the Bradley–Terry probability of the true strengths."""
    names = list(strengths)
    battles = []
    for _ in range(n):
        a, b = rng.choice(len(names), 2, replace=False)
        p = 1 / (1 + math.exp(strengths[names[b]] - strengths[names[a]]))
        battles.append(Battle(names[a], names[b], "a" if rng.random() < p else "b"))
    return battles


def true_scores(strengths: dict[str, float]) -> dict[str, float]:
    mean = sum(strengths.values()) / len(strengths)
    return {n: 1000 + SCALE * (s - mean) for n, s in strengths.items()}


def test_synthetic_votes_recover_the_order_and_the_values():
    truth = {"w": 1.5, "x": 0.8, "y": 0.0, "z": -0.6}
    board = leaderboard(synthetic(truth, 4000, np.random.default_rng(1)), bootstrap=0)
    assert [s.model for s in board.standings] == ["w", "x", "y", "z"]
    assert [s.rank for s in board.standings] == [1, 2, 3, 4]
    expected = true_scores(truth)
    for s in board.standings:
        assert s.score == pytest.approx(expected[s.model], abs=40)
    assert sum(s.score for s in board.standings) / 4 == pytest.approx(1000)


def test_the_95_percent_intervals_cover_the_truth_about_95_percent_of_the_time():
    truth = {"w": 1.0, "x": 0.4, "y": 0.0, "z": -0.5}
    expected = true_scores(truth)
    rng = np.random.default_rng(7)
    covered = total = 0
    for repetition in range(60):
        board = leaderboard(synthetic(truth, 400, rng), bootstrap=200, seed=repetition)
        for s in board.standings:
            covered += s.ci_low <= expected[s.model] <= s.ci_high
            total += 1
    assert 0.85 <= covered / total <= 1.0, f"coverage {covered}/{total}"


def test_the_intervals_narrow_with_more_battles_and_repeat_with_the_seed():
    truth = {"x": 0.5, "y": 0.0}
    few = leaderboard(synthetic(truth, 50, np.random.default_rng(3)), bootstrap=100, seed=5)
    many = leaderboard(synthetic(truth, 2000, np.random.default_rng(3)), bootstrap=100, seed=5)
    few_width, many_width = (b.standings[0].ci_high - b.standings[0].ci_low for b in (few, many))
    assert many_width < few_width / 3
    again = leaderboard(synthetic(truth, 50, np.random.default_rng(3)), bootstrap=100, seed=5)
    assert [(s.ci_low, s.ci_high) for s in again.standings] == [(s.ci_low, s.ci_high) for s in few.standings]


def test_a_tie_is_half_a_win_each_and_both_bad_counts_as_a_tie():
    # 2 wins for x, 2 ties: x scores 3 of 4 -> theta difference log(3) without the ridge.
    battles = [Battle("x", "y", "a"), Battle("y", "x", "b"), Battle("x", "y", "tie"), Battle("x", "y", "tie")]
    board = leaderboard(battles, bootstrap=0, ridge=1e-9)
    x, y = board.standings
    assert x.model == "x" and x.score - y.score == pytest.approx(SCALE * math.log(3), abs=0.01)
    assert (x.wins, x.losses, x.ties, x.win_rate) == (2, 0, 2, 0.5)
    bad = [b if b.outcome != "tie" else Battle(b.model_a, b.model_b, "bad") for b in battles]
    same = leaderboard(bad, bootstrap=0, ridge=1e-9)
    assert [s.score for s in same.standings] == pytest.approx([s.score for s in board.standings])
    assert same.standings[1].ties == 2


def test_a_single_battle_gives_finite_scores_and_wide_intervals():
    board = leaderboard([Battle("x", "y", "a")], bootstrap=50)
    x, y = board.standings
    assert (x.model, x.rank, y.rank) == ("x", 1, 2)
    assert math.isfinite(x.score) and x.score > 1000 > y.score
    assert x.score + y.score == pytest.approx(2000)
    # Every resample is the same single battle: the interval is the point itself.
    assert x.ci_low == pytest.approx(x.score) and x.ci_high == pytest.approx(x.score)
    assert (x.wins, x.losses, x.battles, x.win_rate, y.win_rate) == (1, 0, 1, 1.0, 0.0)
    assert x.elo == pytest.approx(1002) and y.elo == pytest.approx(998)


def test_a_model_that_never_lost_stays_finite():
    battles = [Battle("x", other, "a") for other in ("y", "z") for _ in range(30)] + [Battle("y", "z", "tie")]
    board = leaderboard(battles, bootstrap=20)
    assert board.standings[0].model == "x"
    assert all(math.isfinite(s.score) and math.isfinite(s.ci_high) for s in board.standings)


def test_all_ties_put_everyone_at_1000():
    battles = [Battle("x", "y", "tie"), Battle("y", "z", "bad"), Battle("z", "x", "tie")]
    board = leaderboard(battles, bootstrap=30)
    assert [s.score for s in board.standings] == pytest.approx([1000, 1000, 1000])
    assert all(s.ci_low == pytest.approx(1000) and s.ci_high == pytest.approx(1000) for s in board.standings)
    assert [s.elo for s in board.standings] == pytest.approx([1000, 1000, 1000])


def test_a_disconnected_graph_is_centred_per_group_and_says_so():
    battles = [Battle("a1", "a2", "a")] * 3 + [Battle("b1", "b2", "b")] * 2
    board = leaderboard(battles, bootstrap=0)
    by = {s.model: s for s in board.standings}
    assert by["a1"].group == by["a2"].group == 1 and by["b1"].group == by["b2"].group == 2
    assert by["a1"].score + by["a2"].score == pytest.approx(2000)
    assert by["b1"].score + by["b2"].score == pytest.approx(2000)
    assert board.notes == [
        "the models form 2 groups that never battled each other; scores compare only within a group "
        "(each group averages 1000)"
    ]


def test_models_without_battles_are_listed_as_such():
    board = leaderboard([Battle("x", "y", "b")], models=["x", "y", "idle"], bootstrap=0)
    idle = board.standings[-1]
    assert (idle.model, idle.battles, idle.rank, idle.score, idle.elo, idle.win_rate) == (
        "idle",
        0,
        None,
        None,
        None,
        None,
    )
    assert board.notes == ["no battles yet: idle"]
    empty = leaderboard([], models=["x"], bootstrap=10)
    assert [(s.model, s.battles, s.score) for s in empty.standings] == [("x", 0, None)]


def test_online_elo_follows_the_order_with_k_4():
    ratings = online_elo([Battle("x", "y", "a"), Battle("x", "y", "b")])
    # 1002/998 after the first; then y (expected 1/(1+10^(4/400))) wins.
    expected_y = 1 / (1 + 10 ** (4 / 400))
    assert ratings["y"] == pytest.approx(998 + 4 * (1 - expected_y))
    assert ratings["x"] + ratings["y"] == pytest.approx(2000)


def test_the_fit_is_the_maximum_likelihood_without_ridge():
    wins = np.array([[0, 7, 3], [3, 0, 6], [1, 4, 0]], dtype=float)
    theta = fit_bradley_terry(wins, ridge=1e-12)
    p = 1 / (1 + np.exp(theta[None, :] - theta[:, None]))
    games = wins + wins.T
    # At the maximum each model's expected wins equal its actual wins.
    assert (games * p).sum(axis=1) == pytest.approx(wins.sum(axis=1), abs=1e-6)


def test_bad_battles_are_refused_with_what_is_allowed():
    with pytest.raises(ValueError, match="outcome must be one of a, b, tie, bad, got 'x'"):
        Battle("x", "y", "x")
    with pytest.raises(ValueError, match="two different models"):
        Battle("x", "x", "a")
