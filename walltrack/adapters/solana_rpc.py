"""Solana JSON-RPC, the calls token safety needs: a mint (jsonParsed, Token-2022 extensions included)
and its largest holders with their owners (`getTokenLargestAccounts` + `getMultipleAccounts`).

Responses are read as JSON; solders is not asked to decode RPC data it may not know (it panics).
"""

from __future__ import annotations

import itertools
from typing import Any

from walltrack.adapters.http import BadResponse, RequestRejected, ResilientClient
from walltrack.safety import Holder, MintFacts

TOKEN_PROGRAMS = {"spl-token", "spl-token-2022"}


class SolanaRpc:
    def __init__(self, client: ResilientClient, commitment: str = "confirmed") -> None:
        self._client = client
        self._commitment = commitment
        self._ids = itertools.count(1)

    async def call(self, method: str, params: list[Any]) -> Any:
        body = {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": params}
        return await self._client.post("", json=body, parse=_result)

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


def _result(body: Any) -> Any:
    if not isinstance(body, dict):
        raise BadResponse("rpc: body is not a JSON-RPC object", provider="rpc")
    if "error" in body:
        err = body["error"] or {}
        raise RequestRejected(f"rpc error {err.get('code')}: {err.get('message')}", provider="rpc", body=err)
    if "result" not in body:
        raise BadResponse("rpc: no result", provider="rpc")
    return body["result"]
