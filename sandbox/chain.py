"""The sandbox's Solana chain: the market's mints and token accounts as real SPL Token / Token-2022 accounts
in an in-process `solders.litesvm.LiteSVM`, read by the JSON-RPC server (`sandbox/rpc.py`).

Construction runs real transactions through the built-in token programs: the Token-2022 extension
initialisers, InitializeMint2, InitializeAccount3, ThawAccount, MintTo and SetAuthority. Only the space of a
new account is allocated with `set_account` (a `create_account` would need the new address to sign, and the
sandbox's addresses are hashes without keys). As the market moves, `apply_trade` and `sync_token` patch the
amount field of the existing, program-initialised account bytes.

The sandbox's payer keypair is the first mint and freeze authority of every mint: it mints the supply to the
pool vault and holders, thaws default-frozen accounts, then hands each authority to the token's creator
(when the hazard keeps it) or revokes it. A default-frozen mint always keeps a freeze authority, because
Token-2022 refuses one without.

Token amounts follow the market, which does not conserve tokens (simulated traders have no accounts), so the
accounts need not add up to the mint's supply; the supply is always `token.supply`.

Thread-safe: every access to the VM is under `lock`. Writers take `market.lock` before `lock`, readers take
only `lock`, so the two never deadlock.
"""

from __future__ import annotations

import struct
import threading
from enum import IntEnum
from typing import Iterable, Sequence

from solders.account import Account
from solders.instruction import AccountMeta, Instruction
from solders.keypair import Keypair
from solders.litesvm import LiteSVM
from solders.message import Message
from solders.pubkey import Pubkey
from solders.transaction import Transaction
from solders.transaction_metadata import FailedTransactionMetadata

from sandbox.market import LAMPORTS, LeaderTrade, Market, SimToken, pubkey

TOKEN_PROGRAM = Pubkey.from_string("TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA")
TOKEN_2022_PROGRAM = Pubkey.from_string("TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb")
SYSTEM_PROGRAM = Pubkey.from_string("11111111111111111111111111111111")
TOKEN_PROGRAMS = (TOKEN_PROGRAM, TOKEN_2022_PROGRAM)

# SPL Token layouts (Token-2022 shares them, then adds the account type byte and TLV extensions)
MINT_LEN = 82
ACCOUNT_LEN = 165
MINT_SUPPLY = slice(36, 44)
ACCOUNT_MINT = slice(0, 32)
ACCOUNT_OWNER = slice(32, 64)
ACCOUNT_AMOUNT = slice(64, 72)
ACCOUNT_STATE = 108  # 0 uninitialized, 1 initialized, 2 frozen
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

LEADER_LAMPORTS = 100 * LAMPORTS
SETUP_BATCH = 6  # token accounts per setup transaction (the 1232-byte limit)


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


def token_account_address(owner: str, mint: str) -> str:
    """The sandbox's deterministic token account of `owner` for `mint` (as `LeaderTrade.token_account`)."""
    return pubkey(f"ata:{owner}:{mint}")


# -- instructions (SPL Token / Token-2022 wire encoding) -------------------------------------------------
def _opt(key: Pubkey | None) -> bytes:
    """COption<Pubkey> as instruction data: a tag byte, then the key only when present."""
    return b"\x00" if key is None else b"\x01" + bytes(key)


def _ix(program: Pubkey, data: bytes, writable: Sequence[Pubkey], readonly: Sequence[Pubkey] = (),
        signer: Pubkey | None = None) -> Instruction:
    metas = [AccountMeta(k, False, True) for k in writable] + [AccountMeta(k, False, False) for k in readonly]
    if signer is not None:
        metas.append(AccountMeta(signer, True, False))
    return Instruction(program, data, metas)


class Chain:
    """The market's tokens as on-chain accounts in a LiteSVM, kept in step with the market."""

    def __init__(self, market: Market, leader_lamports: int = LEADER_LAMPORTS) -> None:
        self.market = market
        self.lock = threading.RLock()
        self.svm = LiteSVM()
        self.payer = Keypair.from_seed(bytes(32))  # the sandbox's own authority and fee payer
        self._statuses: dict[str, tuple[int, str | None]] = {}  # signature -> (slot, error or None)
        self.trades: dict[str, LeaderTrade] = {}  # the leaders' trades applied, in order (RPC history, Helius parsing)
        with market.lock, self.lock:
            self._tick()
            for key, lamports in [(self.payer.pubkey(), 1_000 * LAMPORTS)] + [
                    (Pubkey.from_string(leader.address), leader_lamports) for leader in market.leaders]:
                if isinstance(self.svm.airdrop(key, lamports), FailedTransactionMetadata):
                    raise RuntimeError(f"sandbox chain: airdrop to {key} failed")
            for token in market.tokens.values():
                self._create_token(token)

    # -- reads (the RPC server) -------------------------------------------------------------------------
    def slot(self) -> int:
        return self.market.slot  # an int read: no market lock, so readers never wait on a stepping market

    def account(self, address: str | Pubkey) -> Account | None:
        key = address if isinstance(address, Pubkey) else Pubkey.from_string(address)
        with self.lock:
            return self.svm.get_account(key)

    def program_accounts(self, program: Pubkey) -> list[tuple[Pubkey, Account]]:
        with self.lock:
            return list(self.svm.get_program_accounts(program))

    def latest_blockhash(self) -> str:
        with self.lock:
            return str(self.svm.latest_blockhash())

    def status(self, signature: str) -> tuple[int, str | None] | None:
        """(slot, error or None) of a known transaction, or None."""
        with self.lock:
            return self._statuses.get(signature)

    def record(self, signature: str, slot: int, err: str | None = None) -> None:
        with self.lock:
            self._statuses[signature] = (slot, err)

    # -- writes (following the market) --------------------------------------------------------------------
    def apply_trade(self, trade: LeaderTrade) -> None:
        """The leader's token account, SOL and the pool vault after one of the market's trades."""
        with self.market.lock, self.lock:
            token = self.market.tokens[trade.mint]
            held = trade.holding_before + (trade.token_amount if trade.side == "buy" else -trade.token_amount)
            self._ensure_account(token, trade.token_account, trade.leader)
            self._set_amount(trade.token_account, max(0, held))
            self._set_amount(token.pool.base_vault, token.pool.base_reserve)
            if token.quote == "SOL":
                delta = trade.quote_amount if trade.side == "sell" else -trade.quote_amount
                self._add_lamports(trade.leader, delta)
            self._statuses[trade.signature] = (trade.slot, None)
            self.trades[trade.signature] = trade
            self._tick()

    def sync_token(self, mint: str) -> None:
        """Every sandbox token account of a mint (vault, holders, leaders) to the market's amounts."""
        with self.market.lock, self.lock:
            token = self.market.tokens[mint]
            expected = dict(token.holders)
            for leader in self.market.leaders:
                expected[leader.address] = expected.get(leader.address, 0) + leader.holdings.get(mint, 0)
            for addr, acc in self._token_accounts(mint):
                owner = str(Pubkey.from_bytes(bytes(acc.data)[ACCOUNT_OWNER]))
                if addr == token.pool.base_vault:
                    self._set_amount(addr, token.pool.base_reserve)
                elif owner not in expected and addr == token_account_address(owner, mint):
                    self._set_amount(addr, 0)  # a holder who sold out (after a rug: the creator)
            for owner, amount in expected.items():
                addr = token_account_address(owner, mint)
                if amount or self.account(addr):
                    self._ensure_account(token, addr, owner)
                    self._set_amount(addr, amount)
            self._set_supply(mint, token.supply)
            self._tick()

    def sync(self) -> None:
        """`sync_token` for every token."""
        with self.market.lock, self.lock:
            for mint in self.market.tokens:
                self.sync_token(mint)

    # -- internals ------------------------------------------------------------------------------------
    def _tick(self) -> None:
        if self.svm.get_clock().slot != self.market.slot:
            self.svm.warp_to_slot(self.market.slot)

    def _program(self, token: SimToken) -> Pubkey:
        return TOKEN_2022_PROGRAM if token.hazards.token2022 else TOKEN_PROGRAM

    def _send(self, instructions: list[Instruction]) -> None:
        tx = Transaction([self.payer], Message(instructions, self.payer.pubkey()), self.svm.latest_blockhash())
        result = self.svm.send_transaction(tx)
        if isinstance(result, FailedTransactionMetadata):
            raise RuntimeError(f"sandbox chain transaction failed: {result.err()} {result.meta().logs()}")
        self._statuses[str(tx.signatures[0])] = (self.market.slot, None)

    def _allocate(self, address: str, size: int, program: Pubkey) -> Pubkey:
        """What `create_account` leaves behind: a zeroed, rent-exempt account owned by `program`."""
        key = Pubkey.from_string(address)
        self.svm.set_account(key, Account(self.svm.minimum_balance_for_rent_exemption(size), bytes(size), program))
        return key

    def _create_token(self, token: SimToken) -> None:
        hz, program, payer = token.hazards, self._program(token), self.payer.pubkey()
        creator = Pubkey.from_string(token.creator)
        exts = mint_extensions(token)
        mint = self._allocate(token.mint, space(MINT_LEN, exts), program)
        init = {
            Ext.TRANSFER_FEE_CONFIG: bytes([26, 0]) + _opt(creator) + _opt(creator)
            + struct.pack("<HQ", hz.transfer_fee_bps, token.supply),
            Ext.PERMANENT_DELEGATE: bytes([35]) + bytes(creator),
            Ext.TRANSFER_HOOK: bytes([36, 0]) + bytes(creator) + bytes(Pubkey.from_string(pubkey(f"hook:{token.mint}"))),
            Ext.DEFAULT_ACCOUNT_STATE: bytes([28, 0, STATE_FROZEN]),
        }
        freezes = hz.freeze_authority or hz.default_frozen
        ixs = [_ix(program, init[e], [mint]) for e in exts]
        ixs.append(_ix(program, bytes([20, token.decimals]) + bytes(payer) + _opt(payer if freezes else None), [mint]))
        self._send(ixs)

        holdings = [(token.pool.base_vault, token.pool.address, token.pool.base_reserve)]
        holdings += [(token_account_address(o, token.mint), o, a) for o, a in token.holders.items()]
        holdings += [(token_account_address(ld.address, token.mint), ld.address, ld.holdings[token.mint])
                     for ld in self.market.leaders if ld.holdings.get(token.mint)]
        size = space(ACCOUNT_LEN, [ACCOUNT_EXT_FOR[e] for e in exts if e in ACCOUNT_EXT_FOR])
        for i in range(0, len(holdings), SETUP_BATCH):
            ixs = []
            for address, owner, amount in holdings[i:i + SETUP_BATCH]:
                acc = self._allocate(address, size, program)
                ixs.append(_ix(program, bytes([18]) + bytes(Pubkey.from_string(owner)), [acc], [mint]))
                if hz.default_frozen:
                    ixs.append(_ix(program, bytes([11]), [acc], [mint], signer=payer))  # ThawAccount
                if amount:
                    ixs.append(_ix(program, bytes([7]) + struct.pack("<Q", amount), [mint, acc], signer=payer))
            self._send(ixs)

        def set_authority(kind: int, new: Pubkey | None) -> Instruction:
            return _ix(program, bytes([6, kind]) + _opt(new), [mint], signer=payer)

        last = [set_authority(0, creator if hz.mint_authority else None)]  # MintTokens
        if freezes:
            last.append(set_authority(1, creator))  # FreezeAccount
        self._send(last)
        self._set_supply(token.mint, token.supply)

    def _ensure_account(self, token: SimToken, address: str, owner: str) -> None:
        """Create and initialise a token account unless it exists; the sandbox thaws default-frozen ones."""
        if self.account(address) is not None:
            return
        program, exts = self._program(token), mint_extensions(token)
        size = space(ACCOUNT_LEN, [ACCOUNT_EXT_FOR[e] for e in exts if e in ACCOUNT_EXT_FOR])
        acc = self._allocate(address, size, program)
        mint = Pubkey.from_string(token.mint)
        self._send([_ix(program, bytes([18]) + bytes(Pubkey.from_string(owner)), [acc], [mint])])
        if token.hazards.default_frozen:
            self._patch(address, ACCOUNT_STATE, bytes([STATE_INITIALIZED]))

    def _token_accounts(self, mint: str) -> list[tuple[str, Account]]:
        key = bytes(Pubkey.from_string(mint))
        return [(str(k), a) for p in TOKEN_PROGRAMS for k, a in self.svm.get_program_accounts(p)
                if len(a.data) >= ACCOUNT_LEN and bytes(a.data)[ACCOUNT_MINT] == key
                and (len(a.data) == ACCOUNT_LEN or a.data[ACCOUNT_TYPE] == ACCOUNT_TYPE_ACCOUNT)]

    def _patch(self, address: str, offset: int, value: bytes) -> None:
        key = Pubkey.from_string(address)
        acc = self.svm.get_account(key)
        assert acc is not None, address
        data = bytearray(acc.data)
        if data[offset:offset + len(value)] != value:
            data[offset:offset + len(value)] = value
            self.svm.set_account(key, Account(acc.lamports, bytes(data), acc.owner, acc.executable, acc.rent_epoch))

    def _set_amount(self, address: str, amount: int) -> None:
        self._patch(address, ACCOUNT_AMOUNT.start, struct.pack("<Q", amount))

    def _set_supply(self, mint: str, supply: int) -> None:
        self._patch(mint, MINT_SUPPLY.start, struct.pack("<Q", supply))

    def _add_lamports(self, address: str, delta: int) -> None:
        key = Pubkey.from_string(address)
        acc = self.svm.get_account(key)
        lamports = max(0, (acc.lamports if acc else 0) + delta)
        self.svm.set_account(key, Account(lamports, b"", SYSTEM_PROGRAM))
