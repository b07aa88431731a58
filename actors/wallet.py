"""WalletActor: one per watched wallet. Classifies the wallet's transactions and decides what to copy.

A buy goes through, in order: the global trading mode (off: skipped as "mode:off" for every wallet, whatever
its rules), the wallet's copy rules that need no outside facts (`screen_buy`: mode,
active hours, blacklist, the leader's trade size, add-on buys, buys and SOL per token), the token safety
verdict and the token filters on its facts (`screen_token`: liquidity, market cap, pool age, sources/DEXes,
price impact), then a reservation from the RiskActor (global caps and breakers). Any refusal records the
signal as skipped with its reason and follows it as a shadow position. The rules are the global defaults
with the wallet's overrides (`actors/rules.py`, `wallets.settings`).

Live mode needs three things: a wallet key (`Context.live_available`, else `live_not_available`), the wallet's
rules in mode live, and the operator's global mode live (else `live:global_mode_not_live`). A live entry always
pays SOL: a USD-quoted leader's trade is sized by the USD rules and converted at the last fresh SOL price
(`live_entry`; none known: `live:sol_price_unknown`), and the position is booked in SOL.

Transition table (state, event) -> handler, in actors/wallet_table.py; the handlers are pure and return
(state', effects); the decisions themselves are actors/wallet_decide.py:

| state                | event                 | effects / next state                                          |
|----------------------|-----------------------|---------------------------------------------------------------|
| watching             | SwapObserved          | no trade (or refused): Record(why); a buy that passes the rules: AssessSafety (when screening), else Reserve -> awaiting_reservation, or Record |
| watching             | SafetyAssessed        | Reserve (an entry that may be taken) -> awaiting_reservation, or Record(skipped: the reason) |
| watching             | Recorded              | ReservationBound + StartPosition for an entry; for a duplicate, the same for the position its first decision opened (still open), else Release; LeaderSold to its positions |
| watching             | PositionClosed        | —                                                             |
| watching             | WalletSettingsChanged | — (the wallet's overrides replaced)                           |
| watching             | TradingModeChanged    | — (the global mode replaced; the rules' default mode follows it) |
| watching             | EntryDecision, ReservationTimedOut | — (late: that reservation was given up on or answered) |
| awaiting_reservation | EntryDecision         | -> watching: Record(taken); Record(skipped: the cap or breaker) [+ Release when the kill switch went on meanwhile]; an answer to another request: — |
| awaiting_reservation | ReservationTimedOut   | -> watching: Release + Record(skipped "risk:unavailable"), fail closed |
| awaiting_reservation | TradingModeChanged    | — (the global mode replaced: the answer meets the kill switch) |
| awaiting_reservation | SwapObserved, WalletSettingsChanged, PositionClosed | queued in the state; decided in order once watching |

A reservation is a `tell`: `ReserveEntry` carries the wallet's own ref in `reply_to`; the risk actor tells its
`EntryDecision` back. The wallet schedules its `ReservationTimedOut` (after `Ports.reservation_timeout_s`, set
by the composition root) with the request. While it waits, nothing else stalls: other wallets go on, and this
wallet's own deliveries wait in its state, not in a hidden stash. What changes in `watching` is the books:
positions by token (ours and shadows), our buys per token, and the leader's holdings observed since watching
began (add-on buys, the sold fraction). A `TradingModeChanged` is handled even while a reservation or a write
is under way: the kill switch refuses an entry granted just before it (skipped `mode:off`, the reservation
released). Peers are reached through the directory (`Ports.directory`): the risk actor and positions directly,
the root only for what it supervises (`StartPosition`).
"""


from __future__ import annotations

import uuid
from dataclasses import replace
from typing import Any

import pykka
import structlog

from actors.directory import RISK
from actors.messages import (
    Observation,
    RecordResult,
    ReservationBound,
    ReservationReleased,
    ReserveEntry,
    StartPosition,
    ToPosition,
    TradingModeChanged,
    WalletSettingsChanged,
)
from actors.ports import Ports
from actors.shell import Shell
from actors.wallet_decide import (  # noqa: F401 - the wallet's public names, where they always were
    AWAITING_RESERVATION,
    LAMPORTS_PER_SOL,
    LIVE_GLOBAL_NOT_LIVE,
    LIVE_NO_SOL_PRICE,
    STABLE_UNITS,
    WATCHING,
    Context,
    WalletState,
    decide,
    live_entry,
    paper_entry,
    screen_buy,
    screen_token,
    skipped,
)
from actors.wallet_table import (  # noqa: F401
    TABLE,
    AssessSafety,
    Record,
    Recorded,
    Reserve,
    ReservationTimedOut,
    SafetyAssessed,
    effective_rules,
    next_queued,
    rules_for,
    transition,
)

log = structlog.get_logger("wallet")


class WalletActor(Shell):
    def __init__(self, state: WalletState, ports: Ports, root: pykka.ActorRef) -> None:
        super().__init__(ports.scheduler, root)
        self.child_id = ("wallet", state.wallet)
        self.state = state
        self._ports = ports
        self._root = root
        self._dir = ports.directory

    def on_start(self) -> None:
        self._check_rules()

    def handle(self, message: Any) -> Any:
        self._step(message)
        if isinstance(message, WalletSettingsChanged) and self.state.status == WATCHING:
            self._check_rules()
        return None

    def bypass_stash(self, message: Any) -> bool:
        """The global mode is a pure state change: known at once, so an entry under way sees the kill switch."""
        return isinstance(message, TradingModeChanged)

    def deferred(self) -> tuple[Any, ...]:
        """A failed wallet's queued deliveries go to its successor (which also replays them from the inbox)."""
        return self.state.queued

    def _check_rules(self) -> None:
        _, error = effective_rules(self.state, self._ports.rules, self._ports.rules_follow_mode)
        if error is not None:
            log.error("wallet_rules_invalid", wallet=self.state.wallet, error=error)

    def _step(self, event: Any) -> None:
        ports = self._ports
        ctx = Context(ports.clock(), ports.live_available, ports.risk is not None, ports.rules_follow_mode,
                      ports.sol_usd(), ports.max_skew_s)
        self.state, effects = transition(self.state, event, ports.rules, ctx)
        for effect in effects:
            self._perform(effect)
        while not self.busy:  # watching again: what waited in the state, in order, until one needs I/O or an answer
            self.state, queued = next_queued(self.state)
            if queued is None:
                return
            self.handle(queued)

    def _perform(self, effect: Any) -> None:
        if isinstance(effect, Record):  # its id makes a retry after a lost acknowledgement find its own row
            obs, rid = replace(effect.observation, decision_id=uuid.uuid4().hex), effect.reservation_id
            self.persist(lambda: self._ports.store.record_observation(obs),
                         lambda result: self._recorded(obs, result, rid))
        elif isinstance(effect, AssessSafety):
            safety = self._ports.safety
            assert safety is not None
            self.request(lambda: safety.assess(effect.trade.token_mint),
                         lambda report: self._step(SafetyAssessed(effect.signature, effect.trade, report)))
        elif isinstance(effect, Reserve):
            self._reserve(effect)
        elif isinstance(effect, ToPosition):
            self._dir.tell(("position", str(effect.position_id)), effect.message)
        elif isinstance(effect, (ReservationBound, ReservationReleased)):
            self._dir.tell(RISK, effect)
        elif isinstance(effect, StartPosition):
            self._root.tell(effect)  # the root spawns (supervises) it
        else:
            raise LookupError(f"wallet: unknown effect {type(effect).__name__}")

    def _reserve(self, r: Reserve) -> None:
        """Ask the risk actor (a tell with my ref to answer to) and start my own timer: no answer in time is a
        refusal (fail closed), decided in this mailbox like any event."""
        obs = r.observation
        assert obs.trade is not None and obs.entry is not None
        self._dir.tell(RISK, ReserveEntry(r.reservation_id, obs.wallet, obs.trade.token_mint,
                                          obs.entry.quote_mint or obs.trade.quote_mint, obs.entry.quote_amount,
                                          reply_to=self.actor_ref, mode=obs.entry.mode))
        self.tell_later(self._ports.reservation_timeout_s, ReservationTimedOut(r.reservation_id))

    @property
    def busy(self) -> bool:
        return self.io_in_flight or self.state.status != WATCHING

    def _recorded(self, obs: Observation, result: RecordResult, reservation_id: str | None) -> None:
        if obs.outcome in ("no_trade", "ignored") and not result.duplicate:
            log.info("not_a_trade", wallet=obs.wallet, signature=obs.signature, outcome=obs.outcome, reason=obs.reason)
        if obs.outcome == "signal" and not result.duplicate:
            t = obs.trade
            assert t is not None
            log.info("signal", wallet=obs.wallet, signature=obs.signature, side=t.side, token_mint=t.token_mint,
                     decision=obs.decision, reason=obs.reason, signal_id=result.signal_id, position_id=result.position_id)
        self._step(Recorded(obs, result, reservation_id))
