"""Int8 CPU weights (`BackendConfig.cpu_weights` "int8", engine/model/int8.py): every linear
layer and the LM head quantized per output channel as the checkpoint loads. The rows and their
bf16 scales, the layer's product, the shipped model's logits against fp32's (within stated
bounds), greedy tokens that do not depend on the engine's state or process, and the
configurations it refuses."""

from __future__ import annotations

import asyncio

import pytest
import torch
import torch.nn.functional as F

from loopls.engine.backends import BackendConfig, BackendError, load_backend
from loopls.engine.model.cache import KVCache
from loopls.engine.model.int8 import PREFILL_ROWS, Int8Linear, quantize_rows
from loopls.engine.model.checkpoint import CheckpointError
from loopls.engine.model.loader import load_checkpoint
from loopls.engine.model.models import resolve_model_name
from loopls.engine.model.parallel import Shard
from loopls.engine.model.sampling_params import SamplingParams
from loopls.engine.model.tiny import ARCHES, create_tiny

# Written for this test: a prompt of a few hundred tokens in the shipped model's language.
SOURCE = '''"""A small inventory of parts, kept in a CSV file."""

import csv
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Part:
    name: str
    count: int = 0
    tags: list[str] = field(default_factory=list)

    def restock(self, amount: int) -> None:
        if amount < 0:
            raise ValueError("amount must not be negative")
        self.count += amount


class Inventory:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.parts: dict[str, Part] = {}

    def load(self) -> None:
        with self.path.open(newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                part = Part(row["name"], int(row["count"]), row["tags"].split(";"))
                self.parts[part.name] = part

    def save(self) -> None:
        with self.path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=["name", "count", "tags"])
            writer.writeheader()
            for part in self.parts.values():
                writer.writerow({"name": part.name, "count": part.count, "tags": ";".join(part.tags)})

    def low(self, threshold: int = 5) -> list[Part]:
        return sorted((p for p in self.parts.values() if p.count < threshold), key=lambda p: p.count)

    def total(self) -> int:
'''


def test_rows_are_quantized_against_the_bf16_scales_the_kernel_uses() -> None:
    w = torch.randn(6, 40, generator=torch.Generator().manual_seed(0))
    w[1] = 0.0
    w[2] *= 1e4
    w[3, 7] = -3.0  # the row's largest magnitude is negative
    q, scale = quantize_rows(w)
    assert q.dtype == torch.int8 and scale.dtype == torch.bfloat16 and q.shape == w.shape
    assert int(q.abs().max()) == 127 and bool((q[1] == 0).all())
    amax = w.abs().amax(1)
    nonzero = amax > 0
    assert bool((scale.float()[nonzero] * 127 >= amax[nonzero]).all())  # rounded up: no value clips
    assert bool((scale.float()[nonzero] * 127 <= amax[nonzero] * 1.01).all())  # and not by more than bf16's step
    assert int(q[3, 7]) == -127
    error = (q.float() * scale.float()[:, None] - w).abs()
    assert bool((error <= scale.float()[:, None] / 2 * (1 + 1e-6)).all())


def test_an_int8_layer_is_the_product_over_its_dequantized_weights() -> None:
    gen = torch.Generator().manual_seed(1)
    w, bias, x = torch.randn(96, 64, generator=gen), torch.randn(96, generator=gen), torch.randn(2, 3, 64, generator=gen)
    layer = Int8Linear(w, bias)
    got = layer(x)
    assert got.shape == (2, 3, 96) and got.dtype == torch.float32
    want = F.linear(x.bfloat16().float(), layer.dequantized()) + bias  # the kernel's input is bf16
    torch.testing.assert_close(got, want, rtol=1e-2, atol=2e-2)  # its output is rounded to bf16
    assert Int8Linear(w, out_dtype=torch.bfloat16)(x).dtype == torch.bfloat16


def test_many_rows_give_what_the_int8_kernel_gives_row_by_row() -> None:
    """From PREFILL_ROWS rows on the product runs over the dequantized copy: the same values
    as the kernel's, row by row, up to one bf16 step in a few outputs (the order of the sums)."""
    gen = torch.Generator().manual_seed(2)
    layer = Int8Linear(torch.randn(512, 384, generator=gen), out_dtype=torch.bfloat16)
    x = torch.randn(4 * PREFILL_ROWS, 384, generator=gen)
    many = layer(x)
    one = torch.cat([layer(row[None]) for row in x])
    differ = many != one
    assert float(differ.float().mean()) < 0.005
    step = one.float().abs() * 2 ** -7  # one bf16 step at that magnitude, at most
    assert bool(((many.float() - one.float()).abs() <= step + 1e-30)[differ].all())


@pytest.fixture(scope="module")
def shipped():
    name = resolve_model_name(None)
    return load_checkpoint(name, device="cpu"), load_checkpoint(name, device="cpu", int8_weights=True)


def _logits(lm, ids: list[int]) -> torch.Tensor:
    with torch.inference_mode():
        return lm.model(torch.tensor([ids]), KVCache(lm.config, 1, len(ids) + 8, torch.float32))[0]


def test_the_shipped_models_logits_stay_close_to_fp32(shipped) -> None:
    fp32, int8 = shipped
    ids = fp32.tokenizer.encode(SOURCE)
    assert len(ids) > 300
    a, b = _logits(fp32, ids), _logits(int8, ids)
    log_a, log_b = a.log_softmax(-1), b.log_softmax(-1)
    kl = (log_a.exp() * (log_a - log_b)).sum(-1)  # per position, nats
    # Bounds for this prompt (measured here: mean KL 0.001 nats, max 0.02, top-1 agreement 99%, max |diff| 0.7).
    assert float(kl.mean()) < 0.01 and float(kl.max()) < 0.1
    assert float((a.argmax(-1) == b.argmax(-1)).float().mean()) >= 0.9
    assert float((a - b).abs().max()) < 2.0
    assert not torch.equal(a, b)  # it is another computation, not fp32's


def test_int8_replaces_every_matrix_and_keeps_the_embedding_exact(shipped) -> None:
    fp32, int8 = shipped
    layers = int8.model.model.layers
    assert not [n for n, m in layers.named_modules() if isinstance(m, torch.nn.Linear)]
    assert not [n for n, p in layers.named_parameters() if p.dim() == 2]  # no fp32 matrix left there
    assert isinstance(int8.model.output_head, Int8Linear) and int8.model.output_head.out_features == int8.config.vocab_size
    assert torch.equal(int8.model.model.embed_tokens.weight, fp32.model.model.embed_tokens.weight)
    assert fp32.model.output_head is None  # fp32 keeps its own path


def _greedy(config: BackendConfig, prompts: list[list[int]]) -> list[list[int]]:
    backend = load_backend(config)
    try:
        async def run() -> list[list[int]]:
            return [(await backend.submit(p, SamplingParams(max_tokens=24, min_tokens=24)).result()).token_ids
                    for p in prompts]
        return asyncio.run(run())
    finally:
        backend.shutdown()


@pytest.mark.timeout(240)
def test_greedy_tokens_of_the_shipped_model_are_deterministic(shipped) -> None:
    """The same tokens from a fresh engine, from its prefix cache (the prompt asked again, its
    K/V computed by the first request) and from a second engine."""
    ids = shipped[0].tokenizer.encode(SOURCE)
    config = BackendConfig(model=None, device="cpu", context_tokens=1024, cpu_weights="int8")
    first, again = _greedy(config, [ids, ids])
    assert first == again and len(first) == 24 and len(set(first)) > 1
    assert _greedy(config, [ids]) == [first]


@pytest.mark.parametrize("arch", ARCHES)
def test_every_architecture_loads_with_int8_weights(tmp_path, arch) -> None:
    """Untied heads (llama), q/k/v biases and a tied head (qwen2), the Loop model."""
    folder = create_tiny(tmp_path / arch, arch, seed=3)
    fp32, int8 = load_checkpoint(folder), load_checkpoint(folder, int8_weights=True)
    ids = torch.randint(5, fp32.config.vocab_size, (40,), generator=torch.Generator().manual_seed(4)).tolist()
    a, b = _logits(fp32, ids), _logits(int8, ids)
    assert float((a - b).abs().max()) < 0.05 * float(a.abs().max()) + 0.05


@pytest.mark.timeout(240)
def test_the_engine_process_serves_the_same_int8_tokens(tmp_path) -> None:
    folder = str(create_tiny(tmp_path / "loop", "iquestloopcoder", seed=5))
    prompts = [torch.randint(20, 400, (n,), generator=torch.Generator().manual_seed(n)).tolist() for n in (30, 45)]
    runs = [_greedy(BackendConfig(model=folder, device="cpu", context_tokens=256, cpu_weights="int8",
                                  engine_process=own), prompts) for own in (False, True)]
    assert runs[0] == runs[1]


def test_int8_needs_the_whole_model_on_the_cpu(tmp_path) -> None:
    folder = create_tiny(tmp_path / "loop", "iquestloopcoder")
    with pytest.raises(CheckpointError, match="int8 weights run on the CPU, with the whole model in one process"):
        load_checkpoint(folder, shard=Shard(0, 2), int8_weights=True)
    with pytest.raises(BackendError, match="unknown CPU weights 'bf16'"):
        BackendConfig(cpu_weights="bf16")
