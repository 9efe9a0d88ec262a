"""The reference interpreter: RFC 9669 semantics, plus Linux where Linux defines more.

A program is first *prepared*: every decoded instruction becomes a small closure ("step")
that performs the instruction on the run's registers and memory and returns the next pc.
One small factory per instruction family (:class:`~reference_vm.isa.Kind`) builds the steps,
dispatched through ``_FAMILIES``; the factories read the semantics (operation, width, size,
signedness) from the instruction's table row, never from the opcode byte. The run loop then
just calls ``steps[pc]()`` under an instruction budget.

Semantics worth stating (RFC 9669 §4 unless noted):

* registers hold unsigned 64-bit values; ALU (32-bit) results are zero-extended;
* ALU64 immediates are sign-extended to 64 bits, ALU immediates used as 32 bits;
* shift counts are masked to 0..63 / 0..31 (Linux's verifier rejects immediate counts out of
  range instead: a declared divergence of the kernel target);
* ``x / 0 = 0``, ``x % 0 = x`` (ALU: upper half zeroed); signed ``INT_MIN / -1 = INT_MIN`` and
  ``INT_MIN % -1 = 0`` (Linux Documentation/bpf/standardization/instruction-set.rst);
* helper calls clobber r1–r5 with :data:`POISON` values (Linux: caller-saved, unreadable after
  the call) so that a program relying on them is caught;
* bpf-to-bpf calls get a fresh 512-byte frame, save r6–r9 and r10, at most 8 frames (Linux
  MAX_CALL_FRAMES);
* ``callx`` calls the helper whose id is in the register (bpf_conformance/uBPF convention);
* legacy packet loads (LD_ABS/LD_IND) read big-endian from the input memory and, when out of
  bounds, end the program with r0 = 0 (Linux net/core/filter.c ``bpf_skb_load_helper_*``);
* ``may_goto`` jumps once its per-run budget of ``BPF_MAX_LOOPS`` = 8M iterations is spent
  (Linux kernel/bpf/verifier.c); the kernel's x86-64 JIT uses a time limit instead.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence

from . import outcome as oc
from .contexts import CTX_BASE
from .env import Environment
from .errors import EncodingError
from .helpers import DEFAULT_HELPERS, BPF_FUNC_loop, BPF_FUNC_tail_call, HelperTable
from .insn import Insn, decode_program, jump_target
from .isa import (
    BPF_CMPXCHG,
    BPF_FETCH,
    BPF_K,
    BPF_PSEUDO_FUNC,
    BPF_PSEUDO_MAP_FD,
    BPF_PSEUDO_MAP_IDX,
    BPF_PSEUDO_MAP_IDX_VALUE,
    BPF_PSEUDO_MAP_VALUE,
    BPF_X,
    BPF_XCHG,
    AluOp,
    Cls,
    JmpOp,
    Kind,
)
from .memory import (
    MAX_CALL_FRAMES,
    MAX_TAIL_CALL_CNT,
    MEM_BASE,
    STACK_SIZE,
    STACK_TOP,
    MemoryFault,
    standard_memory,
)
from .outcome import Outcome
from .program import FIRST_MAP_FD

M64 = (1 << 64) - 1
M32 = 0xFFFF_FFFF
SIGN64 = 1 << 63
SIGN32 = 1 << 31
#: Values left in r1..r5 after a helper call (one per register, recognisable in a dump).
POISON = tuple(0xBADC_0DE0_0000_0000 | n for n in range(6))
#: Linux BPF_MAX_LOOPS (include/linux/bpf.h), the may_goto budget.
BPF_MAX_LOOPS = 8 * 1024 * 1024
DEFAULT_BUDGET = 1_000_000
EINVAL, E2BIG = 22, 7
#: Kernels before about 2025 count a tail call into an empty prog-array slot against the limit;
#: newer ones test the slot first (formats-and-corpora.md §7). Cases choose with the
#: ``empty_slot_consumes_budget`` option.
EMPTY_SLOT_CONSUMES_BUDGET = False
#: Where ``lddw`` src 4 (BPF_PSEUDO_FUNC) points: FUNC_BASE + 8 * absolute pc of the function.
FUNC_BASE = 0x0000_7E00_0000_0000

Step = Callable[[], int]
#: Linux BPF_MAP_TYPE_PROG_ARRAY.
MAP_TYPE_PROG_ARRAY = 3


class Fault(Exception):
    """Ends a run with ``fault:<kind>``."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class _Exit(Exception):
    """Raised by ``exit`` in the outermost frame."""


class _BudgetExhausted(Exception):
    """The instruction budget ran out inside a callback."""


class _CallbackReturn(Exception):
    """Raised when a callback (bpf_loop) returns to the helper that called it."""


class Machine:
    """The state of one run: registers, memory, call frames and the deterministic environment."""

    __slots__ = ("regs", "env", "memory", "frames", "depth_base", "helpers", "may_goto_left", "helper_calls",
                 "bases", "tail_calls", "empty_slot_consumes_budget", "steps", "budget", "nested_count",
                 "ctx_pointers")

    def __init__(self, env: Environment, helpers: HelperTable) -> None:
        self.regs: list[int] = [0] * 11
        self.env = env
        self.memory = env.memory
        self.frames: list[tuple[int, int, int, int, int, int, int]] = []  # ret pc, r6..r9, r10, base
        self.depth_base = 0  # len(frames) when the current program was entered (by a tail call)
        self.helpers = helpers
        self.may_goto_left = BPF_MAX_LOOPS
        self.helper_calls: list[tuple[int, tuple[int, ...], int]] = []
        self.bases: dict[str, int] = {}  # program name -> pc of its first step
        self.tail_calls = 0
        self.empty_slot_consumes_budget = EMPTY_SLOT_CONSUMES_BUDGET
        self.steps: list[Step] = []  # set by prepare(); callbacks (bpf_loop) run nested loops on it
        self.budget = DEFAULT_BUDGET
        self.nested_count = 0  # instructions executed inside callbacks
        self.ctx_pointers: dict[int, int] = {}  # address of a converted ctx field -> pointer value


def _signed(value: int, bits: int) -> int:
    return value - (1 << bits) if value >> (bits - 1) & 1 else value


# --- ALU semantics (RFC 9669 §4.1), on operands already reduced to the width ---------------

def _binary_ops(bits: int) -> dict[tuple[AluOp, bool], Callable[[int, int], int]]:
    mask = (1 << bits) - 1
    shift_mask = bits - 1

    def div(a: int, b: int) -> int:
        return a // b if b else 0

    def mod(a: int, b: int) -> int:
        return a % b if b else a

    def sdiv(a: int, b: int) -> int:
        sa, sb = _signed(a, bits), _signed(b, bits)
        if sb == 0:
            return 0
        q = abs(sa) // abs(sb)
        return (-q if (sa < 0) != (sb < 0) else q) & mask

    def smod(a: int, b: int) -> int:
        sa, sb = _signed(a, bits), _signed(b, bits)
        if sb == 0:
            return a
        r = abs(sa) % abs(sb)  # truncated division: the remainder takes the dividend's sign
        return (-r if sa < 0 else r) & mask

    return {
        (AluOp.BPF_ADD, False): lambda a, b: (a + b) & mask,
        (AluOp.BPF_SUB, False): lambda a, b: (a - b) & mask,
        (AluOp.BPF_MUL, False): lambda a, b: (a * b) & mask,
        (AluOp.BPF_DIV, False): div,
        (AluOp.BPF_DIV, True): sdiv,
        (AluOp.BPF_MOD, False): mod,
        (AluOp.BPF_MOD, True): smod,
        (AluOp.BPF_OR, False): operator.or_,
        (AluOp.BPF_AND, False): operator.and_,
        (AluOp.BPF_XOR, False): operator.xor,
        (AluOp.BPF_LSH, False): lambda a, b: (a << (b & shift_mask)) & mask,
        (AluOp.BPF_RSH, False): lambda a, b: a >> (b & shift_mask),
        (AluOp.BPF_ARSH, False): lambda a, b: (_signed(a, bits) >> (b & shift_mask)) & mask,
        (AluOp.BPF_MOV, False): lambda a, b: b,
    }


_ALU = {64: _binary_ops(64), 32: _binary_ops(32)}

# Comparisons on unsigned values; signed ones compare after flipping the sign bit.
_CMP: dict[JmpOp, tuple[Callable[[int, int], bool], bool]] = {
    JmpOp.BPF_JEQ: (operator.eq, False), JmpOp.BPF_JNE: (operator.ne, False),
    JmpOp.BPF_JGT: (operator.gt, False), JmpOp.BPF_JGE: (operator.ge, False),
    JmpOp.BPF_JLT: (operator.lt, False), JmpOp.BPF_JLE: (operator.le, False),
    JmpOp.BPF_JSET: (operator.and_, False),
    JmpOp.BPF_JSGT: (operator.gt, True), JmpOp.BPF_JSGE: (operator.ge, True),
    JmpOp.BPF_JSLT: (operator.lt, True), JmpOp.BPF_JSLE: (operator.le, True),
}


# --- One factory per instruction family --------------------------------------------------

def _alu(i: Insn, pc: int, m: Machine) -> Step:
    """ALU / ALU64 binary operations (RFC 9669 §4.1)."""
    r, d, s, nxt = m.regs, i.dst, i.src, pc + 1
    op = i.op
    f = _ALU[op.width][(op.alu, op.signed)]  # type: ignore[index]
    is_mov = op.alu is AluOp.BPF_MOV
    if op.width == 64:
        if op.source == BPF_X:
            if is_mov:
                def step() -> int:
                    r[d] = r[s]
                    return nxt
            else:
                def step() -> int:
                    r[d] = f(r[d], r[s])
                    return nxt
        else:
            k = i.imm & M64  # sign-extended to 64 bits
            if is_mov:
                def step() -> int:
                    r[d] = k
                    return nxt
            elif op.alu is AluOp.BPF_ADD:
                def step() -> int:
                    r[d] = (r[d] + k) & M64
                    return nxt
            else:
                def step() -> int:
                    r[d] = f(r[d], k)
                    return nxt
    elif op.source == BPF_X:
        def step() -> int:
            r[d] = f(r[d] & M32, r[s] & M32)
            return nxt
    else:
        k32 = i.imm & M32

        def step() -> int:
            r[d] = f(r[d] & M32, k32)
            return nxt
    return step


def _neg(i: Insn, pc: int, m: Machine) -> Step:
    r, d, nxt = m.regs, i.dst, pc + 1
    mask = M64 if i.op.width == 64 else M32

    def step() -> int:
        r[d] = -r[d] & mask
        return nxt
    return step


def _movsx(i: Insn, pc: int, m: Machine) -> Step:
    """MOVSX: sign-extend the low 8/16/32 bits of src to the operation width (RFC 9669 §4.1)."""
    r, d, s, nxt = m.regs, i.dst, i.src, pc + 1
    bits, mask = i.op.size, (M64 if i.op.width == 64 else M32)
    low = (1 << bits) - 1

    def step() -> int:
        r[d] = _signed(r[s] & low, bits) & mask
        return nxt
    return step


def _end(i: Insn, pc: int, m: Machine) -> Step:
    """Byte swaps (RFC 9669 §4.2); the host is little-endian, so ``le`` only truncates."""
    r, d, nxt = m.regs, i.dst, pc + 1
    bits = i.op.size
    nbytes = bits // 8
    low = (1 << bits) - 1
    swap = not (i.op.cls is Cls.BPF_ALU and i.op.source == BPF_K)  # TO_LE: no swap on this host

    def step() -> int:
        v = r[d] & low
        r[d] = int.from_bytes(v.to_bytes(nbytes, "little"), "big") if swap else v
        return nxt
    return step


def _load(i: Insn, pc: int, m: Machine) -> Step:
    """LDX MEM / MEMSX and Linux load-acquire (RFC 9669 §5.2).

    A 4-byte load whose offset is that of a converted context field (``__sk_buff.data`` …,
    :mod:`reference_vm.contexts`) yields the 64-bit pointer when it hits that field's address.
    """
    r, d, s, off, size, nxt = m.regs, i.dst, i.src, i.off, i.op.size, pc + 1
    load = m.memory.load_signed if i.op.kind is Kind.LOADSX else m.memory.load
    pointers = m.ctx_pointers
    if size == 4 and i.op.kind is Kind.LOAD and (CTX_BASE + off) in pointers:
        def converted() -> int:
            addr = (r[s] + off) & M64
            value = pointers.get(addr)
            r[d] = load(addr, size) & M64 if value is None else value
            return nxt
        return converted

    def step() -> int:
        r[d] = load((r[s] + off) & M64, size) & M64
        return nxt
    return step


def _store_imm(i: Insn, pc: int, m: Machine) -> Step:
    r, d, off, size, k, nxt = m.regs, i.dst, i.off, i.op.size, i.imm, pc + 1
    store = m.memory.store

    def step() -> int:
        store((r[d] + off) & M64, size, k)
        return nxt
    return step


def _store_reg(i: Insn, pc: int, m: Machine) -> Step:
    """STX MEM and Linux store-release (RFC 9669 §5.2)."""
    r, d, s, off, size, nxt = m.regs, i.dst, i.src, i.off, i.op.size, pc + 1
    store = m.memory.store

    def step() -> int:
        store((r[d] + off) & M64, size, r[s])
        return nxt
    return step


def _atomic(i: Insn, pc: int, m: Machine) -> Step:
    """Atomic read-modify-write (RFC 9669 §5.3); fetch forms load the old value into src
    (zero-extended), cmpxchg compares with and loads into r0."""
    r, d, s, off, size, nxt = m.regs, i.dst, i.src, i.off, i.op.size, pc + 1
    mem = m.memory
    mask = (1 << (8 * size)) - 1
    atomic = i.op.atomic
    assert atomic is not None
    f = _ALU[64].get((AluOp(atomic), False)) if atomic in AluOp._value2member_map_ else None
    fetch = i.op.fetch

    def step() -> int:
        addr = (r[d] + off) & M64
        old = mem.load(addr, size)
        if atomic == BPF_CMPXCHG & ~BPF_FETCH:
            if old == r[0] & mask:
                mem.store(addr, size, r[s])
            r[0] = old
            return nxt
        if atomic == BPF_XCHG & ~BPF_FETCH:
            mem.store(addr, size, r[s])
        else:
            assert f is not None
            mem.store(addr, size, f(old, r[s] & mask))
            if not fetch:
                return nxt
        r[s] = old
        return nxt
    return step


def _lddw(i: Insn, pc: int, m: Machine) -> Step:
    """64-bit immediate load (RFC 9669 §5.4), with the pseudo sources resolved against the maps
    of the run: map_fd (1) and map_idx (5) give the map's handle, map_value (2) and
    map_idx_value (6) the address of element 0's value plus the offset in the upper imm, func (4)
    a code address for callbacks."""
    r, d, nxt = m.regs, i.dst, pc + 2
    src, lo, hi = i.src, i.imm & 0xFFFFFFFF, i.imm >> 32
    value: int | None = i.imm
    if src in (BPF_PSEUDO_MAP_FD, BPF_PSEUDO_MAP_VALUE, BPF_PSEUDO_MAP_IDX, BPF_PSEUDO_MAP_IDX_VALUE):
        index = lo - FIRST_MAP_FD if src in (BPF_PSEUDO_MAP_FD, BPF_PSEUDO_MAP_VALUE) else lo
        maps = m.env.maps
        if not 0 <= index < len(maps):
            what = f"fd {lo}" if src in (BPF_PSEUDO_MAP_FD, BPF_PSEUDO_MAP_VALUE) else f"index {lo}"
            return _unsupported(f"lddw {i.op.name}: no map with {what} (the run has {len(maps)})")
        bmap = maps[index]
        if src in (BPF_PSEUDO_MAP_FD, BPF_PSEUDO_MAP_IDX):
            value = bmap.handle
        else:
            value = bmap.direct_value_address(hi)
            if value is None:
                return _unsupported(f"lddw {i.op.name}: map {bmap.spec.name!r} has no direct value "
                                    f"at offset {hi}")
    elif src == BPF_PSEUDO_FUNC:
        value = FUNC_BASE + 8 * (pc + 1 + i.imm)  # absolute pc of the function
    elif src != 0:
        return _unsupported(f"lddw {i.op.name} needs kernel BTF, which this run does not model")
    assert value is not None
    k = value & M64

    def step() -> int:
        r[d] = k
        return nxt
    return step


def _packet_load(i: Insn, pc: int, m: Machine) -> Step:
    """LD_ABS / LD_IND (RFC 9669 §5.5): big-endian packet load into r0; out of bounds ends the
    program with r0 = 0 as Linux does."""
    r, s, k, size, nxt = m.regs, i.src, i.imm, i.op.size, pc + 1
    indirect = i.op.kind is Kind.LD_IND
    mem = m.memory

    def step() -> int:
        offset = (_signed(r[s] & M32, 32) if indirect else 0) + k
        try:
            region = mem.region("mem")
        except KeyError:
            region = None
        if region is None or offset < 0 or offset + size > len(region.data):
            r[0] = 0
            raise _Exit
        r[0] = int.from_bytes(region.data[offset:offset + size], "big")
        return nxt
    return step


def _ja(i: Insn, pc: int, m: Machine) -> Step:
    target = jump_target(i, pc)
    assert target is not None

    def step() -> int:
        return target
    return step


def _jcond(i: Insn, pc: int, m: Machine) -> Step:
    """Conditional jumps (RFC 9669 §4.3): JMP compares 64 bits, JMP32 the low 32 bits."""
    r, d, s, nxt = m.regs, i.dst, i.src, pc + 1
    target = pc + 1 + i.off
    cmp, signed = _CMP[i.op.jmp]  # type: ignore[index]
    wide = i.op.width == 64
    mask = M64 if wide else M32
    bias = (SIGN64 if wide else SIGN32) if signed else 0
    if i.op.source == BPF_X:
        if wide and not bias:
            def step() -> int:
                return target if cmp(r[d], r[s]) else nxt
        else:
            def step() -> int:
                return target if cmp((r[d] & mask) ^ bias, (r[s] & mask) ^ bias) else nxt
        return step
    k = (i.imm & mask) ^ bias
    if wide and not bias:
        def step() -> int:
            return target if cmp(r[d], k) else nxt
    else:
        def step() -> int:
            return target if cmp((r[d] & mask) ^ bias, k) else nxt
    return step


def _may_goto(i: Insn, pc: int, m: Machine) -> Step:
    target, nxt = pc + 1 + i.off, pc + 1

    def step() -> int:
        if m.may_goto_left == 0:
            return target
        m.may_goto_left -= 1
        return nxt
    return step


def _call_helper(m: Machine, helper_id: int) -> int:
    h = m.helpers.get(helper_id)
    if h is None:
        raise Fault("unknown_helper", f"call to unknown helper {helper_id}")
    r = m.regs
    args = (r[1], r[2], r[3], r[4], r[5])
    ret = h.fn(m.env, *args) & M64
    m.helper_calls.append((helper_id, args, ret))
    r[0] = ret
    r[1], r[2], r[3], r[4], r[5] = POISON[1:]
    return ret


def _call(i: Insn, pc: int, m: Machine) -> Step:
    helper_id, nxt = i.imm, pc + 1
    if helper_id == BPF_FUNC_tail_call:
        return _tail_call(i, pc, m)
    if helper_id == BPF_FUNC_loop:
        return _bpf_loop(i, pc, m)

    def step() -> int:
        _call_helper(m, helper_id)
        return nxt
    return step


def _tail_call(i: Insn, pc: int, m: Machine) -> Step:
    """bpf_tail_call(ctx, prog_array, index): jump into another program, reusing this frame.

    Linux order (kernel/bpf/core.c, JMP_TAIL_CALL): index >= max_entries -> fall through;
    count >= MAX_TAIL_CALL_CNT -> fall through; empty slot -> fall through (counted first on
    older kernels). On success r1 = ctx and execution continues at the target's first insn with
    the same r10; after a fall-through r0..r5 are clobbered (the verifier marks them unreadable).
    """
    r, nxt, env = m.regs, pc + 1, m.env

    def step() -> int:
        bmap = env.map_by_handle(r[2])
        if bmap is None or bmap.spec.type != MAP_TYPE_PROG_ARRAY:
            raise Fault("tail_call", f"bpf_tail_call: r2 = {r[2]:#x} is not a prog array")
        index = r[3] & M32
        target = None
        if index < bmap.spec.max_entries and m.tail_calls < MAX_TAIL_CALL_CNT:
            name = bmap.program_at(index)
            if name is not None or m.empty_slot_consumes_budget:
                m.tail_calls += 1
            if name is not None:
                target = m.bases.get(name)
                if target is None:
                    raise Fault("tail_call", f"bpf_tail_call: slot {index} holds {name!r}, which this run "
                                             "did not load")
        m.helper_calls.append((BPF_FUNC_tail_call, (r[1], r[2], r[3], r[4], r[5]), int(target is not None)))
        r[0], r[2], r[3], r[4], r[5] = POISON[0], POISON[2], POISON[3], POISON[4], POISON[5]
        if target is None:
            r[1] = POISON[1]
            return nxt
        m.depth_base = len(m.frames)  # the target's own calls count from this frame
        return target
    return step


def _bpf_loop(i: Insn, pc: int, m: Machine) -> Step:
    """bpf_loop(nr_loops, callback_fn, callback_ctx, flags) (kernel/bpf/bpf_iter.c): call
    ``callback_fn(i, callback_ctx)`` for i in 0..nr_loops-1 until it returns non-zero; return the
    number of calls made. flags != 0 -> -EINVAL; nr_loops > BPF_MAX_LOOPS -> -E2BIG.

    Each callback runs in a new frame, as a bpf-to-bpf call would; instructions it executes count
    towards the run's budget (checked when the callback returns).
    """
    r, nxt = m.regs, pc + 1

    def step() -> int:
        nr, fn, ctx, flags = r[1], r[2], r[3], r[4]
        args = (r[1], r[2], r[3], r[4], r[5])
        if flags:
            result = -EINVAL & M64
        elif nr > BPF_MAX_LOOPS:
            result = -E2BIG & M64
        else:
            offset = fn - FUNC_BASE
            target = offset // 8
            if offset % 8 or not 0 <= target < len(m.steps) - 1:
                raise Fault("bad_callback", f"bpf_loop: r2 = {fn:#x} is not a function address")
            result = nr
            for k in range(nr):
                if _run_callback(m, target, (k, ctx, 0, 0, 0)) != 0:
                    result = k + 1
                    break
        m.helper_calls.append((BPF_FUNC_loop, args, result))
        r[0] = result
        r[1], r[2], r[3], r[4], r[5] = POISON[1:]
        return nxt
    return step


def _run_callback(m: Machine, target: int, args: tuple[int, ...]) -> int:
    """Run the function at absolute pc ``target`` in a new frame until it returns; its r0."""
    r, frames, steps = m.regs, m.frames, m.steps
    depth = len(frames) - m.depth_base
    if depth + 1 >= MAX_CALL_FRAMES:
        raise Fault("call_depth", f"the call stack of {depth + 2} frames is too deep")
    frames.append((len(steps) - 1, r[6], r[7], r[8], r[9], r[10], m.depth_base))  # -> _callback_return
    r[1], r[2], r[3], r[4], r[5] = args
    r[10] = (r[10] - STACK_SIZE) & M64
    pc, count = target, 0
    try:
        while True:
            count += 1
            if count > m.budget:
                raise _BudgetExhausted
            pc = steps[pc]()
    except _CallbackReturn:
        pass
    finally:
        m.nested_count += count - 1  # the return step itself is not an instruction
    return r[0]


def _callback_return() -> int:
    raise _CallbackReturn


def _callx(i: Insn, pc: int, m: Machine) -> Step:
    r, d, nxt = m.regs, i.dst, pc + 1

    def step() -> int:
        _call_helper(m, r[d])
        return nxt
    return step


def _call_local(i: Insn, pc: int, m: Machine) -> Step:
    """bpf-to-bpf call (RFC 9669 §4.3.2): new frame, r6–r9 and r10 saved."""
    r, frames, nxt = m.regs, m.frames, pc + 1
    target = jump_target(i, pc)
    assert target is not None

    def step() -> int:
        depth = len(frames) - m.depth_base  # MAX_CALL_FRAMES holds per program (verifier.c)
        if depth + 1 >= MAX_CALL_FRAMES:
            raise Fault("call_depth", f"the call stack of {depth + 2} frames is too deep")
        frames.append((nxt, r[6], r[7], r[8], r[9], r[10], m.depth_base))
        r[10] = (r[10] - STACK_SIZE) & M64
        return target
    return step


def _exit(i: Insn, pc: int, m: Machine) -> Step:
    r, frames = m.regs, m.frames

    def step() -> int:
        if not frames:
            raise _Exit
        ret, r[6], r[7], r[8], r[9], r[10], m.depth_base = frames.pop()
        return ret
    return step


def _unsupported(message: str) -> Step:
    def step() -> int:
        raise Fault("unsupported", message)
    return step


def _unsupported_family(i: Insn, pc: int, m: Machine) -> Step:
    return _unsupported(f"{i.op.name} needs an environment this run does not have")


_FAMILIES: dict[Kind, Callable[[Insn, int, Machine], Step]] = {
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
    Kind.CALL: _call,
    Kind.CALL_LOCAL: _call_local,
    Kind.CALL_KFUNC: _unsupported_family,
    Kind.CALLX: _callx,
    Kind.EXIT: _exit,
}
assert set(_FAMILIES) == set(Kind), "every instruction family needs a step factory"


def prepare(programs: Sequence[tuple[str, Sequence[Insn | None]]], m: Machine) -> list[Step]:
    """Build one step per pc for every program, laid out one after the other (``m.bases``).

    Each program is followed by a step that faults if execution runs off its end; lddw's second
    slot faults if reached.
    """
    def middle_of_lddw() -> int:
        raise Fault("pc_out_of_range", "execution reached the second slot of an lddw")

    steps: list[Step] = []
    for name, program in programs:
        base = len(steps)
        m.bases[name] = base
        for pc, insn in enumerate(program):
            steps.append(middle_of_lddw if insn is None else _FAMILIES[insn.op.kind](insn, base + pc, m))
        steps.append(_off_the_end(name, len(program)))
    steps.append(_callback_return)  # where a callback's exit returns to (see _run_callback)
    m.steps = steps
    return steps


def _off_the_end(name: str, length: int) -> Step:
    def step() -> int:
        raise Fault("pc_out_of_range", f"execution ran past the last instruction of {name} (pc {length})")
    return step


def _execute(m: Machine, steps: list[Step], start: int, budget: int) -> Outcome:
    """The run loop: call ``steps[pc]()`` until exit, a fault or the end of the budget."""
    r = m.regs
    pc = start
    count = 0
    m.budget = budget
    error, message = oc.OK, ""
    try:
        while True:
            count += 1
            if count > budget:
                count -= 1
                error, message = oc.BUDGET, f"instruction budget of {budget} exhausted at pc {pc}"
                break
            pc = steps[pc]()
    except _Exit:
        pass
    except _BudgetExhausted:
        error, message = oc.BUDGET, f"instruction budget of {budget} exhausted in a callback (pc {pc})"
    except Fault as f:
        error, message = oc.fault(f.kind), f"pc {pc}: {f}"
    except MemoryFault as f:
        error, message = oc.fault(f.kind), f"pc {pc}: {f}"
    count += m.nested_count
    if error == oc.OK and count > budget:
        error, message = oc.BUDGET, f"instruction budget of {budget} exhausted (callbacks included)"
    env = m.env
    return Outcome(error=error, r0=r[0] if error == oc.OK else None, regs=tuple(r),
                   memory=m.memory.snapshot(), insn_count=count, exit_pc=_local_pc(m, pc),
                   helper_calls=m.helper_calls, message=message,
                   maps={bm.spec.name: bm.snapshot() for bm in env.maps},
                   trace=[t.decode("latin-1") for t in env.trace])


def _local_pc(m: Machine, pc: int) -> int:
    """An absolute pc as the pc inside its program (single-program runs: unchanged)."""
    base = max((b for b in m.bases.values() if b <= pc), default=0)
    return pc - base


def run(program: Sequence[Insn | None] | bytes | bytearray, mem: bytes | None = None, *,
        budget: int = DEFAULT_BUDGET, helpers: HelperTable = DEFAULT_HELPERS,
        env: Environment | None = None) -> Outcome:
    """Run a program to completion and return the full final state.

    r1 points to a copy of ``mem`` and r2 holds its length (bpf_conformance's convention;
    r1 = r2 = 0 without ``mem``); r10 is the top of the outermost 512-byte frame.
    """
    if isinstance(program, (bytes, bytearray)):
        try:
            program = decode_program(program)
        except EncodingError as e:
            return Outcome(error=oc.rejected("invalid_encoding"), message=str(e))
    if env is None:
        env = Environment(standard_memory(mem))
    m = Machine(env, helpers)
    r = m.regs
    if mem is not None:
        r[1], r[2] = MEM_BASE, len(mem)
    r[10] = STACK_TOP
    steps = prepare([("main", program)], m)
    return _execute(m, steps, 0, budget)


def run_programs(programs: Sequence[tuple[str, Sequence[Insn | None]]], entry: str, env: Environment, *,
                 r1: int = 0, r2: int = 0, budget: int = DEFAULT_BUDGET,
                 helpers: HelperTable = DEFAULT_HELPERS,
                 empty_slot_consumes_budget: bool = EMPTY_SLOT_CONSUMES_BUDGET,
                 ctx_pointers: dict[int, int] | None = None) -> Outcome:
    """Run ``entry`` of a set of programs sharing ``env`` (its maps already created and filled).

    This is the run of a whole-program case: tail calls may move between the programs.
    ``ctx_pointers`` maps addresses of converted context fields to the pointers they yield
    (:attr:`reference_vm.contexts.ContextInstance.pointer_fields`, keyed by absolute address).
    """
    m = Machine(env, helpers)
    m.empty_slot_consumes_budget = empty_slot_consumes_budget
    m.ctx_pointers = dict(ctx_pointers or {})
    m.regs[1], m.regs[2] = r1 & M64, r2 & M64
    m.regs[10] = STACK_TOP
    steps = prepare(programs, m)
    return _execute(m, steps, m.bases[entry], budget)
