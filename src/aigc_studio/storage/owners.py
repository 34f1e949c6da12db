"""Whose a stored item is: the one place each store asks how to record and filter by the owner.

Items made while a user is signed in (``principal.owner()`` is their id) record it in their ``owner``
column, and every read, list, search, change and delete adds ``owner = ?``; so another user's item looks
exactly like a missing one. In the local studio (no principal) the owner is NULL and nothing is
filtered. Rows made in the local studio (NULL) are no one's on a team server until an admin adopts them
(``adopt``). Files a user keeps by name (templates, styles.csv) live in a folder of their own.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
from pathlib import Path

from .. import principal

__all__ = ["OWNED_TABLES", "adopt", "mine", "owned_path", "owner_folder", "unowned"]

# The tables whose rows are a user's items, each with an ``owner`` column (migration m015_owners).
# Their child rows (messages, responses, document and code versions, code runs) are reached only
# through them, so they carry no owner of their own: one column to keep right, not two that could
# disagree.
OWNED_TABLES = ("conversations", "jobs", "images", "documents", "comparisons", "arena_battles", "text_exports")


def mine(alias: str = "") -> tuple[str, tuple]:
    """``(" AND <alias.>owner = ?", (owner,))`` for the current user, ``("", ())`` in the local studio:
    appended to a WHERE clause (and its arguments) so the query sees only the caller's rows."""
    owner = principal.owner()
    if owner is None:
        return "", ()
    return f" AND {alias + '.' if alias else ''}owner = ?", (owner,)


_PLAIN_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def owner_folder(owner: str) -> str:
    """A folder name for ``owner``: the id itself when it is a plain name, else a hash of it (an id
    with ``/`` or ``..`` must never name a path elsewhere)."""
    if _PLAIN_ID.fullmatch(owner):
        return owner
    return "~" + hashlib.sha256(owner.encode()).hexdigest()[:32]


def owned_path(local: Path) -> Path:
    """Where the current user keeps ``local`` (a file or folder directly under AIGC_HOME): itself in
    the local studio, ``AIGC_HOME/users/<owner>/<name>`` for a signed-in user."""
    owner = principal.owner()
    if owner is None:
        return local
    return local.parent / "users" / owner_folder(owner) / local.name


def unowned(conn: sqlite3.Connection) -> dict[str, int]:
    """How many rows of each owned table have no owner (made in the local studio)."""
    return {
        table: conn.execute(f"SELECT count(*) FROM {table} WHERE owner IS NULL").fetchone()[0] for table in OWNED_TABLES
    }


def adopt(conn: sqlite3.Connection, owner: str) -> dict[str, int]:
    """Give every ownerless row to ``owner`` (in the caller's transaction); how many, per table."""
    return {
        table: conn.execute(f"UPDATE {table} SET owner = ? WHERE owner IS NULL", (owner,)).rowcount
        for table in OWNED_TABLES
    }
