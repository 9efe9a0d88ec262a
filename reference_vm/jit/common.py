"""What both JIT backends share: the guest layout, the control block, labels and branch
relaxation, basic blocks, and the driver that turns a program into a :class:`Compiled` image.

Guest address space (both architectures), besides the BPF regions of the run's memory, which
sit at their own fixed addresses (:mod:`reference_vm.memory`)::

    SENTINEL    0x1000     never mapped: every stop jumps here (emu_start's ``until``)
    CTRL        0x10000    64 KiB control block (below)
    HOST_STACK  0x20000    64 KiB native stack: return addresses and saved r6-r10 of calls;
                           it is *not* the BPF stack, so BPF stack memory holds only what the
                           program stored, as in the interpreter
    TAILTAB     0x30000    64 KiB for tail calls: the log of taken tail calls (helper_calls
                           records the runtime has not read yet), the run's prog arrays
                           (handle, slots the native code may take, slot table address) and
                           the slot tables (code addresses of the programs, 0 = ask Python)
    CODE        0x1000000  64 MiB of code, filled by a bump allocator (runtime.py)

Several programs share one pc space, laid out as the interpreter's ``prepare`` does: each
program's instructions, then an ``END`` pseudo-instruction (running into it faults with
``pc_out_of_range`` and counts as one instruction), then the next program. So ``lddw`` function
addresses (``FUNC_BASE + 8 * absolute pc``), tail-call targets and exit pcs agree with the
interpreter. Every pc has an entry (bpf_loop may call back to any of them): an lddw's second
slot gets an out-of-line block that faults like the interpreter's.

The control block (``CTRL``, offsets below) is how Python and native code talk: the entry
trampoline loads r0-r10 and the budget from it; every stop (exit, fault, helper call, budget)
stores r0-r10, the event word and the budget back; the bounds checks read the region table.

Bounds checks: every BPF access tests ``addr - start < limit`` (unsigned) against the region
table, where ``limit = len - size + 1`` (0 if the region is shorter, or read-only for a write),
which is byte-exact like the interpreter's ``Memory``. Regions 0 and 1 (the stack and the input
in the standard layout) are tested inline; the others by a shared out-of-line loop over the
table, whose length is read at run time, so regions that helpers add during a run (map values)
are seen as soon as the runtime has written them into the table.

An *event word* is ``code | pc << 8``: why the native code stopped and at which BPF pc
(absolute, in the flat pc space of all the run's programs).

Instruction counting is per basic block (see :func:`analyze`): a block's entry subtracts its
instruction count from the budget register and branches to a stub when that would go below
zero. The stub stops with :data:`EV_BUDGET`; the runtime then runs exactly the remaining
budget's worth of the block's instructions (a straight line, since only its last instruction
may branch) with ``until`` set to the first instruction it must not execute.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..insn import Insn, jump_target
from ..interpreter import FUNC_BASE, MAX_TAIL_CALL_CNT
from ..isa import (
    BPF_PSEUDO_FUNC,
    BPF_PSEUDO_MAP_FD,
    BPF_PSEUDO_MAP_IDX,
    BPF_PSEUDO_MAP_IDX_VALUE,
    BPF_PSEUDO_MAP_VALUE,
    Kind,
)
from ..program import FIRST_MAP_FD

M64 = (1 << 64) - 1
M32 = 0xFFFF_FFFF

# --- Guest layout ------------------------------------------------------------------------------

SENTINEL = 0x1000
CTRL = 0x10000
CTRL_SIZE = 0x10000
HOST_STACK = 0x20000
HOST_STACK_SIZE = 0x10000
HOST_STACK_TOP = HOST_STACK + HOST_STACK_SIZE
TAILTAB = 0x30000
TAILTAB_SIZE = 0x10000
CODE_BASE = 0x0100_0000
CODE_SIZE = 64 << 20
PAGE = 0x1000

# --- Control block offsets ---------------------------------------------------------------------

OFF_REGS = 0x00  # r0..r10, 8 bytes each
OFF_EVENT = 0x58
OFF_BUDGET = 0x60  # instructions left
OFF_MAY_GOTO = 0x68  # may_goto iterations left (Linux BPF_MAX_LOOPS at entry)
OFF_DEPTH = 0x70  # bpf-to-bpf frames below the outermost one
OFF_PKT_START = 0x78  # LD_ABS/LD_IND: start of the "mem" region ...
OFF_PKT_LIM = 0x80  # ... and, per size 1/2/4/8, the first offset that does not fit
OFF_TABLE_END = 0xA0  # control-block offset just past the last region of the table
OFF_START = 0xA8  # code address the entry trampoline calls (the entry program's first block)
OFF_TAIL_CNT = 0xB0  # tail calls counted so far (Linux tail_call_cnt, MAX_TAIL_CALL_CNT = 33)
OFF_REGIONS = 0xC0  # region table: per region start, read limits[4], write limits[4]
REGION_STRIDE = 9 * 8
#: Regions tested inline at every access; the rest by the out-of-line loop.
INLINE_REGIONS = 2
MAX_REGIONS = (CTRL_SIZE - OFF_REGIONS) // REGION_STRIDE

SIZE_INDEX: Mapping[int, int] = {1: 0, 2: 1, 4: 2, 8: 3}


def region_start(k: int) -> int:
    """Control-block offset of region ``k``'s start address."""
    return OFF_REGIONS + k * REGION_STRIDE


def limit_field(write: bool, size: int) -> int:
    """Offset of the limit for ``size``-byte reads or writes inside a region table entry."""
    return 8 + (32 if write else 0) + 8 * SIZE_INDEX[size]


def region_limit(k: int, write: bool, size: int) -> int:
    """Control-block offset of region ``k``'s limit for ``size``-byte accesses."""
    return OFF_REGIONS + k * REGION_STRIDE + limit_field(write, size)


def pkt_limit(size: int) -> int:
    return OFF_PKT_LIM + 8 * SIZE_INDEX[size]


# --- Tail-call area (TAILTAB) ------------------------------------------------------------------

TT_LOG_N = 0x0  # records in the log
TT_LOG = 0x8  # per taken tail call: r1-r5 at the call, then the helper_calls result (1)
TT_LOG_STRIDE = 6 * 8
TT_LOG_MAX = MAX_TAIL_CALL_CNT  # at most 33 tail calls are taken per run
TT_ARRAYS = 0x680  # per prog array: handle, slots native code may use, slot table address, 0
TT_ARRAY_STRIDE = 4 * 8
TT_MAX_ARRAYS = (0x1000 - TT_ARRAYS) // TT_ARRAY_STRIDE - 1  # one entry for the 0 terminator
TT_SLOTS = 0x1000  # slot tables, back to back
TT_MAX_SLOTS = (TAILTAB_SIZE - TT_SLOTS) // 8
assert TT_LOG + TT_LOG_MAX * TT_LOG_STRIDE <= TT_ARRAYS


# --- Events ------------------------------------------------------------------------------------

EV_EXIT = 1  # exit from the outermost frame (or an out-of-bounds LD_ABS/LD_IND: r0 = 0)
EV_HELPER = 2  # helper call (call imm / callx): Python runs it and resumes
EV_BUDGET = 3  # the block at pc does not fit in the budget left
EV_OOB_READ = 4
EV_OOB_WRITE = 5
EV_CALL_DEPTH = 6
EV_PC_OUT_OF_RANGE = 7  # fell off the end of the program
EV_UNSUPPORTED = 8  # an instruction this run cannot execute (kfunc, unresolved pseudo lddw)
EV_CB_RETURN = 9  # a bpf_loop callback returned (its outermost exit returned to cb_return)

FAULTS: Mapping[int, str] = {EV_OOB_READ: "oob_read", EV_OOB_WRITE: "oob_write",
                             EV_CALL_DEPTH: "call_depth", EV_PC_OUT_OF_RANGE: "pc_out_of_range",
                             EV_UNSUPPORTED: "unsupported"}


def event(code: int, pc: int) -> int:
    return code | pc << 8


class CannotLower(Exception):
    """A program (or instruction) this backend cannot translate; the runtime reports
    ``Outcome(error="unsupported")`` with this message."""


# --- Labels, branches and relaxation -----------------------------------------------------------


class Label:
    """A position in the code, known after layout."""

    __slots__ = ("name", "offset")

    def __init__(self, name: object = "") -> None:
        self.name = name
        self.offset = -1

    def __repr__(self) -> str:
        return f"Label({self.name!r}@{self.offset})"


class Branch:
    """A pc-relative branch to a label; ``long`` is set by relaxation when the short form
    does not reach. ``kind`` and ``arg`` (condition, register) mean what the backend says."""

    __slots__ = ("kind", "arg", "label", "long", "offset")

    def __init__(self, kind: str, label: Label, arg: Any = None) -> None:
        self.kind = kind
        self.arg = arg
        self.label = label
        self.long = False
        self.offset = 0


class BranchEncoder(Protocol):
    def size(self, br: Branch) -> int: ...

    def fits(self, br: Branch, delta: int) -> bool: ...

    def encode(self, br: Branch, delta: int) -> bytes: ...


class Asm:
    """Machine code under construction: byte runs, labels and relaxable branches."""

    def __init__(self, branches: BranchEncoder) -> None:
        self.items: list[bytes | Label | Branch] = []
        self._buf = bytearray()
        self._enc = branches

    def emit(self, data: bytes) -> None:
        self._buf += data

    def _flush(self) -> None:
        if self._buf:
            self.items.append(bytes(self._buf))
            self._buf.clear()

    def bind(self, label: Label) -> Label:
        self._flush()
        self.items.append(label)
        return label

    def branch(self, kind: str, label: Label, arg: Any = None) -> None:
        self._flush()
        self.items.append(Branch(kind, label, arg))

    def finish(self) -> bytes:
        """Lay out the code: every branch starts short and is made long until all reach
        (sizes only grow, so this terminates), then encode."""
        self._flush()
        enc, items = self._enc, self.items
        branches = [it for it in items if type(it) is Branch]
        changed = True
        while changed:
            pos = 0
            for it in items:
                if type(it) is bytes:
                    pos += len(it)
                elif type(it) is Label:
                    it.offset = pos
                elif type(it) is Branch:
                    it.offset = pos
                    pos += enc.size(it)
            changed = False
            for br in branches:
                if not br.long and not enc.fits(br, br.label.offset - br.offset):
                    br.long = changed = True
        unbound = [br.label for br in branches if br.label.offset < 0]
        if unbound:
            raise AssertionError(f"branches to unbound labels {unbound}")
        out = bytearray()
        for it in items:
            if type(it) is bytes:
                out += it
            elif type(it) is Branch:
                out += enc.encode(it, it.label.offset - it.offset)
        assert len(out) == pos, "a branch encoding does not have the size its encoder announced"
        return bytes(out)


# --- Programs in one pc space ------------------------------------------------------------------


class _End:
    """The pseudo-instruction after each program (the interpreter's ``_off_the_end`` step)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "END"


#: Marks the pc after each program's last instruction in a flat program.
END = _End()

#: A flat program: instructions, ``None`` for lddw second slots, :data:`END` after each program.
Slot = Insn | None | _End


def flatten(programs: Sequence[tuple[str, Sequence[Insn | None]]]) -> tuple[list[Slot], dict[str, int]]:
    """Programs laid out one after the other, each followed by :data:`END`, and the pc where
    each starts (the interpreter's ``prepare`` and ``Machine.bases``; a repeated name takes the
    later program, as there)."""
    flat: list[Slot] = []
    bases: dict[str, int] = {}
    for name, program in programs:
        bases[name] = len(flat)
        flat.extend(program)
        flat.append(END)
    return flat, bases


def func_target(insn: Insn, pc: int) -> int:
    """The absolute pc an ``lddw`` src 4 (BPF_PSEUDO_FUNC) at ``pc`` points to."""
    lo = insn.imm & M32
    return pc + 1 + (lo - (1 << 32) if lo >> 31 else lo)


# --- Basic blocks ------------------------------------------------------------------------------

#: Instructions that end a basic block: they branch, call or leave.
TERMINATORS = frozenset({Kind.JA, Kind.JCOND, Kind.MAY_GOTO, Kind.CALL, Kind.CALLX, Kind.CALL_LOCAL,
                         Kind.EXIT})


@dataclass(frozen=True)
class Blocks:
    """Basic blocks of a flat program. Each :data:`END` is a block of its own (running into it
    counts as one instruction in the interpreter), and so is each lddw second slot, whose block
    is emitted out of line: it is reachable only as a callback or jump target, and faults."""

    first: tuple[int, ...]  # per pc: first pc of its block
    tail: tuple[int, ...]  # per pc: instructions after it in its block
    pcs: Mapping[int, tuple[int, ...]]  # first pc -> the pcs of its instructions


def analyze(program: Sequence[Slot]) -> Blocks:
    """Leaders: pc 0, every jump and call target (``lddw`` src 4 counts: its function is a
    likely bpf_loop callback), every pc after a terminator, every END and the pc after it.
    A single program without a trailing END gets one, as before: pc ``len(program)``."""
    flat = list(program)
    if not flat or flat[-1] is not END:
        flat.append(END)
    end = len(flat)
    leaders = {0}
    for pc, insn in enumerate(flat):
        if insn is None:
            continue
        if isinstance(insn, _End):
            leaders.update((pc, pc + 1))
            continue
        target = jump_target(insn, pc)
        if target is not None:
            if not 0 <= target < end:
                raise CannotLower(f"pc {pc}: jump or call to pc {target}, outside the programs")
            leaders.add(target)
        if insn.op.kind in TERMINATORS:
            leaders.add(pc + 1)
    first = [-1] * end
    pcs: dict[int, list[int]] = {}
    current = 0
    for pc in range(end):
        if flat[pc] is None:
            first[pc] = pc
            pcs[pc] = [pc]
            continue
        if pc in leaders:
            current = pc
            pcs[pc] = []
        first[pc] = current
        pcs[current].append(pc)
    tail = [0] * end
    for members in pcs.values():
        for k, pc in enumerate(members):
            tail[pc] = len(members) - 1 - k
    return Blocks(tuple(first), tuple(tail), {k: tuple(v) for k, v in pcs.items()})


# --- Lowering driver ---------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Compiled:
    """Programs translated for one architecture: position-independent code plus what the
    runtime needs to start them, resume after a helper, enter callbacks and count."""

    arch: str
    program: tuple[Slot, ...]  # the flat program (instructions, None, END)
    code: bytes
    entry: int  # offset of the entry trampoline (it calls the address at OFF_START)
    starts: tuple[int, ...]  # per pc: offset of its code, budget check included
    bodies: tuple[int, ...]  # per pc: offset of its code after the block's budget check
    stubs: int  # offset where out-of-line code (stubs, stop routine) begins
    resume: Mapping[int, int]  # helper-call pc -> offset where execution continues
    blocks: Blocks
    unsupported: Mapping[int, str] = field(default_factory=dict)  # pc -> why it traps
    options: Mapping[str, object] = field(default_factory=dict)
    bases: Mapping[str, int] = field(default_factory=lambda: {"main": 0})  # program -> first pc
    cb_return: int = -1  # offset a callback's outermost exit returns to (stops: EV_CB_RETURN)

    def local_pc(self, pc: int) -> int:
        """An absolute pc as the pc inside its program (the interpreter's ``_local_pc``)."""
        if len(self.bases) == 1:
            return pc - next(iter(self.bases.values()))
        return pc - max((b for b in self.bases.values() if b <= pc), default=0)


class Ctx:
    """State of one translation, handed to every lowering function."""

    def __init__(self, program: Sequence[Slot], asm: Asm, maps: Sequence[object],
                 options: Mapping[str, object], ctx_pointers: Mapping[int, int] | None = None) -> None:
        self.program = program
        self.options = options
        self.asm = asm
        self.maps = maps
        #: Converted context fields: absolute address -> the pointer a 4-byte load there yields.
        self.ctx_pointers: Mapping[int, int] = dict(ctx_pointers or {})
        self.entries = {pc: Label(pc) for pc in range(len(program))}
        self.stop = Label("stop")
        self.resume: dict[int, Label] = {}
        self.unsupported: dict[int, str] = {}
        self._stubs: list[tuple[Label, Callable[[], None]]] = []
        self._stub_keys: dict[object, Label] = {}

    def label(self, pc: int) -> Label:
        """The entry of the code of ``pc`` (its block's budget check, if it starts one)."""
        return self.entries[pc]

    def stub(self, key: object, emit: Callable[[], None]) -> Label:
        """An out-of-line piece of code emitted after the body (once per ``key``)."""
        label = self._stub_keys.get(key)
        if label is None:
            label = self._stub_keys[key] = Label(key)
            self._stubs.append((label, emit))
        return label

    def converted(self, insn: Insn) -> bool:
        """Whether a load may hit a converted context field (the interpreter's ``_load``: a
        4-byte LDX MEM whose offset is that of a pointer field from the context's start)."""
        from ..contexts import CTX_BASE

        return (bool(self.ctx_pointers) and insn.op.kind is Kind.LOAD and insn.op.size == 4
                and (CTX_BASE + insn.off) in self.ctx_pointers)


Lowering = Callable[[Ctx, Insn, int], None]


class Backend(Protocol):
    """What an architecture module provides to :func:`translate`."""

    ARCH: str
    LOWERINGS: Mapping[Kind, Lowering]
    BRANCHES: BranchEncoder

    def options(self) -> dict[str, object]: ...

    def entry(self, cx: Ctx) -> None: ...

    def budget_check(self, cx: Ctx, count: int, first: int) -> None: ...

    def stop_routine(self, cx: Ctx) -> None: ...

    def trap(self, cx: Ctx, code: int, pc: int) -> None: ...


def translate(backend: Backend, program: Sequence[Insn | None], *, maps: Sequence[object] = (),
              options: Mapping[str, object] | None = None,
              ctx_pointers: Mapping[int, int] | None = None) -> Compiled:
    """One program (pc 0 is its entry): :func:`translate_programs` of ``[("main", program)]``."""
    return translate_programs(backend, [("main", program)], maps=maps, options=options,
                              ctx_pointers=ctx_pointers)


def translate_programs(backend: Backend, programs: Sequence[tuple[str, Sequence[Insn | None]]], *,
                       maps: Sequence[object] = (), options: Mapping[str, object] | None = None,
                       ctx_pointers: Mapping[int, int] | None = None) -> Compiled:
    """Lower every instruction of the flat program (:func:`flatten`) through
    ``backend.LOWERINGS[insn.op.kind]`` and lay out the code: entry trampoline, body (pc
    order), the blocks of lddw second slots, the callback return, stubs, stop routine."""
    flat, bases = flatten(programs)
    asm = Asm(backend.BRANCHES)
    options = dict(options or {})
    cx = Ctx(flat, asm, maps, options, ctx_pointers)
    blocks = analyze(flat)
    backend.entry(cx)
    body_labels: dict[int, Label] = {}

    def block_entry(pc: int) -> None:
        entry = asm.bind(cx.entries[pc])
        if blocks.first[pc] == pc:
            backend.budget_check(cx, len(blocks.pcs[pc]), pc)
            entry = asm.bind(Label(("body", pc)))
        body_labels[pc] = entry

    for pc, insn in enumerate(flat):
        if insn is None:
            continue
        block_entry(pc)
        if insn is END:
            backend.trap(cx, EV_PC_OUT_OF_RANGE, pc)
            continue
        assert isinstance(insn, Insn)
        lower = backend.LOWERINGS.get(insn.op.kind)
        if lower is None:
            raise CannotLower(f"{backend.ARCH}: cannot lower {insn.op.name} ({insn.op.kind.value})")
        lower(cx, insn, pc)
    for pc, insn in enumerate(flat):  # second slots of lddw: a block of one faulting step
        if insn is None:
            block_entry(pc)
            backend.trap(cx, EV_PC_OUT_OF_RANGE, pc)
    cb_return = asm.bind(Label("cb_return"))
    backend.trap(cx, EV_CB_RETURN, 0)
    stubs_label = asm.bind(Label("stubs"))
    done = 0
    while done < len(cx._stubs):  # stubs may add stubs
        label, emit = cx._stubs[done]
        asm.bind(label)
        emit()
        done += 1
    asm.bind(cx.stop)
    backend.stop_routine(cx)
    code = asm.finish()
    starts = tuple(cx.entries[pc].offset for pc in range(len(flat)))
    bodies = tuple(body_labels[pc].offset for pc in range(len(flat)))
    return Compiled(arch=backend.ARCH, program=tuple(flat), code=code, entry=0, starts=starts,
                    bodies=bodies, stubs=stubs_label.offset,
                    resume={pc: lab.offset for pc, lab in cx.resume.items()}, blocks=blocks,
                    unsupported=dict(cx.unsupported), options=options, bases=dict(bases),
                    cb_return=cb_return.offset)


# --- Pseudo lddw -------------------------------------------------------------------------------

def lddw_value(insn: Insn, pc: int, maps: Sequence[Any]) -> tuple[int | None, str]:
    """The 64-bit value an ``lddw`` loads, resolved before translation as Linux's loader does
    (the same rules as the interpreter's ``_lddw``), or ``(None, why)`` when it cannot be."""
    src, lo, hi = insn.src, insn.imm & M32, insn.imm >> 32
    if src == 0:
        return insn.imm & M64, ""
    if src in (BPF_PSEUDO_MAP_FD, BPF_PSEUDO_MAP_VALUE, BPF_PSEUDO_MAP_IDX, BPF_PSEUDO_MAP_IDX_VALUE):
        by_fd = src in (BPF_PSEUDO_MAP_FD, BPF_PSEUDO_MAP_VALUE)
        index = lo - FIRST_MAP_FD if by_fd else lo
        if not 0 <= index < len(maps):
            what = f"fd {lo}" if by_fd else f"index {lo}"
            return None, f"lddw {insn.op.name}: no map with {what} (the run has {len(maps)})"
        bmap = maps[index]
        if src in (BPF_PSEUDO_MAP_FD, BPF_PSEUDO_MAP_IDX):
            return int(bmap.handle) & M64, ""
        value = bmap.direct_value_address(hi)
        if value is None:
            return None, f"lddw {insn.op.name}: map {bmap.spec.name!r} has no direct value at offset {hi}"
        return int(value) & M64, ""
    if src == BPF_PSEUDO_FUNC:
        return (FUNC_BASE + 8 * func_target(insn, pc)) & M64, ""
    return None, f"lddw {insn.op.name} needs kernel BTF, which this run does not model"
