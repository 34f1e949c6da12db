"""Users, roles, passwords, API keys and web sessions: who a caller is, for a studio shared by a team.

A password is kept as its Argon2id hash (argon2-cffi's defaults; a hash made with older parameters is
redone at the next sign-in). An API key is ``aigc-<id>-<secret>``: the id finds the key's record, the
secret is 256 random bits kept only as its SHA-256. A web session cookie is made the same way. Nothing
here writes a secret, or a hash of one, to a log line or an error message.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from ..access import may_act_for, require_admin
from ..config import is_loopback
from ..errors import Conflict, InvalidRequest, NotFound, Unauthorized
from ..principal import Principal, current
from ..storage.history import new_id
from ..storage.users import UserStore

__all__ = ["KEY_PREFIX", "SESSION_COOKIE", "NewKey", "UserService"]

KEY_PREFIX = "aigc-"
SESSION_COOKIE = "aigc_session"
SESSION_SECONDS = 14 * 86400
MIN_PASSWORD = 8
MAX_PASSWORD = 1024
# No ":" (HTTP basic auth splits user:password at the first one) and nothing a shell or URL must quote.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_ID = re.compile(r"[0-9a-f]{16}")
# How long a checked user:password pair is remembered (see _basic_cache).
BASIC_CACHE_SECONDS = 60


def _digest(secret: str) -> str:
    # SHA-256, not Argon2, for keys and session tokens: their secret is 256 random bits, so no guess or
    # precomputed table gets anywhere near one, and a slow hash would only cost every request its time.
    # Passwords are chosen by people, hence Argon2 for those.
    return hashlib.sha256(secret.encode()).hexdigest()


def _split(token: str, prefix: str) -> tuple[str, str] | None:
    """(id, secret) of a token ``<prefix><16 hex id>-<secret>``, or None when it is not one."""
    if not token.startswith(prefix):
        return None
    key_id, dash, secret = token[len(prefix) :].partition("-")
    if not dash or not _ID.fullmatch(key_id) or not 20 <= len(secret) <= 100:
        return None
    return key_id, secret


def _make_token(prefix: str) -> tuple[str, str, str]:
    """A new (id, the whole token, the secret's digest)."""
    token_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
    return token_id, f"{prefix}{token_id}-{secret}", _digest(secret)


@dataclass(frozen=True)
class NewKey:
    """A key just made: ``key`` is the only time its secret is ever shown."""

    id: str
    key: str
    name: str
    user: str
    expires: float | None


class UserService:
    def __init__(self, store: UserStore):
        self.store = store
        self.hasher = PasswordHasher()
        self._decoy: str | None = None  # made at the first sign-in (see sign_in)
        # Argon2 is slow on purpose (tens of ms and 64 MiB per check), and A1111 clients send the password
        # with every request (webuiapi polls progress several times a second): a pair checked in the last
        # BASIC_CACHE_SECONDS is remembered, by its SHA-256, and forgotten when a password changes here.
        self._basic_cache: dict[str, tuple[Principal, float]] = {}
        self._lock = threading.Lock()

    # -- users -----------------------------------------------------------------------------------

    def check_can_serve(self, host: str, auth_required: bool) -> None:
        """Refuse (InvalidRequest) to serve with sign-in required but no user who could sign in: on an
        address others reach, that would be a server no one can use, or, without auth, anyone's."""
        if auth_required and self.store.count() == 0:
            why = (
                "setting auth is on"
                if is_loopback(host)
                else "sign-in is required there (setting auth; only a loopback address may run without it)"
            )
            raise InvalidRequest(
                f"refusing to serve on {host}: {why} and there are no users yet. Create the first admin with"
                " `aigc users add NAME --admin`, then start the server again"
                " (or serve on 127.0.0.1 for yourself alone)."
            )

    def add(self, name: str, password: str, *, admin: bool = False) -> dict:
        """Add a user (role admin or member); Conflict if the name is taken (letter case aside)."""
        require_admin("adding users")
        name = name.strip()
        if not _NAME.fullmatch(name):
            raise InvalidRequest(
                f"user name must be 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit;"
                f" got {name!r}",
                param="name",
            )
        self._check_password(password)
        if self.store.user(name) is not None:
            raise Conflict(f"there is already a user called {name!r}", param="name")
        user_id = new_id("usr")
        self.store.add_user(user_id, name, "admin" if admin else "member", self.hasher.hash(password))
        return self.store.user_by_id(user_id)

    def users(self) -> list[dict]:
        """Every user (id, name, role, created, updated), by name."""
        require_admin("listing users")
        return self.store.users()

    def remove(self, name: str) -> dict:
        """Delete a user with their keys and sessions. The last admin stays: without one, no one could
        manage the server but through the CLI."""
        require_admin("removing users")
        user = self._user(name)
        if user["role"] == "admin" and self.store.count("admin") == 1:
            raise Conflict(f"{user['name']!r} is the only admin; add another admin first", param="name")
        self.store.remove_user(user["id"])
        self._forget_basic()
        return user

    def set_password(self, name: str, password: str) -> None:
        """Change a password (one's own, or anyone's as an admin); signs the user out of the web UI."""
        user = self._user(name)
        if not may_act_for(user["id"]):
            require_admin("changing another user's password")
        self._check_password(password)
        self.store.set_password_hash(user["id"], self.hasher.hash(password))
        self._forget_basic()

    def sign_in(self, name: str, password: str) -> Principal:
        """The user whose name and password these are; Unauthorized (saying neither which) otherwise."""
        found = self.store.password_hash(name.strip()) if _NAME.fullmatch(name.strip()) else None
        if self._decoy is None:
            # Verified against when the name is unknown, so that a wrong name takes as long as a wrong
            # password and sign-in does not tell which names exist.
            self._decoy = self.hasher.hash(secrets.token_urlsafe(16))
        try:
            self.hasher.verify(found[1] if found else self._decoy, password)
        except (VerificationError, InvalidHashError, UnicodeEncodeError):  # the last: a lone surrogate
            found = None
        if found is None:
            raise Unauthorized("wrong user name or password")
        user, stored = found
        if self.hasher.check_needs_rehash(stored):
            self.store.set_password_hash(user["id"], self.hasher.hash(password))
        return _principal(user)

    def principal_named(self, name: str) -> Principal | None:
        """The signed-in user called ``name`` as their Principal (role as stored now); None if gone."""
        user = self.store.user(name)
        return _principal(user) if user else None

    # -- API keys --------------------------------------------------------------------------------

    def create_key(self, user: str | None = None, name: str = "", expires_days: int | None = None) -> NewKey:
        """A new key for ``user`` (default: the caller). Its secret is in the result and nowhere else."""
        owner = self._key_owner(user)
        if not may_act_for(owner["id"]):
            require_admin("creating keys for another user")
        if expires_days is not None and not 1 <= expires_days <= 3650:
            raise InvalidRequest(f"expires_days must be from 1 to 3650, got {expires_days}", param="expires_days")
        name = name.strip()
        if len(name) > 100:
            raise InvalidRequest(f"a key's name is at most 100 characters, got {len(name)}", param="name")
        if not _encodable(name):
            raise InvalidRequest("a key's name must be text (it holds a lone UTF-16 surrogate)", param="name")
        key_id, token, digest = _make_token(KEY_PREFIX)
        expires = time.time() + expires_days * 86400 if expires_days else None
        self.store.add_key(key_id, owner["id"], name, digest, expires)
        return NewKey(id=key_id, key=token, name=name, user=owner["name"], expires=expires)

    def keys(self, user: str | None = None) -> list[dict]:
        """Keys, newest first, without secrets: the caller's own; an admin (or the CLI) sees everyone's,
        or ``user``'s."""
        if user is not None:
            owner = self._user(user)
            if not may_act_for(owner["id"]):
                require_admin("listing another user's keys")
            return self.store.keys(owner["id"])
        me = current()
        return self.store.keys(None if me is None or me.is_admin else me.user_id)

    def revoke_key(self, key_id: str) -> dict:
        """Revoke a key (one's own, or anyone's as an admin); it is refused from then on."""
        # The id may come with the key's prefix, or as the start of a whole key: only the id is ever echoed.
        wanted = key_id.strip().removeprefix(KEY_PREFIX).split("-")[0]
        if not _ID.fullmatch(wanted):
            raise InvalidRequest("an API key id is 16 hex digits, as `aigc keys list` (or GET /api/keys) shows")
        key = self.store.key(wanted)
        if key is not None and not may_act_for(key["user_id"]):
            key = None  # to a member, another user's key is exactly a missing one: its id confirms nothing
        if key is None:
            raise NotFound(f"no API key with id {wanted}; `aigc keys list` (or GET /api/keys) shows them")
        self.store.revoke_key(key["id"])
        return self.store.key(key["id"])

    def principal_for_key(self, token: str) -> Principal:
        """The user a key sent by a caller belongs to; Unauthorized saying why it is refused otherwise."""
        parts = _split(token.strip(), KEY_PREFIX)
        found = self.store.key_for_check(parts[0]) if parts else None
        # Compared in constant time, and compared even for an unknown id, so timing tells nothing.
        expected = found[2] if found else _digest("")
        matches = hmac.compare_digest(expected, _digest(parts[1] if parts else token))
        if found is None or not matches:
            raise Unauthorized("the API key is not valid; create one with `aigc keys create` (or POST /api/keys)")
        key, user, _ = found
        now = time.time()
        if key["revoked"] is not None:
            raise Unauthorized(f"the API key {key['id']} was revoked; create a new one")
        if key["expires"] is not None and key["expires"] <= now:
            raise Unauthorized(f"the API key {key['id']} expired on {_when(key['expires'])}; create a new one")
        if key["last_used"] is None or now - key["last_used"] > 60:  # one write a minute at most
            self.store.touch_key(key["id"], now)
        return _principal(user)

    def principal_for_basic(self, name: str, password: str) -> Principal:
        """HTTP basic auth (A1111's --api-auth): sign_in, remembered briefly (see __init__)."""
        pair = hashlib.sha256(f"{name}\0{password}".encode()).hexdigest()
        now = time.monotonic()
        with self._lock:
            cached = self._basic_cache.get(pair)
        if cached and cached[1] > now:
            return cached[0]
        who = self.sign_in(name, password)
        with self._lock:
            self._basic_cache = {k: v for k, v in self._basic_cache.items() if v[1] > now}
            self._basic_cache[pair] = (who, now + BASIC_CACHE_SECONDS)
        return who

    # -- web sessions ----------------------------------------------------------------------------

    def start_session(self, who: Principal) -> str:
        """A new web session for a signed-in user: the cookie's value (shown to no one else)."""
        session_id, token, digest = _make_token("")
        self.store.add_session(session_id, who.user_id, digest, time.time() + SESSION_SECONDS)
        return token

    def principal_for_session(self, cookie: str) -> Principal | None:
        """The user of a session cookie; None when it is unknown, ended or expired."""
        parts = _split(cookie, "")
        found = self.store.session_for_check(parts[0]) if parts else None
        expected = found[2] if found else _digest("")
        if not hmac.compare_digest(expected, _digest(parts[1] if parts else cookie)) or found is None:
            return None
        user, expires, _ = found
        return _principal(user) if expires > time.time() else None

    def end_session(self, cookie: str) -> None:
        parts = _split(cookie, "")
        if parts and self.principal_for_session(cookie) is not None:
            self.store.remove_session(parts[0])

    # -- helpers ---------------------------------------------------------------------------------

    def _user(self, name: str) -> dict:
        user = self.store.user(name.strip())
        if user is None:
            raise NotFound(f"there is no user called {name!r}", param="name")
        return user

    def _key_owner(self, user: str | None) -> dict:
        if user is not None:
            return self._user(user)
        me = current()
        if me is None:
            everyone = self.store.users()
            if len(everyone) == 1:
                return everyone[0]
            if not everyone:
                raise NotFound("there are no users to make a key for; add one first: `aigc users add NAME --admin`")
            # Well formed, but the local studio has no signed-in user to default to among several.
            raise Conflict(
                f"there are {len(everyone)} users: say whose key it is (--user NAME, or user in the request)",
                param="user",
            )
        return self.store.user_by_id(me.user_id) or self._user(me.name)

    @staticmethod
    def _check_password(password: str) -> None:
        if not _encodable(password):
            raise InvalidRequest("a password must be text (it holds a lone UTF-16 surrogate)", param="password")
        if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
            raise InvalidRequest(
                f"a password must be {MIN_PASSWORD} to {MAX_PASSWORD} characters, got {len(password)}",
                param="password",
            )

    def _forget_basic(self) -> None:
        with self._lock:
            self._basic_cache.clear()


def _principal(user: dict) -> Principal:
    return Principal(user_id=user["id"], name=user["name"], role=user["role"])


def _encodable(text: str) -> bool:
    # JSON may carry a lone surrogate ("\\ud800"), which neither UTF-8 nor SQLite can hold.
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ts))
