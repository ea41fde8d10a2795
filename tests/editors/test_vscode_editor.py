"""The VS Code extension in a real VS Code: code-server 4.139 (VS Code 1.139) with the built
.vsix installed, driven in Debian's chromium by playwright-core, against the language server
of this checkout and the untrained tiny-random model (random text).

Also here: the extension's own checks (tsc, eslint with zero warnings, node:test unit tests)
and its packaging (vsce without warnings), run with the same Node the editor uses."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

import editor_install
from sample_project import make_sample_project

HERE = Path(__file__).resolve().parent
# the first test here installs the editors on a new machine (minutes: see editor_install.py)
pytestmark = pytest.mark.timeout(1800)


def _npm(tools: editor_install.Tools, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{tools.node.parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(["npm", *args], cwd=editor_install.VSCODE_EXTENSION, env=env, capture_output=True,
                          text=True, timeout=600)


def test_extension_typechecks_lints_and_unit_tests_pass(editor_tools: editor_install.Tools) -> None:
    check = _npm(editor_tools, "run", "check")
    assert check.returncode == 0, check.stdout + check.stderr
    unit = _npm(editor_tools, "test")
    assert unit.returncode == 0, unit.stdout + unit.stderr
    assert re.search(r"\bfail 0\b", unit.stdout) and re.search(r"\bpass [1-9]", unit.stdout), unit.stdout


def test_vsix_packages_without_warnings(editor_tools: editor_install.Tools) -> None:
    result = _npm(editor_tools, "run", "package")
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "WARNING" not in out and "warn" not in out.lower().replace("npm warn", ""), out
    listing = subprocess.run([sys.executable, "-m", "zipfile", "-l", str(editor_tools.vsix)], capture_output=True,
                             text=True, check=True).stdout
    for member in ("extension/out/extension.js", "extension/package.json", "extension/LICENSE"):
        assert member in listing, listing
    assert "node_modules" not in listing and "src/" not in listing, listing


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, timeout: float, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"code-server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"code-server did not answer {url} in {timeout}s")


@pytest.fixture
def server_command() -> list[str]:
    return [sys.executable, "-m", "loopls.lsp", "lsp"]


@pytest.fixture
def code_server(editor_tools: editor_install.Tools, tmp_path: Path, server_command: list[str]):
    """code-server with the extension installed and the sample project open; yields (url, project)."""
    project = make_sample_project(tmp_path / "project")
    data, extensions = tmp_path / "vscode-data", tmp_path / "vscode-extensions"
    (data / "User").mkdir(parents=True)
    (data / "User" / "settings.json").write_text(json.dumps({
        "loopls.server.command": server_command,
        "loopls.model.name": "tiny-random",
        "loopls.completion.maxTokens": 16,
        "editor.inlineSuggest.enabled": True,
        "editor.quickSuggestions": {"other": False, "comments": False, "strings": False},
        "workbench.startupEditor": "none",
        "workbench.tips.enabled": False,
        "telemetry.telemetryLevel": "off",
        "extensions.autoUpdate": False,
        "extensions.autoCheckUpdates": False,
        "update.mode": "none",
        "files.autoSave": "off",
    }), encoding="utf-8")
    env = {**os.environ, "PATH": f"{editor_tools.node.parent}{os.pathsep}{os.environ['PATH']}"}
    base = [str(editor_tools.code_server), "--user-data-dir", str(data), "--extensions-dir", str(extensions)]
    installed = subprocess.run([*base, "--install-extension", str(editor_tools.vsix)], env=env, capture_output=True,
                               text=True, timeout=300)
    assert installed.returncode == 0 and "loopls" in installed.stdout, installed.stdout + installed.stderr
    port = _free_port()
    log = (tmp_path / "code-server.log").open("w")
    proc = subprocess.Popen([*base, "--auth", "none", "--disable-workspace-trust", "--disable-telemetry",
                             "--disable-update-check", "--bind-addr", f"127.0.0.1:{port}", str(project)],
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_http(f"http://127.0.0.1:{port}/healthz", 120, proc)
        yield f"http://127.0.0.1:{port}/?folder={project}", project
    finally:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
        log.close()


def drive(tools: editor_install.Tools, url: str, artifacts: Path, scenario: str) -> dict[str, dict]:
    """Run the playwright driver; what it saw, by step."""
    config = {"playwrightDir": str(tools.playwright_dir), "chromium": str(tools.chromium), "url": url,
              "shots": str(artifacts), "file": "pricing.py", "scenario": scenario}
    proc = subprocess.run([str(tools.node), str(HERE / "vscode_drive.cjs"), json.dumps(config)],
                          capture_output=True, text=True, timeout=900)
    (artifacts / "driver.log").write_text(proc.stderr, encoding="utf-8")
    seen = json.loads(proc.stdout or "{}")
    assert not seen.get("errors"), (seen.get("errors"), proc.stderr[-3000:])
    return {s["step"]: s for s in seen.get("steps", [])}


def test_vscode_ghost_text_accept_trigger_problems_quick_fix_status(
    editor_tools: editor_install.Tools, code_server: tuple[str, Path], artifacts: Path
) -> None:
    steps = drive(editor_tools, code_server[0], artifacts, "completions")
    project = code_server[1]

    assert "loopls: tiny" in steps["status"]["text"], steps["status"]
    ghost = steps["ghost"]
    assert ghost["ghost"].strip(), ghost
    assert ghost["line"] == "    tot", "the suggestion must not be in the document before it is accepted"
    # Tab put the suggestion into the document: its first line where the cursor was (line 11)
    saved = (project / "pricing.py").read_text(encoding="utf-8").split("\n")
    assert saved[10] == "    tot" + ghost["inline"], (saved[9:14], ghost)
    assert saved[10] != "    tot" or len(saved) > 33, "nothing was inserted"
    explicit = steps["explicit"]
    assert not explicit["dismissed"].strip() and explicit["triggered"].strip(), explicit
    assert any("loopls" in row for row in steps["problems"]["rows"]), steps["problems"]
    assert any("Refactor with the model" in a for a in steps["quickfix"]["actions"]), steps["quickfix"]
    # the packed context opens once, as a Markdown document titled by its first line
    assert [t for t in steps["context"]["tabs"] if t.startswith("# Context packed for pricing.py:")] \
        and len(steps["context"]["tabs"]) == 2, steps["context"]


@pytest.mark.parametrize("server_command", [["/nonexistent/loopls", "lsp"]])
def test_vscode_says_why_the_server_cannot_start_and_opens_the_setting(
    editor_tools: editor_install.Tools, code_server: tuple[str, Path], artifacts: Path
) -> None:
    steps = drive(editor_tools, code_server[0], artifacts, "missing-server")
    message = steps["message"]
    assert "cannot start the language server" in message["message"], message
    assert "/nonexistent/loopls does not exist" in message["message"], message
    assert "Open Settings" in message["message"], message
    assert "error" in message["status"], message
    assert any("Server: Command" in label or "Command" in label for label in steps["settings"]["labels"]), steps
