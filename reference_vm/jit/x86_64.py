"""BPF -> x86-64, machine code emitted byte by byte.

Every emitter below produces one instruction form and names its page in the Intel 64 and
IA-32 Architectures Software Developer's Manual, Volume 2 ("SDM"); the ModR/M, SIB and REX
rules are SDM vol. 2 §2.1 and §2.2.1.

Register mapping (Linux arch/x86/net/bpf_jit_comp.c ``reg2hex``)::

    BPF  r0  r1  r2  r3  r4  r5  r6  r7  r8  r9  r10
    x86  rax rdi rsi rdx rcx r8  rbx r13 r14 r15 rbp

    r10, r11  scratch (the address of a memory access is built in r11)
    r12       instructions left in the budget
    r9        scratch for div/mod, atomics (keeps rax), the region search and tail calls
    rsp       the native stack (return addresses, saved r6-r10), not the BPF stack

Every BPF memory access is checked against the run's region table in the control block
(:func:`_address`); x86's own address arithmetic (``lea``) wraps at 2^64 like the interpreter's.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Mapping

from ..helpers import BPF_FUNC_tail_call
from ..insn import Insn, jump_target
from ..interpreter import POISON
from ..isa import BPF_CMPXCHG, BPF_FETCH, BPF_K, BPF_XCHG, AluOp, Cls, JmpOp, Kind
from ..memory import STACK_SIZE
from . import common as c
from .common import Branch, Ctx, Label, Lowering

ARCH = "x86_64"


def options() -> dict[str, object]:
    """Backend options: none."""
    return {}


RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI = range(8)
R8, R9, R10, R11, R12, R13, R14, R15 = range(8, 16)
#: BPF register -> x86-64 register (Linux reg2hex).
REG = (RAX, RDI, RSI, RDX, RCX, R8, RBX, R13, R14, R15, RBP)
AUX, TMP, BUDGET, SAVE = R10, R11, R12, R9

# Condition codes (SDM vol. 2, Jcc; Appendix B.1.4.7 "Condition Test (tttn) Field").
CC_B, CC_AE, CC_E, CC_NE, CC_BE, CC_A = 0x2, 0x3, 0x4, 0x5, 0x6, 0x7
CC_L, CC_GE, CC_LE, CC_G = 0xC, 0xD, 0xE, 0xF

# ALU opcodes: "op r/m, r" (MR form) and the /digit of the immediate group 1 (80-83).
ADD, OR, AND, SUB, XOR, CMP = "add", "or", "and", "sub", "xor", "cmp"
_MR = {ADD: 0x01, OR: 0x09, AND: 0x21, SUB: 0x29, XOR: 0x31, CMP: 0x39}
_RM = {ADD: 0x03, OR: 0x0B, AND: 0x23, SUB: 0x2B, XOR: 0x33, CMP: 0x3B}
_GRP1 = {ADD: 0, OR: 1, AND: 4, SUB: 5, XOR: 6, CMP: 7}
# Shift group 2 /digit (SDM vol. 2, SAL/SAR/SHL/SHR and RCL/RCR/ROL/ROR).
ROL, ROR, SHL, SHR, SAR = 0, 1, 4, 5, 7


# --- Encoding helpers (SDM vol. 2 §2.1, §2.2.1) --------------------------------------------------

def _rex(w: bool, r: int, b: int, force: bool = False) -> bytes:
    """REX prefix 0100WRXB (§2.2.1); omitted when all bits are 0 unless ``force`` (a byte
    register sil/dil/bpl/spl is only addressable with a REX prefix, §2.2.1.2)."""
    v = 0x40 | (w << 3) | ((r >> 3) & 1) << 2 | ((b >> 3) & 1)
    return bytes([v]) if v != 0x40 or force else b""


def _mem(reg: int, base: int | None, disp: int) -> bytes:
    """ModR/M (+ SIB + displacement) for ``[base + disp]``, or ``[disp32]`` when ``base`` is None
    (§2.1.5, Tables 2-2 and 2-3): rsp/r12 as base need a SIB byte; rbp/r13 with mod 00 would
    mean rip/disp32, so they always carry a displacement."""
    r = (reg & 7) << 3
    if base is None:
        return bytes([r | 0b100, 0x25]) + struct.pack("<i", disp)
    sib = b"\x24" if base & 7 == RSP else b""
    if disp == 0 and base & 7 != RBP:
        return bytes([r | (base & 7)]) + sib
    if -128 <= disp < 128:
        return bytes([0x40 | r | (base & 7)]) + sib + struct.pack("<b", disp)
    return bytes([0x80 | r | (base & 7)]) + sib + struct.pack("<i", disp)


def _rr(opcode: bytes, reg: int, rm: int, w: bool, prefix: bytes = b"", byte_reg: int | None = None) -> bytes:
    """A register-direct form: prefix, REX, opcode, ModR/M with mod 11."""
    force = byte_reg is not None and 4 <= byte_reg <= 7
    return prefix + _rex(w, reg, rm, force) + opcode + bytes([0xC0 | (reg & 7) << 3 | (rm & 7)])


def _rm(opcode: bytes, reg: int, base: int | None, disp: int, w: bool, prefix: bytes = b"",
        byte_reg: int | None = None) -> bytes:
    """A memory form: prefix, REX, opcode, ModR/M (+SIB, displacement)."""
    force = byte_reg is not None and 4 <= byte_reg <= 7
    return prefix + _rex(w, reg, base or 0, force) + opcode + _mem(reg, base, disp)


def _fits8(v: int) -> bool:
    return -128 <= v < 128


def _s32(v: int) -> int:
    v &= c.M32
    return v - (1 << 32) if v >> 31 else v


# --- Emitters: one per instruction form --------------------------------------------------------

def alu_rr(op: str, w: int, dst: int, src: int) -> bytes:
    """ADD/OR/AND/SUB/XOR/CMP r/m, r: opcodes 01/09/21/29/31/39 /r (SDM vol. 2: ADD—Add,
    OR—Logical Inclusive OR, AND—Logical AND, SUB—Subtract, XOR—Logical Exclusive OR,
    CMP—Compare Two Operands; "MR" operand encoding)."""
    return _rr(bytes([_MR[op]]), src, dst, w == 64)


def alu_ri(op: str, w: int, dst: int, imm: int) -> bytes:
    """ADD/OR/AND/SUB/XOR/CMP r/m, imm: 83 /digit ib or 81 /digit id, immediate sign-extended
    to the operand size (SDM vol. 2: ADD—Add, "MI" encoding; same for OR, AND, SUB, XOR, CMP)."""
    imm = _s32(imm)
    if _fits8(imm):
        return _rr(b"\x83", _GRP1[op], dst, w == 64) + struct.pack("<b", imm)
    return _rr(b"\x81", _GRP1[op], dst, w == 64) + struct.pack("<i", imm)


def alu_rm(op: str, w: int, dst: int, base: int | None, disp: int) -> bytes:
    """ADD/SUB/CMP r, m (03 /r, 2B /r, 3B /r; SDM vol. 2: ADD—Add, SUB—Subtract, CMP—Compare Two
    Operands, "RM" encoding); ``base`` None is an absolute ``[disp32]``."""
    return _rm(bytes([_RM[op]]), dst, base, disp, w == 64)


def alu_abs_i8(op: str, w: int, addr: int, imm: int) -> bytes:
    """CMP/ADD/SUB m, imm8: 83 /digit ib on an absolute ``[disp32]`` (SDM vol. 2: CMP—Compare
    Two Operands, "MI" encoding)."""
    return _rm(b"\x83", _GRP1[op], None, addr, w == 64) + struct.pack("<b", imm)


def inc_dec_abs(dec: bool, w: int, addr: int) -> bytes:
    """INC/DEC m: FF /0, FF /1 on an absolute ``[disp32]`` (SDM vol. 2: INC—Increment by 1,
    DEC—Decrement by 1)."""
    return _rm(b"\xff", 1 if dec else 0, None, addr, w == 64)


def mov_rr(w: int, dst: int, src: int) -> bytes:
    """MOV r/m, r: 89 /r (SDM vol. 2: MOV—Move); a 32-bit move zero-extends into the upper
    half (§3.4.1.1, "32-bit operands generate a 32-bit result, zero-extended")."""
    return _rr(b"\x89", src, dst, w == 64)


def mov_ri32(dst: int, imm: int) -> bytes:
    """MOV r32, imm32: B8+rd id, zero-extended to 64 bits (SDM vol. 2: MOV—Move)."""
    return _rex(False, 0, dst) + bytes([0xB8 + (dst & 7)]) + struct.pack("<I", imm & c.M32)


def mov_ri_sx(dst: int, imm: int) -> bytes:
    """MOV r/m64, imm32: REX.W C7 /0 id, sign-extended (SDM vol. 2: MOV—Move)."""
    return _rr(b"\xc7", 0, dst, True) + struct.pack("<i", _s32(imm))


def mov_ri64(dst: int, imm: int) -> bytes:
    """MOV r64, imm64: REX.W B8+rd io (SDM vol. 2: MOV—Move)."""
    return _rex(True, 0, dst) + bytes([0xB8 + (dst & 7)]) + struct.pack("<Q", imm & c.M64)


def test_rr(w: int, a: int, b: int) -> bytes:
    """TEST r/m, r: 85 /r (SDM vol. 2: TEST—Logical Compare)."""
    return _rr(b"\x85", b, a, w == 64)


def test_ri(w: int, a: int, imm: int) -> bytes:
    """TEST r/m, imm32: F7 /0 id, sign-extended for 64 bits (SDM vol. 2: TEST—Logical Compare)."""
    return _rr(b"\xf7", 0, a, w == 64) + struct.pack("<i", _s32(imm))


def imul_rr(w: int, dst: int, src: int) -> bytes:
    """IMUL r, r/m: 0F AF /r (SDM vol. 2: IMUL—Signed Multiply; the low half is the same for
    unsigned operands)."""
    return _rr(b"\x0f\xaf", dst, src, w == 64)


def imul_rri(w: int, dst: int, src: int, imm: int) -> bytes:
    """IMUL r, r/m, imm: 6B /r ib or 69 /r id (SDM vol. 2: IMUL—Signed Multiply)."""
    imm = _s32(imm)
    if _fits8(imm):
        return _rr(b"\x6b", dst, src, w == 64) + struct.pack("<b", imm)
    return _rr(b"\x69", dst, src, w == 64) + struct.pack("<i", imm)


def shift_ri(op: int, w: int, dst: int, n: int) -> bytes:
    """SHL/SHR/SAR/ROL/ROR r/m, imm8: C1 /digit ib (SDM vol. 2: SAL/SAR/SHL/SHR—Shift,
    RCL/RCR/ROL/ROR—Rotate)."""
    return _rr(b"\xc1", op, dst, w == 64) + bytes([n & 0xFF])


def shift_cl(op: int, w: int, dst: int) -> bytes:
    """SHL/SHR/SAR r/m, CL: D3 /digit; the count is masked to 5 (6 with REX.W) bits
    (SDM vol. 2: SAL/SAR/SHL/SHR—Shift)."""
    return _rr(b"\xd3", op, dst, w == 64)


def rol16(dst: int, n: int) -> bytes:
    """ROL r/m16, imm8: 66 C1 /0 ib (SDM vol. 2: RCL/RCR/ROL/ROR—Rotate); only the low 16 bits
    change."""
    return _rr(b"\xc1", ROL, dst, False, prefix=b"\x66") + bytes([n])


def neg(w: int, dst: int) -> bytes:
    """NEG r/m: F7 /3 (SDM vol. 2: NEG—Two's Complement Negation)."""
    return _rr(b"\xf7", 3, dst, w == 64)


def div(signed: bool, w: int, src: int) -> bytes:
    """DIV/IDIV r/m: F7 /6, F7 /7; rdx:rax / src -> quotient rax, remainder rdx (SDM vol. 2:
    DIV—Unsigned Divide, IDIV—Signed Divide)."""
    return _rr(b"\xf7", 7 if signed else 6, src, w == 64)


def cdq_cqo(w: int) -> bytes:
    """CDQ / CQO: 99 / REX.W 99, sign-extend eax/rax into edx/rdx (SDM vol. 2: CWD/CDQ/CQO)."""
    return b"\x48\x99" if w == 64 else b"\x99"


def movzx_rr(dst: int, src: int, bits: int) -> bytes:
    """MOVZX r32, r/m8 | r/m16: 0F B6 /r, 0F B7 /r (SDM vol. 2: MOVZX—Move with Zero-Extend)."""
    op = b"\x0f\xb6" if bits == 8 else b"\x0f\xb7"
    return _rr(op, dst, src, False, byte_reg=src if bits == 8 else None)


def movsx_rr(w: int, dst: int, src: int, bits: int) -> bytes:
    """MOVSX r, r/m8 | r/m16: 0F BE /r, 0F BF /r; MOVSXD r64, r/m32: REX.W 63 /r (SDM vol. 2:
    MOVSX/MOVSXD—Move with Sign-Extension)."""
    if bits == 32:
        return _rr(b"\x63", dst, src, True)
    op = b"\x0f\xbe" if bits == 8 else b"\x0f\xbf"
    return _rr(op, dst, src, w == 64, byte_reg=src if bits == 8 else None)


def bswap(w: int, reg: int) -> bytes:
    """BSWAP r32 | r64: 0F C8+rd (SDM vol. 2: BSWAP—Byte Swap); the 32-bit form zero-extends."""
    return _rex(w == 64, 0, reg) + bytes([0x0F, 0xC8 + (reg & 7)])


def lea(dst: int, base: int, disp: int) -> bytes:
    """LEA r64, m: REX.W 8D /r (SDM vol. 2: LEA—Load Effective Address); wraps at 2^64."""
    return _rm(b"\x8d", dst, base, disp, True)


def load(size: int, dst: int, base: int | None, disp: int, signed: bool = False) -> bytes:
    """Loads: MOVZX r32, m8|m16 (0F B6, 0F B7), MOV r32|r64, m (8B /r), MOVSX r64, m8|m16
    (REX.W 0F BE, 0F BF), MOVSXD r64, m32 (REX.W 63) (SDM vol. 2: MOV, MOVZX, MOVSX/MOVSXD)."""
    if signed:
        op = {1: b"\x0f\xbe", 2: b"\x0f\xbf", 4: b"\x63"}[size]
        return _rm(op, dst, base, disp, True)
    if size in (1, 2):
        return _rm(b"\x0f\xb6" if size == 1 else b"\x0f\xb7", dst, base, disp, False)
    return _rm(b"\x8b", dst, base, disp, size == 8)


def store(size: int, base: int | None, disp: int, src: int) -> bytes:
    """MOV m8|m16|m32|m64, r: 88 /r, 66 89 /r, 89 /r, REX.W 89 /r (SDM vol. 2: MOV—Move); a
    byte store from sil/dil/bpl/spl needs a REX prefix."""
    if size == 1:
        return _rm(b"\x88", src, base, disp, False, byte_reg=src)
    return _rm(b"\x89", src, base, disp, size == 8, prefix=b"\x66" if size == 2 else b"")


def store_imm(size: int, base: int, disp: int, imm: int) -> bytes:
    """MOV m, imm: C6 /0 ib, 66 C7 /0 iw, C7 /0 id, REX.W C7 /0 id (sign-extended) (SDM vol. 2:
    MOV—Move)."""
    if size == 1:
        return _rm(b"\xc6", 0, base, disp, False) + struct.pack("<B", imm & 0xFF)
    if size == 2:
        return _rm(b"\xc7", 0, base, disp, False, prefix=b"\x66") + struct.pack("<H", imm & 0xFFFF)
    return _rm(b"\xc7", 0, base, disp, size == 8) + struct.pack("<i", _s32(imm))


def lock_alu(op: str, w: int, base: int, src: int) -> bytes:
    """LOCK ADD/OR/AND/XOR m, r: F0 + 01/09/21/31 /r (SDM vol. 2: LOCK—Assert LOCK# Signal
    Prefix; ADD, OR, AND, XOR)."""
    return _rm(bytes([_MR[op]]), src, base, 0, w == 64, prefix=b"\xf0")


def lock_xadd(w: int, base: int, src: int) -> bytes:
    """LOCK XADD m, r: F0 0F C1 /r; src <- old value (SDM vol. 2: XADD—Exchange and Add)."""
    return _rm(b"\x0f\xc1", src, base, 0, w == 64, prefix=b"\xf0")


def xchg(w: int, base: int, src: int) -> bytes:
    """XCHG m, r: 87 /r, locked implicitly (SDM vol. 2: XCHG—Exchange Register/Memory)."""
    return _rm(b"\x87", src, base, 0, w == 64)


def lock_cmpxchg(w: int, base: int, src: int) -> bytes:
    """LOCK CMPXCHG m, r: F0 0F B1 /r; compares rax, loads rax on mismatch (SDM vol. 2:
    CMPXCHG—Compare and Exchange)."""
    return _rm(b"\x0f\xb1", src, base, 0, w == 64, prefix=b"\xf0")


def push(reg: int) -> bytes:
    """PUSH r64: 50+rd (SDM vol. 2: PUSH—Push Word, Doubleword, or Quadword Onto the Stack)."""
    return _rex(False, 0, reg) + bytes([0x50 + (reg & 7)])


def pop(reg: int) -> bytes:
    """POP r64: 58+rd (SDM vol. 2: POP—Pop a Value From the Stack)."""
    return _rex(False, 0, reg) + bytes([0x58 + (reg & 7)])


def ret() -> bytes:
    """RET (near): C3 (SDM vol. 2: RET—Return From Procedure)."""
    return b"\xc3"


def jmp_r(reg: int) -> bytes:
    """JMP r/m64: FF /4 (SDM vol. 2: JMP—Jump)."""
    return _rr(b"\xff", 4, reg, False)


def call_r(reg: int) -> bytes:
    """CALL r/m64: FF /2 (SDM vol. 2: CALL—Call Procedure)."""
    return _rr(b"\xff", 2, reg, False)


def jcc(cc: int, delta: int, long: bool) -> bytes:
    """Jcc rel8: 70+cc cb; Jcc rel32: 0F 80+cc cd (SDM vol. 2: Jcc—Jump if Condition Is Met).
    ``delta`` is measured from the start of the instruction."""
    if long:
        return bytes([0x0F, 0x80 | cc]) + struct.pack("<i", delta - 6)
    return bytes([0x70 | cc]) + struct.pack("<b", delta - 2)


def jmp(delta: int, long: bool) -> bytes:
    """JMP rel8: EB cb; JMP rel32: E9 cd (SDM vol. 2: JMP—Jump)."""
    if long:
        return b"\xe9" + struct.pack("<i", delta - 5)
    return b"\xeb" + struct.pack("<b", delta - 2)


def call(delta: int) -> bytes:
    """CALL rel32: E8 cd (SDM vol. 2: CALL—Call Procedure)."""
    return b"\xe8" + struct.pack("<i", delta - 5)


class _Branches:
    """Branch relaxation: Jcc/JMP rel8 when the target is within -128..127 bytes of the next
    instruction, rel32 otherwise; CALL is always rel32."""

    _SHORT = {"jcc": 2, "jmp": 2, "call": 5}
    _LONG = {"jcc": 6, "jmp": 5, "call": 5}

    def size(self, br: Branch) -> int:
        return (self._LONG if br.long else self._SHORT)[br.kind]

    def fits(self, br: Branch, delta: int) -> bool:
        return br.kind == "call" or _fits8(delta - 2)

    def encode(self, br: Branch, delta: int) -> bytes:
        if br.kind == "jcc":
            return jcc(br.arg, delta, br.long)
        if br.kind == "jmp":
            return jmp(delta, br.long)
        return call(delta)


BRANCHES = _Branches()


# --- Runtime glue: entry, stop, budget, traps --------------------------------------------------

def _abs(off: int) -> int:
    return c.CTRL + off


def entry(cx: Ctx) -> None:
    """Entry trampoline: native stack, r0-r10 and the budget from the control block, call the
    entry program (its address is at OFF_START); the outermost ``exit`` returns here with its
    event word in r11."""
    a = cx.asm
    a.emit(mov_ri_sx(RSP, c.HOST_STACK_TOP))
    for k, reg in enumerate(REG):
        a.emit(load(8, reg, None, _abs(c.OFF_REGS + 8 * k)))
    a.emit(load(8, BUDGET, None, _abs(c.OFF_BUDGET)))
    a.emit(load(8, TMP, None, _abs(c.OFF_START)))
    a.emit(call_r(TMP))
    a.branch("jmp", cx.stop)


def stop_routine(cx: Ctx) -> None:
    """Store r0-r10, the event word (r11) and the budget, then jump to the sentinel."""
    a = cx.asm
    for k, reg in enumerate(REG):
        a.emit(store(8, None, _abs(c.OFF_REGS + 8 * k), reg))
    a.emit(store(8, None, _abs(c.OFF_EVENT), TMP))
    a.emit(store(8, None, _abs(c.OFF_BUDGET), BUDGET))
    a.emit(mov_ri32(TMP, c.SENTINEL))
    a.emit(jmp_r(TMP))


def _stop_with(cx: Ctx, code: int, pc: int) -> None:
    cx.asm.emit(mov_ri32(TMP, c.event(code, pc)))
    cx.asm.branch("jmp", cx.stop)


def trap(cx: Ctx, code: int, pc: int) -> None:
    """Stop with an event (falling off the end, an unsupported instruction)."""
    _stop_with(cx, code, pc)


def _fault(cx: Ctx, code: int, pc: int) -> Label:
    return cx.stub(("fault", code, pc), lambda: _stop_with(cx, code, pc))


def budget_check(cx: Ctx, count: int, first: int) -> None:
    """``sub r12, count; jb stub``: the stub undoes the subtraction and stops with EV_BUDGET."""
    a = cx.asm

    def stub() -> None:
        a.emit(alu_ri(ADD, 64, BUDGET, count))
        _stop_with(cx, c.EV_BUDGET, first)

    a.emit(alu_ri(SUB, 64, BUDGET, count))
    a.branch("jcc", cx.stub(("budget", first), stub), CC_B)


@functools.cache
def _region_test(k: int, write: bool, size: int) -> bytes:
    """``mov r10, r11; sub r10, [start]; cmp r10, [limit]`` for region ``k``."""
    return (mov_rr(64, AUX, TMP) + alu_rm(SUB, 64, AUX, None, _abs(c.region_start(k)))
            + alu_rm(CMP, 64, AUX, None, _abs(c.region_limit(k, write, size))))


def _address(cx: Ctx, base: int, off: int, size: int, access: str, pc: int) -> None:
    """r11 = base + off, checked against the region table (``access``: "r", "w", or "rw" = read
    then write, as the interpreter's atomics load before they store): regions 0 and 1 inline,
    the others by the shared search routine."""
    a = cx.asm
    a.emit(lea(TMP, REG[base], off))
    ok = Label("ok")
    for k in range(c.INLINE_REGIONS):
        a.emit(_region_test(k, access == "w", size))
        if access == "rw":
            nxt = Label("next")
            a.branch("jcc", nxt, CC_AE)
            a.emit(alu_rm(CMP, 64, AUX, None, _abs(c.region_limit(k, True, size))))
            a.branch("jcc", _fault(cx, c.EV_OOB_WRITE, pc), CC_AE)
            a.branch("jmp", ok)
            a.bind(nxt)
        else:
            a.branch("jcc", ok, CC_B)
    a.branch("call", cx.stub(("search", access, size), lambda: _search(cx, access, size)))
    if access == "rw":
        a.emit(alu_ri(CMP, 32, AUX, 1))
        a.branch("jcc", _fault(cx, c.EV_OOB_READ, pc), CC_E)
        a.branch("jcc", _fault(cx, c.EV_OOB_WRITE, pc), CC_A)
    else:
        a.emit(test_rr(32, AUX, AUX))
        a.branch("jcc", _fault(cx, c.EV_OOB_READ if access == "r" else c.EV_OOB_WRITE, pc), CC_NE)
    a.bind(ok)


def _search(cx: Ctx, access: str, size: int) -> None:
    """The out-of-line part of the bounds check: walk the table from region 2 to its end (read
    at run time); r10d = 0 inside, 1 outside every region, 2 inside but not writable ("rw")."""
    a = cx.asm
    loop, inside, outside = Label("loop"), Label("inside"), Label("outside")
    a.emit(mov_ri32(SAVE, c.OFF_REGIONS + c.INLINE_REGIONS * c.REGION_STRIDE))
    a.bind(loop)
    a.emit(alu_rm(CMP, 32, SAVE, None, _abs(c.OFF_TABLE_END)))
    a.branch("jcc", outside, CC_AE)
    a.emit(mov_rr(64, AUX, TMP))
    a.emit(alu_rm(SUB, 64, AUX, SAVE, c.CTRL))
    a.emit(alu_rm(CMP, 64, AUX, SAVE, c.CTRL + c.limit_field(access == "w", size)))
    a.branch("jcc", inside, CC_B)
    a.emit(alu_ri(ADD, 32, SAVE, c.REGION_STRIDE))
    a.branch("jmp", loop)
    a.bind(inside)
    if access == "rw":
        read_only = Label("read_only")
        a.emit(alu_rm(CMP, 64, AUX, SAVE, c.CTRL + c.limit_field(True, size)))
        a.branch("jcc", read_only, CC_AE)
        a.emit(alu_rr(XOR, 32, AUX, AUX) + ret())
        a.bind(read_only)
        a.emit(mov_ri32(AUX, 2) + ret())
    else:
        a.emit(alu_rr(XOR, 32, AUX, AUX) + ret())
    a.bind(outside)
    a.emit(mov_ri32(AUX, 1) + ret())


# --- Lowerings: one per instruction family -------------------------------------------------------

_ALU_OPS = {AluOp.BPF_ADD: ADD, AluOp.BPF_SUB: SUB, AluOp.BPF_OR: OR, AluOp.BPF_AND: AND,
            AluOp.BPF_XOR: XOR}
_SHIFTS = {AluOp.BPF_LSH: SHL, AluOp.BPF_RSH: SHR, AluOp.BPF_ARSH: SAR}


def _alu(cx: Ctx, i: Insn, pc: int) -> None:
    """ALU / ALU64 (RFC 9669 §4.1): 32-bit forms zero-extend by themselves."""
    a, op = cx.asm, i.op
    w, d = op.width, REG[i.dst]
    alu = op.alu
    reg = op.source != BPF_K
    if alu in (AluOp.BPF_DIV, AluOp.BPF_MOD):
        _divmod(cx, i)
    elif alu is AluOp.BPF_MOV:
        if reg:
            if w == 32 or i.dst != i.src:
                a.emit(mov_rr(w, d, REG[i.src]))
        elif i.imm == 0:
            a.emit(alu_rr(XOR, 32, d, d))
        elif w == 32 or i.imm > 0:
            a.emit(mov_ri32(d, i.imm))
        else:
            a.emit(mov_ri_sx(d, i.imm))
    elif alu in _ALU_OPS:
        a.emit(alu_rr(_ALU_OPS[alu], w, d, REG[i.src]) if reg else alu_ri(_ALU_OPS[alu], w, d, i.imm))
    elif alu is AluOp.BPF_MUL:
        a.emit(imul_rr(w, d, REG[i.src]) if reg else imul_rri(w, d, d, i.imm))
    elif alu in _SHIFTS:
        _shift(cx, _SHIFTS[alu], w, i)
    else:  # pragma: no cover - every ALU row is handled above
        raise c.CannotLower(f"{ARCH}: ALU op {alu}")


def _shift(cx: Ctx, op: int, w: int, i: Insn) -> None:
    """Shifts: x86 masks the count like BPF (5/6 bits); a register count must be in cl, and
    rcx is BPF r4, so it is parked in r11 around the shift (Linux does the same)."""
    a, d = cx.asm, REG[i.dst]
    if i.op.source == BPF_K:
        n = i.imm & (w - 1)
        if n:
            a.emit(shift_ri(op, w, d, n))
        elif w == 32:
            a.emit(mov_rr(32, d, d))  # shift by 0: still zero-extend
        return
    s = REG[i.src]
    if s == RCX:
        a.emit(shift_cl(op, w, d))
        return
    a.emit(mov_rr(64, TMP, RCX))
    a.emit(mov_rr(64, RCX, s))
    if d == RCX:
        a.emit(shift_cl(op, w, TMP))
        a.emit(mov_rr(64, RCX, TMP))
    else:
        a.emit(shift_cl(op, w, d))
        a.emit(mov_rr(64, RCX, TMP))


def _divmod(cx: Ctx, i: Insn) -> None:
    """DIV/MOD/SDIV/SMOD: x / 0 = 0, x % 0 = x (32 bit: zero-extended), and for the signed
    forms x / -1 = -x, x % -1 = 0 (so INT_MIN / -1 never reaches IDIV, which would raise #DE).
    DIV/IDIV use rdx:rax (BPF r3:r0): both are kept in r10/r9 meanwhile."""
    a, op = cx.asm, i.op
    w, d = op.width, REG[i.dst]
    signed, is_mod = op.signed, op.alu is AluOp.BPF_MOD

    def by_zero() -> None:
        if not is_mod:
            a.emit(alu_rr(XOR, 32, d, d))
        elif w == 32:
            a.emit(mov_rr(32, d, d))

    def by_minus_one() -> None:
        a.emit(alu_rr(XOR, 32, d, d) if is_mod else neg(w, d))

    checked = op.source != BPF_K
    zero, minus_one = Label("zero"), Label("minus_one")
    if not checked:
        k = i.imm & (c.M64 if w == 64 else c.M32)
        if k == 0:
            by_zero()
            return
        if signed and i.imm == -1:
            by_minus_one()
            return
        a.emit(mov_ri_sx(TMP, i.imm) if w == 64 else mov_ri32(TMP, i.imm))
    else:
        a.emit(mov_rr(64, TMP, REG[i.src]))
        a.emit(test_rr(w, TMP, TMP))
        a.branch("jcc", zero, CC_E)
        if signed:
            a.emit(alu_ri(CMP, w, TMP, -1))
            a.branch("jcc", minus_one, CC_E)
    a.emit(mov_rr(64, SAVE, RAX))
    a.emit(mov_rr(64, AUX, RDX))
    if d != RAX:
        a.emit(mov_rr(64, RAX, d))
    a.emit(cdq_cqo(w) if signed else alu_rr(XOR, 32, RDX, RDX))
    a.emit(div(signed, w, TMP))
    a.emit(mov_rr(64, TMP, RDX if is_mod else RAX))
    a.emit(mov_rr(64, RAX, SAVE))
    a.emit(mov_rr(64, RDX, AUX))
    a.emit(mov_rr(w, d, TMP))
    if checked:
        done = Label("done")
        a.branch("jmp", done)
        a.bind(zero)
        by_zero()
        if signed:
            a.branch("jmp", done)
            a.bind(minus_one)
            by_minus_one()
        a.bind(done)


def _neg(cx: Ctx, i: Insn, pc: int) -> None:
    cx.asm.emit(neg(i.op.width, REG[i.dst]))


def _movsx(cx: Ctx, i: Insn, pc: int) -> None:
    cx.asm.emit(movsx_rr(i.op.width, REG[i.dst], REG[i.src], i.op.size))


def _end(cx: Ctx, i: Insn, pc: int) -> None:
    """Byte swaps (RFC 9669 §4.2): ``le`` on this little-endian host only truncates."""
    a, d, bits = cx.asm, REG[i.dst], i.op.size
    swap = not (i.op.cls is Cls.BPF_ALU and i.op.source == BPF_K)
    if bits == 16:
        if swap:
            a.emit(rol16(d, 8))
        a.emit(movzx_rr(d, d, 16))
    elif bits == 32:
        a.emit(bswap(32, d) if swap else mov_rr(32, d, d))
    elif swap:
        a.emit(bswap(64, d))


def _load(cx: Ctx, i: Insn, pc: int) -> None:
    """LDX MEM / MEMSX and load-acquire (x86 loads are acquire loads: plain MOV)."""
    size = i.op.size
    done = _converted_field(cx, i, pc) if cx.converted(i) else None
    _address(cx, i.src, i.off, size, "r", pc)
    cx.asm.emit(load(size, REG[i.dst], TMP, 0, signed=i.op.kind is Kind.LOADSX))
    if done is not None:
        cx.asm.bind(done)


def _converted_field(cx: Ctx, i: Insn, pc: int) -> Label:
    """A 4-byte load that may hit a converted context field (``__sk_buff.data`` ...): when the
    address is one of the run's pointer fields, the result is that field's 64-bit pointer and
    memory is not read (the interpreter's ``_load``); otherwise the ordinary load follows.
    Returns the label to bind after it."""
    a, done = cx.asm, Label("converted")
    a.emit(lea(TMP, REG[i.src], i.off))
    for k, (addr, value) in enumerate(sorted(cx.ctx_pointers.items())):
        def hit(value: int = value) -> None:
            _mov_imm64(cx, REG[i.dst], value & c.M64)
            a.branch("jmp", done)

        a.emit(mov_ri64(AUX, addr))
        a.emit(alu_rr(CMP, 64, TMP, AUX))
        a.branch("jcc", cx.stub(("ctx_pointer", pc, k), hit), CC_E)
    return done


def _store_imm(cx: Ctx, i: Insn, pc: int) -> None:
    _address(cx, i.dst, i.off, i.op.size, "w", pc)
    cx.asm.emit(store_imm(i.op.size, TMP, 0, i.imm))


def _store_reg(cx: Ctx, i: Insn, pc: int) -> None:
    """STX MEM and store-release (x86 stores are release stores: plain MOV)."""
    _address(cx, i.dst, i.off, i.op.size, "w", pc)
    cx.asm.emit(store(i.op.size, TMP, 0, REG[i.src]))


_ATOMIC_OPS = {int(AluOp.BPF_ADD): ADD, int(AluOp.BPF_OR): OR, int(AluOp.BPF_AND): AND,
               int(AluOp.BPF_XOR): XOR}


def _atomic(cx: Ctx, i: Insn, pc: int) -> None:
    """Atomics (RFC 9669 §5.3) with LOCK-prefixed forms; fetch and/or/xor as a CMPXCHG loop
    (Linux does the same). The old value goes to src (cmpxchg: r0), zero-extended."""
    a, op = cx.asm, i.op
    w, s = op.width, REG[i.src]
    _address(cx, i.dst, i.off, op.size, "rw", pc)
    atomic = op.atomic
    if atomic == BPF_CMPXCHG & ~BPF_FETCH:
        a.emit(lock_cmpxchg(w, TMP, s))
        if w == 32:
            a.emit(mov_rr(32, RAX, RAX))
    elif atomic == BPF_XCHG & ~BPF_FETCH:
        a.emit(xchg(w, TMP, s))
    elif atomic == int(AluOp.BPF_ADD):
        a.emit(lock_xadd(w, TMP, s) if op.fetch else lock_alu(ADD, w, TMP, s))
    elif not op.fetch:
        a.emit(lock_alu(_ATOMIC_OPS[atomic], w, TMP, s))  # type: ignore[index]
    else:
        operand = SAVE if s == RAX else s
        a.emit(mov_rr(64, SAVE, RAX))
        a.emit(load(w // 8, RAX, TMP, 0))
        loop = a.bind(Label("retry"))
        a.emit(mov_rr(w, AUX, RAX))
        a.emit(alu_rr(_ATOMIC_OPS[atomic], w, AUX, operand))  # type: ignore[index]
        a.emit(lock_cmpxchg(w, TMP, AUX))
        a.branch("jcc", loop, CC_NE)
        if s != RAX:
            a.emit(mov_rr(w, s, RAX))
            a.emit(mov_rr(64, RAX, SAVE))


def _mov_imm64(cx: Ctx, reg: int, value: int) -> None:
    if value <= c.M32:
        cx.asm.emit(mov_ri32(reg, value))
    elif value >= c.M64 - 0x7FFF_FFFF:
        cx.asm.emit(mov_ri_sx(reg, value - (1 << 64)))
    else:
        cx.asm.emit(mov_ri64(reg, value))


def _lddw(cx: Ctx, i: Insn, pc: int) -> None:
    """64-bit immediate (RFC 9669 §5.4); pseudo sources are resolved before translation."""
    value, why = c.lddw_value(i, pc, cx.maps)
    if value is None:
        cx.unsupported[pc] = why
        trap(cx, c.EV_UNSUPPORTED, pc)
    else:
        _mov_imm64(cx, REG[i.dst], value)


def _packet_load(cx: Ctx, i: Insn, pc: int) -> None:
    """LD_ABS / LD_IND (RFC 9669 §5.5): big-endian load from the "mem" region into r0; out of
    bounds ends the program with r0 = 0 (the interpreter's Linux rule)."""
    a, size = cx.asm, i.op.size
    if i.op.kind is Kind.LD_IND:
        a.emit(movsx_rr(64, TMP, REG[i.src], 32))
        a.emit(alu_ri(ADD, 64, TMP, i.imm))
    else:
        a.emit(mov_ri_sx(TMP, i.imm))

    def out_of_bounds() -> None:
        a.emit(alu_rr(XOR, 32, RAX, RAX))
        _stop_with(cx, c.EV_EXIT, pc)

    a.emit(alu_rm(CMP, 64, TMP, None, _abs(c.pkt_limit(size))))
    a.branch("jcc", cx.stub(("pkt", pc), out_of_bounds), CC_AE)
    a.emit(alu_rm(ADD, 64, TMP, None, _abs(c.OFF_PKT_START)))
    a.emit(load(size, RAX, TMP, 0))
    if size == 2:
        a.emit(rol16(RAX, 8))
    elif size == 4:
        a.emit(bswap(32, RAX))


def _ja(cx: Ctx, i: Insn, pc: int) -> None:
    target = jump_target(i, pc)
    assert target is not None
    cx.asm.branch("jmp", cx.label(target))


_CC = {JmpOp.BPF_JEQ: CC_E, JmpOp.BPF_JNE: CC_NE, JmpOp.BPF_JSET: CC_NE,
       JmpOp.BPF_JGT: CC_A, JmpOp.BPF_JGE: CC_AE, JmpOp.BPF_JLT: CC_B, JmpOp.BPF_JLE: CC_BE,
       JmpOp.BPF_JSGT: CC_G, JmpOp.BPF_JSGE: CC_GE, JmpOp.BPF_JSLT: CC_L, JmpOp.BPF_JSLE: CC_LE}


def _jcond(cx: Ctx, i: Insn, pc: int) -> None:
    """Conditional jumps (RFC 9669 §4.3): CMP/TEST on 64 or 32 bits, then Jcc; the immediate
    is sign-extended to 64 bits by the instruction itself, as BPF wants."""
    a, op = cx.asm, i.op
    w, d = op.width, REG[i.dst]
    jset = op.jmp is JmpOp.BPF_JSET
    if op.source == BPF_K:
        a.emit(test_ri(w, d, i.imm) if jset else alu_ri(CMP, w, d, i.imm))
    else:
        a.emit(test_rr(w, d, REG[i.src]) if jset else alu_rr(CMP, w, d, REG[i.src]))
    a.branch("jcc", cx.label(pc + 1 + i.off), _CC[op.jmp])  # type: ignore[index]


def _may_goto(cx: Ctx, i: Insn, pc: int) -> None:
    """may_goto: jump once the per-run counter (BPF_MAX_LOOPS at entry) is 0, else count down."""
    a = cx.asm
    a.emit(alu_abs_i8(CMP, 64, _abs(c.OFF_MAY_GOTO), 0))
    a.branch("jcc", cx.label(pc + 1 + i.off), CC_E)
    a.emit(inc_dec_abs(True, 64, _abs(c.OFF_MAY_GOTO)))


def _call_helper(cx: Ctx, i: Insn, pc: int) -> None:
    """Helper call (static id or callx): stop with EV_HELPER; Python runs the helper, writes r0
    and the clobbered r1-r5 into the control block and resumes at the reload below.
    ``bpf_tail_call`` first tries the native tail call (:func:`_tail_call`)."""
    a = cx.asm
    if i.op.kind is Kind.CALL and i.imm == BPF_FUNC_tail_call:
        slow = Label("tail_call_slow")
        _tail_call(cx, slow)
        a.bind(slow)
    _stop_with(cx, c.EV_HELPER, pc)
    cx.resume[pc] = a.bind(Label(f"resume{pc}"))
    for k in range(6):
        a.emit(load(8, REG[k], None, _abs(c.OFF_REGS + 8 * k)))


def _tail_call(cx: Ctx, slow: Label) -> None:
    """bpf_tail_call(ctx, prog_array, index) taken natively, on the model of Linux's x86 JIT
    (``emit_bpf_tail_call_indirect``): find r2 among the run's prog arrays (TAILTAB), then
    ``index < slots`` (u32 index), ``tail_call_cnt < MAX_TAIL_CALL_CNT``, a filled slot; count
    the call, log it for helper_calls, clobber r0 and r2-r5 like the interpreter and jump to the
    target program's first block (its budget check: no prologue to skip), in the same frame: r1,
    r6-r10 and the native stack are kept, so the target's ``exit`` returns where the caller's
    would; the call depth restarts at 0 for the target's own calls. Anything else (not a prog
    array, index out of range, count reached, empty slot) goes to ``slow``: Python applies the
    interpreter's exact rules."""
    a = cx.asm
    loop, found = Label("tail_call_loop"), Label("tail_call_found")
    a.emit(mov_ri32(SAVE, c.TAILTAB + c.TT_ARRAYS))
    a.bind(loop)
    a.emit(load(8, AUX, SAVE, 0))  # handle; 0 ends the table
    a.emit(test_rr(64, AUX, AUX))
    a.branch("jcc", slow, CC_E)
    a.emit(alu_rr(CMP, 64, AUX, REG[2]))
    a.branch("jcc", found, CC_E)
    a.emit(alu_ri(ADD, 32, SAVE, c.TT_ARRAY_STRIDE))
    a.branch("jmp", loop)
    a.bind(found)
    a.emit(mov_rr(32, AUX, REG[3]))
    a.emit(alu_rm(CMP, 64, AUX, SAVE, 8))
    a.branch("jcc", slow, CC_AE)
    a.emit(alu_abs_i8(CMP, 64, _abs(c.OFF_TAIL_CNT), c.MAX_TAIL_CALL_CNT))
    a.branch("jcc", slow, CC_AE)
    a.emit(load(8, SAVE, SAVE, 16))
    a.emit(shift_ri(SHL, 64, AUX, 3))
    a.emit(alu_rr(ADD, 64, AUX, SAVE))
    a.emit(load(8, TMP, AUX, 0))  # the target's code address
    a.emit(test_rr(64, TMP, TMP))
    a.branch("jcc", slow, CC_E)
    a.emit(inc_dec_abs(False, 64, _abs(c.OFF_TAIL_CNT)))
    a.emit(alu_rr(XOR, 32, AUX, AUX))
    a.emit(store(8, None, _abs(c.OFF_DEPTH), AUX))  # the target's calls count from this frame
    a.emit(load(8, AUX, None, c.TAILTAB + c.TT_LOG_N))
    a.emit(imul_rri(64, AUX, AUX, c.TT_LOG_STRIDE))
    for k in range(1, 6):
        a.emit(store(8, AUX, c.TAILTAB + c.TT_LOG + 8 * (k - 1), REG[k]))
    a.emit(store_imm(8, AUX, c.TAILTAB + c.TT_LOG + 40, 1))
    a.emit(inc_dec_abs(False, 64, c.TAILTAB + c.TT_LOG_N))
    for k in (0, 2, 3, 4, 5):
        a.emit(mov_ri64(REG[k], POISON[k]))
    a.emit(jmp_r(TMP))


def _call_local(cx: Ctx, i: Insn, pc: int) -> None:
    """bpf-to-bpf call (RFC 9669 §4.3.2) as a native CALL: depth check (Linux MAX_CALL_FRAMES,
    counted within the current program: a tail call starts the count afresh, as the verifier
    checks each program on its own), r6-r9, r10 and the depth saved on the native stack, r10 one
    512-byte frame lower; the return restores the depth (a tail call below may have reset it)."""
    a = cx.asm
    target = jump_target(i, pc)
    assert target is not None
    a.emit(alu_abs_i8(CMP, 32, _abs(c.OFF_DEPTH), 7))
    a.branch("jcc", _fault(cx, c.EV_CALL_DEPTH, pc), CC_AE)
    for k in (6, 7, 8, 9, 10):
        a.emit(push(REG[k]))
    a.emit(load(8, TMP, None, _abs(c.OFF_DEPTH)))
    a.emit(push(TMP))
    a.emit(inc_dec_abs(False, 32, _abs(c.OFF_DEPTH)))
    a.emit(alu_ri(SUB, 64, RBP, STACK_SIZE))
    a.branch("call", cx.label(target))
    a.emit(pop(TMP))
    a.emit(store(8, None, _abs(c.OFF_DEPTH), TMP))
    for k in (10, 9, 8, 7, 6):
        a.emit(pop(REG[k]))


def _exit(cx: Ctx, i: Insn, pc: int) -> None:
    """exit: RET; the event word in r11 matters only to the entry trampoline."""
    cx.asm.emit(mov_ri32(TMP, c.event(c.EV_EXIT, pc)))
    cx.asm.emit(ret())


def _unsupported(cx: Ctx, i: Insn, pc: int) -> None:
    """kfunc calls: no kernel functions here; traps with fault:unsupported when reached, as the
    interpreter does."""
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
