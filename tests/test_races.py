"""The three races left open, each closed — real App, real PostgreSQL, the sandbox market for fills:

(a) an observation committed just as its connection died: the retry finds the row its own decision wrote and goes
    on as stored, so the new position's actor starts (it used to read "duplicate" and leave the position unstarted
    until the next process start);
(b) a position that fails past its restart intensity is still restarted (slowly) and gets its ticks: an open
    position never silently stops being monitored (an escalated child used to drop every message);
(c) the kill switch stops an entry already granted but not yet bought: while the wallet waits for the verdict,
    and between the stored decision and the position's first buy (it used to be bought all the same).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, Iterator

import asyncpg
import pykka
from structlog.testing import capture_logs

from actors.edge import Edge
from actors.messages import GetStats, PriceTick, PriceTicks
from actors.ports import Ports
from actors.supervision import Backoff, Intensity
from actors.supervisor import RootSupervisor
from sandbox.market import pubkey, signature
from sandbox.pgproxy import PgProxy
from tests.conftest import PUMP_WALLET, SECRET, fixture, wait_until
from tests.test_gateway import db, post, watch
from tests.test_position_engine import BASE, Engine, engine  # noqa: F401 - the fixture
from storage import repo
from walltrack.app import App
from walltrack.demo import Sandbox, bot_settings
from walltrack.settings import load_settings

PUMP = fixture("helius_enhanced_pump_amm_swaps_trimmed.json")
LEADER = pubkey("race-leader")


# -- (a) ------------------------------------------------------------------------------------------------------------
def test_an_observation_committed_as_its_connection_died_still_starts_its_position(
        pg_server: Any, db_url: str, make_settings: Callable[..., Any]) -> None:
    proxy = PgProxy.for_url(pg_server.url).start()
    app: App | None = None
    try:
        app = App(make_settings(database_url=proxy.url(db_url.split("@/", 1)[1].split("?", 1)[0]))).start()
        watch(app, PUMP_WALLET)
        proxy.cut_after_commit(b"INSERT INTO observations")  # the wallet's decision commits; its answer is lost
        assert post(app, [PUMP[0]]).json() == {"accepted": 1, "duplicates": 0}
        wait_until(lambda: proxy.cuts == 1)
        rows = wait_until(lambda: db(app, "SELECT id, status FROM positions"))
        assert len(rows) == 1 and len(db(app, "SELECT 1 FROM signals")) == 1  # one decision, stored once
        pid = rows[0]["id"]
        # its actor runs and decides its entry (the mainnet quote is unreachable here: entry_failed, not stuck)
        status = wait_until(lambda: (s := db(app, "SELECT status FROM positions WHERE id = $1", pid)[0]["status"])
                            != "pending_entry" and s, timeout=20)
        assert status in ("open", "entry_failed")
        assert [r["kind"] for r in db(app, "SELECT kind FROM position_events WHERE position_id = $1 ORDER BY seq", pid)][1:]
    finally:
        if app is not None:
            app.stop()
        pykka.ActorRegistry.stop_all()
        proxy.close()


# -- (b) ------------------------------------------------------------------------------------------------------------
def test_a_position_past_its_restart_intensity_is_still_monitored(engine: Engine) -> None:  # noqa: F811
    ports = Ports(engine.store, engine.loop, clock=engine.clock, executor=engine.executor, exit_plan=BASE)
    root = RootSupervisor.start(ports, intensity=Intensity(2, 60), backoff=Backoff(0.01, 0.3))
    eng = replace(engine, root=root, directory=ports.directory)
    pid = eng.open("STDY")
    eng.settle(pid, "open")

    def child() -> pykka.ActorRef | None:
        ref = ports.directory.lookup(("position", str(pid)))
        return ref if ref is not None and ref.is_alive() else None

    with capture_logs() as logs:
        ref = eng.refs[pid]
        for n in range(3):  # two restarts within the period, then the third failure escalates
            ref.tell("no such command")  # an event its table does not know: it crashes
            wait_until(lambda r=ref: not r.is_alive())
            if n < 2:
                ref = wait_until(lambda r=ref: (c := child()) is not None and c != r and c)
        assert wait_until(lambda: any(e["event"] == "supervisor_escalated" for e in logs))
        # given up on by the intensity, yet restarted (at the slowest pace) and ticked: its stop loss fires
        eng.refs[pid] = wait_until(lambda: (c := child()) is not None and c != ref and c, timeout=10)
        eng.move_to(pid, 0.75)
        s = eng.state(pid)
        with eng.market.lock:
            usd = Decimal(repr(eng.market.price_usd(s.token_mint)))
        Edge(root, ports, None).tell(PriceTicks((PriceTick(s.token_mint, usd, Decimal(repr(eng.market.sol_usd)), "jupiter", eng.clock()),)))
        wait_until(lambda: eng.kinds(pid)[-1] == "exit_filled", timeout=15)
    assert [e["child"] for e in logs if e["event"] == "supervisor_escalated"] == [f"position:{pid}"]
    assert root.ask(GetStats(), timeout=5)["restarts"] == 3


# -- (c) ------------------------------------------------------------------------------------------------------------
@contextmanager
def sandboxed(tmp_path: Path, db_url: str, **overrides: Any) -> Iterator[tuple[App, Sandbox]]:
    """An App in paper mode on the sandbox market (its Jupiter fills the entries), on the test's database."""
    sb = Sandbox(seed=7, speed=1.0)
    app: App | None = None
    try:
        base = load_settings(_env_file=None, walltrack_data_dir=tmp_path / "data", gateway_port=0)
        app = App(bot_settings(base, sb, db_url, SECRET, headless=True).model_copy(update=overrides), clock=sb.clock)
        yield app.start(), sb
    finally:
        if app is not None:
            app.stop()
        pykka.ActorRegistry.stop_all()
        sb.stop()


def buy_of(sb: Sandbox, symbol: str, tag: str) -> dict:
    """LEADER buys 0.5 SOL of a sandbox token (balance deltas only, as Helius shapes them)."""
    mint, ata = sb.market.by_symbol[symbol].mint, pubkey(f"race-ata-{tag}")
    return {"signature": signature(f"race-{tag}"), "type": "SWAP", "source": "RAYDIUM", "fee": 5000, "feePayer": LEADER,
            "timestamp": int(sb.clock()),
            "accountData": [{"account": LEADER, "nativeBalanceChange": -500_005_000, "tokenBalanceChanges": []},
                            {"account": ata, "nativeBalanceChange": 0, "tokenBalanceChanges": [
                                {"userAccount": LEADER, "tokenAccount": ata, "mint": mint,
                                 "rawTokenAmount": {"tokenAmount": str(10**9), "decimals": 6}}]}]}


def set_mode(app: App, mode: str) -> None:
    assert app.store is not None and app.root is not None
    app.store.run(lambda c: repo.set_trading_mode(c, mode, "test"))
    wait_until(lambda: app.trading_mode == mode)
    app.root.ask(GetStats(), timeout=5)  # the root has handled the change (it came before this ask)


def test_the_kill_switch_stops_an_entry_granted_but_not_yet_bought(tmp_path: Path, db_url: str) -> None:
    with sandboxed(tmp_path, db_url, safety_enabled=False) as (app, sb):
        kill_switch_after_the_grant(app, sb)


def kill_switch_after_the_grant(app: App, sb: Sandbox) -> None:
    watch(app, LEADER)
    url = app.settings.database_url.get_secret_value()  # type: ignore[union-attr]
    holder = app.loop.run(asyncpg.connect(url), timeout=10)  # type: ignore[union-attr]
    try:
        # the decision (taken: the risk actor granted it) is being stored while the operator switches trading off
        app.loop.run(holder.execute("BEGIN; LOCK TABLE observations IN EXCLUSIVE MODE"), timeout=10)  # type: ignore[union-attr]
        tx = buy_of(sb, "STDY", "granted")
        assert post(app, [tx]).status_code == 200
        wait_until(lambda: db(app, "SELECT 1 FROM pg_locks WHERE NOT granted AND relation = 'observations'::regclass"))
        set_mode(app, "off")
    finally:
        app.loop.run(holder.execute("COMMIT"), timeout=10)  # type: ignore[union-attr]
        app.loop.run(holder.close(), timeout=10)  # type: ignore[union-attr]
    (sig,) = wait_until(lambda: db(app, "SELECT decision, reason FROM signals WHERE signature = $1", tx["signature"]))
    assert (sig["decision"], sig["reason"]) == ("taken", "copy_buy")  # decided before the switch
    row = wait_until(lambda: (r := db(app, "SELECT status, exit_reason FROM positions")) and r[0]["status"] != "pending_entry"
                     and r[0], timeout=20)
    assert (row["status"], row["exit_reason"]) == ("entry_failed", "mode:off")  # ... but never bought
    assert db(app, "SELECT 1 FROM fills") == []
    risk = app.actors.lookup(("risk", "global"))  # type: ignore[union-attr]
    assert wait_until(lambda: not risk.ask("state", timeout=5).open) == True  # noqa: E712 - its room is free again


def test_the_kill_switch_reaches_a_wallet_waiting_for_its_safety_verdict(tmp_path: Path, db_url: str) -> None:
    with sandboxed(tmp_path, db_url, safety_enabled=True, safety_source_timeout_s=20) as (app, sb):
        kill_switch_during_the_verdict(app, sb)


def kill_switch_during_the_verdict(app: App, sb: Sandbox) -> None:
    watch(app, LEADER)
    rpc = sb.faults["rpc"]
    rpc.latency_s = 4.0  # the verdict takes a while: the operator switches trading off meanwhile
    seen = rpc.requests
    tx = buy_of(sb, "STDY", "screening")
    assert post(app, [tx]).status_code == 200
    wait_until(lambda: rpc.requests > seen)  # the safety check is under way
    set_mode(app, "off")
    wallet = app.actors.lookup(("wallet", LEADER))  # type: ignore[union-attr]
    assert wallet.ask("state", timeout=5).trading_mode == "off"  # heard at once, not after the verdict
    (sig,) = wait_until(lambda: db(app, "SELECT decision, reason FROM signals WHERE signature = $1", tx["signature"]),
                        timeout=30)
    assert (sig["decision"], sig["reason"]) == ("skipped", "mode:off")
    assert [r["mode"] for r in db(app, "SELECT mode FROM positions")] == ["shadow"]  # followed on paper only
    rpc.latency_s = 0.0
