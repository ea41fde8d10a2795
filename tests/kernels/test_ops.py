"""The entry point the engine calls: dispatch (reference on CPU, Triton on CUDA), argument
errors, and CUDA-graph capture of a decode step."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch
from kernel_cases import ATTENTION_DTYPES, BOUNDS, make_paged_case, rel_err

from loopls.kernels import ops, reference

gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_cpu_tensors_take_the_reference_without_importing_triton() -> None:
    # In a fresh process, as the engine runs on a CPU machine: every op gives the reference's
    # bits and triton is never imported.
    code = textwrap.dedent(
        """
        import sys, torch
        from loopls.kernels import ops, reference as ref
        g = torch.Generator().manual_seed(0)
        r = lambda *s: torch.randn(*s, generator=g)
        kc, vc, wk, wv = r(8, 16, 2, 64), r(8, 16, 2, 64), r(8, 16, 2, 64), r(8, 16, 2, 64)
        bt = torch.tensor([[3, 5, 1], [0, 7, 2]], dtype=torch.int32)
        cu = torch.tensor([0, 3, 4], dtype=torch.int32)
        sl = torch.tensor([40, 20], dtype=torch.int32)
        q, gw, gb = r(4, 10, 64), r(10, 64), r(10)
        same = [
            torch.equal(ops.paged_attention(q, kc, vc, bt, cu, sl, 0.1, 7), ref.paged_attention(q, kc, vc, bt, cu, sl, 0.1, 7)),
            torch.equal(ops.loop_attention(q, kc, vc, bt, wk, wv, bt, cu, sl, 0.1, 5, gw, gb),
                        ref.loop_attention(q, kc, vc, bt, wk, wv, bt, cu, sl, 0.1, 5, gw, gb)),
            torch.equal(ops.rms_norm(q, gw[0], 1e-5), ref.rms_norm(q, gw[0], 1e-5)),
            all(torch.equal(a, b) for a, b in zip(ops.add_rms_norm(q, q, gw[0], 1e-5), ref.add_rms_norm(q, q, gw[0], 1e-5))),
            torch.equal(ops.apply_rope(q, gw[:4], gw[4:8]), ref.apply_rope(q, gw[:4], gw[4:8])),
        ]
        k2, v2 = kc.clone(), vc.clone()
        ops.write_kv(kc, vc, q[:, :2], q[:, 2:4], torch.tensor([5, -1, 40, 127]))
        ref.write_kv(k2, v2, q[:, :2], q[:, 2:4], torch.tensor([5, -1, 40, 127]))
        same.append(torch.equal(kc, k2) and torch.equal(vc, v2))
        print(same, "triton" in sys.modules)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["[True,", "True,", "True,", "True,", "True,", "True]", "False"]


def _case(**over):
    args = dict(
        q=torch.randn(4, 10, 64), k_cache=torch.randn(8, 16, 2, 64), v_cache=torch.randn(8, 16, 2, 64),
        block_tables=torch.zeros(2, 3, dtype=torch.int32), cu_seqlens_q=torch.tensor([0, 3, 4], dtype=torch.int32),
        seq_lens=torch.tensor([40, 20], dtype=torch.int32), scale=0.125,
    )
    args.update(over)
    return args


@pytest.mark.parametrize(
    "over,message",
    [
        (dict(q=torch.randn(4, 640)), r"q must be \[N, H, D\], got shape \(4, 640\)"),
        (dict(q=torch.randn(4, 10, 64, dtype=torch.float64)), "q must be float16, bfloat16 or float32, got torch.float64"),
        (dict(q=torch.randn(4, 64, 10).transpose(1, 2)), "q must be contiguous in its last dimension"),
        (dict(k_cache=torch.randn(8, 16, 2, 32)), "k_cache has head_dim 32, the queries 64"),
        (dict(v_cache=torch.randn(8, 16, 3, 64)), "v_cache has 3 KV heads, expected 2"),
        (dict(k_cache=torch.randn(8, 16, 2, 64).half()), "q, k_cache and v_cache must share a dtype"),
        (dict(k_cache=torch.randn(8, 16, 3, 64), v_cache=torch.randn(8, 16, 3, 64)), "10 query heads are not a multiple of 3 KV heads"),
        (dict(block_tables=torch.zeros(2, 3)), "block_tables must be int32 or int64, got torch.float32"),
        (dict(seq_lens=torch.tensor([40], dtype=torch.int32)), "block_tables has 2 rows: cu_seqlens_q needs 3 entries"),
        (dict(window=-4), "window must be an int >= 0"),
        (dict(out=torch.empty(4, 10, 32)), r"out must be a \(4, 10, 64\) torch.float32 tensor"),
    ],
)
def test_attention_argument_errors(over, message) -> None:
    with pytest.raises(ValueError, match=message):
        ops.paged_attention(**_case(**over))


def test_loop_and_row_argument_errors() -> None:
    c = _case()
    loop = dict(
        q=c["q"], k_cache=c["k_cache"], v_cache=c["v_cache"], block_tables=c["block_tables"],
        wk_cache=c["k_cache"], wv_cache=c["v_cache"], window_block_tables=c["block_tables"],
        cu_seqlens_q=c["cu_seqlens_q"], seq_lens=c["seq_lens"], scale=0.1, window=8,
        gate_weight=torch.randn(10, 64), gate_bias=torch.randn(10),
    )
    with pytest.raises(ValueError, match=r"gate_weight \(10, 32\) / gate_bias \(10,\) do not match 10 heads of dim 64"):
        ops.loop_attention(**{**loop, "gate_weight": torch.randn(10, 32)})
    with pytest.raises(ValueError, match="LoopAttention needs a window W >= 1, got 0"):
        ops.loop_attention(**{**loop, "window": 0})
    with pytest.raises(ValueError, match="weight has 63 entries, x rows 64"):
        ops.rms_norm(torch.randn(3, 64), torch.randn(63), 1e-5)
    with pytest.raises(ValueError, match=r"residual \(3, 32\) torch.float32 must match x \(3, 64\)"):
        ops.add_rms_norm(torch.randn(3, 64), torch.randn(3, 32), torch.randn(64), 1e-5)
    with pytest.raises(ValueError, match=r"cos must be \[N, D\] = \[3, 64\], got \(3, 32\)"):
        ops.apply_rope(torch.randn(3, 4, 64), torch.randn(3, 32), torch.randn(3, 64))
    with pytest.raises(ValueError, match="slots has 2 entries for 3 new tokens"):
        ops.write_kv(c["k_cache"], c["v_cache"], torch.randn(3, 2, 64), torch.randn(3, 2, 64), torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="slots must be int32 or int64"):
        ops.write_kv(c["k_cache"], c["v_cache"], torch.randn(2, 2, 64), torch.randn(2, 2, 64), torch.tensor([1.0, 2.0]))


@gpu
def test_cuda_tensors_take_the_triton_kernels(kernels, generator) -> None:
    c = make_paged_case([300, 9], [1, 1], heads=40, kv_heads=8, head_dim=128, block_size=16,
                        dtype=torch.bfloat16, device=torch.device("cuda"), generator=generator)
    got = ops.paged_attention(*c.args(), num_splits=4)
    assert torch.equal(got, kernels.paged_attention.paged_attention(*c.args(), num_splits=4))
    assert rel_err(got, reference.paged_attention(*c.fp32().args())) < BOUNDS[torch.bfloat16]


@gpu
@pytest.mark.parametrize("loop", [False, True], ids=["paged", "loop"])
def test_decode_step_replays_in_a_cuda_graph(generator, loop) -> None:
    dev = torch.device("cuda")
    dtype = ATTENTION_DTYPES[0]
    kw = dict(heads=40, kv_heads=8, head_dim=128, block_size=16, dtype=dtype, device=dev, generator=generator)
    c = make_paged_case([900, 37, 4000], [1, 1, 1], **kw)
    # freed (-1) window blocks end 30 keys early: the replays below shorten sequences by up to 30
    w = make_paged_case([900, 37, 4000], [1, 1, 1], window=64 + 30, **kw)
    gate_w = torch.randn(40, 128, device=dev, dtype=dtype) * 0.05
    gate_b = torch.randn(40, device=dev, dtype=dtype)
    splits = ops.attention_splits(3, 8, 4096, dev)
    ws = torch.empty(ops.attention_workspace_numel(3, 40, 128, splits, loop=loop), device=dev)
    out = torch.empty_like(c.q)
    lens = c.seq_lens.clone()

    def step():
        if loop:
            ops.loop_attention(c.q, c.k_cache, c.v_cache, c.block_tables, w.k_cache, w.v_cache,
                               w.block_tables, c.cu_seqlens_q, lens, c.scale, 64, gate_w, gate_b,
                               out=out, num_splits=splits, workspace=ws)
        else:
            ops.paged_attention(*c.args()[:5], lens, c.scale, out=out, num_splits=splits, workspace=ws)

    step()  # compile outside the capture
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    for shrink in (0, 5, 30):  # replay with new sequence lengths written in place
        lens.copy_(c.seq_lens - shrink)
        out.fill_(float("nan"))
        graph.replay()
        if loop:
            ref = reference.loop_attention(
                c.q.float(), c.k_cache.float(), c.v_cache.float(), c.block_tables, w.k_cache.float(),
                w.v_cache.float(), w.block_tables, c.cu_seqlens_q, lens, c.scale, 64, gate_w.float(), gate_b.float())
        else:
            ref = reference.paged_attention(c.q.float(), c.k_cache.float(), c.v_cache.float(), c.block_tables,
                                            c.cu_seqlens_q, lens, c.scale)
        assert rel_err(out, ref) < BOUNDS[dtype]
