"""Model configuration read from a Hugging Face `config.json`."""

from __future__ import annotations

import dataclasses
import json
import math
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
        for name, (low, high) in _INT_BOUNDS.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ConfigError(f"{name} must be an integer from {low} to {high}, not {value!r}")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ConfigError(
                f"num_attention_heads ({self.num_attention_heads}) is not a multiple of "
                f"num_key_value_heads ({self.num_key_value_heads})"
            )
        if self.head_dim % 2:
            raise ConfigError(f"head_dim {self.head_dim} must be even for rotary embeddings")
        if not (math.isfinite(self.rope_theta) and self.rope_theta > 0):
            raise ConfigError(f"rope_theta must be a positive finite number, not {self.rope_theta!r}")
        if not (math.isfinite(self.rms_norm_eps) and 0 < self.rms_norm_eps < 1):
            raise ConfigError(f"rms_norm_eps must be a finite number between 0 and 1, not {self.rms_norm_eps!r}")
        if self.is_loop:
            if not 1 <= self.loop_num <= _MAX_LOOPS:
                raise ConfigError(f"loop_num must be an integer from 1 to {_MAX_LOOPS}, not {self.loop_num!r}")
            if not 1 <= self.loop_window_size <= self.max_position_embeddings:
                raise ConfigError(f"loop_window_size must be from 1 to max_position_embeddings "
                                  f"({self.max_position_embeddings}), not {self.loop_window_size!r}")
        for name in ("bos_token_id", *(("eos_token_id",) if self.eos_token_id else ())):
            ids = getattr(self, name)
            for token in ids if isinstance(ids, tuple) else (() if ids is None else (ids,)):
                if isinstance(token, bool) or not isinstance(token, int) or not 0 <= token < self.vocab_size:
                    raise ConfigError(f"{name} {token!r} is not a token id of the vocabulary (0 to {self.vocab_size - 1})")

    @property
    def is_loop(self) -> bool:
        return self.model_type == "iquestloopcoder"

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ModelConfig:
        """The config of a parsed config.json; a ConfigError names the offending key."""
        missing = [k for k in _REQUIRED if k not in raw]
        if missing:
            raise ConfigError(f"config.json lacks required key {missing[0]!r}")
        model_type = raw["model_type"]
        if not isinstance(model_type, str):
            raise ConfigError(f"model_type must be a string, not {model_type!r}")
        _check_unsupported(raw, model_type)
        hidden, heads = _int(raw, "hidden_size"), _int(raw, "num_attention_heads")
        if heads < 1:
            raise ConfigError(f"num_attention_heads must be a positive integer, not {heads!r}")
        eos = raw.get("eos_token_id")
        eos_list = eos if isinstance(eos, list) else ([] if eos is None else [eos])
        return cls(
            model_type=model_type,
            vocab_size=_int(raw, "vocab_size"),
            hidden_size=hidden,
            intermediate_size=_int(raw, "intermediate_size"),
            num_hidden_layers=_int(raw, "num_hidden_layers"),
            num_attention_heads=heads,
            num_key_value_heads=_int(raw, "num_key_value_heads", heads),
            head_dim=_int(raw, "head_dim", hidden // heads),
            max_position_embeddings=_int(raw, "max_position_embeddings", 4096),
            rope_theta=_float(raw, "rope_theta", _rope_params(raw).get("rope_theta") or 10000.0),
            rms_norm_eps=_float(raw, "rms_norm_eps", 1e-6),
            tie_word_embeddings=bool(raw.get("tie_word_embeddings", False)),
            # qwen2 always has q/k/v bias; llama-style models say so with attention_bias.
            attention_bias=model_type == "qwen2" or bool(raw.get("attention_bias", False)),
            torch_dtype=str(raw.get("torch_dtype") or raw.get("dtype") or "bfloat16"),
            # vLLM and the published configuration code default a Loop model to two loops.
            loop_num=_int(raw, "loop_num", 2 if model_type == "iquestloopcoder" else 1),
            loop_window_size=_int(raw, "loop_window_size", 0),
            bos_token_id=None if raw.get("bos_token_id") is None else _int(raw, "bos_token_id"),
            eos_token_id=tuple(_int({"eos_token_id": e}, "eos_token_id") for e in eos_list),
        )

    @classmethod
    def from_file(cls, path: Path) -> ModelConfig:
        """The config in `path`; every ConfigError starts with the path."""
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise ConfigError(f"{path}: cannot read config: {exc}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: config.json is not a JSON object")
        try:
            return cls.from_dict(raw)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        """The config.json form, as Hugging Face writes it."""
        out = dataclasses.asdict(self)
        out["eos_token_id"] = list(self.eos_token_id)
        out["architectures"] = [ARCHITECTURES[self.model_type]]
        if not self.is_loop:
            del out["loop_num"], out["loop_window_size"]
        return out


_REQUIRED = ("model_type", "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
             "num_attention_heads")
# Sizes a model can have: well past every published checkpoint, well short of sizes that
# would make building the model on the meta device hang or exhaust memory.
_INT_BOUNDS = {
    "vocab_size": (1, 1 << 24),
    "hidden_size": (1, 1 << 17),
    "intermediate_size": (1, 1 << 20),
    "num_hidden_layers": (1, 1024),
    "num_attention_heads": (1, 1024),
    "num_key_value_heads": (1, 1024),
    "head_dim": (2, 1024),
    # below 64 positions no prompt plus completion fits; 2**24 is past every long-context model
    "max_position_embeddings": (64, 1 << 24),
}
_MAX_LOOPS = 16


def _int(raw: dict[str, Any], key: str, default: Any = None) -> int:
    """raw[key] as an integer (a float only when integral: JSON writers differ)."""
    value = raw.get(key)
    if value is None:
        if default is None:
            raise ConfigError(f"{key} must be an integer, not null")
        return default
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{key} must be an integer, not {value!r}")
    return value


def _float(raw: dict[str, Any], key: str, default: float) -> float:
    value = raw.get(key)
    if value is None:
        return float(default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{key} must be a number, not {value!r}")
    return float(value)


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
    layer_types = raw.get("layer_types") or []
    if not isinstance(layer_types, list):
        raise ConfigError(f"layer_types must be a list, not {layer_types!r}")
    unsupported = {t if isinstance(t, str) else repr(t) for t in layer_types} - {"full_attention"}
    if unsupported:
        raise ConfigError(f"layer_types {sorted(unsupported)} are not supported (only full_attention)")


ARCHITECTURES = {
    "iquestcoder": "IQuestCoderForCausalLM",
    "llama": "LlamaForCausalLM",
    "qwen2": "Qwen2ForCausalLM",
    "iquestloopcoder": "IQuestLoopCoderForCausalLM",
}
