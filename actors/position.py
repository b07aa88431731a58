"""PositionActor: one per position. Its state is a fold of its journal (event-sourced).

A command is decided against the current state, by the pure `TABLE`, into journal events and effects
(`Buy`/`Sell` through the paper `Executor` port; `Prepare`/`Land`/`Later` through the `LiveExecutor` for a live
position, actors/position_live.py). The shell stores the events, applies them, then performs the effects; an
outcome comes back as a message (`Filled`, `FillFailed`, `Signed`, `SwapFailed`) and is decided like any command.
Replaying the journal after a restart yields the same state: stops, ladder progress, trailing mark, pending
order, the live swap in flight. Prices are `Fraction`s of raw quote units per raw token; amounts are integers.

| state            | command       | journal events                                         | next             |
|------------------|---------------|--------------------------------------------------------|------------------|
| pending_entry    | Resume        | paper: — (+ Buy). live: buy_intent (+ Prepare)          | same / buying    |
| pending_entry    | Filled(buy)   | entry_filled (the fill, the exit plan, the time)       | open             |
| pending_entry    | FillFailed    | entry_failed                                           | entry_failed     |
| pending_entry    | LeaderSold    | entry_failed (leader_sold_before_entry)                | entry_failed     |
| pending_entry    | PriceTick, Signed, SwapFailed, Retry | —                               | pending_entry    |
| pending_entry    | CancelEntry   | entry_failed (mode:off: the kill switch, before a buy) | entry_failed     |
| any other        | CancelEntry   | — (bought already, in flight — the send gate refuses — | same             |
|                  |               | or over)                                               |                  |
| pending_entry,   | manual *      | — (reply: not filled yet)                              | same             |
|   buying         |               |                                                        |                  |
| buying, selling  | Signed        | buy_signature / sell_signature (+ Land: send, confirm) | same             |
| buying, selling  | SwapFailed    | buy_failed / sell_failed (+ Later → Retry) while       | same             |
|                  |               | attempts remain; then buy: entry_failed; sell:         | entry_failed,    |
|                  |               | exit_failed. Unknown outcome: — (+ Later → re-Land)    | exit_failed      |
| buying, selling  | Resume        | — (+ Prepare: intent only; + Land: signature journaled)| same             |
| buying, selling  | Retry         | buy_intent / sell_intent (+ Prepare); re-Land          | same             |
| buying           | Filled(buy)   | entry_filled (the chain's fill); bought nothing:       | open             |
|                  |               | buy_failed + entry_failed                              | entry_failed     |
| buying           | LeaderSold    | entry_failed when no swap is in flight, else deferred  | entry_failed     |
| buying           | PriceTick, FillFailed | —                                              | buying           |
| open, partially_ | PriceTick     | stale_flagged / stale_cleared; high_water; then, if a  | same             |
|   closed,        |               | rule fires: exit_ordered (+ Sell). Rules, in order:    |                  |
|   exit_failed    |               | emergency_liquidity, stop (stop_loss, breakeven_stop,  |                  |
|                  |               | manual_stop), trailing_stop, time_stop, take_profit_N. |                  |
|                  |               | An unknown or stale price fires no price rule.         |                  |
|                  |               | A failed order is retried (Sell) when due.             |                  |
| open, partially_ | LeaderSold    | exit_ordered (mirror_sell, the leader's fraction) + Sell | same           |
|   closed, exit_f | ClosePosition | exit_ordered (manual_close) + Sell; reply ok           | same             |
|                  | ClosePartial  | exit_ordered (manual_partial) + Sell; or error reply   | same             |
|                  | SetStop       | stop_moved (manual_stop); or error reply               | same             |
|                  | Filled(sell)  | partial_exit [+ stop_moved breakeven_stop after TP 1]  | partially_closed |
|                  |               | or exit_filled when nothing is left                    | closed           |
|                  | FillFailed    | exit_failed (attempt n, retry_at with backoff)         | exit_failed      |
|                  | Signed, SwapFailed, Resume, Retry | —                                  | same             |
|                  | (live: every Sell above is journaled sell_intent + Prepare instead)   | selling          |
| selling          | PriceTick     | stale_flagged / stale_cleared / high_water only        | selling          |
| selling          | LeaderSold,   | — deferred until the sale has an outcome (a close is   | selling          |
|                  | Close*        | validated at once, its reply ok)                       |                  |
| selling          | SetStop       | stop_moved (manual_stop); or error reply               | selling          |
| selling          | Filled(sell)  | partial_exit / exit_filled (the chain's fill)          | partially_closed |
|                  |               |                                                        | / closed         |
| selling          | FillFailed    | —                                                      | selling          |
| closed,          | every command | — (manual: reply "position is closed")                 | same             |
|   entry_failed   |               |                                                        |                  |

Journals written before the engine (`opened` without `"entry": "pending"`, `closed`, `mirror_unpriced`)
still fold: such a position starts `open` at its recorded entry with the default plan.
"""

from __future__ import annotations

import math
from concurrent.futures import Future
from dataclasses import dataclass, replace
from decimal import Decimal
from fractions import Fraction
from functools import cached_property, lru_cache
from typing import Any, Callable

import pykka
import structlog

from actors.messages import (
    ClosePartial,
    ClosePosition,
    CommandReply,
    Fill,
    JournalEvent,
    LeaderSold,
    PositionClosed,
    PriceTick,
    SetStop,
)
from actors.ports import ExitPlan, LivePolicy, Ports, SignedSwap, SwapError
from actors.position_live import (
    LIVE_EVENTS,
    Land,
    Later,
    Prepare,
    Resume,
    Retry,
    Signed,
    Swap,
    SwapFailed,
    apply_live,
    as_live,
    defer,
    defer_command,
    on_filled_buying,
    on_leader_sold_buying,
    on_resume_pending,
    on_resume_swapping,
    on_retry,
    on_signed,
    on_swap_failed,
    on_tick_selling,
)
from actors.shell import Shell
from actors.trades import STABLE_MINTS, WSOL_MINT

log = structlog.get_logger("position")

STATES = ("pending_entry", "buying", "open", "partially_closed", "selling", "exit_failed", "closed", "entry_failed")
LIVE = ("open", "partially_closed", "exit_failed")  # holding tokens, no swap in flight: the exit rules run
SWAPPING = ("buying", "selling")  # a live swap in flight (or waiting for its next attempt)
TERMINAL = ("closed", "entry_failed")
QUOTE_DECIMALS = {WSOL_MINT: 9, **{m: 6 for m in STABLE_MINTS}}
MANUAL = (ClosePosition, ClosePartial, SetStop)


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
    swap: Swap | None = None  # live: the swap in flight (its intent, then its signed transaction)
    attempts: int = 0  # live: failed attempts of the current swap
    fees_lost: int = 0  # live: fees of entry attempts that landed failed (part of the entry's cost)

    @cached_property  # (the state is immutable: derived prices are computed once, not on every tick)
    def entry_price(self) -> Fraction | None:
        return Fraction(self.entry_quote_amount, self.entry_token_amount) if self.entry_token_amount > 0 else None

    @cached_property
    def stop(self) -> Fraction | None:
        if self.stop_price is not None:
            return self.stop_price
        entry = self.entry_price
        if entry is None or self.plan.stop_loss_pct <= 0:
            return None
        return entry * levels(self.plan).stop

    @cached_property
    def mark_high(self) -> Fraction | None:
        return self.high_water if self.high_water is not None else self.entry_price

    def projection(self) -> dict[str, Any]:
        """The `positions` row (walltrack.store)."""
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
    if k in LIVE_EVENTS:
        return apply_live(s, k, d)
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


@lru_cache(maxsize=256)
def levels(plan: ExitPlan) -> Levels:
    pct = lambda v: Fraction(v) / 100  # noqa: E731
    return Levels(1 - pct(plan.stop_loss_pct), 1 + pct(plan.trailing_activation_pct), 1 - pct(plan.trailing_distance_pct),
                  1 + pct(plan.trailing_step_pct), tuple(1 + pct(gain) for gain, _ in plan.take_profit))


def whole_to_raw(s: PositionState, price: Decimal) -> Fraction:
    return Fraction(price) * 10 ** QUOTE_DECIMALS.get(s.quote_mint, 9) / 10**s.token_decimals


# -- the table --------------------------------------------------------------------------------------------
Events = list[tuple[str, dict[str, Any]]]


def _ahead(s: PositionState, events: Events) -> PositionState:
    for kind, data in events:
        s = apply(s, JournalEvent(s.seq + 1, kind, data), s.id)
    return s


def _order(s: PositionState, reason: str, amount: int, extra: dict[str, Any] | None = None,
           tp_level: int | None = None) -> tuple[Events, tuple[Sell, ...]]:
    """Order an exit of `amount` (capped at what is open), merged with a pending order."""
    if s.order is not None:  # an earlier order still unfilled: this one sells on top of it
        amount += s.order.token_amount
    amount = min(amount, s.token_amount_open)
    data = {"reason": reason, "token_amount": str(amount), "tp_level": tp_level, **(extra or {})}
    return [("exit_ordered", data)], (Sell(amount),)


def _full_trigger(s: PositionState, p: Fraction | None, t: PriceTick, ctx: Context) -> str | None:
    plan = s.plan
    if plan.emergency_min_liquidity_usd > 0 and t.liquidity_usd is not None \
            and t.liquidity_usd < plan.emergency_min_liquidity_usd:
        return "emergency_liquidity"
    if p is not None:
        stop = s.stop
        if stop is not None and p <= stop:
            return s.stop_reason
        entry, high = s.entry_price, s.mark_high
        if plan.trailing_distance_pct > 0 and entry is not None and high is not None \
                and high >= entry * levels(plan).trailing_activation and p <= high * levels(plan).trailing_distance:
            return "trailing_stop"
    if plan.time_stop_s > 0 and s.opened_at is not None and ctx.now - s.opened_at >= plan.time_stop_s:
        return "time_stop"
    return None


def on_tick_live(s: PositionState, t: PriceTick, ctx: Context) -> Step:
    plan, events = s.plan, []
    p = quote_price(s, t)
    if p is None:
        since = t.at if t.usd is not None else (s.opened_at if s.opened_at is not None else ctx.now)
        if not s.stale_flagged and plan.stale_limit_s > 0 and ctx.now - since > plan.stale_limit_s:
            events.append(("stale_flagged", {"since": since, "age_s": round(ctx.now - since, 3),
                                             "source": t.source, "unknown": t.usd is None}))
    else:
        if s.stale_flagged:
            events.append(("stale_cleared", {"price": _frac(p)}))
        high = s.mark_high
        if high is not None and p > high and p >= high * levels(plan).trailing_step:
            events.append(("high_water", {"price": _frac(p)}))
    s2 = _ahead(s, events)
    effects: tuple[Sell, ...] = ()
    reason = _full_trigger(s2, p, t, ctx)
    price = {"price": _frac(p) if p is not None else None}
    if reason is not None and (s2.order is None or s2.order.token_amount < s2.token_amount_open):
        more, effects = _order(replace(s2, order=None), reason, s2.token_amount_open, price)
        events += more
    elif s2.order is not None:
        if s2.order.retry_at is None or ctx.now >= s2.order.retry_at:
            effects = (Sell(s2.order.token_amount),)
    elif p is not None and s2.tp_done < len(plan.take_profit) and s2.entry_price is not None:
        _, fraction = plan.take_profit[s2.tp_done]
        if p >= s2.entry_price * levels(plan).take_profit[s2.tp_done]:
            amount = max(1, math.floor(s2.entry_token_amount * Fraction(fraction)))
            if sum(f for _, f in plan.take_profit[:s2.tp_done + 1]) >= 1:  # the rung that completes a ladder of the
                amount = s2.token_amount_open  # whole entry sells what is open: no rounding dust left behind
            more, effects = _order(s2, f"take_profit_{s2.tp_done + 1}", amount, price, tp_level=s2.tp_done)
            events += more
    return _step(s, events, effects)


def on_leader_sold_live(s: PositionState, m: LeaderSold, ctx: Context) -> Step:
    if m.leader_holding_before:
        fraction, basis = min(Fraction(1), Fraction(m.token_amount, m.leader_holding_before)), "leader_holding"
    elif s.plan.mirror_unknown == "proportional" and s.leader_token_amount:
        left = s.leader_token_amount - s.leader_sold
        fraction, basis = (Fraction(1) if left <= m.token_amount else Fraction(m.token_amount, left)), "leader_buy"
    else:
        fraction, basis = Fraction(1), "full"
    amount = s.token_amount_open if fraction >= 1 else math.floor(s.token_amount_open * fraction)
    extra = {"signature": m.signature, "leader_sold": str(m.token_amount), "fraction": _frac(fraction), "basis": basis,
             "leader_holding_before": str(m.leader_holding_before) if m.leader_holding_before is not None else None}
    if amount <= 0:
        amount = 1  # the leader sold a sliver: sell the smallest unit rather than ignore it
    events, effects = _order(s, "mirror_sell", amount, extra)
    return _step(s, events, effects)


def on_close_live(s: PositionState, m: ClosePosition, ctx: Context) -> Step:
    events, effects = _order(s, "manual_close", s.token_amount_open)
    return _step(s, events, effects, CommandReply(s.id, True))


def on_close_partial_live(s: PositionState, m: ClosePartial, ctx: Context) -> Step:
    try:
        f = Fraction(m.fraction)
    except (TypeError, ValueError, ArithmeticError):
        return Step(reply=CommandReply(s.id, False, f"fraction must be a number in (0, 1], got {m.fraction!r}"))
    if not 0 < f <= 1:
        return Step(reply=CommandReply(s.id, False, f"fraction must be in (0, 1], got {m.fraction}"))
    amount = math.floor(s.token_amount_open * f)
    if amount <= 0:
        return Step(reply=CommandReply(s.id, False, f"fraction {m.fraction} of {s.token_amount_open} is nothing"))
    reason = "manual_close" if amount >= s.token_amount_open else "manual_partial"
    events, effects = _order(s, reason, amount, {"fraction": _frac(f)})
    return _step(s, events, effects, CommandReply(s.id, True))


def on_set_stop_live(s: PositionState, m: SetStop, ctx: Context) -> Step:
    try:
        whole = Decimal(m.stop_price)
        ok = whole.is_finite() and whole > 0
    except (TypeError, ValueError, ArithmeticError):
        ok = False
    if not ok:
        return Step(reply=CommandReply(s.id, False, f"stop_price must be a positive number, got {m.stop_price!r}"))
    stop = whole_to_raw(s, whole)
    mark = quote_price(s, ctx.mark)
    if mark is not None and stop >= mark:
        return Step(reply=CommandReply(s.id, False, "stop_price is at or above the current price: use close"))
    return _step(s, [("stop_moved", {"stop_price": _frac(stop), "reason": "manual_stop", "whole": str(whole)})], (),
                 CommandReply(s.id, True))


def on_filled_live(s: PositionState, m: Filled, ctx: Context) -> Step:
    f, o = m.fill, s.order
    if f.side != "sell" or o is None:
        raise LookupError(f"position {s.id}: a {f.side} fill without an exit order")
    data = {"reason": o.reason, "tp_level": o.tp_level, "fill": f.as_json()}
    if f.token_amount >= s.token_amount_open:
        return _step(s, [("exit_filled", data)])
    events: Events = [("partial_exit", data)]
    entry = s.entry_price
    if o.tp_level == 0 and s.plan.breakeven_after_first_tp and entry is not None and (s.stop is None or s.stop < entry):
        events.append(("stop_moved", {"stop_price": _frac(entry), "reason": "breakeven_stop"}))
    return _step(s, events)


def exit_failed_data(s: PositionState, ctx: Context, error: str) -> dict[str, Any]:
    """An exit order that could not fill: retried at `retry_at` (a tick after it), the delay doubling up to 20x."""
    o = s.order
    if o is None:
        raise LookupError(f"position {s.id}: a failed exit without an exit order")
    attempt = o.attempts + 1
    delay = min(s.plan.exit_retry_s * 2 ** (attempt - 1), s.plan.exit_retry_s * 20)
    return {"reason": o.reason, "error": error[:300], "attempt": attempt, "retry_at": ctx.now + delay}


def on_fill_failed_live(s: PositionState, m: FillFailed, ctx: Context) -> Step:
    return _step(s, [("exit_failed", exit_failed_data(s, ctx, m.error))])


def on_filled_pending(s: PositionState, m: Filled, ctx: Context) -> Step:
    f = m.fill
    if f.side != "buy":
        raise LookupError(f"position {s.id}: a {f.side} fill before the entry")
    if f.token_amount <= 0:
        return _step(s, [("entry_failed", {"reason": "entry_failed", "error": "the fill bought nothing"})])
    return _step(s, [("entry_filled", {"fill": f.as_json(), "plan": ctx.plan.as_json(), "at": ctx.now})])


def on_fill_failed_pending(s: PositionState, m: FillFailed, ctx: Context) -> Step:
    return _step(s, [("entry_failed", {"reason": "entry_failed", "error": m.error[:300]})])


def on_leader_sold_pending(s: PositionState, m: LeaderSold, ctx: Context) -> Step:
    return _step(s, [("entry_failed", {"reason": "leader_sold_before_entry", "signature": m.signature})])


def on_cancel_pending(s: PositionState, m: CancelEntry, ctx: Context) -> Step:
    return _step(s, [("entry_failed", {"reason": m.reason, "error": "no new entries: the trading mode is off"})])


def not_filled_yet(s: PositionState, m: Any, ctx: Context) -> Step:
    return Step(reply=CommandReply(s.id, False, "the entry is not filled yet"))


def already_closed(s: PositionState, m: Any, ctx: Context) -> Step:
    return Step(reply=CommandReply(s.id, False, f"position is {s.status}"))


def ignore(s: PositionState, m: Any, ctx: Context) -> Step:
    return Step()


def _step(s: PositionState, events: Events, effects: tuple[Buy | Sell, ...] = (), reply: CommandReply | None = None) -> Step:
    numbered = tuple(JournalEvent(s.seq + i + 1, kind, data) for i, (kind, data) in enumerate(events))
    return Step(numbered, effects, reply)


Handler = Callable[[PositionState, Any, Context], Step]
_PENDING: dict[type, Handler] = {
    PriceTick: ignore, LeaderSold: on_leader_sold_pending, ClosePosition: not_filled_yet, ClosePartial: not_filled_yet,
    SetStop: not_filled_yet, Filled: on_filled_pending, FillFailed: on_fill_failed_pending,
    Signed: ignore, SwapFailed: ignore, Resume: on_resume_pending, Retry: ignore, CancelEntry: on_cancel_pending,
}
_BUYING: dict[type, Handler] = {
    PriceTick: ignore, LeaderSold: on_leader_sold_buying, ClosePosition: not_filled_yet, ClosePartial: not_filled_yet,
    SetStop: not_filled_yet, Filled: on_filled_buying, FillFailed: ignore,
    Signed: on_signed, SwapFailed: on_swap_failed, Resume: on_resume_swapping, Retry: on_retry, CancelEntry: ignore,
}
_LIVE: dict[type, Handler] = {
    PriceTick: as_live(on_tick_live), LeaderSold: as_live(on_leader_sold_live), ClosePosition: as_live(on_close_live),
    ClosePartial: as_live(on_close_partial_live), SetStop: on_set_stop_live, Filled: on_filled_live,
    FillFailed: on_fill_failed_live, Signed: ignore, SwapFailed: ignore, Resume: ignore, Retry: ignore,
    CancelEntry: ignore,
}
_SELLING: dict[type, Handler] = {
    PriceTick: on_tick_selling, LeaderSold: defer, ClosePosition: defer_command, ClosePartial: defer_command,
    SetStop: on_set_stop_live, Filled: on_filled_live, FillFailed: ignore,
    Signed: on_signed, SwapFailed: on_swap_failed, Resume: on_resume_swapping, Retry: on_retry, CancelEntry: ignore,
}
_DONE: dict[type, Handler] = {
    PriceTick: ignore, LeaderSold: ignore, ClosePosition: already_closed, ClosePartial: already_closed,
    SetStop: already_closed, Filled: ignore, FillFailed: ignore, Signed: ignore, SwapFailed: ignore, Resume: ignore,
    Retry: ignore, CancelEntry: ignore,
}
TABLE: dict[tuple[str, type], Handler] = {
    **{("pending_entry", c): h for c, h in _PENDING.items()},
    **{("buying", c): h for c, h in _BUYING.items()},
    **{(st, c): h for st in LIVE for c, h in _LIVE.items()},
    **{("selling", c): h for c, h in _SELLING.items()},
    **{(st, c): h for st in TERMINAL for c, h in _DONE.items()},
}
COMMANDS = tuple(_LIVE)


def decide(state: PositionState, command: Any, ctx: Context) -> Step:
    handler = TABLE.get((state.status, type(command)))
    if handler is None:
        raise LookupError(f"position {state.id}: no transition for {type(command).__name__} in {state.status}")
    return handler(state, command, ctx)


# -- the actor ------------------------------------------------------------------------------------------
def closed_notice(s: PositionState) -> PositionClosed:
    """What the root, the wallet and the risk actor are told when a position ends (closed or entry failed)."""
    return PositionClosed(s.id, s.wallet, s.token_mint, mode=s.mode, quote_mint=s.quote_mint,
                          realized_pnl_quote=s.realized_pnl_quote, exit_reason=s.exit_reason)


def _failed(exc: Exception) -> Future:
    f: Future = Future()
    f.set_exception(exc)
    return f


class PositionActor(Shell):
    """Runs the table: stores each step's events, then performs its effect (one fill or swap step at a time).

    Price ticks are never stashed behind a fill: while one is under way only the newest tick is kept and
    decided once the fill is journaled. Operator commands are validated at once (the reply), then queued.
    Commands the table defers (the leader's sale or a close while a live swap is in flight) are told again, in
    order, once the position leaves buying/selling.
    """

    def __init__(self, position_id: int, journal: tuple[JournalEvent, ...], ports: Ports, root: pykka.ActorRef,
                 trading_mode: str | None = None) -> None:
        super().__init__(ports.scheduler, root)
        self._entries_off = trading_mode == "off"  # the global kill switch when the root started it
        self.child_id = ("position", str(position_id))
        self.state = fold(position_id, journal)
        self.mark: PriceTick | None = None  # the last fresh price (not journaled: a tick is not a decision)
        self._waiting: PriceTick | None = None
        self._deferred: list[Any] = []
        self._ports = ports
        self._root = root

    def on_start(self) -> None:
        if self.state.status in TERMINAL:  # a restart after the last event was stored but before the notice
            self._root.tell(closed_notice(self.state))
        elif self.state.status == "pending_entry" and self._entries_off and self.state.mode != "shadow":
            self._run(decide(self.state, CancelEntry("mode:off"), self._ctx()))  # granted, but not bought: never
        else:  # paper: ask for the entry again (safe); live: rebuild an unsigned intent, reconcile a signed one
            self._run(decide(self.state, Resume(), self._ctx()))

    def _ctx(self) -> Context:
        return Context(now=self._ports.clock(), plan=self._ports.exit_plan, mark=self.mark, live=self._ports.live_policy)

    def handle(self, message: Any) -> Any:
        if message == "idle":  # no fill or write under way, nothing queued (for tests and the panel)
            return self._inflight is None and self._waiting is None and not self._stash
        if isinstance(message, PriceTick):
            if quote_price(self.state, message) is not None:
                self.mark = message
            if self._inflight is not None:
                self._waiting = message
                return None
        elif isinstance(message, MANUAL) and self._inflight is not None:
            reply = decide(self.state, message, self._ctx()).reply  # validate now, act in turn
            if reply is not None and reply.ok:
                self._stash.append(message)
            return reply
        step = decide(self.state, message, self._ctx())
        if step.defer:
            self._deferred.append(message)
            return step.reply
        self._run(step)
        return step.reply

    def bypass_stash(self, message: Any) -> bool:
        return message == "idle" or isinstance(message, (PriceTick, *MANUAL))

    def _run(self, step: Step) -> None:
        if not step.events:
            self._perform(step.effects)
            return
        after = self.state
        for ev in step.events:
            after = apply(after, ev, self.state.id)
        events = step.events
        self.persist(
            lambda: self._ports.store.append_position_events(self.state.id, events, after.projection()),
            lambda _: self._applied(events, after, step.effects),
        )

    def _perform(self, effects: tuple[Any, ...]) -> None:
        for eff in effects[:1]:
            if isinstance(eff, (Prepare, Land)):
                self._swap_step(eff)
            elif isinstance(eff, Later):
                ref, message = self.actor_ref, eff.message
                self._scheduler.call_later(eff.delay_s, lambda: _tell(ref, message))
            else:
                self._paper(eff)
        self._flush_tick()

    def _paper(self, eff: Buy | Sell) -> None:
        s, ex = self.state, self._ports.executor
        if isinstance(eff, Buy):
            op = (lambda: ex.buy(s.id, s.token_mint, eff.quote_amount, s.quote_mint, slippage_bps=s.slippage_bps,
                                 max_price_impact_pct=s.max_price_impact_pct)) if ex else None
            side = "buy"
        else:
            op = (lambda: ex.sell(s.id, s.token_mint, eff.token_amount, s.quote_mint,
                                  slippage_bps=s.slippage_bps)) if ex else None
            side = "sell"
        self.request(op or (lambda: _failed(RuntimeError("no executor configured"))),
                     lambda r, side=side: self._filled(side, r))

    def _swap_step(self, eff: Prepare | Land) -> None:
        """Ask the live executor to prepare (quote, build, verify, sign) or to land (send, confirm) a swap."""
        s, live = self.state, self._ports.live
        if isinstance(eff, Prepare):
            side = eff.side
            op = (lambda: live.prepare(s.id, side, s.token_mint, eff.amount, slippage_bps=eff.slippage_bps,
                                       max_price_impact_pct=s.max_price_impact_pct if side == "buy" else None)) if live else None
        else:
            side = "buy" if s.status == "buying" else "sell"
            op = (lambda: live.land(s.id, side, s.token_mint, eff.swap, fresh=eff.fresh)) if live else None
        # without a live executor (the key was removed): nothing is built; a signed swap's outcome stays unknown —
        # watched again later, never concluded, since it may have landed
        missing = SwapError("live_not_available", unknown=isinstance(eff, Land), detail="no live executor configured")
        self.request(op or (lambda: _failed(missing)),
                     lambda r, side=side, landing=isinstance(eff, Land): self._swapped(side, r, landing))

    def _swapped(self, side: str, result: Any, landing: bool) -> None:
        if isinstance(result, SignedSwap):
            msg: Any = Signed(side, result)
        elif isinstance(result, Fill):
            msg = Filled(result)
        elif isinstance(result, SwapError):
            msg = SwapFailed(side, result.reason, result.retryable, result.unknown, result.cost, result.detail)
        else:  # an error the executor did not name: preparing may be tried again; a landing's outcome is unknown
            detail = f"{type(result).__name__}: {result}"
            msg = SwapFailed(side, "land_error" if landing else "prepare_error", retryable=not landing, unknown=landing,
                             detail=detail)
        if isinstance(msg, SwapFailed):
            log.warning("swap_failed", position_id=self.state.id, side=side, reason=msg.reason, unknown=msg.unknown,
                        retryable=msg.retryable, error=msg.detail[:300],
                        signature=self.state.swap.signed.signature if self.state.swap and self.state.swap.signed else None)
        self._run(decide(self.state, msg, self._ctx()))
        self._flush_tick()

    def _filled(self, side: str, result: Any) -> None:
        msg = Filled(result) if isinstance(result, Fill) else FillFailed(side, f"{type(result).__name__}: {result}")
        if isinstance(msg, FillFailed):
            log.warning("fill_failed", position_id=self.state.id, side=side, error=msg.error)
        self._run(decide(self.state, msg, self._ctx()))
        self._flush_tick()

    def _flush_tick(self) -> None:
        if self._inflight is None and self._waiting is not None:
            tick, self._waiting = self._waiting, None
            self.actor_ref.tell(tick)

    def _applied(self, events: tuple[JournalEvent, ...], after: PositionState, effects: tuple[Any, ...]) -> None:
        before, self.state = self.state, after
        for ev in events:
            log.info("position_event", position_id=after.id, wallet=after.wallet, token_mint=after.token_mint, mode=after.mode,
                     journal_event=ev.kind, seq=ev.seq,
                     **{k: v for k, v in ev.data.items() if k in ("reason", "signature", "token_amount", "error", "attempt")})
        if before.status in SWAPPING and after.status not in SWAPPING and self._deferred:
            deferred, self._deferred = self._deferred, []
            for message in deferred:  # decided now, in order, after what this step performs
                self.actor_ref.tell(message)
        if before.status not in TERMINAL and after.status in TERMINAL:
            log.info("position_closed", position_id=after.id, wallet=after.wallet, reason=after.exit_reason, mode=after.mode,
                     realized_pnl_quote=after.realized_pnl_quote, quote_mint=after.quote_mint)
            self._root.tell(closed_notice(after))
            self._waiting = None  # nothing left to decide on a price
            return
        self._perform(effects)


def _tell(ref: pykka.ActorRef, message: Any) -> None:
    try:
        ref.tell(message)
    except pykka.ActorDeadError:
        pass
