"""SARIF 2.1.0 output for code-scanning services (GitHub code scanning and others)."""

from __future__ import annotations

from .checks import CHECKS, Finding

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
_INFO_URI = "https://github.com/loopls/loopls"


def _rule(check) -> dict:
    return {
        "id": check.code,
        "name": "".join(part.title() for part in check.slug.split("-")),
        "shortDescription": {"text": check.title},
        "fullDescription": {"text": f"{check.title} ({check.slug})."},
        "helpUri": check.doc_url,
        "help": {"text": f"See {check.doc_url}"},
        "defaultConfiguration": {"level": "warning"},
        "properties": {"tags": ["maintainability", check.scope]},
    }


def _result(finding: Finding, rule_index: dict[str, int]) -> dict:
    region = {"startLine": finding.start[0] + 1, "startColumn": finding.start[1] + 1}
    if finding.end > finding.start:
        region.update(endLine=finding.end[0] + 1, endColumn=finding.end[1] + 1)
    result = {
        "ruleId": finding.code,
        "ruleIndex": rule_index[finding.code],
        "level": "warning",
        "message": {"text": finding.message},
        "locations": [{"physicalLocation": {
            "artifactLocation": {"uri": finding.path, "uriBaseId": "%SRCROOT%"}, "region": region}}],
        "partialFingerprints": {"loopls/v1": f"{finding.code}:{finding.path}:{finding.symbol or finding.start[0]}"},
    }
    if finding.related:
        result["relatedLocations"] = [
            {"id": i, "physicalLocation": {"artifactLocation": {"uri": p, "uriBaseId": "%SRCROOT%"},
                                           "region": {"startLine": row + 1}}}
            for i, (p, row) in enumerate(finding.related)]
    return result


def to_sarif(findings: list[Finding], version: str, root_uri: str | None = None) -> dict:
    """A SARIF 2.1.0 log with one run: every check as a rule, every finding as a result."""
    rule_index = {c.code: i for i, c in enumerate(CHECKS)}
    run: dict = {
        "tool": {"driver": {"name": "loopls", "version": version, "informationUri": _INFO_URI,
                            "rules": [_rule(c) for c in CHECKS]}},
        "results": [_result(f, rule_index) for f in findings],
        "columnKind": "unicodeCodePoints",
    }
    if root_uri:
        run["originalUriBaseIds"] = {"%SRCROOT%": {"uri": root_uri.rstrip("/") + "/"}}
    return {"$schema": SARIF_SCHEMA, "version": "2.1.0", "runs": [run]}
