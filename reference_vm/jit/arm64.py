"""BPF -> AArch64, machine code emitted word by word.

Every emitter below produces one instruction (encoding class) and names its instruction page
in the Arm Architecture Reference Manual for A-profile (DDI 0487), chapter C6.2 "Alphabetical
list of A64 base instructions", and its encoding class in C4.1 (the class names are stable;
the C6.2.x numbers shift between manual revisions, so pages are cited by name).

Register mapping (Linux arch/arm64/net/bpf_jit_comp.c ``bpf2a64``)::

    BPF    r0 r1 r2 r3 r4 r5 r6  r7  r8  r9  r10
    arm64  x7 x0 x1 x2 x3 x4 x19 x20 x21 x22 x25

    x10    address of a memory access        x9   event word at a stop (Linux: BPF_REG_AX)
    x11-14 scratch (Linux tmp1-tmp3, +1)     x26  instructions left in the budget
    x27    control block base                x16  x30 while the bounds-check search runs
    sp     native stack (x30 and r6-r10 of bpf-to-bpf calls)

Atomics use LSE (ARMv8.1: LDADDAL, LDCLRAL, LDSETAL, LDEORAL, SWPAL, CASAL, STADD...), which
unicorn's ``UC_CPU_ARM64_MAX`` model implements and its default Cortex-A72 model does not
(probed: LDADDAL raises UC_ERR_EXCEPTION on A53/A57/A72). ``options(lse=False)`` selects
LDAXR/STLXR loops instead, as Linux does on cores without LSE. Both need natural alignment
(an alignment fault otherwise) while the interpreter accepts misaligned atomics, so a
misaligned address takes a plain load/op/store path (:func:`_if_aligned`).
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Callable, Mapping

from ..helpers import BPF_FUNC_tail_call
from ..insn import Insn, jump_target
from ..interpreter import POISON
from ..isa import BPF_CMPXCHG, BPF_FETCH, BPF_K, BPF_XCHG, AluOp, Cls, JmpOp, Kind
from ..memory import STACK_SIZE
from . import common as c
from .common import Branch, Ctx, Label, Lowering

ARCH = "arm64"

#: BPF register -> AArch64 register number (Linux bpf2a64).
REG = (7, 0, 1, 2, 3, 4, 19, 20, 21, 22, 25)
ADDR, T1, T2, T3, T4, EV, BUDGET, CTRLB, LINK_SAVE, LR = 10, 11, 12, 13, 14, 9, 26, 27, 16, 30
ZR = SP = 31

# Condition codes (Arm ARM C1.2.4 "Condition code").
EQ, NE, HS, LO, MI, PL, VS, VC, HI, LS, GE, LT, GT, LE = range(14)


def options(lse: bool = True) -> dict[str, object]:
    """Backend options: ``lse`` (LSE atomics) or LDAXR/STLXR loops."""
    return {"lse": bool(lse)}


def _w(word: int) -> bytes:
    return struct.pack("<I", word)


# --- Emitters: one per encoding class ----------------------------------------------------------

def add_sub_imm(sub: bool, flags: bool, sf: int, rd: int, rn: int, imm12: int, lsl12: bool = False) -> bytes:
    """ADD/ADDS/SUB/SUBS (immediate); CMP/CMN (immediate) with rd = ZR, MOV to/from SP with
    imm 0 (C6.2 ADD (immediate), SUB (immediate); C4.1 class "Add/subtract (immediate)")."""
    assert 0 <= imm12 < 4096
    return _w(sf << 31 | sub << 30 | flags << 29 | 0x11000000 | lsl12 << 22 | imm12 << 10 | rn << 5 | rd)


def add_sub_reg(sub: bool, flags: bool, sf: int, rd: int, rn: int, rm: int) -> bytes:
    """ADD/ADDS/SUB/SUBS (shifted register), LSL #0; NEG and CMP are aliases (C6.2 ADD (shifted
    register), SUB (shifted register); C4.1 class "Add/subtract (shifted register)")."""
    return _w(sf << 31 | sub << 30 | flags << 29 | 0x0B000000 | rm << 16 | rn << 5 | rd)


AND_, ORR_, EOR_, ANDS_ = 0, 1, 2, 3


def logical_reg(opc: int, sf: int, rd: int, rn: int, rm: int, invert: bool = False) -> bytes:
    """AND/ORR/EOR/ANDS (shifted register), and ORN with ``invert`` (MOV and MVN are aliases of
    ORR/ORN with rn = ZR) (C6.2 AND (shifted register), ORR (shifted register), ...; C4.1 class
    "Logical (shifted register)")."""
    return _w(sf << 31 | opc << 29 | 0x0A000000 | invert << 21 | rm << 16 | rn << 5 | rd)


def logical_imm(opc: int, sf: int, rd: int, rn: int, fields: tuple[int, int, int]) -> bytes:
    """AND/ORR/EOR/ANDS (immediate) with a bitmask immediate (N, immr, imms) (C6.2 AND
    (immediate), ...; C4.1 class "Logical (immediate)")."""
    n, immr, imms = fields
    return _w(sf << 31 | opc << 29 | 0x12000000 | n << 22 | immr << 16 | imms << 10 | rn << 5 | rd)


MOVN, MOVZ, MOVK = 0, 2, 3


def move_wide(opc: int, sf: int, rd: int, imm16: int, hw: int) -> bytes:
    """MOVN/MOVZ/MOVK (C6.2 MOVN, MOVZ, MOVK; C4.1 class "Move wide (immediate)")."""
    return _w(sf << 31 | opc << 29 | 0x12800000 | hw << 21 | (imm16 & 0xFFFF) << 5 | rd)


SBFM, UBFM = 0, 2


def bitfield(opc: int, sf: int, rd: int, rn: int, immr: int, imms: int) -> bytes:
    """SBFM/UBFM, whose aliases are LSL/LSR/ASR (immediate), SXTB/SXTH/SXTW and UXTH
    (C6.2 SBFM, UBFM; C4.1 class "Bitfield")."""
    return _w(sf << 31 | opc << 29 | 0x13000000 | sf << 22 | immr << 16 | imms << 10 | rn << 5 | rd)


UDIV, SDIV, LSLV, LSRV, ASRV = 0x1AC00800, 0x1AC00C00, 0x1AC02000, 0x1AC02400, 0x1AC02800


def dp2(op: int, sf: int, rd: int, rn: int, rm: int) -> bytes:
    """UDIV/SDIV/LSLV/LSRV/ASRV; divide by zero gives 0, the variable shifts take the count
    modulo the register size (C6.2 UDIV, SDIV, LSLV, LSRV, ASRV; C4.1 class "Data-processing
    (2 source)")."""
    return _w(sf << 31 | op | rm << 16 | rn << 5 | rd)


def madd_msub(sub: bool, sf: int, rd: int, rn: int, rm: int, ra: int) -> bytes:
    """MADD/MSUB: rd = ra +/- rn * rm; MUL is MADD with ra = ZR (C6.2 MADD, MSUB; C4.1 class
    "Data-processing (3 source)")."""
    return _w(sf << 31 | 0x1B000000 | rm << 16 | sub << 15 | ra << 10 | rn << 5 | rd)


REV16, REV32, REV64 = 0x5AC00400, 0x5AC00800, 0xDAC00C00


def rev(op: int, rd: int, rn: int) -> bytes:
    """REV16 (32-bit), REV (32-bit), REV (64-bit) (C6.2 REV16, REV; C4.1 class "Data-processing
    (1 source)")."""
    return _w(op | rn << 5 | rd)


def ldst(size: int, opc: int, rt: int, rn: int, offset: int = 0) -> bytes:
    """STR/LDR/LDRS{B,H,W} (immediate, unsigned offset): size 0-3 = byte..doubleword; opc 0
    store, 1 load (zero-extending), 2 load signed to 64 bits (C6.2 LDR (immediate), LDRB, LDRH,
    LDRSB, LDRSH, LDRSW, STR, STRB, STRH; C4.1 class "Load/store register (unsigned
    immediate)")."""
    assert offset % (1 << size) == 0 and 0 <= offset >> size < 4096
    return _w(size << 30 | 0x39000000 | opc << 22 | (offset >> size) << 10 | rn << 5 | rt)


def ldr_reg(rt: int, rn: int, rm: int) -> bytes:
    """LDR (register), 64-bit: rt <- [rn + rm] (C6.2 LDR (register); C4.1 class "Load/store
    register (register offset)")."""
    return _w(0xF8606800 | rm << 16 | rn << 5 | rt)


def stp_pre(rt: int, rt2: int, rn: int, offset: int) -> bytes:
    """STP (64-bit, pre-index) (C6.2 STP; C4.1 class "Load/store register pair (pre-indexed)")."""
    return _w(0xA9800000 | ((offset // 8) & 0x7F) << 15 | rt2 << 10 | rn << 5 | rt)


def ldp_post(rt: int, rt2: int, rn: int, offset: int) -> bytes:
    """LDP (64-bit, post-index) (C6.2 LDP; C4.1 class "Load/store register pair
    (post-indexed)")."""
    return _w(0xA8C00000 | ((offset // 8) & 0x7F) << 15 | rt2 << 10 | rn << 5 | rt)


def ldar_stlr(load: bool, size: int, rt: int, rn: int) -> bytes:
    """LDAR{B,H}/STLR{B,H} (C6.2 LDAR, LDARB, LDARH, STLR, STLRB, STLRH; C4.1 class
    "Load/store ordered")."""
    return _w(size << 30 | (0x08DFFC00 if load else 0x089FFC00) | rn << 5 | rt)


def ldaxr(size: int, rt: int, rn: int) -> bytes:
    """LDAXR (C6.2 LDAXR; C4.1 class "Load/store exclusive register")."""
    return _w(size << 30 | 0x085FFC00 | rn << 5 | rt)


def stlxr(size: int, rs: int, rt: int, rn: int) -> bytes:
    """STLXR: ws = 0 on success (C6.2 STLXR; C4.1 class "Load/store exclusive register")."""
    return _w(size << 30 | 0x0800FC00 | rs << 16 | rn << 5 | rt)


LSE_ADD, LSE_CLR, LSE_EOR, LSE_SET, LSE_SWP = 0, 1, 2, 3, 8


def lse(op: int, size: int, rs: int, rt: int, rn: int, ordered: bool = True) -> bytes:
    """LDADD/LDCLR/LDEOR/LDSET/SWP{,AL}: rt <- [rn], [rn] <- [rn] op rs; with rt = ZR the
    aliases STADD/STCLR/STEOR/STSET (C6.2 LDADD, LDCLR, LDEOR, LDSET, SWP; C4.1 class "Atomic
    memory operations")."""
    o3, opc = (1, 0) if op == LSE_SWP else (0, op)
    return _w(size << 30 | 0x38200000 | ordered << 23 | ordered << 22 | rs << 16 | o3 << 15
              | opc << 12 | rn << 5 | rt)


def casal(size: int, rs: int, rt: int, rn: int) -> bytes:
    """CASAL: if [rn] == rs then [rn] <- rt; rs <- old value (C6.2 CAS, CASA, CASAL, CASL;
    C4.1 class "Compare and swap")."""
    return _w(size << 30 | 0x08E0FC00 | rs << 16 | rn << 5 | rt)


def dmb_ish() -> bytes:
    """DMB ISH (C6.2 DMB; C4.1 class "Barriers")."""
    return _w(0xD5033BBF)


def b_imm(link: bool, delta: int) -> bytes:
    """B / BL, +-128 MiB (C6.2 B, BL; C4.1 class "Unconditional branch (immediate)")."""
    return _w((0x94000000 if link else 0x14000000) | (delta >> 2) & 0x3FFFFFF)


def b_cond(cond: int, delta: int) -> bytes:
    """B.cond, +-1 MiB (C6.2 B.cond; C4.1 class "Conditional branch (immediate)")."""
    return _w(0x54000000 | ((delta >> 2) & 0x7FFFF) << 5 | cond)


def cbz(nonzero: bool, sf: int, rt: int, delta: int) -> bytes:
    """CBZ/CBNZ, +-1 MiB (C6.2 CBZ, CBNZ; C4.1 class "Compare and branch (immediate)")."""
    return _w(sf << 31 | 0x34000000 | nonzero << 24 | ((delta >> 2) & 0x7FFFF) << 5 | rt)


def br(rn: int) -> bytes:
    """BR (C6.2 BR; C4.1 class "Unconditional branch (register)")."""
    return _w(0xD61F0000 | rn << 5)


def blr(rn: int) -> bytes:
    """BLR (C6.2 BLR; C4.1 class "Unconditional branch (register)")."""
    return _w(0xD63F0000 | rn << 5)


def ret(rn: int = LR) -> bytes:
    """RET (C6.2 RET; C4.1 class "Unconditional branch (register)")."""
    return _w(0xD65F0000 | rn << 5)


# --- Immediates ---------------------------------------------------------------------------------

def bitmask_imm(value: int, width: int) -> tuple[int, int, int] | None:
    """(N, immr, imms) encoding ``value`` as a logical immediate of ``width`` bits, or None
    (Arm ARM J1 pseudocode DecodeBitMasks, inverted: a rotated run of ones, replicated)."""
    mask = (1 << width) - 1
    value &= mask
    if value in (0, mask):
        return None
    size = width
    while size > 2:
        half = size // 2
        if (value >> half) & ((1 << half) - 1) != value & ((1 << half) - 1):
            break
        size = half
    elem = value & ((1 << size) - 1)
    ones = bin(elem).count("1")
    run = (1 << ones) - 1
    for immr in range(size):
        if ((run >> immr) | (run << (size - immr))) & ((1 << size) - 1) == elem:
            imms = ((-size << 1) & 0x3F) | (ones - 1)
            return (1 if size == 64 else 0), immr, imms
    return None


def mov_imm(sf: int, rd: int, value: int) -> bytes:
    """Build a constant with MOVZ or MOVN and MOVKs, skipping all-zero (or all-one) halfwords."""
    width = 64 if sf else 32
    value &= (1 << width) - 1
    halves = [(value >> s) & 0xFFFF for s in range(0, width, 16)]
    invert = halves.count(0xFFFF) > halves.count(0)
    skip = 0xFFFF if invert else 0
    out = b""
    for hw, half in enumerate(halves):
        if half == skip:
            continue
        if not out:
            out = move_wide(MOVN if invert else MOVZ, sf, rd, ~half if invert else half, hw)
        else:
            out += move_wide(MOVK, sf, rd, half, hw)
    return out or move_wide(MOVN if invert else MOVZ, sf, rd, 0, 0)


def mov_reg(sf: int, rd: int, rm: int) -> bytes:
    """MOV (register) = ORR rd, ZR, rm; the 32-bit form zero-extends."""
    return logical_reg(ORR_, sf, rd, ZR, rm)


class _Branches:
    """B.cond / CBZ / CBNZ reach +-1 MiB; beyond that the inverted condition skips over a B
    (+-128 MiB, which covers the whole code area). B and BL have one form."""

    def size(self, br: Branch) -> int:
        return 8 if br.long else 4

    def fits(self, br: Branch, delta: int) -> bool:
        return br.kind in ("b", "bl") or -(1 << 20) <= delta < (1 << 20)

    def encode(self, br: Branch, delta: int) -> bytes:
        if br.kind in ("b", "bl"):
            return b_imm(br.kind == "bl", delta)
        if br.kind == "bcond":
            return b_cond(br.arg ^ 1, 8) + b_imm(False, delta - 4) if br.long else b_cond(br.arg, delta)
        sf, rt = br.arg
        nonzero = br.kind == "cbnz"
        if br.long:
            return cbz(not nonzero, sf, rt, 8) + b_imm(False, delta - 4)
        return cbz(nonzero, sf, rt, delta)


BRANCHES = _Branches()


# --- Runtime glue: entry, stop, budget, traps --------------------------------------------------

def _ctrl_ldr(rt: int, off: int, size: int = 3) -> bytes:
    return ldst(size, 1, rt, CTRLB, off)


def _ctrl_str(rt: int, off: int, size: int = 3) -> bytes:
    return ldst(size, 0, rt, CTRLB, off)


def entry(cx: Ctx) -> None:
    """Entry trampoline: control block base, native stack, r0-r10 and the budget, BLR to the
    entry program (its address is at OFF_START); the outermost ``exit`` returns here with its
    event word in w9."""
    a = cx.asm
    a.emit(mov_imm(1, CTRLB, c.CTRL))
    a.emit(mov_imm(1, ADDR, c.HOST_STACK_TOP))
    a.emit(add_sub_imm(False, False, 1, SP, ADDR, 0))
    for k, reg in enumerate(REG):
        a.emit(_ctrl_ldr(reg, c.OFF_REGS + 8 * k))
    a.emit(_ctrl_ldr(BUDGET, c.OFF_BUDGET))
    a.emit(_ctrl_ldr(ADDR, c.OFF_START))
    a.emit(blr(ADDR))
    a.branch("b", cx.stop)


def stop_routine(cx: Ctx) -> None:
    """Store r0-r10, the event word (x9) and the budget, then branch to the sentinel."""
    a = cx.asm
    for k, reg in enumerate(REG):
        a.emit(_ctrl_str(reg, c.OFF_REGS + 8 * k))
    a.emit(_ctrl_str(EV, c.OFF_EVENT))
    a.emit(_ctrl_str(BUDGET, c.OFF_BUDGET))
    a.emit(mov_imm(1, ADDR, c.SENTINEL))
    a.emit(br(ADDR))


def _stop_with(cx: Ctx, code: int, pc: int) -> None:
    cx.asm.emit(mov_imm(0, EV, c.event(code, pc)))
    cx.asm.branch("b", cx.stop)


def trap(cx: Ctx, code: int, pc: int) -> None:
    """Stop with an event (falling off the end, an unsupported instruction)."""
    _stop_with(cx, code, pc)


def _fault(cx: Ctx, code: int, pc: int) -> Label:
    return cx.stub(("fault", code, pc), lambda: _stop_with(cx, code, pc))


def _add_const(cx: Ctx, sub: bool, flags: bool, sf: int, rd: int, rn: int, k: int) -> None:
    """rd = rn +/- k (k >= 0) with an immediate when it fits 12 bits, else through x11."""
    if k < 4096:
        cx.asm.emit(add_sub_imm(sub, flags, sf, rd, rn, k))
    elif k & 0xFFF == 0 and k >> 12 < 4096:
        cx.asm.emit(add_sub_imm(sub, flags, sf, rd, rn, k >> 12, lsl12=True))
    else:
        cx.asm.emit(mov_imm(sf, T1, k))
        cx.asm.emit(add_sub_reg(sub, flags, sf, rd, rn, T1))


def budget_check(cx: Ctx, count: int, first: int) -> None:
    """``subs x26, x26, #count; b.lo stub``: the stub undoes the subtraction and stops."""
    a = cx.asm

    def stub() -> None:
        _add_const(cx, False, False, 1, BUDGET, BUDGET, count)
        _stop_with(cx, c.EV_BUDGET, first)

    _add_const(cx, True, True, 1, BUDGET, BUDGET, count)
    a.branch("bcond", cx.stub(("budget", first), stub), LO)


@functools.cache
def _limit_test(k: int, write: bool, size: int) -> bytes:
    """``ldr x12, <limit>; cmp x11, x12`` (x11 = address - region start)."""
    return _ctrl_ldr(T2, c.region_limit(k, write, size)) + add_sub_reg(True, True, 1, ZR, T1, T2)


@functools.cache
def _region_test(k: int, write: bool, size: int) -> bytes:
    """x11 = x10 - start of region k, compared with its limit."""
    return (_ctrl_ldr(T1, c.region_start(k)) + add_sub_reg(True, False, 1, T1, ADDR, T1)
            + _limit_test(k, write, size))


def _address(cx: Ctx, base: int, off: int, size: int, access: str, pc: int) -> None:
    """x10 = base + off, checked against the region table (see x86_64._address): regions 0 and 1
    inline, the others by the shared search routine (BL, with x30 kept in x16)."""
    a = cx.asm
    _add_const(cx, off < 0, False, 1, ADDR, REG[base], abs(off))
    ok = Label("ok")
    for k in range(c.INLINE_REGIONS):
        a.emit(_region_test(k, access == "w", size))
        if access == "rw":
            nxt = Label("next")
            a.branch("bcond", nxt, HS)
            a.emit(_limit_test(k, True, size))
            a.branch("bcond", _fault(cx, c.EV_OOB_WRITE, pc), HS)
            a.branch("b", ok)
            a.bind(nxt)
        else:
            a.branch("bcond", ok, LO)
    a.emit(mov_reg(1, LINK_SAVE, LR))
    a.branch("bl", cx.stub(("search", access, size), lambda: _search(cx, access, size)))
    a.emit(mov_reg(1, LR, LINK_SAVE))
    if access == "rw":
        a.emit(add_sub_imm(True, True, 1, ZR, T1, 1))
        a.branch("bcond", _fault(cx, c.EV_OOB_READ, pc), EQ)
        a.branch("bcond", _fault(cx, c.EV_OOB_WRITE, pc), HI)
    else:
        a.branch("cbnz", _fault(cx, c.EV_OOB_READ if access == "r" else c.EV_OOB_WRITE, pc), (1, T1))
    a.bind(ok)


def _search(cx: Ctx, access: str, size: int) -> None:
    """The out-of-line part of the bounds check: walk the table from region 2 to its end (read
    at run time); x11 = 0 inside, 1 outside every region, 2 inside but not writable ("rw")."""
    a = cx.asm
    loop, inside, outside = Label("loop"), Label("inside"), Label("outside")
    a.emit(_ctrl_ldr(T2, c.OFF_TABLE_END))
    a.emit(mov_imm(1, T3, c.OFF_REGIONS + c.INLINE_REGIONS * c.REGION_STRIDE))
    a.bind(loop)
    a.emit(add_sub_reg(True, True, 1, ZR, T3, T2))
    a.branch("bcond", outside, HS)
    a.emit(ldr_reg(T1, CTRLB, T3))
    a.emit(add_sub_reg(True, False, 1, T1, ADDR, T1))
    a.emit(add_sub_imm(False, False, 1, T4, T3, c.limit_field(access == "w", size)))
    a.emit(ldr_reg(T4, CTRLB, T4))
    a.emit(add_sub_reg(True, True, 1, ZR, T1, T4))
    a.branch("bcond", inside, LO)
    a.emit(add_sub_imm(False, False, 1, T3, T3, c.REGION_STRIDE))
    a.branch("b", loop)
    a.bind(inside)
    if access == "rw":
        read_only = Label("read_only")
        a.emit(add_sub_imm(False, False, 1, T4, T3, c.limit_field(True, size)))
        a.emit(ldr_reg(T4, CTRLB, T4))
        a.emit(add_sub_reg(True, True, 1, ZR, T1, T4))
        a.branch("bcond", read_only, HS)
        a.emit(mov_imm(1, T1, 0) + ret())
        a.bind(read_only)
        a.emit(mov_imm(1, T1, 2) + ret())
    else:
        a.emit(mov_imm(1, T1, 0) + ret())
    a.bind(outside)
    a.emit(mov_imm(1, T1, 1) + ret())


# --- Lowerings: one per instruction family -------------------------------------------------------

_LOGIC = {AluOp.BPF_OR: ORR_, AluOp.BPF_AND: AND_, AluOp.BPF_XOR: EOR_}
_SHIFTV = {AluOp.BPF_LSH: LSLV, AluOp.BPF_RSH: LSRV, AluOp.BPF_ARSH: ASRV}


def _imm_value(i: Insn, w: int) -> int:
    """The immediate as BPF uses it: sign-extended (ALU64/JMP) or its low 32 bits (ALU/JMP32)."""
    return i.imm & (c.M64 if w == 64 else c.M32)


def _alu(cx: Ctx, i: Insn, pc: int) -> None:
    """ALU / ALU64 (RFC 9669 §4.1); W-register forms zero-extend by themselves."""
    a, op = cx.asm, i.op
    w, d = op.width, REG[i.dst]
    sf = 1 if w == 64 else 0
    alu = op.alu
    reg = op.source != BPF_K
    k = _imm_value(i, w)
    if alu is AluOp.BPF_MOV:
        if reg:
            if w == 32 or i.dst != i.src:
                a.emit(mov_reg(sf, d, REG[i.src]))
        else:
            a.emit(mov_imm(sf, d, k))
        return
    if alu in (AluOp.BPF_ADD, AluOp.BPF_SUB):
        sub = alu is AluOp.BPF_SUB
        if reg:
            a.emit(add_sub_reg(sub, False, sf, d, d, REG[i.src]))
        elif k < 4096 or (k & 0xFFF == 0 and k >> 12 < 4096):
            _add_const(cx, sub, False, sf, d, d, k)
        elif (-k) & ((1 << w) - 1) < 4096:
            _add_const(cx, not sub, False, sf, d, d, (-k) & ((1 << w) - 1))
        else:
            _add_const(cx, sub, False, sf, d, d, k)
        return
    if alu in _LOGIC:
        fields = None if reg else bitmask_imm(k, w)
        if fields is not None:
            a.emit(logical_imm(_LOGIC[alu], sf, d, d, fields))
        else:
            src = REG[i.src] if reg else T1
            if not reg:
                a.emit(mov_imm(sf, T1, k))
            a.emit(logical_reg(_LOGIC[alu], sf, d, d, src))
        return
    if alu in _SHIFTV:
        if reg:
            a.emit(dp2(_SHIFTV[alu], sf, d, d, REG[i.src]))
        else:
            n = i.imm & (w - 1)
            if alu is AluOp.BPF_LSH:
                a.emit(bitfield(UBFM, sf, d, d, (-n) % w, w - 1 - n))
            else:
                a.emit(bitfield(SBFM if alu is AluOp.BPF_ARSH else UBFM, sf, d, d, n, w - 1))
        return
    src = REG[i.src]
    if not reg:
        a.emit(mov_imm(sf, T1, k))
        src = T1
    if alu is AluOp.BPF_MUL:
        a.emit(madd_msub(False, sf, d, d, src, ZR))
    elif alu is AluOp.BPF_DIV:
        a.emit(dp2(SDIV if op.signed else UDIV, sf, d, d, src))
    elif alu is AluOp.BPF_MOD:
        # x % y = x - (x / y) * y; UDIV/SDIV give 0 for y = 0 (so x % 0 = x) and SDIV wraps for
        # INT_MIN / -1 (so INT_MIN % -1 = 0), exactly the BPF rules (Linux emits the same).
        a.emit(dp2(SDIV if op.signed else UDIV, sf, T2, d, src))
        a.emit(madd_msub(True, sf, d, T2, src, d))
    else:  # pragma: no cover - every ALU row is handled above
        raise c.CannotLower(f"{ARCH}: ALU op {alu}")


def _neg(cx: Ctx, i: Insn, pc: int) -> None:
    sf = 1 if i.op.width == 64 else 0
    cx.asm.emit(add_sub_reg(True, False, sf, REG[i.dst], ZR, REG[i.dst]))


def _movsx(cx: Ctx, i: Insn, pc: int) -> None:
    """MOVSX: SXTB/SXTH/SXTW (SBFM #0, #bits-1)."""
    sf = 1 if i.op.width == 64 else 0
    cx.asm.emit(bitfield(SBFM, sf, REG[i.dst], REG[i.src], 0, i.op.size - 1))


def _end(cx: Ctx, i: Insn, pc: int) -> None:
    """Byte swaps (RFC 9669 §4.2): REV16 + UXTH, REV (32), REV (64); ``le`` only truncates."""
    a, d, bits = cx.asm, REG[i.dst], i.op.size
    swap = not (i.op.cls is Cls.BPF_ALU and i.op.source == BPF_K)
    if bits == 16:
        if swap:
            a.emit(rev(REV16, d, d))
        a.emit(bitfield(UBFM, 0, d, d, 0, 15))
    elif bits == 32:
        a.emit(rev(REV32, d, d) if swap else mov_reg(0, d, d))
    elif swap:
        a.emit(rev(REV64, d, d))


_SIZE_LOG = {1: 0, 2: 1, 4: 2, 8: 3}


def _if_aligned(cx: Ctx, pc: int, size: int, fast: Callable[[], None], slow: Callable[[], None]) -> None:
    """``fast`` when x10 is a multiple of ``size``, else ``slow`` (out of line).

    Load-acquire/store-release, exclusives and LSE atomics need natural alignment on AArch64
    (an alignment fault otherwise; unicorn raises for the atomics). Linux's verifier rejects
    misaligned atomics; the interpreter executes them, so the JIT falls back to plain loads and
    stores for a misaligned address: equivalent, since a run is single-threaded."""
    a = cx.asm
    if size == 1:
        fast()
        return
    back = Label("aligned")

    def out_of_line() -> None:
        slow()
        a.branch("b", back)

    fields = bitmask_imm(size - 1, 64)
    assert fields is not None
    a.emit(logical_imm(ANDS_, 1, ZR, ADDR, fields))
    a.branch("bcond", cx.stub(("unaligned", pc), out_of_line), NE)
    fast()
    a.bind(back)


def _load(cx: Ctx, i: Insn, pc: int) -> None:
    """LDX MEM (LDRB/LDRH/LDR), MEMSX (LDRSB/LDRSH/LDRSW) and load-acquire (LDAR*)."""
    size, kind = i.op.size, i.op.kind
    done = _converted_field(cx, i, pc) if cx.converted(i) else None
    _address(cx, i.src, i.off, size, "r", pc)
    lg = _SIZE_LOG[size]
    if kind is Kind.LOAD_ACQ:
        _if_aligned(cx, pc, size, lambda: cx.asm.emit(ldar_stlr(True, lg, REG[i.dst], ADDR)),
                    lambda: cx.asm.emit(ldst(lg, 1, REG[i.dst], ADDR)))
    else:
        cx.asm.emit(ldst(lg, 2 if kind is Kind.LOADSX else 1, REG[i.dst], ADDR))
    if done is not None:
        cx.asm.bind(done)


def _converted_field(cx: Ctx, i: Insn, pc: int) -> Label:
    """A 4-byte load that may hit a converted context field: its 64-bit pointer when the address
    is one of the run's pointer fields, else the ordinary load (see x86_64._converted_field)."""
    a, done = cx.asm, Label("converted")
    _add_const(cx, i.off < 0, False, 1, ADDR, REG[i.src], abs(i.off))
    for k, (addr, value) in enumerate(sorted(cx.ctx_pointers.items())):
        def hit(value: int = value) -> None:
            a.emit(mov_imm(1, REG[i.dst], value))
            a.branch("b", done)

        a.emit(mov_imm(1, T1, addr))
        a.emit(add_sub_reg(True, True, 1, ZR, ADDR, T1))
        a.branch("bcond", cx.stub(("ctx_pointer", pc, k), hit), EQ)
    return done


def _store_imm(cx: Ctx, i: Insn, pc: int) -> None:
    size = i.op.size
    _address(cx, i.dst, i.off, size, "w", pc)
    cx.asm.emit(mov_imm(1, T1, i.imm))
    cx.asm.emit(ldst(_SIZE_LOG[size], 0, T1, ADDR))


def _store_reg(cx: Ctx, i: Insn, pc: int) -> None:
    """STX MEM (STRB/STRH/STR) and store-release (STLR*)."""
    size = i.op.size
    _address(cx, i.dst, i.off, size, "w", pc)
    lg, s = _SIZE_LOG[size], REG[i.src]
    if i.op.kind is Kind.STORE_REL:
        _if_aligned(cx, pc, size, lambda: cx.asm.emit(ldar_stlr(False, lg, s, ADDR)),
                    lambda: cx.asm.emit(ldst(lg, 0, s, ADDR)))
    else:
        cx.asm.emit(ldst(lg, 0, s, ADDR))


_LSE = {int(AluOp.BPF_ADD): LSE_ADD, int(AluOp.BPF_OR): LSE_SET, int(AluOp.BPF_XOR): LSE_EOR,
        int(AluOp.BPF_AND): LSE_CLR}
_LLSC = {int(AluOp.BPF_ADD): None, int(AluOp.BPF_OR): ORR_, int(AluOp.BPF_XOR): EOR_,
         int(AluOp.BPF_AND): AND_}
_CMPXCHG, _XCHG = BPF_CMPXCHG & ~BPF_FETCH, BPF_XCHG & ~BPF_FETCH


def _atomic(cx: Ctx, i: Insn, pc: int) -> None:
    """Atomics (RFC 9669 §5.3): LSE instructions, or LDAXR/STLXR loops with ``lse=False``; a
    misaligned address takes the plain path. The old value goes to src (cmpxchg: r0)."""
    _address(cx, i.dst, i.off, i.op.size, "rw", pc)
    fast = _atomic_lse if cx.options.get("lse", True) else _atomic_llsc
    _if_aligned(cx, pc, i.op.size, lambda: fast(cx, i), lambda: _atomic_plain(cx, i))


def _atomic_lse(cx: Ctx, i: Insn) -> None:
    """CASAL, SWPAL, LD<op>AL for fetch forms, ST<op> otherwise (Linux emit_lse_atomic)."""
    a, op, atomic = cx.asm, i.op, i.op.atomic
    (lg, sf), s = (3, 1) if op.width == 64 else (2, 0), REG[i.src]
    if atomic == _CMPXCHG:
        a.emit(casal(lg, REG[0], s, ADDR))
    elif atomic == _XCHG:
        a.emit(lse(LSE_SWP, lg, s, s, ADDR))
    else:
        operand = s
        if atomic == int(AluOp.BPF_AND):  # LDCLR clears the bits set in rs
            a.emit(logical_reg(ORR_, sf, T1, ZR, s, invert=True))
            operand = T1
        a.emit(lse(_LSE[atomic], lg, operand, s if op.fetch else ZR, ADDR, ordered=op.fetch))  # type: ignore[index]


def _atomic_llsc(cx: Ctx, i: Insn) -> None:
    """LDAXR / op / STLXR / CBNZ retry, DMB ISH after fetch forms (Linux emit_ll_sc_atomic)."""
    a, op, atomic = cx.asm, i.op, i.op.atomic
    (lg, sf), s = (3, 1) if op.width == 64 else (2, 0), REG[i.src]
    retry = a.bind(Label("retry"))
    a.emit(ldaxr(lg, T1, ADDR))
    if atomic == _CMPXCHG:
        fail = Label("fail")
        a.emit(add_sub_reg(True, True, sf, ZR, T1, REG[0]))
        a.branch("bcond", fail, NE)
        a.emit(stlxr(lg, T3, s, ADDR))
        a.branch("cbnz", retry, (0, T3))
        a.bind(fail)
        a.emit(dmb_ish())
        a.emit(mov_reg(sf, REG[0], T1))
        return
    if atomic == _XCHG:
        a.emit(stlxr(lg, T3, s, ADDR))
    else:
        _combine(cx, atomic, sf, T2, T1, s)
        a.emit(stlxr(lg, T3, T2, ADDR))
    a.branch("cbnz", retry, (0, T3))
    if op.fetch:
        a.emit(dmb_ish())
        a.emit(mov_reg(sf, s, T1))


def _combine(cx: Ctx, atomic: int | None, sf: int, rd: int, old: int, s: int) -> None:
    """rd = old <op> s for the read-modify-write atomics."""
    assert atomic is not None
    logic = _LLSC[atomic]
    if logic is None:
        cx.asm.emit(add_sub_reg(False, False, sf, rd, old, s))
    else:
        cx.asm.emit(logical_reg(logic, sf, rd, old, s))


def _atomic_plain(cx: Ctx, i: Insn) -> None:
    """The same read-modify-write with plain LDR/STR, for a misaligned address."""
    a, op, atomic = cx.asm, i.op, i.op.atomic
    (lg, sf), s = (3, 1) if op.width == 64 else (2, 0), REG[i.src]
    a.emit(ldst(lg, 1, T1, ADDR))
    if atomic == _CMPXCHG:
        skip = Label("differs")
        a.emit(add_sub_reg(True, True, sf, ZR, T1, REG[0]))
        a.branch("bcond", skip, NE)
        a.emit(ldst(lg, 0, s, ADDR))
        a.bind(skip)
        a.emit(mov_reg(sf, REG[0], T1))
        return
    if atomic == _XCHG:
        a.emit(ldst(lg, 0, s, ADDR))
    else:
        _combine(cx, atomic, sf, T2, T1, s)
        a.emit(ldst(lg, 0, T2, ADDR))
    if op.fetch:
        a.emit(mov_reg(sf, s, T1))


def _lddw(cx: Ctx, i: Insn, pc: int) -> None:
    """64-bit immediate (RFC 9669 §5.4); pseudo sources are resolved before translation."""
    value, why = c.lddw_value(i, pc, cx.maps)
    if value is None:
        cx.unsupported[pc] = why
        trap(cx, c.EV_UNSUPPORTED, pc)
    else:
        cx.asm.emit(mov_imm(1, REG[i.dst], value))


def _packet_load(cx: Ctx, i: Insn, pc: int) -> None:
    """LD_ABS / LD_IND (RFC 9669 §5.5): big-endian load from "mem" into r0; out of bounds ends
    the program with r0 = 0."""
    a, size = cx.asm, i.op.size
    if i.op.kind is Kind.LD_IND:
        a.emit(bitfield(SBFM, 1, T1, REG[i.src], 0, 31))
        a.emit(mov_imm(1, T2, i.imm))
        a.emit(add_sub_reg(False, False, 1, T1, T1, T2))
    else:
        a.emit(mov_imm(1, T1, i.imm))

    def out_of_bounds() -> None:
        a.emit(mov_imm(1, REG[0], 0))
        _stop_with(cx, c.EV_EXIT, pc)

    a.emit(_ctrl_ldr(T2, c.pkt_limit(size)))
    a.emit(add_sub_reg(True, True, 1, ZR, T1, T2))
    a.branch("bcond", cx.stub(("pkt", pc), out_of_bounds), HS)
    a.emit(_ctrl_ldr(T2, c.OFF_PKT_START))
    a.emit(add_sub_reg(False, False, 1, T1, T1, T2))
    a.emit(ldst(_SIZE_LOG[size], 1, REG[0], T1))
    if size == 2:
        a.emit(rev(REV16, REG[0], REG[0]))
    elif size == 4:
        a.emit(rev(REV32, REG[0], REG[0]))


def _ja(cx: Ctx, i: Insn, pc: int) -> None:
    target = jump_target(i, pc)
    assert target is not None
    cx.asm.branch("b", cx.label(target))


_COND = {JmpOp.BPF_JEQ: EQ, JmpOp.BPF_JNE: NE, JmpOp.BPF_JSET: NE,
         JmpOp.BPF_JGT: HI, JmpOp.BPF_JGE: HS, JmpOp.BPF_JLT: LO, JmpOp.BPF_JLE: LS,
         JmpOp.BPF_JSGT: GT, JmpOp.BPF_JSGE: GE, JmpOp.BPF_JSLT: LT, JmpOp.BPF_JSLE: LE}


def _jcond(cx: Ctx, i: Insn, pc: int) -> None:
    """Conditional jumps (RFC 9669 §4.3): CMP/CMN/TST on X or W registers, then B.cond. CMN
    with -imm sets the same flags as CMP with imm for imm != 0 (carry: x >= y either way)."""
    a, op = cx.asm, i.op
    w, d = op.width, REG[i.dst]
    sf = 1 if w == 64 else 0
    mask = (1 << w) - 1
    jset = op.jmp is JmpOp.BPF_JSET
    if op.source != BPF_K:
        rhs = REG[i.src]
        a.emit(logical_reg(ANDS_, sf, ZR, d, rhs) if jset else add_sub_reg(True, True, sf, ZR, d, rhs))
    else:
        k = _imm_value(i, w)
        fields = bitmask_imm(k, w) if jset else None
        if fields is not None:
            a.emit(logical_imm(ANDS_, sf, ZR, d, fields))
        elif not jset and k < 4096:
            a.emit(add_sub_imm(True, True, sf, ZR, d, k))
        elif not jset and 0 < (-k) & mask < 4096:
            a.emit(add_sub_imm(False, True, sf, ZR, d, (-k) & mask))
        else:
            a.emit(mov_imm(sf, T1, k))
            a.emit(logical_reg(ANDS_, sf, ZR, d, T1) if jset else add_sub_reg(True, True, sf, ZR, d, T1))
    a.branch("bcond", cx.label(pc + 1 + i.off), _COND[op.jmp])  # type: ignore[index]


def _may_goto(cx: Ctx, i: Insn, pc: int) -> None:
    """may_goto: jump once the per-run counter is 0, else count down."""
    a = cx.asm
    a.emit(_ctrl_ldr(T1, c.OFF_MAY_GOTO))
    a.branch("cbz", cx.label(pc + 1 + i.off), (1, T1))
    a.emit(add_sub_imm(True, False, 1, T1, T1, 1))
    a.emit(_ctrl_str(T1, c.OFF_MAY_GOTO))


def _call_helper(cx: Ctx, i: Insn, pc: int) -> None:
    """Helper call: stop with EV_HELPER; Python runs the helper and resumes at the reload.
    ``bpf_tail_call`` first tries the native tail call (:func:`_tail_call`)."""
    a = cx.asm
    if i.op.kind is Kind.CALL and i.imm == BPF_FUNC_tail_call:
        slow = Label("tail_call_slow")
        _tail_call(cx, slow)
        a.bind(slow)
    _stop_with(cx, c.EV_HELPER, pc)
    cx.resume[pc] = a.bind(Label(f"resume{pc}"))
    for k in range(6):
        a.emit(_ctrl_ldr(REG[k], c.OFF_REGS + 8 * k))


def _tail_call(cx: Ctx, slow: Label) -> None:
    """bpf_tail_call taken natively (see x86_64._tail_call; Linux arm64 ``emit_bpf_tail_call``
    does the same checks): prog array lookup in TAILTAB, ``index < slots``, count, filled slot;
    then count, reset the call depth, log, clobber r0 and r2-r5, BR to the target's first block
    in the same frame."""
    a = cx.asm
    loop, found = Label("tail_call_loop"), Label("tail_call_found")
    a.emit(mov_imm(1, T3, c.TAILTAB + c.TT_ARRAYS))
    a.bind(loop)
    a.emit(ldst(3, 1, T1, T3, 0))  # handle; 0 ends the table
    a.branch("cbz", slow, (1, T1))
    a.emit(add_sub_reg(True, True, 1, ZR, T1, REG[2]))
    a.branch("bcond", found, EQ)
    a.emit(add_sub_imm(False, False, 1, T3, T3, c.TT_ARRAY_STRIDE))
    a.branch("b", loop)
    a.bind(found)
    a.emit(mov_reg(0, T2, REG[3]))  # the u32 index
    a.emit(ldst(3, 1, T1, T3, 8))
    a.emit(add_sub_reg(True, True, 1, ZR, T2, T1))
    a.branch("bcond", slow, HS)
    a.emit(_ctrl_ldr(T1, c.OFF_TAIL_CNT))
    a.emit(add_sub_imm(True, True, 1, ZR, T1, c.MAX_TAIL_CALL_CNT))
    a.branch("bcond", slow, HS)
    a.emit(ldst(3, 1, T4, T3, 16))
    a.emit(bitfield(UBFM, 1, T2, T2, 61, 60))  # LSL #3
    a.emit(ldr_reg(ADDR, T4, T2))  # the target's code address
    a.branch("cbz", slow, (1, ADDR))
    a.emit(add_sub_imm(False, False, 1, T1, T1, 1))
    a.emit(_ctrl_str(T1, c.OFF_TAIL_CNT))
    a.emit(_ctrl_str(ZR, c.OFF_DEPTH))  # the target's calls count from this frame
    a.emit(mov_imm(1, T3, c.TAILTAB))
    a.emit(ldst(3, 1, T1, T3, c.TT_LOG_N))
    a.emit(mov_imm(1, T2, c.TT_LOG_STRIDE))
    a.emit(madd_msub(False, 1, T4, T1, T2, T3))
    for k in range(1, 6):
        a.emit(ldst(3, 0, REG[k], T4, c.TT_LOG + 8 * (k - 1)))
    a.emit(mov_imm(1, T2, 1))
    a.emit(ldst(3, 0, T2, T4, c.TT_LOG + 40))
    a.emit(add_sub_imm(False, False, 1, T1, T1, 1))
    a.emit(ldst(3, 0, T1, T3, c.TT_LOG_N))
    for k in (0, 2, 3, 4, 5):
        a.emit(mov_imm(1, REG[k], POISON[k]))
    a.emit(br(ADDR))


def _call_local(cx: Ctx, i: Insn, pc: int) -> None:
    """bpf-to-bpf call as BL: depth check (per program, see x86_64._call_local), r6-r9, r10,
    the link register and the depth saved with STP on the native stack, r10 one 512-byte frame
    lower; the return restores them."""
    a = cx.asm
    target = jump_target(i, pc)
    assert target is not None
    a.emit(_ctrl_ldr(T1, c.OFF_DEPTH))
    a.emit(add_sub_imm(True, True, 1, ZR, T1, 7))
    a.branch("bcond", _fault(cx, c.EV_CALL_DEPTH, pc), HS)
    a.emit(stp_pre(REG[6], REG[7], SP, -16))
    a.emit(stp_pre(REG[8], REG[9], SP, -16))
    a.emit(stp_pre(REG[10], LR, SP, -16))
    a.emit(stp_pre(T1, T1, SP, -16))
    a.emit(add_sub_imm(False, False, 1, T1, T1, 1))
    a.emit(_ctrl_str(T1, c.OFF_DEPTH))
    a.emit(add_sub_imm(True, False, 1, REG[10], REG[10], STACK_SIZE))
    a.branch("bl", cx.label(target))
    a.emit(ldp_post(T1, T2, SP, 16))
    a.emit(_ctrl_str(T1, c.OFF_DEPTH))
    a.emit(ldp_post(REG[10], LR, SP, 16))
    a.emit(ldp_post(REG[8], REG[9], SP, 16))
    a.emit(ldp_post(REG[6], REG[7], SP, 16))


def _exit(cx: Ctx, i: Insn, pc: int) -> None:
    """exit: RET; the event word in w9 matters only to the entry trampoline."""
    cx.asm.emit(mov_imm(0, EV, c.event(c.EV_EXIT, pc)))
    cx.asm.emit(ret())


def _unsupported(cx: Ctx, i: Insn, pc: int) -> None:
    """kfunc calls trap with fault:unsupported when reached, as in the interpreter."""
    cx.unsupported[pc] = f"{i.op.name} needs an environment this run does not have"
    trap(cx, c.EV_UNSUPPORTED, pc)


LOWERINGS: Mapping[Kind, Lowering] = {
    Kind.ALU: _alu,
    Kind.NEG: _neg,
    Kind.MOVSX: _movsx,
    Kind.END: _end,
    Kind.LOAD: _load,
    Kind.LOADSX: _load,
    Kind.LOAD_ACQ: _load,
    Kind.STORE_IMM: _store_imm,
    Kind.STORE_REG: _store_reg,
    Kind.STORE_REL: _store_reg,
    Kind.ATOMIC: _atomic,
    Kind.LDDW: _lddw,
    Kind.LD_ABS: _packet_load,
    Kind.LD_IND: _packet_load,
    Kind.JA: _ja,
    Kind.JCOND: _jcond,
    Kind.MAY_GOTO: _may_goto,
    Kind.CALL: _call_helper,
    Kind.CALLX: _call_helper,
    Kind.CALL_LOCAL: _call_local,
    Kind.CALL_KFUNC: _unsupported,
    Kind.EXIT: _exit,
}
