"""Saved comparisons (services/compare.py), in SQLite: written once when a comparison ends, never changed."""

from __future__ import annotations

import json
import time

from .. import principal
from ..errors import NotFound
from .db import Database
from .history import new_id
from .owners import mine

__all__ = ["ComparisonStore"]


def _row(row) -> dict:
    record = dict(row)
    for key in ("models", "request", "results"):
        record[key] = json.loads(record[key])
    return record


class ComparisonStore:
    def __init__(self, db: Database):
        self.db = db

    def save(
        self,
        kind: str,
        prompt: str,
        models: list[str],
        request: dict,
        results: list[dict],
        duration_ms: float,
        grid_path: str | None = None,
        comparison_id: str | None = None,
    ) -> str:
        """Store a finished comparison; its id (``cmp-…``)."""
        comparison_id = comparison_id or new_id("cmp")
        with self.db.tx() as conn:
            conn.execute(
                "INSERT INTO comparisons (id, kind, prompt, models, request, results, grid_path, duration_ms, created,"
                " owner) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (
                    comparison_id,
                    kind,
                    prompt,
                    json.dumps(models, ensure_ascii=False),
                    json.dumps(request, ensure_ascii=False),
                    json.dumps(results, ensure_ascii=False),
                    grid_path,
                    duration_ms,
                    time.time(),
                    principal.owner(),
                ),
            )
        return comparison_id

    def get(self, comparison_id: str) -> dict:
        """One comparison, whole; NotFound names the id."""
        owned, owner = mine()
        row = self.db.conn.execute(f"SELECT * FROM comparisons WHERE id = ?{owned}", (comparison_id, *owner)).fetchone()
        if row is None:
            raise NotFound(f"no comparison with id '{comparison_id}' (see `aigc compare list`)")
        return _row(row)

    def list(self, limit: int = 50, kind: str | None = None) -> list[dict]:
        """Comparisons, newest first, without their results: id, kind, prompt, models, duration_ms, created."""
        owned, args = mine()
        sql = f"SELECT id, kind, prompt, models, duration_ms, created FROM comparisons WHERE TRUE{owned}"
        if kind is not None:
            sql, args = sql + " AND kind = ?", (*args, kind)
        rows = self.db.conn.execute(sql + " ORDER BY created DESC, id DESC LIMIT ?", (*args, limit))
        return [{**dict(r), "models": json.loads(r["models"])} for r in rows]
