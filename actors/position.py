"""PositionActor: one per open position. Its state is a fold of its journal (event-sourced).

Commands are decided against the current state into journal events; the shell stores them, then
applies them. Replaying the journal after a restart yields the same state.

| state  | command      | journal events                         | next   |
|--------|--------------|----------------------------------------|--------|
| open   | leader_sold  | closed(mirror_sell) at the leader's price | closed |
|        |              | or mirror_unpriced (other quote asset) | open   |
| open   | price_tick   | — (the last tick is kept as the mark)  | open   |
| closed | leader_sold  | —                                      | closed |
| closed | price_tick   | —                                      | closed |
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, Callable

import pykka
import structlog

from actors.messages import JournalEvent, LeaderSold, PositionClosed, PriceTick
from actors.ports import Ports
from actors.shell import Shell

log = structlog.get_logger("position")


@dataclass(frozen=True)
class PositionState:
    id: int
    wallet: str
    token_mint: str
    token_decimals: int
    quote_mint: str
    mode: str
    status: str
    entry_quote_amount: int
    entry_token_amount: int
    token_amount_open: int
    exit_quote_amount: int = 0
    realized_pnl_quote: int | None = None
    exit_reason: str | None = None
    seq: int = 0

    def projection(self) -> dict[str, Any]:
        return asdict(self)


# -- the fold ------------------------------------------------------------------------------------
def apply(state: PositionState | None, ev: JournalEvent, position_id: int) -> PositionState:
    d = ev.data
    if ev.kind == "opened":
        assert state is None, "opened twice"
        return PositionState(
            id=position_id,
            wallet=d["wallet"],
            token_mint=d["token_mint"],
            token_decimals=int(d["token_decimals"]),
            quote_mint=d["quote_mint"],
            mode=d["mode"],
            status="open",
            entry_quote_amount=int(d["entry_quote_amount"]),
            entry_token_amount=int(d["entry_token_amount"]),
            token_amount_open=int(d["entry_token_amount"]),
            seq=ev.seq,
        )
    assert state is not None, f"{ev.kind} before opened"
    if ev.kind == "closed":
        exit_quote = state.exit_quote_amount + int(d["exit_quote_amount"])
        return replace(
            state,
            status="closed",
            token_amount_open=state.token_amount_open - int(d["exit_token_amount"]),
            exit_quote_amount=exit_quote,
            realized_pnl_quote=exit_quote - state.entry_quote_amount,
            exit_reason=d["reason"],
            seq=ev.seq,
        )
    if ev.kind == "mirror_unpriced":
        return replace(state, seq=ev.seq)
    raise LookupError(f"unknown journal event {ev.kind!r}")


def fold(position_id: int, journal: tuple[JournalEvent, ...]) -> PositionState:
    state: PositionState | None = None
    for ev in journal:
        state = apply(state, ev, position_id)
    assert state is not None, f"position {position_id} has an empty journal"
    return state


# -- the table -----------------------------------------------------------------------------------
def on_leader_sold_open(s: PositionState, cmd: LeaderSold) -> list[tuple[str, dict[str, Any]]]:
    if cmd.quote_mint != s.quote_mint or cmd.token_amount <= 0:
        return [("mirror_unpriced", {"signature": cmd.signature, "quote_mint": cmd.quote_mint})]
    exit_quote = s.token_amount_open * cmd.quote_amount // cmd.token_amount
    return [
        (
            "closed",
            {
                "reason": "mirror_sell",
                "signature": cmd.signature,
                "exit_token_amount": str(s.token_amount_open),
                "exit_quote_amount": str(exit_quote),
            },
        )
    ]


def ignore(s: PositionState, cmd: Any) -> list[tuple[str, dict[str, Any]]]:
    return []


TABLE: dict[tuple[str, type], Callable[[PositionState, Any], list[tuple[str, dict[str, Any]]]]] = {
    ("open", LeaderSold): on_leader_sold_open,
    ("open", PriceTick): ignore,  # marks the position (the shell keeps the last tick); exits arrive with the engine
    ("closed", LeaderSold): ignore,
    ("closed", PriceTick): ignore,
}


def decide(state: PositionState, command: Any) -> tuple[JournalEvent, ...]:
    handler = TABLE.get((state.status, type(command)))
    if handler is None:
        raise LookupError(f"position {state.id}: no transition for {type(command).__name__} in {state.status}")
    return tuple(JournalEvent(state.seq + i + 1, kind, data) for i, (kind, data) in enumerate(handler(state, command)))


class PositionActor(Shell):
    def __init__(self, position_id: int, journal: tuple[JournalEvent, ...], ports: Ports, root: pykka.ActorRef) -> None:
        super().__init__(ports.scheduler, root)
        self.child_id = ("position", str(position_id))
        self.state = fold(position_id, journal)
        self.mark: PriceTick | None = None
        self._ports = ports
        self._root = root

    def handle(self, message: Any) -> Any:
        if message == "state":
            return self.state
        if isinstance(message, PriceTick):
            self.mark = message if message.usd is not None else self.mark  # unknown never replaces a price
        events = decide(self.state, message)
        if not events:
            return None
        after = self.state
        for ev in events:
            after = apply(after, ev, self.state.id)
        self.persist(
            lambda: self._ports.store.append_position_events(self.state.id, events, after.projection()),
            lambda _: self._applied(events, after),
        )
        return None

    def bypass_stash(self, message: Any) -> bool:
        return message == "state" or isinstance(message, PriceTick)

    def _applied(self, events: tuple[JournalEvent, ...], after: PositionState) -> None:
        before, self.state = self.state, after
        for ev in events:
            log.info("position_event", position_id=after.id, wallet=after.wallet, token_mint=after.token_mint,
                     journal_event=ev.kind, seq=ev.seq, **{k: v for k, v in ev.data.items() if k in ("reason", "signature")})
        if before.status != "closed" and after.status == "closed":
            log.info("position_closed", position_id=after.id, wallet=after.wallet, reason=after.exit_reason,
                     realized_pnl_quote=after.realized_pnl_quote, quote_mint=after.quote_mint)
            self._root.tell(PositionClosed(after.id, after.wallet, after.token_mint))
