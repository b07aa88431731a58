"""What the panel needs from the running bot, as a Protocol: the composition root implements it
(`walltrack/panel.py`), the panel never imports `walltrack` (dependencies point walltrack → ui → actors).

Reads go to the database (`query`); every change is a command (`command`) that the backend turns into a
message to an actor or a watchlist write, answered within a timeout. Errors say what the operator sees:

    PanelError                 the command was not carried out; the message is shown as is
    ├── NotAvailable           the bot has no such command yet (never faked)
    ├── CommandTimeout         the actor did not answer in time (it may still act)
    └── CommandRefused         the actor or the validation said no, with the reason
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Awaitable, Callable, Literal, Protocol, TypeVar, Union

import asyncpg

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


@dataclass(frozen=True, slots=True)
class SetWalletRules:
    """Replace a wallet's copy-rule overrides (field -> value; validated by the backend like the settings)."""

    address: str
    overrides: dict[str, Any]
    kind: Literal["set_wallet_rules"] = "set_wallet_rules"


@dataclass(frozen=True, slots=True)
class ClosePosition:
    position_id: int
    kind: Literal["close_position"] = "close_position"


@dataclass(frozen=True, slots=True)
class ClosePartial:
    position_id: int
    fraction: Decimal
    kind: Literal["close_partial"] = "close_partial"


@dataclass(frozen=True, slots=True)
class MoveStop:
    position_id: int
    stop_price: Decimal  # whole quote units per whole token
    kind: Literal["move_stop"] = "move_stop"


@dataclass(frozen=True, slots=True)
class ResetBreaker:
    name: str
    kind: Literal["reset_breaker"] = "reset_breaker"


@dataclass(frozen=True, slots=True)
class SetTradingMode:
    """The global mode: off (no new entries for any wallet; exits go on), paper, or live (refused while live
    execution does not exist, with the reason)."""

    mode: Literal["off", "paper", "live"]
    kind: Literal["set_trading_mode"] = "set_trading_mode"


Command = Union[AddWallet, SetWalletStatus, RemoveWallet, SetWalletRules, ClosePosition, ClosePartial, MoveStop,
                ResetBreaker, SetTradingMode]


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
