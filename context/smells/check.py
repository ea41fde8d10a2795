"""Whole-project checks and incremental re-checks of one file, over the project model.

`ProjectChecker(project, config).check()` analyses every source file of a `Project` (so the
file set, `.looplsignore`, the privacy rules and the size/binary/generated filters are the
ones retrieval uses): per-function and per-class metrics from the tree the project parsed
(one parse per file, shared with the symbol index on a cold build), token clones, import
cycles over the project's resolved import graph, history smells from the project's one
`git log` pass, and change impact against HEAD. Given a folder instead of a project, the
checker makes one of its own.

`findings_for(path)` then re-checks one file as the project holds it now (an open buffer's
incremental tree, else the disk); `check_file(path, text)` first puts `text` in the project
as the file's buffer (None: back to the disk).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from tree_sitter import Tree

from ..history import GIT_ERRORS, open_repo, run_git
from ..languages import language_for_path, parse
from ..project import Project
from . import findings as make
from .analyze import FileState, analyze_tree
from .checks import Finding, SmellConfig
from .clones import CloneIndex
from .impact import SignatureChange, callers, changed_signatures, impacted_calls, signatures
from .project import change_coupling, hotspots, import_cycles, shotgun_surgery
from .suppress import Suppressions, parse_suppressions

METRICS_CACHE_ENTRIES = 100_000  # bounds the memory of a long editing session


@dataclass
class Report:
    findings: list[Finding]
    files: int
    lines: int
    errors: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)


class ProjectChecker:
    def __init__(self, project: Project | str | Path, config: SmellConfig | None = None) -> None:
        self.project = project if isinstance(project, Project) else Project(Path(project))
        self.root = self.project.root
        self.config = config or SmellConfig()
        self.files: dict[str, FileState] = {}
        self.not_checked: dict[str, str] = {}  # source files over the limits -> why
        self._unchecked_at: dict[str, int] = {}  # ... and the project version that was
        self.clones = CloneIndex(self.config.min_clone_tokens)
        self.cycles: list[list[str]] = []
        self.history_findings: dict[str, list[Finding]] = {}
        self.changes: dict[str, list[SignatureChange]] = {}
        self._head_signatures: dict[str, dict | None] = {}
        self._new_signatures: dict[str, dict] = {}
        self._metrics_cache: dict = {}  # function text -> metrics, see analyze_tree

    # -- per file --------------------------------------------------------------------------
    def analyse(self, path: str, source: bytes, tree: Tree) -> FileState | None:
        """Metrics of one parsed file (the project's tree consumer on a cold build)."""
        lang = language_for_path(path)
        lines = source.count(b"\n") + 1
        if lang is None or lines > self.config.max_file_lines:
            self.files.pop(path, None)
            if lang is not None:
                self.not_checked[path] = f"{lines:,} lines exceed the {self.config.max_file_lines:,}-line limit"
                self._unchecked_at[path] = self.project.versions.get(path, -1)
            return None
        self.not_checked.pop(path, None)
        self._unchecked_at.pop(path, None)
        if len(self._metrics_cache) > METRICS_CACHE_ENTRIES:
            self._metrics_cache.clear()
        state = FileState(path, lang, source, analyze_tree(path, lang, tree, self._metrics_cache),
                          self.project.imports.import_rows(path), self.project.versions.get(path, -1))
        self.files[path] = state
        return state

    def _current(self, path: str) -> tuple[FileState | None, Tree | None]:
        """The file's state as the project holds it now, re-analysed only when it changed."""
        state = self.files.get(path)
        version = self.project.versions.get(path, -2)
        if state is not None and state.version == version:
            return state, None
        if self._unchecked_at.get(path) == version:
            return None, None  # over the line limit, and unchanged since
        got = self.project.tree(path)
        if got is None:
            self.files.pop(path, None)
            return None, None
        return self.analyse(path, *got), got[1]

    # -- whole project -------------------------------------------------------------------
    def check(self) -> Report:
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        if not self.project.built:
            self.project.build(consumer=self.analyse)
        else:
            for path in sorted(self.project.files):
                self._current(path)
        for path, state in self.files.items():  # imports resolve once the whole file set is known
            state.edges = self.project.imports.import_rows(path)
        timings["read+parse+metrics"] = time.perf_counter() - t0
        t = time.perf_counter()
        if self.config.enabled("LS301"):
            for path, state in self.files.items():
                self.clones.add(path, state.source, state.lang)
            self.clones.build()
        timings["clones"] = time.perf_counter() - t
        t = time.perf_counter()
        self.cycles = import_cycles(self._graph())
        timings["cycles"] = time.perf_counter() - t
        t = time.perf_counter()
        self._history()
        timings["history"] = time.perf_counter() - t
        t = time.perf_counter()
        self._working_tree_changes()
        timings["impact"] = time.perf_counter() - t
        t = time.perf_counter()
        found = self._project_findings()
        timings["report"] = time.perf_counter() - t
        timings["total"] = time.perf_counter() - t0
        lines = sum(s.source.count(b"\n") for s in self.files.values())
        errors = [f"{p}: skipped ({why})" for p, why in sorted(self.project.skipped.items()) if language_for_path(p)]
        errors += [f"{p}: not checked ({why})" for p, why in sorted(self.not_checked.items())]
        return Report(found, len(self.files), lines, errors, timings)

    def _graph(self) -> dict[str, set[str]]:
        return {p: set(s.edges) for p, s in self.files.items()}

    def _project_findings(self) -> list[Finding]:
        found: list[Finding] = []
        clones_by_file: dict[str, list] = {}
        unbuilt: dict[str, int] = {}
        if self.config.enabled("LS301"):
            clones, unbuilt = self.clones.all_clones(self.config.max_findings_per_file)
            for clone in clones:
                clones_by_file.setdefault(clone.path, []).append(clone)
                clones_by_file.setdefault(clone.other_path, []).append(make.mirrored(clone))
        for path, state in self.files.items():
            items = make.metric_findings(state, self.config)
            items += [make.clone_finding(c, self.config) for c in clones_by_file.get(path, [])]
            items += self._context_findings(path, state)
            found.extend(self._reported(path, self._unsuppressed(state, items), unbuilt.get(path, 0)))
        found.extend(self._impact_findings_elsewhere())
        found.extend(self._not_checked_findings(self.not_checked))
        return sorted(set(found), key=lambda f: (f.path, f.start, f.code, f.message))

    def _not_checked_findings(self, paths: Iterable[str]) -> list[Finding]:
        if not self.config.enabled("LS001"):
            return []
        return [make.not_checked(p, self.not_checked[p]) for p in paths if p in self.not_checked]

    def _reported(self, path: str, items: Iterable[Finding], more: int = 0) -> list[Finding]:
        """The file's findings as reported: capped, with `more` found but not built."""
        ordered = sorted(set(items), key=lambda f: (f.start, f.code, f.message))
        return make.capped(path, ordered, self.config, more)

    def _context_findings(self, path: str, state: FileState) -> list[Finding]:
        """Findings about one file that come from the project: cycles and history."""
        items: list[Finding] = []
        if self.config.enabled("LS401"):
            items += [make.cycle_finding(path, cycle, state) for cycle in self.cycles if path in cycle[:-1]]
        items += [f for f in self.history_findings.get(path, []) if self.config.enabled(f.code)]
        return items

    def _unsuppressed(self, state: FileState, items: Iterable[Finding], marks: Suppressions | None = None) -> list[Finding]:
        marks = marks if marks is not None else parse_suppressions(state.source.decode("utf-8", "replace"))
        return [f for f in items if self.config.enabled(f.code) and not marks.silences(f)]

    def _clone_findings(self, path: str, state: FileState, marks: Suppressions) -> tuple[list[Finding], int]:
        """The file's reported clone findings (at most the per-file cap: the rest are only
        counted, see clones.py), and how many more there are."""
        config = self.config
        if not config.enabled("LS301") or "*" in marks.file or "LS301" in marks.file:
            return [], 0

        def keep(clone) -> bool:
            return not marks.silences(make.clone_finding(clone, config))

        clones, more = self.clones.clones_for(path, state.source, state.lang, config.max_findings_per_file, keep)
        return [make.clone_finding(c, config) for c in clones], more

    # -- history ---------------------------------------------------------------------------
    def _history(self) -> None:
        self.history_findings = {}
        if not any(self.config.enabled(c) for c in ("LS402", "LS403", "LS404")):
            return
        commits = self.project.history(self.config.history_max_commits)
        if not commits:
            return
        prefix = self.project.git_prefix
        if prefix:
            commits = [c.__class__(c.sha, c.timestamp, c.author, tuple(
                f[len(prefix):] for f in c.files if f.startswith(prefix))) for c in commits]
        cfg = self.config
        existing = set(self.files)
        couplings = change_coupling(commits, cfg.coupling_min_revs, cfg.coupling_min_shared,
                                    cfg.coupling_min_degree, cfg.coupling_max_changeset, existing)
        complexity = {p: sum(f.cyclomatic for f in s.analysis.functions) for p, s in self.files.items()}
        spots = hotspots(commits, complexity, cfg.hotspot_min_revisions, cfg.hotspot_min_complexity, cfg.hotspot_top)
        for item in make.history_findings(couplings, spots, shotgun_surgery(couplings, cfg.shotgun_min_partners), cfg):
            self.history_findings.setdefault(item.path, []).append(item)

    # -- change impact ------------------------------------------------------------------------
    def _head_source(self, path: str) -> bytes | None:
        repo = open_repo(self.root)
        if repo is None:
            return None
        try:
            text = run_git(repo, "show", f"HEAD:{self.project.git_prefix}{path}", strip_newline_in_stdout=False)
        except (*GIT_ERRORS, UnicodeDecodeError):  # new in the working tree, or not text
            return None
        return text.encode("utf-8")

    def _working_tree_changes(self) -> None:
        self.changes = {}
        if not self.config.enabled("LS501"):
            return
        repo = open_repo(self.root)
        if repo is None:
            return
        prefix = self.project.git_prefix
        relative = [f"--relative={prefix}"] if prefix else []  # paths relative to the checked root
        try:
            names = run_git(repo, "diff", "HEAD", "--name-only", *relative).splitlines()
        except GIT_ERRORS:  # no commits yet
            return
        for path in names:
            got = self.project.tree(path) if path in self.files else None
            if got is not None:
                self.update_signatures(path, got[1])

    def update_signatures(self, path: str, tree: Tree) -> list[SignatureChange]:
        """Compare one file's signatures (its current `tree`) with HEAD; remember what changed
        (for impact findings)."""
        lang = language_for_path(path)
        if lang is None:
            return []
        if path not in self._head_signatures:  # HEAD does not move under an editing session
            old_source = self._head_source(path)
            self._head_signatures[path] = None if old_source is None else signatures(
                lang, parse(self.project.languages.parser(lang), old_source))
        old = self._head_signatures[path]
        if old is None:
            self.changes.pop(path, None)
            return []
        new = self._new_signatures[path] = signatures(lang, tree)
        changes = changed_signatures(path, old, new)
        if changes:
            self.changes[path] = changes
        else:
            self.changes.pop(path, None)
        return changes

    def impact_findings_in(self, path: str, state: FileState, tree: Tree | None = None) -> list[Finding]:
        """Calls in `path` left behind by signature changes in the files it may call into."""
        found: list[Finding] = []
        for changed, changes in self.changes.items():
            if changed == path or path not in callers(changed, {path: state.edges}, [path]):
                continue
            if tree is None:
                got = self.project.tree(path)
                if got is None:
                    return found
                tree = got[1]
            new_sigs = self._new_signatures.get(changed, {})
            for change in changes:
                for call, reason in impacted_calls(change, state.lang, tree, new_sigs.get(change.new.qualname, [])):
                    found.append(make.impact_finding(path, state, call, change, reason))
        return found

    def _impact_findings_elsewhere(self) -> list[Finding]:
        if not self.changes or not self.config.enabled("LS501"):
            return []
        found: list[Finding] = []
        graph = self._graph()
        targets = {c for changed in self.changes for c in callers(changed, graph, self.files)}
        for path in sorted(targets):
            state = self.files[path]
            found.extend(self._unsuppressed(state, self.impact_findings_in(path, state)))
        return found

    # -- one file ----------------------------------------------------------------------------------
    def check_file(self, path: str, text: str | bytes | None = None) -> list[Finding]:
        """Findings for one file re-analysed from `text`, which becomes the file's buffer in the
        project (None: the file on disk again)."""
        if text is not None:
            self.project.update_document(path, text.decode("utf-8", "replace") if isinstance(text, bytes) else text)
        else:
            self.project.close_document(path)
        return self.findings_for(path)

    def refresh(self, path: str) -> tuple[FileState | None, Tree | None]:
        """Bring one file's state up to the project's version: metrics, import cycles through
        it, and its signature changes against HEAD (which judge call sites elsewhere)."""
        if path in self.project.oversize:  # a buffer too large for the project to parse
            self.files.pop(path, None)
            self.not_checked[path] = self.project.oversize[path]
            return None, None
        previous = self.files.get(path)
        old_edges = set(previous.edges) if previous is not None else None
        state, tree = self._current(path)
        if state is None:
            return None, None
        if old_edges is None or old_edges != set(state.edges):
            self.cycles = import_cycles(self._graph())
        if self.config.enabled("LS501") and tree is not None and previous is not None \
                and previous.source != state.source:
            self.update_signatures(path, tree)
        return state, tree

    def findings_for(self, path: str) -> list[Finding]:
        """Findings for one file as the project holds it now, against the project state."""
        if language_for_path(path) is None:
            return []
        state, tree = self.refresh(path)
        if state is None:
            return self._not_checked_findings([path])
        marks = parse_suppressions(state.source.decode("utf-8", "replace"))
        clones, more = self._clone_findings(path, state, marks)
        items = make.metric_findings(state, self.config) + clones
        items += self._context_findings(path, state)
        if self.config.enabled("LS501"):
            items += self.impact_findings_in(path, state, tree)
        return self._reported(path, self._unsuppressed(state, items, marks), more)
