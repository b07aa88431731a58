"""The risk repository: what the risk actor rebuilds from (open exposure, opens, closes), and its breakers
(the current state in `breakers`, the history in `breaker_events`)."""

from __future__ import annotations

from typing import Any

import asyncpg

from storage.rows import jsonable

BREAKERS_CHANNEL = "walltrack_breakers"



async def risk_snapshot(conn: asyncpg.Connection) -> dict[str, Any]:
    """What actors.risk.rebuild needs (times as unix seconds)."""
    open_rows = await conn.fetch(
        """SELECT id, wallet, token_mint, quote_mint, entry_quote_amount FROM positions
            WHERE mode <> 'shadow' AND closed_at IS NULL ORDER BY id""")
    opened = await conn.fetch(
        "SELECT extract(epoch FROM opened_at)::float8 AS at FROM positions WHERE mode <> 'shadow' AND opened_at > now() - interval '2 days'")
    closes = await conn.fetch(
        """SELECT extract(epoch FROM closed_at)::float8 AS at, wallet, token_mint, quote_mint, realized_pnl_quote, exit_reason
             FROM positions WHERE mode <> 'shadow' AND closed_at IS NOT NULL AND realized_pnl_quote IS NOT NULL
            ORDER BY closed_at, id""")
    live_opened = await conn.fetch(
        """SELECT extract(epoch FROM opened_at)::float8 AS at, entry_quote_amount FROM positions
            WHERE mode = 'live' AND opened_at > now() - interval '2 days'""")
    breakers = await conn.fetch(
        """SELECT name, state, reason, extract(epoch FROM tripped_at)::float8 AS tripped_at,
                  extract(epoch FROM until)::float8 AS until, extract(epoch FROM reset_at)::float8 AS reset_at
             FROM breakers""")
    return {
        "open": [(r["id"], r["wallet"], r["token_mint"], r["quote_mint"], int(r["entry_quote_amount"])) for r in open_rows],
        "opened": [r["at"] for r in opened],
        "live": [r["id"] for r in await conn.fetch("SELECT id FROM positions WHERE mode = 'live' AND closed_at IS NULL")],
        "live_opened": [(r["at"], int(r["entry_quote_amount"])) for r in live_opened],
        "closes": [(r["at"], r["wallet"], r["token_mint"], r["quote_mint"], int(r["realized_pnl_quote"]), r["exit_reason"])
                   for r in closes],
        "breakers": [dict(r) for r in breakers],
    }



async def record_breakers(conn: asyncpg.Connection, events: tuple[dict[str, Any], ...]) -> None:
    """Trips and resets: the `breakers` row is the current state, `breaker_events` the history (idempotent)."""
    async with conn.transaction():
        for ev in events:
            if ev["kind"] == "tripped":
                await conn.execute(
                    """INSERT INTO breakers (name, state, reason, tripped_at, until)
                       VALUES ($1, 'tripped', $2, to_timestamp($3), to_timestamp($4))
                       ON CONFLICT (name) DO UPDATE SET state = 'tripped', reason = EXCLUDED.reason,
                              tripped_at = EXCLUDED.tripped_at, until = EXCLUDED.until, reset_at = NULL, reset_by = NULL,
                              updated_at = now()""",
                    ev["name"], ev["reason"], ev["trip_at"], ev["until"])
            else:
                await conn.execute(
                    """UPDATE breakers SET state = 'clear', reset_at = to_timestamp($2), reset_by = $3, updated_at = now()
                        WHERE name = $1 AND state = 'tripped' AND tripped_at = to_timestamp($4)""",
                    ev["name"], ev["at"], ev["by"], ev["trip_at"])
            await conn.execute(
                """INSERT INTO breaker_events (name, kind, trip_at, at, by, reason, until)
                   VALUES ($1, $2, to_timestamp($3), to_timestamp($4), $5, $6, to_timestamp($7))
                   ON CONFLICT (name, kind, trip_at) DO NOTHING""",
                ev["name"], ev["kind"], ev["trip_at"], ev["at"], ev["by"], ev["reason"], ev["until"])



async def list_breakers(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    rows = await conn.fetch("SELECT name, state, reason, tripped_at, until, reset_at, reset_by FROM breakers ORDER BY name")
    return [jsonable(r) for r in rows]



async def reset_breaker(conn: asyncpg.Connection, name: str) -> bool:
    """Operator reset: clear the row, record the event, tell the running bot. False when it is not tripped."""
    async with conn.transaction():
        row = await conn.fetchrow(
            """UPDATE breakers SET state = 'clear', reset_at = now(), reset_by = 'operator', updated_at = now()
                WHERE name = $1 AND state = 'tripped' RETURNING tripped_at, reason, until""", name)
        if row is None:
            return False
        await conn.execute(
            """INSERT INTO breaker_events (name, kind, trip_at, at, by, reason, until)
               VALUES ($1, 'reset', $2, now(), 'operator', $3, $4) ON CONFLICT (name, kind, trip_at) DO NOTHING""",
            name, row["tripped_at"], row["reason"], row["until"])
        await conn.execute("SELECT pg_notify($1, $2)", BREAKERS_CHANNEL, name)
    return True
