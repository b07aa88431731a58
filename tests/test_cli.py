"""`walltrack` as an operator runs it: real processes, an empty data directory, the embedded database."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from tests.conftest import FIXTURES, PUMP_WALLET, SECRET, WALLET_KEY, wait_until

PUMP_FILE = FIXTURES / "helius_enhanced_pump_amm_swaps_trimmed.json"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Bot:
    def __init__(self, data_dir: Path) -> None:
        self.port = free_port()
        self.env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL",)}
        self.env.update(WALLTRACK_DATA_DIR=str(data_dir), HELIUS_WEBHOOK_SECRET=SECRET,
                        WALLET_PRIVATE_KEY=WALLET_KEY, GATEWAY_PORT=str(self.port), PANEL_PORT=str(free_port()))
        self.data_dir = data_dir
        self.proc: subprocess.Popen | None = None
        self.stdout = data_dir.parent / "bot-stdout.log"

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        r = subprocess.run([sys.executable, "-m", "walltrack.cli", *args], env=self.env, cwd=self.data_dir.parent,
                           capture_output=True, text=True, timeout=120)
        if check:
            assert r.returncode == 0, r.stderr
        return r

    def start(self) -> float:
        t0 = time.monotonic()
        self.proc = subprocess.Popen([sys.executable, "-m", "walltrack.cli", "run"], env=self.env, cwd=self.data_dir.parent,
                                     stdout=self.stdout.open("a"), stderr=subprocess.STDOUT)
        wait_until(self.healthy, timeout=30, interval=0.1)
        return time.monotonic() - t0

    def healthy(self) -> dict | None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"walltrack run exited with {self.proc.returncode}: {self.stdout.read_text()[-2000:]}")
        try:
            r = httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=1)
            return r.json() if r.status_code == 200 else None
        except httpx.HTTPError:
            return None

    def post(self, body: bytes, secret: str = SECRET) -> httpx.Response:
        return httpx.post(f"http://127.0.0.1:{self.port}/webhooks/helius", content=body, timeout=10,
                          headers={"Authorization": secret, "Content-Type": "application/json"})

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=30)


@pytest.fixture
def bot(tmp_path: Path) -> Iterator[Bot]:
    b = Bot(tmp_path / "data")
    yield b
    if b.proc is not None and b.proc.poll() is None:
        b.stop()
    # a killed bot leaves its embedded server behind: stop it like the next start would reuse it
    pidfile = b.data_dir / "pg" / "postmaster.pid"
    if pidfile.exists():
        subprocess.run([sys.executable, "-c", "from storage.db import EmbeddedPostgres as E, Path; "
                        f"E(Path({str(b.data_dir / 'pg')!r})).close()"], timeout=60)


def test_run_from_empty_data_dir_serves_webhooks_hot_reloads_wallets_and_stops_cleanly(bot: Bot) -> None:
    startup = bot.start()
    health = bot.healthy()
    assert health and health["database"] == "connected" and startup < 10
    assert bot.cli("db", "status").stdout.startswith("001  initial")

    bot.cli("wallets", "add", PUMP_WALLET, "--label", "pump trader")  # while `run` is running
    wait_until(lambda: (bot.healthy() or {}).get("actors", {}).get("wallets") == 1)
    assert bot.post(PUMP_FILE.read_bytes()).status_code == 200
    assert bot.post(PUMP_FILE.read_bytes(), secret="nope").status_code == 401
    wait_until(lambda: len(json.loads(bot.cli("signals", "--json").stdout)) == 3)
    assert bot.post(PUMP_FILE.read_bytes()).json() == {"accepted": 0, "duplicates": 3}
    signals = json.loads(bot.cli("signals", "--json").stdout)
    assert sorted(s["side"] for s in signals) == ["buy", "buy", "sell"]
    positions = json.loads(bot.cli("positions", "--json").stdout)
    assert len(positions) == 2 and all(p["status"] in ("pending_entry", "entry_failed")  # no Jupiter offline: no fill
                                       and p["entry_quote_amount"] == "100000000" for p in positions)

    bot.cli("wallets", "remove", PUMP_WALLET)
    wait_until(lambda: (bot.healthy() or {}).get("actors", {}).get("wallets") == 0)
    assert json.loads(bot.cli("wallets", "list", "--json").stdout) == []

    assert bot.stop(signal.SIGTERM) == 0
    assert not (bot.data_dir / "pg" / "postmaster.pid").exists(), "embedded PostgreSQL left running"
    lines = [json.loads(line) for line in bot.stdout.read_text().splitlines() if line.strip()]
    assert any(line["event"] == "signal" and line.get("signature") and line.get("wallet") for line in lines)
    assert lines[-1]["event"] == "stopped"


def test_kill_9_loses_no_position_and_leaks_no_secret(bot: Bot) -> None:
    bot.start()
    bot.cli("wallets", "add", PUMP_WALLET)
    wait_until(lambda: (bot.healthy() or {}).get("actors", {}).get("wallets") == 1)
    assert bot.post(PUMP_FILE.read_bytes()).status_code == 200
    wait_until(lambda: len(json.loads(bot.cli("positions", "--json").stdout)) == 2)
    bot.stop(signal.SIGKILL)
    bot.start()
    health = bot.healthy()
    assert health is not None and {k: health["actors"][k] for k in ("wallets", "restarts")} == {"wallets": 1, "restarts": 0}
    # both positions are back: each still pending its entry (an actor again) or failed for want of a quote offline
    positions = json.loads(bot.cli("positions", "--json").stdout)
    assert len(positions) == 2 and all(p["status"] in ("pending_entry", "entry_failed") for p in positions)
    assert health["actors"]["positions"] <= 2
    assert bot.post(PUMP_FILE.read_bytes()).json()["duplicates"] == 3
    assert bot.stop() == 0
    for path in [bot.stdout, *bot.data_dir.rglob("*")]:
        if path.is_file():
            data = path.read_bytes()
            assert WALLET_KEY.encode() not in data and SECRET.encode() not in data, f"secret found in {path}"


def test_explain_prints_exact_keys_per_trade(bot: Bot) -> None:
    r = bot.cli("explain", str(PUMP_FILE), "--wallet", PUMP_WALLET)
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [row["side"] for row in rows] == ["buy", "sell", "buy"]
    assert all(list(row) == ["signature", "wallet", "side", "token_mint", "token_amount", "token_decimals",
                             "quote_mint", "quote_amount", "source"] for row in rows)
    assert rows[0]["token_amount"] == "708365894528" and rows[0]["token_decimals"] == 6
    single = FIXTURES / "helius_enhanced_swap_token_to_usdc.json"  # a single object, not an array
    r = bot.cli("explain", str(single), "--wallet", "2rbMgYvzAb3xDk6vXrzKkY3VwsmyDZsJTkvB3JJYsRzA")
    assert json.loads(r.stdout)["side"] == "sell"
    nft = FIXTURES / "helius_enhanced_nft_sale_docs.json"
    assert bot.cli("explain", str(nft), "--wallet", "CKs1E69a2e9TmH4mKKLrXFF8kD3ZnwKjoEuXa6sz9WqX").stdout == ""


@pytest.mark.parametrize(
    "args, message",
    [
        (["wallets", "add", "not-an-address"], "not a Solana address"),
        (["wallets", "add", "0OIl" * 11], "not a Solana address"),
        (["explain", "/no/such/file", "--wallet", PUMP_WALLET], "cannot read"),
        (["explain", str(PUMP_FILE), "--wallet", "short"], "not a Solana address"),
    ],
)
def test_bad_input_gets_a_clear_message(bot: Bot, args: list[str], message: str) -> None:
    r = bot.cli(*args, check=False)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr


def test_explain_rejects_a_malformed_body(bot: Bot, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    sig = json.loads(PUMP_FILE.read_text())[0]["signature"]
    bad.write_text(json.dumps([{"signature": sig, "accountData": "nope"}]))
    r = bot.cli("explain", str(bad), "--wallet", PUMP_WALLET, check=False)
    assert r.returncode == 2 and "transaction[0].accountData" in r.stderr


def test_a_gateway_port_in_use_is_a_clear_message_and_a_clean_stop(bot: Bot) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", bot.port))
        holder.listen(1)
        r = subprocess.run([sys.executable, "-m", "walltrack.cli", "run"], env=bot.env, cwd=bot.data_dir.parent,
                           capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr[-2000:]
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith(f"walltrack: the webhook gateway cannot listen on 127.0.0.1:{bot.port}") and "GATEWAY_PORT" in last
    assert "Traceback" not in r.stderr
    assert not (bot.data_dir / "pg" / "postmaster.pid").exists()  # what had started is stopped again
