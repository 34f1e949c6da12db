"""Code sessions in SQLite: the versions of each code block and the runs of each version.

A session is a chat conversation with source "code" (its messages are chat history's); this module
keeps what the session's answers held as code. A version is written once and never changed; a run
keeps its spec and its whole result as JSON, with the columns lists read beside them.
"""

from __future__ import annotations

import json
import sqlite3
import time

from .. import principal
from ..errors import NotFound
from .db import Database
from .history import new_id
from .owners import mine

__all__ = ["SESSION_SOURCE", "CodeStore"]

# The conversations that are code sessions.
SESSION_SOURCE = "code"

_SESSION_LIST = """
    SELECT c.id, c.title, c.model, c.created, c.updated,
        (SELECT v.language FROM code_versions v WHERE v.session_id = c.id AND v.block = 1
            ORDER BY v.version DESC LIMIT 1) AS language,
        (SELECT count(*) FROM code_versions v WHERE v.session_id = c.id) AS versions,
        (SELECT count(*) FROM code_runs r WHERE r.session_id = c.id) AS runs
    FROM conversations c WHERE c.source = ?
"""

# A session's rows (versions, runs) are the caller's when the session is: appended to a WHERE on ``session_id``.
_SESSION_IS_MINE = " AND session_id IN (SELECT id FROM conversations WHERE TRUE{owned})"


def _run(row: sqlite3.Row) -> dict:
    run = dict(row)
    run["spec"], run["result"] = json.loads(run["spec"]), json.loads(run["result"])
    run["ok"] = bool(run["ok"])
    run["matched"] = None if run["matched"] is None else bool(run["matched"])
    return run


def _mine_sessions() -> tuple[str, tuple]:
    """``mine`` for a table of a session's rows (``session_id``): its session must be the caller's."""
    owned, owner = mine()
    return (_SESSION_IS_MINE.format(owned=owned), owner) if owned else ("", ())


class CodeStore:
    def __init__(self, db: Database):
        self.db = db

    # -- writing (inside a caller's transaction where a conn is taken) ------------------------------

    def create_session(self, conn: sqlite3.Connection, title: str, model: str = "") -> str:
        """A new code session with no messages (a file run by ``aigc run``); its id."""
        session_id, now = new_id("conv"), time.time()
        conn.execute(
            "INSERT INTO conversations (id, title, model, source, created, updated, owner) VALUES (?,?,?,?,?,?,?)",
            (session_id, title, model, SESSION_SOURCE, now, now, principal.owner()),
        )
        return session_id

    def block_languages(self, conn: sqlite3.Connection, session_id: str) -> dict[int, str]:
        """Each block of the session and the language of its newest version."""
        owned, owner = _mine_sessions()
        rows = conn.execute(
            f"SELECT block, language FROM code_versions v WHERE session_id = ?{owned} AND version ="
            " (SELECT max(version) FROM code_versions w WHERE w.session_id = v.session_id AND w.block = v.block)"
            " ORDER BY block",
            (session_id, *owner),
        )
        return {row["block"]: row["language"] for row in rows}

    def insert_version(
        self,
        conn: sqlite3.Connection,
        session_id: str,
        block: int,
        language: str,
        code: str,
        message_id: int | None,
        note: str,
    ) -> dict:
        """Add the next version of ``block``; the stored row."""
        now = time.time()
        (last,) = conn.execute(
            "SELECT max(version) FROM code_versions WHERE session_id = ? AND block = ?", (session_id, block)
        ).fetchone()
        version_id = conn.execute(
            "INSERT INTO code_versions (session_id, block, version, language, code, message_id, note, created)"
            " VALUES (?,?,?,?,?,?,?,?) RETURNING id",
            (session_id, block, (last or 0) + 1, language, code, message_id, note, now),
        ).fetchone()[0]
        conn.execute("UPDATE conversations SET updated = ? WHERE id = ?", (now, session_id))
        return dict(conn.execute("SELECT * FROM code_versions WHERE id = ?", (version_id,)).fetchone())

    def add_version(
        self, session_id: str, block: int, language: str, code: str, message_id: int | None, note: str
    ) -> dict:
        """``insert_version`` in a transaction of its own."""
        with self.db.tx() as conn:
            return self.insert_version(conn, session_id, block, language, code, message_id, note)

    def insert_run(
        self, conn: sqlite3.Connection, version: dict, spec: dict, result: dict, matched: bool | None
    ) -> dict:
        """Store a run of ``version`` (a version row); the stored run."""
        now = time.time()
        run_id = conn.execute(
            "INSERT INTO code_runs (version_id, session_id, message_id, language, exit_code, limit_hit, ok,"
            " matched, wall_seconds, spec, result, created) VALUES (?,?,?,?,?,?,?,?,?,?,?,?) RETURNING id",
            (
                version["id"],
                version["session_id"],
                version["message_id"],
                result["language"],
                result["exit_code"],
                result["limit"],
                int(result["ok"]),
                None if matched is None else int(matched),
                result["wall_seconds"],
                json.dumps(spec, ensure_ascii=False),
                json.dumps(result, ensure_ascii=False),
                now,
            ),
        ).fetchone()[0]
        conn.execute("UPDATE conversations SET updated = ? WHERE id = ?", (now, version["session_id"]))
        return _run(conn.execute("SELECT * FROM code_runs WHERE id = ?", (run_id,)).fetchone())

    def add_run(self, version: dict, spec: dict, result: dict, matched: bool | None) -> dict:
        """``insert_run`` in a transaction of its own."""
        with self.db.tx() as conn:
            return self.insert_run(conn, version, spec, result, matched)

    def delete(self, session_id: str) -> None:
        """Delete a code session: its conversation, messages, versions and runs."""
        owned, owner = mine()
        with self.db.tx() as conn:
            cur = conn.execute(
                f"DELETE FROM conversations WHERE id = ? AND source = ?{owned}", (session_id, SESSION_SOURCE, *owner)
            )
            if cur.rowcount == 0:
                raise NotFound(f"no code session with id '{session_id}' (see `aigc code list`)", param="session_id")

    # -- reading -------------------------------------------------------------------------------------

    def session(self, session_id: str) -> dict:
        """The session's row (id, title, model, created, updated, language, versions, runs); NotFound."""
        owned, owner = mine("c")
        row = self.db.conn.execute(
            _SESSION_LIST + f" AND c.id = ?{owned}", (SESSION_SOURCE, session_id, *owner)
        ).fetchone()
        if row is None:
            raise NotFound(f"no code session with id '{session_id}' (see `aigc code list`)", param="session_id")
        return dict(row)

    def sessions(self, limit: int = 50) -> list[dict]:
        """The newest code sessions first."""
        owned, owner = mine("c")
        rows = self.db.conn.execute(
            _SESSION_LIST + f"{owned} ORDER BY c.updated DESC LIMIT ?", (SESSION_SOURCE, *owner, limit)
        )
        return [dict(r) for r in rows]

    def latest_session_id(self) -> str | None:
        owned, owner = mine()
        row = self.db.conn.execute(
            f"SELECT id FROM conversations WHERE source = ?{owned} ORDER BY updated DESC LIMIT 1",
            (SESSION_SOURCE, *owner),
        ).fetchone()
        return row["id"] if row else None

    def version(self, version_id: int) -> dict:
        """A version row; NotFound when there is none."""
        owned, owner = _mine_sessions()
        row = self.db.conn.execute(f"SELECT * FROM code_versions WHERE id = ?{owned}", (version_id, *owner)).fetchone()
        if row is None:
            raise NotFound(
                f"no code version with id {version_id} (`aigc code show SESSION` lists a session's versions)",
                param="version_id",
            )
        return dict(row)

    def latest_version(self, session_id: str, block: int = 1) -> dict | None:
        owned, owner = _mine_sessions()
        row = self.db.conn.execute(
            f"SELECT * FROM code_versions WHERE session_id = ? AND block = ?{owned} ORDER BY version DESC LIMIT 1",
            (session_id, block, *owner),
        ).fetchone()
        return dict(row) if row else None

    def versions(self, session_id: str) -> list[dict]:
        owned, owner = _mine_sessions()
        rows = self.db.conn.execute(
            f"SELECT * FROM code_versions WHERE session_id = ?{owned} ORDER BY id", (session_id, *owner)
        )
        return [dict(r) for r in rows]

    def runs(self, session_id: str) -> list[dict]:
        owned, owner = _mine_sessions()
        rows = self.db.conn.execute(
            f"SELECT * FROM code_runs WHERE session_id = ?{owned} ORDER BY id", (session_id, *owner)
        )
        return [_run(r) for r in rows]
