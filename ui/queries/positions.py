"""A position as the panel shows it: the `positions` projection valued at the latest mark, with its exit
levels (stop, take-profit ladder) read from what its actor journaled — the plan it armed, the last
`stop_moved`, the rungs filled — never by replaying the actor's fold."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Mapping

import asyncpg

from actors.ports import ExitPlan
from actors.trades import WSOL_MINT
from ui.queries.units import epoch, quote_decimals, quote_symbol, raw_price_to_whole, short, whole

OPEN_STATES = ("pending_entry", "buying", "open", "partially_closed", "selling", "exit_failed")

# A position's exit levels, as columns of a query over `positions p`: the plan it was armed with (the entry's,
# else the one it opened with), its last explicit stop (breakeven or manual), how many take-profit rungs filled.
LEVEL_COLUMNS = """
       EXISTS (SELECT 1 FROM position_events e WHERE e.position_id = p.id) AS journaled,
       (SELECT e.data->'plan' FROM position_events e WHERE e.position_id = p.id
           AND e.kind IN ('opened', 'entry_filled') AND e.data ? 'plan' ORDER BY e.seq DESC LIMIT 1) AS plan,
       (SELECT e.data FROM position_events e WHERE e.position_id = p.id AND e.kind = 'stop_moved'
         ORDER BY e.seq DESC LIMIT 1) AS stop_moved,
       (SELECT max((e.data->>'tp_level')::int) + 1 FROM position_events e WHERE e.position_id = p.id
           AND e.kind IN ('partial_exit', 'exit_filled')) AS tp_done"""


@dataclass(frozen=True)
class Marks:
    """Latest prices: token -> (usd, priced_at epoch, stale, source), and SOL in USD."""

    usd: dict[str, tuple[float | None, float | None, bool, str | None]]
    sol_usd: float | None

    def quote_per_token(self, mint: str, quote_mint: str) -> float | None:
        """Whole quote units per whole token, or None when unknown."""
        m = self.usd.get(mint)
        if m is None or m[0] is None:
            return None
        if quote_mint == WSOL_MINT:
            return m[0] / self.sol_usd if self.sol_usd else None
        return m[0]  # a stablecoin quote: one unit is one dollar


def mark(r: Mapping[str, Any]) -> tuple[float | None, float | None, bool, str | None]:
    """A `token_prices` row (or the same columns joined) as a `Marks` entry."""
    return float(r["usd"]) if r["usd"] is not None else None, epoch(r["priced_at"]), r["stale"], r["source"]


async def marks(conn: asyncpg.Connection, mints: list[str]) -> Marks:
    rows = await conn.fetch("SELECT mint, usd, priced_at, stale, source FROM token_prices WHERE mint = ANY($1::text[])",
                            [*mints, WSOL_MINT])
    usd = {r["mint"]: mark(r) for r in rows}
    sol = usd.get(WSOL_MINT)
    return Marks(usd, sol[0] if sol is not None else None)


@dataclass(frozen=True)
class Levels:
    """A position's stop (and why), its take-profit ladder, whole quote units per whole token."""

    stop: float | None
    stop_reason: str | None
    take_profits: tuple[tuple[float, float, bool], ...]  # (price, fraction of the entry, done)


NO_LEVELS = Levels(None, None, ())


def levels(row: Mapping[str, Any]) -> Levels:
    """The levels of a row carrying the position's amounts and `LEVEL_COLUMNS`."""
    if not row["journaled"]:
        return NO_LEVELS
    try:
        plan = ExitPlan.from_json(row["plan"]) if row["plan"] else ExitPlan()
        moved = row["stop_moved"]
        explicit = Fraction(moved["stop_price"]) if moved else None
    except (KeyError, TypeError, ValueError, ArithmeticError):  # a journal this panel cannot read: no levels shown
        return NO_LEVELS
    dec, qm = int(row["token_decimals"]), row["quote_mint"]
    tokens = int(row["entry_token_amount"])
    entry = Fraction(int(row["entry_quote_amount"]), tokens) if tokens > 0 else None
    stop = explicit
    if stop is None and entry is not None and plan.stop_loss_pct > 0:
        stop = entry * (1 - Fraction(plan.stop_loss_pct) / 100)
    tps: tuple[tuple[float, float, bool], ...] = ()
    if entry is not None:
        scale = entry * 10**dec / 10 ** quote_decimals(qm)
        done = int(row["tp_done"] or 0)
        tps = tuple((float(scale * (1 + Fraction(g) / 100)), float(f), i < done)
                    for i, (g, f) in enumerate(plan.take_profit))
    return Levels(raw_price_to_whole(stop, dec, qm), moved["reason"] if moved else "stop_loss", tps)


def position_view(row: Mapping[str, Any], mk: Marks, now: float, labels: dict[str, str | None]) -> dict[str, Any]:
    """One position for display (a `positions` row with `LEVEL_COLUMNS`), valued at the latest mark."""
    dec, qm = int(row["token_decimals"]), row["quote_mint"]
    qdec = quote_decimals(qm)
    entry_quote, entry_tokens = int(row["entry_quote_amount"]), int(row["entry_token_amount"])
    open_tokens = int(row["token_amount_open"])
    price = mk.quote_per_token(row["token_mint"], qm)
    m = mk.usd.get(row["token_mint"])
    priced_at = m[1] if m is not None else None
    unrealized = None
    if price is not None and open_tokens > 0 and entry_tokens > 0:
        unrealized = open_tokens / 10**dec * price - entry_quote * open_tokens / (entry_tokens * 10**qdec)
    lv = levels(row)
    opened, closed = epoch(row["opened_at"]), epoch(row["closed_at"])
    return {
        "id": int(row["id"]), "wallet": row["wallet"], "wallet_label": labels.get(row["wallet"]) or short(row["wallet"]),
        "token": row["token_mint"], "token_short": short(row["token_mint"]), "mode": row["mode"],
        "status": row["status"], "quote": quote_symbol(qm),
        "entry_price": entry_quote / entry_tokens * 10 ** (dec - qdec) if entry_tokens > 0 else None,
        "entry_quote": whole(entry_quote, qdec), "open_tokens": whole(open_tokens, dec),
        "price": price, "price_age_s": (now - priced_at) if priced_at is not None else None,
        "price_stale": bool(m[2]) if m is not None else False,
        "unrealized": unrealized, "realized": realized(row, qdec),
        "stop": lv.stop, "stop_reason": lv.stop_reason, "take_profits": list(lv.take_profits),
        "opened_at": opened, "closed_at": closed,
        "held_s": ((closed or now) - opened) if opened is not None else None,
        "exit_reason": row["exit_reason"],
    }


def realized(row: Mapping[str, Any], qdec: int) -> float | None:
    """The realized PnL: the closed position's, else what its partial exits so far brought in against their cost."""
    if row["realized_pnl_quote"] is not None:
        return whole(row["realized_pnl_quote"], qdec)
    entry_quote, entry_tokens = int(row["entry_quote_amount"]), int(row["entry_token_amount"])
    sold = entry_tokens - int(row["token_amount_open"])
    if sold > 0 and entry_tokens > 0:
        exit_quote = int(row["exit_quote_amount"] or 0)
        return float(Fraction(exit_quote, 10**qdec) - Fraction(entry_quote * sold, entry_tokens) / 10**qdec)
    return None
