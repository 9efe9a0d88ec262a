"""The kernel-jit target (conformance/targets/kernel_jit.py, conformance/kernel/jit_image.py).

The kernel's own x86-64 JIT image of each case runs under unicorn. Tests that need ``bpf(2)``
SKIP with the probe's reason where it is unusable (no root, no JIT dump, not x86-64); the
emulator itself is also exercised on a recorded image without the kernel. Expected values come
from the corpus (recorded from Linux) and from the ``kernel`` target's TEST_RUN, never from our
interpreter.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest

from conformance import divergence
from conformance import runner as rn
from conformance.case import Case, load_cases
from conformance.divergence import load_divergences
from conformance.kernel import harness, jit_image
from conformance.kernel import syscall as sc
from conformance.targets import get_target
from conformance.targets.kernel_jit import KernelJitTarget
from reference_vm.env import CLOCK_START_NS, CLOCK_STEP_NS
from reference_vm.insn import Insn, decode_program
from reference_vm.isa import BY_NAME
from reference_vm.outcome import UNSUPPORTED

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO / "corpora" / "bpf_conformance"
GENERATED = REPO / "corpora" / "generated"
DIVERGENCES = REPO / "conformance" / "divergences" / "kernel.yaml"

REASON = jit_image.probe()
needs_jit = pytest.mark.skipif(REASON is not None, reason=f"kernel-jit unusable here: {REASON}")
try:
    import capstone  # noqa: F401
    import unicorn  # noqa: F401
    EMULATOR = None
except ImportError as e:
    EMULATOR = str(e)
needs_emulator = pytest.mark.skipif(EMULATOR is not None, reason=f"needs unicorn and capstone: {EMULATOR}")


def program(*insns: Insn, cpu: int = 1, expect_r0: int | None = None) -> Case:
    slots = tuple(slot for insn in insns for slot in insn.raw())
    return Case(name="t", path="<test>", program=slots, cpu=cpu, expect_r0=expect_r0)


def _i(name: str, **fields: int) -> Insn:
    return Insn(BY_NAME[name], **fields)


# --- Without the kernel ----------------------------------------------------------------------------

#: Linux 6.18.44's image of corpora/bpf_conformance/call_unwind_fail.data as the kernel target wires
#: it (``mov r1, -1; call 5; mov r0, 2; exit``, no mem): prologue, ``xor edi, edi`` (r1 = NULL),
#: the epilogue ``movabs rdi, <result value>`` ... ``leave; jmp its_return_thunk``, then the case.
RECORDED_IMAGE = bytes.fromhex(
    "0f1f4400000f1f00554889e531ff31f6eb1c48bf0090c80400c9ffff4889470048c7470801000000c9e93ee124c2"
    "48c7c7ffffffffe8d2da4fc1b802000000ebd1")
RECORDED_XLATED = bytes.fromhex(
    "18010000000000000000000000000000b702000000000000050005000000000018210000cf2a0200000000000000"
    "00007b010000000000007a010800010000009500000000000000b7010000ffffffff85000000b02e0400b7000000"
    "020000000500f7ff00000000")
RECORDED_KSYM = 0xFFFFFFFFC0022074
RECORDED_RESULT_MAP_ID = 0x22ACF
RECORDED_SYMBOLS = jit_image.KernelSymbols(thunks={0xFFFFFFFF822701E0: "its_return_thunk"},
                                           helpers={0xFFFFFFFF8151FB80: 5})


def recorded_dump() -> sc.JitedProg:
    return sc.JitedProg(RECORDED_IMAGE, RECORDED_XLATED, (RECORDED_KSYM,), (len(RECORDED_IMAGE),))


def test_xlated_movabs_predicts_which_ld_imm64_become_movabs() -> None:
    def lddw(src: int, lo: int, hi: int) -> bytes:
        return struct.pack("<BBhiBBhi", 0x18, src << 4 | 1, 0, lo, 0, 0, 0, hi)

    xlated = (lddw(0, 5, 0)  # fits u32: mov r32, imm32
              + lddw(0, -1, -1)  # fits s32: mov r64, simm32
              + lddw(0, 0x55667788, 0x11223344)  # movabs
              + struct.pack("<BBhi", 0xB7, 0, 0, 1)  # mov r0, 1
              + lddw(2, 7, 16))  # map value: id 7, offset 16
    assert jit_image.xlated_movabs(xlated) == [(0, 0x1122334455667788, 0x11223344), (2, 7, 16)]


def test_the_common_delta_relocates_kernel_addresses_below_4g() -> None:
    assert jit_image._relocate(RECORDED_KSYM) == 0xC0022074
    assert jit_image._relocate(0xFFFFFFFF822701E0) == 0x822701E0
    with pytest.raises(jit_image.EmulationError, match="window"):
        jit_image._relocate(0xFFFFC90004C89000)  # a map value: patched, never relocated


@needs_emulator
def test_a_recorded_image_runs_without_the_kernel() -> None:
    values = {RECORDED_RESULT_MAP_ID: jit_image.ValueRegion(RECORDED_RESULT_MAP_ID, bytes(16))}
    run = jit_image.emulate(recorded_dump(), values, syms=RECORDED_SYMBOLS)
    assert run.rax == 2
    assert run.values[RECORDED_RESULT_MAP_ID] == (2).to_bytes(8, "little") + (1).to_bytes(8, "little")
    assert run.helper_calls == [(5, ((1 << 64) - 1, 0, 0, 0, 0), CLOCK_START_NS + CLOCK_STEP_NS)]


@needs_emulator
def test_other_kernel_functions_are_unsupported_when_reached() -> None:
    values = {RECORDED_RESULT_MAP_ID: jit_image.ValueRegion(RECORDED_RESULT_MAP_ID, bytes(16))}
    no_helpers = jit_image.KernelSymbols(thunks=RECORDED_SYMBOLS.thunks, helpers={})
    with pytest.raises(jit_image.Unsupported, match="calls kernel function"):
        jit_image.emulate(recorded_dump(), values, syms=no_helpers)


@needs_emulator
def test_the_instruction_bound_stops_the_emulation() -> None:
    values = {RECORDED_RESULT_MAP_ID: jit_image.ValueRegion(RECORDED_RESULT_MAP_ID, bytes(16))}
    with pytest.raises(jit_image.EmulationError, match="instruction bound"):
        jit_image.emulate(recorded_dump(), values, syms=RECORDED_SYMBOLS, bound=5)


def test_probe_refuses_other_architectures(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jit_image.platform, "machine", lambda: "aarch64")
    reason = jit_image.probe.__wrapped__()
    assert reason is not None and "x86-64" in reason and "aarch64" in reason


def test_kallsyms_are_parsed_and_hidden_addresses_refused(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    listing = ("ffffffff8151fb80 T bpf_ktime_get_ns\n"
               "ffffffff822701d0 T __pfx_its_return_thunk\n"
               "ffffffff822701e0 T its_return_thunk\n"
               "ffffffff83795480 t set_return_thunk\n"
               "ffffffffc0022074 t bpf_prog_6deef7357e7b4530_F\t[bpf]\n")
    (tmp_path / "kallsyms").write_text(listing)
    monkeypatch.setattr(jit_image, "KALLSYMS", str(tmp_path / "kallsyms"))
    syms = jit_image.kernel_symbols.__wrapped__()
    assert syms.thunks == {0xFFFFFFFF822701E0: "its_return_thunk"}
    assert syms.helpers == {0xFFFFFFFF8151FB80: 5}
    (tmp_path / "kallsyms").write_text("".join("0000000000000000" + line[16:]
                                               for line in listing.splitlines(keepends=True)))
    with pytest.raises(PermissionError, match="kptr_restrict"):
        jit_image.kernel_symbols.__wrapped__()


def test_target_skips_with_the_probe_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jit_image, "probe", lambda: "bpf() is not usable here: EPERM")
    target = KernelJitTarget()
    case = load_cases([str(CORPUS / "add64.data")])[0]
    assert target.supports(case) == "kernel-jit target unavailable: bpf() is not usable here: EPERM"
    outcome = target.run(case, 10.0)
    assert outcome.error == UNSUPPORTED and "EPERM" in outcome.message


def test_target_is_registered() -> None:
    target = get_target("kernel-jit")
    assert isinstance(target, KernelJitTarget) and target.name == "kernel-jit"
    assert target.in_process and not target.exact_errors
    assert not (divergence.DEFAULT_DIR / "kernel-jit.yaml").exists()  # shared with kernel, not copied


@pytest.mark.skipif("kernel-jit" not in load_divergences(DIVERGENCES).targets,
                    reason="conformance/divergences/kernel.yaml does not name kernel-jit yet "
                           "(targets: [kernel, kernel-jit], docs/kernel-jit.md)")
def test_default_divergences_are_the_kernel_targets() -> None:
    kernel = divergence.default_entries("kernel")
    assert set(kernel) == set(load_divergences(DIVERGENCES).entries)
    assert divergence.default_entries("kernel-jit") == kernel


# --- On the kernel ----------------------------------------------------------------------------------

AGREEMENT = [
    CORPUS / "alu64-arith.data",  # ALU
    GENERATED / "alu" / "alu-add32-imm-00.data",
    CORPUS / "div64-by-zero-reg.data",  # div/mod by a zero register: the verifier's guards
    CORPUS / "mod64-by-zero-reg.data",
    CORPUS / "sdiv32-intmin-by-negone-reg.data",
    GENERATED / "divmod" / "divmod-smod64-reg-66.data",
    CORPUS / "ldxdw.data",  # memory
    CORPUS / "stxdw.data",
    CORPUS / "mem-len.data",
    CORPUS / "lock_fetch_add.data",  # atomics
    CORPUS / "lock_cmpxchg32.data",
    GENERATED / "atomic" / "atomic-add32-mem-o24-mem-p0.data",
    CORPUS / "lddw.data",  # a 64-bit r0
    CORPUS / "call_local.data",  # bpf-to-bpf: two function images
]


@needs_jit
@pytest.mark.parametrize("path", AGREEMENT, ids=lambda p: p.stem)
def test_agrees_with_the_kernel_target_and_the_expectation(path: Path) -> None:
    case = load_cases([str(path)])[0]
    assert harness.refusal(case) is None
    jit = jit_image.run_case(case)
    kernel = harness.run_case(case)
    assert jit.ok, jit.message
    assert jit.r0 == kernel.r0 == case.expect_r0
    assert jit.memory == kernel.memory
    assert jit.extra["result_value_r0"] == jit.r0  # rax and the epilogue's store agree


@needs_jit
def test_division_by_a_register_runs_the_verifiers_zero_guard() -> None:
    case = load_cases([str(CORPUS / "div64-by-zero-reg.data")])[0]
    loaded = jit_image.load(case)
    assert isinstance(loaded, jit_image.Loaded)
    xlated = decode_program(loaded.dump.xlated)
    wired = 9 + len(case.program)  # the wiring's header slots + the case
    assert len(xlated) > wired  # the verifier inserted the guard (jne over "r0 = 0")
    assert any(line.split()[2] == "div" for line in jit_image.disassemble(loaded.dump))
    assert jit_image.run_case(case).r0 == case.expect_r0 == 0


@needs_jit
def test_full_64bit_r0_and_memory_readback() -> None:
    case = Case(name="t", path="<test>", mem=bytes(8), program=tuple(
        slot for insn in (_i("stb", dst=1, off=3, imm=0x5A), _i("lddw", dst=0, imm=0x8877665544332211),
                          _i("exit")) for slot in insn.raw()))
    outcome = jit_image.run_case(case)
    assert outcome.r0 == 0x8877665544332211
    assert outcome.memory == {"mem": bytes(3) + b"\x5a" + bytes(4)}


@needs_jit
def test_helper_calls_are_answered_from_the_helper_table() -> None:
    case = load_cases([str(CORPUS / "call_unwind_fail.data")])[0]
    outcome = jit_image.run_case(case)
    assert outcome.r0 == case.expect_r0 == 2
    assert [hid for hid, _, _ in outcome.helper_calls] == [5]
    cpu = jit_image.run_case(program(_i("call", imm=8), _i("exit")))  # inlined: gs:[this_cpu_off]
    assert cpu.ok and cpu.r0 == 0 and not cpu.helper_calls


@needs_jit
def test_verifier_rejections_are_the_kernel_targets() -> None:
    case = load_cases([str(CORPUS / "lsh64-imm-high.data")])[0]
    jit, kernel = jit_image.run_case(case), harness.run_case(case)
    assert jit.error == kernel.error == "rejected:verifier"
    assert jit.message == kernel.message == "invalid shift 68 (errno EINVAL)"


@needs_jit
def test_an_exhausted_may_goto_budget_is_unsupported() -> None:
    spin = program(_i("mov64_imm", dst=0, imm=0), _i("may_goto", off=2), _i("add64_imm", dst=0, imm=1),
                   _i("ja", off=-3), _i("exit"), cpu=4)
    outcome = KernelJitTarget().run(spin, 10.0)
    assert outcome.error == UNSUPPORTED and "arch_bpf_timed_may_goto" in outcome.message
    once = program(_i("mov64_imm", dst=0, imm=0), _i("may_goto", off=1), _i("add64_imm", dst=0, imm=1),
                   _i("exit"), cpu=4)
    assert KernelJitTarget().run(once, 10.0).r0 == 1  # the budget is not reached: runs


@needs_jit
def test_whole_program_cases_are_left_to_the_kernel_target() -> None:
    whole = next(c for c in load_cases([str(REPO / "corpora" / "bpf2bpf")]) if c.whole is not None)
    assert "whole-program" in (KernelJitTarget().supports(whole) or "")


@needs_jit
def test_no_fd_is_left_open() -> None:
    cases = load_cases([str(CORPUS / "lock_xchg.data"), str(CORPUS / "lsh64-imm-high.data")])
    before = sorted(os.listdir("/proc/self/fd"))
    for _ in range(50):
        for case in cases:
            jit_image.run_case(case)
    assert sorted(os.listdir("/proc/self/fd")) == before


@needs_jit
def test_a_sample_of_the_generated_corpus_agrees_with_the_kernel() -> None:
    cases = load_cases([str(GENERATED)])[::20]
    assert len(cases) > 250
    for case in cases:
        jit, kernel = jit_image.run_case(case), harness.run_case(case)
        assert (jit.error, jit.r0, jit.memory) == (kernel.error, kernel.r0, kernel.memory), case.path
        assert jit.r0 == case.expect_r0, case.path


@needs_jit
def test_bpf_conformance_corpus_through_the_runner() -> None:
    cases = load_cases([str(CORPUS)])
    options = rn.RunOptions(groups=rn.parse_groups(["all"]), cpu=4, jobs=2)
    entries = load_divergences(DIVERGENCES).entries
    report = rn.run(cases, [KernelJitTarget()], options, {"kernel-jit": entries})
    counts = report.counts()
    assert not report.failed, [r.line() for r in report.results if r.verdict.failed]
    assert counts[rn.Verdict.XFAIL] == len(entries) and counts[rn.Verdict.SKIP] == 0
