"""The cluster's queries (schema/010_cluster.sql and reads of the journal), run through `Store.submit`."""

from __future__ import annotations

from typing import Any

import asyncpg

from walltrack.cluster.wire import partition


async def record_acks(conn: asyncpg.Connection, signatures: list[str], node: str) -> None:
    await conn.execute(
        "INSERT INTO cluster_acks (signature, node) SELECT unnest($1::text[]), $2 ON CONFLICT DO NOTHING",
        signatures, node)


async def record_event(conn: asyncpg.Connection, node: str, lease: str, kind: str, revision: int | None = None,
                       wallets: int | None = None, positions: int | None = None) -> None:
    await conn.execute(
        "INSERT INTO cluster_events (node, lease, kind, revision, wallets, positions) VALUES ($1, $2, $3, $4, $5, $6)",
        node, lease, kind, revision, wallets, positions)


async def open_positions_of(conn: asyncpg.Connection, count: int, partitions: set[int]) -> list[int]:
    """Open positions (any mode, watched wallet or not) whose wallet falls in `partitions`."""
    rows = await conn.fetch("SELECT id, wallet FROM positions WHERE closed_at IS NULL ORDER BY id")
    return [r["id"] for r in rows if partition(r["wallet"], count) in partitions]


async def unobserved(conn: asyncpg.Connection, signature: str, wallets: list[str]) -> list[str]:
    """The wallets that have no observation of `signature` yet."""
    return list(await conn.fetchval(
        """SELECT ARRAY(SELECT w FROM unnest($2::text[]) AS w
                         WHERE NOT EXISTS (SELECT 1 FROM observations o WHERE o.signature = $1 AND o.wallet = w))""",
        signature, wallets))


async def open_pairs(conn: asyncpg.Connection) -> list[tuple[str, str]]:
    """(wallet, mint) of every position not closed: what the price poller prices, and where it sends each tick."""
    rows = await conn.fetch("SELECT DISTINCT wallet, token_mint FROM positions WHERE closed_at IS NULL")
    return [(r["wallet"], r["token_mint"]) for r in rows]


async def position_wallet(conn: asyncpg.Connection, position_id: int) -> str | None:
    return await conn.fetchval("SELECT wallet FROM positions WHERE id = $1", position_id)


async def risk_rows(conn: asyncpg.Connection, counted: list[int]) -> list[dict[str, Any]]:
    """For the risk owner's reconcile: every real position not closed, and the state of those it counts as open."""
    rows = await conn.fetch(
        """SELECT id, wallet, token_mint, quote_mint, mode, entry_quote_amount, closed_at IS NOT NULL AS closed,
                  realized_pnl_quote, exit_reason
             FROM positions WHERE mode <> 'shadow' AND (closed_at IS NULL OR id = ANY($1::bigint[])) ORDER BY id""",
        counted)
    return [dict(r) for r in rows]
