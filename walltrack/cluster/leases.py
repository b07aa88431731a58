"""Ownership through JetStream KV leases: each partition, the risk actor and the price poller has one owner.

A lease is a key in `walltrack_leases` (TTL = CLUSTER_LEASE_TTL_S, history 1) whose value is the owner's node id:

- **claim**: `create(key)` succeeds only if the key is absent (never written, expired, or deleted);
- **renew**: every TTL/4, `update(key, last=revision)` — revision-checked, so a lease that expired and was taken
  by another node can never be renewed by its former owner (the update fails: the lease is lost);
- **expire**: a node that dies stops renewing; the server drops its keys TTL after their last renewal and the
  survivors claim them on their next round;
- **self-fence**: a node that could not renew a lease within 0.6 x TTL (its own monotonic clock, counted from when
  it *sent* the last successful renewal: one failed renewal is tolerated, two are not) gives it up locally —
  stops the actors — before the server lets anyone else claim it, so two nodes never run the same partition (as
  long as a node is not frozen for 0.4 x TTL);
- **balance**: every node heartbeats `node.<id>`; a node holds at most ceil(partitions / live nodes) partitions,
  claims free ones up to that share and surrenders its extras (a few per round) when nodes join. Preferences
  are rendezvous hashes of (node, partition), so the assignment is stable and spread.

Rounds are bounded (every KV call has a timeout well under the TTL). Changes are handed to `on_change` in order:
`Acquired(key)`, `Surrender(key)` (stop the actors, then call `release(key)`), `Lost(key)` (stop at once).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import time
from dataclasses import dataclass
from typing import Any, Callable

import nats.errors
import nats.js.errors
import structlog

from walltrack.cluster import wire

log = structlog.get_logger("cluster")

FENCE_AT = 0.6  # of the TTL: a lease not renewed for this long is given up locally


@dataclass(frozen=True)
class Acquired:
    key: str
    revision: int


@dataclass(frozen=True)
class Surrender:
    key: str


@dataclass(frozen=True)
class Lost:
    key: str
    reason: str


@dataclass
class Held:
    revision: int
    renewed_at: float  # monotonic time the last successful renewal (or the claim) was sent
    releasing: bool = False


def score(node: str, key: str) -> int:
    """Rendezvous (highest random weight) hash: how much `node` wants `key`."""
    return int.from_bytes(hashlib.blake2b(f"{node}|{key}".encode(), digest_size=8).digest(), "big")


def plan(node: str, mine: set[int], free: set[int], nodes: int, total: int, max_moves: int) -> tuple[list[int], list[int]]:
    """(partitions to claim, partitions to surrender): up to the fair share ceil(total / nodes), most wanted first."""
    fair = math.ceil(total / max(1, nodes))
    if len(mine) > fair:
        extras = sorted(mine, key=lambda p: score(node, wire.partition_key(p)))
        return [], extras[:min(max_moves, len(mine) - fair)]
    wanted = sorted(free, key=lambda p: score(node, wire.partition_key(p)), reverse=True)
    return wanted[:fair - len(mine)], []


class Leases:
    def __init__(self, kv: Any, js: Any, nc: Any, node: str, partitions: int, ttl_s: float,
                 on_change: Callable[[Any], None]) -> None:
        self._kv, self._js, self._nc, self.node, self.partitions = kv, js, nc, node, partitions
        self.ttl_s, self.renew_s = ttl_s, ttl_s / 4
        self._on_change = on_change
        self.held: dict[str, Held] = {}
        self._free_rounds: dict[str, int] = {}
        self.nodes = 1
        self.rounds = 0
        self._rescan = False

    def partitions_held(self) -> set[int]:
        return {p for k, h in list(self.held.items())  # read from other threads too (/health): a copy first
                if (p := wire.key_partition(k)) is not None and not h.releasing}

    def owns(self, key: str) -> bool:
        h = self.held.get(key)
        return h is not None and not h.releasing

    # -- the loop ------------------------------------------------------------------------------------------
    async def run(self) -> None:
        fence = asyncio.ensure_future(self._fence_loop())
        try:
            await self._rounds()
        finally:
            fence.cancel()

    async def _fence_loop(self) -> None:
        while True:
            self._fence()
            await asyncio.sleep(0.1)

    async def _rounds(self) -> None:
        while True:
            started = time.monotonic()
            try:
                await asyncio.wait_for(self.round(), timeout=self.renew_s * 2)
            except asyncio.TimeoutError:
                log.warning("lease_round_slow", node=self.node, after_s=self.renew_s * 2)
            except (nats.errors.Error, OSError) as exc:
                log.warning("lease_round_failed", node=self.node, error=repr(exc))
            self.rounds += 1
            await asyncio.sleep(max(0.0, self.renew_s - (time.monotonic() - started)))

    async def round(self) -> None:
        sent = time.monotonic()
        await self._call(self._kv.put(wire.node_key(self.node), json.dumps({"leases": len(self.held)}).encode()))
        await asyncio.gather(*(self._renew(k, h, sent) for k, h in list(self.held.items())))
        if self.rounds == 0:
            return  # one round of heartbeats first, so a node starting beside others sees them before claiming
        free = await self._scan()
        claim, surrender = plan(self.node, self.partitions_held(), {p for k in free if (p := wire.key_partition(k)) is not None},
                                self.nodes, self.partitions, max_moves=max(1, self.partitions // 8))
        for p in surrender:
            self.held[wire.partition_key(p)].releasing = True
            self._on_change(Surrender(wire.partition_key(p)))
        for key in [wire.partition_key(p) for p in claim]:
            await self._claim(key)
        for key in (wire.RISK_KEY, wire.PRICES_KEY):
            if key in free and self._single_wanted(key):  # asked after the other one may have been claimed
                await self._claim(key)
        for key in (wire.RISK_KEY, wire.PRICES_KEY):
            self._free_rounds[key] = self._free_rounds.get(key, 0) + 1 if key in free else 0

    def _single_wanted(self, key: str) -> bool:
        """Risk and prices spread over two nodes when there are two: the other singleton's holder waits a round."""
        holds_other = any(k in self.held for k in (wire.RISK_KEY, wire.PRICES_KEY) if k != key)
        return not holds_other or self.nodes == 1 or self._free_rounds.get(key, 0) >= 1

    def _fence(self) -> None:
        now = time.monotonic()
        for key, h in list(self.held.items()):
            if now - h.renewed_at > self.ttl_s * FENCE_AT:
                del self.held[key]
                log.warning("lease_fenced", node=self.node, lease=key, unrenewed_s=round(now - h.renewed_at, 2))
                self._on_change(Lost(key, "not renewed in time"))

    async def _renew(self, key: str, h: Held, sent: float) -> None:
        try:
            h.revision = await self._call(self._kv.update(key, self.node.encode(), last=h.revision))
            h.renewed_at = sent
        except nats.js.errors.KeyWrongLastSequenceError:  # expired and taken, or deleted: no longer ours
            if self.held.pop(key, None) is not None:
                log.warning("lease_lost", node=self.node, lease=key)
                self._on_change(Lost(key, "taken over"))
        except (asyncio.TimeoutError, nats.errors.Error, OSError) as exc:
            log.info("lease_renew_failed", node=self.node, lease=key, error=repr(exc))  # the fence decides

    async def _claim(self, key: str) -> None:
        sent = time.monotonic()
        try:
            revision = await self._call(self._kv.create(key, self.node.encode()))
        except (nats.js.errors.KeyWrongLastSequenceError, asyncio.TimeoutError, nats.errors.Error, OSError):
            return  # another node was faster (or the store did not answer): next round
        self.held[key] = Held(revision, sent)
        log.info("lease_acquired", node=self.node, lease=key, revision=revision, nodes=self.nodes)
        self._on_change(Acquired(key, revision))

    async def _free(self, key: str) -> bool:
        try:
            await self._call(self._kv.get(key))
            return False
        except nats.js.errors.KeyNotFoundError:  # never written, expired, or deleted
            return True
        except (asyncio.TimeoutError, nats.errors.Error, OSError):
            return False

    async def _scan(self) -> set[str]:
        """The lease keys nobody holds, and the live nodes. One stream-info request lists the keys that have a
        message: an absent key expired (or was never taken). A key given back keeps a delete marker until it ages
        out, so every TTL — or at once when a node announces a release — the present keys are read one by one."""
        info = await self._call(self._js.stream_info(f"KV_{wire.LEASES_BUCKET}",
                                                     subjects_filter=f"$KV.{wire.LEASES_BUCKET}.>"))
        present = {subject.split(".", 2)[2] for subject in info.state.subjects or {}}
        self.nodes = max(1, sum(1 for k in present if k.startswith("node.")))
        keys = [wire.partition_key(p) for p in range(self.partitions)] + [wire.RISK_KEY, wire.PRICES_KEY]
        candidates = [k for k in keys if k not in self.held]
        free = {k for k in candidates if k not in present}
        if self._rescan or self.rounds % 4 == 0:
            self._rescan = False
            maybe = [k for k in candidates if k in present]
            free |= {k for k, ok in zip(maybe, await asyncio.gather(*(self._free(k) for k in maybe))) if ok}
        return free

    async def listen(self) -> None:
        """Hear other nodes' releases (a partition handed over is claimed on the next round, not after the TTL)."""
        async def released(msg: Any) -> None:
            self._rescan = True

        await self._nc.subscribe(wire.LEASES_RELEASED, cb=released)

    async def _call(self, coro: Any) -> Any:
        return await asyncio.wait_for(coro, timeout=self.renew_s)

    # -- giving leases back --------------------------------------------------------------------------------------
    async def release(self, key: str) -> None:
        """Delete a lease we hold (revision-checked): the next round of any node may claim it at once."""
        h = self.held.pop(key, None)
        if h is None:
            return
        try:
            await self._call(self._kv.delete(key, last=h.revision))
            log.info("lease_released", node=self.node, lease=key)
            await self._nc.publish(wire.LEASES_RELEASED, key.encode())
        except (asyncio.TimeoutError, nats.errors.Error, OSError) as exc:
            log.info("lease_release_failed", node=self.node, lease=key, error=repr(exc))  # it expires by itself

    async def leave(self) -> None:
        for key in list(self.held):
            await self.release(key)
        try:
            await self._call(self._kv.delete(wire.node_key(self.node)))
        except (asyncio.TimeoutError, nats.errors.Error, OSError):
            pass
