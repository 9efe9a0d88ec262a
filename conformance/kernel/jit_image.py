"""Run the kernel's own x86-64 JIT image of a ``.data`` case under unicorn (kernel-oracle.md §10).

The case is loaded exactly as the ``kernel`` target loads it (:mod:`.harness`, :mod:`.wiring`:
a SOCKET_FILTER with r1 = the value of an mmapable ARRAY map holding ``-- mem`` and an epilogue
that stores the full r0 into a result map value). Instead of ``BPF_PROG_TEST_RUN``, the native
code the kernel JIT produced is fetched with ``BPF_OBJ_GET_INFO_BY_FD`` and executed by unicorn:

* **Relocation.** Every function image sits at ``jited_ksyms[i] + DELTA``. ``DELTA`` is
  ``-0xffffffff00000000`` (mod 2**64): unicorn cannot fetch or access ``0xffffffff8...`` /
  ``0xffffffffc...``, and one common delta for the images, the kernel text the images call or
  jump to, and the static per-cpu data keeps every ``rel32`` and every per-cpu address valid.
* **Return thunks.** With ``MITIGATION_RETHUNK`` the epilogue is ``leave; jmp <thunk>``; every
  ``*_return_thunk`` symbol of ``/proc/kallsyms`` (``its_return_thunk`` on the reference VM,
  ``srso_return_thunk``, ``__x86_return_thunk``, ...) gets a ``ret`` at its shifted address.
* **Helpers.** A ``call rel32`` into kernel text lands on a ``ret`` stub at the shifted address of
  the helper's kernel function; a code hook there answers from bpfcheck's helper table
  (:data:`reference_vm.helpers.DEFAULT_HELPERS`) with a fresh, deterministic
  :class:`~reference_vm.env.Environment` per run. Only the helpers the kernel target loads for
  ``.data`` cases (:data:`.harness.DATA_CASE_HELPERS`) are answered; any other kernel function the
  image calls or jumps to gets an ``int3`` stub whose hook stops the run as *unsupported* (a SKIP
  naming the function) when it is reached, e.g. ``arch_bpf_timed_may_goto`` once a ``may_goto``
  budget runs out.
* **One engine per process.** Creating a unicorn engine costs as much as a run, so one is kept per
  process (:class:`_Machine`): each run maps its pages, zeroes the stack and registers, flushes
  the translation cache and unmaps everything afterwards.
* **Map values.** ``ld_imm64 src=BPF_PSEUDO_MAP_VALUE`` becomes ``movabs reg, <kernel address of
  the value + off>``. Unicorn cannot access the upper half of the address space, so these
  immediates are *patched* to where the emulator maps the values: the k-th ``movabs`` of the image
  is matched with the k-th ``ld_imm64`` of the xlated program that the JIT emits as a ``movabs``
  (map values always; constants that fit no 32-bit form), and the map is identified by the map id
  the xlated dump carries in ``imm``. The input value is filled from ``-- mem``, the result value
  starts zeroed, as the kernel's do.
* **Per-cpu data.** The emulated CPU's per-cpu area is the static per-cpu data itself, shifted:
  GS_BASE is ``DELTA`` and the shifted page of every ``gs:[disp32]`` operand is mapped, zeroed. An
  inlined ``bpf_get_smp_processor_id`` is ``mov r, &cpu_number; add r, gs:[this_cpu_off]; mov eax,
  [r]``: the ``this_cpu_off`` slot holds ``DELTA`` and the variable's shifted page is mapped
  zeroed, so it answers CPU 0, as the interpreter's ``Environment.cpu``.
* **Stack, ctx, end.** A 64 KiB stack whose top holds a sentinel return address; emulation runs
  until the sentinel, bounded by :data:`INSN_BOUND` x86 instructions. r1 (rdi) is an unmapped fake
  ctx pointer: the wiring overwrites r1 first, so the image never touches it (an access would be
  reported). Code pages are filled with ``int3`` around the images and stubs, so a stray jump
  stops the run instead of running zeros.

The outcome has r0 from rax, checked against the r0 the epilogue stored into the result value
(and its flag), and the input memory read back from the emulated value. Emulation problems are
``error:emulation`` outcomes (an ERROR verdict), never a value.
"""

from __future__ import annotations

import bisect
import functools
import os
import platform
import struct
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

from reference_vm.env import Environment
from reference_vm.helpers import DEFAULT_HELPERS
from reference_vm.isa import BY_OPCODE, Kind
from reference_vm.memory import Memory
from reference_vm.outcome import UNSUPPORTED, Outcome

from ..case import Case
from . import syscall as sc
from .harness import (
    CAPTURE_ERROR,
    DATA_CASE_HELPERS,
    KERNEL_ERROR,
    PROG_TYPE,
    _mapped_array,
    verifier_outcome,
)
from .wiring import RESULT_FLAG_OFF, RESULT_SIZE, wire

M64 = (1 << 64) - 1
#: The common relocation: ``0xffffffff8...``/``0xffffffffc...`` -> ``0x8...``/``0xc...`` (§10, item 1).
DELTA = -0xFFFFFFFF00000000 & M64
#: Relocated kernel addresses (text, modules, static per-cpu data) must land in this window.
RELOCATED_WINDOW = range(0x8000_0000, 0x1_0000_0000)
PAGE = 0x1000
STACK_BASE = 0x1000_0000
STACK_SIZE = 0x1_0000
SENTINEL = 0x2000_0000
#: r1 at entry: an unmapped fake ctx (the wiring replaces r1 before the case runs).
FAKE_CTX = 0x3000_0000
#: Where the map values the image's ``movabs`` name are mapped (each on its own pages).
VALUE_BASE = 0x4000_0000
#: x86 instructions per run; an accepted program terminates well before (the verifier's 1M
#: processed-instruction limit), so reaching it is an emulation error, not a program outcome.
INSN_BOUND = 50_000_000
EMULATION_ERROR = "error:emulation"
MSR_GS_BASE = 0xC0000101
INT3, RET = 0xCC, 0xC3
#: Kernel functions of helpers whose name differs from the helper table's.
KERNEL_FUNCTIONS = {7: "bpf_user_rnd_u32"}
KALLSYMS = "/proc/kallsyms"
#: ``*_return_thunk`` symbols that are not thunks (``set_return_thunk`` picks one at boot).
NOT_THUNKS = frozenset({"set_return_thunk"})


class Unsupported(Exception):
    """The image does something kernel-jit does not emulate (an UNSUPPORTED outcome)."""


class EmulationError(Exception):
    """The image could not be prepared or run (an ``error:emulation`` outcome)."""


# --- /proc/kallsyms ------------------------------------------------------------------------------


def helper_symbols() -> dict[str, int]:
    """Kernel function name -> helper id, for the helpers a ``.data`` case may call."""
    out = {}
    for hid in sorted(DATA_CASE_HELPERS):
        helper = DEFAULT_HELPERS.get(hid)
        if helper is not None:
            out[KERNEL_FUNCTIONS.get(hid, helper.name)] = hid
    return out


@dataclass(frozen=True)
class KernelSymbols:
    """The few kallsyms entries the emulation needs."""

    thunks: dict[int, str]  # address -> name of every *_return_thunk
    helpers: dict[int, int]  # address -> helper id


@functools.cache
def kernel_symbols() -> KernelSymbols:
    """Read ``/proc/kallsyms`` once per process. Raises ``OSError`` when it is unreadable and
    ``PermissionError`` when its addresses are hidden (``kptr_restrict``)."""
    wanted = helper_symbols()
    thunks: dict[int, str] = {}
    helpers: dict[int, int] = {}
    nonzero = False
    with open(KALLSYMS, encoding="ascii", errors="replace") as f:
        for line in f:
            parts = line.split()
            if len(parts) != 3 or parts[1] not in "tT":  # vmlinux text only (no [module])
                continue
            addr, name = int(parts[0], 16), parts[2]
            nonzero = nonzero or addr != 0
            if name.endswith("_return_thunk") and name not in NOT_THUNKS and not name.startswith("__pfx_"):
                if name.startswith("__pi_"):  # the position-independent alias of __x86_return_thunk
                    thunks.setdefault(addr, name)
                else:
                    thunks[addr] = name
            elif name in wanted:
                helpers[addr] = wanted[name]
    if not nonzero:
        raise PermissionError(f"{KALLSYMS} shows only zero addresses (kptr_restrict, or no CAP_SYSLOG)")
    return KernelSymbols(thunks, helpers)


@functools.cache
def _all_text_symbols() -> tuple[list[int], list[str]]:
    """Every text symbol, sorted by address (only for messages naming an unsupported target)."""
    entries = []
    try:
        with open(KALLSYMS, encoding="ascii", errors="replace") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3 and parts[1] in "tTwW":
                    entries.append((int(parts[0], 16), parts[2] + (f" {parts[3]}" if len(parts) > 3 else "")))
    except OSError:
        pass
    entries.sort()
    return [a for a, _ in entries], [n for _, n in entries]


def symbol_name(addr: int) -> str:
    """``name`` or ``name+0x10`` for a kernel address, ``?`` when unknown."""
    addrs, names = _all_text_symbols()
    i = bisect.bisect_right(addrs, addr) - 1
    if i < 0:
        return "?"
    return names[i] if addrs[i] == addr else f"{names[i]}+{addr - addrs[i]:#x}"


# --- Image analysis --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Movabs:
    func: int  # function index
    offset: int  # of the instruction inside the function's image
    imm: int


@dataclass
class ImageInfo:
    """What a linear sweep of the image found (kernel addresses, not relocated)."""

    functions: list[tuple[int, bytes]]  # (ksym, image bytes)
    movabs: list[Movabs] = field(default_factory=list)
    helper_calls: dict[int, int] = field(default_factory=dict)  # target -> helper id
    thunks: set[int] = field(default_factory=set)
    percpu_slots: set[int] = field(default_factory=set)  # every gs:[disp32] the image reads or writes
    this_cpu_off: set[int] = field(default_factory=set)  # gs:[disp] of ``add r64, gs:[disp32]``
    percpu_vars: set[int] = field(default_factory=set)  # addresses added to this_cpu_off
    unknown: dict[int, str] = field(default_factory=dict)  # other external targets -> why unsupported

    def inside(self, addr: int) -> bool:
        return any(start <= addr < start + len(code) for start, code in self.functions)


def _s32(b: bytes) -> int:
    return int.from_bytes(b, "little", signed=True)


def split_functions(dump: sc.JitedProg) -> list[tuple[int, bytes]]:
    """``(ksym, bytes)`` per function; a dump without ksyms cannot be relocated."""
    if not dump.jited:
        raise Unsupported("the program was not JIT-compiled (net.core.bpf_jit_enable = 0?)")
    if not dump.ksyms:
        raise EmulationError("OBJ_GET_INFO_BY_FD gave no jited_ksyms: the image cannot be placed")
    lens = dump.func_lens or (len(dump.jited),)
    if len(lens) != len(dump.ksyms) or sum(lens) != len(dump.jited):
        raise EmulationError(f"jited_func_lens {list(lens)} do not split the {len(dump.jited)}-byte image "
                             f"into {len(dump.ksyms)} functions")
    out, pos = [], 0
    for ksym, n in zip(dump.ksyms, lens, strict=True):
        out.append((ksym, dump.jited[pos:pos + n]))
        pos += n
    return out


@functools.cache
def _disassembler(detail: bool = False) -> Any:
    import capstone

    md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    md.detail = detail
    return md


def _gs_slot(b: bytes, addr: int, off: int) -> int:
    """The absolute per-cpu offset a ``gs:[disp32]`` instruction addresses."""
    from capstone import x86

    insn = next(_disassembler(detail=True).disasm(b, addr), None)
    for op in insn.operands if insn is not None else ():
        if op.type == x86.X86_OP_MEM and op.mem.segment == x86.X86_REG_GS:
            if op.mem.base == 0 and op.mem.index == 0:
                return op.mem.disp & M64
    text = f"{insn.mnemonic} {insn.op_str}" if insn is not None else b.hex()
    raise Unsupported(f"per-cpu access {text} at +{off:#x} is not emulated")


def analyse(dump: sc.JitedProg, syms: KernelSymbols) -> ImageInfo:
    """Sweep every function image: ``movabs``, external calls/jumps, per-cpu accesses.

    External ``call rel32`` targets are helpers of :func:`helper_symbols` and external
    ``jmp rel32`` targets return thunks; any other external target is recorded in
    ``unknown`` (reaching it at run time is unsupported: ``arch_bpf_timed_may_goto`` is called
    only when a ``may_goto`` budget runs out). Indirect branches and per-cpu accesses through a
    register raise :class:`Unsupported`.
    """
    info = ImageInfo(split_functions(dump))
    md = _disassembler()
    for fi, (start, code) in enumerate(info.functions):
        prev: tuple[int, int] | None = None  # (reg, value) of the last ``mov r64, simm32``
        end = 0
        for addr, size, mnemonic, _ops in md.disasm_lite(code, start):
            off = addr - start
            b = code[off:off + size]
            end = off + size
            mov = prev
            prev = None
            if size == 10 and b[0] in (0x48, 0x49) and 0xB8 <= b[1] <= 0xBF:
                info.movabs.append(Movabs(fi, off, int.from_bytes(b[2:10], "little")))
            elif b[0] == 0xE8 and size == 5:
                target = (addr + 5 + _s32(b[1:5])) & M64
                if not info.inside(target):
                    if target in syms.helpers:
                        info.helper_calls[target] = syms.helpers[target]
                    else:
                        info.unknown[target] = (f"the JIT image calls kernel function {symbol_name(target)} "
                                                f"({target:#x}); kernel-jit answers only the helpers "
                                                f"{', '.join(sorted(helper_symbols()))}")
            elif b[0] == 0xE9 and size == 5:
                target = (addr + 5 + _s32(b[1:5])) & M64
                if not info.inside(target):
                    if target in syms.thunks:
                        info.thunks.add(target)
                    else:
                        info.unknown[target] = (f"the JIT image jumps to kernel code {symbol_name(target)} "
                                                f"({target:#x}) (a tail call?); not emulated")
            elif mnemonic in ("ret", "retq"):
                pass  # a kernel without return thunks
            elif b[0] == 0x65:
                info.percpu_slots.add(_gs_slot(b, addr, off))
                # add r64, gs:[this_cpu_off]: 65 REX.W 03 modrm(mod=00, rm=100) SIB=0x25 disp32
                # (BPF_MOV64_PERCPU_REG), after mov r64, simm32 (the per-cpu variable's address)
                if size == 9 and b[1] in (0x48, 0x4C) and b[2] == 0x03 and b[3] & 0xC7 == 0x04 \
                        and b[4] == 0x25:
                    info.this_cpu_off.add(_s32(b[5:9]) & M64)
                    reg = ((b[1] >> 2) & 1) << 3 | (b[3] >> 3) & 7
                    if mov is not None and mov[0] == reg:
                        info.percpu_vars.add(mov[1])
            elif mnemonic in ("call", "jmp") and not _ops.startswith("0x"):
                raise Unsupported(f"indirect {mnemonic} {_ops} at +{off:#x} is not emulated")
            if size == 7 and b[0] in (0x48, 0x49) and b[1] == 0xC7 and b[2] & 0xF8 == 0xC0:
                prev = ((b[0] & 1) << 3 | (b[2] & 7), _s32(b[3:7]) & M64)
        if end != len(code):
            raise EmulationError(f"capstone stopped at +{end:#x} of the {len(code)}-byte image "
                                 f"of function {fi}")
    return info


def xlated_movabs(xlated: bytes) -> list[tuple[int, int, int]]:
    """``(src, imm64, second imm)`` of every xlated ``ld_imm64`` the JIT emits as ``movabs``.

    ``emit_mov_imm64`` uses a 32-bit ``mov`` when the value fits u32 or s32; pseudo sources
    (map values: ``imm`` = map id, next ``imm`` = offset in the dump) are kernel pointers.
    """
    out = []
    pc, n = 0, len(xlated) // 8
    while pc < n:
        code, regs, _off, imm = struct.unpack_from("<BBhi", xlated, 8 * pc)
        rows = BY_OPCODE.get(code, ())  # xlated code may hold kernel-internal opcodes: not in the table
        if rows and rows[0].kind is Kind.LDDW and pc + 1 < n:
            hi, = struct.unpack_from("<i", xlated, 8 * (pc + 1) + 4)
            src = regs >> 4
            value = ((hi & 0xFFFFFFFF) << 32) | (imm & 0xFFFFFFFF)
            fits = value <= 0xFFFFFFFF or value >= 0xFFFFFFFF80000000
            if src != 0 or not fits:
                out.append((src, value if src == 0 else imm & 0xFFFFFFFF, hi & 0xFFFFFFFF))
            pc += 2
        else:
            pc += 1
    return out


# --- Emulation -------------------------------------------------------------------------------------


@dataclass
class ValueRegion:
    """One map value the image addresses, as the emulator maps it."""

    map_id: int
    data: bytes  # initial contents (len = the map's value_size)
    base: int = 0  # emulator address


@dataclass
class Run:
    rax: int
    values: dict[int, bytes]  # map id -> final contents
    helper_calls: list[tuple[int, tuple[int, ...], int]]


def _relocate(addr: int) -> int:
    out = (addr + DELTA) & M64
    if out not in RELOCATED_WINDOW:
        raise EmulationError(f"kernel address {addr:#x} does not relocate into the emulator's window "
                             f"({out:#x}); only 0xffffffff80000000.. are handled")
    return out


def _page(addr: int) -> int:
    return addr & ~(PAGE - 1)


def _round_up(n: int) -> int:
    return (n + PAGE - 1) & ~(PAGE - 1)


def _ranges(pages: dict[int, bytearray]) -> list[tuple[int, int]]:
    """Contiguous runs of pages as ``(start, size)``, for one ``mem_map`` each."""
    out: list[tuple[int, int]] = []
    for p in sorted(pages):
        if out and out[-1][0] + out[-1][1] == p:
            out[-1] = (out[-1][0], out[-1][1] + PAGE)
        else:
            out.append((p, PAGE))
    return out


def emulate(dump: sc.JitedProg, values: dict[int, ValueRegion], *, bound: int = INSN_BOUND,
            syms: KernelSymbols | None = None) -> Run:
    """Run the dumped image once. ``values`` maps map id -> the value the image's map-value
    ``movabs`` instructions name. Raises :class:`Unsupported` or :class:`EmulationError`."""
    syms = syms if syms is not None else kernel_symbols()
    info = analyse(dump, syms)

    # Match the image's movabs with the xlated ld_imm64s and patch the map-value addresses.
    wanted = xlated_movabs(dump.xlated)
    if len(wanted) != len(info.movabs):
        raise EmulationError(f"{len(info.movabs)} movabs in the image, {len(wanted)} 64-bit ld_imm64 in the "
                             "xlated program: cannot tell which constants are map values")
    base = VALUE_BASE
    for region in values.values():
        region.base = base
        base += _round_up(max(len(region.data), 1)) + PAGE  # a guard page between values
    images = [bytearray(code) for _, code in info.functions]
    for mv, (src, value, off) in zip(info.movabs, wanted, strict=True):
        if src == 0:
            if mv.imm != value:
                raise EmulationError(f"movabs {mv.imm:#x} at +{mv.offset:#x} does not match the xlated "
                                     f"constant {value:#x}")
            continue
        if src != 2 or value not in values:
            raise Unsupported(f"ld_imm64 src={src} imm={value} (a kernel object other than the case's "
                              "map values) is not emulated")
        region = values[value]
        if mv.imm >> 47 != 0x1FFFF:
            raise EmulationError(f"movabs {mv.imm:#x} for map id {value} is not a kernel pointer")
        struct.pack_into("<Q", images[mv.func], mv.offset + 2, region.base + off)

    # Code, stubs and per-cpu data: pages at relocated addresses.
    pages: dict[int, bytearray] = {}

    def put(addr: int, data: bytes | bytearray, fill: int) -> None:
        for p in range(_page(addr), _round_up(addr + len(data)), PAGE):
            pages.setdefault(p, bytearray([fill]) * PAGE)
        pos = 0
        while pos < len(data):
            a = addr + pos
            chunk = min(len(data) - pos, PAGE - (a - _page(a)))
            pages[_page(a)][a - _page(a):a - _page(a) + chunk] = data[pos:pos + chunk]
            pos += chunk

    for (ksym, _), image in zip(info.functions, images, strict=True):
        put(_relocate(ksym), image, INT3)
    for target in (*info.thunks, *info.helper_calls):
        put(_relocate(target), bytes([RET]), INT3)
    for target in info.unknown:
        put(_relocate(target), bytes([INT3]), INT3)
    for var in (*info.percpu_vars, *info.percpu_slots):
        pages.setdefault(_page(_relocate(var)), bytearray(PAGE))  # zeroed per-cpu data of CPU 0
    for slot in info.this_cpu_off:
        put(_relocate(slot), DELTA.to_bytes(8, "little"), 0)

    stubs: dict[int, int | str] = {_relocate(t): hid for t, hid in info.helper_calls.items()}
    stubs.update({_relocate(t): why for t, why in info.unknown.items()})
    machine = _machine()
    try:
        return machine.run(pages, list(values.values()), stubs, _relocate(info.functions[0][0]),
                           gs_base=DELTA if info.percpu_slots else 0, bound=bound)
    except (Unsupported, EmulationError):
        raise
    except BaseException:
        _MACHINES.pop(os.getpid(), None)  # an unexpected failure: do not reuse this machine
        raise


class _Machine:
    """One unicorn x86-64 engine per process, reused across runs.

    Creating an engine costs about as much as running a case (0.3-0.8 ms, with a long tail), so
    the stack, the sentinel page and the error hooks stay; each run maps its code, stub, per-cpu
    and value pages, zeroes the stack and every register, flushes the translation cache (the
    same addresses hold other code from one run to the next), and unmaps all of it afterwards.
    """

    GPRS = ("RAX", "RBX", "RCX", "RDX", "RSI", "RDI", "RBP", "R8", "R9", "R10", "R11", "R12", "R13",
            "R14", "R15")

    def __init__(self) -> None:
        import unicorn
        from unicorn import x86_const

        self.unicorn = unicorn
        self.reg = {name: getattr(x86_const, f"UC_X86_REG_{name}")
                    for name in (*self.GPRS, "RSP", "RIP", "EFLAGS")}
        self.uc: Any = unicorn.Uc(unicorn.UC_ARCH_X86, unicorn.UC_MODE_64)
        self.uc.mem_map(STACK_BASE, STACK_SIZE, unicorn.UC_PROT_ALL)
        self.uc.mem_map(SENTINEL, PAGE, unicorn.UC_PROT_ALL)
        self.uc.mem_write(SENTINEL, bytes([INT3]) * PAGE)
        self.problems: list[str] = []
        self.uc.hook_add(unicorn.UC_HOOK_INTR, self._on_interrupt)
        self.uc.hook_add(unicorn.UC_HOOK_MEM_INVALID, self._on_invalid)

    def _on_interrupt(self, uc: Any, intno: int, _user: Any) -> None:
        rip = uc.reg_read(self.reg["RIP"])
        self.problems.append(f"interrupt {intno} at {rip:#x} (execution left the image and its stubs)")
        uc.emu_stop()

    def _on_invalid(self, uc: Any, access: int, address: int, size: int, _value: int, _user: Any) -> bool:
        what = "the fake ctx (r1 at entry)" if _page(address) == FAKE_CTX else "unmapped memory"
        self.problems.append(f"invalid access (type {access}) of {size} bytes at {address:#x}: {what}")
        return False

    def run(self, pages: dict[int, bytearray], values: list[ValueRegion], stubs: dict[int, int | str],
            entry: int, *, gs_base: int, bound: int) -> Run:
        """Map, run from ``entry`` until the sentinel, read back, unmap. ``stubs`` maps a relocated
        stub address to the helper id it answers, or to why reaching it is unsupported."""
        uc, reg, unicorn = self.uc, self.reg, self.unicorn
        calls: list[tuple[int, tuple[int, ...], int]] = []
        unsupported: list[str] = []
        env = Environment(memory=Memory())
        args = [reg[r] for r in ("RDI", "RSI", "RDX", "RCX", "R8")]

        def on_stub(uc: Any, addr: int, _size: int, _user: Any) -> None:
            what = stubs[addr]
            if isinstance(what, str):
                unsupported.append(what)
                uc.emu_stop()
                return
            helper = DEFAULT_HELPERS.get(what)
            assert helper is not None
            argv = tuple(uc.reg_read(r) for r in args)
            ret = helper.fn(env, *argv) & M64
            calls.append((what, argv, ret))
            uc.reg_write(reg["RAX"], ret)

        mapped: list[tuple[int, int]] = []
        hooks: list[int] = []
        self.problems = []
        try:
            for start, size in _ranges(pages):
                uc.mem_map(start, size, unicorn.UC_PROT_ALL)
                mapped.append((start, size))
                uc.mem_write(start, b"".join(pages[p] for p in range(start, start + size, PAGE)))
            for region in values:
                size = _round_up(max(len(region.data), 1))
                uc.mem_map(region.base, size, unicorn.UC_PROT_ALL)
                mapped.append((region.base, size))
                uc.mem_write(region.base, region.data)
            uc.ctl_flush_tb()
            uc.mem_write(STACK_BASE, bytes(STACK_SIZE))
            rsp = STACK_BASE + STACK_SIZE - 2 * PAGE - 8  # as after a call from a 16-byte aligned frame
            uc.mem_write(rsp, SENTINEL.to_bytes(8, "little"))
            for name in self.GPRS:
                uc.reg_write(reg[name], 0)
            uc.reg_write(reg["EFLAGS"], 0x2)
            uc.reg_write(reg["RSP"], rsp)
            uc.reg_write(reg["RDI"], FAKE_CTX)
            uc.msr_write(MSR_GS_BASE, gs_base)
            for addr in stubs:
                hooks.append(uc.hook_add(unicorn.UC_HOOK_CODE, on_stub, begin=addr, end=addr))
            try:
                uc.emu_start(entry, SENTINEL, count=bound)
            except unicorn.UcError as e:
                rip = uc.reg_read(reg["RIP"])
                detail = f"; {self.problems[-1]}" if self.problems else ""
                raise EmulationError(f"unicorn: {e} at {rip:#x}{detail}") from None
            rip = uc.reg_read(reg["RIP"])
            if unsupported:
                raise Unsupported(unsupported[0])
            if self.problems:
                raise EmulationError(self.problems[-1])
            if rip != SENTINEL:
                raise EmulationError(f"stopped at {rip:#x} after the instruction bound "
                                     f"({bound} x86 instructions)")
            final = {r.map_id: bytes(uc.mem_read(r.base, len(r.data))) for r in values}
            return Run(uc.reg_read(reg["RAX"]), final, calls)
        finally:
            for h in hooks:
                uc.hook_del(h)
            for start, size in mapped:
                uc.mem_unmap(start, size)


#: The per-process machine (keyed by pid: never shared with a forked child).
_MACHINES: dict[int, _Machine] = {}


def _machine() -> _Machine:
    machine = _MACHINES.get(os.getpid())
    if machine is None:
        _MACHINES.clear()
        machine = _MACHINES[os.getpid()] = _Machine()
    return machine


# --- One case ----------------------------------------------------------------------------------------


@dataclass
class Loaded:
    """A case loaded into the kernel: its dump and the map values its image names."""

    dump: sc.JitedProg
    mem_id: int | None
    result_id: int
    load_ns: int


def load(case: Case) -> Loaded | Outcome:
    """Load ``case`` as the kernel target does and dump its JIT image (every fd closed on
    return); a refusal by the verifier is the kernel target's ``rejected:verifier`` outcome."""
    t0 = time.perf_counter_ns()
    with ExitStack() as stack:
        mem_fd = None
        if case.mem is not None:
            mem_fd, mem_view = _mapped_array(stack, max(len(case.mem), 1))
            mem_view[:len(case.mem)] = case.mem
        result_fd, _ = _mapped_array(stack, RESULT_SIZE)
        wired = wire(case.program, mem_fd=mem_fd, mem_len=len(case.mem or b""), result_fd=result_fd)
        try:
            prog_fd = sc.prog_load(wired.code, PROG_TYPE)
        except sc.BpfError as e:
            if e.cmd != "BPF_PROG_LOAD":
                raise
            return verifier_outcome(e, wired.offset)
        stack.callback(os.close, prog_fd)
        dump = sc.prog_jited_info(prog_fd)
        mem_id = sc.obj_id(mem_fd) if mem_fd is not None else None
        result_id = sc.obj_id(result_fd)
    return Loaded(dump, mem_id, result_id, time.perf_counter_ns() - t0)


def run_case(case: Case, *, bound: int = INSN_BOUND) -> Outcome:
    """Load ``case`` into the kernel, then run its JIT image under unicorn (the caller has checked
    :func:`.harness.refusal`)."""
    try:
        loaded = load(case)
    except OSError as e:
        return Outcome(error=KERNEL_ERROR, message=str(e))
    if isinstance(loaded, Outcome):
        return loaded
    mem = case.mem or b""
    values = {loaded.result_id: ValueRegion(loaded.result_id, bytes(RESULT_SIZE))}
    if loaded.mem_id is not None:
        values[loaded.mem_id] = ValueRegion(loaded.mem_id, mem.ljust(1, b"\0"))
    extra: dict[str, Any] = {"load_ns": loaded.load_ns, "image_bytes": len(loaded.dump.jited),
                             "functions": len(loaded.dump.ksyms)}
    t0 = time.perf_counter_ns()
    try:
        run = emulate(loaded.dump, values, bound=bound)
    except Unsupported as e:
        return Outcome(error=UNSUPPORTED, message=f"kernel-jit: {e}", extra=extra)
    except EmulationError as e:
        return Outcome(error=EMULATION_ERROR, message=str(e), extra=extra)
    except OSError as e:
        return Outcome(error=KERNEL_ERROR, message=f"{KALLSYMS}: {e}", extra=extra)
    extra["emulate_ns"] = time.perf_counter_ns() - t0
    result = run.values[loaded.result_id]
    stored = int.from_bytes(result[:8], "little")
    flag = int.from_bytes(result[RESULT_FLAG_OFF:RESULT_FLAG_OFF + 8], "little")
    memory = {"mem": run.values[loaded.mem_id][:len(mem)]} if loaded.mem_id is not None and mem else {}
    extra["result_value_r0"] = stored
    if flag != 1:
        return Outcome(error=CAPTURE_ERROR, memory=memory, extra=extra, helper_calls=run.helper_calls,
                       message=f"the epilogue did not run (rax {run.rax:#x}, result flag {flag})")
    if stored != run.rax:
        return Outcome(error=CAPTURE_ERROR, memory=memory, extra=extra, helper_calls=run.helper_calls,
                       message=f"r0 stored by the epilogue {stored:#x} disagrees with rax {run.rax:#x}")
    return Outcome(r0=run.rax, memory=memory, extra=extra, helper_calls=run.helper_calls)


# --- Probe -----------------------------------------------------------------------------------------


@functools.cache
def probe() -> str | None:
    """None when kernel-jit can run here, else why not (probed once per process)."""
    if platform.machine() != "x86_64":
        return f"kernel-jit emulates x86-64 JIT images; this machine is {platform.machine() or 'unknown'}"
    if sc.SYS_BPF is None:
        return f"bpf(2) is not available on {platform.system()}"
    try:
        import capstone  # noqa: F401
        import unicorn  # noqa: F401
    except ImportError as e:
        return f"kernel-jit needs unicorn and capstone: {e}"
    try:
        with open("/proc/sys/net/core/bpf_jit_enable", encoding="ascii") as f:
            if f.read().strip() == "0":
                return "the BPF JIT is off (net.core.bpf_jit_enable = 0)"
    except OSError:
        pass  # JIT always on (CONFIG_BPF_JIT_ALWAYS_ON) kernels may lack the sysctl
    try:
        os.close(sc.prog_load(bytes.fromhex("b700000000000000" "9500000000000000")))  # r0 = 0; exit
    except OSError as e:
        return f"bpf() is not usable here: {e}"
    try:
        kernel_symbols()
    except OSError as e:
        return f"{KALLSYMS} is not usable: {e}"
    from .probe import check_self_test, self_test_case

    outcome = run_case(self_test_case())
    if outcome.error == KERNEL_ERROR:
        return f"loading or dumping the self-test failed: {outcome.message}"
    reason = check_self_test(outcome)
    return f"kernel-jit {reason}" if reason else None


def disassemble(dump: sc.JitedProg) -> list[str]:
    """The dumped image as text, one instruction per line (for debugging and the docs)."""
    md = _disassembler()
    out = []
    for ksym, code in split_functions(dump):
        for addr, size, mnemonic, ops in md.disasm_lite(code, ksym):
            out.append(f"{addr:#x}: {code[addr - ksym:addr - ksym + size].hex():<20} {mnemonic} {ops}")
    return out

