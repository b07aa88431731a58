"""`walltrack wallet` against the sandbox's chain (the key's address, its SOL and tokens — never the key), and the
switch to live from the CLI: allowed with a key, refused with the reason without one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


from tests.livekit import Live, live, sol  # noqa: F401 - `live`: the module's sandbox fixture
from tests.test_cli import free_port
from execution.keys import secret_forms


def cli(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "WALLET_PRIVATE_KEY", "TRADING_MODE")}
    base.update(WALLTRACK_DATA_DIR=str(tmp_path / "data"), **env)
    return subprocess.run([sys.executable, "-m", "walltrack.cli", *args], env=base, cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)


def test_wallet_shows_the_address_and_the_chains_balances_never_the_key(live: Live, tmp_path: Path) -> None:
    mint = next(t.mint for t in live.sb.market.tokens.values() if t.quote == "SOL" and not t.hazards.names())
    live.swap("buy", mint, sol("0.03"))
    keyfile = tmp_path / "id.json"
    keyfile.write_text(json.dumps(list(bytes(live.keypair))))
    env = {"SOLANA_RPC_URL": live.sb.url("rpc"), "WALLET_KEYPAIR_PATH": str(keyfile)}
    r = cli(tmp_path, "wallet", "--json", **env)
    assert r.returncode == 0, r.stderr
    view = json.loads(r.stdout)
    assert view["address"] == str(live.owner) and view["sol_lamports"] == live.lamports()
    assert {t["mint"]: int(t["amount"]) for t in view["tokens"]}[mint] == live.tokens(mint)
    text = cli(tmp_path, "wallet", SOLANA_RPC_URL=live.sb.url("rpc"), WALLET_PRIVATE_KEY=str(live.keypair))
    assert text.returncode == 0 and f"address  {live.owner}" in text.stdout and mint in text.stdout
    for out in (r.stdout + r.stderr, text.stdout + text.stderr):
        assert not any(f in out for f in secret_forms(str(live.keypair)))


def test_wallet_without_a_key_or_a_reachable_rpc_is_one_clear_line(tmp_path: Path) -> None:
    r = cli(tmp_path, "wallet")
    assert r.returncode == 2 and "no wallet key configured" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    dead = f"http://127.0.0.1:{free_port()}"
    key = "[" + ",".join(str(b) for b in bytes(__import__("solders.keypair").keypair.Keypair())) + "]"
    r = cli(tmp_path, "wallet", SOLANA_RPC_URL=dead, WALLET_PRIVATE_KEY=key, HTTP_TIMEOUT_S="1")
    assert r.returncode == 2 and "cannot read the wallet" in r.stderr and key not in r.stderr


def test_the_cli_switches_to_live_with_a_key_and_refuses_without(tmp_path: Path, db_url: str) -> None:
    refused = cli(tmp_path, "mode", "set", "live", DATABASE_URL=db_url)
    assert refused.returncode == 2 and "live_not_available" in refused.stderr and "WALLET_KEYPAIR_PATH" in refused.stderr
    key = str(__import__("solders.keypair").keypair.Keypair())
    done = cli(tmp_path, "mode", "set", "live", DATABASE_URL=db_url, WALLET_PRIVATE_KEY=key)
    assert done.returncode == 0 and "-> live" in done.stdout, done.stderr
    shown = json.loads(cli(tmp_path, "mode", "show", "--json", DATABASE_URL=db_url, WALLET_PRIVATE_KEY=key).stdout)
    assert shown["mode"] == "live" and any("LIVE_MAX_TRADE_SOL" in line for line in shown["caps"])
    assert key not in done.stdout + done.stderr
