"""Maps: creation checks, program-side and syscall-side semantics, layout, helpers.

Expected values come from the Linux sources (function named in each test) or were measured with
``bpf(2)`` on the 6.18 kernel this suite targets; the ``TestKernel*`` classes repeat the
measurements against the running kernel and compare them with :mod:`reference_vm.maps` (they
skip with the reason when ``bpf()`` is unusable).
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reference_vm.asm import assemble_bytes
from reference_vm.env import Environment
from reference_vm.helpers import DEFAULT_HELPERS
from reference_vm.helpers_maps import MAP_HELPERS
from reference_vm.insn import decode_program
from reference_vm.interpreter import run, run_programs
from reference_vm.maps import (
    BPF_ANY,
    BPF_EXIST,
    BPF_F_INNER_MAP,
    BPF_F_LOCK,
    BPF_F_MMAPABLE,
    BPF_F_NO_COMMON_LRU,
    BPF_F_NO_PREALLOC,
    BPF_F_NUMA_NODE,
    BPF_F_PRESERVE_ELEMS,
    BPF_F_RDONLY,
    BPF_F_RDONLY_PROG,
    BPF_F_WRONLY,
    BPF_F_WRONLY_PROG,
    BPF_F_ZERO_SEED,
    BPF_NOEXIST,
    CPU_STRIDE,
    ENOTSUPP,
    HANDLE_SIZE,
    MAP_BASE,
    MAP_STRIDE,
    VALUES_OFFSET,
    ArrayOfMapsMap,
    BpfMap,
    CgroupStorageMap,
    HashMap,
    HashOfMapsMap,
    MapError,
    MapSpec,
    MapType,
    PerfEventArrayMap,
    ProgArrayMap,
    ProgRef,
    add_map,
    check_spec,
    create_map,
    htab_hash,
)
from reference_vm.memory import MEM_BASE, STACK_BASE, STACK_TOP, Memory, MemoryFault, Region, standard_memory

#: A scratch buffer: the lowest frame of the default (8-frame) stack region.
SCRATCH = STACK_TOP - 8 * 512

HELPERS = DEFAULT_HELPERS.with_helpers(*MAP_HELPERS)
H = {d.name: d.fn for d in MAP_HELPERS}


def u32(i: int) -> bytes:
    return struct.pack("<I", i)


def new_env(ncpus: int = 2, cpu: int = 0) -> Environment:
    env = Environment(standard_memory(bytes(16)), ncpus=ncpus)
    env.cpu = cpu
    return env


def errno_of(fn: Any, *args: Any) -> int:
    """0 if the syscall-side call succeeds, else its errno."""
    try:
        fn(*args)
    except MapError as e:
        return e.errno
    return 0


# --- creation (kernel/bpf/syscall.c map_create and the per-type alloc checks) ------------------

ARR, PARR, HASH, PHASH, LRU, LRUP = (MapType.ARRAY, MapType.PERCPU_ARRAY, MapType.HASH,
                                    MapType.PERCPU_HASH, MapType.LRU_HASH, MapType.LRU_PERCPU_HASH)
TEMPLATE_ARRAY = MapSpec("inner", ARR, 4, 8, 4)

#: (id, spec, errno): every errno measured on Linux 6.18; the function that decides it in the comment.
CREATE_CASES: list[tuple[str, MapSpec, int]] = [
    # arraymap.c array_map_alloc_check
    ("array-ok", MapSpec("a", ARR, 4, 8, 1), 0),
    ("array-key8", MapSpec("a", ARR, 8, 4, 1), errno.EINVAL),
    ("array-value0", MapSpec("a", ARR, 4, 0, 1), errno.EINVAL),
    ("array-entries0", MapSpec("a", ARR, 4, 4, 0), errno.EINVAL),
    ("array-no-prealloc", MapSpec("a", ARR, 4, 4, 1, BPF_F_NO_PREALLOC), errno.EINVAL),
    ("array-mmapable", MapSpec("a", ARR, 4, 4, 1, BPF_F_MMAPABLE), 0),
    ("array-inner-map", MapSpec("a", ARR, 4, 4, 1, BPF_F_INNER_MAP), 0),
    ("array-preserve-elems", MapSpec("a", ARR, 4, 4, 1, BPF_F_PRESERVE_ELEMS), errno.EINVAL),
    ("array-rdonly-wronly-prog", MapSpec("a", ARR, 4, 4, 1, BPF_F_RDONLY_PROG | BPF_F_WRONLY_PROG),
     errno.EINVAL),
    ("array-value-2G", MapSpec("a", ARR, 4, 1 << 31, 1), errno.E2BIG),
    ("percpu-array-mmapable", MapSpec("a", PARR, 4, 4, 1, BPF_F_MMAPABLE), errno.EINVAL),
    ("percpu-array-inner-map", MapSpec("a", PARR, 4, 4, 1, BPF_F_INNER_MAP), errno.EINVAL),
    ("percpu-array-numa", MapSpec("a", PARR, 4, 4, 1, BPF_F_NUMA_NODE), errno.EINVAL),
    ("percpu-array-32768", MapSpec("a", PARR, 4, 32768, 1), 0),
    ("percpu-array-32769", MapSpec("a", PARR, 4, 32769, 1), errno.E2BIG),
    # syscall.c bpf_get_file_flag
    ("rdonly-and-wronly", MapSpec("a", ARR, 4, 4, 1, BPF_F_RDONLY | BPF_F_WRONLY), errno.EINVAL),
    # hashtab.c htab_map_alloc_check / htab_map_alloc
    ("hash-ok", MapSpec("h", HASH, 4, 8, 16), 0),
    ("hash-key0", MapSpec("h", HASH, 0, 4, 1), errno.EINVAL),
    ("hash-value0", MapSpec("h", HASH, 4, 0, 1), errno.EINVAL),
    ("hash-entries0", MapSpec("h", HASH, 4, 4, 0), errno.EINVAL),
    ("hash-no-common-lru", MapSpec("h", HASH, 4, 4, 1, BPF_F_NO_COMMON_LRU), errno.EINVAL),
    ("hash-zero-seed", MapSpec("h", HASH, 4, 4, 1, BPF_F_ZERO_SEED), 0),
    ("hash-no-prealloc", MapSpec("h", HASH, 4, 4, 1, BPF_F_NO_PREALLOC), 0),
    ("hash-mmapable", MapSpec("h", HASH, 4, 4, 1, BPF_F_MMAPABLE), errno.EINVAL),
    ("hash-key-max", MapSpec("h", HASH, 4194251, 4, 1), 0),  # + 4 = KMALLOC_MAX_SIZE - 48 - 1
    ("hash-key-too-big", MapSpec("h", HASH, 4194252, 4, 1), errno.E2BIG),
    ("hash-2G-entries", MapSpec("h", HASH, 4, 4, 1 << 31), errno.E2BIG),
    ("percpu-hash-numa", MapSpec("h", PHASH, 4, 4, 1, BPF_F_NUMA_NODE), errno.EINVAL),
    ("percpu-hash-32769", MapSpec("h", PHASH, 4, 32769, 1), errno.E2BIG),
    ("lru-no-prealloc", MapSpec("h", LRU, 4, 4, 1, BPF_F_NO_PREALLOC), ENOTSUPP),
    ("lru-no-common-lru", MapSpec("h", LRU, 4, 4, 4, BPF_F_NO_COMMON_LRU), 0),
    ("lru-percpu-ok", MapSpec("h", LRUP, 4, 8, 4), 0),
    # arraymap.c fd_array_map_alloc_check
    ("prog-array-ok", MapSpec("p", MapType.PROG_ARRAY, 4, 4, 4), 0),
    ("prog-array-value8", MapSpec("p", MapType.PROG_ARRAY, 4, 8, 4), errno.EINVAL),
    ("prog-array-key8", MapSpec("p", MapType.PROG_ARRAY, 8, 4, 4), errno.EINVAL),
    ("prog-array-rdonly-prog", MapSpec("p", MapType.PROG_ARRAY, 4, 4, 4, BPF_F_RDONLY_PROG), errno.EINVAL),
    ("prog-array-mmapable", MapSpec("p", MapType.PROG_ARRAY, 4, 4, 4, BPF_F_MMAPABLE), errno.EINVAL),
    ("perf-array-ok", MapSpec("e", MapType.PERF_EVENT_ARRAY, 4, 4, 2), 0),
    ("perf-array-preserve", MapSpec("e", MapType.PERF_EVENT_ARRAY, 4, 4, 2, BPF_F_PRESERVE_ELEMS), 0),
    ("perf-array-value8", MapSpec("e", MapType.PERF_EVENT_ARRAY, 4, 8, 2), errno.EINVAL),
    # ringbuf.c ringbuf_map_alloc
    ("ringbuf-ok", MapSpec("r", MapType.RINGBUF, 0, 0, 4096), 0),
    ("ringbuf-3-pages", MapSpec("r", MapType.RINGBUF, 0, 0, 3 * 4096), errno.EINVAL),
    ("ringbuf-100", MapSpec("r", MapType.RINGBUF, 0, 0, 100), errno.EINVAL),
    ("ringbuf-0", MapSpec("r", MapType.RINGBUF, 0, 0, 0), errno.EINVAL),
    ("ringbuf-key4", MapSpec("r", MapType.RINGBUF, 4, 0, 4096), errno.EINVAL),
    ("ringbuf-no-prealloc", MapSpec("r", MapType.RINGBUF, 0, 0, 4096, BPF_F_NO_PREALLOC), errno.EINVAL),
    ("ringbuf-numa", MapSpec("r", MapType.RINGBUF, 0, 0, 4096, BPF_F_NUMA_NODE), 0),
    # local_storage.c cgroup_storage_map_alloc
    ("cgroup-storage-16", MapSpec("c", MapType.CGROUP_STORAGE, 16, 8, 0), 0),
    ("cgroup-storage-8", MapSpec("c", MapType.CGROUP_STORAGE, 8, 8, 0), 0),
    ("cgroup-storage-key12", MapSpec("c", MapType.CGROUP_STORAGE, 12, 8, 0), errno.EINVAL),
    ("cgroup-storage-entries1", MapSpec("c", MapType.CGROUP_STORAGE, 16, 8, 1), errno.EINVAL),
    ("cgroup-storage-value0", MapSpec("c", MapType.CGROUP_STORAGE, 16, 0, 0), errno.EINVAL),
    ("cgroup-storage-65407", MapSpec("c", MapType.CGROUP_STORAGE, 16, 65407, 0), 0),
    ("cgroup-storage-65408", MapSpec("c", MapType.CGROUP_STORAGE, 16, 65408, 0), errno.E2BIG),
    # map_in_map.c bpf_map_meta_alloc (after fd_array/fd_htab alloc checks)
    ("array-of-maps", MapSpec("o", MapType.ARRAY_OF_MAPS, 4, 4, 2, inner_map=TEMPLATE_ARRAY), 0),
    ("array-of-maps-no-inner", MapSpec("o", MapType.ARRAY_OF_MAPS, 4, 4, 2), errno.EINVAL),
    ("array-of-maps-value8", MapSpec("o", MapType.ARRAY_OF_MAPS, 4, 8, 2, inner_map=TEMPLATE_ARRAY),
     errno.EINVAL),
    ("array-of-maps-of-prog-array", MapSpec("o", MapType.ARRAY_OF_MAPS, 4, 4, 2,
                                            inner_map=MapSpec("p", MapType.PROG_ARRAY, 4, 4, 4)), ENOTSUPP),
    ("array-of-maps-of-cgroup-storage", MapSpec("o", MapType.ARRAY_OF_MAPS, 4, 4, 2,
                                                inner_map=MapSpec("c", MapType.CGROUP_STORAGE, 16, 8, 0)),
     ENOTSUPP),
    ("array-of-maps-nested", MapSpec("o", MapType.ARRAY_OF_MAPS, 4, 4, 2,
                                     inner_map=MapSpec("i", MapType.ARRAY_OF_MAPS, 4, 4, 2,
                                                       inner_map=TEMPLATE_ARRAY)), errno.EINVAL),
    ("array-of-maps-of-ringbuf", MapSpec("o", MapType.ARRAY_OF_MAPS, 4, 4, 2,
                                         inner_map=MapSpec("r", MapType.RINGBUF, 0, 0, 4096)), 0),
    ("hash-of-maps", MapSpec("o", MapType.HASH_OF_MAPS, 4, 4, 2, inner_map=MapSpec("h", HASH, 4, 8, 4)), 0),
    ("hash-of-maps-of-prog-array", MapSpec("o", MapType.HASH_OF_MAPS, 4, 4, 2,
                                           inner_map=MapSpec("p", MapType.PROG_ARRAY, 4, 4, 4)), ENOTSUPP),
    # map_create: unknown types; bpf_obj_name_cpy
    ("type-0", MapSpec("x", 0, 4, 4, 1), errno.EINVAL),
    ("type-200", MapSpec("x", 200, 4, 4, 1), errno.EINVAL),
    ("name-dash", MapSpec("bad-name", ARR, 4, 4, 1), errno.EINVAL),
    ("name-dot-underscore", MapSpec("ok_name.data", ARR, 4, 4, 1), 0),
]


@pytest.mark.parametrize("spec, expected", [c[1:] for c in CREATE_CASES], ids=[c[0] for c in CREATE_CASES])
def test_create_errno(spec: MapSpec, expected: int) -> None:
    assert errno_of(check_spec, spec, 2) == expected


def test_unmodelled_and_named_types() -> None:
    with pytest.raises(MapError) as e:
        check_spec(MapSpec("t", 11, 8, 8, 1))  # LPM_TRIE exists in Linux
    assert e.value.unsupported and e.value.errno == errno.EOPNOTSUPP
    assert MapType.parse("lru_hash") == MapType.LRU_HASH and MapType.parse(27) == MapType.RINGBUF
    assert MapType.parse("BPF_MAP_TYPE_RINGBUF") == MapType.RINGBUF and MapType.parse(200) == 200
    assert MapSpec("x", "array", 4, 4, 1).type == MapType.ARRAY  # type: ignore[arg-type]
    with pytest.raises(MapError, match="unknown map type 'nope'"):
        MapType.parse("nope")


def test_bpfcheck_limits_are_enomem() -> None:
    # Allocation failures in the kernel are ENOMEM; bpfcheck's windows are reported the same way.
    assert errno_of(check_spec, MapSpec("a", ARR, 4, 1 << 20, 1 << 10), 2) == errno.ENOMEM
    assert errno_of(check_spec, MapSpec("r", MapType.RINGBUF, 0, 0, 1 << 29), 2) == errno.ENOMEM


def test_rdonly_wronly_fds() -> None:
    # syscall.c map_get_sys_perms: BPF_F_RDONLY maps refuse updates and deletes, BPF_F_WRONLY maps
    # lookups and get_next_key, with EPERM before any other check (measured on 6.18).
    ro = create_map(MapSpec("r", HASH, 4, 4, 4, BPF_F_RDONLY), new_env(), 0)
    assert errno_of(ro.sys_update, u32(1), u32(1), BPF_F_LOCK) == errno.EPERM
    assert errno_of(ro.sys_delete, u32(1)) == errno.EPERM
    assert errno_of(ro.sys_lookup, u32(1)) == errno.ENOENT
    assert ro.update(u32(1), u32(1)) == 0  # programs are limited by BPF_F_RDONLY_PROG instead
    wo = create_map(MapSpec("w", HASH, 4, 4, 4, BPF_F_WRONLY), new_env(), 0)
    wo.sys_update(u32(1), u32(1))
    assert errno_of(wo.sys_lookup, u32(1)) == errno.EPERM
    assert errno_of(wo.sys_get_next_key, None) == errno.EPERM
    wo.sys_delete(u32(1))


# --- layout --------------------------------------------------------------------------------------


def test_layout_handles_fds_and_windows() -> None:
    env = new_env()
    a = add_map(env, MapSpec("a", ARR, 4, 8, 4))
    h = add_map(env, MapSpec("h", HASH, 4, 8, 4))
    assert (a.fd, h.fd) == (3, 4) and (a.id, h.id) == (1, 2)
    assert a.handle == MAP_BASE and h.handle == MAP_BASE + MAP_STRIDE
    assert MEM_BASE < MAP_BASE and MAP_BASE + 64 * MAP_STRIDE <= STACK_BASE
    assert a.lookup(u32(0)) == MAP_BASE + VALUES_OFFSET
    assert env.map_by_handle(h.handle) is h
    # The handle is a read-only stand-in for struct bpf_map: u32 type, key, value, max_entries.
    assert struct.unpack("<4I", env.memory.read_bytes(h.handle, 16)) == (1, 4, 8, 4)
    with pytest.raises(MemoryFault):
        env.memory.store(h.handle, 4, 0)
    with pytest.raises(MemoryFault):
        env.memory.load(h.handle + HANDLE_SIZE, 1)


def test_create_map_on_plain_memory_and_index_limits() -> None:
    mem = Memory([])
    m = create_map(MapSpec("a", PARR, 4, 4, 2), mem, 5, ncpus=3)
    assert m.ncpus == 3 and m.handle == MAP_BASE + 5 * MAP_STRIDE
    assert errno_of(create_map, MapSpec("a", ARR, 4, 4, 1), mem, 64) == errno.E2BIG  # MAX_USED_MAPS


# --- ARRAY / PERCPU_ARRAY (kernel/bpf/arraymap.c) ---------------------------------------------


def test_array_values_are_guest_memory() -> None:
    env = new_env()
    a = add_map(env, MapSpec("a", ARR, 4, 12, 3))
    addr = a.lookup(u32(2))
    assert addr is not None and a.lookup(u32(3)) is None  # array_map_lookup_elem: NULL past the end
    assert a.lookup(u32(1)) == addr - 16  # elem_size = round_up(12, 8)
    env.memory.store(addr + 4, 4, 0xDEADBEEF)
    assert a.sys_lookup(u32(2)) == bytes(4) + u32(0xDEADBEEF) + bytes(4)  # value_size bytes
    assert a.sys_lookup(u32(0)) == bytes(12)  # zero-filled


def test_array_update_errnos() -> None:
    # array_map_update_elem: flags > BPF_EXIST -> EINVAL; index >= max_entries -> E2BIG;
    # BPF_NOEXIST -> EEXIST ("all elements already exist"); BPF_F_LOCK without a spin lock -> EINVAL.
    a = create_map(MapSpec("a", ARR, 4, 4, 2), new_env(), 0)
    assert a.update(u32(0), u32(1), 3) == -errno.EINVAL
    assert a.update(u32(2), u32(1), BPF_ANY) == -errno.E2BIG
    assert a.update(u32(2), u32(1), 3) == -errno.EINVAL  # flags are checked first
    assert a.update(u32(0), u32(1), BPF_NOEXIST) == -errno.EEXIST
    assert a.update(u32(0), u32(1), BPF_F_LOCK) == -errno.EINVAL
    assert a.update(u32(0), u32(1), BPF_F_LOCK | BPF_NOEXIST) == -errno.EEXIST
    assert a.update(u32(1), u32(7), BPF_EXIST) == 0 and a.sys_lookup(u32(1)) == u32(7)
    assert a.delete(u32(0)) == -errno.EINVAL  # array_map_delete_elem
    assert errno_of(a.sys_delete, u32(0)) == errno.EINVAL
    assert errno_of(a.sys_lookup, u32(5)) == errno.ENOENT
    assert errno_of(a.sys_update, u32(0), u32(1), BPF_F_LOCK) == errno.EINVAL  # syscall.c map_update_elem


def test_array_get_next_key() -> None:
    # array_map_get_next_key: NULL or out-of-range key -> 0; last index -> ENOENT; else index + 1.
    a = create_map(MapSpec("a", ARR, 4, 4, 3), new_env(), 0)
    assert a.sys_get_next_key(None) == u32(0)
    assert a.sys_get_next_key(u32(0)) == u32(1)
    assert a.sys_get_next_key(u32(99)) == u32(0)
    assert errno_of(a.sys_get_next_key, u32(2)) == errno.ENOENT
    assert a.sys_keys() == [u32(0), u32(1), u32(2)]


def test_percpu_array() -> None:
    env = new_env(ncpus=2, cpu=1)
    a = add_map(env, MapSpec("p", PARR, 4, 12, 2))
    p0, p1 = a.lookup(u32(0), 0), a.lookup(u32(0), 1)
    assert p0 is not None and p1 is not None and p1 - p0 == CPU_STRIDE
    env.memory.write_bytes(p1, b"\x11" * 12)
    assert a.update(u32(1), b"\x22" * 12, BPF_ANY, 0) == 0  # a program updates its CPU's copy
    # bpf_percpu_array_copy: every CPU's round_up(12, 8) = 16 bytes, back to back.
    assert a.sys_lookup(u32(0)) == bytes(16) + b"\x11" * 12 + bytes(4)
    assert a.sys_lookup(u32(1)) == b"\x22" * 12 + bytes(4) + bytes(16)
    # bpf_percpu_array_update copies the rounded size, padding included.
    a.sys_update(u32(1), bytes(range(32)))
    assert a.sys_lookup(u32(1)) == bytes(range(32))
    assert env.memory.read_bytes(a.lookup(u32(1), 1) or 0, 4) == bytes(range(16, 20))
    assert errno_of(a.sys_update, u32(1), bytes(32), BPF_NOEXIST) == errno.EEXIST
    assert errno_of(a.sys_update, u32(9), bytes(32), BPF_ANY) == errno.E2BIG
    assert errno_of(a.sys_update, u32(1), bytes(16)) == errno.EINVAL  # wrong value length


def test_direct_value_address() -> None:
    # arraymap.c array_map_direct_value_addr: single-element arrays only, offset < value_size.
    env = new_env()
    one = add_map(env, MapSpec("d", ARR, 4, 16, 1))
    two = add_map(env, MapSpec("e", ARR, 4, 16, 2))
    assert one.direct_value_address(8) == (one.lookup(u32(0)) or 0) + 8
    assert one.direct_value_address(16) is None and two.direct_value_address(0) is None


def test_array_snapshot_lists_nonzero_entries() -> None:
    a = create_map(MapSpec("a", ARR, 4, 4, 200), new_env(), 0)
    a.sys_update(u32(150), u32(5))
    snap = a.snapshot()
    assert snap == {"name": "a", "type": "ARRAY", "entries": {u32(150).hex(): u32(5).hex()}}
    json.dumps(snap)


# --- HASH and friends (kernel/bpf/hashtab.c) ---------------------------------------------------


def test_hash_flags_and_capacity() -> None:
    # htab_map_update_elem + check_flags + alloc_htab_elem.
    h = create_map(MapSpec("h", HASH, 4, 4, 2), new_env(), 0)
    assert h.update(u32(1), u32(10), BPF_EXIST) == -errno.ENOENT
    assert h.update(u32(1), u32(10), BPF_NOEXIST) == 0
    assert h.update(u32(1), u32(11), BPF_NOEXIST) == -errno.EEXIST
    assert h.update(u32(1), u32(11), 3) == -errno.EINVAL
    assert h.update(u32(1), u32(11), BPF_F_LOCK) == -errno.EINVAL
    assert h.update(u32(2), u32(20), BPF_ANY) == 0
    assert h.update(u32(3), u32(30), BPF_ANY) == -errno.E2BIG  # all max_entries elements in use
    assert h.update(u32(2), u32(21), BPF_EXIST) == 0  # replacing is fine when full (extra_elems)
    assert h.delete(u32(3)) == -errno.ENOENT
    assert h.delete(u32(1)) == 0 and h.lookup(u32(1)) is None
    assert h.update(u32(3), u32(30), BPF_ANY) == 0  # the slot was freed
    assert h.snapshot()["entries"] == {u32(2).hex(): u32(21).hex(), u32(3).hex(): u32(30).hex()}


def test_hash_replace_moves_the_element() -> None:
    # htab_map_update_elem allocates l_new (this CPU's extra element) and frees l_old: a pointer from
    # an earlier lookup keeps seeing the old value.
    env = new_env()
    h = add_map(env, MapSpec("h", HASH, 4, 8, 4))
    h.update(u32(1), b"A" * 8)
    old = h.lookup(u32(1))
    h.update(u32(1), b"B" * 8)
    new = h.lookup(u32(1))
    assert old != new and old is not None and new is not None
    assert env.memory.read_bytes(old, 8) == b"A" * 8 and env.memory.read_bytes(new, 8) == b"B" * 8
    # Deleted slots are reused first (LIFO free list).
    h.delete(u32(1))
    h.update(u32(2), b"C" * 8)
    assert h.lookup(u32(2)) == new


#: Iteration order of a BPF_F_ZERO_SEED hash (max_entries 16) after inserting these keys, measured
#: on 6.18: buckets jhash2(key, 0) & 15 in order, newest first within a bucket.
ZERO_SEED_KEYS = [5, 1, 9, 3, 100, 7, 2]
ZERO_SEED_ORDER = [5, 2, 7, 1, 100, 9, 3]


def test_hash_iteration_order_is_the_zero_seed_order() -> None:
    h = create_map(MapSpec("h", HASH, 4, 8, 16, BPF_F_ZERO_SEED), new_env(), 0)
    for k in ZERO_SEED_KEYS:
        h.sys_update(u32(k), bytes(8))
    assert [struct.unpack("<I", k)[0] for k in h.sys_keys()] == ZERO_SEED_ORDER
    # htab_map_get_next_key: a missing key restarts from the first element; ENOENT at the end.
    assert h.sys_get_next_key(u32(12345)) == u32(ZERO_SEED_ORDER[0])
    assert errno_of(h.sys_get_next_key, u32(ZERO_SEED_ORDER[-1])) == errno.ENOENT
    empty = create_map(MapSpec("e", HASH, 4, 8, 4), new_env(), 1)
    assert errno_of(empty.sys_get_next_key, None) == errno.ENOENT


def test_htab_hash_paths() -> None:
    # htab_map_hash: jhash2 over words for key sizes that are multiples of 4, jhash otherwise; both
    # are exercised against the kernel by TestKernelMaps.test_hash_order.
    buckets = {k: htab_hash(u32(k)) & 15 for k in ZERO_SEED_KEYS}
    assert buckets == {5: 6, 1: 11, 9: 13, 3: 15, 100: 12, 7: 10, 2: 10}  # 2 and 7 share bucket 10
    assert htab_hash(bytes(6)) != htab_hash(bytes(8))


def test_percpu_hash() -> None:
    env = new_env(ncpus=2, cpu=1)
    h = add_map(env, MapSpec("p", PHASH, 4, 4, 4))
    # pcpu_init_value (program path): this CPU gets the value, the others zeros.
    assert h.update(u32(1), u32(7), BPF_ANY, 1) == 0
    assert h.sys_lookup(u32(1)) == bytes(8) + u32(7) + bytes(4)
    p1 = h.lookup(u32(1), 1)
    assert h.update(u32(1), u32(8), BPF_ANY, 1) == 0 and h.lookup(u32(1), 1) == p1  # in place
    assert h.update(u32(1), u32(8), BPF_F_LOCK, 1) == -errno.EINVAL  # flags > BPF_EXIST
    h.sys_update(u32(2), bytes(range(16)))  # onallcpus: rounded values of every CPU
    assert h.sys_lookup(u32(2)) == bytes(range(16))
    assert env.memory.read_bytes(h.lookup(u32(2), 0) or 0, 4) == bytes(range(4))


def test_lru_evicts_least_recently_used() -> None:
    env = new_env()
    h = add_map(env, MapSpec("l", LRU, 4, 4, 3))
    for k in (1, 2, 3):
        assert h.update(u32(k), u32(k)) == 0
    assert h.lookup(u32(1)) is not None  # a program lookup marks key 1 (bpf_lru_node_set_ref)
    h.sys_lookup(u32(2))  # a syscall lookup does not (htab_lru_map_lookup_elem_sys)
    assert h.update(u32(4), u32(4)) == 0
    assert sorted(struct.unpack("<I", k)[0] for k in h.sys_keys()) == [1, 3, 4]
    # htab_lru_map_update_elem takes a node before checking flags: a failing BPF_NOEXIST on a
    # full map still evicts (key 3, now the least recent).
    assert h.update(u32(1), u32(0), BPF_NOEXIST) == -errno.EEXIST
    assert sorted(struct.unpack("<I", k)[0] for k in h.sys_keys()) == [1, 4]
    assert h.update(u32(9), u32(9), BPF_EXIST) == -errno.ENOENT


def test_lru_no_common_lru_is_per_cpu() -> None:
    # htab_map_alloc rounds max_entries up to a multiple of the CPUs; each CPU's list evicts alone.
    env = new_env(ncpus=2)
    h = add_map(env, MapSpec("l", LRU, 4, 4, 3, BPF_F_NO_COMMON_LRU))
    assert isinstance(h, HashMap) and h.capacity == 4
    for k in (1, 2, 3):
        assert h.update(u32(k), u32(k), BPF_ANY, 0) == 0  # CPU 0 has 2 nodes: 3 evicts 1
    assert sorted(struct.unpack("<I", k)[0] for k in h.sys_keys()) == [2, 3]
    assert h.update(u32(4), u32(4), BPF_ANY, 1) == 0
    assert len(h) == 3


def test_lru_percpu_hash() -> None:
    # __htab_lru_percpu_map_update_elem: no node taken for BPF_EXIST; in-place update when present.
    env = new_env(ncpus=2)
    h = add_map(env, MapSpec("l", LRUP, 4, 4, 2))
    assert h.update(u32(1), u32(1), BPF_EXIST, 0) == -errno.ENOENT
    assert h.update(u32(1), u32(1), BPF_ANY, 0) == 0
    addr = h.lookup(u32(1), 0)
    assert h.update(u32(1), u32(2), BPF_EXIST, 0) == 0 and h.lookup(u32(1), 0) == addr
    assert h.sys_lookup(u32(1)) == u32(2) + bytes(4) + bytes(8)


# --- fd maps: PROG_ARRAY, ARRAY_OF_MAPS, HASH_OF_MAPS, PERF_EVENT_ARRAY -------------------------


def test_prog_array() -> None:
    progs = {7: ProgRef("b", 42)}
    p = create_map(MapSpec("p", MapType.PROG_ARRAY, 4, 4, 2), new_env(), 0, prog_resolver=progs.get)
    assert isinstance(p, ProgArrayMap)
    assert p.lookup(u32(0)) is None and p.update(u32(0), u32(7)) == -errno.EINVAL  # verifier-only paths
    assert errno_of(p.sys_lookup, u32(0)) == errno.ENOENT  # bpf_fd_array_map_lookup_elem: empty
    assert errno_of(p.sys_update, u32(0), u32(7), BPF_NOEXIST) == errno.EINVAL  # only BPF_ANY
    assert errno_of(p.sys_update, u32(2), u32(7)) == errno.E2BIG
    assert errno_of(p.sys_update, u32(0), u32(999)) == errno.EBADF
    p.sys_update(u32(1), u32(7))
    assert p.sys_lookup(u32(1)) == u32(42)  # user space reads back the prog id (kernel-oracle P11)
    assert p.program_at(1) == "b" and p.program_at(5) is None
    assert errno_of(p.sys_delete, u32(0)) == errno.ENOENT and errno_of(p.sys_delete, u32(4)) == errno.E2BIG
    p.sys_delete(u32(1))
    p.set(0, "a")
    assert p.snapshot()["slots"] == {"0": "a"}


def test_array_of_maps() -> None:
    env = new_env()
    inner = add_map(env, MapSpec("inner", ARR, 4, 8, 4))
    other = add_map(env, MapSpec("other", ARR, 4, 8, 8))  # max_entries differs from the template
    outer = add_map(env, MapSpec("outer", MapType.ARRAY_OF_MAPS, 4, 4, 2, inner_map=TEMPLATE_ARRAY))
    assert isinstance(outer, ArrayOfMapsMap)
    assert errno_of(outer.sys_update, u32(0), u32(other.fd)) == errno.EINVAL  # array_map_meta_equal
    assert errno_of(outer.sys_update, u32(0), u32(999)) == errno.EBADF
    assert errno_of(outer.sys_update, u32(0), u32(inner.fd), BPF_EXIST) == errno.EINVAL
    assert errno_of(outer.sys_update, u32(2), u32(inner.fd)) == errno.E2BIG
    outer.sys_update(u32(0), u32(inner.fd))
    assert outer.lookup(u32(0)) == inner.handle and outer.lookup(u32(1)) is None
    assert outer.sys_lookup(u32(0)) == u32(inner.id)  # bpf_map_fd_sys_lookup_elem: the map id
    assert outer.update(u32(0), u32(inner.fd)) == -errno.EINVAL
    # A program reaches the inner map through the handle the outer lookup returned.
    key = SCRATCH
    env.memory.write_bytes(key, u32(0))
    handle = H["bpf_map_lookup_elem"](env, outer.handle, key, 0, 0, 0)
    env.memory.write_bytes(key, u32(3))
    value_addr = H["bpf_map_lookup_elem"](env, handle, key, 0, 0, 0)
    assert value_addr == inner.lookup(u32(3))
    assert outer.snapshot()["slots"] == {"0": "inner"}
    # With BPF_F_INNER_MAP in the template, max_entries may differ (measured on 6.18).
    flexible = add_map(env, MapSpec("o2", MapType.ARRAY_OF_MAPS, 4, 4, 1,
                                    inner_map=MapSpec("t", ARR, 4, 8, 4, BPF_F_INNER_MAP)))
    big = add_map(env, MapSpec("big", ARR, 4, 8, 16, BPF_F_INNER_MAP))
    flexible.sys_update(u32(0), u32(big.fd))
    outer.sys_delete(u32(0))
    assert errno_of(outer.sys_delete, u32(0)) == errno.ENOENT


def test_hash_of_maps() -> None:
    env = new_env()
    template = MapSpec("t", HASH, 4, 8, 4)
    small = add_map(env, MapSpec("small", HASH, 4, 8, 4))
    large = add_map(env, MapSpec("large", HASH, 4, 8, 100))  # bpf_map_meta_equal ignores max_entries
    hom = add_map(env, MapSpec("hom", MapType.HASH_OF_MAPS, 4, 4, 2, inner_map=template))
    assert isinstance(hom, HashOfMapsMap)
    hom.sys_update(u32(0), u32(large.fd))
    hom.sys_update(u32(1), u32(small.fd))
    assert errno_of(hom.sys_update, u32(2), u32(small.fd)) == errno.E2BIG
    assert errno_of(hom.sys_update, u32(0), u32(small.fd), BPF_NOEXIST) == errno.EEXIST
    assert errno_of(hom.sys_update, u32(7), u32(small.fd), BPF_EXIST) == errno.ENOENT
    assert hom.lookup(u32(0)) == large.handle and hom.sys_lookup(u32(1)) == u32(small.id)
    hom.sys_delete(u32(0))
    assert hom.lookup(u32(0)) is None
    assert hom.snapshot()["entries"] == {u32(1).hex(): "small"}


def test_perf_event_output() -> None:
    # kernel/trace/bpf_trace.c __bpf_perf_event_output.
    env = new_env(ncpus=2, cpu=1)
    pe = add_map(env, MapSpec("events", MapType.PERF_EVENT_ARRAY, 4, 4, 3))
    assert isinstance(pe, PerfEventArrayMap)
    out = H["bpf_perf_event_output"]
    env.memory.write_bytes(SCRATCH, b"hello")
    current = 0xFFFF_FFFF  # BPF_F_CURRENT_CPU
    assert out(env, 0, pe.handle, current, SCRATCH, 5) == 0
    assert out(env, 0, pe.handle, 0, SCRATCH, 5) == (-errno.EOPNOTSUPP) & (2**64 - 1)  # other CPU
    assert out(env, 0, pe.handle, 2, SCRATCH, 5) == (-errno.ENOENT) & (2**64 - 1)  # no event
    assert out(env, 0, pe.handle, 3, SCRATCH, 5) == (-errno.E2BIG) & (2**64 - 1)
    assert out(env, 0, pe.handle, 1 << 32, SCRATCH, 5) == (-errno.EINVAL) & (2**64 - 1)
    assert env.perf_events == [(1, b"hello")]
    assert errno_of(pe.sys_lookup, u32(0)) == ENOTSUPP  # measured on 6.18


# --- CGROUP_STORAGE (kernel/bpf/local_storage.c) -------------------------------------------------


def test_cgroup_storage() -> None:
    env = new_env()
    cs = add_map(env, MapSpec("cs", MapType.CGROUP_STORAGE, 16, 8, 0))
    assert isinstance(cs, CgroupStorageMap)
    assert errno_of(cs.sys_get_next_key, None) == errno.ENOENT
    key = cs.storage_key(77, 2)
    assert errno_of(cs.sys_lookup, key) == errno.ENOENT
    assert errno_of(cs.sys_update, key, bytes(8)) == errno.ENOENT  # only attached storages exist
    first = cs.attach(77, 2)
    addr = H["bpf_get_local_storage"](env, cs.handle, 0, 0, 0, 0)
    env.memory.store(addr, 8, 0x1234)
    assert cs.sys_lookup(first) == struct.pack("<Q", 0x1234)
    assert errno_of(cs.sys_update, first, bytes(8), BPF_NOEXIST) == errno.EINVAL
    cs.sys_update(first, struct.pack("<Q", 5), BPF_EXIST)
    assert env.memory.load(addr, 8) == 5
    assert errno_of(cs.sys_delete, first) == errno.EINVAL
    second = cs.attach(88, 1)
    assert cs.sys_keys() == [second, first]  # newest first (list_add)
    # Keys compare by field (bpf_cgroup_storage_key_cmp), not by their 4 bytes of padding.
    assert cs.sys_lookup(first[:12] + b"\xff" * 4) == struct.pack("<Q", 5)
    assert cs.lookup(first) is None and cs.update(first, bytes(8)) == -errno.EINVAL


def test_cgroup_storage_default_attachment() -> None:
    env = new_env()
    cs = add_map(env, MapSpec("cs", MapType.CGROUP_STORAGE, 8, 4, 0))
    addr = H["bpf_get_local_storage"](env, cs.handle, 0, 0, 0, 0)
    assert cs.sys_keys() == [bytes(8)] and addr == cs.values_base()


# --- helpers ---------------------------------------------------------------------------------------


def test_helper_defs() -> None:
    by_id = {d.id: d for d in MAP_HELPERS}
    assert {i: d.name for i, d in by_id.items()} == {
        1: "bpf_map_lookup_elem", 2: "bpf_map_update_elem", 3: "bpf_map_delete_elem",
        25: "bpf_perf_event_output", 81: "bpf_get_local_storage", 130: "bpf_ringbuf_output",
        131: "bpf_ringbuf_reserve", 132: "bpf_ringbuf_submit", 133: "bpf_ringbuf_discard",
        134: "bpf_ringbuf_query"}
    assert by_id[1].args == ("ARG_CONST_MAP_PTR", "ARG_PTR_TO_MAP_KEY")
    assert by_id[1].ret == "RET_PTR_TO_MAP_VALUE_OR_NULL"
    assert by_id[131].ret == "RET_PTR_TO_RINGBUF_MEM_OR_NULL"


def test_helpers_fault_on_bad_pointers() -> None:
    env = new_env()
    a = add_map(env, MapSpec("a", ARR, 4, 4, 2))
    with pytest.raises(MemoryFault) as e:
        H["bpf_map_lookup_elem"](env, a.handle, 0x10, 0, 0, 0)  # key pointer outside every region
    assert e.value.kind == "oob_read"
    with pytest.raises(MemoryFault):
        H["bpf_map_lookup_elem"](env, 0x1234, SCRATCH, 0, 0, 0)  # r1 is no map
    with pytest.raises(MemoryFault):
        H["bpf_ringbuf_query"](env, a.handle, 0, 0, 0, 0)  # a map, but not a ring buffer


def test_program_end_to_end_through_the_interpreter() -> None:
    """A program counts into an array and a hash map through the helpers and the returned pointers."""
    env = new_env()
    add_map(env, MapSpec("counts", ARR, 4, 8, 4))
    add_map(env, MapSpec("seen", HASH, 4, 8, 8))
    text = """
        r6 = 2
        *(u32 *)(r10 - 4) = r6
        r1 = map_idx(0) ll
        r2 = r10
        r2 += -4
        call 1
        if r0 == 0 goto out
        r1 = 5
        lock *(u64 *)(r0 + 0) += r1
        r7 = 0x1122334455667788 ll
        *(u64 *)(r10 - 16) = r7
        r1 = map_idx(1) ll
        r2 = r10
        r2 += -4
        r3 = r10
        r3 += -16
        r4 = 1
        call 2
        r6 = r0
        r1 = map_idx(1) ll
        r2 = r10
        r2 += -4
        r3 = r10
        r3 += -16
        r4 = 1
        call 2
        r0 <<= 32
        r0 |= r6
        exit
    out:
        r0 = -1
        exit
    """
    out = run(assemble_bytes(text), env=env, helpers=HELPERS)
    assert out.error == "ok"
    assert out.r0 == ((-errno.EEXIST) & 0xFFFF_FFFF) << 32  # second BPF_NOEXIST insert: -EEXIST
    assert env.maps[0].sys_lookup(u32(2)) == struct.pack("<Q", 5)
    assert env.maps[1].sys_lookup(u32(2)) == struct.pack("<Q", 0x1122334455667788)


def test_tail_call_uses_program_at() -> None:
    env = new_env()
    progs = add_map(env, MapSpec("jmp", MapType.PROG_ARRAY, 4, 4, 2))
    assert isinstance(progs, ProgArrayMap)
    progs.set(1, "b")
    a = decode_program(assemble_bytes("r1 = 0\nr2 = map_idx(0) ll\nr3 = 1\ncall 12\nr0 = 1\nexit"))
    b = decode_program(assemble_bytes("r0 = 42\nexit"))
    out = run_programs([("a", a), ("b", b)], "a", env, helpers=HELPERS)
    assert out.r0 == 42


def test_snapshots_are_json_and_deterministic() -> None:
    def build() -> list[BpfMap]:
        env = new_env()
        specs = (MapSpec("a", ARR, 4, 4, 4), MapSpec("h", HASH, 4, 4, 8), MapSpec("p", PHASH, 4, 4, 8),
                 MapSpec("r", MapType.RINGBUF, 0, 0, 4096))
        maps = [add_map(env, s) for s in specs]
        for k in (3, 1, 2):
            maps[1].sys_update(u32(k), u32(k * 10))
            maps[2].sys_update(u32(k), bytes(16))
        assert maps[3].update(b"", b"") == -ENOTSUPP
        return maps
    first = json.dumps([m.snapshot() for m in build()], sort_keys=False)
    assert first == json.dumps([m.snapshot() for m in build()], sort_keys=False)
    assert list(build()[1].snapshot()["entries"]) == [u32(k).hex() for k in (1, 2, 3)]


def test_joined_regions_only_join_when_asked() -> None:
    # memory.py: an access may cross from a joins_next region into the next one, and nowhere else.
    mem = Memory([Region("a", 0x1000, bytearray(8)), Region("b", 0x1008, bytearray(8))])
    with pytest.raises(MemoryFault):
        mem.load(0x1004, 8)
    joined = Memory([Region("a", 0x1000, bytearray(8), joins_next=True),
                     Region("b", 0x1008, bytearray(8))])
    joined.store(0x1004, 8, 0x1122334455667788)
    assert joined.load(0x1004, 8) == 0x1122334455667788
    assert joined.load_signed(0x1007, 2) == 0x4455 and joined.read_bytes(0x1006, 4).hex() == "66554433"
    with pytest.raises(MemoryFault):
        joined.load(0x100C, 8)  # runs past b
    ro = Memory([Region("a", 0x1000, bytearray(8), joins_next=True),
                 Region("b", 0x1008, bytearray(8), False)])
    with pytest.raises(MemoryFault, match="read-only"):
        ro.write_bytes(0x1004, bytes(8))
    assert ro.regions[0].data == bytearray(8)


# --- differential tests against the running kernel -------------------------------------------------

BPF_MAP_CREATE, BPF_MAP_LOOKUP_ELEM, BPF_MAP_UPDATE_ELEM, BPF_MAP_DELETE_ELEM, BPF_MAP_GET_NEXT_KEY = range(5)


def _possible_cpus() -> int:
    text = Path("/sys/devices/system/cpu/possible").read_text().strip()
    return sum(int(b) - int(a) + 1 if "-" in part else 1
               for part in text.split(",") for a, _, b in [part.partition("-")] if part)


@pytest.fixture(scope="module")
def kernel() -> Iterator[Any]:
    from conformance.kernel import syscall
    reason = syscall.probe()
    if reason is not None:
        pytest.skip(reason)
    yield syscall


class KMap:
    """A map created with bpf(BPF_MAP_CREATE); element commands by raw ctypes buffers."""

    def __init__(self, ks: Any, spec: MapSpec, inner_fd: int = 0) -> None:
        self.ks, self.spec = ks, spec
        attr = ctypes.create_string_buffer(ks.ATTR_SIZE)
        struct.pack_into("<6I", attr, 0, spec.type, spec.key_size, spec.value_size, spec.max_entries,
                         spec.flags, inner_fd)
        struct.pack_into("16s", attr, 28, spec.name[:15].encode())
        self.fd = ks._bpf(BPF_MAP_CREATE, attr)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)

    def _elem(self, cmd: int, key: bytes | None, value: bytes | None, flags: int,
              out: int) -> tuple[int, bytes]:
        attr = ctypes.create_string_buffer(self.ks.ATTR_SIZE)
        kbuf = ctypes.create_string_buffer(key, len(key)) if key is not None else None
        vbuf = ctypes.create_string_buffer(value, len(value)) if value is not None else \
            ctypes.create_string_buffer(max(out, 1))
        kaddr = ctypes.addressof(kbuf) if kbuf is not None else 0
        if cmd == BPF_MAP_DELETE_ELEM:
            struct.pack_into("<IIQ", attr, 0, self.fd, 0, kaddr)
        elif cmd == BPF_MAP_GET_NEXT_KEY:
            struct.pack_into("<IIQQ", attr, 0, self.fd, 0, kaddr, ctypes.addressof(vbuf))
        else:
            struct.pack_into("<IIQQQ", attr, 0, self.fd, 0, kaddr, ctypes.addressof(vbuf), flags)
        ret = self.ks._bpf(cmd, attr)
        return (-ret if ret < 0 else 0), vbuf.raw[:out]

    def lookup(self, key: bytes, size: int) -> int | bytes:
        err, data = self._elem(BPF_MAP_LOOKUP_ELEM, key, None, 0, size)
        return err or data

    def update(self, key: bytes, value: bytes, flags: int = 0) -> int:
        return self._elem(BPF_MAP_UPDATE_ELEM, key, value, flags, 0)[0]

    def delete(self, key: bytes) -> int:
        return self._elem(BPF_MAP_DELETE_ELEM, key, None, 0, 0)[0]

    def next_key(self, key: bytes | None) -> int | bytes:
        err, data = self._elem(BPF_MAP_GET_NEXT_KEY, key, None, 0, self.spec.key_size)
        return err or data

    def keys(self) -> list[bytes]:
        out: list[bytes] = []
        key = None
        while isinstance(nxt := self.next_key(key), bytes):
            out.append(nxt)
            key = nxt
        return out


def ours(m: BpfMap, op: str, *args: Any) -> int | bytes:
    try:
        result = getattr(m, "sys_" + op)(*args)
    except MapError as e:
        return e.errno
    return result if isinstance(result, bytes) else 0


class TestKernelMaps:
    """bpfcheck's syscall-side operations against the kernel's, operation by operation."""

    @pytest.fixture(autouse=True)
    def _cleanup(self, kernel: Any) -> Iterator[None]:
        self.ks = kernel
        self.opened: list[KMap] = []
        yield
        for k in self.opened:
            k.close()

    def kmap(self, spec: MapSpec, inner_fd: int = 0) -> KMap:
        k = KMap(self.ks, spec, inner_fd)
        self.opened.append(k)
        return k

    @pytest.mark.parametrize("spec, expected", [c[1:] for c in CREATE_CASES],
                             ids=[c[0] for c in CREATE_CASES])
    def test_create(self, spec: MapSpec, expected: int) -> None:
        def build(s: MapSpec) -> int:
            """Create ``s`` (its inner template first, as a real map whose fd is passed on)."""
            inner_fd = build(s.inner_map) if s.inner_map is not None else 0
            assert inner_fd >= 0
            return self.kmap(s, inner_fd).fd

        fd = build(spec)
        assert (-fd if fd < 0 else 0) == expected
        assert errno_of(check_spec, spec, _possible_cpus()) == expected

    def run_script(self, spec: MapSpec, script: list[tuple[Any, ...]]) -> None:
        ncpus = _possible_cpus()
        k = self.kmap(spec)
        assert k.fd >= 0
        m = create_map(spec, Memory([]), 0, ncpus=ncpus)
        for step in script:
            op, *args = step
            if op == "lookup":
                got = k.lookup(args[0], m.sys_value_size)
            elif op == "update":
                got = k.update(*args)
            elif op == "delete":
                got = k.delete(args[0])
            else:
                got = k.next_key(args[0])
            assert ours(m, {"next": "get_next_key"}.get(op, op), *args) == got, step
        if not spec.flags & BPF_F_WRONLY:
            assert m.sys_keys() == k.keys()

    def test_array_script(self) -> None:
        spec = MapSpec("a", ARR, 4, 12, 3)
        v = bytes(range(12))
        self.run_script(spec, [
            ("update", u32(0), v, BPF_ANY), ("update", u32(1), v, BPF_NOEXIST),
            ("update", u32(1), v, BPF_EXIST),
            ("update", u32(3), v, BPF_ANY), ("update", u32(3), v, 3), ("update", u32(0), v, BPF_F_LOCK),
            ("update", u32(0), v, 8), ("lookup", u32(0)), ("lookup", u32(1)), ("lookup", u32(2)),
            ("lookup", u32(3)), ("delete", u32(0)), ("delete", u32(7)),
            ("next", None), ("next", u32(0)), ("next", u32(1)), ("next", u32(2)), ("next", u32(3)),
            ("next", u32(0xFFFF_FFFF))])

    def test_percpu_array_layout(self) -> None:
        ncpus = _possible_cpus()
        spec = MapSpec("p", PARR, 4, 12, 2)
        value = bytes(range(16 * ncpus))  # round_up(12, 8) per CPU, padding included
        self.run_script(spec, [
            ("lookup", u32(0)), ("update", u32(0), value, BPF_ANY), ("lookup", u32(0)),
            ("update", u32(1), value, BPF_NOEXIST), ("update", u32(2), value, BPF_ANY),
            ("update", u32(1), value, 4), ("update", u32(1), value, 3), ("delete", u32(1)), ("next", None)])

    @pytest.mark.parametrize("mtype", [HASH, PHASH, LRU, LRUP])
    def test_hash_script(self, mtype: MapType) -> None:
        percpu = mtype in (PHASH, LRUP)
        # LRU maps get room to spare: the kernel's LRU may evict before it is full.
        spec = MapSpec("h", mtype, 4, 4, 16 if mtype in (LRU, LRUP) else 2, BPF_F_ZERO_SEED)
        value = bytes(range(8 * _possible_cpus())) if percpu else u32(0xAABBCCDD)
        self.run_script(spec, [
            ("update", u32(1), value, BPF_EXIST), ("update", u32(1), value, BPF_NOEXIST),
            ("update", u32(1), value, BPF_NOEXIST), ("update", u32(1), value, 3),
            ("update", u32(1), value, 4),
            ("update", u32(2), value, BPF_ANY), ("lookup", u32(1)), ("lookup", u32(5)),
            ("update", u32(2), value, BPF_EXIST), ("delete", u32(9)), ("delete", u32(1)), ("lookup", u32(1)),
            ("update", u32(3), value, BPF_ANY), ("next", None), ("next", u32(77))]
            + ([("update", u32(4), value, BPF_ANY)] if mtype in (HASH, PHASH) else []))

    @pytest.mark.parametrize("key_size", [4, 6, 13, 16])
    def test_hash_order(self, key_size: int) -> None:
        # jhash2 (4, 16: words, with a mixing round for 16) and jhash (6, 13: bytes, 13 mixes once).
        spec = MapSpec("h", HASH, key_size, 8, 32, BPF_F_ZERO_SEED)
        keys = [bytes((i * 37 + j) & 0xFF for j in range(key_size)) for i in range(20)]
        script: list[tuple[Any, ...]] = [("update", k, bytes(8), BPF_ANY) for k in keys]
        script += [("delete", keys[3]), ("update", keys[5], b"x" * 8, BPF_EXIST), ("next", keys[5])]
        self.run_script(spec, script)

    def test_lru_keeps_a_superset_of_the_kernel(self) -> None:
        # The kernel evicts in batches and early (bpf_lru_list.c); exact LRU keeps every key the kernel
        # keeps when keys are only inserted, and never more than max_entries.
        for n in (4, 16, 64):
            spec = MapSpec("l", LRU, 4, 8, n)
            k = self.kmap(spec)
            m = create_map(spec, Memory([]), 0, ncpus=_possible_cpus())
            for i in range(n + 3):
                m.sys_update(u32(i), bytes(8))
                assert k.update(u32(i), bytes(8)) == 0
            kept, mine = set(k.keys()), set(m.sys_keys())
            assert kept <= mine and len(mine) == n and u32(n + 2) in kept

    def test_map_in_map(self) -> None:
        inner = self.kmap(TEMPLATE_ARRAY)
        other = self.kmap(MapSpec("o", ARR, 4, 8, 8))
        outer = self.kmap(MapSpec("outer", MapType.ARRAY_OF_MAPS, 4, 4, 2), inner.fd)
        env = new_env(ncpus=_possible_cpus())
        m_inner = add_map(env, TEMPLATE_ARRAY)
        m_other = add_map(env, MapSpec("o", ARR, 4, 8, 8))
        m_outer = add_map(env, MapSpec("outer", MapType.ARRAY_OF_MAPS, 4, 4, 2, inner_map=TEMPLATE_ARRAY))
        for kernel_inner, my_inner, flags, key in ((inner, m_inner, 0, 0), (other, m_other, 0, 1),
                                                   (inner, m_inner, 1, 0), (inner, m_inner, 0, 5)):
            expected = ours(m_outer, "update", u32(key), u32(my_inner.fd), flags)
            assert outer.update(u32(key), u32(kernel_inner.fd), flags) == expected
        assert isinstance(outer.lookup(u32(0), 4), bytes) and isinstance(m_outer.sys_lookup(u32(0)), bytes)
        for key in (0, 1, 5):
            assert outer.delete(u32(key)) == ours(m_outer, "delete", u32(key))

    def test_fd_array_errnos(self) -> None:
        spec = MapSpec("p", MapType.PROG_ARRAY, 4, 4, 2)
        k = self.kmap(spec)
        m = create_map(spec, Memory([]), 0)
        assert k.lookup(u32(0), 4) == ours(m, "lookup", u32(0)) == errno.ENOENT
        assert k.update(u32(0), u32(999), 0) == ours(m, "update", u32(0), u32(999), 0) == errno.EBADF
        assert k.update(u32(0), u32(999), 1) == ours(m, "update", u32(0), u32(999), 1) == errno.EINVAL
        assert k.update(u32(2), u32(999), 0) == ours(m, "update", u32(2), u32(999), 0) == errno.E2BIG
        assert k.delete(u32(0)) == ours(m, "delete", u32(0)) == errno.ENOENT
        assert k.delete(u32(2)) == ours(m, "delete", u32(2)) == errno.E2BIG
        assert k.keys() == m.sys_keys()
        pe = MapSpec("e", MapType.PERF_EVENT_ARRAY, 4, 4, 2)
        mine = create_map(pe, Memory([]), 0)
        assert self.kmap(pe).lookup(u32(5), 4) == ours(mine, "lookup", u32(5)) == ENOTSUPP

    def test_cgroup_storage_errnos(self) -> None:
        spec = MapSpec("c", MapType.CGROUP_STORAGE, 16, 8, 0)
        k = self.kmap(spec)
        m = create_map(spec, Memory([]), 0)
        key = bytes(16)
        for op, args in (("lookup", (key,)), ("update", (key, bytes(8), 0)), ("update", (key, bytes(8), 1)),
                         ("update", (key, bytes(8), 2)), ("delete", (key,)), ("next", (None,)),
                         ("next", (key,))):
            got = {"lookup": lambda a: k.lookup(a[0], 8), "update": lambda a: k.update(*a),
                   "delete": lambda a: k.delete(a[0]), "next": lambda a: k.next_key(a[0])}[op](args)
            assert ours(m, {"next": "get_next_key"}.get(op, op), *args) == got, (op, args)

    @pytest.mark.parametrize("flags", [BPF_F_RDONLY, BPF_F_WRONLY])
    def test_fd_access_flags(self, flags: int) -> None:
        spec = MapSpec("h", HASH, 4, 4, 4, flags)
        self.run_script(spec, [("update", u32(1), u32(1), BPF_ANY), ("update", u32(1), u32(1), BPF_F_LOCK),
                               ("lookup", u32(1)), ("next", None), ("delete", u32(1)), ("delete", u32(1))])

    def test_ringbuf_element_ops_are_enotsupp(self) -> None:
        spec = MapSpec("r", MapType.RINGBUF, 0, 0, 4096)
        k = self.kmap(spec)
        m = create_map(spec, Memory([]), 0)
        assert k._elem(BPF_MAP_LOOKUP_ELEM, None, None, 0, 0)[0] == ours(m, "lookup", b"") == ENOTSUPP
