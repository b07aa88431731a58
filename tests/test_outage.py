"""A database outage: /health says 503, the webhook never acknowledges what it could not store, and
everything resumes by itself when PostgreSQL returns."""

from __future__ import annotations

from pathlib import Path

import httpx
import pykka

from tests.conftest import PUMP_WALLET, SECRET, fixture, wait_until
from storage import repo
from walltrack.app import App
from storage.db import EmbeddedPostgres
from walltrack.settings import load_settings

PUMP = fixture("helius_enhanced_pump_amm_swaps_trimmed.json")


def test_outage_gives_503_then_recovers(tmp_path: Path) -> None:
    pg = EmbeddedPostgres(tmp_path / "pg")
    settings = load_settings(_env_file=None, walltrack_data_dir=tmp_path / "data", database_url=pg.url,
                             helius_webhook_secret=SECRET, gateway_port=0)
    app = App(settings).start()
    base = f"http://127.0.0.1:{app.gateway_port}"
    post = lambda body: httpx.post(f"{base}/webhooks/helius", json=body, headers={"Authorization": SECRET}, timeout=15)  # noqa: E731
    try:
        assert app.store is not None
        app.store.run(lambda c: repo.add_wallet(c, PUMP_WALLET, None))
        wait_until(lambda: PUMP_WALLET in app.watched)

        pg.stop_server()
        health = httpx.get(f"{base}/health", timeout=10)
        assert health.status_code == 503 and health.json()["database"] == "unreachable"
        refused = post([PUMP[0]])
        assert refused.status_code == 503 and refused.json()["error"] == "database_unavailable"
        assert refused.headers["Retry-After"]

        pg.start_server()
        wait_until(lambda: httpx.get(f"{base}/health", timeout=10).status_code == 200, timeout=30, interval=0.2)
        assert post([PUMP[0]]).json() == {"accepted": 1, "duplicates": 0}  # Helius' retry is now stored
        rows = wait_until(lambda: app.store.run(lambda c: c.fetch("SELECT * FROM positions")), timeout=30)  # type: ignore[union-attr]
        assert len(rows) == 1
    finally:
        app.stop()
        pykka.ActorRegistry.stop_all()
        pg.close()
