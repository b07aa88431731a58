"""Raw SQL migrations: applied in order, recorded, each in its own transaction."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import asyncpg
import pytest

from tests.conftest import sql
from storage.db import SCHEMA_DIR, migrate, migration_status


def run(url: str, fn, *args):  # noqa: ANN001, ANN201
    async def go():  # noqa: ANN202
        conn = await asyncpg.connect(url)
        try:
            return await fn(conn, *args)
        finally:
            await conn.close()

    return asyncio.run(go())


def test_migrate_applies_then_does_nothing(db_url: str) -> None:
    assert [m["state"] for m in run(db_url, migration_status)] == ["pending"] * len(list(SCHEMA_DIR.glob("*.sql")))
    applied = run(db_url, migrate)
    assert applied and applied == sorted(applied) and applied[0] == "001"
    assert run(db_url, migrate) == []
    status = run(db_url, migration_status)
    assert all(m["state"] == "applied" and m["checksum_ok"] for m in status)
    tables = {r["tablename"] for r in sql(db_url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert {"wallets", "webhook_inbox", "signals", "positions", "position_events", "schema_migrations"} <= tables


def test_failed_migration_leaves_nothing_behind(db_url: str, tmp_path: Path) -> None:
    schema = tmp_path / "schema"
    shutil.copytree(SCHEMA_DIR, schema)
    (schema / "900_half_good.sql").write_text("CREATE TABLE half_good (id int);\nSELECT * FROM no_such_table;\n")
    with pytest.raises(asyncpg.UndefinedTableError):
        run(db_url, migrate, schema)
    status = {m["version"]: m["state"] for m in run(db_url, migration_status, schema)}
    assert status["001"] == "applied" and status["900"] == "pending"
    assert not sql(db_url, "SELECT 1 FROM pg_tables WHERE tablename = 'half_good'")


def test_bad_migration_file_name_is_refused(tmp_path: Path, db_url: str) -> None:
    (tmp_path / "1_oops.sql").write_text("SELECT 1")
    with pytest.raises(RuntimeError, match="NNN_description.sql"):
        run(db_url, migrate, tmp_path)
