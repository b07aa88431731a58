"""The sandbox chain (LiteSVM) behind its JSON-RPC server, queried over HTTP like mainnet RPC."""

from __future__ import annotations

import base64
import struct
from contextlib import contextmanager
from typing import Any, Iterator

import base58
import httpx
import pytest

from sandbox.chain import LEADER_LAMPORTS, Chain, token_account_address
from sandbox.faults import Faults
from sandbox.market import Hazards, Market, SimToken
from sandbox.rpc import blueprint
from sandbox.server import create_app, server_main
from walltrack.bridge import TrioThread

TOKENKEG = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA"
TOKEN_2022 = "TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb"
EXT_NAMES = {1: "transferFeeConfig", 6: "defaultAccountState", 12: "permanentDelegate", 14: "transferHook",
             2: "transferFeeAmount", 15: "transferHookAccount"}


class Rpc:
    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}/rpc"
        self.http = httpx.Client(timeout=10)
        self._id = 0

    def post(self, body: Any, path: str = "") -> httpx.Response:
        kw = {"content": body} if isinstance(body, bytes) else {"json": body}
        return self.http.post(self.url + path, **kw)  # type: ignore[arg-type]

    def send(self, method: str, *params: Any) -> dict[str, Any]:
        self._id += 1
        r = self.post({"jsonrpc": "2.0", "id": self._id, "method": method, "params": list(params)})
        assert r.status_code == 200
        body = r.json()
        assert body["id"] == self._id and body["jsonrpc"] == "2.0"
        return body

    def call(self, method: str, *params: Any) -> Any:
        body = self.send(method, *params)
        assert "error" not in body, body
        return body["result"]

    def value(self, method: str, *params: Any) -> Any:
        result = self.call(method, *params)
        assert set(result) == {"context", "value"} and set(result["context"]) == {"slot", "apiVersion"}
        return result["value"]

    def error(self, method: str, *params: Any) -> int:
        body = self.send(method, *params)
        assert "result" not in body, body
        return body["error"]["code"]


@contextmanager
def serve(market: Market) -> Iterator[tuple[Chain, Faults, Rpc]]:
    chain, faults = Chain(market, block_time_s=None), Faults()  # blocks only when a test makes them
    thread = TrioThread(server_main(create_app({"rpc": blueprint(chain, faults)})))
    port = thread.start()
    try:
        yield chain, faults, Rpc(port)
    finally:
        thread.stop()


def hazard_market() -> Market:
    market = Market(seed=11)
    # The cast has no transfer hook or default-frozen token, nor one with every hazard at once: add them.
    market._add_token("HOOK", "SOL", Hazards(transfer_hook=True, default_frozen=True), 0.0, 0.01)
    market._add_token("KITC", "SOL", Hazards(mint_authority=True, freeze_authority=True, permanent_delegate=True,
                                             transfer_fee_bps=100), 0.0, 0.01)
    return market


@pytest.fixture(scope="module")
def sandbox() -> Iterator[tuple[Market, Chain, Faults, Rpc]]:
    market = hazard_market()
    with serve(market) as (chain, faults, rpc):
        yield market, chain, faults, rpc


def parsed(rpc: Rpc, address: str) -> dict[str, Any]:
    value = rpc.value("getAccountInfo", address, {"encoding": "jsonParsed", "commitment": "confirmed"})
    assert value is not None, address
    return value


def expected_extensions(t: SimToken) -> list[str]:
    hz = t.hazards
    flags = [(hz.transfer_fee_bps > 0, "transferFeeConfig"), (hz.permanent_delegate, "permanentDelegate"),
             (hz.transfer_hook, "transferHook"), (hz.default_frozen, "defaultAccountState")]
    return [name for on, name in flags if on]


def test_every_mint_shows_its_authorities_and_extensions(sandbox: tuple[Market, Chain, Faults, Rpc]) -> None:
    market, _, _, rpc = sandbox
    seen: set[str] = set()
    for t in market.tokens.values():
        hz = t.hazards
        account = parsed(rpc, t.mint)
        info = account["data"]["parsed"]["info"]
        assert account["data"]["parsed"]["type"] == "mint"
        assert account["owner"] == (TOKEN_2022 if hz.token2022 else TOKENKEG)
        assert account["data"]["program"] == ("spl-token-2022" if hz.token2022 else "spl-token")
        assert account["data"]["space"] == account["space"] == (82 if not hz.token2022 else account["space"])
        assert info["supply"] == str(t.supply) and info["decimals"] == t.decimals and info["isInitialized"] is True
        assert info["mintAuthority"] == (t.creator if hz.mint_authority else None)
        assert info["freezeAuthority"] == (t.creator if hz.freeze_authority or hz.default_frozen else None)
        exts = {e["extension"]: e.get("state") for e in info.get("extensions", [])}
        assert [e["extension"] for e in info.get("extensions", [])] == expected_extensions(t)
        if hz.permanent_delegate:
            assert exts["permanentDelegate"] == {"delegate": t.creator}
        if hz.transfer_fee_bps:
            fee = exts["transferFeeConfig"]
            assert fee["newerTransferFee"]["transferFeeBasisPoints"] == hz.transfer_fee_bps
            assert fee["olderTransferFee"]["transferFeeBasisPoints"] == hz.transfer_fee_bps
            assert fee["transferFeeConfigAuthority"] == t.creator and fee["withheldAmount"] == 0
        if hz.transfer_hook:
            assert exts["transferHook"]["authority"] == t.creator and exts["transferHook"]["programId"]
        if hz.default_frozen:
            assert exts["defaultAccountState"] == {"accountState": "frozen"}
        if not hz.names():
            assert "extensions" not in info and account["space"] == 82
        seen.update(hz.names() or ["clean"])
    assert {"clean", "mint_authority", "freeze_authority", "permanent_delegate", "transfer_fee", "transfer_hook",
            "default_frozen"} <= seen


def decode_mint(raw: bytes) -> dict[str, Any]:
    """The SPL mint layout, decoded independently of the server."""
    auth_tag, auth, supply, decimals, init, freeze_tag, freeze = struct.unpack_from("<I32sQBBI32s", raw)
    key = lambda tag, k: base58.b58encode(k).decode() if tag else None  # noqa: E731
    return {"mintAuthority": key(auth_tag, auth), "supply": str(supply), "decimals": decimals,
            "isInitialized": bool(init), "freezeAuthority": key(freeze_tag, freeze)}


def tlv(raw: bytes) -> dict[int, bytes]:
    """Token-2022 extensions (type -> value) after the account type byte, in order."""
    out, i = {}, 166
    while i + 4 <= len(raw) and (kind := struct.unpack_from("<H", raw, i)[0]):
        length = struct.unpack_from("<H", raw, i + 2)[0]
        out[kind] = raw[i + 4:i + 4 + length]
        i += 4 + length
    return out


def test_base64_bytes_decode_to_what_json_parsed_reports(sandbox: tuple[Market, Chain, Faults, Rpc]) -> None:
    market, _, _, rpc = sandbox
    for t in market.tokens.values():
        addresses = [t.mint, t.pool.base_vault, token_account_address(t.creator, t.mint)]
        raws = rpc.value("getMultipleAccounts", addresses, {"encoding": "base64"})
        views = rpc.value("getMultipleAccounts", addresses, {"encoding": "jsonParsed"})
        blobs = []
        for raw, view in zip(raws, views):
            assert raw["data"][1] == "base64" and raw["owner"] == view["owner"]
            blob = base64.b64decode(raw["data"][0])
            assert len(blob) == raw["space"] == view["data"]["space"]
            blobs.append(blob)
        mint_blob, vault_blob, creator_blob = blobs
        mint_info = views[0]["data"]["parsed"]["info"]
        assert decode_mint(mint_blob) == {k: v for k, v in mint_info.items() if k != "extensions"}
        assert [EXT_NAMES[k] for k in tlv(mint_blob)] == [e["extension"] for e in mint_info.get("extensions", [])]
        if len(mint_blob) > 82:
            assert mint_blob[82:165] == bytes(83) and mint_blob[165] == 1  # padding, then AccountType::Mint
        if t.hazards.transfer_fee_bps:  # TransferFeeConfig: .. newer_transfer_fee {epoch, maximum_fee, bps}
            assert struct.unpack_from("<H", tlv(mint_blob)[1], 106)[0] == t.hazards.transfer_fee_bps
        if t.hazards.permanent_delegate:
            assert base58.b58encode(tlv(mint_blob)[12]).decode() == t.creator
        for blob, view in ((vault_blob, views[1]), (creator_blob, views[2])):
            info = view["data"]["parsed"]["info"]
            mint, owner, amount = struct.unpack_from("<32s32sQ", blob)
            assert base58.b58encode(mint).decode() == info["mint"] == t.mint
            assert base58.b58encode(owner).decode() == info["owner"]
            assert str(amount) == info["tokenAmount"]["amount"]
            assert ["uninitialized", "initialized", "frozen"][blob[108]] == info["state"] == "initialized"
            assert [EXT_NAMES[k] for k in tlv(blob)] == [e["extension"] for e in info.get("extensions", [])]
            if len(blob) > 165:
                assert blob[165] == 2  # AccountType::Account
        assert views[1]["data"]["parsed"]["info"]["owner"] == t.pool.address
        assert views[1]["data"]["parsed"]["info"]["tokenAmount"]["amount"] == str(t.pool.base_reserve)


def test_largest_accounts_of_a_concentrated_token(sandbox: tuple[Market, Chain, Faults, Rpc]) -> None:
    market, _, _, rpc = sandbox
    whal = next(t for t in market.tokens.values() if t.hazards.concentrated)
    largest = rpc.value("getTokenLargestAccounts", whal.mint)
    amounts = [int(a["amount"]) for a in largest]
    assert 0 < len(largest) <= 20 and amounts == sorted(amounts, reverse=True)
    assert all(set(a) == {"address", "amount", "decimals", "uiAmount", "uiAmountString"} for a in largest)
    assert all(a["decimals"] == whal.decimals and a["uiAmount"] == int(a["amount"]) / 10**whal.decimals
               for a in largest)
    assert sum(amounts[:3]) > whal.supply // 2  # a few accounts own most of the supply
    addresses = [a["address"] for a in largest]
    assert whal.pool.base_vault in addresses[:3]

    accounts = rpc.value("getMultipleAccounts", addresses, {"encoding": "jsonParsed"})
    infos = [a["data"]["parsed"]["info"] for a in accounts]
    assert all(i["mint"] == whal.mint for i in infos)
    assert [i["tokenAmount"]["amount"] for i in infos] == [a["amount"] for a in largest]
    owners = {i["owner"] for i in infos}
    assert whal.pool.address in owners and whal.creator in owners and set(whal.holders) <= owners

    clean = market.by_symbol["MOON"]
    spread = rpc.value("getTokenLargestAccounts", clean.mint)
    assert len(spread) == 20  # 40 holders, the creator and the vault: capped at 20
    assert spread[0]["address"] == clean.pool.base_vault
    assert int(spread[1]["amount"]) < clean.supply // 20  # no single holder outside the pool owns 5%


def test_token_accounts_by_owner_filters(sandbox: tuple[Market, Chain, Faults, Rpc]) -> None:
    market, _, _, rpc = sandbox
    tfee, hook = market.by_symbol["TFEE"], market.by_symbol["HOOK"]
    owner = next(iter(tfee.holders))
    assert rpc.value("getTokenAccountsByOwner", owner, {"programId": TOKENKEG}, {"encoding": "jsonParsed"}) == []
    by_program = rpc.value("getTokenAccountsByOwner", owner, {"programId": TOKEN_2022}, {"encoding": "jsonParsed"})
    by_mint = rpc.value("getTokenAccountsByOwner", owner, {"mint": tfee.mint}, {"encoding": "jsonParsed"})
    assert by_program == by_mint and [a["pubkey"] for a in by_mint] == [token_account_address(owner, tfee.mint)]
    assert set(by_mint[0]) == {"pubkey", "account"}
    assert set(by_mint[0]["account"]) == {"data", "executable", "lamports", "owner", "rentEpoch", "space"}
    assert set(by_mint[0]["account"]["data"]) == {"program", "parsed", "space"}
    info = by_mint[0]["account"]["data"]["parsed"]["info"]
    assert set(info) == {"isNative", "mint", "owner", "state", "tokenAmount", "extensions"}
    assert info["tokenAmount"]["amount"] == str(tfee.holders[owner]) and info["isNative"] is False
    assert info["extensions"] == [{"extension": "transferFeeAmount", "state": {"withheldAmount": 0}}]

    hook_owner = next(iter(hook.holders))
    [acc] = rpc.value("getTokenAccountsByOwner", hook_owner, {"mint": hook.mint}, {"encoding": "jsonParsed"})
    info = acc["account"]["data"]["parsed"]["info"]
    assert info["state"] == "initialized"  # thawed by the sandbox after DefaultAccountState froze it
    assert info["extensions"] == [{"extension": "transferHookAccount", "state": {"transferring": False}}]

    pool_accounts = rpc.value("getTokenAccountsByOwner", tfee.pool.address, {"mint": tfee.mint}, {"encoding": "base64"})
    assert [a["pubkey"] for a in pool_accounts] == [tfee.pool.base_vault]


def test_slot_blockhash_balance_and_missing_accounts(sandbox: tuple[Market, Chain, Faults, Rpc]) -> None:
    market, _, _, rpc = sandbox
    chain = sandbox[1]
    result = rpc.call("getLatestBlockhash", {"commitment": "finalized"})
    assert result["context"]["slot"] == market.slot + chain.blocks.produced() and result["context"]["apiVersion"]
    assert set(result["value"]) == {"blockhash", "lastValidBlockHeight"}
    assert len(base58.b58decode(result["value"]["blockhash"])) == 32
    height = rpc.call("getBlockHeight")
    assert result["value"]["lastValidBlockHeight"] == height + 150
    assert height < market.slot - 10_000_000  # a block height is not a slot: mainnet's trails by millions
    assert rpc.call("getSlot") == market.slot + chain.blocks.produced()
    chain.blocks.produce(3)  # each block has its own blockhash; an older one stays valid for 150 blocks
    newer = rpc.value("getLatestBlockhash")
    assert newer["blockhash"] != result["value"]["blockhash"] and newer["lastValidBlockHeight"] == height + 153
    assert rpc.value("isBlockhashValid", result["value"]["blockhash"]) is True
    assert rpc.call("getSlot") == market.slot + chain.blocks.produced()
    leader = market.leaders[0].address
    assert rpc.value("getBalance", leader) == LEADER_LAMPORTS
    system = rpc.value("getAccountInfo", leader, {"encoding": "jsonParsed"})
    assert system["owner"] == "11111111111111111111111111111111" and system["data"] == ["", "base64"]
    nobody = base58.b58encode(bytes(range(32))).decode()
    assert rpc.value("getAccountInfo", nobody, {"encoding": "jsonParsed"}) is None
    assert rpc.value("getBalance", nobody) == 0
    assert rpc.value("getMultipleAccounts", [nobody, leader])[0] is None
    # base58 works for a mint (82 bytes) and agrees with base64
    mint = market.by_symbol["MOON"].mint
    b58 = rpc.value("getAccountInfo", mint, {"encoding": "base58"})["data"]
    b64 = rpc.value("getAccountInfo", mint, {"encoding": "base64"})["data"]
    assert b58[1] == "base58" and base58.b58decode(b58[0]) == base64.b64decode(b64[0])


def test_balances_and_statuses_follow_the_market() -> None:
    market = Market(seed=7)
    with serve(market) as (chain, _, rpc):
        trades = market.step_to(market.now + 700)  # the leaders trade; RUGR's dev rugs its first leader at 646 s
        rugr = market.by_symbol["RUGR"]
        assert trades and rugr.rugged
        first = next(t for t in trades if t.side == "buy")
        assert rpc.value("getAccountInfo", first.token_account, {"encoding": "jsonParsed"}) is None

        for trade in trades:
            chain.apply_trade(trade)
        chain.sync_token(rugr.mint)

        for trade in trades:
            leader = next(ld for ld in market.leaders if ld.address == trade.leader)
            [acc] = rpc.value("getTokenAccountsByOwner", trade.leader, {"mint": trade.mint}, {"encoding": "jsonParsed"})
            assert acc["pubkey"] == trade.token_account
            assert acc["account"]["data"]["parsed"]["info"]["tokenAmount"]["amount"] == str(leader.holdings.get(trade.mint, 0))
            vault = parsed(rpc, trade.base_vault)["data"]["parsed"]["info"]["tokenAmount"]["amount"]
            assert vault == str(market.tokens[trade.mint].pool.base_reserve)
        for leader in market.leaders:
            spent = sum(t.quote_amount * (1 if t.side == "sell" else -1) for t in trades
                        if t.leader == leader.address and t.quote_mint == "So11111111111111111111111111111111111111112")
            assert rpc.value("getBalance", leader.address) == LEADER_LAMPORTS + spent

        creator = parsed(rpc, token_account_address(rugr.creator, rugr.mint))["data"]["parsed"]["info"]
        assert creator["tokenAmount"] == {"amount": "0", "decimals": 6, "uiAmount": 0.0, "uiAmountString": "0"}
        assert parsed(rpc, rugr.pool.base_vault)["data"]["parsed"]["info"]["tokenAmount"]["amount"] == str(rugr.pool.base_reserve)

        unknown = base58.b58encode(bytes(64)).decode()
        sigs = [t.signature for t in trades] + [unknown]
        # Statuses count in blocks since the chain applied the trades (all in this block): processed, then
        # confirmed one block later, finalized 32 blocks later, then out of the recent cache after 300.
        for blocks, expected, confirmations in ((0, "processed", 0), (1, "confirmed", 1), (31, "finalized", None)):
            chain.blocks.produce(blocks)
            statuses = rpc.value("getSignatureStatuses", sigs)
            assert statuses[-1] is None
            for trade, status in zip(trades, statuses):
                assert set(status) == {"slot", "confirmations", "err", "status", "confirmationStatus"}
                assert status["slot"] == trade.slot and status["err"] is None and status["status"] == {"Ok": None}
                assert (status["confirmationStatus"], status["confirmations"]) == (expected, confirmations)

        chain.blocks.produce(300)  # out of the recent status cache; still found in the history
        assert rpc.value("getSignatureStatuses", sigs[:1]) == [None]
        [old] = rpc.value("getSignatureStatuses", sigs[:1], {"searchTransactionHistory": True})
        assert old["confirmationStatus"] == "finalized" and old["confirmations"] is None
        assert rpc.call("getLatestBlockhash")["context"]["slot"] == market.slot + chain.blocks.produced()


def test_a_chain_built_late_and_synced_matches_the_market() -> None:
    market = Market(seed=3)
    market.step_to(market.now + 400)  # leaders already hold tokens when the chain is built
    with serve(market) as (chain, _, rpc):
        def check() -> None:
            held = [(ld.address, mint, n) for ld in market.leaders for mint, n in ld.holdings.items()]
            assert held
            for owner, mint, amount in held:
                [acc] = rpc.value("getTokenAccountsByOwner", owner, {"mint": mint}, {"encoding": "jsonParsed"})
                assert acc["account"]["data"]["parsed"]["info"]["tokenAmount"]["amount"] == str(amount)
            for t in market.tokens.values():
                [vault] = rpc.value("getTokenAccountsByOwner", t.pool.address, {"mint": t.mint}, {"encoding": "jsonParsed"})
                assert vault["account"]["data"]["parsed"]["info"]["tokenAmount"]["amount"] == str(t.pool.base_reserve)
                assert parsed(rpc, t.mint)["data"]["parsed"]["info"]["supply"] == str(t.supply)

        check()
        market.step_to(market.now + 900)  # more trades and the rug, applied in one catch-up
        chain.sync()
        check()
        rugr = market.by_symbol["RUGR"]
        creator = rpc.value("getTokenAccountsByOwner", rugr.creator, {"mint": rugr.mint}, {"encoding": "jsonParsed"})
        assert rugr.rugged and creator[0]["account"]["data"]["parsed"]["info"]["tokenAmount"]["amount"] == "0"


def test_bad_input_gets_json_rpc_errors(sandbox: tuple[Market, Chain, Faults, Rpc]) -> None:
    market, _, _, rpc = sandbox
    whal, leader = market.by_symbol["WHAL"], market.leaders[0].address
    r = rpc.post(b"{not json")
    assert r.status_code == 200 and r.json()["error"]["code"] == -32700 and r.json()["id"] is None
    assert rpc.error("getMagic", whal.mint) == -32601
    assert rpc.error("getAccountInfo", "not-a-pubkey!") == -32602
    assert rpc.error("getAccountInfo", 42) == -32602
    assert rpc.error("getAccountInfo") == -32602
    assert rpc.error("getAccountInfo", whal.mint, "jsonParsed") == -32602
    assert rpc.error("getAccountInfo", whal.mint, {"encoding": "base64+zstd"}) == -32602
    assert rpc.error("getAccountInfo", whal.pool.base_vault, {"encoding": "base58"}) == -32602  # 165 > 128 bytes
    assert rpc.error("getTokenLargestAccounts", leader) == -32602  # not a mint
    assert rpc.error("getTokenAccountsByOwner", leader, {}) == -32602
    assert rpc.error("getTokenAccountsByOwner", leader, {"programId": leader}) == -32602
    assert rpc.error("getTokenAccountsByOwner", leader, {"mint": leader}) == -32602
    assert rpc.error("getMultipleAccounts", [whal.mint] * 101) == -32602
    assert rpc.error("getMultipleAccounts", whal.mint) == -32602
    assert rpc.error("getSignatureStatuses", ["xyz"]) == -32602
    r = rpc.post({"jsonrpc": "2.0", "id": 9, "method": "getAccountInfo", "params": {"pubkey": whal.mint}})
    assert r.json() == {"jsonrpc": "2.0", "error": r.json()["error"], "id": 9} and r.json()["error"]["code"] == -32602
    assert rpc.post({"id": 1, "method": "getSlot"}).json()["error"]["code"] == -32600  # no "jsonrpc": "2.0"
    assert rpc.post([]).json()["error"]["code"] == -32600

    batch = rpc.post([{"jsonrpc": "2.0", "id": 1, "method": "getBalance", "params": [leader]},
                      {"jsonrpc": "2.0", "id": "b", "method": "nope"}, "garbage",
                      {"jsonrpc": "2.0", "id": 3, "method": "getAccountInfo", "params": [whal.mint, {"encoding": "jsonParsed"}]}],
                     path="/")
    assert batch.status_code == 200
    one, two, three, four = batch.json()
    assert one["id"] == 1 and one["result"]["value"] == LEADER_LAMPORTS
    assert two == {"jsonrpc": "2.0", "error": {"code": -32601, "message": "Method not found"}, "id": "b"}
    assert three["error"]["code"] == -32600 and three["id"] is None
    assert four["id"] == 3 and four["result"]["value"]["data"]["parsed"]["info"]["supply"] == str(whal.supply)


def test_faults_apply_to_rpc(sandbox: tuple[Market, Chain, Faults, Rpc]) -> None:
    _, _, faults, rpc = sandbox
    before = faults.requests
    try:
        faults.error_status = 503
        assert rpc.post({"jsonrpc": "2.0", "id": 1, "method": "getSlot"}).status_code == 503
        faults.error_status = None
        faults.rate_limited = True
        r = rpc.post({"jsonrpc": "2.0", "id": 1, "method": "getSlot"})
        assert r.status_code == 429 and r.headers["Retry-After"] == str(faults.retry_after_s)
    finally:
        faults.clear()
    assert isinstance(rpc.call("getSlot"), int)
    assert faults.requests == before + 3
