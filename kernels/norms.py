"""Triton RMSNorm, optionally fused with the residual add that precedes it.

The reference (reference.rms_norm) is half a dozen element-wise and reduction launches per
call, each reading or writing the whole row; this is one launch that reads x (and the
residual) once. Rounding follows the reference: the residual sum is rounded to the model
dtype, the normalised row is cast to the model dtype before the weight multiplies it.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _rms_norm_kernel(
    out_ptr,  # [N, C] normalised rows
    h_ptr,  # [N, C] residual + x (HAS_RESIDUAL)
    x_ptr,  # [N, C]
    res_ptr,  # [N, C] residual (HAS_RESIDUAL)
    w_ptr,  # [C]
    stride_on, stride_hn, stride_xn, stride_rn,
    n_cols,
    eps,
    HAS_RESIDUAL: tl.constexpr,
    BLOCK_C: tl.constexpr,  # n_cols rounded up to a power of two
):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK_C)
    mask = cols < n_cols
    x = tl.load(x_ptr + row * stride_xn + cols, mask=mask, other=0.0)
    if HAS_RESIDUAL:
        r = tl.load(res_ptr + row * stride_rn + cols, mask=mask, other=0.0)
        x = (x.to(tl.float32) + r.to(tl.float32)).to(x_ptr.dtype.element_ty)
        tl.store(h_ptr + row * stride_hn + cols, x, mask=mask)
    xf = x.to(tl.float32)
    inv = tl.rsqrt(tl.sum(xf * xf, 0) / n_cols + eps)
    y = (xf * inv).to(x_ptr.dtype.element_ty)
    w = tl.load(w_ptr + cols, mask=mask, other=0.0)
    out = y.to(tl.float32) * w.to(tl.float32)
    tl.store(out_ptr + row * stride_on + cols, out.to(out_ptr.dtype.element_ty), mask=mask)


def _launch(x, residual, weight, eps):
    c = x.shape[-1]
    x2 = x.reshape(-1, c)
    out = torch.empty(x2.shape, dtype=torch.promote_types(weight.dtype, x.dtype), device=x.device)
    h = torch.empty_like(x2) if residual is not None else out
    r2 = residual.reshape(-1, c) if residual is not None else x2
    block = triton.next_power_of_2(c)
    if x2.shape[0] > 0:
        _rms_norm_kernel[(x2.shape[0],)](
            out, h, x2, r2, weight,
            out.stride(0), h.stride(0), x2.stride(0), r2.stride(0),
            c, eps,
            HAS_RESIDUAL=residual is not None, BLOCK_C=block,
            num_warps=min(16, max(1, block // 256)),
        )
    return out.view(x.shape), h.view(x.shape)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """x [..., C], weight [C] -> [..., C] (inputs already checked by ops.py)."""
    return _launch(x, None, weight, eps)[0]


def add_rms_norm(
    x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(rms_norm(residual + x), residual + x) in one launch (inputs already checked by ops.py)."""
    return _launch(x, residual, weight, eps)
