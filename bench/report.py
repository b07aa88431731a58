"""The table bench/run.py prints and the BENCHMARKS.md it writes, with the machine's facts."""

from __future__ import annotations

import os
import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil


@dataclass
class Row:
    measure: str
    value: str  # what the bot did
    baseline: str  # the comparison measured in the same run (or what the ratio is against)
    goal: str
    met: bool | None  # None: informational


def machine_facts() -> dict[str, Any]:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).parent).stdout.strip()
    except OSError:
        commit = ""
    return {"cpu": model, "cores": os.cpu_count(), "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "python": platform.python_version(), "os": f"{platform.system()} {platform.release()}",
            "load_before": os.getloadavg(), "commit": commit}


def render(rows: list[Row]) -> str:
    lines = ["| measure | WallTrack | baseline, same run | goal | met |", "|---|---|---|---|---|"]
    for r in rows:
        met = "—" if r.met is None else ("yes" if r.met else "**no**")
        lines.append(f"| {r.measure} | {r.value} | {r.baseline} | {r.goal} | {met} |")
    return "\n".join(lines)


def write_report(path: Path, rows: list[Row], notes: list[str], facts: dict[str, Any]) -> None:
    load = lambda v: ", ".join(f"{x:.2f}" for x in v)  # noqa: E731
    text = f"""# Benchmarks

Written by `uv run python bench/run.py{' --quick' if facts['mode'] == 'quick' else ''}` ({facts['mode']} run,
{facts['date']}, commit {facts['commit']}, {facts['duration_s']} s). Every number below comes from that run:
an embedded PostgreSQL 18 started by the benchmark (a fresh database per phase), the sandbox market's services
(Jupiter, DexScreener, RugCheck, Solana RPC on litesvm) on loopback, the bot as an operator runs it
(`walltrack run`, panel included) in its own process, and the load generator in another process. The baseline
column was measured in the same run (the bare QuartTrio+Hypercorn endpoint is `bench/bare.py`).

## Machine

| | |
|---|---|
| CPU | {facts['cpu']} ({facts['cores']} cores) |
| memory | {facts['memory_gb']} GB |
| OS, Python | {facts['os']}, Python {facts['python']} |
| load average before / after | {load(facts['load_before'])} / {load(facts['load_after'])} (the machine is shared) |

## Results

{render(rows)}

## Notes

{chr(10).join(f'- {n}' for n in notes)}
"""
    path.write_text(text)
