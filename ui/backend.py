"""What the panel needs from the running bot, as a Protocol: the composition root implements it
(`walltrack/panel.py`), the panel never imports `walltrack` (dependencies point walltrack → ui → actors).

Reads go to the database (`query`); every change is a command (`command`): the actors' own message
(`actors.messages`), which the backend stores or sends to the actor that decides it, or a watchlist write,
answered within the backend's timeout. Errors say what the operator sees:

    PanelError                 the command was not carried out; the message is shown as is
    ├── NotAvailable           the bot has no such command yet (never faked)
    ├── CommandTimeout         the actor did not answer in time (it may still act)
    └── CommandRefused         the actor or the validation said no, with the reason
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Literal, Protocol, TypeVar, Union

import asyncpg

from actors import messages as m

T = TypeVar("T")


class PanelError(Exception):
    """A command that was not carried out; `str(exc)` is what the operator reads."""


class NotAvailable(PanelError):
    """The running bot has no such command yet."""


class CommandTimeout(PanelError):
    """The actor did not answer within the timeout."""


class CommandRefused(PanelError):
    """The actor (or validation) refused the command, with the reason."""


# -- operator commands (what a button asks for) -----------------------------------------------------------
# A change to a position, a breaker, the trading mode or a wallet's copy rules is the actors' own message
# (`actors.messages`): ClosePosition, ClosePartial, SetStop, BreakerReset, TradingModeChanged,
# WalletSettingsChanged. The watchlist's own edits below are store writes: the actors only ever hear the whole
# watchlist again (`WatchlistChanged`), so they have no message of their own.
@dataclass(frozen=True, slots=True)
class AddWallet:
    address: str
    label: str | None
    kind: Literal["add_wallet"] = "add_wallet"


@dataclass(frozen=True, slots=True)
class SetWalletStatus:
    address: str
    status: Literal["active", "paused"]
    kind: Literal["set_wallet_status"] = "set_wallet_status"


@dataclass(frozen=True, slots=True)
class RemoveWallet:
    address: str
    kind: Literal["remove_wallet"] = "remove_wallet"


Command = Union[AddWallet, SetWalletStatus, RemoveWallet, m.WalletSettingsChanged, m.ClosePosition, m.ClosePartial,
                m.SetStop, m.BreakerReset, m.TradingModeChanged]


class Backend(Protocol):
    settings: Any  # the bot's settings (pydantic, secrets as SecretStr): shown, masked, on the Config page

    def query(self, fn: Callable[[asyncpg.Connection], Awaitable[T]]) -> Awaitable[T]:
        """Run a read on the store's connection pool; awaitable from the panel's loop without blocking it."""
        ...

    def command(self, cmd: Command) -> Awaitable[str]:
        """Carry out an operator command; returns a short confirmation, raises a PanelError."""
        ...

    def status(self) -> Awaitable[dict[str, Any]]:
        """Component health: providers and their breakers, actor counts and restarts, breakers, mode."""
        ...

    def validate_rules(self, overrides: dict[str, Any]) -> dict[str, Any]:
        """Validate copy-rule overrides like the settings are; returns them normalised or raises CommandRefused."""
        ...

    def rule_fields(self) -> dict[str, Any]:
        """The copy rules a wallet can override: name -> default value (empty when not available yet)."""
        ...

    def trading_mode(self) -> str:
        """The global trading mode in force in the running bot: off, paper or live (no I/O: the header shows it)."""
        ...

    def caps_in_force(self) -> list[str]:
        """The caps and breakers every new entry must pass, one line each: what a mode switch's dialog states."""
        ...
