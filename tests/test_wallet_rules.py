"""The wallet's copy rules and its transition table, driven directly (no threads, no database)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from actors.messages import (
    EntryDecision,
    JournalEvent,
    LeaderSold,
    PositionClosed,
    RecordResult,
    ReservationBound,
    ReservationReleased,
    StartPosition,
    SwapObserved,
    ToPosition,
    TradingModeChanged,
    WalletSettingsChanged,
)
from actors.rules import CopyRules, RulesError, apply_assignments, effective
from actors.trades import USDC_MINT
from actors.wallet import (
    TABLE,
    AssessSafety,
    Context,
    Record,
    Recorded,
    Reserve,
    ReservationTimedOut,
    next_queued,
    SafetyAssessed,
    WalletState,
    decide,
    paper_entry,
    screen_buy,
    screen_token,
    transition,
)
from tests.copykit import pubkey, sig, swap_payload, trade
from intelligence.safety import SafetyReport

W, MINT, OTHER = pubkey("leader"), pubkey("mint"), pubkey("other")
RISK = Context(now=12 * 3600.0, risk=True)
NOON = 12 * 3600.0


def report(passed: bool = True, **facts: object) -> SafetyReport:
    base = {"liquidity_usd": 50_000.0, "market_cap_usd": 1_000_000.0, "pool_age_s": 3600.0, "dex": "pumpswap",
            "price_impact_pct": 0.5}
    base.update(facts)
    return SafetyReport(MINT, 0.95 if passed else 0.2, passed, None if passed else "safety:liquidity", (), 0.0, base)


# -- the table ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("event", [SwapObserved, SafetyAssessed, EntryDecision, ReservationTimedOut, Recorded, PositionClosed,
                                   WalletSettingsChanged, TradingModeChanged])
def test_table_covers_every_event(event: type) -> None:
    assert ("watching", event) in TABLE


@pytest.mark.parametrize("event", [EntryDecision, ReservationTimedOut, TradingModeChanged, SwapObserved, PositionClosed,
                                   WalletSettingsChanged])
def test_awaiting_a_reservation_is_a_state_of_its_own(event: type) -> None:
    assert ("awaiting_reservation", event) in TABLE


def awaiting(r: "Reserve") -> WalletState:
    """The wallet after asking the risk actor for `r`'s room (what `transition` returns with the Reserve)."""
    state, (effect,) = transition(WalletState(W), SwapObserved(r.observation.signature, W, swap_payload(
        r.observation.signature, W, MINT, "buy", 10**9, 10**6)), CopyRules(), RISK)
    assert effect == r and state.status == "awaiting_reservation" and state.awaiting == r.observation
    return state


def test_deliveries_wait_in_the_state_while_a_reservation_is_awaited_and_run_in_order_after() -> None:
    r = taken()
    state = awaiting(r)
    later = SwapObserved(sig("later"), W, swap_payload(sig("later"), W, MINT, "sell", 10**9, 10**6))
    state, effects = transition(state, later, CopyRules(), RISK)
    state, more = transition(state, WalletSettingsChanged(W, {"mode": "off"}), CopyRules(), RISK)
    assert effects == more == [] and state.queued == (later, WalletSettingsChanged(W, {"mode": "off"}))
    state, effects = transition(state, EntryDecision("another:request", True), CopyRules(), RISK)  # not ours: ignored
    assert effects == [] and state.status == "awaiting_reservation"
    state, (effect,) = transition(state, EntryDecision(r.reservation_id, True), CopyRules(), RISK)
    assert state.status == "watching" and effect.reservation_id == r.reservation_id
    state, first = next_queued(state)
    assert first == later and len(state.queued) == 1  # the oldest first; the settings change after it
    state, effects = transition(state, EntryDecision(r.reservation_id, True), CopyRules(), RISK)  # a late duplicate
    assert effects == [] and state.status == "watching"


def test_unknown_event_is_a_bug() -> None:
    with pytest.raises(LookupError):
        transition(WalletState(W), "hello", CopyRules())


# -- sizing -----------------------------------------------------------------------------------------------------
def test_percent_sizing_is_clamped_to_min_and_max() -> None:
    rules = CopyRules(sizing="percent", percent=Decimal("10"), min_sol=Decimal("0.05"), max_sol=Decimal("0.3"))
    assert paper_entry(trade(W, MINT, lamports=2 * 10**9), rules).quote_amount == 200_000_000  # 10% of 2 SOL
    assert paper_entry(trade(W, MINT, lamports=10**8), rules).quote_amount == 50_000_000  # min
    assert paper_entry(trade(W, MINT, lamports=10 * 10**9), rules).quote_amount == 300_000_000  # max
    usd = CopyRules(sizing="percent", percent=Decimal("50"), min_usd=Decimal("1"), max_usd=Decimal("5"))
    e = paper_entry(trade(W, MINT, lamports=4_000_000, quote_mint=USDC_MINT), usd)
    assert e.quote_amount == 2_000_000 and e.token_amount == 2_000_000
    assert e.slippage_bps == 100 and e.max_price_impact_pct is None


# -- rules before the verdict -----------------------------------------------------------------------------------
def reason(rules: CopyRules, state: WalletState | None = None, ctx: Context = Context(now=NOON), **kw: object) -> str | None:
    t = trade(W, MINT, **kw)  # type: ignore[arg-type]
    return screen_buy(state or WalletState(W), t, paper_entry(t, rules), rules, ctx)


@pytest.mark.parametrize("rules, ctx, expected", [
    (CopyRules(), Context(now=NOON), None),
    (CopyRules(mode="off"), Context(now=NOON), "mode_off"),
    (CopyRules(mode="live"), Context(now=NOON), "live_not_available"),
    (CopyRules(mode="live"), Context(now=NOON, live_available=True), "live:global_mode_not_live"),
    (CopyRules(active_hours="08-11"), Context(now=NOON), "outside_active_hours"),
    (CopyRules(active_hours="08-13"), Context(now=NOON), None),
    (CopyRules(active_hours="22-06"), Context(now=23 * 3600.0), None),
    (CopyRules(active_hours="22-06"), Context(now=NOON), "outside_active_hours"),
    (CopyRules(blacklist=(MINT,)), Context(now=NOON), "blacklisted"),
    (CopyRules(leader_min_sol=Decimal("3")), Context(now=NOON), "leader_trade_too_small"),
    (CopyRules(leader_max_sol=Decimal("1")), Context(now=NOON), "leader_trade_too_large"),
    (CopyRules(leader_min_sol=Decimal("1"), leader_max_sol=Decimal("3")), Context(now=NOON), None),
])
def test_rules_before_the_verdict(rules: CopyRules, ctx: Context, expected: str | None) -> None:
    assert reason(rules, ctx=ctx) == expected


def test_live_needs_the_key_the_wallets_rules_and_the_global_mode() -> None:
    live = CopyRules(mode="live")
    assert reason(live, WalletState(W, trading_mode="live"), Context(now=NOON, live_available=True)) is None
    assert reason(live, WalletState(W, trading_mode="live"), Context(now=NOON)) == "live_not_available"
    assert reason(live, WalletState(W, trading_mode="paper"), Context(now=NOON, live_available=True)) == \
        "live:global_mode_not_live"
    assert reason(live, WalletState(W, trading_mode="off"), Context(now=NOON, live_available=True)) == "mode:off"


def test_duplicate_control_per_wallet_and_token() -> None:
    held = WalletState(W, leader_holdings={MINT: 5})
    assert reason(CopyRules(), held) == "leader_add_on"
    assert reason(CopyRules(skip_add_ons=False), held) is None
    bought = WalletState(W, buys={MINT: (1, 100_000_000)})
    assert reason(CopyRules(), bought) == "max_buys_per_token"
    assert reason(CopyRules(max_buys_per_token=2), bought) is None
    assert reason(CopyRules(max_buys_per_token=5, max_sol_per_token=Decimal("0.15")), bought) == "max_sol_per_token"
    assert reason(CopyRules(max_buys_per_token=5, max_sol_per_token=Decimal("0.2")), bought) is None


def test_live_mode_is_refused_and_followed_as_a_shadow() -> None:
    obs = decide(WalletState(W), "s", trade(W, MINT), CopyRules(mode="live"), ctx=RISK)
    assert (obs.decision, obs.reason, obs.entry.mode) == ("skipped", "live_not_available", "shadow")
    _, effects = transition(WalletState(W), SwapObserved(sig("live"), W, swap_payload(sig("live"), W, MINT, "buy", 10**9, 10**6)),
                            CopyRules(mode="live"), RISK)
    (rec,) = effects  # recorded as skipped: never a reservation, never a paper entry
    assert isinstance(rec, Record) and rec.observation.reason == "live_not_available"
    assert rec.observation.entry.mode == "shadow"


# -- token filters on the verdict's facts -----------------------------------------------------------------------
@pytest.mark.parametrize("rules, facts, expected", [
    (CopyRules(min_liquidity_usd=10_000), {}, None),
    (CopyRules(min_liquidity_usd=100_000), {}, "filter:min_liquidity"),
    (CopyRules(min_liquidity_usd=1), {"liquidity_usd": None}, "filter:liquidity_unknown"),
    (CopyRules(min_market_cap_usd=2e6), {}, "filter:market_cap"),
    (CopyRules(max_market_cap_usd=5e5), {}, "filter:market_cap"),
    (CopyRules(max_pool_age_hours=0.5), {}, "filter:max_pool_age"),
    (CopyRules(max_pool_age_hours=2), {}, None),
    (CopyRules(max_price_impact_pct=0.2), {}, "max_price_impact"),
    (CopyRules(max_price_impact_pct=1), {}, None),
    (CopyRules(allowed_sources=("raydium",)), {}, "source_not_allowed"),
    (CopyRules(allowed_sources=("pump_amm",)), {}, None),  # the trade's source
    (CopyRules(allowed_sources=("PumpSwap",)), {}, None),  # the pool's DEX
])
def test_token_filters(rules: CopyRules, facts: dict, expected: str | None) -> None:
    assert screen_token(trade(W, MINT), report(**facts), rules) == expected


def test_filters_fail_closed_without_a_verdict() -> None:
    assert screen_token(trade(W, MINT), None, CopyRules(min_liquidity_usd=1)) == "filter:liquidity_unknown"


def test_screening_asks_for_the_verdict_then_reserves() -> None:
    state = WalletState(W, screen=True)
    payload = swap_payload(sig("b"), W, MINT, "buy", 10**9, 10**6)
    _, effects = transition(state, SwapObserved(sig("b"), W, payload), CopyRules(), RISK)
    (ask,) = effects
    assert isinstance(ask, AssessSafety)
    _, effects = transition(state, SafetyAssessed(sig("b"), ask.trade, report()), CopyRules(), RISK)
    assert isinstance(effects[0], Reserve) and effects[0].observation.safety["facts"]["dex"] == "pumpswap"
    _, effects = transition(state, SafetyAssessed(sig("b"), ask.trade, report(passed=False)), CopyRules(), RISK)
    assert isinstance(effects[0], Record) and effects[0].observation.reason == "safety:liquidity"
    _, effects = transition(state, SafetyAssessed(sig("b"), ask.trade, TimeoutError()), CopyRules(), RISK)
    assert effects[0].observation.reason == "safety:unavailable"


def test_rules_that_skip_do_not_ask_for_a_verdict() -> None:
    state = WalletState(W, screen=True, overrides={"mode": "off"})
    payload = swap_payload(sig("c"), W, MINT, "buy", 10**9, 10**6)
    _, (effect,) = transition(state, SwapObserved(sig("c"), W, payload), CopyRules(), RISK)
    assert isinstance(effect, Record) and effect.observation.reason == "mode_off"


# -- the reservation round trip ---------------------------------------------------------------------------------
def taken() -> Reserve:
    _, (effect,) = transition(WalletState(W), SwapObserved(sig("d"), W, swap_payload(sig("d"), W, MINT, "buy", 10**9, 10**6)),
                              CopyRules(), RISK)
    assert isinstance(effect, Reserve) and effect.reservation_id == f"{sig('d')}:{W}"
    return effect


def test_without_a_risk_actor_a_taken_buy_is_recorded_at_once() -> None:
    _, (effect,) = transition(WalletState(W), SwapObserved(sig("d"), W, swap_payload(sig("d"), W, MINT, "buy", 10**9, 10**6)),
                              CopyRules(), Context(now=NOON))
    assert isinstance(effect, Record) and effect.observation.decision == "taken"


def test_granted_entry_is_recorded_with_its_reservation() -> None:
    r = taken()
    _, (effect,) = transition(awaiting(r), EntryDecision(r.reservation_id, True), CopyRules(), RISK)
    assert isinstance(effect, Record) and effect.reservation_id == r.reservation_id
    assert effect.observation.decision == "taken" and effect.observation.entry.mode == "paper"


def test_refused_entry_is_skipped_with_the_cap_and_shadowed() -> None:
    r = taken()
    refusal = EntryDecision(r.reservation_id, False, "cap:max_open_positions")
    _, (effect,) = transition(awaiting(r), refusal, CopyRules(), RISK)
    obs = effect.observation
    assert (obs.decision, obs.reason, obs.entry.mode, effect.reservation_id) == ("skipped", "cap:max_open_positions", "shadow", None)


def test_no_answer_from_risk_fails_closed_and_releases() -> None:
    r = taken()
    state, effects = transition(awaiting(r), ReservationTimedOut(r.reservation_id), CopyRules(), RISK)
    assert state.status == "watching"
    assert effects[0] == ReservationReleased(r.reservation_id)
    assert effects[1].observation.reason == "risk:unavailable"


def test_recorded_entry_binds_the_reservation_and_counts_the_buy() -> None:
    r = taken()
    opened = (JournalEvent(1, "opened", {}),)
    state, effects = transition(WalletState(W), Recorded(r.observation, RecordResult(False, 1, 9, opened), r.reservation_id),
                                CopyRules(), RISK)
    assert effects[0] == ReservationBound(r.reservation_id, 9, W, MINT, r.observation.trade.quote_mint, 100_000_000)
    assert isinstance(effects[1], StartPosition)  # after the binding: the position's close must find it bound
    assert state.buys == {MINT: (1, 100_000_000)} and state.leader_holdings == {MINT: 10**6}
    assert state.open_by_token == {MINT: frozenset({9})}


def test_duplicate_releases_the_reservation() -> None:
    r = taken()
    state, effects = transition(WalletState(W), Recorded(r.observation, RecordResult(True), r.reservation_id), CopyRules(), RISK)
    assert effects == [ReservationReleased(r.reservation_id)] and state == WalletState(W)


def test_leader_sell_carries_its_holding_before_the_sale() -> None:
    state = WalletState(W, open_by_token={MINT: frozenset({9})}, leader_holdings={MINT: 1_000})
    sell = decide(state, sig("s1"), trade(W, MINT, "sell", tokens=300, signature=sig("s1")), CopyRules())
    state, effects = transition(state, Recorded(sell, RecordResult(False, 2)), CopyRules())
    (msg,) = effects
    assert isinstance(msg, ToPosition) and isinstance(msg.message, LeaderSold)
    assert msg.message.leader_holding_before == 1_000 and state.leader_holdings == {MINT: 700}
    more = decide(state, sig("s2"), trade(W, MINT, "sell", tokens=5_000, signature=sig("s2")), CopyRules())
    state, (msg,) = transition(state, Recorded(more, RecordResult(False, 3)), CopyRules())
    assert msg.message.leader_holding_before is None  # sold more than we saw it buy: unknown
    # a sell delivered before its buy: the flows net out, and the buy after it is not an add-on
    assert state.leader_holdings == {MINT: -4_300}
    late = decide(state, sig("b2"), trade(W, MINT, "buy", tokens=4_300, signature=sig("b2")), CopyRules())
    state, _ = transition(state, Recorded(late, RecordResult(False, 4)), CopyRules())
    assert state.leader_holdings == {}


def test_the_per_token_limits_count_the_current_holding() -> None:
    state = WalletState(W, open_by_token={MINT: frozenset({9})}, buys={MINT: (1, 100_000_000)})
    assert reason(CopyRules(), state) == "max_buys_per_token"
    state, _ = transition(state, PositionClosed(9, W, MINT), CopyRules())
    assert state.buys == {} and reason(CopyRules(), state) is None


def test_settings_change_applies_to_the_next_decision() -> None:
    state, _ = transition(WalletState(W), WalletSettingsChanged(W, {"mode": "off"}), CopyRules())
    assert state.overrides == {"mode": "off"}
    _, (effect,) = transition(state, SwapObserved(sig("e"), W, swap_payload(sig("e"), W, MINT, "buy", 10**9, 10**6)),
                              CopyRules(), RISK)
    assert effect.observation.reason == "mode_off"
    broken = WalletState(W, overrides={"min_sol": "5"})  # invalid with the defaults' max_sol=1: stop copying
    _, (effect,) = transition(broken, SwapObserved(sig("f"), W, swap_payload(sig("f"), W, MINT, "buy", 10**9, 10**6)),
                              CopyRules(), RISK)
    assert effect.observation.reason == "mode_off"


# -- the rules model ----------------------------------------------------------------------------------------------
def test_overrides_are_validated_and_normalised() -> None:
    d = CopyRules()
    new = apply_assignments(d, {}, ["mode=off", "fixed_sol=0.25", "blacklist=a, b", "active_hours=8-22"])
    assert new == {"mode": "off", "fixed_sol": "0.25", "blacklist": ["a", "b"], "active_hours": "08-22"}
    rules = effective(d, new)
    assert rules.blacklist == ("a", "b") and rules.fixed_sol == Decimal("0.25")
    assert apply_assignments(d, new, ["mode="]) == {"fixed_sol": "0.25", "blacklist": ["a", "b"], "active_hours": "08-22"}
    for bad in (["nope=1"], ["mode=turbo"], ["fixed_sol=-1"], ["min_sol=2"], ["active_hours=25-3"], ["mode"]):
        with pytest.raises(RulesError):
            apply_assignments(d, {}, bad)


def test_copy_defaults_come_from_the_settings_and_are_validated() -> None:
    from walltrack.config import copy_rules
    from walltrack.settings import ConfigError, load_settings

    s = load_settings(_env_file=None, copy_blacklist="a,b", copy_active_hours="", copy_min_liquidity_usd="")
    rules = copy_rules(s)
    assert rules.blacklist == ("a", "b") and rules.active_hours is None and rules.mode == "paper"
    assert copy_rules(load_settings(_env_file=None, copy_mode="off")).mode == "off"
    with pytest.raises(ConfigError, match="min_sol must not exceed max_sol"):
        load_settings(_env_file=None, copy_min_sol="2", copy_max_sol="1")
    with pytest.raises(ConfigError, match="COPY_ACTIVE_HOURS"):
        load_settings(_env_file=None, copy_active_hours="25-3")


# -- live entries pay SOL ----------------------------------------------------------------------------------------
def test_a_live_entry_pays_sol_and_a_usd_leader_is_sized_by_the_usd_rules_at_the_sol_price() -> None:
    from actors.trades import WSOL_MINT
    from actors.wallet import decide

    live = CopyRules(mode="live", fixed_sol=Decimal("0.2"), fixed_usd=Decimal("30"))
    state = WalletState(W, trading_mode="live")
    sol_trade = trade(W, MINT)
    obs = decide(state, "s1", sol_trade, live, ctx=Context(now=NOON, live_available=True))
    assert (obs.decision, obs.entry.mode, obs.entry.quote_mint, obs.entry.quote_amount) == (
        "taken", "live", WSOL_MINT, 200_000_000)  # type: ignore[union-attr]
    usd_trade = trade(W, MINT, lamports=500 * 10**6, quote_mint=USDC_MINT)  # the leader paid 500 USDC
    obs = decide(state, "s2", usd_trade, live, ctx=Context(now=NOON, live_available=True, sol_usd=Decimal("150")))
    assert (obs.entry.mode, obs.entry.quote_mint, obs.entry.quote_amount) == ("live", WSOL_MINT, 200_000_000)  # type: ignore[union-attr]
    # $30 at $150 a SOL is 0.2 SOL
    unknown = decide(state, "s3", usd_trade, live, ctx=Context(now=NOON, live_available=True))
    assert (unknown.decision, unknown.reason) == ("skipped", "live:sol_price_unknown")
    assert unknown.entry.mode == "shadow" and unknown.entry.quote_mint is None  # type: ignore[union-attr]
    # refused later (a cap): the shadow keeps the converted size with its mint — SOL amounts stay SOL-quoted
    from actors.wallet import skipped

    taken = decide(state, "s4", usd_trade, live, ctx=Context(now=NOON, live_available=True, sol_usd=Decimal("150")))
    shadow = skipped(taken, "cap:live_max_trade").entry
    assert (shadow.mode, shadow.quote_mint, shadow.quote_amount) == ("shadow", WSOL_MINT, 200_000_000)  # type: ignore[union-attr]
