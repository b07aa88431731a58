"""A whole cluster on this machine, for `walltrack demo --nodes N`, the tests and the benchmark: a local JetStream
cluster (`natsd.LocalCluster`), N headless bot nodes (`python -m walltrack.cluster.process`, separate processes)
on one database, and a NATS client that asks each node what it runs (`walltrack.cluster.status.<node>`).
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats

from walltrack.bridge import AsyncioThread
from walltrack.cluster import wire
from walltrack.cluster.natsd import LocalCluster, die_with_parent


@dataclass
class Node:
    id: str
    proc: subprocess.Popen
    port: int | None = None

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/webhooks/helius"


def env_of(settings: Any) -> dict[str, str]:
    """Settings as the environment variables that give a node process the same ones (secrets travel in the
    environment, never in argv)."""
    from pydantic import SecretStr

    out: dict[str, str] = {}
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        out[name.upper()] = str(value).lower() if isinstance(value, bool) else str(value)
    return out


class ClusterHarness:
    def __init__(self, root: Path, env: dict[str, str], nodes: int, *, nats_servers: int | None = None,
                 args: list[str] | None = None, partitions: int = 64, cluster: bool = True,
                 panel_port: int | None = None) -> None:
        self.root, self.base_env, self.count = root, env, nodes
        self.args = args or []
        self.partitions = partitions
        self.clustered = cluster  # False: one process in the default, single-process mode (no NATS at all)
        self.panel_port = panel_port  # the first node serves the operator panel there
        self.nats = LocalCluster(root / "nats", size=nats_servers or min(3, nodes))
        self.nodes: list[Node] = []
        self._client: Any = None
        self._loop: AsyncioThread | None = None

    # -- lifecycle ----------------------------------------------------------------------------------------------
    def start(self, timeout: float = 120) -> "ClusterHarness":
        if self.clustered:
            self.nats.start()
        for i in range(self.count):
            self.nodes.append(self._spawn(f"node-{i + 1}"))
        deadline = time.monotonic() + timeout
        for node in self.nodes:
            self._ready(node, deadline)
        if not self.clustered:
            return self
        self._loop = AsyncioThread(name="harness-nats")
        self._client = self._loop.run(nats.connect(self.nats.url.split(","), name="walltrack-harness"), timeout=30)
        return self

    def _spawn(self, node_id: str) -> Node:
        data = self.root / node_id
        data.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.base_env, "WALLTRACK_DATA_DIR": str(data), "GATEWAY_PORT": "0"}
        if self.clustered:
            env.update(CLUSTER_NODE_ID=node_id, CLUSTER_NATS_URL=self.nats.url, CLUSTER_REPLICAS=str(min(3, self.nats.size)),
                       CLUSTER_PARTITIONS=str(self.partitions))
        args = list(self.args)
        if self.panel_port is not None and not self.nodes:
            env["PANEL_PORT"] = str(self.panel_port)
            args.append("--panel")
        proc = subprocess.Popen([sys.executable, "-m", "walltrack.cluster.process", *args], env=env,
                                stdout=subprocess.PIPE, stderr=(data / "stderr.log").open("ab"), stdin=subprocess.DEVNULL,
                                text=True, preexec_fn=die_with_parent)
        return Node(node_id, proc)

    def _ready(self, node: Node, deadline: float) -> None:
        lines: queue.Queue[str] = queue.Queue()
        assert node.proc.stdout is not None
        threading.Thread(target=lambda: lines.put(node.proc.stdout.readline()), daemon=True).start()
        try:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            raise TimeoutError(f"{node.id} did not start; see {self.root / node.id}") from None
        if not line.strip():
            err = (self.root / node.id / "stderr.log").read_text()[-1500:]
            raise RuntimeError(f"{node.id} exited ({node.proc.wait()}): {err}")
        node.port = json.loads(line)["gateway_port"]

    def kill(self, node: Node) -> float:
        """SIGKILL: no goodbye, no lease released. Returns the wall time of the kill."""
        node.proc.send_signal(signal.SIGKILL)
        node.proc.wait(timeout=10)
        return time.time()

    def stop(self) -> None:
        for node in self.nodes:
            if node.alive:
                node.proc.send_signal(signal.SIGTERM)
        for node in self.nodes:
            try:
                node.proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                node.proc.kill()
                node.proc.wait(timeout=5)
        if self._client is not None and self._loop is not None:
            try:
                self._loop.run(self._client.close(), timeout=5)
            except Exception:  # noqa: BLE001 - closing is best effort
                pass
            self._loop.stop()
        if self.clustered:
            self.nats.stop()

    # -- asking the nodes ---------------------------------------------------------------------------------------
    def request(self, subject: str, data: bytes, timeout: float = 10) -> bytes:
        """A NATS request from outside the nodes (as any client of the cluster would send it)."""
        assert self._loop is not None

        async def ask() -> bytes:
            return (await self._client.request(subject, data, timeout=timeout)).data

        return self._loop.run(ask(), timeout=timeout + 1)

    def status(self, node: Node, timeout: float = 5) -> dict[str, Any] | None:
        if not node.alive or self._loop is None:
            return None
        try:
            return json.loads(self.request(wire.status_subject(node.id), b"", timeout=timeout))
        except Exception:  # noqa: BLE001 - not answering: None
            return None

    def statuses(self) -> dict[str, dict[str, Any] | None]:
        return {n.id: self.status(n) for n in self.nodes if n.alive}

    def balanced(self) -> bool:
        """Every partition owned once, no live node over its share, one risk owner and one price poller."""
        st = [s for s in self.statuses().values()]
        if not st or any(s is None or "partitions" not in s for s in st):
            return False
        owned = [p for s in st for p in s["partitions"]]
        share = -(-self.partitions // len(st))
        return (sorted(owned) == list(range(self.partitions)) and all(len(s["partitions"]) <= share for s in st)
                and sum(bool(s["risk"]) for s in st) == 1 and sum(bool(s["prices"]) for s in st) == 1)

    def wait(self, predicate: Any, timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what}: not within {timeout} s")
            time.sleep(0.2)

    def __enter__(self) -> "ClusterHarness":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
