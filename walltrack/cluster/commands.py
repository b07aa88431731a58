"""Operator commands by key, and a node's status.

Position commands (close, close a fraction, move the stop) have no database form: they go to the actor that
decides them. The panel of any node looks up the position's wallet, and sends the command as a NATS request
on `walltrack.commands.<partition>`; only the node owning that partition subscribes, looks up the
position's actor in the directory, and answers with the actor's `CommandReply`. No responder means the partition is moving
between nodes: nothing was sent. (Watchlist, copy rules, breaker resets and the trading mode are database writes
with `NOTIFY`: every node hears them and acts only for what it owns — see `walltrack.cluster.root`.)

`walltrack.cluster.status.<node>` answers what a node runs (its root's `NodeStatus`, its leases).
"""

from __future__ import annotations

import json
from typing import Any, Callable

import nats.errors
import structlog

from actors.messages import CommandReply
from actors.shell import STATE_QUERY
from actors.supervisor import RISK
from walltrack.bridge import ask, asyncio_await
from walltrack.cluster import sql, wire
from walltrack.cluster.link import Subscriptions, concurrently
from walltrack.cluster.root import NodeStatus

log = structlog.get_logger("cluster")

ASK_S = 3.0


class NotOwned(Exception):
    """No node owns the position's partition right now (it is moving): nothing was sent."""


class Commands:
    def __init__(self, link: Any, store: Any, leases: Callable[[], dict[str, Any]]) -> None:
        self._link, self._store, self._leases = link, store, leases
        self.root: Any = None
        self.directory: Any = None  # the running actors (actors/directory.py), once the root runs
        self._subs = Subscriptions(link)

    async def start(self) -> None:
        await self._subs.add("status", wire.status_subject(self._link.node), concurrently(self._status))

    async def follow(self, p: int) -> None:
        await self._subs.add(p, wire.commands_subject(p), concurrently(self._command))

    async def unfollow(self, p: int) -> None:
        await self._subs.drop(p)

    # -- the owner -------------------------------------------------------------------------------------------
    async def _command(self, msg: Any) -> None:
        try:
            command = wire.decode(msg.data)
            pid = command.position_id
        except (ValueError, TypeError, AttributeError):
            await msg.respond(json.dumps({"error": "not a position command"}).encode())
            return
        try:
            ref = self.directory.lookup(("position", str(pid)))
            if ref is None:
                reply = CommandReply(pid, False, "not running (closed, or restarting): nothing was sent")
            else:
                reply = (await ask(ref, command, timeout=ASK_S)
                         or CommandReply(pid, False, f"does not take {type(command).__name__}"))
        except TimeoutError:
            reply = CommandReply(pid, False, f"did not answer within {ASK_S:g} s; it may still act — watch its journal")
        except Exception as exc:  # noqa: BLE001 - the actor died meanwhile
            reply = CommandReply(pid, False, f"could not take the command: {exc}")
        log.info("position_command", position_id=pid, command=type(command).__name__, ok=reply.ok, node=self._link.node)
        await msg.respond(wire.encode(reply))

    async def _status(self, msg: Any) -> None:
        try:
            status = await ask(self.root, NodeStatus(), timeout=ASK_S)
            if status.get("risk"):  # the risk owner: its running tally of realized PnL (the demo's equity check)
                ref = self.directory.lookup(RISK)
                state = await ask(ref, STATE_QUERY, timeout=ASK_S) if ref is not None else None
                status["risk_realized"] = getattr(state, "realized", None)
        except TimeoutError:
            status = {"error": "the root did not answer"}
        await msg.respond(json.dumps({"node": self._link.node, **self._leases(), **status}).encode())

    # -- any node's panel ------------------------------------------------------------------------------------
    async def send(self, position_id: int, command: Any, timeout: float = 2 * ASK_S + 1) -> CommandReply:
        """The command to the node owning the position's partition; its actor's reply. LookupError: no such
        position; NotOwned: its partition is between owners; TimeoutError: no answer in time."""
        wallet = await asyncio_await(self._store.submit(lambda c: sql.position_wallet(c, position_id)))
        if wallet is None:
            raise LookupError(f"no position #{position_id}")
        subject = wire.commands_subject(wire.partition(wallet, self._link.partitions))
        try:
            answer = await self._link.nc.request(subject, wire.encode(command), timeout=timeout)
        except nats.errors.NoRespondersError:
            raise NotOwned(f"position #{position_id}: its partition is moving between nodes; nothing was sent") from None
        except nats.errors.TimeoutError:
            raise TimeoutError(f"position #{position_id} did not answer within {timeout:g} s") from None
        return wire.decode(answer.data)
