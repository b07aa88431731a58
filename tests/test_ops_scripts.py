"""The ops/ scripts as an operator runs them (no systemd here: the parts that need it say so), the systemd
watchdog protocol, and backups' edges (retention, a damaged dump, a database in use)."""

from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import time
from pathlib import Path
from typing import Any, Callable

import pykka
import pytest

from tests.conftest import PUMP_WALLET, SECRET, new_database
from storage import repo
from walltrack.app import App

ROOT = Path(__file__).resolve().parent.parent
OPS = ROOT / "ops"


def ops(script: str, *args: str, env: dict[str, str] | None = None, user: str | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess:
    full = {**os.environ, "WALLTRACK_ENV_FILE": "/dev/null", **(env or {})}
    cmd = [str(OPS / script), *args]
    if user is not None:
        cmd = ["runuser", "-u", user, "--", *cmd]
    return subprocess.run(cmd, env=full, capture_output=True, text=True, timeout=timeout)


def test_status_summarises_the_running_bots_health(app: App) -> None:
    env = {"GATEWAY_PORT": str(app.gateway_port), "WALLTRACK_DATA_DIR": str(app.settings.walltrack_data_dir)}
    r = ops("status", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("unit ")  # systemd's part, or why it is missing
    assert any(line.startswith("status     ok") for line in lines)
    assert any(line.startswith("database   connected") for line in lines)
    down = ops("status", env={**env, "GATEWAY_PORT": "1"})
    assert down.returncode == 1 and "unreachable" in down.stdout


def test_metrics_need_the_token_behind_a_proxy(make_settings: Callable[..., Any]) -> None:
    import httpx

    app = App(make_settings(metrics_token="scrape-token-1234")).start()
    try:
        url = f"http://127.0.0.1:{app.gateway_port}/metrics"
        proxied = {"X-Forwarded-For": "203.0.113.7"}
        assert httpx.get(url, headers=proxied, timeout=10).status_code == 403
        assert httpx.get(url, headers={**proxied, "Authorization": "Bearer nope"}, timeout=10).status_code == 401
        ok = httpx.get(url, headers={**proxied, "Authorization": "Bearer scrape-token-1234"}, timeout=10)
        assert ok.status_code == 200 and ok.headers["content-type"].startswith("text/plain; version=0.0.4")
        assert "walltrack_up 1.0" in ok.text
    finally:
        app.stop()
        pykka.ActorRegistry.stop_all()


def read_line(proc: subprocess.Popen, timeout: float = 30) -> str:
    """The next line the process prints, or fail after `timeout` (never hang the suite)."""
    assert proc.stdout is not None
    out = b""
    deadline = time.monotonic() + timeout
    while not out.endswith(b"\n"):
        ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            raise AssertionError(f"no line within {timeout} s (got {out!r})")
        chunk = os.read(proc.stdout.fileno(), 1)
        if not chunk:
            raise AssertionError(f"ops/logs ended (exit {proc.wait()}) after {out!r}")
        out += chunk
    return out.decode()


def test_logs_follow_the_json_log_pretty(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "logs").mkdir(parents=True)
    log = data / "logs" / "walltrack.log"
    log.write_text(json.dumps({"event": "old_line", "level": "info", "timestamp": "2026-01-01T00:00:00Z"}) + "\n")
    proc = subprocess.Popen([str(OPS / "logs"), "-n", "1"], env={**os.environ, "WALLTRACK_ENV_FILE": "/dev/null",
                                                                  "WALLTRACK_DATA_DIR": str(data)},
                            stdout=subprocess.PIPE, bufsize=0)
    try:
        assert "INFO    old_line" in read_line(proc)
        with log.open("a") as f:  # written at once: following goes on from where the last lines ended
            f.write(json.dumps({"event": "signal", "level": "info", "timestamp": "2026-01-01T00:00:01Z",
                                "wallet": PUMP_WALLET, "decision": "taken", "reason": "copy_buy"}) + "\n")
        line = read_line(proc)
        assert "signal" in line and f"wallet={PUMP_WALLET}" in line and "reason=copy_buy" in line
        log.rename(log.with_suffix(".log.1"))  # rotation: the new file is followed from its start
        log.write_text(json.dumps({"event": "after_rotation", "level": "warning", "timestamp": "x"}) + "\n")
        assert "WARNING after_rotation" in read_line(proc)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_install_stages_a_verified_unit_and_a_private_env_file(tmp_path: Path) -> None:
    stage = tmp_path / "stage"
    r = ops("install", "--root", str(stage))
    assert r.returncode == 0, r.stderr
    unit = stage / "etc/systemd/system/walltrack.service"
    text = unit.read_text()
    for line in ("Type=notify", "WatchdogSec=60", "Restart=always", "NoNewPrivileges=true", "ProtectSystem=strict",
                 "ReadWritePaths=/var/lib/walltrack", "ProtectHome=true", "PrivateTmp=true",
                 f"ExecStart={ROOT}/.venv/bin/walltrack run", f"WorkingDirectory={ROOT}"):
        assert line in text.splitlines(), line
    env = stage / "etc/walltrack/walltrack.env"
    assert env.stat().st_mode & 0o777 == 0o600
    values = dict(line.split("=", 1) for line in env.read_text().splitlines() if "=" in line and not line.startswith("#"))
    assert values["WALLTRACK_DATA_DIR"] == "/var/lib/walltrack"
    assert len(values["HELIUS_WEBHOOK_SECRET"]) >= 32 and "change-me" not in values["HELIUS_WEBHOOK_SECRET"]
    assert (stage / "var/lib/walltrack").stat().st_mode & 0o777 == 0o750
    for name in ("walltrack.service", "walltrack-backup.service", "walltrack-backup.timer"):
        verify = subprocess.run(["systemd-analyze", "verify", "--man=no", str(stage / "etc/systemd/system" / name)],
                                capture_output=True, text=True, timeout=60)
        assert verify.returncode == 0, verify.stderr
    secret = values["HELIUS_WEBHOOK_SECRET"]
    again = ops("install", "--root", str(stage))
    assert again.returncode == 0 and "kept the existing" in again.stdout
    assert secret in env.read_text()  # never overwritten


def test_install_and_restart_say_what_they_need(tmp_path: Path) -> None:
    r = ops("install", user="nobody")  # without root: nothing is touched
    assert r.returncode == 2 and "needs root" in r.stderr and "--root DIR" in r.stderr
    if not Path("/run/systemd/system").exists():
        restart = ops("restart")
        assert restart.returncode == 2 and "systemd is not running" in restart.stderr
    bad = ops("install", "--root", str(tmp_path), "--data-dir", "relative")
    assert bad.returncode == 2 and "absolute path" in bad.stderr


def test_watchdog_pings_only_while_healthy(make_settings: Callable[..., Any], tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(10)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    monkeypatch.setenv("WATCHDOG_USEC", "200000")  # a ping every 0.1 s
    app = App(make_settings()).start()
    stopped = False
    try:
        assert sock.recv(256).decode().startswith("READY=1")
        assert sock.recv(256).decode().startswith("WATCHDOG=1")
        assert app.root is not None
        app.root.stop()  # the root supervisor dies: the bot is wedged, systemd must restart it
        while not (msg := sock.recv(256).decode()).startswith("STATUS=unhealthy"):
            assert msg.startswith("WATCHDOG=1")  # pings already on their way
        for _ in range(3):  # and from then on, no ping
            assert sock.recv(256).decode().startswith("STATUS=unhealthy: the root supervisor does not answer")
        app.stop()
        stopped = True
        while not (msg := sock.recv(256).decode()).startswith("STOPPING=1"):
            assert not msg.startswith("WATCHDOG=1")
    finally:
        if not stopped:
            app.stop()
        pykka.ActorRegistry.stop_all()
        sock.close()


def test_backups_are_pruned_and_a_damaged_or_busy_restore_is_refused(app: App, tmp_path: Path,
                                                                    pg_server: Any) -> None:
    assert app.store is not None
    app.store.run(lambda c: repo.add_wallet(c, PUMP_WALLET, "kept"))
    env = {"DATABASE_URL": app.settings.database_url.get_secret_value(),  # type: ignore[union-attr]
           "WALLTRACK_DATA_DIR": str(tmp_path / "data")}
    for _ in range(3):
        assert ops("backup", "--dir", str(tmp_path / "b"), "--keep", "2", env=env).returncode == 0
    kept = sorted(p.name for p in (tmp_path / "b").iterdir() if p.name.startswith("walltrack-"))
    assert len(kept) == 2
    busy = ops("restore", "latest", "--dir", str(tmp_path / "b"), "--force", env=env)  # the running bot's database
    assert busy.returncode == 1 and "stop the bot first" in busy.stderr

    fresh = new_database(pg_server)
    dump = tmp_path / "b" / kept[-1] / "database.dump"
    dump.write_bytes(dump.read_bytes()[:-16] + b"0" * 16)
    damaged = ops("restore", str(dump.parent), env={**env, "DATABASE_URL": fresh})
    assert damaged.returncode == 1 and "damaged" in damaged.stderr
    ok = ops("restore", str(tmp_path / "b" / kept[0]), env={**env, "DATABASE_URL": fresh})
    assert ok.returncode == 0, ok.stderr
    config = json.loads((tmp_path / "b" / kept[0] / "config.json").read_text())
    assert [w["label"] for w in config["wallets"]] == ["kept"] and SECRET not in json.dumps(config)
