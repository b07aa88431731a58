"""The start-up reconcile of live trading's book against the chain, in the background: shown (the log, /health,
the dashboard), never fixed silently. The RPC may be down: then it says so and the bot keeps running — every
buy and sale checks the chain itself."""

from __future__ import annotations

import time
from typing import Any

import structlog
import trio

from execution import reconcile
from walltrack.bridge import trio_await

log = structlog.get_logger("walltrack")


class LiveReconcile:
    def __init__(self, runtime: Any, store: Any, rpc: Any, wallet: str, timeout_s: float) -> None:
        self._runtime, self._store, self._rpc, self.wallet, self._timeout_s = runtime, store, rpc, wallet, timeout_s
        self.report: dict[str, Any] | None = None  # {"running"}, then {"findings"} or {"error"}

    def start(self) -> None:
        self.report = {"wallet": self.wallet, "at": time.time(), "running": True}
        self._runtime.submit(self._run).add_done_callback(self._done)

    async def _run(self) -> dict[str, Any]:
        with trio.fail_after(self._timeout_s):
            chain = await reconcile.chain_holdings(self._rpc, self.wallet)
        held, in_flight = await trio_await(self._store.submit(reconcile.book))
        findings = reconcile.compare(held, chain, in_flight)
        await trio_await(self._store.submit(lambda c: reconcile.save(c, self.wallet, findings)))
        reconcile.log_findings(self.wallet, findings)
        return {"wallet": self.wallet, "at": time.time(), "findings": [f.as_json() for f in findings]}

    def _done(self, f: Any) -> None:
        exc = f.exception()
        if exc is None:
            self.report = f.result()
            return
        log.error("live_reconcile_failed", wallet=self.wallet, error=f"{type(exc).__name__}: {exc}")
        self.report = {"wallet": self.wallet, "at": time.time(), "error": f"{type(exc).__name__}: {exc}"}
