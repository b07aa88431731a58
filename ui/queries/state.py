"""The running bot's state as stored: breakers, inbox and webhook health, live alerts, the trading mode."""

from __future__ import annotations

from typing import Any

import asyncpg

from ui.queries.units import epoch, fmt_epoch, short, whole


async def breakers(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    """Breakers as stored by the risk actor (schema/004; empty when none has tripped yet)."""
    rows = await conn.fetch("SELECT * FROM breakers ORDER BY name")
    out = []
    for r in rows:
        d = dict(r)
        out.append({"name": d.get("name"), "state": d.get("state"), "reason": d.get("reason") or "",
                    "tripped_at": fmt_epoch(d.get("tripped_at")), "until": fmt_epoch(d.get("until")),
                    "reset_at": fmt_epoch(d.get("reset_at"))})
    return out


async def health(conn: asyncpg.Connection) -> dict[str, Any]:
    row = await conn.fetchrow(
        """SELECT (SELECT received_at FROM webhook_inbox ORDER BY id DESC LIMIT 1) AS last_webhook,
                  (SELECT count(*) FROM webhook_inbox) AS deliveries,
                  (SELECT count(*) FROM webhook_inbox WHERE processed_at IS NULL) AS inbox_pending,
                  (SELECT created_at FROM signals ORDER BY id DESC LIMIT 1) AS last_signal""")
    return {"last_webhook": epoch(row["last_webhook"]), "deliveries": int(row["deliveries"]),
            "inbox_pending": int(row["inbox_pending"]), "last_signal": epoch(row["last_signal"])}


async def live_alerts(conn: asyncpg.Connection) -> dict[str, Any]:
    """What the operator must look at in live mode: positions whose exit could not land (exit_failed: retried at a
    later tick with a wider slippage, never forgotten) and the last start-up reconcile's findings (schema/006)."""
    stuck = await conn.fetch(
        """SELECT p.id, p.token_mint, p.mode, p.token_amount_open, p.token_decimals,
                  (SELECT e.data FROM position_events e WHERE e.position_id = p.id AND e.kind = 'exit_failed'
                    ORDER BY e.seq DESC LIMIT 1) AS failed
             FROM positions p WHERE p.status = 'exit_failed' AND p.closed_at IS NULL AND p.mode <> 'shadow'
            ORDER BY p.id""")
    exits = [{"id": r["id"], "token": short(r["token_mint"]), "mode": r["mode"],
              "open": whole(r["token_amount_open"], int(r["token_decimals"])),
              "error": (r["failed"] or {}).get("error", ""), "attempt": (r["failed"] or {}).get("attempt"),
              "retry_at": fmt_epoch((r["failed"] or {}).get("retry_at"))} for r in stuck]
    run = await conn.fetch(
        """SELECT run_at, wallet, kind, mint, position_ids, book_amount, chain_amount, detail FROM live_reconcile
            WHERE run_at = (SELECT max(run_at) FROM live_reconcile) AND kind <> 'clean' ORDER BY id""")
    findings = [{"kind": r["kind"], "token": short(r["mint"]), "positions": list(r["position_ids"]),
                 "detail": r["detail"], "at": fmt_epoch(r["run_at"])} for r in run]
    return {"exit_failed": exits, "reconcile": findings}


async def trading_mode(conn: asyncpg.Connection) -> dict[str, Any] | None:
    """The operator's stored global trading mode (schema/005), or None while TRADING_MODE is in force."""
    row = await conn.fetchrow(
        "SELECT value AS mode, updated_at, updated_by FROM runtime_settings WHERE key = 'trading_mode'")
    return None if row is None else {"mode": row["mode"], "at": fmt_epoch(row["updated_at"]), "by": row["updated_by"]}
