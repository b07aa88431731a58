"""The messages actors exchange. Frozen, carrying the ids they concern; `kind` tags the union."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

from actors.trades import Trade


@dataclass(frozen=True, slots=True)
class Deliver:
    """A stored webhook transaction to hand to the watched wallets it touched."""

    signature: str
    payload: str  # the transaction's JSON text (immutable; each wallet parses its own copy)
    wallets: tuple[str, ...]
    kind: Literal["deliver"] = "deliver"


@dataclass(frozen=True, slots=True)
class WatchlistChanged:
    wallets: frozenset[str]
    kind: Literal["watchlist_changed"] = "watchlist_changed"


@dataclass(frozen=True, slots=True)
class SwapObserved:
    signature: str
    wallet: str
    payload: str
    kind: Literal["swap_observed"] = "swap_observed"


@dataclass(frozen=True, slots=True)
class PaperEntry:
    """A paper fill: quote spent and tokens received, both raw integers."""

    quote_amount: int
    token_amount: int
    mode: Literal["paper", "shadow"] = "paper"


@dataclass(frozen=True, slots=True)
class Observation:
    """What a wallet actor decided about one transaction; stored exactly once per (signature, wallet)."""

    signature: str
    wallet: str
    outcome: Literal["no_trade", "signal", "unwatched"]
    trade: Trade | None = None
    decision: Literal["taken", "skipped"] | None = None
    reason: str | None = None
    entry: PaperEntry | None = None
    mirror_to: tuple[int, ...] = ()
    safety: dict[str, Any] | None = field(default=None, hash=False)  # the verdict behind a buy decision


@dataclass(frozen=True, slots=True)
class JournalEvent:
    seq: int
    kind: str
    data: dict[str, Any] = field(hash=False)


@dataclass(frozen=True, slots=True)
class RecordResult:
    duplicate: bool
    signal_id: int | None = None
    position_id: int | None = None
    journal: tuple[JournalEvent, ...] = ()


@dataclass(frozen=True, slots=True)
class Persisted:
    """The outcome of an actor's write: a result, or the exception it failed with."""

    token: int
    result: Any
    kind: Literal["persisted"] = "persisted"


@dataclass(frozen=True, slots=True)
class LeaderSold:
    position_id: int
    signature: str
    wallet: str
    token_amount: int
    quote_mint: str
    quote_amount: int
    kind: Literal["leader_sold"] = "leader_sold"


@dataclass(frozen=True, slots=True)
class StartPosition:
    position_id: int
    wallet: str
    journal: tuple[JournalEvent, ...]
    kind: Literal["start_position"] = "start_position"


@dataclass(frozen=True, slots=True)
class ToPosition:
    position_id: int
    message: Any
    kind: Literal["to_position"] = "to_position"


@dataclass(frozen=True, slots=True)
class PositionClosed:
    position_id: int
    wallet: str
    token_mint: str
    kind: Literal["position_closed"] = "position_closed"


@dataclass(frozen=True, slots=True)
class ChildFailed:
    child: tuple[str, str]  # ("wallet", address) or ("position", id)
    error: str
    kind: Literal["child_failed"] = "child_failed"


@dataclass(frozen=True, slots=True)
class ChildRecovered:
    child: tuple[str, str]
    snapshot: Any
    kind: Literal["child_recovered"] = "child_recovered"


@dataclass(frozen=True, slots=True)
class GetStats:
    kind: Literal["get_stats"] = "get_stats"


@dataclass(frozen=True, slots=True)
class PriceTick:
    """A price observation for one token. `usd` is None when no source knows it (unknown, never zero)."""

    mint: str
    usd: Decimal | None
    sol_usd: Decimal | None
    source: str | None
    at: float
    stale: bool = False
    kind: Literal["price_tick"] = "price_tick"


@dataclass(frozen=True, slots=True)
class PriceTicks:
    ticks: tuple[PriceTick, ...]
    kind: Literal["price_ticks"] = "price_ticks"
