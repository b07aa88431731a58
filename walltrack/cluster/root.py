"""The root supervisor of a cluster node: the same root (actors/supervisor.py), running only what this node owns.

- **Partitions**: the wallet actors of the watched wallets in the node's partitions, and the position actors of
  those wallets' open positions. `AdoptPartition` brings a partition in from persisted state — the wallets' books
  and the positions' journals, exactly what `adopt_wallet`/`adopt_position` take after a restart — and
  `ReleasePartition` stops its actors (a lease surrendered, lost or fenced). A position whose wallet the node does
  not own is never started, even when its rebuild was under way when the partition left.
- **Deliveries** name the wallets of one partition; the edge (actors/edge.py) hands them to the wallets through the
  directory, whose scope is this node's partitions (`Directory.in_scope`): a wallet of an owned partition that is
  not on the watchlist is recorded "unwatched" (as in one process); a wallet the node does not own is left to its
  owner. Price ticks fan out to the positions the same way, never through this mailbox.
- **Risk**: the child ("risk", "global") is the real `RiskActor` on the one node holding the risk lease
  (`RiskOwner(True)`: rebuilt from the database, as after a restart) and a `RemoteRisk` proxy everywhere else,
  which carries reservations and exposure events to the owner over NATS (`walltrack.cluster.risk`). Events from
  other nodes reach the real one through the directory.
- `NodeStatus` answers what runs here: partitions, the risk lease, and each position with when it last got a
  price tick since it started here (the demo and the tests read it over NATS). `AdoptPartition` and
  `ReleasePartition` are asked (an edge's ask: the node waits for the answer); no message carries a future.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import pykka
import structlog

from actors.messages import (
    JournalEvent,
    PositionClosed,
    ReservationBound,
    ReservationReleased,
    ReserveEntry,
    TripBreaker,
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


@dataclass(frozen=True)
class ReleasePartition:
    partition: int


@dataclass(frozen=True)
class EnsurePositions:
    """Open positions of the owned partitions, from the database: start any that does not run here."""

    position_ids: tuple[int, ...]


@dataclass(frozen=True)
class RiskOwner:
    owned: bool


@dataclass(frozen=True)
class NodeStatus:
    pass


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
        self._owned: frozenset[int] = frozenset()  # replaced whole: the edge's thread reads it (`_mine`)
        self._owns_risk = False
        self._positions: dict[int, tuple[str, str]] = {}  # running position -> (wallet, mint)
        self._started: dict[int, float] = {}  # position -> wall time it started here
        self._dir.in_scope = self._mine  # deliveries and the watchlist: this node's partitions only

    def _mine(self, wallet: str) -> bool:
        return partition(wallet, self._count) in self._owned

    def _handlers(self) -> dict[type, Any]:
        return {
            **super()._handlers(),
            AdoptPartition: self._adopt,
            ReleasePartition: self._release,
            EnsurePositions: self._ensure,
            RiskOwner: self._risk_owner,
            NodeStatus: lambda m: self._status(),
        }

    def _position_closed(self, m: PositionClosed) -> None:
        super()._position_closed(m)
        self._positions.pop(m.position_id, None)
        self._started.pop(m.position_id, None)

    # -- partitions --------------------------------------------------------------------------------------------
    def _adopt(self, m: AdoptPartition) -> tuple[int, int]:
        """Asked by the node (it waits for the answer before it follows the partition's stream)."""
        self._owned = self._owned | {m.partition}
        self._dir.watch(m.watched)  # the partition's wallets are in scope now: deliveries to them are held
        self.adopt_wallets(m.wallets)
        for pid, journal in m.positions:
            self.adopt_position(pid, journal)
        self._watchlist_changed(WatchlistChanged(m.watched))  # any wallet added since the books were read
        log.info("partition_adopted", partition=m.partition, wallets=len(m.wallets), positions=len(m.positions))
        return len(m.wallets), len(m.positions)

    def _release(self, m: ReleasePartition) -> tuple[int, int]:
        p = m.partition
        self._owned = self._owned - {p}
        self._dir.watch(self._dir.everyone)  # its wallets are out of scope: deliveries to them are left to their owner
        self._seen = self._dir.version
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
            self._started.pop(pid, None)
        log.info("partition_released", partition=p, wallets=len(gone), positions=len(positions))
        return len(gone), len(positions)

    def _ensure(self, m: EnsurePositions) -> None:
        missing = [pid for pid in m.position_ids if self._dir.lookup(("position", str(pid))) is None
                   and not self._dir.waiting(("position", str(pid))) and ("position", str(pid)) not in self._escalated]
        for pid in missing:
            self._recover(("position", str(pid)))  # rebuilt from its journal; dropped if not ours by then
        if missing:
            log.warning("positions_adopted_late", positions=missing[:20], count=len(missing))

    def _stop_child(self, child: ChildId) -> None:
        self._policies.pop(child, None)
        ref = self._dir.drop(child)
        if ref is not None:
            ref.stop(block=False)

    def _spawn(self, child: ChildId, snapshot: Any) -> None:
        kind, key = child
        if child == RISK and not self._owns_risk:
            if self._dir.lookup(child) is None:
                self._dir.bind(child, RemoteRisk.start(self._ports.scheduler, self.actor_ref, self._risk_link))
            return
        if kind == "position":
            state = fold(int(key), tuple(snapshot))
            if not self._mine(state.wallet):  # its partition left while it was being rebuilt
                self._dir.drop(child)
                return
            if state.status not in TERMINAL:
                self._positions[int(key)] = (state.wallet, state.token_mint)
                self._started[int(key)] = time.time()
        super()._spawn(child, snapshot)

    # -- the risk lease ----------------------------------------------------------------------------------------
    def _recover(self, child: ChildId) -> None:
        if child == RISK and not self._owns_risk:  # a proxy needs no snapshot
            self._dir.hold(child)
            self._spawn(child, None)
            return
        super()._recover(child)

    def _risk_owner(self, m: RiskOwner) -> None:
        if m.owned == self._owns_risk:
            return
        self._owns_risk = m.owned
        ref = self._dir.unbind(RISK)  # its held messages (if any) wait for the successor
        if ref is not None:
            ref.stop(block=False)
        self._policies.pop(RISK, None)
        log.info("risk_owner", owned=m.owned)
        self._recover(RISK)  # the owner rebuilds the risk state from the database, as after a restart

    def _ticked(self, pid: int) -> float | None:
        """When the position's token last got a price tick since the position started here (None: not yet)."""
        _, mint = self._positions[pid]
        at = self._dir.ticked(mint)
        return at if at is not None and at >= self._started.get(pid, 0.0) else None

    def _status(self) -> dict[str, Any]:
        return {"partitions": sorted(self._owned), "risk": self._owns_risk, "wallets": len(self._watchlist),
                "positions": {str(pid): self._ticked(pid) for pid in sorted(self._positions)}}
