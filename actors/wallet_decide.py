"""A wallet's decision on one transaction, pure: the entry's size, the copy rules, the token filters.

`decide` is what a wallet actor (actors/wallet.py) concludes about one transaction before the risk actor:
no trade, a signal taken (an entry to reserve, a mirror sell) or skipped with its reason. Everything it needs
comes in: the wallet's state (its books and the global mode), the effective copy rules (actors/rules.py) and
the `Context` (the time, the capabilities that exist). It logs nothing and performs nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any, Mapping

from actors.messages import Observation, PaperEntry
from actors.ports import CopyRules
from actors.rules import GLOBAL_OFF, LIVE_NOT_AVAILABLE
from actors.trades import STABLE_MINTS, WSOL_MINT, Trade

LAMPORTS_PER_SOL = 10**9
STABLE_UNITS = 10**6  # USDC and USDT have 6 decimals

WATCHING = "watching"
AWAITING_RESERVATION = "awaiting_reservation"


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
    # awaiting_reservation: the taken observation whose room the risk actor was asked for, and the events that
    # came meanwhile (deliveries, settings, closes), decided in order once it is answered
    awaiting: Observation | None = None
    queued: tuple[Any, ...] = ()


@dataclass(frozen=True)
class Context:
    """What a decision needs besides state and rules: the time, and the capabilities that exist."""

    now: float | None = None  # None: active hours are not checked
    live_available: bool = False
    risk: bool = False  # a RiskActor grants entries
    rules_follow_mode: bool = False  # the default copy mode is the global trading mode (COPY_MODE unset)
    sol_usd: Decimal | None = None  # the last fresh SOL price: sizes the live entries of USD-quoted leaders
    max_skew_s: float | None = None  # a timestamp further than this from the receipt is implausible


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


