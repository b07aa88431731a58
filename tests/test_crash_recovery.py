"""kill -9 under webhook load: every delivery acknowledged with a 200 is processed exactly once after a
restart, and nothing is half-applied (a signal without its observation, a taken buy without its position)."""

from __future__ import annotations

import json
import random
import signal
import threading
from pathlib import Path

import httpx

from sandbox.market import pubkey, signature
from tests.conftest import wait_until
from tests.test_cli import Bot, bot  # noqa: F401 - the fixture

W = pubkey("crash-test-leader")


def buy(i: int) -> dict:
    mint, ata = pubkey(f"crash-mint-{i}"), pubkey(f"crash-ata-{i}")
    return {"signature": signature(f"crash-{i}"), "type": "SWAP", "source": "RAYDIUM", "fee": 5000, "feePayer": W,
            "accountData": [{"account": W, "nativeBalanceChange": -100_005_000, "tokenBalanceChanges": []},
                            {"account": ata, "nativeBalanceChange": 0, "tokenBalanceChanges": [
                                {"userAccount": W, "tokenAccount": ata, "mint": mint,
                                 "rawTokenAmount": {"tokenAmount": str(10**9 + i), "decimals": 6}}]}]}


def test_kill_9_mid_load_processes_every_acknowledged_delivery_exactly_once(bot: Bot) -> None:  # noqa: F811
    bot.start()
    bot.cli("wallets", "add", W)
    wait_until(lambda: (bot.healthy() or {}).get("actors", {}).get("wallets") == 1)
    rng = random.Random(5)
    txs = [buy(i) for i in range(400)]
    acked: set[str] = set()
    lock, killed = threading.Lock(), threading.Event()

    def sender(part: list[dict]) -> None:
        with httpx.Client(timeout=5) as client:
            for tx in part:
                if killed.is_set():
                    return
                body = [tx] if rng.random() < 0.8 else [tx, tx]  # duplicates inside a delivery, too
                for _ in range(1 + (rng.random() < 0.3)):  # and re-deliveries
                    try:
                        r = client.post(f"http://127.0.0.1:{bot.port}/webhooks/helius", content=json.dumps(body),
                                        headers={"Authorization": bot.env["HELIUS_WEBHOOK_SECRET"]})
                    except httpx.HTTPError:
                        return
                    if r.status_code == 200:
                        with lock:
                            acked.add(tx["signature"])

    threads = [threading.Thread(target=sender, args=(txs[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    wait_until(lambda: len(acked) >= rng.randint(60, 160), timeout=60)  # a random moment, mid-load
    assert bot.proc is not None
    bot.proc.send_signal(signal.SIGKILL)
    bot.proc.wait(timeout=10)
    killed.set()
    for t in threads:
        t.join(timeout=30)
    assert 0 < len(acked) < len(txs)

    bot.start()  # restart: the inbox is replayed
    def settled() -> bool:
        return bot.healthy()["inbox_pending"] == 0  # type: ignore[index]
    wait_until(settled, timeout=60)
    signals = json.loads(bot.cli("signals", "--json").stdout)
    positions = json.loads(bot.cli("positions", "--json").stdout)
    by_sig: dict[str, int] = {}
    for s in signals:
        by_sig[s["signature"]] = by_sig.get(s["signature"], 0) + 1
    assert all(n == 1 for n in by_sig.values()), "a transaction was processed twice"
    assert acked <= set(by_sig), f"{len(acked - set(by_sig))} acknowledged deliveries were lost"
    # nothing half-applied: every signal that was taken has exactly one position, and only those do
    taken = {s["id"] for s in signals if s["decision"] == "taken"}
    assert sorted(p["signal_id"] for p in positions if p["mode"] == "paper") == sorted(taken)
    assert bot.stop() == 0
