"""The sandbox's Jupiter: Price v3, Quote and Swap v1 in the real wire formats (shared/API-FORMATS.md §2),
served from the simulated market. Mount it at `/jupiter`; clients use `http://127.0.0.1:PORT/jupiter` as
their Jupiter base URL, exactly where they would use `https://api.jup.ag`.

    GET  /price/v3?ids=a,b          ≤ 50 ids; object keyed by mint; unknown mints and `faults.missing` omitted
    GET  /swap/v1/quote             ExactIn through the token's pool (SOL↔a USDC-quoted token: two steps, through
                                    the SOL/USDC pool); no route → 400 COULD_NOT_FIND_ANY_ROUTE
    POST /swap/v1/swap              {quoteResponse, userPublicKey, wrapAndUnwrapSol, dynamicComputeUnitLimit,
                                    prioritizationFeeLamports | computeUnitPriceMicroLamports} → a v0
                                    VersionedTransaction (base64) over the sandbox chain, signed by the route's
                                    pools, the user's signature to add (sandbox/swaps.py says what it contains)

`/swap` needs the chain the RPC serves (`blueprint(..., chain=chain)`): its blockhash and
`lastValidBlockHeight` are that chain's, and the chain executes what it builds. Without one it builds over
a chain of its own (only good for decoding and signing checks).

Not modelled: ExactOut, platform fees, `mostReliableAmmsQuoteReport`, `destinationTokenAccount`,
`nativeDestinationAccount`, `feeAccount`, `payer`, `jitoTipLamportsWithPayer` and `asLegacyTransaction` (each
refused with 400 INVALID_REQUEST rather than ignored). `priceImpactPct` is served as a fraction in a string
("0.0123" = 1.23 %), as integrators read Jupiter's.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from datetime import datetime, timezone
from typing import Any

from quart import Blueprint, Response, request

from sandbox.chain import Chain
from sandbox.faults import Faults
from sandbox.market import USDC_MINT, WSOL_MINT, Market
from sandbox.server import faulty
from sandbox.swaps import UNSUPPORTED, NoRoute, Priority, SwapBuilder, parse_priority

MAX_PRICE_IDS = 50

# How Jupiter labels each sandbox dex in `routePlan[].swapInfo.label`.
DEX_LABELS = {"raydium": "Raydium", "pumpswap": "Pump.fun Amm", "meteora": "Meteora DLMM", "whirlpool": "Whirlpool"}

# Quote assets are not pool tokens in the sandbox: fixed metadata, as Price v3 would report them.
_BASE_ASSETS = {
    WSOL_MINT: {"decimals": 9, "createdAt": "2024-06-05T08:55:25.527Z", "liquidity": 621_679_197.67},
    USDC_MINT: {"decimals": 6, "createdAt": "2024-06-05T08:55:25.527Z", "liquidity": 522_175_174.66},
}


class PriceHistory:
    """Prices sampled (on simulated time) whenever a sandbox service reads them, to report changes over
    windows (Price v3 `priceChange24h`, DexScreener `priceChange`). The market keeps no history itself."""

    def __init__(self, market: Market, keep_s: float = 25 * 3600, every_s: float = 10.0) -> None:
        self.market = market
        self.keep_s = keep_s
        self.every_s = every_s
        self._samples: dict[str, list[tuple[float, float]]] = {}
        self._lock = threading.Lock()
        with market.lock:
            for mint in market.tokens:
                price = market.price_usd(mint)
                if price is not None:
                    self.observe(mint, price)

    def observe(self, mint: str, price: float) -> None:
        now = self.market.now
        with self._lock:
            samples = self._samples.setdefault(mint, [])
            if not samples or now - samples[-1][0] >= self.every_s:
                samples.append((now, price))
            while samples and samples[0][0] < now - self.keep_s:
                samples.pop(0)

    def change_pct(self, mint: str, window_s: float, price: float) -> float | None:
        """Percent change from the oldest sample within the window (None with no sample)."""
        now = self.market.now
        with self._lock:
            base = next((p for t, p in self._samples.get(mint, []) if t >= now - window_s), None)
        if base is None or base <= 0:
            return None
        return (price / base - 1) * 100


def _iso_ms(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(ts * 1000) % 1000:03d}Z"


def _json(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body), status=status, mimetype="application/json")


def _error(message: str, code: str, status: int = 400) -> Response:
    return _json({"error": message, "errorCode": code}, status)


def price_entry(market: Market, history: PriceHistory, mint: str) -> dict[str, Any] | None:
    """One Price v3 entry, or None when the market has no price for the mint. Call under `market.lock`."""
    price = market.price_usd(mint)
    if price is None or price <= 0:
        return None
    history.observe(mint, price)
    change = history.change_pct(mint, 24 * 3600, price)
    token = market.tokens.get(mint)
    if token is not None:
        decimals, created, liquidity = token.decimals, _iso_ms(token.pool.created_at), round(market.liquidity_usd(mint), 2)
    else:
        meta = _BASE_ASSETS[mint]
        decimals, created, liquidity = meta["decimals"], meta["createdAt"], meta["liquidity"]
    return {
        "createdAt": created,
        "liquidity": liquidity,
        "usdPrice": price,
        "blockId": market.slot,
        "decimals": decimals,
        "priceChange24h": round(change, 4) if change is not None else None,
    }


def _valid_pubkey(value: Any) -> bool:
    from solders.pubkey import Pubkey

    if not isinstance(value, str) or not 32 <= len(value) <= 44:
        return False
    try:
        Pubkey.from_string(value)
    except ValueError:
        return False
    return True


_QUOTE_FIELDS = ("inputMint", "inAmount", "outputMint", "outAmount", "otherAmountThreshold", "swapMode",
                 "slippageBps", "routePlan")


class BadRequest(Exception):
    """A request Jupiter answers 400 with `{"error": message, "errorCode": code}`."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.message, self.code = message, code


def prices(market: Market, hist: PriceHistory, faults: Faults, raw_ids: str) -> dict[str, Any]:
    """`/price/v3?ids=…`: an entry per mint the market can price (the others omitted, as Jupiter does)."""
    ids = list(dict.fromkeys(i.strip() for i in raw_ids.split(",") if i.strip()))
    if not ids:
        raise BadRequest("Query parameter ids is required", "")
    if len(ids) > MAX_PRICE_IDS:
        raise BadRequest(f"Too many ids: at most {MAX_PRICE_IDS} per request", "")
    out: dict[str, Any] = {}
    with market.lock:
        for mint in ids:
            if mint in faults.missing:
                continue  # Jupiter omits mints it cannot price: no key, no null, no error
            entry = price_entry(market, hist, mint)
            if entry is not None:
                out[mint] = entry
    return out


def _quote_args(args: Any) -> tuple[str, str, int, int, str]:
    """(inputMint, outputMint, amount, slippageBps, swapMode) of a quote request, or BadRequest."""
    input_mint, output_mint = args.get("inputMint", ""), args.get("outputMint", "")
    if not input_mint or not output_mint:
        raise BadRequest("inputMint and outputMint are required", "INVALID_REQUEST")
    try:
        amount = int(args.get("amount", ""))
        slippage_bps = int(args.get("slippageBps", "50"))
    except ValueError:
        raise BadRequest("amount and slippageBps must be integers", "INVALID_REQUEST") from None
    if amount <= 0 or not 0 <= slippage_bps <= 10_000:
        raise BadRequest("amount must be > 0 and slippageBps within 0..10000", "INVALID_REQUEST")
    swap_mode = args.get("swapMode", "ExactIn")
    if swap_mode != "ExactIn":
        raise BadRequest("the sandbox quotes swapMode=ExactIn only", "INVALID_REQUEST")
    if input_mint == output_mint:
        raise BadRequest("inputMint and outputMint must differ", "CIRCULAR_ARBITRAGE_IS_DISABLED")
    return input_mint, output_mint, amount, slippage_bps, swap_mode


def quote_body(market: Market, chain: Chain | None, args: Any, started: float) -> dict[str, Any]:
    """`/swap/v1/quote`: the route through the market's pools, as Jupiter's quote response."""
    input_mint, output_mint, amount, slippage_bps, swap_mode = _quote_args(args)
    with market.lock:
        routed = market.route(input_mint, output_mint, amount)
        slot = chain.slot() if chain is not None else market.slot
    if routed is None or routed[0][-1].out_amount <= 0:
        raise BadRequest("Could not find any route", "COULD_NOT_FIND_ANY_ROUTE")
    legs, impact, _ = routed
    out = legs[-1].out_amount
    return {
        "inputMint": input_mint,
        "inAmount": str(amount),
        "outputMint": output_mint,
        "outAmount": str(out),
        "otherAmountThreshold": str(out * (10_000 - slippage_bps) // 10_000),
        "swapMode": swap_mode,
        "slippageBps": slippage_bps,
        "platformFee": None,
        "priceImpactPct": f"{impact:.10f}".rstrip("0").rstrip(".") or "0",
        "routePlan": [{
            "swapInfo": {
                "ammKey": leg.pool.address,
                "label": DEX_LABELS.get(leg.pool.dex, leg.pool.dex),
                "inputMint": leg.input_mint,
                "outputMint": leg.output_mint,
                "inAmount": str(leg.in_amount),
                "outAmount": str(leg.out_amount),
                "feeAmount": str(leg.fee_amount),
                "feeMint": leg.input_mint,
            },
            "percent": 100,
        } for leg in legs],
        "contextSlot": slot,
        "timeTaken": round(time.perf_counter() - started, 9),
    }


def swap_request(body: Any) -> tuple[str, dict[str, Any], dict[str, bool], Priority]:
    """(userPublicKey, quoteResponse, flags, priority) of a `/swap/v1/swap` body, or BadRequest."""
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object", "INVALID_REQUEST")
    user, q = body.get("userPublicKey"), body.get("quoteResponse")
    if not _valid_pubkey(user):
        raise BadRequest("userPublicKey must be a base58 public key", "INVALID_REQUEST")
    if not isinstance(q, dict) or any(k not in q for k in _QUOTE_FIELDS):
        raise BadRequest(f"quoteResponse must be the quote object ({', '.join(_QUOTE_FIELDS)})", "INVALID_REQUEST")
    if not all(isinstance(q[k], str) and q[k].isdigit() for k in ("inAmount", "outAmount", "otherAmountThreshold")):
        raise BadRequest("quoteResponse amounts must be raw integer strings", "INVALID_REQUEST")
    if not (_valid_pubkey(q["inputMint"]) and _valid_pubkey(q["outputMint"])) or not isinstance(q["routePlan"], list):
        raise BadRequest("quoteResponse mints or routePlan are invalid", "INVALID_REQUEST")
    if q["inputMint"] == q["outputMint"] or not isinstance(q.get("swapMode", "ExactIn"), str) or q["swapMode"] != "ExactIn":
        raise BadRequest("the sandbox swaps swapMode=ExactIn quotes between two different mints", "INVALID_REQUEST")
    refused = [k for k in UNSUPPORTED if body.get(k) is not None] + (["asLegacyTransaction"] if body.get("asLegacyTransaction") else [])
    if refused:
        raise BadRequest(f"not supported by the sandbox: {', '.join(refused)}", "INVALID_REQUEST")
    flags = {k: body.get(k, default) for k, default in (("wrapAndUnwrapSol", True), ("dynamicComputeUnitLimit", False))}
    if not all(isinstance(v, bool) for v in flags.values()):
        raise BadRequest("wrapAndUnwrapSol and dynamicComputeUnitLimit must be booleans", "INVALID_REQUEST")
    try:
        priority = parse_priority(body.get("prioritizationFeeLamports"), body.get("computeUnitPriceMicroLamports"))
    except ValueError as exc:
        raise BadRequest(f"prioritizationFeeLamports is malformed: {exc}", "INVALID_REQUEST") from None
    return user, q, flags, priority  # type: ignore[return-value]


def swap_body(built: Any, priority: Priority) -> dict[str, Any]:
    """Jupiter's swap response for what the sandbox built."""
    kind = ({"jito": {"lamports": priority.jito_tip}} if priority.jito_tip else
            {"computeBudget": {"microLamports": built.micro_lamports, "estimatedMicroLamports": built.micro_lamports}})
    return {
        "swapTransaction": base64.b64encode(bytes(built.transaction)).decode(),
        "lastValidBlockHeight": built.build.last_valid,
        "prioritizationFeeLamports": built.prioritization_fee_lamports,
        "computeUnitLimit": built.compute_unit_limit,
        "prioritizationType": kind,
        "dynamicSlippageReport": None,
        "simulationError": built.simulation_error,
    }


def blueprint(market: Market, faults: Faults, history: PriceHistory | None = None, chain: Chain | None = None) -> Blueprint:
    """The Jupiter blueprint, wrapped with the service's faults. Mount at `/jupiter`."""
    bp = Blueprint("jupiter", __name__)
    hist = history or PriceHistory(market)
    builders: list[SwapBuilder] = []

    def builder() -> SwapBuilder:  # made at the first /swap: a chain of its own costs a tenth of a second
        if not builders:
            builders.append(SwapBuilder(market, chain if chain is not None else Chain(market)))
        return builders[0]

    @bp.get("/price/v3")
    async def price_v3() -> Response:
        try:
            return _json(prices(market, hist, faults, request.args.get("ids", "")))
        except BadRequest as e:
            return _json({"error": e.message}, 400)

    @bp.get("/swap/v1/quote")
    async def quote() -> Response:
        started = time.perf_counter()
        try:
            return _json(quote_body(market, chain, request.args, started))
        except BadRequest as e:
            return _error(e.message, e.code)

    @bp.post("/swap/v1/swap")
    async def swap() -> Response:
        try:
            user, q, flags, priority = swap_request(await request.get_json(force=True, silent=True))
            built = builder().build(user, q, wrap=flags["wrapAndUnwrapSol"], dynamic_cu=flags["dynamicComputeUnitLimit"],
                                    priority=priority, faults=faults)
        except NoRoute:
            return _error("Could not find any route", "COULD_NOT_FIND_ANY_ROUTE")
        except BadRequest as e:
            return _error(e.message, e.code)
        return _json(swap_body(built, priority))

    return faulty(bp, faults)


__all__ = ["DEX_LABELS", "MAX_PRICE_IDS", "PriceHistory", "blueprint", "price_entry"]
