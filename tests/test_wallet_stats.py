"""`walltrack wallets stats`: per-wallet performance since watching began, on a real database."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg

from tests.copykit import pubkey, sig
from storage import repo
from storage.db import migrate

SOL_MINT = "So11111111111111111111111111111111111111112"
W, NEW = pubkey("stats-leader"), pubkey("stats-new")


def run(url: str, fn: Any) -> Any:
    async def go() -> Any:
        conn = await asyncpg.connect(url)
        try:
            await repo.init_connection(conn)
            await migrate(conn)
            return await fn(conn)
        finally:
            await conn.close()

    return asyncio.run(go())


async def seed(conn: asyncpg.Connection) -> None:
    await repo.add_wallet(conn, W, "leader")
    await repo.add_wallet(conn, NEW, "new")
    await conn.execute("UPDATE wallets SET added_at = now() - interval '1 day' WHERE address = $1", W)
    n = 0

    async def position(mode: str, decision: str, pnl: int | None, held_s: int, token: str = "t", open_tokens: int = 0) -> None:
        nonlocal n
        n += 1
        sid = await conn.fetchval(
            """INSERT INTO signals (signature, wallet, side, token_mint, token_amount, token_decimals, quote_mint,
                                    quote_amount, decision, reason)
               VALUES ($1, $2, 'buy', $3, 1000000, 6, $4, 100000000, $5, 'r') RETURNING id""",
            sig(f"stats{n}"), W, pubkey(token), SOL_MINT, decision)
        await conn.execute(
            """INSERT INTO positions (signal_id, wallet, token_mint, token_decimals, quote_mint, mode, status,
                                      entry_quote_amount, entry_token_amount, token_amount_open, realized_pnl_quote,
                                      opened_at, closed_at)
               VALUES ($1, $2, $3, 6, $4, $5, $6, 100000000, 1000000, $7, $8,
                       now() - make_interval(secs => $9), CASE WHEN $8::numeric IS NULL THEN NULL ELSE now() END)""",
            sid, W, pubkey(token), SOL_MINT, mode, "open" if pnl is None else "closed", open_tokens, pnl, held_s)

    await position("paper", "taken", 50_000_000, 600)
    await position("paper", "taken", -20_000_000, 1200)
    await position("shadow", "skipped", 10_000_000, 300)
    await position("paper", "taken", None, 60, token="held", open_tokens=1_000_000)
    await position("paper", "taken", -90_000_000, 3 * 86_400, token="before")  # opened before watching began: not counted
    await conn.execute("INSERT INTO token_prices (mint, usd) VALUES ($1, 30), ($2, 150)", pubkey("held"), SOL_MINT)


def test_stats_per_wallet(db_url: str) -> None:
    run(db_url, seed)
    rows = {r["address"]: r for r in run(db_url, lambda c: repo.wallet_stats(c, min_trades=3))}
    w = rows[W]
    assert (w["state"], w["closed"], w["positions"], w["copied"]) == ("measured", 3, 4, 3)
    assert (w["signals_taken"], w["signals_skipped"]) == (4, 1)  # signals are dated by their recording
    assert w["win_rate"] == round(2 / 3, 4)
    assert w["realized_pnl_sol"] == 0.04 and w["copied_realized_pnl_sol"] == 0.03
    assert w["unrealized_pnl_sol"] == 0.1  # 1 token at $30 = 0.2 SOL, bought for 0.1 SOL
    assert 690 <= w["avg_hold_s"] <= 720
    assert rows[NEW]["state"] == "unmeasured" and rows[NEW]["win_rate"] is None and rows[NEW]["unrealized_pnl_sol"] == 0.0
    fewer = {r["address"]: r for r in run(db_url, lambda c: repo.wallet_stats(c, min_trades=4))}
    assert fewer[W]["state"] == "unmeasured"
