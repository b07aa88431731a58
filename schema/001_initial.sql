-- WallTrack initial schema: watchlist, durable webhook inbox, observations, signals, positions and
-- their event journal. Amounts are raw integers (lamports, atomic token units) in numeric(40,0).

CREATE TABLE wallets (
    address     text PRIMARY KEY,
    label       text,
    status      text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'paused')),
    added_at    timestamptz NOT NULL DEFAULT now()
);

-- Every delivered transaction, stored before the webhook is acknowledged. `wallets` are the watched
-- wallets it touched at receipt; the row is processed once each of them has an observation.
CREATE TABLE webhook_inbox (
    id           bigserial PRIMARY KEY,
    signature    text NOT NULL UNIQUE,
    payload      jsonb NOT NULL,
    wallets      text[] NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    processed_at timestamptz
);
CREATE INDEX webhook_inbox_pending ON webhook_inbox (id) WHERE processed_at IS NULL;

-- One row per (transaction, watched wallet) handled: the exactly-once guard for processing.
CREATE TABLE observations (
    signature   text NOT NULL,
    wallet      text NOT NULL,
    outcome     text NOT NULL,
    observed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (signature, wallet)
);

CREATE TABLE signals (
    id             bigserial PRIMARY KEY,
    signature      text NOT NULL,
    wallet         text NOT NULL,
    side           text NOT NULL CHECK (side IN ('buy', 'sell')),
    token_mint     text NOT NULL,
    token_amount   numeric(40, 0) NOT NULL,
    token_decimals integer NOT NULL,
    quote_mint     text NOT NULL,
    quote_amount   numeric(40, 0) NOT NULL,
    source         text,
    decision       text NOT NULL CHECK (decision IN ('taken', 'skipped')),
    reason         text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (signature, wallet)
);
CREATE INDEX signals_created ON signals (created_at DESC);

-- Projection of the position journal, kept in the same transaction as each event.
CREATE TABLE positions (
    id                 bigserial PRIMARY KEY,
    signal_id          bigint NOT NULL UNIQUE REFERENCES signals (id),
    wallet             text NOT NULL,
    token_mint         text NOT NULL,
    token_decimals     integer NOT NULL,
    quote_mint         text NOT NULL,
    -- shadow: a signal we skipped, followed on paper to show what the rule cost or saved
    mode               text NOT NULL CHECK (mode IN ('paper', 'live', 'shadow')),
    status             text NOT NULL,
    entry_quote_amount numeric(40, 0) NOT NULL,
    entry_token_amount numeric(40, 0) NOT NULL,
    token_amount_open  numeric(40, 0) NOT NULL,
    exit_quote_amount  numeric(40, 0) NOT NULL DEFAULT 0,
    realized_pnl_quote numeric(40, 0),
    exit_reason        text,
    opened_at          timestamptz NOT NULL DEFAULT now(),
    closed_at          timestamptz,
    updated_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX positions_open ON positions (wallet, token_mint) WHERE closed_at IS NULL;

CREATE TABLE position_events (
    position_id bigint NOT NULL REFERENCES positions (id),
    seq         integer NOT NULL,
    kind        text NOT NULL,
    data        jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (position_id, seq)
);
