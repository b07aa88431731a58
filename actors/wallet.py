"""WalletActor: one per watched wallet. Classifies the wallet's transactions and decides what to copy.

A buy goes through, in order: the global trading mode (off: skipped as "mode:off" for every wallet, whatever
its rules), the wallet's copy rules that need no outside facts (`screen_buy`: mode,
active hours, blacklist, the leader's trade size, add-on buys, buys and SOL per token), the token safety
verdict and the token filters on its facts (`screen_token`: liquidity, market cap, pool age, sources/DEXes,
price impact), then a reservation from the RiskActor (global caps and breakers). Any refusal records the
signal as skipped with its reason and follows it as a shadow position. The rules are the global defaults
with the wallet's overrides (`actors/rules.py`, `wallets.settings`).

Live mode needs three things: a wallet key (`Context.live_available`, else `live_not_available`), the wallet's
rules in mode live, and the operator's global mode live (else `live:global_mode_not_live`). A live entry always
pays SOL: a USD-quoted leader's trade is sized by the USD rules and converted at the last fresh SOL price
(`live_entry`; none known: `live:sol_price_unknown`), and the position is booked in SOL.

Transition table (state, event) -> handler; the handlers are pure and return (state', effects):

| state    | event                   | effects                                                             |
|----------|-------------------------|---------------------------------------------------------------------|
| watching | SwapObserved            | no trade (or refused): Record(why); a buy that passes the rules: AssessSafety (when screening), else Reserve or Record |
| watching | SafetyAssessed          | Reserve (an entry that may be taken) or Record(skipped: the reason) |
| watching | Reserved                | Record(taken); Record(skipped: the cap or breaker) [+ Release when the risk actor did not answer, or the kill switch went on meanwhile] |
| watching | Recorded                | ReservationBound + StartPosition for an entry; for a duplicate, the same for the position its first decision opened (still open), else Release; LeaderSold routes |
| watching | PositionClosed          | —                                                                   |
| watching | WalletSettingsChanged   | — (the wallet's overrides replaced)                                 |
| watching | TradingModeChanged      | — (the global mode replaced; the rules' default mode follows it)    |

Every state is `watching`; what changes is the books: positions by token (ours and shadows), our buys
per token, and the leader's holdings observed since watching began (add-on buys, the sold fraction).
A `TradingModeChanged` is handled even while a reservation or a write is under way: the kill switch
refuses an entry granted just before it (recorded skipped `mode:off`, the reservation released).
"""

from __future__ import annotations

import concurrent.futures
import json
import uuid
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any, Callable, Mapping

import pykka
import structlog

from actors.messages import (
    EntryDecision,
    LeaderSold,
    Observation,
    PaperEntry,
    PositionClosed,
    RecordResult,
    ReservationBound,
    ReservationReleased,
    ReserveEntry,
    StartPosition,
    SwapObserved,
    ToPosition,
    TradingModeChanged,
    WalletSettingsChanged,
)
from actors.ports import CopyRules, Ports
from actors.rules import GLOBAL_OFF, LIVE_NOT_AVAILABLE, RulesError, effective
from actors.shell import Shell
from actors.trades import STABLE_MINTS, WSOL_MINT, NotATrade, Trade, read_trade

log = structlog.get_logger("wallet")

LAMPORTS_PER_SOL = 10**9
STABLE_UNITS = 10**6  # USDC and USDT have 6 decimals
RISK_REPLY_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class WalletState:
    wallet: str
    status: str = "watching"
    open_by_token: dict[str, frozenset[int]] = field(default_factory=dict)  # paper/live positions
    shadow_by_token: dict[str, frozenset[int]] = field(default_factory=dict)  # skipped signals followed on paper
    screen: bool = False  # ask for a token safety verdict before every buy
    overrides: Mapping[str, Any] = field(default_factory=dict)  # this wallet's copy-rule overrides
    buys: Mapping[str, tuple[int, int]] = field(default_factory=dict)  # mint -> (our entries, quote spent) while we hold it
    leader_holdings: Mapping[str, int] = field(default_factory=dict)  # mint -> leader's net tokens observed (may be < 0)
    trading_mode: str | None = None  # the global mode (from the root); None: the copy rules alone decide


@dataclass(frozen=True)
class Context:
    """What a decision needs besides state and rules: the time, and the capabilities that exist."""

    now: float | None = None  # None: active hours are not checked
    live_available: bool = False
    risk: bool = False  # a RiskActor grants entries
    rules_follow_mode: bool = False  # the default copy mode is the global trading mode (COPY_MODE unset)
    sol_usd: Decimal | None = None  # the last fresh SOL price: sizes the live entries of USD-quoted leaders
    max_skew_s: float | None = None  # a timestamp further than this from the receipt is implausible


# -- internal events and effects ----------------------------------------------------------------------------
@dataclass(frozen=True)
class AssessSafety:
    signature: str
    trade: Trade


@dataclass(frozen=True)
class SafetyAssessed:
    signature: str
    trade: Trade
    report: Any  # a SafetyReport (`.passed`, `.reason`, `.facts`, `.as_json()`), or the exception that prevented one


@dataclass(frozen=True)
class Reserve:
    """Ask the RiskActor for room for this (taken) observation's entry."""

    observation: Observation

    @property
    def reservation_id(self) -> str:
        return f"{self.observation.signature}:{self.observation.wallet}"


@dataclass(frozen=True)
class Reserved:
    observation: Observation
    decision: Any  # an EntryDecision, or the exception raised while waiting for one (timeout)


@dataclass(frozen=True)
class Record:
    observation: Observation
    reservation_id: str | None = None


@dataclass(frozen=True)
class Recorded:
    observation: Observation
    result: RecordResult
    reservation_id: str | None = None


Effect = Any


# -- pure decisions -------------------------------------------------------------------------------------------
def paper_entry(trade: Trade, rules: CopyRules) -> PaperEntry | None:
    """Paper fill at the leader's own effective price (quote spent / tokens received), sized by the rules."""
    if trade.quote_mint == WSOL_MINT:
        unit, fixed, lo, hi = LAMPORTS_PER_SOL, rules.fixed_sol, rules.min_sol, rules.max_sol
    elif trade.quote_mint in STABLE_MINTS:
        unit, fixed, lo, hi = STABLE_UNITS, rules.fixed_usd, rules.min_usd, rules.max_usd
    else:
        return None
    if trade.quote_amount <= 0:
        return None
    if rules.sizing == "fixed":
        size = int(fixed * unit)
    else:
        size = int(min(max(Decimal(trade.quote_amount) * rules.percent / 100, lo * unit), hi * unit))
    if size <= 0:
        return None
    tokens = size * trade.token_amount // trade.quote_amount
    if tokens <= 0:
        return None
    return PaperEntry(quote_amount=size, token_amount=tokens, slippage_bps=rules.slippage_bps,
                      max_price_impact_pct=rules.max_price_impact_pct)


LIVE_GLOBAL_NOT_LIVE = "live:global_mode_not_live"  # a wallet in live mode while the operator's global mode is not
LIVE_NO_SOL_PRICE = "live:sol_price_unknown"


def live_entry(trade: Trade, entry: PaperEntry, ctx: Context) -> PaperEntry | str:
    """A live entry pays SOL, whatever the leader paid with: a SOL-quoted trade keeps its size; a USD-quoted one is
    sized by the USD rules (fixed_usd, or percent within min_usd..max_usd) and converted to lamports at the last
    fresh SOL price — none known: skipped, never guessed. Returns the entry or the skip reason."""
    if trade.quote_mint == WSOL_MINT:
        return replace(entry, mode="live", quote_mint=WSOL_MINT)
    if ctx.sol_usd is None or ctx.sol_usd <= 0:
        return LIVE_NO_SOL_PRICE
    lamports = int(Decimal(entry.quote_amount) * LAMPORTS_PER_SOL / (STABLE_UNITS * ctx.sol_usd))
    if lamports <= 0:
        return "unpriceable_trade"
    return replace(entry, quote_amount=lamports, mode="live", quote_mint=WSOL_MINT)


def screen_buy(state: WalletState, trade: Trade, entry: PaperEntry, rules: CopyRules, ctx: Context) -> str | None:
    """The global mode, then the copy rules that need no outside facts: None to go on, else the skip reason."""
    if state.trading_mode == "off":
        return GLOBAL_OFF  # the operator paused every entry: it wins over any wallet's own mode
    if rules.mode == "off":
        return "mode_off"
    if rules.mode == "live" and not ctx.live_available:
        return LIVE_NOT_AVAILABLE  # no wallet key: never a silent fall-back to paper
    if rules.mode == "live" and state.trading_mode != "live":
        return LIVE_GLOBAL_NOT_LIVE  # live needs the operator's global mode too (the kill switch)
    if ctx.now is not None and not rules.in_active_hours(ctx.now):
        return "outside_active_hours"
    if trade.token_mint in rules.blacklist:
        return "blacklisted"
    if trade.quote_mint == WSOL_MINT:
        if rules.leader_min_sol is not None and trade.quote_amount < rules.leader_min_sol * LAMPORTS_PER_SOL:
            return "leader_trade_too_small"
        if rules.leader_max_sol is not None and trade.quote_amount > rules.leader_max_sol * LAMPORTS_PER_SOL:
            return "leader_trade_too_large"
    if rules.skip_add_ons and state.leader_holdings.get(trade.token_mint, 0) > 0:
        return "leader_add_on"
    count, spent = state.buys.get(trade.token_mint, (0, 0))
    if count >= rules.max_buys_per_token:
        return "max_buys_per_token"
    if (rules.max_sol_per_token is not None and trade.quote_mint == WSOL_MINT
            and spent + entry.quote_amount > rules.max_sol_per_token * LAMPORTS_PER_SOL):
        return "max_sol_per_token"
    return None


def _source_allowed(rules: CopyRules, trade: Trade, dex: str | None) -> bool:
    allowed = {s.lower() for s in rules.allowed_sources}
    return not allowed or (trade.source or "").lower() in allowed or (dex or "").lower() in allowed


def screen_token(trade: Trade, report: Any, rules: CopyRules) -> str | None:
    """The token filters, on the facts of the safety verdict; a configured filter without facts fails closed."""
    facts: Mapping[str, Any] = getattr(report, "facts", None) or {}

    def known(key: str) -> Any:
        return facts.get(key)

    if not _source_allowed(rules, trade, known("dex")):
        return "source_not_allowed"
    if rules.min_liquidity_usd is not None:
        if known("liquidity_usd") is None:
            return "filter:liquidity_unknown"
        if known("liquidity_usd") < rules.min_liquidity_usd:
            return "filter:min_liquidity"
    if rules.min_market_cap_usd is not None or rules.max_market_cap_usd is not None:
        cap = known("market_cap_usd")
        if cap is None:
            return "filter:market_cap_unknown"
        if (rules.min_market_cap_usd is not None and cap < rules.min_market_cap_usd) or (
                rules.max_market_cap_usd is not None and cap > rules.max_market_cap_usd):
            return "filter:market_cap"
    if rules.max_pool_age_hours is not None:
        if known("pool_age_s") is None:
            return "filter:pool_age_unknown"
        if known("pool_age_s") > rules.max_pool_age_hours * 3600:
            return "filter:max_pool_age"
    if rules.max_price_impact_pct is not None:
        if known("price_impact_pct") is None:
            return "max_price_impact_unknown"
        if known("price_impact_pct") > rules.max_price_impact_pct:
            return "max_price_impact"
    return None


def _needs_facts(rules: CopyRules) -> bool:
    return any(v is not None for v in (rules.min_liquidity_usd, rules.min_market_cap_usd, rules.max_market_cap_usd,
                                       rules.max_pool_age_hours, rules.max_price_impact_pct)) or bool(rules.allowed_sources)


def skipped(obs: Observation, reason: str, safety: dict[str, Any] | None = None) -> Observation:
    """A buy not taken: recorded with its reason and followed as a shadow position."""
    e = obs.entry
    shadow = replace(e, mode="shadow", slippage_bps=None, max_price_impact_pct=None) if e is not None else None
    return replace(obs, decision="skipped", reason=reason, entry=shadow, safety=safety if safety is not None else obs.safety)


def decide(state: WalletState, signature: str, trade: Trade | None, rules: CopyRules, report: Any = None,
           ctx: Context = Context()) -> Observation:
    """The decision on one transaction before the risk actor: taken (an entry to reserve) or skipped."""
    if trade is None:
        return Observation(signature, state.wallet, "no_trade")
    if trade.side == "buy":
        entry = paper_entry(trade, rules)
        if entry is None:
            return Observation(signature, state.wallet, "signal", trade, "skipped", "unpriceable_trade")
        safety = report.as_json() if report is not None and not isinstance(report, BaseException) else None
        taken = Observation(signature, state.wallet, "signal", trade, "taken", "copy_buy", entry=entry, safety=safety)
        reason = screen_buy(state, trade, entry, rules, ctx)
        if reason is not None:
            return skipped(taken, reason)
        if state.screen:
            if isinstance(report, BaseException) or report is None:
                return skipped(taken, "safety:unavailable")  # fail closed: no verdict, no buy
            if not report.passed:
                return skipped(taken, report.reason)
        if _needs_facts(rules):
            reason = screen_token(trade, None if isinstance(report, BaseException) else report, rules)
            if reason is not None:
                return skipped(taken, reason)
        if rules.mode == "live":
            live = live_entry(trade, entry, ctx)
            return skipped(taken, live) if isinstance(live, str) else replace(taken, entry=live)
        return taken
    real = state.open_by_token.get(trade.token_mint, frozenset())
    everyone = tuple(sorted(real | state.shadow_by_token.get(trade.token_mint, frozenset())))  # shadows mirror too
    if not real:
        return Observation(signature, state.wallet, "signal", trade, "skipped", "no_open_position", mirror_to=everyone)
    return Observation(signature, state.wallet, "signal", trade, "taken", "mirror_sell", mirror_to=everyone)


def _entry_or_record(obs: Observation, ctx: Context) -> Effect:
    if ctx.risk and obs.decision == "taken" and obs.entry is not None and obs.entry.mode != "shadow":
        return Reserve(obs)
    return Record(obs)


def on_swap_observed(state: WalletState, ev: SwapObserved, rules: CopyRules, ctx: Context) -> tuple[WalletState, list[Effect]]:
    received = ev.received_at if ev.received_at is not None else ctx.now
    trade = ev.trade if ev.classified else read_trade(json.loads(ev.payload), state.wallet, received, ctx.max_skew_s)
    if isinstance(trade, NotATrade):  # stored with its reason: no delivery vanishes
        return state, [Record(Observation(ev.signature, state.wallet, trade.outcome, reason=trade.reason))]
    obs = decide(state, ev.signature, trade, rules, ctx=ctx)
    if trade is not None and trade.side == "buy" and state.screen and obs.reason in ("copy_buy", "safety:unavailable"):
        return state, [AssessSafety(ev.signature, trade)]  # the rules let it through: ask for the verdict
    return state, [_entry_or_record(obs, ctx)]


def on_safety_assessed(state: WalletState, ev: SafetyAssessed, rules: CopyRules, ctx: Context) -> tuple[WalletState, list[Effect]]:
    return state, [_entry_or_record(decide(state, ev.signature, ev.trade, rules, ev.report, ctx), ctx)]


def on_reserved(state: WalletState, ev: Reserved, rules: CopyRules, ctx: Context) -> tuple[WalletState, list[Effect]]:
    obs, d = ev.observation, ev.decision
    rid = Reserve(obs).reservation_id
    if isinstance(d, EntryDecision) and d.granted and state.trading_mode == "off":
        return state, [ReservationReleased(rid), Record(skipped(obs, GLOBAL_OFF))]  # the kill switch went on meanwhile
    if isinstance(d, EntryDecision) and d.granted:
        return state, [Record(obs, rid)]
    if isinstance(d, EntryDecision):
        return state, [Record(skipped(obs, d.reason or "risk:refused"))]
    return state, [ReservationReleased(rid), Record(skipped(obs, "risk:unavailable"))]  # fail closed


def on_duplicate(state: WalletState, ev: Recorded, ctx: Context) -> list[Effect]:
    """Another decision on this transaction was stored first (a replay, a re-delivery, a restart in between): the
    books hold it already, or are rebuilt from it. What it may not have done is bind its reservation and start its
    position (its actor died between the commit and those): both are idempotent, so do them again."""
    res, obs = ev.result, ev.observation
    if res.position_id is None or not res.journal:
        return [ReservationReleased(ev.reservation_id)] if ev.reservation_id else []
    opened = res.journal[0].data
    effects: list[Effect] = []
    if ctx.risk and opened["mode"] != "shadow":  # its exposure, under the reservation id every decision on it shares
        effects.append(ReservationBound(Reserve(obs).reservation_id, res.position_id, state.wallet, opened["token_mint"],
                                        opened["quote_mint"], int(opened["entry_quote_amount"])))
    elif ev.reservation_id:
        effects.append(ReservationReleased(ev.reservation_id))
    return [*effects, StartPosition(res.position_id, state.wallet, res.journal)]


def on_recorded(state: WalletState, ev: Recorded, rules: CopyRules, ctx: Context) -> tuple[WalletState, list[Effect]]:
    obs, res = ev.observation, ev.result
    if res.duplicate:
        return state, on_duplicate(state, ev, ctx)
    if obs.trade is None:
        return state, [ReservationReleased(ev.reservation_id)] if ev.reservation_id else []
    effects: list[Effect] = []
    t = obs.trade
    if res.position_id is not None and obs.entry is not None:
        mint, key = t.token_mint, ("shadow_by_token" if obs.entry.mode == "shadow" else "open_by_token")
        book = dict(getattr(state, key))
        book[mint] = book.get(mint, frozenset()) | {res.position_id}
        state = replace(state, **{key: book})
        if ev.reservation_id is not None:  # before the position starts: its close must find it bound
            effects.append(ReservationBound(ev.reservation_id, res.position_id, state.wallet, mint,
                                            obs.entry.quote_mint or t.quote_mint, obs.entry.quote_amount,
                                            mode=obs.entry.mode))
        effects.append(StartPosition(res.position_id, state.wallet, res.journal))
        if obs.entry.mode != "shadow":
            count, spent = state.buys.get(mint, (0, 0))
            state = replace(state, buys={**state.buys, mint: (count + 1, spent + obs.entry.quote_amount)})
    elif ev.reservation_id is not None:
        effects.append(ReservationReleased(ev.reservation_id))
    # The leader's net flow per token since watching began. Deliveries can arrive out of order (a sell before
    # its buy), so it may go below zero and net out later; zero is forgotten.
    held = state.leader_holdings.get(t.token_mint, 0)
    after = held + t.token_amount if t.side == "buy" else held - t.token_amount
    holdings = {k: v for k, v in state.leader_holdings.items() if k != t.token_mint}
    if after:
        holdings[t.token_mint] = after
    state = replace(state, leader_holdings=holdings)
    if t.side == "sell":
        before = held if held >= t.token_amount > 0 else None  # the holding before the sale; unknown when it sold more
        for pid in obs.mirror_to:
            effects.append(ToPosition(pid, LeaderSold(pid, obs.signature, state.wallet, t.token_amount, t.quote_mint,
                                                      t.quote_amount, leader_holding_before=before)))
    return state, effects


def _without(book: dict[str, frozenset[int]], mint: str, position_id: int) -> dict[str, frozenset[int]]:
    ids = book.get(mint, frozenset()) - {position_id}
    out = {k: v for k, v in book.items() if k != mint}
    if ids:
        out[mint] = ids
    return out


def on_position_closed(state: WalletState, ev: PositionClosed, rules: CopyRules, ctx: Context) -> tuple[WalletState, list[Effect]]:
    open_by_token = _without(state.open_by_token, ev.token_mint, ev.position_id)
    # The per-token limits count the entries of the current holding: once it is all closed, a new one may start.
    buys = state.buys if ev.token_mint in open_by_token else {k: v for k, v in state.buys.items() if k != ev.token_mint}
    return replace(state, open_by_token=open_by_token, buys=buys,
                   shadow_by_token=_without(state.shadow_by_token, ev.token_mint, ev.position_id)), []


def on_settings_changed(state: WalletState, ev: WalletSettingsChanged, rules: CopyRules, ctx: Context) -> tuple[WalletState, list[Effect]]:
    return replace(state, overrides=dict(ev.overrides or {})), []


def on_mode_changed(state: WalletState, ev: TradingModeChanged, rules: CopyRules, ctx: Context) -> tuple[WalletState, list[Effect]]:
    return replace(state, trading_mode=ev.mode), []


TABLE: dict[tuple[str, type], Callable[[WalletState, Any, CopyRules, Context], tuple[WalletState, list[Effect]]]] = {
    ("watching", SwapObserved): on_swap_observed,
    ("watching", SafetyAssessed): on_safety_assessed,
    ("watching", Reserved): on_reserved,
    ("watching", Recorded): on_recorded,
    ("watching", PositionClosed): on_position_closed,
    ("watching", WalletSettingsChanged): on_settings_changed,
    ("watching", TradingModeChanged): on_mode_changed,
}


def rules_for(state: WalletState, defaults: CopyRules, follow_mode: bool = False) -> CopyRules:
    """The defaults with this wallet's overrides; overrides that no longer validate stop copying (mode off).
    With `follow_mode`, the defaults' mode is the global trading mode (paper or live; off is a gate of its own)."""
    if follow_mode and state.trading_mode in ("paper", "live") and defaults.mode != state.trading_mode:
        defaults = defaults.model_copy(update={"mode": state.trading_mode})
    try:
        return effective(defaults, state.overrides)
    except RulesError as exc:
        log.error("wallet_rules_invalid", wallet=state.wallet, error=str(exc))
        return defaults.model_copy(update={"mode": "off"})


def transition(state: WalletState, event: Any, rules: CopyRules, ctx: Context = Context()) -> tuple[WalletState, list[Effect]]:
    handler = TABLE.get((state.status, type(event)))
    if handler is None:
        raise LookupError(f"wallet {state.wallet}: no transition for {type(event).__name__} in {state.status}")
    return handler(state, event, rules_for(state, rules, ctx.rules_follow_mode), ctx)


class WalletActor(Shell):
    def __init__(self, state: WalletState, ports: Ports, root: pykka.ActorRef) -> None:
        super().__init__(ports.scheduler, root)
        self.child_id = ("wallet", state.wallet)
        self.state = state
        self._ports = ports
        self._root = root

    def handle(self, message: Any) -> Any:
        self._step(message)
        return None

    def bypass_stash(self, message: Any) -> bool:
        """The global mode is a pure state change: known at once, so an entry under way sees the kill switch."""
        return isinstance(message, TradingModeChanged)

    def _step(self, event: Any) -> None:
        ctx = Context(self._ports.clock(), self._ports.live_available, self._ports.risk is not None,
                      self._ports.rules_follow_mode, self._ports.sol_usd(), self._ports.max_skew_s)
        self.state, effects = transition(self.state, event, self._ports.rules, ctx)
        for effect in effects:
            if isinstance(effect, Record):  # its id makes a retry after a lost acknowledgement find its own row
                obs, rid = replace(effect.observation, decision_id=uuid.uuid4().hex), effect.reservation_id
                self.persist(
                    lambda obs=obs: self._ports.store.record_observation(obs),
                    lambda result, obs=obs, rid=rid: self._recorded(obs, result, rid),
                )
            elif isinstance(effect, AssessSafety):
                assert self._ports.safety is not None
                safety, e = self._ports.safety, effect
                self.request(lambda: safety.assess(e.trade.token_mint),
                             lambda report: self._step(SafetyAssessed(e.signature, e.trade, report)))
            elif isinstance(effect, Reserve):
                r = effect
                self.request(lambda: self._reserve(r), lambda decision: self._step(Reserved(r.observation, decision)))
            else:
                self._root.tell(effect)

    def _reserve(self, r: Reserve) -> concurrent.futures.Future:
        """Send the reservation through the root; the risk actor's answer completes this future, which the
        shell turns into a message in this mailbox. No answer in time counts as a refusal."""
        answer: concurrent.futures.Future = concurrent.futures.Future()
        obs = r.observation
        assert obs.trade is not None and obs.entry is not None

        def reply(decision: EntryDecision) -> None:
            try:
                answer.set_result(decision)
            except concurrent.futures.InvalidStateError:
                pass

        def give_up() -> None:
            try:
                answer.set_exception(TimeoutError("no answer from the risk actor"))
            except concurrent.futures.InvalidStateError:
                pass

        self._root.tell(ReserveEntry(r.reservation_id, obs.wallet, obs.trade.token_mint,
                                     obs.entry.quote_mint or obs.trade.quote_mint, obs.entry.quote_amount, reply,
                                     mode=obs.entry.mode))
        self._scheduler.call_later(RISK_REPLY_TIMEOUT_S, give_up)
        return answer

    def _recorded(self, obs: Observation, result: RecordResult, reservation_id: str | None) -> None:
        if obs.outcome in ("no_trade", "ignored") and not result.duplicate:
            log.info("not_a_trade", wallet=obs.wallet, signature=obs.signature, outcome=obs.outcome, reason=obs.reason)
        if obs.outcome == "signal" and not result.duplicate:
            t = obs.trade
            assert t is not None
            log.info(
                "signal",
                wallet=obs.wallet,
                signature=obs.signature,
                side=t.side,
                token_mint=t.token_mint,
                decision=obs.decision,
                reason=obs.reason,
                signal_id=result.signal_id,
                position_id=result.position_id,
            )
        self._step(Recorded(obs, result, reservation_id))
