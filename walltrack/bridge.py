"""The one bridge between runtimes (ARCHITECTURE.md, "Runtimes").

- `AsyncioThread`: the asyncio loop that owns asyncpg; other threads submit coroutines and get a
  `concurrent.futures.Future` back.
- `notify(future, fn)`: run `fn(result_or_exception)` when a future completes, from any thread — how an
  actor gets the outcome of I/O as a message instead of blocking on it.
- `trio_await(future)`: await a concurrent future from trio without a thread per wait.
- `ask(ref, msg, timeout)`: an actor ask from trio or asyncio (the panel's loop, the cluster's), woken by the
  answer's done-callback (no thread per wait); the timeout is the caller's.
- `asyncio_await(future)`: the same from an asyncio loop (the cluster's NATS loop awaiting the store).
- `contain(exc)`: turn a BaseException that must not escape an actor (trio.Cancelled, a solders
  PanicException, KeyboardInterrupt in a worker) into an ordinary `ActorCrash`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from typing import Any, Awaitable, Callable, TypeVar

import sniffio
import trio

from actors.shell import ActorCrash, contain  # noqa: F401 - the containment lives beside the actor shell

T = TypeVar("T")


class AsyncioThread:
    """An asyncio event loop on a dedicated daemon thread."""

    def __init__(self, name: str = "walltrack-asyncio") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.close()

    def submit(self, coro: Awaitable[T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)  # type: ignore[arg-type]

    def run(self, coro: Awaitable[T], timeout: float | None = None) -> T:
        """Blocking call, for the composition root and the CLI only (never from an actor or trio)."""
        return self.submit(coro).result(timeout)

    def call_later(self, delay: float, fn: Callable[[], Any]) -> None:
        self.loop.call_soon_threadsafe(self.loop.call_later, delay, fn)

    def stop(self) -> None:
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)


def notify(future: concurrent.futures.Future[T], fn: Callable[[T | BaseException], None]) -> None:
    """Call fn with the future's result, or its exception, once it completes (on the completing thread)."""

    def done(f: concurrent.futures.Future[T]) -> None:
        if f.cancelled():
            fn(concurrent.futures.CancelledError())
            return
        exc = f.exception()
        fn(exc if exc is not None else f.result())

    future.add_done_callback(done)


def _trio_done(future: Any) -> trio.Event:
    """An event set on this trio loop once `future` (anything with `add_done_callback`) completes."""
    token = trio.lowlevel.current_trio_token()
    done = trio.Event()

    def wake(_: object) -> None:
        try:
            token.run_sync_soon(done.set)
        except trio.RunFinishedError:
            pass

    future.add_done_callback(wake)
    return done


async def trio_await(future: concurrent.futures.Future[T]) -> T:
    """Await a concurrent future under trio; cancelling the trio task cancels the future."""
    done = _trio_done(future)
    try:
        await done.wait()
    except trio.Cancelled:
        future.cancel()
        raise
    return future.result()


async def asyncio_await(future: concurrent.futures.Future[T]) -> T:
    """Await a concurrent future (another runtime's work) from an asyncio loop without blocking it."""
    return await asyncio.wrap_future(future)


class TrioThread:
    """The trio runtime: one trio loop on its own thread, running services until `stop()`.

    `start_service(fn)` starts `fn(task_status)` in the runtime's nursery under its own cancel scope and
    returns, once the service reports ready (for the gateway: once its sockets are bound), a handle with
    the value it reported and a `stop()`. `submit(fn, *args)` runs one task and hands back its outcome
    in a concurrent future — how an actor asks for trio-side I/O without blocking.
    """

    def __init__(self, main: Callable[..., Awaitable[Any]] | None = None, name: str = "walltrack-trio") -> None:
        self._main = main
        self._name = name
        self._token: trio.lowlevel.TrioToken | None = None
        self._nursery: trio.Nursery | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self, timeout: float = 30) -> Any:
        """Start the loop. With a `main` given at construction, also start it as a service and return the
        value it reported when ready (e.g. a server's port); without one, return the runtime."""
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError(f"{self._name} did not start in {timeout} s")
        if self._error is not None:
            raise self._error
        if self._main is not None:
            return self.start_service(self._main, timeout).value
        return self

    def _run(self) -> None:
        async def runner() -> None:
            self._token = trio.lowlevel.current_trio_token()
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                self._ready.set()
                await trio.sleep_forever()

        try:
            trio.run(runner)
        except BaseException as exc:  # noqa: BLE001 - reported to whoever asks
            self._error = exc
        finally:
            self._ready.set()

    def submit(self, fn: Callable[..., Awaitable[T]], *args: Any) -> concurrent.futures.Future[T]:
        """Run `await fn(*args)` as a task on this trio loop, from any thread; the outcome lands in a future."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        async def task() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                future.set_result(await fn(*args))
            except Exception as exc:  # noqa: BLE001 - handed to the caller through the future
                future.set_exception(exc)
            except trio.Cancelled:
                future.set_exception(RuntimeError("cancelled: the trio runtime is stopping"))
                raise

        self._spawn(task, future)
        return future

    def start_service(self, fn: Callable[..., Awaitable[Any]], timeout: float = 30) -> "Service":
        service = Service(self)
        started: concurrent.futures.Future[Any] = concurrent.futures.Future()

        async def task() -> None:
            with trio.CancelScope() as scope:
                service._scope = scope
                try:
                    async with trio.open_nursery() as nursery:
                        started.set_result(await nursery.start(fn))
                except Exception as exc:  # noqa: BLE001 - failed to start, or failed later
                    if not started.done():
                        started.set_exception(exc)
                    else:
                        service.error = exc
            service._done.set()

        self._spawn(task, started)
        service.value = started.result(timeout)
        return service

    def _spawn(self, task: Callable[[], Awaitable[None]], future: concurrent.futures.Future[Any]) -> None:
        if self._token is None or self._nursery is None:
            future.set_exception(RuntimeError(f"{self._name} is not running"))
            return
        try:
            self._token.run_sync_soon(self._nursery.start_soon, task)
        except trio.RunFinishedError:
            future.set_exception(RuntimeError(f"{self._name} has stopped"))

    def cancel(self, scope: trio.CancelScope) -> None:
        if self._token is not None:
            try:
                self._token.run_sync_soon(scope.cancel)
            except trio.RunFinishedError:
                pass

    def stop(self, timeout: float = 10) -> None:
        if self._token is not None and self._nursery is not None:
            self.cancel(self._nursery.cancel_scope)
        self._thread.join(timeout)


class Service:
    """A service running in a `TrioThread`: `value` is what it reported when ready."""

    def __init__(self, runtime: TrioThread) -> None:
        self._runtime = runtime
        self._scope: trio.CancelScope | None = None
        self._done = threading.Event()
        self.value: Any = None
        self.error: BaseException | None = None

    @property
    def running(self) -> bool:
        return not self._done.is_set()

    def stop(self, timeout: float = 10) -> None:
        if self._scope is not None:
            self._runtime.cancel(self._scope)
        self._done.wait(timeout)


async def ask(ref: Any, message: Any, timeout: float) -> Any:
    """Ask an actor from trio or asyncio, whichever runs the caller, without blocking its loop or holding a thread:
    the answer's done-callback wakes the loop (a pooled actor's future; a thread-per-actor pykka actor's is waited
    on a worker thread). The caller sets the timeout: TimeoutError when no answer comes within it."""
    import pykka

    future = ref.ask(message, block=False)
    on_trio = sniffio.current_async_library() == "trio"
    if not hasattr(future, "add_done_callback"):
        def wait() -> Any:
            try:
                return future.get(timeout=timeout)
            except pykka.Timeout:
                raise TimeoutError(f"no answer within {timeout:g} s") from None

        return await (trio.to_thread.run_sync(wait, abandon_on_cancel=True) if on_trio else asyncio.to_thread(wait))
    if on_trio:
        with trio.move_on_after(timeout):
            await _trio_done(future).wait()
            return future.get(timeout=0)
        raise TimeoutError(f"no answer within {timeout:g} s")
    try:
        await asyncio.wait_for(_asyncio_done(future), timeout)
    except asyncio.TimeoutError:
        raise TimeoutError(f"no answer within {timeout:g} s") from None
    return future.get(timeout=0)


def _asyncio_done(future: Any) -> asyncio.Future[None]:
    """An asyncio future on the running loop, done once `future` (anything with `add_done_callback`) completes."""
    loop = asyncio.get_running_loop()
    answered: asyncio.Future[None] = loop.create_future()

    def wake(_: object) -> None:
        try:
            loop.call_soon_threadsafe(lambda: answered.done() or answered.set_result(None))
        except RuntimeError:  # the loop has closed
            pass

    future.add_done_callback(wake)
    return answered
