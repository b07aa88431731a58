"""The panel's read models against the actor's own state: a real PositionActor (paper, through the real store and
the sandbox Jupiter) moves through its exit levels, and at each step the levels the panel reads from the stored
projections and journal (`ui.queries`) are the ones the actor decides with (`PositionState`)."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from fractions import Fraction
from typing import Any

from actors.messages import SetStop
from actors.position import PositionState
from tests.conftest import wait_until
from tests.test_position_engine import BASE, Engine, engine  # noqa: F401 - the real position engine fixture
from ui import queries


def expected(s: PositionState) -> dict[str, Any]:
    """What the actor decides with, in the panel's whole units."""
    scale = Fraction(10**s.token_decimals, 10**9)  # SOL-quoted
    tps = []
    if s.entry_price is not None:
        tps = [(float(s.entry_price * scale * (1 + Fraction(g) / 100)), float(f), i < s.tp_done)
               for i, (g, f) in enumerate(s.plan.take_profit)]
    return {"stop": float(s.stop * scale) if s.stop is not None else None, "stop_reason": s.stop_reason,
            "take_profits": tps}


def shown(engine: Engine, pid: int) -> tuple[dict[str, Any], dict[str, Any]]:  # noqa: F811
    """The position on its own page and in the dashboard's open positions (None there once closed)."""
    detail = engine.store.run(lambda c: queries.position_detail(c, pid))
    board = engine.store.run(queries.dashboard)
    row = next((p for p in board["positions"] if p["id"] == pid), None)
    pick = lambda p: p and {k: p[k] for k in ("stop", "stop_reason", "take_profits")}  # noqa: E731
    return pick(detail), pick(row)


def test_the_panel_shows_the_levels_the_position_decides_with(engine: Engine) -> None:  # noqa: F811
    plan = replace(BASE, take_profit=((Decimal(20), Decimal("0.3")), (Decimal(40), Decimal("0.3"))),
                   breakeven_after_first_tp=True)
    pid = engine.open("STDY", plan)
    s = engine.settle(pid, "open")
    detail, row = shown(engine, pid)
    assert detail == row == expected(s) and s.stop_reason == "stop_loss" and detail["stop"] is not None
    assert [done for _, _, done in detail["take_profits"]] == [False, False]

    s = engine.step_tick(pid, 1.25)  # the first rung fills; the stop moves to breakeven
    assert s.tp_done == 1 and s.stop_reason == "breakeven_stop"
    detail, row = shown(engine, pid)
    assert detail == row == expected(s) and [done for _, _, done in detail["take_profits"]] == [True, False]

    price = Decimal(repr(engine.market.price_usd(s.token_mint))) / Decimal(repr(engine.market.sol_usd))
    assert engine.refs[pid].ask(SetStop(pid, price * Decimal("0.97")), timeout=5).ok
    s = wait_until(lambda: (s := engine.state(pid)).stop_reason == "manual_stop" and engine.idle(pid) and s)
    detail, row = shown(engine, pid)
    assert detail == row == expected(s) and abs(detail["stop"] - float(price) * 0.97) < 1e-12 * float(price)

    s = engine.step_tick(pid, float(s.stop / s.entry_price) * 0.98)  # type: ignore[operator]
    assert s.status == "closed"
    detail, row = shown(engine, pid)
    assert row is None and detail == expected(s)


def test_a_failed_entry_shows_no_levels_and_an_unknown_position_is_none(engine: Engine) -> None:  # noqa: F811
    pid = engine.open("", mint="UnknownMint1111111111111111111111111111111")  # no route: the entry fails
    s = engine.settle(pid, "entry_failed")
    detail, _ = shown(engine, pid)
    assert detail == expected(s) == {"stop": None, "stop_reason": "stop_loss", "take_profits": []}
    assert engine.store.run(lambda c: queries.position_detail(c, 10**9)) is None
