"""The outbound side of the bot, built once by the composition root and run on the trio runtime:
the adapters (Jupiter, DexScreener, Solana RPC, RugCheck), the token safety analyzer, the price service
and its monitor. The actors reach them only through ports (`actors.ports.Safety`) and messages."""

from __future__ import annotations

import concurrent.futures
import json
from decimal import Decimal
from typing import Any, Awaitable, Callable, Sequence

import pykka
import structlog
import trio

from actors.messages import PriceTick, PriceTicks
from actors.supervisor import Published
from actors.trades import Trade, classify
from adapters.dexscreener import DexScreenerClient
from adapters.http import Policy, Provider, ResilientClient
from adapters.jupiter import JupiterClient, NoRoute
from adapters.rugcheck import RugCheck
from adapters.solana_rpc import SolanaRpc
from execution.confirm import Confirmer
from execution.keys import WalletKey
from execution.live import LiveExecutor
from execution.paper import PaperExecutor
from intelligence.prices import PriceService
from intelligence.safety import PairFacts, RouteFacts, SafetyAnalyzer, SafetyReport
from storage import repo
from walltrack.bridge import TrioThread, trio_await
from walltrack.config import live_config, safety_config
from walltrack.settings import Settings

log = structlog.get_logger("services")

SOL_MINT = "So11111111111111111111111111111111111111112"


class MarketSources:
    """`intelligence.safety.SafetySources` over the real adapters."""

    def __init__(self, rpc: SolanaRpc, dex: DexScreenerClient, jupiter: JupiterClient, rugcheck: RugCheck | None) -> None:
        self._rpc, self._dex, self._jup, self._rugcheck = rpc, dex, jupiter, rugcheck

    async def mint(self, mint: str) -> Any:
        return await self._rpc.mint(mint)

    async def holders(self, mint: str) -> Any:
        return await self._rpc.holders(mint)

    async def pair(self, mint: str) -> PairFacts | None:
        p = (await self._dex.best_pair_batch([mint])).get(mint)
        if p is None:
            return None
        cap = p.market_cap if p.market_cap is not None else p.fdv
        return PairFacts(
            pair_address=p.pair_address,
            dex=p.dex_id,
            liquidity_usd=float(p.liquidity_usd),
            market_cap_usd=float(cap) if cap is not None else None,
            created_at=p.pair_created_at / 1000 if p.pair_created_at else None,
        )

    async def sell_route(self, mint: str, sol_lamports: int) -> RouteFacts | None:
        """A round trip of `sol_lamports`: buy, then sell what the buy would get back to SOL."""
        try:
            buy = await self._jup.quote(SOL_MINT, mint, sol_lamports)
            sell = await self._jup.quote(mint, SOL_MINT, buy.out_amount)
        except NoRoute:
            return None
        return RouteFacts(sell.out_amount, float(max(buy.price_impact_percent, sell.price_impact_percent)))

    async def rugcheck(self, mint: str) -> Any:
        return await self._rugcheck.summary(mint) if self._rugcheck is not None else None


class TrioSafety:
    """The actors' `Safety` port: a screened token's verdict is a memory lookup (a future already done); any
    other is computed on the trio runtime and delivered in a future."""

    def __init__(self, runtime: TrioThread, analyzer: SafetyAnalyzer) -> None:
        self._runtime, self._analyzer = runtime, analyzer

    def assess(self, mint: str) -> concurrent.futures.Future[SafetyReport]:
        report = self._analyzer.cached(mint)
        if report is not None:
            done: concurrent.futures.Future[SafetyReport] = concurrent.futures.Future()
            done.set_result(report)
            return done
        return self._runtime.submit(self._analyzer.assess, mint)


class LiquidityTap:
    """A price source (`intelligence.prices.PriceSource`) that also keeps the pool liquidity its answer carried —
    Jupiter Price v3 `liquidity`, DexScreener's best pair `liquidity.usd` — at no extra call. The monitor
    clears `liquidity` before each round, so a value is only ever this round's (for the emergency exit)."""

    def __init__(self, source: Any, fetch: Callable[[Sequence[str]], Awaitable[dict[str, tuple[Decimal, Decimal | None]]]]) -> None:
        self.name, self.max_batch, self.provider = source.name, source.max_batch, source.provider
        self._fetch = fetch
        self.liquidity: dict[str, Decimal] = {}

    async def usd_prices(self, mints: Sequence[str]) -> dict[str, Decimal]:
        got = await self._fetch(mints)
        self.liquidity.update({m: liq for m, (_, liq) in got.items() if liq is not None and liq > 0})
        return {m: usd for m, (usd, _) in got.items()}


class Services:
    def __init__(self, settings: Settings, runtime: TrioThread, store: repo.Store, clock: Callable[[], float],
                 gate: Callable[[], str | None] = lambda: "mode:unknown") -> None:
        """`gate`: why a new live buy may not be sent now (None: it may) — the operator's global mode."""
        s = settings
        self.settings, self.runtime, self.store, self.clock = s, runtime, store, clock
        key = s.jupiter_api_key.get_secret_value() if s.jupiter_api_key else None
        limits = {"attempt_timeout_s": s.http_timeout_s, "cooldown_s": s.provider_cooldown_s,
                  "max_wait_s": s.provider_max_wait_s}
        self.jupiter = JupiterClient(s.jupiter_base_url, api_key=key, tier=s.jupiter_tier, **limits)
        self.dexscreener = DexScreenerClient(s.dexscreener_base_url, **limits)
        self._rpc_http = ResilientClient(Provider("rpc", Policy(rate_per_s=10, **limits)), s.solana_rpc_url)
        self.rpc = SolanaRpc(self._rpc_http)
        self._rugcheck_http: ResilientClient | None = None
        rugcheck = None
        if s.rugcheck_base_url:
            headers = {"X-API-KEY": s.rugcheck_api_key.get_secret_value()} if s.rugcheck_api_key else None
            self._rugcheck_http = ResilientClient(Provider("rugcheck", Policy(rate_per_s=2, **limits)),
                                                  s.rugcheck_base_url, headers=headers)
            rugcheck = RugCheck(self._rugcheck_http)
        jup, dex = self.jupiter, self.dexscreener
        self.taps = (
            LiquidityTap(jup, lambda ms: _with_liquidity(jup.price_batch(ms), lambda p: (p.usd_price, p.liquidity))),
            LiquidityTap(dex, lambda ms: _with_liquidity(dex.best_pair_batch(ms), lambda p: (p.price_usd, p.liquidity_usd))),
        )
        self.prices = PriceService(list(self.taps), clock=clock, max_age_s=s.price_max_age_s,
                                   source_timeout_s=s.http_timeout_s * 2)
        self.executor = PaperExecutor(runtime, self.jupiter, clock, slippage_bps=s.paper_slippage_bps,
                                      priority_fee_lamports=s.paper_priority_fee_lamports,
                                      timeout_s=max(15.0, s.http_timeout_s * 3))
        self.key = WalletKey.from_settings(s)  # None: live execution is not available
        self.confirmer: Confirmer | None = None
        self.live: LiveExecutor | None = None
        if self.key is not None:
            self.confirmer = Confirmer(self.rpc, s.live_confirm_poll_ms / 1000, s.live_commitment)
            self.live = LiveExecutor(runtime, self.jupiter, self.rpc, self.key, live_config(s, self.key), self.confirmer,
                                     clock, gate)
        self.analyzer = SafetyAnalyzer(
            MarketSources(self.rpc, self.dexscreener, self.jupiter, rugcheck), safety_config(s), clock=clock,
            store=self._save_safety, rugcheck_enabled=rugcheck is not None)

    def safety_port(self) -> TrioSafety | None:
        return TrioSafety(self.runtime, self.analyzer) if self.settings.safety_enabled else None

    def screen(self, buys: list[Trade]) -> None:
        """Start the safety check of every token bought, now (the gateway calls this as it parses a delivery, on
        the trio runtime, before the delivery is even stored): by the time a wallet actor asks for the verdict it
        is ready or under way; a token already screened costs nothing."""
        if not self.settings.safety_enabled:
            return
        for mint in {t.token_mint for t in buys}:
            if self.analyzer.cached(mint) is None:
                self.runtime.submit(self.analyzer.assess, mint)

    def prefetch_safety(self, payload: str, wallets: tuple[str, ...]) -> None:
        """Start the safety check of every token a watched wallet bought in this transaction, now.

        The wallet actors decide one transaction at a time, in order; without this, a burst of buys would
        be screened one after another. The analyzer shares an in-flight check, so the actor's own ask
        later joins this one instead of starting another."""
        if not self.settings.safety_enabled:
            return
        tx = json.loads(payload)
        self.screen([t for w in wallets if (t := classify(tx, w)) is not None and t.side == "buy"])

    async def _save_safety(self, report: SafetyReport) -> None:
        body = report.as_json()
        await trio_await(self.store.submit(lambda c: repo.save_safety(c, body)))

    def provider_states(self) -> dict[str, Any]:
        providers = [self.jupiter.provider, self.dexscreener.provider, self._rpc_http.provider]
        if self._rugcheck_http is not None:
            providers.append(self._rugcheck_http.provider)
        return {p.name: p.state().as_dict() for p in providers}

    def price_monitor(self, root: pykka.ActorRef, published: Published,  # noqa: ANN201
                      sol_always: Callable[[], bool] = lambda: False):
        """Every `PRICE_POLL_S`: price the tokens of open positions, tick their actors, store the marks. While
        `sol_always()` (live mode) SOL is priced every round even with no position open: live entries are sized
        with it."""
        interval = self.settings.price_poll_s

        async def main(task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
            task_status.started()
            while True:
                mints = published.open_mints
                if mints or sol_always():
                    try:
                        await self._tick(root, sorted(mints))
                    except Exception as exc:  # noqa: BLE001 - a bad round must not stop the monitor
                        log.warning("price_round_failed", error=repr(exc), mints=len(mints))
                await trio.sleep(interval)

        return main

    async def _tick(self, root: pykka.ActorRef, mints: list[str]) -> None:
        quotes = None
        for tap in self.taps:
            tap.liquidity.clear()
        with trio.move_on_after(max(self.settings.price_poll_s * 4, 10)):
            quotes = await self.prices.prices([*mints, SOL_MINT])
        if quotes is None:
            log.warning("price_round_timeout", mints=len(mints))
            return
        sol = quotes.get(SOL_MINT)
        sol_usd = sol.usd if sol is not None and not sol.unknown and not sol.stale else None  # stale: unknown
        liquidity = {**self.taps[1].liquidity, **self.taps[0].liquidity}
        ticks = tuple(
            PriceTick(m, q.usd if not q.unknown else None, sol_usd, q.source, q.at, q.stale,
                      liquidity_usd=liquidity.get(m) if not q.stale else None)
            for m, q in ((m, quotes.get(m)) for m in mints) if q is not None
        )
        root.tell(PriceTicks(ticks, sol_usd=sol_usd))
        rows = [(t.mint, t.usd, t.source, t.stale) for t in ticks]
        if sol is not None:  # SOL's own mark: the panel values SOL-quoted positions with it
            rows.append((SOL_MINT, sol.usd if not sol.unknown else None, sol.source, sol.stale))
        await trio_await(self.store.submit(lambda c: repo.save_prices(c, rows)))

    def close(self) -> None:
        async def aclose() -> None:
            for c in (self.jupiter, self.dexscreener, self._rpc_http, self._rugcheck_http):
                if c is not None:
                    await c.aclose()

        try:
            self.runtime.submit(aclose).result(10)
        except Exception as exc:  # noqa: BLE001 - closing is best effort at shutdown
            log.warning("services_close_failed", error=repr(exc))



async def _with_liquidity(call: Awaitable[dict[str, Any]], pick: Callable[[Any], tuple[Any, Any]]) -> dict[str, tuple[Decimal, Decimal | None]]:
    return {m: pick(v) for m, v in (await call).items()}
