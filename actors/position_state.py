"""A position's state, the fold of its journal into it, and the prices its rules compare (actors/position.py).

`apply` is the only place a position's state changes: replaying the journal (`fold`) after a restart yields the
same state. The commands and effects private to the position live here too, so that the table
(actors/position_table.py), the exit rules (actors/position_exits.py) and the live rows (actors/position_live.py)
share them. Prices are `Fraction`s of raw quote units per raw token; amounts are integers.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal
from fractions import Fraction
from functools import lru_cache
from typing import Any

from actors.messages import ClosePartial, ClosePosition, CommandReply, Fill, JournalEvent, PriceTick, SetStop
from actors.ports import ExitPlan, LivePolicy
from actors.trades import STABLE_MINTS, WSOL_MINT

STATES = ("pending_entry", "buying", "open", "partially_closed", "selling", "exit_failed", "closed", "entry_failed")
LIVE = ("open", "partially_closed", "exit_failed")  # holding tokens, no swap in flight: the exit rules run
SWAPPING = ("buying", "selling")  # a live swap in flight (or waiting for its next attempt)
TERMINAL = ("closed", "entry_failed")
QUOTE_DECIMALS = {WSOL_MINT: 9, **{m: 6 for m in STABLE_MINTS}}
MANUAL = (ClosePosition, ClosePartial, SetStop)


class memo:  # noqa: N801 - a decorator, named like functools.cached_property
    """A property computed once per (immutable) instance. Not functools.cached_property: on Python 3.11 that takes
    one lock per class, so the workers ticking 10,000 positions at once queue on it (a first sweep: 1.5 s -> 1.1 s)."""

    def __init__(self, fn: Any) -> None:
        self.fn, self.name = fn, fn.__name__

    def __get__(self, obj: Any, owner: Any = None) -> Any:
        if obj is None:
            return self
        value = obj.__dict__[self.name] = self.fn(obj)  # the instance's own entry wins from now on
        return value



# -- commands and effects private to the position ----------------------------------------------------
@dataclass(frozen=True)
class Filled:
    """The executor filled our order."""

    fill: Fill


@dataclass(frozen=True)
class FillFailed:
    """The executor could not fill (no route, provider down): never a fake fill."""

    side: str
    error: str


@dataclass(frozen=True)
class CancelEntry:
    """The entry is not to be bought after all (the global kill switch is on): nothing was spent."""

    reason: str


@dataclass(frozen=True)
class Buy:
    quote_amount: int


@dataclass(frozen=True)
class Sell:
    token_amount: int


@dataclass(frozen=True)
class Order:
    """An exit decided but not yet filled (kept in the state so a restart retries it)."""

    reason: str
    token_amount: int
    tp_level: int | None = None
    attempts: int = 0
    retry_at: float | None = None  # None: due now


@dataclass(frozen=True)
class Context:
    """What a decision may know besides the state: the time, the plan for new positions, the last fresh price."""

    now: float
    plan: ExitPlan = ExitPlan()
    mark: PriceTick | None = None
    live: LivePolicy = LivePolicy()


@dataclass(frozen=True)
class Step:
    events: tuple[JournalEvent, ...] = ()
    effects: tuple[Any, ...] = ()  # Buy | Sell (paper), Prepare | Land | Later (live)
    reply: CommandReply | None = None
    defer: bool = False  # keep the command until the swap in flight has an outcome


# -- the state and its fold -----------------------------------------------------------------------------
@dataclass(frozen=True)
class PositionState:
    id: int
    wallet: str
    token_mint: str
    token_decimals: int
    quote_mint: str
    mode: str
    status: str
    entry_quote_amount: int  # pending: the quote we mean to spend; then: what the entry cost, fees included
    entry_token_amount: int
    token_amount_open: int
    exit_quote_amount: int = 0  # what the exits brought in, after fees and slippage
    realized_pnl_quote: int | None = None
    exit_reason: str | None = None
    seq: int = 0
    plan: ExitPlan = ExitPlan()
    opened_at: float | None = None
    stop_price: Fraction | None = None  # an explicit stop (breakeven or manual); None: the plan's stop loss
    stop_reason: str = "stop_loss"
    tp_done: int = 0  # take-profit levels filled
    high_water: Fraction | None = None  # the journaled high-water mark; None: the entry price
    stale_flagged: bool = False
    order: Order | None = None
    leader_token_amount: int | None = None  # the leader's buy we copied
    leader_sold: int = 0  # what the leader has sold of it since
    slippage_bps: int | None = None  # the wallet's execution limits (None: the executor's defaults)
    max_price_impact_pct: float | None = None  # for the entry only: an exit must be able to get out
    swap: L.Swap | None = None  # live: the swap in flight (its intent, then its signed transaction)
    attempts: int = 0  # live: failed attempts of the current swap
    fees_lost: int = 0  # live: fees of entry attempts that landed failed (part of the entry's cost)

    @memo  # (the state is immutable: derived prices are computed once, not on every tick)
    def entry_price(self) -> Fraction | None:
        return Fraction(self.entry_quote_amount, self.entry_token_amount) if self.entry_token_amount > 0 else None

    @memo
    def stop(self) -> Fraction | None:
        if self.stop_price is not None:
            return self.stop_price
        entry = self.entry_price
        if entry is None or self.plan.stop_loss_pct <= 0:
            return None
        return entry * levels(self.plan).stop

    @memo
    def mark_high(self) -> Fraction | None:
        return self.high_water if self.high_water is not None else self.entry_price

    def prepared(self) -> "PositionState":
        """This state with its derived prices computed: done when the state is made (a journal event), so a price
        sweep to thousands of positions only compares (measured: the first sweep of 10,000 took twice as long)."""
        self.entry_price, self.stop, self.mark_high  # noqa: B018 - computed for their memo
        return self

    def projection(self) -> dict[str, Any]:
        """The `positions` row (storage.positions)."""
        return {
            "status": self.status, "entry_quote_amount": self.entry_quote_amount,
            "entry_token_amount": self.entry_token_amount, "token_amount_open": self.token_amount_open,
            "exit_quote_amount": self.exit_quote_amount, "realized_pnl_quote": self.realized_pnl_quote,
            "exit_reason": self.exit_reason,
        }


def _frac(x: Fraction) -> str:
    return f"{x.numerator}/{x.denominator}"


def _opened(d: dict[str, Any], position_id: int, seq: int) -> PositionState:
    pending = d.get("entry") == "pending"
    tokens = 0 if pending else int(d["entry_token_amount"])
    return PositionState(
        id=position_id, wallet=d["wallet"], token_mint=d["token_mint"], token_decimals=int(d["token_decimals"]),
        quote_mint=d["quote_mint"], mode=d["mode"], status="pending_entry" if pending else "open",
        entry_quote_amount=int(d["entry_quote_amount"]), entry_token_amount=tokens, token_amount_open=tokens,
        seq=seq, plan=ExitPlan.from_json(d["plan"]) if "plan" in d else ExitPlan(), opened_at=d.get("at"),
        leader_token_amount=int(d["leader_token_amount"]) if d.get("leader_token_amount") else None,
        slippage_bps=d.get("slippage_bps"), max_price_impact_pct=d.get("max_price_impact_pct"),
    )


def _filled_exit(s: PositionState, d: dict[str, Any], status: str) -> PositionState:
    f = d["fill"]
    sold, got = int(f["token_amount"]), int(f["quote_amount"])
    exit_quote = s.exit_quote_amount + got
    tp = d.get("tp_level")
    left = s.token_amount_open - sold
    rest = s.order.token_amount - sold if s.order is not None else 0  # a sale capped below its order: the rest is due
    order = replace(s.order, token_amount=min(rest, left), attempts=0, retry_at=None) \
        if s.order is not None and rest > 0 and left > 0 and status != "closed" else None
    return replace(
        s, status=status, token_amount_open=0 if status == "closed" else left, exit_quote_amount=exit_quote, order=order,
        swap=None, attempts=0,
        tp_done=max(s.tp_done, tp + 1) if tp is not None else s.tp_done,
        realized_pnl_quote=exit_quote - s.entry_quote_amount if status == "closed" else None,
        exit_reason=d["reason"] if status == "closed" else None,
    )


def apply(state: PositionState | None, ev: JournalEvent, position_id: int) -> PositionState:
    """The fold step: pure, and the only place state changes."""
    d, k = ev.data, ev.kind
    if k == "opened":
        assert state is None, "opened twice"
        return _opened(d, position_id, ev.seq)
    assert state is not None, f"{k} before opened"
    s = replace(state, seq=ev.seq)
    if k == "entry_filled":
        f = d["fill"]
        tokens = int(f["token_amount"])
        return replace(s, status="open", entry_quote_amount=int(f["quote_amount"]) + s.fees_lost, entry_token_amount=tokens,
                       token_amount_open=tokens, plan=ExitPlan.from_json(d["plan"]), opened_at=float(d["at"]),
                       swap=None, attempts=0)
    if k == "entry_failed":
        # no tokens bought: the PnL is the fees of attempts that landed failed (entry_quote_amount keeps the size meant)
        return replace(s, status="entry_failed", entry_token_amount=0, token_amount_open=0, realized_pnl_quote=-s.fees_lost,
                       exit_reason=d.get("reason", "entry_failed"), swap=None)
    if k == "exit_ordered":
        return replace(s, order=Order(d["reason"], int(d["token_amount"]), d.get("tp_level")),
                       leader_sold=s.leader_sold + int(d.get("leader_sold", 0)))
    if k == "exit_failed":
        assert s.order is not None, "exit_failed without an order"
        return replace(s, status="exit_failed", swap=None, attempts=0,
                       order=replace(s.order, attempts=int(d["attempt"]), retry_at=float(d["retry_at"])))
    if k == "partial_exit":
        return _filled_exit(s, d, "partially_closed")
    if k == "exit_filled":
        return _filled_exit(s, d, "closed")
    if k == "stop_moved":
        return replace(s, stop_price=Fraction(d["stop_price"]), stop_reason=d["reason"])
    if k == "high_water":
        return replace(s, high_water=Fraction(d["price"]))
    if k == "stale_flagged":
        return replace(s, stale_flagged=True)
    if k == "stale_cleared":
        return replace(s, stale_flagged=False)
    if k == "closed":  # before the engine: a mirror exit at the leader's price
        exit_quote = s.exit_quote_amount + int(d["exit_quote_amount"])
        return replace(s, status="closed", token_amount_open=s.token_amount_open - int(d["exit_token_amount"]),
                       exit_quote_amount=exit_quote, realized_pnl_quote=exit_quote - s.entry_quote_amount,
                       exit_reason=d["reason"])
    if k == "mirror_unpriced":  # before the engine
        return s
    if k in L.LIVE_EVENTS:
        return L.apply_live(s, k, d)
    raise LookupError(f"unknown journal event {k!r}")


def fold(position_id: int, journal: tuple[JournalEvent, ...]) -> PositionState:
    state: PositionState | None = None
    for ev in journal:
        state = apply(state, ev, position_id)
    assert state is not None, f"position {position_id} has an empty journal"
    return state


# -- prices ---------------------------------------------------------------------------------------------
def quote_price(s: PositionState, t: PriceTick | None) -> Fraction | None:
    """The tick as raw quote units per raw token; None when unknown or stale (never zero, never a guess)."""
    if t is None or t.usd is None or t.stale or t.usd <= 0 or s.quote_mint not in QUOTE_DECIMALS:
        return None
    if s.quote_mint == WSOL_MINT and (t.sol_usd is None or t.sol_usd <= 0):
        return None
    return _raw_price(t.usd, t.sol_usd if s.quote_mint == WSOL_MINT else None, s.quote_mint, s.token_decimals)


@lru_cache(maxsize=4096)  # one tick reaches every position of its token: convert it once, not per position
def _raw_price(usd: Decimal, sol_usd: Decimal | None, quote_mint: str, token_decimals: int) -> Fraction:
    whole = Fraction(usd) / Fraction(sol_usd) if sol_usd is not None else Fraction(usd)  # stablecoin: 1 unit = $1
    return whole * 10 ** QUOTE_DECIMALS[quote_mint] / 10**token_decimals


@dataclass(frozen=True)
class Levels:
    """An exit plan's percentages as price multipliers."""

    stop: Fraction
    trailing_activation: Fraction
    trailing_distance: Fraction
    trailing_step: Fraction
    take_profit: tuple[Fraction, ...]  # per rung of the ladder


def levels(plan: ExitPlan) -> Levels:
    """The plan's price multipliers, kept on the plan object: hashing a plan of Decimals on every tick costs more
    than the rules themselves. Equal plans (every position of a wallet) share one computation."""
    got = plan.__dict__.get("_levels")
    if got is None:
        got = _levels(plan)
        object.__setattr__(plan, "_levels", got)  # frozen: not a field, so equality and the journal ignore it
    return got


@lru_cache(maxsize=256)
def _levels(plan: ExitPlan) -> Levels:
    pct = lambda v: Fraction(v) / 100  # noqa: E731
    return Levels(1 - pct(plan.stop_loss_pct), 1 + pct(plan.trailing_activation_pct), 1 - pct(plan.trailing_distance_pct),
                  1 + pct(plan.trailing_step_pct), tuple(1 + pct(gain) for gain, _ in plan.take_profit))


def whole_to_raw(s: PositionState, price: Decimal) -> Fraction:
    return Fraction(price) * 10 ** QUOTE_DECIMALS.get(s.quote_mint, 9) / 10**s.token_decimals


from actors import position_live as L  # noqa: E402 - at the bottom: the live fold uses this state (mutual import)
