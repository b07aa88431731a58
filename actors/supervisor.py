"""The root supervisor: starts, restarts, escalates and stops the wallet, position and risk actors. It routes nothing.

Children are indexed by ("wallet", address) and ("position", id) in the directory (`Ports.directory`,
actors/directory.py), which the root alone writes: a child that is starting or restarting gets its messages
held there, in order, until it runs. Actors and edges tell each other through the directory, never through
this mailbox; deliveries, operator commands and price ticks enter through the edge (actors/edge.py). What
reaches the root is supervision: the watchlist (which wallets to run), `StartPosition` (spawn), a position's
close (a normal exit: stop it), `ChildFailed`, restarts and recoveries, adoption, an operator's reset of the
escalation breaker, and `GetStats`. A restart builds a fresh actor from persisted state: a wallet from its open
positions, a position from its journal.

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
(`Store.risk_snapshot`); wallets, positions and the edge tell it their reservations, closes and resets
themselves. Tripped breakers are published in `Published.breakers` for /health.
"""

from __future__ import annotations

from collections import Counter
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Callable

import pykka
import structlog

from actors.directory import RISK, ChildId, Directory
from actors.messages import (
    BreakerReset,
    ChildFailed,
    ChildRecovered,
    GetStats,
    JournalEvent,
    PositionClosed,
    ReservationBound,
    StartPosition,
    SwapObserved,
    TripBreaker,
    WatchlistChanged,
)
from actors.ports import Ports
from actors.position import TERMINAL, PositionActor, fold
from actors.risk import SUPERVISOR_BREAKER, RiskActor, rebuild, trip_event
from actors.runtime import PooledActor
from actors.supervision import Backoff, Escalate, Intensity, Restart, RestartChildren, RestartPolicy
from actors.wallet import WalletActor, WalletState

log = structlog.get_logger("supervisor")

__all__ = ["RISK", "ChildId", "Published", "RootSupervisor"]

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
        self.root_mail: Counter[str] = Counter()  # what the root's mailbox received, by message type (supervision only)


class RootSupervisor(PooledActor):
    risk_actor: type[RiskActor] = RiskActor  # the risk child's class (a test's may answer late)

    def __init__(self, ports: Ports, published: Published | None = None, intensity: Intensity = Intensity(),
                 backoff: Backoff = Backoff()) -> None:
        super().__init__()
        self._ports = ports
        self._dir: Directory = ports.directory
        self.published = published or Published()
        self._intensity, self._backoff = intensity, backoff
        self._policies: dict[ChildId, RestartPolicy] = {}  # restart counts per child
        self._escalated: dict[ChildId, str] = {}  # children given up on (until an operator reset), and why
        self._failed: set[ChildId] = set()  # wallets to restart with their inbox backlog
        self._watchlist: frozenset[str] = frozenset()  # the wallets whose actors run (or are being started)
        self._seen = -1  # the directory's watchlist version acted on
        self.restarts = 0

    # -- start-up from persisted state (called by the composition root before traffic) --------------
    def adopt_wallet(self, wallet: str, books: dict[str, dict[str, frozenset[int]]]) -> None:
        self.adopt_wallets({wallet: books})

    def adopt_wallets(self, wallets: dict[str, dict[str, dict[str, frozenset[int]]]]) -> None:
        """Watch them all at once (one pass over the watchlist, not one per wallet), then start each."""
        self._dir.watch(self._dir.everyone | set(wallets))
        self._seen = self._dir.version
        self._watchlist |= set(wallets)
        for wallet, books in wallets.items():
            self._spawn(("wallet", wallet), books)

    def adopt_position(self, position_id: int, journal: tuple[JournalEvent, ...]) -> None:
        self._spawn(("position", str(position_id)), journal)

    def adopt(self, wallets: dict[str, Any], positions: list[tuple[int, tuple[JournalEvent, ...]]]) -> int:
        """Every watched wallet (address -> books) and open position at once: one message, not a round trip each."""
        self.adopt_wallets(wallets)
        for pid, journal in positions:
            self.adopt_position(pid, journal)
        return len(self._dir.running())

    def _handle_receive(self, message: Any) -> Any:
        self.published.root_mail[type(message).__name__] += 1  # (proxy calls too: adoption)
        return super()._handle_receive(message)

    def on_receive(self, message: Any) -> Any:
        handler = self._handlers().get(type(message))
        if handler is None:
            raise LookupError(f"root: unknown message {type(message).__name__}")
        return handler(message)

    def _handlers(self) -> dict[type, Callable[[Any], Any]]:
        """Supervision only: which children run, their starts, exits, failures and restarts."""
        return {
            WatchlistChanged: self._watchlist_changed,
            StartPosition: lambda m: self._spawn(("position", str(m.position_id)), m.journal),
            PositionClosed: self._position_closed,
            ChildFailed: self._child_failed,
            _Restart: self._restart,
            ChildRecovered: lambda m: self._spawn(m.child, m.snapshot),
            GetStats: lambda m: self.stats(),
            BreakerReset: self._breaker_reset,
        }

    def on_start(self) -> None:
        if self._ports.risk is not None:
            self._recover(RISK)

    def stats(self) -> dict[str, int]:
        kinds = [k for k, _ in self._dir.running()]
        return {"wallets": kinds.count("wallet"), "positions": kinds.count("position"), "restarts": self.restarts}

    def _send(self, child: ChildId, message: Any) -> None:
        self._dir.tell(child, message)

    # -- which children run ------------------------------------------------------------------------
    def _watchlist_changed(self, m: WatchlistChanged) -> None:
        """The edge updated the directory's watchlist before telling me (deliveries after it are held for the wallets
        it added); told directly, I update it myself. Either way: run what it names, stop what it no longer does."""
        if self._dir.version == self._seen:
            self._dir.watch(m.wallets)
        self._seen = self._dir.version
        target = self._dir.watched
        added, removed = target - self._watchlist, self._watchlist - target
        self._watchlist = target
        for wallet in sorted(removed):
            ref = self._dir.drop(("wallet", wallet))
            if ref is not None:
                ref.stop(block=False)
            log.info("wallet_unwatched", wallet=wallet)
        for wallet in sorted(added):
            log.info("wallet_watched", wallet=wallet)
            self._recover(("wallet", wallet))

    def _position_closed(self, m: PositionClosed) -> None:
        """A position's normal exit (it told its wallet and the risk actor itself): stop it, no restart."""
        ref = self._dir.drop(("position", str(m.position_id)))
        if ref is not None:
            ref.stop(block=False)
        self._track_mint(m.token_mint, m.position_id, open_=False)

    def _track_mint(self, mint: str, position_id: int, open_: bool) -> None:
        self._dir.track_mint(mint, position_id, open_)
        self.published.open_mints = self._dir.open_mints()
    # -- supervision -------------------------------------------------------------------------------
    def _child_failed(self, m: ChildFailed) -> None:
        if m.child[0] == "wallet" and m.child[1] not in self._watchlist:
            self._dir.drop(m.child)
            return
        name = f"{m.child[0]}:{m.child[1]}"
        if m.child[0] == "wallet":
            self._failed.add(m.child)
        # its messages wait out the backoff: those it had not handled first, then those sent since
        self._dir.hold(m.child, m.unprocessed)
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
        running = self._dir.lookup(m.child) is not None
        if wanted and not running and (m.child not in self._escalated or kind == "position"):
            self._recover(m.child)

    def _escalate(self, child: ChildId, reason: str, restarts: int, error: str) -> None:
        """Stop restarting `child` (a position: restart it slowly), trip the global breaker, say so once."""
        if child[0] != "position":
            self._dir.drop(child)
        self._escalated[child] = reason
        self._dir.escalated.add(child)
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
        """The operator cleared the escalation breaker (the edge told the risk actor itself): start afresh the
        children given up on."""
        if m.name == SUPERVISOR_BREAKER and self._escalated:
            children, self._escalated = sorted(self._escalated), {}
            self._dir.escalated.clear()
            log.info("escalation_reset", children=[f"{k}:{v}" for k, v in children], by=m.by)
            for child in children:
                self._policies.pop(child, None)
                self._restart(_Restart(child))

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
        """Rebuild a child from persisted state; its messages are held until it runs."""
        if self._dir.lookup(child) is None:
            self._dir.hold(child)
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
        if self._dir.lookup(child) is not None or (kind == "wallet" and key not in self._watchlist):
            return
        with self._dir.lock:  # started and bound at once: a broadcast (the trading mode) meets it either way
            if kind == "wallet":
                ref = self._start_wallet(key, snapshot)
            elif kind == "risk":
                ref = self.risk_actor.start(rebuild(self._ports.risk, self._ports.clock(), snapshot), self._ports,
                                      self.actor_ref, self.published)
            else:
                ref = self._start_position(int(key), tuple(snapshot))
            self._dir.bind(child, ref)

    def _start_wallet(self, wallet: str, snapshot: Any) -> pykka.ActorRef:
        child = ("wallet", wallet)
        state = WalletState(wallet, open_by_token=dict(snapshot["open"]), shadow_by_token=dict(snapshot["shadow"]),
                            screen=self._ports.safety is not None, overrides=dict(snapshot.get("settings") or {}),
                            buys=dict(snapshot.get("buys") or {}), leader_holdings=dict(snapshot.get("holdings") or {}),
                            trading_mode=self._dir.trading_mode)
        ref = WalletActor.start(state, self._ports, self.actor_ref)
        if child in self._failed:  # a restart: what the failed actor's mailbox held is replayed from the inbox
            self._failed.discard(child)
            now = self._ports.clock()
            backlog = [SwapObserved(sig, wallet, payload, received_at=now - age_s)
                       for sig, payload, age_s in snapshot.get("backlog") or ()]
            replayed = {m.signature for m in backlog}
            self._dir.replace_held(child, [*backlog, *(m for m in self._dir.held(child)
                                                       if not (isinstance(m, SwapObserved) and m.signature in replayed))])
            if backlog:
                log.info("wallet_backlog_replayed", wallet=wallet, deliveries=len(backlog))
            for pid in sorted(set().union(*snapshot["open"].values(), *snapshot["shadow"].values())):
                orphan = ("position", str(pid))  # stored, but its wallet died before starting it
                if self._dir.lookup(orphan) is None and not self._dir.waiting(orphan):
                    self._recover(orphan)
        return ref

    def _start_position(self, position_id: int, journal: tuple[JournalEvent, ...]) -> pykka.ActorRef:
        ref = PositionActor.start(position_id, journal, self._ports, self.actor_ref, trading_mode=self._dir.trading_mode)
        state = fold(position_id, journal)  # pure: no ask to the child
        if state.status not in TERMINAL:  # pending, open or partially closed: it wants price ticks
            self._track_mint(state.token_mint, position_id, open_=True)
            self._bind_exposure(position_id, journal)
        return ref

    def _bind_exposure(self, position_id: int, journal: tuple[JournalEvent, ...]) -> None:
        """A position that runs counts against the caps: bound to the risk actor under its reservation id (idempotent
        — the wallet bound it already, or died after storing it and before binding it)."""
        d = journal[0].data if journal else {}
        if self._ports.risk is None or d.get("mode") == "shadow" or "signature" not in d:
            return
        self._send(RISK, ReservationBound(f"{d['signature']}:{d['wallet']}", position_id, d["wallet"], d["token_mint"],
                                          d["quote_mint"], int(d["entry_quote_amount"])))

    def on_stop(self) -> None:
        for child in self._dir.running():  # never wait in a handler: the runtime's stop_all waits for them
            ref = self._dir.drop(child)
            try:
                if ref is not None:
                    ref.stop(block=False)
            except pykka.ActorDeadError:
                pass
