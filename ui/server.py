"""Serving the panel: NiceGUI's own uvicorn server and asyncio loop, in the calling (main) thread.

`serve(backend, host=..., port=...)` registers the pages, guards them when a password is set, and blocks until
the server stops: on Ctrl-C or SIGTERM (uvicorn's handlers, which re-raise the signal afterwards for the
caller's own handler), or when `should_stop()` — polled every half second — returns a reason (a failed
service, the end of a timed demo). The caller stops the rest of the bot after `serve` returns.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Callable

import structlog
from nicegui import app as nicegui_app
from nicegui import ui

from ui import access, config, dashboard, position, signals, watchlist
from ui.backend import Backend

log = structlog.get_logger("panel")

# The few utility classes the pages use beyond Quasar's, as static CSS: Tailwind's in-browser compiler is
# off (tailwind=False), which saves a large script and its work on every page load.
UTILITIES = """
.w-full{width:100%} .max-w-full{max-width:100%} .gap-0{gap:0} .w-40{width:10rem} .w-48{width:12rem}
.w-\\[48rem\\]{width:48rem} .w-\\[56rem\\]{width:56rem} .h-64{height:16rem} .h-80{height:20rem}
.underline{text-decoration:underline} .no-underline{text-decoration:none} .text-lg{font-size:1.125rem}
.font-mono{font-family:ui-monospace,monospace} .bg-slate-800{background:#1e293b}
.sticky-head thead tr th{position:sticky;top:0;z-index:1;background:#fff}
"""


class _ClientGone(logging.Filter):
    """Starlette's BaseHTTPMiddleware (NiceGUI's middlewares use it) raises "No response returned." when the
    browser goes away before a response (a closed tab, a page left mid-load) — a disconnect, not a failure of
    the panel. It is logged as one line without the trace; any other error keeps its trace."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, RuntimeError) and str(exc) == "No response returned.":
            record.msg, record.args, record.exc_info, record.levelno, record.levelname = (
                "panel: the browser disconnected before its response", (), None, logging.INFO, "INFO")
        return True


def serve(backend: Backend, *, host: str, port: int, password: str | None = None,
          should_stop: Callable[[], str | None] | None = None) -> None:
    password = password or None
    access.check_binding(host, password)
    # A bot started by a test inherits PYTEST_CURRENT_TEST, which switches NiceGUI into its own test mode
    # (a port from NICEGUI_SCREEN_TEST_PORT): this process is the bot, not the test.
    os.environ.pop("PYTEST_CURRENT_TEST", None)
    auth = password is not None
    ui.add_css(UTILITIES, shared=True)
    for page in (dashboard, watchlist, position, signals, config):
        page.register(backend, auth)
    if auth:
        access.install(nicegui_app, password)  # type: ignore[arg-type]

    async def watch() -> None:
        while True:
            reason = should_stop() if should_stop is not None else None
            if reason:
                log.info("panel_stopping", reason=reason)
                nicegui_app.shutdown()
                return
            await asyncio.sleep(0.5)

    def started() -> None:
        log.info("panel_listening", host=host, port=port, login=auth)
        if should_stop is not None:
            asyncio.get_running_loop().create_task(watch())

    nicegui_app.on_startup(started)
    logging.getLogger("uvicorn.error").addFilter(_ClientGone())
    ui.run(host=host, port=port, reload=False, show=False, title="WallTrack", favicon="📈", dark=False, tailwind=False,
           show_welcome_message=False, uvicorn_logging_level="warning", timeout_graceful_shutdown=3,
           reconnect_timeout=10)
