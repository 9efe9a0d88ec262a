"""Thin ctypes wrappers over ``bpf(2)``: just enough to load a program and TEST_RUN it.

Layouts of ``union bpf_attr`` (168 bytes on Linux 6.18) are in
../shared/reference/kernel-oracle.md §2; the kernel requires every byte past the command's
last field to be zero, so each call packs into a fresh zeroed buffer.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import platform
import struct
from dataclasses import dataclass

SYS_BPF = {"x86_64": 321, "aarch64": 280}.get(platform.machine())
ATTR_SIZE = 168
BPF_PROG_LOAD = 5
BPF_PROG_TEST_RUN = 10
BPF_PROG_TYPE_SOCKET_FILTER = 1
ENOTSUPP = 524  # kernel-internal errno that leaks to user space (unknown to os.strerror)

_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


class BpfError(OSError):
    """A failed bpf() command, with the verifier log when there is one."""

    def __init__(self, cmd: str, err: int, log: str = "") -> None:
        name = "ENOTSUPP" if err == ENOTSUPP else errno.errorcode.get(err, str(err))
        super().__init__(err, f"{cmd}: {name}" + (f": {log.strip().splitlines()[-2:]}" if log else ""))
        self.log = log


def _bpf(cmd: int, attr: ctypes.Array[ctypes.c_char]) -> int:
    if SYS_BPF is None:
        raise OSError(errno.ENOSYS, f"bpf(2) number unknown on {platform.machine()}")
    ret = _libc.syscall(SYS_BPF, cmd, attr, ATTR_SIZE)
    if ret < 0:
        return -ctypes.get_errno()
    return int(ret)


def prog_load(insns: bytes, prog_type: int = BPF_PROG_TYPE_SOCKET_FILTER, *, license: bytes = b"GPL",
              log_size: int = 0, prog_flags: int = 0) -> int:
    """PROG_LOAD; on failure retry once with a log (kernel-oracle.md P7) and raise BpfError."""
    prog = ctypes.create_string_buffer(insns, len(insns))
    lic = ctypes.create_string_buffer(license)
    for level in ((0, 1) if not log_size else (1,)):
        size = (log_size or (1 << 20)) if level else 0
        log = ctypes.create_string_buffer(size) if size else None
        attr = ctypes.create_string_buffer(ATTR_SIZE)
        struct.pack_into("<IIQQIIQ", attr, 0, prog_type, len(insns) // 8, ctypes.addressof(prog),
                         ctypes.addressof(lic), level, size, ctypes.addressof(log) if log else 0)
        struct.pack_into("<I", attr, 44, prog_flags)
        fd = _bpf(BPF_PROG_LOAD, attr)
        if fd >= 0:
            return fd
        if level:
            raise BpfError("BPF_PROG_LOAD", -fd, log.value.decode(errors="replace") if log else "")
    raise AssertionError("unreachable")


@dataclass
class TestRun:
    retval: int  # u32 (kernel-oracle.md P1)
    duration_ns: int  # mean per run, as the kernel measured it


def prog_test_run(fd: int, data: bytes = bytes(64), repeat: int = 1) -> TestRun:
    """BPF_PROG_TEST_RUN with packet data (skb program types need >= 14 bytes)."""
    din = ctypes.create_string_buffer(data, len(data))
    attr = ctypes.create_string_buffer(ATTR_SIZE)
    struct.pack_into("<IIIIQQI", attr, 0, fd, 0, len(data), 0, ctypes.addressof(din), 0, repeat)
    ret = _bpf(BPF_PROG_TEST_RUN, attr)
    if ret < 0:
        raise BpfError("BPF_PROG_TEST_RUN", -ret)
    retval, = struct.unpack_from("<I", attr, 4)
    duration, = struct.unpack_from("<I", attr, 36)
    return TestRun(retval, duration)


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
