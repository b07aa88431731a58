"""The configuration as a JSON document, its history, and its round trip (`walltrack config export|import|history`).

What the database holds — the watchlist (address, label, status, copy-rule overrides) and the runtime settings (the
global trading mode) — is recorded by triggers in `config_history` (schema/009) on every change, with who made it
and what changed. The settings from the environment are recorded by `walltrack run` at start when they differ
from the last ones recorded (`record_settings`); secrets only ever as "set".

A document (`export`) is `{"format": "walltrack-config", "version": 1, "runtime_settings", "wallets", "settings"}`.
`import` validates all of it first (addresses, copy rules, the mode), then applies it in one transaction: the
watchlist becomes the file's (`merge=True` keeps wallets the file does not name), the running bot hears it through
NOTIFY like any other change. Settings live in the environment, so an import only reports how they differ
(`export --format env` prints them as a `.env` fragment).
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
from pydantic import SecretStr

from actors.rules import CopyRules, RulesError, effective, mode_refusal
from actors.trades import is_base58_pubkey
from storage import repo

FORMAT, VERSION = "walltrack-config", 1
SET = "(set)"  # how a configured secret appears in a snapshot


class ConfigImportError(ValueError):
    """The document cannot be imported: the message names what is wrong (nothing was changed)."""


def public_settings(settings: Any) -> dict[str, Any]:
    """Every setting as JSON, secrets as "(set)" or null: what a snapshot or an export may hold."""
    out: dict[str, Any] = {}
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            value = SET if value.get_secret_value() else None
        elif isinstance(value, (Decimal, Path)):
            value = str(value)
        out[name] = value
    return out


async def record_settings(conn: asyncpg.Connection, settings: dict[str, Any], by: str) -> bool:
    """Record the settings in force when they differ from the last recorded; True when a row was added."""
    last = await conn.fetchval("SELECT snapshot FROM config_history WHERE kind = 'settings' ORDER BY id DESC LIMIT 1")
    if last == settings:
        return False
    await conn.execute("INSERT INTO config_history (kind, by, changes, snapshot) VALUES ('settings', $1, $2, $3)",
                       by, [{"table": "settings", "op": "start", "fields": _changed(last or {}, settings)}], settings)
    return True


def _changed(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    return sorted(k for k in {*before, *after} if before.get(k) != after.get(k))


async def export(conn: asyncpg.Connection, settings: dict[str, Any], at: int | None = None) -> dict[str, Any]:
    """The configuration now (the tables), or as of history row `at` (its snapshot). The settings are the ones the
    bot recorded at its last start (as of `at`): what it runs with; `settings` (this process's) when none was."""
    upto = at if at is not None else 2**62
    if at is None:
        config = await conn.fetchval("SELECT walltrack_config_snapshot()")
    else:
        if not await conn.fetchval("SELECT 1 FROM config_history WHERE id = $1", at):
            raise ConfigImportError(f"no config history entry {at} (see `walltrack config history`)")
        config = await conn.fetchval(
            "SELECT snapshot FROM config_history WHERE kind = 'config' AND id <= $1 ORDER BY id DESC LIMIT 1", at)
        config = config or {"runtime_settings": {}, "wallets": []}
    recorded = await conn.fetchval(
        "SELECT snapshot FROM config_history WHERE kind = 'settings' AND id <= $1 ORDER BY id DESC LIMIT 1", upto)
    return {"format": FORMAT, "version": VERSION, "exported_at": datetime.now(timezone.utc).isoformat(),
            "as_of_history_id": at, "runtime_settings": config["runtime_settings"], "wallets": config["wallets"],
            "settings_source": "recorded by the bot at its start" if recorded is not None else "this environment",
            "settings": recorded if recorded is not None else settings}


async def history(conn: asyncpg.Connection, limit: int = 50) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT id, kind, at, by, changes FROM config_history ORDER BY id DESC LIMIT $1", limit)
    return [{"id": r["id"], "kind": r["kind"], "at": r["at"].isoformat(), "by": r["by"], "changes": r["changes"]}
            for r in rows]


def describe(change: dict[str, Any]) -> str:
    """One change as words: `wallets update 9JGu… (settings)`."""
    fields = f" ({', '.join(change['fields'])})" if change.get("fields") else ""
    key = f" {change['key']}" if change.get("key") else ""
    return f"{change['table']} {change['op']}{key}{fields}"


def env_lines(settings: dict[str, Any]) -> str:
    """The settings as a `.env` fragment (secrets left out: they are never exported)."""
    lines = []
    for name, value in sorted(settings.items()):
        if value == SET:
            continue
        text = "" if value is None else ("true" if value is True else "false" if value is False else str(value))
        lines.append(f"{name.upper()}={text}")
    return "\n".join(lines) + "\n"


# -- import -----------------------------------------------------------------------------------------------------
def validate(doc: Any, defaults: CopyRules) -> dict[str, Any]:
    """The document checked whole (raises ConfigImportError naming the first problem): wallets by address, the mode."""
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ConfigImportError(f'not a WallTrack config export (expected "format": "{FORMAT}")')
    if doc.get("version") != VERSION:
        raise ConfigImportError(f"unsupported config version {doc.get('version')!r} (this build reads {VERSION})")
    wallets = doc.get("wallets")
    if not isinstance(wallets, list):
        raise ConfigImportError('"wallets" must be an array')
    seen: dict[str, dict[str, Any]] = {}
    for i, w in enumerate(wallets):
        where = f"wallets[{i}]"
        if not isinstance(w, dict) or not is_base58_pubkey(str(w.get("address", ""))):
            raise ConfigImportError(f"{where}: address must be a Solana address (base58 public key)")
        if w["address"] in seen:
            raise ConfigImportError(f"{where}: {w['address']} is listed twice")
        label, status, overrides = w.get("label"), w.get("status", "active"), w.get("settings") or {}
        if label is not None and not isinstance(label, str):
            raise ConfigImportError(f"{where}: label must be a string or null")
        if status not in ("active", "paused"):
            raise ConfigImportError(f"{where}: status must be active or paused, not {status!r}")
        if not isinstance(overrides, dict):
            raise ConfigImportError(f"{where}: settings must be an object of copy-rule overrides")
        unknown = sorted(set(overrides) - set(CopyRules.model_fields))
        if unknown:
            raise ConfigImportError(f"{where}: unknown copy rule(s) {', '.join(unknown)}")
        try:
            effective(defaults, overrides)
        except RulesError as exc:
            raise ConfigImportError(f"{where}: {exc}") from None
        seen[w["address"]] = {"address": w["address"], "label": label, "status": status, "settings": overrides}
    runtime = doc.get("runtime_settings") or {}
    if not isinstance(runtime, dict) or set(runtime) - {"trading_mode"}:
        raise ConfigImportError('"runtime_settings" may hold only "trading_mode"')
    mode = runtime.get("trading_mode")
    if mode is not None and (refusal := mode_refusal(mode)) is not None:
        raise ConfigImportError(f"runtime_settings.trading_mode: {refusal}")
    return {"wallets": list(seen.values()), "trading_mode": mode}


async def apply(conn: asyncpg.Connection, plan: dict[str, Any], by: str, merge: bool = False,
                dry_run: bool = False) -> list[str]:
    """Make the database's configuration the plan's, in one transaction; returns what changed, one line each."""
    changes: list[str] = []
    async with conn.transaction():
        await conn.execute("SELECT set_config('walltrack.actor', $1, true)", by)
        current = {r["address"]: dict(r) for r in await conn.fetch("SELECT address, label, status, settings FROM wallets")}
        wanted = {w["address"]: w for w in plan["wallets"]}
        for address, w in wanted.items():
            old = current.get(address)
            if old is None:
                changes.append(f"add {address}" + (f" ({w['label']})" if w["label"] else ""))
            elif any(old[k] != w[k] for k in ("label", "status", "settings")):
                fields = [k for k in ("label", "status", "settings") if old[k] != w[k]]
                changes.append(f"update {address} ({', '.join(fields)})")
            else:
                continue
            await conn.execute(
                """INSERT INTO wallets (address, label, status, settings) VALUES ($1, $2, $3, $4)
                   ON CONFLICT (address) DO UPDATE SET label = EXCLUDED.label, status = EXCLUDED.status,
                                                       settings = EXCLUDED.settings""",
                address, w["label"], w["status"], w["settings"])
            await conn.execute("SELECT pg_notify($1, $2)", repo.WALLET_SETTINGS_CHANNEL, address)
        for address in sorted(set(current) - set(wanted)) if not merge else ():
            changes.append(f"remove {address}")
            await conn.execute("DELETE FROM wallets WHERE address = $1", address)
        stored = await repo.trading_mode(conn)
        mode = plan["trading_mode"]
        if mode is not None and (stored or {}).get("mode") != mode:
            changes.append(f"trading mode {(stored or {}).get('mode') or '(TRADING_MODE)'} -> {mode}")
            await repo.set_trading_mode(conn, mode, by)
        if changes:
            await conn.execute("SELECT pg_notify($1, $2)", repo.WATCHLIST_CHANNEL, "import")
        if dry_run:
            raise _DryRun(changes)
    return changes


class _DryRun(Exception):
    def __init__(self, changes: list[str]) -> None:
        super().__init__("dry run")
        self.changes = changes


async def import_document(conn: asyncpg.Connection, plan: dict[str, Any], by: str, merge: bool,
                          dry_run: bool) -> list[str]:
    """`apply`, rolled back when `dry_run` (the changes it would make are still returned)."""
    try:
        return await apply(conn, plan, by, merge, dry_run)
    except _DryRun as done:
        return done.changes


def settings_differences(file_settings: Any, current: dict[str, Any]) -> list[str]:
    """Settings in the file that differ from the environment's (secrets ignored): what an import cannot change."""
    if not isinstance(file_settings, dict):
        return []
    out = []
    for name in sorted(set(file_settings) & set(current)):
        a, b = file_settings[name], current[name]
        if SET in (a, b) or a == b:
            continue
        out.append(f"{name.upper()}: file {json.dumps(a)}, environment {json.dumps(b)}")
    return out
