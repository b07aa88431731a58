"""The load generator of bench/run.py, in a process of its own (it must not share the bot's process, nor its GIL).

Reads webhook bodies (one JSON line each: {"sig": ..., "body": "<the JSON array as text>"}) and POSTs them over
kept-alive HTTP/1.1 connections with pre-built requests (asyncio streams, no HTTP library in the way):

- `flood`: `--connections` connections, each sending the next body as soon as its last one is answered, for
  `--seconds` (closed loop: the throughput test);
- `rate`: one body every 1/`--rate` s on a fixed schedule, whatever the answers (open loop: a late answer does
  not delay the next send, so latency is not hidden by coordinated omission); connections are opened as needed.

Writes one JSON object to stdout: {"sent": [[index, send_unix_s, latency_s, status], ...], "seconds": ...}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path


class Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> "Conn":
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def post(self, request: bytes) -> int:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if length:
            await self.reader.readexactly(length)
        return status

    def close(self) -> None:
        self.writer.close()


def request(port: int, secret: str, body: bytes) -> bytes:
    return (f"POST /webhooks/helius HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: {secret}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body


async def flood(port: int, requests: list[bytes], connections: int, seconds: float) -> list[list[float]]:
    out: list[list[float]] = []
    stop = time.monotonic() + seconds
    nxt = iter(range(len(requests)))

    async def worker() -> None:
        conn = await Conn.open(port)
        try:
            for i in nxt:
                if time.monotonic() >= stop:
                    return
                t0, m0 = time.time(), time.perf_counter()
                try:
                    status = await conn.post(requests[i])
                except (OSError, asyncio.IncompleteReadError):
                    status = 0
                    conn.close()
                    conn = await Conn.open(port)
                out.append([i, t0, time.perf_counter() - m0, status])
        finally:
            conn.close()

    await asyncio.gather(*(worker() for _ in range(connections)))
    return out


async def rate(port: int, requests: list[bytes], per_s: float, seconds: float) -> list[list[float]]:
    out: list[list[float]] = []
    idle: list[Conn] = []
    tasks = []
    start = time.perf_counter()

    async def one(i: int) -> None:
        conn = idle.pop() if idle else await Conn.open(port)
        t0, m0 = time.time(), time.perf_counter()
        try:
            status = await conn.post(requests[i])
            idle.append(conn)
        except (OSError, asyncio.IncompleteReadError):
            status = 0
            conn.close()
        out.append([i, t0, time.perf_counter() - m0, status])

    n = min(len(requests), int(per_s * seconds))
    for i in range(n):
        delay = start + i / per_s - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(one(i)))
    await asyncio.gather(*tasks)
    for c in idle:
        c.close()
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=("flood", "rate"))
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--secret", default="")
    p.add_argument("--bodies", type=Path, required=True)
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--rate", type=float, default=100)
    a = p.parse_args()
    bodies = [json.loads(line)["body"].encode() for line in a.bodies.read_text().splitlines()]
    reqs = [request(a.port, a.secret, b) for b in bodies]
    t0 = time.perf_counter()
    if a.mode == "flood":
        sent = asyncio.run(flood(a.port, reqs, a.connections, a.seconds))
    else:
        sent = asyncio.run(rate(a.port, reqs, a.rate, a.seconds))
    json.dump({"sent": sent, "seconds": time.perf_counter() - t0}, sys.stdout)


if __name__ == "__main__":
    main()
