"""``aigc db copy``: a local studio's records into an empty PostgreSQL database and back, every row the
same, the copy usable by a studio on it, and a target that holds records refused untouched."""

from __future__ import annotations

from click.testing import CliRunner

from aigc_studio.cli.main import cli
from aigc_studio.config import load_config
from aigc_studio.contracts import Message
from aigc_studio.services.users import UserService
from aigc_studio.storage.code import CodeStore
from aigc_studio.storage.copy import tables
from aigc_studio.storage.db import Database
from aigc_studio.storage.users import UserStore
from aigc_studio.studio import Studio

from . import postgres_server
from .test_postgres import needs_server


def _rows(db: Database) -> dict[str, list[tuple]]:
    out = {}
    for table in tables():
        columns = [d[0] for d in db.conn.execute(f"SELECT * FROM {table} LIMIT 0").description]
        rows = [tuple(r) for r in db.conn.execute(f"SELECT {', '.join(columns)} FROM {table}")]
        out[table] = sorted(rows, key=repr)
    return out


def test_tables_come_parents_first():
    names = tables()
    assert names.index("conversations") < names.index("responses") < names.index("messages")
    assert names.index("messages") < names.index("code_versions") < names.index("code_runs")
    assert names.index("users") < names.index("api_keys")
    assert "_migrations" not in names and not any("fts" in n for n in names)


@needs_server
def test_a_local_studio_copied_to_postgresql_and_back(aigc_home, monkeypatch):
    monkeypatch.delenv("AIGC_DATABASE_URL", raising=False)  # the local studio: the SQLite file
    studio = Studio(load_config(model="echo"))
    try:
        first = studio.chat.complete(studio.chat.prepare([Message(role="user", content="写一首诗 about tea")]))
        history = [Message(role="user", content="写一首诗 about tea"), Message(role="assistant", content=first.text)]
        studio.chat.complete(studio.chat.prepare([*history, Message(role="user", content="and coffee?")]))
    finally:
        studio.close()
    sqlite_db = Database(load_config().database)
    users = UserService(UserStore(sqlite_db))
    users.add("ann", "ann-password-1", admin=True)
    key = users.create_key("ann", name="laptop")
    code = CodeStore(sqlite_db)
    with sqlite_db.tx() as conn:
        session = code.create_session(conn, "a script")
    code.add_version(session, 1, "python", "print('100% 茶')", None, "edited")
    before = _rows(sqlite_db)

    url = postgres_server.server().database_for(aigc_home / "team")
    copied = CliRunner().invoke(cli, ["db", "copy", "--to", url], catch_exceptions=False)
    assert copied.exit_code == 0, copied.output
    assert f"rows of {len(tables())} tables" in copied.output
    pg = Database(url)
    assert _rows(pg) == before

    # A studio on the copy: the key signs in, the search finds the poem, and a new answer gets new ids.
    monkeypatch.setenv("AIGC_DATABASE_URL", url)
    studio = Studio(load_config(model="echo"))
    try:
        assert UserService(UserStore(studio.db)).principal_for_key(key.key).name == "ann"
        assert {r["id"] for r in studio.history.search("一首诗")} == {first.conversation_id}
        later = studio.chat.complete(studio.chat.prepare([Message(role="user", content="new")]))
        assert later.conversation_id != first.conversation_id
    finally:
        studio.close()
    ids = [r[0] for r in pg.conn.execute("SELECT id FROM messages ORDER BY id")]
    assert len(ids) == len(before["messages"]) + 2 and len(set(ids)) == len(ids)

    # Into a target that holds records: refused, naming them, and nothing changes.
    again = CliRunner().invoke(cli, ["db", "copy", "--from", str(sqlite_db.path), "--to", url])
    assert again.exit_code == 1 and "already holds records (conversations" in again.output
    assert len(_rows(pg)["messages"]) == len(ids)

    # And back, into a new SQLite file: every row as PostgreSQL has it.
    back = aigc_home / "back.db"
    returned = CliRunner().invoke(cli, ["db", "copy", "--from", url, "--to", str(back)], catch_exceptions=False)
    assert returned.exit_code == 0, returned.output
    assert _rows(Database(back)) == _rows(pg)
    assert (
        Database(back).conn.execute("SELECT count(*) FROM messages_fts WHERE messages_fts MATCH '一首诗'").fetchone()[0]
    )


def test_the_password_in_a_url_is_never_printed(aigc_home):
    refused = CliRunner().invoke(cli, ["db", "copy", "--to", "postgresql://ann:hunter2@127.0.0.1:1/none"])
    assert refused.exit_code == 1 and "hunter2" not in refused.output
    same = str(aigc_home / "studio.db")
    refused = CliRunner().invoke(cli, ["db", "copy", "--from", same, "--to", same])
    assert refused.exit_code == 2 and "the same database" in refused.output
