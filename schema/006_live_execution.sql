-- Live execution (walltrack/live.py): a live fill is the balance deltas of the transaction the chain confirmed
-- (also the fee of one that landed failed, booked as a fill of no tokens). Its signature is booked once: a second
-- position event naming the same transaction is refused by the database, never silently counted twice.
ALTER TABLE fills ADD COLUMN signature text;
CREATE UNIQUE INDEX fills_signature ON fills (signature) WHERE signature IS NOT NULL;

-- The start-up reconcile of the book against the chain (live mode): open live positions against the wallet's
-- token accounts. Findings are shown to the operator (log, /health, the dashboard), never fixed silently. One run
-- is the rows sharing its run_at; a clean run is one 'clean' row.
CREATE TABLE live_reconcile (
    id           bigserial PRIMARY KEY,
    run_at       timestamptz NOT NULL,
    wallet       text NOT NULL,
    kind         text NOT NULL CHECK (kind IN ('clean', 'tokens_gone', 'untracked_tokens', 'amount_mismatch')),
    mint         text,
    position_ids bigint[] NOT NULL DEFAULT '{}',
    book_amount  numeric(40, 0),
    chain_amount numeric(40, 0),
    detail       text
);
CREATE INDEX live_reconcile_run ON live_reconcile (run_at DESC);
