"""The live Linux kernel target (conformance/targets/kernel.py, docs/kernel-target.md).

Tests that need ``bpf(2)`` SKIP with the capability probe's reason where it is unusable (no
root, no syscall, seccomp, another OS); the wiring and skip-path tests run everywhere.
Expected values come from the bpf_conformance corpus, from instruction encodings, or from
kernel-oracle.md (Linux 6.18 error strings), never from our interpreter.
"""

from __future__ import annotations

import os
import platform
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from conformance import runner as rn
from conformance.case import Case, case_from_data, load_cases
from conformance.cli import main as cli_main
from conformance.data_file import parse_data_text
from conformance.divergence import load_divergences
from conformance.kernel import wiring
from conformance.kernel.harness import refusal, run_case
from conformance.kernel.probe import KernelCapabilities, probe, probe_capbpf
from conformance.targets import get_target
from conformance.targets.kernel import KernelTarget
from reference_vm.insn import decode_program
from reference_vm.isa import Kind
from reference_vm.outcome import UNSUPPORTED

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO / "corpora" / "bpf_conformance"
GENERATED = REPO / "corpora" / "generated"
DIVERGENCES = REPO / "conformance" / "divergences" / "kernel.yaml"

CAPS = probe()
needs_kernel = pytest.mark.skipif(not CAPS.usable, reason=f"bpf() unusable here: {CAPS.unusable}")


def case(asm: str, mem: str | None = None, result: str = "0") -> Case:
    text = f"-- asm\n{asm}\n" + (f"-- mem\n{mem}\n" if mem is not None else "") + f"-- result\n{result}\n"
    return case_from_data(parse_data_text(text, "<test>"))


# --- Wiring (no kernel needed) -------------------------------------------------------------------


def test_wiring_rewrites_only_main_frame_exits() -> None:
    c = load_cases([str(CORPUS / "call_local.data")])[0]
    program = decode_program(list(c.program))
    starts = wiring.subprogram_starts(program)
    exits = wiring.main_exits(program)
    all_exits = [pc for pc, i in enumerate(program) if i is not None and i.op.kind is Kind.EXIT]
    assert starts and exits and set(exits) < set(all_exits)
    assert all(pc < starts[0] for pc in exits)
    wired = wiring.wire(c.program, mem_fd=None, mem_len=0, result_fd=7)
    assert wired.offset == wiring.HEADER_SLOTS
    out = decode_program(wired.code)
    for pc in all_exits:
        insn = out[pc + wired.offset]
        assert insn is not None
        if pc in exits:
            assert insn.op.kind is Kind.JA and pc + wired.offset + 1 + insn.off == wiring.EPILOGUE_PC
        else:
            assert insn.op.kind is Kind.EXIT
    assert wired.code[8 * wired.offset:] != c.program_bytes()  # exits rewritten
    assert len(wired.code) == 8 * (wired.offset + len(c.program))


def test_wiring_uses_gotol_for_far_exits_and_skips_unreachable_epilogue() -> None:
    far_exit = wiring.exit_jump(40_000)
    assert far_exit.op.name == "ja32"
    assert 40_000 + wiring.HEADER_SLOTS + 1 + far_exit.imm == wiring.EPILOGUE_PC
    assert wiring.exit_jump(10).op.name == "ja"
    loop = case("mov %r0, 1\nja -1")  # no reachable exit: prologue only (3 slots)
    assert wiring.wire(loop.program, mem_fd=None, mem_len=0, result_fd=3).offset == 3


def test_translate_message_maps_insn_numbers_back() -> None:
    assert wiring.translate_message("unreachable insn 11") == "unreachable insn 2"
    assert (wiring.translate_message("jump out of range from insn 9 to 15")
            == "jump out of range from insn 0 to 6")
    assert wiring.translate_message("invalid shift 64") == "invalid shift 64"
    assert wiring.translate_message("unreachable insn 4") == "unreachable insn 4"  # inside the header


def test_refusal_of_programs_naming_kernel_objects() -> None:
    assert refusal(load_cases([str(CORPUS / "add.data")])[0]) is None
    pseudo = case_from_data(parse_data_text("-- raw\n0x0000000300001118\n0x0\n0x95\n-- result\n0\n"))
    assert "names a kernel object" in (refusal(pseudo) or "")
    helper = case("call 1\nmov %r0, 0\nexit")
    assert "helper 1" in (refusal(helper) or "")


def test_unusable_kernel_skips_every_case() -> None:
    target = KernelTarget()
    target._caps = KernelCapabilities(release="x", unusable="bpf() is not usable here: EPERM")
    c = load_cases([str(CORPUS / "add.data")])[0]
    assert "bpf() is not usable here" in (target.supports(c) or "")
    assert target.run(c, 1.0).error == UNSUPPORTED
    report = rn.run([c], [target], rn.RunOptions(jobs=1))
    assert [r.verdict for r in report.results] == [rn.Verdict.SKIP]


def test_kernel_is_a_builtin_target() -> None:
    assert get_target("kernel").name == "kernel"


# --- On the kernel -------------------------------------------------------------------------------------


@needs_kernel
def test_probe_reports_the_machine() -> None:
    assert CAPS.release == platform.release()
    assert CAPS.usable and CAPS.unusable is None
    assert CAPS.trampolines is None or "EPERM" in CAPS.trampolines  # kernel-oracle.md P10
    assert any(line.startswith("bpf() + SOCKET_FILTER") for line in CAPS.lines())


@needs_kernel
def test_full_64_bit_r0_is_captured() -> None:
    out = run_case(case("lddw %r0, 0x1122334455667788\nexit"))
    assert out.ok and out.r0 == 0x1122334455667788
    assert out.extra["retval"] == 0x55667788  # TEST_RUN's u32 retval (kernel-oracle.md P1)


@needs_kernel
def test_memory_is_read_back_and_r2_is_the_length() -> None:
    out = run_case(case("stxb [%r1+2], %r2\nmov %r0, %r2\nexit", mem="aa bb cc dd ee"))
    assert out.ok and out.r0 == 5
    assert out.memory["mem"] == bytes.fromhex("aabb05ddee")


@needs_kernel
def test_verifier_rejections_carry_errno_and_message() -> None:
    oob = run_case(case("ldxw %r0, [%r1+1000]\nexit", mem="00 00 00 00 00 00 00 00"))
    assert oob.error == "rejected:verifier"
    assert oob.message == "R1 min value is outside of the allowed memory range (errno EACCES)"
    shift = run_case(load_cases([str(CORPUS / "lsh64-imm-high.data")])[0])
    assert shift.message == "invalid shift 68 (errno EINVAL)"
    dead = run_case(case("mov %r0, 1\nexit\nmov %r0, 2\nexit"))
    assert dead.message == "unreachable insn 2 (errno EINVAL)"  # numbered like the case, not the wiring
    loop = run_case(case("mov %r0, 1\nja -1"))
    assert loop.message == "infinite loop detected at insn 1 (errno EINVAL)"


@needs_kernel
def test_no_file_descriptor_leaks() -> None:
    cases = [case("lddw %r0, 0x1122334455667788\nexit"), case("stw [%r1+0], 7\nldxw %r0, [%r1]\nexit",
                                                               mem="00 00 00 00"),
             case("mov %r0, %r5\nexit"), case("ldxw %r0, [%r1+8]\nexit", mem="00 00 00 00")]
    before = len(os.listdir("/proc/self/fd"))
    for i in range(100):
        run_case(cases[i % len(cases)])
    assert len(os.listdir("/proc/self/fd")) == before


@needs_kernel
def test_bundled_corpus_300_passed_13_xfailed() -> None:
    cases = load_cases([str(CORPUS)])
    assert len(cases) == 313
    divergences = {"kernel": load_divergences(DIVERGENCES).entries}
    options = rn.RunOptions(groups=rn.parse_groups(["all"]), cpu=4, strict=True, jobs=2)
    report = rn.run(cases, [KernelTarget()], options, divergences)
    counts = report.counts()
    assert counts[rn.Verdict.PASS] == 300 and counts[rn.Verdict.XFAIL] == 13, rn.summary_line(counts)
    assert not report.failed  # strict mode: XFAIL is not a failure
    xfailed = {r.case.name for r in report.results if r.verdict is rn.Verdict.XFAIL}
    assert xfailed == set(load_divergences(DIVERGENCES).entries)


@needs_kernel
def test_cli_run_on_the_bundled_corpus(run_cli: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    proc = run_cli("run", "--target", "kernel", "--cpu", "v4", "--groups", "all", "--strict", str(CORPUS))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[-1] == "300 passed, 0 failed, 0 skipped, 13 xfailed"


@needs_kernel
def test_capbpf_mode_runs_the_strict_verifier() -> None:
    reason = probe_capbpf()
    if reason is not None:
        pytest.skip(f"CAP_BPF-only mode unavailable: {reason}")
    root, capbpf = KernelTarget(), KernelTarget(capbpf=True)
    assert capbpf.name == "kernel-capbpf" and capbpf.mode == "capbpf"
    stack = load_cases([str(CORPUS / "stack.data")])[0]  # variable stack offset: root only (§9)
    assert root.run(stack, 10).r0 == stack.expect_r0
    out = capbpf.run(stack, 10)
    assert out.error == "rejected:verifier" and "prohibited for !root" in out.message
    plain = load_cases([str(CORPUS / "lddw.data")])[0]
    assert capbpf.run(plain, 10).r0 == plain.expect_r0


@needs_kernel
def test_generated_corpus_sample_has_no_drift(capsys: pytest.CaptureFixture[str]) -> None:
    files = sorted(str(p) for p in GENERATED.rglob("*.data"))
    assert len(files) >= 3000
    sample = files[::20] + [f for f in files if "jumps-far" in f]
    assert cli_main(["record", "--check", *sample]) == 0
    last = capsys.readouterr().out.splitlines()[-1]
    assert f"{len(sample)} cases, 0 drifted, 0 skipped, 0 errors" in last
