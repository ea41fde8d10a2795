"""Per-language node types that the metrics count, for the tree-sitter grammar wheels.

One table per language keeps the walkers language-neutral: a new language is a new entry.
Python's McCabe count follows radon's rules and lives in `metrics.py`; the table still drives
Python's cognitive complexity and the other per-function metrics.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LangRules:
    functions: frozenset[str]  # named functions and methods (a metrics unit each)
    lambdas: frozenset[str]  # anonymous functions: nesting for cognitive complexity
    classes: frozenset[str]  # class-like bodies holding methods and fields
    ifs: frozenset[str]
    else_clauses: frozenset[str]  # wrappers of `else` / `else if` branches (empty where the grammar has none)
    loops: frozenset[str]
    switches: frozenset[str]
    cases: frozenset[str]  # non-default case arms (McCabe +1 each)
    catches: frozenset[str]
    ternaries: frozenset[str]
    logical: frozenset[str]  # node types that may be a boolean operator
    logical_ops: frozenset[str]  # operator texts that count as boolean operators
    labelled_jumps: frozenset[str]  # break/continue/goto: +1 cognitive when they carry a label
    returns: frozenset[str]
    blocks: frozenset[str]  # statement-bearing nodes that open a nesting level
    parameters: frozenset[str]  # parameter node types inside the parameter list
    locals: frozenset[str]  # declarations of local variables (their name nodes are counted)
    calls: frozenset[str]
    field_access: frozenset[str]  # obj.attr nodes
    self_names: frozenset[str]  # receivers that mean "this object"


def _f(*names: str) -> frozenset[str]:
    return frozenset(names)


_C_LIKE_LOGICAL = _f("&&", "||")

PYTHON = LangRules(
    functions=_f("function_definition"), lambdas=_f("lambda"), classes=_f("class_definition"),
    ifs=_f("if_statement"), else_clauses=_f("elif_clause", "else_clause"),
    loops=_f("for_statement", "while_statement"), switches=_f("match_statement"), cases=_f("case_clause"),
    catches=_f("except_clause"), ternaries=_f("conditional_expression"),
    logical=_f("boolean_operator"), logical_ops=_f("and", "or"), labelled_jumps=_f(),
    returns=_f("return_statement"),
    blocks=_f("if_statement", "for_statement", "while_statement", "try_statement", "with_statement",
              "match_statement"),
    parameters=_f("identifier", "typed_parameter", "default_parameter", "typed_default_parameter"),
    locals=_f("assignment", "augmented_assignment", "for_statement", "named_expression", "as_pattern",
              "with_item", "except_clause"),
    calls=_f("call"), field_access=_f("attribute"), self_names=_f("self", "cls"),
)

_JS_COMMON = dict(
    functions=_f("function_declaration", "method_definition", "generator_function_declaration"),
    lambdas=_f("arrow_function", "function_expression", "function", "generator_function"),
    classes=_f("class_declaration", "class", "abstract_class_declaration"),
    ifs=_f("if_statement"), else_clauses=_f("else_clause"),
    loops=_f("for_statement", "for_in_statement", "while_statement", "do_statement"),
    switches=_f("switch_statement"), cases=_f("switch_case"), catches=_f("catch_clause"),
    ternaries=_f("ternary_expression"), logical=_f("binary_expression"), logical_ops=_f("&&", "||", "??"),
    labelled_jumps=_f("break_statement", "continue_statement"), returns=_f("return_statement"),
    blocks=_f("if_statement", "for_statement", "for_in_statement", "while_statement", "do_statement",
              "switch_statement", "try_statement"),
    parameters=_f("identifier", "assignment_pattern", "rest_pattern", "object_pattern", "array_pattern",
                  "required_parameter", "optional_parameter"),
    locals=_f("variable_declarator"), calls=_f("call_expression"), field_access=_f("member_expression"),
    self_names=_f("this"),
)
JAVASCRIPT = LangRules(**_JS_COMMON)

JAVA = LangRules(
    functions=_f("method_declaration", "constructor_declaration"), lambdas=_f("lambda_expression"),
    classes=_f("class_declaration", "enum_declaration", "record_declaration"),
    ifs=_f("if_statement"), else_clauses=_f(),
    loops=_f("for_statement", "enhanced_for_statement", "while_statement", "do_statement"),
    switches=_f("switch_expression", "switch_statement"), cases=_f("switch_label"),
    catches=_f("catch_clause"), ternaries=_f("ternary_expression"), logical=_f("binary_expression"),
    logical_ops=_C_LIKE_LOGICAL, labelled_jumps=_f("break_statement", "continue_statement"),
    returns=_f("return_statement"),
    blocks=_f("if_statement", "for_statement", "enhanced_for_statement", "while_statement", "do_statement",
              "switch_expression", "try_statement", "synchronized_statement"),
    parameters=_f("formal_parameter", "spread_parameter"), locals=_f("local_variable_declaration"),
    calls=_f("method_invocation"), field_access=_f("field_access"), self_names=_f("this"),
)

GO = LangRules(
    functions=_f("function_declaration", "method_declaration"), lambdas=_f("func_literal"),
    classes=_f(),  # methods are grouped by receiver type in classes.py
    ifs=_f("if_statement"), else_clauses=_f(), loops=_f("for_statement"),
    switches=_f("expression_switch_statement", "type_switch_statement", "select_statement"),
    cases=_f("expression_case", "type_case", "communication_case"), catches=_f(), ternaries=_f(),
    logical=_f("binary_expression"), logical_ops=_C_LIKE_LOGICAL,
    labelled_jumps=_f("break_statement", "continue_statement", "goto_statement"),
    returns=_f("return_statement"),
    blocks=_f("if_statement", "for_statement", "expression_switch_statement", "type_switch_statement",
              "select_statement"),
    parameters=_f("parameter_declaration", "variadic_parameter_declaration"),
    locals=_f("short_var_declaration", "var_spec"), calls=_f("call_expression"),
    field_access=_f("selector_expression"), self_names=_f(),
)

RUST = LangRules(
    functions=_f("function_item"), lambdas=_f("closure_expression"), classes=_f(),
    ifs=_f("if_expression"), else_clauses=_f("else_clause"),
    loops=_f("for_expression", "while_expression", "loop_expression"), switches=_f("match_expression"),
    cases=_f("match_arm"), catches=_f(), ternaries=_f(), logical=_f("binary_expression"),
    logical_ops=_C_LIKE_LOGICAL, labelled_jumps=_f("break_expression", "continue_expression"),
    returns=_f("return_expression"),
    blocks=_f("if_expression", "for_expression", "while_expression", "loop_expression", "match_expression"),
    parameters=_f("parameter", "self_parameter", "variadic_parameter"), locals=_f("let_declaration"),
    calls=_f("call_expression"), field_access=_f("field_expression"), self_names=_f("self"),
)

C = LangRules(
    functions=_f("function_definition"), lambdas=_f("lambda_expression"),
    classes=_f("class_specifier", "struct_specifier"),
    ifs=_f("if_statement"), else_clauses=_f("else_clause"),
    loops=_f("for_statement", "for_range_loop", "while_statement", "do_statement"),
    switches=_f("switch_statement"), cases=_f("case_statement"), catches=_f("catch_clause"),
    ternaries=_f("conditional_expression"), logical=_f("binary_expression"), logical_ops=_f("&&", "||", "and", "or"),
    labelled_jumps=_f("goto_statement"), returns=_f("return_statement"),
    blocks=_f("if_statement", "for_statement", "for_range_loop", "while_statement", "do_statement",
              "switch_statement", "try_statement"),
    parameters=_f("parameter_declaration", "optional_parameter_declaration", "variadic_parameter_declaration"),
    locals=_f("init_declarator", "declaration"), calls=_f("call_expression"),
    field_access=_f("field_expression"), self_names=_f("this"),
)

RULES: dict[str, LangRules] = {
    "python": PYTHON, "javascript": JAVASCRIPT, "typescript": JAVASCRIPT, "tsx": JAVASCRIPT,
    "java": JAVA, "go": GO, "rust": RUST, "c": C, "cpp": C,
}
