"""The market repository: the latest safety verdict and price per token."""

from __future__ import annotations

from typing import Any

import asyncpg


async def save_safety(conn: asyncpg.Connection, report: dict[str, Any]) -> None:
    await conn.execute(
        """INSERT INTO token_safety (mint, score, passed, reason, checks, checked_at)
           VALUES ($1, $2, $3, $4, $5, now())
           ON CONFLICT (mint) DO UPDATE SET score = EXCLUDED.score, passed = EXCLUDED.passed,
                  reason = EXCLUDED.reason, checks = EXCLUDED.checks, checked_at = now()""",
        report["mint"], report["score"], report["passed"], report["reason"], report["checks"],
    )



async def save_prices(conn: asyncpg.Connection, rows: list[tuple[str, Any, str | None, bool]]) -> None:
    await conn.executemany(
        """INSERT INTO token_prices (mint, usd, source, stale, priced_at) VALUES ($1, $2, $3, $4, now())
           ON CONFLICT (mint) DO UPDATE SET usd = coalesce(EXCLUDED.usd, token_prices.usd),
                  source = EXCLUDED.source, stale = EXCLUDED.stale, priced_at = now()""",
        rows,
    )
