"""Thin ctypes wrappers over ``bpf(2)``: load programs, TEST_RUN them, create and mmap maps.

Layouts of ``union bpf_attr`` (168 bytes on Linux 6.18) are in
../shared/reference/kernel-oracle.md §2; the kernel requires every byte past the command's
last field to be zero (``CHECK_ATTR``), so each call packs into a fresh zeroed buffer.
Constants are from §3 (``include/uapi/linux/bpf.h``). No libbpf, no bcc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import platform
import re
import struct
from dataclasses import dataclass

SYS_BPF = {"x86_64": 321, "aarch64": 280}.get(platform.machine())
ATTR_SIZE = 168

# Commands (kernel-oracle.md §2).
BPF_MAP_CREATE = 0
BPF_MAP_LOOKUP_ELEM = 1
BPF_MAP_UPDATE_ELEM = 2
BPF_MAP_DELETE_ELEM = 3
BPF_MAP_GET_NEXT_KEY = 4
BPF_PROG_LOAD = 5
BPF_PROG_TEST_RUN = 10
BPF_OBJ_GET_INFO_BY_FD = 15

# Program types, attach types, map types and flags (kernel-oracle.md §3).
BPF_PROG_TYPE_SOCKET_FILTER = 1
BPF_PROG_TYPE_SCHED_CLS = 3
BPF_PROG_TYPE_XDP = 6
BPF_PROG_TYPE_RAW_TRACEPOINT = 17
BPF_PROG_TYPE_TRACING = 26
BPF_PROG_TYPE_SYSCALL = 31
BPF_TRACE_FENTRY = 24
BPF_MAP_TYPE_ARRAY = 2
BPF_F_MMAPABLE = 1 << 10
BPF_F_SLEEPABLE = 1 << 4

ENOTSUPP = 524  # kernel-internal errno that leaks to user space (unknown to os.strerror)
#: Largest verifier log buffer we ever pass (the kernel caps log_size at UINT_MAX >> 2).
MAX_LOG_SIZE = 1 << 28
DEFAULT_LOG_SIZE = 1 << 20

_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def errno_name(err: int) -> str:
    """``EINVAL`` for 22; ``ENOTSUPP`` for the kernel-internal 524 (kernel-oracle.md P14)."""
    return "ENOTSUPP" if err == ENOTSUPP else errno.errorcode.get(err, str(err))


_PROCESSED = re.compile(r"processed \d+ insns \(limit \d+\)")
#: State dumps the verifier prints after some messages (``infinite loop detected at insn 1``).
_STATE_DUMPS = ("cur state:", "old state:")


def log_message(log: str) -> str:
    """The verifier's message: the last-but-one line of a level-1 log (kernel-oracle.md §9).

    The last line is always ``processed N insns ...``. State dumps that follow a message
    (``cur state:`` / ``old state:`` after ``infinite loop detected at insn N``) are skipped.
    """
    lines = [ln.strip() for ln in log.splitlines() if ln.strip()]
    if lines and not lines[-1].startswith("processed ") and _PROCESSED.search(lines[-1]):
        # a message printed without its newline runs into the summary line
        # ("expected prog array map for tail callprocessed 6 insns (limit 1000000) ...")
        head = _PROCESSED.split(lines[-1], 1)[0].strip()
        lines[-1:] = [head, "processed"] if head else ["processed"]
    if lines and lines[-1].startswith("processed"):
        lines.pop()
    while lines and lines[-1].startswith(_STATE_DUMPS):
        lines.pop()
    return lines[-1] if lines else ""


class BpfError(OSError):
    """A failed bpf() command, with the verifier log when there is one."""

    def __init__(self, cmd: str, err: int, log: str = "") -> None:
        name = errno_name(err)
        super().__init__(err, f"{cmd}: {name}" + (f": {log.strip().splitlines()[-2:]}" if log else ""))
        self.cmd = cmd
        self.log = log

    @property
    def errno_name(self) -> str:
        return errno_name(self.errno or 0)

    @property
    def message(self) -> str:
        """The verifier message (last-but-one log line), or ``""`` without a log."""
        return log_message(self.log)


def _bpf(cmd: int, attr: ctypes.Array[ctypes.c_char]) -> int:
    if SYS_BPF is None:
        raise OSError(errno.ENOSYS, f"bpf(2) number unknown on {platform.machine()}")
    ret = _libc.syscall(SYS_BPF, cmd, attr, ATTR_SIZE)
    if ret < 0:
        return -ctypes.get_errno()
    return int(ret)


def map_create(map_type: int, key_size: int, value_size: int, max_entries: int, flags: int = 0, *,
               inner_map_fd: int = 0, name: bytes = b"") -> int:
    """MAP_CREATE; returns the map fd (the caller closes it) or raises :class:`BpfError`.

    ``inner_map_fd`` is the template of a map-in-map; ``name`` (at most 15 bytes of letters,
    digits, ``_`` and ``.``) shows in ``bpftool map``.
    """
    attr = ctypes.create_string_buffer(ATTR_SIZE)
    struct.pack_into("<IIIIII", attr, 0, map_type, key_size, value_size, max_entries, flags, inner_map_fd)
    struct.pack_into("16s", attr, 28, name[:15])
    fd = _bpf(BPF_MAP_CREATE, attr)
    if fd < 0:
        raise BpfError("BPF_MAP_CREATE", -fd)
    return fd


def _load_once(insns: ctypes.Array[ctypes.c_char], count: int, lic: ctypes.Array[ctypes.c_char],
               prog_type: int, level: int, size: int, prog_flags: int, expected_attach_type: int,
               attach_btf_id: int, fd_array: ctypes.Array[ctypes.c_int] | None = None,
               prog_btf_fd: int = 0, func_info: ctypes.Array[ctypes.c_char] | None = None
               ) -> tuple[int, str, int]:
    """One PROG_LOAD: ``(fd or -errno, log text, log_true_size)``."""
    log = ctypes.create_string_buffer(size) if size else None
    attr = ctypes.create_string_buffer(ATTR_SIZE)
    struct.pack_into("<IIQQIIQ", attr, 0, prog_type, count, ctypes.addressof(insns),
                     ctypes.addressof(lic), level, size, ctypes.addressof(log) if log else 0)
    struct.pack_into("<I", attr, 44, prog_flags)
    struct.pack_into("<I", attr, 68, expected_attach_type)
    struct.pack_into("<I", attr, 108, attach_btf_id)
    if fd_array is not None:
        struct.pack_into("<Q", attr, 120, ctypes.addressof(fd_array))
    if func_info is not None:  # {u32 insn_off; u32 type_id} records (kernel-oracle.md §2)
        count = len(func_info.raw) // 8
        struct.pack_into("<IIQI", attr, 72, prog_btf_fd, 8, ctypes.addressof(func_info), count)
    fd = _bpf(BPF_PROG_LOAD, attr)
    true_size, = struct.unpack_from("<I", attr, 140)
    text = log.value.decode(errors="replace") if log else ""
    return fd, text, true_size


def prog_load(insns: bytes, prog_type: int = BPF_PROG_TYPE_SOCKET_FILTER, *, license: bytes = b"GPL",
              log_size: int = 0, prog_flags: int = 0, expected_attach_type: int = 0,
              attach_btf_id: int = 0, fd_array: list[int] | None = None, prog_btf_fd: int = 0,
              func_info: bytes | None = None) -> int:
    """PROG_LOAD without a log; on failure reload with ``log_level=1`` and raise :class:`BpfError`.

    Logging costs 2–3x the load time (kernel-oracle.md P7), so the log is asked for only
    after a failure, as libbpf does. The raised error carries the errno of the log-less
    load. A log buffer that is too small replaces the verifier's errno with ENOSPC
    (``bpf_vlog_finalize``), so the reload is repeated once with ``log_true_size`` bytes.

    ``fd_array`` (PROG_LOAD @120) resolves ``ld_imm64`` src 5/6 (``BPF_PSEUDO_MAP_IDX[_VALUE]``):
    imm is an index into it (kernel/bpf/verifier.c ``add_used_map_from_fd``). ``prog_btf_fd`` and
    ``func_info`` (8-byte ``{insn_off, type_id}`` records, @72..@88) describe the subprograms.
    """
    prog = ctypes.create_string_buffer(insns, len(insns))
    lic = ctypes.create_string_buffer(license)
    fds = (ctypes.c_int * max(len(fd_array), 1))(*fd_array) if fd_array is not None else None
    finfo = ctypes.create_string_buffer(func_info, len(func_info)) if func_info is not None else None

    def load(level: int, size: int) -> tuple[int, str, int]:
        return _load_once(prog, len(insns) // 8, lic, prog_type, level, size, prog_flags,
                          expected_attach_type, attach_btf_id, fds, prog_btf_fd, finfo)

    first_errno = 0
    if not log_size:
        fd, _, _ = load(0, 0)
        if fd >= 0:
            return fd
        first_errno = -fd
    size = log_size or DEFAULT_LOG_SIZE
    fd, log, true_size = load(1, size)
    if fd == -errno.ENOSPC and size < true_size <= MAX_LOG_SIZE:
        fd, log, true_size = load(1, true_size)
    if fd >= 0:
        if not first_errno:  # an explicit log_size was asked for and the load succeeded
            return fd
        os.close(fd)  # only the log-less load failed: report its errno anyway
    raise BpfError("BPF_PROG_LOAD", first_errno or -fd, log)


@dataclass
class TestRun:
    retval: int  # u32 (kernel-oracle.md P1)
    duration_ns: int  # mean per run, as the kernel measured it


def prog_test_run(fd: int, data: bytes = bytes(64), repeat: int = 1) -> TestRun:
    """BPF_PROG_TEST_RUN with packet data (skb program types need >= 14 bytes, P4)."""
    din = ctypes.create_string_buffer(data, len(data))
    attr = ctypes.create_string_buffer(ATTR_SIZE)
    struct.pack_into("<IIIIQQI", attr, 0, fd, 0, len(data), 0, ctypes.addressof(din), 0, repeat)
    ret = _bpf(BPF_PROG_TEST_RUN, attr)
    if ret < 0:
        raise BpfError("BPF_PROG_TEST_RUN", -ret)
    retval, = struct.unpack_from("<I", attr, 4)
    duration, = struct.unpack_from("<I", attr, 36)
    return TestRun(retval, duration)


def prog_test_run_ctx(fd: int, ctx: bytes) -> tuple[TestRun, bytes]:
    """TEST_RUN of a SYSCALL program: ``ctx`` is r1, copied back into the buffer (P2)."""
    buf = ctypes.create_string_buffer(ctx, len(ctx))
    attr = ctypes.create_string_buffer(ATTR_SIZE)
    struct.pack_into("<I", attr, 0, fd)
    struct.pack_into("<I", attr, 40, len(ctx))
    struct.pack_into("<Q", attr, 48, ctypes.addressof(buf))
    ret = _bpf(BPF_PROG_TEST_RUN, attr)
    if ret < 0:
        raise BpfError("BPF_PROG_TEST_RUN", -ret)
    retval, = struct.unpack_from("<I", attr, 4)
    return TestRun(retval, 0), buf.raw


def prog_test_run_opts(fd: int, data: bytes | None = None, ctx: bytes | None = None) -> tuple[TestRun, bytes]:
    """TEST_RUN with packet data and/or a context (``ctx_in``, e.g. raw_tracepoint args);
    returns the run and the context as the kernel left it (SYSCALL programs copy it back into
    ``ctx_in``, P2)."""
    din = ctypes.create_string_buffer(data, len(data)) if data is not None else None
    cin = ctypes.create_string_buffer(ctx, len(ctx)) if ctx is not None else None
    attr = ctypes.create_string_buffer(ATTR_SIZE)
    struct.pack_into("<I", attr, 0, fd)
    if din is not None:
        struct.pack_into("<I", attr, 8, len(din.raw))
        struct.pack_into("<Q", attr, 16, ctypes.addressof(din))
        struct.pack_into("<I", attr, 32, 1)
    if cin is not None:
        struct.pack_into("<I", attr, 40, len(cin.raw))
        struct.pack_into("<Q", attr, 48, ctypes.addressof(cin))
    ret = _bpf(BPF_PROG_TEST_RUN, attr)
    if ret < 0:
        raise BpfError("BPF_PROG_TEST_RUN", -ret)
    retval, = struct.unpack_from("<I", attr, 4)
    duration, = struct.unpack_from("<I", attr, 36)
    return TestRun(retval, duration), (cin.raw if cin is not None else b"")


def _elem_attr(fd: int, key: ctypes.Array[ctypes.c_char] | None, value: ctypes.Array[ctypes.c_char] | None,
               flags: int = 0) -> ctypes.Array[ctypes.c_char]:
    attr = ctypes.create_string_buffer(ATTR_SIZE)
    struct.pack_into("<IIQQQ", attr, 0, fd, 0, ctypes.addressof(key) if key is not None else 0,
                     ctypes.addressof(value) if value is not None else 0, flags)
    return attr


def map_update_elem(fd: int, key: bytes, value: bytes, flags: int = 0) -> None:
    """MAP_UPDATE_ELEM (value: ``bpf_map_value_size`` bytes, per-CPU values for every possible CPU)."""
    k = ctypes.create_string_buffer(key, max(len(key), 1))
    v = ctypes.create_string_buffer(value, max(len(value), 1))
    ret = _bpf(BPF_MAP_UPDATE_ELEM, _elem_attr(fd, k, v, flags))
    if ret < 0:
        raise BpfError("BPF_MAP_UPDATE_ELEM", -ret)


def map_lookup_elem(fd: int, key: bytes, value_size: int) -> bytes | None:
    """MAP_LOOKUP_ELEM: the value bytes, or None for ENOENT."""
    k = ctypes.create_string_buffer(key, max(len(key), 1))
    v = ctypes.create_string_buffer(max(value_size, 1))
    ret = _bpf(BPF_MAP_LOOKUP_ELEM, _elem_attr(fd, k, v))
    if ret == -errno.ENOENT:
        return None
    if ret < 0:
        raise BpfError("BPF_MAP_LOOKUP_ELEM", -ret)
    return v.raw[:value_size]


def map_delete_elem(fd: int, key: bytes) -> None:
    k = ctypes.create_string_buffer(key, max(len(key), 1))
    ret = _bpf(BPF_MAP_DELETE_ELEM, _elem_attr(fd, k, None))
    if ret < 0:
        raise BpfError("BPF_MAP_DELETE_ELEM", -ret)


def map_get_next_key(fd: int, key: bytes | None, key_size: int) -> bytes | None:
    """MAP_GET_NEXT_KEY: the key after ``key`` (the first for None), None after the last."""
    k = ctypes.create_string_buffer(key, max(len(key), 1)) if key is not None else None
    nk = ctypes.create_string_buffer(max(key_size, 1))
    ret = _bpf(BPF_MAP_GET_NEXT_KEY, _elem_attr(fd, k, nk))
    if ret == -errno.ENOENT:
        return None
    if ret < 0:
        raise BpfError("BPF_MAP_GET_NEXT_KEY", -ret)
    return nk.raw[:key_size]


def obj_id(fd: int) -> int:
    """The kernel id of a program or map fd (OBJ_GET_INFO_BY_FD; ``id`` is at offset 4 of both
    ``bpf_prog_info`` and ``bpf_map_info``)."""
    info = ctypes.create_string_buffer(256)
    attr = ctypes.create_string_buffer(ATTR_SIZE)
    struct.pack_into("<IIQ", attr, 0, fd, len(info.raw), ctypes.addressof(info))
    ret = _bpf(BPF_OBJ_GET_INFO_BY_FD, attr)
    if ret < 0:
        raise BpfError("BPF_OBJ_GET_INFO_BY_FD", -ret)
    return int(struct.unpack_from("<I", info, 4)[0])


#: ``sizeof(struct bpf_prog_info)`` on Linux 6.18 (kernel-oracle.md §2).
PROG_INFO_SIZE = 232


@dataclass(frozen=True)
class JitedProg:
    """A loaded program's code as OBJ_GET_INFO_BY_FD reports it (kernel-oracle.md §2, §10).

    ``jited`` holds every function's native image back to back (``func_lens`` splits it),
    ``ksyms`` the kernel address of each function, ``xlated`` the verifier's rewritten
    instructions (8-byte ``bpf_insn`` slots).
    """

    jited: bytes
    xlated: bytes
    ksyms: tuple[int, ...]
    func_lens: tuple[int, ...]


def prog_jited_info(fd: int) -> JitedProg:
    """BPF_OBJ_GET_INFO_BY_FD, two passes: the lengths and counts, then the images, xlated
    instructions, ksyms and function lengths. Raises :class:`BpfError` when the command fails
    and ``PermissionError`` when the kernel withholds the raw dump (``bpf_dump_raw_ok``:
    ``kptr_restrict``, missing CAP_SYSLOG/CAP_SYS_ADMIN): it then zeroes the pointers."""

    def info_by_fd(info: ctypes.Array[ctypes.c_char]) -> None:
        attr = ctypes.create_string_buffer(ATTR_SIZE)
        struct.pack_into("<IIQ", attr, 0, fd, PROG_INFO_SIZE, ctypes.addressof(info))
        ret = _bpf(BPF_OBJ_GET_INFO_BY_FD, attr)
        if ret < 0:
            raise BpfError("BPF_OBJ_GET_INFO_BY_FD", -ret)

    first = ctypes.create_string_buffer(PROG_INFO_SIZE)
    info_by_fd(first)
    jited_len, xlated_len = struct.unpack_from("<II", first, 16)
    nr_ksyms, nr_lens = struct.unpack_from("<II", first, 104)
    jited = ctypes.create_string_buffer(max(jited_len, 1))
    xlated = ctypes.create_string_buffer(max(xlated_len, 1))
    ksyms = ctypes.create_string_buffer(max(8 * nr_ksyms, 8))
    lens = ctypes.create_string_buffer(max(4 * nr_lens, 4))
    second = ctypes.create_string_buffer(PROG_INFO_SIZE)
    struct.pack_into("<IIQQ", second, 16, jited_len, xlated_len,
                     ctypes.addressof(jited), ctypes.addressof(xlated))
    struct.pack_into("<IIQQ", second, 104, nr_ksyms, nr_lens, ctypes.addressof(ksyms), ctypes.addressof(lens))
    info_by_fd(second)
    jited_ptr, xlated_ptr = struct.unpack_from("<QQ", second, 24)
    ksyms_ptr, = struct.unpack_from("<Q", second, 112)
    if (jited_len and not jited_ptr) or (xlated_len and not xlated_ptr) or (nr_ksyms and not ksyms_ptr):
        raise PermissionError(errno.EPERM, "the kernel withholds raw JIT/xlated dumps "
                              "(bpf_dump_raw_ok: kptr_restrict or missing CAP_SYSLOG)")
    return JitedProg(jited.raw[:jited_len], xlated.raw[:xlated_len],
                     struct.unpack_from(f"<{nr_ksyms}Q", ksyms), struct.unpack_from(f"<{nr_lens}I", lens))


def probe() -> str | None:
    """None when bpf() can load and run a socket filter here, else the reason it cannot."""
    exit0 = bytes.fromhex("b700000000000000" "9500000000000000")  # r0 = 0; exit
    try:
        fd = prog_load(exit0)
    except OSError as e:
        return f"bpf() is not usable here: {e}"
    try:
        prog_test_run(fd)
    except OSError as e:
        return f"BPF_PROG_TEST_RUN is not usable here: {e}"
    finally:
        os.close(fd)
    return None
