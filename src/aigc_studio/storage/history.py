"""Chat history: conversations, their messages, and one response record per generation."""

from __future__ import annotations

import hashlib
import json
import secrets
import sqlite3
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace

from .. import principal
from ..contracts import Message, ToolCall
from ..errors import InvalidRequest, NotFound
from .db import Database
from .owners import mine

EXPORT_VERSION = 1


def new_id(prefix: str) -> str:
    """A short id that sorts by creation time: ``prefix-<ms hex><random hex>``."""
    return f"{prefix}-{int(time.time() * 1000):011x}{secrets.token_hex(3)}"


def messages_hash(messages: list[Message]) -> str:
    """A hash of what a client would resend: roles and contents, and the tool calls, tool-call ids and
    names of the turns that have them (a plain turn hashes as it always did, so older conversations are
    still recognised)."""
    rows = []
    for m in messages:
        row: list = [m.role, m.content]
        if m.tool_calls or m.tool_call_id is not None or m.name is not None:
            row += [[[c.id, c.name, c.arguments] for c in m.tool_calls], m.tool_call_id, m.name]
        rows.append(row)
    payload = json.dumps(rows, ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()


def _tool_calls_json(calls: list[ToolCall]) -> str | None:
    return json.dumps([c.model_dump() for c in calls], ensure_ascii=False) if calls else None


def _message(row: dict) -> Message:
    calls = row.get("tool_calls") or []
    return Message(
        role=row["role"],
        content=row["content"],
        name=row.get("name"),
        tool_calls=[ToolCall(**c) for c in calls],
        tool_call_id=row.get("tool_call_id"),
    )


@dataclass
class ResponseRecord:
    """What one generation did: how it ended, how fast, at what cost."""

    model: str
    source: str
    options: dict
    status: str = "ok"  # ok | error | cancelled; streaming while it runs, interrupted if the server died
    seed: int | None = None
    error: str | None = None
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    ttft_ms: float | None = None
    tokens_per_s: float | None = None
    duration_ms: float | None = None
    trimmed_messages: int = 0
    id: str = field(default_factory=lambda: new_id("resp"))
    created: float = field(default_factory=time.time)


class History:
    def __init__(self, db: Database):
        self.db = db

    # -- writing ---------------------------------------------------------------------------------

    def find_continuation(self, messages: list[Message]) -> str | None:
        """The conversation whose stored messages are exactly ``messages``, if any."""
        owned, owner = mine()
        row = self.db.conn.execute(
            f"SELECT id FROM conversations WHERE tail_hash = ?{owned} ORDER BY updated DESC LIMIT 1",
            (messages_hash(messages), *owner),
        ).fetchone()
        return row["id"] if row else None

    def record(
        self,
        conversation_id: str | None,
        new_messages: list[Message],
        response: ResponseRecord,
        answer: str,
        all_messages: list[Message],
        supersedes: list[int] | None = None,
        tool_calls: list[ToolCall] | None = None,
        also: Callable[[sqlite3.Connection, str, int | None], None] | None = None,
        begun: bool = False,
    ) -> str:
        """Store one exchange in a single transaction and return the conversation id.

        ``new_messages`` are the inputs not stored yet (tool calls and results included); ``answer``
        (with the ``tool_calls`` the model made) is kept even when the response failed or was
        cancelled part-way, so nothing generated is lost. ``all_messages`` is the full input, used to
        recognise a client that resends the conversation next time. ``supersedes`` names stored
        answers that this one replaces (regenerate); they are marked, not deleted, and only once
        there is a new answer to show instead. ``also(conn, conversation_id, answer_message_id)`` writes
        what another service keeps of the exchange (a code session's versions) in the same transaction,
        so the exchange and that record land together or not at all. ``begun``: ``begin`` stored the
        conversation, the inputs and the response's row already; this fills in how it ended.
        """
        tool_calls = tool_calls or []
        now = time.time()
        with self.db.tx() as conn:
            if begun:
                assert conversation_id is not None, "begin returns the conversation id"
                self._end_response(conn, response)
            else:
                conversation_id = self._store_inputs(conn, conversation_id, new_messages, response, now)
            tail = answer_id = None
            if answer or tool_calls or response.status == "ok":
                answer_id = conn.execute(
                    "INSERT INTO messages (conversation_id, response_id, role, content, tool_calls, created)"
                    " VALUES (?,?,?,?,?,?) RETURNING id",
                    (conversation_id, response.id, "assistant", answer, _tool_calls_json(tool_calls), now),
                ).fetchone()[0]
                tail = messages_hash([*all_messages, Message(role="assistant", content=answer, tool_calls=tool_calls)])
                for message_id in supersedes or []:
                    conn.execute(
                        "UPDATE messages SET superseded = 1 WHERE id = ? AND conversation_id = ?",
                        (message_id, conversation_id),
                    )
            conn.execute(
                # A request that produced nothing leaves the resend-recognition hash as it was.
                "UPDATE conversations SET updated = ?, model = ?, tail_hash = COALESCE(?, tail_hash) WHERE id = ?",
                (now, response.model, tail, conversation_id),
            )
            if also is not None:
                also(conn, conversation_id, answer_id)
        return conversation_id

    def begin(self, conversation_id: str | None, new_messages: list[Message], response: ResponseRecord) -> str:
        """Store the inputs of an exchange before its answer streams: the conversation (when new), the
        new messages and the response's row as ``streaming``; returns the conversation id. So a server
        killed mid-answer keeps the user's message and every earlier turn; ``record(..., begun=True)``
        fills in the end, and ``interrupt_streaming`` marks an answer the server died under."""
        now = time.time()
        with self.db.tx() as conn:
            conversation_id = self._store_inputs(
                conn, conversation_id, new_messages, replace(response, status="streaming"), now
            )
            conn.execute("UPDATE conversations SET updated = ? WHERE id = ?", (now, conversation_id))
        return conversation_id

    def _store_inputs(
        self,
        conn: sqlite3.Connection,
        conversation_id: str | None,
        new_messages: list[Message],
        response: ResponseRecord,
        now: float,
    ) -> str:
        """The conversation (made when new, else checked to be the caller's), the response's row and the
        new input messages; returns the conversation id."""
        if conversation_id is None:
            conversation_id = new_id("conv")
            first_user = next((m.content for m in new_messages if m.role == "user"), "")
            title = " ".join(first_user.split())[:80] or "(untitled)"
            conn.execute(
                "INSERT INTO conversations (id, title, model, source, created, updated, owner) VALUES (?,?,?,?,?,?,?)",
                (conversation_id, title, response.model, response.source, now, now, principal.owner()),
            )
        else:
            self._check_mine(conn, conversation_id)
        self._insert_response(conn, conversation_id, response)
        for m in new_messages:
            conn.execute(
                "INSERT INTO messages (conversation_id, role, content, name, tool_calls, tool_call_id, created)"
                " VALUES (?,?,?,?,?,?,?)",
                (conversation_id, m.role, m.content, m.name, _tool_calls_json(m.tool_calls), m.tool_call_id, now),
            )
        return conversation_id

    def interrupt_streaming(self, reason: str) -> int:
        """At start: answers still ``streaming`` were cut off by the server's end (a kill, a crash).
        They are marked ``interrupted`` with ``reason``; the text that had streamed is not kept (it was
        never stored). Returns how many."""
        with self.db.tx() as conn:
            return conn.execute(
                "UPDATE responses SET status = 'interrupted', error = ?, finish_reason = 'interrupted'"
                " WHERE status = 'streaming'",
                (reason,),
            ).rowcount

    @staticmethod
    def _insert_response(conn: sqlite3.Connection, conversation_id: str, response: ResponseRecord) -> None:
        conn.execute(
            "INSERT INTO responses (id, conversation_id, model, source, options, seed, status, error,"
            " finish_reason, prompt_tokens, completion_tokens, ttft_ms, tokens_per_s, duration_ms,"
            " trimmed_messages, created) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                response.id,
                conversation_id,
                response.model,
                response.source,
                json.dumps(response.options),
                response.seed,
                response.status,
                response.error,
                response.finish_reason,
                response.prompt_tokens,
                response.completion_tokens,
                response.ttft_ms,
                response.tokens_per_s,
                response.duration_ms,
                response.trimmed_messages,
                response.created,
            ),
        )

    @staticmethod
    def _end_response(conn: sqlite3.Connection, response: ResponseRecord) -> None:
        conn.execute(
            "UPDATE responses SET model = ?, options = ?, seed = ?, status = ?, error = ?, finish_reason = ?,"
            " prompt_tokens = ?, completion_tokens = ?, ttft_ms = ?, tokens_per_s = ?, duration_ms = ?,"
            " trimmed_messages = ? WHERE id = ?",
            (
                response.model,
                json.dumps(response.options),
                response.seed,
                response.status,
                response.error,
                response.finish_reason,
                response.prompt_tokens,
                response.completion_tokens,
                response.ttft_ms,
                response.tokens_per_s,
                response.duration_ms,
                response.trimmed_messages,
                response.id,
            ),
        )

    # -- reading ---------------------------------------------------------------------------------

    @staticmethod
    def _check_mine(conn: sqlite3.Connection, conversation_id: str) -> None:
        """NotFound unless the conversation exists and is the caller's."""
        owned, owner = mine()
        if (
            conn.execute(f"SELECT 1 FROM conversations WHERE id = ?{owned}", (conversation_id, *owner)).fetchone()
            is None
        ):
            raise NotFound(f"no conversation with id '{conversation_id}' (see `aigc history list`)")

    def list(self, limit: int = 20, offset: int = 0) -> list[dict]:
        owned, owner = mine("c")
        rows = self.db.conn.execute(
            "SELECT c.*, (SELECT count(*) FROM messages m WHERE m.conversation_id = c.id) AS n_messages"
            f" FROM conversations c WHERE TRUE{owned} ORDER BY updated DESC LIMIT ? OFFSET ?",
            (*owner, limit, offset),
        )
        return [dict(r) for r in rows]

    def latest_id(self) -> str | None:
        owned, owner = mine()
        row = self.db.conn.execute(
            f"SELECT id FROM conversations WHERE TRUE{owned} ORDER BY updated DESC LIMIT 1", owner
        ).fetchone()
        return row["id"] if row else None

    def get(self, conversation_id: str) -> dict:
        """A conversation with its messages and responses; raises NotFound."""
        conn = self.db.conn
        owned, owner = mine()
        row = conn.execute(f"SELECT * FROM conversations WHERE id = ?{owned}", (conversation_id, *owner)).fetchone()
        if row is None:
            raise NotFound(f"no conversation with id '{conversation_id}' (see `aigc history list`)")
        conv = dict(row)
        conv["messages"] = []
        for r in conn.execute(
            "SELECT role, content, name, tool_calls, tool_call_id, response_id, created, superseded FROM messages"
            " WHERE conversation_id = ? ORDER BY id",
            (conversation_id,),
        ):
            message = dict(r)
            message["tool_calls"] = json.loads(message["tool_calls"]) if message["tool_calls"] else None
            conv["messages"].append(message)
        conv["responses"] = []
        for r in conn.execute("SELECT * FROM responses WHERE conversation_id = ? ORDER BY created", (conversation_id,)):
            resp = dict(r)
            resp["options"] = json.loads(resp["options"])
            del resp["conversation_id"]
            conv["responses"].append(resp)
        return conv

    def messages(self, conversation_id: str) -> list[Message]:
        """The conversation as the model sees it: replaced (regenerated) answers left out."""
        return [_message(m) for m in self.get(conversation_id)["messages"] if not m["superseded"]]

    def trailing_answer_ids(self, conversation_id: str) -> list[int]:
        """Ids of the answers after the last question: what a regenerate replaces."""
        self._check_mine(self.db.conn, conversation_id)
        rows = self.db.conn.execute(
            "SELECT id, role FROM messages WHERE conversation_id = ? AND superseded = 0 ORDER BY id DESC",
            (conversation_id,),
        )
        ids = []
        for row in rows:
            if row["role"] != "assistant":
                break
            ids.append(row["id"])
        return ids

    def search(self, query: str, limit: int = 20) -> list[dict]:
        """Conversations whose messages contain ``query`` (substring match, any language)."""
        query = query.strip()
        if not query:
            raise InvalidRequest("search query must not be empty")
        where, arg = self.db.contains("m.content", "messages_fts", query)
        owned, owner = mine("c")
        rows = self.db.conn.execute(
            "SELECT c.id, c.title, c.model, c.updated, m.role, m.content FROM messages m"
            f" JOIN conversations c ON c.id = m.conversation_id WHERE ({where}){owned}"
            " ORDER BY c.updated DESC, m.id LIMIT ?",
            (arg, *owner, limit),
        )
        return [dict(r) for r in rows]

    # -- changing --------------------------------------------------------------------------------

    def delete(self, conversation_id: str) -> None:
        owned, owner = mine()
        with self.db.tx() as conn:
            if conn.execute(f"DELETE FROM conversations WHERE id = ?{owned}", (conversation_id, *owner)).rowcount == 0:
                raise NotFound(f"no conversation with id '{conversation_id}'")

    def rename(self, conversation_id: str, title: str) -> None:
        owned, owner = mine()
        with self.db.tx() as conn:
            cur = conn.execute(
                f"UPDATE conversations SET title = ? WHERE id = ?{owned}", (title, conversation_id, *owner)
            )
            if cur.rowcount == 0:
                raise NotFound(f"no conversation with id '{conversation_id}'")

    def export(self, conversation_ids: list[str] | None = None) -> dict:
        owned, owner = mine()
        ids = conversation_ids or [
            r[0]
            for r in self.db.conn.execute(f"SELECT id FROM conversations WHERE TRUE{owned} ORDER BY created", owner)
        ]
        return {"format": "aigc-studio-history", "version": EXPORT_VERSION, "conversations": [self.get(i) for i in ids]}

    def import_(self, data: dict) -> tuple[int, int]:
        """Add the conversations of an export; returns (imported, skipped as already present)."""
        if data.get("format") != "aigc-studio-history" or data.get("version") != EXPORT_VERSION:
            raise InvalidRequest(
                f"not an AIGC Studio history export (format 'aigc-studio-history', version {EXPORT_VERSION})"
            )
        imported = skipped = 0
        with self.db.tx() as conn:
            for conv in data["conversations"]:
                if conn.execute("SELECT 1 FROM conversations WHERE id = ?", (conv["id"],)).fetchone():
                    skipped += 1
                    continue
                conn.execute(
                    "INSERT INTO conversations (id, title, model, source, created, updated, tail_hash, owner)"
                    " VALUES (?,?,?,?,?,?,?,?)",
                    (
                        conv["id"],
                        conv["title"],
                        conv["model"],
                        conv["source"],
                        conv["created"],
                        conv["updated"],
                        conv.get("tail_hash"),
                        principal.owner(),
                    ),
                )
                for r in conv["responses"]:
                    rec = ResponseRecord(**{k: v for k, v in r.items() if k in ResponseRecord.__dataclass_fields__})
                    row = asdict(rec)
                    row["options"] = json.dumps(row["options"])
                    row["conversation_id"] = conv["id"]
                    conn.execute(
                        f"INSERT INTO responses ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                        list(row.values()),
                    )
                for m in conv["messages"]:
                    conn.execute(
                        "INSERT INTO messages (conversation_id, response_id, role, content, name, tool_calls,"
                        " tool_call_id, created, superseded) VALUES (?,?,?,?,?,?,?,?,?)",
                        (
                            conv["id"],
                            m.get("response_id"),
                            m["role"],
                            m["content"],
                            m.get("name"),
                            json.dumps(m["tool_calls"], ensure_ascii=False) if m.get("tool_calls") else None,
                            m.get("tool_call_id"),
                            m["created"],
                            m.get("superseded", 0),
                        ),
                    )
                imported += 1
        return imported, skipped
