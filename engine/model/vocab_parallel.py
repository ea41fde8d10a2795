"""The LM head split by vocabulary over tensor-parallel ranks, and the reductions sampling needs.

With the head whole on one rank, that rank alone ran the biggest single GEMM of a decode step,
the sampling and a broadcast of the tokens, and every other rank waited for it at the next
all-reduce. Split by vocabulary, each rank multiplies the final hidden states by its slice of
the output matrix's rows (a view: nothing is copied) and holds the logits of its tokens only,
padded with -inf to one width on every rank (the last shard is shorter when the ranks do not
divide the vocabulary). What sampling needs from the whole vocabulary comes from collectives
of a few bytes per row, captured in the decode CUDA graphs like the all-reduces:

- argmax: each rank's best (value, token id), all-gathered; the largest value wins and a tie
  goes to the lowest token id (the lowest rank holds the lowest ids), as `torch.argmax` on
  the whole row does;
- the k-th largest value (top-k): each rank's k best values, all-gathered, the k-th of those;
- the whole row (top-p, recorded logits): every shard all-gathered.

Every rank ends the step holding the same tokens, so none waits for another's.
A `VocabShard` of world 1 is the whole vocabulary: no collective runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F


# The same collective under its newer name (the old one warns from torch 2.13 on).
_ALL_GATHER = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor


@dataclass(frozen=True)
class VocabShard:
    """Which token ids a rank's logits hold: [start, start + size), padded to `width`."""

    vocab: int
    rank: int = 0
    world: int = 1
    group: dist.ProcessGroup | None = None  # None: the default group

    @property
    def width(self) -> int:
        return -(-self.vocab // self.world)

    @property
    def start(self) -> int:
        return self.rank * self.width

    @property
    def size(self) -> int:
        return max(0, min(self.vocab - self.start, self.width))

    def rows(self, weight: torch.Tensor) -> torch.Tensor:
        """This shard's rows of an output matrix [vocab, hidden] (a view)."""
        return weight.narrow(0, self.start, self.size)

    def columns(self, full: torch.Tensor, pad: float) -> torch.Tensor:
        """This shard's columns of a [R, vocab] tensor, padded with `pad` to [R, width]."""
        part = full.narrow(-1, self.start, self.size)
        return part if self.size == self.width else F.pad(part, (0, self.width - self.size), value=pad)


def shard_logits(x: torch.Tensor, weight: torch.Tensor, shard: VocabShard, gemm=None) -> torch.Tensor:
    """x [R, hidden] @ weight [size, hidden].T (this shard's rows) -> fp32 logits [R, width].
    `gemm`: a kernels.decode_gemm.DecodeGemm for the product (None: cuBLAS)."""
    out = (F.linear(x, weight) if gemm is None else gemm.linear(x, weight)).float()
    if shard.size == shard.width:
        return out
    return F.pad(out, (0, shard.width - shard.size), value=float("-inf"))


def ban_(logits: torch.Tensor, ban: torch.Tensor, shard: VocabShard) -> None:
    """Set logits [R, width] to -inf at token ids `ban` [R, M] (-1: none) that this shard holds.

    Adding -inf (and 0 where an id is elsewhere) keeps the shapes fixed, so a CUDA graph can
    hold it, and repeated indices cannot race: the sum is the same in any order."""
    if ban.shape[-1] == 0:
        return
    col = ban - shard.start
    held = (col >= 0) & (col < shard.size)
    add = torch.zeros(ban.shape, dtype=logits.dtype, device=logits.device).masked_fill_(held, float("-inf"))
    logits.scatter_add_(1, col.clamp(0, shard.width - 1), add)


def _gather(part: torch.Tensor, shard: VocabShard) -> torch.Tensor:
    """Every rank's `part` [R, C] -> [world, R, C], in rank order."""
    out = part.new_empty((shard.world * part.shape[0], part.shape[1]))
    _ALL_GATHER(out, part.contiguous(), group=shard.group)
    return out.view(shard.world, part.shape[0], part.shape[1])


def shard_argmax(logits: torch.Tensor, shard: VocabShard) -> torch.Tensor:
    """The token id of every row's largest logit over the whole vocabulary -> int64 [R]."""
    if shard.world == 1:
        return logits.argmax(dim=-1)
    value, index = logits.max(dim=-1)  # the first maximum of the shard
    # fp64 holds an fp32 value and a token id exactly: one all-gather carries both.
    best = _gather(torch.stack([value.double(), (index + shard.start).double()], dim=-1), shard)
    winner = best[..., 0].argmax(dim=0, keepdim=True)  # [1, R]: the first (lowest) rank of the maximum
    return best[..., 1].gather(0, winner).squeeze(0).long()


def kth_largest(logits: torch.Tensor, ks: torch.Tensor, kmax: int, shard: VocabShard) -> torch.Tensor:
    """Every row's ks[r]-th largest logit over the whole vocabulary -> [R, 1]; kmax >= max(ks)."""
    top = logits.topk(min(kmax, logits.shape[-1]), dim=-1).values  # [R, k] descending
    if shard.world > 1:
        every = _gather(top, shard).permute(1, 0, 2).reshape(top.shape[0], -1)  # [R, world * k]
        top = every.topk(kmax, dim=-1).values
    return top.gather(-1, ks[:, None] - 1)


def gather_logits(logits: torch.Tensor, shard: VocabShard) -> torch.Tensor:
    """The whole rows [R, vocab] from every rank's shard [R, width]."""
    if shard.world == 1:
        return logits
    every = _gather(logits, shard).permute(1, 0, 2).reshape(logits.shape[0], -1)
    return every[:, : shard.vocab]
