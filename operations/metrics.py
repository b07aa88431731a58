"""Prometheus metrics (`GET /metrics` on the gateway's port), through `prometheus_client`, in its own registry.

The actors hold no metrics code. Decisions are counted at the edges:

- **counters** from the canonical log lines (a structlog tap, `walltrack.logs.add_tap`): `signal` (taken or
  skipped, by reason), `webhook_received` / `webhook_rejected` / `webhook_not_stored`, `position_event` (fills),
  `position_closed`, `child_restart`, `supervisor_escalated`, `breaker_tripped`, `breaker_open` (a provider), `webhook_stalled`,
  `webhook_backfilled`; the decision latency from the gateway storing a delivery (`note_received`) to its
  `signal` line; every provider attempt through `adapters.http.ATTEMPT_HOOKS`;
- **gauges** read at scrape time by a custom collector: the database (inbox lag, open positions by mode, realized
  PnL, equity, price staleness), what the root publishes (`actors.supervisor.Published`: breakers, open tokens),
  the root's actor counts, each provider's `state()` and the webhook's silence.

Every name starts with `walltrack_`. `scrape()` runs on the trio runtime (the gateway's handler).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from decimal import Decimal
from typing import Any, Iterator

import asyncpg
import trio
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from actors.messages import GetStats
from actors.risk import to_lamports
from actors.trades import WSOL_MINT
from adapters import http
from walltrack.bridge import ask, trio_await
from walltrack.config import risk_config
from walltrack.logs import add_tap, remove_tap

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 120)
FILL_SIDES = {"entry_filled": "buy", "partial_exit": "sell", "exit_filled": "sell"}
BREAKER_STATES = ("closed", "half_open", "open")


def label(value: Any, parts: int = 2) -> str:
    """A bounded label value: a reason or breaker name without its per-token/per-wallet tail."""
    return ":".join(str(value).split(":")[:parts])[:64] if value is not None else "none"


class Metrics:
    def __init__(self, app: Any) -> None:
        self.app = app
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.webhook_requests = Counter("walltrack_webhook_requests", "Webhook POSTs answered, by result", ["result"], registry=r)
        self.webhook_transactions = Counter("walltrack_webhook_transactions", "Transactions in accepted deliveries and backfills",
                                            ["kind"], registry=r)
        self.signals = Counter("walltrack_signals", "Trades of watched wallets decided, by side, decision and reason",
                               ["side", "decision", "reason"], registry=r)
        self.latency = Histogram("walltrack_decision_latency_seconds", "From a delivery stored to its decision recorded",
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.fills = Counter("walltrack_fills", "Fills journaled, by side and mode", ["side", "mode"], registry=r)
        self.closes = Counter("walltrack_positions_closed", "Positions ended, by mode and reason", ["mode", "reason"], registry=r)
        self.restarts = Counter("walltrack_actor_restarts", "Actors restarted by their supervisor, by kind", ["kind"], registry=r)
        self.escalations = Counter("walltrack_supervisor_escalations", "Children given up on (breaker supervisor:escalated)",
                                   registry=r)
        self.trips = Counter("walltrack_breaker_trips", "Risk breakers tripped, by breaker", ["breaker"], registry=r)
        self.provider_requests = Counter("walltrack_provider_requests", "Attempts sent to outside services, by outcome",
                                         ["provider", "outcome"], registry=r)
        self.provider_latency = Histogram("walltrack_provider_request_seconds", "Latency of attempts to outside services",
                                          ["provider"], buckets=LATENCY_BUCKETS, registry=r)
        self.provider_trips = Counter("walltrack_provider_breaker_opens", "Provider circuit breakers opened", ["provider"],
                                      registry=r)
        self.stalls = Counter("walltrack_webhook_stalls", "Webhook stalls detected (no delivery while wallets traded)", registry=r)
        self.alerts = Counter("walltrack_alerts", "Alert messages, by sink and result", ["sink", "result"], registry=r)
        self.helius_syncs = Counter("walltrack_helius_syncs", "Helius webhook syncs, by result", ["result"], registry=r)
        self.tap_errors = Counter("walltrack_metrics_tap_errors", "Log lines the metrics tap could not read", registry=r)
        self._received: OrderedDict[str, float] = OrderedDict()
        self._scrape: dict[str, Any] = {}
        r.register(_StateCollector(self))
        self._handlers = {
            "signal": self._signal, "webhook_received": self._received_line, "webhook_rejected": self._rejected,
            "webhook_not_stored": lambda e: self.webhook_requests.labels("database_unavailable").inc(),
            "position_event": self._position_event, "position_closed": self._closed,
            "child_restart": lambda e: self.restarts.labels(label(e.get("child"), 1)).inc(),
            "supervisor_escalated": lambda e: self.escalations.inc(),
            "breaker_tripped": lambda e: self.trips.labels(label(e.get("breaker"), 1)).inc(),
            "breaker_open": lambda e: self.provider_trips.labels(str(e.get("provider"))).inc(),
            "webhook_stalled": lambda e: self.stalls.inc(),
            "webhook_backfilled": lambda e: self.webhook_transactions.labels("backfilled").inc(int(e.get("new", 0))),
        }

    # -- lifecycle -------------------------------------------------------------------------------------------
    def start(self) -> "Metrics":
        add_tap(self.on_log)
        http.ATTEMPT_HOOKS.append(self.on_attempt)
        return self

    def stop(self) -> None:
        remove_tap(self.on_log)
        if self.on_attempt in http.ATTEMPT_HOOKS:
            http.ATTEMPT_HOOKS.remove(self.on_attempt)

    # -- the edges -------------------------------------------------------------------------------------------
    def on_log(self, event: dict[str, Any]) -> None:
        handler = self._handlers.get(event.get("event"))  # type: ignore[arg-type]
        if handler is None:
            return
        try:
            handler(event)
        except Exception:  # noqa: BLE001 - a line of an unexpected shape: counted, never raised into the logger
            self.tap_errors.inc()

    def on_attempt(self, provider: str, outcome: str, seconds: float) -> None:
        self.provider_requests.labels(provider, outcome).inc()
        self.provider_latency.labels(provider).observe(seconds)

    def note_received(self, signatures: list[str]) -> None:
        """The gateway stored these (new) transactions now: the start of their decision latency."""
        now = time.monotonic()
        for sig in signatures:
            self._received[sig] = now
        while len(self._received) > 10_000:
            self._received.popitem(last=False)

    def _signal(self, e: dict[str, Any]) -> None:
        self.signals.labels(e.get("side", "none"), e.get("decision", "none"), label(e.get("reason"))).inc()
        at = self._received.get(e.get("signature", ""))
        if at is not None:
            self.latency.observe(time.monotonic() - at)

    def _received_line(self, e: dict[str, Any]) -> None:
        self.webhook_requests.labels("accepted").inc()
        self.webhook_transactions.labels("new").inc(int(e.get("new", 0)))
        self.webhook_transactions.labels("duplicate").inc(int(e.get("duplicates", 0)))

    def _rejected(self, e: dict[str, Any]) -> None:
        self.webhook_requests.labels(label(e.get("reason"), 1)).inc()

    def _position_event(self, e: dict[str, Any]) -> None:
        side = FILL_SIDES.get(e.get("journal_event", ""))
        if side is not None:
            self.fills.labels(side, e.get("mode", "none")).inc()

    def _closed(self, e: dict[str, Any]) -> None:
        self.closes.labels(e.get("mode", "none"), label(e.get("reason"), 1)).inc()

    # -- a scrape --------------------------------------------------------------------------------------------
    async def scrape(self) -> tuple[bytes, str]:
        """Read what the gauges show (the database bounded to 2 s, the root to 2 s), then render everything."""
        app = self.app
        state: dict[str, Any] = {"db": None, "actors": None}
        try:
            with trio.fail_after(2):
                state["db"] = await trio_await(app.store.submit(_db_snapshot))
        except Exception:  # noqa: BLE001 - the database is down: database_up 0, the rest still served
            pass
        try:
            state["actors"] = await ask(app.root, GetStats(), timeout=2)
        except Exception:  # noqa: BLE001
            pass
        state["providers"] = app.ops.provider_states() if getattr(app, "ops", None) else {}
        self._scrape = state
        return generate_latest(self.registry), CONTENT_TYPE_PLAIN_0_0_4


async def _db_snapshot(conn: asyncpg.Connection) -> dict[str, Any]:
    inbox = await conn.fetchrow(
        """SELECT count(*) AS pending, coalesce(extract(epoch FROM now() - min(received_at)), 0)::float8 AS oldest
             FROM webhook_inbox WHERE processed_at IS NULL""")
    open_ = await conn.fetch("SELECT mode, count(*) AS n FROM positions WHERE closed_at IS NULL GROUP BY mode")
    pnl = await conn.fetch(
        """SELECT mode, quote_mint, sum(realized_pnl_quote) AS pnl FROM positions
            WHERE closed_at IS NOT NULL AND realized_pnl_quote IS NOT NULL GROUP BY mode, quote_mint""")
    prices = await conn.fetchrow(
        """SELECT count(*) FILTER (WHERE tp.mint IS NULL OR tp.stale OR tp.usd IS NULL) AS stale,
                  coalesce(max(extract(epoch FROM now() - tp.priced_at)), 0)::float8 AS max_age, count(*) AS tokens
             FROM (SELECT DISTINCT token_mint FROM positions WHERE closed_at IS NULL) p
             LEFT JOIN token_prices tp ON tp.mint = p.token_mint""")
    sol_usd = await conn.fetchval("SELECT usd FROM token_prices WHERE mint = $1 AND NOT stale", WSOL_MINT)
    return {"inbox_pending": inbox["pending"], "inbox_oldest_s": inbox["oldest"],
            "open": {r["mode"]: r["n"] for r in open_},
            "pnl": [(r["mode"], r["quote_mint"], int(r["pnl"])) for r in pnl],
            "stale_prices": prices["stale"], "price_max_age_s": prices["max_age"], "priced_tokens": prices["tokens"],
            "sol_usd": Decimal(str(sol_usd)) if sol_usd is not None else None}


class _StateCollector(Collector):
    """The gauges, from what the last `scrape()` read (and what the App holds)."""

    def __init__(self, metrics: Metrics) -> None:
        self._m = metrics

    def describe(self) -> list:
        return []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        app, state = self._m.app, self._m._scrape
        yield _gauge("walltrack_up", "1 while the bot runs", 1)
        yield _gauge("walltrack_uptime_seconds", "Seconds since the bot started", time.time() - app.started_at)
        yield _gauge("walltrack_watched_wallets", "Wallets on the watchlist (active)", len(app.watched))
        yield _gauge("walltrack_webhook_silence_seconds", "Seconds since the last webhook delivery (bot clock)",
                     max(0.0, app.clock() - app.last_delivery_at))
        mode = GaugeMetricFamily("walltrack_trading_mode", "The global trading mode in force (1 for the mode)", labels=["mode"])
        for m in ("off", "paper", "live"):
            mode.add_metric([m], 1 if app.trading_mode == m else 0)
        yield mode
        yield from self._breakers(app)
        yield from self._database(app, state.get("db"))
        actors = GaugeMetricFamily("walltrack_actors", "Running actors by kind", labels=["kind"])
        for kind in ("wallets", "positions"):
            if state.get("actors"):
                actors.add_metric([kind.rstrip("s")], state["actors"][kind])
        yield actors
        yield from self._providers(state.get("providers") or {})

    def _breakers(self, app: Any) -> Iterator[GaugeMetricFamily]:
        published = getattr(app, "published", None)
        now = app.clock()
        tripped = [b for b in (published.breakers if published else ()) if b["until"] is None or b["until"] > now]
        g = GaugeMetricFamily("walltrack_breakers_tripped", "Risk breakers tripped now, by breaker", labels=["breaker"])
        counts: dict[str, int] = {}
        for b in tripped:
            counts[label(b["name"], 1)] = counts.get(label(b["name"], 1), 0) + 1
        for name in sorted({"max_drawdown", "daily_loss", "loss_streak", "supervisor", *counts}):
            g.add_metric([name], counts.get(name, 0))
        yield g
        yield _gauge("walltrack_entries_halted", "1 while a global breaker stops every new entry",
                     1 if any(b["scope"] == "global" for b in tripped) else 0)
        yield _gauge("walltrack_open_tokens", "Tokens with open positions (priced every PRICE_POLL_S)",
                     len(published.open_mints) if published else 0)

    def _database(self, app: Any, db: dict[str, Any] | None) -> Iterator[GaugeMetricFamily]:
        yield _gauge("walltrack_database_up", "1 when the last scrape could read the database", 1 if db else 0)
        if not db:
            return
        yield _gauge("walltrack_inbox_pending", "Stored deliveries not yet decided", db["inbox_pending"])
        yield _gauge("walltrack_inbox_lag_seconds", "Age of the oldest undecided delivery", db["inbox_oldest_s"])
        g = GaugeMetricFamily("walltrack_positions_open", "Positions not closed, by mode", labels=["mode"])
        for mode in sorted({"paper", "live", "shadow", *db["open"]}):
            g.add_metric([mode], db["open"].get(mode, 0))
        yield g
        cfg = risk_config(app.settings)
        pnl: dict[str, int] = {"paper": 0, "live": 0, "shadow": 0}
        for mode, quote_mint, raw in db["pnl"]:
            pnl[mode] = pnl.get(mode, 0) + to_lamports(quote_mint, raw, db["sol_usd"], cfg)
        g = GaugeMetricFamily("walltrack_realized_pnl_sol", "Realized PnL of closed positions, in SOL, by mode", labels=["mode"])
        for mode, lamports in sorted(pnl.items()):
            g.add_metric([mode], lamports / 1e9)
        yield g
        yield _gauge("walltrack_equity_sol", "Starting capital plus the realized PnL of paper and live positions, in SOL",
                     float(cfg.starting_capital_sol) + (pnl["paper"] + pnl["live"]) / 1e9)
        yield _gauge("walltrack_prices_stale", "Tokens of open positions whose price is stale or unknown", db["stale_prices"])
        yield _gauge("walltrack_price_age_seconds", "Age of the oldest price of a token with open positions",
                     db["price_max_age_s"])

    def _providers(self, providers: dict[str, dict[str, Any]]) -> Iterator[GaugeMetricFamily]:
        state = GaugeMetricFamily("walltrack_provider_breaker_state", "Each outside service's circuit breaker (1 for its state)",
                                  labels=["provider", "state"])
        fails = GaugeMetricFamily("walltrack_provider_consecutive_failures", "Consecutive failed attempts per service",
                                  labels=["provider"])
        for name, p in sorted(providers.items()):
            for s in BREAKER_STATES:
                state.add_metric([name, s], 1 if p["breaker"] == s else 0)
            fails.add_metric([name], p["consecutive_failures"])
        yield state
        yield fails


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)
