"""The verifier against the Linux kernel's recorded verdicts, and its target.

Expectations come from the kernel: corpora/verifier was recorded by
scripts/gen_verifier_corpus.py from BPF_PROG_LOAD on Linux 6.18.44 (root and CAP_BPF-only), and
the bpf_conformance corpus' kernel verdicts from conformance/divergences/kernel.yaml. The few
cases whose verification takes tens of seconds (programs the kernel refuses only after a
million instructions) run when BPFCHECK_SLOW=1.
"""

from __future__ import annotations

import os
import re
from functools import cache
from pathlib import Path

import pytest

from conformance.case import Case, load_case, load_cases
from conformance.targets.verifier import (
    MISMATCH,
    Verdict,
    VerifierTarget,
    compare_cases,
    kernel_expectation,
    summary,
    verify_case,
)
from reference_vm.asm import assemble
from reference_vm.insn import RawInsn, encode_program
from reference_vm.maps import MapSpec, MapType
from reference_vm.verifier import verify

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO / "corpora" / "verifier"
DOCS = REPO / "docs" / "verifier.md"
SLOW = {"loop_unbounded_ctx", "loop_too_long", "branches_chain_15", "branches_chain_16"}
#: In the CAP_BPF mode, counted loops also explore speculative paths up to the 1M limit.
SLOW_CAPBPF = SLOW | {f"loop_count_{c}_{n}" for c in ("lt", "le") for n in (64, 100, 1000)} | {"loop_down"}
RUN_SLOW = os.environ.get("BPFCHECK_SLOW") == "1"


@cache
def corpus() -> tuple[Case, ...]:
    return tuple(load_cases([str(CORPUS)]))


def _asm(text: str) -> bytes:
    return encode_program(assemble(text))


def _listed_disagreements() -> set[str]:
    """Case names listed under "## Disagreements" in docs/verifier.md (``- `name` ...`` items)."""
    text = DOCS.read_text(encoding="utf-8")
    section = text.split("## Disagreements", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^- `([A-Za-z0-9_.-]+)`", section, re.M))


# --- agreement with the kernel --------------------------------------------------------------


def _topics() -> list[str]:
    return sorted({c.topic or "data" for c in corpus()})


@pytest.mark.parametrize("privileged", [True, False], ids=["root", "capbpf"])
@pytest.mark.parametrize("topic", _topics())
def test_corpus_agrees_with_the_kernel(topic, privileged):
    slow = SLOW if privileged else SLOW_CAPBPF
    cases = [c for c in corpus() if (c.topic or "data") == topic and (RUN_SLOW or c.name not in slow)]
    comps = compare_cases(cases, privileged)
    assert comps, topic
    listed = _listed_disagreements()
    unlisted = [
        f"{c.case.name}: kernel {c.kernel.text()!r}, verifier {c.ours.text()!r}"
        for c in comps
        if not c.message_agrees and c.case.name not in listed
    ]
    assert not unlisted, "disagreements not listed in docs/verifier.md:\n" + "\n".join(unlisted)
    s = summary(comps)
    assert s["verdict_agreement"] >= 0.97
    assert s["message_agreement"] >= 0.90


def test_corpus_size_and_provenance():
    cases = corpus()
    assert len(cases) >= 1000
    for c in cases:
        if c.whole is not None:
            assert c.whole.provenance.get("kernel", "").startswith("6.18")
            assert c.whole.expect.verifier and "message_unpriv" in c.whole.expect.verifier


def test_bpf_conformance_verdicts_match_the_kernel():
    """Linux accepts every bpf_conformance program except the 12 shift immediates out of range
    and callx (conformance/divergences/kernel.yaml); the verifier says the same, in the same words."""
    cases = load_cases([str(REPO / "corpora" / "bpf_conformance")])
    comps = compare_cases(cases)
    assert len(comps) >= 300
    rejected = {c.case.name: c.ours.text() for c in comps if c.ours.verdict == "reject"}
    assert len(rejected) == 13
    assert rejected["lsh64-imm-high"] == "invalid shift 68 (errno EINVAL)"
    assert rejected["callx"] == "unknown opcode 8d (errno EINVAL)"
    assert all(c.message_agrees for c in comps)


# --- messages and log shape --------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,errno,message",
    [
        ("r0 = 1\nr0 += r2\nexit", "EACCES", "R2 !read_ok"),
        ("exit", "EACCES", "R0 !read_ok"),
        ("r0 = 0\nexit\nr0 = 1\nexit", "EINVAL", "unreachable insn 2"),
        ("r0 = 0\nr0 += 1", "EINVAL", "last insn is not an exit or jmp"),
        ("r0 = 0\n*(u64 *)(r10 + 8) = r0\nexit", "EACCES", "invalid write to stack R10 off=8 size=8"),
        ("r0 = 0\n*(u64 *)(r10 - 4) = r0\nexit", "EACCES", "misaligned stack access off 0+0+-4 size 8"),
        ("r0 = *(u32 *)(r1 + 1000)\nexit", "EACCES", "invalid bpf_context access off=1000 size=4"),
        (
            "r1 += 8\nr0 = *(u32 *)(r1 + 0)\nexit",
            "EACCES",
            "dereference of modified ctx ptr R1 off=8 disallowed",
        ),
        ("r0 = 1\nr0 /= 0\nexit", "EINVAL", "div by zero"),
        ("r0 = 1\nr0 <<= 64\nexit", "EINVAL", "invalid shift 64"),
        ("r0 = 0\nl: if r0 == 0 goto l\nexit", "EINVAL", "infinite loop detected at insn 1"),
        ("call 100000\nexit", "EINVAL", "invalid func unknown#100000"),
    ],
)
def test_kernel_messages(text, errno, message):
    from conformance.kernel.syscall import log_message

    r = verify(_asm(text))
    assert (r.verdict, r.errno, r.message) == ("reject", errno, message)
    # the message is the last-but-one line (state dumps after an infinite loop aside), as the
    # kernel target reads the kernel's log
    assert log_message(r.log) == message
    assert r.log.splitlines()[-1].startswith("processed ") and "(limit 1000000)" in r.log.splitlines()[-1]


def test_privilege_modes():
    prog = _asm("r0 = r10\nexit")
    assert verify(prog).accepted
    r = verify(prog, privileged=False)
    assert (r.errno, r.message) == ("EACCES", "R0 leaks addr as return value")
    r = verify(_asm("r0 = *(u64 *)(r10 - 8)\nexit"), privileged=False)
    assert r.message == "invalid read from stack R10 off=-8 size=8"


def test_ringbuf_reference_leak_log():
    maps = [MapSpec("rb", MapType.RINGBUF, 0, 0, 4096)]
    prog = _asm("r1 = map_idx(0) ll\nr2 = 8\nr3 = 0\ncall 131\nr0 = 0\nexit")
    r = verify(prog, maps=maps)
    assert (r.errno, r.message) == (
        "EINVAL",
        "BPF_EXIT instruction in main prog would lead to reference leak",
    )
    assert "Unreleased reference id=2 alloc_insn=4" in r.log.splitlines()[-3]


def test_map_value_bounds_log():
    maps = [MapSpec("a", MapType.ARRAY, 4, 8, 4)]
    prog = _asm(
        "r1 = 0\n*(u64 *)(r10 - 8) = r1\nr2 = r10\nr2 += -8\nr1 = map_idx(0) ll\ncall 1\n"
        "if r0 == 0 goto +1\nr0 = *(u64 *)(r0 + 8)\nexit"
    )
    r = verify(prog, maps=maps)
    assert r.message == "R0 min value is outside of the allowed memory range"
    assert r.log.splitlines()[-3] == "invalid access to map value, value_size=8 off=8 size=8"


def test_call_frames_and_combined_stack():
    deep = (
        "call f1\nexit\n" + "".join(f"f{i}: call f{i + 1}\nexit\n" for i in range(1, 9)) + "f9: r0 = 0\nexit"
    )
    r = verify(_asm(deep))
    assert (r.errno, r.message) == ("E2BIG", "the call stack of 9 frames is too deep")
    r = verify(
        _asm(
            "r1 = 0\n*(u64 *)(r10 - 512) = r1\ncall sub\nr0 = 0\nexit\n"
            "sub: r1 = 0\n*(u64 *)(r10 - 8) = r1\nr0 = 0\nexit"
        )
    )
    assert (r.errno, r.message) == ("EACCES", "combined stack size of 2 calls is 528. Too large")


def test_complexity_limit():
    r = verify(_asm("r0 = 0\nl: r0 += 1\nif r0 < 1000000 goto l\nexit"))
    assert (r.errno, r.message) == ("E2BIG", "BPF program is too large. Processed 1000001 insn")


def test_structural_passes_run_in_the_kernel_order():
    def raw(*slots: tuple[int, int, int, int, int]) -> list[RawInsn]:
        return [RawInsn(*s) for s in slots]

    exit_, mov0, bad = (0x95, 0, 0, 0, 0), (0xB7, 0, 0, 0, 0), (0xFF, 0, 0, 0, 0)
    # check_subprogs (last insn, jump range) before resolve_pseudo_ldimm64 (unknown opcode)
    assert verify(raw(bad, mov0)).message == "last insn is not an exit or jmp"
    assert verify(raw(mov0, (0x05, 0, 0, 5, 0), bad, exit_)).message == "jump out of range from insn 1 to 7"
    # resolve_pseudo_ldimm64 before check_cfg
    assert verify(raw(mov0, exit_, bad, exit_)).message == "unknown opcode ff"
    # check_cfg's final pass: unreachable before jump-into-lddw
    assert (
        verify(raw((0x05, 0, 0, 1, 0), (0x18, 0, 0, 0, 1), (0, 0, 0, 0, 0), exit_)).message
        == "unreachable insn 1"
    )
    assert (
        verify(raw(mov0, (0x15, 0, 0, 1, 0), (0x18, 0, 0, 0, 1), (0, 0, 0, 0, 0), exit_)).message
        == "jump into the middle of ldimm64 insn 2"
    )


# --- the target ----------------------------------------------------------------------------------


def _by_name(name: str) -> Case:
    return next(c for c in corpus() if c.name == name)


def test_target_rejects_with_the_kernels_message():
    out = VerifierTarget().run(_by_name("map_arr8_no_null_check"), 10)
    assert out.error == "rejected:verifier"
    assert out.message == "R0 invalid mem access 'map_value_or_null' (errno EACCES)"


def test_target_accepts_and_runs_value_cases():
    case = load_case(REPO / "corpora" / "bpf_conformance" / "add.data")
    out = VerifierTarget().run(case, 10)
    assert out.ok and out.r0 == case.expect_r0 and out.extra["verifier"] == "accept"


def test_target_shift_immediates_are_rejected_like_linux():
    case = load_case(REPO / "corpora" / "bpf_conformance" / "lsh64-imm-high.data")
    out = VerifierTarget().run(case, 10)
    assert (out.error, out.message) == ("rejected:verifier", "invalid shift 68 (errno EINVAL)")
    assert kernel_expectation(case) == Verdict("reject", "EINVAL", "invalid shift 68")


def test_target_reports_message_mismatches(monkeypatch):
    from conformance.targets import verifier as vt

    case = _by_name("map_arr8_no_null_check")
    monkeypatch.setattr(
        vt, "verify_case", lambda c, p=True: (Verdict("reject", "EACCES", "something else"), {})
    )
    out = VerifierTarget().run(case, 10)
    assert out.error == MISMATCH and out.extra["kernel"].startswith("R0 invalid mem access")
    out = VerifierTarget(compare_messages=False).run(case, 10)
    assert out.error == "rejected:verifier"


def test_target_is_registered():
    from conformance.targets import get_target

    assert get_target("verifier").name == "verifier"


def test_runner_judges_the_corpus_with_the_verifier_target():
    from conformance import runner as rn
    from conformance.divergence import resolve_divergences

    cases = [c for c in corpus() if c.topic in ("verifier_privilege", "verifier_calls")] + [
        load_case(REPO / "corpora" / "bpf_conformance" / f"{n}.data") for n in ("add", "lsh64-imm-high")
    ]
    div, _ = resolve_divergences([], ["verifier"])  # the default: conformance/divergences/kernel.yaml
    report = rn.run(cases, [VerifierTarget()], rn.RunOptions(jobs=1, timeout=60), div)
    bad = [r.line() for r in report.results if r.verdict.failed]
    assert not bad, bad


def test_verify_case_uses_every_program_and_map():
    case = _by_name("helper_tail_call_ok")
    verdict, info = verify_case(case)
    assert verdict.verdict == "accept" and "main" in info


# --- precision: the register states equal the kernel's ---------------------------------------------


def test_register_states_equal_the_kernels():
    """corpora/verifier/kernel_states.json holds, for 300 generated ALU/branch programs, the register
    states Linux 6.18 printed (log level 2) after each instruction, in processing order, with its
    DFS events. The verifier's states, formatted as the kernel's log does, must be identical
    wherever both explore the same paths (the kernel prunes more: it tracks precision)."""
    import json

    from reference_vm.verifier.checker import Verifier
    from reference_vm.verifier.state import format_reg

    data = json.loads((CORPUS / "kernel_states.json").read_text(encoding="utf-8"))
    assert data["kernel"].startswith("6.18")
    compared = complete = 0
    mismatches = []
    for prog in data["programs"]:
        slots = [s for i in assemble(prog["asm"]) for s in i.raw()]
        v = Verifier(slots)
        v.trace = []
        assert v.run().accepted, prog["name"]
        mine, ti, diverged = v.trace, 0, False
        for entry in prog["states"]:
            if entry[0] in ("from", "safe"):
                while ti < len(mine) and mine[ti][0] not in ("from", "safe"):
                    ti += 1
                if ti >= len(mine) or tuple(mine[ti]) != tuple(entry):
                    diverged = True  # the kernel pruned (or explored) differently from here on
                    break
                ti += 1
                continue
            pc, regs = entry
            while ti < len(mine) and mine[ti][0] not in ("from", "safe") and mine[ti][0] != pc:
                ti += 1
            if ti >= len(mine) or mine[ti][0] in ("from", "safe"):
                diverged = True
                break
            after = mine[ti][1]
            ti += 1
            for name, text in regs.items():
                compared += 1
                got = format_reg(after[int(name[1:])], 0)
                if got != text:
                    mismatches.append(f"{prog['name']} pc {pc} {name}: kernel {text}, verifier {got}")
        complete += not diverged
    assert not mismatches, mismatches[:10]
    assert compared > 6000
    assert complete >= 280  # of 300: the others are pruned earlier by the kernel (precision tracking)


# --- the verifier in front of the execution targets -----------------------------------------------


def test_execution_targets_refuse_what_the_kernel_refuses():
    """Whole-program cases go through the verifier before an engine runs them (wholeprog.load_check):
    every runtime-corpus case, including those whose kernel-recorded expectation is a verifier
    rejection (call depth, combined stack, map flags, callback return values, ...), passes on the
    interpreter and the x86-64 JIT with no divergence declared."""
    from conformance import runner as rn
    from conformance.case import load_cases
    from conformance.targets.interpreter import InterpreterTarget
    from conformance.targets.jit import X86_64Target

    topics = ("bpf2bpf", "tail_calls", "ringbuf", "maps_helpers")
    cases = load_cases([str(REPO / "corpora" / t) for t in topics])
    refused = [
        c for c in cases if c.whole is not None and (c.whole.expect.verifier or {}).get("verdict") == "reject"
    ]
    assert len(refused) >= 30
    report = rn.run(cases, [InterpreterTarget(), X86_64Target()], rn.RunOptions(jobs=1, timeout=60), {})
    bad = [r.line() for r in report.results if r.verdict.failed]
    assert not bad, bad
    assert not any(r.verdict.name == "SKIP" for r in report.results)


def test_unmodelled_programs_are_not_judged():
    """A program using what the verifier does not model gets ``unsupported``, never a rejection,
    and load_check lets it run."""
    from reference_vm.verifier import verify

    r = verify(_asm("call 35\nr0 = 0\nexit"))  # bpf_get_current_task: not in the helper table
    assert (r.verdict, r.errno) == ("unsupported", None) and not r.accepted
    assert r.message == "helper bpf_get_current_task#35 is not modelled by bpfcheck"


def test_bpf_loop_callback_return_range():
    ok = "r1 = 3\nr2 = func(cb) ll\nr3 = 0\nr4 = 0\ncall 181\nr0 = 0\nexit\ncb: r0 = 1\nexit"
    assert verify(_asm(ok), func_info=True).accepted
    bad = ok.replace("cb: r0 = 1", "cb: r0 = 2")
    r = verify(_asm(bad), func_info=True)
    assert (r.errno, r.message) == (
        "EINVAL",
        "At callback return the register R0 has smin=2 smax=2 should have been in [0, 1]",
    )
    unknown = ok.replace("cb: r0 = 1", "cb: r0 = r1")
    r = verify(_asm(unknown), func_info=True)
    assert r.message.startswith("At callback return the register R0 has") and "[0, 1]" in r.message


def test_acquire_release_need_strict_alignment():
    """check_atomic_load/check_atomic_store (strict_alignment_once). Expected messages measured on
    Linux 6.18.44 (root, socket filter, r1 = a 16-byte array map value) on 2026-11-22 by a
    `bpfcheck fuzz --allow-kernel` campaign, which found this verifier accepting both programs."""
    from reference_vm.maps import MapSpec, MapType
    from reference_vm.verifier.state import MapInfo, Reg, T

    def run(text: str):
        r1 = Reg()
        r1.mark_ptr(T.MAP_VALUE, map=MapInfo(0, "mem", 2, "ARRAY", 4, 16, 1))
        return verify(_asm(text), maps=[MapSpec("mem", MapType.ARRAY, 4, 16, 1)], entry={1: r1})

    r = run("r0 = 0\nr0 = load_acquire((u16 *)(r1 + 1))\nexit")
    assert (r.errno, r.message) == ("EACCES", "misaligned value access off 0+0+1 size 2")
    r = run("r0 = 0\nr5 = 0\nstore_release((u64 *)(r1 + 2), r5)\nexit")
    assert (r.errno, r.message) == ("EACCES", "misaligned value access off 0+0+2 size 8")
    assert run("r0 = 0\nr0 = load_acquire((u16 *)(r1 + 2))\nexit").accepted
    assert run("r0 = 0\nr0 = *(u16 *)(r1 + 1)\nexit").accepted  # plain loads: not strict
