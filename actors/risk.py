"""RiskActor: one per process, under the root. The single owner of the GLOBAL limits on new entries.

Wallet actors ask it for an entry reservation (`ReserveEntry`, a tell carrying the wallet's ref in `reply_to`;
the `EntryDecision` is told back to it — never a callback, never a blocking ask). It grants or refuses atomically — it is the only place the caps are counted — and the
reservation becomes the position's exposure when the wallet has stored the entry (`ReservationBound`),
until the position closes. Shadow positions never reach it: caps and breakers do not apply to them.

Caps (0 disables one): open positions, SOL exposure per token and in total, entries per UTC day, and the
reserve (paper equity = starting capital + realized PnL - open exposure must stay >= the reserve after
the entry). Live entries (`ReserveEntry.mode == "live"`) also pass the live caps: SOL per entry, live SOL
granted per UTC day, and open live exposure in total; their reserve is the wallet's real SOL, checked on
chain by the live executor before a buy is sent, so the paper reserve does not apply to them. Breakers (Freqtrade's protections): drawdown from peak equity, daily realized loss, N
consecutive losses within a window, a cooldown on a token after a stop loss, a per-wallet pause after
repeated losses, and `supervisor:escalated` (tripped by the root when a child fails past its restart
intensity). A tripped breaker stops new entries (exits go on), is stored with its reason (table
`breakers`, history in `breaker_events`) and logged as `breaker_tripped`; it resets by operator command
(`walltrack breakers reset NAME`) or when its `until` passes. After a trip or a reset a breaker counts only
later closes. USD-quoted amounts are valued in SOL at the last SOL price seen (a fallback until one is).

The model (caps, breakers, the state and its checks) is actors/risk_limits.py; the table and `rebuild`
actors/risk_table.py; this module is the actor. Transition table (state, event) -> handler, pure; every handler
first rolls time (new UTC day, expired
reservations, breakers past their `until`):

| event                | effects                                                            |
|----------------------|--------------------------------------------------------------------|
| ReserveEntry         | Reply(granted, or refused "breaker:<name>" / "cap:<name>")         |
| ReservationBound     | — (the reservation becomes the position's exposure; again: a no-op)|
| ReservationReleased  | — (its room is freed; it no longer counts as today's entry)        |
| PositionClosed       | exposure freed; with its PnL: breakers may trip -> Record; without: FetchOutcome |
| Outcome              | breakers may trip -> Record                                        |
| BreakerReset         | Record(reset)                                                      |
| TripBreaker          | Record(tripped), until reset (the root's escalation)               |
| Tick                 | Record(reset) for breakers past their time                         |
| SolPrice             | —                                                                  |
"""

from __future__ import annotations

import concurrent.futures
from dataclasses import replace
from typing import Any

import pykka
import structlog

from actors.messages import PositionClosed
from actors.ports import Ports
from actors.risk_limits import (  # noqa: F401 - the risk actor's public names, where they always were
    DAY,
    GLOBAL_BREAKERS,
    NOT_A_TRADE,
    STOP_LOSS_REASONS,
    SUPERVISOR_BREAKER,
    Breaker,
    Exposure,
    RiskConfig,
    RiskState,
    apply_close,
    check_entry,
    check_live,
    roll,
    scope,
    to_lamports,
    trip_event,
)
from actors.risk_table import TABLE, FetchOutcome, Outcome, Record, Reply, Tick, rebuild, transition  # noqa: F401
from actors.shell import Shell

log = structlog.get_logger("risk")


# -- the actor -----------------------------------------------------------------------------------------------
class RiskActor(Shell):
    def __init__(self, state: RiskState, ports: Ports, root: pykka.ActorRef, published: Any = None) -> None:
        super().__init__(ports.scheduler, root)
        self.child_id = ("risk", "global")
        self.state = state
        self._cfg: RiskConfig = ports.risk
        self._ports = ports
        self._published = published
        self._timer_at: float | None = None

    def on_start(self) -> None:
        self._publish()
        self._step(Tick())

    def handle(self, message: Any) -> Any:
        self._step(message)
        return None

    def _step(self, event: Any) -> None:
        now = self._ports.clock()
        before = self.state.breakers
        self.state, effects = transition(self.state, event, self._cfg, now)
        records: list[dict[str, Any]] = []
        for effect in effects:
            if isinstance(effect, Reply):
                _answer(effect)
            elif isinstance(effect, Record):
                records.extend(effect.events)
            elif isinstance(effect, FetchOutcome):
                self._fetch(effect.closed)
        for ev in records:
            if ev["kind"] == "tripped":
                log.warning("breaker_tripped", breaker=ev["name"], scope=scope(ev["name"]), reason=ev["reason"],
                            until=ev["until"])
            else:
                log.info("breaker_reset", breaker=ev["name"], by=ev["by"])
        if records:
            events = tuple(records)
            self.persist(lambda: self._ports.store.record_breakers(events), lambda _: None)
        if self.state.breakers != before or records:
            self._publish()
        self._arm_timer(now)

    def _fetch(self, closed: PositionClosed) -> None:
        ref = self.actor_ref

        def done(f: concurrent.futures.Future) -> None:
            row = f.result() if f.exception() is None else None
            if f.exception() is not None:
                log.warning("risk_outcome_unavailable", position_id=closed.position_id, error=repr(f.exception()))
            full = replace(closed, mode=row["mode"], quote_mint=row["quote_mint"],
                           realized_pnl_quote=None if row["realized_pnl_quote"] is None else int(row["realized_pnl_quote"]),
                           exit_reason=row["exit_reason"]) if row else closed
            try:
                ref.tell(Outcome(full))
            except pykka.ActorDeadError:
                pass

        self._ports.store.position_outcome(closed.position_id).add_done_callback(done)

    def _arm_timer(self, now: float) -> None:
        """Wake up when the next breaker's time is up (re-checked at least every minute)."""
        untils = [b.until for b in self.state.breakers.values() if b.until is not None]
        if not untils or self._timer_at is not None:
            return
        delay = max(0.5, min(min(untils) - now, 60.0))
        self._timer_at = now + delay
        ref = self.actor_ref

        def fire() -> None:
            try:
                ref.tell(_Wake())
            except pykka.ActorDeadError:
                pass

        self._scheduler.call_later(delay, fire)

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, _Wake):
            self._timer_at = None
            message = Tick()
        return super().on_receive(message)

    def _publish(self) -> None:
        if self._published is not None:
            self._published.breakers = tuple(b.as_json() for b in sorted(self.state.breakers.values(), key=lambda b: b.name))


def _answer(effect: Reply) -> None:
    if effect.reply_to is None:
        return
    try:
        effect.reply_to.tell(effect.decision)
    except pykka.ActorDeadError:
        pass  # the wallet stopped meanwhile: its successor asks again (reservation ids make it the same answer)


class _Wake:
    """The breaker timer fired (becomes a Tick in the mailbox)."""
