"""Shared fixtures: one embedded PostgreSQL for the session, a fresh database per test, a running App."""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import asyncpg
import pykka
import pytest

from walltrack.app import App
from storage.db import EmbeddedPostgres, fetch
from walltrack.settings import load_settings

FIXTURES = Path(__file__).resolve().parent / "fixtures"  # real payloads, copied from shared/fixtures

SECRET = "test-webhook-secret-7f3a"
# A throwaway keypair, generated for the tests: it must never show up in logs or the database.
WALLET_KEY = "8NNrSWUqML3798uWMTEVUpkGbQUs3xRPRvJpeJgfG5Tqt5X7qGeW3Ze5byHLmuUEc3h9TCvk8NRgZakvrDDRabi"
PUMP_WALLET = "9JGuVmjXTeMea6VY6fpsu8783YeJME8bewyy9qv9UBxh"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02) -> Any:
    """Poll a condition until it holds (synchronisation on an observable outcome, not a fixed sleep)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    pg = EmbeddedPostgres(tmp_path_factory.mktemp("pg") / "data")
    yield pg
    pg.close()


def new_database(pg: EmbeddedPostgres) -> str:
    """A fresh, empty database on `pg`; its URL."""
    name = "t_" + uuid.uuid4().hex[:12]

    async def create() -> None:
        conn = await asyncpg.connect(pg.url)
        await conn.execute(f"CREATE DATABASE {name}")
        await conn.close()

    asyncio.run(create())
    return pg.url.replace("/postgres?", f"/{name}?", 1)


@pytest.fixture
def db_url(pg_server: EmbeddedPostgres) -> str:
    return new_database(pg_server)


def sql(url: str, query: str, *args: Any) -> list[asyncpg.Record]:
    return fetch(url, query, *args)


@pytest.fixture
def make_settings(tmp_path: Path, db_url: str) -> Callable[..., Any]:
    def make(**overrides: Any):  # noqa: ANN202
        values = dict(
            walltrack_data_dir=tmp_path / "data",
            database_url=db_url,
            helius_webhook_secret=SECRET,
            wallet_private_key=WALLET_KEY,
            gateway_port=0,
            safety_enabled=False,  # the spine's tests; the safety path is tested against the sandbox
            _env_file=None,
        )
        values.update(overrides)
        return load_settings(**values)

    return make


@pytest.fixture
def app(make_settings: Callable[..., Any]) -> Iterator[App]:
    a = App(make_settings()).start()
    try:
        yield a
    finally:
        a.stop()
        pykka.ActorRegistry.stop_all()


@pytest.fixture(autouse=True)
def _stop_pooled_actors() -> Iterator[None]:
    """Actors a test started outside an App run on the default runtime (not in pykka's registry): stop them after."""
    yield
    from actors.runtime import Runtime

    Runtime.default().stop_all()


@pytest.fixture(autouse=True)
def _no_env_leak(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests build settings explicitly; the developer's environment and .env must not leak in."""
    for var in ("DATABASE_URL", "HELIUS_WEBHOOK_SECRET", "WALLET_PRIVATE_KEY", "TRADING_MODE", "GATEWAY_PORT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    os.environ.setdefault("WALLTRACK_TEST", "1")


CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="session")
def chromium() -> Path:
    """Debian's Chromium for the panel's browser tests: installed here where missing (as .ci/run does), never
    downloaded by a test tool, and never skipped — a missing browser fails with what to do."""
    import shutil
    import subprocess

    if not CHROMIUM.exists() and os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "update"], capture_output=True, timeout=600)
        subprocess.run(["apt-get", "install", "-y", "chromium"], capture_output=True, timeout=900)
    if not CHROMIUM.exists():
        pytest.fail("the panel tests need Debian's chromium at /usr/bin/chromium: run `apt-get install -y chromium` "
                    "(as root), or .ci/run, which installs it", pytrace=False)
    return CHROMIUM
