"""The bpf_conformance plugin protocol, both ways: ``plugin:PATH`` targets and ``bpfcheck plugin``.

Protocol facts: formats-and-corpora.md §2 (argv ``PATH [<mem>] [options]``, hex bytes each followed
by two spaces, program on stdin + newline, r0 in hex on stdout, error text from stdout else stderr).
The fake plugins live in tests/data/plugins/.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time

import pytest
from conftest import BAD_OPCODE, EXIT, MOV_R0_0, MOV_R0_1, MOV_R0_R2, needs_interpreter, raw_case

from conformance import runner as rn
from conformance.case import load_cases
from conformance.plugin_main import main as plugin_main
from conformance.targets import get_target
from conformance.targets.plugin import PluginTarget, hex_bytes, parse_r0, split_command
from reference_vm.errors import UsageError


@pytest.fixture
def suite(write_case, tmp_path):
    """Value cases (one expecting 0), error cases (empty and with text), one with memory."""
    write_case("one", raw_case(MOV_R0_1, EXIT, result="0x1"))
    write_case("zero", raw_case(MOV_R0_0, EXIT, result="0x0"))
    write_case("memlen", raw_case(MOV_R0_R2, EXIT, mem="00 00 00 01 00 00 00 02", result="0x8"))
    write_case("invalid", raw_case(MOV_R0_1, BAD_OPCODE, EXIT, error=""))
    write_case("invalid-text", raw_case(MOV_R0_1, BAD_OPCODE, EXIT,
                                        error="Failed to load code: unknown opcode 0x8d at PC 2"))
    return load_cases([str(tmp_path / "cases")])


def _run(cases, spec: str, timeout: float = 10.0) -> dict[str, rn.Result]:
    report = rn.run(cases, [get_target(spec)], rn.RunOptions(timeout=timeout, jobs=2))
    assert len(report.results) == len(cases)  # every case is reported, whatever the plugin does
    return {r.case.name: r for r in report.results}


# --- Encoding details ------------------------------------------------------------------------


def test_hex_bytes_format():
    assert hex_bytes(bytes([0xAA, 0xBB, 0x11, 0xCC, 0xDD])) == "aa  bb  11  cc  dd  "


@pytest.mark.parametrize(("stdout", "r0"), [
    ("3\n", 3), ("0x3\n", 3), ("0X1122334455667788", 0x1122334455667788), ("ffffffffffffffff", 2**64 - 1),
    ("10", 16),  # hex, as stoull(s, 16) reads it
    ("0x3 trailing", None), ("", None), ("0x", None), ("-1", None), ("1 2", None),
    ("10000000000000000", None),  # does not fit in 64 bits
])
def test_parse_r0_is_strict(stdout, r0):
    assert parse_r0(stdout) == r0


@pytest.mark.parametrize(("words", "command", "options"), [
    (["ubpf_plugin", "--jit"], ["ubpf_plugin"], ["--jit"]),
    (["bpfcheck", "plugin"], ["bpfcheck"], ["plugin"]),
    (["python3", "-m", "conformance.cli", "plugin"], ["python3", "-m", "conformance.cli"], ["plugin"]),
    (["/usr/bin/python3.11", "-X", "dev", "p.py", "--x"], ["/usr/bin/python3.11", "-X", "dev", "p.py"],
     ["--x"]),
    (["run", "this", "--", "--jit"], ["run", "this"], ["--jit"]),
])
def test_split_command(words, command, options):
    assert split_command(words) == (command, options)


def test_argv_and_stdin_follow_the_protocol(suite, fake_plugin, tmp_path, monkeypatch):
    record = tmp_path / "record.jsonl"
    monkeypatch.setenv("BPFCHECK_RECORD", str(record))
    results = _run(suite, fake_plugin("record", "--opt", "two words"))
    assert results["one"].verdict is rn.Verdict.PASS
    calls = [json.loads(line) for line in record.read_text().splitlines()]
    assert len(calls) == len(suite)
    with_mem = [c for c in calls if len(c["argv"]) == 3]
    assert len(with_mem) == 1
    assert with_mem[0]["argv"] == ["00  00  00  01  00  00  00  02  ", "--opt", "two words"]
    assert all(c["argv"] == ["--opt", "two words"] for c in calls if c is not with_mem[0])
    # mov %r0, %r2 = bf 20 00 00 00 00 00 00; exit = 95 00 ...
    assert with_mem[0]["stdin"] == ("bf  20  00  00  00  00  00  00  95  00  00  00  00  00  00  00  \n")


# --- Misbehaving plugins: per-case ERROR/FAIL, the run goes on ------------------------------------


def test_crashing_plugin(suite, fake_plugin):
    results = _run(suite, fake_plugin("crash"))
    assert {r.verdict for r in results.values()} == {rn.Verdict.ERROR}
    assert all(r.outcome and r.outcome.error == "crash" and "SIGABRT" in r.message for r in results.values())


def test_hanging_plugin_is_killed_at_the_timeout(suite, fake_plugin):
    start = time.monotonic()
    results = _run(suite, fake_plugin("hang"), timeout=1.0)
    assert {r.verdict for r in results.values()} == {rn.Verdict.ERROR}
    assert all(r.outcome and r.outcome.error == "timeout" for r in results.values())
    # 5 cases on 2 threads with a 1 s timeout; the child holding the pipes is killed with the group.
    assert time.monotonic() - start < 20


def test_garbage_output_is_an_error_not_a_prefix_parse(suite, fake_plugin):
    results = _run(suite, fake_plugin("garbage"))
    assert {r.verdict for r in results.values()} == {rn.Verdict.ERROR}
    assert all(r.outcome and r.outcome.error == "error:plugin" for r in results.values())
    assert "0x3 trailing garbage" in results["one"].message


def test_missing_executable(suite):
    results = _run(suite, "plugin:/nonexistent/plugin --jit")
    assert {r.verdict for r in results.values()} == {rn.Verdict.ERROR}
    assert "cannot run /nonexistent/plugin" in results["one"].message


def test_zero_plugin_fails_every_error_case(suite, fake_plugin):
    results = _run(suite, fake_plugin("zero"))
    assert results["invalid"].verdict is rn.Verdict.FAIL
    assert results["invalid-text"].verdict is rn.Verdict.FAIL
    assert results["one"].verdict is rn.Verdict.FAIL
    assert results["memlen"].verdict is rn.Verdict.FAIL
    assert results["zero"].verdict is rn.Verdict.PASS
    assert any(r.verdict is not rn.Verdict.PASS for r in results.values())


@pytest.mark.parametrize("stream", ["stdout", "stderr"])
def test_error_text_is_compared_exactly(suite, fake_plugin, stream):
    args = ("--stderr",) if stream == "stderr" else ()
    results = _run(suite, fake_plugin("fail", *args))
    # fail.py prints the text with trailing spaces and a newline: stripped before comparing.
    assert results["invalid-text"].verdict is rn.Verdict.PASS
    assert results["invalid"].verdict is rn.Verdict.PASS
    assert results["one"].verdict is rn.Verdict.FAIL
    assert "unknown opcode 0x8d at PC 2" in results["one"].message


def test_plugin_spec_errors():
    with pytest.raises(UsageError):
        get_target("plugin:")
    with pytest.raises(UsageError, match="bad plugin command"):
        get_target("plugin:'unterminated")
    with pytest.raises(UsageError) as e:
        get_target("no-such-target")
    assert "interpreter" in str(e.value) and "plugin:PATH" in str(e.value)
    assert PluginTarget.from_spec("ubpf --jit").name == "plugin:ubpf --jit"


# --- bpfcheck plugin ---------------------------------------------------------------------------


def _plugin(argv: list[str], program_hex: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = plugin_main(argv, stdin=io.StringIO(program_hex), stdout=out, stderr=err)
    return status, out.getvalue(), err.getvalue()


@needs_interpreter
def test_bpfcheck_plugin_prints_r0_in_hex():
    # mov %r0, %r2; exit with 8 bytes of memory: r2 = 8 (mem-len.data).
    program = "bf  20  00  00  00  00  00  00  95  00  00  00  00  00  00  00  \n"
    assert _plugin(["00  00  00  01  00  00  00  02  "], program) == (0, "0x8\n", "")
    assert _plugin([], program) == (0, "0x0\n", "")  # no memory: r1 = r2 = 0


def test_bpfcheck_plugin_rejects_invalid_programs():
    status, out, err = _plugin([], "ff 00 00 00 00 00 00 00 95 00 00 00 00 00 00 00")
    assert status == 1 and out == ""
    assert err.count("\n") == 1 and "insn 0" in err and "0xff" in err


def test_bpfcheck_plugin_usage_errors():
    with pytest.raises(UsageError, match="--elf is not supported"):
        _plugin(["--elf"], "")
    with pytest.raises(UsageError, match="not hex"):
        _plugin(["zz"], "95 00 00 00 00 00 00 00")


@needs_interpreter
@pytest.mark.parametrize("argv", [["plugin", "00  00  00  01  "], ["00  00  00  01  ", "plugin"]])
def test_bpfcheck_plugin_argv_orders(argv, subprocess_env):
    # "bpfcheck MEM plugin" is what the stock runner starts for --plugin_options plugin.
    program = "bf  20  00  00  00  00  00  00  95  00  00  00  00  00  00  00  \n"
    proc = subprocess.run([sys.executable, "-m", "conformance.cli", *argv], input=program, text=True,
                          capture_output=True, env=subprocess_env, timeout=60)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "0x4\n", "")


def test_bpfcheck_plugin_elf_is_refused_with_one_line(subprocess_env):
    proc = subprocess.run([sys.executable, "-m", "conformance.cli", "plugin", "--elf"], input="", text=True,
                          capture_output=True, env=subprocess_env, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "--elf is not supported" in proc.stderr
