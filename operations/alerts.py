"""Alerts: Telegram (Bot API `sendMessage`) and a generic JSON webhook, with Freqtrade's event taxonomy.

Events come from the canonical log lines (a structlog tap, like the metrics), so no actor holds alert code:

| event                | from the line                                                          |
|----------------------|------------------------------------------------------------------------|
| entry                | `signal` — a buy taken (a position opened, its entry pending)           |
| entry_fill           | `position_event` entry_filled                                          |
| exit                 | `position_event` exit_ordered (the rule that fired)                     |
| exit_fill            | `position_event` partial_exit, and `position_closed` (with realized PnL) |
| exit_failed          | `position_event` exit_failed (it is retried)                            |
| breaker_tripped      | `breaker_tripped`                                                      |
| supervisor_escalated | `supervisor_escalated`                                                 |
| webhook_stalled      | `webhook_stalled` (operations.webhook_watch)                            |
| provider_down        | `breaker_open` of an outside service (not of an alert sink itself)      |

Shadow positions alert nothing. `ALERT_EVENTS` enables events one by one. Delivery never blocks the caller:
`emit` hands the alert to the trio runtime; each sink coalesces what arrives within `ALERT_COALESCE_S` (and
while its rate budget, `ALERT_MAX_PER_MINUTE`, holds it back) into ONE message — a storm is one message — and
sends it through a `Provider` (retries honouring Retry-After, a breaker). Every text passes the log redactor
first; the bot token and the webhook URL are secrets and never appear in a log line.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable
from urllib.parse import urlsplit

import structlog
import trio

from adapters.http import Policy, Provider, ProviderError, ResilientClient
from walltrack.settings import ALERT_EVENTS

log = structlog.get_logger("alerts")

EVENTS = ALERT_EVENTS  # Freqtrade's taxonomy (the settings validate ALERT_EVENTS against it)
SINK_PROVIDERS = ("telegram", "alert_webhook")
TELEGRAM_MAX_CHARS = 4096
DETAILED = 10  # alerts shown line by line in a coalesced message; the rest are counted


@dataclass(frozen=True)
class Alert:
    event: str
    summary: str  # one line, for people
    fields: dict[str, Any] = field(default_factory=dict)  # the ids, for machines
    at: float = field(default_factory=time.time)


def _short(value: Any) -> str:
    text = str(value)
    return f"{text[:4]}…{text[-4:]}" if len(text) > 12 else text


def from_log(e: dict[str, Any]) -> Alert | None:
    """The alert a log line stands for, or None."""
    name = e.get("event")
    if name == "signal":
        if e.get("decision") == "taken" and e.get("side") == "buy" and e.get("position_id"):
            return Alert("entry", f"entry: copying {_short(e['wallet'])}'s buy of {_short(e['token_mint'])} "
                                  f"(position #{e['position_id']})", _ids(e, "wallet", "token_mint", "signature", "position_id"))
        return None
    if name in ("position_event", "position_closed") and e.get("mode") == "shadow":
        return None
    if name == "position_event":
        return _position_alert(e)
    if name == "position_closed":
        if e.get("realized_pnl_quote") is None:
            return None  # an entry that never filled: nothing was sold
        return Alert("exit_fill", f"closed: position #{e['position_id']} ({e.get('reason')}), realized "
                                  f"{e['realized_pnl_quote']} raw {_short(e.get('quote_mint'))}",
                     _ids(e, "position_id", "wallet", "reason", "realized_pnl_quote", "quote_mint", "mode"))
    if name == "breaker_tripped":
        return Alert("breaker_tripped", f"breaker tripped: {e.get('breaker')} — {e.get('reason')}",
                     _ids(e, "breaker", "reason", "until", "scope"))
    if name == "supervisor_escalated":
        return Alert("supervisor_escalated", f"supervisor gave up on {e.get('child')} after {e.get('restarts')} restarts: "
                                             f"no new entries until `walltrack breakers reset {e.get('breaker')}`",
                     _ids(e, "child", "restarts", "error", "breaker"))
    if name == "webhook_stalled":
        return Alert("webhook_stalled", f"webhook stalled: no delivery for {e.get('silent_s')} s while "
                                        f"{e.get('wallets')} watched wallet(s) traded; {e.get('missing')} transaction(s) "
                                        "to backfill", _ids(e, "silent_s", "wallets", "missing"))
    if name == "breaker_open" and e.get("provider") not in SINK_PROVIDERS:
        return Alert("provider_down", f"provider down: {e.get('provider')} ({e.get('error')}); retried after "
                                      f"{e.get('cooldown_s')} s", _ids(e, "provider", "error", "failures"))
    return None


def _position_alert(e: dict[str, Any]) -> Alert | None:
    kind, pid = e.get("journal_event"), e.get("position_id")
    ids = _ids(e, "position_id", "wallet", "token_mint", "mode", "reason")
    if kind == "entry_filled":
        return Alert("entry_fill", f"entry filled: position #{pid} in {_short(e.get('token_mint'))}", ids)
    if kind == "exit_ordered":
        return Alert("exit", f"exit: position #{pid} sells ({e.get('reason')})", ids)
    if kind == "partial_exit":
        return Alert("exit_fill", f"partial exit filled: position #{pid} ({e.get('reason')})", ids)
    if kind == "exit_failed":
        return Alert("exit_failed", f"exit failed: position #{pid} ({e.get('error') or e.get('reason')}); retrying",
                     {**ids, "error": e.get("error")})
    return None


def _ids(e: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: e[k] for k in keys if e.get(k) is not None}


def render(batch: list[Alert], limit: int = TELEGRAM_MAX_CHARS) -> str:
    """One message for a batch: a single alert as its line, a storm as counts then the first lines."""
    if len(batch) == 1:
        return f"WallTrack {batch[0].event}: {batch[0].summary}"[:limit]
    counts = ", ".join(f"{n}× {ev}" for ev, n in Counter(a.event for a in batch).most_common())
    lines = [f"WallTrack: {len(batch)} alerts ({counts})"]
    lines += [f"• {a.summary}" for a in batch[:DETAILED]]
    if len(batch) > DETAILED:
        lines.append(f"… and {len(batch) - DETAILED} more")
    text = "\n".join(lines)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def enabled_events(spec: str) -> frozenset[str]:
    return frozenset(p.strip() for p in spec.split(",") if p.strip())


# -- sinks ----------------------------------------------------------------------------------------------------
class Sink:
    """One destination: a coalescing loop in front of a `ResilientClient`."""

    name = "sink"

    def __init__(self, client: ResilientClient, coalesce_s: float, redact: Callable[[str], str]) -> None:
        self.client, self.coalesce_s, self.redact = client, coalesce_s, redact
        self.send, self.receive = trio.open_memory_channel[Alert](math.inf)
        self.sent = self.failed = 0

    async def run(self, on_result: Callable[[str, str], None]) -> None:
        while True:
            batch = [await self.receive.receive()]
            with trio.move_on_after(self.coalesce_s):
                while True:
                    batch.append(await self.receive.receive())
            while True:  # and whatever is already queued (a storm larger than the window)
                try:
                    batch.append(self.receive.receive_nowait())
                except trio.WouldBlock:
                    break
            await self._deliver(batch, on_result)

    async def _deliver(self, batch: list[Alert], on_result: Callable[[str, str], None]) -> None:
        try:
            with trio.fail_after(120):
                await self.post(batch)
        except (ProviderError, trio.TooSlowError) as exc:
            self.failed += 1
            on_result(self.name, "failed")
            log.warning("alert_failed", sink=self.name, alerts=len(batch), error=self.redact(str(exc)))
            return
        self.sent += 1
        on_result(self.name, "sent")
        log.info("alert_sent", sink=self.name, alerts=len(batch), events=sorted({a.event for a in batch}))

    async def post(self, batch: list[Alert]) -> None:
        raise NotImplementedError


class TelegramSink(Sink):
    name = "telegram"

    def __init__(self, api_url: str, token: str, chat_id: str, coalesce_s: float, max_per_minute: int,
                 redact: Callable[[str], str]) -> None:
        super().__init__(ResilientClient(Provider("telegram", _policy(max_per_minute)), api_url), coalesce_s, redact)
        self._path, self._chat = f"/bot{token}/sendMessage", chat_id

    async def post(self, batch: list[Alert]) -> None:
        text = self.redact(render(batch))
        await self.client.post(self._path, json={"chat_id": self._chat, "text": text, "disable_web_page_preview": True},
                               parse=_telegram_ok)


class WebhookSink(Sink):
    """A JSON POST: `{"source", "text", "count", "events": [{"type", "at", "summary", ...ids}]}`."""

    name = "alert_webhook"

    def __init__(self, url: str, coalesce_s: float, max_per_minute: int, redact: Callable[[str], str]) -> None:
        parts = urlsplit(url)
        client = ResilientClient(Provider("alert_webhook", _policy(max_per_minute)), f"{parts.scheme}://{parts.netloc}")
        super().__init__(client, coalesce_s, redact)
        self._path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")

    async def post(self, batch: list[Alert]) -> None:
        events = [{"type": a.event, "at": datetime.fromtimestamp(a.at, timezone.utc).isoformat(),
                   "summary": self.redact(a.summary), **{k: _jsonable(v) for k, v in a.fields.items()}} for a in batch]
        await self.client.post(self._path, json={"source": "walltrack", "text": self.redact(render(batch)),
                                                 "count": len(batch), "events": events})


def _jsonable(value: Any) -> Any:
    return value if isinstance(value, (str, int, float, bool)) or value is None else str(value)


def _policy(max_per_minute: int) -> Policy:
    return Policy(rate_per_s=max_per_minute / 60, burst=1, attempts=4, backoff_initial_s=1.0, backoff_max_s=30.0,
                  attempt_timeout_s=10.0, cooldown_s=60.0)


def _telegram_ok(body: Any) -> Any:
    if not isinstance(body, dict) or body.get("ok") is not True:
        raise ValueError(f"telegram answered without ok: {str(body)[:200]}")
    return body["result"]


# -- the dispatcher -------------------------------------------------------------------------------------------
class Alerts:
    """Built by the composition root from the settings; `start(runtime)` runs the sinks on the trio runtime."""

    def __init__(self, settings: Any, redact: Callable[[str], str],
                 on_result: Callable[[str, str], None] = lambda sink, result: None) -> None:
        s = settings
        self.enabled = enabled_events(s.alert_events)
        self.on_result = on_result
        self.sinks: list[Sink] = []
        if s.telegram_bot_token is not None and s.telegram_chat_id:
            self.sinks.append(TelegramSink(s.telegram_api_url, s.telegram_bot_token.get_secret_value(), s.telegram_chat_id,
                                           s.alert_coalesce_s, s.alert_max_per_minute, redact))
        if s.alert_webhook_url is not None:
            self.sinks.append(WebhookSink(s.alert_webhook_url.get_secret_value(), s.alert_coalesce_s,
                                          s.alert_max_per_minute, redact))
        self._token: trio.lowlevel.TrioToken | None = None

    def on_log(self, event: dict[str, Any]) -> None:
        """The log tap: turn a line into an alert when it stands for an enabled event."""
        if self.sinks and event.get("event") in _LINES:
            alert = from_log(event)
            if alert is not None:
                self.emit(alert)

    def emit(self, alert: Alert) -> None:
        """Queue an alert for every sink, from any thread, at once (dropped when disabled or not running)."""
        token = self._token
        if token is None or alert.event not in self.enabled:
            return
        for sink in self.sinks:
            try:
                token.run_sync_soon(sink.send.send_nowait, alert)
            except trio.RunFinishedError:
                return

    async def run(self, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """The trio service: one coalescing loop per sink, until cancelled."""
        try:
            async with trio.open_nursery() as nursery:
                for sink in self.sinks:
                    nursery.start_soon(sink.run, self.on_result)
                self._token = trio.lowlevel.current_trio_token()
                task_status.started()
        finally:
            self._token = None
            with trio.CancelScope(shield=True):
                for sink in self.sinks:
                    await sink.client.aclose()

    def providers(self) -> list[Provider]:
        return [s.client.provider for s in self.sinks]


_LINES = frozenset({"signal", "position_event", "position_closed", "breaker_tripped", "supervisor_escalated",
                    "webhook_stalled", "breaker_open"})
