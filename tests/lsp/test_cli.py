"""The command line, run as a user runs it: the installed `loopls` entry point."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from loopls.lsp.version import __version__

LOOPLS = [sys.executable, "-m", "loopls.lsp"]


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*LOOPLS, *args], capture_output=True, text=True, timeout=300, cwd=cwd)


@pytest.fixture()
def source(tmp_path: Path) -> Path:
    path = tmp_path / "calc.py"
    path.write_text("def add(a, b):\n    return a + b\n\ndef mul(a, b):\n    \n    total = \n", encoding="utf-8")
    return path


def test_version() -> None:
    out = run("--version")
    assert out.returncode == 0
    assert out.stdout.strip() == f"loopls {__version__}"


def test_usage_errors_are_reported_before_the_engine_loads(source: Path) -> None:
    """A mistyped command or a bad option is answered without importing torch: the parser,
    the options and every subcommand's argument checks stay free of the engine."""
    probe = ("import sys, runpy\n"
             "sys.argv = ['loopls', *sys.argv[1:]]\n"
             "try:\n    runpy.run_module('loopls.lsp', run_name='__main__')\n"
             "except SystemExit as exc:\n    print('exit', exc.code, 'torch' in sys.modules)\n")
    for args in (["--bogus"], ["complete", f"{source}:1:1", "--max-tokens", "0"],
                 ["refactor", f"{source}:1:1", "bogus-kind"], ["complete", "missing.py:1:1"]):
        out = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True, timeout=120)
        assert out.stdout.split() == ["exit", "2", "False"], (args, out.stdout, out.stderr)
        assert "loopls" in out.stderr and "Traceback" not in out.stderr


def test_complete_json_reports_items_and_untrained_model(source: Path) -> None:
    # a line halfway written (it does not parse yet, so the random model's text is not held
    # against its syntax: `line_check.py`)
    out = run("complete", f"{source}:6:13", "--json", "--max-tokens", "8", "--model", "tiny-random")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["items"] and all(isinstance(i["insertText"], str) and i["insertText"] for i in data["items"])
    assert data["model"]["untrained"] is True
    assert "untrained" in data["notice"]
    assert 0 < data["generatedTokens"] <= 8
    assert data["promptTokens"] > 10


def test_complete_text_output_says_untrained_on_stderr(source: Path) -> None:
    out = run("complete", f"{source}:2:5", "--max-tokens", "4", "--model", "tiny")  # the old name still works
    assert out.returncode == 0, out.stderr
    assert "untrained" in out.stderr


def test_complete_with_int8_cpu_weights(source: Path) -> None:
    out = run("complete", f"{source}:5:5", "--json", "--max-tokens", "16", "--device", "cpu", "--cpu-weights", "int8")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["model"]["untrained"] is False and data["items"] and data["items"][0]["insertText"].strip()
    bad = run("complete", f"{source}:5:5", "--cpu-weights", "int4")
    assert bad.returncode == 2 and "invalid choice: 'int4'" in bad.stderr


def test_complete_with_the_default_model_is_trained_and_shows_no_notice(source: Path) -> None:
    out = run("complete", f"{source}:5:5", "--json", "--max-tokens", "16")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["model"]["untrained"] is False and data["model"]["path"].endswith("loopls-coder-small")
    assert "notice" not in data and "untrained" not in out.stderr
    assert data["items"] and data["items"][0]["insertText"].strip()


@pytest.mark.parametrize(("location", "fragment"), [("9:1", "outside the file"), ("2:99", "past the end of line 2")])
def test_complete_rejects_positions_outside_the_file(source: Path, location: str, fragment: str) -> None:
    out = run("complete", f"{source}:{location}")
    assert out.returncode == 2
    assert fragment in out.stderr
    assert "Traceback" not in out.stderr


def test_complete_rejects_binary_and_non_utf8_files(tmp_path: Path) -> None:
    binary = tmp_path / "blob.bin"
    binary.write_bytes(b"\x00\x01\x02" * 10)
    latin = tmp_path / "latin.py"
    latin.write_bytes("caf\xe9 = 1\n".encode("latin-1"))
    for path, fragment in ((binary, "binary file"), (latin, "not UTF-8")):
        out = run("complete", f"{path}:1:1")
        assert out.returncode == 2 and fragment in out.stderr, out.stderr


def test_bad_checkpoint_path_is_one_line_naming_path_and_what_is_missing(source: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty-model"
    empty.mkdir()
    out = run("complete", f"{source}:1:1", "--model", str(empty))
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert lines == [f"loopls: {empty}: missing config.json"]
    out = run("complete", f"{source}:1:1", "--model", str(tmp_path / "absent"))
    assert out.returncode == 2 and "no such checkpoint folder" in out.stderr
    out = run("complete", f"{source}:1:1", "--model", "nobody/no-such-model")
    assert out.returncode == 2 and "local Hugging Face cache" in out.stderr


def test_complete_uses_the_project_context_inside_a_git_work_tree(tmp_path: Path) -> None:
    """The same service as the server: cross-file context inside a git repository, the file
    alone outside one."""
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "geometry.py").write_text("def circle_area(radius):\n    return 3.14159 * radius ** 2\n", encoding="utf-8")
    main = repo / "main.py"
    main.write_text("from geometry import circle_area\n\ntotal = circle_area(2) + \n", encoding="utf-8")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    subprocess.run([*git, "add", "."], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-qm", "init"], cwd=repo, check=True)
    # tiny-random always writes tokens (the trained default may rightly end the line at once, and
    # a completion with no suggestion reports no prompt)
    inside = json.loads(run("complete", f"{main}:3:25", "--json", "--max-tokens", "4", "--model", "tiny-random").stdout)
    assert inside["contextFiles"] >= 1
    alone = tmp_path / "alone.py"
    alone.write_text(main.read_text(encoding="utf-8"), encoding="utf-8")
    outside = json.loads(run("complete", f"{alone}:3:25", "--json", "--max-tokens", "4", "--model", "tiny-random").stdout)
    assert outside["contextFiles"] == 0 and outside["promptTokens"] < inside["promptTokens"]


def test_create_tiny_then_complete_with_it(tmp_path: Path, source: Path) -> None:
    folder = tmp_path / "qwen"
    out = run("model", "create-tiny", str(folder), "--arch", "qwen2")
    assert out.returncode == 0, out.stderr
    assert json.loads((folder / "config.json").read_text())["model_type"] == "qwen2"
    out = run("complete", f"{source}:5:5", "--model", str(folder), "--json", "--max-tokens", "4")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["model"]["modelType"] == "qwen2"


def test_doctor_reports_packages_device_and_model() -> None:
    out = run("doctor")
    assert out.returncode == 0, out.stdout + out.stderr
    for fragment in ("torch", "pygls", "device:", "default: loopls-coder-small (trained, shipped)",
                     "untrained tiny iquestloopcoder", "all required packages present"):
        assert fragment in out.stdout


def test_wheel_installs_only_the_loopls_namespace(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(root)],
        capture_output=True, text=True, timeout=600,
    )
    assert build.returncode == 0, build.stderr
    wheel = next(tmp_path.glob("loopls-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top == {"loopls"}, top
    for sub in ("lsp", "context", "engine", "kernels"):
        assert f"loopls/{sub}/__init__.py" in names
        for init in (root / sub).rglob("__init__.py"):  # every subpackage is listed in pyproject.toml
            assert f"loopls/{init.relative_to(root).as_posix()}" in names, init
    assert not any(n.startswith("loopls/__init__.py") for n in names)  # implicit namespace
    assert "loopls/lsp/cli/demo_project/inventory.py" in names
    entry = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "loopls = loopls.lsp.cli:main" in entry


def test_demo_runs_the_main_job_end_to_end() -> None:
    out = run("demo")
    assert out.returncode == 0, out.stdout + out.stderr
    text = out.stdout
    assert "inline completion: yes" in text
    assert "untrained" not in text  # the shipped default is a trained model
    assert text.count("\u2192 ") >= 3 and "error:" not in text
    # `def total_value(self) -> float:‸`: the default model writes `:` and a body there; the
    # line check keeps the body alone
    assert "float::" not in text and "floatance" not in text
    assert "(no completion)" not in text
    assert "project index: 3 files" in text
    assert "context packed for report.py:7:79" in text and "inventory.py:" in text  # cross-file
    assert "pricing.py:6:5  LS102" in text  # a pulled code-smell diagnostic
    assert "quick fixes offered for the first one: Refactor with the model" in text
    assert "Connect an editor" in text
    assert "Ignoring notification" not in out.stderr  # the demo client takes the pushed status
