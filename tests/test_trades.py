"""Trade classification over the real fixtures and the awkward shapes of API-FORMATS §1.6."""

from __future__ import annotations

import copy

import pytest

from actors.trades import USDC_MINT, WSOL_MINT, InvalidTransaction, accounts_touched, check_shape, classify
from sandbox.market import signature
from tests.conftest import PUMP_WALLET, fixture

W = "4Nd1mBQtrMJVYVfKf2PJy9NZUZdTAsp7D4xWLs4gDB4T"
MINT = "Dezx1wtfdLFSLFuFZ6PXeJnzV3tmgNgx1p5FmMpDpump"
ATA = "7xKXtg2CW87d97TXJSDpbD5jBkheTqA83TZRuJosgAsU"
WSOL_ATA = "HqYWbdUuRX7EZGSvSNPd1MdTCrwNgnWX9LAKbMVqiXzF"
POOL = "58oQChx4yWmvKdwLLZzBi4ChoCc2fqCUWBkwMihLYQo2"


def entry(account: str, native: int = 0, changes: list | None = None) -> dict:
    return {"account": account, "nativeBalanceChange": native, "tokenBalanceChanges": changes or []}


def change(owner: str, account: str, mint: str, amount: int, decimals: int = 6) -> dict:
    return {"userAccount": owner, "tokenAccount": account, "mint": mint,
            "rawTokenAmount": {"tokenAmount": str(amount), "decimals": decimals}}


def tx(*accounts: dict, **extra: object) -> dict:
    return {"signature": signature(str(accounts)), "accountData": list(accounts), **extra}


SIG = signature("a transaction")


def test_pump_amm_fixture_two_buys_one_sell_with_exact_amounts() -> None:
    trades = [classify(check_shape(t), PUMP_WALLET) for t in fixture("helius_enhanced_pump_amm_swaps_trimmed.json")]
    assert [t.side for t in trades] == ["buy", "sell", "buy"]
    buy = trades[0]
    assert buy.token_mint == "8sv4W4uQ9qML87Kr2XFkYBDwsiFEJVZZ1ScsM71Hpump"
    assert buy.token_amount == 708365894528 and buy.token_decimals == 6
    # W's native -2,935,596,736 plus the 2,039,280 rent that went into W's own new token account.
    assert buy.quote_mint == WSOL_MINT and buy.quote_amount == 2935596736 - 2039280
    assert trades[1].quote_amount == 2997310455 and trades[1].token_amount == 436621681955
    assert all(t.source == "PUMP_AMM" for t in trades)


def test_token_sold_for_usdc_is_a_sell_with_usdc_quote() -> None:
    t = fixture("helius_enhanced_swap_token_to_usdc.json")
    trade = classify(check_shape(t), t["feePayer"])
    assert trade is not None and trade.side == "sell" and trade.quote_mint == USDC_MINT
    assert (trade.token_amount, trade.quote_amount, trade.token_decimals) == (5806953935, 5063, 9)


def test_dca_keeper_fee_payer_made_no_trade() -> None:
    (t,) = fixture("helius_enhanced_swap.json")
    assert classify(check_shape(t), t["feePayer"]) is None


def test_nft_sale_is_not_a_trade() -> None:
    (t,) = fixture("helius_enhanced_nft_sale_docs.json")
    for wallet in accounts_touched(check_shape(t)):
        assert classify(t, wallet) is None


def test_native_sol_buy_with_fee_payer_adds_fee_back() -> None:
    t = tx(entry(W, -100_005_000, []), entry(ATA, 0, [change(W, ATA, MINT, 5_000_000)]), fee=5000, feePayer=W, type="TRANSFER")
    trade = classify(t, W)
    assert trade is not None and (trade.side, trade.quote_mint, trade.quote_amount) == ("buy", WSOL_MINT, 100_000_000)


def test_fee_paid_by_a_relayer_is_not_added_back() -> None:
    relayer = "DCAKxn5PFNN1mBREPWGdk1RXg5aVH9rPErLfBFEi2Emb"
    t = tx(entry(W, -100_000_000), entry(ATA, 0, [change(W, ATA, MINT, 5_000_000)]), entry(relayer, -5000), fee=5000, feePayer=relayer)
    trade = classify(t, W)
    assert trade is not None and trade.quote_amount == 100_000_000
    assert classify(t, relayer) is None


def test_wallet_trading_from_its_wsol_account_counts_as_sol() -> None:
    t = tx(entry(W, -5000), entry(WSOL_ATA, -250_000_000, [change(W, WSOL_ATA, WSOL_MINT, -250_000_000, 9)]),
           entry(ATA, 0, [change(W, ATA, MINT, 42)]), fee=5000, feePayer=W, type="UNKNOWN", events={})
    trade = classify(t, W)
    assert trade is not None and (trade.side, trade.quote_mint, trade.quote_amount, trade.token_amount) == ("buy", WSOL_MINT, 250_000_000, 42)


def test_wrap_swap_unwrap_in_one_transaction_is_not_double_counted() -> None:
    # W wraps 1 SOL into a temporary WSOL account, swaps it, closes the account: only the native leg moves.
    t = tx(entry(W, -1_000_000_000), entry(ATA, 0, [change(W, ATA, MINT, 777)]), entry(POOL, 1_000_000_000),
           events=[], nativeTransfers=[{"fromUserAccount": W, "toUserAccount": WSOL_ATA, "amount": 1_000_000_000}])
    trade = classify(t, W)
    assert trade is not None and trade.quote_amount == 1_000_000_000


def test_usdc_buy_prefers_the_stable_leg_over_a_sol_tip() -> None:
    usdc_ata = "9xQeWvG816bUx9EPjHmaT23yvVM2ZWbrrpZb9PusVFin"
    t = tx(entry(W, -10_000), entry(usdc_ata, 0, [change(W, usdc_ata, USDC_MINT, -25_000_000)]), entry(ATA, 0, [change(W, ATA, MINT, 9)]))
    trade = classify(t, W)
    assert trade is not None and (trade.quote_mint, trade.quote_amount) == (USDC_MINT, 25_000_000)


def test_sell_for_native_sol() -> None:
    t = tx(entry(W, 2_000_000_000), entry(ATA, 0, [change(W, ATA, MINT, -1_000_000)]), type="SWAP", source="PUMP_FUN")
    trade = classify(t, W)
    assert trade is not None and (trade.side, trade.quote_amount, trade.source) == ("sell", 2_000_000_000, "PUMP_FUN")


@pytest.mark.parametrize(
    "accounts",
    [
        # an airdrop: tokens in, nothing paid
        [entry(W, 0), entry(ATA, 0, [change(W, ATA, MINT, 1000)])],
        # a transfer in where W paid only the rent of its new token account
        [entry(W, -2_039_280), entry(ATA, 2_039_280, [change(W, ATA, MINT, 1000)])],
        # token for token outside the quote set
        [entry(W, 0), entry(ATA, 0, [change(W, ATA, MINT, 1000)]), entry(POOL, 0, [change(W, POOL, "So1anaMemecoin111111111111111111111111111", -5, 6)])],
        # W sent SOL and got nothing
        [entry(W, -5_000_000)],
        # someone else's swap in a transaction that merely lists W
        [entry(W, 0), entry(ATA, 0, [change(POOL, ATA, MINT, 1000)]), entry(POOL, -100)],
    ],
    ids=["airdrop", "transfer-paying-rent", "token-for-token", "sol-out-only", "others-swap"],
)
def test_not_a_trade(accounts: list) -> None:
    assert classify(tx(*accounts), W) is None


def test_lenient_about_optional_fields() -> None:
    t = tx(entry(W, -10), {"account": ATA, "tokenBalanceChanges": [change(W, ATA, MINT, 3)]},
           type=None, source=12, events=[], fee="odd", feePayer=None, timestamp=None)
    trade = classify(check_shape(t), W)
    assert trade is not None and trade.source is None and trade.quote_amount == 10


@pytest.mark.parametrize(
    "bad, where",
    [
        ({"accountData": []}, "signature"),
        ({"signature": SIG}, "accountData"),
        ({"signature": "s", "accountData": []}, "not a base58 transaction signature"),
        ({"signature": W, "accountData": []}, "not a base58 transaction signature"),  # 32 bytes: an address
        ({"signature": SIG, "accountData": [{"nativeBalanceChange": 1}]}, "accountData[0].account"),
        ({"signature": SIG, "accountData": [entry(W, "lots")]}, "nativeBalanceChange"),
        ({"signature": SIG, "accountData": [entry(ATA, 0, [{"mint": MINT, "rawTokenAmount": {"tokenAmount": "1.5", "decimals": 6}}])]}, "tokenAmount"),
        ("not an object", "not a JSON object"),
    ],
)
def test_check_shape_names_the_problem(bad: object, where: str) -> None:
    with pytest.raises(InvalidTransaction, match=where.replace("[", r"\[").replace("]", r"\]")):
        check_shape(bad)


def test_classification_does_not_mutate_its_input() -> None:
    t = fixture("helius_enhanced_pump_amm_swaps_trimmed.json")[0]
    before = copy.deepcopy(t)
    classify(t, PUMP_WALLET)
    assert t == before
