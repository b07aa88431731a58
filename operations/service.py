"""What keeps a long-running bot observable and in step with the outside world, started by the composition root
(`App.start()`, before the gateway) and stopped first by `App.stop()`:

- `metrics` (operations.metrics): the Prometheus registry behind `GET /metrics`;
- `alerts` (operations.alerts): Telegram and a JSON webhook, fed by the log tap;
- `sync` (operations.webhook_watch.HeliusSync): the Helius webhook follows the watchlist (HELIUS_API_KEY and
  HELIUS_WEBHOOK_URL set);
- `stall` (operations.webhook_watch.StallWatch): no delivery while the chain shows trades → alert and backfill;
- `watchdog` (operations.watchdog): READY=1 once the gateway listens, WATCHDOG=1 while healthy (under systemd);
- the settings in force, recorded in the config history when they changed since the last start.

Each service runs on the trio runtime (`TrioThread.start_service`); none is touched by an actor.
"""

from __future__ import annotations

from typing import Any

import structlog

from actors.messages import GetStats
from actors.trades import InvalidTransaction, check_shape
from adapters.helius import HeliusApi
from adapters.http import Policy, Provider, ResilientClient
from adapters.solana_rpc import SolanaRpc
from gateway.app import Delivery, to_deliveries
from operations.alerts import Alerts
from operations.metrics import Metrics
from operations.watchdog import Watchdog
from operations.webhook_watch import HeliusSync, StallWatch
from storage.config_history import public_settings, record_settings
from walltrack.bridge import Service, ask, trio_await
from walltrack.logs import add_tap, remove_tap
from walltrack.secrets import webhook_secret

log = structlog.get_logger("operations")


class Operations:
    def __init__(self, app: Any) -> None:
        s = self.settings = app.settings
        self.app = app
        self.metrics = Metrics(app)
        self.alerts = Alerts(s, app.redactor, on_result=lambda sink, result: self.metrics.alerts.labels(sink, result).inc())
        limits = {"attempt_timeout_s": s.http_timeout_s, "cooldown_s": s.provider_cooldown_s}
        self.helius = (HeliusApi(s.helius_api_url, s.helius_api_key.get_secret_value(), **limits)
                       if s.helius_api_key is not None else None)
        self.sync = None
        if self.helius is not None and s.helius_webhook_url:
            self.sync = HeliusSync(self.helius, s.helius_webhook_url, webhook_secret(s), lambda: app.watched,
                                   s.helius_sync_debounce_s, lambda r: self.metrics.helius_syncs.labels(r).inc())
        self.stall = None
        self._watch_rpc: ResilientClient | None = None
        if s.webhook_stall_minutes > 0:
            # its own small budget: reading the wallets' history never starves token safety's RPC calls
            self._watch_rpc = ResilientClient(Provider("rpc_watch", Policy(rate_per_s=2, **limits)), s.solana_rpc_url)
            self.stall = StallWatch(SolanaRpc(self._watch_rpc), self.helius, watched=lambda: app.watched,
                                    watched_at=app.watched_at.get,
                                    last_delivery=lambda: app.last_delivery_at, clock=app.clock,
                                    in_inbox=self.in_inbox, ingest=self.ingest,
                                    stall_after_s=s.webhook_stall_minutes * 60, poll_s=s.webhook_stall_poll_s,
                                    lookback_s=s.webhook_backfill_lookback_minutes * 60)
        self.watchdog = Watchdog(self.alive)
        self._services: list[Service] = []

    def start(self) -> None:
        app = self.app
        if app.store.run(lambda c: record_settings(c, public_settings(self.settings), "start")):
            log.info("settings_recorded", by="start")
        self.metrics.start()
        add_tap(self.alerts.on_log)
        for service in (self.alerts.run, self.sync.run if self.sync else None, self.stall.run if self.stall else None):
            if service is not None:
                self._services.append(app.trio.start_service(service))

    def ready(self) -> None:
        """The gateway listens: tell systemd (and start the watchdog's pings)."""
        self._services.append(self.app.trio.start_service(self.watchdog.run))

    def stop(self) -> None:
        self.watchdog.stopping()
        remove_tap(self.alerts.on_log)
        self.metrics.stop()
        for service in reversed(self._services):
            service.stop()
        self._services.clear()
        for client in (self.helius, self._watch_rpc):
            if client is not None and self.app.trio is not None:
                try:
                    self.app.trio.submit(client.aclose).result(5)
                except Exception as exc:  # noqa: BLE001 - closing is best effort at shutdown
                    log.warning("client_close_failed", error=repr(exc))

    # -- hooks the composition root calls ----------------------------------------------------------------------
    def watchlist_changed(self) -> None:
        if self.sync is not None:
            self.sync.request()

    def provider_states(self) -> dict[str, Any]:
        """Every outside service's state (on the trio runtime: providers read trio's clock)."""
        out = dict(self.app.services.provider_states()) if self.app.services is not None else {}
        extra = [*self.alerts.providers(), *(c.provider for c in (self.helius, self._watch_rpc) if c is not None)]
        out.update({p.name: p.state().as_dict() for p in extra})
        return out

    async def alive(self) -> str | None:
        """None while the bot works (the watchdog pings): the root answers and the gateway serves."""
        gateway = self.app.gateway
        if gateway is not None and not gateway.running:
            return "the gateway stopped"
        try:
            await ask(self.app.root, GetStats(), timeout=2)
        except Exception as exc:  # noqa: BLE001
            return f"the root supervisor does not answer ({type(exc).__name__})"
        return None

    # -- the backfill's way in: the gateway's path -----------------------------------------------------------
    async def in_inbox(self, signatures: list[str]) -> set[str]:
        rows = await trio_await(self.app.store.submit(
            lambda c: c.fetch("SELECT signature FROM webhook_inbox WHERE signature = ANY($1::text[])", signatures)))
        return {r["signature"] for r in rows}

    async def ingest(self, txs: list[dict[str, Any]], block_times: dict[str, float] | None = None) -> int:
        """Store enhanced transactions in the inbox and hand the new ones to the actors, exactly as the gateway
        does (one row per signature: a transaction already there is a duplicate and is not decided again).
        A backfilled transaction is late by design: its timestamp is judged against the chain's own block time for
        it (`block_times`, from the RPC: a source independent of Helius), not against now."""
        checked = []
        for tx in txs:
            try:
                checked.append(check_shape(tx, "backfill"))
            except InvalidTransaction as exc:
                log.warning("backfill_transaction_invalid", signature=tx.get("signature"), error=str(exc))
        deliveries: list[Delivery] = to_deliveries(checked, self.app.watched)
        if not deliveries:
            return 0
        new = await trio_await(self.app.store.store_deliveries(deliveries))
        now, seen = self.app.clock(), block_times or {}
        self.app.hand_out([(sig, payload, tuple(w), max(0.0, now - seen.get(sig, now)))
                           for sig, payload, w in deliveries if sig in new and w])
        return len(new)
