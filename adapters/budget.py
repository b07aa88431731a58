"""A provider's limits: its `Policy`, the token bucket of its rate budget, and its circuit breaker (closed →
open after `failure_threshold` consecutive failed attempts → half-open after `cooldown_s`, when exactly one
probe goes through → closed if it succeeds, open again if not). Pure state on a caller-given clock."""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

from adapters.errors import ProviderUnavailable


@dataclass(frozen=True)
class Policy:
    """How hard we may lean on one provider. Every duration is in seconds."""

    rate_per_s: float  # sustained request rate (token bucket refill)
    burst: float | None = None  # bucket capacity; default max(1, rate_per_s): one second's worth
    attempts: int = 3  # tries per call, the first included
    backoff_initial_s: float = 0.25  # first retry waits about this long (then doubles), plus jitter
    backoff_max_s: float = 8.0
    backoff_jitter_s: float = 0.25
    attempt_timeout_s: float = 10.0  # one HTTP attempt; expiry is a TemporaryError and a breaker failure
    failure_threshold: int = 5  # consecutive failed attempts that open the breaker
    cooldown_s: float = 30.0  # open → half-open
    max_wait_s: float = math.inf  # longest a call waits for the budget/hold before RateLimited(local=True)
    default_retry_after_s: float = 1.0  # hold after a 429 that names no delay

    def __post_init__(self) -> None:
        if self.rate_per_s <= 0:
            raise ValueError("rate_per_s must be > 0")
        if self.attempts < 1 or self.failure_threshold < 1:
            raise ValueError("attempts and failure_threshold must be >= 1")

    @property
    def capacity(self) -> float:
        return self.burst if self.burst is not None else max(1.0, self.rate_per_s)


# -- token bucket -------------------------------------------------------------------------------------
class TokenBucket:
    """A token bucket on an injected monotonic clock (seconds). Starts full."""

    def __init__(self, rate_per_s: float, capacity: float) -> None:
        self.rate = rate_per_s
        self.capacity = capacity
        self._tokens = capacity
        self._updated: float | None = None

    def _refill(self, now: float) -> None:
        if self._updated is not None and now > self._updated:
            self._tokens = min(self.capacity, self._tokens + (now - self._updated) * self.rate)
        self._updated = now if self._updated is None else max(self._updated, now)

    def wait_time(self, now: float) -> float:
        """Seconds until one token is available (0 when one is)."""
        self._refill(now)
        return 0.0 if self._tokens >= 1 else (1 - self._tokens) / self.rate

    def take(self, now: float) -> None:
        self._refill(now)
        self._tokens -= 1


# -- circuit breaker ----------------------------------------------------------------------------------
class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """closed → open after `threshold` consecutive failures → half-open after `cooldown_s` (one probe)
    → closed on the probe's success, open again (cooldown restarts) on its failure.

    Pure logic on timestamps passed in; `Provider` feeds it. `acquire` returns whether the caller is
    the half-open probe, which the caller hands back to exactly one of the `on_*` methods.
    """

    def __init__(self, threshold: int, cooldown_s: float) -> None:
        self.threshold = threshold
        self.cooldown_s = cooldown_s
        self.consecutive_failures = 0
        self._open = False
        self._opened_at = 0.0
        self._probing = False

    def state(self, now: float) -> BreakerState:
        if not self._open:
            return BreakerState.CLOSED
        return BreakerState.HALF_OPEN if now >= self._opened_at + self.cooldown_s else BreakerState.OPEN

    def reopens_in(self, now: float) -> float:
        return max(0.0, self._opened_at + self.cooldown_s - now) if self._open else 0.0

    def acquire(self, now: float) -> bool:
        """May a call go out now? Raises ProviderUnavailable if not; True if this call is the probe."""
        state = self.state(now)
        if state is BreakerState.CLOSED:
            return False
        if state is BreakerState.HALF_OPEN and not self._probing:
            self._probing = True
            return True
        raise ProviderUnavailable("circuit open", retry_after=self.reopens_in(now))

    def on_success(self, probe: bool) -> bool:
        """Record a success; True if it closed the breaker."""
        if probe:
            self._probing = False
            self._open = False
            self.consecutive_failures = 0
            return True
        if not self._open:
            self.consecutive_failures = 0
        return False

    def on_failure(self, now: float, probe: bool) -> bool:
        """Record a failure; True if it (re)opened the breaker."""
        self.consecutive_failures += 1
        if probe:
            self._probing = False
            self._opened_at = now
            return True
        if not self._open and self.consecutive_failures >= self.threshold:
            self._open = True
            self._opened_at = now
            return True
        return False

    def on_neutral(self, probe: bool) -> None:
        """The attempt told us nothing about health (429, cancelled): free the probe slot."""
        if probe:
            self._probing = False
