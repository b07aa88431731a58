"""Config: the global parameters, exit presets and breakers in force (from the settings: edit `.env` and
restart to change them), the global trading mode (off / paper / live) switched behind a dialog that states the
caps in force — a refusal (live without a wallet key) shown with its reason —, secrets shown masked only,
and the webhook's status."""

from __future__ import annotations

import time
from typing import Any

from nicegui import ui
from pydantic import SecretStr

from actors.messages import TradingModeChanged
from ui import queries
from ui.backend import Backend, PanelError
from ui.common import ago, column, open_page

GROUPS = (
    ("Trading and copy defaults", ("trading_mode", "copy_", "stats_", "trade_")),
    ("Exit presets", ("exit_", "paper_")),
    ("Caps", ("risk_",)),
    ("Breakers", ("breaker_",)),
    ("Token safety", ("safety_",)),
    ("Prices and services", ("price_", "jupiter_", "dexscreener_", "rugcheck_base", "solana_", "http_", "provider_")),
    ("Webhook, panel and storage", ("gateway_", "webhook_", "inbox_", "panel_", "walltrack_data_dir", "log_")),
    ("Live execution", ("live_", "wallet_keypair")),
    ("Supervision", ("supervisor_", "database_recovery", "database_max", "actor_")),
    ("Operations: metrics, alerts, Helius webhook, backups", ("metrics_", "telegram_", "alert_", "helius_", "backup_",
                                                             "doctor_")),
    ("Distributed mode", ("cluster_",)),
    ("Other", ("",)),  # every setting shows somewhere: one no group names lands here
)


def masked(value: Any) -> str:
    if isinstance(value, SecretStr):
        return "•••••••• (set)" if value.get_secret_value() else "(not set)"
    return "(not set)" if value is None else str(value)


def settings_rows(settings: Any) -> tuple[dict[str, list[dict[str, str]]], list[dict[str, str]]]:
    """Settings grouped for display, and the secrets (masked) apart."""
    fields = type(settings).model_fields
    groups: dict[str, list[dict[str, str]]] = {g: [] for g, _ in GROUPS}
    secrets: list[dict[str, str]] = []
    for name in fields:
        value = getattr(settings, name)
        row = {"name": name.upper(), "value": masked(value)}
        if name == "trading_mode":  # the start-up default: the mode in force is the mode card's
            row["value"] += " (at start, without a stored change; the mode in force is above)"
        if isinstance(value, SecretStr) or fields[name].annotation in (SecretStr, SecretStr | None):
            secrets.append(row)
            continue
        for group, prefixes in GROUPS:
            if name.startswith(prefixes):
                groups[group].append(row)
                break
    return groups, secrets


MODES = ("off", "paper", "live")
MEANING = {
    "off": "No new entries for any wallet (buys are recorded as skipped, mode:off, and followed as shadows); "
           "open positions keep their stops, take-profits and exits.",
    "paper": "Wallets copy on paper: simulated fills at real quotes. A wallet's own mode override (off, live) still "
             "applies.",
    "live": "Live: wallets whose copy rules are live sign and send real swaps with the trading wallet, within the "
            "live caps (LIVE_*); without a wallet key every such buy is skipped as live_not_available, never copied "
            "on paper instead. A wallet's own mode override still applies.",
}
SWITCH = {
    "off": "Pause every new entry, for every wallet. Exits go on. The caps that apply when entries resume:",
    "paper": "Resume copying on paper for every wallet (their own mode overrides apply). Caps in force:",
    "live": "Sign and send real swaps with the trading wallet. Caps in force:",
}


COLUMNS = [column("name", "Setting"), column("value", "Value", style="white-space: normal; word-break: break-all")]


class ConfigPage:
    """The Config page of one browser tab: the trading mode (with its switch dialog), the webhook, the masked
    secrets and every setting by group."""

    def __init__(self, backend: Backend) -> None:
        self.backend, self.s = backend, backend.settings
        self.shown_mode: str | None = None

    # -- sections -----------------------------------------------------------------------------------------
    def build(self) -> None:
        groups, secrets = settings_rows(self.s)
        with ui.row().classes("w-full q-gutter-md items-stretch"):
            self.mode_card()
            self.webhook_card()
            with ui.card().classes("col").props("data-testid=secrets"):
                ui.label("Secrets (masked)").classes("text-subtitle1")
                ui.table(columns=COLUMNS, rows=secrets, row_key="name").props("dense flat").classes("w-full")
        ui.label("Settings come from the environment and .env; change them there and restart.").classes(
            "text-caption text-grey-7 q-mt-md")
        with ui.row().classes("w-full q-gutter-md items-start"):
            for group in (g for g, _ in GROUPS if groups[g]):  # "Other" only when a setting has no group
                with ui.card().classes("col-5").props(f"data-testid=group-{group.split()[0].lower()}"):
                    ui.label(group).classes("text-subtitle1")
                    ui.table(columns=COLUMNS, rows=groups[group], row_key="name").props("dense flat").classes("w-full")

    def mode_card(self) -> None:
        with ui.card().classes("col").props("data-testid=mode-card"):
            ui.label("Trading mode").classes("text-subtitle1")
            self.current = ui.label("").classes("text-weight-bold").props("data-testid=mode-current")
            self.source = ui.label("").classes("text-caption text-grey-7").props("data-testid=mode-source")
            self.meaning = ui.label("").classes("text-caption")
            self.refused = ui.label("").classes("text-negative text-weight-medium").props(
                "role=alert data-testid=mode-refused")
            self.refused.set_visibility(False)
            self.switches = ui.row().classes("q-gutter-sm")

    def webhook_card(self) -> None:
        with ui.card().classes("col").props("data-testid=webhook-card"):
            ui.label("Webhook").classes("text-subtitle1")
            ui.label(f"Listening on {getattr(self.s, 'gateway_host', '?')}:{getattr(self.s, 'gateway_port', '?')}"
                     " — POST /webhooks/helius")
            self.webhook = ui.label("").props("data-testid=webhook-status")
            self.inbox = ui.label("")

    def switch_dialog(self, target: str) -> None:
        """Confirm a mode switch, stating the caps every new entry must pass."""
        with ui.dialog() as dialog, ui.card().props("data-testid=mode-dialog"):
            ui.label(f"Switch to {target} mode?").classes("text-h6")
            ui.label(SWITCH[target])
            with ui.column().classes("gap-0 q-ml-md").props("data-testid=mode-caps"):
                for line in self.backend.caps_in_force():
                    ui.label(line).classes("text-caption font-mono")
            with ui.row():
                ui.button("Cancel", on_click=dialog.close).props("flat")

                async def go() -> None:
                    dialog.close()
                    await self.switch(target)

                ui.button(f"Switch to {target}", on_click=go, color="negative").props("data-testid=mode-confirm")
        dialog.open()

    # -- commands and data ----------------------------------------------------------------------------------
    async def switch(self, target: str) -> None:
        try:
            message = await self.backend.command(TradingModeChanged(target))  # type: ignore[arg-type]
        except PanelError as exc:  # refused (live), or the database did not answer
            self.refused.set_text(f"Not switched to {target}: {exc}")
            self.refused.set_visibility(True)
            ui.notify(str(exc), type="negative", close_button=True, timeout=15000, multi_line=True)
            return
        self.refused.set_visibility(False)
        ui.notify(message, type="positive")
        await self.show_mode()

    async def show_mode(self) -> None:
        stored = await self.backend.query(queries.trading_mode)
        mode = stored["mode"] if stored else getattr(self.s, "trading_mode", "paper")
        self.current.set_text(f"Running in {mode} mode.")
        self.source.set_text(f"Set to {mode} by the {stored['by']} at {stored['at']} UTC." if stored else
                             "From TRADING_MODE (the environment); no change from the panel or CLI stored.")
        self.meaning.set_text(MEANING.get(mode, ""))
        if mode == self.shown_mode:
            return  # rebuilt only on a change: never under the operator's mouse
        self.shown_mode = mode
        self.switches.clear()
        with self.switches:
            for target in MODES:
                if target != mode:
                    ui.button(f"Switch to {target}…", on_click=lambda t=target: self.switch_dialog(t),
                              color="negative" if target == "live" else "primary").props(f"data-testid=mode-set-{target}")

    async def refresh(self) -> None:
        await self.show_mode()  # a change from the CLI shows here too
        h = await self.backend.query(queries.health)
        self.webhook.set_text(f"Last delivery {ago(h['last_webhook'], time.time())}; {h['deliveries']} stored")
        self.inbox.set_text(f"Inbox pending: {h['inbox_pending']}")


def register(backend: Backend, auth: bool) -> None:
    @ui.page("/config")
    async def config() -> None:
        await open_page("Config", backend, auth, ConfigPage(backend))
