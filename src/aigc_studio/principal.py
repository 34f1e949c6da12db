"""Who the current work acts for: the one contract between authentication and everything it guards.

The HTTP server's auth layer (and the web UI's login) sets the principal for each request with
``acting_as``; storage and services read it with ``current()`` / ``owner()`` to record who made an item
and to show each user only their own. ``None`` means the local single-user studio (auth off): one
person owns everything, nothing is filtered. Context variables do not follow work handed to another
thread by hand (a job queue's worker), so such work captures ``current()`` when it is submitted and
runs under ``acting_as`` again. This module imports nothing of the studio.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Literal

Role = Literal["admin", "member"]


@dataclass(frozen=True)
class Principal:
    """A signed-in user: ``user_id`` is what items record as their owner."""

    user_id: str
    name: str
    role: Role = "member"

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


_current: ContextVar[Principal | None] = ContextVar("aigc_principal", default=None)


def current() -> Principal | None:
    """The user this work acts for, or None in the local single-user studio."""
    return _current.get()


def owner() -> str | None:
    """The owner id to record on, and filter by, for the current work; None: no filter (local)."""
    principal = _current.get()
    return principal.user_id if principal is not None else None


@contextmanager
def acting_as(principal: Principal | None) -> Iterator[Principal | None]:
    """Run the block as ``principal`` (None: as the local single user), restoring the previous one."""
    token = _current.set(principal)
    try:
        yield principal
    finally:
        _current.reset(token)
