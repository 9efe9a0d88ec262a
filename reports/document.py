"""Reading the JSON result document (schema ``bpfcheck.run`` v1) and what every renderer derives.

The document written by :func:`conformance.report.to_json` is the source of truth: every
renderer in :mod:`reports` reads it as plain dicts and never sees runner objects, so any stored
run can be rendered again later. This module loads and checks a stored document
(:func:`load_document`) and computes what the renderers share: the conformance matrix
(:func:`matrix`), the first differing part of a result's state (:func:`first_difference`),
readable state dumps, opcode coverage per target (:func:`coverage`), disassembly of the
program bytes and campaign trends.

Fields of a result (``doc["results"][i]``) beyond ``case``/``target``/``verdict`` are optional
here so that documents written before a field existed still render: ``program_hex``, ``topic``
and ``provenance`` were added to schema v1 later, ``outcome.native`` only exists for targets
that produce native code. Optional top-level fields read by the renderers:

``findings``
    A list of fuzz findings: mappings with ``signature``, ``seed``, ``reproducer`` (program
    hex or a file path), ``replay`` (one shell command) and optionally ``targets`` / ``message``.
``trends``
    A list of campaign nights ``{date, execs_per_s, coverage, findings}``.
``campaign``
    ``{date, execs_per_s, coverage}`` of one night; a directory of such documents gives the
    trends (:func:`trends_from_dir`).
"""

from __future__ import annotations

import json
import re
import shlex
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path, PurePath
from typing import Any

from reference_vm.outcome import memory_from_json

SCHEMA = "bpfcheck.run"
SCHEMA_VERSION = 1
VERDICTS = ("PASS", "FAIL", "ERROR", "SKIP", "XFAIL", "XPASS")
FAILED_VERDICTS = frozenset({"FAIL", "ERROR", "XPASS"})
#: The four counts a matrix cell shows; ERROR and XPASS count as "fail" (as in ``failed_total``).
CELL_BUCKETS = ("pass", "fail", "skip", "xfail")
_BUCKET = {"PASS": "pass", "FAIL": "fail", "ERROR": "fail", "XPASS": "fail", "SKIP": "skip", "XFAIL": "xfail"}
DEFAULT_PROVENANCE = "bpf_conformance corpus"
_EXPECTED_COMMENT = re.compile(r"^\s*#\s*expected:\s*(.*?)\s*$", re.IGNORECASE)

Doc = dict[str, Any]
Res = dict[str, Any]


class DocumentError(Exception):
    """A stored document that cannot be used; ``str()`` is ``FILE: problem``."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


# --- Loading ----------------------------------------------------------------------------------


def load_document(path: str | Path) -> Doc:
    """Read and check a stored run document; raise :class:`DocumentError` with one-line problems."""
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DocumentError(name, "no such file") from None
    except IsADirectoryError:
        raise DocumentError(name, "is a directory, not a run document") from None
    except UnicodeDecodeError as e:
        raise DocumentError(name, f"not UTF-8 text ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise DocumentError(name, f"cannot read: {e.strerror}") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise DocumentError(name, f"not JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
    problem = check_document(doc)
    if problem is not None:
        raise DocumentError(name, problem)
    return doc


def check_document(doc: Any) -> str | None:
    """The first problem that makes ``doc`` unusable as a ``bpfcheck.run`` v1 document, or None."""
    if not isinstance(doc, dict):
        return f"not a {SCHEMA} document (the top level is a JSON {_json_type(doc)}, not an object)"
    if doc.get("schema") != SCHEMA:
        return f"not a {SCHEMA} document (schema is {doc.get('schema')!r})"
    version = doc.get("schema_version")
    if version != SCHEMA_VERSION:
        return f"unsupported schema_version {version!r} (this bpfcheck reads version {SCHEMA_VERSION})"
    results = doc.get("results", [])
    if not isinstance(results, list):
        return f"'results' is a JSON {_json_type(results)}, not a list"
    for i, r in enumerate(results):
        if not isinstance(r, dict):
            return f"results[{i}] is a JSON {_json_type(r)}, not an object"
        for key in ("case", "target", "verdict"):
            if not isinstance(r.get(key), str):
                return f"results[{i}]: missing or non-string {key!r}"
        if r["verdict"] not in VERDICTS:
            return f"results[{i}]: unknown verdict {r['verdict']!r}"
        if r.get("outcome") is not None and not isinstance(r["outcome"], dict):
            return f"results[{i}]: 'outcome' is not an object"
    for key in ("findings", "trends", "warnings"):
        if key in doc and not isinstance(doc[key], list):
            return f"{key!r} is a JSON {_json_type(doc[key])}, not a list"
    return None


def _json_type(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number")


# --- Case facts -------------------------------------------------------------------------------


def topic_of_path(path: str) -> str:
    """A ``.data`` case's seed topic: its folder under ``corpora/`` (``generated/shifts``).

    Outside ``corpora/`` the topic is the name of the folder holding the file.
    """
    parts = PurePath(path).parts
    if "corpora" in parts:
        at = len(parts) - 1 - parts[::-1].index("corpora")
        inner = parts[at + 1:-1]
        if inner:
            return "/".join(inner)
    return parts[-2] if len(parts) >= 2 else "(none)"


def provenance_of_data_file(path: str) -> dict[str, str]:
    """Where a ``.data`` case's expectation comes from: its ``# expected:`` comment line, else the
    bpf_conformance corpus (for a file outside a ``bpf_conformance`` folder: the file itself)."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    for line in text.splitlines():
        m = _EXPECTED_COMMENT.match(line)
        if m:
            return {"expected": m.group(1)}
    if "bpf_conformance" in PurePath(path).parts:
        return {"source": DEFAULT_PROVENANCE}
    return {"source": "the case file's -- result / -- error section (no '# expected:' comment)"}


def topic(r: Res) -> str:
    return str(r.get("topic") or topic_of_path(str(r.get("path") or r["case"])))


def case_id(r: Res) -> str:
    """A case's name, stable across checkouts: ``topic/case`` (paths are machine-specific)."""
    return f"{topic(r)}/{r['case']}"


def provenance_text(r: Res) -> str:
    prov = r.get("provenance")
    if not prov:
        return DEFAULT_PROVENANCE
    if isinstance(prov, str):
        return prov
    if isinstance(prov, Mapping):
        if set(prov) == {"source"}:
            return str(prov["source"])
        if set(prov) == {"expected"}:
            return f"# expected: {prov['expected']}"
        return ", ".join(f"{k}: {v}" for k, v in sorted(prov.items()))
    return str(prov)


def groups_of(r: Res) -> list[str]:
    return sorted(r.get("requires", {}).get("groups", []))


def cpu_of(r: Res) -> str:
    return str(r.get("requires", {}).get("cpu", "?"))


def primary_groups(groups: Iterable[str]) -> list[str]:
    """The groups of a case that no other group of it implies (``base64`` rather than ``base32``).

    ``requires.groups`` is closed under RFC 9669's "includes" relation; counting a case under
    every implied group would put every case in base32.
    """
    from reference_vm.isa import GROUP_IMPLIES, Group

    names = set(groups)
    implied: set[str] = set()
    for g in names:
        try:
            implied |= {i.value for i in GROUP_IMPLIES.get(Group(g), frozenset())}
        except ValueError:
            continue
    return sorted(names - implied) or sorted(names)


# --- Grouping ---------------------------------------------------------------------------------


def targets(doc: Doc) -> list[str]:
    """Targets in the run's order (command-line order), then any others found in the results."""
    out = list(doc.get("options", {}).get("targets", []))
    for r in doc.get("results", []):
        if r["target"] not in out:
            out.append(r["target"])
    return out


@dataclass
class CaseGroup:
    """Every result of one case, with the case's facts (taken from its first result)."""

    id: str
    first: Res
    results: dict[str, Res]  # target -> result

    @property
    def worst(self) -> str:
        order = ("ERROR", "FAIL", "XPASS", "SKIP", "XFAIL", "PASS")
        verdicts = {r["verdict"] for r in self.results.values()}
        return next((v for v in order if v in verdicts), "PASS")


def cases(doc: Doc) -> list[CaseGroup]:
    """Results grouped by case, in the document's (load) order."""
    out: dict[str, CaseGroup] = {}
    for r in doc.get("results", []):
        cid = case_id(r)
        group = out.setdefault(cid, CaseGroup(cid, r, {}))
        group.results[r["target"]] = r
    return list(out.values())


def bucket(verdict: str) -> str:
    return _BUCKET[verdict]


@dataclass(frozen=True)
class Matrix:
    """Rows of one dimension × targets, each cell a count per :data:`CELL_BUCKETS` plus verdicts."""

    title: str
    dimension: str  # "group", "topic", "cpu"
    rows: list[str]
    targets: list[str]
    cells: dict[tuple[str, str], Counter[str]]  # (row, target) -> Counter of verdicts


def _cpu_key(value: str) -> tuple[int, str]:
    m = re.fullmatch(r"v(\d+)", value)
    return (int(m.group(1)), value) if m else (99, value)


def _group_key(value: str) -> tuple[int, str]:
    from reference_vm.isa import Group

    order = [g.value for g in Group]
    return (order.index(value), value) if value in order else (len(order), value)


def matrix(doc: Doc, dimension: str) -> Matrix:
    """The conformance matrix of one dimension: ``group`` (RFC 9669), ``topic`` or ``cpu``."""
    cells: dict[tuple[str, str], Counter[str]] = {}
    for r in doc.get("results", []):
        if dimension == "group":
            keys = primary_groups(groups_of(r))
        elif dimension == "topic":
            keys = [topic(r)]
        elif dimension == "cpu":
            keys = [cpu_of(r)]
        else:
            raise ValueError(f"unknown matrix dimension {dimension!r}")
        for key in keys:
            cells.setdefault((key, r["target"]), Counter())[r["verdict"]] += 1
    row_names = {row for row, _ in cells}
    sort_key: Any = {"group": _group_key, "cpu": _cpu_key}.get(dimension, lambda s: s)
    title = {"group": "RFC 9669 conformance group", "topic": "Seed topic", "cpu": "CPU version"}[dimension]
    return Matrix(title, dimension, sorted(row_names, key=sort_key), targets(doc), cells)


def cell_counts(verdicts: Counter[str] | None) -> dict[str, int]:
    out = dict.fromkeys(CELL_BUCKETS, 0)
    for verdict, n in (verdicts or Counter()).items():
        out[bucket(verdict)] += n
    return out


def cell_text(verdicts: Counter[str] | None) -> str:
    """``300 pass · 13 xfail``: the non-zero counts, failures first; ``—`` for an empty cell."""
    counts = cell_counts(verdicts)
    order = ("fail", "pass", "xfail", "skip")
    parts = [f"{counts[b]} {b}" for b in order if counts[b]]
    return " · ".join(parts) if parts else "—"


def cell_status(verdicts: Counter[str] | None) -> str:
    """``fail`` if anything failed, ``pass`` if something passed, else ``skip``/``xfail``/``empty``."""
    counts = cell_counts(verdicts)
    for b in ("fail", "pass", "xfail", "skip"):
        if counts[b]:
            return b
    return "empty"


# --- State -------------------------------------------------------------------------------------


def hex_value(value: Any) -> str:
    return f"{value:#x}" if isinstance(value, int) and not isinstance(value, bool) else str(value)


def describe_expected(expected: Mapping[str, Any] | None) -> str:
    """The expectation as :meth:`conformance.case.Case.describe_expectation` prints it."""
    expected = expected or {}
    error = expected.get("error")
    if error is None:
        r0 = expected.get("r0")
        return f"r0 = {hex_value(r0)}" if r0 is not None else "r0 = ?"
    return f"an error ({error!r})" if error else "an error"


def describe_outcome(outcome: Mapping[str, Any]) -> str:
    if outcome.get("error", "ok") == "ok":
        r0 = outcome.get("r0")
        return f"r0 = {hex_value(r0)}" if r0 is not None else "r0 = ?"
    error, message = str(outcome.get("error")), str(outcome.get("message") or "")
    return f"{error}: {message}" if message else error


def state_lines(outcome: Mapping[str, Any], limit: int = 64) -> list[str]:
    """A readable dump of a final state (registers, non-zero memory windows, maps, trace)."""
    message = outcome.get("message") or ""
    lines = [f"error: {outcome.get('error', 'ok')}" + (f" ({message})" if message else "")]
    if outcome.get("r0") is not None:
        lines.append(f"r0: {hex_value(outcome['r0'])}")
    if outcome.get("regs") is not None:
        lines.append("regs: " + " ".join(f"r{i}={hex_value(v)}" for i, v in enumerate(outcome["regs"])))
    if outcome.get("insn_count") is not None:
        lines.append(f"insns executed: {outcome['insn_count']}, last pc: {outcome.get('exit_pc')}")
    for name, text in sorted((outcome.get("memory") or {}).items()):
        data = _bytes(text)
        nonzero = [i for i, b in enumerate(data) if b]
        if not nonzero:
            lines.append(f"{name}: {len(data)} bytes, all zero")
            continue
        lo, hi = nonzero[0], min(nonzero[-1] + 1, nonzero[0] + limit)
        more = " ..." if nonzero[-1] >= hi else ""
        lines.append(f"{name}: {len(data)} bytes, [{lo}:{hi}] = {data[lo:hi].hex(' ')}{more}")
    for name, snapshot in sorted((outcome.get("maps") or {}).items()):
        lines.append(f"map {name}: {json.dumps(snapshot, sort_keys=True)}")
    for name, records in sorted((outcome.get("ringbuf") or {}).items()):
        lines.append(f"ringbuf {name}: {len(records)} records")
    for line in outcome.get("trace") or []:
        lines.append(f"trace: {line}")
    return lines


def _bytes(value: Any) -> bytes:
    """Memory as the document holds it: ``{"size", "nonzero"}`` (see
    :func:`reference_vm.outcome.memory_json`) or a plain hex string."""
    if isinstance(value, Mapping):
        try:
            return memory_from_json(dict(value))
        except (KeyError, TypeError, ValueError):
            return b""
    try:
        return bytes.fromhex(str(value))
    except ValueError:
        return b""


@dataclass(frozen=True)
class Difference:
    """The first part of the final state that differs from the expectation."""

    part: str  # "error", "r0", "memory mem", "map NAME", "not run"
    expected: str
    actual: str


def first_difference(r: Res) -> Difference | None:
    """Expected vs actual for the first differing part of ``r``'s state, in the order error, r0,
    memory, maps; ``None`` for a PASS or when no checked part differs."""
    if r.get("verdict") == "PASS":
        return None
    expected = r.get("expected") or {}
    outcome = r.get("outcome")
    if outcome is None:
        return Difference("not run", describe_expected(expected), r.get("message") or "not run")
    err = outcome.get("error", "ok")
    want_error = expected.get("error")
    if r.get("verdict") == "ERROR":  # the target itself broke (crash, timeout, protocol garbage)
        wanted = describe_expected(expected)
        wanted = wanted if want_error is not None else f"ok, {wanted}"
        return Difference("error", wanted, describe_outcome(outcome))
    if want_error is not None and err == "ok":
        return Difference("error", describe_expected(expected), f"ok, {describe_outcome(outcome)}")
    if want_error is None and err != "ok":
        return Difference("error", f"ok, {describe_expected(expected)}", describe_outcome(outcome))
    if want_error:  # both are errors and the verdict is not PASS: the texts differ
        return Difference("error text", repr(want_error), describe_outcome(outcome))
    if want_error is None and expected.get("r0") is not None and outcome.get("r0") != expected["r0"]:
        return Difference("r0", hex_value(expected["r0"]), hex_value(outcome.get("r0")))
    mem_diff = _memory_difference(expected, outcome)
    if mem_diff is not None:
        return mem_diff
    return _maps_difference(expected.get("maps"), outcome.get("maps") or {})


def _memory_difference(expected: Mapping[str, Any], outcome: Mapping[str, Any]) -> Difference | None:
    wanted: dict[str, str] = dict(expected.get("memory") or {})
    if expected.get("mem") is not None:
        wanted.setdefault("mem", expected["mem"])
    actual_mem = outcome.get("memory") or {}
    for region, want_hex in sorted(wanted.items()):
        want = _bytes(str(want_hex).replace(" ", ""))
        if region not in actual_mem:
            return Difference(f"memory {region}", f"{len(want)} bytes", "region not reported")
        got = _bytes(actual_mem[region])
        if got == want:
            continue
        at = next((i for i in range(min(len(got), len(want))) if got[i] != want[i]), min(len(got), len(want)))
        lo, hi = max(0, at - 4), at + 12
        return Difference(f"memory {region} at byte {at}", f"[{lo}:] {want[lo:hi].hex(' ')}",
                          f"[{lo}:] {got[lo:hi].hex(' ')}")
    return None


def _maps_difference(wanted: Any, actual: Mapping[str, Any]) -> Difference | None:
    if not isinstance(wanted, Mapping):
        return None
    for name, entries in sorted(wanted.items()):
        got = actual.get(name)
        if got is None:
            return Difference(f"map {name}", json.dumps(entries, sort_keys=True), "map not reported")
        if isinstance(entries, Mapping) and isinstance(got, Mapping):
            for key in sorted(set(entries) | set(got), key=str):
                if entries.get(key) != got.get(key):
                    return Difference(f"map {name} key {key}", json.dumps(entries.get(key)),
                                      json.dumps(got.get(key)))
        elif entries != got:
            return Difference(f"map {name}", json.dumps(entries, sort_keys=True),
                              json.dumps(got, sort_keys=True))
    return None


def native_code(r: Res) -> dict[str, str]:
    """Native code a JIT reported for this result (``outcome.native``), as label -> text."""
    outcome = r.get("outcome") or {}
    native = outcome.get("native")
    if native is None:
        return {}
    if isinstance(native, Mapping):
        return {str(k): _text(v) for k, v in sorted(native.items())}
    return {"native": _text(native)}


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "\n".join(str(v) for v in value)
    return json.dumps(value, indent=1, sort_keys=True)


# --- Programs ---------------------------------------------------------------------------------


@lru_cache(maxsize=4096)
def disassembly(program_hex: str, dialect: str) -> str:
    """The program in one assembly dialect, or a one-line note when it does not decode."""
    from reference_vm.asm import disassemble
    from reference_vm.errors import BpfCheckError

    try:
        code = bytes.fromhex(program_hex)
    except ValueError:
        return "; program_hex is not hex\n"
    try:
        return disassemble(code, dialect=dialect)
    except (BpfCheckError, ValueError) as e:
        lines = [f"; does not decode: {e}"]
        lines += [f"; {code[i:i + 8].hex(' ')}" for i in range(0, len(code), 8)]
        return "\n".join(lines) + "\n"


@lru_cache(maxsize=4096)
def program_rows(program_hex: str) -> frozenset[str]:
    """Names of the ISA table rows a program uses (empty when it does not decode)."""
    from reference_vm.errors import BpfCheckError
    from reference_vm.insn import decode_program

    try:
        decoded = decode_program(bytes.fromhex(program_hex))
    except (BpfCheckError, ValueError):
        return frozenset()
    return frozenset(insn.op.name for insn in decoded if insn is not None)


@dataclass(frozen=True)
class CoverageRow:
    name: str
    group: str
    cpu: int
    mnemonic: str
    opcode: int
    ran: dict[str, int]  # target -> cases that ran a program using the row
    failed: dict[str, int]  # target -> of those, cases that failed


def coverage(doc: Doc) -> list[CoverageRow]:
    """Every row of the ISA table with, per target, how many of the run's programs that the
    target ran (any verdict but SKIP) use it."""
    from reference_vm.isa import TABLE

    names = targets(doc)
    ran: dict[tuple[str, str], int] = Counter()
    failed: dict[tuple[str, str], int] = Counter()
    for r in doc.get("results", []):
        if r["verdict"] == "SKIP" or not r.get("program_hex"):
            continue
        for row in program_rows(r["program_hex"]):
            ran[(row, r["target"])] += 1
            if r["verdict"] in FAILED_VERDICTS:
                failed[(row, r["target"])] += 1
    return [CoverageRow(row.name, row.group.value, row.cpu, row.mnemonic, row.opcode,
                        {t: ran[(row.name, t)] for t in names}, {t: failed[(row.name, t)] for t in names})
            for row in TABLE]


def coverage_totals(rows: Sequence[CoverageRow], target_names: Sequence[str]) -> dict[str, int]:
    return {t: sum(1 for row in rows if row.ran.get(t)) for t in target_names}


# --- Findings and trends ------------------------------------------------------------------------


def findings(doc: Doc) -> list[dict[str, Any]]:
    return [f for f in doc.get("findings", []) if isinstance(f, dict)]


def replay_command(finding: Mapping[str, Any]) -> str:
    """The finding's own ``replay`` command, or ``bpfcheck run`` on a ``.data`` reproducer."""
    if finding.get("replay"):
        return str(finding["replay"])
    repro = str(finding.get("reproducer") or "")
    if repro.endswith(".data"):
        targets_ = [str(t) for t in finding.get("targets", [])]
        return " ".join(["bpfcheck", "run", shlex.quote(repro), *(f"-t {shlex.quote(t)}" for t in targets_)])
    return ""


def is_program_hex(text: str) -> bool:
    compact = text.replace(" ", "")
    return bool(compact) and len(compact) % 16 == 0 and re.fullmatch(r"[0-9a-fA-F]+", compact) is not None


TREND_FIELDS = ("execs_per_s", "coverage", "findings")


def trends(doc: Doc, extra: Sequence[Mapping[str, Any]] = ()) -> list[dict[str, Any]]:
    """Campaign nights sorted by date: the document's ``trends`` plus ``extra`` (later wins)."""
    by_date: dict[str, dict[str, Any]] = {}
    for point in [*doc.get("trends", []), *extra]:
        if isinstance(point, Mapping) and point.get("date") is not None:
            by_date[str(point["date"])] = {"date": str(point["date"]),
                                           **{k: point.get(k) for k in TREND_FIELDS}}
    return [by_date[d] for d in sorted(by_date)]


def trends_from_dir(directory: str | Path) -> list[dict[str, Any]]:
    """One trend point per run document in ``directory`` that has a ``campaign`` mapping."""
    root = Path(directory)
    if not root.is_dir():
        raise DocumentError(str(directory), "not a directory of run documents")
    points: list[dict[str, Any]] = []
    for path in sorted(root.glob("*.json")):
        doc = load_document(path)
        camp = doc.get("campaign")
        if isinstance(camp, Mapping) and camp.get("date") is not None:
            count = camp.get("findings", len(findings(doc)))
            points.append({"date": str(camp["date"]), "execs_per_s": camp.get("execs_per_s"),
                           "coverage": camp.get("coverage"), "findings": count})
        points += [dict(p) for p in doc.get("trends", []) if isinstance(p, Mapping)]
    return points
