"""How a ``.data`` program becomes a kernel program: the r1/r2 prologue and the r0 epilogue.

bpf_conformance's contract is "r1 = a copy of mem, r2 = its length" (``formats-and-corpora.md``
§2); on Linux the copy is the value of an mmapable ARRAY map, addressed with
``ld_imm64 r1, src=BPF_PSEUDO_MAP_VALUE (imm = map fd, next imm = 0)`` (kernel-oracle.md §4).
TEST_RUN's ``retval`` is a u32 (P1), so the full 64-bit r0 is captured by storing it into a
second map value before the program exits (§5): every ``exit`` of the main frame becomes a
jump to a shared epilogue. Exits of bpf-to-bpf subprograms are kept (they return to their
caller); a subprogram starts at the target of a local call or of ``ld_imm64 src=BPF_PSEUDO_FUNC``
(kernel/bpf/verifier.c ``add_subprog_and_kfunc``).

Layout (slots)::

    0  lddw r1, map_value(mem map) + 0     (lddw r1, 0 without -- mem: r1 = NULL, as uBPF)
    2  mov r2, len(mem)                     (0 without -- mem)
    3  ja +5                                 over the epilogue
    4  lddw r1, map_value(result map) + 0    the epilogue, reached from every main-frame exit
    6  stxdw [r1+0], r0                      the full r0
    7  stdw [r1+8], 1                        "an exit went through here"
    8  exit
    9  the case's program, main-frame exits rewritten to ``ja``/``gotol`` back to slot 4

The epilogue sits *before* the program, inside the main subprogram's range: the verifier
rejects jumps that leave a subprogram (``jump out of range``), and a program whose last
instruction falls through still gets ``last insn is not an exit or jmp``. Rewriting an exit into
a jump of the same size keeps every other jump offset valid. Instruction numbers in verifier
messages count these :data:`HEADER_SLOTS`; :func:`translate_message` maps them back. A program
with no reachable main-frame exit (always refused) gets the prologue only (:func:`wire`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from reference_vm.insn import Insn, RawInsn, decode_program, jump_target
from reference_vm.isa import BPF_PSEUDO_FUNC, BY_NAME, Kind

HEADER_SLOTS = 9
EPILOGUE_PC = 4
#: Result map value: r0 at offset 0, the "epilogue ran" flag at offset 8.
RESULT_SIZE = 16
RESULT_FLAG_OFF = 8
_S16 = range(-(1 << 15), 1 << 15)


def _s32(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >> 31 else value


def subprogram_starts(program: Sequence[Insn | None]) -> list[int]:
    """Start pcs of bpf-to-bpf subprograms (local call and ``BPF_PSEUDO_FUNC`` targets), sorted."""
    starts: set[int] = set()
    for pc, insn in enumerate(program):
        if insn is None:
            continue
        if insn.op.kind is Kind.CALL_LOCAL:
            target = jump_target(insn, pc)
            if target is not None and target > 0:
                starts.add(target)
        elif insn.op.kind is Kind.LDDW and insn.src == BPF_PSEUDO_FUNC:
            starts.add(pc + 1 + _s32(insn.imm))
    return sorted(starts)


def reachable(program: Sequence[Insn | None]) -> set[int]:
    """pcs reachable from pc 0 along jumps, fall-throughs and calls (the verifier's ``check_cfg``)."""
    seen: set[int] = set()
    todo = [0]
    while todo:
        pc = todo.pop()
        if pc in seen or not 0 <= pc < len(program) or program[pc] is None:
            continue
        seen.add(pc)
        insn = program[pc]
        assert insn is not None
        kind = insn.op.kind
        if kind is Kind.EXIT:
            continue
        target = jump_target(insn, pc)
        if target is not None:
            todo.append(target)
        if kind is Kind.LDDW and insn.src == BPF_PSEUDO_FUNC:
            todo.append(pc + 1 + _s32(insn.imm))
        if kind is not Kind.JA:
            todo.append(pc + insn.op.slots)
    return seen


def main_exits(program: Sequence[Insn | None]) -> list[int]:
    """pcs of the ``exit`` instructions of the main frame (before the first subprogram)."""
    starts = subprogram_starts(program)
    end = starts[0] if starts else len(program)
    return [pc for pc, insn in enumerate(program[:end]) if insn is not None and insn.op.kind is Kind.EXIT]


def _lddw(dst: int, row_name: str, value: int) -> Insn:
    """``ld_imm64``; the row's ``src`` selects the pseudo source (RFC 9669 §5.4)."""
    row = BY_NAME[row_name]
    assert row.select is not None and row.select[0] == "src"
    return Insn(row, dst=dst, src=row.select[1], imm=value)


def header(mem_fd: int | None, mem_len: int, result_fd: int) -> list[Insn]:
    """The prologue and the epilogue (slots 0..8 of the layout in the module docstring)."""
    if mem_fd is None:
        r1 = _lddw(1, "lddw", 0)
    else:
        r1 = _lddw(1, "lddw_map_value", mem_fd & 0xFFFFFFFF)  # next imm (offset) = 0
    insns = [
        r1,
        Insn(BY_NAME["mov64_imm"], dst=2, imm=mem_len),
        Insn(BY_NAME["ja"], off=5),
        _lddw(1, "lddw_map_value", result_fd & 0xFFFFFFFF),
        Insn(BY_NAME["stxdw"], dst=1, src=0, off=0),
        Insn(BY_NAME["stdw"], dst=1, off=RESULT_FLAG_OFF, imm=1),
        Insn(BY_NAME["exit"]),
    ]
    assert sum(i.op.slots for i in insns) == HEADER_SLOTS
    return insns


def exit_jump(pc: int) -> Insn:
    """The jump replacing the exit at case pc ``pc``: ``ja`` if the offset fits 16 bits, else ``gotol``."""
    delta = EPILOGUE_PC - (pc + HEADER_SLOTS + 1)
    if delta in _S16:
        return Insn(BY_NAME["ja"], off=delta)
    return Insn(BY_NAME["ja32"], imm=delta)


@dataclass(frozen=True)
class Wired:
    """A wired program: its bytes, and how many slots precede the case's first instruction."""

    code: bytes
    offset: int


def wire(slots: Sequence[RawInsn], *, mem_fd: int | None, mem_len: int, result_fd: int) -> Wired:
    """The kernel program for a case's raw slots (which must decode: ``decode_program``).

    Slots other than main-frame exits are copied byte for byte. When no main-frame exit is
    reachable (the verifier will refuse the program: an infinite loop or unreachable code),
    the epilogue is left out, so that it is not the first ``unreachable insn`` the verifier
    reports; only the three prologue slots precede the program then.
    """
    program = decode_program(list(slots))
    exits = set(main_exits(program))
    head = header(mem_fd, mem_len, result_fd)
    if not exits & reachable(program):
        head, exits = head[:2], set()
    out = [insn.to_bytes() for insn in head]
    offset = len(out) + sum(1 for i in head if i.op.slots == 2)
    out += [exit_jump(pc).to_bytes() if pc in exits else slot.to_bytes() for pc, slot in enumerate(slots)]
    return Wired(b"".join(out), offset)


_INSN_REF = re.compile(r"\b(insn(?: idx)?|from insn|at insn) (\d+)(?: to (\d+))?")


def translate_message(message: str, offset: int = HEADER_SLOTS) -> str:
    """Verifier text with instruction numbers of the wired program mapped back to the case's pcs.

    ``unreachable insn 12`` -> ``unreachable insn 3``; ``jump out of range from insn 9 to 15``
    -> ``... from insn 0 to 6``. Numbers inside the header are left as they are.
    """

    def shift(text: str | None) -> str | None:
        if text is None:
            return None
        n = int(text)
        return str(n - offset) if n >= offset else text

    def sub(m: re.Match[str]) -> str:
        out = f"{m.group(1)} {shift(m.group(2))}"
        return out + (f" to {shift(m.group(3))}" if m.group(3) is not None else "")

    return _INSN_REF.sub(sub, message)
