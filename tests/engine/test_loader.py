"""Checkpoint loading: shards, dtypes, tied heads, the local hub cache and every error path."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from loopls.engine.model.cache import KVCache
from loopls.engine.model.checkpoint import CheckpointError
from loopls.engine.model.loader import load_checkpoint
from loopls.engine.model.tiny import create_tiny
from loopls.engine.model.transformer import CausalLM


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    return create_tiny(tmp_path_factory.mktemp("ref") / "m", arch="iquestloopcoder", seed=2)


def _logits(folder: Path, **kw) -> torch.Tensor:
    lm = load_checkpoint(folder, **kw)
    ids = torch.arange(3, 23)[None]
    return lm.model(ids, KVCache.for_model(lm.model, 1, 20, lm.dtype))


@torch.inference_mode()
@pytest.mark.parametrize("arch", ["iquestloopcoder", "qwen2"])
def test_sharded_checkpoint_equals_single_file(tmp_path: Path, arch: str) -> None:
    single = create_tiny(tmp_path / "one", arch=arch, seed=2)
    sharded = create_tiny(tmp_path / "three", arch=arch, seed=2, shards=3)
    index = json.loads((sharded / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) == 3
    assert not (sharded / "model.safetensors").exists()
    assert torch.equal(_logits(single), _logits(sharded))


@torch.inference_mode()
@pytest.mark.parametrize("stored", ["bfloat16", "float16"])
def test_half_precision_checkpoints(tmp_path: Path, stored: str) -> None:
    folder = create_tiny(tmp_path / stored, arch="iquestcoder", overrides={"torch_dtype": stored})
    raw = load_file(str(folder / "model.safetensors"))
    assert {t.dtype for t in raw.values()} == {getattr(torch, stored)}
    on_cpu = load_checkpoint(folder)  # CPU default: computed in fp32
    assert on_cpu.dtype == torch.float32
    name = "model.layers.0.mlp.up_proj.weight"
    assert torch.equal(on_cpu.model.state_dict()[name], raw[name].float())
    kept = load_checkpoint(folder, dtype=stored)
    assert {p.dtype for p in kept.model.parameters()} == {getattr(torch, stored)}
    assert kept.model(torch.arange(5)[None], KVCache.for_model(kept.model, 1, 5, kept.dtype)).isfinite().all()


def test_weights_are_real_tensors_and_tied_head_shares_the_embedding(tmp_path: Path) -> None:
    lm = load_checkpoint(create_tiny(tmp_path / "q", arch="qwen2"))
    assert all(p.device.type == "cpu" for p in lm.model.parameters())  # nothing left on meta
    assert lm.model.output_weight().data_ptr() == lm.model.model.embed_tokens.weight.data_ptr()
    assert not hasattr(lm.model, "lm_head")


def test_unknown_dtype_is_refused(reference: Path) -> None:
    with pytest.raises(CheckpointError, match="unknown dtype 'float8'"):
        load_checkpoint(reference, dtype="float8")


def _copy(reference: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(reference, tmp_path / "broken"))


def _rewrite(folder: Path, change) -> Path:
    path = folder / "model.safetensors"
    state = load_file(str(path))
    change(state)
    save_file(state, str(path), metadata={"format": "pt"})
    return path


def test_missing_weight(reference: Path, tmp_path: Path) -> None:
    folder = _copy(reference, tmp_path)
    _rewrite(folder, lambda s: s.pop("model.gate_projections.1.bias"))
    with pytest.raises(CheckpointError, match=r"missing weight model\.gate_projections\.1\.bias") as info:
        load_checkpoint(folder)
    assert str(folder) in str(info.value)


def test_unexpected_weight(reference: Path, tmp_path: Path) -> None:
    folder = _copy(reference, tmp_path)
    path = _rewrite(folder, lambda s: s.update({"model.layers.0.self_attn.q_norm.weight": torch.ones(16)}))
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(folder)
    assert str(info.value).startswith(f"{path}: unexpected weight model.layers.0.self_attn.q_norm.weight")


def test_shape_mismatch(reference: Path, tmp_path: Path) -> None:
    folder = _copy(reference, tmp_path)
    name = "model.layers.1.mlp.down_proj.weight"
    path = _rewrite(folder, lambda s: s.update({name: torch.zeros(64, 100)}))
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(folder)
    assert str(info.value) == f"{path}: weight {name} has shape (64, 100), config.json implies (64, 176)"


def test_config_disagreeing_with_the_weights(reference: Path, tmp_path: Path) -> None:
    folder = _copy(reference, tmp_path)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["intermediate_size"] = 160
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=r"model\.safetensors: weight model\.layers\.0\.mlp\.gate_proj\.weight has shape \(176, 64\), config\.json implies \(160, 64\)"):
        load_checkpoint(folder)


@pytest.mark.parametrize("keep", [10, 200, -1000])
def test_truncated_file(reference: Path, tmp_path: Path, keep: int) -> None:
    folder = _copy(reference, tmp_path)
    path = folder / "model.safetensors"
    os.truncate(path, keep if keep > 0 else path.stat().st_size + keep)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(folder)
    text = str(info.value)
    assert text.startswith(f"{path}: ") and "truncated" in text
    if keep < 0:  # the header is intact: the message names the first tensor cut off
        assert re.search(r"tensor model\.\S+ ends at byte \d+ but the file holds \d+ bytes of data$", text)


def test_truncated_shard_is_named(tmp_path: Path) -> None:
    folder = create_tiny(tmp_path / "s", arch="iquestcoder", shards=2)
    shard = folder / "model-00002-of-00002.safetensors"
    os.truncate(shard, shard.stat().st_size - 64)
    with pytest.raises(CheckpointError, match=rf"^{shard}: truncated safetensors file: tensor \S+ ends at byte"):
        load_checkpoint(folder)


def test_missing_shard_and_bad_index(tmp_path: Path) -> None:
    folder = create_tiny(tmp_path / "s", arch="iquestcoder", shards=2)
    (folder / "model-00001-of-00002.safetensors").unlink()
    with pytest.raises(CheckpointError, match="model-00001-of-00002.safetensors: shard named in model.safetensors.index.json is missing"):
        load_checkpoint(folder)
    (folder / "model.safetensors.index.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="unreadable index"):
        load_checkpoint(folder)


def test_tensor_in_two_shards(tmp_path: Path) -> None:
    folder = create_tiny(tmp_path / "s", arch="iquestcoder", shards=2)
    first = load_file(str(folder / "model-00001-of-00002.safetensors"))
    name = sorted(first)[0]
    second = folder / "model-00002-of-00002.safetensors"
    state = load_file(str(second)) | {name: first[name]}
    save_file(state, str(second))
    with pytest.raises(CheckpointError, match=rf"{second}: tensor {name} also appears in model-00001-of-00002.safetensors"):
        load_checkpoint(folder)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"model_type": "mistral"}, "unknown model_type 'mistral'"),
        ({"rope_scaling": {"rope_type": "yarn", "factor": 4.0}}, "rope scaling 'yarn' is not supported"),
        ({"hidden_act": "gelu"}, "hidden_act 'gelu' is not supported"),
        ({"mlp_bias": True}, "mlp_bias is not supported"),
        ({"layer_types": ["full_attention", "sliding_attention"]}, r"layer_types \['sliding_attention'\] are not supported"),
        ({"num_key_value_heads": 3}, "not a multiple of num_key_value_heads"),
    ],
)
def test_config_errors_name_the_file(reference: Path, tmp_path: Path, change: dict, message: str) -> None:
    folder = _copy(reference, tmp_path)
    cfg = json.loads((folder / "config.json").read_text()) | change
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=message) as info:
        load_checkpoint(folder)
    assert str(info.value).startswith(str(folder / "config.json"))


def _fake_hub_cache(root: Path, reference: Path, repo: str, commit: str) -> Path:
    """The layout huggingface_hub writes: blobs, snapshots of symlinks, refs/main."""
    repo_dir = root / ("models--" + repo.replace("/", "--"))
    snapshot = repo_dir / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (repo_dir / "blobs").mkdir()
    for i, f in enumerate(sorted(reference.iterdir())):
        blob = repo_dir / "blobs" / f"blob{i}"
        shutil.copy(f, blob)
        (snapshot / f.name).symlink_to(os.path.relpath(blob, snapshot))
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(commit)
    return snapshot


@torch.inference_mode()
def test_hub_id_resolves_from_the_local_cache(reference: Path, tmp_path: Path, monkeypatch) -> None:
    commit = "0123456789abcdef0123456789abcdef01234567"
    snapshot = _fake_hub_cache(tmp_path / "hub", reference, "IQuestLab/Tiny-Loop", commit)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)  # so that "IQuestLab/Tiny-Loop" is not a relative folder
    lm = load_checkpoint("IQuestLab/Tiny-Loop")
    assert lm.path == snapshot
    assert torch.equal(_logits(snapshot), _logits(reference))
    assert load_checkpoint(f"IQuestLab/Tiny-Loop@{commit}").path == snapshot
    with pytest.raises(CheckpointError, match="no refs/v2"):
        load_checkpoint("IQuestLab/Tiny-Loop@v2")
    with pytest.raises(CheckpointError, match="IQuestLab/Other: not a folder and not in the local Hugging Face cache"):
        load_checkpoint("IQuestLab/Other")


def test_hub_cache_from_hf_home(reference: Path, tmp_path: Path, monkeypatch) -> None:
    commit = "f" * 40
    _fake_hub_cache(tmp_path / "home" / "hub", reference, "owner/model", commit)
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    assert load_checkpoint("owner/model").path.name == commit


def test_hub_cache_with_a_partial_download(reference: Path, tmp_path: Path, monkeypatch) -> None:
    snapshot = _fake_hub_cache(tmp_path / "hub", reference, "owner/partial", "a" * 40)
    (snapshot / "config.json").unlink()
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CheckpointError, match=rf"owner/partial: snapshot {snapshot} is missing or has no config.json"):
        load_checkpoint("owner/partial")
    with pytest.raises(CheckpointError, match="not a hub id of the form owner/name"):
        load_checkpoint("owner/bad name")


def test_loading_builds_the_model_without_random_init(reference: Path) -> None:
    """The loader builds the model on meta and assigns the checkpoint's tensors: no random
    init runs (on meta, nn.Embedding's normal_ imported torch._dynamo, seconds of every load),
    while a model built off meta, as training builds it, is still initialised."""
    script = ("import sys; from loopls.engine.model.loader import load_checkpoint; "
              f"load_checkpoint({str(reference)!r}); print('torch._dynamo' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "False"
    config = load_checkpoint(reference).config
    weight = CausalLM(config).model.embed_tokens.weight
    assert 0.5 < weight.std().item() < 1.5  # nn.Embedding's N(0, 1)
