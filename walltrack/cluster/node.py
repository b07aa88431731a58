"""`Cluster`: this node's membership — the seam between the composition root (walltrack/app.py) and JetStream.

The App, when `CLUSTER_NATS_URL` is set:
1. builds `Cluster(settings, store, trio, services, published)` (connects, declares the streams and buckets);
2. gives the actors `cluster.observe(store)` (acks after the observation commit) and starts its root with
   `cluster.start_root(...)` (a `ClusterRoot`: only what this node owns);
3. instead of adopting every wallet, position and stored delivery, calls `cluster.start(...)`: the lease loop
   claims a fair share of the partitions, and each one is adopted from the database — the wallets' books and the
   positions' journals through `AdoptPartition` (the root's `adopt_wallet`/`adopt_position`), then the inbox
   backlog of its wallets, in order, then its consumer, its price ticks and its commands;
4. gives the gateway `cluster.publish` (deliveries to the stream) instead of dispatching them itself.

Lease changes are applied one at a time, in order, on the NATS loop. A lease *lost* (fenced, or taken) stops its
actors at once, before anything else; a partition is only adopted if its lease is still held when the books
are read. Every 10 s the node also starts any open position of its partitions that is not running (one a
stopping node committed after the partition moved) and, on the risk owner, reconciles exposure.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Callable

import structlog

from actors.edge import Edge
from actors.messages import WatchlistChanged
from storage import repo
from walltrack.bridge import ask as asyncio_ask
from walltrack.bridge import asyncio_await
from walltrack.cluster import sql, wire
from walltrack.cluster.commands import Commands
from walltrack.cluster.deliveries import AckingStore, Deliveries
from walltrack.cluster.leases import Acquired, Leases, Lost, Surrender
from walltrack.cluster.link import Link
from walltrack.cluster.prices import PriceFeed
from walltrack.cluster.risk import RiskLink
from walltrack.cluster.root import AdoptPartition, ClusterRoot, EnsurePositions, ReleasePartition

log = structlog.get_logger("cluster")

HOUSEKEEPING_S = 10.0


class Cluster:
    def __init__(self, settings: Any, store: Any, runtime: Any, services: Any, published: Any) -> None:
        s = settings
        self.node: str = s.cluster_node_id
        self.count: int = s.cluster_partitions
        self._store = store
        self.link = Link(s.cluster_nats_url.get_secret_value(), self.node, replicas=s.cluster_replicas,
                         partitions=self.count, lease_ttl_s=s.cluster_lease_ttl_s).open()
        self.risk = RiskLink(self.link, store, published)
        self.prices = PriceFeed(self.link, store, services, runtime, s.price_poll_s)
        self.commands = Commands(self.link, store, self._lease_view)
        self.deliveries: Deliveries | None = None
        self.leases: Leases | None = None
        self.root: Any = None
        self.edge: Any = None  # actors.edge.Edge, once the root runs
        self._hand_out: Callable[..., None] | None = None
        self._known: Callable[[], frozenset[str]] = frozenset
        self._queue: asyncio.Queue | None = None
        self._tasks: list[asyncio.Task] = []

    # -- wiring (the composition root) -------------------------------------------------------------------------
    def observe(self, store: Any) -> AckingStore:
        return AckingStore(store, lambda sig, wallet: self.deliveries.observed(sig, wallet) if self.deliveries else None)

    def start_root(self, ports: Any, published: Any, intensity: Any, backoff: Any) -> Any:
        self.root = ClusterRoot.start(ports, published, intensity, backoff, partitions=self.count, risk_link=self.risk)
        self.edge = Edge(self.root, ports, published)  # deliveries, the watchlist, price ticks: not through the root
        self.risk.root = self.commands.root = self.root
        self.prices.root = self.edge.prices
        self.risk.directory = self.commands.directory = ports.directory
        return self.root

    def start(self, hand_out: Callable[..., None], known: Callable[[], frozenset[str]]) -> None:
        """Join: take leases from now on (returns at once; partitions are adopted as their leases come)."""
        self._hand_out, self._known = hand_out, known
        self.deliveries = Deliveries(self.link, self._store, hand_out, known, self._refresh_watchlist)
        self.link.thread.run(self._start(), timeout=30)

    async def _start(self) -> None:
        await self.prices.start()
        await self.commands.start()
        self._queue = asyncio.Queue()
        self.leases = Leases(self.link.leases, self.link.js, self.link.nc, self.node, self.count, self.link.lease_ttl_s,
                             self._changed)
        await self.leases.listen()
        self._tasks = [asyncio.ensure_future(self.leases.run()), asyncio.ensure_future(self._apply()),
                       asyncio.ensure_future(self._housekeeping())]

    def publish(self, items: list[Any]) -> Any:
        """The gateway's delivery to the stream (a concurrent future; the gateway awaits it through the bridge)."""
        assert self.deliveries is not None
        return self.link.submit(self.deliveries.publish(items))

    def command(self, position_id: int, message: Any) -> Any:
        return self.link.submit(self.commands.send(position_id, message))

    def stop(self) -> None:
        try:
            self.link.thread.run(self._leave(), timeout=30)
        except Exception as exc:  # noqa: BLE001 - the leases expire by themselves
            log.warning("cluster_leave_failed", error=repr(exc))
        self.link.close()

    async def _leave(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self.leases is None:
            return
        for key in list(self.leases.held):
            await self._drop(key, release=True)
        await self.leases.leave()
        log.info("cluster_left", node=self.node)

    # -- lease changes ---------------------------------------------------------------------------------------
    def _changed(self, change: Any) -> None:
        """From the lease loop. A lost lease stops its actors now; the rest is applied in order."""
        if isinstance(change, Lost):
            p = wire.key_partition(change.key)
            if p is not None and self.deliveries is not None:
                self.deliveries.halt(p)
                self.root.tell(ReleasePartition(p))
            elif change.key == wire.RISK_KEY:
                self.risk.halt()
        assert self._queue is not None
        self._queue.put_nowait(change)

    async def _apply(self) -> None:
        assert self._queue is not None
        while True:
            change = await self._queue.get()
            if isinstance(change, Acquired):
                await self._take(change.key, change.revision)
                continue
            await self._drop(change.key, release=isinstance(change, Surrender))
            await self._event(change.key, "released" if isinstance(change, Surrender) else "lost")

    async def _drop(self, key: str, release: bool) -> None:
        """Stop what a lease ran; give the lease back when asked to (a surrender, leaving) even if stopping failed."""
        try:
            await self._give_up(key)
        except Exception as exc:  # noqa: BLE001 - one change failing must not stop the others
            log.error("lease_give_up_failed", node=self.node, lease=key, error=repr(exc))
        finally:
            if release:
                assert self.leases is not None
                await self.leases.release(key)

    async def _take(self, key: str, revision: int) -> bool:
        """Act on a lease just acquired. If that fails (the database or NATS is down), give the lease back: a lease
        held by a node that does not act on it would stop its partition (or all entries, for risk) for good."""
        p = wire.key_partition(key)
        try:
            if p is not None:
                counts = await self._adopt(p, key)
                if counts is None:
                    return False
            elif key == wire.RISK_KEY:
                await self.risk.lead(revision)
                counts = (None, None)
            else:
                await self.prices.lead()
                counts = (None, None)
        except Exception as exc:  # noqa: BLE001 - retried by whoever claims it next (maybe this node)
            log.error("lease_not_taken", node=self.node, lease=key, error=repr(exc))
            await self._drop(key, release=True)
            return False
        await self._event(key, "acquired", revision, *counts)
        return True

    async def _adopt(self, p: int, key: str) -> tuple[int, int] | None:
        """The partition's actors from the journal, then its inbox backlog, then its stream."""
        t0 = time.monotonic()
        watched = frozenset(await self._db(repo.active_wallets))
        wallets = sorted(w for w in watched if wire.partition(w, self.count) == p)
        books = await asyncio.gather(*(asyncio_await(self._store.wallet_open_positions(w)) for w in wallets))
        pids = await self._db(lambda c: sql.open_positions_of(c, self.count, {p}))
        journals = await asyncio.gather(*(asyncio_await(self._store.position_journal(pid)) for pid in pids))
        backlog = [(sig, payload, mine, age_s) for sig, payload, todo, age_s in await self._db(repo.pending_deliveries)
                   if (mine := tuple(w for w in todo if wire.partition(w, self.count) == p))]
        assert self.leases is not None and self.deliveries is not None and self._hand_out is not None
        if not self.leases.owns(key):  # lost (or surrendered) while its books were read
            return None
        adopt = AdoptPartition(p, watched, dict(zip(wallets, books)), tuple(zip(pids, journals)))
        await asyncio_ask(self.root, adopt, timeout=30)
        if not self.leases.owns(key):  # lost meanwhile: its ReleasePartition follows the adoption in the root
            return None
        if backlog:
            self._hand_out(backlog)
        self.deliveries.follow(p)
        await self.prices.follow(p)
        await self.commands.follow(p)
        log.info("partition_taken", node=self.node, partition=p, wallets=len(wallets), positions=len(pids),
                 backlog=len(backlog), took_s=round(time.monotonic() - t0, 3))
        return len(wallets), len(pids)

    async def _give_up(self, key: str) -> None:
        p = wire.key_partition(key)
        if p is not None:
            assert self.deliveries is not None
            await self.deliveries.unfollow(p)
            await self.prices.unfollow(p)
            await self.commands.unfollow(p)
            await asyncio_ask(self.root, ReleasePartition(p), timeout=10)
        elif key == wire.RISK_KEY:
            await self.risk.step_down()
        else:
            await self.prices.step_down()

    # -- upkeep ------------------------------------------------------------------------------------------------
    async def _housekeeping(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(self.link.lease_ttl_s / 4)
            try:
                await self.risk.sync_breakers()
                if time.monotonic() - last >= HOUSEKEEPING_S:
                    last = time.monotonic()
                    await self._orphans()
            except Exception as exc:  # noqa: BLE001 - the next round tries again
                log.warning("cluster_housekeeping_failed", error=repr(exc))

    async def _orphans(self) -> None:
        """Open positions of owned partitions that no actor runs (committed by a node after its partition moved)."""
        assert self.leases is not None
        owned = self.leases.partitions_held()
        if owned:
            pids = await self._db(lambda c: sql.open_positions_of(c, self.count, owned))
            self.root.tell(EnsurePositions(tuple(pids)))

    async def _refresh_watchlist(self) -> None:
        """A delivery names a wallet this node has not heard of yet: read the watchlist now, tell the edge first (the
        directory holds the wallet's deliveries until the root has started it)."""
        self.edge.tell(WatchlistChanged(frozenset(await self._db(repo.active_wallets))))

    async def _db(self, fn: Callable[[Any], Any]) -> Any:
        return await asyncio_await(self._store.submit(fn))

    async def _event(self, key: str, kind: str, revision: int | None = None, wallets: int | None = None,
                     positions: int | None = None) -> None:
        lease = f"partition:{wire.key_partition(key):03d}" if wire.key_partition(key) is not None else key
        try:
            await self._db(lambda c: sql.record_event(c, self.node, lease, kind, revision, wallets, positions))
        except Exception as exc:  # noqa: BLE001 - an audit row, not a reason to undo the change
            log.warning("cluster_event_unrecorded", lease=lease, kind=kind, error=repr(exc))

    # -- what this node is -------------------------------------------------------------------------------------
    def _lease_view(self) -> dict[str, Any]:
        leases = self.leases
        return {"nodes": leases.nodes if leases else 0, "leases": sorted(leases.held) if leases else [],
                "prices": self.prices.leading, "risk_owner": self.risk.leading}

    def status(self) -> dict[str, Any]:
        """For /health: no I/O."""
        held = self.leases.partitions_held() if self.leases else set()
        return {"node": self.node, "nats": "connected" if self.link.connected else "disconnected",
                "partitions": len(held), "of": self.count, "nodes": self.leases.nodes if self.leases else 0,
                "risk_owner": self.risk.leading, "price_poller": self.prices.leading,
                **({"deliveries": self.deliveries.stats()} if self.deliveries else {})}
