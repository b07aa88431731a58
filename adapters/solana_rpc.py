"""Solana JSON-RPC (shared/API-FORMATS.md §5): what token safety needs — a mint (jsonParsed, Token-2022
extensions included) and its largest holders with their owners — and what live execution needs: send a signed
transaction, its status, the confirmed transaction, balances, block height, the latest blockhash, the wallet's
token accounts (both token programs), a simulation, and address lookup tables.

Responses are read as JSON; solders is not asked to decode RPC data it may not know (it panics — a
BaseException that would stop every actor): the one binary decode here, a lookup table, is contained.
A JSON-RPC error object is a `RequestRejected` whose `body` is the error (`code`, `message`, `data`); a 429 with
`Retry-After` is held by the shared `Provider` like any other.
"""

from __future__ import annotations

import base64
import itertools
from dataclasses import dataclass
from typing import Any

from adapters.facts import Holder, MintFacts
from adapters.http import BadResponse, RequestRejected, ResilientClient

TOKEN_PROGRAMS = {"spl-token", "spl-token-2022"}
TOKEN_PROGRAM_IDS = ("TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA", "TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb")


@dataclass(frozen=True)
class TokenHolding:
    """One token account of an owner (`getTokenAccountsByOwner`, jsonParsed)."""

    account: str
    mint: str
    amount: int  # raw units
    decimals: int
    program: str  # the token program's id


@dataclass(frozen=True)
class SimulatedAccount:
    """An account after a simulated transaction: its lamports and, for a token account, its raw amount."""

    lamports: int
    token_amount: int | None


class SolanaRpc:
    def __init__(self, client: ResilientClient, commitment: str = "confirmed") -> None:
        self._client = client
        self._commitment = commitment
        self._ids = itertools.count(1)

    async def call(self, method: str, params: list[Any], attempts: int | None = None) -> Any:
        body = {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": params}
        return await self._client.post("", json=body, parse=_result, attempts=attempts)

    async def mint(self, mint: str) -> MintFacts | None:
        value = (await self.call("getAccountInfo", [mint, {"encoding": "jsonParsed", "commitment": self._commitment}]))["value"]
        if value is None:
            return None
        data = value.get("data")
        if not isinstance(data, dict) or data.get("program") not in TOKEN_PROGRAMS:
            raise BadResponse(f"rpc: {mint} is not a token mint", provider="rpc")
        parsed = data["parsed"]
        if parsed.get("type") != "mint":
            raise BadResponse(f"rpc: {mint} is a {parsed.get('type')}, not a mint", provider="rpc")
        info = parsed["info"]
        extensions = {e["extension"]: e.get("state") or {} for e in info.get("extensions") or [] if isinstance(e, dict)}
        return MintFacts(
            program=data["program"],
            decimals=int(info["decimals"]),
            supply=int(info["supply"]),
            mint_authority=info.get("mintAuthority"),
            freeze_authority=info.get("freezeAuthority"),
            extensions=extensions,
        )

    async def holders(self, mint: str) -> list[Holder]:
        largest = (await self.call("getTokenLargestAccounts", [mint, {"commitment": self._commitment}]))["value"]
        addresses = [a["address"] for a in largest]
        owners: dict[str, str | None] = {}
        if addresses:
            accounts = (await self.call("getMultipleAccounts", [addresses, {"encoding": "jsonParsed"}]))["value"]
            for address, acc in zip(addresses, accounts):
                info = ((acc or {}).get("data") or {}).get("parsed", {}).get("info", {}) if isinstance((acc or {}).get("data"), dict) else {}
                owners[address] = info.get("owner")
        return [Holder(a["address"], owners.get(a["address"]), int(a["amount"])) for a in largest]


    # -- live execution ---------------------------------------------------------------------------------
    async def send_transaction(self, tx_base64: str, *, skip_preflight: bool) -> str:
        """Submit a signed transaction; returns its signature. `maxRetries: 0`: we rebroadcast it ourselves. One HTTP
        attempt per call (the caller's rebroadcast is the retry), so an error answers exactly this broadcast.
        Sending the same signed transaction again is idempotent (same signature)."""
        config = {"encoding": "base64", "skipPreflight": skip_preflight, "preflightCommitment": self._commitment,
                  "maxRetries": 0}
        sig = await self.call("sendTransaction", [tx_base64, config], attempts=1)
        if not isinstance(sig, str):
            raise BadResponse("rpc: sendTransaction did not return a signature", provider="rpc")
        return sig

    async def signature_statuses(self, signatures: list[str]) -> list[dict[str, Any] | None]:
        """Each signature's status (`None`: unknown), searching the whole history (a restart may ask late)."""
        value = (await self.call("getSignatureStatuses", [signatures, {"searchTransactionHistory": True}]))["value"]
        if not isinstance(value, list) or len(value) != len(signatures):
            raise BadResponse("rpc: getSignatureStatuses answered for other signatures", provider="rpc")
        return [v if isinstance(v, dict) else None for v in value]

    async def transaction(self, signature: str, commitment: str | None = None) -> dict[str, Any] | None:
        """The confirmed transaction (JSON encoding, v0 included) with its `meta`, or None when not (yet) there."""
        config = {"encoding": "json", "maxSupportedTransactionVersion": 0, "commitment": commitment or self._commitment}
        result = await self.call("getTransaction", [signature, config])
        if result is not None and not (isinstance(result, dict) and isinstance(result.get("meta"), dict)):
            raise BadResponse("rpc: getTransaction without meta", provider="rpc")
        return result

    async def balance(self, address: str) -> int:
        value = (await self.call("getBalance", [address, {"commitment": self._commitment}]))["value"]
        if not isinstance(value, int) or isinstance(value, bool):
            raise BadResponse("rpc: getBalance is not an integer", provider="rpc")
        return value

    async def block_height(self) -> int:
        value = await self.call("getBlockHeight", [{"commitment": self._commitment}])
        if not isinstance(value, int) or isinstance(value, bool):
            raise BadResponse("rpc: getBlockHeight is not an integer", provider="rpc")
        return value

    async def latest_blockhash(self) -> tuple[str, int]:
        value = (await self.call("getLatestBlockhash", [{"commitment": self._commitment}]))["value"]
        return str(value["blockhash"]), int(value["lastValidBlockHeight"])

    async def token_accounts(self, owner: str, mint: str | None = None) -> list[TokenHolding]:
        """The owner's token accounts: of one mint, or under both token programs (a `programId` filter matches one)."""
        filters = [{"mint": mint}] if mint is not None else [{"programId": p} for p in TOKEN_PROGRAM_IDS]
        out: list[TokenHolding] = []
        for flt in filters:
            value = (await self.call("getTokenAccountsByOwner",
                                     [owner, flt, {"encoding": "jsonParsed", "commitment": self._commitment}]))["value"]
            for item in value:
                acc = item["account"]
                info = acc["data"]["parsed"]["info"]
                amount = info["tokenAmount"]
                out.append(TokenHolding(item["pubkey"], info["mint"], int(amount["amount"]), int(amount["decimals"]),
                                        acc["owner"]))
        return out

    async def simulate(self, tx_base64: str, addresses: list[str]) -> tuple[Any, list[SimulatedAccount | None], list[str]]:
        """Simulate a (signed or unsigned) transaction on the current bank: (err, the accounts after it, the logs)."""
        config = {"encoding": "base64", "sigVerify": False, "replaceRecentBlockhash": False,
                  "commitment": self._commitment, "accounts": {"encoding": "base64", "addresses": addresses}}
        value = (await self.call("simulateTransaction", [tx_base64, config]))["value"]
        accounts = value.get("accounts")
        if value.get("err") is not None:  # a failed simulation reports no accounts
            return value["err"], [], list(value.get("logs") or [])
        if not isinstance(accounts, list) or len(accounts) != len(addresses):
            raise BadResponse("rpc: simulateTransaction did not return the accounts asked for", provider="rpc")
        return value.get("err"), [_simulated(a) for a in accounts], list(value.get("logs") or [])

    async def account_states(self, addresses: list[str]) -> list[SimulatedAccount | None]:
        """The accounts now (lamports, and a token account's raw amount), in the shape `simulate` returns them."""
        accounts = (await self.call("getMultipleAccounts", [addresses, {"encoding": "base64",
                                                                         "commitment": self._commitment}]))["value"]
        if not isinstance(accounts, list) or len(accounts) != len(addresses):
            raise BadResponse("rpc: getMultipleAccounts answered for other accounts", provider="rpc")
        return [_simulated(a) for a in accounts]

    async def lookup_tables(self, addresses: list[str]) -> dict[str, list[str]]:
        """Address lookup tables (for a v0 message's `addressTableLookups`): table address -> its addresses."""
        if not addresses:
            return {}
        accounts = (await self.call("getMultipleAccounts", [addresses, {"encoding": "base64"}]))["value"]
        out: dict[str, list[str]] = {}
        for address, acc in zip(addresses, accounts):
            if acc is None:
                raise BadResponse(f"rpc: lookup table {address} does not exist", provider="rpc")
            out[address] = _lookup_addresses(base64.b64decode(acc["data"][0]))
        return out


def _simulated(acc: Any) -> SimulatedAccount | None:
    if acc is None:
        return None
    data = base64.b64decode(acc["data"][0]) if isinstance(acc.get("data"), list) else b""
    token = int.from_bytes(data[64:72], "little") if acc.get("owner") in TOKEN_PROGRAM_IDS and len(data) >= 165 else None
    return SimulatedAccount(int(acc["lamports"]), token)


def _lookup_addresses(data: bytes) -> list[str]:
    from solders.address_lookup_table_account import AddressLookupTable

    try:
        return [str(a) for a in AddressLookupTable.deserialize(data).addresses]
    except BaseException as exc:  # noqa: BLE001 - solders panics (a BaseException) on data it does not know
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        raise BadResponse(f"rpc: not an address lookup table ({type(exc).__name__})", provider="rpc") from None


def rpc_error(exc: RequestRejected) -> tuple[int | None, str, Any]:
    """(code, message, data.err) of a JSON-RPC error, e.g. a preflight failure (-32002, ..., "BlockhashNotFound")."""
    body = exc.body if isinstance(exc.body, dict) else {}
    data = body.get("data") if isinstance(body.get("data"), dict) else {}
    return body.get("code"), str(body.get("message") or ""), data.get("err")


def _result(body: Any) -> Any:
    if not isinstance(body, dict):
        raise BadResponse("rpc: body is not a JSON-RPC object", provider="rpc")
    if "error" in body:
        err = body["error"] or {}
        raise RequestRejected(f"rpc error {err.get('code')}: {err.get('message')}", provider="rpc", body=err)
    if "result" not in body:
        raise BadResponse("rpc: no result", provider="rpc")
    return body["result"]
