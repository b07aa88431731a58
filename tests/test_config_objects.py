"""The config objects are built from the settings by name (walltrack/config.py), not copied field by field."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import pytest

from actors.risk import RiskConfig
from walltrack.config import exit_plan, from_settings, live_policy, risk_config, safety_config
from walltrack.settings import load_settings


def test_each_field_is_read_from_its_setting_with_its_unit() -> None:
    s = load_settings(risk_max_open_positions=7, breaker_drawdown_stop_hours=3.5, breaker_loss_streak_window_minutes=33,
                      live_max_daily_sol=Decimal("4"), exit_retry_s=12, exit_take_profit="20:0.3,40:0.7",
                      safety_max_pool_age_hours=5, safety_weights="liquidity=7", live_max_attempts=5)
    risk = risk_config(s)
    assert (risk.max_open_positions, risk.drawdown_stop_s, risk.loss_streak_window_s) == (7, 12600.0, 1980.0)
    assert risk.live_max_daily_sol == Decimal("4") and risk.reservation_ttl_s == RiskConfig().reservation_ttl_s
    plan = exit_plan(s)
    assert plan.exit_retry_s == 12 and plan.take_profit == ((Decimal(20), Decimal("0.3")), (Decimal(40), Decimal("0.7")))
    safety = safety_config(s)
    assert safety.max_pool_age_s == 5 * 3600 and safety.weights["liquidity"] == 7.0 and safety.weights["rugcheck"] == 2.0
    assert live_policy(s).max_attempts == 5


def test_a_config_field_without_a_setting_must_be_kept_or_given() -> None:
    @dataclass(frozen=True)
    class Config:
        max_open_positions: int = 1
        no_such_setting_s: float = 2.0

    s = load_settings(risk_max_open_positions=9)
    with pytest.raises(TypeError, match="Config.no_such_setting_s"):
        from_settings(Config, s, ("risk_",))
    assert from_settings(Config, s, ("risk_",), keep=("no_such_setting_s",)) == Config(9, 2.0)
    assert from_settings(Config, s, ("risk_",), no_such_setting_s=5.0) == Config(9, 5.0)
