"""Paged KV block pool: block tables, reference counts and automatic prefix caching.

The pool owns `num_blocks` fixed-size blocks of `block_size` token slots; a sequence owns a
block table (list of block ids) whose i-th block holds positions [i*bs, (i+1)*bs). This file
does the bookkeeping only; the tensors live in `model.attention.PagedKV`. A Loop model's
later loops keep their sliding-window K/V in blocks of the same pool (see block_tables.py).

Prefix caching: once a block is full and its K/V are computed, it is registered under a
chained hash h_i = blake2b(h_{i-1} || tokens of block i), so a hash names the whole prefix up
to and including the block. A lookup walks a new prompt block by block and stops at the first
miss; every hit is verified by token equality (and its parent's hash), so a hash collision can
only cost a miss, never wrong K/V. Blocks whose reference count drops to zero keep their
contents and hash and go to the back of an LRU free list (a sequence's blocks tail first, so
the deeper blocks of a prefix, reused less, are evicted first; blocks holding no cached prefix
go to the front); allocation takes from the front, so the least recently released cached
block is evicted first.

A prefix may be computed again while an older copy of it is still cached (a Loop prefix hit
cut short by an evicted window block, or a warm-up going on after a generation took its start
and extended it). The newer copy is indexed too: the older one was released first and is
evicted first, and the prefix must stay findable after that. An older copy that is free when
the newer one is published is only a plain free block from then on, given out before any
cached block; copies still in use stay indexed beside it, and a lookup takes any of them.

Consecutive ids: a table whose blocks have consecutive ids is one slice of the cache, which
the CPU attention reads in place instead of gathering it (kernels/cpu.py). So an allocation
for a table (`allocate(n, after=...)`) takes the id after the table's last block when that
block is free and holds no cached prefix, and starts a new run at the lowest such id; a Loop
window table (`top=True`) takes the highest such ids, away from the loop-0 runs. These choose
only among blocks holding nothing: which cached blocks are evicted, and when, is the LRU's.

Window blocks of a Loop model are cached too, keyed by the hash of the prefix up to their
block and their loop (`window_hash`): a prefix hit needs the window blocks just before it.
They are released as the window moves on, long before the loop-0 blocks beside them; when a
loop-0 block is released, its position's free window blocks move to the back with it, so
they are not evicted while the prefix they serve is still cached.
"""

from __future__ import annotations

import bisect
import hashlib
import struct
from collections import OrderedDict
from dataclasses import dataclass, field

ROOT_HASH = b"loopls-prefix-root"


class OutOfBlocks(RuntimeError):
    """Raised when an allocation asks for more blocks than are free."""


def chain_hash(parent: bytes, tokens: list[int] | tuple[int, ...]) -> bytes:
    """Hash of a block given its parent's hash: it names the whole prefix."""
    # struct packs a block in one call: a 32K-token prompt is 2K blocks to hash per request.
    return hashlib.blake2b(parent + struct.pack(f"<{len(tokens)}i", *tokens), digest_size=16).digest()


def window_hash(prefix_hash: bytes, loop: int) -> bytes:
    """Key of loop `loop`'s window block whose prefix (up to and including it) has `prefix_hash`."""
    return hashlib.blake2b(prefix_hash + b"loop" + loop.to_bytes(2, "little"), digest_size=16).digest()


@dataclass
class Block:
    block_id: int
    ref_count: int = 0
    # Set only while the block is registered in the prefix cache.
    hash: bytes | None = None
    parent_hash: bytes | None = None
    tokens: tuple[int, ...] = field(default_factory=tuple)
    loop: int = 0  # 0: loop-0 K/V; >= 1: that loop's window K/V


class BlockPool:
    """Free list, reference counts and the prefix-cache index over `num_blocks` blocks."""

    def __init__(self, num_blocks: int, block_size: int) -> None:
        if num_blocks < 1 or block_size < 1:
            raise ValueError("num_blocks and block_size must be at least 1")
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.blocks = [Block(i) for i in range(num_blocks)]
        # LRU order: front = evicted first. Holds every block with ref_count 0.
        self._free: OrderedDict[int, None] = OrderedDict((i, None) for i in range(num_blocks))
        self._plain = list(range(num_blocks))  # the free blocks holding no cached prefix, sorted
        # key -> the blocks holding it (identical contents: the same prefix computed twice)
        self._cached: dict[bytes, dict[int, None]] = {}
        self._num_cached = 0
        self.hits = 0  # loop-0 blocks served from the cache, for observability
        self.evictions = 0

    # -- queries -------------------------------------------------------------------------
    @property
    def num_free(self) -> int:
        return len(self._free)

    @property
    def num_used(self) -> int:
        return self.num_blocks - len(self._free)

    @property
    def num_cached(self) -> int:
        return self._num_cached

    def blocks_for(self, num_tokens: int) -> int:
        return -(-num_tokens // self.block_size)

    def can_allocate(self, n: int) -> bool:
        return n <= len(self._free)

    # -- allocation ----------------------------------------------------------------------
    def allocate(self, n: int, after: int | None = None, top: bool = False) -> list[int]:
        """n fresh blocks (ref_count 1), evicting least recently released cached blocks.

        While free blocks holding no cached prefix are left, a table's blocks come from them:
        with `after` (the table's last block, -1 for an empty table) a run of consecutive ids
        that goes on from it where it can, else from the lowest id; with `top` the highest ids."""
        if n > len(self._free):
            raise OutOfBlocks(f"asked for {n} blocks, {len(self._free)} free")
        out = []
        for _ in range(n):
            if after is not None and self._plain:
                nxt = after + 1
                block_id = nxt if nxt < self.num_blocks and self._free_plain(nxt) else self._plain[0]
                after = block_id
            elif top and self._plain:
                block_id = self._plain[-1]
            else:
                block_id = next(iter(self._free))
            del self._free[block_id]
            block = self.blocks[block_id]
            if block.hash is not None:
                self._uncache(block)
                self.evictions += 1
            else:
                self._drop_plain(block_id)
            block.ref_count = 1
            out.append(block_id)
        return out

    def _free_plain(self, block_id: int) -> bool:
        block = self.blocks[block_id]
        return block.ref_count == 0 and block.hash is None

    def _drop_plain(self, block_id: int) -> None:
        at = bisect.bisect_left(self._plain, block_id)
        if at < len(self._plain) and self._plain[at] == block_id:
            del self._plain[at]

    def free(self, block_ids: list[int], window_loops: int = 0) -> None:
        """Drop one reference to each block. Blocks at zero join the back of the free list
        tail first, so a prefix's deeper blocks are evicted before its shallower ones; a block
        holding no cached prefix goes to the front, given out before any cached block.

        `window_loops`, for a sequence's loop-0 table: each loop-0 block brings the free,
        cached window blocks of its position (loops 1..window_loops, released earlier as the
        window moved on) to the back beside it, so a position's K/V of every loop age together.
        """
        for block_id in reversed(block_ids):
            block = self.blocks[block_id]
            if block.ref_count <= 0:
                raise RuntimeError(f"block {block_id} freed more often than referenced")
            block.ref_count -= 1
            if block.ref_count == 0:
                self._free[block_id] = None
                if block.hash is None:
                    self._free.move_to_end(block_id, last=False)
                    bisect.insort(self._plain, block_id)
            if window_loops and block.hash is not None and block.loop == 0:
                for loop in range(1, window_loops + 1):
                    for window_id in self._cached.get(window_hash(block.hash, loop), ()):
                        if self.blocks[window_id].ref_count == 0:
                            self._free.move_to_end(window_id)

    # -- prefix cache --------------------------------------------------------------------
    def match_prefix(self, tokens: list[int], max_tokens: int) -> tuple[list[int], list[bytes]]:
        """Cached blocks covering the longest block-aligned prefix of tokens[:max_tokens], and
        the prefix hash of each. Takes no reference (see `take`)."""
        bs = self.block_size
        parent, hit, hashes = ROOT_HASH, [], []
        for i in range(max_tokens // bs):
            block_id, parent = self.lookup(parent, tuple(tokens[i * bs : (i + 1) * bs]))
            if block_id is None:
                break
            hit.append(block_id)
            hashes.append(parent)
        return hit, hashes

    def register(self, block_id: int, parent: bytes, tokens: list[int], loop: int = 0) -> bytes:
        """Publish a full, computed block under its chained hash; returns the prefix hash
        (for loop >= 1, a window block, stored under `window_hash` of it).

        If the key is already cached (the prefix was computed again), this block is indexed
        beside the older copies; an older copy that is free becomes a plain free block at the
        front of the free list (this one, released later, outlives it in the LRU).
        """
        chunk = tuple(tokens)
        if len(chunk) != self.block_size:
            raise ValueError(f"only full blocks can be cached ({len(chunk)} of {self.block_size} tokens)")
        h = chain_hash(parent, chunk)
        key = window_hash(h, loop) if loop else h
        block = self.blocks[block_id]
        if block.hash is not None:
            return h  # already published (a prefix hit)
        for other in [b for b in self._cached.get(key, ()) if self.blocks[b].ref_count == 0]:
            self._uncache(self.blocks[other])
            self._free.move_to_end(other, last=False)
            bisect.insort(self._plain, other)
        self._cached.setdefault(key, {})[block_id] = None
        block.hash, block.parent_hash, block.tokens, block.loop = key, parent, chunk, loop
        self._num_cached += 1
        return h

    def lookup(self, parent: bytes, tokens: tuple[int, ...], loop: int = 0) -> tuple[int | None, bytes]:
        """(cached block holding `tokens` after the prefix `parent`, or None; the prefix hash).
        Takes no reference. Verified by tokens, parent and loop: a collision is a miss."""
        h = chain_hash(parent, tokens)
        found = None
        # A copy in use costs no free block; otherwise the most recently published one.
        for block_id in reversed(self._cached.get(window_hash(h, loop) if loop else h, ())):
            block = self.blocks[block_id]
            if block.tokens == tokens and block.parent_hash == parent and block.loop == loop:
                if block.ref_count:
                    return block_id, h
                found = block_id if found is None else found
        return found, h

    def take(self, block_ids: list[int], count_hits: bool = True) -> None:
        """Take a reference on cached blocks found by `lookup` (a prefix hit); `hits` counts
        the loop-0 blocks (the prompt tokens served), not the window blocks beside them."""
        for block_id in block_ids:
            self._ref(block_id)
        if count_hits:
            self.hits += len(block_ids)

    def _ref(self, block_id: int) -> None:
        block = self.blocks[block_id]
        if block.ref_count == 0:
            del self._free[block_id]
            if block.hash is None:
                self._drop_plain(block_id)
        block.ref_count += 1

    def _uncache(self, block: Block) -> None:
        copies = self._cached.get(block.hash) if block.hash is not None else None
        if copies is not None and block.block_id in copies:
            del copies[block.block_id]
            self._num_cached -= 1
            if not copies:
                del self._cached[block.hash]
        block.hash, block.parent_hash, block.tokens, block.loop = None, None, (), 0

    def reset_cache(self) -> None:
        """Forget every cached prefix (e.g. after a failed step left contents in doubt)."""
        for block in self.blocks:
            if block.ref_count == 0 and block.hash is not None:
                self._uncache(block)
                bisect.insort(self._plain, block.block_id)

    def check_consistent(self) -> None:
        """Raise if the free list and reference counts disagree (used by tests)."""
        for block in self.blocks:
            in_free = block.block_id in self._free
            if (block.ref_count == 0) != in_free or block.ref_count < 0:
                raise AssertionError(f"block {block.block_id}: ref_count {block.ref_count}, free={in_free}")
            if block.hash is not None and block.block_id not in self._cached.get(block.hash, ()):
                raise AssertionError(f"block {block.block_id} has a hash but is not in the cache index")
        for h, copies in self._cached.items():
            for block_id in copies:
                if self.blocks[block_id].hash != h:
                    raise AssertionError(f"cache index points at block {block_id} with another hash")
        if self._num_cached != sum(len(copies) for copies in self._cached.values()):
            raise AssertionError("the count of cached blocks disagrees with the index")
        if self._plain != sorted(b for b in self._free if self.blocks[b].hash is None):
            raise AssertionError("the list of free blocks holding no cached prefix is wrong")
