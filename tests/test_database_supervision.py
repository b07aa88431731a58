"""The database as a supervised dependency, as an operator meets it: `walltrack run` and `walltrack demo` as real
processes, their embedded PostgreSQL's postmaster killed the way the OOM killer does it (SIGKILL).

- killed: WallTrack notices, restarts it (logged, /health says "restarting" meanwhile), and goes on — the 503s end,
  deliveries refused meanwhile are taken on Helius' retry and processed;
- not recoverable (restarts exhausted, or an outside server gone longer than DATABASE_RECOVERY_WINDOW_S): it exits
  non-zero, so the service manager restarts it;
- Ctrl-C / SIGTERM with the database gone: a clean stop, within 10 s, without a traceback.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

from sandbox.market import pubkey, signature
from tests.conftest import SECRET, wait_until
from tests.test_cli import Bot, bot, free_port  # noqa: F401 - the fixture
from storage.db import EmbeddedPostgres

W = pubkey("supervised-db-leader")


def buy(tag: str) -> bytes:
    mint, ata = pubkey(f"db-mint-{tag}"), pubkey(f"db-ata-{tag}")
    return json.dumps([{
        "signature": signature(f"db-{tag}"), "type": "SWAP", "source": "RAYDIUM", "fee": 5000, "feePayer": W,
        "timestamp": int(time.time()),
        "accountData": [{"account": W, "nativeBalanceChange": -100_005_000, "tokenBalanceChanges": []},
                        {"account": ata, "nativeBalanceChange": 0, "tokenBalanceChanges": [
                            {"userAccount": W, "tokenAccount": ata, "mint": mint,
                             "rawTokenAmount": {"tokenAmount": "1000000000", "decimals": 6}}]}]}]).encode()


def postmaster(data_dir: Path) -> int:
    return int((data_dir / "pg" / "postmaster.pid").read_text().split()[0])


def health(b: Bot) -> tuple[int | None, dict[str, Any]]:
    try:
        r = httpx.get(f"http://127.0.0.1:{b.port}/health", timeout=2)
        return r.status_code, r.json()
    except httpx.HTTPError:
        return None, {}


def log_events(b: Bot) -> list[dict[str, Any]]:
    lines = (b.data_dir / "logs" / "walltrack.log").read_text().splitlines()
    return [json.loads(line) for line in lines if line.startswith("{")]


def test_a_killed_embedded_database_is_restarted_and_deliveries_resume(bot: Bot) -> None:  # noqa: F811
    bot.start()
    bot.cli("wallets", "add", W)
    wait_until(lambda: (bot.healthy() or {}).get("actors", {}).get("wallets") == 1)
    assert bot.post(buy("before")).status_code == 200
    old = postmaster(bot.data_dir)

    os.kill(old, signal.SIGKILL)  # what the OOM killer does
    seen: list[str] = []

    def back() -> bool:
        status, body = health(bot)
        if body.get("database") and (not seen or seen[-1] != body["database"]):
            seen.append(body["database"])
        return status == 200

    wait_until(back, timeout=60, interval=0.05)
    assert "restarting" in seen, seen  # what /health said while it came back
    assert seen[-1] == "connected"
    new = postmaster(bot.data_dir)
    assert new != old and psutil.pid_exists(new) and not psutil.pid_exists(old)

    # Helius' retries of what was refused meanwhile are taken now, and processed once
    during = buy("after")
    assert wait_until(lambda: bot.post(during).status_code == 200, timeout=20, interval=0.2)
    wait_until(lambda: len(json.loads(bot.cli("signals", "--json").stdout)) == 2, timeout=30)
    assert health(bot)[1]["database_restarts"] == 1
    events = [e["event"] for e in log_events(bot) if e.get("logger") == "database"]
    assert events[:4] == ["database_unreachable", "database_restart", "database_restarted", "database_recovered"], events
    assert bot.stop() == 0


def test_past_its_restart_intensity_walltrack_run_exits_non_zero(bot: Bot) -> None:  # noqa: F811
    bot.env["DATABASE_MAX_RESTARTS"] = "0"  # no restart allowed: the first death is beyond recovery
    bot.start()
    pid = postmaster(bot.data_dir)
    os.kill(pid, signal.SIGKILL)
    assert bot.proc is not None
    assert bot.proc.wait(timeout=30) == 1  # for systemd's Restart=on-failure
    failed = [e for e in log_events(bot) if e["event"] == "database_recovery_failed"]
    assert len(failed) == 1 and "could not be kept up" in failed[0]["reason"]
    assert "Traceback" not in bot.stdout.read_text()


def test_an_outside_database_gone_past_the_window_makes_walltrack_run_exit_non_zero(tmp_path: Path,
                                                                                      bot: Bot) -> None:  # noqa: F811
    pg = EmbeddedPostgres(tmp_path / "outside")  # an outside server: WallTrack may not restart it
    try:
        bot.env.update(DATABASE_URL=pg.url, DATABASE_RECOVERY_WINDOW_S="3")
        bot.start()
        pg.stop_server()
        stopped = time.monotonic()
        assert bot.proc is not None and bot.proc.wait(timeout=30) == 1
        assert 3 <= time.monotonic() - stopped < 20
        (failed,) = [e for e in log_events(bot) if e["event"] == "database_recovery_failed"]
        assert "DATABASE_RECOVERY_WINDOW_S=3" in failed["reason"]
        assert "Traceback" not in bot.stdout.read_text()
    finally:
        pg.close()


def test_sigterm_with_the_outside_database_gone_stops_cleanly_within_10_s(tmp_path: Path, bot: Bot) -> None:  # noqa: F811
    pg = EmbeddedPostgres(tmp_path / "outside")
    try:
        bot.env.update(DATABASE_URL=pg.url)
        bot.start()
        bot.cli("wallets", "add", W)
        wait_until(lambda: (bot.healthy() or {}).get("actors", {}).get("wallets") == 1)
        assert bot.post(buy("pending")).status_code == 200
        pg.stop_server()
        wait_until(lambda: health(bot)[1].get("database") == "unreachable", timeout=10)
        t0 = time.monotonic()
        assert bot.stop() == 0
        assert time.monotonic() - t0 <= 10
        assert "Traceback" not in bot.stdout.read_text()
    finally:
        pg.close()


def test_ctrl_c_on_the_demo_just_after_its_database_was_killed_is_quick_and_clean(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(WALLTRACK_DATA_DIR=str(data), HELIUS_WEBHOOK_SECRET=SECRET, PANEL_PORT=str(free_port()))
    out = tmp_path / "demo.out"
    proc = subprocess.Popen([sys.executable, "-m", "walltrack.cli", "demo", "--headless", "--minutes", "600",
                             "--speed", "30"], env=env, cwd=tmp_path, stdout=out.open("w"), stderr=subprocess.STDOUT)
    try:
        logs = data / "logs" / "walltrack.log"
        # trading under way: signals decided, positions opened
        wait_until(lambda: logs.exists() and '"event": "position_event"' in logs.read_text(), timeout=90, interval=0.2)
        os.kill(postmaster(data), signal.SIGKILL)
        proc.send_signal(signal.SIGINT)
        t0 = time.monotonic()
        assert proc.wait(timeout=60) == 0
        took = time.monotonic() - t0
        text = out.read_text()
        assert took <= 10, (took, text[-2000:])
        assert "Traceback" not in text, text[-3000:]
        json.loads(text.strip().splitlines()[-1])  # its last line is still one JSON object
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if (data / "pg" / "postmaster.pid").exists():
            EmbeddedPostgres(data / "pg").close()


def test_a_write_failing_past_its_bound_crashes_the_actor_and_a_long_outage_escalates_nothing(
        tmp_path: Path, monkeypatch: Any) -> None:
    """Issue 13's rule, kept by this design: an actor whose write keeps failing crashes to its supervisor after
    `Shell.give_up_s` instead of retrying forever; its restart waits for the database without counting, so an
    outage many times that bound restarts it once and trips nothing; the delivery is decided once, afterwards."""
    import pykka
    from structlog.testing import capture_logs

    from actors.messages import Deliver, GetStats
    from actors.shell import Shell
    from storage import repo
    from walltrack.app import App
    from walltrack.settings import load_settings

    monkeypatch.setattr(Shell, "give_up_s", 1.0)
    pg = EmbeddedPostgres(tmp_path / "outside")
    app = App(load_settings(_env_file=None, walltrack_data_dir=tmp_path / "data", database_url=pg.url,
                            helius_webhook_secret=SECRET, gateway_port=0, safety_enabled=False,
                            supervisor_max_restarts=1, supervisor_backoff_s=0.01))
    try:
        app.start()
        assert app.store is not None and app.root is not None
        app.store.run(lambda c: repo.add_wallet(c, W, None))
        wait_until(lambda: (ref := app.actors.lookup(("wallet", W))) is not None and ref.is_alive())  # type: ignore[union-attr]
        body = json.loads(buy("outage"))[0]
        # stored before the outage (acknowledged to Helius), handed to the wallet during it
        assert app.store.store_deliveries([(body["signature"], json.dumps(body), [W])]).result(10)
        with capture_logs() as logs:
            pg.stop_server()
            app.actors.tell(Deliver(body["signature"], json.dumps(body), (W,)))
            wait_until(lambda: any(e["event"] == "actor_failed" and "PersistFailed" in e["error"] for e in logs), timeout=20)
            down = time.monotonic()
            wait_until(lambda: time.monotonic() - down > 5 and any(e["event"] == "recover_retry" for e in logs),
                       timeout=20, interval=0.2)  # five times the bound, its restart waiting on the database
            pg.start_server()
            wait_until(lambda: app.store.run(lambda c: c.fetchval(  # type: ignore[union-attr]
                "SELECT count(*) FROM signals WHERE signature = $1", body["signature"])) == 1, timeout=30)
        assert app.root.ask(GetStats(), timeout=5)["restarts"] == 1  # one crash, one restart: no escalation
        assert not [b for b in app.published.breakers if b["name"] == "supervisor:escalated"]
        assert not [e for e in logs if e["event"] == "supervisor_escalated"]
        retries_after_crash = [e for e in logs[[e["event"] for e in logs].index("actor_failed"):]
                               if e["event"] == "write_retry" and e.get("actor") == "wallet"]
        assert retries_after_crash == []  # its write stopped with it
    finally:
        app.stop()
        pykka.ActorRegistry.stop_all()
        pg.close()
