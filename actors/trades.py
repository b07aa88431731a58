"""Trade classification for a watched wallet, from an enhanced Helius transaction's balance deltas.

Ground truth is `accountData` (shared/API-FORMATS.md §1.6), in exact integers:
- W's SOL delta is the `nativeBalanceChange` of W and of every token account W owns in this transaction
  (ATA rent moves between W and its own accounts and nets out; a WSOL account's lamports are W's SOL),
  plus the fee when W paid it. A token account whose lamports `nativeTransfers` show coming from, or
  going back to, someone else (a relayer paying the rent) is not W's SOL. SOL and WSOL are one quote asset, reported as the WSOL mint.
- W's token deltas are the `rawTokenAmount` changes whose `userAccount` is W, summed per mint.
- A buy is exactly one fungible non-quote mint up and a quote asset down; a sell is the reverse. Anything
  else (an airdrop, a transfer, an NFT, a fill W did not pay for, token-for-token) is not a trade.
`type`, `source`, `events`, `fee`, `feePayer` are hints at most and may be missing or odd.

The truth of a trade: `check_shape` refuses what cannot be a Solana transaction at all (the gateway answers
400 naming the field): a raw amount beyond a u64, decimals that are not a u8, a non-integer timestamp, JSON
nested deeper than `MAX_DEPTH`. `read_trade` then says why a well-formed transaction is not a trade
(`NotATrade`, stored with the observation): a failed transaction (`transactionError` set) is never one, and
neither is one whose numbers are implausible — decimals above 18 (or a quote asset with the wrong decimals),
more SOL than exists, a timestamp further than the allowed skew from when the delivery was received.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import base58

WSOL_MINT = "So11111111111111111111111111111111111111112"
USDC_MINT = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"
USDT_MINT = "Es9vMFrzaCERmJfrF4H2FYD4KCoNkY11McCe8BenwNYB"
STABLE_MINTS = (USDC_MINT, USDT_MINT)
QUOTE_MINTS = frozenset({WSOL_MINT, *STABLE_MINTS})
QUOTE_DECIMALS = {WSOL_MINT: 9, USDC_MINT: 6, USDT_MINT: 6}

U64_MAX = 2**64 - 1  # SPL token amounts and lamport balances are u64 on chain
MAX_DEPTH = 64  # an enhanced transaction nests a handful of levels; far deeper is not one
MAX_DECIMALS = 18  # a fungible token with more decimals than this is not one we believe
MAX_LAMPORTS = 600_000_000 * 10**9  # more SOL than exists
MAX_STABLE_UNITS = 10**17  # a hundred billion dollars of USDC or USDT


class InvalidTransaction(ValueError):
    """The object is not an enhanced transaction we can classify (reply 4xx; never retried)."""


def is_base58_pubkey(value: object) -> bool:
    """True for a base58 string that decodes to 32 bytes (a Solana public key)."""
    if not isinstance(value, str) or not 32 <= len(value) <= 44:
        return False
    try:
        return len(base58.b58decode(value)) == 32
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class Trade:
    signature: str
    wallet: str
    side: Literal["buy", "sell"]
    token_mint: str
    token_amount: int
    token_decimals: int
    quote_mint: str
    quote_amount: int
    source: str | None

    def as_json(self) -> dict[str, Any]:
        return {
            "signature": self.signature,
            "wallet": self.wallet,
            "side": self.side,
            "token_mint": self.token_mint,
            "token_amount": str(self.token_amount),
            "token_decimals": self.token_decimals,
            "quote_mint": self.quote_mint,
            "quote_amount": str(self.quote_amount),
            "source": self.source,
        }


def is_signature(value: object) -> bool:
    """True for a base58 string that decodes to 64 bytes (a Solana transaction signature)."""
    if not isinstance(value, str) or not 64 <= len(value) <= 90:
        return False
    try:
        return len(base58.b58decode(value)) == 64
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class NotATrade:
    """Why a well-formed transaction is no trade of the wallet's. `refused`: it is not believed (a failed
    transaction, implausible numbers) rather than simply something else than a swap."""

    reason: str
    refused: bool = False

    @property
    def outcome(self) -> Literal["no_trade", "ignored"]:
        return "ignored" if self.refused else "no_trade"


def _int(value: object, what: str, lo: int | None = None, hi: int | None = None) -> int:
    n: int | None = None
    if isinstance(value, bool):
        pass
    elif isinstance(value, int):
        n = value
    elif isinstance(value, str) and len(value) <= 64:  # longer is no u64 (and int() of a huge string is slow)
        try:
            n = int(value)
        except ValueError:
            pass
    elif isinstance(value, float) and value.is_integer():
        n = int(value)
    if n is None:
        raise InvalidTransaction(f"{what} must be an integer")
    if (lo is not None and n < lo) or (hi is not None and n > hi):
        raise InvalidTransaction(f"{what} is out of range ({lo}..{hi})")
    return n


def _too_deep(value: object, limit: int = MAX_DEPTH) -> bool:
    """True when `value` nests arrays and objects more than `limit` levels deep (iterative: no recursion)."""
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))
    return False


def check_shape(tx: object, where: str = "transaction") -> dict[str, Any]:
    """Validate only what classification needs: `signature` and a well-formed `accountData`."""
    if not isinstance(tx, dict):
        raise InvalidTransaction(f"{where} is not a JSON object")
    sig = tx.get("signature")
    if not isinstance(sig, str) or not sig:
        raise InvalidTransaction(f"{where}.signature is missing or not a string")
    if not is_signature(sig):
        raise InvalidTransaction(f"{where}.signature is not a base58 transaction signature")
    if _too_deep(tx):
        raise InvalidTransaction(f"{where} is nested more than {MAX_DEPTH} levels deep")
    if tx.get("timestamp") is not None:
        _int(tx["timestamp"], f"{where}.timestamp (unix seconds)", 0, U64_MAX)
    data = tx.get("accountData")
    if not isinstance(data, list):
        raise InvalidTransaction(f"{where}.accountData is missing or not an array")
    for i, entry in enumerate(data):
        at = f"{where}.accountData[{i}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("account"), str):
            raise InvalidTransaction(f"{at}.account is missing or not a string")
        _int(entry.get("nativeBalanceChange", 0), f"{at}.nativeBalanceChange", -U64_MAX, U64_MAX)
        changes = entry.get("tokenBalanceChanges") or []
        if not isinstance(changes, list):
            raise InvalidTransaction(f"{at}.tokenBalanceChanges is not an array")
        for j, ch in enumerate(changes):
            cat = f"{at}.tokenBalanceChanges[{j}]"
            if not isinstance(ch, dict) or not isinstance(ch.get("mint"), str):
                raise InvalidTransaction(f"{cat}.mint is missing or not a string")
            raw = ch.get("rawTokenAmount")
            if not isinstance(raw, dict):
                raise InvalidTransaction(f"{cat}.rawTokenAmount is missing")
            _int(raw.get("tokenAmount"), f"{cat}.rawTokenAmount.tokenAmount", -U64_MAX, U64_MAX)
            _int(raw.get("decimals"), f"{cat}.rawTokenAmount.decimals", 0, 255)
    return tx


def accounts_touched(tx: dict[str, Any]) -> set[str]:
    """Every address the transaction names as an account or a token owner."""
    out: set[str] = set()
    for entry in tx.get("accountData") or []:
        out.add(entry["account"])
        for ch in entry.get("tokenBalanceChanges") or []:
            if isinstance(ch.get("userAccount"), str):
                out.add(ch["userAccount"])
    if isinstance(tx.get("feePayer"), str):
        out.add(tx["feePayer"])
    return out


def _funded_by_others(tx: dict[str, Any], wallet: str, own: set[str]) -> set[str]:
    """W's token accounts whose lamports moved to or from a third party (e.g. a relayer paid the rent)."""
    out: set[str] = set()
    transfers = tx.get("nativeTransfers")
    for t in transfers if isinstance(transfers, list) else []:
        if not isinstance(t, dict):
            continue
        src, dst = t.get("fromUserAccount"), t.get("toUserAccount")
        for acct, other in ((dst, src), (src, dst)):
            if acct in own and acct != wallet and isinstance(other, str) and other not in own:
                out.add(acct)
    return out


def classify(tx: dict[str, Any], wallet: str) -> Trade | None:
    """The trade `wallet` made in `tx`, or None when it made none. `tx` must pass `check_shape`."""
    trade = read_trade(tx, wallet)
    return trade if isinstance(trade, Trade) else None


def _deltas(tx: dict[str, Any], wallet: str) -> tuple[dict[str, int], dict[str, int], int]:
    """W's raw token delta and decimals per mint, and its SOL delta (lamports, the fee it paid added back)."""
    data = tx["accountData"]
    token_delta: dict[str, int] = {}
    decimals: dict[str, int] = {}
    own_accounts = {wallet}
    for entry in data:
        for ch in entry.get("tokenBalanceChanges") or []:
            if ch.get("userAccount") != wallet:
                continue
            own_accounts.add(entry["account"])
            if isinstance(ch.get("tokenAccount"), str):
                own_accounts.add(ch["tokenAccount"])
            mint = ch["mint"]
            raw = ch["rawTokenAmount"]
            token_delta[mint] = token_delta.get(mint, 0) + _int(raw["tokenAmount"], "tokenAmount")
            decimals[mint] = _int(raw["decimals"], "decimals")

    funded_by_others = _funded_by_others(tx, wallet, own_accounts)
    sol = sum(_int(e.get("nativeBalanceChange", 0), "nativeBalanceChange") for e in data
              if e["account"] in own_accounts and e["account"] not in funded_by_others)
    fee = tx.get("fee")
    if tx.get("feePayer") == wallet and isinstance(fee, int) and not isinstance(fee, bool) and fee > 0:
        sol += fee
    return token_delta, decimals, sol


def _implausible_time(tx: dict[str, Any], received_at: float | None, max_skew_s: float | None) -> bool:
    ts = tx.get("timestamp")
    if ts is None or received_at is None or max_skew_s is None:
        return False  # an enhanced transaction without its timestamp is judged by its deltas alone
    return abs(_int(ts, "timestamp") - received_at) > max_skew_s


def read_trade(tx: dict[str, Any], wallet: str, received_at: float | None = None,
               max_skew_s: float | None = None) -> Trade | NotATrade:
    """The trade `wallet` made in `tx`, or why it is none. `tx` must pass `check_shape`. With `received_at` and
    `max_skew_s`, a timestamp further than that from the delivery's receipt is implausible."""
    if tx.get("transactionError") is not None:
        return NotATrade("transaction_failed", refused=True)  # it did not happen: never a trade
    if _implausible_time(tx, received_at, max_skew_s):
        return NotATrade("implausible:timestamp", refused=True)
    token_delta, decimals, sol = _deltas(tx, wallet)
    if any(d > MAX_DECIMALS or d != QUOTE_DECIMALS.get(m, d) for m, d in decimals.items()):
        return NotATrade("implausible:decimals", refused=True)
    # WSOL held in W's token accounts is already counted through those accounts' lamports.
    token_delta.pop(WSOL_MINT, None)
    quote = {WSOL_MINT: sol, **{m: token_delta.pop(m, 0) for m in STABLE_MINTS}}

    moved = {m: d for m, d in token_delta.items() if d != 0 and decimals.get(m, 0) > 0}
    if len(moved) != 1:  # nothing fungible moved, or token-for-token: not a copyable trade
        return NotATrade("no_token_moved" if not moved else "several_tokens_moved")
    (mint, delta), = moved.items()
    side: Literal["buy", "sell"] = "buy" if delta > 0 else "sell"
    paid = [m for m, d in quote.items() if (d < 0 if side == "buy" else d > 0)]
    if not paid:
        return NotATrade("not_paid")  # W's side did not pay (buy) or was not paid (sell): an airdrop or a transfer
    # Prefer a stablecoin leg: a SOL delta beside it is tips or rent, not the price.
    quote_mint = next((m for m in STABLE_MINTS if m in paid), WSOL_MINT)
    if abs(quote[quote_mint]) > (MAX_LAMPORTS if quote_mint == WSOL_MINT else MAX_STABLE_UNITS):
        return NotATrade("implausible:amount", refused=True)
    source = tx.get("source") if isinstance(tx.get("source"), str) else None
    return Trade(
        signature=tx["signature"],
        wallet=wallet,
        side=side,
        token_mint=mint,
        token_amount=abs(delta),
        token_decimals=decimals[mint],
        quote_mint=quote_mint,
        quote_amount=abs(quote[quote_mint]),
        source=source,
    )
