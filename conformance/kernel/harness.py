"""Run one case on the live kernel, in this process: maps, load, TEST_RUN, read-back, close.

Per case (kernel-oracle.md §4, §5, P1, P4, P7):

1. ``-- mem`` becomes the value of a one-entry ``BPF_F_MMAPABLE`` ARRAY map of exactly
   ``len(mem)`` bytes (the verifier then bounds every access by the case's own length), written
   through ``mmap``; a 16-byte result map receives r0 and the epilogue flag (:mod:`.wiring`).
2. The wired program is loaded as a SOCKET_FILTER without a log; a refusal is reloaded with
   ``log_level=1`` and becomes ``Outcome(error="rejected:verifier", message="<last-but-one log
   line> (errno NAME)")``, instruction numbers mapped back to the case's pcs.
3. TEST_RUN on a 64-byte zero packet, once. The full r0 is read from the result map, and its
   low 32 bits are checked against TEST_RUN's u32 ``retval``; the memory is read back through
   the mmap.
4. Every fd and mapping is closed in ``finally`` blocks, whatever happened.

Accepted programs always terminate (the verifier proves it; ``may_goto`` is time-bounded,
§6), so a run is bounded by the verifier's own limits (1M processed instructions).

Only programs that decode under the ISA table reach the kernel, and none that name kernel
objects by number (pseudo ``ld_imm64`` sources, kfunc BTF ids) or call helpers outside
:data:`reference_vm.helpers.DEFAULT_HELPERS`: :func:`refusal` says why a case is not loaded.
"""

from __future__ import annotations

import mmap
import os
from contextlib import ExitStack

from reference_vm.errors import EncodingError
from reference_vm.insn import decode_program
from reference_vm.isa import Kind
from reference_vm.outcome import Outcome, rejected

from ..case import Case
from . import syscall as sc
from .wiring import RESULT_FLAG_OFF, RESULT_SIZE, translate_message, wire

#: The packet TEST_RUN gets (formats-and-corpora.md §5, test_verifier's ``TEST_DATA_LEN``).
PACKET = bytes(64)
PROG_TYPE = sc.BPF_PROG_TYPE_SOCKET_FILTER
#: ``Outcome.error`` when the kernel machinery itself failed (ERROR verdict in the runner).
KERNEL_ERROR = "error:kernel"
CAPTURE_ERROR = "error:capture"


#: Helpers a single-program case may call on the kernel: no map or pointer arguments
#: (ktime_get_ns, get_prandom_u32, get_smp_processor_id, get_current_pid_tgid, _uid_gid).
DATA_CASE_HELPERS = frozenset({5, 7, 8, 14, 15})


def refusal(case: Case) -> str | None:
    """Why this case's program is not sent to the kernel, or None when it may be loaded."""
    if case.encoding_error is not None:
        return f"not loaded into the kernel: the program does not decode ({case.encoding_error})"
    try:
        program = decode_program(list(case.program))
    except EncodingError as e:  # pragma: no cover - encoding_error covers it
        return f"not loaded into the kernel: the program does not decode ({e})"
    for pc, insn in enumerate(program):
        if insn is None:
            continue
        kind = insn.op.kind
        if kind is Kind.LDDW and insn.src != 0:
            return (f"insn {pc}: {insn.op.name} names a kernel object by number (src={insn.src}); "
                    "the kernel target binds no maps or BTF ids")
        if kind is Kind.CALL_KFUNC:
            return f"insn {pc}: kfunc calls (call src=2) need BTF ids; not supported by the kernel target"
        if kind is Kind.CALL and insn.imm not in DATA_CASE_HELPERS:
            return (f"insn {pc}: helper {insn.imm} takes maps or memory this case does not bind; "
                    "not loaded into the kernel")
    return None


def _mapped_array(stack: ExitStack, value_size: int) -> tuple[int, mmap.mmap]:
    """A one-entry mmapable ARRAY map and a shared mapping of its value (closed by ``stack``)."""
    fd = sc.map_create(sc.BPF_MAP_TYPE_ARRAY, 4, value_size, 1, sc.BPF_F_MMAPABLE)
    stack.callback(os.close, fd)
    view = mmap.mmap(fd, value_size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    stack.callback(view.close)
    return fd, view


def verifier_outcome(err: sc.BpfError, offset: int) -> Outcome:
    """``rejected:verifier`` with ``"<message> (errno NAME)"`` (kernel-oracle.md §9).

    Instruction numbers are mapped back to the case's pcs (``offset`` slots of wiring).
    """
    text = translate_message(err.message, offset)
    message = f"{text} (errno {err.errno_name})" if text else f"(errno {err.errno_name})"
    return Outcome(error=rejected("verifier"), message=message,
                   extra={"errno": err.errno_name, "log_tail": err.log.splitlines()[-3:]})


def run_case(case: Case) -> Outcome:
    """Load and run ``case`` here (the caller has checked :func:`refusal`)."""
    try:
        with ExitStack() as stack:
            mem_fd, mem_view = None, None
            if case.mem is not None:
                mem_fd, mem_view = _mapped_array(stack, max(len(case.mem), 1))
                mem_view[:len(case.mem)] = case.mem
            result_fd, result_view = _mapped_array(stack, RESULT_SIZE)
            wired = wire(case.program, mem_fd=mem_fd, mem_len=len(case.mem or b""), result_fd=result_fd)
            try:
                prog_fd = sc.prog_load(wired.code, PROG_TYPE)
            except sc.BpfError as e:
                if e.cmd != "BPF_PROG_LOAD":
                    raise
                return verifier_outcome(e, wired.offset)
            stack.callback(os.close, prog_fd)
            run = sc.prog_test_run(prog_fd, PACKET)
            r0 = int.from_bytes(result_view[:8], "little")
            flag = int.from_bytes(result_view[RESULT_FLAG_OFF:RESULT_FLAG_OFF + 8], "little")
            memory = {"mem": bytes(mem_view[:len(case.mem)])} if mem_view is not None and case.mem else {}
            extra = {"retval": run.retval, "duration_ns": run.duration_ns}
            if flag != 1:
                return Outcome(error=CAPTURE_ERROR, memory=memory, extra=extra,
                               message=f"r0 was not captured (TEST_RUN retval {run.retval:#x})")
            if r0 & 0xFFFFFFFF != run.retval:
                return Outcome(error=CAPTURE_ERROR, memory=memory, extra=extra,
                               message=f"captured r0 {r0:#x} disagrees with TEST_RUN retval {run.retval:#x}")
            return Outcome(r0=r0, memory=memory, extra=extra)
    except OSError as e:
        return Outcome(error=KERNEL_ERROR, message=str(e))
