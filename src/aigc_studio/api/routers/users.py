"""Users and API keys over HTTP (/api/me, /api/users, /api/keys): what ``aigc users`` and ``aigc keys`` do,
for people who reach the team server but not its shell. Managing users, and other users' keys, needs the
admin role; everyone manages their own keys."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Path, Query
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from ... import principal
from ...studio import Studio
from ..deps import get_studio
from ..openapi import ErrorBody, errors

router = APIRouter(prefix="/api", tags=["users"])

_NAME = {"pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"}
_ADMIN = {403: "The caller's role is member and this needs admin (the message says so)."}
_MISSING = {404: "No such user or key (the message names it)."}
_TOO_LARGE = {413: "The request body is over the server's limit (max_body_mb)."}
_BAD = {400: "A field is missing, of the wrong type or out of range; the message names it and what is allowed."}


class Me(BaseModel):
    """Who the request runs as."""

    signed_in: bool = Field(description="false: the local studio (auth off), where one person owns everything.")
    user_id: str | None
    name: str | None
    role: Literal["admin", "member"] | None


class User(BaseModel):
    id: str
    name: str
    role: Literal["admin", "member"]
    created: float
    updated: float


class NewUser(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Letters, digits, '.', '_' or '-'; unique, letter case aside.", **_NAME)
    password: str = Field(min_length=8, max_length=1024)
    role: Literal["admin", "member"] = "member"


class NewPassword(BaseModel):
    model_config = ConfigDict(extra="forbid")

    password: str = Field(min_length=8, max_length=1024)


class ApiKey(BaseModel):
    """A key as listed: never its secret."""

    id: str = Field(description="Its id: the 16 hex digits after 'aigc-' in the key.")
    user: str = Field(description="Whose key it is.")
    name: str
    created: float
    expires: float | None = Field(description="Unix time; null: never.")
    last_used: float | None = Field(description="Unix time, to the minute; null: never used.")
    revoked: float | None = Field(description="Unix time; null: in force.")


class KeyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field("", max_length=100, description="A label for you (the machine or script that uses it).")
    expires_days: int | None = Field(None, ge=1, le=3650, description="Refused after this many days; null: never.")
    user: str | None = Field(None, description="Whose key (admins only, for another user); default: yours.", **_NAME)


class CreatedKey(BaseModel):
    """A new key. ``key`` is shown this once and stored only as a hash: copy it now."""

    id: str
    key: str = Field(description="aigc-<id>-<secret>: send it as 'Authorization: Bearer <key>'.")
    name: str
    user: str
    expires: float | None


def _key(row: dict) -> ApiKey:
    return ApiKey(**{k: row[k] for k in ApiKey.model_fields})


@router.get("/me")
def me() -> Me:
    """The signed-in user (from the key, password or session the request carried)."""
    who = principal.current()
    if who is None:
        return Me(signed_in=False, user_id=None, name=None, role=None)
    return Me(signed_in=True, user_id=who.user_id, name=who.name, role=who.role)


@router.get("/users", responses=errors(ErrorBody, _ADMIN))
def list_users(studio: Studio = Depends(get_studio)) -> list[User]:
    """Every user (admins only)."""
    return studio.users.users()


@router.post(
    "/users", status_code=201, responses=errors(ErrorBody, {**_BAD, **_ADMIN, **_TOO_LARGE, 409: "The name is taken."})
)
async def add_user(body: NewUser, studio: Studio = Depends(get_studio)) -> User:
    """Add a user (admins only)."""
    return await run_in_threadpool(studio.users.add, body.name, body.password, admin=body.role == "admin")


@router.delete(
    "/users/{name}",
    responses=errors(ErrorBody, {**_BAD, **_ADMIN, **_MISSING, 409: "The user is the only admin."}),
)
def remove_user(name: str = Path(**_NAME), studio: Studio = Depends(get_studio)) -> User:
    """Remove a user with their keys and sessions (admins only; the last admin stays)."""
    return studio.users.remove(name)


@router.put(
    "/users/{name}/password", status_code=204, responses=errors(ErrorBody, {**_BAD, **_ADMIN, **_MISSING, **_TOO_LARGE})
)
async def set_password(body: NewPassword, name: str = Path(**_NAME), studio: Studio = Depends(get_studio)) -> None:
    """Change a password: your own, or anyone's as an admin. Their web sessions end."""
    await run_in_threadpool(studio.users.set_password, name, body.password)


@router.get("/keys", responses=errors(ErrorBody, {**_BAD, **_ADMIN, **_MISSING}))
def list_keys(
    user: str | None = Query(None, description="Only this user's keys (admins: anyone's).", **_NAME),
    studio: Studio = Depends(get_studio),
) -> list[ApiKey]:
    """Your keys; an admin sees everyone's. Never a key's secret."""
    return [_key(row) for row in studio.users.keys(user)]


_WHOSE = {
    409: "No user named and none signed in (the local studio) while there are several users: say whose key.",
}


@router.post(
    "/keys", status_code=201, responses=errors(ErrorBody, {**_BAD, **_ADMIN, **_MISSING, **_WHOSE, **_TOO_LARGE})
)
def create_key(body: KeyRequest, studio: Studio = Depends(get_studio)) -> CreatedKey:
    """A new API key (yours, or another user's as an admin), shown once."""
    new = studio.users.create_key(body.user, body.name, body.expires_days)
    return CreatedKey(id=new.id, key=new.key, name=new.name, user=new.user, expires=new.expires)


@router.delete(
    "/keys/{key_id}",
    responses=errors(ErrorBody, {**_BAD, **_ADMIN, **_MISSING}),
)
def revoke_key(
    key_id: str = Path(description="The key's id, as listed.", pattern="^[0-9a-f]{16}$"),
    studio: Studio = Depends(get_studio),
) -> ApiKey:
    """Revoke a key (yours, or anyone's as an admin); it is refused from then on."""
    return _key(studio.users.revoke_key(key_id))
