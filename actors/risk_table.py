"""The risk actor's transition table, pure: (state, event) -> (state', effects) (actors/risk.py documents the rows),
and `rebuild`, the state after a (re)start from what the database holds.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable, Mapping

from actors.messages import (
    BreakerReset,
    EntryDecision,
    PositionClosed,
    ReservationBound,
    ReservationReleased,
    ReserveEntry,
    SolPrice,
    TripBreaker,
)
from actors.risk_limits import (
    Breaker,
    DAY,
    Exposure,
    NOT_A_TRADE,
    RiskConfig,
    RiskState,
    _reset_event,
    apply_close,
    check_entry,
    clear_counter,
    roll,
    to_lamports,
    trip_event,
)

# -- effects and internal events --------------------------------------------------------------------------
@dataclass(frozen=True)
class Reply:
    """Tell `decision` to the asker (`ReserveEntry.reply_to`, an actor ref)."""

    reply_to: Any
    decision: EntryDecision


@dataclass(frozen=True)
class Record:
    """Breaker trips and resets to store (one write per step)."""

    events: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class FetchOutcome:
    closed: PositionClosed


@dataclass(frozen=True)
class Outcome:
    """A closed position's outcome, read from the store because the close did not carry it."""

    closed: PositionClosed


@dataclass(frozen=True)
class Tick:
    pass


Effect = Any


# -- the table ----------------------------------------------------------------------------------------------
def on_reserve(state: RiskState, m: ReserveEntry, cfg: RiskConfig, now: float) -> tuple[RiskState, list[Effect]]:
    if m.reservation_id in state.reserved:  # asked again (a retried observation): the same answer
        return state, [Reply(m.reply_to, EntryDecision(m.reservation_id, True))]
    refusal = check_entry(state, cfg, m)
    if refusal is not None:
        return state, [Reply(m.reply_to, EntryDecision(m.reservation_id, False, refusal))]
    live = m.mode == "live"
    exposure = Exposure(m.wallet, m.token_mint, to_lamports(m.quote_mint, m.quote_amount, state.sol_usd, cfg), live)
    state = replace(state, reserved={**state.reserved, m.reservation_id: (exposure, now + cfg.reservation_ttl_s)},
                    trades_today=state.trades_today + 1,
                    live_today=state.live_today + (exposure.lamports if live else 0))
    return state, [Reply(m.reply_to, EntryDecision(m.reservation_id, True))]


def on_bound(state: RiskState, m: ReservationBound, cfg: RiskConfig, now: float) -> tuple[RiskState, list[Effect]]:
    if m.position_id in state.open or m.position_id in state.closed:  # bound before: a second decision's room
        return on_released(state, ReservationReleased(m.reservation_id), cfg, now)
    reserved = dict(state.reserved)
    held = reserved.pop(m.reservation_id, None)
    exposure = held[0] if held is not None else Exposure(
        m.wallet, m.token_mint, to_lamports(m.quote_mint, m.quote_amount, state.sol_usd, cfg), m.mode == "live")
    return replace(state, reserved=reserved, open={**state.open, m.position_id: exposure}), []


def on_released(state: RiskState, m: ReservationReleased, cfg: RiskConfig, now: float) -> tuple[RiskState, list[Effect]]:
    if m.reservation_id not in state.reserved:
        return state, []
    exposure = state.reserved[m.reservation_id][0]
    reserved = {k: v for k, v in state.reserved.items() if k != m.reservation_id}
    return replace(state, reserved=reserved, trades_today=max(0, state.trades_today - 1),
                   live_today=max(0, state.live_today - exposure.lamports) if exposure.live else state.live_today), []


def on_closed(state: RiskState, m: PositionClosed, cfg: RiskConfig, now: float) -> tuple[RiskState, list[Effect]]:
    if m.mode == "shadow" or m.position_id not in state.open:
        return state, []  # a shadow, or a position this actor never counted
    state = replace(state, open={k: v for k, v in state.open.items() if k != m.position_id},
                    closed=state.closed | {m.position_id})
    if m.realized_pnl_quote is None:
        return state, [FetchOutcome(m)]
    return _closed_with_pnl(state, m, cfg, now)


def on_outcome(state: RiskState, m: Outcome, cfg: RiskConfig, now: float) -> tuple[RiskState, list[Effect]]:
    if m.closed.realized_pnl_quote is None or m.closed.mode == "shadow":
        return state, []
    return _closed_with_pnl(state, m.closed, cfg, now)


def _closed_with_pnl(state: RiskState, m: PositionClosed, cfg: RiskConfig, now: float) -> tuple[RiskState, list[Effect]]:
    assert m.realized_pnl_quote is not None
    if m.exit_reason in NOT_A_TRADE:
        return state, []  # nothing was bought: neither a win nor a loss
    pnl = to_lamports(m.quote_mint, m.realized_pnl_quote, state.sol_usd, cfg)
    state, trips = apply_close(state, cfg, now, m.wallet, m.token_mint, pnl, m.exit_reason)
    events = []
    for b in trips:
        events.append(trip_event(b.name, b.reason, b.tripped_at, b.until)[1])
    return state, [Record(tuple(events))] if events else []


def on_reset(state: RiskState, m: BreakerReset, cfg: RiskConfig, now: float) -> tuple[RiskState, list[Effect]]:
    b = state.breakers.get(m.name)
    if b is None:
        return state, []
    state = replace(state, breakers={k: v for k, v in state.breakers.items() if k != m.name})
    return clear_counter(state, m.name, cfg), [Record((_reset_event(b, now, m.by),))]


def on_trip(state: RiskState, m: TripBreaker, cfg: RiskConfig, now: float) -> tuple[RiskState, list[Effect]]:
    if m.name in state.breakers:
        return state, []  # already stopped: the first reason stands until a reset
    b, event = trip_event(m.name, m.reason, now, None, m.by)
    return replace(state, breakers={**state.breakers, b.name: b}), [Record((event,))]


def on_tick(state: RiskState, m: Tick, cfg: RiskConfig, now: float) -> tuple[RiskState, list[Effect]]:
    return state, []


def on_sol_price(state: RiskState, m: SolPrice, cfg: RiskConfig, now: float) -> tuple[RiskState, list[Effect]]:
    return replace(state, sol_usd=m.usd), []


TABLE: dict[type, Callable[[RiskState, Any, RiskConfig, float], tuple[RiskState, list[Effect]]]] = {
    ReserveEntry: on_reserve,
    ReservationBound: on_bound,
    ReservationReleased: on_released,
    PositionClosed: on_closed,
    Outcome: on_outcome,
    BreakerReset: on_reset,
    TripBreaker: on_trip,
    Tick: on_tick,
    SolPrice: on_sol_price,
}


def transition(state: RiskState, event: Any, cfg: RiskConfig, now: float) -> tuple[RiskState, list[Effect]]:
    handler = TABLE.get(type(event))
    if handler is None:
        raise LookupError(f"risk: no transition for {type(event).__name__}")
    state, resets = roll(state, cfg, now)
    state, effects = handler(state, event, cfg, now)
    if resets:
        effects = [Record(tuple(resets)), *effects]
    return state, effects


# -- rebuilding from the database ---------------------------------------------------------------------------
def rebuild(cfg: RiskConfig, now: float, snapshot: Mapping[str, Any]) -> RiskState:
    """The state after a (re)start: open exposure, today's entries, counters since each breaker's last trip
    or reset, and the breakers still tripped (those past their time reset at the first event).

    snapshot: {"open": [(position_id, wallet, mint, quote_mint, entry_quote_amount)], "opened": [epoch],
               "live": [position ids of open live positions], "live_opened": [(epoch, lamports)] of live entries,
               "closes": [(epoch, wallet, mint, quote_mint, pnl_quote, exit_reason)] oldest first,
               "breakers": [{"name", "state", "reason", "tripped_at", "until", "reset_at"}]}
    """
    state = RiskState(day=int(now // DAY))
    live = set(snapshot.get("live", ()))
    state = replace(
        state,
        open={pid: Exposure(w, mint, to_lamports(q, int(amount), None, cfg), pid in live)
              for pid, w, mint, q, amount in snapshot["open"]},
        trades_today=sum(1 for at in snapshot["opened"] if int(at // DAY) == state.day),
        live_today=sum(int(lam) for at, lam in snapshot.get("live_opened", ()) if int(at // DAY) == state.day),
    )
    since: dict[str, float] = {}
    breakers: dict[str, Breaker] = {}
    for row in snapshot["breakers"]:
        since[row["name"]] = max(row["tripped_at"], row["reset_at"] or 0.0)
        if row["state"] == "tripped":
            breakers[row["name"]] = Breaker(row["name"], row["reason"], row["tripped_at"], row["until"])
    # Replay every close once for the all-time numbers, then per breaker only those after its `since`.
    for at, wallet, mint, q, pnl, reason in snapshot["closes"]:
        if reason in NOT_A_TRADE:
            continue
        lam = to_lamports(q, int(pnl), None, cfg)
        counted, _ = apply_close(state, cfg, at, wallet, mint, lam, reason, trip=False)
        state = replace(state, realized=counted.realized)
        if at > since.get("max_drawdown", -1.0):
            state = replace(state, peak=counted.peak)
        if at > since.get("daily_loss", -1.0) and int(at // DAY) == state.day:
            state = replace(state, day_pnl=counted.day_pnl)
        if at > since.get("loss_streak", -1.0):
            state = replace(state, streak=counted.streak)
        if at > since.get(f"wallet_pause:{wallet}", -1.0):
            state = replace(state, wallet_streak=counted.wallet_streak)
    return replace(state, breakers=breakers)


