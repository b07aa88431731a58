"""One position's page: the position as shown, its journal, and its price path — every trade seen on its token
(the leaders' effective prices) and our own fills (the `fills` projection), with the entry and exits marked."""

from __future__ import annotations

import time
from typing import Any

import asyncpg

from ui.queries.positions import LEVEL_COLUMNS, Marks, marks, position_view
from ui.queries.units import labels, unit_price, utc

_FILLS = """
SELECT f.kind, f.reason, f.quote_amount, f.token_amount, e.created_at
  FROM fills f JOIN position_events e USING (position_id, seq)
 WHERE f.position_id = $1 AND f.token_amount > 0 ORDER BY f.seq"""

_TRADES = """
SELECT created_at, quote_amount, token_amount FROM signals
 WHERE token_mint = $1 AND quote_mint = $2 AND token_amount > 0 ORDER BY created_at DESC LIMIT 500"""


async def position_detail(conn: asyncpg.Connection, position_id: int, now: float | None = None) -> dict[str, Any] | None:
    now = time.time() if now is None else now
    row = await conn.fetchrow(f"SELECT p.*, {LEVEL_COLUMNS} FROM positions p WHERE p.id = $1", position_id)
    if row is None:
        return None
    mk = await marks(conn, [row["token_mint"]])
    view = position_view(row, mk, now, await labels(conn))
    events = await conn.fetch("SELECT seq, kind, data, created_at FROM position_events WHERE position_id = $1 ORDER BY seq",
                              position_id)
    view["journal"] = [{"seq": e["seq"], "kind": e["kind"], "at": utc(e["created_at"], "%H:%M:%S"),
                        "reason": (e["data"] or {}).get("reason") or "", "data": e["data"]} for e in events]
    await price_path(conn, view, row, events, mk, now)
    return view


async def price_path(conn: asyncpg.Connection, view: dict[str, Any], row: asyncpg.Record, events: list[asyncpg.Record],
                     mk: Marks, now: float) -> None:
    """The chart's data into `view`: `series` (time ms, price), `exits` (time, price, reason), `entry_point`."""
    dec, qm = int(row["token_decimals"]), row["quote_mint"]
    trades = await conn.fetch(_TRADES, row["token_mint"], qm)
    series = [(t["created_at"].timestamp() * 1000, unit_price(t["quote_amount"], t["token_amount"], dec, qm))
              for t in reversed(trades)]
    exits: list[tuple[float, float, str]] = []
    entry_at = None
    for f in await conn.fetch(_FILLS, row["id"]):
        px, at = unit_price(f["quote_amount"], f["token_amount"], dec, qm), f["created_at"].timestamp() * 1000
        if f["kind"] == "entry_filled":
            entry_at = (at, px)
        else:
            exits.append((at, px, f["reason"] or f["kind"]))
        series.append((at, px))
    for e in events:  # journals from before the engine: a close at the leader's price
        d = e["data"] or {}
        if e["kind"] == "closed" and int(d.get("exit_token_amount") or 0):
            exits.append((e["created_at"].timestamp() * 1000, unit_price(d["exit_quote_amount"], d["exit_token_amount"], dec, qm),
                          d.get("reason") or "closed"))
    if view["price"] is not None and mk.usd.get(row["token_mint"]):
        series.append(((mk.usd[row["token_mint"]][1] or now) * 1000, view["price"]))
    series.sort()
    view["series"] = series
    view["exits"] = exits
    view["entry_point"] = entry_at or ((view["opened_at"] or now) * 1000, view["entry_price"]) if view["entry_price"] else None
