"""Transactions executed on the sandbox chain: preflight, landing, slippage at execution time, and the
execution faults. The JSON-RPC methods (`sandbox/rpc_tx.py`) and the Jupiter builder (`sandbox/swaps.py`) call
these under `market.lock` then `chain.lock` (a landed swap moves the market's pool).

**sendTransaction** (`send`):
- preflight (unless `skipPreflight`): every signature is verified (else RPC error -32003 "Transaction signature
  verification failure"); a signature that already landed is "This transaction has already been processed"; a
  blockhash that is not a live one of `chain.blocks` is "Blockhash not found"; then the transaction is
  simulated, and a failure is RPC error -32002 "Transaction simulation failed: <error>" with the simulation in
  `data` (`err`, `logs`, `unitsConsumed`, …). Nothing lands.
- then it lands in the current block, for real, in LiteSVM: SOL and token balances move, the fee is charged. A
  transaction that fails *in a program* lands as a failed transaction (fee charged, its status `err` set, its
  logs kept for getTransaction); one that cannot pay its fee, whose signatures do not verify or whose blockhash
  is not live (possible with `skipPreflight`) never lands: the signature is answered and nothing happens.
- a swap the sandbox built (`chain.builds`, by message) is checked for **slippage when it lands**: if the
  pools would now give less than the quote's `otherAmountThreshold` for its input, the pool's side of the
  transfer fails — the paying vault holds only what the pool would give, so its `TransferChecked` fails with
  the Token program's "insufficient funds" (InstructionError [i, {"Custom": 1}], i = that instruction). A swap
  that lands moves the market's pools by exactly what moved on chain (the vaults stay equal to the reserves).

**Faults** (`Faults` of the rpc service, flipped at run time): `slippage` — each built swap is front-run when it
lands (a simulated trader swaps the same way first, enough to push the output under the threshold: the swap
lands failed, the market keeps the move); `drop_next` — the next N broadcasts are answered but dropped (a
rebroadcast of the same signed transaction may land it); `drop_all` — every broadcast is dropped while set;
`late_blocks` — a transaction that lands stays invisible (`getSignatureStatuses` null, `getTransaction` null)
for N blocks, though its balances have moved; `rate_limited` / `rate_limited_methods` — HTTP 429 with
`Retry-After` (sandbox/server.py, sandbox/rpc.py). Insufficient SOL needs no fault: a wallet without the
lamports fails for real (no lamports for the fee: never lands; short for the swap or the rent: lands failed).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from solders.account import Account
from solders.pubkey import Pubkey
from solders.token.state import TokenAccount
from solders.transaction import VersionedTransaction
from solders.transaction_metadata import FailedTransactionMetadata, TransactionMetadata

from sandbox.chain import Chain
from sandbox.faults import Faults
from sandbox.spl import ACCOUNT_LEN, ACCOUNT_TYPE, ACCOUNT_TYPE_ACCOUNT, TOKEN_PROGRAMS
from sandbox.swaps import LAMPORTS_PER_SIGNATURE, Build, message_key

FRONT_RUN_DOUBLINGS = 64


class Rejected(Exception):
    """A JSON-RPC error answer for a transaction (preflight): code, message, data."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code, self.message, self.data = code, message, data


# -- TransactionError text (solana-sdk's Display) ----------------------------------------------------------
TX_ERRORS = {
    "AccountInUse": "Account in use",
    "AccountLoadedTwice": "Account loaded twice",
    "AccountNotFound": "Attempt to debit an account but found no record of a prior credit.",
    "ProgramAccountNotFound": "Attempt to load a program that does not exist",
    "InsufficientFundsForFee": "Insufficient funds for fee",
    "InvalidAccountForFee": "This account may not be used to pay transaction fees",
    "AlreadyProcessed": "This transaction has already been processed",
    "BlockhashNotFound": "Blockhash not found",
    "SignatureFailure": "Transaction did not pass signature verification",
    "SanitizeFailure": "Transaction failed to sanitize accounts offsets correctly",
    "InvalidProgramForExecution": "Transaction loads a program that is not executable",
}
IX_ERRORS = {
    "GenericError": "generic instruction error",
    "InvalidArgument": "invalid program argument",
    "InvalidInstructionData": "invalid instruction data",
    "InvalidAccountData": "invalid account data for instruction",
    "InsufficientFunds": "insufficient funds for instruction",
    "IncorrectProgramId": "incorrect program id for instruction",
    "MissingRequiredSignature": "missing required signature for instruction",
    "UninitializedAccount": "instruction requires an initialized account",
    "ComputationalBudgetExceeded": "Computational budget exceeded",
    "UnsupportedProgramId": "Unsupported program id",
    "IllegalOwner": "Provided owner is not allowed",
    "MissingAccount": "An account required by the instruction is missing",
    "AccountAlreadyInitialized": "instruction requires an uninitialized account",
    "InvalidAccountOwner": "Invalid account owner",
    "ProgramFailedToComplete": "Program failed to complete",
}


def describe(err: Any) -> str:
    """The text Agave shows for a TransactionError given as RPC JSON."""
    if isinstance(err, str):
        return TX_ERRORS.get(err, err)
    if isinstance(err, dict) and "InstructionError" in err:
        index, ix = err["InstructionError"]
        text = (f"custom program error: 0x{ix['Custom']:x}" if isinstance(ix, dict) and "Custom" in ix
                else IX_ERRORS.get(ix, str(ix)) if isinstance(ix, str) else str(ix))
        return f"Error processing Instruction {index}: {text}"
    if isinstance(err, dict) and "InsufficientFundsForRent" in err:
        return (f"Transaction results in an account ({err['InsufficientFundsForRent']['account_index']}) with "
                "insufficient funds for rent")
    return str(err)


def error_json(result: FailedTransactionMetadata) -> Any:
    import json

    return json.loads(result.to_json())["err"]


# -- outcomes -------------------------------------------------------------------------------------------------
@dataclass
class Outcome:
    """One run of a transaction (simulated or landed), in the terms of the RPC's `meta`."""

    err: Any
    logs: list[str]
    units: int
    fee: int
    pre_balances: list[int]
    post_balances: list[int]
    pre_tokens: list[dict[str, Any]]
    post_tokens: list[dict[str, Any]]
    inner: list[dict[str, Any]]
    loaded_bytes: int
    landed: bool = False  # (a send) it changed the chain: the fee was charged
    slippage: bool = False  # a built swap whose output fell under its threshold
    post_accounts: dict[Pubkey, Account] = field(default_factory=dict)

    def message(self) -> str:
        return describe(self.err)

    def error_code(self) -> str:
        if self.slippage:
            return "SLIPPAGE_EXCEEDED"
        text = " ".join(self.logs).lower()
        if "insufficient" in text or "InsufficientFunds" in str(self.err) or self.err == "AccountNotFound":
            return "INSUFFICIENT_FUNDS"
        return "SIMULATION_FAILED"


@dataclass
class Executed:
    """A transaction that landed, as getTransaction shows it."""

    transaction: VersionedTransaction
    slot: int
    height: int
    block_time: int
    outcome: Outcome


def token_balances(chain: Chain, keys: list[Pubkey], accounts: dict[Pubkey, Account | None]) -> list[dict[str, Any]]:
    from sandbox.rpc_accounts import ui_amount

    out = []
    for i, key in enumerate(keys):
        acc = accounts.get(key)
        if acc is None or acc.owner not in TOKEN_PROGRAMS or len(acc.data) < ACCOUNT_LEN:
            continue
        data = bytes(acc.data)
        if len(data) > ACCOUNT_LEN and data[ACCOUNT_TYPE] != ACCOUNT_TYPE_ACCOUNT:
            continue
        try:
            ta = TokenAccount.from_bytes(data[:ACCOUNT_LEN])
        except ValueError:
            continue
        mint = chain.svm.get_account(ta.mint)
        if mint is None or len(mint.data) < 45:
            continue
        out.append({"accountIndex": i, "mint": str(ta.mint), "owner": str(ta.owner), "programId": str(acc.owner),
                    "uiTokenAmount": ui_amount(ta.amount, bytes(mint.data)[44])})
    return out


def _inner(meta: Any) -> list[dict[str, Any]]:
    import base58

    out = []
    for index, group in enumerate(meta.inner_instructions()):
        if group:
            out.append({"index": index, "instructions": [
                {"programIdIndex": ii.instruction().program_id_index, "accounts": list(ii.instruction().accounts),
                 "data": base58.b58encode(bytes(ii.instruction().data)).decode(), "stackHeight": ii.stack_height()}
                for ii in group]})
    return out


def out_now(chain: Chain, build: Build) -> int:
    """What the built swap's route would give for its input now."""
    routed = chain.market.route(build.input_mint, build.output_mint, build.in_amount)
    return routed[0][-1].out_amount if routed is not None else 0


def _slippage_patch(chain: Chain, build: Build | None) -> tuple[str, int] | None:
    """If a built swap's output now falls under its threshold: shrink the paying vault of its token pool to what
    the pool would give now (below what the transaction asks of it). Returns (vault, amount before) to restore."""
    if build is None:
        return None
    routed = chain.market.route(build.input_mint, build.output_mint, build.in_amount)
    if routed is not None and routed[0][-1].out_amount >= build.threshold:
        return None
    index, leg = next((i, leg) for i, leg in enumerate(build.legs) if leg.token is not None)
    now = routed[0][index].out_amount if routed is not None else 0
    vault = leg.pool.base_vault if leg.output_mint == leg.token.mint else leg.pool.quote_vault
    before = TokenAccount.from_bytes(bytes(chain.svm.get_account(Pubkey.from_string(vault)).data)[:ACCOUNT_LEN]).amount
    chain.set_amount(vault, max(0, min(now, leg.out_amount - 1)))
    return vault, before


def run(chain: Chain, tx: VersionedTransaction, *, build: Build | None, land: bool, sig_verify: bool = True) -> Outcome:
    """Run `tx` in LiteSVM: simulate it (`land=False`, nothing changes) or send it. Caller holds the locks."""
    keys = list(tx.message.account_keys)
    for leg in build.legs if build is not None else ():
        chain.sync_pool(leg.pool)  # the market is the pools' truth: a step not yet synced shows in the vaults now
    pre = {k: chain.svm.get_account(k) for k in keys}
    patch = _slippage_patch(chain, build)
    chain.svm.with_sigverify(sig_verify)
    try:
        result = chain.svm.send_transaction(tx) if land else chain.svm.simulate_transaction(tx)
    finally:
        chain.svm.with_sigverify(True)
        if patch is not None:
            chain.set_amount(*patch)
    failed = isinstance(result, FailedTransactionMetadata)
    meta = result if isinstance(result, TransactionMetadata) else result.meta()
    if land:
        post = {k: chain.svm.get_account(k) for k in keys}
    elif failed:
        post = pre
    else:
        post = {**pre, **dict(result.post_accounts())}
    payer = keys[0]
    charged = (pre[payer].lamports if pre[payer] else 0) - (post[payer].lamports if post[payer] else 0)
    signatures = tx.message.header.num_required_signatures
    fee = _fee(tx, signatures)
    return Outcome(
        err=error_json(result) if failed else None, logs=list(meta.logs()), units=meta.compute_units_consumed(),
        fee=fee, pre_balances=[a.lamports if a else 0 for a in pre.values()],
        post_balances=[a.lamports if a else 0 for a in post.values()],
        pre_tokens=token_balances(chain, keys, pre), post_tokens=token_balances(chain, keys, post),
        inner=_inner(meta), loaded_bytes=sum(len(a.data) for a in pre.values() if a),
        landed=land and (not failed or charged > 0), slippage=patch is not None, post_accounts=post)


def _fee(tx: VersionedTransaction, signatures: int) -> int:
    """5,000 lamports a signature + ceil(compute-unit limit × price / 10⁶): Agave's fee, what LiteSVM charges.
    Without a SetComputeUnitLimit the limit is 200,000 per other instruction, at most 1,400,000."""
    from solders.compute_budget import ID as COMPUTE_BUDGET

    keys, limit, price, others = tx.message.account_keys, None, 0, 0
    for ix in tx.message.instructions:
        data = bytes(ix.data)
        if keys[ix.program_id_index] != COMPUTE_BUDGET:
            others += 1
        elif data[:1] == b"\x02":
            limit = int.from_bytes(data[1:5], "little")
        elif data[:1] == b"\x03":
            price = int.from_bytes(data[1:9], "little")
    if limit is None:
        limit = min(1_400_000, 200_000 * others)
    return LAMPORTS_PER_SIGNATURE * signatures + -(-limit * price // 1_000_000)


def simulate(chain: Chain, tx: VersionedTransaction, *, build: Build | None = None, sig_verify: bool = False) -> Outcome:
    """A simulation against the chain as it is (blockhash not checked; signatures only with `sig_verify`)."""
    with chain.market.lock, chain.lock:
        return run(chain, tx, build=build, land=False, sig_verify=sig_verify)


def build_of(chain: Chain, tx: VersionedTransaction) -> Build | None:
    return chain.builds.get(message_key(tx.message))


# -- sendTransaction ---------------------------------------------------------------------------------------
def preflight(chain: Chain, tx: VersionedTransaction) -> None:
    """Agave's preflight: signatures, then a simulation. Raises `Rejected`."""
    if not all(tx.verify_with_results()):
        raise Rejected(-32003, "Transaction signature verification failure")
    signature = str(tx.signatures[0])
    if signature in chain.statuses:
        raise Rejected(-32002, f"Transaction simulation failed: {describe('AlreadyProcessed')}",
                       simulation_value(None, "AlreadyProcessed"))
    if not chain.blocks.valid(tx.message.recent_blockhash):
        raise Rejected(-32002, f"Transaction simulation failed: {describe('BlockhashNotFound')}",
                       simulation_value(None, "BlockhashNotFound"))
    outcome = run(chain, tx, build=build_of(chain, tx), land=False, sig_verify=False)
    if outcome.err is not None:
        raise Rejected(-32002, f"Transaction simulation failed: {outcome.message()}", simulation_value(outcome))


def simulation_value(outcome: Outcome | None, err: Any = None, *, inner: bool = False,
                     accounts: list[Any] | None = None, replacement: Any = None) -> dict[str, Any]:
    """An RpcSimulateTransactionResult (Agave 3.1: its 14 fields)."""
    if outcome is None:
        return {"err": err, "logs": [], "accounts": None, "unitsConsumed": 0, "loadedAccountsDataSize": 0,
                "returnData": None, "innerInstructions": None, "replacementBlockhash": None, "fee": None,
                "preBalances": None, "postBalances": None, "preTokenBalances": None, "postTokenBalances": None,
                "loadedAddresses": None}
    return {"err": outcome.err, "logs": outcome.logs, "accounts": accounts, "unitsConsumed": outcome.units,
            "loadedAccountsDataSize": outcome.loaded_bytes, "returnData": None,
            "innerInstructions": outcome.inner if inner else None, "replacementBlockhash": replacement,
            "fee": outcome.fee, "preBalances": outcome.pre_balances, "postBalances": outcome.post_balances,
            "preTokenBalances": outcome.pre_tokens, "postTokenBalances": outcome.post_tokens,
            "loadedAddresses": {"writable": [], "readonly": []}}


def send(chain: Chain, tx: VersionedTransaction, faults: Faults, *, skip_preflight: bool) -> str:
    """sendTransaction: preflight (unless skipped), then land — or drop, per the faults. Returns the signature."""
    signature = str(tx.signatures[0])
    with chain.market.lock, chain.lock:
        if not skip_preflight:
            preflight(chain, tx)
        if faults.take_drop():
            return signature
        land(chain, tx, faults)
    return signature


def land(chain: Chain, tx: VersionedTransaction, faults: Faults) -> Executed | None:
    """The transaction in the current block, if it can land at all. Caller holds the locks."""
    signature = str(tx.signatures[0])
    if signature in chain.statuses or not chain.blocks.valid(tx.message.recent_blockhash):
        return None  # a duplicate is ignored; an expired blockhash never lands
    build = build_of(chain, tx)
    if build is not None and faults.slippage:
        front_run(chain, build)
    outcome = run(chain, tx, build=build, land=True)
    if not outcome.landed:
        return None
    slot, height = chain.slot(), chain.height()
    chain.record(signature, slot, outcome.err, height + max(0, faults.late_blocks))
    executed = Executed(tx, slot, height, int(chain.market.now), outcome)
    chain.transactions[signature] = executed
    if build is not None and outcome.err is None:
        settle(chain, build)
    return executed


def settle(chain: Chain, build: Build) -> None:
    """The market's pools follow what moved on chain (a Token-2022 transfer fee, for one, is the chain's to say)."""
    for leg in build.legs:
        pool = leg.pool
        pool.base_reserve = _amount(chain, pool.base_vault)
        pool.quote_reserve = _amount(chain, pool.quote_vault)


def _amount(chain: Chain, vault: str) -> int:
    acc = chain.svm.get_account(Pubkey.from_string(vault))
    return TokenAccount.from_bytes(bytes(acc.data)[:ACCOUNT_LEN]).amount if acc else 0


def front_run(chain: Chain, build: Build) -> None:
    """A simulated trader swaps ahead of the user, the same way, until the user's output falls under its threshold."""
    if build.threshold <= 0:
        return  # a swap that accepts anything cannot be pushed under its threshold
    leg = next(leg for leg in build.legs if leg.token is not None)
    token, pool = leg.token, leg.pool
    buy = leg.output_mint == token.mint
    amount = max(1, leg.in_amount)
    for _ in range(FRONT_RUN_DOUBLINGS):
        saved = pool.base_reserve, pool.quote_reserve
        token.apply_swap(amount, buy)
        if out_now(chain, build) < build.threshold:
            chain.sync_pool(pool)
            return
        pool.base_reserve, pool.quote_reserve = saved
        amount *= 2
