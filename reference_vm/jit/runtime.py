"""Running JIT output under unicorn, with the interpreter's memory layout and outcome.

One :class:`Engine` per architecture lives for the whole process (:func:`engine`). Its fixed
pages (control block, native stack, code area) and the BPF regions are mapped once; per run it
only writes the code (when the program is new), the control block and the region contents,
calls ``emu_start`` and reads the control block and the regions back. Nothing runs per BPF
instruction in Python: the generated code counts the budget itself.

Decisions (see also :mod:`reference_vm.jit.common`):

* Bounds: every BPF access is checked by the generated code against the region table, with
  byte precision, because the interpreter faults on *any* byte outside a region and regions
  need not end on a page boundary (a 3-byte input, ``ldxw [r1+0]`` -> ``fault:oob_read``).
  Unicorn's page protection never decides a BPF access: each region is mapped with the whole
  pages around it, backed by an mmap that Python copies the region's bytes in and out of.
* Stacks: the BPF stack region sits at the interpreter's addresses and r10 points into it;
  return addresses and the r6-r10 saved by bpf-to-bpf calls go to a separate native stack, so
  the BPF stack holds exactly what the program stored (the memory snapshots agree).
* Budget: counted per basic block by the native code; when a block does not fit, this module
  re-runs exactly the remaining instructions of that block with ``until`` set (translation
  cache dropped around that run, because unicorn keeps translated blocks across ``until``).
* Helpers: the native code stops (EV_HELPER); Python calls the helper from the table with the
  run's :class:`~reference_vm.env.Environment`, whose memory is synchronised with the engine
  around the call, writes r0 and the poisoned r1-r5 and resumes.

Not supported (``Outcome(error="unsupported")``, never a silently different result): a tail
call that would be taken (the JIT runs one program), ``bpf_loop`` callbacks, and regions joined
to the next one or aliasing another (a ring buffer's double mapping).
"""

from __future__ import annotations

import ctypes
import mmap
import struct
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from unicorn import (
    UC_ARCH_ARM64,
    UC_ARCH_X86,
    UC_MODE_64,
    UC_MODE_ARM,
    UC_PROT_READ,
    UC_PROT_WRITE,
    Uc,
    UcError,
)
from unicorn import arm64_const as A
from unicorn import x86_const as X

from .. import interpreter
from .. import outcome as oc
from ..env import Environment
from ..helpers import BPF_FUNC_loop, BPF_FUNC_tail_call, HelperTable
from ..isa import Kind
from ..memory import MemoryFault, Region
from ..outcome import Outcome
from . import common as c
from .common import CannotLower, Compiled

M64 = c.M64
_CTRL_REGS = struct.Struct("<15Q")  # regs[11], event, budget, may_goto, depth
_CTRL_PKT = struct.Struct("<6Q")  # packet start, packet limits[4], end of the region table
_REGION = struct.Struct("<9Q")
_READ_BACK = _CTRL_REGS


@dataclass(frozen=True)
class _ArchSpec:
    uc_arch: int
    uc_mode: int
    pc_reg: int
    bpf_regs: tuple[int, ...]  # unicorn register ids of BPF r0..r10


_X86 = _ArchSpec(UC_ARCH_X86, UC_MODE_64, X.UC_X86_REG_RIP, (
    X.UC_X86_REG_RAX, X.UC_X86_REG_RDI, X.UC_X86_REG_RSI, X.UC_X86_REG_RDX, X.UC_X86_REG_RCX,
    X.UC_X86_REG_R8, X.UC_X86_REG_RBX, X.UC_X86_REG_R13, X.UC_X86_REG_R14, X.UC_X86_REG_R15,
    X.UC_X86_REG_RBP))
_ARM64 = _ArchSpec(UC_ARCH_ARM64, UC_MODE_ARM, A.UC_ARM64_REG_PC, (
    A.UC_ARM64_REG_X7, A.UC_ARM64_REG_X0, A.UC_ARM64_REG_X1, A.UC_ARM64_REG_X2, A.UC_ARM64_REG_X3,
    A.UC_ARM64_REG_X4, A.UC_ARM64_REG_X19, A.UC_ARM64_REG_X20, A.UC_ARM64_REG_X21,
    A.UC_ARM64_REG_X22, A.UC_ARM64_REG_X25))
SPECS = {"x86_64": _X86, "arm64": _ARM64}
#: How many compiled programs stay resident (their code is not rewritten when run again).
RESIDENT = 256


def _limit(length: int, size: int) -> int:
    return length - size + 1 if length >= size else 0


def _check_regions(regions: Sequence[Region]) -> None:
    for r in regions:
        if getattr(r, "joins_next", False) or isinstance(r.data, memoryview):
            raise CannotLower(f"region {r.name} is joined to the next one or aliases another (a ring "
                              "buffer's double mapping): the JIT maps separate regions only")


def _limits_block(layout: tuple[tuple[str, int, int, bool], ...]) -> bytes:
    """The packet limits and the region table of a memory layout (name, start, length,
    writable), as they follow the registers in the control block (at least INLINE_REGIONS
    entries: a missing one has limit 0 and matches nothing)."""
    if len(layout) > c.MAX_REGIONS:
        raise CannotLower(f"{len(layout)} memory regions (the control block holds {c.MAX_REGIONS})")
    pkt = next((entry for entry in layout if entry[0] == "mem"), None)
    plen = pkt[2] if pkt is not None else 0
    entries = list(layout) + [("", 0, 0, False)] * (c.INLINE_REGIONS - len(layout))
    head = _CTRL_PKT.pack(pkt[1] if pkt is not None else 0, *(_limit(plen, s) for s in (1, 2, 4, 8)),
                          c.OFF_REGIONS + len(entries) * c.REGION_STRIDE)
    table = b"".join(
        _REGION.pack(start, *(_limit(length, s) for s in (1, 2, 4, 8)),
                     *(_limit(length, s) if writable else 0 for s in (1, 2, 4, 8)))
        for _, start, length, writable in entries)
    return head + table


class _Finish(Exception):
    """Ends a run: error class, message, exit pc, instructions executed, final r0-r10."""

    def __init__(self, error: str, message: str, pc: int | None, count: int | None,
                 regs: Sequence[int] | None = None) -> None:
        super().__init__(message)
        self.error, self.message, self.pc, self.count = error, message, pc, count
        self.regs = tuple(regs) if regs is not None else None


class _Window:
    """Guest pages backed by an anonymous mmap that Python reads and writes directly
    (``uc.mem_map_ptr``), so copying a region in or out costs a memcpy, not a unicorn call."""

    __slots__ = ("start", "size", "mm", "view")

    def __init__(self, uc: Uc, start: int, size: int) -> None:
        self.start, self.size = start, size
        self.mm = mmap.mmap(-1, size)
        address = ctypes.addressof(ctypes.c_char.from_buffer(self.mm))
        uc.mem_map_ptr(start, size, UC_PROT_READ | UC_PROT_WRITE, address)
        self.view = memoryview(self.mm)

    @property
    def end(self) -> int:
        return self.start + self.size


class Engine:
    """One unicorn instance for one architecture, reused for every run."""

    def __init__(self, arch: str) -> None:
        spec = SPECS[arch]
        self.arch, self.spec = arch, spec
        uc = Uc(spec.uc_arch, spec.uc_mode)
        if arch == "arm64":
            uc.ctl_set_cpu_model(A.UC_CPU_ARM64_MAX)  # the model with LSE atomics (ARMv8.1)
        self.uc = uc
        self.ctrl = _Window(uc, c.CTRL, c.CTRL_SIZE).view
        uc.mem_map(c.HOST_STACK, c.HOST_STACK_SIZE)
        uc.mem_map(c.CODE_BASE, c.CODE_SIZE)
        self._windows: list[_Window] = []
        self._views: dict[tuple[int, int], memoryview] = {}
        self._next = c.CODE_BASE
        self._resident: OrderedDict[int, tuple[Compiled, int]] = OrderedDict()
        self._limits: dict[tuple[tuple[str, int, int, bool], ...], bytes] = {}

    # -- memory and code ------------------------------------------------------------------------

    def view(self, region: Region) -> memoryview:
        """The engine's bytes under ``region`` (mapping whole pages around it on first use)."""
        key = (region.start, len(region.data))
        v = self._views.get(key)
        if v is None:
            v = self._views[key] = self._new_view(*key)
        return v

    def _new_view(self, start: int, length: int) -> memoryview:
        if not length:
            return memoryview(bytearray())
        end = start + length
        for w in self._windows:
            if w.start <= start and end <= w.end:
                return w.view[start - w.start:end - w.start]
        first = start // c.PAGE * c.PAGE
        last = -(-end // c.PAGE) * c.PAGE
        if first < c.CODE_BASE + c.CODE_SIZE or last > 1 << 64:
            raise CannotLower(f"memory at {start:#x} overlaps the JIT's own pages")
        saved = []
        for w in [w for w in self._windows if w.start < last and first < w.end]:
            # a window under these pages is merged into the new one, keeping its contents
            # (regions can appear mid-run, when a helper allocates a map element)
            first, last = min(first, w.start), max(last, w.end)
            saved.append((w.start, bytes(w.view)))
            self.uc.mem_unmap(w.start, w.size)
            self._windows.remove(w)
            self._views = {k: v for k, v in self._views.items() if not w.start <= k[0] < w.end}
        new = _Window(self.uc, first, last - first)
        for at, data in saved:
            new.view[at - first:at - first + len(data)] = data
        self._windows.append(new)
        return new.view[start - first:end - first]

    def load(self, compiled: Compiled) -> int:
        """The address of ``compiled``'s code in the engine, writing it if it is not resident.

        Code goes to fresh addresses (a bump allocator), so unicorn's translation cache never
        holds stale code; when the area is full, the cache is dropped and filling restarts."""
        hit = self._resident.get(id(compiled))
        if hit is not None and hit[0] is compiled:
            self._resident.move_to_end(id(compiled))
            return hit[1]
        size = (len(compiled.code) + 63) & ~63
        if size > c.CODE_SIZE:
            raise CannotLower(f"{len(compiled.code)} bytes of code do not fit the "
                              f"{c.CODE_SIZE >> 20} MiB code area")
        if self._next + size > c.CODE_BASE + c.CODE_SIZE:
            self.uc.ctl_remove_cache(c.CODE_BASE, self._next)
            self._next = c.CODE_BASE
            self._resident.clear()
        base = self._next
        self.uc.mem_write(base, compiled.code)
        self._next += size
        self._resident[id(compiled)] = (compiled, base)
        if len(self._resident) > RESIDENT:
            self._resident.popitem(last=False)
        return base

    def sync_in(self, regions: Sequence[Region]) -> None:
        """Engine memory -> the regions' bytearrays."""
        for r in regions:
            r.data[:] = self.view(r)

    def sync_out(self, regions: Sequence[Region]) -> None:
        """The regions' bytearrays -> engine memory."""
        for r in regions:
            self.view(r)[:] = r.data

    def write_control(self, regs: Sequence[int], budget: int, regions: Sequence[Region]) -> None:
        """The control block at entry: registers, budget, may_goto budget, then the limits."""
        _CTRL_REGS.pack_into(self.ctrl, 0, *regs, 0, budget, interpreter.BPF_MAX_LOOPS, 0)
        self.write_limits(regions)

    def write_limits(self, regions: Sequence[Region]) -> None:
        """Packet limits and the region table (also after a helper changed the memory's regions,
        as map helpers do when they allocate elements)."""
        layout = tuple((r.name, r.start, len(r.data), r.writable) for r in regions)
        limits = self._limits.get(layout)
        if limits is None:
            limits = self._limits[layout] = _limits_block(layout)
            if len(self._limits) > 64:
                self._limits.pop(next(iter(self._limits)))
        self.ctrl[_CTRL_REGS.size:_CTRL_REGS.size + len(limits)] = limits

    def live_regs(self) -> tuple[int, ...]:
        """r0-r10 from the CPU (after a stop at ``until``, where nothing was stored)."""
        return tuple(self.uc.reg_read(r) for r in self.spec.bpf_regs)

    def read_control(self) -> tuple[int, ...]:
        """r0-r10, event word, budget left, may_goto left, depth, as stored at the last stop."""
        return _READ_BACK.unpack_from(self.ctrl, 0)

    # -- running ----------------------------------------------------------------------------------

    def run(self, compiled: Compiled, env: Environment, regs: Sequence[int], *, budget: int,
            helpers: HelperTable, empty_slot_consumes_budget: bool = False) -> Outcome:
        """Run ``compiled`` from pc 0 with ``regs`` (r0-r10) and ``env``'s memory."""
        if compiled.arch != self.arch:
            raise ValueError(f"{compiled.arch} code on the {self.arch} engine")
        regions = env.memory.regions
        _check_regions(regions)
        run = _Run(self, compiled, self.load(compiled), env, helpers, budget)
        run.empty_slot_consumes_budget = empty_slot_consumes_budget
        self.sync_out(regions)
        self.write_control(regs, budget, regions)
        try:
            run.loop()
        except _Finish as f:
            end = f
        self.sync_in(regions)
        assert end.regs is not None
        return Outcome(error=end.error, r0=end.regs[0] if end.error == oc.OK else None, regs=end.regs,
                       memory=env.memory.snapshot(), insn_count=end.count, exit_pc=end.pc,
                       helper_calls=run.helper_calls, message=end.message,
                       maps={bm.spec.name: bm.snapshot() for bm in env.maps},
                       trace=[t.decode("latin-1") for t in env.trace])


class _Run:
    """The event loop of one run: start, service helper stops, finish with :class:`_Finish`."""

    def __init__(self, eng: Engine, compiled: Compiled, base: int, env: Environment,
                 helpers: HelperTable, budget: int) -> None:
        self.eng, self.compiled, self.base = eng, compiled, base
        self.env, self.helpers, self.budget = env, helpers, budget
        self.helper_calls: list[tuple[int, tuple[int, ...], int]] = []
        self.tail_calls = 0
        self.empty_slot_consumes_budget = False

    def loop(self) -> None:
        uc, compiled, base = self.eng.uc, self.compiled, self.base
        begin = base + compiled.entry
        while True:
            try:
                uc.emu_start(begin, c.SENTINEL)
            except UcError as e:
                raise self._crash(e) from None
            vals = self.eng.read_control()
            regs = vals[:11]
            code, pc, left = vals[11] & 0xFF, vals[11] >> 8, vals[12]
            if code == c.EV_BUDGET:
                self._partial(pc, left)
            count = self.budget - left - compiled.blocks.tail[pc]
            if code == c.EV_HELPER:
                clobbered = self._helper(pc, regs, count)
                struct.pack_into("<6Q", self.eng.ctrl, c.OFF_REGS, *clobbered)
                begin = base + compiled.resume[pc]
                continue
            if code == c.EV_EXIT:
                raise _Finish(oc.OK, "", pc, count, regs)
            raise _Finish(oc.fault(c.FAULTS[code]), self._fault_message(code, pc, vals), pc, count, regs)

    def _helper(self, pc: int, regs: tuple[int, ...], count: int) -> tuple[int, ...]:
        """Run the helper of the call at ``pc`` (the interpreter's ``_call_helper`` rules);
        returns the new r0-r5."""
        insn = self.compiled.program[pc]
        assert insn is not None
        helper_id = insn.imm if insn.op.kind is Kind.CALL else regs[insn.dst]
        if insn.op.kind is Kind.CALL and helper_id == BPF_FUNC_tail_call:
            return self._tail_call(pc, regs, count)
        if insn.op.kind is Kind.CALL and helper_id == BPF_FUNC_loop:
            raise _Finish(oc.UNSUPPORTED, f"pc {pc}: bpf_loop calls back into the program, which the "
                          "JIT does not do (yet)", pc, count, regs)
        h = self.helpers.get(helper_id)
        if h is None:
            raise _Finish(oc.fault("unknown_helper"), f"pc {pc}: call to unknown helper {helper_id}",
                          pc, count, regs)
        args = tuple(regs[1:6])
        regions = self.env.memory.regions
        self.eng.sync_in(regions)
        try:
            ret = h.fn(self.env, *args) & M64
        except (interpreter.Fault, MemoryFault) as e:
            self.eng.sync_out(regions)
            raise _Finish(oc.fault(e.kind), f"pc {pc}: {e}", pc, count, regs) from None
        try:  # the helper may have added regions (map elements)
            _check_regions(regions)
            self.eng.sync_out(regions)
            self.eng.write_limits(regions)
        except CannotLower as e:
            raise _Finish(oc.UNSUPPORTED, f"pc {pc}: {e}", pc, count, regs) from None
        self.helper_calls.append((helper_id, args, ret))
        return (ret, *interpreter.POISON[1:6])

    def _tail_call(self, pc: int, regs: tuple[int, ...], count: int) -> tuple[int, ...]:
        """bpf_tail_call (the interpreter's ``_tail_call``). A single-program run can only fall
        through; a tail call that would be taken is reported as unsupported."""
        bmap = self.env.map_by_handle(regs[2])
        if bmap is None or bmap.spec.type != interpreter.MAP_TYPE_PROG_ARRAY:
            raise _Finish(oc.fault("tail_call"), f"pc {pc}: bpf_tail_call: r2 = {regs[2]:#x} is not a "
                          "prog array", pc, count, regs)
        index = regs[3] & c.M32
        name = None
        if index < bmap.spec.max_entries and self.tail_calls < interpreter.MAX_TAIL_CALL_CNT:
            name = bmap.program_at(index)
            if name is not None or self.empty_slot_consumes_budget:
                self.tail_calls += 1
        if name is not None:
            raise _Finish(oc.UNSUPPORTED, f"pc {pc}: tail call into {name!r}: the JIT runs one program",
                          pc, count, regs)
        self.helper_calls.append((BPF_FUNC_tail_call, tuple(regs[1:6]), 0))
        return interpreter.POISON[:6]

    def _partial(self, first: int, left: int) -> None:
        """The block at ``first`` does not fit in the ``left`` instructions: run exactly that
        many of its instructions, stopping before the next one (or at a fault among them)."""
        eng, compiled, base, budget = self.eng, self.compiled, self.base, self.budget
        uc = eng.uc
        members = compiled.blocks.pcs[first]
        message = f"instruction budget of {budget} exhausted at pc {{}}"
        if left == 0:
            raise _Finish(oc.BUDGET, message.format(first), first, budget, eng.live_regs())
        stop_pc = members[left]
        until = base + compiled.bodies[stop_pc]
        end = base + len(compiled.code)
        uc.ctl_remove_cache(base, end)  # translated blocks ignore a new ``until``
        try:
            uc.emu_start(base + compiled.bodies[first], until)
        except UcError as e:  # the jump to the unmapped sentinel may raise (fetch unmapped)
            if uc.reg_read(eng.spec.pc_reg) != c.SENTINEL:
                uc.ctl_remove_cache(base, end)
                raise self._crash(e) from None
        uc.ctl_remove_cache(base, end)
        stopped = uc.reg_read(eng.spec.pc_reg) == until
        if stopped:
            raise _Finish(oc.BUDGET, message.format(stop_pc), stop_pc, budget, eng.live_regs())
        vals = eng.read_control()
        code, pc = vals[11] & 0xFF, vals[11] >> 8
        count = budget - left + members.index(pc) + 1
        if code == c.EV_EXIT:
            raise _Finish(oc.OK, "", pc, count, vals[:11])
        raise _Finish(oc.fault(c.FAULTS[code]), self._fault_message(code, pc, vals), pc, count, vals[:11])

    def _fault_message(self, code: int, pc: int, vals: tuple[int, ...]) -> str:
        if code == c.EV_CALL_DEPTH:
            return f"pc {pc}: the call stack of {vals[14] + 2} frames is too deep"
        if code == c.EV_PC_OUT_OF_RANGE:
            return f"pc {pc}: execution ran past the last instruction (pc {pc})"
        if code == c.EV_UNSUPPORTED:
            return f"pc {pc}: {self.compiled.unsupported.get(pc, 'unsupported instruction')}"
        insn = self.compiled.program[pc]
        kind = c.FAULTS[code].replace("_", " ")
        return f"pc {pc}: {kind} by {insn.op.name if insn else '?'} (r0-r10: {vals[:11]})"

    def _crash(self, e: UcError) -> _Finish:
        """Unicorn stopped where no generated code should: a JIT bug, reported as ``crash``."""
        uc, compiled, base = self.eng.uc, self.compiled, self.base
        at = uc.reg_read(self.eng.spec.pc_reg)
        where = f"native {at:#x}"
        off = at - base
        if 0 <= off < compiled.stubs:
            pc = max((p for p, s in enumerate(compiled.starts) if 0 <= s <= off),
                     key=lambda p: compiled.starts[p], default=None)
            where += f" (bpf pc {pc})"
        return _Finish(oc.CRASH, f"unicorn: {e} at {where}", None, None, self.eng.live_regs())


_ENGINES: dict[str, Engine] = {}


def engine(arch: str) -> Engine:
    """The process-wide engine for ``arch`` ("x86_64" or "arm64")."""
    eng = _ENGINES.get(arch)
    if eng is None:
        if arch not in SPECS:
            raise ValueError(f"unknown JIT architecture {arch!r} (want one of {sorted(SPECS)})")
        eng = _ENGINES[arch] = Engine(arch)
    return eng
