"""Expected divergences: one declarative YAML file per target, reported as strict XFAIL.

Instead of ad-hoc ``if case == ...: continue`` in a runner, each known difference between a
target and the corpus is written down once, with its reason::

    target: kernel            # optional when the run has a single target
    divergences:              # (or targets: [kernel, kernel-jit] for a file several share)
      - case: lsh64-imm-high  # the case name (file name without .data)
        reason: "verifier rejects shift immediates >= 64 (invalid shift 64)"
        expect: {error: ""}   # optional: what the target does instead
                              # ({r0: 0x1234} or {error: TEXT}; "" = any error)
      - cases: [a, b]         # several cases with one reason: one strict XFAIL each
        reason: "..."

A top-level list of entries is accepted as well. A listed case that passes is XPASS (a
failure: the entry is stale); with ``expect``, a target that diverges differently is a FAIL.
Entries naming a case that is not in the run are warnings. The default file of a target is
``conformance/divergences/<target>.yaml`` when it exists.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from reference_vm.errors import CaseFormatError, UsageError

DEFAULT_DIR = Path(__file__).parent / "divergences"
_ENTRY_KEYS = {"case", "cases", "reason", "expect", "issue"}


@dataclass(frozen=True)
class Divergence:
    """One expected divergence of one target on one case."""

    case: str
    reason: str
    file: str
    line: int
    expect_r0: int | None = None
    expect_error: str | None = None  # None: not recorded; "": any error

    @property
    def has_expect(self) -> bool:
        return self.expect_r0 is not None or self.expect_error is not None

    def to_json(self) -> dict[str, Any]:
        return {"case": self.case, "reason": self.reason, "file": self.file, "line": self.line,
                "expect": {"r0": self.expect_r0, "error": self.expect_error} if self.has_expect else None}


@dataclass
class DivergenceFile:
    path: str
    target: str | None
    entries: dict[str, Divergence]
    targets: tuple[str, ...] = ()  # a file shared by several targets


class _LineLoader(yaml.SafeLoader):
    """A safe loader that records each mapping's line as ``__line__``."""


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> dict[str, Any]:
    mapping: dict[str, Any] = {str(k): v for k, v in loader.construct_mapping(node, deep=True).items()}
    mapping["__line__"] = node.start_mark.line + 1
    return mapping


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_divergences(path: str | Path) -> DivergenceFile:
    """Read and validate one divergence file; problems raise :class:`CaseFormatError` with file:line."""
    p = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
        doc = yaml.load(text, Loader=_LineLoader)  # noqa: S506 - a SafeLoader subclass
    except OSError as e:
        raise CaseFormatError(f"cannot read divergence file: {e.strerror}", file=p) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        problem = getattr(e, "problem", None) or str(e)
        raise CaseFormatError(f"invalid YAML: {problem}", file=p,
                              line=mark.line + 1 if mark else None) from None
    target = None
    if doc is None:
        items: list[Any] = []
    elif isinstance(doc, list):
        items = doc
    elif isinstance(doc, dict):
        unknown = set(doc) - {"target", "targets", "divergences", "__line__"}
        if unknown:
            raise CaseFormatError(f"unknown key(s) {', '.join(sorted(map(str, unknown)))} "
                                  "(expected: target or targets, divergences)", file=p, line=doc["__line__"])
        target = doc.get("target")
        if target is not None and not isinstance(target, str):
            raise CaseFormatError("'target' must be a string", file=p, line=doc["__line__"])
        shared = doc.get("targets") or []
        if not isinstance(shared, list) or not all(isinstance(t, str) for t in shared) or (
                shared and target is not None):
            raise CaseFormatError("'targets' must be a list of target names (and not combined with "
                                  "'target')", file=p, line=doc["__line__"])
        items = doc.get("divergences") or []
        if not isinstance(items, list):
            raise CaseFormatError("'divergences' must be a list", file=p, line=doc["__line__"])
    else:
        raise CaseFormatError("expected a mapping with 'divergences' or a list of entries", file=p, line=1)
    entries: dict[str, Divergence] = {}
    for item in items:
        for div in _entries(item, p):
            if div.case in entries:
                raise CaseFormatError(f"case {div.case!r} is listed twice (first at line "
                                      f"{entries[div.case].line})", file=p, line=div.line)
            entries[div.case] = div
    shared_targets = tuple(doc.get("targets") or ()) if isinstance(doc, dict) else ()
    return DivergenceFile(p, target, entries, shared_targets)


def _entries(item: Any, path: str) -> list[Divergence]:
    """One entry, or one per name of a ``cases:`` list sharing a reason."""
    if isinstance(item, dict) and "cases" in item:
        names = item.pop("cases")
        if "case" in item or not isinstance(names, list) or not names or not all(
                isinstance(n, str) and n for n in names):
            raise CaseFormatError("'cases' must be a non-empty list of case names (without 'case')",
                                  file=path, line=item.get("__line__"))
        line = item["__line__"]
        return [_entry({**item, "case": n, "__line__": line}, path) for n in names]
    return [_entry(item, path)]


def _entry(item: Any, path: str) -> Divergence:
    if not isinstance(item, dict):
        raise CaseFormatError(f"divergence entry must be a mapping, got {item!r}", file=path)
    line = item.pop("__line__")
    unknown = set(item) - _ENTRY_KEYS
    if unknown:
        raise CaseFormatError(f"unknown key(s) {', '.join(sorted(map(str, unknown)))} "
                              f"(expected: {', '.join(sorted(_ENTRY_KEYS))})", file=path, line=line)
    case, reason = item.get("case"), item.get("reason")
    if not isinstance(case, str) or not case:
        raise CaseFormatError("entry needs 'case: NAME'", file=path, line=line)
    if not isinstance(reason, str) or not reason.strip():
        raise CaseFormatError(f"entry for {case!r} needs a 'reason'", file=path, line=line)
    r0 = error = None
    expect = item.get("expect")
    if expect is not None:
        if not isinstance(expect, dict):
            raise CaseFormatError("'expect' must be {r0: N} or {error: TEXT}", file=path, line=line)
        expect.pop("__line__", None)
        if set(expect) not in ({"r0"}, {"error"}):
            raise CaseFormatError("'expect' must be {r0: N} or {error: TEXT}", file=path, line=line)
        if "r0" in expect:
            if not isinstance(expect["r0"], int) or isinstance(expect["r0"], bool):
                raise CaseFormatError("'expect: {r0: N}' needs an integer", file=path, line=line)
            r0 = expect["r0"] & ((1 << 64) - 1)
        else:
            error = "" if expect["error"] is None else str(expect["error"])
    return Divergence(case, reason.strip(), path, line, r0, error)


def default_file(target_name: str) -> Path | None:
    """``conformance/divergences/<target>.yaml`` if the name is file-safe and the file exists."""
    if not re.fullmatch(r"[\w.-]+", target_name):
        return None
    p = DEFAULT_DIR / f"{target_name}.yaml"
    return p if p.is_file() else None


def default_entries(target_name: str) -> dict[str, Divergence]:
    """The default divergences of a target: its own file, plus every file in
    ``conformance/divergences/`` whose ``targets:`` list names it."""
    entries: dict[str, Divergence] = {}
    own = default_file(target_name)
    if own is not None:
        entries.update(load_divergences(own).entries)
    for path in sorted(DEFAULT_DIR.glob("*.yaml")):
        if path == own:
            continue
        d = load_divergences(path)
        if target_name in d.targets:
            for name, div in d.entries.items():
                if name in entries:
                    raise CaseFormatError(f"case {name!r} for target {target_name!r} is also listed in "
                                          f"{entries[name].file}:{entries[name].line}", file=div.file,
                                          line=div.line)
                entries[name] = div
    return entries


def resolve_divergences(files: list[str], targets: list[str], case_names: set[str] | None = None,
                        ) -> tuple[dict[str, dict[str, Divergence]], list[str]]:
    """Map each target name to its entries (case name -> entry), and warnings.

    A file applies to the target named by its ``target:`` key, or to the only target of the
    run; targets without a file get their default file, if any. Entries naming a case not in
    ``case_names`` (when given) are warnings.
    """
    by_target: dict[str, dict[str, Divergence]] = {}
    for f in files:
        d = load_divergences(f)
        if d.targets:
            for name in d.targets:
                if name in targets:
                    by_target.setdefault(name, {}).update(d.entries)
            continue
        if d.target is None:
            if len(targets) != 1:
                raise UsageError(f"{f}: no 'target:' key, and the run has {len(targets)} targets")
            name = targets[0]
        elif d.target in targets:
            name = d.target
        else:
            raise UsageError(f"{f}: divergences for target {d.target!r}, which is not in this run "
                             f"({', '.join(targets)})")
        if name in by_target:
            raise UsageError(f"{f}: a second divergence file for target {name!r}")
        by_target[name] = d.entries
    for name in targets:
        if name not in by_target:
            defaults = default_entries(name)
            if defaults:
                by_target[name] = defaults
    warnings = []
    explicit = {str(Path(f)) for f in files}
    if case_names is not None:
        for name, entries in by_target.items():
            for div in entries.values():
                # the default files cover whole corpora; a run over part of them is normal
                if div.case not in case_names and str(Path(div.file)) in explicit:
                    warnings.append(f"{div.file}:{div.line}: divergence for case {div.case!r} "
                                    f"(target {name}), which is not in this run")
    return by_target, warnings
