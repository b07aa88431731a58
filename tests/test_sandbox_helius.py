"""The sandbox's Helius: payloads our classifier must read exactly, and at-least-once delivery over real HTTP.

Payload tests render real market trades (and synthetic variants covering every dex x quote x first buy /
partial / full sell) in every shape `shapes_for` lists, round-trip them through JSON, and check that
`actors.trades.classify` recovers each trade exactly from `accountData`, whatever the hints say. Poster tests
run a real Quart-trio receiver under Hypercorn on 127.0.0.1 and count what actually arrives.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator

import pytest
import trio
from quart import Response, request
from quart_trio import QuartTrio

from actors.trades import USDC_MINT, WSOL_MINT, Trade, check_shape, classify
from sandbox.faults import Faults
from sandbox.helius import (
    PRESENTATIONS,
    RENT_TOKEN_ACCOUNT,
    HeliusPoster,
    Shape,
    choose_shape,
    enhanced_tx,
    shape_rng,
    shapes_for,
    vault_owner,
)
from sandbox.market import LeaderTrade, Market, signature
from sandbox.server import server_main
from walltrack.bridge import TrioThread

SECRET = "Bearer sandbox-s3cret/=+"  # sent exactly as configured: no prefix added

REAL_FIELDS = set(json.loads((Path(__file__).parent / "fixtures" / "helius_enhanced_swap.json").read_text())[0])


def market_trades(seed: int, seconds: float) -> list[LeaderTrade]:
    m = Market(seed)
    return m.step_to(m.start + seconds)


MARKET = market_trades(7, 3 * 3600)


def synthetic_trades() -> list[tuple[str, LeaderTrade]]:
    """Every dex x quote x (first buy, later buy, partial sell, full sell), from a real trade's addresses."""
    base = next(t for t in MARKET if t.side == "buy")
    out = []
    for dex in PRESENTATIONS:
        for quote in (WSOL_MINT, USDC_MINT):
            for case, side, before in (("first-buy", "buy", 0), ("buy", "buy", 10**9), ("part-sell", "sell", 3 * 10**12),
                                       ("full-sell", "sell", base.token_amount)):
                t = replace(base, dex=dex, quote_mint=quote, side=side, holding_before=before,  # type: ignore[arg-type]
                            signature=signature(f"{base.signature}:{dex}:{case}:{quote}"))
                out.append((f"{dex}-{'usdc' if quote == USDC_MINT else 'sol'}-{case}", t))
    # amounts whose UI floats lose precision: raw must still be exact
    big = replace(base, token_amount=123_456_789_012_345_678, quote_amount=987_654_321_987, holding_before=0)
    out.append(("huge-amounts", big))
    return out


def roundtrip(tx: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(tx))


def expected(trade: LeaderTrade, wallet: str, mirror: bool = False) -> tuple[Any, ...]:
    side = trade.side if not mirror else ("sell" if trade.side == "buy" else "buy")
    return (trade.signature, wallet, side, trade.mint, trade.token_amount, trade.decimals, trade.quote_mint, trade.quote_amount)


def got(t: Trade | None) -> tuple[Any, ...] | None:
    return None if t is None else (t.signature, t.wallet, t.side, t.token_mint, t.token_amount, t.token_decimals,
                                   t.quote_mint, t.quote_amount)


def assert_payload(trade: LeaderTrade, shape: Shape) -> dict[str, Any]:
    """Everything a payload must satisfy, for one trade in one shape."""
    tx = roundtrip(enhanced_tx(trade, shape))
    where = f"{trade.side} {trade.dex} {shape}"
    assert set(tx) == REAL_FIELDS, where
    check_shape(tx)
    assert tx["transactionError"] is None and tx["instructions"] == [] and tx["source"] == shape.source
    assert tx["feePayer"] == (shape.relayer or trade.leader), where

    # The leader's trade, exactly, whatever the hints say.
    assert got(classify(tx, trade.leader)) == expected(trade, trade.leader), where
    # The relayer made no trade; the vaults' owner made the mirror trade (it is a counterparty, not a leader).
    if shape.relayer:
        assert classify(tx, shape.relayer) is None, where
    owner = trade.pool if shape.funding == "native_direct" else vault_owner(trade)
    assert got(classify(tx, owner)) == expected(trade, owner, mirror=True), where
    if owner != trade.pool:
        assert classify(tx, trade.pool) is None, where

    # Internal consistency: lamports are conserved but for the fee; the token and USDC are conserved.
    rows = tx["accountData"]
    assert sum(r["nativeBalanceChange"] for r in rows) == -tx["fee"], where
    per_mint: Counter[str] = Counter()
    for r in rows:
        for ch in r["tokenBalanceChanges"]:
            assert ch["tokenAccount"] == r["account"]
            per_mint[ch["mint"]] += int(ch["rawTokenAmount"]["tokenAmount"])
    assert per_mint[trade.mint] == 0 and per_mint[USDC_MINT] == 0, where
    # WSOL token accounts move lamports with their WSOL balance.
    for r in rows:
        wsol = [int(c["rawTokenAmount"]["tokenAmount"]) for c in r["tokenBalanceChanges"] if c["mint"] == WSOL_MINT]
        if wsol:
            assert r["nativeBalanceChange"] == sum(wsol), where
    # tokenTransfers are lossy UI floats of the raw amounts.
    decimals = {trade.mint: trade.decimals, WSOL_MINT: 9, USDC_MINT: 6}
    moved = {trade.mint: trade.token_amount, WSOL_MINT: trade.quote_amount, USDC_MINT: trade.quote_amount}
    assert tx["tokenTransfers"], where
    for t in tx["tokenTransfers"]:
        assert isinstance(t["tokenAmount"], float)
        assert math.isclose(t["tokenAmount"], moved[t["mint"]] / 10 ** decimals[t["mint"]], rel_tol=1e-15), where
    # Native SOL through a temporary WSOL account shows the wrap in nativeTransfers; rent shows too.
    transfers = {(n["fromUserAccount"], n["toUserAccount"], n["amount"]) for n in tx["nativeTransfers"]}
    if shape.funding == "native" and trade.side == "buy":
        assert any(f == trade.leader and a == trade.quote_amount for f, _, a in transfers), where
    if shape.new_account:
        assert (shape.relayer if shape.rent_by_relayer else trade.leader, trade.token_account, RENT_TOKEN_ACCOUNT) in transfers
    if shape.funding in ("native", "native_direct"):
        leader_row = next(r for r in rows if r["account"] == trade.leader)
        sign = -1 if trade.side == "buy" else 1
        fee = tx["fee"] if tx["feePayer"] == trade.leader else 0
        rent = RENT_TOKEN_ACCOUNT if shape.new_account else -RENT_TOKEN_ACCOUNT if shape.close_account else 0
        assert leader_row["nativeBalanceChange"] == sign * trade.quote_amount - fee - rent, where

    # The hints: type and events as the shape says; the swap event points the right (or the wrong) way.
    assert tx["type"] in ({"BUY", "SELL"} if shape.type == "BUY" else {shape.type})
    if shape.events == "empty_list":
        assert tx["events"] == []
    elif shape.events == "empty_object":
        assert tx["events"] == {}
    else:
        swap = tx["events"]["swap"]
        native = shape.funding in ("native", "native_direct")
        quote_in = (trade.side == "buy") != (shape.events == "swap_inverted")
        quote_leg = swap["nativeInput" if quote_in else "nativeOutput"] if native else \
            (swap["tokenInputs"] if quote_in else swap["tokenOutputs"])[0]
        token_leg = (swap["tokenOutputs"] if quote_in else swap["tokenInputs"])[-1]
        actor = shape.relayer if shape.events == "swap_keeper" else trade.leader
        assert (quote_leg.get("account") or quote_leg.get("userAccount")) == actor, where
        assert int(quote_leg.get("amount") or quote_leg["rawTokenAmount"]["tokenAmount"]) == trade.quote_amount
        assert token_leg["userAccount"] == actor and token_leg["mint"] == trade.mint
        assert token_leg["rawTokenAmount"] == {"tokenAmount": str(trade.token_amount), "decimals": trade.decimals}
        assert swap["innerSwaps"][0]["programInfo"]["instructionName"] == "SwapEvent"
        assert tx["description"].startswith(actor + " swapped ")
    return tx


# -- payloads ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("label, trade", synthetic_trades(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_shape_classifies_exactly(label: str, trade: LeaderTrade) -> None:
    shapes = shapes_for(trade)
    assert len(shapes) >= 6
    for shape in shapes:
        assert_payload(trade, shape)
    for shape in shapes:  # the same trade and shape always render the same payload
        assert enhanced_tx(trade, shape) == enhanced_tx(trade, shape)


def test_shapes_for_covers_every_awkward_shape() -> None:
    """The table really contains what API-FORMATS §1.5-1.7 describes."""
    seen: dict[str, set[Any]] = {k: set() for k in ("type", "source", "events", "funding", "relayer", "new", "close")}
    for _, trade in synthetic_trades():
        for s in shapes_for(trade):
            for k, v in (("type", s.type), ("source", s.source), ("events", s.events), ("funding", s.funding),
                         ("relayer", s.relayer is not None), ("new", s.new_account), ("close", s.close_account)):
                seen[k].add(v)
    assert seen["type"] == {"SWAP", "TRANSFER", "UNKNOWN", "BUY"}
    assert seen["source"] == {"RAYDIUM", "PUMP_AMM", "PUMP_FUN", "JUPITER", "METEORA", "UNKNOWN"}
    assert seen["events"] == {"swap", "swap_inverted", "swap_keeper", "empty_object", "empty_list"}
    assert seen["funding"] == {"native", "native_direct", "wsol", "usdc"}
    assert seen["relayer"] == seen["new"] == seen["close"] == {True, False}


def test_market_trades_in_their_chosen_shapes_classify_exactly() -> None:
    """The shapes the poster will actually send: 750 real market trades (two seeds), each drawn from its RNG."""
    trades = MARKET + market_trades(11, 2 * 3600)
    assert {t.side for t in trades} == {"buy", "sell"} and {t.quote_mint for t in trades} == {WSOL_MINT, USDC_MINT}
    chosen: Counter[str] = Counter()
    for t in trades:
        shape = choose_shape(shape_rng(3, t), t)
        assert shape == choose_shape(shape_rng(3, t), t)  # deterministic by seed and trade
        assert not shape.rent_by_relayer
        tx = assert_payload(t, shape)
        assert tx["fee"] == 5000 + shape.priority_fee
        chosen.update([shape.events, shape.funding, shape.source, f"relayer={shape.relayer is not None}",
                       f"new={shape.new_account}", f"close={shape.close_account}"])
    for k in ("swap", "swap_inverted", "swap_keeper", "empty_object", "empty_list", "native", "native_direct", "wsol",
              "usdc", "RAYDIUM", "PUMP_AMM", "PUMP_FUN", "JUPITER", "METEORA", "UNKNOWN", "relayer=True", "new=True",
              "close=True"):
        assert chosen[k] > 0, k
    assert chosen["swap_inverted"] + chosen["swap_keeper"] < chosen["swap"] / 3  # occasional, not the rule
    assert chosen["relayer=True"] < chosen["relayer=False"] / 3
    # another seed presents the same trades differently
    assert [choose_shape(shape_rng(4, t), t) for t in trades[:40]] != [choose_shape(shape_rng(3, t), t) for t in trades[:40]]


@pytest.mark.parametrize("shape", [
    Shape("SWAP", "RAYDIUM", "swap", "usdc"),  # USDC funding for a SOL-quoted token
    Shape("SWAP", "PUMP_FUN", "empty_object", "native"),  # a curve takes lamports directly
    Shape("SWAP", "RAYDIUM", "swap_keeper", "native"),  # keeper attribution without a keeper
    Shape("TRANSFER", "UNKNOWN", "swap", "native"),
    Shape("SWAP", "RAYDIUM", "swap", "native", close_account=True),  # a buy closes nothing
])
def test_shapes_that_do_not_fit_are_refused(shape: Shape) -> None:
    trade = next(t for t in MARKET if t.side == "buy" and t.quote_mint == WSOL_MINT)
    with pytest.raises(ValueError):
        enhanced_tx(trade, shape)


def _relayer_rent_trade(side: str) -> tuple[LeaderTrade, dict[str, Any]]:
    trade = next(t for t in MARKET if t.side == side and t.quote_mint == WSOL_MINT and t.holding_before == (
        0 if side == "buy" else t.token_amount))
    shape = next(s for s in shapes_for(trade, known_gaps=True) if s.rent_by_relayer and s.funding == "native")
    return trade, roundtrip(enhanced_tx(trade, shape))


def test_relayer_paid_rent_is_not_the_leaders_sol() -> None:
    """A relayer pays the rent of the leader's new token account (visible in nativeTransfers): exact."""
    trade, tx = _relayer_rent_trade("buy")
    assert got(classify(tx, trade.leader)) == expected(trade, trade.leader)


def test_rent_refunded_to_a_relayer_is_off_by_exactly_that_rent() -> None:
    """Known limit, documented: a full sell whose closed token account refunds its rent to a relayer shows no
    nativeTransfer for the refund, so balance deltas cannot tell it from a refund to the leader. Everything but
    the SOL received is exact, and that is low by exactly one token account's rent (2,039,280 lamports)."""
    trade, tx = _relayer_rent_trade("sell")
    t = classify(tx, trade.leader)
    assert t is not None
    assert got(t)[:7] == expected(trade, trade.leader)[:7]
    assert trade.quote_amount - t.quote_amount == 2_039_280


# -- the poster, against a real HTTP receiver -------------------------------------------------------------------


class Receiver:
    """A webhook endpoint: POST /hook/<mode>/<name>. Modes: ok, flaky (500 the first time a body arrives), fail
    (always 500), hang (the first time a body arrives, never answers in time). Records every request."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: dict[str, list[tuple[str | None, bytes]]] = {}
        self.times: dict[str, list[tuple[bytes, float]]] = {}  # (body, time.monotonic() on arrival)
        app = QuartTrio("helius-receiver")

        @app.post("/hook/<mode>/<name>")
        async def hook(mode: str, name: str) -> Response:
            body = await request.get_data()
            with self.lock:
                seen = self.requests.setdefault(name, [])
                first = all(b != body for _, b in seen)
                seen.append((request.headers.get("Authorization"), body))
                self.times.setdefault(name, []).append((body, time.monotonic()))
            if mode == "fail" or (mode == "flaky" and first):
                return Response('{"error":"boom"}', status=500, mimetype="application/json")
            if mode == "hang" and first:
                await trio.sleep(60)
            return Response('{"ok":true}', status=200, mimetype="application/json")

        self.thread = TrioThread(server_main(app), name="helius-receiver")
        self.port = self.thread.start()
        self.n = 0

    def url(self, mode: str) -> tuple[str, str]:
        self.n += 1
        name = f"t{self.n}"
        return f"http://127.0.0.1:{self.port}/hook/{mode}/{name}", name

    def got(self, name: str) -> list[tuple[str | None, bytes]]:
        with self.lock:
            return list(self.requests.get(name, []))


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.thread.stop()


def some_trades(n: int, start: int = 0) -> list[LeaderTrade]:
    return MARKET[start:start + n]


def classify_body(body: bytes) -> dict[str, tuple[Any, ...] | None]:
    txs = json.loads(body)
    assert isinstance(txs, list) and txs
    return {tx["signature"]: got(classify(check_shape(tx), leader_of[tx["signature"]])) for tx in txs}


leader_of = {t.signature: t.leader for t in MARKET}


@pytest.mark.trio
async def test_failed_delivery_is_retried_and_arrives(receiver: Receiver) -> None:
    url, name = receiver.url("flaky")
    trades = some_trades(5)
    poster = HeliusPoster(url, SECRET, retry_interval_s=0.01, batch_rate=0.0, seed=1)
    assert await poster.deliver(trades) == [True] * 5
    s = poster.stats()
    assert (s.attempts, s.delivered, s.retried, s.dropped, s.duplicates, s.pending) == (10, 5, 5, 0, 0, 0)
    reqs = receiver.got(name)
    assert len(reqs) == 10 and {auth for auth, _ in reqs} == {SECRET}
    bodies = Counter(b for _, b in reqs)
    assert sorted(bodies.values()) == [2] * 5  # the failed attempt and its retry, identical
    arrived: dict[str, Any] = {}
    for body in bodies:
        arrived |= classify_body(body)
    assert arrived == {t.signature: expected(t, t.leader) for t in trades}


@pytest.mark.trio
async def test_always_failing_endpoint_drops_after_three_retries_at_the_interval(receiver: Receiver) -> None:
    url, name = receiver.url("fail")
    interval = 0.1
    poster = HeliusPoster(url, SECRET, retry_interval_s=interval, batch_rate=0.0, duplicate_rate=1.0, seed=1)
    assert await poster.deliver(some_trades(2)) == [False, False]
    with receiver.lock:
        arrivals = list(receiver.times[name])
    for body in {b for b, _ in arrivals}:
        times = [t for b, t in arrivals if b == body]
        assert all(later - earlier >= interval * 0.95 for earlier, later in zip(times, times[1:])), times
    s = poster.stats()
    assert (s.attempts, s.delivered, s.retried, s.dropped, s.duplicates) == (8, 0, 6, 2, 0)  # no duplicate of a drop
    assert len(receiver.got(name)) == 8 and sorted(Counter(b for _, b in receiver.got(name)).values()) == [4, 4]


@pytest.mark.trio
async def test_a_timeout_counts_as_a_failure_and_is_retried(receiver: Receiver) -> None:
    url, name = receiver.url("hang")
    poster = HeliusPoster(url, SECRET, retry_interval_s=0.01, timeout_s=0.3, batch_rate=0.0, seed=2)
    assert await poster.deliver(some_trades(1)) == [True]
    s = poster.stats()
    assert (s.attempts, s.retried, s.delivered, s.dropped) == (2, 1, 1, 0)
    assert len(receiver.got(name)) == 2


@pytest.mark.trio
async def test_every_delivery_twice_at_duplicate_rate_one(receiver: Receiver) -> None:
    url, name = receiver.url("ok")
    poster = HeliusPoster(url, SECRET, retry_interval_s=0.01, batch_rate=0.0, duplicate_rate=1.0, seed=5)
    assert await poster.deliver(some_trades(4, 10)) == [True] * 4
    s = poster.stats()
    assert (s.delivered, s.duplicates, s.attempts, s.retried) == (4, 4, 8, 0)
    assert sorted(Counter(b for _, b in receiver.got(name)).values()) == [2] * 4


@pytest.mark.trio
async def test_duplicates_follow_the_configured_rate_deterministically(receiver: Receiver) -> None:
    trades = some_trades(200, 20)

    def plan(seed: int) -> list[Any]:
        return HeliusPoster("http://unused", SECRET, duplicate_rate=0.25, batch_rate=0.0, seed=seed).plan(trades)

    a, b, c = plan(9), plan(9), plan(10)
    assert a == b and [d.duplicate for d in a] != [d.duplicate for d in c]
    assert 25 <= sum(d.duplicate for d in a) <= 75  # 200 deliveries at 25%: 50 expected
    zero = HeliusPoster("http://unused", SECRET, duplicate_rate=0.0, seed=9).plan(trades)
    assert not any(d.duplicate for d in zero)

    # over HTTP: exactly the planned duplicates arrive twice
    url, name = receiver.url("ok")
    poster = HeliusPoster(url, SECRET, retry_interval_s=0.01, duplicate_rate=0.25, batch_rate=0.0, seed=9)
    planned = HeliusPoster(url, SECRET, duplicate_rate=0.25, batch_rate=0.0, seed=9).plan(trades[:24])
    await poster.deliver(trades[:24])
    counts = Counter(b for _, b in receiver.got(name))
    assert {d.body: 1 + d.duplicate for d in planned} == dict(counts)
    assert poster.stats().duplicates == sum(d.duplicate for d in planned) > 0


@pytest.mark.trio
async def test_batched_deliveries_carry_two_or_three_transactions(receiver: Receiver) -> None:
    url, name = receiver.url("ok")
    trades = some_trades(12, 40)
    poster = HeliusPoster(url, SECRET, batch_rate=1.0, seed=3)
    results = await poster.deliver(trades)
    bodies = [json.loads(b) for _, b in receiver.got(name)]
    assert len(results) == len(bodies) == poster.stats().delivered
    assert all(1 <= len(b) <= 3 for b in bodies) and sum(len(b) == 1 for b in bodies) <= 1  # only the last can be short
    assert sorted(tx["signature"] for b in bodies for tx in b) == sorted(t.signature for t in trades)
    # the default is mostly single transactions
    sizes = [len(json.loads(d.body)) for d in HeliusPoster("http://unused", SECRET, seed=3).plan(some_trades(200))]
    assert 0.7 < sizes.count(1) / len(sizes) < 0.97 and max(sizes) <= 3


@pytest.mark.trio
async def test_submit_from_another_thread_while_running(receiver: Receiver) -> None:
    url, name = receiver.url("flaky")
    poster = HeliusPoster(url, SECRET, retry_interval_s=0.01, batch_rate=0.0, seed=4)
    poster.submit(some_trades(3, 60))  # before run: kept until it starts
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            await nursery.start(poster.run)
            await trio.to_thread.run_sync(poster.submit, some_trades(4, 63))
            s = await poster.wait_for(lambda s: s.delivered == 7 and s.pending == 0)
            from_thread = await trio.to_thread.run_sync(poster.stats)
            nursery.cancel_scope.cancel()
    assert (s.deliveries, s.attempts, s.retried, s.dropped) == (7, 14, 7, 0)
    assert from_thread.delivered == 7 and vars(from_thread) == from_thread.as_dict() and from_thread.as_dict()["delivered"] == 7
    sigs = {sig for _, body in receiver.got(name) for sig in classify_body(body)}
    assert sigs == {t.signature for t in some_trades(7, 60)}


@pytest.mark.trio
async def test_missed_events_are_never_sent(receiver: Receiver) -> None:
    url, name = receiver.url("ok")
    poster = HeliusPoster(url, SECRET, batch_rate=0.0, seed=4, faults=Faults(error_rate=1.0))
    assert await poster.deliver(some_trades(3)) == [False] * 3
    assert poster.stats().missed == 3 and poster.stats().attempts == 0 and receiver.got(name) == []


@pytest.mark.parametrize("secret", [" padded", "trailing ", "line\nbreak"])
def test_a_secret_that_cannot_be_a_header_value_is_refused_up_front(secret: str) -> None:
    with pytest.raises(ValueError):
        HeliusPoster("http://127.0.0.1:1/hook", secret)
