"""Who may do what: the one check for operations that only an admin may run on a team server.

In the local single-user studio (no principal: auth off) the person at the machine owns everything, so
every check passes. On a team server, operations that change the server for everyone (adding a model by a
server path, pulls, server settings, other users and their keys) need the ``admin`` role. The check
lives where the operation is (a service, the config writer), so the APIs, the web UI and any later shell
get it alike.
"""

from __future__ import annotations

from . import principal
from .errors import Forbidden


def require_admin(action: str) -> None:
    """Raise Forbidden (403) naming ``action`` and the role it needs, unless the caller may: an admin,
    or the local studio (auth off)."""
    who = principal.current()
    if who is not None and not who.is_admin:
        raise Forbidden(f"{action} needs the admin role; you are signed in as {who.name!r} (role {who.role})")


def may_act_for(user_id: str) -> bool:
    """Whether the caller may manage things that belong to ``user_id`` (their API keys): the user
    themself, an admin, or the local studio."""
    who = principal.current()
    return who is None or who.is_admin or who.user_id == user_id
