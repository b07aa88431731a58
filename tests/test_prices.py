"""Prices and the resilience layer, against the real sandbox Jupiter and DexScreener over HTTP.

The sandbox servers run on their own trio thread (`walltrack.bridge.TrioThread`); the clients run in
the test's trio run. Faults are flipped on the sandbox (`sandbox.faults.Faults`), and an app-level hook
records every request the sandbox receives (service, path, query, monotonic time) so tests count calls
and measure delays on the server side. Pure backoff/breaker logic runs on trio's MockClock.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Callable, Iterator

import pytest
import trio
from quart import request

from sandbox import dexscreener as sandbox_dex
from sandbox import jupiter as sandbox_jup
from sandbox.faults import FaultBoard, Faults
from sandbox.market import USDC_MINT, WSOL_MINT, Market, pubkey
from sandbox.server import create_app, server_main
from adapters.dexscreener import DexScreenerClient
from adapters.http import (
    BadResponse,
    BreakerState,
    Policy,
    Provider,
    ProviderUnavailable,
    RateLimited,
    TemporaryError,
)
from adapters.jupiter import JupiterClient
from walltrack.bridge import TrioThread
from intelligence.prices import PriceMonitor, PriceQuote, PriceService


# -- the sandbox, over HTTP ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Hit:
    service: str
    path: str
    query: dict[str, str]
    at: float  # time.monotonic() on arrival
    api_key: str | None = None  # the x-api-key header, if sent


@dataclass
class Sandbox:
    port: int
    market: Market
    faults: FaultBoard
    hits: list[Hit]
    on_response: list[Callable[[str, int], None]] = field(default_factory=list)  # scripts run per (service, status)

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.port}/{service}"

    def hits_of(self, service: str) -> list[Hit]:
        return [h for h in list(self.hits) if h.service == service]

    @property
    def jupiter(self) -> Faults:
        return self.faults["jupiter"]

    @property
    def dexscreener(self) -> Faults:
        return self.faults["dexscreener"]

    def mint(self, symbol: str) -> str:
        return self.market.by_symbol[symbol].mint


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    market, board, hits = Market(seed=7), FaultBoard(), []
    history = sandbox_jup.PriceHistory(market)
    app = create_app({
        "jupiter": sandbox_jup.blueprint(market, board["jupiter"], history),
        "dexscreener": sandbox_dex.blueprint(market, board["dexscreener"], history),
    })
    box = Sandbox(0, market, board, hits)

    @app.before_request  # app-level hooks run before the blueprints' fault injection
    async def record() -> None:
        hits.append(Hit(request.path.split("/")[1], request.path, dict(request.args), time.monotonic(),
                        request.headers.get("x-api-key")))

    @app.after_request  # also after a fault's early answer: scripts can change faults between requests
    async def script(response: Any) -> Any:
        for fn in list(box.on_response):
            fn(request.path.split("/")[1], response.status_code)
        return response

    thread = TrioThread(server_main(app), name="sandbox-http")
    box.port = thread.start()
    try:
        yield box
    finally:
        thread.stop()


def jupiter(box: Sandbox, **policy: Any) -> JupiterClient:
    return JupiterClient(box.url("jupiter"), tier=policy.pop("tier", "pro"), **policy)


def dexscreener(box: Sandbox, **policy: Any) -> DexScreenerClient:
    return DexScreenerClient(box.url("dexscreener"), rate_per_s=policy.pop("rate_per_s", 50.0), **policy)


def unknown_mint(i: int) -> str:
    return pubkey(f"not-a-token:{i}")


def never_zero(quotes: dict[str, PriceQuote]) -> None:
    for q in quotes.values():
        assert q.usd is None or q.usd > 0, q
        assert (q.usd is None) == q.unknown, q


CLEAN = ("MOON", "STDY", "CHOP", "USDX")


# -- (1) Jupiter failing: DexScreener serves; the breaker opens, then a half-open probe closes it ------
@pytest.mark.trio
@pytest.mark.parametrize("fault", ["error_500", "timeout"])
async def test_jupiter_down_prices_come_from_dexscreener_and_breaker_recovers(sandbox: Sandbox, fault: str) -> None:
    mints = [sandbox.mint(s) for s in CLEAN]
    if fault == "error_500":
        sandbox.jupiter.error_status = 500
    else:
        sandbox.jupiter.timeout = True
    async with jupiter(sandbox, attempts=1, failure_threshold=2, cooldown_s=0.5, attempt_timeout_s=0.5) as jup, \
            dexscreener(sandbox) as dex:
        service = PriceService([jup, dex], source_timeout_s=5)
        with trio.fail_after(20):
            for _ in range(2):
                quotes = await service.prices(mints)
                never_zero(quotes)
                assert {q.source for q in quotes.values()} == {"dexscreener"}
                assert all(not q.unknown and not q.stale for q in quotes.values())
                # DexScreener's price is the sandbox market's price (6 significant digits on the wire)
                for m, q in quotes.items():
                    assert q.usd == pytest.approx(Decimal(str(sandbox.market.price_usd(m))), rel=Decimal("1e-5"))

            state = jup.provider.state()
            assert state.breaker is BreakerState.OPEN
            assert state.consecutive_failures == 2
            assert state.last_error and ("HTTP 500" in state.last_error or "no answer" in state.last_error)
            assert service.health()["jupiter"]["breaker"] == "open"

            # while open, Jupiter is not called at all, and prices keep coming
            seen = sandbox.jupiter.requests
            quotes = await service.prices(mints)
            assert {q.source for q in quotes.values()} == {"dexscreener"}
            assert sandbox.jupiter.requests == seen

            sandbox.jupiter.clear()  # Jupiter recovers
            while jup.provider.breaker is not BreakerState.HALF_OPEN:  # the cooldown elapses
                await trio.sleep(0.05)
            quotes = await service.prices(mints)
            assert {q.source for q in quotes.values()} == {"jupiter"}
            assert sandbox.jupiter.requests == seen + 1  # exactly one probe
            state = jup.provider.state()
            assert state.breaker is BreakerState.CLOSED and state.consecutive_failures == 0


# -- (2) Retry-After holds the whole provider -----------------------------------------------------------
@pytest.mark.trio
async def test_429_retry_after_delays_the_next_call_to_that_provider(sandbox: Sandbox) -> None:
    sandbox.jupiter.rate_limited = True
    sandbox.jupiter.retry_after_s = 2
    moon = sandbox.mint("MOON")
    async with jupiter(sandbox, attempts=1) as jup, dexscreener(sandbox) as dex:
        with trio.fail_after(15):
            with pytest.raises(RateLimited) as err:
                await jup.price_batch([moon])
            assert err.value.retry_after == 2 and not err.value.local
            assert jup.provider.state().next_allowed_in_s > 1.5
            assert jup.provider.breaker is BreakerState.CLOSED  # a 429 is not ill health
            limited_at = sandbox.hits_of("jupiter")[-1].at
            sandbox.jupiter.clear()

            # another provider is not held
            assert moon in await dex.best_pairs([moon])
            assert sandbox.hits_of("dexscreener")[-1].at - limited_at < 1.0

            # the next Jupiter call — to a different Jupiter API — waits out the Retry-After
            quote = await jup.quote(WSOL_MINT, moon, 10_000_000)
            assert quote.out_amount > 0
            hits = sandbox.hits_of("jupiter")
            assert len(hits) == 2 and hits[-1].path.endswith("/swap/v1/quote")
            assert hits[-1].at - limited_at >= 2.0


@pytest.mark.trio
async def test_retry_waits_retry_after_then_succeeds_within_one_call(sandbox: Sandbox) -> None:
    sandbox.jupiter.rate_limited = True
    sandbox.jupiter.retry_after_s = 2

    def lift_after_first(service: str, status: int) -> None:  # the provider limits the first request only
        if service == "jupiter" and status == 429:
            sandbox.on_response.clear()
            sandbox.jupiter.rate_limited = False

    sandbox.on_response.append(lift_after_first)
    moon = sandbox.mint("MOON")
    async with jupiter(sandbox, attempts=3, backoff_initial_s=0.1) as jup:
        with trio.fail_after(15):
            got = await jup.price_batch([moon])
    assert got[moon].usd_price > 0
    first, second = sandbox.hits_of("jupiter")
    assert second.at - first.at >= 2.0
    assert jup.provider.state().requests == 2


# -- (3) missing from every source: unknown, never zero; a stale last-known price ---------------------
@pytest.mark.trio
async def test_missing_everywhere_is_unknown_and_old_prices_turn_stale(sandbox: Sandbox) -> None:
    moon, stdy, chop = sandbox.mint("MOON"), sandbox.mint("STDY"), sandbox.mint("CHOP")
    ghost = unknown_mint(1)
    sandbox.jupiter.missing = {stdy, moon}
    sandbox.dexscreener.missing = {moon}
    now = [1_000_000.0]
    async with jupiter(sandbox) as jup, dexscreener(sandbox) as dex:
        service = PriceService([jup, dex], max_age_s=60, clock=lambda: now[0])
        quotes = await service.prices([moon, stdy, chop, ghost])
        never_zero(quotes)
        assert quotes[chop].source == "jupiter" and quotes[chop].usd and quotes[chop].usd > 0
        assert quotes[stdy].source == "dexscreener" and quotes[stdy].usd and quotes[stdy].usd > 0
        for m in (moon, ghost):
            q = quotes[m]
            assert q.unknown and q.usd is None and q.source is None and not q.stale
        # a token every source drops after we saw it: its last price, stale once older than max_age
        sandbox.jupiter.missing.add(chop)
        sandbox.dexscreener.missing.add(chop)
        seen_at = quotes[chop].at
        now[0] += 30
        young = (await service.prices([chop]))[chop]
        assert (young.usd, young.source, young.at, young.stale, young.unknown) == (quotes[chop].usd, "jupiter", seen_at, False, False)
        now[0] += 31
        old = (await service.prices([chop]))[chop]
        assert old.stale and not old.unknown and old.usd == quotes[chop].usd and old.at == seen_at
        # sources back: fresh again
        sandbox.jupiter.clear()
        fresh = (await service.prices([chop]))[chop]
        assert not fresh.stale and fresh.at == now[0] and fresh.source == "jupiter"


# -- (4) batching ---------------------------------------------------------------------------------------
@pytest.mark.trio
async def test_120_mints_take_3_jupiter_calls_and_dexscreener_at_most_30_per_call(sandbox: Sandbox) -> None:
    known = [*sandbox.market.tokens, WSOL_MINT, USDC_MINT]
    mints = known + [unknown_mint(i) for i in range(120 - len(known))]
    assert len(set(mints)) == 120
    async with jupiter(sandbox) as jup, dexscreener(sandbox) as dex:
        with trio.fail_after(20):
            quotes = await PriceService([jup, dex]).prices(mints)
    assert sandbox.jupiter.requests == 3
    jup_ids = [h.query["ids"].split(",") for h in sandbox.hits_of("jupiter")]
    assert sorted(len(ids) for ids in jup_ids) == [20, 50, 50]
    assert sorted(i for ids in jup_ids for i in ids) == sorted(mints)
    # DexScreener is asked only for what Jupiter omitted (the unknown mints), ≤ 30 per call
    n_unknown = 120 - len(known)
    dex_ids = [h.path.rsplit("/", 1)[1].split(",") for h in sandbox.hits_of("dexscreener")]
    assert sandbox.dexscreener.requests == len(dex_ids) == math.ceil(n_unknown / 30)
    assert all(len(ids) <= 30 for ids in dex_ids)
    assert sorted(i for ids in dex_ids for i in ids) == sorted(mints[len(known):])
    never_zero(quotes)
    assert sum(q.unknown for q in quotes.values()) == n_unknown
    assert all(quotes[m].source == "jupiter" for m in known)


@pytest.mark.trio
async def test_batch_limits_are_enforced_on_both_sides(sandbox: Sandbox) -> None:
    import httpx

    too_many_jup = [unknown_mint(i) for i in range(51)]
    too_many_dex = too_many_jup[:31]
    async with jupiter(sandbox) as jup, dexscreener(sandbox) as dex:
        with pytest.raises(ValueError):
            await jup.price_batch(too_many_jup)
        with pytest.raises(ValueError):
            await dex.pairs(too_many_dex)
        assert sandbox.jupiter.requests == 0 and sandbox.dexscreener.requests == 0  # refused before sending
        # the client-level helpers batch instead
        assert await jup.prices(too_many_jup) == {}
        assert sandbox.jupiter.requests == 2
    async with httpx.AsyncClient() as http:  # and the sandbox refuses oversized batches as the real APIs do
        r = await http.get(f"{sandbox.url('jupiter')}/price/v3", params={"ids": ",".join(too_many_jup)})
        assert r.status_code == 400 and "error" in r.json()
        r = await http.get(f"{sandbox.url('dexscreener')}/tokens/v1/solana/{','.join(too_many_dex)}")
        assert r.status_code == 400


@pytest.mark.trio
async def test_api_key_header_and_an_unreachable_jupiter(sandbox: Sandbox) -> None:
    import socket

    moon = sandbox.mint("MOON")
    async with JupiterClient(sandbox.url("jupiter"), api_key="k-test-123", tier="developer") as keyed, \
            jupiter(sandbox) as keyless:
        await keyed.price_batch([moon])
        await keyless.price_batch([moon])
    assert [h.api_key for h in sandbox.hits_of("jupiter")] == ["k-test-123", None]
    assert keyed.provider.policy.rate_per_s == 10 and keyless.provider.policy.rate_per_s == 150

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]
    async with JupiterClient(f"http://127.0.0.1:{dead_port}/jupiter", tier="pro", attempts=2,
                             backoff_initial_s=0.01) as dead, dexscreener(sandbox) as dex:
        with pytest.raises(TemporaryError):
            await dead.price_batch([moon])
        assert dead.provider.state().failures == 2  # retried once, both attempts counted
        quotes = await PriceService([dead, dex]).prices([moon])
        assert quotes[moon].source == "dexscreener" and quotes[moon].usd and quotes[moon].usd > 0


# -- (5) malformed bodies ---------------------------------------------------------------------------------
@pytest.mark.trio
async def test_malformed_json_is_a_bad_response_and_prices_fall_back(sandbox: Sandbox) -> None:
    mints = [sandbox.mint(s) for s in CLEAN]
    sandbox.jupiter.malformed = True
    async with jupiter(sandbox, attempts=1, failure_threshold=5) as jup, dexscreener(sandbox, attempts=1) as dex:
        with pytest.raises(BadResponse):
            await jup.price_batch(mints)
        assert jup.provider.state().consecutive_failures == 1  # a garbage body counts against the provider
        service = PriceService([jup, dex])
        quotes = await service.prices(mints)
        assert {q.source for q in quotes.values()} == {"dexscreener"}
        sandbox.dexscreener.malformed = True
        quotes = await service.prices([*mints, unknown_mint(2)])
        never_zero(quotes)
        assert quotes[unknown_mint(2)].unknown
        assert {quotes[m].source for m in mints} == {"dexscreener"}  # last known, still fresh
        assert "BadResponse" in (dex.provider.state().last_error or "")


# -- the monitor keeps ticking through failures ---------------------------------------------------------
@pytest.mark.trio
async def test_price_monitor_keeps_ticking_through_provider_and_callback_failures(sandbox: Sandbox) -> None:
    mints = [sandbox.mint(s) for s in CLEAN]
    send, receive = trio.open_memory_channel[PriceQuote](math.inf)
    calls = {"mints": 0, "callback": 0}

    def supply() -> list[str]:
        calls["mints"] += 1
        if calls["mints"] == 2:
            raise RuntimeError("watchlist unavailable")  # the supplier fails once
        return mints

    def on_price(q: PriceQuote) -> None:
        calls["callback"] += 1
        if calls["callback"] == 3:
            raise RuntimeError("actor gone")  # a callback fails once
        send.send_nowait(q)

    async def until(pred: Callable[[PriceQuote], bool]) -> dict[str, PriceQuote]:
        """Receive quotes until the latest one of every mint satisfies `pred`."""
        latest: dict[str, PriceQuote] = {}
        while True:
            q = await receive.receive()
            latest[q.mint] = q
            if len(latest) == len(mints) and all(pred(x) for x in latest.values()):
                return latest

    async with jupiter(sandbox, attempts=1, failure_threshold=1, cooldown_s=0.3) as jup, \
            dexscreener(sandbox, attempts=1) as dex:
        service = PriceService([jup, dex], max_age_s=0.2)
        monitor = PriceMonitor(service, supply, on_price, interval_s=0.05)
        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                await nursery.start(monitor.run)
                await until(lambda q: q.source == "jupiter" and not q.stale)
                sandbox.jupiter.error_status = 503
                await until(lambda q: q.source == "dexscreener" and not q.stale)
                sandbox.dexscreener.error_status = 500
                stale = await until(lambda q: q.stale)  # no source: last known prices, aging
                assert all(q.usd and q.usd > 0 and not q.unknown and q.source == "dexscreener" for q in stale.values())
                sandbox.jupiter.clear()
                sandbox.dexscreener.clear()
                await until(lambda q: q.source == "jupiter" and not q.stale)
                nursery.cancel_scope.cancel()
    assert monitor.failures >= 1 and monitor.ticks >= 4
    assert calls["callback"] > 3
    assert sandbox.jupiter.requests < 400 and sandbox.dexscreener.requests < 400  # bounded


# -- pure backoff / breaker / budget logic on trio's MockClock ---------------------------------------------
def _failing(times: int, exc: Callable[[], Exception], calls: list[float]) -> Callable[[], Any]:
    async def attempt() -> str:
        calls.append(trio.current_time())
        if len(calls) <= times:
            raise exc()
        return "ok"

    return attempt


@pytest.mark.trio
async def test_exponential_backoff_between_retries(autojump_clock: trio.testing.MockClock) -> None:
    p = Provider("x", Policy(rate_per_s=1000, attempts=4, backoff_initial_s=1, backoff_jitter_s=0, backoff_max_s=60,
                             failure_threshold=10))
    calls: list[float] = []
    assert await p.call(_failing(3, lambda: TemporaryError("flaky"), calls)) == "ok"
    gaps = [b - a for a, b in zip(calls, calls[1:])]
    assert [round(g, 3) for g in gaps] == [1.0, 2.0, 4.0]
    # jitter adds on top, never below the base
    j = Provider("j", Policy(rate_per_s=1000, attempts=2, backoff_initial_s=1, backoff_jitter_s=0.5, failure_threshold=10))
    calls = []
    await j.call(_failing(1, lambda: TemporaryError("flaky"), calls))
    assert 1.0 <= calls[1] - calls[0] <= 1.5 + 1e-9


@pytest.mark.trio
async def test_attempts_are_bounded_and_non_retryable_errors_are_not_retried(autojump_clock: trio.testing.MockClock) -> None:
    p = Provider("x", Policy(rate_per_s=1000, attempts=3, backoff_initial_s=0.1, failure_threshold=10))
    calls: list[float] = []
    with pytest.raises(TemporaryError):
        await p.call(_failing(99, lambda: TemporaryError("down"), calls))
    assert len(calls) == 3
    calls = []
    with pytest.raises(BadResponse):
        await p.call(_failing(99, lambda: BadResponse("junk"), calls))
    assert len(calls) == 1


@pytest.mark.trio
async def test_retry_after_holds_every_later_call(autojump_clock: trio.testing.MockClock) -> None:
    p = Provider("x", Policy(rate_per_s=1000, attempts=1))
    calls: list[float] = []
    with pytest.raises(RateLimited):
        await p.call(_failing(1, lambda: RateLimited("429", retry_after=5), calls))
    t0 = calls[0]
    assert await p.call(_failing(0, lambda: TemporaryError("-"), calls)) == "ok"
    assert calls[1] - t0 >= 5
    # within one call: the retry waits for Retry-After even when the backoff is shorter
    r = Provider("r", Policy(rate_per_s=1000, attempts=2, backoff_initial_s=0.1, backoff_jitter_s=0))
    calls = []
    assert await r.call(_failing(1, lambda: TemporaryError("503", retry_after=7), calls)) == "ok"
    assert calls[1] - calls[0] >= 7


@pytest.mark.trio
async def test_budget_wait_beyond_max_wait_is_refused_without_sending(autojump_clock: trio.testing.MockClock) -> None:
    p = Provider("x", Policy(rate_per_s=1000, attempts=3, max_wait_s=1.0))
    p.hold(10)
    calls: list[float] = []
    start = trio.current_time()
    with pytest.raises(RateLimited) as err:
        await p.call(_failing(0, lambda: TemporaryError("-"), calls))
    assert err.value.local and calls == [] and trio.current_time() == start
    assert p.state().requests == 0


@pytest.mark.trio
async def test_token_bucket_paces_calls(autojump_clock: trio.testing.MockClock) -> None:
    p = Provider("x", Policy(rate_per_s=2, burst=1))
    calls: list[float] = []
    for _ in range(5):
        await p.call(_failing(0, lambda: TemporaryError("-"), calls))
    assert calls[-1] - calls[0] >= 2.0 - 1e-9  # 4 more tokens at 2/s
    assert all(b - a >= 0.5 - 1e-9 for a, b in zip(calls, calls[1:]))


@pytest.mark.trio
async def test_attempt_timeout_is_a_breaker_failure(autojump_clock: trio.testing.MockClock) -> None:
    p = Provider("x", Policy(rate_per_s=1000, attempts=1, attempt_timeout_s=2, failure_threshold=1))

    async def hang() -> None:
        await trio.sleep_forever()

    with pytest.raises(TemporaryError, match="no answer"):
        await p.call(hang)
    assert p.breaker is BreakerState.OPEN


@pytest.mark.trio
async def test_breaker_opens_half_opens_with_one_probe_and_closes(autojump_clock: trio.testing.MockClock) -> None:
    p = Provider("x", Policy(rate_per_s=1000, attempts=1, failure_threshold=3, cooldown_s=10))
    calls: list[float] = []
    down = _failing(99, lambda: TemporaryError("down"), calls)
    for _ in range(3):
        with pytest.raises(TemporaryError):
            await p.call(down)
    assert p.breaker is BreakerState.OPEN and len(calls) == 3
    with pytest.raises(ProviderUnavailable) as err:
        await p.call(down)
    assert len(calls) == 3 and 0 < err.value.retry_after <= 10  # refused without calling

    await trio.sleep(10)
    assert p.breaker is BreakerState.HALF_OPEN
    # the probe fails: open again, for a full cooldown
    with pytest.raises(TemporaryError):
        await p.call(down)
    assert p.breaker is BreakerState.OPEN and len(calls) == 4
    await trio.sleep(9)
    assert p.breaker is BreakerState.OPEN
    await trio.sleep(1)

    # half-open: one probe in flight, a concurrent call is refused; the probe's success closes it
    release = trio.Event()
    outcomes: list[str] = []

    async def slow_ok() -> str:
        await release.wait()
        return "ok"

    async def probe() -> None:
        outcomes.append(await p.call(slow_ok))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(probe)
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(ProviderUnavailable):
            await p.call(slow_ok)
        release.set()
    assert outcomes == ["ok"]
    state = p.state()
    assert state.breaker is BreakerState.CLOSED and state.consecutive_failures == 0 and state.failures == 4
    assert state.last_error and "down" in state.last_error


@pytest.mark.trio
async def test_cancelled_probe_frees_the_half_open_slot(autojump_clock: trio.testing.MockClock) -> None:
    p = Provider("x", Policy(rate_per_s=1000, attempts=1, failure_threshold=1, cooldown_s=1))
    with pytest.raises(TemporaryError):
        await p.call(_failing(99, lambda: TemporaryError("down"), []))
    await trio.sleep(1)

    async def hang() -> None:
        await trio.sleep_forever()

    with trio.move_on_after(0.5):  # the caller's deadline cancels the probe
        await p.call(hang)
    assert p.breaker is BreakerState.HALF_OPEN
    assert await p.call(_failing(0, lambda: TemporaryError("-"), [])) == "ok"
    assert p.breaker is BreakerState.CLOSED
