"""Documents (articles from the writing pipeline) and their versions, in SQLite.

A version is written once and never changed: writing a section, regenerating one, editing the outline
or saving the user's own edit each add a new one, numbered 1, 2, ... per document.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

from .. import principal
from ..errors import InvalidRequest, NotFound
from .db import Database, like_pattern
from .history import new_id
from .owners import mine

__all__ = ["DocumentStore", "VersionRecord"]

_JSON_FIELDS = ("outline", "sections", "tags", "spec", "options", "notes")


# The model that wrote a document's latest version (a user's edit records none: then the one before).
LATEST_MODEL = (
    "(SELECT model FROM document_versions m WHERE m.document_id = d.id AND m.model IS NOT NULL"
    " ORDER BY m.number DESC LIMIT 1) AS model"
)


@dataclass
class VersionRecord:
    """What one version holds; ``sections`` are dicts {heading, text, state, seed, finish_reason, tokens}."""

    reason: str
    content: str
    outline: list[str]
    sections: list[dict]
    abstract: str
    tags: list[str]
    spec: dict
    model: str | None
    options: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _version(row) -> dict:
    version = dict(row)
    for key in _JSON_FIELDS:
        version[key] = json.loads(version[key])
    del version["id"]
    return version


class DocumentStore:
    def __init__(self, db: Database):
        self.db = db

    def create(self, title: str, language: str, first: VersionRecord) -> tuple[str, int]:
        """A new document with its first version; returns (document id, version number 1)."""
        doc_id, now = new_id("doc"), time.time()
        with self.db.tx() as conn:
            conn.execute(
                "INSERT INTO documents (id, title, language, created, updated, owner) VALUES (?,?,?,?,?,?)",
                (doc_id, title, language, now, now, principal.owner()),
            )
            self._insert(conn, doc_id, 1, first, now)
        return doc_id, 1

    def add_version(self, doc_id: str, version: VersionRecord, title: str | None = None) -> int:
        """Add ``version`` after the latest one (and rename the document to ``title``); its number."""
        now = time.time()
        owned, owner = mine("d")
        with self.db.tx() as conn:
            row = conn.execute(
                "SELECT (SELECT max(number) FROM document_versions WHERE document_id = d.id) FROM documents d"
                f" WHERE d.id = ?{owned}",
                (doc_id, *owner),
            ).fetchone()
            if row is None:
                raise NotFound(f"no document with id '{doc_id}' (see `aigc docs list`)")
            number = (row[0] or 0) + 1
            self._insert(conn, doc_id, number, version, now)
            conn.execute(
                "UPDATE documents SET updated = ?, title = COALESCE(?, title) WHERE id = ?", (now, title, doc_id)
            )
        return number

    @staticmethod
    def _insert(conn, doc_id: str, number: int, v: VersionRecord, now: float) -> None:
        conn.execute(
            "INSERT INTO document_versions (document_id, number, reason, content, outline, sections, abstract,"
            " tags, spec, model, options, notes, created) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                doc_id,
                number,
                v.reason,
                v.content,
                json.dumps(v.outline, ensure_ascii=False),
                json.dumps(v.sections, ensure_ascii=False),
                v.abstract,
                json.dumps(v.tags, ensure_ascii=False),
                json.dumps(v.spec, ensure_ascii=False),
                v.model,
                json.dumps(v.options, ensure_ascii=False),
                json.dumps(v.notes, ensure_ascii=False),
                now,
            ),
        )

    def get(self, doc_id: str, number: int | None = None) -> dict:
        """The document with one version (the latest unless ``number``) under ``version``; NotFound."""
        conn = self.db.conn
        owned, owner = mine()
        doc = conn.execute(f"SELECT * FROM documents WHERE id = ?{owned}", (doc_id, *owner)).fetchone()
        if doc is None:
            raise NotFound(f"no document with id '{doc_id}' (see `aigc docs list`)")
        if number is None:
            row = conn.execute(
                "SELECT * FROM document_versions WHERE document_id = ? ORDER BY number DESC LIMIT 1", (doc_id,)
            ).fetchone()
        else:
            row = conn.execute(
                "SELECT * FROM document_versions WHERE document_id = ? AND number = ?", (doc_id, number)
            ).fetchone()
        n_versions = conn.execute("SELECT count(*) FROM document_versions WHERE document_id = ?", (doc_id,)).fetchone()
        if row is None:
            raise NotFound(f"document '{doc_id}' has no version {number}; it has versions 1-{n_versions[0]}")
        return {**dict(doc), "versions": n_versions[0], "version": _version(row)}

    def versions(self, doc_id: str) -> list[dict]:
        """Every version of a document, oldest first, without its text: number, reason, model, created,
        characters."""
        self.get(doc_id)
        rows = self.db.conn.execute(
            "SELECT number, reason, model, created, length(content) AS characters FROM document_versions"
            " WHERE document_id = ? ORDER BY number",
            (doc_id,),
        )
        return [dict(r) for r in rows]

    def list(self, limit: int = 50, query: str | None = None) -> list[dict]:
        """Documents, most recently changed first; with ``query``, those whose title or any version's text
        contains it (any language, any part of a word), with the latest version that matches."""
        conn = self.db.conn
        owned, owner = mine("d")
        if query is None:
            rows = conn.execute(
                "SELECT d.*, (SELECT max(number) FROM document_versions v WHERE v.document_id = d.id) AS versions,"
                f" {LATEST_MODEL} FROM documents d WHERE TRUE{owned} ORDER BY updated DESC LIMIT ?",
                (*owner, limit),
            )
            return [dict(r) for r in rows]
        query = query.strip()
        if not query:
            raise InvalidRequest("search query must not be empty", param="q")
        match, arg = self.db.contains("v.content", "document_versions_fts", query)
        rows = conn.execute(
            "SELECT d.*, (SELECT max(number) FROM document_versions w WHERE w.document_id = d.id) AS versions,"
            f" {LATEST_MODEL}, max(v.number) AS matched_version"
            " FROM documents d JOIN document_versions v ON v.document_id = d.id"
            f" WHERE ({match} OR d.title LIKE ? ESCAPE '\\'){owned} GROUP BY d.id ORDER BY d.updated DESC LIMIT ?",
            (arg, like_pattern(query), *owner, limit),
        )
        return [dict(r) for r in rows]

    def delete(self, doc_id: str) -> None:
        """Delete a document and all its versions; NotFound when there is none."""
        owned, owner = mine()
        with self.db.tx() as conn:
            if conn.execute(f"DELETE FROM documents WHERE id = ?{owned}", (doc_id, *owner)).rowcount == 0:
                raise NotFound(f"no document with id '{doc_id}'")
