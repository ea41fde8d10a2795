"""Model configuration read from a Hugging Face `config.json`."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# model_type -> does the checkpoint carry the Loop gate weights
SUPPORTED_MODEL_TYPES = ("iquestcoder", "llama", "qwen2", "iquestloopcoder")


class ConfigError(ValueError):
    """A config.json that loopls cannot run."""


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    model_type: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    max_position_embeddings: int
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-6
    tie_word_embeddings: bool = False
    attention_bias: bool = False
    torch_dtype: str = "bfloat16"
    # Loop variant only: the shared layers run loop_num times; loops >= 1 attend locally
    # over a sliding window of loop_window_size keys.
    loop_num: int = 1
    loop_window_size: int = 0
    bos_token_id: int | None = None
    eos_token_id: tuple[int, ...] = ()

    @property
    def o_proj_bias(self) -> bool:
        # Llama's attention_bias covers o_proj too; Qwen2 has q/k/v bias only.
        return self.attention_bias and self.model_type != "qwen2"

    def __post_init__(self) -> None:
        if self.model_type not in SUPPORTED_MODEL_TYPES:
            raise ConfigError(
                f"unknown model_type {self.model_type!r}; supported: {', '.join(SUPPORTED_MODEL_TYPES)}"
            )
        if self.num_attention_heads % self.num_key_value_heads:
            raise ConfigError(
                f"num_attention_heads ({self.num_attention_heads}) is not a multiple of "
                f"num_key_value_heads ({self.num_key_value_heads})"
            )
        if self.is_loop and (self.loop_num < 1 or self.loop_window_size < 1):
            raise ConfigError("iquestloopcoder needs loop_num >= 1 and loop_window_size >= 1")
        if min(self.vocab_size, self.hidden_size, self.num_hidden_layers, self.head_dim,
               self.num_key_value_heads, self.max_position_embeddings) < 1:
            raise ConfigError("sizes in config.json must be positive")
        if self.head_dim % 2:
            raise ConfigError(f"head_dim {self.head_dim} must be even for rotary embeddings")

    @property
    def is_loop(self) -> bool:
        return self.model_type == "iquestloopcoder"

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ModelConfig:
        try:
            model_type = raw["model_type"]
            hidden = int(raw["hidden_size"])
            heads = int(raw["num_attention_heads"])
            fields = dict(
                model_type=model_type,
                vocab_size=int(raw["vocab_size"]),
                hidden_size=hidden,
                intermediate_size=int(raw["intermediate_size"]),
                num_hidden_layers=int(raw["num_hidden_layers"]),
                num_attention_heads=heads,
            )
        except KeyError as exc:
            raise ConfigError(f"config.json lacks required key {exc.args[0]!r}") from None
        _check_unsupported(raw, model_type)
        eos = raw.get("eos_token_id")
        eos_ids = tuple(eos) if isinstance(eos, list) else (() if eos is None else (int(eos),))
        fields.update(
            num_key_value_heads=int(raw.get("num_key_value_heads") or heads),
            head_dim=int(raw.get("head_dim") or hidden // heads),
            max_position_embeddings=int(raw.get("max_position_embeddings", 4096)),
            rope_theta=float(raw.get("rope_theta") or _rope_params(raw).get("rope_theta") or 10000.0),
            rms_norm_eps=float(raw.get("rms_norm_eps", 1e-6)),
            tie_word_embeddings=bool(raw.get("tie_word_embeddings", False)),
            # qwen2 always has q/k/v bias; llama-style models say so with attention_bias.
            attention_bias=model_type == "qwen2" or bool(raw.get("attention_bias", False)),
            torch_dtype=str(raw.get("torch_dtype") or raw.get("dtype") or "bfloat16"),
            # vLLM and the published configuration code default a Loop model to two loops.
            loop_num=int(raw.get("loop_num", 2 if model_type == "iquestloopcoder" else 1)),
            loop_window_size=int(raw.get("loop_window_size", 0)),
            bos_token_id=raw.get("bos_token_id"),
            eos_token_id=eos_ids,
        )
        return cls(**fields)

    @classmethod
    def from_file(cls, path: Path) -> ModelConfig:
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{path}: cannot read config: {exc}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: config.json is not a JSON object")
        return cls.from_dict(raw)

    def to_dict(self) -> dict[str, Any]:
        """The config.json form, as Hugging Face writes it."""
        out = dataclasses.asdict(self)
        out["eos_token_id"] = list(self.eos_token_id)
        out["architectures"] = [ARCHITECTURES[self.model_type]]
        if not self.is_loop:
            del out["loop_num"], out["loop_window_size"]
        return out


def _rope_params(raw: dict[str, Any]) -> dict[str, Any]:
    """`rope_scaling` (transformers 4) or `rope_parameters` (transformers 5), or {}."""
    params = raw.get("rope_scaling") or raw.get("rope_parameters") or {}
    return params if isinstance(params, dict) else {}


def _check_unsupported(raw: dict[str, Any], model_type: str) -> None:
    """Refuse settings that would silently change the maths rather than run them wrongly."""
    rope = _rope_params(raw)
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if rope_type not in (None, "default"):
        raise ConfigError(f"rope scaling {rope_type!r} is not supported (only plain RoPE)")
    act = raw.get("hidden_act", "silu")
    if act != "silu":
        raise ConfigError(f"hidden_act {act!r} is not supported (only silu)")
    if raw.get("mlp_bias"):
        raise ConfigError("mlp_bias is not supported")
    if model_type == "qwen2" and raw.get("use_sliding_window"):
        raise ConfigError("qwen2 use_sliding_window is not supported")
    layer_types = set(raw.get("layer_types") or ()) - {"full_attention"}
    if layer_types:
        raise ConfigError(f"layer_types {sorted(layer_types)} are not supported (only full_attention)")


ARCHITECTURES = {
    "iquestcoder": "IQuestCoderForCausalLM",
    "llama": "LlamaForCausalLM",
    "qwen2": "Qwen2ForCausalLM",
    "iquestloopcoder": "IQuestLoopCoderForCausalLM",
}
