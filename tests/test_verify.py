"""The swap verifier on hand-built transactions in the sandbox's (and Jupiter's) shape: a clean swap passes; a
transaction that pays an unexpected account, invokes an unknown program, is paid by someone else, approves or
closes our accounts to others, spends more than the route takes in, or overpays the priority fee is refused."""

from __future__ import annotations

from typing import Any

import pytest
from solders.compute_budget import set_compute_unit_limit, set_compute_unit_price
from solders.hash import Hash
from solders.instruction import AccountMeta, Instruction
from solders.keypair import Keypair
from solders.message import MessageAddressTableLookup, MessageV0
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.system_program import TransferParams, transfer
from solders.transaction import VersionedTransaction
from spl.token import instructions as spl
from spl.token import models as m

from adapters.jupiter import parse_quote
from execution.verify import (
    ASSOCIATED,
    JITO_TIP_ACCOUNTS,
    TOKEN,
    WSOL,
    Refused,
    SimulationFailed,
    SwapPolicy,
    ata,
    programs,
    verify_swap,
)
from walltrack.demo_live import SANDBOX_PROGRAMS

OWNER = Keypair.from_seed(bytes([1] * 32)).pubkey()
POOL = Keypair.from_seed(bytes([2] * 32)).pubkey()
STRANGER = Keypair.from_seed(bytes([3] * 32)).pubkey()
MINT = str(Keypair.from_seed(bytes([4] * 32)).pubkey())
IN, OUT = 100_000_000, 5_000_000_000
POLICY = SwapPolicy(OWNER, programs(SANDBOX_PROGRAMS), max_priority_lamports=200_000)
QUOTE = parse_quote({
    "inputMint": WSOL, "inAmount": str(IN), "outputMint": MINT, "outAmount": str(OUT),
    "otherAmountThreshold": str(OUT * 99 // 100), "swapMode": "ExactIn", "slippageBps": 100, "priceImpactPct": "0.01",
    "routePlan": [{"swapInfo": {"ammKey": str(POOL), "label": "Raydium", "inputMint": WSOL, "outputMint": MINT,
                                "inAmount": str(IN), "outAmount": str(OUT)}, "percent": 100}]})
WSOL_KEY, MINT_KEY = Pubkey.from_string(WSOL), Pubkey.from_string(MINT)
OUR_WSOL, OUR_TOKEN = ata(OWNER, WSOL, TOKEN), ata(OWNER, MINT, TOKEN)
VAULT_WSOL, VAULT_TOKEN = ata(POOL, WSOL, TOKEN), ata(POOL, MINT, TOKEN)


def ata_create(wallet: Pubkey, mint: Pubkey, funder: Pubkey = OWNER) -> Instruction:
    from solders.system_program import ID as SYSTEM

    account = ata(wallet, str(mint), TOKEN)
    return Instruction(ASSOCIATED, bytes([1]), [
        AccountMeta(funder, True, True), AccountMeta(account, False, True), AccountMeta(wallet, False, False),
        AccountMeta(mint, False, False), AccountMeta(SYSTEM, False, False), AccountMeta(TOKEN, False, False)])


def checked(source: Pubkey, dest: Pubkey, authority: Pubkey, mint: Pubkey, amount: int, decimals: int) -> Instruction:
    return spl.transfer_checked(m.TransferCheckedParams(program_id=TOKEN, source=source, mint=mint, dest=dest,
                                                          owner=authority, amount=amount, decimals=decimals))


def clean() -> list[Instruction]:
    """What the sandbox's /swap builds for SOL -> token through one pool."""
    return [
        set_compute_unit_limit(60_000), set_compute_unit_price(50_000 * 10**6 // 60_000),
        ata_create(OWNER, WSOL_KEY),
        transfer(TransferParams(from_pubkey=OWNER, to_pubkey=OUR_WSOL, lamports=IN)),
        spl.sync_native(m.SyncNativeParams(program_id=TOKEN, account=OUR_WSOL)),
        ata_create(OWNER, MINT_KEY),
        checked(OUR_WSOL, VAULT_WSOL, OWNER, WSOL_KEY, IN, 9),
        checked(VAULT_TOKEN, OUR_TOKEN, POOL, MINT_KEY, OUT, 6),
        spl.close_account(m.CloseAccountParams(program_id=TOKEN, account=OUR_WSOL, dest=OWNER, owner=OWNER)),
    ]


def tx(ixs: list[Instruction], payer: Pubkey = OWNER, lookups: list[MessageAddressTableLookup] | None = None) -> Any:
    msg = MessageV0.try_compile(payer, ixs, [], Hash.default())
    if lookups:
        msg = MessageV0(msg.header, msg.account_keys, msg.recent_blockhash, msg.instructions, lookups)
    return VersionedTransaction.populate(msg, [Signature.default()] * msg.header.num_required_signatures)


def refusal(ixs: list[Instruction], policy: SwapPolicy = POLICY, **kw: Any) -> str:
    with pytest.raises(Refused) as refused:
        verify_swap(tx(ixs, **kw), QUOTE, policy)
    return refused.value.reason


def test_a_clean_swap_passes() -> None:
    verify_swap(tx(clean()), QUOTE, POLICY)


def test_a_transfer_to_a_stranger_is_refused() -> None:
    sol = clean() + [transfer(TransferParams(from_pubkey=OWNER, to_pubkey=STRANGER, lamports=1_000_000))]
    assert refusal(sol) == "stray_transfer"
    token = clean()
    token[6] = checked(OUR_WSOL, ata(STRANGER, WSOL, TOKEN), OWNER, WSOL_KEY, IN, 9)
    assert refusal(token) == "stray_transfer"


def test_an_unknown_program_is_refused() -> None:
    unknown = Instruction(Keypair().pubkey(), b"\x00", [AccountMeta(OWNER, True, True)])
    assert refusal(clean() + [unknown]) == "unknown_program"
    mainnet = SwapPolicy(OWNER, programs("ComputeBudget111111111111111111111111111111"), 200_000)
    assert refusal(clean(), mainnet) == "unknown_program"  # the System program is not on that list


def test_another_fee_payer_is_refused() -> None:
    assert refusal(clean(), payer=STRANGER) == "fee_payer"


@pytest.mark.parametrize("bad", [
    lambda: spl.approve(m.ApproveParams(program_id=TOKEN, source=OUR_TOKEN, delegate=STRANGER, owner=OWNER, amount=1)),
    lambda: spl.set_authority(m.SetAuthorityParams(program_id=TOKEN, account=OUR_TOKEN, authority=spl.AuthorityType.ACCOUNT_OWNER,
                                                     current_authority=OWNER, new_authority=STRANGER)),
    lambda: spl.burn(m.BurnParams(program_id=TOKEN, account=OUR_TOKEN, mint=MINT_KEY, owner=OWNER, amount=1)),
])
def test_no_authority_over_our_accounts_is_given_away(bad: Any) -> None:
    assert refusal(clean() + [bad()]) == "token_authority"


def test_our_account_is_closed_only_to_us_and_we_fund_only_our_own_accounts() -> None:
    ixs = clean()
    ixs[-1] = spl.close_account(m.CloseAccountParams(program_id=TOKEN, account=OUR_WSOL, dest=STRANGER, owner=OWNER))
    assert refusal(ixs) == "close_to_other"
    assert refusal(clean() + [ata_create(STRANGER, MINT_KEY)]) == "ata_for_other"


def test_more_than_the_route_takes_in_is_refused() -> None:
    ixs = clean()
    ixs[6] = checked(OUR_WSOL, VAULT_WSOL, OWNER, WSOL_KEY, IN + 1, 9)
    assert refusal(ixs) == "overspend"


def test_the_priority_fee_is_capped_and_a_tip_only_when_configured() -> None:
    ixs = clean()
    ixs[1] = set_compute_unit_price(10 * 10**6)  # 10 lamports per unit x 60,000 units = 600,000 lamports
    assert refusal(ixs) == "priority_fee"
    tip = clean() + [transfer(TransferParams(from_pubkey=OWNER, to_pubkey=next(iter(JITO_TIP_ACCOUNTS)), lamports=10_000))]
    assert refusal(tip) == "stray_transfer"  # no tip configured: a tip account is a stranger
    verify_swap(tx(tip), QUOTE, SwapPolicy(OWNER, POLICY.programs, 200_000, jito_tip_lamports=10_000))
    assert refusal(tip, SwapPolicy(OWNER, POLICY.programs, 200_000, jito_tip_lamports=9_999)) == "jito_tip"


def test_lookup_tables_are_resolved_or_the_swap_is_refused() -> None:
    table = Keypair().pubkey()
    lookup = MessageAddressTableLookup(table, bytes([0]), bytes())
    with pytest.raises(Refused) as refused:
        verify_swap(tx(clean(), lookups=[lookup]), QUOTE, POLICY)
    assert refused.value.reason == "lookup_unresolved"
    verify_swap(tx(clean(), lookups=[lookup]), QUOTE, POLICY, lookups={str(table): [str(STRANGER)]})


def test_the_builders_simulation_error_is_checked_after_what_the_transaction_does() -> None:
    with pytest.raises(SimulationFailed):
        verify_swap(tx(clean()), QUOTE, POLICY, simulation_error={"errorCode": "SLIPPAGE_EXCEEDED"})
    bad = clean() + [transfer(TransferParams(from_pubkey=OWNER, to_pubkey=STRANGER, lamports=1))]
    with pytest.raises(Refused) as refused:
        verify_swap(tx(bad), QUOTE, POLICY, simulation_error={"errorCode": "SLIPPAGE_EXCEEDED"})
    assert refused.value.reason == "stray_transfer"
