"""Shared pieces of the panel's pages: the frame (header, navigation), formatting, running a command with a
visible outcome, and a periodic refresh that never overlaps itself nor blocks the loop."""

from __future__ import annotations

import time
from typing import Any, Awaitable, Callable, Protocol

from nicegui import ui

from ui.backend import Backend, Command, PanelError

REFRESH_S = 3.0  # live updates: every page re-reads its projections this often


def column(field: str, label: str, align: str = "left", **extra: Any) -> dict[str, Any]:
    """A table column (Quasar's shape) named after the row field it shows."""
    return {"name": field, "label": label, "field": field, "align": align, **extra}
MODE_COLORS = {"off": "grey-7", "paper": "green", "live": "orange"}


def frame(title: str, backend: Backend, *, auth: bool) -> ui.label:
    """The page header and navigation; returns the page's error banner (hidden until a read fails)."""
    ui.page_title(f"WallTrack — {title}")
    with ui.header(elevated=True).classes("items-center bg-slate-800 text-white q-px-md"):
        ui.label("WallTrack").classes("text-lg text-weight-bold q-mr-lg")
        for text, href in (("Dashboard", "/"), ("Watchlist", "/watchlist"), ("Signals", "/signals"), ("Config", "/config")):
            link = ui.link(text, href).classes("text-white q-mr-md no-underline")
            if text == title:
                link.classes("text-weight-bold underline")
        ui.space()
        badge = ui.badge("").props("data-testid=mode-badge")

        def show_mode() -> None:  # the mode the running bot was told: no I/O, so every page keeps it current
            mode = backend.trading_mode()
            if badge.text != f"{mode} mode":
                badge.set_text(f"{mode} mode")
                badge.props(f"color={MODE_COLORS.get(mode, 'grey')}")

        show_mode()
        # not immediate: a timer that starts waits for the browser's connection, and NiceGUI then serves the page
        # at once — before the page's own first read (`every`) has put its data in the HTML
        ui.timer(REFRESH_S, show_mode, immediate=False)
        if auth:
            ui.link("Sign out", "/logout").classes("text-white q-ml-md")
    banner = ui.label("").classes("text-negative text-weight-medium").props("role=alert data-testid=load-error")
    banner.set_visibility(False)
    return banner


async def every(interval: float, fn: Callable[[], Awaitable[None]], banner: ui.label) -> ui.timer:
    """Run `fn` now (so the page's first HTML already holds its data) and then every `interval` seconds while the
    browser is connected; a round still running is not started again. A failed read shows in the banner (the page
    keeps its last data) and clears when a read succeeds."""
    busy = False
    client = ui.context.client

    async def tick() -> None:
        nonlocal busy
        if busy or (timer is not None and not client.has_socket_connection):
            return  # still running; or a closed tab NiceGUI keeps a while for a reconnect: nobody to show it to
        busy = True
        try:
            await fn()
            if banner.visible:
                banner.set_visibility(False)
        except Exception as exc:  # noqa: BLE001 - shown to the operator, retried next round
            banner.set_text(f"Could not load data: {exc}")
            banner.set_visibility(True)
        finally:
            busy = False

    timer: ui.timer | None = None
    await tick()  # the page's first HTML: before the browser connects
    timer = ui.timer(interval, tick, immediate=False)
    return timer


class Page(Protocol):
    """A page of one browser tab: its sections, built once in page order, and its periodic read."""

    def build(self) -> None: ...

    async def refresh(self) -> None: ...


async def open_page(title: str, backend: Backend, auth: bool, page: Page,
                    connected: Callable[[], Awaitable[None] | None] | None = None) -> None:
    """The frame, the page's sections, its first read (into the first HTML) and then its refresh every
    `REFRESH_S`; `connected` runs once the browser is connected (what costs more than it shows at first sight)."""
    banner = frame(title, backend, auth=auth)
    page.build()
    await every(REFRESH_S, page.refresh, banner)
    if connected is not None:
        ui.timer(0, connected, once=True)


async def act(backend: Backend, cmd: Command) -> bool:
    """Send a command; show its confirmation or its error. Returns whether it was carried out."""
    try:
        message = await backend.command(cmd)
    except PanelError as exc:
        ui.notify(str(exc), type="negative", close_button=True, timeout=15000, multi_line=True)
        return False
    except Exception as exc:  # noqa: BLE001 - an unexpected failure is still shown, never swallowed
        ui.notify(f"command failed: {exc!r}", type="negative", close_button=True, timeout=15000, multi_line=True)
        return False
    ui.notify(message, type="positive")
    return True


def confirm(question: str, on_yes: Callable[[], Awaitable[Any]], yes: str = "Confirm") -> None:
    with ui.dialog() as dialog, ui.card():
        ui.label(question).classes("text-body1")
        with ui.row():
            ui.button("Cancel", on_click=dialog.close).props("flat")

            async def go() -> None:
                dialog.close()
                await on_yes()

            ui.button(yes, on_click=go, color="negative")
    dialog.open()


# -- formatting -------------------------------------------------------------------------------------------
def num(x: float | None, digits: int = 4) -> str:
    if x is None:
        return "—"
    if x == 0:
        return "0"
    return f"{x:.{digits}g}" if abs(x) < 1e-3 or abs(x) >= 1e6 else f"{x:,.{digits}f}".rstrip("0").rstrip(".")


def pnl(x: float | None, quote: str) -> str:
    if x is None:
        return "—"
    return f"{x:+.4f} {quote}"


def age(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h {(s % 3600) // 60:02d}m"
    return f"{s // 86400}d {(s % 86400) // 3600}h"


def ago(epoch: float | None, now: float | None = None) -> str:
    if epoch is None:
        return "never"
    return f"{age((now or time.time()) - epoch)} ago"
