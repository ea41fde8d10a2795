"""`loopls refactor`: the same refactors as the code actions, printed as a unified diff."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

LOOPLS = [sys.executable, "-m", "loopls.lsp"]
SOURCE = "import sys\nimport os\n\n\ndef area(w, h):\n    while w.more():\n        w.step()\n    return os.sep * (w * h + 1)\n"


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*LOOPLS, "refactor", *args], capture_output=True, text=True, timeout=300, cwd=cwd)


def test_extract_variable_prints_the_diff_and_leaves_the_file(tmp_path: Path):
    (tmp_path / "calc.py").write_text(SOURCE, encoding="utf-8")
    out = run("calc.py:8:22", "extract-variable", "--end", "8:31", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("--- a/calc.py\n+++ b/calc.py\n")
    assert "-    return os.sep * (w * h + 1)\n+    value = w * h + 1\n+    return os.sep * (value)\n" in out.stdout
    assert "the new variable is named `value`" in out.stderr
    assert (tmp_path / "calc.py").read_text(encoding="utf-8") == SOURCE


def test_organize_imports_writes_with_write(tmp_path: Path):
    (tmp_path / "calc.py").write_text(SOURCE, encoding="utf-8")
    out = run("calc.py:1:1", "organize-imports", "--write", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "calc.py").read_text(encoding="utf-8").startswith("import os\n\n\ndef area")


def test_refused_and_missing_refactors_exit_1_with_the_reason(tmp_path: Path):
    (tmp_path / "calc.py").write_text(SOURCE, encoding="utf-8")
    out = run("calc.py:6:11", "extract-variable", "--end", "6:19", cwd=tmp_path)
    assert out.returncode == 1 and out.stdout == ""
    assert "no edit offered: the expression is a loop condition" in out.stderr
    out = run("calc.py:1:1", "inline-variable", cwd=tmp_path)
    assert out.returncode == 1 and "no inline-variable refactor at calc.py:1:1" in out.stderr


def test_bad_positions_and_files_exit_2(tmp_path: Path):
    (tmp_path / "calc.py").write_text(SOURCE, encoding="utf-8")
    out = run("calc.py:99:1", "extract-variable", cwd=tmp_path)
    assert out.returncode == 2 and "outside the file" in out.stderr
    (tmp_path / "notes.txt").write_text("x\n", encoding="utf-8")
    out = run("notes.txt:1:1", "extract-variable", cwd=tmp_path)
    assert out.returncode == 2 and "no grammar" in out.stderr


def test_model_driven_kind_runs_the_default_model(tmp_path: Path):
    (tmp_path / "calc.py").write_text(SOURCE, encoding="utf-8")
    out = run("calc.py:5:5", "docstring", cwd=tmp_path)
    # whatever the embedded model writes is a verified diff or refused with the reason
    if out.returncode == 0:
        assert out.stdout.startswith("--- a/calc.py")
    else:
        assert out.returncode == 1 and "Add a docstring to `area` (model): no edit offered: " in out.stderr
