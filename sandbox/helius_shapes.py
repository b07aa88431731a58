"""How Helius presents a leader's trade (shared/API-FORMATS.md §1.5-§1.7): the shapes real payloads come in —
`SWAP` with an `events.swap` (straight, inverted or keeper-attributed), or `TRANSFER`/`UNKNOWN`/`BUY` with
`events: {}` / `[]`; native SOL through a temporary WSOL account, a kept WSOL account, lamports straight into a
pump.fun curve, or USDC; a relayer paying the fee; rent for a new token account.

`choose_shape(rng, trade)` picks one deterministically from a seeded RNG; `shapes_for(trade)` lists all;
`sandbox.helius_tx.enhanced_tx` renders a trade in one.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from itertools import product
from typing import Literal

from sandbox.market import LeaderTrade
from sandbox.pools import USDC_MINT, pubkey

RELAYERS = tuple(pubkey(f"helius-sandbox:relayer:{i}") for i in range(3))  # keepers that pay fees for others

Funding = Literal["native", "native_direct", "wsol", "usdc"]
Events = Literal["swap", "swap_inverted", "swap_keeper", "empty_object", "empty_list"]

# How each dex's trades are presented: (type, source, event styles seen for it). "BUY" stands for BUY/SELL.
PRESENTATIONS: dict[str, list[tuple[str, str, tuple[str, ...]]]] = {
    "raydium": [("SWAP", "RAYDIUM", ("swap",)), ("SWAP", "JUPITER", ("swap",)), ("UNKNOWN", "UNKNOWN", ("empty_object",))],
    "pumpswap": [
        ("SWAP", "PUMP_AMM", ("swap", "empty_object")),
        ("BUY", "PUMP_AMM", ("empty_object",)),  # the docs' type table lists BUY/SELL for PUMP_AMM
        ("SWAP", "PUMP_FUN", ("empty_object",)),  # bonding curve: lamports straight to the curve
        ("TRANSFER", "PUMP_FUN", ("empty_object",)),
        ("SWAP", "JUPITER", ("swap",)),
    ],
    "meteora": [
        ("SWAP", "METEORA", ("swap",)),
        ("TRANSFER", "UNKNOWN", ("empty_list", "empty_object")),  # DBC trades: no swap event
        ("UNKNOWN", "UNKNOWN", ("empty_list",)),
        ("SWAP", "JUPITER", ("swap",)),
    ],
}


@dataclass(frozen=True, slots=True)
class Shape:
    """How one trade is presented by Helius. `check(trade)` says whether it fits the trade."""

    type: str = "SWAP"  # SWAP | TRANSFER | UNKNOWN | BUY (rendered BUY or SELL by side)
    source: str = "RAYDIUM"
    events: Events = "swap"
    funding: Funding = "native"  # how the leader's quote moves (usdc iff the token is USDC-quoted)
    relayer: str | None = None  # a keeper that pays the fee (and is the feePayer); None: the leader pays
    new_account: bool = False  # a first buy creates the leader's token account (rent 2039280)
    close_account: bool = False  # a full sell closes it (rent back)
    rent_by_relayer: bool = False  # the relayer pays that rent (or gets it back): see KNOWN_GAPS
    priority_fee: int = 0  # lamports on top of the 5000 base fee

    def check(self, trade: LeaderTrade) -> None:
        """Raise ValueError when this shape cannot present `trade`."""
        usdc = trade.quote_mint == USDC_MINT
        if usdc != (self.funding == "usdc"):
            raise ValueError(f"funding {self.funding} does not fit quote {trade.quote_mint}")
        if (self.source == "PUMP_FUN") != (self.funding == "native_direct"):
            raise ValueError("a pump.fun curve trade, and only that, moves lamports straight to the curve")
        if self.events == "swap_keeper" and self.relayer is None:
            raise ValueError("a keeper-attributed swap event needs a relayer")
        if self.events.startswith("swap") and self.type != "SWAP":
            raise ValueError("only SWAP transactions carry a swap event here")
        if self.new_account and (trade.side != "buy" or trade.holding_before != 0):
            raise ValueError("only a first buy creates the token account")
        if self.close_account and (trade.side != "sell" or trade.token_amount != trade.holding_before):
            raise ValueError("only a full sell closes the token account")
        if self.rent_by_relayer and (self.relayer is None or not (self.new_account or self.close_account)):
            raise ValueError("rent_by_relayer needs a relayer and an account created or closed")
        if self.priority_fee < 0:
            raise ValueError("negative priority fee")


# Shapes real Helius could send that `actors.trades.classify` gets wrong (reported, not fixed here): a relayer
# that pays the rent of the leader's new token account (or takes the rent back on close) makes the leader's
# SOL delta off by 2039280 lamports, because the token account's lamports are counted as the leader's.
KNOWN_GAPS = ("rent_by_relayer",)


def _funding_options(trade: LeaderTrade, source: str) -> list[Funding]:
    if trade.quote_mint == USDC_MINT:
        return [] if source == "PUMP_FUN" else ["usdc"]
    return ["native_direct"] if source == "PUMP_FUN" else ["native", "wsol"]


def shapes_for(trade: LeaderTrade, *, known_gaps: bool = False) -> list[Shape]:
    """Every shape that can present `trade` (one relayer, no priority fee): for table tests."""
    out: list[Shape] = []
    first_buy = trade.side == "buy" and trade.holding_before == 0
    full_sell = trade.side == "sell" and trade.token_amount == trade.holding_before
    for type_, source, styles in PRESENTATIONS.get(trade.dex, PRESENTATIONS["raydium"]):
        for funding in _funding_options(trade, source):
            for style, relayer, rent in product(styles, (None, RELAYERS[0]), (False, True)):
                events = ["swap", "swap_inverted", "swap_keeper"] if style == "swap" else [style]
                for ev in events:
                    shape = Shape(type_, source, ev, funding, relayer,  # type: ignore[arg-type]
                                  new_account=rent and first_buy, close_account=rent and full_sell)
                    if rent and not (first_buy or full_sell):
                        continue
                    variants = [shape]
                    if known_gaps and relayer and (shape.new_account or shape.close_account):
                        variants.append(replace(shape, rent_by_relayer=True))
                    for v in variants:
                        try:
                            v.check(trade)
                        except ValueError:
                            continue
                        out.append(v)
    return out


def choose_shape(rng: random.Random, trade: LeaderTrade) -> Shape:
    """A shape for `trade`, drawn from `rng` (same RNG state, same shape). Never a KNOWN_GAPS shape."""
    options = [p for p in PRESENTATIONS.get(trade.dex, PRESENTATIONS["raydium"]) if _funding_options(trade, p[1])]
    type_, source, styles = rng.choice(options)
    funding = _funding_options(trade, source)[0]
    if funding == "native" and rng.random() >= 0.7:
        funding = "wsol"  # the leader keeps a WSOL account and trades from it
    relayer = rng.choice(RELAYERS) if rng.random() < 0.15 else None
    style = rng.choice(styles)
    events: str = style
    if style == "swap":
        roll = rng.random()
        if roll < 0.08:
            events = "swap_inverted"
        elif roll < 0.16 and relayer is not None:
            events = "swap_keeper"
        elif roll < 0.16:
            events = "swap_inverted"
    new_account = trade.side == "buy" and trade.holding_before == 0 and rng.random() < 0.6
    close_account = trade.side == "sell" and trade.token_amount == trade.holding_before and rng.random() < 0.5
    priority = rng.choice([0, 0, 10_000, 50_000, 100_000, 250_000, 1_000_000])
    shape = Shape(type_, source, events, funding, relayer, new_account, close_account, False, priority)  # type: ignore[arg-type]
    shape.check(trade)
    return shape


def shape_rng(seed: int | str, trade: LeaderTrade) -> random.Random:
    """The RNG a poster seeded with `seed` uses for `trade`'s shape (independent of delivery order)."""
    return random.Random(f"{seed}:shape:{trade.signature}")

