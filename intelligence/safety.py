"""Token safety: a score from 0 to 1 with a result and a reason for every check.

Checks: mint authority, freeze authority, Token-2022 extensions (permanent delegate, transfer hook,
non-zero transfer fee, default-frozen accounts), liquidity, market cap range, pool age, top-10 holder
share (excluding pools and program-owned accounts), a sell route (a Jupiter quote back to SOL whose price
impact is under a limit) and, when configured, RugCheck's danger risks.

The sources are fetched concurrently, each under its own timeout (a trio cancel scope): one slow source
never stalls the others. A check whose source failed is *unverified*: it scores 0, and if it is a hard
check the token is rejected — money paths fail closed. Verdicts are cached per mint for a TTL.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Awaitable, Callable, Protocol

import structlog
import trio

from adapters.facts import Holder, MintFacts, PairFacts, RouteFacts, RugcheckFacts

log = structlog.get_logger("safety")

SOL_MINT = "So11111111111111111111111111111111111111112"


# -- facts the sources provide (adapters/facts.py) --------------------------------------------------------
class SafetySources(Protocol):
    async def mint(self, mint: str) -> MintFacts | None: ...
    async def holders(self, mint: str) -> list[Holder]: ...
    async def pair(self, mint: str) -> PairFacts | None: ...
    async def sell_route(self, mint: str, sol_lamports: int) -> RouteFacts | None: ...
    async def rugcheck(self, mint: str) -> RugcheckFacts | None: ...


# -- the verdict ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CheckResult:
    name: str
    passed: bool | None  # None: could not be verified (its source failed or timed out)
    score: float
    reason: str
    hard: bool = False

    @property
    def failed(self) -> bool:
        return self.passed is not True


@dataclass(frozen=True)
class SafetyReport:
    mint: str
    score: float
    passed: bool
    reason: str | None  # the signal's skip reason, "safety:<check>", when rejected
    checks: tuple[CheckResult, ...]
    checked_at: float
    # the numbers behind the checks, for the copy rules' token filters (None: unknown):
    # liquidity_usd, market_cap_usd, pool_age_s, dex, price_impact_pct
    facts: dict[str, Any] = field(default_factory=dict, compare=False)

    def as_json(self) -> dict[str, Any]:
        return {"mint": self.mint, "score": round(self.score, 4), "passed": self.passed, "reason": self.reason,
                "checked_at": self.checked_at, "checks": [asdict(c) for c in self.checks], "facts": dict(self.facts)}


# Checks that reject a token on their own, whatever the score.
DEFAULT_HARD = ("freeze_authority", "sell_route", "permanent_delegate", "default_frozen", "mint_authority",
                "transfer_hook", "transfer_fee")


@dataclass(frozen=True)
class SafetyConfig:
    threshold: float = 0.9
    weights: dict[str, float] = field(default_factory=lambda: {
        "mint_authority": 2.0, "freeze_authority": 2.0, "permanent_delegate": 2.0, "transfer_hook": 1.0,
        "transfer_fee": 1.5, "default_frozen": 2.0, "liquidity": 3.0, "market_cap": 0.5, "pool_age": 0.5,
        "top_holders": 3.0, "sell_route": 2.0, "rugcheck": 2.0,
    })
    hard: frozenset[str] = frozenset(DEFAULT_HARD)
    min_liquidity_usd: float = 10_000.0
    min_market_cap_usd: float = 10_000.0
    max_market_cap_usd: float = 100_000_000.0
    min_pool_age_s: float = 0.0
    max_pool_age_s: float = 30 * 86_400.0
    max_top10_pct: float = 30.0
    max_transfer_fee_bps: int = 0
    max_price_impact_pct: float = 3.0
    probe_sol_lamports: int = 100_000_000  # size of the round-trip sell-route probe
    source_timeout_s: float = 3.0
    ttl_s: float = 300.0
    unverified_ttl_s: float = 15.0  # a verdict with a check its source could not answer: asked again sooner
    known_program_owners: frozenset[str] = frozenset({
        "5Q544fKrFoe6tsEbD7S8EmxGTJYAKtTVhAW5Q5pge4j1",  # Raydium AMM v4 authority
        "GpMZbSM2GgvTKHJirzeGfMFoaZ8UR2X7F4v8vHTvxFbL",  # Raydium CPMM authority
        "6EF8rrecthR5Dkzon8Nwu78hRvfCKubJ14M5uBEwF6P",  # pump.fun bonding curve program
        "pAMMBay6oceH9fJKBRHGP5D4bD4sWpmSwMn52FMfXEA",  # PumpSwap AMM
    })

# Which failing check names the skip reason when several fail: the root cause first (a thin pool also has
# a ruinous sell route, but liquidity is what is wrong with it).
PRIORITY = ("freeze_authority", "permanent_delegate", "default_frozen", "mint_authority", "transfer_hook", "transfer_fee",
            "liquidity", "sell_route", "top_holders", "rugcheck", "market_cap", "pool_age")


def _ok(name: str, reason: str, score: float = 1.0) -> CheckResult:
    return CheckResult(name, True, score, reason)


def _bad(name: str, reason: str, score: float = 0.0) -> CheckResult:
    return CheckResult(name, False, score, reason)


def _unverified(name: str, source: str) -> CheckResult:
    return CheckResult(name, None, 0.0, f"unverified: {source} unavailable")


def evaluate(mint: str, cfg: SafetyConfig, now: float, facts: dict[str, Any], rugcheck_enabled: bool) -> SafetyReport:
    """Pure: the checks, score and verdict from whatever facts arrived (a missing key = source failed)."""
    pair: PairFacts | None = facts.get("pair")
    checks = [*_mint_checks(facts, cfg), *_pair_checks(facts, cfg, now), _holders_check(facts, cfg), _route_check(facts, cfg)]
    if rugcheck_enabled:
        checks.append(_rugcheck_check(facts))
    checks = [CheckResult(c.name, c.passed, c.score, c.reason, c.name in cfg.hard) for c in checks]
    total = sum(cfg.weights.get(c.name, 1.0) for c in checks)
    score = sum(cfg.weights.get(c.name, 1.0) * c.score for c in checks) / total if total else 0.0
    passed = not any(c.hard and c.failed for c in checks) and score >= cfg.threshold
    route: RouteFacts | None = facts.get("route")
    numbers = {
        "liquidity_usd": pair.liquidity_usd if pair is not None else None,
        "market_cap_usd": pair.market_cap_usd if pair is not None else None,
        "pool_age_s": now - pair.created_at if pair is not None and pair.created_at is not None else None,
        "dex": pair.dex if pair is not None else None,
        "price_impact_pct": route.price_impact_pct if route is not None else None,
    }
    return SafetyReport(mint, score, passed, None if passed else _reason(checks), tuple(checks), now, numbers)


def _reason(checks: list[CheckResult]) -> str:
    """The skip reason of a rejected token: its root cause, hard or not (`PRIORITY`), else a low score."""
    order = {n: i for i, n in enumerate(PRIORITY)}
    worst = sorted([c.name for c in checks if c.failed] or ["score"], key=lambda n: order.get(n, 99))[0]
    if worst == "score":
        return "safety:low_score"
    if worst in {c.name for c in checks if c.passed is None}:  # never blame a hazard we could not see
        return f"safety:{worst}_unverified"  # say what we could not check
    return f"safety:{worst}"


def _mint_checks(facts: dict[str, Any], cfg: SafetyConfig) -> list[CheckResult]:
    """The mint account's authorities and Token-2022 extensions."""
    m: MintFacts | None = facts.get("mint")
    if m is None:
        return [_unverified(name, "mint account" if "mint" in facts else "RPC") for name in
                ("mint_authority", "freeze_authority", "permanent_delegate", "transfer_hook", "transfer_fee", "default_frozen")]
    ext = m.extensions
    hook = ext.get("transferHook", {})
    fee_bps = _transfer_fee_bps(ext.get("transferFeeConfig"))
    frozen = ext.get("defaultAccountState", {}).get("accountState") == "frozen"
    return [
        _bad("mint_authority", f"mint authority is live ({m.mint_authority}): supply can be inflated")
        if m.mint_authority else _ok("mint_authority", "mint authority revoked"),
        _bad("freeze_authority", f"freeze authority is live ({m.freeze_authority}): holders can be frozen")
        if m.freeze_authority else _ok("freeze_authority", "freeze authority revoked"),
        _bad("permanent_delegate", f"Token-2022 permanent delegate {ext['permanentDelegate'].get('delegate')} can move anyone's tokens")
        if "permanentDelegate" in ext and ext["permanentDelegate"].get("delegate") else _ok("permanent_delegate", "no permanent delegate"),
        _bad("transfer_hook", f"Token-2022 transfer hook program {hook.get('programId')} runs on every transfer")
        if hook.get("programId") else _ok("transfer_hook", "no transfer hook"),
        _bad("transfer_fee", f"Token-2022 transfer fee of {fee_bps / 100:g}% on every transfer")
        if fee_bps > cfg.max_transfer_fee_bps else _ok("transfer_fee", "no transfer fee"),
        _bad("default_frozen", "Token-2022 default account state is frozen") if frozen
        else _ok("default_frozen", "accounts are not frozen by default"),
    ]


def _pair_checks(facts: dict[str, Any], cfg: SafetyConfig, now: float) -> list[CheckResult]:
    """The pool's liquidity, the market cap and the pool's age (DexScreener)."""
    if "pair" not in facts:
        return [_unverified(n, "DexScreener") for n in ("liquidity", "market_cap", "pool_age")]
    pair: PairFacts | None = facts["pair"]
    if pair is None:
        return [_bad("liquidity", "no pool found for the token"), _bad("market_cap", "no market data"),
                _bad("pool_age", "no pool found")]
    liq = pair.liquidity_usd or 0.0
    checks = [_ok("liquidity", f"liquidity ${liq:,.0f}", min(1.0, liq / (2 * cfg.min_liquidity_usd)))
              if liq >= cfg.min_liquidity_usd else _bad("liquidity", f"low liquidity ${liq:,.0f} < ${cfg.min_liquidity_usd:,.0f}")]
    mc = pair.market_cap_usd
    if mc is None:
        checks.append(_bad("market_cap", "market cap unknown", 0.5))
    elif cfg.min_market_cap_usd <= mc <= cfg.max_market_cap_usd:
        checks.append(_ok("market_cap", f"market cap ${mc:,.0f}"))
    else:
        checks.append(_bad("market_cap", f"market cap ${mc:,.0f} outside ${cfg.min_market_cap_usd:,.0f}–${cfg.max_market_cap_usd:,.0f}"))
    if pair.created_at is None:
        checks.append(_bad("pool_age", "pool age unknown", 0.5))
    else:
        age = now - pair.created_at
        ok = cfg.min_pool_age_s <= age <= cfg.max_pool_age_s
        checks.append((_ok if ok else _bad)("pool_age", f"pool age {age / 3600:.1f} h"))
    return checks


def _holders_check(facts: dict[str, Any], cfg: SafetyConfig) -> CheckResult:
    """The top 10 holders' share of the supply, pools and known program owners excluded."""
    m: MintFacts | None = facts.get("mint")
    if "holders" not in facts or m is None:
        return _unverified("top_holders", "RPC")
    pair: PairFacts | None = facts.get("pair")
    excluded = set(cfg.known_program_owners)
    if pair is not None:
        excluded.add(pair.pair_address)
    counted = [h for h in facts["holders"] or [] if h.owner not in excluded and h.token_account not in excluded]
    top = sum(h.amount for h in sorted(counted, key=lambda h: h.amount, reverse=True)[:10])
    pct = 100.0 * top / m.supply if m.supply else 100.0
    return (_ok("top_holders", f"top 10 holders own {pct:.1f}% (pools excluded)", max(0.0, 1 - pct / 100))
            if pct <= cfg.max_top10_pct else
            _bad("top_holders", f"top 10 holders own {pct:.1f}% > {cfg.max_top10_pct:g}% (concentrated)"))


def _route_check(facts: dict[str, Any], cfg: SafetyConfig) -> CheckResult:
    """A sell route back to SOL whose price impact is under the limit (a Jupiter quote)."""
    if "route" not in facts:
        return _unverified("sell_route", "Jupiter")
    route: RouteFacts | None = facts["route"]
    if route is None:
        return _bad("sell_route", "no sell route back to SOL")
    if route.price_impact_pct > cfg.max_price_impact_pct:
        return _bad("sell_route", f"sell price impact {route.price_impact_pct:.2f}% > {cfg.max_price_impact_pct:g}%")
    return _ok("sell_route", f"sells back to SOL with {route.price_impact_pct:.2f}% impact")


def _rugcheck_check(facts: dict[str, Any]) -> CheckResult:
    rc: RugcheckFacts | None = facts.get("rugcheck")
    if rc is None:
        return _unverified("rugcheck", "RugCheck")
    return (_bad("rugcheck", "RugCheck danger: " + ", ".join(rc.dangers)) if rc.dangers
            else _ok("rugcheck", "no RugCheck danger risks"))


def _transfer_fee_bps(cfg: dict[str, Any] | None) -> int:
    if not cfg:
        return 0
    fees = [cfg.get("newerTransferFee"), cfg.get("olderTransferFee")]
    return max((int(f.get("transferFeeBasisPoints", 0)) for f in fees if isinstance(f, dict)), default=0)


class SafetyAnalyzer:
    """Fetches the facts concurrently, evaluates, caches per mint for `ttl_s`, and stores each verdict."""

    def __init__(
        self,
        sources: SafetySources,
        cfg: SafetyConfig,
        clock: Callable[[], float] = time.time,
        store: Callable[[SafetyReport], Awaitable[None]] | None = None,
        rugcheck_enabled: bool = False,
    ) -> None:
        self._sources = sources
        self.cfg = cfg
        self._clock = clock
        self._store = store
        self._rugcheck = rugcheck_enabled
        self._cache: dict[str, SafetyReport] = {}
        self._inflight: dict[str, trio.Event] = {}

    def _ttl(self, report: SafetyReport) -> float:
        """A full verdict holds for `ttl_s`; one missing a source's answer (an outage) only `unverified_ttl_s`."""
        return self.cfg.unverified_ttl_s if any(c.passed is None for c in report.checks) else self.cfg.ttl_s

    def cached(self, mint: str) -> SafetyReport | None:
        """The verdict still in force for `mint`, or None (safe from any thread: one dict read)."""
        report = self._cache.get(mint)
        return report if report is not None and self._clock() - report.checked_at < self._ttl(report) else None

    async def assess(self, mint: str) -> SafetyReport:
        while True:
            cached = self.cached(mint)
            if cached is not None:
                return cached
            waiting = self._inflight.get(mint)
            if waiting is None:
                break
            await waiting.wait()  # someone is already checking this mint: share the verdict
        done = self._inflight[mint] = trio.Event()
        try:
            report = await self._check(mint)
            self._cache[mint] = report
            if self._store is not None:
                try:
                    await self._store(report)
                except Exception as exc:  # noqa: BLE001 - the verdict stands; the panel's copy is late
                    log.warning("safety_store_failed", mint=mint, error=repr(exc))
            log.info("token_safety", mint=mint, passed=report.passed, score=round(report.score, 3), reason=report.reason,
                     failed=[c.name for c in report.checks if c.failed])
            return report
        finally:
            del self._inflight[mint]
            done.set()

    async def _check(self, mint: str) -> SafetyReport:
        facts: dict[str, Any] = {}
        src, timeout = self._sources, self.cfg.source_timeout_s

        async def fetch(key: str, fn: Callable[[], Awaitable[Any]]) -> None:
            with trio.move_on_after(timeout):
                try:
                    facts[key] = await fn()
                except Exception as exc:  # noqa: BLE001 - an unavailable source leaves its checks unverified
                    log.warning("safety_source_failed", mint=mint, source=key, error=repr(exc))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(fetch, "mint", lambda: src.mint(mint))
            nursery.start_soon(fetch, "holders", lambda: src.holders(mint))
            nursery.start_soon(fetch, "pair", lambda: src.pair(mint))
            nursery.start_soon(fetch, "route", lambda: src.sell_route(mint, self.cfg.probe_sol_lamports))
            if self._rugcheck:
                nursery.start_soon(fetch, "rugcheck", lambda: src.rugcheck(mint))
        return evaluate(mint, self.cfg, self._clock(), facts, self._rugcheck)
