"""Live positions end to end: real PositionActors on the real store (embedded PostgreSQL) trading through the live
executor on the sandbox's LiteSVM chain. The journal's order is intent → signature → outcome; the recorded fills
equal the wallet's on-chain deltas to the lamport and the raw token unit; each execution fault ends in its state
after bounded attempts; an exit that cannot land is exit_failed, then retried wider once the market allows it."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from decimal import Decimal
from typing import Iterator

import pykka
import pytest

from actors.messages import ClosePosition, JournalEvent, Observation, PaperEntry, PriceTick
from actors.ports import ExitPlan, LivePolicy, Ports
from actors.position import PositionActor, PositionState
from actors.supervisor import RootSupervisor
from actors.trades import Trade
from sandbox.market import WSOL_MINT
from tests.conftest import wait_until
from ui import queries
from ui.dashboard import alert_lines
from tests.livekit import Live, sol, start_live
from tests.test_position_engine import Clock
from walltrack.bridge import AsyncioThread
from storage.db import migrate
from storage.store import Store

LEADER = "9JGuVmjXTeMea6VY6fpsu8783YeJME8bewyy9qv9UBxh"
PLAN = ExitPlan(stop_loss_pct=Decimal(50), take_profit=(), trailing_distance_pct=Decimal(0), time_stop_s=0,
                emergency_min_liquidity_usd=Decimal(0), stale_limit_s=0, exit_retry_s=30)
POLICY = LivePolicy(max_attempts=3, backoff_s=0.05, backoff_max_s=0.2, slippage_bps=100, exit_max_slippage_bps=1000)
_sigs = itertools.count(1)


@dataclass
class Desk:
    live: Live
    store: Store
    loop: AsyncioThread
    clock: Clock
    root: pykka.ActorRef
    refs: dict[int, pykka.ActorRef]

    def open(self, mint: str, lamports: int = sol("0.05")) -> int:
        """A taken live copy-buy, recorded as the wallet actor records it; its actor then buys on chain."""
        trade = Trade(f"live{next(_sigs)}", LEADER, "buy", mint, 10**9, 6, WSOL_MINT, 10 * lamports, "RAYDIUM")
        obs = Observation(trade.signature, LEADER, "signal", trade, "taken", "copy_buy",
                          entry=PaperEntry(lamports, 10**8, mode="live", slippage_bps=100, quote_mint=WSOL_MINT))
        res = self.store.record_observation(obs).result(10)
        assert res.position_id is not None
        ports = Ports(self.store, self.loop, clock=self.clock, exit_plan=PLAN, live=self.live.executor,
                      live_policy=POLICY, live_available=True)
        self.refs[res.position_id] = PositionActor.start(res.position_id, res.journal, ports, self.root)
        return res.position_id

    def state(self, pid: int) -> PositionState:
        return self.refs[pid].ask("state", timeout=5)

    def settle(self, pid: int, *status: str, timeout: float = 60) -> PositionState:
        return wait_until(lambda: (s := self.state(pid)).status in status and s.swap is None and s, timeout=timeout)

    def journal(self, pid: int) -> tuple[JournalEvent, ...]:
        return self.store.position_journal(pid).result(10)

    def kinds(self, pid: int) -> list[str]:
        return [e.kind for e in self.journal(pid)]

    def fills(self, pid: int) -> list[dict]:
        return [dict(r) for r in self.store.run(lambda c: c.fetch(
            "SELECT side, token_amount, quote_amount, signature, kind FROM fills WHERE position_id = $1 ORDER BY seq", pid))]

    def tick(self, pid: int) -> None:
        mint = self.state(pid).token_mint
        m = self.live.sb.market
        with m.lock:
            usd = Decimal(repr(m.price_usd(mint)))
        self.refs[pid].tell(PriceTick(mint, usd, Decimal(repr(m.sol_usd)), "jupiter", self.clock()))


@pytest.fixture
def desk(db_url: str) -> Iterator[Desk]:
    live = start_live()
    loop = AsyncioThread()
    store = Store.open(loop, db_url)
    store.run(migrate)
    clock = Clock(live.sb.market.start)
    root = RootSupervisor.start(Ports(store, loop, clock=clock))
    d = Desk(live, store, loop, clock, root, {})
    try:
        yield d
    finally:
        pykka.ActorRegistry.stop_all()
        store.close()
        loop.stop()
        live.close()


def plain(d: Desk, quote: str = "SOL") -> str:
    return next(t.mint for t in d.live.sb.market.tokens.values() if t.quote == quote and not t.hazards.names())


def chain_delta(d: Desk, pid: int) -> tuple[int, int]:
    """Σ of a position's fills as the chain sees them: (lamports, tokens) into the wallet."""
    sol_ = tok = 0
    for f in d.fills(pid):
        sign = 1 if f["side"] == "sell" else -1
        sol_ += sign * int(f["quote_amount"])
        tok -= sign * int(f["token_amount"])
    return sol_, tok


def test_a_live_position_buys_and_sells_on_chain_and_its_fills_are_the_chains_deltas(desk: Desk) -> None:
    mint = plain(desk)
    sol0, tok0 = desk.live.lamports(), desk.live.tokens(mint)
    pid = desk.open(mint)
    s = desk.settle(pid, "open")
    assert desk.kinds(pid) == ["opened", "buy_intent", "buy_signature", "entry_filled"]
    assert (s.entry_token_amount, s.entry_quote_amount) == (desk.live.tokens(mint) - tok0, sol0 - desk.live.lamports())
    assert desk.refs[pid].ask(ClosePosition(pid), timeout=5).ok
    s = desk.settle(pid, "closed")
    assert desk.kinds(pid)[4:] == ["exit_ordered", "sell_intent", "sell_signature", "exit_filled"]
    assert chain_delta(desk, pid) == (desk.live.lamports() - sol0, desk.live.tokens(mint) - tok0) == (s.realized_pnl_quote, 0)
    signatures = [f["signature"] for f in desk.fills(pid)]
    assert all(signatures) and len(set(signatures)) == 2
    row = desk.store.run(lambda c: c.fetchrow("SELECT status, realized_pnl_quote FROM positions WHERE id = $1", pid))
    assert (row["status"], int(row["realized_pnl_quote"])) == ("closed", s.realized_pnl_quote)


@pytest.mark.parametrize("fault, value, status, attempts, landed", [
    ("drop_all", True, "entry_failed", 3, 0),  # never lands: each attempt expires, then the entry fails
    ("slippage", True, "entry_failed", 3, 3),  # lands failed three times: three fees, no tokens
    ("drop_next", 1, "open", 1, 1),  # the rebroadcast lands it
    ("late_blocks", 30, "open", 1, 1),  # the confirmation comes late
])
def test_each_execution_fault_ends_in_its_state_after_bounded_attempts(
        desk: Desk, fault: str, value: object, status: str, attempts: int, landed: int) -> None:
    mint = plain(desk)
    rpc = desk.live.sb.faults["rpc"]
    setattr(rpc, fault, value)
    sol0, requests0 = desk.live.lamports(), rpc.requests
    pid = desk.open(mint)
    s = desk.settle(pid, status, timeout=90)
    kinds = desk.kinds(pid)
    assert kinds.count("buy_intent") == attempts and kinds.count("buy_signature") == attempts
    assert len([f for f in desk.fills(pid) if f["signature"]]) == landed
    sol_delta, tok_delta = chain_delta(desk, pid)
    assert sol_delta == desk.live.lamports() - sol0 and tok_delta == desk.live.tokens(mint)  # the books are the chain
    if status == "entry_failed":
        assert s.realized_pnl_quote == sol_delta <= 0
    assert rpc.requests - requests0 < 2_000  # polled and rebroadcast at a bounded pace, never a storm


def test_a_malicious_build_fails_the_entry_without_a_signature(desk: Desk) -> None:
    desk.live.sb.faults["jupiter"].malicious = "pay_stranger_sol"
    sol0 = desk.live.lamports()
    pid = desk.open(plain(desk))
    s = desk.settle(pid, "entry_failed")
    assert desk.kinds(pid) == ["opened", "buy_intent", "buy_failed", "entry_failed"]
    failed = desk.journal(pid)[2].data
    assert failed["reason"] == "refused:stray_transfer" and failed["stage"] == "prepare" and "signature" not in failed
    assert desk.live.lamports() == sol0 and s.realized_pnl_quote == 0


def test_the_kill_switch_fails_an_entry_not_yet_sent(desk: Desk) -> None:
    desk.live.mode[0] = "off"
    pid = desk.open(plain(desk))
    desk.settle(pid, "entry_failed")
    assert desk.journal(pid)[2].data["reason"] == "mode:off" and "buy_signature" not in desk.kinds(pid)


def test_an_exit_that_cannot_land_is_exit_failed_then_retried_with_wider_slippage(desk: Desk) -> None:
    mint = plain(desk)
    sol0, tok0 = desk.live.lamports(), desk.live.tokens(mint)
    pid = desk.open(mint)
    desk.settle(pid, "open")
    desk.live.sb.faults["rpc"].slippage = True
    assert desk.refs[pid].ask(ClosePosition(pid), timeout=5).ok
    s = desk.settle(pid, "exit_failed", timeout=90)
    kinds = desk.kinds(pid)
    assert kinds.count("sell_failed") == 3 and kinds[-1] == "exit_failed" and s.token_amount_open > 0
    retry_at = desk.journal(pid)[-1].data["retry_at"]
    row = desk.store.run(lambda c: c.fetchval("SELECT status FROM positions WHERE id = $1", pid))
    assert row == "exit_failed"
    alerts = desk.store.run(queries.live_alerts)  # what the dashboard's "Needs attention" card shows
    assert [a["id"] for a in alerts["exit_failed"]] == [pid]
    assert f"Exit failed: position #{pid}" in alert_lines(alerts)[0] and "slippage after 3 attempt(s)" in alert_lines(alerts)[0]
    desk.live.sb.faults["rpc"].slippage = False
    desk.tick(pid)  # before its time: nothing
    assert desk.state(pid).status == "exit_failed"
    desk.clock.t = retry_at
    desk.tick(pid)
    s = desk.settle(pid, "closed")
    intents = [e.data for e in desk.journal(pid) if e.kind == "sell_intent"]
    assert [i["slippage_bps"] for i in intents] == [100, 100, 100, 200]  # the round after exit_failed is wider
    assert chain_delta(desk, pid) == (desk.live.lamports() - sol0, desk.live.tokens(mint) - tok0)
    assert s.realized_pnl_quote == desk.live.lamports() - sol0
