"""The swap transactions the sandbox's Jupiter (`POST /swap/v1/swap`) builds: real v0 transactions over the
sandbox chain that LiteSVM executes, so SOL and tokens really move.

**The route.** The quote's route is re-priced from the market when the swap is built (`Market.route` for the
quote's `inputMint`, `outputMint`, `inAmount`): the transaction pays what the pools give *at build time*, and
the quote's `otherAmountThreshold` is the minimum the user accepts. Each leg goes through one pool; a pool's
address (`routePlan[].swapInfo.ammKey`) is a keypair's public key and its vaults are its associated token
accounts: ATA(pool, mint, the mint's token program), WSOL's being a native account. SOL↔token of a USDC-quoted
token takes two legs: through the sandbox's SOL/USDC pool (`market.sol_pool`, a fixed-price pool at the
market's SOL price) and the token's pool, the USDC moving from one pool's vault to the other's.

**The transaction** (fee payer = the user; signed by every pool of the route, the user's signature slot left
empty as `Signature.default()`), instructions in this order:

1. ComputeBudget `SetComputeUnitLimit` (the simulated units × 1.2 + 5,000 with `dynamicComputeUnitLimit`, else
   1,400,000) and `SetComputeUnitPrice` (µ-lamports = priority fee × 10⁶ // limit, left out when 0);
2. SOL in (`wrapAndUnwrapSol`, the default): ATA `CreateIdempotent` of the user's WSOL account, a System
   transfer user → that account of `inAmount`, Token `SyncNative`;
3. ATA `CreateIdempotent` of the user's account for the output mint (its token program; WSOL when SOL comes out);
4. Token `TransferChecked` user → the first pool's vault (authority: the user), then pool vault → next pool's
   vault (authority: that pool) for a second leg, then the last pool's vault → the user (authority: the pool);
5. the unwrap: Token `CloseAccount` of the user's WSOL account, destination and owner the user (when SOL went
   in or comes out);
6. with `{"jitoTipLamports": N}`: a System transfer of N lamports user → one of Jito's 8 mainnet tip accounts
   (no compute-unit price then: a tip *or* a priority fee, as Jupiter does).

With `wrapAndUnwrapSol: false` the user's WSOL account is used as it is (no wrap, no close). The programs
invoked are only ComputeBudget111…, 11111111… (System), Tokenkeg…, Tokenz… (Token-2022) and ATokenGP… (ATA):
the sandbox's allow-list. Every account that receives the user's SOL or tokens is the user's own (its WSOL
account, its ATAs) or a route vault: ATA(ammKey, mint, token program) for the mints of `routePlan` — a
verifier derives them all from the quote (a mint's token program is its account's owner).

**Fees and rent**, all paid by the user: 5,000 lamports per signature (the user's and each pool's: 10,000 for
one leg, 15,000 for two), plus the priority fee ceil(limit × µ-lamports / 10⁶) (`prioritizationFeeLamports`
in the answer is exactly that), plus the Jito tip if any. A new ATA costs its rent-exempt minimum (2,039,280
lamports for a 165-byte account; more for a Token-2022 account with extensions); the WSOL account's rent comes
back when it is closed in the same transaction, the output token account's stays with it.

**The build is remembered** (`chain.builds`, by sha256 of the serialized message, until its blockhash is long
expired), so the executor knows which quote a transaction came from and checks its slippage when it lands
(`sandbox.execution`).

**`simulationError`**: the sandbox simulates the unsigned transaction (signatures not verified) against the
chain as it is: null when that succeeds, else `{"errorCode": "INSUFFICIENT_FUNDS" | "SLIPPAGE_EXCEEDED" |
"SIMULATION_FAILED", "error": <the transaction error's text>}` — the transaction is still returned.

**Faults** (`Faults` of the jupiter service): `blockhash_age_blocks` hands out an older blockhash (above 150:
one already expired, with a `lastValidBlockHeight` already past); `malicious` builds a transaction the bot must
refuse: "pay_stranger_sol" (an extra System transfer from the user to a stranger), "pay_stranger_token" (an
extra token transfer of 1 % of the input from the user's account to a stranger's), "unknown_program" (an extra
instruction of a program no allow-list knows, `UNKNOWN_PROGRAM`).

To sign (solders): `sig = keypair.sign_message(solders.message.to_bytes_versioned(tx.message))`, then
`VersionedTransaction.populate(tx.message, [sig, *tx.signatures[1:]])` — the pools' signatures stay. The
message must be sent as built (the pools signed it, and the sandbox finds its quote by it): a new blockhash
means a new /swap.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from solders.compute_budget import set_compute_unit_limit, set_compute_unit_price
from solders.instruction import AccountMeta, Instruction
from solders.message import MessageV0, to_bytes_versioned
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.system_program import TransferParams, transfer
from solders.transaction import VersionedTransaction
from spl.token import instructions as spl
from spl.token.models import CloseAccountParams, SyncNativeParams, TransferCheckedParams

from sandbox.chain import JITO_TIP_ACCOUNTS, Chain
from sandbox.faults import Faults
from sandbox.market import SOL_POOL, USDC_MINT, WSOL_MINT, Leg, Market, associated, pool_keypair, pubkey
from sandbox.spl import NATIVE_MINT, TOKEN_2022_PROGRAM, TOKEN_PROGRAM

MAX_COMPUTE_UNITS = 1_400_000
CU_MARGIN = (1.2, 5_000)  # a dynamic limit is the simulated units × 1.2 + 5,000
LAMPORTS_PER_SIGNATURE = 5_000
MALICIOUS = ("pay_stranger_sol", "pay_stranger_token", "unknown_program")
UNKNOWN_PROGRAM = Pubkey.from_string(pubkey("walltrack-sandbox:unknown-program"))
STRANGER_MIN_LAMPORTS = 1_000_000  # what "pay_stranger_sol" sends at least (a new account must be rent-exempt)
PRIORITY_LEVELS = {"medium": 10_000, "high": 50_000, "veryHigh": 200_000}
DEFAULT_PRIORITY_LAMPORTS = 5_000  # "auto", or true
DECIMALS = {WSOL_MINT: 9, USDC_MINT: 6}
UNSUPPORTED = ("destinationTokenAccount", "nativeDestinationAccount", "feeAccount", "payer")


class NoRoute(ValueError):
    """The quote's pair has no route now: a 400 COULD_NOT_FIND_ANY_ROUTE."""


@dataclass(frozen=True)
class Priority:
    """What `prioritizationFeeLamports` (or `computeUnitPriceMicroLamports`) asks for."""

    lamports: int = 0  # a total priority fee, spread over the compute-unit limit
    jito_tip: int = 0  # or a Jito tip
    micro_lamports: int | None = None  # or an explicit compute-unit price


def parse_priority(option: Any, cu_price: Any = None) -> Priority:
    """Every form API-FORMATS §2.4 lists; ValueError on anything else."""
    if cu_price is not None:
        if isinstance(cu_price, bool) or not isinstance(cu_price, int) or cu_price < 0:
            raise ValueError("computeUnitPriceMicroLamports must be a non-negative integer")
        return Priority(micro_lamports=cu_price)
    if option is None or option == "auto" or option is True:
        return Priority(DEFAULT_PRIORITY_LAMPORTS)
    if option is False:
        return Priority(0)
    if isinstance(option, int):
        if option < 0:
            raise ValueError("prioritizationFeeLamports must not be negative")
        return Priority(option)
    if isinstance(option, dict) and len(option) == 1:
        if "priorityLevelWithMaxLamports" in option:
            o = option["priorityLevelWithMaxLamports"]
            if not isinstance(o, dict) or o.get("priorityLevel") not in PRIORITY_LEVELS:
                raise ValueError(f"priorityLevel must be one of {', '.join(PRIORITY_LEVELS)}")
            cap = o.get("maxLamports", 10**9)
            if isinstance(cap, bool) or not isinstance(cap, int) or cap < 0:
                raise ValueError("maxLamports must be a non-negative integer")
            return Priority(min(PRIORITY_LEVELS[o["priorityLevel"]], cap))
        if "jitoTipLamports" in option:
            tip = option["jitoTipLamports"]
            if isinstance(tip, bool) or not isinstance(tip, int) or tip < 0:
                raise ValueError("jitoTipLamports must be a non-negative integer")
            return Priority(jito_tip=tip)
        if "jitoTipLamportsWithPayer" in option:
            raise ValueError("jitoTipLamportsWithPayer (a tip paid by another signer) is not supported by the sandbox")
    raise ValueError("prioritizationFeeLamports must be an integer, \"auto\", {\"priorityLevelWithMaxLamports\": …} "
                     "or {\"jitoTipLamports\": N}")


@dataclass
class Build:
    """One built swap, remembered by its message (`message_key`) until its blockhash is long expired."""

    user: str
    input_mint: str
    output_mint: str
    legs: list[Leg]  # the route as priced at build time: what the transaction moves
    threshold: int  # the quote's otherAmountThreshold: the least the user takes
    last_valid: int
    malicious: str | None = None

    @property
    def in_amount(self) -> int:
        return self.legs[0].in_amount

    @property
    def out_amount(self) -> int:
        return self.legs[-1].out_amount


@dataclass
class Built:
    """A /swap answer's parts."""

    transaction: VersionedTransaction
    build: Build
    compute_unit_limit: int
    micro_lamports: int
    priority: Priority
    simulation_error: dict[str, str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def prioritization_fee_lamports(self) -> int:
        if self.priority.jito_tip:
            return self.priority.jito_tip
        return -(-self.compute_unit_limit * self.micro_lamports // 1_000_000)


def message_key(message: Any) -> bytes:
    return hashlib.sha256(to_bytes_versioned(message)).digest()


def mint_program(market: Market, mint: str) -> Pubkey:
    token = market.tokens.get(mint)
    return TOKEN_2022_PROGRAM if token is not None and token.hazards.token2022 else TOKEN_PROGRAM


def mint_decimals(market: Market, mint: str) -> int:
    token = market.tokens.get(mint)
    return token.decimals if token is not None else DECIMALS[mint]


class SwapBuilder:
    """Builds swaps for one market and chain. `build(...)` under `market.lock` then `chain.lock`."""

    def __init__(self, market: Market, chain: Chain) -> None:
        self.market, self.chain = market, chain
        self._pool_keys = {t.pool.address: pool_keypair(market.seed, t.symbol) for t in market.tokens.values()}
        self._pool_keys[market.sol_pool.address] = pool_keypair(market.seed, SOL_POOL)

    def build(self, user: str, quote: dict[str, Any], *, wrap: bool, dynamic_cu: bool, priority: Priority,
              faults: Faults) -> Built:
        from sandbox.execution import simulate  # the executor imports this module

        if faults.malicious not in (None, *MALICIOUS):
            raise ValueError(f"faults.malicious must be one of {', '.join(MALICIOUS)} (or None)")
        m = self.market
        with m.lock, self.chain.lock:
            routed = m.route(quote["inputMint"], quote["outputMint"], int(quote["inAmount"]))
            if routed is None or routed[0][-1].out_amount <= 0:
                raise NoRoute("Could not find any route")
            legs = routed[0]
            blockhash, last_valid = self.chain.blocks.issue(faults.blockhash_age_blocks)
            build = Build(user, quote["inputMint"], quote["outputMint"], legs, int(quote["otherAmountThreshold"]),
                          last_valid, faults.malicious)
            limit = MAX_COMPUTE_UNITS
            if dynamic_cu:
                trial = simulate(self.chain, self._transaction(build, wrap, limit, 0, priority, blockhash), build=build)
                if trial.err is None:
                    limit = min(MAX_COMPUTE_UNITS, int(trial.units * CU_MARGIN[0]) + CU_MARGIN[1])
            micro = priority.micro_lamports if priority.micro_lamports is not None else (
                0 if priority.jito_tip else priority.lamports * 1_000_000 // limit)
            tx = self._transaction(build, wrap, limit, micro, priority, blockhash)
            outcome = simulate(self.chain, tx, build=build)
            self._remember(tx, build)
        error = None if outcome.err is None else {"errorCode": outcome.error_code(), "error": outcome.message()}
        return Built(tx, build, limit, micro, priority, error)

    def _remember(self, tx: VersionedTransaction, build: Build) -> None:
        builds = self.chain.builds
        builds[message_key(tx.message)] = build
        if len(builds) > 10_000:  # forget swaps whose blockhash expired long ago
            height = self.chain.height()
            for key in [k for k, b in builds.items() if b.last_valid < height - 1_000]:
                del builds[key]

    # -- the transaction ---------------------------------------------------------------------------------
    def _transaction(self, build: Build, wrap: bool, limit: int, micro: int, priority: Priority,
                     blockhash: Any) -> VersionedTransaction:
        m, user = self.market, Pubkey.from_string(build.user)
        sol_in, sol_out = build.input_mint == WSOL_MINT, build.output_mint == WSOL_MINT
        user_in = self._ata(build.user, build.input_mint)
        user_out = self._ata(build.user, build.output_mint)
        ixs = [set_compute_unit_limit(limit)]
        if micro:
            ixs.append(set_compute_unit_price(micro))
        stranger_cut = self._stranger_cut(build)
        if sol_in and wrap:
            ixs += [spl.create_idempotent_associated_token_account(user, user, NATIVE_MINT),
                    transfer(TransferParams(from_pubkey=user, to_pubkey=user_in, lamports=build.in_amount + stranger_cut)),
                    spl.sync_native(SyncNativeParams(program_id=TOKEN_PROGRAM, account=user_in))]
        ixs.append(spl.create_idempotent_associated_token_account(user, user, Pubkey.from_string(build.output_mint),
                                                                  mint_program(m, build.output_mint)))
        ixs += self._malicious(build, user, user_in, stranger_cut)
        source, authority = user_in, user
        for leg in build.legs:
            pool = Pubkey.from_string(leg.pool.address)
            ixs.append(self._transfer(source, leg.input_mint, self._ata(leg.pool.address, leg.input_mint), authority,
                                      leg.in_amount))
            source, authority = self._ata(leg.pool.address, leg.output_mint), pool
        ixs.append(self._transfer(source, build.output_mint, user_out, authority, build.out_amount))
        if wrap and (sol_in or sol_out):
            ixs.append(spl.close_account(CloseAccountParams(program_id=TOKEN_PROGRAM, account=self._ata(build.user, WSOL_MINT),
                                                            dest=user, owner=user)))
        if priority.jito_tip:
            tip = JITO_TIP_ACCOUNTS[hashlib.sha256(bytes(blockhash) + bytes(user)).digest()[0] % len(JITO_TIP_ACCOUNTS)]
            ixs.append(transfer(TransferParams(from_pubkey=user, to_pubkey=tip, lamports=priority.jito_tip)))
        message = MessageV0.try_compile(user, ixs, [], blockhash)
        signers = message.account_keys[:message.header.num_required_signatures]
        signed = to_bytes_versioned(message)
        signatures = [self._pool_keys[str(k)].sign_message(signed) if str(k) in self._pool_keys else Signature.default()
                      for k in signers]
        return VersionedTransaction.populate(message, signatures)

    def _ata(self, owner: str, mint: str) -> Pubkey:
        return Pubkey.from_string(associated(owner, mint, str(mint_program(self.market, mint))))

    def _transfer(self, source: Pubkey, mint: str, dest: Pubkey, owner: Pubkey, amount: int) -> Instruction:
        return spl.transfer_checked(TransferCheckedParams(
            program_id=mint_program(self.market, mint), source=source, mint=Pubkey.from_string(mint), dest=dest,
            owner=owner, amount=amount, decimals=mint_decimals(self.market, mint)))

    # -- malicious builds (faults) ---------------------------------------------------------------------------
    def _stranger_cut(self, build: Build) -> int:
        if build.malicious == "pay_stranger_token":
            return max(1, build.in_amount // 100)
        return 0

    def _malicious(self, build: Build, user: Pubkey, user_in: Pubkey, cut: int) -> list[Instruction]:
        stranger = Pubkey.from_string(pubkey(f"{self.market.seed}:stranger"))
        if build.malicious == "pay_stranger_sol":
            return [transfer(TransferParams(from_pubkey=user, to_pubkey=stranger,
                                            lamports=max(STRANGER_MIN_LAMPORTS, build.in_amount // 100)))]
        if build.malicious == "pay_stranger_token":
            mint = Pubkey.from_string(build.input_mint)
            program = mint_program(self.market, build.input_mint)
            return [spl.create_idempotent_associated_token_account(user, stranger, mint, program),
                    self._transfer(user_in, build.input_mint, self._ata(str(stranger), build.input_mint), user, cut)]
        if build.malicious == "unknown_program":
            return [Instruction(UNKNOWN_PROGRAM, b"\x01", [AccountMeta(user, True, True), AccountMeta(user_in, False, True)])]
        return []
