"""The sandbox's operations side, in the real wire formats: RPC `getSignaturesForAddress` / `getBlockTime` over
the leaders' trades, Helius' webhook and parse-transactions APIs, the fake Telegram; and `/metrics`' access rule."""

from __future__ import annotations

import json
import random
from typing import Any, Iterator

import httpx
import pytest

from gateway.app import metrics_refusal
from sandbox import helius_api, rpc, telegram
from sandbox.chain import Chain
from sandbox.faults import FaultBoard
from sandbox.helius import HeliusPoster, choose_shape, enhanced_tx, shape_rng
from sandbox.market import Market, signature
from sandbox.server import create_app, server_main
from walltrack.bridge import TrioThread

KEY = "sandbox-key"


class Box:
    def __init__(self) -> None:
        self.market = Market(seed=11)
        self.chain = Chain(self.market)
        self.webhooks = helius_api.WebhookRegistry()
        self.recorder = telegram.Recorder()
        faults = FaultBoard()
        app = create_app({"rpc": rpc.blueprint(self.chain, faults["rpc"]),
                          "helius": helius_api.blueprint(self.chain, self.webhooks, KEY, faults["helius_api"], seed=11),
                          "telegram": telegram.telegram_blueprint(self.recorder, faults["telegram"])})
        self.thread = TrioThread(server_main(app), name="sandbox-ops")
        self.base = f"http://127.0.0.1:{self.thread.start()}"
        self.trades = []
        while len(self.trades) < 12:  # the market trades; the chain follows it
            for t in self.market.step_to(self.market.now + 30):
                self.chain.apply_trade(t)
                self.trades.append(t)

    def rpc(self, method: str, *params: Any) -> Any:
        body = httpx.post(f"{self.base}/rpc", json={"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)},
                          timeout=10).json()
        return body.get("result", body.get("error"))


@pytest.fixture(scope="module")
def box() -> Iterator[Box]:
    b = Box()
    yield b
    b.thread.stop()


def test_signatures_for_address_are_the_leaders_trades_newest_first(box: Box) -> None:
    leader = box.trades[0].leader
    mine = [t for t in box.trades if t.leader == leader]
    got = box.rpc("getSignaturesForAddress", leader)
    assert [e["signature"] for e in got] == [t.signature for t in reversed(mine)]
    first = got[0]
    assert set(first) == {"signature", "slot", "err", "memo", "blockTime", "confirmationStatus"}
    assert first["err"] is None and first["blockTime"] == mine[-1].timestamp and first["slot"] == mine[-1].slot
    if len(mine) >= 3:  # `until` and `before` bound the walk, both exclusive; `limit` caps it
        assert [e["signature"] for e in box.rpc("getSignaturesForAddress", leader, {"until": mine[0].signature})] == \
            [t.signature for t in reversed(mine[1:])]
        assert [e["signature"] for e in box.rpc("getSignaturesForAddress", leader,
                                                {"before": mine[-1].signature, "limit": 1})] == [mine[-2].signature]
    assert box.rpc("getSignaturesForAddress", leader, {"limit": 0})["code"] == -32602
    assert box.rpc("getSignaturesForAddress", "nope")["code"] == -32602


def test_block_time_follows_the_market_clock(box: Box) -> None:
    slot = box.rpc("getSlot")  # the market's slot plus the blocks the chain produced since (wall time)
    assert box.rpc("getBlockTime", slot) == int(box.market.now)
    assert box.rpc("getBlockTime", box.market.slot - 20) == int(box.market.now) - 10  # 0.5 s per market slot
    assert box.rpc("getBlockTime", slot + 1000)["code"] == -32004


def test_parse_transactions_renders_exactly_what_the_poster_delivers(box: Box) -> None:
    sigs = [t.signature for t in box.trades[:3]] + [signature("no such trade")]  # the last is unknown: left out
    resp = httpx.post(f"{box.base}/helius/v0/transactions", params={"api-key": KEY}, json={"transactions": sigs}, timeout=10)
    assert resp.status_code == 200
    poster = HeliusPoster("http://unused", "secret-value", seed=11)
    delivered = [json.loads(d.body)[0] for d in (poster.plan([t])[0] for t in box.trades[:3])]
    assert resp.json() == delivered == [enhanced_tx(t, choose_shape(shape_rng(11, t), t)) for t in box.trades[:3]]
    assert httpx.post(f"{box.base}/helius/v0/transactions", params={"api-key": "wrong"}, json={"transactions": sigs},
                      timeout=10).status_code == 401
    bad = httpx.post(f"{box.base}/helius/v0/transactions", params={"api-key": KEY}, json={"transactions": []}, timeout=10)
    assert bad.status_code == 400 and "1 to 100" in bad.json()["error"]


def test_webhook_api_create_edit_toggle_delete(box: Box) -> None:
    api = f"{box.base}/helius/v0/webhooks"
    config = {"webhookURL": "https://bot.example/hook", "webhookType": "enhanced", "transactionTypes": ["ANY"],
              "accountAddresses": [box.trades[0].leader], "authHeader": "s3cret-value"}
    created = httpx.post(api, params={"api-key": KEY}, json=config, timeout=10).json()
    hook_id = created["webhookID"]
    assert created["active"] is True and created["accountAddresses"] == config["accountAddresses"]
    edited = httpx.put(f"{api}/{hook_id}", params={"api-key": KEY}, json={**config, "accountAddresses": []}, timeout=10)
    assert edited.json()["accountAddresses"] == []  # an edit replaces the whole configuration
    assert httpx.patch(f"{api}/{hook_id}", params={"api-key": KEY}, json={"active": False}, timeout=10).json()["active"] is False
    assert [h["webhookID"] for h in httpx.get(api, params={"api-key": KEY}, timeout=10).json()] == [hook_id]
    refused = httpx.post(api, params={"api-key": KEY}, json={**config, "webhookType": "fancy"}, timeout=10)
    assert refused.status_code == 400 and "webhookType" in refused.json()["error"]
    assert httpx.delete(f"{api}/{hook_id}", params={"api-key": KEY}, timeout=10).status_code == 200
    assert httpx.get(f"{api}/{hook_id}", params={"api-key": KEY}, timeout=10).status_code == 404
    assert httpx.get(api, timeout=10).status_code == 401


def test_fake_telegram_answers_like_the_bot_api(box: Box) -> None:
    url = f"{box.base}/telegram/bot{box.recorder.token}"
    ok = httpx.post(f"{url}/sendMessage", json={"chat_id": 5, "text": "hello"}, timeout=10).json()
    assert ok["ok"] is True and ok["result"]["text"] == "hello" and ok["result"]["chat"]["id"] == 5
    form = httpx.post(f"{url}/sendMessage", data={"chat_id": "@ops", "text": "form body"}, timeout=10).json()
    assert form["ok"] is True
    assert box.recorder.messages[-2:] == [{"chat_id": 5, "text": "hello"}, {"chat_id": "@ops", "text": "form body"}]
    for body, description in (({"chat_id": 5, "text": ""}, "message text is empty"),
                              ({"text": "x"}, "chat_id is empty"),
                              ({"chat_id": 5, "text": "x" * 4097}, "message is too long")):
        resp = httpx.post(f"{url}/sendMessage", json=body, timeout=10)
        assert resp.status_code == 400 and resp.json()["description"] == f"Bad Request: {description}"
    denied = httpx.post(f"{box.base}/telegram/bot1:wrong/sendMessage", json={"chat_id": 5, "text": "x"}, timeout=10)
    assert denied.status_code == 401 and denied.json() == {"ok": False, "error_code": 401, "description": "Unauthorized"}
    assert httpx.get(f"{url}/getMe", timeout=10).json()["result"]["is_bot"] is True


@pytest.mark.parametrize("remote, headers, token, status", [
    ("127.0.0.1", {}, None, None),
    ("::1", {}, "t0ken-value", None),
    ("10.1.2.3", {}, None, 403),  # the internet, no token configured
    ("10.1.2.3", {"Authorization": "Bearer t0ken-value"}, "t0ken-value", None),
    ("10.1.2.3", {"Authorization": "Bearer wrong"}, "t0ken-value", 401),
    ("127.0.0.1", {"X-Forwarded-For": "203.0.113.9"}, None, 403),  # through a local reverse proxy: not loopback
    ("127.0.0.1", {"Forwarded": "for=203.0.113.9"}, "t0ken-value", 403),
])
def test_metrics_access_rule(remote: str, headers: dict[str, str], token: str | None, status: int | None) -> None:
    refusal = metrics_refusal(remote, headers, token)
    assert (refusal.status_code if refusal is not None else None) == status


def test_a_random_walk_of_the_rpc_never_500s(box: Box) -> None:
    rng = random.Random(3)
    for _ in range(30):
        params = rng.choice([[], [None], ["x", {"limit": "ten"}], [box.trades[0].leader, {"until": "bad"}], [-5], ["12"]])
        for method in ("getSignaturesForAddress", "getBlockTime"):
            resp = httpx.post(f"{box.base}/rpc", json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params},
                              timeout=10)
            body = resp.json()
            assert resp.status_code == 200 and ("error" in body or "result" in body)


def test_stall_watch_pages_back_to_its_cursor_and_backfills_every_missed_trade(box: Box) -> None:
    import trio

    from adapters.helius import HeliusApi
    from adapters.http import Policy, Provider, ResilientClient
    from adapters.solana_rpc import SolanaRpc
    from operations.webhook_watch import StallWatch

    leader = box.market.leaders[0]
    mint = next(iter(box.market.tokens))
    stored: dict[str, dict] = {}  # the inbox: what the backfill handed in, by signature

    async def in_inbox(sigs: list[str]) -> set[str]:
        return set(sigs) & set(stored)

    async def ingest(txs: list[dict], block_times: dict[str, float]) -> int:
        assert {tx["signature"] for tx in txs} <= set(block_times)  # each judged against the chain's block time
        new = [tx for tx in txs if tx["signature"] not in stored]
        stored.update((tx["signature"], tx) for tx in new)
        return len(new)

    def trade(n: int) -> list[str]:
        sigs = []
        for i in range(n):
            with box.market.lock:
                t = box.market._trade(leader, mint, "buy" if i % 2 == 0 else "sell", 1_000_000)
            box.chain.apply_trade(t)
            sigs.append(t.signature)
        return sigs

    async def main() -> None:
        rpc_http = ResilientClient(Provider("rpc", Policy(rate_per_s=100)), f"{box.base}/rpc")
        helius = HeliusApi(f"{box.base}/helius", KEY, rate_per_s=100)
        watch = StallWatch(SolanaRpc(rpc_http), helius, watched=lambda: frozenset({leader.address}),
                           last_delivery=lambda: box.market.now - 3600, clock=lambda: box.market.now + 600,
                           in_inbox=in_inbox, ingest=ingest, stall_after_s=60, poll_s=1, lookback_s=600)
        try:
            await watch.check()  # the first round: the last 10 minutes of the wallet's history are ours
            stored.clear()
            later = trade(250)  # then 250 trades the webhook never delivered: 3 pages since the cursor
            await watch.check()
            assert set(later) <= set(stored) and watch.stalled
            assert all(stored[s] == json.loads(json.dumps(stored[s])) for s in later)
        finally:
            await rpc_http.aclose()
            await helius.aclose()

    trio.run(main)
