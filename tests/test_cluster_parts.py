"""The parts of distributed mode on their own: the partition of a wallet, the lease plan and the lease protocol on a
real nats-server, the codec, the settings, acks after the commit, and a single process that never touches NATS."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, Iterator

import asyncpg
import httpx
import pytest

import ui
from actors import messages as m
from sandbox.market import pubkey, signature
from tests.conftest import SECRET, wait_until
from walltrack.app import App
from walltrack.bridge import AsyncioThread
from walltrack.cluster import wire
from walltrack.cluster.leases import Acquired, Leases, Lost, Surrender, plan
from walltrack.cluster.link import Link
from walltrack.cluster.natsd import LocalCluster
from walltrack.logs import Redactor
from walltrack.panel import PanelBackend
from walltrack.settings import ConfigError, load_settings

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[LocalCluster]:
    with LocalCluster(tmp_path / "nats", size=1) as c:
        yield c


def test_a_wallets_partition_is_stable_across_processes_and_spreads() -> None:
    wallets = [pubkey(f"spread-{i}") for i in range(2000)]
    here = [wire.partition(w, 64) for w in wallets]
    code = "import sys, json; from walltrack.cluster.wire import partition; " \
           "print(json.dumps([partition(w, 64) for w in json.load(sys.stdin)]))"
    other = subprocess.run([sys.executable, "-c", code], input=json.dumps(wallets), capture_output=True, text=True,
                           env={**os.environ, "PYTHONHASHSEED": "12345"}, cwd=ROOT, check=True)
    assert json.loads(other.stdout) == here  # not Python's salted hash
    counts = Counter(here)
    assert len(counts) == 64 and max(counts.values()) < 3 * min(counts.values())


def test_the_plan_claims_a_fair_share_and_surrenders_the_rest() -> None:
    claim, give = plan("a", set(), set(range(64)), nodes=1, total=64, max_moves=8)
    assert sorted(claim) == list(range(64)) and give == []
    claim, give = plan("a", set(range(64)), set(), nodes=3, total=64, max_moves=8)
    assert claim == [] and len(give) == 8  # a few per round, not all at once
    claim, give = plan("a", set(range(60)), set(), nodes=3, total=64, max_moves=100)
    assert len(give) == 60 - 22
    claim, _ = plan("b", set(range(10)), set(range(10, 64)), nodes=3, total=64, max_moves=8)
    assert len(claim) == 12 and claim == plan("b", set(range(10)), set(range(10, 64)), nodes=3, total=64, max_moves=8)[0]
    mine_a = set(plan("a", set(), set(range(64)), nodes=2, total=64, max_moves=8)[0])
    mine_b = set(plan("b", set(), set(range(64)), nodes=2, total=64, max_moves=8)[0])
    assert len(mine_a & mine_b) < 32  # rendezvous preferences differ per node: claims rarely collide


def test_messages_cross_nodes_exactly() -> None:
    samples = [
        m.ReservationBound("sig:w", 7, "w", "mint", "q", 10**18 + 1),
        m.ReservationReleased("sig:w"),
        m.PositionClosed(7, "w", "mint", mode="paper", quote_mint="q", realized_pnl_quote=-5, exit_reason="stop_loss"),
        m.TripBreaker("supervisor:escalated", "wallet:x failed"),
        m.EntryDecision("sig:w", False, "cap:max_open_positions"),
        m.PriceTick("mint", Decimal("0.000012345678901234"), Decimal("151.2"), "jupiter", 1.5, liquidity_usd=None),
        m.ClosePartial(3, Decimal("0.25")), m.SetStop(3, Decimal("1e-9")), m.CommandReply(3, False, "no"),
    ]
    for msg in samples:
        assert wire.decode(wire.encode(msg)) == msg
    here, there = object(), object()  # stand for the asking wallet's ref and the owner's reply channel
    asked = m.ReserveEntry("sig:w", "w", "mint", "q", 5, reply_to=here)
    assert b"reply_to" not in wire.encode(asked)  # an actor ref never travels: the owner answers to its own channel
    back = wire.decode(wire.encode(asked), reply_to=there)
    assert (back.reservation_id, back.quote_amount, back.reply_to) == ("sig:w", 5, there)
    with pytest.raises(TypeError):
        wire.encode(m.GetStats())
    with pytest.raises(ValueError):
        wire.decode(b'{"type": "Deliver"}')


def test_cluster_settings_are_checked_and_the_nats_password_is_a_secret(tmp_path: Path) -> None:
    base: dict[str, Any] = dict(walltrack_data_dir=tmp_path, _env_file=None)
    with pytest.raises(ConfigError, match="CLUSTER_NODE_ID is required"):
        load_settings(cluster_nats_url="nats://127.0.0.1:4222", **base)
    with pytest.raises(ConfigError, match="CLUSTER_NATS_URL"):
        load_settings(cluster_nats_url="http://127.0.0.1:4222", cluster_node_id="a", **base)
    with pytest.raises(ConfigError, match="CLUSTER_NODE_ID"):
        load_settings(cluster_nats_url="nats://127.0.0.1:4222", cluster_node_id="a.b", **base)
    s = load_settings(cluster_nats_url="nats://wt:s3cret-pass@10.0.0.1:4222,nats://tok3n-value@10.0.0.2:4222",
                      cluster_node_id="node-1", **base)
    assert {"s3cret-pass", "tok3n-value"} <= set(s.secrets())
    assert "s3cret-pass" not in Redactor(s.secrets())(f"connect to {s.cluster_nats_url.get_secret_value()}")
    assert load_settings(**base).cluster_nats_url is None  # off unless set


def _link(c: LocalCluster, node: str, ttl: float) -> Link:
    return Link(c.url, node, replicas=1, partitions=2, lease_ttl_s=ttl).open()


def test_leases_balance_expire_and_are_never_renewed_by_a_former_owner(nats_server: LocalCluster) -> None:
    a_link, b_link = _link(nats_server, "a", 1.0), _link(nats_server, "b", 1.0)
    seen: dict[str, list[Any]] = {"a": [], "b": []}
    a = Leases(a_link.leases, a_link.js, a_link.nc, "a", 2, 1.0, seen["a"].append)
    b = Leases(b_link.leases, b_link.js, b_link.nc, "b", 2, 1.0, seen["b"].append)

    def rounds(leases: Leases, link: Link, n: int = 1) -> None:
        for _ in range(n):
            link.thread.run(leases.round(), timeout=10)
            leases.rounds += 1

    b_link.thread.run(b.listen(), timeout=10)
    try:
        rounds(a, a_link, 2)  # alone: both partitions, risk and prices
        assert {c.key for c in seen["a"] if isinstance(c, Acquired)} == {"partition.000", "partition.001", "risk", "prices"}
        rounds(b, b_link, 2)  # b joins: nothing free yet
        rounds(a, a_link)  # a sees two nodes: surrenders its extra partition
        surrendered = [c.key for c in seen["a"] if isinstance(c, Surrender)]
        assert len(surrendered) == 1
        a_link.thread.run(a.release(surrendered[0]), timeout=10)
        wait_until(lambda: b._rescan)  # b heard that a gave it back
        rounds(b, b_link)
        assert [c.key for c in seen["b"] if isinstance(c, Acquired)] == surrendered  # at once, not after the TTL

        # a freezes: it fences itself before its leases expire, then b takes them once they do
        kept = dict(a.held)
        time.sleep(0.7)
        a._fence()
        assert {c.key for c in seen["a"] if isinstance(c, Lost)} == set(kept)
        wait_until(lambda: (rounds(b, b_link), "risk" in b.held)[1], timeout=10)
        # a former owner's renewal is revision-checked: it can never take a lease back by renewing it
        a.held = kept
        a_link.thread.run(a._renew("risk", kept["risk"], time.monotonic()), timeout=10)
        assert "risk" not in a.held and any(isinstance(c, Lost) and c.reason == "taken over" for c in seen["a"])
    finally:
        a_link.close()
        b_link.close()


@pytest.fixture
def solo(nats_server: LocalCluster, make_settings: Callable[..., Any]) -> Iterator[App]:
    app = App(make_settings(cluster_nats_url=nats_server.url, cluster_node_id="solo", cluster_replicas=1,
                            cluster_partitions=4)).start()
    try:
        wait_until(lambda: app.cluster.status()["partitions"] == 4, timeout=20)
        yield app
    finally:
        app.stop()


def test_a_delivery_is_acked_only_after_its_observation_is_committed(solo: App, db_url: str) -> None:
    w = pubkey("ack-after-commit")
    solo.store.run(lambda c: c.execute("INSERT INTO wallets (address) VALUES ($1)", w))
    solo.store.run(lambda c: c.execute("SELECT pg_notify('walltrack_watchlist', $1)", w))
    wait_until(lambda: w in solo.watched)
    p = wire.partition(w, 4)
    link = solo.cluster.link

    def pending() -> int:
        info = link.thread.run(link.js.consumer_info(wire.DELIVERIES_STREAM, wire.consumer_name(p)), timeout=10)
        return info.num_ack_pending

    async def lock() -> asyncpg.Connection:
        conn = await asyncpg.connect(db_url)
        await conn.execute("BEGIN; LOCK TABLE observations IN EXCLUSIVE MODE")
        return conn

    side = AsyncioThread(name="test-lock")
    holder = side.run(lock(), timeout=10)
    try:
        tx = {"signature": signature("ack-1"), "type": "TRANSFER", "source": "SYSTEM_PROGRAM", "fee": 5000,
              "feePayer": w, "accountData": [{"account": w, "nativeBalanceChange": -5000, "tokenBalanceChanges": []}]}
        r = httpx.post(f"http://127.0.0.1:{solo.gateway_port}/webhooks/helius", content=json.dumps([tx]),
                       headers={"Authorization": SECRET})
        assert r.status_code == 200  # stored and appended: acknowledged to Helius
        wait_until(lambda: pending() == 1)  # taken by the partition's owner
        wait_until(lambda: solo.store.run(lambda c: c.fetchval(  # its observation's insert waits on the lock ...
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE 'INSERT INTO observations%'")))
        assert pending() == 1  # ... and the message is still not acked
        assert solo.cluster.deliveries.stats()["in_flight"] == 1
    finally:
        side.run(holder.close(), timeout=10)
        side.stop()
    wait_until(lambda: pending() == 0)
    rows = solo.store.run(lambda c: c.fetch("SELECT outcome FROM observations WHERE signature = $1", tx["signature"]))
    assert [r["outcome"] for r in rows] == ["no_trade"]
    assert solo.store.run(lambda c: c.fetchval("SELECT count(*) FROM cluster_acks WHERE signature = $1", tx["signature"])) == 1


def test_a_position_command_goes_by_key_and_says_why_it_was_not_sent(solo: App) -> None:
    backend = PanelBackend(solo)
    with pytest.raises(ui.CommandRefused, match="no position #999"):
        asyncio.run(backend.command(m.SetStop(999, Decimal("1"))))


def test_a_cluster_demo_asked_for_nonsense_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from walltrack.cli import main

    monkeypatch.setenv("WALLTRACK_DATA_DIR", str(tmp_path))
    for args, problem in ((["--nodes", "0"], "--nodes must be between 1 and 9"),
                          (["--kill-node-at", "5"], "--kill-node-at needs --nodes 2 or more"),
                          (["--nodes", "3", "--kill-node-at", "40"], "--kill-node-at must be a minute inside the run")):
        assert main(["demo", "--headless", "--minutes", "30", *args]) == 2
        assert problem in capsys.readouterr().err
    assert not (tmp_path / "pg").exists()  # refused before anything started


def test_one_process_never_imports_or_starts_nats(db_url: str, tmp_path: Path) -> None:
    code = ("import sys, threading; from walltrack.app import App; from walltrack.settings import load_settings; "
            "a = App(load_settings(_env_file=None)).start(); a.stop(); "
            "print(sorted(m for m in sys.modules if m == 'nats' or m.startswith(('nats.', 'walltrack.cluster')))); "
            "print([t.name for t in threading.enumerate() if 'nats' in t.name])")
    env = {**os.environ, "DATABASE_URL": db_url, "HELIUS_WEBHOOK_SECRET": SECRET, "GATEWAY_PORT": "0",
           "WALLTRACK_DATA_DIR": str(tmp_path / "data")}
    r = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split("\n")[-3:-1] == ["[]", "[]"]
