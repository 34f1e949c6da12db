"""Copy every record of one studio database into another, empty one: a local studio's SQLite file into
the PostgreSQL database of a team server (``aigc db copy``), or back.

Both databases are brought to the same migrations first (opening them does that). Tables are copied
in the order the migrations create them, so a row's parent (a message's conversation, a version's
document) is always there before it; ids are kept, and PostgreSQL's identity counters are moved past
the copied ids. The substring indexes are not copied: SQLite's FTS5 tables fill themselves from their
triggers, PostgreSQL's GIN indexes from the rows. Everything lands in one transaction on the target, so
a copy that fails leaves the target as empty as it was.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from ..errors import Conflict
from .db import MIGRATIONS, Database

BATCH = 500


def tables() -> list[str]:
    """The studio's tables in the order the migrations create them (a parent before its children),
    without SQLite's FTS5 index tables and the migrations' own record."""
    scratch = sqlite3.connect(":memory:")
    try:
        for fn in MIGRATIONS:
            scratch.executescript(fn())
        fts = {r[0] for r in scratch.execute("SELECT name FROM sqlite_master WHERE sql LIKE 'CREATE VIRTUAL TABLE%'")}
        names = [
            r[0]
            for r in scratch.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY rowid")
            if r[0] not in fts and not any(r[0].startswith(f + "_") for f in fts) and not r[0].startswith("sqlite_")
        ]
    finally:
        scratch.close()
    return names


def _columns(db: Database, table: str) -> list[str]:
    cursor = db.conn.execute(f"SELECT * FROM {table} LIMIT 0")
    return [d[0] for d in cursor.description]


def copy_database(
    source: Database, target: Database, progress: Callable[[str, int], None] | None = None
) -> dict[str, int]:
    """Copy every row of ``source`` into ``target``; the rows copied, per table. ``target`` must hold
    no records (a refusal names the tables that do)."""
    names = tables()
    held = [t for t in names if target.conn.execute(f"SELECT 1 FROM {t} LIMIT 1").fetchone()]
    if held:
        raise Conflict(
            f"the target database already holds records ({', '.join(held)}); copy into an empty one,"
            " so that nothing in it is overwritten or mixed"
        )
    counts: dict[str, int] = {}
    with target.tx() as out:
        for table in names:
            columns = _columns(source, table)
            wanted = set(_columns(target, table))
            columns = [c for c in columns if c in wanted]
            listed = ", ".join(columns)
            order = " ORDER BY id" if "id" in columns else ""
            insert = f"INSERT INTO {table} ({listed}) VALUES ({', '.join('?' for _ in columns)})"
            rows = source.conn.execute(f"SELECT {listed} FROM {table}{order}")
            n = 0
            while batch := rows.fetchmany(BATCH):
                out.executemany(insert, [tuple(r) for r in batch])
                n += len(batch)
            counts[table] = n
            if progress:
                progress(table, n)
        if target.dialect == "postgresql":
            # Identity columns count from their own sequence, which the copied ids did not move.
            identity = out.execute(
                "SELECT table_name FROM information_schema.columns"
                " WHERE table_schema = current_schema() AND column_name = 'id' AND is_identity = 'YES'"
            )
            for (table,) in list(identity):
                out.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'),"
                    f" (SELECT COALESCE(MAX(id), 0) + 1 FROM {table}), false)"
                )
    return counts
