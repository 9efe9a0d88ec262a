"""``parse(blob) -> Btf``: the kernel's BTF_LOAD verdict, then the decoded model.

A rejected blob raises :class:`BtfError` carrying the errno the kernel returns and
``kernel_message``, the last non-empty line of the kernel log at log_level 1 with surrounding
whitespace stripped (kernel/bpf/btf.c prints e.g. ``[2] PTR (anon) type_id=99 Invalid type_id``).
"""

from __future__ import annotations

import struct

from reference_vm.errors import BpfCheckError

from .model import (
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
    Kind,
    Member,
    Param,
    Ptr,
    Restrict,
    Struct,
    Typedef,
    TypeTag,
    Union,
    Var,
    VarSecinfo,
    Volatile,
)
from .verifier import RawRecord, Verifier, VerifyError, errno_name


def last_log_line(log: str) -> str:
    """The message to compare with the kernel: the last non-empty line, stripped."""
    for line in reversed(log.splitlines()):
        if line.strip():
            return line.strip()
    return ""


class BtfError(BpfCheckError):
    """BTF the kernel would reject: ``errno`` as BTF_LOAD returns it, ``kernel_message`` as logged."""

    def __init__(self, errno: int, kernel_message: str, log: str = "", *, file: str | None = None,
                 line: int | None = None) -> None:
        text = kernel_message or "(no log)"
        super().__init__(f"BTF rejected, {errno_name(errno)}: {text}".replace("\n", " "),
                         file=file, line=line)
        self.errno = errno
        self.kernel_message = kernel_message
        self.log = log

    @property
    def errno_name(self) -> str:
        return errno_name(self.errno)


def parse(blob: bytes) -> Btf:
    """Validate ``blob`` as BTF_LOAD would (kernel/bpf/btf.c ``btf_parse``) and decode it."""
    v = Verifier(blob)
    try:
        v.run()
    except VerifyError as e:
        log = v.log
        raise BtfError(e.errno, last_log_line(log), log) from None
    return Btf(tuple(_decode(r, v) for r in v.types[1:]), log=v.log, strings=v.strings)


def _decode(r: RawRecord, v: Verifier) -> BtfType:
    """One verified record as a model object."""

    def name(off: int) -> str:
        return (v.name_str(off) or b"").decode("latin-1")

    k = r.kind
    n = name(r.name_off)
    if k == Kind.INT:
        d = r.u32(0)
        return Int(n, r.st, d & 0xFF, (d >> 16) & 0xFF, (d >> 24) & 0xF)
    if k == Kind.PTR:
        return Ptr(r.st)
    if k == Kind.ARRAY:
        return Array(r.u32(0), r.u32(1), r.u32(2))
    if k in (Kind.STRUCT, Kind.UNION):
        members = []
        for mn, mt, off in r.triples():
            if r.kflag:
                members.append(Member(name(mn), mt, off & 0xFFFFFF, off >> 24))
            else:
                members.append(Member(name(mn), mt, off))
        cls = Struct if k == Kind.STRUCT else Union
        return cls(n, r.st, tuple(members), r.kflag)
    if k == Kind.ENUM:
        vals = []
        for vn, val in r.pairs():
            vals.append(EnumValue(name(vn), val - (1 << 32) if r.kflag and val >> 31 else val))
        return Enum(n, r.st, tuple(vals), r.kflag)
    if k == Kind.ENUM64:
        vals = []
        for vn, lo, hi in r.triples():
            val = lo | hi << 32
            vals.append(EnumValue(name(vn), val - (1 << 64) if r.kflag and val >> 63 else val))
        return Enum64(n, r.st, tuple(vals), r.kflag)
    if k == Kind.FWD:
        return Fwd(n, r.kflag)
    if k == Kind.TYPEDEF:
        return Typedef(n, r.st)
    if k == Kind.VOLATILE:
        return Volatile(r.st)
    if k == Kind.CONST:
        return Const(r.st)
    if k == Kind.RESTRICT:
        return Restrict(r.st)
    if k == Kind.TYPE_TAG:
        return TypeTag(n, r.st, r.kflag)
    if k == Kind.FUNC:
        return Func(n, r.st, r.vlen)
    if k == Kind.FUNC_PROTO:
        return FuncProto(r.st, tuple(Param(name(pn), pt) for pn, pt in r.pairs()))
    if k == Kind.VAR:
        return Var(n, r.st, r.u32(0))
    if k == Kind.DATASEC:
        return Datasec(n, r.st, tuple(VarSecinfo(*vsi) for vsi in r.triples()))
    if k == Kind.FLOAT:
        return Float(n, r.st)
    return DeclTag(n, r.st, struct.unpack("<i", r.extra[:4])[0], r.kflag)
