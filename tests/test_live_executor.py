"""The live executor against the sandbox's LiteSVM chain: real signed swaps whose fills are the chain's balance
deltas, the verifier refusing the sandbox's malicious builds before anything is signed, and each execution fault
ending in its named outcome — without a retry storm."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Iterator

import pytest

from actors.ports import SwapError
from tests.livekit import Live, live, sol  # noqa: F401 - `live`: the module's sandbox fixture
from execution.live import deltas


@pytest.fixture(autouse=True)
def _clear_faults(live: Live) -> Iterator[None]:
    for f in live.sb.faults.by_service.values():
        f.clear()
    live.mode[0] = "live"
    yield
    for f in live.sb.faults.by_service.values():
        f.clear()


def plain(live: Live, quote: str = "SOL") -> str:
    """A token without hazards, quoted in `quote`."""
    return next(t.mint for t in live.sb.market.tokens.values() if t.quote == quote and not t.hazards.names())


def test_a_buy_and_its_sale_move_the_chain_and_the_fills_are_its_deltas(live: Live) -> None:
    mint = plain(live)
    sol0, tok0 = live.lamports(), live.tokens(mint)
    buy = live.swap("buy", mint, sol("0.1"))
    sol1, tok1 = live.lamports(), live.tokens(mint)
    assert (buy.side, buy.token_amount, buy.quote_amount) == ("buy", tok1 - tok0, sol0 - sol1)  # to the lamport
    assert buy.quote_amount > sol("0.1") and buy.fee_quote > 0 and buy.signature  # the input, fees, the new account's rent
    tx = live.runtime.submit(live.rpc.transaction, buy.signature).result(10)
    assert deltas(tx, str(live.owner), mint) == (sol1 - sol0, tok1 - tok0)
    sale = live.swap("sell", mint, buy.token_amount // 3)
    assert (sale.token_amount, sale.quote_amount) == (tok1 - live.tokens(mint), live.lamports() - sol1)
    assert sale.token_amount == buy.token_amount // 3 and sale.quote_amount > 0


def test_a_usdc_quoted_token_is_bought_with_sol_through_two_pools(live: Live) -> None:
    mint = plain(live, "USDC")
    swap = live.prepare("buy", mint, sol("0.05"))
    sol0, tok0 = live.lamports(), live.tokens(mint)
    fill = live.land("buy", mint, swap)
    assert "+" in fill.route  # two legs: SOL/USDC, then the token's pool
    assert (fill.token_amount, fill.quote_amount) == (live.tokens(mint) - tok0, sol0 - live.lamports())
    sale = live.swap("sell", mint, fill.token_amount)
    assert sale.token_amount == fill.token_amount and live.tokens(mint) == tok0


@pytest.mark.parametrize("build, reasons", [
    ("pay_stranger_sol", {"refused:stray_transfer"}),
    # it also makes us pay the stranger's new token account: whichever instruction is met first is named
    ("pay_stranger_token", {"refused:stray_transfer", "refused:ata_for_other"}),
    ("unknown_program", {"refused:unknown_program"}),
])
def test_a_malicious_build_is_refused_and_never_signed(live: Live, build: str, reasons: set[str]) -> None:
    mint = plain(live)
    live.sb.faults["jupiter"].malicious = build
    sends = live.sb.faults["rpc"].requests
    before = live.lamports()
    with pytest.raises(SwapError) as refused:
        live.prepare("sell" if build == "pay_stranger_token" else "buy", mint,
                     sol("0.02") if build != "pay_stranger_token" else _held(live, mint) // 2)
    assert refused.value.reason in reasons and not refused.value.retryable
    assert live.lamports() == before
    assert live.sb.faults["rpc"].requests - sends <= 4  # balance/holdings, lookups: never a send


def _held(live: Live, mint: str) -> int:
    held = live.tokens(mint)
    if held == 0:
        held = live.swap("buy", mint, sol("0.02")).token_amount
    return held


def test_slippage_at_execution_lands_failed_and_its_fee_is_the_cost(live: Live) -> None:
    mint = plain(live)
    swap = live.prepare("buy", mint, sol("0.05"))
    live.sb.faults["rpc"].slippage = True  # front-run when it lands
    before, tokens = live.lamports(), live.tokens(mint)
    with pytest.raises(SwapError) as failed:
        live.land("buy", mint, swap)
    e = failed.value
    assert e.retryable and e.cost is not None and e.cost.token_amount == 0
    assert e.cost.quote_amount == before - live.lamports() == e.cost.fee_quote > 0  # only the fee was charged
    assert live.tokens(mint) == tokens


def test_a_dropped_broadcast_lands_on_a_rebroadcast(live: Live) -> None:
    mint = plain(live)
    live.sb.faults["rpc"].drop_next = 2
    fill = live.swap("buy", mint, sol("0.02"))
    assert fill.token_amount > 0


def test_a_transaction_that_never_lands_expires_after_its_blockhash(live: Live) -> None:
    mint = plain(live)
    rpc = live.sb.faults["rpc"]
    rpc.drop_all = True
    swap = live.prepare("buy", mint, sol("0.02"))
    before, requests, t0 = live.lamports(), rpc.requests, time.monotonic()
    with pytest.raises(SwapError) as expired:
        live.land("buy", mint, swap)
    assert expired.value.reason == "expired" and expired.value.retryable
    assert live.lamports() == before
    # bounded: one status poll and one height per 50 ms round, one rebroadcast per 250 ms — no storm
    wall = time.monotonic() - t0
    assert rpc.requests - requests <= 3 * wall / 0.05 + 10


@pytest.mark.parametrize("simulate", [True, False])
def test_an_expired_blockhash_is_caught_by_our_simulation_or_at_the_first_send(live: Live, simulate: bool) -> None:
    mint = plain(live)
    live.sb.faults["jupiter"].blockhash_age_blocks = 200  # already past its 150 blocks
    cfg = live.executor.cfg
    live.executor.cfg = replace(cfg, simulate=simulate)
    before = live.lamports()
    try:
        with pytest.raises(SwapError) as expired:
            live.swap("buy", mint, sol("0.02"))
    finally:
        live.executor.cfg = cfg
    assert expired.value.reason == "expired" and expired.value.retryable
    assert "simulated" in expired.value.detail if simulate else "preflight" in expired.value.detail
    assert live.lamports() == before


def test_a_late_confirmation_is_waited_for(live: Live) -> None:
    mint = plain(live)
    live.sb.faults["rpc"].late_blocks = 40
    sol0 = live.lamports()
    fill = live.swap("buy", mint, sol("0.02"))
    assert fill.quote_amount == sol0 - live.lamports()


def test_rate_limited_sends_are_held_not_stormed(live: Live) -> None:
    mint = plain(live)
    rpc = live.sb.faults["rpc"]
    rpc.rate_limited_methods = {"sendTransaction"}
    rpc.retry_after_s = 1
    swap = live.prepare("buy", mint, sol("0.02"))
    land = live.executor.land(1, "buy", mint, swap, fresh=True)
    time.sleep(1.5)
    rpc.rate_limited_methods = set()
    assert land.result(60).token_amount > 0


def test_not_enough_sol_is_refused_before_anything_is_sent(live: Live) -> None:
    mint = plain(live)
    with pytest.raises(SwapError) as short:
        live.prepare("buy", mint, live.lamports())
    assert short.value.reason == "insufficient_sol" and not short.value.retryable


def test_the_kill_switch_stops_a_buy_not_yet_sent(live: Live) -> None:
    mint = plain(live)
    swap = live.prepare("buy", mint, sol("0.02"))
    live.mode[0] = "off"
    before = live.lamports()
    with pytest.raises(SwapError) as off:
        live.land("buy", mint, swap, fresh=True)
    assert off.value.reason == "mode:off" and live.lamports() == before
    with pytest.raises(SwapError):
        live.prepare("buy", mint, sol("0.02"))
    assert live.runtime.submit(live.rpc.signature_statuses, [swap.signature]).result(10) == [None]


def test_a_sale_is_capped_at_what_the_chain_holds_and_nothing_held_is_refused(live: Live) -> None:
    mint = plain(live)
    held = _held(live, mint)
    swap = live.prepare("sell", mint, held * 10)
    assert swap.amount == held
    live.land("sell", mint, swap)
    with pytest.raises(SwapError) as none:
        live.prepare("sell", mint, 1)
    assert none.value.reason == "nothing_held"


def test_a_restart_reconciles_a_landed_transaction_without_sending_it_again(live: Live) -> None:
    mint = plain(live)
    swap = live.prepare("buy", mint, sol("0.02"))
    fill = live.land("buy", mint, swap)
    again = live.land("buy", mint, swap, fresh=False)  # what a restart does with a journaled signature
    assert again.signature == fill.signature and again.token_amount == fill.token_amount
