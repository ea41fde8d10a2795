"""The one project model: retrieval and smells share its files, trees and history; its rules
apply to the smell checks too; nothing it reads can hang it."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from context_helpers import make_repo, write

from loopls.context import project as project_module
from loopls.context.languages import Languages
from loopls.context.project import Project
from loopls.context.smells import ProjectChecker, SmellConfig

WIDE = "def wide(a, b, c, d, e, f, g):\n    return a\n"
FILES = {
    "app/main.py": "from app import util\n\n\ndef run():\n    return util.helper(1)\n",
    "app/__init__.py": "",
    "app/util.py": "def helper(x):\n    return x\n\n\n" + WIDE,
    "web/index.js": "const api = require('./api');\nmodule.exports = api;\n",
    "web/api.js": "module.exports = function createApi(base) {\n  return { base };\n};\n",
    "README.md": "# notes\n",
}


class CountingLanguages(Languages):
    """Languages whose parsers count every parse."""

    def __init__(self) -> None:
        super().__init__()
        self.parses = 0

    def parser(self, name: str):
        real, languages = super().parser(name), self

        class Counting:
            def parse(self, source, *old):
                languages.parses += 1
                return real.parse(source, *old)

        return Counting()


def test_cold_build_with_both_features_parses_each_file_once_and_reads_history_once(tmp_path, monkeypatch):
    make_repo(tmp_path, [FILES, {"app/util.py": FILES["app/util.py"] + "\nX = 1\n"}])
    reads = []
    real_read = project_module.read_history
    monkeypatch.setattr(project_module, "read_history", lambda *a, **k: reads.append(a) or real_read(*a, **k))
    languages = CountingLanguages()
    project = Project(tmp_path, languages=languages)
    checker = ProjectChecker(project, SmellConfig(hotspot_min_revisions=1))
    report = checker.check()  # builds the project, feeding every tree to the checker
    sources = [p for p in project.files if p.endswith((".py", ".js"))]
    assert languages.parses == len(sources) == 5
    assert {f.path for f in report.findings if f.code == "LS104"} == {"app/util.py"}
    from loopls.context.assemble import ContextEngine

    class Counter:
        def encode(self, text):
            return list(text.encode())

    ContextEngine(project, Counter(), object())  # retrieval reads the same history
    assert len(reads) == 1
    # retrieval and smells read one import graph
    assert project.imports.imports_of("app/main.py") == {"app/util.py"}
    assert project.imports.imports_of("web/index.js") == {"web/api.js"}  # CommonJS require
    assert checker.files["app/main.py"].edges.keys() == project.imports.import_rows("app/main.py").keys()


def test_privacy_rules_and_looplsignore_apply_to_smells(tmp_path):
    write(tmp_path, {"ok.py": WIDE, "secrets.py": WIDE, "vendor/lib.py": WIDE, ".looplsignore": "vendor/\n",
                     ".env.py": WIDE})
    checker = ProjectChecker(tmp_path)
    report = checker.check()
    assert {f.path for f in report.findings} == {"ok.py"}
    assert checker.check_file("secrets.py", WIDE + WIDE.replace("wide", "wider")) == []
    assert checker.check_file("vendor/lib.py") == []


def test_a_file_over_the_line_limit_gets_one_note_and_findings_are_capped(tmp_path):
    write(tmp_path, {"long.py": "y = 1\n" * 300, "many.py": "".join(WIDE.replace("wide", f"w{i}") for i in range(8))})
    checker = ProjectChecker(tmp_path, SmellConfig(max_file_lines=200, max_findings_per_file=3))
    report = checker.check()
    (note,) = [f for f in report.findings if f.path == "long.py"]
    assert note.code == "LS001" and "301 lines exceed the 200-line limit" in note.message
    many = [f for f in report.findings if f.path == "many.py"]
    assert sorted(f.code for f in many) == ["LS001"] + ["LS104"] * 3
    assert "5 more findings" in next(f for f in many if f.code == "LS001").message
    assert sorted(f.code for f in checker.check_file("many.py")) == ["LS001"] + ["LS104"] * 3


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes need a POSIX system")
def test_named_pipes_never_hang_the_model_or_the_cli(tmp_path):
    write(tmp_path, {"ok.py": WIDE})
    os.mkfifo(tmp_path / "pipe.py")
    os.mkfifo(tmp_path / ".looplsignore")
    os.mkfifo(tmp_path / "pyproject.toml")
    done = {}

    def build() -> None:
        done["report"] = ProjectChecker(tmp_path).check()

    worker = threading.Thread(target=build, daemon=True)
    worker.start()
    worker.join(60)
    assert "report" in done, "the check hung on a named pipe"
    assert [f.path for f in done["report"].findings] == ["ok.py"]
    assert done["report"].files == 1  # the walk lists regular files only
    env = {**os.environ, "LOOPLS_CACHE_DIR": str(tmp_path / "cache")}
    for args in (["check", str(tmp_path)], ["index", str(tmp_path), "--quiet"],
                 ["context", f"{tmp_path / 'pipe.py'}:1:1"]):
        proc = subprocess.run([sys.executable, "-m", "loopls.lsp", *args], capture_output=True, text=True,
                              timeout=120, env=env, stdin=subprocess.DEVNULL)
        assert proc.returncode in (0, 1, 2), (args, proc.stderr)
    assert "not a regular file" in proc.stderr  # `loopls context` on the pipe itself: a clear error


def test_buffer_updates_are_incremental_and_match_the_disk_after_close(tmp_path):
    make_repo(tmp_path, [FILES])
    project = Project(tmp_path)
    project.build()
    before = project.versions["app/util.py"]
    project.update_document("app/util.py", FILES["app/util.py"] + "def added():\n    pass\n")
    doc = project.documents["app/util.py"]
    assert project.definitions("added") and project.versions["app/util.py"] > before
    project.update_document("app/util.py", doc.text.replace("added", "renamed"))
    assert project.definitions("renamed") and not project.definitions("added")
    assert project.tree("app/util.py")[1] is doc.tree  # the buffer's own incremental tree
    project.close_document("app/util.py")
    assert not project.definitions("renamed") and project.definitions("helper")


def test_a_buffer_too_large_to_parse_is_not_indexed_until_it_shrinks(tmp_path):
    make_repo(tmp_path, [FILES])
    project = Project(tmp_path)
    project.workspace.max_file_bytes = 2000
    project.build()
    project.update_document("app/util.py", "def huge():\n    pass\n" + "x = 1\n" * 1000)
    assert "app/util.py" in project.oversize and not project.definitions("huge")
    assert "exceed the 2,000-byte limit" in project.oversize["app/util.py"]
    checker = ProjectChecker(project)
    checker.check()
    (note,) = checker.findings_for("app/util.py")
    assert note.code == "LS001" and "2,000-byte limit" in note.message
    project.update_document("app/util.py", "def small():\n    pass\n")
    assert "app/util.py" not in project.oversize and project.definitions("small")


def test_a_buffer_or_file_over_the_line_limit_is_not_parsed(tmp_path):
    make_repo(tmp_path, [{**FILES, "long.py": "def far():\n    pass\n" + "y = 1\n" * 99}])
    project = Project(tmp_path)
    project.workspace.max_file_lines = 100
    project.build()
    assert "long.py" not in project.files and "102 lines exceed the 100-line limit" in project.skipped["long.py"]
    project.update_document("app/util.py", "def many():\n    pass\n" + "y = 1\n" * 200)
    assert "203 lines exceed the 100-line limit" in project.oversize["app/util.py"]
    assert not project.definitions("many") and project.documents["app/util.py"].tree is None
    checker = ProjectChecker(project)
    checker.check()
    (note,) = checker.findings_for("app/util.py")
    assert note.code == "LS001" and "100-line limit" in note.message
    project.update_document("app/util.py", "def many():\n    pass\n")
    assert "app/util.py" not in project.oversize and project.definitions("many")
