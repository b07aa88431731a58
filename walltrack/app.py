"""The composition root: settings → logging → database → store → database supervisor → trio runtime and
adapters → supervisor and actors → inbox replay → watchlist listener → price monitor → operations → gateway,
and back.

`App` only wires and starts: `App.start()` starts every part in order and `App.stop()` stops them in reverse.
The background work is in named services it starts: `Watchlist` (walltrack/watchlist.py: LISTEN/NOTIFY, the
slow poll, the database recovery hook), `Deliveries` (walltrack/deliveries.py: replay, inbox sweep), the price
monitor (intelligence/prices.py), `LiveReconcile` (walltrack/live_check.py), `Operations`
(operations/service.py) and the gateway (walltrack/serving.py). `run()` is the foreground `walltrack run`.
"""

from __future__ import annotations

import signal
import threading
import time
from typing import Any

import pykka
import structlog

from actors.edge import Edge
from actors.messages import WatchlistChanged
from actors.ports import Ports
from actors.runtime import Runtime
from actors.supervisor import Published, RootSupervisor
from operations.service import Operations
from storage import repo
from storage.db import EmbeddedPostgres, database_url, migrate
from storage.supervisor import DatabaseSupervisor
from walltrack.bridge import AsyncioThread, Service, TrioThread
from walltrack.config import copy_rules, exit_plan, live_policy, risk_config, supervision
from walltrack.deliveries import Deliveries, Pending
from walltrack.live_check import LiveReconcile
from walltrack.logs import Redactor, configure_logging
from walltrack.secrets import webhook_secret
from walltrack.services import Services
from walltrack.serving import breaker_state, gateway_service
from walltrack.settings import ConfigError, Settings
from walltrack.watchlist import Watchlist

log = structlog.get_logger("walltrack")


class App:
    def __init__(self, settings: Settings, redactor: Redactor | None = None, clock: Any = time.time,
                 embedded: EmbeddedPostgres | None = None) -> None:
        self.settings = settings
        self._embedded = embedded  # the embedded server behind DATABASE_URL (the demo's): supervised, closed by its owner
        self.clock = clock
        self.redactor = redactor or Redactor(settings.secrets())
        self.started_at = time.time()
        self.pg: EmbeddedPostgres | None = None
        self.loop: AsyncioThread | None = None
        self.store: repo.Store | None = None
        self.root: pykka.ActorRef | None = None
        self.actors: Edge | None = None  # how the world tells the actors (deliveries, commands, prices); not the root
        self.runtime: Runtime | None = None  # the worker pool every actor of this app runs on
        self.trio: TrioThread | None = None
        self.services: Services | None = None
        self.published: Published | None = None
        self.deliveries: Deliveries | None = None  # stored deliveries to the actors: replay, sweep, backlog
        self.watchlist: Watchlist | None = None  # LISTEN/NOTIFY and the slow poll behind it
        self.gateway: Service | None = None
        self.monitor: Service | None = None
        self.confirmer: Service | None = None
        self.reconcile: LiveReconcile | None = None  # the start-up reconcile of the book against the chain
        self.cluster: Any = None  # walltrack.cluster.node.Cluster, when CLUSTER_NATS_URL is set
        self.gateway_port: int | None = None
        self.database: DatabaseSupervisor | None = None
        self.database_failed: str | None = None  # why the database could not be recovered (`walltrack run` exits)
        self.ops: Operations | None = None  # metrics, alerts, the Helius webhook's sync and stall watch, the watchdog
        self.last_delivery_at = clock()  # the last webhook delivery stored, on the bot's clock (stall detection)

    @property
    def watched(self) -> frozenset[str]:
        return self.watchlist.watched if self.watchlist is not None else frozenset()

    @property
    def watched_at(self) -> dict[str, float]:
        """A wallet added while running -> when (the bot's clock) it was watched (the stall watch's backfill)."""
        return self.watchlist.watched_at if self.watchlist is not None else {}

    @property
    def trading_mode(self) -> str | None:
        """The global mode told to the root (runtime_settings, else TRADING_MODE)."""
        return self.watchlist.trading_mode if self.watchlist is not None else None

    @property
    def live_reconcile(self) -> dict[str, Any] | None:
        return self.reconcile.report if self.reconcile is not None else None

    # -- start, in order ---------------------------------------------------------------------------
    def start(self) -> "App":
        s = self.settings
        secret = webhook_secret(s)
        self.redactor.add(secret)
        url = self._open_database()
        self.trio = TrioThread(name="walltrack-trio").start()
        self.services = Services(s, self.trio, self.store, self.clock, gate=self.live_gate)
        self.published = Published()
        if s.cluster_nats_url is not None:  # distributed mode: nothing of NATS is imported or started otherwise
            from walltrack.cluster.node import Cluster

            self.cluster = Cluster(s, self.store, self.trio, self.services, self.published)
        live = self.services.live if self.cluster is None else None  # live trading runs on one process only (for now)
        if self.cluster is not None and self.services.live is not None:
            log.warning("live_not_available_in_cluster", reason="distributed mode trades paper only: live is refused")
        ports = Ports(self.cluster.observe(self.store) if self.cluster else self.store, self.loop, copy_rules(s),
                      safety=self.services.safety_port(), clock=self.clock,
                      executor=self.services.executor, exit_plan=exit_plan(s), risk=risk_config(s),
                      rules_follow_mode=s.copy_mode is None, live_available=live is not None, live=live,
                      live_policy=live_policy(s), sol_usd=lambda: self._fresh_sol_usd(),
                      max_skew_s=s.trade_max_skew_s, reservation_timeout_s=s.risk_reply_timeout_s)
        if live is not None and self.services.confirmer is not None:  # before any position resumes a swap in flight
            self._start_confirmer(live)
        intensity, backoff = supervision(s)
        self.runtime = Runtime(workers=s.actor_workers, throughput=s.actor_throughput, name="walltrack-actors")
        with self.runtime.current():
            self.root = (self.cluster.start_root(ports, self.published, intensity, backoff) if self.cluster
                         else RootSupervisor.start(ports, self.published, intensity, backoff))
        self.actors = self.cluster.edge if self.cluster else Edge(self.root, ports, self.published)
        self._start_actors()
        if live is not None and (self.trading_mode == "live" or self.store.run(lambda c: c.fetchval(
                "SELECT count(*) FROM positions WHERE mode = 'live' AND closed_at IS NULL"))):
            self.reconcile = LiveReconcile(self.trio, self.store, self.services.rpc, live.address,
                                           max(10.0, s.http_timeout_s * 4))
            self.reconcile.start()
        self._start_services(url, secret, live is not None)
        return self

    def _open_database(self) -> str:
        """The database (embedded unless DATABASE_URL), migrated, its pool, and its supervisor. Returns its URL."""
        s = self.settings
        url, self.pg = database_url(s)
        self.loop = AsyncioThread()
        self.store = repo.Store.open(self.loop, url)
        applied = self.store.run(migrate)
        log.info("database_ready", embedded=self.pg is not None, migrations_applied=applied)
        self.database = DatabaseSupervisor(
            url, self.pg or self._embedded, window_s=s.database_recovery_window_s, max_restarts=s.database_max_restarts,
            on_recovered=self._database_recovered, on_failed=self._database_lost)
        self.loop.run(self.database.start(), timeout=10)
        return url

    def _start_confirmer(self, live: Any) -> None:
        s = self.settings
        self.confirmer = self.trio.start_service(self.services.confirmer.run)
        log.info("live_execution_available", wallet=live.address, mode=s.trading_mode)
        if s.wallet_keypair_path is not None and s.wallet_keypair_path.stat().st_mode & 0o077:
            log.warning("wallet_key_file_readable_by_others", path=str(s.wallet_keypair_path),
                        action=f"chmod 600 {s.wallet_keypair_path}")

    def _start_actors(self) -> None:
        """The wallets and open positions, adopted by the root, then the stored deliveries they have not observed;
        in a cluster, what each partition whose lease this node takes holds."""
        s = self.settings
        self.deliveries = Deliveries(self.actors, self.store, self.services.prefetch_safety, self.clock, s.inbox_sweep_s)
        self.watchlist = Watchlist(self.store, self.actors, s.trading_mode, self.deliveries, self.clock,
                                   on_change=lambda: self.ops.watchlist_changed() if self.ops is not None else None)
        wallets = self.watchlist.load()  # the trading mode in force first: before any wallet starts
        if self.cluster is None:
            books = self.store.run(lambda c: repo.wallet_books(c, wallets), timeout=120)
            positions = self.store.run(repo.open_positions, timeout=120)
            self.root.proxy().adopt(books, positions).get(timeout=120)  # one message for every actor, not a round trip each
            replayed = self.deliveries.replay()
            log.info("actors_started", wallets=len(wallets), positions=len(positions), inbox_replayed=replayed)
        else:  # a node adopts the wallets, positions and stored deliveries of each partition whose lease it takes
            self.actors.tell(WatchlistChanged(self.watched))
            self.cluster.start(self.hand_out, lambda: self.watched)
            log.info("cluster_joined", node=s.cluster_node_id, watched=len(wallets))

    def _start_services(self, url: str, secret: str, live: bool) -> None:
        """The named services, in order: the watchlist listener (and its slow poll: the inbox sweep), the price
        monitor, operations, and last the gateway."""
        s = self.settings
        self.loop.run(self.watchlist.start(url), timeout=30)
        if self.cluster is None:  # in a cluster the node holding the `prices` lease polls for every node
            self.monitor = self.trio.start_service(self.services.price_monitor(
                self.actors.prices, self.published, sol_always=lambda: live and self.trading_mode == "live"))
        self.ops = Operations(self)
        self.ops.start()
        try:
            self.gateway = self.trio.start_service(gateway_service(self, secret))
        except BaseExceptionGroup as group:  # hypercorn's nursery wraps the bind error
            err: BaseException | None = group.subgroup(lambda e: isinstance(e, OSError))
            if err is None:
                raise
            while isinstance(err, BaseExceptionGroup):
                err = err.exceptions[0]
            raise ConfigError(f"the webhook gateway cannot listen on {s.gateway_host}:{s.gateway_port} "
                              f"({err}); set GATEWAY_HOST/GATEWAY_PORT or stop what holds it") from None
        log.info("gateway_listening", host=s.gateway_host, port=self.gateway_port)
        self.ops.ready()

    # -- live execution ------------------------------------------------------------------------------
    def live_gate(self) -> str | None:
        """Why a new live buy may not be sent now (the kill switch: the global mode is not live), or None."""
        return None if self.trading_mode == "live" else f"mode:{self.trading_mode}"

    def _fresh_sol_usd(self) -> Any:
        """The SOL price the price monitor last saw, if not older than PRICE_MAX_AGE_S (live entries are sized with
        it; None: no entry of a USD-quoted leader, never a guess)."""
        seen = self.published.sol_usd
        return seen[0] if seen is not None and self.clock() - seen[1] <= self.settings.price_max_age_s else None

    # -- the database supervisor's hooks ----------------------------------------------------------------
    async def _database_recovered(self, down_s: float) -> None:
        if self.watchlist is not None:
            await self.watchlist.recovered(down_s)

    def _database_lost(self, reason: str) -> None:
        self.database_failed = reason

    def hand_out(self, pending: Pending) -> None:
        """Stored deliveries to the actors (walltrack/deliveries.py): a backfill's, a cluster partition's."""
        assert self.deliveries is not None
        self.deliveries.hand_out(pending)

    def _breaker_state(self) -> dict[str, Any]:
        return breaker_state(self.published, self.clock())

    # -- stop, in reverse --------------------------------------------------------------------------
    def stop(self) -> None:
        if self.loop is not None and self.database is not None:  # first: nothing restarts the database while it stops
            self.loop.run(self.database.stop(wait_s=5), timeout=8)
        if self.ops is not None:
            self.ops.stop()
        for service in (self.gateway, self.monitor):
            if service is not None:
                service.stop()
        if self.cluster is not None:  # hand the partitions over at once (their leases deleted, not left to expire)
            self.cluster.stop()
        if self.loop is not None and self.watchlist is not None:
            self.loop.run(self.watchlist.stop(), timeout=10)
        if self.root is not None:
            try:
                self.root.stop(block=True, timeout=15)
            except (pykka.ActorDeadError, pykka.Timeout):
                pass
        if self.runtime is not None:
            self.runtime.shutdown(timeout=15)  # the root told its children to stop: wait for them, then the workers
        for stop in (self.confirmer and self.confirmer.stop, self.services and self.services.close,
                     self.trio and self.trio.stop, self.store and self.store.close, self.loop and self.loop.stop,
                     self.pg and self.pg.close):
            if stop:
                stop()
        log.info("stopped")


def run(settings: Settings) -> int:
    """`walltrack run`: everything in the foreground until Ctrl-C or SIGTERM."""
    redactor = Redactor(settings.secrets())
    configure_logging(redactor, settings.log_level, settings.log_dir, settings.log_max_bytes, settings.log_backups)
    from walltrack.panel import check_panel_access, serve_panel

    check_panel_access(settings)  # refused before anything starts
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    app = App(settings, redactor)
    failed: list[str] = []

    def should_stop() -> str | None:  # polled by the panel's loop
        for name, service in (("gateway", app.gateway), ("price_monitor", app.monitor)):
            if service is not None and not service.running:
                log.error("service_failed", service=name, error=repr(service.error))
                failed.append(name)
                return f"{name} failed"
        if app.database_failed is not None:  # logged as database_recovery_failed
            failed.append("database")
            return "database unreachable"
        return "signal" if stop.is_set() else None

    try:
        app.start()
        if not stop.is_set():
            serve_panel(app, should_stop)  # the main thread: until Ctrl-C, SIGTERM or a failed service
    finally:
        app.stop()
    return 1 if failed else 0
