"""The IQuest Loop model against an independent naive reference written here.

The reference follows the semantics of vLLM's iquest_loopcoder (see docs/engine.md): shared
layers run loop_num times; loop 0 is causal attention; a later loop attends globally over
loop 0's K/V and locally over its own K/V in a window of W keys including the current token,
mixed per head by sigmoid(w_h . q_h + b_h) on the post-RoPE query; final norm once. It uses
dense masks, explicit softmax, per-head loops and no cache, and reads the weights straight
from the safetensors file — nothing from loopls.engine.model.transformer.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from safetensors.torch import load_file

from loopls.engine.model.cache import KVCache
from loopls.engine.model.loader import load_checkpoint
from loopls.engine.model.transformer import CausalLM
from loopls.engine.model.tiny import create_tiny

ATOL = 1e-4


def _rms(x: torch.Tensor, w: torch.Tensor, eps: float) -> torch.Tensor:
    return w * (x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps))


def _rope(x: torch.Tensor, theta: float) -> torch.Tensor:
    """x [T, D]: rotate pairs (i, i + D/2) by angle pos * theta^(-2i/D)."""
    t, d = x.shape
    out = x.clone()
    for i in range(d // 2):
        freq = theta ** (-2 * i / d)
        for p in range(t):
            c, s = math.cos(p * freq), math.sin(p * freq)
            a, b = x[p, i].item(), x[p, i + d // 2].item()
            out[p, i], out[p, i + d // 2] = a * c - b * s, b * c + a * s
    return out


def _softmax_attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, visible) -> torch.Tensor:
    """q, k, v [T, D]; visible(i, j) -> bool. Dense scores, explicit mask."""
    t = q.shape[0]
    scores = (q @ k.T) / math.sqrt(q.shape[1])
    mask = torch.tensor([[visible(i, j) for j in range(t)] for i in range(t)])
    scores = scores.masked_fill(~mask, float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


def naive_forward(w: dict[str, torch.Tensor], cfg, ids: list[int]) -> torch.Tensor:
    """Logits [T, vocab] for one sequence, recomputing everything."""
    heads, kvh, d, eps = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim, cfg.rms_norm_eps
    group, window = heads // kvh, cfg.loop_window_size
    h = w["model.embed_tokens.weight"][ids]
    loop0_kv: dict[int, tuple[list, list]] = {}
    for loop in range(cfg.loop_num):
        for n in range(cfg.num_hidden_layers):
            p = f"model.layers.{n}."
            x = _rms(h, w[p + "input_layernorm.weight"], eps)
            q = x @ w[p + "self_attn.q_proj.weight"].T
            k = x @ w[p + "self_attn.k_proj.weight"].T
            v = x @ w[p + "self_attn.v_proj.weight"].T
            qs = [_rope(q[:, i * d : (i + 1) * d], cfg.rope_theta) for i in range(heads)]
            ks = [_rope(k[:, j * d : (j + 1) * d], cfg.rope_theta) for j in range(kvh)]
            vs = [v[:, j * d : (j + 1) * d] for j in range(kvh)]
            if loop == 0:
                loop0_kv[n] = (ks, vs)
            outs = []
            for i in range(heads):
                kv = i // group
                k0, v0 = loop0_kv[n][0][kv], loop0_kv[n][1][kv]
                glob = _softmax_attend(qs[i], k0, v0, lambda a, b: b <= a)
                if loop == 0:
                    outs.append(glob)
                    continue
                local = _softmax_attend(qs[i], ks[kv], vs[kv], lambda a, b: b <= a and a - b < window)
                gw = w[f"model.gate_projections.{n}.weight"][i]
                gb = w[f"model.gate_projections.{n}.bias"][i]
                g = torch.sigmoid(qs[i] @ gw + gb)[:, None]
                outs.append(g * glob + (1 - g) * local)
            h = h + torch.cat(outs, dim=1) @ w[p + "self_attn.o_proj.weight"].T
            y = _rms(h, w[p + "post_attention_layernorm.weight"], eps)
            gate, up = y @ w[p + "mlp.gate_proj.weight"].T, y @ w[p + "mlp.up_proj.weight"].T
            h = h + (torch.nn.functional.silu(gate) * up) @ w[p + "mlp.down_proj.weight"].T
    return _rms(h, w["model.norm.weight"], eps) @ w["lm_head.weight"].T


@pytest.fixture(scope="module", params=[(2, 4), (3, 6)], ids=["loops2-w4", "loops3-w6"])
def loop_lm(request, tmp_path_factory):
    loops, window = request.param
    folder = create_tiny(tmp_path_factory.mktemp("loop"), arch="iquestloopcoder", seed=3,
                         overrides={"loop_num": loops, "loop_window_size": window})
    return load_checkpoint(folder), load_file(str(folder / "model.safetensors"))


def _ids(lm, n: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, lm.config.vocab_size, (1, n), generator=torch.Generator().manual_seed(seed))


def _full(lm, ids: torch.Tensor) -> torch.Tensor:
    return lm.model(ids, KVCache(lm.config, ids.shape[0], ids.shape[1], torch.float32))


@torch.inference_mode()
def test_full_forward_equals_naive_reference(loop_lm) -> None:
    lm, weights = loop_lm
    n = 3 * lm.config.loop_window_size + 2
    ids = _ids(lm, n)
    ref = naive_forward(weights, lm.config, ids[0].tolist())
    ours = _full(lm, ids)[0]
    assert (ours - ref).abs().max().item() <= ATOL


@torch.inference_mode()
@pytest.mark.parametrize("chunks", [[1] * 40, [5] + [1] * 35, [7, 3, 1, 9, 2, 1, 1, 16]], ids=["tokens", "prefill+decode", "chunks"])
def test_incremental_decode_equals_full_forward(loop_lm, chunks: list[int]) -> None:
    lm, _ = loop_lm
    n = sum(chunks)
    assert n >= 3 * lm.config.loop_window_size
    ids = _ids(lm, n, seed=2)
    cache = KVCache(lm.config, 1, n, torch.float32)
    steps, at = [], 0
    for size in chunks:
        steps.append(lm.model(ids[:, at : at + size], cache))
        at += size
    assert (torch.cat(steps, 1) - _full(lm, ids)).abs().max().item() <= ATOL
    # The later loops keep a window of W-1 tokens per layer, never the whole sequence.
    assert all(w[0].shape[1] == lm.config.loop_window_size - 1 for loop in cache.windows for w in loop)  # [B, T, KVH, D]


@torch.inference_mode()
def test_gate_is_wired(loop_lm) -> None:
    lm, weights = loop_lm
    ids = _ids(lm, 2 * lm.config.loop_window_size, seed=4)
    before = _full(lm, ids)
    gate = lm.model.model.gate_projections[1]
    saved = gate.weight.clone()
    try:
        gate.weight[0].add_(1.0)
        after = _full(lm, ids)
        changed = dict(weights)
        changed["model.gate_projections.1.weight"] = gate.weight.clone()
        ref = naive_forward(changed, lm.config, ids[0].tolist())
    finally:
        gate.weight.copy_(saved)
    assert (after - before).abs().max().item() > 1e-3
    assert (after[0] - ref).abs().max().item() <= ATOL


@torch.inference_mode()
def test_loop_num_one_is_the_plain_model(loop_lm) -> None:
    lm, _ = loop_lm
    cfg = lm.config
    state = lm.model.state_dict()
    one_loop = CausalLM(dataclasses.replace(cfg, loop_num=1)).eval()
    one_loop.load_state_dict(state)
    plain = CausalLM(dataclasses.replace(cfg, model_type="iquestcoder", loop_num=1, loop_window_size=0)).eval()
    plain.load_state_dict({k: t for k, t in state.items() if "gate_projections" not in k})
    ids = _ids(lm, 20, seed=5)
    a = one_loop(ids, KVCache(one_loop.config, 1, 20, torch.float32))
    b = plain(ids, KVCache(plain.config, 1, 20, torch.float32))
    assert torch.equal(a, b)
    # and the second loop does change the output, so the comparison above is not vacuous
    assert (a - _full(lm, ids)).abs().max().item() > 1e-3


@torch.inference_mode()
def test_window_memory_is_bounded(loop_lm) -> None:
    lm, _ = loop_lm
    cfg = lm.config
    cache = KVCache(cfg, 1, 200, torch.float32)
    lm.model(_ids(lm, 150, seed=6), cache)
    per_token = 2 * cfg.num_key_value_heads * cfg.head_dim * 4  # K and V, fp32
    expected = (cfg.loop_num - 1) * cfg.num_hidden_layers * (cfg.loop_window_size - 1) * per_token
    assert cache.window_bytes() == expected


@torch.inference_mode()
def test_reference_tells_a_window_of_w_from_w_plus_one(loop_lm) -> None:
    """The comparison above is sharp enough to catch the W+1-key window some ports use."""
    lm, weights = loop_lm
    wider = dataclasses.replace(lm.config, loop_window_size=lm.config.loop_window_size + 1)
    ids = _ids(lm, 2 * lm.config.loop_window_size + 3, seed=8)
    ref_wider = naive_forward(weights, wider, ids[0].tolist())
    assert (_full(lm, ids)[0] - ref_wider).abs().max().item() > 100 * ATOL


def test_loop_config_without_loop_num_runs_two_loops(loop_lm) -> None:
    """As vLLM and the published configuration code: a missing loop_num means 2."""
    from loopls.engine.model.config import ModelConfig

    raw = loop_lm[0].config.to_dict()
    del raw["loop_num"]
    assert ModelConfig.from_dict(raw).loop_num == 2
    plain = dict(raw, model_type="llama")
    del plain["loop_window_size"]
    assert ModelConfig.from_dict(plain).loop_num == 1
