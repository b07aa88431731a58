"""The edge: how the world outside the actors (the gateway's hand-out, the watchlist listener, the panel, the CLI,
the price monitor) talks to them. It has `tell`, as an actor ref has, and sends each message straight to the
actors it concerns through the directory (actors/directory.py), not through the root's mailbox:

| message               | goes to                                                                      |
|-----------------------|------------------------------------------------------------------------------|
| Deliver               | a `SwapObserved` to each watched wallet it names (held while one starts);    |
|                       | a wallet no longer watched: its observation is recorded "unwatched"          |
| WatchlistChanged      | the directory's watchlist first (deliveries to a wallet it adds are held),   |
|                       | then the root, which starts and stops wallet actors                          |
| PriceTicks            | `PriceFeed`: each token's tick to its open positions, SOL's to the risk actor |
| TradingModeChanged    | every running wallet (one starting gets it from the directory)               |
| WalletSettingsChanged | the wallet                                                                   |
| BreakerReset          | the risk actor, and the root (an escalation reset restarts children)         |
| PositionClosed        | the wallet, the risk actor and the root, as a position announces its close   |
| anything else         | the root (supervision: adoption, statistics)                                 |

`lookup` is the read-only view of the running actors for the edges that ask one itself (the panel's operator
commands, the CLI): no ask to the root.
"""

from __future__ import annotations

from typing import Any, Callable

import pykka
import structlog

from actors.directory import RISK, ChildId, PriceFeed, announce_close
from actors.messages import (
    BreakerReset,
    Deliver,
    Observation,
    PositionClosed,
    PriceTicks,
    SwapObserved,
    TradingModeChanged,
    WalletSettingsChanged,
    WatchlistChanged,
)
from actors.ports import Ports

log = structlog.get_logger("supervisor")


class Edge:
    def __init__(self, root: pykka.ActorRef, ports: Ports, published: Any) -> None:
        self.root = root
        self._dir = ports.directory
        self._store = ports.store
        self._risk = ports.risk is not None
        self.prices = PriceFeed(self._dir, published, ports.clock, self._risk)
        self._routes: dict[type, Callable[[Any], None]] = {
            Deliver: self._deliver,
            WatchlistChanged: self._watch,
            PriceTicks: self.prices.tell,
            TradingModeChanged: self._trading_mode,
            WalletSettingsChanged: self._settings,
            BreakerReset: self._breaker_reset,
            PositionClosed: lambda m: announce_close(self._dir, self.root, m, self._risk),
        }

    def tell(self, message: Any) -> None:
        self._routes.get(type(message), self.root.tell)(message)

    def lookup(self, child: ChildId) -> pykka.ActorRef | None:
        """The running actor `child` (("position", "<id>"), ("wallet", address), ("risk", "global")), or None."""
        return self._dir.lookup(child)

    def ticked(self, mint: str) -> float | None:
        """When `mint`'s last price tick fanned out to its open positions (wall time), or None."""
        return self._dir.ticked(mint)

    def _deliver(self, m: Deliver) -> None:
        trades = dict(m.trades) if m.trades is not None else None
        d = self._dir
        with d.lock:  # against a watchlist change in between: a wallet is either told or recorded unwatched
            for wallet in m.wallets:
                if wallet in d.watched:
                    known = trades is not None and wallet in trades
                    d.tell(("wallet", wallet), SwapObserved(m.signature, wallet, m.payload, classified=known,
                                                            trade=trades.get(wallet) if known else None,
                                                            received_at=m.received_at))
                elif d.in_scope(wallet) and wallet not in d.everyone:  # removed since it was stored: close its books
                    self._store.record_observation(Observation(m.signature, wallet, "unwatched", reason="unwatched"))

    def _watch(self, m: WatchlistChanged) -> None:
        self._dir.watch(m.wallets)
        self.root.tell(m)

    def _trading_mode(self, m: TradingModeChanged) -> None:
        """To every running wallet; a wallet (re)started later gets the mode in its initial state."""
        with self._dir.lock:
            self._dir.trading_mode = m.mode
            wallets = [child for child in self._dir.running() if child[0] == "wallet"]
            for child in wallets:
                self._dir.tell(child, m)
        log.info("trading_mode_applied", mode=m.mode, wallets=len(wallets))

    def _settings(self, m: WalletSettingsChanged) -> None:
        if m.wallet in self._dir.watched:
            self._dir.tell(("wallet", m.wallet), m)

    def _breaker_reset(self, m: BreakerReset) -> None:
        if self._risk:
            self._dir.tell(RISK, m)
        self.root.tell(m)
