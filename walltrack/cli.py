"""`walltrack` command line. Bad input gets one clear message on stderr and exit status 2."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
from typing import Any, Awaitable, Callable, TypeVar

import asyncpg

from actors.trades import is_base58_pubkey
from storage.db import database_url, migrate, migration_status
from walltrack.settings import ConfigError, Settings, load_settings

T = TypeVar("T")


class UsageError(Exception):
    pass


def _with_db(settings: Settings, fn: Callable[[asyncpg.Connection], Awaitable[T]], apply_migrations: bool = True) -> T:
    """Run one coroutine on one connection to the configured (or embedded) database."""
    from storage.store import init_connection

    url, pg = database_url(settings)

    async def go() -> T:
        # the config history's "who": changes made here are the operator's at this terminal
        conn = await asyncpg.connect(url, server_settings={"application_name": f"cli:{getpass.getuser()}"[:63]})
        try:
            await init_connection(conn)
            if apply_migrations:
                await migrate(conn)
            return await fn(conn)
        finally:
            await conn.close()

    try:
        return asyncio.run(go())
    finally:
        if pg is not None:
            pg.close()


def _print_json(value: Any) -> None:
    json.dump(value, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def _print_rows(rows: list[dict[str, Any]], as_json: bool, line: Callable[[dict[str, Any]], str]) -> None:
    """A listing: the rows as a JSON array with --json, else one line each."""
    if as_json:
        _print_json(rows)
    else:
        for r in rows:
            print(line(r))


def _address(value: str) -> str:
    if not is_base58_pubkey(value):
        raise UsageError(f"not a Solana address (base58 public key): {value!r}")
    return value


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    from walltrack.app import run

    return run(settings)


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from walltrack.demo import run_demo

    if args.minutes is not None and args.minutes <= 0:
        raise UsageError("--minutes must be positive")
    if args.speed <= 0:
        raise UsageError("--speed must be positive")
    if args.headless and args.minutes is None:
        raise UsageError("--headless needs --minutes (how long to simulate)")
    ports = {f"{name}_port": getattr(args, f"{name}_port") for name in ("panel", "gateway")}
    for name, port in ports.items():
        if port is not None and not 0 <= port <= 65535:
            raise UsageError(f"--{name.replace('_', '-')} must be a port number (0-65535)")
    settings = settings.model_copy(update={k: v for k, v in ports.items() if v is not None})
    if args.nodes is not None or args.kill_node_at is not None:
        return _cluster_demo(args, settings)
    return run_demo(settings, args.headless, args.minutes, args.speed, args.seed, live=args.live)


def _cluster_demo(args: argparse.Namespace, settings: Settings) -> int:
    """`demo --nodes N [--kill-node-at MINUTE]`: the same market against N node processes on a local JetStream cluster."""
    nodes = args.nodes if args.nodes is not None else 1
    if not 1 <= nodes <= 9:
        raise UsageError("--nodes must be between 1 and 9")
    if args.kill_node_at is not None:
        if nodes < 2:
            raise UsageError("--kill-node-at needs --nodes 2 or more (someone must survive)")
        if args.kill_node_at <= 0 or (args.minutes is not None and args.kill_node_at >= args.minutes):
            raise UsageError("--kill-node-at must be a minute inside the run (0 < MINUTE < --minutes)")
    from walltrack.cluster.demo import run_cluster_demo

    return run_cluster_demo(settings, args.headless, args.minutes, args.speed, args.seed, nodes, args.kill_node_at)


def cmd_db(args: argparse.Namespace, settings: Settings) -> int:
    if args.db_command == "migrate":
        applied = _with_db(settings, migrate, apply_migrations=False)
        print(f"applied {len(applied)} migration(s){': ' + ', '.join(applied) if applied else ''}")
        return 0
    rows = _with_db(settings, migration_status, apply_migrations=False)
    for r in rows:
        flag = "" if r["checksum_ok"] in (None, True) else "  (file changed since applied!)"
        print(f"{r['version']}  {r['name']:<30} {r['state']:<8} {r['applied_at'] or ''}{flag}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="walltrack", description="Self-hosted Solana copy-trading bot.")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="run everything in the foreground (Ctrl-C to stop)").set_defaults(fn=cmd_run)

    demo = sub.add_parser("demo", help="run the bot against the offline sandbox market (paper mode, or --live)")
    demo.add_argument("--headless", action="store_true", help="no panel; print a JSON summary at the end")
    demo.add_argument("--live", action="store_true",
                      help="live mode: real signed swaps on the sandbox's chain, with a keypair generated and funded there")
    demo.add_argument("--minutes", type=float, help="simulated minutes to run (default: until Ctrl-C)")
    demo.add_argument("--speed", type=float, default=10.0, help="simulated seconds per wall second (default 10)")
    demo.add_argument("--seed", type=int, default=7, help="market seed: the same seed, the same market")
    demo.add_argument("--panel-port", type=int, help="serve the panel on this port (default: PANEL_PORT, 8080)")
    demo.add_argument("--gateway-port", type=int, help="serve the webhook on this port (default: GATEWAY_PORT, 8000)")
    demo.add_argument("--nodes", type=int, help="run N bot nodes (processes) on a local 3-server JetStream cluster")
    demo.add_argument("--kill-node-at", type=float, metavar="MINUTE",
                      help="with --nodes: SIGKILL the node holding the risk lease at this simulated minute")
    demo.set_defaults(fn=cmd_demo)

    db = sub.add_parser("db", help="database migrations")
    dbs = db.add_subparsers(dest="db_command", required=True)
    dbs.add_parser("migrate", help="apply pending migrations")
    dbs.add_parser("status", help="list applied and pending migrations")
    db.set_defaults(fn=cmd_db)

    from walltrack import ops_cli, trading_cli

    trading_cli.add_commands(sub)  # wallets, breakers, mode, wallet, signals, positions, ignored, explain
    ops_cli.add_commands(sub)  # status, logs, doctor, backup, restore, config, helius
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        settings = load_settings() if getattr(args, "needs_settings", True) else None
        if settings is not None and args.command not in ("run", "demo"):
            from walltrack.logs import Redactor, configure_logging

            configure_logging(Redactor(settings.secrets()), "WARNING", stream=sys.stderr)
        return args.fn(args, settings)
    except (ConfigError, UsageError) as exc:
        print(f"walltrack: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # `python -m walltrack.cli`: run the one `walltrack.cli` the other modules import
    from walltrack.cli import main as canonical

    sys.exit(canonical())
