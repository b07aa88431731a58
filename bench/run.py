"""Benchmarks: every row of issue 11's table, measured side by side in one run. Prints a table and writes
BENCHMARKS.md (with the machine's facts). Asserts nothing: the test suite has no timing thresholds.

    uv run python bench/run.py            # the full run (30 s load phases)
    uv run python bench/run.py --quick    # a short one while developing (8 s load phases)

The phases (bench/phases.py) share bench/harness.py: an embedded PostgreSQL with a fresh database per phase, the
sandbox market's services in this process, the bare QuartTrio+Hypercorn endpoint (bench/bare.py) as the baseline,
the bot as an operator runs it (`walltrack run`) in a process of its own, the load generator (bench/load.py) in
another, and the price-sweep harness (bench/sweep.py).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.harness import Ctx, Sandbox  # noqa: E402
from bench.phases import ingest, kill9, latency, start_up, sweep  # noqa: E402
from bench.report import machine_facts, render, write_report  # noqa: E402
from storage.db import EmbeddedPostgres  # noqa: E402

PHASES = (ingest, latency, start_up, sweep, kill9)


def main() -> None:
    p = argparse.ArgumentParser(description="WallTrack benchmarks (issue 11's table)")
    p.add_argument("--quick", action="store_true", help="8 s load phases instead of 30 s")
    p.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    p.add_argument("--only", nargs="*", choices=[f.__name__ for f in PHASES], help="run only these phases")
    a = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="wtbench"))
    before = machine_facts()
    pg = EmbeddedPostgres(tmp / "pg")
    sandbox = Sandbox()
    ctx = Ctx(pg, sandbox, tmp, 8.0 if a.quick else 30.0)
    t0 = time.time()
    compiled = compile_bytecode()
    ctx.notes.append(f"Before the phases, the bot's modules were compiled to bytecode ({compiled:.1f} s), as `ops/install` "
                     "does; `uv sync` compiles the libraries' (`[tool.uv] compile-bytecode`). The start-up row depends "
                     f"on it: with PYTHONDONTWRITEBYTECODE={os.environ.get('PYTHONDONTWRITEBYTECODE', 'unset')} here, "
                     "an uncompiled module is compiled again at every start.")
    try:
        for phase in PHASES:
            if a.only and phase.__name__ not in a.only:
                continue
            print(f"# {phase.__name__} ...", file=sys.stderr, flush=True)
            done = len(ctx.rows)
            phase(ctx)
            print(render(ctx.rows[done:]), file=sys.stderr, flush=True)
            ctx.notes.append(f"Load average (1 min) after the {phase.__name__} phase: {os.getloadavg()[0]:.2f}.")
    finally:
        sandbox.runtime.stop()
        pg.close()
    facts = {**before, "load_after": os.getloadavg(), "duration_s": round(time.time() - t0),
             "mode": "quick" if a.quick else "full", "date": datetime.now().isoformat(timespec="seconds")}
    print(render(ctx.rows))
    for n in ctx.notes:
        print(f"- {n}")
    write_report(a.out, ctx.rows, ctx.notes, facts)
    print(f"\nwritten to {a.out}")


def compile_bytecode() -> float:
    """The checkout's modules compiled as ops/install compiles them (what an installed bot starts from)."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "compileall", "-q", "-x", r"/(\.venv|\.git|tests)/", str(ROOT)],
                   check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


if __name__ == "__main__":
    main()
