"""The phases of bench/run.py, one per row of issue 11's table. Each adds its rows (and notes) to the context."""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import time
from datetime import datetime
from pathlib import Path

import asyncpg

from bench import fleet
from bench.harness import PY, ROOT, WATCHED, Bot, Ctx, load, pct, pg_cpu, traffic, write_bodies
from bench.report import Row


def _watched(rng: random.Random, n: int) -> list[str]:
    return [fleet.b58(32, rng) for _ in range(n)]


def _flood_bot(ctx: Ctx, wallets: list[str], bodies: Path) -> tuple[dict, int]:
    """Flood a fresh bot watching `wallets`; returns the load result and how many 200s are missing from the inbox."""
    url = ctx.database(lambda c: fleet.seed_wallets(c, wallets))
    bot = Bot(ctx, url).start()
    try:
        bot.health()
        bot.settled()
        got = load("flood", bot.port, bodies, seconds=ctx.seconds, connections=16)
    finally:
        bot.stop()
    sigs = [json.loads(line)["sig"] for line in bodies.read_text().splitlines()]
    acked = {sigs[i] for i, _, _, status in got["sent"] if status == 200}
    stored = {r["signature"] for r in ctx.sql(url, "SELECT signature FROM webhook_inbox")}
    return got, len(acked - stored)


def _flood_bare(ctx: Ctx, bodies: Path) -> dict:
    bare = subprocess.Popen([PY, str(ROOT / "bench" / "bare.py")], stdout=subprocess.PIPE, text=True)
    try:
        port = json.loads(bare.stdout.readline())["port"]  # type: ignore[union-attr]
        return load("flood", port, bodies, seconds=ctx.seconds / 2, connections=16)
    finally:
        bare.kill()
        bare.wait()


def ingest(ctx: Ctx) -> None:
    """Durable ingest, 16 connections: the bare endpoint, then the bot (200 only after the inbox commit), with bodies
    of watched wallets (decided while the next ones are acknowledged) and with bodies naming none (the ack path)."""
    rng = random.Random(11)
    wallets = _watched(rng, WATCHED)
    n = int(ctx.seconds * 2000)
    bodies = write_bodies(ctx.tmp / "ingest.jsonl", traffic(rng, wallets, ctx.sandbox.mints(), n))
    for label, watched in (("watched wallets' deliveries", wallets), ("deliveries naming no watched wallet", [])):
        before = _flood_bare(ctx, bodies)  # the baseline right before and right after: the machine is shared
        got, lost = _flood_bot(ctx, watched, bodies)
        after = _flood_bare(ctx, bodies)
        base = {"sent": before["sent"] + after["sent"], "seconds": before["seconds"] + after["seconds"]}
        rate_bare = sum(1 for s in base["sent"] if s[3] == 200) / base["seconds"]
        ok = [s[2] for s in got["sent"] if s[3] == 200]
        rate_bot, p99, ratio = len(ok) / got["seconds"], pct(ok, 99) * 1000, len(ok) / got["seconds"] / rate_bare
        errors = len(got["sent"]) - len(ok)
        ctx.rows.append(Row(
            f"durable ingest, 16 connections (200 after the inbox commit): {label}",
            f"{rate_bot:,.0f} req/s, p50 {pct(ok, 50) * 1000:.1f} ms, p99 {p99:.1f} ms, {lost} lost, {errors} non-200",
            f"bare endpoint (just before and after) {rate_bare:,.0f} req/s, p99 "
            f"{pct([s[2] for s in base['sent']], 99) * 1000:.1f} ms: "
            f"**{ratio:.0%}**", "≥ 90% of bare, p99 ≤ 20 ms, 0 lost", ratio >= 0.9 and p99 <= 20 and lost == 0))
    ctx.notes.append(f"Ingest bodies: one transaction each, of {WATCHED} wallets (10% buys, 45% sells, 45% SOL "
                     "transfers); watched, the bot also decides each one (safety, risk, an observation write, paper "
                     "fills) while it acknowledges the next. Lost = acknowledged with 200 but not in `webhook_inbox`.")


def latency(ctx: Ctx) -> None:
    """Webhook → signal row at 100 deliveries/s, and the bot's CPU meanwhile."""
    rng = random.Random(12)
    wallets = _watched(rng, WATCHED)
    n = int(ctx.seconds * 100)
    items = traffic(rng, wallets, ctx.sandbox.mints(), n)
    bodies = write_bodies(ctx.tmp / "rate.jsonl", items)
    bare = subprocess.Popen([PY, str(ROOT / "bench" / "bare.py")], stdout=subprocess.PIPE, text=True)
    try:
        base = load("rate", json.loads(bare.stdout.readline())["port"], bodies, seconds=min(ctx.seconds, 10), rate=100)
    finally:
        bare.kill()
        bare.wait()
    acks = [s[2] * 1000 for s in base["sent"]]
    url = ctx.database(lambda c: fleet.seed_wallets(c, wallets))
    commit = _commit_ms(ctx, url)
    baseline = (f"bare endpoint's 200 at 100/s: p50 {pct(acks, 50):.1f} ms, p99 {pct(acks, 99):.1f} ms; one durable "
                f"commit on this disk: p50 {pct(commit, 50):.1f} ms, p99 {pct(commit, 99):.1f} ms")
    light = traffic(rng, wallets, list(reversed(ctx.sandbox.mints())), int(min(ctx.seconds, 10) * 20))
    light_bodies = write_bodies(ctx.tmp / "light.jsonl", light)
    bot = Bot(ctx, url).start()
    try:
        bot.health()
        bot.settled()
        slow = load("rate", bot.port, light_bodies, seconds=min(ctx.seconds, 10), rate=20)
        _wait_signals(bot, light)
        proc = bot.ps
        cpu0, pg0, w0 = proc.cpu_times(), pg_cpu(ctx), time.perf_counter()
        got = load("rate", bot.port, bodies, seconds=ctx.seconds, rate=100)
        cpu1, pg1, wall = proc.cpu_times(), pg_cpu(ctx), time.perf_counter() - w0
        logged = _wait_signals(bot, light + items)
    finally:
        bot.stop()
    screened, first, missing = _latencies(items, got, logged)
    calm, _, _ = _latencies(light, slow, logged)
    ctx.rows.append(Row(
        "webhook → signal row at 20 deliveries/s, token already screened (for comparison: the bot not saturated)",
        f"p50 {pct(calm, 50):.1f} ms, p99 {pct(calm, 99):.1f} ms (n={len(calm)})", "—", "—", None))
    cpu = (cpu1.user + cpu1.system - cpu0.user - cpu0.system) / wall
    p50, p99, f99 = pct(screened, 50), pct(screened, 99), pct(first, 99)
    ctx.rows.append(Row(
        "webhook → signal row at 100 deliveries/s (10% watched buys), token already screened",
        f"p50 {p50:.1f} ms, p99 {p99:.1f} ms (n={len(screened)})", baseline, "p50 ≤ 3 ms, p99 ≤ 15 ms",
        p50 <= 3 and p99 <= 15))
    ctx.rows.append(Row(
        "webhook → signal row, first buy of a new token (sandbox answers in ~1 ms)",
        f"p99 {f99:.1f} ms, p50 {pct(first, 50):.1f} ms (n={len(first)})", "—", "p99 ≤ 150 ms", f99 <= 150))
    ctx.rows.append(Row(
        "CPU of the bot process at 100 deliveries/s", f"{cpu:.0%} of a core",
        f"PostgreSQL meanwhile: {(pg1 - pg0) / wall:.0%} of a core", "≤ 25% of a core", cpu <= 0.25))
    ctx.notes.append(f"Latency: from the load generator's send to the bot's `signal` log line, written once the signal's "
                     f"transaction has committed (both on this machine's clock); {missing} buys had no signal line. "
                     f"Open loop: a send never waits for an earlier answer.")


def _wait_signals(bot: Bot, items: list) -> dict[str, float]:
    """Wait (up to 60 s) for every buy's and sell's `signal` line; returns signature -> when it was logged."""
    want = sum(1 for _, m in items if m["kind"] in ("buy", "sell"))
    deadline = time.time() + 60
    while len(bot.log_events("signal")) < want and time.time() < deadline:
        time.sleep(0.2)
    return {e["signature"]: datetime.fromisoformat(e["timestamp"]).timestamp() for e in bot.log_events("signal")}


def _latencies(items: list, got: dict, logged: dict[str, float]) -> tuple[list[float], list[float], int]:
    """Send → signal line, in ms, for buys of screened tokens and first buys of new ones; and buys never logged."""
    sent = {i: t for i, t, _, status in got["sent"] if status == 200}
    screened, first = [], []
    for i, (tx, meta) in enumerate(items):
        if meta["kind"] == "buy" and i in sent and tx["signature"] in logged:
            (first if meta["new"] else screened).append((logged[tx["signature"]] - sent[i]) * 1000)
    missing = sum(1 for tx, m in items if m["kind"] == "buy" and tx["signature"] not in logged)
    return screened, first, missing


def _commit_ms(ctx: Ctx, url: str, n: int = 200) -> list[float]:
    """Latencies of `n` single-row synchronous commits: the floor under any acknowledged delivery here."""
    async def go() -> list[float]:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute("CREATE TABLE IF NOT EXISTS bench_probe (x int)")  # logged: each commit flushes WAL
            out = []
            for i in range(n):
                t = time.perf_counter()
                await conn.execute("INSERT INTO bench_probe VALUES ($1)", i)
                out.append((time.perf_counter() - t) * 1000)
            return out
        finally:
            await conn.close()

    return asyncio.run(go())


def _start(ctx: Ctx, wallets: int, positions: int) -> tuple[float, int, float]:
    rng = random.Random(13 + wallets + positions)
    ws = _watched(rng, wallets)

    async def seed(c) -> None:  # noqa: ANN001
        await fleet.seed_wallets(c, ws)
        if positions:  # tokens no price source knows: no exit fires while it starts
            await fleet.seed_positions(c, positions, ws, [fleet.b58(32, rng) for _ in range(100)], rng)

    bot = Bot(ctx, ctx.database(seed)).start()
    try:
        took = bot.health(lambda b: (b.get("actors") or {}).get("wallets") == wallets
                          and b["actors"].get("positions") == positions)
        proc = bot.ps
        threads, rss, born = proc.num_threads(), proc.memory_info().rss / 2**20, bot.spawned_at
    finally:
        bot.stop()
    events = {e["event"]: datetime.fromisoformat(e["timestamp"]).timestamp()
              for e in map(json.loads, (bot.data / "logs" / "walltrack.log").read_text().splitlines())}
    ctx.notes.append(f"Start with {wallets:,} wallets and {positions:,} positions: {took:.2f} s to /health, of which "
                     f"{events['database_ready'] - born:.2f} s before the database was ready (interpreter, imports, "
                     f"connecting, migrations) and {events['gateway_listening'] - events['database_ready']:.2f} s from "
                     "there to the gateway listening (every actor started).")
    return took, threads, rss


def start_up(ctx: Ctx) -> None:
    """1,000 and 5,000 watched wallets, then 1,000 wallets and 10,000 open positions: time to /health, threads, RSS."""
    out = {k: _start(ctx, *k) for k in ((0, 0), (1000, 0), (5000, 0), (1000, 10000))}
    (t0, th0, rss0), (t1, th1, rss1), (t5, th5, rss5), (tp, thp, rssp) = out.values()
    ctx.rows.append(Row(
        "1,000 / 5,000 watched wallets at start: OS threads, spawn → /health, RSS",
        f"{th1} / {th5} threads, {t1:.2f} s / {t5:.2f} s, {rss1:.0f} / {rss5:.0f} MB",
        f"no wallet: {th0} threads, {t0:.2f} s, {rss0:.0f} MB", "threads ≤ 32, start ≤ 2 s at 5,000",
        max(th1, th5) <= 32 and t5 <= 2))
    ctx.rows.append(Row(
        "1,000 wallets + 10,000 open positions at start", f"{thp} threads, {tp:.2f} s, RSS {rssp:.0f} MB",
        f"no wallet: {rss0:.0f} MB", "RSS ≤ 300 MB, threads ≤ 32", rssp <= 300 and thp <= 32))
    ctx.notes.append("Start: from spawning `walltrack run` (interpreter start and imports, the panel's included) to "
                     "`/health` answering 200 with every actor counted; the database is already up.")


def sweep(ctx: Ctx) -> None:
    """One price batch to 10,000 open positions (bench/sweep.py, the bot in a process of its own)."""
    rng = random.Random(14)
    ws = _watched(rng, 1000)

    async def seed(c) -> None:  # noqa: ANN001
        await fleet.seed_wallets(c, ws)
        await fleet.seed_positions(c, 10_000, ws, [fleet.b58(32, rng) for _ in range(100)], rng)

    url = ctx.database(seed)
    data = Path(ctx.tmp / "sweep")
    out = subprocess.run([PY, str(ROOT / "bench" / "sweep.py"), url, str(data)], capture_output=True, text=True,
                         timeout=600, cwd=ctx.tmp)
    if out.returncode:
        raise RuntimeError(f"bench/sweep.py failed: {out.stderr[-2000:]}")
    r = json.loads(out.stdout.strip().splitlines()[-1])
    ctx.rows.append(Row(
        "one price sweep to 10,000 open positions (100 tokens): every position evaluated",
        f"{r['evaluated_s'] * 1000:.0f} ms ({r['ticked']:,} ticked)",
        f"with a journal write each: evaluated {r['journal_sweep_evaluated_s'] * 1000:.0f} ms, all "
        f"{r['journal_writes']:,} stored {r['journaled_s']:.2f} s", "≤ 1 s after the batch arrives",
        r["evaluated_s"] <= 1 and r["ticked"] == 10_000))
    ctx.notes.append(f"Sweep: the batch is told to the root, which hands each token's tick to its positions as one "
                     f"run-queue entry; timed until the actor runtime is idle. {r['threads']} threads, RSS "
                     f"{r['rss_mb']:.0f} MB in that process.")


def kill9(ctx: Ctx) -> None:
    """kill -9 with 1,000 open positions, restart at once: time until all are back and priced again."""
    rng = random.Random(15)
    ws = _watched(rng, 50)
    mints = ctx.sandbox.mints()[:20]  # clean tokens the sandbox prices; bought at its price, so no exit fires
    tokens = {m: ctx.sandbox.entry_tokens(m, fleet.ENTRY_QUOTE) for m in mints}

    async def seed(c) -> None:  # noqa: ANN001
        await fleet.seed_wallets(c, ws)
        await fleet.seed_positions(c, 1000, ws, mints, rng, tokens=tokens)

    url = ctx.database(seed)
    bot = Bot(ctx, url).start()
    everyone = lambda b: (b.get("actors") or {}).get("positions") == 1000  # noqa: E731
    try:
        bot.health(everyone)
        priced = "SELECT count(*) FROM token_prices WHERE mint = ANY($1) AND priced_at > to_timestamp($2)"
        t = time.time()
        while ctx.sql(url, priced, mints, t - 3600)[0][0] < len(mints) and time.time() - t < 60:
            time.sleep(0.1)
        bot.kill9()
        killed = time.time()
        again = Bot(ctx, url)
        again.data = bot.data
        again.env = bot.env
        again.port = bot.port
        again.start()
        back = again.health(everyone, timeout=60)
        while ctx.sql(url, priced, mints, killed)[0][0] < len(mints) and time.time() - killed < 60:
            time.sleep(0.02)
        monitoring = time.time() - killed
    finally:
        bot.stop()
        if "again" in locals():
            again.stop()
    ctx.rows.append(Row(
        "kill -9 with 1,000 open positions → all back and monitoring",
        f"{monitoring:.2f} s (all 1,000 actors back in {back:.2f} s)", "—", "≤ 5 s", monitoring <= 5))
    ctx.notes.append("kill -9: the new process is spawned right after the kill (systemd's `RestartSec` not counted); "
                     "monitoring = every open position's token priced again after the kill.")
