"""Project-level smells on real git repositories built in the tests with GitPython."""

from __future__ import annotations

import json
from pathlib import Path

import git
import pytest

from loopls.context.smells import ProjectChecker, SmellConfig
from loopls.context.smells.project import change_coupling, import_cycles
from loopls.context.history import read_history
from loopls.lsp.cli import main as cli_main


def commit(repo: git.Repo, files: dict[str, str], message: str = "change") -> None:
    root = Path(repo.working_tree_dir)
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    repo.index.add(list(files))
    repo.index.commit(message, author=git.Actor("dev", "dev@example.com"))


@pytest.fixture
def repo(tmp_path: Path) -> git.Repo:
    return git.Repo.init(tmp_path / "proj")


def codes(findings, path=None):
    return sorted(f.code for f in findings if path is None or f.path == path)


def test_import_cycle_reported_with_full_path_on_each_member(repo):
    commit(repo, {
        "pkg/__init__.py": "",
        "pkg/a.py": "from pkg import b\n",
        "pkg/b.py": "import os\nfrom . import c\n",
        "pkg/c.py": "\n\nimport pkg.a\n",
        "pkg/d.py": "from pkg import a\n",
        "web/x.ts": "import {y} from './y';\n",
        "web/y.ts": "import {x} from './x';\n",
    })
    report = ProjectChecker(Path(repo.working_tree_dir), SmellConfig(disabled=frozenset({"LS301"}))).check()
    cycles = {f.path: f for f in report.findings if f.code == "LS401"}
    assert set(cycles) == {"pkg/a.py", "pkg/b.py", "pkg/c.py", "web/x.ts", "web/y.ts"}
    assert "pkg/a.py -> pkg/b.py -> pkg/c.py -> pkg/a.py" in cycles["pkg/a.py"].message
    assert "pkg/c.py -> pkg/a.py -> pkg/b.py -> pkg/c.py" in cycles["pkg/c.py"].message
    assert cycles["pkg/b.py"].start == (1, 0)  # the `from . import c` line
    assert cycles["pkg/c.py"].start == (2, 0)
    assert import_cycles({"a": {"b"}, "b": {"a"}, "c": {"c"}}) == [["a", "b", "a"], ["c", "c"]]


def test_change_coupling_follows_code_maat(repo):
    root = Path(repo.working_tree_dir)
    for i in range(6):
        commit(repo, {"x.py": f"X = {i}\n", "y.py": f"Y = {i}\n"})
    for i in range(2):
        commit(repo, {"x.py": f"X = 10{i}\n"})
    for i in range(3):
        commit(repo, {"x.py": f"X = 20{i}\n", "z.py": f"Z = {i}\n"})
    big = {f"gen/f{i}.py": "G = 1\n" for i in range(31)}
    commit(repo, {**big, "x.py": "X = 0\n", "y.py": "Y = 0\n"})  # > 30 files: skipped
    commits = read_history(root)
    couplings = change_coupling(commits)
    assert [(c.path, c.other, c.shared) for c in couplings] == [("x.py", "y.py", 6)]
    # revisions: x 11, y 6 -> degree = 6 / ((11 + 6) / 2)
    assert couplings[0].degree == pytest.approx(100 * 6 / 8.5)
    report = ProjectChecker(root, SmellConfig(disabled=frozenset({"LS301"}))).check()
    coupled = [f for f in report.findings if f.code == "LS403"]
    assert {f.path for f in coupled} == {"x.py", "y.py"}
    assert "70%" in coupled[0].message and "threshold 30%" in coupled[0].message
    assert coupled[0].related


def test_hotspots_and_shotgun_surgery(repo):
    root = Path(repo.working_tree_dir)
    branchy = "def f(a):\n" + "".join(f"    if a == {i}:\n        return {i}\n" for i in range(12)) + "    return a\n"
    for partner in ("p1.py", "p2.py", "p3.py"):  # each partner changes with the hub, never with the others
        for i in range(5):
            commit(repo, {"hub.py": branchy + f"V = '{partner}{i}'\n", partner: f"A = {i}\n"})
    commit(repo, {"quiet.py": branchy})
    config = SmellConfig(hotspot_min_revisions=3, hotspot_min_complexity=5, shotgun_min_partners=3,
                         disabled=frozenset({"LS301"}))
    report = ProjectChecker(root, config).check()
    assert codes(report.findings, "hub.py") == ["LS101", "LS106", "LS402", "LS403", "LS403", "LS403", "LS404"]
    assert codes(report.findings, "p1.py") == ["LS403"]  # coupled to the hub only: no shotgun surgery
    coupling = next(f for f in report.findings if f.code == "LS403" and f.path == "p1.py")
    assert "coupling 50%" in coupling.message  # 5 shared / mean(15, 5) revisions
    spot = next(f for f in report.findings if f.code == "LS402")
    assert spot.value == 15 * 13 and "15 revisions x complexity 13" in spot.message
    assert "LS402" not in codes(report.findings, "quiet.py")  # complex but changed once


def test_change_impact_between_head_and_working_tree(repo):
    root = Path(repo.working_tree_dir)
    commit(repo, {
        "geo/__init__.py": "",
        "geo/shapes.py": "def area(w, h):\n    return w * h\n\n\nclass Box:\n    def volume(self, w, h, d):\n        return w * h * d\n",
        "app.py": "from geo import shapes\nfrom geo.shapes import area, Box\n\n"
                  "print(area(2, 3))\nprint(shapes.area(w=1, h=2))\nprint(Box().volume(1, 2, 3))\n",
        "other.py": "def area(x):\n    return x\n\nprint(area(1))\n",
    })
    (root / "geo/shapes.py").write_text(
        "def area(w, h, depth):\n    return w * h * depth\n\n\nclass Box:\n    def volume(self, w, h, d=1):\n        return w * h * d\n")
    checker = ProjectChecker(root, SmellConfig(disabled=frozenset({"LS301"})))
    report = checker.check()
    impacts = [f for f in report.findings if f.code == "LS501"]
    assert [(f.path, f.start[0]) for f in impacts] == [("app.py", 3), ("app.py", 4)]
    assert "missing depth" in impacts[0].message and "(w, h)" in impacts[0].message
    # an open buffer: the signature gets a default, the call sites fit again
    fixed = "def area(w, h, depth=1):\n    return w * h * depth\n"
    checker.check_file("geo/shapes.py", fixed)
    assert [f.code for f in checker.check_file("app.py") if f.code == "LS501"] == []
    # and a keyword that no longer exists is caught too
    checker.check_file("geo/shapes.py", "def area(width, height):\n    return width * height\n")
    messages = [f.message for f in checker.check_file("app.py") if f.code == "LS501"]
    assert any("no parameter named 'w'" in m for m in messages)


def test_clones_suppression_and_incremental_file_check(tmp_path):
    body = "".join(f"    total += compute(item{i}, weight={i}) * factor\n" for i in range(15))
    (tmp_path / "one.py").write_text("def first(items, factor):\n    total = 0\n" + body + "    return total\n")
    (tmp_path / "two.py").write_text("import os\n\n\ndef second(items, factor):\n    total = 0\n" + body + "    return total\n")
    (tmp_path / "args.py").write_text("def many(a, b, c, d, e, f):  # loopls: ignore[too-many-arguments]\n    return a\n\n"
                                      "def also(a, b, c, d, e, f):\n    return a\n")
    checker = ProjectChecker(tmp_path)  # not a git repository: a plain walk, no history
    report = checker.check()
    clones = [f for f in report.findings if f.code == "LS301"]
    assert {f.path for f in clones} == {"one.py", "two.py"}
    assert "duplicated in two.py:" in next(f for f in clones if f.path == "one.py").message
    assert [(f.code, f.symbol) for f in report.findings if f.path == "args.py"] == [("LS104", "also")]
    edited = "def first(items, factor):\n    return sum(items) * factor\n"
    assert checker.check_file("one.py", edited) == []
    assert [f.code for f in checker.check_file("one.py")] == ["LS301"]  # back to the file on disk


def test_cli_exit_codes_and_sarif(tmp_path, capsys):
    (tmp_path / "clean.py").write_text("def ok(a):\n    return a\n")
    assert cli_main(["check", str(tmp_path)]) == 0
    (tmp_path / "bad.py").write_text("def bad(a, b, c, d, e, f, g):\n    return a\n")
    capsys.readouterr()
    assert cli_main(["check", str(tmp_path), "--format", "sarif"]) == 1
    sarif = json.loads(capsys.readouterr().out)
    assert sarif["version"] == "2.1.0" and sarif["$schema"].endswith("sarif-2.1.0.json")
    run = sarif["runs"][0]
    rules = run["tool"]["driver"]["rules"]
    (result,) = run["results"]
    assert rules[result["ruleIndex"]]["id"] == result["ruleId"] == "LS104"
    assert rules[result["ruleIndex"]]["helpUri"].endswith("docs/smells.md#too-many-arguments")
    location = result["locations"][0]["physicalLocation"]
    assert location["artifactLocation"]["uri"] == "bad.py"
    assert location["region"]["startLine"] == 1 and location["region"]["startColumn"] == 5
    assert "7" in result["message"]["text"] and "threshold 5" in result["message"]["text"]
    assert cli_main(["check", str(tmp_path), "--threshold", "maxArguments=7"]) == 0
    assert cli_main(["check", str(tmp_path), "--disable", "LS104", "--format", "json"]) == 0
    assert cli_main(["check", str(tmp_path), "--threshold", "maxNothing=1"]) == 2
    assert cli_main(["check", str(tmp_path / "missing")]) == 2
    (tmp_path / "pyproject.toml").write_text("[tool.loopls.smells]\ndisabled = ['too-many-arguments']\n")
    assert cli_main(["check", str(tmp_path)]) == 0


def test_change_impact_in_a_subfolder_and_in_typescript(repo):
    root = Path(repo.working_tree_dir)
    commit(repo, {
        "web/src/math.ts": "export function scale(v: number, by: number): number {\n  return v * by;\n}\n",
        "web/src/main.ts": "import { scale } from './math';\n\nconsole.log(scale(2, 3));\nconsole.log(scale(1, 2));\n",
        "README.md": "top-level file outside the checked folder\n",
    })
    (root / "web/src/math.ts").write_text(
        "export function scale(v: number, by: number, unit: string): number {\n  return v * by;\n}\n")
    report = ProjectChecker(root / "web", SmellConfig(disabled=frozenset({"LS301"}))).check()
    impacts = [(f.path, f.start[0]) for f in report.findings if f.code == "LS501"]
    assert impacts == [("src/main.ts", 2), ("src/main.ts", 3)]
    assert all("missing #3" in f.message for f in report.findings if f.code == "LS501")


def test_change_impact_in_go_java_and_rust(repo):
    root = Path(repo.working_tree_dir)
    commit(repo, {
        "go.mod": "module example.com/m\n",
        "geo/geo.go": "package geo\n\nfunc Area(w, h int) int {\n\treturn w * h\n}\n",
        "main.go": "package main\n\nimport \"example.com/m/geo\"\n\nfunc main() {\n\tprintln(geo.Area(2, 3))\n}\n",
        "src/main/java/a/Util.java": "package a;\npublic class Util {\n  public static int add(int x, int y) { return x + y; }\n}\n",
        "src/main/java/a/App.java": "package a;\nclass App {\n  int run() { return Util.add(1, 2); }\n}\n",
        "src/lib.rs": "mod util;\nfn main() { util::scale(1, 2); }\n",
        "src/util.rs": "pub fn scale(a: i32, b: i32) -> i32 { a * b }\n",
    })
    (root / "geo/geo.go").write_text("package geo\n\nfunc Area(w, h, d int) int {\n\treturn w * h * d\n}\n")
    (root / "src/main/java/a/Util.java").write_text(
        "package a;\npublic class Util {\n  public static int add(int x, int y, int z) { return x + y; }\n}\n")
    (root / "src/util.rs").write_text("pub fn scale(a: i32) -> i32 { a }\n")
    report = ProjectChecker(root, SmellConfig(disabled=frozenset({"LS301"}))).check()
    impacts = {f.path: (f.start[0], f.message) for f in report.findings if f.code == "LS501"}
    assert set(impacts) == {"main.go", "src/main/java/a/App.java", "src/lib.rs"}
    assert impacts["main.go"][0] == 5 and "missing #3" in impacts["main.go"][1]
    assert "missing #3" in impacts["src/main/java/a/App.java"][1]
    assert "2 positional arguments given, at most 1 accepted" in impacts["src/lib.rs"][1]
