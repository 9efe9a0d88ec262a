"""Markdown summary of a run for pull-request comments, rendered from the JSON result document.

Totals per target, the conformance matrix (RFC 9669 group, seed topic and cpu version ×
target), every failure with its first differing state, skips and expected failures (folded),
fuzz findings if any, and the number of ISA table rows each target's programs exercised.
Long lists are cut (a pull-request comment has a size limit); the HTML report has everything.
"""

from __future__ import annotations

from typing import Any

from .document import (
    FAILED_VERDICTS,
    case_id,
    cell_text,
    coverage,
    coverage_totals,
    describe_expected,
    findings,
    first_difference,
    matrix,
    provenance_text,
    replay_command,
    targets,
)

_COLUMNS = ("pass", "fail", "error", "skip", "xfail", "xpass")
MAX_FAILURES = 30
MAX_OTHERS = 100


def _cell(text: Any) -> str:
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").strip() or " "


def _code(text: Any) -> str:
    """Inline code that survives backticks in the text."""
    body = str(text).replace("\n", " ")
    fence = "``" if "`" in body else "`"
    return f"{fence} {body} {fence}" if fence == "``" else f"`{body}`"


def render_summary(doc: dict[str, Any]) -> str:
    opts = doc.get("options", {})
    names = targets(doc)
    summary = doc.get("summary", {})
    lines = ["# bpfcheck conformance run", ""]
    if summary.get("line"):
        lines += [f"**{summary['line']}**", ""]
    lines += [f"cpu {opts.get('cpu', '?')} · groups {', '.join(opts.get('groups', [])) or '?'} · "
              f"strict: {opts.get('strict', '?')} · targets: {', '.join(names) or 'none'}", ""]
    for w in doc.get("warnings", []):
        lines.append(f"> warning: {_cell(w)}")
    if doc.get("warnings"):
        lines.append("")

    lines += ["## Totals", "", "| target | " + " | ".join(_COLUMNS) + " | total |",
              "|---|" + "---:|" * (len(_COLUMNS) + 1)]
    for target in names:
        counts = doc.get("per_target", {}).get(target, {})
        lines.append(f"| {_cell(target)} | " + " | ".join(str(counts.get(c, 0)) for c in _COLUMNS)
                     + f" | {counts.get('total', 0)} |")
    lines.append("")

    if doc.get("results"):
        lines += ["## Conformance matrix", ""]
        for dimension in ("group", "topic", "cpu"):
            m = matrix(doc, dimension)
            header = f"| {m.dimension} | " + " | ".join(_cell(t) for t in m.targets) + " |"
            lines += [f"### {m.title}", "", header, "|---|" + "---|" * len(m.targets)]
            for row in m.rows:
                lines.append(f"| {_cell(row)} | "
                             + " | ".join(cell_text(m.cells.get((row, t))) for t in m.targets) + " |")
            lines.append("")

    failed = [r for r in doc.get("results", []) if r["verdict"] in FAILED_VERDICTS]
    lines += [f"## Failures ({len(failed)})", ""]
    if not failed:
        lines += ["None.", ""]
    for r in failed[:MAX_FAILURES]:
        lines += _failure(r)
    if len(failed) > MAX_FAILURES:
        lines += [f"… and {len(failed) - MAX_FAILURES} more failures (see the HTML report).", ""]

    others = [r for r in doc.get("results", []) if r["verdict"] in ("SKIP", "XFAIL")]
    if others:
        lines += [f"<details><summary>Skipped and expected failures ({len(others)})</summary>", "",
                  "| case | target | verdict | reason |", "|---|---|---|---|"]
        for r in others[:MAX_OTHERS]:
            lines.append(f"| {_cell(case_id(r))} | {_cell(r['target'])} | {r['verdict']} | "
                         f"{_cell(r.get('message', ''))} |")
        if len(others) > MAX_OTHERS:
            lines.append(f"| … | | | {len(others) - MAX_OTHERS} more |")
        lines += ["", "</details>", ""]

    found = findings(doc)
    if found:
        lines += [f"## Fuzz findings ({len(found)})", ""]
        for f in found:
            lines.append(f"- {_code(f.get('signature', '?'))} seed {_code(f.get('seed', '?'))}"
                         + (f", replay: {_code(replay_command(f))}" if replay_command(f) else ""))
        lines.append("")

    if doc.get("results"):
        rows = coverage(doc)
        totals = coverage_totals(rows, names)
        lines += ["## ISA coverage", "", "| target | ISA table rows exercised |", "|---|---:|"]
        for t in names:
            lines.append(f"| {_cell(t)} | {totals[t]} of {len(rows)} |")
        lines.append("")
    return "\n".join(lines)


render_markdown = render_summary


def _failure(r: dict[str, Any]) -> list[str]:
    lines = [f"### {_code(case_id(r))} on {_code(r['target'])}: {r['verdict']}", ""]
    if r.get("message"):
        lines += [_cell(r["message"]), ""]
    lines.append(f"- expected: {_cell(describe_expected(r.get('expected')))} ({_cell(provenance_text(r))})")
    if r.get("path"):
        lines.append(f"- file: {_code(r['path'])}")
    div = r.get("divergence")
    if div:
        lines.append(f"- listed divergence: {_cell(div.get('reason', ''))} "
                     f"({div.get('file')}:{div.get('line')})")
    diff = first_difference(r)
    if diff is not None:
        lines += ["", "| first difference | expected | actual |", "|---|---|---|",
                  f"| {_cell(diff.part)} | {_cell(diff.expected)} | {_cell(diff.actual)} |"]
    lines.append("")
    return lines
