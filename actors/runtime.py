"""An M:N actor runtime under pykka: many actors, a few threads (the way Akka's dispatchers work).

`PooledActor` is a `pykka.Actor` with pykka's API unchanged — `start`, `tell`, `ask`, `proxy`, `stop`,
`on_start`/`on_stop`/`on_failure`, `ActorRef`, futures — whose mailbox is drained by a small pool of worker
threads shared by every actor of its `Runtime`, instead of one OS thread per actor. It plugs into pykka's
extension points (`_create_actor_inbox`, `_create_future`, `_start_actor_loop`, `_stop`, `_handle_failure`).

- **Ordering and exclusion**: a mailbox is scheduled on the run queue at most once at a time; the worker that
  takes it is the only one running that actor, so one actor's messages run in order and never concurrently.
- **Fairness**: a turn handles at most `throughput` messages, then the actor goes to the back of the run queue.
- **Containment**: any exception escaping a handler — a `BaseException` too (trio.Cancelled, solders'
  PanicException) — fails that actor only (`on_failure`), never a worker thread nor the pool; pykka itself
  stops every actor on a BaseException.
- **Registry**: each runtime keeps its own index (urn → ref, insertion ordered): O(1) to add and remove, and
  `stop_all` is linear. pykka's `ActorRegistry` (a list: linear removals) never sees pooled actors.
- **Mailboxes, futures, containment**: actors/mailbox.py. **Futures** are `CallbackFuture`s: `add_done_callback` lets another runtime (trio, asyncio) wait on an ask
  without a thread per wait (`walltrack.bridge`).
- **Group tell**: `tell_all(refs, message)` hands one message to many actors as one run-queue entry (a price
  tick to every position of a token): no thread wake-up per actor.

Actors must never block in a handler: a blocked handler holds one worker (the others go on), and actors that
wait on each other could hold them all. An actor started from a worker joins that worker's runtime; elsewhere
it joins the runtime made current with `Runtime.current()`, else the process's default runtime.
"""

from __future__ import annotations

import itertools
import logging
import queue
import sys
import threading
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterable, Iterator

import pykka
from pykka._envelope import Envelope

from actors.mailbox import ActorCrash, CallbackFuture, Mailbox, contain  # noqa: F401 - public here too

log = logging.getLogger("actors.runtime")

_local = threading.local()  # .runtime: the runtime of the worker (or of `Runtime.current()`) on this thread
_STOP = object()


class Registry:
    """A runtime's actors by urn, in start order."""

    def __init__(self) -> None:
        self._refs: dict[str, pykka.ActorRef] = {}
        self._lock = threading.Lock()

    def add(self, ref: pykka.ActorRef) -> None:
        with self._lock:
            self._refs[ref.actor_urn] = ref

    def remove(self, ref: pykka.ActorRef) -> None:
        with self._lock:
            self._refs.pop(ref.actor_urn, None)

    def get_by_urn(self, urn: str) -> pykka.ActorRef | None:
        return self._refs.get(urn)

    def get_all(self) -> list[pykka.ActorRef]:
        with self._lock:
            return list(self._refs.values())

    def __len__(self) -> int:
        return len(self._refs)


class Runtime:
    """A pool of `workers` threads draining the mailboxes of its actors; `throughput` messages per turn."""

    _default: "Runtime | None" = None
    _default_lock = threading.Lock()

    def __init__(self, workers: int = 4, throughput: int = 32, name: str = "actors") -> None:
        if workers < 1 or throughput < 1:
            raise ValueError("workers and throughput must be >= 1")
        self.name, self.throughput = name, throughput
        self.registry = Registry()
        self._runq: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._queued = 0  # run-queue entries not yet done (for `idle`)
        self._queued_lock = threading.Lock()
        self._threads = [threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True) for i in range(workers)]
        for t in self._threads:
            t.start()
        self.messages = 0  # handled so far (approximate: counted without a lock)

    # -- which runtime an actor joins --------------------------------------------------------------
    @classmethod
    def default(cls) -> "Runtime":
        with cls._default_lock:
            if cls._default is None:
                cls._default = Runtime(name="actors-default")
            return cls._default

    @staticmethod
    def here() -> "Runtime":
        return getattr(_local, "runtime", None) or Runtime.default()

    @contextmanager
    def current(self) -> Iterator["Runtime"]:
        """Actors started on this thread inside the block join this runtime."""
        before = getattr(_local, "runtime", None)
        _local.runtime = self
        try:
            yield self
        finally:
            _local.runtime = before

    @property
    def threads(self) -> int:
        return len(self._threads)

    # -- messages ----------------------------------------------------------------------------------
    def tell_all(self, refs: Iterable[pykka.ActorRef], message: Any, chunk: int = 256) -> int:
        """Tell `message` to every live actor in `refs` as one run-queue entry per `chunk` actors; returns how many
        got it. Each actor still handles it in its own turn, in order with its other messages."""
        envelope, due, sent = Envelope(message), [], 0
        for ref in refs:
            inbox = ref.actor_inbox
            if not ref.is_alive():
                continue
            sent += 1
            if isinstance(inbox, Mailbox) and inbox.runtime is self:
                if inbox._enqueue(envelope):
                    due.append(inbox)
            else:
                ref.tell(message)
        for i in range(0, len(due), chunk):
            self._schedule(due[i:i + chunk])
        return sent

    def _schedule(self, item: Mailbox | list[Mailbox]) -> None:
        with self._queued_lock:
            self._queued += 1
        self._runq.put(item)

    def idle(self) -> bool:
        """No actor of this runtime has a message waiting or running (a quiescence probe for tests and benchmarks)."""
        return self._queued == 0

    # -- the workers -------------------------------------------------------------------------------
    def _work(self) -> None:
        _local.runtime = self
        while True:
            item = self._runq.get()
            if item is _STOP:
                return
            for mailbox in item if isinstance(item, list) else (item,):
                try:
                    self._turn(mailbox)
                except BaseException:  # noqa: BLE001 - never lose a worker (the turn already contained the actor)
                    log.exception("actor runtime: a turn failed")
            with self._queued_lock:
                self._queued -= 1

    def _turn(self, mailbox: Mailbox) -> None:
        actor = mailbox.actor
        assert actor is not None
        if mailbox._setup:
            mailbox._setup = False
            actor._run_guarded(actor._actor_loop_setup)
        for _ in range(self.throughput):
            if actor.actor_stopped.is_set():
                actor._finish()
                return
            envelope = mailbox._next()
            if envelope is None:
                return
            actor._receive_envelope(envelope)
            self.messages += 1
        if actor.actor_stopped.is_set():
            actor._finish()
        elif mailbox._yield_turn():
            self._schedule(mailbox)  # budget spent: to the back of the line

    # -- shutdown ----------------------------------------------------------------------------------
    def stop_all(self, timeout: float = 10) -> int:
        """Stop every actor of this runtime, last started first; wait up to `timeout` for them. Returns how many."""
        refs = self.registry.get_all()
        futures = []
        for ref in reversed(refs):
            try:
                futures.append(ref.ask(pykka.messages._ActorStop(), block=False))  # noqa: SLF001
            except pykka.ActorDeadError:
                pass
        deadline = time.monotonic() + timeout
        for f in futures:
            try:
                f.get(timeout=max(0.0, deadline - time.monotonic()))
            except pykka.ActorDeadError:
                pass
            except pykka.Timeout:
                log.warning("actor runtime %s: actors still running after %s s", self.name, timeout)
                break
        return len(refs)

    def shutdown(self, timeout: float = 10) -> None:
        """Stop every actor, then the workers."""
        self.stop_all(timeout)
        for _ in self._threads:
            self._runq.put(_STOP)
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(timeout)


_urns = itertools.count(1)


class PooledActor(pykka.Actor):
    """A pykka actor run by a `Runtime`'s worker pool instead of a thread of its own."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # pykka.Actor.__init__'s four fields, with a process-unique urn from a counter: uuid4 reads the kernel's
        # random source for every actor (a sixth of the cost of starting 10,000 of them)
        self._runtime = Runtime.here()
        self.actor_urn = f"urn:walltrack-actor:{next(_urns)}"
        self.actor_inbox = self._create_actor_inbox()
        self.actor_inbox.actor = self  # type: ignore[attr-defined]
        self.actor_stopped = threading.Event()
        self._actor_ref = pykka.ActorRef(self)

    @classmethod
    def start(cls, *args: Any, **kwargs: Any) -> pykka.ActorRef:
        obj = cls(*args, **kwargs)
        obj._runtime.registry.add(obj.actor_ref)  # our index, not pykka's list
        obj._start_actor_loop()
        return obj.actor_ref

    def _create_actor_inbox(self) -> Mailbox:  # type: ignore[override]
        return Mailbox(self._runtime)

    @staticmethod
    def _create_future() -> CallbackFuture:
        return CallbackFuture()

    def _start_actor_loop(self) -> None:
        self.actor_inbox._start()  # type: ignore[attr-defined]

    def _stop(self) -> None:
        self._runtime.registry.remove(self.actor_ref)
        super()._stop()

    def _handle_failure(self, exception_type: Any, exception_value: Any, traceback: Any) -> None:
        self._runtime.registry.remove(self.actor_ref)
        super()._handle_failure(exception_type, exception_value, traceback)

    # -- one envelope: pykka's loop body, with every BaseException contained to this actor ------------
    def _receive_envelope(self, envelope: Envelope[Any]) -> None:
        try:
            response = self._handle_receive(envelope.message)
        except BaseException as exc:  # noqa: BLE001 - contained: see the module docstring
            error = contain(exc)
            if envelope.reply_to is not None and isinstance(exc, Exception):
                envelope.reply_to.set_exception()  # an ask's error goes back to the asker (pykka's rule)
                return
            if envelope.reply_to is not None:
                envelope.reply_to.set_exception((type(error), error, exc.__traceback__))
            self._fail(error, exc.__traceback__)
            return
        if envelope.reply_to is not None:
            try:
                envelope.reply_to.set(response)
            except queue.Full:  # answered already (a hook future)
                pass

    def _run_guarded(self, fn: Callable[[], Any]) -> None:
        try:
            fn()
        except BaseException as exc:  # noqa: BLE001 - on_start raised a BaseException: fail this actor only
            self._fail(contain(exc), exc.__traceback__)

    def _fail(self, error: Exception, tb: Any) -> None:
        self._handle_failure(type(error), error, tb)
        try:
            self.on_failure(type(error), error, tb)
        except BaseException:  # noqa: BLE001
            self._handle_failure(*sys.exc_info())

    def _finish(self) -> None:
        """The actor stopped (or failed): close its mailbox and answer what is left in it (pykka's teardown)."""
        self._runtime.registry.remove(self.actor_ref)
        self.actor_inbox._close()  # type: ignore[attr-defined]
        self._actor_loop_teardown()

