"""A position's transition table: (state, command) -> handler, each pure, returning a `Step` (actors/position.py
documents the rows). The holding states run the exit rules (actors/position_exits.py); the live rows are
actors/position_live.py; the entry's and the terminal states' own handlers are here.
"""

from __future__ import annotations

from typing import Any, Callable

from actors.messages import ClosePartial, ClosePosition, CommandReply, LeaderSold, PriceTick, SetStop
from actors.position_exits import (
    _step,
    on_close_live,
    on_close_partial_live,
    on_fill_failed_live,
    on_filled_live,
    on_leader_sold_live,
    on_set_stop_live,
    on_tick_live,
)
from actors.position_live import (
    Resume,
    Retry,
    Signed,
    SwapFailed,
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
from actors.position_state import LIVE, TERMINAL, CancelEntry, Context, Filled, FillFailed, PositionState, Step

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
