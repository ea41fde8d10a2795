"""The building blocks of the decoder: norm, rotary embedding, attention projections, MLP, the
Loop gate, and the decoder layer whose forward is written once for every K/V store. Norms,
RoPE and attention run through `loopls.kernels.ops` (Triton on a GPU, the plain-torch
reference otherwise and under autograd).

Tokens are packed: hidden states are `[N, hidden]` for the N new tokens of every sequence of
a forward, so the projections and MLPs run once for the whole batch. Module and parameter
names follow the Hugging Face checkpoints so that the loader maps weights by name.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from loopls.kernels import ops

from .attention import KVStore, attend
from .config import ModelConfig


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Normalises in fp32 as the reference implementations do, then scales in the model dtype.
        return ops.rms_norm(x, self.weight, self.eps)


def rope_cos_sin(
    positions: torch.Tensor, head_dim: int, theta: float, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables for `positions` [N] -> each [N, head_dim]."""
    inv_freq = 1.0 / (
        theta ** (torch.arange(0, head_dim, 2, device=positions.device, dtype=torch.float32) / head_dim)
    )
    freqs = positions.float()[:, None] * inv_freq[None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos().to(dtype), emb.sin().to(dtype)


class Attention(nn.Module):
    """q/k/v and output projections; the attention itself is `attention.attend`."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        # Read by tensor parallelism (parallel.py), which narrows them to a rank's heads.
        self.num_heads = config.num_attention_heads
        self.num_kv_heads = config.num_key_value_heads
        self.head_dim = config.head_dim
        hidden, d, bias = config.hidden_size, config.head_dim, config.attention_bias
        self.q_proj = nn.Linear(hidden, self.num_heads * d, bias=bias)
        self.k_proj = nn.Linear(hidden, self.num_kv_heads * d, bias=bias)
        self.v_proj = nn.Linear(hidden, self.num_kv_heads * d, bias=bias)
        self.o_proj = nn.Linear(self.num_heads * d, hidden, bias=config.o_proj_bias)
        self.qkv_proj: FusedLinear | None = None  # set by `fuse`

    def qkv(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x [N, hidden] -> post-RoPE q [N, H, D], k [N, KVH, D] and v [N, KVH, D]."""
        n, d = x.shape[0], self.head_dim
        if self.qkv_proj is not None:
            h, qk = self.num_heads, self.num_heads + self.num_kv_heads
            out = self.qkv_proj(x).view(n, -1, d)  # [N, H + 2 KVH, D]
            rotated = ops.apply_rope(out[:, :qk], cos, sin)  # q and k side by side: one launch
            return rotated[:, :h], rotated[:, h:], out[:, qk:]
        q = self.q_proj(x).view(n, -1, d)
        k = self.k_proj(x).view(n, -1, d)
        v = self.v_proj(x).view(n, -1, d)
        return ops.apply_rope(q, cos, sin), ops.apply_rope(k, cos, sin), v

    def fuse(self) -> None:
        """q, k and v from one GEMM (idempotent; after any tensor-parallel split)."""
        if self.qkv_proj is None:
            self.qkv_proj = FusedLinear(self.q_proj, self.k_proj, self.v_proj)
            del self.q_proj, self.k_proj, self.v_proj


class MLP(nn.Module):
    """gate_proj, up_proj and down_proj, named as in the checkpoints.

    On a GPU, gate's and up's weights are placed side by side in one allocation as they are
    loaded (`place`): the decode GEMM then runs them as one product over the pair, one weight
    stream instead of two (kernels/decode_gemm.py). Fusing them after loading instead copied
    every pair and left the old blocks as holes the caching allocator could not give back
    (2-8 GiB less K/V pool per GPU). The parameters stay two, views of the pair, so names,
    state dicts and tensor-parallel slicing are unchanged; on a CPU nothing is placed."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.up_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)
        self.gemm = None  # a DecodeGemm (use_decode_gemm): gate, up and the activation in one kernel
        self.gate_up: nn.Module | None = None  # gate and up as one product, [N, 2 I] (int8.quantize_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(self.activation(x))

    def place(self, attr: str, value: torch.Tensor) -> None:
        """Set gate_proj's or up_proj's weight (`attr`) to `value`, inside the [2 I, H] pair
        whose other half the other projection holds (or will hold: the first one allocates it)."""
        mine, other = (self.gate_proj, self.up_proj) if attr == "gate_proj" else (self.up_proj, self.gate_proj)
        half = 0 if attr == "gate_proj" else 1
        rows, cols = value.shape
        held = other.weight
        offset = (1 - half) * rows * cols  # where the other half starts in the pair
        if (
            held.device == value.device and held.dtype == value.dtype and held.shape == value.shape
            and held.is_contiguous() and held.storage_offset() == offset
            and held.untyped_storage().nbytes() == 2 * value.numel() * value.element_size()
        ):
            pair = held.as_strided((2 * rows, cols), (cols, 1), 0)
        else:
            pair = torch.empty(2 * rows, cols, dtype=value.dtype, device=value.device)
        pair[half * rows : (half + 1) * rows].copy_(value)
        mine.weight = nn.Parameter(pair[half * rows : (half + 1) * rows], requires_grad=False)

    def activation(self, x: torch.Tensor) -> torch.Tensor:
        """silu(gate_proj(x)) * up_proj(x): down_proj's input."""
        if self.gemm is not None:
            return self.gemm.gated(x, self.gate_proj.weight, self.up_proj.weight)
        if self.gate_up is not None:
            gate, up = self.gate_up(x).chunk(2, dim=-1)
            return F.silu(gate) * up
        return F.silu(self.gate_proj(x)) * self.up_proj(x)


class FusedLinear(nn.Module):
    """Linear layers over the same input as one GEMM: [N, in] -> their outputs side by side.

    A GPU decode step streams every weight once per token, and a small matrix streams below
    the copy bandwidth (its kernel's ramp-up and tail weigh more): one kernel over q, k and v
    stacked instead of three, the smallest of them a few MB at tensor-parallel widths.
    gate and up are not fused here but placed side by side as they load (MLP.place).

    One part is kept as it is (its weight shared, not copied): a plain linear layer whose GEMM
    a `DecodeGemm` may choose (use_decode_gemm)."""

    def __init__(self, *parts: nn.Linear) -> None:
        super().__init__()
        weight = parts[0].weight if len(parts) == 1 else torch.cat([p.weight for p in parts])
        self.weight = nn.Parameter(weight, requires_grad=False)
        self.bias = None
        if any(p.bias is not None for p in parts):
            bias = [p.bias if p.bias is not None else p.weight.new_zeros(p.weight.shape[0]) for p in parts]
            self.bias = nn.Parameter(torch.cat(bias), requires_grad=False)
        self.gemm = None  # a DecodeGemm (use_decode_gemm); None: cuBLAS through F.linear

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gemm is None or self.bias is not None:
            return F.linear(x, self.weight, self.bias)  # [N, sum of the parts' outputs]
        return self.gemm.linear(x, self.weight)


def fuse_projections(model: nn.Module) -> None:
    """Fuse every decoder layer's q/k/v projections (see FusedLinear)."""
    for module in [m for m in model.modules() if isinstance(m, Attention)]:
        module.fuse()
        if next(module.parameters()).is_cuda:
            # Hand the replaced weights' memory back at once where whole blocks are free.
            torch.cuda.empty_cache()


def use_decode_gemm(model: nn.Module, gemm) -> None:
    """Route every decoder layer's projections through `gemm` (kernels.decode_gemm.DecodeGemm:
    per shape, cuBLAS or the Triton skinny GEMM, whichever it timed faster), after
    `fuse_projections`. Row-parallel projections (parallel.py) take it through their `gemm`."""
    for layer in [m for m in model.modules() if isinstance(m, DecoderLayer)]:
        attn, mlp = layer.self_attn, layer.mlp
        attn.fuse()
        attn.qkv_proj.gemm = gemm
        if isinstance(attn.o_proj, nn.Linear):
            attn.o_proj = FusedLinear(attn.o_proj)
        if isinstance(mlp.down_proj, nn.Linear):
            mlp.down_proj = FusedLinear(mlp.down_proj)
        attn.o_proj.gemm = mlp.down_proj.gemm = mlp.gemm = gemm


def decode_gemm_of(model: nn.Module):
    """The DecodeGemm the model's layers use (None: cuBLAS); it keeps its timings across the
    executors built over the model."""
    layer = next((m for m in model.modules() if isinstance(m, DecoderLayer)), None)
    return None if layer is None else layer.mlp.gemm


class LoopGate(nn.Module):
    """Per-head gate of a Loop layer: g_h = sigmoid(w_h . q_h + b_h) (applied by the kernels)."""

    def __init__(self, num_heads: int, head_dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(num_heads, head_dim))
        self.bias = nn.Parameter(torch.zeros(num_heads))


class DecoderLayer(nn.Module):
    """Pre-norm layer: h += o_proj(attn(rms(h))); h += mlp(rms(h)).

    Each residual add is fused with the norm after it: one pass over the hidden state instead
    of two, twice per layer. So a layer takes its input already normalised and ends with the
    next norm (the next layer's first, or the model's final one): it returns that norm's
    output and the residual. Under tensor parallelism the all-reduces of o_proj and down_proj
    each feed straight into such an add+norm, which the `symm-fused` all-reduce does in the
    same kernel as the sum (collectives.py).
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.self_attn = Attention(config)
        self.mlp = MLP(config)
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.scale = config.head_dim ** -0.5
        self.window = config.loop_window_size

    def forward(
        self,
        x: torch.Tensor,  # [N, hidden]: input_layernorm(residual)
        residual: torch.Tensor,  # [N, hidden] the running residual stream
        cos: torch.Tensor,  # [N, D]
        sin: torch.Tensor,
        store: KVStore,
        index: int,  # this layer's number (its caches in the store)
        loop: int,
        gate: LoopGate | None,  # loops >= 1 of a Loop model
        next_norm: RMSNorm,  # the next layer's input_layernorm, or the final norm
    ) -> tuple[torch.Tensor, torch.Tensor]:  # (next_norm(new residual), new residual)
        n = x.shape[0]
        q, k, v = self.self_attn.qkv(x, cos, sin)
        o = attend(store, index, loop, q, k, v, self.scale, self.window, gate)
        x, residual = project_add_norm(self.self_attn.o_proj, o.reshape(n, -1), residual, self.post_attention_layernorm)
        return project_add_norm(self.mlp.down_proj, self.mlp.activation(x), residual, next_norm)


def project_add_norm(
    proj: nn.Module, x: torch.Tensor, residual: torch.Tensor, norm: RMSNorm
) -> tuple[torch.Tensor, torch.Tensor]:
    """h = residual + proj(x) -> (norm(h), h): in one kernel with the all-reduce of a
    row-parallel projection where its variant fuses them, else the projection then ops.add_rms_norm."""
    fused = getattr(proj, "add_rms_norm", None)
    got = fused(x, residual, norm.weight, norm.eps) if fused is not None else None
    return got if got is not None else ops.add_rms_norm(proj(x), residual, norm.weight, norm.eps)
