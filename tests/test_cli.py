"""``bpfcheck`` as a subprocess: one-line errors with exit status 2, verdict lines, reports, the corpus.

Expected values come from the corpus files and from hand-encoded instructions (RFC 9669 §3).
"""

from __future__ import annotations

import json
import re
import shlex
import sys
import time
import xml.etree.ElementTree as ET

import pytest
from conftest import (
    BAD_OPCODE,
    CALLX_R2,
    CORPUS,
    EXIT,
    MOV_R0_0,
    MOV_R0_1,
    MOV_R0_R2,
    needs_asm,
    needs_interpreter,
    raw_case,
)


def _one_line_error(proc, prefix: str) -> str:
    """Assert exit status 2 and exactly one stderr line ``bpfcheck: <prefix>...``; return it."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("bpfcheck: " + prefix), lines[0]
    return lines[0]


# --- Malformed case files ----------------------------------------------------------------------

MALFORMED = {
    # name: (file text, line reported, words in the message)
    "unknown-section": ("-- asm\nexit\n-- result\n0x1\n-- frobnicate\n", 5, "unknown section"),
    "bad-mem-byte": (f"-- raw\n{MOV_R0_1}\n{EXIT}\n-- mem\n00 01\n02 xyz\n-- result\n1\n", 6, "'xyz'"),
    "bad-result": (f"-- raw\n{MOV_R0_1}\n{EXIT}\n-- result\n0xfoo\n", 5, "'0xfoo'"),
    "no-result": (f"# nothing to check\n-- raw\n{MOV_R0_1}\n{EXIT}\n", 1, "no '-- result' or '-- error'"),
    "bad-raw-word": (f"-- raw\n{MOV_R0_1}\n0x95q\n-- result\n1\n", 3, "'0x95q'"),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_case_file(name, write_case, run_cli):
    text, line, words = MALFORMED[name]
    path = write_case(name, text)
    message = _one_line_error(run_cli("run", path), f"{path}:{line}: ")
    assert words in message


@needs_asm
def test_bad_asm_line(write_case, run_cli):
    path = write_case("bad-asm", "# header\n-- asm\nmov32 %r0, 1\nfrobnicate %r0, 1\nexit\n-- result\n0x1\n")
    _one_line_error(run_cli("run", path), f"{path}:4: ")


@needs_asm
def test_bad_asm_operand(write_case, run_cli):
    path = write_case("bad-reg", "-- asm\nmov32 %r0, 1\nmov32 %r11, 1\nexit\n-- result\n0x1\n")
    _one_line_error(run_cli("run", path), f"{path}:3: ")


def test_bad_case_among_good_ones_stops_before_running(write_case, run_cli, tmp_path):
    write_case("good", raw_case(MOV_R0_1, EXIT, result="1"))
    bad = write_case("bad", "-- raw\n0x95\n-- result\n1\n-- mystery\n")
    proc = run_cli("run", tmp_path / "cases")
    _one_line_error(proc, f"{bad}:5: ")
    assert proc.stdout == ""


# --- Usage errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(("args", "words"), [
    (["run"], "the following arguments are required"),
    (["frobnicate"], "invalid choice"),
    (["run", "--cpu", "v9", str(CORPUS / "add.data")], "unknown cpu version"),
    (["run", "--groups", "base128", str(CORPUS / "add.data")], "unknown group"),
    (["run", "--target", "nope", str(CORPUS / "add.data")], "known targets: interpreter"),
    (["run", "--include", "(", str(CORPUS / "add.data")], "bad regular expression"),
    (["run", "--include", "^zzz$", str(CORPUS / "add.data")], "no cases left"),
    (["run", "--jobs", "0", str(CORPUS / "add.data")], "--jobs"),
    (["run", "/nonexistent/dir"], "no such file or directory"),
    (["run", "--divergences", "/nonexistent.yaml", str(CORPUS / "add.data")], "cannot read"),
])
def test_usage_errors(args, words, run_cli):
    assert words in _one_line_error(run_cli(*args), "")


def test_empty_directory(run_cli, tmp_path):
    (tmp_path / "empty").mkdir()
    _one_line_error(run_cli("run", tmp_path / "empty"), f"no case files found in {tmp_path / 'empty'}")


def test_list_targets(run_cli):
    proc = run_cli("list-targets")
    assert proc.returncode == 0
    assert "interpreter" in proc.stdout and "plugin:PATH" in proc.stdout


# --- disasm / asm ------------------------------------------------------------------------------


def test_disasm_of_invalid_bytes(run_cli, tmp_path):
    f = tmp_path / "bad.bin"
    # mov %r0, 1; then mov %r0, 1 with src_reg = 1 (must be 0, RFC 9669 §3); exit
    f.write_bytes(bytes.fromhex("b700000001000000" "b710000001000000" "9500000000000000"))
    line = _one_line_error(run_cli("disasm", f), f"{f}: ")
    assert "insn 1" in line and "src" in line


def test_disasm_of_a_data_file_with_invalid_raw(write_case, run_cli):
    path = write_case("bad", raw_case(MOV_R0_1, BAD_OPCODE, EXIT, error=""))
    line = _one_line_error(run_cli("disasm", path), f"{path}: ")
    assert "insn 1" in line and "0xff" in line


def test_disasm_of_a_truncated_file(run_cli, tmp_path):
    f = tmp_path / "short.bin"
    f.write_bytes(bytes.fromhex("b7000000010000"))
    assert "multiple of 8" in _one_line_error(run_cli("disasm", f), f"{f}: ")


@needs_asm
@pytest.mark.parametrize("dialect", ["ubpf", "llvm"])
def test_disasm_of_the_lddw_case(run_cli, dialect):
    proc = run_cli("disasm", CORPUS / "lddw.data", "--dialect", dialect)
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.strip().splitlines()) == 2  # lddw, exit


@needs_asm
def test_asm_of_a_data_file(run_cli):
    proc = run_cli("asm", CORPUS / "add.data")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [  # add.data, encoded by hand (RFC 9669 §3, §4.1)
        "b4 00 00 00 00 00 00 00",  # mov32 %r0, 0
        "b4 01 00 00 02 00 00 00",  # mov32 %r1, 2
        "04 00 00 00 01 00 00 00",  # add32 %r0, 1
        "0c 10 00 00 00 00 00 00",  # add32 %r0, %r1
        "0c 00 00 00 00 00 00 00",  # add32 %r0, %r0
        "04 00 00 00 fd ff ff ff",  # add32 %r0, -3
        "95 00 00 00 00 00 00 00",  # exit
    ]


# --- Runs --------------------------------------------------------------------------------------


@pytest.fixture
def suite_dir(write_case, tmp_path):
    write_case("one", raw_case(MOV_R0_1, EXIT, result="0x1"))
    write_case("zero", raw_case(MOV_R0_0, EXIT, result="0x0"))
    write_case("invalid", raw_case(MOV_R0_1, BAD_OPCODE, EXIT, error=""))
    write_case("invalid-text", raw_case(BAD_OPCODE, EXIT, error="Failed to load code: unknown opcode"))
    write_case("callx", raw_case(MOV_R0_1, CALLX_R2, EXIT, result="0x1"))
    return tmp_path / "cases"


def test_every_case_is_reported_when_a_plugin_misbehaves(suite_dir, run_cli, fake_plugin):
    proc = run_cli("run", "--target", fake_plugin("zero"), "--groups", "all", suite_dir)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[-1] == "1 passed, 4 failed, 0 skipped"
    fails = sorted(line.split()[1].rsplit("/", 1)[1] for line in lines[:-1])
    assert fails == ["callx.data", "invalid-text.data", "invalid.data", "one.data"]
    assert any("invalid.data" in line and "expected an error, got r0 = 0x0" in line for line in lines)


def test_crash_and_hang_plugins_through_the_cli(suite_dir, run_cli, fake_plugin):
    start = time.monotonic()
    proc = run_cli("run", "-t", fake_plugin("crash"), "-t", fake_plugin("hang"), "--timeout", "1",
                   "--groups", "all", suite_dir)
    assert time.monotonic() - start < 60
    assert proc.returncode == 1
    last = proc.stdout.splitlines()[-1]
    assert last == "0 passed, 10 failed, 0 skipped (failed: 10 errors)"
    assert proc.stdout.count("ERROR ") == 10


def test_strict_turns_a_skip_into_a_failure(suite_dir, run_cli, fake_plugin):
    args = ["run", "--target", fake_plugin("zero"), "--include", "^callx$", suite_dir]
    loose = run_cli(*args)
    assert loose.stdout.splitlines()[-1] == "0 passed, 0 failed, 1 skipped" and loose.returncode == 0
    strict = run_cli(*args, "--strict")
    assert strict.stdout.splitlines()[-1] == "0 passed, 1 failed, 0 skipped" and strict.returncode == 1
    assert "requires group callx" in strict.stdout


def test_divergence_that_passes_is_an_xpass_failure(suite_dir, run_cli, fake_plugin, tmp_path):
    div = tmp_path / "zero.yaml"
    div.write_text("divergences:\n"
                   "  - case: zero\n    reason: everything is zero here\n"
                   "  - case: one\n    reason: answers 0\n    expect: {r0: 0}\n"
                   "  - case: gone\n    reason: a case that was removed\n")
    proc = run_cli("run", "--target", fake_plugin("zero"), "--divergences", div, "--exclude", "invalid",
                   suite_dir)
    assert proc.returncode == 1
    assert "XPASS" in proc.stdout and "XFAIL" in proc.stdout
    assert proc.stdout.splitlines()[-1] == "0 passed, 1 failed, 1 skipped, 1 xfailed (failed: 1 xpassed)"
    assert "divergence for case 'gone'" in proc.stderr and f"{div}:7: " in proc.stderr


@needs_interpreter
def test_error_case_with_invalid_raw_passes_on_the_interpreter(suite_dir, run_cli):
    proc = run_cli("run", "--include", "invalid", suite_dir)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[-1] == "2 passed, 0 failed, 0 skipped"


@needs_interpreter
def test_wrong_expectation_fails_with_expected_and_actual(write_case, run_cli):
    path = write_case("wrong", raw_case(MOV_R0_1, EXIT, result="0x2"))
    proc = run_cli("run", path)
    assert proc.returncode == 1
    assert proc.stdout.splitlines() == [f"FAIL {path} [interpreter]: expected r0 = 0x2, got r0 = 0x1",
                                        "0 passed, 1 failed, 0 skipped"]


def test_json_is_deterministic_and_junit_parses(suite_dir, run_cli, fake_plugin, tmp_path):
    outs = []
    for jobs in ("1", "3"):
        j, x = tmp_path / f"r{jobs}.json", tmp_path / f"r{jobs}.xml"
        run_cli("run", "-t", fake_plugin("zero"), "-t", fake_plugin("fail"), "--jobs", jobs, "--json", j,
                "--junit", x, suite_dir)
        outs.append((j.read_bytes(), x.read_bytes()))
    assert outs[0] == outs[1]
    doc = json.loads(outs[0][0])
    assert doc["schema_version"] == 1 and len(doc["results"]) == 10
    root = ET.fromstring(outs[0][1])
    assert len(root.findall(".//testcase")) == 10
    s = doc["summary"]
    assert int(root.get("failures")) == s["fail"] + s["xpass"] == len(root.findall(".//failure"))
    assert int(root.get("errors")) == s["error"] == len(root.findall(".//error"))
    assert int(root.get("skipped")) == s["skip"] + s["xfail"] == len(root.findall(".//skipped"))
    assert s["pass"] + s["failed_total"] + s["skip"] + s["xfail"] == 10


@needs_interpreter
@pytest.mark.parametrize("how", ["bpfcheck plugin", "python -m conformance.cli plugin"])
def test_bpfcheck_itself_as_a_plugin_target(how, write_case, run_cli, subprocess_env, tmp_path):
    write_case("memlen", raw_case(MOV_R0_R2, EXIT, mem="00 00 00 01 00 00 00 02", result="0x8"))
    write_case("one", raw_case(MOV_R0_1, EXIT, result="0x1"))
    write_case("invalid", raw_case(MOV_R0_1, BAD_OPCODE, EXIT, error=""))
    if how == "bpfcheck plugin":  # a stand-in for the console script, found on PATH
        bindir = tmp_path / "bin"
        bindir.mkdir()
        shim = bindir / "bpfcheck"
        shim.write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} -m conformance.cli \"$@\"\n")
        shim.chmod(0o755)
        subprocess_env["PATH"] = f"{bindir}:{subprocess_env.get('PATH', '')}"
        spec = "plugin:bpfcheck plugin"
    else:
        spec = "plugin:" + shlex.join([sys.executable, "-m", "conformance.cli", "plugin"])
    proc = run_cli("run", "--target", spec, tmp_path / "cases")
    assert proc.stdout.splitlines()[-1] == "3 passed, 0 failed, 0 skipped", proc.stdout + proc.stderr
    assert proc.returncode == 0


# --- The bundled corpus ------------------------------------------------------------------------


@needs_asm
@needs_interpreter
@pytest.mark.parametrize("target", ["interpreter", "plugin"])
def test_whole_corpus(target, run_cli):
    spec = "interpreter" if target == "interpreter" else "plugin:" + shlex.join(
        [sys.executable, "-m", "conformance.cli", "plugin"])
    start = time.monotonic()
    proc = run_cli("run", "--target", spec, "--cpu", "v4", "--groups", "all", "--strict", CORPUS, timeout=900)
    elapsed = time.monotonic() - start
    assert proc.stdout.splitlines()[-1] == "313 passed, 0 failed, 0 skipped", proc.stdout[-3000:]
    assert proc.returncode == 0
    print(f"corpus on {target}: {elapsed:.1f} s")


def test_bad_btf_blob_is_one_line(tmp_path, run_cli):
    # kernel/bpf/btf.c btf_parse_hdr: a blob shorter than the header's hdr_len field.
    path = tmp_path / "bad.btf"
    path.write_bytes(b"\x9f\xeb")
    message = _one_line_error(run_cli("btf", path), f"{path}: ")
    assert "hdr_len not found" in message


def test_bad_yaml_case_is_one_line(tmp_path, run_cli):
    path = tmp_path / "bad.yaml"
    path.write_text("cases:\n  - name: x\n    programs: {main: exit}\n    expect: {r0: 0}\n"
                    "    provenance: {rfc: 'RFC 9669'}\n    maps:\n"
                    "      - {name: m, type: nope, max_entries: 1}\n")
    message = _one_line_error(run_cli("run", path), f"{path}:7: ")
    assert "unknown map type 'nope'" in message


def test_bad_case_option_is_one_line(tmp_path, run_cli):
    path = tmp_path / "bad.yaml"
    path.write_text("cases:\n  - name: x\n    programs: {main: exit}\n    expect: {r0: 0}\n"
                    "    provenance: {rfc: 'RFC 9669'}\n    options: {timeout: soon}\n")
    message = _one_line_error(run_cli("run", path), f"{path}:6: ")
    assert "timeout" in message and "expected an integer" in message


def test_jit_side_by_side_and_coverage(run_cli):
    proc = run_cli("jit", "corpora/bpf_conformance/add.data", "--arch", "x86_64")
    assert proc.returncode == 0, proc.stderr
    assert "add32 %r0, %r1" in proc.stdout  # add.data's own instructions, with native code beside
    proc = run_cli("jit", "--coverage")
    assert proc.returncode == 0
    # every executable row of the ISA table is lowered natively on both backends (100% coverage)
    assert len(re.findall(r"\b(\d+)/\1 executable rows native", proc.stdout)) == 2, proc.stdout
