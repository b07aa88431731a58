"""The store: asyncpg on the bridge's asyncio thread, behind repository methods (the queries live in one module
per repository: observations, positions, wallets, risk, market, modes; `storage.repo` names them all).

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
from storage import observations, positions, risk, wallets
from storage.db import DatabaseUnavailable
from storage.group_commit import GroupCommit
from storage.inbox import Batch
from storage.inbox import write as write_inbox
from walltrack.bridge import AsyncioThread

T = TypeVar("T")


async def init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def connect_pool(url: str, max_size: int = 8) -> asyncpg.Pool:
    return await asyncpg.create_pool(url, min_size=1, max_size=max_size, init=init_connection, command_timeout=15,
                                     server_settings={"application_name": "walltrack"})


# InternalClientError: a pooled connection left mid-operation when its server died ("another operation is in
# progress") — the database is gone, not the query wrong
_TEMPORARY = (OSError, asyncpg.exceptions.PostgresConnectionError, asyncpg.exceptions.InterfaceError,
              asyncpg.exceptions.InternalClientError, asyncpg.exceptions.CannotConnectNowError, TimeoutError)


class Store:
    def __init__(self, loop: AsyncioThread, pool: asyncpg.Pool) -> None:
        self._loop = loop
        self.pool = pool
        # group commits (storage/group_commit.py): the webhook inbox, and the position journals
        self.inbox: GroupCommit[Batch, set[str]] = GroupCommit(loop.loop, self.call, write_inbox, (DatabaseUnavailable,))
        self.journals: GroupCommit[tuple[int, tuple[JournalEvent, ...], dict[str, Any]], None] = GroupCommit(
            loop.loop, self.call, positions.append_events, (DatabaseUnavailable,))

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
        return self.submit(lambda conn: observations.record_observation(conn, obs))

    def append_position_events(self, position_id: int, events: tuple[JournalEvent, ...], projection: dict[str, Any]) -> Future[None]:
        return self.journals.submit((position_id, events, projection))

    def wallet_open_positions(self, wallet: str) -> Future[dict[str, Any]]:
        return self.submit(lambda conn: wallets.wallet_open_positions(conn, wallet))

    def risk_snapshot(self) -> Future[dict[str, Any]]:
        return self.submit(risk.risk_snapshot)

    def record_breakers(self, events: tuple[dict[str, Any], ...]) -> Future[None]:
        return self.submit(lambda conn: risk.record_breakers(conn, events))

    def position_outcome(self, position_id: int) -> Future[dict[str, Any] | None]:
        return self.submit(lambda conn: positions.position_outcome(conn, position_id))

    def position_journal(self, position_id: int) -> Future[tuple[JournalEvent, ...]]:
        return self.submit(lambda conn: positions.journal(conn, position_id))

    # -- the gateway -------------------------------------------------------------------------------
    def store_body(self, body: str, items: tuple[tuple[str, tuple[str, ...]], ...]) -> Future[set[str]]:
        """Store a webhook body's transactions (a JSON array, as received) with the watched wallets of each
        (signature, wallets); returns, once committed, the signatures not seen before (storage/inbox.py)."""
        return self.inbox.submit(Batch(body, items))

    def store_deliveries(self, items: list[tuple[str, str, list[str]]]) -> Future[set[str]]:
        """Store (signature, payload JSON, watched wallets) rows; returns the signatures not seen before."""
        return self.store_body("[" + ",".join(p for _, p, _ in items) + "]", tuple((s, tuple(w)) for s, _, w in items))

    def health(self) -> Future[dict[str, Any]]:
        return self.submit(observations.health)
