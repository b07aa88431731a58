"""The sandbox's Helius: enhanced-transaction payloads for the market's leader trades, and a webhook poster.

`enhanced_tx(trade, shape)` renders one `LeaderTrade` as the enhanced transaction Helius would deliver
(shared/API-FORMATS.md §1.3), in one of the awkward shapes real payloads come in (§1.5-§1.7): `SWAP` with an
`events.swap`, or `TRANSFER`/`UNKNOWN` with `events: {}` / `[]`; native SOL through a temporary WSOL account,
a kept WSOL account, lamports straight into a pump.fun curve, or USDC; a relayer paying the fee; rent for a
new token account; an inverted or keeper-attributed `events.swap`. `accountData` is exact and internally
consistent (every lamport and token unit the leader gains, a pool account, the relayer or the fee loses), so
`actors.trades.classify(tx, trade.leader)` recovers the trade; the other fields are what Helius adds on top
(lossy UI floats in `tokenTransfers`, a description, a swap event that is a hint at best).
`choose_shape(rng, trade)` picks a shape deterministically from a seeded RNG; `shapes_for(trade)` lists all.

`HeliusPoster` delivers them like Helius does: a POST of a JSON array (usually one transaction, sometimes
2-3) with the `Authorization` header set to the configured secret exactly; on a non-2xx answer or a timeout
up to 3 retries at a fixed interval (Helius: 1 minute; the sandbox scales it), then the delivery is dropped;
at-least-once, so some deliveries are sent twice (`duplicate_rate`, deterministic by seed).
"""

from __future__ import annotations

import json
import math
import random
import threading
from dataclasses import dataclass, fields, replace
from decimal import Decimal
from itertools import product
from typing import Any, Literal

import httpx
import structlog
import trio

from sandbox.faults import Faults
from sandbox.market import USDC_MINT, WSOL_MINT, LeaderTrade, pubkey

log = structlog.get_logger("sandbox.helius")

RENT_TOKEN_ACCOUNT = 2_039_280  # lamports: rent-exempt minimum of a 165-byte SPL token account
BASE_FEE = 5_000  # lamports per signature
HELIUS_RETRY_INTERVAL_S = 60.0
HELIUS_MAX_RETRIES = 3

SYSTEM_PROGRAM = "11111111111111111111111111111111"
TOKEN_PROGRAM = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA"
ATA_PROGRAM = "ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL"
COMPUTE_BUDGET = "ComputeBudget111111111111111111111111111111"
JUPITER_PROGRAM = "JUP6LkbZbjS1jKKwapdHNy74zcZ3tLUZoi5QNyVTaV4"
PUMP_FUN_PROGRAM = "6EF8rrecthR5Dkzon8Nwu78hRvfCKubJ14M5uBEwF6P"
RAYDIUM_V4_AUTHORITY = "5Q544fKrFoe6tsEbD7S8EmxGTJYAKtTVhAW5Q5pge4j1"  # owns every Raydium v4 vault
RELAYERS = tuple(pubkey(f"helius-sandbox:relayer:{i}") for i in range(3))  # keepers that pay fees for others

# dex -> (program id, programName in events.swap.innerSwaps[].programInfo, its source)
PROGRAMS: dict[str, tuple[str, str, str]] = {
    "raydium": ("675kPX9MHTjS2zt1qfr1NYHuzeLXfQM9H24wFSUt1Mp8", "RAYDIUM_LIQUIDITY_POOL_V4", "RAYDIUM"),
    "pumpswap": ("pAMMBay6oceH9fJKBRHGP5D4bD4sWpmSwMn52FMfXEA", "PUMP_AMM", "PUMP_AMM"),
    "meteora": ("LBUZKhRxPF3XUpBCjp4YzTKgLccjZhTSDM9YQVaPiN2", "METEORA_DLMM", "METEORA"),
}

Funding = Literal["native", "native_direct", "wsol", "usdc"]
Events = Literal["swap", "swap_inverted", "swap_keeper", "empty_object", "empty_list"]

# How each dex's trades are presented: (type, source, event styles seen for it). "BUY" stands for BUY/SELL.
PRESENTATIONS: dict[str, list[tuple[str, str, tuple[str, ...]]]] = {
    "raydium": [("SWAP", "RAYDIUM", ("swap",)), ("SWAP", "JUPITER", ("swap",)), ("UNKNOWN", "UNKNOWN", ("empty_object",))],
    "pumpswap": [
        ("SWAP", "PUMP_AMM", ("swap", "empty_object")),
        ("BUY", "PUMP_AMM", ("empty_object",)),  # the docs' type table lists BUY/SELL for PUMP_AMM
        ("SWAP", "PUMP_FUN", ("empty_object",)),  # bonding curve: lamports straight to the curve
        ("TRANSFER", "PUMP_FUN", ("empty_object",)),
        ("SWAP", "JUPITER", ("swap",)),
    ],
    "meteora": [
        ("SWAP", "METEORA", ("swap",)),
        ("TRANSFER", "UNKNOWN", ("empty_list", "empty_object")),  # DBC trades: no swap event
        ("UNKNOWN", "UNKNOWN", ("empty_list",)),
        ("SWAP", "JUPITER", ("swap",)),
    ],
}


@dataclass(frozen=True, slots=True)
class Shape:
    """How one trade is presented by Helius. `check(trade)` says whether it fits the trade."""

    type: str = "SWAP"  # SWAP | TRANSFER | UNKNOWN | BUY (rendered BUY or SELL by side)
    source: str = "RAYDIUM"
    events: Events = "swap"
    funding: Funding = "native"  # how the leader's quote moves (usdc iff the token is USDC-quoted)
    relayer: str | None = None  # a keeper that pays the fee (and is the feePayer); None: the leader pays
    new_account: bool = False  # a first buy creates the leader's token account (rent 2039280)
    close_account: bool = False  # a full sell closes it (rent back)
    rent_by_relayer: bool = False  # the relayer pays that rent (or gets it back): see KNOWN_GAPS
    priority_fee: int = 0  # lamports on top of the 5000 base fee

    def check(self, trade: LeaderTrade) -> None:
        """Raise ValueError when this shape cannot present `trade`."""
        usdc = trade.quote_mint == USDC_MINT
        if usdc != (self.funding == "usdc"):
            raise ValueError(f"funding {self.funding} does not fit quote {trade.quote_mint}")
        if (self.source == "PUMP_FUN") != (self.funding == "native_direct"):
            raise ValueError("a pump.fun curve trade, and only that, moves lamports straight to the curve")
        if self.events == "swap_keeper" and self.relayer is None:
            raise ValueError("a keeper-attributed swap event needs a relayer")
        if self.events.startswith("swap") and self.type != "SWAP":
            raise ValueError("only SWAP transactions carry a swap event here")
        if self.new_account and (trade.side != "buy" or trade.holding_before != 0):
            raise ValueError("only a first buy creates the token account")
        if self.close_account and (trade.side != "sell" or trade.token_amount != trade.holding_before):
            raise ValueError("only a full sell closes the token account")
        if self.rent_by_relayer and (self.relayer is None or not (self.new_account or self.close_account)):
            raise ValueError("rent_by_relayer needs a relayer and an account created or closed")
        if self.priority_fee < 0:
            raise ValueError("negative priority fee")


# Shapes real Helius could send that `actors.trades.classify` gets wrong (reported, not fixed here): a relayer
# that pays the rent of the leader's new token account (or takes the rent back on close) makes the leader's
# SOL delta off by 2039280 lamports, because the token account's lamports are counted as the leader's.
KNOWN_GAPS = ("rent_by_relayer",)


def _funding_options(trade: LeaderTrade, source: str) -> list[Funding]:
    if trade.quote_mint == USDC_MINT:
        return [] if source == "PUMP_FUN" else ["usdc"]
    return ["native_direct"] if source == "PUMP_FUN" else ["native", "wsol"]


def shapes_for(trade: LeaderTrade, *, known_gaps: bool = False) -> list[Shape]:
    """Every shape that can present `trade` (one relayer, no priority fee): for table tests."""
    out: list[Shape] = []
    first_buy = trade.side == "buy" and trade.holding_before == 0
    full_sell = trade.side == "sell" and trade.token_amount == trade.holding_before
    for type_, source, styles in PRESENTATIONS.get(trade.dex, PRESENTATIONS["raydium"]):
        for funding in _funding_options(trade, source):
            for style, relayer, rent in product(styles, (None, RELAYERS[0]), (False, True)):
                events = ["swap", "swap_inverted", "swap_keeper"] if style == "swap" else [style]
                for ev in events:
                    shape = Shape(type_, source, ev, funding, relayer,  # type: ignore[arg-type]
                                  new_account=rent and first_buy, close_account=rent and full_sell)
                    if rent and not (first_buy or full_sell):
                        continue
                    variants = [shape]
                    if known_gaps and relayer and (shape.new_account or shape.close_account):
                        variants.append(replace(shape, rent_by_relayer=True))
                    for v in variants:
                        try:
                            v.check(trade)
                        except ValueError:
                            continue
                        out.append(v)
    return out


def choose_shape(rng: random.Random, trade: LeaderTrade) -> Shape:
    """A shape for `trade`, drawn from `rng` (same RNG state, same shape). Never a KNOWN_GAPS shape."""
    options = [p for p in PRESENTATIONS.get(trade.dex, PRESENTATIONS["raydium"]) if _funding_options(trade, p[1])]
    type_, source, styles = rng.choice(options)
    funding = _funding_options(trade, source)[0]
    if funding == "native" and rng.random() >= 0.7:
        funding = "wsol"  # the leader keeps a WSOL account and trades from it
    relayer = rng.choice(RELAYERS) if rng.random() < 0.15 else None
    style = rng.choice(styles)
    events: str = style
    if style == "swap":
        roll = rng.random()
        if roll < 0.08:
            events = "swap_inverted"
        elif roll < 0.16 and relayer is not None:
            events = "swap_keeper"
        elif roll < 0.16:
            events = "swap_inverted"
    new_account = trade.side == "buy" and trade.holding_before == 0 and rng.random() < 0.6
    close_account = trade.side == "sell" and trade.token_amount == trade.holding_before and rng.random() < 0.5
    priority = rng.choice([0, 0, 10_000, 50_000, 100_000, 250_000, 1_000_000])
    shape = Shape(type_, source, events, funding, relayer, new_account, close_account, False, priority)  # type: ignore[arg-type]
    shape.check(trade)
    return shape


def shape_rng(seed: int | str, trade: LeaderTrade) -> random.Random:
    """The RNG a poster seeded with `seed` uses for `trade`'s shape (independent of delivery order)."""
    return random.Random(f"{seed}:shape:{trade.signature}")


# -- rendering -------------------------------------------------------------------------------------------------


def _ui(raw: int, decimals: int) -> float:
    """A raw amount as Helius' UI float (lossy for large amounts, like the real ones)."""
    return raw / 10**decimals


def _ui_text(raw: int, decimals: int) -> str:
    text = format(Decimal(raw).scaleb(-decimals), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


class _Tx:
    """Accumulates accountData rows (in first-seen order) and transfers."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Any]] = {}
        self.native_transfers: list[dict[str, Any]] = []
        self.token_transfers: list[dict[str, Any]] = []

    def row(self, account: str) -> dict[str, Any]:
        return self.rows.setdefault(account, {"account": account, "nativeBalanceChange": 0, "tokenBalanceChanges": []})

    def native(self, account: str, delta: int) -> None:
        self.row(account)["nativeBalanceChange"] += delta

    def token(self, account: str, owner: str, mint: str, delta: int, decimals: int) -> None:
        self.row(account)["tokenBalanceChanges"].append({
            "userAccount": owner, "tokenAccount": account, "mint": mint,
            "rawTokenAmount": {"tokenAmount": str(delta), "decimals": decimals},
        })

    def send_native(self, src: str, dst: str, amount: int) -> None:
        self.native_transfers.append({"fromUserAccount": src, "toUserAccount": dst, "amount": amount})

    def send_token(self, src_owner: str, src: str, dst_owner: str, dst: str, mint: str, raw: int, decimals: int) -> dict[str, Any]:
        t = {"fromTokenAccount": src, "fromUserAccount": src_owner, "mint": mint, "toTokenAccount": dst,
             "toUserAccount": dst_owner, "tokenAmount": _ui(raw, decimals), "tokenStandard": "Fungible"}
        self.token_transfers.append(t)
        return t


def vault_owner(trade: LeaderTrade) -> str:
    """Who owns the pool's vaults: Raydium v4's shared authority PDA, else the pool (or curve) account itself."""
    return RAYDIUM_V4_AUTHORITY if trade.dex == "raydium" else trade.pool


def enhanced_tx(trade: LeaderTrade, shape: Shape, *, symbol: str | None = None) -> dict[str, Any]:
    """The enhanced transaction Helius would deliver for `trade`, presented as `shape`."""
    shape.check(trade)
    leader, buy = trade.leader, trade.side == "buy"
    s = 1 if buy else -1  # sign of the leader's token delta
    n, x, dec = trade.token_amount, trade.quote_amount, trade.decimals
    fee_payer = shape.relayer or leader
    fee = BASE_FEE + shape.priority_fee
    curve = shape.funding == "native_direct"
    owner = trade.pool if curve else vault_owner(trade)
    program, program_name, dex_source = (PUMP_FUN_PROGRAM, "PUMP_FUN", "PUMP_FUN") if curve else PROGRAMS.get(trade.dex, PROGRAMS["raydium"])
    quote_dec = 6 if shape.funding == "usdc" else 9

    tx = _Tx()
    tx.native(fee_payer, -fee)
    tx.row(leader)
    rent_payer = shape.relayer if shape.rent_by_relayer and shape.relayer else leader
    if shape.new_account:
        tx.native(rent_payer, -RENT_TOKEN_ACCOUNT)
        tx.native(trade.token_account, RENT_TOKEN_ACCOUNT)
        tx.send_native(rent_payer, trade.token_account, RENT_TOKEN_ACCOUNT)

    # The quote leg: (leader-side account, leader-side owner) <-> the pool.
    into_pool: list[dict[str, Any]] = []  # token transfers into the pool's accounts (innerSwaps inputs)
    out_of_pool: list[dict[str, Any]] = []
    quote_acct: str | None = None
    if shape.funding == "native":
        quote_acct = pubkey(f"wsol-temp:{trade.signature}")  # created, synced, swapped and closed in this tx
        tx.native(leader, -s * x)
        tx.row(quote_acct)
        if buy:
            tx.send_native(leader, quote_acct, RENT_TOKEN_ACCOUNT)
            tx.send_native(leader, quote_acct, x)
        else:
            tx.send_native(leader, quote_acct, RENT_TOKEN_ACCOUNT)
    elif shape.funding == "wsol":
        quote_acct = pubkey(f"ata:{leader}:{WSOL_MINT}")
        tx.native(quote_acct, -s * x)
        tx.token(quote_acct, leader, WSOL_MINT, -s * x, 9)
    elif shape.funding == "usdc":
        quote_acct = pubkey(f"ata:{leader}:{USDC_MINT}")
        tx.token(quote_acct, leader, USDC_MINT, -s * x, 6)
    else:  # native_direct: lamports between the leader and the bonding curve account
        tx.native(leader, -s * x)
        tx.native(trade.pool, s * x)
        if buy:
            tx.send_native(leader, trade.pool, x)

    # The token leg, then the pool's side of the quote leg.
    tx.token(trade.token_account, leader, trade.mint, s * n, dec)
    tx.token(trade.base_vault, owner, trade.mint, -s * n, dec)
    quote_mint = USDC_MINT if shape.funding == "usdc" else WSOL_MINT
    if quote_acct is not None:
        if shape.funding != "usdc":
            tx.native(trade.quote_vault, s * x)
        tx.token(trade.quote_vault, owner, quote_mint, s * x, quote_dec)
        if buy:
            into_pool.append(tx.send_token(leader, quote_acct, owner, trade.quote_vault, quote_mint, x, quote_dec))
        else:
            out_of_pool.append(tx.send_token(owner, trade.quote_vault, leader, quote_acct, quote_mint, x, quote_dec))
    if buy:
        out_of_pool.append(tx.send_token(owner, trade.base_vault, leader, trade.token_account, trade.mint, n, dec))
    else:
        into_pool.append(tx.send_token(leader, trade.token_account, owner, trade.base_vault, trade.mint, n, dec))
    if shape.funding == "native":  # unwrap: closing the temporary WSOL account pays its lamports to the leader
        tx.send_native(quote_acct, leader, RENT_TOKEN_ACCOUNT if buy else x + RENT_TOKEN_ACCOUNT)  # type: ignore[arg-type]
    if shape.close_account:
        refund_to = shape.relayer if shape.rent_by_relayer and shape.relayer else leader
        tx.native(trade.token_account, -RENT_TOKEN_ACCOUNT)
        tx.native(refund_to, RENT_TOKEN_ACCOUNT)

    # Read-only accounts, as Helius lists every account key.
    readonly = [trade.pool, owner, trade.mint, program, COMPUTE_BUDGET, SYSTEM_PROGRAM, TOKEN_PROGRAM]
    if shape.new_account or shape.funding == "native":
        readonly.append(ATA_PROGRAM)
    if shape.source == "JUPITER":
        readonly.append(JUPITER_PROGRAM)
    if quote_mint == WSOL_MINT:
        readonly.append(WSOL_MINT)
    for account in readonly:
        tx.row(account)

    # Hints: description, type, events. Amounts in the description are what moved, named by symbol or mint.
    token_name = symbol or trade.mint
    quote_name = "USDC" if quote_mint == USDC_MINT else "SOL"
    paid, got = ((x, quote_dec, quote_name), (n, dec, token_name)) if buy else ((n, dec, token_name), (x, quote_dec, quote_name))
    actor = shape.relayer if shape.events == "swap_keeper" else leader
    description = ""
    if shape.type == "SWAP" and shape.source != "PUMP_FUN":
        description = f"{actor} swapped {_ui_text(paid[0], paid[1])} {paid[2]} for {_ui_text(got[0], got[1])} {got[2]}"
    events: dict[str, Any] | list[Any]
    if shape.events == "empty_list":
        events = []
    elif shape.events == "empty_object":
        events = {}
    else:
        events = {"swap": _swap_event(trade, shape, actor, quote_acct, quote_mint, quote_dec, into_pool, out_of_pool,
                                      program, program_name, dex_source)}
    type_ = ("BUY" if buy else "SELL") if shape.type in ("BUY", "SELL") else shape.type
    return {
        "description": description,
        "type": type_,
        "source": shape.source,
        "fee": fee,
        "feePayer": fee_payer,
        "signature": trade.signature,
        "slot": trade.slot,
        "timestamp": trade.timestamp,
        "nativeTransfers": tx.native_transfers,
        "tokenTransfers": tx.token_transfers,
        "accountData": list(tx.rows.values()),
        "transactionError": None,
        "instructions": [],
        "events": events,
    }


def _swap_event(trade: LeaderTrade, shape: Shape, actor: str, quote_acct: str | None, quote_mint: str, quote_dec: int,
                into_pool: list[dict[str, Any]], out_of_pool: list[dict[str, Any]], program: str, program_name: str,
                source: str) -> dict[str, Any]:
    """`events.swap`: the leader's legs in raw units, or inverted, or attributed to the keeper (as seen for real)."""
    native_quote = shape.funding in ("native", "native_direct")
    quote_leg: dict[str, Any] = (
        {"account": actor, "amount": str(trade.quote_amount)} if native_quote else
        {"userAccount": actor, "tokenAccount": quote_acct, "mint": quote_mint,
         "rawTokenAmount": {"tokenAmount": str(trade.quote_amount), "decimals": quote_dec}}
    )
    token_leg = {"userAccount": actor, "tokenAccount": trade.token_account, "mint": trade.mint,
                 "rawTokenAmount": {"tokenAmount": str(trade.token_amount), "decimals": trade.decimals}}
    quote_in = trade.side == "buy"
    if shape.events == "swap_inverted":
        quote_in = not quote_in
    event: dict[str, Any] = {"nativeInput": None, "nativeOutput": None, "tokenInputs": [], "tokenOutputs": [],
                             "tokenFees": [], "nativeFees": []}
    if native_quote:
        event["nativeInput" if quote_in else "nativeOutput"] = quote_leg
    else:
        event["tokenInputs" if quote_in else "tokenOutputs"].append(quote_leg)
    event["tokenOutputs" if quote_in else "tokenInputs"].append(token_leg)
    event["innerSwaps"] = [{
        "tokenInputs": into_pool, "tokenOutputs": out_of_pool, "tokenFees": [], "nativeFees": [],
        "programInfo": {"source": source, "account": program, "programName": program_name, "instructionName": "SwapEvent"},
    }]
    return event


# -- delivery --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Delivery:
    """One webhook POST body (a JSON array of enhanced transactions), and whether Helius sends it twice."""

    number: int
    signatures: tuple[str, ...]
    body: bytes
    duplicate: bool


@dataclass(frozen=True)  # no slots: `vars(stats)` works
class PosterStats:
    deliveries: int = 0  # planned deliveries (before faults)
    attempts: int = 0  # POSTs made, retries and duplicates included
    delivered: int = 0  # deliveries acknowledged with a 2xx (the first copy)
    retried: int = 0  # retry POSTs (attempts after a failed one)
    duplicates: int = 0  # second copies acknowledged
    dropped: int = 0  # copies given up after the last retry
    missed: int = 0  # deliveries Helius never sent (faults.error_rate)
    pending: int = 0  # deliveries not settled yet

    def as_dict(self) -> dict[str, int]:
        return dict(vars(self))


class HeliusPoster:
    """Posts leader trades to a webhook URL the way Helius does.

    `submit(trades)` is thread-safe and returns at once; `run()` (started in a trio nursery) sends what was
    submitted, each delivery concurrently with its own retries. `deliver(trades)` sends and waits, for
    callers already on trio. `stats()` is safe from any thread. `faults` (the "helius" service) adds latency
    before a delivery, holds deliveries while `timeout` is set (a Helius outage), skips a fraction
    `error_rate` of them (events Helius missed) and, while `stalled` is set, every one (a webhook that went quiet).
    """

    def __init__(self, url: str | list[str], secret: str, *, retry_interval_s: float = HELIUS_RETRY_INTERVAL_S,
                 max_retries: int = HELIUS_MAX_RETRIES, duplicate_rate: float = 0.0, batch_rate: float = 0.15,
                 timeout_s: float = 10.0, seed: int = 0, faults: Faults | None = None,
                 symbols: dict[str, str] | None = None) -> None:
        if secret != secret.strip() or any(ord(c) < 0x20 or ord(c) == 0x7F for c in secret):
            raise ValueError("the webhook secret cannot be sent as an HTTP header value (edge spaces or control characters)")
        # several URLs: the gateways behind a load balancer — attempt k of delivery n goes to URL (n + k) mod count
        self.urls = [url] if isinstance(url, str) else list(url)
        self.url = self.urls[0]
        self.secret = secret
        self.retry_interval_s = retry_interval_s
        self.max_retries = max_retries
        self.duplicate_rate = duplicate_rate
        self.batch_rate = batch_rate
        self.timeout_s = timeout_s
        self.seed = seed
        self.faults = faults or Faults()
        self.symbols = symbols or {}
        self._rng = random.Random(f"{seed}:deliveries")
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {f.name: 0 for f in fields(PosterStats)}
        self._acked: set[str] = set()  # signatures of every delivery acknowledged with a 2xx at least once
        self._numbers = 0
        self._backlog: list[Delivery] = []
        self._token: trio.lowlevel.TrioToken | None = None
        self._send: trio.MemorySendChannel[Delivery] | None = None
        self._client: httpx.AsyncClient | None = None
        self._changed = trio.Event()

    # -- planning (deterministic) --
    def plan(self, trades: list[LeaderTrade]) -> list[Delivery]:
        """Group trades into deliveries (usually one transaction, sometimes 2-3) and render them."""
        out: list[Delivery] = []
        with self._lock:
            i = 0
            while i < len(trades):
                size = 1 if self._rng.random() >= self.batch_rate else self._rng.choice((2, 3))
                batch = trades[i:i + size]
                i += size
                txs = [enhanced_tx(t, choose_shape(shape_rng(self.seed, t), t), symbol=self.symbols.get(t.mint)) for t in batch]
                self._numbers += 1
                duplicate = self.duplicate_rate > 0 and self._rng.random() < self.duplicate_rate
                out.append(Delivery(self._numbers, tuple(t.signature for t in batch), json.dumps(txs).encode(), duplicate))
            self._counts["deliveries"] += len(out)
            self._counts["pending"] += len(out)
        return out

    def stats(self) -> PosterStats:
        with self._lock:
            return PosterStats(**self._counts)

    def acknowledged(self) -> set[str]:
        """The signatures the webhook acknowledged (2xx): what it promised to process exactly once."""
        with self._lock:
            return set(self._acked)

    def _bump(self, **deltas: int) -> None:
        with self._lock:
            for k, v in deltas.items():
                self._counts[k] += v
        self._changed.set()
        self._changed = trio.Event()

    async def wait_for(self, predicate: Any) -> PosterStats:
        """Wait (on trio, in the poster's thread) until `predicate(stats)` holds; returns those stats."""
        while True:
            changed = self._changed
            stats = self.stats()
            if predicate(stats):
                return stats
            await changed.wait()

    # -- feeding --
    def submit(self, trades: list[LeaderTrade]) -> None:
        """Queue trades for delivery; safe from any thread, before or after `run` starts."""
        if not trades:
            return
        deliveries = self.plan(trades)
        with self._lock:
            token, send = self._token, self._send
            if token is None or send is None:
                self._backlog.extend(deliveries)
                return
        for i, d in enumerate(deliveries):
            try:
                token.run_sync_soon(send.send_nowait, d)
            except trio.RunFinishedError:  # `run` ended meanwhile: keep the rest for the next run
                with self._lock:
                    self._backlog.extend(deliveries[i:])
                return

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Send submitted deliveries until cancelled."""
        send, receive = trio.open_memory_channel[Delivery](math.inf)
        async with httpx.AsyncClient(timeout=self.timeout_s) as client, trio.open_nursery() as nursery:
            self._client = client
            with self._lock:
                self._token, self._send = trio.lowlevel.current_trio_token(), send
                backlog, self._backlog = self._backlog, []
            for d in backlog:
                send.send_nowait(d)
            task_status.started()
            try:
                async for delivery in receive:
                    nursery.start_soon(self._deliver, delivery)
            finally:
                with self._lock:
                    self._token = self._send = None
                self._client = None

    async def deliver(self, trades: list[LeaderTrade]) -> list[bool]:
        """Plan and send `trades` now, waiting for every delivery to settle; True per acknowledged delivery."""
        deliveries = self.plan(trades)
        results: list[bool] = [False] * len(deliveries)

        async def one(i: int, d: Delivery) -> None:
            results[i] = await self._deliver(d)

        async with trio.open_nursery() as nursery:
            for i, d in enumerate(deliveries):
                nursery.start_soon(one, i, d)
        return results

    # -- sending --
    async def _deliver(self, d: Delivery) -> bool:
        try:
            while self.faults.timeout:  # a Helius outage: hold deliveries until it clears
                await trio.sleep(0.05)
            if self.faults.latency_s:
                await trio.sleep(self.faults.latency_s)
            if self.faults.stalled or self.faults.roll_error():
                self._bump(missed=1)
                log.info("helius_delivery_missed", delivery=d.number, signatures=list(d.signatures))
                return False
            ok = await self._post_with_retries(d, "delivered")
            if ok and d.duplicate:
                await self._post_with_retries(d, "duplicates")
            return ok
        finally:
            self._bump(pending=-1)

    async def _post_with_retries(self, d: Delivery, counter: str) -> bool:
        for attempt in range(self.max_retries + 1):
            if attempt:
                await trio.sleep(self.retry_interval_s)
                self._bump(retried=1)
            self.faults.count()
            self._bump(attempts=1)
            status = await self._post(d.body, self.urls[(d.number + attempt) % len(self.urls)])
            if status is not None and 200 <= status < 300:
                with self._lock:
                    self._acked.update(d.signatures)
                self._bump(**{counter: 1})
                return True
            log.info("helius_delivery_failed", delivery=d.number, attempt=attempt + 1, status=status)
        self._bump(dropped=1)
        log.warning("helius_delivery_dropped", delivery=d.number, signatures=list(d.signatures))
        return False

    async def _post(self, body: bytes, url: str | None = None) -> int | None:
        """One POST; the status, or None on a timeout or a transport error."""
        headers = {"Authorization": self.secret, "Content-Type": "application/json", "User-Agent": "helius-sandbox"}
        client = self._client
        try:
            with trio.move_on_after(self.timeout_s):
                if client is not None:
                    return (await client.post(url or self.url, content=body, headers=headers)).status_code
                async with httpx.AsyncClient(timeout=self.timeout_s) as own:
                    return (await own.post(url or self.url, content=body, headers=headers)).status_code
        except httpx.HTTPError as exc:
            log.info("helius_post_error", error=repr(exc))
            return None
        return None  # timed out
