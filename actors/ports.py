"""What the actors need from the outside world, as Protocols. Adapters live in `walltrack/`.

Every call returns a `concurrent.futures.Future` at once: actors never block on I/O; the shell turns
the outcome into a message (`Persisted`) in the actor's own mailbox.
"""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass, field
import time
from decimal import Decimal
from typing import Any, Callable, Protocol

from actors.directory import Directory
from actors.messages import JournalEvent, Observation, RecordResult


class Store(Protocol):
    def record_observation(self, obs: Observation) -> Future[RecordResult]: ...

    def append_position_events(self, position_id: int, events: tuple[JournalEvent, ...], projection: dict[str, Any]) -> Future[None]: ...

    def wallet_open_positions(self, wallet: str) -> Future[dict[str, dict[str, frozenset[int]]]]:
        """{"open": mint -> position ids, "shadow": mint -> shadow position ids}, not yet closed."""
        ...

    def position_journal(self, position_id: int) -> Future[tuple[JournalEvent, ...]]: ...

    def risk_snapshot(self) -> Future[Any]:
        """What the risk actor rebuilds from: open exposure, trades today, closes, breakers (actors/risk.py)."""
        ...

    def record_breaker(self, event: dict[str, Any]) -> Future[None]:
        """Store a breaker trip or reset (idempotent: the same event twice is one row)."""
        ...

    def position_outcome(self, position_id: int) -> Future[dict[str, Any] | None]:
        """A position's mode, quote mint, realized PnL and exit reason (for a close that did not carry them)."""
        ...


class Safety(Protocol):
    """Token safety verdicts: a future of an object with `.passed`, `.reason` and `.as_json()`."""

    def assess(self, mint: str) -> Future[Any]: ...


class Scheduler(Protocol):
    def call_later(self, delay: float, fn: Callable[[], Any]) -> None: ...


from actors.rules import CopyRules  # noqa: E402 - global copy defaults; per-wallet overrides in actors/rules.py


class Executor(Protocol):
    """Swaps for positions (paper: simulated at a real quote; live: signed and sent). Each future resolves
    to an `actors.messages.Fill`, or fails (no route, provider down): the caller decides what that means."""

    def buy(self, position_id: int, mint: str, quote_amount: int, quote_mint: str, *, slippage_bps: int | None = None,
            max_price_impact_pct: float | None = None) -> Future[Any]: ...

    def sell(self, position_id: int, mint: str, token_amount: int, quote_mint: str, *,
             slippage_bps: int | None = None) -> Future[Any]: ...


@dataclass(frozen=True)
class SignedSwap:
    """A swap built, verified and signed but not sent (the live executor's `prepare`). The position journals it
    (`buy_signature` / `sell_signature`) before `land` may send it: a restart finds the signature and asks the chain."""

    signature: str
    transaction: str  # base64 of the signed VersionedTransaction (not secret: it is what the chain will see)
    last_valid_block_height: int
    amount: int  # what goes in: lamports for a buy, tokens for a sell (a sell is capped at what the chain holds)
    quoted_out: int
    min_out: int  # the quote's otherAmountThreshold: the transaction fails below it
    price_impact: str
    route: str
    slippage_bps: int

    def as_json(self) -> dict[str, Any]:
        return {"signature": self.signature, "transaction": self.transaction,
                "last_valid_block_height": self.last_valid_block_height, "amount": str(self.amount),
                "quoted_out": str(self.quoted_out), "min_out": str(self.min_out), "price_impact": self.price_impact,
                "route": self.route, "slippage_bps": self.slippage_bps}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "SignedSwap":
        return cls(d["signature"], d["transaction"], int(d["last_valid_block_height"]), int(d["amount"]),
                   int(d["quoted_out"]), int(d["min_out"]), str(d["price_impact"]), str(d["route"]), int(d["slippage_bps"]))


class SwapError(Exception):
    """A live swap that did not fill, named by what the position should do.

    `retryable`: another attempt (re-quoted) may succeed (expired, dropped, slippage, a provider down while
    preparing); False: it will not (refused by verification, not enough SOL, nothing held, the kill switch).
    `unknown`: the outcome could not be learnt (the RPC did not answer before the watch timed out): the same
    signature is watched again — never a new attempt, which could buy twice. `cost`: the fee a transaction that
    landed failed was charged (a `Fill` of no tokens), booked so the books equal the chain.
    """

    def __init__(self, reason: str, *, retryable: bool = False, unknown: bool = False, cost: Any = None,
                 detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason, self.retryable, self.unknown, self.cost, self.detail = reason, retryable, unknown, cost, detail


class LiveExecutor(Protocol):
    """Real swaps in two steps, so the position journals the signature between them (walltrack/live.py).

    `prepare` quotes, builds, verifies and signs — nothing is sent — and resolves to a `SignedSwap`; `land`
    sends (and rebroadcasts) that exact transaction until the chain confirms it — the `Fill` is the chain's
    balance deltas — or it fails or expires (`SwapError`). `land` first asks the chain for the signature, so after
    a restart it reconciles instead of sending blindly; `fresh` says no earlier process can have sent it."""

    def prepare(self, position_id: int, side: str, mint: str, amount: int, *, slippage_bps: int,
                max_price_impact_pct: float | None = None) -> Future[SignedSwap]: ...

    def land(self, position_id: int, side: str, mint: str, swap: SignedSwap, *, fresh: bool) -> Future[Any]: ...


@dataclass(frozen=True)
class LivePolicy:
    """How a live position retries: attempts per swap (each re-quoted), the backoff between them (real seconds), the
    default slippage and the widest an exit that failed may retry with."""

    max_attempts: int = 3
    backoff_s: float = 1.0
    backoff_max_s: float = 30.0
    slippage_bps: int = 100
    exit_max_slippage_bps: int = 1500

    def delay(self, attempt: int) -> float:
        return min(self.backoff_s * 2 ** max(0, attempt - 1), self.backoff_max_s)

    def exit_slippage(self, base: int, round_: int) -> int:
        """An exit retried after `round_` exit_failed rounds: the slippage doubles each round, up to the cap."""
        return min(max(base, 1) * 2 ** round_, max(base, self.exit_max_slippage_bps))


@dataclass(frozen=True)
class ExitPlan:
    """How a position exits (actors/position.py). Percentages are of the entry price; 0 disables a rule.

    `take_profit` is the ladder: (gain_pct, fraction of the entry size to sell) per level, in order.
    Recorded in the position's journal when it is armed, so a replay uses the plan it was opened with.
    """

    stop_loss_pct: Decimal = Decimal("25")
    take_profit: tuple[tuple[Decimal, Decimal], ...] = ((Decimal("50"), Decimal("0.5")), (Decimal("100"), Decimal("0.5")))
    breakeven_after_first_tp: bool = True
    trailing_activation_pct: Decimal = Decimal("30")
    trailing_distance_pct: Decimal = Decimal("15")
    trailing_step_pct: Decimal = Decimal("2")  # journal the high-water mark when it rises by this much
    time_stop_s: float = 24 * 3600
    emergency_min_liquidity_usd: Decimal = Decimal("2000")
    stale_limit_s: float = 300
    mirror_unknown: str = "full"  # the leader's holding is unknown: "full" exit or "proportional" to its buy
    exit_retry_s: float = 30  # first retry of a failed exit; doubles up to 20 times that

    def as_json(self) -> dict[str, Any]:
        return {
            "stop_loss_pct": str(self.stop_loss_pct),
            "take_profit": [[str(g), str(f)] for g, f in self.take_profit],
            "breakeven_after_first_tp": self.breakeven_after_first_tp,
            "trailing_activation_pct": str(self.trailing_activation_pct),
            "trailing_distance_pct": str(self.trailing_distance_pct),
            "trailing_step_pct": str(self.trailing_step_pct),
            "time_stop_s": self.time_stop_s,
            "emergency_min_liquidity_usd": str(self.emergency_min_liquidity_usd),
            "stale_limit_s": self.stale_limit_s,
            "mirror_unknown": self.mirror_unknown,
            "exit_retry_s": self.exit_retry_s,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "ExitPlan":
        return cls(
            stop_loss_pct=Decimal(d["stop_loss_pct"]),
            take_profit=tuple((Decimal(g), Decimal(f)) for g, f in d["take_profit"]),
            breakeven_after_first_tp=bool(d["breakeven_after_first_tp"]),
            trailing_activation_pct=Decimal(d["trailing_activation_pct"]),
            trailing_distance_pct=Decimal(d["trailing_distance_pct"]),
            trailing_step_pct=Decimal(d["trailing_step_pct"]),
            time_stop_s=float(d["time_stop_s"]),
            emergency_min_liquidity_usd=Decimal(d["emergency_min_liquidity_usd"]),
            stale_limit_s=float(d["stale_limit_s"]),
            mirror_unknown=str(d["mirror_unknown"]),
            exit_retry_s=float(d["exit_retry_s"]),
        )


@dataclass(frozen=True)
class Ports:
    store: Store
    scheduler: Scheduler
    rules: CopyRules = CopyRules()
    safety: Safety | None = None  # None: no safety screening (tests of the bare spine)
    clock: Callable[[], float] = time.time
    executor: Executor | None = None  # None: positions cannot trade (entries fail, exits are retried)
    exit_plan: ExitPlan = ExitPlan()
    risk: Any = None  # an actors.risk.RiskConfig: caps and breakers on entries; None: no risk actor
    live_available: bool = False  # a wallet key is configured: without one a wallet in live mode is refused
    rules_follow_mode: bool = False  # the default copy mode follows the global trading mode (COPY_MODE unset)
    live: LiveExecutor | None = None  # signs and sends the swaps of live positions
    live_policy: LivePolicy = LivePolicy()
    sol_usd: Callable[[], Decimal | None] = lambda: None  # the last fresh SOL price: live entries of USD leaders
    max_skew_s: float | None = None  # a trade's timestamp this far from its receipt is implausible (None: unchecked)
    directory: Directory = field(default_factory=Directory)  # where every child is reached (the root writes it)
    reservation_timeout_s: float = 10.0  # a wallet waits this long for the risk actor's answer, then refuses (fail closed)
