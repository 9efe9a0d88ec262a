"""``BtfBuilder``: assemble BTF from model objects (or raw records) and serialize it.

Ids are handed out in order (the first type is id 1), names are interned in a
:class:`~reference_vm.btf.model.StringTable`. ``to_bytes()`` takes header overrides so that the
corpus can build the deliberately broken blobs of selftests ``raw_tests`` (``hdr_len_delta``,
``type_off_delta``, … there).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from .model import (
    BTF_HDR_LEN,
    BTF_MAGIC,
    BTF_VERSION,
    FUNC_STATIC,
    INT_BOOL,
    INT_CHAR,
    INT_SIGNED,
    VAR_STATIC,
    Array,
    Btf,
    BtfType,
    Const,
    Datasec,
    DeclTag,
    Enum,
    Enum64,
    EnumValue,
    Float,
    Func,
    FuncProto,
    Fwd,
    Int,
    Member,
    Param,
    Ptr,
    RawType,
    Restrict,
    StringTable,
    Struct,
    Typedef,
    TypeTag,
    Union,
    Var,
    VarSecinfo,
    Volatile,
    encode_type,
    pack_header,
)

MemberSpec = Member | tuple[str, int, int] | tuple[str, int, int, int]


class BtfBuilder:
    """Collects types; ``add_*`` return the new type id."""

    def __init__(self) -> None:
        self.types: list[BtfType | RawType] = []
        self.strings = StringTable()

    def add(self, t: BtfType | RawType) -> int:
        self.types.append(t)
        return len(self.types)

    # -- one method per kind -----------------------------------------------------------------

    def add_int(self, name: str, size: int, bits: int | None = None, *, signed: bool = False,
                char: bool = False, bool_: bool = False, offset: int = 0, encoding: int | None = None) -> int:
        """INT of ``size`` bytes (``bits`` defaults to 8 * size)."""
        if encoding is None:
            encoding = (INT_SIGNED if signed else 0) | (INT_CHAR if char else 0) | (INT_BOOL if bool_ else 0)
        return self.add(Int(name, size, size * 8 if bits is None else bits, offset, encoding))

    def add_ptr(self, type_id: int) -> int:
        return self.add(Ptr(type_id))

    def add_array(self, elem_type: int, index_type: int, nelems: int) -> int:
        return self.add(Array(elem_type, index_type, nelems))

    @staticmethod
    def _members(members: Iterable[MemberSpec]) -> tuple[Member, ...]:
        return tuple(m if isinstance(m, Member) else Member(*m) for m in members)

    def add_struct(self, name: str, size: int, members: Iterable[MemberSpec] = (), *,
                   kflag: bool | None = None) -> int:
        """STRUCT; members are (name, type, bit_offset[, bitfield_size]); kind_flag is set when any
        member is a bitfield unless given."""
        ms = self._members(members)
        return self.add(Struct(name, size, ms, any(m.bitfield_size for m in ms) if kflag is None else kflag))

    def add_union(self, name: str, size: int, members: Iterable[MemberSpec] = (), *,
                  kflag: bool | None = None) -> int:
        ms = self._members(members)
        return self.add(Union(name, size, ms, any(m.bitfield_size for m in ms) if kflag is None else kflag))

    def add_enum(self, name: str, values: Iterable[tuple[str, int]] = (), *, size: int = 4,
                 signed: bool = False) -> int:
        return self.add(Enum(name, size, tuple(EnumValue(n, v) for n, v in values), signed))

    def add_enum64(self, name: str, values: Iterable[tuple[str, int]] = (), *, size: int = 8,
                   signed: bool = False) -> int:
        return self.add(Enum64(name, size, tuple(EnumValue(n, v) for n, v in values), signed))

    def add_fwd(self, name: str, *, union: bool = False) -> int:
        return self.add(Fwd(name, union))

    def add_typedef(self, name: str, type_id: int) -> int:
        return self.add(Typedef(name, type_id))

    def add_volatile(self, type_id: int) -> int:
        return self.add(Volatile(type_id))

    def add_const(self, type_id: int) -> int:
        return self.add(Const(type_id))

    def add_restrict(self, type_id: int) -> int:
        return self.add(Restrict(type_id))

    def add_type_tag(self, value: str, type_id: int, *, kflag: bool = False) -> int:
        return self.add(TypeTag(value, type_id, kflag))

    def add_func(self, name: str, proto_id: int, linkage: int = FUNC_STATIC) -> int:
        return self.add(Func(name, proto_id, linkage))

    def add_func_proto(self, return_type: int, params: Iterable[tuple[str, int] | Param] = ()) -> int:
        ps = tuple(p if isinstance(p, Param) else Param(*p) for p in params)
        return self.add(FuncProto(return_type, ps))

    def add_var(self, name: str, type_id: int, linkage: int = VAR_STATIC) -> int:
        return self.add(Var(name, type_id, linkage))

    def add_datasec(self, name: str, size: int,
                    vars: Iterable[tuple[int, int, int] | VarSecinfo] = ()) -> int:
        vs = tuple(v if isinstance(v, VarSecinfo) else VarSecinfo(*v) for v in vars)
        return self.add(Datasec(name, size, vs))

    def add_float(self, name: str, size: int) -> int:
        return self.add(Float(name, size))

    def add_decl_tag(self, value: str, type_id: int, component_idx: int = -1, *, kflag: bool = False) -> int:
        return self.add(DeclTag(value, type_id, component_idx, kflag))

    def add_raw(self, info: int, size_type: int = 0, extra: bytes | Sequence[int] = b"", *,
                name: str = "", name_off: int | None = None) -> int:
        """A record written as given; ``extra`` is bytes or a list of u32 words."""
        if not isinstance(extra, bytes | bytearray):
            extra = b"".join((w & 0xFFFFFFFF).to_bytes(4, "little") for w in extra)
        return self.add(RawType(info, size_type, bytes(extra), name, name_off))

    # -- output ------------------------------------------------------------------------------

    def build(self) -> Btf:
        """The model (fails on raw records, which have no model form)."""
        if any(isinstance(t, RawType) for t in self.types):
            raise TypeError("raw records have no model form; use to_bytes()")
        self.type_section()  # intern every name
        types = tuple(t for t in self.types if not isinstance(t, RawType))
        return Btf(types, strings=self.strings.to_bytes())

    def type_section(self) -> bytes:
        """Encode every type (interning names as it goes)."""
        return b"".join(encode_type(t, self.strings) for t in self.types)

    def to_bytes(self, *, magic: int = BTF_MAGIC, version: int = BTF_VERSION, flags: int = 0,
                 hdr_len: int | None = None, hdr_extra: bytes = b"", type_off: int | None = None,
                 type_len: int | None = None, str_off: int | None = None, str_len: int | None = None,
                 strings: bytes | None = None, gap: bytes = b"", trailer: bytes = b"",
                 strings_first: bool = False) -> bytes:
        """Header + types + strings. Overrides change the header fields only (the data layout stays
        header, [``hdr_extra``], types, [``gap``], strings, [``trailer``]); ``strings`` replaces the
        string section; ``strings_first`` swaps the two sections."""
        types = self.type_section()
        strs = self.strings.to_bytes() if strings is None else strings
        first, second = (strs, types) if strings_first else (types, strs)
        t_off_default = len(first) + len(gap) if strings_first else 0
        s_off_default = 0 if strings_first else len(types) + len(gap)
        header = pack_header(
            magic=magic, version=version, flags=flags,
            hdr_len=BTF_HDR_LEN + len(hdr_extra) if hdr_len is None else hdr_len,
            type_off=t_off_default if type_off is None else type_off,
            type_len=len(types) if type_len is None else type_len,
            str_off=s_off_default if str_off is None else str_off,
            str_len=len(strs) if str_len is None else str_len)
        return header + hdr_extra + first + gap + second + trailer
