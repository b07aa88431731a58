"""The trading commands of `walltrack` (walltrack/cli.py has the rest and the shared helpers):

    walltrack wallets add|remove|list|set|show|stats   the watchlist and each wallet's copy rules
    walltrack breakers list|reset NAME                  the risk breakers
    walltrack mode show|set off|paper|live              the global trading mode and the caps in force
    walltrack wallet                                    the trading key's address and balances (never the key)
    walltrack signals|positions|ignored [--json]        what was decided
    walltrack explain FILE --wallet ADDRESS             the trades a webhook body holds for a wallet
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Callable

from actors.trades import InvalidTransaction, check_shape, classify
from walltrack.cli import UsageError, _address, _print_json, _print_rows, _with_db
from walltrack.settings import Settings


def add_commands(sub: argparse._SubParsersAction) -> None:
    w = sub.add_parser("wallets", help="the watchlist")
    ws = w.add_subparsers(dest="wallets_command", required=True)
    add = ws.add_parser("add", help="watch a wallet")
    add.add_argument("address")
    add.add_argument("--label")
    rm = ws.add_parser("remove", help="stop watching a wallet")
    rm.add_argument("address")
    ls = ws.add_parser("list", help="list watched wallets")
    ls.add_argument("--json", action="store_true")
    st = ws.add_parser("set", help="override copy rules for a wallet: key=value ... (key= removes an override)")
    st.add_argument("address")
    st.add_argument("assignments", nargs="*", metavar="key=value")
    sh = ws.add_parser("show", help="a wallet's copy rules: the defaults with its overrides")
    sh.add_argument("address")
    sh.add_argument("--json", action="store_true")
    stats = ws.add_parser("stats", help="per-wallet performance since watching began")
    stats.add_argument("--json", action="store_true")
    w.set_defaults(fn=cmd_wallets)

    b = sub.add_parser("breakers", help="risk breakers: list them, or reset one by name")
    bs = b.add_subparsers(dest="breakers_command", required=True)
    bl = bs.add_parser("list", help="every breaker that has tripped, and its state")
    bl.add_argument("--json", action="store_true")
    br = bs.add_parser("reset", help="clear a tripped breaker (the running bot takes new entries again)")
    br.add_argument("name", help="e.g. loss_streak, daily_loss, max_drawdown, wallet_pause:ADDRESS, token_cooldown:MINT")
    b.set_defaults(fn=cmd_breakers)

    md = sub.add_parser("mode", help="the global trading mode: show it, or set it (off pauses every new entry)")
    mds = md.add_subparsers(dest="mode_command", required=True)
    mshow = mds.add_parser("show", help="the mode in force and the caps every entry must pass")
    mshow.add_argument("--json", action="store_true")
    mset = mds.add_parser("set", help="off: no new entries for any wallet (exits go on); paper; live (needs a wallet key)")
    mset.add_argument("mode", choices=("off", "paper", "live"))
    md.set_defaults(fn=cmd_mode)

    wl = sub.add_parser("wallet", help="the trading key's public address and its SOL and token balances (never the key)")
    wl.add_argument("--json", action="store_true")
    wl.set_defaults(fn=cmd_wallet)

    for name, fn, text in (("signals", cmd_signals, "signals recorded"), ("positions", cmd_positions, "positions"),
                           ("ignored", cmd_ignored, "watched wallets' transactions that are no signal, with the reason")):
        c = sub.add_parser(name, help=f"list {text}")
        c.add_argument("--json", action="store_true", help="print a JSON array")
        c.set_defaults(fn=fn)

    ex = sub.add_parser("explain", help="classify the trades of a wallet in a webhook body")
    ex.add_argument("file", help="a Helius enhanced webhook body: an array or a single transaction")
    ex.add_argument("--wallet", required=True, help="the watched wallet's address")
    ex.set_defaults(fn=cmd_explain, needs_settings=False)


def cmd_wallets(args: argparse.Namespace, settings: Settings) -> int:
    from storage import repo as store

    if args.wallets_command == "add":
        address = _address(args.address)
        added = _with_db(settings, lambda c: store.add_wallet(c, address, args.label))
        print(f"{'added' if added else 'updated'} {address}")
    elif args.wallets_command == "remove":
        address = _address(args.address)
        if not _with_db(settings, lambda c: store.remove_wallet(c, address)):
            raise UsageError(f"not on the watchlist: {address}")
        print(f"removed {address}")
    elif args.wallets_command in ("set", "show", "stats"):
        return cmd_wallet_rules(args, settings)
    else:
        _print_rows(_with_db(settings, store.list_wallets), args.json,
                    lambda r: f"{r['address']}  {r['status']:<7} {r['label'] or ''}")
    return 0


def cmd_wallet_rules(args: argparse.Namespace, settings: Settings) -> int:
    """`wallets set ADDRESS key=value...` / `wallets show ADDRESS` / `wallets stats`: copy rules and performance."""
    from actors.rules import RulesError, apply_assignments, effective
    from storage import repo as store
    from walltrack.config import copy_rules

    defaults = copy_rules(settings)
    if args.wallets_command == "stats":
        def line(r: dict[str, Any]) -> str:
            win = "-" if r["win_rate"] is None else f"{r['win_rate'] * 100:.0f}%"
            return (f"{r['address']}  {r['state']:<10} closed {r['closed']:>3}  win {win:>4}  "
                    f"realized {r['realized_pnl_sol']} SOL  unrealized {r['unrealized_pnl_sol']} SOL  "
                    f"taken {r['signals_taken']} skipped {r['signals_skipped']}")

        _print_rows(_with_db(settings, lambda c: store.wallet_stats(c, settings.stats_min_trades)), args.json, line)
        return 0
    address = _address(args.address)
    current = _with_db(settings, lambda c: store.wallet_settings(c, address))
    if current is None:
        raise UsageError(f"not on the watchlist: {address}")
    try:
        if args.wallets_command == "set":
            if not args.assignments:
                raise UsageError("give at least one key=value (key= removes an override)")
            new = apply_assignments(defaults, current, args.assignments)
            _with_db(settings, lambda c: store.set_wallet_settings(c, address, new))
            current = new
        rules = effective(defaults, current)
    except RulesError as exc:
        raise UsageError(str(exc)) from None
    view = {"address": address, "overrides": current, "effective": rules.model_dump(mode="json")}
    if args.wallets_command == "set" or not getattr(args, "json", False):
        for key, value in view["effective"].items():
            print(f"{key:<22} {json.dumps(value)}{'  (override)' if key in current else ''}")
    else:
        _print_json(view)
    return 0


def cmd_breakers(args: argparse.Namespace, settings: Settings) -> int:
    """`breakers list [--json]` / `breakers reset NAME`."""
    from storage import repo as store

    if args.breakers_command == "reset":
        if not _with_db(settings, lambda c: store.reset_breaker(c, args.name)):
            raise UsageError(f"no tripped breaker named {args.name!r} (see `walltrack breakers list`)")
        print(f"reset {args.name}")
        return 0
    _print_rows(_with_db(settings, store.list_breakers), args.json,
                lambda r: f"{r['name']:<60} {r['state']:<8} until {r['until'] or 'reset'}  {r['reason']}")
    return 0


def cmd_mode(args: argparse.Namespace, settings: Settings) -> int:
    """`mode show [--json]` / `mode set off|paper|live`: the global trading mode (the running bot hears a change at
    once through NOTIFY). Live is refused, with the reason, without a wallet key."""
    import structlog

    from actors.rules import mode_refusal
    from storage import repo as store
    from walltrack.config import caps_in_force

    if args.mode_command == "set":
        refusal = mode_refusal(args.mode, live_available=settings.has_wallet_key)
        if refusal is not None:
            structlog.get_logger("cli").warning("trading_mode_refused", mode=args.mode, by="cli", reason=refusal)
            raise UsageError(f"mode not changed: {refusal}")
        previous = _with_db(settings, lambda c: store.set_trading_mode(c, args.mode, "cli"))
        previous = previous or f"{settings.trading_mode} (TRADING_MODE)"
        # the audit line, at WARNING so the CLI's quiet logging keeps it (the table runtime_setting_events too)
        structlog.get_logger("cli").warning("trading_mode_changed", mode=args.mode, previous=previous, by="cli")
        print(f"trading mode: {previous} -> {args.mode}"
              + ("  (no new entries for any wallet; exits go on)" if args.mode == "off" else "")
              + ("  (real swaps, signed with the wallet key, for wallets whose copy rules are live)"
                 if args.mode == "live" else ""))
        return 0
    stored = _with_db(settings, store.trading_mode)
    view = {"mode": stored["mode"] if stored else settings.trading_mode,
            "source": "operator" if stored else "TRADING_MODE",
            "updated_at": stored["updated_at"] if stored else None, "updated_by": stored["updated_by"] if stored else None,
            "caps": caps_in_force(settings)}
    if args.json:
        _print_json(view)
    else:
        print(f"trading mode: {view['mode']}" + (f"  (set by the {view['updated_by']} at {view['updated_at']})" if stored
                                                  else "  (from TRADING_MODE)"))
        print("caps in force:")
        for line in view["caps"]:
            print(f"  {line}")
    return 0


def cmd_wallet(args: argparse.Namespace, settings: Settings) -> int:
    """`wallet [--json]`: the trading key's public address, its SOL and token balances, read from SOLANA_RPC_URL.
    Never the secret."""
    import trio

    from adapters.http import Policy, Provider, ProviderError, ResilientClient
    from adapters.solana_rpc import SolanaRpc
    from execution.keys import WalletKey
    from execution.reconcile import wallet_view

    key = WalletKey.from_settings(settings)
    if key is None:
        raise UsageError("no wallet key configured: set WALLET_KEYPAIR_PATH (a Solana CLI key file) or WALLET_PRIVATE_KEY")

    async def read() -> dict[str, Any]:
        policy = Policy(rate_per_s=10, attempt_timeout_s=settings.http_timeout_s, max_wait_s=settings.provider_max_wait_s)
        async with ResilientClient(Provider("rpc", policy), settings.solana_rpc_url) as http:
            with trio.fail_after(settings.http_timeout_s * 6):
                return await wallet_view(SolanaRpc(http), key.address)

    try:
        view = trio.run(read)
    except (ProviderError, trio.TooSlowError) as exc:
        raise UsageError(f"{key.address}: cannot read the wallet from SOLANA_RPC_URL ({type(exc).__name__}: {exc})") from None
    if args.json:
        _print_json(view)
        return 0
    print(f"address  {view['address']}")
    print(f"SOL      {view['sol']} ({view['sol_lamports']} lamports)")
    for t in view["tokens"]:
        print(f"token    {t['mint']}  {t['ui_amount']}  ({t['amount']} raw, {t['decimals']} decimals, "
              f"{t['program']} account {t['account']})")
    if not view["tokens"]:
        print("tokens   none")
    return 0


def _listing(query: str, line: Callable[[dict[str, Any]], str]) -> Callable[[argparse.Namespace, Settings], int]:
    """A `signals`/`positions` command: `_print_rows` of a store query."""

    def command(args: argparse.Namespace, settings: Settings) -> int:
        from storage import repo as store

        _print_rows(_with_db(settings, getattr(store, query)), args.json, line)
        return 0

    return command


cmd_signals = _listing(
    "list_signals",
    lambda r: f"{r['created_at']}  {r['wallet'][:8]}  {r['side']:<4} {r['token_mint'][:8]}  {r['decision']:<7} {r['reason']}",
)
cmd_ignored = _listing(
    "list_ignored",
    lambda r: f"{r['observed_at']}  {r['wallet'][:8]}  {r['outcome']:<9} {r['reason']:<22} {r['signature']}",
)
cmd_positions = _listing(
    "list_positions",
    lambda r: f"#{r['id']}  {r['status']:<7} {r['wallet'][:8]}  {r['token_mint'][:8]}  entry {r['entry_quote_amount']}",
)


def cmd_explain(args: argparse.Namespace, settings: Settings | None) -> int:
    wallet = _address(args.wallet)
    try:
        data = json.loads(Path(args.file).read_text())
    except OSError as exc:
        raise UsageError(f"cannot read {args.file}: {exc.strerror}") from None
    except ValueError:
        raise UsageError(f"{args.file} is not valid JSON") from None
    txs = data if isinstance(data, list) else [data]
    for i, tx in enumerate(txs):
        try:
            check_shape(tx, f"transaction[{i}]")
        except InvalidTransaction as exc:
            raise UsageError(f"{args.file}: {exc}") from None
        trade = classify(tx, wallet)
        if trade is not None:
            print(json.dumps(trade.as_json()))
    return 0
