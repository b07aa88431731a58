"""Chaos: faults injected into a running `walltrack run` under webhook load, one after another, each followed by
the same checks (tests/chaos/world.py `invariants`): every acknowledged delivery processed exactly once, no position
opened twice, no cap exceeded, PnL equal to the sum of its fills — and the bot healthy again within a bound. The
table of faults survived is printed at the end of the run (tests/chaos/conftest.py).

The faults, in this order: a burst of duplicate and out-of-order deliveries; every sandbox provider failing at once
(5xx, 429, timeouts); the bot frozen by SIGSTOP for 10 s; its embedded PostgreSQL killed (SIGKILL of the
postmaster); the bot killed (kill -9) and started again; its wall clock stepped an hour ahead, then back.
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

from sandbox.helius import enhanced_tx, choose_shape, shape_rng
from .conftest import World, record  # the module pytest loaded: its table is the one printed
from tests.chaos.world import invariants
from tests.conftest import wait_until


def survive(world: World, fault: str, inject: Callable[[], float]) -> dict[str, Any]:
    """Inject a fault (under load), wait until the bot is healthy again, check the invariants, record the row."""
    row: dict[str, Any] = {"held": "no"}
    try:
        over = inject()  # returns when the fault is over (monotonic time)
        row["healthy_s"] = round(world.bot.healthy_again(over), 1)
        wait_until(lambda: len(world.load.acknowledged()) > 0, timeout=30)
        row.update(invariants(world.bot, world.load.acknowledged()))
        row["held"] = "yes"
        return row
    finally:
        record(fault, **row)


def test_warm_up_trades_flow(world: World) -> None:
    def start() -> float:
        wait_until(lambda: world.bot.query("SELECT count(*) AS n FROM positions WHERE mode = 'paper'")[0]["n"] >= 2,
                   timeout=90, interval=0.5)
        return time.monotonic()

    row = survive(world, "none (warm-up)", start)
    assert row["opened"] >= 2


def test_a_burst_of_duplicate_and_out_of_order_deliveries(world: World) -> None:
    def burst() -> float:
        load = world.load
        load.hold()  # the next few seconds of trades, kept back ...
        wait_until(lambda: len(load.held or []) >= 6, timeout=60, interval=0.2)
        trades = load.release()
        fresh = [json.dumps([enhanced_tx(t, choose_shape(shape_rng(7, t), t))]).encode() for t in trades]
        fresh.reverse()  # ... then sent newest first: a sale before the buy it closes
        seen = sorted(load.poster.acknowledged())[:40]
        rows = world.bot.query("SELECT payload::text AS p FROM webhook_inbox WHERE signature = ANY($1)", seen)
        again = [f"[{r['p']}]".encode() for r in rows]  # and deliveries already acknowledged, again
        bodies = [*fresh, *fresh, *again]
        random.Random(11).shuffle(bodies[len(fresh):])
        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(load.post, bodies))
        assert set(statuses) == {200}, statuses
        load.extra_acked.update(t.signature for t in trades)
        return time.monotonic()

    survive(world, "duplicate + out-of-order burst", burst)


def test_every_sandbox_provider_failing_at_once(world: World) -> None:
    faults = world.sb.faults

    def outage() -> float:
        faults["jupiter"].error_status = 503
        faults["dexscreener"].rate_limited = True
        faults["dexscreener"].retry_after_s = 1
        faults["rpc"].timeout = True
        faults["rugcheck"].error_status = 500
        seen = len(world.load.acknowledged())
        wait_until(lambda: len(world.load.acknowledged()) >= seen + 5, timeout=60, interval=0.2)  # deliveries go on
        time.sleep(8)  # the outage's length, under load
        for name in ("jupiter", "dexscreener", "rpc", "rugcheck"):
            faults[name].clear()
        return time.monotonic()

    survive(world, "all providers 5xx/429/timeout", outage)

    def breakers() -> dict[str, str]:
        return {name: p["breaker"] for name, p in world.bot.health()[1]["providers"].items()}

    # the price provider is called twice a second: its breaker closes again; none is held open
    wait_until(lambda: breakers()["jupiter"] == "closed" and "open" not in breakers().values(), timeout=60, interval=0.5)


def test_the_bot_frozen_by_sigstop_for_10_s(world: World) -> None:
    def freeze() -> float:
        world.bot.signal(signal.SIGSTOP)
        try:
            time.sleep(10)  # the fault's length: nothing in the bot runs meanwhile
        finally:
            world.bot.signal(signal.SIGCONT)
        return time.monotonic()

    survive(world, "SIGSTOP bot 10 s", freeze)


def test_its_embedded_postgresql_killed(world: World) -> None:
    before = world.bot.health()[1].get("database_restarts", 0)

    def kill() -> float:
        os.kill(world.bot.postmaster(), signal.SIGKILL)  # an OOM kill
        return time.monotonic()

    survive(world, "SIGKILL embedded PostgreSQL", kill)
    assert world.bot.health()[1]["database_restarts"] == before + 1


def test_the_bot_killed_and_started_again(world: World) -> None:
    def kill() -> float:
        world.bot.kill9()
        t = time.monotonic()
        world.bot.start()  # the service manager's restart
        return t

    survive(world, "kill -9 bot + restart", kill)


def test_a_clock_jump(world: World) -> None:
    def jump() -> float:
        before = world.bot.query("SELECT count(*) AS n FROM observations WHERE reason = 'implausible:timestamp'")[0]["n"]
        world.clock_file.write_text("3600")  # the bot's wall clock steps an hour ahead
        wait_until(lambda: world.bot.query("SELECT count(*) AS n FROM observations WHERE reason = "
                                           "'implausible:timestamp'")[0]["n"] > before, timeout=60, interval=0.5)
        world.clock_file.write_text("0")  # and is corrected
        return time.monotonic()

    survive(world, "clock +1 h, then back", jump)
    wait_until(lambda: world.bot.query("SELECT count(*) AS n FROM signals WHERE created_at > now() - interval '20 s'"
                                       )[0]["n"] > 0, timeout=60, interval=0.5)  # and it copies again
