"""Our own confirmation loop, on trio (solana-py's confirm helpers are asyncio-only).

One `Confirmer` watches every live transaction in flight: each `LIVE_CONFIRM_POLL_MS` it asks
`getSignatureStatuses` for all of them in one call (≤ 256) and `getBlockHeight` once, so the RPC load does not
grow with the number of swaps. A watch ends when its status reaches the configured commitment (`landed`, whether
it succeeded or failed: a failed transaction is final and was charged its fee), or when the block height has
passed its `lastValidBlockHeight` and the status is still unknown on the next look too (`expired`: it can never
land). RPC errors are logged and the next round tries again; the caller bounds its own wait.

    watch = confirmer.watch(signature, last_valid_block_height)
    with trio.move_on_after(2):
        await watch.done.wait()
    watch.outcome        # None (nothing yet), ("landed", status) or ("expired", block_height)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import structlog
import trio

from adapters.http import ProviderError

log = structlog.get_logger("confirm")

MAX_SIGNATURES = 256
LEVELS = {"processed": 0, "confirmed": 1, "finalized": 2}


@dataclass
class Watch:
    signature: str
    last_valid_block_height: int
    done: trio.Event = field(default_factory=trio.Event)
    outcome: tuple[str, Any] | None = None
    past_validity: bool = False  # the height passed lastValidBlockHeight once with no status: one more look
    height: int | None = None  # the last block height seen
    watchers: int = 0  # a restarted actor may watch the same signature while its old task still does

    def settle(self, outcome: tuple[str, Any]) -> None:
        if self.outcome is None:
            self.outcome = outcome
            self.done.set()


class Confirmer:
    def __init__(self, rpc: Any, poll_s: float, commitment: str = "confirmed") -> None:
        self._rpc, self.poll_s, self.level = rpc, poll_s, LEVELS[commitment]
        self._watches: dict[str, Watch] = {}
        self._wake: trio.Event | None = None
        self.rounds = 0

    def watch(self, signature: str, last_valid_block_height: int) -> Watch:
        w = self._watches.get(signature)
        if w is None or w.outcome is not None:
            w = self._watches[signature] = Watch(signature, last_valid_block_height)
        w.watchers += 1
        if self._wake is not None:
            self._wake.set()
        return w

    def unwatch(self, w: Watch) -> None:
        w.watchers -= 1
        if w.watchers <= 0 and self._watches.get(w.signature) is w:
            del self._watches[w.signature]

    def reached(self, status: dict[str, Any]) -> bool:
        return LEVELS.get(str(status.get("confirmationStatus")), -1) >= self.level

    async def run(self, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            if not self._watches:
                self._wake = trio.Event()
                await self._wake.wait()
                self._wake = None
            await self.round()
            await trio.sleep(self.poll_s)

    async def round(self) -> None:
        watches = [w for w in self._watches.values() if w.outcome is None][:MAX_SIGNATURES]
        if not watches:
            return
        self.rounds += 1
        try:
            statuses = await self._rpc.signature_statuses([w.signature for w in watches])
            height = await self._rpc.block_height()
        except ProviderError as exc:
            log.warning("confirm_round_failed", watching=len(watches), error=f"{type(exc).__name__}: {exc}")
            return
        for w, status in zip(watches, statuses):
            w.height = height
            if status is not None:
                if self.reached(status):
                    w.settle(("landed", status))
            elif height > w.last_valid_block_height:
                if w.past_validity:
                    w.settle(("expired", height))
                w.past_validity = True
