"""Rows as JSON-ready dicts, for the CLI's `--json` and the panel."""

from __future__ import annotations

from typing import Any

import asyncpg


def jsonable(row: asyncpg.Record) -> dict[str, Any]:
    from datetime import datetime
    from decimal import Decimal

    out: dict[str, Any] = {}
    for k, v in row.items():
        if isinstance(v, datetime):
            v = v.isoformat()
        elif isinstance(v, Decimal):
            v = format(v, "f")  # raw integer amounts stay exact, as plain digit strings
        out[k] = v
    return out
