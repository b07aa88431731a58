"""`walltrack demo --live`: the bot in live mode on the sandbox's LiteSVM chain, with a keypair generated in this
process and funded on that chain (never on a command line, never written anywhere), and the proof that the books
are the chain: Σ of the recorded fills against the wallet's real balances.

    "live": {"sent", "confirmed", "failed": {reason: n}, "retries", "exit_failed",
             "fills_match_chain", "sol_chain_lamports", "sol_book_lamports", "tokens": {mismatched mints}}
"""

from __future__ import annotations

import time
from collections import Counter
from decimal import Decimal
from typing import Any

import asyncpg
import structlog
from pydantic import SecretStr
from solders.keypair import Keypair

from execution.keys import secret_forms
from walltrack.logs import Redactor
from walltrack.settings import Settings

log = structlog.get_logger("demo")

LIVE_FUNDS_LAMPORTS = 25 * 10**9
# The programs the sandbox's swaps invoke (its pools move tokens with plain Token transfers, no Jupiter program):
# the live demo's LIVE_PROGRAMS allow-list.
SANDBOX_PROGRAMS = ",".join((
    "11111111111111111111111111111111", "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA",
    "TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb", "ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL",
    "ComputeBudget111111111111111111111111111111"))
# Live caps on the demo's scale (see LIVE_* in .env.example); the operator's own settings win.
DEMO_LIVE: dict[str, Any] = {
    "live_max_trade_sol": Decimal("0.5"),
    "live_max_daily_sol": Decimal("100"),
    "live_max_total_sol": Decimal("5"),
    "live_reserve_sol": Decimal("0.1"),
}
SWAPPING = ("pending_entry", "buying", "selling")


def fund(sb: Any, redactor: Redactor) -> Keypair:
    """A fresh keypair, funded on the sandbox chain; its secret goes to the log redactor at once."""
    keypair = Keypair()
    redactor.add(*secret_forms(str(keypair)))
    sb.chain.airdrop(keypair.pubkey(), LIVE_FUNDS_LAMPORTS)
    return keypair


def live_settings(settings: Settings, keypair: Keypair) -> dict[str, Any]:
    """What `bot_settings` changes for a live demo: the global mode live, the key (in memory only), the sandbox's
    programs, the demo's caps."""
    return {"trading_mode": "live", "wallet_private_key": SecretStr(str(keypair)), "wallet_keypair_path": None,
            "live_programs": SANDBOX_PROGRAMS,
            **{k: v for k, v in DEMO_LIVE.items() if k not in settings.model_fields_set}}


def drain_swaps(app: Any, timeout: float) -> None:
    """Stop pricing (no new exit decisions), then wait until no live swap is in flight or waiting to retry."""
    if app.monitor is not None:
        app.monitor.stop()
    deadline = time.monotonic() + timeout
    busy = None
    while time.monotonic() < deadline:
        busy = app.store.run(lambda c: c.fetchval(
            "SELECT count(*) FROM positions WHERE mode = 'live' AND status = ANY($1::text[])", list(SWAPPING)))
        if busy == 0:
            return
        time.sleep(0.2)
    log.warning("demo_swaps_in_flight", positions=busy)


def live_summary(app: Any, owner: str, start_lamports: int) -> dict[str, Any]:
    """The live run, from the journal and the fills, against the chain read through the RPC."""
    from execution.reconcile import chain_holdings

    async def q(conn: asyncpg.Connection) -> dict[str, Any]:
        events = await conn.fetch(
            """SELECT e.kind, e.data FROM position_events e JOIN positions p ON p.id = e.position_id
                WHERE p.mode = 'live' AND e.kind = ANY($1::text[])""",
            ["buy_intent", "sell_intent", "buy_signature", "sell_signature", "buy_failed", "sell_failed"])
        fills = await conn.fetch(
            """SELECT p.token_mint, f.side, f.token_amount, f.quote_amount, f.signature FROM fills f
                 JOIN positions p ON p.id = f.position_id WHERE p.mode = 'live'""")
        stuck = await conn.fetchval("SELECT count(*) FROM positions WHERE mode = 'live' AND status = 'exit_failed'")
        return {"events": events, "fills": fills, "exit_failed": stuck}

    d = app.store.run(q)
    rpc = app.services.rpc

    async def chain() -> tuple[int, dict[str, int]]:
        return await rpc.balance(owner), await chain_holdings(rpc, owner)

    sol_chain, tokens_chain = app.trio.submit(chain).result(30)
    sol_book, tokens_book = start_lamports, Counter[str]()
    for f in d["fills"]:
        sign = 1 if f["side"] == "sell" else -1
        sol_book += sign * int(f["quote_amount"])
        tokens_book[f["token_mint"]] -= sign * int(f["token_amount"])
    mints = {m for m, n in tokens_chain.items() if n} | {m for m, n in tokens_book.items() if n}
    mismatched = {m: {"book": tokens_book.get(m, 0), "chain": tokens_chain.get(m, 0)}
                  for m in sorted(mints) if tokens_book.get(m, 0) != tokens_chain.get(m, 0)}
    kinds = Counter(e["kind"] for e in d["events"])
    failed = Counter(e["data"]["reason"] for e in d["events"] if e["kind"] in ("buy_failed", "sell_failed"))
    retries = sum(1 for e in d["events"] if e["kind"].endswith("_intent")
                  and (int(e["data"]["attempt"]) > 1 or int(e["data"].get("exit_round") or 0) > 0))
    return {
        "wallet": owner,
        "sent": kinds["buy_signature"] + kinds["sell_signature"],
        "confirmed": sum(1 for f in d["fills"] if f["signature"] and int(f["token_amount"]) > 0),
        "failed": dict(failed.most_common()),
        "retries": retries,
        "exit_failed": int(d["exit_failed"]),
        "fills_match_chain": sol_book == sol_chain and not mismatched,
        "sol_chain_lamports": sol_chain,
        "sol_book_lamports": sol_book,
        "tokens_mismatched": mismatched,
    }
