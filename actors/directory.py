"""The directory: where each child of the root can be reached, and the price fan-out that reads it.

Every actor gets the one `Directory` at spawn time (`Ports.directory`) and tells its peers through it — a wallet
its reservation to ("risk", "global"), a leader's sale to ("position", id); a position its close to its wallet
and the risk actor — so a message goes straight to its addressee's mailbox, never through the root's. The root
alone writes it, as it supervises: `hold` while a child (re)starts (messages for it wait, in order), `bind` when
it runs (what waited is told first, atomically), `drop` when it stops for good. A child that died before the
root heard of it is held for its successor, as the root would have held it: nothing addressed to a restarting
child is lost. Edges (the panel, the CLI, tests) read it with `lookup`, a read-only view: no ask to the root.

`PriceFeed` is the price monitor's side: one `PriceTicks` fans out, in the monitor's own thread, to every open
position of each token as one run-queue entry per token group (`Runtime.tell_all`), never a message per position
through a mailbox in between. The root keeps the index of open positions per token (`track_mint`).
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

import pykka
import structlog

from actors.messages import PositionClosed, PriceTick, PriceTicks, SolPrice

log = structlog.get_logger("supervisor")

ChildId = tuple[str, str]
RISK: ChildId = ("risk", "global")


class Directory:
    def __init__(self) -> None:
        self.lock = threading.RLock()  # the root's compound updates and every sender's tell, atomically
        self._refs: dict[ChildId, pykka.ActorRef] = {}
        self._held: dict[ChildId, list[Any]] = {}
        self.escalated: set[ChildId] = set()  # given up on: a message for one is dropped without a warning each
        self._by_mint: dict[str, frozenset[int]] = {}  # open positions per token, for price ticks
        self._ticked: dict[str, float] = {}  # token -> wall time of its last price tick
        # the watchlist, written by the edge (before the root hears of it: deliveries after a change are held for
        # the wallets it adds) and by the root (adoption)
        self.everyone: frozenset[str] = frozenset()  # every watched wallet
        self.watched: frozenset[str] = frozenset()  # those whose actors this root runs: deliveries go to them
        self.in_scope: Callable[[str], bool] = lambda wallet: True  # a cluster node runs only its partitions' wallets
        self.version = 0  # bumped by every `watch`
        self.trading_mode: str | None = None  # the global mode: told to running wallets, given to those that start

    # -- read-only, for everyone ----------------------------------------------------------------------------
    def lookup(self, child: ChildId) -> pykka.ActorRef | None:
        """The running child's ref, or None (not running: starting, restarting, stopped, unknown)."""
        return self._refs.get(tuple(child))  # type: ignore[arg-type]

    def running(self) -> list[ChildId]:
        return list(self._refs)

    def waiting(self, child: ChildId) -> bool:
        """Messages for `child` are held until it runs."""
        return child in self._held

    def open_mints(self) -> frozenset[str]:
        return frozenset(self._by_mint)

    def positions_of(self, mint: str) -> frozenset[int]:
        return self._by_mint.get(mint, frozenset())

    def ticked(self, mint: str) -> float | None:
        return self._ticked.get(mint)

    # -- telling a child --------------------------------------------------------------------------------------
    def tell(self, child: ChildId, message: Any) -> bool:
        """To the running child, or held for it while it (re)starts. False: no such child (logged once per message)."""
        with self.lock:
            ref = self._refs.get(child)
            if ref is not None:
                try:
                    ref.tell(message)
                    return True
                except pykka.ActorDeadError:  # it failed; its ChildFailed is on the way: hold this for its successor
                    del self._refs[child]
                    self._held.setdefault(child, [])
            held = self._held.get(child)
            if held is not None:
                if isinstance(message, PriceTick):  # only the newest price matters
                    held[:] = [m for m in held if not isinstance(m, PriceTick)]
                held.append(message)
                return True
            escalated = child in self.escalated
        if not escalated:
            log.warning("undeliverable", child=f"{child[0]}:{child[1]}", message=type(message).__name__)
        return False

    def watch(self, everyone: frozenset[str]) -> None:
        """The watchlist is `everyone`: deliveries to a wallet it adds are held until the root has started its actor."""
        with self.lock:
            self.everyone = frozenset(everyone)
            watched = frozenset(w for w in self.everyone if self.in_scope(w))
            for wallet in watched - self.watched:
                if ("wallet", wallet) not in self._refs:
                    self._held.setdefault(("wallet", wallet), [])
            self.watched = watched
            self.version += 1

    # -- the root's writes ------------------------------------------------------------------------------------
    def hold(self, child: ChildId, first: tuple[Any, ...] | list[Any] = ()) -> None:
        """Hold `child`'s messages until it runs; `first` (a failed child's unhandled messages) before the others."""
        with self.lock:
            self._refs.pop(child, None)
            self._held[child] = [*first, *self._held.get(child, [])]

    def held(self, child: ChildId) -> list[Any]:
        with self.lock:
            return list(self._held.get(child, []))

    def replace_held(self, child: ChildId, messages: list[Any]) -> None:
        with self.lock:
            self._held[child] = list(messages)

    def bind(self, child: ChildId, ref: pykka.ActorRef) -> None:
        """`child` runs as `ref`: what was held for it is told first, in order, then it is reachable."""
        with self.lock:
            for message in self._held.pop(child, []):
                ref.tell(message)
            self._refs[child] = ref

    def drop(self, child: ChildId) -> pykka.ActorRef | None:
        """`child` stops for good: forget it and what was held for it; returns its ref (to stop it)."""
        with self.lock:
            self._held.pop(child, None)
            return self._refs.pop(child, None)

    def unbind(self, child: ChildId) -> pykka.ActorRef | None:
        """`child` died (its successor will come): unreachable, what is held for it stays."""
        with self.lock:
            return self._refs.pop(child, None)

    def track_mint(self, mint: str, position_id: int, open_: bool) -> None:
        with self.lock:
            ids = self._by_mint.get(mint, frozenset())
            ids = ids | {position_id} if open_ else ids - {position_id}
            if ids:
                self._by_mint[mint] = ids
            else:
                self._by_mint.pop(mint, None)


def announce_close(directory: Directory, root: pykka.ActorRef, notice: PositionClosed, risk: bool) -> None:
    """A position closed: its wallet frees its books, the risk actor its exposure, the root stops the actor."""
    directory.tell(("wallet", notice.wallet), notice)
    if risk:
        directory.tell(RISK, notice)
    try:
        root.tell(notice)
    except pykka.ActorDeadError:
        pass


class PriceFeed:
    """The price monitor's address for `PriceTicks` (it calls `tell`, as it would on an actor ref): SOL's price to
    `published` and the risk actor, each token's tick to its open positions — one run-queue entry per token group."""

    def __init__(self, directory: Directory, published: Any, clock: Callable[[], float], risk: bool) -> None:
        self._dir, self._published, self._clock, self._risk = directory, published, clock, risk

    def tell(self, m: PriceTicks) -> None:
        sol = m.sol_usd if m.sol_usd is not None else next((t.sol_usd for t in m.ticks if t.sol_usd is not None), None)
        if sol is not None:
            if self._published is not None:
                self._published.sol_usd = (sol, self._clock())
            if self._risk:
                self._dir.tell(RISK, SolPrice(sol))
        now = time.time()
        for tick in m.ticks:
            refs = []
            for pid in self._dir.positions_of(tick.mint):
                child = ("position", str(pid))
                if (ref := self._dir.lookup(child)) is not None:
                    refs.append(ref)
                else:
                    self._dir.tell(child, tick)  # (re)starting: held until it runs
            self._dir._ticked[tick.mint] = now
            if refs:
                _runtime_of(refs[0]).tell_all(refs, tick)


def _runtime_of(ref: pykka.ActorRef) -> Any:
    from actors.runtime import Runtime

    runtime = getattr(ref.actor_inbox, "runtime", None)
    return runtime if isinstance(runtime, Runtime) else Runtime.here()
