"""Copy rules and risk through REAL actors on a real embedded PostgreSQL.

- A hypothesis property: many concurrent buy signals across wallets and tokens, through the root, the
  wallet actors and the one RiskActor; no global cap is ever exceeded and no leader transaction opens
  two positions.
- The running App: a breaker trips after its losses and blocks the next entry (recorded, logged, on
  /health), and resets by the operator's command (CLI -> NOTIFY -> actor) and by time; live mode is refused;
  `wallets set` reaches the running wallet actor.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from decimal import Decimal
from typing import Any, Iterator

import httpx
import pykka
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors.edge import Edge
from actors.messages import Deliver, PositionClosed
from actors.ports import Ports
from actors.risk import RiskConfig
from actors.rules import CopyRules
from actors.supervisor import RootSupervisor
from actors.trades import WSOL_MINT
from tests.conftest import wait_until
from tests.copykit import pubkey, sig, swap_payload
from walltrack import cli
from storage import repo
from walltrack.app import App
from adapters.jupiter import JupiterClient
from walltrack.bridge import AsyncioThread, TrioThread
from execution.paper import PaperExecutor
from storage.db import migrate

SOL = 10**9
WALLETS = [pubkey(f"leader{i}") for i in range(4)]
TOKENS = [pubkey(f"token{i}") for i in range(4)]
DAY_NOON = 20_000 * 86_400 + 43_200.0  # a fixed clock: one UTC day, reservations never expire mid-test


@pytest.fixture
def engine(db_url: str) -> Iterator[tuple[repo.Store, PaperExecutor, AsyncioThread]]:
    """The store, and the real paper executor quoting from a provider that accepts connections and never
    answers: entries stay pending until a leader sell closes them (entry_failed), so caps really bind."""
    loop = AsyncioThread(name="test-asyncio")
    store = repo.Store.open(loop, db_url)
    store.run(migrate)
    runtime = TrioThread(name="test-trio").start()
    with socket.socket() as blackhole:
        blackhole.bind(("127.0.0.1", 0))
        blackhole.listen(256)
        jupiter = JupiterClient(f"http://127.0.0.1:{blackhole.getsockname()[1]}", tier="pro", attempt_timeout_s=600)
        try:
            yield store, PaperExecutor(runtime, jupiter, time.time, timeout_s=600), loop
        finally:
            pykka.ActorRegistry.stop_all()
            runtime.stop()
            store.close()
            loop.stop()


def _reset(store: repo.Store) -> None:
    store.run(lambda c: c.execute(
        "TRUNCATE observations, signals, positions, position_events, breakers, breaker_events, webhook_inbox RESTART IDENTITY CASCADE"))


caps = st.fixed_dictionaries({
    "max_open_positions": st.integers(1, 6),
    "max_token_exposure_sol": st.sampled_from([Decimal("0.1"), Decimal("0.25"), Decimal("0.4")]),
    "max_total_exposure_sol": st.sampled_from([Decimal("0.3"), Decimal("0.6"), Decimal("1")]),
    "max_trades_per_day": st.integers(1, 20),
    "starting_capital_sol": st.sampled_from([Decimal("1"), Decimal("2")]),
    "reserve_sol": st.sampled_from([Decimal("0.5"), Decimal("1.5")]),
})
ops = st.lists(st.tuples(st.sampled_from(["buy", "buy", "buy", "sell"]), st.integers(0, 3), st.integers(0, 3),
                         st.integers(1, 40)), min_size=5, max_size=40)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(limits=caps, trades=ops, repeat=st.lists(st.integers(0, 39), max_size=8), threads=st.integers(1, 4))
def test_concurrent_buys_never_exceed_a_cap(engine: tuple[repo.Store, PaperExecutor, AsyncioThread], limits: dict[str, Any],
                                            trades: list[tuple[str, int, int, int]], repeat: list[int], threads: int) -> None:
    store, executor, loop = engine
    _reset(store)
    cfg = RiskConfig(**limits, max_drawdown_pct=Decimal(0), daily_loss_sol=Decimal(0), loss_streak=0,
                     stoploss_cooldown_s=0, wallet_loss_streak=0)
    rules = CopyRules(sizing="percent", percent=Decimal("10"), min_sol=Decimal("0.02"), max_sol=Decimal("0.3"),
                      max_buys_per_token=100, skip_add_ons=False)
    ports = Ports(store, loop, rules, clock=lambda: DAY_NOON, risk=cfg, executor=executor)
    root = RootSupervisor.start(ports)
    edge = Edge(root, ports, None)
    try:
        proxy = root.proxy()
        for w in WALLETS:
            proxy.adopt_wallet(w, store.wallet_open_positions(w).result(10)).get()
        deliveries = []
        for i, (side, w, t, n) in enumerate(trades):
            s = sig(f"{side}{i}:{w}:{t}")
            deliveries.append(Deliver(s, swap_payload(s, WALLETS[w], TOKENS[t], side, n * SOL // 10, 10**6 * n), (WALLETS[w],)))
        deliveries += [deliveries[i] for i in repeat if i < len(deliveries)]  # the same transaction again
        batches = [deliveries[k::threads] for k in range(threads)]
        workers = [threading.Thread(target=lambda b=b: [edge.tell(d) for d in b]) for b in batches]
        for t in workers:
            t.start()
        for t in workers:
            t.join()
        distinct = len({d.signature for d in deliveries})
        count = "SELECT (SELECT count(*) FROM observations) + (SELECT count(*) FROM signals)"
        wait_until(lambda: store.run(lambda c: c.fetchval(count)) == 2 * distinct, timeout=30)
        rows = store.run(lambda c: c.fetch(
            """SELECT p.id, p.token_mint, (e.data->>'entry_quote_amount')::numeric AS q, p.opened_at, p.closed_at,
                      s.signature, s.wallet
                 FROM positions p JOIN signals s ON s.id = p.signal_id
                 JOIN position_events e ON e.position_id = p.id AND e.seq = 1
                WHERE p.mode <> 'shadow' ORDER BY p.opened_at"""))
        signals = store.run(lambda c: c.fetch("SELECT side, decision, reason FROM signals"))
    finally:
        root.stop()

    # no leader transaction opens two positions (ours or shadows), however often it is delivered
    per_tx = store.run(lambda c: c.fetch("SELECT signal_id, count(*) AS n FROM positions GROUP BY signal_id HAVING count(*) > 1"))
    assert per_tx == [] and len({(r["signature"], r["wallet"]) for r in rows}) == len(rows)
    # every buy is taken or skipped for a reason: here, only a cap can refuse
    assert {r["reason"] for r in signals if r["side"] == "buy"} <= {
        "copy_buy", "cap:max_open_positions", "cap:max_token_exposure", "cap:max_total_exposure",
        "cap:max_trades_per_day", "cap:reserve"}
    assert sum(r["side"] == "buy" and r["decision"] == "taken" for r in signals) == len(rows)
    # trades per day: every entry counts (one simulated day)
    assert len(rows) <= cfg.max_trades_per_day
    # At each entry's opening, what was open then (the database's intervals lie within the risk actor's own,
    # which start at the grant and end after the close is stored) stays within every cap.
    capital, reserve = cfg.starting_capital_sol * SOL, cfg.reserve_sol * SOL
    for r in rows:
        t = r["opened_at"]
        live = [q for q in rows if q["opened_at"] <= t and (q["closed_at"] is None or q["closed_at"] > t)]
        total = sum(int(q["q"]) for q in live)
        assert len(live) <= cfg.max_open_positions
        assert sum(int(q["q"]) for q in live if q["token_mint"] == r["token_mint"]) <= cfg.max_token_exposure_sol * SOL
        assert total <= cfg.max_total_exposure_sol * SOL
        assert capital - total >= reserve


# -- the running App: breakers, live mode, per-wallet rules ------------------------------------------------------------
class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


LEADER, OTHER = WALLETS[0], WALLETS[1]


def token(name: str) -> str:
    return pubkey(f"tok:{name}")


def buy(app: App, name: str, wallet: str = LEADER) -> str:
    """The leader buys token(name) for 1 SOL (a fresh token per buy: no add-ons, no per-token limits)."""
    s = sig(name)
    assert app.root is not None
    app.actors.tell(Deliver(s, swap_payload(s, wallet, token(name), "buy", SOL, 10**6), (wallet,)))
    return s


def signal(app: App, signature: str) -> dict[str, Any]:
    assert app.store is not None
    return wait_until(lambda: (rows := app.store.run(lambda c: c.fetch(
        "SELECT s.decision, s.reason, p.id AS position_id, p.mode FROM signals s LEFT JOIN positions p ON p.signal_id = s.id"
        " WHERE s.signature = $1", signature))) and dict(rows[0]))


def watch(app: App, *wallets: str) -> None:
    assert app.store is not None
    for w in wallets:
        app.store.run(lambda c, w=w: repo.add_wallet(c, w, "test"))
    wait_until(lambda: set(wallets) <= app.watched)


def health(app: App) -> dict[str, Any]:
    return httpx.get(f"http://127.0.0.1:{app.gateway_port}/health", timeout=5).json()


def use_cli(app: App, db_url: str, *argv: str) -> subprocess.CompletedProcess:
    """`walltrack ...` as the operator runs it, in its own process, against the bot's database."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "TRADING_MODE")}
    env.update(DATABASE_URL=db_url, WALLTRACK_DATA_DIR=str(app.settings.walltrack_data_dir))
    return subprocess.run([sys.executable, "-m", "walltrack.cli", *argv], env=env, capture_output=True, text=True,
                          timeout=60, cwd=str(app.settings.walltrack_data_dir.parent))


@pytest.fixture
def breaker_app(make_settings: Any) -> Iterator[tuple[App, Clock]]:
    """An App whose quote provider accepts connections and never answers: entries stay pending, so the
    losses this test reports are the only closes the risk actor sees."""
    clock = Clock(DAY_NOON)
    with socket.socket() as blackhole:
        blackhole.bind(("127.0.0.1", 0))
        blackhole.listen(64)
        app = App(make_settings(breaker_loss_streak=2, breaker_loss_streak_stop_minutes=30, breaker_wallet_loss_streak=0,
                                breaker_daily_loss_sol=0, breaker_max_drawdown_pct=0, breaker_stoploss_cooldown_minutes=0,
                                jupiter_base_url=f"http://127.0.0.1:{blackhole.getsockname()[1]}", http_timeout_s=300,
                                provider_max_wait_s=600),  # queue for budget rather than fail: entries stay pending
                  clock=clock).start()
        try:
            yield app, clock
        finally:
            app.stop()
            pykka.ActorRegistry.stop_all()


def lose(app: App, name: str, position_id: int) -> None:
    """The position closes at a loss (what the position actor tells the root when its exit is stored)."""
    assert app.root is not None
    app.actors.tell(PositionClosed(position_id, LEADER, token(name), mode="paper", quote_mint=WSOL_MINT,
                                 realized_pnl_quote=-SOL // 20, exit_reason="mirror_sell"))


def test_breaker_trips_blocks_and_resets_by_command_and_by_time(breaker_app: tuple[App, Clock], db_url: str) -> None:
    app, clock = breaker_app
    watch(app, LEADER)
    first, second = signal(app, buy(app, "a")), signal(app, buy(app, "b"))
    assert first["decision"] == second["decision"] == "taken"
    lose(app, "a", first["position_id"])
    assert signal(app, buy(app, "c"))["decision"] == "taken"  # one loss: not yet
    lose(app, "b", second["position_id"])
    row = wait_until(lambda: app.store.run(lambda c: c.fetchrow("SELECT * FROM breakers WHERE name = 'loss_streak'")))
    assert row["state"] == "tripped" and "2 consecutive losses" in row["reason"]
    blocked = signal(app, buy(app, "d"))
    assert (blocked["decision"], blocked["reason"], blocked["mode"]) == ("skipped", "breaker:loss_streak", "shadow")
    cb = health(app)["circuit_breaker"]
    assert cb["state"] == "open" and cb["breakers"][0]["name"] == "loss_streak" and health(app)["status"] == "degraded"

    # the operator resets it: CLI -> table -> NOTIFY -> the running risk actor
    listed = use_cli(app, db_url, "breakers", "list", "--json")
    assert listed.returncode == 0 and json.loads(listed.stdout)[0]["state"] == "tripped"
    assert use_cli(app, db_url, "breakers", "reset", "loss_streak").returncode == 0
    again = use_cli(app, db_url, "breakers", "reset", "loss_streak")
    assert again.returncode == 2 and "no tripped breaker" in again.stderr
    wait_until(lambda: health(app)["circuit_breaker"]["state"] == "closed")
    assert signal(app, buy(app, "e"))["decision"] == "taken"

    # trip it again, then let its time pass
    clock.t += 60
    lose(app, "f", signal(app, buy(app, "f"))["position_id"])
    lose(app, "g", signal(app, buy(app, "g"))["position_id"])
    wait_until(lambda: health(app)["circuit_breaker"]["state"] == "open")
    assert signal(app, buy(app, "h"))["reason"] == "breaker:loss_streak"
    clock.t += 30 * 60
    assert signal(app, buy(app, "i"))["decision"] == "taken"
    events = app.store.run(lambda c: c.fetch("SELECT kind, by FROM breaker_events ORDER BY id"))
    assert [(e["kind"], e["by"]) for e in events] == [("tripped", "risk"), ("reset", "operator"), ("tripped", "risk"),
                                                     ("reset", "time")]


def test_live_mode_is_refused_with_a_reason(make_settings: Any) -> None:
    app = App(make_settings(wallet_private_key=None, copy_mode="live")).start()  # live rules, no wallet key
    try:
        watch(app, LEADER)
        s = signal(app, buy(app, "live"))
        assert (s["decision"], s["reason"], s["mode"]) == ("skipped", "live_not_available", "shadow")
        assert app.store.run(lambda c: c.fetchval("SELECT count(*) FROM positions WHERE mode <> 'shadow'")) == 0
    finally:
        app.stop()
        pykka.ActorRegistry.stop_all()


def test_wallet_overrides_reach_the_running_bot(app: App, db_url: str) -> None:
    watch(app, LEADER, OTHER)
    assert use_cli(app, db_url, "wallets", "set", LEADER, "mode=live", "fixed_sol=0.2").returncode == 0
    bad = use_cli(app, db_url, "wallets", "set", LEADER, "mode=warp")
    assert bad.returncode == 2 and "mode" in bad.stderr
    shown = json.loads(use_cli(app, db_url, "wallets", "show", LEADER, "--json").stdout)
    assert shown["overrides"] == {"mode": "live", "fixed_sol": "0.2"} and shown["effective"]["fixed_sol"] == "0.2"

    def refused() -> bool:  # the NOTIFY reaches the wallet actor; until then a buy may still be copied
        s = signal(app, buy(app, f"x{time.monotonic()}"))
        return s["reason"] == "live:global_mode_not_live"  # the key is there; the operator's global mode is paper

    wait_until(refused, timeout=10, interval=0.1)
    assert signal(app, buy(app, "other", wallet=OTHER))["reason"] == "copy_buy"  # the other wallet keeps the defaults
    stats = {r["address"]: r for r in json.loads(use_cli(app, db_url, "wallets", "stats", "--json").stdout)}
    assert stats[LEADER]["state"] == "unmeasured" and stats[LEADER]["signals_skipped"] >= 1
    assert stats[OTHER]["signals_taken"] == 1
