"""The sandbox's DexScreener: `GET /tokens/v1/{chainId}/{addresses}` in the real wire format
(shared/API-FORMATS.md §3), built from the simulated market's tokens and pools. Mount at `/dexscreener`;
clients use `http://127.0.0.1:PORT/dexscreener` where they would use `https://api.dexscreener.com`.

The answer is a bare array of Pair objects: one pair per sandbox token (its pool), and, when a quote
asset (WSOL, USDC) is asked for, the pairs where it is the *quote* token — as the real API does, so
clients must filter on `baseToken.address`. Tokens in `faults.missing` and unknown addresses are omitted.

Not modelled: `txns` and `volume` are zero (the market does not keep a trade tape); `boosts` is absent.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from quart import Blueprint, Response

from sandbox.faults import Faults
from sandbox.jupiter import PriceHistory
from sandbox.market import USDC_MINT, WSOL_MINT, Market, SimToken
from sandbox.server import faulty

MAX_ADDRESSES = 30

_QUOTE_TOKENS = {
    WSOL_MINT: {"address": WSOL_MINT, "name": "Wrapped SOL", "symbol": "SOL"},
    USDC_MINT: {"address": USDC_MINT, "name": "USD Coin", "symbol": "USDC"},
}
_LABELS: dict[str, list[str] | None] = {"raydium": ["CPMM"], "meteora": ["DLMM"], "pumpswap": None}
_WINDOWS = (("m5", 300), ("h1", 3600), ("h6", 6 * 3600), ("h24", 24 * 3600))


def _num(x: float, digits: int = 6) -> str:
    """A decimal string without exponent, `digits` significant digits (DexScreener's price strings)."""
    if x == 0:
        return "0"
    return format(Decimal(f"{x:.{digits}g}"), "f")


def pair(market: Market, history: PriceHistory, t: SimToken) -> dict[str, Any]:
    """The Pair object for a token's pool. Call under `market.lock`."""
    p = t.pool
    price_native = t.price_quote()
    price_usd = market.price_usd(t.mint) or 0.0
    history.observe(t.mint, price_usd)
    changes = {}
    for key, window in _WINDOWS:
        c = history.change_pct(t.mint, window, price_usd)
        if c is not None:
            changes[key] = round(c, 2)
    supply_ui = t.supply / 10**t.decimals
    fdv = round(price_usd * supply_ui, 2)
    slug = t.symbol.lower()
    return {
        "chainId": "solana",
        "dexId": p.dex,
        "url": f"https://dexscreener.com/solana/{p.address.lower()}",
        "pairAddress": p.address,
        "labels": _LABELS.get(p.dex),
        "baseToken": {"address": t.mint, "name": t.name, "symbol": t.symbol},
        "quoteToken": dict(_QUOTE_TOKENS[t.quote_mint]),
        "priceNative": _num(price_native),
        "priceUsd": _num(price_usd),
        "txns": {w: {"buys": 0, "sells": 0} for w, _ in _WINDOWS},
        "volume": {"h24": 0, "h6": 0, "h1": 0, "m5": 0},
        "priceChange": changes,
        "liquidity": {
            "usd": round(market.liquidity_usd(t.mint), 2),
            "base": round(p.base_reserve / 10**t.decimals, 2),
            "quote": round(p.quote_reserve / 10**t.quote_decimals, 5),
        },
        "fdv": fdv,
        "marketCap": fdv,
        "pairCreatedAt": int(p.created_at * 1000),
        "info": {
            "imageUrl": f"https://sandbox.invalid/tokens/{t.mint}.png",
            "header": f"https://sandbox.invalid/tokens/{t.mint}/header.png",
            "openGraph": f"https://sandbox.invalid/og/{t.mint}",
            "websites": [{"label": "Website", "url": f"https://{slug}.sandbox.invalid/"}],
            "socials": [{"type": "twitter", "url": f"https://x.com/{slug}_sandbox"}],
        },
    }


def blueprint(market: Market, faults: Faults, history: PriceHistory | None = None) -> Blueprint:
    """The DexScreener blueprint, wrapped with the service's faults. Mount at `/dexscreener`."""
    bp = Blueprint("dexscreener", __name__)
    hist = history or PriceHistory(market)

    @bp.get("/tokens/v1/<chain_id>/<addresses>")
    async def tokens(chain_id: str, addresses: str) -> Response:
        ids = list(dict.fromkeys(a.strip() for a in addresses.split(",") if a.strip()))
        if len(ids) > MAX_ADDRESSES:
            return Response(json.dumps({"error": f"at most {MAX_ADDRESSES} token addresses per request"}),
                            status=400, mimetype="application/json")
        pairs: dict[str, dict[str, Any]] = {}
        if chain_id == "solana":
            with market.lock:
                for address in ids:
                    if address in faults.missing:
                        continue
                    if address in market.tokens:
                        tokens_ = [market.tokens[address]]
                    elif address in _QUOTE_TOKENS:  # a quote asset: the pools it quotes
                        tokens_ = [t for t in market.tokens.values() if t.quote_mint == address]
                    else:
                        tokens_ = []
                    for t in tokens_:
                        if t.mint not in faults.missing and t.pool.address not in pairs:
                            pairs[t.pool.address] = pair(market, hist, t)
        return Response(json.dumps(list(pairs.values())), mimetype="application/json")

    return faulty(bp, faults)


__all__ = ["MAX_ADDRESSES", "blueprint", "pair"]
