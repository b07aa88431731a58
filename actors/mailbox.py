"""What one pooled actor is made of besides its class: its mailbox, its futures, and the containment of a crash
(actors/runtime.py runs them).

- `Mailbox` is pykka's `ActorInbox` for the M:N runtime: a deque, and whether the actor is on its runtime's run
  queue (scheduled at most once at a time: one actor's messages run in order, never concurrently).
- `CallbackFuture` is a pykka future with `add_done_callback`, so another runtime (trio, asyncio) waits on an
  ask without a thread per wait (`walltrack.bridge`).
- `contain` turns any BaseException escaping a handler into an `ActorCrash`: it fails that actor only.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections import deque
from typing import TYPE_CHECKING, Any, Callable

import pykka
from pykka._envelope import Envelope

if TYPE_CHECKING:
    from actors.runtime import PooledActor, Runtime

log = logging.getLogger("actors.runtime")


class ActorCrash(Exception):
    """A BaseException raised inside an actor, contained so it fails that actor only."""


def contain(exc: BaseException) -> Exception:
    if isinstance(exc, Exception):
        return exc
    crash = ActorCrash(f"{type(exc).__name__}: {exc}")
    crash.__cause__ = exc
    return crash


class CallbackFuture(pykka.ThreadingFuture):
    """A pykka future that also calls `fn(future)` once it completes (on the completing thread), or at once
    when it already has. Futures made by `set_get_hook` (pykka's `stop` futures) never call back."""

    def __init__(self) -> None:
        super().__init__()
        self._callbacks: list[Callable[[CallbackFuture], Any]] = []

    def add_done_callback(self, fn: Callable[["CallbackFuture"], Any]) -> None:
        with self._condition:
            if self._result is None:
                self._callbacks.append(fn)
                return
        fn(self)

    def done(self) -> bool:
        return self._result is not None

    def outcome(self) -> Any:
        """The value, or the exception the future holds (once done)."""
        assert self._result is not None
        exc = self._result.exc_info
        return exc[1] if exc is not None else self._result.value

    def set(self, value: Any = None) -> None:
        super().set(value)
        self._fire()

    def set_exception(self, exc_info: Any = None) -> None:
        super().set_exception(exc_info if exc_info is not None else sys.exc_info())
        self._fire()

    def _fire(self) -> None:
        with self._condition:
            callbacks, self._callbacks = self._callbacks, []
        for fn in callbacks:
            try:
                fn(self)
            except Exception:  # noqa: BLE001 - a waiter's bug must not break the actor that answered
                log.exception("future callback failed")


class Mailbox:
    """An actor's inbox (pykka's `ActorInbox`): a deque, and whether the actor is on the run queue."""

    __slots__ = ("actor", "runtime", "_queue", "_lock", "_scheduled", "_started", "_closed", "_setup")

    def __init__(self, runtime: "Runtime") -> None:
        self.runtime = runtime
        self.actor: PooledActor | None = None
        self._queue: deque[Envelope[Any]] = deque()
        self._lock = threading.Lock()
        self._scheduled = False
        self._started = False
        self._closed = False
        self._setup = True  # on_start runs in the first turn

    def put(self, envelope: Envelope[Any]) -> None:
        if self._enqueue(envelope):
            self.runtime._schedule(self)

    def _enqueue(self, envelope: Envelope[Any]) -> bool:
        """Append; True when the caller must schedule the actor."""
        with self._lock:
            if not self._closed:
                self._queue.append(envelope)
                if self._scheduled or not self._started:
                    return False
                self._scheduled = True
                return True
        _dead_letter(envelope)
        return False

    def get(self) -> Envelope[Any]:  # pykka's teardown drains the inbox with get() while not empty()
        with self._lock:
            return self._queue.popleft()

    def empty(self) -> bool:
        return not self._queue

    def _start(self) -> None:
        with self._lock:
            self._started = self._scheduled = True
        self.runtime._schedule(self)

    def _next(self) -> Envelope[Any] | None:
        with self._lock:
            if self._queue:
                return self._queue.popleft()
            self._scheduled = False
            return None

    def _yield_turn(self) -> bool:
        """After a full turn: True to go to the back of the run queue, False when there is nothing left."""
        with self._lock:
            if self._queue:
                return True
            self._scheduled = False
            return False

    def _close(self) -> None:
        with self._lock:
            self._closed = True


def _dead_letter(envelope: Envelope[Any]) -> None:
    if envelope.reply_to is not None:
        try:
            raise pykka.ActorDeadError("the actor stopped before handling the message")
        except pykka.ActorDeadError:
            envelope.reply_to.set_exception()
