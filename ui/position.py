"""Position detail: the price path with entry, exits and stop levels marked; the event journal; close now,
close a fraction, move the stop (commands to the position's actor, answered within a timeout)."""

from __future__ import annotations

import json
import time
from decimal import Decimal, InvalidOperation
from typing import Any

from nicegui import ui

from actors.messages import ClosePartial, ClosePosition, SetStop
from ui import queries
from ui.backend import Backend
from ui.common import act, age, column, confirm, num, open_page, pnl

JOURNAL_COLUMNS = [
    column("seq", "#", "right"),
    column("at", "Time (UTC)"),
    column("kind", "Event"),
    column("reason", "Reason"),
    column("data", "Data", classes="ellipsis", style="max-width: 42rem; white-space: normal; word-break: break-all"),
]


def chart_options(p: dict[str, Any]) -> dict[str, Any]:
    lines: list[dict[str, Any]] = []
    if p["entry_price"] is not None:
        lines.append({"name": "entry", "yAxis": p["entry_price"], "lineStyle": {"color": "#1976d2"},
                      "label": {"formatter": "entry", "position": "insideEndTop"}})
    if p["stop"] is not None and p["status"] not in ("closed", "entry_failed"):
        lines.append({"name": "stop", "yAxis": p["stop"], "lineStyle": {"color": "#c10015", "type": "dashed"},
                      "label": {"formatter": f"stop ({p['stop_reason']})", "position": "insideEndBottom"}})
    for i, (px, _frac, done) in enumerate(p["take_profits"]):
        lines.append({"name": f"tp{i + 1}", "yAxis": px, "lineStyle": {"color": "#21ba45", "type": "dotted"},
                      "label": {"formatter": f"TP{i + 1}{' ✓' if done else ''}", "position": "insideEndTop"}})
    points = [{"name": reason, "coord": [at, px], "value": reason, "itemStyle": {"color": "#f2c037"}}
              for at, px, reason in p["exits"]]
    if p["entry_point"] is not None:
        points.append({"name": "entry", "coord": list(p["entry_point"]), "value": "entry", "itemStyle": {"color": "#1976d2"}})
    return {
        "animation": False,
        "tooltip": {"trigger": "axis"},
        "xAxis": {"type": "time"},
        "yAxis": {"type": "value", "scale": True, "name": f"{p['quote']} per token"},
        "series": [{
            "name": "price", "type": "line", "showSymbol": False, "data": [list(x) for x in p["series"]],
            "markLine": {"symbol": "none", "data": lines, "silent": True},
            "markPoint": {"symbolSize": 38, "data": points, "label": {"fontSize": 9}},
        }],
    }


def summary_text(p: dict[str, Any]) -> str:
    q = p["quote"]
    return (f"Wallet {p['wallet_label']} · entry {num(p['entry_price'])} {q} · size {num(p['entry_quote'])} {q} · "
            f"open {num(p['open_tokens'])} tokens · price {num(p['price'])} {q} ({age(p['price_age_s'])} old) · "
            f"unrealized {pnl(p['unrealized'], q)} · realized {pnl(p['realized'], q)} · held {age(p['held_s'])}"
            + (f" · exit: {p['exit_reason']}" if p["exit_reason"] else ""))


def levels_text(p: dict[str, Any]) -> str:
    tps = ", ".join(f"TP{i + 1} {num(px)} ×{f:g}{' (done)' if d else ''}" for i, (px, f, d) in enumerate(p["take_profits"]))
    return f"Stop {num(p['stop'])} {p['quote']} ({p['stop_reason'] or '—'})" + (f" · {tps}" if tps else "")


class PositionPage:
    """One position's page in one browser tab: its sections, its commands, and its refresh."""

    def __init__(self, backend: Backend, position_id: int) -> None:
        self.backend, self.pid = backend, position_id
        self.charts: list[Any] = []
        self.options: dict[str, Any] = {"series": []}

    # -- sections -----------------------------------------------------------------------------------------
    def build(self) -> None:
        ui.link("← Dashboard", "/")
        self.title = ui.label(f"Position #{self.pid}").classes("text-h5").props("data-testid=position-title")
        self.summary = ui.label("").classes("text-body1").props("data-testid=position-summary")
        self.levels = ui.label("").classes("text-body2 text-grey-8").props("data-testid=position-levels")
        with ui.row().classes("items-end q-gutter-md").props("data-testid=position-commands") as self.commands:
            self.command_buttons()
        self.chart_box = ui.element("div").classes("w-full h-80")  # the chart comes once the browser is connected
        ui.label("Journal").classes("text-h6")
        self.journal = ui.table(columns=JOURNAL_COLUMNS, rows=[], row_key="seq").classes("w-full")
        self.journal.props("dense flat bordered wrap-cells data-testid=journal")

    def command_buttons(self) -> None:
        ui.button("Close now", on_click=self.close_now, color="negative").props("data-testid=close-now")
        self.fraction = ui.number("Fraction to sell (%)", value=50, min=1, max=100, step=5).props(
            "dense data-testid=close-fraction-pct").classes("w-40")
        ui.button("Close fraction", on_click=self.close_fraction, color="warning").props("data-testid=close-fraction")
        self.stop = ui.input("New stop price").props("dense data-testid=stop-price").classes("w-48")
        ui.button("Move stop", on_click=self.move_stop).props("data-testid=move-stop")

    # -- commands -----------------------------------------------------------------------------------------
    async def send(self, command: ClosePosition | ClosePartial | SetStop) -> None:
        if await act(self.backend, command):
            await self.refresh()

    async def close_now(self) -> None:
        confirm(f"Sell all of position #{self.pid} now, at market?", lambda: self.send(ClosePosition(self.pid)),
                yes="Close now")

    async def close_fraction(self) -> None:
        try:
            pct = Decimal(str(self.fraction.value))
        except (InvalidOperation, TypeError):
            ui.notify("Enter a percentage between 1 and 100", type="negative")
            return
        if not 0 < pct <= 100:
            ui.notify("Enter a percentage between 1 and 100", type="negative")
            return
        await self.send(ClosePartial(self.pid, pct / 100))

    async def move_stop(self) -> None:
        try:
            price = Decimal(str(self.stop.value).strip())
        except (InvalidOperation, TypeError):
            ui.notify("Enter a stop price (quote units per token)", type="negative")
            return
        if price <= 0:
            ui.notify("The stop price must be positive", type="negative")
            return
        await self.send(SetStop(self.pid, price))

    # -- data ---------------------------------------------------------------------------------------------
    async def refresh(self) -> None:
        p = await self.backend.query(lambda c: queries.position_detail(c, self.pid, time.time()))
        if p is None:
            self.title.set_text(f"Position #{self.pid} does not exist")
            self.commands.set_visibility(False)
            return
        self.title.set_text(f"Position #{p['id']} — {p['token_short']} ({p['mode']}, {p['status']})")
        self.summary.set_text(summary_text(p))
        self.levels.set_text(levels_text(p))
        self.commands.set_visibility(p["status"] not in ("closed", "entry_failed"))
        if p["stop"] is not None and not self.stop.value:
            self.stop.props(f'placeholder="{num(p["stop"])}"')
        self.options = chart_options(p)
        if self.charts:
            self.charts[0].options.clear()
            self.charts[0].options.update(self.options)
            self.charts[0].update()
        self.journal.rows = [{**e, "data": json.dumps(e["data"], separators=(",", ":"))[:400]} for e in p["journal"]]
        self.journal.update()

    def show_chart(self) -> None:
        """Once connected: the price chart (the charting library is large: it loads off the first paint)."""
        with self.chart_box:
            self.charts.append(ui.echart(self.options).classes("w-full h-80").props("data-testid=price-chart"))


def register(backend: Backend, auth: bool) -> None:
    @ui.page("/position/{position_id}")
    async def position(position_id: int) -> None:
        page = PositionPage(backend, position_id)
        await open_page("Position", backend, auth, page, page.show_chart)
