"""`loopls index` and `loopls context` as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "context"))
from context_helpers import make_repo  # noqa: E402

FILES = {
    "lib/units.go": "package lib\n\n// Meters converts.\nfunc Meters(feet float64) float64 {\n\treturn feet * 0.3048\n}\n",
    "main.go": "package main\n\nimport \"example.com/app/lib\"\n\nfunc main() {\n\tx := lib.Meters(3)\n\t_ = x\n}\n",
    "go.mod": "module example.com/app\n",
}


def _loopls(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "loopls.lsp", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120)


def test_index_then_context_json(tmp_path):
    make_repo(tmp_path, [FILES])
    first = _loopls("index", ".", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "3 files" in first.stdout and "parsed 3, from cache 0" in first.stdout
    assert "indexing [" in first.stderr  # the progress bar
    again = _loopls("index", ".", "--quiet", cwd=tmp_path)
    assert "parsed 0, from cache 3" in again.stdout and again.stderr == ""
    out = _loopls("context", "main.go:6:14", "--budget", "512", "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["prompt_tokens"] <= 512
    units = next(s for s in data["snippets"] if s["path"] == "lib/units.go" and s["source"].startswith("definition"))
    assert (units["start_line"], units["end_line"]) == (4, 6)  # 1-based: the doc comment's line is 3
    assert set(units) == {"path", "start_line", "end_line", "source", "tokens", "score"}
    text = _loopls("context", "main.go:6:14", "--budget", "512", cwd=tmp_path)
    assert "lib/units.go:4-6" in text.stdout


def test_context_errors(tmp_path):
    make_repo(tmp_path, [FILES])
    out = _loopls("context", "main.go:99:1", cwd=tmp_path)
    assert out.returncode == 2 and "outside the file" in out.stderr
    out = _loopls("context", "missing.go:1:1", cwd=tmp_path)
    assert out.returncode == 2 and "missing.go" in out.stderr
    out = _loopls("context", "main.go:1:1", "--budget", "3", cwd=tmp_path)
    assert out.returncode == 2 and "too small" in out.stderr
