"""Fault injection for the sandbox services: latency, timeouts, 429 with Retry-After, 5xx, malformed
bodies, and tokens silently missing from price responses. One `Faults` per service, changeable at run
time (tests flip them while the bot runs)."""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field


@dataclass
class Faults:
    latency_s: float = 0.0  # added to every response
    timeout: bool = False  # hang past any sane client timeout (the request is never answered in time)
    error_status: int | None = None  # e.g. 500, 502, 503 for every request
    error_rate: float = 0.0  # fraction of requests answered with `error_status or 500`
    rate_limited: bool = False  # answer 429 with Retry-After
    retry_after_s: int = 2
    malformed: bool = False  # a 200 whose body is not valid JSON
    missing: set[str] = field(default_factory=set)  # ids silently dropped from price responses
    stalled: bool = False  # helius: the poster stops delivering (every delivery is missed) while the market trades
    requests: int = 0  # requests seen (for tests)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _rng: random.Random = field(default_factory=lambda: random.Random(0), repr=False)

    def count(self) -> int:
        with self._lock:
            self.requests += 1
            return self.requests

    def roll_error(self) -> bool:
        with self._lock:
            return self.error_rate > 0 and self._rng.random() < self.error_rate

    def clear(self) -> None:
        self.latency_s, self.timeout, self.error_status, self.error_rate = 0.0, False, None, 0.0
        self.rate_limited, self.malformed, self.stalled = False, False, False
        self.missing = set()


SERVICES = ("helius", "jupiter", "dexscreener", "rugcheck", "rpc", "helius_api", "telegram", "hooks")


class FaultBoard:
    """The faults of every sandbox service, by name."""

    def __init__(self) -> None:
        self.by_service: dict[str, Faults] = {name: Faults() for name in SERVICES}

    def __getitem__(self, service: str) -> Faults:
        return self.by_service[service]
