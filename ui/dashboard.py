"""Dashboard: open positions, PnL (totals and per wallet), the equity curve, recent signals, breakers with a
reset button, component health. Re-read every few seconds.

The page's first HTML carries what the database holds (one connection, `reads`); what costs more than it
shows at first sight comes right after the browser connects: the equity chart (its charting library is large)
and the running bot's health (an ask to the root, whose mailbox may be busy under webhook load)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from nicegui import ui

from actors.messages import BreakerReset
from ui import queries
from ui.backend import Backend
from ui.common import REFRESH_S, act, age, ago, column, confirm, every, frame, num, pnl

POSITION_COLUMNS = [
    column("id", "#"),  # newest first, as opened
    column("token", "Token"),
    column("wallet", "Wallet"),
    column("status", "Status"),
    column("entry", "Entry", "right"),
    column("price", "Price (age)", "right"),
    column("unrealized", "Unrealized PnL", "right"),
    column("stop", "Stop", "right"),
    column("tp", "Take-profit"),
    column("held", "Held", "right"),
]
SIGNAL_COLUMNS = [
    column("at", "Time (UTC)"),
    column("wallet", "Wallet"),
    column("side", "Side"),
    column("token", "Token"),
    column("size", "Leader size", "right"),
    column("decision", "Decision"),
    column("reason", "Reason"),
]
WALLET_COLUMNS = [
    column("label", "Wallet"),
    column("open", "Open", "right"),
    column("closed", "Closed", "right"),
    column("win", "Win rate", "right"),
    column("realized", "Realized", "right"),
    column("unrealized", "Unrealized", "right"),
]
PROVIDER_COLUMNS = [
    column("name", "Provider"),
    column("breaker", "Breaker"),
    column("requests", "Requests", "right"),
    column("failures", "Failures", "right"),
    column("last_ok", "Last success"),
    column("last_error", "Last error"),
]

DECISION_SLOT = r"""<q-td :props="props"><q-badge :color="props.value === 'taken' ? 'green' : 'grey-7'">{{ props.value }}</q-badge></q-td>"""


def position_rows(positions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for p in positions:
        q = p["quote"]
        price = num(p["price"]) + (f" ({age(p['price_age_s'])}{', stale' if p['price_stale'] else ''})"
                                   if p["price"] is not None else " (no price yet)")
        tps = ", ".join(f"{'✓' if done else ''}{num(px)}×{f:g}" for px, f, done in p["take_profits"]) or "—"
        rows.append({
            "id": p["id"], "token": p["token_short"], "wallet": p["wallet_label"], "status": p["status"],
            "entry": f"{num(p['entry_price'])} {q}" if p["entry_price"] is not None else "pending",
            "price": price, "unrealized": pnl(p["unrealized"], q),
            "stop": f"{num(p['stop'])} ({p['stop_reason']})" if p["stop"] is not None else "—",
            "tp": tps, "held": age(p["held_s"]),
        })
    return rows


async def reads(conn: Any, now: float) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
    """Every projection the dashboard shows, on one pooled connection (one acquisition under load, not three)."""
    return (await queries.dashboard(conn, now), await queries.health(conn), await queries.breakers(conn),
            await queries.live_alerts(conn))


def alert_lines(alerts: dict[str, Any]) -> list[str]:
    """The live alerts, one line each: exits that could not land, and the book/chain reconcile's findings."""
    lines = [f"Exit failed: position #{a['id']} ({a['token']}, {a['open']:g} tokens still held) — {a['error']}; "
             f"attempt {a['attempt']}, retried with a wider slippage after {a['retry_at']} UTC" for a in alerts["exit_failed"]]
    lines += [f"Reconcile ({f['at']} UTC): {f['kind']} {f['token']} — {f['detail']}" for f in alerts["reconcile"]]
    return lines


def curve_series(curve: dict[str, list[tuple[float, float]]]) -> list[dict[str, Any]]:
    return [{"name": q, "type": "line", "step": "end", "showSymbol": False, "data": pts, "yAxisIndex": 0 if q == "SOL" else 1}
            for q, pts in sorted(curve.items())]


CHART = {
    "tooltip": {"trigger": "axis"}, "legend": {},
    "xAxis": {"type": "time"},
    "yAxis": [{"type": "value", "scale": True, "name": "SOL"},
              {"type": "value", "scale": True, "name": "USD", "position": "right"}],
    "series": [], "animation": False,
}


def register(backend: Backend, auth: bool) -> None:
    @ui.page("/")
    async def dashboard() -> None:
        banner = frame("Dashboard", backend, auth=auth)
        with ui.row().classes("w-full q-gutter-md items-stretch"):
            with ui.card().classes("col"):
                ui.label("Realized PnL").classes("text-caption text-grey-7")
                realized = ui.label("—").classes("text-h6").props("data-testid=realized-total")
            with ui.card().classes("col"):
                ui.label("Unrealized PnL").classes("text-caption text-grey-7")
                unrealized = ui.label("—").classes("text-h6").props("data-testid=unrealized-total")
            with ui.card().classes("col"):
                ui.label("Open positions").classes("text-caption text-grey-7")
                open_count = ui.label("—").classes("text-h6").props("data-testid=open-count")
            with ui.card().classes("col"):
                ui.label("Breakers").classes("text-caption text-grey-7")
                breaker_summary = ui.label("—").classes("text-h6").props("data-testid=breaker-summary")

        with ui.card().classes("w-full bg-red-1").props("role=alert data-testid=live-alerts") as alert_card:
            ui.label("Needs attention").classes("text-subtitle1 text-negative")
            alert_box = ui.column().classes("w-full gap-0")
        alert_card.set_visibility(False)

        ui.label("Open positions").classes("text-h6 q-mt-md")
        # Virtual scroll: the browser renders the rows in view (a few dozen), however many positions are open; no
        # pagination controls (nor the icon font they need) on the page's first paint.
        table = ui.table(columns=POSITION_COLUMNS, rows=[], row_key="id", pagination={"rowsPerPage": 0})
        table.classes("w-full sticky-head").style("max-height: 32rem").props(
            "dense flat bordered virtual-scroll hide-bottom hide-no-data :virtual-scroll-item-size=28"
            " :virtual-scroll-slice-ratio-before=0.2 :virtual-scroll-slice-ratio-after=0.5 data-testid=positions")
        no_positions = ui.label("No open position.").classes("text-caption text-grey-7").props("data-testid=no-positions")
        table.add_slot("body-cell-id", r"""<q-td :props="props"><a :href="'/position/' + props.value"
            class="text-primary text-weight-bold">#{{ props.value }}</a></q-td>""")

        with ui.row().classes("w-full q-gutter-md"):
            with ui.card().classes("col-7"):
                ui.label("Equity curve (cumulative realized PnL)").classes("text-subtitle1")
                chart_box = ui.element("div").classes("w-full h-64")  # the chart comes once the browser is connected
            with ui.card().classes("col"):
                ui.label("PnL per wallet").classes("text-subtitle1")
                wallets = ui.table(columns=WALLET_COLUMNS, rows=[], row_key="label").classes("w-full")
                wallets.props("dense flat hide-no-data data-testid=wallet-pnl")  # no "no data" icon (an icon font)

        with ui.row().classes("w-full q-gutter-md"):
            with ui.card().classes("col-7"):
                ui.label("Recent signals").classes("text-subtitle1")
                signals = ui.table(columns=SIGNAL_COLUMNS, rows=[], row_key="id").classes("w-full")
                signals.props("dense flat hide-no-data data-testid=recent-signals")
                signals.add_slot("body-cell-decision", DECISION_SLOT)
            with ui.column().classes("col"):
                with ui.card().classes("w-full").props("data-testid=breakers"):
                    ui.label("Breakers").classes("text-subtitle1")
                    breakers_box = ui.column().classes("w-full")
                with ui.card().classes("w-full").props("data-testid=health"):
                    ui.label("Health").classes("text-subtitle1")
                    health_lines = {k: ui.label("").props(f"data-testid=health-{k}")
                                    for k in ("database", "webhook", "inbox", "actors", "global_breaker")}
                    health_lines["actors"].set_text("Actors: asking…")
                    providers = ui.table(columns=PROVIDER_COLUMNS, rows=[], row_key="name").classes("w-full")
                    providers.props("dense flat hide-no-data data-testid=providers")

        shown_breakers: list[Any] = [None]

        def render_breakers(items: list[dict[str, Any]]) -> None:
            if items == shown_breakers[0]:
                return  # unchanged: keep the buttons under the operator's mouse
            shown_breakers[0] = items
            breakers_box.clear()
            tripped = [b for b in items if b["state"] == "tripped"]
            with breakers_box:
                if not tripped:
                    ui.label("No breaker tripped: entries allowed.").classes("text-positive").props("data-testid=breakers-clear")
                for b in tripped:
                    with ui.row().classes("items-center w-full no-wrap").props(f"data-testid=breaker-{b['name']}"):
                        with ui.column().classes("col gap-0"):
                            ui.label(b["name"]).classes("text-weight-bold text-negative")
                            ui.label(b["reason"]).classes("text-caption")
                            ui.label(f"tripped {b['tripped_at']} UTC" + (f", until {b['until']} UTC" if b["until"] else
                                                                          ", until reset")).classes("text-caption text-grey-7")

                        async def reset(name: str = b["name"]) -> None:
                            async def go() -> None:
                                if await act(backend, BreakerReset(name)):
                                    await refresh()
                            confirm(f"Reset breaker {name}? New entries resume at once.", go, yes="Reset")

                        ui.button("Reset", on_click=reset, color="warning").props(f"dense data-testid=reset-{b['name']}")

        series: list[list[dict[str, Any]]] = [[]]
        charts: list[Any] = []

        shown_alerts: list[Any] = [None]

        def show_alerts(alerts: dict[str, Any]) -> None:
            lines = alert_lines(alerts)
            if lines == shown_alerts[0]:
                return
            shown_alerts[0] = lines
            alert_box.clear()
            with alert_box:
                for line in lines:
                    ui.label(line).classes("text-negative")
            alert_card.set_visibility(bool(lines))

        def show_data(now: float, data: dict[str, Any], h: dict[str, Any], items: list[dict[str, Any]],
                      alerts: dict[str, Any]) -> None:
            show_alerts(alerts)
            table.rows = position_rows(data["positions"])
            table.update()
            open_count.set_text(str(len(data["positions"])))
            no_positions.set_visibility(not data["positions"])
            realized.set_text("  ".join(pnl(t["realized"], q) for q, t in sorted(data["totals"].items())) or "0")
            unrealized.set_text("  ".join(pnl(t["unrealized"], q) for q, t in sorted(data["totals"].items())) or "0")
            series[0] = curve_series(data["curve"])
            if charts and charts[0].options["series"] != series[0]:
                charts[0].options["series"] = series[0]
                charts[0].update()
            wallets.rows = [{"label": w["label"], "open": w["open"], "closed": w["closed"],
                             "win": f"{100 * w['wins'] / w['closed']:.0f}%" if w["closed"] else "—",
                             "realized": "  ".join(pnl(v, q) for q, v in w["realized"].items()) or "—",
                             "unrealized": "  ".join(pnl(v, q) for q, v in w["unrealized"].items()) or "—"}
                            for w in data["per_wallet"]]
            wallets.update()
            signals.rows = data["signals"]
            signals.update()
            tripped = [b for b in items if b["state"] == "tripped"]
            breaker_summary.set_text(f"{len(tripped)} tripped" if tripped else "all clear")
            breaker_summary.classes(replace="text-h6 " + ("text-negative" if tripped else "text-positive"))
            render_breakers(items)
            health_lines["database"].set_text("Database: connected")
            health_lines["webhook"].set_text(f"Last webhook: {ago(h['last_webhook'], now)} ({h['deliveries']} deliveries)")
            health_lines["inbox"].set_text(f"Inbox pending: {h['inbox_pending']}")

        def show_status(now: float, status: dict[str, Any]) -> None:
            actors = status.get("actors")
            health_lines["actors"].set_text(
                f"Actors: {actors.get('wallets', 0)} wallets, {actors.get('positions', 0)} positions, "
                f"{actors.get('restarts', 0)} restarts" if isinstance(actors, dict) else
                f"Actors: not answering ({status.get('actors_error', 'no reply')})")
            gb = status.get("breaker") or {}
            health_lines["global_breaker"].set_text(f"Supervisor breaker: {gb.get('state', 'closed')}"
                                                    + (f" — {gb['reason']}" if gb.get("reason") else ""))
            providers.rows = [{"name": name, "breaker": p.get("breaker"), "requests": p.get("requests"),
                               "failures": p.get("failures"), "last_ok": ago(p.get("last_success_at"), now),
                               "last_error": (p.get("last_error") or "")[:60]}
                              for name, p in sorted((status.get("providers") or {}).items())]
            providers.update()

        first = [True]

        async def refresh() -> None:
            now = time.time()
            if first[0]:  # the page's first HTML: the database's projections only (see `secondary`)
                first[0] = False
                show_data(now, *await backend.query(lambda c: reads(c, now)))
                return
            status = asyncio.ensure_future(backend.status())  # concurrent: the store has a pool, the ask a thread
            try:
                show_data(now, *await backend.query(lambda c: reads(c, now)))
            finally:
                show_status(now, await status)

        async def secondary() -> None:
            """Once connected: the equity chart (its library loads now, off the first paint) and the bot's health."""
            with chart_box:
                charts.append(ui.echart({**CHART, "series": series[0]}).classes("w-full h-64")
                              .props("data-testid=equity-chart"))
            show_status(time.time(), await backend.status())

        def db_down(banner_text: str) -> None:
            health_lines["database"].set_text("Database: unreachable")

        async def guarded() -> None:
            try:
                await refresh()
            except Exception:
                db_down("")
                raise

        await every(REFRESH_S, guarded, banner)
        ui.timer(0, secondary, once=True)
