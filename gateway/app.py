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
    # distributed mode: append the stored deliveries to JetStream (and record the acknowledgement) before the 200;
    # the node owning each wallet's partition takes them from there, so nothing is dispatched here
    publish: Callable[[list[Delivery]], Awaitable[None]] | None = None


def _error(status: int, error: str, detail: str) -> Response:
    return Response(json.dumps({"error": error, "detail": detail}), status=status, mimetype="application/json")


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
            log.warning("webhook_rejected", reason="bad_authorization", remote=request.remote_addr)
            return _error(401, "unauthorized", "the Authorization header does not match the webhook secret")
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return _error(400, "invalid_json", "the body is not valid JSON")
        if b"\\u0000" in body:  # PostgreSQL cannot store NUL in text or jsonb: refuse it, do not 503 forever
            return _error(400, "invalid_json", "the body contains a NUL character (\\u0000)")
        if not isinstance(data, list):
            return _error(400, "invalid_shape", "the body must be a JSON array of enhanced transactions")
        try:
            txs = [check_shape(tx, f"body[{i}]") for i, tx in enumerate(data)]
        except InvalidTransaction as exc:
            return _error(400, "invalid_transaction", str(exc))

        watched = deps.watched()
        items: dict[str, Delivery] = {}
        for tx in txs:
            items.setdefault(tx["signature"], (tx["signature"], json.dumps(tx), sorted(accounts_touched(tx) & watched)))
        deliveries = list(items.values())
        try:
            with trio.fail_after(deps.store_timeout):
                new = await deps.store_deliveries(deliveries) if deliveries else set()
        except Exception as exc:  # noqa: BLE001 - any failure to store (or trio.TooSlowError) is never acknowledged
            log.error("webhook_not_stored", error=repr(exc), transactions=len(deliveries))
            resp = _error(503, "database_unavailable", "the delivery could not be stored; retry later")
            resp.headers["Retry-After"] = "5"
            return resp
        if deps.publish is None:
            for signature, payload, wallets in deliveries:
                if signature in new and wallets:
                    deps.dispatch(signature, payload, tuple(wallets))
        elif deliveries:
            try:
                with trio.fail_after(deps.store_timeout):
                    await deps.publish(deliveries)  # duplicates too: a retry after a failed append; Nats-Msg-Id dedupes
            except Exception as exc:  # noqa: BLE001 - stored but not appended: 503, the retry appends it
                log.error("webhook_not_published", error=repr(exc), transactions=len(deliveries))
                resp = _error(503, "stream_unavailable", "the delivery could not be queued for processing; retry later")
                resp.headers["Retry-After"] = "5"
                return resp
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

    app.config["STARTED_AT"] = time.time()
    return app
