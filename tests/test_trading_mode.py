"""The global trading mode (off / paper / live): the wallet's decision table, driven directly, and the running App
on a real embedded PostgreSQL — the panel's command and the CLI's reach every wallet actor through the database
(`runtime_settings` + NOTIFY), survive a restart, are audited, and live is refused with its reason."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from typing import Any, Iterator

import httpx
import pykka
import pytest
from structlog.testing import capture_logs

import ui
from actors.messages import Deliver, TradingModeChanged
from actors.rules import GLOBAL_OFF, LIVE_NOT_AVAILABLE, CopyRules, mode_refusal
from actors.wallet import TABLE, Context, WalletState, decide, rules_for, transition
from tests.conftest import wait_until
from tests.copykit import pubkey, sig, swap_payload, trade
from tests.test_risk_actors import LEADER, SOL, buy, signal, token, use_cli, watch
from walltrack.app import App
from walltrack.panel import PanelBackend

W, MINT = pubkey("leader"), pubkey("mint")
NOON = 12 * 3600.0


# -- the wallet's table, without threads -----------------------------------------------------------------------
def test_table_takes_the_mode() -> None:
    assert ("watching", TradingModeChanged) in TABLE
    state, effects = transition(WalletState(W), TradingModeChanged("off"), CopyRules())
    assert state.trading_mode == "off" and effects == []


@pytest.mark.parametrize("global_mode, overrides, expected", [
    (None, {}, "copy_buy"),  # not told (the bare spine): the rules alone decide
    ("paper", {}, "copy_buy"),
    ("off", {}, GLOBAL_OFF),
    ("off", {"mode": "paper"}, GLOBAL_OFF),  # a global off wins over a wallet's own mode
    ("off", {"mode": "live"}, GLOBAL_OFF),
    ("paper", {"mode": "off"}, "mode_off"),  # under paper, the wallets keep their own overrides
    ("paper", {"mode": "live"}, LIVE_NOT_AVAILABLE),  # never a silent fall-back to paper
])
def test_a_global_off_skips_every_buy_and_paper_leaves_the_wallets_rules(
        global_mode: str | None, overrides: dict[str, Any], expected: str) -> None:
    state = WalletState(W, overrides=overrides, trading_mode=global_mode)
    obs = decide(state, "s", trade(W, MINT), rules_for(state, CopyRules()), ctx=Context(now=NOON))
    assert obs.reason == expected
    assert obs.decision == ("taken" if expected == "copy_buy" else "skipped")
    if expected != "copy_buy":
        assert obs.entry is not None and obs.entry.mode == "shadow"  # still followed, to show what it cost or saved


def test_a_global_off_never_stops_exits() -> None:
    state = WalletState(W, open_by_token={MINT: frozenset({7})}, trading_mode="off")
    obs = decide(state, "s", trade(W, MINT, side="sell"), CopyRules(), ctx=Context(now=NOON))
    assert (obs.decision, obs.reason, obs.mirror_to) == ("taken", "mirror_sell", (7,))


def test_the_default_mode_follows_the_global_one_unless_copy_mode_is_set() -> None:
    live_defaults = CopyRules(mode="live")  # TRADING_MODE=live at start, then the operator chose paper
    state = WalletState(W, trading_mode="paper")
    follow = Context(now=NOON, rules_follow_mode=True)
    fixed = Context(now=NOON, rules_follow_mode=False)  # COPY_MODE=live set explicitly: the defaults stay live

    def reason(ctx: Context) -> str | None:
        return decide(state, "s", trade(W, MINT), rules_for(state, live_defaults, ctx.rules_follow_mode), ctx=ctx).reason

    assert reason(follow) == "copy_buy"
    assert reason(fixed) == LIVE_NOT_AVAILABLE


def test_live_is_refused_with_the_reason_the_wallets_skip_with() -> None:
    assert mode_refusal("off") is None and mode_refusal("paper") is None
    refusal = mode_refusal("live")
    assert refusal is not None and refusal.startswith(LIVE_NOT_AVAILABLE) and "never copied on paper" in refusal
    assert mode_refusal("live", live_available=True) is None
    assert "WALLET_KEYPAIR_PATH" in refusal  # it says what to do
    assert "unknown trading mode" in (mode_refusal("yolo") or "")


# -- the running App ---------------------------------------------------------------------------------------------
@pytest.fixture
def blackhole() -> Iterator[str]:
    """A quote provider that accepts connections and never answers: entries stay pending (no network needed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(64)
        yield f"http://127.0.0.1:{s.getsockname()[1]}"


def start(make_settings: Any, jupiter: str) -> App:
    """The bot without a wallet key: live is refused (the live switch with a key: tests/test_live_app.py)."""
    return App(make_settings(jupiter_base_url=jupiter, http_timeout_s=300, provider_max_wait_s=600,
                             wallet_private_key=None)).start()


def until_reason(app: App, expected: str) -> dict[str, Any]:
    """Buys until one is decided with `expected` (the NOTIFY reaches the wallets within moments)."""
    def attempt() -> dict[str, Any] | None:
        s = signal(app, buy(app, f"mode:{time.monotonic()}"))
        return s if s["reason"] == expected else None

    return wait_until(attempt, timeout=15, interval=0.05)


def command(app: App, cmd: Any) -> str:
    return asyncio.run(PanelBackend(app).command(cmd))


def test_the_operator_pauses_every_entry_from_the_panel_and_resumes_from_the_cli(
        make_settings: Any, blackhole: str, db_url: str) -> None:
    app = start(make_settings, blackhole)
    try:
        watch(app, LEADER)
        held = signal(app, buy(app, "held"))
        assert (held["decision"], held["reason"], held["mode"]) == ("taken", "copy_buy", "paper")

        with capture_logs() as logs:
            done = command(app, TradingModeChanged("off"))
            skipped = until_reason(app, GLOBAL_OFF)
        assert "set to off" in done
        assert (skipped["decision"], skipped["mode"]) == ("skipped", "shadow")
        changed = [e for e in logs if e["event"] == "trading_mode_changed"]
        assert changed and changed[0]["mode"] == "off" and changed[0]["by"] == "panel"
        assert any(e["event"] == "trading_mode_applied" and e["mode"] == "off" for e in logs)
        # exits go on: the leader's sale of the token we hold is still mirrored
        sold = signal(app, _sell(app, "held"))
        assert (sold["decision"], sold["reason"]) == ("taken", "mirror_sell")

        with pytest.raises(ui.CommandRefused, match=LIVE_NOT_AVAILABLE):
            command(app, TradingModeChanged("live"))
        assert app.trading_mode == "off"
        health = httpx.get(f"http://127.0.0.1:{app.gateway_port}/health", timeout=5).json()
        assert health["trading_mode"] == "off"
        assert signal(app, buy(app, "still-off"))["reason"] == GLOBAL_OFF  # never a silent switch
        events = app.store.run(lambda c: c.fetch("SELECT old_value, new_value, by FROM runtime_setting_events ORDER BY id"))
        assert [tuple(e) for e in events] == [(None, "off", "panel")]
    finally:
        app.stop()
        pykka.ActorRegistry.stop_all()

    app = start(make_settings, blackhole)  # the mode outlives a restart
    try:
        assert app.trading_mode == "off"
        assert signal(app, buy(app, "after-restart"))["reason"] == GLOBAL_OFF
        refused = use_cli(app, db_url, "mode", "set", "live")
        assert refused.returncode == 2 and LIVE_NOT_AVAILABLE in refused.stderr and "mode not changed" in refused.stderr
        resumed = use_cli(app, db_url, "mode", "set", "paper")
        assert resumed.returncode == 0 and "off -> paper" in resumed.stdout, resumed.stderr
        taken = until_reason(app, "copy_buy")
        assert (taken["decision"], taken["mode"]) == ("taken", "paper")
        shown = json.loads(use_cli(app, db_url, "mode", "show", "--json").stdout)
        assert (shown["mode"], shown["source"], shown["updated_by"]) == ("paper", "operator", "cli")
        assert any(line.startswith("Max open positions: ") for line in shown["caps"])
        events = app.store.run(lambda c: c.fetch("SELECT old_value, new_value, by FROM runtime_setting_events ORDER BY id"))
        assert [tuple(e) for e in events] == [(None, "off", "panel"), ("off", "paper", "cli")]
    finally:
        app.stop()
        pykka.ActorRegistry.stop_all()


def _sell(app: App, name: str) -> str:
    """The leader sells token(name) (a sale of what it bought in `buy`)."""
    s = sig(f"sell:{name}")
    assert app.root is not None
    app.actors.tell(Deliver(s, swap_payload(s, LEADER, token(name), "sell", SOL, 10**6), (LEADER,)))
    return s


def test_without_a_stored_mode_trading_mode_is_in_force(make_settings: Any, blackhole: str) -> None:
    app = start(make_settings, blackhole)
    try:
        assert app.trading_mode == "paper"
        assert asyncio.run(PanelBackend(app).status())["mode"] == "paper"
        caps = PanelBackend(app).caps_in_force()
        assert "Max open positions: 10 (RISK_MAX_OPEN_POSITIONS)" in caps
        assert any(line.startswith("Daily loss breaker: 1 SOL") for line in caps)
    finally:
        app.stop()
        pykka.ActorRegistry.stop_all()
