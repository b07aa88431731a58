"""Live execution against the sandbox, for tests: the sandbox market, chain and services on their own trio thread
(walltrack.demo.Sandbox), a funded keypair, and the bot's real adapters and live executor on another."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Callable, Iterator

import pytest

from solders.keypair import Keypair
from solders.pubkey import Pubkey

from actors.ports import SignedSwap
from sandbox.chain import TOKEN_2022_PROGRAM, TOKEN_PROGRAM
from sandbox.market import LAMPORTS, WSOL_MINT
from adapters.http import Policy, Provider, ResilientClient
from adapters.jupiter import JupiterClient, prioritization_fee
from adapters.solana_rpc import SolanaRpc
from walltrack.bridge import Service, TrioThread
from execution.confirm import Confirmer
from walltrack.demo import Sandbox
from walltrack.demo_live import SANDBOX_PROGRAMS
from execution.keys import WalletKey
from execution.live import LiveConfig, LiveExecutor
from execution.verify import SwapPolicy, programs

FUNDS = 20 * LAMPORTS


def token_balance(sb: Sandbox, owner: Pubkey, mint: str) -> int:
    """The owner's raw amount of `mint` on the sandbox chain, over all its token accounts (read from LiteSVM)."""
    from solders.token.associated import get_associated_token_address
    from solders.token.state import TokenAccount

    total = 0
    for program in (TOKEN_PROGRAM, TOKEN_2022_PROGRAM):
        acc = sb.chain.account(get_associated_token_address(owner, Pubkey.from_string(mint), program))
        if acc is not None and acc.owner == program:
            total += TokenAccount.from_bytes(bytes(acc.data)[:165]).amount
    return total


def lamports(sb: Sandbox, owner: Pubkey) -> int:
    acc = sb.chain.account(owner)
    return acc.lamports if acc is not None else 0


@dataclass
class Live:
    sb: Sandbox
    runtime: TrioThread
    keypair: Keypair
    executor: LiveExecutor
    rpc: SolanaRpc
    mode: list[str] = field(default_factory=lambda: ["live"])
    services: list[Service] = field(default_factory=list)

    @property
    def owner(self) -> Pubkey:
        return self.keypair.pubkey()

    def lamports(self) -> int:
        return lamports(self.sb, self.owner)

    def tokens(self, mint: str) -> int:
        return token_balance(self.sb, self.owner, mint)

    def prepare(self, side: str, mint: str, amount: int, bps: int = 100, **kw: Any) -> SignedSwap:
        return self.executor.prepare(1, side, mint, amount, slippage_bps=bps, **kw).result(60)

    def land(self, side: str, mint: str, swap: SignedSwap, fresh: bool = True) -> Any:
        return self.executor.land(1, side, mint, swap, fresh=fresh).result(120)

    def swap(self, side: str, mint: str, amount: int, bps: int = 100) -> Any:
        return self.land(side, mint, self.prepare(side, mint, amount, bps))

    def mint(self, symbol: str) -> str:
        return self.sb.market.by_symbol[symbol].mint

    def close(self) -> None:
        for s in reversed(self.services):
            s.stop()
        self.runtime.stop()
        self.sb.stop()


def start_live(seed: int = 7, *, funds: int = FUNDS, block_time_s: float = 0.05, rebroadcast_s: float = 0.25,
               poll_s: float = 0.05, confirm_timeout_s: float = 60.0, skip_preflight: bool = False,
               reserve_lamports: int = 0, jito_tip: int = 0, attempts: int = 3,
               clock: Callable[[], float] | None = None) -> Live:
    sb = Sandbox(seed, speed=60)
    sb.chain.blocks.block_time_s = block_time_s  # 150 blocks of validity pass in seconds, not a minute
    keypair = Keypair()
    sb.chain.airdrop(keypair.pubkey(), funds)
    runtime = TrioThread(name="bot-trio").start()
    policy = Policy(rate_per_s=200, attempt_timeout_s=10, max_wait_s=5)
    rpc_http = ResilientClient(Provider("rpc", policy), sb.url("rpc"))
    rpc = SolanaRpc(rpc_http)
    jupiter = JupiterClient(sb.url("jupiter"), tier="pro", max_wait_s=5)
    key = WalletKey(keypair)
    cfg = LiveConfig(policy=SwapPolicy(key.pubkey, programs(SANDBOX_PROGRAMS), 200_000, jito_tip),
                     priority=prioritization_fee("high", 200_000, jito_tip), reserve_lamports=reserve_lamports,
                     skip_preflight=skip_preflight, rebroadcast_s=rebroadcast_s, confirm_timeout_s=confirm_timeout_s)
    confirmer = Confirmer(rpc, poll_s)
    live = Live(sb, runtime, keypair, None, rpc)  # type: ignore[arg-type]
    live.executor = LiveExecutor(runtime, jupiter, rpc, key, cfg, confirmer, clock or sb.clock,
                                 lambda: None if live.mode[0] == "live" else f"mode:{live.mode[0]}")
    live.services.append(runtime.start_service(confirmer.run))
    return live


@pytest.fixture(scope="module")
def live() -> Iterator[Live]:
    """One sandbox and one funded wallet for a test module (import this fixture where it is used)."""
    lv = start_live()
    try:
        yield lv
    finally:
        lv.close()


def sol(x: str) -> int:
    return int(Decimal(x) * LAMPORTS)


__all__ = ["FUNDS", "Live", "WSOL_MINT", "lamports", "sol", "start_live", "token_balance"]
