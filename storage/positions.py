"""The positions repository: each position's journal (`position_events`), its projection (`positions`) and
its fills, written in one synchronous commit per group."""

from __future__ import annotations

from typing import Any

import asyncpg

from actors.messages import JournalEvent
from storage.rows import jsonable


async def append_events(conn: asyncpg.Connection,
                         items: list[tuple[int, tuple[JournalEvent, ...], dict[str, Any]]]) -> list[None]:
    """Journal events and projections of many positions (pid, events, projection) in one transaction: one
    synchronous commit — the events are on disk before any effect they announce is performed."""
    async with conn.transaction():
        # Idempotent: a retry after a lost acknowledgement finds its events already there.
        await conn.executemany(
            "INSERT INTO position_events (position_id, seq, kind, data) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            [(pid, e.seq, e.kind, e.data) for pid, events, _ in items for e in events],
        )
        fills = [(pid, e.seq, e.kind, e.data.get("reason"), f["side"], int(f["token_amount"]), int(f["quote_amount"]),
                  int(f["quoted_out"]), int(f["fee_quote"]), int(f["slippage_quote"]), f["price_impact"], f["route"], f["at"],
                  f.get("signature"))
                 for pid, events, _ in items for e in events if isinstance(f := e.data.get("fill"), dict)]
        if fills:  # schema/003: one row per fill, signed into PnL by side; 006: a live fill's transaction, booked once
            await conn.executemany(
                """INSERT INTO fills (position_id, seq, kind, reason, side, token_amount, quote_amount, quoted_out,
                                      fee_quote, slippage_quote, price_impact, route, filled_at, signature)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) ON CONFLICT (position_id, seq) DO NOTHING""", fills)
        await conn.executemany(
            """UPDATE positions SET status = $2, token_amount_open = $3, exit_quote_amount = $4,
                      realized_pnl_quote = $5, exit_reason = $6, updated_at = now(),
                      entry_quote_amount = coalesce($7, entry_quote_amount),
                      entry_token_amount = coalesce($8, entry_token_amount),
                      closed_at = CASE WHEN $2 IN ('closed', 'entry_failed') THEN coalesce(closed_at, now()) END
                WHERE id = $1""",
            [(pid, p["status"], p["token_amount_open"], p["exit_quote_amount"], p["realized_pnl_quote"], p["exit_reason"],
              p.get("entry_quote_amount"), p.get("entry_token_amount")) for pid, _, p in items],
        )
    return [None] * len(items)



async def journal(conn: asyncpg.Connection, pid: int) -> tuple[JournalEvent, ...]:
    rows = await conn.fetch("SELECT seq, kind, data FROM position_events WHERE position_id = $1 ORDER BY seq", pid)
    return tuple(JournalEvent(r["seq"], r["kind"], r["data"]) for r in rows)



async def open_positions(conn: asyncpg.Connection) -> list[tuple[int, tuple[JournalEvent, ...]]]:
    """Every position not closed, with its journal: one query, however many there are."""
    rows = await conn.fetch(
        """SELECT e.position_id, e.seq, e.kind, e.data FROM positions p JOIN position_events e ON e.position_id = p.id
            WHERE p.closed_at IS NULL ORDER BY e.position_id, e.seq""")
    journals: dict[int, list[JournalEvent]] = {}
    for r in rows:
        journals.setdefault(r["position_id"], []).append(JournalEvent(r["seq"], r["kind"], r["data"]))
    return [(pid, tuple(events)) for pid, events in journals.items()]



async def list_positions(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    rows = await conn.fetch("SELECT * FROM positions ORDER BY id")
    return [jsonable(r) for r in rows]



async def position_outcome(conn: asyncpg.Connection, position_id: int) -> dict[str, Any] | None:
    row = await conn.fetchrow(
        "SELECT mode, quote_mint, realized_pnl_quote, exit_reason FROM positions WHERE id = $1", position_id)
    return dict(row) if row is not None else None
