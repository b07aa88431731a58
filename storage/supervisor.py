"""The database as a supervised dependency: noticed when it goes, restarted when it is ours, given up on in time.

`DatabaseSupervisor` runs as a task on the store's asyncio thread (the bridge's `AsyncioThread`). Every
`probe_s` it asks the server `SELECT 1` on a connection of its own — never the pool's: a busy pool is not a dead
server — and, with the embedded server, whether its postmaster still lives (a killed postmaster leaves its
backends answering for a moment):

    connected ──probe fails──▶ unreachable ──(embedded, postmaster gone)──▶ restarting ──▶ connected
        ▲                          │                                             │
        └────── probe answers ─────┘              down > window, or past the restart intensity ──▶ failed

- `unreachable`: logged once (`database_unreachable`). The asyncpg pool reconnects by itself as soon as the
  server answers; nothing is restarted for an external `DATABASE_URL`.
- `restarting` (the embedded server only): the dead postmaster is waited out (a zombie still holds its PID in
  `postmaster.pid`) and the server started again in its data directory, after a backoff that doubles, at most
  `max_restarts` times within the window — the actors' own `RestartPolicy`. Every attempt is logged
  (`database_restart`, `database_restarted`, `database_restart_failed`).
- Back: `database_recovered` (with how long it was down), then `on_recovered(down_s)` runs on this loop (the App
  listens again, hands out what the outage left in the inbox, reloads what a lost NOTIFY would have said).
- `failed`: down for longer than `window_s` (DATABASE_RECOVERY_WINDOW_S) or restarted too often:
  `database_recovery_failed`, then `on_failed(reason)`; `walltrack run` exits non-zero so that the service
  manager (systemd's `Restart=on-failure`) starts it afresh.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Awaitable, Callable

import asyncpg
import structlog

from actors.supervision import Backoff, Intensity, Restart, RestartChildren, RestartPolicy
from storage.db import EmbeddedPostgres

log = structlog.get_logger("database")

CONNECTED, UNREACHABLE, RESTARTING, FAILED = "connected", "unreachable", "restarting", "failed"
_PROBE_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, asyncio.TimeoutError, TimeoutError)


class DatabaseSupervisor:
    def __init__(self, url: str, pg: EmbeddedPostgres | None, *, window_s: float, max_restarts: int,
                 probe_s: float = 0.5, backoff: Backoff = Backoff(0.5, 10.0),
                 on_recovered: Callable[[float], Awaitable[None]] | None = None,
                 on_failed: Callable[[str], None] | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.url, self.pg = url, pg
        self.window_s, self.probe_s = window_s, probe_s
        self.state = CONNECTED
        self.restarts = 0  # successful restarts of the embedded server
        self.down_since: float | None = None
        self._on_recovered, self._on_failed = on_recovered, on_failed
        self._clock = clock
        self._policy = RestartPolicy(intensity=Intensity(max_restarts, window_s), backoff=backoff, clock=clock)
        self._restart_at: float | None = None  # when the decided restart is due
        self._conn: asyncpg.Connection | None = None
        self._task: asyncio.Task | None = None
        self._restarting: asyncio.Future | None = None  # a restart under way (pg_ctl, in a worker thread)

    # -- lifecycle (on the asyncio thread) ---------------------------------------------------------------
    async def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def stop(self, wait_s: float = 5.0) -> None:
        """Stop watching. A restart under way is waited for (bounded), so that the server it starts is the one the
        owner of the embedded server then stops — never one left running behind us."""
        if self._task is not None:
            self._task.cancel()
        if self._conn is not None:
            self._conn.terminate()
            self._conn = None
        if self._restarting is not None and not self._restarting.done():
            await asyncio.wait([self._restarting], timeout=wait_s)

    def as_json(self) -> dict[str, Any]:
        down = None if self.down_since is None else round(self._clock() - self.down_since, 1)
        return {"state": self.state, "down_s": down, "restarts": self.restarts, "embedded": self.pg is not None}

    # -- the loop -------------------------------------------------------------------------------------------
    async def _run(self) -> None:
        while self.state != FAILED:
            alive = await self._probe() and (self.pg is None or self.pg.alive())
            if alive:
                if self.state != CONNECTED:
                    await self._recovered()
            else:
                await self._down()
            await asyncio.sleep(self.probe_s)

    async def _probe(self) -> bool:
        try:
            if self._conn is None or self._conn.is_closed():
                self._conn = await asyncpg.connect(self.url, timeout=max(1.0, self.probe_s * 4))
            await self._conn.fetchval("SELECT 1", timeout=max(1.0, self.probe_s * 4))
            return True
        except _PROBE_ERRORS:
            if self._conn is not None:
                self._conn.terminate()
                self._conn = None
            return False

    async def _down(self) -> None:
        now = self._clock()
        if self.down_since is None:
            self.down_since, self.state = now, UNREACHABLE
            log.error("database_unreachable", embedded=self.pg is not None, window_s=self.window_s)
        if self.pg is not None and not self.pg.alive():
            await self._restart(now)
        if self.state != FAILED and now - self.down_since > self.window_s:
            self._fail(f"the database has been unreachable for {now - self.down_since:.0f} s "
                       f"(DATABASE_RECOVERY_WINDOW_S={self.window_s:g})")

    async def _restart(self, now: float) -> None:
        assert self.pg is not None
        if self._restart_at is None:  # a fresh death (or a failed attempt): the policy decides when, or never
            decision = self._policy.on_exit("database", Restart.PERMANENT, abnormal=True, order=("database",))
            if not isinstance(decision, RestartChildren):  # Escalate: too many restarts within the window
                self._fail(f"the embedded database could not be kept up: {getattr(decision, 'reason', decision)}")
                return
            self.state, self._restart_at = RESTARTING, now + decision.delay_s
            log.warning("database_restart", attempt=self._policy.recent_restarts, delay_s=round(decision.delay_s, 2))
        if now < self._restart_at:
            return
        self._restart_at = None
        self._restarting = asyncio.ensure_future(asyncio.to_thread(self.pg.restart))
        try:
            pid = await asyncio.shield(self._restarting)
        except Exception as exc:  # noqa: BLE001 - pg_ctl's failure is logged; the next round decides again
            log.error("database_restart_failed", error=repr(exc)[:500])
            return
        self.restarts += 1
        log.warning("database_restarted", pid=pid, restarts=self.restarts)

    async def _recovered(self) -> None:
        assert self.down_since is not None
        down_s = self._clock() - self.down_since
        self.state, self.down_since, self._restart_at = CONNECTED, None, None
        log.warning("database_recovered", down_s=round(down_s, 2), restarts=self.restarts)
        if self._on_recovered is not None:
            try:
                await self._on_recovered(down_s)
            except Exception as exc:  # noqa: BLE001 - the App's reconcile loop catches up later
                log.warning("database_resume_failed", error=repr(exc))

    def _fail(self, reason: str) -> None:
        self.state = FAILED
        log.error("database_recovery_failed", reason=reason,
                  action="exiting non-zero: the service manager restarts WallTrack")
        if self._on_failed is not None:
            self._on_failed(reason)
