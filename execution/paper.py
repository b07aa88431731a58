"""The paper `Executor` (actors.ports.Executor): honest simulated fills, on the trio runtime.

A paper fill is what the swap would really have returned, as far as we can know without sending it:

- the Jupiter quote for the real size (so the pool's price impact is included), ExactIn;
- minus the configured slippage (`PAPER_SLIPPAGE_BPS`: we assume the worst fill the order would accept);
- minus the network fee (5,000 lamports per signature) and the priority fee (`PAPER_PRIORITY_FEE_LAMPORTS`),
  converted at the SOL price for a stablecoin-quoted position (rounded against us).

All amounts are integers. A buy's `quote_amount` is what it cost (input + fees); a sell's is what it
brought in (output − slippage − fees), so a closed position's PnL is Σ sells − buy, to the raw unit.
No route, no quote, no SOL price for the fee: the future fails — never a fake fill.

    executor = PaperExecutor(runtime, jupiter, clock, slippage_bps=100, priority_fee_lamports=10_000)
    fill = executor.sell(position_id, mint, token_amount, quote_mint).result()
"""

from __future__ import annotations

import concurrent.futures
import math
from decimal import Decimal
from fractions import Fraction
from typing import Callable

import trio

from actors.messages import Fill
from actors.trades import WSOL_MINT
from adapters.jupiter import JupiterClient, JupiterQuote
from walltrack.bridge import TrioThread

NETWORK_FEE_LAMPORTS_PER_SIGNATURE = 5_000
STABLE_UNITS = 10**6


class NoFill(Exception):
    """The swap would return nothing worth booking (a zero output): retry later, never fill."""


class PaperExecutor:
    def __init__(self, runtime: TrioThread, jupiter: JupiterClient, clock: Callable[[], float], *,
                 slippage_bps: int = 100, priority_fee_lamports: int = 10_000, signatures: int = 1,
                 timeout_s: float = 15.0) -> None:
        if not 0 <= slippage_bps < 10_000:
            raise ValueError("slippage_bps must be within 0..9999")
        self._runtime, self._jup, self._clock = runtime, jupiter, clock
        self.slippage_bps = slippage_bps
        self.fee_lamports = NETWORK_FEE_LAMPORTS_PER_SIGNATURE * signatures + priority_fee_lamports
        self.timeout_s = timeout_s

    # -- the port: futures at once, work on the trio runtime ------------------------------------------
    def buy(self, position_id: int, mint: str, quote_amount: int, quote_mint: str, *, slippage_bps: int | None = None,
            max_price_impact_pct: float | None = None) -> concurrent.futures.Future[Fill]:
        """Fill a buy of `quote_amount`; refused (no fill) when the route's price impact exceeds the limit."""
        bps = self.slippage_bps if slippage_bps is None else slippage_bps
        return self._runtime.submit(self._buy, position_id, mint, quote_amount, quote_mint, bps, max_price_impact_pct)

    def sell(self, position_id: int, mint: str, token_amount: int, quote_mint: str, *,
             slippage_bps: int | None = None) -> concurrent.futures.Future[Fill]:
        bps = self.slippage_bps if slippage_bps is None else slippage_bps
        return self._runtime.submit(self._sell, position_id, mint, token_amount, quote_mint, bps)

    # -- fills ------------------------------------------------------------------------------------------
    async def _buy(self, position_id: int, mint: str, quote_amount: int, quote_mint: str, bps: int,
                   max_impact_pct: float | None) -> Fill:
        with trio.fail_after(self.timeout_s):
            q = await self._jup.quote(quote_mint, mint, quote_amount, slippage_bps=bps)
            fee = await self.fee_in(quote_mint)
        if max_impact_pct is not None and q.price_impact_percent > Decimal(str(max_impact_pct)):
            raise NoFill(f"price impact {q.price_impact_percent:.2f}% is above the {max_impact_pct}% limit")
        slip = q.out_amount * bps // 10_000
        tokens = q.out_amount - slip
        if tokens <= 0:
            raise NoFill(f"a buy of {quote_amount} {quote_mint} returns no {mint}")
        return self._fill(position_id, "buy", mint, quote_mint, tokens, quote_amount + fee, q, fee, slip)

    async def _sell(self, position_id: int, mint: str, token_amount: int, quote_mint: str, bps: int) -> Fill:
        with trio.fail_after(self.timeout_s):
            q = await self._jup.quote(mint, quote_mint, token_amount, slippage_bps=bps)
            fee = await self.fee_in(quote_mint)
        slip = q.out_amount * bps // 10_000
        return self._fill(position_id, "sell", mint, quote_mint, token_amount, q.out_amount - slip - fee, q, fee, slip)

    def _fill(self, pid: int, side: str, mint: str, quote_mint: str, tokens: int, quote: int, q: JupiterQuote,
              fee: int, slip: int) -> Fill:
        return Fill(position_id=pid, side=side, mint=mint, quote_mint=quote_mint, token_amount=tokens,  # type: ignore[arg-type]
                    quote_amount=quote, quoted_out=q.out_amount, fee_quote=fee, slippage_quote=slip,
                    price_impact=str(q.price_impact), route="+".join(q.labels) or "?", at=self._clock())

    async def fee_in(self, quote_mint: str) -> int:
        """The transaction's fees in the position's quote units (lamports, or stablecoin units at the SOL price)."""
        if quote_mint == WSOL_MINT:
            return self.fee_lamports
        price = (await self._jup.usd_prices([WSOL_MINT])).get(WSOL_MINT)
        if price is None or price <= 0:
            raise NoFill("no SOL price to convert the network fee")
        return math.ceil(Fraction(self.fee_lamports, 10**9) * Fraction(price) * STABLE_UNITS)

