"""Inline variable (Python, JavaScript, TypeScript) and the f-string <-> str.format
conversions: exact results, and each refusal with its reason."""

from __future__ import annotations

import pytest

from loopls.context.refactor.inline import inline_variable
from loopls.context.refactor.strings import convert_strings

from refactor_helpers import applied, one, run


def test_inline_copies_a_plain_value_to_every_read_with_parentheses_where_needed():
    text = "def f(a, b):\n    total = a + b\n    print(total * 2, total)\n    return total\n"
    result = one(inline_variable, "python", text, "total", cursor=True)
    assert result.title == "Inline variable `total`"
    assert applied(result, text) == "def f(a, b):\n    print((a + b) * 2, a + b)\n    return a + b\n"


def test_inline_from_a_read_and_into_an_f_string():
    text = "def f(user):\n    name = user.name\n    return f'{name}!'\n"
    assert applied(one(inline_variable, "python", text, "name", occurrence=2, cursor=True), text) == \
        "def f(user):\n    return f'{user.name}!'\n"


def test_inline_moves_a_call_into_the_next_statement_once():
    text = "def f(a):\n    value = load(a)\n    return value.strip()\n"
    assert applied(one(inline_variable, "python", text, "value", cursor=True), text) == \
        "def f(a):\n    return load(a).strip()\n"


@pytest.mark.parametrize("text, reason", [
    ("def f(a):\n    value = load(a)\n    return value + value\n", "read 2 times"),
    ("def f(a):\n    value = load(a)\n    log()\n    return value\n", "right after it"),
    ("def f(a):\n    value = load(a)\n    return g(h(), value)\n", "runs `h()` before"),
    ("def f(a):\n    value = a + 1\n    a = 3\n    return value\n", "reassigned"),
    ("def f(a, b):\n    value = a\n    return [value for a in b]\n", "means something else"),
    ("def f(a):\n    value = a\n    value += 1\n    return value\n", "assigned 2 times"),
    ("value = 1\nprint(value)\n", "module-level"),
    ("def f(a):\n    value = []\n    value.append(a)\n    return value\n", "read 2 times"),
    ("def f(a):\n    if a:\n        value = 1\n    return value\n", "may not have this value"),
    ("def f(a):\n    value = a\n", "never read"),
])
def test_inline_refusals(text, reason):
    result = one(inline_variable, "python", text, "value", cursor=True)
    assert result.edits == () and reason in result.reason, result.reason


def test_inline_javascript_shorthand_property_and_typescript():
    js = "function f(a) {\n  const v = a + 1;\n  return {v, w: v * 2};\n}\n"
    assert applied(one(inline_variable, "javascript", js, "v", cursor=True), js) == \
        "function f(a) {\n  return {v: a + 1, w: (a + 1) * 2};\n}\n"
    ts = "function f(a: number): number {\n  const v: number = compute(a);\n  return v * 2;\n}\n"
    assert applied(one(inline_variable, "typescript", ts, "v", cursor=True), ts) == \
        "function f(a: number): number {\n  return compute(a) * 2;\n}\n"


@pytest.mark.parametrize("text, reason", [
    ("function f(a) {\n  let v = a;\n  v++;\n  return v;\n}\n", "assigned or exported"),
    ("export const v = 1;\nconsole.log(v);\n", "cannot be removed"),
    ("function f(a) {\n  const v = {a};\n  g(v);\n  return v;\n}\n", "read 2 times"),
])
def test_inline_javascript_refusals(text, reason):
    result = one(inline_variable, "javascript", text, "v", cursor=True)
    assert result.edits == () and reason in result.reason, result.reason


def test_f_string_to_format_and_back():
    text = 'x = f"a {b!r:>10} {{c}} {d.e}"\n'
    (result,) = run(convert_strings, "python", text, "a {", cursor=True)
    assert result.kind == "refactor.rewrite.format"
    assert applied(result, text) == 'x = "a {!r:>10} {{c}} {}".format(b, d.e)\n'
    text = 'x = "{0[key]} {0.x} {1} {name!s}".format(d, g(), name=n)\n'
    (result,) = run(convert_strings, "python", text, "format", cursor=True)
    assert result.kind == "refactor.rewrite.fstring"
    assert applied(result, text) == "x = f\"{d['key']} {d.x} {g()} {n!s}\"\n"


@pytest.mark.parametrize("text, reason", [
    ('x = f"{b=}"\n', "self-documenting"),
    ('x = f"{b:{w}}"\n', "nested fields"),
    ('x = f"a {b}" "c"\n', "concatenated"),
])
def test_f_string_refusals(text, reason):
    (result,) = run(convert_strings, "python", text, "b", cursor=True)
    assert result.edits == () and reason in result.reason


@pytest.mark.parametrize("text, reason", [
    ('x = "{1} {0}".format(f(), g())\n', "another order"),
    ('x = "{0} {0}".format(f())\n', "2 times"),
    ('x = "{} {0}".format(a, b)\n', "mixes automatic and manual"),
    ('x = "{}".format(*args)\n', "*args"),
    ("x = '{}'.format(d['k'])\n", "cannot go inside"),
    ('x = "\\x7b{}".format(a)\n', "makes a brace"),
])
def test_format_refusals(text, reason):
    (result,) = run(convert_strings, "python", text, "format", cursor=True)
    assert result.edits == () and reason in result.reason, result.reason
