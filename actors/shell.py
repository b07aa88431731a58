"""The shell every WallTrack actor runs in: persist first, then act; stash while a write is in flight.

A subclass implements `handle(message)` and calls `self.persist(op, then)` for a write whose result
matters: `op()` returns a Future (from a port: the I/O runs in its own runtime); until it completes, new
messages are stashed (as Akka's persist does; the stash lasts one I/O step, bounded by `give_up_s`),
so the actor never decides on state that is not yet stored. A failed write is retried with capped
backoff — the operations are idempotent — and `then(result)` runs once it is stored. A write still failing
after `give_up_s` crashes the actor (`PersistFailed`) to its supervisor, which rebuilds it from the database
once it answers again: never an endless retry behind an ever-growing stash. A failed actor hands the messages
it had received but not handled (its stash, its mailbox) to its supervisor in `ChildFailed.unprocessed`.
`self.request(op, then)` is the same for a read whose answer the next decision needs (a safety verdict):
not retried; `then` receives the result or the exception, and decides what a failure means. A request to
another actor is not I/O: it is a `tell` carrying `reply_to`, the answer a message like any other, awaited in
the actor's own state with a timer (`tell_later`) — see actors/wallet.py's `awaiting_reservation`.

A BaseException (trio.Cancelled, a solders PanicException, KeyboardInterrupt) raised in a handler is
contained as an ordinary `ActorCrash`: it fails this actor only, never every actor in the process.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from concurrent.futures import Future
from typing import Any, Callable

import pykka
import structlog

from actors.messages import ChildFailed, Persisted
from actors.ports import Scheduler
from actors.runtime import ActorCrash, PooledActor, contain  # noqa: F401 - the containment is the runtime's

log = structlog.get_logger("actors")

_tokens = itertools.count(1)


class PersistFailed(Exception):
    """A write kept failing past the shell's bound: the actor crashes to its supervisor."""


STATE_QUERY = "state"  # `ref.ask("state")`: the actor's current state, for edges and tests


class Shell(PooledActor):
    child_id: tuple[str, str] = ("actor", "?")
    state: Any = None
    retry_initial = 0.2
    retry_max = 10.0
    give_up_s = 30.0  # a write failing this long crashes the actor (its supervisor restarts it)

    def __init__(self, scheduler: Scheduler, parent: pykka.ActorRef | None) -> None:
        super().__init__()
        self._scheduler = scheduler
        self._parent = parent
        self._stash: deque[Any] = deque()
        self._inflight: tuple[int, Callable[[], Future], Callable[[Any], None], float | None] | None = None
        self._failing_since: float | None = None  # monotonic time of the in-flight write's first failure

    # pykka entry point -----------------------------------------------------------------------
    def on_receive(self, message: Any) -> Any:
        try:
            if isinstance(message, Persisted):
                return self._on_persisted(message)
            if isinstance(message, _Resubmit):
                if self._inflight is not None and self._inflight[0] == message.token:
                    self._submit(message.token, self._inflight[1])
                return None
            if message == STATE_QUERY:  # read-only: answered at once, even while an I/O step is in flight
                return self.state
            if self._inflight is not None and not self.bypass_stash(message):
                self._stash.append(message)
                return None
            return self.handle(message)
        except Exception:
            raise
        except BaseException as exc:  # noqa: BLE001 - contained, see module docstring
            raise contain(exc) from exc

    def on_failure(self, exception_type: Any, exception_value: Any, traceback: Any) -> None:
        log.error("actor_failed", actor=self.child_id[0], id=self.child_id[1], error=repr(exception_value))
        if self._parent is not None:
            try:
                self._parent.tell(ChildFailed(self.child_id, repr(exception_value), unprocessed=self._unprocessed()))
            except pykka.ActorDeadError:
                pass

    def _unprocessed(self) -> tuple[Any, ...]:
        """What this (failed, stopped) actor received but did not handle, in order: what its state held back
        (`deferred`), its stash, then the tells left in its mailbox (an ask left there fails at once, as pykka does)."""
        left = [*self.deferred(), *self._stash]
        while not self.actor_inbox.empty():
            envelope = self.actor_inbox.get()
            if envelope.reply_to is not None:
                envelope.reply_to.set_exception(exc_info=(pykka.ActorDeadError, pykka.ActorDeadError("actor failed"), None))
            elif not isinstance(envelope.message, (Persisted, _Resubmit)):
                left.append(envelope.message)
        self._stash.clear()
        return tuple(left)

    # for subclasses ----------------------------------------------------------------------------
    def handle(self, message: Any) -> Any:
        raise NotImplementedError

    def deferred(self) -> tuple[Any, ...]:
        """Messages the actor's own state queued to decide later (the wallet's, while a reservation is awaited)."""
        return ()

    def bypass_stash(self, message: Any) -> bool:
        """Messages that are answered even while a write is in flight (read-only queries)."""
        return False

    @property
    def io_in_flight(self) -> bool:
        """A write or a read is under way: new messages are stashed until its outcome is handled."""
        return self._inflight is not None

    def tell_later(self, delay: float, message: Any) -> None:
        """Tell myself `message` after `delay` seconds (a timer through the scheduler port, never a sleep)."""
        ref = self.actor_ref
        self._scheduler.call_later(delay, lambda: _tell(ref, message))

    def persist(self, op: Callable[[], Future], then: Callable[[Any], None]) -> None:
        self._start_io(op, then, self.retry_initial)

    def request(self, op: Callable[[], Future], then: Callable[[Any], None]) -> None:
        self._start_io(op, then, None)

    def _start_io(self, op: Callable[[], Future], then: Callable[[Any], None], retry: float | None) -> None:
        assert self._inflight is None, "one I/O step at a time"
        token = next(_tokens)
        self._inflight = (token, op, then, retry)
        self._submit(token, op)

    # internals ---------------------------------------------------------------------------------
    def _submit(self, token: int, op: Callable[[], Future]) -> None:
        ref = self.actor_ref

        def deliver(f: Future) -> None:
            exc = f.exception() if not f.cancelled() else RuntimeError("cancelled")
            try:
                ref.tell(Persisted(token, exc if exc is not None else f.result()))
            except pykka.ActorDeadError:
                pass

        try:
            op().add_done_callback(deliver)
        except Exception as exc:  # the adapter refused at once (e.g. its loop is gone): retry
            ref.tell(Persisted(token, exc))

    def _on_persisted(self, msg: Persisted) -> None:
        if self._inflight is None or self._inflight[0] != msg.token:
            return None  # a stale outcome from before a restart
        token, op, then, delay = self._inflight
        if isinstance(msg.result, BaseException) and delay is not None:
            now = time.monotonic()
            self._failing_since = self._failing_since if self._failing_since is not None else now
            if now - self._failing_since >= self.give_up_s:
                raise PersistFailed(f"a write failed for {now - self._failing_since:.0f} s: {msg.result!r}")
            log.warning("write_retry", actor=self.child_id[0], id=self.child_id[1], delay_s=delay, error=repr(msg.result))
            self._inflight = (token, op, then, min(delay * 2, self.retry_max))
            self.tell_later(delay, _Resubmit(token))
            return None
        self._inflight, self._failing_since = None, None
        then(msg.result)
        while self._stash and self._inflight is None:
            self.on_receive(self._stash.popleft())
        return None



def _tell(ref: pykka.ActorRef, message: Any) -> None:
    """From a timer's thread: into the actor's mailbox, unless it is gone."""
    try:
        ref.tell(message)
    except pykka.ActorDeadError:
        pass


class _Resubmit:
    __slots__ = ("token",)

    def __init__(self, token: int) -> None:
        self.token = token
