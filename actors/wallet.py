"""WalletActor: one per watched wallet. Classifies the wallet's transactions and decides what to copy.

Transition table (state, event) -> handler; the handlers are pure and return (state', effects):

| state    | event            | next     | effects                                               |
|----------|------------------|----------|-------------------------------------------------------|
| watching | swap_observed    | watching | a buy: AssessSafety(mint); else Record(observation)   |
| watching | safety_assessed  | watching | Record(observation: taken, or skipped with the reason) |
| watching | recorded         | watching | StartPosition for an entry; LeaderSold routes          |
| watching | position_closed  | watching | —                                                     |
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any, Callable

import pykka
import structlog

from actors.messages import (
    LeaderSold,
    Observation,
    PaperEntry,
    PositionClosed,
    RecordResult,
    StartPosition,
    SwapObserved,
    ToPosition,
)
from actors.ports import CopyRules, Ports
from actors.shell import Shell
from actors.trades import STABLE_MINTS, WSOL_MINT, Trade, classify

log = structlog.get_logger("wallet")

LAMPORTS_PER_SOL = 10**9
STABLE_UNITS = 10**6  # USDC and USDT have 6 decimals


@dataclass(frozen=True)
class WalletState:
    wallet: str
    status: str = "watching"
    open_by_token: dict[str, frozenset[int]] = field(default_factory=dict)  # paper/live positions
    shadow_by_token: dict[str, frozenset[int]] = field(default_factory=dict)  # skipped signals followed on paper
    screen: bool = False  # ask for a token safety verdict before every buy


@dataclass(frozen=True)
class AssessSafety:
    signature: str
    trade: Trade


@dataclass(frozen=True)
class SafetyAssessed:
    signature: str
    trade: Trade
    report: Any  # a SafetyReport (`.passed`, `.reason`, `.as_json()`), or the exception that prevented one


@dataclass(frozen=True)
class Record:
    observation: Observation


@dataclass(frozen=True)
class Recorded:
    observation: Observation
    result: RecordResult


Effect = Any


def paper_entry(trade: Trade, rules: CopyRules) -> PaperEntry | None:
    """Paper fill at the leader's own effective price (quote spent / tokens received)."""
    if trade.quote_mint == WSOL_MINT:
        size = int(rules.fixed_sol * LAMPORTS_PER_SOL)
    elif trade.quote_mint in STABLE_MINTS:
        size = int(rules.fixed_usd * STABLE_UNITS)
    else:
        return None
    if trade.quote_amount <= 0 or size <= 0:
        return None
    tokens = size * trade.token_amount // trade.quote_amount
    return PaperEntry(quote_amount=size, token_amount=tokens) if tokens > 0 else None


def decide(state: WalletState, signature: str, trade: Trade | None, rules: CopyRules, report: Any = None) -> Observation:
    if trade is None:
        return Observation(signature, state.wallet, "no_trade")
    if trade.side == "buy":
        entry = paper_entry(trade, rules)
        if entry is None:
            return Observation(signature, state.wallet, "signal", trade, "skipped", "unpriceable_trade")

        def skip(reason: str, safety: dict[str, Any] | None = None) -> Observation:
            # A skipped buy is followed as a shadow position: what taking it would have made or lost.
            shadow = PaperEntry(entry.quote_amount, entry.token_amount, mode="shadow")
            return Observation(signature, state.wallet, "signal", trade, "skipped", reason, entry=shadow, safety=safety)

        if state.screen:
            if isinstance(report, BaseException) or report is None:
                return skip("safety:unavailable")  # fail closed: no verdict, no buy
            if not report.passed:
                return skip(report.reason, report.as_json())
        safety = report.as_json() if report is not None else None
        return Observation(signature, state.wallet, "signal", trade, "taken", "copy_buy", entry=entry, safety=safety)
    real = state.open_by_token.get(trade.token_mint, frozenset())
    everyone = tuple(sorted(real | state.shadow_by_token.get(trade.token_mint, frozenset())))  # shadows mirror too
    if not real:
        return Observation(signature, state.wallet, "signal", trade, "skipped", "no_open_position", mirror_to=everyone)
    return Observation(signature, state.wallet, "signal", trade, "taken", "mirror_sell", mirror_to=everyone)


def on_swap_observed(state: WalletState, ev: SwapObserved, rules: CopyRules) -> tuple[WalletState, list[Effect]]:
    trade = classify(json.loads(ev.payload), state.wallet)
    if trade is not None and trade.side == "buy" and state.screen:
        return state, [AssessSafety(ev.signature, trade)]
    return state, [Record(decide(state, ev.signature, trade, rules))]


def on_safety_assessed(state: WalletState, ev: SafetyAssessed, rules: CopyRules) -> tuple[WalletState, list[Effect]]:
    return state, [Record(decide(state, ev.signature, ev.trade, rules, ev.report))]


def on_recorded(state: WalletState, ev: Recorded, rules: CopyRules) -> tuple[WalletState, list[Effect]]:
    obs, res = ev.observation, ev.result
    if res.duplicate or obs.trade is None:
        return state, []
    effects: list[Effect] = []
    if res.position_id is not None and obs.entry is not None:
        mint, key = obs.trade.token_mint, ("shadow_by_token" if obs.entry.mode == "shadow" else "open_by_token")
        book = dict(getattr(state, key))
        book[mint] = book.get(mint, frozenset()) | {res.position_id}
        state = replace(state, **{key: book})
        effects.append(StartPosition(res.position_id, state.wallet, res.journal))
    for pid in obs.mirror_to:
        t = obs.trade
        effects.append(ToPosition(pid, LeaderSold(pid, obs.signature, state.wallet, t.token_amount, t.quote_mint, t.quote_amount)))
    return state, effects


def _without(book: dict[str, frozenset[int]], mint: str, position_id: int) -> dict[str, frozenset[int]]:
    ids = book.get(mint, frozenset()) - {position_id}
    out = {k: v for k, v in book.items() if k != mint}
    if ids:
        out[mint] = ids
    return out


def on_position_closed(state: WalletState, ev: PositionClosed, rules: CopyRules) -> tuple[WalletState, list[Effect]]:
    return replace(state, open_by_token=_without(state.open_by_token, ev.token_mint, ev.position_id),
                   shadow_by_token=_without(state.shadow_by_token, ev.token_mint, ev.position_id)), []


TABLE: dict[tuple[str, type], Callable[[WalletState, Any, CopyRules], tuple[WalletState, list[Effect]]]] = {
    ("watching", SwapObserved): on_swap_observed,
    ("watching", SafetyAssessed): on_safety_assessed,
    ("watching", Recorded): on_recorded,
    ("watching", PositionClosed): on_position_closed,
}


def transition(state: WalletState, event: Any, rules: CopyRules) -> tuple[WalletState, list[Effect]]:
    handler = TABLE.get((state.status, type(event)))
    if handler is None:
        raise LookupError(f"wallet {state.wallet}: no transition for {type(event).__name__} in {state.status}")
    return handler(state, event, rules)


class WalletActor(Shell):
    def __init__(self, state: WalletState, ports: Ports, root: pykka.ActorRef) -> None:
        super().__init__(ports.scheduler, root)
        self.child_id = ("wallet", state.wallet)
        self.state = state
        self._ports = ports
        self._root = root

    def handle(self, message: Any) -> Any:
        self._step(message)

    def _step(self, event: Any) -> None:
        self.state, effects = transition(self.state, event, self._ports.rules)
        for effect in effects:
            if isinstance(effect, Record):
                obs = effect.observation
                self.persist(
                    lambda obs=obs: self._ports.store.record_observation(obs),
                    lambda result, obs=obs: self._recorded(obs, result),
                )
            elif isinstance(effect, AssessSafety):
                assert self._ports.safety is not None
                safety, e = self._ports.safety, effect
                self.request(lambda: safety.assess(e.trade.token_mint),
                             lambda report: self._step(SafetyAssessed(e.signature, e.trade, report)))
            else:
                self._root.tell(effect)

    def _recorded(self, obs: Observation, result: RecordResult) -> None:
        if obs.outcome == "signal" and not result.duplicate:
            t = obs.trade
            assert t is not None
            log.info(
                "signal",
                wallet=obs.wallet,
                signature=obs.signature,
                side=t.side,
                token_mint=t.token_mint,
                decision=obs.decision,
                reason=obs.reason,
                signal_id=result.signal_id,
                position_id=result.position_id,
            )
        self._step(Recorded(obs, result))
