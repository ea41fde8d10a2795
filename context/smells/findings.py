"""Findings from measurements: one place that words every message (value and threshold)."""

from __future__ import annotations

from .analyze import FileState
from .checks import Finding, SmellConfig
from .clones import Clone
from .impact import CallSite, SignatureChange
from .project import Coupling, Hotspot

# (code, metric attribute, config limit attribute, wording)
_FUNCTION_CHECKS = (
    ("LS101", "cyclomatic", "max_cyclomatic", "cyclomatic complexity"),
    ("LS102", "cognitive", "max_cognitive", "cognitive complexity"),
    ("LS103", "statements", "max_statements", "statements"),
    ("LS104", "params", "max_arguments", "parameters"),
    ("LS105", "nesting", "max_nesting", "nested block depth"),
    ("LS106", "returns", "max_returns", "return statements"),
    ("LS107", "branches", "max_branches", "branches"),
    ("LS108", "locals", "max_locals", "local variables"),
)
_CLASS_CHECKS = (
    ("LS201", "attributes", "max_attributes", "instance attributes"),
    ("LS202", "public_methods", "max_public_methods", "public methods"),
)


def code_points(source: bytes, point: tuple[int, int], lines: list[bytes] | None = None) -> tuple[int, int]:
    """A tree-sitter (row, byte column) as (row, code-point column)."""
    row, col = point
    if col == 0:
        return row, 0
    lines = lines if lines is not None else source.split(b"\n")
    line = lines[row] if row < len(lines) else b""
    return row, len(line[:col].decode("utf-8", "replace"))


def _span(state: FileState, unit, lines: list[bytes]) -> tuple[tuple[int, int], tuple[int, int]]:
    return code_points(state.source, unit.name_start, lines), code_points(state.source, unit.name_end, lines)


def _god_class(cls, config: SmellConfig) -> bool:
    return cls.tcc is not None and cls.wmc >= config.god_class_wmc and cls.atfd > config.god_class_atfd \
        and cls.tcc < config.god_class_tcc


def metric_findings(state: FileState, config: SmellConfig) -> list[Finding]:
    """Per-function and per-class findings of one file."""
    lines = state.source.split(b"\n")
    found: list[Finding] = []
    for fn in state.analysis.functions:
        for code, attr, limit_attr, words in _FUNCTION_CHECKS:
            value, limit = getattr(fn, attr), getattr(config, limit_attr)
            if value > limit and config.enabled(code):
                found.append(Finding(code, f"`{fn.qualname}` has {words} {value} (threshold {limit})", state.path,
                                     *_span(state, fn, lines), value, limit, symbol=fn.qualname))
    for cls in state.analysis.classes:
        for code, attr, limit_attr, words in _CLASS_CHECKS:
            value, limit = getattr(cls, attr), getattr(config, limit_attr)
            if value > limit and config.enabled(code):
                found.append(Finding(code, f"class `{cls.name}` has {value} {words} (threshold {limit})", state.path,
                                     *_span(state, cls, lines), value, limit, symbol=cls.name))
        if config.enabled("LS203") and _god_class(cls, config):
            found.append(Finding(
                "LS203", f"class `{cls.name}` is a god class: WMC {cls.wmc} (threshold >= {config.god_class_wmc}), "
                f"ATFD {cls.atfd} (threshold > {config.god_class_atfd}), TCC {cls.tcc:.2f} "
                f"(threshold < {config.god_class_tcc:.2f})", state.path, *_span(state, cls, lines),
                cls.wmc, config.god_class_wmc, symbol=cls.name))
    return found


def mirrored(clone: Clone) -> Clone:
    return Clone(clone.other_path, clone.other_lines, clone.path, clone.lines, clone.tokens)


def clone_finding(clone: Clone, config: SmellConfig) -> Finding:
    first, last = clone.lines
    where = f"{clone.other_path}:{clone.other_lines[0] + 1}-{clone.other_lines[1] + 1}"
    return Finding("LS301", f"{clone.tokens} tokens (lines {first + 1}-{last + 1}) duplicated in {where} "
                   f"(threshold {config.min_clone_tokens} tokens)", clone.path, (first, 0), (last + 1, 0),
                   clone.tokens, config.min_clone_tokens, related=((clone.other_path, clone.other_lines[0]),))


def cycle_finding(path: str, cycle: list[str], state: FileState) -> Finding:
    position = cycle.index(path)
    rotated = cycle[position:-1] + cycle[:position] + [path]
    row = state.edges.get(rotated[1], 0)
    return Finding("LS401", f"import cycle of {len(cycle) - 1} files: {' -> '.join(rotated)} (threshold: no cycles)",
                   path, (row, 0), (row + 1, 0), len(cycle) - 1, 0,
                   related=tuple((p, 0) for p in rotated[1:-1]))


def history_findings(couplings: list[Coupling], spots: list[Hotspot], shotgun: dict[str, list[str]],
                     config: SmellConfig) -> list[Finding]:
    found: list[Finding] = []
    for c in couplings:
        for path, other, revs in ((c.path, c.other, c.revisions), (c.other, c.path, c.other_revisions)):
            found.append(Finding("LS403", f"changes together with {other} in {c.shared} commits: coupling "
                                 f"{int(c.degree)}% (threshold {config.coupling_min_degree}%, at least "
                                 f"{config.coupling_min_shared} shared of {revs} revisions)", path, (0, 0), (1, 0),
                                 round(c.degree, 1), config.coupling_min_degree, related=((other, 0),)))
    for h in spots:
        found.append(Finding("LS402", f"hotspot: {h.revisions} revisions x complexity {h.complexity} = {h.score} "
                             f"(thresholds: {config.hotspot_min_revisions} revisions, complexity "
                             f"{config.hotspot_min_complexity}, top {config.hotspot_top})", h.path, (0, 0), (1, 0),
                             h.score, None))
    for path, partners in shotgun.items():
        shown = ", ".join(partners[:5]) + (", ..." if len(partners) > 5 else "")
        found.append(Finding("LS404", f"shotgun surgery: its changes drag along {len(partners)} coupled files "
                             f"(threshold {config.shotgun_min_partners}): {shown}", path, (0, 0), (1, 0),
                             len(partners), config.shotgun_min_partners, related=tuple((p, 0) for p in partners)))
    return found


def impact_finding(path: str, state: FileState, call: CallSite, change: SignatureChange, reason: str) -> Finding:
    node = call.node
    start = code_points(state.source, node.start_point)
    end = code_points(state.source, node.end_point)
    return Finding("LS501", f"call to `{change.new.qualname}` no longer matches its signature "
                   f"{change.new.text} (was {change.old.text} in HEAD): {reason}", path, start, end,
                   related=((change.path, 0),), symbol=change.new.qualname)


def not_checked(path: str, why: str) -> Finding:
    return Finding("LS001", f"not checked for code smells: {why}", path, (0, 0), (1, 0))


def capped(path: str, found: list[Finding], config: SmellConfig, more: int = 0) -> list[Finding]:
    """At most `max_findings_per_file` findings of one file (in position order), and one
    note saying how many more there are (`more`: found beyond `found` but not built)."""
    limit = config.max_findings_per_file
    if len(found) + more <= limit or not config.enabled("LS001"):
        return found[:limit]
    total = len(found) + more
    note = Finding("LS001", f"{total - limit:,} more findings in this file are not reported "
                   f"(threshold {limit} per file)", path, (0, 0), (1, 0), total, limit)
    return [*found[:limit], note]
