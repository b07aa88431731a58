"""The trading settings, a section of `Settings` (walltrack/settings.py): copy rules, caps and breakers, token
safety, exits and live execution — what decides whether and how much we buy, and how we sell.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Literal, Sequence

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings

from actors.trades import is_base58_pubkey


def only(v: str, known: Sequence[str], what: str) -> str:
    """A comma-separated list of names, each one of `known`: else which are not, and what they may be."""
    unknown = [n.strip() for n in v.split(",") if n.strip() and n.strip() not in known]
    if unknown:
        raise ValueError(f"unknown {what}(s) {', '.join(unknown)}; one of {', '.join(known)}")
    return v


def _safety_checks() -> set[str]:
    from intelligence.safety import SafetyConfig  # lazy: settings load before anything else

    return set(SafetyConfig().weights)


class TradingSettings(BaseSettings):
    copy_fixed_sol: Decimal = Field(default=Decimal("0.1"), gt=0)
    copy_fixed_usd: Decimal = Field(default=Decimal("20"), gt=0)
    # copy rules (actors/rules.py): the defaults every watched wallet can override (`walltrack wallets set`)
    copy_mode: Literal["off", "paper", "live"] | None = None  # None: TRADING_MODE
    copy_sizing: Literal["fixed", "percent"] = "fixed"
    copy_percent: Decimal = Field(default=Decimal("10"), gt=0, le=100)
    copy_min_sol: Decimal = Field(default=Decimal("0.01"), ge=0)
    copy_max_sol: Decimal = Field(default=Decimal("1"), gt=0)
    copy_min_usd: Decimal = Field(default=Decimal("2"), ge=0)
    copy_max_usd: Decimal = Field(default=Decimal("200"), gt=0)
    copy_leader_min_sol: Decimal | None = None
    copy_leader_max_sol: Decimal | None = None
    copy_min_liquidity_usd: float | None = None
    copy_min_market_cap_usd: float | None = None
    copy_max_market_cap_usd: float | None = None
    copy_max_pool_age_hours: float | None = None
    copy_blacklist: str = ""
    copy_allowed_sources: str = ""
    copy_active_hours: str | None = None
    copy_max_buys_per_token: int = Field(default=1, ge=1)
    copy_max_sol_per_token: Decimal | None = None
    copy_skip_add_ons: bool = True
    copy_slippage_bps: int = Field(default=100, ge=0, le=5000)
    copy_max_price_impact_pct: float | None = None

    # global caps and breakers (actors/risk.py); 0 disables one
    risk_starting_capital_sol: Decimal = Field(default=Decimal("10"), gt=0)
    risk_reserve_sol: Decimal = Field(default=Decimal("1"), ge=0)
    risk_max_open_positions: int = Field(default=10, ge=0)
    risk_max_token_exposure_sol: Decimal = Field(default=Decimal("0.5"), ge=0)
    risk_max_total_exposure_sol: Decimal = Field(default=Decimal("3"), ge=0)
    risk_max_trades_per_day: int = Field(default=100, ge=0)
    risk_sol_usd_fallback: Decimal = Field(default=Decimal("150"), gt=0)
    risk_reply_timeout_s: float = Field(default=10.0, gt=0)  # a wallet waits this long for a reservation, then skips
    breaker_max_drawdown_pct: Decimal = Field(default=Decimal("20"), ge=0, lt=100)
    breaker_drawdown_stop_hours: float = Field(default=12, ge=0)
    breaker_daily_loss_sol: Decimal = Field(default=Decimal("1"), ge=0)
    breaker_loss_streak: int = Field(default=4, ge=0)
    breaker_loss_streak_window_minutes: float = Field(default=360, gt=0)
    breaker_loss_streak_stop_minutes: float = Field(default=120, ge=0)
    breaker_stoploss_cooldown_minutes: float = Field(default=60, ge=0)
    breaker_wallet_loss_streak: int = Field(default=3, ge=0)
    breaker_wallet_pause_hours: float = Field(default=24, ge=0)  # 0: until an operator resets it
    stats_min_trades: int = Field(default=5, ge=1)  # a wallet is "unmeasured" until this many closed trades

    @field_validator("copy_mode", "copy_leader_min_sol", "copy_leader_max_sol", "copy_min_liquidity_usd",
                     "copy_min_market_cap_usd", "copy_max_market_cap_usd", "copy_max_pool_age_hours", "copy_active_hours",
                     "copy_max_sol_per_token", "copy_max_price_impact_pct", mode="before")
    @classmethod
    def _empty_is_unset(cls, v: object) -> object:
        return None if v == "" else v

    @model_validator(mode="after")
    def _copy_rules_valid(self) -> "TradingSettings":
        from actors.rules import RulesError
        from walltrack.config import copy_rules

        try:
            copy_rules(self)
        except RulesError as exc:
            raise ValueError(f"copy rules: {exc}") from None
        return self

    # token safety (intelligence/safety.py): score threshold, limits, and the checks that reject on their own
    safety_enabled: bool = True
    safety_threshold: float = Field(default=0.9, ge=0, le=1)
    safety_weights: str = ""  # "check=weight,..." overrides of intelligence.safety.SafetyConfig.weights
    safety_hard_checks: str = "freeze_authority,sell_route,permanent_delegate,default_frozen,mint_authority,transfer_hook,transfer_fee"
    safety_min_liquidity_usd: float = Field(default=10_000, ge=0)
    safety_min_market_cap_usd: float = Field(default=10_000, ge=0)
    safety_max_market_cap_usd: float = Field(default=100_000_000, gt=0)
    safety_max_pool_age_hours: float = Field(default=720, gt=0)
    safety_max_top10_pct: float = Field(default=30, gt=0, le=100)
    safety_max_price_impact_pct: float = Field(default=3, gt=0)
    safety_source_timeout_s: float = Field(default=1.5, gt=0)  # a late copy is a bad copy
    safety_ttl_s: float = Field(default=300, ge=0)

    # the position engine (actors/position.py): exits, and honest paper fills (execution/paper.py)
    exit_stop_loss_pct: Decimal = Field(default=Decimal("25"), ge=0, lt=100)  # 0: no stop loss
    exit_take_profit: str = "50:0.5,100:0.5"  # ladder "gain_pct:fraction_of_entry,..."; empty: none
    exit_breakeven_after_first_tp: bool = True
    exit_trailing_activation_pct: Decimal = Field(default=Decimal("30"), ge=0)
    exit_trailing_distance_pct: Decimal = Field(default=Decimal("15"), ge=0, lt=100)  # 0: no trailing stop
    exit_trailing_step_pct: Decimal = Field(default=Decimal("2"), ge=0)
    exit_time_stop_s: float = Field(default=86_400, ge=0)  # 0: no time stop
    exit_emergency_min_liquidity_usd: Decimal = Field(default=Decimal("2000"), ge=0)  # 0: no emergency exit
    exit_stale_limit_s: float = Field(default=300, ge=0)
    exit_mirror_unknown: Literal["full", "proportional"] = "full"
    exit_retry_s: float = Field(default=30, gt=0)
    paper_slippage_bps: int = Field(default=100, ge=0, lt=10_000)
    paper_priority_fee_lamports: int = Field(default=10_000, ge=0)

    # live execution (execution/live.py, execution/verify.py): real swaps signed with the wallet key. Caps per live
    # entry, per UTC day and in total (actors/risk.py), and a SOL reserve the wallet keeps on chain for fees and rent.
    live_max_trade_sol: Decimal = Field(default=Decimal("0.25"), gt=0)
    live_max_daily_sol: Decimal = Field(default=Decimal("2"), ge=0)  # 0: no daily cap
    live_max_total_sol: Decimal = Field(default=Decimal("1"), ge=0)  # 0: no cap on open live exposure
    live_reserve_sol: Decimal = Field(default=Decimal("0.05"), ge=0)
    live_max_attempts: int = Field(default=3, ge=1, le=10)  # per swap, each re-quoted; then entry_failed / exit_failed
    live_retry_backoff_s: float = Field(default=1.0, gt=0)  # before the second attempt; doubles for each next one
    live_exit_max_slippage_bps: int = Field(default=1500, ge=0, le=5000)  # an exit_failed retry widens slippage to this
    live_commitment: Literal["confirmed", "finalized"] = "confirmed"
    live_skip_preflight: bool = False
    live_confirm_poll_ms: int = Field(default=400, ge=20)  # getSignatureStatuses, for every swap in flight at once
    live_rebroadcast_ms: int = Field(default=2000, ge=50)  # the same signed transaction again, until it lands or expires
    live_confirm_timeout_s: float = Field(default=120, gt=0)  # then the outcome is "unknown": watched again, never re-bought
    live_priority_level: Literal["medium", "high", "veryHigh"] = "high"
    live_priority_max_lamports: int = Field(default=200_000, ge=0)
    live_jito_tip_lamports: int = Field(default=0, ge=0)  # > 0: a Jito tip instead of the priority fee (never both)
    live_programs: str = ",".join((
        "JUP6LkbZbjS1jKKwapdHNy74zcZ3tLUZoi5QNyVTaV4", "11111111111111111111111111111111",
        "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA", "TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb",
        "ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL", "ComputeBudget111111111111111111111111111111"))
    live_simulate: bool = True  # our own simulateTransaction of each signed swap: the balance outcome is checked

    @field_validator("live_programs")
    @classmethod
    def _programs(cls, v: str) -> str:
        names = [p.strip() for p in v.split(",") if p.strip()]
        bad = [p for p in names if not is_base58_pubkey(p)]
        if bad or not names:
            raise ValueError(f"must be comma-separated program addresses (bad: {', '.join(bad) or 'none given'})")
        return ",".join(names)

    @field_validator("exit_take_profit")
    @classmethod
    def _ladder(cls, v: str) -> str:
        total = Decimal(0)
        for part in (p.strip() for p in v.split(",")):
            if not part:
                continue
            try:
                gain, fraction = (Decimal(x) for x in part.split(":"))
            except (ValueError, ArithmeticError):
                raise ValueError(f"expected gain_pct:fraction pairs, got {part!r}") from None
            if gain <= 0 or not 0 < fraction <= 1:
                raise ValueError(f"{part!r}: gain must be > 0 and fraction in (0, 1]")
            total += fraction
        if total > 1:
            raise ValueError("the ladder's fractions add up to more than 1")
        return v


    @field_validator("safety_weights")
    @classmethod
    def _weights(cls, v: str) -> str:
        known = _safety_checks()
        for part in filter(None, (p.strip() for p in v.split(","))):
            name, _, weight = part.partition("=")
            if name.strip() not in known:
                raise ValueError(f"unknown check {name.strip()!r}; one of {', '.join(sorted(known))}")
            try:
                if float(weight) < 0:
                    raise ValueError
            except ValueError:
                raise ValueError(f"weight of {name.strip()} must be a number >= 0") from None
        return v

    @field_validator("safety_hard_checks")
    @classmethod
    def _hard(cls, v: str) -> str:
        return only(v, sorted(_safety_checks()), "check")

