"""`walltrack demo`: the sandbox market, the bot watching its leaders in paper mode, on the embedded
database — everything offline. `--headless --minutes N` runs N simulated minutes and prints a summary
as the last line of stdout. `--live` trades for real on the sandbox's chain (walltrack/demo_live.py).

The demo always uses its own database (`walltrack_demo`, recreated each run) on the embedded server in
the data directory, never `DATABASE_URL`: simulated trades must not mix with real ones.
"""

from __future__ import annotations

import asyncio
import io
import json
import secrets
import signal
import threading
import time
from collections import Counter
from decimal import Decimal
from typing import Any

import asyncpg
import structlog
import trio
from pydantic import SecretStr

from actors.risk import to_lamports
from actors.supervisor import RISK
from sandbox import dexscreener, helius_api, jupiter, rpc, rugcheck, telegram
from sandbox.chain import Chain
from sandbox.faults import FaultBoard
from sandbox.helius import HeliusPoster
from sandbox.market import LAMPORTS, USDC_UNITS, WSOL_MINT, Market, SimClock
from sandbox.server import create_app, server_main
from storage import repo
from storage.db import DatabaseUnavailable, EmbeddedPostgres
from walltrack.app import App
from walltrack.bridge import Service, TrioThread
from walltrack.config import risk_config
from walltrack.demo_live import drain_swaps, fund, live_settings, live_summary
from walltrack.logs import Redactor, configure_logging
from walltrack.settings import Settings

log = structlog.get_logger("demo")

DEMO_DB = "walltrack_demo"
HELIUS_API_KEY = "sandbox-helius-api-key"  # the sandbox's Helius API answers this key only


class Sandbox:
    """The offline world: market, chain, the services' HTTP server and the Helius poster, on one clock."""

    def __init__(self, seed: int, speed: float, start: float | None = None) -> None:
        self.seed, self.speed = seed, speed
        self.market = Market(seed) if start is None else Market(seed, start=start)
        self.clock = SimClock(self.market.start, speed)
        self.chain = Chain(self.market)
        self.faults = FaultBoard()
        self.symbols = {t.mint: t.symbol for t in self.market.tokens.values()}
        self.webhooks = helius_api.WebhookRegistry()  # Helius' webhook API, as the bot's `helius sync` left it
        self.alerts = telegram.Recorder()  # what the fake Telegram and the generic webhook receiver were sent
        app = create_app({
            "jupiter": jupiter.blueprint(self.market, self.faults["jupiter"], chain=self.chain),  # /swap builds on this chain
            "dexscreener": dexscreener.blueprint(self.market, self.faults["dexscreener"]),
            "rugcheck": rugcheck.blueprint(self.market, self.faults["rugcheck"]),
            "rpc": rpc.blueprint(self.chain, self.faults["rpc"]),
            "helius": helius_api.blueprint(self.chain, self.webhooks, HELIUS_API_KEY, self.faults["helius_api"],
                                           seed=seed, symbols=self.symbols),
            "telegram": telegram.telegram_blueprint(self.alerts, self.faults["telegram"]),
            "hooks": telegram.hooks_blueprint(self.alerts, self.faults["hooks"]),
        })
        self.runtime = TrioThread(name="sandbox").start()
        self.port: int = self.runtime.start_service(server_main(app)).value
        self.poster: HeliusPoster | None = None
        self._services: list[Service] = []

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.port}/{service}"

    def start_market(self, webhook_url: str | list[str], secret: str) -> None:
        self.clock.restart()  # the market's time starts now, not when the bot began to start
        self.poster = HeliusPoster(webhook_url, secret, retry_interval_s=60 / self.speed, duplicate_rate=0.05,
                                   seed=self.seed, faults=self.faults["helius"], symbols=self.symbols)
        self._services.append(self.runtime.start_service(self.poster.run))
        self._services.append(self.runtime.start_service(self._drive))

    async def _drive(self, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        assert self.poster is not None
        while True:
            trades = self.market.step_to(self.clock())
            for t in trades:
                self.chain.apply_trade(t)
            self.chain.sync()
            if trades:
                self.poster.submit(trades)
            await trio.sleep(0.02)

    def stop_market(self, settle_s: float = 0.0) -> None:
        """Stop the market, then (up to `settle_s`) let the deliveries already planned settle before the
        poster stops: a POST cut off in flight may still be stored by the gateway after its caller has gone."""
        if not self._services:
            return
        poster, driver = self._services
        driver.stop()
        deadline = time.monotonic() + settle_s
        while self.poster is not None and self.poster.stats().pending and time.monotonic() < deadline:
            time.sleep(0.05)
        poster.stop()
        self._services.clear()

    def stop(self) -> None:
        self.stop_market()
        self.runtime.stop()


def _fresh_database(pg: EmbeddedPostgres) -> str:
    async def create() -> None:
        conn = await asyncpg.connect(pg.url)
        try:
            await conn.execute(f"DROP DATABASE IF EXISTS {DEMO_DB} WITH (FORCE)")
            await conn.execute(f"CREATE DATABASE {DEMO_DB}")
        finally:
            await conn.close()

    asyncio.run(create())
    return pg.url.replace("/postgres?", f"/{DEMO_DB}?", 1)


def bot_settings(settings: Settings, sb: Sandbox, db_url: str, secret: str, headless: bool,
                 live: dict[str, Any] | None = None) -> Settings:
    return settings.model_copy(update={
        "database_url": SecretStr(db_url),
        "helius_webhook_secret": SecretStr(secret),
        "trading_mode": "paper",
        "jupiter_base_url": sb.url("jupiter"),
        "jupiter_tier": "pro",
        "dexscreener_base_url": sb.url("dexscreener"),
        "rugcheck_base_url": sb.url("rugcheck"),
        "solana_rpc_url": sb.url("rpc"),
        "price_poll_s": max(0.25, 10 / sb.speed),
        # operations against the sandbox: Helius' API (stall backfill), the fake Telegram (alerts)
        "helius_api_url": sb.url("helius"),
        "helius_api_key": SecretStr(HELIUS_API_KEY),
        "telegram_api_url": sb.url("telegram"),
        "telegram_bot_token": SecretStr(sb.alerts.token),
        "telegram_chat_id": "demo",
        "webhook_stall_poll_s": max(2.0, 60 / sb.speed),
        "gateway_port": 0 if headless else settings.gateway_port,
        # the demo's time-scale presets, unless the operator set the variable (environment or .env)
        **{k: v for k, v in {**DEMO_EXITS, **DEMO_RISK}.items() if k not in settings.model_fields_set},
        **(live or {}),
    })


# Breakers on the demo's time scale: a run of losses stops entries for ten minutes (so a two-hour demo shows a
# trip, the entries it blocks and its reset by time, and still trades enough for every kind of exit).
# See BREAKER_* in .env.example.
DEMO_RISK: dict[str, Any] = {
    "breaker_loss_streak": 5,
    "breaker_loss_streak_window_minutes": 120,
    "breaker_loss_streak_stop_minutes": 10,
    "breaker_stoploss_cooldown_minutes": 15,
    "breaker_wallet_pause_hours": 0.25,
}


# The sandbox's leaders hold for minutes, not days: the demo's exits are scaled to that (see EXIT_* in .env.example).
# The trailing stop arms at the first take-profit and the second is far above it, so a climb that retraces
# ends on the trailing stop (in profit) and only a clean run to +7 % ends on the ladder.
DEMO_EXITS: dict[str, Any] = {
    "exit_stop_loss_pct": Decimal("6"),
    "exit_take_profit": "2.5:0.5,7:0.5",
    "exit_trailing_activation_pct": Decimal("2.5"),
    "exit_trailing_distance_pct": Decimal("1"),
    "exit_trailing_step_pct": Decimal("0.5"),
}


def summary(app: App, sb: Sandbox, risk_realized: int | None = None) -> dict[str, Any]:
    assert app.store is not None

    async def q(conn: asyncpg.Connection) -> dict[str, Any]:
        sig = await conn.fetch("SELECT decision, reason FROM signals")
        pos = await conn.fetch("SELECT mode, status, exit_reason, quote_mint, realized_pnl_quote FROM positions")
        breakers = await conn.fetch("SELECT name, kind, by, reason FROM breaker_events ORDER BY id")
        return {"signals": sig, "positions": pos, "breakers": breakers,
                "inbox": await conn.fetchval("SELECT count(*) FROM webhook_inbox"),
                "pending": [r["signature"] for r in await conn.fetch(
                    "SELECT signature FROM webhook_inbox WHERE processed_at IS NULL ORDER BY id")]}

    d = app.store.run(q)
    skipped = [r["reason"] for r in d["signals"] if r["decision"] == "skipped"]
    real = [p for p in d["positions"] if p["mode"] != "shadow"]
    shadow = [p for p in d["positions"] if p["mode"] == "shadow"]
    closed = [p for p in real if p["status"] == "closed"]

    def pnl_sol(rows: list) -> float:
        total = 0.0
        for p in rows:
            raw = float(p["realized_pnl_quote"] or 0)
            total += raw / LAMPORTS if p["quote_mint"] == WSOL_MINT else raw / USDC_UNITS / sb.market.sol_usd
        return round(total, 9)

    shadow_closed = [p for p in shadow if p["status"] == "closed"]
    equity = paper_equity(app, risk_realized)
    stats = sb.poster.stats() if sb.poster is not None else None
    return {
        "signals": len(d["signals"]),
        "taken": sum(1 for r in d["signals"] if r["decision"] == "taken"),
        "skipped": len(skipped),
        "skip_reasons": dict(Counter(skipped).most_common()),
        "positions_opened": len(real),
        "positions_closed": len(closed),
        "exit_reasons": dict(Counter(p["exit_reason"] for p in closed).most_common()),
        "realized_pnl_sol": pnl_sol(closed),
        "open_positions": len(real) - len(closed),
        "shadow": {"opened": len(shadow), "closed": len(shadow_closed), "realized_pnl_sol": pnl_sol(shadow_closed)},
        "deliveries": {"transactions_stored": d["inbox"], "unprocessed": len(d["pending"]),
                       "unprocessed_signatures": d["pending"][:5],
                       **(stats.as_dict() if stats is not None else {})},
        "breakers": {"tripped": dict(Counter(b["name"].split(":")[0] for b in d["breakers"] if b["kind"] == "tripped")),
                     "reset": dict(Counter(f"{b['name'].split(':')[0]}:{b['by']}" for b in d["breakers"] if b["kind"] == "reset")),
                     "blocked_entries": sum(1 for r in skipped if r.startswith("breaker:"))},
        "paper_equity": equity,
        "alerts": {"telegram_messages": len(sb.alerts.messages)},
        "simulated_minutes": round((sb.clock() - sb.market.start) / 60, 1),
        "seed": sb.seed,
        "speed": sb.speed,
    }


def paper_equity(app: App, realized: int | None = None) -> dict[str, Any]:
    """The risk actor's equity (starting capital + the realized PnL it tallied from the closes it was told of)
    beside the same figure rebuilt from the fills table: the quote the routes gave, less fees and slippage.
    `realized`: the risk actor's tally when it runs elsewhere (a cluster's risk owner); else looked up in this process."""
    assert app.store is not None and app.settings is not None
    cfg = risk_config(app.settings)
    if realized is None and app.actors is not None:
        realized = app.actors.lookup(RISK).ask("state", timeout=10).realized

    async def q(conn: asyncpg.Connection) -> list[asyncpg.Record]:
        return await conn.fetch(
            """SELECT p.quote_mint,
                      sum(CASE WHEN f.side = 'sell' THEN f.quoted_out ELSE f.fee_quote - f.quote_amount END) AS gross,
                      sum(f.fee_quote + CASE WHEN f.side = 'sell' THEN f.slippage_quote ELSE 0 END) AS costs
                 FROM positions p JOIN fills f ON f.position_id = p.id
                WHERE p.mode <> 'shadow' AND p.status = 'closed' GROUP BY p.id""")

    rows = app.store.run(q)  # paper and live alike (a live fill's quoted_out, fee and slippage are the chain's)
    gross = costs = from_fills = 0
    for r in rows:
        g, c = int(r["gross"]), int(r["costs"])
        gross += to_lamports(r["quote_mint"], g, None, cfg)
        costs += to_lamports(r["quote_mint"], c, None, cfg)
        from_fills += to_lamports(r["quote_mint"], g - c, None, cfg)  # what each close told the risk actor
    capital = cfg.lamports(cfg.starting_capital_sol)
    return {"starting_capital_lamports": capital, "equity_lamports": capital + realized if realized is not None else None,
            "from_fills_lamports": capital + from_fills, "gross_pnl_lamports": gross, "fees_lamports": costs}


def run_demo(settings: Settings, headless: bool, minutes: float | None, speed: float, seed: int,
             live: bool = False) -> int:
    redactor = _demo_logging(settings, headless)
    if not headless:
        from walltrack.panel import check_panel_access

        check_panel_access(settings)  # refused before anything starts
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())

    pg = EmbeddedPostgres(settings.walltrack_data_dir / "pg")
    sb: Sandbox | None = None
    app: App | None = None
    wall0 = time.monotonic()
    try:
        db_url = _fresh_database(pg)
        sb = Sandbox(seed, speed)
        secret = (settings.helius_webhook_secret.get_secret_value() if settings.helius_webhook_secret is not None
                  else secrets.token_urlsafe(24))
        keypair = fund(sb, redactor) if live else None
        extra = live_settings(settings, keypair) if keypair is not None else None
        app = App(bot_settings(settings, sb, db_url, secret, headless, extra), redactor, clock=sb.clock, embedded=pg)
        start_lamports = sb.chain.account(keypair.pubkey()).lamports if keypair is not None else 0
        app.start()  # assigned first: a start that fails half-way is still stopped below
        _watch_leaders(app, sb)
        sb.start_market(f"http://127.0.0.1:{app.gateway_port}/webhooks/helius", secret)
        log.info("demo_started", sandbox=sb.url(""), gateway_port=app.gateway_port, seed=seed, speed=speed,
                 leaders=len(sb.market.leaders), tokens=len(sb.market.tokens), live=live,
                 wallet=str(keypair.pubkey()) if keypair is not None else None)
        end = sb.market.start + (minutes * 60 if minutes is not None else float("inf"))
        if not headless:
            print(f"WallTrack demo: panel http://{settings.panel_host}:{settings.panel_port}/, webhook gateway "
                  f"http://127.0.0.1:{app.gateway_port} (GET /health, /metrics), sandbox services {sb.url('')}; Ctrl-C to stop",
                  flush=True)
            from walltrack.panel import serve_panel

            clock = sb.clock
            serve_panel(app, lambda: "signal" if stop.is_set() else ("demo finished" if clock() >= end else None))
        while not stop.is_set() and sb.clock() < end:
            stop.wait(0.1)
        result = _finish(app, sb, interrupted=stop.is_set(), keypair=keypair, start_lamports=start_lamports)
        result["wall_seconds"] = round(time.monotonic() - wall0, 1)
    finally:
        if app is not None:
            app.stop()
        if sb is not None:
            sb.stop()
        pg.close()
    print(json.dumps(result), flush=True)
    return 0


def _demo_logging(settings: Settings, headless: bool) -> Redactor:
    redactor = Redactor(settings.secrets())
    log_dir = settings.walltrack_data_dir / "logs"
    configure_logging(redactor, settings.log_level, log_dir, settings.log_max_bytes, settings.log_backups,
                      stream=io.StringIO() if headless else None)  # headless: stdout is for the summary
    return redactor


def _watch_leaders(app: App, sb: Sandbox) -> None:
    """The sandbox's leaders on the watchlist, and heard by the running bot (NOTIFY) before the market starts."""
    assert app.store is not None
    for leader in sb.market.leaders:
        app.store.run(lambda c, a=leader.address, lbl=leader.label: repo.add_wallet(c, a, lbl))
    deadline = time.monotonic() + 30
    while len(app.watched) < len(sb.market.leaders) and time.monotonic() < deadline:
        time.sleep(0.05)


def _finish(app: App, sb: Sandbox, *, interrupted: bool, keypair: Any, start_lamports: int) -> dict[str, Any]:
    """The market stopped, the bot settled, the summary. Ctrl-C (`interrupted`): within seconds, whatever state the
    database is in. Live: the chain's blocks go on (wall time), so the last swaps land or expire first."""
    sb.stop_market(settle_s=2 if interrupted else 30)
    result = _settled_summary(app, sb, timeout=3 if interrupted else 30)
    if keypair is not None and "error" not in result:
        drain_swaps(app, timeout=10 if interrupted else 120)
        result = _settled_summary(app, sb, timeout=3 if interrupted else 30)
        result["live"] = live_summary(app, str(keypair.pubkey()), start_lamports)
    return result


def _settled_summary(app: App, sb: Sandbox, timeout: float) -> dict[str, Any]:
    """The summary once every stored delivery has been processed (or the timeout passed); with the database
    unreachable, one line that says so instead."""
    try:
        _drain(app, timeout)
        return summary(app, sb)
    except (DatabaseUnavailable, TimeoutError) as exc:
        log.error("demo_summary_unavailable", error=repr(exc))
        return {"error": f"no summary: the database is unreachable ({exc})", "seed": sb.seed, "speed": sb.speed}


def _drain(app: App, timeout: float) -> None:
    """Wait until every stored delivery has been processed by the actors (or the timeout passes)."""
    assert app.store is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pending = app.store.run(lambda c: c.fetchval("SELECT count(*) FROM webhook_inbox WHERE processed_at IS NULL"),
                                timeout=max(0.5, deadline - time.monotonic()))
        if pending == 0:
            return
        time.sleep(0.1)
    log.warning("demo_drain_timeout", pending=pending)
