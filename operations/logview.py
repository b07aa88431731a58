"""`walltrack logs`: the JSON log (`$WALLTRACK_DATA_DIR/logs/walltrack.log`) for people — one line per event,
`time level event key=value...`, the ids kept whole — optionally followed across rotations (`-f`)."""

from __future__ import annotations

import json
import os
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable, Iterator, TextIO

LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}
FIRST = ("timestamp", "level", "event", "logger")


def pretty(line: str) -> str:
    """One rendered JSON log line as text (a line that is not JSON is returned as it is)."""
    try:
        e = json.loads(line)
    except ValueError:
        return line.rstrip("\n")
    if not isinstance(e, dict):
        return line.rstrip("\n")
    stamp = str(e.get("timestamp", ""))[:23].replace("T", " ")
    rest = " ".join(f"{k}={_value(v)}" for k, v in e.items() if k not in FIRST)
    return f"{stamp} {str(e.get('level', '')).upper():<7} {e.get('event', '')}  {rest}".rstrip()


def _value(v: Any) -> str:
    if isinstance(v, str):
        return v if v and " " not in v else json.dumps(v)
    return json.dumps(v, default=str, separators=(",", ":"))


def keep(level: str | None, grep: str | None) -> Callable[[str], bool]:
    floor = LEVELS.get(level or "debug", 0)

    def wanted(line: str) -> bool:
        if grep and grep not in line:
            return False
        if floor:
            try:
                return LEVELS.get(str(json.loads(line).get("level", "")).lower(), 0) >= floor
            except (ValueError, AttributeError):
                return True
        return True

    return wanted


def tail(path: Path, lines: int) -> tuple[list[str], int | None, int]:
    """The last `lines` lines, and where they end (the file's inode and offset): `follow` goes on from there, so a
    line written between the two is neither lost nor shown twice."""
    if not path.exists():
        return [], None, 0
    with path.open(encoding="utf-8", errors="replace") as f:
        last = list(deque(f, maxlen=lines)) if lines else []
        f.seek(0, os.SEEK_END)
        return last, os.fstat(f.fileno()).st_ino, f.tell()


def follow(path: Path, inode: int | None = None, offset: int = 0, poll_s: float = 0.25,
           stop: Callable[[], bool] = lambda: False) -> Iterator[str]:
    """Lines written after `offset` of the file `inode` (from the start of any other file at `path`), as they come;
    across a rotation (a new file) or a truncation, the new file is read from its start."""
    f: TextIO | None = None
    partial = ""
    try:
        while not stop():
            if f is None:
                if not path.exists():
                    time.sleep(poll_s)
                    continue
                f = path.open(encoding="utf-8", errors="replace")
                if os.fstat(f.fileno()).st_ino == inode:
                    f.seek(offset)
                inode = os.fstat(f.fileno()).st_ino
            chunk = f.readline()
            if chunk:
                partial += chunk
                if partial.endswith("\n"):  # a line still being written waits for its end
                    yield partial
                    partial = ""
                continue
            try:
                st = path.stat()
                replaced = st.st_ino != inode or st.st_size < f.tell()
            except FileNotFoundError:
                replaced = True
            if replaced:
                f.close()
                f, inode, partial = None, None, ""
                continue
            time.sleep(poll_s)
    finally:
        if f is not None:
            f.close()
