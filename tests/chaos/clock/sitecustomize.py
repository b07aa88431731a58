"""Loaded at interpreter start by the bot under chaos (its PYTHONPATH names this directory): its wall clock is
`time.time()` plus the offset (seconds) written in $WALLTRACK_CHAOS_CLOCK_FILE, read again at most every 0.2 s —
a step of the system clock, as an NTP correction makes one, for this process alone. Monotonic clocks never jump, so
they are left alone (libfaketime cannot leave them alone without breaking `time.sleep` on Python 3.11)."""

import os
import time

_path = os.environ.get("WALLTRACK_CHAOS_CLOCK_FILE")
if _path:
    _real_time, _real_time_ns, _seen = time.time, time.time_ns, [0.0, -1.0]

    def _offset() -> float:
        now = time.monotonic()
        if now - _seen[1] >= 0.2:
            try:
                with open(_path) as f:
                    _seen[0] = float(f.read().strip() or 0)
            except (OSError, ValueError):
                pass
            _seen[1] = now
        return _seen[0]

    time.time = lambda: _real_time() + _offset()
    time.time_ns = lambda: _real_time_ns() + int(_offset() * 1e9)
