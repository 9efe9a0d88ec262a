"""Comparing two stored runs: the CI gate of ``bpfcheck report --compare OLD.json NEW.json``.

Results are matched by case × target, a case being named ``topic/case`` (checkout paths differ
between machines). A *regression* is a case × target that passed in OLD and does not in NEW,
or one that fails in NEW (FAIL, ERROR or XPASS) and did not fail in OLD: new in NEW, or an
XFAIL or SKIP before. A *fix* is one that did not pass in OLD and passes in NEW. Everything else
(other verdict changes such as FAIL -> ERROR or SKIP -> XFAIL, new cases that do not fail,
removed cases, unchanged verdicts) is listed or counted but does not gate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .document import FAILED_VERDICTS, case_id


@dataclass(frozen=True)
class Change:
    case: str  # topic/case
    target: str
    old: str | None  # verdict in OLD, None if new
    new: str | None  # verdict in NEW, None if removed
    message: str = ""

    def line(self) -> str:
        was = f"was {self.old}" if self.old is not None else "new"
        now = self.new if self.new is not None else "REMOVED"
        text = f"{now:7} {self.case} [{self.target}] ({was})"
        return f"{text}: {self.message}" if self.message else text


@dataclass
class Comparison:
    regressions: list[Change] = field(default_factory=list)
    fixes: list[Change] = field(default_factory=list)
    changed: list[Change] = field(default_factory=list)  # other verdict changes (informational)
    new: list[Change] = field(default_factory=list)  # new, not failing
    removed: list[Change] = field(default_factory=list)
    unchanged: int = 0

    @property
    def regressed(self) -> bool:
        return bool(self.regressions)


def _index(doc: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(case_id(r), r["target"]): r for r in doc.get("results", [])}


def compare(old: dict[str, Any], new: dict[str, Any]) -> Comparison:
    before, after = _index(old), _index(new)
    out = Comparison()
    for key in sorted(set(before) | set(after)):
        o, n = before.get(key), after.get(key)
        cid, target = key
        if n is None:
            assert o is not None
            out.removed.append(Change(cid, target, o["verdict"], None))
            continue
        message = str(n.get("message") or "")
        if o is None:
            change = Change(cid, target, None, n["verdict"], message)
            (out.regressions if n["verdict"] in FAILED_VERDICTS else out.new).append(change)
            continue
        if o["verdict"] == n["verdict"]:
            out.unchanged += 1
            continue
        change = Change(cid, target, o["verdict"], n["verdict"], message)
        newly_failing = n["verdict"] in FAILED_VERDICTS and o["verdict"] not in FAILED_VERDICTS
        if o["verdict"] == "PASS" or newly_failing:
            out.regressions.append(change)
        elif n["verdict"] == "PASS":
            out.fixes.append(change)
        else:
            out.changed.append(change)
    return out


#: New and removed case × target pairs listed before "... and N more" (they do not gate).
BRIEF = 20


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}es" if word.endswith("x") else f"{n} {word}s"


def format_comparison(c: Comparison, old_name: str, new_name: str) -> str:
    """A readable, deterministic text: each list of changes, then a summary line."""
    lines = [f"comparing {old_name} -> {new_name}"]
    for title, changes, limit in (("regressions", c.regressions, None), ("fixes", c.fixes, None),
                                  ("other verdict changes", c.changed, None),
                                  ("new cases (not failing)", c.new, BRIEF),
                                  ("removed cases", c.removed, BRIEF)):
        if changes:
            lines.append(f"{title} ({len(changes)}):")
            lines += [f"  {ch.line()}" for ch in changes[:limit]]
            if limit is not None and len(changes) > limit:
                lines.append(f"  ... and {len(changes) - limit} more")
    lines.append(", ".join([_plural(len(c.regressions), "regression"), _plural(len(c.fixes), "fix"),
                            f"{len(c.changed)} other changes", f"{len(c.new)} new",
                            f"{len(c.removed)} removed", f"{c.unchanged} unchanged"]))
    return "\n".join(lines) + "\n"
