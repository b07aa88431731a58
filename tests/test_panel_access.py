"""Who may reach the panel: loopback by default; any other address only with WALLTRACK_PANEL_PASSWORD, and
then every page and action sits behind the login page. Also: a breaker tripped by the real bot, reset from
the (signed-in) panel."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from test_panel import NEEDS_BROWSER, Demo, launch_browser, rows, shot, sql

PASSWORD = "correct horse battery staple"
PAGES = ("/", "/watchlist", "/signals", "/config", "/position/1")


@pytest.mark.parametrize("command", [["run"], ["demo"]])
def test_a_non_loopback_panel_without_a_password_is_refused_before_anything_starts(tmp_path: Path, command: list[str]) -> None:
    d = Demo(tmp_path / "data", PANEL_HOST="0.0.0.0")
    r = subprocess.run([sys.executable, "-m", "walltrack.cli", *command, *(d.args[4:] if command == ["demo"] else [])],
                       env=d.env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, (r.stdout[-2000:], r.stderr[-2000:])
    assert "refusing to serve the panel on 0.0.0.0" in r.stderr
    assert "WALLTRACK_PANEL_PASSWORD" in r.stderr
    assert not (tmp_path / "data" / "pg").exists()  # refused before the database (or anything) started


@pytest.mark.parametrize("command", [["run"], ["demo"]])
def test_a_panel_port_already_held_is_refused_before_anything_starts(tmp_path: Path, command: list[str]) -> None:
    d = Demo(tmp_path / "data")
    d.env["PANEL_PORT"] = str(d.panel_port)  # `run` reads it from here, `demo` from --panel-port too
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", d.panel_port))
        holder.listen(1)
        r = subprocess.run([sys.executable, "-m", "walltrack.cli", *command, *(d.args[4:] if command == ["demo"] else [])],
                           env=d.env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, (r.stdout[-2000:], r.stderr[-2000:])
    assert f"the panel cannot listen on 127.0.0.1:{d.panel_port}" in r.stderr and "PANEL_PORT" in r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "data" / "pg").exists()


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    # One losing close trips the loss-streak breaker, until an operator resets it.
    d = Demo(tmp_path_factory.mktemp("guarded") / "data", speed=40, PANEL_HOST="0.0.0.0",
             WALLTRACK_PANEL_PASSWORD=PASSWORD, BREAKER_LOSS_STREAK="1", BREAKER_LOSS_STREAK_STOP_MINUTES="0").start()
    yield d
    assert d.stop() == 0, d.log.read_text()[-3000:]
    assert PASSWORD not in d.log.read_text()  # the password is a secret: redacted from every log line


@NEEDS_BROWSER
def test_every_page_and_action_needs_the_password(guarded: Demo) -> None:
    from playwright.sync_api import expect, sync_playwright

    with httpx.Client(base_url=guarded.url, follow_redirects=False, timeout=10) as client:
        for path in PAGES:
            r = client.get(path)
            assert r.status_code == 303 and r.headers["location"].startswith("/login?next="), (path, r.status_code)
        # NiceGUI's event channel (socket.io) refuses an unauthenticated client: no action without a session
        assert client.get("/_nicegui_ws/socket.io/", params={"EIO": "4", "transport": "polling"}).status_code == 401
        assert client.post("/login", data={"password": "wrong", "next": "/"}).status_code == 401
        r = client.post("/login", data={"password": PASSWORD, "next": "https://evil.example/"})
        assert r.status_code == 303 and r.headers["location"] == "/"  # never an open redirect
        for path in PAGES:  # the session cookie opens every page
            assert client.get(path).status_code == 200, path

    with sync_playwright() as p:
        browser = launch_browser(p)
        page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
        for path in PAGES:
            page.goto(guarded.url + path)
            expect(page).to_have_url(guarded.url + "/login?next=" + path.replace("/", "%2F"))
        shot(page, "login")
        page.fill("#password", "not the password")
        page.click("button[type=submit]")
        expect(page.get_by_role("alert")).to_have_text("Wrong password.")
        page.goto(guarded.url + "/watchlist")
        page.fill("#password", PASSWORD)
        page.click("button[type=submit]")
        expect(page).to_have_url(guarded.url + "/watchlist")
        expect(rows(page, "wallets").first).to_be_visible()

        # Signed in: a breaker tripped by the bot (the first losing close) shows with its reason, and resets.
        page.goto(guarded.url + "/")
        tripped = page.get_by_test_id("breaker-loss_streak")
        expect(tripped).to_contain_text("consecutive losses", timeout=90_000)
        expect(page.get_by_test_id("breaker-summary")).to_contain_text("tripped")
        shot(page, "dashboard-breaker-tripped")
        db = guarded.db_url()
        assert sql(db, "SELECT state FROM breakers WHERE name = 'loss_streak'")[0]["state"] == "tripped"
        page.get_by_test_id("reset-loss_streak").click()
        page.get_by_role("dialog").get_by_role("button", name="Reset").click()
        expect(page.get_by_text("breaker loss_streak reset")).to_be_visible()
        resets = sql(db, "SELECT by FROM breaker_events WHERE name = 'loss_streak' AND kind = 'reset'")
        assert [r["by"] for r in resets] == ["operator"]
        page.get_by_role("link", name="Sign out").click()
        expect(page).to_have_url(guarded.url + "/login")
        page.goto(guarded.url + "/")
        expect(page).to_have_url(guarded.url + "/login?next=%2F")
        browser.close()
