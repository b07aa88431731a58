"""The wallets repository: the watchlist (with its NOTIFY channels), each wallet's copy-rule overrides and
books, and its measured stats."""

from __future__ import annotations

from typing import Any

import asyncpg

from storage.observations import pending_deliveries
from storage.rows import jsonable

WATCHLIST_CHANNEL = "walltrack_watchlist"



WALLET_SETTINGS_CHANNEL = "walltrack_wallet_settings"



async def active_wallets(conn: asyncpg.Connection) -> list[str]:
    return [r["address"] for r in await conn.fetch("SELECT address FROM wallets WHERE status = 'active' ORDER BY added_at")]



async def wallet_books(conn: asyncpg.Connection, wallets: list[str]) -> dict[str, dict[str, Any]]:
    """`wallet_open_positions` for many wallets at once (start-up: a few queries, not a few per wallet); no
    backlog — the stored deliveries are handed out after every actor has started."""
    books: dict[str, dict[str, Any]] = {w: {"open": {}, "shadow": {}, "settings": {}, "buys": {}, "holdings": {},
                                            "backlog": []} for w in wallets}
    for r in await conn.fetch(
            """SELECT wallet, mode = 'shadow' AS shadow, token_mint, array_agg(id) AS ids FROM positions
                WHERE wallet = ANY($1) AND closed_at IS NULL GROUP BY 1, 2, 3""", wallets):
        books[r["wallet"]]["shadow" if r["shadow"] else "open"][r["token_mint"]] = frozenset(r["ids"])
    for r in await conn.fetch("SELECT address, settings FROM wallets WHERE address = ANY($1)", wallets):
        books[r["address"]]["settings"] = r["settings"] or {}
    for r in await conn.fetch(
            """SELECT wallet, token_mint, count(*) AS n, sum(entry_quote_amount) AS spent FROM positions
                WHERE wallet = ANY($1) AND mode <> 'shadow' AND closed_at IS NULL GROUP BY 1, 2""", wallets):
        books[r["wallet"]]["buys"][r["token_mint"]] = (int(r["n"]), int(r["spent"]))
    for r in await conn.fetch(
            """SELECT s.wallet, s.token_mint, sum(CASE s.side WHEN 'buy' THEN s.token_amount ELSE -s.token_amount END) AS net
                 FROM signals s LEFT JOIN wallets w ON w.address = s.wallet
                WHERE s.wallet = ANY($1) AND s.created_at >= coalesce(w.added_at, '-infinity') GROUP BY 1, 2""", wallets):
        if r["net"] != 0:
            books[r["wallet"]]["holdings"][r["token_mint"]] = int(r["net"])
    return books



async def wallet_open_positions(conn: asyncpg.Connection, wallet: str) -> dict[str, Any]:
    """{"open": mint -> ids, "shadow": mint -> ids} of the wallet's positions not yet closed, its rule books,
    and its "backlog" of unobserved deliveries."""
    books = (await wallet_books(conn, [wallet]))[wallet]
    # stored deliveries this wallet has not observed yet (what a crashed actor's mailbox held), oldest first
    books["backlog"] = [(sig, payload, age_s) for sig, payload, todo, age_s in await pending_deliveries(conn, wallet=wallet)
                        if wallet in todo]
    return books



async def add_wallet(conn: asyncpg.Connection, address: str, label: str | None) -> bool:
    async with conn.transaction():
        added = await conn.fetchval(
            """INSERT INTO wallets (address, label) VALUES ($1, $2)
               ON CONFLICT (address) DO UPDATE SET label = coalesce(EXCLUDED.label, wallets.label), status = 'active'
               RETURNING (xmax = 0)""",
            address, label,
        )
        await conn.execute("SELECT pg_notify($1, $2)", WATCHLIST_CHANNEL, address)
    return bool(added)



async def remove_wallet(conn: asyncpg.Connection, address: str) -> bool:
    async with conn.transaction():
        removed = await conn.fetchval("DELETE FROM wallets WHERE address = $1 RETURNING 1", address)
        await conn.execute("SELECT pg_notify($1, $2)", WATCHLIST_CHANNEL, address)
    return removed is not None



async def list_wallets(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    rows = await conn.fetch("SELECT address, label, status, added_at FROM wallets ORDER BY added_at")
    return [jsonable(r) for r in rows]



async def wallet_settings(conn: asyncpg.Connection, address: str) -> dict[str, Any] | None:
    """A watched wallet's copy-rule overrides, or None when it is not on the watchlist."""
    row = await conn.fetchrow("SELECT settings FROM wallets WHERE address = $1", address)
    return None if row is None else dict(row["settings"] or {})



async def set_wallet_settings(conn: asyncpg.Connection, address: str, settings: dict[str, Any]) -> bool:
    async with conn.transaction():
        done = await conn.fetchval("UPDATE wallets SET settings = $2 WHERE address = $1 RETURNING 1", address, settings)
        await conn.execute("SELECT pg_notify($1, $2)", WALLET_SETTINGS_CHANNEL, address)
    return done is not None



async def set_wallet_status(conn: asyncpg.Connection, address: str, status: str) -> bool:
    """Pause ('paused') or resume ('active') a watched wallet; the running bot hears it like an add or remove."""
    async with conn.transaction():
        done = await conn.fetchval("UPDATE wallets SET status = $2 WHERE address = $1 RETURNING 1", address, status)
        await conn.execute("SELECT pg_notify($1, $2)", WATCHLIST_CHANNEL, address)
    return done is not None



async def wallet_stats(conn: asyncpg.Connection, min_trades: int = 5) -> list[dict[str, Any]]:
    """Per watched wallet, over the trades observed since watching began: every position that followed the
    leader (ours and shadows) — realized and unrealized PnL in SOL, win rate, average hold — and the signals
    taken and skipped. "unmeasured" until `min_trades` positions have closed."""
    wallets = await conn.fetch("SELECT address, label, added_at FROM wallets ORDER BY added_at")
    sol_usd = await conn.fetchval("SELECT usd FROM token_prices WHERE mint = 'So11111111111111111111111111111111111111112'")
    out = []
    for w in wallets:
        sig = await conn.fetchrow(
            """SELECT count(*) FILTER (WHERE decision = 'taken') AS taken, count(*) FILTER (WHERE decision = 'skipped') AS skipped
                 FROM signals WHERE wallet = $1 AND created_at >= $2""", w["address"], w["added_at"])
        rows = await conn.fetch(
            """SELECT p.mode, p.quote_mint, p.token_decimals, p.entry_quote_amount, p.entry_token_amount, p.token_amount_open,
                      p.realized_pnl_quote, p.closed_at, extract(epoch FROM coalesce(p.closed_at, now()) - p.opened_at)::float8 AS held_s,
                      tp.usd AS price_usd
                 FROM positions p LEFT JOIN token_prices tp ON tp.mint = p.token_mint
                WHERE p.wallet = $1 AND p.opened_at >= $2""", w["address"], w["added_at"])
        closed = [r for r in rows if r["closed_at"] is not None and r["realized_pnl_quote"] is not None]
        wins = sum(1 for r in closed if r["realized_pnl_quote"] > 0)

        def in_sol(raw: Any, quote_mint: str) -> float | None:
            if quote_mint == "So11111111111111111111111111111111111111112":
                return float(raw) / 1e9
            return float(raw) / 1e6 / float(sol_usd) if sol_usd else None

        realized = [in_sol(r["realized_pnl_quote"], r["quote_mint"]) for r in closed]
        unrealized: float | None = 0.0
        for r in rows:
            if r["closed_at"] is not None or not r["entry_token_amount"] or not r["token_amount_open"]:
                continue
            cost = in_sol(r["entry_quote_amount"] * r["token_amount_open"] / r["entry_token_amount"], r["quote_mint"])
            if r["price_usd"] is None or not sol_usd or cost is None:
                unrealized = None  # a price we do not know: unknown, never zero
                break
            value = float(r["token_amount_open"]) / 10 ** r["token_decimals"] * float(r["price_usd"]) / float(sol_usd)
            unrealized += value - cost
        out.append({
            "address": w["address"], "label": w["label"], "watching_since": w["added_at"].isoformat(),
            "state": "measured" if len(closed) >= min_trades else "unmeasured",
            "signals_taken": sig["taken"], "signals_skipped": sig["skipped"],
            "positions": len(rows), "copied": sum(1 for r in rows if r["mode"] != "shadow"), "closed": len(closed),
            "win_rate": round(wins / len(closed), 4) if closed else None,
            "realized_pnl_sol": round(sum(x for x in realized if x is not None), 9) if None not in realized else None,
            "copied_realized_pnl_sol": round(sum(x for x, r in zip(realized, closed) if x is not None and r["mode"] != "shadow"), 9),
            "unrealized_pnl_sol": round(unrealized, 9) if unrealized is not None else None,
            "avg_hold_s": round(sum(r["held_s"] for r in closed) / len(closed), 1) if closed else None,
        })
    return out
