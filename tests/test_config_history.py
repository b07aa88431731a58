"""Config history (schema/009): every watchlist, copy-rule or trading-mode change is a snapshot with who, what and
when, whoever made it; `walltrack config export` / `import` round-trip the configuration."""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import asyncpg
import pykka
import pytest

from tests.conftest import PUMP_WALLET, SECRET
from tests.conftest import new_database, sql, wait_until
from walltrack.app import App

OTHER = "So11111111111111111111111111111111111111112"
THIRD = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"


def cli(data: Path, db: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "HELIUS_", "ALERT_"))}
    env.update(WALLTRACK_DATA_DIR=str(data), DATABASE_URL=db, HELIUS_WEBHOOK_SECRET=SECRET)
    r = subprocess.run([sys.executable, "-m", "walltrack.cli", *args], env=env, cwd=data.parent, capture_output=True,
                       text=True, timeout=120)
    if check:
        assert r.returncode == 0, r.stderr
    return r


def test_every_change_is_a_snapshot_with_who_and_what(tmp_path: Path, db_url: str) -> None:
    data = tmp_path / "data"
    cli(data, db_url, "wallets", "add", PUMP_WALLET, "--label", "pump trader")
    cli(data, db_url, "wallets", "add", PUMP_WALLET, "--label", "pump trader")  # no change: no entry
    cli(data, db_url, "wallets", "set", PUMP_WALLET, "sizing=percent", "percent=5")
    cli(data, db_url, "mode", "set", "off")
    cli(data, db_url, "wallets", "remove", PUMP_WALLET)
    history = json.loads(cli(data, db_url, "config", "history", "--json").stdout)
    assert [h["changes"] for h in reversed(history)] == [
        [{"table": "wallets", "op": "insert", "key": PUMP_WALLET}],
        [{"table": "wallets", "op": "update", "key": PUMP_WALLET, "fields": ["settings"]}],
        [{"table": "runtime_settings", "op": "insert", "key": "trading_mode"}],
        [{"table": "wallets", "op": "delete", "key": PUMP_WALLET}],
    ]
    assert {h["by"] for h in history} == {f"cli:{getpass.getuser()}"}
    snapshots = [r["snapshot"] for r in sql(db_url, "SELECT snapshot::text FROM config_history ORDER BY id")]
    second = json.loads(snapshots[1])
    assert second["wallets"][0]["settings"] == {"sizing": "percent", "percent": "5"}
    assert json.loads(snapshots[-1]) == {"runtime_settings": {"trading_mode": "off"}, "wallets": []}
    text = cli(data, db_url, "config", "history").stdout
    assert f"wallets update {PUMP_WALLET} (settings)" in text and "runtime_settings insert trading_mode" in text

    # any writer lands too, named by what it says it is (here psql-like: its application_name)
    async def as_psql() -> None:
        conn = await asyncpg.connect(db_url, server_settings={"application_name": "psql"})
        await conn.execute("UPDATE runtime_settings SET value = 'paper', updated_by = 'x'")
        await conn.close()

    asyncio.run(as_psql())
    last = json.loads(cli(data, db_url, "config", "history", "--json", "--limit", "1").stdout)[0]
    assert last["changes"] == [{"table": "runtime_settings", "op": "update", "key": "trading_mode", "fields": ["value"]}]
    assert last["by"] == "psql"


def test_export_import_round_trips_into_a_fresh_database(tmp_path: Path, db_url: str, pg_server: Any) -> None:
    data = tmp_path / "data"
    cli(data, db_url, "wallets", "add", PUMP_WALLET, "--label", "pump trader")
    cli(data, db_url, "wallets", "add", OTHER, "--label", "second")
    cli(data, db_url, "wallets", "set", OTHER, "mode=off", "max_sol=0.25")
    cli(data, db_url, "mode", "set", "off")
    exported = tmp_path / "config.json"
    cli(data, db_url, "config", "export", "-o", str(exported))
    doc = json.loads(exported.read_text())
    assert doc["format"] == "walltrack-config" and doc["runtime_settings"] == {"trading_mode": "off"}
    assert doc["settings"]["helius_webhook_secret"] == "(set)" and SECRET not in exported.read_text()

    fresh = new_database(pg_server)
    dry = cli(data, fresh, "config", "import", str(exported), "--dry-run").stdout
    assert f"would add {PUMP_WALLET} (pump trader)" in dry and "would trading mode (TRADING_MODE) -> off" in dry
    assert sql(fresh, "SELECT count(*) AS n FROM wallets")[0]["n"] == 0  # a dry run changes nothing
    cli(data, fresh, "wallets", "add", THIRD)  # not in the file: the import removes it (without --merge)
    out = cli(data, fresh, "config", "import", str(exported)).stdout
    assert f"remove {THIRD}" in out
    again = json.loads(cli(data, fresh, "config", "export").stdout)
    strip = lambda d: {k: v for k, v in d.items() if k not in ("exported_at", "settings", "settings_source")}  # noqa: E731
    assert strip(again) == strip(doc)
    assert cli(data, fresh, "config", "import", str(exported)).stdout.startswith("nothing to change")
    history = json.loads(cli(data, fresh, "config", "history", "--json").stdout)
    assert history[0]["by"] == f"import:{getpass.getuser()}"


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.update(format="other"), "not a WallTrack config export"),
    (lambda d: d["wallets"].append({"address": "not-an-address"}), "wallets[1]: address must be a Solana address"),
    (lambda d: d["wallets"][0].update(settings={"percent": "500"}), "wallets[0]:"),
    (lambda d: d["wallets"][0].update(settings={"nonsense": 1}), "unknown copy rule(s) nonsense"),
    (lambda d: d.update(runtime_settings={"trading_mode": "live"}), "live_not_available"),
])
def test_a_bad_import_is_one_clear_line_and_changes_nothing(tmp_path: Path, db_url: str,
                                                            mutate: Callable[[dict], None], message: str) -> None:
    data = tmp_path / "data"
    doc = {"format": "walltrack-config", "version": 1, "runtime_settings": {},
           "wallets": [{"address": PUMP_WALLET, "label": None, "status": "active", "settings": {}}]}
    mutate(doc)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    r = cli(data, db_url, "config", "import", str(path), check=False)
    assert r.returncode == 2 and message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert json.loads(cli(data, db_url, "wallets", "list", "--json").stdout) == []


def test_the_bot_records_its_settings_when_they_change_and_panel_changes_are_the_panels(
        make_settings: Callable[..., Any], db_url: str) -> None:
    import ui
    from walltrack.panel import PanelBackend

    def start(**overrides: Any) -> App:
        return App(make_settings(**overrides)).start()

    settings_rows = lambda: sql(db_url, "SELECT snapshot::text FROM config_history WHERE kind = 'settings' ORDER BY id")  # noqa: E731
    for overrides in ({}, {}, {"copy_fixed_sol": "0.2"}):
        app = start(**overrides)
        app.stop()
        pykka.ActorRegistry.stop_all()
    rows = settings_rows()
    assert len(rows) == 2  # the second start changed nothing
    last = json.loads(rows[-1]["snapshot"])
    assert last["copy_fixed_sol"] == "0.2" and last["wallet_private_key"] == "(set)"
    assert all(SECRET not in r["snapshot"] for r in rows)

    app = start()
    try:
        backend = PanelBackend(app)
        asyncio.run(backend.command(ui.AddWallet(PUMP_WALLET, "from the panel")))
        wait_until(lambda: PUMP_WALLET in app.watched)
        row = sql(db_url, "SELECT by, changes::text FROM config_history WHERE kind = 'config' ORDER BY id DESC LIMIT 1")[0]
        assert row["by"] == "panel" and PUMP_WALLET in row["changes"]
    finally:
        app.stop()
        pykka.ActorRegistry.stop_all()
