"""Accounts as the sandbox's RPC shows them: the LiteSVM's bytes encoded (`binary`, `base58`, `base64`) or parsed
(`jsonParsed`) the way Agave's account decoder does (parse_token.rs / parse_token_extension.rs), so `base64` and
`jsonParsed` always agree.
"""

from __future__ import annotations

import base64
import struct
from typing import Callable

import base58
from solders.account import Account
from solders.pubkey import Pubkey
from solders.token.state import Mint, TokenAccount, TokenAccountState

from sandbox.chain import Chain
from sandbox.jsonrpc import Json, invalid
from sandbox.spl import (
    ACCOUNT_LEN,
    ACCOUNT_TYPE,
    ACCOUNT_TYPE_ACCOUNT,
    ACCOUNT_TYPE_MINT,
    MINT_LEN,
    TLV_START,
    TOKEN_2022_PROGRAM,
    TOKEN_PROGRAM,
    Ext,
)

U64_MAX = 2**64 - 1
MAX_BASE58_BYTES = 128
PROGRAM_NAMES = {TOKEN_PROGRAM: "spl-token", TOKEN_2022_PROGRAM: "spl-token-2022"}
STATES = ("uninitialized", "initialized", "frozen")  # by AccountState value


# -- token account parsing (Agave's account-decoder, parse_token.rs / parse_token_extension.rs) ---------------
def ui_amount(amount: int, decimals: int) -> dict[str, Json]:
    digits = str(amount).rjust(decimals + 1, "0")
    whole, frac = (digits[:-decimals], digits[-decimals:].rstrip("0")) if decimals else (digits, "")
    return {"amount": str(amount), "decimals": decimals, "uiAmount": amount / 10**decimals,
            "uiAmountString": f"{whole}.{frac}" if frac else whole}


def _key(raw: bytes) -> str | None:
    """An OptionalNonZeroPubkey: all zeroes is None."""
    return None if raw == bytes(32) else str(Pubkey.from_bytes(raw))


def _fee(raw: bytes) -> dict[str, int]:
    epoch, maximum, bps = struct.unpack("<QQH", raw)
    return {"epoch": epoch, "maximumFee": maximum, "transferFeeBasisPoints": bps}


def _extension(kind: int, v: bytes) -> dict[str, Json]:
    if kind == Ext.TRANSFER_FEE_CONFIG:
        state = {"transferFeeConfigAuthority": _key(v[0:32]), "withdrawWithheldAuthority": _key(v[32:64]),
                 "withheldAmount": struct.unpack("<Q", v[64:72])[0], "olderTransferFee": _fee(v[72:90]),
                 "newerTransferFee": _fee(v[90:108])}
        return {"extension": "transferFeeConfig", "state": state}
    if kind == Ext.TRANSFER_FEE_AMOUNT:
        return {"extension": "transferFeeAmount", "state": {"withheldAmount": struct.unpack("<Q", v[:8])[0]}}
    if kind == Ext.DEFAULT_ACCOUNT_STATE:
        return {"extension": "defaultAccountState", "state": {"accountState": STATES[v[0]]}}
    if kind == Ext.IMMUTABLE_OWNER:
        return {"extension": "immutableOwner"}
    if kind == Ext.PERMANENT_DELEGATE:
        return {"extension": "permanentDelegate", "state": {"delegate": _key(v[:32])}}
    if kind == Ext.TRANSFER_HOOK:
        return {"extension": "transferHook", "state": {"authority": _key(v[:32]), "programId": _key(v[32:64])}}
    if kind == Ext.TRANSFER_HOOK_ACCOUNT:
        return {"extension": "transferHookAccount", "state": {"transferring": bool(v[0])}}
    return {"extension": "unparseableExtension"}


def extensions(data: bytes) -> list[dict[str, Json]]:
    """The Token-2022 TLV extensions after the account type byte."""
    out, i = [], TLV_START
    while i + 4 <= len(data):
        kind, length = struct.unpack_from("<HH", data, i)
        if kind == 0:
            break
        out.append(_extension(kind, data[i + 4:i + 4 + length]))
        i += 4 + length
    return out


def token_kind(program: Pubkey, data: bytes) -> str | None:
    """"mint", "account", or None for data a token program owns."""
    if program not in PROGRAM_NAMES:
        return None
    if len(data) in (MINT_LEN, ACCOUNT_LEN):
        return "mint" if len(data) == MINT_LEN else "account"
    if program == TOKEN_2022_PROGRAM and len(data) > ACCOUNT_LEN:
        return {ACCOUNT_TYPE_MINT: "mint", ACCOUNT_TYPE_ACCOUNT: "account"}.get(data[ACCOUNT_TYPE])
    return None


def parse_token(program: Pubkey, data: bytes, decimals: Callable[[Pubkey], int | None]) -> dict[str, Json] | None:
    """The `parsed` object of a mint or token account, or None when it does not parse."""
    kind = token_kind(program, data)
    try:
        if kind == "mint":
            m = Mint.from_bytes(data[:MINT_LEN])
            if not m.is_initialized:
                return None
            info: dict[str, Json] = {
                "mintAuthority": str(m.mint_authority) if m.mint_authority else None, "supply": str(m.supply),
                "decimals": m.decimals, "isInitialized": True,
                "freezeAuthority": str(m.freeze_authority) if m.freeze_authority else None}
        elif kind == "account":
            a = TokenAccount.from_bytes(data[:ACCOUNT_LEN])
            dec = decimals(a.mint)
            if a.state == TokenAccountState.Uninitialized or dec is None:
                return None
            info = {"isNative": a.is_native is not None, "mint": str(a.mint), "owner": str(a.owner),
                    "state": STATES[int(a.state)], "tokenAmount": ui_amount(a.amount, dec)}
            if a.delegate:
                info["delegate"] = str(a.delegate)
                info["delegatedAmount"] = ui_amount(a.delegated_amount, dec)
            if a.close_authority:
                info["closeAuthority"] = str(a.close_authority)
        else:
            return None
    except ValueError:
        return None
    if exts := extensions(data):
        info["extensions"] = exts
    return {"type": kind, "info": info}


# -- encoding ------------------------------------------------------------------------------------------
def _mint_decimals(chain: Chain) -> Callable[[Pubkey], int | None]:
    def decimals(mint: Pubkey) -> int | None:
        acc = chain.account(mint)
        data = bytes(acc.data) if acc else b""
        return data[44] if acc and token_kind(acc.owner, data) == "mint" else None
    return decimals


def ui_account(chain: Chain, acc: Account, encoding: str) -> dict[str, Json]:
    data = bytes(acc.data)
    ui: Json = None
    if encoding == "jsonParsed":
        parsed = parse_token(acc.owner, data, _mint_decimals(chain))
        if parsed is not None:
            ui = {"program": PROGRAM_NAMES[acc.owner], "parsed": parsed, "space": len(data)}
    elif encoding in ("binary", "base58"):
        if len(data) > MAX_BASE58_BYTES:
            raise invalid(f"Encoded binary (base 58) data should be less than {MAX_BASE58_BYTES} bytes, "
                          "please use Base64 encoding.")
        text = base58.b58encode(data).decode()
        ui = text if encoding == "binary" else [text, "base58"]
    if ui is None:
        ui = [base64.b64encode(data).decode(), "base64"]
    return {"data": ui, "executable": acc.executable, "lamports": acc.lamports, "owner": str(acc.owner),
            "rentEpoch": U64_MAX, "space": len(data)}
