"""Cluster benchmark: webhook deliveries decided per second, end to end — POST, stored in the inbox, (appended to
JetStream, taken by the partition's owner,) decided by the wallet actor, its observation committed — for the
single process (the baseline, no NATS at all), one cluster node (one NATS server) and three nodes (three NATS
servers, R3), each in its own processes on the same embedded PostgreSQL. Prints one line per setup with its
ratio to the baseline; asserts nothing.

    uv run python bench/cluster_bench.py [--deliveries 1500] [--wallets 240] [--senders 8] [--rounds 2]

Each delivery is one leader sell of a token nobody holds: a signal to decide and record, with no outside call, so
the numbers are the pipeline's (gateway, stream, actors, database), not the sandbox's. The senders post to the
gateways in turn, as a load balancer would. Besides the rates it counts the CPU time the bot processes, the NATS
servers and PostgreSQL spent per delivery during the measured batch: on a shared machine that cost moves less than
the rates do, and it is what sizes a node. Setups are run in turn, `--rounds` times; medians are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sandbox.market import pubkey, signature  # noqa: E402
from walltrack.cluster.harness import ClusterHarness  # noqa: E402
from storage.db import EmbeddedPostgres, fetch  # noqa: E402

SECRET = "bench-cluster-secret-0123456789"
MINT = pubkey("bench-unheld-token")


def sell(i: int, wallet: str, run: str) -> bytes:
    ata = pubkey(f"bench-ata-{wallet}")
    tx = {"signature": signature(f"bench-{run}-{i}"), "type": "SWAP", "source": "RAYDIUM", "fee": 5000, "feePayer": wallet,
          "accountData": [{"account": wallet, "nativeBalanceChange": 99_995_000, "tokenBalanceChanges": []},
                          {"account": ata, "nativeBalanceChange": 0, "tokenBalanceChanges": [
                              {"userAccount": wallet, "tokenAccount": ata, "mint": MINT,
                               "rawTokenAmount": {"tokenAmount": str(-(10**6 + i)), "decimals": 6}}]}]}
    return json.dumps([tx]).encode()


def sql(url: str, query: str, *args: Any) -> Any:
    rows = fetch(url, query, *args)
    return rows[0][0] if rows else None


def fresh_db(pg: EmbeddedPostgres, name: str) -> str:
    async def create() -> None:
        conn = await asyncpg.connect(pg.url)
        await conn.execute(f"CREATE DATABASE {name}")
        await conn.close()

    asyncio.run(create())
    return pg.url.replace("/postgres?", f"/{name}?", 1)


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            for p in (proc, *proc.children(recursive=True)):
                t = p.cpu_times()
                total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def post_all(h: ClusterHarness, bodies: list[bytes], senders: int) -> list[float]:
    latencies: list[float] = []
    lock = threading.Lock()

    def sender(k: int) -> None:
        with httpx.Client(timeout=30) as client:
            for i in range(k, len(bodies), senders):
                t = time.perf_counter()
                r = client.post(h.nodes[i % len(h.nodes)].url, content=bodies[i], headers={"Authorization": SECRET})
                assert r.status_code == 200, r.text
                with lock:
                    latencies.append(time.perf_counter() - t)

    threads = [threading.Thread(target=sender, args=(k,)) for k in range(senders)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sorted(latencies)


def run(name: str, pg: EmbeddedPostgres, root: Path, nodes: int, clustered: bool, args: argparse.Namespace) -> dict[str, Any]:
    db = fresh_db(pg, name)
    env = {"DATABASE_URL": db, "HELIUS_WEBHOOK_SECRET": SECRET, "SAFETY_ENABLED": "false", "LOG_LEVEL": "WARNING"}
    h = ClusterHarness(root / name, env, nodes, cluster=clustered, partitions=args.partitions)
    try:
        h.start()
        if clustered:
            h.wait(h.balanced, 120, "partitions spread")
        wallets = [pubkey(f"bench-wallet-{i}") for i in range(args.wallets)]
        sql(db, "INSERT INTO wallets (address) SELECT unnest($1::text[])", wallets)
        sql(db, "SELECT pg_notify('walltrack_watchlist', 'bench')")
        h.wait(lambda: _wallets_running(h) == len(wallets), 60, "wallet actors running")
        warm = args.deliveries // 10
        bodies = [sell(i, wallets[i % len(wallets)], name) for i in range(warm + args.deliveries)]

        def processed() -> bool:
            return sql(db, "SELECT count(*) FROM webhook_inbox WHERE processed_at IS NULL") == 0

        post_all(h, bodies[:warm], args.senders)  # warm-up: connections, caches, JIT-free but not cold
        h.wait(processed, 600, "warm-up processed")
        groups = {"bot": [n.proc.pid for n in h.nodes], "nats": [p.pid for p in h.nats.procs if p] if clustered else [],
                  "pg": [int((root / "pg" / "postmaster.pid").read_text().split()[0])]}
        cpu0 = {g: cpu_seconds(pids) for g, pids in groups.items()}
        t0 = time.perf_counter()
        latencies = post_all(h, bodies[warm:], args.senders)
        acked_s = time.perf_counter() - t0
        h.wait(processed, 600, "processed")
        done_s = time.perf_counter() - t0
        cpu = {g: (cpu_seconds(pids) - cpu0[g]) / args.deliveries * 1000 for g, pids in groups.items()}
        assert sql(db, "SELECT count(*) FROM signals") == warm + args.deliveries
        return {"setup": name, "decided_per_s": args.deliveries / done_s, "acked_per_s": args.deliveries / acked_s,
                "ack_p50_ms": statistics.median(latencies) * 1000, "ack_p95_ms": latencies[int(len(latencies) * 0.95)] * 1000,
                **{f"cpu_{g}_ms": v for g, v in cpu.items()}}
    finally:
        h.stop()


def _wallets_running(h: ClusterHarness) -> int:
    if h.clustered:
        return sum((s or {}).get("wallets", 0) for s in h.statuses().values())
    try:
        health = httpx.get(h.nodes[0].url.replace("/webhooks/helius", "/health"), timeout=5).json()
    except (httpx.HTTPError, ValueError):
        return 0
    return (health.get("actors") or {}).get("wallets", 0)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--deliveries", type=int, default=1500)
    p.add_argument("--wallets", type=int, default=240)
    p.add_argument("--senders", type=int, default=8)
    p.add_argument("--partitions", type=int, default=64)
    p.add_argument("--rounds", type=int, default=2)
    args = p.parse_args()
    root = Path(tempfile.mkdtemp(prefix="walltrack-cluster-bench-"))
    pg = EmbeddedPostgres(root / "pg")
    setups = (("single_process", 1, False), ("cluster_1_node", 1, True), ("cluster_3_nodes", 3, True))
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _, _ in setups}
    try:
        for r in range(args.rounds):
            for name, nodes, clustered in setups:
                runs[name].append(run(f"{name}_{r}", pg, root, nodes, clustered, args))
    finally:
        pg.close()

    def med(name: str, key: str) -> float:
        return statistics.median(x[key] for x in runs[name])

    base = "single_process"
    print(f"{args.deliveries} deliveries, {args.wallets} wallets, {args.senders} senders, {args.partitions} partitions, "
          f"median of {args.rounds} rounds, {psutil.cpu_count()} cores, load average {psutil.getloadavg()[0]:.1f}:")
    for name, _, _ in setups:
        print(f"  {name:<16} decided {med(name, 'decided_per_s'):6.1f}/s ({med(name, 'decided_per_s') / med(base, 'decided_per_s'):.2f}x)"
              f"  ack p50 {med(name, 'ack_p50_ms'):6.1f} ms p95 {med(name, 'ack_p95_ms'):6.1f} ms"
              f"  CPU per delivery: bot {med(name, 'cpu_bot_ms'):5.2f} ms, NATS {med(name, 'cpu_nats_ms'):5.2f} ms,"
              f" PostgreSQL {med(name, 'cpu_pg_ms'):5.2f} ms")


if __name__ == "__main__":
    main()
