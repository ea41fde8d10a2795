"""The kernels' one entry point for the engine: checked arguments, then Triton or the reference.

CUDA tensors go to the Triton kernels when `triton` imports. CPU tensors take the plain-torch
reference (reference.py), whose K/V write and paged and Loop attention come in the CPU path's
version (cpu.py: the reference's bits in fewer ops); a GPU machine without Triton takes the
reference. All have the same signatures and semantics, and all check their arguments first
(checks.py) and fail with a ValueError naming the argument.

Attention extras (keyword-only, accepted by the reference too):
- `out`: a preallocated result; rows of no sequence are left as they are.
- `max_seq_len`: the longest sequence the call can see (default: the block table's capacity);
  it sizes the split count of a decode step.
- `num_splits`: keys of each query block are split this many ways and merged (flash decoding).
  Default: 1 for prefill; for a decode step (one query per sequence) enough to fill the GPU.
- `workspace`: a float32 buffer of at least `attention_workspace_numel(...)` elements for the
  split partials (allocated per call if omitted).
A decode step is CUDA-graph capturable when the caller fixes `num_splits` (or `max_seq_len`)
and passes `out` and `workspace`: launch grids depend on shapes and these numbers only.
"""

from __future__ import annotations

import functools
from types import ModuleType

import torch

from . import cpu, reference
from .checks import check_attention, check_gate, check_norm, check_rope, check_write_kv
from .launch import decode_splits, workspace_numel


@functools.lru_cache(maxsize=1)
def _triton_kernels() -> dict[str, ModuleType] | None:
    """The Triton kernel modules, imported on the first CUDA call (cached), or None.

    Imported lazily: importing triton costs about a second, which a CPU-only process (the
    language server's default) should not pay, and the modules must only be compiled where a
    GPU is there to run them."""
    try:
        import triton  # noqa: F401  (only whether it imports)
    except ImportError:
        return None
    from . import kv_write, loop_attention, norms, paged_attention, rope

    return {
        "kv_write": kv_write, "paged_attention": paged_attention, "loop_attention": loop_attention,
        "norms": norms, "rope": rope,
    }


def triton_available() -> bool:
    """Whether the Triton path can run (triton imports and CUDA is there)."""
    return torch.cuda.is_available() and _triton_kernels() is not None


def _kernel(name: str, *tensors: torch.Tensor) -> ModuleType | None:
    """The Triton module for `name`, or None for the reference: off CUDA, and under autograd
    (the kernels are inference-only; the training forward runs the same modules with grads)."""
    if not tensors[0].is_cuda:
        return None
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        return None
    kernels = _triton_kernels()
    return None if kernels is None else kernels[name]


def _plain_attention(q: torch.Tensor) -> ModuleType:
    """The plain-torch attention for `q`'s device: the CPU path on a CPU, else the reference."""
    return cpu if q.device.type == "cpu" else reference


def write_kv(
    k_cache: torch.Tensor,  # [num_blocks, block_size, KVH, D]
    v_cache: torch.Tensor,
    k: torch.Tensor,  # [N, KVH, D]
    v: torch.Tensor,
    slots: torch.Tensor,  # [N] int; < 0: padding, skipped
) -> None:
    """Write the new tokens' K/V into their cache slots (in place)."""
    check_write_kv(k_cache, v_cache, k, v, slots)
    impl = _kernel("kv_write", k, v) or (cpu if slots.device.type == "cpu" else reference)
    impl.write_kv(k_cache, v_cache, k, v, slots)


def paged_attention(
    q: torch.Tensor,  # [N, H, D]
    k_cache: torch.Tensor,  # [num_blocks, block_size, KVH, D]
    v_cache: torch.Tensor,
    block_tables: torch.Tensor,  # [B, max_blocks]
    cu_seqlens_q: torch.Tensor,  # [B + 1]
    seq_lens: torch.Tensor,  # [B]
    scale: float,
    window: int = 0,
    *,
    out: torch.Tensor | None = None,
    max_seq_len: int | None = None,
    num_splits: int | None = None,
    workspace: torch.Tensor | None = None,
) -> torch.Tensor:  # [N, H, D]
    """Causal (optionally sliding-window) attention over a paged K/V cache (see reference.py)."""
    check_attention(q, k_cache, v_cache, block_tables, cu_seqlens_q, seq_lens, window, out)
    impl = _kernel("paged_attention", q, k_cache, v_cache) or _plain_attention(q)
    return impl.paged_attention(
        q, k_cache, v_cache, block_tables, cu_seqlens_q, seq_lens, scale, window,
        out=out, max_seq_len=max_seq_len, num_splits=num_splits, workspace=workspace,
    )


def loop_attention(
    q: torch.Tensor,  # [N, H, D] post-RoPE queries of a loop >= 1
    k_cache: torch.Tensor,  # loop 0's cache
    v_cache: torch.Tensor,
    block_tables: torch.Tensor,
    wk_cache: torch.Tensor,  # this loop's window cache
    wv_cache: torch.Tensor,
    window_block_tables: torch.Tensor,
    cu_seqlens_q: torch.Tensor,
    seq_lens: torch.Tensor,
    scale: float,
    window: int,
    gate_weight: torch.Tensor,  # [H, D]
    gate_bias: torch.Tensor,  # [H]
    *,
    out: torch.Tensor | None = None,
    max_seq_len: int | None = None,
    num_splits: int | None = None,
    workspace: torch.Tensor | None = None,
) -> torch.Tensor:  # [N, H, D]
    """Fused LoopAttention: g * global + (1 - g) * local (see reference.loop_attention)."""
    check_attention(q, k_cache, v_cache, block_tables, cu_seqlens_q, seq_lens, window, out)
    check_attention(q, wk_cache, wv_cache, window_block_tables, cu_seqlens_q, seq_lens, window, None)
    if window < 1:
        raise ValueError(f"LoopAttention needs a window W >= 1, got {window}")
    check_gate(gate_weight, gate_bias, q)
    impl = (_kernel("loop_attention", q, k_cache, v_cache, wk_cache, wv_cache, gate_weight, gate_bias)
            or _plain_attention(q))
    return impl.loop_attention(
        q, k_cache, v_cache, block_tables, wk_cache, wv_cache, window_block_tables,
        cu_seqlens_q, seq_lens, scale, window, gate_weight, gate_bias,
        out=out, max_seq_len=max_seq_len, num_splits=num_splits, workspace=workspace,
    )


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """RMSNorm over the last dim (normalise in fp32, cast, scale in the model dtype)."""
    check_norm(x, weight)
    impl = _kernel("norms", x, weight) or reference
    return impl.rms_norm(x, weight, eps)


def add_rms_norm(
    x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """h = residual + x -> (rms_norm(h), h), in one launch on the GPU."""
    check_norm(x, weight, residual)
    impl = _kernel("norms", x, residual, weight) or reference
    return impl.add_rms_norm(x, residual, weight, eps)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate-half RoPE: x [N, H, D], cos/sin [N, D] -> [N, H, D]."""
    check_rope(x, cos, sin)
    impl = _kernel("rope", x, cos, sin) or reference
    return impl.apply_rope(x, cos, sin)


def attention_splits(num_seqs: int, num_kv_heads: int, max_seq_len: int, device: torch.device | str) -> int:
    """The split count a decode step of this size gets by default (for sizing a workspace)."""
    return decode_splits(num_seqs, num_kv_heads, max_seq_len, torch.device(device))


def attention_workspace_numel(
    num_tokens: int, num_heads: int, head_dim: int, num_splits: int, *, loop: bool = False
) -> int:
    """float32 elements of the `workspace` of a split attention call (0 when num_splits == 1)."""
    return workspace_numel(num_tokens, num_heads, head_dim, num_splits, sets=2 if loop else 1)
