"""The execution room: turning a decision into a fill, on paper or on chain.

- `paper`: `PaperExecutor`, honest paper fills from a real Jupiter quote (price impact, fees, slippage).
- `live`: `LiveExecutor`, real swaps in two steps (build, verify, simulate, sign; then send and confirm).
- `verify`: what a swap transaction may do before we sign it (programs, accounts, our balances' outcome).
- `confirm`: the signature's confirmation and the fill read back from the chain.
- `keys`: the wallet key (file or env), never printed.
- `reconcile`: the wallet's balances on chain against the open positions' book.

May import: `actors` (the `Fill` and port types it answers with), `adapters`, and the runtime bridge
(`walltrack.bridge`). Never `storage`, `intelligence`, or the rest of `walltrack`.
"""
