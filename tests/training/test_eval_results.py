"""The completion evaluation's results files: shards read together, two models compared on
the targets both have (bench/eval_completion.py, bench/compare_completion.py)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from compare_completion import compare, lift, with_context  # noqa: E402
from eval_completion import _records, _shard  # noqa: E402


def _write(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _row(case: str, em: bool, es: float, setting: str = "file only 2K", kind: str = "line") -> dict:
    return {"case": case, "setting": setting, "kind": kind, "em": em, "es": es}


def test_a_models_results_are_its_file_and_its_shards(tmp_path: Path) -> None:
    _write(tmp_path / "m.jsonl", [_row("a", True, 1.0)])
    _write(tmp_path / "m.shard0of2.jsonl", [_row("b", False, 0.5)])
    _write(tmp_path / "m.shard1of2.jsonl", [_row("c", False, 0.25)])
    _write(tmp_path / "other.jsonl", [_row("d", False, 0.0)])
    for name in ("m.jsonl", "m.shard1of2.jsonl"):
        assert sorted(r["case"] for r in _records(tmp_path / name)) == ["a", "b", "c"]
    assert _records(tmp_path / "none.jsonl") == []


def test_a_shard_is_i_of_n() -> None:
    assert _shard("1/3") == (1, 3)
    for bad in ("3/3", "x/2", "1"):
        with pytest.raises(argparse.ArgumentTypeError):
            _shard(bad)


def test_models_are_compared_on_the_targets_both_have_with_paired_errors() -> None:
    a = [_row("t1", False, 0.2), _row("t2", True, 1.0), _row("t3", False, 0.4), _row("only-a", True, 1.0)]
    b = [_row("t1", False, 0.3), _row("t2", True, 1.0), _row("t3", True, 1.0)]
    header, rule, row = compare(a, b)
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[0] == "line, file only 2K (3)"
    assert cells[1:4] == ["33.3% ± 33.3%", "66.7% ± 33.3%", "+33.3% ± 33.3%"]
    assert cells[4] == "0.533 ± 0.240" and cells[5] == "0.767 ± 0.233"
    assert cells[6] == "+0.233 ± 0.186"


def test_a_settings_lift_is_paired_over_the_targets_that_have_the_base_setting() -> None:
    rows = [_row("t1", False, 0.2), _row("t2", True, 1.0), _row("t3", False, 0.5),
            _row("t1", True, 1.0, "loopls 8K"), _row("t2", True, 1.0, "loopls 8K"), _row("t4", True, 1.0, "loopls 8K"),
            _row("t3", False, 0.4, "loopls 8K", "block")]
    header, rule, line8k = lift(rows, "file only 2K")[:3]
    cells = [c.strip() for c in line8k.strip("|").split("|")]
    assert cells[0] == "line, loopls 8K (2)"  # t4 has no file-only result
    assert cells[1:4] == ["100.0% ± 0.0%", "50.0% ± 50.0%", "+50.0% ± 50.0%"]
    assert cells[4:7] == ["1.000 ± 0.000", "0.600 ± 0.400", "+0.400 ± 0.400"]
    block = [c.strip() for c in lift(rows, "file only 2K")[3].strip("|").split("|")]
    assert block[0] == "block, loopls 8K (1)" and block[6] == "-0.100 ± 0.000"


def test_targets_with_context_are_those_whose_loopls_prompt_differs_from_the_file_alone() -> None:
    rows = [dict(_row("t1", False, 0.1, "loopls 2K"), prompt_tokens=2001), dict(_row("t1", False, 0.1), prompt_tokens=1869),
            dict(_row("t2", False, 0.1, "loopls 2K"), prompt_tokens=900), dict(_row("t2", False, 0.1), prompt_tokens=900)]
    assert with_context(rows) == {"t1"}


def test_the_error_probe_continues_the_top_first_tokens_and_its_first_is_greedy() -> None:
    """bench/completion_errors.py: candidate 1 is what greedy decoding writes (the engine's
    `generate`, stopped at the line's end); the answer's first token is ranked in the same
    distribution; candidates come in the order of their first token's probability."""
    from completion_errors import Probe, probe_target

    from loopls.engine.model.generate import generate
    from loopls.engine.model.loader import load_checkpoint
    from loopls.engine.model.models import default_model_dir
    from loopls.engine.model.sampling_params import SamplingParams

    lm = load_checkpoint(default_model_dir(), "cpu", "float32")
    ids = lm.tokenizer.encode("import os\n\n\ndef home():\n    return os.")
    record = probe_target(Probe(lm), ids, "environ['HOME']", 3)
    cands = record["candidates"]
    assert len(cands) == 3 and cands[0]["p"] >= cands[1]["p"] >= cands[2]["p"]
    greedy = generate(lm, ids, SamplingParams(max_tokens=48, temperature=0.0, stop=("\n",)))
    assert cands[0]["text"] == greedy.text.split("\n", 1)[0].strip()
    assert record["gold_first_rank"] >= 0 and 0 < record["gold_first_p"] <= 1
    assert record["name_in_prompt"] == 0  # "environ" is not in the prompt
    assert all(c["mean_logp"] <= 0 for c in cands)


def test_the_error_summary_reads_the_shards_and_counts_the_oracle(tmp_path: Path) -> None:
    from completion_errors import summary

    def cand(text: str, es: float, mean: float) -> dict:
        return {"first": text[:1], "p": 0.5, "text": text, "mean_logp": mean, "es": es}

    def target(rank: int, named: int) -> dict:
        return {"prompt_tokens": 10, "gold_first_rank": rank, "gold_first_p": 0.1, "name_in_prompt": named,
                "candidates": [cand("a", 0.2, -2.0), cand("gold", 1.0, -1.0)]}

    _write(tmp_path / "e.shard0of2.jsonl", [{"case": "x", "gold": "gold", "file only": target(1, 1),
                                             "loopls": target(0, 1)}])
    _write(tmp_path / "e.shard1of2.jsonl", [{"case": "y", "gold": "other", "file only": target(5, 0),
                                             "loopls": target(5, 2)}])
    lines = summary(tmp_path / "e.jsonl")
    assert lines[0] == "2 line targets"
    file_only = [c.strip() for c in lines[4].strip("|").split("|")]
    # greedy 0 of 2 exact; oracle and rerank pick "gold" on both: 1 of 2 exact
    assert file_only[:7] == ["file only", "0.0%", "0.200", "50.0%", "1.000", "50.0%", "1.000"]
    assert file_only[7:] == ["0.0%", "50.0%", "1 of 2", "0.0%"]
    loopls = [c.strip() for c in lines[5].strip("|").split("|")]
    assert loopls[7:] == ["50.0%", "50.0%", "2 of 2", "50.0%"]


def test_best_of_tables_pick_by_score_and_pair_with_greedy(tmp_path: Path) -> None:
    """bench/completion_errors.py: best-of-k picks among the first k candidates by the
    engine's own scores (engine/model/rerank.py), paired against greedy (candidate 1)."""
    from completion_errors import best_of_table, context_table

    def cand(text: str, es: float, logps: list[float], unknown: int = 0) -> dict:
        return {"first": text[:1], "p": 0.5, "text": text, "mean_logp": sum(logps) / len(logps), "es": es,
                "logps": logps, "unknown": unknown}

    def probed(named: int, *cands: dict) -> dict:
        return {"prompt_tokens": 10, "gold_first_rank": 1, "gold_first_p": 0.1, "name_in_prompt": named,
                "candidates": list(cands)}

    greedy, right = cand("x", 0.0, [-1.0, -1.0]), cand("gold", 1.0, [-0.5, -0.5, -0.5, -0.5], unknown=2)
    third = cand("gold", 1.0, [-0.1])
    rows = [{"case": "a", "gold": "gold", "file only": probed(0, greedy, right, cand("y", 0.0, [-3.0])),
             "loopls": probed(1, greedy, cand("z", 0.0, [-3.0]), cand("w", 0.0, [-3.0]), third)}]
    _write(tmp_path / "e.jsonl", rows)
    table = {tuple(c.strip() for c in line.strip("|").split("|")[:2]): line for line in best_of_table(tmp_path / "e.jsonl")}
    # file only: mean and sqrt pick "gold" (-0.5 > -1.0; -1.0 > -1.41); names pays 2 nats for its names
    assert "| 100.0% | +100.0 ± 0.0 | 1.000 | +1.000 ± 0.000 |" in table[("file only", "best of 3, mean")]
    assert "| 100.0% |" in table[("file only", "best of 3, sqrt")]
    assert "| 0.0% |" in table[("file only", "best of 3, names")]
    # loopls: the right fourth candidate counts with k = 5 only
    assert "| 0.0% | +0.0 ± 0.0 |" in table[("loopls", "best of 3, mean")]
    assert "| 100.0% | +100.0 ± 0.0 |" in table[("loopls", "best of 5, mean")]
    lift = context_table(tmp_path / "e.jsonl")
    assert lift[-1].startswith("| name not in the file-only prompt | 1 |")
