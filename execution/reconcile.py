"""The book against the chain, for the live wallet: at start-up (shown to the operator, never fixed silently), for
`walltrack wallet`, and for the demo's `fills_match_chain`.

At start, in live mode, the open live positions (tokens per mint, from their journals' projection) are compared
with the wallet's token accounts under both token programs (`getTokenAccountsByOwner`):

- `tokens_gone`: positions hold a mint the wallet no longer has (sold or moved outside the bot);
- `amount_mismatch`: the wallet holds a different amount than the positions say;
- `untracked_tokens`: the wallet holds a token no position accounts for (bought outside the bot, or dust).

Mints with a live buy still in flight are left out (their tokens may be arriving). Each finding is one warning
line (`live_reconcile_finding`), a row in `live_reconcile` (the dashboard's alert), and part of `/health`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import asyncpg
import structlog

from adapters.solana_rpc import SolanaRpc

log = structlog.get_logger("reconcile")

HOLDING = ("open", "partially_closed", "selling", "exit_failed")


@dataclass(frozen=True)
class Finding:
    kind: str
    mint: str | None
    position_ids: tuple[int, ...] = ()
    book_amount: int | None = None
    chain_amount: int | None = None
    detail: str = ""

    def as_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "mint": self.mint, "position_ids": list(self.position_ids),
                "book_amount": self.book_amount, "chain_amount": self.chain_amount, "detail": self.detail}


async def chain_holdings(rpc: SolanaRpc, owner: str) -> dict[str, int]:
    """The owner's raw token amount per mint, over all its token accounts under both token programs."""
    out: dict[str, int] = {}
    for h in await rpc.token_accounts(owner):
        out[h.mint] = out.get(h.mint, 0) + h.amount
    return out


async def book(conn: asyncpg.Connection) -> tuple[dict[str, tuple[int, tuple[int, ...]]], set[str]]:
    """Open live positions: mint -> (tokens they hold, their ids); and the mints of live buys still in flight."""
    rows = await conn.fetch(
        """SELECT token_mint, status, token_amount_open, id FROM positions
            WHERE mode = 'live' AND closed_at IS NULL ORDER BY id""")
    held: dict[str, tuple[int, tuple[int, ...]]] = {}
    buying: set[str] = set()
    for r in rows:
        if r["status"] in HOLDING:
            amount, ids = held.get(r["token_mint"], (0, ()))
            held[r["token_mint"]] = (amount + int(r["token_amount_open"]), (*ids, int(r["id"])))
        else:
            buying.add(r["token_mint"])
    return held, buying


def compare(held: dict[str, tuple[int, tuple[int, ...]]], chain: dict[str, int], in_flight: set[str]) -> list[Finding]:
    out: list[Finding] = []
    for mint, (amount, ids) in sorted(held.items()):
        if mint in in_flight:
            continue
        have = chain.get(mint, 0)
        if amount > 0 and have == 0:
            out.append(Finding("tokens_gone", mint, ids, amount, 0, f"positions {list(ids)} hold {amount}; the wallet none"))
        elif have != amount:
            out.append(Finding("amount_mismatch", mint, ids, amount, have,
                               f"positions {list(ids)} hold {amount}; the wallet {have}"))
    for mint, have in sorted(chain.items()):
        if have > 0 and mint not in held and mint not in in_flight:
            out.append(Finding("untracked_tokens", mint, (), 0, have, f"the wallet holds {have} no position accounts for"))
    return out


async def save(conn: asyncpg.Connection, wallet: str, findings: list[Finding]) -> datetime:
    at = datetime.now(timezone.utc)
    rows = [(at, wallet, f.kind, f.mint, list(f.position_ids), f.book_amount, f.chain_amount, f.detail) for f in findings] \
        or [(at, wallet, "clean", None, [], None, None, "the book matches the chain")]
    await conn.executemany(
        """INSERT INTO live_reconcile (run_at, wallet, kind, mint, position_ids, book_amount, chain_amount, detail)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8)""", rows)
    return at


async def latest(conn: asyncpg.Connection) -> dict[str, Any] | None:
    """The last run: {"at", "wallet", "findings": [...]} (no findings: clean), or None when none ran."""
    rows = await conn.fetch(
        """SELECT run_at, wallet, kind, mint, position_ids, book_amount, chain_amount, detail FROM live_reconcile
            WHERE run_at = (SELECT max(run_at) FROM live_reconcile) ORDER BY id""")
    if not rows:
        return None
    findings = [{"kind": r["kind"], "mint": r["mint"], "position_ids": list(r["position_ids"]),
                 "book_amount": None if r["book_amount"] is None else int(r["book_amount"]),
                 "chain_amount": None if r["chain_amount"] is None else int(r["chain_amount"]), "detail": r["detail"]}
                for r in rows if r["kind"] != "clean"]
    return {"at": rows[0]["run_at"].isoformat(), "wallet": rows[0]["wallet"], "findings": findings}


def log_findings(wallet: str, findings: list[Finding]) -> None:
    for f in findings:
        log.warning("live_reconcile_finding", wallet=wallet, **f.as_json())
    log.info("live_reconcile", wallet=wallet, findings=len(findings), clean=not findings)


async def wallet_view(rpc: SolanaRpc, owner: str) -> dict[str, Any]:
    """`walltrack wallet`: the address, its SOL and its token accounts (both token programs), from the chain."""
    lamports = await rpc.balance(owner)
    tokens = [{"mint": h.mint, "amount": str(h.amount), "decimals": h.decimals,
               "ui_amount": _ui(h.amount, h.decimals), "account": h.account,
               "program": "token-2022" if h.program.startswith("Tokenz") else "token"}
              for h in sorted(await rpc.token_accounts(owner), key=lambda h: (h.mint, h.account))]
    return {"address": owner, "sol_lamports": lamports, "sol": _ui(lamports, 9), "tokens": tokens}


def _ui(amount: int, decimals: int) -> str:
    digits = str(amount).rjust(decimals + 1, "0")
    whole, frac = (digits[:-decimals], digits[-decimals:].rstrip("0")) if decimals else (digits, "")
    return f"{whole}.{frac}" if frac else whole
