"""The declarative type lists of ``corpora/btf/*.yaml`` turned into blobs (docs/btf-cases.md).

A case holds either ``raw_hex`` (the whole blob) or ``types`` (a list of entries, one per type,
in id order) plus optional ``strings`` (interned first, so their offsets are known), ``header``
(overrides and ``*_delta`` adjustments of the header fields, as selftests ``raw_tests`` do) and
``layout`` (``strings_hex`` replacing the string section, ``gap_hex``, ``trailer_hex``,
``hdr_extra_hex``, ``strings_first``, ``truncate``).

Type entries name their kind (``kind: STRUCT``) and the fields of the model class; lists stand
for members ``[name, type, bit_offset, bitfield_size?]``, enum values ``[name, value]``, params
``[name, type]`` and datasec vars ``[type, offset, size]``. Any entry may override the encoded
record: ``name_off``, ``info``, ``vlen``, ``kflag``, ``size_type``, ``truncate`` (drop bytes
from its end), ``append`` (u32 words). ``{raw: [words]}`` writes words as they are, a string
word being replaced by its offset in the string table (``NAME_TBD`` in selftests).
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Any

from reference_vm.errors import CaseFormatError

from .model import (
    INT_BOOL,
    INT_CHAR,
    INT_SIGNED,
    Array,
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
    Kind,
    Member,
    Param,
    Ptr,
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
)

_ENCODINGS = {"SIGNED": INT_SIGNED, "CHAR": INT_CHAR, "BOOL": INT_BOOL, "NONE": 0}
_LAYOUT = {"strings_hex", "gap_hex", "trailer_hex", "hdr_extra_hex", "strings_first", "truncate"}
_HEADER_KEYS = ("magic", "version", "flags", "hdr_len", "type_off", "type_len", "str_off", "str_len")


def _kind(entry: Mapping[str, Any]) -> Kind:
    k = entry.get("kind")
    try:
        return Kind[str(k).upper()]
    except KeyError:
        raise CaseFormatError(f"unknown BTF kind {k!r}") from None


def model_from_entry(entry: Mapping[str, Any]) -> BtfType:
    """The model object an entry describes (without the record overrides)."""
    k = _kind(entry)
    name = str(entry.get("name", ""))
    ty = int(entry.get("type", 0))
    if k == Kind.INT:
        enc = entry.get("encoding", 0)
        enc = _ENCODINGS[enc.upper()] if isinstance(enc, str) else int(enc)
        size = int(entry["size"])
        return Int(name, size, int(entry.get("bits", 8 * size)), int(entry.get("offset", 0)), enc)
    if k == Kind.PTR:
        return Ptr(ty)
    if k == Kind.ARRAY:
        return Array(ty, int(entry.get("index_type", 0)), int(entry.get("nelems", 0)))
    if k in (Kind.STRUCT, Kind.UNION):
        members = tuple(Member(str(m[0]), int(m[1]), int(m[2]), int(m[3]) if len(m) > 3 else 0)
                        for m in entry.get("members", ()))
        kflag = bool(entry.get("kflag", any(m.bitfield_size for m in members)))
        return (Struct if k == Kind.STRUCT else Union)(name, int(entry.get("size", 0)), members, kflag)
    if k in (Kind.ENUM, Kind.ENUM64):
        vals = tuple(EnumValue(str(n), int(v)) for n, v in entry.get("values", ()))
        cls = Enum if k == Kind.ENUM else Enum64
        return cls(name, int(entry.get("size", 4 if k == Kind.ENUM else 8)), vals, bool(entry.get("signed")))
    if k == Kind.FWD:
        return Fwd(name, bool(entry.get("union")))
    if k == Kind.TYPEDEF:
        return Typedef(name, ty)
    if k == Kind.VOLATILE:
        return Volatile(ty)
    if k == Kind.CONST:
        return Const(ty)
    if k == Kind.RESTRICT:
        return Restrict(ty)
    if k == Kind.TYPE_TAG:
        return TypeTag(name, ty, bool(entry.get("kflag", False)))
    if k == Kind.FUNC:
        return Func(name, ty, int(entry.get("linkage", 0)))
    if k == Kind.FUNC_PROTO:
        params = tuple(Param(str(n), int(t)) for n, t in entry.get("params", ()))
        return FuncProto(int(entry.get("return_type", ty)), params)
    if k == Kind.VAR:
        return Var(name, ty, int(entry.get("linkage", 0)))
    if k == Kind.DATASEC:
        vs = tuple(VarSecinfo(int(a), int(b), int(c)) for a, b, c in entry.get("vars", ()))
        return Datasec(name, int(entry.get("size", 0)), vs)
    if k == Kind.FLOAT:
        return Float(name, int(entry.get("size", 0)))
    if k == Kind.DECL_TAG:
        return DeclTag(name, ty, int(entry.get("component_idx", -1)), bool(entry.get("kflag", False)))
    raise CaseFormatError(f"kind {k.name} cannot be described declaratively; use raw")


def encode_entry(entry: Mapping[str, Any], strings: StringTable) -> bytes:
    """One type entry as record bytes, record overrides applied."""
    if "raw" in entry:
        words = [strings.add(w) if isinstance(w, str) else int(w) & 0xFFFFFFFF for w in entry["raw"]]
        return b"".join(w.to_bytes(4, "little") for w in words)
    rec = bytearray(encode_type(model_from_entry(entry), strings))
    name_off, info, st = struct.unpack_from("<III", rec)
    if "name_off" in entry:
        name_off = int(entry["name_off"]) & 0xFFFFFFFF
    if "info" in entry:
        info = int(entry["info"]) & 0xFFFFFFFF
    if "vlen" in entry:
        info = (info & ~0xFFFF) | (int(entry["vlen"]) & 0xFFFF)
    if "kflag" in entry:
        info = (info & 0x7FFFFFFF) | (int(bool(entry["kflag"])) << 31)
    if "size_type" in entry:
        st = int(entry["size_type"]) & 0xFFFFFFFF
    struct.pack_into("<III", rec, 0, name_off, info, st)
    rec += b"".join((int(w) & 0xFFFFFFFF).to_bytes(4, "little") for w in entry.get("append", ()))
    cut = int(entry.get("truncate", 0))
    return bytes(rec[:len(rec) - cut])


def build_blob(case: Mapping[str, Any]) -> bytes:
    """The BTF blob a corpus case describes."""
    if "raw_hex" in case:
        return bytes.fromhex("".join(str(case["raw_hex"]).split()))
    strtab = StringTable()
    for s in case.get("strings", ()):
        strtab.add(str(s))
    types = b"".join(encode_entry(e, strtab) for e in case.get("types", ()))
    header = dict(case.get("header", {}))
    layout = dict(case.get("layout", {}))
    known = set(_HEADER_KEYS) | {k + "_delta" for k in _HEADER_KEYS}
    unknown = (set(header) - known) | (set(layout) - _LAYOUT)
    if unknown:
        raise CaseFormatError(f"unknown header/layout keys: {sorted(unknown)}")
    strings = bytes.fromhex(layout["strings_hex"]) if "strings_hex" in layout else strtab.to_bytes()
    hdr_extra = bytes.fromhex(layout.get("hdr_extra_hex", ""))
    gap = bytes.fromhex(layout.get("gap_hex", ""))
    strings_first = bool(layout.get("strings_first"))
    first, second = (strings, types) if strings_first else (types, strings)
    fields = {"magic": 0xEB9F, "version": 1, "flags": 0, "hdr_len": 24 + len(hdr_extra),
              "type_off": len(first) + len(gap) if strings_first else 0, "type_len": len(types),
              "str_off": 0 if strings_first else len(types) + len(gap), "str_len": len(strings)}
    for key in _HEADER_KEYS:
        if key in header:
            fields[key] = int(header[key])
        fields[key] += int(header.get(key + "_delta", 0))
    hdr = struct.pack("<HBBIIIII", fields["magic"] & 0xFFFF, fields["version"] & 0xFF, fields["flags"] & 0xFF,
                      *(fields[k] & 0xFFFFFFFF for k in _HEADER_KEYS[3:]))
    blob = hdr + hdr_extra + first + gap + second + bytes.fromhex(layout.get("trailer_hex", ""))
    return blob[:len(blob) - int(layout.get("truncate", 0))]
