"""A throwaway PostgreSQL server for the suite run against PostgreSQL (``AIGC_TEST_POSTGRES=1``).

Debian's PostgreSQL binaries (``initdb``, ``pg_ctl``) make a cluster in a temporary folder that listens
on a Unix socket there and on no TCP address; each AIGC_HOME gets a database of its own (the same home,
the same database, so a studio reopened on a home finds its records). The server stops at the end of
the session and its folder is removed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path


def _debian_bin() -> Path:
    """The newest of Debian's PostgreSQL versions installed (/usr/lib/postgresql/<major>/bin)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    return found[-1].parent if found else Path("/usr/lib/postgresql/15/bin")


BIN = Path(os.environ["AIGC_TEST_PG_BIN"]) if os.environ.get("AIGC_TEST_PG_BIN") else _debian_bin()
SELECTED = os.environ.get("AIGC_TEST_POSTGRES") == "1"


class PostgresServer:
    def __init__(self):
        if not (BIN / "initdb").exists():
            raise RuntimeError(
                f"AIGC_TEST_POSTGRES=1 needs PostgreSQL's initdb in {BIN} (Debian: apt-get install postgresql)"
            )
        self.dir = Path(tempfile.mkdtemp(prefix="aigc-pg-"))
        # PostgreSQL refuses to run as root: as root, the cluster belongs to the postgres user.
        self._as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self._as:
            shutil.chown(self.dir, "postgres")
        data = self.dir / "data"
        self._run(BIN / "initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        # No TCP (listen_addresses empty), the socket in our folder; durability is not the point here.
        options = f"-c listen_addresses='' -k {self.dir} -c max_connections=400 -c fsync=off"
        self._run(BIN / "pg_ctl", "-D", data, "-l", self.dir / "log", "-o", options, "-w", "start")
        self._databases: set[str] = set()

    def _run(self, *args) -> None:
        subprocess.run([*self._as, *map(str, args)], check=True, capture_output=True, cwd=self.dir)

    def url(self, name: str) -> str:
        return f"postgresql://postgres@/{name}?host={self.dir}"

    def database_for(self, home: Path | str) -> str:
        """The URL of the database of this AIGC_HOME, made on first use."""
        name = "aigc_" + hashlib.sha256(str(Path(home).resolve()).encode()).hexdigest()[:16]
        if name not in self._databases:
            import psycopg

            with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
                conn.execute(f"CREATE DATABASE {name}")
            self._databases.add(name)
        return self.url(name)

    def stop(self) -> None:
        self._run(BIN / "pg_ctl", "-D", self.dir / "data", "-m", "immediate", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)


_server: PostgresServer | None = None


def server() -> PostgresServer:
    """The session's server, started on first use."""
    global _server
    if _server is None:
        _server = PostgresServer()
    return _server


def stop() -> None:
    if _server is not None:
        _server.stop()


def env_for(home: Path | str) -> dict[str, str]:
    """The environment that points a studio in ``home`` at its database: AIGC_DATABASE_URL when the suite
    runs against PostgreSQL, nothing otherwise (the SQLite file under the home)."""
    return {"AIGC_DATABASE_URL": server().database_for(home)} if SELECTED else {}


def stored_bytes(home: Path | str) -> bytes:
    """All that the studio in ``home`` keeps in its database, to look for what must never be stored: the
    SQLite file (and its WAL), or on PostgreSQL every row of every table, as text."""
    if not SELECTED:
        db = Path(home) / "studio.db"
        wal = db.with_name("studio.db-wal")
        return db.read_bytes() + (wal.read_bytes() if wal.exists() else b"")
    import psycopg

    with psycopg.connect(server().database_for(home)) as conn:
        tables = [r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
        rows = [r[0] for t in tables for r in conn.execute(f"SELECT t::text FROM {t} t")]
    return "\n".join(rows).encode()
