"""Every user error on the command line is one line on stderr and exit code 2, no traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

LOOPLS = [sys.executable, "-m", "loopls.lsp"]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*LOOPLS, *args], capture_output=True, text=True, timeout=300)


def assert_one_line_error(out: subprocess.CompletedProcess, fragment: str) -> None:
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2, (out.returncode, out.stderr)
    assert len(lines) == 1 and fragment in lines[0], out.stderr
    assert "Traceback" not in out.stderr and "internal error" not in out.stderr


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cli")
    source = root / "calc.py"
    source.write_text("def add(a, b):\n    return a + b\n", encoding="utf-8")
    fifo = root / "pipe.py"
    os.mkfifo(fifo)
    (root / "folder").mkdir()
    return {"root": root, "source": source, "fifo": fifo, "folder": root / "folder"}


@pytest.mark.parametrize(("args", "fragment"), [
    (["--max-tokens", "0"], "--max-tokens: 0 is out of range (1 to 4096)"),
    (["--max-tokens", "-5"], "-5 is out of range"),
    (["--max-tokens", "1e9"], "expected a whole number from 1 to 4096, got '1e9'"),
    (["--max-tokens", "5000"], "5000 is out of range"),
    (["--device", "bogus"], "--device: expected auto, cpu, cuda or cuda:N, got 'bogus'"),
])
def test_complete_options_out_of_range(files: dict[str, Path], args: list[str], fragment: str) -> None:
    assert_one_line_error(run("complete", f"{files['source']}:1:1", *args), fragment)


def test_cuda_without_cuda_says_so(files: dict[str, Path]) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert_one_line_error(run("complete", f"{files['source']}:1:1", "--device", "cuda"), "CUDA is not available")


@pytest.mark.parametrize(("location", "fragment"), [
    ("{source}:1", "expected FILE:LINE:COL"),
    ("{source}:-1:2", "expected FILE:LINE:COL"),
    ("{source}:x:1", "expected FILE:LINE:COL"),
    (":1:1", "expected FILE:LINE:COL"),
    ("{source}:0:0", "outside the file"),
    ("{root}/missing.py:1:1", "No such file or directory"),
    ("{folder}:1:1", "a folder, expected a source file"),
    ("{fifo}:1:1", "not a regular file"),
])
def test_bad_locations_and_files(files: dict[str, Path], location: str, fragment: str) -> None:
    spec = location.format(**{k: str(v) for k, v in files.items()})
    assert_one_line_error(run("complete", spec), fragment)


def test_context_reads_its_file_the_same_way(files: dict[str, Path]) -> None:
    assert_one_line_error(run("context", f"{files['fifo']}:1:1"), "not a regular file")


def test_check_output_into_a_missing_folder_fails_before_checking(files: dict[str, Path]) -> None:
    target = files["root"] / "missing" / "dir" / "out.sarif"
    out = run("check", str(files["source"]), "--format", "sarif", "-o", str(target))
    assert_one_line_error(out, "does not exist")
    assert not target.parent.exists()
    assert_one_line_error(run("check", str(files["source"]), "-o", str(files["folder"])), "is a folder")


@pytest.mark.parametrize(("args", "fragment"), [
    (["--log-level", "bogus", "doctor"], "--log-level: expected one of DEBUG"),
    (["lsp", "--tcp", "nowhere"], "--tcp: expected HOST:PORT"),
    (["lsp", "--tcp", "127.0.0.1:99999"], "--tcp: expected HOST:PORT"),
    (["model", "create-tiny", "x", "--shards", "0"], "--shards: 0 is out of range"),
    (["no-such-command"], "invalid choice: 'no-such-command'"),
    (["complete"], "the following arguments are required"),
    (["serve", "--port", "99999"], "--port: 99999 is out of range (0 to 65535)"),
    (["serve", "--device", "bogus"], "--device: expected auto, cpu, cuda or cuda:N"),
    (["serve", "--max-concurrent", "0"], "--max-concurrent: 0 is out of range"),
    (["serve", "--context-tokens", "1e9"], "--context-tokens: expected a whole number"),
])
def test_argument_errors_are_one_line(args: list[str], fragment: str) -> None:
    assert_one_line_error(run(*args), fragment)


def test_create_tiny_over_a_file_names_it(files: dict[str, Path]) -> None:
    assert_one_line_error(run("model", "create-tiny", str(files["source"])), f"{files['source']}: File exists")


def _broken_checkpoint(root: Path, change: dict) -> Path:
    out = run("model", "create-tiny", str(root / "m"))
    assert out.returncode == 0, out.stderr
    config = root / "m" / "config.json"
    config.write_text(json.dumps(json.loads(config.read_text()) | change))
    return root / "m"


@pytest.mark.parametrize(("change", "fragment"), [
    ({"num_attention_heads": -4}, "num_attention_heads must be a positive integer, not -4"),
    ({"max_position_embeddings": 32}, "max_position_embeddings must be an integer from 64"),
])
def test_an_invalid_model_config_is_one_line_naming_key_and_file(tmp_path: Path, files: dict[str, Path],
                                                                  change: dict, fragment: str) -> None:
    folder = _broken_checkpoint(tmp_path, change)
    out = run("complete", f"{files['source']}:2:5", "--model", str(folder))
    assert_one_line_error(out, fragment)
    assert str(folder / "config.json") in out.stderr
