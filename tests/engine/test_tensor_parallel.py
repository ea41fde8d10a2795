"""Tensor parallelism: 2 gloo ranks on CPU give the logits and greedy tokens of 1 rank."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from loopls.engine.model.cache import KVCache
from loopls.engine.model.config import ModelConfig
from loopls.engine.model.generate import generate
from loopls.engine.model.loader import load_checkpoint
from loopls.engine.model.parallel import TensorParallelError, check_tp_size
from loopls.engine.model.sampling_params import SamplingParams
from loopls.engine.model.tiny import create_tiny

CASES = {
    "iquestcoder": ("iquestcoder", {}),
    "qwen2": ("qwen2", {}),
    # biases on q, k, v (split) and o (added once, after the all-reduce)
    "llama-bias": ("llama", {"attention_bias": True, "num_key_value_heads": 4}),
    "iquestloopcoder": ("iquestloopcoder", {"loop_window_size": 4}),
    # one KV head for two ranks: the head is replicated
    "iquestloopcoder-kv1": ("iquestloopcoder", {"loop_window_size": 4, "num_key_value_heads": 1}),
}
GREEDY = SamplingParams(max_tokens=12, min_tokens=12)
SAMPLED = SamplingParams(max_tokens=12, min_tokens=12, temperature=1.0, top_k=50, seed=11)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(lm, ids: torch.Tensor) -> dict:
    cache = KVCache.for_model(lm.model, 1, ids.shape[1], torch.float32, lm.device)
    logits = lm.model(ids.to(lm.device), cache).cpu()
    prompt = ids[0, :10].tolist()
    return {
        "logits": logits[0].tolist(),
        "greedy": generate(lm, prompt, GREEDY).token_ids,
        "sampled": generate(lm, prompt, SAMPLED).token_ids,
        "kv_heads": cache.k.shape[3],  # [layers, blocks, block_size, KVH, D]
    }


def _ids(vocab: int) -> torch.Tensor:
    return torch.randint(0, vocab, (1, 24), generator=torch.Generator().manual_seed(0))


def _worker(rank: int, world: int, port: int, folders: dict[str, str], out: str, backend: str) -> None:
    import os

    import torch.distributed as dist

    from loopls.engine.model.loader import load_tensor_parallel
    from loopls.engine.model.parallel import Shard, apply_tensor_parallel

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    device = torch.device("cuda", rank) if backend == "nccl" else torch.device("cpu")
    if backend == "nccl":
        torch.cuda.set_device(device)
    dist.init_process_group(backend, rank=rank, world_size=world)
    try:
        results = {}
        with torch.inference_mode():
            for name, folder in folders.items():
                lm = load_tensor_parallel(folder, Shard(rank, world), device=device)
                if name == "iquestloopcoder":
                    # Sampling without a seed must still agree: rank 0's token is broadcast.
                    torch.manual_seed(rank)
                    unseeded = SamplingParams(max_tokens=8, min_tokens=8, temperature=1.0)
                    results["unseeded"] = generate(lm, lm.tokenizer.encode("x = 1\n"), unseeded).token_ids
                results[name] = _run(lm, _ids(lm.config.vocab_size))
                # the in-memory transform of a whole model keeps exactly the slices read from disk
                whole = load_checkpoint(folder, device=device).model
                split = apply_tensor_parallel(whole, Shard(rank, world)).state_dict()
                results[name]["same_as_transform"] = all(
                    torch.equal(t, split[k]) for k, t in lm.model.state_dict().items())
                results[name]["numel"] = sum(t.numel() for t in split.values())
        Path(out, f"rank{rank}.json").write_text(json.dumps(results))
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("tp")
    return {name: str(create_tiny(root / name, arch=arch, seed=5, overrides=over))
            for name, (arch, over) in CASES.items()}


@pytest.fixture(scope="module")
def two_ranks(folders, tmp_path_factory) -> list[dict]:
    out = tmp_path_factory.mktemp("tp-out")
    return _spawn(folders, out, "gloo")


def _spawn(folders: dict[str, str], out: Path, backend: str) -> list[dict]:
    mp.start_processes(_worker, args=(2, _free_port(), folders, str(out), backend), nprocs=2, join=True,
                       start_method="spawn")
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]


@pytest.mark.timeout(180)
@pytest.mark.parametrize("name", sorted(CASES))
@torch.inference_mode()
def test_two_ranks_match_one_rank(folders, two_ranks, name: str) -> None:
    _check_against_one_rank(folders, two_ranks, name, "cpu")


def _check_against_one_rank(folders, two_ranks: list[dict], name: str, device: str) -> None:
    lm = load_checkpoint(folders[name], device=device)
    single = _run(lm, _ids(lm.config.vocab_size))
    for rank in two_ranks:
        got = rank[name]
        diff = (torch.tensor(got["logits"]) - torch.tensor(single["logits"])).abs().max().item()
        assert diff <= 1e-5
        assert got["greedy"] == single["greedy"]
        assert got["sampled"] == single["sampled"]
    # each rank really holds half the heads (or one replicated KV head) and less than the whole
    kv = lm.config.num_key_value_heads
    assert two_ranks[0][name]["kv_heads"] == max(kv // 2, 1)
    whole = sum(t.numel() for t in lm.model.state_dict().values())
    assert all(r[name]["same_as_transform"] and r[name]["numel"] < whole for r in two_ranks)


@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA devices")
@torch.inference_mode()
def test_two_nccl_ranks_match_one_gpu(folders, tmp_path: Path) -> None:
    ranks = _spawn(folders, tmp_path, "nccl")
    for name in sorted(CASES):
        _check_against_one_rank(folders, ranks, name, "cuda:0")


def test_unseeded_sampling_agrees_across_ranks(two_ranks) -> None:
    assert two_ranks[0]["unseeded"] == two_ranks[1]["unseeded"]


def _config(heads: int, kv: int, ffn: int = 64) -> ModelConfig:
    return ModelConfig(model_type="llama", vocab_size=32, hidden_size=heads * 8, intermediate_size=ffn,
                       num_hidden_layers=1, num_attention_heads=heads, num_key_value_heads=kv,
                       head_dim=8, max_position_embeddings=64)


def test_valid_sizes_for_the_iquest_shape() -> None:
    config = _config(40, 8, 27648)
    for world in (1, 2, 4, 8):
        check_tp_size(config, world)
    with pytest.raises(TensorParallelError, match=r"does not divide num_attention_heads 40; valid sizes for this model: 1, 2, 4, 8$"):
        check_tp_size(config, 3)
    with pytest.raises(TensorParallelError, match="neither divides nor is a multiple of num_key_value_heads 8"):
        check_tp_size(config, 20)


def test_invalid_sizes_are_refused_with_a_clear_error() -> None:
    with pytest.raises(TensorParallelError, match="does not divide intermediate_size 30"):
        check_tp_size(_config(4, 2, ffn=30), 4)
    with pytest.raises(TensorParallelError, match="must be >= 1"):
        check_tp_size(_config(4, 2), 0)
    from loopls.engine.model.parallel import Shard

    with pytest.raises(TensorParallelError, match="rank 2 is outside a world of 2"):
        Shard(2, 2)
    check_tp_size(_config(4, 1), 4)  # 1 KV head replicated on 4 ranks is fine


def test_transform_shapes_and_refuses_a_second_split(folders) -> None:
    from loopls.engine.model.parallel import Shard, apply_tensor_parallel

    model = load_checkpoint(folders["iquestloopcoder-kv1"]).model
    apply_tensor_parallel(model, Shard(1, 2))
    attn = model.model.layers[0].self_attn
    assert (attn.num_heads, attn.num_kv_heads) == (2, 1)
    assert attn.q_proj.weight.shape == (2 * 16, 64) and attn.k_proj.weight.shape == (16, 64)
    assert attn.o_proj.weight.shape == (64, 2 * 16)
    assert model.model.layers[0].mlp.down_proj.weight.shape == (64, 88)
    assert model.model.gate_projections[0].weight.shape == (2, 16)
    with pytest.raises(TensorParallelError, match="already split"):
        apply_tensor_parallel(model, Shard(1, 2))
    with pytest.raises(TensorParallelError, match="does not divide num_attention_heads 4"):
        apply_tensor_parallel(load_checkpoint(folders["qwen2"]).model, Shard(0, 3))
