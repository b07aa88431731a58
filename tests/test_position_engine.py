"""Each exit through a real PositionActor: positions opened through the real store (embedded PostgreSQL),
entries and exits filled by the paper executor at the sandbox Jupiter's quotes, price paths made by moving
the sandbox pool and ticked as the price monitor would. Every closed position's PnL is the sum of its fills."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, fields, replace
from decimal import Decimal
from typing import Iterator

import pykka
import pytest

from actors.directory import Directory
from actors.messages import (
    ClosePartial,
    ClosePosition,
    CommandReply,
    JournalEvent,
    LeaderSold,
    Observation,
    PaperEntry,
    PriceTick,
    SetStop,
)
from actors.ports import ExitPlan, Ports
from actors.position import PositionActor, PositionState, fold, quote_price
from actors.supervisor import RootSupervisor
from actors.trades import Trade
from sandbox import jupiter as sandbox_jupiter
from sandbox.faults import FaultBoard
from sandbox.market import WSOL_MINT, Market
from sandbox.server import create_app, server_main
from tests.conftest import wait_until
from adapters.jupiter import JupiterClient
from walltrack.bridge import AsyncioThread, TrioThread
from storage.db import migrate
from execution.paper import PaperExecutor
from storage.store import Store

LEADER = "9JGuVmjXTeMea6VY6fpsu8783YeJME8bewyy9qv9UBxh"
SIZE = 100_000_000  # 0.1 SOL
BASE = ExitPlan(stop_loss_pct=Decimal(20), take_profit=(), trailing_distance_pct=Decimal(0), time_stop_s=0,
                emergency_min_liquidity_usd=Decimal(0), stale_limit_s=300, exit_retry_s=30)
_sigs = itertools.count(1)


class Clock:
    """The bot's injected clock (simulated time), moved by the test."""

    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@dataclass
class Engine:
    market: Market
    faults: FaultBoard
    store: Store
    executor: PaperExecutor
    clock: Clock
    root: pykka.ActorRef
    loop: AsyncioThread
    refs: dict[int, pykka.ActorRef]
    directory: Directory | None = None  # the root's: where its running children are looked up

    def open(self, symbol: str, plan: ExitPlan = BASE, mint: str | None = None, quote_mint: str = WSOL_MINT,
             leader_tokens: int = 5_000_000_000) -> int:
        """A taken copy-buy recorded the way the wallet actor records it; its actor fills the entry."""
        mint = mint or self.market.by_symbol[symbol].mint
        trade = Trade(f"buy{next(_sigs)}", LEADER, "buy", mint, leader_tokens, 6, quote_mint, 10 * SIZE, "RAYDIUM")
        obs = Observation(trade.signature, LEADER, "signal", trade, "taken", "copy_buy",
                          entry=PaperEntry(SIZE, leader_tokens // 10))
        res = self.store.record_observation(obs).result(10)
        assert res.position_id is not None and res.journal[0].data["entry"] == "pending"
        self.start(res.position_id, res.journal, plan)
        return res.position_id

    def start(self, pid: int, journal: tuple[JournalEvent, ...], plan: ExitPlan = BASE) -> pykka.ActorRef:
        ports = Ports(self.store, self.loop, clock=self.clock, executor=self.executor, exit_plan=plan)
        self.refs[pid] = PositionActor.start(pid, journal, ports, self.root)
        return self.refs[pid]

    def state(self, pid: int) -> PositionState:
        return self.refs[pid].ask("state", timeout=5)

    def settle(self, pid: int, status: str | tuple[str, ...] = ("open", "partially_closed")) -> PositionState:
        """Wait until the position is idle (no order outstanding, no fill or write under way) in `status`."""
        want = (status,) if isinstance(status, str) else status
        return wait_until(lambda: (s := self.state(pid)).status in want and s.order is None and self.idle(pid) and s,
                          timeout=15)

    def idle(self, pid: int) -> bool:
        """True once everything told to the position so far has been decided and its I/O is done."""
        return self.refs[pid].ask("idle", timeout=5)

    def journal(self, pid: int) -> tuple[JournalEvent, ...]:
        return self.store.position_journal(pid).result(10)

    def kinds(self, pid: int) -> list[str]:
        return [e.kind for e in self.journal(pid)]

    def tick(self, pid: int, usd: Decimal | None | str = "market", stale: bool = False, at: float | None = None,
             liquidity: Decimal | None | str = "market") -> None:
        mint = self.state(pid).token_mint
        with self.market.lock:
            known = mint in self.market.tokens
            price = Decimal(repr(self.market.price_usd(mint))) if known else None
            liq = Decimal(repr(self.market.liquidity_usd(mint))) if known else None
        self.refs[pid].tell(PriceTick(
            mint, price if usd == "market" else usd, Decimal(repr(self.market.sol_usd)), "jupiter",  # type: ignore[arg-type]
            self.clock() if at is None else at, stale, liquidity_usd=liq if liquidity == "market" else liquidity))  # type: ignore[arg-type]

    def move_to(self, pid: int, ratio: float) -> None:
        """Move the pool (x*y=k kept) so the mid price is `ratio` times the position's entry price."""
        s = self.state(pid)
        t = self.market.tokens[s.token_mint]
        with self.market.lock:
            now = quote_price(s, PriceTick(s.token_mint, Decimal(repr(self.market.price_usd(s.token_mint))),
                                           Decimal(repr(self.market.sol_usd)), "jupiter", 0.0))
            assert now is not None and s.entry_price is not None
            f = ratio * float(s.entry_price / now)
            t.pool.base_reserve = int(t.pool.base_reserve / math.sqrt(f))
            t.pool.quote_reserve = int(t.pool.quote_reserve * math.sqrt(f))

    def step_tick(self, pid: int, ratio: float) -> PositionState:
        """Move the price, tick it, and wait until the position has acted on it."""
        self.move_to(pid, ratio)
        self.tick(pid)
        wait_until(lambda: self.idle(pid), timeout=15)
        return self.state(pid)

    def exit_events(self, pid: int) -> list[JournalEvent]:
        return [e for e in self.journal(pid) if e.kind in ("partial_exit", "exit_filled")]

    def assert_pnl_is_the_sum_of_fills(self) -> int:
        """For every closed position: realized PnL == Σ sell fills − the buy fill, to the raw unit."""
        rows = self.store.run(lambda c: c.fetch(
            """SELECT p.id, p.realized_pnl_quote AS pnl, p.exit_quote_amount, p.entry_quote_amount,
                      coalesce(sum(CASE WHEN f.side = 'sell' THEN f.quote_amount ELSE -f.quote_amount END), 0) AS fills,
                      count(f.*) FILTER (WHERE f.side = 'buy') AS buys
                 FROM positions p LEFT JOIN fills f ON f.position_id = p.id
                WHERE p.status = 'closed' GROUP BY p.id"""))
        for r in rows:
            assert r["buys"] == 1 and r["pnl"] == r["fills"] == r["exit_quote_amount"] - r["entry_quote_amount"], dict(r)
        for r in rows:  # and the journal says the same as the fills table
            journal = self.journal(r["id"])
            fills = [e.data["fill"] for e in journal if "fill" in e.data]
            signed = sum(int(f["quote_amount"]) * (1 if f["side"] == "sell" else -1) for f in fills)
            assert signed == r["pnl"] == fold(r["id"], journal).realized_pnl_quote
        return len(rows)


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    market = Market(seed=5)
    faults = FaultBoard()
    sandbox = TrioThread(server_main(create_app({"jupiter": sandbox_jupiter.blueprint(market, faults["jupiter"])})),
                         name="sandbox")
    port = sandbox.start()
    loop = AsyncioThread()
    store = Store.open(loop, db_url)
    store.run(migrate)
    runtime = TrioThread(name="walltrack-trio").start()
    jup = JupiterClient(f"http://127.0.0.1:{port}/jupiter", tier="pro")
    clock = Clock(market.start)
    executor = PaperExecutor(runtime, jup, clock, slippage_bps=100, priority_fee_lamports=10_000)
    ports = Ports(store, loop, clock=clock, executor=executor)
    root = RootSupervisor.start(ports)
    eng = Engine(market, faults, store, executor, clock, root, loop, {}, ports.directory)
    try:
        yield eng
        eng.assert_pnl_is_the_sum_of_fills()
    finally:
        pykka.ActorRegistry.stop_all()
        runtime.submit(jup.aclose).result(10)
        runtime.stop()
        store.close()
        loop.stop()
        sandbox.stop()


# -- entry -------------------------------------------------------------------------------------------------
def test_entry_fills_at_the_quote_with_impact_slippage_and_fees(engine: Engine) -> None:
    token = engine.market.by_symbol["STDY"]
    with engine.market.lock:
        out, impact, _ = engine.market.quote(WSOL_MINT, token.mint, SIZE)  # type: ignore[misc]
    pid = engine.open("STDY")
    s = engine.settle(pid, "open")
    assert s.entry_token_amount == out - out * 100 // 10_000  # the quote for the real size, minus 1 % slippage
    assert s.entry_quote_amount == SIZE + 5_000 + 10_000  # plus the network and priority fees
    (filled,) = [e for e in engine.journal(pid) if e.kind == "entry_filled"]
    assert filled.data["plan"] == BASE.as_json() and filled.data["at"] == engine.clock()
    assert impact > 0 and Decimal(filled.data["fill"]["price_impact"]) > 0
    row = engine.store.run(lambda c: c.fetchrow("SELECT * FROM positions WHERE id = $1", pid))
    assert (row["status"], int(row["entry_token_amount"]), int(row["token_amount_open"])) == \
        ("open", s.entry_token_amount, s.entry_token_amount)


def test_entry_without_a_route_fails_and_books_nothing(engine: Engine) -> None:
    pid = engine.open("", mint="UnknownMint1111111111111111111111111111111")
    s = engine.settle(pid, "entry_failed")
    assert engine.kinds(pid) == ["opened", "entry_failed"] and s.realized_pnl_quote == 0
    assert "route" in engine.journal(pid)[1].data["error"].lower()
    row = engine.store.run(lambda c: c.fetchrow("SELECT status, closed_at FROM positions WHERE id = $1", pid))
    assert row["status"] == "entry_failed" and row["closed_at"] is not None


# -- each exit kind ----------------------------------------------------------------------------------------
def test_stop_loss(engine: Engine) -> None:
    pid = engine.open("STDY")
    engine.settle(pid, "open")
    engine.step_tick(pid, 0.85)
    assert engine.state(pid).status == "open"
    s = engine.step_tick(pid, 0.79)
    assert s.status == "closed" and s.exit_reason == "stop_loss" and s.realized_pnl_quote < 0
    assert engine.kinds(pid)[-2:] == ["exit_ordered", "exit_filled"]


def test_take_profit_ladder_with_breakeven(engine: Engine) -> None:
    plan = replace(BASE, take_profit=((Decimal(20), Decimal("0.3")), (Decimal(40), Decimal("0.3"))),
                   breakeven_after_first_tp=True)
    pid = engine.open("STDY", plan)
    entry = engine.settle(pid, "open")
    s = engine.step_tick(pid, 1.25)
    assert s.status == "partially_closed" and s.tp_done == 1
    assert s.token_amount_open == entry.entry_token_amount - entry.entry_token_amount * 3 // 10
    assert s.stop == s.entry_price and s.stop_reason == "breakeven_stop"
    s = engine.step_tick(pid, 1.45)
    assert s.tp_done == 2 and s.token_amount_open == entry.entry_token_amount - 2 * (entry.entry_token_amount * 3 // 10)
    s = engine.step_tick(pid, 0.99)
    assert s.status == "closed" and s.exit_reason == "breakeven_stop"
    reasons = [e.data["reason"] for e in engine.exit_events(pid)]
    assert reasons == ["take_profit_1", "take_profit_2", "breakeven_stop"]
    assert s.realized_pnl_quote > 0  # two levels taken in profit, the rest out near the entry


def test_a_ladder_that_sells_everything_closes_by_take_profit(engine: Engine) -> None:
    plan = replace(BASE, take_profit=((Decimal(15), Decimal("0.5")), (Decimal(30), Decimal("0.5"))))
    pid = engine.open("MOON", plan)
    engine.settle(pid, "open")
    engine.step_tick(pid, 1.2)
    s = engine.step_tick(pid, 1.35)
    assert s.status == "closed" and s.exit_reason == "take_profit_2" and s.token_amount_open == 0


def test_trailing_stop(engine: Engine) -> None:
    plan = replace(BASE, trailing_activation_pct=Decimal(30), trailing_distance_pct=Decimal(10))
    pid = engine.open("CHOP", plan)
    engine.settle(pid, "open")
    for ratio in (1.1, 1.35, 1.6):
        s = engine.step_tick(pid, ratio)
    assert s.high_water is not None and s.entry_price is not None
    assert float(s.high_water / s.entry_price) == pytest.approx(1.6, rel=0.01)
    s = engine.step_tick(pid, 1.5)  # 6 % under the mark
    assert s.status == "open"
    s = engine.step_tick(pid, 1.42)  # 11 % under it
    assert s.status == "closed" and s.exit_reason == "trailing_stop" and s.realized_pnl_quote > 0
    assert engine.kinds(pid).count("high_water") == 3


def test_time_stop_needs_no_price(engine: Engine) -> None:
    pid = engine.open("STDY", replace(BASE, time_stop_s=600))
    engine.settle(pid, "open")
    engine.clock.t += 599
    engine.tick(pid, usd=None)
    wait_until(lambda: engine.idle(pid))
    assert engine.state(pid).status == "open"
    engine.clock.t += 2
    engine.tick(pid, usd=None)  # unknown price: the time stop still fires (it sells at the quote)
    s = engine.settle(pid, "closed")
    assert s.exit_reason == "time_stop"


def test_mirror_full(engine: Engine) -> None:
    pid = engine.open("STDY")
    engine.settle(pid, "open")
    engine.refs[pid].tell(LeaderSold(pid, "sell1", LEADER, 4_000, WSOL_MINT, 1, leader_holding_before=4_000))
    s = engine.settle(pid, "closed")
    assert s.exit_reason == "mirror_sell"
    (ordered,) = [e for e in engine.journal(pid) if e.kind == "exit_ordered"]
    assert ordered.data["basis"] == "leader_holding" and ordered.data["fraction"] == "1/1"


def test_mirror_partial_sells_the_leaders_fraction(engine: Engine) -> None:
    pid = engine.open("STDY")
    entry = engine.settle(pid, "open")
    engine.refs[pid].tell(LeaderSold(pid, "sell1", LEADER, 300, WSOL_MINT, 1, leader_holding_before=1_000))
    s = engine.settle(pid, "partially_closed")
    assert s.token_amount_open == entry.entry_token_amount - entry.entry_token_amount * 3 // 10
    engine.refs[pid].tell(LeaderSold(pid, "sell2", LEADER, 700, WSOL_MINT, 1, leader_holding_before=700))
    s = engine.settle(pid, "closed")
    assert s.exit_reason == "mirror_sell" and [e.data["reason"] for e in engine.exit_events(pid)] == ["mirror_sell"] * 2


def test_mirror_with_an_unknown_holding_is_proportional_to_the_copied_buy(engine: Engine) -> None:
    pid = engine.open("STDY", replace(BASE, mirror_unknown="proportional"), leader_tokens=8_000)
    entry = engine.settle(pid, "open")
    engine.refs[pid].tell(LeaderSold(pid, "sell1", LEADER, 2_000, WSOL_MINT, 1))  # a quarter of its buy
    s = engine.settle(pid, "partially_closed")
    assert s.token_amount_open == entry.entry_token_amount - entry.entry_token_amount // 4
    engine.refs[pid].tell(LeaderSold(pid, "sell2", LEADER, 6_000, WSOL_MINT, 1))  # the rest of it
    assert engine.settle(pid, "closed").exit_reason == "mirror_sell"


def test_emergency_exit_when_liquidity_drains(engine: Engine) -> None:
    pid = engine.open("STDY", replace(BASE, emergency_min_liquidity_usd=Decimal(2000)))
    engine.settle(pid, "open")
    engine.tick(pid)
    t = engine.market.by_symbol["STDY"]
    with engine.market.lock:  # liquidity pulled, the price unchanged
        t.pool.base_reserve //= 1000
        t.pool.quote_reserve //= 1000
    engine.tick(pid)
    s = engine.settle(pid, "closed")
    assert s.exit_reason == "emergency_liquidity" and s.realized_pnl_quote < 0  # the thin pool's impact is paid


def test_manual_close_fraction_and_stop_change(engine: Engine) -> None:
    pid = engine.open("STDY")
    entry = engine.settle(pid, "open")
    ref = engine.refs[pid]
    engine.tick(pid)
    for bad in (Decimal(0), Decimal("1.5"), Decimal(-1), "abc"):
        reply = ref.ask(ClosePartial(pid, bad), timeout=5)  # type: ignore[arg-type]
        assert isinstance(reply, CommandReply) and not reply.ok and "fraction" in (reply.error or "")
    assert ref.ask(ClosePartial(pid, Decimal("0.25")), timeout=5) == CommandReply(pid, True)
    s = engine.settle(pid, "partially_closed")
    assert s.token_amount_open == entry.entry_token_amount - entry.entry_token_amount // 4
    assert engine.exit_events(pid)[-1].data["reason"] == "manual_partial"
    price = Decimal(repr(engine.market.price_usd(s.token_mint))) / Decimal(repr(engine.market.sol_usd))
    above = ref.ask(SetStop(pid, price * 2), timeout=5)
    assert not above.ok and "above" in above.error
    assert not ref.ask(SetStop(pid, Decimal(-1)), timeout=5).ok
    assert ref.ask(SetStop(pid, price * Decimal("0.95")), timeout=5).ok
    s = wait_until(lambda: (s := engine.state(pid)).stop_reason == "manual_stop" and s)
    assert engine.step_tick(pid, float(s.stop / s.entry_price) * 1.02).status == "partially_closed"  # type: ignore[operator]
    s = engine.step_tick(pid, float(s.stop / s.entry_price) * 0.98)  # type: ignore[operator]
    assert s.status == "closed" and s.exit_reason == "manual_stop"
    refused = ref.ask(ClosePosition(pid), timeout=5)
    assert not refused.ok and "closed" in refused.error

    other = engine.open("MOON")
    engine.settle(other, "open")
    assert engine.refs[other].ask(ClosePosition(other), timeout=5).ok
    assert engine.settle(other, "closed").exit_reason == "manual_close"


def test_no_route_exit_is_retried_and_never_filled(engine: Engine) -> None:
    pid = engine.open("HONY")  # a honeypot: buying works, selling has no route
    engine.settle(pid, "open")
    assert engine.refs[pid].ask(ClosePosition(pid), timeout=5).ok
    failed = wait_until(lambda: [e for e in engine.journal(pid) if e.kind == "exit_failed"])
    assert failed[0].data["attempt"] == 1 and failed[0].data["retry_at"] == engine.clock() + 30
    engine.clock.t += 10
    engine.tick(pid)
    engine.tick(pid, usd=Decimal("0.0000001"))  # far under the stop: the pending full order is the exit, not a new one
    engine.clock.t += 25
    engine.tick(pid)
    second = wait_until(lambda: len(f := [e for e in engine.journal(pid) if e.kind == "exit_failed"]) == 2 and f)
    assert second[1].data["attempt"] == 2 and second[1].data["retry_at"] == engine.clock() + 60
    s = engine.state(pid)
    assert s.status == "exit_failed" and s.exit_quote_amount == 0 and s.realized_pnl_quote is None  # an alert
    assert engine.kinds(pid).count("exit_ordered") == 1 and "exit_filled" not in engine.kinds(pid)


def test_stale_and_unknown_prices_never_exit_and_are_flagged_once(engine: Engine) -> None:
    pid = engine.open("STDY", replace(BASE, time_stop_s=0))
    s0 = engine.settle(pid, "open")
    crash = Decimal("0.0000001")  # far under the stop loss
    engine.tick(pid, usd=crash, stale=True, at=engine.clock())
    engine.tick(pid, usd=None)
    engine.clock.t += 301
    for _ in range(3):
        engine.tick(pid, usd=crash, stale=True, at=engine.clock() - 301)
        engine.tick(pid, usd=None)
    wait_until(lambda: engine.kinds(pid)[-1] == "stale_flagged")
    seq = engine.state(pid).seq
    engine.tick(pid, usd=None)
    assert engine.refs[pid].ask("state", timeout=5).seq == seq  # the tick was decided: nothing new
    s = engine.state(pid)
    assert s.status == "open" and s.exit_quote_amount == 0 and s.realized_pnl_quote is None and s.stale_flagged
    assert engine.kinds(pid) == ["opened", "entry_filled", "stale_flagged"] and s.token_amount_open == s0.token_amount_open
    engine.tick(pid)  # a fresh price again
    wait_until(lambda: engine.kinds(pid)[-1] == "stale_cleared")


# -- restart -------------------------------------------------------------------------------------------------
def test_a_restart_from_the_journal_gives_the_same_state(engine: Engine) -> None:
    plan = replace(BASE, take_profit=((Decimal(20), Decimal("0.3")), (Decimal(60), Decimal("0.3"))),
                   breakeven_after_first_tp=True, trailing_activation_pct=Decimal(10), trailing_distance_pct=Decimal(30),
                   time_stop_s=7200, stale_limit_s=60)
    pid = engine.open("STDY", plan)
    engine.settle(pid, "open")
    engine.step_tick(pid, 1.25)  # TP 1, breakeven, a high-water mark
    engine.step_tick(pid, 1.4)  # a higher mark
    engine.clock.t += 100
    engine.tick(pid, usd=None)
    wait_until(lambda: engine.state(pid).stale_flagged)
    live = engine.state(pid)
    assert live.tp_done == 1 and live.stop_reason == "breakeven_stop" and live.high_water is not None
    engine.refs[pid].stop()
    journal = engine.journal(pid)
    engine.start(pid, journal, replace(BASE, stop_loss_pct=Decimal(50)))  # today's plan differs: the journal's counts
    again = engine.state(pid)
    for f in fields(PositionState):
        assert getattr(again, f.name) == getattr(live, f.name), f.name
    assert fold(pid, journal) == live
    assert (again.stop, again.plan, again.opened_at) == (live.stop, plan, live.opened_at)
    s = engine.step_tick(pid, 0.95)  # the replayed breakeven stop fires, as it would have
    assert s.status == "closed" and s.exit_reason == "breakeven_stop"


def test_every_closed_position_pnl_is_its_fills(engine: Engine) -> None:
    pids = [engine.open(sym) for sym in ("STDY", "MOON", "CHOP", "SINK")]
    for pid in pids:
        engine.settle(pid, "open")
    engine.refs[pids[0]].tell(ClosePartial(pids[0], Decimal("0.37")))
    engine.settle(pids[0], "partially_closed")
    for pid in pids:
        engine.refs[pid].tell(ClosePosition(pid))
    for pid in pids:
        engine.settle(pid, "closed")
    assert engine.assert_pnl_is_the_sum_of_fills() == 4
    fees = engine.store.run(lambda c: c.fetch("SELECT fee_quote, slippage_quote FROM fills"))
    assert len(fees) == 9 and all(int(r["fee_quote"]) == 15_000 and int(r["slippage_quote"]) > 0 for r in fees)
