"""Machine-readable run reports: the JSON result document and JUnit XML.

Both are deterministic: results in load order (cases) × command-line order (targets), sorted
keys, no timestamps or durations, so two runs of the same inputs give identical bytes.

The JSON document is the source of truth; every other format is rendered from it by
:mod:`reports` (JUnit: :mod:`reports.junit`, Markdown, HTML), so a stored run can be rendered
again (``bpfcheck report RUN.json``). Fields added to schema v1 since it was first written
(never renamed): per result ``program_hex`` (the program bytes), ``topic`` (the case's seed
topic: its folder under ``corpora/``), ``provenance`` (where the expectation comes from) and
``outcome.native`` (native code, when the target reports ``Outcome.extra["native"]``).
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from reports.document import provenance_of_data_file, topic_of_path
from reports.junit import render_junit

from .runner import Result, RunReport, Verdict, summary_line

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
        "topic": case_topic(r.case),
        "provenance": case_provenance(r.case),
        "program_hex": r.case.program_bytes().hex(),
        "target": r.target,
        "verdict": r.verdict.value,
        "message": r.message,
        "expected": r.case.expected_json(),
        "requires": {"groups": sorted(g.value for g in r.case.groups), "cpu": f"v{r.case.cpu}"},
        "outcome": _outcome_json(r),
        "divergence": r.divergence.to_json() if r.divergence is not None else None,
    }


def case_topic(case: Any) -> str:
    """A case's seed topic: its own ``topic`` (YAML cases), else its folder under ``corpora/``."""
    return str(getattr(case, "topic", "") or topic_of_path(case.path))


def case_provenance(case: Any) -> dict[str, str]:
    """Where the expectation comes from: the case's ``provenance`` mapping (YAML cases), else the
    ``.data`` file's ``# expected:`` comment, else the bpf_conformance corpus."""
    own = getattr(case, "provenance", None)
    if own:
        return {str(k): str(v) for k, v in sorted(dict(own).items())}
    return provenance_of_data_file(case.path)


def _outcome_json(r: Result) -> dict[str, Any] | None:
    if r.outcome is None:
        return None
    out = r.outcome.to_json()
    native = r.outcome.extra.get("native")
    if native is None and r.verdict is not Verdict.PASS:
        native = _jit_listing(r)
    if native is not None:
        out["native"] = native.hex() if isinstance(native, (bytes, bytearray)) else native
    return out


#: JIT targets whose native code a report shows next to the BPF program of a case that did not pass.
_JIT_ARCH = {"jit-x86_64": "x86_64", "jit-arm64": "arm64"}


def _jit_listing(r: Result) -> str | None:
    """BPF and native code side by side (capstone) for a JIT result that did not pass; only for
    those, so a full run's document stays small."""
    arch = _JIT_ARCH.get(r.target)
    if arch is None or r.case.whole is not None:
        return None
    try:
        from reference_vm.insn import decode_program
        from reference_vm.jit.printer import side_by_side

        return side_by_side(decode_program(r.case.program_bytes()), arch)
    except Exception as e:  # noqa: BLE001 - a report must not fail for want of a listing
        return f"(no native listing: {type(e).__name__}: {e})"


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
        "not_applicable": dict(sorted(report.not_applicable.items())),
        "results": [result_json(r) for r in report.results],
    }
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


def to_junit(report: RunReport) -> bytes:
    """JUnit XML, rendered from the JSON document by :func:`reports.junit.render_junit`."""
    return render_junit(json.loads(to_json(report)))
