"""The JSON-RPC 2.0 envelope of the sandbox's Solana RPC (API-FORMATS.md §5): single and batch requests, the
error objects, and the parameter parsing every method shares. Bad input is a JSON-RPC error (-32700 parse,
-32600 invalid request, -32601 unknown method, -32602 bad params), never an HTTP 500.
"""

from __future__ import annotations

import json
from typing import Any, Callable

from solders.pubkey import Pubkey

from sandbox.chain import Chain

API_VERSION = "3.1.8"
ENCODINGS = ("binary", "base58", "base64", "jsonParsed")
Json = Any
Method = Callable[[Chain, list[Json]], Json]


class RpcError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def invalid(message: str) -> RpcError:
    return RpcError(-32602, message)


# -- params --------------------------------------------------------------------------------------------
def param(params: list[Json], i: int, required: bool = True) -> Json:
    if i < len(params):
        return params[i]
    if required:
        raise invalid(f"Invalid params: missing parameter {i}")
    return None


def pubkey_arg(value: Json) -> Pubkey:
    if not isinstance(value, str):
        raise invalid("Invalid params: expected a base-58 pubkey string")
    try:
        return Pubkey.from_string(value)
    except ValueError:
        raise invalid(f"Invalid param: Invalid pubkey {value!r}") from None


def config_arg(params: list[Json], i: int) -> dict[str, Json]:
    config = param(params, i, required=False)
    if config is None:
        return {}
    if not isinstance(config, dict):
        raise invalid("Invalid params: expected a config object")
    return config


def encoding_arg(config: dict[str, Json], default: str = "binary") -> str:
    encoding = config.get("encoding", default)
    if encoding not in ENCODINGS:
        raise invalid(f"Invalid params: unknown variant `{encoding}`, expected one of {', '.join(ENCODINGS)}")
    return str(encoding)


def array_arg(value: Json, limit: int) -> list[Json]:
    if not isinstance(value, list):
        raise invalid("Invalid params: expected an array")
    if len(value) > limit:
        raise invalid(f"Too many inputs provided; max {limit}")
    return value


def with_context(chain: Chain, value: Json) -> dict[str, Json]:
    return {"context": {"slot": chain.slot(), "apiVersion": API_VERSION}, "value": value}


# -- JSON-RPC ------------------------------------------------------------------------------------------
def error_response(code: int, message: str, id_: Json = None, data: Json = None) -> dict[str, Json]:
    error: dict[str, Json] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return {"jsonrpc": "2.0", "error": error, "id": id_}


def call(chain: Chain, req: Json, methods: dict[str, Method]) -> dict[str, Json] | None:
    """One request object → its response (None for a notification, a request without an id)."""
    if not isinstance(req, dict) or req.get("jsonrpc") != "2.0" or not isinstance(req.get("method"), str):
        return error_response(-32600, "Invalid request", req.get("id") if isinstance(req, dict) else None)
    id_ = req.get("id")
    params = req.get("params", [])
    try:
        method = methods.get(req["method"])
        if method is None:
            raise RpcError(-32601, "Method not found")
        if not isinstance(params, list):
            raise invalid("Invalid params: expected an array of parameters")
        result = method(chain, params)
    except RpcError as e:
        response = error_response(e.code, e.message, id_, getattr(e, "data", None))
    except Exception as e:  # noqa: BLE001 - a bug here is an RPC error, never a 500
        response = error_response(-32603, f"Internal error: {e}", id_)
    else:
        response = {"jsonrpc": "2.0", "result": result, "id": id_}
    return response if "id" in req else None


def handle(chain: Chain, body: bytes, methods: dict[str, Method]) -> Json:
    """A request body (single or batch) → the response body, or None when nothing is to be answered."""
    try:
        payload = json.loads(body)
    except ValueError:
        return error_response(-32700, "Parse error")
    if not isinstance(payload, list):
        return call(chain, payload, methods)
    if not payload:
        return error_response(-32600, "Invalid request")
    return [r for r in (call(chain, req, methods) for req in payload) if r is not None] or None


def methods_called(body: bytes) -> set[str]:
    try:
        payload = json.loads(body)
    except ValueError:
        return set()
    reqs = payload if isinstance(payload, list) else [payload]
    return {r["method"] for r in reqs if isinstance(r, dict) and isinstance(r.get("method"), str)}
