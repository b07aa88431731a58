"""Adapters for the outside world: one module per external service, all on trio, all through the
resilience layer in `walltrack.adapters.http` (rate-limit budget, retries honouring Retry-After, a
circuit breaker per provider).

- `http`: `Provider`, `Policy`, `ResilientClient` and the error tree callers act on.
- `jupiter`: Price v3 (≤ 50 ids per call), Quote and Swap v1.
- `dexscreener`: `/tokens/v1/{chain}/{addresses}` (≤ 30 per call), best pair per token.

Base URLs and keys are configuration: the same code talks to the sandbox and to mainnet.
"""

from walltrack.adapters.http import (
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
