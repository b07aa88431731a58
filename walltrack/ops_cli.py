"""The operator's commands for running WallTrack for months (the `ops/` scripts call them):

    walltrack status                     the running bot's /health, summarised (exit 1 unless ok)
    walltrack logs [-f] [-n N]           the JSON log, pretty
    walltrack doctor [--json]            is everything ready? one line per check (exit 1 on a failure)
    walltrack backup [--dir D] [--keep N]
    walltrack restore PATH|latest [--force]
    walltrack config export|import|history
    walltrack helius sync                the enhanced webhook made to watch the watchlist
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
import time
from pathlib import Path
from typing import Any

from walltrack.settings import Settings


def add_commands(sub: argparse._SubParsersAction) -> None:
    st = sub.add_parser("status", help="the running bot's health, summarised (exit 1 unless ok)")
    st.add_argument("--json", action="store_true", help="print /health as it is")
    st.set_defaults(fn=cmd_status)

    lg = sub.add_parser("logs", help="the JSON log, pretty (-f to follow)")
    lg.add_argument("-f", "--follow", action="store_true")
    lg.add_argument("-n", "--lines", type=int, default=20, help="last lines to show first (default 20)")
    lg.add_argument("--level", choices=("debug", "info", "warning", "error"), help="this level and above")
    lg.add_argument("--grep", help="only lines containing this text (a wallet, a signature, an event)")
    lg.add_argument("--json", action="store_true", help="the raw JSON lines")
    lg.set_defaults(fn=cmd_logs)

    dr = sub.add_parser("doctor", help="check settings, database, port, providers, the Helius webhook, clock, disk")
    dr.add_argument("--json", action="store_true")
    dr.set_defaults(fn=cmd_doctor, needs_settings=False)

    bk = sub.add_parser("backup", help="pg_dump of the database + settings and watchlist as JSON, timestamped")
    bk.add_argument("--dir", type=Path, help="where backups go (default BACKUP_DIR, else $WALLTRACK_DATA_DIR/backups)")
    bk.add_argument("--keep", type=int, help="how many backups to keep (default BACKUP_KEEP)")
    bk.add_argument("--json", action="store_true", help="print the manifest")
    bk.set_defaults(fn=cmd_backup)

    rs = sub.add_parser("restore", help="restore a backup into an empty database (--force: replace a non-empty one)")
    rs.add_argument("backup", help="a backup directory, or 'latest' (the newest in the backup directory)")
    rs.add_argument("--dir", type=Path, help="the backup directory 'latest' looks in")
    rs.add_argument("--force", action="store_true", help="drop everything in a non-empty database first")
    rs.set_defaults(fn=cmd_restore)

    cf = sub.add_parser("config", help="the configuration as JSON: export, import, history")
    cfs = cf.add_subparsers(dest="config_command", required=True)
    ex = cfs.add_parser("export", help="settings, watchlist, copy rules and trading mode as one JSON document")
    ex.add_argument("--at", type=int, metavar="ID", help="as of this config history entry")
    ex.add_argument("--format", choices=("json", "env"), default="json", help="env: the settings as a .env fragment")
    ex.add_argument("-o", "--output", type=Path, help="write to this file (default: stdout)")
    im = cfs.add_parser("import", help="make the watchlist, copy rules and mode those of an export")
    im.add_argument("file", type=Path)
    im.add_argument("--merge", action="store_true", help="keep watched wallets the file does not list")
    im.add_argument("--dry-run", action="store_true", help="show the changes, change nothing")
    hi = cfs.add_parser("history", help="every configuration change: who, what, when")
    hi.add_argument("--limit", type=int, default=50)
    hi.add_argument("--json", action="store_true")
    cf.set_defaults(fn=cmd_config)

    hl = sub.add_parser("helius", help="the Helius enhanced webhook")
    hls = hl.add_subparsers(dest="helius_command", required=True)
    sy = hls.add_parser("sync", help="create or update it to watch the watchlist (HELIUS_WEBHOOK_URL, HELIUS_API_KEY)")
    sy.add_argument("--json", action="store_true")
    hl.set_defaults(fn=cmd_helius)


def _usage(message: str) -> Exception:
    from walltrack.cli import UsageError

    return UsageError(message)


# -- status and logs --------------------------------------------------------------------------------------------
def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    import httpx

    host = "127.0.0.1" if settings.gateway_host in ("0.0.0.0", "::", "") else settings.gateway_host
    url = f"http://{host}:{settings.gateway_port}/health"
    try:
        resp = httpx.get(url, timeout=5)
        body = resp.json()
    except (httpx.HTTPError, ValueError) as exc:
        print(f"status     unreachable: {url} ({type(exc).__name__}) — is walltrack running?")
        return 1
    if args.json:
        print(json.dumps(body, indent=2))
        return 0 if body.get("status") == "ok" else 1
    for line in health_lines(body):
        print(line)
    return 0 if body.get("status") == "ok" else 1


def health_lines(h: dict[str, Any]) -> list[str]:
    actors = h.get("actors") or {}
    breaker = h.get("circuit_breaker") or {}
    providers = ", ".join(f"{n} {p.get('breaker')}" for n, p in sorted((h.get("providers") or {}).items()))
    return [
        f"status     {h.get('status')}  (uptime {h.get('uptime_s')} s, trading mode {h.get('trading_mode')})",
        f"database   {h.get('database')}; inbox pending {h.get('inbox_pending')}",
        f"webhook    last delivery {h.get('last_webhook_at') or 'none yet'}; last signal {h.get('last_signal_at') or 'none yet'}",
        f"breaker    {breaker.get('state')}" + (f" — {breaker.get('reason')}" if breaker.get("reason") else ""),
        f"actors     {actors.get('wallets', '?')} wallets, {actors.get('positions', '?')} positions, "
        f"{actors.get('restarts', '?')} restarts",
        f"providers  {providers or 'none'}",
    ]


def cmd_logs(args: argparse.Namespace, settings: Settings) -> int:
    from operations import logview

    path = settings.log_dir / "walltrack.log"
    wanted = logview.keep(args.level, args.grep)
    show = (lambda line: line.rstrip("\n")) if args.json else logview.pretty
    last, inode, offset = logview.tail(path, max(0, args.lines))
    for line in last:
        if wanted(line):
            print(show(line))
    if not args.follow:
        if not path.exists():
            print(f"walltrack: no log yet at {path}", file=sys.stderr)
        return 0
    sys.stdout.flush()
    for line in logview.follow(path, inode, offset):
        if wanted(line):
            print(show(line), flush=True)
    return 0


# -- doctor, backup, restore ------------------------------------------------------------------------------------
def cmd_doctor(args: argparse.Namespace, settings: Settings | None) -> int:
    from operations import doctor
    from walltrack.logs import Redactor, configure_logging
    from walltrack.settings import ConfigError, load_settings

    try:
        configure_logging(Redactor(load_settings().secrets()), "ERROR", stream=sys.stderr)
    except ConfigError:
        pass  # the settings check says it
    checks = doctor.run()
    print(doctor.report(checks, args.json))
    return 1 if any(c.status == "fail" for c in checks) else 0


def cmd_backup(args: argparse.Namespace, settings: Settings) -> int:
    from operations.backup import BackupError, take_backup

    if args.keep is not None and args.keep < 1:
        raise _usage("--keep must be at least 1")
    try:
        path, manifest = take_backup(settings, args.dir, args.keep)
    except BackupError as exc:
        print(f"walltrack: backup failed: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"path": str(path), **manifest}, indent=2))
        return 0
    rows = manifest["rows"]
    print(f"backup {path}")
    print(f"  {sum(rows.values())} rows in {len(rows)} tables (signals {rows.get('public.signals', 0)}, positions "
          f"{rows.get('public.positions', 0)}, fills {rows.get('public.fills', 0)}), sha256 {manifest['sha256'][:16]}…")
    if manifest["pruned"]:
        print(f"  removed {len(manifest['pruned'])} older backup(s): {', '.join(manifest['pruned'])}")
    return 0


def cmd_restore(args: argparse.Namespace, settings: Settings) -> int:
    from operations.backup import BackupError, backup_dir, list_backups, restore

    path = Path(args.backup)
    if args.backup == "latest":
        found = list_backups(args.dir or backup_dir(settings))
        if not found:
            raise _usage(f"no backup in {args.dir or backup_dir(settings)}")
        path = found[-1]
    elif not path.exists():
        raise _usage(f"no such backup: {path}")
    try:
        result = restore(settings, path, force=args.force)
    except BackupError as exc:
        print(f"walltrack: restore refused: {exc}", file=sys.stderr)
        return 1
    print(f"restored {path.name}: {result['rows']} rows in {result['tables']} tables, every count and the realized "
          f"PnL equal to the backup's (taken {result['backup_created_at']})")
    return 0


# -- config -------------------------------------------------------------------------------------------------------
def cmd_config(args: argparse.Namespace, settings: Settings) -> int:
    from storage import config_history as ch
    from walltrack.cli import _print_json, _with_db
    from walltrack.config import copy_rules

    current = ch.public_settings(settings)
    if args.config_command == "history":
        rows = _with_db(settings, lambda c: ch.history(c, args.limit))
        if args.json:
            _print_json(rows)
        for r in [] if args.json else reversed(rows):
            print(f"#{r['id']:<5} {r['at'][:19]}  {r['by']:<16} {'; '.join(map(ch.describe, r['changes'])) or r['kind']}")
        return 0
    if args.config_command == "export":
        try:
            doc = _with_db(settings, lambda c: ch.export(c, current, args.at))
        except ch.ConfigImportError as exc:
            raise _usage(str(exc)) from None
        text = ch.env_lines(doc["settings"]) if args.format == "env" else json.dumps(doc, indent=2, default=str) + "\n"
        if args.output:
            args.output.write_text(text)
            print(f"exported to {args.output}", file=sys.stderr)
        else:
            sys.stdout.write(text)
        return 0
    try:
        doc = json.loads(args.file.read_text())
        plan = ch.validate(doc, copy_rules(settings))
    except OSError as exc:
        raise _usage(f"cannot read {args.file}: {exc.strerror}") from None
    except ValueError as exc:
        raise _usage(f"{args.file}: {exc}") from None
    by = f"import:{getpass.getuser()}"
    changes = _with_db(settings, lambda c: ch.import_document(c, plan, by, args.merge, args.dry_run))
    for line in changes or ["nothing to change: the database already holds this configuration"]:
        print(("would " if args.dry_run and changes else "") + line)
    for line in ch.settings_differences(doc.get("settings"), current):
        print(f"note: {line} (settings come from the environment or .env; `config export --format env` writes them)")
    return 0


# -- helius -------------------------------------------------------------------------------------------------------
def cmd_helius(args: argparse.Namespace, settings: Settings) -> int:
    import trio

    from adapters.helius import HeliusApi, sync_webhook
    from adapters.http import ProviderError
    from storage import repo as store
    from walltrack.cli import _with_db
    from walltrack.secrets import webhook_secret

    s = settings
    if s.helius_api_key is None or not s.helius_webhook_url:
        raise _usage("helius sync needs HELIUS_API_KEY and HELIUS_WEBHOOK_URL (the public https URL Helius posts to)")
    wallets = frozenset(_with_db(settings, store.active_wallets))
    api = HeliusApi(s.helius_api_url, s.helius_api_key.get_secret_value(), attempt_timeout_s=s.http_timeout_s)

    async def go() -> Any:
        try:
            return await sync_webhook(api, s.helius_webhook_url, webhook_secret(s), wallets)
        finally:
            await api.aclose()

    t0 = time.monotonic()
    try:
        result = trio.run(go)
    except ProviderError as exc:
        print(f"walltrack: helius sync failed: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result.as_dict()))
        return 0
    print(f"webhook {result.webhook_id or '-'}: {result.action}, {result.addresses} addresses (+{result.added} "
          f"-{result.removed}){', re-enabled' if result.reenabled else ''} in {time.monotonic() - t0:.1f} s")
    return 0
