"""The helper table: every helper function a program can call, by its Linux id.

One table holds each helper's id and name (include/uapi/linux/bpf.h ``___BPF_FUNC_MAPPER``),
its argument and return types (the verifier reads them) and its implementation (the
interpreter and the JITs' helper trampolines call it). An id that is not in the table is a
fault (``fault:unknown_helper``), never a silent zero.

Implementations take the :class:`~reference_vm.env.Environment` of the run and the five
argument registers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from .env import CLOCK_STEP_NS, Environment

HelperFn = Callable[[Environment, int, int, int, int, int], int]


@dataclass(frozen=True, slots=True)
class HelperDef:
    id: int
    name: str
    fn: HelperFn
    args: tuple[str, ...] = ()  # verifier argument types (Linux bpf_func_proto arg*_type names)
    ret: str = "RET_INTEGER"
    source: str = ""


EINVAL, EFAULT = 22, 14
#: MAX_TRACE_PRINTK_VARARGS (kernel/trace/bpf_trace.c).
MAX_TRACE_PRINTK_VARARGS = 3
M64 = (1 << 64) - 1


def _ktime_get_ns(env: Environment, *_: int) -> int:
    """bpf_ktime_get_ns (5): monotonic; here a deterministic clock that advances per call."""
    env.clock_ns += CLOCK_STEP_NS
    return env.clock_ns


def _get_prandom_u32(env: Environment, *_: int) -> int:
    """bpf_get_prandom_u32 (7): from the run's seeded generator (``Environment.seed``)."""
    return env.prandom.getrandbits(32)


def _get_smp_processor_id(env: Environment, *_: int) -> int:
    """bpf_get_smp_processor_id (8)."""
    return env.cpu


def _get_current_pid_tgid(env: Environment, *_: int) -> int:
    """bpf_get_current_pid_tgid (14): ``tgid << 32 | pid`` (kernel/bpf/helpers.c)."""
    return (env.task.tgid << 32) | env.task.pid


def _get_current_uid_gid(env: Environment, *_: int) -> int:
    """bpf_get_current_uid_gid (15): ``gid << 32 | uid``."""
    return (env.task.gid << 32) | env.task.uid


def _get_current_comm(env: Environment, buf: int, size: int, *_: int) -> int:
    """bpf_get_current_comm (16): the task name, NUL-terminated and zero-padded to ``size``
    (strscpy_pad in kernel/bpf/helpers.c); 0 on success."""
    size &= 0xFFFFFFFF
    if size == 0:
        return 0
    env.memory.check_writable(buf, size)  # a bad buffer faults before anything is built
    name = env.task.comm[:size - 1]
    env.memory.write_bytes(buf, name + bytes(size - len(name)))
    return 0


#: x86-64 TASK_SIZE_MAX + PAGE_SIZE: copy_from_kernel_nofault_allowed() refuses lower addresses.
USER_ADDRESS_LIMIT = 0x0000_8000_0000_0000
ERANGE = 34


def _probe_read_kernel(env: Environment, dst: int, size: int, src: int, *_: int) -> int:
    """bpf_probe_read_kernel (113): copy ``size`` bytes from kernel memory.

    bpf_probe_read_kernel_common -> copy_from_kernel_nofault: a user-space source (below
    TASK_SIZE_MAX + PAGE_SIZE on x86-64, NULL included, whatever the size) gives -ERANGE; an
    unmapped kernel address -EFAULT; on either error ``dst`` is zeroed. Every region of the run's
    memory models a kernel object (the stack, map values, contexts …) and so counts as kernel
    memory, even where bpfcheck places it at a low address.
    """
    size &= 0xFFFFFFFF
    if size:
        env.memory.check_writable(dst, size)  # a bad destination is the program's fault
    try:
        data = env.memory.read_bytes(src, size) if size else b""
    except Exception:  # MemoryFault: an unmapped source is the helper's error, not the program's
        env.memory.write_bytes(dst, bytes(size))
        return (-ERANGE if src < USER_ADDRESS_LIMIT else -EFAULT) & M64
    if size == 0 and src < USER_ADDRESS_LIMIT and not any(r.start <= src < r.end for r in env.memory.regions):
        return -ERANGE & M64
    env.memory.write_bytes(dst, data)
    return 0


def format_trace_printk(fmt: bytes, args: tuple[int, ...], read_str: Callable[[int], bytes]) -> bytes | None:
    """Format like bpf_trace_printk, or None where the kernel returns -EINVAL.

    Rules of bpf_bprintf_prepare (kernel/bpf/helpers.c): printable ASCII only; ``%%``; at most
    three conversions; an optional ``[0 +-]`` flag run and a width; ``%c``, ``%s``, ``%p``
    (printed as a hashed pointer in the kernel; here ``0x`` + 16 hex digits), and ``%d %i %u %x
    %X`` with ``l``/``ll`` modifiers (``%d`` without ``l`` takes the low 32 bits).
    """
    out = bytearray()
    i, n = 0, 0
    while i < len(fmt):
        c = fmt[i]
        if not (32 <= c < 127 or c in b"\t\n\r\x0b\x0c"):
            return None
        if c != ord("%"):
            out.append(c)
            i += 1
            continue
        if fmt[i + 1:i + 2] == b"%":
            out += b"%"
            i += 2
            continue
        if n >= MAX_TRACE_PRINTK_VARARGS:
            return None
        j = i + 1
        flags = b""
        while fmt[j:j + 1] in (b"0", b"+", b"-", b" "):
            flags += fmt[j:j + 1]
            j += 1
        width = b""
        while fmt[j:j + 1].isdigit():
            width += fmt[j:j + 1]
            j += 1
        arg = args[n]
        conv = fmt[j:j + 1]
        if conv == b"c":
            text = bytes([arg & 0xFF])
            j += 1
        elif conv == b"s":
            text = read_str(arg)
            j += 1
        elif conv == b"p":
            text = f"0x{arg:016x}".encode()
            j += 1
        else:
            longs = 0
            while fmt[j:j + 1] == b"l" and longs < 2:
                longs += 1
                j += 1
            conv = fmt[j:j + 1]
            if conv not in (b"d", b"i", b"u", b"x", b"X"):
                return None
            j += 1
            value = arg & (M64 if longs else 0xFFFFFFFF)
            bits = 64 if longs else 32
            if conv in (b"d", b"i") and value >> (bits - 1):
                value -= 1 << bits
            text = (f"{value:x}" if conv == b"x" else f"{value:X}" if conv == b"X" else str(value)).encode()
        pyfmt = "%" + (flags + width).decode() + "s"
        out += (pyfmt % text.decode("latin-1")).encode("latin-1")
        n += 1
        i = j
    return bytes(out)


def _trace_printk(env: Environment, fmt_ptr: int, fmt_size: int, a1: int, a2: int, a3: int) -> int:
    """bpf_trace_printk (6): the formatted line goes to ``env.trace``; returns its length, or
    -EINVAL for a format without a NUL within ``fmt_size`` or one the kernel refuses."""
    fmt_size &= 0xFFFFFFFF
    raw = env.memory.read_bytes(fmt_ptr, fmt_size) if fmt_size else b""
    if b"\0" not in raw:
        return -EINVAL & M64
    fmt = raw[:raw.index(b"\0")]

    def read_str(addr: int) -> bytes:
        out = bytearray()
        try:
            while len(out) < 1024:
                b = env.memory.read_bytes(addr + len(out), 1)
                if b == b"\0":
                    break
                out += b
        except Exception:  # an unreadable string prints as the kernel's "(efault)"
            return b"(efault)"
        return bytes(out)

    text = format_trace_printk(fmt, (a1, a2, a3), read_str)
    if text is None:
        return -EINVAL & M64
    env.trace.append(text)
    return len(text)


_H = HelperDef
_DEFS = (
    _H(5, "bpf_ktime_get_ns", _ktime_get_ns, (), "RET_INTEGER", "u64 bpf_ktime_get_ns(void)"),
    _H(6, "bpf_trace_printk", _trace_printk, ("ARG_PTR_TO_MEM | MEM_RDONLY", "ARG_CONST_SIZE"),
       "RET_INTEGER", "long bpf_trace_printk(const char *fmt, u32 fmt_size, ...)"),
    _H(7, "bpf_get_prandom_u32", _get_prandom_u32, (), "RET_INTEGER", "u32 bpf_get_prandom_u32(void)"),
    _H(8, "bpf_get_smp_processor_id", _get_smp_processor_id, (), "RET_INTEGER",
       "u32 bpf_get_smp_processor_id(void)"),
    _H(14, "bpf_get_current_pid_tgid", _get_current_pid_tgid, (), "RET_INTEGER",
       "u64 bpf_get_current_pid_tgid(void)"),
    _H(15, "bpf_get_current_uid_gid", _get_current_uid_gid, (), "RET_INTEGER",
       "u64 bpf_get_current_uid_gid(void)"),
    _H(16, "bpf_get_current_comm", _get_current_comm, ("ARG_PTR_TO_UNINIT_MEM", "ARG_CONST_SIZE"),
       "RET_INTEGER", "long bpf_get_current_comm(void *buf, u32 size_of_buf)"),
    _H(113, "bpf_probe_read_kernel", _probe_read_kernel,
       ("ARG_PTR_TO_UNINIT_MEM", "ARG_CONST_SIZE_OR_ZERO", "ARG_ANYTHING"), "RET_INTEGER",
       "long bpf_probe_read_kernel(void *dst, u32 size, const void *unsafe_ptr)"),
)
#: Helpers the interpreter implements itself because they change control flow.
BPF_FUNC_tail_call = 12
BPF_FUNC_loop = 181


@dataclass(frozen=True)
class HelperTable:
    """An immutable id -> :class:`HelperDef` map; build a new one to add helpers."""

    by_id: Mapping[int, HelperDef] = field(default_factory=dict)

    def get(self, helper_id: int) -> HelperDef | None:
        return self.by_id.get(helper_id)

    def with_helpers(self, *defs: HelperDef) -> HelperTable:
        merged = dict(self.by_id)
        merged.update({d.id: d for d in defs})
        return HelperTable(MappingProxyType(merged))


def _default_table() -> HelperTable:
    """This module's helpers plus the map and ring buffer helpers (:mod:`.helpers_maps`, which
    builds on :class:`HelperDef` above and is therefore imported here, not at the top)."""
    from .helpers_maps import MAP_HELPERS

    return HelperTable(MappingProxyType({d.id: d for d in (*_DEFS, *MAP_HELPERS)}))


DEFAULT_HELPERS = _default_table()
