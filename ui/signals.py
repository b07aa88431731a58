"""Signals: the searchable log of every signal, paged on the server; each row opens the safety checks and
reasons behind its decision (`signals.safety`)."""

from __future__ import annotations

from typing import Any

from nicegui import ui

from ui import queries
from ui.backend import Backend
from ui.common import REFRESH_S, column, every, frame
from ui.dashboard import DECISION_SLOT

PAGE_SIZE = 50
COLUMNS = [
    column("id", "#", "right"),
    column("at", "Time (UTC)"),
    column("wallet_label", "Wallet"),
    column("side", "Side"),
    column("token_short", "Token"),
    column("size", "Leader size", "right"),
    column("decision", "Decision"),
    column("reason", "Reason"),
    column("score", "Safety score", "right"),
    column("sig_short", "Signature"),
]
CHECK_COLUMNS = [
    column("check", "Check"),
    column("result", "Result"),
    column("value", "Value"),
    column("reason", "Reason"),
]


def signal_dialog(row: dict[str, Any]) -> None:
    """A signal's decision and the safety checks behind it."""
    with ui.dialog() as dialog, ui.card().classes("w-[56rem] max-w-full").props("data-testid=signal-detail"):
        ui.label(f"Signal #{row['id']} — {row['side']} {row['token']}").classes("text-h6")
        ui.label(f"{row['decision']}: {row['reason']}").classes(
            "text-subtitle1 " + ("text-positive" if row["decision"] == "taken" else "text-negative"))
        ui.label(f"wallet {row['wallet']} · signature {row['signature']}").classes("text-caption")
        safety = row["safety"]
        if safety:
            ui.label(f"Safety score {safety.get('score')} (passed: {safety.get('passed')}); "
                     f"reason: {safety.get('reason') or '—'}").classes("text-body2")
            ui.table(columns=CHECK_COLUMNS, rows=queries.safety_checks(safety), row_key="check").classes(
                "w-full").props("dense flat data-testid=safety-checks")
        else:
            ui.label("No safety verdict for this signal (a sell, or a buy decided before screening).")
        ui.button("Close", on_click=dialog.close)
    dialog.open()


def register(backend: Backend, auth: bool) -> None:
    @ui.page("/signals")
    async def signals() -> None:
        banner = frame("Signals", backend, auth=auth)
        view: dict[str, Any] = {"offset": 0, "total": 0, "rows": {}}
        with ui.row().classes("w-full items-end q-gutter-md"):
            search = ui.input("Search wallet, label, token, reason or signature").classes("col-5").props(
                "clearable debounce=300 data-testid=signal-search")
            decision = ui.select({"": "taken and skipped", "taken": "taken", "skipped": "skipped"}, value="",
                                 label="Decision").classes("col-2").props("data-testid=signal-decision")
            counter = ui.label("").props("data-testid=signal-count")
            prev = ui.button("Newer", on_click=lambda: page(-1)).props("flat dense data-testid=signals-prev")
            nxt = ui.button("Older", on_click=lambda: page(1)).props("flat dense data-testid=signals-next")
        table = ui.table(columns=COLUMNS, rows=[], row_key="id").classes("w-full")
        table.props("dense flat bordered data-testid=signals")
        table.add_slot("body-cell-decision", DECISION_SLOT)
        ui.label("Click a row for the safety checks behind its decision.").classes("text-caption text-grey-7")

        def details(e: Any) -> None:
            row = view["rows"].get(e.args[1]["id"]) if isinstance(e.args, list) else None
            if row is not None:
                signal_dialog(row)

        table.on("rowClick", details)

        async def refresh() -> None:
            data = await backend.query(lambda c: queries.signals_page(c, search.value or "", decision.value or None,
                                                                      view["offset"], PAGE_SIZE))
            view["total"] = data["total"]
            view["rows"] = {r["id"]: r for r in data["rows"]}
            table.rows = [{k: v for k, v in r.items() if k != "safety"} for r in data["rows"]]
            table.update()
            first = view["offset"] + 1 if data["total"] else 0
            counter.set_text(f"{first}–{view['offset'] + len(data['rows'])} of {data['total']}")
            prev.set_enabled(view["offset"] > 0)
            nxt.set_enabled(view["offset"] + PAGE_SIZE < data["total"])

        async def page(step: int) -> None:
            view["offset"] = max(0, view["offset"] + step * PAGE_SIZE)
            await refresh()

        async def restart() -> None:
            view["offset"] = 0
            await refresh()

        search.on_value_change(restart)
        decision.on_value_change(restart)
        await every(REFRESH_S, refresh, banner)
