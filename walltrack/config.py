"""The config objects the rooms take, built from the settings (walltrack/settings.py).

`from_settings` fills a config dataclass field by field from the setting of the same name under the class's
prefixes — a duration `x_s` also from `x_minutes` or `x_hours` — so no field list is written twice: a new
config field finds its setting by name, and one that has none must be named in `keep` (its default holds) or
given, else building fails. Only what is derived (parsed, converted, combined) is written out here.
"""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar

from walltrack.settings import Settings

if TYPE_CHECKING:
    from actors.ports import ExitPlan, LivePolicy
    from actors.risk import RiskConfig
    from actors.rules import CopyRules
    from actors.supervision import Backoff, Intensity
    from execution.keys import WalletKey
    from execution.live import LiveConfig
    from intelligence.safety import SafetyConfig

C = TypeVar("C")
UNITS = (("_s", 1), ("_minutes", 60), ("_hours", 3600))  # a duration field `x_s` from the setting `x_<unit>`


def _read(s: Settings, name: str, prefixes: tuple[str, ...]) -> tuple[bool, Any]:
    known = type(s).model_fields
    stem, units = (name[:-2], UNITS) if name.endswith("_s") else (name, (("", 1),))
    for prefix in prefixes:
        for unit, factor in units:
            setting = f"{prefix}{stem}{unit}"
            if setting in known:
                value = getattr(s, setting)
                return True, value * factor if factor != 1 else value
    return False, None


def from_settings(cls: type[C], s: Settings, prefixes: tuple[str, ...], keep: tuple[str, ...] = (), **given: Any) -> C:
    """`cls(...)` with each field from `given`, else from its setting (see the module), else kept at its default
    when named in `keep`. A field with none of these is a mistake: TypeError names it."""
    values = dict(given)
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name in values or not f.init:
            continue
        found, value = _read(s, f.name, prefixes)
        if found:
            values[f.name] = value
        elif f.name not in keep:
            raise TypeError(f"{cls.__name__}.{f.name}: no setting {'/'.join(p + f.name for p in prefixes)} and not kept")
    return cls(**values)


def copy_rules(s: Settings) -> "CopyRules":
    """The global copy defaults: each COPY_<NAME> setting is the rule <name> (mode follows TRADING_MODE)."""
    from pydantic import ValidationError

    from actors.rules import CopyRules, RulesError

    values = {name: getattr(s, f"copy_{name}") for name in CopyRules.model_fields if hasattr(s, f"copy_{name}")}
    values["mode"] = s.copy_mode or s.trading_mode
    try:
        return CopyRules.model_validate(values)
    except ValidationError as exc:
        raise RulesError("; ".join((f"COPY_{'_'.join(map(str, e['loc'])).upper()}: " if e["loc"] else "")
                                   + e["msg"].removeprefix("Value error, ") for e in exc.errors())) from None


def risk_config(s: Settings) -> "RiskConfig":
    """Caps (RISK_*, LIVE_MAX_*) and breakers (BREAKER_*)."""
    from actors.risk import RiskConfig

    return from_settings(RiskConfig, s, ("risk_", "breaker_", ""), keep=("reservation_ttl_s",))


def safety_config(s: Settings) -> "SafetyConfig":
    """Token safety (SAFETY_*): weights over the defaults, the hard checks, a probe the size of a fixed entry."""
    from intelligence.safety import SafetyConfig

    weights = dict(SafetyConfig().weights)
    for part in filter(None, (p.strip() for p in s.safety_weights.split(","))):
        name, _, weight = part.partition("=")
        weights[name.strip()] = float(weight)
    return from_settings(SafetyConfig, s, ("safety_",),
                         keep=("min_pool_age_s", "max_transfer_fee_bps", "unverified_ttl_s", "known_program_owners"),
                         weights=weights, hard=frozenset(n.strip() for n in s.safety_hard_checks.split(",") if n.strip()),
                         probe_sol_lamports=int(s.copy_fixed_sol * 10**9))


def exit_plan(s: Settings) -> "ExitPlan":
    """The exit plan for new positions (EXIT_*); the take-profit ladder from "gain_pct:fraction,...". """
    from actors.ports import ExitPlan

    ladder = []
    for part in (p.strip() for p in s.exit_take_profit.split(",")):
        if part:
            gain, fraction = part.split(":")
            ladder.append((Decimal(gain), Decimal(fraction)))
    return from_settings(ExitPlan, s, ("exit_", ""), take_profit=tuple(ladder))


def live_policy(s: Settings) -> "LivePolicy":
    """How live positions retry (LIVE_MAX_ATTEMPTS, LIVE_RETRY_BACKOFF_S, COPY_SLIPPAGE_BPS, ...)."""
    from actors.ports import LivePolicy

    return from_settings(LivePolicy, s, ("live_",), backoff_s=s.live_retry_backoff_s,
                         backoff_max_s=max(s.live_retry_backoff_s, 30.0), slippage_bps=s.copy_slippage_bps)


def live_config(s: Settings, key: "WalletKey") -> "LiveConfig":
    """The live executor's configuration (LIVE_*): what a swap may do, its fee, how it is sent and confirmed."""
    from adapters.jupiter import prioritization_fee
    from execution.live import LiveConfig
    from execution.verify import SwapPolicy, programs

    policy = SwapPolicy(key.pubkey, programs(s.live_programs), s.live_priority_max_lamports, s.live_jito_tip_lamports)
    return from_settings(
        LiveConfig, s, ("live_",), policy=policy,
        priority=prioritization_fee(s.live_priority_level, s.live_priority_max_lamports, s.live_jito_tip_lamports),
        reserve_lamports=int(s.live_reserve_sol * 10**9), rebroadcast_s=s.live_rebroadcast_ms / 1000,
        prepare_timeout_s=max(30.0, s.http_timeout_s * 6))


def supervision(s: Settings) -> tuple["Intensity", "Backoff"]:
    """The root supervisor's restart intensity and backoff."""
    from actors.supervision import Backoff, Intensity

    return (Intensity(s.supervisor_max_restarts, s.supervisor_period_s),
            Backoff(s.supervisor_backoff_s, max(s.supervisor_backoff_s, s.supervisor_backoff_max_s)))


def caps_in_force(s: Settings) -> list[str]:
    """The caps and breakers every new entry must pass (risk_config) and the entry size, one line each, with the
    variable that sets it: what a confirmation of a trading-mode change states."""
    r, rules = risk_config(s), copy_rules(s)

    def sol(x: Decimal) -> str:
        return f"{x:f} SOL" if x else "off"

    def minutes(seconds: float) -> str:
        return f"{seconds / 3600:g} h" if seconds >= 3600 else f"{seconds / 60:g} min"

    def stops(seconds: float) -> str:  # 0: the breaker holds until an operator resets it
        return f"stops entries {minutes(seconds)}" if seconds else "stops entries until reset"

    size = (f"fixed {rules.fixed_sol:f} SOL / {rules.fixed_usd:f} USD" if rules.sizing == "fixed" else
            f"{rules.percent:f}% of the leader's trade, {rules.min_sol:f}-{rules.max_sol:f} SOL")
    return [
        f"Max open positions: {r.max_open_positions or 'off'} (RISK_MAX_OPEN_POSITIONS)",
        f"Max exposure per token: {sol(r.max_token_exposure_sol)} (RISK_MAX_TOKEN_EXPOSURE_SOL)",
        f"Max total exposure: {sol(r.max_total_exposure_sol)} (RISK_MAX_TOTAL_EXPOSURE_SOL)",
        f"Max entries per UTC day: {r.max_trades_per_day or 'off'} (RISK_MAX_TRADES_PER_DAY)",
        f"Reserve kept: {r.reserve_sol:f} SOL of {r.starting_capital_sol:f} SOL starting capital (RISK_RESERVE_SOL)",
        f"Daily loss breaker: {sol(r.daily_loss_sol)} (BREAKER_DAILY_LOSS_SOL)",
        "Drawdown breaker: " + (f"{r.max_drawdown_pct:f}% from peak equity, {stops(r.drawdown_stop_s)}"
                                 if r.max_drawdown_pct else "off") + " (BREAKER_MAX_DRAWDOWN_PCT)",
        "Loss-streak breaker: " + (f"{r.loss_streak} losses within {minutes(r.loss_streak_window_s)}, "
                                   f"{stops(r.loss_streak_stop_s)}" if r.loss_streak else "off") + " (BREAKER_LOSS_STREAK)",
        "Wallet pause: " + (f"after {r.wallet_loss_streak} losses in a row, "
                             + (minutes(r.wallet_pause_s) if r.wallet_pause_s else "until reset")
                             if r.wallet_loss_streak else "off") + " (BREAKER_WALLET_LOSS_STREAK)",
        f"Token cooldown after a stop loss: {minutes(r.stoploss_cooldown_s) if r.stoploss_cooldown_s else 'off'}"
        " (BREAKER_STOPLOSS_COOLDOWN_MINUTES)",
        f"Entry size: {size} (COPY_SIZING)",
        f"Live: at most {s.live_max_trade_sol:f} SOL per entry (LIVE_MAX_TRADE_SOL), {sol(s.live_max_daily_sol)} per UTC day "
        f"(LIVE_MAX_DAILY_SOL), {sol(s.live_max_total_sol)} open in total (LIVE_MAX_TOTAL_SOL)",
        f"Live: {s.live_reserve_sol:f} SOL kept in the wallet for fees and rent (LIVE_RESERVE_SOL); "
        + ("a wallet key is configured" if s.has_wallet_key else "no wallet key configured: live is refused"),
    ]
