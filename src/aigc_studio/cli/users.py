"""``aigc users`` and ``aigc keys``: the users of a team server and their API keys.

They work on the database under AIGC_HOME directly, with every right: whoever can run them on the
server can read its files anyway. A key is printed once, when it is made; only its hash is kept.
"""

from __future__ import annotations

import getpass
import sys
import time

import click


def user_service():
    """The user service on AIGC_HOME's database alone (no models, engines or labels to set up)."""
    from ..config import load_config
    from ..services.users import UserService
    from ..storage.db import Database
    from ..storage.users import UserStore

    return UserService(UserStore(Database(load_config().database)))


def ownership_service():
    """What the local studio made before there were users, on AIGC_HOME alone."""
    from ..config import load_config
    from ..services.ownership import OwnershipService
    from ..storage.db import Database

    config = load_config()
    return OwnershipService(Database(config.database), config.home)


def _items(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {table.replace('_', ' ')}" for table, n in counts.items() if n)


def _password(from_stdin: bool, name: str) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise click.UsageError("--password-stdin read an empty line; pipe the password in")
        return password
    password = getpass.getpass(f"Password for {name}: ")
    if password != getpass.getpass("Again: "):
        raise click.ClickException("the two passwords differ; nothing was changed")
    return password


def _when(ts: float | None, never: str = "-") -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts)) if ts else never


def register(cli: click.Group) -> None:
    @cli.group()
    def users() -> None:
        """Users of a team server: add, list, remove, change a password."""

    @users.command("add")
    @click.argument("name")
    @click.option("--admin", is_flag=True, help="Role admin (manages users, models, pulls and settings).")
    @click.option("--password-stdin", is_flag=True, help="Read the password from standard input (one line).")
    def users_add(name, admin, password_stdin):
        """Add a user (role member unless --admin); asks for the password twice."""
        service = user_service()
        user = service.add(name, _password(password_stdin, name), admin=admin)
        click.echo(f"added {user['name']} ({user['role']}, id {user['id']})")
        local = _items(ownership_service().local_items())
        if local and admin:
            # Items made before there were users are no one's on a team server: hidden until adopted.
            click.echo(
                f"the local studio's items have no owner and stay hidden from every user ({local}); "
                f"`aigc users adopt {user['name']}` gives them to {user['name']}",
                err=True,
            )

    @users.command("adopt")
    @click.argument("name")
    def users_adopt(name):
        """Give the items made before there were users (history, images, documents, code, comparisons,
        arena battles, templates, styles) to NAME; other users' items are left alone."""
        user = user_service().principal_named(name)
        if user is None:
            raise click.ClickException(f"there is no user called {name!r} (see `aigc users list`)")
        adopted = _items(ownership_service().adopt_local_items(user.user_id))
        click.echo(f"{user.name} now owns {adopted}" if adopted else "there were no items without an owner")

    @users.command("list")
    def users_list():
        """Every user with their role."""
        for user in user_service().users():
            click.echo(f"{user['name']:<24} {user['role']:<7} {user['id']}  added {_when(user['created'])}")

    @users.command("rm")
    @click.argument("name")
    def users_rm(name):
        """Remove a user, with their API keys and web sessions."""
        user = user_service().remove(name)
        click.echo(f"removed {user['name']}")

    @users.command("passwd")
    @click.argument("name")
    @click.option("--password-stdin", is_flag=True, help="Read the password from standard input (one line).")
    def users_passwd(name, password_stdin):
        """Set a user's password (their web sessions end)."""
        service = user_service()
        service.set_password(name, _password(password_stdin, name))
        click.echo(f"password of {name} changed")

    @cli.group()
    def keys() -> None:
        """API keys (Authorization: Bearer): create, list, revoke."""

    @keys.command("create")
    @click.option("--user", "user", help="Whose key it is (may be left out while there is only one user).")
    @click.option("--name", "label", default="", help="A label (the machine or script that uses it).")
    @click.option("--expires", "days", type=click.IntRange(1, 3650), help="Refused after this many days.")
    def keys_create(user, label, days):
        """Make an API key and print it (the only time it is shown; only its hash is kept)."""
        new = user_service().create_key(user, label, days)
        until = f", expires {_when(new.expires)}" if new.expires else ""
        click.echo(f"key {new.id} for {new.user}{until}; copy it now, it is not shown again:", err=True)
        click.echo(new.key)

    @keys.command("list")
    @click.option("--user", help="Only this user's keys.")
    def keys_list(user):
        """Keys (never their secrets): id, user, name, created, expires, last used, state."""
        now = time.time()
        for k in user_service().keys(user):
            state = "revoked" if k["revoked"] else "expired" if k["expires"] and k["expires"] <= now else "active"
            click.echo(
                f"{k['id']}  {k['user']:<16} {k['name'] or '-':<16} created {_when(k['created'])}  "
                f"expires {_when(k['expires'], 'never')}  used {_when(k['last_used'], 'never')}  {state}"
            )

    @keys.command("revoke")
    @click.argument("key_id")
    def keys_revoke(key_id):
        """Revoke a key by its id (as `aigc keys list` shows it); it is refused from then on."""
        key = user_service().revoke_key(key_id)
        click.echo(f"revoked {key['id']} ({key['user']}, {key['name'] or 'no name'})")
