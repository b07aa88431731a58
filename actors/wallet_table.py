"""A wallet actor's transition table: (state, event) -> (state', effects), pure (see actors/wallet.py).

It logs nothing and performs nothing: the shell (`WalletActor`) stores, asks and tells what the effects say,
and turns each outcome into the next event.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any, Callable

from actors.messages import (
    EntryDecision,
    LeaderSold,
    Observation,
    PositionClosed,
    RecordResult,
    ReservationBound,
    ReservationReleased,
    StartPosition,
    SwapObserved,
    ToPosition,
    TradingModeChanged,
    WalletSettingsChanged,
)
from actors.ports import CopyRules
from actors.rules import GLOBAL_OFF, RulesError, effective
from actors.trades import NotATrade, Trade, read_trade
from actors.wallet_decide import AWAITING_RESERVATION, WATCHING, Context, WalletState, decide, skipped

# -- internal events and effects ----------------------------------------------------------------------------
@dataclass(frozen=True)
class AssessSafety:
    signature: str
    trade: Trade


@dataclass(frozen=True)
class SafetyAssessed:
    signature: str
    trade: Trade
    report: Any  # a SafetyReport (`.passed`, `.reason`, `.facts`, `.as_json()`), or the exception that prevented one


@dataclass(frozen=True)
class Reserve:
    """Ask the RiskActor for room for this (taken) observation's entry."""

    observation: Observation

    @property
    def reservation_id(self) -> str:
        return f"{self.observation.signature}:{self.observation.wallet}"


@dataclass(frozen=True)
class ReservationTimedOut:
    """The wallet's own timer (scheduled with the `Reserve`): the risk actor did not answer in time."""

    reservation_id: str


@dataclass(frozen=True)
class Record:
    observation: Observation
    reservation_id: str | None = None


@dataclass(frozen=True)
class Recorded:
    observation: Observation
    result: RecordResult
    reservation_id: str | None = None


Effect = Any




def _entry_or_record(obs: Observation, ctx: Context) -> Effect:
    if ctx.risk and obs.decision == "taken" and obs.entry is not None and obs.entry.mode != "shadow":
        return Reserve(obs)
    return Record(obs)


def _ask_or_record(state: WalletState, obs: Observation, ctx: Context) -> tuple[WalletState, list[Effect]]:
    """A taken entry waits for the risk actor's answer (awaiting_reservation); anything else is recorded now."""
    effect = _entry_or_record(obs, ctx)
    if isinstance(effect, Reserve):
        return replace(state, status=AWAITING_RESERVATION, awaiting=obs), [effect]
    return state, [effect]


def on_swap_observed(state: WalletState, ev: SwapObserved, rules: CopyRules, ctx: Context) -> tuple[WalletState, list[Effect]]:
    received = ev.received_at if ev.received_at is not None else ctx.now
    trade = ev.trade if ev.classified else read_trade(json.loads(ev.payload), state.wallet, received, ctx.max_skew_s)
    if isinstance(trade, NotATrade):  # stored with its reason: no delivery vanishes
        return state, [Record(Observation(ev.signature, state.wallet, trade.outcome, reason=trade.reason))]
    obs = decide(state, ev.signature, trade, rules, ctx=ctx)
    if trade is not None and trade.side == "buy" and state.screen and obs.reason in ("copy_buy", "safety:unavailable"):
        return state, [AssessSafety(ev.signature, trade)]  # the rules let it through: ask for the verdict
    return _ask_or_record(state, obs, ctx)


def on_safety_assessed(state: WalletState, ev: SafetyAssessed, rules: CopyRules, ctx: Context) -> tuple[WalletState, list[Effect]]:
    return _ask_or_record(state, decide(state, ev.signature, ev.trade, rules, ev.report, ctx), ctx)


def on_decision(state: WalletState, ev: EntryDecision | ReservationTimedOut, rules: CopyRules,
                ctx: Context) -> tuple[WalletState, list[Effect]]:
    """The risk actor answered (or did not, in time): back to watching. An answer to an earlier request, or a
    timer of one answered already, changes nothing (the wallet released that reservation when it gave up)."""
    obs = state.awaiting
    if obs is None or ev.reservation_id != Reserve(obs).reservation_id:
        return state, []
    state = replace(state, status=WATCHING, awaiting=None)
    return on_reserved(state, obs, ev if isinstance(ev, EntryDecision) else TimeoutError("no answer from the risk actor"))


def on_reserved(state: WalletState, obs: Observation, d: Any) -> tuple[WalletState, list[Effect]]:
    rid = Reserve(obs).reservation_id
    if isinstance(d, EntryDecision) and d.granted and state.trading_mode == "off":
        return state, [ReservationReleased(rid), Record(skipped(obs, GLOBAL_OFF))]  # the kill switch went on meanwhile
    if isinstance(d, EntryDecision) and d.granted:
        return state, [Record(obs, rid)]
    if isinstance(d, EntryDecision):
        return state, [Record(skipped(obs, d.reason or "risk:refused"))]
    return state, [ReservationReleased(rid), Record(skipped(obs, "risk:unavailable"))]  # fail closed


def on_duplicate(state: WalletState, ev: Recorded, ctx: Context) -> list[Effect]:
    """Another decision on this transaction was stored first (a replay, a re-delivery, a restart in between): the
    books hold it already, or are rebuilt from it. What it may not have done is bind its reservation and start its
    position (its actor died between the commit and those): both are idempotent, so do them again."""
    res, obs = ev.result, ev.observation
    if res.position_id is None or not res.journal:
        return [ReservationReleased(ev.reservation_id)] if ev.reservation_id else []
    opened = res.journal[0].data
    effects: list[Effect] = []
    if ctx.risk and opened["mode"] != "shadow":  # its exposure, under the reservation id every decision on it shares
        effects.append(ReservationBound(Reserve(obs).reservation_id, res.position_id, state.wallet, opened["token_mint"],
                                        opened["quote_mint"], int(opened["entry_quote_amount"])))
    elif ev.reservation_id:
        effects.append(ReservationReleased(ev.reservation_id))
    return [*effects, StartPosition(res.position_id, state.wallet, res.journal)]


def on_recorded(state: WalletState, ev: Recorded, rules: CopyRules, ctx: Context) -> tuple[WalletState, list[Effect]]:
    obs, res = ev.observation, ev.result
    if res.duplicate:
        return state, on_duplicate(state, ev, ctx)
    if obs.trade is None:
        return state, [ReservationReleased(ev.reservation_id)] if ev.reservation_id else []
    effects: list[Effect] = []
    t = obs.trade
    if res.position_id is not None and obs.entry is not None:
        mint, key = t.token_mint, ("shadow_by_token" if obs.entry.mode == "shadow" else "open_by_token")
        book = dict(getattr(state, key))
        book[mint] = book.get(mint, frozenset()) | {res.position_id}
        state = replace(state, **{key: book})
        if ev.reservation_id is not None:  # before the position starts: its close must find it bound
            effects.append(ReservationBound(ev.reservation_id, res.position_id, state.wallet, mint,
                                            obs.entry.quote_mint or t.quote_mint, obs.entry.quote_amount,
                                            mode=obs.entry.mode))
        effects.append(StartPosition(res.position_id, state.wallet, res.journal))
        if obs.entry.mode != "shadow":
            count, spent = state.buys.get(mint, (0, 0))
            state = replace(state, buys={**state.buys, mint: (count + 1, spent + obs.entry.quote_amount)})
    elif ev.reservation_id is not None:
        effects.append(ReservationReleased(ev.reservation_id))
    # The leader's net flow per token since watching began. Deliveries can arrive out of order (a sell before
    # its buy), so it may go below zero and net out later; zero is forgotten.
    held = state.leader_holdings.get(t.token_mint, 0)
    after = held + t.token_amount if t.side == "buy" else held - t.token_amount
    holdings = {k: v for k, v in state.leader_holdings.items() if k != t.token_mint}
    if after:
        holdings[t.token_mint] = after
    state = replace(state, leader_holdings=holdings)
    if t.side == "sell":
        before = held if held >= t.token_amount > 0 else None  # the holding before the sale; unknown when it sold more
        for pid in obs.mirror_to:
            effects.append(ToPosition(pid, LeaderSold(pid, obs.signature, state.wallet, t.token_amount, t.quote_mint,
                                                      t.quote_amount, leader_holding_before=before)))
    return state, effects


def _without(book: dict[str, frozenset[int]], mint: str, position_id: int) -> dict[str, frozenset[int]]:
    ids = book.get(mint, frozenset()) - {position_id}
    out = {k: v for k, v in book.items() if k != mint}
    if ids:
        out[mint] = ids
    return out


def on_position_closed(state: WalletState, ev: PositionClosed, rules: CopyRules, ctx: Context) -> tuple[WalletState, list[Effect]]:
    open_by_token = _without(state.open_by_token, ev.token_mint, ev.position_id)
    # The per-token limits count the entries of the current holding: once it is all closed, a new one may start.
    buys = state.buys if ev.token_mint in open_by_token else {k: v for k, v in state.buys.items() if k != ev.token_mint}
    return replace(state, open_by_token=open_by_token, buys=buys,
                   shadow_by_token=_without(state.shadow_by_token, ev.token_mint, ev.position_id)), []


def on_settings_changed(state: WalletState, ev: WalletSettingsChanged, rules: CopyRules, ctx: Context) -> tuple[WalletState, list[Effect]]:
    return replace(state, overrides=dict(ev.overrides or {})), []


def on_mode_changed(state: WalletState, ev: TradingModeChanged, rules: CopyRules, ctx: Context) -> tuple[WalletState, list[Effect]]:
    return replace(state, trading_mode=ev.mode), []


def on_queued(state: WalletState, ev: Any, rules: CopyRules, ctx: Context) -> tuple[WalletState, list[Effect]]:
    """Awaiting a reservation: the event waits its turn in the wallet's own state (decided in order, never lost)."""
    return replace(state, queued=(*state.queued, ev)), []


def on_late(state: WalletState, ev: Any, rules: CopyRules, ctx: Context) -> tuple[WalletState, list[Effect]]:
    """An answer, or a timer, for a reservation given up on or answered already: nothing to do."""
    return state, []


Handler = Callable[[WalletState, Any, CopyRules, Context], tuple[WalletState, list[Effect]]]

TABLE: dict[tuple[str, type], Handler] = {
    (WATCHING, SwapObserved): on_swap_observed,
    (WATCHING, SafetyAssessed): on_safety_assessed,
    (WATCHING, Recorded): on_recorded,
    (WATCHING, PositionClosed): on_position_closed,
    (WATCHING, WalletSettingsChanged): on_settings_changed,
    (WATCHING, TradingModeChanged): on_mode_changed,
    (WATCHING, EntryDecision): on_late,
    (WATCHING, ReservationTimedOut): on_late,
    (AWAITING_RESERVATION, EntryDecision): on_decision,
    (AWAITING_RESERVATION, ReservationTimedOut): on_decision,
    (AWAITING_RESERVATION, TradingModeChanged): on_mode_changed,  # the kill switch is known at once
    (AWAITING_RESERVATION, SwapObserved): on_queued,
    (AWAITING_RESERVATION, WalletSettingsChanged): on_queued,
    (AWAITING_RESERVATION, PositionClosed): on_queued,  # it changes the per-token counts: after the entry, in order
}


def next_queued(state: WalletState) -> tuple[WalletState, Any]:
    """Watching again with events queued meanwhile: the oldest, to decide now (None: nothing waits)."""
    if state.status != WATCHING or not state.queued:
        return state, None
    return replace(state, queued=state.queued[1:]), state.queued[0]


def effective_rules(state: WalletState, defaults: CopyRules, follow_mode: bool = False) -> tuple[CopyRules, str | None]:
    """The defaults with this wallet's overrides, and why they do not validate (then: mode off, it copies nothing).
    With `follow_mode`, the defaults' mode is the global trading mode (paper or live; off is a gate of its own)."""
    if follow_mode and state.trading_mode in ("paper", "live") and defaults.mode != state.trading_mode:
        defaults = defaults.model_copy(update={"mode": state.trading_mode})
    try:
        return effective(defaults, state.overrides), None
    except RulesError as exc:
        return defaults.model_copy(update={"mode": "off"}), str(exc)


def rules_for(state: WalletState, defaults: CopyRules, follow_mode: bool = False) -> CopyRules:
    return effective_rules(state, defaults, follow_mode)[0]


def transition(state: WalletState, event: Any, rules: CopyRules, ctx: Context = Context()) -> tuple[WalletState, list[Effect]]:
    handler = TABLE.get((state.status, type(event)))
    if handler is None:
        raise LookupError(f"wallet {state.wallet}: no transition for {type(event).__name__} in {state.status}")
    return handler(state, event, rules_for(state, rules, ctx.rules_follow_mode), ctx)
