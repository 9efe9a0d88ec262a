"""What this machine's kernel lets us do: probed once per process, never assumed.

CI machines may not allow ``bpf(2)`` at all, and some kernels refuse whole features before the
verifier runs (kernel-oracle.md §1: fentry/fexit/fmod_ret/LSM/EXT give EPERM with an empty log
on the reference VM, P10). Each probe loads only a hand-written, well-formed program:

``usable``
    a SOCKET_FILTER ``r0 = 0; exit`` loads, TEST_RUN runs it, and the kernel target's own
    wiring (:mod:`.wiring`: mmapable ARRAY map, ``ld_imm64 src=2``, 64-bit r0 capture, mem
    read-back) returns ``0x1122334455667788`` and the stored byte. Without it every case SKIPs
    with :attr:`KernelCapabilities.unusable` as the reason.
``syscall_prog``
    a sleepable SYSCALL program loads (kernel-oracle.md §4, P2).
``trampolines``
    TRACING/fentry with ``attach_btf_id = 0``: a normal kernel rejects it inside the verifier
    with a message (it *reached* the verifier); EPERM with an empty log means trampolines are
    refused before the verifier, as on the reference VM.
``capbpf``
    a child that keeps only CAP_BPF + CAP_NET_ADMIN (:mod:`.caps`) passes the wiring self-test.
``trace``
    ``bpf_trace_printk`` output can be read: tracefs is mounted (``mount -t tracefs nodev
    /sys/kernel/tracing`` is tried if it is not), with the ``bpf_trace_printk`` event and a
    writable ``instances/`` (:func:`.wholeprog.probe_trace`).
"""

from __future__ import annotations

import errno
import functools
import os
import platform
from dataclasses import dataclass

from reference_vm.insn import Insn
from reference_vm.isa import BY_NAME
from reference_vm.outcome import Outcome

from ..case import Case
from . import syscall as sc

SELF_TEST_R0 = 0x1122334455667788
SELF_TEST_MEM = bytes(8)
CAPBPF_PROBE_TIMEOUT = 10.0


@dataclass(frozen=True)
class KernelCapabilities:
    """The probe's findings. A ``str`` field is the reason a feature is unavailable (None: works)."""

    release: str
    unusable: str | None
    syscall_prog: str | None = None
    trampolines: str | None = None
    trace: str | None = None

    @property
    def usable(self) -> bool:
        return self.unusable is None

    def lines(self) -> list[str]:
        """Human-readable summary, one feature per line."""
        def state(reason: str | None) -> str:
            return "yes" if reason is None else f"no ({reason})"
        return [f"kernel: Linux {self.release}",
                f"bpf() + SOCKET_FILTER TEST_RUN + wiring: {state(self.unusable)}",
                f"SYSCALL programs: {state(self.syscall_prog)}",
                f"trampolines (fentry/fexit): {state(self.trampolines)}",
                f"bpf_trace_printk output (tracefs): {state(self.trace)}"]


def _code(*insns: Insn) -> bytes:
    return b"".join(i.to_bytes() for i in insns)


def _return0() -> bytes:
    return _code(Insn(BY_NAME["mov64_imm"], dst=0, imm=0), Insn(BY_NAME["exit"]))


def self_test_case() -> Case:
    """``*(u8 *)(r1 + 3) = 0x5a; r0 = 0x1122334455667788; exit`` with 8 bytes of mem."""
    program = [Insn(BY_NAME["stb"], dst=1, off=3, imm=0x5A),
               Insn(BY_NAME["lddw"], dst=0, imm=SELF_TEST_R0), Insn(BY_NAME["exit"])]
    slots = tuple(slot for insn in program for slot in insn.raw())
    return Case(name="kernel-self-test", path="<kernel probe>", program=slots, mem=SELF_TEST_MEM,
                expect_r0=SELF_TEST_R0)


def check_self_test(outcome: Outcome) -> str | None:
    """None when the self-test outcome is right, else what went wrong."""
    want_mem = SELF_TEST_MEM[:3] + b"\x5a" + SELF_TEST_MEM[4:]
    if not outcome.ok:
        return f"the wiring self-test failed: {outcome.error}: {outcome.message}"
    if outcome.r0 != SELF_TEST_R0 or outcome.memory.get("mem") != want_mem:
        return (f"the wiring self-test returned r0 = {outcome.r0:#x}, mem = "
                f"{outcome.memory.get('mem', b'').hex()} (want {SELF_TEST_R0:#x}, {want_mem.hex()})")
    return None


def _probe_basic() -> str | None:
    if sc.SYS_BPF is None:
        return f"bpf(2) is not available on {platform.system()} {platform.machine()}"
    try:
        fd = sc.prog_load(_return0())
    except OSError as e:
        return f"bpf() is not usable here: {e}"
    try:
        sc.prog_test_run(fd)
    except OSError as e:
        return f"BPF_PROG_TEST_RUN is not usable here: {e}"
    finally:
        os.close(fd)
    from .harness import run_case  # late: harness imports mmap-based I/O

    return check_self_test(run_case(self_test_case()))


def _probe_syscall_prog() -> str | None:
    try:
        fd = sc.prog_load(_return0(), sc.BPF_PROG_TYPE_SYSCALL, prog_flags=sc.BPF_F_SLEEPABLE)
    except OSError as e:
        return f"SYSCALL program load failed: {e}"
    os.close(fd)
    return None


def _probe_trampolines() -> str | None:
    try:
        fd = sc.prog_load(_return0(), sc.BPF_PROG_TYPE_TRACING, expected_attach_type=sc.BPF_TRACE_FENTRY)
    except sc.BpfError as e:
        if e.errno == errno.EPERM and not e.log.strip():
            return ("fentry load refused with EPERM and an empty log, before the verifier "
                    "(kernel-oracle.md P10)")
        return None  # the verifier saw it and complained about attach_btf_id = 0: trampolines reachable
    except OSError as e:
        return f"fentry probe failed: {e}"
    os.close(fd)
    return None


@functools.cache
def probe() -> KernelCapabilities:
    """Probe the running kernel (cached for the life of the process)."""
    release = platform.release()
    unusable = _probe_basic()
    if unusable is not None:
        return KernelCapabilities(release, unusable, "bpf() unusable", "bpf() unusable", "bpf() unusable")
    from .wholeprog import probe_trace

    return KernelCapabilities(release, None, _probe_syscall_prog(), _probe_trampolines(), probe_trace())


@functools.cache
def probe_capbpf() -> str | None:
    """None when a CAP_BPF-only child can run the wiring self-test, else why not."""
    basic = probe()
    if not basic.usable:
        return basic.unusable
    from .caps import CAPBPF_SET, ChildError, run_with_caps
    from .harness import run_case

    try:
        outcome = run_with_caps(lambda: run_case(self_test_case()), CAPBPF_SET, CAPBPF_PROBE_TIMEOUT)
    except (ChildError, OSError) as e:
        return f"cannot run a CAP_BPF-only child: {e}"
    reason = check_self_test(outcome)
    return f"CAP_BPF-only mode: {reason}" if reason else None
