"""The record of text exports (services/text_labels.py): which labels each exported file carried."""

from __future__ import annotations

import time

from .db import Database

__all__ = ["TextExportLog"]


class TextExportLog:
    def __init__(self, db: Database):
        self.db = db

    def add(
        self,
        kind: str,
        item_id: str,
        fmt: str,
        *,
        line: bool,
        position: str | None,
        metadata: bool,
        digest: str | None,
        version: int | None = None,
    ) -> None:
        """Record one export of ``item_id`` (a document or a conversation) and the labels it carried."""
        with self.db.tx() as conn:
            conn.execute(
                "INSERT INTO text_exports (kind, item_id, version, format, label_line, label_position,"
                " label_metadata, digest, created) VALUES (?,?,?,?,?,?,?,?,?)",
                (kind, item_id, version, fmt, int(line), position, int(metadata), digest, time.time()),
            )

    def of(self, kind: str, item_id: str) -> list[dict]:
        """The exports of one item, oldest first."""
        rows = self.db.conn.execute(
            "SELECT version, format, label_line, label_position, label_metadata, digest, created"
            " FROM text_exports WHERE kind = ? AND item_id = ? ORDER BY created, id",
            (kind, item_id),
        )
        return [
            dict(r) | {"label_line": bool(r["label_line"]), "label_metadata": bool(r["label_metadata"])} for r in rows
        ]

    def forget(self, kind: str, item_id: str) -> None:
        """Drop the records of a deleted item."""
        with self.db.tx() as conn:
            conn.execute("DELETE FROM text_exports WHERE kind = ? AND item_id = ?", (kind, item_id))
