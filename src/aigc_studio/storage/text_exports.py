"""The record of text exports (services/text_labels.py): which labels each exported file carried."""

from __future__ import annotations

import time

from .. import principal
from .db import Database
from .owners import mine

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
                " label_metadata, digest, created, owner) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (
                    kind,
                    item_id,
                    version,
                    fmt,
                    int(line),
                    position,
                    int(metadata),
                    digest,
                    time.time(),
                    principal.owner(),
                ),
            )

    def of(self, kind: str, item_id: str) -> list[dict]:
        """The exports of one item, oldest first."""
        owned, owner = mine()
        rows = self.db.conn.execute(
            "SELECT version, format, label_line, label_position, label_metadata, digest, created"
            f" FROM text_exports WHERE kind = ? AND item_id = ?{owned} ORDER BY created, id",
            (kind, item_id, *owner),
        )
        return [
            dict(r) | {"label_line": bool(r["label_line"]), "label_metadata": bool(r["label_metadata"])} for r in rows
        ]

    def forget(self, kind: str, item_id: str) -> None:
        """Drop the records of a deleted item."""
        owned, owner = mine()
        with self.db.tx() as conn:
            conn.execute(f"DELETE FROM text_exports WHERE kind = ? AND item_id = ?{owned}", (kind, item_id, *owner))
