"""Machine-readable run reports: the JSON result document and JUnit XML.

Both are deterministic: results in load order (cases) × command-line order (targets), sorted
keys, no timestamps or durations, so two runs of the same inputs give identical bytes.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections import Counter
from typing import Any

from .runner import Result, RunReport, Verdict, state_lines, summary_line

SCHEMA = "bpfcheck.run"
SCHEMA_VERSION = 1


def _counts_json(counts: Counter[Verdict]) -> dict[str, int]:
    out = {v.value.lower(): counts[v] for v in Verdict}
    out["failed_total"] = counts[Verdict.FAIL] + counts[Verdict.ERROR] + counts[Verdict.XPASS]
    out["total"] = sum(counts.values())
    return out


def result_json(r: Result) -> dict[str, Any]:
    return {
        "case": r.case.name,
        "path": r.case.path,
        "target": r.target,
        "verdict": r.verdict.value,
        "message": r.message,
        "expected": r.case.expected_json(),
        "requires": {"groups": sorted(g.value for g in r.case.groups), "cpu": f"v{r.case.cpu}"},
        "outcome": r.outcome.to_json() if r.outcome is not None else None,
        "divergence": r.divergence.to_json() if r.divergence is not None else None,
    }


def to_json(report: RunReport) -> str:
    doc = {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "options": {
            "targets": report.targets,
            "groups": sorted(g.value for g in report.options.groups),
            "cpu": f"v{report.options.cpu}",
            "strict": report.options.strict,
            "timeout": report.options.timeout,
        },
        "summary": {"line": summary_line(report.counts()), **_counts_json(report.counts())},
        "per_target": {t: _counts_json(report.counts(t)) for t in report.targets},
        "warnings": report.warnings,
        "results": [result_json(r) for r in report.results],
    }
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


def to_junit(report: RunReport) -> bytes:
    """JUnit XML: a testsuite per target, a testcase per case × target.

    FAIL and XPASS are ``<failure>``, ERROR is ``<error>``, SKIP and XFAIL are ``<skipped>``
    (as pytest's own JUnit report writes xfail).
    """
    counts = report.counts()
    root = ET.Element("testsuites", _suite_attrs("bpfcheck", counts))
    for target in report.targets:
        suite = ET.SubElement(root, "testsuite", _suite_attrs(target, report.counts(target)))
        for r in (r for r in report.results if r.target == target):
            case = ET.SubElement(suite, "testcase", {"classname": target, "name": r.case.name,
                                                     "file": r.case.path})
            if r.verdict in (Verdict.FAIL, Verdict.XPASS):
                el = ET.SubElement(case, "failure", {"type": r.verdict.value, "message": r.message})
                el.text = _detail(r)
            elif r.verdict is Verdict.ERROR:
                el = ET.SubElement(case, "error", {"type": "ERROR", "message": r.message})
                el.text = _detail(r)
            elif r.verdict in (Verdict.SKIP, Verdict.XFAIL):
                prefix = "xfail: " if r.verdict is Verdict.XFAIL else ""
                ET.SubElement(case, "skipped", {"type": r.verdict.value, "message": prefix + r.message})
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


def _suite_attrs(name: str, counts: Counter[Verdict]) -> dict[str, str]:
    return {
        "name": name,
        "tests": str(sum(counts.values())),
        "failures": str(counts[Verdict.FAIL] + counts[Verdict.XPASS]),
        "errors": str(counts[Verdict.ERROR]),
        "skipped": str(counts[Verdict.SKIP] + counts[Verdict.XFAIL]),
    }


def _detail(r: Result) -> str:
    lines = [f"case: {r.case.path}", f"expected: {r.case.describe_expectation()}"]
    if r.outcome is not None:
        lines += ["actual final state:", *("  " + line for line in state_lines(r.outcome))]
    return "\n".join(lines)
