"""The world the chaos suite breaks: `walltrack run` as a real process (embedded PostgreSQL in its data directory,
its postmaster a PID we can kill), pointed at an in-process sandbox (Jupiter, DexScreener, RugCheck, Solana RPC on
litesvm) whose market's leaders it watches, under webhook load from the sandbox's Helius poster — the watched
market's trades, duplicated and retried as Helius does, plus traffic for wallets nobody watches.

`invariants()` reads the bot's database and checks what must survive every fault: every acknowledged delivery
processed exactly once, no position opened twice, no cap exceeded, PnL equal to the sum of the fills.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import trio

from sandbox.helius import HeliusPoster
from sandbox.market import Market, SimClock
from tests.conftest import wait_until
from storage import repo
from walltrack.demo import Sandbox

SECRET = "chaos-webhook-secret-9d2c"
SPEED = 60.0  # simulated seconds per wall second: the six leaders trade every second or two
CLOCK_DIR = Path(__file__).resolve().parent / "clock"
CAPS = {"RISK_MAX_OPEN_POSITIONS": 4, "RISK_MAX_TOKEN_EXPOSURE_SOL": "0.2", "RISK_MAX_TOTAL_EXPOSURE_SOL": "0.35",
        "COPY_FIXED_SOL": "0.1"}
HEALTHY_WITHIN_S = 45.0  # the bound on "healthy again" after a fault


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Bot:
    """`walltrack run`, started and broken the way an operator's machine would."""

    data_dir: Path
    sb: Sandbox
    clock_file: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None
    starts: int = 0

    @property
    def log(self) -> Path:
        return self.data_dir.parent / "bot.out"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL",)}
        env.update({
            "WALLTRACK_DATA_DIR": str(self.data_dir), "HELIUS_WEBHOOK_SECRET": SECRET, "GATEWAY_PORT": str(self.port),
            "PANEL_PORT": str(free_port()), "JUPITER_BASE_URL": self.sb.url("jupiter"), "JUPITER_TIER": "pro",
            "DEXSCREENER_BASE_URL": self.sb.url("dexscreener"), "RUGCHECK_BASE_URL": self.sb.url("rugcheck"),
            "SOLANA_RPC_URL": self.sb.url("rpc"), "PRICE_POLL_S": "0.5", "HTTP_TIMEOUT_S": "1.5",
            "PROVIDER_COOLDOWN_S": "2", "SAFETY_SOURCE_TIMEOUT_S": "1.5", "SAFETY_MAX_POOL_AGE_HOURS": "100000",
            # the demo's exits, so positions close within the run (stops, ladders, trailing stops)
            "EXIT_STOP_LOSS_PCT": "6", "EXIT_TAKE_PROFIT": "2.5:0.5,7:0.5", "EXIT_TRAILING_ACTIVATION_PCT": "2.5",
            "EXIT_TRAILING_DISTANCE_PCT": "1", "EXIT_TRAILING_STEP_PCT": "0.5",
            "BREAKER_LOSS_STREAK": "0", "BREAKER_WALLET_LOSS_STREAK": "0", "BREAKER_DAILY_LOSS_SOL": "0",
            "BREAKER_MAX_DRAWDOWN_PCT": "0", "BREAKER_STOPLOSS_COOLDOWN_MINUTES": "0",
            "DATABASE_RECOVERY_WINDOW_S": "90", "INBOX_SWEEP_S": "20", "LOG_LEVEL": "INFO",
            "PYTHONPATH": str(CLOCK_DIR), "WALLTRACK_CHAOS_CLOCK_FILE": str(self.clock_file),
            **{k: str(v) for k, v in CAPS.items()},
        })
        return env

    def start(self) -> None:
        self.starts += 1
        self.proc = subprocess.Popen([sys.executable, "-m", "walltrack.cli", "run"], env=self.env(),
                                     cwd=self.data_dir.parent, stdout=self.log.open("a"), stderr=subprocess.STDOUT)
        wait_until(lambda: self.health()[0] == 200, timeout=90, interval=0.2)

    def health(self) -> tuple[int | None, dict[str, Any]]:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"walltrack run exited with {self.proc.returncode}: {self.log.read_text()[-3000:]}")
        try:
            r = httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=3)
            return r.status_code, r.json()
        except (httpx.HTTPError, ValueError):
            return None, {}

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=60)

    def postmaster(self) -> int:
        return int((self.data_dir / "pg" / "postmaster.pid").read_text().split()[0])

    def db_url(self) -> str:
        socket_dir = (self.data_dir / "pg" / "postmaster.pid").read_text().splitlines()[4]
        return f"postgresql://postgres@/postgres?host={socket_dir}"

    def query(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        async def go() -> list[asyncpg.Record]:
            conn = await asyncpg.connect(self.db_url(), timeout=10)
            try:
                await repo.init_connection(conn)
                return await conn.fetch(sql, *args)
            finally:
                await conn.close()

        return asyncio.run(go())

    def watch(self, wallets: list[tuple[str, str]]) -> None:
        async def go() -> None:
            conn = await asyncpg.connect(self.db_url(), timeout=10)
            try:
                for address, label in wallets:
                    await repo.add_wallet(conn, address, label)
            finally:
                await conn.close()

        asyncio.run(go())

    def healthy_again(self, since: float) -> float:
        """Seconds from `since` until /health answers 200 with the database connected and every wallet's actor up."""
        wallets = len(self.sb.market.leaders)
        wait_until(lambda: (h := self.health())[0] == 200 and h[1].get("database") == "connected"
                   and (h[1].get("actors") or {}).get("wallets") == wallets, timeout=HEALTHY_WITHIN_S + 30, interval=0.2)
        took = time.monotonic() - since
        assert took <= HEALTHY_WITHIN_S, f"healthy again only after {took:.1f} s"
        return took


class Load:
    """The watched market's trades delivered as Helius does (batched, sometimes twice, retried on any non-2xx for
    half a minute), and a second market's for wallets nobody watches. `hold()` keeps the watched market's trades
    back (for a burst sent out of order); `acknowledged()` is what the webhook promised to process."""

    def __init__(self, sb: Sandbox, url: str) -> None:
        self.sb, self.url = sb, url
        symbols = {t.mint: t.symbol for t in sb.market.tokens.values()}
        self.poster = HeliusPoster(url, SECRET, retry_interval_s=1.5, max_retries=20, duplicate_rate=0.1, seed=7,
                                   symbols=symbols)
        self.other = Market(1007, start=sb.market.start)
        self.other_clock = SimClock(self.other.start, SPEED)
        self.other_poster = HeliusPoster(url, SECRET, retry_interval_s=1.5, max_retries=20, duplicate_rate=0.1, seed=1007)
        self.held: list[Any] | None = None
        self.extra_acked: set[str] = set()
        self._services: list[Any] = []

    def start(self) -> None:
        self.sb.clock.restart()
        self.other_clock.restart()
        for main in (self.poster.run, self.other_poster.run, self._drive):
            self._services.append(self.sb.runtime.start_service(main))

    def stop(self) -> None:
        for service in reversed(self._services):
            service.stop()
        self._services.clear()

    async def _drive(self, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        sb = self.sb
        while True:
            trades = sb.market.step_to(sb.clock())
            for t in trades:
                sb.chain.apply_trade(t)
            sb.chain.sync()
            # the simulated chain runs ahead of the wall clock: Helius stamps block time, ours is when it happened
            stamped = [replace(t, timestamp=int(time.time())) for t in trades]
            if self.held is not None:
                self.held.extend(stamped)
            elif stamped:
                self.poster.submit(stamped)
            others = self.other.step_to(self.other_clock())
            if others:
                self.other_poster.submit([replace(t, timestamp=int(time.time())) for t in others])
            await trio.sleep(0.05)

    def hold(self) -> None:
        self.held = []

    def release(self) -> list[Any]:
        held, self.held = self.held or [], None
        return held

    def acknowledged(self) -> set[str]:
        return self.poster.acknowledged() | self.other_poster.acknowledged() | self.extra_acked

    def settled(self) -> bool:
        return self.poster.stats().pending == 0 and self.other_poster.stats().pending == 0

    def post(self, body: bytes) -> int | None:
        try:
            r = httpx.post(self.url, content=body, timeout=15,
                           headers={"Authorization": SECRET, "Content-Type": "application/json"})
            return r.status_code
        except httpx.HTTPError:
            return None


def invariants(bot: Bot, acked: set[str]) -> dict[str, Any]:
    """What must hold after every fault, read from the bot's database (after the acknowledged work has settled)."""

    def unprocessed() -> int:
        return bot.query("SELECT count(*) AS n FROM webhook_inbox WHERE signature = ANY($1) AND processed_at IS NULL",
                         list(acked))[0]["n"]

    wait_until(lambda: unprocessed() == 0, timeout=90, interval=0.25)
    inbox = bot.query("SELECT signature, wallets FROM webhook_inbox WHERE signature = ANY($1)", list(acked))
    stored = {r["signature"] for r in inbox}
    assert stored == acked, f"{len(acked - stored)} acknowledged deliveries were never stored"
    expected = {(r["signature"], w) for r in inbox for w in r["wallets"]}
    observed = {(r["signature"], r["wallet"]) for r in bot.query(
        "SELECT signature, wallet FROM observations WHERE signature = ANY($1)", list(acked))}
    assert expected <= observed, f"{len(expected - observed)} (delivery, wallet) pairs never decided"
    twice = bot.query("SELECT signature, wallet FROM signals GROUP BY 1, 2 HAVING count(*) > 1")
    assert not twice, f"signals recorded twice: {twice[:3]}"
    opened_twice = bot.query(
        """SELECT s.signature, s.wallet, count(p.id) AS n FROM signals s JOIN positions p ON p.signal_id = s.id
            GROUP BY 1, 2 HAVING count(p.id) > 1""")
    assert not opened_twice, f"positions opened twice: {opened_twice[:3]}"
    bought_twice = bot.query("SELECT position_id FROM fills WHERE side = 'buy' GROUP BY 1 HAVING count(*) > 1")
    assert not bought_twice, f"entries bought twice: {bought_twice[:3]}"
    peak = _peak_exposure(bot)
    assert peak["open"] <= CAPS["RISK_MAX_OPEN_POSITIONS"], peak
    assert peak["total"] <= Decimal(CAPS["RISK_MAX_TOTAL_EXPOSURE_SOL"]) * 10**9, peak
    assert peak["token"] <= Decimal(CAPS["RISK_MAX_TOKEN_EXPOSURE_SOL"]) * 10**9, peak
    wrong_pnl = bot.query(
        """SELECT p.id, p.realized_pnl_quote,
                  sum(CASE WHEN f.side = 'sell' THEN f.quote_amount ELSE -f.quote_amount END) AS fills
             FROM positions p JOIN fills f ON f.position_id = p.id WHERE p.status = 'closed'
            GROUP BY p.id HAVING p.realized_pnl_quote <> sum(CASE WHEN f.side = 'sell' THEN f.quote_amount
                                                                     ELSE -f.quote_amount END)""")
    assert not wrong_pnl, f"PnL differs from the sum of the fills: {wrong_pnl[:3]}"
    counts = bot.query(
        """SELECT (SELECT count(*) FROM signals) AS signals,
                  (SELECT count(*) FROM positions WHERE mode = 'paper') AS opened,
                  (SELECT count(*) FROM positions WHERE mode = 'paper' AND status = 'closed') AS closed,
                  (SELECT count(*) FROM observations WHERE outcome <> 'signal') AS ignored""")[0]
    return {"acked": len(acked), "decided": len(expected), **dict(counts), "peak_open": peak["open"]}


def _peak_exposure(bot: Bot) -> dict[str, Any]:
    """The most paper positions open at once (and their exposure, in total and on one token), from their times."""
    rows = bot.query(  # the size the risk actor reserved: the entry as it was decided (fees come on top when filled)
        """SELECT p.token_mint, (e.data->>'entry_quote_amount')::numeric AS amount, p.opened_at, p.closed_at
             FROM positions p JOIN position_events e ON e.position_id = p.id AND e.seq = 1 WHERE p.mode = 'paper'""")
    events = []
    for r in rows:
        amount = int(r["amount"])
        events.append((r["opened_at"], 1, r["token_mint"], amount))
        if r["closed_at"] is not None:
            events.append((r["closed_at"], 0, r["token_mint"], amount))
    events.sort(key=lambda e: (e[0], e[1]))  # closes first at the same instant
    n = total = 0
    token: dict[str, int] = {}
    peak = {"open": 0, "total": 0, "token": 0}
    for _, opening, mint, amount in events:
        sign = 1 if opening else -1
        n, total = n + sign, total + sign * amount
        token[mint] = token.get(mint, 0) + sign * amount
        peak = {"open": max(peak["open"], n), "total": max(peak["total"], total), "token": max(peak["token"], token[mint])}
    return peak

