"""`walltrack doctor`: is this installation ready to run for months? One line per check, non-zero exit on a failure.

| check            | fails when                                                                              |
|------------------|-----------------------------------------------------------------------------------------|
| settings         | a setting is missing or invalid (the line names it)                                     |
| disk             | the data directory is not writable, or has less than DOCTOR_MIN_FREE_MB free             |
| database         | it cannot be reached, or a migration file changed since it was applied                   |
| webhook port     | GATEWAY_HOST:GATEWAY_PORT is held by something that is not WallTrack                     |
| jupiter, dexscreener, rpc, rugcheck, helius, telegram | the service cannot be reached, or refuses the key (401/403) |
| helius webhook   | no enhanced webhook posts to HELIUS_WEBHOOK_URL, or its secret, types or addresses are wrong, or it is disabled |
| clock            | the local clock is off the chain's (the RPC's latest block time) by more than DOCTOR_MAX_CLOCK_SKEW_S |

A check that cannot apply (no key, nothing configured) is a `warn` saying what it would need. Each outside call
is bounded (one attempt, HTTP_TIMEOUT_S).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import time
from dataclasses import asdict, dataclass
from typing import Any, Awaitable, Callable

import asyncpg
import httpx
import trio

from adapters.dexscreener import DexScreenerClient
from adapters.helius import HeliusApi, inspect_webhook
from adapters.http import Policy, Provider, ProviderError, RequestRejected, ResilientClient
from adapters.jupiter import JupiterClient
from adapters.solana_rpc import SolanaRpc
from storage.db import database_url, migration_status
from walltrack.secrets import webhook_secret
from walltrack.settings import ConfigError, Settings, load_settings

SOL_MINT = "So11111111111111111111111111111111111111112"


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # ok | warn | fail
    detail: str


def run(settings_factory: Callable[[], Settings] = load_settings) -> list[Check]:
    try:
        s = settings_factory()
    except ConfigError as exc:
        return [Check("settings", "fail", str(exc))]
    checks = [settings_check(s), disk_check(s)]
    db, wallets = database_check(s)
    checks += [db, port_check(s)]
    checks += trio.run(outside_checks, s, wallets)
    return checks


def settings_check(s: Settings) -> Check:
    secret = "HELIUS_WEBHOOK_SECRET" if s.helius_webhook_secret else f"generated ({s.walltrack_data_dir}/secrets)"
    return Check("settings", "ok", f"trading mode {s.trading_mode}, gateway {s.gateway_host}:{s.gateway_port}, "
                                   f"webhook secret {secret}, data {s.walltrack_data_dir}")


def disk_check(s: Settings) -> Check:
    try:
        s.walltrack_data_dir.mkdir(parents=True, exist_ok=True)
        probe = s.walltrack_data_dir / ".doctor-probe"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        return Check("disk", "fail", f"{s.walltrack_data_dir} is not writable: {exc.strerror}")
    free_mb = shutil.disk_usage(s.walltrack_data_dir).free // (1 << 20)
    if free_mb < s.doctor_min_free_mb:
        return Check("disk", "fail", f"{free_mb} MB free under {s.walltrack_data_dir}, less than DOCTOR_MIN_FREE_MB="
                                     f"{s.doctor_min_free_mb} (the database, logs and backups live there)")
    return Check("disk", "ok", f"{free_mb} MB free under {s.walltrack_data_dir}")


def database_check(s: Settings) -> tuple[Check, frozenset[str] | None]:
    async def probe(url: str) -> tuple[str, list[dict[str, Any]], list[str]]:
        conn = await asyncpg.connect(url, timeout=10)
        try:
            version = await conn.fetchval("SHOW server_version")
            status = await migration_status(conn)
            has_wallets = await conn.fetchval("SELECT to_regclass('public.wallets') IS NOT NULL")
            wallets = [r["address"] for r in await conn.fetch(
                "SELECT address FROM wallets WHERE status = 'active'")] if has_wallets else []
            return version, status, wallets
        finally:
            await conn.close()

    t0 = time.monotonic()
    try:
        url, pg = database_url(s)
    except Exception as exc:  # noqa: BLE001 - the embedded server would not start
        return Check("database", "fail", f"the embedded PostgreSQL did not start: {exc}"), None
    try:
        version, status, wallets = asyncio.run(probe(url))
    except (OSError, asyncpg.PostgresError, asyncio.TimeoutError) as exc:
        return Check("database", "fail", f"cannot connect: {type(exc).__name__}: {exc}"), None
    finally:
        if pg is not None:
            pg.close()
    ms = round((time.monotonic() - t0) * 1000)
    changed = [m["version"] for m in status if m["checksum_ok"] is False]
    pending = [m["version"] for m in status if m["state"] == "pending"]
    where = "embedded" if pg is not None else "DATABASE_URL"
    if changed:
        return Check("database", "fail", f"migration file(s) {', '.join(changed)} changed since applied"), frozenset(wallets)
    detail = f"PostgreSQL {version} ({where}), {len(status) - len(pending)} migrations applied, {len(wallets)} " \
             f"wallets watched, {ms} ms"
    if pending:
        return Check("database", "warn", detail + f"; {len(pending)} pending (applied at the next start, or "
                                                  "`walltrack db migrate`)"), frozenset(wallets)
    return Check("database", "ok", detail), frozenset(wallets)


def port_check(s: Settings) -> Check:
    host = s.gateway_host
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, s.gateway_port))
            return Check("webhook port", "ok", f"{host}:{s.gateway_port} is free")
        except OSError as exc:
            held = exc
    probe_host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    try:
        body = httpx.get(f"http://{probe_host}:{s.gateway_port}/health", timeout=3).json()
        return Check("webhook port", "ok", f"{host}:{s.gateway_port} is served by WallTrack (status {body.get('status')})")
    except (httpx.HTTPError, ValueError, AttributeError):
        return Check("webhook port", "fail", f"{host}:{s.gateway_port} cannot be used ({held.strerror}) and is not "
                                             "WallTrack: set GATEWAY_PORT or stop what holds it")


# -- outside services (trio) ------------------------------------------------------------------------------------
def _policy(s: Settings) -> dict[str, Any]:
    return {"attempts": 1, "attempt_timeout_s": s.http_timeout_s, "max_wait_s": s.http_timeout_s}


async def _probe(name: str, call: Callable[[], Awaitable[str]], key_hint: str) -> Check:
    try:
        with trio.fail_after(30):
            return Check(name, "ok", await call())
    except RequestRejected as exc:
        if exc.status in (401, 403):
            return Check(name, "fail", f"the key was refused (HTTP {exc.status}): check {key_hint}")
        return Check(name, "ok", f"reachable (HTTP {exc.status} to the probe)")
    except (ProviderError, trio.TooSlowError) as exc:
        return Check(name, "fail", f"unreachable: {exc}")


async def outside_checks(s: Settings, wallets: frozenset[str] | None) -> list[Check]:
    checks: list[Check] = []
    jupiter = JupiterClient(s.jupiter_base_url, api_key=s.jupiter_api_key.get_secret_value() if s.jupiter_api_key
                            else None, tier=s.jupiter_tier, **_policy(s))
    dex = DexScreenerClient(s.dexscreener_base_url, **_policy(s))
    rpc_http = ResilientClient(Provider("rpc", Policy(rate_per_s=10, **_policy(s))), s.solana_rpc_url)
    rpc = SolanaRpc(rpc_http)
    clients: list[Any] = [jupiter, dex, rpc_http]
    try:
        async def jup() -> str:
            got = await jupiter.price_batch([SOL_MINT])
            return f"Price v3 answered ({'SOL priced' if SOL_MINT in got else 'SOL not priced'}), tier {s.jupiter_tier}"

        async def dexscreener() -> str:
            return f"answered ({len(await dex.pairs([SOL_MINT]))} SOL pairs)"

        async def rpc_health() -> str:
            return f"slot {await rpc.call('getSlot', [])}, health {await rpc.call('getHealth', [])}"

        checks.append(await _probe("jupiter", jup, "JUPITER_API_KEY"))
        checks.append(await _probe("dexscreener", dexscreener, "DEXSCREENER_BASE_URL"))
        checks.append(await _probe("rpc", rpc_health, "SOLANA_RPC_URL (its key, if any)"))
        checks.append(await _rugcheck(s, clients))
        checks += await _helius(s, wallets, clients)
        checks.append(await _telegram(s, clients))
        if s.alert_webhook_url is not None:
            checks.append(Check("alert webhook", "ok", "configured (not probed: a probe would post an alert)"))
        checks.append(await _clock(s, rpc))
    finally:
        for c in clients:
            await c.aclose()
    return checks


async def _rugcheck(s: Settings, clients: list[Any]) -> Check:
    if not s.rugcheck_base_url:
        return Check("rugcheck", "warn", "not configured (RUGCHECK_BASE_URL): the safety score leaves it out")
    headers = {"X-API-KEY": s.rugcheck_api_key.get_secret_value()} if s.rugcheck_api_key else None
    http = ResilientClient(Provider("rugcheck", Policy(rate_per_s=2, **_policy(s))), s.rugcheck_base_url, headers=headers)
    clients.append(http)

    async def call() -> str:
        await http.get(f"/v1/tokens/{SOL_MINT}/report/summary")
        return "answered"

    return await _probe("rugcheck", call, "RUGCHECK_API_KEY")


async def _helius(s: Settings, wallets: frozenset[str] | None, clients: list[Any]) -> list[Check]:
    if s.helius_api_key is None:
        return [Check("helius", "warn", "HELIUS_API_KEY not set: the webhook is not managed or checked, and a stalled "
                                        "webhook cannot be backfilled")]
    api = HeliusApi(s.helius_api_url, s.helius_api_key.get_secret_value(), **_policy(s))
    clients.append(api)

    async def listing() -> str:
        return f"webhook API answered ({len(await api.webhooks())} webhooks)"

    out = [await _probe("helius", listing, "HELIUS_API_KEY")]
    if out[0].status != "ok":
        return out
    if not s.helius_webhook_url:
        return out + [Check("helius webhook", "warn", "HELIUS_WEBHOOK_URL not set: walltrack does not manage the "
                                                      "webhook, so its URL, secret and addresses are not checked")]
    if wallets is None:
        return out + [Check("helius webhook", "warn", "not checked: the watchlist could not be read")]
    try:
        problems = await inspect_webhook(api, s.helius_webhook_url, webhook_secret(s), wallets)
    except ProviderError as exc:
        return out + [Check("helius webhook", "fail", f"could not be read: {exc}")]
    if problems:
        return out + [Check("helius webhook", "fail", "; ".join(problems) + " — run `walltrack helius sync`")]
    return out + [Check("helius webhook", "ok", f"enhanced, ANY types, secret set, {len(wallets)} addresses = the "
                                                f"watchlist, posts to {s.helius_webhook_url}")]


async def _telegram(s: Settings, clients: list[Any]) -> Check:
    if s.telegram_bot_token is None:
        return Check("telegram", "warn", "not configured (TELEGRAM_BOT_TOKEN, TELEGRAM_CHAT_ID): no Telegram alerts")
    http = ResilientClient(Provider("telegram", Policy(rate_per_s=1, **_policy(s))), s.telegram_api_url)
    clients.append(http)

    async def get_me() -> str:
        me = await http.get(f"/bot{s.telegram_bot_token.get_secret_value()}/getMe")
        return f"bot @{(me.get('result') or {}).get('username')} answers; alerts go to chat {s.telegram_chat_id}"

    return await _probe("telegram", get_me, "TELEGRAM_BOT_TOKEN")


async def _clock(s: Settings, rpc: SolanaRpc) -> Check:
    try:
        with trio.fail_after(30):
            slot = await rpc.call("getSlot", [])
            block_time = None
            for back in range(0, 20, 4):  # the newest slots may have no time yet, or be skipped
                try:
                    block_time = await rpc.call("getBlockTime", [slot - back])
                except RequestRejected:
                    continue
                if block_time is not None:
                    break
    except (ProviderError, trio.TooSlowError) as exc:
        return Check("clock", "fail", f"the RPC's block time could not be read: {exc}")
    if block_time is None:
        return Check("clock", "warn", "the RPC gave no block time for its latest slots")
    skew = time.time() - block_time
    if abs(skew) > s.doctor_max_clock_skew_s:
        return Check("clock", "fail", f"the local clock is {skew:+.0f} s off the chain's block time (more than "
                                      f"DOCTOR_MAX_CLOCK_SKEW_S={s.doctor_max_clock_skew_s:g}): time stops, day limits "
                                      "and pool ages would be wrong — fix NTP (timedatectl set-ntp true)")
    return Check("clock", "ok", f"{skew:+.1f} s from the chain's block time (slot {slot})")


def report(checks: list[Check], as_json: bool) -> str:
    if as_json:
        return json.dumps([asdict(c) for c in checks], indent=2)
    return "\n".join(f"{c.status.upper() if c.status == 'fail' else c.status:<5} {c.name:<15} {c.detail}" for c in checks)
