"""Helius' REST API (shared/API-FORMATS.md §1.2): the enhanced webhook kept in step with the watchlist, and the
parse-transactions API that backfills what a stalled webhook did not deliver.

An edit (PUT) replaces the whole configuration, addresses included, so `sync_webhook` reads first (GET), then
PUTs the full list — only when something differs (each edit costs Helius credits) — and re-enables a webhook
Helius disabled (PATCH `{"active": true}`). The API key travels as `?api-key=`; the webhook's `authHeader` is the
webhook secret. Neither is ever logged (the redactor has both), and a webhook as returned (it holds the
`authHeader`) is never logged whole.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from adapters.http import BadResponse, Closes, Policy, Provider, ResilientClient

MAX_PARSE = 100  # signatures per parse-transactions call


def desired(url: str, secret: str, addresses: frozenset[str] | set[str]) -> dict[str, Any]:
    """The webhook WallTrack needs: enhanced, every transaction type (pump.fun and Meteora trades arrive typed
    TRANSFER or UNKNOWN), the watchlist, and the secret Helius must echo in `Authorization`."""
    return {"webhookURL": url, "webhookType": "enhanced", "transactionTypes": ["ANY"],
            "accountAddresses": sorted(addresses), "authHeader": secret}


@dataclass(frozen=True)
class SyncResult:
    action: str  # created | updated | unchanged | skipped (no webhook and nothing to watch)
    webhook_id: str | None
    addresses: int
    added: int = 0
    removed: int = 0
    reenabled: bool = False
    fields: tuple[str, ...] = ()  # what an update changed

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def differences(hook: dict[str, Any], want: dict[str, Any]) -> list[str]:
    """The fields of `want` that `hook` does not have (addresses compared as sets; the secret by value, never shown)."""
    out = []
    for key, value in want.items():
        have = hook.get(key)
        if key in ("accountAddresses", "transactionTypes"):
            if sorted(have or []) != sorted(value):
                out.append(key)
        elif have != value:
            out.append(key)
    return out


class HeliusApi(Closes):
    def __init__(self, base_url: str, api_key: str, *, rate_per_s: float = 2.0, attempts: int = 3,
                 attempt_timeout_s: float = 10.0, cooldown_s: float = 30.0, max_wait_s: float = 5.0) -> None:
        self.provider = Provider("helius", Policy(rate_per_s=rate_per_s, attempts=attempts, cooldown_s=cooldown_s,
                                                  attempt_timeout_s=attempt_timeout_s, max_wait_s=max_wait_s))
        self._http = ResilientClient(self.provider, base_url)
        self._key = {"api-key": api_key}

    async def webhooks(self) -> list[dict[str, Any]]:
        return await self._http.request("GET", "/v0/webhooks", params=self._key, parse=_hooks)

    async def create(self, config: dict[str, Any]) -> dict[str, Any]:
        return await self._http.request("POST", "/v0/webhooks", params=self._key, json=config, parse=_hook)

    async def update(self, webhook_id: str, config: dict[str, Any]) -> dict[str, Any]:
        return await self._http.request("PUT", f"/v0/webhooks/{webhook_id}", params=self._key, json=config, parse=_hook)

    async def set_active(self, webhook_id: str, active: bool) -> dict[str, Any]:
        return await self._http.request("PATCH", f"/v0/webhooks/{webhook_id}", params=self._key, json={"active": active},
                                        parse=_hook)

    async def parse_transactions(self, signatures: list[str]) -> list[dict[str, Any]]:
        """The enhanced transactions of these signatures (the ones Helius knows), in chunks of 100."""
        out: list[dict[str, Any]] = []
        for i in range(0, len(signatures), MAX_PARSE):
            out += await self._http.request("POST", "/v0/transactions", params=self._key,
                                            json={"transactions": signatures[i:i + MAX_PARSE]}, parse=_transactions)
        return out


async def sync_webhook(api: HeliusApi, url: str, secret: str, addresses: frozenset[str]) -> SyncResult:
    """Create or update the enhanced webhook at `url` so that it watches exactly `addresses`, and enable it."""
    want = desired(url, secret, addresses)
    mine = [h for h in await api.webhooks() if h.get("webhookURL") == url]
    if not mine:
        if not addresses:
            return SyncResult("skipped", None, 0)
        hook = await api.create(want)
        return SyncResult("created", hook.get("webhookID"), len(addresses), added=len(addresses))
    hook = mine[0]
    have = set(hook.get("accountAddresses") or [])
    changed = differences(hook, want)
    if changed:
        hook = {**hook, **await api.update(hook["webhookID"], want)}
    reenabled = hook.get("active") is False
    if reenabled:
        await api.set_active(hook["webhookID"], True)
    return SyncResult("updated" if changed else "unchanged", hook["webhookID"], len(addresses),
                      added=len(addresses - have), removed=len(have - addresses), reenabled=reenabled,
                      fields=tuple(changed))


async def inspect_webhook(api: HeliusApi, url: str, secret: str, addresses: frozenset[str]) -> list[str]:
    """What is wrong with the webhook at `url` (empty: it is as WallTrack needs it). For `walltrack doctor`."""
    mine = [h for h in await api.webhooks() if h.get("webhookURL") == url]
    if not mine:
        return [f"no webhook posts to {url}"]
    hook, problems = mine[0], []
    if len(mine) > 1:
        problems.append(f"{len(mine)} webhooks post to this URL (every delivery would come several times)")
    if hook.get("active") is False:
        problems.append("disabled by Helius")
    for key in differences(hook, desired(url, secret, addresses)):
        if key == "accountAddresses":
            have = set(hook.get("accountAddresses") or [])
            problems.append(f"addresses differ from the watchlist ({len(addresses - have)} missing, "
                            f"{len(have - addresses)} extra)")
        elif key == "authHeader":
            problems.append("authHeader is not the webhook secret (deliveries would get 401)")
        else:
            problems.append(f"{key} is {hook.get(key)!r}, not {desired(url, secret, addresses)[key]!r}")
    return problems


def _hook(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict) or not isinstance(body.get("webhookID"), str):
        raise BadResponse("helius: a webhook without webhookID", provider="helius")
    return body


def _hooks(body: Any) -> list[dict[str, Any]]:
    if not isinstance(body, list):
        raise BadResponse("helius: the webhook list is not an array", provider="helius")
    return [_hook(h) for h in body]


def _transactions(body: Any) -> list[dict[str, Any]]:
    if not isinstance(body, list) or not all(isinstance(tx, dict) for tx in body):
        raise BadResponse("helius: parsed transactions are not an array of objects", provider="helius")
    return body
