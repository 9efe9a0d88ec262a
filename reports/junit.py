"""JUnit XML of a run, rendered from the JSON result document (the one JUnit implementation).

A ``<testsuite>`` per target, a ``<testcase>`` per case × target. FAIL and XPASS are
``<failure>``, ERROR is ``<error>``, SKIP and XFAIL are ``<skipped>`` (as pytest's own JUnit
report writes xfail). The failure text holds the case file, the expectation and where it comes
from, the first differing part of the state, the final state and the program.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import Counter
from typing import Any

from .document import (
    case_id,
    describe_expected,
    disassembly,
    first_difference,
    provenance_text,
    state_lines,
    targets,
)


def render_junit(doc: dict[str, Any]) -> bytes:
    results = doc.get("results", [])
    root = ET.Element("testsuites", _suite_attrs("bpfcheck", Counter(r["verdict"] for r in results)))
    for target in targets(doc):
        mine = [r for r in results if r["target"] == target]
        suite = ET.SubElement(root, "testsuite", _suite_attrs(target, Counter(r["verdict"] for r in mine)))
        for r in mine:
            case = ET.SubElement(suite, "testcase", {"classname": target, "name": r["case"],
                                                     "file": str(r.get("path") or "")})
            verdict, message = r["verdict"], str(r.get("message") or "")
            if verdict in ("FAIL", "XPASS"):
                el = ET.SubElement(case, "failure", {"type": verdict, "message": message})
                el.text = detail(r)
            elif verdict == "ERROR":
                el = ET.SubElement(case, "error", {"type": "ERROR", "message": message})
                el.text = detail(r)
            elif verdict in ("SKIP", "XFAIL"):
                prefix = "xfail: " if verdict == "XFAIL" else ""
                ET.SubElement(case, "skipped", {"type": verdict, "message": prefix + message})
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


def _suite_attrs(name: str, counts: Counter[str]) -> dict[str, str]:
    return {
        "name": name,
        "tests": str(sum(counts.values())),
        "failures": str(counts["FAIL"] + counts["XPASS"]),
        "errors": str(counts["ERROR"]),
        "skipped": str(counts["SKIP"] + counts["XFAIL"]),
    }


def detail(r: dict[str, Any]) -> str:
    """The text of a ``<failure>``/``<error>``: what a CI log reader needs to start debugging."""
    lines = [f"case: {r.get('path') or case_id(r)}",
             f"expected: {describe_expected(r.get('expected'))} ({provenance_text(r)})"]
    diff = first_difference(r)
    if diff is not None:
        lines.append(f"first difference: {diff.part}: expected {diff.expected}, actual {diff.actual}")
    if r.get("outcome") is not None:
        lines += ["actual final state:", *("  " + line for line in state_lines(r["outcome"]))]
    if r.get("program_hex"):
        lines += ["program:", *("  " + line for line in disassembly(r["program_hex"], "ubpf").splitlines())]
    return "\n".join(lines)
