"""The chaos suite's world (one for the module: a bot, a sandbox, a load) and the table of faults survived, printed
at the end of every pytest run that ran the suite (`pytest_terminal_summary`: CI's log shows it without `-s`)."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.chaos.world import CAPS, Bot, Load
from storage.db import EmbeddedPostgres
from walltrack.demo import Sandbox

ROWS: list[dict[str, Any]] = []  # one per fault: what was injected, what held, how fast the bot was healthy again


class World:
    def __init__(self, root: Path) -> None:
        import time

        self.clock_file = root / "clock-offset"
        self.clock_file.write_text("0")
        self.sb = Sandbox(seed=7, speed=60.0, start=time.time())
        self.bot = Bot(root / "data", self.sb, self.clock_file)
        self.load = Load(self.sb, f"http://127.0.0.1:{self.bot.port}/webhooks/helius")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    w = World(tmp_path_factory.mktemp("chaos"))
    try:
        w.bot.start()
        w.bot.watch([(leader.address, leader.label) for leader in w.sb.market.leaders])
        w.load.start()
        yield w
    finally:
        w.load.stop()
        if w.bot.proc is not None and w.bot.proc.poll() is None:
            w.bot.proc.send_signal(signal.SIGCONT)
            w.bot.stop()
        w.sb.stop()
        if (w.bot.data_dir / "pg" / "postmaster.pid").exists():  # left behind by a kill: stop it
            EmbeddedPostgres(w.bot.data_dir / "pg").close()


def record(fault: str, **row: Any) -> None:
    ROWS.append({"fault": fault, **row})


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not ROWS:
        return
    cols = ["fault", "acked", "decided", "signals", "opened", "closed", "ignored", "peak_open", "healthy_s", "held"]
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in ROWS)) for c in cols}
    tr = terminalreporter
    tr.section("chaos: faults survived")
    tr.write_line("  ".join(c.ljust(widths[c]) for c in cols))
    for r in ROWS:
        tr.write_line("  ".join(str(r.get(c, "")).ljust(widths[c]) for c in cols))
    tr.write_line("acked: deliveries acknowledged with a 200 so far; decided: (delivery, watched wallet) pairs, each "
                  f"decided exactly once; peak_open: most paper positions open at once (caps: {CAPS}); healthy_s: fault "
                  "over -> /health 200, database connected, every wallet's actor up; held: every acknowledged delivery "
                  "processed once, no position opened or bought twice, no cap exceeded, PnL = sum of fills")
