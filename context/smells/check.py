"""Whole-project checks and incremental re-checks of one file.

`ProjectChecker(root, config).check()` reads every source file once (git ls-files, else a
walk), computes per-function and per-class metrics, token clones, the import graph with its
cycles, history-based smells (one `git log` pass) and change impact against HEAD.
`check_file(path, text)` then re-checks one edited file (for example an open buffer) against
that state: its metrics, its clones against the other files, cycles through it, its history
findings and calls in it that a changed signature left behind.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from tree_sitter import Tree

from ..history import open_repo, read_history
from ..imports import PathIndex, extract_imports, resolve_import_all
from ..languages import Languages, language_for_path
from . import findings as make
from .analyze import FileAnalysis, analyze_tree
from .checks import Finding, SmellConfig
from .clones import CloneIndex, common_prefix
from .impact import SignatureChange, callers, changed_signatures, impacted_calls, signatures
from .project import change_coupling, hotspots, import_cycles, shotgun_surgery
from .suppress import parse_suppressions

MAX_FILE_BYTES = 1_000_000  # larger files are generated or vendored more often than written


def _point(source: bytes, offset: int) -> tuple[int, int]:
    row = source.count(b"\n", 0, offset)
    return row, offset - (source.rfind(b"\n", 0, offset) + 1)


@dataclass
class FileState:
    path: str
    lang: str
    source: bytes
    analysis: FileAnalysis
    edges: dict[str, int]  # imported repository file -> 0-based row of the import


@dataclass
class Report:
    findings: list[Finding]
    files: int
    lines: int
    errors: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)


def _git_files(root: Path) -> list[str]:
    """Tracked and untracked-but-not-ignored files under `root`, relative to it ([] outside git)."""
    import git

    repo = open_repo(root)
    if repo is None:
        return []
    try:
        out = repo.git.ls_files("-z", "--cached", "--others", "--exclude-standard", str(root))
        prefix = root.resolve().relative_to(Path(repo.working_tree_dir).resolve()).as_posix()
    except (git.GitCommandError, ValueError, OSError):  # git failing here means: fall back to a walk
        return []
    if prefix in ("", "."):
        return [rel for rel in out.split("\0") if rel]
    return [rel[len(prefix) + 1:] for rel in out.split("\0") if rel.startswith(prefix + "/")]


def _walked_files(root: Path) -> list[str]:
    paths = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d not in ("node_modules", "__pycache__")]
        rel = Path(folder).relative_to(root).as_posix()
        paths.extend(n if rel == "." else f"{rel}/{n}" for n in names)
    return paths


def list_source_files(root: Path) -> list[str]:
    """Root-relative paths of files in a supported language (git's view when in a repository)."""
    paths = _git_files(root) or _walked_files(root)
    return sorted(p for p in set(paths) if language_for_path(p) is not None)


class ProjectChecker:
    def __init__(self, root: Path, config: SmellConfig | None = None, languages: Languages | None = None) -> None:
        self.root = Path(root)
        self.config = config or SmellConfig()
        self.languages = languages or Languages()
        self.files: dict[str, FileState] = {}
        self.clones = CloneIndex(self.config.min_clone_tokens)
        self.index = PathIndex(())
        self.cycles: list[list[str]] = []
        self.history_findings: dict[str, list[Finding]] = {}
        self.changes: dict[str, list[SignatureChange]] = {}
        self._parsers: dict = {}
        self._head_signatures: dict[str, dict | None] = {}
        self._metrics_cache: dict = {}  # function text -> metrics, see analyze_tree
        self._trees: dict[str, tuple[bytes, Tree]] = {}  # last tree per edited file, for incremental parses

    # -- reading and parsing -------------------------------------------------------------
    def _parse(self, lang: str, source: bytes) -> Tree:
        parser = self._parsers.get(lang)
        if parser is None:
            parser = self._parsers[lang] = self.languages.parser(lang)
        return parser.parse(source)

    def _reparse(self, path: str, lang: str, source: bytes) -> Tree:
        """Parse, reusing the file's previous tree when there is one (an editor's edit is small)."""
        previous = self._trees.get(path)
        if previous is None:
            tree = self._parse(lang, source)
        else:
            tree = self._parse_edit(lang, previous[0], previous[1], source)
        if path in self._trees or path in self.files:
            self._trees[path] = (source, tree)
        return tree

    def _parse_edit(self, lang: str, old: bytes, old_tree: Tree, new: bytes) -> Tree:
        prefix = common_prefix(old, new)
        suffix = common_prefix(old[prefix:][::-1], new[prefix:][::-1])
        old_end, new_end = len(old) - suffix, len(new) - suffix
        old_tree.edit(start_byte=prefix, old_end_byte=old_end, new_end_byte=new_end,
                      start_point=_point(old, prefix), old_end_point=_point(old, old_end),
                      new_end_point=_point(new, new_end))
        parser = self._parsers.get(lang) or self._parsers.setdefault(lang, self.languages.parser(lang))
        return parser.parse(new, old_tree)

    def _read(self, path: str) -> bytes | None:
        full = self.root / path
        try:
            if full.stat().st_size > MAX_FILE_BYTES:
                return None
            data = full.read_bytes()
        except OSError:
            return None
        return None if b"\0" in data[:8192] else data

    def _state(self, path: str, source: bytes) -> tuple[FileState, Tree]:
        lang = language_for_path(path)
        tree = self._reparse(path, lang, source)
        edges: dict[str, int] = {}
        for ref in extract_imports(lang, tree, source):
            if ref.type_only:
                continue  # annotations only: no cycle at run time, no calls to check
            for target in resolve_import_all(path, ref, self.index):
                edges.setdefault(target, ref.line)
        if len(self._metrics_cache) > 100_000:  # bound the memory of a long editing session
            self._metrics_cache.clear()
        return FileState(path, lang, source, analyze_tree(path, lang, tree, self._metrics_cache), edges), tree

    # -- whole project -------------------------------------------------------------------
    def check(self) -> Report:
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        paths = list_source_files(self.root)
        self.index = PathIndex(paths)
        errors, sources = [], {}
        for path in paths:
            data = self._read(path)
            if data is None:
                errors.append(f"{path}: skipped (unreadable, binary or larger than {MAX_FILE_BYTES} bytes)")
            else:
                sources[path] = data
        timings["read"] = time.perf_counter() - t0
        t = time.perf_counter()
        for path, data in sources.items():
            self.files[path], _ = self._state(path, data)
        timings["parse+metrics"] = time.perf_counter() - t
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
        return Report(found, len(self.files), lines, errors, timings)

    def _graph(self) -> dict[str, set[str]]:
        return {p: set(s.edges) for p, s in self.files.items()}

    def _project_findings(self) -> list[Finding]:
        found: list[Finding] = []
        clones_by_file: dict[str, list] = {}
        if self.config.enabled("LS301"):
            for clone in self.clones.all_clones():
                clones_by_file.setdefault(clone.path, []).append(clone)
                clones_by_file.setdefault(clone.other_path, []).append(make.mirrored(clone))
        for path, state in self.files.items():
            items = make.metric_findings(state, self.config)
            items += [make.clone_finding(c, self.config) for c in clones_by_file.get(path, [])]
            items += self._context_findings(path, state)
            found.extend(self._unsuppressed(state, items))
        found.extend(self._impact_findings_elsewhere())
        return sorted(set(found), key=lambda f: (f.path, f.start, f.code, f.message))

    def _context_findings(self, path: str, state: FileState) -> list[Finding]:
        """Findings about one file that come from the project: cycles and history."""
        items: list[Finding] = []
        if self.config.enabled("LS401"):
            items += [make.cycle_finding(path, cycle, state) for cycle in self.cycles if path in cycle[:-1]]
        items += [f for f in self.history_findings.get(path, []) if self.config.enabled(f.code)]
        return items

    def _unsuppressed(self, state: FileState, items: Iterable[Finding]) -> list[Finding]:
        marks = parse_suppressions(state.source.decode("utf-8", "replace"))
        return [f for f in items if self.config.enabled(f.code) and not marks.silences(f)]

    # -- history ---------------------------------------------------------------------------
    def _history(self) -> None:
        self.history_findings = {}
        codes = ("LS402", "LS403", "LS404")
        if not any(self.config.enabled(c) for c in codes):
            return
        commits = read_history(self.root, self.config.history_max_commits)
        if not commits:
            return
        prefix = self._repo_prefix()
        if prefix:
            commits = [c.__class__(c.sha, c.timestamp, c.author, tuple(
                f[len(prefix) + 1:] for f in c.files if f.startswith(prefix + "/"))) for c in commits]
        cfg = self.config
        existing = set(self.files)
        couplings = change_coupling(commits, cfg.coupling_min_revs, cfg.coupling_min_shared,
                                    cfg.coupling_min_degree, cfg.coupling_max_changeset, existing)
        complexity = {p: sum(f.cyclomatic for f in s.analysis.functions) for p, s in self.files.items()}
        spots = hotspots(commits, complexity, cfg.hotspot_min_revisions, cfg.hotspot_min_complexity, cfg.hotspot_top)
        for item in make.history_findings(couplings, spots, shotgun_surgery(couplings, cfg.shotgun_min_partners), cfg):
            self.history_findings.setdefault(item.path, []).append(item)

    def _repo_prefix(self) -> str:
        repo = open_repo(self.root)
        if repo is None:
            return ""
        rel = self.root.resolve().relative_to(Path(repo.working_tree_dir).resolve()).as_posix()
        return "" if rel == "." else rel

    # -- change impact ------------------------------------------------------------------------
    def _head_source(self, path: str) -> bytes | None:
        import git

        repo = open_repo(self.root)
        if repo is None:
            return None
        prefix = self._repo_prefix()
        try:
            text = repo.git.show(f"HEAD:{prefix + '/' if prefix else ''}{path}", strip_newline_in_stdout=False)
        except (git.GitCommandError, UnicodeDecodeError):  # new in the working tree, or not text
            return None
        return text.encode("utf-8")

    def _working_tree_changes(self) -> None:
        self.changes = {}
        if not self.config.enabled("LS501"):
            return
        import git

        repo = open_repo(self.root)
        if repo is None:
            return
        prefix = self._repo_prefix()
        relative = [f"--relative={prefix}"] if prefix else []  # paths relative to the checked root
        try:
            names = repo.git.diff("HEAD", "--name-only", *relative).splitlines()
        except git.GitCommandError:  # no commits yet
            return
        for path in names:
            if path in self.files:
                self.update_signatures(path, self.files[path].source)

    def update_signatures(self, path: str, source: bytes, tree: Tree | None = None) -> list[SignatureChange]:
        """Compare one file's signatures with HEAD; remember what changed (for impact findings)."""
        lang = language_for_path(path)
        if lang is None:
            return []
        if path not in self._head_signatures:  # HEAD does not move under an editing session
            old_source = self._head_source(path)
            self._head_signatures[path] = None if old_source is None else signatures(lang, self._parse(lang, old_source))
        old = self._head_signatures[path]
        if old is None:
            self.changes.pop(path, None)
            return []
        new = signatures(lang, tree or self._parse(lang, source))
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
            tree = tree or self._parse(state.lang, state.source)
            new_sigs = signatures(language_for_path(changed), self._parse(
                language_for_path(changed), self.files[changed].source)) if changed in self.files else {}
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
        """Findings for one file, re-analysed from `text` (or disk) against the project state."""
        source = text.encode("utf-8") if isinstance(text, str) else text
        if source is None:
            source = self._read(path)
            if source is None:
                return []
        if language_for_path(path) is None:
            return []
        if path not in self.index.paths:
            self.index = PathIndex(set(self.index.paths) | {path})
        previous = self.files.get(path)
        state, tree = self._state(path, source)
        self.files[path] = state
        if previous is None or set(previous.edges) != set(state.edges):
            self.cycles = import_cycles(self._graph())
        items = make.metric_findings(state, self.config)
        if self.config.enabled("LS301"):
            items += [make.clone_finding(c, self.config) for c in self.clones.clones_for(path, source, state.lang)]
        items += self._context_findings(path, state)
        if self.config.enabled("LS501"):
            if previous is not None and previous.source != source:
                self.update_signatures(path, source, tree)
            items += self.impact_findings_in(path, state, tree)
        return sorted(set(self._unsuppressed(state, items)), key=lambda f: (f.start, f.code, f.message))
