"""systemd's notification protocol (sd_notify), without a dependency: a datagram to `$NOTIFY_SOCKET`.

With `Type=notify` the unit is "started" only once `READY=1` arrives (after the gateway listens); with
`WatchdogSec=` systemd sets `$WATCHDOG_USEC` and restarts the bot when no `WATCHDOG=1` came for that long.
`Watchdog` pings at half that interval, and only while the bot is healthy (`check()` returns None): a wedged
runtime, a dead root actor or a stopped gateway stops the pings and systemd restarts the process. `STATUS=`
lines say why (`systemctl status walltrack`). Without systemd (no `$NOTIFY_SOCKET`) every call is a no-op.
"""

from __future__ import annotations

import os
import socket
from typing import Any, Awaitable, Callable, Mapping

import structlog
import trio

log = structlog.get_logger("watchdog")


def notify(message: str, socket_path: str | None) -> bool:
    """Send one notification; False when there is no socket (not under systemd) or it cannot be reached."""
    if not socket_path:
        return False
    address = "\0" + socket_path[1:] if socket_path.startswith("@") else socket_path  # an abstract socket
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.setblocking(False)
            sock.connect(address)
            sock.send(message.encode())
    except OSError:
        return False
    return True


class Watchdog:
    def __init__(self, check: Callable[[], Awaitable[str | None]], env: Mapping[str, str] = os.environ) -> None:
        self.check = check
        self.socket = env.get("NOTIFY_SOCKET") or None
        usec, pid = env.get("WATCHDOG_USEC"), env.get("WATCHDOG_PID")
        mine = not pid or pid == str(os.getpid())
        self.interval_s = int(usec) / 2e6 if usec and usec.isdigit() and int(usec) > 0 and mine else None

    async def run(self, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        notify("READY=1\nSTATUS=serving", self.socket)
        task_status.started()
        if self.socket is None or self.interval_s is None:
            return
        log.info("watchdog_armed", interval_s=self.interval_s)
        healthy = True
        while True:
            try:
                with trio.fail_after(max(self.interval_s, 1.0)):
                    reason = await self.check()
            except trio.TooSlowError:
                reason = "the health check did not finish in time"
            if reason is None:
                notify("WATCHDOG=1\nSTATUS=healthy", self.socket)
            else:
                notify(f"STATUS=unhealthy: {reason} (watchdog pings withheld)", self.socket)
            if (reason is None) != healthy:
                healthy = reason is None
                (log.info if healthy else log.error)("watchdog_health", healthy=healthy, reason=reason)
            await trio.sleep(self.interval_s)

    def stopping(self) -> None:
        notify("STOPPING=1", self.socket)
