-- Distributed mode (walltrack/cluster/): an audit of what each gateway acknowledged, and of partition ownership.

-- Written by a gateway after the delivery is in webhook_inbox and appended to JetStream, before it answers 200:
-- what was acknowledged, by which node (a retry through another node is a second row). Counting "lost" and
-- "duplicated" deliveries against this ledger does not depend on what the actors report.
CREATE TABLE cluster_acks (
    signature  text NOT NULL,
    node       text NOT NULL,
    acked_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (signature, node)
);

-- Every lease a node took, gave back or lost: "partition:NNN", "risk", "prices". `acquired` is written once the
-- partition's actors run again (rebuilt from the journal), so its time is when they are monitored again.
CREATE TABLE cluster_events (
    id         bigserial PRIMARY KEY,
    node       text NOT NULL,
    lease      text NOT NULL,
    kind       text NOT NULL CHECK (kind IN ('acquired', 'released', 'lost')),
    revision   bigint,
    wallets    integer,
    positions  integer,
    at         timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX cluster_events_lease ON cluster_events (lease, at);
