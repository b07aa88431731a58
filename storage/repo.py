"""Every repository's queries in one namespace, for callers that use several (`from storage import repo`):
plain coroutines taking a connection, run through `Store.run`/`Store.call`, and the NOTIFY channels."""

from storage.market import save_prices, save_safety
from storage.modes import TRADING_MODE_CHANNEL, set_trading_mode, trading_mode
from storage.observations import health, list_ignored, list_signals, pending_deliveries, record_observation
from storage.positions import append_events, journal, list_positions, open_positions, position_outcome
from storage.risk import BREAKERS_CHANNEL, list_breakers, record_breakers, reset_breaker, risk_snapshot
from storage.store import Store, connect_pool, init_connection
from storage.wallets import (
    WALLET_SETTINGS_CHANNEL,
    WATCHLIST_CHANNEL,
    active_wallets,
    add_wallet,
    list_wallets,
    remove_wallet,
    set_wallet_settings,
    set_wallet_status,
    wallet_books,
    wallet_open_positions,
    wallet_settings,
    wallet_stats,
)

__all__ = [
    "BREAKERS_CHANNEL", "TRADING_MODE_CHANNEL", "WALLET_SETTINGS_CHANNEL", "WATCHLIST_CHANNEL", "Store", "active_wallets",
    "add_wallet", "append_events", "connect_pool", "health", "init_connection", "journal", "list_breakers", "list_ignored",
    "list_positions", "list_signals", "list_wallets", "open_positions", "pending_deliveries", "position_outcome",
    "record_breakers", "record_observation", "remove_wallet", "reset_breaker", "risk_snapshot", "save_prices",
    "save_safety", "set_trading_mode", "set_wallet_settings", "set_wallet_status", "trading_mode", "wallet_books",
    "wallet_open_positions", "wallet_settings", "wallet_stats",
]
