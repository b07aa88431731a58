"""The root supervisor of a cluster node: the same root (actors/supervisor.py), running only what this node owns.

- **Partitions**: the wallet actors of the watched wallets in the node's partitions, and the position actors of
  those wallets' open positions. `AdoptPartition` brings a partition in from persisted state — the wallets' books
  and the positions' journals, exactly what `adopt_wallet`/`adopt_position` take after a restart — and
  `ReleasePartition` stops its actors (a lease surrendered, lost or fenced). A position whose wallet the node does
  not own is never started, even when its rebuild was under way when the partition left.
- **Deliveries** name the wallets of one partition. A wallet of an owned partition that is not on the watchlist
  is recorded "unwatched" (as in one process); a wallet the node does not own is left to its owner.
- **Risk**: the child ("risk", "global") is the real `RiskActor` on the one node holding the risk lease
  (`RiskOwner(True)`: rebuilt from the database, as after a restart) and a `RemoteRisk` proxy everywhere else,
  which carries reservations and exposure events to the owner over NATS (`walltrack.cluster.risk`). Events from
  other nodes reach the real one as `ToRisk`.
- `NodeStatus` answers what runs here: partitions, the risk lease, and each position with when it last got a
  price tick (the demo and the tests read it over NATS).
"""

from __future__ import annotations

import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import pykka
import structlog

from actors.messages import (
    JournalEvent,
    Observation,
    PositionClosed,
    PriceTicks,
    ReservationBound,
    ReservationReleased,
    ReserveEntry,
    SwapObserved,
    TripBreaker,
    WalletSettingsChanged,
    WatchlistChanged,
)
from actors.position import TERMINAL, fold
from actors.shell import Shell
from actors.supervisor import RISK, ChildId, RootSupervisor
from walltrack.cluster.wire import partition

log = structlog.get_logger("cluster")


@dataclass(frozen=True)
class AdoptPartition:
    partition: int
    watched: frozenset[str]  # every active wallet, read with the books
    wallets: dict[str, Any] = field(hash=False)  # the partition's watched wallets -> their books
    positions: tuple[tuple[int, tuple[JournalEvent, ...]], ...] = ()
    done: Future = field(default_factory=Future, compare=False, hash=False)


@dataclass(frozen=True)
class ReleasePartition:
    partition: int
    done: Future = field(default_factory=Future, compare=False, hash=False)


@dataclass(frozen=True)
class EnsurePositions:
    """Open positions of the owned partitions, from the database: start any that does not run here."""

    position_ids: tuple[int, ...]


@dataclass(frozen=True)
class RiskOwner:
    owned: bool


@dataclass(frozen=True)
class ToRisk:
    """An exposure event from another node, for the real risk actor."""

    message: Any


@dataclass(frozen=True)
class NodeStatus:
    pass


def _settle(done: Future, value: Any) -> None:
    if not done.done():
        done.set_result(value)


class RemoteRisk(Shell):
    """The risk child on a node that does not own the risk lease: a proxy to the owner (never blocks)."""

    def __init__(self, scheduler: Any, root: pykka.ActorRef, link: Any) -> None:
        super().__init__(scheduler, root)
        self.child_id = RISK
        self._link = link

    def handle(self, message: Any) -> Any:
        if isinstance(message, ReserveEntry):
            self._link.reserve(message)  # answered by the owner; no answer in time is a refusal (the wallet's timer)
        elif isinstance(message, (ReservationBound, ReservationReleased, PositionClosed, TripBreaker)):
            self._link.forward(message)
        # SolPrice and BreakerReset: the owner hears them itself (the SOL price subject, NOTIFY)
        return None


class ClusterRoot(RootSupervisor):
    def __init__(self, ports: Any, published: Any, intensity: Any, backoff: Any, *, partitions: int,
                 risk_link: Any) -> None:
        super().__init__(ports, published, intensity, backoff)
        self._count = partitions
        self._risk_link = risk_link
        self._owned: set[int] = set()
        self._all: frozenset[str] = frozenset()  # every watched wallet; `_watchlist` is those this node owns
        self._owns_risk = False
        self._positions: dict[int, tuple[str, str]] = {}  # running position -> (wallet, mint)
        self._ticked: dict[int, float] = {}  # position -> wall time of the last price tick routed to it

    def _mine(self, wallet: str) -> bool:
        return partition(wallet, self._count) in self._owned

    def _handlers(self) -> dict[type, Any]:
        return {
            **super()._handlers(),
            WalletSettingsChanged: lambda m: self._send(("wallet", m.wallet), m) if m.wallet in self._watchlist else None,
            AdoptPartition: self._adopt,
            ReleasePartition: self._release,
            EnsurePositions: self._ensure,
            RiskOwner: self._risk_owner,
            ToRisk: lambda m: self._send(RISK, m.message),
            NodeStatus: lambda m: self._status(),
        }

    # -- routing, filtered by ownership -------------------------------------------------------------------------
    def _deliver(self, m: Any) -> None:
        for wallet in m.wallets:
            if wallet in self._watchlist:
                self._send(("wallet", wallet), SwapObserved(m.signature, wallet, m.payload, received_at=m.received_at))
            elif self._mine(wallet) and wallet not in self._all:  # removed since it was stored: close its books
                self._ports.store.record_observation(Observation(m.signature, wallet, "unwatched"))

    def _watchlist_changed(self, m: WatchlistChanged) -> None:
        self._all = m.wallets
        super()._watchlist_changed(WatchlistChanged(frozenset(w for w in m.wallets if self._mine(w))))

    def _price_ticks(self, m: PriceTicks) -> None:
        super()._price_ticks(m)
        now = time.time()
        for tick in m.ticks:
            for pid in self._by_mint.get(tick.mint, ()):
                self._ticked[pid] = now

    def _position_closed(self, m: PositionClosed) -> None:
        super()._position_closed(m)
        self._positions.pop(m.position_id, None)
        self._ticked.pop(m.position_id, None)

    # -- partitions --------------------------------------------------------------------------------------------
    def _adopt(self, m: AdoptPartition) -> None:
        self._owned.add(m.partition)
        for wallet, books in m.wallets.items():
            self.adopt_wallet(wallet, books)
        for pid, journal in m.positions:
            self.adopt_position(pid, journal)
        self._watchlist_changed(WatchlistChanged(m.watched))  # any wallet added since the books were read
        log.info("partition_adopted", partition=m.partition, wallets=len(m.wallets), positions=len(m.positions))
        _settle(m.done, (len(m.wallets), len(m.positions)))

    def _release(self, m: ReleasePartition) -> None:
        p = m.partition
        self._owned.discard(p)
        gone = [w for w in self._watchlist if partition(w, self._count) == p]
        self._watchlist = self._watchlist - set(gone)
        for wallet in gone:
            self._stop_child(("wallet", wallet))
            self._failed.discard(("wallet", wallet))
        positions = [pid for pid, (w, _) in self._positions.items() if partition(w, self._count) == p]
        for pid in positions:
            wallet, mint = self._positions.pop(pid)
            self._stop_child(("position", str(pid)))
            self._track_mint(mint, pid, open_=False)
            self._ticked.pop(pid, None)
        log.info("partition_released", partition=p, wallets=len(gone), positions=len(positions))
        _settle(m.done, (len(gone), len(positions)))

    def _ensure(self, m: EnsurePositions) -> None:
        missing = [pid for pid in m.position_ids if ("position", str(pid)) not in self._children
                   and ("position", str(pid)) not in self._pending and ("position", str(pid)) not in self._escalated]
        for pid in missing:
            self._recover(("position", str(pid)))  # rebuilt from its journal; dropped if not ours by then
        if missing:
            log.warning("positions_adopted_late", positions=missing[:20], count=len(missing))

    def _stop_child(self, child: ChildId) -> None:
        self._pending.pop(child, None)
        self._policies.pop(child, None)
        ref = self._children.pop(child, None)
        if ref is not None:
            ref.stop(block=False)

    def _spawn(self, child: ChildId, snapshot: Any) -> None:
        kind, key = child
        if child == RISK and not self._owns_risk:
            if child not in self._children:
                self._children[child] = RemoteRisk.start(self._ports.scheduler, self.actor_ref, self._risk_link)
            for message in self._pending.pop(child, []):
                self._children[child].tell(message)
            return
        if kind == "position":
            state = fold(int(key), tuple(snapshot))
            if not self._mine(state.wallet):  # its partition left while it was being rebuilt
                self._pending.pop(child, None)
                return
            if state.status not in TERMINAL:
                self._positions[int(key)] = (state.wallet, state.token_mint)
        super()._spawn(child, snapshot)

    # -- the risk lease ----------------------------------------------------------------------------------------
    def _recover(self, child: ChildId) -> None:
        if child == RISK and not self._owns_risk:  # a proxy needs no snapshot
            self._pending.setdefault(child, [])
            self._spawn(child, None)
            return
        super()._recover(child)

    def _risk_owner(self, m: RiskOwner) -> None:
        if m.owned == self._owns_risk:
            return
        self._owns_risk = m.owned
        ref = self._children.pop(RISK, None)  # its buffered messages (if any) wait for the successor
        if ref is not None:
            ref.stop(block=False)
        self._policies.pop(RISK, None)
        log.info("risk_owner", owned=m.owned)
        self._recover(RISK)  # the owner rebuilds the risk state from the database, as after a restart

    def _status(self) -> dict[str, Any]:
        return {"partitions": sorted(self._owned), "risk": self._owns_risk, "wallets": len(self._watchlist),
                "positions": {str(pid): self._ticked.get(pid) for pid in sorted(self._positions)}}
