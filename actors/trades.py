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


def _int(value: object, what: str) -> int:
    if isinstance(value, bool):
        raise InvalidTransaction(f"{what} must be an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            pass
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise InvalidTransaction(f"{what} must be an integer")


def check_shape(tx: object, where: str = "transaction") -> dict[str, Any]:
    """Validate only what classification needs: `signature` and a well-formed `accountData`."""
    if not isinstance(tx, dict):
        raise InvalidTransaction(f"{where} is not a JSON object")
    sig = tx.get("signature")
    if not isinstance(sig, str) or not sig:
        raise InvalidTransaction(f"{where}.signature is missing or not a string")
    if not is_signature(sig):
        raise InvalidTransaction(f"{where}.signature is not a base58 transaction signature")
    data = tx.get("accountData")
    if not isinstance(data, list):
        raise InvalidTransaction(f"{where}.accountData is missing or not an array")
    for i, entry in enumerate(data):
        at = f"{where}.accountData[{i}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("account"), str):
            raise InvalidTransaction(f"{at}.account is missing or not a string")
        _int(entry.get("nativeBalanceChange", 0), f"{at}.nativeBalanceChange")
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
            _int(raw.get("tokenAmount"), f"{cat}.rawTokenAmount.tokenAmount")
            _int(raw.get("decimals"), f"{cat}.rawTokenAmount.decimals")
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
    # WSOL held in W's token accounts is already counted through those accounts' lamports.
    token_delta.pop(WSOL_MINT, None)
    quote = {WSOL_MINT: sol, **{m: token_delta.pop(m, 0) for m in STABLE_MINTS}}

    moved = {m: d for m, d in token_delta.items() if d != 0 and decimals.get(m, 0) > 0}
    if len(moved) != 1:
        return None  # nothing fungible moved, or token-for-token: not a copyable trade
    (mint, delta), = moved.items()
    side: Literal["buy", "sell"] = "buy" if delta > 0 else "sell"
    paid = [m for m, d in quote.items() if (d < 0 if side == "buy" else d > 0)]
    if not paid:
        return None  # W's side did not pay (buy) or was not paid (sell): an airdrop or a transfer
    # Prefer a stablecoin leg: a SOL delta beside it is tips or rent, not the price.
    quote_mint = next((m for m in STABLE_MINTS if m in paid), WSOL_MINT)
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
