"""The operations room: what keeps a long-running bot observable, diagnosable and recoverable.

- `service`: `Operations`, the bundle the composition root starts before the gateway and stops first.
- `metrics` (Prometheus, `GET /metrics`), `alerts` (Telegram, a JSON webhook), `webhook_watch` (the Helius webhook
  kept in step with the watchlist; a stalled webhook detected and backfilled), `watchdog` (systemd READY/WATCHDOG).
- `doctor` (`walltrack doctor`: every dependency checked), `backup` (pg_dump/pg_restore with the config
  snapshot), `logview` (`walltrack logs`).

May import: `actors` (message types), `adapters`, `gateway` (the delivery shape a backfill stores), `storage`, and
from the composition root only its plumbing: `walltrack.bridge`, `walltrack.logs`, `walltrack.settings`.
Never the wiring (`walltrack.app`, `walltrack.services`, `walltrack.cli`).
"""
