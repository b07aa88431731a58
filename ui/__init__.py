"""The operator panel (NiceGUI). It reads projections from PostgreSQL and sends the actors' own command
messages (`actors.messages`) through the backend.

The composition root hands it a `Backend` (queries, commands, status, settings) and calls `serve`, in the
main thread; `check_binding` refuses a non-loopback address without a password.
"""

from ui.access import AccessRefused, check_binding, is_loopback
from ui.backend import (
    AddWallet,
    Backend,
    Command,
    CommandRefused,
    CommandTimeout,
    NotAvailable,
    PanelError,
    RemoveWallet,
    SetWalletStatus,
)

__all__ = [
    "AccessRefused", "AddWallet", "Backend", "Command", "CommandRefused", "CommandTimeout", "NotAvailable",
    "PanelError", "RemoveWallet", "SetWalletStatus", "check_binding", "is_loopback", "serve",
]


def serve(*args, **kwargs):  # noqa: ANN002, ANN003, ANN201 - imported lazily: NiceGUI is heavy to import
    from ui.server import serve as _serve

    return _serve(*args, **kwargs)
