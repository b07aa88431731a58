"""The webhook's fast path: plain ASGI in front of the Quart app, for `POST /webhooks/helius` only.

Quart's request machinery (contexts, routing, request and response objects) costs more than the webhook's own
work; this path reads the body straight from the ASGI channel, bounded in size (413, the connection closed) and
time (408), and answers what `gateway.app.receive_webhook` decides — the same function the Quart route calls.
Every other request (health, 404s, other methods) goes to Quart.
"""

from __future__ import annotations

import json
from typing import Any, Awaitable, Callable

import structlog
import trio

from gateway.app import GatewayDeps, Reply, receive_webhook

log = structlog.get_logger("gateway")

PATH = "/webhooks/helius"
BODY_TIMEOUT_S = 30.0

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def webhook_fast_path(app: Callable[[Scope, Receive, Send], Awaitable[None]], deps: GatewayDeps):  # noqa: ANN201
    async def asgi(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] != "POST":
            await app(scope, receive, send)
            return
        headers = {k.lower(): v for k, v in scope["headers"]}
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > deps.max_bytes:
            await _answer(send, _too_large(deps.max_bytes))  # left unread: the connection closes
            return
        chunks, size = [], 0
        with trio.move_on_after(BODY_TIMEOUT_S) as timer:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > deps.max_bytes:
                    await _answer(send, _too_large(deps.max_bytes))
                    return
                chunks.append(chunk)
                if not message.get("more_body", False):
                    break
        if timer.cancelled_caught:
            await _answer(send, Reply(408, {"error": "http_error", "detail": "the body did not arrive in time"},
                                      (("Connection", "close"),)))
            return
        client = scope.get("client")
        try:
            reply = await receive_webhook(deps, headers.get(b"authorization", b"").decode("latin-1"), b"".join(chunks),
                                          client[0] if client else None)
        except Exception as exc:  # noqa: BLE001 - as the Quart app's error handler
            log.error("gateway_error", error=repr(exc), exc_info=exc)
            reply = Reply(500, {"error": "internal_error", "detail": "the server could not handle this request"})
        await _answer(send, reply)

    return asgi


def _too_large(limit: int) -> Reply:
    return Reply(413, {"error": "payload_too_large", "detail": f"the body is larger than {limit} bytes"},
                 (("Connection", "close"),))


async def _answer(send: Send, reply: Reply) -> None:
    body = json.dumps(reply.body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               *((k.lower().encode(), v.encode()) for k, v in reply.headers)]
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
