"""A real Neovim in a real terminal: tmux runs it, `send-keys` types, `capture-pane` reads the
screen, and `nvim --server SOCK --remote-expr` reads the editor's state."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any, Callable


class NeovimInTmux:
    def __init__(self, nvim: str, tmux: str, workdir: Path, init_lua: Path, file: str, env: dict[str, str],
                 size: tuple[int, int] = (140, 40)) -> None:
        self.nvim, self.tmux, self.workdir = nvim, tmux, workdir
        self.sock = workdir.parent / "nvim.sock"
        self.session = f"loopls-{int(time.time() * 1000) % 10**8}"
        cmd = [nvim, "-u", str(init_lua), "-i", "NONE", "--listen", str(self.sock), file]
        env_args = [f"{k}={v}" for k, v in env.items()]
        subprocess.run([tmux, "-L", self.session, "new-session", "-d", "-s", self.session, "-x", str(size[0]),
                        "-y", str(size[1]), "-c", str(workdir), "env", *env_args, *cmd], check=True)
        self.wait(lambda: self.sock.exists(), 30, "nvim did not open its socket")

    def keys(self, *keys: str, literal: bool = False) -> None:
        args = ["-l"] if literal else []
        subprocess.run([self.tmux, "-L", self.session, "send-keys", "-t", self.session, *args, *keys], check=True)

    def type(self, text: str) -> None:
        """Type text key by key, as a person would (each key a separate event)."""
        for ch in text:
            self.keys(ch, literal=True)
            time.sleep(0.03)

    def screen(self) -> str:
        return subprocess.run([self.tmux, "-L", self.session, "capture-pane", "-p", "-t", self.session],
                              capture_output=True, text=True, check=True).stdout

    def expr(self, expr: str) -> str:
        proc = subprocess.run([self.nvim, "--server", str(self.sock), "--remote-expr", expr],
                              capture_output=True, text=True, timeout=30)
        if proc.returncode != 0:
            raise RuntimeError(f"--remote-expr {expr!r} failed: {proc.stderr}")
        return proc.stdout

    def lua(self, code: str) -> Any:
        """The JSON value of a Lua expression evaluated in the editor."""
        return json.loads(self.expr(f'luaeval("vim.json.encode({_quote(code)})")'))

    def wait(self, cond: Callable[[], Any], timeout: float, message: str, interval: float = 0.2) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = cond()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"{message} (after {timeout}s); screen:\n{self.screen()}")
            time.sleep(interval)

    def save_screen(self, folder: Path, name: str) -> Path:
        path = folder / f"{name}.txt"
        path.write_text(self.screen(), encoding="utf-8")
        return path

    def close(self) -> None:
        subprocess.run([self.tmux, "-L", self.session, "kill-server"], capture_output=True)


def _quote(code: str) -> str:
    # inside a Vim double-quoted string
    return code.replace("\\", "\\\\").replace('"', '\\"')


def find_nvim(venv_bin: Path) -> str | None:
    return shutil.which("nvim", path=str(venv_bin))
