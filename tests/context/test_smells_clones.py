"""The duplicated-code detector builds only the clones it reports: the per-file cap bounds the
clones built however many runs a file has, the rest are counted, and the reported ones are
the first of the full list."""

from __future__ import annotations

from pathlib import Path

import pytest

from loopls.context.smells import ProjectChecker, SmellConfig
from loopls.context.smells import clones as clone_module
from loopls.context.smells.clones import CloneIndex


@pytest.fixture
def built(monkeypatch) -> list[int]:
    """Counts every Clone the detector makes."""
    made = [0]
    real = clone_module.Clone

    def counting(*args, **kwargs):
        made[0] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(clone_module, "Clone", counting)
    return made


def _index(files: dict[str, bytes]) -> CloneIndex:
    index = CloneIndex(min_tokens=30)
    for path, source in files.items():
        index.add(path, source, "python")
    index.build()
    return index


def test_a_capped_listing_is_the_head_of_the_full_one_and_counts_the_rest():
    source = b"y = 1\n" * 3_000
    other = b"def f():\n" + b"    y = 1\n" * 40
    full, none_left = _index({"other.py": other}).clones_for("big.py", source, "python")
    capped, more = _index({"other.py": other}).clones_for("big.py", source, "python", limit=25)
    assert none_left == 0 and len(full) > 1_000  # the runs break every line: one clone per line
    assert capped == full[:25]
    assert len(capped) + more == len(full)


def test_clones_built_stay_at_the_cap_for_20000_identical_lines(built: list[int]):
    source = b"y = 1\n" * 20_000
    index = _index({"small.py": b"x = 2\n"})
    clones, more = index.clones_for("big.py", source, "python", limit=200)
    assert len(clones) == 200 and more > 15_000
    assert built[0] == 200  # not one per run
    everything, unbuilt = _index({"big.py": source}).all_clones(limit=50)
    assert len(everything) == 50 and unbuilt["big.py"] > 2 * 15_000  # each pair counts on both sides
    assert built[0] == 250


def test_the_file_check_reports_the_cap_and_one_note(tmp_path: Path, built: list[int]):
    (tmp_path / "util.py").write_text("def helper(a, b):\n    return a + b\n")
    checker = ProjectChecker(tmp_path, SmellConfig(max_findings_per_file=40))
    checker.check()
    findings = checker.check_file("big.py", "y = 1\n" * 20_000)
    *clones, note = findings
    assert len(clones) == 40 and {f.code for f in clones} == {"LS301"}
    assert note.code == "LS001" and note.value > 15_000
    assert note.message.startswith(f"{note.value - 40:,} more findings in this file are not reported")
    assert built[0] <= 80  # at most the cap from each of the two sources (other files, the file itself)


def test_suppressed_clones_do_not_use_up_the_cap(tmp_path: Path):
    lines = ["y = 1  # loopls: ignore[LS301]"] * 60 + ["y = 1"] * 3_000
    (tmp_path / "util.py").write_text("def helper(a, b):\n    return a + b\n")
    checker = ProjectChecker(tmp_path, SmellConfig(max_findings_per_file=10, min_clone_tokens=30))
    checker.check()
    *clones, note = checker.check_file("big.py", "\n".join(lines) + "\n")
    assert len(clones) == 10 and all(f.start[0] >= 60 for f in clones)
    assert note.code == "LS001"
    silenced = checker.check_file("big.py", "# loopls: ignore-file[LS301]\n" + "y = 1\n" * 3_000)
    assert silenced == []
