"""What bench/run.py's phases share: the sandbox, a fresh database per phase, the bot as a process, the load
generator as another, and the traffic they send.

Everything is real and started here: an embedded PostgreSQL (fresh database per phase), the sandbox market's
services (Jupiter, DexScreener, RugCheck, Solana RPC on litesvm) in this process, the bare QuartTrio+Hypercorn
endpoint (bench/bare.py) as the baseline, the bot as an operator runs it (`walltrack run`, panel included) in a
process of its own, and the load generator (bench/load.py) in another — never in the bot's process or GIL.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import asyncpg
import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import fleet  # noqa: E402
from bench.report import Row  # noqa: E402
from sandbox import dexscreener, jupiter, rpc, rugcheck  # noqa: E402
from sandbox.chain import Chain  # noqa: E402
from sandbox.faults import FaultBoard  # noqa: E402
from sandbox.market import Hazards, Market  # noqa: E402
from sandbox.server import create_app, server_main  # noqa: E402
from walltrack.bridge import TrioThread  # noqa: E402
from storage.db import EmbeddedPostgres, fetch, migrate  # noqa: E402

SECRET = "bench-webhook-secret-0123456789"
PY = sys.executable
WALLTRACK = str(Path(PY).parent / "walltrack")
WATCHED = 200  # wallets watched in the load phases


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    v = sorted(values)
    return v[min(len(v) - 1, int(q / 100 * len(v)))]


class Sandbox:
    """The sandbox market's services, with `extra` more clean tokens (new tokens for the first-buy latency)."""

    def __init__(self, extra: int = 60) -> None:
        self.market = Market(7)
        for i in range(extra):
            self.market._add_token(f"B{i:03d}", "SOL", Hazards(), 0.0, 0.02)  # noqa: SLF001 - a bigger cast
        faults = FaultBoard()
        app = create_app({"jupiter": jupiter.blueprint(self.market, faults["jupiter"]),
                          "dexscreener": dexscreener.blueprint(self.market, faults["dexscreener"]),
                          "rugcheck": rugcheck.blueprint(self.market, faults["rugcheck"]),
                          "rpc": rpc.blueprint(Chain(self.market), faults["rpc"])})
        self.runtime = TrioThread(name="sandbox").start()
        self.port = self.runtime.start_service(server_main(app)).value

    def env(self) -> dict[str, str]:
        u = f"http://127.0.0.1:{self.port}"
        return {"JUPITER_BASE_URL": f"{u}/jupiter", "JUPITER_TIER": "pro", "DEXSCREENER_BASE_URL": f"{u}/dexscreener",
                "RUGCHECK_BASE_URL": f"{u}/rugcheck", "SOLANA_RPC_URL": f"{u}/rpc"}

    def entry_tokens(self, mint: str, lamports: int) -> int:
        """The raw tokens `lamports` buy at the market's mid price."""
        t = self.market.tokens[mint]
        whole = lamports / 10**9 * self.market.sol_usd / self.market.price_usd(mint)
        return int(whole * 10**t.decimals)

    def mints(self) -> list[str]:
        """Clean SOL-quoted tokens first (what a leader would buy and we could copy), then the hazards."""
        clean = [t.mint for t in self.market.tokens.values() if t.quote == "SOL" and t.hazards == Hazards()]
        return clean + [m for m in self.market.tokens if m not in clean]


@dataclass
class Ctx:
    pg: EmbeddedPostgres
    sandbox: Sandbox
    tmp: Path
    seconds: float
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    _dbs: int = 0

    def database(self, seed: Callable[[asyncpg.Connection], Any] | None = None) -> str:
        self._dbs += 1
        name = f"bench_{os.getpid()}_{self._dbs}"

        async def make() -> None:
            admin = await asyncpg.connect(self.pg.url)
            try:
                await admin.execute(f"CREATE DATABASE {name}")
            finally:
                await admin.close()
            conn = await asyncpg.connect(self.pg.url.replace("/postgres?", f"/{name}?", 1))
            try:
                await migrate(conn)
                if seed is not None:
                    await seed(conn)
            finally:
                await conn.close()

        asyncio.run(make())
        return self.pg.url.replace("/postgres?", f"/{name}?", 1)

    def sql(self, url: str, query: str, *args: Any) -> list[asyncpg.Record]:
        return fetch(url, query, *args)


class Bot:
    """`walltrack run` in a process of its own (the panel on a free port), logging to its data directory."""

    def __init__(self, ctx: Ctx, db_url: str, **env: str) -> None:
        self.data = Path(tempfile.mkdtemp(prefix="bot", dir=ctx.tmp))
        self.port, self.panel_port, self.db_url = free_port(), free_port(), db_url
        self.env = {**os.environ, **ctx.sandbox.env(), "WALLTRACK_DATA_DIR": str(self.data), "DATABASE_URL": db_url,
                    "HELIUS_WEBHOOK_SECRET": SECRET, "GATEWAY_PORT": str(self.port), "PANEL_PORT": str(self.panel_port),
                    "LOG_LEVEL": "INFO", **env}
        self.proc: subprocess.Popen[bytes] | None = None
        self.spawned = self.spawned_at = 0.0

    def start(self) -> "Bot":
        out = open(self.data / "stdout.log", "ab")  # noqa: SIM115 - closed with the process
        self.spawned, self.spawned_at = time.perf_counter(), time.time()
        self.proc = subprocess.Popen([WALLTRACK, "run"], env=self.env, cwd=self.data, stdout=out, stderr=out)
        return self

    def health(self, ok: Callable[[dict[str, Any]], bool] = lambda b: True, timeout: float = 120) -> float:
        """Seconds from spawn until /health answers 200 and `ok(body)` holds."""
        deadline = time.perf_counter() + timeout
        with httpx.Client(timeout=2) as http:
            while time.perf_counter() < deadline:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise RuntimeError(f"the bot exited ({self.proc.returncode}): see {self.data / 'stdout.log'}")
                try:
                    r = http.get(f"http://127.0.0.1:{self.port}/health")
                    if r.status_code == 200 and ok(r.json()):
                        return time.perf_counter() - self.spawned
                except httpx.HTTPError:
                    pass
                time.sleep(0.02)
        raise RuntimeError(f"the bot did not get healthy in {timeout} s: see {self.data / 'stdout.log'}")

    def settled(self, timeout: float = 60) -> None:
        """Wait until the panel serves too: `walltrack run` starts it after the gateway, and its start-up (imports,
        pages) must not be counted against the load phases."""
        deadline = time.perf_counter() + timeout
        with httpx.Client(timeout=5) as http:
            while time.perf_counter() < deadline:
                try:
                    http.get(f"http://127.0.0.1:{self.panel_port}/")
                    return
                except httpx.HTTPError:
                    time.sleep(0.05)
        raise RuntimeError("the panel did not start")

    @property
    def ps(self) -> psutil.Process:
        assert self.proc is not None
        return psutil.Process(self.proc.pid)

    def log_events(self, event: str) -> list[dict[str, Any]]:
        path = self.data / "logs" / "walltrack.log"
        return [e for line in path.read_text().splitlines() if f'"{event}"' in line
                and (e := json.loads(line)).get("event") == event]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()


def write_bodies(path: Path, items: list[tuple[dict[str, Any], dict[str, Any]]]) -> Path:
    """items: (transaction, meta); one single-transaction body a line."""
    with path.open("w") as f:
        for tx, meta in items:
            f.write(json.dumps({"sig": tx["signature"], "body": json.dumps([tx]), **meta}) + "\n")
    return path


def load(mode: str, port: int, bodies: Path, **kw: Any) -> dict[str, Any]:
    args = [PY, str(ROOT / "bench" / "load.py"), mode, "--port", str(port), "--secret", SECRET, "--bodies", str(bodies)]
    for k, v in kw.items():
        args += [f"--{k}", str(v)]
    out = subprocess.run(args, capture_output=True, text=True, check=True, timeout=600)
    return json.loads(out.stdout)


def traffic(rng: random.Random, wallets: list[str], mints: list[str], n: int, buys_per_new: int = 10
            ) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """`n` deliveries of watched wallets: 10% buys (every `buys_per_new`-th the first buy of a token not seen yet),
    45% sells, 45% SOL transfers (not trades)."""
    out, known, fresh = [], [mints[0]], iter(mints[1:])
    buys = 0
    for i in range(n):
        w, roll = rng.choice(wallets), rng.random()
        if i % 10 == 0:
            buys += 1
            new = buys % buys_per_new == 0 and (m := next(fresh, None)) is not None
            mint = m if new else (known[0] if buys == 1 else rng.choice(known))
            if new:
                known.append(mint)
            out.append((fleet.tx("buy", w, mint, rng), {"kind": "buy", "new": bool(new or buys == 1)}))
        elif roll < 0.5:
            out.append((fleet.tx("sell", w, rng.choice(known), rng), {"kind": "sell"}))
        else:
            out.append((fleet.tx("transfer", w, "", rng), {"kind": "transfer"}))
    return out


def pg_cpu(ctx: Ctx) -> float:
    """CPU seconds used so far by the embedded PostgreSQL's processes."""
    total = 0.0
    for p in psutil.process_iter(["name", "cmdline"]):
        try:
            if p.info["name"] and "postgres" in p.info["name"]:
                t = p.cpu_times()
                total += t.user + t.system
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return total
