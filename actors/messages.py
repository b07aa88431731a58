"""The messages actors exchange. Frozen, carrying the ids they concern; `kind` tags the union."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

from actors.trades import NotATrade, Trade

if TYPE_CHECKING:
    from pykka import ActorRef


@dataclass(frozen=True, slots=True)
class Deliver:
    """A stored webhook transaction to hand to the watched wallets it touched."""

    signature: str
    payload: str  # the transaction's JSON text (immutable; each wallet parses its own copy); "" when classified
    wallets: tuple[str, ...]
    kind: Literal["deliver"] = "deliver"
    received_at: float | None = None  # when the gateway stored it (the bot's clock); None: unknown
    # (wallet, its trade or why it is none) for each wallet, when the gateway classified the transaction as it
    # parsed it (parsed once); None: each wallet classifies `payload` itself (a delivery replayed from the inbox)
    trades: tuple[tuple[str, Trade | NotATrade], ...] | None = None


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
    received_at: float | None = None  # the delivery's receipt (its timestamp is judged against it); None: now
    classified: bool = False  # the gateway classified it already: `trade` is the wallet's trade or why it is none
    trade: Trade | NotATrade | None = None


@dataclass(frozen=True, slots=True)
class PaperEntry:
    """An entry to open: the quote to spend and the tokens it should get at the leader's price, raw integers.
    `mode` is how it trades ("live": signed and sent; "shadow": a skipped signal followed on paper). `quote_mint`
    overrides the leader's quote asset: a live entry always pays SOL, whatever the leader paid with."""

    quote_amount: int
    token_amount: int
    mode: Literal["paper", "shadow", "live"] = "paper"
    slippage_bps: int | None = None  # the wallet's copy rules, for the executor
    max_price_impact_pct: float | None = None
    quote_mint: str | None = None  # None: the leader's trade's quote mint


@dataclass(frozen=True, slots=True)
class Observation:
    """What a wallet actor decided about one transaction; stored exactly once per (signature, wallet)."""

    signature: str
    wallet: str
    outcome: Literal["no_trade", "ignored", "signal", "unwatched"]
    trade: Trade | None = None
    decision: Literal["taken", "skipped"] | None = None
    reason: str | None = None  # a signal's decision reason, or why it is no trade (actors.trades.NotATrade)
    entry: PaperEntry | None = None
    mirror_to: tuple[int, ...] = ()
    safety: dict[str, Any] | None = field(default=None, hash=False)  # the verdict behind a buy decision
    decision_id: str | None = None  # the write's idempotency key: its own earlier commit is no duplicate


@dataclass(frozen=True, slots=True)
class JournalEvent:
    seq: int
    kind: str
    data: dict[str, Any] = field(hash=False)


@dataclass(frozen=True, slots=True)
class RecordResult:
    """A stored observation. A duplicate (another decision was stored first) carries the position that decision
    opened, while it is open (`journal` from its start), so the position is never left without its actor."""

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
    leader_holding_before: int | None = None  # the leader's token holding before this sale, when known


@dataclass(frozen=True, slots=True)
class StartPosition:
    position_id: int
    wallet: str
    journal: tuple[JournalEvent, ...]
    kind: Literal["start_position"] = "start_position"


@dataclass(frozen=True, slots=True)
class ToPosition:
    """A wallet's effect: `message` for the position `position_id` (told through the directory, not the root)."""

    position_id: int
    message: Any
    kind: Literal["to_position"] = "to_position"


@dataclass(frozen=True, slots=True)
class PositionClosed:
    position_id: int
    wallet: str
    token_mint: str
    kind: Literal["position_closed"] = "position_closed"
    # the outcome, for the risk actor (None: not given; the risk actor then reads the position's row)
    mode: str | None = None
    quote_mint: str | None = None
    realized_pnl_quote: int | None = None
    exit_reason: str | None = None


@dataclass(frozen=True, slots=True)
class ChildFailed:
    child: tuple[str, str]  # ("wallet", address) or ("position", id)
    error: str
    kind: Literal["child_failed"] = "child_failed"
    unprocessed: tuple[Any, ...] = ()  # messages it had received but not handled: handed to its successor


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
    liquidity_usd: Decimal | None = None  # the token's pool liquidity (DexScreener), None when unknown


@dataclass(frozen=True, slots=True)
class PriceTicks:
    ticks: tuple[PriceTick, ...]
    kind: Literal["price_ticks"] = "price_ticks"
    sol_usd: Decimal | None = None  # SOL's own fresh mark (also when no position is open): live sizing needs it


# -- the position engine: fills and operator commands ---------------------------------------------------
@dataclass(frozen=True, slots=True)
class Fill:
    """An executed (or, in paper mode, simulated) swap for one position. Raw integers only.

    `quote_amount` is what the position's books see: for a buy, the quote spent including fees; for a
    sell, the quote received after slippage and fees. `quoted_out` is what the route promised.
    """

    position_id: int
    side: Literal["buy", "sell"]
    mint: str
    quote_mint: str
    token_amount: int  # tokens received (buy) or sold (sell)
    quote_amount: int
    quoted_out: int
    fee_quote: int  # network + priority fee, in quote units
    slippage_quote: int  # slippage allowance taken off (in the output asset's units)
    price_impact: str  # the route's price impact, a fraction as text
    route: str
    at: float
    kind: Literal["fill"] = "fill"
    signature: str | None = None  # live: the transaction the chain confirmed; the fill is its balance deltas

    def as_json(self) -> dict[str, Any]:
        out = {"side": self.side, "token_amount": str(self.token_amount), "quote_amount": str(self.quote_amount),
               "quoted_out": str(self.quoted_out), "fee_quote": str(self.fee_quote),
               "slippage_quote": str(self.slippage_quote), "price_impact": self.price_impact, "route": self.route,
               "at": self.at}
        if self.signature is not None:
            out["signature"] = self.signature
        return out


@dataclass(frozen=True, slots=True)
class ClosePosition:
    """Operator: sell the whole position now."""

    position_id: int
    kind: Literal["close_position"] = "close_position"


@dataclass(frozen=True, slots=True)
class ClosePartial:
    """Operator: sell `fraction` (0 < fraction <= 1) of what is still open."""

    position_id: int
    fraction: Decimal
    kind: Literal["close_partial"] = "close_partial"


@dataclass(frozen=True, slots=True)
class SetStop:
    """Operator: move the stop to `stop_price`, in whole quote units (SOL or USDC) per whole token."""

    position_id: int
    stop_price: Decimal
    kind: Literal["set_stop"] = "set_stop"


@dataclass(frozen=True, slots=True)
class CommandReply:
    """A position's answer to an operator command: accepted, or refused with the reason."""

    position_id: int
    ok: bool
    error: str | None = None
    kind: Literal["command_reply"] = "command_reply"


# -- risk: entry reservations, breakers, per-wallet rules (actors/risk.py, actors/wallet.py) --------------
@dataclass(frozen=True, slots=True)
class ReserveEntry:
    """A wallet asks the risk actor for room to open one entry. The answer is an `EntryDecision` told to
    `reply_to` (the asking wallet's ref): a message in its mailbox, never a callback or a future.
    `reservation_id` is "<signature>:<wallet>": asking twice for the same observation is answered once."""

    reservation_id: str
    wallet: str
    token_mint: str
    quote_mint: str
    quote_amount: int
    reply_to: ActorRef | None = field(default=None, compare=False, hash=False)  # None: nobody to answer
    kind: Literal["reserve_entry"] = "reserve_entry"
    mode: str = "paper"  # "live": the live caps apply too


@dataclass(frozen=True, slots=True)
class EntryDecision:
    reservation_id: str
    granted: bool
    reason: str | None = None  # "cap:<name>" or "breaker:<name>" when refused
    kind: Literal["entry_decision"] = "entry_decision"


@dataclass(frozen=True, slots=True)
class ReservationBound:
    """The reserved entry was stored as `position_id` (its exposure now lasts until the position closes)."""

    reservation_id: str
    position_id: int
    wallet: str
    token_mint: str
    quote_mint: str
    quote_amount: int
    kind: Literal["reservation_bound"] = "reservation_bound"
    mode: str = "paper"


@dataclass(frozen=True, slots=True)
class ReservationReleased:
    """The reserved entry was not stored (a duplicate, or the wallet gave up waiting): free its room."""

    reservation_id: str
    kind: Literal["reservation_released"] = "reservation_released"


@dataclass(frozen=True, slots=True)
class BreakerReset:
    """Operator (CLI/panel): clear a tripped breaker by name."""

    name: str
    by: str = "operator"
    kind: Literal["breaker_reset"] = "breaker_reset"


@dataclass(frozen=True, slots=True)
class TripBreaker:
    """The root supervisor: a child failed past its restart intensity — stop new entries until an operator reset."""

    name: str
    reason: str
    by: str = "supervisor"
    kind: Literal["trip_breaker"] = "trip_breaker"


@dataclass(frozen=True, slots=True)
class WalletSettingsChanged:
    """A wallet's copy-rule overrides changed (`walltrack wallets set`)."""

    wallet: str
    overrides: Any = field(hash=False)  # dict[str, Any], validated against actors.rules.CopyRules
    kind: Literal["wallet_settings_changed"] = "wallet_settings_changed"


@dataclass(frozen=True, slots=True)
class SolPrice:
    """SOL in USD, from the price monitor: the risk actor values USD-quoted exposure in SOL with it."""

    usd: Decimal
    kind: Literal["sol_price"] = "sol_price"


@dataclass(frozen=True, slots=True)
class TradingModeChanged:
    """Operator (panel, CLI; stored in `runtime_settings`): the global trading mode, routed by the root to every
    wallet. "off": no new entry for any wallet, whatever its own rules (skipped as "mode:off"; exits go on).
    "paper"/"live": each wallet's copy rules decide, their default mode following this one unless COPY_MODE is
    set. Live is refused before it is stored while live execution does not exist (`actors.rules.mode_refusal`)."""

    mode: Literal["off", "paper", "live"]
    kind: Literal["trading_mode_changed"] = "trading_mode_changed"
