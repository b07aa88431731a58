"""`walltrack demo --nodes N [--kill-node-at MINUTE]`: the sandbox market against N bot nodes (separate processes)
on a local N-server JetStream cluster (R=min(3, N)) and one embedded PostgreSQL; `--kill-node-at` kills the node
holding the risk lease (SIGKILL: no goodbye) at that simulated minute, mid-run.

The summary is the single-process demo's (walltrack/demo.py `summary`) plus `cluster`, counted from the database
against what the gateways acknowledged (`cluster_acks`), never from what the actors say:

    nodes, killed          how many ran, how many were killed
    acked                  distinct transactions the gateways answered 200 for
    processed              of those, how many have every wallet's observation committed (the inbox row processed)
    lost                   acked - processed, after the run drained
    duplicated             acked transactions decided twice for a wallet: two signals, two positions for one
                           signal, or a position with two entry fills
    partitions_moved       the killed node's partitions now owned by survivors
    failover_s             from the kill until the last of them ran again on a survivor (actors rebuilt from the
                           journal: `cluster_events.acquired`), and
    positions_monitored_s  until every position the killed node ran was running on a survivor with a price tick
"""

from __future__ import annotations

import json
import secrets
import signal
import threading
import time
from types import SimpleNamespace
from typing import Any

import asyncpg
import structlog

from storage import repo
from storage.db import EmbeddedPostgres
from walltrack.bridge import AsyncioThread
from walltrack.cluster.harness import ClusterHarness, Node, env_of
from walltrack.demo import Sandbox, _fresh_database, bot_settings, summary
from walltrack.logs import Redactor, configure_logging
from walltrack.settings import Settings

log = structlog.get_logger("demo")


async def counts(conn: asyncpg.Connection) -> dict[str, int]:
    """Acknowledged, processed, duplicated — from the tables, against the gateways' ledger."""
    row = await conn.fetchrow(
        """WITH acked AS (SELECT DISTINCT signature FROM cluster_acks),
                done AS (SELECT a.signature FROM acked a JOIN webhook_inbox i USING (signature)
                          WHERE i.processed_at IS NOT NULL
                            AND NOT EXISTS (SELECT 1 FROM unnest(i.wallets) w WHERE NOT EXISTS (
                                SELECT 1 FROM observations o WHERE o.signature = i.signature AND o.wallet = w))),
                twice AS (SELECT s.signature FROM signals s JOIN acked USING (signature)
                           GROUP BY s.signature, s.wallet HAVING count(*) > 1
                          UNION SELECT s.signature FROM signals s JOIN acked USING (signature) JOIN positions p ON p.signal_id = s.id
                           GROUP BY s.signature, s.wallet HAVING count(p.id) > 1
                          UNION SELECT s.signature FROM signals s JOIN acked USING (signature) JOIN positions p ON p.signal_id = s.id
                            JOIN position_events e ON e.position_id = p.id AND e.kind = 'entry_filled'
                           GROUP BY s.signature, p.id HAVING count(*) > 1)
           SELECT (SELECT count(*) FROM acked) AS acked, (SELECT count(*) FROM done) AS processed,
                  (SELECT count(*) FROM twice) AS duplicated""")
    return {k: int(row[k]) for k in ("acked", "processed", "duplicated")}


async def moved_at(conn: asyncpg.Connection, leases: list[str], after: float, victim: str) -> list[float | None]:
    """When each lease was next acquired by another node after `after` (unix seconds), or None."""
    rows = await conn.fetch(
        """SELECT lease, min(extract(epoch FROM at)::float8) AS at FROM cluster_events
            WHERE kind = 'acquired' AND node <> $2 AND at > to_timestamp($1) AND lease = ANY($3::text[]) GROUP BY lease""",
        after, victim, leases)
    found = {r["lease"]: r["at"] for r in rows}
    return [found.get(lease) for lease in leases]


class Coordinator:
    """The demo's side: the database, the sandbox, the cluster, the clock file, the kill."""

    def __init__(self, settings: Settings, speed: float, seed: int, nodes: int, headless: bool = True) -> None:
        self.settings, self.speed, self.seed, self.nodes = settings, speed, seed, nodes
        self.data = settings.walltrack_data_dir
        self.pg = EmbeddedPostgres(self.data / "pg")
        self.db_url = _fresh_database(self.pg)
        self.sb = Sandbox(seed, speed)
        self.secret = (settings.helius_webhook_secret.get_secret_value() if settings.helius_webhook_secret is not None
                       else secrets.token_urlsafe(24))
        self.bot = bot_settings(settings, self.sb, self.db_url, self.secret, headless=True)  # gateways on free ports
        self.clock_file = self.data / "cluster-clock"
        self.clock_file.unlink(missing_ok=True)
        env = env_of(self.bot)
        env.pop("WALLTRACK_DATA_DIR", None)
        args = ["--clock", str(self.clock_file), "--start", repr(self.sb.market.start), "--speed", repr(speed)]
        self.harness = ClusterHarness(self.data / "cluster", env, nodes, args=args, partitions=self.bot.cluster_partitions,
                                      panel_port=None if headless else settings.panel_port)
        self.loop = AsyncioThread(name="demo-store")
        self.store = repo.Store.open(self.loop, self.db_url)
        self.killed: dict[str, Any] | None = None

    def start(self) -> None:
        self.harness.start()
        self.harness.wait(self.harness.balanced, 120, "partitions spread over the nodes")
        for leader in self.sb.market.leaders:
            self.store.run(lambda c, a=leader.address, lbl=leader.label: repo.add_wallet(c, a, lbl))
        want = len(self.sb.market.leaders)
        self.harness.wait(lambda: sum((s or {}).get("wallets", 0) for s in self.harness.statuses().values()) == want,
                          60, "every leader's wallet actor running")
        self.sb.start_market([n.url for n in self.harness.nodes], self.secret)
        started = time.time() - (self.sb.clock() - self.sb.market.start) / self.speed
        self.clock_file.write_text(repr(started))  # the nodes' clocks follow the sandbox's from now on

    def kill(self) -> None:
        """SIGKILL the node holding the risk lease, noting what it ran."""
        live = [n for n in self.harness.nodes if n.alive]
        st = {n.id: self.harness.status(n) for n in live}
        victim: Node = next((n for n in live if (st[n.id] or {}).get("risk")), live[0])
        before = st[victim.id] or {}
        at = self.harness.kill(victim)
        self.killed = {"node": victim.id, "at": at, "partitions": before.get("partitions", []),
                       "positions": list((before.get("positions") or {}).keys())}
        log.warning("demo_node_killed", node=victim.id, partitions=len(self.killed["partitions"]))
        self.killed["monitored_s"] = self._monitored_again(victim, at)

    def _monitored_again(self, victim: Node, at: float, timeout: float = 30) -> float | None:
        """Until every position the victim ran (and still open) runs on a survivor with a tick since the kill."""
        assert self.killed is not None
        wanted = set(self.killed["positions"])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            open_now = {str(r["id"]) for r in self.store.run(
                lambda c: c.fetch("SELECT id FROM positions WHERE closed_at IS NULL AND id = ANY($1::bigint[])",
                                  [int(p) for p in wanted]))}
            seen = {pid for s in self.harness.statuses().values() if s
                    for pid, ticked in (s.get("positions") or {}).items() if ticked is not None and ticked > at}
            if open_now <= seen:
                return round(time.time() - at, 2)
            time.sleep(0.1)
        return None

    def cluster_summary(self) -> dict[str, Any]:
        c = self.store.run(counts)
        out: dict[str, Any] = {"nodes": self.nodes, "killed": 1 if self.killed else 0, **c,
                               "lost": c["acked"] - c["processed"]}
        if self.killed:
            k = self.killed
            leases = [f"partition:{p:03d}" for p in k["partitions"]]
            times = self.store.run(lambda conn: moved_at(conn, leases, k["at"], k["node"]))
            moved = [t for t in times if t is not None]
            out.update(killed_node=k["node"], partitions_moved=len(moved),
                       failover_s=round(max(moved) - k["at"], 2) if moved and len(moved) == len(leases) else None,
                       positions_moved=len(k["positions"]), positions_monitored_s=k["monitored_s"])
        return out

    def risk_realized(self) -> int | None:
        for s in self.harness.statuses().values():
            if s and s.get("risk"):
                return s.get("risk_realized")
        return None

    def drain(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.store.run(lambda c: c.fetchval("SELECT count(*) FROM webhook_inbox WHERE processed_at IS NULL")):
                return
            time.sleep(0.2)

    def close(self) -> None:
        self.sb.stop()
        self.harness.stop()
        self.store.close()
        self.loop.stop()
        self.pg.close()


def run_cluster_demo(settings: Settings, headless: bool, minutes: float | None, speed: float, seed: int, nodes: int,
                     kill_at: float | None) -> int:
    redactor = Redactor(settings.secrets())
    import io

    configure_logging(redactor, settings.log_level, settings.walltrack_data_dir / "logs", settings.log_max_bytes,
                      settings.log_backups, stream=io.StringIO() if headless else None)
    if not headless:
        from walltrack.panel import check_panel_access

        check_panel_access(settings)  # refused before anything starts
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    wall0 = time.monotonic()
    co: Coordinator | None = None
    try:
        co = Coordinator(settings, speed, seed, nodes, headless)
        co.start()
        if not headless:
            print(f"WallTrack cluster demo: {nodes} nodes; panel of {co.harness.nodes[0].id} "
                  f"http://{settings.panel_host}:{settings.panel_port}/, webhook gateways "
                  + ", ".join(n.url for n in co.harness.nodes) + f", JetStream {co.harness.nats.url}; Ctrl-C to stop",
                  flush=True)
        sb = co.sb
        end = sb.market.start + (minutes * 60 if minutes is not None else float("inf"))
        kill_time = sb.market.start + kill_at * 60 if kill_at is not None else None
        while not stop.is_set() and sb.clock() < end:
            if kill_time is not None and co.killed is None and sb.clock() >= kill_time:
                co.kill()
            stop.wait(0.1)
        sb.stop_market(settle_s=30)
        co.drain()
        app = SimpleNamespace(store=co.store, settings=co.bot, root=None)
        result = summary(app, sb, risk_realized=co.risk_realized())  # type: ignore[arg-type]
        result["cluster"] = co.cluster_summary()
        result["wall_seconds"] = round(time.monotonic() - wall0, 1)
    finally:
        if co is not None:
            co.close()
    print(json.dumps(result), flush=True)
    return 0
