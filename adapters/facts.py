"""The typed facts the outside services yield about a token, what token safety (intelligence/safety.py) scores.

Plain frozen dataclasses: the adapters build them from their wire formats; nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class MintFacts:
    program: str  # "spl-token" | "spl-token-2022"
    decimals: int
    supply: int
    mint_authority: str | None
    freeze_authority: str | None
    extensions: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> state


@dataclass(frozen=True)
class Holder:
    token_account: str
    owner: str | None
    amount: int


@dataclass(frozen=True)
class PairFacts:
    pair_address: str
    dex: str
    liquidity_usd: float | None
    market_cap_usd: float | None
    created_at: float | None  # unix seconds


@dataclass(frozen=True)
class RouteFacts:
    out_amount: int
    price_impact_pct: float


@dataclass(frozen=True)
class RugcheckFacts:
    dangers: tuple[str, ...]
    score_normalised: float | None
