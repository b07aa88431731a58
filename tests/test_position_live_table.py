"""The live rows of the position table, driven without threads: the journal's order (intent, then the signature,
then the outcome), bounded retries with backoff, a restart at every point, the books equal to the fills — and a
property: whatever the outcomes, one intent never has two transactions in flight and the fold is the live state."""

from __future__ import annotations

from dataclasses import fields, replace
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from actors.messages import ClosePosition, JournalEvent, LeaderSold
from actors.ports import LivePolicy, SignedSwap
from actors.position import Context, Filled, PositionState, apply, decide, fold
from actors.position_live import Land, Later, Prepare, Resume, Retry, Signed, SwapFailed
from tests.test_position_table import COST, PID, PLAN, T0, TOKENS, W, fill, tick

POLICY = LivePolicy(max_attempts=3, backoff_s=1.0, backoff_max_s=30.0, slippage_bps=100, exit_max_slippage_bps=800)
OPENED = JournalEvent(1, "opened", {
    "wallet": W, "token_mint": "GkCfs9n8jLvuviiToewryCFa2rHQGKQv9FdnhTUEJtCH", "token_decimals": 6,
    "quote_mint": "So11111111111111111111111111111111111111112", "mode": "live", "entry": "pending",
    "entry_quote_amount": str(COST), "entry_token_amount": "0", "leader_token_amount": "5000000000", "slippage_bps": 100})


def ctx(now: float = T0) -> Context:
    return Context(now=now, plan=PLAN, live=POLICY)


def signed(n: int = 1, amount: int = COST) -> SignedSwap:
    return SignedSwap(f"sig{n}", f"tx{n}", 1_000 + n, amount, TOKENS, TOKENS * 99 // 100, "0.01", "Raydium", 100)


class Run:
    """A position driven like its actor: decide, journal, apply; the journal kept for replay."""

    def __init__(self) -> None:
        self.journal: list[JournalEvent] = [OPENED]
        self.s = fold(PID, (OPENED,))

    def __call__(self, command: Any, now: float = T0) -> Any:
        out = decide(self.s, command, ctx(now))
        for ev in out.events:
            self.s = apply(self.s, ev, PID)
            self.journal.append(ev)
        return out

    def kinds(self, out: Any) -> list[str]:
        return [e.kind for e in out.events]

    def restarted(self) -> PositionState:
        return fold(PID, tuple(self.journal))


def test_a_live_entry_journals_intent_then_signature_then_the_chains_fill() -> None:
    run = Run()
    out = run(Resume())
    assert run.kinds(out) == ["buy_intent"] and out.effects == (Prepare("buy", COST, 100),)
    assert run.s.status == "buying" and run.s.swap.signed is None  # type: ignore[union-attr]
    out = run(Signed("buy", signed()))
    assert run.kinds(out) == ["buy_signature"]  # committed before the send: Land comes after it
    assert out.effects == (Land(signed(), fresh=True),)
    out = run(Filled(replace(fill("buy", TOKENS, COST + 12_345), signature="sig1")))
    assert run.kinds(out) == ["entry_filled"] and run.s.status == "open"
    assert run.s.entry_quote_amount == COST + 12_345 and run.s.swap is None  # the chain's cost, fees included


def test_attempts_are_bounded_with_backoff_and_then_the_entry_fails() -> None:
    run = Run()
    run(Resume())
    delays = []
    for attempt in (1, 2, 3):
        assert run.s.swap.attempt == attempt  # type: ignore[union-attr]
        run(Signed("buy", signed(attempt)))
        out = run(SwapFailed("buy", "expired", retryable=True))
        if attempt < 3:
            assert run.kinds(out) == ["buy_failed"] and out.events[0].data["retry"] is True
            (later,) = out.effects
            assert isinstance(later, Later) and later.message == Retry()
            delays.append(later.delay_s)
            out = run(Retry())
            assert run.kinds(out) == ["buy_intent"] and out.events[0].data["attempt"] == attempt + 1  # re-quoted
    assert delays == [1.0, 2.0]  # backoff doubles
    assert run.kinds(out) == ["buy_failed", "entry_failed"] and run.s.status == "entry_failed"
    assert out.effects == () and "expired after 3 attempt(s)" in out.events[1].data["error"]


def test_a_refusal_is_never_retried() -> None:
    run = Run()
    run(Resume())
    out = run(SwapFailed("buy", "refused:stray_transfer", detail="pays a stranger"))
    assert run.kinds(out) == ["buy_failed", "entry_failed"] and out.events[0].data["stage"] == "prepare"
    assert "signature" not in out.events[0].data  # nothing was signed


def test_the_fee_of_a_failed_landed_attempt_is_part_of_the_entrys_cost() -> None:
    run = Run()
    run(Resume())
    run(Signed("buy", signed(1)))
    cost = replace(fill("buy", 0, 10_000), signature="sig1")
    out = run(SwapFailed("buy", "slippage", retryable=True, cost=cost))
    assert out.events[0].data["fill"]["quote_amount"] == "10000" and run.s.fees_lost == 10_000
    run(Retry())
    run(Signed("buy", signed(2)))
    run(Filled(replace(fill("buy", TOKENS, COST), signature="sig2")))
    assert run.s.entry_quote_amount == COST + 10_000
    # an entry that never fills loses exactly those fees
    failed = Run()
    failed(Resume())
    failed(Signed("buy", signed(1)))
    failed(SwapFailed("buy", "insufficient_sol", cost=cost))
    assert failed.s.status == "entry_failed" and failed.s.realized_pnl_quote == -10_000


def test_a_restart_rebuilds_an_unsigned_intent_and_reconciles_a_signed_one() -> None:
    run = Run()
    run(Resume())
    s = run.restarted()  # killed after the intent, before a signature: nothing can have been sent
    out = decide(s, Resume(), ctx())
    assert out.events == () and out.effects == (Prepare("buy", COST, 100),)
    run(Signed("buy", signed()))
    s = run.restarted()  # killed between the signature and the outcome: ask the chain first (never re-buy)
    out = decide(s, Resume(), ctx())
    assert out.events == () and out.effects == (Land(signed(), fresh=False),)
    run(SwapFailed("buy", "expired", retryable=True))
    s = run.restarted()  # killed while waiting to retry: the next attempt now
    out = decide(s, Resume(), ctx())
    assert [e.kind for e in out.events] == ["buy_intent"] and out.events[0].data["attempt"] == 2


def test_an_unknown_outcome_watches_the_same_signature_again() -> None:
    run = Run()
    run(Resume())
    run(Signed("buy", signed()))
    out = run(SwapFailed("buy", "unconfirmed", unknown=True))
    assert out.events == () and out.effects == (Later(1.0, Retry(land=True)),)
    out = run(Retry(land=True))
    assert out.effects == (Land(signed(), fresh=False),) and out.events == ()


def test_bought_nothing_is_a_cost_and_a_failed_entry() -> None:
    run = Run()
    run(Resume())
    run(Signed("buy", signed()))
    out = run(Filled(replace(fill("buy", 0, 7_000), signature="sig1")))
    assert run.kinds(out) == ["buy_failed", "entry_failed"] and run.s.realized_pnl_quote == -7_000


def test_the_leader_selling_stops_a_waiting_entry_and_waits_for_one_in_flight() -> None:
    sale = LeaderSold(PID, "leadersell", W, 1_000, "So11111111111111111111111111111111111111112", 1, 1_000)
    run = Run()
    run(Resume())
    run(Signed("buy", signed()))
    assert run(sale).defer  # a transaction may be landing
    run(SwapFailed("buy", "expired", retryable=True))
    out = run(sale)  # now nothing is in flight
    assert run.kinds(out) == ["entry_failed"] and run.s.exit_reason == "leader_sold_before_entry"


def live_open() -> Run:
    run = Run()
    run(Resume())
    run(Signed("buy", signed()))
    run(Filled(replace(fill("buy", TOKENS, COST), signature="sig1")))
    return run


def test_a_live_exit_is_a_sell_intent_and_an_exhausted_one_is_exit_failed_with_wider_slippage() -> None:
    run = live_open()
    out = run(tick(0.5))  # under the stop
    assert run.kinds(out) == ["exit_ordered", "sell_intent"] and out.effects == (Prepare("sell", TOKENS, 100),)
    for attempt in (1, 2, 3):
        run(Signed("sell", signed(10 + attempt, TOKENS)))
        out = run(SwapFailed("sell", "slippage", retryable=True))
        if attempt < 3:
            run(Retry())
    assert run.kinds(out) == ["sell_failed", "exit_failed"] and run.s.status == "exit_failed"
    retry_at = out.events[1].data["retry_at"]
    assert retry_at == T0 + PLAN.exit_retry_s and run.s.token_amount_open == TOKENS  # never forgotten
    assert run(tick(0.5), now=retry_at - 1).effects == ()  # not before its time
    out = run(tick(0.5), now=retry_at)
    assert run.kinds(out) == ["sell_intent"] and out.effects == (Prepare("sell", TOKENS, 200),)  # doubled
    widths = []
    for r in range(2, 6):  # each round that fails widens again, up to the cap
        for attempt in (1, 2, 3):
            run(Signed("sell", signed(100 * r + attempt, TOKENS)))
            out = run(SwapFailed("sell", "slippage", retryable=True), now=retry_at)
            if attempt < 3:
                run(Retry(), now=retry_at)
        retry_at = out.events[-1].data["retry_at"]
        widths.append(run(tick(0.5), now=retry_at).effects[0].slippage_bps)
    assert widths == [400, 800, 800, 800]


def test_a_sale_capped_by_the_chain_leaves_the_rest_of_the_order_due() -> None:
    run = live_open()
    run(ClosePosition(PID))
    run(Signed("sell", signed(2, TOKENS // 4)))  # the chain held a quarter of what the book says
    assert run.s.swap.amount == TOKENS // 4  # type: ignore[union-attr]
    out = run(Filled(replace(fill("sell", TOKENS // 4, 20_000_000), signature="sig2")))
    assert run.kinds(out) == ["partial_exit"] and run.s.status == "partially_closed"
    assert run.s.order is not None and run.s.order.token_amount == TOKENS - TOKENS // 4 and run.s.order.retry_at is None
    out = run(tick(1.0))
    assert run.kinds(out) == ["sell_intent"]


def test_an_operator_close_during_a_sale_is_taken_after_it() -> None:
    run = live_open()
    run(tick(0.5))
    out = run(ClosePosition(PID))
    assert out.defer and out.reply.ok  # type: ignore[union-attr]


# -- a property: whatever the outcomes, the books are the fills and one intent has one transaction in flight ----
outcomes = st.lists(st.sampled_from(["fill", "expired", "refused", "unknown", "cost", "restart", "tick"]), max_size=40)


@settings(max_examples=150, deadline=None)
@given(outcomes)
def test_whatever_the_outcomes_the_fold_is_the_state_and_never_two_in_flight(script: list[str]) -> None:
    run = Run()
    pending: list[Any] = list(run(Resume()).effects)
    n, spent, got = 0, 0, 0
    in_flight: set[str] = set()
    for what in script:
        if run.s.status in ("closed", "entry_failed"):
            break
        if what == "restart":  # the actor rebuilt from its journal, resuming (its Resume step is journaled too)
            run.s = run.restarted()
            pending = list(run(Resume()).effects)
            continue
        if what == "tick":
            pending = list(run(tick(0.5)).effects) or pending
            continue
        eff = next((e for e in pending if isinstance(e, (Prepare, Land, Later))), None)
        if isinstance(eff, Later):
            pending = list(run(eff.message).effects)
        elif isinstance(eff, Prepare):
            n += 1
            assert not in_flight, "a new transaction while one may still land"
            pending = list(run(Signed(eff.side, signed(n, eff.amount))).effects)
            if any(isinstance(e, Land) for e in pending):
                in_flight.add(f"sig{n}")
        elif isinstance(eff, Land):
            side = run.s.swap.side  # type: ignore[union-attr]
            sig = eff.swap.signature
            if what == "fill":
                f = replace(fill(side, TOKENS if side == "buy" else eff.swap.amount, COST), signature=sig)
                spent, got = (spent + COST, got) if side == "buy" else (spent, got + COST)
                pending = list(run(Filled(f)).effects)
                in_flight.discard(sig)
            elif what == "unknown":
                pending = list(run(SwapFailed(side, "unconfirmed", unknown=True)).effects)
            else:
                cost = replace(fill(side, 0, 5_000 if side == "buy" else -5_000), signature=sig) if what == "cost" else None
                if cost is not None:
                    spent, got = (spent + 5_000, got) if side == "buy" else (spent, got - 5_000)
                pending = list(run(SwapFailed(side, what, retryable=what != "refused", cost=cost)).effects)
                in_flight.discard(sig)
    replayed = run.restarted()
    assert [getattr(replayed, f.name) for f in fields(replayed)] == [getattr(run.s, f.name) for f in fields(run.s)]
    assert [e.seq for e in run.journal] == list(range(1, len(run.journal) + 1))
    if run.s.status == "closed":
        assert run.s.realized_pnl_quote == got - spent
    if run.s.status == "entry_failed":
        assert run.s.realized_pnl_quote == -spent
    signatures = [e.data["signature"] for e in run.journal if e.kind.endswith("_signature")]
    assert len(signatures) == len(set(signatures))
    assert Decimal(run.s.exit_quote_amount) == got
