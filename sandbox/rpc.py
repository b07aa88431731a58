"""Solana JSON-RPC 2.0 over the sandbox chain (API-FORMATS.md §5), mounted at `/rpc`.

Single and batch requests; the envelopes and field names of Agave's RPC. Methods: getAccountInfo,
getMultipleAccounts, getBalance, getLatestBlockhash, getTokenLargestAccounts, getTokenAccountsByOwner,
getSignatureStatuses, getSlot, getHealth, and the transaction methods of `sandbox/rpc_tx.py` (sendTransaction,
simulateTransaction, getTransaction, getBlockHeight, isBlockhashValid, requestAirdrop). Account data is read
from the LiteSVM's bytes and parsed here (`jsonParsed`) the way Agave's account decoder does, so `base64` and
`jsonParsed` always agree.

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

import base64
import json
import struct
from typing import Any, Callable

import base58
from quart import Blueprint, Response, request
from solders.account import Account
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.token.state import Mint, TokenAccount, TokenAccountState

from sandbox.chain import (ACCOUNT_LEN, ACCOUNT_TYPE, ACCOUNT_TYPE_ACCOUNT, ACCOUNT_TYPE_MINT, MINT_LEN, TLV_START,
                           TOKEN_2022_PROGRAM, TOKEN_PROGRAM, Chain, Ext)
from sandbox.faults import Faults
from sandbox.server import faulty

API_VERSION = "3.1.8"
U64_MAX = 2**64 - 1
MAX_BASE58_BYTES = 128
MAX_MULTIPLE_ACCOUNTS = 100
MAX_SIGNATURES = 256
STATUS_CACHE_BLOCKS = 300  # without searchTransactionHistory only recent statuses are found
FINALIZED_AFTER = 32  # blocks
PROGRAM_NAMES = {TOKEN_PROGRAM: "spl-token", TOKEN_2022_PROGRAM: "spl-token-2022"}
ENCODINGS = ("binary", "base58", "base64", "jsonParsed")
STATES = ("uninitialized", "initialized", "frozen")  # by AccountState value
Json = Any


class RpcError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def invalid(message: str) -> RpcError:
    return RpcError(-32602, message)


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


# -- accounts ------------------------------------------------------------------------------------------
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


# -- params --------------------------------------------------------------------------------------------
def _param(params: list[Json], i: int, required: bool = True) -> Json:
    if i < len(params):
        return params[i]
    if required:
        raise invalid(f"Invalid params: missing parameter {i}")
    return None


def _pubkey(value: Json) -> Pubkey:
    if not isinstance(value, str):
        raise invalid("Invalid params: expected a base-58 pubkey string")
    try:
        return Pubkey.from_string(value)
    except ValueError:
        raise invalid(f"Invalid param: Invalid pubkey {value!r}") from None


def _config(params: list[Json], i: int) -> dict[str, Json]:
    config = _param(params, i, required=False)
    if config is None:
        return {}
    if not isinstance(config, dict):
        raise invalid("Invalid params: expected a config object")
    return config


def _encoding(config: dict[str, Json], default: str = "binary") -> str:
    encoding = config.get("encoding", default)
    if encoding not in ENCODINGS:
        raise invalid(f"Invalid params: unknown variant `{encoding}`, expected one of {', '.join(ENCODINGS)}")
    return str(encoding)


def _list(value: Json, limit: int) -> list[Json]:
    if not isinstance(value, list):
        raise invalid("Invalid params: expected an array")
    if len(value) > limit:
        raise invalid(f"Too many inputs provided; max {limit}")
    return value


# -- methods -------------------------------------------------------------------------------------------
def _context(chain: Chain, value: Json) -> dict[str, Json]:
    return {"context": {"slot": chain.slot(), "apiVersion": API_VERSION}, "value": value}


def get_account_info(chain: Chain, params: list[Json]) -> Json:
    key, encoding = _pubkey(_param(params, 0)), _encoding(_config(params, 1))
    acc = chain.account(key)
    return _context(chain, ui_account(chain, acc, encoding) if acc else None)


def get_multiple_accounts(chain: Chain, params: list[Json]) -> Json:
    keys = [_pubkey(k) for k in _list(_param(params, 0), MAX_MULTIPLE_ACCOUNTS)]
    encoding = _encoding(_config(params, 1), default="base64")
    accounts = [chain.account(k) for k in keys]
    return _context(chain, [ui_account(chain, a, encoding) if a else None for a in accounts])


def get_balance(chain: Chain, params: list[Json]) -> Json:
    acc = chain.account(_pubkey(_param(params, 0)))
    _config(params, 1)
    return _context(chain, acc.lamports if acc else 0)


def get_latest_blockhash(chain: Chain, params: list[Json]) -> Json:
    _config(params, 0)
    blockhash, last_valid = chain.blocks.issue()
    return _context(chain, {"blockhash": str(blockhash), "lastValidBlockHeight": last_valid})


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
    mint = _pubkey(_param(params, 0))
    _config(params, 1)
    program, decimals = _mint_program(chain, mint, "Invalid param: not a Token mint")
    holders = [(key, ta.amount) for key, _, ta in _token_accounts(chain, program) if ta.mint == mint]
    holders.sort(key=lambda h: (-h[1], str(h[0])))
    return _context(chain, [{"address": str(k), **ui_amount(amount, decimals)} for k, amount in holders[:20]])


def get_token_accounts_by_owner(chain: Chain, params: list[Json]) -> Json:
    owner, flt = _pubkey(_param(params, 0)), _param(params, 1)
    encoding = _encoding(_config(params, 2))
    if not isinstance(flt, dict) or len(flt) != 1 or not ({"mint", "programId"} & flt.keys()):
        raise invalid("Invalid params: expected a filter object {\"mint\": …} or {\"programId\": …}")
    mint: Pubkey | None = None
    if "mint" in flt:
        mint = _pubkey(flt["mint"])
        program, _ = _mint_program(chain, mint, "Invalid param: could not find mint")
    else:
        program = _pubkey(flt["programId"])
        if program not in PROGRAM_NAMES:
            raise invalid("Invalid param: unrecognized Token program id")
    found = [(k, acc) for k, acc, ta in _token_accounts(chain, program)
             if ta.owner == owner and (mint is None or ta.mint == mint)]
    found.sort(key=lambda f: str(f[0]))
    return _context(chain, [{"pubkey": str(k), "account": ui_account(chain, acc, encoding)} for k, acc in found])


def get_signature_statuses(chain: Chain, params: list[Json]) -> Json:
    signatures = _list(_param(params, 0), MAX_SIGNATURES)
    search_history = bool(_config(params, 1).get("searchTransactionHistory", False))
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
    return _context(chain, out)


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
    address = str(_pubkey(_param(params, 0)))
    config = _config(params, 1)
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
    slot = _param(params, 0)
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


# -- JSON-RPC ------------------------------------------------------------------------------------------
def _error(code: int, message: str, id_: Json = None, data: Json = None) -> dict[str, Json]:
    error: dict[str, Json] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return {"jsonrpc": "2.0", "error": error, "id": id_}


def call(chain: Chain, req: Json, methods: dict[str, Callable[[Chain, list[Json]], Json]] | None = None) -> dict[str, Json] | None:
    """One request object → its response (None for a notification, a request without an id)."""
    if not isinstance(req, dict) or req.get("jsonrpc") != "2.0" or not isinstance(req.get("method"), str):
        return _error(-32600, "Invalid request", req.get("id") if isinstance(req, dict) else None)
    id_ = req.get("id")
    params = req.get("params", [])
    try:
        method = (METHODS if methods is None else methods).get(req["method"])
        if method is None:
            raise RpcError(-32601, "Method not found")
        if not isinstance(params, list):
            raise invalid("Invalid params: expected an array of parameters")
        result = method(chain, params)
    except RpcError as e:
        response = _error(e.code, e.message, id_, getattr(e, "data", None))
    except Exception as e:  # noqa: BLE001 - a bug here is an RPC error, never a 500
        response = _error(-32603, f"Internal error: {e}", id_)
    else:
        response = {"jsonrpc": "2.0", "result": result, "id": id_}
    return response if "id" in req else None


def handle(chain: Chain, body: bytes, methods: dict[str, Callable[[Chain, list[Json]], Json]] | None = None) -> Json:
    """A request body (single or batch) → the response body, or None when nothing is to be answered.
    `methods` defaults to the read methods (`METHODS`); the blueprint adds the transaction methods."""
    try:
        payload = json.loads(body)
    except ValueError:
        return _error(-32700, "Parse error")
    if not isinstance(payload, list):
        return call(chain, payload, methods)
    if not payload:
        return _error(-32600, "Invalid request")
    return [r for r in (call(chain, req, methods) for req in payload) if r is not None] or None


def _methods_called(body: bytes) -> set[str]:
    try:
        payload = json.loads(body)
    except ValueError:
        return set()
    reqs = payload if isinstance(payload, list) else [payload]
    return {r["method"] for r in reqs if isinstance(r, dict) and isinstance(r.get("method"), str)}


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
        if faults.rate_limited_methods and faults.rate_limited_methods & _methods_called(body):
            return Response(json.dumps({"code": 429, "message": "Too many requests for a specific RPC call"}),
                            status=429, mimetype="application/json", headers={"Retry-After": str(faults.retry_after_s)})
        answer = handle(chain, body, methods)
        return Response("" if answer is None else json.dumps(answer), status=200, mimetype="application/json")

    return faulty(bp, faults)
