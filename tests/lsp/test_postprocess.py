"""Post-processing filters, one by one, and the site read from the syntax tree."""

from __future__ import annotations

import pytest

from loopls.context.languages import Languages
from loopls.lsp.completion.postprocess import (AUTOMATIC_BLOCK_TOKENS, Site, answered_part, balance_brackets,
                                               complete_lines, cut_at_scope_end, cut_short, drop_suffix_duplicates,
                                               finish, first_line, is_final, normalise_indentation, single_line, sound_start,
                                               stop_on_repetition, strip_control, token_limit)
from loopls.lsp.completion.site import SiteReader, indent_unit

READER = SiteReader(Languages())


def site_of(text: str, path_language: str | None = "python") -> tuple[Site, int]:
    offset = text.index("|")
    return READER.read(text.replace("|", "", 1), offset, path_language), offset


def test_strip_control_characters() -> None:
    assert strip_control("a\bb\x15c\td\r\ne\x7f\ufffd") == "abc\td\ne"


def test_single_line_sites_keep_the_first_line() -> None:
    assert first_line("x = 1\ny = 2") == "x = 1"
    site, _ = site_of("total = comp|ute(a)\n")
    assert not site.multiline
    assert finish("ute_all\nmore()", site, 8).text == "ute_all"


@pytest.mark.parametrize(("text", "language", "multiline"), [
    ("def f(x):\n    |\n", "python", True),  # an empty line in a body
    ("def f(x):|\n", "python", True),  # after a block opener
    ("x = foo(|)\n", "python", False),  # in a call, auto-closed ) after the cursor
    ("x = 1 + |\n", "python", False),  # an expression at the end of a line
    ("s = 'abc|'\n", "python", False),  # inside a string
    ("# a note about |\n", "python", False),  # inside a comment
    ("function f() {|\n}\n", "javascript", True),
    ("const s = `tmpl|`;\n", "javascript", False),
    ("fn main() {\n    |\n}\n", "rust", True),
])
def test_multiline_is_decided_from_the_tree(text, language, multiline) -> None:
    assert site_of(text, language)[0].multiline is multiline


def test_indentation_is_not_typed_twice_and_follows_the_document() -> None:
    site, _ = site_of("def f(x):\n    |\n")
    assert normalise_indentation("    return x", site) == "return x"
    tabs, _ = site_of("def f(x):\n\tif x:\n\t\ty = 1\n\t|\n")
    assert tabs.indent_unit == "\t"
    assert normalise_indentation("if y:\n        z = 2", tabs) == "if y:\n\t\tz = 2"
    assert indent_unit("a:\n  b\n    c\n  d\n") == "  "


def test_repeated_lines_blocks_and_phrases_stop() -> None:
    assert stop_on_repetition(["x = 1", "x = 1", "x = 1"]) == ["x = 1"]
    assert stop_on_repetition(["a()", "b()", "a()", "b()", "c()"]) == ["a()", "b()"]
    assert stop_on_repetition(["return foo(foo(foo(foo(foo(x)))))"]) == ["return foo("]
    assert stop_on_repetition(["v = [0, 0, 0, 0, 0, 0]"]) == ["v = [0, 0, 0, 0, 0, 0]"]  # data, not a loop
    assert stop_on_repetition(["x = VeVeVeVeVeVeypin"]) == ["x = Ve"]  # a loop inside one word
    assert stop_on_repetition(["serypinCserypinCserypinC"]) == ["serypinC"]
    for data in ("mask = 0x00000000", "# ==========", "s = 'ab' + 'cd'", "abcabc = 1"):
        assert stop_on_repetition([data]) == [data]
    assert stop_on_repetition(["}", "}", "end"]) == ["}", "}", "end"]  # closing lines repeat legitimately


def test_a_phrase_with_spaces_repeated_three_times_stops() -> None:
    assert stop_on_repetition(["foo(a, b) foo(a, b) foo(a, b)"]) == ["foo(a, b)"]
    assert stop_on_repetition(["y = x = x = x = 1"]) == ["y = x"]
    assert stop_on_repetition(["if a and not and not and not b"]) == ["if a and not"]
    # a list's items and a chained assignment repeat legitimately
    for data in ("return None, None, None", "t = self.a, self.a, self.a", "a = b = c = 0", "f(x) + g(x) + f(x)"):
        assert stop_on_repetition([data]) == [data]
    line = Site("    value = ", "", "", False, "    ", False, False)
    assert finish("x = x = x = x", line, 8).text == "x"  # the loop cut, then its dangling `=`


def test_eight_identical_lines_become_one() -> None:
    site, _ = site_of("def f(x):\n    |\n")
    assert finish("\n".join(["    total += x"] * 8), site, 8).text == "total += x"


def test_cut_at_the_end_of_the_enclosing_function() -> None:
    site, _ = site_of("def g(x):\n    |\n\ndef k():\n    pass\n")
    lines = ["y = x * 2", "    return y", "", "def h():", "    return 0"]
    assert cut_at_scope_end(lines, site) == ["y = x * 2", "    return y", ""]
    top, _ = site_of("import os\n|\n")
    assert cut_at_scope_end(["def f():", "    return 1", "", "def g():"], top) == ["def f():", "    return 1", ""]


def test_cut_at_the_brace_that_closes_the_block() -> None:
    closed, _ = site_of("function f(a) {\n  |\n}\n", "javascript")
    assert closed.block_closed
    assert cut_at_scope_end(["const b = a + 1;", "  return b;", "}", "function g() {"], closed) == \
        ["const b = a + 1;", "  return b;"]
    open_, _ = site_of("function f(a) {\n  |", "javascript")
    assert not open_.block_closed
    assert cut_at_scope_end(["return a;", "}", "", "function g() {"], open_) == ["return a;", "}"]


def test_lines_repeating_the_code_after_the_cursor_are_dropped() -> None:
    site, _ = site_of("def f(x):\n    |\n    return x\n")
    assert drop_suffix_duplicates(["x += 1", "    return x", "print(x)"], site) == ["x += 1"]


@pytest.mark.parametrize(("text", "completion", "expected"), [
    ("area(|)", "radius)", ("radius)", 1)),  # replaces the auto-closed ), never "))"
    ("area(|)", "radius", ("radius", 0)),
    ('print("|")', 'hello")', ('hello")', 2)),
    ("foo(|, b)", "a)", ("a", 0)),  # the call goes on after the cursor: do not close it
    ("x = |", "y)", ("y", 0)),  # closes nothing open
    ("foo(|", "a, b)", ("a, b)", 0)),  # nothing after the cursor: closing is right
    ("d[k(|)]", "1)]", ("1)]", 2)),
])
def test_brackets_balance_against_the_text_after_the_cursor(text, completion, expected) -> None:
    site, _ = site_of(text + "\n")
    assert balance_brackets(completion, site) == expected


def test_accepting_inside_a_call_never_doubles_the_parenthesis() -> None:
    site, offset = site_of("import math\n\ndef area(r):\n    return math.pi * area(|)\n")
    suggestion = finish("r)\nmore stuff", site, 8)
    doc = "import math\n\ndef area(r):\n    return math.pi * area()\n"
    accepted = doc[:offset] + suggestion.text + doc[offset + suggestion.replace:]
    assert "area(r)\n" in accepted and "))" not in accepted


def test_whitespace_only_and_empty_suggestions_are_dropped() -> None:
    site, _ = site_of("def f(x):\n    |\n")
    assert finish("   \n\t\n", site, 8) is None
    assert finish("\x08\x15", site, 8) is None


def test_is_final_once_a_filter_cut() -> None:
    site, _ = site_of("def g(x):\n    |\n")
    assert not is_final("y = x\n    z", site, 8)
    assert is_final("y = x\n\ndef h():\n", site, 8)  # the function ended: more text cannot be shown
    single, _ = site_of("x = foo(|)\n")
    assert is_final("a\nb", single, 8) and not is_final("a, b", single, 8)


def test_an_automatic_request_at_a_block_gets_a_line_or_two_of_tokens() -> None:
    block = Site("    ", "", "", True, "    ", False, False)
    line = Site("x = ", "", "", False, "    ", False, False)
    assert token_limit(block, invoked=False, max_tokens=48) == AUTOMATIC_BLOCK_TOKENS < 48
    assert token_limit(block, invoked=False, max_tokens=8) == 8
    assert token_limit(block, invoked=True, max_tokens=48) == 48  # the user asked and waits
    assert token_limit(line, invoked=False, max_tokens=48) == 48  # it ends at the line break


def test_a_block_cut_by_the_token_limit_loses_its_unfinished_last_line() -> None:
    assert complete_lines("\n    total = 0\n    for x in") == "\n    total = 0"
    assert complete_lines("total = 0\n    for x in") == "total = 0"
    assert complete_lines("\n    return sum(item.pr") == "\n    return sum(item.pr"  # all there is
    assert complete_lines("total = su") == "total = su"


def test_a_model_that_ends_a_complete_line_at_once_suggests_the_next_line() -> None:
    end = Site("    y = x", "", "", False, "    ", False, False)
    assert single_line("\n    return y\n", end) == "\n    return y"
    assert single_line("\n\n    return y", end) == "\n"  # a blank line: nothing to show
    assert finish("\n    return y\n    z", end, 8).text == "\n    return y"
    assert finish("\n\ndef g():", end, 8) is None
    assert not is_final("\n", end, 8) and not is_final("\n    return", end, 8)
    assert is_final("\n    return y\n", end, 8) and is_final(" + 1\n", end, 8)
    # not where code follows the cursor, nor on a blank line (a multi-line site anyway)
    mid = Site("    y = ", "x", "", False, "    ", False, False)
    assert single_line("\n    return y", mid) == "" and finish("\n    return y", mid, 8) is None


def test_the_next_line_stops_at_the_end_of_the_block() -> None:
    end = Site("    return y", "", "def g():\n    pass", False, "    ", False, False)
    assert finish("\ndef g():", end, 8) is None  # it leaves the function: not this suggestion's business


def test_a_line_left_open_is_shown_up_to_the_bracket_when_that_parses() -> None:
    site, _ = site_of("def f(total):\n    result = total|\n    return result\n")
    assert site.line_check is not None and not site.multiline
    assert finish("_value(", site, 8).text == "_value"  # `total_value(` would swallow the next line
    assert sound_start("_value(items, key(", site).text == "_value"  # before the outermost one left open
    assert finish("_value(items)", site, 8).text == "_value(items)"  # nothing to cut
    assert finish(" + (", site, 8) is None  # `total +` does not parse either
    assert sound_start(" b c", site) is None  # nothing left open: a start of it is no better
    ended, _ = site_of("def f(text):\n    retur|\n")
    assert finish("n text:", ended, 8).text == "n text"  # the check rejects the `:`: the line before it
    block, _ = site_of("class Item:\n    def total_value(self) -> float:|\n        return 1\n")
    assert sound_start("ance(", block) is None and finish("ance:", block, 8) is None  # a misread line


def test_a_line_ending_in_an_operator_is_shown_up_to_it_when_that_parses() -> None:
    # the model wrote the left side of an assignment and stopped: `self.k1, self.k1, self.k2 =`
    site, _ = site_of("class B:\n    def f(self, query):\n        self.k1, se|\n        for term in query:\n            pass\n")
    assert site.line_check is not None and not site.multiline
    assert finish("lf.k1, self.k2 = ", site, 8).text == "lf.k1, self.k2"
    assert finish("lf.k1 +", site, 8).text == "lf.k1"
    assert finish("lf.", site, 8).text == "lf"
    assert finish("lf.k1 k2 =", site, 8).text == "lf"  # `lf.k1 k2` does not parse: cut further back, not between names
    annotated, _ = site_of("def f():\n    shared: Counter[str]|\n    return shared\n")
    assert finish(" += 1", annotated, 8) is None  # it ends with an operand: nothing dangles to cut
    assert finish(" +=", annotated, 8) is None  # nothing is left before the operator


def test_a_single_line_never_ends_dangling_where_the_check_accepts_it() -> None:
    # the line check puts the error of `total +` on the next line: it accepts these
    site, _ = site_of("def f(total):\n    result = total|\n    return result\n")
    assert site.line_check.accepts(" + 1 +") and site.line_check.accepts(" and")
    assert finish(" + 1 +", site, 8).text == " + 1"
    assert finish(" * (a + b) -", site, 8).text == " * (a + b)"
    assert finish(" and", site, 8) is None and finish(",", site, 8) is None  # nothing before it to show
    assert finish("  # the sum of a and", site, 8).text == "  # the sum of a and"  # a comment: prose


def test_a_line_that_did_not_parse_before_is_cut_back_to_an_operand() -> None:
    site, _ = site_of("def f(a):\n    x = foo(a, |\n    return x\n")
    assert site.line_check is None and not site.multiline  # halfway through the call: any text may finish it
    assert finish("b, c,", site, 8).text == "b, c"
    assert finish("b, bar(", site, 8).text == "b, bar"
    assert finish("b.", site, 8).text == "b"
    assert finish("b) or", site, 8).text == "b)"
    assert finish("b, c)", site, 8).text == "b, c)"  # nothing dangles
    stub, _ = site_of("from m import|\n")
    assert finish(" *", stub, 8).text == " *" and finish(" a, b,", stub, 8).text == " a, b"
    docstring, _ = site_of('def f(a):\n    """Sum of a and|\n    """\n')
    assert docstring.literal and finish(" b,", docstring, 8).text == " b,"  # prose in a string
    end = Site("    y = x", "", "", False, "    ", False, False)
    assert finish("\n    return y +", end, 8).text == "\n    return y"  # the next line, cut in that line
    braces, _ = site_of("function f(x) {\n  if (x|\n}\n", "javascript")
    assert finish(") {", braces, 8).text == ") {" and finish(") &&", braces, 8).text == ")"  # a block's `{` is no loose end


def test_an_item_of_a_list_written_one_a_line_keeps_its_comma() -> None:
    site, _ = site_of('NAMES = [\n    "a",\n    "b|\n]\n')
    assert site.enclosed and finish('",', site, 8).text == '",'
    call, _ = site_of("run(\n    first,\n    sec|\n)\n")
    assert call.enclosed and not call.multiline
    assert finish("ond,", call, 8).text == "ond,"  # the next item follows on the next line
    assert finish("ond +", call, 8).text == "ond"
    unclosed, _ = site_of("x = run(\n    first,\n    sec|\nprint(x)\n")  # the line that closes it is not written yet
    assert unclosed.enclosed and finish("ond,", unclosed, 8).text == "ond,"
    item_end, _ = site_of('LIMITS = {\n    "a": 1,|\n}\n')
    assert item_end.enclosed and finish('\n    "b": 2,', item_end, 8).text == '\n    "b": 2,'  # the next item
    last, _ = site_of('x = run(\n    first)|\nprint(x)\n')
    assert finish("\n    y = x +", last, 8).text == "\n    y = x"  # the call closed: the next line is out of it
    flat, _ = site_of("run(first, sec|\n")
    assert not flat.enclosed and finish("ond,", flat, 8).text == "ond"


def test_a_line_that_repeats_the_line_above_is_dropped() -> None:
    site, _ = site_of("import os\nimport|\n")
    assert finish(" os", site, 8) is None and finish(" sys", site, 8).text == " sys"
    block, _ = site_of("def f():\n    end.record()\n\n    |\n")
    assert finish("end.record()\n    x = 1", block, 8) is None
    closing, _ = site_of("def f():\n    if x:\n        pass\n    |\n")
    assert finish("pass", closing, 8).text == "pass"  # trivial lines repeat legitimately
    end = Site("    y = x", "", "", False, "    ", False, False)
    assert finish("\n    y = x", end, 8) is None  # the next line is the cursor's own


def test_a_block_being_written_shows_its_complete_lines_only() -> None:
    site, _ = site_of("def f(x):\n    |\n")
    assert answered_part("value = compute(x)\n    return val", site, 8).text == "value = compute(x)"
    assert answered_part("value = compute(x)\n    return value\n    ", site, 8).text == \
        "value = compute(x)\n    return value"
    assert answered_part("value = comp", site, 8) is None  # the line is still being written
    assert answered_part("\n    return", site, 8) is None  # nothing complete but an empty line
    assert answered_part("x = 1\n    x = 1\n    x", site, 8).text == "x = 1"  # filtered as a whole suggestion
    line, _ = site_of("total = comp|\n")
    assert answered_part("ute(x)\n", line, 8) is None  # a single-line site waits for its line


def test_a_line_the_filters_cut_short_is_final() -> None:
    line = Site("    value = ", "", "", False, "    ", False, False)
    loop = "compute(x)" * 4
    assert cut_short(loop, line) and is_final(loop, line, 8)  # shown: `compute(x)`, whatever comes next
    assert finish(loop + "comp", line, 8).text == finish(loop, line, 8).text == "compute(x)"
    assert not cut_short("compute(x)" * 3, line)  # not a loop yet
    assert cut_short("total(x)) + 1", line)  # a closer that closes nothing
    assert not cut_short("total(x))", line)  # ... once a token follows it
    assert not cut_short("self.a, self.a, self.a, sel", line) and cut_short("self.a, " * 4 + "self", line)
    assert not cut_short("compute(x) or items if None; " * 8, line)  # a long unit is no loop
