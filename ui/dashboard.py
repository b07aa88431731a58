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
from ui.common import act, age, ago, column, confirm, num, open_page, pnl

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


def wallet_rows(per_wallet: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"label": w["label"], "open": w["open"], "closed": w["closed"],
             "win": f"{100 * w['wins'] / w['closed']:.0f}%" if w["closed"] else "—",
             "realized": "  ".join(pnl(v, q) for q, v in w["realized"].items()) or "—",
             "unrealized": "  ".join(pnl(v, q) for q, v in w["unrealized"].items()) or "—"}
            for w in per_wallet]


def provider_rows(status: dict[str, Any], now: float) -> list[dict[str, Any]]:
    return [{"name": name, "breaker": p.get("breaker"), "requests": p.get("requests"), "failures": p.get("failures"),
             "last_ok": ago(p.get("last_success_at"), now), "last_error": (p.get("last_error") or "")[:60]}
            for name, p in sorted((status.get("providers") or {}).items())]


def _stat_card(title: str, testid: str) -> ui.label:
    with ui.card().classes("col"):
        ui.label(title).classes("text-caption text-grey-7")
        return ui.label("—").classes("text-h6").props(f"data-testid={testid}")


class Dashboard:
    """The dashboard of one browser tab: its sections (built in page order), and how each shows its data."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.series: list[dict[str, Any]] = []
        self.charts: list[Any] = []
        self.shown_breakers: Any = None
        self.shown_alerts: Any = None
        self.first = True

    # -- sections -----------------------------------------------------------------------------------------
    def build(self) -> None:
        with ui.row().classes("w-full q-gutter-md items-stretch"):
            self.realized = _stat_card("Realized PnL", "realized-total")
            self.unrealized = _stat_card("Unrealized PnL", "unrealized-total")
            self.open_count = _stat_card("Open positions", "open-count")
            self.breaker_summary = _stat_card("Breakers", "breaker-summary")
        self.alerts_card()
        self.positions_table()
        with ui.row().classes("w-full q-gutter-md"):
            self.equity_and_wallets()
        with ui.row().classes("w-full q-gutter-md"):
            self.signals_card()
            with ui.column().classes("col"):
                self.breakers_card()
                self.health_card()

    def alerts_card(self) -> None:
        with ui.card().classes("w-full bg-red-1").props("role=alert data-testid=live-alerts") as self.alert_card:
            ui.label("Needs attention").classes("text-subtitle1 text-negative")
            self.alert_box = ui.column().classes("w-full gap-0")
        self.alert_card.set_visibility(False)

    def positions_table(self) -> None:
        ui.label("Open positions").classes("text-h6 q-mt-md")
        # Virtual scroll: the browser renders the rows in view (a few dozen), however many positions are open; no
        # pagination controls (nor the icon font they need) on the page's first paint.
        table = ui.table(columns=POSITION_COLUMNS, rows=[], row_key="id", pagination={"rowsPerPage": 0})
        table.classes("w-full sticky-head").style("max-height: 32rem").props(
            "dense flat bordered virtual-scroll hide-bottom hide-no-data :virtual-scroll-item-size=28"
            " :virtual-scroll-slice-ratio-before=0.2 :virtual-scroll-slice-ratio-after=0.5 data-testid=positions")
        self.no_positions = ui.label("No open position.").classes("text-caption text-grey-7").props(
            "data-testid=no-positions")
        table.add_slot("body-cell-id", r"""<q-td :props="props"><a :href="'/position/' + props.value"
            class="text-primary text-weight-bold">#{{ props.value }}</a></q-td>""")
        self.table = table

    def equity_and_wallets(self) -> None:
        with ui.card().classes("col-7"):
            ui.label("Equity curve (cumulative realized PnL)").classes("text-subtitle1")
            self.chart_box = ui.element("div").classes("w-full h-64")  # the chart comes once the browser is connected
        with ui.card().classes("col"):
            ui.label("PnL per wallet").classes("text-subtitle1")
            self.wallets = ui.table(columns=WALLET_COLUMNS, rows=[], row_key="label").classes("w-full")
            self.wallets.props("dense flat hide-no-data data-testid=wallet-pnl")  # no "no data" icon (an icon font)

    def signals_card(self) -> None:
        with ui.card().classes("col-7"):
            ui.label("Recent signals").classes("text-subtitle1")
            self.signals = ui.table(columns=SIGNAL_COLUMNS, rows=[], row_key="id").classes("w-full")
            self.signals.props("dense flat hide-no-data data-testid=recent-signals")
            self.signals.add_slot("body-cell-decision", DECISION_SLOT)

    def breakers_card(self) -> None:
        with ui.card().classes("w-full").props("data-testid=breakers"):
            ui.label("Breakers").classes("text-subtitle1")
            self.breakers_box = ui.column().classes("w-full")

    def health_card(self) -> None:
        with ui.card().classes("w-full").props("data-testid=health"):
            ui.label("Health").classes("text-subtitle1")
            self.health = {k: ui.label("").props(f"data-testid=health-{k}")
                           for k in ("database", "webhook", "inbox", "actors", "global_breaker")}
            self.health["actors"].set_text("Actors: asking…")
            self.providers = ui.table(columns=PROVIDER_COLUMNS, rows=[], row_key="name").classes("w-full")
            self.providers.props("dense flat hide-no-data data-testid=providers")

    # -- data -----------------------------------------------------------------------------------------------
    def show_breakers(self, items: list[dict[str, Any]]) -> None:
        tripped = [b for b in items if b["state"] == "tripped"]
        self.breaker_summary.set_text(f"{len(tripped)} tripped" if tripped else "all clear")
        self.breaker_summary.classes(replace="text-h6 " + ("text-negative" if tripped else "text-positive"))
        if items == self.shown_breakers:
            return  # unchanged: keep the buttons under the operator's mouse
        self.shown_breakers = items
        self.breakers_box.clear()
        with self.breakers_box:
            if not tripped:
                ui.label("No breaker tripped: entries allowed.").classes("text-positive").props("data-testid=breakers-clear")
            for b in tripped:
                self.tripped_breaker(b)

    def tripped_breaker(self, b: dict[str, Any]) -> None:
        """One tripped breaker: why and since when, with its reset button (confirmed first)."""
        with ui.row().classes("items-center w-full no-wrap").props(f"data-testid=breaker-{b['name']}"):
            with ui.column().classes("col gap-0"):
                ui.label(b["name"]).classes("text-weight-bold text-negative")
                ui.label(b["reason"]).classes("text-caption")
                ui.label(f"tripped {b['tripped_at']} UTC" + (f", until {b['until']} UTC" if b["until"] else
                                                              ", until reset")).classes("text-caption text-grey-7")

            async def reset(name: str = b["name"]) -> None:
                async def go() -> None:
                    if await act(self.backend, BreakerReset(name)):
                        await self.update()
                confirm(f"Reset breaker {name}? New entries resume at once.", go, yes="Reset")

            ui.button("Reset", on_click=reset, color="warning").props(f"dense data-testid=reset-{b['name']}")

    def show_alerts(self, alerts: dict[str, Any]) -> None:
        lines = alert_lines(alerts)
        if lines == self.shown_alerts:
            return
        self.shown_alerts = lines
        self.alert_box.clear()
        with self.alert_box:
            for line in lines:
                ui.label(line).classes("text-negative")
        self.alert_card.set_visibility(bool(lines))

    def show_data(self, now: float, data: dict[str, Any], h: dict[str, Any], items: list[dict[str, Any]],
                  alerts: dict[str, Any]) -> None:
        self.show_alerts(alerts)
        self.table.rows = position_rows(data["positions"])
        self.table.update()
        self.open_count.set_text(str(len(data["positions"])))
        self.no_positions.set_visibility(not data["positions"])
        totals = sorted(data["totals"].items())
        self.realized.set_text("  ".join(pnl(t["realized"], q) for q, t in totals) or "0")
        self.unrealized.set_text("  ".join(pnl(t["unrealized"], q) for q, t in totals) or "0")
        self.series = curve_series(data["curve"])
        if self.charts and self.charts[0].options["series"] != self.series:
            self.charts[0].options["series"] = self.series
            self.charts[0].update()
        self.wallets.rows = wallet_rows(data["per_wallet"])
        self.wallets.update()
        self.signals.rows = data["signals"]
        self.signals.update()
        self.show_breakers(items)
        self.health["database"].set_text("Database: connected")
        self.health["webhook"].set_text(f"Last webhook: {ago(h['last_webhook'], now)} ({h['deliveries']} deliveries)")
        self.health["inbox"].set_text(f"Inbox pending: {h['inbox_pending']}")

    def show_status(self, now: float, status: dict[str, Any]) -> None:
        actors = status.get("actors")
        self.health["actors"].set_text(
            f"Actors: {actors.get('wallets', 0)} wallets, {actors.get('positions', 0)} positions, "
            f"{actors.get('restarts', 0)} restarts" if isinstance(actors, dict) else
            f"Actors: not answering ({status.get('actors_error', 'no reply')})")
        gb = status.get("breaker") or {}
        self.health["global_breaker"].set_text(f"Supervisor breaker: {gb.get('state', 'closed')}"
                                               + (f" — {gb['reason']}" if gb.get("reason") else ""))
        self.providers.rows = provider_rows(status, now)
        self.providers.update()

    # -- refresh ----------------------------------------------------------------------------------------------
    async def update(self) -> None:
        now = time.time()
        if self.first:  # the page's first HTML: the database's projections only (see `secondary`)
            self.first = False
            self.show_data(now, *await self.backend.query(lambda c: reads(c, now)))
            return
        status = asyncio.ensure_future(self.backend.status())  # concurrent: the store has a pool, the ask a thread
        try:
            self.show_data(now, *await self.backend.query(lambda c: reads(c, now)))
        finally:
            self.show_status(now, await status)

    async def refresh(self) -> None:
        try:
            await self.update()
        except Exception:
            self.health["database"].set_text("Database: unreachable")
            raise

    async def secondary(self) -> None:
        """Once connected: the equity chart (its library loads now, off the first paint) and the bot's health."""
        with self.chart_box:
            self.charts.append(ui.echart({**CHART, "series": self.series}).classes("w-full h-64")
                               .props("data-testid=equity-chart"))
        self.show_status(time.time(), await self.backend.status())


def register(backend: Backend, auth: bool) -> None:
    @ui.page("/")
    async def dashboard() -> None:
        page = Dashboard(backend)
        await open_page("Dashboard", backend, auth, page, page.secondary)
