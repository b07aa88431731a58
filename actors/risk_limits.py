"""The risk actor's model, pure: its caps and breakers (`RiskConfig`), the state they are counted on (`RiskState`:
open exposure, reservations, today's entries, equity, loss streaks, tripped breakers), and the checks and updates
on it — whether an entry fits (`check_entry`), what a close changes and trips (`apply_close`), what time undoes
(`roll`). The table is actors/risk_table.py; the actor actors/risk.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any, Mapping

from actors.messages import ReserveEntry
from actors.trades import STABLE_MINTS

DAY = 86_400
LAMPORTS = 10**9
STABLE_UNITS = 10**6
SUPERVISOR_BREAKER = "supervisor:escalated"  # tripped by the root when a child fails past its restart intensity
GLOBAL_BREAKERS = ("max_drawdown", "daily_loss", "loss_streak", SUPERVISOR_BREAKER)
STOP_LOSS_REASONS = frozenset({"stop_loss"})
NOT_A_TRADE = frozenset({"entry_failed", "leader_sold_before_entry", "mode:off"})  # closes that bought nothing


@dataclass(frozen=True)
class RiskConfig:
    """Caps and breakers. Amounts in SOL, durations in seconds; 0 disables a cap or a breaker."""

    starting_capital_sol: Decimal = Decimal("10")
    reserve_sol: Decimal = Decimal("1")
    max_open_positions: int = 10
    max_token_exposure_sol: Decimal = Decimal("0.5")
    max_total_exposure_sol: Decimal = Decimal("3")
    max_trades_per_day: int = 100
    sol_usd_fallback: Decimal = Decimal("150")
    reservation_ttl_s: float = 120.0
    max_drawdown_pct: Decimal = Decimal("20")
    drawdown_stop_s: float = 12 * 3600.0
    daily_loss_sol: Decimal = Decimal("1")  # resets at the next UTC midnight
    loss_streak: int = 4
    loss_streak_window_s: float = 6 * 3600.0
    loss_streak_stop_s: float = 2 * 3600.0
    stoploss_cooldown_s: float = 3600.0
    wallet_loss_streak: int = 3
    wallet_pause_s: float = 24 * 3600.0  # 0: until an operator resets it
    live_max_trade_sol: Decimal = Decimal("0.25")  # one live entry
    live_max_daily_sol: Decimal = Decimal("2")  # live entries granted per UTC day (0: no cap)
    live_max_total_sol: Decimal = Decimal("1")  # open live exposure (0: no cap)

    def lamports(self, sol: Decimal) -> int:
        return int(sol * LAMPORTS)


@dataclass(frozen=True)
class Exposure:
    wallet: str
    mint: str
    lamports: int
    live: bool = False


@dataclass(frozen=True)
class Breaker:
    name: str  # one of GLOBAL_BREAKERS | "token_cooldown:<mint>" | "wallet_pause:<wallet>"
    reason: str
    tripped_at: float
    until: float | None  # None: until an operator resets it

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "scope": scope(self.name), "reason": self.reason,
                "tripped_at": self.tripped_at, "until": self.until}


def scope(name: str) -> str:
    return "global" if name in GLOBAL_BREAKERS else name.split(":", 1)[0]


@dataclass(frozen=True)
class RiskState:
    open: Mapping[int, Exposure] = field(default_factory=dict)  # position id -> exposure
    reserved: Mapping[str, tuple[Exposure, float]] = field(default_factory=dict)  # reservation -> (exposure, expires)
    day: int = 0  # UTC day number of `trades_today` and `day_pnl`
    trades_today: int = 0
    live_today: int = 0  # lamports of live entries granted today
    day_pnl: int = 0  # realized today (since the daily_loss breaker's last trip or reset), lamports
    realized: int = 0  # all-time realized PnL, lamports
    peak: int | None = None  # peak equity since the drawdown breaker's last trip or reset
    streak: tuple[float, ...] = ()  # times of the current run of consecutive losses
    wallet_streak: Mapping[str, int] = field(default_factory=dict)
    breakers: Mapping[str, Breaker] = field(default_factory=dict)
    sol_usd: Decimal | None = None
    closed: frozenset[int] = frozenset()  # positions closed since the start: a late binding frees its room at once

    def exposures(self) -> list[Exposure]:
        return [*self.open.values(), *(e for e, _ in self.reserved.values())]


def to_lamports(quote_mint: str | None, amount: int, sol_usd: Decimal | None, cfg: RiskConfig) -> int:
    """A raw quote amount valued in lamports (USD stables at the last SOL price seen), truncated toward zero: a
    loss values as the negative of the same gain."""
    if quote_mint in STABLE_MINTS:
        price = sol_usd or cfg.sol_usd_fallback
        return int(Decimal(amount) * LAMPORTS / (STABLE_UNITS * price))
    return amount


def trip_event(name: str, reason: str, now: float, until: float | None,
               by: str = "risk") -> tuple[Breaker, dict[str, Any]]:
    b = Breaker(name, reason, now, until)
    return b, {"name": name, "kind": "tripped", "reason": reason, "trip_at": now, "at": now, "until": until, "by": by}


def _reset_event(b: Breaker, now: float, by: str) -> dict[str, Any]:
    return {"name": b.name, "kind": "reset", "reason": b.reason, "trip_at": b.tripped_at, "at": now, "until": b.until,
            "by": by}


def clear_counter(state: RiskState, name: str, cfg: RiskConfig) -> RiskState:
    """A breaker counts only closes after its last trip or reset."""
    if name == "max_drawdown":
        return replace(state, peak=None)
    if name == "daily_loss":
        return replace(state, day_pnl=0)
    if name == "loss_streak":
        return replace(state, streak=())
    if name.startswith("wallet_pause:"):
        return replace(state, wallet_streak={k: v for k, v in state.wallet_streak.items() if k != name.split(":", 1)[1]})
    return state


def roll(state: RiskState, cfg: RiskConfig, now: float) -> tuple[RiskState, list[dict[str, Any]]]:
    """Time passes: a new UTC day, expired reservations, breakers whose time is up."""
    day = int(now // DAY)
    if day != state.day:
        state = replace(state, day=day, trades_today=0, day_pnl=0, live_today=0)
    live = {k: v for k, v in state.reserved.items() if v[1] > now}
    if len(live) != len(state.reserved):
        state = replace(state, reserved=live)
    events = []
    for b in list(state.breakers.values()):
        if b.until is not None and b.until <= now:
            state = clear_counter(replace(state, breakers={k: v for k, v in state.breakers.items() if k != b.name}), b.name, cfg)
            events.append(_reset_event(b, now, "time"))
    return state, events


def check_entry(state: RiskState, cfg: RiskConfig, m: ReserveEntry) -> str | None:
    """None to grant, else the refusal: the breaker or the cap that stops it."""
    for name in GLOBAL_BREAKERS:
        if name in state.breakers:
            return f"breaker:{name}"
    if f"wallet_pause:{m.wallet}" in state.breakers:
        return "breaker:wallet_pause"
    if f"token_cooldown:{m.token_mint}" in state.breakers:
        return "breaker:token_cooldown"
    size = to_lamports(m.quote_mint, m.quote_amount, state.sol_usd, cfg)
    exposures = state.exposures()
    total = sum(e.lamports for e in exposures)
    if cfg.max_open_positions and len(exposures) + 1 > cfg.max_open_positions:
        return "cap:max_open_positions"
    if cfg.max_token_exposure_sol and sum(e.lamports for e in exposures if e.mint == m.token_mint) + size > cfg.lamports(cfg.max_token_exposure_sol):
        return "cap:max_token_exposure"
    if cfg.max_total_exposure_sol and total + size > cfg.lamports(cfg.max_total_exposure_sol):
        return "cap:max_total_exposure"
    if cfg.max_trades_per_day and state.trades_today + 1 > cfg.max_trades_per_day:
        return "cap:max_trades_per_day"
    if m.mode == "live":
        return check_live(state, cfg, size, exposures)
    if cfg.lamports(cfg.starting_capital_sol) + state.realized - total - size < cfg.lamports(cfg.reserve_sol):
        return "cap:reserve"
    return None


def check_live(state: RiskState, cfg: RiskConfig, size: int, exposures: list[Exposure]) -> str | None:
    """The live caps (in SOL): per entry, granted per UTC day, open in total."""
    if size > cfg.lamports(cfg.live_max_trade_sol):
        return "cap:live_max_trade"
    if cfg.live_max_daily_sol and state.live_today + size > cfg.lamports(cfg.live_max_daily_sol):
        return "cap:live_max_daily"
    if cfg.live_max_total_sol and sum(e.lamports for e in exposures if e.live) + size > cfg.lamports(cfg.live_max_total_sol):
        return "cap:live_max_total"
    return None


def apply_close(state: RiskState, cfg: RiskConfig, now: float, wallet: str, mint: str, pnl: int,
                exit_reason: str | None, trip: bool = True) -> tuple[RiskState, list[Breaker]]:
    """Fold one realized close into the counters; the breakers it trips (none when `trip` is False)."""
    capital = cfg.lamports(cfg.starting_capital_sol)
    before = capital + state.realized
    realized = state.realized + pnl
    equity = capital + realized
    peak = max(state.peak if state.peak is not None else before, equity)
    streak = tuple(t for t in state.streak if now - t <= cfg.loss_streak_window_s) + (now,) if pnl < 0 else ()
    ws = dict(state.wallet_streak)
    ws[wallet] = ws.get(wallet, 0) + 1 if pnl < 0 else 0
    state = replace(state, realized=realized, peak=peak, day_pnl=state.day_pnl + pnl, streak=streak, wallet_streak=ws)
    if not trip:
        return state, []
    trips: list[Breaker] = []

    def sol(lamports: int) -> str:
        return f"{Decimal(lamports) / LAMPORTS:.4f} SOL"

    if cfg.max_drawdown_pct and peak > 0 and (peak - equity) * 100 >= cfg.max_drawdown_pct * peak:
        pct = Decimal((peak - equity) * 100) / peak
        trips.append(Breaker("max_drawdown", f"drawdown {pct:.1f}% from peak equity {sol(peak)} >= {cfg.max_drawdown_pct}%",
                             now, now + cfg.drawdown_stop_s if cfg.drawdown_stop_s else None))
    if cfg.daily_loss_sol and -state.day_pnl >= cfg.lamports(cfg.daily_loss_sol):
        trips.append(Breaker("daily_loss", f"realized {sol(state.day_pnl)} today, limit -{cfg.daily_loss_sol} SOL",
                             now, float((int(now // DAY) + 1) * DAY)))
    if cfg.loss_streak and len(streak) >= cfg.loss_streak:
        trips.append(Breaker("loss_streak", f"{len(streak)} consecutive losses within {cfg.loss_streak_window_s / 60:g} min",
                             now, now + cfg.loss_streak_stop_s if cfg.loss_streak_stop_s else None))
    if cfg.wallet_loss_streak and ws[wallet] >= cfg.wallet_loss_streak:
        trips.append(Breaker(f"wallet_pause:{wallet}", f"{ws[wallet]} consecutive losses copying {wallet}",
                             now, now + cfg.wallet_pause_s if cfg.wallet_pause_s else None))
    if cfg.stoploss_cooldown_s and exit_reason in STOP_LOSS_REASONS:
        trips.append(Breaker(f"token_cooldown:{mint}", f"stop loss on {mint}", now, now + cfg.stoploss_cooldown_s))
    for b in trips:
        state = clear_counter(state, b.name, cfg)
    return replace(state, breakers={**state.breakers, **{b.name: b for b in trips}}), trips


