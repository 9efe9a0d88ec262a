"""Markdown summary of a run, rendered from the JSON result document (the source of truth)."""

from __future__ import annotations

from typing import Any

_COLUMNS = ("pass", "fail", "error", "skip", "xfail", "xpass")


def render_summary(doc: dict[str, Any]) -> str:
    """A per-target table of verdict counts and a list of every case that did not pass."""
    opts = doc["options"]
    lines = [
        "# bpfcheck conformance run",
        "",
        f"cpu {opts['cpu']}, groups {', '.join(opts['groups'])}, strict: {opts['strict']}",
        "",
        "| target | " + " | ".join(_COLUMNS) + " |",
        "|---|" + "---:|" * len(_COLUMNS),
    ]
    for target, counts in sorted(doc["per_target"].items()):
        lines.append(f"| {target} | " + " | ".join(str(counts.get(c, 0)) for c in _COLUMNS) + " |")
    lines += ["", f"**{doc['summary']['line']}**", ""]
    bad = [r for r in doc["results"] if r["verdict"] != "PASS"]
    if bad:
        lines += ["| case | target | verdict | message |", "|---|---|---|---|"]
        for r in bad:
            message = r["message"].replace("|", "\\|").replace("\n", " ")
            lines.append(f"| {r['case']} | {r['target']} | {r['verdict']} | {message} |")
        lines.append("")
    return "\n".join(lines)
