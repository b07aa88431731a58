"""The HTTP gateway: Helius webhooks in, health out. Quart on trio, served by Hypercorn's trio worker.

A delivery is checked (secret in constant time, size, JSON shape), stored in the durable inbox, and
only then acknowledged; its new transactions become messages to the watched wallets they touch. Any
failure to store answers 503, never 200, so Helius retries.
"""

from __future__ import annotations

import hmac
import json
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

import structlog
import trio
from quart import Response, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from actors.trades import InvalidTransaction, accounts_touched, check_shape

log = structlog.get_logger("gateway")

Delivery = tuple[str, str, list[str]]  # (signature, transaction JSON, watched wallets it touches)


@dataclass(frozen=True)
class GatewayDeps:
    secret: str
    max_bytes: int
    watched: Callable[[], frozenset[str]]
    store_deliveries: Callable[[list[Delivery]], Awaitable[set[str]]]
    dispatch: Callable[[str, str, tuple[str, ...]], None]
    health: Callable[[], Awaitable[tuple[dict[str, Any], int]]]
    store_timeout: float = 5.0
    metrics: Callable[[], Awaitable[tuple[bytes, str]]] | None = None  # the Prometheus text and its content type
    metrics_token: str | None = None  # METRICS_TOKEN: a bearer token that opens /metrics to non-loopback clients


def _error(status: int, error: str, detail: str) -> Response:
    return Response(json.dumps({"error": error, "detail": detail}), status=status, mimetype="application/json")


def _rejected(status: int, error: str, detail: str, reason: str | None = None) -> Response:
    """A webhook delivery refused: one log line (metrics count it by reason), and the error body."""
    log.warning("webhook_rejected", reason=reason or error, status=status, remote=request.remote_addr)
    return _error(status, error, detail)


def to_deliveries(txs: list[dict[str, Any]], watched: frozenset[str]) -> list[Delivery]:
    """Checked enhanced transactions as inbox rows, one per signature, with the watched wallets each touches —
    for the webhook and for a backfill alike, so both take the same exactly-once path."""
    items: dict[str, Delivery] = {}
    for tx in txs:
        items.setdefault(tx["signature"], (tx["signature"], json.dumps(tx), sorted(accounts_touched(tx) & watched)))
    return list(items.values())


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


LOOPBACK = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}


def metrics_refusal(remote: str | None, headers: Any, token: str | None) -> Response | None:
    """None when the scraper may read /metrics: a loopback client that no proxy forwarded, or the bearer token."""
    auth = headers.get("Authorization", "")
    if token and auth.startswith("Bearer "):
        if hmac.compare_digest(auth.removeprefix("Bearer ").encode(), token.encode()):
            return None
        return _error(401, "unauthorized", "the bearer token does not match METRICS_TOKEN")
    proxied = any(h in headers for h in ("Forwarded", "X-Forwarded-For", "X-Real-IP"))
    if remote in LOOPBACK and not proxied:
        return None
    return _error(403, "forbidden", "/metrics is served to loopback clients, or with METRICS_TOKEN as a bearer token")


def create_app(deps: GatewayDeps) -> QuartTrio:
    app = QuartTrio("walltrack.gateway")
    app.config["MAX_CONTENT_LENGTH"] = deps.max_bytes
    app.config["BODY_TIMEOUT"] = 30

    @app.errorhandler(HTTPException)
    async def http_error(exc: HTTPException) -> Response:
        names = {413: "payload_too_large", 404: "not_found", 405: "method_not_allowed"}
        resp = _error(exc.code or 500, names.get(exc.code or 0, "http_error"), exc.description or exc.name)
        if exc.code == 413:  # the oversized body is left unread: this connection cannot carry another request
            resp.headers["Connection"] = "close"
            log.warning("webhook_rejected", reason="payload_too_large", status=413, remote=request.remote_addr)
        return resp

    @app.errorhandler(Exception)
    async def internal_error(exc: Exception) -> Response:
        log.error("gateway_error", error=repr(exc), exc_info=exc)
        return _error(500, "internal_error", "the server could not handle this request")

    @app.post("/webhooks/helius")
    async def helius() -> Response:
        # Read the (size-bounded) body before answering anything: a reply that leaves it unread would stall
        # the next request on this kept-alive connection.
        body = await request.get_data(cache=False)
        auth = request.headers.get("Authorization", "")
        if not hmac.compare_digest(auth.encode(), deps.secret.encode()):
            return _rejected(401, "unauthorized", "the Authorization header does not match the webhook secret",
                             reason="bad_authorization")
        try:
            data = json.loads(body, parse_constant=_not_json)  # NaN/Infinity: Python reads them, PostgreSQL does not
        except (ValueError, UnicodeDecodeError):
            return _rejected(400, "invalid_json", "the body is not valid JSON")
        if b"\\u0000" in body:  # PostgreSQL cannot store NUL in text or jsonb: refuse it, do not 503 forever
            return _rejected(400, "invalid_json", "the body contains a NUL character (\\u0000)")
        if not isinstance(data, list):
            return _rejected(400, "invalid_shape", "the body must be a JSON array of enhanced transactions")
        try:
            txs = [check_shape(tx, f"body[{i}]") for i, tx in enumerate(data)]
        except InvalidTransaction as exc:
            return _rejected(400, "invalid_transaction", str(exc))

        deliveries = to_deliveries(txs, deps.watched())
        try:
            with trio.fail_after(deps.store_timeout):
                new = await deps.store_deliveries(deliveries) if deliveries else set()
        except Exception as exc:  # noqa: BLE001 - any failure to store (or trio.TooSlowError) is never acknowledged
            log.error("webhook_not_stored", error=repr(exc), transactions=len(deliveries))
            resp = _error(503, "database_unavailable", "the delivery could not be stored; retry later")
            resp.headers["Retry-After"] = "5"
            return resp
        for signature, payload, wallets in deliveries:
            if signature in new and wallets:
                deps.dispatch(signature, payload, tuple(wallets))
        log.info(
            "webhook_received",
            transactions=len(deliveries),
            new=len(new),
            duplicates=len(deliveries) - len(new),
            signatures=[d[0] for d in deliveries][:20],
        )
        return Response(
            json.dumps({"accepted": len(new), "duplicates": len(deliveries) - len(new)}), status=200, mimetype="application/json"
        )

    @app.get("/health")
    async def health() -> Response:
        body, status = await deps.health()
        return Response(json.dumps(body, default=str), status=status, mimetype="application/json")

    @app.get("/metrics")
    async def metrics() -> Response:
        if deps.metrics is None:
            return _error(404, "not_found", "metrics are not enabled")
        refusal = metrics_refusal(request.remote_addr, request.headers, deps.metrics_token)
        if refusal is not None:
            return refusal
        text, content_type = await deps.metrics()
        return Response(text, status=200, content_type=content_type)

    app.config["STARTED_AT"] = time.time()
    return app
