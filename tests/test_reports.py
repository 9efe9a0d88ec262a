"""Reports: the JSON document, its renderers (JUnit, Markdown, HTML) and ``bpfcheck report``.

Snapshot tests render a fixed run (built here, no target runs) and compare the bytes with
``tests/snapshots/``; ``BPFCHECK_UPDATE_SNAPSHOTS=1`` rewrites the snapshots instead. The HTML
report of a real run (the bundled corpus on every available built-in target, plus one case with
a wrong ``-- result``) is opened in headless Chromium when ``chromium`` is on PATH.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    BAD_OPCODE,
    CALLX_R2,
    CORPUS,
    EXIT,
    MOV_R0_1,
    MOV_R0_R2,
    REPO,
    SDIV_R0_1,
    needs_interpreter,
)

from conformance import report as rp
from conformance import runner as rn
from conformance.case import Case, requirements
from conformance.divergence import Divergence
from reference_vm.insn import RawInsn
from reference_vm.outcome import Outcome
from reports import document as dm
from reports.compare import compare
from reports.html import render_html
from reports.junit import render_junit
from reports.markdown import render_summary
from reports.svg import line_chart, nice_ticks

SNAPSHOTS = REPO / "tests" / "snapshots"
UPDATE = os.environ.get("BPFCHECK_UPDATE_SNAPSHOTS") == "1"
LSH_R0_68 = "0x0000004400000067"  # lsh %r0, 68 (ALU64 LSH K; RFC 9669 masks the amount to 4)
ADD_R0_1 = "0x0000000100000007"  # add %r0, 1


# --- The fixed run -----------------------------------------------------------------------------


def _case(path: str, *words: str, r0: int | None = None, error: str | None = None,
          mem: bytes | None = None) -> Case:
    program = tuple(RawInsn.from_u64(int(w, 16)) for w in words)
    groups, cpu, encoding_error = requirements(program)
    return Case(name=Path(path).stem, path=path, program=program, mem=mem, expect_r0=r0, expect_error=error,
                groups=groups, cpu=cpu, encoding_error=encoding_error)


def fixed_report() -> rn.RunReport:
    """Five cases × two targets: PASS, FAIL, SKIP, XFAIL and ERROR, with native code on one."""
    one = _case("/fixture/corpora/bpf_conformance/one.data", MOV_R0_1, EXIT, r0=1)
    memlen = _case("/fixture/corpora/bpf_conformance/memlen.data", MOV_R0_R2, EXIT, r0=8, mem=bytes(8))
    callx = _case("/fixture/corpora/bpf_conformance/callx.data", MOV_R0_1, CALLX_R2, EXIT, r0=1)
    shift = _case("/fixture/corpora/generated/shifts/lsh-high.data", MOV_R0_1, LSH_R0_68, ADD_R0_1, SDIV_R0_1,
                  EXIT, r0=0x11)
    invalid = _case("/fixture/corpora/bpf_conformance/invalid.data", MOV_R0_1, BAD_OPCODE, EXIT, error="")
    native = {"x86_64": ["mov eax, 1", "ret"]}
    div = Divergence(case="lsh-high", reason="rejects shift immediates >= 64", file="divergences/jit.yaml",
                     line=3, expect_error="")
    skip = "requires group callx (enabled: atomic32, atomic64, base32, base64, divmul32, divmul64)"
    results = [
        rn.Result(one, "interpreter", rn.Verdict.PASS, "", Outcome(r0=1, regs=(1,) + (0,) * 10, insn_count=2,
                                                                   exit_pc=1)),
        rn.Result(one, "jit", rn.Verdict.PASS, "", Outcome(r0=1, extra={"native": native, "cycles": 7})),
        rn.Result(memlen, "interpreter", rn.Verdict.FAIL, "expected r0 = 0x8, got r0 = 0x1",
                  Outcome(r0=1, memory={"mem": bytes([0, 0, 0, 1, 0, 0, 0, 2]), "stack": bytes(16)})),
        rn.Result(memlen, "jit", rn.Verdict.PASS, "", Outcome(r0=8)),
        rn.Result(callx, "interpreter", rn.Verdict.SKIP, skip),
        rn.Result(callx, "jit", rn.Verdict.SKIP, skip),
        rn.Result(shift, "interpreter", rn.Verdict.PASS, "", Outcome(r0=0x11)),
        rn.Result(shift, "jit", rn.Verdict.XFAIL,
                  "rejects shift immediates >= 64 (expected r0 = 0x11, got rejected:verifier: "
                  "invalid shift 68)",
                  Outcome(error="rejected:verifier", message="invalid shift 68"), div),
        rn.Result(invalid, "interpreter", rn.Verdict.PASS, "",
                  Outcome(error="rejected:encoding", message="insn 1: unknown opcode 0xff")),
        rn.Result(invalid, "jit", rn.Verdict.ERROR, "crash: target raised KeyError: 255",
                  Outcome(error="crash", message="target raised KeyError: 255")),
    ]
    return rn.RunReport(results, ["interpreter", "jit"], rn.RunOptions(cpu=4, timeout=10.0, jobs=1))


FINDINGS = [
    {"signature": "jit r0 != interpreter r0 after lsh", "seed": 1234, "targets": ["interpreter", "jit"],
     "reproducer": "b700000001000000" "6700000044000000" "9500000000000000",
     "replay": "bpfcheck fuzz --replay 1234"},
    {"signature": "crash in jit on invalid opcode", "seed": 99, "reproducer": "findings/crash-99.data",
     "targets": ["jit"]},
]
TRENDS = [{"date": "2025-01-02", "execs_per_s": 1500, "coverage": 140, "findings": 1},
          {"date": "2025-01-01", "execs_per_s": 1200.5, "coverage": 120, "findings": 0},
          {"date": "2025-01-03", "execs_per_s": None, "coverage": 141, "findings": 2}]


@pytest.fixture
def doc() -> dict[str, Any]:
    return json.loads(rp.to_json(fixed_report()))


def check_snapshot(name: str, text: str | bytes) -> None:
    data = text.encode() if isinstance(text, str) else text
    path = SNAPSHOTS / name
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return
    if not path.exists():
        pytest.fail(f"no snapshot {path}; run with BPFCHECK_UPDATE_SNAPSHOTS=1 to write it")
    expected = path.read_bytes()
    if data != expected:
        import difflib

        diff = "\n".join(difflib.unified_diff(expected.decode().splitlines(), data.decode().splitlines(),
                                              f"{name} (snapshot)", f"{name} (now)", lineterm="", n=2))
        pytest.fail(f"{name} changed (BPFCHECK_UPDATE_SNAPSHOTS=1 rewrites it if intended):\n{diff[:6000]}")


# --- Snapshots ---------------------------------------------------------------------------------


def test_json_snapshot(doc):
    text = rp.to_json(fixed_report())
    check_snapshot("run.json", text)
    assert doc["schema"] == "bpfcheck.run" and doc["schema_version"] == 1
    one = doc["results"][0]
    assert one["program_hex"] == "b700000001000000" "9500000000000000"
    assert one["topic"] == "bpf_conformance"
    assert one["provenance"] == {"source": "bpf_conformance corpus"}
    jit_one = doc["results"][1]
    assert jit_one["outcome"]["native"] == {"x86_64": ["mov eax, 1", "ret"]}
    assert "cycles" not in json.dumps(jit_one)  # only the native code of Outcome.extra is recorded
    assert doc["results"][6]["topic"] == "generated/shifts"


def test_junit_snapshot(doc):
    data = rp.to_junit(fixed_report())
    check_snapshot("run.junit.xml", data)
    assert data == render_junit(doc)  # one implementation: the report module delegates
    root = ET.fromstring(data)
    counts = tuple(root.get(k) for k in ("tests", "failures", "errors", "skipped"))
    assert counts == ("10", "1", "1", "3")
    failure = root.find(".//testcase[@name='memlen'][@classname='interpreter']/failure")
    assert failure is not None and "first difference: r0: expected 0x8, actual 0x1" in (failure.text or "")
    assert "mov %r0, %r2" in (failure.text or "")


def test_markdown_snapshot(doc):
    doc["findings"] = FINDINGS
    text = render_summary(doc)
    check_snapshot("run.md", text)
    assert "| r0 | 0x8 | 0x1 |" in text
    assert "| generated/shifts | 1 pass | 1 xfail |" in text


def test_html_of_the_fixed_run_is_deterministic_and_offline(doc):
    doc["findings"] = FINDINGS
    doc["trends"] = TRENDS
    page = render_html(doc)
    assert page == render_html(copy.deepcopy(doc))
    assert_offline(page)
    assert page.count("<svg ") == 3 and "<polyline" in page
    for text in ("mov %r0, 1", "r0 = 1", "native code (x86_64)", "mov eax, 1\nret",
                 "rejects shift immediates", "bpfcheck fuzz --replay 1234",
                 "bpfcheck run findings/crash-99.data -t jit", "2025-01-03"):
        assert text in page, text
    assert page.index("2025-01-01") < page.index("2025-01-02")  # trends sorted by date


def assert_offline(page: str) -> None:
    """No external resource: no URL, no src/href other than in-page anchors, no CSS url()/@import."""
    assert not re.search(r"(?i)\b(?:https?|ftp|wss?):", page)
    assert not re.search(r"(?i)\bsrc\s*=", page)
    assert not re.search(r"(?i)<link\b", page)
    assert not re.search(r"(?i)url\(|@import", page)
    for href in re.findall(r'(?i)href\s*=\s*"([^"]*)"', page):
        assert href.startswith("#"), href


# --- The document's pieces -------------------------------------------------------------------


def test_topic_and_provenance_of_data_files(tmp_path):
    d = tmp_path / "corpora" / "generated" / "shifts"
    d.mkdir(parents=True)
    f = d / "x.data"
    f.write_text("# expected: RFC 9669 §4.1 masks the shift amount to 6 bits\n-- asm\nexit\n-- result\n0\n")
    assert dm.topic_of_path(str(f)) == "generated/shifts"
    assert dm.provenance_of_data_file(str(f)) == {
        "expected": "RFC 9669 §4.1 masks the shift amount to 6 bits"}
    assert dm.topic_of_path(str(CORPUS / "add.data")) == "bpf_conformance"
    assert dm.provenance_of_data_file(str(CORPUS / "add.data")) == {"source": "bpf_conformance corpus"}
    assert dm.topic_of_path("/elsewhere/mine/x.data") == "mine"


def test_yaml_style_case_fields_are_used(doc):
    class YamlLike:
        topic = "maps/hash"
        provenance = {"kernel": "6.8", "recorded": "bpfcheck record"}
        path = "/x/y.yaml"

    assert rp.case_topic(YamlLike()) == "maps/hash"
    assert rp.case_provenance(YamlLike()) == {"kernel": "6.8", "recorded": "bpfcheck record"}
    assert dm.provenance_text({"provenance": YamlLike.provenance}) == "kernel: 6.8, recorded: bpfcheck record"


def test_first_difference_in_each_part():
    def res(expected: dict[str, Any], outcome: dict[str, Any]) -> dm.Difference | None:
        return dm.first_difference({"verdict": "FAIL", "expected": expected, "outcome": outcome})

    assert res({"r0": 1, "error": None}, {"error": "fault:oob_read", "message": "at 0x10"}) == dm.Difference(
        "error", "ok, r0 = 0x1", "fault:oob_read: at 0x10")
    assert res({"r0": None, "error": ""}, {"error": "ok", "r0": 2}) == dm.Difference(
        "error", "an error", "ok, r0 = 0x2")
    assert res({"r0": 1, "error": None, "mem": "00 01 02"}, {"r0": 1, "memory": {"mem": "000103"}}) == \
        dm.Difference("memory mem at byte 2", "[0:] 00 01 02", "[0:] 00 01 03")
    maps_expected = {"r0": 1, "error": None, "maps": {"m": {"00": "01"}}}
    assert res(maps_expected, {"r0": 1, "maps": {"m": {"00": "02"}}}) == dm.Difference(
        "map m key 00", '"01"', '"02"')
    assert dm.first_difference({"verdict": "SKIP", "expected": {"r0": 1}, "outcome": None,
                                "message": "requires cpu v4"}) == dm.Difference("not run", "r0 = 0x1",
                                                                               "requires cpu v4")
    assert dm.first_difference({"verdict": "PASS", "expected": {"r0": 1}, "outcome": {"r0": 1}}) is None


def test_matrix_counts_cases_under_their_most_specific_groups(doc):
    m = dm.matrix(doc, "group")
    # mov64 is base64 (which implies base32: not counted again); an undecodable program needs base32 only.
    assert m.rows == ["base32", "base64", "divmul64", "callx"]
    assert dm.cell_counts(m.cells[("base64", "jit")]) == {"pass": 2, "fail": 0, "skip": 1, "xfail": 1}
    assert dm.cell_counts(m.cells[("base32", "jit")]) == {"pass": 0, "fail": 1, "skip": 0, "xfail": 0}
    assert dm.cell_text(m.cells[("base64", "interpreter")]) == "1 fail · 2 pass · 1 skip"
    assert dm.matrix(doc, "topic").rows == ["bpf_conformance", "generated/shifts"]
    assert dm.matrix(doc, "cpu").rows == ["v1", "v4"]


def test_coverage_counts_the_rows_each_target_ran(doc):
    rows = {r.name: r for r in dm.coverage(doc)}
    # lsh-high ran on both (an XFAIL ran); callx was skipped; invalid does not decode.
    lsh = next(r for r in rows.values() if r.opcode == 0x67)  # ALU64 LSH K
    assert lsh.ran == {"interpreter": 1, "jit": 1}
    callx = next(r for r in rows.values() if r.group == "callx")
    assert callx.ran == {"interpreter": 0, "jit": 0}
    exit_row = next(r for r in rows.values() if r.mnemonic == "exit")
    assert exit_row.ran == {"interpreter": 3, "jit": 3} and exit_row.failed == {"interpreter": 1, "jit": 0}


def test_svg_chart_is_plain_and_deterministic():
    assert nice_ticks(1500) == [0, 500, 1000, 1500]
    svg = line_chart("execs", [("a", 1.0), ("b", None), ("c", 3.0), ("d", 2.0)], unit="execs/s")
    assert svg.startswith("<svg ") and svg.endswith("</svg>") and "http" not in svg
    assert svg.count("<circle") == 3 and svg.count("<polyline") == 1  # the gap splits the line
    assert svg == line_chart("execs", [("a", 1.0), ("b", None), ("c", 3.0), ("d", 2.0)], unit="execs/s")


# --- bpfcheck report ---------------------------------------------------------------------------


def _write_doc(path: Path, doc: dict[str, Any]) -> Path:
    path.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    return path


def _verdict(doc: dict[str, Any], case: str, target: str, verdict: str, message: str = "") -> None:
    r = next(r for r in doc["results"] if r["case"] == case and r["target"] == target)
    r["verdict"], r["message"] = verdict, message


def test_compare_exits_1_on_a_regression(doc, tmp_path, run_cli):
    old = _write_doc(tmp_path / "old.json", doc)
    new_doc = copy.deepcopy(doc)
    _verdict(new_doc, "one", "jit", "FAIL", "expected r0 = 0x1, got r0 = 0x0")
    new = _write_doc(tmp_path / "new.json", new_doc)
    proc = run_cli("report", "--compare", old, new)
    assert proc.returncode == 1, proc.stderr
    line = "regressions (1):\n  FAIL    bpf_conformance/one [jit] (was PASS): expected r0 = 0x1, got"
    assert line in proc.stdout
    assert proc.stdout.splitlines()[-1].startswith("1 regression, 0 fixes")


def test_compare_exits_0_without_regressions(doc, tmp_path, run_cli):
    old = _write_doc(tmp_path / "old.json", doc)
    new_doc = copy.deepcopy(doc)
    _verdict(new_doc, "memlen", "interpreter", "PASS")  # a fix
    _verdict(new_doc, "invalid", "jit", "FAIL", "expected an error, got r0 = 0x1")  # ERROR -> FAIL: no gate
    new = _write_doc(tmp_path / "new.json", new_doc)
    proc = run_cli("report", "--compare", old, new)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "fixes (1):\n  PASS    bpf_conformance/memlen [interpreter] (was FAIL)" in proc.stdout
    assert "other verdict changes (1):" in proc.stdout
    same = run_cli("report", "--compare", old, old)
    assert same.returncode == 0 and same.stdout.endswith("0 regressions, 0 fixes, 0 other changes, 0 new, "
                                                         "0 removed, 10 unchanged\n")


def test_compare_xfail_or_skip_turning_into_a_failure_is_a_regression(doc):
    new = copy.deepcopy(doc)
    _verdict(new, "lsh-high", "jit", "FAIL", "diverges differently than recorded")
    _verdict(new, "callx", "interpreter", "ERROR", "timeout")
    _verdict(new, "callx", "jit", "XFAIL", "listed")  # SKIP -> XFAIL: not failing
    c = compare(doc, new)
    assert [(ch.case, ch.target, ch.old, ch.new) for ch in c.regressions] == [
        ("bpf_conformance/callx", "interpreter", "SKIP", "ERROR"),
        ("generated/shifts/lsh-high", "jit", "XFAIL", "FAIL")]
    assert [(ch.case, ch.target) for ch in c.changed] == [("bpf_conformance/callx", "jit")]


def test_compare_new_failing_case_is_a_regression_and_new_passing_is_not(doc):
    new = copy.deepcopy(doc)
    added = copy.deepcopy(doc["results"][0])
    added.update(case="two", path="/fixture/corpora/bpf_conformance/two.data", verdict="FAIL")
    passing = dict(added, case="three", verdict="PASS")
    new["results"] += [added, passing]
    new["results"] = [r for r in new["results"] if r["case"] != "callx"]
    c = compare(doc, new)
    assert [(ch.case, ch.target) for ch in c.regressions] == [("bpf_conformance/two", "interpreter")]
    assert [ch.case for ch in c.new] == ["bpf_conformance/three"]
    assert len(c.removed) == 2 and c.regressed


@pytest.mark.parametrize("content, problem", [
    (None, "no such file"),
    ("{not json", "not JSON"),
    ("[1, 2]", "not a bpfcheck.run document"),
    ('{"schema": "other", "schema_version": 1}', "not a bpfcheck.run document (schema is 'other')"),
    ('{"schema": "bpfcheck.run", "schema_version": 2, "results": []}', "unsupported schema_version 2"),
    ('{"schema": "bpfcheck.run", "schema_version": 1, "results": [{"case": "x"}]}', "results[0]: missing"),
])
@pytest.mark.parametrize("mode", ["render", "compare-old", "compare-new"])
def test_bad_input_is_one_line_and_exit_2(doc, tmp_path, run_cli, content, problem, mode):
    bad = tmp_path / "bad.json"
    if content is not None:
        bad.write_text(content)
    good = _write_doc(tmp_path / "good.json", doc)
    args = {"render": ["report", bad], "compare-old": ["report", "--compare", bad, good],
            "compare-new": ["report", "--compare", good, bad]}[mode]
    proc = run_cli(*args)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.startswith(f"bpfcheck: {bad}: {problem}") and proc.stderr.count("\n") == 1, proc.stderr
    assert "Traceback" not in proc.stderr


def test_usage_errors(run_cli, tmp_path, doc):
    good = _write_doc(tmp_path / "good.json", doc)
    for args in (["report"], ["report", good, "--compare", good, good], ["report", "--compare", good, good,
                                                                         "--format", "md"]):
        proc = run_cli(*args)
        assert proc.returncode == 2 and proc.stderr.startswith("bpfcheck: report: "), proc.stderr


def test_report_renders_each_format(doc, tmp_path, run_cli):
    good = _write_doc(tmp_path / "good.json", doc)
    html = run_cli("report", good)
    assert html.returncode == 0 and html.stdout.startswith("<!DOCTYPE html>")
    out = tmp_path / "r.md"
    assert run_cli("report", good, "--format", "md", "-o", out).returncode == 0
    assert out.read_text() == render_summary(doc)
    junit = run_cli("report", good, "--format", "junit")
    assert junit.returncode == 0 and junit.stdout.encode() == render_junit(doc)


def test_report_trends_from_a_directory_of_nightly_documents(doc, tmp_path, run_cli):
    nights = tmp_path / "nights"
    nights.mkdir()
    for i, (execs, cov, found) in enumerate([(1000, 100, 0), (1100, 104, 1), (900, 110, 1)], 1):
        night = {"schema": "bpfcheck.run", "schema_version": 1, "results": [],
                 "campaign": {"date": f"2025-02-0{i}", "execs_per_s": execs, "coverage": cov},
                 "findings": [{"signature": f"s{j}", "seed": j} for j in range(found)]}
        _write_doc(nights / f"night{i}.json", night)
    good = _write_doc(tmp_path / "good.json", doc)
    out = tmp_path / "r.html"
    proc = run_cli("report", good, "--trends", nights, "-o", out)
    assert proc.returncode == 0, proc.stderr
    page = out.read_text()
    assert "Campaign trends (3 nights)" in page and page.count("<svg ") == 3
    row = '<td>2025-02-02</td><td class="num">1100</td><td class="num">104</td><td class="num">1</td>'
    assert row in page
    (nights / "broken.json").write_text("nope")
    proc = run_cli("report", good, "--trends", nights)
    assert proc.returncode == 2 and proc.stderr.startswith(f"bpfcheck: {nights / 'broken.json'}: not JSON")


# --- The HTML report of a real run, in headless Chromium -----------------------------------------


class _Tables(HTMLParser):
    """Text of every cell of every ``<table id=...>``, and whether a ``<details id=...>`` is open."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: dict[str, list[list[str]]] = {}
        self.open_details: set[str] = set()
        self._table: str | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "table" and a.get("id"):
            self._table = str(a["id"])
            self.tables[self._table] = []
        elif tag == "tr" and self._table:
            self.tables[self._table].append([])
        elif tag in ("td", "th") and self._table:
            self._cell = []
        elif tag == "details" and a.get("id") and "open" in a:
            self.open_details.add(str(a["id"]))

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._table and self._cell is not None:
            self.tables[self._table][-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def _available_builtin_targets() -> list[str]:
    from conformance.targets import BUILTIN, get_target
    from reference_vm.errors import UsageError

    names = []
    for name in sorted(BUILTIN):
        try:
            get_target(name)
        except UsageError:
            continue
        names.append(name)
    return names


@needs_interpreter
@pytest.mark.skipif(shutil.which("chromium") is None,
                    reason="chromium is not on PATH (Debian: apt-get install -y chromium)")
def test_html_report_of_a_real_run_in_headless_chromium(tmp_path: Path, run_cli: Callable[..., Any]):
    injected = tmp_path / "injected"
    injected.mkdir()
    text = (CORPUS / "add.data").read_text()
    assert "\n0x3\n" in text
    (injected / "add-wrong.data").write_text(text.replace("\n0x3\n", "\n0x4\n"))
    names = _available_builtin_targets()
    run_json, page_path = tmp_path / "run.json", tmp_path / "report.html"
    args = [a for t in names for a in ("-t", t)]
    proc = run_cli("run", CORPUS, injected, *args, "--groups", "all", "--json", run_json)
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr  # the injected failure
    proc = run_cli("report", run_json, "-o", page_path)
    assert proc.returncode == 0, proc.stderr
    page = page_path.read_text()
    assert_offline(page)

    cmd = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run",
           f"--user-data-dir={tmp_path / 'chromium-profile'}", "--dump-dom", page_path.as_uri()]
    dom = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert dom.returncode == 0 and "</html>" in dom.stdout, dom.stderr[-3000:]
    html = dom.stdout
    assert 'data-js="ready"' in html  # the inline script ran
    n_cases = len(list(CORPUS.glob("*.data"))) + 1
    assert f"{n_cases} of {n_cases} cases shown" in html

    tables = _Tables()
    tables.feed(html)
    topic = {row[0]: row[1:] for row in tables.tables["matrix-topic"]}
    assert topic["topic"] == names
    assert topic["injected"] == ["1 fail"] * len(names)
    corpus_cells = topic["bpf_conformance"]
    assert not any(re.search(r"\d+ fail\b", cell) for cell in corpus_cells), corpus_cells
    group = {row[0]: row[1:] for row in tables.tables["matrix-group"]}
    assert {"base32", "base64", "atomic32", "atomic64", "divmul32", "divmul64"} <= set(group)
    # the injected add case uses 32-bit instructions only
    assert all(cell.startswith("1 fail ·") for cell in group["base32"])
    cpu = {row[0]: row[1:] for row in tables.tables["matrix-cpu"]}
    assert {"v1", "v4"} <= set(cpu)

    assert f"Failures ({len(names)})" in html
    diff_rows = [t for t in re.findall(r'<table class="diff">(.*?)</table>', html, re.S)]
    assert len([d for d in diff_rows if "<td>r0</td>" in d]) >= len(names)
    assert "<td>r0</td><td><code>0x4</code></td><td><code>0x3</code></td>" in html
    assert "case-injected-add-wrong" in tables.open_details  # a failing case is open
    case_html = html[html.index('id="case-injected-add-wrong"'):]
    case_html = case_html.split('<details id="case-', 1)[0]
    assert "add32 %r0, 1" in case_html and "w0 += 1" in case_html  # both dialects
    assert "add-wrong.data" in case_html
    for name in names:
        assert f'id="case-injected-add-wrong--{name}"' in html
    coverage = {row[0]: row[1:] for row in tables.tables["coverage-summary"]}
    assert int(coverage["all"][1]) > 100  # ISA rows exercised by the corpus on the first target
