"""Group commit (storage/group_commit.py) on the real database: concurrent inbox writes share one commit, each
caller hears back only after it, a signature in two requests of one batch is new for the first only, and a body
the database refuses fails alone."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator

import asyncpg
import pytest

from storage import repo
from storage.group_commit import GroupCommit
from walltrack.bridge import AsyncioThread
from storage.db import migrate


@pytest.fixture
def store(db_url: str) -> Iterator[repo.Store]:
    async def open_pool() -> asyncpg.Pool:
        conn = await asyncpg.connect(db_url)
        try:
            await migrate(conn)
        finally:
            await conn.close()
        return await repo.connect_pool(db_url, max_size=1)

    loop = AsyncioThread()
    s = repo.Store(loop, loop.run(open_pool(), timeout=30))
    try:
        yield s
    finally:
        s.close()
        loop.stop()


def hold(store: repo.Store) -> asyncpg.Connection:
    """Take the pool's only connection: every write queues behind it until it is released."""
    async def take() -> asyncpg.Connection:
        return await store.pool.acquire()

    return store._loop.run(take())


def body(*sigs: str, extra: str = "") -> str:
    return json.dumps([{"signature": s, "accountData": []} for s in sigs])[:-1] + extra + "]"


def test_concurrent_requests_share_one_commit_and_hear_back_after_it(store: repo.Store) -> None:
    held = hold(store)  # the only connection: every write waits behind it
    futures = [store.store_body(body(f"s{i}", "dup"), ((f"s{i}", ("w",)), ("dup", ("w",)))) for i in range(20)]
    assert not any(f.done() for f in futures)  # nothing answered before its commit
    store._loop.run(store.pool.release(held))
    results = [f.result(10) for f in futures]
    assert store.inbox.commits <= 2  # 20 requests: one or two commits, not 20
    assert results[0] == {"s0", "dup"} and all(r == {f"s{i}"} for i, r in enumerate(results) if i)  # dup: first only
    rows = store.run(lambda c: c.fetch("SELECT signature, wallets, processed_at IS NULL AS pending FROM webhook_inbox"))
    assert {r["signature"] for r in rows} == {f"s{i}" for i in range(20)} | {"dup"}
    assert all(r["wallets"] == ["w"] and r["pending"] for r in rows)
    again = store.store_body(body("s3"), (("s3", ("w",)),)).result(10)
    assert again == set()  # stored before: a duplicate


def test_submissions_from_many_threads_at_once_each_hear_their_own_result(store: repo.Store) -> None:
    held = hold(store)
    with ThreadPoolExecutor(8) as pool:  # eight threads submitting at once: one wake-up of the loop may carry many
        futures = list(pool.map(lambda i: store.store_body(body(f"t{i}"), ((f"t{i}", ("w",)),)), range(200)))
    store._loop.run(store.pool.release(held))
    assert [f.result(10) for f in futures] == [{f"t{i}"} for i in range(200)]
    assert store.inbox.commits <= 3


def test_a_submission_to_a_stopped_store_fails_at_once_every_time() -> None:
    loop = AsyncioThread()
    commit: GroupCommit[str, str] = GroupCommit(loop.loop, lambda fn: fn(None), lambda _c, items: items, ())
    loop.stop()
    for _ in range(2):  # not only the first: a second caller must not wait forever on a wake-up that never comes
        with pytest.raises(RuntimeError):
            commit.submit("x")


def test_a_body_the_database_refuses_fails_alone(store: repo.Store) -> None:
    held = hold(store)
    good = [store.store_body(body(f"g{i}"), ((f"g{i}", ()),)) for i in range(5)]
    bad = store.store_body(body("bad", extra=', {"signature": "bad2", "x": "\\ud800"}'), (("bad", ()), ("bad2", ())))
    store._loop.run(store.pool.release(held))
    with pytest.raises(asyncpg.DataError):
        bad.result(10)
    assert [f.result(10) for f in good] == [{f"g{i}"} for i in range(5)]  # stored all the same
    rows = store.run(lambda c: c.fetch("SELECT signature, processed_at IS NOT NULL AS done FROM webhook_inbox"))
    assert sorted(r["signature"] for r in rows) == [f"g{i}" for i in range(5)] and all(r["done"] for r in rows)


def test_journal_appends_of_many_positions_are_one_transaction_each_batch(store: repo.Store) -> None:
    from actors.messages import JournalEvent, Observation, PaperEntry
    from actors.trades import WSOL_MINT, Trade

    ids = []
    for i in range(5):
        t = Trade(f"sig{i}", "W", "buy", "M", 10, 6, WSOL_MINT, 100, None)
        res = store.record_observation(Observation(f"sig{i}", "W", "signal", t, "taken", "copy_buy",
                                                   entry=PaperEntry(100, 10))).result(10)
        ids.append(res.position_id)
    held = hold(store)
    futures = [store.append_position_events(pid, (JournalEvent(2, "high_water", {"price": "1/1"}),),
                                            {"status": "pending_entry", "token_amount_open": 0, "exit_quote_amount": 0,
                                             "realized_pnl_quote": None, "exit_reason": None}) for pid in ids]
    store._loop.run(store.pool.release(held))
    assert [f.result(10) for f in futures] == [None] * 5
    assert store.journals.commits <= 2
    n = store.run(lambda c: c.fetchval("SELECT count(*) FROM position_events WHERE kind = 'high_water'"))
    assert n == 5


def test_the_gateway_answers_400_for_a_body_the_database_refuses_and_200_for_the_next(app) -> None:  # noqa: ANN001
    import httpx

    from tests.conftest import SECRET, fixture

    url = f"http://127.0.0.1:{app.gateway_port}/webhooks/helius"
    tx = fixture("helius_enhanced_pump_amm_swaps_trimmed.json")[0]
    refused = json.dumps([tx])[:-2] + ', "memo": "\\ud800"}]'  # valid JSON that jsonb cannot hold
    r = httpx.post(url, content=refused, headers={"Authorization": SECRET}, timeout=10)
    assert r.status_code == 400 and r.json()["error"] == "invalid_json", r.text
    r = httpx.post(url, content=json.dumps([tx]), headers={"Authorization": SECRET}, timeout=10)
    assert r.status_code == 200 and r.json() == {"accepted": 1, "duplicates": 0}
    for bad in ('[{"signature": NaN}]', '[1e999999]'):
        assert httpx.post(url, content=bad, headers={"Authorization": SECRET}, timeout=10).status_code == 400
