"""History signals: co-change ranking, recent commits, the uncommitted diff."""

from __future__ import annotations

import pytest
from context_helpers import make_repo, tokenizer, write

from loopls.context.assemble import ContextEngine
from loopls.context.cochange import CoChange
from loopls.context.history import read_history, uncommitted_changes
from loopls.context.project import Project


def _history_commits():
    commits = [{"a.py": "A = 0\n", "b.py": "B = 0\n", "c.py": "C = 0\n", "d.py": "D = 0\n"}]
    for i in range(1, 6):
        commits.append({"a.py": f"A = {i}\n", "b.py": f"B = {i}\n"})  # a and b move together
    commits.append({"a.py": "A = 9\n", "c.py": "C = 9\n"})
    commits.append({"d.py": "D = 9\n"})  # the most recent change touches d only
    return commits


def test_cochange_ranks_the_coupled_file_first(tmp_path):
    make_repo(tmp_path, _history_commits())
    cochange = CoChange(read_history(tmp_path))
    ranked = cochange.coupled("a.py")
    assert [c.path for c in ranked] == ["b.py", "c.py", "d.py"]
    assert ranked[0].support == 6 and ranked[0].confidence == pytest.approx(6 / 7)
    assert cochange.by_recency()[0] == "d.py"
    assert cochange.churn["a.py"] == 7
    assert [c.files for c in cochange.recent_commits("c.py")][0] == ("a.py", "c.py")


def test_large_commits_do_not_count_as_coupling(tmp_path):
    sweep = {f"f{i}.py": f"X{i} = 1\n" for i in range(40)}
    make_repo(tmp_path, [sweep, {"f0.py": "X0 = 2\n", "f1.py": "X1 = 2\n"}])
    ranked = CoChange(read_history(tmp_path)).coupled("f0.py")
    assert [(c.path, c.support) for c in ranked] == [("f1.py", 1)]


def test_cochanged_file_reaches_the_prompt(tmp_path, tiny_checkpoint):
    make_repo(tmp_path, _history_commits())
    tok = tokenizer(tiny_checkpoint)
    index = Project(tmp_path)
    index.build()
    engine = ContextEngine(index, tok, tok.special)
    text = index.text("a.py")
    packed = engine.assemble("a.py", text, len(text), 256)
    sources = {s.path: s.source for s in packed.snippets}
    assert "cochange" in sources.get("b.py", "")
    assert packed.snippets[0].path == "b.py"  # the best-coupled file wins the small budget


def test_uncommitted_diff_is_found_and_packed(tmp_path, tiny_checkpoint):
    lines = "".join(f"value_{i} = {i}\n" for i in range(50))
    make_repo(tmp_path, [{"main.py": "print('hi')\n", "data.py": lines}])
    changed = lines.replace("value_30 = 30", "value_30 = 'edited by hand'")
    write(tmp_path, {"data.py": changed, "fresh.py": "brand_new = True\n"})
    changes = uncommitted_changes(tmp_path)
    assert changes["data.py"] == [(30, 30)]
    assert "fresh.py" in changes  # untracked files count as changed
    tok = tokenizer(tiny_checkpoint)
    index = Project(tmp_path)
    index.build()
    engine = ContextEngine(index, tok, tok.special)
    packed = engine.assemble("main.py", "print('hi')\n", 5, 512)
    diff = [s for s in packed.snippets if s.path == "data.py" and "diff" in s.source]
    assert diff and diff[0].start_line <= 30 <= diff[0].end_line
    assert "edited by hand" in tok.decode(packed.token_ids)


def test_history_outside_git_is_empty(tmp_path):
    write(tmp_path, {"a.py": "x = 1\n"})
    assert read_history(tmp_path) == [] and uncommitted_changes(tmp_path) == {}
