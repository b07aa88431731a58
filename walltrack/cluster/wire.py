"""What travels over NATS: subjects, stream, consumer and bucket names, the partition of a wallet, and a codec
for the actors' messages (frozen dataclasses) — JSON with Decimals kept exact.

A wallet's partition is a stable hash of its address over a fixed count (`CLUSTER_PARTITIONS`, the same on
every node: the count is recorded in the state bucket and a node configured otherwise refuses to start).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from decimal import Decimal
from typing import Any

from actors import messages as m

DELIVERIES_STREAM = "WALLTRACK_DELIVERIES"
RISK_STREAM = "WALLTRACK_RISK"
LEASES_BUCKET = "walltrack_leases"  # partition.NNN, risk, prices (owners) and node.ID (heartbeats), all with a TTL
STATE_BUCKET = "walltrack_state"  # partitions (the count), breakers (the risk owner's tripped breakers)

RISK_RESERVE = "walltrack.risk.reserve"  # request/reply: ReserveEntry -> EntryDecision, answered by the risk owner
RISK_EVENTS = "walltrack.risk.events"  # JetStream: bound, released, closed, trips — for the risk owner
PRICES_SOL = "walltrack.prices.sol"  # every node: SOL in USD (the risk actor values USD-quoted exposure with it)
LEASES_RELEASED = "walltrack.cluster.released"  # a node gave a lease back: look again now
RISK_KEY, PRICES_KEY = "risk", "prices"


def partition(wallet: str, count: int) -> int:
    """The partition of a wallet address: stable across processes and machines (not Python's salted hash)."""
    return int.from_bytes(hashlib.blake2b(wallet.encode(), digest_size=8).digest(), "big") % count


def deliveries_subject(p: int) -> str:
    return f"walltrack.deliveries.{p}"


def prices_subject(p: int) -> str:
    return f"walltrack.prices.{p}"


def commands_subject(p: int) -> str:
    return f"walltrack.commands.{p}"


def status_subject(node: str) -> str:
    return f"walltrack.cluster.status.{node}"


def partition_key(p: int) -> str:
    return f"partition.{p:03d}"


def key_partition(key: str) -> int | None:
    return int(key.split(".", 1)[1]) if key.startswith("partition.") else None


def node_key(node: str) -> str:
    return f"node.{node}"


def consumer_name(p: int) -> str:
    return f"deliveries-{p:03d}"


# -- the codec ----------------------------------------------------------------------------------------------
_TYPES: dict[str, type] = {t.__name__: t for t in (
    m.ReserveEntry, m.EntryDecision, m.ReservationBound, m.ReservationReleased, m.PositionClosed, m.TripBreaker,
    m.PriceTick, m.ClosePosition, m.ClosePartial, m.SetStop, m.CommandReply,
)}
_SKIP = frozenset({"reply_to", "kind"})  # a reply address never travels; the kind tag is the type's own


def _plain(v: Any) -> Any:
    if isinstance(v, Decimal):
        return {"$d": str(v)}
    if isinstance(v, (tuple, list)):
        return [_plain(x) for x in v]
    return v


def _typed(v: Any) -> Any:
    if isinstance(v, dict) and set(v) == {"$d"}:
        return Decimal(v["$d"])
    return v


def encode(msg: Any) -> bytes:
    name = type(msg).__name__
    if name not in _TYPES:
        raise TypeError(f"{name} does not travel between nodes")
    body = {f.name: _plain(getattr(msg, f.name)) for f in dataclasses.fields(msg) if f.name not in _SKIP}
    return json.dumps({"type": name, **body}).encode()


def decode(data: bytes, **extra: Any) -> Any:
    """A message back from `encode`; `extra` fills what does not travel (a ReserveEntry's `reply_to`)."""
    body = json.loads(data)
    cls = _TYPES.get(body.pop("type", None))
    if cls is None:
        raise ValueError("not a WallTrack cluster message")
    return cls(**{k: _typed(v) for k, v in body.items()}, **extra)


def encode_ticks(ticks: tuple[m.PriceTick, ...]) -> bytes:
    return json.dumps([json.loads(encode(t)) for t in ticks]).encode()


def decode_ticks(data: bytes) -> tuple[m.PriceTick, ...]:
    return tuple(decode(json.dumps(t).encode()) for t in json.loads(data))
