"""OTP-style supervision decisions: child specs, restart strategies, restart intensity, backoff.

Pure and clock-injected, so the rules are tested without threads; the supervisor actors apply them.

- `Restart`: PERMANENT children are always restarted, TRANSIENT only after an abnormal exit,
  TEMPORARY never (they are removed).
- `Strategy`: ONE_FOR_ONE restarts the failed child only; REST_FOR_ONE also restarts every child started
  after it (stopped in reverse order first, started again in order).
- `Intensity`: more than `max_restarts` restarts within `period_s` escalates instead of restarting — the
  failure goes to the parent; at the root it trips the global breaker. Keep it low at the root: restart
  counts multiply across levels.
- `Backoff`: the n-th restart within the period waits initial·2^(n-1), capped at `max_s`, ± `jitter`.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Callable, Sequence


class Restart(StrEnum):
    PERMANENT = "permanent"
    TRANSIENT = "transient"
    TEMPORARY = "temporary"


class Strategy(StrEnum):
    ONE_FOR_ONE = "one_for_one"
    REST_FOR_ONE = "rest_for_one"


@dataclass(frozen=True)
class Intensity:
    max_restarts: int = 3
    period_s: float = 5.0


@dataclass(frozen=True)
class Backoff:
    initial_s: float = 0.1
    max_s: float = 5.0
    jitter: float = 0.2  # ± fraction of the delay

    def delay(self, n: int, rng: random.Random) -> float:
        base = min(self.max_s, self.initial_s * 2 ** max(0, n - 1))
        return max(0.0, base * (1 + rng.uniform(-self.jitter, self.jitter)))


@dataclass(frozen=True)
class RestartChildren:
    stop: tuple[str, ...]  # in this order (reverse start order)
    start: tuple[str, ...]  # in this order (start order)
    delay_s: float


@dataclass(frozen=True)
class Escalate:
    reason: str


@dataclass(frozen=True)
class Remove:
    child: str


Decision = RestartChildren | Escalate | Remove | None


@dataclass
class RestartPolicy:
    strategy: Strategy = Strategy.ONE_FOR_ONE
    intensity: Intensity = field(default_factory=Intensity)
    backoff: Backoff = field(default_factory=Backoff)
    clock: Callable[[], float] = field(default=__import__("time").monotonic)
    rng: random.Random = field(default_factory=random.Random)
    _restarts: deque[float] = field(default_factory=deque)

    def on_exit(self, child: str, restart: Restart, abnormal: bool, order: Sequence[str], reason: str = "") -> Decision:
        """What to do when `child` (one of `order`, the children in start order) exits."""
        if restart is Restart.TEMPORARY or (restart is Restart.TRANSIENT and not abnormal):
            return Remove(child)
        now = self.clock()
        while self._restarts and now - self._restarts[0] > self.intensity.period_s:
            self._restarts.popleft()
        if len(self._restarts) >= self.intensity.max_restarts:
            return Escalate(f"{child} failed {len(self._restarts) + 1} times within {self.intensity.period_s:g} s"
                            + (f": {reason}" if reason else ""))
        self._restarts.append(now)
        delay = self.backoff.delay(len(self._restarts), self.rng)
        if self.strategy is Strategy.REST_FOR_ONE and child in order:
            rest = tuple(order[order.index(child):])
            return RestartChildren(stop=tuple(reversed(rest[1:])), start=rest, delay_s=delay)
        return RestartChildren(stop=(), start=(child,), delay_s=delay)

    @property
    def recent_restarts(self) -> int:
        return len(self._restarts)
