"""A leader's trade rendered as the enhanced transaction Helius would deliver (shared/API-FORMATS.md §1.3), in a
`Shape` (`sandbox.helius_shapes`).

`accountData` is exact and internally consistent (every lamport and token unit the leader gains, a pool
account, the relayer or the fee loses), so `actors.trades.classify(tx, trade.leader)` recovers the trade; the
other fields are what Helius adds on top (lossy UI floats in `tokenTransfers`, a description, a swap event
that is a hint at best).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sandbox.helius_shapes import Shape
from sandbox.market import LeaderTrade
from sandbox.pools import USDC_MINT, WSOL_MINT, pubkey

RENT_TOKEN_ACCOUNT = 2_039_280  # lamports: rent-exempt minimum of a 165-byte SPL token account
BASE_FEE = 5_000  # lamports per signature

SYSTEM_PROGRAM = "11111111111111111111111111111111"
TOKEN_PROGRAM = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA"
ATA_PROGRAM = "ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL"
COMPUTE_BUDGET = "ComputeBudget111111111111111111111111111111"
JUPITER_PROGRAM = "JUP6LkbZbjS1jKKwapdHNy74zcZ3tLUZoi5QNyVTaV4"
PUMP_FUN_PROGRAM = "6EF8rrecthR5Dkzon8Nwu78hRvfCKubJ14M5uBEwF6P"
RAYDIUM_V4_AUTHORITY = "5Q544fKrFoe6tsEbD7S8EmxGTJYAKtTVhAW5Q5pge4j1"  # owns every Raydium v4 vault

# dex -> (program id, programName in events.swap.innerSwaps[].programInfo, its source)
PROGRAMS: dict[str, tuple[str, str, str]] = {
    "raydium": ("675kPX9MHTjS2zt1qfr1NYHuzeLXfQM9H24wFSUt1Mp8", "RAYDIUM_LIQUIDITY_POOL_V4", "RAYDIUM"),
    "pumpswap": ("pAMMBay6oceH9fJKBRHGP5D4bD4sWpmSwMn52FMfXEA", "PUMP_AMM", "PUMP_AMM"),
    "meteora": ("LBUZKhRxPF3XUpBCjp4YzTKgLccjZhTSDM9YQVaPiN2", "METEORA_DLMM", "METEORA"),
}


def _ui(raw: int, decimals: int) -> float:
    """A raw amount as Helius' UI float (lossy for large amounts, like the real ones)."""
    return raw / 10**decimals


def _ui_text(raw: int, decimals: int) -> str:
    text = format(Decimal(raw).scaleb(-decimals), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


class _Tx:
    """Accumulates accountData rows (in first-seen order) and transfers."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Any]] = {}
        self.native_transfers: list[dict[str, Any]] = []
        self.token_transfers: list[dict[str, Any]] = []

    def row(self, account: str) -> dict[str, Any]:
        return self.rows.setdefault(account, {"account": account, "nativeBalanceChange": 0, "tokenBalanceChanges": []})

    def native(self, account: str, delta: int) -> None:
        self.row(account)["nativeBalanceChange"] += delta

    def token(self, account: str, owner: str, mint: str, delta: int, decimals: int) -> None:
        self.row(account)["tokenBalanceChanges"].append({
            "userAccount": owner, "tokenAccount": account, "mint": mint,
            "rawTokenAmount": {"tokenAmount": str(delta), "decimals": decimals},
        })

    def send_native(self, src: str, dst: str, amount: int) -> None:
        self.native_transfers.append({"fromUserAccount": src, "toUserAccount": dst, "amount": amount})

    def send_token(self, src_owner: str, src: str, dst_owner: str, dst: str, mint: str, raw: int, decimals: int) -> dict[str, Any]:
        t = {"fromTokenAccount": src, "fromUserAccount": src_owner, "mint": mint, "toTokenAccount": dst,
             "toUserAccount": dst_owner, "tokenAmount": _ui(raw, decimals), "tokenStandard": "Fungible"}
        self.token_transfers.append(t)
        return t


def vault_owner(trade: LeaderTrade) -> str:
    """Who owns the pool's vaults: Raydium v4's shared authority PDA, else the pool (or curve) account itself."""
    return RAYDIUM_V4_AUTHORITY if trade.dex == "raydium" else trade.pool


@dataclass
class _Render:
    """One rendering under way: the trade, its shape, and what the legs put in the transaction so far."""

    trade: LeaderTrade
    shape: Shape
    tx: _Tx = field(default_factory=_Tx)
    quote_acct: str | None = None  # the leader-side account of the quote leg (None: lamports straight to a curve)
    into_pool: list[dict[str, Any]] = field(default_factory=list)  # token transfers into the pool (innerSwaps inputs)
    out_of_pool: list[dict[str, Any]] = field(default_factory=list)

    @property
    def buy(self) -> bool:
        return self.trade.side == "buy"

    @property
    def sign(self) -> int:  # of the leader's token delta
        return 1 if self.buy else -1

    @property
    def curve(self) -> bool:
        return self.shape.funding == "native_direct"

    @property
    def owner(self) -> str:
        return self.trade.pool if self.curve else vault_owner(self.trade)

    @property
    def program(self) -> tuple[str, str, str]:
        return (PUMP_FUN_PROGRAM, "PUMP_FUN", "PUMP_FUN") if self.curve else PROGRAMS.get(self.trade.dex, PROGRAMS["raydium"])

    @property
    def quote_mint(self) -> str:
        return USDC_MINT if self.shape.funding == "usdc" else WSOL_MINT

    @property
    def quote_dec(self) -> int:
        return 6 if self.shape.funding == "usdc" else 9

    @property
    def fee(self) -> int:
        return BASE_FEE + self.shape.priority_fee


def enhanced_tx(trade: LeaderTrade, shape: Shape, *, symbol: str | None = None) -> dict[str, Any]:
    """The enhanced transaction Helius would deliver for `trade`, presented as `shape`."""
    shape.check(trade)
    r = _Render(trade, shape)
    fee_payer = shape.relayer or trade.leader
    r.tx.native(fee_payer, -r.fee)
    r.tx.row(trade.leader)
    _rent_in(r)
    _quote_leg(r)
    _token_leg(r)
    _readonly(r)
    actor = shape.relayer if shape.events == "swap_keeper" else trade.leader
    events: dict[str, Any] | list[Any]
    if shape.events == "empty_list":
        events = []
    elif shape.events == "empty_object":
        events = {}
    else:
        events = {"swap": _swap_event(r, actor)}
    type_ = ("BUY" if r.buy else "SELL") if shape.type in ("BUY", "SELL") else shape.type
    return {
        "description": _description(r, actor, symbol),
        "type": type_,
        "source": shape.source,
        "fee": r.fee,
        "feePayer": fee_payer,
        "signature": trade.signature,
        "slot": trade.slot,
        "timestamp": trade.timestamp,
        "nativeTransfers": r.tx.native_transfers,
        "tokenTransfers": r.tx.token_transfers,
        "accountData": list(r.tx.rows.values()),
        "transactionError": None,
        "instructions": [],
        "events": events,
    }


def _rent_in(r: _Render) -> None:
    """A first buy creating the leader's token account: its rent, from the leader or the relayer."""
    if r.shape.new_account:
        rent_payer = r.shape.relayer if r.shape.rent_by_relayer and r.shape.relayer else r.trade.leader
        r.tx.native(rent_payer, -RENT_TOKEN_ACCOUNT)
        r.tx.native(r.trade.token_account, RENT_TOKEN_ACCOUNT)
        r.tx.send_native(rent_payer, r.trade.token_account, RENT_TOKEN_ACCOUNT)


def _quote_leg(r: _Render) -> None:
    """The leader's side of the quote leg: (leader-side account, leader-side owner) <-> the pool."""
    t, tx, s, x, leader = r.trade, r.tx, r.sign, r.trade.quote_amount, r.trade.leader
    if r.shape.funding == "native":
        r.quote_acct = pubkey(f"wsol-temp:{t.signature}")  # created, synced, swapped and closed in this tx
        tx.native(leader, -s * x)
        tx.row(r.quote_acct)
        tx.send_native(leader, r.quote_acct, RENT_TOKEN_ACCOUNT)
        if r.buy:
            tx.send_native(leader, r.quote_acct, x)
    elif r.shape.funding == "wsol":
        r.quote_acct = pubkey(f"ata:{leader}:{WSOL_MINT}")
        tx.native(r.quote_acct, -s * x)
        tx.token(r.quote_acct, leader, WSOL_MINT, -s * x, 9)
    elif r.shape.funding == "usdc":
        r.quote_acct = pubkey(f"ata:{leader}:{USDC_MINT}")
        tx.token(r.quote_acct, leader, USDC_MINT, -s * x, 6)
    else:  # native_direct: lamports between the leader and the bonding curve account
        tx.native(leader, -s * x)
        tx.native(t.pool, s * x)
        if r.buy:
            tx.send_native(leader, t.pool, x)


def _token_leg(r: _Render) -> None:
    """The token leg, then the pool's side of the quote leg; the temporary WSOL unwrapped; a closed account's rent."""
    t, tx, s, owner = r.trade, r.tx, r.sign, r.owner
    n, x, dec, leader = t.token_amount, t.quote_amount, t.decimals, t.leader
    tx.token(t.token_account, leader, t.mint, s * n, dec)
    tx.token(t.base_vault, owner, t.mint, -s * n, dec)
    if r.quote_acct is not None:
        if r.shape.funding != "usdc":
            tx.native(t.quote_vault, s * x)
        tx.token(t.quote_vault, owner, r.quote_mint, s * x, r.quote_dec)
        if r.buy:
            r.into_pool.append(tx.send_token(leader, r.quote_acct, owner, t.quote_vault, r.quote_mint, x, r.quote_dec))
        else:
            r.out_of_pool.append(tx.send_token(owner, t.quote_vault, leader, r.quote_acct, r.quote_mint, x, r.quote_dec))
    if r.buy:
        r.out_of_pool.append(tx.send_token(owner, t.base_vault, leader, t.token_account, t.mint, n, dec))
    else:
        r.into_pool.append(tx.send_token(leader, t.token_account, owner, t.base_vault, t.mint, n, dec))
    if r.shape.funding == "native":  # unwrap: closing the temporary WSOL account pays its lamports to the leader
        tx.send_native(r.quote_acct, leader, RENT_TOKEN_ACCOUNT if r.buy else x + RENT_TOKEN_ACCOUNT)  # type: ignore[arg-type]
    if r.shape.close_account:
        refund_to = r.shape.relayer if r.shape.rent_by_relayer and r.shape.relayer else leader
        tx.native(t.token_account, -RENT_TOKEN_ACCOUNT)
        tx.native(refund_to, RENT_TOKEN_ACCOUNT)


def _readonly(r: _Render) -> None:
    """Read-only accounts, as Helius lists every account key."""
    readonly = [r.trade.pool, r.owner, r.trade.mint, r.program[0], COMPUTE_BUDGET, SYSTEM_PROGRAM, TOKEN_PROGRAM]
    if r.shape.new_account or r.shape.funding == "native":
        readonly.append(ATA_PROGRAM)
    if r.shape.source == "JUPITER":
        readonly.append(JUPITER_PROGRAM)
    if r.quote_mint == WSOL_MINT:
        readonly.append(WSOL_MINT)
    for account in readonly:
        r.tx.row(account)


def _description(r: _Render, actor: str | None, symbol: str | None) -> str:
    """What moved, named by symbol or mint (SWAP only, never for a pump.fun curve)."""
    if r.shape.type != "SWAP" or r.shape.source == "PUMP_FUN":
        return ""
    t = r.trade
    quote = (t.quote_amount, r.quote_dec, "USDC" if r.quote_mint == USDC_MINT else "SOL")
    token = (t.token_amount, t.decimals, symbol or t.mint)
    paid, got = (quote, token) if r.buy else (token, quote)
    return f"{actor} swapped {_ui_text(paid[0], paid[1])} {paid[2]} for {_ui_text(got[0], got[1])} {got[2]}"


def _swap_event(r: _Render, actor: str | None) -> dict[str, Any]:
    """`events.swap`: the leader's legs in raw units, or inverted, or attributed to the keeper (as seen for real)."""
    trade, shape = r.trade, r.shape
    native_quote = shape.funding in ("native", "native_direct")
    quote_leg: dict[str, Any] = (
        {"account": actor, "amount": str(trade.quote_amount)} if native_quote else
        {"userAccount": actor, "tokenAccount": r.quote_acct, "mint": r.quote_mint,
         "rawTokenAmount": {"tokenAmount": str(trade.quote_amount), "decimals": r.quote_dec}}
    )
    token_leg = {"userAccount": actor, "tokenAccount": trade.token_account, "mint": trade.mint,
                 "rawTokenAmount": {"tokenAmount": str(trade.token_amount), "decimals": trade.decimals}}
    quote_in = trade.side == "buy"
    if shape.events == "swap_inverted":
        quote_in = not quote_in
    event: dict[str, Any] = {"nativeInput": None, "nativeOutput": None, "tokenInputs": [], "tokenOutputs": [],
                             "tokenFees": [], "nativeFees": []}
    if native_quote:
        event["nativeInput" if quote_in else "nativeOutput"] = quote_leg
    else:
        event["tokenInputs" if quote_in else "tokenOutputs"].append(quote_leg)
    event["tokenOutputs" if quote_in else "tokenInputs"].append(token_leg)
    program, program_name, source = r.program
    event["innerSwaps"] = [{
        "tokenInputs": r.into_pool, "tokenOutputs": r.out_of_pool, "tokenFees": [], "nativeFees": [],
        "programInfo": {"source": source, "account": program, "programName": program_name, "instructionName": "SwapEvent"},
    }]
    return event
