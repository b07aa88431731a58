"""Distributed mode: watched wallets partitioned across nodes on NATS JetStream (off by default).

Nothing here is imported unless `CLUSTER_NATS_URL` is set; the embedded single-process mode never touches it.

- `wire`: the subjects, bucket and stream names, the partition of a wallet, and the codec for messages.
- `link`: the NATS connection on its own asyncio thread; the streams, consumers and KV buckets it declares.
- `leases`: partition, risk and price ownership as KV leases (TTL, revision-checked renewals, self-fencing).
- `deliveries`: gateways append stored deliveries to the stream; owners consume their partitions and ack
  after the observation is committed.
- `root`: the root supervisor of a node — only the wallets and positions of its partitions, the risk actor
  here or a proxy to the node that owns it.
- `risk`, `prices`, `commands`: the one risk owner, the one price poller, operator commands by key.
- `node`: `Cluster`, the seam the composition root (`walltrack/app.py`) uses.
- `natsd`, `process`, `demo`: a local JetStream cluster, a headless node process, `walltrack demo --nodes N`.

See docs/architecture.md, "Distributed mode".
"""
