"""The live `LiveExecutor` (actors.ports): real swaps, signed with the wallet key, on the trio runtime.

`prepare` (nothing is sent):
  the kill switch (a buy is refused once the global mode is not live) → for a buy, the wallet's SOL on chain must
  cover the size, fees, rent and `LIVE_RESERVE_SOL`; for a sell, the amount is capped at the tokens the chain
  says we hold (none: `nothing_held`) → Jupiter quote (ExactIn, the rules' slippage, restrictIntermediateTokens) →
  /swap (dynamicComputeUnitLimit; a priority level capped in lamports, or a Jito tip) → **verify** the unsigned
  transaction (execution/verify.py) → **simulate** it and check our balances' outcome → sign. Returns a
  `SignedSwap`; the position journals it before asking to land it.

`land`: asks the chain for the signature first (a restart reconciles instead of re-sending), then sends the exact
  signed transaction (`maxRetries: 0`) and rebroadcasts it every `LIVE_REBROADCAST_MS` while the `Confirmer` (one
  batched status poll for every swap in flight) waits for the commitment or for expiry. A buy is never sent after
  the kill switch unless it may already have been (a restart): then it is only watched. The fill is the confirmed
  transaction's balance deltas of our key and our token accounts (`getTransaction` meta), never the quote.

Retrying is the position's decision (actors/position_live.py): this module only names the outcome (`SwapError`:
retryable, unknown, the fee a failed transaction cost). Rebroadcasting one signed transaction is idempotent (one
signature); only a new attempt re-quotes and re-builds.
"""

from __future__ import annotations

import base64
import concurrent.futures
import json
from dataclasses import dataclass
from typing import Any, Callable

import structlog
import trio

from actors.messages import Fill
from actors.ports import SignedSwap, SwapError
from adapters.http import BadResponse, ProviderError, RequestRejected
from adapters.jupiter import JupiterClient, JupiterQuote, NoRoute
from adapters.solana_rpc import SolanaRpc, rpc_error
from execution.confirm import Confirmer
from execution.keys import WalletKey
from execution.verify import (
    SYSTEM,
    TOKEN,
    TOKEN_2022,
    WSOL,
    Refused,
    SimulationFailed,
    SwapPolicy,
    ata,
    lookup_addresses,
    verify_swap,
)
from walltrack.bridge import TrioThread

log = structlog.get_logger("live")

SIGNATURE_FEE = 5_000
ATA_RENT = 2_039_280  # a token account's rent (Token-2022 accounts with extensions cost a little more: doubled)
SLIPPAGE_ERRORS = {6001}  # Jupiter v6 SlippageToleranceExceeded


@dataclass(frozen=True)
class LiveConfig:
    policy: SwapPolicy
    priority: dict[str, Any]  # the swap request's prioritizationFeeLamports
    reserve_lamports: int
    skip_preflight: bool = False
    commitment: str = "confirmed"
    rebroadcast_s: float = 2.0
    confirm_timeout_s: float = 120.0
    prepare_timeout_s: float = 30.0
    simulate: bool = True

    @property
    def fee_allowance(self) -> int:
        """The most a swap may cost us besides its input: signatures, the priority fee or tip, two accounts' rent."""
        return 4 * SIGNATURE_FEE + max(self.policy.max_priority_lamports, self.policy.jito_tip_lamports) + 2 * 2 * ATA_RENT


class LiveExecutor:
    def __init__(self, runtime: TrioThread, jupiter: JupiterClient, rpc: SolanaRpc, key: WalletKey, cfg: LiveConfig,
                 confirmer: Confirmer, clock: Callable[[], float], gate: Callable[[], str | None]) -> None:
        self._runtime, self._jup, self._rpc, self._key = runtime, jupiter, rpc, key
        self.cfg, self.confirmer, self._clock, self._gate = cfg, confirmer, clock, gate
        self._chain_view = trio.Lock()  # our sends never land between a simulation's "before" and its run

    @property
    def address(self) -> str:
        return self._key.address

    # -- the port: futures at once, work on the trio runtime --------------------------------------------------
    def prepare(self, position_id: int, side: str, mint: str, amount: int, *, slippage_bps: int,
                max_price_impact_pct: float | None = None) -> concurrent.futures.Future[SignedSwap]:
        return self._runtime.submit(self._prepare, position_id, side, mint, amount, slippage_bps, max_price_impact_pct)

    def land(self, position_id: int, side: str, mint: str, swap: SignedSwap, *, fresh: bool) -> concurrent.futures.Future[Fill]:
        return self._runtime.submit(self._land, position_id, side, mint, swap, fresh)

    # -- prepare ----------------------------------------------------------------------------------------------
    async def _prepare(self, pid: int, side: str, mint: str, amount: int, bps: int, max_impact: float | None) -> SignedSwap:
        if side == "buy" and (refusal := self._gate()) is not None:
            raise SwapError(refusal, detail="new live entries are stopped: nothing was built or sent")
        try:
            with trio.fail_after(self.cfg.prepare_timeout_s):
                return await self._build(pid, side, mint, amount, bps, max_impact)
        except NoRoute as exc:
            raise SwapError("no_route", detail=str(exc)[:200]) from None
        except SwapError as exc:
            log.warning("swap_not_prepared", position_id=pid, side=side, mint=mint, reason=exc.reason, detail=exc.detail)
            raise
        except SimulationFailed as exc:  # the builder says it would fail now (the price moved): not malice
            code = exc.error.get("errorCode") if isinstance(exc.error, dict) else None
            reason = {"SLIPPAGE_EXCEEDED": "slippage", "INSUFFICIENT_FUNDS": "insufficient_funds"}.get(str(code),
                                                                                                    "simulation_failed")
            log.warning("swap_not_prepared", position_id=pid, side=side, mint=mint, reason=reason, detail=exc.detail)
            raise SwapError(reason, retryable=True, detail=exc.detail) from None
        except Refused as exc:
            log.error("swap_refused", position_id=pid, side=side, mint=mint, reason=exc.reason, detail=exc.detail,
                      wallet=self.address)
            raise SwapError(f"refused:{exc.reason}", retryable=exc.reason == "outcome",
                            detail=exc.detail) from None
        except trio.TooSlowError:
            raise SwapError("prepare_timeout", retryable=True, detail=f"not built within {self.cfg.prepare_timeout_s} s") from None
        except ProviderError as exc:
            raise SwapError("provider_error", retryable=True, detail=f"{type(exc).__name__}: {exc}"[:300]) from None

    async def _build(self, pid: int, side: str, mint: str, amount: int, bps: int, max_impact: float | None) -> SignedSwap:
        owner = self.address
        if side == "buy":
            balance = await self._rpc.balance(owner)
            need = amount + self.cfg.fee_allowance + self.cfg.reserve_lamports
            if balance < need:
                raise SwapError("insufficient_sol", detail=f"the wallet holds {balance} lamports; this buy needs {amount} "
                                f"+ up to {self.cfg.fee_allowance} for fees and rent + {self.cfg.reserve_lamports} reserve")
            input_mint, output_mint = WSOL, mint
        else:
            held = sum(h.amount for h in await self._rpc.token_accounts(owner, mint))
            if held <= 0:
                raise SwapError("nothing_held", detail=f"the chain holds none of {mint} for {owner}")
            if held < amount:
                log.warning("sell_capped", position_id=pid, mint=mint, ordered=amount, held=held)
            amount = min(amount, held)
            input_mint, output_mint = mint, WSOL
        quote = await self._jup.quote(input_mint, output_mint, amount, slippage_bps=bps, restrictIntermediateTokens=True)
        _check_quote(quote, input_mint, output_mint, amount, bps)
        if max_impact is not None and quote.price_impact_percent > max_impact:
            raise SwapError("price_impact", detail=f"{quote.price_impact_percent:.2f}% is above the {max_impact}% limit")
        build = await self._jup.build_swap(quote, owner, dynamic_compute_unit_limit=True,
                                           prioritization_fee_lamports=self.cfg.priority)
        tx = build.transaction()
        lookups = await self._rpc.lookup_tables(lookup_addresses(tx))
        verify_swap(tx, quote, self.cfg.policy, simulation_error=build.simulation_error, lookups=lookups)
        if self.cfg.simulate:
            await self._simulate(tx, side, mint, amount, quote)
        signed = _contained(lambda: self._key.sign_transaction(tx))
        swap = SignedSwap(str(signed.signatures[0]), base64.b64encode(bytes(signed)).decode(), build.last_valid_block_height,
                          amount, quote.out_amount, quote.other_amount_threshold, str(quote.price_impact),
                          "+".join(quote.labels) or "?", bps)
        log.info("swap_prepared", position_id=pid, side=side, mint=mint, signature=swap.signature, amount=amount,
                 quoted_out=quote.out_amount, min_out=quote.other_amount_threshold, route=swap.route,
                 last_valid_block_height=swap.last_valid_block_height)
        return swap

    async def _simulate(self, tx: Any, side: str, mint: str, amount: int, quote: JupiterQuote) -> None:
        """Run the transaction on the current bank and check what it does to our SOL and our tokens of `mint`."""
        owner = self._key.pubkey
        unsigned = base64.b64encode(bytes(tx)).decode()
        tx_keys = [str(k) for k in tx.message.account_keys]
        tx_instructions = [{"programIdIndex": ix.program_id_index, "accounts": list(bytes(ix.accounts))}
                           for ix in tx.message.instructions]
        addresses = [str(owner), str(ata(owner, mint, TOKEN)), str(ata(owner, mint, TOKEN_2022))]
        async with self._chain_view:
            before = await self._rpc.account_states(addresses)
            err, after, logs = await self._rpc.simulate(unsigned, addresses)
        if err is not None:  # named like a landed failure: an expired blockhash, not enough SOL, slippage
            reason, retryable = classify(err, _failing(tx_keys, tx_instructions, err, str(owner)))
            raise SwapError(reason, retryable=retryable,
                            detail=f"simulated: {json.dumps(err)[:200]}; {' | '.join(logs[-3:])[:300]}")
        if before[0] is None or after[0] is None:
            raise Refused("outcome", "the simulation did not report our wallet")
        sol = after[0].lamports - before[0].lamports
        tokens = sum((a.token_amount or 0) if a else 0 for a in after[1:]) - \
            sum((b.token_amount or 0) if b else 0 for b in before[1:])
        allowance = self.cfg.fee_allowance
        if side == "buy" and (-sol > amount + allowance or tokens < quote.other_amount_threshold):
            raise Refused("outcome", f"simulated: {sol} lamports and {tokens} tokens for a buy of {amount} lamports "
                                     f"(at least {quote.other_amount_threshold} tokens expected)")
        if side == "sell" and (-tokens > amount or sol < quote.other_amount_threshold - allowance):
            raise Refused("outcome", f"simulated: {tokens} tokens and {sol} lamports for a sale of {amount} tokens "
                                     f"(at least {quote.other_amount_threshold} lamports expected)")

    # -- land -------------------------------------------------------------------------------------------------
    async def _land(self, pid: int, side: str, mint: str, swap: SignedSwap, fresh: bool) -> Fill:
        may_send = side == "sell" or self._gate() is None
        if fresh and not may_send:
            raise SwapError(self._gate() or "mode:off", detail="the kill switch came before the send: nothing was sent")
        watch = self.confirmer.watch(swap.signature, swap.last_valid_block_height)
        sends, last_send = 0, -float("inf")
        try:
            with trio.move_on_after(self.cfg.confirm_timeout_s):
                if not fresh:  # a restart: the chain is asked before anything is sent again
                    await self.confirmer.round()
                while True:
                    if watch.outcome is not None:
                        kind, value = watch.outcome
                        if kind == "expired":
                            log.warning("swap_expired", position_id=pid, side=side, signature=swap.signature,
                                        block_height=value, last_valid_block_height=swap.last_valid_block_height)
                            raise SwapError("expired", retryable=True, detail=f"not landed by block height "
                                            f"{swap.last_valid_block_height}")
                        fill = await self._outcome(pid, side, mint, swap, value)
                        if fill is not None:
                            return fill
                        await trio.sleep(self.confirmer.poll_s)  # landed; the transaction is not served yet
                        continue
                    now = trio.current_time()
                    if may_send and watch.outcome is None and now - last_send >= self.cfg.rebroadcast_s:
                        last_send, sends = now, sends + 1
                        await self._send(pid, side, swap, conclusive=fresh and sends == 1)
                    with trio.move_on_after(max(0.0, last_send + self.cfg.rebroadcast_s - trio.current_time())
                                            if may_send else self.confirmer.poll_s):
                        await watch.done.wait()
        finally:
            self.confirmer.unwatch(watch)
        raise SwapError("unconfirmed", unknown=True, detail=f"no outcome for {swap.signature} within "
                        f"{self.cfg.confirm_timeout_s} s; it is watched again")

    async def _send(self, pid: int, side: str, swap: SignedSwap, conclusive: bool) -> None:
        """One (re)broadcast, one HTTP attempt. A preflight rejection of the very first send of a fresh transaction
        proves it was never forwarded: that is its outcome. After any earlier attempt (even one that timed out, which
        the node may have forwarded) a rejection proves nothing: the confirmation loop decides. Any other error: the
        next rebroadcast tries again."""
        try:
            async with self._chain_view:
                await self._rpc.send_transaction(swap.transaction, skip_preflight=self.cfg.skip_preflight)
            log.info("swap_sent", position_id=pid, side=side, signature=swap.signature, rebroadcast=not conclusive)
        except RequestRejected as exc:
            code, message, err = rpc_error(exc)
            if "AlreadyProcessed" in json.dumps(err) or "already been processed" in message:
                return
            log.warning("swap_send_rejected", position_id=pid, signature=swap.signature, code=code, error=message[:200])
            if conclusive:
                failing = _failing(list(_signed_keys(swap)), _signed_instructions(swap), err, self.address)
                reason, retryable = classify(err if err is not None else message, failing)
                raise SwapError(reason, retryable=retryable, detail=f"preflight: {message[:200]}") from None
        except ProviderError as exc:
            log.warning("swap_send_failed", position_id=pid, signature=swap.signature, error=f"{type(exc).__name__}: {exc}")

    async def _outcome(self, pid: int, side: str, mint: str, swap: SignedSwap, status: dict[str, Any]) -> Fill | None:
        """The confirmed transaction's deltas: a Fill, or SwapError (with its fee as a cost) when it failed on chain.
        None while getTransaction does not have it yet at our commitment."""
        try:
            tx = await self._rpc.transaction(swap.signature, self.cfg.commitment)
        except ProviderError as exc:
            log.warning("get_transaction_failed", signature=swap.signature, error=f"{type(exc).__name__}: {exc}")
            return None
        if tx is None:
            return None
        meta = tx["meta"]
        sol, tokens = deltas(tx, self.address, mint)
        fee = int(meta.get("fee") or 0)
        at = self._clock()
        err = meta.get("err") if meta.get("err") is not None else status.get("err")
        if err is not None:
            message = tx["transaction"]["message"]
            reason, retryable = classify(err, _failing(_keys(tx), message.get("instructions") or [], err, self.address))
            cost = Fill(pid, side, mint, WSOL, 0, -sol if side == "buy" else sol, 0, fee, 0, swap.price_impact,  # type: ignore[arg-type]
                        swap.route, at, signature=swap.signature)
            log.warning("swap_landed_failed", position_id=pid, side=side, signature=swap.signature, reason=reason,
                        error=json.dumps(err)[:200], sol_delta=sol, fee=fee)
            raise SwapError(reason, retryable=retryable, cost=cost, detail=json.dumps(err)[:200])
        if side == "buy":
            fill = Fill(pid, "buy", mint, WSOL, tokens, -sol, swap.quoted_out, fee, swap.quoted_out - tokens,
                        swap.price_impact, swap.route, at, signature=swap.signature)
        else:
            fill = Fill(pid, "sell", mint, WSOL, -tokens, sol, swap.quoted_out, fee, swap.quoted_out - (sol + fee),
                        swap.price_impact, swap.route, at, signature=swap.signature)
        log.info("swap_confirmed", position_id=pid, side=side, signature=swap.signature, sol_delta=sol,
                 token_delta=tokens, fee=fee, quoted_out=swap.quoted_out, slot=tx.get("slot"))
        return fill


def _keys(tx: dict[str, Any]) -> list[str]:
    """A getTransaction result's full account list (v0: the static keys, then the loaded addresses)."""
    meta, message = tx["meta"], tx["transaction"]["message"]
    loaded = meta.get("loadedAddresses") or {}
    keys = [*message["accountKeys"], *loaded.get("writable", []), *loaded.get("readonly", [])]
    return [k if isinstance(k, str) else k["pubkey"] for k in keys]


def _signed_keys(swap: SignedSwap) -> list[str]:
    from solders.transaction import VersionedTransaction

    return [str(k) for k in _contained(lambda: VersionedTransaction.from_bytes(base64.b64decode(swap.transaction))
                                       ).message.account_keys]


def _signed_instructions(swap: SignedSwap) -> list[dict[str, Any]]:
    from solders.transaction import VersionedTransaction

    tx = _contained(lambda: VersionedTransaction.from_bytes(base64.b64decode(swap.transaction)))
    return [{"programIdIndex": ix.program_id_index, "accounts": list(bytes(ix.accounts))} for ix in tx.message.instructions]


def _failing(keys: list[str], instructions: list[dict[str, Any]], err: Any, owner: str) -> tuple[str, bool] | None:
    """(the program of the instruction that failed, whether our wallet is among its accounts), when known."""
    if not (isinstance(err, dict) and isinstance(err.get("InstructionError"), list)):
        return None
    index = err["InstructionError"][0]
    if not isinstance(index, int) or not 0 <= index < len(instructions):
        return None
    ix = instructions[index]
    try:
        return keys[ix["programIdIndex"]], owner in [keys[a] for a in ix.get("accounts", [])]
    except (IndexError, KeyError, TypeError):
        return None


def deltas(tx: dict[str, Any], owner: str, mint: str) -> tuple[int, int]:
    """(SOL delta of `owner`, delta of its `mint` tokens over all its token accounts) in a getTransaction result."""
    meta = tx["meta"]
    keys = _keys(tx)
    if owner not in keys:
        raise BadResponse(f"rpc: the transaction does not involve {owner}", provider="rpc")
    i = keys.index(owner)
    sol = int(meta["postBalances"][i]) - int(meta["preBalances"][i])

    def held(balances: list[dict[str, Any]] | None) -> int:
        return sum(int(b["uiTokenAmount"]["amount"]) for b in balances or ()
                   if b.get("mint") == mint and b.get("owner") == owner)

    return sol, held(meta.get("postTokenBalances")) - held(meta.get("preTokenBalances"))


def classify(err: Any, failing: tuple[str, bool] | None = None) -> tuple[str, bool]:
    """A transaction error as (reason, retryable). `failing`: the failed instruction's program and whether our wallet
    is among its accounts. Not enough SOL will not change with a new quote; slippage or another program error may.
    A Token program "insufficient funds" (custom 1) in a transfer our wallet does not sign is the pool's side
    falling short of the quote's minimum — how the sandbox shows slippage at execution; Jupiter's is custom 6001."""
    text = json.dumps(err) if not isinstance(err, str) else err
    if "InsufficientFunds" in text or "insufficient lamports" in text.lower() or "Attempt to debit" in text \
            or "AccountNotFound" in text:
        return "insufficient_sol", False
    if "BlockhashNotFound" in text or "Blockhash not found" in text:
        return "expired", True
    if isinstance(err, dict) and isinstance(err.get("InstructionError"), list) and len(err["InstructionError"]) == 2:
        detail = err["InstructionError"][1]
        code = detail.get("Custom") if isinstance(detail, dict) else None
        program, ours = failing if failing is not None else (None, True)
        if code in SLIPPAGE_ERRORS:
            return "slippage", True
        if code == 1 and program == str(SYSTEM):
            return "insufficient_sol", False  # our transfer: not enough lamports
        if code == 1 and program in (str(TOKEN), str(TOKEN_2022)):
            return ("insufficient_funds", True) if ours else ("slippage", True)
        if code is not None:
            return f"program_error:{code}", True
        return f"program_error:{detail}", True
    return "transaction_error", True


def _check_quote(q: JupiterQuote, input_mint: str, output_mint: str, amount: int, bps: int) -> None:
    """The quote is the one asked for: its input, its mints, ExactIn, no looser slippage."""
    if (q.input_mint, q.output_mint, q.in_amount, q.swap_mode) != (input_mint, output_mint, amount, "ExactIn") \
            or q.slippage_bps > bps or not q.route_plan:
        raise Refused("quote", f"the quote is not the one asked for ({q.in_amount} {q.input_mint} -> {q.output_mint}, "
                               f"{q.swap_mode}, {q.slippage_bps} bps)")


def _contained(fn: Callable[[], Any]) -> Any:
    """Run a solders call; a Rust panic (a BaseException) becomes an ordinary error."""
    try:
        return fn()
    except Exception:
        raise
    except BaseException as exc:  # noqa: BLE001
        if isinstance(exc, (KeyboardInterrupt, SystemExit, trio.Cancelled)):
            raise
        raise BadResponse(f"solders panicked: {type(exc).__name__}", provider="jupiter") from None
