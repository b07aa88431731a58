"""The HTTP gateway: Helius webhooks in, health out. Quart on trio, served by Hypercorn's trio worker; the webhook
itself also has a plain ASGI fast path in front of Quart (gateway/fastpath.py), the same `receive_webhook`.

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

from actors.trades import InvalidTransaction, NotATrade, Trade, accounts_touched, check_shape, read_trade

log = structlog.get_logger("gateway")

Trades = tuple[tuple[str, Trade | NotATrade], ...]  # (watched wallet, its trade in the transaction or why none)
Delivery = tuple[str, str, list[str]]  # (signature, transaction JSON, watched wallets it touches): a backfill's rows
Items = tuple[tuple[str, tuple[str, ...]], ...]  # (signature, the watched wallets it touches), each signature once


class Unstorable(ValueError):
    """The database refused the delivery's content (not a temporary failure): a 400, never retried."""


@dataclass(frozen=True)
class GatewayDeps:
    secret: str
    max_bytes: int
    watched: Callable[[], frozenset[str]]
    store_body: Callable[[str, Items], Awaitable[set[str]]]  # the new signatures, once committed
    dispatch: Callable[[str, tuple[str, ...], Trades], None]
    health: Callable[[], Awaitable[tuple[dict[str, Any], int]]]
    screen: Callable[[list[Trade]], None] = lambda trades: None  # start checking the tokens bought, at once
    store_timeout: float = 5.0
    clock: Callable[[], float] = time.time  # the bot's clock: a trade's timestamp is judged against its receipt
    max_skew_s: float | None = None  # a timestamp this far from the receipt is implausible (None: unchecked)
    metrics: Callable[[], Awaitable[tuple[bytes, str]]] | None = None  # the Prometheus text and its content type
    metrics_token: str | None = None  # METRICS_TOKEN: a bearer token that opens /metrics to non-loopback clients
    # distributed mode: append the stored deliveries to JetStream (and record the acknowledgement) before the 200;
    # the node owning each wallet's partition takes them from there, so nothing is dispatched here
    publish: Callable[[list[Delivery]], Awaitable[None]] | None = None


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _error(status: int, error: str, detail: str) -> Response:
    return Response(json.dumps({"error": error, "detail": detail}), status=status, mimetype="application/json")


@dataclass(frozen=True)
class Reply:
    status: int
    body: dict[str, Any]
    headers: tuple[tuple[str, str], ...] = ()


def _reply(status: int, error: str, detail: str, headers: tuple[tuple[str, str], ...] = ()) -> Reply:
    return Reply(status, {"error": error, "detail": detail}, headers)


def _rejected(status: int, error: str, detail: str, remote: str | None, reason: str | None = None) -> Reply:
    """A webhook delivery refused: one log line (metrics count it by reason), and the error body."""
    log.warning("webhook_rejected", reason=reason or error, status=status, remote=remote)
    return _reply(status, error, detail)


async def receive_webhook(deps: GatewayDeps, auth: str, body: bytes, remote: str | None) -> Reply:
    """A Helius delivery (its whole body read): checked, parsed once, stored, then acknowledged and dispatched."""
    if not hmac.compare_digest(auth.encode(), deps.secret.encode()):
        return _rejected(401, "unauthorized", "the Authorization header does not match the webhook secret", remote,
                         reason="bad_authorization")
    try:
        text = body.decode("utf-8")
        data = json.loads(text, parse_constant=_no_constants)  # parsed once: nothing downstream parses it again
    except (ValueError, UnicodeDecodeError):
        return _rejected(400, "invalid_json", "the body is not valid JSON", remote)
    except RecursionError:  # a 100,000-deep nesting: refused, not a 500
        return _rejected(400, "invalid_json", "the body is nested too deeply", remote)
    if "\\u0000" in text:  # PostgreSQL cannot store NUL in text or jsonb: refuse it, do not 503 forever
        return _rejected(400, "invalid_json", "the body contains a NUL character (\\u0000)", remote)
    if not isinstance(data, list):
        return _rejected(400, "invalid_shape", "the body must be a JSON array of enhanced transactions", remote)
    try:
        txs = [check_shape(tx, f"body[{i}]") for i, tx in enumerate(data)]
    except InvalidTransaction as exc:
        return _rejected(400, "invalid_transaction", str(exc), remote)

    watched, received = deps.watched(), deps.clock()
    seen: dict[str, Trades] = {}
    for tx in txs:
        if tx["signature"] not in seen:
            seen[tx["signature"]] = tuple((w, read_trade(tx, w, received, deps.max_skew_s))
                                          for w in sorted(accounts_touched(tx) & watched))
    deps.screen([t for trades in seen.values() for _, t in trades if isinstance(t, Trade) and t.side == "buy"])
    items: Items = tuple((sig, tuple(w for w, _ in trades)) for sig, trades in seen.items())
    try:
        with trio.fail_after(deps.store_timeout):
            new = await deps.store_body(text, items) if items else set()
    except Unstorable as exc:
        return _rejected(400, "invalid_json", f"the delivery cannot be stored: {exc}", remote)
    except Exception as exc:  # noqa: BLE001 - any failure to store (or trio.TooSlowError) is never acknowledged
        log.error("webhook_not_stored", error=repr(exc), transactions=len(items))
        return _reply(503, "database_unavailable", "the delivery could not be stored; retry later",
                      (("Retry-After", "5"),))
    if deps.publish is None:
        for signature, trades in seen.items():
            if signature in new and trades:
                deps.dispatch(signature, tuple(w for w, _ in trades), trades)
    elif items:  # distributed mode: the node owning each wallet's partition takes them from the stream
        try:
            with trio.fail_after(deps.store_timeout):
                await deps.publish(to_deliveries(txs, watched))  # duplicates too: a retry after a failed append
        except Exception as exc:  # noqa: BLE001 - stored but not appended: 503, the retry appends it (Nats-Msg-Id dedupes)
            log.error("webhook_not_published", error=repr(exc), transactions=len(items))
            return _reply(503, "stream_unavailable", "the delivery could not be queued for processing; retry later",
                          (("Retry-After", "5"),))
    log.info("webhook_received", transactions=len(items), new=len(new), duplicates=len(items) - len(new),
             signatures=list(seen)[:20])
    return Reply(200, {"accepted": len(new), "duplicates": len(items) - len(new)})


def to_deliveries(txs: list[dict[str, Any]], watched: frozenset[str]) -> list[Delivery]:
    """Checked enhanced transactions as inbox rows, one per signature, with the watched wallets each touches —
    for the webhook and for a backfill alike, so both take the same exactly-once path."""
    items: dict[str, Delivery] = {}
    for tx in txs:
        items.setdefault(tx["signature"], (tx["signature"], json.dumps(tx), sorted(accounts_touched(tx) & watched)))
    return list(items.values())


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
        r = await receive_webhook(deps, request.headers.get("Authorization", ""), body, request.remote_addr)
        return Response(json.dumps(r.body), status=r.status, mimetype="application/json", headers=dict(r.headers))

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
