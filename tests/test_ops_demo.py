"""Operations on a trading bot: the sandbox market and the bot (as `walltrack demo` composes them) on the embedded
database. `/metrics` parses and moves as the bot trades; alerts reach the sandbox's Telegram; a backup taken while it
trades restores into a fresh database whole; a stalled webhook is detected, alerted and backfilled, no signal lost
or doubled."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any, Iterator

import asyncpg
import httpx
import pykka
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import SECRET, new_database, sql, wait_until
from storage import repo
from walltrack.app import App
from storage.db import EmbeddedPostgres
from walltrack.demo import Sandbox, bot_settings
from walltrack.settings import load_settings

ROOT = Path(__file__).resolve().parent.parent


class World:
    def __init__(self, pg: EmbeddedPostgres, data: Path, speed: float, **overrides: Any) -> None:
        self.db = new_database(pg)
        self.sb = Sandbox(seed=7, speed=speed)
        base = load_settings(_env_file=None, walltrack_data_dir=data, gateway_port=0)
        settings = bot_settings(base, self.sb, self.db, SECRET, headless=True).model_copy(update={
            "alert_coalesce_s": 0.3, "alert_max_per_minute": 600, **overrides})
        self.app = App(settings, clock=self.sb.clock)
        self.app.start()
        for leader in self.sb.market.leaders:
            self.app.store.run(lambda c, a=leader.address: repo.add_wallet(c, a, None))  # type: ignore[union-attr]
        wait_until(lambda: len(self.app.watched) == len(self.sb.market.leaders), timeout=20)
        self.sb.start_market(f"http://127.0.0.1:{self.app.gateway_port}/webhooks/helius", SECRET)

    def scrape(self) -> dict[str, float]:
        text = httpx.get(f"http://127.0.0.1:{self.app.gateway_port}/metrics", timeout=10).text
        return {f"{s.name}{json.dumps(s.labels, sort_keys=True)}": s.value
                for fam in text_string_to_metric_families(text) for s in fam.samples}

    def rows(self, query: str) -> list[asyncpg.Record]:
        return sql(self.db, query)

    def close(self) -> None:
        try:
            self.sb.stop_market()
            self.app.stop()
        finally:
            pykka.ActorRegistry.stop_all()
            self.sb.stop()


def total(samples: dict[str, float], name: str, **labels: str) -> float:
    """The sum of a metric's samples whose labels include `labels`."""
    out = 0.0
    for key, value in samples.items():
        metric, _, raw = key.partition("{")
        got = json.loads("{" + raw)
        if metric == name and all(got.get(k) == v for k, v in labels.items()):
            out += value
    return out


@pytest.fixture(scope="module")
def world(pg_server: EmbeddedPostgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    w = World(pg_server, tmp_path_factory.mktemp("ops") / "data", speed=60)
    try:
        yield w
    finally:
        w.close()


def test_metrics_parse_and_move_as_the_bot_trades(world: World) -> None:
    first = world.scrape()
    assert all(k.startswith("walltrack_") for k in first)
    assert len(first) >= 20
    assert first['walltrack_database_up{}'] == 1 and first['walltrack_watched_wallets{}'] == 6
    assert total(first, "walltrack_trading_mode", mode="paper") == 1

    signals0 = total(first, "walltrack_signals_total")

    def moved(s: dict[str, float]) -> bool:
        return (total(s, "walltrack_signals_total") >= signals0 + 5 and total(s, "walltrack_fills_total", side="buy") >= 1
                and total(s, "walltrack_provider_request_seconds_count", provider="rpc") >= 1)

    later = wait_until(lambda: (s := world.scrape()) and moved(s) and s, timeout=90, interval=0.5)
    stored = world.rows("SELECT decision, count(*) AS n FROM signals GROUP BY decision")
    assert sum(r["n"] for r in stored) >= total(later, "walltrack_signals_total")  # counted once each, never more
    # the decisions are labelled by their reasons, and their latency from the delivery was observed
    assert total(later, "walltrack_signals_total", decision="skipped") >= 1
    assert later["walltrack_decision_latency_seconds_count{}"] >= 1
    assert total(later, "walltrack_webhook_requests_total", result="accepted") >= 1
    assert total(later, "walltrack_webhook_transactions_total", kind="new") >= total(later, "walltrack_signals_total")
    # every outside call was timed per provider; each provider's breaker is exported by state
    assert total(later, "walltrack_provider_requests_total", provider="jupiter", outcome="ok") >= 1
    assert total(later, "walltrack_provider_request_seconds_count", provider="rpc") >= 1
    assert total(later, "walltrack_provider_breaker_state", provider="jupiter", state="closed") == 1
    assert total(later, "walltrack_positions_open") >= 1 or total(later, "walltrack_positions_closed_total") >= 1
    assert later["walltrack_equity_sol{}"] > 0


def test_alerts_reach_the_sandbox_telegram(world: World) -> None:
    messages = wait_until(lambda: [m for m in world.sb.alerts.messages if "entry" in m["text"]], timeout=60,
                          interval=0.2)
    body = messages[0]
    assert body["chat_id"] == "demo" and body["disable_web_page_preview"] is True
    assert "WallTrack" in body["text"]
    position = int(body["text"].split("position #")[1].split(")")[0])  # the alert names a real position
    assert world.rows(f"SELECT id FROM positions WHERE id = {position}")
    sent = world.scrape()
    assert total(sent, "walltrack_alerts_total", sink="telegram", result="sent") >= 1


def _ops(script: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    full = {**os.environ, "WALLTRACK_ENV_FILE": "/dev/null", **env}
    return subprocess.run([str(ROOT / "ops" / script), *args], env=full, capture_output=True, text=True, timeout=300)


def test_a_backup_taken_while_trading_restores_whole(world: World, pg_server: EmbeddedPostgres, tmp_path: Path) -> None:
    wait_until(lambda: world.rows("SELECT count(*) AS n FROM fills")[0]["n"] >= 2, timeout=60, interval=0.2)
    env = {"WALLTRACK_DATA_DIR": str(tmp_path / "ops-data"), "DATABASE_URL": world.db}
    done = _ops("backup", "--dir", str(tmp_path / "backups"), "--json", env=env)
    assert done.returncode == 0, done.stderr
    manifest = json.loads(done.stdout)
    backup = Path(manifest["path"])
    assert (backup / "database.dump").stat().st_size > 0
    config = json.loads((backup / "config.json").read_text())
    assert len(config["wallets"]) == 6 and config["settings"]["helius_api_key"] == "(set)"  # never the key itself

    fresh = new_database(pg_server)
    restored = _ops("restore", str(backup), env={**env, "DATABASE_URL": fresh})
    assert restored.returncode == 0, restored.stderr
    assert "every count and the realized PnL equal" in restored.stdout

    for table in ("signals", "positions", "fills", "position_events", "webhook_inbox", "observations"):
        n = sql(fresh, f"SELECT count(*) AS n FROM {table}")[0]["n"]
        assert n == manifest["rows"][f"public.{table}"], table
    assert manifest["rows"]["public.signals"] >= 1 and manifest["rows"]["public.fills"] >= 2
    pnl = sql(fresh, "SELECT mode, quote_mint, count(*) AS positions, coalesce(sum(realized_pnl_quote), 0)::text AS realized "
                     "FROM positions GROUP BY mode, quote_mint ORDER BY mode, quote_mint")
    assert [dict(r) for r in pnl] == manifest["pnl"]
    # signals and fills never change once written: the restored ones are the source's, field for field
    for query in ("SELECT * FROM signals ORDER BY id", "SELECT * FROM fills ORDER BY position_id, seq"):
        copy = [dict(r) for r in sql(fresh, query)]
        source = {json.dumps(dict(r), default=str) for r in world.rows(query)}
        assert copy and all(json.dumps(r, default=str) in source for r in copy)

    again = _ops("restore", str(backup), env={**env, "DATABASE_URL": fresh})
    assert again.returncode == 1 and "not empty" in again.stderr  # a non-empty database needs --force


def test_a_stalled_webhook_is_detected_alerted_and_backfilled_exactly_once(pg_server: EmbeddedPostgres,
                                                                           tmp_path: Path) -> None:
    # one simulated minute of silence while a leader traded is a stall; the RPC is read every 0.3 s of wall time
    w = World(pg_server, tmp_path / "data", speed=60, webhook_stall_minutes=1.0, webhook_stall_poll_s=0.3)
    try:
        inbox = lambda: {r["signature"] for r in w.rows("SELECT signature FROM webhook_inbox")}  # noqa: E731
        wait_until(lambda: len(inbox()) >= 3, timeout=60, interval=0.2)  # delivered by the webhook, as usual
        assert not w.app.ops.stall.stalled  # type: ignore[union-attr]

        w.sb.faults["helius"].stalled = True  # Helius stops delivering; the leaders go on trading
        before = set(w.sb.chain.trades)
        wait_until(lambda: len(set(w.sb.chain.trades) - before) >= 3, timeout=60, interval=0.2)
        alert = wait_until(lambda: [m for m in w.sb.alerts.messages if "webhook_stalled" in m["text"]], timeout=60,
                           interval=0.2)[0]
        assert "no delivery for" in alert["text"]
        missed = set(w.sb.chain.trades) - before
        try:
            wait_until(lambda: missed <= inbox(), timeout=120, interval=0.2)  # backfilled from Helius' parse API
        except AssertionError:
            lost = missed - inbox()
            watch = w.app.ops.stall  # type: ignore[union-attr]
            raise AssertionError(f"not backfilled: {[(s[:8], w.sb.chain.trades[s].leader[:6], w.sb.chain.trades[s].timestamp) for s in lost]}; "
                                 f"clock {w.app.clock()}; watch {[(k[:6], v.since, (v.cursor or '')[:8], len(v.open)) for k, v in watch._wallets.items()]}")
        assert w.sb.poster is not None and w.sb.poster.stats().missed >= 1  # deliveries (1-3 trades each) never sent

        w.sb.faults["helius"].stalled = False  # deliveries resume; what was missed meanwhile is backfilled too
        resumed = len(w.sb.chain.trades)
        wait_until(lambda: len(w.sb.chain.trades) >= resumed + 2, timeout=60, interval=0.2)
        w.sb.stop_market(settle_s=30)
        trades = set(w.sb.chain.trades)
        wait_until(lambda: trades <= inbox(), timeout=60, interval=0.2)
        wait_until(lambda: not w.rows("SELECT 1 FROM webhook_inbox WHERE processed_at IS NULL"), timeout=60)

        signals = w.rows("SELECT signature, wallet FROM signals")
        leader_of = {sig: t.leader for sig, t in w.sb.chain.trades.items()}
        # every trade of a watched leader is exactly one signal: none lost to the stall, none doubled by the backfill
        assert sorted((r["signature"], r["wallet"]) for r in signals) == sorted(leader_of.items())
        assert inbox() == trades
        scraped = w.scrape()
        assert scraped["walltrack_webhook_stalls_total{}"] >= 1
        assert total(scraped, "walltrack_webhook_transactions_total", kind="backfilled") >= len(missed)
    finally:
        w.close()
