"""The root supervisor: owns the wallet and position actors, routes messages to them, restarts them.

Children are indexed by ("wallet", address) and ("position", id) in our own dict (pykka's registry is a
linear list). A child that is starting or restarting gets its messages buffered, in order, until it
runs. A restart builds a fresh actor from persisted state: a wallet from its open positions, a position
from its journal.

Supervision is OTP's (actors/supervision.py), one_for_one, with one `RestartPolicy` per child: a failed
child is restarted after a backoff with jitter (a timer, never a sleep in this mailbox), as its restart
type in `RESTART` says. A child that fails more than `Intensity.max_restarts` times within `period_s` is
not restarted: the root escalates — it trips the global breaker `supervisor:escalated` in the risk actor
(no new entries; exits go on; /health is degraded) and logs one `supervisor_escalated` error line. An
operator reset of that breaker (`walltrack breakers reset supervisor:escalated`, or the panel) restarts
the children given up on, with fresh counts. An escalated position is the exception: an open position is
never left unmonitored, so it is still restarted, at the slowest backoff (`Backoff.max_s`), its messages
held for it meanwhile (only the newest price tick). A failed child's unhandled messages
(`ChildFailed.unprocessed`) go to its successor first, and what is sent to it between its death and the
root hearing of it is held too: nothing addressed to a restarting child is dropped.

With `Ports.risk` set, the root also owns the one RiskActor, ("risk", "global"), rebuilt from the database
(`Store.risk_snapshot`): entry reservations, their binding and release, operator breaker resets and every
`PositionClosed` are routed to it; the SOL price from price ticks too. Tripped breakers are published in
`Published.breakers` for /health.
"""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Callable

import pykka
import structlog

from actors.messages import (
    ChildFailed,
    ChildRecovered,
    Deliver,
    GetStats,
    JournalEvent,
    Observation,
    PositionClosed,
    PriceTick,
    PriceTicks,
    StartPosition,
    SwapObserved,
    ToPosition,
    WatchlistChanged,
)
from actors.messages import BreakerReset, ReservationBound, ReservationReleased, ReserveEntry, SolPrice, WalletSettingsChanged
from actors.messages import GetChild, TradingModeChanged, TripBreaker
from actors.ports import Ports
from actors.position import TERMINAL, PositionActor, fold
from actors.risk import SUPERVISOR_BREAKER, RiskActor, rebuild, trip_event
from actors.runtime import PooledActor
from actors.supervision import Backoff, Escalate, Intensity, Restart, RestartChildren, RestartPolicy
from actors.wallet import WalletActor, WalletState

log = structlog.get_logger("supervisor")

ChildId = tuple[str, str]
RISK: ChildId = ("risk", "global")

# Child specs: the restart type of each kind of child (a failure is always abnormal; a normal stop — a closed
# position, an unwatched wallet — is the root's own doing and restarts nothing).
RESTART: dict[str, Restart] = {
    "risk": Restart.PERMANENT,
    "wallet": Restart.PERMANENT,  # while it is watched
    "position": Restart.TRANSIENT,  # until it closes
}


@dataclass(frozen=True, slots=True)
class _Restart:
    """A child's backoff is over (or its recovery read failed): rebuild it from persisted state."""

    child: ChildId


class Published:
    """What the root publishes for other runtimes to read without asking it (replaced whole, never mutated)."""

    def __init__(self) -> None:
        self.open_mints: frozenset[str] = frozenset()
        self.breakers: tuple[dict[str, Any], ...] = ()  # tripped breakers, from the risk actor
        self.sol_usd: Any = None  # (the last fresh SOL price, when it came) from the price monitor: sizes live entries


class RootSupervisor(PooledActor):
    def __init__(self, ports: Ports, published: Published | None = None, intensity: Intensity = Intensity(),
                 backoff: Backoff = Backoff()) -> None:
        super().__init__()
        self._ports = ports
        self.published = published or Published()
        self._intensity, self._backoff = intensity, backoff
        self._children: dict[ChildId, pykka.ActorRef] = {}
        self._pending: dict[ChildId, list[Any]] = {}
        self._policies: dict[ChildId, RestartPolicy] = {}  # restart counts per child
        self._escalated: dict[ChildId, str] = {}  # children given up on (until an operator reset), and why
        self._failed: set[ChildId] = set()  # wallets to restart with their inbox backlog
        self._watchlist: frozenset[str] = frozenset()
        self._by_mint: dict[str, set[int]] = {}  # open positions per token, for price ticks
        self._trading_mode: str | None = None  # the global mode, handed to every wallet (None: not told yet)
        self.restarts = 0

    # -- start-up from persisted state (called by the composition root before traffic) --------------
    def adopt_wallet(self, wallet: str, books: dict[str, dict[str, frozenset[int]]]) -> None:
        self._watchlist |= {wallet}
        self._spawn(("wallet", wallet), books)

    def adopt_position(self, position_id: int, journal: tuple[JournalEvent, ...]) -> None:
        self._spawn(("position", str(position_id)), journal)

    def adopt(self, wallets: dict[str, Any], positions: list[tuple[int, tuple[JournalEvent, ...]]]) -> int:
        """Every watched wallet (address -> books) and open position at once: one message, not a round trip each."""
        for wallet, books in wallets.items():
            self.adopt_wallet(wallet, books)
        for pid, journal in positions:
            self.adopt_position(pid, journal)
        return len(self._children)

    def on_receive(self, message: Any) -> Any:
        handler = self._handlers().get(type(message))
        if handler is None:
            raise LookupError(f"root: unknown message {type(message).__name__}")
        return handler(message)

    def _handlers(self) -> dict[type, Callable[[Any], Any]]:
        return {
            Deliver: self._deliver,
            WatchlistChanged: self._watchlist_changed,
            StartPosition: lambda m: self._spawn(("position", str(m.position_id)), m.journal),
            ToPosition: lambda m: self._send(("position", str(m.position_id)), m.message),
            PositionClosed: self._position_closed,
            PriceTicks: self._price_ticks,
            ChildFailed: self._child_failed,
            _Restart: self._restart,
            ChildRecovered: lambda m: self._spawn(m.child, m.snapshot),
            GetStats: lambda m: self.stats(),
            GetChild: lambda m: self._children.get(tuple(m.child)),  # the panel asks the child itself
            # risk: entry reservations and breaker commands go to the one RiskActor; rules to their wallet
            ReserveEntry: lambda m: self._send(RISK, m),
            ReservationBound: lambda m: self._send(RISK, m),
            ReservationReleased: lambda m: self._send(RISK, m),
            BreakerReset: self._breaker_reset,
            WalletSettingsChanged: lambda m: self._send(("wallet", m.wallet), m),
            TradingModeChanged: self._trading_mode_changed,
        }

    def on_start(self) -> None:
        if self._ports.risk is not None:
            self._recover(RISK)

    def stats(self) -> dict[str, int]:
        kinds = [k for k, _ in self._children]
        return {"wallets": kinds.count("wallet"), "positions": kinds.count("position"), "restarts": self.restarts}

    # -- routing -----------------------------------------------------------------------------------
    def _deliver(self, m: Deliver) -> None:
        trades = dict(m.trades) if m.trades is not None else None
        for wallet in m.wallets:
            if wallet in self._watchlist:
                known = trades is not None and wallet in trades
                self._send(("wallet", wallet), SwapObserved(m.signature, wallet, m.payload, classified=known,
                                                            trade=trades.get(wallet) if known else None,
                                                            received_at=m.received_at))
            else:  # removed since the delivery was stored: close its books on this transaction
                self._ports.store.record_observation(Observation(m.signature, wallet, "unwatched", reason="unwatched"))

    def _send(self, child: ChildId, message: Any) -> None:
        ref = self._children.get(child)
        if ref is not None:
            try:
                ref.tell(message)
                return
            except pykka.ActorDeadError:  # it failed; its ChildFailed is on the way: hold this for its successor
                self._children.pop(child, None)
                self._pending.setdefault(child, [])
        if child in self._pending:
            held = self._pending[child]
            if isinstance(message, PriceTick):  # only the newest price matters
                held[:] = [m for m in held if not isinstance(m, PriceTick)]
            held.append(message)
        elif child not in self._escalated:  # an escalated child was reported once, by `supervisor_escalated`
            log.warning("undeliverable", child=f"{child[0]}:{child[1]}", message=type(message).__name__)

    def _watchlist_changed(self, m: WatchlistChanged) -> None:
        added, removed = m.wallets - self._watchlist, self._watchlist - m.wallets
        self._watchlist = m.wallets
        for wallet in sorted(removed):
            self._pending.pop(("wallet", wallet), None)
            ref = self._children.pop(("wallet", wallet), None)
            if ref is not None:
                ref.stop(block=False)
            log.info("wallet_unwatched", wallet=wallet)
        for wallet in sorted(added):
            log.info("wallet_watched", wallet=wallet)
            self._recover(("wallet", wallet))

    def _trading_mode_changed(self, m: TradingModeChanged) -> None:
        """To every running wallet; a wallet (re)started later gets the mode in its initial state."""
        self._trading_mode = m.mode
        wallets = [child for child in self._children if child[0] == "wallet"]
        for child in wallets:
            self._send(child, m)
        log.info("trading_mode_applied", mode=m.mode, wallets=len(wallets))

    def _position_closed(self, m: PositionClosed) -> None:
        ref = self._children.pop(("position", str(m.position_id)), None)
        if ref is not None:
            ref.stop(block=False)
        self._track_mint(m.token_mint, m.position_id, open_=False)
        self._send(("wallet", m.wallet), m)
        if self._ports.risk is not None:
            self._send(RISK, m)

    def _price_ticks(self, m: PriceTicks) -> None:
        sol = m.sol_usd if m.sol_usd is not None else next((t.sol_usd for t in m.ticks if t.sol_usd is not None), None)
        if sol is not None:
            self.published.sol_usd = (sol, self._ports.clock())
        if sol is not None and self._ports.risk is not None:
            self._send(RISK, SolPrice(sol))
        for tick in m.ticks:  # one run-queue entry per token group, not a wake-up per position
            refs = []
            for pid in self._by_mint.get(tick.mint, ()):
                child = ("position", str(pid))
                if (ref := self._children.get(child)) is not None:
                    refs.append(ref)
                else:
                    self._send(child, tick)  # (re)starting: buffered until it runs
            self._runtime.tell_all(refs, tick)

    def _track_mint(self, mint: str, position_id: int, open_: bool) -> None:
        ids = self._by_mint.setdefault(mint, set())
        (ids.add if open_ else ids.discard)(position_id)
        if not ids:
            del self._by_mint[mint]
        self.published.open_mints = frozenset(self._by_mint)

    # -- supervision -------------------------------------------------------------------------------
    def _child_failed(self, m: ChildFailed) -> None:
        self._children.pop(m.child, None)
        if m.child[0] == "wallet" and m.child[1] not in self._watchlist:
            self._pending.pop(m.child, None)
            return
        name = f"{m.child[0]}:{m.child[1]}"
        if m.child[0] == "wallet":
            self._failed.add(m.child)
        # its messages wait out the backoff: those it had not handled first, then those sent since
        self._pending[m.child] = [*m.unprocessed, *self._pending.get(m.child, [])]
        policy = self._policies.setdefault(m.child, RestartPolicy(intensity=self._intensity, backoff=self._backoff))
        decision = policy.on_exit(name, RESTART[m.child[0]], abnormal=True, order=(name,), reason=m.error)
        if isinstance(decision, RestartChildren):
            self.restarts += 1
            log.warning("child_restart", child=name, error=m.error, restarts=policy.recent_restarts,
                        delay_s=round(decision.delay_s, 3))
            self._later(decision.delay_s, _Restart(m.child))
            return
        if m.child not in self._escalated:
            self._escalate(m.child, decision.reason if isinstance(decision, Escalate) else m.error,
                           policy.recent_restarts, m.error)
        if m.child[0] == "position":  # an open position is never left unmonitored: retried at the slowest pace
            self.restarts += 1
            log.warning("child_restart", child=name, error=m.error, escalated=True, delay_s=self._backoff.max_s)
            self._later(self._backoff.max_s, _Restart(m.child))

    def _restart(self, m: _Restart) -> None:
        kind, key = m.child
        wanted = kind != "wallet" or key in self._watchlist
        if wanted and m.child not in self._children and (m.child not in self._escalated or kind == "position"):
            self._recover(m.child)

    def _escalate(self, child: ChildId, reason: str, restarts: int, error: str) -> None:
        """Stop restarting `child` (a position: restart it slowly), trip the global breaker, say so once."""
        if child[0] != "position":
            self._pending.pop(child, None)
        self._escalated[child] = reason
        log.error("supervisor_escalated", child=f"{child[0]}:{child[1]}", restarts=restarts,
                  window_s=self._intensity.period_s, error=error, breaker=SUPERVISOR_BREAKER,
                  action=f"no new entries until `walltrack breakers reset {SUPERVISOR_BREAKER}`")
        if self._ports.risk is None:
            return
        if child != RISK:
            self._send(RISK, TripBreaker(SUPERVISOR_BREAKER, reason))
            return
        # The risk actor itself is down (wallets fail closed without its answer): store and publish the trip here.
        breaker, event = trip_event(SUPERVISOR_BREAKER, reason, self._ports.clock(), None, "supervisor")
        self._ports.store.record_breakers((event,))
        others = tuple(b for b in self.published.breakers if b["name"] != SUPERVISOR_BREAKER)
        self.published.breakers = (*others, breaker.as_json())

    def _breaker_reset(self, m: BreakerReset) -> None:
        if m.name == SUPERVISOR_BREAKER and self._escalated:  # the operator clears it: those children start afresh
            children, self._escalated = sorted(self._escalated), {}
            log.info("escalation_reset", children=[f"{k}:{v}" for k, v in children], by=m.by)
            for child in children:
                self._policies.pop(child, None)
                self._restart(_Restart(child))
        if self._ports.risk is not None:
            self._send(RISK, m)

    def _later(self, delay: float, message: Any) -> None:
        """Tell myself `message` after `delay` seconds, from the scheduler's thread."""
        me = self.actor_ref

        def fire() -> None:
            try:
                me.tell(message)
            except pykka.ActorDeadError:
                pass

        self._ports.scheduler.call_later(delay, fire)

    def _recover(self, child: ChildId) -> None:
        """Rebuild a child from persisted state; buffer its messages until it runs."""
        self._pending.setdefault(child, [])
        kind, key = child
        store = self._ports.store
        future: Future = (store.wallet_open_positions(key) if kind == "wallet" else store.risk_snapshot() if kind == "risk"
                          else store.position_journal(int(key)))
        me = self.actor_ref

        def done(f: Future) -> None:
            if f.exception() is not None:  # a temporary error (the database): read again, not a failure
                log.warning("recover_retry", child=f"{kind}:{key}", error=repr(f.exception()))
                self._later(1.0, _Restart(child))
                return
            try:
                me.tell(ChildRecovered(child, f.result()))
            except pykka.ActorDeadError:
                pass

        future.add_done_callback(done)

    def _spawn(self, child: ChildId, snapshot: Any) -> None:
        kind, key = child
        if child in self._children or (kind == "wallet" and key not in self._watchlist):
            return
        me = self.actor_ref
        if kind == "wallet":
            state = WalletState(key, open_by_token=dict(snapshot["open"]), shadow_by_token=dict(snapshot["shadow"]),
                                screen=self._ports.safety is not None, overrides=dict(snapshot.get("settings") or {}),
                                buys=dict(snapshot.get("buys") or {}), leader_holdings=dict(snapshot.get("holdings") or {}),
                                trading_mode=self._trading_mode)
            ref = WalletActor.start(state, self._ports, me)
            if child in self._failed:  # a restart: what the failed actor's mailbox held is replayed from the inbox
                self._failed.discard(child)
                now = self._ports.clock()
                backlog = [SwapObserved(sig, key, payload, received_at=now - age_s)
                           for sig, payload, age_s in snapshot.get("backlog") or ()]
                replayed = {m.signature for m in backlog}
                self._pending[child] = [*backlog, *(m for m in self._pending.get(child, [])
                                                     if not (isinstance(m, SwapObserved) and m.signature in replayed))]
                if backlog:
                    log.info("wallet_backlog_replayed", wallet=key, deliveries=len(backlog))
                for pid in sorted(set().union(*snapshot["open"].values(), *snapshot["shadow"].values())):
                    orphan = ("position", str(pid))  # stored, but its wallet died before starting it
                    if orphan not in self._children and orphan not in self._pending:
                        self._recover(orphan)
        elif kind == "risk":
            ref = RiskActor.start(rebuild(self._ports.risk, self._ports.clock(), snapshot), self._ports, me, self.published)
        else:
            journal = tuple(snapshot)
            ref = PositionActor.start(int(key), journal, self._ports, me, trading_mode=self._trading_mode)
            state = fold(int(key), journal)  # pure: no ask to the child
            if state.status not in TERMINAL:  # pending, open or partially closed: it wants price ticks
                self._track_mint(state.token_mint, int(key), open_=True)
                self._bind_exposure(int(key), journal)
        self._children[child] = ref
        for message in self._pending.pop(child, []):
            ref.tell(message)

    def _bind_exposure(self, position_id: int, journal: tuple[JournalEvent, ...]) -> None:
        """A position that runs counts against the caps: bound to the risk actor under its reservation id (idempotent
        — the wallet bound it already, or died after storing it and before binding it)."""
        d = journal[0].data if journal else {}
        if self._ports.risk is None or d.get("mode") == "shadow" or "signature" not in d:
            return
        self._send(RISK, ReservationBound(f"{d['signature']}:{d['wallet']}", position_id, d["wallet"], d["token_mint"],
                                          d["quote_mint"], int(d["entry_quote_amount"])))

    def on_stop(self) -> None:
        for ref in self._children.values():  # never wait in a handler: the runtime's stop_all waits for them
            try:
                ref.stop(block=False)
            except pykka.ActorDeadError:
                pass
        self._children.clear()
