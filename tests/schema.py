"""What tables and indexes a test's database has, asked of SQLite's or PostgreSQL's catalog."""

from __future__ import annotations

from aigc_studio.storage.db import Database


def tables(db: Database) -> set[str]:
    if db.dialect == "postgresql":
        sql = "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
    else:
        sql = "SELECT name FROM sqlite_master WHERE type = 'table'"
    return {row[0] for row in db.conn.execute(sql)}


def indexes(db: Database, table: str) -> set[str]:
    if db.dialect == "postgresql":
        sql = "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() AND tablename = ?"
    else:
        sql = "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ?"
    return {row[0] for row in db.conn.execute(sql, (table,))}
