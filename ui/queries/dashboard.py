"""The dashboard's read model: open positions, PnL totals and per wallet, the equity curve and the newest
signals, in two round trips (a busy bot shares the store's loop: each round trip waits its turn)."""

from __future__ import annotations

import json
import time
from typing import Any

import asyncpg

from actors.trades import WSOL_MINT
from ui.queries.positions import LEVEL_COLUMNS, OPEN_STATES, Marks, mark, position_view
from ui.queries.signals import signal_row
from ui.queries.units import quote_decimals, quote_symbol, short, whole

_OPEN_POSITIONS = f"""
SELECT p.id, p.wallet, w.label, p.token_mint, p.token_decimals, p.quote_mint, p.mode, p.status, p.entry_quote_amount,
       p.entry_token_amount, p.token_amount_open, p.exit_quote_amount, p.realized_pnl_quote, p.exit_reason,
       p.opened_at, p.closed_at, {LEVEL_COLUMNS},
       tp.usd, tp.priced_at, tp.stale, tp.source
  FROM positions p
  LEFT JOIN wallets w ON w.address = p.wallet
  LEFT JOIN token_prices tp ON tp.mint = p.token_mint
 WHERE p.closed_at IS NULL AND p.mode <> 'shadow' AND p.status = ANY($1::text[])
 ORDER BY p.opened_at DESC, p.id DESC"""

# Everything else the dashboard shows, in one round trip: the SOL mark, realized PnL per wallet and quote, the
# equity curve (cumulative realized PnL per quote, in close order: both read the closed positions through
# schema/005's covering index), and the newest signals. Raw amounts travel as text, exact.
_SUMMARY = """
SELECT (SELECT usd FROM token_prices WHERE mint = $2) AS sol_usd,
  (SELECT coalesce(json_agg(r), '[]') FROM (
      SELECT p.wallet, w.label, p.quote_mint, sum(p.realized_pnl_quote)::text AS pnl, count(*) AS n,
             count(*) FILTER (WHERE p.realized_pnl_quote > 0) AS wins
        FROM positions p LEFT JOIN wallets w ON w.address = p.wallet
       WHERE p.mode <> 'shadow' AND p.realized_pnl_quote IS NOT NULL AND p.closed_at IS NOT NULL
       GROUP BY p.wallet, w.label, p.quote_mint) r)::text AS realized,
  (SELECT coalesce(json_agg(json_build_array(c.at, c.quote_mint, c.running::text) ORDER BY c.closed_at, c.id), '[]')
     FROM (SELECT closed_at, id, extract(epoch FROM closed_at)::float8 * 1000 AS at, quote_mint,
                  sum(realized_pnl_quote) OVER (PARTITION BY quote_mint ORDER BY closed_at, id) AS running
             FROM positions WHERE mode <> 'shadow' AND realized_pnl_quote IS NOT NULL AND closed_at IS NOT NULL) c
  )::text AS curve,
  (SELECT coalesce(json_agg(s ORDER BY s.id DESC), '[]') FROM (
      SELECT s.id, to_char(s.created_at AT TIME ZONE 'UTC', 'HH24:MI:SS') AS at, s.wallet, w.label, s.side,
             s.token_mint, s.decision, s.reason, s.quote_mint, s.quote_amount::text AS quote_amount
        FROM signals s LEFT JOIN wallets w ON w.address = s.wallet ORDER BY s.id DESC LIMIT $1) s)::text AS signals"""


async def dashboard(conn: asyncpg.Connection, now: float | None = None) -> dict[str, Any]:
    """Open positions, PnL totals and per wallet, the equity curve, recent signals; totals and the curve are
    summed by the database."""
    now = time.time() if now is None else now
    rows = await conn.fetch(_OPEN_POSITIONS, list(OPEN_STATES))
    summary = await conn.fetchrow(_SUMMARY, 15, WSOL_MINT)
    sol = float(summary["sol_usd"]) if summary["sol_usd"] is not None else None
    mk = Marks({r["token_mint"]: mark(r) for r in rows if r["priced_at"] is not None}, sol)
    labels = {r["wallet"]: r["label"] for r in rows}
    positions = [position_view(r, mk, now, labels) for r in rows]
    per_wallet, totals = pnl_by_wallet(json.loads(summary["realized"]), positions)
    return {"positions": positions, "totals": totals, "per_wallet": sorted(per_wallet.values(), key=lambda w: w["label"]),
            "curve": equity_curve(json.loads(summary["curve"])),
            "signals": [signal_row(r, r["label"], r["at"]) for r in json.loads(summary["signals"])]}


def _wallet(per_wallet: dict[str, dict[str, Any]], wallet: str, label: str) -> dict[str, Any]:
    return per_wallet.setdefault(wallet, {"wallet": wallet, "label": label, "realized": {}, "unrealized": {},
                                          "closed": 0, "wins": 0, "open": 0})


def pnl_by_wallet(realized: list[dict[str, Any]], positions: list[dict[str, Any]]
                  ) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, float]]]:
    """Per wallet and in total, per quote: realized PnL of the closed positions, unrealized of the open ones."""
    per_wallet: dict[str, dict[str, Any]] = {}
    totals: dict[str, dict[str, float]] = {}
    for r in realized:
        q = quote_symbol(r["quote_mint"])
        v = whole(r["pnl"], quote_decimals(r["quote_mint"]))
        w = _wallet(per_wallet, r["wallet"], r["label"] or short(r["wallet"]))
        w["realized"][q] = w["realized"].get(q, 0.0) + v
        w["closed"] += int(r["n"])
        w["wins"] += int(r["wins"])
        totals.setdefault(q, {"realized": 0.0, "unrealized": 0.0})["realized"] += v
    for p in positions:
        w = _wallet(per_wallet, p["wallet"], p["wallet_label"])
        w["open"] += 1
        t = totals.setdefault(p["quote"], {"realized": 0.0, "unrealized": 0.0})
        if p["unrealized"] is not None:
            w["unrealized"][p["quote"]] = w["unrealized"].get(p["quote"], 0.0) + p["unrealized"]
            t["unrealized"] += p["unrealized"]
    return per_wallet, totals


def equity_curve(points: list[list[Any]]) -> dict[str, list[tuple[float, float]]]:
    """Cumulative realized PnL per quote symbol: (close time in ms, whole units)."""
    curve: dict[str, list[tuple[float, float]]] = {}
    for at, quote_mint, running in points:
        curve.setdefault(quote_symbol(quote_mint), []).append((float(at), round(whole(running, quote_decimals(quote_mint)), 9)))
    return curve
