"""Users, API keys and web sessions, in SQLite (tables ``users``, ``api_keys``, ``web_sessions``,
migration m014_users). Only hashes of secrets reach this module; services/users.py makes and checks them."""

from __future__ import annotations

import time

from .db import Database

__all__ = ["UserStore"]

_USER = "id, name, role, created, updated"
_KEY = "k.id, k.user_id, u.name AS user, k.name, k.created, k.expires, k.last_used, k.revoked"


class UserStore:
    def __init__(self, db: Database):
        self.db = db

    # -- users -----------------------------------------------------------------------------------

    def add_user(self, user_id: str, name: str, role: str, password_hash: str) -> None:
        now = time.time()
        with self.db.tx() as conn:
            conn.execute(
                "INSERT INTO users (id, name, role, password_hash, created, updated) VALUES (?,?,?,?,?,?)",
                (user_id, name, role, password_hash, now, now),
            )

    def user(self, name: str) -> dict | None:
        """The user called ``name`` (any letter case), without the password hash; None if there is none."""
        row = self.db.conn.execute(f"SELECT {_USER} FROM users WHERE name = ?", (name,)).fetchone()
        return dict(row) if row else None

    def user_by_id(self, user_id: str) -> dict | None:
        row = self.db.conn.execute(f"SELECT {_USER} FROM users WHERE id = ?", (user_id,)).fetchone()
        return dict(row) if row else None

    def password_hash(self, name: str) -> tuple[dict, str] | None:
        """The user called ``name`` and their password hash, for a sign-in; None if there is none."""
        row = self.db.conn.execute(f"SELECT {_USER}, password_hash FROM users WHERE name = ?", (name,)).fetchone()
        if row is None:
            return None
        user = dict(row)
        return user, user.pop("password_hash")

    def users(self) -> list[dict]:
        rows = self.db.conn.execute(f"SELECT {_USER} FROM users ORDER BY name COLLATE NOCASE")
        return [dict(row) for row in rows]

    def count(self, role: str | None = None) -> int:
        if role is None:
            return self.db.conn.execute("SELECT COUNT(*) FROM users").fetchone()[0]
        return self.db.conn.execute("SELECT COUNT(*) FROM users WHERE role = ?", (role,)).fetchone()[0]

    def set_password_hash(self, user_id: str, password_hash: str) -> None:
        """Store a new hash and end the user's web sessions (a changed password signs everyone out)."""
        with self.db.tx() as conn:
            conn.execute(
                "UPDATE users SET password_hash = ?, updated = ? WHERE id = ?", (password_hash, time.time(), user_id)
            )
            conn.execute("DELETE FROM web_sessions WHERE user_id = ?", (user_id,))

    def remove_user(self, user_id: str) -> None:
        """Delete the user; their keys and sessions go with them (ON DELETE CASCADE)."""
        with self.db.tx() as conn:
            conn.execute("DELETE FROM users WHERE id = ?", (user_id,))

    # -- API keys --------------------------------------------------------------------------------

    def add_key(self, key_id: str, user_id: str, name: str, secret_hash: str, expires: float | None) -> None:
        with self.db.tx() as conn:
            conn.execute(
                "INSERT INTO api_keys (id, user_id, name, secret_hash, created, expires) VALUES (?,?,?,?,?,?)",
                (key_id, user_id, name, secret_hash, time.time(), expires),
            )

    def key(self, key_id: str) -> dict | None:
        """The key with this id (its owner's name as ``user``), without its hash."""
        row = self.db.conn.execute(
            f"SELECT {_KEY} FROM api_keys k JOIN users u ON u.id = k.user_id WHERE k.id = ?", (key_id,)
        ).fetchone()
        return dict(row) if row else None

    def key_for_check(self, key_id: str) -> tuple[dict, dict, str] | None:
        """(key, its user, the secret's hash) for checking a key a caller sent; None for an unknown id."""
        row = self.db.conn.execute(
            f"SELECT {_KEY}, k.secret_hash, u.role AS user_role FROM api_keys k JOIN users u ON u.id = k.user_id"
            " WHERE k.id = ?",
            (key_id,),
        ).fetchone()
        if row is None:
            return None
        key = dict(row)
        user = {"id": key["user_id"], "name": key["user"], "role": key.pop("user_role")}
        return key, user, key.pop("secret_hash")

    def keys(self, user_id: str | None = None) -> list[dict]:
        """Keys, newest first: one user's, or everyone's (None)."""
        where, args = ("WHERE k.user_id = ?", (user_id,)) if user_id else ("", ())
        rows = self.db.conn.execute(
            f"SELECT {_KEY} FROM api_keys k JOIN users u ON u.id = k.user_id {where} ORDER BY k.created DESC", args
        )
        return [dict(row) for row in rows]

    def touch_key(self, key_id: str, when: float) -> None:
        with self.db.tx() as conn:
            conn.execute("UPDATE api_keys SET last_used = ? WHERE id = ?", (when, key_id))

    def revoke_key(self, key_id: str) -> None:
        with self.db.tx() as conn:
            conn.execute("UPDATE api_keys SET revoked = ? WHERE id = ? AND revoked IS NULL", (time.time(), key_id))

    # -- web sessions ----------------------------------------------------------------------------

    def add_session(self, session_id: str, user_id: str, secret_hash: str, expires: float) -> None:
        now = time.time()
        with self.db.tx() as conn:
            conn.execute("DELETE FROM web_sessions WHERE expires < ?", (now,))  # keep the table short
            conn.execute(
                "INSERT INTO web_sessions (id, user_id, secret_hash, created, expires) VALUES (?,?,?,?,?)",
                (session_id, user_id, secret_hash, now, expires),
            )

    def session_for_check(self, session_id: str) -> tuple[dict, float, str] | None:
        """(its user, when it expires, the secret's hash) for a session cookie; None for an unknown id."""
        row = self.db.conn.execute(
            "SELECT u.id, u.name, u.role, s.expires, s.secret_hash FROM web_sessions s"
            " JOIN users u ON u.id = s.user_id WHERE s.id = ?",
            (session_id,),
        ).fetchone()
        if row is None:
            return None
        return {"id": row["id"], "name": row["name"], "role": row["role"]}, row["expires"], row["secret_hash"]

    def remove_session(self, session_id: str) -> None:
        with self.db.tx() as conn:
            conn.execute("DELETE FROM web_sessions WHERE id = ?", (session_id,))
