"""The live rows of the position table (actors/position_table.py; the state and its fold: actors/position_state.py).

A live position trades real swaps through the two-step `LiveExecutor` port, journaling before each step:

    buy_intent    (attempt, amount, slippage)     before the swap is built — effect Prepare
    buy_signature (signature, signed tx, lastValidBlockHeight, the quote) — committed BEFORE anything is sent;
                                                  effect Land (send, rebroadcast, confirm)
    entry_filled  (the chain's fill)  |  buy_failed (reason, the fee of a failed landed tx) → a new attempt after a
                                                  backoff (Later → Retry), or entry_failed once they are spent

Sells are the same with `sell_intent` / `sell_signature` / `sell_failed`; an exit whose attempts are spent is
journaled `exit_failed` (state exit_failed, an alert), retried at a later tick with a wider slippage. A restart
(`Resume`) rebuilds an intent that has no signature (nothing was sent) and reconciles one that has (Land with
`fresh=False`: the chain is asked first; it is only rebroadcast while still valid) — never a second buy for
one intent. An outcome the executor could not learn (`SwapFailed.unknown`) watches the same signature again.

While a swap is in flight (buying/selling), the leader's sales and the operator's closes are deferred until it
has an outcome (`Step.defer`), so one order is never booked under another's reason.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from actors.messages import ClosePartial, ClosePosition, CommandReply, Fill, LeaderSold, PriceTick
from actors.ports import SignedSwap
from actors.position_state import Buy, Sell, Step, apply

from actors import position_exits as X  # (its helpers; it imports this module's state through position_state)


# -- the swap in flight, part of the state ---------------------------------------------------------------------
@dataclass(frozen=True)
class Swap:
    side: str  # "buy" | "sell"
    attempt: int
    amount: int  # lamports in (buy) or tokens in (sell)
    slippage_bps: int
    signed: SignedSwap | None = None  # None: the intent is journaled, nothing signed (so nothing sent)


# -- commands (from the actor and the executor) and effects ---------------------------------------------------
@dataclass(frozen=True)
class Resume:
    """The actor (re)started: continue whatever the journal left in flight."""


@dataclass(frozen=True)
class Retry:
    """A backoff is over: the next attempt (or, with `land`, watch the same signature again)."""

    land: bool = False


@dataclass(frozen=True)
class Signed:
    side: str
    swap: SignedSwap


@dataclass(frozen=True)
class SwapFailed:
    side: str
    reason: str
    retryable: bool = False
    unknown: bool = False
    cost: Fill | None = None  # the fee a failed landed transaction was charged
    detail: str = ""


@dataclass(frozen=True)
class Prepare:
    side: str
    amount: int
    slippage_bps: int


@dataclass(frozen=True)
class Land:
    swap: SignedSwap
    fresh: bool  # signed by this actor just now: nothing can have sent it before


@dataclass(frozen=True)
class Later:
    delay_s: float
    message: Any


# -- the fold of the live events ---------------------------------------------------------------------------------
def apply_live(s: Any, k: str, d: dict[str, Any]) -> Any:
    """The live journal events (called by `position.apply` with the seq already set)."""
    if k in ("buy_intent", "sell_intent"):
        side = k.split("_")[0]
        amount = int(d["quote_amount"] if side == "buy" else d["token_amount"])
        return replace(s, status="buying" if side == "buy" else "selling",
                       swap=Swap(side, int(d["attempt"]), amount, int(d["slippage_bps"])))
    if k in ("buy_signature", "sell_signature"):
        assert s.swap is not None, f"{k} without an intent"
        signed = SignedSwap.from_json(d)
        return replace(s, swap=replace(s.swap, signed=signed, amount=signed.amount))
    if k in ("buy_failed", "sell_failed"):
        cost = int(d["fill"]["quote_amount"]) if isinstance(d.get("fill"), dict) else 0
        if k == "buy_failed":
            return replace(s, swap=None, attempts=int(d["attempt"]), fees_lost=s.fees_lost + cost)
        return replace(s, swap=None, attempts=int(d["attempt"]), exit_quote_amount=s.exit_quote_amount + cost)
    raise LookupError(f"unknown journal event {k!r}")


LIVE_EVENTS = ("buy_intent", "buy_signature", "buy_failed", "sell_intent", "sell_signature", "sell_failed")


# -- steps --------------------------------------------------------------------------------------------------------
def buy_intent(s: Any, ctx: Any) -> Any:
    bps = s.slippage_bps if s.slippage_bps is not None else ctx.live.slippage_bps
    data = {"attempt": s.attempts + 1, "quote_amount": str(s.entry_quote_amount), "slippage_bps": bps}
    return X._step(s, [("buy_intent", data)], (Prepare("buy", s.entry_quote_amount, bps),))


def sell_intent(s: Any, ctx: Any) -> Any:
    """The next attempt at the order; each exit_failed round so far doubles the slippage, up to the cap."""
    o = s.order
    assert o is not None, "a sell without an order"
    base = s.slippage_bps if s.slippage_bps is not None else ctx.live.slippage_bps
    bps = ctx.live.exit_slippage(base, o.attempts)
    data = {"attempt": s.attempts + 1, "token_amount": str(o.token_amount), "slippage_bps": bps, "reason": o.reason,
            "exit_round": o.attempts}
    return X._step(s, [("sell_intent", data)], (Prepare("sell", o.token_amount, bps),))


def as_live(handler: Any) -> Any:
    """A holding-state handler whose `Sell` becomes, for a live position, a journaled sell intent (selling)."""

    def run(s: Any, m: Any, ctx: Any) -> Any:
        step = handler(s, m, ctx)
        if s.mode != "live" or not any(isinstance(e, Sell) for e in step.effects):
            return step
        after = s
        for ev in step.events:
            after = apply(after, ev, s.id)
        more = sell_intent(after, ctx)
        return Step(step.events + more.events, more.effects, step.reply)

    run.__name__ = f"live_{handler.__name__}"
    return run


def on_resume_pending(s: Any, m: Resume, ctx: Any) -> Any:
    if s.mode == "live":
        return buy_intent(s, ctx)
    return Step(effects=(Buy(s.entry_quote_amount),))  # paper: asking for the entry again is safe


def on_resume_swapping(s: Any, m: Resume, ctx: Any) -> Any:
    sw = s.swap
    if sw is None:  # a retry was waiting when the process stopped
        return on_retry(s, Retry(), ctx)
    if sw.signed is None:  # the intent only: nothing was signed, so nothing sent — build it again
        return Step(effects=(Prepare(sw.side, sw.amount, sw.slippage_bps),))
    return Step(effects=(Land(sw.signed, fresh=False),))  # reconcile: the chain first, then rebroadcast if valid


def on_retry(s: Any, m: Retry, ctx: Any) -> Any:
    sw = s.swap
    if sw is not None:
        return Step(effects=(Land(sw.signed, fresh=False),)) if m.land and sw.signed is not None else Step()
    if m.land:
        return Step()  # a stale timer: the swap it watched has an outcome
    return buy_intent(s, ctx) if s.status == "buying" else sell_intent(s, ctx)


def on_signed(s: Any, m: Signed, ctx: Any) -> Any:
    sw = s.swap
    if sw is None or sw.signed is not None or sw.side != m.side:
        return Step()  # not the intent in flight: never sent
    return X._step(s, [(f"{sw.side}_signature", {"attempt": sw.attempt, **m.swap.as_json()})], (Land(m.swap, fresh=True),))


def on_swap_failed(s: Any, m: SwapFailed, ctx: Any) -> Any:
    sw = s.swap
    if sw is None or sw.side != m.side:
        return Step()
    if m.unknown and sw.signed is not None:  # nothing learnt: the same signature is watched again, never re-bought
        return Step(effects=(Later(ctx.live.delay(sw.attempt), Retry(land=True)),))
    retry = (m.retryable or m.unknown) and sw.attempt < ctx.live.max_attempts
    data: dict[str, Any] = {"attempt": sw.attempt, "reason": m.reason, "stage": "land" if sw.signed else "prepare",
                            "retry": retry, "error": m.detail[:300]}
    if sw.signed is not None:
        data["signature"] = sw.signed.signature
    if m.cost is not None:
        data["fill"] = m.cost.as_json()
    events: list[tuple[str, dict[str, Any]]] = [(f"{sw.side}_failed", data)]
    if retry:
        return X._step(s, events, (Later(ctx.live.delay(sw.attempt), Retry()),))
    tried = f"{m.reason} after {sw.attempt} attempt(s)"
    if sw.side == "buy":
        events.append(("entry_failed", {"reason": "entry_failed", "error": tried}))
        return X._step(s, events)
    events.append(("exit_failed", X.exit_failed_data(s, ctx, tried)))
    return X._step(s, events)


def on_filled_buying(s: Any, m: Any, ctx: Any) -> Any:
    f = m.fill
    sw = s.swap
    if f.side != "buy" or sw is None:
        raise LookupError(f"position {s.id}: a {f.side} fill while buying without a swap")
    if f.token_amount <= 0:  # the chain says it spent and bought nothing: booked as a cost, the entry failed
        return X._step(s, [("buy_failed", {"attempt": sw.attempt, "reason": "bought_nothing", "stage": "land",
                                           "retry": False, "fill": f.as_json(), "signature": f.signature}),
                           ("entry_failed", {"reason": "entry_failed", "error": "the transaction bought nothing"})])
    return X._step(s, [("entry_filled", {"fill": f.as_json(), "plan": ctx.plan.as_json(), "at": ctx.now,
                                         "attempt": sw.attempt})])


def on_leader_sold_buying(s: Any, m: LeaderSold, ctx: Any) -> Any:
    if s.swap is None:  # waiting to retry: nothing is in flight, so the entry stops here
        return X._step(s, [("entry_failed", {"reason": "leader_sold_before_entry", "signature": m.signature})])
    return Step(defer=True)  # a transaction may be landing: decided once it has an outcome


def on_tick_selling(s: Any, t: PriceTick, ctx: Any) -> Any:
    """Bookkeeping only (stale flag, high-water mark): exit rules wait for the sale in flight to have an outcome."""
    step = X.on_tick_live(s, t, ctx)
    return X._step(s, [(e.kind, e.data) for e in step.events if e.kind in ("stale_flagged", "stale_cleared", "high_water")])


def defer(s: Any, m: Any, ctx: Any) -> Any:
    return Step(defer=True)


def defer_command(s: Any, m: Any, ctx: Any) -> Any:
    """An operator close while a sale is in flight: validated now, ordered once the sale has an outcome."""
    if isinstance(m, ClosePartial):
        check = X.on_close_partial_live(s, m, ctx)
        if check.reply is not None and not check.reply.ok:
            return check
    assert isinstance(m, (ClosePosition, ClosePartial))
    return Step(reply=CommandReply(s.id, True), defer=True)
