"""The supervision rules: restart types, strategies, intensity and escalation, backoff with jitter."""

from __future__ import annotations

import random

import pytest

from actors.supervision import Backoff, Escalate, Intensity, Remove, Restart, RestartChildren, RestartPolicy, Strategy


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def policy(strategy: Strategy = Strategy.ONE_FOR_ONE, n: int = 3, period: float = 5.0) -> tuple[RestartPolicy, Clock]:
    clock = Clock()
    return RestartPolicy(strategy, Intensity(n, period), Backoff(0.1, 5.0, 0.2), clock, random.Random(1)), clock


ORDER = ("store", "risk", "wallets", "positions")


@pytest.mark.parametrize("restart, abnormal, restarted", [
    (Restart.PERMANENT, True, True), (Restart.PERMANENT, False, True),
    (Restart.TRANSIENT, True, True), (Restart.TRANSIENT, False, False),
    (Restart.TEMPORARY, True, False), (Restart.TEMPORARY, False, False),
])
def test_restart_types(restart: Restart, abnormal: bool, restarted: bool) -> None:
    p, _ = policy()
    d = p.on_exit("risk", restart, abnormal, ORDER)
    assert isinstance(d, RestartChildren) if restarted else d == Remove("risk")


def test_one_for_one_restarts_only_the_failed_child() -> None:
    p, _ = policy()
    d = p.on_exit("wallets", Restart.PERMANENT, True, ORDER)
    assert isinstance(d, RestartChildren) and d.start == ("wallets",) and d.stop == ()


def test_rest_for_one_restarts_the_child_and_those_started_after_it() -> None:
    p, _ = policy(Strategy.REST_FOR_ONE)
    d = p.on_exit("risk", Restart.PERMANENT, True, ORDER)
    assert isinstance(d, RestartChildren)
    assert d.stop == ("positions", "wallets")  # the later ones, in reverse start order
    assert d.start == ("risk", "wallets", "positions")  # then everyone again, in start order


def test_intensity_exceeded_escalates_and_old_restarts_age_out() -> None:
    p, clock = policy(n=3, period=5.0)
    for _ in range(3):
        assert isinstance(p.on_exit("risk", Restart.PERMANENT, True, ORDER), RestartChildren)
        clock.t += 1.0
    d = p.on_exit("risk", Restart.PERMANENT, True, ORDER, reason="boom")
    assert isinstance(d, Escalate) and "4 times within 5 s" in d.reason and "boom" in d.reason
    clock.t += 10.0  # the earlier restarts are now outside the period
    assert isinstance(p.on_exit("risk", Restart.PERMANENT, True, ORDER), RestartChildren)


def test_backoff_doubles_with_jitter_and_is_capped() -> None:
    p, _ = policy(n=10, period=100.0)
    delays = [p.on_exit("risk", Restart.PERMANENT, True, ORDER).delay_s for _ in range(9)]  # type: ignore[union-attr]
    for i, d in enumerate(delays):
        base = min(5.0, 0.1 * 2**i)
        assert base * 0.8 <= d <= base * 1.2
    assert delays[-1] <= 5.0 * 1.2 and len(set(delays)) == len(delays)  # jittered, not identical
    assert Backoff(1.0, 2.0, 0.0).delay(5, random.Random()) == 2.0
