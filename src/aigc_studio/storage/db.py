"""The studio's database, with ordered schema migrations: a SQLite file under AIGC_HOME (in WAL mode)
by default, or a PostgreSQL database (setting database_url; storage/postgres.py).

Each migration is a function ``mNNN_name(conn)``; the ones already applied are recorded in the
``_migrations`` table, so a database made by an older studio is brought up to date on open.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# A database URL with one of these schemes selects PostgreSQL (setting database_url).
POSTGRES_SCHEMES = ("postgresql://", "postgres://")

MIGRATIONS: list[Callable[[], str]] = []


def migration(fn: Callable[[], str]) -> Callable[[], str]:
    """Register a migration: a function returning the SQL script that it runs."""
    MIGRATIONS.append(fn)
    return fn


@migration
def m001_history() -> str:
    return """
        CREATE TABLE conversations (
            id TEXT PRIMARY KEY,
            title TEXT NOT NULL,
            model TEXT NOT NULL,
            source TEXT NOT NULL,
            created REAL NOT NULL,
            updated REAL NOT NULL,
            -- hash of the message list that ends with the last answer, so an OpenAI client that
            -- resends the whole conversation continues it instead of starting a new one
            tail_hash TEXT
        );
        CREATE INDEX conversations_updated ON conversations(updated);
        CREATE INDEX conversations_tail ON conversations(tail_hash);

        CREATE TABLE responses (
            id TEXT PRIMARY KEY,
            conversation_id TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
            model TEXT NOT NULL,
            source TEXT NOT NULL,
            options TEXT NOT NULL,
            seed INTEGER,
            status TEXT NOT NULL,
            error TEXT,
            finish_reason TEXT,
            prompt_tokens INTEGER,
            completion_tokens INTEGER,
            ttft_ms REAL,
            tokens_per_s REAL,
            duration_ms REAL,
            trimmed_messages INTEGER NOT NULL DEFAULT 0,
            created REAL NOT NULL
        );
        CREATE INDEX responses_conversation ON responses(conversation_id);

        CREATE TABLE messages (
            id INTEGER PRIMARY KEY,
            conversation_id TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
            response_id TEXT REFERENCES responses(id) ON DELETE SET NULL,
            role TEXT NOT NULL,
            content TEXT NOT NULL,
            created REAL NOT NULL
        );
        CREATE INDEX messages_conversation ON messages(conversation_id, id);

        CREATE VIRTUAL TABLE messages_fts USING fts5(
            content, content='messages', content_rowid='id', tokenize='trigram'
        );
        CREATE TRIGGER messages_ai AFTER INSERT ON messages BEGIN
            INSERT INTO messages_fts(rowid, content) VALUES (new.id, new.content);
        END;
        CREATE TRIGGER messages_ad AFTER DELETE ON messages BEGIN
            INSERT INTO messages_fts(messages_fts, rowid, content) VALUES ('delete', old.id, old.content);
        END;
    """


@migration
def m002_models() -> str:
    return """
        CREATE TABLE models (
            id TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            engine TEXT NOT NULL,
            path TEXT NOT NULL,
            aliases TEXT NOT NULL DEFAULT '[]',
            info TEXT NOT NULL DEFAULT '{}',
            created REAL NOT NULL
        );
    """


@migration
def m003_images_and_jobs() -> str:
    return """
        CREATE TABLE jobs (
            id TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            state TEXT NOT NULL,          -- queued | running | done | failed | interrupted
            model TEXT,
            request TEXT NOT NULL,
            source TEXT NOT NULL,
            error TEXT,
            n_images INTEGER NOT NULL DEFAULT 0,
            created REAL NOT NULL,
            started REAL,
            finished REAL
        );
        CREATE INDEX jobs_created ON jobs(created);

        CREATE TABLE images (
            id TEXT PRIMARY KEY,
            job_id TEXT REFERENCES jobs(id) ON DELETE SET NULL,
            path TEXT NOT NULL,
            mode TEXT NOT NULL,
            model TEXT NOT NULL,
            model_hash TEXT,
            prompt TEXT NOT NULL,
            negative_prompt TEXT NOT NULL,
            seed INTEGER NOT NULL,
            subseed INTEGER,
            width INTEGER NOT NULL,
            height INTEGER NOT NULL,
            params TEXT NOT NULL,         -- the full request, JSON, A1111 names
            infotext TEXT NOT NULL,
            created REAL NOT NULL
        );
        CREATE INDEX images_created ON images(created);
    """


@migration
def m004_superseded_answers() -> str:
    # A regenerated answer stays in history, marked as replaced, instead of being deleted.
    return "ALTER TABLE messages ADD COLUMN superseded INTEGER NOT NULL DEFAULT 0;"


@migration
def m005_a1111_options() -> str:
    # AUTOMATIC1111 options that A1111 clients set through POST /sdapi/v1/options, kept across restarts.
    return "CREATE TABLE a1111_options (key TEXT PRIMARY KEY, value TEXT NOT NULL);"


@migration
def m006_tool_messages() -> str:
    # OpenAI clients send tool calls (an assistant turn, often without text), tool results (role
    # "tool", answering a call by its id) and participant names; all are kept so a resent
    # conversation is recognised and a stored one is given back as it was.
    return """
        ALTER TABLE messages ADD COLUMN name TEXT;
        ALTER TABLE messages ADD COLUMN tool_calls TEXT;  -- JSON [{id, name, arguments}]
        ALTER TABLE messages ADD COLUMN tool_call_id TEXT;
    """


@migration
def m007_documents() -> str:
    # Articles from the writing pipeline. A document is its versions: each one whole (the Markdown, the
    # outline, every section's text and state, the spec and the model and sampling that ran, and what
    # made it), never changed once written, so any version can be opened, compared or exported again.
    return """
        CREATE TABLE documents (
            id TEXT PRIMARY KEY,
            title TEXT NOT NULL,
            language TEXT NOT NULL,
            created REAL NOT NULL,
            updated REAL NOT NULL
        );
        CREATE INDEX documents_updated ON documents(updated);

        CREATE TABLE document_versions (
            id INTEGER PRIMARY KEY,
            document_id TEXT NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
            number INTEGER NOT NULL,
            reason TEXT NOT NULL,         -- "outline", "section 3 regenerated", "user edit", ...
            content TEXT NOT NULL,        -- the article as Markdown
            outline TEXT NOT NULL,        -- JSON [heading]
            sections TEXT NOT NULL,       -- JSON [{heading, text, state, seed, finish_reason, tokens}]
            abstract TEXT NOT NULL,
            tags TEXT NOT NULL,           -- JSON [tag]
            spec TEXT NOT NULL,           -- JSON ArticleSpec
            model TEXT,
            options TEXT NOT NULL,        -- JSON: the sampling values that ran
            notes TEXT NOT NULL,          -- JSON [what was left out to fit the context, ...]
            created REAL NOT NULL,
            UNIQUE (document_id, number)
        );

        CREATE VIRTUAL TABLE document_versions_fts USING fts5(
            content, content='document_versions', content_rowid='id', tokenize='trigram'
        );
        CREATE TRIGGER document_versions_ai AFTER INSERT ON document_versions BEGIN
            INSERT INTO document_versions_fts(rowid, content) VALUES (new.id, new.content);
        END;
        CREATE TRIGGER document_versions_ad AFTER DELETE ON document_versions BEGIN
            INSERT INTO document_versions_fts(document_versions_fts, rowid, content)
            VALUES ('delete', old.id, old.content);
        END;
    """


@migration
def m008_image_prompt_templates() -> str:
    # What an image's prompt was made from: the dynamic-prompt templates it was drawn from (the prompt
    # column keeps the prompt that ran) and the saved styles applied to it, so history can show both.
    return """
        ALTER TABLE images ADD COLUMN prompt_template TEXT;
        ALTER TABLE images ADD COLUMN negative_template TEXT;
        ALTER TABLE images ADD COLUMN styles TEXT NOT NULL DEFAULT '[]';  -- JSON list of style names
    """


@migration
def m009_code() -> str:
    # Code sessions (issue 9). A session is a chat conversation (source "code"); what its answers held
    # as code is kept as versions (per block, numbered 1, 2, ...; never changed once written) and every
    # run in the sandbox as a record of the version it ran: the spec and the whole result as JSON, plus
    # the columns that lists and filters read.
    return """
        CREATE TABLE code_versions (
            id INTEGER PRIMARY KEY,
            session_id TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
            block INTEGER NOT NULL,       -- 1-based: which program of the session
            version INTEGER NOT NULL,     -- 1-based per block
            language TEXT NOT NULL,       -- python | javascript | a name as written (bash, ...) | ''
            code TEXT NOT NULL,
            message_id INTEGER REFERENCES messages(id) ON DELETE SET NULL,  -- the answer it came from
            note TEXT NOT NULL,           -- generated | refined: <request> | repair 2/3 | edited | file: <name>
            created REAL NOT NULL,
            UNIQUE (session_id, block, version)
        );

        CREATE TABLE code_runs (
            id INTEGER PRIMARY KEY,
            version_id INTEGER NOT NULL REFERENCES code_versions(id) ON DELETE CASCADE,
            session_id TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
            message_id INTEGER REFERENCES messages(id) ON DELETE SET NULL,
            language TEXT NOT NULL,
            exit_code INTEGER,            -- NULL: killed by a signal
            limit_hit TEXT,               -- wall | cpu | memory | processes | output | files
            ok INTEGER NOT NULL,
            matched INTEGER,              -- NULL: no expected output was given
            wall_seconds REAL NOT NULL,
            spec TEXT NOT NULL,           -- JSON RunSpec
            result TEXT NOT NULL,         -- JSON RunResult.to_dict()
            created REAL NOT NULL
        );
        CREATE INDEX code_runs_version ON code_runs(version_id);
        CREATE INDEX code_runs_session ON code_runs(session_id, id);
    """


@migration
def m010_comparisons() -> str:
    # Side-by-side comparisons: one prompt to several models (text), or one image request over models or
    # parameter values (a row, an X/Y grid). A comparison is written once, when it has ended, whole: what
    # was asked, and per pane or cell what came back (text and timings, or the image file and infotext).
    return """
        CREATE TABLE comparisons (
            id TEXT PRIMARY KEY,
            kind TEXT NOT NULL,           -- text | image
            prompt TEXT NOT NULL,
            models TEXT NOT NULL,         -- JSON [model id]
            request TEXT NOT NULL,        -- JSON: system prompt and options (text), the ImageRequest and axes (image)
            results TEXT NOT NULL,        -- JSON [pane or cell]
            grid_path TEXT,               -- image: the composed grid PNG
            duration_ms REAL NOT NULL,
            created REAL NOT NULL
        );
        CREATE INDEX comparisons_created ON comparisons(created);
    """


@migration
def m011_arena() -> str:
    # Arena battles: two anonymous answers to one prompt and the vote between them. The models are
    # kept here from the start (the leaderboard needs them); the services show them only after the vote.
    return """
        CREATE TABLE arena_battles (
            id TEXT PRIMARY KEY,
            category TEXT NOT NULL,       -- chat, writing, code, image
            prompt TEXT NOT NULL,
            system TEXT NOT NULL,
            model_a TEXT NOT NULL,        -- shown as "Model A"
            model_b TEXT NOT NULL,        -- shown as "Model B"
            answer_a TEXT NOT NULL,       -- the text, or for image battles the gallery image id
            answer_b TEXT NOT NULL,
            finish_a TEXT,                -- stop, length, error, ...; NULL while it runs
            finish_b TEXT,
            error_a TEXT,
            error_b TEXT,
            params TEXT NOT NULL,         -- JSON: seed, max_tokens (or the image request)
            vote TEXT,                    -- a, b, tie, bad; NULL until voted
            created REAL NOT NULL,
            voted REAL
        );
        CREATE INDEX arena_battles_voted ON arena_battles(category, voted);
    """


@migration
def m012_labels() -> str:
    # AI-generated content labels (issue 11): what the labeling pipeline applied to each image, as
    # JSON (the visible mark's text and box, metadata and C2PA on or off, the watermark payload, the
    # NSFW score and action, the IPTC source type), plus the columns lists and look-ups read: the NSFW
    # score and the action taken, and the watermark payload (indexed: inspect finds an image by it).
    # Images made before have NULL everywhere: shown as "not labeled".
    return """
        ALTER TABLE images ADD COLUMN labels TEXT;          -- JSON, services/labeling.py's LabeledImage.record
        ALTER TABLE images ADD COLUMN nsfw_score REAL;      -- P(nsfw) 0..1 of the raw image
        ALTER TABLE images ADD COLUMN nsfw_action TEXT;     -- none | blurred | blocked (what was done)
        ALTER TABLE images ADD COLUMN watermark INTEGER;    -- the 32-bit payload embedded; NULL: none
        CREATE INDEX images_watermark ON images(watermark);
    """


@migration
def m013_text_labels() -> str:
    # Each export of generated text (a document version, a chat history) with the labels it carried, so
    # an item's history says whether the label line and the AIGC metadata were on when it left the studio.
    return """
        CREATE TABLE text_exports (
            id INTEGER PRIMARY KEY,
            kind TEXT NOT NULL,           -- "document" or "history"
            item_id TEXT NOT NULL,        -- the document id, or the conversation id
            version INTEGER,              -- the document version exported
            format TEXT NOT NULL,         -- md, html, docx, json
            label_line INTEGER NOT NULL,  -- 1: the visible label line was written
            label_position TEXT,          -- start, end (NULL without a line)
            label_metadata INTEGER NOT NULL,  -- 1: the AIGC field was written
            digest TEXT,                  -- its ReservedCode1
            created REAL NOT NULL
        );
        CREATE INDEX text_exports_item ON text_exports(kind, item_id, created);
    """


@migration
def m014_users() -> str:
    # Users of a team server (issue 13), their API keys and their web sessions. Secrets are never stored:
    # a password as its Argon2 hash (salt and parameters inside), a key and a session token as the SHA-256
    # of their random secret part; the id is the part a caller's token names, for the look-up.
    return """
        CREATE TABLE users (
            id TEXT PRIMARY KEY,          -- usr-…: what items record as their owner
            name TEXT NOT NULL UNIQUE COLLATE NOCASE,
            role TEXT NOT NULL CHECK (role IN ('admin', 'member')),
            password_hash TEXT NOT NULL,  -- Argon2id, PHC string
            created REAL NOT NULL,
            updated REAL NOT NULL
        );

        CREATE TABLE api_keys (
            id TEXT PRIMARY KEY,          -- the key's public id, also written in the key (aigc-<id>-<secret>)
            user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            name TEXT NOT NULL,
            secret_hash TEXT NOT NULL,    -- SHA-256 hex of the secret part
            created REAL NOT NULL,
            expires REAL,                 -- NULL: never
            last_used REAL,
            revoked REAL                  -- NULL: in force
        );
        CREATE INDEX api_keys_user ON api_keys(user_id);

        CREATE TABLE web_sessions (
            id TEXT PRIMARY KEY,
            user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            secret_hash TEXT NOT NULL,
            created REAL NOT NULL,
            expires REAL NOT NULL
        );
        CREATE INDEX web_sessions_user ON web_sessions(user_id);
    """


@migration
def m015_owners() -> str:
    # Whose each item is (issue 13, a team server): the signed-in user's id, NULL for items made in the
    # local single-user studio (storage/owners.py). Child rows (messages, responses, document and code
    # versions, code runs) are their parent's; the indexes serve the lists, which filter by owner and
    # sort by time.
    return """
        ALTER TABLE conversations ADD COLUMN owner TEXT;
        ALTER TABLE jobs ADD COLUMN owner TEXT;
        ALTER TABLE images ADD COLUMN owner TEXT;
        ALTER TABLE documents ADD COLUMN owner TEXT;
        ALTER TABLE comparisons ADD COLUMN owner TEXT;
        ALTER TABLE arena_battles ADD COLUMN owner TEXT;
        ALTER TABLE text_exports ADD COLUMN owner TEXT;
        CREATE INDEX conversations_owner ON conversations(owner, updated);
        CREATE INDEX jobs_owner ON jobs(owner, created);
        CREATE INDEX images_owner ON images(owner, created);
        CREATE INDEX documents_owner ON documents(owner, updated);
        CREATE INDEX comparisons_owner ON comparisons(owner, created);
        CREATE INDEX arena_battles_owner ON arena_battles(owner, created);
        -- a file under outputs is sent to a user only when it is one of their images
        CREATE INDEX images_path ON images(path);
    """


@migration
def m016_durable_jobs() -> str:
    # Jobs that survive a restart (issue 13). ``work`` is what it takes to run a queued job again after
    # a restart: the services' job kind, its arguments (the request as it was checked, the input images'
    # files) and the principal it ran for, as JSON; NULL for a job that cannot run again (its images
    # were for its client only). ``runner`` names the process that holds the job ("pid:start time"), so
    # a server starting beside a live CLI leaves that CLI's jobs alone.
    return """
        ALTER TABLE jobs ADD COLUMN work TEXT;
        ALTER TABLE jobs ADD COLUMN runner TEXT;
        CREATE INDEX jobs_state ON jobs(state, created);
    """


def like_pattern(text: str) -> str:
    """A LIKE pattern (with ESCAPE '\\') matching ``text`` anywhere, its % and _ taken literally."""
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


class Database:
    """The studio's database: the SQLite file at ``target`` (a path), or the PostgreSQL database a
    ``postgresql://`` URL names. One connection per thread; ``with db.tx() as conn`` for a transaction
    (writers take turns on both). The stores write SQLite's SQL; storage/postgres.py maps it."""

    def __init__(self, target: Path | str):
        self.url = str(target) if str(target).startswith(POSTGRES_SCHEMES) else ""
        self.dialect = "postgresql" if self.url else "sqlite"
        self.path = None if self.url else Path(target)
        self._local = threading.local()
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._migrate()

    @property
    def conn(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
        return conn

    def _connect(self) -> Any:
        if self.url:
            from .postgres import PostgresConnection

            return PostgresConnection(self.url)
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    @property
    def IntegrityError(self) -> type[Exception]:  # noqa: N802 (named as the DB-API names it)
        """The exception a broken constraint (unique, foreign key, check) raises in this dialect."""
        if self.url:
            import psycopg

            return psycopg.IntegrityError
        return sqlite3.IntegrityError

    def tx(self) -> _Transaction:
        return _Transaction(self.conn)

    def contains(self, column: str, fts_table: str, query: str) -> tuple[str, str]:
        """A condition (and its one argument) true where ``column`` holds ``query`` as a substring,
        ignoring case; ``fts_table`` is the trigram index of that column (its rowid is the row's id)."""
        if len(query) < 3 or self.url:
            # Trigram indexes serve substrings of three characters or more: on PostgreSQL, pg_trgm's
            # GIN index serves this ILIKE (storage/postgres.py turns LIKE into ILIKE).
            return f"{column} LIKE ? ESCAPE '\\'", like_pattern(query)
        table = column.rpartition(".")[0]
        id_column = f"{table}.id" if table else "id"
        return (
            f"{id_column} IN (SELECT rowid FROM {fts_table} WHERE {fts_table} MATCH ?)",
            '"' + query.replace('"', '""') + '"',
        )

    def _migrate(self) -> None:
        if self.url:
            self._migrate_postgres()
            return
        conn = self.conn
        conn.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied REAL)")
        done = {row[0] for row in conn.execute("SELECT name FROM _migrations")}
        for fn in MIGRATIONS:
            if fn.__name__ in done:
                continue
            # One script per migration so its tables and its record land together or not at all.
            try:
                conn.executescript(
                    f"BEGIN IMMEDIATE;\n{fn()}\n"
                    f"INSERT INTO _migrations VALUES ('{fn.__name__}', julianday('now'));\nCOMMIT;"
                )
            except sqlite3.OperationalError:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                # Another process (a CLI beside the server) may have applied it a moment ago.
                if not conn.execute("SELECT 1 FROM _migrations WHERE name = ?", (fn.__name__,)).fetchone():
                    raise

    def _migrate_postgres(self) -> None:
        from .postgres import migration_sql

        conn = self.conn
        with self.tx():
            # pg_trgm: the substring indexes (FTS5's trigram tables); citext: user names that ignore case.
            # Both are trusted extensions: the database's owner may create them.
            conn.script(
                "CREATE EXTENSION IF NOT EXISTS pg_trgm; CREATE EXTENSION IF NOT EXISTS citext;"
                " CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied DOUBLE PRECISION)"
            )
        for fn in MIGRATIONS:
            # DDL is transactional here: a migration and its record land together, and the write lock
            # that tx() takes makes a second process wait, then see the migration done.
            with self.tx():
                if conn.execute("SELECT 1 FROM _migrations WHERE name = ?", (fn.__name__,)).fetchone():
                    continue
                conn.script(migration_sql(fn()))
                # applied: a Julian day, as SQLite's julianday('now') writes it
                conn.execute("INSERT INTO _migrations VALUES (?, ?)", (fn.__name__, time.time() / 86400 + 2440587.5))

    def migrations_applied(self) -> list[str]:
        return [row[0] for row in self.conn.execute("SELECT name FROM _migrations ORDER BY name")]


class _Transaction:
    def __init__(self, conn: Any):
        self.conn = conn

    def __enter__(self) -> Any:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type, exc, tb) -> None:
        self.conn.execute("COMMIT" if exc_type is None else "ROLLBACK")
