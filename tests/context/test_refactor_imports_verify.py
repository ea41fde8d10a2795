"""Organize imports (Python, JavaScript/TypeScript) and the verification rules that stand
between every edit and the editor: each rule refuses an edit that breaks it."""

from __future__ import annotations

from pathlib import Path

import pytest

from loopls.context.refactor import Edit, Refactoring, Source, apply_edits, verify
from loopls.context.refactor.organize_js import organize_js
from loopls.context.refactor.organize_python import first_party_modules, organize_python

from refactor_helpers import LANGUAGES

PY = '''"""Tools."""
from __future__ import annotations
import sys, os
from typing import TYPE_CHECKING, Any, cast, List
import json  # noqa: F401
from .local import thing
# keeps its comment
from collections import OrderedDict, defaultdict
from collections import abc as cabc
import requests
from mypkg.sub import helper
from ..up import other
import os.path

def f(x: "List[int]") -> Any:
    return os.path.join(thing, helper(OrderedDict()), requests, other, sys)
'''


def test_organize_python_sorts_groups_and_removes_unused():
    src = Source(PY, "python", LANGUAGES)
    (result,) = organize_python(src, "tools.py", frozenset({"mypkg"}))
    assert result.kind == "source.organizeImports"
    assert apply_edits(PY, result.edits) == '''"""Tools."""
from __future__ import annotations

import json  # noqa: F401
import os
import os.path
import sys
# keeps its comment
from collections import OrderedDict
from typing import Any, List

import requests

from mypkg.sub import helper

from ..up import other
from .local import thing

def f(x: "List[int]") -> Any:
    return os.path.join(thing, helper(OrderedDict()), requests, other, sys)
'''


def test_organize_python_keeps_everything_in_an_init_and_offers_nothing_when_done():
    text = "import sys\nimport os\n"
    (result,) = organize_python(Source(text, "python", LANGUAGES), "pkg/__init__.py")
    assert apply_edits(text, result.edits) == "import os\nimport sys\n"
    done = "import os\n\nprint(os.sep)\n"
    assert organize_python(Source(done, "python", LANGUAGES), "m.py") == []
    gone = "import os\n\n\ndef f():\n    return 1\n"
    (result,) = organize_python(Source(gone, "python", LANGUAGES), "m.py")
    assert apply_edits(gone, result.edits) == "def f():\n    return 1\n"


def test_first_party_modules(tmp_path: Path):
    (tmp_path / "src" / "app").mkdir(parents=True)
    (tmp_path / "src" / "app" / "__init__.py").write_text("")
    (tmp_path / "tool.py").write_text("")
    (tmp_path / "docs").mkdir()
    assert first_party_modules(tmp_path) == {"app", "tool"}


def test_organize_typescript_sorts_merges_and_drops_unused_names():
    text = '''import { z, a as b, unused } from './util';
import Def from "lib";
import { y } from './util';
import "./polyfill";
import { Q } from "q";
import type { T } from './types';

const v: T = b(z, y, Def, Q);
'''
    (result,) = organize_js(Source(text, "typescript", LANGUAGES))
    assert apply_edits(text, result.edits) == '''import { a as b, y, z } from './util';
import Def from 'lib';
import "./polyfill";
import type { T } from "./types";
import { Q } from "q";

const v: T = b(z, y, Def, Q);
'''


def test_organize_jsx_keeps_react():
    text = "import React from 'react';\nimport { x } from './x';\nexport const App = () => <div/>;\n"
    (result,) = organize_js(Source(text, "javascript", LANGUAGES))
    assert apply_edits(text, result.edits) == "import React from 'react';\nexport const App = () => <div/>;\n"


# -- verification --------------------------------------------------------------------------------

MODULE = '''API = "v1"


def helper(x):
    return x + 1


def main(items):
    total = 0
    for item in items:
        total += helper(item)
    return total
'''


def _edit(text: str, old: str, new: str, target: str | None = None, preserve: str | None = None,
          language: str = "python") -> Refactoring:
    start = text.index(old)
    t = text.index(target) if target else start
    t_end = t + len(target) if target else start + len(old)
    return verify(Source(text, language, LANGUAGES),
                  Refactoring("refactor.rewrite.simplify", "test", (Edit(start, start + len(old), new),), (t, t_end),
                              preserve=preserve), LANGUAGES)


def test_a_good_edit_passes():
    result = _edit(MODULE, "    total = 0\n    for item in items:\n        total += helper(item)\n    return total",
                   "    return sum(helper(item) for item in items)")
    assert result.reason is None and result.edits


@pytest.mark.parametrize("old, new, target, reason", [
    # rule 1: only the target changed
    ("return x + 1", "return x + 2", "total = 0", "outside its target"),
    # rule 2: parses
    ("return x + 1", "return x +", None, "would not parse"),
    # rule 3: no definition added or removed outside the target, none re-declared
    ("    return total", "    return total\n\n\ndef helper(x):\n    return x", None, "re-declares `helper`"),
    # rule 4: names still resolve
    ("def helper(x):\n    return x + 1", "def helper2(x):\n    return x + 1", None, "`helper` at line 11 would no"),
    ("        total += helper(item)", "        total += helpr(item)", None, "reads `helpr`"),
    ("for item in items:", "for it in items:", None, "`item` at line 11 would no longer be defined"),
    # rule 5: secrets
    ("return x + 1", 'return x + len("AKIAABCDEFGHIJKLMNOP")', None, "secret-looking"),
    ("return x + 1", 'return x + len("<redacted>")', None, "redaction marker"),
])
def test_each_rule_refuses_what_breaks_it(old, new, target, reason):
    result = _edit(MODULE, old, new, target)
    assert result.edits == ()
    assert reason in result.reason, result.reason


def test_python_must_still_compile_where_tree_sitter_is_lenient():
    # tree-sitter parses a class with no body at the end of a file; Python does not
    result = _edit(MODULE, "    return total\n", "    return total\n\n\nclass Base(object):\n")
    assert result.edits == () and "would not parse (expected an indented block" in result.reason
    # a file Python never compiled (here: `return` outside a function) is judged by the tree alone
    odd = MODULE + "\nreturn 1\n"
    assert _edit(odd, "return x + 1", "return x + 2").reason is None


def test_the_file_must_parse_before():
    broken = MODULE + "\ndef oops(:\n"
    result = _edit(broken, "return x + 1", "return x + 2")
    assert "syntax error" in result.reason and "fix it first" in result.reason


def test_a_docstring_rewrite_may_change_only_docstrings():
    text = "def helper(x):\n    return x + 1\n"
    good = "def helper(x):\n    \"\"\"One more than x.\"\"\"\n    return x + 1"
    assert _edit(text, text.rstrip(), good, preserve="docstring").reason is None
    sneaky = "def helper(x):\n    \"\"\"One more than x.\"\"\"\n    return x + 2"
    assert "more than docstrings" in _edit(text, text.rstrip(), sneaky, preserve="docstring").reason


def test_a_type_hint_rewrite_may_change_only_annotations():
    text = "def helper(x, y=1):\n    return x + y\n"
    good = "def helper(x: int, y: int = 1) -> int:\n    return x + y"
    assert _edit(text, text.rstrip(), good, preserve="annotations").reason is None
    sneaky = "def helper(x: int, y: int = 2) -> int:\n    return x + y"
    assert "more than type annotations" in _edit(text, text.rstrip(), sneaky, preserve="annotations").reason


def test_javascript_names_and_definitions():
    js = "function helper(x) {\n  return x + 1;\n}\nfunction main(a) {\n  return helper(a);\n}\n"
    gone = _edit(js, "function helper(x) {\n  return x + 1;\n}", "function other(x) {\n  return x + 1;\n}",
                 language="javascript")
    assert gone.edits == () and "helper" in gone.reason
    fine = _edit(js, "return x + 1;", "return 1 + x;", language="javascript")
    assert fine.reason is None


def test_code_nested_deeper_than_the_stack_is_refused_not_crashed():
    from loopls.context.refactor import refactorings

    text = "def f(a):\n    return " + " + ".join(["a"] * 3000) + "\n"
    start = text.index("a + a")
    (extract,) = refactorings(text, "deep.py", start, start + 5, LANGUAGES)
    assert extract.edits == () and "nested too deeply" in extract.reason
