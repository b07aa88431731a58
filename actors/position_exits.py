"""A holding position's exit rules: what a price tick, the leader's sale or an operator's command decides.

Rules on a tick, in order: emergency_liquidity, the stop (stop_loss, breakeven_stop, manual_stop), trailing_stop,
time_stop, then the take-profit ladder; an unknown or stale price fires no price rule. An exit is an order
(`exit_ordered` + `Sell`), merged with one still unfilled; a failed one is retried with a doubling delay.
Each handler is pure: (state, command, context) -> `Step` (journal events, effects, a reply).
"""

from __future__ import annotations

import math
from dataclasses import replace
from decimal import Decimal
from fractions import Fraction
from typing import Any

from actors.messages import ClosePartial, ClosePosition, CommandReply, JournalEvent, LeaderSold, PriceTick, SetStop
from actors.position_state import (
    Buy,
    Context,
    Filled,
    FillFailed,
    PositionState,
    Sell,
    Step,
    _frac,
    apply,
    levels,
    quote_price,
    whole_to_raw,
)

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


def _step(s: PositionState, events: Events, effects: tuple[Buy | Sell, ...] = (), reply: CommandReply | None = None) -> Step:
    numbered = tuple(JournalEvent(s.seq + i + 1, kind, data) for i, (kind, data) in enumerate(events))
    return Step(numbered, effects, reply)
