"""BPF maps with Linux semantics: creation checks, program-side and syscall-side operations.

Each map type follows its kernel implementation (Linux 6.18): kernel/bpf/arraymap.c (ARRAY,
PERCPU_ARRAY, PROG_ARRAY, PERF_EVENT_ARRAY, ARRAY_OF_MAPS), kernel/bpf/hashtab.c (HASH,
PERCPU_HASH, LRU_HASH, LRU_PERCPU_HASH, HASH_OF_MAPS), kernel/bpf/local_storage.c
(CGROUP_STORAGE), kernel/bpf/ringbuf.c (RINGBUF, see :mod:`reference_vm.ringbuf`), with the
creation checks of kernel/bpf/syscall.c ``map_create`` and the per-type ``map_alloc_check`` /
``map_alloc``. Errnos that the sources leave implicit were measured with ``bpf(2)`` on the
6.18 kernel (``tests/test_maps.py`` compares both).

Two faces:

* *program side* (what helpers call): ``lookup(key, cpu) -> address | None``,
  ``update(key, value, flags, cpu) -> 0 | -errno``, ``delete(key, cpu) -> 0 | -errno``. Values
  live in guest memory, so a program loads and stores through the address a lookup returns.
* *syscall side* (initial contents, reading maps after a run): ``sys_lookup``, ``sys_update``,
  ``sys_delete``, ``sys_get_next_key`` behave like the ``BPF_MAP_*_ELEM`` commands, including
  the per-CPU value layout (every CPU's value rounded up to 8 bytes, back to back); they raise
  :class:`MapError` carrying the errno the syscall would fail with.

Guest memory layout. Map ``index`` (its position in the program's map list, ``map_idx``) owns the
4 GiB window ``window = MAP_BASE + index * MAP_STRIDE``:

* ``window``: the *handle*, a 64-byte read-only stand-in for ``struct bpf_map`` (u32 map_type,
  key_size, value_size, max_entries, map_flags, id, index; bpfcheck's layout, not the kernel's).
  It is what ``lddw`` map_fd/map_idx loads and what map helpers receive in r1.
* ``window + VALUES_OFFSET + c * CPU_STRIDE``: CPU ``c``'s copy of the values (only ``c = 0``
  unless the map is per-CPU). Arrays hold ``max_entries`` elements of ``round_up(value_size,
  8)`` bytes; hash maps and cgroup storage grow slot by slot; a ring buffer puts its data area
  and the mirror of it here. Fd maps (prog arrays, map-in-map, perf event arrays) have no
  value memory: programs never see their values.

``MAP_BASE`` lies above the input memory (``MEM_BASE``) and below the stack, and 64 windows
(Linux ``MAX_USED_MAPS``) fit between them. The pseudo file descriptor of map ``index`` is
``FD_BASE + index`` (3 + index, as :data:`reference_vm.program.FIRST_MAP_FD`) and its id
``index + 1``.

Differences from Linux that remain (each is documented where it arises): hash maps always hash
with seed 0 (the kernel's behaviour with ``BPF_F_ZERO_SEED``; otherwise its iteration order is
random per map); LRU eviction is exact least-recently-used, one element at a time, only when
full (the kernel's is approximate, batched and may come early); element addresses come from
bpfcheck's own slot allocator; padding bytes of per-CPU values written by a program are zero
(the kernel copies ``round_up(value_size, 8)`` bytes from the program's buffer, and leaves a
recycled element's padding as it was); a syscall update of cgroup storage rewrites the bytes in
place (the kernel swaps in a new buffer); there is no BTF, so no spin locks (``BPF_F_LOCK`` is
always EINVAL) and no ``map_check_btf``; sizes beyond bpfcheck's windows fail with ENOMEM.
"""

from __future__ import annotations

import bisect
import errno
import struct
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING, Any, NoReturn

from .errors import BpfCheckError
from .memory import MEM_BASE, STACK_BASE, Memory, Region
from .ringbuf import RingBuffer, check_ringbuf_attrs

if TYPE_CHECKING:
    from .env import Environment

# --- Constants (include/uapi/linux/bpf.h) ------------------------------------------------------


class MapType(IntEnum):
    """``enum bpf_map_type`` values of the map types bpfcheck models."""

    HASH = 1
    ARRAY = 2
    PROG_ARRAY = 3
    PERF_EVENT_ARRAY = 4
    PERCPU_HASH = 5
    PERCPU_ARRAY = 6
    LRU_HASH = 9
    LRU_PERCPU_HASH = 10
    ARRAY_OF_MAPS = 12
    HASH_OF_MAPS = 13
    CGROUP_STORAGE = 19
    RINGBUF = 27

    @classmethod
    def parse(cls, value: str | int) -> int:
        """A map type from its number or name (``"lru_hash"``, ``"LRU_HASH"``,
        ``"BPF_MAP_TYPE_LRU_HASH"``); numbers are returned as given (``check_spec`` judges them)."""
        if isinstance(value, int):
            return cls(value) if value in cls._value2member_map_ else value
        name = value.upper().removeprefix("BPF_MAP_TYPE_")
        if name in cls.__members__:
            return cls[name]
        raise MapError(errno.EINVAL, f"unknown map type {value!r} (known: "
                       f"{', '.join(m.name.lower() for m in cls)})")


#: Map types Linux 6.18 knows but bpfcheck does not model (``MapError.unsupported``).
UNMODELLED_TYPES = {
    7: "STACK_TRACE", 8: "CGROUP_ARRAY", 11: "LPM_TRIE", 14: "DEVMAP", 15: "SOCKMAP", 16: "CPUMAP",
    17: "XSKMAP", 18: "SOCKHASH", 20: "REUSEPORT_SOCKARRAY", 21: "PERCPU_CGROUP_STORAGE",
    22: "QUEUE", 23: "STACK", 24: "SK_STORAGE", 25: "DEVMAP_HASH", 26: "STRUCT_OPS",
    28: "INODE_STORAGE", 29: "TASK_STORAGE", 30: "BLOOM_FILTER", 31: "USER_RINGBUF",
    32: "CGRP_STORAGE", 33: "ARENA",
}

# Update flags.
BPF_ANY = 0
BPF_NOEXIST = 1
BPF_EXIST = 2
BPF_F_LOCK = 4
# Map creation flags.
BPF_F_NO_PREALLOC = 1 << 0
BPF_F_NO_COMMON_LRU = 1 << 1
BPF_F_NUMA_NODE = 1 << 2
BPF_F_RDONLY = 1 << 3
BPF_F_WRONLY = 1 << 4
BPF_F_ZERO_SEED = 1 << 6
BPF_F_RDONLY_PROG = 1 << 7
BPF_F_WRONLY_PROG = 1 << 8
BPF_F_MMAPABLE = 1 << 10
BPF_F_PRESERVE_ELEMS = 1 << 11
BPF_F_INNER_MAP = 1 << 12
BPF_F_ACCESS_MASK = BPF_F_RDONLY | BPF_F_RDONLY_PROG | BPF_F_WRONLY | BPF_F_WRONLY_PROG
ARRAY_CREATE_FLAG_MASK = (BPF_F_NUMA_NODE | BPF_F_MMAPABLE | BPF_F_ACCESS_MASK | BPF_F_PRESERVE_ELEMS
                          | BPF_F_INNER_MAP)
HTAB_CREATE_FLAG_MASK = (BPF_F_NO_PREALLOC | BPF_F_NO_COMMON_LRU | BPF_F_NUMA_NODE | BPF_F_ACCESS_MASK
                         | BPF_F_ZERO_SEED)
LOCAL_STORAGE_CREATE_FLAG_MASK = BPF_F_NUMA_NODE | BPF_F_ACCESS_MASK
#: Kernel-internal errno that reaches user space (include/linux/errno.h).
ENOTSUPP = 524
#: mm: PCPU_MIN_UNIT_SIZE bounds per-CPU values; KMALLOC_MAX_SIZE (x86-64, 4 KiB pages) and
#: sizeof(struct htab_elem) = 48 bound hash keys + values (the 48 measured on 6.18).
PCPU_MIN_UNIT_SIZE = 32 << 10
KMALLOC_MAX_SIZE = 4 << 20
HTAB_ELEM_SIZE = 48
#: BPF_LOCAL_STORAGE_MAX_VALUE_SIZE = U16_MAX - sizeof(struct bpf_local_storage_elem); 65407
#: measured on 6.18 as the largest cgroup storage value.
LOCAL_STORAGE_MAX_VALUE_SIZE = 65407
#: include/linux/bpf.h BPF_OBJ_NAME_LEN (with the NUL).
BPF_OBJ_NAME_LEN = 16

# --- Guest memory layout -----------------------------------------------------------------------

MAP_BASE = 0x0000_7F80_0000_0000
MAP_STRIDE = 0x1_0000_0000
#: Linux MAX_USED_MAPS (include/linux/bpf_verifier.h): maps one program may use.
MAX_MAPS = 64
HANDLE_SIZE = 64
VALUES_OFFSET = 0x1000_0000
CPU_STRIDE = 0x1000_0000
MAX_CPUS = (MAP_STRIDE - VALUES_OFFSET) // CPU_STRIDE
#: bpfcheck's limit on slots of a fd array (prog array, map-in-map, perf event array).
MAX_FD_SLOTS = 1 << 24
FD_BASE = 3
assert MEM_BASE < MAP_BASE and MAP_BASE + MAX_MAPS * MAP_STRIDE <= STACK_BASE


def map_base(index: int) -> int:
    """Start of map ``index``'s 4 GiB window (its handle address)."""
    return MAP_BASE + index * MAP_STRIDE


def _round8(n: int) -> int:
    return (n + 7) & ~7


def _roundup_pow2(n: int) -> int:
    return 1 << (n - 1).bit_length() if n > 1 else 1


# --- Errors and specs --------------------------------------------------------------------------


def errno_name(err: int) -> str:
    """``EINVAL`` for 22, ``ENOTSUPP`` for 524 (unknown to ``errno.errorcode``)."""
    return "ENOTSUPP" if err == ENOTSUPP else errno.errorcode.get(err, str(err))


class MapError(BpfCheckError):
    """A map operation or creation the kernel would refuse; ``errno`` is the positive errno.

    ``unsupported`` marks a map type Linux has but bpfcheck does not model (errno EOPNOTSUPP).
    """

    def __init__(self, err: int, message: str, *, unsupported: bool = False, file: str | None = None,
                 line: int | None = None) -> None:
        super().__init__(f"{errno_name(err)}: {message}", file=file, line=line)
        self.errno = err
        self.unsupported = unsupported


def _fail(err: int, message: str) -> NoReturn:
    raise MapError(err, message)


@dataclass(frozen=True)
class MapSpec:
    """The ``BPF_MAP_CREATE`` attributes of one map; ``inner_map`` is the template of a map-in-map
    (what the kernel gets as ``inner_map_fd``)."""

    name: str
    type: int
    key_size: int
    value_size: int
    max_entries: int
    flags: int = 0
    inner_map: MapSpec | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "type", MapType.parse(self.type))

    @property
    def type_name(self) -> str:
        try:
            return MapType(self.type).name
        except ValueError:
            return UNMODELLED_TYPES.get(self.type, str(self.type))


@dataclass(frozen=True)
class ProgRef:
    """A program stored in a prog array: its name and id (what a syscall lookup returns)."""

    name: str
    id: int = 0


# --- Hashing (include/linux/jhash.h, kernel/bpf/hashtab.c htab_map_hash) -----------------------

_M32 = 0xFFFF_FFFF
JHASH_INITVAL = 0xDEADBEEF


def _rol32(x: int, s: int) -> int:
    return ((x << s) | (x >> (32 - s))) & _M32


def _jhash_mix(a: int, b: int, c: int) -> tuple[int, int, int]:
    a = (a - c) & _M32; a ^= _rol32(c, 4); c = (c + b) & _M32  # noqa: E702
    b = (b - a) & _M32; b ^= _rol32(a, 6); a = (a + c) & _M32  # noqa: E702
    c = (c - b) & _M32; c ^= _rol32(b, 8); b = (b + a) & _M32  # noqa: E702
    a = (a - c) & _M32; a ^= _rol32(c, 16); c = (c + b) & _M32  # noqa: E702
    b = (b - a) & _M32; b ^= _rol32(a, 19); a = (a + c) & _M32  # noqa: E702
    c = (c - b) & _M32; c ^= _rol32(b, 4); b = (b + a) & _M32  # noqa: E702
    return a, b, c


def _jhash_final(a: int, b: int, c: int) -> int:
    c ^= b; c = (c - _rol32(b, 14)) & _M32  # noqa: E702
    a ^= c; a = (a - _rol32(c, 11)) & _M32  # noqa: E702
    b ^= a; b = (b - _rol32(a, 25)) & _M32  # noqa: E702
    c ^= b; c = (c - _rol32(b, 16)) & _M32  # noqa: E702
    a ^= c; a = (a - _rol32(c, 4)) & _M32  # noqa: E702
    b ^= a; b = (b - _rol32(a, 14)) & _M32  # noqa: E702
    c ^= b; c = (c - _rol32(b, 24)) & _M32  # noqa: E702
    return c


def jhash(key: bytes, initval: int = 0) -> int:
    """``jhash``: Bob Jenkins' lookup3 over bytes (12-byte blocks, the tail byte by byte)."""
    length = len(key)
    a = b = c = (JHASH_INITVAL + length + initval) & _M32
    i = 0
    while length > 12:
        w0, w1, w2 = struct.unpack_from("<III", key, i)
        a, b, c = _jhash_mix((a + w0) & _M32, (b + w1) & _M32, (c + w2) & _M32)
        length -= 12
        i += 12
    if length == 0:
        return c
    tail = key[i:] + bytes(12 - length)
    w0, w1, w2 = struct.unpack("<III", tail)
    return _jhash_final((a + w0) & _M32, (b + w1) & _M32, (c + w2) & _M32)


def jhash2(words: tuple[int, ...], initval: int = 0) -> int:
    """``jhash2``: lookup3 over u32 words (used when the key size is a multiple of 4)."""
    length = len(words)
    a = b = c = (JHASH_INITVAL + (length << 2) + initval) & _M32
    i = 0
    while length > 3:
        a, b, c = _jhash_mix((a + words[i]) & _M32, (b + words[i + 1]) & _M32, (c + words[i + 2]) & _M32)
        length -= 3
        i += 3
    if length == 0:
        return c
    if length == 3:
        c = (c + words[i + 2]) & _M32
    if length >= 2:
        b = (b + words[i + 1]) & _M32
    return _jhash_final((a + words[i]) & _M32, b, c)


def htab_hash(key: bytes, hashrnd: int = 0) -> int:
    """``htab_map_hash``: jhash2 over words when ``len(key) % 4 == 0``, else jhash."""
    if len(key) % 4 == 0:
        return jhash2(struct.unpack(f"<{len(key) // 4}I", key), hashrnd)
    return jhash(key, hashrnd)


# --- Creation checks ---------------------------------------------------------------------------

Check = tuple[int, str] | None


def _access_ok(flags: int) -> bool:
    """``bpf_map_flags_access_ok``: not both BPF_F_RDONLY_PROG and BPF_F_WRONLY_PROG."""
    both = BPF_F_RDONLY_PROG | BPF_F_WRONLY_PROG
    return flags & both != both


def _check_array(spec: MapSpec) -> Check:
    """arraymap.c ``array_map_alloc_check``."""
    percpu = spec.type == MapType.PERCPU_ARRAY
    if (spec.max_entries == 0 or spec.key_size != 4 or spec.value_size == 0
            or spec.flags & ~ARRAY_CREATE_FLAG_MASK or not _access_ok(spec.flags)
            or (percpu and spec.flags & BPF_F_NUMA_NODE)):
        return errno.EINVAL, ("an array needs key_size 4, value_size > 0, max_entries > 0 and flags "
                              f"within {ARRAY_CREATE_FLAG_MASK:#x}")
    if spec.type != MapType.ARRAY and spec.flags & (BPF_F_MMAPABLE | BPF_F_INNER_MAP):
        return errno.EINVAL, "BPF_F_MMAPABLE and BPF_F_INNER_MAP are for BPF_MAP_TYPE_ARRAY only"
    if spec.type != MapType.PERF_EVENT_ARRAY and spec.flags & BPF_F_PRESERVE_ELEMS:
        return errno.EINVAL, "BPF_F_PRESERVE_ELEMS is for BPF_MAP_TYPE_PERF_EVENT_ARRAY only"
    if spec.value_size > 0x7FFF_FFFF:
        return errno.E2BIG, "value_size exceeds INT_MAX"
    if percpu and spec.value_size > PCPU_MIN_UNIT_SIZE:
        return errno.E2BIG, f"a per-CPU value is limited to PCPU_MIN_UNIT_SIZE ({PCPU_MIN_UNIT_SIZE})"
    return None


def _check_fd_array(spec: MapSpec) -> Check:
    """arraymap.c ``fd_array_map_alloc_check``: values are u32 fds, no program access flags."""
    if spec.value_size != 4:
        return errno.EINVAL, "a fd array has value_size 4 (a file descriptor)"
    if spec.flags & (BPF_F_RDONLY_PROG | BPF_F_WRONLY_PROG):
        return errno.EINVAL, "BPF_F_RDONLY_PROG/BPF_F_WRONLY_PROG are not supported for fd arrays"
    return _check_array(spec)


def _check_htab(spec: MapSpec) -> Check:
    """hashtab.c ``htab_map_alloc_check`` (the CAP_SYS_ADMIN check of BPF_F_ZERO_SEED is moot:
    bpfcheck runs as root)."""
    percpu = spec.type in (MapType.PERCPU_HASH, MapType.LRU_PERCPU_HASH)
    lru = spec.type in (MapType.LRU_HASH, MapType.LRU_PERCPU_HASH)
    percpu_lru = bool(spec.flags & BPF_F_NO_COMMON_LRU)
    prealloc = not spec.flags & BPF_F_NO_PREALLOC
    if spec.flags & ~HTAB_CREATE_FLAG_MASK or not _access_ok(spec.flags):
        return errno.EINVAL, f"hash map flags {spec.flags:#x} are not within {HTAB_CREATE_FLAG_MASK:#x}"
    if not lru and percpu_lru:
        return errno.EINVAL, "BPF_F_NO_COMMON_LRU is for LRU maps only"
    if lru and not prealloc:
        return ENOTSUPP, "LRU maps are always preallocated (BPF_F_NO_PREALLOC)"
    if spec.flags & BPF_F_NUMA_NODE and (percpu or percpu_lru):
        return errno.EINVAL, "BPF_F_NUMA_NODE is not allowed for per-CPU maps or per-CPU LRU lists"
    if spec.max_entries == 0 or spec.key_size == 0 or spec.value_size == 0:
        return errno.EINVAL, "a hash map needs key_size, value_size and max_entries > 0"
    if spec.key_size + spec.value_size >= KMALLOC_MAX_SIZE - HTAB_ELEM_SIZE:
        return errno.E2BIG, "key_size + value_size must stay below KMALLOC_MAX_SIZE - sizeof(htab_elem)"
    if percpu and _round8(spec.value_size) > PCPU_MIN_UNIT_SIZE:
        return errno.E2BIG, f"a per-CPU value is limited to PCPU_MIN_UNIT_SIZE ({PCPU_MIN_UNIT_SIZE})"
    return None


def _check_fd_htab(spec: MapSpec) -> Check:
    """hashtab.c ``fd_htab_map_alloc_check``."""
    if spec.value_size != 4:
        return errno.EINVAL, "a hash of maps has value_size 4 (a map fd)"
    return _check_htab(spec)


def _check_cgroup_storage(spec: MapSpec) -> Check:
    """local_storage.c ``cgroup_storage_map_alloc``."""
    if spec.key_size not in (16, 8):
        return errno.EINVAL, "cgroup storage keys are struct bpf_cgroup_storage_key (16) or a u64 (8)"
    if spec.value_size == 0:
        return errno.EINVAL, "value_size must be > 0"
    if spec.value_size > LOCAL_STORAGE_MAX_VALUE_SIZE:
        return errno.E2BIG, (f"value_size exceeds BPF_LOCAL_STORAGE_MAX_VALUE_SIZE "
                             f"({LOCAL_STORAGE_MAX_VALUE_SIZE})")
    if spec.flags & ~LOCAL_STORAGE_CREATE_FLAG_MASK or not _access_ok(spec.flags):
        return errno.EINVAL, f"cgroup storage flags {spec.flags:#x} are not allowed"
    if spec.max_entries:
        return errno.EINVAL, "cgroup storage requires max_entries = 0"
    return None


def _check_ringbuf(spec: MapSpec) -> Check:
    return check_ringbuf_attrs(spec.key_size, spec.value_size, spec.max_entries, spec.flags)


def _check_inner(spec: MapSpec, ncpus: int) -> Check:
    """map_in_map.c ``bpf_map_meta_alloc``: the template is an existing map, not itself a
    map-in-map (EINVAL), of a type with ``map_meta_equal`` (else ENOTSUPP: prog arrays and
    cgroup storage, measured on 6.18)."""
    inner = spec.inner_map
    if inner is None:
        return errno.EINVAL, "a map-in-map needs an inner map template (inner_map_fd)"
    try:
        check_spec(inner, ncpus)
    except MapError as e:
        return e.errno, f"inner map template: {e.message}"
    if inner.type in (MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS):
        return errno.EINVAL, "map-in-map supports one level only"
    if inner.type in (MapType.PROG_ARRAY, MapType.CGROUP_STORAGE):
        return ENOTSUPP, f"a {inner.type_name} cannot be an inner map (no map_meta_equal)"
    return None


def _limit(nbytes: int, what: str) -> Check:
    if nbytes > CPU_STRIDE:
        return errno.ENOMEM, f"{what} need {nbytes} bytes, more than bpfcheck's {CPU_STRIDE:#x}-byte window"
    return None


def _fd_limit(slots: int) -> Check:
    if slots > MAX_FD_SLOTS:
        return errno.ENOMEM, f"{slots} slots, more than bpfcheck's limit of {MAX_FD_SLOTS}"
    return None


def _alloc_checks(spec: MapSpec, ncpus: int) -> Check:
    """The errors of each type's ``map_alloc`` (after ``map_alloc_check``), plus bpfcheck's
    memory limits, reported as ENOMEM as if the allocation had failed."""
    t = spec.type
    if t in (MapType.ARRAY, MapType.PERCPU_ARRAY):
        return _limit(spec.max_entries * _round8(spec.value_size), "the array values")
    if t in (MapType.PROG_ARRAY, MapType.PERF_EVENT_ARRAY):
        return _fd_limit(spec.max_entries)
    if t == MapType.ARRAY_OF_MAPS:
        return _check_inner(spec, ncpus) or _fd_limit(spec.max_entries)
    if t in (MapType.HASH, MapType.PERCPU_HASH, MapType.LRU_HASH, MapType.LRU_PERCPU_HASH,
             MapType.HASH_OF_MAPS):
        if t == MapType.HASH_OF_MAPS:
            inner = _check_inner(spec, ncpus)
            if inner:
                return inner
        max_entries = _effective_max_entries(spec, ncpus)
        # hashtab.c htab_map_alloc: more than 2^31 entries, or more buckets than a u32 byte count
        # of 16-byte buckets can hold (measured: 2^31 gives E2BIG on 6.18).
        if max_entries > 1 << 31 or _roundup_pow2(max_entries) > _M32 // 16:
            return errno.E2BIG, f"max_entries {spec.max_entries} needs too many hash buckets"
        slots = max_entries + (ncpus if t in (MapType.HASH, MapType.HASH_OF_MAPS) else 0)
        if t == MapType.HASH_OF_MAPS:
            return _fd_limit(slots)
        return _limit(slots * _round8(spec.value_size), "the hash elements")
    return None


_ALLOC_CHECKS: dict[int, Callable[[MapSpec], Check]] = {
    MapType.HASH: _check_htab,
    MapType.ARRAY: _check_array,
    MapType.PROG_ARRAY: _check_fd_array,
    MapType.PERF_EVENT_ARRAY: _check_fd_array,
    MapType.PERCPU_HASH: _check_htab,
    MapType.PERCPU_ARRAY: _check_array,
    MapType.LRU_HASH: _check_htab,
    MapType.LRU_PERCPU_HASH: _check_htab,
    MapType.ARRAY_OF_MAPS: _check_fd_array,
    MapType.HASH_OF_MAPS: _check_fd_htab,
    MapType.CGROUP_STORAGE: _check_cgroup_storage,
    MapType.RINGBUF: _check_ringbuf,
}


def _effective_max_entries(spec: MapSpec, ncpus: int) -> int:
    """hashtab.c ``htab_map_alloc``: with BPF_F_NO_COMMON_LRU every CPU's LRU list gets the same
    number of elements (max_entries rounded up to a multiple of the CPU count)."""
    if spec.type in (MapType.LRU_HASH, MapType.LRU_PERCPU_HASH) and spec.flags & BPF_F_NO_COMMON_LRU:
        rounded = -(-spec.max_entries // ncpus) * ncpus
        return rounded if rounded <= _M32 else spec.max_entries // ncpus * ncpus
    return spec.max_entries


def check_spec(spec: MapSpec, ncpus: int = 1) -> None:
    """Raise :class:`MapError` with the errno ``BPF_MAP_CREATE`` would give for ``spec``.

    Order of kernel/bpf/syscall.c ``map_create``: file-mode flags (``bpf_get_file_flag``:
    BPF_F_RDONLY with BPF_F_WRONLY is EINVAL), the map type (unknown: EINVAL), the type's
    ``map_alloc_check`` then ``map_alloc``, and last the name (``bpf_obj_name_cpy``: only
    letters, digits, ``_`` and ``.``). Names longer than 15 characters are accepted and
    truncated, as libbpf does before it calls the kernel.
    """
    for field in ("key_size", "value_size", "max_entries", "flags"):
        value = getattr(spec, field)
        if not 0 <= value <= _M32:
            _fail(errno.EINVAL, f"{field} {value} does not fit the u32 of union bpf_attr")
    if spec.flags & BPF_F_RDONLY and spec.flags & BPF_F_WRONLY:
        _fail(errno.EINVAL, "BPF_F_RDONLY and BPF_F_WRONLY are mutually exclusive")
    if spec.type not in _ALLOC_CHECKS:
        if spec.type in UNMODELLED_TYPES:
            raise MapError(errno.EOPNOTSUPP, f"map type {spec.type} ({UNMODELLED_TYPES[spec.type]}) is valid "
                           "in Linux but not modelled by bpfcheck", unsupported=True)
        _fail(errno.EINVAL, f"unknown map type {spec.type}")
    found = _ALLOC_CHECKS[spec.type](spec) or _alloc_checks(spec, ncpus)
    if found:
        _fail(*found)
    name = spec.name[:BPF_OBJ_NAME_LEN - 1]
    if not all(c.isascii() and (c.isalnum() or c in "_.") for c in name):
        _fail(errno.EINVAL, f"map name {spec.name!r}: only letters, digits, '_' and '.' are allowed")


# --- The maps ----------------------------------------------------------------------------------

MapResolver = Callable[[int], "BpfMap | None"]
ProgResolver = Callable[[int], "ProgRef | None"]


class BpfMap:
    """What every map has: identity, the handle region, and default (refusing) operations.

    The defaults return what the kernel's ops return for operations a type does not support
    (the verifier usually refuses such calls before they can happen: kernel/bpf/verifier.c
    ``check_map_func_compatibility``).
    """

    percpu = False

    def __init__(self, spec: MapSpec, memory: Memory, index: int, *, ncpus: int = 1,
                 env: Environment | None = None) -> None:
        self.spec = spec
        self.memory = memory
        self.index = index
        self.ncpus = ncpus
        self.env = env
        self.fd = FD_BASE + index
        self.id = index + 1
        self.base = map_base(index)
        self.handle = self.base
        self.label = f"map{index}.{spec.name}" if spec.name else f"map{index}"
        header = struct.pack("<7I", spec.type, spec.key_size, spec.value_size, spec.max_entries,
                             spec.flags, self.id, index)
        self.handle_region = memory.add(Region(f"{self.label}.handle", self.handle,
                                               bytearray(header.ljust(HANDLE_SIZE, b"\0")), writable=False))

    # attributes
    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def type(self) -> int:
        return self.spec.type

    @property
    def key_size(self) -> int:
        return self.spec.key_size

    @property
    def value_size(self) -> int:
        return self.spec.value_size

    @property
    def max_entries(self) -> int:
        return self.spec.max_entries

    @property
    def flags(self) -> int:
        return self.spec.flags

    @property
    def sys_value_size(self) -> int:
        """syscall.c ``bpf_map_value_size``: per-CPU maps exchange every CPU's value rounded up
        to 8 bytes; fd maps a u32."""
        if self.percpu:
            return _round8(self.value_size) * self.ncpus
        return self.value_size

    def values_base(self, cpu: int = 0) -> int:
        return self.base + VALUES_OFFSET + cpu * CPU_STRIDE

    def direct_value_address(self, offset: int) -> int | None:
        """What ``lddw`` map_value/map_idx_value loads (``map_direct_value_addr``), or None when
        the map has no direct value access (only single-element arrays have it)."""
        return None

    def program_at(self, index: int) -> str | None:
        """The program a tail call through slot ``index`` reaches; only prog arrays have any."""
        return None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.label} fd={self.fd} handle={self.handle:#x}>"

    # argument checks shared by both faces
    def _key(self, key: bytes) -> bytes:
        key = bytes(key)
        if len(key) != self.key_size:
            _fail(errno.EINVAL, f"{self.label}: key of {len(key)} bytes, key_size is {self.key_size}")
        return key

    def _value(self, value: bytes, size: int) -> bytes:
        value = bytes(value)
        if len(value) != size:
            _fail(errno.EINVAL, f"{self.label}: value of {len(value)} bytes, expected {size}")
        return value

    def _cpu(self, cpu: int) -> int:
        if not 0 <= cpu < self.ncpus:
            _fail(errno.EINVAL, f"{self.label}: cpu {cpu} is not one of the {self.ncpus} CPUs")
        return cpu

    # program side
    def lookup(self, key: bytes, cpu: int = 0) -> int | None:
        """Address of the value for ``key`` as ``bpf_map_lookup_elem`` returns it, or None."""
        return None

    def update(self, key: bytes, value: bytes, flags: int = BPF_ANY, cpu: int = 0) -> int:
        """``bpf_map_update_elem`` from a program: 0 or ``-errno``."""
        return -errno.EINVAL

    def delete(self, key: bytes, cpu: int = 0) -> int:
        """``bpf_map_delete_elem`` from a program: 0 or ``-errno``."""
        return -errno.EINVAL

    # syscall side
    def _check_access(self, write: bool) -> None:
        """syscall.c ``map_get_sys_perms``: a map created with BPF_F_RDONLY (BPF_F_WRONLY) gives a
        file descriptor that cannot write (read): EPERM before anything else is looked at."""
        if self.flags & (BPF_F_RDONLY if write else BPF_F_WRONLY):
            _fail(errno.EPERM, f"{self.label}: the map fd is {'read' if write else 'write'}-only")

    def sys_lookup(self, key: bytes) -> bytes:
        """``BPF_MAP_LOOKUP_ELEM``: the value bytes (``sys_value_size`` of them)."""
        self._check_access(write=False)
        return self._sys_lookup(key)

    def sys_update(self, key: bytes, value: bytes, flags: int = BPF_ANY) -> None:
        """``BPF_MAP_UPDATE_ELEM``. syscall.c ``map_update_elem`` refuses ``BPF_F_LOCK`` for a map
        without a spin lock (every map here: there is no BTF) with EINVAL before the map sees it."""
        self._check_access(write=True)
        if flags & BPF_F_LOCK:
            _fail(errno.EINVAL, f"{self.label}: BPF_F_LOCK needs a bpf_spin_lock in the value")
        self._sys_update(self._key(key), self._value(value, self.sys_value_size), flags)

    def sys_delete(self, key: bytes) -> None:
        """``BPF_MAP_DELETE_ELEM``."""
        self._check_access(write=True)
        self._sys_delete(key)

    def sys_get_next_key(self, key: bytes | None) -> bytes:
        """``BPF_MAP_GET_NEXT_KEY``: the key after ``key`` (the first one for None)."""
        self._check_access(write=False)
        return self._sys_get_next_key(key)

    def _sys_lookup(self, key: bytes) -> bytes:
        _fail(errno.EINVAL, f"{self.label}: lookup is not supported")

    def _sys_update(self, key: bytes, value: bytes, flags: int) -> None:
        _fail(errno.EINVAL, f"{self.label}: update is not supported")

    def _sys_delete(self, key: bytes) -> None:
        _fail(errno.EINVAL, f"{self.label}: delete is not supported")

    def _sys_get_next_key(self, key: bytes | None) -> bytes:
        _fail(errno.EINVAL, f"{self.label}: get_next_key is not supported")

    def sys_keys(self) -> list[bytes]:
        """Every key, by ``sys_get_next_key`` from None until ENOENT."""
        keys: list[bytes] = []
        key: bytes | None = None
        while True:
            try:
                key = self.sys_get_next_key(key)
            except MapError as e:
                if e.errno == errno.ENOENT:
                    return keys
                raise
            keys.append(key)

    def snapshot(self) -> dict[str, Any]:
        """Deterministic, JSON-able contents for the full-state oracle."""
        return {"name": self.name, "type": self.spec.type_name}


def _check_update_flags(flags: int, exists: bool) -> int:
    """hashtab.c ``check_flags``: EEXIST for BPF_NOEXIST on an existing key, ENOENT for
    BPF_EXIST on a missing one."""
    if exists and flags & ~BPF_F_LOCK == BPF_NOEXIST:
        return -errno.EEXIST
    if not exists and flags & ~BPF_F_LOCK == BPF_EXIST:
        return -errno.ENOENT
    return 0


class ArrayMap(BpfMap):
    """``BPF_MAP_TYPE_ARRAY`` (arraymap.c): every index below ``max_entries`` exists, zero-filled;
    elements are ``round_up(value_size, 8)`` bytes apart."""

    def __init__(self, spec: MapSpec, memory: Memory, index: int, *, ncpus: int = 1,
                 env: Environment | None = None) -> None:
        super().__init__(spec, memory, index, ncpus=ncpus, env=env)
        self.elem_size = _round8(spec.value_size)
        copies = ncpus if self.percpu else 1
        self.regions = [
            memory.add(Region(f"{self.label}.values" + (f".cpu{c}" if self.percpu else ""),
                              self.values_base(c), bytearray(spec.max_entries * self.elem_size)))
            for c in range(copies)]

    def _index(self, key: bytes) -> int:
        return int.from_bytes(self._key(key), "little")

    def value_addr(self, index: int, cpu: int = 0) -> int:
        return self.regions[cpu].start + index * self.elem_size

    def direct_value_address(self, offset: int) -> int | None:
        """arraymap.c ``array_map_direct_value_addr``: only for an ARRAY with ``max_entries`` 1
        (else ENOTSUPP) and ``offset < value_size`` (else EINVAL): element 0's address + offset."""
        if self.percpu or self.max_entries != 1 or not 0 <= offset < self.value_size:
            return None
        return self.regions[0].start + offset

    def _element(self, index: int, cpu: int) -> bytes:
        off = index * self.elem_size
        return bytes(self.regions[cpu].data[off:off + self.elem_size])

    def lookup(self, key: bytes, cpu: int = 0) -> int | None:
        """``array_map_lookup_elem`` / ``percpu_array_map_lookup_elem``: NULL past the end."""
        i = self._index(key)
        if i >= self.max_entries:
            return None
        return self.value_addr(i, self._cpu(cpu) if self.percpu else 0)

    def update(self, key: bytes, value: bytes, flags: int = BPF_ANY, cpu: int = 0) -> int:
        """``array_map_update_elem``: EINVAL for flags beyond BPF_EXIST (BPF_F_LOCK aside), E2BIG
        past the end ("all elements were pre-allocated"), EEXIST for BPF_NOEXIST ("all elements
        already exist"), EINVAL for BPF_F_LOCK without a spin lock; copies ``value_size`` bytes
        (into the current CPU's copy for a per-CPU array)."""
        i = self._index(key)
        if flags & ~BPF_F_LOCK > BPF_EXIST:
            return -errno.EINVAL
        if i >= self.max_entries:
            return -errno.E2BIG
        if flags & BPF_NOEXIST:
            return -errno.EEXIST
        if flags & BPF_F_LOCK:
            return -errno.EINVAL
        value = self._value(value, self.value_size)
        off = i * self.elem_size
        self.regions[self._cpu(cpu) if self.percpu else 0].data[off:off + self.value_size] = value
        return 0

    def delete(self, key: bytes, cpu: int = 0) -> int:
        """``array_map_delete_elem``: array elements cannot be deleted (EINVAL)."""
        return -errno.EINVAL

    def _sys_lookup(self, key: bytes) -> bytes:
        """ENOENT past the end (``array_map_lookup_elem`` returned NULL); ``value_size`` bytes, or
        for a per-CPU array every CPU's element (``bpf_percpu_array_copy``)."""
        i = self._index(key)
        if i >= self.max_entries:
            _fail(errno.ENOENT, f"{self.label}: index {i} >= max_entries {self.max_entries}")
        if self.percpu:
            return b"".join(self._element(i, c) for c in range(self.ncpus))
        return self._element(i, 0)[:self.value_size]

    def _sys_update(self, key: bytes, value: bytes, flags: int) -> None:
        if self.percpu:
            err = self._percpu_sys_update(self._index(key), value, flags)
        else:
            err = self.update(key, value, flags)
        if err:
            _fail(-err, f"{self.label}: update of key {key.hex()} with flags {flags}")

    def _percpu_sys_update(self, i: int, value: bytes, flags: int) -> int:
        """``bpf_percpu_array_update``: EINVAL, E2BIG, EEXIST as above; every CPU's element gets
        its ``round_up(value_size, 8)`` bytes of ``value``."""
        if flags > BPF_EXIST:
            return -errno.EINVAL
        if i >= self.max_entries:
            return -errno.E2BIG
        if flags == BPF_NOEXIST:
            return -errno.EEXIST
        off, size = i * self.elem_size, self.elem_size
        for c in range(self.ncpus):
            self.regions[c].data[off:off + size] = value[c * size:(c + 1) * size]
        return 0

    def _sys_delete(self, key: bytes) -> None:
        self._key(key)
        _fail(errno.EINVAL, f"{self.label}: array elements cannot be deleted")

    def _sys_get_next_key(self, key: bytes | None) -> bytes:
        """``array_map_get_next_key``: 0 for no key or a key past the end, ENOENT after the last
        index, else index + 1."""
        i = 0xFFFF_FFFF if key is None else self._index(key)
        if i >= self.max_entries:
            return bytes(4)
        if i == self.max_entries - 1:
            _fail(errno.ENOENT, f"{self.label}: no key after the last index")
        return (i + 1).to_bytes(4, "little")

    def snapshot(self) -> dict[str, Any]:
        """Entries whose value (the ``sys_lookup`` bytes) is not all zero; every index exists, so
        the omitted ones are zero."""
        entries = {}
        block = 64 * self.elem_size
        zero = bytes(block)
        for start in range(0, self.max_entries * self.elem_size, block):
            if all(bytes(r.data[start:start + block]) == zero[:len(r.data[start:start + block])]
                   for r in self.regions):
                continue
            for i in range(start // self.elem_size, min(self.max_entries, (start + block) // self.elem_size)):
                key = i.to_bytes(4, "little")
                value = self._sys_lookup(key)
                if any(value):
                    entries[key.hex()] = value.hex()
        return {**super().snapshot(), "entries": entries}


class PercpuArrayMap(ArrayMap):
    """``BPF_MAP_TYPE_PERCPU_ARRAY``: one array per CPU; a program sees its CPU's copy."""

    percpu = True


class HashMap(BpfMap):
    """``BPF_MAP_TYPE_HASH`` (hashtab.c), and through class flags its per-CPU and LRU variants.

    Order: keys hash with ``htab_map_hash`` (jhash, seed 0) into ``roundup_pow_of_two(max_entries)``
    buckets; a new or replaced element goes to the head of its bucket (``hlist_nulls_add_head_rcu``);
    ``get_next_key`` walks the bucket list and then the following buckets, and starts from the
    first element when the key is missing (``htab_map_get_next_key``). With seed 0 this is the
    kernel's order for ``BPF_F_ZERO_SEED`` maps; without that flag the kernel seeds randomly.

    Memory: ``max_entries`` element slots (plus one spare per CPU for plain hash maps, the
    kernel's ``extra_elems``) of ``round_up(value_size, 8)`` bytes, handed out from a LIFO free
    list (a freed slot is reused first, as ``pcpu_freelist`` does on one CPU); the regions grow
    as slots are first used. Replacing an element of a plain or LRU hash map moves it to a new
    slot, as the kernel does, so a pointer from an earlier lookup keeps seeing the old value.
    """

    lru = False

    def __init__(self, spec: MapSpec, memory: Memory, index: int, *, ncpus: int = 1,
                 env: Environment | None = None) -> None:
        super().__init__(spec, memory, index, ncpus=ncpus, env=env)
        self.elem_size = _round8(spec.value_size)
        #: The kernel's ``map.max_entries`` (rounded for BPF_F_NO_COMMON_LRU).
        self.capacity = _effective_max_entries(spec, ncpus)
        self.n_buckets = _roundup_pow2(self.capacity)
        self.hashrnd = 0
        self._slot: dict[bytes, int] = {}
        self._buckets: dict[int, list[bytes]] = {}
        self._nonempty: list[int] = []  # sorted bucket numbers with elements
        extra = not self.percpu and not self.lru
        self._nslots = self.capacity + (ncpus if extra else 0)
        self._free = list(range(self.capacity - 1, -1, -1))  # pop() hands out slot 0 first
        self._extra = [self.capacity + c for c in range(ncpus)] if extra else []
        self._recent: OrderedDict[bytes, None] = OrderedDict()  # LRU order, least recent first
        self.percpu_lru = self.lru and bool(spec.flags & BPF_F_NO_COMMON_LRU)
        self._per_cpu_nodes = self.capacity // ncpus if self.percpu_lru else 0
        self.regions = self._make_regions()

    def _make_regions(self) -> list[Region]:
        copies = self.ncpus if self.percpu else 1
        return [self.memory.add(Region(f"{self.label}.values" + (f".cpu{c}" if self.percpu else ""),
                                       self.values_base(c), bytearray()))
                for c in range(copies)]

    # --- slots and buckets --------------------------------------------------------------------

    def _bucket(self, key: bytes) -> int:
        return htab_hash(key, self.hashrnd) & (self.n_buckets - 1)

    def _link(self, key: bytes, slot: int) -> None:
        """Add ``key`` at the head of its bucket (``hlist_nulls_add_head_rcu``)."""
        b = self._bucket(key)
        chain = self._buckets.get(b)
        if chain is None:
            chain = self._buckets[b] = []
            bisect.insort(self._nonempty, b)
        chain.insert(0, key)
        self._slot[key] = slot
        if self.lru:
            self._recent[key] = None
            self._recent.move_to_end(key)

    def _unlink(self, key: bytes) -> int:
        """Remove ``key`` from its bucket; returns its slot (not yet freed)."""
        b = self._bucket(key)
        chain = self._buckets[b]
        chain.remove(key)
        if not chain:
            del self._buckets[b]
            self._nonempty.pop(bisect.bisect_left(self._nonempty, b))
        self._recent.pop(key, None)
        return self._slot.pop(key)

    def _ensure(self, slot: int) -> None:
        need = (slot + 1) * self.elem_size
        for r in self.regions:
            data = r.data
            assert isinstance(data, bytearray)
            if len(data) < need:
                grown = min(max(need, 2 * len(data), 16 * self.elem_size), self._nslots * self.elem_size)
                data.extend(bytes(grown - len(data)))

    def _store(self, slot: int, value: bytes, cpu: int | None) -> None:
        """Write a program's value (``cpu`` given: that CPU's copy, ``value_size`` bytes) or a
        syscall's (``cpu`` None: for per-CPU maps every CPU's rounded value)."""
        self._ensure(slot)
        off = slot * self.elem_size
        if not self.percpu:
            self.regions[0].data[off:off + self.value_size] = value[:self.value_size]
        elif cpu is not None:
            self.regions[cpu].data[off:off + self.value_size] = value[:self.value_size]
        else:
            size = self.elem_size
            for c in range(self.ncpus):
                self.regions[c].data[off:off + size] = value[c * size:(c + 1) * size]

    def _init_value(self, slot: int, value: bytes, cpu: int | None) -> None:
        """A new element: ``pcpu_init_value`` zero-fills the other CPUs' copies of a per-CPU value."""
        if self.percpu and cpu is not None:
            self._ensure(slot)
            off = slot * self.elem_size
            for r in self.regions:
                r.data[off:off + self.elem_size] = bytes(self.elem_size)
        self._store(slot, value, cpu)

    def _load(self, slot: int) -> bytes:
        """The syscall view of a value (``bpf_percpu_hash_copy`` for per-CPU maps)."""
        off = slot * self.elem_size
        if self.percpu:
            return b"".join(bytes(r.data[off:off + self.elem_size]) for r in self.regions)
        return bytes(self.regions[0].data[off:off + self.value_size])

    def _addr(self, slot: int, cpu: int) -> int:
        return self.regions[cpu if self.percpu else 0].start + slot * self.elem_size

    def _lru_pop(self, cpu: int) -> int:
        """``prealloc_lru_pop``: a free node, else evict the least recently used element (of this
        CPU's list with BPF_F_NO_COMMON_LRU).

        Linux's LRU (kernel/bpf/bpf_lru_list.c) is approximate: it keeps active/inactive lists
        with reference bits, moves free nodes to per-CPU local lists in batches and shrinks
        several elements at once, so it may evict before the map is full and evict more than one
        element. Here eviction is exact LRU, one element at a time, only when every node is in
        use. Recency: a program lookup (``bpf_lru_node_set_ref``) or an update marks an element;
        syscall lookups do not (``htab_lru_map_lookup_elem_sys``).
        """
        if self.percpu_lru:
            mine = [s for s in self._free if s // self._per_cpu_nodes == cpu]
            if mine:
                self._free.remove(mine[-1])
                return mine[-1]
            victim = next(k for k in self._recent if self._slot[k] // self._per_cpu_nodes == cpu)
            return self._unlink(victim)
        if self._free:
            return self._free.pop()
        return self._unlink(next(iter(self._recent)))

    # --- program side -------------------------------------------------------------------------

    def lookup(self, key: bytes, cpu: int = 0) -> int | None:
        """``htab_map_lookup_elem`` (LRU: also marks the element recently used; per-CPU: the
        current CPU's copy)."""
        key = self._key(key)
        slot = self._slot.get(key)
        if slot is None:
            return None
        if self.lru:
            self._recent.move_to_end(key)
        return self._addr(slot, self._cpu(cpu) if self.percpu else 0)

    def update(self, key: bytes, value: bytes, flags: int = BPF_ANY, cpu: int = 0) -> int:
        return self._update(self._key(key), self._value(value, self.value_size), flags, self._cpu(cpu),
                            onallcpus=False)

    def _update(self, key: bytes, value: bytes, flags: int, cpu: int, onallcpus: bool) -> int:
        if self.lru and self.percpu:
            return self._update_lru_percpu(key, value, flags, cpu, onallcpus)
        if self.lru:
            return self._update_lru(key, value, flags, cpu)
        if self.percpu:
            return self._update_percpu(key, value, flags, cpu, onallcpus)
        return self._update_plain(key, value, flags, cpu)

    def _update_plain(self, key: bytes, value: bytes, flags: int, cpu: int) -> int:
        """``htab_map_update_elem``: EINVAL for unknown flags and for BPF_F_LOCK (no spin lock),
        EEXIST/ENOENT from ``check_flags``, E2BIG when all ``max_entries`` elements are in use
        and the key is new. A replaced element gets a new slot (this CPU's spare,
        ``alloc_htab_elem``) and the old slot becomes the spare."""
        if flags & ~BPF_F_LOCK > BPF_EXIST or flags & BPF_F_LOCK:
            return -errno.EINVAL
        old = self._slot.get(key)
        err = _check_update_flags(flags, old is not None)
        if err:
            return err
        if old is not None:
            slot, self._extra[cpu] = self._extra[cpu], old
            self._unlink(key)
        elif not self._free:
            return -errno.E2BIG
        else:
            slot = self._free.pop()
        self._init_value(slot, value, None)
        self._link(key, slot)
        return 0

    def _update_percpu(self, key: bytes, value: bytes, flags: int, cpu: int, onallcpus: bool) -> int:
        """``__htab_percpu_map_update_elem``: EINVAL for flags beyond BPF_EXIST, then as a hash
        map, but an existing element is updated in place (this CPU's copy from a program, every
        CPU's from the syscall)."""
        if flags > BPF_EXIST:
            return -errno.EINVAL
        old = self._slot.get(key)
        err = _check_update_flags(flags, old is not None)
        if err:
            return err
        target = None if onallcpus else cpu
        if old is not None:
            self._store(old, value, target)
            return 0
        if not self._free:
            return -errno.E2BIG
        slot = self._free.pop()
        self._init_value(slot, value, target)
        self._link(key, slot)
        return 0

    def _update_lru(self, key: bytes, value: bytes, flags: int, cpu: int) -> int:
        """``htab_lru_map_update_elem``: EINVAL for flags beyond BPF_EXIST; a node is taken first
        (evicting if none is free, even if the update then fails), filled, and only then are the
        flags checked (a failure returns the node to the free list); a replaced element's node
        is freed."""
        if flags > BPF_EXIST:
            return -errno.EINVAL
        slot = self._lru_pop(cpu)
        self._init_value(slot, value, None)
        old = self._slot.get(key)
        err = _check_update_flags(flags, old is not None)
        if err:
            self._free.append(slot)
            return err
        if old is not None:
            self._free.append(self._unlink(key))
        self._link(key, slot)
        return 0

    def _update_lru_percpu(self, key: bytes, value: bytes, flags: int, cpu: int, onallcpus: bool) -> int:
        """``__htab_lru_percpu_map_update_elem``: as the LRU map, but no node is taken for
        BPF_EXIST and an existing element is updated in place (and marked)."""
        if flags > BPF_EXIST:
            return -errno.EINVAL
        slot = self._lru_pop(cpu) if flags != BPF_EXIST else None
        old = self._slot.get(key)
        err = _check_update_flags(flags, old is not None)
        target = None if onallcpus else cpu
        if err or old is not None:
            if slot is not None:
                self._free.append(slot)
            if err:
                return err
            assert old is not None
            self._recent.move_to_end(key)
            self._store(old, value, target)
            return 0
        assert slot is not None
        self._init_value(slot, value, target)
        self._link(key, slot)
        return 0

    def delete(self, key: bytes, cpu: int = 0) -> int:
        """``htab_map_delete_elem``: ENOENT for a missing key; the slot goes back to the free list."""
        key = self._key(key)
        if key not in self._slot:
            return -errno.ENOENT
        self._free.append(self._unlink(key))
        return 0

    # --- syscall side -------------------------------------------------------------------------

    def _sys_lookup(self, key: bytes) -> bytes:
        """ENOENT for a missing key; does not touch LRU recency."""
        slot = self._slot.get(self._key(key))
        if slot is None:
            _fail(errno.ENOENT, f"{self.label}: no key {key.hex()}")
        return self._load(slot)

    def _sys_update(self, key: bytes, value: bytes, flags: int) -> None:
        err = self._update(key, value, flags, 0, onallcpus=True)
        if err:
            _fail(-err, f"{self.label}: update of key {key.hex()} with flags {flags}")

    def _sys_delete(self, key: bytes) -> None:
        err = self.delete(key)
        if err:
            _fail(-err, f"{self.label}: no key {key.hex()}")

    def _sys_get_next_key(self, key: bytes | None) -> bytes:
        """``htab_map_get_next_key``: next in the bucket, else the head of the next non-empty
        bucket; a missing (or no) key restarts from the first element; ENOENT at the end."""
        start = 0
        if key is not None and self._key(key) in self._slot:
            b = self._bucket(key)
            chain = self._buckets[b]
            pos = chain.index(key)
            if pos + 1 < len(chain):
                return chain[pos + 1]
            start = b + 1
        i = bisect.bisect_left(self._nonempty, start)
        if i == len(self._nonempty):
            _fail(errno.ENOENT, f"{self.label}: no more keys")
        return self._buckets[self._nonempty[i]][0]

    def __len__(self) -> int:
        return len(self._slot)

    def snapshot(self) -> dict[str, Any]:
        """Every element, sorted by key."""
        return {**super().snapshot(),
                "entries": {k.hex(): self._load(self._slot[k]).hex() for k in sorted(self._slot)}}


class PercpuHashMap(HashMap):
    """``BPF_MAP_TYPE_PERCPU_HASH``."""

    percpu = True


class LruHashMap(HashMap):
    """``BPF_MAP_TYPE_LRU_HASH``: an update on a full map evicts (see :meth:`HashMap._lru_pop`)."""

    lru = True


class LruPercpuHashMap(HashMap):
    """``BPF_MAP_TYPE_LRU_PERCPU_HASH``."""

    lru = True
    percpu = True


class ProgArrayMap(BpfMap):
    """``BPF_MAP_TYPE_PROG_ARRAY`` (arraymap.c ``prog_array_map_ops``): slots hold programs.

    From user space, values are program fds (resolved by ``prog_resolver``) and a lookup returns
    the program id (``prog_fd_array_sys_lookup_elem``). Programs may only use the map with
    ``bpf_tail_call`` (verifier.c ``check_map_func_compatibility``); a program lookup gives NULL
    here (the kernel's ``fd_array_map_lookup_elem`` would return ERR_PTR(-EOPNOTSUPP)) and update
    or delete EINVAL. The program-type compatibility check (``bpf_prog_map_compatible``) is left
    to the caller.
    """

    def __init__(self, spec: MapSpec, memory: Memory, index: int, *, ncpus: int = 1,
                 env: Environment | None = None, prog_resolver: ProgResolver | None = None) -> None:
        super().__init__(spec, memory, index, ncpus=ncpus, env=env)
        self.slots: list[ProgRef | None] = [None] * spec.max_entries
        self.prog_resolver = prog_resolver

    @property
    def sys_value_size(self) -> int:
        return 4

    def get(self, index: int) -> ProgRef | None:
        """The program in slot ``index`` (None if empty or out of range), for bpf_tail_call."""
        return self.slots[index] if 0 <= index < self.max_entries else None

    def program_at(self, index: int) -> str | None:
        """The name of the program in slot ``index``, None if empty or out of range."""
        prog = self.get(index)
        return prog.name if prog is not None else None

    def set(self, index: int, prog: ProgRef | str | None) -> None:
        """Fill (with a program or its name) or empty a slot directly, as a successful syscall
        update or delete would."""
        if not 0 <= index < self.max_entries:
            _fail(errno.E2BIG, f"{self.label}: index {index} >= max_entries {self.max_entries}")
        self.slots[index] = ProgRef(prog) if isinstance(prog, str) else prog

    def _sys_lookup(self, key: bytes) -> bytes:
        """``bpf_fd_array_map_lookup_elem``: the program id, ENOENT for an empty slot or one past
        the end."""
        prog = self.get(int.from_bytes(self._key(key), "little"))
        if prog is None:
            _fail(errno.ENOENT, f"{self.label}: slot {key.hex()} is empty")
        return prog.id.to_bytes(4, "little")

    def _sys_update(self, key: bytes, value: bytes, flags: int) -> None:
        """``bpf_fd_array_map_update_elem``: EINVAL unless BPF_ANY, E2BIG past the end, then the fd
        must be a program (EBADF if it is no fd at all)."""
        i = int.from_bytes(key, "little")
        if flags != BPF_ANY:
            _fail(errno.EINVAL, f"{self.label}: fd arrays only take BPF_ANY")
        if i >= self.max_entries:
            _fail(errno.E2BIG, f"{self.label}: index {i} >= max_entries {self.max_entries}")
        fd = int.from_bytes(value, "little")
        prog = self.prog_resolver(fd) if self.prog_resolver else None
        if prog is None:
            _fail(errno.EBADF, f"{self.label}: fd {fd} is not a program")
        self.slots[i] = prog

    def _sys_delete(self, key: bytes) -> None:
        """``fd_array_map_delete_elem``: E2BIG past the end, ENOENT for an empty slot."""
        i = int.from_bytes(self._key(key), "little")
        if i >= self.max_entries:
            _fail(errno.E2BIG, f"{self.label}: index {i} >= max_entries {self.max_entries}")
        if self.slots[i] is None:
            _fail(errno.ENOENT, f"{self.label}: slot {i} is empty")
        self.slots[i] = None

    def _sys_get_next_key(self, key: bytes | None) -> bytes:
        return _array_next_key(self, key)

    def snapshot(self) -> dict[str, Any]:
        return {**super().snapshot(),
                "slots": {str(i): (p.name or p.id) for i, p in enumerate(self.slots) if p is not None}}


def _array_next_key(m: BpfMap, key: bytes | None) -> bytes:
    """``array_map_get_next_key`` for the fd arrays."""
    i = 0xFFFF_FFFF if key is None else int.from_bytes(m._key(key), "little")
    if i >= m.max_entries:
        return bytes(4)
    if i == m.max_entries - 1:
        _fail(errno.ENOENT, f"{m.label}: no key after the last index")
    return (i + 1).to_bytes(4, "little")


class PerfEventArrayMap(BpfMap):
    """``BPF_MAP_TYPE_PERF_EVENT_ARRAY``, as libbpf's perf buffer sets it up: slot ``i`` holds a
    ``PERF_COUNT_SW_BPF_OUTPUT`` event bound to CPU ``i`` for every CPU (``open_event`` and
    ``close_event`` change that). ``bpf_perf_event_output`` appends ``(cpu, data)`` to
    ``env.perf_events``; see :meth:`output`. Perf event fds are not modelled on the syscall side.
    """

    def __init__(self, spec: MapSpec, memory: Memory, index: int, *, ncpus: int = 1,
                 env: Environment | None = None) -> None:
        super().__init__(spec, memory, index, ncpus=ncpus, env=env)
        self.events: list[int | None] = [i if i < ncpus else None for i in range(spec.max_entries)]

    @property
    def sys_value_size(self) -> int:
        return 4

    def open_event(self, index: int, cpu: int) -> None:
        self.events[index] = self._cpu(cpu)

    def close_event(self, index: int) -> None:
        self.events[index] = None

    def output(self, flags: int, data: bytes, cpu: int) -> int:
        """kernel/trace/bpf_trace.c ``bpf_perf_event_output`` / ``__bpf_perf_event_output``:
        EINVAL for flags outside BPF_F_INDEX_MASK; index BPF_F_CURRENT_CPU means ``cpu``; E2BIG
        past the end; ENOENT for an empty slot; EOPNOTSUPP when the slot's event is bound to
        another CPU (``event->oncpu != cpu``)."""
        if flags & ~0xFFFF_FFFF:
            return -errno.EINVAL
        index = flags & 0xFFFF_FFFF
        if index == 0xFFFF_FFFF:
            index = cpu
        if index >= self.max_entries:
            return -errno.E2BIG
        event_cpu = self.events[index]
        if event_cpu is None:
            return -errno.ENOENT
        if event_cpu != cpu:
            return -errno.EOPNOTSUPP
        if self.env is not None:
            self.env.perf_events.append((cpu, bytes(data)))
        return 0

    def _sys_lookup(self, key: bytes) -> bytes:
        """No ``map_fd_sys_lookup_elem``: ENOTSUPP for every key (measured on 6.18)."""
        self._key(key)
        _fail(ENOTSUPP, f"{self.label}: perf event arrays cannot be read")

    def _sys_update(self, key: bytes, value: bytes, flags: int) -> None:
        _fail(errno.EBADF, f"{self.label}: perf event fds are not modelled; use open_event()")

    def _sys_delete(self, key: bytes) -> None:
        i = int.from_bytes(self._key(key), "little")
        if i >= self.max_entries:
            _fail(errno.E2BIG, f"{self.label}: index {i} >= max_entries {self.max_entries}")
        if self.events[i] is None:
            _fail(errno.ENOENT, f"{self.label}: slot {i} is empty")
        self.events[i] = None

    def _sys_get_next_key(self, key: bytes | None) -> bytes:
        return _array_next_key(self, key)

    def snapshot(self) -> dict[str, Any]:
        events = {str(i): c for i, c in enumerate(self.events) if c is not None}
        return {**super().snapshot(), "events": events}


def _meta_equal(template: MapSpec, inner: BpfMap) -> bool:
    """map_in_map.c ``bpf_map_meta_equal`` (type, key and value size, flags without the fd-only
    BPF_F_RDONLY/BPF_F_WRONLY) and arraymap.c ``array_map_meta_equal`` (arrays also compare
    max_entries unless the template has BPF_F_INNER_MAP)."""
    kept = ~(BPF_F_RDONLY | BPF_F_WRONLY)
    same = (template.type == inner.type and template.key_size == inner.key_size
            and template.value_size == inner.value_size and template.flags & kept == inner.flags & kept)
    if same and template.type == MapType.ARRAY and not template.flags & BPF_F_INNER_MAP:
        same = template.max_entries == inner.max_entries
    return same


class _MapOfMapsMixin:
    """Resolving and checking inner map fds for ARRAY_OF_MAPS and HASH_OF_MAPS."""

    spec: MapSpec
    label: str
    map_resolver: MapResolver | None

    def _inner_from_fd(self, value: bytes) -> BpfMap:
        """``bpf_map_fd_get_ptr``: EBADF for no map fd, EINVAL unless it matches the template."""
        fd = int.from_bytes(value, "little")
        inner = self.map_resolver(fd) if self.map_resolver else None
        if inner is None:
            _fail(errno.EBADF, f"{self.label}: fd {fd} is not a map")
        assert self.spec.inner_map is not None
        if not _meta_equal(self.spec.inner_map, inner):
            _fail(errno.EINVAL, f"{self.label}: map {inner.label} does not match the inner map template")
        return inner


class ArrayOfMapsMap(_MapOfMapsMixin, BpfMap):
    """``BPF_MAP_TYPE_ARRAY_OF_MAPS``: slots hold maps; a program lookup returns the inner map's
    handle (``array_of_map_lookup_elem``), NULL for an empty slot; a syscall lookup returns the
    inner map's id (``bpf_map_fd_sys_lookup_elem``)."""

    def __init__(self, spec: MapSpec, memory: Memory, index: int, *, ncpus: int = 1,
                 env: Environment | None = None, map_resolver: MapResolver | None = None) -> None:
        super().__init__(spec, memory, index, ncpus=ncpus, env=env)
        self.slots: list[BpfMap | None] = [None] * spec.max_entries
        self.map_resolver = map_resolver

    @property
    def sys_value_size(self) -> int:
        return 4

    def get(self, index: int) -> BpfMap | None:
        return self.slots[index] if 0 <= index < self.max_entries else None

    def set(self, index: int, inner: BpfMap | None) -> None:
        """Fill or empty a slot directly; the inner map must match the template (EINVAL)."""
        if not 0 <= index < self.max_entries:
            _fail(errno.E2BIG, f"{self.label}: index {index} >= max_entries {self.max_entries}")
        assert self.spec.inner_map is not None
        if inner is not None and not _meta_equal(self.spec.inner_map, inner):
            _fail(errno.EINVAL, f"{self.label}: map {inner.label} does not match the inner map template")
        self.slots[index] = inner

    def set_inner(self, key: bytes, inner: BpfMap) -> None:
        """:meth:`set` with the key as bytes (the same call as for a hash of maps)."""
        self.set(int.from_bytes(self._key(key), "little"), inner)

    def lookup(self, key: bytes, cpu: int = 0) -> int | None:
        inner = self.get(int.from_bytes(self._key(key), "little"))
        return inner.handle if inner is not None else None

    def _sys_lookup(self, key: bytes) -> bytes:
        inner = self.get(int.from_bytes(self._key(key), "little"))
        if inner is None:
            _fail(errno.ENOENT, f"{self.label}: slot {key.hex()} is empty")
        return inner.id.to_bytes(4, "little")

    def _sys_update(self, key: bytes, value: bytes, flags: int) -> None:
        """``bpf_fd_array_map_update_elem``: EINVAL unless BPF_ANY, E2BIG past the end, then the
        fd checks."""
        i = int.from_bytes(key, "little")
        if flags != BPF_ANY:
            _fail(errno.EINVAL, f"{self.label}: fd arrays only take BPF_ANY")
        if i >= self.max_entries:
            _fail(errno.E2BIG, f"{self.label}: index {i} >= max_entries {self.max_entries}")
        self.slots[i] = self._inner_from_fd(value)

    def _sys_delete(self, key: bytes) -> None:
        i = int.from_bytes(self._key(key), "little")
        if i >= self.max_entries:
            _fail(errno.E2BIG, f"{self.label}: index {i} >= max_entries {self.max_entries}")
        if self.slots[i] is None:
            _fail(errno.ENOENT, f"{self.label}: slot {i} is empty")
        self.slots[i] = None

    def _sys_get_next_key(self, key: bytes | None) -> bytes:
        return _array_next_key(self, key)

    def snapshot(self) -> dict[str, Any]:
        return {**super().snapshot(),
                "slots": {str(i): m.name or m.label for i, m in enumerate(self.slots) if m is not None}}


class HashOfMapsMap(_MapOfMapsMixin, HashMap):
    """``BPF_MAP_TYPE_HASH_OF_MAPS``: a hash map (same flags, order and E2BIG rules) whose values
    are maps; inner maps need not have the template's max_entries (``bpf_map_meta_equal``)."""

    def __init__(self, spec: MapSpec, memory: Memory, index: int, *, ncpus: int = 1,
                 env: Environment | None = None, map_resolver: MapResolver | None = None) -> None:
        self._inner: dict[int, BpfMap] = {}
        super().__init__(spec, memory, index, ncpus=ncpus, env=env)
        self.map_resolver = map_resolver
        self._pending: BpfMap | None = None

    def _make_regions(self) -> list[Region]:
        return []

    @property
    def sys_value_size(self) -> int:
        return 4

    def _store(self, slot: int, value: bytes, cpu: int | None) -> None:
        assert self._pending is not None
        self._inner[slot] = self._pending

    def _load(self, slot: int) -> bytes:
        return self._inner[slot].id.to_bytes(4, "little")

    def lookup(self, key: bytes, cpu: int = 0) -> int | None:
        slot = self._slot.get(self._key(key))
        return self._inner[slot].handle if slot is not None else None

    def update(self, key: bytes, value: bytes, flags: int = BPF_ANY, cpu: int = 0) -> int:
        """Programs cannot update a map-in-map (verifier); the kernel has no such op: EINVAL."""
        return -errno.EINVAL

    def delete(self, key: bytes, cpu: int = 0) -> int:
        """Programs cannot delete from a map-in-map (verifier): EINVAL."""
        return -errno.EINVAL

    def set(self, key: bytes, inner: BpfMap, flags: int = BPF_ANY) -> None:
        """``bpf_fd_htab_map_update_elem`` with a map instead of its fd."""
        assert self.spec.inner_map is not None
        if not _meta_equal(self.spec.inner_map, inner):
            _fail(errno.EINVAL, f"{self.label}: map {inner.label} does not match the inner map template")
        self._set(self._key(key), inner, flags)

    set_inner = set

    def _set(self, key: bytes, inner: BpfMap, flags: int) -> None:
        self._pending = inner
        try:
            err = self._update_plain(key, bytes(4), flags, 0)
        finally:
            self._pending = None
        if err:
            _fail(-err, f"{self.label}: update of key {key.hex()} with flags {flags}")

    def _sys_update(self, key: bytes, value: bytes, flags: int) -> None:
        self._set(key, self._inner_from_fd(value), flags)

    def _sys_delete(self, key: bytes) -> None:
        key = self._key(key)
        if key not in self._slot:
            _fail(errno.ENOENT, f"{self.label}: no key {key.hex()}")
        self._free.append(self._unlink(key))

    def snapshot(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.spec.type_name,
                "entries": {k.hex(): self._inner[self._slot[k]].name or self._inner[self._slot[k]].label
                            for k in sorted(self._slot)}}


class CgroupStorageMap(BpfMap):
    """``BPF_MAP_TYPE_CGROUP_STORAGE`` (local_storage.c), kept simple.

    A storage exists per program attachment: :meth:`attach` links one for ``(cgroup inode id,
    attach type)`` (``bpf_cgroup_storage_link``; with an 8-byte key, attach types of one cgroup
    share it) and makes it the *current* one, the storage ``bpf_get_local_storage`` returns.
    If nothing was attached when a program asks, a storage for ``(0, 0)`` is attached then
    (the kernel's TEST_RUN gives the program an unlinked storage that user space cannot see).
    ``get_next_key`` lists storages newest first (``list_add`` to the map's list). A syscall
    update replaces the bytes in place, where the kernel swaps in a new buffer.
    """

    def __init__(self, spec: MapSpec, memory: Memory, index: int, *, ncpus: int = 1,
                 env: Environment | None = None) -> None:
        super().__init__(spec, memory, index, ncpus=ncpus, env=env)
        self.elem_size = _round8(spec.value_size)
        self._slot: dict[bytes, int] = {}
        self._order: list[bytes] = []  # newest first
        self.current: bytes | None = None
        self._values = bytearray()
        self.region = memory.add(Region(f"{self.label}.values", self.values_base(0), self._values))

    def storage_key(self, cgroup_inode_id: int, attach_type: int = 0) -> bytes:
        """``struct bpf_cgroup_storage_key {u64 cgroup_inode_id; u32 attach_type;}`` (16 bytes with
        padding) or, for an 8-byte key, the cgroup id alone."""
        if self.key_size == 8:
            return struct.pack("<Q", cgroup_inode_id)
        return struct.pack("<QI4x", cgroup_inode_id, attach_type)

    def attach(self, cgroup_inode_id: int = 0, attach_type: int = 0, *, current: bool = True) -> bytes:
        """Link a zero-filled storage for this attachment (reusing an existing one for the same
        key) and, with ``current``, make it the one programs get. Returns its key."""
        key = self.storage_key(cgroup_inode_id, attach_type)
        if key not in self._slot:
            slot = len(self._slot)
            self._values.extend(bytes(self.elem_size))
            self._slot[key] = slot
            self._order.insert(0, key)
        if current:
            self.current = key
        return key

    def local_storage(self, cpu: int = 0) -> int:
        """``bpf_get_local_storage``: the address of the current attachment's storage."""
        if self.current is None:
            self.attach()
        assert self.current is not None
        return self.region.start + self._slot[self.current] * self.elem_size

    def _key(self, key: bytes) -> bytes:
        """Keys compare by their fields only (``bpf_cgroup_storage_key_cmp``), not the padding."""
        key = super()._key(key)
        if self.key_size == 16:
            cgroup_inode_id, attach_type = struct.unpack_from("<QI", key)
            return self.storage_key(cgroup_inode_id, attach_type)
        return key

    def _value_of(self, key: bytes) -> bytes:
        off = self._slot[key] * self.elem_size
        return bytes(self.region.data[off:off + self.value_size])

    def _sys_lookup(self, key: bytes) -> bytes:
        key = self._key(key)
        if key not in self._slot:
            _fail(errno.ENOENT, f"{self.label}: no storage for key {key.hex()}")
        return self._value_of(key)

    def _sys_update(self, key: bytes, value: bytes, flags: int) -> None:
        """``cgroup_storage_update_elem``: EINVAL for flags other than BPF_ANY/BPF_EXIST (so
        BPF_NOEXIST too), ENOENT for a key nobody attached."""
        if flags & ~(BPF_F_LOCK | BPF_EXIST):
            _fail(errno.EINVAL, f"{self.label}: cgroup storage takes BPF_ANY or BPF_EXIST")
        if key not in self._slot:
            _fail(errno.ENOENT, f"{self.label}: no storage for key {key.hex()}")
        off = self._slot[key] * self.elem_size
        self.region.data[off:off + self.value_size] = value

    def _sys_delete(self, key: bytes) -> None:
        self._key(key)
        _fail(errno.EINVAL, f"{self.label}: cgroup storage cannot be deleted")

    def _sys_get_next_key(self, key: bytes | None) -> bytes:
        """``cgroup_storage_get_next_key``: ENOENT when empty, for a missing key, or after the last."""
        if key is None:
            if not self._order:
                _fail(errno.ENOENT, f"{self.label}: no storage")
            return self._order[0]
        key = self._key(key)
        if key not in self._slot or key == self._order[-1]:
            _fail(errno.ENOENT, f"{self.label}: no key after {key.hex()}")
        return self._order[self._order.index(key) + 1]

    def snapshot(self) -> dict[str, Any]:
        entries = {k.hex(): self._value_of(k).hex() for k in sorted(self._slot)}
        return {**super().snapshot(), "entries": entries}


class RingBufMap(BpfMap):
    """``BPF_MAP_TYPE_RINGBUF``: a :class:`~reference_vm.ringbuf.RingBuffer` whose data area (and
    mirror) start at ``values_base()``. Element operations are ENOTSUPP on both faces
    (``ringbuf_map_lookup_elem`` and friends); programs use the ringbuf helpers."""

    def __init__(self, spec: MapSpec, memory: Memory, index: int, *, ncpus: int = 1,
                 env: Environment | None = None) -> None:
        super().__init__(spec, memory, index, ncpus=ncpus, env=env)
        self.rb = RingBuffer(memory, self.values_base(0), spec.max_entries, self.label, self._wakeup)

    def _wakeup(self) -> None:
        if self.env is not None:
            self.env.notifications += 1

    def update(self, key: bytes, value: bytes, flags: int = BPF_ANY, cpu: int = 0) -> int:
        return -ENOTSUPP

    def delete(self, key: bytes, cpu: int = 0) -> int:
        return -ENOTSUPP

    def _sys_lookup(self, key: bytes) -> bytes:
        _fail(ENOTSUPP, f"{self.label}: ring buffers have no elements")

    def _sys_update(self, key: bytes, value: bytes, flags: int) -> None:
        _fail(ENOTSUPP, f"{self.label}: ring buffers have no elements")

    def _sys_delete(self, key: bytes) -> None:
        _fail(ENOTSUPP, f"{self.label}: ring buffers have no elements")

    def _sys_get_next_key(self, key: bytes | None) -> bytes:
        _fail(ENOTSUPP, f"{self.label}: ring buffers have no elements")

    def consume(self, callback: Callable[[bytes], int | None] | None = None,
                limit: int | None = None) -> list[bytes]:
        """libbpf's consumer (:meth:`RingBuffer.consume`)."""
        return self.rb.consume(callback, limit)

    def snapshot(self) -> dict[str, Any]:
        return {**super().snapshot(), **self.rb.snapshot()}


_CLASSES: dict[int, type[BpfMap]] = {
    MapType.HASH: HashMap,
    MapType.ARRAY: ArrayMap,
    MapType.PROG_ARRAY: ProgArrayMap,
    MapType.PERF_EVENT_ARRAY: PerfEventArrayMap,
    MapType.PERCPU_HASH: PercpuHashMap,
    MapType.PERCPU_ARRAY: PercpuArrayMap,
    MapType.LRU_HASH: LruHashMap,
    MapType.LRU_PERCPU_HASH: LruPercpuHashMap,
    MapType.ARRAY_OF_MAPS: ArrayOfMapsMap,
    MapType.HASH_OF_MAPS: HashOfMapsMap,
    MapType.CGROUP_STORAGE: CgroupStorageMap,
    MapType.RINGBUF: RingBufMap,
}


def create_map(spec: MapSpec, env_or_memory: Environment | Memory, index: int, *, ncpus: int | None = None,
               prog_resolver: ProgResolver | None = None, map_resolver: MapResolver | None = None) -> BpfMap:
    """Validate ``spec`` like ``BPF_MAP_CREATE`` (:func:`check_spec`) and create map ``index``
    with its regions in guest memory.

    With an :class:`~reference_vm.env.Environment`, the map uses its memory and CPU count, ring
    buffer wake-ups go to ``env.notifications``, perf events to ``env.perf_events``, and inner
    map fds resolve against ``env.maps`` unless ``map_resolver`` is given. ``prog_resolver``
    turns prog fds into :class:`ProgRef` for prog array updates. The caller appends the map to
    ``env.maps`` (or uses :func:`add_map`).
    """
    env: Environment | None
    if isinstance(env_or_memory, Memory):
        memory, env, cpus = env_or_memory, None, ncpus or 1
    else:
        env = env_or_memory
        memory, cpus = env.memory, ncpus or env.ncpus
        if map_resolver is None:
            env_maps = env.maps
            map_resolver = lambda fd: next((m for m in env_maps if m.fd == fd), None)
    if not 0 <= index < MAX_MAPS:
        _fail(errno.E2BIG, f"map index {index}: a program uses at most {MAX_MAPS} maps")
    if not 1 <= cpus <= MAX_CPUS:
        _fail(errno.EINVAL, f"{cpus} CPUs: bpfcheck models 1 to {MAX_CPUS}")
    check_spec(spec, cpus)
    cls = _CLASSES[spec.type]
    if cls is ProgArrayMap:
        return ProgArrayMap(spec, memory, index, ncpus=cpus, env=env, prog_resolver=prog_resolver)
    if cls is ArrayOfMapsMap:
        return ArrayOfMapsMap(spec, memory, index, ncpus=cpus, env=env, map_resolver=map_resolver)
    if cls is HashOfMapsMap:
        return HashOfMapsMap(spec, memory, index, ncpus=cpus, env=env, map_resolver=map_resolver)
    return cls(spec, memory, index, ncpus=cpus, env=env)


def add_map(env: Environment, spec: MapSpec, **kwargs: Any) -> BpfMap:
    """Create the next map of ``env`` (index ``len(env.maps)``) and append it."""
    m = create_map(spec, env, len(env.maps), **kwargs)
    env.maps.append(m)
    return m
