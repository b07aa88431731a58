"""The panel's read model: plain coroutines over one asyncpg connection, run through `Backend.query`.

They read what the actors publish to the database (positions and their journal, signals, wallets,
prices, breakers) and never ask an actor. Position state (stop, ladder, entry price) is the actors' own
pure fold of the journal (`actors.position.fold`), so the panel shows exactly what the actor decides with.
Amounts are raw integers in the database; these functions return whole units (SOL, USDC, tokens) as floats
for display only.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from fractions import Fraction
from typing import Any

import asyncpg

from actors.messages import JournalEvent
from actors.position import fold
from actors.trades import STABLE_MINTS, WSOL_MINT

QUOTE_DECIMALS = {WSOL_MINT: 9, **{m: 6 for m in STABLE_MINTS}}
QUOTE_SYMBOL = {WSOL_MINT: "SOL", **{m: "USD" for m in STABLE_MINTS}}
OPEN_STATES = ("pending_entry", "buying", "open", "partially_closed", "selling", "exit_failed")


async def has_column(conn: asyncpg.Connection, table: str, column: str) -> bool:
    return bool(await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_name = $1 AND column_name = $2)",
        table, column))


def quote_symbol(mint: str) -> str:
    return QUOTE_SYMBOL.get(mint, mint[:4])


def whole(raw: Any, decimals: int) -> float:
    return int(raw) / 10**decimals if raw is not None else 0.0  # int / int: correctly rounded, like float(Fraction)


def raw_price_to_whole(p: Fraction | None, token_decimals: int, quote_mint: str) -> float | None:
    """Raw quote units per raw token -> whole quote units per whole token."""
    if p is None:
        return None
    return float(p * 10**token_decimals / 10 ** QUOTE_DECIMALS.get(quote_mint, 9))


def _epoch(v: datetime | float | None) -> float | None:
    if v is None:
        return None
    return v.timestamp() if isinstance(v, datetime) else float(v)


def short(addr: str | None, n: int = 4) -> str:
    if not addr:
        return ""
    return addr if len(addr) <= 2 * n + 1 else f"{addr[:n]}…{addr[-n:]}"


@dataclass(frozen=True)
class Marks:
    """Latest prices: token -> (usd, priced_at epoch, stale, source), and SOL in USD."""

    usd: dict[str, tuple[float | None, float | None, bool, str | None]]
    sol_usd: float | None

    def quote_per_token(self, mint: str, quote_mint: str) -> float | None:
        """Whole quote units per whole token, or None when unknown."""
        m = self.usd.get(mint)
        if m is None or m[0] is None:
            return None
        if quote_mint == WSOL_MINT:
            return m[0] / self.sol_usd if self.sol_usd else None
        return m[0]  # a stablecoin quote: one unit is one dollar


async def marks(conn: asyncpg.Connection, mints: list[str]) -> Marks:
    rows = await conn.fetch("SELECT mint, usd, priced_at, stale, source FROM token_prices WHERE mint = ANY($1::text[])",
                            [*mints, WSOL_MINT])
    usd = {r["mint"]: (float(r["usd"]) if r["usd"] is not None else None, _epoch(r["priced_at"]), r["stale"], r["source"])
           for r in rows}
    sol = usd.get(WSOL_MINT)
    return Marks(usd, sol[0] if sol is not None else None)


async def _journals(conn: asyncpg.Connection, ids: list[int]) -> dict[int, tuple[JournalEvent, ...]]:
    rows = await conn.fetch(
        "SELECT position_id, seq, kind, data FROM position_events WHERE position_id = ANY($1::bigint[]) ORDER BY position_id, seq",
        ids)
    out: dict[int, list[JournalEvent]] = {}
    for r in rows:
        out.setdefault(r["position_id"], []).append(JournalEvent(r["seq"], r["kind"], r["data"]))
    return {k: tuple(v) for k, v in out.items()}


@dataclass(frozen=True)
class Levels:
    """What the panel shows from a position's fold: its stop (and why), the take-profit ladder, the entry price."""

    stop: float | None
    stop_reason: str | None
    take_profits: tuple[tuple[float, float, bool], ...]  # (price, fraction of the entry, done)


def levels(pid: int, journal: tuple[JournalEvent, ...], token_decimals: int, quote_mint: str) -> Levels:
    try:
        s = fold(pid, journal) if journal else None
    except Exception:  # noqa: BLE001 - a journal this panel cannot fold is shown from the projection only
        s = None
    if s is None:
        return Levels(None, None, ())
    qdec = QUOTE_DECIMALS.get(quote_mint, 9)
    tps: tuple[tuple[float, float, bool], ...] = ()
    if s.entry_price is not None:
        scale = s.entry_price * 10**token_decimals / 10**qdec
        tps = tuple((float(scale * (1 + Fraction(g) / 100)), float(f), i < s.tp_done)
                    for i, (g, f) in enumerate(s.plan.take_profit))
    return Levels(raw_price_to_whole(s.stop, token_decimals, quote_mint), s.stop_reason, tps)


class LevelsCache:
    """Folds by (position id, last journal seq). A journal only grows (events are never rewritten), so the pair
    names one journal exactly: a position whose journal has not moved since the last read is not fetched nor
    folded again. Holds the positions of the last read only."""

    def __init__(self) -> None:
        self._by_id: dict[int, tuple[int | None, Levels]] = {}

    def get(self, pid: int, last_seq: int | None) -> Levels | None:
        hit = self._by_id.get(pid)
        return hit[1] if hit is not None and hit[0] == last_seq else None

    def keep(self, entries: dict[int, tuple[int | None, Levels]]) -> None:
        self._by_id = entries  # replaced whole: readers on other tasks never see it half-built


LEVELS = LevelsCache()


def position_view(row: asyncpg.Record | dict[str, Any], journal: tuple[JournalEvent, ...] | None, mk: Marks, now: float,
                  labels: dict[str, str | None], lv: Levels | None = None) -> dict[str, Any]:
    """One position for display: the actor's fold of its journal (or its `Levels`, already folded), valued at the
    latest mark."""
    pid = int(row["id"])
    dec, qm = int(row["token_decimals"]), row["quote_mint"]
    if lv is None:
        lv = levels(pid, journal or (), dec, qm)
    qdec = QUOTE_DECIMALS.get(qm, 9)
    entry_quote = int(row["entry_quote_amount"])
    entry_tokens = int(row["entry_token_amount"])
    open_tokens = int(row["token_amount_open"])
    entry_price = entry_quote / entry_tokens * 10 ** (dec - qdec) if entry_tokens > 0 else None
    price = mk.quote_per_token(row["token_mint"], qm)
    m = mk.usd.get(row["token_mint"])
    priced_at = m[1] if m is not None else None
    unrealized = None
    if price is not None and open_tokens > 0 and entry_tokens > 0:
        unrealized = open_tokens / 10**dec * price - entry_quote * open_tokens / (entry_tokens * 10**qdec)
    exit_quote = int(row["exit_quote_amount"] or 0)
    sold_tokens = entry_tokens - open_tokens
    realized = None
    if row["realized_pnl_quote"] is not None:
        realized = whole(row["realized_pnl_quote"], qdec)
    elif sold_tokens > 0 and entry_tokens > 0:  # partial exits so far: what they brought in against their cost
        realized = float(Fraction(exit_quote, 10**qdec) - Fraction(entry_quote * sold_tokens, entry_tokens) / 10**qdec)
    opened = _epoch(row["opened_at"])
    closed = _epoch(row["closed_at"])
    return {
        "id": pid,
        "wallet": row["wallet"],
        "wallet_label": labels.get(row["wallet"]) or short(row["wallet"]),
        "token": row["token_mint"],
        "token_short": short(row["token_mint"]),
        "mode": row["mode"],
        "status": row["status"],
        "quote": quote_symbol(qm),
        "entry_price": entry_price,
        "entry_quote": whole(entry_quote, qdec),
        "open_tokens": whole(open_tokens, dec),
        "price": price,
        "price_age_s": (now - priced_at) if priced_at is not None else None,
        "price_stale": bool(m[2]) if m is not None else False,
        "unrealized": unrealized,
        "realized": realized,
        "stop": lv.stop,
        "stop_reason": lv.stop_reason,
        "take_profits": list(lv.take_profits),
        "opened_at": opened,
        "closed_at": closed,
        "held_s": ((closed or now) - opened) if opened is not None else None,
        "exit_reason": row["exit_reason"],
    }


async def _labels(conn: asyncpg.Connection) -> dict[str, str | None]:
    return {r["address"]: r["label"] for r in await conn.fetch("SELECT address, label FROM wallets")}


_OPEN_POSITIONS = """
SELECT p.id, p.wallet, w.label, p.token_mint, p.token_decimals, p.quote_mint, p.mode, p.status, p.entry_quote_amount,
       p.entry_token_amount, p.token_amount_open, p.exit_quote_amount, p.realized_pnl_quote, p.exit_reason,
       p.opened_at, p.closed_at,
       (SELECT max(e.seq) FROM position_events e WHERE e.position_id = p.id) AS last_seq,
       tp.usd, tp.priced_at, tp.stale, tp.source
  FROM positions p
  LEFT JOIN wallets w ON w.address = p.wallet
  LEFT JOIN token_prices tp ON tp.mint = p.token_mint
 WHERE p.closed_at IS NULL AND p.mode <> 'shadow' AND p.status = ANY($1::text[])
 ORDER BY p.opened_at DESC, p.id DESC"""

# Everything else the dashboard shows, in one round trip (a busy bot shares the store's loop: each round trip
# waits its turn): the SOL mark, realized PnL per wallet and quote, the equity curve (cumulative realized PnL per
# quote, in close order: both read the closed positions through schema/005's covering index), and the newest
# signals. Raw amounts travel as text, exact.
_SUMMARY = """
SELECT (SELECT usd FROM token_prices WHERE mint = $2) AS sol_usd,
  (SELECT coalesce(json_agg(r), '[]') FROM (
      SELECT p.wallet, w.label, p.quote_mint, sum(p.realized_pnl_quote)::text AS pnl, count(*) AS n,
             count(*) FILTER (WHERE p.realized_pnl_quote > 0) AS wins
        FROM positions p LEFT JOIN wallets w ON w.address = p.wallet
       WHERE p.mode <> 'shadow' AND p.realized_pnl_quote IS NOT NULL AND p.closed_at IS NOT NULL
       GROUP BY p.wallet, w.label, p.quote_mint) r)::text AS realized,
  (SELECT coalesce(json_agg(json_build_array(c.at, c.quote_mint, c.running::text) ORDER BY c.closed_at, c.id), '[]')
     FROM (SELECT closed_at, id, extract(epoch FROM closed_at)::float8 * 1000 AS at, quote_mint,
                  sum(realized_pnl_quote) OVER (PARTITION BY quote_mint ORDER BY closed_at, id) AS running
             FROM positions WHERE mode <> 'shadow' AND realized_pnl_quote IS NOT NULL AND closed_at IS NOT NULL) c
  )::text AS curve,
  (SELECT coalesce(json_agg(s ORDER BY s.id DESC), '[]') FROM (
      SELECT s.id, to_char(s.created_at AT TIME ZONE 'UTC', 'HH24:MI:SS') AS at, s.wallet, w.label, s.side,
             s.token_mint, s.decision, s.reason, s.quote_mint, s.quote_amount::text AS quote_amount
        FROM signals s LEFT JOIN wallets w ON w.address = s.wallet ORDER BY s.id DESC LIMIT $1) s)::text AS signals"""


async def dashboard(conn: asyncpg.Connection, now: float | None = None) -> dict[str, Any]:
    """Open positions, PnL totals and per wallet, the equity curve, recent signals, in two round trips.

    A journal is fetched and folded only when it moved since the last read (`LEVELS`); totals and the curve are
    summed by the database."""
    now = time.time() if now is None else now
    rows = await conn.fetch(_OPEN_POSITIONS, list(OPEN_STATES))
    summary = await conn.fetchrow(_SUMMARY, 15, WSOL_MINT)
    cached = {int(r["id"]): LEVELS.get(int(r["id"]), r["last_seq"]) for r in rows}
    missing = [pid for pid, lv in cached.items() if lv is None]
    journals = await _journals(conn, missing) if missing else {}
    fresh: dict[int, tuple[int | None, Levels]] = {}
    for r in rows:
        pid = int(r["id"])
        lv = cached[pid] or levels(pid, journals.get(pid, ()), int(r["token_decimals"]), r["quote_mint"])
        cached[pid] = lv
        fresh[pid] = (r["last_seq"], lv)
    LEVELS.keep(fresh)
    sol = float(summary["sol_usd"]) if summary["sol_usd"] is not None else None
    mk = Marks({r["token_mint"]: (float(r["usd"]) if r["usd"] is not None else None, _epoch(r["priced_at"]), r["stale"],
                                  r["source"]) for r in rows if r["priced_at"] is not None}, sol)
    labels = {r["wallet"]: r["label"] for r in rows}
    positions = [position_view(r, None, mk, now, labels, cached[int(r["id"])]) for r in rows]

    per_wallet: dict[str, dict[str, Any]] = {}
    totals: dict[str, dict[str, float]] = {}
    for r in json.loads(summary["realized"]):
        q = quote_symbol(r["quote_mint"])
        v = whole(r["pnl"], QUOTE_DECIMALS.get(r["quote_mint"], 9))
        w = per_wallet.setdefault(r["wallet"], {"wallet": r["wallet"], "label": r["label"] or short(r["wallet"]),
                                                "realized": {}, "unrealized": {}, "closed": 0, "wins": 0, "open": 0})
        w["realized"][q] = w["realized"].get(q, 0.0) + v
        w["closed"] += int(r["n"])
        w["wins"] += int(r["wins"])
        totals.setdefault(q, {"realized": 0.0, "unrealized": 0.0})["realized"] += v
    for p in positions:
        w = per_wallet.setdefault(p["wallet"], {"wallet": p["wallet"], "label": p["wallet_label"], "realized": {},
                                                "unrealized": {}, "closed": 0, "wins": 0, "open": 0})
        w["open"] += 1
        t = totals.setdefault(p["quote"], {"realized": 0.0, "unrealized": 0.0})
        if p["unrealized"] is not None:
            w["unrealized"][p["quote"]] = w["unrealized"].get(p["quote"], 0.0) + p["unrealized"]
            t["unrealized"] += p["unrealized"]
    curve: dict[str, list[tuple[float, float]]] = {}
    for at, quote_mint, running in json.loads(summary["curve"]):
        curve.setdefault(quote_symbol(quote_mint), []).append(
            (float(at), round(whole(running, QUOTE_DECIMALS.get(quote_mint, 9)), 9)))
    signals = [signal_row(r, r["label"], r["at"]) for r in json.loads(summary["signals"])]
    return {"positions": positions, "totals": totals, "per_wallet": sorted(per_wallet.values(), key=lambda w: w["label"]),
            "curve": curve, "signals": signals}


def signal_row(r: Any, label: str | None, at: str) -> dict[str, Any]:
    return {"id": r["id"], "at": at, "wallet": label or short(r["wallet"]), "side": r["side"],
            "token": short(r["token_mint"]), "decision": r["decision"], "reason": r["reason"],
            "size": f"{whole(r['quote_amount'], QUOTE_DECIMALS.get(r['quote_mint'], 9)):.4g} {quote_symbol(r['quote_mint'])}"}


async def recent_signals(conn: asyncpg.Connection, limit: int, labels: dict[str, str | None] | None = None) -> list[dict[str, Any]]:
    labels = labels if labels is not None else await _labels(conn)
    rows = await conn.fetch(
        """SELECT id, created_at, wallet, side, token_mint, decision, reason, quote_mint, quote_amount
             FROM signals ORDER BY id DESC LIMIT $1""", limit)
    return [signal_row(r, labels.get(r["wallet"]), r["created_at"].astimezone(timezone.utc).strftime("%H:%M:%S"))
            for r in rows]


async def signals_page(conn: asyncpg.Connection, search: str, decision: str | None, offset: int, limit: int) -> dict[str, Any]:
    """A page of the signal log, newest first. `search` matches wallet, label, token, reason or signature."""
    labels = await _labels(conn)
    pattern = f"%{search.strip()}%" if search.strip() else None
    where = """($1::text IS NULL OR s.wallet ILIKE $1 OR s.token_mint ILIKE $1 OR s.reason ILIKE $1
                OR s.signature ILIKE $1 OR w.label ILIKE $1)
               AND ($2::text IS NULL OR s.decision = $2)"""
    total = await conn.fetchval(f"SELECT count(*) FROM signals s LEFT JOIN wallets w ON w.address = s.wallet WHERE {where}",
                                pattern, decision)
    rows = await conn.fetch(
        f"""SELECT s.id, s.created_at, s.signature, s.wallet, s.side, s.token_mint, s.decision, s.reason,
                   s.quote_mint, s.quote_amount, s.token_amount, s.token_decimals, s.safety
              FROM signals s LEFT JOIN wallets w ON w.address = s.wallet WHERE {where}
             ORDER BY s.id DESC OFFSET $3 LIMIT $4""", pattern, decision, offset, limit)
    out = []
    for r in rows:
        safety = r["safety"] if isinstance(r["safety"], dict) else None
        out.append({
            "id": r["id"],
            "at": r["created_at"].astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
            "signature": r["signature"], "sig_short": short(r["signature"], 6),
            "wallet": r["wallet"], "wallet_label": labels.get(r["wallet"]) or short(r["wallet"]),
            "side": r["side"], "token": r["token_mint"], "token_short": short(r["token_mint"]),
            "decision": r["decision"], "reason": r["reason"],
            "size": f"{whole(r['quote_amount'], QUOTE_DECIMALS.get(r['quote_mint'], 9)):.4g} {quote_symbol(r['quote_mint'])}",
            "score": safety.get("score") if safety else None,
            "safety": safety,
        })
    return {"total": int(total), "rows": out}


def safety_checks(safety: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The checks of a stored verdict (`walltrack.safety.SafetyReport.as_json`) as rows: name, result, reason."""
    if not safety:
        return []
    out = []
    for c in safety.get("checks") or []:
        if not isinstance(c, dict):
            continue
        passed = c.get("passed")
        result = "pass" if passed is True else ("fail" if passed is False else "unverified")
        out.append({"check": str(c.get("name", "?")), "result": result + (" (hard)" if c.get("hard") else ""),
                    "value": "" if c.get("score") is None else f"score {c['score']}", "reason": str(c.get("reason") or "")})
    return out


async def watchlist(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    """Wallets with their status, copy-rule overrides and performance."""
    has_settings = await has_column(conn, "wallets", "settings")
    rows = await conn.fetch(
        f"""SELECT w.address, w.label, w.status, w.added_at, {'w.settings' if has_settings else 'NULL::jsonb AS settings'},
                   (SELECT count(*) FROM signals s WHERE s.wallet = w.address) AS signals,
                   (SELECT count(*) FROM signals s WHERE s.wallet = w.address AND s.decision = 'taken') AS taken,
                   (SELECT count(*) FROM positions p WHERE p.wallet = w.address AND p.mode <> 'shadow'
                        AND p.closed_at IS NULL) AS open,
                   (SELECT count(*) FROM positions p WHERE p.wallet = w.address AND p.mode <> 'shadow'
                        AND p.realized_pnl_quote IS NOT NULL) AS closed,
                   (SELECT count(*) FROM positions p WHERE p.wallet = w.address AND p.mode <> 'shadow'
                        AND p.realized_pnl_quote > 0) AS wins,
                   (SELECT coalesce(sum(realized_pnl_quote), 0) FROM positions p WHERE p.wallet = w.address
                        AND p.mode <> 'shadow' AND p.quote_mint = $1) AS pnl_sol,
                   (SELECT coalesce(sum(realized_pnl_quote), 0) FROM positions p WHERE p.wallet = w.address
                        AND p.mode = 'shadow' AND p.quote_mint = $1) AS shadow_pnl_sol
              FROM wallets w ORDER BY w.added_at, w.address""", WSOL_MINT)
    out = []
    for r in rows:
        closed = int(r["closed"])
        out.append({
            "address": r["address"], "label": r["label"] or "", "status": r["status"],
            "added": r["added_at"].astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M"),
            "overrides": r["settings"] if isinstance(r["settings"], dict) else {},
            "signals": int(r["signals"]), "taken": int(r["taken"]), "open": int(r["open"]), "closed": closed,
            "win_rate": f"{100 * int(r['wins']) / closed:.0f}%" if closed else "—",
            "pnl_sol": round(whole(r["pnl_sol"], 9), 6), "shadow_pnl_sol": round(whole(r["shadow_pnl_sol"], 9), 6),
        })
    return out


async def position_detail(conn: asyncpg.Connection, position_id: int, now: float | None = None) -> dict[str, Any] | None:
    now = time.time() if now is None else now
    row = await conn.fetchrow("SELECT * FROM positions WHERE id = $1", position_id)
    if row is None:
        return None
    journal = (await _journals(conn, [position_id])).get(position_id, ())
    mk = await marks(conn, [row["token_mint"]])
    view = position_view(row, journal, mk, now, await _labels(conn))
    dec, qm = int(row["token_decimals"]), row["quote_mint"]
    qdec = QUOTE_DECIMALS.get(qm, 9)
    events = await conn.fetch("SELECT seq, kind, data, created_at FROM position_events WHERE position_id = $1 ORDER BY seq",
                              position_id)
    view["journal"] = [{"seq": e["seq"], "kind": e["kind"], "at": e["created_at"].astimezone(timezone.utc).strftime("%H:%M:%S"),
                        "reason": (e["data"] or {}).get("reason") or "", "data": e["data"]} for e in events]
    # The price path: every trade seen on this token (the leaders' effective prices) and our own fills.
    trades = await conn.fetch(
        """SELECT created_at, quote_amount, token_amount FROM signals
            WHERE token_mint = $1 AND quote_mint = $2 AND token_amount > 0 ORDER BY created_at DESC LIMIT 500""",
        row["token_mint"], qm)
    series = [(t["created_at"].timestamp() * 1000, float(Fraction(int(t["quote_amount"]), int(t["token_amount"])) * 10**dec / 10**qdec))
              for t in reversed(trades)]
    exits: list[tuple[float, float, str]] = []
    entry_at = None
    for e in events:
        f = (e["data"] or {}).get("fill")
        if not isinstance(f, dict) or not int(f.get("token_amount") or 0):
            continue
        px = float(Fraction(int(f["quote_amount"]), int(f["token_amount"])) * 10**dec / 10**qdec)
        at = e["created_at"].timestamp() * 1000
        if e["kind"] == "entry_filled":
            entry_at = (at, px)
        else:
            exits.append((at, px, (e["data"] or {}).get("reason") or e["kind"]))
        series.append((at, px))
    for e in events:  # journals from before the engine: a close at the leader's price
        d = e["data"] or {}
        if e["kind"] == "closed" and int(d.get("exit_token_amount") or 0):
            px = float(Fraction(int(d["exit_quote_amount"]), int(d["exit_token_amount"])) * 10**dec / 10**qdec)
            exits.append((e["created_at"].timestamp() * 1000, px, d.get("reason") or "closed"))
    if view["price"] is not None and mk.usd.get(row["token_mint"]):
        series.append(((mk.usd[row["token_mint"]][1] or now) * 1000, view["price"]))
    series.sort()
    view["series"] = series
    view["exits"] = exits
    view["entry_point"] = entry_at or ((view["opened_at"] or now) * 1000, view["entry_price"]) if view["entry_price"] else None
    return view


async def breakers(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    """Breakers as stored by the risk actor (schema/004; empty when none has tripped yet)."""
    rows = await conn.fetch("SELECT * FROM breakers ORDER BY name")
    out = []
    for r in rows:
        d = dict(r)
        out.append({"name": d.get("name"), "state": d.get("state"), "reason": d.get("reason") or "",
                    "tripped_at": _fmt_epoch(d.get("tripped_at")), "until": _fmt_epoch(d.get("until")),
                    "reset_at": _fmt_epoch(d.get("reset_at"))})
    return out


def _fmt_epoch(v: Any) -> str:
    t = _epoch(v)
    if t is None:
        return ""
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


async def health(conn: asyncpg.Connection) -> dict[str, Any]:
    row = await conn.fetchrow(
        """SELECT (SELECT received_at FROM webhook_inbox ORDER BY id DESC LIMIT 1) AS last_webhook,
                  (SELECT count(*) FROM webhook_inbox) AS deliveries,
                  (SELECT count(*) FROM webhook_inbox WHERE processed_at IS NULL) AS inbox_pending,
                  (SELECT created_at FROM signals ORDER BY id DESC LIMIT 1) AS last_signal""")
    return {"last_webhook": _epoch(row["last_webhook"]), "deliveries": int(row["deliveries"]),
            "inbox_pending": int(row["inbox_pending"]), "last_signal": _epoch(row["last_signal"])}


async def live_alerts(conn: asyncpg.Connection) -> dict[str, Any]:
    """What the operator must look at in live mode: positions whose exit could not land (exit_failed: retried at a
    later tick with a wider slippage, never forgotten) and the last start-up reconcile's findings (schema/006)."""
    stuck = await conn.fetch(
        """SELECT p.id, p.token_mint, p.mode, p.token_amount_open, p.token_decimals,
                  (SELECT e.data FROM position_events e WHERE e.position_id = p.id AND e.kind = 'exit_failed'
                    ORDER BY e.seq DESC LIMIT 1) AS failed
             FROM positions p WHERE p.status = 'exit_failed' AND p.closed_at IS NULL AND p.mode <> 'shadow'
            ORDER BY p.id""")
    exits = [{"id": r["id"], "token": short(r["token_mint"]), "mode": r["mode"],
              "open": whole(r["token_amount_open"], int(r["token_decimals"])),
              "error": (r["failed"] or {}).get("error", ""), "attempt": (r["failed"] or {}).get("attempt"),
              "retry_at": _fmt_epoch((r["failed"] or {}).get("retry_at"))} for r in stuck]
    run = await conn.fetch(
        """SELECT run_at, wallet, kind, mint, position_ids, book_amount, chain_amount, detail FROM live_reconcile
            WHERE run_at = (SELECT max(run_at) FROM live_reconcile) AND kind <> 'clean' ORDER BY id""")
    findings = [{"kind": r["kind"], "token": short(r["mint"]), "positions": list(r["position_ids"]),
                 "detail": r["detail"], "at": _fmt_epoch(r["run_at"])} for r in run]
    return {"exit_failed": exits, "reconcile": findings}


async def trading_mode(conn: asyncpg.Connection) -> dict[str, Any] | None:
    """The operator's stored global trading mode (schema/005), or None while TRADING_MODE is in force."""
    row = await conn.fetchrow(
        "SELECT value AS mode, updated_at, updated_by FROM runtime_settings WHERE key = 'trading_mode'")
    return None if row is None else {"mode": row["mode"], "at": _fmt_epoch(row["updated_at"]), "by": row["updated_by"]}
