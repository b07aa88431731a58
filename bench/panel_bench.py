"""Panel benchmark: page load times with 200 open positions and 5,000 signals, and the panel's
responsiveness while the webhook gateway is under load. Prints its numbers; asserts nothing.

    uv run python bench/panel_bench.py [--rate 100] [--seconds 20] [--runs 5]

It starts `walltrack demo` (sandbox, embedded PostgreSQL, bot, panel) in a subprocess on free ports with a
slow market (so the numbers are the panel's, not the market's), seeds its database, then drives Debian's
Chromium with Playwright. A page's load time runs from navigation to its data on screen (the first refresh
of its projections). Under load, webhook bodies (three real Helius transactions of a watched wallet, with
fresh signatures) are posted at `--rate` per second while the pages are loaded again and a search on the
Signals page is timed from keystroke to filtered result.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
import time
from pathlib import Path
from typing import Any

import asyncpg
import base58
import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from actors.ports import ExitPlan  # noqa: E402
from actors.trades import WSOL_MINT  # noqa: E402

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
SECRET = "bench-webhook-secret-0123456789"
PUMP_WALLET = "9JGuVmjXTeMea6VY6fpsu8783YeJME8bewyy9qv9UBxh"
BODY = json.loads((ROOT / "tests" / "fixtures" / "helius_enhanced_pump_amm_swaps_trimmed.json").read_text())
OPEN_POSITIONS, SIGNALS = 200, 5000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def b58(n: int, rng: random.Random) -> str:
    return base58.b58encode(bytes(rng.getrandbits(8) for _ in range(n))).decode()


async def seed(url: str) -> int:
    """200 open paper positions (with their journals and prices) and 5,000 signals; returns one position id."""
    rng = random.Random(1)
    conn = await asyncpg.connect(url)
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    try:
        wallets = [r["address"] for r in await conn.fetch("SELECT address FROM wallets")]
        safety = await conn.fetchval("SELECT safety FROM signals WHERE safety IS NOT NULL LIMIT 1")
        mints = [b58(32, rng) for _ in range(400)]
        rows = []
        for i in range(SIGNALS):
            buy = i < OPEN_POSITIONS or rng.random() < 0.6
            decision = "taken" if i < OPEN_POSITIONS or rng.random() < 0.4 else "skipped"
            reason = ("copy_buy" if buy else "mirror_sell") if decision == "taken" else rng.choice(
                ["safety:liquidity", "safety:freeze_authority", "safety:top_holders", "max_buys_per_token", "no_open_position"])
            rows.append((b58(64, rng), rng.choice(wallets), "buy" if buy else "sell", mints[i % len(mints)],
                         rng.randrange(10**9, 10**13), 6, WSOL_MINT, rng.randrange(10**7, 5 * 10**9), "PUMP_AMM",
                         decision, reason, safety if buy else None))
        ids = await conn.fetch(
            """INSERT INTO signals (signature, wallet, side, token_mint, token_amount, token_decimals, quote_mint,
                                    quote_amount, source, decision, reason, safety)
               SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::numeric[], $6::int[], $7::text[],
                                    $8::numeric[], $9::text[], $10::text[], $11::text[], $12::jsonb[]) RETURNING id""",
            *[list(col) for col in zip(*rows)])
        plan = ExitPlan().as_json()
        first = None
        for n, rec in enumerate(ids[:OPEN_POSITIONS]):
            sig = rows[n]
            tokens, spent = rng.randrange(10**9, 10**12), 100_000_000
            pid = await conn.fetchval(
                """INSERT INTO positions (signal_id, wallet, token_mint, token_decimals, quote_mint, mode, status,
                                          entry_quote_amount, entry_token_amount, token_amount_open)
                   VALUES ($1, $2, $3, 6, $4, 'paper', 'open', $5, $6, $6) RETURNING id""",
                rec["id"], sig[1], sig[3], WSOL_MINT, spent, tokens)
            first = first or pid
            now = time.time()
            await conn.executemany(
                "INSERT INTO position_events (position_id, seq, kind, data) VALUES ($1, $2, $3, $4)",
                [(pid, 1, "opened", {"wallet": sig[1], "token_mint": sig[3], "token_decimals": 6, "quote_mint": WSOL_MINT,
                                     "mode": "paper", "entry": "pending", "entry_quote_amount": str(spent),
                                     "entry_token_amount": "0", "signal_id": rec["id"], "signature": sig[0]}),
                 (pid, 2, "entry_filled", {"at": now, "plan": plan, "fill": {
                     "side": "buy", "token_amount": str(tokens), "quote_amount": str(spent), "quoted_out": str(tokens),
                     "fee_quote": "15000", "slippage_quote": "0", "price_impact": "0.001", "route": "bench", "at": now}})])
        await conn.executemany(
            "INSERT INTO token_prices (mint, usd, source, stale) VALUES ($1, $2, 'bench', false) ON CONFLICT (mint) DO NOTHING",
            [(m, rng.uniform(1e-6, 1e-3)) for m in mints])
        await conn.execute("INSERT INTO token_prices (mint, usd, source) VALUES ($1, 150, 'bench') ON CONFLICT (mint) DO NOTHING",
                           WSOL_MINT)
        await conn.execute("INSERT INTO wallets (address, label) VALUES ($1, 'bench pump trader') ON CONFLICT DO NOTHING",
                           PUMP_WALLET)
        await conn.execute("SELECT pg_notify('walltrack_watchlist', $1)", PUMP_WALLET)
        return int(first)
    finally:
        await conn.close()


class Load(threading.Thread):
    """Posts webhook bodies at `rate` per second from a few worker threads; records latencies."""

    def __init__(self, url: str, rate: float, workers: int = 8) -> None:
        super().__init__(daemon=True)
        self.url, self.rate, self.workers = url, rate, workers
        self.stop = threading.Event()
        self.latencies: list[float] = []
        self.statuses: dict[int, int] = {}
        self._lock = threading.Lock()
        self._rng = random.Random(2)

    def body(self) -> bytes:
        with self._lock:
            txs = [{**tx, "signature": b58(64, self._rng)} for tx in BODY]
        return json.dumps(txs).encode()

    def worker(self, interval: float) -> None:
        with httpx.Client(timeout=10) as client:
            due = time.monotonic()
            while not self.stop.is_set():
                due += interval
                t0 = time.monotonic()
                try:
                    status = client.post(self.url, content=self.body(), headers={"Authorization": SECRET,
                                                                                  "Content-Type": "application/json"}).status_code
                except httpx.HTTPError:
                    status = 0
                with self._lock:
                    self.latencies.append(time.monotonic() - t0)
                    self.statuses[status] = self.statuses.get(status, 0) + 1
                self.stop.wait(max(0.0, due - time.monotonic()))

    def run(self) -> None:
        threads = [threading.Thread(target=self.worker, args=(self.workers / self.rate,), daemon=True)
                   for _ in range(self.workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()


def off_loop(coro: Any) -> Any:
    """asyncio.run on a worker thread (Playwright's sync API keeps a loop running on this one)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


def measure_pages(browser: Any, base: str, pid: int, runs: int, warm: bool = False) -> dict[str, list[float]]:
    from playwright.sync_api import expect

    checks = {
        "/": lambda p: expect(p.get_by_test_id("open-count")).to_have_text(re.compile(r"^\d{3,}$"), timeout=30_000),
        "/watchlist": lambda p: expect(p.locator("[data-testid=wallets] tbody tr").first).to_be_visible(timeout=30_000),
        "/signals": lambda p: expect(p.get_by_test_id("signal-count")).to_contain_text(" of ", timeout=30_000),
        f"/position/{pid}": lambda p: expect(p.locator("[data-testid=journal] tbody tr").nth(1)).to_be_visible(timeout=30_000),
        "/config": lambda p: expect(p.get_by_test_id("webhook-status")).to_contain_text("stored", timeout=30_000),
    }
    out: dict[str, list[float]] = {path: [] for path in checks}
    warm_context = browser.new_context(viewport={"width": 1400, "height": 1000}) if warm else None
    for _ in range(runs):
        for path, ready in checks.items():
            # cold: a fresh browser profile (nothing cached); warm: the operator's tab moving between pages
            context = warm_context or browser.new_context(viewport={"width": 1400, "height": 1000})
            page = context.new_page()
            t0 = time.monotonic()
            page.goto(base + path)
            ready(page)
            out[path].append(time.monotonic() - t0)
            page.close()
            if warm_context is None:
                context.close()
    if warm_context is not None:
        warm_context.close()
    return out


async def query_times(url: str, pid: int, runs: int) -> dict[str, float]:
    """The panel's own read queries, timed on one connection (server side of a page load), median ms."""
    from ui import queries

    conn = await asyncpg.connect(url)
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    fns = {"dashboard": queries.dashboard, "watchlist": queries.watchlist, "health": queries.health,
           "signals page": lambda c: queries.signals_page(c, "", None, 0, 50),
           "signals search": lambda c: queries.signals_page(c, "liquidity", None, 0, 50),
           "position detail": lambda c: queries.position_detail(c, pid)}
    out = {}
    try:
        for name, fn in fns.items():
            xs = []
            for _ in range(runs):
                t0 = time.perf_counter()
                await fn(conn)
                xs.append(time.perf_counter() - t0)
            out[name] = statistics.median(xs) * 1000
    finally:
        await conn.close()
    return out


def measure_search(browser: Any, base: str, runs: int) -> list[float]:
    """Keystroke to filtered result on the Signals page (one websocket round trip plus a query)."""
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.goto(base + "/signals")
    expect(page.get_by_test_id("signal-count")).to_contain_text(" of ", timeout=30_000)
    out = []
    for i in range(runs):
        term = ("safety:liquidity", "max_buys_per_token", "copy_buy")[i % 3]
        t0 = time.monotonic()
        page.get_by_test_id("signal-search").fill(term)
        expect(page.locator("[data-testid=signals] tbody tr").first).to_contain_text(term, timeout=30_000)
        expect(page.locator("[data-testid=signals] tbody tr").filter(has_not_text=term)).to_have_count(0, timeout=30_000)
        out.append(time.monotonic() - t0 - 0.3)  # minus the input's 300 ms debounce
    context.close()
    return out


def report(title: str, pages: dict[str, list[float]]) -> None:
    print(f"\n{title}")
    print(f"  {'page':<22}{'median s':>10}{'max s':>10}")
    for path, xs in pages.items():
        print(f"  {path:<22}{statistics.median(xs):>10.3f}{max(xs):>10.3f}")


def wait_for_panel(proc: subprocess.Popen, base: str, log_name: str) -> None:
    """Until the demo's panel answers (the demo exiting, or two minutes, end the bench)."""
    deadline = time.monotonic() + 120
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"demo exited with {proc.returncode}; see {log_name}")
        try:
            if httpx.get(base + "/", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit("panel did not start")
        time.sleep(0.2)


def print_results(args: argparse.Namespace, idle_queries: dict[str, float], busy_queries: dict[str, float],
                  pages: dict[str, dict[str, list[float]]], idle_search: list[float], busy_search: list[float],
                  load: "Load", elapsed: float) -> None:
    print("\nthe panel's read queries, server side (median ms): idle / under load")
    for name, ms in idle_queries.items():
        print(f"  {name:<22}{ms:>8.1f}{busy_queries[name]:>8.1f}")
    report(f"page load, idle, cold browser profile ({args.runs} runs each; target < 2 s)", pages["idle"])
    report("page load, idle, warm (same tab moving between pages)", pages["idle_warm"])
    report(f"page load under webhook load ({args.rate:g} bodies/s offered), cold profile", pages["busy"])
    report("page load under webhook load, warm", pages["busy_warm"])
    print("\nsignals search, keystroke to filtered table (s, debounce excluded):")
    print(f"  idle       median {statistics.median(idle_search):.3f}  max {max(idle_search):.3f}")
    print(f"  under load median {statistics.median(busy_search):.3f}  max {max(busy_search):.3f}")
    n = len(load.latencies)
    print(f"\nwebhook load: {n} bodies ({3 * n} transactions) in {elapsed:.1f} s = {n / elapsed:.1f} bodies/s; "
          f"statuses {load.statuses}; latency p50 {pct(load.latencies, .5) * 1000:.0f} ms, "
          f"p95 {pct(load.latencies, .95) * 1000:.0f} ms, max {max(load.latencies) * 1000:.0f} ms")
    for name, runs_ in (("idle cold", pages["idle"]), ("idle warm", pages["idle_warm"]), ("load cold", pages["busy"]),
                        ("load warm", pages["busy_warm"])):
        worst = max(max(xs) for xs in runs_.values())
        print(f"worst page load, {name}: {worst:.3f} s ({'within' if worst < 2 else 'OVER'} the 2 s target)")


def start_demo(data: Path, panel: int, gateway: int) -> tuple[subprocess.Popen, Any]:
    """`walltrack demo` at real speed in its own data directory, its output to demo.log beside it."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "PYTEST_CURRENT_TEST", "WALLTRACK_PANEL_PASSWORD")}
    env.update(WALLTRACK_DATA_DIR=str(data), HELIUS_WEBHOOK_SECRET=SECRET, LOG_LEVEL="WARNING",
               RISK_MAX_OPEN_POSITIONS="1000", RISK_MAX_TOTAL_EXPOSURE_SOL="1000")
    data.mkdir(parents=True)
    log = (data.parent / "demo.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "walltrack.cli", "demo", "--speed", "1", "--panel-port", str(panel),
                             "--gateway-port", str(gateway)], env=env, cwd=data.parent, stdout=log, stderr=subprocess.STDOUT)
    return proc, log


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=100, help="webhook bodies per second during the load phase")
    ap.add_argument("--seconds", type=float, default=20, help="length of the load phase")
    ap.add_argument("--runs", type=int, default=5, help="loads of each page per phase")
    args = ap.parse_args()

    data = Path(tempfile.mkdtemp(prefix="walltrack-bench-")) / "data"
    panel, gateway = free_port(), free_port()
    proc, log = start_demo(data, panel, gateway)
    base = f"http://127.0.0.1:{panel}"
    pg = None
    try:
        wait_for_panel(proc, base, log.name)
        from storage.db import EmbeddedPostgres

        pg = EmbeddedPostgres(data / "pg")
        url = pg.url.replace("/postgres?", "/walltrack_demo?", 1)
        t0 = time.monotonic()
        pid = asyncio.run(seed(url))
        print(f"seeded {OPEN_POSITIONS} open positions and {SIGNALS} signals in {time.monotonic() - t0:.1f} s")

        from playwright.sync_api import sync_playwright

        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS, headless=True)
            measure_pages(browser, base, pid, 1)  # warm-up (imports, caches), not reported
            idle_queries = off_loop(query_times(url, pid, args.runs))
            idle = measure_pages(browser, base, pid, args.runs)
            idle_warm = measure_pages(browser, base, pid, args.runs, warm=True)
            idle_search = measure_search(browser, base, args.runs)
            load = Load(f"http://127.0.0.1:{gateway}/webhooks/helius", args.rate)
            load.start()
            t_load = time.monotonic()
            busy = measure_pages(browser, base, pid, args.runs)
            busy_warm = measure_pages(browser, base, pid, args.runs, warm=True)
            busy_queries = off_loop(query_times(url, pid, args.runs))
            busy_search = measure_search(browser, base, args.runs)
            remaining = args.seconds - (time.monotonic() - t_load)
            if remaining > 0:
                time.sleep(remaining)
            load.stop.set()
            load.join(timeout=30)
            elapsed = time.monotonic() - t_load
            browser.close()

        print_results(args, idle_queries, busy_queries, {"idle": idle, "idle_warm": idle_warm, "busy": busy,
                                                         "busy_warm": busy_warm}, idle_search, busy_search, load, elapsed)
        return 0
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        if pg is not None:
            pg.close()


if __name__ == "__main__":
    sys.exit(main())
