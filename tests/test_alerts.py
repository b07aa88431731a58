"""Alerts: the log lines they stand for, one message per storm, per-event enable, retries, secrets kept out — sent
to the sandbox's fake Telegram and generic webhook receiver, which record the real request bodies."""

from __future__ import annotations

import io
from typing import Any, Iterator

import pytest

from sandbox.faults import FaultBoard
from sandbox.server import create_app, server_main
from sandbox.telegram import Recorder, hooks_blueprint, telegram_blueprint
from tests.conftest import wait_until
from operations.alerts import Alert, Alerts, from_log
from walltrack.bridge import TrioThread
from walltrack.logs import Redactor, configure_logging
from walltrack.settings import load_settings

WALLET, MINT = "9JGuVmjXTeMea6VY6fpsu8783YeJME8bewyy9qv9UBxh", "So11111111111111111111111111111111111111112"


@pytest.mark.parametrize("line, event", [
    ({"event": "signal", "decision": "taken", "side": "buy", "wallet": WALLET, "token_mint": MINT, "position_id": 7,
      "signature": "s"}, "entry"),
    ({"event": "position_event", "journal_event": "entry_filled", "mode": "paper", "position_id": 7}, "entry_fill"),
    ({"event": "position_event", "journal_event": "exit_ordered", "mode": "paper", "position_id": 7,
      "reason": "stop_loss"}, "exit"),
    ({"event": "position_event", "journal_event": "partial_exit", "mode": "paper", "position_id": 7}, "exit_fill"),
    ({"event": "position_closed", "mode": "paper", "position_id": 7, "realized_pnl_quote": -5, "reason": "stop_loss"},
     "exit_fill"),
    ({"event": "position_event", "journal_event": "exit_failed", "mode": "live", "position_id": 7, "error": "x"},
     "exit_failed"),
    ({"event": "breaker_tripped", "breaker": "loss_streak", "reason": "4 losses"}, "breaker_tripped"),
    ({"event": "supervisor_escalated", "child": "wallet:x", "restarts": 4, "breaker": "supervisor:escalated"},
     "supervisor_escalated"),
    ({"event": "webhook_stalled", "silent_s": 600, "wallets": 2, "missing": 3}, "webhook_stalled"),
    ({"event": "breaker_open", "provider": "jupiter", "error": "HTTP 503"}, "provider_down"),
])
def test_each_event_comes_from_its_log_line(line: dict[str, Any], event: str) -> None:
    alert = from_log(line)
    assert alert is not None and alert.event == event and alert.summary


@pytest.mark.parametrize("line", [
    {"event": "signal", "decision": "skipped", "side": "buy", "wallet": WALLET, "token_mint": MINT},
    {"event": "position_event", "journal_event": "entry_filled", "mode": "shadow", "position_id": 7},
    {"event": "position_closed", "mode": "paper", "position_id": 7, "realized_pnl_quote": None},  # never filled
    {"event": "breaker_open", "provider": "telegram", "error": "down"},  # the sink itself: no alert loop
    {"event": "position_event", "journal_event": "high_water", "mode": "paper", "position_id": 7},
])
def test_lines_that_are_not_alerts(line: dict[str, Any]) -> None:
    assert from_log(line) is None


@pytest.fixture
def receiver() -> Iterator[tuple[str, Recorder, FaultBoard]]:
    recorder, faults = Recorder(), FaultBoard()
    thread = TrioThread(server_main(create_app({"telegram": telegram_blueprint(recorder, faults["telegram"]),
                                                "hooks": hooks_blueprint(recorder, faults["hooks"])})), name="alerts")
    port = thread.start()
    yield f"http://127.0.0.1:{port}", recorder, faults
    thread.stop()


def alerts_for(base: str, recorder: Recorder, **overrides: Any) -> tuple[Alerts, TrioThread]:
    values: dict[str, Any] = dict(telegram_api_url=f"{base}/telegram", telegram_bot_token=recorder.token,
                                  telegram_chat_id="-1001", alert_webhook_url=f"{base}/hooks/ops?token=hook-secret-123",
                                  alert_coalesce_s=1.0)
    settings = load_settings(_env_file=None, **{**values, **overrides})
    alerts = Alerts(settings, Redactor(settings.secrets()))
    runtime = TrioThread(name="alerts-test").start()
    runtime.start_service(alerts.run)
    return alerts, runtime


def test_a_storm_is_one_message_on_each_sink(receiver: tuple[str, Recorder, FaultBoard]) -> None:
    base, recorder, _ = receiver
    alerts, runtime = alerts_for(base, recorder)
    try:
        for i in range(50):
            alerts.emit(Alert("breaker_tripped", f"breaker tripped: token_cooldown:{i} — stop loss", {"breaker": str(i)}))
        wait_until(lambda: recorder.messages and recorder.hooks, timeout=20)
        wait_until(lambda: all(s.sent == 1 for s in alerts.sinks), timeout=20)
        (message,) = recorder.messages
        assert message["chat_id"] == "-1001" and message["text"].startswith("WallTrack: 50 alerts (50× breaker_tripped)")
        assert "… and 40 more" in message["text"] and len(message["text"]) <= 4096
        ((name, body),) = recorder.hooks
        assert name == "ops" and body["count"] == 50 and len(body["events"]) == 50
        assert body["events"][0]["type"] == "breaker_tripped" and body["events"][0]["breaker"] == "0"
    finally:
        runtime.stop()


def test_events_are_enabled_one_by_one(receiver: tuple[str, Recorder, FaultBoard]) -> None:
    base, recorder, _ = receiver
    alerts, runtime = alerts_for(base, recorder, alert_events="exit_fill,webhook_stalled", alert_coalesce_s=0)
    try:
        alerts.emit(Alert("entry", "entry: not wanted"))
        alerts.emit(Alert("exit_fill", "closed: position #1"))
        wait_until(lambda: recorder.messages, timeout=20)
        assert [m["text"] for m in recorder.messages] == ["WallTrack exit_fill: closed: position #1"]
    finally:
        runtime.stop()


def test_a_failing_sink_is_retried_and_its_secrets_stay_out_of_the_log(receiver: tuple[str, Recorder, FaultBoard]) -> None:
    base, recorder, faults = receiver
    faults["telegram"].error_status = 502
    faults["hooks"].error_status = 502
    log = io.StringIO()
    settings = load_settings(_env_file=None, telegram_bot_token=recorder.token,
                             alert_webhook_url=f"{base}/hooks/ops?token=hook-secret-123", telegram_chat_id="1")
    configure_logging(Redactor(settings.secrets()), "INFO", stream=log)
    alerts, runtime = alerts_for(base, recorder, alert_coalesce_s=0)
    try:
        alerts.emit(Alert("exit_failed", "exit failed: position #3"))
        wait_until(lambda: faults["telegram"].requests >= 2, timeout=30)  # retried after the first 502
        faults["telegram"].clear()
        faults["hooks"].clear()
        wait_until(lambda: recorder.messages and recorder.hooks, timeout=60)
        assert recorder.messages[0]["text"] == "WallTrack exit_failed: exit failed: position #3"
    finally:
        runtime.stop()
        configure_logging(Redactor(), "INFO", stream=io.StringIO())
    text = log.getvalue()
    assert '"provider": "telegram"' in text and "HTTP 502" in text  # the failures were logged ...
    assert recorder.token not in text and "hook-secret-123" not in text  # ... without the secrets
    assert recorder.token in settings.secrets() and "/hooks/ops?token=hook-secret-123" in settings.secrets()
