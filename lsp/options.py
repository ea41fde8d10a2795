"""Server options: nested kw-only dataclasses parsed with cattrs from camelCase JSON.

The same keys are used in `initializationOptions`, `workspace/configuration` (section
"loopls"), VS Code's package.json and the Neovim setup table. A section may be partial: it
merges into the current options (`merge_options`). An invalid value falls back to that key's
default and an unknown key is ignored, each named in the one warning the caller shows.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from typing import Any

import cattrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override
from cattrs.v import format_exception

from loopls.context.prompt import FIM_LAYOUTS
from loopls.context.smells.checks import SmellConfig
from loopls.engine.backends import BACKENDS, CPU_WEIGHTS, BackendConfig, BackendError


@dataclass(kw_only=True)
class ModelOptions:
    # "loopls-coder-small" (the trained embedded default), "tiny-random" (untrained, for tests),
    # a checkpoint folder, or a hub id in the local cache; with the openai backend, the name the
    # server serves the model under
    name: str = "loopls-coder-small"
    device: str = "auto"  # auto | cpu | cuda | cuda:N (native backend)
    backend: str = "native"  # native (in process) | openai (an OpenAI-compatible server) | vllm (in process)
    url: str = ""  # openai: the server's API base, e.g. http://127.0.0.1:8000/v1
    api_key_env: str = ""  # openai: environment variable holding the bearer key (never the key itself)
    tokenizer: str = ""  # openai: checkpoint folder or cached hub id with the tokenizer (default: name)
    context_limit: int = 0  # prompt + output tokens; 0: what the server or checkpoint says
    timeout: float = 30.0  # openai: seconds to connect and between streamed tokens
    tensor_parallel_size: int = 1  # native, vllm: GPUs the model is split over (native: one process each)
    cpu_weights: str = "int8"  # native on a CPU: int8 (matrices quantized as the model loads) | fp32

    def __post_init__(self) -> None:
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise ValueError(f"model.device must be auto, cpu, cuda or cuda:N, not {self.device!r}")
        if self.backend not in BACKENDS:
            raise ValueError(f"model.backend must be one of {', '.join(BACKENDS)}, not {self.backend!r}")
        if self.backend == "openai" and not self.url.startswith(("http://", "https://")):
            raise ValueError("model.url must be an http(s) URL such as http://127.0.0.1:8000/v1 when model.backend is openai")
        if self.cpu_weights not in CPU_WEIGHTS:
            raise ValueError(f"model.cpuWeights must be one of {', '.join(CPU_WEIGHTS)}, not {self.cpu_weights!r}")
        if self.context_limit < 0 or self.timeout <= 0 or self.tensor_parallel_size < 1:
            raise ValueError("model.contextLimit must be >= 0, model.timeout > 0 and model.tensorParallelSize >= 1")


MAX_COMPLETION_TOKENS = 4096


@dataclass(kw_only=True)
class CompletionOptions:
    enabled: bool = True
    max_tokens: int = 48
    temperature: float = 0.0
    context_tokens: int = 2048  # prompt budget, counted with the model's tokenizer
    max_lines: int = 8
    candidates: int = 3  # distinct suggestions when the user asks explicitly (sampled)
    fim_layout: str = "auto"  # auto (the checkpoint's own) | psm | spm
    # single-line sites, greedy: continue this many most likely first tokens and show the
    # best-scored line (SamplingParams.best_of); 1: plain greedy
    line_best_of: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.max_tokens <= MAX_COMPLETION_TOKENS:
            raise ValueError(f"completion.maxTokens must be between 1 and {MAX_COMPLETION_TOKENS}")
        if not 64 <= self.context_tokens <= 131072:
            raise ValueError("completion.contextTokens must be between 64 and 131072")
        if self.temperature < 0:
            raise ValueError("completion.temperature must be >= 0")
        if self.max_lines < 1:
            raise ValueError("completion.maxLines must be >= 1")
        if not 1 <= self.candidates <= 8:
            raise ValueError("completion.candidates must be between 1 and 8")
        if not 1 <= self.line_best_of <= 8:
            raise ValueError("completion.lineBestOf must be between 1 and 8")
        if self.fim_layout not in ("auto", *FIM_LAYOUTS):
            raise ValueError(f"completion.fimLayout must be auto, {' or '.join(FIM_LAYOUTS)}")

    @property
    def layout(self) -> str | None:
        """The FIM layout for the packer; None: the checkpoint's own."""
        return None if self.fim_layout == "auto" else self.fim_layout


@dataclass(kw_only=True)
class SmellOptions:
    enabled: bool = True  # code-smell diagnostics (docs/smells.md)
    disabled: list[str] = field(default_factory=list)  # check codes (LS301) or names (duplicated-code)
    thresholds: dict[str, float] = field(default_factory=dict)  # e.g. {"maxCyclomatic": 15}

    def __post_init__(self) -> None:
        self.config()  # unknown names and bad values fail here, with the valid names listed

    def config(self) -> SmellConfig:
        return SmellConfig.from_settings(self.thresholds, self.disabled)


@dataclass(kw_only=True)
class Options:
    model: ModelOptions = field(default_factory=ModelOptions)
    completion: CompletionOptions = field(default_factory=CompletionOptions)
    smells: SmellOptions = field(default_factory=SmellOptions)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _make_converter() -> cattrs.Converter:
    conv = cattrs.Converter(forbid_extra_keys=True)

    def structure_hook(cls: type) -> Any:
        renames = {f.name: override(rename=_camel(f.name)) for f in dataclasses.fields(cls)}
        return make_dict_structure_fn(cls, conv, _cattrs_forbid_extra_keys=True, **renames)

    def unstructure_hook(cls: type) -> Any:
        renames = {f.name: override(rename=_camel(f.name)) for f in dataclasses.fields(cls)}
        return make_dict_unstructure_fn(cls, conv, **renames)

    conv.register_structure_hook_factory(dataclasses.is_dataclass, structure_hook)
    conv.register_unstructure_hook_factory(dataclasses.is_dataclass, unstructure_hook)
    return conv


_CONVERTER = _make_converter()


def _format_error(exc: BaseException, type_: type | None) -> str:
    # Our own __post_init__ checks carry the useful message; keep cattrs' wording otherwise.
    if type(exc) is ValueError:
        return str(exc)
    return format_exception(exc, type_)


def parse_options(raw: Any, base: Options | None = None) -> tuple[Options, str | None]:
    """Options from JSON-like `raw` (None means defaults); on error, (base or defaults, message)."""
    fallback = base or Options()
    if raw is None:
        return fallback, None
    try:
        return _CONVERTER.structure(raw, Options), None
    except (cattrs.BaseValidationError, ValueError, TypeError) as exc:
        return fallback, f"invalid loopls options, using defaults: {_describe(exc)}"


def _describe(exc: BaseException) -> str:
    if isinstance(exc, cattrs.BaseValidationError):
        return "; ".join(cattrs.transform_error(exc, format_exception=_format_error))
    return str(exc)


_UNKNOWN = object()
_SECTIONS = {"model": ModelOptions, "completion": CompletionOptions, "smells": SmellOptions}


def _leaves(raw: dict[str, Any]) -> list[tuple[str, Any]]:
    """(dotted camelCase key, value) for every option `raw` sets; keys that name no option
    come back with the value `_UNKNOWN`."""
    out: list[tuple[str, Any]] = []
    for section, values in raw.items():
        cls = _SECTIONS.get(section)
        if cls is None or not isinstance(values, dict):
            out.append((section, values if cls is not None else _UNKNOWN))
            continue
        names = {_camel(f.name) for f in dataclasses.fields(cls)}
        out.extend((f"{section}.{key}", value if key in names else _UNKNOWN) for key, value in values.items())
    return out


def _set(tree: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    """A copy of `tree` with `dotted` set to `value`."""
    head, _, rest = dotted.partition(".")
    copy = dict(tree)
    copy[head] = _set(tree.get(head) or {}, rest, value) if rest else value
    return copy


def _get(tree: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        tree = tree[part]
    return tree


def merge_options(raw: Any, current: Options) -> tuple[Options, str | None]:
    """`raw` (the whole `loopls` section or a part of it) merged into `current`. Each invalid
    value falls back to its key's default, each unknown key is ignored; the warning names them
    all (None when there is nothing to say)."""
    if raw is None:
        return current, None
    if not isinstance(raw, dict):
        return current, f"loopls options must be an object, not {type(raw).__name__}; options unchanged"
    merged = options_to_json(current)
    defaults = options_to_json(Options())
    leaves = _leaves(raw)
    if all(value is not _UNKNOWN for _, value in leaves):
        # All at once first: keys that are only valid together (model.backend "openai" and
        # its model.url) must not be judged one at a time.
        whole = merged
        for key, value in leaves:
            whole = _set(whole, key, _get(defaults, key) if value is None else value)
        try:
            return _CONVERTER.structure(whole, Options), None
        except (cattrs.BaseValidationError, ValueError, TypeError, AttributeError):
            pass  # then key by key, to fall back only where a value is wrong
    problems = []
    for key, value in leaves:
        if value is _UNKNOWN:
            problems.append(f"unknown option {key} (ignored)")
            continue
        if value is None:  # null: the key is unset, which means its default
            value = _get(defaults, key)
        trial = _set(merged, key, value)
        try:
            _CONVERTER.structure(trial, Options)
        except (cattrs.BaseValidationError, ValueError, TypeError, AttributeError) as exc:
            detail = _describe(exc).split(" @ $")[0]
            if key in _SECTIONS:
                detail = f"{key} must be an object"
            elif key not in detail:
                detail = f"{key}: {detail}" if detail else f"{key}: invalid value {value!r}"[:200]
            problems.append(f"{detail} (using the default, {json.dumps(_get(defaults, key))})")
            trial = _set(merged, key, _get(defaults, key))
        merged = trial
    options = _CONVERTER.structure(merged, Options)
    return options, ("invalid loopls options: " + "; ".join(problems)) if problems else None


def options_to_json(options: Options) -> dict[str, Any]:
    return _CONVERTER.unstructure(options)


def backend_config(options: Options, model_override: str | None = None) -> BackendConfig:
    """What `load_backend` needs from the options; BackendError if the API key is missing."""
    m = options.model
    api_key = None
    if m.api_key_env:
        api_key = os.environ.get(m.api_key_env)
        if not api_key:
            raise BackendError(f"model.apiKeyEnv names {m.api_key_env}, which is not set in the server's environment")
    return BackendConfig(
        kind=m.backend, model=model_override or m.name, device=m.device,
        context_tokens=options.completion.context_tokens, url=m.url or None, api_key=api_key,
        tokenizer=m.tokenizer or None, context_limit=m.context_limit or None, timeout_s=m.timeout,
        tensor_parallel_size=m.tensor_parallel_size, cpu_weights=m.cpu_weights,
        # the server's event loop and project thread must not hold up the engine's decoding
        engine_process=True,
    )
