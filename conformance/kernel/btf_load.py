"""``bpf(BPF_BTF_LOAD)`` through ctypes: the live kernel's verdict on a BTF blob.

Attr layout (kernel-oracle.md §2): ``0 btf u64 | 8 btf_log_buf u64 | 16 btf_size | 20 btf_log_size
| 24 btf_log_level | 28 btf_log_true_size (OUT) | 32 btf_flags | 36 btf_token_fd``. The blob is
loaded with log_level 1 and a 4 MiB log (grown on ENOSPC); the message to compare is the last
non-empty log line (reference_vm.btf.last_log_line). BTF_LOAD only validates and creates an fd,
which is closed at once. Only hand-built blobs are sent (kernel-oracle.md, last paragraph).
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
from dataclasses import dataclass

from conformance.kernel.syscall import ATTR_SIZE, MAX_LOG_SIZE, _bpf, errno_name

BPF_BTF_LOAD = 18
LOG_SIZE = 4 << 20


@dataclass(frozen=True)
class BtfLoad:
    """The outcome of one BTF_LOAD: ``errno`` 0 means accepted."""

    errno: int
    log: str

    @property
    def accepted(self) -> bool:
        return self.errno == 0

    @property
    def errno_name(self) -> str:
        return "OK" if self.errno == 0 else errno_name(self.errno)

    @property
    def message(self) -> str:
        """The last non-empty log line, stripped."""
        for line in reversed(self.log.splitlines()):
            if line.strip():
                return line.strip()
        return ""


def btf_load_raw(blob: bytes, *, log_level: int = 1, log_size: int = LOG_SIZE) -> tuple[int, str]:
    """One BTF_LOAD: (fd >= 0 or -errno, log text decoded as latin-1). The caller owns the fd."""
    data = ctypes.create_string_buffer(blob, max(len(blob), 1))
    log = ctypes.create_string_buffer(log_size) if log_size else None
    attr = ctypes.create_string_buffer(ATTR_SIZE)
    struct.pack_into("<QQIII", attr, 0, ctypes.addressof(data), ctypes.addressof(log) if log else 0,
                     len(blob), log_size if log else 0, log_level if log else 0)
    ret = _bpf(BPF_BTF_LOAD, attr)
    text = log.value.decode("latin-1") if log else ""
    return ret, text


def btf_load(blob: bytes) -> BtfLoad:
    """Load ``blob`` with a log, close the fd on success; grow the log once on ENOSPC (P7)."""
    size = LOG_SIZE
    while True:
        ret, text = btf_load_raw(blob, log_size=size)
        if ret == -errno.ENOSPC and size * 8 <= MAX_LOG_SIZE:
            size *= 8
            continue
        break
    if ret >= 0:
        os.close(ret)
        return BtfLoad(0, text)
    return BtfLoad(-ret, text)


def probe() -> str | None:
    """None when BTF_LOAD works here (a one-INT blob loads), else the reason it cannot."""
    strs = b"\0int\0"
    types = struct.pack("<IIII", 1, 1 << 24, 4, 32)
    blob = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(types), len(types), len(strs)) + types + strs
    try:
        res = btf_load(blob)
    except OSError as e:
        return f"bpf() is not usable here: {e}"
    if not res.accepted:
        return f"BPF_BTF_LOAD of a valid one-INT blob failed with {res.errno_name}: {res.message!r}"
    return None
