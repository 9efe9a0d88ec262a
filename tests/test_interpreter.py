"""Reference interpreter semantics.

Every expected value is cited: RFC 9669 text, the Linux kernel's answer recorded in
../shared/reference/kernel-oracle.md §6 (Linux 6.18.44, SYSCALL programs, 2026), or the
Linux verifier's message. None is computed by the code under test.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reference_vm import interpreter, isa
from reference_vm.asm import assemble
from reference_vm.errors import EncodingError
from reference_vm.insn import Insn, decode_program, encode_program
from reference_vm.memory import MEM_BASE, STACK_TOP


def run(src: str, mem: bytes | None = None, **kw):
    return interpreter.run(decode_program(encode_program(assemble(src))), mem, **kw)


def r0(src: str, mem: bytes | None = None) -> int:
    out = run(src, mem)
    assert out.ok, out.message
    return out.r0


# kernel-oracle.md §6: Linux 6.18 results for inputs -7 and 0x80008081.
@pytest.mark.parametrize("body,expected", [
    ("mov %r0, -7\nsdiv %r0, 2", 0xFFFFFFFFFFFFFFFD),
    ("mov %r0, -7\nsmod %r0, 2", 0xFFFFFFFFFFFFFFFF),
    ("mov %r0, -7\ndiv %r0, 2", 0x7FFFFFFFFFFFFFFC),
    ("mov32 %r1, 0x80008081\nmovsx864 %r0, %r1", 0xFFFFFFFFFFFFFF81),
    ("mov32 %r1, 0x80008081\nmovsx1664 %r0, %r1", 0xFFFFFFFFFFFF8081),
    ("mov32 %r1, 0x80008081\nmovsx3264 %r0, %r1", 0xFFFFFFFF80008081),
    ("mov32 %r1, 0x80008081\nmovsx832 %r0, %r1", 0x00000000FFFFFF81),
    ("mov32 %r0, 0x80008081\nbswap64 %r0", 0x8180008000000000),
    ("mov32 %r0, 0x80008081\nbswap16 %r0", 0x8180),
])
def test_kernel_confirmed_v4_results(body: str, expected: int) -> None:
    assert r0(body + "\nexit") == expected


@pytest.mark.parametrize("insn,expected", [("ldxsb %r0, [%r1+0]", 0xFFFFFFFFFFFFFF81),
                                           ("ldxsw %r0, [%r1+0]", 0xFFFFFFFF80008081)])
def test_kernel_confirmed_sign_extending_loads(insn: str, expected: int) -> None:
    assert r0(f"{insn}\nexit", mem=(0x80008081).to_bytes(8, "little")) == expected


@pytest.mark.parametrize("body,expected", [
    # RFC 9669 §4.1: "-13 % 3 == -1" (truncated signed modulo)
    ("mov %r0, -13\nsmod %r0, 3", (1 << 64) - 1),
    # RFC 9669 §4.1: DIV by zero gives 0; MOD by zero leaves dst (ALU64) ...
    ("mov %r0, 7\nmov %r1, 0\ndiv %r0, %r1", 0),
    ("lddw %r0, 0x1234567887654321\nmov %r1, 0\nmod %r0, %r1", 0x1234567887654321),
    # ... and zeroes the upper half for ALU.
    ("lddw %r0, 0x1234567887654321\nmov %r1, 0\nmod32 %r0, %r1", 0x87654321),
    # RFC 9669 §4.1: ALU results are zero-extended; ALU64 imm is sign-extended.
    ("lddw %r0, 0xffffffffffffffff\nadd32 %r0, 1", 0),
    ("mov %r0, 0\nadd %r0, -1", (1 << 64) - 1),
    # RFC 9669 §4.1: shift counts are masked to 6 / 5 bits.
    ("mov %r0, 1\nmov %r1, 65\nlsh %r0, %r1", 2),
    ("mov32 %r0, 1\nmov %r1, 33\nlsh32 %r0, %r1", 2),
    ("mov %r0, -16\narsh %r0, 2", (1 << 64) - 4),
    ("mov32 %r0, -16\narsh32 %r0, 2", 0xFFFFFFFC),
    # Linux (Documentation/bpf/standardization/instruction-set.rst): INT_MIN / -1 = INT_MIN,
    # INT_MIN % -1 = 0.
    ("lddw %r0, 0x8000000000000000\nsdiv %r0, -1", 0x8000000000000000),
    ("lddw %r0, 0x8000000000000000\nsmod %r0, -1", 0),
    ("mov32 %r0, 0x80000000\nsdiv32 %r0, -1", 0x80000000),
    # RFC 9669 §4.2: le on a little-endian host truncates; be16 swaps and zero-extends.
    ("lddw %r0, 0x1122334455667788\nle16 %r0", 0x7788),
    ("lddw %r0, 0x1122334455667788\nbe16 %r0", 0x8877),
    ("lddw %r0, 0x1122334455667788\nbe64 %r0", 0x8877665544332211),
    # RFC 9669 §4.3: JMP32 compares only the low 32 bits.
    ("lddw %r1, 0x100000000\nmov %r0, 1\njeq32 %r1, 0, +1\nmov %r0, 2", 1),
    ("mov %r1, -1\nmov %r0, 1\njsgt %r1, 0, +1\nmov %r0, 2", 2),
])
def test_rfc_semantics(body: str, expected: int) -> None:
    assert r0(body + "\nexit") == expected


def test_atomics_rfc_9669_5_3() -> None:
    # fetch forms load the old value into src; cmpxchg compares with r0 and loads the old value
    # into r0, zero-extended for 32 bit (RFC 9669 §5.3).
    src = """
        stdw [%r10-8], 10
        mov %r1, 5
        lock fetch add [%r10-8], %r1
        ldxdw %r2, [%r10-8]
        mov %r0, %r1
        lsh %r0, 8
        or %r0, %r2
        exit
    """
    assert r0(src) == (10 << 8) | 15
    src32 = """
        lddw %r0, 0xffffffff00000007
        stw [%r10-4], 7
        mov %r1, 9
        lock cmpxchg32 [%r10-4], %r1
        ldxw %r2, [%r10-4]
        lsh %r2, 32
        or %r0, %r2
        exit
    """
    assert r0(src32) == (9 << 32) | 7


def test_initial_registers_follow_bpf_conformance() -> None:
    # formats-and-corpora.md §2: r1 = pointer to a copy of mem, r2 = its length; r10 = stack top.
    out = run("mov %r0, %r2\nexit", mem=b"\x01\x02\x03")
    assert out.r0 == 3 and out.regs[1] == MEM_BASE and out.regs[10] == STACK_TOP
    assert out.memory["mem"] == b"\x01\x02\x03"


@pytest.mark.parametrize("src,error", [
    ("ldxb %r0, [%r1+3]\nexit", "fault:oob_read"),  # one past the 3-byte input
    ("stxdw [%r10+0], %r1\nexit", "fault:oob_write"),  # above the outermost frame
    ("mov %r1, 0\nldxw %r0, [%r1+0]\nexit", "fault:oob_read"),  # NULL
    ("call 999999\nexit", "fault:unknown_helper"),
    ("lddw %r1, 0x100000000\ncall %r1\nexit", "fault:unknown_helper"),
    ("ja +0\nexit", "ok"),
])
def test_faults_are_outcomes_not_exceptions(src: str, error: str) -> None:
    assert run(src, mem=b"abc").error == error


def test_budget_and_instruction_count() -> None:
    loop = "mov %r0, 0\nmov %r1, 10\nl:\nadd %r0, 1\njlt %r0, %r1, l\nexit"
    out = run(loop)
    assert out.ok and out.insn_count == 2 * 10 + 3
    out = run(loop, budget=5)
    assert out.error == "budget" and out.insn_count == 5


def test_call_depth_limit_is_linux_max_call_frames() -> None:
    # Linux MAX_CALL_FRAMES = 8: the 9th frame is refused ("the call stack of 9 frames is too deep").
    out = run("f:\ncall local f\nexit")
    assert out.error == "fault:call_depth" and "9 frames" in out.message


def test_bpf_to_bpf_call_saves_callee_saved_and_gets_own_frame() -> None:
    src = """
        mov %r6, 6
        stdw [%r10-8], 1
        call local f
        ldxdw %r1, [%r10-8]
        add %r0, %r1
        add %r0, %r6
        exit
    f:
        stdw [%r10-8], 100
        mov %r6, 0
        mov %r0, %r10
        exit
    """
    out = run(src)
    # callee's r10 is one 512-byte frame below; caller's slot and r6 untouched.
    assert out.r0 == (STACK_TOP - 512) + 1 + 6


def test_helper_5_is_ktime_get_ns_and_clobbers_r1_to_r5() -> None:
    # Linux helper 5 = bpf_ktime_get_ns (include/uapi/linux/bpf.h): monotonic, no arguments.
    out = run("call 5\nmov %r6, %r0\ncall 5\nsub %r0, %r6\nexit")
    assert out.ok and 0 < out.r0 < 1 << 63
    assert [h for h, _, _ in out.helper_calls] == [5, 5]
    assert out.regs[1:6] == interpreter.POISON[1:6]


_EXECUTABLE = [r for r in isa.TABLE if r.executable]


@st.composite
def _insn(draw) -> Insn:
    row = draw(st.sampled_from(_EXECUTABLE))
    fields = {}
    for name, use in (("dst", row.shape.dst), ("src", row.shape.src), ("off", row.shape.off),
                      ("imm", row.shape.imm)):
        if use is isa.Use.SELECT:
            fields[name] = row.select[1]
        elif use in (isa.Use.READ, isa.Use.BASE):
            fields[name] = draw(st.integers(0, 10))
        elif use is isa.Use.WRITE:
            fields[name] = draw(st.integers(0, 9))
        elif use in (isa.Use.MEMOFF,):
            fields[name] = draw(st.sampled_from([-512, -8, -1, 0, 1, 8, 32767]))
        elif use is isa.Use.JUMP:
            fields[name] = draw(st.integers(-3, 3))
        elif use in (isa.Use.VALUE, isa.Use.HELPER):
            fields[name] = draw(st.sampled_from([0, 1, -1, 5, 63, 64, 0x7FFFFFFF, -0x80000000]))
        else:
            fields[name] = 0
    if row.kind is isa.Kind.LDDW:
        fields["imm"] = draw(st.integers(0, (1 << 64) - 1))
    return Insn(row, **fields)


@settings(max_examples=300, deadline=None)
@given(st.lists(_insn(), min_size=1, max_size=12), st.binary(max_size=16))
def test_any_valid_program_ends_in_an_outcome(insns, mem) -> None:
    """Whatever a valid program does, the run ends in a typed outcome, never an exception."""
    try:
        program = decode_program(encode_program(insns + [Insn(isa.BY_NAME["exit"])]))
    except EncodingError:  # a random jump landing outside the program or inside an lddw
        return
    out = interpreter.run(program, mem, budget=500)
    assert out.error_class in {"ok", "fault", "budget"}
    assert out.insn_count is not None and out.insn_count <= 500


def test_bpf_loop_calls_back_until_non_zero() -> None:
    # kernel/bpf/bpf_iter.c BPF_CALL_4(bpf_loop): for i < nr_loops: ret = callback(i, ctx);
    # if (ret) return i + 1; return nr_loops.  The callback adds i to *ctx and stops at i == 4.
    src = """
        stdw [%r10-8], 0
        mov %r1, 10
        lddw_func %r2, cb
        mov %r3, %r10
        add %r3, -8
        mov %r4, 0
        call 181
        ldxdw %r1, [%r10-8]
        lsh %r0, 32
        or %r0, %r1
        exit
    cb:
        ldxdw %r0, [%r2+0]
        add %r0, %r1
        stxdw [%r2+0], %r0
        mov %r0, 0
        jne %r1, 4, +1
        mov %r0, 1
        exit
    """
    out = run(src)
    assert out.ok, out.message
    assert out.r0 == (5 << 32) | (0 + 1 + 2 + 3 + 4)
    # flags != 0 -> -EINVAL without calling back
    assert r0(src.replace("mov %r4, 0", "mov %r4, 1")) >> 32 == 0xFFFFFFEA
