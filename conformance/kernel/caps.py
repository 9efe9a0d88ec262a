"""Privilege modes: run a function in a forked child that keeps only some capabilities.

The Linux verifier is not one verifier: root (CAP_SYS_ADMIN/CAP_PERFMON) allows pointer leaks,
uninitialised stack reads and variable stack offsets, and skips the Spectre masking; a loader
with only CAP_BPF (+CAP_NET_ADMIN for networking program types) gets the strict mode
(kernel-oracle.md §9 and P8). The child drops its capabilities with ``capset(2)``
(``_LINUX_CAPABILITY_VERSION_3``, two 32-bit words per set), runs the function, and sends the
pickled result back through a pipe; the parent kills it at the timeout.
"""

from __future__ import annotations

import ctypes
import errno
import os
import pickle
import select
import signal
import struct
import time
from collections.abc import Callable, Iterable
from typing import TypeVar

from .syscall import _libc

CAP_NET_ADMIN = 12
CAP_SYS_ADMIN = 21
CAP_PERFMON = 38
CAP_BPF = 39
#: What the ``capbpf`` mode keeps (kernel-oracle.md §9: "CAP_BPF (+NET_ADMIN)").
CAPBPF_SET = (CAP_BPF, CAP_NET_ADMIN)
_LINUX_CAPABILITY_VERSION_3 = 0x20080522

T = TypeVar("T")


class ChildError(Exception):
    """The child died, timed out, or raised; ``kind`` is ``timeout``, ``crash`` or ``raised``."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def keep_only(caps: Iterable[int]) -> None:
    """Set effective = permitted = ``caps`` and inheritable = {} for this process (capset(2))."""
    words = [0, 0]
    for cap in caps:
        words[cap // 32] |= 1 << (cap % 32)
    header = ctypes.create_string_buffer(struct.pack("<Ii", _LINUX_CAPABILITY_VERSION_3, 0))
    data = ctypes.create_string_buffer(struct.pack("<6I", words[0], words[0], 0, words[1], words[1], 0))
    if _libc.capset(header, data) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"capset: {os.strerror(err)}")


def effective_caps() -> int:
    """This process's effective capability mask, from ``/proc/self/status`` (0 if unknown)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return int(line.split()[1], 16)
    except OSError:
        pass
    return 0


def run_with_caps(fn: Callable[[], T], caps: Iterable[int], timeout: float) -> T:
    """``fn()`` in a forked child holding only ``caps``; raise :class:`ChildError` on trouble.

    Fork only from a single-threaded process (the runner calls in-process targets in worker
    processes, kernel-oracle.md §9 uses a child per mode).
    """
    keep = tuple(caps)
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never returns
        status = 0
        try:
            os.close(rfd)
            keep_only(keep)
            payload = pickle.dumps(("ok", fn()))
        except BaseException as e:  # noqa: BLE001 - everything goes back to the parent
            payload = pickle.dumps(("raised", f"{type(e).__name__}: {e}"))
        try:
            view = memoryview(payload)
            while view:
                view = view[os.write(wfd, view):]
        except OSError:
            status = 1
        os._exit(status)
    os.close(wfd)
    try:
        data = _read_until_eof(rfd, time.monotonic() + timeout)
    except TimeoutError:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise ChildError("timeout", f"no answer within {timeout:g} s (child killed)") from None
    finally:
        os.close(rfd)
    _, status = os.waitpid(pid, 0)
    if not data:
        raise ChildError("crash", f"the child died (wait status {status:#x})")
    kind, value = pickle.loads(data)  # noqa: S301 - our own child's answer
    if kind != "ok":
        raise ChildError("raised", str(value))
    return value  # type: ignore[no-any-return]


def _read_until_eof(fd: int, deadline: float) -> bytes:
    chunks: list[bytes] = []
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        try:
            ready, _, _ = select.select([fd], [], [], left)
        except InterruptedError:
            continue
        if not ready:
            raise TimeoutError
        try:
            chunk = os.read(fd, 1 << 16)
        except OSError as e:
            if e.errno == errno.EINTR:
                continue
            raise
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
