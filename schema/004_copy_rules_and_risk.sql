-- Copy rules per watched wallet and the risk breakers (actors/rules.py, actors/risk.py).

-- A wallet's overrides of the global copy defaults, validated by actors.rules.CopyRules ({} = defaults).
ALTER TABLE wallets ADD COLUMN settings jsonb NOT NULL DEFAULT '{}'::jsonb;

-- Each breaker's current state. Names: max_drawdown, daily_loss, loss_streak, token_cooldown:<mint>,
-- wallet_pause:<wallet>. A tripped breaker stops new entries until `until` (NULL: until an operator resets it).
CREATE TABLE breakers (
    name        text PRIMARY KEY,
    state       text NOT NULL CHECK (state IN ('tripped', 'clear')),
    reason      text NOT NULL,
    tripped_at  timestamptz NOT NULL,
    until       timestamptz,
    reset_at    timestamptz,
    reset_by    text,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Every trip and reset (`by`: risk, time, operator); one trip has at most one reset.
CREATE TABLE breaker_events (
    id          bigserial PRIMARY KEY,
    name        text NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('tripped', 'reset')),
    trip_at     timestamptz NOT NULL,
    at          timestamptz NOT NULL,
    by          text NOT NULL,
    reason      text,
    until       timestamptz,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (name, kind, trip_at)
);
