"""Config: the global parameters, exit presets and breakers in force (from the settings: edit `.env` and
restart to change them), the paper/live switch behind a dialog that states the caps in force, secrets shown
masked only, and the webhook's status."""

from __future__ import annotations

import time
from typing import Any

from nicegui import ui
from pydantic import SecretStr

from ui import queries
from ui.backend import Backend, SetTradingMode
from ui.common import REFRESH_S, act, ago, every, frame

GROUPS = (
    ("Trading and copy defaults", ("trading_mode", "copy_")),
    ("Exit presets", ("exit_", "paper_")),
    ("Caps", ("risk_",)),
    ("Breakers", ("breaker_",)),
    ("Token safety", ("safety_",)),
    ("Prices and services", ("price_", "jupiter_", "dexscreener_", "rugcheck_base", "solana_", "http_", "provider_")),
    ("Webhook, panel and storage", ("gateway_", "webhook_", "panel_", "walltrack_data_dir", "log_")),
)
CAP_PREFIXES = ("risk_", "breaker_", "copy_fixed", "copy_max", "copy_sizing", "copy_percent")


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
        if isinstance(value, SecretStr) or fields[name].annotation in (SecretStr, SecretStr | None):
            secrets.append(row)
            continue
        for group, prefixes in GROUPS:
            if name.startswith(prefixes):
                groups[group].append(row)
                break
    return groups, secrets


def caps_in_force(settings: Any) -> list[str]:
    return [f"{name.upper()} = {getattr(settings, name)}" for name in type(settings).model_fields
            if name.startswith(CAP_PREFIXES)]


COLUMNS = [{"name": "name", "label": "Setting", "field": "name", "align": "left"},
           {"name": "value", "label": "Value", "field": "value", "align": "left",
            "style": "white-space: normal; word-break: break-all"}]


def register(backend: Backend, auth: bool) -> None:
    @ui.page("/config")
    async def config() -> None:
        banner = frame("Config", backend, auth=auth)
        s = backend.settings
        groups, secrets = settings_rows(s)
        with ui.row().classes("w-full q-gutter-md items-stretch"):
            with ui.card().classes("col").props("data-testid=mode-card"):
                ui.label("Trading mode").classes("text-subtitle1")
                mode = getattr(s, "trading_mode", "paper")
                ui.label(f"Running in {mode} mode.").props("data-testid=mode-current")
                target = "live" if mode == "paper" else "paper"

                def ask_switch() -> None:
                    with ui.dialog() as dialog, ui.card().props("data-testid=mode-dialog"):
                        ui.label(f"Switch to {target} mode?").classes("text-h6")
                        if target == "live":
                            ui.label("Live mode signs and sends real swaps with the trading wallet. Caps in force:")
                        else:
                            ui.label("Paper mode stops real swaps; open live positions stay open. Caps in force:")
                        with ui.column().classes("gap-0 q-ml-md").props("data-testid=mode-caps"):
                            for line in caps_in_force(s):
                                ui.label(line).classes("text-caption font-mono")
                        with ui.row():
                            ui.button("Cancel", on_click=dialog.close).props("flat")

                            async def go() -> None:
                                dialog.close()
                                await act(backend, SetTradingMode(target))  # type: ignore[arg-type]

                            ui.button(f"Switch to {target}", on_click=go, color="negative").props("data-testid=mode-confirm")
                    dialog.open()

                ui.button(f"Switch to {target}…", on_click=ask_switch).props("data-testid=mode-switch")
            with ui.card().classes("col").props("data-testid=webhook-card"):
                ui.label("Webhook").classes("text-subtitle1")
                ui.label(f"Listening on {getattr(s, 'gateway_host', '?')}:{getattr(s, 'gateway_port', '?')}"
                         " — POST /webhooks/helius")
                webhook = ui.label("").props("data-testid=webhook-status")
                inbox = ui.label("")
            with ui.card().classes("col").props("data-testid=secrets"):
                ui.label("Secrets (masked)").classes("text-subtitle1")
                ui.table(columns=COLUMNS, rows=secrets, row_key="name").props("dense flat").classes("w-full")
        ui.label("Settings come from the environment and .env; change them there and restart.").classes(
            "text-caption text-grey-7 q-mt-md")
        with ui.row().classes("w-full q-gutter-md items-start"):
            for group, _ in GROUPS:
                with ui.card().classes("col-5").props(f"data-testid=group-{group.split()[0].lower()}"):
                    ui.label(group).classes("text-subtitle1")
                    ui.table(columns=COLUMNS, rows=groups[group], row_key="name").props("dense flat").classes("w-full")

        async def refresh() -> None:
            h = await backend.query(queries.health)
            webhook.set_text(f"Last delivery {ago(h['last_webhook'], time.time())}; {h['deliveries']} stored")
            inbox.set_text(f"Inbox pending: {h['inbox_pending']}")

        await every(REFRESH_S, refresh, banner)
