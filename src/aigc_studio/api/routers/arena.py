"""The arena under /api/arena: start a blind battle, read it, vote once, read the leaderboard.

A battle is answered whole before the POST returns (JSON, not streamed); the web UI streams both panes
from the same service. No answer names its model until the battle has its vote.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Path, Query
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from ...contracts import json_int
from ...services.a1111_schema import NOT_BLANK
from ...services.arena import CATEGORIES, MAX_PROMPT
from ...studio import Studio
from ..deps import get_studio
from ..openapi import ErrorBody, errors

router = APIRouter(prefix="/api/arena", tags=["arena"])

Category = Literal["chat", "writing", "code", "image"]
Vote = Literal["a", "b", "tie", "bad"]
_ID = {"pattern": "^battle-[0-9a-f]+$"}
_BAD = {
    400: "A field is missing, of the wrong type or out of range; the message names it and what is allowed. "
    "An image battle's prompt contains a term of the prompt_blocklist setting (named; nothing is started)."
}
_NOT_FOUND = {404: "No such battle (the message gives the id)."}
_TOO_LARGE = {413: "The request body is over the server's limit (max_body_mb)."}
assert tuple(Category.__args__) == CATEGORIES  # type: ignore[attr-defined]


class ImageParams(BaseModel):
    """The parameters both images of an image battle share (A1111's names and limits)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    negative_prompt: str = Field("", max_length=20_000, description="What to keep out of both images.")
    steps: json_int(ge=1, le=150) = Field(20, description="Denoising steps.")
    cfg_scale: float = Field(7.0, ge=0, le=30, description="CFG scale.")
    width: json_int(ge=64, le=2048, multiple_of=8) = Field(512, description="Width in pixels, a multiple of 8.")
    height: json_int(ge=64, le=2048, multiple_of=8) = Field(512, description="Height in pixels, a multiple of 8.")


class BattleRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    prompt: str = Field(
        min_length=1, max_length=MAX_PROMPT, pattern=NOT_BLANK, description="What both models answer (or draw)."
    )
    category: Category = Field("chat", description="Which leaderboard the vote counts in.")
    models: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(
        [],
        max_length=2,
        description="0-2 model names: those not given are drawn at random from the models that can run here.",
    )
    system: str = Field("", max_length=MAX_PROMPT, description="A system prompt for both (text battles).")
    seed: json_int(ge=0, le=2**32 - 1) | None = Field(None, description="The same seed for both; unset: random.")
    max_tokens: json_int(ge=1, le=4096) = Field(512, description="At most this many tokens per answer (text battles).")
    image: ImageParams | None = Field(None, description="Image battles: the parameters both images share.")


class VoteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    vote: Vote = Field(description="a: Model A is better; b: Model B; tie; bad: both are bad (counted as a tie).")


class Answer(BaseModel):
    side: Literal["a", "b"]
    label: str = Field(description='"Model A" or "Model B".')
    model: str | None = Field(description="The model: null until the battle has its vote.")
    text: str = Field(description="The answer (text battles).")
    image_id: str | None = Field(description="Image battles: the image (GET /api/images/{id}.png).")
    finish_reason: str | None = Field(description="stop, length, cancelled, interrupted or error; null while it runs.")
    error: str | None = Field(description="Why the answer failed (the models named only as Model A / Model B).")


class BattleView(BaseModel):
    id: str
    category: Category
    prompt: str
    system: str
    params: dict[str, Any] = Field(description="What both answers shared: seed, max_tokens or the image parameters.")
    state: Literal["running", "ready", "voted"]
    answers: list[Answer]
    vote: Vote | None
    created: float = Field(description="Unix time.")
    voted: float | None = Field(description="Unix time of the vote.")


class Standing(BaseModel):
    model: str
    rank: int | None = Field(description="1 for the highest score; null for a model with no battles.")
    score: float | None = Field(description="Bradley–Terry strength on Elo's scale (the models average 1000).")
    ci_low: float | None = Field(description="Bootstrap 95% interval of the score, low end.")
    ci_high: float | None = Field(description="Bootstrap 95% interval of the score, high end.")
    elo: float | None = Field(description="Online Elo (K=4, from 1000), in the order the votes came.")
    battles: int
    wins: int
    losses: int
    ties: int = Field(description="Ties and both-bad votes.")
    win_rate: float | None = Field(description="wins / battles.")
    group: int | None = Field(description="Models that never met another group's models are not comparable.")


class LeaderboardView(BaseModel):
    category: Category | None = Field(description="null: all categories.")
    battles: int
    bootstrap: int
    notes: list[str]
    standings: list[Standing]


@router.post(
    "/battles",
    responses=errors(
        ErrorBody,
        _BAD
        | _TOO_LARGE
        | {
            404: "A model named in models does not exist (the message lists those that do).",
            422: "A model cannot be loaded (its file is corrupt or of another format).",
            503: "A model was unloaded before the battle reached it; try again.",
        },
    ),
)
async def start_battle(body: BattleRequest, studio: Studio = Depends(get_studio)) -> BattleView:
    """Start a blind battle and wait for both answers; the models stay hidden until the vote."""
    image = body.image.model_dump() if body.image else None
    return await run_in_threadpool(
        studio.arena.battle,
        body.prompt,
        category=body.category,
        models=body.models,
        system=body.system,
        seed=body.seed,
        max_tokens=body.max_tokens,
        image=image,
    )


@router.get("/battles/{battle_id}", responses=errors(ErrorBody, _NOT_FOUND))
def get_battle(
    battle_id: str = Path(description="battle-…, as POST /api/arena/battles gave it.", json_schema_extra=_ID),
    studio: Studio = Depends(get_studio),
) -> BattleView:
    """A battle: "Model A" and "Model B" only until it has its vote, the models after."""
    return studio.arena.get(battle_id)


@router.post(
    "/battles/{battle_id}/vote",
    responses=errors(
        ErrorBody,
        _BAD
        | _NOT_FOUND
        | _TOO_LARGE
        | {409: "The battle already has its vote, is still answering, or an answer failed (the message says which)."},
    ),
)
def vote(
    battle_id: str = Path(description="battle-…, as POST /api/arena/battles gave it.", json_schema_extra=_ID),
    body: VoteRequest = Body(),
    studio: Studio = Depends(get_studio),
) -> BattleView:
    """Vote once; the answer shows the models."""
    return studio.arena.vote(battle_id, body.vote)


@router.get("/leaderboard", responses=errors(ErrorBody, _BAD))
def get_leaderboard(
    category: Category | None = Query(None, description="One category's leaderboard; unset: all battles."),
    bootstrap: int = Query(200, ge=0, le=2000, description="Bootstrap resamples for the 95% intervals (0: none)."),
    studio: Studio = Depends(get_studio),
) -> LeaderboardView:
    """The Bradley–Terry leaderboard with bootstrap 95% intervals, online Elo and battle counts."""
    board = studio.arena.leaderboard(category, bootstrap=bootstrap)
    return LeaderboardView(
        category=category,
        battles=board.battles,
        bootstrap=board.bootstrap,
        notes=board.notes,
        standings=[Standing(**vars(s)) for s in board.standings],
    )
