"""A suggestion may not break the syntax of the cursor's line when that line parsed before."""

from __future__ import annotations

from pathlib import Path

import pytest

import loopls.lsp.cli as cli
from loopls.context.languages import Languages
from loopls.lsp.completion.line_check import closers
from loopls.lsp.completion.postprocess import finish
from loopls.lsp.completion.site import SiteReader

READER = SiteReader(Languages())
METHOD = "class Item:\n    def total_value(self) -> float:|\n        return self.price\n"


def _site(text: str, language: str = "python"):
    offset = text.index("|")
    return READER.read(text.replace("|", "", 1), offset, language)


@pytest.mark.parametrize("raw", [":", "ance:", "):"])
def test_a_suggestion_that_breaks_a_parsed_line_is_dropped(raw) -> None:
    site = _site(METHOD)
    assert site.line_check is not None
    assert finish(raw, site, 8) is None


@pytest.mark.parametrize("raw", ["  # in euros", "\n        return self.price * self.count"])
def test_a_suggestion_that_keeps_the_line_parsing_is_kept(raw) -> None:
    assert finish(raw, _site(METHOD), 8).text == raw


def test_a_multi_line_suggestion_is_not_checked_by_its_first_line_alone() -> None:
    site = _site("def f():\n    |\n")
    assert site.line_check is not None
    raw = "values = [\n        1,\n        2,\n    ]"
    assert finish(raw, site, 8) is not None  # `values = [` alone does not parse; the whole does


def test_a_line_that_did_not_parse_before_is_not_checked() -> None:
    site = _site("x = |\n")  # halfway through an assignment: anything may complete it
    assert site.line_check is None
    assert finish("compute(a b", site, 8).text == "compute(a b"
    assert finish("compute(", site, 8).text == "compute"  # but it never ends with an opening bracket


def test_replaced_auto_closed_characters_and_non_ascii_lines_are_checked_where_they_land() -> None:
    call = _site('label = f"é{name}" + str(|)\n')
    kept = finish("value)", call, 8)
    assert kept is not None and kept.replace == 1  # `str(value)`: the `)` typed over parses
    assert call.line_check.keeps_parsing("value", 0)
    assert not call.line_check.keeps_parsing("value))", 1)  # one `)` too many
    quoted = _site('label = "é"|\n')
    assert finish(" + 'ü'", quoted, 8) is not None
    assert finish('"', quoted, 8) is None  # `"é""` opens a string that never ends


def test_other_grammars() -> None:
    site = _site("function f(a) {\n  return a;|\n}\n", "javascript")
    assert finish(" // done", site, 8) is not None
    assert site.line_check is not None
    assert finish(" a b", site, 8) is None  # `return a; a b`


@pytest.mark.parametrize("raw", [":\n        return self.price * 2", "ance:\n        return self.price * self.count",
                                 "):\n        pass"])
def test_a_multi_line_suggestion_whose_first_line_breaks_the_line_keeps_only_its_body(raw) -> None:
    # `loopls demo` showed `float::` with a body after it: the body closes nothing, and at the
    # line's end the body alone fits
    kept = finish(raw, _site(METHOD), 8)
    assert kept is not None and kept.replace == 0
    assert kept.text == raw[raw.index("\n"):]


def test_a_body_is_not_kept_when_the_broken_line_goes_on_after_the_cursor() -> None:
    site = _site("def f(a|):\n    pass\n")  # `)` and `:` follow: the first line lands mid-line
    assert site.line_check is not None
    assert finish("):\n    return a", site, 8) is None


@pytest.mark.parametrize("raw", ["x = foo(\n        1,", "return {\n        'a': 1,", "(\n        1,\n    )"])
def test_a_first_line_that_opens_a_bracket_is_kept_even_when_later_lines_are_cut(raw) -> None:
    # cut by the line limit or the scope, the closing line never comes: what the first line
    # opens is not its own error
    assert finish(raw, _site("def f():\n    |\n"), 8) is not None


def test_the_bundled_demo_does_not_offer_a_second_colon() -> None:
    source = (Path(cli.__file__).parent / "demo_project" / "inventory.py").read_text()
    at = source.index("-> float:") + len("-> float:")
    site = READER.read(source, at, "python")
    assert site.multiline and site.line_check is not None
    body = "\n        return sum(item.price for item in self.items.values())"
    assert finish(":" + body, site, 8).text == body  # not `float::`
    assert finish("  # in euros\n        return 0.0", site, 8) is not None


def test_closers_of_a_line() -> None:
    assert closers("x = foo([1, {") == "}])"
    assert closers("print(a)") == "" and closers("a)") == ""
