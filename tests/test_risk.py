"""The risk actor's table: caps, reservations, and every breaker — trips after its configured losses, blocks
the next entry, resets by command and by time. Driven directly (no threads, no database)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from actors.messages import (
    BreakerReset,
    EntryDecision,
    PositionClosed,
    ReservationBound,
    ReservationReleased,
    ReserveEntry,
    SolPrice,
)
from actors.risk import (
    DAY,
    TABLE,
    FetchOutcome,
    Outcome,
    Record,
    Reply,
    RiskConfig,
    RiskState,
    Tick,
    rebuild,
    transition,
)
from actors.trades import USDC_MINT, WSOL_MINT
from tests.copykit import pubkey

SOL = 10**9
W1, W2 = pubkey("w1"), pubkey("w2")
ASKER = object()  # stands for the asking wallet's ActorRef (the pure table only hands it back)
T1, T2 = pubkey("t1"), pubkey("t2")
T0 = 100 * DAY + 3600.0  # 01:00 UTC on some day
OFF = dict(max_drawdown_pct=Decimal(0), daily_loss_sol=Decimal(0), loss_streak=0, stoploss_cooldown_s=0, wallet_loss_streak=0)


def cfg(**kw: Any) -> RiskConfig:
    base: dict[str, Any] = dict(starting_capital_sol=Decimal("10"), reserve_sol=Decimal("1"), max_open_positions=0,
                                max_token_exposure_sol=Decimal(0), max_total_exposure_sol=Decimal(0), max_trades_per_day=0,
                                **OFF)
    base.update(kw)
    return RiskConfig(**base)


class Driver:
    """Feeds events through `transition` with a clock, and keeps the effects."""

    def __init__(self, config: RiskConfig, state: RiskState | None = None, now: float = T0) -> None:
        self.cfg, self.state, self.now = config, state or RiskState(day=int(now // DAY)), now
        self.records: list[dict[str, Any]] = []
        self.n = 0

    def send(self, event: Any) -> list[Any]:
        self.state, effects = transition(self.state, event, self.cfg, self.now)
        for e in effects:
            if isinstance(e, Record):
                self.records.extend(e.events)
        return effects

    def reserve(self, wallet: str = W1, mint: str = T1, lamports: int = SOL // 10, quote: str = WSOL_MINT) -> EntryDecision:
        self.n += 1
        answers: list[EntryDecision] = []
        effects = self.send(ReserveEntry(f"r{self.n}", wallet, mint, quote, lamports, reply_to=ASKER))
        (reply,) = [e for e in effects if isinstance(e, Reply)]
        assert reply.reply_to is ASKER  # the answer is told back to the asker's ref
        answers.append(reply.decision)
        return answers[0]

    def open(self, wallet: str = W1, mint: str = T1, lamports: int = SOL // 10) -> int:
        d = self.reserve(wallet, mint, lamports)
        assert d.granted, d.reason
        self.send(ReservationBound(d.reservation_id, 1000 + self.n, wallet, mint, WSOL_MINT, lamports))
        return 1000 + self.n

    def lose(self, sol: Decimal, wallet: str = W1, mint: str = T1, reason: str = "mirror_sell") -> None:
        pid = self.open(wallet, mint)
        pnl = -int(sol * SOL)
        self.send(PositionClosed(pid, wallet, mint, mode="paper", quote_mint=WSOL_MINT, realized_pnl_quote=pnl, exit_reason=reason))

    def win(self, sol: Decimal, wallet: str = W1) -> None:
        pid = self.open(wallet)
        self.send(PositionClosed(pid, wallet, T1, mode="paper", quote_mint=WSOL_MINT, realized_pnl_quote=int(sol * SOL),
                                 exit_reason="take_profit"))


@pytest.mark.parametrize("event", [ReserveEntry, ReservationBound, ReservationReleased, PositionClosed, Outcome,
                                   BreakerReset, Tick, SolPrice])
def test_table_covers_every_event(event: type) -> None:
    assert event in TABLE


def test_unknown_event_is_a_bug() -> None:
    with pytest.raises(LookupError):
        transition(RiskState(), "hello", cfg(), T0)


# -- caps ---------------------------------------------------------------------------------------------------------
def test_max_open_positions_counts_reservations_and_frees_on_close() -> None:
    d = Driver(cfg(max_open_positions=2))
    pid = d.open()
    assert d.reserve().granted  # reserved, not yet stored: it counts
    assert d.reserve().reason == "cap:max_open_positions"
    d.send(PositionClosed(pid, W1, T1, mode="paper", quote_mint=WSOL_MINT, realized_pnl_quote=0, exit_reason="x"))
    assert d.reserve().granted


def test_per_token_and_total_exposure() -> None:
    d = Driver(cfg(max_token_exposure_sol=Decimal("0.25"), max_total_exposure_sol=Decimal("0.4")))
    d.open(mint=T1)
    d.open(mint=T1)
    assert d.reserve(mint=T1).reason == "cap:max_token_exposure"  # 0.3 > 0.25 on T1
    assert d.reserve(mint=T2, lamports=SOL // 5).granted  # 0.4 in total: at the cap, not over it
    assert d.reserve(mint=T2, lamports=SOL // 100).reason == "cap:max_total_exposure"


def test_usd_exposure_is_valued_at_the_sol_price() -> None:
    d = Driver(cfg(max_total_exposure_sol=Decimal("1")))
    assert d.reserve(quote=USDC_MINT, lamports=160 * 10**6).reason == "cap:max_total_exposure"  # $160 at the $150 fallback
    d.send(SolPrice(Decimal("200")))
    assert d.reserve(quote=USDC_MINT, lamports=160 * 10**6).granted  # 0.8 SOL at $200


def test_trades_per_day_resets_at_utc_midnight_and_a_release_gives_it_back() -> None:
    d = Driver(cfg(max_trades_per_day=2))
    d.open()
    r = d.reserve()
    assert d.reserve().reason == "cap:max_trades_per_day"
    d.send(ReservationReleased(r.reservation_id))  # the entry was not stored: not a trade
    assert d.reserve().granted
    d.now = (int(T0 // DAY) + 1) * DAY + 1
    assert d.reserve().granted


def test_reserve_of_sol_is_never_spent() -> None:
    d = Driver(cfg(starting_capital_sol=Decimal("1"), reserve_sol=Decimal("0.75")))
    d.open(lamports=SOL // 5)
    assert d.reserve(lamports=SOL // 10).reason == "cap:reserve"  # 1 - 0.2 - 0.1 < 0.75
    assert d.reserve(lamports=SOL // 20).granted


def test_the_same_reservation_asked_twice_is_granted_once() -> None:
    d = Driver(cfg(max_open_positions=1))
    answers: list[EntryDecision] = []
    for _ in range(2):
        (reply,) = d.send(ReserveEntry("same", W1, T1, WSOL_MINT, SOL // 10, reply_to=ASKER))
        assert reply.reply_to is ASKER  # the answer is told back to the asker's ref
        answers.append(reply.decision)
    assert [a.granted for a in answers] == [True, True] and len(d.state.reserved) == 1 and d.state.trades_today == 1


def test_unbound_reservations_expire() -> None:
    d = Driver(cfg(max_open_positions=1))
    assert d.reserve().granted
    d.now += d.cfg.reservation_ttl_s + 1
    assert d.reserve().granted


def test_a_close_without_its_pnl_is_looked_up_and_shadows_are_ignored() -> None:
    d = Driver(cfg(loss_streak=1))
    pid = d.open()
    (fetch,) = d.send(PositionClosed(pid, W1, T1))
    assert isinstance(fetch, FetchOutcome) and pid not in d.state.open
    d.send(Outcome(PositionClosed(pid, W1, T1, mode="paper", quote_mint=WSOL_MINT, realized_pnl_quote=-1, exit_reason="x")))
    assert "loss_streak" in d.state.breakers
    shadow = Driver(cfg(loss_streak=1))
    assert shadow.send(PositionClosed(77, W1, T1, mode="shadow", quote_mint=WSOL_MINT, realized_pnl_quote=-SOL)) == []
    assert shadow.state.breakers == {} and shadow.state.realized == 0


# -- breakers: trip after the configured losses, block the next entry, reset by command and by time ------------------
def tripped(d: Driver, name: str) -> dict[str, Any]:
    (ev,) = [r for r in d.records if r["name"] == name and r["kind"] == "tripped"]
    return ev


def test_max_drawdown() -> None:
    d = Driver(cfg(max_drawdown_pct=Decimal("20"), drawdown_stop_s=3600))
    d.win(Decimal("2"))  # peak 12 SOL
    d.lose(Decimal("2.3"))  # 9.7: 19.2% below the peak
    assert d.state.breakers == {} and d.reserve().granted
    d.lose(Decimal("0.1"))  # 9.6: 20%
    assert tripped(d, "max_drawdown")["until"] == d.now + 3600 and "20.0%" in d.state.breakers["max_drawdown"].reason
    assert d.reserve().reason == "breaker:max_drawdown"
    d.send(BreakerReset("max_drawdown"))
    assert d.reserve().granted and d.records[-1]["kind"] == "reset" and d.records[-1]["by"] == "operator"
    d.lose(Decimal("0.5"))  # the peak restarts from the equity at the reset: 9.1 / 9.6 is 5% down
    assert d.state.breakers == {}


def test_daily_loss_resets_at_midnight() -> None:
    d = Driver(cfg(daily_loss_sol=Decimal("1")))
    d.lose(Decimal("0.6"))
    assert d.reserve().granted
    d.lose(Decimal("0.4"))
    assert d.reserve().reason == "breaker:daily_loss"
    assert tripped(d, "daily_loss")["until"] == (int(T0 // DAY) + 1) * DAY
    d.now = (int(T0 // DAY) + 1) * DAY
    effects = d.send(Tick())
    assert effects and d.records[-1] == {**d.records[-1], "kind": "reset", "by": "time", "name": "daily_loss"}
    assert d.reserve().granted


def test_loss_streak_in_a_window() -> None:
    d = Driver(cfg(loss_streak=3, loss_streak_window_s=600, loss_streak_stop_s=1800))
    d.lose(Decimal("0.01"))
    d.lose(Decimal("0.01"))
    d.win(Decimal("0.01"))  # a win breaks the run
    d.lose(Decimal("0.01"))
    d.now += 700  # the first loss of a run leaves the window
    d.lose(Decimal("0.01"))
    d.lose(Decimal("0.01"))
    assert d.state.breakers == {} and d.reserve().granted
    d.lose(Decimal("0.01"))
    assert d.reserve().reason == "breaker:loss_streak"
    d.now += 1799
    assert d.reserve().reason == "breaker:loss_streak"
    d.now += 1
    assert d.reserve().granted  # reset by time
    assert [r["by"] for r in d.records if r["kind"] == "reset"] == ["time"]


def test_stop_loss_cools_down_that_token_only() -> None:
    d = Driver(cfg(stoploss_cooldown_s=600))
    d.lose(Decimal("0.05"), mint=T1, reason="mirror_sell")
    assert d.reserve(mint=T1).granted  # only a stop loss cools the token down
    d.lose(Decimal("0.05"), mint=T1, reason="stop_loss")
    assert d.reserve(mint=T1).reason == "breaker:token_cooldown"
    assert d.reserve(mint=T2).granted
    d.now += 600
    assert d.reserve(mint=T1).granted


def test_wallet_pause_after_repeated_losses_pauses_that_wallet_only() -> None:
    d = Driver(cfg(wallet_loss_streak=2, wallet_pause_s=0))  # 0: until an operator resets it
    d.lose(Decimal("0.01"), wallet=W1)
    d.lose(Decimal("0.01"), wallet=W2)
    d.lose(Decimal("0.01"), wallet=W1)
    assert d.reserve(wallet=W1).reason == "breaker:wallet_pause"
    assert d.reserve(wallet=W2).granted
    d.now += 365 * DAY
    assert d.reserve(wallet=W1).reason == "breaker:wallet_pause"
    d.send(BreakerReset(f"wallet_pause:{W1}"))
    assert d.reserve(wallet=W1).granted
    d.lose(Decimal("0.01"), wallet=W1)  # counts from the reset: one loss is not two
    assert d.reserve(wallet=W1).granted


def test_exits_are_not_blocked_and_breakers_count_only_real_closes() -> None:
    d = Driver(cfg(loss_streak=1))
    pid = d.open()
    d.lose(Decimal("0.01"))
    # a tripped breaker refuses entries, but a position still closes and frees its exposure
    d.send(PositionClosed(pid, W1, T1, mode="paper", quote_mint=WSOL_MINT, realized_pnl_quote=5, exit_reason="x"))
    assert pid not in d.state.open and d.reserve().reason == "breaker:loss_streak"


# -- rebuilding after a restart -------------------------------------------------------------------------------------
def test_rebuild_counts_only_closes_after_each_breakers_last_reset() -> None:
    c = cfg(loss_streak=3, loss_streak_window_s=10 * DAY, wallet_loss_streak=5, max_trades_per_day=2)
    closes = [(T0 - 50, W1, T1, WSOL_MINT, -SOL, "x"), (T0 - 40, W1, T1, WSOL_MINT, -SOL, "x"),
              (T0 - 20, W1, T1, WSOL_MINT, -SOL, "x")]
    snap = {
        "open": [(5, W1, T1, WSOL_MINT, SOL // 10), (6, W2, T2, USDC_MINT, 15 * 10**6)],
        "opened": [T0 - 10, T0 - DAY],
        "closes": closes,
        "breakers": [{"name": "loss_streak", "state": "clear", "reason": "r", "tripped_at": T0 - 45, "until": None,
                      "reset_at": T0 - 30},
                     {"name": "token_cooldown:" + T2, "state": "tripped", "reason": "stop loss", "tripped_at": T0 - 5,
                      "until": T0 + 100, "reset_at": None}],
    }
    s = rebuild(c, T0, snap)
    assert s.open[5].lamports == SOL // 10 and s.open[6].lamports == SOL // 10  # $15 at $150
    assert s.trades_today == 1 and s.realized == -3 * SOL
    assert s.streak == (T0 - 20,)  # only the loss after the reset counts
    assert s.wallet_streak[W1] == 3 and set(s.breakers) == {"token_cooldown:" + T2}
    d = Driver(c, s)
    assert d.reserve(mint=T2).reason == "breaker:token_cooldown"
    assert d.reserve(mint=T1).granted
    assert d.reserve(mint=T1).reason == "cap:max_trades_per_day"


def test_an_entry_that_bought_nothing_is_neither_a_win_nor_a_loss() -> None:
    d = Driver(cfg(loss_streak=2))
    d.lose(Decimal("0.01"))
    pid = d.open()
    d.send(PositionClosed(pid, W1, T1, mode="paper", quote_mint=WSOL_MINT, realized_pnl_quote=0, exit_reason="entry_failed"))
    assert pid not in d.state.open and d.state.streak != ()  # freed, and the run of losses goes on
    d.lose(Decimal("0.01"))
    assert d.reserve().reason == "breaker:loss_streak"


# Every breaker, the same way: the losses it is configured for trip it (one fewer does not), the next entry is
# refused with its name, the operator's reset lets entries through, and so does its time running out.
BREAKERS: dict[str, tuple[dict[str, Any], int, dict[str, Any]]] = {
    # name: (config, losses of 0.6 SOL that trip it, what the loss carries)
    "max_drawdown": (dict(max_drawdown_pct=Decimal("10"), drawdown_stop_s=600), 2, {}),
    "daily_loss": (dict(daily_loss_sol=Decimal("1.2")), 2, {}),
    "loss_streak": (dict(loss_streak=3, loss_streak_stop_s=600), 3, {}),
    "token_cooldown": (dict(stoploss_cooldown_s=600), 1, {"reason": "stop_loss"}),
    "wallet_pause": (dict(wallet_loss_streak=2, wallet_pause_s=600), 2, {}),
}


@pytest.mark.parametrize("kind", sorted(BREAKERS))
def test_each_breaker_trips_after_its_losses_blocks_and_resets_by_command_and_by_time(kind: str) -> None:
    config, losses, loss = BREAKERS[kind]
    d = Driver(cfg(starting_capital_sol=Decimal("10"), reserve_sol=Decimal("0"), **config))
    name = {"token_cooldown": f"token_cooldown:{T1}", "wallet_pause": f"wallet_pause:{W1}"}.get(kind, kind)

    def trip() -> None:
        for i in range(losses):
            assert d.reserve().granted, f"tripped after {i} of {losses} losses"
            d.lose(Decimal("0.6"), **loss)
        assert d.reserve().reason == f"breaker:{kind}"
        assert tripped_now(d, name)

    trip()
    d.send(BreakerReset(name))
    assert d.reserve().granted and d.records[-1]["by"] == "operator"
    d.now += 1
    trip()
    until = d.state.breakers[name].until
    assert until is not None
    d.now = until - 1
    assert d.reserve().reason == f"breaker:{kind}"
    d.now = until
    assert d.reserve().granted and d.records[-1]["by"] == "time"


def tripped_now(d: Driver, name: str) -> bool:
    return name in d.state.breakers and d.records[-1]["kind"] == "tripped" and d.records[-1]["name"] == name


# -- live caps ---------------------------------------------------------------------------------------------
def live_reserve(d: Driver, lamports: int, wallet: str = W1, mint: str = T1) -> EntryDecision:
    d.n += 1
    answers: list[EntryDecision] = []
    effects = d.send(ReserveEntry(f"live{d.n}", wallet, mint, WSOL_MINT, lamports, reply_to=ASKER, mode="live"))
    (reply,) = [e for e in effects if isinstance(e, Reply)]
    assert reply.reply_to is ASKER  # the answer is told back to the asker's ref
    answers.append(reply.decision)
    return answers[0]


def test_live_entries_pass_the_live_caps_per_entry_per_day_and_in_total() -> None:
    d = Driver(cfg(live_max_trade_sol=Decimal("0.3"), live_max_daily_sol=Decimal("1"), live_max_total_sol=Decimal("0.5"),
                   reserve_sol=Decimal("10")))  # the paper reserve does not apply to live entries (the chain's does)
    assert live_reserve(d, SOL * 4 // 10).reason == "cap:live_max_trade"
    first = live_reserve(d, SOL * 3 // 10)
    assert first.granted
    assert live_reserve(d, SOL * 3 // 10).reason == "cap:live_max_total"  # 0.6 open would exceed 0.5
    assert d.reserve(lamports=SOL * 3 // 10).reason == "cap:reserve"  # a paper entry still meets the paper reserve
    d.send(ReservationBound(first.reservation_id, 7, W1, T1, WSOL_MINT, SOL * 3 // 10, mode="live"))
    d.send(PositionClosed(7, W1, T1, mode="live", quote_mint=WSOL_MINT, realized_pnl_quote=0, exit_reason="mirror_sell"))
    assert live_reserve(d, SOL * 3 // 10).granted  # closed: room again in total
    d.send(ReservationReleased(f"live{d.n}"))  # not stored: it no longer counts as granted today
    for i in range(3):  # each opened and closed: the total frees, today's tally grows
        granted = live_reserve(d, SOL * 2 // 10)
        assert granted.granted
        d.send(ReservationBound(granted.reservation_id, 100 + i, W1, T1, WSOL_MINT, SOL * 2 // 10, mode="live"))
        d.send(PositionClosed(100 + i, W1, T1, mode="live", quote_mint=WSOL_MINT, realized_pnl_quote=0,
                              exit_reason="mirror_sell"))
    assert live_reserve(d, SOL * 2 // 10).reason == "cap:live_max_daily"  # 0.3 + 0.6 + 0.2 > 1 today
    d.now += DAY
    assert live_reserve(d, SOL * 2 // 10).granted  # a new UTC day


def test_the_live_tally_is_rebuilt_after_a_restart() -> None:
    snapshot = {"open": [(7, W1, T1, WSOL_MINT, SOL * 4 // 10)], "opened": [T0 - 60], "live": [7],
                "live_opened": [(T0 - 60, SOL * 4 // 10), (T0 - DAY, SOL)], "closes": [], "breakers": []}
    d = Driver(cfg(live_max_trade_sol=Decimal("1"), live_max_daily_sol=Decimal("0.5"), live_max_total_sol=Decimal("5")),
               rebuild(cfg(), T0, snapshot))
    assert d.state.live_today == SOL * 4 // 10 and d.state.open[7].live
    assert live_reserve(d, SOL * 2 // 10).reason == "cap:live_max_daily"
    assert live_reserve(d, SOL // 10).granted
