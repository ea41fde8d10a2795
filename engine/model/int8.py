"""Int8 weights for the CPU: weight-only, one scale per output channel.

A CPU decode step of a small model multiplies one row (or a few) by every weight matrix: the
step reads all of the weights, so it costs what reading them costs. In int8 they are a
quarter of the fp32 bytes. Each matrix is quantized once, as the checkpoint loads: a row's
scale is its largest magnitude over 127, rounded up to a bf16 number (the kernel takes bf16
scales), and its values are rounded to the nearest multiple of the scale. The product is
`torch.ops.aten._weight_int8pack_mm` (torch's CPU kernel for this layout): activations enter
it in bf16 and come out in bf16, widened back to the model's dtype. Norms, attention, the
residual stream and the embedding lookup stay in fp32; with tied embeddings the LM head gets
an int8 copy of the embedding and the lookup keeps the exact rows.

The kernel widens int8 in registers; its fp32-activation path is not vectorised (tens of times
slower), hence the bf16 activations. It is a matrix-vector kernel: from a few rows on (a
prompt's chunk) it is slower than fp32's GEMM (2-3 times at 128 rows), so products of
`PREFILL_ROWS` rows or more run over a dequantized fp32 copy of the same weights, on the same
bf16-rounded activations, rounded to bf16 as the kernel's output is: the same values up to the
order of the fp32 sums (a last-bit difference in fp32 that turns into one bf16 step in about
0.02% of the outputs), as fp32's GEMM itself differs between 1 row and many in the last bits.
Results are deterministic but not fp32's: greedy tokens can differ from the fp32 model's
(docs/benchmarks.md measures how much).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

_QMAX = 127
# From this many rows on, a product runs over the dequantized fp32 copy (fp32's GEMM), below
# it over the int8 kernel (measured crossover on the default model's shapes: 8-16 rows).
PREFILL_ROWS = 16


def quantize_rows(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """weight [out, in] -> (int8 [out, in], bf16 scales [out]) with weight ~ int8 * scale.

    The scale is rounded up to a bf16 number, so the int8 values are computed against the
    scale the kernel uses and stay within [-127, 127]; an all-zero row gets scale 1."""
    w = weight.detach().float()
    amax = w.abs().amax(dim=1)
    scale = torch.where(amax > 0, amax / _QMAX, torch.ones_like(amax))
    scale_bf16 = scale.to(torch.bfloat16)
    below = scale_bf16.float() < scale  # rounded down: take the next bf16 number up
    up = torch.nextafter(scale_bf16, torch.full_like(scale_bf16, float("inf")))
    scale_bf16 = torch.where(below, up, scale_bf16)
    q = torch.round(w / scale_bf16.float()[:, None]).clamp_(-_QMAX, _QMAX).to(torch.int8)
    return q.contiguous(), scale_bf16


class Int8Linear(nn.Module):
    """A linear layer over int8 weights and per-output-channel scales (`quantize_rows`); its
    output is `out_dtype` (the model's, or bf16 where the next product takes it as it is)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None,
                 out_dtype: torch.dtype | None = None) -> None:
        super().__init__()
        if weight.device.type != "cpu":
            raise ValueError("int8 weights run on the CPU only")
        q, scale = quantize_rows(weight)
        self.register_buffer("weight", q)
        self.register_buffer("scale", scale)
        self.register_buffer("dense", q.float() * scale.float()[:, None])  # for products of many rows
        self.register_buffer("bias", None if bias is None else bias.detach().float().clone())
        self.in_features, self.out_features = weight.shape[1], weight.shape[0]
        self.out_dtype = out_dtype or weight.dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features).to(torch.bfloat16)
        if rows.shape[0] < PREFILL_ROWS:
            out = torch.ops.aten._weight_int8pack_mm(rows, self.weight, self.scale)
        else:
            out = F.linear(rows.float(), self.dense).to(torch.bfloat16)
        if self.bias is not None:
            out = out + self.bias
        return out.to(self.out_dtype).view(*x.shape[:-1], self.out_features)

    def dequantized(self) -> torch.Tensor:
        """The fp32 weight this layer multiplies by: int8 values times their row's scale."""
        return self.dense


def quantize_model(model: nn.Module) -> None:
    """A loaded CausalLM's matrices in int8, in place, on the CPU (the fp32 ones are replaced by
    the int8 layers, which keep a dequantized copy for prompt chunks): per decoder layer q, k and v as one product and gate and up as another (fewer, larger
    calls: each call and each cast of its input costs a few microseconds, as much as a small
    matrix's product), o and down alone; gate and up's output stays bf16, which is what down
    takes. `model.output_head` becomes an Int8Linear over the output weight, which the LM
    head's product then uses (the fp32 matrix stays for `output_weight()`: a tied head's is
    the embedding, whose lookup stays exact)."""
    dtype = model.output_weight().dtype
    for layer in model.model.layers:
        attn, mlp = layer.self_attn, layer.mlp
        attn.fuse()
        attn.qkv_proj = Int8Linear(attn.qkv_proj.weight, attn.qkv_proj.bias)
        attn.o_proj = Int8Linear(attn.o_proj.weight, attn.o_proj.bias)
        pair = torch.cat([mlp.gate_proj.weight, mlp.up_proj.weight])
        mlp.gate_up = Int8Linear(pair, out_dtype=torch.bfloat16)
        del mlp.gate_proj, mlp.up_proj
        mlp.down_proj = Int8Linear(mlp.down_proj.weight, out_dtype=dtype)
    model.output_head = Int8Linear(model.output_weight())
