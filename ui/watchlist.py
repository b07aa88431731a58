"""Watchlist: add (a validated base58 address and a label), pause or resume, remove a wallet; edit its copy
rules in a form validated like the settings are; per-wallet performance."""

from __future__ import annotations

from typing import Any, Awaitable, Callable

from nicegui import ui

from actors.messages import WalletSettingsChanged
from actors.trades import is_base58_pubkey
from ui import queries
from ui.backend import AddWallet, Backend, CommandRefused, RemoveWallet, SetWalletStatus
from ui.common import REFRESH_S, act, column, confirm, every, frame

COLUMNS = [
    column("label", "Label"),
    column("address", "Address"),
    column("status", "Status"),
    column("signals", "Signals", "right"),
    column("taken", "Taken", "right"),
    column("open", "Open", "right"),
    column("closed", "Closed", "right"),
    column("win_rate", "Win rate", "right"),
    column("pnl_sol", "Realized (SOL)", "right"),
    column("shadow_pnl_sol", "Shadow (SOL)", "right"),
    column("rules", "Rule overrides"),
    {"name": "actions", "label": "", "field": "address", "align": "right"},
]

ACTIONS_SLOT = r"""<q-td :props="props" class="q-gutter-xs">
  <q-btn dense size="sm" color="primary" :label="props.row.status === 'active' ? 'Pause' : 'Resume'"
         :data-testid="'toggle-' + props.row.address" @click="() => $parent.$emit('toggle', props.row)" />
  <q-btn dense size="sm" color="secondary" label="Rules" :data-testid="'rules-' + props.row.address"
         @click="() => $parent.$emit('rules', props.row)" />
  <q-btn dense size="sm" color="negative" label="Remove" :data-testid="'remove-' + props.row.address"
         @click="() => $parent.$emit('remove', props.row)" />
</q-td>"""


def address_error(value: str) -> str | None:
    value = (value or "").strip()
    if not value:
        return "Required"
    if not is_base58_pubkey(value):
        return "Not a Solana address (a base58 public key, 32–44 characters)"
    return None


def add_wallet_card(backend: Backend, added: Callable[[], Awaitable[None]]) -> None:
    """Add a wallet: a validated base58 address and an optional label."""
    with ui.card().classes("w-full"):
        ui.label("Add a wallet").classes("text-subtitle1")
        with ui.row().classes("w-full items-start"):
            address = ui.input("Address", validation=address_error).classes("col-6").props("data-testid=add-address")
            label = ui.input("Label").classes("col-3").props("data-testid=add-label")

            async def add() -> None:
                if not address.validate():
                    return
                if await act(backend, AddWallet(address.value.strip(), label.value.strip() or None)):
                    address.set_value("")
                    label.set_value("")
                    address.props(remove="error")
                    await added()

            ui.button("Add", on_click=add).props("data-testid=add-wallet").classes("q-mt-md")


def register(backend: Backend, auth: bool) -> None:
    @ui.page("/watchlist")
    async def watchlist() -> None:
        banner = frame("Watchlist", backend, auth=auth)
        state: dict[str, Any] = {"rows": []}

        add_wallet_card(backend, lambda: refresh())

        table = ui.table(columns=COLUMNS, rows=[], row_key="address").classes("w-full q-mt-md")
        table.props("dense flat bordered data-testid=wallets")
        table.add_slot("body-cell-actions", ACTIONS_SLOT)

        async def toggle(e: Any) -> None:
            row = e.args
            status = "paused" if row["status"] == "active" else "active"
            if await act(backend, SetWalletStatus(row["address"], status)):
                await refresh()

        async def remove(e: Any) -> None:
            row = e.args

            async def go() -> None:
                if await act(backend, RemoveWallet(row["address"])):
                    await refresh()

            confirm(f"Stop watching {row['label'] or row['address']}? Its open positions stay open.", go, yes="Remove")

        def rules(e: Any) -> None:
            row = next((r for r in state["rows"] if r["address"] == e.args["address"]), e.args)
            rules_dialog(backend, row, refresh)

        table.on("toggle", toggle)
        table.on("remove", remove)
        table.on("rules", rules)

        async def refresh() -> None:
            rows = await backend.query(queries.watchlist)
            state["rows"] = rows
            table.rows = [{**r, "rules": ", ".join(f"{k}={v}" for k, v in sorted(r["overrides"].items())) or "defaults"}
                          for r in rows]
            table.update()

        await every(REFRESH_S, refresh, banner)


def rules_dialog(backend: Backend, row: dict[str, Any], refresh: Any) -> None:
    """The wallet's copy rules: each field empty = the global default (shown as the placeholder)."""
    fields = backend.rule_fields()
    overrides: dict[str, Any] = dict(row.get("overrides") or {})
    with ui.dialog() as dialog, ui.card().classes("w-[48rem] max-w-full"):
        ui.label(f"Copy rules — {row.get('label') or row['address']}").classes("text-h6")
        if not fields:
            ui.label("Per-wallet copy rules are not available yet in this build.").classes("text-negative")
            ui.button("Close", on_click=dialog.close)
            dialog.open()
            return
        ui.label("Leave a field empty to use the global default.").classes("text-caption text-grey-7")
        inputs: dict[str, ui.input] = {}
        with ui.grid(columns=3).classes("w-full"):
            for name, default in fields.items():
                current = overrides.get(name)
                shown = "" if current is None else (",".join(current) if isinstance(current, (list, tuple)) else str(current))
                dflt = ",".join(default) if isinstance(default, (list, tuple)) else ("" if default is None else str(default))
                inputs[name] = ui.input(name, value=shown, placeholder=dflt or "off").props(
                    f"dense clearable data-testid=rule-{name}")
        error = ui.label("").classes("text-negative").props("role=alert data-testid=rules-error")

        async def save() -> None:
            new = {k: i.value.strip() for k, i in inputs.items() if i.value is not None and str(i.value).strip() != ""}
            try:
                normalised = backend.validate_rules(new)
            except CommandRefused as exc:
                error.set_text(str(exc))
                return
            error.set_text("")
            if await act(backend, WalletSettingsChanged(row["address"], normalised)):
                dialog.close()
                await refresh()

        with ui.row():
            ui.button("Cancel", on_click=dialog.close).props("flat")
            ui.button("Save rules", on_click=save).props("data-testid=save-rules")
    dialog.open()
