"""Map, ring buffer, perf event and local storage helpers, by their Linux ids.

Each implementation is the kernel's helper body (kernel/bpf/helpers.c, kernel/bpf/ringbuf.c,
kernel/trace/bpf_trace.c) on top of :mod:`reference_vm.maps`: r1 (r2 for perf_event_output) is
a map *handle* (the address ``lddw`` map_fd/map_idx loads), keys and values are read from guest
memory through ``env.memory``, so a bad pointer raises :class:`~reference_vm.memory.MemoryFault`
and the run ends with ``fault:oob_read`` as a bad load in the program would. A register that is
no map handle, or a map of the wrong type for the helper, is treated the same way: the kernel
would dereference it as its ``struct bpf_map`` (the verifier makes both impossible).

Argument and return types are the ``bpf_func_proto`` ones of Linux 6.18.
"""

from __future__ import annotations

from .env import Environment
from .helpers import HelperDef
from .maps import HANDLE_SIZE, BpfMap, CgroupStorageMap, PerfEventArrayMap, RingBufMap
from .memory import MemoryFault
from .ringbuf import BPF_RINGBUF_HDR_SZ, RingBuffer

M64 = (1 << 64) - 1


def _map(env: Environment, handle: int, want: type[BpfMap] = BpfMap) -> BpfMap:
    m = env.map_by_handle(handle)
    if m is None or not isinstance(m, want):
        what = "a map" if want is BpfMap else f"a {want.__name__}"
        raise MemoryFault("oob_read", handle, HANDLE_SIZE, f" (not the handle of {what})")
    return m


def _read(env: Environment, addr: int, size: int) -> bytes:
    return env.memory.read_bytes(addr, size) if size else b""


def _map_lookup_elem(env: Environment, r1: int, r2: int, *_: int) -> int:
    """bpf_map_lookup_elem (1): ``map->ops->map_lookup_elem(map, key)``, the value's address or
    NULL (kernel/bpf/helpers.c)."""
    m = _map(env, r1)
    addr = m.lookup(_read(env, r2, m.key_size), env.cpu)
    return 0 if addr is None else addr


def _map_update_elem(env: Environment, r1: int, r2: int, r3: int, r4: int, *_: int) -> int:
    """bpf_map_update_elem (2): ``map->ops->map_update_elem(map, key, value, flags)``."""
    m = _map(env, r1)
    key = _read(env, r2, m.key_size)
    value = _read(env, r3, m.value_size)
    return m.update(key, value, r4, env.cpu) & M64


def _map_delete_elem(env: Environment, r1: int, r2: int, *_: int) -> int:
    """bpf_map_delete_elem (3): ``map->ops->map_delete_elem(map, key)``."""
    m = _map(env, r1)
    return m.delete(_read(env, r2, m.key_size), env.cpu) & M64


def _perf_event_output(env: Environment, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    """bpf_perf_event_output (25), the tracing variant (kernel/trace/bpf_trace.c): r1 ctx (unused),
    r2 a perf event array, r3 flags (index or BPF_F_CURRENT_CPU), r4/r5 the data; captured into
    ``env.perf_events`` (see :meth:`PerfEventArrayMap.output`)."""
    m = _map(env, r2, PerfEventArrayMap)
    assert isinstance(m, PerfEventArrayMap)
    return m.output(r3, _read(env, r4, r5), env.cpu) & M64


def _get_local_storage(env: Environment, r1: int, *_: int) -> int:
    """bpf_get_local_storage (81): the current attachment's storage; flags (r2) must be 0, which
    the verifier checks ("get_local_storage() doesn't support non-zero flags")."""
    m = _map(env, r1, CgroupStorageMap)
    assert isinstance(m, CgroupStorageMap)
    return m.local_storage(env.cpu)


def _ringbuf(env: Environment, handle: int) -> RingBuffer:
    m = _map(env, handle, RingBufMap)
    assert isinstance(m, RingBufMap)
    return m.rb


def _ringbuf_output(env: Environment, r1: int, r2: int, r3: int, r4: int, *_: int) -> int:
    """bpf_ringbuf_output (130): reserve, copy, submit; -EINVAL for unknown flags, -EAGAIN when
    full."""
    rb = _ringbuf(env, r1)
    return rb.output(_read(env, r2, r3), r4) & M64


def _ringbuf_reserve(env: Environment, r1: int, r2: int, r3: int, *_: int) -> int:
    """bpf_ringbuf_reserve (131): NULL for non-zero flags or when the record does not fit."""
    rb = _ringbuf(env, r1)
    if r3:
        return 0
    sample = rb.reserve(r2)
    return 0 if sample is None else sample


def _sample_ring(env: Environment, sample: int) -> RingBuffer:
    """The ring a sample pointer belongs to (the kernel finds it from the header's ``pg_off``)."""
    for m in env.maps:
        if isinstance(m, RingBufMap) and m.rb.contains_sample(sample):
            return m.rb
    raise MemoryFault("oob_read", sample - BPF_RINGBUF_HDR_SZ, BPF_RINGBUF_HDR_SZ,
                      " (not a ring buffer sample)")


def _ringbuf_submit(env: Environment, r1: int, r2: int, *_: int) -> int:
    """bpf_ringbuf_submit (132): commit, wake-up rules of ``bpf_ringbuf_commit``; returns 0."""
    _sample_ring(env, r1).commit(r1, r2, discard=False)
    return 0


def _ringbuf_discard(env: Environment, r1: int, r2: int, *_: int) -> int:
    """bpf_ringbuf_discard (133): commit with the DISCARD bit; returns 0."""
    _sample_ring(env, r1).commit(r1, r2, discard=True)
    return 0


def _ringbuf_query(env: Environment, r1: int, r2: int, *_: int) -> int:
    """bpf_ringbuf_query (134): BPF_RB_AVAIL_DATA 0, RING_SIZE 1, CONS_POS 2, PROD_POS 3, else 0."""
    return _ringbuf(env, r1).query(r2) & M64


_H = HelperDef
MAP_HELPERS: tuple[HelperDef, ...] = (
    _H(1, "bpf_map_lookup_elem", _map_lookup_elem, ("ARG_CONST_MAP_PTR", "ARG_PTR_TO_MAP_KEY"),
       "RET_PTR_TO_MAP_VALUE_OR_NULL", "void *bpf_map_lookup_elem(struct bpf_map *map, const void *key)"),
    _H(2, "bpf_map_update_elem", _map_update_elem,
       ("ARG_CONST_MAP_PTR", "ARG_PTR_TO_MAP_KEY", "ARG_PTR_TO_MAP_VALUE", "ARG_ANYTHING"), "RET_INTEGER",
       "long bpf_map_update_elem(struct bpf_map *map, const void *key, const void *value, u64 flags)"),
    _H(3, "bpf_map_delete_elem", _map_delete_elem, ("ARG_CONST_MAP_PTR", "ARG_PTR_TO_MAP_KEY"),
       "RET_INTEGER", "long bpf_map_delete_elem(struct bpf_map *map, const void *key)"),
    _H(25, "bpf_perf_event_output", _perf_event_output,
       ("ARG_PTR_TO_CTX", "ARG_CONST_MAP_PTR", "ARG_ANYTHING", "ARG_PTR_TO_MEM | MEM_RDONLY",
        "ARG_CONST_SIZE_OR_ZERO"), "RET_INTEGER",
       "long bpf_perf_event_output(void *ctx, struct bpf_map *map, u64 flags, void *data, u64 size)"),
    _H(81, "bpf_get_local_storage", _get_local_storage, ("ARG_CONST_MAP_PTR", "ARG_ANYTHING"),
       "RET_PTR_TO_MAP_VALUE", "void *bpf_get_local_storage(void *map, u64 flags)"),
    _H(130, "bpf_ringbuf_output", _ringbuf_output,
       ("ARG_CONST_MAP_PTR", "ARG_PTR_TO_MEM | MEM_RDONLY", "ARG_CONST_SIZE_OR_ZERO", "ARG_ANYTHING"),
       "RET_INTEGER", "long bpf_ringbuf_output(void *ringbuf, void *data, u64 size, u64 flags)"),
    _H(131, "bpf_ringbuf_reserve", _ringbuf_reserve,
       ("ARG_CONST_MAP_PTR", "ARG_CONST_ALLOC_SIZE_OR_ZERO", "ARG_ANYTHING"),
       "RET_PTR_TO_RINGBUF_MEM_OR_NULL", "void *bpf_ringbuf_reserve(void *ringbuf, u64 size, u64 flags)"),
    _H(132, "bpf_ringbuf_submit", _ringbuf_submit, ("ARG_PTR_TO_RINGBUF_MEM | OBJ_RELEASE", "ARG_ANYTHING"),
       "RET_VOID", "void bpf_ringbuf_submit(void *data, u64 flags)"),
    _H(133, "bpf_ringbuf_discard", _ringbuf_discard, ("ARG_PTR_TO_RINGBUF_MEM | OBJ_RELEASE", "ARG_ANYTHING"),
       "RET_VOID", "void bpf_ringbuf_discard(void *data, u64 flags)"),
    _H(134, "bpf_ringbuf_query", _ringbuf_query, ("ARG_CONST_MAP_PTR", "ARG_ANYTHING"), "RET_INTEGER",
       "u64 bpf_ringbuf_query(void *ringbuf, u64 flags)"),
)
