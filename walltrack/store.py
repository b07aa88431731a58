"""The store: asyncpg on the bridge's asyncio thread, behind repository methods.

Actor-facing methods (the `actors.ports.Store` port) return concurrent futures at once. The `*_sync`
helpers block and are for the composition root and the CLI only.
"""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import Future
from typing import Any, Awaitable, Callable, TypeVar

import asyncpg

from actors.messages import JournalEvent, Observation, RecordResult
from walltrack.bridge import AsyncioThread
from walltrack.db import DatabaseUnavailable
from walltrack.group_commit import GroupCommit
from walltrack.inbox import Batch
from walltrack.inbox import write as write_inbox

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
    return await asyncpg.create_pool(url, min_size=1, max_size=max_size, init=_init_connection, command_timeout=15,
                                     server_settings={"application_name": "walltrack"})


_TEMPORARY = (OSError, asyncpg.exceptions.PostgresConnectionError, asyncpg.exceptions.InterfaceError,
              asyncpg.exceptions.CannotConnectNowError, TimeoutError)


class Store:
    def __init__(self, loop: AsyncioThread, pool: asyncpg.Pool) -> None:
        self._loop = loop
        self.pool = pool
        # group commits (walltrack/group_commit.py): the webhook inbox, and the position journals
        self.inbox: GroupCommit[Batch, set[str]] = GroupCommit(loop.loop, self.call, write_inbox, (DatabaseUnavailable,))
        self.journals: GroupCommit[tuple[int, tuple[JournalEvent, ...], dict[str, Any]], None] = GroupCommit(
            loop.loop, self.call, _append_events, (DatabaseUnavailable,))

    @classmethod
    def open(cls, loop: AsyncioThread, url: str) -> "Store":
        return cls(loop, loop.run(connect_pool(url), timeout=30))

    def close(self, timeout: float = 3.0) -> None:
        """Close the pool: gracefully within `timeout`, else (the database is gone or hung) by terminating it."""
        async def close() -> None:
            try:
                await asyncio.wait_for(self.pool.close(), timeout)
            except (asyncio.TimeoutError, *_TEMPORARY, asyncpg.PostgresError):
                self.pool.terminate()

        self._loop.run(close(), timeout=timeout + 5)

    def submit(self, fn: Callable[[asyncpg.Connection], Awaitable[T]]) -> Future[T]:
        return self._loop.submit(self.call(fn))

    async def call(self, fn: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """`fn(conn)` on a pooled connection, on the store's loop; a lost database is `DatabaseUnavailable`."""
        conn: asyncpg.Connection | None = None
        try:
            conn = await self.pool.acquire(timeout=5)
            return await fn(conn)
        except _TEMPORARY as exc:
            raise DatabaseUnavailable(f"database unreachable: {type(exc).__name__}") from exc
        finally:
            # The outcome is fn's. A connection that dies while the pool resets it (the server stopping just
            # after a commit) is terminated by the pool; reported as a failure, a stored delivery would get a
            # 503 and Helius' retry a duplicate that is never dispatched.
            if conn is not None:
                try:
                    await self.pool.release(conn)
                except Exception:  # noqa: BLE001
                    pass

    def run(self, fn: Callable[[asyncpg.Connection], Awaitable[T]], timeout: float = 30) -> T:
        return self.submit(fn).result(timeout)

    # -- the actors' port ------------------------------------------------------------------------
    def record_observation(self, obs: Observation) -> Future[RecordResult]:
        return self.submit(lambda conn: _record_observation(conn, obs))

    def append_position_events(self, position_id: int, events: tuple[JournalEvent, ...], projection: dict[str, Any]) -> Future[None]:
        return self.journals.submit((position_id, events, projection))

    def wallet_open_positions(self, wallet: str) -> Future[dict[str, Any]]:
        return self.submit(lambda conn: _wallet_open_positions(conn, wallet))

    def risk_snapshot(self) -> Future[dict[str, Any]]:
        return self.submit(_risk_snapshot)

    def record_breakers(self, events: tuple[dict[str, Any], ...]) -> Future[None]:
        return self.submit(lambda conn: _record_breakers(conn, events))

    def position_outcome(self, position_id: int) -> Future[dict[str, Any] | None]:
        return self.submit(lambda conn: _position_outcome(conn, position_id))

    def position_journal(self, position_id: int) -> Future[tuple[JournalEvent, ...]]:
        return self.submit(lambda conn: _journal(conn, position_id))

    # -- the gateway -------------------------------------------------------------------------------
    def store_body(self, body: str, items: tuple[tuple[str, tuple[str, ...]], ...]) -> Future[set[str]]:
        """Store a webhook body's transactions (a JSON array, as received) with the watched wallets of each
        (signature, wallets); returns, once committed, the signatures not seen before (walltrack/inbox.py)."""
        return self.inbox.submit(Batch(body, items))

    def store_deliveries(self, items: list[tuple[str, str, list[str]]]) -> Future[set[str]]:
        """Store (signature, payload JSON, watched wallets) rows; returns the signatures not seen before."""
        return self.store_body("[" + ",".join(p for _, p, _ in items) + "]", tuple((s, tuple(w)) for s, _, w in items))

    def health(self) -> Future[dict[str, Any]]:
        return self.submit(_health)


async def _record_observation(conn: asyncpg.Connection, obs: Observation) -> RecordResult:
    async with conn.transaction():
        # An asynchronous commit: a decision is derived from the inbox row, which was committed (synchronously)
        # before the 200. Lost in a crash, it is decided again by the inbox replay; and any later synchronous
        # commit (a position's journal, before any fill) flushes it to disk first — WAL is written in order.
        await conn.execute("SET LOCAL synchronous_commit = off")
        fresh = await conn.fetchval(
            """INSERT INTO observations (signature, wallet, outcome, reason, decision_id) VALUES ($1, $2, $3, $4, $5)
               ON CONFLICT DO NOTHING RETURNING 1""",
            obs.signature, obs.wallet, obs.outcome, obs.reason, obs.decision_id,
        )
        if fresh is None:
            return await _recorded_before(conn, obs)
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
                quote_mint = e.quote_mint or t.quote_mint  # a live entry pays SOL whatever the leader paid with
                position_id = await conn.fetchval(
                    """INSERT INTO positions (signal_id, wallet, token_mint, token_decimals, quote_mint, mode, status,
                                              entry_quote_amount, entry_token_amount, token_amount_open)
                       VALUES ($1, $2, $3, $4, $5, $6, 'pending_entry', $7, $8, 0) RETURNING id""",
                    signal_id, obs.wallet, t.token_mint, t.token_decimals, quote_mint, e.mode, e.quote_amount, e.token_amount,
                )
                data = {
                    "wallet": obs.wallet, "signature": obs.signature, "signal_id": signal_id,
                    "token_mint": t.token_mint, "token_decimals": t.token_decimals, "quote_mint": quote_mint,
                    "mode": e.mode, "entry_quote_amount": str(e.quote_amount), "entry_token_amount": str(e.token_amount),
                    "price_basis": "leader_effective_price",
                    # the position actor fills the entry at a real quote (actors/position.py)
                    "entry": "pending", "leader_token_amount": str(t.token_amount),
                }
                if quote_mint != t.quote_mint:
                    data["leader_quote_mint"] = t.quote_mint
                if e.slippage_bps is not None:  # the wallet's execution limits, for the executor
                    data["slippage_bps"] = e.slippage_bps
                if e.max_price_impact_pct is not None:
                    data["max_price_impact_pct"] = e.max_price_impact_pct
                await conn.execute(
                    "INSERT INTO position_events (position_id, seq, kind, data) VALUES ($1, 1, 'opened', $2)", position_id, data
                )
                journal = (JournalEvent(1, "opened", data),)
        await conn.execute(_MARK_PROCESSED, obs.signature)
        return RecordResult(False, signal_id, position_id, journal)


async def _recorded_before(conn: asyncpg.Connection, obs: Observation) -> RecordResult:
    """The observation was stored already. By this very decision (a retry after its commit's acknowledgement was
    lost): its result, as if stored now. By another one: a duplicate, with the position it opened while open."""
    row = await conn.fetchrow(
        """SELECT o.decision_id, s.id AS signal_id, p.id AS position_id, p.closed_at IS NULL AS open
             FROM observations o LEFT JOIN signals s ON s.signature = o.signature AND s.wallet = o.wallet
             LEFT JOIN positions p ON p.signal_id = s.id
            WHERE o.signature = $1 AND o.wallet = $2""", obs.signature, obs.wallet)
    mine = obs.decision_id is not None and row["decision_id"] == obs.decision_id
    pid = row["position_id"] if row["position_id"] is not None and (mine or row["open"]) else None
    journal = await _journal(conn, pid) if pid is not None else ()
    return RecordResult(not mine, row["signal_id"], pid, journal)


async def _append_events(conn: asyncpg.Connection,
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


async def _wallet_open_positions(conn: asyncpg.Connection, wallet: str) -> dict[str, Any]:
    """{"open": mint -> ids, "shadow": mint -> ids} of the wallet's positions not yet closed, its rule books,
    and its "backlog" of unobserved deliveries."""
    books = (await wallet_books(conn, [wallet]))[wallet]
    # stored deliveries this wallet has not observed yet (what a crashed actor's mailbox held), oldest first
    books["backlog"] = [(sig, payload, age_s) for sig, payload, todo, age_s in await pending_deliveries(conn, wallet=wallet)
                        if wallet in todo]
    return books


async def _journal(conn: asyncpg.Connection, pid: int) -> tuple[JournalEvent, ...]:
    rows = await conn.fetch("SELECT seq, kind, data FROM position_events WHERE position_id = $1 ORDER BY seq", pid)
    return tuple(JournalEvent(r["seq"], r["kind"], r["data"]) for r in rows)


async def _health(conn: asyncpg.Connection) -> dict[str, Any]:
    row = await conn.fetchrow(
        """SELECT (SELECT received_at FROM webhook_inbox ORDER BY id DESC LIMIT 1) AS last_webhook,
                  (SELECT created_at FROM signals ORDER BY created_at DESC LIMIT 1) AS last_signal,
                  (SELECT count(*) FROM webhook_inbox WHERE processed_at IS NULL) AS inbox_pending,
                  (SELECT count(*) FROM positions WHERE status = 'exit_failed' AND closed_at IS NULL
                    AND mode <> 'shadow') AS exit_failed"""
    )
    return dict(row)


# -- start-up and CLI queries (plain coroutines, run through Store.run) --------------------------------
async def active_wallets(conn: asyncpg.Connection) -> list[str]:
    return [r["address"] for r in await conn.fetch("SELECT address FROM wallets WHERE status = 'active' ORDER BY added_at")]


async def open_positions(conn: asyncpg.Connection) -> list[tuple[int, tuple[JournalEvent, ...]]]:
    """Every position not closed, with its journal: one query, however many there are."""
    rows = await conn.fetch(
        """SELECT e.position_id, e.seq, e.kind, e.data FROM positions p JOIN position_events e ON e.position_id = p.id
            WHERE p.closed_at IS NULL ORDER BY e.position_id, e.seq""")
    journals: dict[int, list[JournalEvent]] = {}
    for r in rows:
        journals.setdefault(r["position_id"], []).append(JournalEvent(r["seq"], r["kind"], r["data"]))
    return [(pid, tuple(events)) for pid, events in journals.items()]


async def wallet_books(conn: asyncpg.Connection, wallets: list[str]) -> dict[str, dict[str, Any]]:
    """`_wallet_open_positions` for many wallets at once (start-up: a few queries, not a few per wallet); no
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


async def pending_deliveries(conn: asyncpg.Connection, older_than_s: float = 0,
                             wallet: str | None = None) -> list[tuple[str, str, tuple[str, ...], float]]:
    """Stored but unprocessed deliveries (received at least `older_than_s` ago; naming `wallet`, if given), oldest
    first, with the wallets still to observe each and how long ago it was received (seconds)."""
    rows = await conn.fetch(
        """SELECT i.signature, i.payload::text AS payload,
                  ARRAY(SELECT w FROM unnest(i.wallets) AS w
                         WHERE NOT EXISTS (SELECT 1 FROM observations o WHERE o.signature = i.signature AND o.wallet = w)) AS todo,
                  extract(epoch FROM now() - i.received_at)::float8 AS age_s
             FROM webhook_inbox i
            WHERE i.processed_at IS NULL AND i.received_at <= now() - make_interval(secs => $1)
              AND ($2::text IS NULL OR $2 = ANY(i.wallets))
            ORDER BY i.id""", older_than_s, wallet
    )
    return [(r["signature"], r["payload"], tuple(r["todo"]), max(0.0, r["age_s"])) for r in rows]


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


async def list_ignored(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    """Every transaction of a watched wallet that is no signal, with why: not a trade (no_trade), refused as failed
    or implausible (ignored), or no longer watched (unwatched). With `list_signals`, every delivery's end."""
    rows = await conn.fetch(
        """SELECT signature, wallet, outcome, coalesce(reason, outcome) AS reason, observed_at FROM observations
            WHERE outcome <> 'signal' ORDER BY observed_at, signature""")
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


# -- copy rules, risk and breakers (actors/rules.py, actors/risk.py) ----------------------------------------
WALLET_SETTINGS_CHANNEL = "walltrack_wallet_settings"
BREAKERS_CHANNEL = "walltrack_breakers"


async def _risk_snapshot(conn: asyncpg.Connection) -> dict[str, Any]:
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


async def _record_breakers(conn: asyncpg.Connection, events: tuple[dict[str, Any], ...]) -> None:
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


async def _position_outcome(conn: asyncpg.Connection, position_id: int) -> dict[str, Any] | None:
    row = await conn.fetchrow(
        "SELECT mode, quote_mint, realized_pnl_quote, exit_reason FROM positions WHERE id = $1", position_id)
    return dict(row) if row is not None else None


async def wallet_settings(conn: asyncpg.Connection, address: str) -> dict[str, Any] | None:
    """A watched wallet's copy-rule overrides, or None when it is not on the watchlist."""
    row = await conn.fetchrow("SELECT settings FROM wallets WHERE address = $1", address)
    return None if row is None else dict(row["settings"] or {})


async def set_wallet_settings(conn: asyncpg.Connection, address: str, settings: dict[str, Any]) -> bool:
    async with conn.transaction():
        done = await conn.fetchval("UPDATE wallets SET settings = $2 WHERE address = $1 RETURNING 1", address, settings)
        await conn.execute("SELECT pg_notify($1, $2)", WALLET_SETTINGS_CHANNEL, address)
    return done is not None


async def list_breakers(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    rows = await conn.fetch("SELECT name, state, reason, tripped_at, until, reset_at, reset_by FROM breakers ORDER BY name")
    return [_jsonable(r) for r in rows]


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


async def set_wallet_status(conn: asyncpg.Connection, address: str, status: str) -> bool:
    """Pause ('paused') or resume ('active') a watched wallet; the running bot hears it like an add or remove."""
    async with conn.transaction():
        done = await conn.fetchval("UPDATE wallets SET status = $2 WHERE address = $1 RETURNING 1", address, status)
        await conn.execute("SELECT pg_notify($1, $2)", WATCHLIST_CHANNEL, address)
    return done is not None


# -- the global trading mode (schema/005): a runtime setting the panel and the CLI change ---------------------
TRADING_MODE_CHANNEL = "walltrack_trading_mode"


async def trading_mode(conn: asyncpg.Connection) -> dict[str, Any] | None:
    """The operator's global trading mode, {"mode", "updated_at", "updated_by"}, or None (TRADING_MODE in force)."""
    row = await conn.fetchrow(
        "SELECT value AS mode, updated_at, updated_by FROM runtime_settings WHERE key = 'trading_mode'")
    return None if row is None else _jsonable(row)


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
