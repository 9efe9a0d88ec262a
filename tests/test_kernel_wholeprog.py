"""Whole-program (YAML) cases on the live kernel (conformance/kernel/wholeprog.py).

Tests that need ``bpf(2)`` SKIP with the capability probe's reason where it is unusable. The
expected values are the kernel's documented behaviour (kernel-oracle.md §7: a tail call into a
filled slot returns the target's value, 34 runs of a self tail call, ring buffer records rounded
to 8; §9: ``the call stack of 9 frames is too deep`` is E2BIG), never our interpreter's; the
empty-slot test compares the kernel with the interpreter's *default* on purpose (the default must
describe this kernel).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conformance.case import Case, case_from_yaml
from conformance.kernel import wholeprog as kw
from conformance.kernel import wiring
from conformance.kernel.probe import probe
from conformance.targets.kernel import KernelTarget
from conformance.wholeprog import assembled, check_state, run_on_interpreter
from conformance.yaml_case import load_yaml_cases
from reference_vm.insn import decode_program
from reference_vm.interpreter import EMPTY_SLOT_CONSUMES_BUDGET

CAPS = probe()
needs_kernel = pytest.mark.skipif(not CAPS.usable, reason=f"bpf() unusable here: {CAPS.unusable}")

TAIL_CALL = """
cases:
  - name: filled
    prog_type: socket_filter
    maps:
      - {name: jt, type: prog_array, key_size: 4, value_size: 4, max_entries: 4, slots: {0: target}}
    programs:
      main: |
        r6 = r1
        r1 = r6
        r2 = map_idx(jt) ll
        r3 = 0
        call bpf_tail_call
        r0 = 1
        exit
      target: |
        r0 = 0x1122334455667788 ll
        exit
    expect: {r0: 0x1122334455667788, maps: {jt: {"0": target}}}
    provenance: {source: kernel-oracle.md §7}
  - name: self_loop
    prog_type: socket_filter
    maps:
      - {name: jt, type: prog_array, key_size: 4, value_size: 4, max_entries: 4, slots: {0: main}}
      - {name: cnt, type: array, key_size: 4, value_size: 8, max_entries: 1}
    programs:
      main: |
        r6 = r1
        r1 = map_idx_value(cnt) ll
        r2 = *(u64 *)(r1 + 0)
        r2 += 1
        *(u64 *)(r1 + 0) = r2
        r1 = r6
        r2 = map_idx(jt) ll
        r3 = SLOT
        call bpf_tail_call
        r1 = r6
        r2 = map_idx(jt) ll
        r3 = 0
        call bpf_tail_call
        r1 = map_idx_value(cnt) ll
        r0 = *(u64 *)(r1 + 0)
        exit
    expect: {r0: 34, maps: {cnt: {"0": "22 00 00 00 00 00 00 00"}}}
    provenance: {source: kernel-oracle.md §7 (34 executions = 33 tail calls)}
"""

MAPS = """
cases:
  - name: hash
    maps:
      - {name: h, type: hash, key_size: 4, value_size: 8, max_entries: 2,
         values: {1: "01 00 00 00 00 00 00 00"}}
      - {name: p, type: percpu_array, key_size: 4, value_size: 4, max_entries: 1}
    programs:
      main: |
        *(u32 *)(r10 - 4) = 2
        *(u64 *)(r10 - 16) = 0x22
        r1 = map_idx(h) ll
        r2 = r10
        r2 += -4
        r3 = r10
        r3 += -16
        r4 = 1
        call bpf_map_update_elem
        r6 = r0
        *(u32 *)(r10 - 4) = 3
        r1 = map_idx(h) ll
        r2 = r10
        r2 += -4
        r3 = r10
        r3 += -16
        r4 = 0
        call bpf_map_update_elem
        r6 <<= 32
        w0 = w0
        r0 |= r6
        *(u32 *)(r10 - 4) = 0
        r6 = r0
        r1 = map_idx(p) ll
        r2 = r10
        r2 += -4
        call bpf_map_lookup_elem
        if r0 == 0 goto out
        *(u32 *)(r0 + 0) = 5
        out:
        r0 = r6
        exit
    expect:
      r0: 0xfffffff9
      maps:
        h: {"1": "01 00 00 00 00 00 00 00", "2": "22 00 00 00 00 00 00 00", "3": ""}
        p: {"0": "05 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00"}
    provenance: {source: "hashtab.c: -E2BIG when full; per-CPU values: this CPU's copy"}
"""

RINGBUF = """
cases:
  - name: rb
    maps:
      - {name: rb, type: ringbuf, key_size: 0, value_size: 0, max_entries: 4096}
    programs:
      main: |
        r1 = 0x0706050403020100 ll
        *(u64 *)(r10 - 8) = r1
        r1 = map_idx(rb) ll
        r2 = r10
        r2 += -8
        r3 = 5
        r4 = 0
        call bpf_ringbuf_output
        r1 = map_idx(rb) ll
        r2 = 16
        r3 = 0
        call bpf_ringbuf_reserve
        if r0 == 0 goto out
        r1 = r0
        r2 = 0
        call bpf_ringbuf_discard
        r1 = map_idx(rb) ll
        r2 = 3
        call bpf_ringbuf_query
        out:
        exit
    expect: {r0: 40, ringbuf: {rb: ["00 01 02 03 04"]}}
    provenance: {source: "kernel-oracle.md §7: records rounded to 8, discarded records skipped"}
"""

NINE_FRAMES = """
cases:
  - name: nine
    programs:
      main: |
        call f1
        exit
        f1:
        call f2
        exit
        f2:
        call f3
        exit
        f3:
        call f4
        exit
        f4:
        call f5
        exit
        f5:
        call f6
        exit
        f6:
        call f7
        exit
        f7:
        call f8
        exit
        f8:
        r0 = 0
        exit
    expect: {error: rejected}
    provenance: {source: "kernel-oracle.md §9: E2BIG the call stack of 9 frames is too deep"}
"""


def cases_of(tmp_path: Path, text: str, name: str = "c.yaml") -> list[Case]:
    path = tmp_path / name
    path.write_text(text)
    return [case_from_yaml(c) for c in load_yaml_cases(path)]


# --- Without the kernel ----------------------------------------------------------------------------


def test_raw_wiring_is_the_data_wiring() -> None:
    from reference_vm.asm import assemble

    slots = [s for i in assemble("mov %r0, 1\njeq %r0, 1, +1\nexit\nmov %r0, 2\nexit") for s in i.raw()]
    mine = kw.wire_program(slots, kw.prologue("raw", 5, 8), 7)
    assert mine == wiring.wire(slots, mem_fd=5, mem_len=8, result_fd=7)


def test_typed_programs_keep_r1_and_get_the_epilogue() -> None:
    from reference_vm.asm import assemble

    slots = [s for i in assemble("r0 = *(u32 *)(r1 + 0)\nexit") for s in i.raw()]
    wired = kw.wire_program(slots, kw.prologue("socket_filter", None, 0), 9)
    program = decode_program(wired.code)
    assert wired.offset == 6 and program[0].op.name == "ja" and program[0].off == 5
    assert program[1].op.name == "lddw_map_value" and program[1].imm == 9
    assert program[wired.offset].op.name == "ldxw" and program[wired.offset].src == 1  # r1 untouched
    exit_jump = program[wired.offset + 1]
    assert exit_jump.op.name == "ja" and wired.offset + 2 + exit_jump.off == 1


def test_func_info_only_where_the_kernel_needs_it(tmp_path: Path) -> None:
    tail = assembled(cases_of(tmp_path, TAIL_CALL.replace("SLOT", "1"))[0].whole)
    plain = assembled(cases_of(tmp_path, NINE_FRAMES, "n.yaml")[0].whole)
    assert not kw.needs_func_info(tail["main"])  # a tail call but no subprogram
    assert not kw.needs_func_info(plain["main"])  # subprograms but no tail call or callback
    blob = kw.func_btf(3)
    assert blob[:2] == b"\x9f\xeb" and blob.endswith(b"\0f0\0f1\0f2\0")


def test_trampoline_cases_are_refused_with_the_probe_reason() -> None:
    corpus = Path(__file__).resolve().parents[1] / "corpora" / "trampolines" / "fentry_test.yaml"
    case = case_from_yaml(load_yaml_cases(corpus)[0])
    reason = kw.refusal(case.whole, "fentry load refused with EPERM")
    assert reason is not None and "fentry:bpf_fentry_test1" in reason and "EPERM" in reason


# --- With the kernel -------------------------------------------------------------------------------


@needs_kernel
def test_tail_call_filled_slot_and_the_33_limit(tmp_path: Path) -> None:
    filled, loop = cases_of(tmp_path, TAIL_CALL.replace("SLOT", "0"))
    target = KernelTarget()
    assert target.supports(filled) is None
    out = target.run(filled, 10)
    assert out.ok and out.r0 == 0x1122334455667788, out.message  # full 64-bit r0 through the target
    assert check_state(filled.whole, out) is None and out.maps["jt"]["slots"] == {"0": "target"}
    out = target.run(loop, 10)
    assert out.ok and out.r0 == 34 and check_state(loop.whole, out) is None


@needs_kernel
def test_empty_slot_budget_matches_the_interpreter_default(tmp_path: Path) -> None:
    """Each run tail-calls an empty slot, then itself: 34 runs if an empty slot costs nothing, 17
    if it counts (kernels before about 2025). The interpreter's default must be this kernel's."""
    _, loop = cases_of(tmp_path, TAIL_CALL.replace("SLOT", "1"))
    kernel = KernelTarget().run(loop, 10)
    assert kernel.ok and kernel.r0 in (17, 34), kernel.message
    assert (kernel.r0 == 17) == EMPTY_SLOT_CONSUMES_BUDGET
    interp = run_on_interpreter(loop.whole, 100_000)
    assert interp.r0 == kernel.r0


@needs_kernel
def test_maps_are_created_filled_and_read_back(tmp_path: Path) -> None:
    case = cases_of(tmp_path, MAPS)[0]
    if kw.possible_cpus() != 2:
        assert KernelTarget().supports(case) is not None  # the case models 2 CPUs
        pytest.skip(f"this machine has {kw.possible_cpus()} possible CPUs, the case models 2")
    out = KernelTarget().run(case, 10)
    assert out.ok and out.r0 == 0xFFFFFFF9, out.message  # NOEXIST ok (0), then -E2BIG (full)
    assert out.maps["h"]["entries"] == {"01000000": "0100000000000000", "02000000": "2200000000000000"}
    assert out.maps["p"]["entries"] == {"00000000": "05000000000000000000000000000000"}
    assert check_state(case.whole, out) is None


@needs_kernel
def test_ring_buffer_records_as_a_consumer_sees_them(tmp_path: Path) -> None:
    case = cases_of(tmp_path, RINGBUF)[0]
    out = KernelTarget().run(case, 10)
    assert out.ok and out.r0 == 40, out.message  # 16 (5 rounded) + 24 (16 + header), the discard included
    assert out.ringbuf == {"rb": ["0001020304"]}
    snap = out.maps["rb"]
    assert snap["producer_pos"] == 40 and snap["consumer_pos"] == 0
    assert [(r["len"], r["discard"], r["pg_off"]) for r in snap["records"]] == [(5, False, 3), (16, True, 3)]
    assert check_state(case.whole, out) is None


@needs_kernel
def test_rejection_carries_errno_and_message(tmp_path: Path) -> None:
    case = cases_of(tmp_path, NINE_FRAMES)[0]
    out = KernelTarget().run(case, 10)
    assert out.error == "rejected:verifier"
    assert out.extra["errno"] == "E2BIG" and out.extra["program"] == "main"
    assert out.extra["verifier_message"] == "the call stack of 9 frames is too deep"
    assert out.message == "the call stack of 9 frames is too deep (errno E2BIG)"


@needs_kernel
def test_no_file_descriptor_or_mapping_leaks(tmp_path: Path) -> None:
    cases = (cases_of(tmp_path, TAIL_CALL.replace("SLOT", "1")) + cases_of(tmp_path, RINGBUF, "r.yaml")
             + cases_of(tmp_path, NINE_FRAMES, "n.yaml"))
    target = KernelTarget()
    for c in cases:
        target.run(c, 10)  # warm up: probes, tracefs, imports
    fds = len(os.listdir("/proc/self/fd"))
    maps = len(Path("/proc/self/maps").read_text().splitlines())
    affinity = os.sched_getaffinity(0)
    for i in range(40):
        target.run(cases[i % len(cases)], 10)
    assert len(os.listdir("/proc/self/fd")) == fds
    assert len(Path("/proc/self/maps").read_text().splitlines()) == maps
    assert os.sched_getaffinity(0) == affinity  # the CPU pinning is undone


RECORDABLE = """# a comment block that record keeps
cases:
  - name: counted
    maps:
      - {name: cnt, type: array, key_size: 4, value_size: 8, max_entries: 1}
      - {name: h, type: hash, key_size: 4, value_size: 8, max_entries: 2}
    programs:
      main: |
        r1 = map_idx_value(cnt) ll
        r2 = 7
        *(u64 *)(r1 + 0) = r2
        r0 = -2
        exit
    expect: {r0: 0, maps: {cnt: {}, h: {"5": "01"}}}
    provenance: {kernel: pending}
  - name: restated
    programs:
      main: |
        r0 = 5
        exit
    expect: {r0: 4}
    provenance: {selftest: "an expectation restated from elsewhere"}
"""


@needs_kernel
def test_record_fills_yaml_expectations_and_check_finds_drift(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    from conformance.cli import main as cli_main

    path = tmp_path / "cases.yaml"
    path.write_text(RECORDABLE)
    assert cli_main(["record", str(path)]) == 0
    text = path.read_text()
    assert text.startswith("# a comment block that record keeps\ncases:\n")
    counted, restated = load_yaml_cases(path)
    assert counted.expect.r0 == (-2) & ((1 << 64) - 1)
    assert counted.expect.maps == {"cnt": {"0": "07 00 00 00 00 00 00 00"}, "h": {"5": ""}}  # "": absent
    assert counted.provenance["kernel"] == CAPS.release
    assert counted.provenance["recorded_by"] == "bpfcheck record"
    assert restated.expect.r0 == 4 and "kernel" not in restated.provenance  # not ours: never written
    capsys.readouterr()
    assert cli_main(["record", str(path)]) == 0 and path.read_text() == text  # no churn
    assert cli_main(["record", "--check", str(path)]) == 1  # the restated case disagrees with the kernel
    out = capsys.readouterr().out
    assert "DRIFT" in out and "restated" in out and "counted" not in out.split("DRIFT", 1)[1].split("\n")[0]
    path.write_text(text.replace("07 00 00 00", "08 00 00 00"))
    assert cli_main(["record", "--check", str(path)]) == 1
    assert "counted: maps" in capsys.readouterr().out
