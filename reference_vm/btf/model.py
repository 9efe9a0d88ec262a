"""The BTF data model: constants, one frozen dataclass per kind, the string table, encoding.

Layouts are those of ``include/uapi/linux/btf.h`` (kernel-oracle.md §8): a 24-byte header
``<HBBIIIII>`` (magic, version, flags, hdr_len, type_off, type_len, str_off, str_len), then
types, each ``{u32 name_off; u32 info; u32 size|type}`` plus kind-specific data, then a string
section that starts with "" and whose strings are NUL-terminated. Type ids start at 1; id 0
is ``void``. Everything is little-endian.

The model describes *valid* BTF only: names are strings (the string table is rebuilt on
encoding) and ids refer to other entries of ``Btf.types``. Deliberately broken records are
built with :class:`RawType` (builder only, never produced by :func:`reference_vm.btf.parse`).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import IntEnum
from typing import ClassVar

BTF_MAGIC = 0xEB9F
BTF_VERSION = 1
BTF_HDR_LEN = 24
BTF_MAX_SIZE = 16 * 1024 * 1024  # kernel/bpf/btf.c BTF_MAX_SIZE
BTF_MAX_TYPE = 0x000FFFFF
BTF_MAX_NAME_OFFSET = 0x00FFFFFF
BTF_MAX_VLEN = 0xFFFF
HDR_FORMAT = "<HBBIIIII"


class Kind(IntEnum):
    """BTF_KIND_* (include/uapi/linux/btf.h); the kernel's log names are the member names."""

    UNKN = 0
    INT = 1
    PTR = 2
    ARRAY = 3
    STRUCT = 4
    UNION = 5
    ENUM = 6
    FWD = 7
    TYPEDEF = 8
    VOLATILE = 9
    CONST = 10
    RESTRICT = 11
    FUNC = 12
    FUNC_PROTO = 13
    VAR = 14
    DATASEC = 15
    FLOAT = 16
    DECL_TAG = 17
    TYPE_TAG = 18
    ENUM64 = 19


KIND_MAX = Kind.ENUM64
#: Log spelling of each kind (kernel/bpf/btf.c ``btf_kind_str``).
KIND_STR = {k: ("UNKNOWN" if k is Kind.UNKN else k.name) for k in Kind}

# INT encoding bits (BTF_INT_ENCODING) and their log spelling (btf_int_encoding_str).
INT_SIGNED, INT_CHAR, INT_BOOL = 1, 2, 4
# FUNC linkage (vlen of a FUNC) and VAR linkage.
FUNC_STATIC, FUNC_GLOBAL, FUNC_EXTERN = 0, 1, 2
VAR_STATIC, VAR_GLOBAL_ALLOCATED, VAR_GLOBAL_EXTERN = 0, 1, 2


def info_word(kind: int, vlen: int = 0, kflag: bool | int = False) -> int:
    """``info`` = kind_flag << 31 | kind << 24 | vlen (BTF_INFO_ENC)."""
    return (int(bool(kflag)) << 31) | ((kind & 0x1F) << 24) | (vlen & 0xFFFF)


def int_word(bits: int, offset: int = 0, encoding: int = 0) -> int:
    """The u32 after an INT: encoding << 24 | offset << 16 | bits (BTF_INT_ENC)."""
    return ((encoding & 0xF) << 24) | ((offset & 0xFF) << 16) | (bits & 0xFF)


# --- Kinds --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Int:
    """BTF_KIND_INT: ``size`` bytes holding ``bits`` bits at bit ``offset``."""

    name: str
    size: int
    bits: int
    offset: int = 0
    encoding: int = 0
    kind: ClassVar[Kind] = Kind.INT

    @property
    def signed(self) -> bool:
        return bool(self.encoding & INT_SIGNED)


@dataclass(frozen=True)
class Ptr:
    type: int
    kind: ClassVar[Kind] = Kind.PTR


@dataclass(frozen=True)
class Array:
    type: int
    index_type: int
    nelems: int
    kind: ClassVar[Kind] = Kind.ARRAY


@dataclass(frozen=True)
class Member:
    """A struct/union member; ``bitfield_size`` needs the owner's kind_flag."""

    name: str
    type: int
    bit_offset: int
    bitfield_size: int = 0


@dataclass(frozen=True)
class Struct:
    name: str
    size: int
    members: tuple[Member, ...] = ()
    kflag: bool = False
    kind: ClassVar[Kind] = Kind.STRUCT


@dataclass(frozen=True)
class Union(Struct):
    kind: ClassVar[Kind] = Kind.UNION


@dataclass(frozen=True)
class EnumValue:
    name: str
    value: int


@dataclass(frozen=True)
class Enum:
    """BTF_KIND_ENUM; kind_flag set means the values are signed."""

    name: str
    size: int = 4
    values: tuple[EnumValue, ...] = ()
    signed: bool = False
    kind: ClassVar[Kind] = Kind.ENUM


@dataclass(frozen=True)
class Enum64(Enum):
    size: int = 8
    kind: ClassVar[Kind] = Kind.ENUM64


@dataclass(frozen=True)
class Fwd:
    name: str
    union: bool = False
    kind: ClassVar[Kind] = Kind.FWD


@dataclass(frozen=True)
class Typedef:
    name: str
    type: int
    kind: ClassVar[Kind] = Kind.TYPEDEF


@dataclass(frozen=True)
class Volatile:
    type: int
    kind: ClassVar[Kind] = Kind.VOLATILE


@dataclass(frozen=True)
class Const:
    type: int
    kind: ClassVar[Kind] = Kind.CONST


@dataclass(frozen=True)
class Restrict:
    type: int
    kind: ClassVar[Kind] = Kind.RESTRICT


@dataclass(frozen=True)
class TypeTag:
    name: str
    type: int
    kflag: bool = False
    kind: ClassVar[Kind] = Kind.TYPE_TAG


@dataclass(frozen=True)
class Func:
    name: str
    type: int
    linkage: int = FUNC_STATIC
    kind: ClassVar[Kind] = Kind.FUNC


@dataclass(frozen=True)
class Param:
    name: str
    type: int


@dataclass(frozen=True)
class FuncProto:
    return_type: int
    params: tuple[Param, ...] = ()
    kind: ClassVar[Kind] = Kind.FUNC_PROTO


@dataclass(frozen=True)
class Var:
    name: str
    type: int
    linkage: int = VAR_STATIC
    kind: ClassVar[Kind] = Kind.VAR


@dataclass(frozen=True)
class VarSecinfo:
    type: int
    offset: int
    size: int


@dataclass(frozen=True)
class Datasec:
    name: str
    size: int
    vars: tuple[VarSecinfo, ...] = ()
    kind: ClassVar[Kind] = Kind.DATASEC


@dataclass(frozen=True)
class Float:
    name: str
    size: int
    kind: ClassVar[Kind] = Kind.FLOAT


@dataclass(frozen=True)
class DeclTag:
    name: str
    type: int
    component_idx: int = -1
    kflag: bool = False
    kind: ClassVar[Kind] = Kind.DECL_TAG


@dataclass(frozen=True)
class RawType:
    """A record written as given (for broken blobs): ``name`` is interned unless ``name_off``."""

    info: int
    size_type: int = 0
    extra: bytes = b""
    name: str = ""
    name_off: int | None = None


BtfType = (Int | Ptr | Array | Struct | Union | Enum | Enum64 | Fwd | Typedef | Volatile | Const
           | Restrict | TypeTag | Func | FuncProto | Var | Datasec | Float | DeclTag)
MODIFIERS = (Typedef, Volatile, Const, Restrict, TypeTag)


@dataclass(frozen=True)
class Btf:
    """Parsed, kernel-valid BTF: ``types[i]`` has type id ``i + 1``."""

    types: tuple[BtfType, ...]
    log: str = field(default="", compare=False, repr=False)
    strings: bytes = field(default=b"\0", compare=False, repr=False)

    def __len__(self) -> int:
        return len(self.types)

    def __iter__(self) -> Iterator[BtfType]:
        return iter(self.types)

    def type_by_id(self, type_id: int) -> BtfType | None:
        """The type with this id; None for 0 (void) and for ids out of range."""
        if 1 <= type_id <= len(self.types):
            return self.types[type_id - 1]
        return None

    def find(self, name: str, kind: type | None = None) -> int:
        """The first id whose type has this name (and class), as btf_find_by_name_kind; 0 if none."""
        for i, t in enumerate(self.types, 1):
            if getattr(t, "name", None) == name and (kind is None or type(t) is kind):
                return i
        return 0

    def skip_modifiers(self, type_id: int, *, typedefs: bool = True) -> int:
        """Follow const/volatile/restrict/type_tag (and typedef) links (btf_type_skip_modifiers)."""
        kinds = MODIFIERS if typedefs else (Volatile, Const, Restrict, TypeTag)
        for _ in range(64):
            t = self.type_by_id(type_id)
            if not isinstance(t, kinds):
                return type_id
            type_id = t.type
        return type_id

    def resolve_size(self, type_id: int) -> int:
        """Size in bytes (libbpf btf__resolve_size); -1 when the type has no size."""
        nelems = 1
        for _ in range(64):
            t = self.type_by_id(type_id)
            if isinstance(t, Int | Struct | Enum | Datasec | Float):
                return nelems * t.size
            if isinstance(t, Ptr):
                return nelems * 8
            if isinstance(t, Array):
                nelems *= t.nelems
                type_id = t.type
            elif isinstance(t, (*MODIFIERS, Var)):
                type_id = t.type
            else:
                return -1
        return -1


# --- Strings and encoding -----------------------------------------------------------------


class StringTable:
    """The string section: offset 0 is "", strings are interned once, NUL-terminated."""

    def __init__(self) -> None:
        self._data = bytearray(b"\0")
        self._offsets: dict[bytes, int] = {b"": 0}

    def add(self, s: str | bytes) -> int:
        """Offset of ``s`` (latin-1 for str), appending it if new."""
        raw = s.encode("latin-1") if isinstance(s, str) else bytes(s)
        if raw not in self._offsets:
            self._offsets[raw] = len(self._data)
            self._data += raw + b"\0"
        return self._offsets[raw]

    def add_raw(self, raw: bytes) -> int:
        """Append bytes as they are (no NUL, no interning); returns their offset."""
        off = len(self._data)
        self._data += raw
        return off

    def to_bytes(self) -> bytes:
        return bytes(self._data)


def encode_type(t: BtfType | RawType, strings: StringTable) -> bytes:
    """One type record as the kernel reads it (struct btf_type + kind data)."""
    if isinstance(t, RawType):
        off = strings.add(t.name) if t.name_off is None else t.name_off
        return struct.pack("<III", off, t.info, t.size_type) + t.extra
    k = t.kind
    name = getattr(t, "name", "")
    head = struct.Struct("<III")
    off = strings.add(name)
    if isinstance(t, Int):
        data = int_word(t.bits, t.offset, t.encoding)
        return head.pack(off, info_word(k), t.size) + struct.pack("<I", data)
    if isinstance(t, Ptr | Volatile | Const | Restrict | Typedef):
        return head.pack(off, info_word(k), t.type)
    if isinstance(t, TypeTag):
        return head.pack(off, info_word(k, 0, t.kflag), t.type)
    if isinstance(t, Array):
        return head.pack(0, info_word(k), 0) + struct.pack("<III", t.type, t.index_type, t.nelems)
    if isinstance(t, Struct):
        kflag = t.kflag
        out = [head.pack(off, info_word(k, len(t.members), kflag), t.size)]
        for m in t.members:
            bo = (m.bitfield_size << 24 | (m.bit_offset & 0xFFFFFF)) if kflag else m.bit_offset
            out.append(struct.pack("<III", strings.add(m.name), m.type, bo))
        return b"".join(out)
    if isinstance(t, Enum64):
        out = [head.pack(off, info_word(k, len(t.values), t.signed), t.size)]
        for v in t.values:
            u = v.value & 0xFFFFFFFFFFFFFFFF
            out.append(struct.pack("<III", strings.add(v.name), u & 0xFFFFFFFF, u >> 32))
        return b"".join(out)
    if isinstance(t, Enum):
        out = [head.pack(off, info_word(k, len(t.values), t.signed), t.size)]
        out += [struct.pack("<II", strings.add(v.name), v.value & 0xFFFFFFFF) for v in t.values]
        return b"".join(out)
    if isinstance(t, Fwd):
        return head.pack(off, info_word(k, 0, t.union), 0)
    if isinstance(t, Func):
        return head.pack(off, info_word(k, t.linkage), t.type)
    if isinstance(t, FuncProto):
        out = [head.pack(0, info_word(k, len(t.params)), t.return_type)]
        out += [struct.pack("<II", strings.add(p.name), p.type) for p in t.params]
        return b"".join(out)
    if isinstance(t, Var):
        return head.pack(off, info_word(k), t.type) + struct.pack("<I", t.linkage)
    if isinstance(t, Datasec):
        out = [head.pack(off, info_word(k, len(t.vars)), t.size)]
        out += [struct.pack("<III", v.type, v.offset, v.size) for v in t.vars]
        return b"".join(out)
    if isinstance(t, Float):
        return head.pack(off, info_word(k), t.size)
    if isinstance(t, DeclTag):
        return head.pack(off, info_word(k, 0, t.kflag), t.type) + struct.pack("<i", t.component_idx)
    raise TypeError(f"not a BTF type: {t!r}")


def pack_header(*, type_len: int, str_len: int, magic: int = BTF_MAGIC, version: int = BTF_VERSION,
                flags: int = 0, hdr_len: int = BTF_HDR_LEN, type_off: int = 0,
                str_off: int | None = None) -> bytes:
    """The 24-byte struct btf_header; ``str_off`` defaults to right after the types."""
    if str_off is None:
        str_off = type_off + type_len
    return struct.pack(HDR_FORMAT, magic & 0xFFFF, version & 0xFF, flags & 0xFF, hdr_len & 0xFFFFFFFF,
                       type_off & 0xFFFFFFFF, type_len & 0xFFFFFFFF, str_off & 0xFFFFFFFF,
                       str_len & 0xFFFFFFFF)
