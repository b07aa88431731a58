"""Issue #5, acceptance point 3: the embedded PostgreSQL stopped for 10 s under webhook load.

The real App (gateway, supervisor, wallet/position/risk actors, price monitor) runs in paper mode against
the sandbox market's services, on its own embedded PostgreSQL, watching the market's leaders. A sender posts
the leaders' trades as real enhanced-transaction payloads (rendered by the sandbox's Helius, batched and
duplicated like Helius does), plus traffic for wallets nobody watches, and retries every non-2xx (Helius'
at-least-once, with a short interval). Midway the PostgreSQL server process is really stopped for 10 s.

Checked: no 200 for anything that was not stored; only 503s (JSON, Retry-After) while the server is down and
no other 5xx; the same actors before and after (no crash, no restart); and, without any action, deliveries are
acknowledged again, every stored transaction is processed exactly once and /health is back to connected.
The second test pins the bug this one found: a delivery stored just before the server stopped was answered 503
(the pool's reset of the dying connection failed after the commit), so Helius' retry was a duplicate that was
never dispatched and stayed unprocessed in the inbox.
"""

from __future__ import annotations

import heapq
import itertools
import json
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pykka
import pytest

from actors.messages import GetStats
from sandbox.helius import HeliusPoster
from sandbox.market import Market, SimClock
from tests.conftest import SECRET, wait_until
from storage import repo
from walltrack.app import App
from storage.db import EmbeddedPostgres
from walltrack.demo import Sandbox, bot_settings
from walltrack.settings import load_settings

OUTAGE_S = 10.0
SPEED = 120.0  # simulated seconds per wall second: 6 leaders, a trade every wall second or so
SENDERS = 4
RETRY_S = 0.5  # Helius retries after a minute; scaled down, so the outage sees many retries
MAX_POSTS = 6_000  # a bound on the load, far above what the timeline needs


@dataclass
class Post:
    delivery: int
    signatures: tuple[str, ...]
    sent: float  # monotonic
    done: float
    status: int | None  # None: transport error or timeout
    body: Any = None
    retry_after: str | None = None


@dataclass(order=True)
class Queued:
    not_before: float
    number: int
    signatures: tuple[str, ...] = field(compare=False)
    body: bytes = field(compare=False)


class Load:
    """Deliveries in, POSTs out: a driver steps the markets and queues their trades' deliveries (a second copy
    of some, later); sender threads post them and requeue any non-2xx after RETRY_S, until stopped."""

    def __init__(self, url: str, watched: Market, watched_clock: SimClock, chain: Any) -> None:
        self.url = url
        other = Market(1007)  # traffic for wallets nobody watches
        self.markets = [(watched, watched_clock, chain, HeliusPoster(url, SECRET, duplicate_rate=0.1, seed=7)),
                        (other, SimClock(other.start, SPEED), None, HeliusPoster(url, SECRET, duplicate_rate=0.1, seed=1007))]
        self.posts: list[Post] = []
        self.acked: set[int] = set()  # delivery numbers acknowledged at least once
        self.planned: dict[int, tuple[str, ...]] = {}
        self._queue: list[Queued] = []
        self._numbers = itertools.count(1)
        self._cv = threading.Condition()
        self._stop_driving = threading.Event()
        self._stop = threading.Event()
        self._rng = random.Random(5)
        self._threads = [threading.Thread(target=self._drive, name="load-driver", daemon=True)]
        self._threads += [threading.Thread(target=self._send, name=f"load-sender-{i}", daemon=True) for i in range(SENDERS)]

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def stop_driving(self) -> None:
        self._stop_driving.set()
        self._threads[0].join(10)

    def stop(self) -> None:
        self._stop.set()
        with self._cv:
            self._cv.notify_all()
        for t in self._threads:
            t.join(30)
        assert not any(t.is_alive() for t in self._threads), "a load thread hung"

    def outstanding(self) -> int:
        with self._cv:
            return len(set(self.planned) - self.acked)

    def posts_between(self, t0: float, t1: float) -> list[Post]:
        with self._cv:
            return [p for p in self.posts if p.sent >= t0 and p.done <= t1]

    def _put(self, q: Queued) -> None:
        with self._cv:
            heapq.heappush(self._queue, q)
            self._cv.notify()

    def _drive(self) -> None:
        while not self._stop_driving.is_set() and not self._stop.is_set():
            for market, clock, chain, poster in self.markets:
                trades = market.step_to(clock())
                if chain is not None:  # the sandbox's chain follows its market (as the demo's driver does)
                    for t in trades:
                        chain.apply_trade(t)
                    chain.sync()
                for d in poster.plan(trades) if trades else []:
                    n = next(self._numbers)
                    with self._cv:
                        self.planned[n] = d.signatures
                    now = time.monotonic()
                    self._put(Queued(now, n, d.signatures, d.body))
                    if d.duplicate:  # at-least-once: Helius sends it again a little later
                        self._put(Queued(now + self._rng.uniform(0.1, 2.0), n, d.signatures, d.body))
            self._stop_driving.wait(0.05)  # the load's pacing

    def _next(self) -> Queued | None:
        with self._cv:
            while not self._stop.is_set():
                if self._queue and self._queue[0].not_before <= time.monotonic():
                    return heapq.heappop(self._queue)
                wait = self._queue[0].not_before - time.monotonic() if self._queue else 0.5
                self._cv.wait(max(0.005, min(wait, 0.5)))
            return None

    def _send(self) -> None:
        headers = {"Authorization": SECRET, "Content-Type": "application/json"}
        with httpx.Client(timeout=15) as client:
            while (q := self._next()) is not None:
                t0 = time.monotonic()
                try:
                    r = client.post(self.url, content=q.body, headers=headers)
                    status, retry_after = r.status_code, r.headers.get("Retry-After")
                    try:
                        body = r.json()
                    except ValueError:
                        body = r.text
                except httpx.HTTPError as exc:
                    status, body, retry_after = None, repr(exc), None
                post = Post(q.number, q.signatures, t0, time.monotonic(), status, body, retry_after)
                with self._cv:
                    self.posts.append(post)
                    too_many = len(self.posts) >= MAX_POSTS
                    if status == 200:
                        self.acked.add(q.number)
                if too_many:
                    self._stop.set()
                elif status != 200:
                    self._put(Queued(time.monotonic() + RETRY_S, q.number, q.signatures, q.body))


class HealthProbe:
    """GET /health every 0.2 s: (sent, done, status, body)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.seen: list[tuple[float, float, int | None, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="health-probe", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(15)

    def _run(self) -> None:
        with httpx.Client(timeout=10) as client:
            while not self._stop.is_set():
                t0 = time.monotonic()
                try:
                    r = client.get(self.url)
                    status, body = r.status_code, r.json()
                except (httpx.HTTPError, ValueError) as exc:
                    status, body = None, repr(exc)
                self.seen.append((t0, time.monotonic(), status, body))
                self._stop.wait(0.2)


def _shells() -> list[tuple[str, str, Any, int]]:
    """For a failure message: every live actor shell with an I/O step in flight, and its stash's length."""
    import gc

    from actors.shell import Shell

    return [(*o.child_id, o._inflight[1:] if o._inflight else None, len(o._stash)) for o in gc.get_objects()
            if isinstance(o, Shell) and o.actor_ref.is_alive() and (o._inflight or o._stash)]


@pytest.fixture
def world(tmp_path: Path):  # noqa: ANN201
    pg = EmbeddedPostgres(tmp_path / "pg")  # its own server: stopping it touches no other test
    sb = Sandbox(seed=7, speed=SPEED)
    app: App | None = None
    try:
        base = load_settings(_env_file=None, walltrack_data_dir=tmp_path / "data", gateway_port=0)
        app = App(bot_settings(base, sb, pg.url, SECRET, headless=True), clock=sb.clock)
        app.start()
        yield pg, sb, app
    finally:
        if app is not None:
            app.stop()
        pykka.ActorRegistry.stop_all()
        sb.stop()
        pg.close()


def test_database_outage_under_webhook_load(world: tuple[EmbeddedPostgres, Sandbox, App]) -> None:
    pg, sb, app = world
    assert app.store is not None and app.root is not None
    t_begin = time.monotonic()
    leaders = [leader.address for leader in sb.market.leaders]
    for address in leaders:
        app.store.run(lambda c, a=address: repo.add_wallet(c, a, None))
    wait_until(lambda: app.root.ask(GetStats(), timeout=5)["wallets"] == len(leaders), timeout=20)  # type: ignore[union-attr]
    children_before = {a: app.actors.lookup(("wallet", a)) for a in leaders}
    base = f"http://127.0.0.1:{app.gateway_port}"

    load = Load(f"{base}/webhooks/helius", sb.market, sb.clock, sb.chain)
    probe = HealthProbe(f"{base}/health")
    load.start()
    probe.start()
    try:
        # steady traffic, some of it acknowledged and processed, before the outage
        wait_until(lambda: len(load.acked) >= 15, timeout=20, interval=0.05)
        stats_before = app.root.ask(GetStats(), timeout=5)

        pg.stop_server()  # the real server process, stopped (pg_ctl -m fast)
        down = time.monotonic()
        time.sleep(OUTAGE_S)  # the outage's duration, under load
        back_begin = time.monotonic()
        pg.start_server()
        back = time.monotonic()

        # recovery, by itself: new deliveries are acknowledged again
        first_ok = wait_until(lambda: next((p for p in list(load.posts) if p.sent >= back and p.status == 200), None),
                              timeout=20, interval=0.05)
        wait_until(lambda: sum(1 for p in list(load.posts) if p.sent >= back and p.status == 200) >= 30,
                   timeout=20, interval=0.05)
        load.stop_driving()
        # every planned delivery (those refused during the outage included) is acknowledged on a retry
        wait_until(lambda: load.outstanding() == 0, timeout=20, interval=0.05)
    finally:
        load.stop()
        probe.stop()

    def pending() -> int:
        return app.store.run(lambda c: c.fetchval("SELECT count(*) FROM webhook_inbox WHERE processed_at IS NULL"))  # type: ignore[union-attr]

    try:
        wait_until(lambda: pending() == 0, timeout=30, interval=0.1)
    except AssertionError:
        stuck = app.store.run(lambda c: c.fetch(
            """SELECT i.signature, i.wallets, i.received_at, array(SELECT o.wallet FROM observations o
                      WHERE o.signature = i.signature) AS observed FROM webhook_inbox i WHERE processed_at IS NULL"""))
        answers = {r["signature"]: [(round(p.sent - down, 2), p.status, p.body) for p in load.posts
                                    if r["signature"] in p.signatures] for r in stuck}
        raise AssertionError(f"{len(stuck)} stored deliveries never processed: "
                             f"{[(dict(r), answers[r['signature']]) for r in stuck][:5]}; actors: {_shells()}") from None
    drained = time.monotonic()
    health = httpx.get(f"{base}/health", timeout=10)

    # -- what the sender saw ------------------------------------------------------------------------------
    posts = load.posts
    statuses = Counter(p.status for p in posts)
    assert statuses[None] == 0, [p.body for p in posts if p.status is None][:3]  # no hang, no dropped connection
    assert set(statuses) <= {200, 503}, statuses  # no 4xx, and no 5xx but 503
    for p in posts:
        if p.status == 503:
            assert p.body["error"] == "database_unavailable" and p.retry_after, p
        if p.status == 200:
            assert p.body["accepted"] + p.body["duplicates"] == len(set(p.signatures)), p
    during = load.posts_between(down, back_begin)  # sent after the server stopped, answered before it restarted
    assert len(during) >= 50, len(during)
    assert all(p.status == 503 for p in during), Counter(p.status for p in during)

    # -- what was stored and processed ------------------------------------------------------------------------
    async def facts(conn: Any) -> dict[str, Any]:
        return {
            "inbox": {r["signature"]: (list(r["wallets"]), r["processed_at"]) for r in await conn.fetch(
                "SELECT signature, wallets, processed_at FROM webhook_inbox")},
            "observations": Counter((r["signature"], r["wallet"]) for r in await conn.fetch(
                "SELECT signature, wallet FROM observations")),
            "signals": Counter((r["signature"], r["wallet"]) for r in await conn.fetch("SELECT signature, wallet FROM signals")),
            "signal_observations": {(r["signature"], r["wallet"]) for r in await conn.fetch(
                "SELECT signature, wallet FROM observations WHERE outcome = 'signal'")},
        }

    db = app.store.run(facts)
    acked_signatures = {s for p in posts if p.status == 200 for s in p.signatures}
    planned_signatures = {s for sigs in load.planned.values() for s in sigs}
    assert acked_signatures == planned_signatures  # every delivery was acknowledged in the end
    missing = acked_signatures - set(db["inbox"])
    assert not missing, f"{len(missing)} signatures were acknowledged with a 200 but are not stored"
    assert all(processed is not None for _, processed in db["inbox"].values())
    expected = {(s, w) for s, (wallets, _) in db["inbox"].items() for w in wallets}
    assert expected, "no watched wallet's transaction was delivered"
    assert set(db["observations"]) == expected  # each (transaction, watched wallet) observed ...
    assert set(db["signals"]) == db["signal_observations"]
    assert max(db["signals"].values()) == 1  # ... and signalled at most once: nothing processed twice

    # -- the actors and the services survived, and /health is back ------------------------------------------
    stats_after = app.root.ask(GetStats(), timeout=5)
    assert stats_after["wallets"] == len(leaders) and stats_after["restarts"] == stats_before["restarts"] == 0
    for address, ref in children_before.items():
        assert ref.is_alive() and app.actors.lookup(("wallet", address)) is ref, address
    assert app.gateway is not None and app.gateway.running and app.monitor is not None and app.monitor.running
    assert health.status_code == 200, health.text
    body = health.json()
    assert body["database"] == "connected" and body["inbox_pending"] == 0 and body["actors"]["wallets"] == len(leaders)
    outage_health = [(s, b) for t0, t1, s, b in probe.seen if t0 >= down and t1 <= back_begin]
    assert outage_health and all(s == 503 and b["database"] == "unreachable" for s, b in outage_health), outage_health
    healthy_again = next(t1 for t0, t1, s, _ in probe.seen if t0 >= back and s == 200)

    report = {
        "posts": len(posts), "statuses": dict(statuses), "deliveries": len(load.planned),
        "transactions_stored": len(db["inbox"]), "observations": len(expected), "signals": sum(db["signals"].values()),
        "posts_during_outage": len(during), "restart_s": round(back - back_begin, 2),
        "first_200_after_restart_s": round(first_ok.done - back, 2), "health_200_after_restart_s": round(healthy_again - back, 2),
        "inbox_drained_after_restart_s": round(drained - back, 2), "test_s": round(time.monotonic() - t_begin, 1),
    }
    print("outage under load:", json.dumps(report))


def test_a_stored_delivery_is_not_reported_unstored_when_the_server_dies_right_after(db_url: str) -> None:
    """The server goes away after the insert committed, while the pool resets the connection for reuse (as with
    `pg_ctl stop` mid-load): the store's answer is still the insert's. Reported as a failure, the gateway would
    answer 503 for a stored delivery, Helius' retry would be a duplicate, and it would never be processed."""
    import asyncpg

    from walltrack.bridge import AsyncioThread
    from storage.db import migrate

    async def terminate_then_reset(con: asyncpg.Connection) -> None:
        admin = await asyncpg.connect(db_url)
        try:
            assert await admin.fetchval("SELECT pg_terminate_backend($1, 5000)", con.get_server_pid())
        finally:
            await admin.close()
        await con.reset()  # fails: the backend is gone

    async def open_pool() -> asyncpg.Pool:
        conn = await asyncpg.connect(db_url)
        try:
            await migrate(conn)
        finally:
            await conn.close()
        return await asyncpg.create_pool(db_url, min_size=1, max_size=1, reset=terminate_then_reset)

    loop = AsyncioThread()
    store = repo.Store(loop, loop.run(open_pool(), timeout=30))
    try:
        tx = json.dumps({"signature": "sig-1"})
        assert store.store_deliveries([("sig-1", tx, ["wallet-1"])]).result(30) == {"sig-1"}
        assert store.store_deliveries([("sig-1", tx, ["wallet-1"])]).result(30) == set()  # on a fresh connection
    finally:
        loop.run(store.pool.close(), timeout=10)
        loop.stop()
