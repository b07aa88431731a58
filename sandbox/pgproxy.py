"""A fault-injecting proxy in front of PostgreSQL: TCP on 127.0.0.1 in, the server's Unix socket (or a TCP
address) out, bytes passed through unchanged — the wire protocol is the real one.

`cut_after_commit(marker)` arms one fault: the next connection whose client sends `marker` (text of a statement,
e.g. `b"INSERT INTO observations"`, seen in its Parse message) and then a `COMMIT` has that COMMIT delivered to the
server, the server's answer swallowed, and both sides closed. The transaction is committed; the client sees its
connection die without knowing it — "committed just as its connection died". `cuts` counts the faults done.
"""

from __future__ import annotations

import socket
import threading
from pathlib import Path


class PgProxy:
    def __init__(self, upstream: str | tuple[str, int]) -> None:
        self.upstream = upstream  # a Unix socket path, or (host, port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._marker: bytes | None = None
        self.cuts = 0
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="pgproxy", daemon=True)

    @classmethod
    def for_url(cls, url: str) -> "PgProxy":
        """In front of an embedded server whose URL names its socket directory (`?host=/dir`)."""
        directory = url.split("host=", 1)[1].split("&", 1)[0]
        return cls(str(Path(directory) / ".s.PGSQL.5432"))

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> "PgProxy":
        self._thread.start()
        return self

    def close(self) -> None:
        self._closed.set()
        self._listener.close()

    def cut_after_commit(self, marker: bytes) -> None:
        with self._lock:
            self._marker = marker

    # -- plumbing ---------------------------------------------------------------------------------------------
    def _connect_upstream(self) -> socket.socket:
        if isinstance(self.upstream, str):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(self.upstream)
            return s
        return socket.create_connection(self.upstream)

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = self._connect_upstream()
            except OSError:
                client.close()
                continue
            link = _Link(self, client, server)
            threading.Thread(target=link.client_to_server, daemon=True).start()
            threading.Thread(target=link.server_to_client, daemon=True).start()

    def _claim(self, seen: bytes) -> bool:
        """Whether this connection, having sent `seen` so far in its transaction, carries the armed fault."""
        with self._lock:
            if self._marker is not None and self._marker in seen:
                self._marker = None
                self.cuts += 1
                return True
            return False


class _Link:
    def __init__(self, proxy: PgProxy, client: socket.socket, server: socket.socket) -> None:
        self.proxy, self.client, self.server = proxy, client, server
        self.seen = b""  # what the client sent since its last COMMIT (bounded)
        self.cut = threading.Event()  # the COMMIT went through: swallow the answer, close both sides

    def close(self) -> None:
        for s in (self.client, self.server):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def client_to_server(self) -> None:
        try:
            while data := self.client.recv(65536):
                self.seen = (self.seen + data)[-65536:]
                commit = b"COMMIT" in data
                armed = commit and self.proxy._claim(self.seen)
                if commit:
                    self.seen = b""
                if armed:
                    self.cut.set()
                self.server.sendall(data)
        except OSError:
            pass
        finally:
            if not self.cut.is_set():
                self.close()

    def server_to_client(self) -> None:
        try:
            while data := self.server.recv(65536):
                if self.cut.is_set():  # the answer to the COMMIT: the client never hears it
                    break
                self.client.sendall(data)
        except OSError:
            pass
        finally:
            self.close()
