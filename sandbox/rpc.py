"""Solana JSON-RPC 2.0 over the sandbox chain (API-FORMATS.md §5), mounted at `/rpc`.

Single and batch requests; the envelopes and field names of Agave's RPC. Methods: getAccountInfo,
getMultipleAccounts, getBalance, getLatestBlockhash, getTokenLargestAccounts, getTokenAccountsByOwner,
getSignatureStatuses, getSlot, getHealth, and the transaction methods of `sandbox/rpc_tx.py` (sendTransaction,
simulateTransaction, getTransaction, getBlockHeight, isBlockhashValid, requestAirdrop), and the history methods
getSignaturesForAddress and getBlockTime. Account data is read from the LiteSVM's bytes and encoded by
`sandbox/rpc_accounts.py` the way Agave's account decoder does, so `base64` and `jsonParsed` always agree; the
JSON-RPC envelope and parameter parsing are `sandbox/jsonrpc.py`.

Blocks (sandbox/blocks.py): `getBlockHeight` is the chain's block height (wall-clock blocks, 0.4 s each by
default, about 20 M below the slot); `getLatestBlockhash` hands out the newest block's blockhash with
`lastValidBlockHeight` = its height + 150, past which a transaction carrying it is refused ("Blockhash not
found") or never lands. Every commitment is answered from the newest block (there are no forks).
`getSignatureStatuses` counts in blocks since the transaction landed: "processed" in its own block, "confirmed"
one block later, "finalized" (`confirmations` null) 32 blocks later; without `searchTransactionHistory` only the
last 300 blocks' statuses are found. The market's own trades (the leaders') have statuses too, from the block
the chain applied them in.

Bad input is a JSON-RPC error (-32700 parse, -32600 invalid request, -32601 unknown method, -32602 bad
params), never an HTTP 500.
"""

from __future__ import annotations

import json
from typing import Callable

from quart import Blueprint, Response, request
from solders.account import Account
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.token.state import TokenAccount

from sandbox.chain import Chain
from sandbox.faults import Faults
from sandbox.jsonrpc import (
    Json,
    RpcError,
    array_arg,
    config_arg,
    encoding_arg,
    handle,
    invalid,
    methods_called,
    param,
    pubkey_arg,
    with_context,
)
from sandbox.rpc_accounts import PROGRAM_NAMES, token_kind, ui_account, ui_amount
from sandbox.server import faulty
from sandbox.spl import ACCOUNT_LEN

MAX_MULTIPLE_ACCOUNTS = 100
MAX_SIGNATURES = 256
STATUS_CACHE_BLOCKS = 300  # without searchTransactionHistory only recent statuses are found
FINALIZED_AFTER = 32  # blocks


# -- methods -------------------------------------------------------------------------------------------
def get_account_info(chain: Chain, params: list[Json]) -> Json:
    key, encoding = pubkey_arg(param(params, 0)), encoding_arg(config_arg(params, 1))
    acc = chain.account(key)
    return with_context(chain, ui_account(chain, acc, encoding) if acc else None)


def get_multiple_accounts(chain: Chain, params: list[Json]) -> Json:
    keys = [pubkey_arg(k) for k in array_arg(param(params, 0), MAX_MULTIPLE_ACCOUNTS)]
    encoding = encoding_arg(config_arg(params, 1), default="base64")
    accounts = [chain.account(k) for k in keys]
    return with_context(chain, [ui_account(chain, a, encoding) if a else None for a in accounts])


def get_balance(chain: Chain, params: list[Json]) -> Json:
    acc = chain.account(pubkey_arg(param(params, 0)))
    config_arg(params, 1)
    return with_context(chain, acc.lamports if acc else 0)


def get_latest_blockhash(chain: Chain, params: list[Json]) -> Json:
    config_arg(params, 0)
    blockhash, last_valid = chain.blocks.issue()
    return with_context(chain, {"blockhash": str(blockhash), "lastValidBlockHeight": last_valid})


def _token_accounts(chain: Chain, program: Pubkey) -> list[tuple[Pubkey, Account, TokenAccount]]:
    out = []
    for key, acc in chain.program_accounts(program):
        data = bytes(acc.data)
        if token_kind(program, data) == "account":
            out.append((key, acc, TokenAccount.from_bytes(data[:ACCOUNT_LEN])))
    return out


def _mint_program(chain: Chain, mint: Pubkey, message: str) -> tuple[Pubkey, int]:
    acc = chain.account(mint)
    if acc is None or token_kind(acc.owner, bytes(acc.data)) != "mint":
        raise invalid(message)
    return acc.owner, bytes(acc.data)[44]


def get_token_largest_accounts(chain: Chain, params: list[Json]) -> Json:
    mint = pubkey_arg(param(params, 0))
    config_arg(params, 1)
    program, decimals = _mint_program(chain, mint, "Invalid param: not a Token mint")
    holders = [(key, ta.amount) for key, _, ta in _token_accounts(chain, program) if ta.mint == mint]
    holders.sort(key=lambda h: (-h[1], str(h[0])))
    return with_context(chain, [{"address": str(k), **ui_amount(amount, decimals)} for k, amount in holders[:20]])


def get_token_accounts_by_owner(chain: Chain, params: list[Json]) -> Json:
    owner, flt = pubkey_arg(param(params, 0)), param(params, 1)
    encoding = encoding_arg(config_arg(params, 2))
    if not isinstance(flt, dict) or len(flt) != 1 or not ({"mint", "programId"} & flt.keys()):
        raise invalid("Invalid params: expected a filter object {\"mint\": …} or {\"programId\": …}")
    mint: Pubkey | None = None
    if "mint" in flt:
        mint = pubkey_arg(flt["mint"])
        program, _ = _mint_program(chain, mint, "Invalid param: could not find mint")
    else:
        program = pubkey_arg(flt["programId"])
        if program not in PROGRAM_NAMES:
            raise invalid("Invalid param: unrecognized Token program id")
    found = [(k, acc) for k, acc, ta in _token_accounts(chain, program)
             if ta.owner == owner and (mint is None or ta.mint == mint)]
    found.sort(key=lambda f: str(f[0]))
    return with_context(chain, [{"pubkey": str(k), "account": ui_account(chain, acc, encoding)} for k, acc in found])


def get_signature_statuses(chain: Chain, params: list[Json]) -> Json:
    signatures = array_arg(param(params, 0), MAX_SIGNATURES)
    search_history = bool(config_arg(params, 1).get("searchTransactionHistory", False))
    height, out = chain.height(), []
    for sig in signatures:
        try:
            Signature.from_string(sig)
        except (TypeError, ValueError):
            raise invalid(f"Invalid param: Invalid signature {sig!r}") from None
        status = chain.status(sig)
        if (status is None or height < status.visible_at
                or (not search_history and height - status.height > STATUS_CACHE_BLOCKS)):
            out.append(None)
            continue
        age, err = height - status.height, status.err
        out.append({"slot": status.slot, "confirmations": None if age >= FINALIZED_AFTER else age, "err": err,
                    "status": {"Ok": None} if err is None else {"Err": err},
                    "confirmationStatus": "finalized" if age >= FINALIZED_AFTER else "confirmed" if age else "processed"})
    return with_context(chain, out)


METHODS: dict[str, Callable[[Chain, list[Json]], Json]] = {
    "getAccountInfo": get_account_info,
    "getMultipleAccounts": get_multiple_accounts,
    "getBalance": get_balance,
    "getLatestBlockhash": get_latest_blockhash,
    "getTokenLargestAccounts": get_token_largest_accounts,
    "getTokenAccountsByOwner": get_token_accounts_by_owner,
    "getSignatureStatuses": get_signature_statuses,
    "getSlot": lambda chain, params: chain.slot(),
    "getHealth": lambda chain, params: "ok",
}


# -- history (issue 12: stall detection and backfill, clock skew): getSignaturesForAddress, getBlockTime ----
MAX_SIGNATURES_FOR_ADDRESS = 1000


def get_signatures_for_address(chain: Chain, params: list[Json]) -> Json:
    """The address's transactions, newest first (Agave: `before`/`until` bound the walk, both exclusive)."""
    address = str(pubkey_arg(param(params, 0)))
    config = config_arg(params, 1)
    limit = config.get("limit", MAX_SIGNATURES_FOR_ADDRESS)
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_SIGNATURES_FOR_ADDRESS:
        raise invalid(f"Invalid limit; max {MAX_SIGNATURES_FOR_ADDRESS}")
    before, until = config.get("before"), config.get("until")
    for sig in (before, until):
        if sig is not None:
            try:
                Signature.from_string(sig)
            except (TypeError, ValueError):
                raise invalid(f"Invalid param: Invalid signature {sig!r}") from None
    with chain.lock:
        history = [t for t in chain.trades.values() if address in (t.leader, t.token_account)]
    now, out, started = chain.slot(), [], before is None
    for t in reversed(history):
        if not started:
            started = t.signature == before
            continue
        if t.signature == until or len(out) >= limit:
            break
        age = now - t.slot
        out.append({"signature": t.signature, "slot": t.slot, "err": None, "memo": None, "blockTime": t.timestamp,
                    "confirmationStatus": "finalized" if age >= FINALIZED_AFTER else "confirmed"})
    return out


def get_block_time(chain: Chain, params: list[Json]) -> Json:
    """The estimated production time of a slot, in unix seconds (the market's clock: simulated in the demo)."""
    slot = param(params, 0)
    if not isinstance(slot, int) or isinstance(slot, bool) or slot < 0:
        raise invalid("Invalid params: expected a slot number")
    market = chain.market
    with market.lock:
        now, stepped = market.now, market.slot
    if slot > chain.slot():  # the market's slot and the blocks produced since (sandbox/chain.py)
        raise RpcError(-32004, f"Block not available for slot {slot}")
    per_slot = market.step_seconds / max(1, int(market.step_seconds / 0.4))
    # blocks produced since the market's last step carry its time: the market's clock is the sandbox's time
    return int(now - max(0, stepped - slot) * per_slot)


METHODS["getSignaturesForAddress"] = get_signatures_for_address
METHODS["getBlockTime"] = get_block_time


def blueprint(chain: Chain, faults: Faults) -> Blueprint:
    from sandbox import rpc_tx  # it builds on this module's helpers

    bp = Blueprint("rpc", __name__)
    methods = {**METHODS, **rpc_tx.methods(faults)}

    @bp.before_request
    async def read_body() -> None:
        # Read before the faults run: a faulty answer that leaves a POST body unread stalls the next request
        # on the same kept-alive connection (hypercorn), which would look like a timeout fault.
        await request.get_data()

    @bp.post("", strict_slashes=False)
    async def rpc() -> Response:
        body = await request.get_data()
        if faults.rate_limited_methods and faults.rate_limited_methods & methods_called(body):
            return Response(json.dumps({"code": 429, "message": "Too many requests for a specific RPC call"}),
                            status=429, mimetype="application/json", headers={"Retry-After": str(faults.retry_after_s)})
        answer = handle(chain, body, methods)
        return Response("" if answer is None else json.dumps(answer), status=200, mimetype="application/json")

    return faulty(bp, faults)
