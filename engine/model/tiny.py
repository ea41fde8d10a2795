"""`loopls model create-tiny`: a small random checkpoint in Hugging Face layout.

Deterministic: the same arguments give byte-identical files. The tokenizer is a byte-level
BPE trained with `tokenizers` on a fixed built-in corpus; weights come from a seeded
generator. Such a model is untrained: it exercises every code path but writes noise.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

import torch

from .config import ModelConfig
from .transformer import CausalLM

ARCHES = ("iquestloopcoder", "iquestcoder", "qwen2", "llama")
# "tiny": fastest, for the engine's own tests. "small": head_dim 64, the smallest shape vLLM's
# CPU attention runs (it refuses head_dim 16), for tests against vLLM.
SIZES = {
    "tiny": dict(hidden_size=64, intermediate_size=176, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, head_dim=16),
    "small": dict(hidden_size=256, intermediate_size=688, num_hidden_layers=3, num_attention_heads=4,
                  num_key_value_heads=2, head_dim=64),
}
# transformers does not know these model types: like the published IQuest checkpoints, ours
# ship their configuration code and name it in config.json's auto_map.
_REMOTE_CONFIG = {
    "iquestcoder": "configuration_iquestcoder.IQuestCoderConfig",
    "iquestloopcoder": "configuration_iquestloopcoder.IQuestLoopCoderConfig",
}

SPECIAL_TOKENS = (
    "<|endoftext|>", "<s>", "</s>", "<|im_start|>", "<|im_end|>", "<|fim_prefix|>",
    "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>", "<|file_sep|>", "<|repo_name|>",
)
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# A fixed corpus so that BPE training is reproducible; it covers the common code shapes.
_CORPUS = [
    "def main(argv: list[str]) -> int:\n    parser = argparse.ArgumentParser()\n    return 0\n",
    "class Inventory:\n    def __init__(self, items=None):\n        self.items = dict(items or {})\n",
    "    def add(self, name, count=1):\n        self.items[name] = self.items.get(name, 0) + count\n",
    "import os\nimport sys\nfrom pathlib import Path\nfrom typing import Any, Optional\n",
    "for i in range(len(values)):\n    if values[i] is None:\n        continue\n    total += values[i]\n",
    "try:\n    result = compute(x, y)\nexcept ValueError as exc:\n    raise RuntimeError(str(exc))\n",
    "function add(a, b) {\n  return a + b;\n}\nconst items = [1, 2, 3].map((x) => x * 2);\n",
    "export interface User { id: number; name: string; email?: string }\n",
    "func (s *Server) Handle(w http.ResponseWriter, r *http.Request) error {\n\treturn nil\n}\n",
    "public static void main(String[] args) {\n    System.out.println(\"hello\");\n}\n",
    "fn parse(input: &str) -> Result<Vec<u32>, Error> {\n    Ok(vec![])\n}\n",
    "#include <stdio.h>\nint main(void) { printf(\"%d\\n\", 42); return 0; }\n",
    "    # TODO: handle the empty case\n    if not data:\n        return None\n",
    "SELECT id, name FROM users WHERE active = 1 ORDER BY name;\n",
]


def _tiny_config(arch: str, size: str, vocab_size: int, eos: list[int]) -> ModelConfig:
    return ModelConfig(
        model_type=arch,
        vocab_size=vocab_size,
        **SIZES[size],
        max_position_embeddings=4096,
        rope_theta=500000.0,
        rms_norm_eps=1e-5,
        tie_word_embeddings=arch == "qwen2",
        attention_bias=arch == "qwen2",
        torch_dtype="float32",
        loop_num=2 if arch == "iquestloopcoder" else 1,
        loop_window_size=16 if arch == "iquestloopcoder" else 0,
        bos_token_id=1,
        eos_token_id=tuple(eos),
    )


def _train_tokenizer(vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS * 4, trainer=trainer)
    return tok


def _init_weights(model: CausalLM, seed: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    for name, param in sorted(model.state_dict().items()):
        if name.endswith("norm.weight"):
            state[name] = torch.ones(param.shape)
        elif name.endswith(".bias") and "gate_projections" not in name:
            state[name] = torch.randn(param.shape, generator=gen) * 0.02
        else:
            state[name] = torch.randn(param.shape, generator=gen) * (0.5 if "gate_projections" in name else 0.08)
    return state


def _favour_printable_tokens(state: dict[str, torch.Tensor], tok, config: ModelConfig) -> None:
    """Shrink the output rows of tokens that decode to nothing showable (lone UTF-8 bytes,
    bare whitespace, special tokens). Random logits then rarely pick them, so the untrained
    model's output is visible text and an editor gets an item to show, instead of noise
    that cleans away to nothing."""
    name = "model.embed_tokens.weight" if config.tie_word_embeddings else "lm_head.weight"
    for tid in range(config.vocab_size):
        text = tok.decode([tid], skip_special_tokens=False)
        if tid in tok.get_added_tokens_decoder() or "\ufffd" in text or not text.strip():
            state[name][tid] *= 0.1


def create_tiny(
    folder: Path | str,
    arch: str = "iquestloopcoder",
    seed: int = 0,
    shards: int = 1,
    overrides: dict[str, Any] | None = None,
    size: str = "tiny",
) -> Path:
    """Write a random checkpoint of architecture `arch` and `size` (SIZES) into `folder`;
    return the folder.

    `overrides` replaces ModelConfig fields (e.g. num_key_value_heads=1, loop_window_size=4,
    torch_dtype="bfloat16": the weights are then stored in that dtype).
    """
    if arch not in ARCHES:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHES)}")
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; choose one of {', '.join(SIZES)}")
    if shards < 1:
        raise ValueError("shards must be at least 1")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tok = _train_tokenizer(512)
    ids = {t: tok.token_to_id(t) for t in SPECIAL_TOKENS}
    eos = [ids["</s>"], ids["<|im_end|>"], ids["<|endoftext|>"]]
    config = dataclasses.replace(_tiny_config(arch, size, tok.get_vocab_size(), eos), **(overrides or {}))
    with torch.device("meta"):
        model = CausalLM(config)
    store_dtype = getattr(torch, config.torch_dtype)
    weights = _init_weights(model, seed)
    _favour_printable_tokens(weights, tok, config)
    _save_weights(folder, {n: t.to(store_dtype) for n, t in weights.items()}, shards)
    tok.save(str(folder / "tokenizer.json"))
    cfg = config.to_dict() | {"loopls_untrained": True, "hidden_act": "silu"}
    if arch in _REMOTE_CONFIG:
        module = _REMOTE_CONFIG[arch].split(".")[0]
        shutil.copyfile(Path(__file__).parent / "remote_code" / f"{module}.py", folder / f"{module}.py")
        cfg["auto_map"] = {"AutoConfig": _REMOTE_CONFIG[arch]}
    _write_json(folder / "config.json", cfg)
    _write_json(folder / "generation_config.json", {"bos_token_id": ids["<s>"], "eos_token_id": eos})
    _write_json(folder / "tokenizer_config.json", tokenizer_config(ids, config))
    return folder


def _save_weights(folder: Path, state: dict[str, torch.Tensor], shards: int) -> None:
    """One model.safetensors, or `shards` files plus the index transformers writes."""
    from safetensors.torch import save_file

    if shards <= 1:
        save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
        return
    names = sorted(state)
    weight_map = {}
    for s in range(shards):
        fname = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        part = {n: state[n] for n in names[s::shards]}
        save_file(part, str(folder / fname), metadata={"format": "pt"})
        weight_map.update({n: fname for n in part})
    total = sum(t.numel() * t.element_size() for t in state.values())
    _write_json(folder / "model.safetensors.index.json", {"metadata": {"total_size": total}, "weight_map": weight_map})


def tokenizer_config(ids: dict[str, int], config: ModelConfig) -> dict[str, Any]:
    return {
        "added_tokens_decoder": {
            str(ids[t]): {"content": t, "special": True, "lstrip": False, "rstrip": False,
                          "normalized": False, "single_word": False}
            for t in SPECIAL_TOKENS
        },
        "additional_special_tokens": list(SPECIAL_TOKENS[3:]),
        "bos_token": "<s>",
        "eos_token": "</s>",
        "pad_token": "<|endoftext|>",
        "model_max_length": config.max_position_embeddings,
        "tokenizer_class": "PreTrainedTokenizerFast",
        "chat_template": CHAT_TEMPLATE,
    }


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
