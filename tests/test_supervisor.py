"""The real root supervisor under failure: a crashed wallet actor restarts from the database after a backoff;
one that fails past its restart intensity escalates — the global breaker trips (new entries refused), /health
is degraded, one error line says so — until an operator resets the breaker. Real actors, embedded PostgreSQL.

A wallet actor is crashed the way a corrupt inbox row would crash it: a delivery whose payload is not JSON; a
position actor by an event its table does not know.
"""

from __future__ import annotations

import json
import time
from dataclasses import fields
from typing import Any, Callable, Iterator

import httpx
import pykka
import pytest
from structlog.testing import capture_logs

from actors.messages import BreakerReset, Deliver, GetStats, ReserveEntry, TripBreaker
from actors.position import fold
from actors.risk import SUPERVISOR_BREAKER, RiskConfig, RiskState, scope, transition
from actors.trades import WSOL_MINT
from actors.wallet import WalletState
from sandbox.market import pubkey, signature
from tests.conftest import PUMP_WALLET, wait_until
from tests.test_gateway import PUMP, db, post, url, watch
from tests.test_position_engine import Engine, engine  # noqa: F401 - the fixture
from storage import repo
from walltrack.app import App

CRASHER = pubkey("supervised-leader")


@pytest.fixture
def start_app(make_settings: Callable[..., Any]) -> Iterator[Callable[..., App]]:
    apps: list[App] = []

    def start(**settings: Any) -> App:
        apps.append(App(make_settings(**settings)).start())
        return apps[-1]

    try:
        yield start
    finally:
        for a in apps:
            a.stop()
        pykka.ActorRegistry.stop_all()


def running(app: App, wallet: str) -> pykka.ActorRef | None:
    assert app.root is not None
    ref = app.actors.lookup(("wallet", wallet))
    return ref if ref is not None and ref.is_alive() else None


def crash(app: App, wallet: str, n: int) -> pykka.ActorRef:
    """Crash the wallet's running actor (a payload that is not JSON) and wait until it is dead."""
    assert app.root is not None
    ref = wait_until(lambda: running(app, wallet))
    app.actors.tell(Deliver(signature(f"poison-{wallet}-{n}"), "{not json", (wallet,)))
    wait_until(lambda: not ref.is_alive())
    return ref


def health(app: App) -> dict[str, Any]:
    return httpx.get(url(app, "/health"), timeout=5).json()


def test_the_risk_table_refuses_entries_while_the_supervisor_breaker_is_tripped() -> None:
    cfg, now, later = RiskConfig(), 1_000_000.0, 1_000_000.0 + 30 * 86_400
    state, effects = transition(RiskState(), TripBreaker(SUPERVISOR_BREAKER, "wallet:X failed 3 times"), cfg, now)
    assert [e.events for e in effects] == [({"name": SUPERVISOR_BREAKER, "kind": "tripped", "by": "supervisor",
                                             "reason": "wallet:X failed 3 times", "trip_at": now, "at": now, "until": None},)]
    again, effects = transition(state, TripBreaker(SUPERVISOR_BREAKER, "another"), cfg, now + 1)
    assert effects == [] and again == state  # the first reason stands until a reset
    state, (reply,) = transition(state, ReserveEntry("r", "W", "M", WSOL_MINT, 10**8), cfg, later)
    assert (reply.decision.granted, reply.decision.reason) == (False, f"breaker:{SUPERVISOR_BREAKER}")  # no time limit
    assert scope(SUPERVISOR_BREAKER) == "global"
    cleared, _ = transition(state, BreakerReset(SUPERVISOR_BREAKER), cfg, later)
    assert cleared.breakers == {}


def test_a_wallet_failing_past_its_intensity_trips_the_global_breaker(start_app: Callable[..., App]) -> None:
    app = start_app(supervisor_max_restarts=2, supervisor_period_s=60, supervisor_backoff_s=0.01)
    watch(app, CRASHER)
    watch(app, PUMP_WALLET)
    wait_until(lambda: running(app, CRASHER) and running(app, PUMP_WALLET))
    with capture_logs() as logs:
        for n in range(3):  # two restarts within the period, then the third failure escalates
            crash(app, CRASHER, n)
        h = wait_until(lambda: (h := health(app))["status"] == "degraded" and h)
        assert h["circuit_breaker"]["state"] == "open"
        reason = h["circuit_breaker"]["reason"]
        assert f"wallet:{CRASHER} failed 3 times within 60 s" in reason and "JSONDecodeError" in reason
        assert running(app, CRASHER) is None  # given up on: not restarted again

        # a buy from another wallet is refused by the breaker, with its reason
        assert post(app, [PUMP[0]]).status_code == 200
        sig = wait_until(lambda: db(app, "SELECT decision, reason FROM signals WHERE signature = $1",
                                    PUMP[0]["signature"]))
        assert (sig[0]["decision"], sig[0]["reason"]) == ("skipped", f"breaker:{SUPERVISOR_BREAKER}")
        row = db(app, "SELECT state, reason FROM breakers WHERE name = $1", SUPERVISOR_BREAKER)
        assert row[0]["state"] == "tripped" and row[0]["reason"] == reason

        # the operator resets it (as `walltrack breakers reset` does): health clears, the wallet runs again
        assert app.store is not None and app.store.run(lambda c: repo.reset_breaker(c, SUPERVISOR_BREAKER))
        wait_until(lambda: health(app)["status"] == "ok")
        wait_until(lambda: running(app, CRASHER))
    escalations = [e for e in logs if e["event"] == "supervisor_escalated"]
    assert len(escalations) == 1, escalations
    (line,) = escalations
    assert (line["log_level"], line["child"], line["restarts"], line["window_s"]) == ("error", f"wallet:{CRASHER}", 2, 60)
    assert "JSONDecodeError" in line["error"] and line["breaker"] == SUPERVISOR_BREAKER


def test_below_its_intensity_a_crashed_wallet_restarts_from_the_database_and_goes_on(start_app: Callable[..., App]) -> None:
    app = start_app(supervisor_max_restarts=3, supervisor_backoff_s=0.01)
    watch(app, PUMP_WALLET)
    assert post(app, [PUMP[0]]).status_code == 200  # a copied buy: an open position in the wallet's books
    before: WalletState = wait_until(lambda: (r := running(app, PUMP_WALLET)) and (s := r.ask("state")).open_by_token and s)
    crash(app, PUMP_WALLET, 0)
    again = wait_until(lambda: running(app, PUMP_WALLET)).ask("state")
    for f in fields(WalletState):
        assert getattr(again, f.name) == getattr(before, f.name), f.name
    assert post(app, [PUMP[1], PUMP[2]]).status_code == 200  # and it keeps deciding
    wait_until(lambda: len(db(app, "SELECT 1 FROM signals")) == 3)
    h = health(app)
    assert h["status"] == "ok" and h["actors"]["restarts"] == 1 and h["circuit_breaker"]["state"] == "closed"


def test_restarts_wait_out_a_doubling_backoff_without_blocking_the_root(start_app: Callable[..., App]) -> None:
    app = start_app(supervisor_max_restarts=5, supervisor_backoff_s=0.5)  # jitter ±20 %: 0.4 s, then 0.8 s at least
    assert app.root is not None
    watch(app, PUMP_WALLET)
    wait_until(lambda: running(app, PUMP_WALLET))
    for n, least in enumerate((0.4, 0.8)):
        sent = time.monotonic()
        old = crash(app, PUMP_WALLET, n)
        # during the backoff: nothing runs yet, and the root answers at once
        assert running(app, PUMP_WALLET) is None and app.root.ask(GetStats(), timeout=0.2)["restarts"] == n + 1
        new = wait_until(lambda: running(app, PUMP_WALLET), interval=0.005)
        waited = time.monotonic() - sent
        assert new != old and least <= waited < least * 1.5 + 2, waited
    # a delivery that arrives while the wallet is down waits for it, in order
    crash(app, PUMP_WALLET, 2)
    assert post(app, [PUMP[0]]).status_code == 200
    assert running(app, PUMP_WALLET) is None  # the root has the delivery: it holds it for the wallet
    wait_until(lambda: db(app, "SELECT 1 FROM signals WHERE signature = $1", PUMP[0]["signature"]))


def test_a_position_killed_mid_tick_restarts_with_the_same_state(engine: Engine) -> None:  # noqa: F811
    pid = engine.open("STDY")  # its parent is the engine's root supervisor
    engine.settle(pid, "open")
    before = engine.step_tick(pid, 1.08)  # a tick decided and stored (a new high-water mark)
    journal = engine.journal(pid)
    old = engine.refs[pid]
    engine.tick(pid)  # the same price again: being decided when ...
    old.tell("no such command")  # ... an event its table does not know crashes it
    wait_until(lambda: not old.is_alive())
    engine.refs[pid] = wait_until(lambda: (r := engine.directory.lookup(("position", str(pid)))) and r.is_alive() and r)
    again = engine.state(pid)
    assert engine.journal(pid) == journal
    for f in fields(type(before)):
        assert getattr(again, f.name) == getattr(before, f.name), f.name
    engine.move_to(pid, 0.75)  # and it trades on: its stop loss fires (the root stops it once closed)
    engine.tick(pid)
    wait_until(lambda: engine.kinds(pid)[-1] == "exit_filled")
    assert fold(pid, engine.journal(pid)).exit_reason == "stop_loss"


def test_a_restarted_wallet_replays_the_stored_deliveries_its_mailbox_lost(start_app: Callable[..., App]) -> None:
    app = start_app(supervisor_max_restarts=3, supervisor_backoff_s=0.01)
    assert app.store is not None
    watch(app, PUMP_WALLET)
    wait_until(lambda: running(app, PUMP_WALLET))
    # stored (acknowledged to Helius) but never handed to the actor: what its mailbox held when it crashed
    lost = PUMP[1]
    assert app.store.store_deliveries([(lost["signature"], json.dumps(lost), [PUMP_WALLET])]).result(10)
    crash(app, PUMP_WALLET, 0)
    wait_until(lambda: db(app, "SELECT 1 FROM signals WHERE signature = $1", lost["signature"]))
    assert wait_until(lambda: db(app, "SELECT processed_at FROM webhook_inbox WHERE signature = $1",
                                 lost["signature"])[0]["processed_at"])
    assert len(db(app, "SELECT 1 FROM observations WHERE signature = $1", lost["signature"])) == 1


def test_a_stored_delivery_never_dispatched_is_swept_to_the_actors(start_app: Callable[..., App]) -> None:
    """The safety net: a delivery stored but not handed out (its commit outlived its connection, so Helius's
    retry was acknowledged as a duplicate) is dispatched again once it is older than INBOX_SWEEP_S."""
    app = start_app(inbox_sweep_s=1)
    assert app.store is not None
    watch(app, PUMP_WALLET)
    wait_until(lambda: running(app, PUMP_WALLET))
    stuck = PUMP[2]
    assert app.store.store_deliveries([(stuck["signature"], json.dumps(stuck), [PUMP_WALLET])]).result(10)
    wait_until(lambda: db(app, "SELECT processed_at FROM webhook_inbox WHERE signature = $1",
                          stuck["signature"])[0]["processed_at"], timeout=20)
    assert len(db(app, "SELECT 1 FROM signals WHERE signature = $1", stuck["signature"])) == 1
