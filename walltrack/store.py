"""The store: asyncpg on the bridge's asyncio thread, behind repository methods.

Actor-facing methods (the `actors.ports.Store` port) return concurrent futures at once. The `*_sync`
helpers block and are for the composition root and the CLI only.
"""

from __future__ import annotations

import json
from concurrent.futures import Future
from typing import Any, Awaitable, Callable, TypeVar

import asyncpg

from actors.messages import JournalEvent, Observation, RecordResult
from walltrack.bridge import AsyncioThread
from walltrack.db import DatabaseUnavailable

T = TypeVar("T")

WATCHLIST_CHANNEL = "walltrack_watchlist"

_MARK_PROCESSED = """
UPDATE webhook_inbox SET processed_at = now()
 WHERE signature = $1 AND processed_at IS NULL
   AND NOT EXISTS (SELECT 1 FROM unnest(wallets) AS w(addr)
                    WHERE NOT EXISTS (SELECT 1 FROM observations o WHERE o.signature = $1 AND o.wallet = w.addr))
"""


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def connect_pool(url: str, max_size: int = 8) -> asyncpg.Pool:
    return await asyncpg.create_pool(url, min_size=1, max_size=max_size, init=_init_connection, command_timeout=15)


_TEMPORARY = (OSError, asyncpg.exceptions.PostgresConnectionError, asyncpg.exceptions.InterfaceError,
              asyncpg.exceptions.CannotConnectNowError, TimeoutError)


class Store:
    def __init__(self, loop: AsyncioThread, pool: asyncpg.Pool) -> None:
        self._loop = loop
        self.pool = pool

    @classmethod
    def open(cls, loop: AsyncioThread, url: str) -> "Store":
        return cls(loop, loop.run(connect_pool(url), timeout=30))

    def close(self) -> None:
        self._loop.run(self.pool.close(), timeout=10)

    def submit(self, fn: Callable[[asyncpg.Connection], Awaitable[T]]) -> Future[T]:
        async def run() -> T:
            try:
                async with self.pool.acquire(timeout=5) as conn:
                    return await fn(conn)
            except _TEMPORARY as exc:
                raise DatabaseUnavailable(f"database unreachable: {type(exc).__name__}") from exc

        return self._loop.submit(run())

    def run(self, fn: Callable[[asyncpg.Connection], Awaitable[T]], timeout: float = 30) -> T:
        return self.submit(fn).result(timeout)

    # -- the actors' port ------------------------------------------------------------------------
    def record_observation(self, obs: Observation) -> Future[RecordResult]:
        return self.submit(lambda conn: _record_observation(conn, obs))

    def append_position_events(self, position_id: int, events: tuple[JournalEvent, ...], projection: dict[str, Any]) -> Future[None]:
        return self.submit(lambda conn: _append_events(conn, position_id, events, projection))

    def wallet_open_positions(self, wallet: str) -> Future[dict[str, dict[str, frozenset[int]]]]:
        return self.submit(lambda conn: _wallet_open_positions(conn, wallet))

    def position_journal(self, position_id: int) -> Future[tuple[JournalEvent, ...]]:
        return self.submit(lambda conn: _journal(conn, position_id))

    # -- the gateway -------------------------------------------------------------------------------
    def store_deliveries(self, items: list[tuple[str, str, list[str]]]) -> Future[set[str]]:
        """Store (signature, payload JSON, watched wallets) rows; returns the signatures not seen before."""
        return self.submit(lambda conn: _store_deliveries(conn, items))

    def health(self) -> Future[dict[str, Any]]:
        return self.submit(_health)


async def _record_observation(conn: asyncpg.Connection, obs: Observation) -> RecordResult:
    async with conn.transaction():
        fresh = await conn.fetchval(
            "INSERT INTO observations (signature, wallet, outcome) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING RETURNING 1",
            obs.signature, obs.wallet, obs.outcome,
        )
        if fresh is None:
            return RecordResult(duplicate=True)
        signal_id = position_id = None
        journal: tuple[JournalEvent, ...] = ()
        t = obs.trade
        if obs.outcome == "signal" and t is not None:
            signal_id = await conn.fetchval(
                """INSERT INTO signals (signature, wallet, side, token_mint, token_amount, token_decimals,
                                        quote_mint, quote_amount, source, decision, reason, safety)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id""",
                obs.signature, obs.wallet, t.side, t.token_mint, t.token_amount, t.token_decimals,
                t.quote_mint, t.quote_amount, t.source, obs.decision, obs.reason, obs.safety,
            )
            if obs.entry is not None:
                e = obs.entry
                position_id = await conn.fetchval(
                    """INSERT INTO positions (signal_id, wallet, token_mint, token_decimals, quote_mint, mode, status,
                                              entry_quote_amount, entry_token_amount, token_amount_open)
                       VALUES ($1, $2, $3, $4, $5, $6, 'open', $7, $8, $8) RETURNING id""",
                    signal_id, obs.wallet, t.token_mint, t.token_decimals, t.quote_mint, e.mode, e.quote_amount, e.token_amount,
                )
                data = {
                    "wallet": obs.wallet, "signature": obs.signature, "signal_id": signal_id,
                    "token_mint": t.token_mint, "token_decimals": t.token_decimals, "quote_mint": t.quote_mint,
                    "mode": e.mode, "entry_quote_amount": str(e.quote_amount), "entry_token_amount": str(e.token_amount),
                    "price_basis": "leader_effective_price",
                }
                await conn.execute(
                    "INSERT INTO position_events (position_id, seq, kind, data) VALUES ($1, 1, 'opened', $2)", position_id, data
                )
                journal = (JournalEvent(1, "opened", data),)
        await conn.execute(_MARK_PROCESSED, obs.signature)
        return RecordResult(False, signal_id, position_id, journal)


async def _append_events(conn: asyncpg.Connection, pid: int, events: tuple[JournalEvent, ...], p: dict[str, Any]) -> None:
    async with conn.transaction():
        # Idempotent: a retry after a lost acknowledgement finds its events already there.
        await conn.executemany(
            "INSERT INTO position_events (position_id, seq, kind, data) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            [(pid, e.seq, e.kind, e.data) for e in events],
        )
        await conn.execute(
            """UPDATE positions SET status = $2, token_amount_open = $3, exit_quote_amount = $4,
                      realized_pnl_quote = $5, exit_reason = $6, updated_at = now(),
                      closed_at = CASE WHEN $2 = 'closed' THEN coalesce(closed_at, now()) END
                WHERE id = $1""",
            pid, p["status"], p["token_amount_open"], p["exit_quote_amount"], p["realized_pnl_quote"], p["exit_reason"],
        )


async def _wallet_open_positions(conn: asyncpg.Connection, wallet: str) -> dict[str, dict[str, frozenset[int]]]:
    """{"open": mint -> ids, "shadow": mint -> ids} of the wallet's positions not yet closed."""
    rows = await conn.fetch(
        """SELECT mode = 'shadow' AS shadow, token_mint, array_agg(id) AS ids FROM positions
            WHERE wallet = $1 AND closed_at IS NULL GROUP BY 1, 2""",
        wallet,
    )
    books: dict[str, dict[str, frozenset[int]]] = {"open": {}, "shadow": {}}
    for r in rows:
        books["shadow" if r["shadow"] else "open"][r["token_mint"]] = frozenset(r["ids"])
    return books


async def _journal(conn: asyncpg.Connection, pid: int) -> tuple[JournalEvent, ...]:
    rows = await conn.fetch("SELECT seq, kind, data FROM position_events WHERE position_id = $1 ORDER BY seq", pid)
    return tuple(JournalEvent(r["seq"], r["kind"], r["data"]) for r in rows)


async def _store_deliveries(conn: asyncpg.Connection, items: list[tuple[str, str, list[str]]]) -> set[str]:
    rows = await conn.fetch(
        """INSERT INTO webhook_inbox (signature, payload, wallets, processed_at)
           SELECT s, p::jsonb, ARRAY(SELECT jsonb_array_elements_text(w::jsonb)),
                  CASE WHEN jsonb_array_length(w::jsonb) = 0 THEN now() END
             FROM unnest($1::text[], $2::text[], $3::text[]) AS t(s, p, w)
           ON CONFLICT (signature) DO NOTHING RETURNING signature""",
        [i[0] for i in items], [i[1] for i in items], [json.dumps(i[2]) for i in items],
    )
    return {r["signature"] for r in rows}


async def _health(conn: asyncpg.Connection) -> dict[str, Any]:
    row = await conn.fetchrow(
        """SELECT (SELECT received_at FROM webhook_inbox ORDER BY id DESC LIMIT 1) AS last_webhook,
                  (SELECT created_at FROM signals ORDER BY created_at DESC LIMIT 1) AS last_signal,
                  (SELECT count(*) FROM webhook_inbox WHERE processed_at IS NULL) AS inbox_pending"""
    )
    return dict(row)


# -- start-up and CLI queries (plain coroutines, run through Store.run) --------------------------------
async def active_wallets(conn: asyncpg.Connection) -> list[str]:
    return [r["address"] for r in await conn.fetch("SELECT address FROM wallets WHERE status = 'active' ORDER BY added_at")]


async def open_positions(conn: asyncpg.Connection) -> list[tuple[int, tuple[JournalEvent, ...]]]:
    ids = [r["id"] for r in await conn.fetch("SELECT id FROM positions WHERE closed_at IS NULL ORDER BY id")]
    return [(pid, await _journal(conn, pid)) for pid in ids]


async def pending_deliveries(conn: asyncpg.Connection) -> list[tuple[str, str, tuple[str, ...]]]:
    """Stored but unprocessed deliveries, oldest first, with the wallets still to observe each."""
    rows = await conn.fetch(
        """SELECT i.signature, i.payload::text AS payload,
                  ARRAY(SELECT w FROM unnest(i.wallets) AS w
                         WHERE NOT EXISTS (SELECT 1 FROM observations o WHERE o.signature = i.signature AND o.wallet = w)) AS todo
             FROM webhook_inbox i WHERE i.processed_at IS NULL ORDER BY i.id"""
    )
    return [(r["signature"], r["payload"], tuple(r["todo"])) for r in rows]


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
    return [_jsonable(r) for r in rows]


async def list_signals(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    rows = await conn.fetch("SELECT * FROM signals ORDER BY id")
    return [_jsonable(r) for r in rows]


async def list_positions(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    rows = await conn.fetch("SELECT * FROM positions ORDER BY id")
    return [_jsonable(r) for r in rows]


def _jsonable(row: asyncpg.Record) -> dict[str, Any]:
    from datetime import datetime
    from decimal import Decimal

    out: dict[str, Any] = {}
    for k, v in row.items():
        if isinstance(v, datetime):
            v = v.isoformat()
        elif isinstance(v, Decimal):
            v = format(v, "f")  # raw integer amounts stay exact, as plain digit strings
        out[k] = v
    return out


async def save_safety(conn: asyncpg.Connection, report: dict[str, Any]) -> None:
    await conn.execute(
        """INSERT INTO token_safety (mint, score, passed, reason, checks, checked_at)
           VALUES ($1, $2, $3, $4, $5, now())
           ON CONFLICT (mint) DO UPDATE SET score = EXCLUDED.score, passed = EXCLUDED.passed,
                  reason = EXCLUDED.reason, checks = EXCLUDED.checks, checked_at = now()""",
        report["mint"], report["score"], report["passed"], report["reason"], report["checks"],
    )


async def save_prices(conn: asyncpg.Connection, rows: list[tuple[str, Any, str | None, bool]]) -> None:
    await conn.executemany(
        """INSERT INTO token_prices (mint, usd, source, stale, priced_at) VALUES ($1, $2, $3, $4, now())
           ON CONFLICT (mint) DO UPDATE SET usd = coalesce(EXCLUDED.usd, token_prices.usd),
                  source = EXCLUDED.source, stale = EXCLUDED.stale, priced_at = now()""",
        rows,
    )
