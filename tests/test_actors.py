"""The actors' transition tables, the journal fold, and the shell's containment — driven directly."""

from __future__ import annotations

import concurrent.futures
from decimal import Decimal
from typing import Any

import pykka
import pytest

from actors.messages import JournalEvent, PositionClosed, RecordResult, SwapObserved
from actors.position import TABLE as POSITION_TABLE
from actors.position import Context, PositionState, apply, decide, fold
from actors.ports import CopyRules
from actors.shell import ActorCrash, Shell
from actors.trades import USDC_MINT, WSOL_MINT, Trade
from actors.wallet import TABLE as WALLET_TABLE
from actors.wallet import Recorded, WalletState, paper_entry, transition
from actors.wallet import decide as wallet_decide
from tests.conftest import wait_until

W = "9JGuVmjXTeMea6VY6fpsu8783YeJME8bewyy9qv9UBxh"
MINT = "GkCfs9n8jLvuviiToewryCFa2rHQGKQv9FdnhTUEJtCH"
OPENED = JournalEvent(1, "opened", {
    "wallet": W, "token_mint": MINT, "token_decimals": 6, "quote_mint": WSOL_MINT, "mode": "paper",
    "entry_quote_amount": "100000000", "entry_token_amount": "7000000"})


def opened() -> PositionState:
    return fold(7, (OPENED,))


# -- position: the engine's table is tested in test_position_table.py; here, journals from before it ----
def test_a_journal_from_before_the_engine_still_folds() -> None:
    s = opened()  # `opened` without "entry": "pending": open at the recorded (leader's price) entry
    assert (s.status, s.entry_token_amount, s.token_amount_open, s.opened_at) == ("open", 7_000_000, 7_000_000, None)
    unpriced = JournalEvent(2, "mirror_unpriced", {"signature": "s", "quote_mint": USDC_MINT})
    closed = JournalEvent(3, "closed", {"reason": "mirror_sell", "signature": "s", "exit_token_amount": "7000000",
                                        "exit_quote_amount": "210000000"})
    after = fold(7, (OPENED, unpriced, closed))
    assert (after.status, after.token_amount_open, after.realized_pnl_quote, after.seq) == ("closed", 0, 110_000_000, 3)
    assert apply(opened(), unpriced, 7).status == "open"


def test_position_table_has_no_transition_for_unknown_commands() -> None:
    with pytest.raises(LookupError):
        decide(opened(), "close please", Context(now=0.0))
    assert all(status in ("pending_entry", "buying", "open", "partially_closed", "selling", "exit_failed", "closed",
                          "entry_failed") for status, _ in POSITION_TABLE)


# -- wallet table ----------------------------------------------------------------------------------
def trade(side: str = "buy", quote_mint: str = WSOL_MINT, quote: int = 2_000_000_000, tokens: int = 4_000_000) -> Trade:
    return Trade("sig", W, side, MINT, tokens, 6, quote_mint, quote, "PUMP_AMM")  # type: ignore[arg-type]


@pytest.mark.parametrize("event", [SwapObserved, Recorded, PositionClosed])
def test_wallet_table_covers_every_event(event: type) -> None:
    assert ("watching", event) in WALLET_TABLE


def test_paper_entry_is_fixed_size_at_the_leaders_price() -> None:
    rules = CopyRules(fixed_sol=Decimal("0.5"), fixed_usd=Decimal("10"))
    e = paper_entry(trade(), rules)
    assert e is not None and (e.quote_amount, e.token_amount) == (500_000_000, 1_000_000)
    e = paper_entry(trade(quote_mint=USDC_MINT, quote=40_000_000), rules)
    assert e is not None and (e.quote_amount, e.token_amount) == (10_000_000, 1_000_000)
    assert paper_entry(trade(quote=0), rules) is None
    assert paper_entry(trade(tokens=1, quote=10**18), rules) is None  # rounds to zero tokens


def test_wallet_decisions() -> None:
    rules = CopyRules()
    empty = WalletState(W)
    assert wallet_decide(empty, "s", None, rules).outcome == "no_trade"
    buy = wallet_decide(empty, "s", trade(), rules)
    assert (buy.decision, buy.reason, buy.entry is not None) == ("taken", "copy_buy", True)
    sell = wallet_decide(empty, "s", trade("sell"), rules)
    assert (sell.decision, sell.reason) == ("skipped", "no_open_position")
    holding = WalletState(W, open_by_token={MINT: frozenset({3, 5})})
    sell = wallet_decide(holding, "s", trade("sell"), rules)
    assert (sell.decision, sell.reason, sell.mirror_to) == ("taken", "mirror_sell", (3, 5))


def test_wallet_tracks_positions_it_opened_and_closed() -> None:
    rules = CopyRules()
    obs = wallet_decide(WalletState(W), "s", trade(), rules)
    state, effects = transition(WalletState(W), Recorded(obs, RecordResult(False, 1, 9, (OPENED,))), rules)
    assert state.open_by_token == {MINT: frozenset({9})} and effects[0].position_id == 9
    state, _ = transition(state, PositionClosed(9, W, MINT), rules)
    assert state.open_by_token == {}
    dup, effects = transition(WalletState(W), Recorded(obs, RecordResult(True)), rules)
    assert effects == [] and dup.open_by_token == {}


# -- the shell: persist-then-act, stash, retry, containment ------------------------------------------
class Scheduler:
    def __init__(self) -> None:
        self.calls: list[float] = []

    def call_later(self, delay: float, fn: Any) -> None:
        self.calls.append(delay)
        fn()


class Recorder(Shell):
    """A minimal actor on the real shell: each number is persisted, then appended to `seen`."""

    def __init__(self, scheduler: Scheduler, failures: int = 0) -> None:
        super().__init__(scheduler, None)
        self.seen: list[int] = []
        self.failures = failures
        self.pending: list[concurrent.futures.Future] = []

    def handle(self, message: Any) -> Any:
        if message == "seen":
            return list(self.seen)
        if message == "panic":
            raise KeyboardInterrupt("a BaseException inside a handler")
        self.persist(lambda: self._write(message), lambda _: self.seen.append(message))

    def bypass_stash(self, message: Any) -> bool:
        return message == "seen"

    def _write(self, n: int) -> concurrent.futures.Future:
        f: concurrent.futures.Future = concurrent.futures.Future()
        if self.failures:
            self.failures -= 1
            f.set_exception(ConnectionError("db down"))
        else:
            f.set_result(n)
        return f


@pytest.fixture
def stop_actors():  # noqa: ANN201
    yield
    pykka.ActorRegistry.stop_all()


def test_shell_retries_failed_writes_in_order(stop_actors: None) -> None:
    sched = Scheduler()
    ref = Recorder.start(sched, failures=3)
    for n in range(5):
        ref.tell(n)
    assert wait_until(lambda: ref.ask("seen") == [0, 1, 2, 3, 4])
    assert sched.calls == [0.2, 0.4, 0.8]  # capped exponential backoff between retries


def test_a_base_exception_fails_one_actor_only(stop_actors: None) -> None:
    a, b = Recorder.start(Scheduler()), Recorder.start(Scheduler())
    a.tell("panic")
    wait_until(lambda: not a.is_alive())
    b.tell(1)
    assert wait_until(lambda: b.ask("seen") == [1])
    assert b.is_alive()


def test_contain_wraps_base_exceptions() -> None:
    from actors.shell import contain

    assert isinstance(contain(KeyboardInterrupt()), ActorCrash)
    err = ValueError("x")
    assert contain(err) is err


class Decoder(Shell):
    """An actor that decodes account keys with solders, as an RPC reader would."""

    def __init__(self) -> None:
        super().__init__(Scheduler(), None)
        self.keys: list[str] = []

    def handle(self, message: Any) -> Any:
        if message == "keys":
            return list(self.keys)
        from solders.pubkey import Pubkey

        self.keys.append(str(Pubkey.from_bytes(message)))  # panics (a BaseException) on a short slice


def test_a_solders_panic_fails_one_actor_only(stop_actors: None) -> None:
    from solders.pubkey import Pubkey

    with pytest.raises(BaseException) as real:  # the real thing, not a stand-in: solders panics here
        Pubkey.from_bytes(b"\x01\x02")
    assert type(real.value).__name__ == "PanicException" and not isinstance(real.value, Exception)

    victim, bystander, recorder = Decoder.start(), Decoder.start(), Recorder.start(Scheduler())
    victim.tell(b"\x01\x02")
    wait_until(lambda: not victim.is_alive())
    bystander.tell(bytes(32))
    recorder.tell(7)
    assert wait_until(lambda: bystander.ask("keys") == ["11111111111111111111111111111111"])
    assert wait_until(lambda: recorder.ask("seen") == [7])
