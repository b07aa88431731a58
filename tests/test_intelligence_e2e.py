"""The bot on the sandbox, end to end: webhooks in real Helius shapes, safety-screened decisions stored
with their reasons, price ticks with DexScreener taking over from a failing Jupiter, unknown prices."""

from __future__ import annotations

import json
import random
from typing import Any, Iterator

import httpx
import pykka
import pytest

from sandbox.helius import choose_shape, enhanced_tx
from tests.conftest import SECRET, wait_until
from storage import repo
from walltrack.app import App
from walltrack.demo import Sandbox


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    sb = Sandbox(seed=7, speed=60)
    yield sb
    sb.stop()


@pytest.fixture(params=[True], ids=["screened"])
def bot(make_settings: Any, sandbox: Sandbox, request: pytest.FixtureRequest) -> Iterator[App]:
    settings = make_settings(
        safety_enabled=request.param, jupiter_base_url=sandbox.url("jupiter"), jupiter_tier="pro",
        dexscreener_base_url=sandbox.url("dexscreener"), rugcheck_base_url=sandbox.url("rugcheck"),
        solana_rpc_url=sandbox.url("rpc"), price_poll_s=0.2, provider_cooldown_s=1.0, http_timeout_s=2.0)
    app = App(settings, clock=lambda: sandbox.market.now).start()
    try:
        yield app
    finally:
        app.stop()
        pykka.ActorRegistry.stop_all()


def db(app: App, query: str, *args: object) -> list:
    assert app.store is not None
    return app.store.run(lambda c: c.fetch(query, *args))


def leader_buys(sb: Sandbox, symbol: str) -> dict:
    """A real leader trade into `symbol` on the simulated chain, as Helius would deliver it."""
    leader = sb.market.leaders[0]
    with sb.market.lock:
        trade = sb.market._trade(leader, sb.market.by_symbol[symbol].mint, "buy", 500_000_000 if symbol != "USDX" else 50_000_000)
    sb.chain.apply_trade(trade)
    return enhanced_tx(trade, choose_shape(random.Random(trade.signature), trade))


def post(app: App, txs: list[dict]) -> httpx.Response:
    return httpx.post(f"http://127.0.0.1:{app.gateway_port}/webhooks/helius", content=json.dumps(txs),
                      headers={"Authorization": SECRET}, timeout=10)


def health(app: App) -> dict:
    return httpx.get(f"http://127.0.0.1:{app.gateway_port}/health", timeout=10).json()


def watch_leader(app: App, sb: Sandbox) -> str:
    address = sb.market.leaders[0].address
    assert app.store is not None
    app.store.run(lambda c: repo.add_wallet(c, address, "leader-0"))
    wait_until(lambda: address in app.watched)
    return address


def test_hazardous_buy_is_skipped_with_its_reason_and_a_clean_one_is_taken(bot: App, sandbox: Sandbox) -> None:
    watch_leader(bot, sandbox)
    frza, moon = leader_buys(sandbox, "FRZA"), leader_buys(sandbox, "MOON")
    assert post(bot, [frza, moon]).status_code == 200
    rows = wait_until(lambda: len(r := db(bot, "SELECT * FROM signals ORDER BY id")) == 2 and r, timeout=20)
    by_sig = {r["signature"]: r for r in rows}
    skipped, taken = by_sig[frza["signature"]], by_sig[moon["signature"]]
    assert (skipped["decision"], skipped["reason"]) == ("skipped", "safety:freeze_authority")
    checks = {c["name"]: c for c in skipped["safety"]["checks"]}
    assert checks["freeze_authority"]["passed"] is False and "freeze authority is live" in checks["freeze_authority"]["reason"]
    assert (taken["decision"], taken["reason"]) == ("taken", "copy_buy") and taken["safety"]["passed"] is True
    stored = {r["mint"]: r for r in db(bot, "SELECT mint, passed, reason FROM token_safety")}
    assert stored[sandbox.market.by_symbol["FRZA"].mint]["reason"] == "safety:freeze_authority"
    modes = sorted(r["mode"] for r in db(bot, "SELECT mode FROM positions"))
    assert modes == ["paper", "shadow"]  # the skipped buy is followed as a shadow position


def test_prices_fall_back_to_dexscreener_and_the_jupiter_breaker_opens_then_closes(bot: App, sandbox: Sandbox) -> None:
    watch_leader(bot, sandbox)
    assert post(bot, [leader_buys(sandbox, "MOON")]).status_code == 200
    moon = sandbox.market.by_symbol["MOON"].mint

    def mark() -> dict | None:
        rows = db(bot, "SELECT usd, source, priced_at FROM token_prices WHERE mint = $1", moon)
        return dict(rows[0]) if rows else None

    first = wait_until(lambda: (m := mark()) and m["source"] == "jupiter" and m, timeout=20)
    assert first["usd"] > 0
    sandbox.faults["jupiter"].error_status = 500
    wait_until(lambda: (m := mark()) and m["source"] == "dexscreener", timeout=30)
    wait_until(lambda: health(bot)["providers"]["jupiter"]["breaker"] == "open", timeout=30)
    fallback = mark()
    assert fallback is not None and fallback["usd"] > 0
    sandbox.faults["jupiter"].clear()
    wait_until(lambda: health(bot)["providers"]["jupiter"]["breaker"] == "closed", timeout=30)
    wait_until(lambda: (m := mark()) and m["source"] == "jupiter", timeout=30)


@pytest.mark.parametrize("bot", [False], ids=["unscreened"], indirect=True)  # no source may see it, safety included
def test_a_token_no_source_knows_is_unknown_never_zero_and_books_nothing(bot: App, sandbox: Sandbox) -> None:
    watch_leader(bot, sandbox)
    usdx = sandbox.market.by_symbol["USDX"].mint
    sandbox.faults["jupiter"].missing = {usdx}
    sandbox.faults["dexscreener"].missing = {usdx}
    assert post(bot, [leader_buys(sandbox, "USDX")]).status_code == 200
    wait_until(lambda: db(bot, "SELECT 1 FROM positions WHERE token_mint = $1 AND mode = 'paper'", usdx), timeout=20)
    seen = sandbox.faults["jupiter"].requests
    wait_until(lambda: sandbox.faults["jupiter"].requests > seen + 3, timeout=20)  # several price rounds went by
    row = wait_until(lambda: db(bot, "SELECT usd, source FROM token_prices WHERE mint = $1", usdx), timeout=20)[0]
    assert row["usd"] is None and row["source"] is None
    pos = db(bot, "SELECT status, realized_pnl_quote FROM positions WHERE token_mint = $1 AND mode = 'paper'", usdx)[0]
    assert pos["status"] == "open" and pos["realized_pnl_quote"] is None
