"""A headless bot process: `python -m walltrack.cluster.process` — the bot (`App`) without the panel, settings from
the environment (CLUSTER_NATS_URL, CLUSTER_NODE_ID, DATABASE_URL, ...), until SIGTERM or SIGINT: a cluster node,
or without CLUSTER_NATS_URL the single process (the benchmark's baseline). Once it serves it prints one JSON line,
{"node", "gateway_port", "pid"}, on stdout. (An operator runs `walltrack run` with the same variables: a node with
its panel.)

`--clock FILE --start T --speed S`: the demo's simulated clock — `T` until the demo writes the wall time its
market started into FILE, then T + (now - that time) x S, the sandbox's own clock in every node.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from walltrack.app import App
from walltrack.logs import Redactor, configure_logging
from walltrack.settings import ConfigError, load_settings


class FileClock:
    def __init__(self, path: Path, start: float, speed: float) -> None:
        self.path, self.start, self.speed = path, start, speed
        self._t0: float | None = None
        self._checked = 0.0

    def __call__(self) -> float:
        if self._t0 is None:
            now = time.monotonic()
            if now - self._checked < 0.05:
                return self.start
            self._checked = now
            try:
                self._t0 = float(self.path.read_text())
            except (OSError, ValueError):
                return self.start
        return self.start + max(0.0, time.time() - self._t0) * self.speed


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m walltrack.cluster.process")
    p.add_argument("--clock", type=Path)
    p.add_argument("--start", type=float, default=0.0)
    p.add_argument("--speed", type=float, default=1.0)
    p.add_argument("--panel", action="store_true", help="also serve the operator panel (PANEL_HOST/PANEL_PORT)")
    args = p.parse_args(argv)
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"walltrack: {exc}", file=sys.stderr)
        return 2
    redactor = Redactor(settings.secrets())
    configure_logging(redactor, settings.log_level, settings.log_dir, settings.log_max_bytes, settings.log_backups,
                      stream=open("/dev/null", "w"))  # noqa: SIM115 - stdout carries the ready line only
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    clock: Any = FileClock(args.clock, args.start, args.speed) if args.clock else time.time
    app = App(settings, redactor, clock=clock)
    def should_stop() -> str | None:
        if app.gateway is not None and not app.gateway.running:
            return "gateway failed"
        return "signal" if stop.is_set() else None

    try:
        if args.panel:
            from walltrack.panel import check_panel_access, serve_panel

            check_panel_access(settings)
        app.start()
        print(json.dumps({"node": settings.cluster_node_id, "gateway_port": app.gateway_port, "pid": os.getpid()}), flush=True)
        if args.panel:
            serve_panel(app, should_stop)  # the main thread, until SIGINT/SIGTERM
        while should_stop() is None:
            stop.wait(0.5)
        if should_stop() == "gateway failed":
            return 1
    except ConfigError as exc:
        print(f"walltrack: {exc}", file=sys.stderr)
        return 2
    finally:
        app.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
