"""The BPF ring buffer (``BPF_MAP_TYPE_RINGBUF``) as Linux implements it, byte for byte.

Everything here follows kernel/bpf/ringbuf.c (Linux 6.18) and libbpf's consumer
(tools/lib/bpf/ringbuf.c); the layout was confirmed on the live kernel
(``/work/shared/reference/kernel-oracle.md`` §7):

* the data area is ``max_entries`` bytes, a power-of-2 multiple of the 4096-byte page
  (``ringbuf_map_alloc``); positions are free-running 64-bit counters, the offset of a position
  in the data area is ``pos & mask`` with ``mask = size - 1``;
* every record starts with an 8-byte header ``{u32 len; u32 pg_off}`` (``struct
  bpf_ringbuf_hdr``): ``len`` is the payload size with ``BUSY`` (1 << 31) set while the record is
  reserved and ``DISCARD`` (1 << 30) set if it was discarded; ``pg_off`` is the page index of the
  header inside the kernel's ``struct bpf_ringbuf`` (one page of bookkeeping, the consumer page,
  the producer page, then the data: 3 for the first data page); the next record starts
  ``round_up(len + 8, 8)`` bytes later;
* the data area is mapped twice back to back (``bpf_ringbuf_area_alloc``), so a record that wraps
  around the end is contiguous in memory. Here the second mapping is a :class:`Region` whose
  ``data`` is a ``memoryview`` of the first, and the first is ``joins_next`` so that even a
  misaligned access straddling the boundary works (see :mod:`reference_vm.memory`).

Positions live outside guest memory (BPF programs cannot address the consumer and producer
pages); the data area and its mirror are guest regions, writable because a program fills its
reserved sample in place.
"""

from __future__ import annotations

import errno
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .memory import Memory, Region

PAGE_SIZE = 4096
#: uapi/linux/bpf.h: header bits and size.
BPF_RINGBUF_BUSY_BIT = 1 << 31
BPF_RINGBUF_DISCARD_BIT = 1 << 30
BPF_RINGBUF_HDR_SZ = 8
#: Flags of bpf_ringbuf_output/submit/discard (uapi/linux/bpf.h).
BPF_RB_NO_WAKEUP = 1 << 0
BPF_RB_FORCE_WAKEUP = 1 << 1
#: Queries of bpf_ringbuf_query (uapi/linux/bpf.h).
BPF_RB_AVAIL_DATA = 0
BPF_RB_RING_SIZE = 1
BPF_RB_CONS_POS = 2
BPF_RB_PROD_POS = 3
#: kernel/bpf/ringbuf.c: pages of ``struct bpf_ringbuf`` before the consumer page, the two
#: position pages, and so the page index of the first data page (the ``pg_off`` of a record
#: at offset 0; measured as 3 on Linux 6.18, kernel-oracle.md §7).
RINGBUF_PGOFF = 1
RINGBUF_POS_PAGES = 2
DATA_PGOFF = RINGBUF_PGOFF + RINGBUF_POS_PAGES
RINGBUF_MAX_RECORD_SZ = 0xFFFF_FFFF // 4
RINGBUF_MAX_DATA_SZ = ((1 << 24) - RINGBUF_POS_PAGES - RINGBUF_PGOFF) * PAGE_SIZE
#: bpfcheck's own limit on the data area (the kernel allows up to 2 GiB with a u32
#: max_entries); larger rings are refused with ENOMEM, as if the allocation had failed.
MAX_RING_SIZE = 1 << 28
#: ringbuf_map_alloc: only BPF_F_NUMA_NODE is accepted (RINGBUF_CREATE_FLAG_MASK).
BPF_F_NUMA_NODE = 1 << 2
RINGBUF_CREATE_FLAG_MASK = BPF_F_NUMA_NODE

_U32 = struct.Struct("<I")
_U64_MASK = (1 << 64) - 1


def _round8(n: int) -> int:
    return (n + 7) & ~7


def check_ringbuf_attrs(key_size: int, value_size: int, max_entries: int,
                        flags: int) -> tuple[int, str] | None:
    """``(errno, message)`` if ``BPF_MAP_CREATE`` would refuse these attributes, else None.

    kernel/bpf/ringbuf.c ``ringbuf_map_alloc``: unknown flags, a key or value size, or a size
    that is not a power-of-2 multiple of the page size give EINVAL; more than
    ``RINGBUF_MAX_DATA_SZ`` gives E2BIG (unreachable on 64-bit with a u32 ``max_entries``).
    """
    if flags & ~RINGBUF_CREATE_FLAG_MASK:
        return errno.EINVAL, f"ring buffer flags {flags:#x} are not a subset of BPF_F_NUMA_NODE"
    if key_size or value_size:
        return errno.EINVAL, "a ring buffer has key_size = value_size = 0"
    if max_entries <= 0 or max_entries & (max_entries - 1) or max_entries % PAGE_SIZE:
        return errno.EINVAL, (f"ring buffer size {max_entries} is not a power-of-2 multiple of the "
                              f"page size {PAGE_SIZE}")
    if max_entries > RINGBUF_MAX_DATA_SZ:
        return errno.E2BIG, f"ring buffer size {max_entries} exceeds RINGBUF_MAX_DATA_SZ"
    if max_entries > MAX_RING_SIZE:
        return errno.ENOMEM, f"ring buffer size {max_entries} exceeds bpfcheck's limit of {MAX_RING_SIZE}"
    return None


@dataclass(frozen=True)
class Record:
    """One record between the consumer and producer positions, as the header describes it."""

    pos: int  # free-running position of the header
    length: int  # payload length (header len without BUSY/DISCARD)
    busy: bool
    discard: bool
    pg_off: int
    data: bytes

    def to_json(self) -> dict[str, Any]:
        return {"pos": self.pos, "len": self.length, "busy": self.busy, "discard": self.discard,
                "pg_off": self.pg_off, "data": self.data.hex()}


class RingBuffer:
    """One kernel-producer ring buffer: positions, double-mapped data, producer and consumer.

    ``data_base`` is the guest address of the data area (page aligned); the mirror follows at
    ``data_base + size``. ``on_wakeup`` is called whenever the kernel would queue its wake-up
    irq_work (``bpf_ringbuf_commit``); :attr:`wakeups` counts them as well.
    """

    def __init__(self, memory: Memory, data_base: int, size: int, name: str = "ringbuf",
                 on_wakeup: Callable[[], None] | None = None) -> None:
        if size <= 0 or size & (size - 1) or size % PAGE_SIZE:
            raise ValueError(f"ring buffer size {size} is not a power-of-2 multiple of {PAGE_SIZE}")
        if data_base % PAGE_SIZE:
            raise ValueError(f"ring buffer data base {data_base:#x} is not page aligned")
        self.size = size
        self.mask = size - 1
        self.data_base = data_base
        self.consumer_pos = 0
        self.producer_pos = 0
        #: kernel 6.10+ ``rb->pending_pos``: the oldest record that may still be BUSY.
        self.pending_pos = 0
        self.wakeups = 0
        self.on_wakeup = on_wakeup
        self.data = bytearray(size)
        self.region = memory.add(Region(f"{name}.data", data_base, self.data, joins_next=True))
        #: The second mapping of the same bytes (``bpf_ringbuf_area_alloc``).
        self.mirror = memory.add(Region(f"{name}.mirror", data_base + size, memoryview(self.data)))

    # --- bytes of the data area, with wrap-around --------------------------------------------

    def read(self, pos: int, n: int) -> bytes:
        """``n`` bytes starting at position ``pos`` (wrapping around the end of the data area)."""
        off = pos & self.mask
        if off + n <= self.size:
            return bytes(self.data[off:off + n])
        head = self.size - off
        return bytes(self.data[off:]) + self.read(0, n - head)

    def _write(self, pos: int, blob: bytes) -> None:
        off = pos & self.mask
        head = min(len(blob), self.size - off)
        self.data[off:off + head] = blob[:head]
        if head < len(blob):
            self._write(0, blob[head:])

    def _hdr_len(self, pos: int) -> int:
        return int(_U32.unpack_from(self.data, pos & self.mask)[0])

    def pg_off(self, offset: int) -> int:
        """``bpf_ringbuf_rec_pg_off``: page index of a header at data offset ``offset`` inside
        the kernel's ``struct bpf_ringbuf``."""
        return (DATA_PGOFF * PAGE_SIZE + offset) // PAGE_SIZE

    def contains_sample(self, addr: int) -> bool:
        """Whether ``addr`` can be a sample pointer of this ring (its header in either mapping)."""
        return 0 <= addr - BPF_RINGBUF_HDR_SZ - self.data_base <= 2 * self.size - BPF_RINGBUF_HDR_SZ

    # --- producer (kernel/bpf/ringbuf.c) -------------------------------------------------------

    def reserve(self, size: int) -> int | None:
        """``__bpf_ringbuf_reserve``: the guest address of a new BUSY sample of ``size`` bytes,
        or None when it does not fit.

        The record takes ``round_up(size + 8, 8)`` bytes; it fails if ``size`` exceeds
        ``RINGBUF_MAX_RECORD_SZ``, if the record is larger than the ring, or if the new producer
        position would be more than ``mask`` ahead of the consumer position or of the oldest
        record still reserved (``pending_pos``, the 6.10 overrun fix; it only matters when user
        space moves ``consumer_pos`` past BUSY records).
        """
        if size < 0 or size > RINGBUF_MAX_RECORD_SZ:
            return None
        length = _round8(size + BPF_RINGBUF_HDR_SZ)
        if length > self.size:
            return None
        cons_pos = self.consumer_pos
        pend_pos, prod_pos = self.pending_pos, self.producer_pos
        while pend_pos < prod_pos:
            hdr_len = self._hdr_len(pend_pos)
            if hdr_len & BPF_RINGBUF_BUSY_BIT:
                break
            pend_pos += _round8((hdr_len & ~BPF_RINGBUF_DISCARD_BIT) + BPF_RINGBUF_HDR_SZ)
        self.pending_pos = pend_pos
        new_prod_pos = prod_pos + length
        if ((new_prod_pos - cons_pos) & _U64_MASK) > self.mask or \
                ((new_prod_pos - pend_pos) & _U64_MASK) > self.mask:
            return None
        offset = prod_pos & self.mask
        struct.pack_into("<II", self.data, offset, size | BPF_RINGBUF_BUSY_BIT, self.pg_off(offset))
        self.producer_pos = new_prod_pos
        return self.data_base + offset + BPF_RINGBUF_HDR_SZ

    def commit(self, sample: int, flags: int, discard: bool) -> bool:
        """``bpf_ringbuf_commit`` (submit or discard): flip BUSY (and set DISCARD), then wake the
        consumer if ``BPF_RB_FORCE_WAKEUP`` is set, or if the consumer has caught up with this
        record (``consumer_pos & mask`` equals the header's offset) and ``BPF_RB_NO_WAKEUP`` is
        not set. Returns whether a wake-up was queued.

        As in the kernel, the header is flipped with XOR: committing a record twice (which the
        verifier prevents) sets BUSY again.
        """
        rec_pos = sample - BPF_RINGBUF_HDR_SZ - self.data_base  # hdr - rb->data, unmasked
        new_len = self._hdr_len(rec_pos) ^ BPF_RINGBUF_BUSY_BIT
        if discard:
            new_len |= BPF_RINGBUF_DISCARD_BIT
        _U32.pack_into(self.data, rec_pos & self.mask, new_len)
        cons_pos = self.consumer_pos & self.mask
        wake = bool(flags & BPF_RB_FORCE_WAKEUP) or (cons_pos == rec_pos and not flags & BPF_RB_NO_WAKEUP)
        if wake:
            self.wakeups += 1
            if self.on_wakeup is not None:
                self.on_wakeup()
        return wake

    def output(self, data: bytes, flags: int) -> int:
        """``bpf_ringbuf_output``: 0, ``-EINVAL`` for flags other than NO_WAKEUP/FORCE_WAKEUP, or
        ``-EAGAIN`` when the record does not fit."""
        if flags & ~(BPF_RB_NO_WAKEUP | BPF_RB_FORCE_WAKEUP):
            return -errno.EINVAL
        sample = self.reserve(len(data))
        if sample is None:
            return -errno.EAGAIN
        self._write(sample - self.data_base, data)
        self.commit(sample, flags, discard=False)
        return 0

    def query(self, flags: int) -> int:
        """``bpf_ringbuf_query``: available bytes, ring size, consumer or producer position;
        0 for any other flag."""
        if flags == BPF_RB_AVAIL_DATA:
            return (self.producer_pos - self.consumer_pos) & _U64_MASK
        if flags == BPF_RB_RING_SIZE:
            return self.size
        if flags == BPF_RB_CONS_POS:
            return self.consumer_pos
        if flags == BPF_RB_PROD_POS:
            return self.producer_pos
        return 0

    # --- consumer (tools/lib/bpf/ringbuf.c) ----------------------------------------------------

    def set_consumer_pos(self, pos: int) -> None:
        """What a user-space write to the (read-write) consumer page does."""
        self.consumer_pos = pos & _U64_MASK

    def consume(self, callback: Callable[[bytes], int | None] | None = None,
                limit: int | None = None) -> list[bytes]:
        """libbpf ``ringbuf_process_ring``: deliver committed samples in reservation order.

        From ``consumer_pos`` while it is below ``producer_pos``: stop at the first BUSY record;
        advance by ``round_up(len + 8, 8)`` (BUSY/DISCARD bits cleared); skip DISCARD records;
        call ``callback`` with each other sample (a negative return stops after storing the
        position past that sample); store ``consumer_pos`` after every record; stop after
        ``limit`` samples. Returns the samples delivered.
        """
        delivered: list[bytes] = []
        cons_pos = self.consumer_pos
        while True:
            got_new_data = False
            prod_pos = self.producer_pos
            while cons_pos < prod_pos:
                hdr_len = self._hdr_len(cons_pos)
                if hdr_len & BPF_RINGBUF_BUSY_BIT:
                    return delivered
                got_new_data = True
                length = hdr_len & ~(BPF_RINGBUF_BUSY_BIT | BPF_RINGBUF_DISCARD_BIT)
                sample_pos = cons_pos + BPF_RINGBUF_HDR_SZ
                cons_pos += _round8(length + BPF_RINGBUF_HDR_SZ)
                if not hdr_len & BPF_RINGBUF_DISCARD_BIT:
                    sample = self.read(sample_pos, length)
                    delivered.append(sample)
                    err = callback(sample) if callback is not None else None
                    if err is not None and err < 0:
                        self.consumer_pos = cons_pos
                        return delivered
                self.consumer_pos = cons_pos
                if limit is not None and len(delivered) >= limit:
                    return delivered
            if not got_new_data:
                return delivered

    # --- inspection ------------------------------------------------------------------------------

    def records(self) -> list[Record]:
        """Every record from ``consumer_pos`` to ``producer_pos``, committed or not.

        Stops early at a header that would run past ``producer_pos`` (a program overwrote it).
        """
        out: list[Record] = []
        pos = self.consumer_pos
        while pos < self.producer_pos:
            hdr_len = self._hdr_len(pos)
            length = hdr_len & ~(BPF_RINGBUF_BUSY_BIT | BPF_RINGBUF_DISCARD_BIT)
            step = _round8(length + BPF_RINGBUF_HDR_SZ)
            if pos + step > self.producer_pos:
                break
            pg_off = int(_U32.unpack_from(self.data, (pos & self.mask) + 4)[0])
            out.append(Record(pos, length, bool(hdr_len & BPF_RINGBUF_BUSY_BIT),
                              bool(hdr_len & BPF_RINGBUF_DISCARD_BIT), pg_off,
                              self.read(pos + BPF_RINGBUF_HDR_SZ, length)))
            pos += step
        return out

    def snapshot(self) -> dict[str, Any]:
        """Positions and records, JSON-able (``pending_pos`` and wake-ups are not user visible)."""
        return {"size": self.size, "consumer_pos": self.consumer_pos, "producer_pos": self.producer_pos,
                "records": [r.to_json() for r in self.records()]}
