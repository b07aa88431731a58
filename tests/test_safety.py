"""Token safety against the real sandbox services over HTTP: every hazard the sandbox can create is
caught, clean tokens pass, one slow source never stalls the verdict, and a blind spot fails closed."""

from __future__ import annotations

from typing import AsyncIterator, Iterator

import pytest
import trio

from sandbox.market import Market
from adapters.dexscreener import DexScreenerClient
from adapters.http import Policy, Provider, ResilientClient
from adapters.jupiter import JupiterClient
from adapters.rugcheck import RugCheck
from adapters.solana_rpc import SolanaRpc
from walltrack.demo import Sandbox
from intelligence.safety import SafetyAnalyzer, SafetyConfig, evaluate
from walltrack.services import MarketSources

HAZARDS = {  # symbol -> the reason a buy of it is refused
    "FRZA": "safety:freeze_authority",
    "MNTA": "safety:mint_authority",
    "PDEL": "safety:permanent_delegate",
    "TFEE": "safety:transfer_fee",
    "HOOK": "safety:transfer_hook",
    "WHAL": "safety:top_holders",
    "THIN": "safety:liquidity",
    "HONY": "safety:sell_route",
}
CLEAN = ("MOON", "STDY", "CHOP", "SINK", "USDX")


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    sb = Sandbox(seed=7, speed=60)
    yield sb
    sb.stop()


@pytest.fixture(autouse=True)
def _clear_faults(sandbox: Sandbox) -> None:
    for f in sandbox.faults.by_service.values():
        f.clear()


def sources(sb: Sandbox) -> tuple[MarketSources, list]:
    fast = {"attempt_timeout_s": 2.0, "attempts": 1}
    jup = JupiterClient(sb.url("jupiter"), tier="pro", **fast)
    dex = DexScreenerClient(sb.url("dexscreener"), **fast)
    rpc_http = ResilientClient(Provider("rpc", Policy(rate_per_s=100, **fast)), sb.url("rpc"))
    rc_http = ResilientClient(Provider("rugcheck", Policy(rate_per_s=100, **fast)), sb.url("rugcheck"))
    return MarketSources(SolanaRpc(rpc_http), dex, jup, RugCheck(rc_http)), [jup, dex, rpc_http, rc_http]


@pytest.fixture
async def analyzer(sandbox: Sandbox) -> AsyncIterator[SafetyAnalyzer]:
    src, clients = sources(sandbox)
    yield SafetyAnalyzer(src, SafetyConfig(source_timeout_s=1.0), clock=lambda: sandbox.market.now, rugcheck_enabled=True)
    for c in clients:
        await c.aclose()


def mint(sb: Sandbox, symbol: str) -> str:
    return sb.market.by_symbol[symbol].mint


@pytest.mark.trio
@pytest.mark.parametrize("symbol", sorted(HAZARDS))
async def test_every_hazard_is_caught_with_its_reason(sandbox: Sandbox, analyzer: SafetyAnalyzer, symbol: str) -> None:
    report = await analyzer.assess(mint(sandbox, symbol))
    assert not report.passed and report.reason == HAZARDS[symbol]
    named = {c.name: c for c in report.checks}
    assert named[HAZARDS[symbol].split(":")[1]].passed is False and named[HAZARDS[symbol].split(":")[1]].reason
    assert set(named) >= {"mint_authority", "freeze_authority", "permanent_delegate", "transfer_hook", "transfer_fee",
                          "default_frozen", "liquidity", "market_cap", "pool_age", "top_holders", "sell_route", "rugcheck"}


@pytest.mark.trio
@pytest.mark.parametrize("symbol", CLEAN)
async def test_clean_tokens_pass_every_check(sandbox: Sandbox, analyzer: SafetyAnalyzer, symbol: str) -> None:
    report = await analyzer.assess(mint(sandbox, symbol))
    assert report.passed and report.reason is None and report.score >= analyzer.cfg.threshold
    assert all(c.passed for c in report.checks), [c for c in report.checks if not c.passed]


@pytest.mark.trio
async def test_a_rug_turns_a_passing_token_into_a_rejected_one() -> None:
    sb = Sandbox(seed=7, speed=60)
    src, clients = sources(sb)
    try:
        a = SafetyAnalyzer(src, SafetyConfig(ttl_s=0), clock=lambda: sb.market.now, rugcheck_enabled=True)
        rugr = mint(sb, "RUGR")
        assert (await a.assess(rugr)).passed
        sb.market.step_to(sb.market.start + 700)  # seed 7: the dev rugs its first leader at 646 s
        sb.chain.sync()
        after = await a.assess(rugr)
        assert not after.passed and after.reason == "safety:liquidity"
    finally:
        for c in clients:
            await c.aclose()
        sb.stop()


@pytest.mark.trio
async def test_one_slow_source_does_not_stall_the_others(sandbox: Sandbox, analyzer: SafetyAnalyzer) -> None:
    sandbox.faults["rugcheck"].latency_s = 30
    t0 = trio.current_time()
    report = await analyzer.assess(mint(sandbox, "MOON"))
    elapsed = trio.current_time() - t0
    assert elapsed < 5, elapsed  # bounded by the 1 s source timeout (+ the others' own work), not by 30 s
    named = {c.name: c for c in report.checks}
    assert named["rugcheck"].passed is None and "unverified" in named["rugcheck"].reason
    assert named["freeze_authority"].passed and named["sell_route"].passed and named["liquidity"].passed


@pytest.mark.trio
async def test_rpc_down_fails_closed_and_says_what_it_could_not_check(sandbox: Sandbox, analyzer: SafetyAnalyzer) -> None:
    sandbox.faults["rpc"].error_status = 503
    report = await analyzer.assess(mint(sandbox, "STDY"))
    assert not report.passed and report.reason == "safety:freeze_authority_unverified"
    assert {c.name for c in report.checks if c.passed is None} >= {"mint_authority", "freeze_authority", "top_holders"}


@pytest.mark.trio
async def test_an_unverified_verdict_is_asked_again_sooner_than_a_full_one(sandbox: Sandbox) -> None:
    src, clients = sources(sandbox)
    now = [sandbox.market.now]
    analyzer = SafetyAnalyzer(src, SafetyConfig(source_timeout_s=1.0, ttl_s=300, unverified_ttl_s=15),
                              clock=lambda: now[0], rugcheck_enabled=True)
    try:
        sandbox.faults["rpc"].error_status = 503
        assert (await analyzer.assess(mint(sandbox, "STDY"))).reason == "safety:freeze_authority_unverified"
        sandbox.faults["rpc"].clear()  # the RPC is back
        now[0] += 10
        assert not (await analyzer.assess(mint(sandbox, "STDY"))).passed  # within 15 s: the cached verdict
        now[0] += 6
        full = await analyzer.assess(mint(sandbox, "STDY"))  # past it: checked again, and it passes
        assert full.passed, full.reason
        rpc = sandbox.faults["rpc"].requests
        now[0] += 250
        assert (await analyzer.assess(mint(sandbox, "STDY"))) is full and sandbox.faults["rpc"].requests == rpc
    finally:
        for c in clients:
            await c.aclose()


@pytest.mark.trio
async def test_verdicts_are_cached_and_concurrent_asks_share_one_check(sandbox: Sandbox, analyzer: SafetyAnalyzer) -> None:
    rpc = sandbox.faults["rpc"]
    before = rpc.requests
    reports = []

    async def ask() -> None:
        reports.append(await analyzer.assess(mint(sandbox, "CHOP")))

    async with trio.open_nursery() as n:
        for _ in range(5):
            n.start_soon(ask)
    one_check = rpc.requests - before
    assert one_check == 3  # getAccountInfo, getTokenLargestAccounts, getMultipleAccounts: once for five asks
    assert len({id(r) for r in reports}) == 1
    await analyzer.assess(mint(sandbox, "CHOP"))
    assert rpc.requests - before == one_check  # within the TTL: from the cache


def test_scoring_rejects_on_hard_checks_and_on_score() -> None:
    """Pure: what the verdict does with facts, including a market cap outside the range."""
    from intelligence.safety import Holder, MintFacts, PairFacts, RouteFacts

    cfg = SafetyConfig()
    good = {
        "mint": MintFacts("spl-token", 6, 10**15, None, None),
        "holders": [Holder("vault", "POOL", 8 * 10**14), Holder("a", "alice", 10**13)],
        "pair": PairFacts("POOL", "raydium", 80_000.0, 1_000_000.0, 1000.0),
        "route": RouteFacts(10**8, 0.5),
    }
    ok = evaluate("M", cfg, 5000.0, good, rugcheck_enabled=False)
    assert ok.passed and ok.score > 0.95
    tiny_cap = evaluate("M", cfg, 5000.0, {**good, "pair": PairFacts("POOL", "raydium", 80_000.0, 500.0, 1000.0)}, False)
    assert tiny_cap.passed and tiny_cap.score < ok.score  # soft: it costs score, it does not reject alone
    frozen = evaluate("M", cfg, 5000.0, {**good, "mint": MintFacts("spl-token", 6, 10**15, None, "X")}, False)
    assert not frozen.passed and frozen.reason == "safety:freeze_authority"
    no_route = evaluate("M", cfg, 5000.0, {**good, "route": None}, False)
    assert not no_route.passed and no_route.reason == "safety:sell_route"
    strict = evaluate("M", SafetyConfig(threshold=0.999), 5000.0, {**good, "pair": PairFacts("POOL", "raydium", 80_000.0, 500.0, 1000.0)}, False)
    assert not strict.passed and strict.reason == "safety:market_cap"


def test_market_is_deterministic_for_a_seed() -> None:
    a, b, c = Market(7), Market(7), Market(8)
    ta, tb, tc = (m.step_to(m.start + 900) for m in (a, b, c))
    assert [(t.signature, t.side, t.token_amount) for t in ta] == [(t.signature, t.side, t.token_amount) for t in tb]
    assert [t.signature for t in ta] != [t.signature for t in tc]
    assert {s: t.pool.quote_reserve for s, t in a.by_symbol.items()} == {s: t.pool.quote_reserve for s, t in b.by_symbol.items()}
