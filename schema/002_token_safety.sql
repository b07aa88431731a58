-- Token safety verdicts (cached per mint, with every check's result and reason) and the verdict
-- behind each signal, so the panel can show why a token was taken or rejected.

CREATE TABLE token_safety (
    mint        text PRIMARY KEY,
    score       numeric(5, 4) NOT NULL,
    passed      boolean NOT NULL,
    reason      text,
    checks      jsonb NOT NULL,
    checked_at  timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE signals ADD COLUMN safety jsonb;

-- The latest price seen for each token (the price monitor's marks; the panel's current price).
-- usd is NULL when no source knows the token: unknown, never zero.
CREATE TABLE token_prices (
    mint       text PRIMARY KEY,
    usd        numeric,
    source     text,
    stale      boolean NOT NULL DEFAULT false,
    priced_at  timestamptz NOT NULL DEFAULT now()
);
