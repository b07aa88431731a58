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

Errors are named by what the caller should do (adapters/errors.py); the budget and the breaker are in
adapters/budget.py, the provider that runs them in adapters/provider.py. This module is the HTTP side and
names the layer's public parts, so an adapter imports them from one place.

`ResilientClient` is the HTTP side: it turns httpx outcomes into those errors, and runs an adapter's
`parse` inside the attempt so a malformed body counts against the provider.
"""

from __future__ import annotations

import email.utils
import functools
import ssl
import time
from typing import Any, Awaitable, Callable, Iterable, Mapping, Self, TypeVar

import certifi
import httpx
from pydantic import ValidationError

from adapters.budget import BreakerState, CircuitBreaker, Policy, TokenBucket
from adapters.errors import (
    BadResponse,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
    RequestRejected,
    TemporaryError,
)
from adapters.provider import ATTEMPT_HOOKS, Provider, ProviderState

__all__ = [
    "ATTEMPT_HOOKS", "BadResponse", "BreakerState", "CircuitBreaker", "Closes", "Policy", "Provider", "ProviderError",
    "ProviderState", "ProviderUnavailable", "RateLimited", "RequestRejected", "ResilientClient", "TemporaryError", "batched",
    "TokenBucket", "retry_after_seconds",
]

T = TypeVar("T")
V = TypeVar("V")


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


class Closes:
    """`aclose()` and `async with` for a client whose connections are `self._http` (an httpx client, or a
    `ResilientClient` an adapter wraps)."""

    _http: Any

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


async def batched(keys: Iterable[str], size: int, call: Callable[[list[str]], Awaitable[dict[str, V]]]) -> dict[str, V]:
    """`call` on at most `size` distinct keys at a time, one call after another, the answers merged. Any failing call
    raises (a batch endpoint's limit, e.g. Jupiter's 50 ids or DexScreener's 30 addresses)."""
    distinct = list(dict.fromkeys(keys))
    out: dict[str, V] = {}
    for i in range(0, len(distinct), size):
        out.update(await call(distinct[i:i + size]))
    return out


@functools.cache
def _tls() -> ssl.SSLContext:
    """One TLS context (httpx's default: certifi's roots) for every client: loading the roots costs ~40 ms each."""
    return ssl.create_default_context(cafile=certifi.where())


class ResilientClient(Closes):
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
                                       transport=transport, follow_redirects=False, verify=_tls())

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
