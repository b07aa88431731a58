"""Verify a swap transaction before it is signed: pure, on the decoded message and the quote it was built from.

Jupiter (or whoever answers at JUPITER_BASE_URL) builds the transaction our key will sign; a compromised or buggy
builder could make it pay anyone. `verify_swap` refuses it (raises `Refused`, never signs) unless:

- the fee payer is our key;
- every top-level instruction invokes a program on the allow-list (`LIVE_PROGRAMS`: Jupiter v6, System, Token,
  Token-2022, Associated Token, Compute Budget on mainnet; the sandbox's own set in the demo);
- no instruction moves SOL or tokens from our key or our token accounts to an account that is not ours, not a
  vault of the route (the associated token accounts of the quote's `ammKey`s), nor, when a Jito tip is
  configured, a Jito tip account (and then at most the tip);
- what leaves our accounts, per mint, is at most what the route takes in of that mint (`inAmount`);
- nothing approves a delegate on, sets an authority of, or burns from our accounts; a CloseAccount of our
  account pays the rent back to us; we fund only our own associated token accounts;
- the priority fee (compute unit price × limit) is within `LIVE_PRIORITY_MAX_LAMPORTS`;
- Jupiter's own `simulationError` is null.

Programs on the allow-list that this module cannot decode (Jupiter's, which moves the pool legs by CPI) are
accepted as such; the live executor then simulates the signed transaction and checks our balances' outcome.
Addresses loaded from lookup tables are resolved by the caller and passed in (`lookups`).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any, Iterable

from solders.pubkey import Pubkey
from solders.token.associated import get_associated_token_address

SYSTEM = Pubkey.from_string("11111111111111111111111111111111")
TOKEN = Pubkey.from_string("TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA")
TOKEN_2022 = Pubkey.from_string("TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb")
ASSOCIATED = Pubkey.from_string("ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL")
COMPUTE_BUDGET = Pubkey.from_string("ComputeBudget111111111111111111111111111111")
WSOL = "So11111111111111111111111111111111111111112"
JITO_TIP_ACCOUNTS = frozenset(Pubkey.from_string(a) for a in (  # Jito's eight mainnet tip accounts
    "96gYZGLnJYVFmbjzopPSU6QiEV5fGqZNyN9nmNhvrZU5", "HFqU5x63VTqvQss8hp11i4wVV8bD44PvwucfZ2bU7gRe",
    "Cw8CFyM9FkoMi7K7Crf6HNQqf4uEMzpKw6QNghXLvLkY", "ADaUMid9yfUytqMBgopwjb2DTLSokTSzL1zt6iGPaS49",
    "DfXygSm4jCyNCybVYYK6DwvWqjKee8pbDmJGcLWNDXjh", "ADuUkR4vqLUMWXxW9gh6D6L8pMSawimctcNZ5pGwDcEt",
    "DttWaMuVvTiduZRnguLF7jNxTgiMBZ1hyAumKUiL2KRL", "3AVi9Tg9Uo68tJfuvoKvqKNWKkC5wPdSSdeBnizKZ6jT"))
TOKEN_PROGRAMS = (TOKEN, TOKEN_2022)
# Token instruction tags (SPL Token; Token-2022 shares them): which account is the authority that signs.
_TRANSFER, _APPROVE, _SET_AUTHORITY, _BURN, _CLOSE, _TRANSFER_CHECKED, _APPROVE_CHECKED, _BURN_CHECKED = 3, 4, 6, 8, 9, 12, 13, 15
_AUTHORITY_AT = {3: 2, 4: 2, 5: 1, 6: 1, 7: 2, 8: 2, 9: 2, 10: 2, 11: 2, 12: 3, 13: 3, 14: 2, 15: 2}
_SAFE_WITH_OUR_KEY = {_TRANSFER, _TRANSFER_CHECKED, _CLOSE, 5, 17, 1, 16, 18}  # 5 Revoke, 17 SyncNative, 1/16/18 Init


class Refused(Exception):
    """The transaction is not signed. `reason` is a short code for the journal and the counts; `detail` says why."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


class SimulationFailed(Refused):
    """The builder's own simulation of the swap failed (`simulationError`): not signed; a new quote may pass."""

    def __init__(self, error: Any) -> None:
        super().__init__("simulation_error", f"the builder's simulation failed: {str(error)[:200]}")
        self.error = error


@dataclass(frozen=True)
class SwapPolicy:
    owner: Pubkey
    programs: frozenset[Pubkey]
    max_priority_lamports: int
    jito_tip_lamports: int = 0  # > 0: a transfer of at most this to a Jito tip account is allowed


@dataclass(frozen=True)
class Route:
    """What the quote says the swap does: its pools (ammKey) and, per mint, how much the route takes in."""

    amm_keys: tuple[str, ...]
    mints: frozenset[str]
    takes: dict[str, int] = field(default_factory=dict)  # input mint -> raw amount the route's steps take in

    @classmethod
    def of(cls, quote: Any) -> "Route":
        takes: dict[str, int] = {}
        mints: set[str] = {quote.input_mint, quote.output_mint}
        for step in quote.route_plan:
            si = step.swap_info
            takes[si.input_mint] = takes.get(si.input_mint, 0) + si.in_amount
            mints |= {si.input_mint, si.output_mint}
        return cls(tuple(step.swap_info.amm_key for step in quote.route_plan), frozenset(mints), takes)


def ata(owner: Pubkey, mint: str, program: Pubkey) -> Pubkey:
    return get_associated_token_address(owner, Pubkey.from_string(mint), program)


def account_keys(message: Any, lookups: dict[str, list[str]]) -> list[Pubkey]:
    """The message's full account list: static keys, then every table's writable, then readonly loaded addresses."""
    keys = list(message.account_keys)
    tables = list(getattr(message, "address_table_lookups", None) or [])
    for part in ("writable_indexes", "readonly_indexes"):
        for t in tables:
            table = lookups.get(str(t.account_key))
            if table is None:
                raise Refused("lookup_unresolved", f"address lookup table {t.account_key} was not resolved")
            for i in bytes(getattr(t, part)):
                if i >= len(table):
                    raise Refused("lookup_unresolved", f"index {i} beyond lookup table {t.account_key}")
                keys.append(Pubkey.from_string(table[i]))
    return keys


def _u64(data: bytes, at: int) -> int:
    if len(data) < at + 8:
        raise Refused("malformed", "instruction data too short")
    return struct.unpack_from("<Q", data, at)[0]


class _Check:
    def __init__(self, tx: Any, route: Route, policy: SwapPolicy, lookups: dict[str, list[str]]) -> None:
        self.msg = tx.message
        self.keys = account_keys(self.msg, lookups)
        self.policy, self.route = policy, route
        owner = policy.owner
        self.ours_by_mint = {ata(owner, m, p): m for m in route.mints | {WSOL} for p in TOKEN_PROGRAMS}
        self.ours = {owner, *self.ours_by_mint}
        self.vaults = {ata(Pubkey.from_string(k), m, p) for k in route.amm_keys for m in route.mints for p in TOKEN_PROGRAMS}
        self.tips = JITO_TIP_ACCOUNTS if policy.jito_tip_lamports > 0 else frozenset()
        self.out: dict[str, int] = {}  # mint -> raw amount leaving our accounts (lamports count as WSOL)
        self.tipped = 0
        self.cu_limit: int | None = None
        self.cu_price = 0

    def run(self) -> None:
        if not self.keys or self.keys[0] != self.policy.owner:
            raise Refused("fee_payer", f"the fee payer is {self.keys[0] if self.keys else 'missing'}, not our wallet")
        for n, ix in enumerate(self.msg.instructions):
            program = self.keys[ix.program_id_index]
            if program not in self.policy.programs:
                raise Refused("unknown_program", f"instruction {n} invokes {program}, which is not on LIVE_PROGRAMS")
            accounts = [self.keys[i] for i in bytes(ix.accounts)]
            data = bytes(ix.data)
            if program == SYSTEM:
                self.system(n, accounts, data)
            elif program in TOKEN_PROGRAMS:
                self.token(n, accounts, data)
            elif program == ASSOCIATED:
                self.associated(n, accounts, data)
            elif program == COMPUTE_BUDGET:
                self.compute_budget(data)
        self.totals()

    def system(self, n: int, accounts: list[Pubkey], data: bytes) -> None:
        tag = struct.unpack_from("<I", data)[0] if len(data) >= 4 else None
        if tag == 2 and len(accounts) >= 2:  # Transfer
            source, dest, lamports = accounts[0], accounts[1], _u64(data, 4)
            if source != self.policy.owner:
                return
            if dest in self.tips:
                self.tipped += lamports
                return
            if dest not in self.ours and dest not in self.vaults:
                raise Refused("stray_transfer", f"instruction {n} sends {lamports} lamports of ours to {dest}, "
                                                "not ours, not the route's, not a tip account")
            if dest not in self.ours:  # between our own accounts (the wrap into our WSOL account) nothing leaves
                self.out[WSOL] = self.out.get(WSOL, 0) + lamports
            return
        if self.policy.owner in accounts:
            raise Refused("system_instruction", f"instruction {n}: system instruction {tag} on our wallet")

    def token(self, n: int, accounts: list[Pubkey], data: bytes) -> None:
        tag = data[0] if data else None
        at = _AUTHORITY_AT.get(tag) if tag is not None else None
        authority = accounts[at] if at is not None and at < len(accounts) else None
        ours_signing = authority == self.policy.owner
        touches_ours = bool(accounts) and accounts[0] in self.ours
        if not ours_signing and not (touches_ours and tag in (_APPROVE, _APPROVE_CHECKED, _SET_AUTHORITY)):
            if self.policy.owner in accounts and tag not in _SAFE_WITH_OUR_KEY:
                raise Refused("token_instruction", f"instruction {n}: token instruction {tag} names our wallet")
            return
        if tag in (_TRANSFER, _TRANSFER_CHECKED):
            source = accounts[0]
            dest = accounts[2] if tag == _TRANSFER_CHECKED else accounts[1]
            amount = _u64(data, 1)
            if dest not in self.ours and dest not in self.vaults:
                raise Refused("stray_transfer", f"instruction {n} moves {amount} of our tokens to {dest}, "
                                                "not ours and not a vault of the route")
            mint = str(accounts[1]) if tag == _TRANSFER_CHECKED else self.ours_by_mint.get(source)
            if mint is None:
                raise Refused("stray_transfer", f"instruction {n} moves tokens from {source}, not one of our accounts")
            if dest not in self.ours:
                self.out[mint] = self.out.get(mint, 0) + amount
            return
        if tag == _CLOSE:
            if accounts[1] != self.policy.owner:
                raise Refused("close_to_other", f"instruction {n} closes our account {accounts[0]} to {accounts[1]}")
            return
        if tag in (5, 17):
            return
        raise Refused("token_authority", f"instruction {n}: token instruction {tag} on our accounts "
                                         "(approve, set authority, burn ... are never signed)")

    def associated(self, n: int, accounts: list[Pubkey], data: bytes) -> None:
        tag = data[0] if data else 0
        if self.policy.owner not in accounts:
            return
        if tag in (0, 1) and len(accounts) >= 6 and accounts[0] == self.policy.owner:
            funder, account, wallet, mint, program = accounts[0], accounts[1], accounts[2], accounts[3], accounts[5]
            if wallet != self.policy.owner or account != get_associated_token_address(wallet, mint, program):
                raise Refused("ata_for_other", f"instruction {n}: our wallet pays the rent of {account}, owned by {wallet}")
            return
        raise Refused("associated_instruction", f"instruction {n}: associated-token instruction {tag} on our wallet")

    def compute_budget(self, data: bytes) -> None:
        if data[:1] == b"\x02" and len(data) >= 5:
            self.cu_limit = struct.unpack_from("<I", data, 1)[0]
        elif data[:1] == b"\x03":
            self.cu_price = _u64(data, 1)

    def totals(self) -> None:
        limit = self.cu_limit if self.cu_limit is not None else 1_400_000
        fee = -(-self.cu_price * limit // 1_000_000)
        if fee > self.policy.max_priority_lamports:
            raise Refused("priority_fee", f"a priority fee of {fee} lamports, above LIVE_PRIORITY_MAX_LAMPORTS "
                                          f"({self.policy.max_priority_lamports})")
        if self.tipped > self.policy.jito_tip_lamports:
            raise Refused("jito_tip", f"a tip of {self.tipped} lamports, above LIVE_JITO_TIP_LAMPORTS "
                                      f"({self.policy.jito_tip_lamports})")
        for mint, amount in self.out.items():
            if amount > self.route.takes.get(mint, 0):
                raise Refused("overspend", f"{amount} of {mint} leaves our accounts; the route takes in "
                                           f"{self.route.takes.get(mint, 0)}")


def verify_swap(tx: Any, quote: Any, policy: SwapPolicy, *, simulation_error: Any = None,
                lookups: dict[str, list[str]] | None = None) -> None:
    """Raise `Refused` unless the unsigned swap `tx` (a solders VersionedTransaction) is safe to sign (module doc).
    What the transaction does is checked first: a malicious build is named as such, whatever its simulation says."""
    _Check(tx, Route.of(quote), policy, lookups or {}).run()
    if simulation_error is not None:
        raise SimulationFailed(simulation_error)


def programs(text: str) -> frozenset[Pubkey]:
    return frozenset(Pubkey.from_string(p.strip()) for p in text.split(",") if p.strip())


def lookup_addresses(tx: Any) -> list[str]:
    return [str(t.account_key) for t in (getattr(tx.message, "address_table_lookups", None) or [])]


__all__: Iterable[str] = ("JITO_TIP_ACCOUNTS", "Refused", "Route", "SwapPolicy", "ata", "lookup_addresses",
                          "programs", "verify_swap")
