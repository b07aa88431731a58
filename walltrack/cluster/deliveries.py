"""Deliveries through JetStream: appended by any gateway, taken by the owner of each wallet's partition.

Gateway (any node), after the delivery is committed to `webhook_inbox`:
    one message per partition the delivery's watched wallets fall in, on `walltrack.deliveries.<p>`, with
    `Nats-Msg-Id: <signature>:<p>` (a retried POST inside the 2-minute window is the same message); every
    PubAck awaited; the acknowledgement recorded in `cluster_acks`; only then 200. A failure answers 503 and
    Helius retries (the inbox row, if stored, is replayed by the partition's owner anyway).

Owner of partition p (the lease), one pull consumer `deliveries-<p>`:
    fetch → a redelivery (delivered before, maybe processed by a node that died before acking) is checked against
    `observations` first and acked at once when every wallet has one → otherwise handed to the actors like a
    webhook (`Deliver`). The message is acked when every wallet it names has its observation **committed**:
    the store's `record_observation` future (a fresh row or a duplicate, which is a committed row too) tells
    `observed(signature, wallet)`. Losing the partition stops the consumer and naks what is in flight, so its
    next owner gets it at once; the owner also replays the inbox on adoption, so nothing waits for `ack_wait`.
"""

from __future__ import annotations

import asyncio
import json
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable

import nats.errors
import structlog

from actors.messages import Observation, RecordResult
from walltrack.bridge import asyncio_await
from walltrack.cluster import sql, wire

log = structlog.get_logger("cluster")

Delivery = tuple[str, str, list[str]]  # (signature, transaction JSON, watched wallets) as the gateway stores it
FETCH_BATCH = 64


@dataclass
class _InFlight:
    wallets: set[str]
    msgs: list[Any] = field(default_factory=list)  # the message, and any redelivery of it taken meanwhile


class AckingStore:
    """The store as the actors see it, telling `observed` once each observation is committed."""

    def __init__(self, store: Any, observed: Callable[[str, str], None]) -> None:
        self._store, self._observed = store, observed

    def record_observation(self, obs: Observation) -> Future[RecordResult]:
        future = self._store.record_observation(obs)
        future.add_done_callback(
            lambda f: not f.cancelled() and f.exception() is None and self._observed(obs.signature, obs.wallet))
        return future

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


class Deliveries:
    def __init__(self, link: Any, store: Any, hand_out: Callable[[list[tuple[str, str, tuple[str, ...], float]]], None],
                 known: Callable[[], frozenset[str]], refresh: Callable[[], Any]) -> None:
        self._link, self._store = link, store
        self._hand_out, self._known, self._refresh = hand_out, known, refresh
        self._in_flight: dict[tuple[int, str], _InFlight] = {}
        self._consumers: dict[int, asyncio.Task] = {}
        self.published = self.acked = self.taken = 0

    # -- the gateway's side (on the NATS loop) ----------------------------------------------------------------
    async def publish(self, items: list[Delivery]) -> None:
        count = self._link.partitions
        messages = []
        for signature, payload, wallets in items:
            by_partition: dict[int, list[str]] = {}
            for w in wallets:
                by_partition.setdefault(wire.partition(w, count), []).append(w)
            for p, ws in by_partition.items():
                body = json.dumps({"signature": signature, "wallets": ws, "payload": payload}).encode()
                messages.append(self._link.js.publish(wire.deliveries_subject(p), body,
                                                      headers={"Nats-Msg-Id": f"{signature}:{p}"}))
        await asyncio.gather(*messages)  # every PubAck: the stream (and its replicas) holds them
        node = self._link.node
        await asyncio_await(self._store.submit(lambda c: sql.record_acks(c, [i[0] for i in items], node)))
        self.published += len(messages)

    # -- the owner's side --------------------------------------------------------------------------------------
    def observed(self, signature: str, wallet: str) -> None:
        """An observation is committed (any thread)."""
        loop = self._link.thread.loop
        if not loop.is_closed():
            loop.call_soon_threadsafe(self._settle, wire.partition(wallet, self._link.partitions), signature, wallet)

    def _settle(self, p: int, signature: str, wallet: str) -> None:
        entry = self._in_flight.get((p, signature))
        if entry is None:
            return
        entry.wallets.discard(wallet)
        if not entry.wallets:
            del self._in_flight[(p, signature)]
            for msg in entry.msgs:
                self._link.spawn(msg.ack(), "ack")
            self.acked += 1

    def follow(self, p: int) -> None:
        if p not in self._consumers:
            self._consumers[p] = asyncio.ensure_future(self._consume(p))

    def halt(self, p: int) -> list[Any]:
        """Stop taking partition p (at once, no I/O); returns the messages still in flight."""
        task = self._consumers.pop(p, None)
        if task is not None:
            task.cancel()
        keys = [k for k in self._in_flight if k[0] == p]
        return [msg for k in keys for msg in self._in_flight.pop(k).msgs]

    async def unfollow(self, p: int) -> None:
        for msg in self.halt(p):  # to its next owner at once, not after ack_wait
            try:
                await msg.nak()
            except nats.errors.Error:
                pass

    async def _consume(self, p: int) -> None:
        sub = None
        while sub is None:
            try:
                sub = await self._link.js.pull_subscribe_bind(durable=wire.consumer_name(p), stream=wire.DELIVERIES_STREAM)
            except (nats.errors.Error, OSError) as exc:
                log.warning("deliveries_bind_failed", partition=p, error=repr(exc))
                await asyncio.sleep(0.5)
        try:
            while True:
                try:
                    msgs = await sub.fetch(FETCH_BATCH, timeout=5)
                except (asyncio.TimeoutError, nats.errors.TimeoutError):
                    continue
                except (nats.errors.Error, OSError) as exc:
                    log.warning("deliveries_fetch_failed", partition=p, error=repr(exc))
                    await asyncio.sleep(0.5)
                    continue
                for msg in msgs:
                    await self._take(p, msg)
        finally:
            try:
                await sub.unsubscribe()
            except Exception:  # noqa: BLE001 - the connection may be gone already
                pass

    async def _take(self, p: int, msg: Any) -> None:
        try:
            body = json.loads(msg.data)
            signature, wallets, payload = body["signature"], list(body["wallets"]), body["payload"]
        except (ValueError, KeyError, TypeError):
            log.error("delivery_message_invalid", partition=p, subject=msg.subject)
            await msg.term()
            return
        self.taken += 1
        if msg.metadata.num_delivered > 1:  # delivered before: committed by a node that died before acking?
            wallets = await asyncio_await(self._store.submit(lambda c: sql.unobserved(c, signature, wallets)))
            if not wallets:
                await msg.ack()
                self.acked += 1
                return
        entry = self._in_flight.get((p, signature))
        if entry is not None:  # still being decided here: ack both once it is
            entry.msgs.append(msg)
            return
        if not set(wallets) <= self._known():  # added to the watchlist a moment ago: tell the root first
            await self._refresh()
        self._in_flight[(p, signature)] = _InFlight(set(wallets), [msg])
        stamp = getattr(msg.metadata, "timestamp", None)  # when the stream stored it: the gateway's receipt
        age_s = max(0.0, time.time() - stamp.timestamp()) if stamp is not None else 0.0
        self._hand_out([(signature, payload, tuple(wallets), age_s)])

    def stats(self) -> dict[str, int]:
        return {"published": self.published, "taken": self.taken, "acked": self.acked, "in_flight": len(self._in_flight)}
