-- The position engine (actors/position.py): every fill of a position, as journaled in position_events
-- (`entry_filled`, `partial_exit`, `exit_filled`). A closed position's realized_pnl_quote equals the sum
-- of its sell fills' quote_amount minus its buy fill's quote_amount, to the raw unit.
CREATE TABLE fills (
    position_id    bigint NOT NULL REFERENCES positions (id),
    seq            integer NOT NULL,
    kind           text NOT NULL,
    reason         text,
    side           text NOT NULL CHECK (side IN ('buy', 'sell')),
    token_amount   numeric(40, 0) NOT NULL,
    quote_amount   numeric(40, 0) NOT NULL,  -- buy: spent incl. fees; sell: received after slippage and fees
    quoted_out     numeric(40, 0) NOT NULL,  -- what the route quoted
    fee_quote      numeric(40, 0) NOT NULL,  -- network + priority fee, in quote units
    slippage_quote numeric(40, 0) NOT NULL,
    price_impact   text NOT NULL,
    route          text NOT NULL,
    filled_at      double precision NOT NULL,  -- unix seconds on the bot's clock (simulated in the demo)
    PRIMARY KEY (position_id, seq),
    FOREIGN KEY (position_id, seq) REFERENCES position_events (position_id, seq)
);
