"""RiskActor: one per process, under the root. The single owner of the GLOBAL limits on new entries.

Wallet actors ask it for an entry reservation (`ReserveEntry` -> `EntryDecision`, a reply message, never a
blocking ask). It grants or refuses atomically — it is the only place the caps are counted — and the
reservation becomes the position's exposure when the wallet has stored the entry (`ReservationBound`),
until the position closes. Shadow positions never reach it: caps and breakers do not apply to them.

Caps (0 disables one): open positions, SOL exposure per token and in total, entries per UTC day, and the
reserve (paper equity = starting capital + realized PnL - open exposure must stay >= the reserve after
the entry). Live entries (`ReserveEntry.mode == "live"`) also pass the live caps: SOL per entry, live SOL
granted per UTC day, and open live exposure in total; their reserve is the wallet's real SOL, checked on
chain by the live executor before a buy is sent, so the paper reserve does not apply to them. Breakers (Freqtrade's protections): drawdown from peak equity, daily realized loss, N
consecutive losses within a window, a cooldown on a token after a stop loss, a per-wallet pause after
repeated losses, and `supervisor:escalated` (tripped by the root when a child fails past its restart
intensity). A tripped breaker stops new entries (exits go on), is stored with its reason (table
`breakers`, history in `breaker_events`) and logged as `breaker_tripped`; it resets by operator command
(`walltrack breakers reset NAME`) or when its `until` passes. After a trip or a reset a breaker counts only
later closes. USD-quoted amounts are valued in SOL at the last SOL price seen (a fallback until one is).

Transition table (state, event) -> handler, pure; every handler first rolls time (new UTC day, expired
reservations, breakers past their `until`):

| event                | effects                                                            |
|----------------------|--------------------------------------------------------------------|
| ReserveEntry         | Reply(granted, or refused "breaker:<name>" / "cap:<name>")         |
| ReservationBound     | — (the reservation becomes the position's exposure; again: a no-op)|
| ReservationReleased  | — (its room is freed; it no longer counts as today's entry)        |
| PositionClosed       | exposure freed; with its PnL: breakers may trip -> Record; without: FetchOutcome |
| Outcome              | breakers may trip -> Record                                        |
| BreakerReset         | Record(reset)                                                      |
| TripBreaker          | Record(tripped), until reset (the root's escalation)               |
| Tick                 | Record(reset) for breakers past their time                         |
| SolPrice             | —                                                                  |
"""

from __future__ import annotations

import concurrent.futures
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any, Callable, Mapping

import pykka
import structlog

from actors.messages import (
    BreakerReset,
    EntryDecision,
    PositionClosed,
    ReservationBound,
    ReservationReleased,
    ReserveEntry,
    SolPrice,
    TripBreaker,
)
from actors.ports import Ports
from actors.shell import Shell
from actors.trades import STABLE_MINTS

log = structlog.get_logger("risk")

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


# -- effects and internal events --------------------------------------------------------------------------
@dataclass(frozen=True)
class Reply:
    """Tell `decision` to the asker (`ReserveEntry.reply_to`, an actor ref)."""

    reply_to: Any
    decision: EntryDecision


@dataclass(frozen=True)
class Record:
    """Breaker trips and resets to store (one write per step)."""

    events: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class FetchOutcome:
    closed: PositionClosed


@dataclass(frozen=True)
class Outcome:
    """A closed position's outcome, read from the store because the close did not carry it."""

    closed: PositionClosed


@dataclass(frozen=True)
class Tick:
    pass


Effect = Any


# -- pure helpers -----------------------------------------------------------------------------------------
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


# -- the table ----------------------------------------------------------------------------------------------
def on_reserve(state: RiskState, m: ReserveEntry, cfg: RiskConfig, now: float) -> tuple[RiskState, list[Effect]]:
    if m.reservation_id in state.reserved:  # asked again (a retried observation): the same answer
        return state, [Reply(m.reply_to, EntryDecision(m.reservation_id, True))]
    refusal = check_entry(state, cfg, m)
    if refusal is not None:
        return state, [Reply(m.reply_to, EntryDecision(m.reservation_id, False, refusal))]
    live = m.mode == "live"
    exposure = Exposure(m.wallet, m.token_mint, to_lamports(m.quote_mint, m.quote_amount, state.sol_usd, cfg), live)
    state = replace(state, reserved={**state.reserved, m.reservation_id: (exposure, now + cfg.reservation_ttl_s)},
                    trades_today=state.trades_today + 1,
                    live_today=state.live_today + (exposure.lamports if live else 0))
    return state, [Reply(m.reply_to, EntryDecision(m.reservation_id, True))]


def on_bound(state: RiskState, m: ReservationBound, cfg: RiskConfig, now: float) -> tuple[RiskState, list[Effect]]:
    if m.position_id in state.open or m.position_id in state.closed:  # bound before: a second decision's room
        return on_released(state, ReservationReleased(m.reservation_id), cfg, now)
    reserved = dict(state.reserved)
    held = reserved.pop(m.reservation_id, None)
    exposure = held[0] if held is not None else Exposure(
        m.wallet, m.token_mint, to_lamports(m.quote_mint, m.quote_amount, state.sol_usd, cfg), m.mode == "live")
    return replace(state, reserved=reserved, open={**state.open, m.position_id: exposure}), []


def on_released(state: RiskState, m: ReservationReleased, cfg: RiskConfig, now: float) -> tuple[RiskState, list[Effect]]:
    if m.reservation_id not in state.reserved:
        return state, []
    exposure = state.reserved[m.reservation_id][0]
    reserved = {k: v for k, v in state.reserved.items() if k != m.reservation_id}
    return replace(state, reserved=reserved, trades_today=max(0, state.trades_today - 1),
                   live_today=max(0, state.live_today - exposure.lamports) if exposure.live else state.live_today), []


def on_closed(state: RiskState, m: PositionClosed, cfg: RiskConfig, now: float) -> tuple[RiskState, list[Effect]]:
    if m.mode == "shadow" or m.position_id not in state.open:
        return state, []  # a shadow, or a position this actor never counted
    state = replace(state, open={k: v for k, v in state.open.items() if k != m.position_id},
                    closed=state.closed | {m.position_id})
    if m.realized_pnl_quote is None:
        return state, [FetchOutcome(m)]
    return _closed_with_pnl(state, m, cfg, now)


def on_outcome(state: RiskState, m: Outcome, cfg: RiskConfig, now: float) -> tuple[RiskState, list[Effect]]:
    if m.closed.realized_pnl_quote is None or m.closed.mode == "shadow":
        return state, []
    return _closed_with_pnl(state, m.closed, cfg, now)


def _closed_with_pnl(state: RiskState, m: PositionClosed, cfg: RiskConfig, now: float) -> tuple[RiskState, list[Effect]]:
    assert m.realized_pnl_quote is not None
    if m.exit_reason in NOT_A_TRADE:
        return state, []  # nothing was bought: neither a win nor a loss
    pnl = to_lamports(m.quote_mint, m.realized_pnl_quote, state.sol_usd, cfg)
    state, trips = apply_close(state, cfg, now, m.wallet, m.token_mint, pnl, m.exit_reason)
    events = []
    for b in trips:
        events.append(trip_event(b.name, b.reason, b.tripped_at, b.until)[1])
    return state, [Record(tuple(events))] if events else []


def on_reset(state: RiskState, m: BreakerReset, cfg: RiskConfig, now: float) -> tuple[RiskState, list[Effect]]:
    b = state.breakers.get(m.name)
    if b is None:
        return state, []
    state = replace(state, breakers={k: v for k, v in state.breakers.items() if k != m.name})
    return clear_counter(state, m.name, cfg), [Record((_reset_event(b, now, m.by),))]


def on_trip(state: RiskState, m: TripBreaker, cfg: RiskConfig, now: float) -> tuple[RiskState, list[Effect]]:
    if m.name in state.breakers:
        return state, []  # already stopped: the first reason stands until a reset
    b, event = trip_event(m.name, m.reason, now, None, m.by)
    return replace(state, breakers={**state.breakers, b.name: b}), [Record((event,))]


def on_tick(state: RiskState, m: Tick, cfg: RiskConfig, now: float) -> tuple[RiskState, list[Effect]]:
    return state, []


def on_sol_price(state: RiskState, m: SolPrice, cfg: RiskConfig, now: float) -> tuple[RiskState, list[Effect]]:
    return replace(state, sol_usd=m.usd), []


TABLE: dict[type, Callable[[RiskState, Any, RiskConfig, float], tuple[RiskState, list[Effect]]]] = {
    ReserveEntry: on_reserve,
    ReservationBound: on_bound,
    ReservationReleased: on_released,
    PositionClosed: on_closed,
    Outcome: on_outcome,
    BreakerReset: on_reset,
    TripBreaker: on_trip,
    Tick: on_tick,
    SolPrice: on_sol_price,
}


def transition(state: RiskState, event: Any, cfg: RiskConfig, now: float) -> tuple[RiskState, list[Effect]]:
    handler = TABLE.get(type(event))
    if handler is None:
        raise LookupError(f"risk: no transition for {type(event).__name__}")
    state, resets = roll(state, cfg, now)
    state, effects = handler(state, event, cfg, now)
    if resets:
        effects = [Record(tuple(resets)), *effects]
    return state, effects


# -- rebuilding from the database ---------------------------------------------------------------------------
def rebuild(cfg: RiskConfig, now: float, snapshot: Mapping[str, Any]) -> RiskState:
    """The state after a (re)start: open exposure, today's entries, counters since each breaker's last trip
    or reset, and the breakers still tripped (those past their time reset at the first event).

    snapshot: {"open": [(position_id, wallet, mint, quote_mint, entry_quote_amount)], "opened": [epoch],
               "live": [position ids of open live positions], "live_opened": [(epoch, lamports)] of live entries,
               "closes": [(epoch, wallet, mint, quote_mint, pnl_quote, exit_reason)] oldest first,
               "breakers": [{"name", "state", "reason", "tripped_at", "until", "reset_at"}]}
    """
    state = RiskState(day=int(now // DAY))
    live = set(snapshot.get("live", ()))
    state = replace(
        state,
        open={pid: Exposure(w, mint, to_lamports(q, int(amount), None, cfg), pid in live)
              for pid, w, mint, q, amount in snapshot["open"]},
        trades_today=sum(1 for at in snapshot["opened"] if int(at // DAY) == state.day),
        live_today=sum(int(lam) for at, lam in snapshot.get("live_opened", ()) if int(at // DAY) == state.day),
    )
    since: dict[str, float] = {}
    breakers: dict[str, Breaker] = {}
    for row in snapshot["breakers"]:
        since[row["name"]] = max(row["tripped_at"], row["reset_at"] or 0.0)
        if row["state"] == "tripped":
            breakers[row["name"]] = Breaker(row["name"], row["reason"], row["tripped_at"], row["until"])
    # Replay every close once for the all-time numbers, then per breaker only those after its `since`.
    for at, wallet, mint, q, pnl, reason in snapshot["closes"]:
        if reason in NOT_A_TRADE:
            continue
        lam = to_lamports(q, int(pnl), None, cfg)
        counted, _ = apply_close(state, cfg, at, wallet, mint, lam, reason, trip=False)
        state = replace(state, realized=counted.realized)
        if at > since.get("max_drawdown", -1.0):
            state = replace(state, peak=counted.peak)
        if at > since.get("daily_loss", -1.0) and int(at // DAY) == state.day:
            state = replace(state, day_pnl=counted.day_pnl)
        if at > since.get("loss_streak", -1.0):
            state = replace(state, streak=counted.streak)
        if at > since.get(f"wallet_pause:{wallet}", -1.0):
            state = replace(state, wallet_streak=counted.wallet_streak)
    return replace(state, breakers=breakers)


# -- the actor -----------------------------------------------------------------------------------------------
class RiskActor(Shell):
    def __init__(self, state: RiskState, ports: Ports, root: pykka.ActorRef, published: Any = None) -> None:
        super().__init__(ports.scheduler, root)
        self.child_id = ("risk", "global")
        self.state = state
        self._cfg: RiskConfig = ports.risk
        self._ports = ports
        self._published = published
        self._timer_at: float | None = None

    def on_start(self) -> None:
        self._publish()
        self._step(Tick())

    def handle(self, message: Any) -> Any:
        self._step(message)
        return None

    def _step(self, event: Any) -> None:
        now = self._ports.clock()
        before = self.state.breakers
        self.state, effects = transition(self.state, event, self._cfg, now)
        records: list[dict[str, Any]] = []
        for effect in effects:
            if isinstance(effect, Reply):
                _answer(effect)
            elif isinstance(effect, Record):
                records.extend(effect.events)
            elif isinstance(effect, FetchOutcome):
                self._fetch(effect.closed)
        for ev in records:
            if ev["kind"] == "tripped":
                log.warning("breaker_tripped", breaker=ev["name"], scope=scope(ev["name"]), reason=ev["reason"],
                            until=ev["until"])
            else:
                log.info("breaker_reset", breaker=ev["name"], by=ev["by"])
        if records:
            events = tuple(records)
            self.persist(lambda: self._ports.store.record_breakers(events), lambda _: None)
        if self.state.breakers != before or records:
            self._publish()
        self._arm_timer(now)

    def _fetch(self, closed: PositionClosed) -> None:
        ref = self.actor_ref

        def done(f: concurrent.futures.Future) -> None:
            row = f.result() if f.exception() is None else None
            if f.exception() is not None:
                log.warning("risk_outcome_unavailable", position_id=closed.position_id, error=repr(f.exception()))
            full = replace(closed, mode=row["mode"], quote_mint=row["quote_mint"],
                           realized_pnl_quote=None if row["realized_pnl_quote"] is None else int(row["realized_pnl_quote"]),
                           exit_reason=row["exit_reason"]) if row else closed
            try:
                ref.tell(Outcome(full))
            except pykka.ActorDeadError:
                pass

        self._ports.store.position_outcome(closed.position_id).add_done_callback(done)

    def _arm_timer(self, now: float) -> None:
        """Wake up when the next breaker's time is up (re-checked at least every minute)."""
        untils = [b.until for b in self.state.breakers.values() if b.until is not None]
        if not untils or self._timer_at is not None:
            return
        delay = max(0.5, min(min(untils) - now, 60.0))
        self._timer_at = now + delay
        ref = self.actor_ref

        def fire() -> None:
            try:
                ref.tell(_Wake())
            except pykka.ActorDeadError:
                pass

        self._scheduler.call_later(delay, fire)

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, _Wake):
            self._timer_at = None
            message = Tick()
        return super().on_receive(message)

    def _publish(self) -> None:
        if self._published is not None:
            self._published.breakers = tuple(b.as_json() for b in sorted(self.state.breakers.values(), key=lambda b: b.name))


def _answer(effect: Reply) -> None:
    if effect.reply_to is None:
        return
    try:
        effect.reply_to.tell(effect.decision)
    except pykka.ActorDeadError:
        pass  # the wallet stopped meanwhile: its successor asks again (reservation ids make it the same answer)


class _Wake:
    """The breaker timer fired (becomes a Tick in the mailbox)."""
