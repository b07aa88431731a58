"""Fault injection for the sandbox services: latency, timeouts, 429 with Retry-After, 5xx, malformed
bodies, and tokens silently missing from price responses. One `Faults` per service, changeable at run
time (tests flip them while the bot runs).

Execution faults (what each does in detail: sandbox/swaps.py and sandbox/execution.py):
- jupiter `blockhash_age_blocks`: /swap hands out a blockhash this many blocks old (> 150: already expired, so
  a send fails preflight with "Blockhash not found", or with skipPreflight never lands);
- jupiter `malicious`: /swap builds a transaction to refuse: "pay_stranger_sol", "pay_stranger_token" or
  "unknown_program";
- rpc `slippage`: each built swap is front-run when it lands, and lands failed (slippage exceeded);
- rpc `drop_next` / `drop_all`: sendTransaction answers the signature but the broadcast never lands (the next
  N broadcasts, or every one while set);
- rpc `late_blocks`: a transaction lands, but the RPC shows no status for it for N blocks;
- rpc `rate_limited_methods`: 429 with Retry-After for those JSON-RPC methods only (`rate_limited`: every
  request). Insufficient SOL needs no fault: fund the wallet short (`Chain.airdrop`)."""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field


@dataclass
class Faults:
    latency_s: float = 0.0  # added to every response
    timeout: bool = False  # hang past any sane client timeout (the request is never answered in time)
    error_status: int | None = None  # e.g. 500, 502, 503 for every request
    error_rate: float = 0.0  # fraction of requests answered with `error_status or 500`
    rate_limited: bool = False  # answer 429 with Retry-After
    retry_after_s: int = 2
    malformed: bool = False  # a 200 whose body is not valid JSON
    missing: set[str] = field(default_factory=set)  # ids silently dropped from price responses
    # execution (see the module docstring)
    blockhash_age_blocks: int = 0  # jupiter: how old the blockhash /swap hands out is (> 150: already expired)
    malicious: str | None = None  # jupiter: "pay_stranger_sol" | "pay_stranger_token" | "unknown_program"
    slippage: bool = False  # rpc: built swaps are front-run when they land, and fail (slippage exceeded)
    drop_next: int = 0  # rpc: the next N sendTransaction broadcasts are answered but never land
    drop_all: bool = False  # rpc: every broadcast is answered but never lands, while set
    late_blocks: int = 0  # rpc: a landed transaction shows no status for N blocks
    rate_limited_methods: set[str] = field(default_factory=set)  # rpc: 429 + Retry-After for these methods only
    stalled: bool = False  # helius: the poster stops delivering (every delivery is missed) while the market trades
    requests: int = 0  # requests seen (for tests)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _rng: random.Random = field(default_factory=lambda: random.Random(0), repr=False)

    def count(self) -> int:
        with self._lock:
            self.requests += 1
            return self.requests

    def roll_error(self) -> bool:
        with self._lock:
            return self.error_rate > 0 and self._rng.random() < self.error_rate

    def take_drop(self) -> bool:
        """Whether this broadcast is dropped (counts down `drop_next`)."""
        with self._lock:
            if self.drop_all:
                return True
            if self.drop_next > 0:
                self.drop_next -= 1
                return True
            return False

    def clear(self) -> None:
        self.latency_s, self.timeout, self.error_status, self.error_rate = 0.0, False, None, 0.0
        self.rate_limited, self.malformed, self.stalled = False, False, False
        self.missing = set()
        self.blockhash_age_blocks, self.malicious, self.slippage = 0, None, False
        self.drop_next, self.drop_all, self.late_blocks = 0, False, 0
        self.rate_limited_methods = set()


SERVICES = ("helius", "jupiter", "dexscreener", "rugcheck", "rpc", "helius_api", "telegram", "hooks")


class FaultBoard:
    """The faults of every sandbox service, by name."""

    def __init__(self) -> None:
        self.by_service: dict[str, Faults] = {name: Faults() for name in SERVICES}

    def __getitem__(self, service: str) -> Faults:
        return self.by_service[service]
