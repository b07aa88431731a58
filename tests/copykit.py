"""Helpers for the copy-rules and risk tests: addresses, signatures and enhanced-transaction payloads."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import base58

from actors.trades import WSOL_MINT, Trade

FEE = 5000


def pubkey(seed: str) -> str:
    return base58.b58encode(hashlib.sha256(seed.encode()).digest()).decode()


def sig(seed: str) -> str:
    return base58.b58encode(hashlib.sha512(seed.encode()).digest()).decode()


def swap_payload(signature: str, wallet: str, mint: str, side: str, lamports: int, tokens: int,
                 source: str = "PUMP_AMM") -> str:
    """A minimal enhanced transaction: `wallet` swaps SOL for `tokens` of `mint` (or back), paying the fee."""
    ata = pubkey(f"ata:{wallet}:{mint}")
    sol = -(lamports + FEE) if side == "buy" else lamports - FEE
    delta = tokens if side == "buy" else -tokens
    tx: dict[str, Any] = {
        "signature": signature, "source": source, "feePayer": wallet, "fee": FEE,
        "accountData": [
            {"account": wallet, "nativeBalanceChange": sol, "tokenBalanceChanges": []},
            {"account": ata, "nativeBalanceChange": 0, "tokenBalanceChanges": [
                {"userAccount": wallet, "tokenAccount": ata, "mint": mint,
                 "rawTokenAmount": {"tokenAmount": str(delta), "decimals": 6}}]},
        ],
    }
    return json.dumps(tx)


def trade(wallet: str, mint: str, side: str = "buy", lamports: int = 2 * 10**9, tokens: int = 4_000_000,
          quote_mint: str = WSOL_MINT, source: str | None = "PUMP_AMM", signature: str = "s") -> Trade:
    return Trade(signature, wallet, side, mint, tokens, 6, quote_mint, lamports, source)  # type: ignore[arg-type]
