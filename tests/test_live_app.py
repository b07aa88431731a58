"""The bot in live mode against the sandbox's chain, as an operator runs it: the App in-process (two deliveries of
one leader buy, the start-up reconcile), and `walltrack run` as its own process killed with SIGKILL between the
send and the confirmation — restarted, it reconciles and exactly one buy is on chain. The key (a Solana CLI key
file) never shows in the process's command line or environment, its logs, its database or its panel."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from typing import Any, Iterator

import httpx
import pykka
import pytest
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.token.associated import get_associated_token_address

from actors import messages as m
from sandbox.chain import TOKEN_PROGRAM
from sandbox.market import LAMPORTS
from tests.conftest import SECRET, sql, wait_until
from tests.copykit import pubkey, sig, swap_payload
from tests.livekit import token_balance
from tests.test_cli import Bot, free_port
from storage import repo
from walltrack.app import App
from walltrack.demo import Sandbox
from walltrack.demo_live import SANDBOX_PROGRAMS
from execution.keys import secret_forms
from walltrack.panel import PanelBackend

LEADER = pubkey("live-leader")


def sandbox_env(sb: Sandbox) -> dict[str, str]:
    return {"JUPITER_BASE_URL": sb.url("jupiter"), "JUPITER_TIER": "pro", "SOLANA_RPC_URL": sb.url("rpc"),
            "DEXSCREENER_BASE_URL": sb.url("dexscreener"), "SAFETY_ENABLED": "false", "TRADING_MODE": "live",
            "LIVE_PROGRAMS": SANDBOX_PROGRAMS, "LIVE_REBROADCAST_MS": "300", "LIVE_CONFIRM_POLL_MS": "100",
            "LIVE_RETRY_BACKOFF_S": "0.2", "PRICE_POLL_S": "0.5"}


def plain(sb: Sandbox, n: int = 0) -> str:
    return [t.mint for t in sb.market.tokens.values() if t.quote == "SOL" and not t.hazards.names()][n]


def our_swaps(sb: Sandbox, owner: Pubkey, mint: str) -> list[str]:
    """Transactions that landed on the sandbox chain, paid by our wallet, moving our tokens of `mint`."""
    out = []
    for signature, executed in list(sb.chain.transactions.items()):
        keys = list(executed.transaction.message.account_keys)
        if keys and keys[0] == owner and any(b["mint"] == mint and b["owner"] == str(owner)
                                             for b in executed.outcome.post_tokens + executed.outcome.pre_tokens):
            out.append(signature)
    return out


def deliver(url: str, signature: str, mint: str) -> httpx.Response:
    body = "[" + swap_payload(signature, LEADER, mint, "buy", 2 * LAMPORTS, 10**9) + "]"
    return httpx.post(url, content=body, timeout=10, headers={"Authorization": SECRET, "Content-Type": "application/json"})


@pytest.fixture
def sb() -> Iterator[Sandbox]:
    s = Sandbox(seed=7, speed=60)
    s.chain.blocks.block_time_s = 0.1
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture
def funded(sb: Sandbox) -> Keypair:
    kp = Keypair()
    sb.chain.airdrop(kp.pubkey(), 10 * LAMPORTS)
    return kp


def live_app(make_settings: Any, sb: Sandbox, kp: Keypair) -> App:
    env = {k.lower(): v for k, v in sandbox_env(sb).items()}
    return App(make_settings(wallet_private_key=str(kp), **env)).start()


def test_two_deliveries_of_one_leader_buy_make_one_transaction_on_chain(make_settings: Any, sb: Sandbox,
                                                                         funded: Keypair) -> None:
    app = live_app(make_settings, sb, funded)
    try:
        app.store.run(lambda c: repo.add_wallet(c, LEADER, "leader"))
        wait_until(lambda: LEADER in app.watched)
        mint, signature = plain(sb), sig("one-leader-buy")
        url = f"http://127.0.0.1:{app.gateway_port}/webhooks/helius"
        assert deliver(url, signature, mint).status_code == 200
        assert deliver(url, signature, mint).json() == {"accepted": 0, "duplicates": 1}  # Helius delivers it again
        row = wait_until(lambda: app.store.run(lambda c: c.fetchrow(
            "SELECT id, mode, status, entry_token_amount FROM positions WHERE status = 'open'")), timeout=60)
        assert row["mode"] == "live"
        assert len(our_swaps(sb, funded.pubkey(), mint)) == 1
        assert token_balance(sb, funded.pubkey(), mint) == int(row["entry_token_amount"])
        # the stored delivery handed out again (what the inbox sweep does), then a marker: the wallet decides in order,
        # so once the marker's position is open the redelivery has been decided — once, with no second buy
        app.hand_out([(signature, swap_payload(signature, LEADER, mint, "buy", 2 * LAMPORTS, 10**9), (LEADER,), 0.0)])
        assert deliver(url, sig("marker"), plain(sb, 1)).status_code == 200
        wait_until(lambda: app.store.run(lambda c: c.fetchval(
            "SELECT count(*) FROM positions WHERE status = 'open'")) == 2, timeout=60)
        assert len(our_swaps(sb, funded.pubkey(), mint)) == 1
        assert app.store.run(lambda c: c.fetchval(
            "SELECT count(*) FROM positions WHERE mode = 'live' AND token_mint = $1", mint)) == 1
        # the kill switch from the panel: the next leader buy is not copied; live again is allowed (a key is set)
        assert "off" in asyncio.run(PanelBackend(app).command(m.TradingModeChanged("off")))
        wait_until(lambda: app.trading_mode == "off")
        off = plain(sb, 2)
        assert deliver(url, sig("after-off"), off).status_code == 200
        assert wait_until(lambda: app.store.run(lambda c: c.fetchval(
            "SELECT reason FROM signals WHERE signature = $1", sig("after-off")))) == "mode:off"
        assert our_swaps(sb, funded.pubkey(), off) == []
        assert "live" in asyncio.run(PanelBackend(app).command(m.TradingModeChanged("live")))
    finally:
        app.stop()
        pykka.ActorRegistry.stop_all()


def test_the_start_up_reconcile_shows_tokens_gone_and_untracked_tokens(make_settings: Any, sb: Sandbox,
                                                                       funded: Keypair) -> None:
    app = live_app(make_settings, sb, funded)
    held, stray = plain(sb, 0), plain(sb, 1)
    try:
        app.store.run(lambda c: repo.add_wallet(c, LEADER, "leader"))
        wait_until(lambda: LEADER in app.watched)
        assert deliver(f"http://127.0.0.1:{app.gateway_port}/webhooks/helius", sig("held"), held).status_code == 200
        pid = wait_until(lambda: app.store.run(lambda c: c.fetchval("SELECT id FROM positions WHERE status = 'open'")),
                         timeout=60)
        assert app.live_reconcile is not None and wait_until(lambda: "findings" in app.live_reconcile)
        assert app.live_reconcile["findings"] == []
        live = app.services.live
        live.land(0, "buy", stray, live.prepare(0, "buy", stray, LAMPORTS // 20, slippage_bps=100).result(30),
                  fresh=True).result(60)  # bought outside any position
    finally:
        app.stop()
        pykka.ActorRegistry.stop_all()
    sb.chain.set_amount(str(get_associated_token_address(funded.pubkey(), Pubkey.from_string(held), TOKEN_PROGRAM)), 0)

    app = live_app(make_settings, sb, funded)  # the book says we hold `held`; the chain says otherwise
    try:
        report = wait_until(lambda: "findings" in (app.live_reconcile or {}) and app.live_reconcile)
        kinds = {f["kind"]: f for f in report["findings"]}
        assert set(kinds) == {"tokens_gone", "untracked_tokens"}
        assert kinds["tokens_gone"]["mint"] == held and kinds["tokens_gone"]["position_ids"] == [pid]
        assert kinds["untracked_tokens"]["mint"] == stray and kinds["untracked_tokens"]["chain_amount"] > 0
        health = httpx.get(f"http://127.0.0.1:{app.gateway_port}/health", timeout=5).json()
        assert health["status"] == "degraded" and health["live"]["wallet"] == str(funded.pubkey())
        assert {f["kind"] for f in health["live"]["reconcile"]["findings"]} == set(kinds)
        stored = app.store.run(lambda c: c.fetch("SELECT kind, mint FROM live_reconcile WHERE kind <> 'clean'"))
        assert {(r["kind"], r["mint"]) for r in stored} == {("tokens_gone", held), ("untracked_tokens", stray)}
        # shown, not fixed: the position is still open with its tokens on the book
        assert app.store.run(lambda c: c.fetchval("SELECT status FROM positions WHERE id = $1", pid)) == "open"
    finally:
        app.stop()
        pykka.ActorRegistry.stop_all()


# -- `walltrack run`, killed between the send and the confirmation ------------------------------------------------
class LiveBot(Bot):
    def __init__(self, data_dir: Path, sb: Sandbox, keyfile: Path, db_url: str) -> None:
        super().__init__(data_dir)
        self.env.pop("WALLET_PRIVATE_KEY", None)
        self.env.update(sandbox_env(sb), WALLET_KEYPAIR_PATH=str(keyfile), PANEL_PORT=str(free_port()),
                        DATABASE_URL=db_url)
        self.panel_port = int(self.env["PANEL_PORT"])


@pytest.mark.parametrize("fault", ["drop_all", "late_blocks"])
def test_kill_9_between_send_and_confirm_then_restart_reconciles_to_exactly_one_buy(
        tmp_path: Path, sb: Sandbox, funded: Keypair, db_url: str, fault: str) -> None:
    keyfile = tmp_path / "id.json"
    keyfile.write_text(json.dumps(list(bytes(funded))))
    keyfile.chmod(0o600)
    bot = LiveBot(tmp_path / "data", sb, keyfile, db_url)
    forms = secret_forms(str(funded))
    mint = plain(sb)
    rpc = sb.faults["rpc"]
    if fault == "drop_all":
        rpc.drop_all = True  # sent, never lands: the restart must rebroadcast the same transaction
    else:
        rpc.late_blocks = 60  # lands, shows no status for 60 blocks: the restart must find it, not buy again
    try:
        bot.start()
        for path in (f"/proc/{bot.proc.pid}/cmdline", f"/proc/{bot.proc.pid}/environ"):  # what `ps e` shows
            text = Path(path).read_bytes().decode(errors="replace")
            assert not any(f in text for f in forms), path
        bot.cli("wallets", "add", LEADER)
        wait_until(lambda: (bot.healthy() or {}).get("actors", {}).get("wallets") == 1)
        assert deliver(f"http://127.0.0.1:{bot.port}/webhooks/helius", sig("kill9-buy"), mint).status_code == 200
        wait_until(lambda: any(p["status"] == "buying" for p in json.loads(bot.cli("positions", "--json").stdout))
                   and _signature_committed(bot), timeout=60)
        bot.proc.send_signal(signal.SIGKILL)
        bot.proc.wait(timeout=10)
        signed = _signature_committed(bot)
        rpc.drop_all = False
        bot.start()
        pos = wait_until(lambda: [p for p in json.loads(bot.cli("positions", "--json").stdout) if p["status"] == "open"],
                         timeout=90)[0]
        assert len(our_swaps(sb, funded.pubkey(), mint)) == 1  # exactly one buy on chain
        assert token_balance(sb, funded.pubkey(), mint) == int(pos["entry_token_amount"])
        kinds = _journal(bot, pos["id"])
        assert kinds.count("buy_signature") == 1 and kinds[-1] == "entry_filled", kinds  # the same transaction
        assert _fill_signature(bot, pos["id"]) == signed
        sb.faults["jupiter"].malicious = "pay_stranger_sol"  # a failing, refused swap in the same run's logs
        assert deliver(f"http://127.0.0.1:{bot.port}/webhooks/helius", sig("refused-buy"), plain(sb, 1)).status_code == 200
        wait_until(lambda: any(p["status"] == "entry_failed" for p in json.loads(bot.cli("positions", "--json").stdout)),
                   timeout=60)
        _no_secret_anywhere(bot, forms)
    finally:
        if bot.proc is not None and bot.proc.poll() is None:
            bot.stop()


def _signature_committed(bot: Bot) -> str | None:
    rows = _sql(bot, "SELECT data->>'signature' AS s FROM position_events WHERE kind = 'buy_signature'")
    return rows[0]["s"] if rows else None


def _journal(bot: Bot, pid: int) -> list[str]:
    return [r["kind"] for r in _sql(bot, f"SELECT kind FROM position_events WHERE position_id = {int(pid)} ORDER BY seq")]


def _fill_signature(bot: Bot, pid: int) -> str:
    return _sql(bot, f"SELECT signature FROM fills WHERE position_id = {int(pid)}")[0]["signature"]


def _sql(bot: Bot, query: str) -> list[Any]:
    return sql(bot.env["DATABASE_URL"], query)


def _no_secret_anywhere(bot: Bot, forms: list[str]) -> None:
    """The panel's pages, every table of the database, the process's output and log files."""
    for page in ("/", "/config", "/watchlist"):
        html = httpx.get(f"http://127.0.0.1:{bot.panel_port}{page}", timeout=10).text
        assert "WALLET_KEYPAIR_PATH" in html or page != "/config"
        assert not any(f in html for f in forms), page
    tables = [r["t"] for r in _sql(bot, "SELECT tablename AS t FROM pg_tables WHERE schemaname = 'public'")]
    dump = "".join(str(r["j"]) for t in tables for r in _sql(bot, f'SELECT row_to_json(x)::text AS j FROM "{t}" x'))
    assert "buy_signature" in dump and not any(f in dump for f in forms)
    logs = bot.stdout.read_text() + "".join(p.read_text() for p in (bot.data_dir / "logs").glob("*.log*"))
    assert "swap_confirmed" in logs and "swap_refused" in logs and not any(f in logs for f in forms)
