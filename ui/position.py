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
from ui.common import REFRESH_S, act, age, column, confirm, every, frame, num, pnl

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


def register(backend: Backend, auth: bool) -> None:
    @ui.page("/position/{position_id}")
    async def position(position_id: int) -> None:
        banner = frame("Position", backend, auth=auth)
        ui.link("← Dashboard", "/")
        title = ui.label(f"Position #{position_id}").classes("text-h5").props("data-testid=position-title")
        summary = ui.label("").classes("text-body1").props("data-testid=position-summary")
        levels = ui.label("").classes("text-body2 text-grey-8").props("data-testid=position-levels")
        with ui.row().classes("items-end q-gutter-md").props("data-testid=position-commands") as commands:
            async def close_now() -> None:
                async def go() -> None:
                    if await act(backend, ClosePosition(position_id)):
                        await refresh()
                confirm(f"Sell all of position #{position_id} now, at market?", go, yes="Close now")

            ui.button("Close now", on_click=close_now, color="negative").props("data-testid=close-now")
            fraction = ui.number("Fraction to sell (%)", value=50, min=1, max=100, step=5).props(
                "dense data-testid=close-fraction-pct").classes("w-40")

            async def close_fraction() -> None:
                try:
                    pct = Decimal(str(fraction.value))
                except (InvalidOperation, TypeError):
                    ui.notify("Enter a percentage between 1 and 100", type="negative")
                    return
                if not 0 < pct <= 100:
                    ui.notify("Enter a percentage between 1 and 100", type="negative")
                    return
                if await act(backend, ClosePartial(position_id, pct / 100)):
                    await refresh()

            ui.button("Close fraction", on_click=close_fraction, color="warning").props("data-testid=close-fraction")
            stop = ui.input("New stop price").props("dense data-testid=stop-price").classes("w-48")

            async def move_stop() -> None:
                try:
                    price = Decimal(str(stop.value).strip())
                except (InvalidOperation, TypeError):
                    ui.notify("Enter a stop price (quote units per token)", type="negative")
                    return
                if price <= 0:
                    ui.notify("The stop price must be positive", type="negative")
                    return
                if await act(backend, SetStop(position_id, price)):
                    await refresh()

            ui.button("Move stop", on_click=move_stop).props("data-testid=move-stop")
        chart_box = ui.element("div").classes("w-full h-80")  # the chart comes once the browser is connected
        charts: list[Any] = []
        options: list[dict[str, Any]] = [{"series": []}]
        ui.label("Journal").classes("text-h6")
        journal = ui.table(columns=JOURNAL_COLUMNS, rows=[], row_key="seq").classes("w-full")
        journal.props("dense flat bordered wrap-cells data-testid=journal")

        async def refresh() -> None:
            p = await backend.query(lambda c: queries.position_detail(c, position_id, time.time()))
            if p is None:
                title.set_text(f"Position #{position_id} does not exist")
                commands.set_visibility(False)
                return
            q = p["quote"]
            title.set_text(f"Position #{p['id']} — {p['token_short']} ({p['mode']}, {p['status']})")
            summary.set_text(
                f"Wallet {p['wallet_label']} · entry {num(p['entry_price'])} {q} · size {num(p['entry_quote'])} {q} · "
                f"open {num(p['open_tokens'])} tokens · price {num(p['price'])} {q} ({age(p['price_age_s'])} old) · "
                f"unrealized {pnl(p['unrealized'], q)} · realized {pnl(p['realized'], q)} · held {age(p['held_s'])}"
                + (f" · exit: {p['exit_reason']}" if p["exit_reason"] else ""))
            tps = ", ".join(f"TP{i + 1} {num(px)} ×{f:g}{' (done)' if d else ''}" for i, (px, f, d) in enumerate(p["take_profits"]))
            levels.set_text(f"Stop {num(p['stop'])} {q} ({p['stop_reason'] or '—'})" + (f" · {tps}" if tps else ""))
            commands.set_visibility(p["status"] not in ("closed", "entry_failed"))
            if p["stop"] is not None and not stop.value:
                stop.props(f'placeholder="{num(p["stop"])}"')
            options[0] = chart_options(p)
            if charts:
                charts[0].options.clear()
                charts[0].options.update(options[0])
                charts[0].update()
            journal.rows = [{**e, "data": json.dumps(e["data"], separators=(",", ":"))[:400]} for e in p["journal"]]
            journal.update()

        await every(REFRESH_S, refresh, banner)

        def show_chart() -> None:
            """Once connected: the price chart (the charting library is large: it loads off the first paint)."""
            with chart_box:
                charts.append(ui.echart(options[0]).classes("w-full h-80").props("data-testid=price-chart"))

        ui.timer(0, show_chart, once=True)
