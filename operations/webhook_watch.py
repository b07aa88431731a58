"""The Helius webhook, watched: kept in step with the watchlist (`HeliusSync`), and checked against the chain
(`StallWatch`). Both are trio services started by the composition root (`operations.service`).

**Sync.** At start and `HELIUS_SYNC_DEBOUNCE_S` after the last watchlist change (a burst of adds is one edit), the
webhook at `HELIUS_WEBHOOK_URL` is made to watch exactly the active wallets (`adapters.helius.sync_webhook`). A
failed sync is retried with capped backoff; one line per outcome (`helius_webhook_synced` / `helius_sync_failed`).

**Stall detection and backfill.** Every `WEBHOOK_STALL_POLL_S`, each watched wallet's newest signatures are read
from the RPC (`getSignaturesForAddress`, from a cursor, so a quiet wallet costs one small call; the composition root
gives it an RPC client with a budget of its own, so it never slows token safety). A successful
transaction of a watched wallet that the inbox still lacks after a grace (half the stall time, at most 2 minutes:
Helius delivers within seconds) is *missing*. Missing transactions while no delivery came for
`WEBHOOK_STALL_MINUTES` is a stall: one `webhook_stalled` error line (an alert) per episode. Missing transactions
are backfilled, stalled or not (Helius drops a delivery after its retries): the parse-transactions API returns
them as enhanced transactions, and they enter the inbox through the gateway's own path (`App.ingest`) —
deduplicated by signature, so a late webhook delivery of the same transaction is acknowledged as a duplicate and
nothing is decided twice. Only transactions since the wallet was watched are backfilled — at start, those of the
last `WEBHOOK_BACKFILL_LOOKBACK_MINUTES`; for a wallet added later, those after its first read — a wallet's
history before that is not ours to copy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

import structlog
import trio

from adapters.helius import HeliusApi, sync_webhook
from adapters.http import ProviderError

log = structlog.get_logger("webhook_watch")

SIGNATURES_PER_POLL = 100
MAX_PAGES = 10  # per wallet and round: 1,000 transactions since the last read


class HeliusSync:
    def __init__(self, api: HeliusApi, url: str, secret: str, watched: Callable[[], frozenset[str]],
                 debounce_s: float, on_result: Callable[[str], None] = lambda result: None) -> None:
        self.api, self.url, self.secret, self.watched = api, url, secret, watched
        self.debounce_s, self.on_result = debounce_s, on_result
        self._token: trio.lowlevel.TrioToken | None = None
        self._changed = trio.Event()
        self.last: dict[str, Any] | None = None  # the last outcome, for status

    def request(self) -> None:
        """The watchlist changed (from any thread): sync once it has been quiet for the debounce time."""
        token = self._token
        if token is not None:
            try:
                token.run_sync_soon(lambda: self._changed.set())
            except trio.RunFinishedError:
                pass

    async def run(self, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        self._token = trio.lowlevel.current_trio_token()
        task_status.started()
        failures = 0
        self._changed.set()  # the first sync, at start
        while True:
            await self._changed.wait()
            while True:  # debounce: wait for a quiet spell
                self._changed = trio.Event()
                with trio.move_on_after(self.debounce_s):
                    await self._changed.wait()
                    continue
                break
            if await self.sync_once():
                failures = 0
            else:
                failures += 1
                with trio.move_on_after(min(300.0, 5.0 * 2 ** min(failures - 1, 6))):
                    await self._changed.wait()  # a newer change retries sooner
                self._changed.set()

    async def sync_once(self) -> bool:
        wallets = self.watched()
        try:
            result = await sync_webhook(self.api, self.url, self.secret, wallets)
        except ProviderError as exc:
            self.last = {"ok": False, "error": str(exc)}
            self.on_result("failed")
            log.warning("helius_sync_failed", error=str(exc), addresses=len(wallets))
            return False
        self.last = {"ok": True, **result.as_dict()}
        self.on_result(result.action)
        log.info("helius_webhook_synced", **result.as_dict())
        return True


@dataclass
class _Wallet:
    # Which transactions are ours to backfill: at start, those with a block time since `since` (the lookback); for a
    # wallet watched later, those since the bot started keeping its deliveries (the App's `watched_at`: a first read
    # a round later must not skip what it traded meanwhile); unknown, those after the newest one its first read found.
    since: float | None
    cursor: str | None = None  # the newest signature seen
    open: dict[str, float] = field(default_factory=dict)  # seen, not yet in the inbox: signature -> block time


class StallWatch:
    def __init__(self, rpc: Any, helius: HeliusApi | None, *, watched: Callable[[], frozenset[str]],
                 watched_at: Callable[[str], float | None] = lambda wallet: None,
                 last_delivery: Callable[[], float], clock: Callable[[], float],
                 in_inbox: Callable[[list[str]], Awaitable[set[str]]],
                 ingest: Callable[[list[dict[str, Any]], dict[str, float]], Awaitable[int]],
                 stall_after_s: float, poll_s: float, lookback_s: float) -> None:
        self.rpc, self.helius = rpc, helius
        self.watched, self.watched_at, self.last_delivery, self.clock = watched, watched_at, last_delivery, clock
        self.in_inbox, self.ingest = in_inbox, ingest
        self.stall_after_s, self.poll_s, self.lookback_s = stall_after_s, poll_s, lookback_s
        self.grace_s = min(stall_after_s / 2, 120.0)
        self._wallets: dict[str, _Wallet] = {}
        self._first = True
        self.stalled = False  # inside a stall episode (alerted once)
        self.backfilled = 0

    async def run(self, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            await trio.sleep(self.poll_s)
            try:
                await self.check()
            except Exception as exc:  # noqa: BLE001 - the next round retries (the RPC or the database may be down)
                log.warning("stall_check_failed", error=str(exc))

    async def check(self) -> None:
        """One round: read each wallet's new signatures, find the missing, alert a stall, backfill."""
        now = self.clock()
        watched = self.watched()
        for gone in set(self._wallets) - watched:
            del self._wallets[gone]
        for wallet in sorted(watched):
            if wallet not in self._wallets:  # watched since start: the lookback; added later: since it was watched
                self._wallets[wallet] = _Wallet(now - self.lookback_s if self._first else self.watched_at(wallet))
            state = self._wallets[wallet]
            await self._read(wallet, state)
        self._first = False
        pending = {sig: (w, t) for w, s in self._wallets.items() for sig, t in s.open.items()}
        present = await self.in_inbox(list(pending)) if pending else set()
        for sig in present:
            self._wallets[pending[sig][0]].open.pop(sig, None)
        missing = sorted((sig for sig, (_, t) in pending.items() if sig not in present and t <= now - self.grace_s),
                         key=lambda s: pending[s][1])
        silent = now - self.last_delivery()
        if silent < self.stall_after_s:
            self.stalled = False
        elif missing and not self.stalled:
            self.stalled = True
            log.error("webhook_stalled", silent_s=round(silent), wallets=len({pending[s][0] for s in missing}),
                      missing=len(missing), signatures=missing[:5],
                      action="backfilling from Helius; check the webhook (`walltrack doctor`, `walltrack helius sync`)")
        if missing:
            await self._backfill(missing, pending)

    async def _read(self, wallet: str, state: _Wallet) -> None:
        config: dict[str, Any] = {"limit": SIGNATURES_PER_POLL, "commitment": "confirmed"}
        if state.cursor is not None:
            config["until"] = state.cursor
        entries = page = await self.rpc.call("getSignaturesForAddress", [wallet, config])
        for _ in range(MAX_PAGES - 1):  # a busy wallet: page back to the cursor (newest first, `before` the last)
            if state.cursor is None or len(page) < SIGNATURES_PER_POLL:
                break
            page = await self.rpc.call("getSignaturesForAddress", [wallet, {**config, "before": page[-1]["signature"]}])
            entries = entries + page
        first = state.cursor is None
        if entries:
            state.cursor = entries[0]["signature"]
        if first and state.since is None:
            state.since = -math.inf  # watched from now on: everything after this read is ours
            return
        for e in entries:
            block_time = e.get("blockTime")
            if e.get("err") is None and block_time is not None and block_time >= (state.since if state.since is not None else -math.inf):
                state.open.setdefault(e["signature"], float(block_time))

    async def _backfill(self, missing: list[str], pending: dict[str, tuple[str, float]]) -> None:
        if self.helius is None:
            log.warning("webhook_backfill_unavailable", missing=len(missing), signatures=missing[:5],
                        reason="HELIUS_API_KEY is not set: the missed transactions cannot be fetched")
            return
        try:
            txs = await self.helius.parse_transactions(missing)
        except ProviderError as exc:
            log.warning("webhook_backfill_failed", missing=len(missing), error=str(exc))
            return  # still open: the next round tries again
        new = await self.ingest(txs, {sig: pending[sig][1] for sig in missing})  # the RPC's block times
        found = {tx.get("signature") for tx in txs}
        for sig in missing:  # stored now, or unknown to Helius: either way not asked for again
            if (state := self._wallets.get(pending[sig][0])) is not None:
                state.open.pop(sig, None)
        self.backfilled += new
        log.warning("webhook_backfilled", new=new, fetched=len(txs), missing=len(missing),
                    not_found=sorted(set(missing) - found)[:5], signatures=missing[:5])
