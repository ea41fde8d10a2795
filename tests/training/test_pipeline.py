"""The whole pipeline at toy scale on this CPU: corpus -> tokenizer -> samples -> training ->
export, loaded by `loopls complete`; deterministic given the seed, whatever the worker count."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from loopls.engine.model.tokenizer import Tokenizer
from training.recipe import SMALL

ROOT = Path(__file__).resolve().parents[2]


pytestmark = pytest.mark.slow


def _train(out: Path, *extra: str) -> list[dict]:
    cmd = [sys.executable, "-m", "training", "run", str(out), "--tiny", "--machine", "ci", *extra]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    out = tmp_path_factory.mktemp("run") / "model"
    return out, _train(out, "--steps", "3,2,2,2", "--workers", "0")


def test_pipeline_logs_every_stage_and_exports_a_loadable_checkpoint(trained, tmp_path: Path) -> None:
    out, log = trained
    stages = [r["stage"] for r in log if "stage" in r]
    assert stages[:3] == ["corpus", "tokenizer", "model"] and stages.count("export") == 4  # after each phase
    steps = [r for r in log if "step" in r and "loss" in r]
    assert steps and all(r["tokens_per_s"] > 0 and r["loss"] > 0 for r in steps)
    assert {p for r in log if r.get("event") == "phase done" for p in [r["phase"]]} == {"short", "long", "fim-long", "fim"}
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "iquestloopcoder" and config["loopls_training"]["steps"] == [3, 2, 2, 2]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["totals"]["files"] > 0 and manifest["packages"]
    # the checkpoint declares the FIM layout it was trained for, and the server reads it
    assert Tokenizer.from_folder(out).special.fim_layout == SMALL.fim_layout == "spm"
    source = tmp_path / "calc.py"
    source.write_text("def add(a, b):\n    return a + b\n\n\ndef mul(a, b):\n    \n")
    done = subprocess.run([sys.executable, "-m", "loopls.lsp", "complete", f"{source}:6:5", "--model", str(out),
                           "--json", "--max-tokens", "4"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["model"]["untrained"] is False


def test_same_seed_same_weights_with_other_worker_counts(trained, tmp_path: Path) -> None:
    out, _ = trained
    again = tmp_path / "again"
    _train(again, "--steps", "3,2,2,2", "--workers", "2")
    for name in ("tokenizer.json", "model.safetensors", "manifest.json"):
        assert (again / name).read_bytes() == (out / name).read_bytes(), name


def test_continuing_a_checkpoint_runs_only_the_chosen_phase(trained, tmp_path: Path) -> None:
    out, _ = trained
    log = _train(tmp_path / "fim", "--init", str(out), "--phases", "fim", "--steps", "2,2", "--workers", "0",
                 "--fim-lr", "2e-3")
    assert [r["phase"] for r in log if r.get("event") == "phase done"] == ["fim", "fim-long"]
    # --fim-lr sets the completion phase's peak (its first steps warm up towards it)
    assert [r["recipe"]["fim_lr"] for r in log if r.get("stage") == "model"] == [2e-3]
    assert SMALL.fim_lr < max(r["lr"] for r in log if "loss" in r) <= 2e-3
    assert (tmp_path / "fim" / "tokenizer.json").read_bytes() == (out / "tokenizer.json").read_bytes()
