"""Real swaps on the sandbox chain, over real HTTP: quote → /swap → verify → sign (a solders Keypair) →
sendTransaction → getSignatureStatuses → getTransaction, with balances read back from the RPC, and every
execution fault the issue names (insufficient SOL, expired blockhash, slippage, 429, dropped, late), plus the
malicious builds a verifier must refuse.

Blocks run on wall time (100 ms here) unless a test stops the clock to step the chain block by block.
"""

from __future__ import annotations

import base64
import struct
from dataclasses import dataclass
from typing import Any, Iterator

import base58
import httpx
import pytest
from solders.keypair import Keypair
from solders.message import to_bytes_versioned
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.token.associated import get_associated_token_address
from solders.transaction import VersionedTransaction

from sandbox import jupiter, rpc
from sandbox.chain import JITO_TIP_ACCOUNTS, Chain
from sandbox.faults import FaultBoard, Faults
from sandbox.market import USDC_MINT, WSOL_MINT, Market, pool_keypair
from sandbox.server import create_app, server_main
from tests.conftest import wait_until
from walltrack.bridge import TrioThread

TOKENKEG = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA"
TOKEN_2022 = "TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb"
SYSTEM = "11111111111111111111111111111111"
ATA = "ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL"
COMPUTE_BUDGET = "ComputeBudget111111111111111111111111111111"
ALLOWED_PROGRAMS = {TOKENKEG, TOKEN_2022, SYSTEM, ATA, COMPUTE_BUDGET}  # the sandbox's allow-list
BLOCK_TIME_S = 0.1  # 150 blocks = 15 s: room for a loaded machine between /swap and the send
SOL = 10**9
ATA_RENT = 2_039_280  # a 165-byte token account


# -- the harness -----------------------------------------------------------------------------------------
@dataclass
class Box:
    market: Market
    chain: Chain
    board: FaultBoard
    http: httpx.Client
    base: str

    @property
    def jup(self) -> Faults:
        return self.board["jupiter"]

    @property
    def node(self) -> Faults:
        return self.board["rpc"]

    def post(self, method: str, *params: Any) -> httpx.Response:
        return self.http.post(f"{self.base}/rpc", json={"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)})

    def rpc(self, method: str, *params: Any) -> dict[str, Any]:
        r = self.post(method, *params)
        assert r.status_code == 200, r.text
        return r.json()

    def result(self, method: str, *params: Any) -> Any:
        body = self.rpc(method, *params)
        assert "error" not in body, body
        return body["result"]

    def error(self, method: str, *params: Any) -> dict[str, Any]:
        body = self.rpc(method, *params)
        assert "result" not in body, body
        return body["error"]

    def quote(self, input_mint: str, output_mint: str, amount: int, slippage_bps: int = 100) -> dict[str, Any]:
        r = self.http.get(f"{self.base}/jupiter/swap/v1/quote", params={
            "inputMint": input_mint, "outputMint": output_mint, "amount": str(amount), "slippageBps": str(slippage_bps)})
        assert r.status_code == 200, r.text
        return r.json()

    def swap(self, quote: dict[str, Any], user: Keypair, **body: Any) -> dict[str, Any]:
        r = self.http.post(f"{self.base}/jupiter/swap/v1/swap", json={
            "quoteResponse": quote, "userPublicKey": str(user.pubkey()), "dynamicComputeUnitLimit": True,
            "prioritizationFeeLamports": {"priorityLevelWithMaxLamports": {"priorityLevel": "high", "maxLamports": 100_000}},
            **body})
        assert r.status_code == 200, r.text
        return r.json()

    def fund(self, lamports: int) -> Keypair:
        user = Keypair()
        sig = self.result("requestAirdrop", str(user.pubkey()), lamports)
        assert self.value("getSignatureStatuses", [sig])[0] is not None
        return user

    def value(self, method: str, *params: Any) -> Any:
        return self.result(method, *params)["value"]

    def send(self, tx: VersionedTransaction, **config: Any) -> dict[str, Any]:
        return self.rpc("sendTransaction", base64.b64encode(bytes(tx)).decode(), {"encoding": "base64", "maxRetries": 0, **config})

    def status(self, sig: str) -> dict[str, Any] | None:
        return self.value("getSignatureStatuses", [sig])[0]

    def confirmed(self, sig: str) -> dict[str, Any]:
        return wait_until(lambda: (s := self.status(sig)) and s["confirmationStatus"] != "processed" and s)

    def transaction(self, sig: str, encoding: str = "json") -> dict[str, Any]:
        return self.result("getTransaction", sig, {"commitment": "confirmed", "maxSupportedTransactionVersion": 0,
                                                  "encoding": encoding})

    def wallet(self, owner: Pubkey) -> tuple[int, dict[str, int]]:
        """SOL and raw token amounts by mint, as the RPC reports them (both token programs)."""
        tokens: dict[str, int] = {}
        for program in (TOKENKEG, TOKEN_2022):
            for acc in self.value("getTokenAccountsByOwner", str(owner), {"programId": program}, {"encoding": "jsonParsed"}):
                info = acc["account"]["data"]["parsed"]["info"]
                tokens[info["mint"]] = tokens.get(info["mint"], 0) + int(info["tokenAmount"]["amount"])
        return self.value("getBalance", str(owner)), tokens


@pytest.fixture
def box() -> Iterator[Box]:
    market = Market(seed=7)
    chain = Chain(market, block_time_s=BLOCK_TIME_S)
    board = FaultBoard()
    app = create_app({"jupiter": jupiter.blueprint(market, board["jupiter"], chain=chain),
                      "rpc": rpc.blueprint(chain, board["rpc"])})
    thread = TrioThread(server_main(app), name="sandbox-exec")
    port = thread.start()
    http = httpx.Client(timeout=10)
    try:
        yield Box(market, chain, board, http, f"http://127.0.0.1:{port}")
    finally:
        http.close()
        thread.stop()


def decode(swap: dict[str, Any]) -> VersionedTransaction:
    return VersionedTransaction.from_bytes(base64.b64decode(swap["swapTransaction"]))


def sign(tx: VersionedTransaction, user: Keypair) -> VersionedTransaction:
    """Add the user's signature, keeping the pools' (as the bot must)."""
    return VersionedTransaction.populate(tx.message, [user.sign_message(to_bytes_versioned(tx.message)), *tx.signatures[1:]])


def ata(owner: str | Pubkey, mint: str, program: str = TOKENKEG) -> str:
    return str(get_associated_token_address(Pubkey.from_string(str(owner)), Pubkey.from_string(mint),
                                            Pubkey.from_string(program)))


def instructions(tx: VersionedTransaction) -> list[tuple[str, dict[str, Any]]]:
    """Each instruction as (kind, details), decoded here from the raw bytes (not by the sandbox's parser)."""
    keys = [str(k) for k in tx.message.account_keys]
    out = []
    for ix in tx.message.instructions:
        program, data, acc = keys[ix.program_id_index], bytes(ix.data), [keys[i] for i in ix.accounts]
        if program == COMPUTE_BUDGET:
            kind = {2: "limit", 3: "price"}[data[0]]
            out.append((kind, {"value": int.from_bytes(data[1:], "little")}))
        elif program == SYSTEM and struct.unpack_from("<I", data)[0] == 2:
            out.append(("sol", {"from": acc[0], "to": acc[1], "amount": struct.unpack_from("<Q", data, 4)[0]}))
        elif program in (TOKENKEG, TOKEN_2022) and data[0] == 12:
            out.append(("token", {"from": acc[0], "mint": acc[1], "to": acc[2], "authority": acc[3],
                                  "amount": struct.unpack_from("<Q", data, 1)[0], "program": program}))
        elif program in (TOKENKEG, TOKEN_2022) and data[0] in (17, 9):
            out.append(({17: "sync", 9: "close"}[data[0]], {"account": acc[0], "to": acc[1] if len(acc) > 1 else None}))
        elif program == ATA and data == b"\x01":
            out.append(("ata", {"payer": acc[0], "account": acc[1], "wallet": acc[2], "mint": acc[3]}))
        else:
            out.append(("other", {"program": program}))
    return out


def kinds(tx: VersionedTransaction) -> list[str]:
    return [k for k, _ in instructions(tx)]


def assert_meta_matches_wallet(meta: dict[str, Any], keys: list[str], user: Pubkey, before: tuple[int, dict[str, int]],
                               after: tuple[int, dict[str, int]]) -> None:
    """getTransaction's deltas are the wallet's, to the lamport and the raw unit; only the fee is burned."""
    i = keys.index(str(user))
    assert meta["postBalances"][i] - meta["preBalances"][i] == after[0] - before[0]
    assert sum(meta["preBalances"]) - sum(meta["postBalances"]) == meta["fee"]  # lamports are conserved but the fee

    def owned(balances: list[dict[str, Any]]) -> dict[str, int]:
        out: dict[str, int] = {}
        for b in balances:
            if b["owner"] == str(user):
                out[b["mint"]] = out.get(b["mint"], 0) + int(b["uiTokenAmount"]["amount"])
        return out

    pre, post = owned(meta["preTokenBalances"]), owned(meta["postTokenBalances"])
    for mint in set(pre) | set(post) | set(before[1]) | set(after[1]):
        assert post.get(mint, 0) - pre.get(mint, 0) == after[1].get(mint, 0) - before[1].get(mint, 0), mint


def land(box: Box, user: Keypair, swap: dict[str, Any], **send: Any) -> tuple[str, dict[str, Any]]:
    """Sign, send, wait for "confirmed", read the transaction."""
    body = box.send(sign(decode(swap), user), **send)
    assert "result" in body, body
    box.confirmed(body["result"])
    return body["result"], box.transaction(body["result"])


def assert_vaults_follow_reserves(box: Box, *symbols: str) -> None:
    pools = [box.market.by_symbol[s].pool for s in symbols] + [box.market.sol_pool]
    for pool in pools:
        for vault, reserve in ((pool.base_vault, pool.base_reserve), (pool.quote_vault, pool.quote_reserve)):
            info = box.value("getAccountInfo", vault, {"encoding": "jsonParsed"})["data"]["parsed"]["info"]
            assert int(info["tokenAmount"]["amount"]) == reserve


# -- trades ----------------------------------------------------------------------------------------------
def test_buy_then_sell_everything_moves_real_balances(box: Box) -> None:
    moon = box.market.by_symbol["MOON"]
    user = box.fund(2 * SOL)
    quote = box.quote(WSOL_MINT, moon.mint, SOL // 10)
    [step] = quote["routePlan"]
    pool = step["swapInfo"]["ammKey"]
    assert pool == str(pool_keypair(7, "MOON").pubkey()) == moon.pool.address
    swap = box.swap(quote, user)
    assert swap["simulationError"] is None and swap["lastValidBlockHeight"] > box.result("getBlockHeight")
    tx = decode(swap)

    # fee payer the user, signed by the pool already, the user's slot empty
    signers = [str(k) for k in tx.message.account_keys[:tx.message.header.num_required_signatures]]
    assert signers == [str(user.pubkey()), pool]
    assert tx.signatures[0] == Signature.default()
    assert tx.signatures[1].verify(Pubkey.from_string(pool), to_bytes_versioned(tx.message))
    assert {str(tx.message.account_keys[ix.program_id_index]) for ix in tx.message.instructions} <= ALLOWED_PROGRAMS
    assert kinds(tx) == ["limit", "price", "ata", "sol", "sync", "ata", "token", "token", "close"]
    steps = dict(enumerate(instructions(tx)))
    u, wsol_acct = str(user.pubkey()), ata(user.pubkey(), WSOL_MINT)
    assert steps[3][1] == {"from": u, "to": wsol_acct, "amount": SOL // 10}  # the wrap
    pay, get = steps[6][1], steps[7][1]
    assert (pay["from"], pay["to"], pay["authority"], pay["amount"]) == (wsol_acct, ata(pool, WSOL_MINT), u, SOL // 10)
    assert (get["from"], get["to"], get["authority"]) == (ata(pool, moon.mint), ata(u, moon.mint), pool)
    assert get["amount"] >= int(quote["otherAmountThreshold"])
    assert steps[8][1] == {"account": wsol_acct, "to": u}  # the unwrap: rent back to the user
    limit, price = steps[0][1]["value"], steps[1][1]["value"]
    assert swap["computeUnitLimit"] == limit < 1_400_000  # dynamic: from a simulation
    assert swap["prioritizationFeeLamports"] == -(-limit * price // 10**6) <= 50_000  # "high" is 50,000 lamports

    before = box.wallet(user.pubkey())
    sig, got = land(box, user, swap)
    after = box.wallet(user.pubkey())
    meta = got["meta"]
    assert meta["err"] is None and got["version"] == 0 and got["transaction"]["signatures"][0] == sig
    assert meta["fee"] == 2 * 5_000 + swap["prioritizationFeeLamports"]  # the user's and the pool's signatures
    rent = box.value("getAccountInfo", ata(u, moon.mint), {"encoding": "base64"})["lamports"]
    assert rent == ATA_RENT
    assert before[0] - after[0] == SOL // 10 + meta["fee"] + rent  # in + fees + the new token account's rent
    assert after[1] == {moon.mint: get["amount"]} and WSOL_MINT not in after[1]  # the WSOL account is closed
    assert_meta_matches_wallet(meta, got["transaction"]["message"]["accountKeys"], user.pubkey(), before, after)
    assert_vaults_follow_reserves(box, "MOON")

    # ... and the whole holding back to SOL, base58 (the RPC's default encoding), no dynamic limit
    sell_quote = box.quote(moon.mint, WSOL_MINT, after[1][moon.mint])
    sell = box.swap(sell_quote, user, dynamicComputeUnitLimit=False, prioritizationFeeLamports=20_000)
    tx = decode(sell)
    assert kinds(tx) == ["limit", "price", "ata", "token", "token", "close"]
    assert sell["computeUnitLimit"] == 1_400_000 and instructions(tx)[1][1]["value"] == 20_000 * 10**6 // 1_400_000
    out = instructions(tx)[4][1]
    assert (out["from"], out["to"], out["authority"]) == (ata(pool, WSOL_MINT), wsol_acct, pool)
    body = box.rpc("sendTransaction", base58.b58encode(bytes(sign(tx, user))).decode())
    box.confirmed(body["result"])
    got = box.transaction(body["result"])
    final = box.wallet(user.pubkey())
    assert final[1] == {moon.mint: 0}  # the token account stays, empty; no WSOL left wrapped
    assert final[0] - after[0] == out["amount"] - got["meta"]["fee"]
    assert got["meta"]["fee"] == 10_000 + sell["prioritizationFeeLamports"]
    assert_meta_matches_wallet(got["meta"], got["transaction"]["message"]["accountKeys"], user.pubkey(), after, final)
    assert_vaults_follow_reserves(box, "MOON")


def test_a_usdc_quoted_token_goes_through_two_pools(box: Box) -> None:
    usdx = box.market.by_symbol["USDX"]
    user = box.fund(SOL)
    quote = box.quote(WSOL_MINT, usdx.mint, SOL // 20)
    legs = [s["swapInfo"] for s in quote["routePlan"]]
    sol_pool, token_pool = box.market.sol_pool.address, usdx.pool.address
    assert [(s["ammKey"], s["inputMint"], s["outputMint"]) for s in legs] == [
        (sol_pool, WSOL_MINT, USDC_MINT), (token_pool, USDC_MINT, usdx.mint)]
    assert legs[0]["outAmount"] == legs[1]["inAmount"] and legs[1]["outAmount"] == quote["outAmount"]
    swap = box.swap(quote, user)
    tx = decode(swap)
    signers = [str(k) for k in tx.message.account_keys[:tx.message.header.num_required_signatures]]
    assert signers[0] == str(user.pubkey()) and set(signers[1:]) == {sol_pool, token_pool}
    transfers = [d for k, d in instructions(tx) if k == "token"]
    usdc = int(legs[0]["outAmount"])
    assert [(t["from"], t["to"], t["authority"]) for t in transfers] == [
        (ata(user.pubkey(), WSOL_MINT), ata(sol_pool, WSOL_MINT), str(user.pubkey())),
        (ata(sol_pool, USDC_MINT), ata(token_pool, USDC_MINT), sol_pool),  # USDC from one pool's vault to the other's
        (ata(token_pool, usdx.mint), ata(user.pubkey(), usdx.mint), token_pool)]
    assert transfers[1]["amount"] == usdc

    before = box.wallet(user.pubkey())
    _, got = land(box, user, swap)
    after = box.wallet(user.pubkey())
    assert got["meta"]["fee"] == 3 * 5_000 + swap["prioritizationFeeLamports"]
    assert USDC_MINT not in after[1] and after[1][usdx.mint] == transfers[2]["amount"]
    assert_meta_matches_wallet(got["meta"], got["transaction"]["message"]["accountKeys"], user.pubkey(), before, after)
    assert_vaults_follow_reserves(box, "USDX")

    back = box.swap(box.quote(usdx.mint, WSOL_MINT, after[1][usdx.mint]), user)
    assert [s["swapInfo"]["ammKey"] for s in box.quote(usdx.mint, WSOL_MINT, 10**6)["routePlan"]] == [token_pool, sol_pool]
    _, got = land(box, user, back)
    final = box.wallet(user.pubkey())
    assert final[1] == {usdx.mint: 0}
    assert_meta_matches_wallet(got["meta"], got["transaction"]["message"]["accountKeys"], user.pubkey(), after, final)
    assert_vaults_follow_reserves(box, "USDX")


def test_a_token_2022_fill_is_what_the_chain_says(box: Box) -> None:
    tfee = box.market.by_symbol["TFEE"]  # Token-2022 with a 5 % transfer fee: the user receives less than sent
    user = box.fund(SOL)
    swap = box.swap(box.quote(WSOL_MINT, tfee.mint, SOL // 20), user)
    tx = decode(swap)
    sent = [d for k, d in instructions(tx) if k == "token"][-1]
    assert sent["program"] == TOKEN_2022 and sent["to"] == ata(user.pubkey(), tfee.mint, TOKEN_2022)
    before = box.wallet(user.pubkey())
    _, got = land(box, user, swap)
    after = box.wallet(user.pubkey())
    fee_withheld = -(-sent["amount"] * 500 // 10_000)  # Token-2022 rounds the fee up
    assert after[1][tfee.mint] == sent["amount"] - fee_withheld  # the chain's fill, not the transaction's amount
    by_program = box.value("getTokenAccountsByOwner", str(user.pubkey()), {"programId": TOKEN_2022}, {"encoding": "jsonParsed"})
    assert [a["pubkey"] for a in by_program] == [ata(user.pubkey(), tfee.mint, TOKEN_2022)]
    rent = box.value("getAccountInfo", ata(user.pubkey(), tfee.mint, TOKEN_2022), {"encoding": "base64"})["lamports"]
    assert rent > ATA_RENT  # a Token-2022 account with extensions is bigger
    assert before[0] - after[0] == SOL // 20 + got["meta"]["fee"] + rent
    assert_meta_matches_wallet(got["meta"], got["transaction"]["message"]["accountKeys"], user.pubkey(), before, after)


def test_jito_tips_priority_fee_forms_and_refused_requests(box: Box) -> None:
    moon = box.market.by_symbol["MOON"]
    user = box.fund(SOL)
    quote = box.quote(WSOL_MINT, moon.mint, SOL // 50)
    tipped = box.swap(quote, user, prioritizationFeeLamports={"jitoTipLamports": 12_345})
    tx = decode(tipped)
    assert "price" not in kinds(tx) and tipped["prioritizationFeeLamports"] == 12_345  # a tip, not a priority fee
    tip = instructions(tx)[-1][1]
    assert tip["from"] == str(user.pubkey()) and tip["amount"] == 12_345
    assert tip["to"] in {str(k) for k in JITO_TIP_ACCOUNTS}
    tip_before = box.value("getBalance", tip["to"])
    before = box.wallet(user.pubkey())
    _, got = land(box, user, tipped)
    assert box.value("getBalance", tip["to"]) == tip_before + 12_345
    assert got["meta"]["fee"] == 10_000  # no compute-unit price: base fees only
    assert before[0] - box.wallet(user.pubkey())[0] == SOL // 50 + 10_000 + 12_345 + ATA_RENT

    for option, lamports in ((7_777, 7_777), ("auto", 5_000), ({"priorityLevelWithMaxLamports": {
            "priorityLevel": "veryHigh", "maxLamports": 60_000}}, 60_000)):
        built = box.swap(quote, user, prioritizationFeeLamports=option)
        limit, price = (d["value"] for k, d in instructions(decode(built)) if k in ("limit", "price"))
        assert price == lamports * 10**6 // limit and built["prioritizationFeeLamports"] == -(-limit * price // 10**6)
        assert built["prioritizationFeeLamports"] <= lamports
    explicit = box.swap(quote, user, computeUnitPriceMicroLamports=1_000)
    assert [d["value"] for k, d in instructions(decode(explicit)) if k == "price"] == [1_000]

    url = f"{box.base}/jupiter/swap/v1/swap"
    base = {"quoteResponse": quote, "userPublicKey": str(user.pubkey())}
    for extra in ({"prioritizationFeeLamports": {"jitoTipLamports": -1}}, {"prioritizationFeeLamports": "fast"},
                  {"prioritizationFeeLamports": {"priorityLevelWithMaxLamports": {"priorityLevel": "ludicrous"}}},
                  {"prioritizationFeeLamports": {"jitoTipLamportsWithPayer": {"lamports": 1, "payer": str(user.pubkey())}}},
                  {"destinationTokenAccount": str(Keypair().pubkey())}, {"asLegacyTransaction": True},
                  {"wrapAndUnwrapSol": "yes"}):
        r = box.http.post(url, json={**base, **extra})
        assert r.status_code == 400 and r.json()["errorCode"] == "INVALID_REQUEST" and r.json()["error"], extra


# -- faults ------------------------------------------------------------------------------------------------
def test_insufficient_sol_fails_preflight_or_lands_failed(box: Box) -> None:
    moon = box.market.by_symbol["MOON"]
    quote = box.quote(WSOL_MINT, moon.mint, SOL // 10)
    broke = Keypair()  # no lamports at all: it cannot even pay the fee
    swap = box.swap(quote, broke)
    assert swap["simulationError"]["errorCode"] == "INSUFFICIENT_FUNDS"
    err = box.error("sendTransaction", base64.b64encode(bytes(sign(decode(swap), broke))).decode(), {"encoding": "base64"})
    assert err["code"] == -32002
    assert err["message"] == "Transaction simulation failed: Attempt to debit an account but found no record of a prior credit."
    assert err["data"]["err"] == "AccountNotFound"
    sig = box.send(sign(decode(swap), broke), skipPreflight=True)["result"]
    box.chain.blocks.produce(5)
    assert box.status(sig) is None and box.value("getBalance", str(broke.pubkey())) == 0  # never lands

    short = box.fund(SOL // 100)  # the fees and the rent, not the 0.1 SOL it swaps
    swap = box.swap(quote, short)
    assert swap["simulationError"]["errorCode"] == "INSUFFICIENT_FUNDS"
    wrap = kinds(decode(swap)).index("sol")
    err = box.error("sendTransaction", base64.b64encode(bytes(sign(decode(swap), short))).decode(), {"encoding": "base64"})
    assert err["code"] == -32002 and err["data"]["err"] == {"InstructionError": [wrap, {"Custom": 1}]}
    assert err["message"] == f"Transaction simulation failed: Error processing Instruction {wrap}: custom program error: 0x1"
    assert any("insufficient lamports" in line for line in err["data"]["logs"])
    before = box.wallet(short.pubkey())
    sig = box.send(sign(decode(swap), short), skipPreflight=True)["result"]  # lands, fails, pays its fee
    status = box.confirmed(sig)
    assert status["err"] == {"InstructionError": [wrap, {"Custom": 1}]} and status["status"] == {"Err": status["err"]}
    got = box.transaction(sig)
    after = box.wallet(short.pubkey())
    assert before[0] - after[0] == got["meta"]["fee"] > 0 and after[1] == before[1] == {}
    assert got["meta"]["err"] == status["err"] and got["meta"]["logMessages"]


def test_an_expired_blockhash_fails_preflight_or_never_lands(box: Box) -> None:
    moon = box.market.by_symbol["MOON"]
    user = box.fund(SOL)
    quote = box.quote(WSOL_MINT, moon.mint, SOL // 10)
    box.jup.blockhash_age_blocks = 151  # /swap hands out a blockhash already past its validity
    stale = box.swap(quote, user)
    box.jup.clear()
    assert stale["lastValidBlockHeight"] < box.result("getBlockHeight")
    tx = sign(decode(stale), user)
    assert box.value("isBlockhashValid", str(tx.message.recent_blockhash)) is False
    err = box.send(tx)["error"]
    assert (err["code"], err["message"], err["data"]["err"]) == (
        -32002, "Transaction simulation failed: Blockhash not found", "BlockhashNotFound")
    sig = box.send(tx, skipPreflight=True)["result"]  # accepted, then never lands
    assert sig == str(tx.signatures[0])
    box.chain.blocks.produce(3)
    assert box.status(sig) is None and box.wallet(user.pubkey())[0] == SOL

    # a fresh one lives exactly 150 blocks
    box.chain.blocks.block_time_s = None
    fresh = box.swap(quote, user)
    tx = sign(decode(fresh), user)
    box.chain.blocks.produce(fresh["lastValidBlockHeight"] - box.result("getBlockHeight"))
    assert box.value("isBlockhashValid", str(tx.message.recent_blockhash)) is True
    box.chain.blocks.produce(1)
    assert box.result("getBlockHeight") == fresh["lastValidBlockHeight"] + 1
    assert box.value("isBlockhashValid", str(tx.message.recent_blockhash)) is False
    assert box.send(tx)["error"]["data"]["err"] == "BlockhashNotFound"


def test_slippage_exceeded_is_a_failed_transaction(box: Box) -> None:
    moon = box.market.by_symbol["MOON"]
    user = box.fund(SOL)
    quote = box.quote(WSOL_MINT, moon.mint, SOL // 10, slippage_bps=50)
    swap = box.swap(quote, user)
    pool_leg = kinds(decode(swap)).index("token") + 1  # the pool's side: vault → user
    box.node.slippage = True  # a trader gets in first, the same way: the price moves past the user's tolerance
    reserves = moon.pool.quote_reserve
    before = box.wallet(user.pubkey())
    sig, got = land(box, user, swap)  # preflight passes: the move happens in the block
    status = box.status(sig)
    assert status["err"] == {"InstructionError": [pool_leg, {"Custom": 1}]}
    assert got["meta"]["err"] == status["err"] and any("insufficient funds" in line for line in got["meta"]["logMessages"])
    after = box.wallet(user.pubkey())
    assert before[0] - after[0] == got["meta"]["fee"] and after[1] == before[1] == {}  # only the fee is gone
    assert moon.pool.quote_reserve > reserves  # the front-runner's buy stays in the market
    assert_vaults_follow_reserves(box, "MOON")
    box.node.clear()

    # without the fault, a market that moved between the quote and the send fails in preflight ...
    old = box.quote(WSOL_MINT, moon.mint, SOL // 10, slippage_bps=50)
    swap = box.swap(old, user)
    with box.market.lock:
        moon.apply_swap(moon.pool.quote_reserve // 20, buy=True)  # 5 % more SOL in the pool: ~10 % dearer
        box.chain.sync_pool(moon.pool)
    err = box.send(sign(decode(swap), user))["error"]
    assert err["code"] == -32002 and err["data"]["err"] == {"InstructionError": [pool_leg, {"Custom": 1}]}
    # ... and /swap with the stale quote says so before anything is signed
    assert box.swap(old, user)["simulationError"]["errorCode"] == "SLIPPAGE_EXCEEDED"
    assert box.wallet(user.pubkey()) == after


def test_rate_limited_sends_get_429_with_retry_after(box: Box) -> None:
    moon = box.market.by_symbol["MOON"]
    user = box.fund(SOL)
    tx = sign(decode(box.swap(box.quote(WSOL_MINT, moon.mint, SOL // 20), user)), user)
    box.node.rate_limited_methods = {"sendTransaction"}
    box.node.retry_after_s = 3
    r = box.post("sendTransaction", base64.b64encode(bytes(tx)).decode(), {"encoding": "base64"})
    assert r.status_code == 429 and r.headers["Retry-After"] == "3" and r.json()["code"] == 429
    assert box.status(str(tx.signatures[0])) is None and box.wallet(user.pubkey())[0] == SOL  # nothing was sent
    box.node.clear()
    box.node.rate_limited = True  # the whole node
    assert box.post("getBlockHeight").status_code == 429
    box.node.clear()
    assert box.send(tx)["result"] == str(tx.signatures[0])
    assert box.confirmed(str(tx.signatures[0]))["err"] is None


def test_dropped_broadcasts_never_land_until_rebroadcast(box: Box) -> None:
    moon = box.market.by_symbol["MOON"]
    user = box.fund(SOL)
    quote = box.quote(WSOL_MINT, moon.mint, SOL // 20)
    box.chain.blocks.block_time_s = None
    swap = box.swap(quote, user)
    tx = sign(decode(swap), user)
    box.node.drop_next = 1
    assert box.send(tx)["result"] == str(tx.signatures[0])  # answered (preflight passed) ...
    box.chain.blocks.produce(10)
    assert box.status(str(tx.signatures[0])) is None and box.wallet(user.pubkey())[0] == SOL  # ... but dropped
    box.send(tx, skipPreflight=True)  # the rebroadcast lands it
    box.chain.blocks.produce(1)
    assert box.status(str(tx.signatures[0]))["confirmationStatus"] == "confirmed"

    box.node.drop_all = True
    swap = box.swap(quote, user)
    tx = sign(decode(swap), user)
    before = box.wallet(user.pubkey())
    for _ in range(3):
        assert box.send(tx, skipPreflight=True)["result"] == str(tx.signatures[0])
        box.chain.blocks.produce(60)
    assert box.result("getBlockHeight") > swap["lastValidBlockHeight"]  # the bot's cue to stop rebroadcasting
    assert box.status(str(tx.signatures[0])) is None and box.wallet(user.pubkey()) == before
    box.node.clear()
    assert box.send(tx)["error"]["data"]["err"] == "BlockhashNotFound"  # too late now: it can never land


def test_a_late_confirmation_shows_no_status_for_n_blocks(box: Box) -> None:
    moon = box.market.by_symbol["MOON"]
    user = box.fund(SOL)
    box.chain.blocks.block_time_s = None
    tx = sign(decode(box.swap(box.quote(WSOL_MINT, moon.mint, SOL // 20), user)), user)
    box.node.late_blocks = 5
    sig = box.send(tx)["result"]
    assert box.wallet(user.pubkey())[1][moon.mint] > 0  # it landed: the balances moved
    for _ in range(4):
        box.chain.blocks.produce(1)
        assert box.status(sig) is None and box.transaction(sig) is None
    box.chain.blocks.produce(1)
    status = box.status(sig)
    assert (status["confirmationStatus"], status["confirmations"], status["err"]) == ("confirmed", 5, None)
    assert box.transaction(sig)["meta"]["err"] is None


# -- what a verifier must refuse ------------------------------------------------------------------------------
def violations(tx: VersionedTransaction, user: Pubkey, quote: dict[str, Any]) -> list[str]:
    """What the bot's verifier checks, done here from the quote alone: programs on the allow-list, and every
    SOL or token leaving the user's key or its accounts going to the user's own accounts or the route's vaults."""
    keys = [str(k) for k in tx.message.account_keys]
    found = [f"unknown program {keys[ix.program_id_index]}" for ix in tx.message.instructions
             if keys[ix.program_id_index] not in ALLOWED_PROGRAMS]
    mints = {quote["inputMint"], quote["outputMint"]} | {s["swapInfo"][k] for s in quote["routePlan"]
                                                         for k in ("inputMint", "outputMint")}
    mine = {str(user)} | {ata(user, m, p) for m in mints for p in (TOKENKEG, TOKEN_2022)}
    route = {ata(s["swapInfo"]["ammKey"], m, p) for s in quote["routePlan"] for m in mints for p in (TOKENKEG, TOKEN_2022)}
    for kind, d in instructions(tx):
        if kind in ("sol", "token") and d["from"] in mine and d["to"] not in mine | route:
            found.append(f"{kind} to {d['to']}")
    return found


@pytest.mark.parametrize("malicious", ["pay_stranger_sol", "pay_stranger_token", "unknown_program"])
def test_malicious_builds_pay_a_stranger_or_call_an_unknown_program(box: Box, malicious: str) -> None:
    moon = box.market.by_symbol["MOON"]
    user = box.fund(SOL)
    for quote in (box.quote(WSOL_MINT, moon.mint, SOL // 10), box.quote(WSOL_MINT, box.market.by_symbol["USDX"].mint, SOL // 10)):
        clean = decode(box.swap(quote, user))
        assert violations(clean, user.pubkey(), quote) == []
        box.jup.malicious = malicious
        bad = decode(box.swap(quote, user))
        box.jup.clear()
        found = violations(bad, user.pubkey(), quote)
        assert len(found) == 1, found
        assert found[0].startswith({"pay_stranger_sol": "sol to", "pay_stranger_token": "token to",
                                    "unknown_program": "unknown program"}[malicious])
    sell_quote = box.quote(moon.mint, WSOL_MINT, 10**6)  # a sell: the user's tokens are what a stranger would take
    box.jup.malicious = malicious
    found = violations(decode(box.swap(sell_quote, user)), user.pubkey(), sell_quote)
    assert len(found) == 1, found


# -- the RPC's transaction methods: formats and bad input ----------------------------------------------------
def test_transaction_methods_formats_and_bad_input(box: Box) -> None:
    moon = box.market.by_symbol["MOON"]
    user = box.fund(SOL)
    box.chain.blocks.block_time_s = None
    quote = box.quote(WSOL_MINT, moon.mint, SOL // 20)
    unsigned = decode(box.swap(quote, user))
    raw = base64.b64encode(bytes(unsigned)).decode()

    assert box.error("sendTransaction", raw, {"encoding": "base64"})["code"] == -32003  # not signed by the user
    sim = box.value("simulateTransaction", raw, {"encoding": "base64"})  # simulation needs no signature
    assert sim["err"] is None and sim["unitsConsumed"] > 0 and sim["fee"] > 0 and set(sim) == {
        "err", "logs", "accounts", "unitsConsumed", "loadedAccountsDataSize", "returnData", "innerInstructions",
        "replacementBlockhash", "fee", "preBalances", "postBalances", "preTokenBalances", "postTokenBalances",
        "loadedAddresses"}
    assert box.error("simulateTransaction", raw, {"encoding": "base64", "sigVerify": True})["code"] == -32003
    assert box.error("simulateTransaction", raw, {"encoding": "base64", "sigVerify": True,
                                                  "replaceRecentBlockhash": True})["code"] == -32602
    user_ata = ata(user.pubkey(), moon.mint)
    sim = box.value("simulateTransaction", raw, {"encoding": "base64", "innerInstructions": True,
                                                 "accounts": {"addresses": [user_ata], "encoding": "jsonParsed"}})
    shown = sim["accounts"][0]["data"]["parsed"]["info"]
    assert shown["owner"] == str(user.pubkey()) and int(shown["tokenAmount"]["amount"]) > 0 and sim["innerInstructions"]
    assert box.value("getAccountInfo", user_ata, {"encoding": "base64"}) is None and box.wallet(user.pubkey())[0] == SOL  # nothing changed
    box.chain.blocks.produce(151)
    expired = box.value("simulateTransaction", raw, {"encoding": "base64"})
    assert expired["err"] == "BlockhashNotFound"
    replaced = box.value("simulateTransaction", raw, {"encoding": "base64", "replaceRecentBlockhash": True})
    assert replaced["err"] is None and replaced["replacementBlockhash"]["lastValidBlockHeight"] == box.result("getBlockHeight") + 150

    for params, code in ((["not base64!", {"encoding": "base64"}], -32602), ([raw, {"encoding": "base32"}], -32602),
                         ([base64.b64encode(b"\x01" * 40).decode(), {"encoding": "base64"}], -32602),
                         (["A" * 2000, {"encoding": "base64"}], -32602), ([raw], -32602),  # base64 read as base58
                         ([raw, {"encoding": "base64", "maxRetries": -1}], -32602),
                         ([raw, {"encoding": "base64", "minContextSlot": box.result("getSlot") + 10**6}], -32016)):
        assert box.error("sendTransaction", *params)["code"] == code, params

    tx = sign(decode(box.swap(quote, user)), user)
    sig = box.send(tx)["result"]
    assert box.status(sig)["confirmationStatus"] == "processed"
    assert box.error("sendTransaction", base64.b64encode(bytes(tx)).decode(), {"encoding": "base64"})["data"]["err"] == "AlreadyProcessed"
    assert box.transaction(sig) is None  # not confirmed yet
    box.chain.blocks.produce(1)
    assert box.error("getTransaction", sig, {"commitment": "confirmed"})["code"] == -32015  # v0 needs the version
    assert box.error("getTransaction", sig, {"commitment": "processed", "maxSupportedTransactionVersion": 0})["code"] == -32602
    assert box.result("getTransaction", sig, {"maxSupportedTransactionVersion": 0}) is None  # finalized: 32 blocks
    box.chain.blocks.produce(31)
    finalized = box.result("getTransaction", sig, {"maxSupportedTransactionVersion": 0})
    assert finalized == box.transaction(sig) and box.status(sig)["confirmationStatus"] == "finalized"
    assert set(finalized) == {"slot", "blockTime", "meta", "transaction", "version"}
    assert set(finalized["meta"]) >= {"err", "status", "fee", "preBalances", "postBalances", "preTokenBalances",
                                      "postTokenBalances", "innerInstructions", "logMessages", "loadedAddresses",
                                      "computeUnitsConsumed", "rewards"}
    assert finalized["meta"]["loadedAddresses"] == {"writable": [], "readonly": []}
    message = finalized["transaction"]["message"]
    assert message["accountKeys"] == [str(k) for k in tx.message.account_keys]
    assert message["header"]["numRequiredSignatures"] == 2 and message["addressTableLookups"] == []
    assert finalized["slot"] == box.status(sig)["slot"] <= box.result("getSlot")
    encoded = box.transaction(sig, "base64")["transaction"]
    assert encoded[1] == "base64" and base64.b64decode(encoded[0]) == bytes(tx)
    parsed = box.transaction(sig, "jsonParsed")["transaction"]["message"]
    assert parsed["accountKeys"][0] == {"pubkey": str(user.pubkey()), "writable": True, "signer": True, "source": "transaction"}
    types = [ix.get("parsed", {}).get("type") for ix in parsed["instructions"]]
    assert types == [None, None, "createIdempotent", "transfer", "syncNative", "createIdempotent", "transferChecked",
                     "transferChecked", "closeAccount"]
    pay = parsed["instructions"][6]["parsed"]["info"]
    assert pay["authority"] == str(user.pubkey()) and pay["tokenAmount"]["amount"] == str(SOL // 20)
    assert box.error("getTransaction", "nope", {"commitment": "confirmed"})["code"] == -32602
    assert box.error("requestAirdrop", str(user.pubkey()), 0)["code"] == -32602
    assert box.error("isBlockhashValid", "not-a-hash")["code"] == -32602
    assert box.result("getTransaction", base58.b58encode(bytes(64)).decode(),
                      {"commitment": "confirmed", "maxSupportedTransactionVersion": 0}) is None


# -- blocks and the market --------------------------------------------------------------------------------------
def test_blocks_run_on_wall_time_whatever_the_market_does(box: Box) -> None:
    h0 = box.result("getBlockHeight")
    wait_until(lambda: box.result("getBlockHeight") >= h0 + 3)  # 100 ms blocks
    assert box.result("getSlot") == box.market.slot + box.chain.blocks.produced()
    box.chain.blocks.block_time_s = None  # stopped: only produce() makes blocks
    h1 = box.result("getBlockHeight")
    slot = box.result("getSlot")
    box.market.step_to(box.market.now + 60)  # a simulated minute: slots go by, blocks do not
    assert box.result("getBlockHeight") == h1 and box.result("getSlot") == slot + 120
    assert box.chain.blocks.produce(2) == h1 + 2 and box.result("getSlot") == slot + 122
    with pytest.raises(ValueError):
        box.chain.blocks.block_time_s = 0


def test_a_market_without_live_users_is_unchanged_by_the_chain() -> None:
    alone, followed = Market(seed=7), Market(seed=7)
    chain = Chain(followed, block_time_s=None)
    trades_alone = alone.step_to(alone.now + 1200)
    trades = followed.step_to(followed.now + 1200)
    for t in trades:
        chain.apply_trade(t)
    chain.sync()
    assert trades == trades_alone
    assert [(t.pool, t.holders) for t in followed.tokens.values()] == [(t.pool, t.holders) for t in alone.tokens.values()]
    for t in followed.tokens.values():  # pools are keypairs; their vaults are the ATAs of the pool address
        assert t.pool.address == str(pool_keypair(7, t.symbol).pubkey())
        program = TOKEN_2022 if t.hazards.token2022 else TOKENKEG
        assert (t.pool.base_vault, t.pool.quote_vault) == (ata(t.pool.address, t.mint, program), ata(t.pool.address, t.quote_mint))
