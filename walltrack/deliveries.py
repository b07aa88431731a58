"""Stored deliveries to the actors: the start-up replay, the inbox sweep, and the backlog a database outage left.

A delivery the gateway stored is handed to the actors (through the edge) in order, with the wallets still to observe it and its
age; its token's safety verdict is fetched meanwhile (screened concurrently, decided in order). The store
records each (signature, wallet) once, so a delivery handed out twice is decided once all the same.
"""

from __future__ import annotations

from typing import Any, Callable

import structlog

from actors.messages import Deliver
from storage import repo

log = structlog.get_logger("walltrack")

Pending = list[tuple[str, str, tuple[str, ...], float]]  # (signature, payload, wallets to observe it, age in s)


class Deliveries:
    def __init__(self, actors: Any, store: repo.Store, prefetch_safety: Callable[[str, tuple[str, ...]], None],
                 clock: Callable[[], float], sweep_after_s: float) -> None:
        self._actors, self._store, self._prefetch, self._clock = actors, store, prefetch_safety, clock
        self.sweep_after_s = sweep_after_s

    def hand_out(self, pending: Pending) -> None:
        """Stored deliveries to the actors, in order, with the wallets still to observe each and their age (s)."""
        now = self._clock()
        for signature, payload, todo, age_s in pending:
            self._actors.tell(Deliver(signature, payload, todo, received_at=now - age_s))
            self._prefetch(payload, todo)  # screen the backlog concurrently, decide in order

    def replay(self) -> int:
        """At start: every delivery stored and not yet processed (what the last run left). Returns how many."""
        pending = self._store.run(repo.pending_deliveries)
        self.hand_out(pending)
        return len(pending)

    async def hand_out_older_than(self, seconds: float) -> Pending:
        """What is still unprocessed `seconds` after its receipt, handed out again (on the store's loop)."""
        async with self._store.pool.acquire() as conn:
            stuck = await repo.pending_deliveries(conn, seconds)
        self.hand_out(stuck)
        return stuck

    async def sweep(self) -> None:
        """The inbox sweep: hand the actors again what was stored but is still unprocessed long after — a delivery
        whose commit outlived its connection (acknowledged to Helius later as a duplicate, so never dispatched), or
        one lost with a crashed actor's mailbox."""
        stuck = await self.hand_out_older_than(self.sweep_after_s)
        if stuck:
            log.warning("inbox_swept", deliveries=len(stuck), older_than_s=self.sweep_after_s,
                        signatures=[d[0] for d in stuck[:5]])
