"""Jupiter: Price v3, Quote and Swap v1 (shared/API-FORMATS.md §2), through one `Provider`.

Jupiter counts every API against one budget per organisation, so one `JupiterClient` (one provider,
one token bucket) serves Price, Quote and Swap. The rate comes from the key's tier (`JUPITER_TIERS`).

    client = JupiterClient(base_url="https://api.jup.ag", api_key="...", tier="developer")
    client = JupiterClient(base_url=f"http://127.0.0.1:{port}/jupiter")        # the sandbox, keyless
    prices = await client.prices(mints)                   # {mint: JupiterPrice}, batched ≤ 50 ids per call
    quote = await client.quote(SOL, mint, 100_000_000)     # JupiterQuote, or raises NoRoute
    built = await client.build_swap(quote, user_pubkey)    # SwapBuild: base64 unsigned VersionedTransaction

Parsing is lenient where the docs disagree (Price v3 `createdAt`/`liquidity` optional, unknown fields
ignored) and strict where money depends on it (amounts are integers, prices are positive numbers).
A price entry that fails validation is dropped like a mint Jupiter omitted — never read as zero.
"""

from __future__ import annotations

import base64
import binascii
from decimal import Decimal
from typing import Any, Iterable, Literal, Sequence

import httpx
import structlog
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from adapters.http import BadResponse, Closes, Policy, Provider, RequestRejected, ResilientClient, batched

log = structlog.get_logger("jupiter")

DEFAULT_BASE_URL = "https://api.jup.ag"  # legacy keyless host: https://lite-api.jup.ag
MAX_PRICE_IDS = 50

Tier = Literal["keyless", "free", "developer", "launch", "pro"]
JUPITER_TIERS: dict[str, float] = {"keyless": 0.5, "free": 1.0, "developer": 10.0, "launch": 50.0, "pro": 150.0}

NO_ROUTE_CODES = frozenset({"COULD_NOT_FIND_ANY_ROUTE", "NO_ROUTES_FOUND", "TOKEN_NOT_TRADABLE",
                            "ROUTE_PLAN_DOES_NOT_CONSUME_ALL_THE_AMOUNT"})


def jupiter_policy(tier: Tier | str = "keyless", **overrides: Any) -> Policy:
    """The policy for a Jupiter tier (requests per second from API-FORMATS §2.1); any `Policy` field
    may be overridden (e.g. `rate_per_s` for a custom plan, `attempt_timeout_s`, `cooldown_s`)."""
    if tier not in JUPITER_TIERS:
        raise ValueError(f"unknown Jupiter tier {tier!r}; one of {sorted(JUPITER_TIERS)}")
    values: dict[str, Any] = {"rate_per_s": JUPITER_TIERS[tier]}
    values.update(overrides)
    return Policy(**values)


class NoRoute(RequestRejected):
    """Jupiter found no route (e.g. a honeypot's sell, an untradable or unknown mint). A domain answer:
    the provider is healthy and retrying will not help."""


# -- models -------------------------------------------------------------------------------------------
class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True)


class JupiterPrice(_Wire):
    """One Price v3 entry. `price_change_24h` is a percent (1.29 means +1.29 %)."""

    usd_price: Decimal = Field(alias="usdPrice", gt=0)
    block_id: int | None = Field(default=None, alias="blockId")
    decimals: int | None = Field(default=None, ge=0, le=255)
    price_change_24h: Decimal | None = Field(default=None, alias="priceChange24h")
    created_at: str | None = Field(default=None, alias="createdAt")
    liquidity: Decimal | None = None

    @field_validator("usd_price", "price_change_24h", "liquidity", mode="before")
    @classmethod
    def _no_bools(cls, v: Any) -> Any:
        if isinstance(v, bool):
            raise ValueError("a number is required")
        return v


def parse_prices(body: Any) -> dict[str, JupiterPrice]:
    """Parse a Price v3 body (object keyed by mint). Entries that do not validate are dropped and logged;
    a body that is not an object is a BadResponse."""
    if not isinstance(body, dict):
        raise BadResponse(f"price v3: expected an object keyed by mint, got {type(body).__name__}", provider="jupiter")
    out: dict[str, JupiterPrice] = {}
    for mint, entry in body.items():
        if entry is None:
            continue
        try:
            out[mint] = JupiterPrice.model_validate(entry)
        except ValidationError as exc:
            log.warning("jupiter_price_entry_invalid", mint=mint, error=str(exc)[:200])
    return out


class SwapInfo(_Wire):
    amm_key: str = Field(alias="ammKey")
    label: str | None = None
    input_mint: str = Field(alias="inputMint")
    output_mint: str = Field(alias="outputMint")
    in_amount: int = Field(alias="inAmount")
    out_amount: int = Field(alias="outAmount")
    fee_amount: int | None = Field(default=None, alias="feeAmount")  # deprecated by Jupiter
    fee_mint: str | None = Field(default=None, alias="feeMint")


class RoutePlanStep(_Wire):
    swap_info: SwapInfo = Field(alias="swapInfo")
    percent: int | None = None
    bps: int | None = None


class JupiterQuote(_Wire):
    """A `/swap/v1/quote` answer. `raw` is the body exactly as received: `build_swap` sends it back
    unmodified, as Jupiter requires.

    `price_impact` is the wire's `priceImpactPct` (a string on the wire). Despite its name, integrators
    read it as a fraction ("0.05" = 5 %) [3rd-party claim, API-FORMATS §2.3 leaves the unit open]; the
    sandbox serves a fraction. `price_impact_percent` is it × 100.
    """

    input_mint: str = Field(alias="inputMint")
    in_amount: int = Field(alias="inAmount", gt=0)
    output_mint: str = Field(alias="outputMint")
    out_amount: int = Field(alias="outAmount", ge=0)
    other_amount_threshold: int = Field(alias="otherAmountThreshold", ge=0)
    swap_mode: Literal["ExactIn", "ExactOut"] = Field(alias="swapMode")
    slippage_bps: int = Field(alias="slippageBps", ge=0)
    price_impact: Decimal = Field(alias="priceImpactPct")
    route_plan: tuple[RoutePlanStep, ...] = Field(alias="routePlan")
    context_slot: int | None = Field(default=None, alias="contextSlot")
    time_taken: float | None = Field(default=None, alias="timeTaken")
    raw: dict[str, Any] = Field(default_factory=dict, exclude=True)

    @field_validator("in_amount", "out_amount", "other_amount_threshold", mode="before")
    @classmethod
    def _integer_string(cls, v: Any) -> Any:
        # amounts are raw-integer strings on the wire; refuse floats like "1.5" or 1e9
        if isinstance(v, str) and not v.isdigit():
            raise ValueError("must be a raw integer string")
        if isinstance(v, float) or isinstance(v, bool):
            raise ValueError("must be a raw integer")
        return v

    @property
    def price_impact_percent(self) -> Decimal:
        return self.price_impact * 100

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(step.swap_info.label or "" for step in self.route_plan)


def parse_quote(body: Any) -> JupiterQuote:
    if not isinstance(body, dict):
        raise BadResponse("quote: expected an object", provider="jupiter")
    quote = JupiterQuote.model_validate(body)
    return quote.model_copy(update={"raw": dict(body)})


class SwapBuild(_Wire):
    """A `/swap/v1/swap` answer. Check `simulation_error` before signing; stop retrying the send once the
    block height passes `last_valid_block_height`."""

    swap_transaction: str = Field(alias="swapTransaction", min_length=1)
    last_valid_block_height: int = Field(alias="lastValidBlockHeight")
    prioritization_fee_lamports: int | None = Field(default=None, alias="prioritizationFeeLamports")
    compute_unit_limit: int | None = Field(default=None, alias="computeUnitLimit")
    simulation_error: Any = Field(default=None, alias="simulationError")

    def transaction_bytes(self) -> bytes:
        try:
            return base64.b64decode(self.swap_transaction, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise BadResponse(f"swapTransaction is not base64: {exc}", provider="jupiter") from exc

    def transaction(self) -> Any:
        """The unsigned `solders.transaction.VersionedTransaction`. Raises BadResponse if it does not decode."""
        from solders.transaction import VersionedTransaction

        raw = self.transaction_bytes()
        try:
            return VersionedTransaction.from_bytes(raw)
        except BaseException as exc:  # noqa: BLE001 - solders raises PanicException (a BaseException) on junk
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            raise BadResponse(f"swapTransaction does not deserialize: {type(exc).__name__}", provider="jupiter") from None


def parse_swap(body: Any) -> SwapBuild:
    if not isinstance(body, dict):
        raise BadResponse("swap: expected an object", provider="jupiter")
    return SwapBuild.model_validate(body)


# -- client -------------------------------------------------------------------------------------------
class JupiterClient(Closes):
    """Price v3, Quote and Swap v1 through one provider (one rate budget, one breaker).

    `provider` may be passed to share it (or to inject a test clock); otherwise one is built from `tier`
    and `policy_overrides`. The API key, when given, is sent as `x-api-key`.
    """

    name = "jupiter"
    max_batch = MAX_PRICE_IDS

    def __init__(self, base_url: str = DEFAULT_BASE_URL, *, api_key: str | None = None, tier: Tier | str = "keyless",
                 provider: Provider | None = None, transport: httpx.AsyncBaseTransport | None = None,
                 **policy_overrides: Any) -> None:
        self.provider = provider or Provider("jupiter", jupiter_policy(tier, **policy_overrides))
        headers = {"accept": "application/json"}
        if api_key:
            headers["x-api-key"] = api_key
        self._http = ResilientClient(self.provider, base_url, headers=headers, transport=transport)

    # -- price ------------------------------------------------------------------------------------
    async def price_batch(self, mints: Sequence[str]) -> dict[str, JupiterPrice]:
        """One Price v3 call (≤ 50 ids). Mints Jupiter omits are simply absent from the result."""
        ids = list(dict.fromkeys(mints))
        if not ids:
            return {}
        if len(ids) > MAX_PRICE_IDS:
            raise ValueError(f"Price v3 takes at most {MAX_PRICE_IDS} ids per call, got {len(ids)}")
        got = await self._http.get("/price/v3", params={"ids": ",".join(ids)}, parse=parse_prices)
        asked = set(ids)
        return {m: p for m, p in got.items() if m in asked}

    async def prices(self, mints: Iterable[str]) -> dict[str, JupiterPrice]:
        """Prices for any number of mints, ≤ 50 per call, one call after another. Any failing call raises."""
        return await batched(mints, MAX_PRICE_IDS, self.price_batch)

    async def usd_prices(self, mints: Sequence[str]) -> dict[str, Decimal]:
        """The `PriceSource` port (intelligence.prices): one call, ≤ `max_batch` mints, USD prices."""
        return {m: p.usd_price for m, p in (await self.price_batch(mints)).items()}

    # -- quote and swap ---------------------------------------------------------------------------
    async def quote(self, input_mint: str, output_mint: str, amount: int, *, slippage_bps: int = 50,
                    swap_mode: Literal["ExactIn", "ExactOut"] = "ExactIn", **extra: Any) -> JupiterQuote:
        """`GET /swap/v1/quote`. `amount` is a raw integer (lamports / atomic units). Raises NoRoute when
        Jupiter has no route; other 4xx are RequestRejected."""
        if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
            raise ValueError("amount must be a positive raw integer")
        params: dict[str, Any] = {"inputMint": input_mint, "outputMint": output_mint, "amount": str(amount),
                                  "slippageBps": str(slippage_bps), "swapMode": swap_mode}
        params.update({k: (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in extra.items()})
        try:
            return await self._http.get("/swap/v1/quote", params=params, parse=parse_quote)
        except RequestRejected as exc:
            if _is_no_route(exc.body):
                raise NoRoute(f"jupiter: no route {input_mint} -> {output_mint}: {exc.body}", provider="jupiter",
                              status=exc.status, body=exc.body) from None
            raise

    async def build_swap(self, quote: JupiterQuote, user_public_key: str, *, wrap_and_unwrap_sol: bool = True,
                         dynamic_compute_unit_limit: bool = True, prioritization_fee_lamports: Any = "auto",
                         **extra: Any) -> SwapBuild:
        """`POST /swap/v1/swap` with the quote exactly as Jupiter sent it."""
        if not quote.raw:
            raise ValueError("the quote has no raw body: pass the JupiterQuote returned by quote()")
        body: dict[str, Any] = {"quoteResponse": quote.raw, "userPublicKey": user_public_key,
                                "wrapAndUnwrapSol": wrap_and_unwrap_sol,
                                "dynamicComputeUnitLimit": dynamic_compute_unit_limit,
                                "prioritizationFeeLamports": prioritization_fee_lamports}
        body.update(extra)
        return await self._http.post("/swap/v1/swap", json=body, parse=parse_swap)


def prioritization_fee(priority_level: str, max_lamports: int, jito_tip_lamports: int = 0) -> dict[str, Any]:
    """The swap request's `prioritizationFeeLamports`: a Jito tip when one is configured, else a priority level capped
    at `max_lamports` — never both (API-FORMATS §2.4)."""
    if jito_tip_lamports > 0:
        return {"jitoTipLamports": jito_tip_lamports}
    return {"priorityLevelWithMaxLamports": {"priorityLevel": priority_level, "maxLamports": max_lamports}}


def _is_no_route(body: Any) -> bool:
    if isinstance(body, dict):
        code = body.get("errorCode") or body.get("error_code") or ""
        text = str(body.get("error") or body.get("message") or "")
        return code in NO_ROUTE_CODES or any(c in text for c in NO_ROUTE_CODES) or "no route" in text.lower() \
            or "could not find any route" in text.lower()
    return isinstance(body, str) and any(c in body for c in NO_ROUTE_CODES)
