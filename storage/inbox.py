"""The webhook inbox's writes, group-committed (storage/group_commit.py): concurrent requests' deliveries go to
PostgreSQL in one statement and one commit, and each request learns which of its transactions were new only once
that commit is done — never before, so the gateway never answers 200 for a delivery that is not stored. One bad
body fails alone. A signature twice in one batch (a retried delivery racing its first attempt) is new for the first
request only: it is dispatched once.

The bodies are stored as PostgreSQL splits them (`jsonb_array_elements`): the gateway parses each body once and
never re-encodes a transaction.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import asyncpg

_INSERT = """
INSERT INTO webhook_inbox (signature, payload, wallets, processed_at)
SELECT e.tx->>'signature', e.tx, ARRAY(SELECT jsonb_array_elements_text(w.wallets::jsonb)),
       CASE WHEN jsonb_array_length(w.wallets::jsonb) = 0 THEN now() END
  FROM unnest($1::text[]) WITH ORDINALITY AS b(body, n)
 CROSS JOIN LATERAL jsonb_array_elements(b.body::jsonb) WITH ORDINALITY AS e(tx, k)
  JOIN unnest($2::bigint[], $3::text[], $4::text[]) AS w(n, signature, wallets)
    ON w.n = b.n AND w.signature = e.tx->>'signature'
 ORDER BY b.n, e.k
    ON CONFLICT (signature) DO NOTHING
RETURNING signature"""


@dataclass(frozen=True)
class Batch:
    """One request: its body (a JSON array of transactions) and, per transaction to store, the watched wallets."""

    body: str
    items: tuple[tuple[str, tuple[str, ...]], ...]  # (signature, wallets), each signature once


async def write(conn: asyncpg.Connection, batches: list[Batch]) -> list[set[str]]:
    """Store every batch's transactions in one statement; returns, per batch, its signatures not seen before (a
    signature twice in the batch is new for its first request only: it is dispatched once)."""
    ns, sigs, wallets = [], [], []
    for n, b in enumerate(batches, 1):
        for sig, ws in b.items:
            ns.append(n)
            sigs.append(sig)
            wallets.append(json.dumps(list(ws)))
    new = {r["signature"] for r in await conn.fetch(_INSERT, [b.body for b in batches], ns, sigs, wallets)}
    out = []
    for b in batches:
        mine = {sig for sig, _ in b.items if sig in new}
        new -= mine
        out.append(mine)
    return out
