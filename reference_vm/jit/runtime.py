"""Running JIT output under unicorn, with the interpreter's memory layout and outcome.

One :class:`Engine` per architecture lives for the whole process (:func:`engine`). Its fixed
pages (control block, native stack, tail-call area, code area) and the BPF regions are mapped
once; per run it only writes the code (when the programs are new), the control block, the
tail-call tables and the region contents, calls ``emu_start`` and reads the control block and
the regions back. Nothing runs per BPF instruction in Python: the generated code counts the
budget itself.

Decisions (see also :mod:`reference_vm.jit.common`):

* Bounds: every BPF access is checked by the generated code against the region table, with
  byte precision, because the interpreter faults on *any* byte outside a region and regions
  need not end on a page boundary (a 3-byte input, ``ldxw [r1+0]`` -> ``fault:oob_read``).
  Unicorn's page protection never decides a BPF access: each region is mapped with the whole
  pages around it, backed by an mmap that Python copies the region's bytes in and out of.
  A region *joined* to the next one (``Region.joins_next``: the ring buffer's data area) gets
  limits that reach to the end of the chain, so an access straddling the boundary is allowed
  exactly when the interpreter's ``Memory`` allows it.
* Aliases: a region whose bytes are a ``memoryview`` of another region's (the ring buffer's
  mirror) is mapped onto the *same host memory* as that region (``mem_map_ptr`` twice), so a
  record that wraps around the end of the ring is contiguous, as in Linux's double mapping.
* Addresses: x86-64 under unicorn truncates data addresses to 52 bits (kernel-half addresses
  such as the trampoline model's ``0xffffc900...`` would be unreachable), so there regions are
  mapped at ``address & (2**52 - 1)``; the bounds checks still compare full 64-bit addresses.
* Stacks: the BPF stack region sits at the interpreter's addresses and r10 points into it;
  return addresses and the r6-r10 saved by bpf-to-bpf calls go to a separate native stack, so
  the BPF stack holds exactly what the program stored (the memory snapshots agree).
* Budget: counted per basic block by the native code; when a block does not fit, this module
  re-runs exactly the remaining instructions of that block with ``until`` set (translation
  cache dropped around that run, because unicorn keeps translated blocks across ``until``).
  The native counter gets at most :data:`SLICE` instructions at a time; each refill checks the
  run's wall-clock deadline, so no budget makes a run outlive its timeout.
* Helpers: the native code stops (EV_HELPER); Python calls the helper from the table with the
  run's :class:`~reference_vm.env.Environment`, whose memory is synchronised with the engine
  around the call, writes r0 and the poisoned r1-r5 and resumes.
* Tail calls: taken natively (the backends' ``_tail_call``) when r2 is one of the run's prog
  arrays, the index is in range, the count allows it and the slot holds one of the run's
  programs; every other case stops and :meth:`_Run._tail_call` applies the interpreter's rules
  (fault, fall through, empty slots counted or not, or a taken call resumed at the target).
  Native calls append to a log in TAILTAB that Python merges into ``helper_calls`` at every
  stop, so the records stay in order.
* ``bpf_loop`` (helper 181): the native code stops; Python runs the loop and enters the
  callback natively for each iteration, in a new frame (depth + 1, r10 one frame lower, r6-r10
  restored when it returns), with the return address set to the image's ``cb_return`` stub.
  Accounting follows the interpreter's ``_bpf_loop`` / ``_run_callback`` exactly: each callback
  invocation has the run's whole budget of its own (running out is "exhausted in a callback");
  instructions in callbacks are added to the count at the end, where a total over the budget
  turns an ``ok`` into ``budget``; a fault or exit inside a callback is reported at the
  outermost pc, and the instruction a level was executing when it unwound is not counted.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import struct
import time
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
from ..memory import MAX_CALL_FRAMES, STACK_SIZE, MemoryFault, Region
from ..outcome import Outcome
from . import common as c
from .common import CannotLower, Compiled

M64 = c.M64
_CTRL_REGS = struct.Struct("<15Q")  # regs[11], event, budget, may_goto, depth
_CTRL_PKT = struct.Struct("<6Q")  # packet start, packet limits[4], end of the region table
_REGION = struct.Struct("<9Q")
_Q = struct.Struct("<Q")
_START = struct.Struct("<2Q")  # entry address, tail-call count
assert c.OFF_TAIL_CNT == c.OFF_START + 8
_LOG = struct.Struct("<6Q")
_READ_BACK = _CTRL_REGS
#: Most instructions the native counter is given at once (a wall-clock check between slices).
SLICE = 1 << 23


@dataclass(frozen=True)
class _ArchSpec:
    uc_arch: int
    uc_mode: int
    pc_reg: int
    bpf_regs: tuple[int, ...]  # unicorn register ids of BPF r0..r10
    sp_reg: int
    budget_reg: int
    lr_reg: int | None  # the link register (arm64); x86 keeps return addresses on the stack
    phys_mask: int  # what the CPU keeps of a data address


_X86 = _ArchSpec(UC_ARCH_X86, UC_MODE_64, X.UC_X86_REG_RIP, (
    X.UC_X86_REG_RAX, X.UC_X86_REG_RDI, X.UC_X86_REG_RSI, X.UC_X86_REG_RDX, X.UC_X86_REG_RCX,
    X.UC_X86_REG_R8, X.UC_X86_REG_RBX, X.UC_X86_REG_R13, X.UC_X86_REG_R14, X.UC_X86_REG_R15,
    X.UC_X86_REG_RBP), X.UC_X86_REG_RSP, X.UC_X86_REG_R12, None, (1 << 52) - 1)
_ARM64 = _ArchSpec(UC_ARCH_ARM64, UC_MODE_ARM, A.UC_ARM64_REG_PC, (
    A.UC_ARM64_REG_X7, A.UC_ARM64_REG_X0, A.UC_ARM64_REG_X1, A.UC_ARM64_REG_X2, A.UC_ARM64_REG_X3,
    A.UC_ARM64_REG_X4, A.UC_ARM64_REG_X19, A.UC_ARM64_REG_X20, A.UC_ARM64_REG_X21,
    A.UC_ARM64_REG_X22, A.UC_ARM64_REG_X25), A.UC_ARM64_REG_SP, A.UC_ARM64_REG_X26,
    A.UC_ARM64_REG_X30, M64)
SPECS = {"x86_64": _X86, "arm64": _ARM64}
#: How many compiled images stay resident (their code is not rewritten when run again).
RESIDENT = 256


def _limit(length: int, size: int) -> int:
    return length - size + 1 if length >= size else 0


Layout = tuple[tuple[str, int, int, bool, bool], ...]  # name, start, length, writable, joins_next


def _chain_ends(layout: Layout) -> list[tuple[int, int]]:
    """Per region: the end of the chain of regions it is joined to (where a read starting in it
    may end), and the end of the writable part of that chain starting with it (0 if it is
    read-only) - the interpreter's ``Memory._joined`` rules."""
    by_start = {start: k for k, (_, start, length, _, _) in enumerate(layout) if length}
    out: list[tuple[int, int]] = [(0, 0)] * len(layout)
    for k in sorted(range(len(layout)), key=lambda k: -layout[k][1]):  # later regions first
        _, start, length, writable, joins = layout[k]
        end = start + length
        nxt = by_start.get(end) if joins and length else None
        read_end, write_end = end, end if writable else 0
        if nxt is not None:
            read_end = out[nxt][0]
            if writable and out[nxt][1]:
                write_end = out[nxt][1]
        out[k] = (read_end, write_end)
    return out


def _limits_block(layout: Layout) -> tuple[bytes, bytes]:
    """The packet limits (with the end of the region table) and the region table of a memory
    layout, as they sit at OFF_PKT_START and OFF_REGIONS in the control block (at least
    INLINE_REGIONS entries: a missing one has limit 0 and matches nothing).

    Region k's limit for an access of ``size`` bytes is the number of start addresses inside
    it at which the access fits: ``len - size + 1``, or, for a region joined to the next, up to
    the end of the chain (but never beyond the region itself, so that every address belongs
    to one entry and a read-modify-write checks the write limit of the right region)."""
    if len(layout) > c.MAX_REGIONS:
        raise CannotLower(f"{len(layout)} memory regions (the control block holds {c.MAX_REGIONS})")
    pkt = next((entry for entry in layout if entry[0] == "mem"), None)
    plen = pkt[2] if pkt is not None else 0
    ends = _chain_ends(layout)
    entries = [(start, length, read_end, write_end)
               for (_, start, length, _, _), (read_end, write_end) in zip(layout, ends, strict=True)]
    entries += [(0, 0, 0, 0)] * (c.INLINE_REGIONS - len(entries))
    head = _CTRL_PKT.pack(pkt[1] if pkt is not None else 0, *(_limit(plen, s) for s in (1, 2, 4, 8)),
                          c.OFF_REGIONS + len(entries) * c.REGION_STRIDE)

    def lim(start: int, length: int, end: int, size: int) -> int:
        if not end:
            return 0
        if end == start + length:  # not joined to the next region (or that one is read-only)
            return _limit(length, size)
        return min(length, _limit(end - start, size))

    table = b"".join(
        _REGION.pack(start, *(lim(start, length, read_end, s) for s in (1, 2, 4, 8)),
                     *(lim(start, length, write_end, s) for s in (1, 2, 4, 8)))
        for start, length, read_end, write_end in entries)
    return head, table


class _Stop(Exception):
    """Ends a run: error class, message and r0-r10 (where and after how many instructions is
    recorded by the levels, see :class:`_Level`)."""

    def __init__(self, error: str, message: str, regs: Sequence[int]) -> None:
        super().__init__(message)
        self.error, self.message, self.regs = error, message, tuple(regs)


@dataclass(slots=True)
class _Level:
    """The outermost run or one bpf_loop callback invocation: its budget (each has the whole
    run budget, as in the interpreter), the part of it not yet given to the native counter,
    and, as of its last stop, its pc and instructions counted including the one at that pc."""

    budget: int
    reserve: int = 0
    count: int = 0
    pc: int = 0


@dataclass
class _Frame:
    """The CPU state a bpf_loop call restores after its callbacks: native stack pointer, link
    register (arm64), r6-r10, budget counter, and the call depth."""

    sp: int
    lr: int
    saved: tuple[int, ...]  # r6..r10
    budget: int
    depth: int


class _Window:
    """Guest pages backed by an anonymous mmap that Python reads and writes directly
    (``uc.mem_map_ptr``), so copying a region in or out costs a memcpy, not a unicorn call.
    An *alias* window maps (part of) another window's mmap a second time."""

    __slots__ = ("start", "size", "phys", "mm", "address", "view", "owner", "aliases")

    def __init__(self, uc: Uc, start: int, size: int, phys: int, owner: _Window | None = None,
                 offset: int = 0) -> None:
        self.start, self.size, self.phys = start, size, phys
        self.owner = owner
        self.aliases: list[_Window] = []
        if owner is None:
            self.mm = mmap.mmap(-1, size)
            self.address = ctypes.addressof(ctypes.c_char.from_buffer(self.mm))
            self.view = memoryview(self.mm)
        else:
            self.mm = owner.mm
            self.address = owner.address + offset
            self.view = owner.view[offset:offset + size]
        try:
            uc.mem_map_ptr(phys, size, UC_PROT_READ | UC_PROT_WRITE, self.address)
        except UcError as e:
            raise CannotLower(f"cannot map guest memory at {start:#x} ({size:#x} bytes): {e}") from None

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
        self._fixed = [_Window(uc, c.CTRL, c.CTRL_SIZE, c.CTRL),
                       _Window(uc, c.HOST_STACK, c.HOST_STACK_SIZE, c.HOST_STACK),
                       _Window(uc, c.TAILTAB, c.TAILTAB_SIZE, c.TAILTAB)]
        self.ctrl, self.stack, self.tailtab = (w.view for w in self._fixed)
        uc.mem_map(c.CODE_BASE, c.CODE_SIZE)
        self._windows: list[_Window] = []
        self._views: dict[tuple[int, int, bool], memoryview] = {}
        self._aliases: dict[int, _Window] = {}  # start -> alias window
        self._next = c.CODE_BASE
        self._resident: OrderedDict[int, tuple[Compiled, int]] = OrderedDict()
        self._limits: dict[Layout, tuple[bytes, bytes]] = {}

    # -- memory and code ------------------------------------------------------------------------

    def phys(self, address: int) -> int:
        """Where unicorn must map guest address ``address`` for the CPU to reach it."""
        return address & self.spec.phys_mask

    def view(self, region: Region) -> memoryview:
        """The engine's bytes under ``region`` (mapping whole pages around it on first use)."""
        alias = isinstance(region.data, memoryview)
        key = (region.start, len(region.data), alias)
        v = self._views.get(key)
        if v is None:
            if alias:
                w = self._aliases.get(region.start)
                if w is None or w.size != len(region.data) or w not in self._windows:
                    raise CannotLower(f"region {region.name} aliases memory that was not mapped as such")
                v = w.view
            else:
                v = self._new_view(region.start, len(region.data))
            self._views[key] = v
        return v

    def _drop(self, w: _Window) -> None:
        """Unmap a window (and the aliases of it) and forget the views into it."""
        if w not in self._windows:
            return
        for a in list(w.aliases):
            self._drop(a)
        self.uc.mem_unmap(w.phys, w.size)
        self._windows.remove(w)
        if w.owner is not None:
            if w in w.owner.aliases:
                w.owner.aliases.remove(w)
            if self._aliases.get(w.start) is w:
                del self._aliases[w.start]
        self._views = {k: v for k, v in self._views.items() if not w.start <= k[0] < w.end}

    def _new_view(self, start: int, length: int) -> memoryview:
        if not length:
            return memoryview(bytearray())
        end = start + length
        for w in self._windows:
            if w.owner is None and w.start <= start and end <= w.end:
                return w.view[start - w.start:end - w.start]
        first = start // c.PAGE * c.PAGE
        last = -(-end // c.PAGE) * c.PAGE
        if self.phys(first) < c.CODE_BASE + c.CODE_SIZE or last > 1 << 64:
            raise CannotLower(f"memory at {start:#x} overlaps the JIT's own pages")
        saved = []
        for w in [w for w in self._windows if w.start < last and first < w.end]:
            # a window under these pages is merged into the new one, keeping its contents
            # (regions can appear mid-run, when a helper allocates a map element); an alias
            # window's bytes are its owner's, which no region of this run can overlap
            if w.owner is None:
                first, last = min(first, w.start), max(last, w.end)
                saved.append((w.start, bytes(w.view)))
            self._drop(w)
        new = _Window(self.uc, first, last - first, self.phys(first))
        for at, data in saved:
            new.view[at - first:at - first + len(data)] = data
        self._windows.append(new)
        return new.view[start - first:end - first]

    def map_regions(self, regions: Sequence[Region]) -> None:
        """Map every region whose bytes are a view of another region's (the ring buffer's
        mirror) onto that region's host memory. Called before the region contents are written,
        so windows that must make room are dropped without keeping their bytes."""
        for r in regions:
            if not isinstance(r.data, memoryview):
                continue
            p = next((q for q in regions if q is not r and q.data is r.data.obj), None)
            if p is None or r.data.nbytes != len(p.data) or isinstance(p.data, memoryview):
                raise CannotLower(f"region {r.name} is a view of memory that is not a whole region")
            size = len(p.data)
            if p.start % c.PAGE or r.start % c.PAGE or size % c.PAGE or not size:
                raise CannotLower(f"region {r.name} aliases {p.name}, but they are not whole pages")
            a = self._aliases.get(r.start)
            if (a is not None and a in self._windows and a.size == size and a.owner in self._windows
                    and a.view.obj is a.owner.mm and a.owner.start <= p.start
                    and p.start + size <= a.owner.end
                    and a.address == a.owner.address + p.start - a.owner.start):
                continue
            for lo, hi in ((p.start, p.start + size), (r.start, r.start + size)):
                for w in [w for w in self._windows if w.start < hi and lo < w.end]:
                    self._drop(w)
            owner = _Window(self.uc, p.start, size, self.phys(p.start))
            self._windows.append(owner)
            alias = _Window(self.uc, r.start, size, self.phys(r.start), owner=owner)
            self._windows.append(alias)
            owner.aliases.append(alias)
            self._aliases[r.start] = alias

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
        """Engine memory -> the regions' bytearrays (an alias shares its region's bytes)."""
        for r in regions:
            if type(r.data) is not memoryview:
                r.data[:] = self.view(r)

    def sync_out(self, regions: Sequence[Region]) -> None:
        """The regions' bytearrays -> engine memory."""
        for r in regions:
            if type(r.data) is not memoryview:
                self.view(r)[:] = r.data

    def write_control(self, regs: Sequence[int], budget: int, regions: Sequence[Region], start: int) -> None:
        """The control block at entry: registers, budget, may_goto budget, call depth 0, the
        entry address, tail-call count 0, then the limits."""
        _CTRL_REGS.pack_into(self.ctrl, 0, *regs, 0, budget, interpreter.BPF_MAX_LOOPS, 0)
        _START.pack_into(self.ctrl, c.OFF_START, start, 0)
        self.write_limits(regions)

    def write_limits(self, regions: Sequence[Region]) -> None:
        """Packet limits and the region table (also after a helper changed the memory's regions,
        as map helpers do when they allocate elements)."""
        layout = tuple((r.name, r.start, len(r.data), r.writable, r.joins_next) for r in regions)
        limits = self._limits.get(layout)
        if limits is None:
            limits = self._limits[layout] = _limits_block(layout)
            if len(self._limits) > 64:
                self._limits.pop(next(iter(self._limits)))
        head, table = limits
        self.ctrl[c.OFF_PKT_START:c.OFF_PKT_START + len(head)] = head
        self.ctrl[c.OFF_REGIONS:c.OFF_REGIONS + len(table)] = table

    def write_tail_table(self, maps: Sequence[object], compiled: Compiled, base: int) -> None:
        """The run's prog arrays for the native tail call: per array its handle, how many slots
        the native code may take and where their code addresses are; an empty log."""
        tt = self.tailtab
        _Q.pack_into(tt, c.TT_LOG_N, 0)
        if not maps:
            _Q.pack_into(tt, c.TT_ARRAYS, 0)
            return
        at, slots, n = c.TT_ARRAYS, c.TT_SLOTS, 0
        starts, bases = compiled.starts, compiled.bases
        for m in maps:
            spec = getattr(m, "spec", None)
            if spec is None or spec.type != interpreter.MAP_TYPE_PROG_ARRAY or n >= c.TT_MAX_ARRAYS:
                continue
            count = min(spec.max_entries, (c.TAILTAB_SIZE - slots) // 8)
            for k in range(count):
                name = m.program_at(k)  # type: ignore[attr-defined]
                target = bases.get(name) if name is not None else None
                _Q.pack_into(tt, slots + 8 * k, base + starts[target] if target is not None else 0)
            struct.pack_into("<4Q", tt, at, m.handle, count, c.TAILTAB + slots, 0)  # type: ignore[attr-defined]
            at, slots, n = at + c.TT_ARRAY_STRIDE, slots + 8 * count, n + 1
        struct.pack_into("<4Q", tt, at, 0, 0, 0, 0)

    def live_regs(self) -> tuple[int, ...]:
        """r0-r10 from the CPU (after a stop at ``until``, where nothing was stored)."""
        return tuple(self.uc.reg_read(r) for r in self.spec.bpf_regs)

    def read_control(self) -> tuple[int, ...]:
        """r0-r10, event word, budget left, may_goto left, depth, as stored at the last stop."""
        return _READ_BACK.unpack_from(self.ctrl, 0)

    # -- running ----------------------------------------------------------------------------------

    def run(self, compiled: Compiled, env: Environment, regs: Sequence[int], *, budget: int,
            helpers: HelperTable, empty_slot_consumes_budget: bool = False, entry: int = 0,
            deadline: float | None = None) -> Outcome:
        """Run ``compiled`` from its pc ``entry`` (a program's first pc) with ``regs`` (r0-r10)
        and ``env``'s memory; ``deadline`` (``time.monotonic()``) bounds the wall-clock time."""
        if compiled.arch != self.arch:
            raise ValueError(f"{compiled.arch} code on the {self.arch} engine")
        if compiled.blocks.first[entry] != entry:
            raise ValueError(f"pc {entry} does not start a block")
        regions = env.memory.regions
        self.map_regions(regions)
        base = self.load(compiled)
        self.sync_out(regions)
        first = min(budget, SLICE)
        self.write_control(regs, first, regions, base + compiled.starts[entry])
        self.write_tail_table(env.maps, compiled, base)
        run = _Run(self, compiled, base, env, helpers, budget, deadline)
        run.empty_slot_consumes_budget = empty_slot_consumes_budget
        error, message, pc, count, end_regs = run.run(entry, budget - first)
        self.sync_in(env.memory.regions)
        return Outcome(error=error, r0=end_regs[0] if error == oc.OK else None, regs=end_regs,
                       memory=env.memory.snapshot(), insn_count=count, exit_pc=pc,
                       helper_calls=run.helper_calls, message=message,
                       maps={bm.spec.name: bm.snapshot() for bm in env.maps},
                       trace=[t.decode("latin-1") for t in env.trace])


class _Run:
    """The event loop of one run: start, service helper stops and callbacks, finish."""

    def __init__(self, eng: Engine, compiled: Compiled, base: int, env: Environment,
                 helpers: HelperTable, budget: int, deadline: float | None) -> None:
        self.eng, self.compiled, self.base = eng, compiled, base
        self.env, self.helpers, self.budget = env, helpers, budget
        self.deadline = deadline
        self.helper_calls: list[tuple[int, tuple[int, ...], int]] = []
        self.empty_slot_consumes_budget = False
        self.nested = 0  # instructions executed inside callbacks (the interpreter's nested_count)
        self.top = _Level(budget)

    def run(self, entry: int, reserve: int) -> tuple[str, str, int | None, int | None, tuple[int, ...]]:
        """Error, message, exit pc (local to its program), instruction count, r0-r10."""
        top = self.top
        top.reserve, top.pc = reserve, entry
        try:
            self._drive(self.base + self.compiled.entry, top)
            raise AssertionError("the outermost level returned like a callback")  # pragma: no cover
        except _Stop as s:
            stop = s
        self._drain()
        if stop.error in (oc.CRASH, oc.TIMEOUT):
            return stop.error, stop.message, None, None, stop.regs
        count = top.count + self.nested
        error, message = stop.error, stop.message
        if error == oc.OK and count > self.budget:
            error, message = oc.BUDGET, f"instruction budget of {self.budget} exhausted (callbacks included)"
        return error, message, self.compiled.local_pc(top.pc), count, stop.regs

    # -- the event loop ---------------------------------------------------------------------------

    def _drive(self, begin: int, lvl: _Level) -> tuple[int, ...]:
        """Run native code from ``begin`` for ``lvl`` until a callback returns (the control
        block is returned); everything else that ends the level raises :class:`_Stop`."""
        eng, compiled, base = self.eng, self.compiled, self.base
        uc, tail = eng.uc, compiled.blocks.tail
        while True:
            try:
                uc.emu_start(begin, c.SENTINEL)
            except UcError as e:
                raise self._crash(e) from None
            vals = eng.read_control()
            self._drain()
            code, pc, left = vals[11] & 0xFF, vals[11] >> 8, vals[12]
            if code == c.EV_BUDGET:
                if lvl.reserve:
                    self._check_deadline()
                    give = min(lvl.reserve, SLICE)
                    lvl.reserve -= give
                    uc.reg_write(eng.spec.budget_reg, left + give)
                    begin = base + compiled.starts[pc]
                    continue
                self._partial(pc, 0, left, lvl)
            if code == c.EV_CB_RETURN:
                lvl.count = lvl.budget - left - lvl.reserve + 1  # + the return, as the interpreter counts
                return vals
            lvl.pc = pc
            lvl.count = lvl.budget - left - lvl.reserve - tail[pc]
            regs = vals[:11]
            if code == c.EV_HELPER:
                begin = self._helper(pc, regs, lvl)
                continue
            if code == c.EV_EXIT:
                raise _Stop(oc.OK, "", regs)
            raise _Stop(oc.fault(c.FAULTS[code]), self._fault_message(code, pc, vals), regs)

    def _drain(self) -> None:
        """Move the native tail calls' log into helper_calls."""
        tt = self.eng.tailtab
        n = _Q.unpack_from(tt, c.TT_LOG_N)[0]
        if n:
            for k in range(n):
                *args, ret = _LOG.unpack_from(tt, c.TT_LOG + c.TT_LOG_STRIDE * k)
                self.helper_calls.append((BPF_FUNC_tail_call, tuple(args), ret))
            _Q.pack_into(tt, c.TT_LOG_N, 0)

    def _check_deadline(self) -> None:
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise _Stop(oc.TIMEOUT, "the run's wall-clock time limit was reached", self.eng.live_regs())

    # -- helpers, tail calls, bpf_loop --------------------------------------------------------------

    def _helper(self, pc: int, regs: tuple[int, ...], lvl: _Level) -> int:
        """Run the helper of the call at ``pc`` (the interpreter's ``_call_helper`` rules);
        returns the address to continue at."""
        self._check_deadline()
        insn = self.compiled.program[pc]
        assert isinstance(insn, c.Insn)
        helper_id = insn.imm if insn.op.kind is Kind.CALL else regs[insn.dst]
        if insn.op.kind is Kind.CALL and helper_id == BPF_FUNC_tail_call:
            return self._tail_call(pc, regs)
        if insn.op.kind is Kind.CALL and helper_id == BPF_FUNC_loop:
            values = self._bpf_loop(pc, regs)
        else:
            values = self._call(pc, helper_id, regs)
        struct.pack_into("<6Q", self.eng.ctrl, c.OFF_REGS, *values)
        return self.base + self.compiled.resume[pc]

    def _call(self, pc: int, helper_id: int, regs: tuple[int, ...]) -> tuple[int, ...]:
        h = self.helpers.get(helper_id)
        if h is None:
            raise _Stop(oc.fault("unknown_helper"), f"pc {pc}: call to unknown helper {helper_id}", regs)
        args = tuple(regs[1:6])
        eng, memory = self.eng, self.env.memory
        eng.sync_in(memory.regions)
        try:
            ret = h.fn(self.env, *args) & M64
        except (interpreter.Fault, MemoryFault) as e:
            eng.sync_out(memory.regions)
            raise _Stop(oc.fault(e.kind), f"pc {pc}: {e}", regs) from None
        try:  # the helper may have added regions (map elements)
            eng.map_regions(memory.regions)
            eng.sync_out(memory.regions)
            eng.write_limits(memory.regions)
        except CannotLower as e:
            raise _Stop(oc.UNSUPPORTED, f"pc {pc}: {e}", regs) from None
        self.helper_calls.append((helper_id, args, ret))
        return (ret, *interpreter.POISON[1:6])

    def _tail_call(self, pc: int, regs: tuple[int, ...]) -> int:
        """bpf_tail_call when the native path declined (the interpreter's ``_tail_call``):
        fault, fall through (counted or not), or - for a slot the native table does not
        hold - the call taken from here. Returns the address to continue at."""
        eng = self.eng
        bmap = self.env.map_by_handle(regs[2])
        if bmap is None or bmap.spec.type != interpreter.MAP_TYPE_PROG_ARRAY:
            raise _Stop(oc.fault("tail_call"), f"pc {pc}: bpf_tail_call: r2 = {regs[2]:#x} is not a "
                        "prog array", regs)
        index = regs[3] & c.M32
        count = _Q.unpack_from(eng.ctrl, c.OFF_TAIL_CNT)[0]
        target = None
        if index < bmap.spec.max_entries and count < c.MAX_TAIL_CALL_CNT:
            name = bmap.program_at(index)
            if name is not None or self.empty_slot_consumes_budget:
                _Q.pack_into(eng.ctrl, c.OFF_TAIL_CNT, count + 1)
            if name is not None:
                target = self.compiled.bases.get(name)
                if target is None:
                    raise _Stop(oc.UNSUPPORTED, f"pc {pc}: tail call into {name!r}, which is not one of "
                                "the run's programs", regs)
        self.helper_calls.append((BPF_FUNC_tail_call, tuple(regs[1:6]), int(target is not None)))
        poison = interpreter.POISON
        if target is None:
            struct.pack_into("<6Q", eng.ctrl, c.OFF_REGS, *poison[:6])
            return self.base + self.compiled.resume[pc]
        for k in (0, 2, 3, 4, 5):
            eng.uc.reg_write(eng.spec.bpf_regs[k], poison[k])
        _Q.pack_into(eng.ctrl, c.OFF_DEPTH, 0)  # the target's calls count from this frame
        return self.base + self.compiled.starts[target]

    def _bpf_loop(self, pc: int, regs: tuple[int, ...]) -> tuple[int, ...]:
        """bpf_loop(nr_loops, callback_fn, callback_ctx, flags) (the interpreter's ``_bpf_loop``);
        returns the new r0-r5."""
        nr, fn, ctx, flags = regs[1], regs[2], regs[3], regs[4]
        args = tuple(regs[1:6])
        if flags:
            result = -errno.EINVAL & M64
        elif nr > interpreter.BPF_MAX_LOOPS:
            result = -errno.E2BIG & M64
        else:
            offset = fn - interpreter.FUNC_BASE
            target = offset // 8
            if offset % 8 or not 0 <= target < len(self.compiled.program):
                raise _Stop(oc.fault("bad_callback"), f"pc {pc}: bpf_loop: r2 = {fn:#x} is not a function "
                            "address", regs)
            result = nr
            frame = self._save_frame()
            for k in range(nr):
                if self._callback(target, (k, ctx, 0, 0, 0), frame) != 0:
                    result = k + 1
                    break
            self._restore_frame(frame)
        self.helper_calls.append((BPF_FUNC_loop, args, result))
        return (result, *interpreter.POISON[1:6])

    def _save_frame(self) -> _Frame:
        uc, spec = self.eng.uc, self.eng.spec
        return _Frame(uc.reg_read(spec.sp_reg), uc.reg_read(spec.lr_reg) if spec.lr_reg is not None else 0,
                      tuple(uc.reg_read(r) for r in spec.bpf_regs[6:]), uc.reg_read(spec.budget_reg),
                      _Q.unpack_from(self.eng.ctrl, c.OFF_DEPTH)[0])

    def _restore_frame(self, frame: _Frame) -> None:
        uc, spec = self.eng.uc, self.eng.spec
        uc.reg_write(spec.sp_reg, frame.sp)
        if spec.lr_reg is not None:
            uc.reg_write(spec.lr_reg, frame.lr)
        for r, v in zip(spec.bpf_regs[6:], frame.saved, strict=True):
            uc.reg_write(r, v)
        uc.reg_write(spec.budget_reg, frame.budget)
        _Q.pack_into(self.eng.ctrl, c.OFF_DEPTH, frame.depth)

    def _callback(self, target: int, args: tuple[int, ...], frame: _Frame) -> int:
        """One callback invocation (the interpreter's ``_run_callback``): a new frame below the
        bpf_loop caller's, entered natively at ``target`` with the return address set to the
        image's ``cb_return``; returns the callback's r0."""
        self._check_deadline()
        eng, spec, uc = self.eng, self.eng.spec, self.eng.uc
        if frame.depth + 1 >= MAX_CALL_FRAMES:
            raise _Stop(oc.fault("call_depth"), f"the call stack of {frame.depth + 2} frames is too deep",
                        eng.live_regs())
        _Q.pack_into(eng.ctrl, c.OFF_DEPTH, frame.depth + 1)
        for r, v in zip(spec.bpf_regs[1:6], args, strict=True):
            uc.reg_write(r, v)
        for r, v in zip(spec.bpf_regs[6:10], frame.saved[:4], strict=True):
            uc.reg_write(r, v)
        uc.reg_write(spec.bpf_regs[10], (frame.saved[4] - STACK_SIZE) & M64)
        ret = self.base + self.compiled.cb_return
        if spec.lr_reg is None:  # x86: the return address on the native stack
            sp = frame.sp - 8
            _Q.pack_into(eng.stack, sp - c.HOST_STACK, ret)
            uc.reg_write(spec.sp_reg, sp)
        else:
            uc.reg_write(spec.sp_reg, frame.sp)
            uc.reg_write(spec.lr_reg, ret)
        lvl = _Level(self.budget, count=1)
        give = min(self.budget, SLICE)
        lvl.reserve = self.budget - give
        uc.reg_write(spec.budget_reg, give)
        try:
            vals = self._drive(self._enter(target, give, lvl), lvl)
            regs = vals[:6] + frame.saved
            if lvl.count > lvl.budget:  # the callback ran the whole budget, its exit included
                raise _Stop(oc.BUDGET, f"instruction budget of {self.budget} exhausted in a callback "
                            f"(pc {self.top.pc})", regs)
            for r, v in zip(spec.bpf_regs[6:], frame.saved, strict=True):
                uc.reg_write(r, v)
            _Q.pack_into(eng.ctrl, c.OFF_DEPTH, frame.depth)
            return vals[0]
        finally:
            self.nested += lvl.count - 1

    def _enter(self, target: int, left: int, lvl: _Level) -> int:
        """The address at which a level starts at ``target`` with ``left`` instructions on the
        native counter: the block's budget check if ``target`` starts a block, else the code of
        ``target`` with its share of the block counted here (or a partial run if it does not
        fit)."""
        blocks, base = self.compiled.blocks, self.base
        first = blocks.first[target]
        if first == target:
            return base + self.compiled.starts[target]
        members = blocks.pcs[first]
        k = members.index(target)
        rest = len(members) - k
        if rest > left + lvl.reserve:
            left += lvl.reserve
            lvl.reserve = 0
            self._partial(first, k, left, lvl)
        take = max(rest - left, 0)
        lvl.reserve -= take
        self.eng.uc.reg_write(self.eng.spec.budget_reg, left + take - rest)
        return base + self.compiled.bodies[target]

    def _partial(self, first: int, k: int, left: int, lvl: _Level) -> None:
        """Members ``k..`` of the block at ``first`` do not fit in the ``left`` instructions:
        run exactly that many of them, stopping before the next one (or at a fault among them).
        Always raises :class:`_Stop`."""
        eng, compiled, base = self.eng, self.compiled, self.base
        uc = eng.uc
        members = compiled.blocks.pcs[first]
        before = lvl.budget - left  # instructions of this level before members[k]
        if left:
            stop_pc = members[k + left]
            until = base + compiled.bodies[stop_pc]
            end = base + len(compiled.code)
            uc.ctl_remove_cache(base, end)  # translated blocks ignore a new ``until``
            try:
                uc.emu_start(base + compiled.bodies[members[k]], until)
            except UcError as e:  # the jump to the unmapped sentinel may raise (fetch unmapped)
                if uc.reg_read(eng.spec.pc_reg) != c.SENTINEL:
                    uc.ctl_remove_cache(base, end)
                    raise self._crash(e) from None
            uc.ctl_remove_cache(base, end)
            if uc.reg_read(eng.spec.pc_reg) != until:
                vals = eng.read_control()
                self._drain()
                code, pc = vals[11] & 0xFF, vals[11] >> 8
                lvl.pc, lvl.count = pc, before + members.index(pc) - k + 1
                if code == c.EV_EXIT:
                    raise _Stop(oc.OK, "", vals[:11])
                raise _Stop(oc.fault(c.FAULTS[code]), self._fault_message(code, pc, vals), vals[:11])
        else:
            stop_pc = members[k]
        if lvl is self.top:
            lvl.pc, lvl.count = stop_pc, lvl.budget
            raise _Stop(oc.BUDGET, f"instruction budget of {lvl.budget} exhausted at pc {stop_pc}",
                        eng.live_regs())
        lvl.count = lvl.budget + 1
        raise _Stop(oc.BUDGET, f"instruction budget of {lvl.budget} exhausted in a callback "
                    f"(pc {self.top.pc})", eng.live_regs())

    def _fault_message(self, code: int, pc: int, vals: tuple[int, ...]) -> str:
        program = self.compiled.program
        if code == c.EV_CALL_DEPTH:
            return f"pc {pc}: the call stack of {vals[14] + 2} frames is too deep"
        if code == c.EV_PC_OUT_OF_RANGE:
            if program[pc] is None:
                return f"pc {pc}: execution reached the second slot of an lddw"
            return f"pc {pc}: execution ran past the last instruction (pc {self.compiled.local_pc(pc)})"
        if code == c.EV_UNSUPPORTED:
            return f"pc {pc}: {self.compiled.unsupported.get(pc, 'unsupported instruction')}"
        insn = program[pc]
        kind = c.FAULTS[code].replace("_", " ")
        name = insn.op.name if isinstance(insn, c.Insn) else "?"
        return f"pc {pc}: {kind} by {name} (r0-r10: {vals[:11]})"

    def _crash(self, e: UcError) -> _Stop:
        """Unicorn stopped where no generated code should: a JIT bug, reported as ``crash``."""
        uc, compiled, base = self.eng.uc, self.compiled, self.base
        at = uc.reg_read(self.eng.spec.pc_reg)
        where = f"native {at:#x}"
        off = at - base
        if 0 <= off < compiled.stubs:
            pc = max((p for p, s in enumerate(compiled.starts) if 0 <= s <= off),
                     key=lambda p: compiled.starts[p], default=None)
            where += f" (bpf pc {pc})"
        return _Stop(oc.CRASH, f"unicorn: {e} at {where}", self.eng.live_regs())


_ENGINES: dict[str, Engine] = {}


def engine(arch: str) -> Engine:
    """The process-wide engine for ``arch`` ("x86_64" or "arm64")."""
    eng = _ENGINES.get(arch)
    if eng is None:
        if arch not in SPECS:
            raise ValueError(f"unknown JIT architecture {arch!r} (want one of {sorted(SPECS)})")
        eng = _ENGINES[arch] = Engine(arch)
    return eng
