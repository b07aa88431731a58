"""`Provider`: the budget, retry policy and breaker of one external service, shared by every client that talks
to it (adapters/http.py has the overview). Retries are tenacity's, exponential with jitter, never sooner than
the provider's `Retry-After`; each attempt is bounded by `Policy.attempt_timeout_s` (a trio cancel scope)."""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Any, Awaitable, Callable, TypeVar

import structlog
import trio
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt, wait_exponential_jitter
from tenacity.stop import stop_base

from adapters.budget import BreakerState, CircuitBreaker, Policy, TokenBucket
from adapters.errors import (
    BadResponse,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
    RequestRejected,
    TemporaryError,
)

log = structlog.get_logger("adapters")

T = TypeVar("T")

# Observers of every attempt sent: (provider, outcome "ok" | "error" | "rate_limited" | "rejected", seconds).
# `operations.metrics` counts them; a hook must be quick (it runs on the trio runtime).
ATTEMPT_HOOKS: list[Callable[[str, str, float], None]] = []


@dataclass(frozen=True)
class ProviderState:
    """A snapshot for /health."""

    name: str
    breaker: BreakerState
    consecutive_failures: int
    failures: int  # failed attempts since start
    requests: int  # attempts sent since start
    last_error: str | None
    last_error_at: float | None  # unix seconds
    last_success_at: float | None  # unix seconds
    next_allowed_in_s: float  # until the rate budget, a Retry-After hold, or the breaker lets a call out
    rate_per_s: float

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["breaker"] = str(self.breaker)
        return d


class _StopIfHoldTooLong(stop_base):
    """Stop retrying when the provider asked us to wait longer than the caller is willing to."""

    def __init__(self, max_wait_s: float) -> None:
        self.max_wait_s = max_wait_s

    def __call__(self, retry_state: RetryCallState) -> bool:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        after = getattr(exc, "retry_after", None)
        return after is not None and after > self.max_wait_s


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, TemporaryError) and not (isinstance(exc, RateLimited) and exc.local)


class Provider:
    """The budget, retry policy and breaker for one external service. Use from one trio run.

    `clock` is a monotonic clock in seconds (default `trio.current_time`, so pytest-trio's
    `autojump_clock` drives backoff, holds and cooldowns in tests); `wall_clock` stamps `state()`.
    """

    def __init__(self, name: str, policy: Policy, *, clock: Callable[[], float] = trio.current_time,
                 wall_clock: Callable[[], float] = time.time) -> None:
        self.name = name
        self.policy = policy
        self._clock = clock
        self._wall = wall_clock
        self._bucket = TokenBucket(policy.rate_per_s, policy.capacity)
        self._breaker = CircuitBreaker(policy.failure_threshold, policy.cooldown_s)
        self._hold_until = -math.inf
        self._lock = trio.Lock()  # FIFO: callers leave the budget in arrival order
        self.requests = 0
        self.failures = 0
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self.last_success_at: float | None = None

    # -- public -----------------------------------------------------------------------------------
    async def call(self, attempt: Callable[[], Awaitable[T]], *, attempts: int | None = None) -> T:
        """Run `attempt` under the budget, the breaker and the retry policy; return its result.

        `attempt` raises this module's errors to say how it went (ResilientClient's attempts do). `attempts`
        overrides the policy's tries for this call (1: the caller retries itself and must know what one try said).
        """
        p = self.policy
        retrying = AsyncRetrying(
            stop=stop_after_attempt(attempts or p.attempts) | _StopIfHoldTooLong(p.max_wait_s),
            wait=self._backoff,
            retry=retry_if_exception(_retryable),
            sleep=trio.sleep,
            reraise=True,
        )
        async for try_ in retrying:
            with try_:
                result = await self._attempt(attempt)
        return result  # type: ignore[possibly-undefined]

    def hold(self, seconds: float) -> None:
        """No call to this provider leaves before `seconds` from now (Retry-After)."""
        self._hold_until = max(self._hold_until, self._clock() + seconds)

    @property
    def breaker(self) -> BreakerState:
        return self._breaker.state(self._clock())

    def state(self) -> ProviderState:
        now = self._clock()
        budget = max(self._hold_until - now, self._bucket.wait_time(now), self._breaker.reopens_in(now), 0.0)
        return ProviderState(
            name=self.name,
            breaker=self._breaker.state(now),
            consecutive_failures=self._breaker.consecutive_failures,
            failures=self.failures,
            requests=self.requests,
            last_error=self.last_error,
            last_error_at=self.last_error_at,
            last_success_at=self.last_success_at,
            next_allowed_in_s=round(budget, 3),
            rate_per_s=self.policy.rate_per_s,
        )

    # -- internals --------------------------------------------------------------------------------
    def _backoff(self, retry_state: RetryCallState) -> float:
        p = self.policy
        base = wait_exponential_jitter(multiplier=p.backoff_initial_s, max=p.backoff_max_s,
                                       jitter=p.backoff_jitter_s)(retry_state)
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        return max(base, getattr(exc, "retry_after", None) or 0.0)

    async def _wait_budget(self) -> None:
        async with self._lock:
            deadline = self._clock() + self.policy.max_wait_s
            while True:
                now = self._clock()
                wait = max(self._hold_until - now, self._bucket.wait_time(now))
                if wait <= 0:
                    self._bucket.take(now)
                    return
                if now + wait > deadline:
                    raise RateLimited(f"{self.name}: budget allows the next call in {wait:.2f}s", provider=self.name,
                                      retry_after=wait, local=True)
                await trio.sleep(wait)

    async def _attempt(self, attempt: Callable[[], Awaitable[T]]) -> T:
        try:
            probe = self._breaker.acquire(self._clock())
        except ProviderUnavailable as exc:
            exc.provider = self.name
            raise
        sent: float | None = None
        try:
            await self._wait_budget()
            self.requests += 1
            sent = self._clock()
            with trio.move_on_after(self.policy.attempt_timeout_s) as scope:
                result = await attempt()
            if scope.cancelled_caught:
                raise TemporaryError(f"{self.name}: no answer within {self.policy.attempt_timeout_s}s",
                                     provider=self.name)
        except RateLimited as exc:
            if not exc.local:
                self.hold(exc.retry_after if exc.retry_after is not None else self.policy.default_retry_after_s)
                self._note_error(exc)
                self._report("rate_limited", sent)
            self._breaker.on_neutral(probe)
            raise
        except (TemporaryError, BadResponse) as exc:
            if isinstance(exc, TemporaryError) and exc.retry_after:
                self.hold(exc.retry_after)
            self._failed(exc, probe)
            self._report("error", sent)
            raise
        except RequestRejected:
            self._succeeded(probe)  # the provider is healthy; the request was not
            self._report("rejected", sent)
            raise
        except BaseException:
            self._breaker.on_neutral(probe)  # cancelled by the caller, or a bug: no verdict on health
            raise
        self._succeeded(probe)
        self._report("ok", sent)
        return result

    def _report(self, outcome: str, sent: float | None) -> None:
        if sent is not None:
            for hook in tuple(ATTEMPT_HOOKS):
                hook(self.name, outcome, max(0.0, self._clock() - sent))

    def _note_error(self, exc: ProviderError) -> None:
        self.last_error = f"{type(exc).__name__}: {exc}"
        self.last_error_at = self._wall()

    def _failed(self, exc: ProviderError, probe: bool) -> None:
        self.failures += 1
        self._note_error(exc)
        if self._breaker.on_failure(self._clock(), probe):
            log.warning("breaker_open", provider=self.name, failures=self._breaker.consecutive_failures,
                        cooldown_s=self.policy.cooldown_s, error=self.last_error)
        else:
            log.info("provider_attempt_failed", provider=self.name, error=self.last_error)

    def _succeeded(self, probe: bool) -> None:
        self.last_success_at = self._wall()
        if self._breaker.on_success(probe):
            log.info("breaker_closed", provider=self.name)
