"""Extract variable (Python, JavaScript, TypeScript) and extract function/method (Python):
exact results on real code, and each refusal with its reason."""

from __future__ import annotations

import pytest

from loopls.context.refactor.extract_function import extract_function
from loopls.context.refactor.extract_variable import extract_variable

from refactor_helpers import applied, one, run

STATS = '''import math


def spread(values, scale):
    total = 0
    count = 0
    for v in values:
        scaled = v * scale
        total += math.fabs(scaled)
        count += 1
    mean = total / count
    return mean, count


class Meter:
    UNIT = "m"

    def __init__(self, reading):
        self.reading = reading

    def label(self, digits):
        value = round(self.reading, digits)
        text = f"{value}{self.UNIT}"
        return text.upper()

    @staticmethod
    def parse(raw):
        number = float(raw.strip().rstrip("m"))
        return Meter(number)
'''


def test_extract_variable_python_goes_before_the_statement():
    result = one(extract_variable, "python", STATS, "total / count")
    assert result.title == "Extract variable `value_2`"  # `value` is taken elsewhere in the file
    assert "    value_2 = total / count\n    mean = value_2\n" in applied(result, STATS)


def test_extract_variable_names_after_the_attribute_and_avoids_clashes():
    text = "def f(cfg):\n    return run(cfg.timeout * 2)\n"
    assert applied(one(extract_variable, "python", text, "cfg.timeout"), text) == \
        "def f(cfg):\n    timeout = cfg.timeout\n    return run(timeout * 2)\n"
    text = "def f(cfg, timeout):\n    return run(cfg.timeout, timeout)\n"
    assert "timeout_2 = cfg.timeout" in applied(one(extract_variable, "python", text, "cfg.timeout"), text)


@pytest.mark.parametrize("text, needle, reason", [
    ("def f(x):\n    return g(x) and h(x + 1)\n", "h(x + 1)", "right of `and`/`or`"),
    ("def f(x):\n    return a(x) if x else b(x)\n", "b(x)", "one branch"),
    ("def f(xs):\n    return [x.k + 1 for x in xs]\n", "x.k + 1", "comprehension"),
    ("def f(x):\n    return lambda: x + 1\n", "x + 1", "function or lambda body"),
    ("def f(x):\n    while x.more():\n        x.step()\n", "x.more()", "loop condition"),
    ("def f(x):\n    if x:\n        pass\n    elif x.y():\n        pass\n", "x.y()", "only when the earlier"),
    ("def f(x):\n    return g(h(), x.y)\n", "x.y", "runs `h()` before"),
    ("class A:\n    z = 1 + 2\n", "1 + 2", "class body"),
    ("def f(x):\n    assert x > 1, x\n", "x > 1", "assert"),
])
def test_extract_variable_refuses_what_would_change_evaluation(text, needle, reason):
    result = one(extract_variable, "python", text, needle)
    assert result.edits == () and reason in result.reason


def test_extract_variable_first_iterable_of_a_comprehension_runs_once():
    text = "def f(x):\n    return [i for i in x.items()]\n"
    assert applied(one(extract_variable, "python", text, "x.items()"), text) == \
        "def f(x):\n    items_result = x.items()\n    return [i for i in items_result]\n"


def test_extract_variable_not_offered_for_targets_names_and_whole_statements():
    text = "def f(x):\n    x.y = 1\n    x.run()\n    return x\n"
    assert run(extract_variable, "python", text, "x.y") == []
    assert run(extract_variable, "python", text, "x", occurrence=2) == []
    assert run(extract_variable, "python", text, "x.run()") == []
    assert run(extract_variable, "javascript", "f(a);\n", "f(a)") == []


def test_extract_variable_javascript_and_typescript():
    js = "function total(items) {\n  return sum(items.map((i) => i.price)) * 1.2;\n}\n"
    assert applied(one(extract_variable, "javascript", js, "sum(items.map((i) => i.price))"), js) == (
        "function total(items) {\n  const sumResult = sum(items.map((i) => i.price));\n  return sumResult * 1.2;\n}\n")
    ts = "export function label(user: User): string {\n  return `${user.getName()}!`\n}\n"
    assert applied(one(extract_variable, "typescript", ts, "user.getName()"), ts) == (
        "export function label(user: User): string {\n  const name = user.getName()\n  return `${name}!`\n}\n")


@pytest.mark.parametrize("text, needle, reason", [
    ("function f(a) {\n  if (a) foo(a + 1);\n}\n", "a + 1", "without braces"),
    ("const v = a?.b.c(d + 1);\n", "d + 1", "optional chain"),
    ("const v = a ?? b.c;\n", "b.c", "`&&`/`||`/`??`"),
    ("for (let i = 0; i < n.length; i++) {}\n", "n.length", "loop's condition"),
    ("const f = (x) => x * 2;\n", "x * 2", "function or lambda body"),
])
def test_extract_variable_javascript_refusals(text, needle, reason):
    result = one(extract_variable, "javascript", text, needle)
    assert result.edits == () and reason in result.reason


def test_extract_function_passes_what_it_reads_and_returns_what_is_read_later():
    selected = "        scaled = v * scale\n        total += math.fabs(scaled)\n        count += 1"
    result = one(extract_function, "python", STATS, selected.strip())
    assert result.title == "Extract function `extracted`"
    out = applied(result, STATS)
    assert out.startswith("import math\n\n\ndef extracted(v, scale, total, count):\n"
                          "    scaled = v * scale\n    total += math.fabs(scaled)\n    count += 1\n"
                          "    return total, count\n\n\ndef spread(values, scale):\n")
    assert "    for v in values:\n        total, count = extracted(v, scale, total, count)\n" in out


def test_extract_method_keeps_self_and_static_methods_stay_static():
    out = applied(one(extract_function, "python", STATS, 'text = f"{value}{self.UNIT}"'), STATS)
    assert "        text = self.extracted(value)\n        return text.upper()\n\n" \
           "    def extracted(self, value):\n        text = f\"{value}{self.UNIT}\"\n        return text\n" in out
    out = applied(one(extract_function, "python", STATS, 'float(raw.strip().rstrip("m"))'), STATS)
    assert "        number = Meter.extracted(raw)\n" in out
    assert "    @staticmethod\n    def extracted(raw):\n        return float(raw.strip().rstrip(\"m\"))\n" in out


def test_extract_function_from_an_expression_takes_comprehension_variables():
    text = "def f(rows, k):\n    return [r[k] * 2 for r in rows]\n"
    out = applied(one(extract_function, "python", text, "r[k] * 2"), text)
    assert out == ("def extracted(r, k):\n    return r[k] * 2\n\n\n"
                   "def f(rows, k):\n    return [extracted(r, k) for r in rows]\n")


def test_extract_function_async_and_multiline_strings():
    text = ('async def main(client):\n    page = await client.get("/")\n    body = """a\nb"""\n'
            '    return page, body\n')
    out = applied(one(extract_function, "python", text, 'page = await client.get("/")\n    body = """a\nb"""'), text)
    assert out.startswith('async def extracted(client):\n    page = await client.get("/")\n    body = """a\nb"""\n'
                          "    return page, body\n")
    assert "    page, body = await extracted(client)\n" in out


def test_extract_function_passes_a_name_assigned_on_some_paths():
    text = "def f(x, flag):\n    y = 0\n    if flag:\n        y = x\n    return y\n"
    out = applied(one(extract_function, "python", text, "if flag:\n        y = x"), text)
    assert "def extracted(flag, x, y):\n    if flag:\n        y = x\n    return y\n" in out
    assert "    y = extracted(flag, x, y)\n" in out


@pytest.mark.parametrize("text, needle, reason", [
    ("def f(x):\n    y = x\n    return y\n", "y = x\n    return y", "returns from the function"),
    ("def f(xs):\n    for x in xs:\n        if x:\n            break\n", "if x:\n            break", "`break`"),
    ("def f(x):\n    if x:\n        y = 1\n    return y\n", "if x:\n        y = 1", "only on some paths"),
    ("def f():\n    global g\n    g = 1\n", "global g\n    g = 1", "global"),
    ("class A(B):\n    def m(self):\n        return [super().m() for _ in range(2)]\n", "super().m()", None),
])
def test_extract_function_refusals(text, needle, reason):
    result = one(extract_function, "python", text, needle)
    if reason is None:  # inside a method: a method, so super() still works
        assert result.reason is None and "self.extracted(" in applied(result, text)
    else:
        assert result.edits == () and reason in result.reason, result.reason


def test_extract_function_not_offered_for_part_of_a_statement_or_an_annotation():
    assert run(extract_function, "python", STATS, "count = 0\n    for v") == []
    text = "def f(x: str | None) -> int:\n    return 1\n"
    assert run(extract_function, "python", text, "str | None") == []
