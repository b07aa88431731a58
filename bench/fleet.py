"""A fleet for scale runs (bench/run.py, tests/test_scale.py): watched wallets and open positions written in bulk
with COPY, and enhanced Helius transactions of those wallets in the real wire shape (buys, sells, transfers)."""

from __future__ import annotations

import json
import random
import time
from typing import Any

import asyncpg
import base58

from actors.ports import ExitPlan
from actors.trades import WSOL_MINT

ENTRY_QUOTE = 100_000_000  # 0.1 SOL a position
ENTRY_TOKENS = 1_000_000_000  # 1,000 tokens of 6 decimals: 0.0001 SOL a token
DECIMALS = 6


def b58(n: int, rng: random.Random) -> str:
    return base58.b58encode(bytes(rng.getrandbits(8) for _ in range(n))).decode()


def entry_usd(sol_usd: float) -> float:
    """The USD price of a whole token at the fleet's entry price."""
    return ENTRY_QUOTE / 10**9 / (ENTRY_TOKENS / 10**DECIMALS) * sol_usd


async def seed_wallets(conn: asyncpg.Connection, wallets: list[str]) -> None:
    await conn.copy_records_to_table("wallets", records=[(w, f"fleet-{i}") for i, w in enumerate(wallets)],
                                     columns=["address", "label"])


async def seed_positions(conn: asyncpg.Connection, n: int, wallets: list[str], mints: list[str], rng: random.Random,
                         opened_at: float | None = None, tokens: dict[str, int] | None = None) -> list[int]:
    """`n` open paper positions (entry filled, the default exit plan), spread over `wallets` and `mints`, each with
    its signal and journal (`opened`, `entry_filled`). `tokens`: the raw tokens 0.1 SOL bought, per mint (default
    ENTRY_TOKENS). Returns their ids."""
    at = time.time() if opened_at is None else opened_at
    base = int(await conn.fetchval("SELECT coalesce(max(id), 0) FROM signals")) + 1
    pbase = int(await conn.fetchval("SELECT coalesce(max(id), 0) FROM positions")) + 1
    signals, positions, events = [], [], []
    plan = ExitPlan().as_json()
    for i in range(n):
        sid, pid, w, mint = base + i, pbase + i, wallets[i % len(wallets)], mints[i % len(mints)]
        got = (tokens or {}).get(mint, ENTRY_TOKENS)
        sig = b58(64, rng)
        signals.append((sid, sig, w, "buy", mint, got * 10, DECIMALS, WSOL_MINT, ENTRY_QUOTE * 10, "RAYDIUM",
                        "taken", "copy_buy"))
        positions.append((pid, sid, w, mint, DECIMALS, WSOL_MINT, "paper", "open", ENTRY_QUOTE, got, got))
        opened = {"wallet": w, "signature": sig, "signal_id": sid, "token_mint": mint, "token_decimals": DECIMALS,
                  "quote_mint": WSOL_MINT, "mode": "paper", "entry_quote_amount": str(ENTRY_QUOTE),
                  "entry_token_amount": str(got), "price_basis": "leader_effective_price", "entry": "pending",
                  "leader_token_amount": str(got * 10)}
        fill = {"side": "buy", "token_amount": str(got), "quote_amount": str(ENTRY_QUOTE),
                "quoted_out": str(got), "fee_quote": "5000", "slippage_quote": "0", "price_impact": "0.001",
                "route": "fleet", "at": at}
        events.append((pid, 1, "opened", json.dumps(opened)))
        events.append((pid, 2, "entry_filled", json.dumps({"fill": fill, "plan": plan, "at": at})))
    await conn.copy_records_to_table("signals", records=signals, columns=[
        "id", "signature", "wallet", "side", "token_mint", "token_amount", "token_decimals", "quote_mint", "quote_amount",
        "source", "decision", "reason"])
    await conn.copy_records_to_table("positions", records=positions, columns=[
        "id", "signal_id", "wallet", "token_mint", "token_decimals", "quote_mint", "mode", "status", "entry_quote_amount",
        "entry_token_amount", "token_amount_open"])
    await conn.copy_records_to_table("position_events", records=events, columns=["position_id", "seq", "kind", "data"])
    await conn.execute("SELECT setval('signals_id_seq', (SELECT max(id) FROM signals))")
    await conn.execute("SELECT setval('positions_id_seq', (SELECT max(id) FROM positions))")
    return [p[0] for p in positions]


def tx(kind: str, wallet: str, mint: str, rng: random.Random, sol: int = 200_000_000, tokens: int = 10**9) -> dict[str, Any]:
    """An enhanced transaction of `wallet`: a "buy" of `mint` for SOL, a "sell" of it, or a SOL "transfer" (no trade)."""
    sig, ata, other = b58(64, rng), b58(32, rng), b58(32, rng)
    fee = 5000
    rows: list[dict[str, Any]]
    if kind == "transfer":
        rows = [{"account": wallet, "nativeBalanceChange": -sol - fee, "tokenBalanceChanges": []},
                {"account": other, "nativeBalanceChange": sol, "tokenBalanceChanges": []}]
        native = [{"fromUserAccount": wallet, "toUserAccount": other, "amount": sol}]
    else:
        sign = 1 if kind == "buy" else -1
        rows = [{"account": wallet, "nativeBalanceChange": -sign * sol - fee, "tokenBalanceChanges": []},
                {"account": ata, "nativeBalanceChange": 0, "tokenBalanceChanges": [
                    {"userAccount": wallet, "tokenAccount": ata, "mint": mint,
                     "rawTokenAmount": {"tokenAmount": str(sign * tokens), "decimals": DECIMALS}}]}]
        native = []
    return {"signature": sig, "type": "SWAP" if kind != "transfer" else "TRANSFER", "source": "RAYDIUM", "fee": fee,
            "feePayer": wallet, "slot": 1, "timestamp": int(time.time()), "description": "", "events": {},
            "tokenTransfers": [], "nativeTransfers": native, "accountData": rows}
