"""The sandbox JSON-RPC's transaction methods (Agave 3.1.8 envelopes and field names), over `sandbox.execution`:

    sendTransaction(tx, {encoding: "base58" (default) | "base64", skipPreflight, preflightCommitment, maxRetries,
                         minContextSlot})                            -> the first signature (base58)
    simulateTransaction(tx, {encoding, sigVerify, replaceRecentBlockhash, commitment, innerInstructions,
                             accounts: {addresses, encoding}, minContextSlot})
                                                                     -> {context, value: RpcSimulateTransactionResult}
    getTransaction(signature, {encoding: "json" | "jsonParsed" | "base64" | "base58", commitment: "confirmed" |
                               "finalized" (default), maxSupportedTransactionVersion})
    getBlockHeight, isBlockhashValid(blockhash), requestAirdrop(pubkey, lamports)

Errors as Agave answers them: -32002 preflight failure (message "Transaction simulation failed: …", `data` the
simulation), -32003 signature verification failure, -32015 a v0 transaction asked for without
`maxSupportedTransactionVersion: 0`, -32016 `minContextSlot` not reached, -32602 bad params (encodings, sizes,
undecodable transactions, commitment `processed` for getTransaction).

getTransaction knows the transactions that landed through sendTransaction (not airdrops, nor the market's own
trades, which have statuses only). It answers null until the transaction has the asked commitment: "confirmed" one block after it
landed, "finalized" (the default, as on mainnet) 32 blocks after — pass `{"commitment": "confirmed"}` to read a
fill promptly. `meta` carries `err`, `status`, `fee`, `preBalances`/`postBalances` (lamports, by
`accountKeys` index), `preTokenBalances`/`postTokenBalances` (`accountIndex`, `mint`, `owner`, `programId`,
`uiTokenAmount`; an account that does not exist before or after — the WSOL account a swap opens and closes — has
no entry on that side), `innerInstructions`, `logMessages`, `loadedAddresses` (always empty: the sandbox
builds no lookup tables), `computeUnitsConsumed`, `rewards`. `jsonParsed` parses the instructions the sandbox's
swaps use (System transfer/createAccount/allocate/assign, Token transfer/transferChecked/syncNative/
closeAccount/initializeAccount3/initializeImmutableOwner/getAccountDataSize, ATA create/createIdempotent);
others keep `{programId, accounts, data}`, as Agave shows a program it cannot parse.
"""

from __future__ import annotations

import base64
import binascii
import struct
from typing import Any, Callable

import base58
from solders.hash import Hash, ParseHashError
from solders.message import MessageV0
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.transaction import VersionedTransaction

from sandbox import execution
from sandbox.chain import Chain
from sandbox.faults import Faults
from sandbox.jsonrpc import Json, RpcError, config_arg, encoding_arg, invalid, param, pubkey_arg, with_context
from sandbox.rpc import FINALIZED_AFTER
from sandbox.rpc_accounts import ui_account, ui_amount
from sandbox.spl import TOKEN_PROGRAMS

PACKET_DATA_SIZE = 1232
MAX_BASE58_SIZE, MAX_BASE64_SIZE = 1683, 1644
TX_TYPE = "solana_transaction::versioned::VersionedTransaction"
SYSTEM = Pubkey.from_string("11111111111111111111111111111111")
ATA_PROGRAM = Pubkey.from_string("ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL")


class RpcDataError(RpcError):
    def __init__(self, code: int, message: str, data: Json = None) -> None:
        super().__init__(code, message)
        self.data = data


# -- decoding ---------------------------------------------------------------------------------------------
def decode_transaction(value: Json, encoding: str) -> VersionedTransaction:
    if not isinstance(value, str):
        raise invalid("Invalid params: expected an encoded transaction string")
    if encoding not in ("base58", "base64"):
        raise invalid(f"unsupported encoding: {encoding}. Supported encodings: base58, base64")
    limit = MAX_BASE58_SIZE if encoding == "base58" else MAX_BASE64_SIZE
    if len(value) > limit:
        raise invalid(f"{encoding} encoded {TX_TYPE} too large: {len(value)} bytes (max: encoded/raw {limit}/"
                      f"{PACKET_DATA_SIZE})")
    try:
        raw = base58.b58decode(value) if encoding == "base58" else base64.b64decode(value, validate=True)
    except (ValueError, binascii.Error) as exc:
        raise invalid(f"invalid {encoding} encoding: {exc}") from None
    if len(raw) > PACKET_DATA_SIZE:
        raise invalid(f"decoded {TX_TYPE} too large: {len(raw)} bytes (max: {PACKET_DATA_SIZE} bytes)")
    try:
        tx = VersionedTransaction.from_bytes(raw)
        tx.sanitize()
    except BaseException as exc:  # noqa: BLE001 - solders panics (a BaseException) on some junk
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        raise invalid(f"failed to deserialize {TX_TYPE}: {type(exc).__name__}") from None
    if tx.message.address_table_lookups if isinstance(tx.message, MessageV0) else False:
        raise invalid("invalid transaction: the sandbox has no address lookup tables")
    return tx


def _min_context_slot(chain: Chain, config: dict[str, Json]) -> None:
    wanted = config.get("minContextSlot")
    if wanted is not None and chain.slot() < wanted:
        raise RpcDataError(-32016, "Minimum context slot has not been reached", {"contextSlot": chain.slot()})


def _flag(config: dict[str, Json], name: str) -> bool:
    value = config.get(name, False)
    if not isinstance(value, bool):
        raise invalid(f"Invalid params: {name} must be a boolean")
    return value


# -- methods ------------------------------------------------------------------------------------------------
def send_transaction(chain: Chain, faults: Faults, params: list[Json]) -> Json:
    config = config_arg(params, 1)
    tx = decode_transaction(param(params, 0), str(config.get("encoding", "base58")))
    retries = config.get("maxRetries")
    if retries is not None and (isinstance(retries, bool) or not isinstance(retries, int) or retries < 0):
        raise invalid("Invalid params: maxRetries must be a non-negative integer")
    _min_context_slot(chain, config)
    try:
        return execution.send(chain, tx, faults, skip_preflight=_flag(config, "skipPreflight"))
    except execution.Rejected as e:
        raise RpcDataError(e.code, e.message, e.data) from None


def simulate_transaction(chain: Chain, faults: Faults, params: list[Json]) -> Json:
    config = config_arg(params, 1)
    tx = decode_transaction(param(params, 0), str(config.get("encoding", "base58")))
    sig_verify, replace = _flag(config, "sigVerify"), _flag(config, "replaceRecentBlockhash")
    if sig_verify and replace:
        raise invalid("sigVerify may not be used with replaceRecentBlockhash")
    if sig_verify and not all(tx.verify_with_results()):
        raise RpcError(-32003, "Transaction signature verification failure")
    _min_context_slot(chain, config)
    accounts_cfg = config.get("accounts")
    addresses: list[Pubkey] = []
    acc_encoding = "base64"
    if accounts_cfg is not None:
        if not isinstance(accounts_cfg, dict) or not isinstance(accounts_cfg.get("addresses"), list):
            raise invalid("Invalid params: accounts must be {\"addresses\": [...], \"encoding\": ...}")
        addresses = [pubkey_arg(a) for a in accounts_cfg["addresses"]]
        acc_encoding = encoding_arg(accounts_cfg, default="base64")
        if acc_encoding in ("binary", "base58"):
            raise invalid("base58 encoding not supported")
    build = execution.build_of(chain, tx)
    replacement = None
    with chain.market.lock, chain.lock:
        if replace:
            blockhash, last_valid = chain.blocks.issue()
            m = tx.message
            tx = VersionedTransaction.populate(
                MessageV0(m.header, m.account_keys, blockhash, m.instructions, m.address_table_lookups)
                if isinstance(m, MessageV0) else type(m).new_with_compiled_instructions(
                    m.header.num_required_signatures, m.header.num_readonly_signed_accounts,
                    m.header.num_readonly_unsigned_accounts, m.account_keys, blockhash, m.instructions),
                tx.signatures)
            replacement = {"blockhash": str(blockhash), "lastValidBlockHeight": last_valid}
        elif not chain.blocks.valid(tx.message.recent_blockhash):
            return with_context(chain, execution.simulation_value(None, "BlockhashNotFound"))
        outcome = execution.run(chain, tx, build=build, land=False, sig_verify=False)
        shown = None
        if accounts_cfg is not None:
            shown = [ui_account(chain, a, acc_encoding) if (a := outcome.post_accounts.get(k, chain.account(k)))
                     else None for k in addresses]
    return with_context(chain, execution.simulation_value(outcome, inner=_flag(config, "innerInstructions"),
                                                      accounts=shown, replacement=replacement))


def get_transaction(chain: Chain, faults: Faults, params: list[Json]) -> Json:
    sig = param(params, 0)
    try:
        Signature.from_string(sig)
    except (TypeError, ValueError):
        raise invalid(f"Invalid param: Invalid signature {sig!r}") from None
    raw_config = param(params, 1, required=False)
    config = {"encoding": raw_config} if isinstance(raw_config, str) else config_arg(params, 1)
    encoding = str(config.get("encoding", "json"))
    if encoding not in ("json", "jsonParsed", "base58", "base64"):
        raise invalid(f"Invalid params: unknown variant `{encoding}`, expected one of json, jsonParsed, base58, base64")
    commitment = config.get("commitment", "finalized")
    if commitment not in ("confirmed", "finalized"):
        raise invalid("Method does not support commitment below `confirmed`")
    max_version = config.get("maxSupportedTransactionVersion")
    executed = chain.transactions.get(sig)
    status = chain.status(sig)
    if executed is None or status is None:
        return None
    height = chain.height()
    depth = height - status.height
    if height < status.visible_at or depth < (1 if commitment == "confirmed" else FINALIZED_AFTER):
        return None
    version = executed.transaction.version()
    if isinstance(version, int) and (max_version is None or max_version < version):
        raise RpcError(-32015, f"Transaction version ({version}) is not supported by the requesting client. Please try "
                       "the request again with the following configuration parameter: \"maxSupportedTransactionVersion\": 0")
    return encode_transaction(chain, executed, encoding, version)


def get_block_height(chain: Chain, faults: Faults, params: list[Json]) -> Json:
    config_arg(params, 0)
    return chain.height()


def is_blockhash_valid(chain: Chain, faults: Faults, params: list[Json]) -> Json:
    value = param(params, 0)
    config_arg(params, 1)
    try:
        blockhash = Hash.from_string(value)
    except (TypeError, ValueError, ParseHashError):
        raise invalid(f"Invalid param: Invalid blockhash {value!r}") from None
    return with_context(chain, chain.blocks.valid(blockhash))


def request_airdrop(chain: Chain, faults: Faults, params: list[Json]) -> Json:
    key, lamports = pubkey_arg(param(params, 0)), param(params, 1)
    config_arg(params, 2)
    if isinstance(lamports, bool) or not isinstance(lamports, int) or lamports <= 0:
        raise invalid("Invalid params: lamports must be a positive integer")
    return chain.airdrop(key, lamports)


def methods(faults: Faults) -> dict[str, Callable[[Chain, list[Json]], Json]]:
    """The transaction methods, bound to the rpc service's faults."""
    table = {"sendTransaction": send_transaction, "simulateTransaction": simulate_transaction,
             "getTransaction": get_transaction, "getBlockHeight": get_block_height,
             "isBlockhashValid": is_blockhash_valid, "requestAirdrop": request_airdrop}
    return {name: (lambda chain, params, fn=fn: fn(chain, faults, params)) for name, fn in table.items()}


# -- getTransaction's shapes ----------------------------------------------------------------------------------
def _writable(header: Any, i: int, n: int) -> bool:
    signed = header.num_required_signatures
    if i < signed:
        return i < signed - header.num_readonly_signed_accounts
    return i < n - header.num_readonly_unsigned_accounts


def encode_transaction(chain: Chain, executed: execution.Executed, encoding: str, version: Any) -> dict[str, Json]:
    tx, o = executed.transaction, executed.outcome
    keys = [str(k) for k in tx.message.account_keys]
    parsed = encoding == "jsonParsed"
    meta: dict[str, Json] = {
        "err": o.err, "status": {"Ok": None} if o.err is None else {"Err": o.err}, "fee": o.fee,
        "preBalances": o.pre_balances, "postBalances": o.post_balances,
        "innerInstructions": [{"index": g["index"], "instructions": [_instruction(i, keys, parsed) for i in g["instructions"]]}
                              for g in o.inner],
        "logMessages": o.logs, "preTokenBalances": o.pre_tokens, "postTokenBalances": o.post_tokens, "rewards": [],
        "loadedAddresses": {"writable": [], "readonly": []}, "computeUnitsConsumed": o.units,
    }
    if encoding in ("base64", "base58"):
        raw = bytes(tx)
        body: Json = [base64.b64encode(raw).decode() if encoding == "base64" else base58.b58encode(raw).decode(), encoding]
    else:
        h = tx.message.header
        message: dict[str, Json] = {
            "accountKeys": [{"pubkey": k, "writable": _writable(h, i, len(keys)), "signer": i < h.num_required_signatures,
                             "source": "transaction"} for i, k in enumerate(keys)] if parsed else keys,
            "recentBlockhash": str(tx.message.recent_blockhash),
            "instructions": [_instruction({"programIdIndex": ix.program_id_index, "accounts": list(ix.accounts),
                                           "data": base58.b58encode(bytes(ix.data)).decode(), "stackHeight": None},
                                          keys, parsed) for ix in tx.message.instructions],
        }
        if not parsed:
            message["header"] = {"numRequiredSignatures": h.num_required_signatures,
                                 "numReadonlySignedAccounts": h.num_readonly_signed_accounts,
                                 "numReadonlyUnsignedAccounts": h.num_readonly_unsigned_accounts}
        if isinstance(version, int):
            message["addressTableLookups"] = []
        body = {"signatures": [str(s) for s in tx.signatures], "message": message}
    return {"slot": executed.slot, "blockTime": executed.block_time, "meta": meta, "transaction": body,
            "version": version if isinstance(version, int) else "legacy"}


def _instruction(ix: dict[str, Json], keys: list[str], parsed: bool) -> dict[str, Json]:
    if not parsed:
        return ix
    program = keys[ix["programIdIndex"]]
    accounts = [keys[a] for a in ix["accounts"]]
    data = base58.b58decode(ix["data"])
    found = parse_instruction(Pubkey.from_string(program), accounts, data)
    if found is None:
        return {"programId": program, "accounts": accounts, "data": ix["data"], "stackHeight": ix["stackHeight"]}
    name, kind, info = found
    return {"program": name, "programId": program, "parsed": {"info": info, "type": kind}, "stackHeight": ix["stackHeight"]}


def parse_instruction(program: Pubkey, a: list[str], data: bytes) -> tuple[str, str, dict[str, Json]] | None:
    """(program name, type, info) for the instructions the sandbox's swaps use, as Agave's parsers show them."""
    try:
        if program == SYSTEM:
            kind = struct.unpack_from("<I", data)[0]
            if kind == 2:
                return "system", "transfer", {"source": a[0], "destination": a[1],
                                              "lamports": struct.unpack_from("<Q", data, 4)[0]}
            if kind == 0:
                lamports, space = struct.unpack_from("<QQ", data, 4)
                return "system", "createAccount", {"source": a[0], "newAccount": a[1], "lamports": lamports,
                                                   "space": space, "owner": str(Pubkey.from_bytes(data[20:52]))}
            if kind == 8:
                return "system", "allocate", {"account": a[0], "space": struct.unpack_from("<Q", data, 4)[0]}
            if kind == 1:
                return "system", "assign", {"account": a[0], "owner": str(Pubkey.from_bytes(data[4:36]))}
        elif program in TOKEN_PROGRAMS:
            name = "spl-token" if str(program).startswith("Tokenkeg") else "spl-token-2022"
            kind = data[0]
            if kind == 12:
                amount, decimals = struct.unpack_from("<QB", data, 1)
                return name, "transferChecked", {"source": a[0], "mint": a[1], "destination": a[2], "authority": a[3],
                                                 "tokenAmount": ui_amount(amount, decimals)}
            if kind == 3:
                return name, "transfer", {"source": a[0], "destination": a[1], "authority": a[2],
                                          "amount": str(struct.unpack_from("<Q", data, 1)[0])}
            simple = {17: ("syncNative", ["account"]), 9: ("closeAccount", ["account", "destination", "owner"]),
                      22: ("initializeImmutableOwner", ["account"])}
            if kind in simple:
                kind_name, fields = simple[kind]
                return name, kind_name, dict(zip(fields, a))
            if kind == 18:
                return name, "initializeAccount3", {"account": a[0], "mint": a[1],
                                                    "owner": str(Pubkey.from_bytes(data[1:33]))}
            if kind == 21:
                return name, "getAccountDataSize", {"mint": a[0]}
        elif program == ATA_PROGRAM:
            kind = "createIdempotent" if data[:1] == b"\x01" else "create"
            return "spl-associated-token-account", kind, {
                "source": a[0], "account": a[1], "wallet": a[2], "mint": a[3], "systemProgram": a[4], "tokenProgram": a[5]}
    except (struct.error, IndexError, ValueError):
        return None
    return None
