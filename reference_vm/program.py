"""Whole programs: several BPF programs and the maps they share, as one loadable image.

An :class:`Image` is what a case file or an ELF object describes: named programs (each a
decoded instruction list, with its program type and, for tracing programs, the kernel function
it attaches to) and map specifications with their initial contents. The interpreter
(:func:`reference_vm.interpreter.run_image`), the JITs and the kernel target all take an
image, so a case is written once and runs everywhere.

Programs refer to maps by index (``lddw`` src 5/6, ``BPF_PSEUDO_MAP_IDX[_VALUE]``) or by pseudo
fd (src 1/2, fd = :data:`FIRST_MAP_FD` + index), as Linux's loader does with ``fd_array``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

from .insn import Insn

if TYPE_CHECKING:
    from .maps import MapSpec

#: The pseudo file descriptor of map index 0 (``lddw`` src 1: ``map_by_fd(imm)``).
FIRST_MAP_FD = 3


class ProgType(StrEnum):
    """Program types a case can use (Linux ``enum bpf_prog_type`` names, lower case).

    ``raw`` is bpf_conformance's convention: r1 = input memory, r2 = its length.
    """

    RAW = "raw"
    SOCKET_FILTER = "socket_filter"
    SCHED_CLS = "sched_cls"
    XDP = "xdp"
    RAW_TRACEPOINT = "raw_tracepoint"
    TRACING = "tracing"
    SYSCALL = "syscall"
    FLOW_DISSECTOR = "flow_dissector"
    SK_LOOKUP = "sk_lookup"
    CGROUP_SOCKOPT = "cgroup_sockopt"
    CGROUP_SYSCTL = "cgroup_sysctl"
    LSM = "lsm"


@dataclass(frozen=True)
class Program:
    """One BPF program (its subprograms included: bpf-to-bpf calls stay inside it)."""

    name: str
    insns: tuple[Insn | None, ...]  # pc-indexed, as from decode_program
    prog_type: ProgType = ProgType.RAW
    attach: str | None = None  # "fentry:bpf_fentry_test1", "fexit:…", "fmod_ret:…"


@dataclass(frozen=True)
class MapInit:
    """Initial contents of one map: raw key/value pairs, or prog-array slots by program name."""

    entries: tuple[tuple[bytes, bytes], ...] = ()
    slots: tuple[tuple[int, str], ...] = ()  # PROG_ARRAY: index -> program name
    inner: tuple[tuple[bytes, str], ...] = ()  # map-in-map: key -> inner map name


@dataclass(frozen=True)
class Image:
    """Programs and maps, loaded together. ``entry`` names the program a run starts in."""

    programs: tuple[Program, ...]
    maps: tuple[MapSpec, ...] = ()
    init: dict[str, MapInit] = field(default_factory=dict)
    entry: str | None = None

    def program(self, name: str) -> Program:
        for p in self.programs:
            if p.name == name:
                return p
        raise KeyError(name)

    @property
    def entry_program(self) -> Program:
        return self.program(self.entry) if self.entry else self.programs[0]

    def map_index(self, name: str) -> int:
        for i, m in enumerate(self.maps):
            if m.name == name:
                return i
        raise KeyError(name)
