"""Real model servers for the tests: `loopls serve` and vLLM's OpenAI server, on 127.0.0.1."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

# The architectures checked against vLLM, as `create-tiny --size small` checkpoints.
SMALL_ARCHES = ("iquestcoder", "iquestloopcoder", "qwen2")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """One server process that can be stopped and started again on the same port."""

    def __init__(self, command: list[str], port: int, log: Path, env: dict[str, str] | None = None,
                 start_timeout: float = 120.0) -> None:
        self.command, self.port, self.log, self.env = command, port, log, env
        self.start_timeout = start_timeout
        self.proc: subprocess.Popen | None = None
        self.url = f"http://127.0.0.1:{port}/v1"
        self.root = f"http://127.0.0.1:{port}"

    def start(self) -> ServerProcess:
        with open(self.log, "ab") as out:
            # A session of its own: stop() ends the server and every worker it spawned.
            self.proc = subprocess.Popen(self.command, stdout=out, stderr=subprocess.STDOUT, env=self.env,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.root}/health", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"server not healthy after {self.start_timeout:.0f} s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def log_tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def metrics(self, headers: dict[str, str] | None = None) -> dict[str, float]:
        """Prometheus samples by `name{label="value",...}` (labels sorted)."""
        text = httpx.get(f"{self.root}/metrics", timeout=10, headers=headers).text
        samples = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()) if k not in ("engine", "model_name"))
                samples[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
        return samples


def loopls_serve(port: int, log: Path, *args: str) -> ServerProcess:
    command = [sys.executable, "-m", "loopls.lsp", "serve", "--port", str(port), *args]
    return ServerProcess(command, port, log)


def vllm_openai_server(python: Path, checkpoint: Path, port: int, log: Path, env: dict[str, str]) -> ServerProcess:
    command = [
        str(python), "-m", "vllm.entrypoints.openai.api_server", "--model", str(checkpoint),
        "--host", "127.0.0.1", "--port", str(port), "--trust-remote-code", "--dtype", "float32",
        "--enforce-eager", "--max-model-len", "4096",
        # On CPU vLLM reserves a share of all RAM unless told the KV cache size.
        "--kv-cache-memory-bytes", str(256 << 20),
    ]
    return ServerProcess(command, port, log, env=env, start_timeout=420.0)
