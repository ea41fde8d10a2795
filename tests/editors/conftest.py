"""Fixtures of the real-editor tests: the tools (installed once per machine, cached), the
sample project as a git repository, and a folder per test for screenshots and screen dumps."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

import editor_install


@pytest.fixture(scope="session")
def editor_tools() -> editor_install.Tools:
    """Node 24, code-server, playwright-core, chromium, tmux and the built .vsix."""
    try:
        return editor_install.ensure_all(announce=lambda line: print(line, file=sys.stderr))
    except editor_install.InstallError as exc:
        pytest.fail(f"installing the editors failed: {exc}")


@pytest.fixture(scope="session")
def tmux_bin() -> str:
    cache = editor_install.cache_root()
    cache.mkdir(parents=True, exist_ok=True)
    try:
        editor_install.ensure_apt(("tmux",), cache / "install.log")
    except editor_install.InstallError as exc:
        pytest.fail(str(exc))
    return shutil.which("tmux") or "/usr/bin/tmux"


@pytest.fixture
def artifacts(tmp_path: Path) -> Path:
    """Where a test leaves its screenshots; printed so that a failing run says where to look."""
    folder = tmp_path / "screens"
    folder.mkdir()
    print(f"screenshots and screen dumps: {folder}", file=sys.stderr)
    return folder
