"""The webhook inbox's group commit: concurrent requests' deliveries go to PostgreSQL in one statement and one
commit, and each request learns which of its transactions were new only once that commit is done — never before,
so the gateway never answers 200 for a delivery that is not stored.

Runs on the store's asyncio loop. While one write is in flight, the requests that arrive wait and go together
in the next one: no timer, no added delay when the gateway is quiet, fewer commits (and WAL flushes) when it is
busy. A batch that fails on its data (not on the connection) is retried request by request, so one bad body
fails alone. A signature twice in one batch (a retried delivery racing its first attempt) is new for the first
request only: it is dispatched once.

The bodies are stored as PostgreSQL splits them (`jsonb_array_elements`): the gateway parses each body once and
never re-encodes a transaction.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

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


async def write(conn: asyncpg.Connection, batches: list[Batch]) -> set[str]:
    """Store every batch's transactions in one statement; returns the signatures not seen before."""
    ns, sigs, wallets = [], [], []
    for n, b in enumerate(batches, 1):
        for sig, ws in b.items:
            ns.append(n)
            sigs.append(sig)
            wallets.append(json.dumps(list(ws)))
    rows = await conn.fetch(_INSERT, [b.body for b in batches], ns, sigs, wallets)
    return {r["signature"] for r in rows}


class GroupCommit:
    """Collects `Batch`es from any thread; one `write` at a time on the loop, with whatever arrived meanwhile."""

    def __init__(self, loop: asyncio.AbstractEventLoop, run: Callable[[Callable[[asyncpg.Connection], Awaitable[Any]]], Awaitable[Any]],
                 temporary: tuple[type[BaseException], ...], max_batches: int = 512) -> None:
        self._loop, self._run, self._temporary, self._max = loop, run, temporary, max_batches
        self._waiting: list[tuple[Batch, concurrent.futures.Future[set[str]]]] = []
        self._writing = False
        self.commits = 0  # statements committed (for tests and benchmarks)

    def submit(self, batch: Batch) -> concurrent.futures.Future[set[str]]:
        """The signatures of `batch` that were new, once committed (from any thread)."""
        future: concurrent.futures.Future[set[str]] = concurrent.futures.Future()
        self._loop.call_soon_threadsafe(self._add, batch, future)
        return future

    def _add(self, batch: Batch, future: concurrent.futures.Future[set[str]]) -> None:
        self._waiting.append((batch, future))
        if not self._writing:
            self._writing = True
            self._loop.create_task(self._drain())

    async def _drain(self) -> None:
        try:
            while self._waiting:
                group, self._waiting = self._waiting[:self._max], self._waiting[self._max:]
                await self._commit(group)
        finally:
            self._writing = False

    async def _commit(self, group: list[tuple[Batch, concurrent.futures.Future[set[str]]]]) -> None:
        live = [(b, f) for b, f in group if f.set_running_or_notify_cancel()]
        if not live:
            return
        try:
            new = await self._run(lambda conn: write(conn, [b for b, _ in live]))
            self.commits += 1
        except Exception as exc:  # noqa: BLE001 - handed to each request (a 503 there)
            if len(live) > 1 and not isinstance(exc, self._temporary):
                for one in live:  # a bad body fails alone: the others are stored on their own
                    await self._commit_alone(one)
                return
            for _, f in live:
                f.set_exception(exc)
            return
        for b, f in live:  # a signature twice in the batch is new for its first request only
            mine = {sig for sig, _ in b.items if sig in new}
            new -= mine
            f.set_result(mine)

    async def _commit_alone(self, one: tuple[Batch, concurrent.futures.Future[set[str]]]) -> None:
        b, f = one
        try:
            f.set_result(await self._run(lambda conn: write(conn, [b])))
            self.commits += 1
        except Exception as exc:  # noqa: BLE001
            f.set_exception(exc)
