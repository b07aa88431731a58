"""The errors every adapter raises, named by what the caller should do::

    ProviderError
     ├── TemporaryError        retry later (network error, attempt timeout, 5xx, 408); `.retry_after`
     │    └── RateLimited      429, or our own budget would wait longer than `Policy.max_wait_s`
     ├── ProviderUnavailable   the breaker is open: do not call; use another source or fail closed
     ├── BadResponse           a 2xx whose body is not JSON or not the expected shape: use another source
     └── RequestRejected       another 4xx: the request is wrong or refused (e.g. no route); do not retry
"""

from __future__ import annotations

from typing import Any


class ProviderError(Exception):
    """Base of every error an adapter raises. `provider` names the service."""

    def __init__(self, message: str, *, provider: str = "") -> None:
        super().__init__(message)
        self.provider = provider


class TemporaryError(ProviderError):
    """Worth retrying later. `retry_after` (seconds) when the provider said how long to wait."""

    def __init__(self, message: str, *, provider: str = "", retry_after: float | None = None,
                 status: int | None = None) -> None:
        super().__init__(message, provider=provider)
        self.retry_after = retry_after
        self.status = status


class RateLimited(TemporaryError):
    """Over the provider's rate limit (429), or our own budget would make the call wait longer than
    `Policy.max_wait_s` (`local=True`: nothing was sent). Not a sign of ill health: the breaker ignores it."""

    def __init__(self, message: str, *, provider: str = "", retry_after: float | None = None,
                 status: int | None = None, local: bool = False) -> None:
        super().__init__(message, provider=provider, retry_after=retry_after, status=status)
        self.local = local


class ProviderUnavailable(ProviderError):
    """The provider's breaker is open (or its half-open probe is in flight): the call was not made."""

    def __init__(self, message: str, *, provider: str = "", retry_after: float = 0.0) -> None:
        super().__init__(message, provider=provider)
        self.retry_after = retry_after


class BadResponse(ProviderError):
    """The provider answered, but the body is not JSON or not the shape we rely on."""


class RequestRejected(ProviderError):
    """A 4xx other than 408/429: the request is invalid or refused. Retrying the same request is pointless."""

    def __init__(self, message: str, *, provider: str = "", status: int = 400, body: Any = None) -> None:
        super().__init__(message, provider=provider)
        self.status = status
        self.body = body
