"""The sandbox chain's blocks: block height, slots, blockhashes and their expiry, on wall time.

The market runs on simulated time (a demo at speed 60 lives an hour a minute); the bot's executor does not:
it signs, sends and polls at wall-clock pace. So blocks are produced on **wall time**, one every
`block_time_s` (Solana's 0.4 s by default), whatever the market's speed:

- **block height** starts at `first_height` (about 20 M below the slot, as on mainnet, so a client that mixes
  up slots and heights is caught) and grows by one per block;
- **slot** = the market's slot + the blocks produced so far: it advances with the market's simulated time
  (slots the sandbox's blocks skip) and with every block;
- every block has its own **blockhash**, a hash of the seed and the height. A blockhash of height `h` is
  accepted while the current height is at most `h + 150` (`BLOCKHASH_VALID_BLOCKS`): its `lastValidBlockHeight`.
  Only blockhashes the sandbox has handed out (`issue`) are known; any other is "Blockhash not found".

`block_time_s = None` stops the wall clock: blocks are then made only by `produce(n)` (tests that want to
step the chain block by block). The block time can be changed at run time; the height never goes back.
Thread-safe (its own lock; it calls nothing outside).
"""

from __future__ import annotations

import hashlib
import threading
import time
from typing import Callable

from solders.hash import Hash

BLOCK_TIME_S = 0.4
BLOCKHASH_VALID_BLOCKS = 150  # MAX_PROCESSING_AGE: a transaction's blockhash may be this many blocks old
HEIGHT_BELOW_SLOT = 20_000_000  # mainnet's block height trails its slot by tens of millions (skipped slots)
KEEP_HASHES = 4 * BLOCKHASH_VALID_BLOCKS  # handed-out blockhashes remembered (older ones are long expired)


class BlockClock:
    def __init__(self, seed: int, first_height: int, block_time_s: float | None = BLOCK_TIME_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.seed = seed
        self.first_height = first_height
        self._clock = clock
        self._lock = threading.Lock()
        self._height = first_height
        self._block_time_s = block_time_s
        self._anchor = clock()  # wall time of the last block counted
        self._issued: dict[Hash, int] = {}

    @property
    def block_time_s(self) -> float | None:
        return self._block_time_s

    @block_time_s.setter
    def block_time_s(self, value: float | None) -> None:
        if value is not None and value <= 0:
            raise ValueError("block_time_s must be positive (or None: blocks only by produce())")
        with self._lock:
            self._advance()
            self._block_time_s = value
            self._anchor = self._clock()

    def _advance(self) -> None:
        if self._block_time_s is None:
            return
        now = self._clock()
        blocks = int((now - self._anchor) / self._block_time_s)
        if blocks > 0:
            self._height += blocks
            self._anchor += blocks * self._block_time_s

    def height(self) -> int:
        """The current block height (the newest block: "processed")."""
        with self._lock:
            self._advance()
            return self._height

    def produced(self) -> int:
        """Blocks produced since the chain was made (what the slot adds to the market's slot)."""
        return self.height() - self.first_height

    def produce(self, n: int = 1) -> int:
        """Make `n` blocks now (on top of the wall clock's); returns the new height."""
        if n < 0:
            raise ValueError("blocks are never taken back")
        with self._lock:
            self._advance()
            self._height += n
            return self._height

    # -- blockhashes -------------------------------------------------------------------------------------
    def blockhash_at(self, height: int) -> Hash:
        return Hash(hashlib.sha256(f"{self.seed}:blockhash:{height}".encode()).digest())

    def issue(self, age: int = 0) -> tuple[Hash, int]:
        """A blockhash to hand out, `age` blocks old (0: the newest block's), and its `lastValidBlockHeight`.
        An `age` above `BLOCKHASH_VALID_BLOCKS` hands out a blockhash that has already expired."""
        with self._lock:
            self._advance()
            height = self._height - age
            blockhash = self.blockhash_at(height)
            self._issued[blockhash] = height
            if len(self._issued) > KEEP_HASHES:
                cutoff = self._height - KEEP_HASHES
                self._issued = {h: at for h, at in self._issued.items() if at >= cutoff}
            return blockhash, height + BLOCKHASH_VALID_BLOCKS

    def last_valid(self, blockhash: Hash) -> int | None:
        """The `lastValidBlockHeight` of a handed-out blockhash, or None for one the sandbox never handed out."""
        with self._lock:
            height = self._issued.get(blockhash)
        return None if height is None else height + BLOCKHASH_VALID_BLOCKS

    def valid(self, blockhash: Hash) -> bool:
        last = self.last_valid(blockhash)
        return last is not None and self.height() <= last
