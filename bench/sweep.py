"""The price-sweep harness of bench/run.py: in a process of its own, start the bot (`App`, no panel) on a database
that bench/run.py seeded with watched wallets and open positions, then hand the root one price batch for every
token and time how long until every position has evaluated it.

Two sweeps: at the entry price (every position decides, none has anything to journal), then 5% higher (every
position journals a new high-water mark: 10,000 journal writes). Prints one JSON object.

    uv run python bench/sweep.py DATABASE_URL DATA_DIR
"""

from __future__ import annotations

import json
import sys
import threading
import time
from decimal import Decimal
from pathlib import Path

import psutil
from pydantic import SecretStr

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from actors.messages import GetStats, PriceTick, PriceTicks  # noqa: E402
from bench.fleet import entry_usd  # noqa: E402
from walltrack.app import App  # noqa: E402
from walltrack.logs import Redactor, configure_logging  # noqa: E402
from walltrack.settings import load_settings  # noqa: E402

SOL_USD = Decimal(150)


def sweep(app: App, mints: list[str], usd: Decimal) -> tuple[float, float]:
    """Tell the price feed one PriceTicks for every mint; returns (seconds until the runtime is idle, tick time)."""
    assert app.root is not None and app.runtime is not None
    at = time.time()
    t0 = time.perf_counter()
    app.actors.tell(PriceTicks(tuple(PriceTick(m, usd, SOL_USD, "jupiter", at) for m in mints)))
    while not app.runtime.idle():
        time.sleep(0.0005)
    return time.perf_counter() - t0, at


def main() -> None:
    url, data_dir = sys.argv[1], Path(sys.argv[2])
    settings = load_settings(database_url=SecretStr(url), walltrack_data_dir=data_dir, gateway_port=0,
                             helius_webhook_secret=SecretStr("bench-sweep-secret"), safety_enabled=False,
                             price_poll_s=3600, _env_file=None)  # the sweep is the only price source here
    configure_logging(Redactor(settings.secrets()), "WARNING", settings.log_dir)
    t0 = time.perf_counter()
    app = App(settings).start()
    started = time.perf_counter() - t0
    proc = psutil.Process()
    try:
        assert app.root is not None and app.store is not None
        stats = app.root.ask(GetStats(), timeout=60)
        rows = app.store.run(lambda c: c.fetch("SELECT id, token_mint FROM positions WHERE closed_at IS NULL"))
        mints = sorted({r["token_mint"] for r in rows})
        while not app.runtime.idle():  # the start-up's own messages (first ticks of the monitor, if any)
            time.sleep(0.01)
        evaluated, at = sweep(app, mints, Decimal(repr(entry_usd(float(SOL_USD)))))
        refs = [app.actors.lookup(("position", str(r["id"]))) for r in rows]
        futures = [ref.ask(_mark_query(), block=False) for ref in refs]
        ticked = sum(1 for f in futures if (m := f.get(timeout=30)) is not None and m.at == at)
        count = "SELECT count(*) FROM position_events WHERE kind = 'high_water'"
        before = app.store.run(lambda c: c.fetchval(count))
        higher, _ = sweep(app, mints, Decimal(repr(entry_usd(float(SOL_USD)) * 1.05)))
        t1 = time.perf_counter()
        while app.store.run(lambda c: c.fetchval(count)) - before < len(rows) and time.perf_counter() - t1 < 120:
            time.sleep(0.05)
        journaled = higher + time.perf_counter() - t1
        wrote = app.store.run(lambda c: c.fetchval(count)) - before
        print(json.dumps({
            "start_s": started, "wallets": stats["wallets"], "positions": stats["positions"],
            "rss_mb": proc.memory_info().rss / 2**20, "threads": proc.num_threads(),
            "python_threads": threading.active_count(), "tokens": len(mints),
            "evaluated_s": evaluated, "ticked": ticked, "journal_sweep_evaluated_s": higher,
            "journaled_s": journaled, "journal_writes": wrote,
        }), flush=True)
    finally:
        app.stop()


def _mark_query():  # noqa: ANN202 - pykka's attribute read: the position's last fresh price
    from pykka.messages import ProxyGetAttr

    return ProxyGetAttr(attr_path=("mark",))


if __name__ == "__main__":
    main()
