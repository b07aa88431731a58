"""Copy rules: global defaults (from the settings) overridable per watched wallet (`wallets.settings`).

`CopyRules` is a frozen pydantic model, validated like the settings are. A wallet's overrides are a JSON
object of field -> value; `effective(defaults, overrides)` is what the wallet actor decides with, and
`apply_assignments` turns the CLI's `key=value` words into validated overrides (`key=` removes one).

Amounts in SOL/USD are Decimals; filters set to None are off. Tuple fields accept comma-separated text.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any, Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

_HOURS = re.compile(r"^(\d{1,2})-(\d{1,2})$")


class RulesError(ValueError):
    """An override names an unknown rule or has a bad value (reply with the message; never retried)."""


TRADING_MODES = ("off", "paper", "live")
LIVE_NOT_AVAILABLE = "live_not_available"  # no wallet key: the skip reason of a live buy, the refusal of a switch to live
GLOBAL_OFF = "mode:off"  # the skip reason of every buy while the global trading mode is off


def mode_refusal(mode: str, live_available: bool = False) -> str | None:
    """Why the global trading mode cannot be set to `mode` (None: it can). Live needs a wallet key (live execution
    is available once one is configured): without one it is refused — never a silent fall-back to paper."""
    if mode not in TRADING_MODES:
        return f"unknown trading mode {mode!r}: one of {', '.join(TRADING_MODES)}"
    if mode == "live" and not live_available:
        return (f"{LIVE_NOT_AVAILABLE}: no wallet key is configured (set WALLET_KEYPAIR_PATH to a Solana key file, "
                "or WALLET_PRIVATE_KEY, and restart), so live mode is refused — buys in live mode are skipped with "
                "this reason, never copied on paper instead. Choose paper or off.")
    return None


class CopyRules(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    # mode: off (record and shadow only), paper, live (needs a wallet key and the global mode live)
    mode: Literal["off", "paper", "live"] = "paper"
    # sizing: a fixed amount, or a percentage of the leader's trade clamped to [min, max]
    sizing: Literal["fixed", "percent"] = "fixed"
    fixed_sol: Decimal = Field(default=Decimal("0.1"), gt=0)
    fixed_usd: Decimal = Field(default=Decimal("20"), gt=0)
    percent: Decimal = Field(default=Decimal("10"), gt=0, le=100)
    min_sol: Decimal = Field(default=Decimal("0.01"), ge=0)
    max_sol: Decimal = Field(default=Decimal("1"), gt=0)
    min_usd: Decimal = Field(default=Decimal("2"), ge=0)
    max_usd: Decimal = Field(default=Decimal("200"), gt=0)
    # filters on the leader's trade (SOL-quoted trades) and on the token (facts from the safety verdict)
    leader_min_sol: Decimal | None = Field(default=None, ge=0)
    leader_max_sol: Decimal | None = Field(default=None, gt=0)
    min_liquidity_usd: float | None = Field(default=None, ge=0)
    min_market_cap_usd: float | None = Field(default=None, ge=0)
    max_market_cap_usd: float | None = Field(default=None, gt=0)
    max_pool_age_hours: float | None = Field(default=None, gt=0)
    blacklist: tuple[str, ...] = ()
    allowed_sources: tuple[str, ...] = ()  # empty: any; else the trade's source or the pool's DEX must match
    active_hours: str | None = None  # "HH-HH" in UTC, end exclusive; "22-06" wraps midnight
    # duplicate control per wallet and token, over the current holding (our entries in the token not yet all
    # closed): 1 = buy once, no averaging in; the leader's add-on buys (it already holds the token) are skipped
    max_buys_per_token: int = Field(default=1, ge=1)
    max_sol_per_token: Decimal | None = Field(default=None, gt=0)
    skip_add_ons: bool = True
    # execution limits handed to the executor; an entry whose measured impact exceeds the max is skipped
    slippage_bps: int = Field(default=100, ge=0, le=5000)
    max_price_impact_pct: float | None = Field(default=None, gt=0)

    @field_validator("blacklist", "allowed_sources", mode="before")
    @classmethod
    def _csv(cls, v: Any) -> Any:
        if isinstance(v, str):
            return tuple(p.strip() for p in v.split(",") if p.strip())
        return v

    @field_validator("active_hours")
    @classmethod
    def _hours(cls, v: str | None) -> str | None:
        if v is None or v == "":
            return None
        m = _HOURS.match(v.strip())
        if not m or not all(0 <= int(h) <= 24 for h in m.groups()) or m.group(1) == m.group(2):
            raise ValueError("must be HH-HH in UTC, e.g. 08-22 or 22-06")
        return f"{int(m.group(1)):02d}-{int(m.group(2)):02d}"

    @model_validator(mode="after")
    def _ranges(self) -> "CopyRules":
        for lo, hi in (("min_sol", "max_sol"), ("min_usd", "max_usd"), ("leader_min_sol", "leader_max_sol"),
                       ("min_market_cap_usd", "max_market_cap_usd")):
            a, b = getattr(self, lo), getattr(self, hi)
            if a is not None and b is not None and a > b:
                raise ValueError(f"{lo} must not exceed {hi}")
        return self

    def in_active_hours(self, now: float) -> bool:
        if self.active_hours is None:
            return True
        start, end = (int(h) for h in self.active_hours.split("-"))
        hour = int(now // 3600) % 24
        return start <= hour < end if start < end else (hour >= start or hour < end)


def effective(defaults: CopyRules, overrides: Mapping[str, Any] | None) -> CopyRules:
    """The defaults with a wallet's overrides applied (validated together)."""
    if not overrides:
        return defaults
    try:
        return CopyRules.model_validate({**defaults.model_dump(), **overrides})
    except ValidationError as exc:
        raise RulesError(_message(exc)) from None


def apply_assignments(defaults: CopyRules, current: Mapping[str, Any], words: list[str]) -> dict[str, Any]:
    """`key=value` words applied to a wallet's overrides; `key=` removes one. Returns the new overrides."""
    out = dict(current)
    for word in words:
        key, sep, value = word.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in CopyRules.model_fields:
            raise RulesError(f"{word!r}: expected key=value with key one of {', '.join(CopyRules.model_fields)}")
        if value == "":
            out.pop(key, None)
        else:
            out[key] = value
    rules = effective(defaults, out)
    dumped = rules.model_dump(mode="json")
    return {k: dumped[k] for k in out}  # canonical values (validated, normalised)


def _message(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'rules'}: {e['msg'].removeprefix('Value error, ')}"
                     for e in exc.errors(include_input=False, include_url=False))
