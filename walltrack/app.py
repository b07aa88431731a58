"""The composition root: settings → logging → database → store → database supervisor → trio runtime and
adapters → supervisor and actors → inbox replay → watchlist listener → price monitor → gateway, and back.

`App.start()` starts every part in order and `App.stop()` stops them in reverse; `run()` is the
foreground `walltrack run`.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from functools import partial
import threading
import time
from datetime import datetime, timezone
from typing import Any

import asyncpg
import pykka
import structlog
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve

from actors.edge import Edge
from actors.messages import BreakerReset, Deliver, GetStats, TradingModeChanged, WalletSettingsChanged, WatchlistChanged
from actors.ports import Ports
from actors.risk import SUPERVISOR_BREAKER
from actors.runtime import Runtime
from actors.supervisor import Published, RootSupervisor
from gateway.app import GatewayDeps, Items, Trades, Unstorable, create_app
from gateway.fastpath import webhook_fast_path
from walltrack import store as repo
from walltrack.bridge import AsyncioThread, Service, TrioThread, ask, trio_await
from walltrack.executor import exit_plan
from walltrack.live import live_policy
from walltrack.services import Services
from walltrack.db import EmbeddedPostgres, database_url, migrate
from walltrack.dbsupervisor import CONNECTED, DatabaseSupervisor
from walltrack.logs import Redactor, configure_logging
from walltrack.operations import Operations
from walltrack.settings import ConfigError, Settings, copy_rules, risk_config, supervision, webhook_secret

log = structlog.get_logger("walltrack")

RECONCILE_S = 15.0  # the slow poll behind LISTEN/NOTIFY: watchlist, trading mode, the inbox sweep


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
        self.gateway: Service | None = None
        self.monitor: Service | None = None
        self.confirmer: Service | None = None
        self.live_reconcile: dict[str, Any] | None = None  # the start-up reconcile of the book against the chain
        self.cluster: Any = None  # walltrack.cluster.node.Cluster, when CLUSTER_NATS_URL is set
        self.watched: frozenset[str] = frozenset()
        self.watched_at: dict[str, float] = {}  # a wallet added while running -> when (the bot's clock) it was watched
        self.trading_mode: str | None = None  # the global mode told to the root (runtime_settings, else TRADING_MODE)
        self._listener: asyncpg.Connection | None = None
        self._reconcile: asyncio.Task | None = None
        self._listening = asyncio.Lock()
        self._url = ""
        self.gateway_port: int | None = None
        self.database: DatabaseSupervisor | None = None
        self.database_failed: str | None = None  # why the database could not be recovered (`walltrack run` exits)
        self.ops: Operations | None = None  # metrics, alerts, the Helius webhook's sync and stall watch, the watchdog
        self.last_delivery_at = clock()  # the last webhook delivery stored, on the bot's clock (stall detection)

    # -- start, in order ---------------------------------------------------------------------------
    def start(self) -> "App":
        s = self.settings
        secret = webhook_secret(s)
        self.redactor.add(secret)
        url, self.pg = database_url(s)
        self.loop = AsyncioThread()
        self.store = repo.Store.open(self.loop, url)
        applied = self.store.run(migrate)
        log.info("database_ready", embedded=self.pg is not None, migrations_applied=applied)
        self.database = DatabaseSupervisor(
            url, self.pg or self._embedded, window_s=s.database_recovery_window_s, max_restarts=s.database_max_restarts,
            on_recovered=self._database_recovered, on_failed=self._database_lost)
        self.loop.run(self.database.start(), timeout=10)

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
            self.confirmer = self.trio.start_service(self.services.confirmer.run)
            log.info("live_execution_available", wallet=live.address, mode=s.trading_mode)
            if s.wallet_keypair_path is not None and s.wallet_keypair_path.stat().st_mode & 0o077:
                log.warning("wallet_key_file_readable_by_others", path=str(s.wallet_keypair_path),
                            action=f"chmod 600 {s.wallet_keypair_path}")
        intensity, backoff = supervision(s)
        self.runtime = Runtime(workers=s.actor_workers, throughput=s.actor_throughput, name="walltrack-actors")
        with self.runtime.current():
            self.root = (self.cluster.start_root(ports, self.published, intensity, backoff) if self.cluster
                         else RootSupervisor.start(ports, self.published, intensity, backoff))
        self.actors = self.cluster.edge if self.cluster else Edge(self.root, ports, self.published)
        self._apply_trading_mode(self.store.run(repo.trading_mode))  # before any wallet starts
        wallets = self.store.run(repo.active_wallets)
        self.watched = frozenset(wallets)
        if self.cluster is None:
            books = self.store.run(lambda c: repo.wallet_books(c, wallets), timeout=120)
            positions = self.store.run(repo.open_positions, timeout=120)
            self.root.proxy().adopt(books, positions).get(timeout=120)  # one message for every actor, not a round trip each
            pending = self.store.run(repo.pending_deliveries)
            self._hand_out(pending)
            log.info("actors_started", wallets=len(wallets), positions=len(positions), inbox_replayed=len(pending))
        else:  # a node adopts the wallets, positions and stored deliveries of each partition whose lease it takes
            self.actors.tell(WatchlistChanged(self.watched))
            self.cluster.start(self._hand_out, lambda: self.watched)
            log.info("cluster_joined", node=s.cluster_node_id, watched=len(wallets))
        if live is not None and (self.trading_mode == "live" or self.store.run(lambda c: c.fetchval(
                "SELECT count(*) FROM positions WHERE mode = 'live' AND closed_at IS NULL"))):
            self._reconcile_live()

        self.loop.run(self._start_watchlist_listener(url), timeout=30)
        if self.cluster is None:  # in a cluster the node holding the `prices` lease polls for every node
            self.monitor = self.trio.start_service(self.services.price_monitor(
                self.actors.prices, self.published, sol_always=lambda: live is not None and self.trading_mode == "live"))
        self.ops = Operations(self)
        self.ops.start()
        try:
            self.gateway = self.trio.start_service(self._serve_gateway(secret))
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
        return self

    # -- live execution ------------------------------------------------------------------------------
    def live_gate(self) -> str | None:
        """Why a new live buy may not be sent now (the kill switch: the global mode is not live), or None."""
        return None if self.trading_mode == "live" else f"mode:{self.trading_mode}"

    def _fresh_sol_usd(self) -> Any:
        """The SOL price the price monitor last saw, if not older than PRICE_MAX_AGE_S (live entries are sized with
        it; None: no entry of a USD-quoted leader, never a guess)."""
        seen = self.published.sol_usd
        return seen[0] if seen is not None and self.clock() - seen[1] <= self.settings.price_max_age_s else None

    def _reconcile_live(self) -> None:
        """The book against the chain, once at start, in the background: shown (log, /health, the dashboard), never
        fixed silently."""
        from walltrack import reconcile

        assert self.services is not None and self.services.live is not None and self.store is not None
        wallet, rpc = self.services.live.address, self.services.rpc

        async def run() -> dict[str, Any]:
            with trio.fail_after(max(10.0, self.settings.http_timeout_s * 4)):
                chain = await reconcile.chain_holdings(rpc, wallet)
            held, in_flight = await trio_await(self.store.submit(reconcile.book))
            findings = reconcile.compare(held, chain, in_flight)
            await trio_await(self.store.submit(lambda c: reconcile.save(c, wallet, findings)))
            reconcile.log_findings(wallet, findings)
            return {"wallet": wallet, "at": time.time(), "findings": [f.as_json() for f in findings]}

        def done(f: Any) -> None:
            exc = f.exception()
            if exc is None:
                self.live_reconcile = f.result()
                return  # the RPC may be down: say so, keep running (every buy and sale checks the chain itself)
            log.error("live_reconcile_failed", wallet=wallet, error=f"{type(exc).__name__}: {exc}")
            self.live_reconcile = {"wallet": wallet, "at": time.time(), "error": f"{type(exc).__name__}: {exc}"}

        self.live_reconcile = {"wallet": wallet, "at": time.time(), "running": True}
        self.trio.submit(run).add_done_callback(done)

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
        if self.loop is not None and self.root is not None:
            self.loop.run(self._stop_watchlist_listener(), timeout=10)
        if self.root is not None:
            try:
                self.root.stop(block=True, timeout=15)
            except (pykka.ActorDeadError, pykka.Timeout):
                pass
        if self.runtime is not None:
            self.runtime.shutdown(timeout=15)  # the root told its children to stop: wait for them, then the workers
        if self.confirmer is not None:
            self.confirmer.stop()
        if self.services is not None:
            self.services.close()
        if self.trio is not None:
            self.trio.stop()
        if self.store is not None:
            self.store.close()
        if self.loop is not None:
            self.loop.stop()
        if self.pg is not None:
            self.pg.close()
        log.info("stopped")

    # -- the watchlist: the CLI and the panel change the table; LISTEN/NOTIFY and a slow poll bring it here
    async def _start_watchlist_listener(self, url: str) -> None:
        self._url = url
        await self._listen()
        self._reconcile = asyncio.ensure_future(self._reconcile_loop())

    async def _listen(self) -> None:
        async with self._listening:  # the reconcile loop and a database recovery may both find it closed
            if self._listener is None or self._listener.is_closed():
                await self._connect_listener()

    async def _connect_listener(self) -> None:
        self._listener = await asyncpg.connect(self._url)
        await self._listener.add_listener(repo.WATCHLIST_CHANNEL, lambda *_: asyncio.ensure_future(self._reload_watchlist()))
        # copy-rule overrides and operator breaker resets reach the running actors the same way
        await self._listener.add_listener(
            repo.WALLET_SETTINGS_CHANNEL, lambda _c, _p, _ch, address: asyncio.ensure_future(self._reload_wallet_settings(address)))
        await self._listener.add_listener(
            repo.BREAKERS_CHANNEL, lambda _c, _p, _ch, name: self.actors.tell(BreakerReset(name)) if self.actors else None)
        await self._listener.add_listener(  # the global trading mode (panel, `walltrack mode set`)
            repo.TRADING_MODE_CHANNEL, lambda *_: asyncio.ensure_future(self._reload_trading_mode()))

    async def _reload_trading_mode(self) -> None:
        assert self.store is not None
        async with self.store.pool.acquire() as conn:
            self._apply_trading_mode(await repo.trading_mode(conn))

    def _apply_trading_mode(self, stored: dict[str, Any] | None) -> None:
        """The operator's stored mode, else TRADING_MODE: told to the root (and so to every wallet) when it changes."""
        mode = stored["mode"] if stored else self.settings.trading_mode
        if mode != self.trading_mode and self.root is not None:
            self.trading_mode = mode
            self.actors.tell(TradingModeChanged(mode))
            log.info("trading_mode_in_force", mode=mode, source="operator" if stored else "TRADING_MODE",
                     by=stored["updated_by"] if stored else None)

    async def _reload_wallet_settings(self, address: str) -> None:
        assert self.store is not None and self.root is not None
        async with self.store.pool.acquire() as conn:
            settings = await repo.wallet_settings(conn, address)
        if settings is not None:
            self.actors.tell(WalletSettingsChanged(address, settings))

    async def _stop_watchlist_listener(self) -> None:
        if self._reconcile is not None:
            self._reconcile.cancel()
        if self._listener is not None:
            self._listener.terminate()  # nothing to flush on a LISTEN connection, and the server may be gone

    async def _reconcile_loop(self) -> None:
        while True:
            await asyncio.sleep(min(RECONCILE_S, self.settings.inbox_sweep_s))
            try:
                await self._listen()  # again, when it was lost with a database outage
                await self._reload_watchlist()
                await self._reload_trading_mode()  # a NOTIFY lost with the connection
                await self._sweep_inbox()
            except Exception as exc:  # noqa: BLE001 - the next round retries
                log.warning("watchlist_reload_failed", error=repr(exc))

    async def _database_recovered(self, down_s: float) -> None:
        """The database answers again: listen again, hear what a lost NOTIFY would have said, and hand out at once
        what the outage left in the inbox (received before it began and still unprocessed)."""
        if self.root is None or self.store is None:
            return
        await self._listen()
        await self._reload_watchlist()
        await self._reload_trading_mode()
        async with self.store.pool.acquire() as conn:
            stuck = await repo.pending_deliveries(conn, down_s)
        self._hand_out(stuck)
        log.info("database_resumed", down_s=round(down_s, 2), inbox_handed_out=len(stuck))

    def _database_lost(self, reason: str) -> None:
        self.database_failed = reason

    def _hand_out(self, pending: list[tuple[str, str, tuple[str, ...], float]]) -> None:
        """Stored deliveries to the actors, in order, with the wallets still to observe each and their age (s)."""
        assert self.root is not None and self.services is not None
        now = self.clock()
        for signature, payload, todo, age_s in pending:
            self.actors.tell(Deliver(signature, payload, todo, received_at=now - age_s))
            self.services.prefetch_safety(payload, todo)  # screen the backlog concurrently, decide in order

    async def _sweep_inbox(self) -> None:
        """Hand the actors again what was stored but is still unprocessed long after: a delivery whose commit
        outlived its connection (acknowledged to Helius later as a duplicate, so never dispatched), or one lost
        with a crashed actor's mailbox. The store records each (signature, wallet) once, so a delivery that
        was only slow is decided once all the same."""
        assert self.store is not None and self.root is not None
        async with self.store.pool.acquire() as conn:
            stuck = await repo.pending_deliveries(conn, self.settings.inbox_sweep_s)
        self._hand_out(stuck)
        if stuck:
            log.warning("inbox_swept", deliveries=len(stuck), older_than_s=self.settings.inbox_sweep_s,
                        signatures=[d[0] for d in stuck[:5]])

    async def _reload_watchlist(self) -> None:
        assert self.store is not None and self.root is not None
        async with self.store.pool.acquire() as conn:
            wallets = frozenset(await repo.active_wallets(conn))
        if wallets != self.watched:
            now = self.clock()
            self.watched_at.update({w: now for w in wallets - self.watched})  # deliveries for it are kept from now on
            self.watched = wallets
            self.actors.tell(WatchlistChanged(wallets))
            if self.ops is not None:
                self.ops.watchlist_changed()  # the Helius webhook follows (debounced)

    # -- the gateway ---------------------------------------------------------------------------------
    def _serve_gateway(self, secret: str):  # noqa: ANN202
        assert self.store is not None and self.root is not None
        store = self.store

        actors, services = self.actors, self.services
        assert services is not None

        async def store_body(body: str, items: Items) -> set[str]:
            try:
                new = await trio_await(store.store_body(body, items))
            except asyncpg.DataError as exc:  # the content, not the database: never worth a retry
                raise Unstorable(str(exc)) from None
            self.last_delivery_at = self.clock()
            if self.ops is not None:
                self.ops.metrics.note_received(list(new))
            return new

        def dispatch(signature: str, wallets: tuple[str, ...], trades: Trades) -> None:
            # classified once, by the gateway (its timestamp judged there against the same clock)
            actors.tell(Deliver(signature, "", wallets, received_at=self.clock(), trades=trades))

        cluster = self.cluster

        async def publish(items: list[Delivery]) -> None:  # distributed mode: to the stream, by wallet partition
            await trio_await(cluster.publish(items))

        deps = GatewayDeps(
            secret=secret,
            max_bytes=self.settings.webhook_max_bytes,
            watched=lambda: self.watched,
            store_body=store_body,
            dispatch=dispatch,
            health=self._health,
            screen=services.screen,
            clock=self.clock,
            max_skew_s=self.settings.trade_max_skew_s,
            metrics=self.ops.metrics.scrape if self.ops is not None else None,
            metrics_token=self.settings.metrics_token.get_secret_value() if self.settings.metrics_token else None,
            publish=publish if cluster is not None else None,
        )
        app = webhook_fast_path(create_app(deps), deps)
        config = HypercornConfig()
        config.bind = [f"{self.settings.gateway_host}:{self.settings.gateway_port}"]
        config.accesslog = None
        config.errorlog = logging.getLogger("hypercorn.error")

        async def main(task_status=trio.TASK_STATUS_IGNORED) -> None:  # noqa: ANN001
            async with trio.open_nursery() as nursery:
                bound = await nursery.start(partial(serve, app, config))
                self.gateway_port = int(str(bound[0]).rsplit(":", 1)[1]) if bound else self.settings.gateway_port
                task_status.started(bound)

        return main

    async def _health(self) -> tuple[dict[str, Any], int]:
        assert self.store is not None and self.root is not None
        body: dict[str, Any] = {"status": "ok", "database": "connected", "uptime_s": round(time.time() - self.started_at, 1),
                                "trading_mode": self.trading_mode}
        try:
            with trio.fail_after(2):
                db = await trio_await(self.store.health())
            body.update(
                last_webhook_at=_iso(db["last_webhook"]),
                last_signal_at=_iso(db["last_signal"]),
                inbox_pending=db["inbox_pending"],
                exit_failed=db["exit_failed"],  # positions whose exit could not land: an alert (the dashboard too)
            )
        except Exception:  # noqa: BLE001
            state = self.database.state if self.database is not None and self.database.state != CONNECTED else "unreachable"
            body.update(status="unavailable", database=state, last_webhook_at=None, last_signal_at=None)
        if self.database is not None:
            body["database_restarts"] = self.database.restarts
        body["circuit_breaker"] = self._breaker_state()
        if self.services is not None and self.services.live is not None and self.cluster is None:
            body["live"] = {"wallet": self.services.live.address, "reconcile": self.live_reconcile,
                            "exit_failed": body.get("exit_failed")}
            if body.get("exit_failed") or (self.live_reconcile or {}).get("findings") or (self.live_reconcile or {}).get("error"):
                body["status"] = "degraded" if body["status"] == "ok" else body["status"]
        if self.cluster is not None:
            body["cluster"] = self.cluster.status()
        if self.services is not None:
            body["providers"] = self.services.provider_states()
        try:
            body["actors"] = await ask(self.root, GetStats(), timeout=2)
        except Exception:  # noqa: BLE001
            body["actors"] = None
            body["status"] = "degraded" if body["status"] == "ok" else body["status"]
        if body["circuit_breaker"]["state"] != "closed" and body["status"] == "ok":
            body["status"] = "degraded"
        return body, 200 if body["database"] == "connected" else 503

    def _breaker_state(self) -> dict[str, Any]:
        """Open while a global breaker is tripped (no new entries at all), with its reason — the supervisor's
        escalation first; `breakers` lists every tripped one, per-token and per-wallet included."""
        now = self.clock()
        published = getattr(self, "published", None)
        tripped = [b for b in (published.breakers if published is not None else ())
                   if b["until"] is None or b["until"] > now]
        stops = sorted((b for b in tripped if b["scope"] == "global"), key=lambda b: b["name"] != SUPERVISOR_BREAKER)
        first = stops[0] if stops else None
        return {"state": "open" if first else "closed", "reason": first["reason"] if first else None,
                "tripped_at": _iso(datetime.fromtimestamp(first["tripped_at"], timezone.utc)) if first else None,
                "breakers": tripped}


def _iso(v: datetime | None) -> str | None:
    return v.astimezone(timezone.utc).isoformat() if v is not None else None


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
