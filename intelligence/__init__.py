"""The token-intelligence room: what we know about a token before and while we hold it.

- `safety`: the safety score (mint/freeze authority, Token-2022 extensions, liquidity, market cap, pool age,
  holder concentration, a sell route, RugCheck), each check with a result and a reason; verdicts cached per mint.
- `prices`: `PriceService` (Jupiter first, DexScreener as fallback) and `PriceMonitor`, the poll that feeds
  open positions their ticks.

May import: `adapters` (the sources and their typed facts). Never `actors`, `walltrack`, `storage`.
"""
