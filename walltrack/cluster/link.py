"""The NATS connection of a node, on its own asyncio thread (nats-py is asyncio; `walltrack.bridge.AsyncioThread`),
and the JetStream objects every node declares the same way (idempotent: the first node creates them, the others
find them; a node configured differently — replicas, lease TTL, partition count — refuses to start):

| object                 | what                                                                                   |
|------------------------|----------------------------------------------------------------------------------------|
| WALLTRACK_DELIVERIES   | stream, `walltrack.deliveries.<p>`, work-queue retention (a message lives until acked), |
|                        | R=CLUSTER_REPLICAS, file storage, 2 min duplicate window on `Nats-Msg-Id`              |
| deliveries-NNN         | one durable pull consumer per partition: explicit acks, ack_wait 30 s, max_ack_pending |
|                        | 512 (a stuck partition stops taking more), redelivery to whoever owns it next          |
| WALLTRACK_RISK         | stream, `walltrack.risk.events`, limits retention (1 h): the risk owner's inbox         |
| walltrack_leases       | KV, TTL = CLUSTER_LEASE_TTL_S, history 1, memory storage: owners and heartbeats         |
| walltrack_state        | KV: the partition count, the risk owner's tripped breakers                             |
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from typing import Any, Awaitable, Callable, TypeVar
from urllib.parse import urlsplit

import nats
import nats.js.errors
import structlog
from nats.js import api

from walltrack.bridge import AsyncioThread
from walltrack.cluster import wire
from walltrack.settings import ConfigError

T = TypeVar("T")
log = structlog.get_logger("cluster")

ACK_WAIT_S = 30.0
MAX_ACK_PENDING = 512


def concurrently(handler: Callable[[Any], Awaitable[None]]) -> Callable[[Any], Awaitable[None]]:
    """A subscription callback that handles each message in its own task (nats-py awaits callbacks one by one)."""
    async def cb(msg: Any) -> None:
        asyncio.ensure_future(handler(msg))

    return cb


class Subscriptions:
    """Core NATS subscriptions by key (a partition, or a name), added and dropped as leases come and go."""

    def __init__(self, link: "Link") -> None:
        self._link = link
        self._subs: dict[Any, Any] = {}

    async def add(self, key: Any, subject: str, cb: Callable[[Any], Awaitable[None]]) -> None:
        if key not in self._subs:
            self._subs[key] = await self._link.nc.subscribe(subject, cb=cb)

    async def drop(self, key: Any) -> None:
        sub = self._subs.pop(key, None)
        if sub is not None:
            try:
                await sub.unsubscribe()
            except nats.errors.Error:
                pass  # the connection is gone: so is the subscription


def servers(url: str) -> list[str]:
    return [u.strip() for u in url.split(",") if u.strip()]


def shown(url: str) -> str:
    """The servers without any credentials, for messages."""
    return ",".join(f"{p.scheme}://{p.hostname}:{p.port or 4222}" for p in map(urlsplit, servers(url)))


class Link:
    def __init__(self, url: str, node: str, *, replicas: int, partitions: int, lease_ttl_s: float) -> None:
        self.url, self.node = url, node
        self.replicas, self.partitions, self.lease_ttl_s = replicas, partitions, lease_ttl_s
        self.thread = AsyncioThread(name="walltrack-nats")
        self.nc: Any = None
        self.js: Any = None
        self.leases: Any = None  # KeyValue
        self.state: Any = None  # KeyValue

    # -- the loop ------------------------------------------------------------------------------------------
    def submit(self, coro: Awaitable[T]) -> concurrent.futures.Future[T]:
        return self.thread.submit(coro)

    def spawn(self, coro: Awaitable[Any], what: str) -> None:
        """Run `coro` on the NATS loop without waiting for it; a failure is one log line."""
        def done(f: concurrent.futures.Future) -> None:
            if not f.cancelled() and f.exception() is not None:
                log.warning("cluster_task_failed", task=what, error=repr(f.exception()))

        self.submit(coro).add_done_callback(done)

    @property
    def connected(self) -> bool:
        return self.nc is not None and self.nc.is_connected

    # -- open and close (blocking: the composition root only) -------------------------------------------------
    def open(self, timeout: float = 30) -> "Link":
        try:
            self.thread.run(self._open(), timeout)
        except ConfigError:
            self.close()
            raise
        except Exception as exc:  # noqa: BLE001 - unreachable or refused: one line naming the setting
            self.close()
            raise ConfigError(f"CLUSTER_NATS_URL: cannot use JetStream at {shown(self.url)} "
                              f"({type(exc).__name__}: {exc})") from None
        return self

    def close(self) -> None:
        if self.nc is not None:
            try:
                self.thread.run(self.nc.close(), timeout=10)
            except Exception as exc:  # noqa: BLE001 - closing is best effort at shutdown
                log.warning("nats_close_failed", error=repr(exc))
        self.thread.stop()

    async def _open(self) -> None:
        async def error(exc: Exception) -> None:
            log.warning("nats_error", error=repr(exc))

        async def disconnected() -> None:
            log.warning("nats_disconnected", node=self.node)

        async def reconnected() -> None:
            log.info("nats_reconnected", node=self.node, server=shown(self.nc.connected_url.geturl()))

        self.nc = await nats.connect(servers(self.url), name=f"walltrack-{self.node}", connect_timeout=3,
                                     allow_reconnect=True, max_reconnect_attempts=-1, reconnect_time_wait=0.5,
                                     ping_interval=5, max_outstanding_pings=3, error_cb=error,
                                     disconnected_cb=disconnected, reconnected_cb=reconnected)
        self.js = self.nc.jetstream(timeout=5)
        for attempt in range(40):  # a stream just created (by this node or another) elects its leader first
            try:
                await self._declare()
                break
            except (nats.js.errors.NoStreamResponseError, nats.js.errors.ServiceUnavailableError,
                    nats.errors.TimeoutError, asyncio.TimeoutError) as exc:
                if attempt == 39:
                    raise
                log.info("jetstream_not_ready", node=self.node, error=repr(exc))
                await asyncio.sleep(0.5)
        log.info("nats_connected", node=self.node, servers=shown(self.url), replicas=self.replicas,
                 partitions=self.partitions, lease_ttl_s=self.lease_ttl_s)

    async def _declare(self) -> None:
        r = self.replicas
        await self._stream(api.StreamConfig(
            name=wire.DELIVERIES_STREAM, subjects=["walltrack.deliveries.*"], retention=api.RetentionPolicy.WORK_QUEUE,
            storage=api.StorageType.FILE, num_replicas=r, max_age=86_400, duplicate_window=120))
        await self._stream(api.StreamConfig(
            name=wire.RISK_STREAM, subjects=[wire.RISK_EVENTS], retention=api.RetentionPolicy.LIMITS,
            storage=api.StorageType.FILE, num_replicas=r, max_age=3_600, duplicate_window=120))
        self.leases = await self._bucket(api.KeyValueConfig(
            bucket=wire.LEASES_BUCKET, history=1, ttl=self.lease_ttl_s, replicas=r, storage=api.StorageType.MEMORY,
            direct=True))
        self.state = await self._bucket(api.KeyValueConfig(bucket=wire.STATE_BUCKET, history=1, replicas=r, direct=True))
        await self._check_partitions()
        await asyncio.gather(*(self.js.add_consumer(wire.DELIVERIES_STREAM, api.ConsumerConfig(
            durable_name=wire.consumer_name(p), filter_subject=wire.deliveries_subject(p),
            ack_policy=api.AckPolicy.EXPLICIT, ack_wait=ACK_WAIT_S, max_ack_pending=MAX_ACK_PENDING,
            deliver_policy=api.DeliverPolicy.ALL)) for p in range(self.partitions)))

    async def _stream(self, config: api.StreamConfig) -> None:
        try:
            await self.js.add_stream(config)
        except nats.js.errors.ServiceUnavailableError:
            raise
        except nats.js.errors.APIError as exc:
            raise ConfigError(f"JetStream refused stream {config.name} ({exc.description}): CLUSTER_REPLICAS="
                              f"{self.replicas} needs that many JetStream servers, and every node the same settings") from None

    async def _bucket(self, config: api.KeyValueConfig) -> Any:
        try:
            return await self.js.create_key_value(config)
        except nats.js.errors.ServiceUnavailableError:
            raise
        except nats.js.errors.APIError as exc:
            raise ConfigError(f"JetStream refused bucket {config.bucket} ({exc.description}): every node needs the "
                              "same CLUSTER_LEASE_TTL_S and CLUSTER_REPLICAS") from None

    async def _check_partitions(self) -> None:
        try:
            await self.state.create("partitions", str(self.partitions).encode())
        except nats.js.errors.KeyWrongLastSequenceError:
            found = int((await self.state.get("partitions")).value)
            if found != self.partitions:
                raise ConfigError(f"CLUSTER_PARTITIONS={self.partitions}, but this cluster runs {found} partitions: "
                                  "every node must use the same count") from None
