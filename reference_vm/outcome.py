"""The result of running one program on one target: the full final state.

Every target (interpreter, JITs, kernel, plugins) returns an :class:`Outcome`; the runner and
the fuzz oracle compare outcomes field by field, never just r0.

Error classes (``Outcome.error``):

``ok``
    The program reached ``exit`` in the outermost frame.
``fault:<kind>``
    The run stopped on an illegal action: ``fault:oob_read``, ``fault:oob_write``,
    ``fault:unknown_helper``, ``fault:call_depth``, ``fault:pc_out_of_range``, ...
``rejected:<reason>``
    The program was refused before it ran (invalid encoding, verifier).
``budget``
    The instruction budget ran out.
``timeout`` / ``crash``
    The target did not answer in time, or died (external processes).
``unsupported``
    The target cannot run this program (reported as a skip, with the reason in ``message``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

OK = "ok"
BUDGET = "budget"
TIMEOUT = "timeout"
CRASH = "crash"
UNSUPPORTED = "unsupported"


def fault(kind: str) -> str:
    return f"fault:{kind}"


def rejected(reason: str) -> str:
    return f"rejected:{reason}"


def memory_json(data: bytes) -> dict[str, Any]:
    """A region's contents, losslessly and compactly: its size and the runs of non-zero bytes
    (runs closer than 8 bytes are merged), everything else being zero."""
    runs: list[list[Any]] = []
    i, n = 0, len(data)
    while i < n:
        if not data[i]:
            i += 1
            continue
        start = end = i
        while i < n and (data[i] or any(data[i:i + 8])):
            if data[i]:
                end = i + 1
            i += 1
        runs.append([start, data[start:end].hex()])
    return {"size": n, "nonzero": runs}


def memory_from_json(doc: dict[str, Any]) -> bytes:
    """The inverse of :func:`memory_json`."""
    out = bytearray(doc["size"])
    for start, hexdata in doc["nonzero"]:
        chunk = bytes.fromhex(hexdata)
        out[start:start + len(chunk)] = chunk
    return bytes(out)


@dataclass(slots=True)
class Outcome:
    """Full final state of one run. Fields a target cannot observe stay ``None``."""

    error: str = OK
    r0: int | None = None
    regs: tuple[int, ...] | None = None  # r0..r10, unsigned 64-bit
    memory: dict[str, bytes] = field(default_factory=dict)  # region name -> final contents
    insn_count: int | None = None
    exit_pc: int | None = None
    message: str = ""
    helper_calls: list[tuple[int, tuple[int, ...], int]] = field(default_factory=list)
    maps: dict[str, Any] = field(default_factory=dict)  # map name -> snapshot (see BpfMap.snapshot)
    ringbuf: dict[str, list[str]] = field(default_factory=dict)  # map -> records (hex) a consumer sees
    trace: list[str] = field(default_factory=list)  # bpf_trace_printk lines
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error == OK

    @property
    def error_class(self) -> str:
        """``ok``, ``fault``, ``rejected``, ``budget``, ``timeout``, ``crash`` or ``unsupported``."""
        return self.error.split(":", 1)[0]

    def to_json(self) -> dict[str, Any]:
        """A JSON-able, deterministic view (hex strings for memory)."""
        return {
            "error": self.error,
            "r0": self.r0,
            "regs": list(self.regs) if self.regs is not None else None,
            "memory": {k: memory_json(v) for k, v in sorted(self.memory.items())},
            "insn_count": self.insn_count,
            "exit_pc": self.exit_pc,
            "message": self.message,
            "helper_calls": [[h, list(a), r] for h, a, r in self.helper_calls],
            "maps": self.maps,
            "ringbuf": self.ringbuf,
            "trace": self.trace,
        }
