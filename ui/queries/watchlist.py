"""The watchlist's read model: each wallet with its status, copy-rule overrides and performance."""

from __future__ import annotations

from typing import Any

import asyncpg

from actors.trades import WSOL_MINT
from ui.queries.units import has_column, utc, whole


def _watchlist_sql(settings: str) -> str:
    return f"""SELECT w.address, w.label, w.status, w.added_at, {settings},
                   (SELECT count(*) FROM signals s WHERE s.wallet = w.address) AS signals,
                   (SELECT count(*) FROM signals s WHERE s.wallet = w.address AND s.decision = 'taken') AS taken,
                   (SELECT count(*) FROM positions p WHERE p.wallet = w.address AND p.mode <> 'shadow'
                        AND p.closed_at IS NULL) AS open,
                   (SELECT count(*) FROM positions p WHERE p.wallet = w.address AND p.mode <> 'shadow'
                        AND p.realized_pnl_quote IS NOT NULL) AS closed,
                   (SELECT count(*) FROM positions p WHERE p.wallet = w.address AND p.mode <> 'shadow'
                        AND p.realized_pnl_quote > 0) AS wins,
                   (SELECT coalesce(sum(realized_pnl_quote), 0) FROM positions p WHERE p.wallet = w.address
                        AND p.mode <> 'shadow' AND p.quote_mint = $1) AS pnl_sol,
                   (SELECT coalesce(sum(realized_pnl_quote), 0) FROM positions p WHERE p.wallet = w.address
                        AND p.mode = 'shadow' AND p.quote_mint = $1) AS shadow_pnl_sol
              FROM wallets w ORDER BY w.added_at, w.address"""


async def watchlist(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    """Wallets with their status, copy-rule overrides and performance."""
    has_settings = await has_column(conn, "wallets", "settings")
    rows = await conn.fetch(_watchlist_sql("w.settings" if has_settings else "NULL::jsonb AS settings"), WSOL_MINT)
    out = []
    for r in rows:
        closed = int(r["closed"])
        out.append({
            "address": r["address"], "label": r["label"] or "", "status": r["status"],
            "added": utc(r["added_at"], "%Y-%m-%d %H:%M"),
            "overrides": r["settings"] if isinstance(r["settings"], dict) else {},
            "signals": int(r["signals"]), "taken": int(r["taken"]), "open": int(r["open"]), "closed": closed,
            "win_rate": f"{100 * int(r['wins']) / closed:.0f}%" if closed else "—",
            "pnl_sol": round(whole(r["pnl_sol"], 9), 6), "shadow_pnl_sol": round(whole(r["shadow_pnl_sol"], 9), 6),
        })
    return out
