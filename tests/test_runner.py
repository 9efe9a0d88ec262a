"""The Case model, case loading, judging, divergences, strictness, timeouts and reports.

Expected requirements come from RFC 9669 / bpf_conformance (formats-and-corpora.md §3), expected
r0 values from the corpus files or from the instruction encodings, never from our interpreter.
"""

from __future__ import annotations

import json
import time
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import pytest
from conftest import (
    BAD_OPCODE,
    CALLX_R2,
    CORPUS,
    EXIT,
    MOV_R0_0,
    MOV_R0_1,
    MOV_R0_R2,
    SDIV_R0_1,
    needs_asm,
    needs_interpreter,
    raw_case,
)

from conformance import report as rp
from conformance import runner as rn
from conformance.case import Case, load_case, load_cases
from conformance.divergence import load_divergences, resolve_divergences
from reference_vm.errors import CaseFormatError, UsageError
from reference_vm.isa import ALL_GROUPS, DEFAULT_GROUPS, Group
from reference_vm.outcome import Outcome


class ConstTarget:
    """A target that answers every case with the same outcome (threads, no subprocess)."""

    in_process = False

    def __init__(self, outcome: Outcome, name: str = "const", exact_errors: bool = False) -> None:
        self.outcome = outcome
        self.name = name
        self.exact_errors = exact_errors

    def run(self, case: Case, timeout: float) -> Outcome:
        return self.outcome


class SleepyTarget:
    """An in-process target that hangs on cases named ``hang*`` (runs in the worker processes)."""

    name = "sleepy"
    in_process = True

    def run(self, case: Case, timeout: float) -> Outcome:
        if case.name.startswith("hang"):
            time.sleep(60)
        return Outcome(r0=1)


class RaisingTarget:
    name = "raising"
    in_process = False

    def run(self, case: Case, timeout: float) -> Outcome:
        raise RuntimeError("bug in the target")


def _opts(**kw: object) -> rn.RunOptions:
    kw.setdefault("jobs", 2)
    return rn.RunOptions(**kw)  # type: ignore[arg-type]


# --- Case model ------------------------------------------------------------------------------


def test_requirements_come_from_the_isa_table(write_case):
    case = load_case(write_case("sdiv", raw_case(MOV_R0_1, SDIV_R0_1, EXIT, result="0x1")))
    # RFC 9669 §4.1: SDIV is ALU64 DIV with offset 1 (divmul64, which implies divmul32); cpu v4.
    # mov64 is ALU64: base64, which implies base32.
    assert case.cpu == 4
    assert case.groups == {Group.BASE32, Group.BASE64, Group.DIVMUL32, Group.DIVMUL64}
    assert case.encoding_error is None
    assert case.expect_r0 == 1 and case.expect_error is None


def test_callx_needs_the_callx_group(write_case):
    case = load_case(write_case("callx", raw_case(MOV_R0_1, CALLX_R2, EXIT, result="0x1")))
    assert Group.CALLX in case.groups and case.cpu == 1


def test_invalid_encoding_is_a_case_with_base_requirements(write_case):
    case = load_case(write_case("bad", raw_case(MOV_R0_1, BAD_OPCODE, EXIT, error="")))
    assert case.groups == {Group.BASE32} and case.cpu == 1
    assert "insn 1" in (case.encoding_error or "") and "0xff" in (case.encoding_error or "")
    assert case.expect_error == "" and case.expect_r0 is None


def test_error_section_wins_over_result(write_case):
    case = load_case(write_case("both", raw_case(MOV_R0_1, EXIT, result="0x1", error="boom")))
    assert case.expect_error == "boom" and case.expect_r0 is None


@needs_asm
def test_corpus_cpu_versions_match_bpf_conformance():
    # formats-and-corpora.md §3: "required v1 163, v2 9, v3 82, v4 59" (bpf_conformance's own count).
    cases = load_cases([str(CORPUS)])
    assert len(cases) == 313
    assert Counter(c.cpu for c in cases) == {1: 163, 2: 9, 3: 82, 4: 59}
    groups = Counter(g for c in cases for g in c.groups)
    assert groups[Group.CALLX] == 1 and groups[Group.ATOMIC64] == 17 and groups[Group.DIVMUL64] == 34
    assert groups[Group.BASE32] == 313 and groups[Group.PACKET] == 0


# --- Loading files and directories -----------------------------------------------------------


def test_directories_are_searched_recursively_and_sorted(write_case, tmp_path):
    write_case("b", raw_case(MOV_R0_1, EXIT, result="1"))
    write_case("a", raw_case(MOV_R0_1, EXIT, result="1"), subdir="cases/sub")
    (tmp_path / "cases" / "notes.txt").write_text("not a case")
    cases = load_cases([str(tmp_path / "cases")])
    relative = [Path(c.path).relative_to(tmp_path).as_posix() for c in cases]
    assert relative == ["cases/b.data", "cases/sub/a.data"]


def test_globs_and_duplicates(write_case, tmp_path):
    write_case("a", raw_case(MOV_R0_1, EXIT, result="1"))
    write_case("b", raw_case(MOV_R0_1, EXIT, result="1"))
    cases = load_cases([str(tmp_path / "cases" / "*.data"), str(tmp_path / "cases" / "a.data")])
    assert [c.name for c in cases] == ["a", "b"]


@pytest.mark.parametrize("what", ["empty-dir", "glob", "missing"])
def test_empty_selection_is_a_usage_error(tmp_path, what):
    (tmp_path / "empty").mkdir()
    arg = {"empty-dir": tmp_path / "empty", "glob": tmp_path / "*.nothing",
           "missing": tmp_path / "nope"}[what]
    with pytest.raises(UsageError) as e:
        load_cases([str(arg)])
    assert str(arg) in str(e.value)
    if what != "missing":
        assert "no case files found in" in str(e.value)


def test_format_errors_name_file_and_line(write_case):
    p = write_case("bad", raw_case(MOV_R0_1, EXIT, mem="00 zz", result="1"))
    with pytest.raises(CaseFormatError) as e:
        load_cases([str(p)])
    assert str(e.value).startswith(f"{p}:5: ")


# --- Judging ---------------------------------------------------------------------------------


def _case(**kw: object) -> Case:
    kw.setdefault("name", "c")
    kw.setdefault("path", "c.data")
    kw.setdefault("program", ())
    return Case(**kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(("expect_r0", "outcome", "verdict"), [
    (1, Outcome(r0=1), rn.Verdict.PASS),
    (1, Outcome(r0=2), rn.Verdict.FAIL),
    (1, Outcome(error="fault:oob_read", message="pc 3"), rn.Verdict.FAIL),
    (1, Outcome(error="timeout"), rn.Verdict.ERROR),
    (1, Outcome(error="crash"), rn.Verdict.ERROR),
    (1, Outcome(error="error:plugin"), rn.Verdict.ERROR),
    (1, Outcome(error="unsupported", message="no JIT for this"), rn.Verdict.SKIP),
])
def test_value_cases(expect_r0, outcome, verdict):
    assert rn.compare(_case(expect_r0=expect_r0), outcome, exact_errors=True)[0] is verdict


def test_error_case_fails_when_a_value_is_returned():
    # The stock runner reads a missing -- result as r0 == 0; a target returning 0 passes there.
    verdict, message = rn.compare(_case(expect_error=""), Outcome(r0=0), exact_errors=True)
    assert verdict is rn.Verdict.FAIL and "expected an error" in message and "r0 = 0x0" in message


@pytest.mark.parametrize(("expected", "outcome", "exact", "verdict"), [
    ("", Outcome(error="fault:plugin", message="anything"), True, rn.Verdict.PASS),
    ("Failed to load", Outcome(error="fault:plugin", message="Failed to load"), True, rn.Verdict.PASS),
    ("Failed to load", Outcome(error="fault:plugin", message="Failed to load  "), True, rn.Verdict.PASS),
    ("Failed to load", Outcome(error="fault:plugin", message="other text"), True, rn.Verdict.FAIL),
    # Our own targets: only the error class counts.
    ("Failed to load", Outcome(error="rejected:invalid_encoding", message="insn 1"), False, rn.Verdict.PASS),
    ("fault", Outcome(error="fault:oob_read"), False, rn.Verdict.PASS),
    ("fault:oob_read", Outcome(error="fault:oob_write"), False, rn.Verdict.FAIL),
    ("rejected", Outcome(error="fault:oob_read"), False, rn.Verdict.FAIL),
    ("", Outcome(error="budget"), False, rn.Verdict.PASS),
    ("", Outcome(error="timeout"), False, rn.Verdict.ERROR),
])
def test_error_cases(expected, outcome, exact, verdict):
    assert rn.compare(_case(expect_error=expected), outcome, exact_errors=exact)[0] is verdict


def test_skip_reasons_for_groups_and_cpu(write_case):
    case = load_case(write_case("sdiv", raw_case(MOV_R0_1, SDIV_R0_1, EXIT, result="0x1")))
    target = ConstTarget(Outcome(r0=1))
    assert "cpu v4" in (rn.skip_reason(case, target, _opts(cpu=3)) or "")
    reason = rn.skip_reason(case, target, _opts(groups=rn.parse_groups(["base64"])))
    assert reason is not None and "divmul32, divmul64" in reason
    assert rn.skip_reason(case, target, _opts()) is None


def test_target_can_skip_a_case(write_case):
    case = load_case(write_case("one", raw_case(MOV_R0_1, EXIT, result="0x1")))
    target = ConstTarget(Outcome(r0=1))
    target.supports = lambda c: "not on Tuesdays"  # type: ignore[attr-defined]
    assert rn.skip_reason(case, target, _opts()) == "not on Tuesdays"


def test_parse_groups_and_cpu():
    assert rn.parse_groups(["all"]) == ALL_GROUPS
    assert rn.parse_groups(["base64, atomic64"]) == {Group.BASE32, Group.BASE64, Group.ATOMIC32,
                                                     Group.ATOMIC64}
    assert rn.RunOptions().groups == DEFAULT_GROUPS
    with pytest.raises(UsageError, match="unknown group 'base128'"):
        rn.parse_groups(["base128"])
    assert rn.parse_cpu("v3") == 3 and rn.parse_cpu("4") == 4
    with pytest.raises(UsageError):
        rn.parse_cpu("v5")


# --- Runs: strictness, divergences, crashes, timeouts ----------------------------------------


@pytest.fixture
def small_suite(write_case, tmp_path):
    write_case("one", raw_case(MOV_R0_1, EXIT, result="0x1"))
    write_case("zero", raw_case(MOV_R0_0, EXIT, result="0x0"))
    write_case("memlen", raw_case(MOV_R0_R2, EXIT, mem="00 00 00 01 00 00 00 02", result="0x8"))
    write_case("invalid", raw_case(MOV_R0_1, BAD_OPCODE, EXIT, error=""))
    write_case("callx", raw_case(MOV_R0_1, CALLX_R2, EXIT, result="0x1"))
    return load_cases([str(tmp_path / "cases")])


def _verdicts(report: rn.RunReport) -> dict[str, str]:
    return {r.case.name: r.verdict.value for r in report.results}


def test_strict_turns_skips_into_failures(small_suite):
    target = ConstTarget(Outcome(r0=1))
    loose = rn.run(small_suite, [target], _opts())
    assert _verdicts(loose)["callx"] == "SKIP"
    strict = rn.run(small_suite, [target], _opts(strict=True))
    assert _verdicts(strict)["callx"] == "FAIL"
    assert "requires group callx" in next(r.message for r in strict.results if r.case.name == "callx")
    assert strict.failed


def test_summary_counts_add_up(small_suite):
    report = rn.run(small_suite, [ConstTarget(Outcome(r0=1))], _opts())
    # one: PASS; zero, memlen, invalid: FAIL; callx: SKIP
    assert rn.summary_line(report.counts()) == "1 passed, 3 failed, 1 skipped"


def test_divergences_are_strict_xfails(small_suite, tmp_path):
    f = tmp_path / "div.yaml"
    f.write_text(
        "divergences:\n"
        "  - case: zero\n    reason: answers 1 for everything\n"
        "  - case: one\n    reason: stale entry\n"
        "  - case: memlen\n    reason: recorded\n    expect: {r0: 0x1}\n"
        "  - case: invalid\n    reason: recorded wrongly\n    expect: {r0: 0x2}\n"
        "  - case: no-such-case\n    reason: typo\n")
    target = ConstTarget(Outcome(r0=1))
    divs, warnings = resolve_divergences([str(f)], [target.name], {c.name for c in small_suite})
    report = rn.run(small_suite, [target], _opts(), divs)
    v = _verdicts(report)
    assert v["zero"] == "XFAIL"
    assert v["one"] == "XPASS"
    assert v["memlen"] == "XFAIL"  # diverges exactly as recorded
    assert v["invalid"] == "FAIL"  # diverges, but not as recorded
    assert report.failed
    assert len(warnings) == 1 and "no-such-case" in warnings[0] and f"{f}:12: " in warnings[0]
    line = rn.summary_line(report.counts())
    assert line.startswith("0 passed, 2 failed, 1 skipped, 2 xfailed")


@pytest.mark.parametrize(("text", "line", "problem"), [
    ("divergences:\n  - case: a\n", 2, "needs a 'reason'"),
    ("divergences:\n  - case: a\n    reason: x\n    bogus: 1\n", 2, "unknown key"),
    ("divergences:\n  - case: a\n    reason: x\n  - case: a\n    reason: y\n", 4, "listed twice"),
    ("divergences: [\n", 2, "invalid YAML"),
    ("divergences:\n  - case: a\n    reason: x\n    expect: {r0: abc}\n", 2, "integer"),
])
def test_bad_divergence_files(tmp_path, text, line, problem):
    f = tmp_path / "d.yaml"
    f.write_text(text)
    with pytest.raises(CaseFormatError) as e:
        load_divergences(f)
    assert str(e.value).startswith(f"{f}:{line}: ") and problem in str(e.value)


def test_divergence_file_for_two_targets_needs_a_target_key(tmp_path):
    f = tmp_path / "d.yaml"
    f.write_text("- case: a\n  reason: x\n")
    with pytest.raises(UsageError, match="no 'target:' key"):
        resolve_divergences([str(f)], ["a", "b"])


def test_a_raising_target_is_an_error_and_the_run_goes_on(small_suite):
    report = rn.run(small_suite, [RaisingTarget(), ConstTarget(Outcome(r0=1))], _opts())
    raising = [r for r in report.results if r.target == "raising"]
    assert {r.verdict for r in raising} == {rn.Verdict.ERROR, rn.Verdict.SKIP}
    errors = [r for r in raising if r.verdict is rn.Verdict.ERROR]
    assert all("bug in the target" in r.message for r in errors) and len(errors) == 4
    assert len(report.results) == 2 * len(small_suite)


def test_in_process_target_is_killed_at_the_timeout(write_case, tmp_path):
    write_case("hang", raw_case(MOV_R0_1, EXIT, result="0x1"))
    for i in range(4):
        write_case(f"ok{i}", raw_case(MOV_R0_1, EXIT, result="0x1"))
    cases = load_cases([str(tmp_path / "cases")])
    start = time.monotonic()
    # 5 s, not 1 s: on a loaded 2-core machine starting a worker process alone can take seconds
    report = rn.run(cases, [SleepyTarget()], _opts(timeout=5.0))
    elapsed = time.monotonic() - start
    v = _verdicts(report)
    assert v == {"hang": "ERROR", "ok0": "PASS", "ok1": "PASS", "ok2": "PASS", "ok3": "PASS"}
    assert "no answer within 5 s" in report.results[0].message
    assert elapsed < 60


# --- Reports ---------------------------------------------------------------------------------


def test_junit_counts_match(small_suite):
    report = rn.run(small_suite, [ConstTarget(Outcome(r0=1)), ConstTarget(Outcome(error="crash"), "boom")],
                    _opts())
    root = ET.fromstring(rp.to_junit(report))
    cases = root.findall(".//testcase")
    assert len(cases) == 2 * len(small_suite)
    counts = report.counts()
    failed = counts[rn.Verdict.FAIL] + counts[rn.Verdict.XPASS]
    assert int(root.get("failures")) == failed == len(root.findall(".//failure"))
    assert int(root.get("errors")) == counts[rn.Verdict.ERROR] == len(root.findall(".//error"))
    assert int(root.get("skipped")) == counts[rn.Verdict.SKIP] == len(root.findall(".//skipped"))
    assert int(root.get("tests")) == len(cases)
    suites = root.findall("testsuite")
    assert [s.get("name") for s in suites] == ["const", "boom"]


def test_json_document(small_suite):
    report = rn.run(small_suite, [ConstTarget(Outcome(r0=1))], _opts())
    doc = json.loads(rp.to_json(report))
    assert doc["schema"] == "bpfcheck.run" and doc["schema_version"] == 1
    assert doc["summary"]["line"] == "1 passed, 3 failed, 1 skipped"
    assert [r["case"] for r in doc["results"]] == [c.name for c in small_suite]
    memlen = next(r for r in doc["results"] if r["case"] == "memlen")
    assert memlen["expected"] == {"r0": 8, "error": None}
    assert memlen["verdict"] == "FAIL" and memlen["outcome"]["r0"] == 1
    again = rp.to_json(rn.run(small_suite, [ConstTarget(Outcome(r0=1))], _opts(jobs=1)))
    assert again == rp.to_json(report)


@needs_interpreter
def test_interpreter_target_on_the_small_suite(small_suite):
    from conformance.targets import get_target

    report = rn.run(small_suite, [get_target("interpreter")], _opts())
    assert _verdicts(report) == {"callx": "SKIP", "invalid": "PASS", "memlen": "PASS", "one": "PASS",
                                 "zero": "PASS"}
    invalid = next(r for r in report.results if r.case.name == "invalid")
    assert invalid.outcome is not None and invalid.outcome.error_class == "rejected"
