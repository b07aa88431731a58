"""The position table, driven without threads: every (state, command) pair, the exit rules' edges, and
two properties — unknown or stale prices never exit, and the fold of the journal is the live state."""

from __future__ import annotations

import itertools
from dataclasses import fields, replace
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.messages import ClosePartial, ClosePosition, Fill, JournalEvent, LeaderSold, PriceTick, SetStop
from actors.ports import ExitPlan, SignedSwap
from actors.position_live import Resume, Retry, Signed, SwapFailed
from actors.position import (
    COMMANDS,
    STATES,
    TABLE,
    CancelEntry,
    Context,
    Filled,
    FillFailed,
    PositionState,
    Sell,
    apply,
    decide,
    fold,
    quote_price,
)
from actors.trades import USDC_MINT, WSOL_MINT

W, MINT, PID = "9JGuVmjXTeMea6VY6fpsu8783YeJME8bewyy9qv9UBxh", "GkCfs9n8jLvuviiToewryCFa2rHQGKQv9FdnhTUEJtCH", 7
T0 = 1_767_225_600.0
TOKENS = 1_000_000_000  # 1,000 tokens of 6 decimals, bought for 0.1 SOL: 0.0001 SOL a token, $0.01 at $100/SOL
COST = 100_000_000
SOL_USD = Decimal(100)
PLAN = ExitPlan(stop_loss_pct=Decimal(20), take_profit=((Decimal(20), Decimal("0.3")), (Decimal(40), Decimal("0.3"))),
                trailing_activation_pct=Decimal(50), trailing_distance_pct=Decimal(10), time_stop_s=3600,
                emergency_min_liquidity_usd=Decimal(2000), stale_limit_s=300, exit_retry_s=30)
OPENED = JournalEvent(1, "opened", {
    "wallet": W, "token_mint": MINT, "token_decimals": 6, "quote_mint": WSOL_MINT, "mode": "paper", "entry": "pending",
    "entry_quote_amount": str(COST), "entry_token_amount": "0", "leader_token_amount": "5000000000"})


def fill(side: str, tokens: int, quote: int, at: float = T0) -> Fill:
    return Fill(PID, side, MINT, WSOL_MINT, tokens, quote, quote, 15_000, 0, "0.01", "Raydium", at)  # type: ignore[arg-type]


def ctx(now: float = T0, mark: PriceTick | None = None) -> Context:
    return Context(now=now, plan=PLAN, mark=mark)


def tick(ratio: float | None = 1.0, *, stale: bool = False, at: float = T0, liquidity: Decimal | None = Decimal(80_000),
         sol_usd: Decimal | None = SOL_USD) -> PriceTick:
    usd = None if ratio is None else Decimal("0.01") * Decimal(str(ratio))
    return PriceTick(MINT, usd, sol_usd, "jupiter" if usd is not None else None, at, stale, liquidity_usd=liquidity)


def step(s: PositionState, command: Any, c: Context | None = None) -> tuple[PositionState, Any]:
    out = decide(s, command, c or ctx())
    for ev in out.events:
        s = apply(s, ev, PID)
    return s, out


def pending() -> PositionState:
    return fold(PID, (OPENED,))


def opened() -> PositionState:
    return step(pending(), Filled(fill("buy", TOKENS, COST)))[0]


def with_order(s: PositionState, command: Any = None) -> PositionState:
    return step(s, command or ClosePartial(PID, Decimal("0.3")))[0]


def partially_closed() -> PositionState:
    s = with_order(opened())
    return step(s, Filled(fill("sell", s.order.token_amount, 40_000_000)))[0]  # type: ignore[union-attr]


def closed() -> PositionState:
    s = with_order(opened(), ClosePosition(PID))
    return step(s, Filled(fill("sell", TOKENS, 90_000_000)))[0]


def entry_failed() -> PositionState:
    return step(pending(), FillFailed("buy", "NoRoute: no route"))[0]


def sold(tokens: int = 1_000, before: int | None = 1_000) -> LeaderSold:
    return LeaderSold(PID, "sellsig", W, tokens, WSOL_MINT, 30_000_000, leader_holding_before=before)


# -- every (state, command) pair ------------------------------------------------------------------------
LIVE_OPENED = JournalEvent(1, "opened", {**OPENED.data, "mode": "live", "slippage_bps": 100})
SWAP = SignedSwap("5ig", "dHg=", 1_000, COST, TOKENS, TOKENS * 99 // 100, "0.01", "Raydium", 100)


def live_pending() -> PositionState:
    return fold(PID, (LIVE_OPENED,))


def buying(signed: bool = False) -> PositionState:
    s = step(live_pending(), Resume())[0]
    return step(s, Signed("buy", SWAP))[0] if signed else s


def live_open() -> PositionState:
    return step(buying(signed=True), Filled(replace(fill("buy", TOKENS, COST), signature="5ig")))[0]


def selling(signed: bool = False) -> PositionState:
    s = step(live_open(), ClosePartial(PID, Decimal("0.3")))[0]
    sale = replace(SWAP, signature="5ell", amount=s.swap.amount)  # type: ignore[union-attr]
    return step(s, Signed("sell", sale))[0] if signed else s


def exit_failed() -> PositionState:
    return step(with_order(opened()), FillFailed("sell", "NoRoute"))[0]


BASES = {"pending_entry": pending, "buying": buying, "open": opened, "partially_closed": partially_closed,
         "selling": selling, "exit_failed": exit_failed, "closed": closed, "entry_failed": entry_failed}


def command_for(status: str, command: type) -> tuple[PositionState, Any]:
    """A state in `status` and a representative command of type `command` for it."""
    base = BASES[status]()
    holding = status in ("open", "partially_closed", "exit_failed")
    side = "buy" if status in ("pending_entry", "buying") else "sell"
    if command is Filled:
        if status == "pending_entry":
            return base, Filled(fill("buy", TOKENS, COST))
        if status == "buying":
            return buying(signed=True), Filled(fill("buy", TOKENS, COST))
        if status == "selling":
            s = selling(signed=True)
            return s, Filled(fill("sell", s.swap.amount, 30_000_000))  # type: ignore[union-attr]
        if holding:
            s = base if base.order is not None else with_order(base)
            return s, Filled(fill("sell", s.order.token_amount, 30_000_000))  # type: ignore[union-attr]
        return base, Filled(fill("sell", 1, 1))
    if command is FillFailed:
        return (with_order(base) if holding and base.order is None else base), FillFailed(side, "NoRoute")
    return base, {
        PriceTick: tick(1.01), LeaderSold: sold(), ClosePosition: ClosePosition(PID),
        ClosePartial: ClosePartial(PID, Decimal("0.5")), SetStop: SetStop(PID, Decimal("0.00005")),
        Signed: Signed(side, SWAP), SwapFailed: SwapFailed(side, "expired", retryable=True), Resume: Resume(),
        Retry: Retry(), CancelEntry: CancelEntry("mode:off"),
    }[command]


# (state, command) -> (journal event kinds, next state, reply: None, True (accepted) or False (refused), deferred)
QUIET = (Signed, SwapFailed, Resume, Retry)
EXPECTED: dict[tuple[str, type], tuple[list[str], str, bool | None, bool]] = {
    ("pending_entry", PriceTick): ([], "pending_entry", None, False),
    ("pending_entry", LeaderSold): (["entry_failed"], "entry_failed", None, False),
    ("pending_entry", ClosePosition): ([], "pending_entry", False, False),
    ("pending_entry", ClosePartial): ([], "pending_entry", False, False),
    ("pending_entry", SetStop): ([], "pending_entry", False, False),
    ("pending_entry", Filled): (["entry_filled"], "open", None, False),
    ("pending_entry", FillFailed): (["entry_failed"], "entry_failed", None, False),
    ("pending_entry", CancelEntry): (["entry_failed"], "entry_failed", None, False),  # the kill switch, before the buy
    **{("pending_entry", c): ([], "pending_entry", None, False) for c in QUIET},  # paper: Resume asks for the fill
    ("buying", PriceTick): ([], "buying", None, False),
    ("buying", LeaderSold): ([], "buying", None, True),  # a transaction may be landing: decided after its outcome
    ("buying", ClosePosition): ([], "buying", False, False),
    ("buying", ClosePartial): ([], "buying", False, False),
    ("buying", SetStop): ([], "buying", False, False),
    ("buying", Filled): (["entry_filled"], "open", None, False),
    ("buying", FillFailed): ([], "buying", None, False),
    ("buying", Signed): (["buy_signature"], "buying", None, False),
    ("buying", SwapFailed): (["buy_failed"], "buying", None, False),
    ("buying", Resume): ([], "buying", None, False),
    ("buying", Retry): ([], "buying", None, False),
    ("buying", CancelEntry): ([], "buying", None, False),  # in flight: the executor's send gate refuses a new send
    **{(st_, c): v for st_ in ("open", "partially_closed", "exit_failed") for c, v in {
        PriceTick: ([], st_, None, False),
        LeaderSold: (["exit_ordered"], st_, None, False),
        ClosePosition: (["exit_ordered"], st_, True, False),
        ClosePartial: (["exit_ordered"], st_, True, False),
        SetStop: (["stop_moved"], st_, True, False),
        Filled: (["partial_exit"], "partially_closed", None, False),
        FillFailed: (["exit_failed"], "exit_failed", None, False),
        **{c: ([], st_, None, False) for c in (*QUIET, CancelEntry)},  # bought already: too late to cancel
    }.items()},
    ("selling", PriceTick): ([], "selling", None, False),
    ("selling", LeaderSold): ([], "selling", None, True),
    ("selling", ClosePosition): ([], "selling", True, True),
    ("selling", ClosePartial): ([], "selling", True, True),
    ("selling", SetStop): (["stop_moved"], "selling", True, False),
    ("selling", Filled): (["partial_exit"], "partially_closed", None, False),
    ("selling", FillFailed): ([], "selling", None, False),
    ("selling", Signed): (["sell_signature"], "selling", None, False),
    ("selling", SwapFailed): (["sell_failed"], "selling", None, False),
    ("selling", Resume): ([], "selling", None, False),
    ("selling", Retry): ([], "selling", None, False),
    ("selling", CancelEntry): ([], "selling", None, False),
    **{(st_, c): ([], st_, False if c in (ClosePosition, ClosePartial, SetStop) else None, False)
       for st_ in ("closed", "entry_failed") for c in COMMANDS},
}


def test_the_table_and_the_expectations_cover_every_pair() -> None:
    pairs = set(itertools.product(STATES, COMMANDS))
    assert set(TABLE) == pairs and set(EXPECTED) == pairs and len(pairs) == 8 * 12


@pytest.mark.parametrize("status, command", sorted(EXPECTED, key=lambda k: (STATES.index(k[0]), k[1].__name__)),
                         ids=lambda v: v if isinstance(v, str) else v.__name__)
def test_every_state_command_pair(status: str, command: type) -> None:
    s, cmd = command_for(status, command)
    assert s.status == status
    kinds, next_status, reply, deferred = EXPECTED[(status, command)]
    after, out = step(s, cmd)
    assert [e.kind for e in out.events] == kinds
    assert [e.seq for e in out.events] == list(range(s.seq + 1, s.seq + 1 + len(kinds)))
    assert after.status == next_status
    assert (out.reply.ok if out.reply is not None else None) is reply
    assert out.defer is deferred
    if reply is False:
        assert out.reply.error  # type: ignore[union-attr]


def test_an_unknown_pair_is_a_bug() -> None:
    with pytest.raises(LookupError):
        decide(opened(), "close please", ctx())


# -- entry ----------------------------------------------------------------------------------------------
def test_entry_fill_records_cost_with_fees_and_arms_the_plan() -> None:
    s = opened()
    assert (s.entry_quote_amount, s.entry_token_amount, s.token_amount_open) == (COST, TOKENS, TOKENS)
    assert s.plan == PLAN and s.opened_at == T0 and s.leader_token_amount == 5_000_000_000
    assert s.entry_price == Fraction(COST, TOKENS) and s.stop == Fraction(COST, TOKENS) * Fraction(4, 5)
    failed = entry_failed()
    assert (failed.realized_pnl_quote, failed.exit_reason, failed.token_amount_open) == (0, "entry_failed", 0)


# -- exit rules -----------------------------------------------------------------------------------------
def kinds_and_reason(s: PositionState, t: PriceTick, now: float = T0) -> tuple[list[str], str | None, Any]:
    out = decide(s, t, ctx(now))
    ordered = [e for e in out.events if e.kind == "exit_ordered"]
    return [e.kind for e in out.events], (ordered[0].data["reason"] if ordered else None), out.effects


def test_stop_loss_fires_at_the_stop_and_not_above() -> None:
    s = opened()
    assert kinds_and_reason(s, tick(0.81))[1] is None
    kinds, reason, effects = kinds_and_reason(s, tick(0.8))
    assert reason == "stop_loss" and effects == (Sell(TOKENS),)


def test_take_profit_ladder_then_breakeven() -> None:
    s = opened()
    _, reason, effects = kinds_and_reason(s, tick(1.2))
    assert reason == "take_profit_1" and effects == (Sell(300_000_000),)
    s, out = step(s, tick(1.2))
    s, out = step(s, Filled(fill("sell", 300_000_000, 35_000_000)))
    assert [e.kind for e in out.events] == ["partial_exit", "stop_moved"] and s.tp_done == 1
    assert s.stop == s.entry_price and s.stop_reason == "breakeven_stop"
    assert kinds_and_reason(s, tick(1.3))[1] is None  # level 2 is at +40 %
    _, reason, effects = kinds_and_reason(s, tick(1.4))
    assert reason == "take_profit_2" and effects == (Sell(300_000_000),)
    s, _ = step(step(s, tick(1.4))[0], Filled(fill("sell", 300_000_000, 41_000_000)))
    assert s.tp_done == 2 and s.token_amount_open == 400_000_000
    assert kinds_and_reason(s, tick(3.0))[1] is None  # the ladder is done (trailing is not armed: no high water yet)
    assert kinds_and_reason(s, tick(1.0))[1] == "breakeven_stop"


def test_a_ladder_of_the_whole_entry_leaves_no_dust() -> None:
    halves = replace(PLAN, take_profit=((Decimal(20), Decimal("0.5")), (Decimal(40), Decimal("0.5"))))
    odd = TOKENS + 1  # half of it rounds down: two floored halves would leave one raw unit open for ever
    s = step(pending(), Filled(fill("buy", odd, COST)), Context(now=T0, plan=halves))[0]
    s, out = step(s, tick(1.2))
    assert out.effects == (Sell(odd // 2),)
    s = step(s, Filled(fill("sell", odd // 2, 59_000_000)))[0]
    s, out = step(s, tick(1.4))
    assert out.effects == (Sell(odd - odd // 2),)  # the last rung sells what is open
    s = step(s, Filled(fill("sell", odd - odd // 2, 69_000_000)))[0]
    assert s.status == "closed" and s.exit_reason == "take_profit_2" and s.token_amount_open == 0


def test_trailing_stop_follows_the_journaled_high_water_mark() -> None:
    plan = replace(PLAN, take_profit=())
    s = replace(opened(), plan=plan)
    s, out = step(s, tick(1.01))
    assert out.events == ()  # below the 2 % step: no event
    for r in (1.3, 1.6):
        s, out = step(s, tick(r))
        assert [e.kind for e in out.events] == ["high_water"]
    assert s.high_water == Fraction(COST, TOKENS) * Fraction("1.6")
    assert kinds_and_reason(s, tick(1.45))[1] is None  # 9.4 % below the mark
    assert kinds_and_reason(s, tick(1.44))[1] == "trailing_stop"  # 10 % below it
    unarmed = replace(opened(), plan=plan)
    unarmed, _ = step(unarmed, tick(1.4))  # below the 50 % activation: a 10 % fall from here is not a trail exit
    assert kinds_and_reason(unarmed, tick(1.25))[1] is None


def test_time_stop_fires_without_any_price() -> None:
    s = opened()
    assert kinds_and_reason(s, tick(None), now=T0 + 3599)[1] is None
    assert kinds_and_reason(s, tick(None), now=T0 + 3600)[1] == "time_stop"


def test_emergency_exit_on_drained_liquidity_comes_first() -> None:
    s = opened()
    assert kinds_and_reason(s, tick(1.0, liquidity=Decimal(1999)))[1] == "emergency_liquidity"
    assert kinds_and_reason(s, tick(0.5, liquidity=Decimal(10)))[1] == "emergency_liquidity"
    assert kinds_and_reason(s, tick(1.0, liquidity=None))[1] is None  # unknown liquidity: no emergency


@pytest.mark.parametrize("holding, tokens, basis, expected", [
    (1_000, 1_000, "leader_holding", TOKENS),
    (1_000, 300, "leader_holding", 300_000_000),
    (1_000, 5_000, "leader_holding", TOKENS),  # sold more than we knew it held: everything
])
def test_mirror_sells_the_leaders_fraction(holding: int, tokens: int, basis: str, expected: int) -> None:
    out = decide(opened(), sold(tokens, holding), ctx())
    (ev,) = out.events
    assert (ev.data["reason"], ev.data["basis"], int(ev.data["token_amount"])) == ("mirror_sell", basis, expected)
    assert out.effects == (Sell(expected),)


def test_mirror_with_an_unknown_holding_is_full_or_proportional_to_the_copied_buy() -> None:
    (ev,) = decide(opened(), sold(1_250_000_000, None), ctx()).events
    assert (ev.data["basis"], int(ev.data["token_amount"])) == ("full", TOKENS)
    prop = replace(opened(), plan=replace(PLAN, mirror_unknown="proportional"))
    s, out = step(prop, sold(1_250_000_000, None))  # a quarter of the leader's 5,000,000,000
    assert int(out.events[0].data["token_amount"]) == 250_000_000 and s.leader_sold == 1_250_000_000
    s, _ = step(s, Filled(fill("sell", 250_000_000, 20_000_000)))
    _, out = step(s, sold(1_250_000_000, None))  # a third of what it has left
    assert int(out.events[0].data["token_amount"]) == 250_000_000


@pytest.mark.parametrize("fraction", [Decimal(0), Decimal("-0.5"), Decimal("1.5"), Decimal("NaN"), "abc", None])
def test_a_bad_fraction_is_an_error_reply(fraction: Any) -> None:
    out = decide(opened(), ClosePartial(PID, fraction), ctx())
    assert out.events == () and out.reply is not None and not out.reply.ok and "fraction" in out.reply.error


@pytest.mark.parametrize("price", [Decimal(0), Decimal(-1), Decimal("Infinity"), "x"])
def test_a_bad_stop_is_an_error_reply(price: Any) -> None:
    out = decide(opened(), SetStop(PID, price), ctx())
    assert out.events == () and out.reply is not None and not out.reply.ok


def test_a_stop_above_the_market_is_refused_and_a_valid_one_fires() -> None:
    out = decide(opened(), SetStop(PID, Decimal("0.0002")), ctx(mark=tick(1.0)))
    assert not out.reply.ok and "above" in out.reply.error  # type: ignore[union-attr]
    s, out = step(opened(), SetStop(PID, Decimal("0.00009")), ctx(mark=tick(1.0)))
    assert out.reply.ok and s.stop == Fraction(9, 100) and s.stop_reason == "manual_stop"  # type: ignore[union-attr]
    assert kinds_and_reason(s, tick(0.91))[1] is None and kinds_and_reason(s, tick(0.9))[1] == "manual_stop"


def test_failed_exit_is_retried_with_backoff_and_never_filled() -> None:
    s = with_order(opened(), ClosePosition(PID))
    s, out = step(s, FillFailed("sell", "NoRoute"), ctx(T0))
    assert out.events[0].data == {"reason": "manual_close", "error": "NoRoute", "attempt": 1, "retry_at": T0 + 30}
    assert decide(s, tick(1.0), ctx(T0 + 29)).effects == ()
    assert decide(s, tick(1.0), ctx(T0 + 30)).effects == (Sell(TOKENS),)
    s, out = step(s, FillFailed("sell", "NoRoute"), ctx(T0 + 30))
    assert out.events[0].data["retry_at"] == T0 + 30 + 60 and s.status == "exit_failed" and s.exit_quote_amount == 0


def test_a_full_exit_rule_supersedes_a_pending_partial_order() -> None:
    s = step(with_order(opened()), FillFailed("sell", "NoRoute"))[0]  # a 30 % order waits for its retry
    _, reason, effects = kinds_and_reason(s, tick(0.5))
    assert reason == "stop_loss" and effects == (Sell(TOKENS),)


def test_usdc_positions_are_priced_in_dollars() -> None:
    s = replace(opened(), quote_mint=USDC_MINT)
    assert quote_price(s, tick(1.0)) == Fraction(1, 100)  # $0.01 a token = 10,000 raw USDC / 1,000,000 raw tokens


# -- properties -----------------------------------------------------------------------------------------
bad_ticks = st.builds(
    lambda ratio, stale, sol, at: tick(ratio, stale=stale, sol_usd=sol, at=at, liquidity=None),
    st.one_of(st.none(), st.floats(0.0001, 0.5)), st.booleans(), st.sampled_from([SOL_USD, None]),
    st.floats(T0 - 10_000, T0 + 1000),
).filter(lambda t: t.usd is None or t.stale or t.sol_usd is None)


@settings(max_examples=200, deadline=None)
@given(st.lists(bad_ticks, min_size=1, max_size=30))
def test_unknown_or_stale_prices_never_exit_and_never_book(ticks: list[PriceTick]) -> None:
    s, kinds = opened(), []
    for i, t in enumerate(ticks):
        s, out = step(s, t, ctx(T0 + i))  # well inside the time stop
        assert out.effects == ()
        kinds += [e.kind for e in out.events]
    assert set(kinds) <= {"stale_flagged"} and len(kinds) <= 1  # flagged at most once
    assert s.status == "open" and s.realized_pnl_quote is None and s.exit_quote_amount == 0 and s.order is None


def test_a_stale_position_is_flagged_once_then_cleared() -> None:
    s = opened()
    s, out = step(s, tick(0.1, stale=True, at=T0), ctx(T0 + 300))
    assert out.events == ()  # not past the limit yet
    s, out = step(s, tick(0.1, stale=True, at=T0), ctx(T0 + 301))
    assert [e.kind for e in out.events] == ["stale_flagged"] and s.stale_flagged
    s, out = step(s, tick(None), ctx(T0 + 900))
    assert out.events == ()
    s, out = step(s, tick(1.0), ctx(T0 + 901))
    assert [e.kind for e in out.events] == ["stale_cleared"] and not s.stale_flagged


commands = st.one_of(
    st.floats(0.3, 3.0).map(lambda r: tick(r)),
    st.just(tick(None)),
    st.tuples(st.integers(1, 1000), st.one_of(st.none(), st.integers(1, 1000))).map(lambda a: sold(*a)),
    st.just(ClosePosition(PID)),
    st.decimals(Decimal("-0.5"), Decimal("1.5"), places=2).map(lambda f: ClosePartial(PID, f)),
    st.decimals(Decimal("0.00001"), Decimal("0.0003"), places=6).map(lambda p: SetStop(PID, p)),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(commands, st.booleans(), st.integers(50, 100)), max_size=25))
def test_the_fold_of_the_journal_is_the_live_state_and_pnl_is_the_sum_of_fills(script: list) -> None:
    live, journal, now = pending(), [OPENED], T0
    fills: list[Fill] = []

    def run(command: Any) -> None:
        nonlocal live
        out = decide(live, command, ctx(now, mark=tick(1.0)))
        for ev in out.events:
            live = apply(live, ev, PID)
            journal.append(ev)
        for eff in out.effects:  # the executor: fills at 90 % of the mark, or no route
            if ok:
                f = fill("sell", eff.token_amount, eff.token_amount * COST * pct // (TOKENS * 100), now)
                fills.append(f)
                run(Filled(f))
            else:
                run(FillFailed("sell", "NoRoute"))

    ok, pct = True, 100
    buy = fill("buy", TOKENS, COST)
    run(Filled(buy))
    for command, ok, pct in script:
        now += 45
        run(command)
    replayed = fold(PID, tuple(journal))
    assert [getattr(replayed, f.name) for f in fields(replayed)] == [getattr(live, f.name) for f in fields(live)]
    assert [e.seq for e in journal] == list(range(1, len(journal) + 1))
    assert live.token_amount_open == TOKENS - sum(f.token_amount for f in fills) >= 0
    if live.status == "closed":
        assert live.realized_pnl_quote == sum(f.quote_amount for f in fills) - buy.quote_amount
    assert live.exit_quote_amount == sum(f.quote_amount for f in fills)
