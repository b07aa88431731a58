"""1,000 watched wallets and 10,000 open positions in one process, on the embedded database: every actor starts,
the thread count does not follow the actor count, and one price batch reaches every position (a tick each)."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from decimal import Decimal
from typing import Any, Callable

import asyncpg
from pykka.messages import ProxyGetAttr

from actors.messages import GetStats, PriceTick, PriceTicks
from bench import fleet
from tests.conftest import wait_until
from walltrack.app import App
from storage.db import migrate


def test_ten_thousand_positions_and_a_thousand_wallets_run_in_one_process(make_settings: Callable[..., Any],
                                                                          db_url: str) -> None:
    rng = random.Random(5)
    wallets = [fleet.b58(32, rng) for _ in range(1000)]
    mints = [fleet.b58(32, rng) for _ in range(100)]

    async def seed() -> list[int]:
        conn = await asyncpg.connect(db_url)
        try:
            await migrate(conn)
            await fleet.seed_wallets(conn, wallets)
            return await fleet.seed_positions(conn, 10_000, wallets, mints, rng)
        finally:
            await conn.close()

    ids = asyncio.run(seed())
    app = App(make_settings(price_poll_s=3600, actor_workers=4)).start()
    try:
        assert app.root is not None and app.runtime is not None
        assert app.root.ask(GetStats(), timeout=30) == {"wallets": 1000, "positions": 10_000, "restarts": 0}
        assert app.runtime.threads == 4 and len(app.runtime.registry) == 11_002  # + the root and the risk actor
        assert threading.active_count() <= 32  # the whole test process, 11,002 actors included
        refs = [app.actors.lookup(("position", str(pid))) for pid in ids]
        at = time.time()
        usd = Decimal(repr(fleet.entry_usd(150.0)))
        app.actors.tell(PriceTicks(tuple(PriceTick(m, usd, Decimal(150), "jupiter", at) for m in mints)))
        waiting = set(range(len(refs)))

        def every_position_ticked() -> bool:
            futures = {i: refs[i].ask(ProxyGetAttr(attr_path=("mark",)), block=False) for i in waiting}
            for i, f in futures.items():
                mark = f.get(timeout=30)
                if mark is not None and mark.at == at and mark.usd == usd:
                    waiting.discard(i)
            return not waiting

        wait_until(every_position_ticked, timeout=120, interval=0.2)
        states = [r.ask("state", block=False) for r in refs[:50]]
        assert {s.get(timeout=10).status for s in states} == {"open"}  # at the entry price: nothing to do
    finally:
        app.stop()
