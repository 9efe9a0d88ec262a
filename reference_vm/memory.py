"""The memory model: typed regions at fixed 64-bit addresses, every access bounds-checked.

A BPF program sees only addresses that some region owns. An access that is not entirely
inside one region, or a write to a read-only region, raises :class:`MemoryFault`; the
interpreter turns it into the outcome ``fault:oob_read`` / ``fault:oob_write``. The JITs map
the same regions at the same addresses so that pointers (and their bugs) agree.

Addresses are user-space canonical 64-bit addresses above 4 GiB, so that truncating a pointer
to 32 bits always lands outside every region.

A region may be *joined* to the region that starts where it ends (``Region.joins_next``): an
access that runs off its end continues there. The ring buffer (:mod:`reference_vm.ringbuf`)
uses this for its data area, which Linux maps twice back to back (kernel/bpf/ringbuf.c
``bpf_ringbuf_area_alloc``): the mirror region's ``data`` is a ``memoryview`` of the first, and
a misaligned access that straddles the boundary reads and writes both halves as one. Only the
fault path looks at joins, so ordinary accesses cost nothing extra.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

#: Linux MAX_BPF_STACK (include/linux/filter.h): stack bytes per frame.
STACK_SIZE = 512
#: Linux MAX_CALL_FRAMES (include/linux/bpf_verifier.h).
MAX_CALL_FRAMES = 8

#: Linux MAX_TAIL_CALL_CNT (include/linux/bpf.h) since v5.17 (commit ebf7f6f0a6cd: 32 -> 33).
MAX_TAIL_CALL_CNT = 33
#: Frames the stack region holds. MAX_CALL_FRAMES limits the calls *within* one program (the
#: verifier checks each program on its own); a tail call from a subprogram keeps the frames
#: below it, so a chain of tail calls can stack up to (MAX_TAIL_CALL_CNT + 1) programs' frames.
STACK_FRAMES = MAX_CALL_FRAMES * (MAX_TAIL_CALL_CNT + 1)

#: r10 of the outermost frame; frame k has r10 = STACK_TOP - k * STACK_SIZE.
STACK_TOP = 0x0000_7FFF_0000_0000
STACK_BASE = STACK_TOP - STACK_FRAMES * STACK_SIZE
#: Input memory (bpf_conformance ``-- mem``, or a program's context/packet).
MEM_BASE = 0x0000_7F00_0000_0000

_UNPACK = {1: struct.Struct("<B"), 2: struct.Struct("<H"), 4: struct.Struct("<I"), 8: struct.Struct("<Q")}
_SIGNED = {1: struct.Struct("<b"), 2: struct.Struct("<h"), 4: struct.Struct("<i"), 8: struct.Struct("<q")}


class MemoryFault(Exception):
    """An access outside every region or a write to a read-only one."""

    def __init__(self, kind: str, addr: int, size: int, detail: str = "") -> None:
        super().__init__(f"{kind.replace('_', ' ')} of {size} bytes at {addr:#x}{detail}")
        self.kind = kind
        self.addr = addr
        self.size = size


@dataclass(slots=True)
class Region:
    """A contiguous block of guest memory."""

    name: str
    start: int
    data: bytearray | memoryview
    writable: bool = True
    joins_next: bool = False  # an access may run from this region's end into the next one

    @property
    def end(self) -> int:
        return self.start + len(self.data)


class Memory:
    """The set of regions a run can touch."""

    __slots__ = ("regions",)

    def __init__(self, regions: list[Region] | None = None) -> None:
        self.regions: list[Region] = list(regions or [])

    def add(self, region: Region) -> Region:
        for r in self.regions:
            if region.start < r.end and r.start < region.end:
                raise ValueError(f"region {region.name} overlaps {r.name}")
        self.regions.append(region)
        return region

    def region(self, name: str) -> Region:
        for r in self.regions:
            if r.name == name:
                return r
        raise KeyError(name)

    def _locate(self, addr: int, size: int, kind: str) -> tuple[Region, int]:
        for r in self.regions:
            off = addr - r.start
            if 0 <= off and off + size <= len(r.data):
                return r, off
        raise self._fault(addr, size, kind)

    def _fault(self, addr: int, size: int, kind: str) -> MemoryFault:
        near = min(self.regions, key=lambda r: min(abs(addr - r.start), abs(addr - r.end)), default=None)
        detail = f" (nearest region {near.name} [{near.start:#x}, {near.end:#x}))" if near else ""
        return MemoryFault(kind, addr, size, detail)

    def _joined(self, addr: int, size: int, kind: str) -> list[tuple[Region, int, int]]:
        """The pieces (region, offset, length) of an access that crosses a ``joins_next`` boundary.

        Only called once :meth:`_locate` has failed; re-raises its fault unless every byte of the
        access lies in a chain of joined regions (and, for writes, writable ones).
        """
        pieces: list[tuple[Region, int, int]] = []
        at, left = addr, size
        r = next((r for r in self.regions if r.start <= at < r.end), None)
        while r is not None and left > 0:
            n = min(left, r.end - at)
            pieces.append((r, at - r.start, n))
            at, left = at + n, left - n
            if left and not r.joins_next:
                break
            r = next((q for q in self.regions if q.start == at), None) if left else None
        if left or len(pieces) < 2:
            raise self._fault(addr, size, kind)
        if kind == "oob_write":
            for r, _, _ in pieces:
                if not r.writable:
                    raise MemoryFault(kind, addr, size, f" (region {r.name} is read-only)")
        return pieces

    def _read_joined(self, addr: int, size: int) -> bytes:
        return b"".join(bytes(r.data[off:off + n]) for r, off, n in self._joined(addr, size, "oob_read"))

    def _write_joined(self, addr: int, data: bytes) -> None:
        done = 0
        for r, off, n in self._joined(addr, len(data), "oob_write"):
            r.data[off:off + n] = data[done:done + n]
            done += n

    def load(self, addr: int, size: int) -> int:
        """Unsigned little-endian load of 1, 2, 4 or 8 bytes."""
        try:
            r, off = self._locate(addr, size, "oob_read")
        except MemoryFault:
            return int.from_bytes(self._read_joined(addr, size), "little")
        return _UNPACK[size].unpack_from(r.data, off)[0]

    def load_signed(self, addr: int, size: int) -> int:
        try:
            r, off = self._locate(addr, size, "oob_read")
        except MemoryFault:
            return int.from_bytes(self._read_joined(addr, size), "little", signed=True)
        return _SIGNED[size].unpack_from(r.data, off)[0]

    def store(self, addr: int, size: int, value: int) -> None:
        """Little-endian store of the low ``size`` bytes of ``value``."""
        try:
            r, off = self._locate(addr, size, "oob_write")
        except MemoryFault:
            self._write_joined(addr, (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little"))
            return
        if not r.writable:
            raise MemoryFault("oob_write", addr, size, f" (region {r.name} is read-only)")
        _UNPACK[size].pack_into(r.data, off, value & ((1 << (8 * size)) - 1))

    def read_bytes(self, addr: int, size: int) -> bytes:
        try:
            r, off = self._locate(addr, size, "oob_read")
        except MemoryFault:
            return self._read_joined(addr, size)
        return bytes(r.data[off:off + size])

    def write_bytes(self, addr: int, data: bytes) -> None:
        try:
            r, off = self._locate(addr, len(data), "oob_write")
        except MemoryFault:
            self._write_joined(addr, data)
            return
        if not r.writable:
            raise MemoryFault("oob_write", addr, len(data), f" (region {r.name} is read-only)")
        r.data[off:off + len(data)] = data

    def check_writable(self, addr: int, size: int) -> None:
        """Raise the :class:`MemoryFault` a write of ``size`` bytes at ``addr`` would raise, without
        writing (helpers check a destination before building its contents)."""
        try:
            r, _ = self._locate(addr, size, "oob_write")
        except MemoryFault:
            self._joined(addr, size, "oob_write")  # raises unless joined regions cover it
            return
        if not r.writable:
            raise MemoryFault("oob_write", addr, size, f" (region {r.name} is read-only)")

    def snapshot(self) -> dict[str, bytes]:
        return {r.name: bytes(r.data) for r in self.regions}


def standard_memory(mem: bytes | None, frames: int = MAX_CALL_FRAMES) -> Memory:
    """The bpf_conformance layout: a stack of ``frames`` 512-byte frames below STACK_TOP and, if
    given, a copy of ``mem``. Runs that can tail-call (a prog array exists) need
    :data:`STACK_FRAMES`; the others MAX_CALL_FRAMES, which keeps every run's copy small."""
    if not 1 <= frames <= STACK_FRAMES:
        raise ValueError(f"{frames} stack frames: 1 to {STACK_FRAMES}")
    m = Memory([Region("stack", STACK_TOP - frames * STACK_SIZE, bytearray(frames * STACK_SIZE))])
    if mem is not None:
        m.add(Region("mem", MEM_BASE, bytearray(mem)))
    return m
