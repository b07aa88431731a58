"""The webhook gateway as a service of the composition root: its dependencies wired to the store, the root and
the services (gateway/app.py, gateway/fastpath.py), served by Hypercorn on the trio runtime; and `/health`.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timezone
from functools import partial
from typing import Any, Callable

import asyncpg
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve

from actors.messages import Deliver, GetStats
from actors.risk import SUPERVISOR_BREAKER
from gateway.app import Delivery, GatewayDeps, Items, Trades, Unstorable, create_app
from gateway.fastpath import webhook_fast_path
from storage.supervisor import CONNECTED
from walltrack.bridge import ask, trio_await


def gateway_service(app: Any, secret: str) -> Callable[..., Any]:
    """The gateway's main for `TrioThread.start_service`: started once it listens (`app.gateway_port` set)."""
    s, store, services, cluster = app.settings, app.store, app.services, app.cluster

    async def store_body(body: str, items: Items) -> set[str]:
        try:
            new = await trio_await(store.store_body(body, items))
        except asyncpg.DataError as exc:  # the content, not the database: never worth a retry
            raise Unstorable(str(exc)) from None
        app.last_delivery_at = app.clock()
        if app.ops is not None:
            app.ops.metrics.note_received(list(new))
        return new

    def dispatch(signature: str, wallets: tuple[str, ...], trades: Trades) -> None:
        # classified once, by the gateway (its timestamp judged there against the same clock)
        app.actors.tell(Deliver(signature, "", wallets, received_at=app.clock(), trades=trades))

    async def publish(items: list[Delivery]) -> None:  # distributed mode: to the stream, by wallet partition
        await trio_await(cluster.publish(items))

    deps = GatewayDeps(
        secret=secret, max_bytes=s.webhook_max_bytes, watched=lambda: app.watched, store_body=store_body,
        dispatch=dispatch, health=lambda: health(app), screen=services.screen, clock=app.clock,
        max_skew_s=s.trade_max_skew_s, metrics=app.ops.metrics.scrape if app.ops is not None else None,
        metrics_token=s.metrics_token.get_secret_value() if s.metrics_token else None,
        publish=publish if cluster is not None else None,
    )
    asgi = webhook_fast_path(create_app(deps), deps)
    config = HypercornConfig()
    config.bind = [f"{s.gateway_host}:{s.gateway_port}"]
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")

    async def main(task_status=trio.TASK_STATUS_IGNORED) -> None:  # noqa: ANN001
        async with trio.open_nursery() as nursery:
            bound = await nursery.start(partial(serve, asgi, config))
            app.gateway_port = int(str(bound[0]).rsplit(":", 1)[1]) if bound else s.gateway_port
            task_status.started(bound)

    return main


async def health(app: Any) -> tuple[dict[str, Any], int]:
    """`GET /health`: the database, the breakers, live trading's book, the providers, the actors; 503 without
    the database."""
    body: dict[str, Any] = {"status": "ok", "database": "connected", "uptime_s": round(time.time() - app.started_at, 1),
                            "trading_mode": app.trading_mode}
    try:
        with trio.fail_after(2):
            db = await trio_await(app.store.health())
        body.update(last_webhook_at=_iso(db["last_webhook"]), last_signal_at=_iso(db["last_signal"]),
                    inbox_pending=db["inbox_pending"],
                    exit_failed=db["exit_failed"])  # positions whose exit could not land: an alert (the dashboard too)
    except Exception:  # noqa: BLE001
        state = app.database.state if app.database is not None and app.database.state != CONNECTED else "unreachable"
        body.update(status="unavailable", database=state, last_webhook_at=None, last_signal_at=None)
    if app.database is not None:
        body["database_restarts"] = app.database.restarts
    body["circuit_breaker"] = breaker_state(app.published, app.clock())
    degraded = body["circuit_breaker"]["state"] != "closed"  # a tripped breaker, a live book to look at, no actors
    if app.services is not None and app.services.live is not None and app.cluster is None:
        report = app.live_reconcile or {}
        body["live"] = {"wallet": app.services.live.address, "reconcile": app.live_reconcile,
                        "exit_failed": body.get("exit_failed")}
        degraded |= bool(body.get("exit_failed") or report.get("findings") or report.get("error"))
    if app.cluster is not None:
        body["cluster"] = app.cluster.status()
    if app.services is not None:
        body["providers"] = app.services.provider_states()
    try:
        body["actors"] = await ask(app.root, GetStats(), timeout=2)
    except Exception:  # noqa: BLE001
        body["actors"] = None
        degraded = True
    if degraded and body["status"] == "ok":  # "unavailable" (no database) says more
        body["status"] = "degraded"
    return body, 200 if body["database"] == "connected" else 503


def breaker_state(published: Any, now: float) -> dict[str, Any]:
    """Open while a global breaker is tripped (no new entries at all), with its reason — the supervisor's
    escalation first; `breakers` lists every tripped one, per-token and per-wallet included."""
    tripped = [b for b in (published.breakers if published is not None else ()) if b["until"] is None or b["until"] > now]
    stops = sorted((b for b in tripped if b["scope"] == "global"), key=lambda b: b["name"] != SUPERVISOR_BREAKER)
    first = stops[0] if stops else None
    return {"state": "open" if first else "closed", "reason": first["reason"] if first else None,
            "tripped_at": _iso(datetime.fromtimestamp(first["tripped_at"], timezone.utc)) if first else None,
            "breakers": tripped}


def _iso(v: datetime | None) -> str | None:
    return v.astimezone(timezone.utc).isoformat() if v is not None else None
