"""Incremental re-checks (reused trees, cached metrics) agree with a fresh whole-project check;
suppression comments; configuration errors."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from loopls.context.smells import ProjectChecker, SmellConfig
from loopls.context.smells.checks import Finding
from loopls.context.smells.suppress import parse_suppressions

BRANCHY = "def pick(kind, a, b, c, d, e):\n" + "".join(
    f"    if kind == {i} and a or b:\n        return {i}\n" for i in range(8)) + "    return None\n"
BODY = "".join(f"    acc += transform(row{i}, scale={i}) - offset\n" for i in range(14))
FILES = {
    "pkg/__init__.py": "",
    "pkg/rules.py": BRANCHY + "\n\nclass Holder:\n    def __init__(self):\n        self.v = 1\n",
    "pkg/copy_a.py": "def a(rows, offset):\n    acc = 0\n" + BODY + "    return acc\n",
    "pkg/copy_b.py": "from pkg import rules\n\n\ndef b(rows, offset):\n    acc = 0\n" + BODY + "    return acc\n",
    "web/app.ts": "export function f(a: number, b: number) {\n  return a > b ? a : b;\n}\n",
}


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def key(findings: list[Finding]) -> list[tuple]:
    return sorted((f.code, f.path, f.start, f.end, f.message) for f in findings)


def test_edits_through_check_file_match_a_fresh_check(tmp_path: Path):
    live_root, fresh_root = tmp_path / "live", tmp_path / "fresh"
    write(live_root, FILES)
    checker = ProjectChecker(live_root)
    checker.check()
    rng = random.Random(3)
    text = FILES["pkg/rules.py"]
    for step in range(25):  # insertions, deletions and edits anywhere, as typing makes them
        lines = text.split("\n")
        at = rng.randrange(len(lines))
        choice = rng.randrange(3)
        if choice == 0:
            lines.insert(at, lines[at][: len(lines[at]) - len(lines[at].lstrip())] + f"x{step} = {step}")
        elif choice == 1 and len(lines) > 12:
            del lines[at]
        else:
            lines[at] = lines[at].replace("==", "!=", 1)
        text = "\n".join(lines)
        live = checker.check_file("pkg/rules.py", text)
    write(fresh_root, {**FILES, "pkg/rules.py": text})
    fresh = ProjectChecker(fresh_root).check().findings
    assert key(live) == key([f for f in fresh if f.path == "pkg/rules.py"])
    assert any(f.code == "LS104" for f in live)  # six parameters, still there after the edits


def test_parse_suppressions():
    text = ("x = 1  # loopls: ignore\n"
            "# loopls: ignore[LS101, too-many-arguments]\n"
            "def f(): pass\n"
            "// loopls: ignore-file[duplicated-code]\n")
    marks = parse_suppressions(text)
    assert marks.lines[0] == frozenset({"*"})
    assert marks.lines[2] == frozenset({"LS101", "LS104"})
    assert marks.file == frozenset({"LS301"})
    finding = Finding("LS102", "m", "p", (2, 0), (2, 1))
    assert not marks.silences(finding)
    assert marks.silences(Finding("LS104", "m", "p", (2, 0), (2, 1)))
    assert marks.silences(Finding("LS301", "m", "p", (9, 0), (9, 1)))


def test_bad_configuration_is_a_clear_error():
    with pytest.raises(ValueError, match="maxCyclomatic"):
        SmellConfig.from_settings({"maxCyclomtic": 3})
    with pytest.raises(ValueError, match="whole number"):
        SmellConfig.from_settings({"maxCyclomatic": 2.5})
    with pytest.raises(ValueError, match="unknown check"):
        SmellConfig.from_settings({}, ["LS999"])
    assert SmellConfig.from_settings({"maxCyclomatic": 12.0}).max_cyclomatic == 12


def test_binary_and_huge_files_are_skipped_with_a_note(tmp_path: Path):
    write(tmp_path, {"ok.py": "def f():\n    return 1\n"})
    (tmp_path / "blob.py").write_bytes(b"\0\1\2" * 100)
    report = ProjectChecker(tmp_path).check()
    assert report.files == 1 and any("blob.py" in e for e in report.errors)


def test_relex_around_random_edits_equals_lexing_from_scratch():
    """Random edits, many of them opening or closing strings and comments far from the edit."""
    import numpy as np

    from loopls.context.smells.clones import _lex_from, relex

    rng = random.Random(11)
    pieces = [b'"', b"'", b"#", b"/*", b"*/", b"//", b"\n", b" ", b"x", b"1", b"(", b'"""', b"'''", b"\\", b"ab", b"`"]
    samples = {
        "python": ("def f(a, b='x#y'):\n    \"\"\"doc\"\"\"\n    return a + b  # sum\n" * 40).encode(),
        "c": b'int f(void) { /* c */ char *s = "a\\"b"; // x\n return s[0] + 1.5e3; }\n' * 40,
    }
    for lang, text in samples.items():
        vocab: dict[bytes, int] = {}
        pairs = list(_lex_from(text, lang))
        starts = np.array([s for s, _ in pairs], dtype=np.int64)
        ids = np.array([vocab.setdefault(t, len(vocab) + 1) for _, t in pairs], dtype=np.int64)
        for _ in range(200):
            at = rng.randrange(len(text) + 1)
            new = text[:at] + b"".join(rng.choice(pieces) for _ in range(rng.randrange(4))) + \
                text[at + rng.randrange(6):]
            starts, ids = relex(text, starts, ids, new, lang, vocab)
            expected = list(_lex_from(new, lang))
            assert starts.tolist() == [s for s, _ in expected]
            assert ids.tolist() == [vocab.setdefault(t, len(vocab) + 1) for _, t in expected]
            text = new
