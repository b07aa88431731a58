"""Units and formatting shared by the panel's read models: raw integer amounts to whole units (floats, for
display only), quote symbols, short addresses, timestamps."""

from __future__ import annotations

from datetime import datetime, timezone
from fractions import Fraction
from typing import Any

import asyncpg

from actors.trades import STABLE_MINTS, WSOL_MINT

QUOTE_DECIMALS = {WSOL_MINT: 9, **{m: 6 for m in STABLE_MINTS}}
QUOTE_SYMBOL = {WSOL_MINT: "SOL", **{m: "USD" for m in STABLE_MINTS}}


def quote_decimals(mint: str) -> int:
    return QUOTE_DECIMALS.get(mint, 9)


def quote_symbol(mint: str) -> str:
    return QUOTE_SYMBOL.get(mint, mint[:4])


def whole(raw: Any, decimals: int) -> float:
    return int(raw) / 10**decimals if raw is not None else 0.0  # int / int: correctly rounded, like float(Fraction)


def quote_amount(raw: Any, quote_mint: str) -> str:
    """A raw quote amount as "<whole> <symbol>", four significant digits."""
    return f"{whole(raw, quote_decimals(quote_mint)):.4g} {quote_symbol(quote_mint)}"


def raw_price_to_whole(p: Fraction | None, token_decimals: int, quote_mint: str) -> float | None:
    """Raw quote units per raw token -> whole quote units per whole token."""
    if p is None:
        return None
    return float(p * 10**token_decimals / 10 ** quote_decimals(quote_mint))


def unit_price(quote_raw: Any, token_raw: Any, token_decimals: int, quote_mint: str) -> float:
    """What a trade of `token_raw` tokens for `quote_raw` quote units paid per whole token, in whole quote units."""
    return float(raw_price_to_whole(Fraction(int(quote_raw), int(token_raw)), token_decimals, quote_mint))


def epoch(v: datetime | float | None) -> float | None:
    if v is None:
        return None
    return v.timestamp() if isinstance(v, datetime) else float(v)


def fmt_epoch(v: Any) -> str:
    t = epoch(v)
    if t is None:
        return ""
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def utc(v: datetime, fmt: str) -> str:
    return v.astimezone(timezone.utc).strftime(fmt)


def short(addr: str | None, n: int = 4) -> str:
    if not addr:
        return ""
    return addr if len(addr) <= 2 * n + 1 else f"{addr[:n]}…{addr[-n:]}"


async def has_column(conn: asyncpg.Connection, table: str, column: str) -> bool:
    return bool(await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_name = $1 AND column_name = $2)",
        table, column))


async def labels(conn: asyncpg.Connection) -> dict[str, str | None]:
    return {r["address"]: r["label"] for r in await conn.fetch("SELECT address, label FROM wallets")}
