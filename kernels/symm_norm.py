"""One kernel for what follows a row-parallel projection on a tensor-parallel GPU rank: sum the
ranks' partial products from symmetric memory, add the residual, RMS-normalise.

Unfused that is two launches per projection (the one-shot all-reduce, then the add+norm of
norms.py), 56 pairs per decode step of a 28-layer model. Here one program per row:

1. a barrier with every peer (the partials are all written): the program sets its slot on
   each peer's signal pad (0 -> 1, release) and waits for each peer's slot on its own pad
   (1 -> 0, acquire), at system scope over NVLink; the slots are those PyTorch's own
   symmetric-memory kernels use (row r, peer p: r * world + p), and a finished barrier leaves
   them at 0 for the next user;
2. the row of every rank's partial, summed in rank order in fp32 (so every rank gets the same
   bits) and rounded to the model dtype as an all-reduce's output is; then, rounded as
   norms.py rounds, h = residual + sum (the new residual) and rms_norm(h) * weight.

There is no second barrier (PyTorch's one-shot kernel has one, so that no peer still reads a
buffer its owner overwrites next): the caller alternates two regions of the buffer
(`offset`), o_proj's and down_proj's, so a region is written again only after the call in
between, whose barrier every rank passes only once every rank has finished the call before
it (a rank starts a kernel after its previous kernel ended).

Rows beyond the signal pad's slots are not handled here (the caller keeps to
collectives.FUSED_SLOTS). The kernel's name has "all_reduce" in it so that step profiles
(engine/serving/profiling.py) count it, add and norm included, as all-reduce time.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _barrier(signal_pads, row, rank, WORLD: tl.constexpr):
    """Every peer's program for `row` has reached this point too (see the module docstring)."""
    own = tl.load(signal_pads + rank).to(tl.pointer_type(tl.int32))
    for p in tl.static_range(WORLD):
        if p != rank:  # a rank needs no signal from itself
            peer = tl.load(signal_pads + p).to(tl.pointer_type(tl.int32))
            while tl.atomic_cas(peer + row * WORLD + rank, 0, 1, sem="release", scope="sys") != 0:
                pass
    for p in tl.static_range(WORLD):
        if p != rank:
            while tl.atomic_cas(own + row * WORLD + p, 1, 0, sem="acquire", scope="sys") != 1:
                pass


# The rank is not specialised (Triton makes an argument equal to 1 a constant): every rank
# runs the same compiled kernel.
@triton.jit(do_not_specialize=["rank"])
def _all_reduce_add_norm_kernel(
    buffer_ptrs,  # int64 [WORLD]: every rank's symmetric buffer (rows x C elements at `offset`)
    signal_pads,  # int64 [WORLD]: every rank's signal pad
    rank,
    offset,  # elements into each buffer
    out_ptr,  # [rows, C] normalised
    h_ptr,  # [rows, C] residual + sum: the new residual
    res_ptr,  # [rows, C] residual
    w_ptr,  # [C]
    n_cols, stride_rn,
    eps,
    WORLD: tl.constexpr,
    BLOCK_C: tl.constexpr,
):
    row = tl.program_id(0)
    cols = tl.arange(0, BLOCK_C)
    mask = cols < n_cols
    dtype = out_ptr.dtype.element_ty
    _barrier(signal_pads, row, rank, WORLD)
    total = tl.zeros((BLOCK_C,), dtype=tl.float32)
    for p in tl.static_range(WORLD):
        base = tl.load(buffer_ptrs + p).to(tl.pointer_type(dtype))
        # Not cached: the peer's rows change between calls, and over NVLink.
        total += tl.load(base + offset + row * n_cols + cols, mask=mask, other=0.0, cache_modifier=".cv").to(tl.float32)
    x = total.to(dtype)
    r = tl.load(res_ptr + row * stride_rn + cols, mask=mask, other=0.0)
    h = (x.to(tl.float32) + r.to(tl.float32)).to(dtype)
    tl.store(h_ptr + row * n_cols + cols, h, mask=mask)
    hf = h.to(tl.float32)
    inv = tl.rsqrt(tl.sum(hf * hf, 0) / n_cols + eps)
    y = (hf * inv).to(dtype)
    w = tl.load(w_ptr + cols, mask=mask, other=0.0)
    tl.store(out_ptr + row * n_cols + cols, (y.to(tl.float32) * w.to(tl.float32)).to(dtype), mask=mask)


def reduce_add_rms_norm(
    buffer_ptrs: torch.Tensor,  # int64 [world] on the device
    signal_pads: torch.Tensor,  # int64 [world] on the device
    rank: int,
    world: int,
    offset: int,  # elements into every buffer where the [rows, C] partials start
    rows: int,
    residual: torch.Tensor,  # [rows, C], unit stride along C
    weight: torch.Tensor,  # [C], the model dtype
    eps: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(rms_norm(residual + the sum over ranks of their partials), residual + that sum)."""
    c = residual.shape[-1]
    out = torch.empty(rows, c, dtype=residual.dtype, device=residual.device)
    h = torch.empty_like(out)
    block = triton.next_power_of_2(c)
    _all_reduce_add_norm_kernel[(rows,)](
        buffer_ptrs, signal_pads, rank, offset, out, h, residual, weight,
        c, residual.stride(0), eps,
        WORLD=world, BLOCK_C=block, num_warps=min(16, max(1, block // 256)),
    )
    return out, h
