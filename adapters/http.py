"""The resilience layer every outbound adapter uses, on trio: a rate-limit budget, retries, a breaker.

One `Provider` per external service (Jupiter, DexScreener, ...), shared by every client that talks to
it — Jupiter's Price, Quote and Swap APIs draw on ONE budget, as Jupiter counts them. A provider owns:

- a token bucket (`Policy.rate_per_s`, `Policy.burst`) and a *hold* set by `Retry-After` (on 429 and
  503) or Jupiter's `x-ratelimit-reset`: the next call to that provider, whichever API it is for,
  waits until both allow it;
- tenacity retries of `TemporaryError`, exponential backoff with jitter, never sooner than the
  provider's `Retry-After`;
- a circuit breaker: closed → open after `failure_threshold` consecutive failed attempts → half-open
  after `cooldown_s`, when exactly one probe goes through → closed if it succeeds, open again if not;
- counters for `/health` (`Provider.state()`).

Timeouts are trio cancel scopes. The caller bounds a whole call (retries and budget waits included)
with its own `trio.move_on_after`/`fail_after`; the provider bounds each *attempt* with
`Policy.attempt_timeout_s`, so a provider that hangs counts as a failure for its breaker.

Errors are named by what the caller should do::

    ProviderError
     ├── TemporaryError        retry later (network error, attempt timeout, 5xx, 408); `.retry_after`
     │    └── RateLimited      429, or our own budget would wait longer than `Policy.max_wait_s`
     ├── ProviderUnavailable   the breaker is open: do not call; use another source or fail closed
     ├── BadResponse           a 2xx whose body is not JSON or not the expected shape: use another source
     └── RequestRejected       another 4xx: the request is wrong or refused (e.g. no route); do not retry

`ResilientClient` is the HTTP side: it turns httpx outcomes into those errors, and runs an adapter's
`parse` inside the attempt so a malformed body counts against the provider.
"""

from __future__ import annotations

import email.utils
import math
import time
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any, Awaitable, Callable, Mapping, TypeVar

import httpx
import structlog
import trio
from pydantic import ValidationError
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt, wait_exponential_jitter
from tenacity.stop import stop_base

log = structlog.get_logger("adapters")

T = TypeVar("T")

# Observers of every attempt sent: (provider, outcome "ok" | "error" | "rate_limited" | "rejected", seconds).
# `operations.metrics` counts them; a hook must be quick (it runs on the trio runtime).
ATTEMPT_HOOKS: list[Callable[[str, str, float], None]] = []


# -- errors -------------------------------------------------------------------------------------------
class ProviderError(Exception):
    """Base of every error an adapter raises. `provider` names the service."""

    def __init__(self, message: str, *, provider: str = "") -> None:
        super().__init__(message)
        self.provider = provider


class TemporaryError(ProviderError):
    """Worth retrying later. `retry_after` (seconds) when the provider said how long to wait."""

    def __init__(self, message: str, *, provider: str = "", retry_after: float | None = None,
                 status: int | None = None) -> None:
        super().__init__(message, provider=provider)
        self.retry_after = retry_after
        self.status = status


class RateLimited(TemporaryError):
    """Over the provider's rate limit (429), or our own budget would make the call wait longer than
    `Policy.max_wait_s` (`local=True`: nothing was sent). Not a sign of ill health: the breaker ignores it."""

    def __init__(self, message: str, *, provider: str = "", retry_after: float | None = None,
                 status: int | None = None, local: bool = False) -> None:
        super().__init__(message, provider=provider, retry_after=retry_after, status=status)
        self.local = local


class ProviderUnavailable(ProviderError):
    """The provider's breaker is open (or its half-open probe is in flight): the call was not made."""

    def __init__(self, message: str, *, provider: str = "", retry_after: float = 0.0) -> None:
        super().__init__(message, provider=provider)
        self.retry_after = retry_after


class BadResponse(ProviderError):
    """The provider answered, but the body is not JSON or not the shape we rely on."""


class RequestRejected(ProviderError):
    """A 4xx other than 408/429: the request is invalid or refused. Retrying the same request is pointless."""

    def __init__(self, message: str, *, provider: str = "", status: int = 400, body: Any = None) -> None:
        super().__init__(message, provider=provider)
        self.status = status
        self.body = body


# -- policy -------------------------------------------------------------------------------------------
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


# -- provider -----------------------------------------------------------------------------------------
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


# -- HTTP ---------------------------------------------------------------------------------------------
def _identity(x: Any) -> Any:
    return x


def retry_after_seconds(headers: Mapping[str, str], wall_now: float | None = None) -> float | None:
    """Seconds to wait from `Retry-After` (delta-seconds or HTTP-date), else Jupiter's
    `x-ratelimit-reset` (unix seconds). None when neither says."""
    now = time.time() if wall_now is None else wall_now
    value = headers.get("retry-after")
    if value:
        value = value.strip()
        try:
            return max(0.0, float(value))
        except ValueError:
            try:
                return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - now)
            except (TypeError, ValueError):
                pass
    reset = headers.get("x-ratelimit-reset")
    if reset:
        try:
            return max(0.0, float(reset) - now)
        except ValueError:
            pass
    return None


def _body(resp: httpx.Response) -> Any:
    try:
        return resp.json()
    except ValueError:
        return resp.text[:500]


class ResilientClient:
    """JSON over HTTP through a `Provider`. Several clients may share one provider (one budget).

    `base_url` is the service root (e.g. `https://api.jup.ag` or `http://127.0.0.1:PORT/jupiter`);
    `transport` is passed to httpx (tests of other projects use it; ours use the sandbox over HTTP).
    No httpx timeout is set: attempts are bounded by the provider, calls by the caller's cancel scope.
    """

    def __init__(self, provider: Provider, base_url: str, *, headers: Mapping[str, str] | None = None,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.provider = provider
        self.base_url = base_url.rstrip("/")
        self._http = httpx.AsyncClient(base_url=self.base_url, headers=dict(headers or {}), timeout=None,
                                       transport=transport, follow_redirects=False)

    async def get(self, path: str, *, params: Mapping[str, Any] | None = None,
                  parse: Callable[[Any], T] = _identity) -> T:
        return await self.request("GET", path, params=params, parse=parse)

    async def post(self, path: str, *, json: Any, parse: Callable[[Any], T] = _identity, attempts: int | None = None) -> T:
        return await self.request("POST", path, json=json, parse=parse, attempts=attempts)

    async def request(self, method: str, path: str, *, params: Mapping[str, Any] | None = None, json: Any = None,
                      parse: Callable[[Any], T] = _identity, attempts: int | None = None) -> T:
        """One logical call: retried per the provider's policy; `parse(json_body)` runs inside each attempt
        (a ValidationError/ValueError/TypeError/KeyError there is a BadResponse)."""

        async def attempt() -> T:
            return self._interpret(await self._send(method, path, params, json), parse)

        return await self.provider.call(attempt, attempts=attempts)

    async def _send(self, method: str, path: str, params: Mapping[str, Any] | None, json: Any) -> httpx.Response:
        name = self.provider.name
        try:
            return await self._http.request(method, path, params=params, json=json)
        except httpx.RequestError as exc:  # connect/read/write errors, protocol errors, undecodable content
            raise TemporaryError(f"{name}: {type(exc).__name__}: {exc}", provider=name) from exc

    def _interpret(self, resp: httpx.Response, parse: Callable[[Any], T]) -> T:
        name, status = self.provider.name, resp.status_code
        if status == 429:
            raise RateLimited(f"{name}: HTTP 429", provider=name, status=status,
                              retry_after=retry_after_seconds(resp.headers))
        if status >= 500 or status == 408:
            after = retry_after_seconds(resp.headers) if status == 503 else None
            raise TemporaryError(f"{name}: HTTP {status}", provider=name, status=status, retry_after=after)
        if status >= 400:
            body = _body(resp)
            raise RequestRejected(f"{name}: HTTP {status}: {str(body)[:200]}", provider=name, status=status, body=body)
        if not 200 <= status < 300:
            raise BadResponse(f"{name}: unexpected HTTP {status}", provider=name)
        try:
            data = resp.json()
        except ValueError as exc:
            raise BadResponse(f"{name}: body is not JSON ({resp.text[:80]!r})", provider=name) from exc
        try:
            return parse(data)
        except BadResponse:
            raise
        except (ValidationError, ValueError, TypeError, KeyError) as exc:
            raise BadResponse(f"{name}: unexpected body shape: {str(exc)[:300]}", provider=name) from exc

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> "ResilientClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
