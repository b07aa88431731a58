"""The sandbox's RugCheck: `GET /v1/tokens/{mint}/report/summary` in the real summary format
(shared/fixtures/rugcheck_summary.json), with risks derived from the market's hazards."""

from __future__ import annotations

import json

from quart import Blueprint, Response

from sandbox.faults import Faults
from sandbox.market import Market, SimToken
from sandbox.server import faulty

TOKEN_2022 = "TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb"
TOKEN = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA"


def risks(market: Market, t: SimToken) -> list[dict]:
    hz, out = t.hazards, []

    def risk(name: str, description: str, score: int, level: str, value: str = "") -> None:
        out.append({"name": name, "value": value, "description": description, "score": score, "level": level})

    if hz.freeze_authority:
        risk("Freeze Authority still enabled", "Tokens can be frozen and prevented from trading in the future", 7500, "danger")
    if hz.mint_authority:
        risk("Mint Authority still enabled", "More tokens can be minted by the owner", 2500, "danger")
    if hz.permanent_delegate:
        risk("Permanent Delegate", "The permanent delegate can transfer or burn any holder's tokens", 7500, "danger")
    if hz.transfer_fee_bps:
        risk("Transfer fee", "A fee is taken on every transfer", 500, "warn", f"{hz.transfer_fee_bps / 100:g}%")
    if hz.concentrated:
        risk("Top 10 holders high ownership", "The top 10 users hold more than 70% token supply", 2000, "danger")
    liq = market.liquidity_usd(t.mint)
    if liq < 1_000:
        risk("Low Liquidity", "Low amount of liquidity in the token pool", 1990, "danger", f"${liq:,.2f}")
    if t.rugged:
        risk("Large Amount of LP Unlocked", "A large amount of LP tokens are unlocked, allowing the owner to remove liquidity", 4000, "danger")
    risk("Mutable metadata", "Token metadata can be changed by the owner", 100, "warn")
    return out


def blueprint(market: Market, faults: Faults) -> Blueprint:
    bp = Blueprint("rugcheck", __name__)

    @bp.get("/v1/tokens/<mint>/report/summary")
    async def summary(mint: str) -> Response:
        with market.lock:
            t = market.tokens.get(mint)
            if t is None:
                return Response(json.dumps({"error": "not found"}), status=404, mimetype="application/json")
            found = risks(market, t)
            program = TOKEN_2022 if t.hazards.token2022 else TOKEN
        score = 1 + sum(r["score"] for r in found)
        body = {"tokenProgram": program, "tokenType": "", "risks": found, "score": score,
                "score_normalised": min(100, score // 100), "lpLockedPct": 0 if t.rugged else 100}
        return Response(json.dumps(body), mimetype="application/json")

    return faulty(bp, faults)
