"""The gateway room: the Helius webhook's HTTP edge (Quart-trio on Hypercorn).

- `app`: `create_app(GatewayDeps)`: authentication, size limits, validation, the delivery stored before the 200,
  then dispatched; `/health` and `/metrics` through the callbacks it is given.
- `fastpath`: the same webhook as a plain ASGI route in front of Quart, for the hot path.

May import: `actors` (the trade classifier and message types). Everything else (the store, the root, the
metrics) comes in through `GatewayDeps`, wired by the composition root.
"""
