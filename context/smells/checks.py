"""The checks loopls runs, their default thresholds, and the findings they produce.

Each check has a stable code, a slug (its anchor in docs/smells.md) and a default threshold
taken from the tool people already use for it (see docs/smells.md for the source of each).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

DOCS_URL = "https://github.com/loopls/loopls/blob/main/docs/smells.md"


@dataclass(frozen=True)
class Check:
    code: str
    slug: str
    title: str
    scope: str  # function | class | file | project | history | impact

    @property
    def doc_url(self) -> str:
        return f"{DOCS_URL}#{self.slug}"


CHECKS: tuple[Check, ...] = (
    Check("LS001", "file-not-checked", "File too large to check, or more findings than are reported", "file"),
    Check("LS101", "cyclomatic-complexity", "Function with high McCabe cyclomatic complexity", "function"),
    Check("LS102", "cognitive-complexity", "Function with high cognitive complexity", "function"),
    Check("LS103", "too-many-statements", "Function with too many statements", "function"),
    Check("LS104", "too-many-arguments", "Function with too many parameters", "function"),
    Check("LS105", "deep-nesting", "Function with deeply nested blocks", "function"),
    Check("LS106", "too-many-returns", "Function with too many return statements", "function"),
    Check("LS107", "too-many-branches", "Function with too many branches", "function"),
    Check("LS108", "too-many-locals", "Function with too many local variables", "function"),
    Check("LS201", "too-many-attributes", "Class with too many instance attributes", "class"),
    Check("LS202", "too-many-public-methods", "Class with too many public methods", "class"),
    Check("LS203", "god-class", "God class (PMD rule: WMC, ATFD and TCC)", "class"),
    Check("LS301", "duplicated-code", "Duplicated code (token-level clone)", "file"),
    Check("LS401", "import-cycle", "Import cycle between modules", "project"),
    Check("LS402", "hotspot", "Hotspot: frequently changed and complex", "history"),
    Check("LS403", "change-coupling", "Files that change together (temporal coupling)", "history"),
    Check("LS404", "shotgun-surgery", "Shotgun surgery: changes drag many files along", "history"),
    Check("LS501", "change-impact", "Call site no longer matches a changed signature", "impact"),
)
BY_CODE = {c.code: c for c in CHECKS}
BY_SLUG = {c.slug: c for c in CHECKS}


def check_for(key: str) -> Check:
    """A check by code (LS101) or slug (cyclomatic-complexity); KeyError names the valid ones."""
    found = BY_CODE.get(key.upper()) or BY_SLUG.get(key.lower())
    if found is None:
        raise KeyError(f"unknown check {key!r}; known: {', '.join(c.code + ' ' + c.slug for c in CHECKS)}")
    return found


@dataclass(frozen=True)
class SmellConfig:
    """Thresholds (a finding is raised when a value exceeds the `max_*` limit) and checks."""

    max_cyclomatic: int = 10  # ruff C901 / radon rank B
    max_cognitive: int = 15  # SonarSource S3776
    max_statements: int = 50  # pylint max-statements
    max_arguments: int = 5  # pylint max-args
    max_nesting: int = 5  # pylint max-nested-blocks
    max_returns: int = 6  # pylint max-returns
    max_branches: int = 12  # pylint max-branches
    max_locals: int = 15  # pylint max-locals
    max_attributes: int = 7  # pylint max-attributes
    max_public_methods: int = 20  # pylint max-public-methods
    god_class_wmc: int = 47  # PMD GodClass: WMC >= 47 and ATFD > 5 and TCC < 1/3
    god_class_atfd: int = 5
    god_class_tcc: float = 1 / 3
    min_clone_tokens: int = 100  # PMD CPD minimum-tokens
    coupling_min_revs: int = 5  # code-maat defaults
    coupling_min_shared: int = 5
    coupling_min_degree: int = 30  # percent
    coupling_max_changeset: int = 30
    hotspot_min_revisions: int = 10
    hotspot_min_complexity: int = 20  # summed McCabe of the file's functions
    hotspot_top: int = 10  # at most this many hotspot findings, highest score first
    shotgun_min_partners: int = 6  # Lanza & Marinescu's ShotgunSurgery "CC > 5", over history
    history_max_commits: int = 5000
    max_file_lines: int = 50_000  # longer files are not checked (one LS001 note says so)
    max_findings_per_file: int = 200  # the rest are summed up in one LS001 note
    disabled: frozenset[str] = field(default_factory=frozenset)  # codes

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name != "disabled" and (isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0):
                raise ValueError(f"smells.{f.name} must be a number >= 0, not {value!r}")
        object.__setattr__(self, "disabled", frozenset(check_for(c).code for c in self.disabled))
        if self.min_clone_tokens < 10:
            raise ValueError("smells.min_clone_tokens must be >= 10")

    def enabled(self, code: str) -> bool:
        return code not in self.disabled

    @classmethod
    def from_settings(cls, thresholds: Mapping[str, Any] | None = None,
                      disabled: Iterable[str] = ()) -> SmellConfig:
        """From editor/pyproject settings: camelCase threshold names (`maxCyclomatic`) and codes
        or slugs to disable. Unknown names raise ValueError naming the known ones."""
        known = {_camel(f.name): f for f in dataclasses.fields(cls) if f.name != "disabled"}
        values = {}
        for key, value in (thresholds or {}).items():
            if key not in known:
                raise ValueError(f"unknown smells threshold {key!r}; known: {', '.join(sorted(known))}")
            f = known[key]
            if f.type in ("int", int) and isinstance(value, float):
                if value != int(value):
                    raise ValueError(f"smells threshold {key} must be a whole number, not {value}")
                value = int(value)  # JSON and cattrs may hand integers over as floats
            values[f.name] = value
        try:
            return cls(**values, disabled=frozenset(disabled))
        except KeyError as exc:
            raise ValueError(str(exc.args[0])) from None


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


@dataclass(frozen=True)
class Finding:
    code: str
    message: str  # says the measured value and the threshold
    path: str  # repository-relative, forward slashes
    start: tuple[int, int]  # 0-based (row, code-point column)
    end: tuple[int, int]
    value: float | None = None
    threshold: float | None = None
    related: tuple[tuple[str, int], ...] = ()  # other places involved: (path, 0-based row)
    symbol: str = ""  # the function or class it is about, when there is one

    @property
    def check(self) -> Check:
        return BY_CODE[self.code]

    def to_json(self) -> dict:
        return {
            "code": self.code, "check": self.check.slug, "message": self.message, "path": self.path,
            "line": self.start[0] + 1, "column": self.start[1] + 1,
            "endLine": self.end[0] + 1, "endColumn": self.end[1] + 1,
            "value": self.value, "threshold": self.threshold, "symbol": self.symbol,
            "related": [{"path": p, "line": r + 1} for p, r in self.related],
            "documentation": self.check.doc_url,
        }
