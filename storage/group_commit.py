"""Group commit: writes from many callers, one statement batch and one commit at a time.

Callers on any thread `submit(item)` and get a future; on the store's asyncio loop, a `write(conn, items)` takes
everything that arrived while the writes in flight were busy (at most `writers` at once, 2 by default: a write
stuck on a dying connection does not stall the rest) — no timer: no added delay when quiet, one commit (one WAL
flush) for many writes when busy. Each future completes only after the commit that stored its item, with that item's
result. A batch that fails on its data (not on the connection) is retried item by item, so one bad item fails
alone; a temporary failure (the database is gone) fails the whole batch, and each caller retries as it would have.
Used for the webhook inbox (storage/inbox.py) and the position journals (storage/store.py).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from typing import Any, Awaitable, Callable, Generic, TypeVar

import asyncpg

T = TypeVar("T")
R = TypeVar("R")

Run = Callable[[Callable[[asyncpg.Connection], Awaitable[Any]]], Awaitable[Any]]


class GroupCommit(Generic[T, R]):
    def __init__(self, loop: asyncio.AbstractEventLoop, run: Run,
                 write: Callable[[asyncpg.Connection, list[T]], Awaitable[list[R]]],
                 temporary: tuple[type[BaseException], ...], max_items: int = 1024, writers: int = 2) -> None:
        self._loop, self._run, self._write, self._temporary, self._max = loop, run, write, temporary, max_items
        self._waiting: list[tuple[T, concurrent.futures.Future[R]]] = []
        self._arriving: list[tuple[T, concurrent.futures.Future[R]]] = []  # submitted, not yet seen by the loop
        self._arriving_lock = threading.Lock()
        self._writers, self._most = 0, writers
        self.commits = 0  # batches committed (for tests and benchmarks)

    def submit(self, item: T) -> concurrent.futures.Future[R]:
        """`item`'s result once its batch is committed (from any thread)."""
        future: concurrent.futures.Future[R] = concurrent.futures.Future()
        with self._arriving_lock:  # one wake-up of the loop for everything submitted before it runs, not one each
            self._arriving.append((item, future))
            wake = len(self._arriving) == 1
        if wake:
            try:
                self._loop.call_soon_threadsafe(self._arrived)
            except RuntimeError as exc:  # the loop is closed: nothing waiting here will be written, fail it all now
                with self._arriving_lock:
                    dropped, self._arriving = self._arriving, []
                for _, f in dropped:
                    if f is not future:
                        f.set_exception(exc)
                raise
        return future

    def _collect(self) -> None:
        with self._arriving_lock:
            arrived, self._arriving = self._arriving, []
        self._waiting.extend(arrived)

    def _arrived(self) -> None:
        self._collect()
        if self._waiting and self._writers < self._most:
            self._writers += 1
            self._loop.create_task(self._drain())

    async def _drain(self) -> None:
        try:
            while self._waiting or self._arriving:
                await self._commit_next()
        finally:
            self._writers -= 1

    def _take(self) -> list[tuple[T, concurrent.futures.Future[R]]]:
        self._collect()  # what other threads submitted up to this moment rides along
        group, self._waiting = self._waiting[:self._max], self._waiting[self._max:]
        return [(i, f) for i, f in group if f.set_running_or_notify_cancel()]

    async def _commit_next(self) -> None:
        """One commit of what is waiting once a connection is in hand: a writer that waited for one takes everything
        that arrived meanwhile (the group is taken then, not before)."""
        taken: list[tuple[T, concurrent.futures.Future[R]]] = []

        async def write(conn: asyncpg.Connection) -> list[R]:
            taken.extend(self._take())
            return await self._write(conn, [i for i, _ in taken]) if taken else []

        try:
            results = await self._run(write)
        except Exception as exc:  # noqa: BLE001 - handed to each caller
            if not taken:  # no connection at all (the database is gone): this group fails now, its callers retry
                taken.extend(self._take())
            await self._failed(taken, exc)
            return
        if taken:
            self.commits += 1
            self._resolve(taken, results)

    async def _commit(self, group: list[tuple[T, concurrent.futures.Future[R]]]) -> None:
        try:
            results = await self._run(lambda conn: self._write(conn, [i for i, _ in group]))
            self.commits += 1
        except Exception as exc:  # noqa: BLE001 - handed to each caller
            await self._failed(group, exc)
            return
        self._resolve(group, results)

    async def _failed(self, group: list[tuple[T, concurrent.futures.Future[R]]], exc: Exception) -> None:
        if len(group) > 1 and not isinstance(exc, self._temporary):
            for one in group:  # a bad item fails alone: the others are stored on their own
                await self._commit([one])
            return
        for _, f in group:
            f.set_exception(exc)

    @staticmethod
    def _resolve(group: list[tuple[T, concurrent.futures.Future[R]]], results: list[R]) -> None:
        for (_, f), result in zip(group, results):
            f.set_result(result)
