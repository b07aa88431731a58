"""What the actors need from the outside world, as Protocols. Adapters live in `walltrack/`.

Every call returns a `concurrent.futures.Future` at once: actors never block on I/O; the shell turns
the outcome into a message (`Persisted`) in the actor's own mailbox.
"""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass
import time
from decimal import Decimal
from typing import Any, Callable, Protocol

from actors.messages import JournalEvent, Observation, RecordResult


class Store(Protocol):
    def record_observation(self, obs: Observation) -> Future[RecordResult]: ...

    def append_position_events(self, position_id: int, events: tuple[JournalEvent, ...], projection: dict[str, Any]) -> Future[None]: ...

    def wallet_open_positions(self, wallet: str) -> Future[dict[str, dict[str, frozenset[int]]]]:
        """{"open": mint -> position ids, "shadow": mint -> shadow position ids}, not yet closed."""
        ...

    def position_journal(self, position_id: int) -> Future[tuple[JournalEvent, ...]]: ...


class Safety(Protocol):
    """Token safety verdicts: a future of an object with `.passed`, `.reason` and `.as_json()`."""

    def assess(self, mint: str) -> Future[Any]: ...


class Scheduler(Protocol):
    def call_later(self, delay: float, fn: Callable[[], Any]) -> None: ...


@dataclass(frozen=True)
class CopyRules:
    """Global copy defaults (per-wallet overrides arrive with the trading engine)."""

    fixed_sol: Decimal = Decimal("0.1")
    fixed_usd: Decimal = Decimal("20")


@dataclass(frozen=True)
class Ports:
    store: Store
    scheduler: Scheduler
    rules: CopyRules = CopyRules()
    safety: Safety | None = None  # None: no safety screening (tests of the bare spine)
    clock: Callable[[], float] = time.time
