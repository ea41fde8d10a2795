"""`loopls check PATH [--format text|json|sarif]`: code-smell findings like a linter.

Exit codes: 0 no findings, 1 findings, 2 error (bad path, bad configuration). Thresholds come
from `[tool.loopls.smells]` in the checked project's pyproject.toml (`thresholds` table with
camelCase names, `disabled` list of codes or slugs), then from `--threshold NAME=VALUE` and
`--disable CODE` on the command line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from loopls.context.files import read_text
from loopls.context.history import open_repo
from loopls.context.workspace import WorkspaceError
from loopls.context.smells import ProjectChecker, SmellConfig, to_sarif

from ..version import __version__
from .args import fail


def add_check_parser(sub: Any) -> None:
    check = sub.add_parser("check", help="code-smell diagnostics like a linter (exit 0 clean, 1 findings, 2 error)")
    check.add_argument("path", type=Path, help="a project folder or one file in it")
    check.add_argument("--format", choices=("text", "json", "sarif"), default="text")
    check.add_argument("--output", "-o", type=Path, help="write the report here instead of stdout")
    check.add_argument("--disable", action="append", default=[], metavar="CODE",
                       help="a check to skip, by code (LS301) or name (duplicated-code); repeatable, comma lists too")
    check.add_argument("--threshold", action="append", default=[], metavar="NAME=VALUE",
                       help="override a threshold, e.g. maxCyclomatic=15 (see docs/smells.md); repeatable")
    check.add_argument("--no-history", action="store_true", help="skip the git-history checks (LS402-LS404)")


def _fail(message: str) -> int:
    return fail(message, "loopls check")


def _project_root(path: Path) -> Path:
    """The folder whose files make the project: the git work tree holding `path`, else its folder."""
    folder = path if path.is_dir() else path.parent
    repo = open_repo(folder)
    return Path(repo.working_tree_dir) if repo is not None and repo.working_tree_dir else folder


def _pyproject_settings(root: Path) -> dict[str, Any]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: no pyproject configuration, flags still work
        return {}
    text = read_text(root / "pyproject.toml")
    if text is None:
        return {}
    data = tomllib.loads(text)
    return data.get("tool", {}).get("loopls", {}).get("smells", {})


def _config(args: argparse.Namespace, root: Path) -> SmellConfig:
    settings = _pyproject_settings(root)
    thresholds = dict(settings.get("thresholds", {}))
    disabled = list(settings.get("disabled", []))
    for item in args.threshold:
        name, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--threshold expects NAME=VALUE, got {item!r}")
        try:
            thresholds[name.strip()] = float(value) if "." in value else int(value)
        except ValueError:
            raise ValueError(f"--threshold {name}: {value!r} is not a number") from None
    disabled += [code.strip() for item in args.disable for code in item.split(",") if code.strip()]
    if args.no_history:
        disabled += ["LS402", "LS403", "LS404"]
    return SmellConfig.from_settings(thresholds, disabled)


def run_check(args: argparse.Namespace) -> int:
    path = args.path
    if not path.exists():
        return _fail(f"{path}: no such file or folder")
    if args.output is not None:
        problem = _unwritable(args.output)
        if problem:  # found before the check runs, not after
            return _fail(f"-o {args.output}: {problem}")
    root = _project_root(path.resolve())
    try:
        config = _config(args, root)
    except (ValueError, OSError) as exc:  # tomllib.TOMLDecodeError is a ValueError
        return _fail(str(exc))
    try:
        report = ProjectChecker(root, config).check()
    except WorkspaceError as exc:
        return _fail(str(exc))
    except Exception as exc:  # noqa: BLE001 - the linter boundary: a crash must exit 2, never 1 ("findings")
        return _fail(f"internal error while checking {root}: {type(exc).__name__}: {exc}")
    findings = report.findings
    if path.resolve() != root:
        prefix = path.resolve().relative_to(root).as_posix()
        findings = [f for f in findings if f.path == prefix or f.path.startswith(prefix + "/")]
    text = _render(args.format, findings, report, root)
    if args.output:
        try:
            args.output.write_text(text, encoding="utf-8")
        except OSError as exc:
            return _fail(f"-o {args.output}: {exc.strerror or exc}")
    else:
        sys.stdout.write(text)
    for error in report.errors:
        print(f"loopls check: {error}", file=sys.stderr)
    return 1 if findings else 0


def _unwritable(output: Path) -> str | None:
    """Why the report cannot be written to `output`, or None."""
    if output.is_dir():
        return "is a folder"
    folder = output.parent
    if not folder.is_dir():
        return f"the folder {folder} does not exist"
    if not os.access(folder, os.W_OK):
        return f"the folder {folder} is not writable"
    return None


def _render(fmt: str, findings: list, report: Any, root: Path) -> str:
    if fmt == "sarif":
        return json.dumps(to_sarif(findings, __version__, root.as_uri()), indent=2) + "\n"
    if fmt == "json":
        return json.dumps({
            "findings": [f.to_json() for f in findings],
            "summary": {"findings": len(findings), "files": report.files, "lines": report.lines,
                        "seconds": round(report.timings.get("total", 0.0), 3)},
        }, indent=2) + "\n"
    lines = [f"{f.path}:{f.start[0] + 1}:{f.start[1] + 1}: {f.code} {f.message} [{f.check.slug}]" for f in findings]
    files = len({f.path for f in findings})
    lines.append(f"{len(findings)} findings in {files} files ({report.files} files, {report.lines} lines checked "
                 f"in {report.timings.get('total', 0.0):.2f} s)")
    return "\n".join(lines) + "\n"
