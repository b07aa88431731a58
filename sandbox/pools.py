"""The market's parts: tokens in constant-product pools (`SimToken`, `Pool`), the hazards a token can carry,
the legs of a route, the cast of tokens, and the addresses every part has (deterministic from a seed).

Each pool's address is a real keypair's public key (`pool_keypair(seed, symbol)`) and its vaults are that
address's associated token accounts, so the sandbox chain can sign for them when a swap executes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Literal

import base58
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.token.associated import get_associated_token_address

WSOL_MINT = "So11111111111111111111111111111111111111112"
USDC_MINT = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"
TOKEN_PROGRAM_ID = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA"
TOKEN_2022_PROGRAM_ID = "TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb"
LAMPORTS = 10**9
USDC_UNITS = 10**6
POOL_FEE_BPS = 25
SOL_POOL = "SOL/USDC"  # the sandbox's SOL/USDC pool: SOL reaches USDC-quoted tokens through it, at the market's SOL price
SOL_POOL_SOL = 1_000_000 * LAMPORTS  # its depth (a fixed-price pool: the depth only has to outlast any trade)

Quote = Literal["SOL", "USDC"]


@dataclass
class Hazards:
    rug_at: float | None = None  # sim seconds after start, at the earliest: the dev pulls the pool and dumps its bag
    honeypot: bool = False  # sells revert: no route back to SOL
    mint_authority: bool = False
    freeze_authority: bool = False
    permanent_delegate: bool = False
    transfer_fee_bps: int = 0
    transfer_hook: bool = False
    default_frozen: bool = False
    concentrated: bool = False  # a few wallets hold most of the supply
    thin: bool = False  # tiny liquidity

    @property
    def token2022(self) -> bool:
        return self.permanent_delegate or self.transfer_fee_bps > 0 or self.transfer_hook or self.default_frozen

    def names(self) -> list[str]:
        out = [k for k in ("honeypot", "mint_authority", "freeze_authority", "permanent_delegate", "transfer_hook",
                           "default_frozen", "concentrated", "thin") if getattr(self, k)]
        if self.transfer_fee_bps:
            out.append("transfer_fee")
        if self.rug_at is not None:
            out.append("rug")
        return out


@dataclass
class Pool:
    address: str  # the pool's authority: a real keypair's public key (`pool_keypair`), the owner of both vaults
    base_vault: str  # the pool's token account for the token: ATA(address, mint, the mint's token program)
    quote_vault: str  # ... and for the quote asset: ATA(address, WSOL native mint or USDC)
    base_reserve: int
    quote_reserve: int
    created_at: float  # unix seconds
    dex: str  # "raydium", "pumpswap", "meteora"


@dataclass(frozen=True)
class Leg:
    """One step of a route through one pool: `in_amount` of `input_mint` in, `out_amount` of `output_mint` out."""

    pool: Pool
    input_mint: str
    output_mint: str
    in_amount: int
    out_amount: int
    token: "SimToken | None"  # the pool's token; None for the SOL/USDC pool
    fee_amount: int = 0  # the pool's fee, in the input mint


@dataclass
class SimToken:
    mint: str
    symbol: str
    name: str
    decimals: int
    supply: int
    quote: Quote
    pool: Pool
    hazards: Hazards
    drift: float  # expected log-return per simulated minute from simulated traders
    vol: float  # per-minute volatility
    creator: str
    holders: dict[str, int] = field(default_factory=dict)  # owner -> raw amount, outside the pool
    rugged: bool = False
    leaders_since: dict[str, float] = field(default_factory=dict)  # leader address -> when it bought in (while it holds)

    @property
    def quote_mint(self) -> str:
        return WSOL_MINT if self.quote == "SOL" else USDC_MINT

    @property
    def quote_decimals(self) -> int:
        return 9 if self.quote == "SOL" else 6

    def price_quote(self) -> float:
        """Price of one whole token in whole quote units."""
        p = self.pool
        return (p.quote_reserve / 10**self.quote_decimals) / (p.base_reserve / 10**self.decimals)

    def swap_out(self, amount_in: int, buy: bool) -> int:
        """Constant-product output for `amount_in` (quote in when buy, token in when sell), after the pool fee."""
        p = self.pool
        r_in, r_out = (p.quote_reserve, p.base_reserve) if buy else (p.base_reserve, p.quote_reserve)
        eff = amount_in * (10_000 - POOL_FEE_BPS)
        return (eff * r_out) // (r_in * 10_000 + eff)

    @property
    def program(self) -> str:
        return TOKEN_2022_PROGRAM_ID if self.hazards.token2022 else TOKEN_PROGRAM_ID

    def apply_swap(self, amount_in: int, buy: bool) -> int:
        out = self.swap_out(amount_in, buy)
        p = self.pool
        if buy:
            p.quote_reserve += amount_in
            p.base_reserve -= out
        else:
            p.base_reserve += amount_in
            p.quote_reserve -= out
        return out


def pubkey(seed: str) -> str:
    """A deterministic base58 address from a seed string (32 bytes)."""
    return base58.b58encode(hashlib.sha256(seed.encode()).digest()).decode()


def pool_keypair(seed: int, name: str) -> Keypair:
    """The authority of the pool `name` (a token symbol, or `SOL_POOL`): a real keypair, so the sandbox can sign
    for the pool's vaults in the swaps its Jupiter builds. Its public key is the pool's address (`ammKey`)."""
    return Keypair.from_seed(hashlib.sha256(f"{seed}:pool:{name}".encode()).digest())


def associated(owner: str, mint: str, program: str = TOKEN_PROGRAM_ID) -> str:
    """The associated token account of `owner` for `mint` under `program` (the ATA program's derivation)."""
    return str(get_associated_token_address(Pubkey.from_string(owner), Pubkey.from_string(mint),
                                            Pubkey.from_string(program)))


def make_pool(seed: int, name: str, mint: str, program: str, quote_mint: str, base_reserve: int, quote_reserve: int,
              created_at: float, dex: str) -> Pool:
    address = str(pool_keypair(seed, name).pubkey())
    return Pool(address, associated(address, mint, program), associated(address, quote_mint), base_reserve,
                quote_reserve, created_at, dex)


def signature(seed: str) -> str:
    """A deterministic base58 transaction signature (64 bytes)."""
    return base58.b58encode(hashlib.sha512(seed.encode()).digest()).decode()


# The cast of tokens: each hazard the analyzer must catch, and clean tokens with different price paths.
# (symbol, quote, hazards, drift per minute, volatility per minute)
CAST: list[tuple[str, Quote, Hazards, float, float]] = [
    ("MOON", "SOL", Hazards(), 0.012, 0.02),  # a pump: climbs steadily
    ("STDY", "SOL", Hazards(), 0.006, 0.015),  # climbs slowly
    ("CHOP", "SOL", Hazards(), 0.0, 0.04),  # volatile, no trend
    ("SINK", "SOL", Hazards(), -0.01, 0.02),  # bleeds
    ("USDX", "USDC", Hazards(), 0.004, 0.02),  # a clean token quoted in USDC
    ("RUGR", "SOL", Hazards(rug_at=600.0), 0.01, 0.02),  # pumps, then the dev rugs the leaders holding it
    ("HONY", "SOL", Hazards(honeypot=True), 0.01, 0.01),
    ("MNTA", "SOL", Hazards(mint_authority=True), 0.003, 0.02),
    ("FRZA", "SOL", Hazards(freeze_authority=True), 0.003, 0.02),
    ("PDEL", "SOL", Hazards(permanent_delegate=True), 0.003, 0.02),
    ("TFEE", "SOL", Hazards(transfer_fee_bps=500), 0.003, 0.02),
    ("HOOK", "SOL", Hazards(transfer_hook=True), 0.003, 0.02),
    ("WHAL", "SOL", Hazards(concentrated=True), 0.003, 0.02),
    ("THIN", "SOL", Hazards(thin=True), 0.003, 0.03),
]
