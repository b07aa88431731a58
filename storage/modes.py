"""The global trading mode (schema/005): a runtime setting the panel and the CLI change, with its history."""

from __future__ import annotations

from typing import Any

import asyncpg

from storage.rows import jsonable

TRADING_MODE_CHANNEL = "walltrack_trading_mode"



async def trading_mode(conn: asyncpg.Connection) -> dict[str, Any] | None:
    """The operator's global trading mode, {"mode", "updated_at", "updated_by"}, or None (TRADING_MODE in force)."""
    row = await conn.fetchrow(
        "SELECT value AS mode, updated_at, updated_by FROM runtime_settings WHERE key = 'trading_mode'")
    return None if row is None else jsonable(row)



async def set_trading_mode(conn: asyncpg.Connection, mode: str, by: str) -> str | None:
    """Store the global mode, record the change, tell the running bot. Returns the previous stored mode.
    The caller has refused what must be refused (live, while it does not exist): this only stores."""
    async with conn.transaction():
        old = await conn.fetchval(
            "SELECT value FROM runtime_settings WHERE key = 'trading_mode' FOR UPDATE")
        await conn.execute(
            """INSERT INTO runtime_settings (key, value, updated_by) VALUES ('trading_mode', $1, $2)
               ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_by = EXCLUDED.updated_by, updated_at = now()""",
            mode, by)
        await conn.execute(
            "INSERT INTO runtime_setting_events (key, old_value, new_value, by) VALUES ('trading_mode', $1, $2, $3)",
            old, mode, by)
        await conn.execute("SELECT pg_notify($1, $2)", TRADING_MODE_CHANNEL, mode)
    return old
