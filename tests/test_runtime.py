"""The M:N actor runtime (actors/runtime.py): ordering, exclusion, fairness, containment, its own registry,
group tells, and asks from trio and asyncio without a thread per wait. Synchronised with events, never sleeps."""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Iterator

import pykka
import pytest
import trio

from actors.runtime import ActorCrash, CallbackFuture, PooledActor, Runtime
from tests.conftest import wait_until
from walltrack.bridge import ask


@pytest.fixture
def runtime() -> Iterator[Runtime]:
    rt = Runtime(workers=4, throughput=4, name="test-actors")
    yield rt
    rt.shutdown(timeout=5)


class Log(PooledActor):
    """Records what it handled; ("block", event) waits on the event (a blocked handler, on purpose)."""

    def __init__(self, journal: list[Any], name: str = "a") -> None:
        super().__init__()
        self.journal, self.name = journal, name
        self.active = 0
        self.most = 0
        self.lock = threading.Lock()

    def on_receive(self, message: Any) -> Any:
        with self.lock:
            self.active += 1
            self.most = max(self.most, self.active)
        try:
            if isinstance(message, tuple) and message[0] == "block":
                message[1].set()  # entered
                message[2].wait(10)  # released
            elif message == "most":
                return self.most
            elif message == "panic":
                raise KeyboardInterrupt("a BaseException in a handler")
            self.journal.append((self.name, message))
            return ("done", message)
        finally:
            with self.lock:
                self.active -= 1


def test_one_actors_messages_run_in_order_and_never_at_once(runtime: Runtime) -> None:
    journal: list[Any] = []
    with runtime.current():
        ref = Log.start(journal)
    senders = [threading.Thread(target=lambda k=k: [ref.tell((k, i)) for i in range(500)]) for k in range(4)]
    for t in senders:
        t.start()
    for t in senders:
        t.join()
    wait_until(lambda: len(journal) == 2000)
    assert ref.ask("most", timeout=5) == 1  # four workers, yet never two of its handlers at once
    for k in range(4):  # each sender's messages in the order sent
        assert [i for name, (kk, i) in journal if kk == k] == list(range(500))


def test_a_blocked_handler_does_not_stop_other_actors(runtime: Runtime) -> None:
    journal: list[Any] = []
    entered, release = threading.Event(), threading.Event()
    with runtime.current():
        stuck, other = Log.start(journal, "stuck"), Log.start(journal, "other")
    stuck.tell(("block", entered, release))
    assert entered.wait(5)
    stuck.tell("after")  # queued behind the blocked handler
    assert other.ask("hello", timeout=5) == ("done", "hello")  # served meanwhile by another worker
    assert [m for n, m in journal if n == "stuck"] == []  # the blocked actor's next message waits its turn
    release.set()
    wait_until(lambda: ("stuck", "after") in journal)
    assert stuck.ask("most", timeout=5) == 1


def test_a_busy_actor_yields_after_its_batch_limit() -> None:
    rt = Runtime(workers=1, throughput=2, name="fair")
    try:
        journal: list[Any] = []
        entered, release = threading.Event(), threading.Event()
        with rt.current():
            busy, quiet = Log.start(journal, "busy"), Log.start(journal, "quiet")
        busy.tell(("block", entered, release))
        assert entered.wait(5)
        for i in range(50):
            busy.tell(i)
        quiet.tell("hi")
        release.set()
        wait_until(lambda: len(journal) == 52)
        order = [(n, m) for n, m in journal if not isinstance(m, tuple)]
        assert order.index(("quiet", "hi")) < order.index(("busy", 5))  # one worker, yet quiet did not wait for all 50
    finally:
        rt.shutdown(timeout=5)


class Starter(PooledActor):
    def __init__(self, fail: BaseException | None = None) -> None:
        super().__init__()
        self.fail = fail
        self.failed: list[str] = []

    def on_start(self) -> None:
        if self.fail is not None:
            raise self.fail

    def on_receive(self, message: Any) -> Any:
        return message


def test_a_base_exception_fails_that_actor_only_and_never_a_worker() -> None:
    rt = Runtime(workers=1, throughput=4, name="contain")
    try:
        journal: list[Any] = []
        with rt.current():
            victim, bystander = Log.start(journal, "victim"), Log.start(journal, "bystander")
            dead_at_start = Starter.start(trio.Cancelled._create())  # a BaseException from on_start
        victim.tell("panic")
        wait_until(lambda: not victim.is_alive())
        wait_until(lambda: not dead_at_start.is_alive())
        assert bystander.ask("still here", timeout=5) == ("done", "still here")  # the only worker lives on
        with pytest.raises(pykka.ActorDeadError):
            victim.ask("anyone?", timeout=5)
        with rt.current():
            asked = Log.start(journal, "asked")
        with pytest.raises(ActorCrash, match="KeyboardInterrupt"):
            asked.ask("panic", timeout=5)  # an ask's asker gets the contained error; the actor has failed
        wait_until(lambda: not asked.is_alive())
        assert bystander.ask("again", timeout=5) == ("done", "again")
    finally:
        rt.shutdown(timeout=5)


def test_threads_do_not_grow_with_actors_and_the_registry_is_its_own(runtime: Runtime) -> None:
    before = threading.active_count()
    with runtime.current():
        refs = [Starter.start() for _ in range(3000)]
    assert threading.active_count() == before
    assert len(runtime.registry) == 3000 and not any(r in pykka.ActorRegistry.get_all() for r in refs[:10])
    futures = [r.ask(n, block=False) for n, r in enumerate(refs)]
    assert [f.get(timeout=10) for f in futures] == list(range(3000))
    assert runtime.stop_all(timeout=30) == 3000
    assert len(runtime.registry) == 0 and not any(r.is_alive() for r in refs)


def test_tell_all_reaches_every_actor_in_order_with_its_other_messages(runtime: Runtime) -> None:
    journal: list[Any] = []
    with runtime.current():
        refs = [Log.start(journal, f"p{i}") for i in range(600)]
    for r in refs:
        r.tell("before")
    assert runtime.tell_all(refs, "tick") == 600
    for r in refs:
        r.tell("after")
    wait_until(lambda: len(journal) == 1800)
    for r, i in zip(refs, range(600)):
        assert [m for n, m in journal if n == f"p{i}"] == ["before", "tick", "after"]
    refs[0].stop()
    assert runtime.tell_all(refs, "again") == 599  # a stopped actor is skipped


def test_asks_from_trio_and_asyncio_wait_without_a_thread_each(runtime: Runtime) -> None:
    journal: list[Any] = []
    entered, release = threading.Event(), threading.Event()
    with runtime.current():
        ref = Log.start(journal)
    ref.tell(("block", entered, release))
    assert entered.wait(5)
    threads: list[int] = []

    async def from_trio() -> list[Any]:
        out: list[Any] = []

        async def one(i: int) -> None:
            out.append(await ask(ref, i, timeout=10))

        async with trio.open_nursery() as nursery:
            for i in range(50):
                nursery.start_soon(one, i)
            await trio.sleep(0)  # let every ask start waiting
            threads.append(threading.active_count())
            release.set()
        return out

    before = threading.active_count()
    answers = trio.run(from_trio)
    assert threads == [before]  # 50 asks in flight, no thread for any of them
    assert sorted(a[1] for a in answers) == list(range(50))

    async def from_asyncio() -> Any:
        return await asyncio.gather(*(ask(ref, i, timeout=5) for i in range(20)))

    assert [a[1] for a in asyncio.run(from_asyncio())] == list(range(20))

    async def timeout() -> None:
        entered.clear()
        release.clear()
        ref.tell(("block", entered, release))
        with pytest.raises(TimeoutError):
            await ask(ref, "late", timeout=0.2)
        release.set()

    trio.run(timeout)


def test_callback_future_calls_back_once_done() -> None:
    f = CallbackFuture()
    seen: list[Any] = []
    f.add_done_callback(lambda fut: seen.append(fut.outcome()))
    assert seen == [] and not f.done()
    f.set(7)
    f.add_done_callback(lambda fut: seen.append(("late", fut.outcome())))
    assert seen == [7, ("late", 7)]
    g = CallbackFuture()
    g.add_done_callback(lambda fut: seen.append(type(fut.outcome())))
    try:
        raise ValueError("x")
    except ValueError:
        g.set_exception()
    assert seen[-1] is ValueError
