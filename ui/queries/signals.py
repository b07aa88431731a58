"""The signal log's read model: a page of it (search, decision filter), a row as shown, a stored safety verdict's
checks."""

from __future__ import annotations

from typing import Any

import asyncpg

from ui.queries.units import labels as wallet_labels
from ui.queries.units import quote_amount, short, utc

_WHERE = """($1::text IS NULL OR s.wallet ILIKE $1 OR s.token_mint ILIKE $1 OR s.reason ILIKE $1
             OR s.signature ILIKE $1 OR w.label ILIKE $1)
            AND ($2::text IS NULL OR s.decision = $2)"""


def signal_row(r: Any, label: str | None, at: str) -> dict[str, Any]:
    return {"id": r["id"], "at": at, "wallet": label or short(r["wallet"]), "side": r["side"],
            "token": short(r["token_mint"]), "decision": r["decision"], "reason": r["reason"],
            "size": quote_amount(r["quote_amount"], r["quote_mint"])}


async def signals_page(conn: asyncpg.Connection, search: str, decision: str | None, offset: int, limit: int) -> dict[str, Any]:
    """A page of the signal log, newest first. `search` matches wallet, label, token, reason or signature."""
    labels = await wallet_labels(conn)
    pattern = f"%{search.strip()}%" if search.strip() else None
    total = await conn.fetchval(f"SELECT count(*) FROM signals s LEFT JOIN wallets w ON w.address = s.wallet WHERE {_WHERE}",
                                pattern, decision)
    rows = await conn.fetch(
        f"""SELECT s.id, s.created_at, s.signature, s.wallet, s.side, s.token_mint, s.decision, s.reason,
                   s.quote_mint, s.quote_amount, s.token_amount, s.token_decimals, s.safety
              FROM signals s LEFT JOIN wallets w ON w.address = s.wallet WHERE {_WHERE}
             ORDER BY s.id DESC OFFSET $3 LIMIT $4""", pattern, decision, offset, limit)
    return {"total": int(total), "rows": [_page_row(r, labels) for r in rows]}


def _page_row(r: asyncpg.Record, labels: dict[str, str | None]) -> dict[str, Any]:
    safety = r["safety"] if isinstance(r["safety"], dict) else None
    return {
        "id": r["id"], "at": utc(r["created_at"], "%Y-%m-%d %H:%M:%S"),
        "signature": r["signature"], "sig_short": short(r["signature"], 6),
        "wallet": r["wallet"], "wallet_label": labels.get(r["wallet"]) or short(r["wallet"]),
        "side": r["side"], "token": r["token_mint"], "token_short": short(r["token_mint"]),
        "decision": r["decision"], "reason": r["reason"], "size": quote_amount(r["quote_amount"], r["quote_mint"]),
        "score": safety.get("score") if safety else None,
        "safety": safety,
    }


def safety_checks(safety: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The checks of a stored verdict (`intelligence.safety.SafetyReport.as_json`) as rows: name, result, reason."""
    if not safety:
        return []
    out = []
    for c in safety.get("checks") or []:
        if not isinstance(c, dict):
            continue
        passed = c.get("passed")
        result = "pass" if passed is True else ("fail" if passed is False else "unverified")
        out.append({"check": str(c.get("name", "?")), "result": result + (" (hard)" if c.get("hard") else ""),
                    "value": "" if c.get("score") is None else f"score {c['score']}", "reason": str(c.get("reason") or "")})
    return out
