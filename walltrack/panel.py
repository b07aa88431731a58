"""The panel's side of the composition root: the `ui.Backend` over a started `App`, and `serve_panel`.

Reads run on the store's asyncio thread and are awaited from NiceGUI's loop (`asyncio.wrap_future`), never
blocking it. Commands are the actors' own messages (`actors.messages`), carried out the way the CLI carries them out:
copy rules (`WalletSettingsChanged`), breaker resets (`BreakerReset`), the global trading mode
(`TradingModeChanged`) and the watchlist's edits are database writes the running bot hears through
LISTEN/NOTIFY and turns into those same messages; a position's `ClosePosition`, `ClosePartial` and `SetStop`
go to the position's own actor, which answers with a `CommandReply`. Each within the timeout the caller sets
(`ask_timeout`, `ASK_TIMEOUT_S` by default).
"""

from __future__ import annotations

import asyncio
import socket
from decimal import Decimal
from typing import Any, Awaitable, Callable, TypeVar

import asyncpg
import structlog

import ui
from actors import messages as m
from actors.rules import mode_refusal
from actors.trades import is_base58_pubkey
from storage import repo
from walltrack.bridge import ask as asyncio_ask
from walltrack.config import caps_in_force
from walltrack.settings import ConfigError, Settings

T = TypeVar("T")
log = structlog.get_logger("panel")

ASK_TIMEOUT_S = 3.0
MODE_DONE = {
    "off": "trading mode set to off: no new entries for any wallet; open positions keep their exits",
    "paper": "trading mode set to paper: wallets copy on paper again (their own mode overrides apply)",
    "live": "trading mode set to live: wallets whose copy rules are live now trade real swaps",
}


def panel_password(settings: Settings) -> str | None:
    p = settings.walltrack_panel_password
    return p.get_secret_value() if p is not None and p.get_secret_value() else None


def check_panel_access(settings: Settings) -> None:
    """Refuse, before anything starts, to serve the panel beyond loopback without a password, or on an address
    something else already holds."""
    try:
        ui.check_binding(settings.panel_host, panel_password(settings))
    except ui.AccessRefused as exc:
        raise ConfigError(str(exc)) from None
    if settings.panel_port:
        with socket.socket(socket.AF_INET6 if ":" in settings.panel_host else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds: TIME_WAIT is no holder
            try:
                probe.bind((settings.panel_host, settings.panel_port))
            except OSError as exc:
                raise ConfigError(f"the panel cannot listen on {settings.panel_host}:{settings.panel_port} ({exc.strerror}); "
                                  "set PANEL_HOST/PANEL_PORT or stop what holds it") from None


class PanelBackend:
    """`ui.Backend` over a started App (duck-typed: the App is not imported here, only used)."""

    def __init__(self, app: Any, ask_timeout: float = ASK_TIMEOUT_S) -> None:
        self._app = app
        self.settings: Settings = app.settings
        self._timeout = ask_timeout

    # -- reads ----------------------------------------------------------------------------------------
    def query(self, fn: Callable[[asyncpg.Connection], Awaitable[T]]) -> Awaitable[T]:
        return asyncio.wrap_future(self._app.store.submit(fn))

    async def status(self) -> dict[str, Any]:
        app = self._app
        out: dict[str, Any] = {"mode": self.trading_mode()}
        if app.services is not None and app.trio is not None:
            async def states() -> dict[str, Any]:  # the providers' clocks are trio's: read them there
                return app.services.provider_states()

            try:
                out["providers"] = await asyncio.wait_for(asyncio.wrap_future(app.trio.submit(states)), self._timeout)
            except Exception as exc:  # noqa: BLE001 - shown as missing, never blocking the page
                out["providers"] = {}
                out["providers_error"] = str(exc) or type(exc).__name__
        out["breaker"] = app._breaker_state()
        try:
            out["actors"] = await asyncio_ask(app.root, m.GetStats(), timeout=self._timeout)
        except Exception as exc:  # noqa: BLE001 - shown on the dashboard as "not answering"
            out["actors"] = None
            out["actors_error"] = str(exc) or type(exc).__name__
        return out

    def trading_mode(self) -> str:
        """The global mode the running bot was last told (the stored one, else TRADING_MODE)."""
        return self._app.trading_mode or self.settings.trading_mode

    def caps_in_force(self) -> list[str]:
        return caps_in_force(self.settings)

    # -- copy rules -----------------------------------------------------------------------------------
    def _defaults(self) -> Any:
        from walltrack.config import copy_rules

        return copy_rules(self.settings)

    def rule_fields(self) -> dict[str, Any]:
        try:
            return self._defaults().model_dump(mode="json")
        except Exception:  # noqa: BLE001 - no per-wallet rules in this build
            return {}

    def validate_rules(self, overrides: dict[str, Any]) -> dict[str, Any]:
        from actors.rules import RulesError, apply_assignments

        words = [f"{k}={v}" for k, v in overrides.items()]
        try:
            return apply_assignments(self._defaults(), {}, words)
        except RulesError as exc:
            raise ui.CommandRefused(str(exc)) from None

    # -- commands -------------------------------------------------------------------------------------
    async def command(self, cmd: ui.Command) -> str:
        handler = {
            ui.AddWallet: self._add_wallet,
            ui.SetWalletStatus: self._set_status,
            ui.RemoveWallet: self._remove_wallet,
            m.WalletSettingsChanged: self._set_rules,
            m.ClosePosition: self._position,
            m.ClosePartial: self._position,
            m.SetStop: self._position,
            m.BreakerReset: self._reset_breaker,
            m.TradingModeChanged: self._set_mode,
        }.get(type(cmd))
        if handler is None:
            raise ui.NotAvailable(f"{type(cmd).__name__} is not a panel command")
        result = await handler(cmd)
        log.info("panel_command", command=cmd.kind, result=result)
        return result

    async def _write(self, fn: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        async def as_panel(conn: asyncpg.Connection) -> T:
            async with conn.transaction():  # the config history records the panel as the author (schema/009)
                await conn.execute("SELECT set_config('walltrack.actor', 'panel', true)")
                return await fn(conn)

        try:
            return await asyncio.wait_for(self.query(as_panel), self._timeout * 2)
        except asyncio.TimeoutError:
            raise ui.CommandTimeout("the database did not answer in time; the change may or may not be stored") from None

    async def _add_wallet(self, c: ui.AddWallet) -> str:
        if not is_base58_pubkey(c.address):
            raise ui.CommandRefused(f"not a Solana address (base58 public key): {c.address!r}")
        added = await self._write(lambda conn: repo.add_wallet(conn, c.address, c.label))
        return f"{'added' if added else 'updated'} {c.label or c.address}"

    async def _set_status(self, c: ui.SetWalletStatus) -> str:
        if not await self._write(lambda conn: repo.set_wallet_status(conn, c.address, c.status)):
            raise ui.CommandRefused(f"not on the watchlist: {c.address}")
        return f"{'paused' if c.status == 'paused' else 'resumed'} {c.address}"

    async def _remove_wallet(self, c: ui.RemoveWallet) -> str:
        if not await self._write(lambda conn: repo.remove_wallet(conn, c.address)):
            raise ui.CommandRefused(f"not on the watchlist: {c.address}")
        return f"removed {c.address}"

    async def _set_rules(self, c: m.WalletSettingsChanged) -> str:
        overrides = self.validate_rules(c.overrides)
        if not await self._write(lambda conn: repo.set_wallet_settings(conn, c.wallet, overrides)):
            raise ui.CommandRefused(f"not on the watchlist: {c.wallet}")
        return f"copy rules saved for {c.wallet}" + ("" if overrides else " (all defaults)")

    async def _reset_breaker(self, c: m.BreakerReset) -> str:
        if not await self._write(lambda conn: repo.reset_breaker(conn, c.name)):
            raise ui.CommandRefused(f"breaker {c.name} is not tripped")
        return f"breaker {c.name} reset"

    async def _set_mode(self, c: m.TradingModeChanged) -> str:
        refusal = mode_refusal(c.mode, live_available=self.settings.has_wallet_key)
        if refusal is not None:
            log.warning("trading_mode_refused", mode=c.mode, by="panel", reason=refusal)
            raise ui.CommandRefused(refusal)
        previous = await self._write(lambda conn: repo.set_trading_mode(conn, c.mode, "panel"))
        log.info("trading_mode_changed", mode=c.mode, previous=previous or f"{self.settings.trading_mode} (TRADING_MODE)",
                 by="panel")
        return MODE_DONE[c.mode]

    async def _position(self, cmd: m.ClosePosition | m.ClosePartial | m.SetStop) -> str:
        """Ask the position's own actor (or, distributed, the node owning it); its `CommandReply` decides."""
        pid = cmd.position_id
        if getattr(self._app, "cluster", None) is not None:
            reply = await self._cluster_ask(cmd)
        else:
            reply = await self._local_ask(cmd)
        if not reply.ok:
            raise ui.CommandRefused(f"position #{pid}: {reply.error or 'refused'}")
        return f"position #{pid}: {position_done(cmd)}"

    async def _local_ask(self, cmd: m.ClosePosition | m.ClosePartial | m.SetStop) -> m.CommandReply:
        pid = cmd.position_id
        ref = self._app.actors.lookup(("position", str(pid)))  # a read-only view: no ask to the root
        if ref is None:
            raise ui.CommandRefused(f"position #{pid} is not running (closed, or restarting): nothing was sent")
        try:
            reply = await asyncio_ask(ref, cmd, timeout=self._timeout)
        except TimeoutError:
            raise ui.CommandTimeout(f"position #{pid} did not answer within {self._timeout:g} s; "
                                    "it may still act — watch its journal") from None
        except Exception as exc:  # noqa: BLE001 - the actor died meanwhile
            raise ui.CommandRefused(f"position #{pid} could not take the command: {exc}") from None
        if reply is None:
            raise ui.NotAvailable(f"position #{pid} does not take {type(cmd).__name__}")
        return reply

    async def _cluster_ask(self, cmd: m.ClosePosition | m.ClosePartial | m.SetStop) -> m.CommandReply:
        """Distributed mode: the command goes to the node owning the position's partition (walltrack.cluster.commands)."""
        from walltrack.cluster.commands import NotOwned

        try:
            return await asyncio.wrap_future(self._app.cluster.command(cmd.position_id, cmd))
        except (LookupError, NotOwned) as exc:
            raise ui.CommandRefused(str(exc)) from None
        except TimeoutError as exc:
            raise ui.CommandTimeout(f"{exc}; it may still act — watch its journal") from None


def position_done(cmd: m.ClosePosition | m.ClosePartial | m.SetStop) -> str:
    """What the operator reads once the position accepted the command."""
    if isinstance(cmd, m.ClosePartial):
        return f"sale of {(Decimal(cmd.fraction) * 100).normalize():f}% ordered"
    if isinstance(cmd, m.SetStop):
        return f"stop moved to {cmd.stop_price}"
    return "close ordered"


def serve_panel(app: Any, should_stop: Callable[[], str | None] | None = None) -> None:
    """Serve the panel in this (the main) thread until Ctrl-C, SIGTERM or `should_stop()` gives a reason."""
    s: Settings = app.settings
    ui.serve(PanelBackend(app), host=s.panel_host, port=s.panel_port, password=panel_password(s),
             should_stop=should_stop)
