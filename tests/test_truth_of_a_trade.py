"""The truth of a trade: a failed transaction is never copied; malformed numbers are refused at the gateway (400,
naming the field); implausible ones are recorded as ignored with the reason; every delivery for a watched wallet
ends as a signal or an observation that says why it is none — and the operator can list them.

Through the real App (gateway, actors, embedded PostgreSQL) and the real CLI; the pure reading rules beside."""

from __future__ import annotations

import copy
import io
import json
from contextlib import redirect_stdout

import httpx
import pytest

from actors.trades import (
    MAX_DEPTH,
    InvalidTransaction,
    NotATrade,
    Trade,
    check_shape,
    read_trade,
)
from sandbox.market import signature
from tests.conftest import PUMP_WALLET, fixture, wait_until
from tests.test_gateway import db, post, url, watch
from walltrack.app import App

PUMP = fixture("helius_enhanced_pump_amm_swaps_trimmed.json")
BUY = PUMP[0]  # a real PumpSwap buy by PUMP_WALLET (no timestamp in this trimmed fixture)


def variant(name: str, **changes: object) -> dict:
    """The real buy under a new signature, with fields replaced (`token` replaces the bought leg's raw amount)."""
    tx = copy.deepcopy(BUY)
    tx["signature"] = signature(f"truth-{name}")
    for key, value in changes.items():
        if key in ("tokenAmount", "decimals"):
            leg = next(ch for e in tx["accountData"] for ch in e.get("tokenBalanceChanges") or []
                       if ch["userAccount"] == PUMP_WALLET and not ch["mint"].startswith("So111"))
            leg["rawTokenAmount"][key] = value
        else:
            tx[key] = value
    return tx


def observation(app: App, sig: str) -> dict | None:
    rows = db(app, "SELECT outcome, reason FROM observations WHERE signature = $1 AND wallet = $2", sig, PUMP_WALLET)
    return dict(rows[0]) if rows else None


# -- the reading rules, pure ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("changes, reason", [
    ({"transactionError": {"InstructionError": [2, {"Custom": 6001}]}}, "transaction_failed"),
    ({"transactionError": "SlippageToleranceExceeded"}, "transaction_failed"),
    ({"decimals": 24}, "implausible:decimals"),
    ({"timestamp": 1_000_000_000_000}, "implausible:timestamp"),  # milliseconds where seconds belong: year 33658
    ({"timestamp": 1_700_000_000 - 3_600}, "implausible:timestamp"),  # an hour before it was received
])
def test_failed_or_implausible_transactions_are_refused_with_the_reason(changes: dict, reason: str) -> None:
    got = read_trade(check_shape(variant("pure", **changes)), PUMP_WALLET, received_at=1_700_000_000, max_skew_s=600)
    assert got == NotATrade(reason, refused=True) and got.outcome == "ignored"
    assert isinstance(read_trade(check_shape(variant("ok", timestamp=1_700_000_000 - 30)), PUMP_WALLET,
                                 received_at=1_700_000_000, max_skew_s=600), Trade)  # within the skew: a trade


def test_more_sol_than_exists_is_implausible() -> None:
    tx = variant("rich")
    tx["accountData"][0]["nativeBalanceChange"] = -(10**18)  # a billion SOL
    assert read_trade(check_shape(tx), PUMP_WALLET) == NotATrade("implausible:amount", refused=True)


@pytest.mark.parametrize("changes, field", [
    ({"decimals": -3}, "decimals is out of range (0..255)"),
    ({"tokenAmount": "1" * 40}, "tokenAmount is out of range"),  # a 40-digit raw amount: more than a u64
    ({"tokenAmount": str(2**64)}, "tokenAmount is out of range"),
    ({"timestamp": "2025-01-01"}, "timestamp (unix seconds) must be an integer"),
])
def test_malformed_numbers_fail_the_shape_check_naming_the_field(changes: dict, field: str) -> None:
    with pytest.raises(InvalidTransaction, match=field.replace("(", r"\(").replace(")", r"\)")):
        check_shape(variant("shape", **changes))


def test_nesting_deeper_than_the_limit_fails_the_shape_check() -> None:
    deep: object = "x"
    for _ in range(MAX_DEPTH + 1):
        deep = [deep]
    with pytest.raises(InvalidTransaction, match="nested more than"):
        check_shape(variant("deep", events=deep))
    check_shape(variant("shallow", events={"swap": {"innerSwaps": [{"programInfo": {"source": "X"}}]}}))


# -- through the gateway and the actors ----------------------------------------------------------------------------
def test_a_failed_buy_of_a_watched_wallet_is_recorded_as_ignored_never_copied(app: App) -> None:
    watch(app, PUMP_WALLET)
    failed = variant("failed", transactionError={"InstructionError": [3, {"Custom": 6024}]})
    assert post(app, [failed]).json() == {"accepted": 1, "duplicates": 0}
    wait_until(lambda: db(app, "SELECT processed_at FROM webhook_inbox WHERE signature = $1", failed["signature"])[0][0])
    assert db(app, "SELECT 1 FROM signals") == [] and db(app, "SELECT 1 FROM positions") == []  # never a trade
    assert observation(app, failed["signature"]) == {"outcome": "ignored", "reason": "transaction_failed"}


@pytest.mark.parametrize("changes, field", [
    ({"decimals": -3}, "rawTokenAmount.decimals is out of range"),
    ({"tokenAmount": "9" * 40}, "rawTokenAmount.tokenAmount is out of range"),
    ({"timestamp": 1.5}, "timestamp (unix seconds) must be an integer"),
])
def test_malformed_numbers_are_a_400_naming_the_field(app: App, changes: dict, field: str) -> None:
    r = post(app, [variant("bad", **changes)])
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "invalid_transaction" and field in r.json()["detail"]
    assert db(app, "SELECT 1 FROM webhook_inbox") == []  # never stored, never acknowledged


def test_a_100000_deep_body_is_a_400_not_a_500(app: App) -> None:
    depth = 100_000
    r = post(app, None, raw=b"[" * depth + b"]" * depth)
    assert r.status_code == 400 and r.headers["content-type"] == "application/json"
    assert r.json()["error"] == "invalid_json" and "nested" in r.json()["detail"]
    inside = json.dumps([variant("deep")])[:-2] + ', "events": ' + "[" * 100 + "]" * 100 + "}]"
    r = post(app, None, raw=inside.encode())
    assert r.status_code == 400 and "nested more than" in r.json()["detail"]
    assert httpx.get(url(app, "/health"), timeout=5).status_code == 200  # and the gateway is fine


def test_every_delivery_ends_as_a_signal_or_a_reason_and_the_operator_can_list_them(
        app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    watch(app, PUMP_WALLET)
    now = int(app.clock())
    transfer = variant("transfer")  # SOL out, the token leg gone: not a trade
    for e in transfer["accountData"]:
        e["tokenBalanceChanges"] = []
    batch = [
        variant("good", timestamp=now),
        variant("failed", transactionError="InstructionError"),
        variant("future", timestamp=now + 86_400 * 365),
        variant("odd-decimals", decimals=30),
        transfer,
    ]
    assert post(app, batch).json() == {"accepted": 5, "duplicates": 0}
    wait_until(lambda: len(db(app, "SELECT 1 FROM observations")) == 5)
    signals = {r["signature"]: r["decision"] for r in db(app, "SELECT signature, decision FROM signals")}
    assert signals == {batch[0]["signature"]: "taken"}  # the one real trade; none of the others is one
    ended = {r["signature"]: (r["outcome"], r["reason"]) for r in db(app, "SELECT signature, outcome, reason FROM observations")}
    assert ended == {
        batch[0]["signature"]: ("signal", "copy_buy"),
        batch[1]["signature"]: ("ignored", "transaction_failed"),
        batch[2]["signature"]: ("ignored", "implausible:timestamp"),
        batch[3]["signature"]: ("ignored", "implausible:decimals"),
        batch[4]["signature"]: ("no_trade", "no_token_moved"),
    }
    assert not db(app, "SELECT 1 FROM webhook_inbox WHERE processed_at IS NULL")

    # the operator's view: `walltrack ignored --json` lists the four with their reasons
    from walltrack.cli import main

    monkeypatch.setenv("DATABASE_URL", app.settings.database_url.get_secret_value())  # type: ignore[union-attr]
    monkeypatch.setenv("WALLTRACK_DATA_DIR", str(app.settings.walltrack_data_dir))
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["ignored", "--json"]) == 0
    listed = {r["signature"]: (r["wallet"], r["outcome"], r["reason"]) for r in json.loads(out.getvalue())}
    assert listed == {sig: (PUMP_WALLET, *why) for sig, why in ended.items() if why[0] != "signal"}
