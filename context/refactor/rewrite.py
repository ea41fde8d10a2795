"""Model-driven refactors, the parts that need no model: which rewrites are offered where,
what code each hands to the model and with which instruction, how the model's answer is read,
and the verified edit it becomes.

Offered: add a docstring (a function or class without one), add type hints (a Python
function with unannotated parameters or return), simplify/modernize (the selected lines, or
the function around the cursor), and fix a reported smell (the function or class a finding
is about). The code is quoted as whole lines with their indentation and the model answers
with the replacement of those lines; `verify` then holds the answer to the same rules as any
edit, plus the rewrite's promise (a docstring rewrite changes only docstrings and comments,
a type-hint rewrite only annotations).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tree_sitter import Node

from ..languages import Languages
from ..privacy import redact
from ..smells import analyze_tree
from ..smells.rules import RULES
from .edits import Edit, Refactoring
from .source import Source, ancestors
from .verify import verify

DOCSTRING = "refactor.rewrite.docstring"
TYPE_HINTS = "refactor.rewrite.typeHints"
SIMPLIFY = "refactor.rewrite.simplify"
FIX_SMELL = "quickfix"
_FENCE = re.compile(r"```[\w+-]*\n(.*?)(?:```|$)", re.S)
_INSTRUCTIONS = {
    DOCSTRING: ("Add a docstring to the code below that says what it does, its parameters and what it returns. "
                "Change nothing else: same code, same indentation."),
    TYPE_HINTS: ("Add type annotations to every parameter and the return value of the code below. "
                 "Change nothing else: same code, same indentation."),
    SIMPLIFY: ("Simplify and modernize the code below without changing its behaviour or its public names; keep "
               "its indentation."),
}


@dataclass(frozen=True)
class RewriteOffer:
    kind: str
    title: str
    target: tuple[int, int]  # code points: whole lines, without the last line break
    instruction: str
    preserve: str | None = None
    unit: str = ""  # the function or class it is about, if any


def rewrite_offers(src: Source, start: int, end: int) -> list[RewriteOffer]:
    """The model-driven rewrites offered at a cursor or selection (no model call)."""
    offers = []
    unit = _innermost_unit(src, start)
    if unit is not None:
        name = _unit_name(src, unit)
        target = _whole_lines(src, *src.span(_outer(unit)))
        if not _has_docstring(src, unit):
            offers.append(RewriteOffer(DOCSTRING, f"Add a docstring to `{name}` (model)", target,
                                       _INSTRUCTIONS[DOCSTRING], "docstring", name))
        if src.language == "python" and unit.type == "function_definition" and _lacks_annotations(src, unit):
            offers.append(RewriteOffer(TYPE_HINTS, f"Add type hints to `{name}` (model)", target,
                                       _INSTRUCTIONS[TYPE_HINTS], "annotations", name))
    trimmed = src.trim(start, end)
    if trimmed[0] < trimmed[1]:
        offers.append(RewriteOffer(SIMPLIFY, "Simplify and modernize the selection (model)",
                                   _whole_lines(src, *trimmed), _INSTRUCTIONS[SIMPLIFY]))
    elif unit is not None:
        name = _unit_name(src, unit)
        offers.append(RewriteOffer(SIMPLIFY, f"Simplify and modernize `{name}` (model)",
                                   _whole_lines(src, *src.span(_outer(unit))), _INSTRUCTIONS[SIMPLIFY], unit=name))
    return offers


def smell_offer(src: Source, path: str, code: str, slug: str, symbol: str, message: str,
                start_row: int, end_row: int) -> RewriteOffer:
    """The quick fix for one finding: rewrite the function or class it names (else its lines)."""
    target = _unit_span(src, path, symbol) or _row_span(src, start_row, end_row)
    instruction = (f"Problem found by loopls ({code}): {message}\nRewrite the code below so that this problem goes "
                   "away, keeping its behaviour and its public names.")
    return RewriteOffer(FIX_SMELL, f"Refactor with the model: {slug} ({code})", target, instruction, unit=symbol)


def build_prompt(src: Source, offer: RewriteOffer) -> str:
    """The instruction and the offer's target code, redacted like every prompt (the one place a
    rewrite's prompt is redacted); the answer starts after it."""
    language = src.language
    code = redact(src.text[offer.target[0]:offer.target[1]])
    return (f"### Refactoring request ({language})\n{offer.instruction}\n"
            "Answer with the complete replacement code only, in one fenced block.\n\n"
            f"```{language}\n{code}\n```\n\n### Refactored code\n```{language}\n")


def extract_code(output: str) -> str:
    """The code in the model's answer: the prompt opened a fence, so up to the closing one
    (or the block of a fence the model opened again itself)."""
    fenced = _FENCE.search(output) if output.lstrip().startswith("```") else None
    text = fenced.group(1) if fenced else output.split("```", 1)[0]
    return text.rstrip()  # the span it replaces ends where its last line ends


def finish_rewrite(src: Source, offer: RewriteOffer, output: str, languages: Languages) -> Refactoring:
    """The model's answer as a verified edit of the offer's target, or refused with the reason."""
    replacement = extract_code(output)
    refactoring = Refactoring(offer.kind, offer.title, (Edit(*offer.target, replacement),), offer.target,
                              preserve=offer.preserve)
    if not replacement.strip():
        return refactoring.refused("the model's answer holds no code")
    return verify(src, refactoring, languages)


# -- where -------------------------------------------------------------------------------------

def _units(src: Source) -> frozenset[str]:
    rules = RULES.get(src.language)
    return (rules.functions | rules.classes) if rules is not None else frozenset()


def _innermost_unit(src: Source, offset: int) -> Node | None:
    node = src.covering(offset, offset)
    units = _units(src)
    return next((n for n in [node, *ancestors(node)] if n.type in units), None)


def _outer(unit: Node) -> Node:
    """A definition with its decorators (Python) or its export (JavaScript)."""
    parent = unit.parent
    if parent is not None and parent.type in ("decorated_definition", "export_statement"):
        return parent
    return unit


def _unit_name(src: Source, unit: Node) -> str:
    name = unit.child_by_field_name("name")
    return src.node_text(name) if name is not None else unit.type


def _has_docstring(src: Source, unit: Node) -> bool:
    if src.language == "python":
        body = unit.child_by_field_name("body")
        first = next((c for c in body.named_children if c.type != "comment"), None) if body is not None else None
        return first is not None and first.type == "expression_statement" and \
            first.named_child_count == 1 and first.named_children[0].type == "string"
    above = _outer(unit).prev_sibling
    return above is not None and above.type == "comment" and above.end_point.row + 1 >= unit.start_point.row


def _lacks_annotations(src: Source, function: Node) -> bool:
    if function.child_by_field_name("return_type") is None:
        return True
    params = function.child_by_field_name("parameters")
    plain = [p for p in params.named_children if p.type in ("identifier", "default_parameter")] if params else []
    return any(src.node_text(p).split("=")[0].strip() not in ("self", "cls") for p in plain)


def _whole_lines(src: Source, start: int, end: int) -> tuple[int, int]:
    """From the start of `start`'s line to the end of `end`'s line (without its line break)."""
    if end > start and src.text[end - 1] == "\n":
        end -= 1
    return src.line_start(start), src.line_end(end)


def _row_span(src: Source, start_row: int, end_row: int) -> tuple[int, int]:
    starts = [0] + [i + 1 for i, ch in enumerate(src.text) if ch == "\n"]
    start_row = min(max(start_row, 0), len(starts) - 1)
    end_row = min(max(end_row, start_row), len(starts) - 1)
    return starts[start_row], src.line_end(starts[end_row])


def _unit_span(src: Source, path: str, symbol: str) -> tuple[int, int] | None:
    if not symbol:
        return None
    analysis = analyze_tree(path, src.language, src.tree)
    units = [(f.qualname, f.start, f.end) for f in analysis.functions] + \
            [(c.name, c.start, c.end) for c in analysis.classes]
    for name, (srow, _), (erow, _) in units:
        if name == symbol:
            return _row_span(src, srow, erow)
    return None
