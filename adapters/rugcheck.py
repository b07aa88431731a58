"""RugCheck's report summary (`/v1/tokens/{mint}/report/summary`). Its score's direction is undocumented,
so only `risks[].level == "danger"` counts (shared/API-FORMATS.md §4)."""

from __future__ import annotations

from typing import Any

from adapters.facts import RugcheckFacts
from adapters.http import RequestRejected, ResilientClient


class RugCheck:
    def __init__(self, client: ResilientClient) -> None:
        self._client = client

    async def summary(self, mint: str) -> RugcheckFacts | None:
        try:
            return await self._client.get(f"/v1/tokens/{mint}/report/summary", parse=_facts)
        except RequestRejected as exc:
            if getattr(exc, "status", None) == 404:
                return None  # RugCheck does not know the token
            raise


def _facts(body: Any) -> RugcheckFacts:
    risks = body["risks"] or []
    dangers = tuple(str(r["name"]) for r in risks if isinstance(r, dict) and r.get("level") == "danger")
    norm = body.get("score_normalised")
    return RugcheckFacts(dangers=dangers, score_normalised=float(norm) if isinstance(norm, (int, float)) else None)
