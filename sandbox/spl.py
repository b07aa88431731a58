"""SPL Token / Token-2022 as the sandbox chain writes it: the programs, the account layouts (Token-2022 shares
SPL Token's, then adds the account type byte and TLV extensions), the extensions a hazard calls for, and the
instructions' wire encoding (InitializeMint2, InitializeAccount3, MintTo, ThawAccount, SetAuthority and the
Token-2022 extension initialisers)."""

from __future__ import annotations

import struct
from enum import IntEnum
from typing import Iterable, Sequence

from solders.instruction import AccountMeta, Instruction
from solders.pubkey import Pubkey

from sandbox.pools import USDC_MINT, WSOL_MINT, SimToken

TOKEN_PROGRAM = Pubkey.from_string("TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA")
TOKEN_2022_PROGRAM = Pubkey.from_string("TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb")
SYSTEM_PROGRAM = Pubkey.from_string("11111111111111111111111111111111")
TOKEN_PROGRAMS = (TOKEN_PROGRAM, TOKEN_2022_PROGRAM)
NATIVE_MINT = Pubkey.from_string(WSOL_MINT)
USDC = Pubkey.from_string(USDC_MINT)
USDC_DECIMALS = 6

# SPL Token layouts (Token-2022 shares them, then adds the account type byte and TLV extensions)
MINT_LEN = 82
ACCOUNT_LEN = 165
MINT_SUPPLY = slice(36, 44)
ACCOUNT_MINT = slice(0, 32)
ACCOUNT_OWNER = slice(32, 64)
ACCOUNT_AMOUNT = slice(64, 72)
ACCOUNT_STATE = 108  # 0 uninitialized, 1 initialized, 2 frozen
NATIVE_RESERVE = 113  # is_native: COption<u64> at 109 (tag, 4 bytes), the rent-exempt reserve of a WSOL account
ACCOUNT_TYPE = 165  # Token-2022: 1 mint, 2 account
ACCOUNT_TYPE_MINT, ACCOUNT_TYPE_ACCOUNT = 1, 2
TLV_START = 166
STATE_INITIALIZED, STATE_FROZEN = 1, 2


class Ext(IntEnum):
    """Token-2022 `ExtensionType` values used by the sandbox."""

    TRANSFER_FEE_CONFIG = 1
    TRANSFER_FEE_AMOUNT = 2
    DEFAULT_ACCOUNT_STATE = 6
    IMMUTABLE_OWNER = 7
    PERMANENT_DELEGATE = 12
    TRANSFER_HOOK = 14
    TRANSFER_HOOK_ACCOUNT = 15


EXT_LEN = {Ext.TRANSFER_FEE_CONFIG: 108, Ext.TRANSFER_FEE_AMOUNT: 8, Ext.DEFAULT_ACCOUNT_STATE: 1,
           Ext.IMMUTABLE_OWNER: 0, Ext.PERMANENT_DELEGATE: 32, Ext.TRANSFER_HOOK: 64, Ext.TRANSFER_HOOK_ACCOUNT: 1}
ACCOUNT_EXT_FOR = {Ext.TRANSFER_FEE_CONFIG: Ext.TRANSFER_FEE_AMOUNT, Ext.TRANSFER_HOOK: Ext.TRANSFER_HOOK_ACCOUNT}


def space(base: int, extensions: Iterable[Ext]) -> int:
    """Account size for a base layout (`MINT_LEN` or `ACCOUNT_LEN`) plus Token-2022 extensions."""
    exts = list(extensions)
    return base if not exts else ACCOUNT_LEN + 1 + sum(4 + EXT_LEN[e] for e in exts)


def mint_extensions(token: SimToken) -> list[Ext]:
    """The Token-2022 extensions a token's hazards call for, in the order they are initialised."""
    hz = token.hazards
    flags = [(hz.transfer_fee_bps > 0, Ext.TRANSFER_FEE_CONFIG), (hz.permanent_delegate, Ext.PERMANENT_DELEGATE),
             (hz.transfer_hook, Ext.TRANSFER_HOOK), (hz.default_frozen, Ext.DEFAULT_ACCOUNT_STATE)]
    return [ext for on, ext in flags if on]


def account_space(token: SimToken) -> int:
    """The size of a token account of `token`'s mint (the account-side extensions its mint's call for)."""
    return space(ACCOUNT_LEN, [ACCOUNT_EXT_FOR[e] for e in mint_extensions(token) if e in ACCOUNT_EXT_FOR])


# -- instructions ---------------------------------------------------------------------------------------
def opt(key: Pubkey | None) -> bytes:
    """COption<Pubkey> as instruction data: a tag byte, then the key only when present."""
    return b"\x00" if key is None else b"\x01" + bytes(key)


def ix(program: Pubkey, data: bytes, writable: Sequence[Pubkey], readonly: Sequence[Pubkey] = (),
       signer: Pubkey | None = None) -> Instruction:
    metas = [AccountMeta(k, False, True) for k in writable] + [AccountMeta(k, False, False) for k in readonly]
    if signer is not None:
        metas.append(AccountMeta(signer, True, False))
    return Instruction(program, data, metas)


def initialize_mint2(program: Pubkey, mint: Pubkey, decimals: int, authority: Pubkey, freeze: Pubkey | None) -> Instruction:
    return ix(program, bytes([20, decimals]) + bytes(authority) + opt(freeze), [mint])


def initialize_account3(program: Pubkey, account: Pubkey, mint: Pubkey, owner: Pubkey) -> Instruction:
    return ix(program, bytes([18]) + bytes(owner), [account], [mint])


def mint_to(program: Pubkey, mint: Pubkey, account: Pubkey, amount: int, authority: Pubkey) -> Instruction:
    return ix(program, bytes([7]) + struct.pack("<Q", amount), [mint, account], signer=authority)


def thaw_account(program: Pubkey, account: Pubkey, mint: Pubkey, authority: Pubkey) -> Instruction:
    return ix(program, bytes([11]), [account], [mint], signer=authority)


def set_authority(program: Pubkey, mint: Pubkey, kind: int, new: Pubkey | None, authority: Pubkey) -> Instruction:
    """SetAuthority on a mint: kind 0 MintTokens, 1 FreezeAccount; `new` None revokes it."""
    return ix(program, bytes([6, kind]) + opt(new), [mint], signer=authority)


def extension_init(program: Pubkey, mint: Pubkey, ext: Ext, token: SimToken, creator: Pubkey, hook: Pubkey) -> Instruction:
    """The Token-2022 initialiser of one mint extension, before InitializeMint2."""
    data = {
        Ext.TRANSFER_FEE_CONFIG: bytes([26, 0]) + opt(creator) + opt(creator)
        + struct.pack("<HQ", token.hazards.transfer_fee_bps, token.supply),
        Ext.PERMANENT_DELEGATE: bytes([35]) + bytes(creator),
        Ext.TRANSFER_HOOK: bytes([36, 0]) + bytes(creator) + bytes(hook),
        Ext.DEFAULT_ACCOUNT_STATE: bytes([28, 0, STATE_FROZEN]),
    }[ext]
    return ix(program, data, [mint])
