"""Convert between f-strings and `str.format` calls (Python), where the two mean the same.

f-string -> format: every field's expression becomes an argument, in order, so each is still
evaluated once, left to right; conversions and format specs carry over. Not offered for
self-documenting fields (`{x=}`), specs with nested fields, or a piece of an implicitly
concatenated string.

format -> f-string: each field takes its argument's expression. Since an f-string evaluates
a field each time it appears and `format` evaluates each argument once up front, an argument
that is not a plain name or literal must be used exactly once, in argument order; an unused
one must be a plain name or literal. Refused too: `*args`/`**kwargs`, mixed automatic and
manual numbering, escapes that make braces (`\\x7b`), and arguments whose text cannot sit
inside the f-string's quotes (the same quote, a backslash, a line break, a comment).
"""

from __future__ import annotations

import re

from tree_sitter import Node

from .edits import Edit, Refactoring
from .exprs import PY_LITERALS, parenthesized
from .source import Source, ancestors

TO_FORMAT = "refactor.rewrite.format"
TO_FSTRING = "refactor.rewrite.fstring"
_BRACE_ESCAPES = re.compile(r"\\(?:x7[bd]|u007[bd]|U0000007[bd]|17[35])", re.I)
_FIELD_NAME = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*|\d+)?((?:\.[A-Za-z_][A-Za-z0-9_]*|\[[^\]]+\])*)$")


class _Refused(Exception):
    pass


def convert_strings(src: Source, start: int, end: int) -> list[Refactoring]:
    if src.language != "python":
        return []
    node = src.covering(start, end)
    out = []
    string = next((n for n in [node, *ancestors(node)] if n.type == "string"), None)
    if string is not None and "f" in _prefix(src, string).lower():
        out.append(_guard(TO_FORMAT, "Convert f-string to str.format", lambda: _to_format(src, string)))
    call = next((n for n in [node, *ancestors(node)] if _is_format_call(src, n)), None)
    if call is not None:
        out.append(_guard(TO_FSTRING, "Convert str.format to f-string", lambda: _to_fstring(src, call)))
    return out


def _guard(kind: str, title: str, make) -> Refactoring:
    try:
        edit = make()
    except _Refused as exc:
        return Refactoring(kind, title, reason=str(exc))
    return Refactoring(kind, title, (edit,), (edit.start, edit.end))


def _prefix(src: Source, string: Node) -> str:
    start = string.children[0] if string.children else None
    text = src.node_text(start) if start is not None and start.type == "string_start" else ""
    return text.rstrip("\"'")


def _quote(src: Source, string: Node) -> str:
    text = src.node_text(string.children[0])
    return text[len(text.rstrip("\"'")):]


def _is_format_call(src: Source, node: Node) -> bool:
    if node.type != "call":
        return False
    fn = node.child_by_field_name("function")
    if fn is None or fn.type != "attribute":
        return False
    obj, attr = fn.child_by_field_name("object"), fn.child_by_field_name("attribute")
    return obj is not None and obj.type == "string" and attr is not None and src.node_text(attr) == "format" \
        and not {"f", "b"} & set(_prefix(src, obj).lower())


# -- f-string -> format -------------------------------------------------------------------------

def _to_format(src: Source, string: Node) -> Edit:
    if string.parent is not None and string.parent.type == "concatenated_string":
        raise _Refused("the f-string is part of an implicitly concatenated string")
    pieces, args = [], []
    for child in string.children[1:-1]:
        if child.type != "interpolation":
            pieces.append(src.node_text(child))
            continue
        expr = child.child_by_field_name("expression")
        if any(not c.is_named and c.type == "=" for c in child.children):
            raise _Refused("a self-documenting field (`{x=}`) has no str.format form")
        spec = child.child_by_field_name("format_specifier")
        if spec is not None and any(c.type in ("interpolation", "format_expression") for c in src.walk(spec)):
            raise _Refused("a format spec with nested fields")
        text = src.node_text(expr)
        if "\n" in text:
            raise _Refused("a field spans lines")
        args.append(f"({text})" if expr.type in ("expression_list", "yield") else text)
        conversion = child.child_by_field_name("type_conversion")
        pieces.append("{" + (src.node_text(conversion) if conversion is not None else "")
                      + (src.node_text(spec) if spec is not None else "") + "}")
    if not args:
        raise _Refused("the f-string has no fields")
    prefix = _prefix(src, string).replace("f", "").replace("F", "")
    quote = _quote(src, string)
    new = f"{prefix}{quote}{''.join(pieces)}{quote}.format({', '.join(args)})"
    return Edit(*src.span(string), new)


# -- format -> f-string -------------------------------------------------------------------------

def _to_fstring(src: Source, call: Node) -> Edit:
    fn = call.child_by_field_name("function")
    string = fn.child_by_field_name("object")
    positional, keywords = _arguments(src, call)
    prefix = _prefix(src, string).replace("u", "").replace("U", "")
    raw = "r" in prefix.lower()
    quote = _quote(src, string)
    content = "".join(src.node_text(c) for c in string.children[1:-1])
    if not raw and _BRACE_ESCAPES.search(content):
        raise _Refused("an escape in the string makes a brace")
    pieces, used = _fields(src, content, raw, positional, keywords, quote)
    _check_evaluation(src, positional, keywords, used)
    return Edit(*src.span(call), f"{prefix}f{quote}{''.join(pieces)}{quote}")


def _arguments(src: Source, call: Node) -> tuple[list[Node], dict[str, Node]]:
    positional: list[Node] = []
    keywords: dict[str, Node] = {}
    args = call.child_by_field_name("arguments")
    for arg in args.named_children if args is not None else []:
        if arg.type in ("list_splat", "dictionary_splat", "comment", "generator_expression"):
            raise _Refused("the call passes *args, **kwargs or a generator")
        if arg.type == "keyword_argument":
            keywords[src.node_text(arg.child_by_field_name("name"))] = arg.child_by_field_name("value")
        else:
            positional.append(arg)
    return positional, keywords


def _fields(src: Source, content: str, raw: bool, positional: list[Node], keywords: dict[str, Node],
            quote: str) -> tuple[list[str], list[tuple[str, int | str]]]:
    """The f-string's pieces and, in field order, which argument each field uses."""
    pieces: list[str] = []
    used: list[tuple[str, int | str]] = []
    auto = manual = False
    i, n = 0, len(content)
    while i < n:
        ch = content[i]
        if ch == "\\" and not raw:
            j = content.index("}", i) + 1 if content.startswith("\\N{", i) and "}" in content[i:] else i + 2
            pieces.append(content[i:j])
            i = j
        elif content.startswith(("{{", "}}"), i):
            pieces.append(content[i:i + 2])
            i += 2
        elif ch == "}":
            raise _Refused("the format string has a single `}`")
        elif ch == "{":
            close = content.find("}", i)
            inner = content[i + 1:close] if close >= 0 else ""
            if close < 0 or "{" in inner:
                raise _Refused("a field with nested fields or no end")
            name, conversion, spec = _split_field(inner)
            match = _FIELD_NAME.match(name)
            if match is None:
                raise _Refused(f"the field `{{{inner}}}` is not a plain name or index")
            head, accessors = match.group(1) or "", match.group(2)
            if head == "":
                auto = True
                key: int | str = sum(1 for kind, _ in used if kind == "auto")
                used.append(("auto", key))
            elif head.isdigit():
                manual = True
                key = int(head)
                used.append(("index", key))
            else:
                key = head
                used.append(("name", key))
            arg = _argument(positional, keywords, key)
            expr = _field_expression(src, arg, accessors, quote)
            pieces.append("{" + expr + conversion + spec + "}")
            i = close + 1
        else:
            pieces.append(ch)
            i += 1
    if auto and manual:
        raise _Refused("the format string mixes automatic and manual field numbers")
    return pieces, used


def _split_field(inner: str) -> tuple[str, str, str]:
    colon = inner.find(":")
    head, spec = (inner, "") if colon < 0 else (inner[:colon], inner[colon:])
    bang = head.find("!")
    name, conversion = (head, "") if bang < 0 else (head[:bang], head[bang:])
    if conversion and conversion not in ("!r", "!s", "!a"):
        raise _Refused(f"unknown conversion `{conversion}`")
    return name, conversion, spec


def _argument(positional: list[Node], keywords: dict[str, Node], key: int | str) -> Node:
    if isinstance(key, int):
        if key >= len(positional):
            raise _Refused(f"no argument {key} for its field")
        return positional[key]
    if key not in keywords:
        raise _Refused(f"no argument `{key}` for its field")
    return keywords[key]


def _field_expression(src: Source, arg: Node, accessors: str, quote: str) -> str:
    text = parenthesized(src, arg) if arg.type not in PY_LITERALS or accessors else src.node_text(arg)
    for part in re.findall(r"\.[A-Za-z_][A-Za-z0-9_]*|\[[^\]]+\]", accessors):
        if part.startswith("[") and not part[1:-1].isdigit():
            other = "'" if '"' in quote else '"'
            if other in part or quote[0] in part:
                raise _Refused("an index in a field holds a quote")
            part = f"[{other}{part[1:-1]}{other}]"
        text += part
    if quote[0] in text or "\\" in text or "\n" in text or "#" in text:
        raise _Refused("an argument's text cannot go inside the f-string (its quote, a backslash, a line break "
                       "or a comment)")
    return f" {text} " if text.startswith("{") else text


def _check_evaluation(src: Source, positional: list[Node], keywords: dict[str, Node],
                      used: list[tuple[str, int | str]]) -> None:
    order = [positional[k] if isinstance(k, int) else keywords[k] for _, k in used]
    everything = positional + list(keywords.values())
    counts = {id(a): sum(1 for o in order if o.id == a.id) for a in everything}
    for arg in everything:
        simple = arg.type == "identifier" or arg.type in PY_LITERALS
        if not simple and counts[id(arg)] != 1:
            raise _Refused(f"`{src.node_text(arg)[:30]}` would run {counts[id(arg)]} times instead of once")
    complex_in_fields = [o.id for o in order if not (o.type == "identifier" or o.type in PY_LITERALS)]
    complex_in_args = [a.id for a in everything if a.id in complex_in_fields]
    if complex_in_fields != complex_in_args:
        raise _Refused("the fields use the arguments in another order than they are evaluated")
