"""Code-smell analysis: per-function and per-class metrics, clones, project and history smells.

Entry points: `ProjectChecker(root, SmellConfig()).check()` for a whole project and
`.check_file(path, text)` for one edited file; `analyze_tree` for one parsed file;
`to_sarif` for code-scanning services. Checks and thresholds are listed in `checks.CHECKS`
and documented in docs/smells.md.
"""

from .analyze import FileAnalysis, analyze_tree
from .check import ProjectChecker, Report
from .checks import CHECKS, Check, Finding, SmellConfig, check_for
from .sarif import to_sarif

__all__ = ["CHECKS", "Check", "FileAnalysis", "Finding", "ProjectChecker", "Report", "SmellConfig",
           "analyze_tree", "check_for", "to_sarif"]
