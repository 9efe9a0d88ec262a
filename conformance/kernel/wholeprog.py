"""Run a whole-program (YAML) case on the live kernel: real maps, every program, one TEST_RUN.

The interpreter's side is :mod:`conformance.wholeprog`; this is the kernel's, and it answers in
the same :class:`~reference_vm.outcome.Outcome` shape so that ``check_state`` compares both the
same way (docs/kernel-target.md, "Whole-program cases"). Per case:

1. **Maps.** Every map of the case is created for real (``BPF_MAP_CREATE`` with the case's type,
   sizes, flags and name; a map-in-map gets the fd of its ``inner`` template), in the case's
   order, and filled with ``BPF_MAP_UPDATE_ELEM``: per-CPU values are replicated for every
   *possible* CPU (``bpf_map_value_size``), map-in-map values are pseudo fds ``3 + index`` (the
   interpreter's ``map_fd`` convention) translated into the real fds.
2. **Programs.** Every program is wired like a ``.data`` case (:mod:`.wiring`: a ``raw``
   program gets ``r1`` = the input memory, an mmapable array value, and ``r2`` = its length;
   every main-frame ``exit`` goes through an epilogue that stores the full 64-bit r0 in a result
   map) and loaded with ``fd_array`` = the case's map fds, so that ``lddw map_idx`` /
   ``map_idx_value`` (src 5/6) resolve to the case's maps; ``lddw map_fd`` / ``map_value`` (src
   1/2, pseudo fd ``3 + index``) are rewritten to the real fds. ``raw`` programs load as
   SOCKET_FILTER; ``socket_filter``, ``sched_cls`` and ``xdp`` programs keep the ``r1`` = ctx the
   kernel gives them (no prologue), from TEST_RUN's packet (the case's ``ctx`` bytes, else 64
   zero bytes); ``raw_tracepoint`` and ``syscall`` programs get ``ctx`` as ``ctx_in``. Programs
   with callbacks, or with subprograms and tail calls, get a minimal BTF with func_info (the
   kernel refuses them without: :func:`needs_func_info`). A load failure is
   ``rejected:verifier`` with the message and errno, as for ``.data`` cases, and names the
   program in ``extra``.
3. **Prog arrays** are filled with the program fds (``slots``), then the entry program runs once
   (``BPF_PROG_TEST_RUN``) pinned to CPU 0 (the interpreter's ``env.cpu``; per-CPU values and
   ``bpf_get_smp_processor_id`` depend on it).
4. **Read-back.** r0 from the result map (checked against TEST_RUN's u32 ``retval``); every map
   read back into the snapshot format of :meth:`reference_vm.maps.BpfMap.snapshot`; ring buffers
   read through their mmap'ed consumer/producer pages (kernel-oracle.md §7), listed as records and
   then consumed with libbpf's loop (``Outcome.ringbuf``); ``bpf_trace_printk`` lines from a
   private tracefs instance (:class:`TraceCapture`); the input memory through its mmap.
5. Every fd and mapping is closed (an ``ExitStack``), the CPU affinity restored.

Runs are bounded: the verifier proves termination of every accepted program (1M processed
instructions at most); nothing here loops on kernel data without a bound.
"""

from __future__ import annotations

import atexit
import ctypes
import dataclasses
import functools
import mmap
import os
import re
import struct
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reference_vm.errors import EncodingError
from reference_vm.insn import Insn, RawInsn, decode_program
from reference_vm.isa import (
    BPF_PSEUDO_FUNC,
    BPF_PSEUDO_MAP_FD,
    BPF_PSEUDO_MAP_IDX,
    BPF_PSEUDO_MAP_IDX_VALUE,
    BPF_PSEUDO_MAP_VALUE,
    BY_NAME,
    BY_OPCODE,
    Kind,
)
from reference_vm.maps import MapType
from reference_vm.outcome import Outcome

from ..yaml_case import MapSpecText, YamlCase
from . import syscall as sc
from .btf_load import btf_load_raw
from .harness import CAPTURE_ERROR, KERNEL_ERROR, PACKET, verifier_outcome
from .wiring import RESULT_FLAG_OFF, RESULT_SIZE, Wired, main_exits, reachable, subprogram_starts

#: Program types of a case and the kernel type each loads as (``raw``: the ``.data`` convention).
PROG_TYPES = {
    "raw": sc.BPF_PROG_TYPE_SOCKET_FILTER,
    "socket_filter": sc.BPF_PROG_TYPE_SOCKET_FILTER,
    "sched_cls": sc.BPF_PROG_TYPE_SCHED_CLS,
    "xdp": sc.BPF_PROG_TYPE_XDP,
    "raw_tracepoint": sc.BPF_PROG_TYPE_RAW_TRACEPOINT,
    "syscall": sc.BPF_PROG_TYPE_SYSCALL,
}
#: Program types whose TEST_RUN takes a packet (``ctx`` bytes or :data:`PACKET`).
PACKET_TYPES = frozenset({"raw", "socket_filter", "sched_cls", "xdp"})
#: eth_type_trans needs an Ethernet header: TEST_RUN refuses shorter skb packets (P4).
MIN_SKB_PACKET = 14
TRAMPOLINE_KINDS = ("fentry", "fexit", "fmod_ret", "lsm", "freplace", "fentry.s", "fexit.s")
PERCPU_TYPES = frozenset({"percpu_hash", "percpu_array", "lru_percpu_hash"})
HASH_TYPES = frozenset({MapType.HASH, MapType.PERCPU_HASH, MapType.LRU_HASH, MapType.LRU_PERCPU_HASH})
MAP_IN_MAP = frozenset({"array_of_maps", "hash_of_maps"})
#: Arrays with more entries than this are not read back element by element.
MAX_SNAPSHOT_ENTRIES = 1 << 16
BPF_FUNC_trace_printk = 6
BPF_FUNC_tail_call = 12
PAGE_SIZE = mmap.PAGESIZE
RINGBUF_BUSY_BIT = 1 << 31
RINGBUF_DISCARD_BIT = 1 << 30
RINGBUF_HDR_SZ = 8
#: The pseudo fd of map index 0 in ``lddw`` src 1/2 and map-in-map values (reference_vm.program).
FIRST_MAP_FD = 3


# --- Refusals -----------------------------------------------------------------------------------


@functools.cache
def possible_cpus() -> int:
    """``num_possible_cpus()``: the per-CPU value count of ``bpf_map_value_size``."""
    try:
        text = Path("/sys/devices/system/cpu/possible").read_text(encoding="ascii").strip()
    except OSError:
        return os.cpu_count() or 1
    count = 0
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        count += int(hi or lo) - int(lo) + 1
    return count


def _trampoline(attach: str) -> bool:
    return attach.replace("/", ":").split(":", 1)[0] in TRAMPOLINE_KINDS


def _helper_ids() -> frozenset[int]:
    from ..wholeprog import helper_symbols

    return frozenset(helper_symbols().values())


def uses_trace(programs: dict[str, list[Insn | None]]) -> bool:
    return any(i is not None and i.op.kind is Kind.CALL and i.imm == BPF_FUNC_trace_printk
               for prog in programs.values() for i in prog)


def refusal(case: YamlCase, trampolines: str | None) -> str | None:
    """Why this whole-program case is not run on the kernel here, or None.

    ``trampolines`` is the probe's reason (None: trampolines load here); trace output is probed
    (:func:`probe_trace`) only for cases that call ``bpf_trace_printk`` or expect trace lines.
    """
    from ..wholeprog import assembled

    for p in case.programs:
        if p.attach:
            if _trampoline(p.attach):
                why = trampolines or "trampoline attachment is not wired to the kernel target"
                return f"program {p.name!r} attaches to {p.attach}: {why}"
            return f"program {p.name!r}: attach {p.attach!r} is not wired to the kernel target"
        if p.prog_type not in PROG_TYPES:
            return (f"program {p.name!r}: prog_type {p.prog_type} is not wired to the kernel target "
                    f"(wired: {', '.join(PROG_TYPES)})")
    entry = next(p for p in case.programs if p.name == (case.entry or case.programs[0].name))
    if case.mem is not None and entry.prog_type != "raw":
        return (f"mem is the raw convention (r1 = mem); a {entry.prog_type} program gets r1 = its "
                "context on the kernel")
    if entry.prog_type in PACKET_TYPES - {"raw"} and case.ctx is not None and len(case.ctx) < MIN_SKB_PACKET:
        return f"ctx of {len(case.ctx)} bytes: TEST_RUN needs a packet of at least {MIN_SKB_PACKET}"
    for m in case.maps:
        if m.type == "cgroup_storage":
            return f"map {m.name!r}: cgroup storage needs an attached cgroup program"
        ncpus = int(case.options.get("ncpus", 2))
        if m.type in PERCPU_TYPES and ncpus != possible_cpus():
            return (f"map {m.name!r}: the case models {ncpus} CPUs, this kernel has "
                    f"{possible_cpus()} possible CPUs")
    programs = assembled(case)
    helpers = _helper_ids()
    for name, prog in programs.items():
        for pc, insn in enumerate(prog):
            if insn is None:
                continue
            kind = insn.op.kind
            if kind is Kind.LDDW and insn.src not in (0, BPF_PSEUDO_FUNC):
                if insn.src not in (BPF_PSEUDO_MAP_FD, BPF_PSEUDO_MAP_VALUE, BPF_PSEUDO_MAP_IDX,
                                    BPF_PSEUDO_MAP_IDX_VALUE):
                    return f"program {name!r} insn {pc}: {insn.op.name} names a kernel object by number"
                index = (insn.imm & 0xFFFFFFFF) - (FIRST_MAP_FD if insn.src in (BPF_PSEUDO_MAP_FD,
                                                                               BPF_PSEUDO_MAP_VALUE) else 0)
                if not 0 <= index < len(case.maps):
                    return f"program {name!r} insn {pc}: {insn.op.name} names no map of the case"
            elif kind is Kind.CALL_KFUNC:
                return f"program {name!r} insn {pc}: kfunc calls need BTF ids"
            elif kind is Kind.CALL and insn.imm not in helpers:
                return f"program {name!r} insn {pc}: helper {insn.imm} is not in bpfcheck's helper table"
    if case.expect.trace is not None or uses_trace(programs):
        trace = probe_trace()
        if trace is not None:
            return f"bpf_trace_printk output cannot be read here: {trace}"
    return None


# --- Wiring -------------------------------------------------------------------------------------


def _lddw(dst: int, row_name: str, value: int) -> Insn:
    row = BY_NAME[row_name]
    assert row.select is not None
    return Insn(row, dst=dst, src=row.select[1], imm=value)


def prologue(prog_type: str, mem_fd: int | None, mem_len: int) -> list[Insn]:
    """``raw``: r1 = the mem map value (or NULL), r2 = its length; typed programs: nothing."""
    if prog_type != "raw":
        return []
    r1 = _lddw(1, "lddw", 0) if mem_fd is None else _lddw(1, "lddw_map_value", mem_fd & 0xFFFFFFFF)
    return [r1, Insn(BY_NAME["mov64_imm"], dst=2, imm=mem_len)]


def wire_program(slots: list[RawInsn], head: list[Insn], result_fd: int) -> Wired:
    """:func:`.wiring.wire` with any prologue: ``head``, ``ja`` over the epilogue, the epilogue
    (r0 stored into the result map), then the program with main-frame exits jumping back to it.
    For a ``raw`` program this is byte for byte what ``wiring.wire`` produces."""
    program = decode_program(list(slots))
    exits = set(main_exits(program))
    head_slots = sum(i.op.slots for i in head)
    epilogue = [Insn(BY_NAME["ja"], off=5), _lddw(1, "lddw_map_value", result_fd & 0xFFFFFFFF),
                Insn(BY_NAME["stxdw"], dst=1, src=0, off=0),
                Insn(BY_NAME["stdw"], dst=1, off=RESULT_FLAG_OFF, imm=1), Insn(BY_NAME["exit"])]
    if not exits & reachable(program):
        insns, exits = list(head), set()
    else:
        insns = head + epilogue
    offset = sum(i.op.slots for i in insns)
    epilogue_pc = head_slots + 1
    out = [i.to_bytes() for i in insns]
    for pc, slot in enumerate(slots):
        if pc in exits:
            delta = epilogue_pc - (pc + offset + 1)
            jump = (Insn(BY_NAME["ja"], off=delta) if -(1 << 15) <= delta < (1 << 15)
                    else Insn(BY_NAME["ja32"], imm=delta))
            out.append(jump.to_bytes())
        else:
            out.append(slot.to_bytes())
    return Wired(b"".join(out), offset)


BTF_KIND_INT, BTF_KIND_FUNC, BTF_KIND_FUNC_PROTO = 1, 12, 13


def needs_func_info(program: list[Insn | None]) -> bool:
    """Programs the kernel refuses without BTF func_info get a minimal one (:func:`func_btf`):
    those with callbacks (``lddw`` src 4, e.g. for ``bpf_loop``: ``missing btf func_info``) and
    those with bpf-to-bpf calls *and* tail calls (``tail_call is not allowed in subprogs without
    BTF``). Other programs load without BTF, as the ``.data`` cases do."""
    if any(i is not None and i.op.kind is Kind.LDDW and i.src == BPF_PSEUDO_FUNC for i in program):
        return True
    return bool(subprogram_starts(program)) and any(
        i is not None and i.op.kind is Kind.CALL and i.imm == BPF_FUNC_tail_call for i in program)


def func_btf(count: int) -> bytes:
    """A BTF blob with ``int`` (id 1), ``int (void)`` (id 2) and ``count`` static FUNCs ``f0`` ..
    (ids 3 ..) of that prototype (kernel-oracle.md §8 layouts)."""
    strs = bytearray(b"\0int\0")
    types = struct.pack("<IIII", 1, BTF_KIND_INT << 24, 4, (1 << 24) | 32)
    types += struct.pack("<III", 0, BTF_KIND_FUNC_PROTO << 24, 1)
    for k in range(count):
        name_off = len(strs)
        strs += f"f{k}".encode() + b"\0"
        types += struct.pack("<III", name_off, BTF_KIND_FUNC << 24, 2)
    header = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(types), len(types), len(strs))
    return header + types + bytes(strs)


def func_info(program: list[Insn | None], offset: int) -> bytes:
    """``{insn_off, type_id}`` per subprogram of the wired program (main at 0, then each
    subprogram start shifted by the ``offset`` wiring slots)."""
    starts = [0] + [offset + s for s in subprogram_starts(program)]
    return b"".join(struct.pack("<II", start, 3 + k) for k, start in enumerate(starts))


def resolve_map_fds(slots: list[RawInsn], fds: list[int]) -> list[RawInsn]:
    """``lddw`` src 1/2 name maps by pseudo fd ``3 + index``: put the real fds in."""
    out = list(slots)
    for pc, slot in enumerate(slots):
        rows = BY_OPCODE.get(slot.opcode, ())
        if rows and rows[0].kind is Kind.LDDW and slot.src in (BPF_PSEUDO_MAP_FD, BPF_PSEUDO_MAP_VALUE):
            index = (slot.imm & 0xFFFFFFFF) - FIRST_MAP_FD
            out[pc] = dataclasses.replace(slot, imm=fds[index])
    return out


# --- Tracing ------------------------------------------------------------------------------------

TRACEFS = Path("/sys/kernel/tracing")
#: The head of one event in a tracefs ``trace`` file: ``<comm>-<pid> [cpu] flags time: bpf_trace_printk: ``.
_TRACE_HEAD = re.compile(r"^[ \t]*(?P<comm>[^\n]*?)-(?P<pid>\d+)[ \t]+(?:\([ \t]*[-\d]+\)[ \t]+)?"
                         r"\[(?P<cpu>\d+)\][ \t]+\S+[ \t]+[\d.]+: bpf_trace_printk: ", re.MULTILINE)


def _mount_tracefs() -> str | None:
    """Mount tracefs at /sys/kernel/tracing if it is not there; None on success, else why not."""
    if (TRACEFS / "instances").is_dir():
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mount(b"nodev", str(TRACEFS).encode(), b"tracefs", 0, None) != 0:
        err = ctypes.get_errno()
        return f"tracefs is not mounted and mount -t tracefs nodev {TRACEFS} failed: {os.strerror(err)}"
    if not (TRACEFS / "instances").is_dir():
        return f"tracefs mounted at {TRACEFS} has no instances/ directory"
    return None


class TraceCapture:
    """A private tracefs instance (``instances/bpfcheck-<pid>``) with only the
    ``bpf_trace:bpf_trace_printk`` event enabled: this process's lines, undisturbed by other
    readers of the global buffer. Lines are filtered by the calling thread's pid."""

    def __init__(self) -> None:
        self._cleanup_stale()
        self.dir = TRACEFS / "instances" / f"bpfcheck-{os.getpid()}"
        if not self.dir.is_dir():
            self.dir.mkdir()
            atexit.register(self.remove)
        (self.dir / "events" / "bpf_trace" / "bpf_trace_printk" / "enable").write_text("1")
        (self.dir / "tracing_on").write_text("1")

    @staticmethod
    def _cleanup_stale() -> None:
        for d in (TRACEFS / "instances").glob("bpfcheck-*"):
            pid = d.name.removeprefix("bpfcheck-")
            if pid.isdigit() and int(pid) != os.getpid() and not Path(f"/proc/{pid}").exists():
                try:
                    d.rmdir()
                except OSError:
                    pass

    def clear(self) -> None:
        with open(self.dir / "trace", "w", encoding="ascii"):
            pass

    def lines(self) -> list[str]:
        """The bpf_trace_printk messages of this thread since :meth:`clear`, in order, exactly as
        formatted: the trace file prints each message followed by a newline of its own, which is
        removed (a format ending in ``\\n`` keeps that one: ``"i 7\\n"``)."""
        me = str(threading.get_native_id())
        text = (self.dir / "trace").read_text(encoding="latin-1")
        heads = list(_TRACE_HEAD.finditer(text))
        out: list[str] = []
        for k, m in enumerate(heads):
            end = heads[k + 1].start() if k + 1 < len(heads) else len(text)
            message = text[m.end():end]
            if m.group("pid") == me:
                out.append(message[:-1] if message.endswith("\n") else message)
        return out

    def remove(self) -> None:
        try:
            self.dir.rmdir()
        except OSError:
            pass


_trace: TraceCapture | None = None


def trace_capture() -> TraceCapture:
    global _trace
    if _trace is None:
        _trace = TraceCapture()
    return _trace


@functools.cache
def probe_trace() -> str | None:
    """None when bpf_trace_printk output can be captured (tracefs, mounted here if needed)."""
    reason = _mount_tracefs()
    if reason is not None:
        return reason
    if not (TRACEFS / "events" / "bpf_trace" / "bpf_trace_printk").is_dir():
        return "tracefs has no bpf_trace:bpf_trace_printk event"
    if not os.access(TRACEFS / "instances", os.W_OK):
        return f"{TRACEFS}/instances is not writable (a private trace instance is needed)"
    return None


# --- Map creation, filling and read-back --------------------------------------------------------


@dataclass
class _Map:
    spec: MapSpecText
    fd: int
    type: int
    id: int

    @property
    def percpu(self) -> bool:
        return self.spec.type in PERCPU_TYPES

    def sys_value_size(self, ncpus: int) -> int:
        if self.percpu:
            return (self.spec.value_size + 7) // 8 * 8 * ncpus
        if self.type in (MapType.PROG_ARRAY, MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS):
            return 4
        return self.spec.value_size


class SetupError(Exception):
    """The kernel refused to create or fill a map (an ``error:kernel`` outcome)."""


def _key_bytes(key: int | str, size: int) -> bytes:
    return key.to_bytes(size, "little") if isinstance(key, int) else bytes.fromhex(key)


def create_maps(case: YamlCase, stack: ExitStack, ncpus: int) -> list[_Map]:
    out: list[_Map] = []
    by_name: dict[str, _Map] = {}
    for m in case.maps:
        mtype = int(MapType.parse(m.type))
        inner_fd = by_name[m.inner].fd if m.inner else 0
        name = m.name.encode() if re.fullmatch(r"[A-Za-z0-9_.]{1,15}", m.name) else b""
        try:
            fd = sc.map_create(mtype, m.key_size, m.value_size, m.max_entries, m.flags, inner_map_fd=inner_fd,
                               name=name)
        except sc.BpfError as e:
            raise SetupError(f"map {m.name!r}: BPF_MAP_CREATE refused: {e.errno_name}") from None
        stack.callback(os.close, fd)
        bm = _Map(m, fd, mtype, sc.obj_id(fd))
        out.append(bm)
        by_name[m.name] = bm
    for bm in out:
        m = bm.spec
        for key, value_hex in m.values.items():
            value = bytes.fromhex(value_hex)
            if bm.percpu and len(value) <= m.value_size:
                slot = (m.value_size + 7) // 8 * 8
                value = (value + bytes(slot - len(value))) * ncpus
            if m.type in MAP_IN_MAP:
                index = int.from_bytes(value[:4], "little") - FIRST_MAP_FD
                if not 0 <= index < len(out):
                    raise SetupError(f"map {m.name!r} key {key!r}: value {value_hex} is no map's pseudo fd")
                value = out[index].fd.to_bytes(4, "little")
            try:
                sc.map_update_elem(bm.fd, _key_bytes(key, m.key_size), value)
            except sc.BpfError as e:
                raise SetupError(f"map {m.name!r} key {key!r}: BPF_MAP_UPDATE_ELEM refused: "
                                 f"{e.errno_name}") from None
    return out


def _keys(bm: _Map) -> Iterator[bytes]:
    key: bytes | None = None
    for _ in range(MAX_SNAPSHOT_ENTRIES):
        key = sc.map_get_next_key(bm.fd, key, bm.spec.key_size)
        if key is None:
            return
        yield key


def snapshot(bm: _Map, ncpus: int, prog_names: dict[int, str], map_names: dict[int, str],
             stack: ExitStack) -> dict[str, Any]:
    """The map's contents in :meth:`reference_vm.maps.BpfMap.snapshot`'s format."""
    spec = bm.spec
    out: dict[str, Any] = {"name": spec.name, "type": MapType(bm.type).name}
    vsize = bm.sys_value_size(ncpus)
    if bm.type in (MapType.ARRAY, MapType.PERCPU_ARRAY):
        entries = {}
        for i in range(min(spec.max_entries, MAX_SNAPSHOT_ENTRIES)):
            key = i.to_bytes(4, "little")
            value = sc.map_lookup_elem(bm.fd, key, vsize)
            if value is not None and any(value):
                entries[key.hex()] = value.hex()
        out["entries"] = entries
    elif bm.type in HASH_TYPES:
        found = {}
        for key in _keys(bm):
            value = sc.map_lookup_elem(bm.fd, key, vsize)
            if value is not None:
                found[key] = value
        out["entries"] = {k.hex(): found[k].hex() for k in sorted(found)}
    elif bm.type in (MapType.PROG_ARRAY, MapType.ARRAY_OF_MAPS):
        names = prog_names if bm.type == MapType.PROG_ARRAY else map_names
        slots = {}
        for i in range(min(spec.max_entries, MAX_SNAPSHOT_ENTRIES)):
            value = sc.map_lookup_elem(bm.fd, i.to_bytes(4, "little"), 4)
            if value is not None:
                ident = int.from_bytes(value, "little")
                slots[str(i)] = names.get(ident, ident)
        out["slots"] = slots
    elif bm.type == MapType.HASH_OF_MAPS:
        inner: dict[bytes, str | int] = {}
        for key in _keys(bm):
            value = sc.map_lookup_elem(bm.fd, key, 4)
            if value is not None:
                ident = int.from_bytes(value, "little")
                inner[key] = map_names.get(ident, ident)
        out["entries"] = {k.hex(): inner[k] for k in sorted(inner)}
    elif bm.type == MapType.RINGBUF:
        out.update(RingReader(bm.fd, spec.max_entries, stack).snapshot())
    return out


class RingReader:
    """A ring buffer's consumer page (RW, offset 0) and producer page + data (RO, offset
    ``PAGE_SIZE``, the data mapped twice), kernel-oracle.md §7."""

    def __init__(self, fd: int, size: int, stack: ExitStack) -> None:
        self.size = size
        self.mask = size - 1
        self.cons = mmap.mmap(fd, PAGE_SIZE, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE, offset=0)
        stack.callback(self.cons.close)
        self.prod = mmap.mmap(fd, PAGE_SIZE + 2 * size, mmap.MAP_SHARED, mmap.PROT_READ, offset=PAGE_SIZE)
        stack.callback(self.prod.close)

    @property
    def consumer_pos(self) -> int:
        return int(struct.unpack_from("<Q", self.cons, 0)[0])

    @property
    def producer_pos(self) -> int:
        return int(struct.unpack_from("<Q", self.prod, 0)[0])

    def _hdr(self, pos: int) -> tuple[int, int]:
        length, pg_off = struct.unpack_from("<II", self.prod, PAGE_SIZE + (pos & self.mask))
        return int(length), int(pg_off)

    def _data(self, pos: int, n: int) -> bytes:
        off = PAGE_SIZE + (pos & self.mask)  # the double mapping makes a wrapped record contiguous
        return bytes(self.prod[off:off + n])

    def snapshot(self) -> dict[str, Any]:
        """Positions and the records between them (``RingBuffer.snapshot``'s format)."""
        cons, prod = self.consumer_pos, self.producer_pos
        records: list[dict[str, Any]] = []
        pos = cons
        while pos < prod and len(records) < self.size // RINGBUF_HDR_SZ:
            hdr_len, pg_off = self._hdr(pos)
            length = hdr_len & ~(RINGBUF_BUSY_BIT | RINGBUF_DISCARD_BIT)
            step = (length + RINGBUF_HDR_SZ + 7) & ~7
            if pos + step > prod:
                break
            records.append({"pos": pos, "len": length, "busy": bool(hdr_len & RINGBUF_BUSY_BIT),
                            "discard": bool(hdr_len & RINGBUF_DISCARD_BIT), "pg_off": pg_off,
                            "data": self._data(pos + RINGBUF_HDR_SZ, length).hex()})
            pos += step
        return {"size": self.size, "consumer_pos": cons, "producer_pos": prod, "records": records}

    def consume(self) -> list[bytes]:
        """libbpf ``ringbuf_process_ring``: stop at a BUSY record, skip DISCARD ones, store
        ``consumer_pos`` after every record."""
        delivered: list[bytes] = []
        cons = self.consumer_pos
        for _ in range(self.size // RINGBUF_HDR_SZ + 1):  # bounded: each record takes >= 8 bytes
            got_new_data = False
            prod = self.producer_pos
            while cons < prod:
                hdr_len, _ = self._hdr(cons)
                if hdr_len & RINGBUF_BUSY_BIT:
                    return delivered
                got_new_data = True
                length = hdr_len & ~(RINGBUF_BUSY_BIT | RINGBUF_DISCARD_BIT)
                sample_pos = cons + RINGBUF_HDR_SZ
                cons += (length + RINGBUF_HDR_SZ + 7) & ~7
                if not hdr_len & RINGBUF_DISCARD_BIT:
                    delivered.append(self._data(sample_pos, length))
                struct.pack_into("<Q", self.cons, 0, cons)
            if not got_new_data:
                break
        return delivered


# --- The run ------------------------------------------------------------------------------------


@contextmanager
def pinned_cpu(cpu: int = 0) -> Iterator[int]:
    """Run on one CPU (the lowest allowed if ``cpu`` is not), restoring the affinity after."""
    before = os.sched_getaffinity(0)
    target = cpu if cpu in before else min(before)
    os.sched_setaffinity(0, {target})
    try:
        yield target
    finally:
        os.sched_setaffinity(0, before)


def _mapped_array(stack: ExitStack, value_size: int) -> tuple[int, mmap.mmap]:
    fd = sc.map_create(sc.BPF_MAP_TYPE_ARRAY, 4, value_size, 1, sc.BPF_F_MMAPABLE)
    stack.callback(os.close, fd)
    view = mmap.mmap(fd, value_size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    stack.callback(view.close)
    return fd, view


def run_whole(case: YamlCase) -> Outcome:
    """Create, load, fill, run and read back one whole-program case (the caller checked
    :func:`refusal`)."""
    from ..wholeprog import assembled

    try:
        programs = assembled(case)
        ncpus = possible_cpus()
        with pinned_cpu(0) as cpu, ExitStack() as stack:
            try:
                maps = create_maps(case, stack, ncpus)
            except SetupError as e:
                return Outcome(error=KERNEL_ERROR, message=str(e))
            fds = [m.fd for m in maps]
            mem_fd, mem_view = None, None
            if case.mem is not None:
                mem_fd, mem_view = _mapped_array(stack, max(len(case.mem), 1))
                mem_view[:len(case.mem)] = case.mem
            result_fd, result_view = _mapped_array(stack, RESULT_SIZE)
            prog_fds: dict[str, int] = {}
            for p in case.programs:
                slots = [s for insn in programs[p.name] if insn is not None for s in insn.raw()]
                head = prologue(p.prog_type, mem_fd, len(case.mem or b""))
                wired = wire_program(resolve_map_fds(slots, fds), head, result_fd)
                flags = sc.BPF_F_SLEEPABLE if p.prog_type == "syscall" else 0
                btf_fd, finfo = 0, None
                if needs_func_info(programs[p.name]):
                    finfo = func_info(programs[p.name], wired.offset)
                    btf_fd, _ = btf_load_raw(func_btf(len(finfo) // 8), log_size=0)
                    if btf_fd < 0:
                        return Outcome(error=KERNEL_ERROR, message=f"program {p.name!r}: BPF_BTF_LOAD of the "
                                       f"func_info BTF failed: {sc.errno_name(-btf_fd)}")
                    stack.callback(os.close, btf_fd)
                try:
                    fd = sc.prog_load(wired.code, PROG_TYPES[p.prog_type], prog_flags=flags, fd_array=fds,
                                      prog_btf_fd=btf_fd, func_info=finfo)
                except sc.BpfError as e:
                    if e.cmd != "BPF_PROG_LOAD":
                        raise
                    out = verifier_outcome(e, wired.offset)
                    out.extra["program"] = p.name
                    out.extra["verifier_message"] = out.message.rsplit(" (errno ", 1)[0]
                    return out
                stack.callback(os.close, fd)
                prog_fds[p.name] = fd
            prog_names = {sc.obj_id(fd): name for name, fd in prog_fds.items()}
            map_names = {m.id: m.spec.name for m in maps}
            for bm in maps:
                for index, name in sorted(bm.spec.slots.items()):
                    try:
                        sc.map_update_elem(bm.fd, index.to_bytes(4, "little"),
                                           prog_fds[name].to_bytes(4, "little"))
                    except sc.BpfError as e:
                        return Outcome(error=KERNEL_ERROR, message=f"map {bm.spec.name!r} slot {index}: "
                                       f"BPF_MAP_UPDATE_ELEM with program {name!r} refused: {e.errno_name}")
            trace = trace_capture() if uses_trace(programs) else None
            if trace is not None:
                trace.clear()
            entry = next(p for p in case.programs if p.name == (case.entry or case.programs[0].name))
            entry_fd = prog_fds[entry.name]
            if entry.prog_type in PACKET_TYPES:
                data = PACKET if entry.prog_type == "raw" or case.ctx is None else case.ctx
                run, _ = sc.prog_test_run_opts(entry_fd, data=data)
            else:
                run, _ = sc.prog_test_run_opts(entry_fd, ctx=case.ctx)
            r0 = int.from_bytes(result_view[:8], "little")
            flag = int.from_bytes(result_view[RESULT_FLAG_OFF:RESULT_FLAG_OFF + 8], "little")
            memory = {"mem": bytes(mem_view[:len(case.mem)])} if mem_view is not None and case.mem else {}
            snaps = {bm.spec.name: snapshot(bm, ncpus, prog_names, map_names, stack) for bm in maps}
            ringbuf = {}
            for bm in maps:
                if bm.type == MapType.RINGBUF:
                    reader = RingReader(bm.fd, bm.spec.max_entries, stack)
                    ringbuf[bm.spec.name] = [rec.hex() for rec in reader.consume()]
            lines = trace.lines() if trace is not None else []
            extra = {"retval": run.retval, "duration_ns": run.duration_ns, "cpu": cpu}
            if flag != 1:
                return Outcome(error=CAPTURE_ERROR, memory=memory, extra=extra, maps=snaps, ringbuf=ringbuf,
                               message=f"r0 was not captured (TEST_RUN retval {run.retval:#x})")
            if r0 & 0xFFFFFFFF != run.retval:
                return Outcome(error=CAPTURE_ERROR, memory=memory, extra=extra,
                               message=f"captured r0 {r0:#x} disagrees with TEST_RUN retval {run.retval:#x}")
            return Outcome(r0=r0, memory=memory, maps=snaps, ringbuf=ringbuf, trace=lines, extra=extra)
    except EncodingError as e:  # pragma: no cover - assembled programs decode
        return Outcome(error=KERNEL_ERROR, message=f"program does not decode: {e}")
    except OSError as e:
        return Outcome(error=KERNEL_ERROR, message=str(e))

