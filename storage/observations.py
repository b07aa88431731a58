"""The observations repository: what became of each watched wallet's transaction (signal, skipped,
ignored), recorded once per (signature, wallet) with the position a taken signal opens; and the inbox's
deliveries not yet observed."""

from __future__ import annotations

from typing import Any

import asyncpg

from actors.messages import JournalEvent, Observation, RecordResult
from storage import positions
from storage.rows import jsonable

_MARK_PROCESSED = """
UPDATE webhook_inbox SET processed_at = now()
 WHERE signature = $1 AND processed_at IS NULL
   AND NOT EXISTS (SELECT 1 FROM unnest(wallets) AS w(addr)
                    WHERE NOT EXISTS (SELECT 1 FROM observations o WHERE o.signature = $1 AND o.wallet = w.addr))
"""



async def record_observation(conn: asyncpg.Connection, obs: Observation) -> RecordResult:
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
    journal = await positions.journal(conn, pid) if pid is not None else ()
    return RecordResult(not mine, row["signal_id"], pid, journal)



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



async def list_signals(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    rows = await conn.fetch("SELECT * FROM signals ORDER BY id")
    return [jsonable(r) for r in rows]



async def list_ignored(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    """Every transaction of a watched wallet that is no signal, with why: not a trade (no_trade), refused as failed
    or implausible (ignored), or no longer watched (unwatched). With `list_signals`, every delivery's end."""
    rows = await conn.fetch(
        """SELECT signature, wallet, outcome, coalesce(reason, outcome) AS reason, observed_at FROM observations
            WHERE outcome <> 'signal' ORDER BY observed_at, signature""")
    return [jsonable(r) for r in rows]



async def health(conn: asyncpg.Connection) -> dict[str, Any]:
    row = await conn.fetchrow(
        """SELECT (SELECT received_at FROM webhook_inbox ORDER BY id DESC LIMIT 1) AS last_webhook,
                  (SELECT created_at FROM signals ORDER BY created_at DESC LIMIT 1) AS last_signal,
                  (SELECT count(*) FROM webhook_inbox WHERE processed_at IS NULL) AS inbox_pending,
                  (SELECT count(*) FROM positions WHERE status = 'exit_failed' AND closed_at IS NULL
                    AND mode <> 'shadow') AS exit_failed"""
    )
    return dict(row)
