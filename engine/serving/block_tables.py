"""Per-sequence block tables over the `BlockPool`: loop-0 blocks and Loop window blocks.

A sequence's `block_table[i]` holds loop 0's K/V of positions [i*bs, (i+1)*bs). A Loop model's
later loops keep their own K/V in blocks of the same pool, one table per loop
(`window_tables[loop - 1]`), grown in step with the loop-0 table, as vLLM keeps sliding-window
layers: a query at position p sees that loop's keys p-W+1 ... p only, so once every future
query is past a block's window (`trim`) the block is released and its entry becomes -1. The
window then costs about W tokens per layer and loop, whatever the sequence length.

Prefix caching covers both: full, computed blocks are published under their chained hash
(loop-0) and under `window_hash(prefix, loop)` (window blocks). A prefix hit of k blocks is
usable only when, besides loop 0's blocks 0..k-1, every later loop's window blocks for the
W-1 positions before the hit are cached; then the sequence continues at position k*bs with
nothing to recompute.
"""

from __future__ import annotations

from .blocks import ROOT_HASH, BlockPool
from .sequence import Sequence


class BlockTables:
    def __init__(self, pool: BlockPool, window_loops: int, window: int) -> None:
        self.pool = pool
        self.loops = window_loops  # later loops keeping window blocks (loop_num - 1; 0 if not Loop)
        # Keys before its own position that a later loop's query still sees.
        self.keep = max(window - 1, 0) if window_loops else 0

    # -- growth and release --------------------------------------------------------------
    def blocks_to_grow(self, seq: Sequence, end: int) -> int:
        """Blocks `grow(seq, end)` would allocate (loop-0 and window blocks together)."""
        return max(self.pool.blocks_for(end) - len(seq.block_table), 0) * (1 + self.loops)

    def grow(self, seq: Sequence, end: int) -> None:
        """Blocks for positions [0, end) in every table (the caller checked they are free)."""
        need = self.pool.blocks_for(end) - len(seq.block_table)
        if need <= 0:
            return
        if len(seq.window_tables) != self.loops:
            seq.window_tables = [[] for _ in range(self.loops)]
        # Consecutive ids where the pool can (blocks.py): loop 0's table is read whole every step.
        seq.block_table.extend(self.pool.allocate(need, after=seq.block_table[-1] if seq.block_table else -1))
        for table in seq.window_tables:
            table.extend(self.pool.allocate(need, top=True))

    def release(self, seq: Sequence) -> None:
        """Give back every block the sequence holds: window blocks first, then loop 0's
        table, which brings every cached window block of its positions (these and those
        trimmed earlier) beside the loop-0 block of the same position in the LRU."""
        for table in seq.window_tables:
            held = [b for b in table if b >= 0]
            if held:
                self.pool.free(held)
        if seq.block_table:
            self.pool.free(seq.block_table, window_loops=self.loops)
        seq.block_table = []
        seq.window_tables = []
        seq.window_start = 0

    def trim(self, seq: Sequence) -> None:
        """Release window blocks wholly before every future query's window."""
        if not self.loops:
            return
        upto = max(seq.num_computed - self.keep, 0) // self.pool.block_size
        if upto <= seq.window_start:
            return
        for table in seq.window_tables:
            dead = [b for b in table[seq.window_start : upto] if b >= 0]
            if dead:
                self.pool.free(dead)
            table[seq.window_start : upto] = [-1] * (upto - seq.window_start)
        seq.window_start = upto

    def window_blocks(self, seq: Sequence) -> int:
        """Window blocks the sequence holds now."""
        return sum(1 for table in seq.window_tables for b in table[seq.window_start :] if b >= 0)

    # -- prefix cache --------------------------------------------------------------------
    def take_prefix(self, seq: Sequence, max_tokens: int) -> None:
        """Start `seq` on the longest usable cached prefix of its first `max_tokens` tokens."""
        bs = self.pool.block_size
        tokens = seq.ids(0, max_tokens)
        hit, hashes = self.pool.match_prefix(tokens, max_tokens)
        k, windows, held = len(hit), [], []
        if self.loops:
            k, windows, held = self._window_hit(tokens, hashes)
        self.pool.take(hit[:k])
        self.pool.take(held, count_hits=False)
        seq.block_table = hit[:k]
        seq.window_tables = windows
        seq.window_start = max(k * bs - self.keep, 0) // bs if windows else 0
        seq.num_computed = k * bs
        seq.num_registered = k
        seq.last_hash = hashes[k - 1] if k else ROOT_HASH

    def _window_hit(self, tokens: list[int], hashes: list[bytes]) -> tuple[int, list[list[int]], list[int]]:
        """The longest hit length k (blocks) whose window blocks are all cached, with the
        window tables (-1 before the window) of that hit and the window blocks in them."""
        bs = self.pool.block_size
        k = len(hashes)
        while k > 0:
            lo = max(k * bs - self.keep, 0) // bs
            tables = [[-1] * k for _ in range(self.loops)]
            held, missing = [], None
            for i in range(k - 1, lo - 1, -1):
                parent = hashes[i - 1] if i else ROOT_HASH
                chunk = tuple(tokens[i * bs : (i + 1) * bs])
                for loop in range(1, self.loops + 1):
                    block_id, _ = self.pool.lookup(parent, chunk, loop)
                    if block_id is None:
                        missing = i
                        break
                    tables[loop - 1][i] = block_id
                    held.append(block_id)
                if missing is not None:
                    break
            if missing is None:
                return k, tables, held
            k = missing  # every longer hit needs the missing block's window K/V
        return 0, [[] for _ in range(self.loops)], []

    def publish(self, seq: Sequence) -> None:
        """Register every newly completed block (and its window blocks) in the prefix cache."""
        bs = self.pool.block_size
        # A stop inside an accepted draft leaves K/V computed for tokens never appended, and
        # a pending token (async scheduling) is not known yet: only known tokens are hashed.
        full = min(seq.num_computed, seq.num_known) // bs
        for i in range(seq.num_registered, full):
            chunk = seq.ids(i * bs, (i + 1) * bs)
            parent = seq.last_hash
            seq.last_hash = self.pool.register(seq.block_table[i], parent, chunk)
            for loop, table in enumerate(seq.window_tables, start=1):
                if table[i] >= 0:
                    self.pool.register(table[i], parent, chunk, loop)
        seq.num_registered = max(seq.num_registered, full)
