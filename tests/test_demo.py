"""`walltrack demo --headless`: the sandbox market and the bot, end to end, as an operator runs it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from walltrack.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def test_headless_demo_prints_a_summary_with_hazard_skip_reasons(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL",)}
    env["WALLTRACK_DATA_DIR"] = str(tmp_path / "data")
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "walltrack.cli", "demo", "--headless", "--minutes", "20", "--speed", "120",
                        "--seed", "7"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    wall = time.monotonic() - t0
    assert r.returncode == 0, r.stderr[-3000:]
    lines = r.stdout.strip().splitlines()
    s = json.loads(lines[-1])
    for key in ("signals", "taken", "skipped", "skip_reasons", "positions_opened", "positions_closed", "exit_reasons",
                "realized_pnl_sol", "open_positions"):
        assert key in s, key
    assert s["taken"] > 0 and s["skipped"] > 0 and s["signals"] == s["taken"] + s["skipped"]
    hazards = [k for k in s["skip_reasons"] if k.startswith("safety:")]
    assert len(hazards) >= 3, s["skip_reasons"]
    d = s["deliveries"]
    if d["unprocessed"]:  # say which deliveries stuck, and what the log says about them
        logs = "".join(f.read_text() for f in (tmp_path / "data" / "logs").glob("*.log*"))
        trail = [ln for ln in logs.splitlines() if any(sig in ln for sig in d["unprocessed_signatures"])]
        raise AssertionError(f"unprocessed deliveries {d}:\n" + "\n".join(trail[-20:]))
    assert d["dropped"] == 0
    assert s["signals"] == d["transactions_stored"]  # every leader transaction became exactly one signal
    assert s["positions_opened"] == s["positions_closed"] + s["open_positions"]
    # paper equity: the risk actor's running tally of closes == starting capital + gross PnL - fees, from the fills
    e = s["paper_equity"]
    assert e["equity_lamports"] == e["from_fills_lamports"], e
    assert abs(e["from_fills_lamports"] - (e["starting_capital_lamports"] + e["gross_pnl_lamports"] - e["fees_lamports"])) \
        <= s["positions_closed"], e  # to the lamport per close (USDC legs round once each when converted)
    assert e["fees_lamports"] > 0 and s["positions_closed"] > 0
    assert wall < 120, wall  # 10 wall seconds of market, plus start-up and drain
    assert not (tmp_path / "data" / "pg" / "postmaster.pid").exists(), "embedded PostgreSQL left running"


def test_env_example_lists_every_setting() -> None:
    text = (ROOT / ".env.example").read_text()
    listed = set(re.findall(r"^([A-Z][A-Z0-9_]+)=", text, re.M))
    assert listed == {name.upper() for name in Settings.model_fields}
    for name in listed:  # each with a one-line comment above it (or above its group)
        assert re.search(rf"#[^\n]*\n(?:[A-Z0-9_]+=[^\n]*\n)*{name}=", text), name
