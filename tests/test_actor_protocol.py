"""The actor protocol: requests are tells carrying `reply_to`, no message holds a callable or a future, a slow risk
actor stalls no other wallet (the waiting wallet keeps its own deliveries in its state, in order), and the root's
mailbox carries supervision only — on a real run: the App on the sandbox, webhook deliveries, price ticks, a
position opening and closing."""

from __future__ import annotations

import collections.abc
import concurrent.futures
import dataclasses
import inspect
import json
import random
import threading
import typing
from decimal import Decimal
from typing import Any, Iterator

import httpx
import pykka
import pytest

import actors.messages
import walltrack.cluster.root
from actors.directory import RISK
from actors.edge import Edge
from actors.messages import Deliver, ReserveEntry
from actors.ports import Ports
from actors.risk import RiskActor, RiskConfig
from actors.rules import CopyRules
from actors.shell import STATE_QUERY
from actors.supervisor import RootSupervisor
from sandbox.helius import choose_shape, enhanced_tx
from tests.conftest import SECRET, wait_until
from tests.copykit import pubkey, sig, swap_payload
from storage import repo
from walltrack.app import App
from walltrack.bridge import AsyncioThread
from storage.db import migrate
from walltrack.demo import Sandbox

SOL = 10**9
NOON = 1_767_268_800.0  # 2026-01-01 12:00 UTC

# What may reach the root: which children run, their starts, exits, failures and restarts, adoption, statistics.
SUPERVISION = {"WatchlistChanged", "StartPosition", "PositionClosed", "ChildFailed", "ChildRecovered", "_Restart",
               "BreakerReset", "GetStats", "ProxyCall", "ProxyGetAttr", "_ActorStop",
               "AdoptPartition", "ReleasePartition", "EnsurePositions", "RiskOwner", "NodeStatus"}
ROUTED = {"Deliver", "PriceTicks", "PriceTick", "ReserveEntry", "ReservationBound", "ReservationReleased", "ToPosition",
          "SwapObserved", "LeaderSold", "TradingModeChanged", "WalletSettingsChanged", "SolPrice", "EntryDecision"}


# -- no callable, no future in any message ----------------------------------------------------------------------
def _messages() -> list[type]:
    found = []
    for module in (actors.messages, walltrack.cluster.root):
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ == module.__name__ and dataclasses.is_dataclass(cls):
                found.append(cls)
    return found


def _forbidden(tp: Any) -> bool:
    """A type that is, or contains, a callable or a future."""
    origin = typing.get_origin(tp)
    if origin is not None:
        return origin is collections.abc.Callable or any(_forbidden(a) for a in typing.get_args(tp))
    if tp is collections.abc.Callable or tp is typing.Callable:
        return True
    return isinstance(tp, type) and issubclass(tp, (concurrent.futures.Future, pykka.Future, threading.Event))


def test_the_walk_finds_the_messages() -> None:
    names = {cls.__name__ for cls in _messages()}
    assert {"ReserveEntry", "EntryDecision", "Deliver", "PriceTicks", "AdoptPartition", "ReleasePartition"} <= names


@pytest.mark.parametrize("cls", _messages(), ids=lambda c: c.__name__)
def test_no_message_field_is_typed_as_a_callable_or_a_future(cls: type) -> None:
    hints = typing.get_type_hints(cls, vars(actors.messages) | {"ActorRef": pykka.ActorRef})
    for f in dataclasses.fields(cls):
        assert not _forbidden(hints[f.name]), f"{cls.__name__}.{f.name}: {hints[f.name]}"
        assert f.name not in ("reply", "then", "done", "callback"), f"{cls.__name__}.{f.name}: a reply is `reply_to`"
        default = f.default if f.default is not dataclasses.MISSING else None
        assert not callable(default) and f.default_factory in (dataclasses.MISSING, dict, list, tuple, frozenset), \
            f"{cls.__name__}.{f.name} defaults to a callable or a future"


def test_a_reservation_names_who_to_answer_and_holds_nothing_callable() -> None:
    hints = typing.get_type_hints(ReserveEntry, vars(actors.messages) | {"ActorRef": pykka.ActorRef})
    assert hints["reply_to"] == pykka.ActorRef | None


def _holds_callable(message: Any) -> bool:
    if not dataclasses.is_dataclass(message):
        return False
    for f in dataclasses.fields(message):
        value = getattr(message, f.name)
        if isinstance(value, (concurrent.futures.Future, pykka.Future)) or (
                callable(value) and not isinstance(value, (type, pykka.ActorRef))):
            return True
    return False


# -- a slow risk actor stalls no other wallet ----------------------------------------------------------------------
class GatedRisk(RiskActor):
    """The real risk actor, except that it sits on the reservations of one wallet (`late`) until the test opens the
    gate: an actor that answers late, never one that blocks a worker."""

    late: str = ""
    held: list[Any] = []
    seen: list[ReserveEntry] = []

    def handle(self, message: Any) -> Any:
        if isinstance(message, ReserveEntry):
            GatedRisk.seen.append(message)
            if message.wallet == GatedRisk.late:
                GatedRisk.held.append(message)
                return None
        if message == "open the gate":  # answer what was held, and from now on at once
            held, GatedRisk.held[:], GatedRisk.late = list(GatedRisk.held), [], ""
            for m in held:
                super().handle(m)
            return None
        return super().handle(message)


class GatedRoot(RootSupervisor):
    risk_actor = GatedRisk


@pytest.fixture
def store(db_url: str) -> Iterator[tuple[repo.Store, AsyncioThread]]:
    loop = AsyncioThread(name="protocol-db")
    s = repo.Store.open(loop, db_url)
    s.run(migrate)
    try:
        yield s, loop
    finally:
        pykka.ActorRegistry.stop_all()
        s.close()
        loop.stop()


def _state(ports: Ports, wallet: str) -> Any:
    ref = wait_until(lambda: ports.directory.lookup(("wallet", wallet)))
    return ref.ask(STATE_QUERY, timeout=5)


def _signal(store: repo.Store, signature: str, wallet: str) -> Any:
    rows = store.run(lambda c: c.fetch("SELECT id, decision, reason FROM signals WHERE signature = $1 AND wallet = $2",
                                       signature, wallet))
    return rows[0] if rows else None


def test_a_slow_risk_actor_does_not_delay_another_wallets_signals(store: tuple[repo.Store, AsyncioThread]) -> None:
    s, loop = store
    slow, quick, mint = pubkey("protocol-slow"), pubkey("protocol-quick"), pubkey("protocol-mint")
    GatedRisk.late, GatedRisk.held[:], GatedRisk.seen[:] = slow, [], []
    for w in (slow, quick):
        s.run(lambda c, w=w: repo.add_wallet(c, w, w[:6]))
    cfg = RiskConfig(max_drawdown_pct=Decimal(0), daily_loss_sol=Decimal(0), loss_streak=0, stoploss_cooldown_s=0,
                     wallet_loss_streak=0)
    ports = Ports(s, loop, CopyRules(skip_add_ons=False, max_buys_per_token=10), clock=lambda: NOON, risk=cfg,
                  reservation_timeout_s=60.0)  # the caller sets how long a wallet waits; the gate decides here
    root = GatedRoot.start(ports)
    edge = Edge(root, ports, None)
    root.proxy().adopt({w: s.wallet_open_positions(w).result(10) for w in (slow, quick)}, []).get(timeout=10)

    def buy(wallet: str, n: int) -> Deliver:
        signature = sig(f"protocol-{wallet}-{n}")
        return Deliver(signature, swap_payload(signature, wallet, mint, "buy", SOL, 10**6 * n), (wallet,))

    first, second = buy(slow, 1), buy(slow, 2)
    edge.tell(first)
    wait_until(lambda: GatedRisk.held)  # the slow wallet asked, with its own ref to answer to
    asked = GatedRisk.held[0]
    assert asked.reply_to == ports.directory.lookup(("wallet", slow)) and not _holds_callable(asked)
    edge.tell(second)  # the same wallet's next delivery waits in its state, not in a hidden stash
    wait_until(lambda: len(_state(ports, slow).queued) == 1)
    assert _state(ports, slow).status == "awaiting_reservation" and _state(ports, slow).queued[0].signature == second.signature

    other = buy(quick, 1)
    edge.tell(other)  # another wallet: asked and answered while the slow one still waits
    row = wait_until(lambda: _signal(s, other.signature, quick))
    assert (row["decision"], row["reason"]) == ("taken", "copy_buy")
    assert _signal(s, first.signature, slow) is None and _state(ports, slow).status == "awaiting_reservation"

    ports.directory.tell(RISK, "open the gate")
    a = wait_until(lambda: _signal(s, first.signature, slow))
    b = wait_until(lambda: _signal(s, second.signature, slow))
    assert (a["decision"], b["decision"]) == ("taken", "taken") and a["id"] < b["id"]  # decided in order, none lost
    assert _state(ports, slow).status == "watching" and _state(ports, slow).queued == ()


def test_a_reservation_nobody_answers_is_refused_by_the_wallets_own_timer(store: tuple[repo.Store, AsyncioThread]) -> None:
    s, loop = store
    slow, mint = pubkey("protocol-never"), pubkey("protocol-mint-2")
    GatedRisk.late, GatedRisk.held[:], GatedRisk.seen[:] = slow, [], []
    s.run(lambda c: repo.add_wallet(c, slow, "never"))
    ports = Ports(s, loop, CopyRules(), clock=lambda: NOON, risk=RiskConfig(), reservation_timeout_s=0.3)
    root = GatedRoot.start(ports)
    edge = Edge(root, ports, None)
    root.proxy().adopt({slow: s.wallet_open_positions(slow).result(10)}, []).get(timeout=10)
    signature = sig("protocol-never-1")
    edge.tell(Deliver(signature, swap_payload(signature, slow, mint, "buy", SOL, 10**6), (slow,)))
    row = wait_until(lambda: _signal(s, signature, slow))
    assert (row["decision"], row["reason"]) == ("skipped", "risk:unavailable")  # fail closed, after the caller's 0.3 s
    assert _state(ports, slow).status == "watching"


# -- the root's mailbox: supervision only ---------------------------------------------------------------------------
@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    sb = Sandbox(seed=11, speed=60)
    yield sb
    sb.stop()


def _leader_trade(sb: Sandbox, symbol: str, side: str) -> dict:
    leader = sb.market.leaders[0]
    mint = sb.market.by_symbol[symbol].mint
    with sb.market.lock:
        amount = 500_000_000 if side == "buy" else leader.holdings[mint]
        trade = sb.market._trade(leader, mint, side, amount)  # type: ignore[arg-type]
    sb.chain.apply_trade(trade)
    return enhanced_tx(trade, choose_shape(random.Random(trade.signature), trade))


def test_the_roots_mailbox_carries_supervision_only(make_settings: Any, sandbox: Sandbox) -> None:
    settings = make_settings(safety_enabled=False, jupiter_base_url=sandbox.url("jupiter"), jupiter_tier="pro",
                             dexscreener_base_url=sandbox.url("dexscreener"), solana_rpc_url=sandbox.url("rpc"),
                             price_poll_s=0.2, http_timeout_s=2.0)
    app = App(settings, clock=lambda: sandbox.market.now).start()
    try:
        assert app.store is not None and app.published is not None
        leader = sandbox.market.leaders[0].address
        app.store.run(lambda c: repo.add_wallet(c, leader, "leader-0"))
        wait_until(lambda: leader in app.watched and app.actors.lookup(("wallet", leader)) is not None)

        def post(tx: dict) -> None:
            r = httpx.post(f"http://127.0.0.1:{app.gateway_port}/webhooks/helius", content=json.dumps([tx]),
                           headers={"Authorization": SECRET}, timeout=10)
            assert r.status_code == 200, r.text

        post(_leader_trade(sandbox, "MOON", "buy"))
        pid = wait_until(lambda: app.store.run(lambda c: c.fetchval(
            "SELECT id FROM positions WHERE mode = 'paper' AND status = 'open'")), timeout=20)
        mint = sandbox.market.by_symbol["MOON"].mint
        wait_until(lambda: app.actors.ticked(mint) is not None, timeout=20)  # its token's ticks fanned out to it
        post(_leader_trade(sandbox, "MOON", "sell"))  # the leader sells out: the mirror sell closes it
        wait_until(lambda: app.store.run(lambda c: c.fetchval(
            "SELECT closed_at IS NOT NULL FROM positions WHERE id = $1", pid)), timeout=20)
        wait_until(lambda: app.actors.lookup(("position", str(pid))) is None)
        mail = dict(app.published.root_mail)
    finally:
        app.stop()
        pykka.ActorRegistry.stop_all()
    assert set(mail) <= SUPERVISION, f"routed through the root: {set(mail) - SUPERVISION}"
    assert not set(mail) & ROUTED
    assert mail.get("StartPosition", 0) >= 1 and mail.get("PositionClosed", 0) >= 1 and mail.get("WatchlistChanged", 0) >= 1
