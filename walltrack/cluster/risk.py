"""Global caps and breakers across nodes: **one owner for the risk state**.

The node holding the `risk` lease runs the one `RiskActor` (rebuilt from the database when it takes the lease:
the same `rebuild` as after a restart). Every other node's risk child is a `RemoteRisk` proxy:

- `ReserveEntry` → NATS request `walltrack.risk.reserve`; the owner's actor answers `EntryDecision`, told to a
  one-shot reply channel (actors/reply.py) there, and the answer is told to the asking wallet (`reply_to`) here.
  While the lease moves there is no responder: the request is retried for up to 8 s; the wallet's own timer
  (`Ports.reservation_timeout_s`) refuses the entry after that (`risk:unavailable`, fail closed). A retry is
  answered once (reservation ids).
- `ReservationBound`, `ReservationReleased`, `PositionClosed`, `TripBreaker` → JetStream `walltrack.risk.events`
  (acknowledged by the stream, retried, deduplicated by `Nats-Msg-Id`). A new owner creates its consumer of
  these events (deliver-new) *before* it reads the snapshot: what was published earlier is in the database
  already (each is published after its commit), what comes later is delivered; the handlers are idempotent.
- Every 10 s the owner reconciles its open exposure with the `positions` table: a position closed in the
  database but still counted gets its close (with its PnL, counted once: a close for a position not counted is
  ignored), an open position not counted gets its exposure. Whatever a dying node never published converges.
- The owner writes its tripped breakers to the state bucket; the other nodes read them into `Published.breakers`
  for /health and the panel.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import nats.errors
import nats.js.errors
import structlog
from nats.js import api

import pykka

from actors.directory import RISK
from actors.messages import PositionClosed, ReservationBound, ReservationReleased, ReserveEntry
from actors.reply import ReplyChannel
from actors.shell import STATE_QUERY
from walltrack.bridge import ask as asyncio_ask
from walltrack.bridge import asyncio_await
from walltrack.cluster import sql, wire
from walltrack.cluster.link import Subscriptions, concurrently
from walltrack.cluster.root import RiskOwner

log = structlog.get_logger("cluster")

RESERVE_BUDGET_S = 8.0  # the wallet gives up after Ports.reservation_timeout_s (10 s by default)
ANSWER_S = 5.0  # the owner's wait for its risk actor's answer (the requester asks again, or gives up)
RECONCILE_S = 10.0


def _msg_id(m: Any) -> str:
    if isinstance(m, ReservationBound):
        return f"bound:{m.reservation_id}:{m.position_id}"
    if isinstance(m, ReservationReleased):
        return f"released:{m.reservation_id}"
    if isinstance(m, PositionClosed):
        return f"closed:{m.position_id}"
    return f"trip:{m.name}:{m.reason}"


class RiskLink:
    def __init__(self, link: Any, store: Any, published: Any) -> None:
        self._link, self._store, self._published = link, store, published
        self.root: Any = None  # set once the root runs: the risk child's supervisor (RiskOwner)
        self.directory: Any = None  # set once the root runs: where the risk actor is reached (actors/directory.py)
        self.leading = False
        self._tasks: list[asyncio.Task] = []
        self._subs = Subscriptions(link)
        self._written: Any = None

    # -- any node: the RemoteRisk proxy's calls (from its actor thread; never blocking) ---------------------------
    def reserve(self, m: ReserveEntry) -> None:
        self._link.spawn(self._reserve(m), "risk_reserve")

    def forward(self, m: Any) -> None:
        self._link.spawn(self._forward(m), "risk_event")

    async def _reserve(self, m: ReserveEntry) -> None:
        body, deadline = wire.encode(m), time.monotonic() + RESERVE_BUDGET_S
        while time.monotonic() < deadline:
            try:
                answer = await self._link.nc.request(wire.RISK_RESERVE, body, timeout=2)
            except nats.errors.NoRespondersError:  # the lease is moving: ask again shortly
                await asyncio.sleep(0.25)
                continue
            except (nats.errors.TimeoutError, asyncio.TimeoutError, nats.errors.Error):
                continue
            if m.reply_to is not None:
                try:
                    m.reply_to.tell(wire.decode(answer.data))
                except pykka.ActorDeadError:
                    pass  # the wallet stopped meanwhile: its successor asks again
            return
        log.warning("risk_owner_unreachable", reservation=m.reservation_id, after_s=RESERVE_BUDGET_S)

    async def _forward(self, m: Any) -> None:
        body, deadline = wire.encode(m), time.monotonic() + 2 * self._link.lease_ttl_s
        while True:
            try:
                await self._link.js.publish(wire.RISK_EVENTS, body, headers={"Nats-Msg-Id": _msg_id(m)})
                return
            except (nats.errors.Error, asyncio.TimeoutError, OSError) as exc:
                if time.monotonic() > deadline:  # the owner's reconcile brings it from the database
                    log.warning("risk_event_unsent", event=type(m).__name__, error=repr(exc))
                    return
                await asyncio.sleep(0.25)

    # -- the owner -------------------------------------------------------------------------------------------
    async def lead(self, revision: int) -> None:
        name = f"risk-{self._link.node}-{revision}"
        await self._link.js.add_consumer(wire.RISK_STREAM, api.ConsumerConfig(
            name=name, filter_subject=wire.RISK_EVENTS, deliver_policy=api.DeliverPolicy.NEW,
            ack_policy=api.AckPolicy.EXPLICIT, ack_wait=30, inactive_threshold=60))
        events = await self._link.js.pull_subscribe_bind(consumer=name, stream=wire.RISK_STREAM)
        self.leading = True
        self.root.tell(RiskOwner(True))  # rebuilt from the database after the consumer exists
        await self._subs.add("reserve", wire.RISK_RESERVE, concurrently(self._answer))
        self._tasks = [asyncio.ensure_future(self._events(events)), asyncio.ensure_future(self._reconcile())]

    def halt(self) -> None:
        """Stop acting as the owner at once (the lease is lost)."""
        self.leading = False
        for task in self._tasks:
            task.cancel()
        self._tasks = []
        if self.root is not None:
            self.root.tell(RiskOwner(False))

    async def step_down(self) -> None:
        self.halt()
        await self._subs.drop("reserve")

    async def _answer(self, msg: Any) -> None:
        if not self.leading:
            return
        channel = ReplyChannel(self.root.actor_inbox.runtime)
        try:
            self.directory.tell(RISK, wire.decode(msg.data, reply_to=channel.ref))
            decision = await asyncio.wait_for(asyncio_await(channel.future), ANSWER_S)
        except asyncio.TimeoutError:
            return  # the requester asks again, or gives up (fail closed)
        finally:
            channel.close()
        await msg.respond(wire.encode(decision))

    async def _events(self, sub: Any) -> None:
        while True:
            try:
                msgs = await sub.fetch(64, timeout=5)
            except (asyncio.TimeoutError, nats.errors.TimeoutError):
                continue
            except (nats.errors.Error, OSError) as exc:
                log.warning("risk_events_fetch_failed", error=repr(exc))
                await asyncio.sleep(0.5)
                continue
            for msg in msgs:
                try:
                    event = wire.decode(msg.data)
                except (ValueError, TypeError):
                    await msg.term()
                    continue
                self.directory.tell(RISK, event)
                await msg.ack()

    async def _reconcile(self) -> None:
        await asyncio.sleep(RECONCILE_S / 2)  # once soon after taking over: events a dead node never sent
        while True:
            try:
                await self.reconcile_once()
            except Exception as exc:  # noqa: BLE001 - the next round tries again
                log.warning("risk_reconcile_failed", error=repr(exc))
            await asyncio.sleep(RECONCILE_S)

    async def reconcile_once(self) -> int:
        ref = self.directory.lookup(RISK)
        state = await asyncio_ask(ref, STATE_QUERY, timeout=3) if ref is not None else None
        if state is None or not hasattr(state, "open"):
            return 0
        counted = set(state.open)
        rows = await asyncio_await(self._store.submit(lambda c: sql.risk_rows(c, sorted(counted))))
        fixes: list[Any] = []
        for r in rows:
            if r["closed"] and r["id"] in counted:
                fixes.append(PositionClosed(r["id"], r["wallet"], r["token_mint"], mode=r["mode"], quote_mint=r["quote_mint"],
                                            realized_pnl_quote=None if r["realized_pnl_quote"] is None else int(r["realized_pnl_quote"]),
                                            exit_reason=r["exit_reason"]))
            elif not r["closed"] and r["id"] not in counted:
                fixes.append(ReservationBound(f"reconcile:{r['id']}", r["id"], r["wallet"], r["token_mint"], r["quote_mint"],
                                              int(r["entry_quote_amount"])))
        for fix in fixes:
            self.directory.tell(RISK, fix)
        if fixes:
            log.warning("risk_reconciled", fixes=len(fixes), closes=sum(isinstance(f, PositionClosed) for f in fixes))
        return len(fixes)

    # -- breakers, for every node's /health ------------------------------------------------------------------
    async def sync_breakers(self) -> None:
        kv = self._link.state
        if self.leading:
            current = list(self._published.breakers)
            if current != self._written:
                await kv.put("breakers", json.dumps(current).encode())
                self._written = current
            return
        self._written = None
        try:
            entry = await kv.get("breakers")
        except nats.js.errors.KeyNotFoundError:
            return
        self._published.breakers = tuple(json.loads(entry.value))
