"""`walltrack doctor` and `walltrack helius sync` against the sandbox's services (its Helius webhook API, RPC,
Jupiter, DexScreener, RugCheck, Telegram), as an operator runs them; the bot keeping the webhook in sync by itself."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx
import pykka
import pytest

from sandbox import dexscreener, helius_api, jupiter, rpc, rugcheck, telegram
from sandbox.chain import Chain
from sandbox.faults import FaultBoard
from sandbox.market import Market
from sandbox.server import create_app, server_main
from tests.conftest import PUMP_WALLET, SECRET, wait_until
from storage import repo
from walltrack.app import App
from walltrack.bridge import TrioThread

KEY = "doctor-helius-key"
HOOK_URL = "https://walltrack.example/webhooks/helius"
OTHER = "So11111111111111111111111111111111111111112"


@dataclass
class Services:
    port: int
    webhooks: helius_api.WebhookRegistry
    alerts: telegram.Recorder
    market: Market

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"


def serve(start: float) -> tuple[Services, TrioThread]:
    market = Market(seed=7, start=start)
    chain = Chain(market)
    faults = FaultBoard()
    registry, recorder = helius_api.WebhookRegistry(), telegram.Recorder()
    app = create_app({
        "jupiter": jupiter.blueprint(market, faults["jupiter"]),
        "dexscreener": dexscreener.blueprint(market, faults["dexscreener"]),
        "rugcheck": rugcheck.blueprint(market, faults["rugcheck"]),
        "rpc": rpc.blueprint(chain, faults["rpc"]),
        "helius": helius_api.blueprint(chain, registry, KEY, faults["helius_api"]),
        "telegram": telegram.telegram_blueprint(recorder, faults["telegram"]),
    })
    thread = TrioThread(server_main(app), name="doctor-sandbox")
    return Services(thread.start(), registry, recorder, market), thread


@pytest.fixture
def services() -> Iterator[Services]:
    sv, thread = serve(time.time())
    yield sv
    thread.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env_for(sv: Services, data: Path, db: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "HELIUS_", "ALERT_", "JUPITER_"))}
    env.update(WALLTRACK_DATA_DIR=str(data), DATABASE_URL=db, HELIUS_WEBHOOK_SECRET=SECRET,
               GATEWAY_PORT=str(free_port()), JUPITER_BASE_URL=sv.url("jupiter"), JUPITER_TIER="pro",
               DEXSCREENER_BASE_URL=sv.url("dexscreener"), RUGCHECK_BASE_URL=sv.url("rugcheck"),
               SOLANA_RPC_URL=sv.url("rpc"), HELIUS_API_URL=sv.url("helius"), HELIUS_API_KEY=KEY,
               HELIUS_WEBHOOK_URL=HOOK_URL, TELEGRAM_API_URL=sv.url("telegram"), TELEGRAM_BOT_TOKEN=sv.alerts.token,
               TELEGRAM_CHAT_ID="ops", DOCTOR_MIN_FREE_MB="1", HTTP_TIMEOUT_S="3")
    env.update(extra)
    return env


def walltrack(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "walltrack.cli", *args], env=env, capture_output=True, text=True,
                          timeout=180)


def lines(out: str) -> dict[str, str]:
    """doctor's lines by check name: 'status detail'."""
    found = {}
    for line in out.splitlines():
        status, rest = line[:6].strip(), line[6:]
        name, detail = rest[:15].strip(), rest[15:].strip()
        found[name] = f"{status} {detail}"
    return found


def test_helius_sync_creates_updates_and_reenables_the_webhook(services: Services, tmp_path: Path, db_url: str) -> None:
    env = env_for(services, tmp_path / "data", db_url)
    assert walltrack(env, "wallets", "add", PUMP_WALLET).returncode == 0
    first = walltrack(env, "helius", "sync", "--json")
    assert first.returncode == 0, first.stderr
    result = json.loads(first.stdout)
    assert result["action"] == "created" and result["addresses"] == 1
    (hook,) = services.webhooks.all()
    assert hook["webhookURL"] == HOOK_URL and hook["webhookType"] == "enhanced" and hook["transactionTypes"] == ["ANY"]
    assert hook["accountAddresses"] == [PUMP_WALLET] and hook["authHeader"] == SECRET

    assert json.loads(walltrack(env, "helius", "sync", "--json").stdout)["action"] == "unchanged"
    edits = services.webhooks.edits
    walltrack(env, "wallets", "add", OTHER)
    services.webhooks.disable(hook["webhookID"])  # Helius gave up on a failing endpoint
    out = walltrack(env, "helius", "sync")
    assert out.returncode == 0 and "updated, 2 addresses (+1 -0), re-enabled" in out.stdout
    (hook,) = services.webhooks.all()
    assert sorted(hook["accountAddresses"]) == sorted([PUMP_WALLET, OTHER]) and hook["active"] is True
    assert services.webhooks.edits == edits + 2  # one PUT with the full list, one PATCH: nothing more
    assert SECRET not in out.stdout + out.stderr and KEY not in out.stdout + out.stderr

    bad = walltrack({**env, "HELIUS_API_KEY": "wrong-key"}, "helius", "sync")
    assert bad.returncode == 1 and "HTTP 401" in bad.stderr and "wrong-key" not in bad.stderr
    missing = walltrack({k: v for k, v in env.items() if k != "HELIUS_WEBHOOK_URL"}, "helius", "sync")
    assert missing.returncode == 2 and "HELIUS_WEBHOOK_URL" in missing.stderr


def test_doctor_passes_on_a_ready_installation_and_names_each_failure(services: Services, tmp_path: Path,
                                                                      db_url: str) -> None:
    env = env_for(services, tmp_path / "data", db_url)
    walltrack(env, "wallets", "add", PUMP_WALLET)
    walltrack(env, "helius", "sync")
    good = walltrack(env, "doctor")
    assert good.returncode == 0, good.stdout + good.stderr
    checks = lines(good.stdout)
    for name in ("settings", "disk", "database", "webhook port", "jupiter", "dexscreener", "rpc", "rugcheck", "helius",
                 "helius webhook", "telegram", "clock"):
        assert checks[name].startswith("ok "), (name, good.stdout)
    assert "1 addresses = the watchlist" in checks["helius webhook"]

    walltrack(env, "wallets", "add", OTHER)  # the webhook no longer matches the watchlist
    with socket.socket() as holder:  # something else holds the gateway's port
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        bad_env = {**env, "GATEWAY_PORT": str(holder.getsockname()[1]), "TELEGRAM_BOT_TOKEN": "1:wrong",
                   "DOCTOR_MIN_FREE_MB": str(10**9)}
        bad = walltrack(bad_env, "doctor", "--json")
    assert bad.returncode == 1
    by_name = {c["name"]: c for c in json.loads(bad.stdout)}
    assert by_name["webhook port"]["status"] == "fail" and "is not WallTrack" in by_name["webhook port"]["detail"]
    assert by_name["telegram"]["status"] == "fail" and "key was refused" in by_name["telegram"]["detail"]
    assert by_name["disk"]["status"] == "fail" and "DOCTOR_MIN_FREE_MB" in by_name["disk"]["detail"]
    assert by_name["helius webhook"]["status"] == "fail" and "1 missing" in by_name["helius webhook"]["detail"]
    assert by_name["rpc"]["status"] == "ok" and "1:wrong" not in bad.stdout

    broken = walltrack({**env, "COPY_PERCENT": "500"}, "doctor")
    assert broken.returncode == 1 and lines(broken.stdout)["settings"].startswith("FAIL") and "COPY_PERCENT" in broken.stdout


def test_doctor_fails_a_clock_off_the_chain(tmp_path: Path, db_url: str) -> None:
    sv, thread = serve(time.time() - 3600)  # the chain's latest block is an hour behind this machine's clock
    try:
        out = walltrack(env_for(sv, tmp_path / "data", db_url), "doctor")
    finally:
        thread.stop()
    assert out.returncode == 1
    clock = lines(out.stdout)["clock"]
    assert clock.startswith("FAIL") and "s off the chain's block time" in clock
    skew = int(clock.split("clock is ")[1].split(" s off")[0])
    assert 3600 <= skew < 3600 + 120  # the sandbox's chain stands still: its last block is as old as the test


def test_the_running_bot_keeps_the_webhook_in_step_with_the_watchlist(services: Services,
                                                                      make_settings: Callable[..., Any]) -> None:
    app = App(make_settings(helius_api_url=services.url("helius"), helius_api_key=KEY, helius_webhook_url=HOOK_URL,
                            helius_sync_debounce_s=0.3)).start()
    try:
        assert app.store is not None
        app.store.run(lambda c: repo.add_wallet(c, PUMP_WALLET, None))
        hook = wait_until(lambda: next(iter(services.webhooks.all()), None), timeout=20)
        wait_until(lambda: services.webhooks.all()[0]["accountAddresses"] == [PUMP_WALLET], timeout=20)
        edits = services.webhooks.edits
        for address in (OTHER, "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"):  # a burst of changes: one edit
            app.store.run(lambda c, a=address: repo.add_wallet(c, a, None))
        wait_until(lambda: len(services.webhooks.all()[0]["accountAddresses"]) == 3, timeout=20)
        assert services.webhooks.edits == edits + 1 and services.webhooks.all()[0]["webhookID"] == hook["webhookID"]
        text = httpx.get(f"http://127.0.0.1:{app.gateway_port}/metrics", timeout=10).text
        assert 'walltrack_helius_syncs_total{result="updated"}' in text
    finally:
        app.stop()
        pykka.ActorRegistry.stop_all()
