"""PositionActor: one per position. Its state is a fold of its journal (event-sourced).

A command is decided against the current state, by the pure `TABLE`, into journal events and effects
(`Buy`/`Sell` through the paper `Executor` port; `Prepare`/`Land`/`Later` through the `LiveExecutor` for a live
position, actors/position_live.py). The shell stores the events, applies them, then performs the effects; an
outcome comes back as a message (`Filled`, `FillFailed`, `Signed`, `SwapFailed`) and is decided like any command.
Replaying the journal after a restart yields the same state: stops, ladder progress, trailing mark, pending
order, the live swap in flight. Prices are `Fraction`s of raw quote units per raw token; amounts are integers.

| state            | command       | journal events                                         | next             |
|------------------|---------------|--------------------------------------------------------|------------------|
| pending_entry    | Resume        | paper: — (+ Buy). live: buy_intent (+ Prepare)          | same / buying    |
| pending_entry    | Filled(buy)   | entry_filled (the fill, the exit plan, the time)       | open             |
| pending_entry    | FillFailed    | entry_failed                                           | entry_failed     |
| pending_entry    | LeaderSold    | entry_failed (leader_sold_before_entry)                | entry_failed     |
| pending_entry    | PriceTick, Signed, SwapFailed, Retry | —                               | pending_entry    |
| pending_entry    | CancelEntry   | entry_failed (mode:off: the kill switch, before a buy) | entry_failed     |
| any other        | CancelEntry   | — (bought already, in flight — the send gate refuses — | same             |
|                  |               | or over)                                               |                  |
| pending_entry,   | manual *      | — (reply: not filled yet)                              | same             |
|   buying         |               |                                                        |                  |
| buying, selling  | Signed        | buy_signature / sell_signature (+ Land: send, confirm) | same             |
| buying, selling  | SwapFailed    | buy_failed / sell_failed (+ Later → Retry) while       | same             |
|                  |               | attempts remain; then buy: entry_failed; sell:         | entry_failed,    |
|                  |               | exit_failed. Unknown outcome: — (+ Later → re-Land)    | exit_failed      |
| buying, selling  | Resume        | — (+ Prepare: intent only; + Land: signature journaled)| same             |
| buying, selling  | Retry         | buy_intent / sell_intent (+ Prepare); re-Land          | same             |
| buying           | Filled(buy)   | entry_filled (the chain's fill); bought nothing:       | open             |
|                  |               | buy_failed + entry_failed                              | entry_failed     |
| buying           | LeaderSold    | entry_failed when no swap is in flight, else deferred  | entry_failed     |
| buying           | PriceTick, FillFailed | —                                              | buying           |
| open, partially_ | PriceTick     | stale_flagged / stale_cleared; high_water; then, if a  | same             |
|   closed,        |               | rule fires: exit_ordered (+ Sell). Rules, in order:    |                  |
|   exit_failed    |               | emergency_liquidity, stop (stop_loss, breakeven_stop,  |                  |
|                  |               | manual_stop), trailing_stop, time_stop, take_profit_N. |                  |
|                  |               | An unknown or stale price fires no price rule.         |                  |
|                  |               | A failed order is retried (Sell) when due.             |                  |
| open, partially_ | LeaderSold    | exit_ordered (mirror_sell, the leader's fraction) + Sell | same           |
|   closed, exit_f | ClosePosition | exit_ordered (manual_close) + Sell; reply ok           | same             |
|                  | ClosePartial  | exit_ordered (manual_partial) + Sell; or error reply   | same             |
|                  | SetStop       | stop_moved (manual_stop); or error reply               | same             |
|                  | Filled(sell)  | partial_exit [+ stop_moved breakeven_stop after TP 1]  | partially_closed |
|                  |               | or exit_filled when nothing is left                    | closed           |
|                  | FillFailed    | exit_failed (attempt n, retry_at with backoff)         | exit_failed      |
|                  | Signed, SwapFailed, Resume, Retry | —                                  | same             |
|                  | (live: every Sell above is journaled sell_intent + Prepare instead)   | selling          |
| selling          | PriceTick     | stale_flagged / stale_cleared / high_water only        | selling          |
| selling          | LeaderSold,   | — deferred until the sale has an outcome (a close is   | selling          |
|                  | Close*        | validated at once, its reply ok)                       |                  |
| selling          | SetStop       | stop_moved (manual_stop); or error reply               | selling          |
| selling          | Filled(sell)  | partial_exit / exit_filled (the chain's fill)          | partially_closed |
|                  |               |                                                        | / closed         |
| selling          | FillFailed    | —                                                      | selling          |
| closed,          | every command | — (manual: reply "position is closed")                 | same             |
|   entry_failed   |               |                                                        |                  |

The table is actors/position_table.py, the exit rules actors/position_exits.py, the state and its fold
actors/position_state.py, the live rows actors/position_live.py; this module is the actor (the shell). A close is
announced by the position itself: to its wallet and the risk actor through the directory, and to the root,
which stops it (a normal exit).

Journals written before the engine (`opened` without `"entry": "pending"`, `closed`, `mirror_unpriced`)
still fold: such a position starts `open` at its recorded entry with the default plan.
"""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any

import pykka
import structlog

from actors.directory import announce_close
from actors.messages import Fill, JournalEvent, PositionClosed, PriceTick
from actors.ports import Ports, SignedSwap, SwapError
from actors.position_exits import exit_failed_data, on_close_partial_live, on_tick_live  # noqa: F401 - public names
from actors.position_live import Land, Later, Prepare, Resume, Signed, SwapFailed
from actors.position_state import (  # noqa: F401 - the position's public names, where they always were
    LIVE,
    MANUAL,
    QUOTE_DECIMALS,
    STATES,
    SWAPPING,
    TERMINAL,
    Buy,
    CancelEntry,
    Context,
    Filled,
    FillFailed,
    Order,
    PositionState,
    Sell,
    Step,
    apply,
    fold,
    levels,
    quote_price,
    whole_to_raw,
)
from actors.position_table import COMMANDS, TABLE, decide  # noqa: F401
from actors.shell import Shell

log = structlog.get_logger("position")


# -- the actor ------------------------------------------------------------------------------------------
def closed_notice(s: PositionState) -> PositionClosed:
    """What the root, the wallet and the risk actor are told when a position ends (closed or entry failed)."""
    return PositionClosed(s.id, s.wallet, s.token_mint, mode=s.mode, quote_mint=s.quote_mint,
                          realized_pnl_quote=s.realized_pnl_quote, exit_reason=s.exit_reason)


def _failed(exc: Exception) -> Future:
    f: Future = Future()
    f.set_exception(exc)
    return f


class PositionActor(Shell):
    """Runs the table: stores each step's events, then performs its effect (one fill or swap step at a time).

    Price ticks are never stashed behind a fill: while one is under way only the newest tick is kept and
    decided once the fill is journaled. Operator commands are validated at once (the reply), then queued.
    Commands the table defers (the leader's sale or a close while a live swap is in flight) are told again, in
    order, once the position leaves buying/selling.
    """

    def __init__(self, position_id: int, journal: tuple[JournalEvent, ...], ports: Ports, root: pykka.ActorRef,
                 trading_mode: str | None = None) -> None:
        super().__init__(ports.scheduler, root)
        self._entries_off = trading_mode == "off"  # the global kill switch when the root started it
        self.child_id = ("position", str(position_id))
        self.state = fold(position_id, journal).prepared()
        self.mark: PriceTick | None = None  # the last fresh price (not journaled: a tick is not a decision)
        self._waiting: PriceTick | None = None
        self._deferred: list[Any] = []
        self._ports = ports
        self._root = root

    def _announce_close(self) -> None:
        announce_close(self._ports.directory, self._root, closed_notice(self.state), self._ports.risk is not None)

    def on_start(self) -> None:
        if self.state.status in TERMINAL:  # a restart after the last event was stored but before the notice
            self._announce_close()
        elif self.state.status == "pending_entry" and self._entries_off and self.state.mode != "shadow":
            self._run(decide(self.state, CancelEntry("mode:off"), self._ctx()))  # granted, but not bought: never
        else:  # paper: ask for the entry again (safe); live: rebuild an unsigned intent, reconcile a signed one
            self._run(decide(self.state, Resume(), self._ctx()))

    def _ctx(self) -> Context:
        return Context(now=self._ports.clock(), plan=self._ports.exit_plan, mark=self.mark, live=self._ports.live_policy)

    def handle(self, message: Any) -> Any:
        if message == "idle":  # no fill or write under way, nothing queued (for tests and the panel)
            return self._inflight is None and self._waiting is None and not self._stash
        if isinstance(message, PriceTick):
            if quote_price(self.state, message) is not None:
                self.mark = message
            if self._inflight is not None:
                self._waiting = message
                return None
        elif isinstance(message, MANUAL) and self._inflight is not None:
            reply = decide(self.state, message, self._ctx()).reply  # validate now, act in turn
            if reply is not None and reply.ok:
                self._stash.append(message)
            return reply
        step = decide(self.state, message, self._ctx())
        if step.defer:
            self._deferred.append(message)
            return step.reply
        self._run(step)
        return step.reply

    def bypass_stash(self, message: Any) -> bool:
        return message == "idle" or isinstance(message, (PriceTick, *MANUAL))

    def _run(self, step: Step) -> None:
        if not step.events:
            self._perform(step.effects)
            return
        after = self.state
        for ev in step.events:
            after = apply(after, ev, self.state.id)
        events = step.events
        self.persist(
            lambda: self._ports.store.append_position_events(self.state.id, events, after.projection()),
            lambda _: self._applied(events, after, step.effects),
        )

    def _perform(self, effects: tuple[Any, ...]) -> None:
        for eff in effects[:1]:
            if isinstance(eff, (Prepare, Land)):
                self._swap_step(eff)
            elif isinstance(eff, Later):
                self.tell_later(eff.delay_s, eff.message)
            else:
                self._paper(eff)
        self._flush_tick()

    def _paper(self, eff: Buy | Sell) -> None:
        s, ex = self.state, self._ports.executor
        if isinstance(eff, Buy):
            op = (lambda: ex.buy(s.id, s.token_mint, eff.quote_amount, s.quote_mint, slippage_bps=s.slippage_bps,
                                 max_price_impact_pct=s.max_price_impact_pct)) if ex else None
            side = "buy"
        else:
            op = (lambda: ex.sell(s.id, s.token_mint, eff.token_amount, s.quote_mint,
                                  slippage_bps=s.slippage_bps)) if ex else None
            side = "sell"
        self.request(op or (lambda: _failed(RuntimeError("no executor configured"))),
                     lambda r, side=side: self._filled(side, r))

    def _swap_step(self, eff: Prepare | Land) -> None:
        """Ask the live executor to prepare (quote, build, verify, sign) or to land (send, confirm) a swap."""
        s, live = self.state, self._ports.live
        if isinstance(eff, Prepare):
            side = eff.side
            op = (lambda: live.prepare(s.id, side, s.token_mint, eff.amount, slippage_bps=eff.slippage_bps,
                                       max_price_impact_pct=s.max_price_impact_pct if side == "buy" else None)) if live else None
        else:
            side = "buy" if s.status == "buying" else "sell"
            op = (lambda: live.land(s.id, side, s.token_mint, eff.swap, fresh=eff.fresh)) if live else None
        # without a live executor (the key was removed): nothing is built; a signed swap's outcome stays unknown —
        # watched again later, never concluded, since it may have landed
        missing = SwapError("live_not_available", unknown=isinstance(eff, Land), detail="no live executor configured")
        self.request(op or (lambda: _failed(missing)),
                     lambda r, side=side, landing=isinstance(eff, Land): self._swapped(side, r, landing))

    def _swapped(self, side: str, result: Any, landing: bool) -> None:
        if isinstance(result, SignedSwap):
            msg: Any = Signed(side, result)
        elif isinstance(result, Fill):
            msg = Filled(result)
        elif isinstance(result, SwapError):
            msg = SwapFailed(side, result.reason, result.retryable, result.unknown, result.cost, result.detail)
        else:  # an error the executor did not name: preparing may be tried again; a landing's outcome is unknown
            detail = f"{type(result).__name__}: {result}"
            msg = SwapFailed(side, "land_error" if landing else "prepare_error", retryable=not landing, unknown=landing,
                             detail=detail)
        if isinstance(msg, SwapFailed):
            log.warning("swap_failed", position_id=self.state.id, side=side, reason=msg.reason, unknown=msg.unknown,
                        retryable=msg.retryable, error=msg.detail[:300],
                        signature=self.state.swap.signed.signature if self.state.swap and self.state.swap.signed else None)
        self._run(decide(self.state, msg, self._ctx()))
        self._flush_tick()

    def _filled(self, side: str, result: Any) -> None:
        msg = Filled(result) if isinstance(result, Fill) else FillFailed(side, f"{type(result).__name__}: {result}")
        if isinstance(msg, FillFailed):
            log.warning("fill_failed", position_id=self.state.id, side=side, error=msg.error)
        self._run(decide(self.state, msg, self._ctx()))
        self._flush_tick()

    def _flush_tick(self) -> None:
        if self._inflight is None and self._waiting is not None:
            tick, self._waiting = self._waiting, None
            self.actor_ref.tell(tick)

    def _applied(self, events: tuple[JournalEvent, ...], after: PositionState, effects: tuple[Any, ...]) -> None:
        before, self.state = self.state, after.prepared()
        for ev in events:
            log.info("position_event", position_id=after.id, wallet=after.wallet, token_mint=after.token_mint, mode=after.mode,
                     journal_event=ev.kind, seq=ev.seq,
                     **{k: v for k, v in ev.data.items() if k in ("reason", "signature", "token_amount", "error", "attempt")})
        if before.status in SWAPPING and after.status not in SWAPPING and self._deferred:
            deferred, self._deferred = self._deferred, []
            for message in deferred:  # decided now, in order, after what this step performs
                self.actor_ref.tell(message)
        if before.status not in TERMINAL and after.status in TERMINAL:
            log.info("position_closed", position_id=after.id, wallet=after.wallet, reason=after.exit_reason, mode=after.mode,
                     realized_pnl_quote=after.realized_pnl_quote, quote_mint=after.quote_mint)
            self._announce_close()
            self._waiting = None  # nothing left to decide on a price
            return
        self._perform(effects)

