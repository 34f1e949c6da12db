"""``aigc db copy``: move a studio's records from one database to another (the local SQLite file to a
team server's PostgreSQL, or back). The files under AIGC_HOME (images, models, keys) are not in the
database: a server using the copy needs the same AIGC_HOME folder, or a copy of it."""

from __future__ import annotations

import click


def _shown(target: str) -> str:
    """A database named for the terminal: a URL without its password."""
    from urllib.parse import urlsplit

    if "://" not in target:
        return target
    parts = urlsplit(target)
    if parts.password is None:
        return target
    return parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@", 1)).geturl()


def register(cli: click.Group) -> None:
    @cli.group()
    def db() -> None:
        """The studio's database (SQLite, or PostgreSQL through database_url)."""

    @db.command("copy")
    @click.option(
        "--to",
        "target",
        required=True,
        help="An empty database: postgresql://user@host/name, or a SQLite file's path.",
    )
    @click.option(
        "--from",
        "source",
        default=None,
        help="Where the records are now (default: this studio's database, database_url or AIGC_HOME/studio.db).",
    )
    def db_copy(target, source):
        """Copy every record (history, images' records, documents, code, comparisons, battles, users
        and keys, jobs, options) into an empty database, in one transaction; the source is not changed.
        Then set database_url (AIGC_DATABASE_URL) to the new database."""
        from ..config import load_config
        from ..errors import StudioError
        from ..storage.copy import copy_database
        from ..storage.db import Database

        source = source or str(load_config().database)
        if source == target:
            raise click.UsageError("--from and --to name the same database")
        try:
            counts = copy_database(
                Database(source),
                Database(target),
                progress=lambda table, n: click.echo(f"  {table:<24} {n:>8}", err=True),
            )
        except StudioError as exc:
            raise click.ClickException(str(exc)) from None
        click.echo(
            f"copied {sum(counts.values())} rows of {len(counts)} tables from {_shown(source)} to {_shown(target)}"
        )
