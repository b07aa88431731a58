-- Truth of a trade (issue 10): every transaction of a watched wallet ends as a signal or as an observation that
-- says why it is not one. `reason` names it for the operator (`walltrack ignored`): not a trade
-- (outcome no_trade: no_token_moved, several_tokens_moved, not_paid), refused (outcome ignored:
-- transaction_failed, implausible:decimals|amount|timestamp) or no longer watched (outcome unwatched).
-- `decision_id` is the deciding actor's idempotency key: a write retried after its commit's acknowledgement was
-- lost finds its own row (and goes on as stored) instead of a duplicate.
ALTER TABLE observations ADD COLUMN reason text;
ALTER TABLE observations ADD COLUMN decision_id text;
CREATE INDEX observations_not_signals ON observations (observed_at DESC) WHERE outcome <> 'signal';
