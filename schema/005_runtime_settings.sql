-- Runtime settings the operator changes while the bot runs (panel, CLI), which outlive a restart. Today one key:
-- trading_mode, the global mode (off: no new entries for any wallet, exits go on; paper; live is refused until
-- live execution ships). Without a row, TRADING_MODE from the environment is in force.
CREATE TABLE runtime_settings (
    key         text PRIMARY KEY CHECK (key IN ('trading_mode')),
    value       text NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    updated_by  text NOT NULL
);
ALTER TABLE runtime_settings ADD CONSTRAINT runtime_settings_mode
    CHECK (key <> 'trading_mode' OR value IN ('off', 'paper', 'live'));

-- Every change (the audit trail beside the structlog line `trading_mode_changed`).
CREATE TABLE runtime_setting_events (
    id          bigserial PRIMARY KEY,
    key         text NOT NULL,
    old_value   text,
    new_value   text NOT NULL,
    by          text NOT NULL,
    at          timestamptz NOT NULL DEFAULT now()
);

-- The dashboard's reads (ui/queries.py): the closed positions' PnL in close order (equity curve, totals),
-- and the journals of open positions (a seq-ordered scan per position is the primary key already).
CREATE INDEX positions_closed_pnl ON positions (closed_at, id)
    INCLUDE (wallet, quote_mint, realized_pnl_quote)
    WHERE mode <> 'shadow' AND realized_pnl_quote IS NOT NULL AND closed_at IS NOT NULL;
CREATE INDEX positions_open_real ON positions (opened_at DESC, id DESC)
    WHERE closed_at IS NULL AND mode <> 'shadow';
