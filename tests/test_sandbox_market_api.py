"""The sandbox's Jupiter and DexScreener speak the real wire formats: the client code that parses the
real captured payloads (tests/fixtures, from shared/fixtures) parses the sandbox's answers, and the
sandbox's answers carry the same fields with the same JSON types. Quotes: no route for a honeypot's
sell, a route with price impact for a thin pool; swaps build a VersionedTransaction the user is left to sign."""

from __future__ import annotations

import base64
from decimal import Decimal
from typing import Any

import httpx
import pytest
from solders.message import to_bytes_versioned
from solders.transaction import VersionedTransaction

from sandbox.jupiter import DEX_LABELS
from sandbox.market import WSOL_MINT
from tests.conftest import fixture
from tests.test_prices import Sandbox, dexscreener, jupiter, sandbox, unknown_mint  # noqa: F401 - the fixture
from adapters.dexscreener import DexPair, best_pair, parse_pairs
from adapters.http import BadResponse, BreakerState, RequestRejected
from adapters.jupiter import NoRoute, parse_prices, parse_quote, parse_swap

# Pair fields API-FORMATS §3 documents as nullable
PAIR_NULLABLE = frozenset({"labels", "priceUsd", "fdv", "marketCap", "pairCreatedAt", "liquidity"})
USER = "BQ72nSv9f3PRyRKCBnHLVrerrv37CYTHm5h3s9VSGQDV"  # the userPublicKey of the real swap request fixture


def json_types(value: Any) -> Any:
    """The JSON type skeleton of a value: dict keys with their types, one element of a list."""
    if isinstance(value, dict):
        return {k: json_types(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_types(value[0])] if value else []
    if isinstance(value, bool) or value is None:
        return type(value).__name__
    if isinstance(value, (int, float)):
        return "number"
    return type(value).__name__


def assert_same_shape(real: Any, ours: Any, path: str = "$", optional: frozenset[str] = frozenset(),
                      nullable: frozenset[str] = frozenset()) -> None:
    """Every field of the real payload is in ours, with the same JSON type (recursively). Fields named in
    `optional` may be absent; those in `nullable` may be null (as the API documents them)."""
    if ours is None and path.rsplit(".", 1)[-1] in nullable:
        return
    if isinstance(real, dict):
        assert isinstance(ours, dict), f"{path}: expected an object"
        for key, value in real.items():
            if key in optional:
                continue
            assert key in ours, f"{path}.{key} missing"
            assert_same_shape(value, ours[key], f"{path}.{key}", optional, nullable)
    elif isinstance(real, list):
        assert isinstance(ours, list), f"{path}: expected an array"
        if real and ours:
            assert_same_shape(real[0], ours[0], f"{path}[0]", optional, nullable)
    elif real is not None and ours is not None:
        assert json_types(real) == json_types(ours), f"{path}: {json_types(real)} vs {json_types(ours)}"


# -- the real fixtures parse with the client code -------------------------------------------------------
def test_real_jupiter_fixtures_parse() -> None:
    prices = parse_prices(fixture("jupiter_price_v3.json"))
    assert prices[WSOL_MINT].usd_price == Decimal("147.48") and prices[WSOL_MINT].liquidity == Decimal("621679197.67")
    guide = parse_prices(fixture("jupiter_price_v3_docs_guide.json"))  # older shape: no createdAt/liquidity
    assert guide[WSOL_MINT].created_at is None and guide[WSOL_MINT].decimals == 9

    q = parse_quote(fixture("jupiter_quote.json"))
    assert (q.in_amount, q.out_amount, q.other_amount_threshold) == (100_000_000, 16_198_753, 16_117_760)
    assert q.labels == ("Meteora DLMM",) and q.price_impact == 0 and q.raw == fixture("jupiter_quote.json")
    q2 = parse_quote(fixture("jupiter_quote_openapi.json"))
    assert q2.route_plan[0].swap_info.fee_amount == 1285 and q2.price_impact == Decimal("0.0001")

    s = parse_swap(fixture("jupiter_swap.json"))
    assert s.last_valid_block_height == 279632475 and s.simulation_error is None
    with pytest.raises(BadResponse):  # the docs' swapTransaction is truncated: refused, not a crash
        s.transaction()
    assert parse_swap(fixture("jupiter_swap_openapi.json")).compute_unit_limit is None


def test_price_parsing_drops_bad_entries_never_reads_zero() -> None:
    body = fixture("jupiter_price_v3.json")
    body["A"] = {"usdPrice": 0, "decimals": 6}
    body["B"] = {"usdPrice": "not a number"}
    body["C"] = {"decimals": 6}
    body["D"] = None
    assert set(parse_prices(body)) == {WSOL_MINT, "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"}
    for wrong in ([], "x", 3):
        with pytest.raises(BadResponse):
            parse_prices(wrong)
    with pytest.raises(ValueError):  # amounts must be raw integers, not decimals
        parse_quote({**fixture("jupiter_quote.json"), "outAmount": "16198753.5"})


def test_real_dexscreener_fixture_parses_and_best_pair_is_chosen_deliberately() -> None:
    raw = fixture("dexscreener_tokens_v1.json")
    jojo = raw[0]["baseToken"]["address"]
    (pair,) = parse_pairs(raw)
    assert pair.price_usd == Decimal("0.00001499") and pair.price_native == Decimal("0.0000001113")
    assert pair.base_token.symbol == "JOJO" and pair.labels == ("CPMM",) and pair.pair_created_at == 1744919973000
    assert pair.price_change == {"h6": Decimal("31.43"), "h24": Decimal("31.43")}  # keys can be missing
    assert [(s.kind, s.url) for s in pair.info.socials] == [("twitter", "https://x.com/jojomemesol"),
                                                            ("telegram", "https://t.me/solanajojomeme")]
    # the docs' socials shape is accepted too
    docs_shape = {**raw[0], "info": {"socials": [{"platform": "twitter", "handle": "jojomemesol"}]}}
    (p2,) = parse_pairs([docs_shape])
    assert (p2.info.socials[0].kind, p2.info.socials[0].handle) == ("twitter", "jojomemesol")

    deeper = {**raw[0], "pairAddress": "deeper", "priceUsd": "0.00002", "liquidity": {"usd": 5000.0}}
    as_quote = {**raw[0], "pairAddress": "quoted", "liquidity": {"usd": 9e9},
                "baseToken": {"address": WSOL_MINT, "name": "Wrapped SOL", "symbol": "SOL"},
                "quoteToken": {"address": jojo, "name": "JOJO", "symbol": "JOJO"}}
    no_price = {**raw[0], "pairAddress": "unpriced", "priceUsd": None, "liquidity": {"usd": 8e9}}
    broken = {"chainId": "solana"}
    pairs = parse_pairs([raw[0], as_quote, deeper, no_price, broken])
    assert len(pairs) == 4  # the broken pair is skipped, not fatal
    chosen = best_pair(pairs, jojo)
    assert isinstance(chosen, DexPair) and chosen.pair_address == "deeper"
    assert best_pair(pairs, "someone-else") is None
    assert parse_pairs({"schemaVersion": "1.0.0", "pairs": raw})[0].pair_address == raw[0]["pairAddress"]
    with pytest.raises(BadResponse):
        parse_pairs({"unexpected": True})


# -- the sandbox serves the same shapes ------------------------------------------------------------------
@pytest.mark.trio
async def test_sandbox_payloads_have_the_real_fields_and_types(sandbox: Sandbox) -> None:
    moon, usdx = sandbox.mint("MOON"), sandbox.mint("USDX")
    async with httpx.AsyncClient() as http:
        prices = (await http.get(f"{sandbox.url('jupiter')}/price/v3", params={"ids": f"{moon},{WSOL_MINT}"})).json()
        real = fixture("jupiter_price_v3.json")[WSOL_MINT]
        for mint in (moon, WSOL_MINT):
            assert set(prices[mint]) == set(real)
            assert_same_shape(real, prices[mint])
        assert set(parse_prices(prices)) == {moon, WSOL_MINT}

        quote = (await http.get(f"{sandbox.url('jupiter')}/swap/v1/quote", params={
            "inputMint": WSOL_MINT, "outputMint": moon, "amount": "100000000", "slippageBps": "50"})).json()
        assert_same_shape(fixture("jupiter_quote_openapi.json"), quote, optional=frozenset({"platformFee"}))
        assert_same_shape(fixture("jupiter_quote.json"), quote, optional=frozenset({"mostReliableAmmsQuoteReport"}))
        assert quote["platformFee"] is None and isinstance(quote["priceImpactPct"], str)
        parse_quote(quote)

        request_body = {**fixture("jupiter_swap_request.json"), "quoteResponse": quote}
        swap = (await http.post(f"{sandbox.url('jupiter')}/swap/v1/swap", json=request_body)).json()
        assert_same_shape(fixture("jupiter_swap.json"), swap, optional=frozenset({"dynamicSlippageReport"}))
        parse_swap(swap).transaction()

        pairs = (await http.get(f"{sandbox.url('dexscreener')}/tokens/v1/solana/{moon},{usdx}")).json()
        assert isinstance(pairs, list) and len(pairs) == 2
        real_pair = fixture("dexscreener_tokens_v1.json")[0]
        for p in pairs:
            assert set(real_pair) <= set(p)
            assert_same_shape(real_pair, p, nullable=PAIR_NULLABLE)
            assert p["pairCreatedAt"] > 10**12  # milliseconds
        assert [p.base_token.address for p in parse_pairs(pairs)] == [moon, usdx]
        assert {p["quoteToken"]["symbol"] for p in pairs} == {"SOL", "USDC"}


@pytest.mark.trio
async def test_sandbox_omits_missing_and_unknown_and_answers_quote_assets_as_quote(sandbox: Sandbox) -> None:
    moon, stdy = sandbox.mint("MOON"), sandbox.mint("STDY")
    sandbox.jupiter.missing = {moon}
    sandbox.dexscreener.missing = {moon}
    async with httpx.AsyncClient() as http:
        prices = (await http.get(f"{sandbox.url('jupiter')}/price/v3",
                                 params={"ids": f"{moon},{stdy},{unknown_mint(0)}"})).json()
        assert list(prices) == [stdy]
        pairs = (await http.get(f"{sandbox.url('dexscreener')}/tokens/v1/solana/{moon},{stdy},{unknown_mint(0)}")).json()
        assert [p["baseToken"]["address"] for p in pairs] == [stdy]
        # asking for WSOL returns pairs where WSOL is the quote token: the client must not price WSOL from them
        sol_pairs = (await http.get(f"{sandbox.url('dexscreener')}/tokens/v1/solana/{WSOL_MINT}")).json()
        assert sol_pairs and all(p["quoteToken"]["address"] == WSOL_MINT for p in sol_pairs)
    async with dexscreener(sandbox) as dex:
        assert await dex.usd_prices([WSOL_MINT, stdy]) == {stdy: (await dex.usd_prices([stdy]))[stdy]}


# -- (6) quotes: no route for a honeypot's sell, price impact on a thin pool ------------------------------
@pytest.mark.trio
async def test_quote_no_route_for_honeypot_sell_and_impact_on_thin_pool(sandbox: Sandbox) -> None:
    hony, thin, moon = sandbox.mint("HONY"), sandbox.mint("THIN"), sandbox.mint("MOON")
    async with httpx.AsyncClient() as http:
        r = await http.get(f"{sandbox.url('jupiter')}/swap/v1/quote",
                           params={"inputMint": hony, "outputMint": WSOL_MINT, "amount": "1000000000"})
        assert r.status_code == 400 and r.json()["errorCode"] == "COULD_NOT_FIND_ANY_ROUTE" and r.json()["error"]
    async with jupiter(sandbox, attempts=3, failure_threshold=1) as jup:
        with pytest.raises(NoRoute):
            await jup.quote(hony, WSOL_MINT, 1_000_000_000)
        with pytest.raises(NoRoute):
            await jup.quote(WSOL_MINT, unknown_mint(3), 1_000_000)
        assert jup.provider.breaker is BreakerState.CLOSED  # a domain answer, not ill health; not retried
        assert sandbox.jupiter.requests == 3

        buy = await jup.quote(WSOL_MINT, hony, 100_000_000)  # buying a honeypot routes fine
        assert buy.out_amount > 0

        sol = 100_000_000  # 0.1 SOL
        thin_q = await jup.quote(WSOL_MINT, thin, sol, slippage_bps=100)
        deep_q = await jup.quote(WSOL_MINT, moon, sol, slippage_bps=100)
        # a $600 pool: a 0.1 SOL ($15) buy moves it by several percent; a deep pool barely moves past its
        # 0.25 % fee (the market counts the fee in the impact)
        assert thin_q.price_impact > Decimal("0.03")
        assert deep_q.price_impact < Decimal("0.005")
        assert thin_q.price_impact_percent == thin_q.price_impact * 100
        assert thin_q.other_amount_threshold == thin_q.out_amount * 9900 // 10000
        step = thin_q.route_plan[0].swap_info
        token = sandbox.market.by_symbol["THIN"]
        assert (step.amm_key, step.label) == (token.pool.address, DEX_LABELS[token.pool.dex])
        assert (step.in_amount, step.out_amount) == (sol, thin_q.out_amount)
        assert thin_q.out_amount == token.swap_out(sol, buy=True)

        sell = await jup.quote(thin, WSOL_MINT, thin_q.out_amount)  # and a clean token sells back
        assert 0 < sell.out_amount < sol


@pytest.mark.trio
async def test_swap_builds_a_transaction_for_the_user_to_sign_and_validates_the_body(sandbox: Sandbox) -> None:
    moon = sandbox.mint("MOON")
    async with jupiter(sandbox, attempts=3) as jup:
        quote = await jup.quote(WSOL_MINT, moon, 50_000_000)
        built = await jup.build_swap(quote, USER, prioritization_fee_lamports={"jitoTipLamports": 12345})
        assert built.prioritization_fee_lamports == 12345
        assert built.last_valid_block_height > 0
        # USER has no SOL on the sandbox chain: the transaction is built, and its simulation says why it would fail
        assert built.simulation_error["errorCode"] == "INSUFFICIENT_FUNDS" and built.simulation_error["error"]
        tx = built.transaction()
        assert isinstance(tx, VersionedTransaction)
        assert str(tx.message.account_keys[0]) == USER  # the user pays
        assert bytes(tx.signatures[0]) == bytes(64)  # the user's signature is left to add
        pool = sandbox.market.by_symbol["MOON"].pool.address
        signers = [str(k) for k in tx.message.account_keys[:tx.message.header.num_required_signatures]]
        assert signers == [USER, pool]  # ... the pool's is there already
        assert tx.signatures[1].verify(tx.message.account_keys[1], to_bytes_versioned(tx.message))
        assert bytes(tx) == base64.b64decode(built.swap_transaction)

        seen = sandbox.jupiter.requests
        with pytest.raises(RequestRejected) as err:
            await jup._http.post("/swap/v1/swap", json={"userPublicKey": USER})  # no quoteResponse
        assert err.value.status == 400 and not isinstance(err.value, NoRoute)
        with pytest.raises(RequestRejected):
            await jup._http.post("/swap/v1/swap", json={"quoteResponse": quote.raw, "userPublicKey": "nope"})
        assert sandbox.jupiter.requests == seen + 2  # 4xx are not retried
        assert jup.provider.breaker is BreakerState.CLOSED
