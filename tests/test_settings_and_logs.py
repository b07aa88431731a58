"""Settings fail with one clear message naming the variable; secrets never reach a log line."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import structlog

from tests.conftest import SECRET, WALLET_KEY
from walltrack.logs import REDACTED, Redactor, configure_logging
from execution.keys import secret_forms
from walltrack.settings import ConfigError, load_settings

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    "overrides, variable",
    [
        ({"gateway_port": "eighty"}, "GATEWAY_PORT"),
        ({"trading_mode": "yolo"}, "TRADING_MODE"),
        ({"helius_webhook_secret": "short"}, "HELIUS_WEBHOOK_SECRET"),
        ({"wallet_private_key": "not-a-key"}, "WALLET_PRIVATE_KEY"),
        ({"database_url": "mysql://x"}, "DATABASE_URL"),
        ({"copy_fixed_sol": "-1"}, "COPY_FIXED_SOL"),
        ({"safety_weights": "liquidity=3,vibes=2"}, "SAFETY_WEIGHTS"),
        ({"safety_weights": "liquidity=-1"}, "SAFETY_WEIGHTS"),
        ({"safety_hard_checks": "freeze_authority,astrology"}, "SAFETY_HARD_CHECKS"),
    ],
)
def test_invalid_setting_names_the_variable(overrides: dict, variable: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(_env_file=None, **overrides)
    assert variable in str(err.value)
    assert "not-a-key" not in str(err.value)


def test_live_mode_requires_the_wallet_key() -> None:
    with pytest.raises(ConfigError, match="WALLET_PRIVATE_KEY is required"):
        load_settings(_env_file=None, trading_mode="live")


def test_secrets_print_masked() -> None:
    s = load_settings(_env_file=None, helius_webhook_secret=SECRET, wallet_private_key=WALLET_KEY)
    assert SECRET not in repr(s) and WALLET_KEY not in repr(s) and WALLET_KEY not in str(s.model_dump())
    assert set(s.secrets()) == {SECRET, *secret_forms(WALLET_KEY)} and WALLET_KEY in s.secrets()


def test_cli_stops_with_one_clear_message(tmp_path: Path) -> None:
    env = dict(os.environ, WALLTRACK_DATA_DIR=str(tmp_path), WALLET_PRIVATE_KEY="x" + WALLET_KEY[1:], GATEWAY_PORT="1")
    r = subprocess.run([sys.executable, "-m", "walltrack.cli", "wallets", "list"], env=env, cwd=tmp_path,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "WALLET_PRIVATE_KEY" in r.stderr and "Traceback" not in r.stderr
    assert WALLET_KEY[1:] not in r.stderr


def test_no_secret_in_any_log_line_even_in_a_traceback(tmp_path: Path) -> None:
    out = io.StringIO()
    configure_logging(Redactor([SECRET, WALLET_KEY]), "DEBUG", tmp_path / "logs", stream=out)
    log = structlog.get_logger("test")
    log.info("config", secret=SECRET, nested={"key": WALLET_KEY})
    try:
        raise RuntimeError(f"failed to sign with {WALLET_KEY} (auth {SECRET})")
    except RuntimeError:
        log.exception("boom")
    logging.getLogger("hypercorn.error").error("header was %s", SECRET)  # a stdlib logger, too
    file_text = (tmp_path / "logs" / "walltrack.log").read_text()
    for text in (out.getvalue(), file_text):
        lines = text.strip().splitlines()
        assert len(lines) == 3 and all(json.loads(line) for line in lines)
        assert SECRET not in text and WALLET_KEY not in text
        assert text.count(REDACTED) >= 5
        assert "Traceback" in text and "RuntimeError" in text  # the trace itself is kept


def test_log_file_rotates_by_size(tmp_path: Path) -> None:
    configure_logging(Redactor(), "INFO", tmp_path, max_bytes=4096, backups=2, stream=io.StringIO())
    log = structlog.get_logger("test")
    for i in range(200):
        log.info("filler", i=i, pad="x" * 100)
    files = sorted(p.name for p in tmp_path.glob("walltrack.log*"))
    assert files == ["walltrack.log", "walltrack.log.1", "walltrack.log.2"]
    assert all(p.stat().st_size <= 4096 + 512 for p in tmp_path.glob("walltrack.log*"))


def test_redactor_replaces_longest_secret_first() -> None:
    r = Redactor(["abcd1234", "abcd1234efgh"])
    assert r("x abcd1234efgh y abcd1234") == f"x {REDACTED} y {REDACTED}"
