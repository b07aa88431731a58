"""The sandbox's Helius REST API (shared/API-FORMATS.md §1.2), mounted at `/helius`, every call with `?api-key=`:

    GET    /v0/webhooks            every webhook of the key's project
    POST   /v0/webhooks            create (CreateWebhookRequest) -> Webhook
    GET    /v0/webhooks/<id>       one
    PUT    /v0/webhooks/<id>       edit: replaces the whole configuration, addresses included
    PATCH  /v0/webhooks/<id>       {"active": bool} (the TS SDK's toggle)
    DELETE /v0/webhooks/<id>
    POST   /v0/transactions        parse transactions: {"transactions": [signature, ...]} (<= 100) -> the enhanced
                                   transactions of the market's leader trades, rendered exactly as the poster
                                   delivers them (`sandbox.helius.enhanced_tx` with the poster's shape for the seed)

A wrong or missing key is 401; a bad body is 400 with `{"error": ...}`. `WebhookRegistry` is what the API
changed, for tests to read (and `disable` to play Helius auto-disabling a failing endpoint).
"""

from __future__ import annotations

import copy
import json
import threading
import uuid
from typing import Any

from quart import Blueprint, Response, request
from solders.pubkey import Pubkey
from solders.signature import Signature

from sandbox.chain import Chain
from sandbox.faults import Faults
from sandbox.helius_shapes import choose_shape, shape_rng
from sandbox.helius_tx import enhanced_tx
from sandbox.server import faulty

WEBHOOK_TYPES = ("enhanced", "raw", "discord", "enhancedDevnet", "rawDevnet", "discordDevnet")
MAX_ADDRESSES = 100_000
MAX_PARSE = 100
OWNER = "HeLiusSandboxProjectWa11et1111111111111111111"


class WebhookRegistry:
    """The webhooks created through the API, by id (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._hooks: dict[str, dict[str, Any]] = {}
        self.edits = 0  # creates, edits and toggles (each costs 100 credits at Helius)

    def all(self) -> list[dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(list(self._hooks.values()))

    def get(self, webhook_id: str) -> dict[str, Any] | None:
        with self._lock:
            hook = self._hooks.get(webhook_id)
            return copy.deepcopy(hook) if hook is not None else None

    def put(self, webhook_id: str | None, config: dict[str, Any]) -> dict[str, Any] | None:
        with self._lock:
            if webhook_id is None:
                webhook_id = str(uuid.uuid4())
                self._hooks[webhook_id] = {"webhookID": webhook_id, "wallet": OWNER, "active": True,
                                           "project": "sandbox", "txnStatus": "all", "encoding": "jsonParsed"}
            elif webhook_id not in self._hooks:
                return None
            self._hooks[webhook_id].update(config)
            self.edits += 1
            return copy.deepcopy(self._hooks[webhook_id])

    def delete(self, webhook_id: str) -> bool:
        with self._lock:
            return self._hooks.pop(webhook_id, None) is not None

    def disable(self, webhook_id: str) -> None:
        """What Helius does to an endpoint that keeps failing."""
        with self._lock:
            self._hooks[webhook_id]["active"] = False


def _is_address(value: Any) -> bool:
    try:
        Pubkey.from_string(value)
    except (TypeError, ValueError):
        return False
    return True


def _json(status: int, body: Any) -> Response:
    return Response(json.dumps(body), status=status, mimetype="application/json")


def _bad(message: str) -> Response:
    return _json(400, {"error": message})


def check_request(body: Any) -> dict[str, Any] | str:
    """A CreateWebhookRequest's fields, or the reason it is refused."""
    if not isinstance(body, dict):
        return "the body must be a JSON object"
    url, kind, types = body.get("webhookURL"), body.get("webhookType"), body.get("transactionTypes")
    addresses, auth = body.get("accountAddresses"), body.get("authHeader")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        return "webhookURL must be an http(s) URL"
    if kind not in WEBHOOK_TYPES:
        return f"webhookType must be one of {', '.join(WEBHOOK_TYPES)}"
    if not isinstance(types, list) or not types or not all(isinstance(t, str) for t in types):
        return "transactionTypes must be a non-empty array of strings"
    if not isinstance(addresses, list) or not all(isinstance(a, str) and _is_address(a) for a in addresses):
        return "accountAddresses must be an array of base58 addresses"
    if len(addresses) > MAX_ADDRESSES:
        return f"accountAddresses: at most {MAX_ADDRESSES}"
    if auth is not None and not isinstance(auth, str):
        return "authHeader must be a string"
    fields = {"webhookURL": url, "webhookType": kind, "transactionTypes": types, "accountAddresses": addresses}
    if auth is not None:
        fields["authHeader"] = auth
    for optional in ("txnStatus", "encoding"):
        if isinstance(body.get(optional), str):
            fields[optional] = body[optional]
    return fields


def _found(hook: dict[str, Any] | None) -> Response:
    return _json(200, hook) if hook is not None else _json(404, {"error": "webhook not found"})


def parse_transactions(chain: Chain, body: Any, seed: int, symbols: dict[str, str]) -> Response:
    """`/v0/transactions`: the chain's known trades among the signatures, as the poster delivers them (unknown
    ones left out)."""
    sigs = body.get("transactions") if isinstance(body, dict) else None
    if not isinstance(sigs, list) or not sigs or len(sigs) > MAX_PARSE:
        return _bad(f"transactions must be an array of 1 to {MAX_PARSE} signatures")
    for sig in sigs:
        try:
            Signature.from_string(sig)
        except (TypeError, ValueError):
            return _bad(f"invalid signature {sig!r}")
    with chain.lock:
        trades = [chain.trades[s] for s in sigs if s in chain.trades]
    return _json(200, [enhanced_tx(t, choose_shape(shape_rng(seed, t), t), symbol=symbols.get(t.mint)) for t in trades])


def blueprint(chain: Chain, registry: WebhookRegistry, api_key: str, faults: Faults, *, seed: int = 0,
              symbols: dict[str, str] | None = None) -> Blueprint:
    bp = Blueprint("helius_api", __name__)

    @bp.before_request
    async def authenticate() -> Response | None:
        await request.get_data()
        if request.args.get("api-key") != api_key:
            return _json(401, {"error": "invalid api key"})
        return None

    @bp.get("/v0/webhooks")
    async def list_hooks() -> Response:
        return _json(200, registry.all())

    @bp.post("/v0/webhooks")
    async def create() -> Response:
        fields = check_request(await request.get_json(silent=True))
        return _bad(fields) if isinstance(fields, str) else _json(200, registry.put(None, fields))

    @bp.get("/v0/webhooks/<webhook_id>")
    async def one(webhook_id: str) -> Response:
        hook = registry.get(webhook_id)
        return _found(hook)

    @bp.put("/v0/webhooks/<webhook_id>")
    async def edit(webhook_id: str) -> Response:
        fields = check_request(await request.get_json(silent=True))
        if isinstance(fields, str):
            return _bad(fields)
        hook = registry.put(webhook_id, fields)
        return _found(hook)

    @bp.patch("/v0/webhooks/<webhook_id>")
    async def toggle(webhook_id: str) -> Response:
        body = await request.get_json(silent=True)
        if not isinstance(body, dict) or not isinstance(body.get("active"), bool):
            return _bad('the body must be {"active": true|false}')
        hook = registry.put(webhook_id, {"active": body["active"]})
        return _found(hook)

    @bp.delete("/v0/webhooks/<webhook_id>")
    async def delete(webhook_id: str) -> Response:
        return _json(200, {}) if registry.delete(webhook_id) else _json(404, {"error": "webhook not found"})

    @bp.post("/v0/transactions")
    async def parse() -> Response:
        return parse_transactions(chain, await request.get_json(silent=True), seed, symbols or {})

    return faulty(bp, faults)
