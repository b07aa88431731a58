"""The sandbox's Helius: enhanced-transaction payloads for the market's leader trades, and a webhook poster.

The payloads: `sandbox.helius_shapes` (how a trade is presented: `Shape`, `choose_shape`, `shapes_for`) and
`sandbox.helius_tx` (`enhanced_tx(trade, shape)`, the enhanced transaction Helius would deliver, shared/API-FORMATS.md
§1.3-§1.7); both are re-exported here.

`HeliusPoster` delivers them like Helius does: a POST of a JSON array (usually one transaction, sometimes
2-3) with the `Authorization` header set to the configured secret exactly; on a non-2xx answer or a timeout
up to 3 retries at a fixed interval (Helius: 1 minute; the sandbox scales it), then the delivery is dropped;
at-least-once, so some deliveries are sent twice (`duplicate_rate`, deterministic by seed).
"""

from __future__ import annotations

import json
import math
import random
import threading
from dataclasses import dataclass, fields
from typing import Any

import httpx
import structlog
import trio

from sandbox.faults import Faults
from sandbox.helius_shapes import KNOWN_GAPS, PRESENTATIONS, RELAYERS, Shape, choose_shape, shape_rng, shapes_for
from sandbox.helius_tx import RENT_TOKEN_ACCOUNT, enhanced_tx, vault_owner
from sandbox.market import LeaderTrade

__all__ = ["KNOWN_GAPS", "PRESENTATIONS", "RELAYERS", "RENT_TOKEN_ACCOUNT", "Delivery", "HeliusPoster", "PosterStats",
           "Shape", "choose_shape", "enhanced_tx", "shape_rng", "shapes_for", "vault_owner"]

log = structlog.get_logger("sandbox.helius")

HELIUS_RETRY_INTERVAL_S = 60.0
HELIUS_MAX_RETRIES = 3


# -- delivery --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Delivery:
    """One webhook POST body (a JSON array of enhanced transactions), and whether Helius sends it twice."""

    number: int
    signatures: tuple[str, ...]
    body: bytes
    duplicate: bool


@dataclass(frozen=True)  # no slots: `vars(stats)` works
class PosterStats:
    deliveries: int = 0  # planned deliveries (before faults)
    attempts: int = 0  # POSTs made, retries and duplicates included
    delivered: int = 0  # deliveries acknowledged with a 2xx (the first copy)
    retried: int = 0  # retry POSTs (attempts after a failed one)
    duplicates: int = 0  # second copies acknowledged
    dropped: int = 0  # copies given up after the last retry
    missed: int = 0  # deliveries Helius never sent (faults.error_rate)
    pending: int = 0  # deliveries not settled yet

    def as_dict(self) -> dict[str, int]:
        return dict(vars(self))


class HeliusPoster:
    """Posts leader trades to a webhook URL the way Helius does.

    `submit(trades)` is thread-safe and returns at once; `run()` (started in a trio nursery) sends what was
    submitted, each delivery concurrently with its own retries. `deliver(trades)` sends and waits, for
    callers already on trio. `stats()` is safe from any thread. `faults` (the "helius" service) adds latency
    before a delivery, holds deliveries while `timeout` is set (a Helius outage), skips a fraction
    `error_rate` of them (events Helius missed) and, while `stalled` is set, every one (a webhook that went quiet).
    """

    def __init__(self, url: str | list[str], secret: str, *, retry_interval_s: float = HELIUS_RETRY_INTERVAL_S,
                 max_retries: int = HELIUS_MAX_RETRIES, duplicate_rate: float = 0.0, batch_rate: float = 0.15,
                 timeout_s: float = 10.0, seed: int = 0, faults: Faults | None = None,
                 symbols: dict[str, str] | None = None) -> None:
        if secret != secret.strip() or any(ord(c) < 0x20 or ord(c) == 0x7F for c in secret):
            raise ValueError("the webhook secret cannot be sent as an HTTP header value (edge spaces or control characters)")
        # several URLs: the gateways behind a load balancer — attempt k of delivery n goes to URL (n + k) mod count
        self.urls = [url] if isinstance(url, str) else list(url)
        self.url = self.urls[0]
        self.secret = secret
        self.retry_interval_s = retry_interval_s
        self.max_retries = max_retries
        self.duplicate_rate = duplicate_rate
        self.batch_rate = batch_rate
        self.timeout_s = timeout_s
        self.seed = seed
        self.faults = faults or Faults()
        self.symbols = symbols or {}
        self._rng = random.Random(f"{seed}:deliveries")
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {f.name: 0 for f in fields(PosterStats)}
        self._acked: set[str] = set()  # signatures of every delivery acknowledged with a 2xx at least once
        self._numbers = 0
        self._backlog: list[Delivery] = []
        self._token: trio.lowlevel.TrioToken | None = None
        self._send: trio.MemorySendChannel[Delivery] | None = None
        self._client: httpx.AsyncClient | None = None
        self._changed = trio.Event()

    # -- planning (deterministic) --
    def plan(self, trades: list[LeaderTrade]) -> list[Delivery]:
        """Group trades into deliveries (usually one transaction, sometimes 2-3) and render them."""
        out: list[Delivery] = []
        with self._lock:
            i = 0
            while i < len(trades):
                size = 1 if self._rng.random() >= self.batch_rate else self._rng.choice((2, 3))
                batch = trades[i:i + size]
                i += size
                txs = [enhanced_tx(t, choose_shape(shape_rng(self.seed, t), t), symbol=self.symbols.get(t.mint)) for t in batch]
                self._numbers += 1
                duplicate = self.duplicate_rate > 0 and self._rng.random() < self.duplicate_rate
                out.append(Delivery(self._numbers, tuple(t.signature for t in batch), json.dumps(txs).encode(), duplicate))
            self._counts["deliveries"] += len(out)
            self._counts["pending"] += len(out)
        return out

    def stats(self) -> PosterStats:
        with self._lock:
            return PosterStats(**self._counts)

    def acknowledged(self) -> set[str]:
        """The signatures the webhook acknowledged (2xx): what it promised to process exactly once."""
        with self._lock:
            return set(self._acked)

    def _bump(self, **deltas: int) -> None:
        with self._lock:
            for k, v in deltas.items():
                self._counts[k] += v
        self._changed.set()
        self._changed = trio.Event()

    async def wait_for(self, predicate: Any) -> PosterStats:
        """Wait (on trio, in the poster's thread) until `predicate(stats)` holds; returns those stats."""
        while True:
            changed = self._changed
            stats = self.stats()
            if predicate(stats):
                return stats
            await changed.wait()

    # -- feeding --
    def submit(self, trades: list[LeaderTrade]) -> None:
        """Queue trades for delivery; safe from any thread, before or after `run` starts."""
        if not trades:
            return
        deliveries = self.plan(trades)
        with self._lock:
            token, send = self._token, self._send
            if token is None or send is None:
                self._backlog.extend(deliveries)
                return
        for i, d in enumerate(deliveries):
            try:
                token.run_sync_soon(send.send_nowait, d)
            except trio.RunFinishedError:  # `run` ended meanwhile: keep the rest for the next run
                with self._lock:
                    self._backlog.extend(deliveries[i:])
                return

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Send submitted deliveries until cancelled."""
        send, receive = trio.open_memory_channel[Delivery](math.inf)
        async with httpx.AsyncClient(timeout=self.timeout_s) as client, trio.open_nursery() as nursery:
            self._client = client
            with self._lock:
                self._token, self._send = trio.lowlevel.current_trio_token(), send
                backlog, self._backlog = self._backlog, []
            for d in backlog:
                send.send_nowait(d)
            task_status.started()
            try:
                async for delivery in receive:
                    nursery.start_soon(self._deliver, delivery)
            finally:
                with self._lock:
                    self._token = self._send = None
                self._client = None

    async def deliver(self, trades: list[LeaderTrade]) -> list[bool]:
        """Plan and send `trades` now, waiting for every delivery to settle; True per acknowledged delivery."""
        deliveries = self.plan(trades)
        results: list[bool] = [False] * len(deliveries)

        async def one(i: int, d: Delivery) -> None:
            results[i] = await self._deliver(d)

        async with trio.open_nursery() as nursery:
            for i, d in enumerate(deliveries):
                nursery.start_soon(one, i, d)
        return results

    # -- sending --
    async def _deliver(self, d: Delivery) -> bool:
        try:
            while self.faults.timeout:  # a Helius outage: hold deliveries until it clears
                await trio.sleep(0.05)
            if self.faults.latency_s:
                await trio.sleep(self.faults.latency_s)
            if self.faults.stalled or self.faults.roll_error():
                self._bump(missed=1)
                log.info("helius_delivery_missed", delivery=d.number, signatures=list(d.signatures))
                return False
            ok = await self._post_with_retries(d, "delivered")
            if ok and d.duplicate:
                await self._post_with_retries(d, "duplicates")
            return ok
        finally:
            self._bump(pending=-1)

    async def _post_with_retries(self, d: Delivery, counter: str) -> bool:
        for attempt in range(self.max_retries + 1):
            if attempt:
                await trio.sleep(self.retry_interval_s)
                self._bump(retried=1)
            self.faults.count()
            self._bump(attempts=1)
            status = await self._post(d.body, self.urls[(d.number + attempt) % len(self.urls)])
            if status is not None and 200 <= status < 300:
                with self._lock:
                    self._acked.update(d.signatures)
                self._bump(**{counter: 1})
                return True
            log.info("helius_delivery_failed", delivery=d.number, attempt=attempt + 1, status=status)
        self._bump(dropped=1)
        log.warning("helius_delivery_dropped", delivery=d.number, signatures=list(d.signatures))
        return False

    async def _post(self, body: bytes, url: str | None = None) -> int | None:
        """One POST; the status, or None on a timeout or a transport error."""
        headers = {"Authorization": self.secret, "Content-Type": "application/json", "User-Agent": "helius-sandbox"}
        client = self._client
        try:
            with trio.move_on_after(self.timeout_s):
                if client is not None:
                    return (await client.post(url or self.url, content=body, headers=headers)).status_code
                async with httpx.AsyncClient(timeout=self.timeout_s) as own:
                    return (await own.post(url or self.url, content=body, headers=headers)).status_code
        except httpx.HTTPError as exc:
            log.info("helius_post_error", error=repr(exc))
            return None
        return None  # timed out
