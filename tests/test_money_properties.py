"""Property tests of the money invariants, over random sequences of deliveries, ticks, fills, commands, mode
switches and restarts, driving the real (pure) transition tables — `actors.wallet.transition`,
`actors.risk.transition`/`rebuild`, `actors.position.decide`/`apply`/`fold` — wired the way the actor shells and the
root wire them. Hypothesis chooses the interleaving: which actor runs next, when the store answers (or commits
and loses the answer), when a fill comes back, when the process restarts.

The store is a model of `storage.observations.record_observation`: one row per (signature, wallet), a decision's own
row found again by its id. Held after every step and at the end:
- at most one position per leader transaction, and every taken one gets its actor (never left unstarted);
- the caps are never exceeded (open positions, exposure per token and in total), whatever the interleaving, and
  the risk actor's open exposure is exactly the open positions once all is settled;
- an unknown or stale price never orders an exit by a price rule (it never books a loss);
- every closed position's PnL is the sum of its fills, to the raw unit;
- no entry is bought once the kill switch is on before its position starts.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass, field, replace
from decimal import Decimal
from fractions import Fraction
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from actors import position as P
from actors import risk as R
from actors import wallet as Wt
from actors.messages import (
    ClosePartial,
    ClosePosition,
    Fill,
    JournalEvent,
    PriceTick,
    RecordResult,
    ReservationBound,
    ReservationReleased,
    ReserveEntry,
    SetStop,
    StartPosition,
    SwapObserved,
    ToPosition,
    TradingModeChanged,
)
from actors.ports import ExitPlan
from actors.rules import CopyRules
from sandbox.market import pubkey, signature

WALLETS = (pubkey("prop-leader-0"), pubkey("prop-leader-1"))
MINTS = tuple(pubkey(f"prop-mint-{i}") for i in range(3))
CFG = R.RiskConfig(max_open_positions=3, max_token_exposure_sol=Decimal("0.25"), max_total_exposure_sol=Decimal("0.45"),
                   max_trades_per_day=0, reserve_sol=Decimal(0), daily_loss_sol=Decimal(0), loss_streak=0,
                   max_drawdown_pct=Decimal(0), wallet_loss_streak=0, stoploss_cooldown_s=0)
RULES = CopyRules(mode="paper", sizing="percent", percent=Decimal(10), min_sol=Decimal("0.05"), max_sol=Decimal("0.2"),
                  max_buys_per_token=2, skip_add_ons=False)  # sizes vary: each cap is the one that binds at times
PLAN = ExitPlan(stop_loss_pct=Decimal(20), take_profit=((Decimal(30), Decimal("0.5")),), trailing_distance_pct=Decimal(10),
                trailing_activation_pct=Decimal(20), time_stop_s=0, emergency_min_liquidity_usd=Decimal(0))
SOL_USD = Decimal(150)
PRICE_RULES = ("stop_loss", "breakeven_stop", "manual_stop", "trailing_stop")


def payload(wallet: str, sig: str, side: str, mint: str, tokens: int, lamports: int) -> str:
    """A leader's swap as balance deltas, the way Helius shapes it (actors.trades reads it for real)."""
    s = 1 if side == "buy" else -1
    ata = pubkey(f"prop-ata-{wallet}-{mint}")
    return json.dumps({"signature": sig, "accountData": [
        {"account": wallet, "nativeBalanceChange": -s * lamports, "tokenBalanceChanges": []},
        {"account": ata, "nativeBalanceChange": 0, "tokenBalanceChanges": [
            {"userAccount": wallet, "tokenAccount": ata, "mint": mint,
             "rawTokenAmount": {"tokenAmount": str(s * tokens), "decimals": 6}}]}]})


@dataclass
class Store:
    """`_record_observation` and the journal, as the database keeps them."""

    observations: dict[tuple[str, str], str | None] = field(default_factory=dict)  # -> decision_id
    signals: dict[tuple[str, str], int] = field(default_factory=dict)
    signal_position: dict[int, int] = field(default_factory=dict)
    journals: dict[int, list[JournalEvent]] = field(default_factory=dict)
    fills: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    next_id: int = 1

    def record(self, obs: Any) -> RecordResult:
        key = (obs.signature, obs.wallet)
        if key in self.observations:
            mine = obs.decision_id is not None and self.observations[key] == obs.decision_id
            pid = self.signal_position.get(self.signals.get(key, -1))
            if pid is not None and not (mine or not P.fold(pid, tuple(self.journals[pid])).status in P.TERMINAL):
                pid = None
            return RecordResult(not mine, self.signals.get(key), pid, tuple(self.journals[pid]) if pid else ())
        self.observations[key] = obs.decision_id
        if obs.outcome != "signal":
            return RecordResult(False)
        sid = self.next_id
        self.next_id += 1
        self.signals[key] = sid
        if obs.entry is None:
            return RecordResult(False, sid)
        pid, t, e = sid, obs.trade, obs.entry
        data = {"wallet": obs.wallet, "signature": obs.signature, "token_mint": t.token_mint, "token_decimals": 6,
                "quote_mint": t.quote_mint, "mode": e.mode, "entry_quote_amount": str(e.quote_amount),
                "entry_token_amount": str(e.token_amount), "entry": "pending", "leader_token_amount": str(t.token_amount)}
        self.journals[pid] = [JournalEvent(1, "opened", data)]
        self.signal_position[sid] = pid
        return RecordResult(False, sid, pid, tuple(self.journals[pid]))

    def state(self, pid: int) -> P.PositionState:
        return P.fold(pid, tuple(self.journals[pid]))


@dataclass
class Wallet:
    state: Wt.WalletState
    mailbox: deque = field(default_factory=deque)
    stash: deque = field(default_factory=deque)
    waiting: Any = None  # ("record", Record): the one I/O step in flight (a reservation is awaited in the state)


@dataclass
class Position:
    state: P.PositionState
    mailbox: deque = field(default_factory=deque)
    order: Any = None  # the Buy/Sell at the executor
    waiting_tick: PriceTick | None = None
    started_off: bool = False


class World:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0
        self.store = Store()
        self.mode = "paper"
        self.inbox: dict[str, tuple[str, str]] = {}  # signature -> (wallet, payload) acknowledged to Helius
        self.wallets: dict[str, Wallet] = {}
        self.positions: dict[int, Position] = {}
        self.risk = R.RiskState(day=int(self.now // R.DAY))
        self.risk_mail: deque = deque()
        self.store_ops: deque = deque()  # (wallet, Record, decision_id)
        self.bought_while_off: list[int] = []
        self.peak = 0
        self.restart()

    # -- the root: (re)start from the store -------------------------------------------------------------------
    def restart(self) -> None:
        s = self.store
        self.wallets, self.positions, self.risk_mail, self.store_ops = {}, {}, deque(), deque()
        open_rows = []
        for pid in s.journals:
            st_ = s.state(pid)
            if st_.status not in P.TERMINAL:
                if st_.mode != "shadow":
                    open_rows.append((pid, st_.wallet, st_.token_mint, st_.quote_mint, int(s.journals[pid][0].data["entry_quote_amount"])))
                self.spawn(pid)
        self.risk = R.rebuild(CFG, self.now, {"open": open_rows, "opened": [], "closes": [], "breakers": []})
        for w in WALLETS:
            open_, shadow, buys = self.books(w)
            self.wallets[w] = Wallet(Wt.WalletState(w, open_by_token=open_, shadow_by_token=shadow, buys=buys,
                                                    trading_mode=self.mode))
        for sig, (w, body) in self.inbox.items():  # the inbox replay: what no observation closed yet
            if (sig, w) not in s.observations:
                self.wallets[w].mailbox.append(SwapObserved(sig, w, body))

    def crash_wallet(self, w: str) -> None:
        """The wallet actor fails (a write past its bound): its I/O in flight is lost — committed or not — its
        unhandled messages go to its successor, which is rebuilt from the store, replays its unobserved deliveries,
        and has the root start any open position of its that has no actor."""
        old = self.wallets[w]
        self.store_ops = deque(op for op in self.store_ops if op[0] != w)
        self.risk_mail = deque(m for m in self.risk_mail if not (isinstance(m, ReserveEntry) and m.reply_to is old))
        books = self.books(w)
        new = Wallet(Wt.WalletState(w, open_by_token=books[0], shadow_by_token=books[1], buys=books[2],
                                    trading_mode=self.mode))
        new.mailbox.extend(SwapObserved(sig, w, body) for sig, (x, body) in self.inbox.items()
                           if x == w and (sig, w) not in self.store.observations)
        new.mailbox.extend([*old.stash, *old.mailbox])
        self.wallets[w] = new
        for pid in sorted(set().union(*books[0].values(), *books[1].values())):
            self.spawn(pid)

    def books(self, w: str) -> tuple[dict[str, frozenset[int]], dict[str, frozenset[int]], dict[str, tuple[int, int]]]:
        """What `_wallet_open_positions` reads: the wallet's positions not closed, by token, and its buys per token."""
        open_: dict[str, frozenset[int]] = {}
        shadow: dict[str, frozenset[int]] = {}
        buys: dict[str, tuple[int, int]] = {}
        for pid, journal in self.store.journals.items():
            st_ = self.store.state(pid)
            if st_.wallet != w or st_.status in P.TERMINAL:
                continue
            book = shadow if st_.mode == "shadow" else open_
            book[st_.token_mint] = book.get(st_.token_mint, frozenset()) | {pid}
            if st_.mode != "shadow":
                n, spent = buys.get(st_.token_mint, (0, 0))
                buys[st_.token_mint] = (n + 1, spent + int(journal[0].data["entry_quote_amount"]))
        return open_, shadow, buys

    def spawn(self, pid: int) -> None:
        if pid in self.positions:
            return
        p = Position(self.store.state(pid), started_off=self.mode == "off")
        if p.state.status in P.TERMINAL:
            return
        self.positions[pid] = p
        d = self.store.journals[pid][0].data
        if d["mode"] != "shadow":  # the root binds a running position's exposure (RootSupervisor._bind_exposure)
            self.risk_mail.append(ReservationBound(f"{d['signature']}:{d['wallet']}", pid, d["wallet"], d["token_mint"],
                                                   d["quote_mint"], int(d["entry_quote_amount"])))
        if p.state.status == "pending_entry":  # PositionActor.on_start
            if p.started_off and p.state.mode != "shadow":
                self.position_step(pid, P.CancelEntry("mode:off"))
            else:
                p.order = P.Buy(p.state.entry_quote_amount)

    def route(self, effect: Any, wallet: str) -> None:
        if isinstance(effect, (ReservationBound, ReservationReleased)):
            self.risk_mail.append(effect)
        elif isinstance(effect, StartPosition):
            self.spawn(effect.position_id)
        elif isinstance(effect, ToPosition):
            if effect.position_id in self.positions:
                self.positions[effect.position_id].mailbox.append(effect.message)
        else:
            raise AssertionError(f"unrouted {effect!r}")

    # -- a wallet actor ------------------------------------------------------------------------------------------
    def ctx(self) -> Wt.Context:
        return Wt.Context(self.now, False, True, True, None)

    def wallet_step(self, w: str, event: Any) -> None:
        wal = self.wallets[w]
        wal.state, effects = Wt.transition(wal.state, event, RULES, self.ctx())
        for eff in effects:
            if isinstance(eff, Wt.Record):
                assert wal.waiting is None
                obs = replace(eff.observation, decision_id=f"{self.store.next_id}-{len(self.store_ops)}-{id(eff)}")
                wal.waiting = ("record", eff)
                self.store_ops.append((w, obs, eff.reservation_id))
            elif isinstance(eff, Wt.Reserve):  # a tell carrying the wallet's address; its state awaits the answer
                assert wal.waiting is None and wal.state.status == "awaiting_reservation"
                o = eff.observation
                self.risk_mail.append(ReserveEntry(eff.reservation_id, w, o.trade.token_mint, o.trade.quote_mint,
                                                   o.entry.quote_amount, reply_to=wal))
            else:
                self.route(eff, w)
        while wal.waiting is None:  # WalletActor._step: watching again, what was queued in the state, in order
            wal.state, queued = Wt.next_queued(wal.state)
            if queued is None:
                break
            self.wallet_step(w, queued)

    def run_wallet(self, w: str) -> None:
        wal = self.wallets[w]
        msg = wal.mailbox.popleft()
        if isinstance(msg, TradingModeChanged) or wal.waiting is None:  # the shell's stash and its bypass
            self.wallet_step(w, msg)
        else:
            wal.stash.append(msg)

    def wallet_io_done(self, w: str, event: Any) -> None:
        wal = self.wallets[w]
        wal.waiting = None
        self.wallet_step(w, event)
        while wal.stash and wal.waiting is None:
            self.wallet_step(w, wal.stash.popleft())

    def run_store(self, lose_ack: bool) -> None:
        w, obs, rid = self.store_ops.popleft()
        result = self.store.record(obs)
        if lose_ack:  # committed, the answer lost: the shell retries the same write
            self.store_ops.append((w, obs, rid))
            return
        self.wallet_io_done(w, Wt.Recorded(obs, result, rid))

    # -- the risk actor ------------------------------------------------------------------------------------------
    def run_risk(self) -> None:
        msg = self.risk_mail.popleft()
        self.risk, effects = R.transition(self.risk, msg, CFG, self.now)
        check_caps(self.risk)
        self.peak = max(self.peak, len(self.risk.exposures()))
        for eff in effects:
            if isinstance(eff, R.Reply):  # told to the asker's mailbox, unless it died meanwhile
                asker = eff.reply_to
                if self.wallets.get(asker.state.wallet) is asker:
                    asker.mailbox.append(eff.decision)

    # -- a position actor ----------------------------------------------------------------------------------------
    def position_step(self, pid: int, command: Any) -> None:
        p = self.positions[pid]
        step = P.decide(p.state, command, P.Context(self.now, PLAN))
        for ev in step.events:
            p.state = P.apply(p.state, ev, pid)
            self.store.journals[pid].append(ev)
            if "fill" in ev.data:
                self.store.fills.setdefault(pid, []).append(ev.data["fill"])
            if ev.kind == "exit_ordered" and isinstance(command, PriceTick) and (command.usd is None or command.stale):
                assert ev.data["reason"] not in PRICE_RULES and not ev.data["reason"].startswith("take_profit"), \
                    f"an unknown or stale price ordered an exit: {ev.data}"
        assert P.fold(pid, tuple(self.store.journals[pid])) == p.state  # a restart resumes this very state
        if p.state.status in P.TERMINAL:
            del self.positions[pid]
            closed = P.closed_notice(p.state)
            self.risk_mail.append(closed)
            wal = self.wallets.get(p.state.wallet)
            if wal is not None:
                wal.mailbox.append(closed)
        elif step.effects:
            p.order = step.effects[0]

    def run_position(self, pid: int) -> None:
        p = self.positions[pid]
        msg = p.mailbox.popleft()
        if p.order is not None and isinstance(msg, PriceTick):
            p.waiting_tick = msg  # never stashed behind a fill: only the newest is kept
        elif p.order is not None:
            p.mailbox.appendleft(msg)  # stashed until the fill
            raise _Busy
        else:
            self.position_step(pid, msg)

    def fill(self, pid: int, ok: bool, fraction: Fraction, price: Fraction) -> None:
        p = self.positions[pid]
        order, p.order = p.order, None
        s = p.state
        if isinstance(order, P.Buy):
            cmd: Any = P.Filled(Fill(pid, "buy", s.token_mint, s.quote_mint, max(1, int(order.quote_amount * price)),
                                     order.quote_amount + 15_000, 0, 15_000, 0, "0", "sim", self.now)) if ok \
                else P.FillFailed("buy", "no route")
            if p.started_off and s.mode != "shadow":
                self.bought_while_off.append(pid)
        else:
            amount = order.token_amount
            got = int(amount * price / 10)
            cmd = P.Filled(Fill(pid, "sell", s.token_mint, s.quote_mint, amount, got, got, 5_000, 0, "0", "sim",
                                self.now)) if ok else P.FillFailed("sell", "no route")
        self.position_step(pid, cmd)
        if pid in self.positions and self.positions[pid].order is None and self.positions[pid].waiting_tick is not None:
            tick, self.positions[pid].waiting_tick = self.positions[pid].waiting_tick, None
            self.positions[pid].mailbox.append(tick)

    # -- driving -------------------------------------------------------------------------------------------------
    def runnable(self) -> list[tuple[str, Any]]:
        out: list[tuple[str, Any]] = [("wallet", w) for w, x in self.wallets.items() if x.mailbox]
        out += [("risk", None)] if self.risk_mail else []
        out += [("store", None)] if self.store_ops else []
        out += [("position", pid) for pid, p in self.positions.items() if p.mailbox and
                (p.order is None or isinstance(p.mailbox[0], PriceTick))]
        out += [("fill", pid) for pid, p in self.positions.items() if p.order is not None]
        return out

    def run(self, kind: str, key: Any, lose_ack: bool = False, ok: bool = True, fraction: Fraction = Fraction(1),
            price: Fraction = Fraction(1)) -> None:
        if kind == "wallet":
            self.run_wallet(key)
        elif kind == "risk":
            self.run_risk()
        elif kind == "store":
            self.run_store(lose_ack)
        elif kind == "position":
            self.run_position(key)
        else:
            self.fill(key, ok, fraction, price)

    def settle(self) -> None:
        """Let everything in flight finish, without faults (every I/O answers, every fill fills)."""
        for _ in range(10_000):
            todo = self.runnable()
            if not todo:
                return
            self.run(*todo[0])
        raise AssertionError("the world did not settle")


class _Busy(Exception):
    pass


def check_caps(state: R.RiskState) -> None:
    exposures = state.exposures()
    assert len(exposures) <= CFG.max_open_positions, exposures
    assert sum(e.lamports for e in exposures) <= CFG.lamports(CFG.max_total_exposure_sol), exposures
    for mint in {e.mint for e in exposures}:
        assert sum(e.lamports for e in exposures if e.mint == mint) <= CFG.lamports(CFG.max_token_exposure_sol)


trades = st.lists(st.tuples(st.sampled_from(WALLETS), st.sampled_from(("buy", "buy", "sell")), st.sampled_from(MINTS),
                            st.integers(10**6, 10**12), st.integers(10**8, 3 * 10**9)), min_size=1, max_size=12)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(trades=trades, data=st.data())
def test_money_invariants_hold_under_any_interleaving_of_deliveries_faults_and_restarts(trades: list, data: st.DataObject) -> None:
    world = World()
    bodies = [(w, signature(f"prop-{i}-{w}-{side}-{mint}"), side, mint, n, q) for i, (w, side, mint, n, q) in enumerate(trades)]
    for _ in range(data.draw(st.integers(10, 160), label="steps")):
        choices = ["deliver"] * 3 + ["run"] * 8 + ["tick", "mode", "restart", "crash", "time", "command"]
        action = data.draw(st.sampled_from(choices), label="action")
        if action == "deliver":  # at-least-once, in any order: the gateway stores it and hands it out
            w, sig, side, mint, n, q = data.draw(st.sampled_from(bodies), label="delivery")
            body = payload(w, sig, side, mint, n, q)
            world.inbox[sig] = (w, body)
            world.wallets[w].mailbox.append(SwapObserved(sig, w, body))
        elif action == "run" and world.runnable():
            kind, key = data.draw(st.sampled_from(world.runnable()), label="actor")
            try:
                world.run(kind, key, lose_ack=data.draw(st.booleans(), label="ack lost") if kind == "store" else False,
                          ok=data.draw(st.booleans(), label="fill ok") if kind == "fill" else True,
                          price=Fraction(data.draw(st.integers(1, 30), label="price"), 10))
            except _Busy:
                pass
        elif action == "tick":
            mint = data.draw(st.sampled_from(MINTS), label="mint")
            usd = data.draw(st.one_of(st.none(), st.decimals(Decimal("0.000001"), Decimal("0.01"), places=8)), label="usd")
            stale = data.draw(st.booleans(), label="stale")
            for p in world.positions.values():
                if p.state.token_mint == mint:
                    p.mailbox.append(PriceTick(mint, usd, SOL_USD, "jupiter", world.now, stale))
        elif action == "mode":
            world.mode = data.draw(st.sampled_from(("off", "paper")), label="mode")
            for wal in world.wallets.values():
                wal.mailbox.append(TradingModeChanged(world.mode))
        elif action == "restart":  # kill -9 and start again: everything in flight is lost, the store remains
            world.restart()
        elif action == "crash":
            world.crash_wallet(data.draw(st.sampled_from(WALLETS), label="wallet"))
        elif action == "time":
            world.now += data.draw(st.integers(1, 30), label="dt")
        elif action == "command" and world.positions:
            pid = data.draw(st.sampled_from(sorted(world.positions)), label="position")
            world.positions[pid].mailbox.append(data.draw(st.sampled_from(
                (ClosePosition(pid), ClosePartial(pid, Decimal("0.5")), SetStop(pid, Decimal("0.0000001")))), label="cmd"))
    world.settle()
    world.restart()  # and the inbox replay after it: every acknowledged delivery gets decided
    world.settle()
    event(f"positions opened: {min(3, sum(1 for j in world.store.journals.values() if j[0].data['mode'] != 'shadow'))}")
    event(f"most open at once: {world.peak}")

    s = world.store
    # every acknowledged delivery for a watched wallet ended as an observation, decided once
    assert {(sig, w) for sig, (w, _) in world.inbox.items()} <= set(s.observations)
    # at most one position per leader transaction, and every one not ended has its actor
    assert len(set(s.signal_position.values())) == len(s.signal_position)
    live = {pid for pid in s.journals if s.state(pid).status not in P.TERMINAL}
    assert live == set(world.positions), (live, set(world.positions))
    # the risk actor counts exactly the open positions (no leak, no double count), within the caps
    assert set(world.risk.open) == {pid for pid in live if s.state(pid).mode != "shadow"}
    assert not world.risk.reserved
    check_caps(world.risk)
    # PnL is the sum of the fills, to the raw unit
    for pid, journal in s.journals.items():
        st_ = s.state(pid)
        if st_.status == "closed":
            fills = s.fills[pid]
            signed = sum(int(f["quote_amount"]) * (1 if f["side"] == "sell" else -1) for f in fills)
            assert st_.realized_pnl_quote == signed
    assert world.bought_while_off == []
