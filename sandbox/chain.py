"""The sandbox's Solana chain: the market's mints and token accounts as real SPL Token / Token-2022 accounts
in an in-process `solders.litesvm.LiteSVM`, read by the JSON-RPC server (`sandbox/rpc.py`), and executing the
swaps the sandbox's Jupiter builds (`sandbox/swaps.py`, `sandbox/execution.py`).

What is on chain: every token's mint, its pool's vaults and its holders' accounts; the WSOL native mint
(`So111…112`, as on mainnet) and a USDC mint (`EPjF…t1v`, decimals 6); each pool's quote vault (a native WSOL
account holding the pool's SOL as lamports, or a USDC account); the sandbox's SOL/USDC pool
(`market.sol_pool`); the leaders' SOL; and Jito's 8 tip accounts (rent-exempt, so a tip can land).
A pool's address is a real keypair's public key (`sandbox.market.pool_keypair`) and its vaults are that
address's associated token accounts, so the swaps can move tokens out of them with the pool's signature.
`airdrop(pubkey, lamports)` funds any wallet (the JSON-RPC `requestAirdrop` too).

Blocks, slots and blockhashes: `sandbox/blocks.py` (wall-clock blocks, 150-block blockhash validity). LiteSVM's
own blockhash check is off: `sandbox.execution` checks the blockhash against those blocks.

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
from dataclasses import dataclass
from typing import Any

from solders.account import Account
from solders.instruction import Instruction
from solders.keypair import Keypair
from solders.litesvm import LiteSVM
from solders.message import Message
from solders.pubkey import Pubkey
from solders.transaction import Transaction
from solders.transaction_metadata import FailedTransactionMetadata

from sandbox.blocks import BLOCK_TIME_S, HEIGHT_BELOW_SLOT, BlockClock
from sandbox.market import LAMPORTS, USDC_MINT, LeaderTrade, Market, Pool, SimToken, pubkey
from sandbox.spl import (
    ACCOUNT_AMOUNT,
    ACCOUNT_LEN,
    ACCOUNT_MINT,
    ACCOUNT_OWNER,
    ACCOUNT_STATE,
    ACCOUNT_TYPE,
    ACCOUNT_TYPE_ACCOUNT,
    MINT_LEN,
    MINT_SUPPLY,
    NATIVE_MINT,
    NATIVE_RESERVE,
    STATE_INITIALIZED,
    SYSTEM_PROGRAM,
    TOKEN_2022_PROGRAM,
    TOKEN_PROGRAM,
    TOKEN_PROGRAMS,
    USDC,
    USDC_DECIMALS,
    account_space,
    extension_init,
    initialize_account3,
    initialize_mint2,
    mint_extensions,
    mint_to,
    set_authority,
    space,
    thaw_account,
)

__all__ = ["JITO_TIP_ACCOUNTS", "LEADER_LAMPORTS", "NATIVE_MINT", "TOKEN_2022_PROGRAM", "TOKEN_PROGRAM", "TOKEN_PROGRAMS",
           "Chain", "Landed", "token_account_address"]

LEADER_LAMPORTS = 100 * LAMPORTS
SETUP_BATCH = 6  # token accounts per setup transaction (the 1232-byte limit)
# Jito's mainnet tip accounts: a swap built with `jitoTipLamports` pays one of them.
JITO_TIP_ACCOUNTS = tuple(Pubkey.from_string(a) for a in (
    "96gYZGLnJYVFmbjzopPSU6QiEV5fGqZNyN9nmNhvrZU5", "HFqU5x63VTqvQss8hp11i4wVV8bD44PvwucfZ2bU7gRe",
    "Cw8CFyM9FkoMi7K7Crf6HNQqf4uEMzpKw6QNghXLvLkY", "ADaUMid9yfUytqMBgopwjb2DTLSokTSzL1zt6iGPaS49",
    "DfXygSm4jCyNCybVYYK6DwvWqjKee8pbDmJGcLWNDXjh", "ADuUkR4vqLUMWXxW9gh6D6L8pMSawimctcNZ5pGwDcEt",
    "DttWaMuVvTiduZRnguLF7jNxTgiMBZ1hyAumKUiL2KRL", "3AVi9Tg9Uo68tJfuvoKvqKNWKkC5wPdSSdeBnizKZ6jT"))


@dataclass
class Landed:
    """A transaction that landed: where, and with what outcome."""

    slot: int
    height: int  # the block height it landed in (its confirmations count from here)
    err: Any = None  # the TransactionError as RPC JSON (e.g. {"InstructionError": [4, {"Custom": 1}]}); None: success
    visible_at: int = 0  # the RPC reports it from this height on (a late-confirmation fault sets it later)


def token_account_address(owner: str, mint: str) -> str:
    """The sandbox's deterministic token account of `owner` for `mint` (as `LeaderTrade.token_account`)."""
    return pubkey(f"ata:{owner}:{mint}")


class Chain:
    """The market's tokens as on-chain accounts in a LiteSVM, kept in step with the market."""

    def __init__(self, market: Market, leader_lamports: int = LEADER_LAMPORTS,
                 block_time_s: float | None = BLOCK_TIME_S) -> None:
        self.market = market
        self.lock = threading.RLock()
        self.svm = LiteSVM().with_blockhash_check(False)  # blockhashes are `blocks`' (see sandbox.execution)
        self.blocks = BlockClock(market.seed, market.slot - HEIGHT_BELOW_SLOT, block_time_s)
        self.payer = Keypair.from_seed(bytes(32))  # the sandbox's own authority and fee payer
        self.statuses: dict[str, Landed] = {}  # signature -> where it landed (market trades and executed ones)
        self.transactions: dict[str, Any] = {}  # signature -> sandbox.execution.Executed, for getTransaction
        self.builds: dict[bytes, Any] = {}  # sha256(message) -> sandbox.swaps.Build: what /swap built, by message
        self.trades: dict[str, LeaderTrade] = {}  # the leaders' trades applied, in order (RPC history, Helius parsing)
        with market.lock, self.lock:
            self._tick()
            rent = self.svm.minimum_balance_for_rent_exemption(0)
            for key, lamports in [(self.payer.pubkey(), 1_000 * LAMPORTS)] + [
                    (Pubkey.from_string(leader.address), leader_lamports) for leader in market.leaders] + [
                    (tip, rent) for tip in JITO_TIP_ACCOUNTS]:
                self._airdrop(key, lamports)
            self._create_quote_mints()
            for token in market.tokens.values():
                self._create_token(token)
            pool = market.sol_pool
            self._create_quote_vault(pool, pool.base_vault, NATIVE_MINT, pool.base_reserve)
            self._create_quote_vault(pool, pool.quote_vault, USDC, pool.quote_reserve)

    # -- reads (the RPC server) -------------------------------------------------------------------------
    def slot(self) -> int:
        """The market's slot plus the blocks produced (no market lock: readers never wait on a stepping market)."""
        return self.market.slot + self.blocks.produced()

    def height(self) -> int:
        return self.blocks.height()

    def account(self, address: str | Pubkey) -> Account | None:
        key = address if isinstance(address, Pubkey) else Pubkey.from_string(address)
        with self.lock:
            return self.svm.get_account(key)

    def program_accounts(self, program: Pubkey) -> list[tuple[Pubkey, Account]]:
        with self.lock:
            return list(self.svm.get_program_accounts(program))

    def status(self, signature: str) -> Landed | None:
        """Where a known transaction landed, or None."""
        with self.lock:
            return self.statuses.get(signature)

    def record(self, signature: str, slot: int, err: Any = None, visible_at: int | None = None) -> Landed:
        with self.lock:
            height = self.height()
            landed = Landed(slot, height, err, height if visible_at is None else visible_at)
            self.statuses[signature] = landed
            return landed

    def airdrop(self, pubkey: str | Pubkey, lamports: int) -> str:
        """Fund a wallet (the sandbox's faucet): returns the airdrop transaction's signature, which lands at once."""
        key = pubkey if isinstance(pubkey, Pubkey) else Pubkey.from_string(pubkey)
        if lamports <= 0:
            raise ValueError("an airdrop needs a positive number of lamports")
        with self.lock:
            signature = self._airdrop(key, lamports)
            self.record(signature, self.slot())
            return signature

    # -- writes (following the market) --------------------------------------------------------------------
    def apply_trade(self, trade: LeaderTrade) -> None:
        """The leader's token account, SOL and the pool vault after one of the market's trades."""
        with self.market.lock, self.lock:
            token = self.market.tokens[trade.mint]
            held = trade.holding_before + (trade.token_amount if trade.side == "buy" else -trade.token_amount)
            self._ensure_account(token, trade.token_account, trade.leader)
            self._set_amount(trade.token_account, max(0, held))
            self.sync_pool(token.pool)
            if token.quote == "SOL":
                delta = trade.quote_amount if trade.side == "sell" else -trade.quote_amount
                self._add_lamports(trade.leader, delta)
            self.record(trade.signature, trade.slot)
            self.trades[trade.signature] = trade
            self._tick()

    def sync_token(self, mint: str) -> None:
        """Every sandbox token account of a mint (vault, holders, leaders) to the market's amounts."""
        with self.market.lock, self.lock:
            token = self.market.tokens[mint]
            expected = dict(token.holders)
            for leader in self.market.leaders:
                expected[leader.address] = expected.get(leader.address, 0) + leader.holdings.get(mint, 0)
            self.sync_pool(token.pool)
            for addr, acc in self._token_accounts(mint):
                owner = str(Pubkey.from_bytes(bytes(acc.data)[ACCOUNT_OWNER]))
                if owner not in expected and addr == token_account_address(owner, mint):
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

    def sync_pool(self, pool: Pool) -> None:
        """A pool's vaults to its reserves (a WSOL vault's lamports too: a native account holds its SOL as
        lamports, its rent-exempt reserve + the amount)."""
        with self.market.lock, self.lock:
            self._set_vault(pool.base_vault, pool.base_reserve)
            self._set_vault(pool.quote_vault, pool.quote_reserve)

    # -- internals ------------------------------------------------------------------------------------
    def _tick(self) -> None:
        slot = self.slot()
        if self.svm.get_clock().slot != slot:
            self.svm.warp_to_slot(slot)

    def _airdrop(self, key: Pubkey, lamports: int) -> str:
        result = self.svm.airdrop(key, lamports)
        if isinstance(result, FailedTransactionMetadata):
            raise RuntimeError(f"sandbox chain: airdrop to {key} failed: {result.err()}")
        return str(result.signature())

    def _program(self, token: SimToken) -> Pubkey:
        return TOKEN_2022_PROGRAM if token.hazards.token2022 else TOKEN_PROGRAM

    def _send(self, instructions: list[Instruction]) -> None:
        tx = Transaction([self.payer], Message(instructions, self.payer.pubkey()), self.svm.latest_blockhash())
        result = self.svm.send_transaction(tx)
        if isinstance(result, FailedTransactionMetadata):
            raise RuntimeError(f"sandbox chain transaction failed: {result.err()} {result.meta().logs()}")
        self.record(str(tx.signatures[0]), self.slot())

    def _allocate(self, address: str, size: int, program: Pubkey, extra_lamports: int = 0) -> Pubkey:
        """What `create_account` leaves behind: a zeroed, rent-exempt account owned by `program`."""
        key = Pubkey.from_string(address)
        lamports = self.svm.minimum_balance_for_rent_exemption(size) + extra_lamports
        self.svm.set_account(key, Account(lamports, bytes(size), program))
        return key

    def _create_quote_mints(self) -> None:
        """The WSOL native mint (as mainnet has it: no authority, 9 decimals) and a USDC mint (decimals 6; the
        sandbox's payer is its mint and freeze authority, as Circle is USDC's)."""
        native = struct.pack("<I32sQBBI32s", 0, bytes(32), 0, 9, 1, 0, bytes(32))
        self.svm.set_account(NATIVE_MINT, Account(self.svm.minimum_balance_for_rent_exemption(MINT_LEN), native,
                                                  TOKEN_PROGRAM))
        payer = self.payer.pubkey()
        self._allocate(USDC_MINT, MINT_LEN, TOKEN_PROGRAM)
        self._send([initialize_mint2(TOKEN_PROGRAM, USDC, USDC_DECIMALS, payer, payer)])

    def _create_quote_vault(self, pool: Pool, address: str, mint: Pubkey, amount: int) -> None:
        """A pool's WSOL vault (a native account: its SOL is its lamports) or USDC vault (minted to)."""
        native = mint == NATIVE_MINT
        acc = self._allocate(address, ACCOUNT_LEN, TOKEN_PROGRAM, amount if native else 0)
        ixs = [initialize_account3(TOKEN_PROGRAM, acc, mint, Pubkey.from_string(pool.address))]
        if not native and amount:
            ixs.append(mint_to(TOKEN_PROGRAM, mint, acc, amount, self.payer.pubkey()))
        self._send(ixs)

    def _create_token(self, token: SimToken) -> None:
        """A token's mint (its extensions, then InitializeMint2), its holders' accounts minted to, its authorities
        handed to the creator or revoked, its pool's quote vault."""
        mint = self._create_mint(token)
        self._create_holders(token, mint)
        hz, program, payer = token.hazards, self._program(token), self.payer.pubkey()
        creator = Pubkey.from_string(token.creator)
        last = [set_authority(program, mint, 0, creator if hz.mint_authority else None, payer)]  # MintTokens
        if hz.freeze_authority or hz.default_frozen:
            last.append(set_authority(program, mint, 1, creator, payer))  # FreezeAccount
        self._send(last)
        self._set_supply(token.mint, token.supply)
        self._create_quote_vault(token.pool, token.pool.quote_vault, NATIVE_MINT if token.quote == "SOL" else USDC,
                                 token.pool.quote_reserve)

    def _create_mint(self, token: SimToken) -> Pubkey:
        hz, program, payer = token.hazards, self._program(token), self.payer.pubkey()
        creator = Pubkey.from_string(token.creator)
        hook = Pubkey.from_string(pubkey(f"hook:{token.mint}"))
        exts = mint_extensions(token)
        mint = self._allocate(token.mint, space(MINT_LEN, exts), program)
        ixs = [extension_init(program, mint, e, token, creator, hook) for e in exts]
        freeze = payer if hz.freeze_authority or hz.default_frozen else None
        ixs.append(initialize_mint2(program, mint, token.decimals, payer, freeze))
        self._send(ixs)
        return mint

    def _create_holders(self, token: SimToken, mint: Pubkey) -> None:
        """The pool vault's, the holders' and the leaders' accounts, a few per transaction, thawed and minted to."""
        program, payer = self._program(token), self.payer.pubkey()
        holdings = [(token.pool.base_vault, token.pool.address, token.pool.base_reserve)]
        holdings += [(token_account_address(o, token.mint), o, a) for o, a in token.holders.items()]
        holdings += [(token_account_address(ld.address, token.mint), ld.address, ld.holdings[token.mint])
                     for ld in self.market.leaders if ld.holdings.get(token.mint)]
        size = account_space(token)
        for i in range(0, len(holdings), SETUP_BATCH):
            ixs: list[Instruction] = []
            for address, owner, amount in holdings[i:i + SETUP_BATCH]:
                acc = self._allocate(address, size, program)
                ixs.append(initialize_account3(program, acc, mint, Pubkey.from_string(owner)))
                if token.hazards.default_frozen:
                    ixs.append(thaw_account(program, acc, mint, payer))
                if amount:
                    ixs.append(mint_to(program, mint, acc, amount, payer))
            self._send(ixs)

    def _ensure_account(self, token: SimToken, address: str, owner: str) -> None:
        """Create and initialise a token account unless it exists; the sandbox thaws default-frozen ones."""
        if self.account(address) is not None:
            return
        program = self._program(token)
        acc = self._allocate(address, account_space(token), program)
        self._send([initialize_account3(program, acc, Pubkey.from_string(token.mint), Pubkey.from_string(owner))])
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

    def set_amount(self, address: str, amount: int) -> None:
        """Patch a token account's amount (the executor's slippage check; caller holds the locks)."""
        self._set_amount(address, amount)

    def _set_vault(self, address: str, amount: int) -> None:
        """A token account's amount; for a native (WSOL) account its lamports too (rent-exempt reserve + amount)."""
        key = Pubkey.from_string(address)
        acc = self.svm.get_account(key)
        assert acc is not None, address
        raw = bytes(acc.data)
        if raw[ACCOUNT_MINT] != bytes(NATIVE_MINT):
            self._set_amount(address, amount)
            return
        lamports = struct.unpack_from("<Q", raw, NATIVE_RESERVE)[0] + amount
        data = bytearray(raw)
        data[ACCOUNT_AMOUNT] = struct.pack("<Q", amount)
        if bytes(data) != raw or acc.lamports != lamports:
            self.svm.set_account(key, Account(lamports, bytes(data), acc.owner, acc.executable, acc.rent_epoch))

    def _set_supply(self, mint: str, supply: int) -> None:
        self._patch(mint, MINT_SUPPLY.start, struct.pack("<Q", supply))

    def _add_lamports(self, address: str, delta: int) -> None:
        key = Pubkey.from_string(address)
        acc = self.svm.get_account(key)
        lamports = max(0, (acc.lamports if acc else 0) + delta)
        self.svm.set_account(key, Account(lamports, b"", SYSTEM_PROGRAM))
