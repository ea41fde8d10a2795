"""The training corpus: permissively licensed Python source from an interpreter's standard
library and site-packages, with the provenance of every file.

Files of a distribution are the ones its dist-info RECORD lists, so each file carries that
distribution's name, version and license (licenses.py). Refused, and counted in the manifest:
distributions without a permissive license; held-out packages (kept out so the evaluation can
run on them) and any copy of them, e.g. vendored inside another package; vendored folders in
general (their license is not the distribution's); secret-bearing files (the context engine's
privacy rules); generated, minified, binary, over-size or unparsable files.
"""

from __future__ import annotations

import ast
import hashlib
import os
import site
import sys
import sysconfig
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from loopls.context.privacy import is_secret_path, redact
from loopls.context.workspace import is_binary, looks_generated

from .dedup import signature
from .licenses import detect_license, read_metadata
from .outline import Outline, outline_of

STDLIB = "python-stdlib"
# Distribution name -> the import names it installs. Present on the CPU machines, permissive,
# with many cross-file imports: the evaluation runs on these, so no copy may be trained on.
HELD_OUT = {
    "click": ("click",),
    "rich": ("rich",),
    "attrs": ("attr", "attrs"),
    "cattrs": ("cattrs", "cattr"),
    "pygls": ("pygls",),
    "gitpython": ("git",),
    "typer": ("typer",),
    "markdown-it-py": ("markdown_it",),
}
VENDOR_DIRS = {"_vendor", "vendor", "vendored", "_vendored", "third_party", "thirdparty", "3rdparty",
               "externals", "_externals", "extern"}
SKIP_DIRS = {"__pycache__", "site-packages", "dist-packages", "idlelib", "turtledemo"}
SUFFIXES = (".py", ".pyi")
MIN_BYTES, MAX_BYTES = 200, 200_000
MAX_LINE, MAX_MEAN_LINE = 1000, 100


@dataclass(frozen=True)
class SourceFile:
    package: str  # distribution name, or STDLIB
    path: str  # relative to the install root, e.g. "click/core.py" or "asyncio/tasks.py"
    text: str
    outline: Outline = field(default=Outline((), ()), compare=False, repr=False)

    @property
    def repo(self) -> str:
        """The unit a prompt treats as one repository: the distribution, or for the standard
        library its top-level package (a lone module is its own)."""
        if self.package != STDLIB:
            return self.package
        return f"{STDLIB}/{self.path.split('/', 1)[0].removesuffix('.py')}"


@dataclass
class Distribution:
    name: str
    version: str
    license: str | None  # normalised permissive ids, None when not permissive or unknown
    license_raw: str
    machine: str
    root: Path
    paths: list[str] = field(default_factory=list)  # candidate source files, root-relative


@dataclass
class Counts:
    """What happened to the files of one distribution (a manifest row)."""

    package: str
    version: str
    license: str
    machine: str
    files: int = 0
    bytes: int = 0
    dropped: dict[str, int] = field(default_factory=dict)

    def drop(self, reason: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1


def norm_name(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def local_roots() -> tuple[Path, list[Path]]:
    """This interpreter's standard library folder and its site-packages folders."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    sites = [Path(p) for p in [*site.getsitepackages(), site.getusersitepackages()] if Path(p).is_dir()]
    if sys.prefix != sys.base_prefix:  # a venv: its own site-packages first
        sites.insert(0, Path(sysconfig.get_paths()["purelib"]))
    seen: list[Path] = []
    for s in sites:
        if s.resolve() not in [x.resolve() for x in seen]:
            seen.append(s)
    return stdlib, seen


def stdlib_distribution(root: Path, machine: str) -> Distribution:
    dist = Distribution(STDLIB, sys.version.split()[0], "PSF-2.0", "Python Software Foundation License",
                        machine, root)
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not d.startswith("."))
        rel_dir = Path(dirpath).relative_to(root).as_posix()
        for name in sorted(filenames):
            if name.endswith(SUFFIXES):
                dist.paths.append(name if rel_dir == "." else f"{rel_dir}/{name}")
    return dist


def site_distributions(root: Path, machine: str) -> list[Distribution]:
    """Every distribution installed in a site-packages folder, with its RECORD's sources."""
    out = []
    for info in sorted(root.glob("*.dist-info")):
        try:
            meta = read_metadata((info / "METADATA").read_text(encoding="utf-8", errors="replace"))
            record = (info / "RECORD").read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        name = meta.get("Name") or info.name.split("-")[0]
        license_id, raw = detect_license(meta)
        dist = Distribution(name, meta.get("Version") or "?", license_id, raw, machine, root)
        for line in record.splitlines():
            path = line.rsplit(",", 2)[0].strip('"')
            if path.endswith(SUFFIXES) and not path.startswith(("../", "/")):
                dist.paths.append(path)
        dist.paths.sort()
        out.append(dist)
    return out


def held_out_reason(dist_name: str, path: str) -> str | None:
    """Why a file counts as a held-out package's code, or None: the package itself, a module
    it installs shipped by another distribution, or a vendored copy of it."""
    if norm_name(dist_name) in HELD_OUT:
        return f"held-out package {norm_name(dist_name)}"
    parts = [p.removesuffix(".pyi").removesuffix(".py") for p in PurePosixPath(path).parts]
    names = {n for names in HELD_OUT.values() for n in names}
    heads = [parts[0]] + [b for a, b in zip(parts, parts[1:]) if a in VENDOR_DIRS]
    hit = next((p for p in heads if p in names), None)
    return f"copy of held-out package {hit}" if hit else None


def file_problem(path: str, data: bytes) -> str | ast.Module:
    """Why a source file is not taken, or its syntax tree when it is."""
    parts = PurePosixPath(path).parts
    if any(p in VENDOR_DIRS for p in parts[:-1]):
        return "vendored"
    if any(p in SKIP_DIRS for p in parts[:-1]):
        return "skipped folder"
    if is_secret_path(path):
        return "secret file"
    if not MIN_BYTES <= len(data) <= MAX_BYTES:
        return "size"
    if is_binary(data) or looks_generated(path, data[:4096]):
        return "generated or binary"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return "not utf-8"
    lines = text.splitlines() or [""]
    if max(map(len, lines)) > MAX_LINE or len(text) / len(lines) > MAX_MEAN_LINE:
        return "long lines"
    if redact(text) != text:
        return "secret-looking string"
    try:
        with warnings.catch_warnings():  # old code's invalid escapes are not our concern
            warnings.simplefilter("ignore", SyntaxWarning)
            return ast.parse(text, filename=path)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return "does not parse"


def _order(seed: int, package: str, path: str) -> str:
    """A fixed pseudo-random order of a package's files, so that a byte cap takes a spread
    of the package rather than its alphabetically first folder."""
    return hashlib.sha1(f"{seed}:{package}:{path}".encode()).hexdigest()


def collect(dist: Distribution, cap_bytes: int, seed: int) -> tuple[list[SourceFile], Counts]:
    """The accepted files of one distribution, at most `cap_bytes` of them, with outlines."""
    counts = Counts(dist.name, dist.version, dist.license or f"refused: {dist.license_raw or 'unknown'}",
                    dist.machine)
    files: list[SourceFile] = []
    if dist.license is None:
        counts.drop("license")
        return files, counts
    for path in sorted(dist.paths, key=lambda p: _order(seed, dist.name, p)):
        reason = held_out_reason(dist.name, path)
        if reason is None and counts.bytes >= cap_bytes:
            reason = "package cap"
        if reason is None:
            try:
                data = (dist.root / path).read_bytes()
            except OSError:
                data = b""
            reason = file_problem(path, data)
        if isinstance(reason, str):
            counts.drop(reason)
            continue
        files.append(SourceFile(dist.name, path, data.decode("utf-8"), outline_of(reason, path)))
        counts.files += 1
        counts.bytes += len(data)
    return files, counts


def local_distributions(machine: str) -> list[Distribution]:
    stdlib, sites = local_roots()
    dists = [stdlib_distribution(stdlib, machine)]
    seen: set[str] = set()
    for root in sites:
        for dist in site_distributions(root, machine):
            if norm_name(dist.name) not in seen and norm_name(dist.name) != "loopls":
                seen.add(norm_name(dist.name))
                dists.append(dist)
    return dists


def gather(dists: Iterable[Distribution], cap_bytes: int, stdlib_cap_bytes: int, seed: int,
           workers: int = 1) -> Iterator[tuple[list[SourceFile], Counts, list]]:
    """`collect` over distributions, plus each file's MinHash signature (computed where the
    text already is), in parallel processes when `workers` > 1 (the same result in the same order)."""
    jobs = [(d, stdlib_cap_bytes if d.name == STDLIB else cap_bytes, seed) for d in dists]
    if workers <= 1:
        yield from map(_collect_job, jobs)
        return
    from concurrent.futures import ProcessPoolExecutor

    # Largest first so that no big package starts last; results still come back in job order.
    with ProcessPoolExecutor(workers) as pool:
        futures = {id(j): None for j in jobs}
        for job in sorted(jobs, key=lambda j: -len(j[0].paths)):
            futures[id(job)] = pool.submit(_collect_job, job)
        for job in jobs:
            yield futures[id(job)].result()


def _collect_job(job: tuple[Distribution, int, int]) -> tuple[list[SourceFile], Counts, list]:
    files, counts = collect(*job)
    return files, counts, [signature(f.text) for f in files]
