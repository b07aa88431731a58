"""The storage room: PostgreSQL, and every row the bot keeps.

- `db`: the embedded server or a configured URL, migrations (`schema/`), `DatabaseUnavailable`.
- `store`: `Store`, the pool on the bridge's asyncio thread; the actors' port (futures at once) and `run` for the root.
- one module per repository: `observations` (decisions, the inbox's pending deliveries), `positions` (journals,
  projections, fills), `wallets` (the watchlist, overrides, stats), `risk` (snapshot, breakers), `market` (safety
  verdicts, prices), `modes` (the global trading mode); `repo` names them all; `rows` makes rows JSON-ready.
- `inbox` and `group_commit`: the webhook inbox's writes, many requests per commit.
- `supervisor`: the database as a supervised dependency (down, back, recovered).
- `config_history`: the operator's configuration snapshots (export, import, history).

May import: `actors` (the messages it stores) and the runtime bridge (`walltrack.bridge`). Never `adapters`,
`execution`, `intelligence`, `operations`, or the rest of `walltrack`.
"""
