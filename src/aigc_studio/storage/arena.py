"""Arena battles and their votes, in SQLite (table ``arena_battles``, migration m011_arena)."""

from __future__ import annotations

import json
import time

from .. import principal
from ..errors import Conflict, NotFound
from .db import Database
from .history import new_id
from .owners import mine

__all__ = ["ArenaStore"]


class ArenaStore:
    def __init__(self, db: Database):
        self.db = db

    def create(self, category: str, prompt: str, system: str, model_a: str, model_b: str, params: dict) -> str:
        """A new battle whose answers are still to come; its id."""
        battle_id = new_id("battle")
        with self.db.tx() as conn:
            conn.execute(
                "INSERT INTO arena_battles (id, category, prompt, system, model_a, model_b, answer_a, answer_b,"
                " params, created, owner) VALUES (?,?,?,?,?,?,'','',?,?,?)",
                (
                    battle_id,
                    category,
                    prompt,
                    system,
                    model_a,
                    model_b,
                    json.dumps(params),
                    time.time(),
                    principal.owner(),
                ),
            )
        return battle_id

    def finish(self, battle_id: str, side: str, answer: str, finish_reason: str, error: str | None) -> None:
        """Record side "a" or "b"'s answer once it has ended (or failed)."""
        column = {"a": "a", "b": "b"}[side]
        owned, owner = mine()
        with self.db.tx() as conn:
            conn.execute(
                f"UPDATE arena_battles SET answer_{column} = ?, finish_{column} = ?, error_{column} = ?"
                f" WHERE id = ?{owned}",
                (answer, finish_reason, error, battle_id, *owner),
            )

    def get(self, battle_id: str) -> dict:
        """The whole record (models included); NotFound for an unknown id."""
        owned, owner = mine()
        row = self.db.conn.execute(f"SELECT * FROM arena_battles WHERE id = ?{owned}", (battle_id, *owner)).fetchone()
        if row is None:
            raise NotFound(f"no arena battle with id '{battle_id}'", param="battle_id")
        record = dict(row)
        record["params"] = json.loads(record["params"])
        return record

    def vote(self, battle_id: str, vote: str) -> None:
        """Store the one vote of a battle; Conflict (409) when it already has one."""
        owned, owner = mine()
        with self.db.tx() as conn:
            done = conn.execute(
                f"UPDATE arena_battles SET vote = ?, voted = ? WHERE id = ? AND vote IS NULL{owned}",
                (vote, time.time(), battle_id, *owner),
            ).rowcount
        if not done:
            previous = self.get(battle_id)["vote"]  # NotFound when there is no such battle
            raise Conflict(
                f"battle '{battle_id}' already has its vote ({previous}); a battle takes one vote",
                param="vote",
                code="already_voted",
            )

    def voted(self, category: str | None = None) -> list[dict]:
        """The voted battles (of one category, or all), in the order they were voted. Every user's: the
        leaderboard ranks models on the team's votes; it shows counts, never a battle, prompt or voter."""
        where, args = ("AND category = ?", (category,)) if category else ("", ())
        rows = self.db.conn.execute(
            f"SELECT id, category, model_a, model_b, vote FROM arena_battles WHERE vote IS NOT NULL {where}"
            " ORDER BY voted, id",
            args,
        )
        return [dict(row) for row in rows]
