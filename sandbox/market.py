"""A deterministic simulated market: tokens in constant-product pools, simulated traders moving prices,
leader wallets with trading styles, and the hazards a copy-trader must survive.

Everything is driven by one seeded `random.Random` and a fixed step, so a seed always produces the same
market. `step_to(t)` advances simulated time; the leaders' trades it returns are what the Helius poster
delivers. All amounts are raw integers (lamports, atomic token units). Thread-safe: the HTTP servers read
it from their own thread under `lock`.

Each pool's address is a real keypair's public key (`pool_keypair(seed, symbol)`) and its vaults are that
address's associated token accounts, so the sandbox chain can sign for them when a swap executes. `route`
gives a quote's legs: one through the token's pool, plus one through `sol_pool` (SOL/USDC at `sol_usd`, no fee,
no impact) when SOL meets a USDC-quoted token. None of this draws on the RNG: a seed gives the same market.
"""

from __future__ import annotations

import math
import random
import threading
from dataclasses import dataclass, field
from typing import Literal

from sandbox.pools import (
    CAST,
    LAMPORTS,
    POOL_FEE_BPS,
    SOL_POOL,
    SOL_POOL_SOL,
    TOKEN_2022_PROGRAM_ID,
    TOKEN_PROGRAM_ID,
    USDC_MINT,
    USDC_UNITS,
    WSOL_MINT,
    Hazards,
    Leg,
    Pool,
    Quote,
    SimToken,
    associated,
    make_pool,
    pool_keypair,
    pubkey,
    signature,
)

__all__ = ["LAMPORTS", "SOL_POOL", "USDC_MINT", "USDC_UNITS", "WSOL_MINT", "Hazards", "Leader", "LeaderTrade", "Leg",
           "Market", "Pool", "SimClock", "SimToken", "associated", "pool_keypair", "pubkey", "signature"]

RUG_BAIT_S = 180.0  # a rug waits until a leader has held the token this long (its copiers are in by then)
RUG_KEEP = 50  # the rug leaves 1/RUG_KEEP of the pool: liquidity drained, far below an emergency-exit floor

Style = Literal["flipper", "holder", "scaler"]


@dataclass
class Leader:
    address: str
    label: str
    style: Style
    rng_seed: int
    next_action_at: float = 0.0
    holdings: dict[str, int] = field(default_factory=dict)  # mint -> raw tokens
    plans: list[tuple[float, str, float]] = field(default_factory=list)  # (at, mint, fraction of holding to sell)


@dataclass(frozen=True)
class LeaderTrade:
    """One trade by a leader, as it happened on the simulated chain."""

    signature: str
    slot: int
    timestamp: int
    leader: str
    mint: str
    side: Literal["buy", "sell"]
    token_amount: int
    quote_mint: str
    quote_amount: int
    decimals: int
    token_account: str  # the leader's token account for the mint
    pool: str
    base_vault: str
    quote_vault: str
    dex: str
    holding_before: int  # the leader's token holding before this trade (for proportional copy sells)


class Market:
    step_seconds = 1.0

    def __init__(self, seed: int = 7, start: float = 1_767_225_600.0, sol_usd: float = 150.0) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.start = start
        self.now = start
        self.slot = 300_000_000
        self.sol_usd = sol_usd
        self.lock = threading.RLock()
        self.tokens: dict[str, SimToken] = {}
        self.by_symbol: dict[str, SimToken] = {}
        self.leaders: list[Leader] = []
        self._n = 0
        for symbol, quote, hazards, drift, vol in CAST:
            self._add_token(symbol, quote, hazards, drift, vol)
        self.sol_pool = make_pool(seed, SOL_POOL, WSOL_MINT, TOKEN_PROGRAM_ID, USDC_MINT, SOL_POOL_SOL,
                                  int(SOL_POOL_SOL / LAMPORTS * sol_usd * USDC_UNITS), start - 400 * 86_400, "whirlpool")
        # two flippers (out within minutes: mirror exits), three holders (long enough for the price exits), a scaler
        for i, style in enumerate(["flipper", "holder", "holder", "scaler", "holder", "flipper"]):
            addr = pubkey(f"{seed}:leader:{i}")
            self.leaders.append(Leader(addr, f"{style}-{i}", style, self.rng.randrange(2**32),  # type: ignore[arg-type]
                                       next_action_at=start + self.rng.uniform(5, 60)))

    # -- construction --------------------------------------------------------------------------------
    def _add_token(self, symbol: str, quote: Quote, hz: Hazards, drift: float, vol: float) -> None:
        s = self.seed
        decimals = 6
        supply = 1_000_000_000 * 10**decimals
        in_pool = supply * 4 // 10 if hz.concentrated else supply * 8 // 10
        liq_usd = 300.0 if hz.thin else self.rng.uniform(40_000, 120_000)  # quote side of the pool, in USD
        quote_reserve = int(liq_usd / self.sol_usd * LAMPORTS) if quote == "SOL" else int(liq_usd * USDC_UNITS)
        mint = pubkey(f"{s}:mint:{symbol}")
        created_at = self.start - self.rng.uniform(2 * 3600, 72 * 3600)
        dex = self.rng.choice(["raydium", "pumpswap", "meteora"])
        program = TOKEN_2022_PROGRAM_ID if hz.token2022 else TOKEN_PROGRAM_ID
        pool = make_pool(s, symbol, mint, program, WSOL_MINT if quote == "SOL" else USDC_MINT, in_pool, quote_reserve,
                         created_at, dex)
        creator = pubkey(f"{s}:creator:{symbol}")
        rest = supply - in_pool
        if hz.concentrated:
            holders = {creator: rest * 6 // 10, pubkey(f"{s}:whale:{symbol}:1"): rest * 3 // 10}
            holders[pubkey(f"{s}:whale:{symbol}:2")] = rest - sum(holders.values())
        else:  # a rugger keeps half of what is outside the pool (10% of the supply) to dump
            n, bag = 40, rest // 2 if hz.rug_at is not None else 0
            holders = {pubkey(f"{s}:holder:{symbol}:{i}"): (rest - bag) // n for i in range(n)}
            holders[creator] = holders.get(creator, 0) + rest - sum(holders.values())
        token = SimToken(mint, symbol, f"{symbol.title()} Token", decimals, supply, quote, pool, hz, drift, vol, creator, holders)
        self.tokens[mint] = token
        self.by_symbol[symbol] = token

    # -- prices and routes (what Jupiter and DexScreener report) ----------------------------------------
    def price_usd(self, mint: str) -> float | None:
        t = self.tokens.get(mint)
        if t is None:
            return {WSOL_MINT: self.sol_usd, USDC_MINT: 1.0}.get(mint)
        return t.price_quote() * (self.sol_usd if t.quote == "SOL" else 1.0)

    def liquidity_usd(self, mint: str) -> float:
        t = self.tokens[mint]
        q = t.pool.quote_reserve / 10**t.quote_decimals * (self.sol_usd if t.quote == "SOL" else 1.0)
        return 2 * q

    def quote(self, input_mint: str, output_mint: str, amount: int) -> tuple[int, float, SimToken] | None:
        """(out amount, price impact fraction, token) through a token's pool, or None when there is no route.

        SOL reaches a USDC-quoted token through a SOL/USDC leg at the market's SOL price (as Jupiter
        routes through USDC), so every token can be bought with and sold back to SOL."""
        routed = self.route(input_mint, output_mint, amount)
        return None if routed is None else (routed[0][-1].out_amount, routed[1], routed[2])

    def route(self, input_mint: str, output_mint: str, amount: int) -> tuple[list[Leg], float, SimToken] | None:
        """The legs of `quote`'s route: one through the token's pool, and one through the SOL/USDC pool (`sol_pool`,
        a fixed-price pool at `sol_usd`, no fee, no impact) when SOL meets a USDC-quoted token."""
        with self.lock:
            via_sol = False
            if output_mint in self.tokens:
                t, buy = self.tokens[output_mint], True
                via_sol = input_mint == WSOL_MINT and t.quote == "USDC"
                if not via_sol and input_mint != t.quote_mint:
                    return None
            elif input_mint in self.tokens:
                t, buy = self.tokens[input_mint], False
                if t.hazards.honeypot or output_mint not in (t.quote_mint, WSOL_MINT):
                    return None  # a honeypot has no way back
                via_sol = output_mint == WSOL_MINT and t.quote == "USDC"
            else:
                return None
            legs: list[Leg] = []
            pool_in = amount
            if via_sol and buy:
                pool_in = self.sol_to_usdc(amount)
                legs.append(Leg(self.sol_pool, WSOL_MINT, USDC_MINT, amount, pool_in, None))
            if pool_in <= 0:
                return None
            out = t.swap_out(pool_in, buy)
            p = t.pool
            spot = (p.base_reserve / p.quote_reserve) if buy else (p.quote_reserve / p.base_reserve)
            ideal = pool_in * spot
            impact = max(0.0, 1 - out / ideal) if ideal > 0 else 1.0
            legs.append(Leg(p, t.quote_mint if buy else t.mint, t.mint if buy else t.quote_mint, pool_in, out, t,
                            pool_in * POOL_FEE_BPS // 10_000))
            if via_sol and not buy:
                legs.append(Leg(self.sol_pool, USDC_MINT, WSOL_MINT, out, self.usdc_to_sol(out), None))
            return legs, impact, t

    def sol_to_usdc(self, lamports: int) -> int:
        return int(lamports / LAMPORTS * self.sol_usd * USDC_UNITS)

    def usdc_to_sol(self, usdc: int) -> int:
        return int(usdc / USDC_UNITS / self.sol_usd * LAMPORTS)

    # -- time ----------------------------------------------------------------------------------------
    def step_to(self, t: float) -> list[LeaderTrade]:
        trades: list[LeaderTrade] = []
        with self.lock:
            while self.now + self.step_seconds <= t:
                self.now += self.step_seconds
                self.slot += int(self.step_seconds / 0.4)
                for token in self.tokens.values():
                    self._noise(token)
                    if self._rug_due(token):
                        self._rug(token)
                for leader in self.leaders:
                    trades.extend(self._leader_act(leader))
        return trades

    def _noise(self, t: SimToken) -> None:
        """Simulated traders: a log-normal move of the pool price per step, executed as one swap."""
        dt_min = self.step_seconds / 60
        ret = t.drift * dt_min + t.vol * math.sqrt(dt_min) * self.rng.gauss(0, 1)
        if t.hazards.honeypot:
            ret = abs(ret)  # nobody can sell a honeypot
        if t.rugged:
            ret = min(ret, 0.0) * 0.2
        # For x*y=k, moving the price by factor f needs quote_in = q * (sqrt(f) - 1) on a buy.
        f = math.exp(ret)
        p = t.pool
        if f >= 1:
            t.apply_swap(int(p.quote_reserve * (math.sqrt(f) - 1)) + 1, buy=True)
        else:
            t.apply_swap(int(p.base_reserve * (1 / math.sqrt(f) - 1)) + 1, buy=False)

    def _rug_due(self, t: SimToken) -> bool:
        """From `rug_at` on, the dev waits for bait: a leader that has held the token for `RUG_BAIT_S`."""
        at = t.hazards.rug_at
        return (at is not None and not t.rugged and self.now - self.start >= at
                and any(self.now - since >= RUG_BAIT_S for since in t.leaders_since.values()))

    def _rug(self, t: SimToken) -> None:
        """The creator pulls all but 1/RUG_KEEP of the liquidity, then dumps its own bag into what is left."""
        p = t.pool
        p.base_reserve //= RUG_KEEP
        p.quote_reserve //= RUG_KEEP
        t.apply_swap(t.holders.pop(t.creator, 0), buy=False)
        t.rugged = True

    def _leader_act(self, leader: Leader) -> list[LeaderTrade]:
        out: list[LeaderTrade] = []
        due = [p for p in leader.plans if p[0] <= self.now]
        for plan in due:
            leader.plans.remove(plan)
            _, mint, fraction = plan
            held = leader.holdings.get(mint, 0)
            amount = held if fraction >= 1 else int(held * fraction)
            if amount > 0 and not self.tokens[mint].hazards.honeypot:
                out.append(self._trade(leader, mint, "sell", amount))
        if self.now >= leader.next_action_at:
            rng = random.Random(leader.rng_seed ^ int(self.now))
            choices = [m for m in self.tokens if m not in leader.holdings]
            if choices:
                mint = rng.choice(sorted(choices))
                t = self.tokens[mint]
                usd = rng.uniform(75, 750)
                size = int(usd / self.sol_usd * LAMPORTS) if t.quote == "SOL" else int(usd * USDC_UNITS)
                trade = self._trade(leader, mint, "buy", size)
                out.append(trade)
                if trade.side == "buy" and leader.style == "flipper":
                    leader.plans.append((self.now + rng.uniform(120, 420), mint, 1.0))
                elif leader.style == "holder":
                    leader.plans.append((self.now + rng.uniform(900, 2400), mint, 1.0))
                else:  # the scaler sells in three parts
                    first = self.now + rng.uniform(180, 400)
                    leader.plans += [(first, mint, 0.3), (first + 240, mint, 0.5), (first + 480, mint, 1.0)]
            gap = {"flipper": (60, 180), "holder": (240, 600), "scaler": (180, 420)}[leader.style]
            leader.next_action_at = self.now + rng.uniform(*gap)
        return out

    def _trade(self, leader: Leader, mint: str, side: Literal["buy", "sell"], amount: int) -> LeaderTrade:
        t = self.tokens[mint]
        before = leader.holdings.get(mint, 0)
        out = t.apply_swap(amount, buy=(side == "buy"))
        if side == "buy":
            token_amount, quote_amount = out, amount
            leader.holdings[mint] = before + out
            t.leaders_since.setdefault(leader.address, self.now)
        else:
            token_amount, quote_amount = amount, out
            left = before - amount
            if left > 0:
                leader.holdings[mint] = left
            else:
                leader.holdings.pop(mint, None)
                t.leaders_since.pop(leader.address, None)
        self._n += 1
        return LeaderTrade(
            signature=signature(f"{self.seed}:tx:{self._n}"),
            slot=self.slot,
            timestamp=int(self.now),
            leader=leader.address,
            mint=mint,
            side=side,
            token_amount=token_amount,
            quote_mint=t.quote_mint,
            quote_amount=quote_amount,
            decimals=t.decimals,
            token_account=pubkey(f"ata:{leader.address}:{mint}"),
            pool=t.pool.address,
            base_vault=t.pool.base_vault,
            quote_vault=t.pool.quote_vault,
            dex=t.pool.dex,
            holding_before=before,
        )


class SimClock:
    """Simulated time: `start` plus wall time elapsed since creation, times `speed`. The bot uses the same
    clock in the demo, so time-based rules (pool age, time stops) see simulated time."""

    def __init__(self, start: float, speed: float) -> None:
        import time

        self.start = start
        self.speed = speed
        self._monotonic = time.monotonic
        self._t0 = time.monotonic()

    def __call__(self) -> float:
        return self.start + (self._monotonic() - self._t0) * self.speed

    def restart(self) -> None:
        """Back to `start`, counting from now. For a clock made before the trading begins (nothing timed by it
        yet): the seconds a bot takes to start are minutes of trades otherwise, all delivered at once."""
        self._t0 = self._monotonic()
