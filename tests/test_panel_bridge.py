"""The panel never blocks its event loop on an actor: `walltrack.bridge.ask` waits off the loop and
gives up after its timeout with an error the panel shows."""

from __future__ import annotations

import asyncio
import threading
import time

import pykka
import pytest

from walltrack.bridge import ask


class Slow(pykka.ThreadingActor):
    """An actor that takes `delay` seconds to answer (a busy mailbox, as an operator would meet it)."""

    def __init__(self, release: threading.Event) -> None:
        super().__init__()
        self.release = release

    def on_receive(self, message: object) -> object:
        self.release.wait(5)
        return ("answer", message)


def test_a_slow_actor_times_out_while_the_loop_keeps_running() -> None:
    release = threading.Event()
    ref = Slow.start(release)
    try:
        async def scenario() -> tuple[int, float, BaseException | None, object]:
            ticks = 0

            async def ticker() -> None:
                nonlocal ticks
                while True:
                    ticks += 1
                    await asyncio.sleep(0.01)

            task = asyncio.ensure_future(ticker())
            t0 = time.monotonic()
            error = None
            try:
                await ask(ref, "close", timeout=0.5)
            except TimeoutError as exc:
                error = exc
            waited = time.monotonic() - t0
            release.set()
            answer = await ask(ref, "again", timeout=5)
            task.cancel()
            return ticks, waited, error, answer

        ticks, waited, error, answer = asyncio.run(scenario())
        assert isinstance(error, TimeoutError) and "0.5 s" in str(error)
        assert 0.45 < waited < 2
        assert ticks >= 20  # the loop ran its other tasks throughout the wait (0.5 s at 10 ms a tick)
        assert answer == ("answer", "again")
    finally:
        release.set()
        ref.stop()


def test_an_answer_comes_back_as_is() -> None:
    release = threading.Event()
    release.set()
    ref = Slow.start(release)
    try:
        assert asyncio.run(ask(ref, 42, timeout=2)) == ("answer", 42)
    finally:
        ref.stop()
    with pytest.raises(pykka.ActorDeadError):
        asyncio.run(ask(ref, 1, timeout=1))


def test_a_browser_gone_before_its_response_is_one_line_and_real_errors_keep_their_trace() -> None:
    import io
    import logging

    from ui.server import _ClientGone

    out = io.StringIO()
    logger = logging.Logger("uvicorn.error.test")
    logger.addHandler(logging.StreamHandler(out))
    logger.addFilter(_ClientGone())
    for exc in (RuntimeError("No response returned."), ValueError("a real failure")):
        try:
            raise exc
        except Exception:  # noqa: BLE001
            logger.exception("Exception in ASGI application")
    lines = out.getvalue().splitlines()
    assert lines[0] == "panel: the browser disconnected before its response"
    assert "Traceback (most recent call last):" in lines and lines[-1] == "ValueError: a real failure"
    assert out.getvalue().count("Traceback") == 1


def test_the_config_page_shows_every_setting_once(make_settings) -> None:  # noqa: ANN001
    from ui.config import GROUPS, settings_rows

    settings = make_settings()
    groups, secrets = settings_rows(settings)
    shown = [r["name"] for rows in groups.values() for r in rows] + [r["name"] for r in secrets]
    assert sorted(shown) == sorted(n.upper() for n in type(settings).model_fields)  # none hidden, none twice
    assert {r["name"] for r in groups["Supervision"]} >= {"SUPERVISOR_MAX_RESTARTS", "SUPERVISOR_PERIOD_S"}
    assert groups["Other"] == [], [r["name"] for r in groups["Other"]]  # every setting has a group of its own
    assert GROUPS[-1] == ("Other", ("",))
