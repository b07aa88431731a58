"""The composition root: settings → logging → database → store → trio runtime and adapters →
supervisor and actors → inbox replay → watchlist listener → price monitor → gateway, and back.

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

from actors.messages import BreakerReset, Deliver, GetStats, TradingModeChanged, WalletSettingsChanged, WatchlistChanged
from actors.ports import Ports
from actors.risk import SUPERVISOR_BREAKER
from actors.supervisor import Published, RootSupervisor
from gateway.app import Delivery, GatewayDeps, create_app
from walltrack import store as repo
from walltrack.bridge import AsyncioThread, Service, TrioThread, ask, trio_await
from walltrack.executor import exit_plan
from walltrack.services import Services
from walltrack.db import EmbeddedPostgres, database_url, migrate
from walltrack.logs import Redactor, configure_logging
from walltrack.settings import ConfigError, Settings, copy_rules, risk_config, supervision, webhook_secret

log = structlog.get_logger("walltrack")

RECONCILE_S = 15.0  # the slow poll behind LISTEN/NOTIFY: watchlist, trading mode, the inbox sweep


class App:
    def __init__(self, settings: Settings, redactor: Redactor | None = None, clock: Any = time.time) -> None:
        self.settings = settings
        self.clock = clock
        self.redactor = redactor or Redactor(settings.secrets())
        self.started_at = time.time()
        self.pg: EmbeddedPostgres | None = None
        self.loop: AsyncioThread | None = None
        self.store: repo.Store | None = None
        self.root: pykka.ActorRef | None = None
        self.trio: TrioThread | None = None
        self.services: Services | None = None
        self.gateway: Service | None = None
        self.monitor: Service | None = None
        self.cluster: Any = None  # walltrack.cluster.node.Cluster, when CLUSTER_NATS_URL is set
        self.watched: frozenset[str] = frozenset()
        self.trading_mode: str | None = None  # the global mode told to the root (runtime_settings, else TRADING_MODE)
        self._listener: asyncpg.Connection | None = None
        self._reconcile: asyncio.Task | None = None
        self._url = ""
        self.gateway_port: int | None = None

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

        self.trio = TrioThread(name="walltrack-trio").start()
        self.services = Services(s, self.trio, self.store, self.clock)
        self.published = Published()
        if s.cluster_nats_url is not None:  # distributed mode: nothing of NATS is imported or started otherwise
            from walltrack.cluster.node import Cluster

            self.cluster = Cluster(s, self.store, self.trio, self.services, self.published)
        ports = Ports(self.cluster.observe(self.store) if self.cluster else self.store, self.loop, copy_rules(s),
                      safety=self.services.safety_port(), clock=self.clock,
                      executor=self.services.executor, exit_plan=exit_plan(s), risk=risk_config(s),
                      rules_follow_mode=s.copy_mode is None)
        intensity, backoff = supervision(s)
        self.root = (self.cluster.start_root(ports, self.published, intensity, backoff) if self.cluster
                     else RootSupervisor.start(ports, self.published, intensity, backoff))
        self._apply_trading_mode(self.store.run(repo.trading_mode))  # before any wallet starts
        wallets = self.store.run(repo.active_wallets)
        self.watched = frozenset(wallets)
        if self.cluster is None:
            root = self.root.proxy()
            for w in wallets:
                root.adopt_wallet(w, self.store.wallet_open_positions(w).result(30)).get()
            positions = self.store.run(repo.open_positions)
            for pid, journal in positions:
                root.adopt_position(pid, journal).get()
            pending = self.store.run(repo.pending_deliveries)
            self._hand_out(pending)
            log.info("actors_started", wallets=len(wallets), positions=len(positions), inbox_replayed=len(pending))
        else:  # a node adopts the wallets, positions and stored deliveries of each partition whose lease it takes
            self.root.tell(WatchlistChanged(self.watched))
            self.cluster.start(self._hand_out, lambda: self.watched)
            log.info("cluster_joined", node=s.cluster_node_id, watched=len(wallets))

        self.loop.run(self._start_watchlist_listener(url), timeout=30)
        if self.cluster is None:  # in a cluster the node holding the `prices` lease polls for every node
            self.monitor = self.trio.start_service(self.services.price_monitor(self.root, self.published))
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
        return self

    # -- stop, in reverse --------------------------------------------------------------------------
    def stop(self) -> None:
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
        self._listener = await asyncpg.connect(self._url)
        await self._listener.add_listener(repo.WATCHLIST_CHANNEL, lambda *_: asyncio.ensure_future(self._reload_watchlist()))
        # copy-rule overrides and operator breaker resets reach the running actors the same way
        await self._listener.add_listener(
            repo.WALLET_SETTINGS_CHANNEL, lambda _c, _p, _ch, address: asyncio.ensure_future(self._reload_wallet_settings(address)))
        await self._listener.add_listener(
            repo.BREAKERS_CHANNEL, lambda _c, _p, _ch, name: self.root.tell(BreakerReset(name)) if self.root else None)
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
            self.root.tell(TradingModeChanged(mode))
            log.info("trading_mode_in_force", mode=mode, source="operator" if stored else "TRADING_MODE",
                     by=stored["updated_by"] if stored else None)

    async def _reload_wallet_settings(self, address: str) -> None:
        assert self.store is not None and self.root is not None
        async with self.store.pool.acquire() as conn:
            settings = await repo.wallet_settings(conn, address)
        if settings is not None:
            self.root.tell(WalletSettingsChanged(address, settings))

    async def _stop_watchlist_listener(self) -> None:
        if self._reconcile is not None:
            self._reconcile.cancel()
        if self._listener is not None:
            await self._listener.close(timeout=5)

    async def _reconcile_loop(self) -> None:
        while True:
            await asyncio.sleep(min(RECONCILE_S, self.settings.inbox_sweep_s))
            try:
                if self._listener is None or self._listener.is_closed():  # lost with a database outage
                    await self._listen()
                await self._reload_watchlist()
                await self._reload_trading_mode()  # a NOTIFY lost with the connection
                await self._sweep_inbox()
            except Exception as exc:  # noqa: BLE001 - the next round retries
                log.warning("watchlist_reload_failed", error=repr(exc))

    def _hand_out(self, pending: list[tuple[str, str, tuple[str, ...]]]) -> None:
        """Stored deliveries to the actors, in order, with the wallets still to observe each."""
        assert self.root is not None and self.services is not None
        for signature, payload, todo in pending:
            self.root.tell(Deliver(signature, payload, todo))
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
                        signatures=[sig for sig, _, _ in stuck[:5]])

    async def _reload_watchlist(self) -> None:
        assert self.store is not None and self.root is not None
        async with self.store.pool.acquire() as conn:
            wallets = frozenset(await repo.active_wallets(conn))
        if wallets != self.watched:
            self.watched = wallets
            self.root.tell(WatchlistChanged(wallets))

    # -- the gateway ---------------------------------------------------------------------------------
    def _serve_gateway(self, secret: str):  # noqa: ANN202
        assert self.store is not None and self.root is not None
        store = self.store

        async def store_deliveries(items: list[Delivery]) -> set[str]:
            return await trio_await(store.store_deliveries(items))

        def dispatch(signature: str, payload: str, wallets: tuple[str, ...]) -> None:
            self._hand_out([(signature, payload, wallets)])

        cluster = self.cluster

        async def publish(items: list[Delivery]) -> None:  # distributed mode: to the stream, by wallet partition
            await trio_await(cluster.publish(items))

        deps = GatewayDeps(
            secret=secret,
            max_bytes=self.settings.webhook_max_bytes,
            watched=lambda: self.watched,
            store_deliveries=store_deliveries,
            dispatch=dispatch,
            health=self._health,
            publish=publish if cluster is not None else None,
        )
        app = create_app(deps)
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
            )
        except Exception:  # noqa: BLE001
            body.update(status="unavailable", database="unreachable", last_webhook_at=None, last_signal_at=None)
        body["circuit_breaker"] = self._breaker_state()
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
        return "signal" if stop.is_set() else None

    try:
        app.start()
        if not stop.is_set():
            serve_panel(app, should_stop)  # the main thread: until Ctrl-C, SIGTERM or a failed service
    finally:
        app.stop()
    return 1 if failed else 0
