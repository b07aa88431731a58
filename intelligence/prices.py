"""USD prices for many mints at once, from an ordered chain of sources, and the monitor that ticks them.

`PriceService.prices(mints)` asks the first source (Jupiter) in batches of its `max_batch`; every mint
it omitted or could not serve (an error, a timeout, an open breaker) is asked of the next source
(DexScreener), and so on. The answer for each mint is a `PriceQuote`:

- a fresh price: `usd`, `source`, `at` = now, `stale=False`, `unknown=False`;
- no source has it now but we saw a price before: that last price, its `source` and `at`, and
  `stale=True` once it is older than `max_age_s`;
- never seen by any source: `usd=None`, `unknown=True`. A missing price is never zero.

`PriceMonitor` is a trio task: every `interval_s` it prices the mints a callable supplies and hands each
`PriceQuote` to a callback (the bot routes them to position actors). It survives failing providers,
failing callbacks and a failing mint supplier: each is logged and the next tick comes on time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Callable, Iterable, Literal, Protocol, Sequence

import structlog
import trio

from adapters.http import ProviderError

log = structlog.get_logger("prices")

SourceName = Literal["jupiter", "dexscreener"]


@dataclass(frozen=True, slots=True)
class PriceQuote:
    """The price of one mint as of `at` (unix seconds; for an unknown mint, when we asked)."""

    mint: str
    usd: Decimal | None
    source: SourceName | None
    at: float
    stale: bool = False
    unknown: bool = False


class PriceSource(Protocol):
    """A USD price source (the port; `JupiterClient` and `DexScreenerClient` implement it)."""

    name: str
    max_batch: int

    async def usd_prices(self, mints: Sequence[str]) -> dict[str, Decimal]:
        """One call for at most `max_batch` mints. Mints without a price are absent. Raises ProviderError."""
        ...


def _chunks(items: Sequence[str], size: int) -> list[Sequence[str]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


class PriceService:
    """Prices from `sources` in order of preference, with a last-known cache for staleness.

    `source_timeout_s` bounds each batch call to a source (a cancel scope: on expiry its mints go to the
    next source). `clock` is the wall clock for `at` and staleness (inject one in tests).
    """

    def __init__(self, sources: Sequence[PriceSource], *, max_age_s: float = 60.0, source_timeout_s: float = 15.0,
                 clock: Callable[[], float] = time.time) -> None:
        if not sources:
            raise ValueError("at least one price source is required")
        self.sources = tuple(sources)
        self.max_age_s = max_age_s
        self.source_timeout_s = source_timeout_s
        self._clock = clock
        self._last: dict[str, tuple[Decimal, SourceName, float]] = {}

    async def prices(self, mints: Iterable[str]) -> dict[str, PriceQuote]:
        """A `PriceQuote` for every distinct mint asked for. Provider failures are absorbed here."""
        wanted = list(dict.fromkeys(mints))
        found: dict[str, tuple[Decimal, SourceName]] = {}
        remaining: list[str] = wanted
        for source in self.sources:
            if not remaining:
                break
            got = await self._ask(source, remaining)
            for mint, usd in got.items():
                found[mint] = (usd, source.name)  # type: ignore[assignment]
            remaining = [m for m in remaining if m not in got]
        now = self._clock()
        out: dict[str, PriceQuote] = {}
        for mint in wanted:
            if mint in found:
                usd, source_name = found[mint]
                self._last[mint] = (usd, source_name, now)
                out[mint] = PriceQuote(mint, usd, source_name, now)
            elif mint in self._last:
                usd, source_name, at = self._last[mint]
                out[mint] = PriceQuote(mint, usd, source_name, at, stale=now - at > self.max_age_s)
            else:
                out[mint] = PriceQuote(mint, None, None, now, unknown=True)
        return out

    def forget(self, mints: Iterable[str]) -> None:
        """Drop last-known prices (e.g. for mints no longer held)."""
        for mint in mints:
            self._last.pop(mint, None)

    def health(self) -> dict[str, Any]:
        """Each source's provider state (breaker, failures, last error, next allowed call), for /health."""
        return {s.name: s.provider.state().as_dict() for s in self.sources if hasattr(s, "provider")}

    async def _ask(self, source: PriceSource, mints: Sequence[str]) -> dict[str, Decimal]:
        """Every batch of `mints` to one source, concurrently; a failed batch just yields nothing."""
        got: dict[str, Decimal] = {}

        async def batch(chunk: Sequence[str]) -> None:
            with trio.move_on_after(self.source_timeout_s) as scope:
                try:
                    prices = await source.usd_prices(chunk)
                except ProviderError as exc:
                    log.info("price_source_failed", source=source.name, mints=len(chunk),
                             error=f"{type(exc).__name__}: {exc}")
                    return
            if scope.cancelled_caught:
                log.info("price_source_timeout", source=source.name, mints=len(chunk), after_s=self.source_timeout_s)
                return
            asked = set(chunk)
            got.update({m: p for m, p in prices.items() if m in asked and p is not None and p > 0})

        async with trio.open_nursery() as nursery:
            for chunk in _chunks(mints, source.max_batch):
                nursery.start_soon(batch, chunk)
        return got


class PriceMonitor:
    """Every `interval_s`, price `mints()` and call `on_price(quote)` for each. Never stops on errors.

    Run it in a nursery: `await nursery.start(monitor.run)`. Each tick is bounded by `tick_timeout_s`
    (default: the interval). `ticks` counts completed ticks, `failures` ticks that produced nothing.
    """

    def __init__(self, service: PriceService, mints: Callable[[], Iterable[str]],
                 on_price: Callable[[PriceQuote], Any], *, interval_s: float = 5.0,
                 tick_timeout_s: float | None = None) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be > 0")
        self.service = service
        self._mints = mints
        self._on_price = on_price
        self.interval_s = interval_s
        self.tick_timeout_s = tick_timeout_s if tick_timeout_s is not None else interval_s
        self.ticks = 0
        self.failures = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        next_at = trio.current_time()
        while True:
            await self.tick()
            next_at += self.interval_s
            now = trio.current_time()
            if next_at < now:  # a slow tick: skip the missed beats rather than bunching them up
                next_at = now
            await trio.sleep_until(next_at)

    async def tick(self) -> int:
        """One round: returns how many quotes were handed to the callback."""
        try:
            mints = list(self._mints())
        except Exception:
            self.failures += 1
            log.exception("price_monitor_mints_failed")
            return 0
        if not mints:
            self.ticks += 1
            return 0
        quotes: dict[str, PriceQuote] = {}
        with trio.move_on_after(self.tick_timeout_s) as scope:
            try:
                quotes = await self.service.prices(mints)
            except Exception:
                self.failures += 1
                log.exception("price_monitor_tick_failed", mints=len(mints))
                return 0
        if scope.cancelled_caught:
            self.failures += 1
            log.warning("price_monitor_tick_timeout", mints=len(mints), after_s=self.tick_timeout_s)
            return 0
        delivered = 0
        for quote in quotes.values():
            try:
                self._on_price(quote)
                delivered += 1
            except Exception:
                log.exception("price_monitor_callback_failed", mint=quote.mint)
        self.ticks += 1
        return delivered
