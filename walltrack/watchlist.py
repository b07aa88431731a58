"""The watchlist listener: what the CLI and the panel change in the database reaches the running actors.

LISTEN/NOTIFY on the watchlist, each wallet's copy-rule overrides, operator breaker resets and the global
trading mode; behind it a slow poll (`RECONCILE_S`) that listens again after an outage, reloads what a lost
NOTIFY would have said and runs the inbox sweep. `recovered` is the database supervisor's hook: the same at
once when the database answers again, and the backlog the outage left handed out. Runs on the store's loop.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable

import asyncpg
import structlog

from actors.messages import BreakerReset, TradingModeChanged, WalletSettingsChanged, WatchlistChanged
from storage import repo
from walltrack.deliveries import Deliveries

log = structlog.get_logger("walltrack")

RECONCILE_S = 15.0  # the slow poll behind LISTEN/NOTIFY: watchlist, trading mode, the inbox sweep


class Watchlist:
    def __init__(self, store: repo.Store, actors: Any, default_mode: str, deliveries: Deliveries,
                 clock: Callable[[], float], on_change: Callable[[], None]) -> None:
        self._store, self._actors, self._default_mode = store, actors, default_mode
        self._deliveries, self._clock, self._on_change = deliveries, clock, on_change
        self.watched: frozenset[str] = frozenset()
        self.watched_at: dict[str, float] = {}  # a wallet added while running -> when (the bot's clock) it was watched
        self.trading_mode: str | None = None  # the global mode told to the root (runtime_settings, else TRADING_MODE)
        self._url = ""
        self._listener: asyncpg.Connection | None = None
        self._poll: asyncio.Task | None = None
        self._listening = asyncio.Lock()

    def load(self) -> list[str]:
        """At start, before any wallet starts: the trading mode in force, and the active wallets (oldest first)."""
        self.apply_trading_mode(self._store.run(repo.trading_mode))
        wallets = self._store.run(repo.active_wallets)
        self.watched = frozenset(wallets)
        return wallets

    async def start(self, url: str) -> None:
        self._url = url
        await self._listen()
        self._poll = asyncio.ensure_future(self._reconcile_loop())

    async def stop(self) -> None:
        if self._poll is not None:
            self._poll.cancel()
        if self._listener is not None:
            self._listener.terminate()  # nothing to flush on a LISTEN connection, and the server may be gone

    async def _listen(self) -> None:
        async with self._listening:  # the reconcile loop and a database recovery may both find it closed
            if self._listener is None or self._listener.is_closed():
                await self._connect_listener()

    async def _connect_listener(self) -> None:
        self._listener = conn = await asyncpg.connect(self._url)
        await conn.add_listener(repo.WATCHLIST_CHANNEL, lambda *_: asyncio.ensure_future(self.reload()))
        # copy-rule overrides and operator breaker resets reach the running actors the same way
        await conn.add_listener(repo.WALLET_SETTINGS_CHANNEL,
                                lambda _c, _p, _ch, address: asyncio.ensure_future(self._reload_wallet_settings(address)))
        await conn.add_listener(repo.BREAKERS_CHANNEL, lambda _c, _p, _ch, name: self._actors.tell(BreakerReset(name)))
        await conn.add_listener(  # the global trading mode (panel, `walltrack mode set`)
            repo.TRADING_MODE_CHANNEL, lambda *_: asyncio.ensure_future(self._reload_trading_mode()))

    async def _reconcile_loop(self) -> None:
        while True:
            await asyncio.sleep(min(RECONCILE_S, self._deliveries.sweep_after_s))
            try:
                await self._catch_up()
                await self._deliveries.sweep()
            except Exception as exc:  # noqa: BLE001 - the next round retries
                log.warning("watchlist_reload_failed", error=repr(exc))

    async def recovered(self, down_s: float) -> None:
        """The database answers again: listen again, hear what a lost NOTIFY would have said, and hand out at once
        what the outage left in the inbox (received before it began and still unprocessed)."""
        await self._catch_up()
        stuck = await self._deliveries.hand_out_older_than(down_s)
        log.info("database_resumed", down_s=round(down_s, 2), inbox_handed_out=len(stuck))

    async def _catch_up(self) -> None:
        """Listen again if the connection was lost (a database outage), and read what a lost NOTIFY would have said."""
        await self._listen()
        await self.reload()
        await self._reload_trading_mode()

    async def reload(self) -> None:
        async with self._store.pool.acquire() as conn:
            wallets = frozenset(await repo.active_wallets(conn))
        if wallets != self.watched:
            now = self._clock()
            self.watched_at.update({w: now for w in wallets - self.watched})  # deliveries for it are kept from now on
            self.watched = wallets
            self._actors.tell(WatchlistChanged(wallets))
            self._on_change()

    async def _reload_trading_mode(self) -> None:
        async with self._store.pool.acquire() as conn:
            self.apply_trading_mode(await repo.trading_mode(conn))

    def apply_trading_mode(self, stored: dict[str, Any] | None) -> None:
        """The operator's stored mode, else TRADING_MODE: told to the root (and so to every wallet) when it changes."""
        mode = stored["mode"] if stored else self._default_mode
        if mode != self.trading_mode:
            self.trading_mode = mode
            self._actors.tell(TradingModeChanged(mode))
            log.info("trading_mode_in_force", mode=mode, source="operator" if stored else "TRADING_MODE",
                     by=stored["updated_by"] if stored else None)

    async def _reload_wallet_settings(self, address: str) -> None:
        async with self._store.pool.acquire() as conn:
            settings = await repo.wallet_settings(conn, address)
        if settings is not None:
            self._actors.tell(WalletSettingsChanged(address, settings))
