"""The panel's read models: plain coroutines over one asyncpg connection, run through `Backend.query`, one
module per page or read model:

    dashboard   open positions, PnL totals and per wallet, the equity curve, the newest signals
    detail      one position: its journal and price path
    positions   a position as shown: the projection valued at the latest mark, its exit levels
    signals     the signal log and a verdict's safety checks
    watchlist   the wallets with their rules and performance
    state       breakers, health, live alerts, the stored trading mode
    units       raw amounts to whole units, symbols, short addresses, timestamps

They read what the actors publish to the database (the `positions` and `fills` projections, the journal's
events, signals, wallets, prices, breakers) and never ask an actor nor replay its fold. Amounts are raw
integers in the database; these functions return whole units (SOL, USDC, tokens) as floats for display only.
"""

from ui.queries.dashboard import dashboard
from ui.queries.detail import position_detail
from ui.queries.signals import safety_checks, signals_page
from ui.queries.state import breakers, health, live_alerts, trading_mode
from ui.queries.watchlist import watchlist

__all__ = ["breakers", "dashboard", "health", "live_alerts", "position_detail", "safety_checks", "signals_page",
           "trading_mode", "watchlist"]
