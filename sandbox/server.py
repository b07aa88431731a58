"""One local HTTP server for the sandbox's services, each under its own path prefix:

    /jupiter      Price v3, Quote and Swap v1    (base URL for clients: http://127.0.0.1:PORT/jupiter)
    /dexscreener  /tokens/v1/solana/...
    /rugcheck     /v1/tokens/{mint}/report/summary
    /rpc          Solana JSON-RPC (POST)

Each service module exposes `blueprint(market, faults, **deps) -> quart.Blueprint`. `apply_faults`
wraps a service's requests with its `Faults`.
"""

from __future__ import annotations

import json
from functools import partial
from typing import Any, Awaitable, Callable

import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from quart import Blueprint, Response, request
from quart_trio import QuartTrio

from sandbox.faults import FaultBoard, Faults


async def apply_faults(faults: Faults) -> Response | None:
    """Run before a service's handler: returns a faulty response, or None to answer normally."""
    faults.count()
    await request.get_data()  # read the body first: an unread body would stall the kept-alive connection
    if faults.latency_s:
        await trio.sleep(faults.latency_s)
    if faults.timeout:
        await trio.sleep(3600)
    if faults.rate_limited:
        return Response(json.dumps({"code": 429, "message": "Too many requests"}), status=429,
                        mimetype="application/json", headers={"Retry-After": str(faults.retry_after_s)})
    if faults.error_status is not None or faults.roll_error():
        status = faults.error_status or 500
        return Response(json.dumps({"error": "Internal Server Error"}), status=status, mimetype="application/json")
    if faults.malformed:
        return Response('{"truncated": ', status=200, mimetype="application/json")
    return None


def faulty(bp: Blueprint, faults: Faults) -> Blueprint:
    bp.before_request(partial(apply_faults, faults))
    return bp


def create_app(blueprints: dict[str, Blueprint]) -> QuartTrio:
    app = QuartTrio("walltrack.sandbox")
    for prefix, bp in blueprints.items():
        app.register_blueprint(bp, url_prefix=f"/{prefix}")
    return app


def server_main(app: QuartTrio, host: str = "127.0.0.1", port: int = 0) -> Callable[..., Awaitable[Any]]:
    """A `main(task_status)` for `walltrack.bridge.TrioThread`: reports the bound port once listening."""
    config = Config()
    config.bind = [f"{host}:{port}"]
    config.accesslog = None
    config.errorlog = None

    async def main(task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            binds = await nursery.start(partial(serve, app, config))
            task_status.started(int(binds[0].rsplit(":", 1)[1]))

    return main


__all__ = ["FaultBoard", "apply_faults", "create_app", "faulty", "server_main"]
