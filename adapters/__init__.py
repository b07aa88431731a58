"""The adapters room: the outside services, one module per service, all on trio, all through the
resilience layer in `adapters.http` (rate-limit budget, retries honouring Retry-After, a circuit breaker per
provider). What they yield about a token is typed in `adapters.facts`.

May import: nothing of ours outside `adapters` (never `actors`, never the runtime in `walltrack`).

- `http`: `ResilientClient`, the HTTP side, and the layer's public names: `errors` (the tree callers act on),
  `budget` (`Policy`, the rate budget, the circuit breaker), `provider` (`Provider`: budget, retries, breaker).
- `jupiter`: Price v3 (≤ 50 ids per call), Quote and Swap v1.
- `dexscreener`: `/tokens/v1/{chain}/{addresses}` (≤ 30 per call), best pair per token.
- `solana_rpc`, `helius`, `rugcheck`: the chain's JSON-RPC, Helius' webhooks API, RugCheck's report.

Base URLs and keys are configuration: the same code talks to the sandbox and to mainnet.
"""

from adapters.http import (
    BadResponse,
    BreakerState,
    Policy,
    Provider,
    ProviderError,
    ProviderState,
    ProviderUnavailable,
    RateLimited,
    RequestRejected,
    ResilientClient,
    TemporaryError,
)

__all__ = [
    "BadResponse",
    "BreakerState",
    "Policy",
    "Provider",
    "ProviderError",
    "ProviderState",
    "ProviderUnavailable",
    "RateLimited",
    "RequestRejected",
    "ResilientClient",
    "TemporaryError",
]
