"""The environment a program runs in: memory, maps, the task, the clock and captured output.

Helpers (:mod:`reference_vm.helpers`) see only this object, so the interpreter and the JITs'
helper trampolines share one implementation of every helper. Everything in it that could vary
from run to run is deterministic: the clock advances by a fixed step, the random generator is
seeded, the task is configured.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .memory import Memory

if TYPE_CHECKING:
    from .maps import BpfMap

#: The deterministic clock's value at the start of every run, and its step per read.
CLOCK_START_NS = 1_000_000_000
CLOCK_STEP_NS = 1000
DEFAULT_SEED = 0x0B9F


@dataclass
class Task:
    """The current task as helpers see it (bpf_get_current_pid_tgid, _uid_gid, _comm)."""

    pid: int = 4242  # thread id (the low half of pid_tgid)
    tgid: int = 4242
    uid: int = 0
    gid: int = 0
    comm: bytes = b"bpfcheck"


@dataclass
class Environment:
    """Per-run state outside the registers.

    ``maps`` are indexed by their position in the program's map list (``map_idx``); each map
    also answers to its pseudo file descriptor (``map_fd``) and its handle address (the value
    ``lddw`` puts in a register and that map helpers receive in r1).
    """

    memory: Memory
    maps: list[BpfMap] = field(default_factory=list)
    clock_ns: int = CLOCK_START_NS
    cpu: int = 0
    ncpus: int = 2
    task: Task = field(default_factory=Task)
    seed: int = DEFAULT_SEED
    prandom: random.Random = field(init=False)
    trace: list[bytes] = field(default_factory=list)  # bpf_trace_printk output lines
    perf_events: list[tuple[int, bytes]] = field(default_factory=list)  # (cpu index, data)
    notifications: int = 0  # ring buffer wake-ups (BPF_RB_FORCE_WAKEUP / consumer caught up)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.prandom = random.Random(self.seed)

    def map_by_handle(self, handle: int) -> BpfMap | None:
        """The map whose handle address is ``handle`` (what map helpers get in r1)."""
        for m in self.maps:
            if m.handle == handle:
                return m
        return None
