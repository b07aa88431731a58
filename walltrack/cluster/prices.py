"""Prices across nodes: **one poller**, ticks published by partition.

The node holding the `prices` lease runs the usual price monitor (`Services.price_monitor`: Jupiter, then
DexScreener, one rate budget, marks stored in `token_prices`) over every open position of the cluster — read
from the `positions` table each round, since no node holds them all — and publishes each round's ticks on
`intelligence.prices.<p>` for each partition holding a position in the token, plus SOL on `intelligence.prices.sol`.
Ticks are core NATS (at most once): a lost tick is superseded by the next round, as with a failed poll.

Every node listens to the price subjects of the partitions it owns (and to SOL, for the risk actor wherever it
runs) and tells its root `PriceTicks`, which routes them to its position actors exactly as in one process.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import structlog
import trio

from actors.messages import PriceTick, PriceTicks
from walltrack.bridge import trio_await
from walltrack.cluster import sql, wire
from walltrack.cluster.link import Subscriptions

log = structlog.get_logger("cluster")

SOL_MINT = "So11111111111111111111111111111111111111112"


class PriceFeed:
    def __init__(self, link: Any, store: Any, services: Any, runtime: Any, interval_s: float) -> None:
        self._link, self._store, self._services, self._runtime = link, store, services, runtime
        self._interval = interval_s
        self.root: Any = None
        self.open_mints: frozenset[str] = frozenset()  # read by the price monitor (as `Published.open_mints`)
        self._partitions: dict[str, frozenset[int]] = {}
        self._subs = Subscriptions(link)
        self._service: Any = None
        self.rounds = 0

    # -- every node ---------------------------------------------------------------------------------------------
    async def start(self) -> None:
        await self._subs.add("sol", wire.PRICES_SOL, self._on_ticks)

    async def follow(self, p: int) -> None:
        await self._subs.add(p, wire.prices_subject(p), self._on_ticks)

    async def unfollow(self, p: int) -> None:
        await self._subs.drop(p)

    async def _on_ticks(self, msg: Any) -> None:
        try:
            ticks = wire.decode_ticks(msg.data)
        except (ValueError, TypeError, KeyError):
            log.warning("price_ticks_invalid", subject=msg.subject)
            return
        if self.root is not None and ticks:
            self.root.tell(PriceTicks(ticks))

    # -- the price poller (the `prices` lease) --------------------------------------------------------------------
    @property
    def leading(self) -> bool:
        return self._service is not None

    async def lead(self) -> None:
        if self._service is None:  # start_service waits for the service to report ready: off this loop
            self._service = await asyncio.to_thread(self._runtime.start_service, self._monitor())

    async def step_down(self) -> None:
        service, self._service = self._service, None
        if service is not None:
            await asyncio.to_thread(service.stop)

    def _monitor(self) -> Any:
        inner = self._services.price_monitor(self, self)  # `self` is both its root (tell) and its published mints

        async def main(task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
            async with trio.open_nursery() as nursery:
                await nursery.start(self._refresh)
                await nursery.start(inner)
                task_status.started()

        return main

    async def _refresh(self, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Every round: which tokens are held, and in which partitions (trio, the monitor's runtime)."""
        started = False
        while True:
            try:
                pairs = await trio_await(self._store.submit(sql.open_pairs))
                parts: dict[str, set[int]] = {}
                for wallet, mint in pairs:
                    parts.setdefault(mint, set()).add(wire.partition(wallet, self._link.partitions))
                self._partitions = {m: frozenset(ps) for m, ps in parts.items()}
                self.open_mints = frozenset(parts)
            except Exception as exc:  # noqa: BLE001 - the next round reads again
                log.warning("price_positions_unread", error=repr(exc))
            if not started:
                task_status.started()
                started = True
            await trio.sleep(self._interval)

    def tell(self, message: PriceTicks) -> None:
        """The monitor's round (trio thread): one batch per partition, then SOL."""
        by_partition: dict[int, list[PriceTick]] = {}
        for tick in message.ticks:
            for p in self._partitions.get(tick.mint, ()):
                by_partition.setdefault(p, []).append(tick)
        sol = next((t.sol_usd for t in message.ticks if t.sol_usd is not None), None)
        self.rounds += 1
        self._link.spawn(self._publish(by_partition, sol, max((t.at for t in message.ticks), default=0.0)), "prices")

    async def _publish(self, by_partition: dict[int, list[PriceTick]], sol: Decimal | None, at: float) -> None:
        for p, ticks in by_partition.items():
            await self._link.nc.publish(wire.prices_subject(p), wire.encode_ticks(tuple(ticks)))
        if sol is not None:
            await self._link.nc.publish(wire.PRICES_SOL, wire.encode_ticks((PriceTick(SOL_MINT, sol, sol, "sol", at),)))
