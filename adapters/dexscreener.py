"""DexScreener `GET /tokens/v1/{chainId}/{addresses}` (shared/API-FORMATS.md §3), through one `Provider`.

    client = DexScreenerClient()                                              # https://api.dexscreener.com
    client = DexScreenerClient(base_url=f"http://127.0.0.1:{port}/dexscreener")  # the sandbox
    pairs = await client.best_pairs(mints)   # {mint: DexPair}, ≤ 30 addresses per call

The endpoint answers a bare array of Pair objects for every pool touching the tokens, including pools
where the token is the *quote*. For each token we keep the pair whose `baseToken.address` is the token
and whose `liquidity.usd` is highest. Pairs are parsed one by one: one odd pair is skipped, not fatal.
Socials come as `{type, url}` in real payloads and `{platform, handle}` in the docs; both are accepted.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Iterable, Sequence
from urllib.parse import quote

import httpx
import structlog
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from adapters.http import BadResponse, Closes, Policy, Provider, ResilientClient, batched

log = structlog.get_logger("dexscreener")

DEFAULT_BASE_URL = "https://api.dexscreener.com"
MAX_ADDRESSES = 30


def dexscreener_policy(**overrides: Any) -> Policy:
    """300 requests per minute for the pair endpoints (5 rps); any `Policy` field may be overridden."""
    values: dict[str, Any] = {"rate_per_s": 5.0}
    values.update(overrides)
    return Policy(**values)


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True)


class DexToken(_Wire):
    address: str
    name: str | None = None
    symbol: str | None = None

    @field_validator("name", "symbol")
    @classmethod
    def _strip(cls, v: str | None) -> str | None:
        return v.strip() if isinstance(v, str) else v  # real payloads carry trailing spaces ("JOJO ")


class DexLiquidity(_Wire):
    usd: Decimal | None = None
    base: Decimal | None = None
    quote: Decimal | None = None


class DexSocial(_Wire):
    """A social link, from either shape: `{type, url}` (real payloads) or `{platform, handle}` (docs)."""

    kind: str | None = None
    url: str | None = None
    handle: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _either_shape(cls, v: Any) -> Any:
        if isinstance(v, dict):
            return {"kind": v.get("type") or v.get("platform"), "url": v.get("url"), "handle": v.get("handle")}
        return v


class DexWebsite(_Wire):
    label: str | None = None
    url: str | None = None


class DexInfo(_Wire):
    image_url: str | None = Field(default=None, alias="imageUrl")
    websites: tuple[DexWebsite, ...] = ()
    socials: tuple[DexSocial, ...] = ()

    @field_validator("websites", "socials", mode="before")
    @classmethod
    def _none_is_empty(cls, v: Any) -> Any:
        return () if v is None else v


class DexPair(_Wire):
    """The fields of a Pair we use. Prices are strings on the wire; `price_usd` may be null."""

    chain_id: str = Field(alias="chainId")
    dex_id: str = Field(alias="dexId")
    url: str | None = None
    pair_address: str = Field(alias="pairAddress")
    labels: tuple[str, ...] | None = None
    base_token: DexToken = Field(alias="baseToken")
    quote_token: DexToken = Field(alias="quoteToken")
    price_native: Decimal | None = Field(default=None, alias="priceNative")
    price_usd: Decimal | None = Field(default=None, alias="priceUsd")
    liquidity: DexLiquidity | None = None
    fdv: Decimal | None = None
    market_cap: Decimal | None = Field(default=None, alias="marketCap")
    pair_created_at: int | None = Field(default=None, alias="pairCreatedAt")  # ms epoch
    price_change: dict[str, Decimal] = Field(default_factory=dict, alias="priceChange")  # keys can be missing
    volume: dict[str, Decimal] = Field(default_factory=dict)
    txns: dict[str, dict[str, int]] = Field(default_factory=dict)
    info: DexInfo | None = None

    @field_validator("price_change", "volume", "txns", mode="before")
    @classmethod
    def _none_is_empty(cls, v: Any) -> Any:
        return {} if v is None else v

    @property
    def liquidity_usd(self) -> Decimal:
        return (self.liquidity.usd if self.liquidity and self.liquidity.usd is not None else None) or Decimal(0)


def parse_pairs(body: Any) -> list[DexPair]:
    """Parse `/tokens/v1` (a bare array) or the legacy `{schemaVersion, pairs}` shape. Pairs that do not
    validate are skipped and logged; a body of any other shape is a BadResponse."""
    if isinstance(body, dict) and "pairs" in body:
        body = body["pairs"] or []
    if not isinstance(body, list):
        raise BadResponse(f"tokens/v1: expected an array of pairs, got {type(body).__name__}", provider="dexscreener")
    out: list[DexPair] = []
    for raw in body:
        try:
            out.append(DexPair.model_validate(raw))
        except ValidationError as exc:
            log.warning("dexscreener_pair_invalid", error=str(exc)[:200])
    return out


def best_pair(pairs: Iterable[DexPair], mint: str) -> DexPair | None:
    """The highest-liquidity pair whose base token is `mint` and that has a positive USD price."""
    mine = [p for p in pairs if p.base_token.address == mint and p.price_usd is not None and p.price_usd > 0]
    return max(mine, key=lambda p: p.liquidity_usd, default=None)


class DexScreenerClient(Closes):
    """DexScreener's token endpoint through one provider. No key; 300 requests per minute."""

    name = "dexscreener"
    max_batch = MAX_ADDRESSES

    def __init__(self, base_url: str = DEFAULT_BASE_URL, *, chain: str = "solana", provider: Provider | None = None,
                 transport: httpx.AsyncBaseTransport | None = None, **policy_overrides: Any) -> None:
        self.chain = chain
        self.provider = provider or Provider("dexscreener", dexscreener_policy(**policy_overrides))
        self._http = ResilientClient(self.provider, base_url, headers={"accept": "application/json"},
                                     transport=transport)

    async def pairs(self, mints: Sequence[str]) -> list[DexPair]:
        """One call for ≤ 30 addresses: every pair DexScreener returns for them."""
        ids = list(dict.fromkeys(mints))
        if not ids:
            return []
        if len(ids) > MAX_ADDRESSES:
            raise ValueError(f"tokens/v1 takes at most {MAX_ADDRESSES} addresses per call, got {len(ids)}")
        path = f"/tokens/v1/{quote(self.chain, safe='')}/{quote(','.join(ids), safe=',')}"
        return await self._http.get(path, parse=parse_pairs)

    async def best_pair_batch(self, mints: Sequence[str]) -> dict[str, DexPair]:
        """One call: the best pair of each mint that has one."""
        got = await self.pairs(mints)
        out = {m: best_pair(got, m) for m in dict.fromkeys(mints)}
        return {m: p for m, p in out.items() if p is not None}

    async def best_pairs(self, mints: Iterable[str]) -> dict[str, DexPair]:
        """The best pair per mint for any number of mints, ≤ 30 per call. Any failing call raises."""
        return await batched(mints, MAX_ADDRESSES, self.best_pair_batch)

    async def usd_prices(self, mints: Sequence[str]) -> dict[str, Decimal]:
        """The `PriceSource` port (intelligence.prices): one call, ≤ `max_batch` mints, USD prices."""
        return {m: p.price_usd for m, p in (await self.best_pair_batch(mints)).items() if p.price_usd is not None}
