"""Leaderboard math for the arena: Bradley–Terry strengths, bootstrap intervals and online Elo.

Pure functions over battles (model A, model B, outcome); nothing here reads storage.

* **Outcomes.** "a" or "b": that side won. "tie" counts as half a win for each side. "bad" (both
  answers bad) is also counted as a tie: the voter saw no difference in quality between the two, which
  is what a tie says (Chatbot Arena does the same with its "tie (bothbad)").
* **Bradley–Terry.** P(i beats j) = σ(θi − θj). θ is the maximum of the log-likelihood of all battles
  minus a tiny ridge (λ/2)·Σθ² (λ = 0.01 by default): without it a model that never lost has θ = ∞;
  with it every strength is finite and, since the likelihood's gradient sums to zero, the ridge also
  centres each connected group of models at θ = 0. Fitted by damped Newton iterations (the objective is
  strictly convex, so the optimum is unique), vectorised over bootstrap samples.
* **Scale.** score = 1000 + 400·log10(e)·θ: Elo's scale, so 400 points apart means 10:1 odds, and
  the models with battles average 1000.
* **Intervals.** 95% by the percentile bootstrap: the battles are resampled with replacement (seeded,
  ``bootstrap`` times), each sample refitted; the 2.5th and 97.5th percentiles of each model's score.
* **Elo.** Online Elo beside it, in the order the battles were voted: start 1000, K = 4 (as Chatbot
  Arena), expected score 1 / (1 + 10^((Rb − Ra)/400)), a tie scores ½. It depends on the order; the
  Bradley–Terry score does not.
* **Disconnected comparisons.** When the models split into groups that never met (A and B battled, C
  and D battled, nothing between), scores from different groups cannot be compared: each group is
  centred at 1000 on its own and every row carries its ``group`` number (1 is the group with the most
  battles); ``Leaderboard.notes`` says so.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = ["OUTCOMES", "Battle", "Leaderboard", "Standing", "fit_bradley_terry", "leaderboard", "online_elo"]

OUTCOMES = ("a", "b", "tie", "bad")
SCALE = 400 / math.log(10)  # natural-log strength -> Elo points
ANCHOR = 1000.0
ELO_K = 4.0
RIDGE = 0.01


@dataclass(frozen=True)
class Battle:
    """One voted battle: ``outcome`` is "a" (model_a won), "b", "tie" or "bad" (both bad)."""

    model_a: str
    model_b: str
    outcome: str

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {', '.join(OUTCOMES)}, got {self.outcome!r}")
        if self.model_a == self.model_b:
            raise ValueError(f"a battle needs two different models, got {self.model_a!r} twice")


@dataclass
class Standing:
    """One model's row. A model with no battles has ``battles == 0`` and None for rank and scores."""

    model: str
    rank: int | None
    score: float | None
    ci_low: float | None
    ci_high: float | None
    elo: float | None
    battles: int
    wins: int
    losses: int
    ties: int  # ties and both-bad votes
    win_rate: float | None  # wins / battles (a tie is not a win)
    group: int | None  # connected group of models that met each other (1: the one with most battles)


@dataclass
class Leaderboard:
    standings: list[Standing]
    battles: int
    bootstrap: int
    notes: list[str] = field(default_factory=list)


def _win_matrix(index: dict[str, int], battles: Sequence[Battle]) -> np.ndarray:
    """W[i, j]: wins of i over j, a tie or both-bad counted as half a win each way."""
    wins = np.zeros((len(index), len(index)))
    for b in battles:
        i, j = index[b.model_a], index[b.model_b]
        if b.outcome == "a":
            wins[i, j] += 1
        elif b.outcome == "b":
            wins[j, i] += 1
        else:
            wins[i, j] += 0.5
            wins[j, i] += 0.5
    return wins


def fit_bradley_terry(wins: np.ndarray, ridge: float = RIDGE, max_iter: int = 200) -> np.ndarray:
    """Log-strengths θ maximising Σ W[i,j]·log σ(θi − θj) − (ridge/2)·Σθ².

    ``wins`` is one (n, n) matrix or a stack (B, n, n); the result has shape (n,) or (B, n).
    """
    stacked = wins if wins.ndim == 3 else wins[None]
    games = stacked + np.swapaxes(stacked, 1, 2)
    theta = np.zeros(stacked.shape[:2])
    eye = np.eye(stacked.shape[1])
    for _ in range(max_iter):
        p = 1.0 / (1.0 + np.exp(theta[:, None, :] - theta[:, :, None]))  # p[b, i, j] = σ(θi − θj)
        grad = (games * p).sum(axis=2) - stacked.sum(axis=2) + ridge * theta
        curvature = games * p * (1 - p)
        hessian = -curvature + eye * (curvature.sum(axis=2)[:, :, None] + ridge)
        step = np.linalg.solve(hessian, grad[..., None])[..., 0]
        # Damped: a full Newton step can overshoot when one model won every battle it had.
        biggest = np.abs(step).max(axis=1, keepdims=True)
        step = step * np.minimum(1.0, 2.0 / np.maximum(biggest, 1e-300))
        theta = theta - step
        if biggest.max() < 1e-10:
            break
    return theta if wins.ndim == 3 else theta[0]


def online_elo(battles: Iterable[Battle], k: float = ELO_K, start: float = ANCHOR) -> dict[str, float]:
    """Online Elo ratings after the battles, in their order (a tie and both-bad score ½ each)."""
    ratings: dict[str, float] = {}
    for b in battles:
        ra, rb = ratings.get(b.model_a, start), ratings.get(b.model_b, start)
        expected_a = 1 / (1 + 10 ** ((rb - ra) / 400))
        actual_a = {"a": 1.0, "b": 0.0}.get(b.outcome, 0.5)
        ratings[b.model_a] = ra + k * (actual_a - expected_a)
        ratings[b.model_b] = rb - k * (actual_a - expected_a)
    return ratings


def _groups(names: list[str], battles: Sequence[Battle]) -> dict[str, int]:
    """Connected groups of models that met, numbered 1.. by battles (most first), then by name."""
    parent = {n: n for n in names}

    def root(n: str) -> str:
        while parent[n] != n:
            parent[n] = parent[parent[n]]
            n = parent[n]
        return n

    for b in battles:
        parent[root(b.model_a)] = root(b.model_b)
    members: dict[str, list[str]] = {}
    for n in names:
        members.setdefault(root(n), []).append(n)
    count = {r: sum(1 for b in battles if root(b.model_a) == r) for r in members}
    order = sorted(members, key=lambda r: (-count[r], min(members[r])))
    return {n: number for number, r in enumerate(order, 1) for n in members[r]}


def leaderboard(
    battles: Sequence[Battle],
    models: Iterable[str] = (),
    *,
    bootstrap: int = 200,
    seed: int = 0,
    ridge: float = RIDGE,
) -> Leaderboard:
    """Every model's standing: Bradley–Terry score with a bootstrap 95% interval, online Elo, counts.

    ``models`` adds models that may have no battles (they are listed last, as such). ``bootstrap`` is
    the number of resamples (0: no intervals); ``seed`` makes them repeatable.
    """
    battles = list(battles)
    names = sorted({b.model_a for b in battles} | {b.model_b for b in battles})
    index = {n: i for i, n in enumerate(names)}
    counts = {n: [0, 0, 0] for n in names}  # wins, losses, ties
    for b in battles:
        if b.outcome == "a":
            counts[b.model_a][0] += 1
            counts[b.model_b][1] += 1
        elif b.outcome == "b":
            counts[b.model_b][0] += 1
            counts[b.model_a][1] += 1
        else:
            counts[b.model_a][2] += 1
            counts[b.model_b][2] += 1

    scores: dict[str, float] = {}
    low: dict[str, float] = {}
    high: dict[str, float] = {}
    if names:
        theta = fit_bradley_terry(_win_matrix(index, battles), ridge)
        scores = {n: ANCHOR + SCALE * (theta[i] - theta.mean()) for n, i in index.items()}
    if names and bootstrap > 0:
        samples = _bootstrap(index, battles, bootstrap, seed, ridge)
        lo, hi = np.percentile(samples, [2.5, 97.5], axis=0)
        low = {n: float(lo[i]) for n, i in index.items()}
        high = {n: float(hi[i]) for n, i in index.items()}

    elo = online_elo(battles)
    groups = _groups(names, battles)
    ranked = sorted(names, key=lambda n: (-scores[n], n))
    standings = [
        Standing(
            model=n,
            rank=rank,
            score=float(scores[n]),
            ci_low=low.get(n),
            ci_high=high.get(n),
            elo=elo[n],
            battles=sum(counts[n]),
            wins=counts[n][0],
            losses=counts[n][1],
            ties=counts[n][2],
            win_rate=counts[n][0] / sum(counts[n]),
            group=groups[n],
        )
        for rank, n in enumerate(ranked, 1)
    ]
    idle = sorted(set(models) - set(names))
    standings += [Standing(n, None, None, None, None, None, 0, 0, 0, 0, None, None) for n in idle]
    notes = []
    if len(set(groups.values())) > 1:
        notes.append(
            f"the models form {len(set(groups.values()))} groups that never battled each other; "
            "scores compare only within a group (each group averages 1000)"
        )
    if idle:
        notes.append(f"no battles yet: {', '.join(idle)}")
    return Leaderboard(standings, len(battles), bootstrap, notes)


def _bootstrap(index: dict[str, int], battles: Sequence[Battle], rounds: int, seed: int, ridge: float) -> np.ndarray:
    """Scores of ``rounds`` refits on battles resampled with replacement; shape (rounds, models).

    Resampling n battles with replacement is a multinomial draw over the distinct (pair, outcome)
    cells, so each sample is made from counts rather than a list of battles.
    """
    cells: dict[tuple[int, int, str], int] = {}
    for b in battles:
        i, j, outcome = index[b.model_a], index[b.model_b], b.outcome
        if outcome == "bad":
            outcome = "tie"
        cells[(i, j, outcome)] = cells.get((i, j, outcome), 0) + 1
    keys = list(cells)
    freq = np.array([cells[k] for k in keys], dtype=float)
    draws = np.random.default_rng(seed).multinomial(len(battles), freq / freq.sum(), size=rounds)
    wins = np.zeros((rounds, len(index), len(index)))
    for column, (i, j, outcome) in enumerate(keys):
        if outcome == "a":
            wins[:, i, j] += draws[:, column]
        elif outcome == "b":
            wins[:, j, i] += draws[:, column]
        else:
            wins[:, i, j] += draws[:, column] / 2
            wins[:, j, i] += draws[:, column] / 2
    theta = fit_bradley_terry(wins, ridge)
    return ANCHOR + SCALE * (theta - theta.mean(axis=1, keepdims=True))
