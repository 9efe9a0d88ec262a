"""The BPF ring buffer: record format, positions, wrap-around, commit order, wake-ups, consumer.

Expected values: kernel/bpf/ringbuf.c and libbpf's tools/lib/bpf/ringbuf.c (function named in
each test), the selftest expectations quoted in ``formats-and-corpora.md`` §7, and bytes measured
on Linux 6.18 (``kernel-oracle.md`` §7). ``TestKernelRingbuf`` runs the same BPF programs on the
kernel (socket filter, BPF_PROG_TEST_RUN, the ring read through its mmap) and on the reference
interpreter and compares every byte; it skips with the reason when ``bpf()`` is unusable.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import struct
from collections.abc import Iterator
from typing import Any

import pytest

from reference_vm.asm import assemble_bytes
from reference_vm.env import Environment
from reference_vm.helpers import DEFAULT_HELPERS
from reference_vm.helpers_maps import MAP_HELPERS
from reference_vm.interpreter import run
from reference_vm.maps import MapSpec, MapType, RingBufMap, add_map
from reference_vm.memory import STACK_TOP, Memory, MemoryFault, standard_memory
from reference_vm.ringbuf import (
    BPF_RB_AVAIL_DATA,
    BPF_RB_CONS_POS,
    BPF_RB_FORCE_WAKEUP,
    BPF_RB_NO_WAKEUP,
    BPF_RB_PROD_POS,
    BPF_RB_RING_SIZE,
    BPF_RINGBUF_BUSY_BIT,
    RINGBUF_MAX_RECORD_SZ,
    RingBuffer,
)

#: A scratch buffer: the lowest frame of the default (8-frame) stack region.
SCRATCH = STACK_TOP - 8 * 512

HELPERS = DEFAULT_HELPERS.with_helpers(*MAP_HELPERS)
H = {d.name: d.fn for d in MAP_HELPERS}
M64 = (1 << 64) - 1
PAGE = 4096


def ring(size: int = PAGE) -> tuple[Environment, RingBufMap]:
    env = Environment(standard_memory(None), ncpus=2)
    m = add_map(env, MapSpec("rb", MapType.RINGBUF, 0, 0, size))
    assert isinstance(m, RingBufMap)
    return env, m


def reserve(env: Environment, m: RingBufMap, size: int, flags: int = 0) -> int:
    return H["bpf_ringbuf_reserve"](env, m.handle, size, flags, 0, 0)


def submit(env: Environment, sample: int, flags: int = 0) -> None:
    assert H["bpf_ringbuf_submit"](env, sample, flags, 0, 0, 0) == 0


def discard(env: Environment, sample: int, flags: int = 0) -> None:
    assert H["bpf_ringbuf_discard"](env, sample, flags, 0, 0, 0) == 0


def output(env: Environment, m: RingBufMap, data: bytes, flags: int = 0) -> int:
    env.memory.write_bytes(SCRATCH, data) if data else None
    ret = H["bpf_ringbuf_output"](env, m.handle, SCRATCH, len(data), flags, 0)
    return ret - (1 << 64) if ret >> 63 else ret


def query(env: Environment, m: RingBufMap, flags: int) -> int:
    return H["bpf_ringbuf_query"](env, m.handle, flags, 0, 0, 0)


# --- record format ----------------------------------------------------------------------------


def test_measured_header_bytes() -> None:
    """kernel-oracle.md §7: reserve 16 (submit), 20 (submit), 8 (discard) gives these headers."""
    env, m = ring()
    s = reserve(env, m, 16)
    assert s == m.rb.data_base + 8
    env.memory.store(s, 8, 0x1122334455667788)
    submit(env, s)
    submit(env, reserve(env, m, 20))
    discard(env, reserve(env, m, 8))
    data = bytes(m.rb.data)
    assert data[0:8].hex() == "1000000003000000"  # len 16, pg_off 3
    assert data[8:16] == struct.pack("<Q", 0x1122334455667788)
    assert data[24:32].hex() == "1400000003000000"  # len 20 in a 32-byte slot
    assert data[56:64].hex() == "0800004003000000"  # len 8 | DISCARD
    assert m.rb.producer_pos == 72 and m.rb.consumer_pos == 0


def test_busy_header_and_pg_off_of_later_pages() -> None:
    # __bpf_ringbuf_reserve: len = size | BUSY; pg_off = (hdr - rb) >> PAGE_SHIFT, the data starting at
    # page 3 of struct bpf_ringbuf.
    env, m = ring(4 * PAGE)
    first = reserve(env, m, 4096 - 8)  # the next header starts exactly at page 1 of the data
    assert struct.unpack_from("<II", m.rb.data, 0) == ((4096 - 8) | BPF_RINGBUF_BUSY_BIT, 3)
    second = reserve(env, m, 100)
    assert second == m.rb.data_base + PAGE + 8
    assert struct.unpack_from("<II", m.rb.data, PAGE) == (100 | BPF_RINGBUF_BUSY_BIT, 4)
    submit(env, first)
    submit(env, second)
    assert [r.pg_off for r in m.rb.records()] == [3, 4]


def test_selftest_expectations() -> None:
    """formats-and-corpora.md §7 (selftests test_ringbuf): struct sample {int pid; int seq; long value;
    char comm[16];} (32 bytes, records of 8 + 32); the first trigger submits, the second outputs a copy
    and discards its reservation. Then avail_data == prod_pos == 3 * rec_sz, cons_pos == 0,
    ring_size == page size, and the consumer sees 333 and 777: total 2, discarded 1, dropped 0."""
    env, m = ring()
    rec_sz = 8 + 32
    total = discarded = dropped = 0
    for seq, value in enumerate((333, 777)):
        s = reserve(env, m, 32)
        if not s:
            dropped += 1
            continue
        env.memory.write_bytes(s, struct.pack("<iiq16s", 4242, seq, value, b"test_ringbuf"))
        total += 1
        if seq & 1:
            assert H["bpf_ringbuf_output"](env, m.handle, s, 32, 0, 0) == 0
            discard(env, s)
            discarded += 1
        else:
            submit(env, s)
    assert query(env, m, BPF_RB_AVAIL_DATA) == 3 * rec_sz
    assert query(env, m, BPF_RB_PROD_POS) == 3 * rec_sz
    assert query(env, m, BPF_RB_CONS_POS) == 0
    assert query(env, m, BPF_RB_RING_SIZE) == PAGE
    assert query(env, m, 4) == 0  # bpf_ringbuf_query: unknown flag
    samples = m.consume()
    assert [struct.unpack_from("<iiq", s)[2] for s in samples] == [333, 777]
    assert (total, discarded, dropped) == (2, 1, 0)
    assert query(env, m, BPF_RB_CONS_POS) == 3 * rec_sz and query(env, m, BPF_RB_AVAIL_DATA) == 0


# --- space ------------------------------------------------------------------------------------

#: payload size -> (successful outputs, producer_pos at the first -EAGAIN) for a 4096-byte ring,
#: measured on 6.18 by an unrolled socket filter (the kernel-oracle.md §7 figure of 4088 is the
#: 0- and 48-byte rows). The rule: fail when new_prod_pos - cons_pos > mask (4095).
EAGAIN_TABLE = {0: (511, 4088), 1: (255, 4080), 8: (255, 4080), 48: (73, 4088), 100: (36, 4032),
                496: (8, 4032)}


@pytest.mark.parametrize("size", sorted(EAGAIN_TABLE))
def test_eagain_when_full(size: int) -> None:
    env, m = ring()
    ok = 0
    while (ret := output(env, m, bytes(size))) == 0:
        ok += 1
    assert ret == -errno.EAGAIN  # bpf_ringbuf_output
    assert (ok, m.rb.producer_pos - m.rb.consumer_pos) == EAGAIN_TABLE[size]
    assert reserve(env, m, size) == 0  # bpf_ringbuf_reserve: NULL
    m.consume()
    assert output(env, m, bytes(size)) == 0  # room again once consumed


def test_reserve_refusals() -> None:
    env, m = ring()
    assert reserve(env, m, 8, flags=1) == 0  # bpf_ringbuf_reserve: flags must be 0
    assert reserve(env, m, PAGE - 8) == 0  # len = 4096 > mask: never fits
    assert reserve(env, m, PAGE - 16) != 0
    assert m.rb.reserve(RINGBUF_MAX_RECORD_SZ + 1) is None
    assert output(env, m, b"x", flags=4) == -errno.EINVAL  # only NO_WAKEUP | FORCE_WAKEUP


def test_pending_pos_guards_against_a_consumer_that_skips_busy_records() -> None:
    # Linux 6.10 "bpf: Fix overrunning reservations in ringbuf": the oldest BUSY record bounds the
    # producer too, even when user space moves consumer_pos past it.
    env, m = ring()
    held = reserve(env, m, 2000)
    m.rb.set_consumer_pos(m.rb.producer_pos)
    assert reserve(env, m, 2000) != 0
    assert reserve(env, m, 100) == 0  # 2008 + 2008 + 108 > 4095 counted from the BUSY record
    submit(env, held)


# --- double mapping ----------------------------------------------------------------------------


def test_wrapped_record_is_contiguous() -> None:
    env, m = ring()
    for _ in range(73):
        assert output(env, m, bytes(48)) == 0  # 73 * 56 = 4088
    m.consume()
    s = reserve(env, m, 48)  # header in the last 8 bytes, payload entirely in the mirror
    assert s == m.rb.data_base + PAGE
    for i in range(6):
        env.memory.store(s + 8 * i, 8, 0x0101010101010101 * (i + 1))
    submit(env, s)
    expected = b"".join(bytes([i + 1]) * 8 for i in range(6))
    assert bytes(m.rb.data[:48]) == expected  # the writes landed at the start of the data area
    assert m.consume() == [expected]


def test_misaligned_access_straddling_the_end() -> None:
    # The kernel's vmap maps the data pages twice (bpf_ringbuf_area_alloc): a misaligned 8-byte store
    # across the end is one access. Here it crosses from the data region into its mirror.
    env, m = ring()
    for _ in range(255):
        assert output(env, m, bytes(8)) == 0  # 255 * 16 = 4080
    m.consume()
    s = reserve(env, m, 16)  # header at 4080, sample 4088..4103
    env.memory.store(s + 4, 8, 0x8877665544332211)  # bytes 4092..4099
    assert env.memory.load(s + 4, 8) == 0x8877665544332211
    assert bytes(m.rb.data[4092:4096]) == bytes.fromhex("11223344")
    assert bytes(m.rb.data[0:4]) == bytes.fromhex("55667788")
    submit(env, s)
    # The last 4 bytes were never written: they still hold the first record's pg_off (3).
    assert m.consume() == [bytes(4) + bytes.fromhex("1122334455667788") + bytes.fromhex("03000000")]
    with pytest.raises(MemoryFault):
        env.memory.load(m.rb.data_base + 2 * PAGE - 4, 8)  # past the mirror


def test_output_wraps_too() -> None:
    env, m = ring()
    for _ in range(255):
        output(env, m, bytes(8))
    m.consume()
    payload = bytes(range(1, 17))
    assert output(env, m, payload) == 0
    assert bytes(m.rb.data[4088:4096]) == payload[:8] and bytes(m.rb.data[:8]) == payload[8:]
    assert m.consume() == [payload]


# --- commit order and consumer -------------------------------------------------------------------


def test_out_of_order_commit_is_visible_in_reservation_order() -> None:
    # libbpf ringbuf_process_ring stops at the first BUSY record.
    env, m = ring()
    a, b, c = reserve(env, m, 8), reserve(env, m, 8), reserve(env, m, 8)
    for s, tag in ((a, 1), (b, 2), (c, 3)):
        env.memory.store(s, 8, tag)
    submit(env, c)
    discard(env, b)
    assert m.consume() == [] and m.rb.consumer_pos == 0
    assert [(r.busy, r.discard) for r in m.rb.records()] == [(True, False), (False, True), (False, False)]
    submit(env, a)
    assert m.consume() == [struct.pack("<Q", 1), struct.pack("<Q", 3)]
    assert m.rb.consumer_pos == m.rb.producer_pos == 48


def test_consume_callback_and_limit() -> None:
    env, m = ring()
    for i in range(4):
        output(env, m, bytes([i]))
    seen: list[bytes] = []

    def stop(sample: bytes) -> int:
        seen.append(sample)
        return -1  # negative: stop after storing the position past this sample

    assert m.consume(stop) == [b"\x00"] and seen == [b"\x00"]
    assert m.rb.consumer_pos == 16
    assert m.consume(limit=2) == [b"\x01", b"\x02"] and m.rb.consumer_pos == 48
    assert m.consume() == [b"\x03"]


def test_double_commit_flips_busy_again() -> None:
    # bpf_ringbuf_commit XORs the BUSY bit; committing twice (the verifier forbids it) re-busies it.
    env, m = ring()
    s = reserve(env, m, 8)
    submit(env, s)
    submit(env, s)
    assert m.rb.records()[0].busy and m.consume() == []


def test_sample_pointer_must_belong_to_a_ring() -> None:
    env, m = ring()
    with pytest.raises(MemoryFault):
        H["bpf_ringbuf_submit"](env, SCRATCH + 64, 0, 0, 0, 0)


# --- wake-ups (bpf_ringbuf_commit) -------------------------------------------------------------


def test_wakeup_rules() -> None:
    env, m = ring()
    a = reserve(env, m, 8)
    b = reserve(env, m, 8)
    submit(env, b)
    assert env.notifications == 0  # the consumer (at 0) is not waiting for b
    submit(env, a)
    assert env.notifications == 1  # consumer_pos & mask == the record's offset
    m.consume()
    submit(env, reserve(env, m, 8), BPF_RB_NO_WAKEUP)
    assert env.notifications == 1
    submit(env, reserve(env, m, 8), BPF_RB_FORCE_WAKEUP)
    assert env.notifications == 2
    m.consume()
    discard(env, reserve(env, m, 8))  # a discard wakes the same way
    assert output(env, m, b"x", BPF_RB_NO_WAKEUP | BPF_RB_FORCE_WAKEUP) == 0  # FORCE wins
    assert env.notifications == 4 and m.rb.wakeups == 4


def test_snapshot() -> None:
    env, m = ring()
    submit(env, reserve(env, m, 3))
    reserve(env, m, 1)
    snap = m.snapshot()
    assert snap["producer_pos"] == 32 and snap["consumer_pos"] == 0
    assert [(r["len"], r["busy"]) for r in snap["records"]] == [(3, False), (1, True)]


def test_standalone_ring_buffer_checks() -> None:
    with pytest.raises(ValueError):
        RingBuffer(Memory([]), 0x10000, 3 * PAGE)
    with pytest.raises(ValueError):
        RingBuffer(Memory([]), 0x10001, PAGE)


# --- the same programs on the kernel and on the interpreter ------------------------------------


def _program_header() -> str:
    return """
        r1 = map_fd(rb) ll
        r2 = 16
        r3 = 0
        call 131
        if r0 == 0 goto out
        r6 = 0x1122334455667788 ll
        *(u64 *)(r0 + 0) = r6
        r1 = r0
        r2 = 0
        call 132
        r1 = map_fd(rb) ll
        r2 = 20
        r3 = 0
        call 131
        if r0 == 0 goto out
        r1 = r0
        r2 = 0
        call 132
        r1 = map_fd(rb) ll
        r2 = 8
        r3 = 0
        call 131
        if r0 == 0 goto out
        r1 = r0
        r2 = 0
        call 133
        r1 = map_fd(rb) ll
        r2 = 3
        call 134
        exit
    out:
        r0 = 0
        exit
    """


def _program_fill(n: int, size: int) -> str:
    """``n`` unrolled bpf_ringbuf_output calls of ``size`` zero bytes; r0 = successes (| 0x10000 if
    none failed)."""
    room = max(8, (size + 7) // 8 * 8)
    lines = ["r7 = 0", "r6 = 0"] + [f"*(u64 *)(r10 - {off}) = r6" for off in range(8, room + 8, 8)]
    for _ in range(n):
        lines += ["r1 = map_fd(rb) ll", "r2 = r10", f"r2 += -{room}", f"r3 = {size}", "r4 = 0", "call 130",
                  "if r0 != 0 goto out", "r7 += 1"]
    lines += ["r7 |= 0x10000", "out:", "r0 = r7", "exit"]
    return "\n".join(lines)


def _program_wrap(size: int, stores: list[tuple[int, int]]) -> str:
    """Reserve ``size`` bytes, store (offset, u64) pairs into the sample, submit."""
    lines = ["r1 = map_fd(rb) ll", f"r2 = {size}", "r3 = 0", "call 131", "if r0 == 0 goto out", "r6 = r0"]
    for off, value in stores:
        lines += [f"r7 = {value:#x} ll", f"*(u64 *)(r6 + {off}) = r7"]
    lines += ["r1 = r6", "r2 = 0", "call 132", "r0 = 1", "exit", "out:", "r0 = 0", "exit"]
    return "\n".join(lines)


def _program_out_of_order() -> str:
    return """
        r1 = map_fd(rb) ll
        r2 = 8
        r3 = 0
        call 131
        if r0 == 0 goto out
        r6 = r0
        r1 = map_fd(rb) ll
        r2 = 24
        r3 = 0
        call 131
        if r0 != 0 goto second
        r1 = r6
        r2 = 0
        call 133
        goto out
    second:
        r7 = r0
        r8 = 0x2222 ll
        *(u64 *)(r7 + 16) = r8
        r1 = r7
        r2 = 0
        call 132
        r8 = 0x1111 ll
        *(u64 *)(r6 + 0) = r8
        r1 = r6
        r2 = 0
        call 133
        r0 = 7
        exit
    out:
        r0 = 0
        exit
    """


class KernelRing:
    """A kernel ring buffer with its consumer page (RW) and producer page + data (RO, twice)."""

    def __init__(self, ks: Any, size: int) -> None:
        attr = ctypes.create_string_buffer(ks.ATTR_SIZE)
        struct.pack_into("<4I", attr, 0, MapType.RINGBUF, 0, 0, size)
        self.ks, self.size = ks, size
        self.fd = ks._bpf(0, attr)
        assert self.fd >= 0, self.fd
        self.cons = mmap.mmap(self.fd, PAGE, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE, offset=0)
        self.prod = mmap.mmap(self.fd, PAGE + 2 * size, mmap.MAP_SHARED, mmap.PROT_READ, offset=PAGE)

    def run(self, text: str) -> int:
        fd = self.ks.prog_load(assemble_bytes(text, symbols={"rb": self.fd}))
        try:
            return int(self.ks.prog_test_run(fd).retval)
        finally:
            os.close(fd)

    @property
    def consumer_pos(self) -> int:
        return int(struct.unpack_from("<Q", self.cons, 0)[0])

    @consumer_pos.setter
    def consumer_pos(self, pos: int) -> None:
        struct.pack_into("<Q", self.cons, 0, pos)

    @property
    def producer_pos(self) -> int:
        return int(struct.unpack_from("<Q", self.prod, 0)[0])

    def data(self) -> bytes:
        return bytes(self.prod[PAGE:PAGE + self.size])

    def mirror(self) -> bytes:
        return bytes(self.prod[PAGE + self.size:PAGE + 2 * self.size])

    def close(self) -> None:
        self.cons.close()
        self.prod.close()
        os.close(self.fd)


class OurRing:
    """The same ring in the reference interpreter."""

    def __init__(self, size: int) -> None:
        self.env, self.map = ring(size)

    def run(self, text: str) -> int:
        out = run(assemble_bytes(text, symbols={"rb": self.map.fd}), env=self.env, helpers=HELPERS)
        assert out.error == "ok", out.message
        assert out.r0 is not None
        return out.r0 & 0xFFFF_FFFF  # TEST_RUN retval is a u32 (kernel-oracle.md P1)

    @property
    def consumer_pos(self) -> int:
        return self.map.rb.consumer_pos

    @consumer_pos.setter
    def consumer_pos(self, pos: int) -> None:
        self.map.rb.set_consumer_pos(pos)

    @property
    def producer_pos(self) -> int:
        return self.map.rb.producer_pos

    def data(self) -> bytes:
        return bytes(self.map.rb.data)

    def mirror(self) -> bytes:
        return self.map.rb.read(self.map.rb.size, self.map.rb.size)


@pytest.fixture(scope="module")
def kernel() -> Iterator[Any]:
    from conformance.kernel import syscall
    reason = syscall.probe()
    if reason is not None:
        pytest.skip(reason)
    yield syscall


class TestKernelRingbuf:
    @pytest.fixture(autouse=True)
    def _rings(self, kernel: Any) -> Iterator[None]:
        self.ks = kernel
        self.rings: list[KernelRing] = []
        yield
        for r in self.rings:
            r.close()

    def pair(self, size: int = PAGE) -> tuple[KernelRing, OurRing]:
        k = KernelRing(self.ks, size)
        self.rings.append(k)
        return k, OurRing(size)

    def same(self, k: KernelRing, o: OurRing) -> None:
        assert (k.producer_pos, k.consumer_pos) == (o.producer_pos, o.consumer_pos)
        assert k.data() == o.data()
        assert k.mirror() == o.mirror() == k.data()

    def test_header_program(self) -> None:
        k, o = self.pair()
        assert k.run(_program_header()) == o.run(_program_header()) == 72  # BPF_RB_PROD_POS
        self.same(k, o)

    @pytest.mark.parametrize("size", sorted(EAGAIN_TABLE))
    def test_fill_until_eagain(self, size: int) -> None:
        k, o = self.pair()
        text = _program_fill(520 if size < 8 else 300, size)
        assert k.run(text) == o.run(text) == EAGAIN_TABLE[size][0]
        assert k.producer_pos == EAGAIN_TABLE[size][1]
        self.same(k, o)

    @pytest.mark.parametrize("fill, size, stores", [
        (48, 48, [(8 * i, 0x0101010101010101 * (i + 1)) for i in range(6)]),  # payload all in the mirror
        (8, 16, [(4, 0x8877665544332211), (0, 0x0F0E0D0C0B0A0908)]),  # misaligned store across the end
    ])
    def test_wrap_around(self, fill: int, size: int, stores: list[tuple[int, int]]) -> None:
        k, o = self.pair()
        text = _program_fill(600, fill)
        assert k.run(text) == o.run(text)
        k.consumer_pos = o.consumer_pos = k.producer_pos  # what user space does after reading
        wrap = _program_wrap(size, stores)
        assert k.run(wrap) == o.run(wrap) == 1
        self.same(k, o)

    def test_out_of_order_commit(self) -> None:
        k, o = self.pair()
        assert k.run(_program_out_of_order()) == o.run(_program_out_of_order()) == 7
        self.same(k, o)
        assert o.map.consume() == [bytes(16) + struct.pack("<Q", 0x2222)]
