"""A reply address for an edge that asks an actor which answers with a `tell` (a request carrying `reply_to`).

Actors answer requests by telling `reply_to` (an actor ref), never by calling back. An edge outside the actors
(the cluster's NATS responder) that needs the answer makes a one-shot `ReplyChannel`: a tiny actor whose ref goes
in the request, and a future the edge waits on with its own timeout (set by the caller) — Akka's ask, made
explicit. The channel stops after its first message, or when the edge closes it.
"""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any

import pykka

from actors.runtime import PooledActor, Runtime


class _Once(PooledActor):
    def __init__(self, future: Future) -> None:
        super().__init__()
        self._future = future

    def on_receive(self, message: Any) -> None:
        if not self._future.done():
            self._future.set_result(message)
        self.stop()


class ReplyChannel:
    def __init__(self, runtime: Runtime | None = None) -> None:
        self.future: Future = Future()
        with (runtime or Runtime.here()).current():
            self.ref: pykka.ActorRef = _Once.start(self.future)

    def close(self) -> None:
        try:
            self.ref.stop(block=False)
        except pykka.ActorDeadError:
            pass
