"""BTF validation in the order of kernel/bpf/btf.c ``btf_parse()``, with the kernel's log.

Passes, as in the kernel: ``btf_parse_hdr`` (+ ``btf_check_sec_info``), ``btf_parse_str_sec``,
``btf_parse_type_sec`` = ``btf_check_all_metas`` (per-kind ``*_check_meta``) then
``btf_check_all_types`` (the ``btf_resolve`` DFS with its resolve modes, per-kind ``*_resolve``
and ``*_check_member``, ``btf_func_proto_check``), then ``btf_check_type_tags``.

The log is rebuilt line by line with the kernel's formats (``__btf_verifier_log_type``,
``btf_verifier_log_member``, ``btf_verifier_log_vsi``, ``btf_verifier_log_hdr``), so the error
message is the same text the kernel prints at log_level 1. Not modelled:
``btf_parse_struct_metas`` (special fields such as ``bpf_spin_lock`` members) and allocation
failures.
"""

from __future__ import annotations

import errno as _errno
import struct
from dataclasses import dataclass

from .model import (
    BTF_HDR_LEN,
    BTF_MAGIC,
    BTF_MAX_NAME_OFFSET,
    BTF_MAX_SIZE,
    BTF_MAX_TYPE,
    BTF_VERSION,
    HDR_FORMAT,
    INT_BOOL,
    INT_CHAR,
    INT_SIGNED,
    KIND_MAX,
    KIND_STR,
    Kind,
)

ENOTSUPP = 524  # kernel-internal errno (include/linux/errno.h), returned by BTF_LOAD
BTF_INFO_MASK = 0x9F00FFFF
BTF_INT_MASK = 0x0FFFFFFF
MAX_RESOLVE_DEPTH = 32
KSYM_NAME_LEN = 512
U32 = 0xFFFFFFFF

# Kernel lib/ctype.c classes for bytes 0..255 (Latin-1 letters count as alpha there).
_C, _U, _L, _D, _P, _SP = 1, 2, 4, 8, 16, 32
_CTYPE = ([_C] * 32 + [_SP] + [_P] * 15 + [_D] * 10 + [_P] * 7 + [_U] * 26 + [_P] * 6 + [_L] * 26
          + [_P] * 4 + [_C] + [0] * 32 + [_SP] + [_P] * 31 + [_U] * 23 + [_P] + [_U] * 7 + [_L] * 24
          + [_P] + [_L] * 8)
assert len(_CTYPE) == 256


def kernel_isalpha(c: int) -> bool:
    return bool(_CTYPE[c] & (_U | _L))


def kernel_isalnum(c: int) -> bool:
    return bool(_CTYPE[c] & (_U | _L | _D))


def kernel_isprint(c: int) -> bool:
    return bool(_CTYPE[c] & (_P | _U | _L | _D | _SP))


def errno_name(err: int) -> str:
    return "ENOTSUPP" if err == ENOTSUPP else _errno.errorcode.get(err, str(err))


class VerifyError(Exception):
    """Raised inside the verifier; the message is in the log already."""

    def __init__(self, err: int) -> None:
        super().__init__(err)
        self.errno = err


@dataclass
class RawRecord:
    """One ``struct btf_type`` as found in the type section (plus its kind data)."""

    name_off: int
    info: int
    st: int  # size or type
    extra: bytes

    @property
    def kind(self) -> int:
        return (self.info >> 24) & 0x1F

    @property
    def vlen(self) -> int:
        return self.info & 0xFFFF

    @property
    def kflag(self) -> bool:
        return bool(self.info >> 31)

    def u32(self, i: int) -> int:
        return int.from_bytes(self.extra[4 * i:4 * i + 4], "little")

    def triples(self) -> list[tuple[int, int, int]]:
        return [struct.unpack_from("<III", self.extra, 12 * i) for i in range(self.vlen)]

    def pairs(self) -> list[tuple[int, int]]:
        return [struct.unpack_from("<II", self.extra, 8 * i) for i in range(self.vlen)]


_VOID = RawRecord(0, 0, 0, b"")
NOT_VISITED, VISITED, RESOLVED = 0, 1, 2
RESOLVE_TBD, RESOLVE_PTR, RESOLVE_STRUCT_OR_ARRAY = 0, 1, 2
CHECK_META, CHECK_TYPE = 0, 1
_MODIFIERS = {Kind.TYPEDEF, Kind.VOLATILE, Kind.CONST, Kind.RESTRICT, Kind.TYPE_TAG}
_HAS_SIZE = {Kind.INT, Kind.STRUCT, Kind.UNION, Kind.ENUM, Kind.DATASEC, Kind.FLOAT, Kind.ENUM64}
_NEEDS_RESOLVE = _MODIFIERS | {Kind.PTR, Kind.STRUCT, Kind.UNION, Kind.ARRAY, Kind.VAR, Kind.FUNC,
                               Kind.DECL_TAG, Kind.DATASEC}
_SOURCE_ONLY = {Kind.VAR, Kind.DECL_TAG, Kind.DATASEC}
_ENCODING_STR = {0: "(none)", INT_SIGNED: "SIGNED", INT_CHAR: "CHAR", INT_BOOL: "BOOL"}


def _roundup_bytes(bits: int) -> int:
    return (bits >> 3) + (1 if bits & 7 else 0)


class _Vertex:
    __slots__ = ("t", "type_id", "next_member")

    def __init__(self, t: RawRecord, type_id: int) -> None:
        self.t, self.type_id, self.next_member = t, type_id, 0


class Verifier:
    """One BTF_LOAD worth of state (struct btf_verifier_env + struct btf)."""

    def __init__(self, data: bytes) -> None:
        self.data = bytes(data)
        self.out: list[str] = []
        self.types: list[RawRecord] = [_VOID]
        self.strings = b""
        self.hdr = (0, 0, 0, 0, 0, 0, 0, 0)
        self.log_type_id = 0
        self.phase = CHECK_META
        self.mode = RESOLVE_TBD
        self.stack: list[_Vertex] = []
        self.visit: list[int] = []
        self.rids: list[int] = []
        self.rsizes: list[int] = []

    # -- logging ---------------------------------------------------------------------------

    @property
    def log(self) -> str:
        return "".join(self.out)

    def vlog(self, text: str) -> None:
        """btf_verifier_log: no newline is added."""
        self.out.append(text)

    def fail(self, err: int = _errno.EINVAL) -> VerifyError:
        return VerifyError(err)

    def name_str(self, off: int) -> bytes | None:
        """btf_str_by_offset: the NUL-terminated string at ``off`` or None."""
        if off >= len(self.strings):
            return None
        end = self.strings.find(b"\0", off)
        return self.strings[off:end if end >= 0 else len(self.strings)]

    def log_name(self, off: int) -> str:
        """__btf_name_by_offset."""
        if not off:
            return "(anon)"
        s = self.name_str(off)
        return "(invalid-name-offset)" if s is None else s.decode("latin-1")

    def details(self, t: RawRecord) -> str:
        """The ``log_details`` op of t's kind."""
        k = t.kind
        if k == Kind.INT:
            d = t.u32(0)
            enc = _ENCODING_STR.get((d >> 24) & 0xF, "UNKN")
            return f"size={t.st} bits_offset={(d >> 16) & 0xFF} nr_bits={d & 0xFF} encoding={enc}"
        if k in _MODIFIERS or k in (Kind.PTR, Kind.FUNC):
            return f"type_id={t.st}"
        if k == Kind.FWD:
            return "union" if t.kflag else "struct"
        if k == Kind.ARRAY:
            return f"type_id={t.u32(0)} index_type_id={t.u32(1)} nr_elems={t.u32(2)}"
        if k in (Kind.STRUCT, Kind.UNION, Kind.ENUM, Kind.ENUM64, Kind.DATASEC):
            return f"size={t.st} vlen={t.vlen}"
        if k == Kind.FUNC_PROTO:
            return f"return={t.st} args=({self.proto_args(t)})"
        if k == Kind.VAR:
            return f"type_id={t.st} linkage={t.u32(0)}"
        if k == Kind.FLOAT:
            return f"size={t.st}"
        if k == Kind.DECL_TAG:
            return f"type={t.st} component_idx={struct.unpack('<i', t.extra[:4])[0]}"
        return ""

    def proto_args(self, t: RawRecord) -> str:
        """btf_func_proto_log's argument list."""
        args = t.pairs()
        if not args:
            return "void"
        if len(args) == 1 and not args[0][1]:
            return "vararg"
        parts = [f"{args[0][1]} {self.log_name(args[0][0])}"]
        parts += [f", {ty} {self.log_name(n)}" for n, ty in args[1:-1]]
        if len(args) > 1:
            n, ty = args[-1]
            parts.append(f", {ty} {self.log_name(n)}" if ty else ", vararg")
        return "".join(parts)

    def log_type(self, t: RawRecord, msg: str | None = None, details: bool = True) -> None:
        """__btf_verifier_log_type (btf_verifier_log_type / btf_verifier_log_basic)."""
        line = f"[{self.log_type_id}] {KIND_STR[Kind(t.kind)]} {self.log_name(t.name_off)}"
        if details:
            line += " " + self.details(t)
        if msg:
            line += " " + msg
        self.out.append(line + "\n")

    def log_member(self, st: RawRecord, m: tuple[int, int, int], msg: str | None = None) -> None:
        """btf_verifier_log_member: ``m`` is (name_off, type, offset)."""
        if self.phase != CHECK_META:
            self.log_type(st)
        name, mtype, off = m
        if st.kflag:
            line = (f"\t{self.log_name(name)} type_id={mtype} bitfield_size={off >> 24} "
                    f"bits_offset={off & 0xFFFFFF}")
        else:
            line = f"\t{self.log_name(name)} type_id={mtype} bits_offset={off}"
        self.out.append(line + (" " + msg if msg else "") + "\n")

    def log_vsi(self, ds: RawRecord, vsi: tuple[int, int, int], msg: str | None = None) -> None:
        """btf_verifier_log_vsi."""
        if self.phase != CHECK_META:
            self.log_type(ds)
        line = f"\t type_id={vsi[0]} offset={vsi[1]} size={vsi[2]}"
        self.out.append(line + (" " + msg if msg else "") + "\n")

    # -- header and sections ---------------------------------------------------------------

    def parse_hdr(self) -> None:
        """btf_parse_hdr."""
        size = len(self.data)
        if size < 8:
            self.vlog("hdr_len not found")
            raise self.fail()
        hdr_len = int.from_bytes(self.data[4:8], "little")
        if size < hdr_len:
            self.vlog("btf_header not found")
            raise self.fail()
        if hdr_len > BTF_HDR_LEN and any(self.data[BTF_HDR_LEN:hdr_len]):
            self.vlog("Unsupported btf_header")
            raise self.fail(_errno.E2BIG)
        raw = self.data[:min(hdr_len, BTF_HDR_LEN)].ljust(BTF_HDR_LEN, b"\0")
        self.hdr = struct.unpack(HDR_FORMAT, raw)
        magic, version, flags, hlen, toff, tlen, soff, slen = self.hdr
        self.vlog(f"magic: 0x{magic:x}\nversion: {version}\nflags: 0x{flags:x}\nhdr_len: {hlen}\n"
                  f"type_off: {toff}\ntype_len: {tlen}\nstr_off: {soff}\nstr_len: {slen}\n"
                  f"btf_total_size: {size}\n")
        if magic != BTF_MAGIC:
            self.vlog("Invalid magic")
            raise self.fail()
        if version != BTF_VERSION:
            self.vlog("Unsupported version")
            raise self.fail(ENOTSUPP)
        if flags:
            self.vlog("Unsupported flags")
            raise self.fail(ENOTSUPP)
        if size == hlen:
            self.vlog("No data")
            raise self.fail()
        self.check_sec_info(size)

    def check_sec_info(self, size: int) -> None:
        """btf_check_sec_info: the two sections must tile the data after the header."""
        _, _, _, hlen, toff, tlen, soff, slen = self.hdr
        secs = [(toff, tlen), (soff, slen)]

        def cmp(a: tuple[int, int], b: tuple[int, int]) -> int:  # (int)(x->off - y->off) ?: ...
            d = _s32(a[0] - b[0]) or _s32(a[1] - b[1])
            return d

        # The kernel's heap sort on two elements: swapped unless cmp(x0, x1) < 0.
        if cmp(secs[0], secs[1]) >= 0:
            secs.reverse()
        total, expected = 0, (size - hlen) & U32
        for off, length in secs:
            if expected < off:
                self.vlog("Invalid section offset")
                raise self.fail()
            if total < off:
                self.vlog("Unsupported section found")
                raise self.fail()
            if total > off:
                self.vlog("Section overlap found")
                raise self.fail()
            if expected - total < length:
                self.vlog("Total section length too long")
                raise self.fail()
            total += length
        if expected != total:
            self.vlog("Unsupported section found")
            raise self.fail()

    def parse_str_sec(self) -> None:
        """btf_parse_str_sec."""
        hlen, soff, slen = self.hdr[3], self.hdr[6], self.hdr[7]
        start = hlen + soff
        if start + slen != len(self.data):
            self.vlog("String section is not at the end")
            raise self.fail()
        self.strings = self.data[start:start + slen]
        if not slen or slen - 1 > BTF_MAX_NAME_OFFSET or self.strings[-1] != 0 or self.strings[0] != 0:
            self.vlog("Invalid string section")
            raise self.fail()

    def parse_type_sec(self) -> None:
        """btf_parse_type_sec."""
        toff, tlen = self.hdr[4], self.hdr[5]
        if toff & 3:
            self.vlog("Unaligned type_off")
            raise self.fail()
        if not tlen:
            self.vlog("No type found")
            raise self.fail()
        self.check_all_metas()
        self.check_all_types()

    # -- names -------------------------------------------------------------------------------

    def name_offset_valid(self, off: int) -> bool:
        return off <= BTF_MAX_NAME_OFFSET and off < len(self.strings)

    def valid_identifier(self, off: int) -> bool:
        """btf_name_valid_identifier (kernel ctype, at most KSYM_NAME_LEN characters)."""
        s = self.name_str(off) or b""
        if not s or not (kernel_isalpha(s[0]) or s[0] in b"_."):
            return False
        if len(s) > KSYM_NAME_LEN:
            return False
        return all(kernel_isalnum(c) or c in b"_." for c in s[1:])

    def valid_section(self, off: int) -> bool:
        """btf_name_valid_section: printable, non-empty."""
        s = self.name_str(off) or b""
        return bool(s) and len(s) <= KSYM_NAME_LEN and all(kernel_isprint(c) for c in s)

    # -- pass 1: btf_check_all_metas ---------------------------------------------------------

    def check_all_metas(self) -> None:
        hlen, toff, tlen = self.hdr[3], self.hdr[4], self.hdr[5]
        sec = self.data[hlen + toff:hlen + toff + tlen]
        cur = 0
        self.log_type_id = 1
        while cur < len(sec):
            left = len(sec) - cur
            if left < 12:
                self.vlog(f"[{self.log_type_id}] meta_left:{left} meta_needed:12")
                raise self.fail()
            name_off, info, st = struct.unpack_from("<III", sec, cur)
            t = RawRecord(name_off, info, st, b"")
            left -= 12
            if info & ~BTF_INFO_MASK & U32:
                self.vlog(f"[{self.log_type_id}] Invalid btf_info:{info:x}")
                raise self.fail()
            if t.kind > KIND_MAX or t.kind == Kind.UNKN:
                self.vlog(f"[{self.log_type_id}] Invalid kind:{t.kind}")
                raise self.fail()
            if not self.name_offset_valid(name_off):
                self.vlog(f"[{self.log_type_id}] Invalid name_offset:{name_off}")
                raise self.fail()
            t.extra = sec[cur + 12:cur + 12 + left]
            extra = self.check_meta(t, left)
            t.extra = t.extra[:extra]
            if len(self.types) == BTF_MAX_TYPE:  # btf_add_type; its error is ignored by the caller
                self.vlog("Exceeded max num of types")
            else:
                self.types.append(t)
            cur += 12 + extra
            self.log_type_id += 1

    def meta_needed(self, t: RawRecord, left: int, needed: int) -> None:
        if left < needed:
            self.log_type(t, f"meta_left:{left} meta_needed:{needed}", details=False)
            raise self.fail()

    def check_meta(self, t: RawRecord, left: int) -> int:
        """The kind's ``*_check_meta``; returns the size of the kind data."""
        k = t.kind
        if k == Kind.INT:
            return self.int_check_meta(t, left)
        if k in _MODIFIERS or k == Kind.PTR:
            return self.ref_type_check_meta(t)
        if k == Kind.ARRAY:
            return self.array_check_meta(t, left)
        if k in (Kind.STRUCT, Kind.UNION):
            return self.struct_check_meta(t, left)
        if k in (Kind.ENUM, Kind.ENUM64):
            return self.enum_check_meta(t, left)
        if k == Kind.FWD:
            return self.fwd_check_meta(t)
        if k == Kind.FUNC_PROTO:
            return self.func_proto_check_meta(t, left)
        if k == Kind.FUNC:
            return self.func_check_meta(t)
        if k == Kind.VAR:
            return self.var_check_meta(t, left)
        if k == Kind.DATASEC:
            return self.datasec_check_meta(t, left)
        if k == Kind.FLOAT:
            return self.float_check_meta(t)
        return self.decl_tag_check_meta(t, left)

    def common(self, t: RawRecord, *, vlen: bool = True, kflag: bool = True) -> None:
        if vlen and t.vlen:
            self.log_type(t, "vlen != 0")
            raise self.fail()
        if kflag and t.kflag:
            self.log_type(t, "Invalid btf_info kind_flag")
            raise self.fail()

    def int_check_meta(self, t: RawRecord, left: int) -> int:
        """btf_int_check_meta."""
        self.meta_needed(t, left, 4)
        self.common(t)
        d = t.u32(0)
        if d & ~BTF_INT_MASK & U32:
            self.log_type(t, f"Invalid int_data:{d:x}", details=False)
            raise self.fail()
        nr_bits = (d & 0xFF) + ((d >> 16) & 0xFF)
        if nr_bits > 128:
            self.log_type(t, "nr_bits exceeds 128")
            raise self.fail()
        if _roundup_bytes(nr_bits) > t.st:
            self.log_type(t, "nr_bits exceeds type_size")
            raise self.fail()
        enc = (d >> 24) & 0xF
        if enc and enc not in (INT_SIGNED, INT_CHAR, INT_BOOL):
            self.log_type(t, "Unsupported encoding")
            raise self.fail(ENOTSUPP)
        self.log_type(t)
        return 4

    def ref_type_check_meta(self, t: RawRecord) -> int:
        """btf_ref_type_check_meta (PTR, TYPEDEF, VOLATILE, CONST, RESTRICT, TYPE_TAG)."""
        self.common(t, kflag=t.kind != Kind.TYPE_TAG)
        if t.st > BTF_MAX_TYPE:
            self.log_type(t, "Invalid type_id")
            raise self.fail()
        if t.kind == Kind.TYPEDEF:
            bad = not t.name_off or not self.valid_identifier(t.name_off)
        elif t.kind == Kind.TYPE_TAG:
            bad = not self.name_str(t.name_off)
        else:
            bad = bool(t.name_off)
        if bad:
            self.log_type(t, "Invalid name")
            raise self.fail()
        self.log_type(t)
        return 0

    def fwd_check_meta(self, t: RawRecord) -> int:
        """btf_fwd_check_meta."""
        self.common(t, kflag=False)
        if t.st:
            self.log_type(t, "type != 0")
            raise self.fail()
        if not t.name_off or not self.valid_identifier(t.name_off):
            self.log_type(t, "Invalid name")
            raise self.fail()
        self.log_type(t)
        return 0

    def array_check_meta(self, t: RawRecord, left: int) -> int:
        """btf_array_check_meta."""
        self.meta_needed(t, left, 12)
        if t.name_off:
            self.log_type(t, "Invalid name")
            raise self.fail()
        self.common(t)
        if t.st:
            self.log_type(t, "size != 0")
            raise self.fail()
        elem, index = t.u32(0), t.u32(1)
        if not elem or elem > BTF_MAX_TYPE:
            self.log_type(t, "Invalid elem")
            raise self.fail()
        if not index or index > BTF_MAX_TYPE:
            self.log_type(t, "Invalid index")
            raise self.fail()
        self.log_type(t)
        return 12

    def struct_check_meta(self, t: RawRecord, left: int) -> int:
        """btf_struct_check_meta (STRUCT and UNION)."""
        needed = t.vlen * 12
        self.meta_needed(t, left, needed)
        if t.name_off and not self.valid_identifier(t.name_off):
            self.log_type(t, "Invalid name")
            raise self.fail()
        self.log_type(t)
        t.extra = t.extra[:needed]
        last = 0
        for m in t.triples():
            name, mtype, off = m
            if not self.name_offset_valid(name):
                self.log_member(t, m, f"Invalid member name_offset:{name}")
                raise self.fail()
            if name and not self.valid_identifier(name):
                self.log_member(t, m, "Invalid name")
                raise self.fail()
            if not mtype or mtype > BTF_MAX_TYPE:
                self.log_member(t, m, "Invalid type_id")
                raise self.fail()
            bit_off = off & 0xFFFFFF if t.kflag else off
            if (t.kind == Kind.UNION and bit_off) or last > bit_off:
                self.log_member(t, m, "Invalid member bits_offset")
                raise self.fail()
            if _roundup_bytes(bit_off) > t.st:
                self.log_member(t, m, "Member bits_offset exceeds its struct size")
                raise self.fail()
            self.log_member(t, m)
            last = bit_off
        return needed

    def enum_check_meta(self, t: RawRecord, left: int) -> int:
        """btf_enum_check_meta / btf_enum64_check_meta."""
        is64 = t.kind == Kind.ENUM64
        needed = t.vlen * (12 if is64 else 8)
        self.meta_needed(t, left, needed)
        if t.st > 8 or t.st & (t.st - 1) or not t.st:
            self.log_type(t, "Unexpected size")
            raise self.fail()
        if t.name_off and not self.valid_identifier(t.name_off):
            self.log_type(t, "Invalid name")
            raise self.fail()
        self.log_type(t)
        t.extra = t.extra[:needed]
        entries = ([(n, lo | hi << 32) for n, lo, hi in t.triples()] if is64 else t.pairs())
        for name, val in entries:
            if not self.name_offset_valid(name):
                self.vlog(f"\tInvalid name_offset:{name}")
                raise self.fail()
            if not name or not self.valid_identifier(name):
                self.log_type(t, "Invalid name")
                raise self.fail()
            bits = 64 if is64 else 32
            shown = val - (1 << bits) if t.kflag and val >> (bits - 1) else val
            self.vlog(f"\t{self.log_name(name)} val={shown}\n")
        return needed

    def func_proto_check_meta(self, t: RawRecord, left: int) -> int:
        """btf_func_proto_check_meta."""
        needed = t.vlen * 8
        self.meta_needed(t, left, needed)
        t.extra = t.extra[:needed]
        if t.name_off:
            self.log_type(t, "Invalid name")
            raise self.fail()
        self.common(t, vlen=False)
        self.log_type(t)
        return needed

    def func_check_meta(self, t: RawRecord) -> int:
        """btf_func_check_meta (vlen is the linkage)."""
        if not t.name_off or not self.valid_identifier(t.name_off):
            self.log_type(t, "Invalid name")
            raise self.fail()
        if t.vlen > 1:
            self.log_type(t, "Invalid func linkage")
            raise self.fail()
        self.common(t, vlen=False)
        self.log_type(t)
        return 0

    def var_check_meta(self, t: RawRecord, left: int) -> int:
        """btf_var_check_meta."""
        self.meta_needed(t, left, 4)
        self.common(t)
        if not t.name_off or not self.valid_identifier(t.name_off):
            self.log_type(t, "Invalid name")
            raise self.fail()
        if not t.st or t.st > BTF_MAX_TYPE:
            self.log_type(t, "Invalid type_id")
            raise self.fail()
        if t.u32(0) not in (0, 1):
            self.log_type(t, "Linkage not supported")
            raise self.fail()
        self.log_type(t)
        return 4

    def datasec_check_meta(self, t: RawRecord, left: int) -> int:
        """btf_datasec_check_meta."""
        needed = t.vlen * 12
        self.meta_needed(t, left, needed)
        if not t.st:
            self.log_type(t, "size == 0")
            raise self.fail()
        self.common(t, vlen=False)
        if not t.name_off or not self.valid_section(t.name_off):
            self.log_type(t, "Invalid name")
            raise self.fail()
        self.log_type(t)
        t.extra = t.extra[:needed]
        last_end = total = 0
        for vsi in t.triples():
            vtype, off, size = vsi
            if not vtype or vtype > BTF_MAX_TYPE:
                self.log_vsi(t, vsi, "Invalid type_id")
                raise self.fail()
            if off < last_end or off >= t.st:
                self.log_vsi(t, vsi, "Invalid offset")
                raise self.fail()
            if not size or size > t.st:
                self.log_vsi(t, vsi, "Invalid size")
                raise self.fail()
            last_end = off + size
            if last_end > t.st:
                self.log_vsi(t, vsi, "Invalid offset+size")
                raise self.fail()
            self.log_vsi(t, vsi)
            total += size
        if t.st < total:
            self.log_type(t, "Invalid btf_info size")
            raise self.fail()
        return needed

    def float_check_meta(self, t: RawRecord) -> int:
        """btf_float_check_meta."""
        self.common(t)
        if t.st not in (2, 4, 8, 12, 16):
            self.log_type(t, "Invalid type_size")
            raise self.fail()
        self.log_type(t)
        return 0

    def decl_tag_check_meta(self, t: RawRecord, left: int) -> int:
        """btf_decl_tag_check_meta."""
        self.meta_needed(t, left, 4)
        t.extra = t.extra[:4]
        if not self.name_str(t.name_off):
            self.log_type(t, "Invalid value")
            raise self.fail()
        if t.vlen:
            self.log_type(t, "vlen != 0")
            raise self.fail()
        if struct.unpack("<i", t.extra[:4])[0] < -1:
            self.log_type(t, "Invalid component_idx")
            raise self.fail()
        self.log_type(t)
        return 4

    # -- pass 2: btf_check_all_types ---------------------------------------------------------

    def by_id(self, type_id: int) -> RawRecord | None:
        return self.types[type_id] if type_id < len(self.types) else None

    def resolved(self, type_id: int) -> bool:
        return self.visit[type_id] == RESOLVED

    def is_sink(self, t: RawRecord) -> bool:
        """env_type_is_resolve_sink."""
        k = t.kind
        if self.mode == RESOLVE_TBD:
            return k not in _NEEDS_RESOLVE or t is _VOID
        if self.mode == RESOLVE_PTR:
            return k not in _MODIFIERS and k != Kind.PTR
        return k not in _MODIFIERS and k not in (Kind.ARRAY, Kind.STRUCT, Kind.UNION)

    @staticmethod
    def nosize(t: RawRecord | None) -> bool:
        """btf_type_nosize_or_null."""
        return t is None or t is _VOID or t.kind in (Kind.FWD, Kind.FUNC, Kind.FUNC_PROTO)

    def push(self, t: RawRecord, type_id: int) -> None:
        """env_stack_push; E2BIG and EEXIST become "Exceeded max resolving depth"/"Loop detected"."""
        if len(self.stack) == MAX_RESOLVE_DEPTH:
            raise VerifyError(_errno.E2BIG)
        if self.visit[type_id] != NOT_VISITED:
            raise VerifyError(_errno.EEXIST)
        self.visit[type_id] = VISITED
        self.stack.append(_Vertex(t, type_id))
        if self.mode == RESOLVE_TBD:
            if t.kind == Kind.PTR:
                self.mode = RESOLVE_PTR
            elif t.kind in (Kind.STRUCT, Kind.UNION, Kind.ARRAY):
                self.mode = RESOLVE_STRUCT_OR_ARRAY

    def pop_resolved(self, resolved_id: int, resolved_size: int) -> None:
        v = self.stack.pop()
        self.rids[v.type_id] = resolved_id
        self.rsizes[v.type_id] = resolved_size & U32
        self.visit[v.type_id] = RESOLVED

    def id_size(self, type_id: int) -> tuple[RawRecord, int, int] | None:
        """btf_type_id_size: (sized type, its id, size) after following resolved modifiers."""
        t = self.by_id(type_id)
        if self.nosize(t):
            return None
        assert t is not None
        for _ in range(2):
            if t.kind in _HAS_SIZE:
                return t, type_id, t.st
            if t.kind == Kind.ARRAY:
                return t, type_id, self.rsizes[type_id]
            if t.kind == Kind.PTR:
                return t, type_id, 8
            if t.kind not in _MODIFIERS and t.kind != Kind.VAR:
                return None
            type_id = self.rids[type_id]
            nt = self.by_id(type_id)
            if self.nosize(nt):
                return None
            assert nt is not None
            t = nt
        return None

    def check_all_types(self) -> None:
        """btf_check_all_types."""
        n = len(self.types)
        self.visit, self.rids, self.rsizes = [NOT_VISITED] * n, [0] * n, [0] * n
        self.phase = CHECK_TYPE
        for type_id in range(1, n):
            t = self.types[type_id]
            self.log_type_id = type_id
            if t.kind in _NEEDS_RESOLVE and not self.resolved(type_id):
                self.resolve(t, type_id)
            if t.kind == Kind.FUNC_PROTO:
                self.func_proto_check(t)

    def resolve(self, t: RawRecord, type_id: int) -> None:
        """btf_resolve: iterative DFS over the kinds' resolve ops, then btf_resolve_valid."""
        saved = self.log_type_id
        self.mode = RESOLVE_TBD
        self.push(t, type_id)
        err = 0
        try:
            while self.stack:
                v = self.stack[-1]
                self.log_type_id = v.type_id
                self.resolve_one(v)
        except VerifyError as e:
            err = e.errno
        self.log_type_id = type_id
        if err == _errno.E2BIG:
            self.log_type(t, f"Exceeded max resolving depth:{MAX_RESOLVE_DEPTH}")
        elif err == _errno.EEXIST:
            self.log_type(t, "Loop detected")
        if err:
            raise VerifyError(err)
        if not self.resolve_valid(t, type_id):
            self.log_type(t, "Invalid resolve state")
            raise self.fail()
        self.log_type_id = saved

    def resolve_valid(self, t: RawRecord, type_id: int) -> bool:
        """btf_resolve_valid."""
        if not self.resolved(type_id):
            return False
        k, rid, rsize = t.kind, self.rids[type_id], self.rsizes[type_id]
        if k in (Kind.STRUCT, Kind.UNION, Kind.DATASEC):
            return not rid and not rsize
        if k in (Kind.DECL_TAG, Kind.FUNC):
            return bool(rid) and not rsize
        if k in _MODIFIERS or k in (Kind.PTR, Kind.VAR):
            r = self.by_id(rid)
            return r is not None and r.kind not in _MODIFIERS and r.kind not in (Kind.VAR, Kind.DATASEC)
        if k == Kind.ARRAY:
            es = self.id_size(t.u32(0))
            return es is not None and es[0].kind not in _MODIFIERS and (t.u32(2) * es[2]) & U32 == rsize
        return False

    def resolve_one(self, v: _Vertex) -> None:
        k = v.t.kind
        if k in _MODIFIERS:
            self.ref_resolve(v, var=False, ptr=False)
        elif k == Kind.PTR:
            self.ref_resolve(v, var=False, ptr=True)
        elif k == Kind.VAR:
            self.ref_resolve(v, var=True, ptr=False)
        elif k == Kind.ARRAY:
            self.array_resolve(v)
        elif k in (Kind.STRUCT, Kind.UNION):
            self.struct_resolve(v)
        elif k == Kind.DATASEC:
            self.datasec_resolve(v)
        elif k == Kind.FUNC:
            self.func_check(v.t)
            self.pop_resolved(v.t.st, 0)
        elif k == Kind.DECL_TAG:
            self.decl_tag_resolve(v)
        else:  # btf_df_resolve
            self.log_type(v.t, "Unsupported resolve", details=False)
            raise self.fail()

    def ref_resolve(self, v: _Vertex, *, var: bool, ptr: bool) -> None:
        """btf_modifier_resolve, btf_ptr_resolve and btf_var_resolve (one shape, three endings)."""
        t, next_id = v.t, v.t.st
        nt = self.by_id(next_id)
        if nt is None or nt.kind in _SOURCE_ONLY:
            self.log_type(t, "Invalid type_id")
            raise self.fail()
        if not self.is_sink(nt) and not self.resolved(next_id):
            self.push(nt, next_id)
            return
        if (var or ptr) and nt.kind in _MODIFIERS:  # continue from the last-resolved ptr
            rid = self.rids[next_id]
            rt = self.by_id(rid)
            if rt is not None and rt.kind == Kind.PTR and not self.is_sink(rt) and not self.resolved(rid):
                self.push(rt, rid)
                return
        sized = self.id_size(next_id)
        if sized is None:
            if var:
                self.log_type(t, "Invalid type_id")
                raise self.fail()
            if self.resolved(next_id):
                next_id = self.rids[next_id]
                nt = self.by_id(next_id)
            if nt is not _VOID and nt is not None and nt.kind not in (Kind.FWD, Kind.FUNC_PROTO):
                self.log_type(t, "Invalid type_id")
                raise self.fail()
        else:
            next_id = sized[1]
        self.pop_resolved(next_id, 0)

    def int_is_regular(self, t: RawRecord) -> bool:
        """btf_type_int_is_regular: a whole u8/u16/u32/u64/u128 at offset 0."""
        d = t.u32(0)
        bits = d & 0xFF
        return not (bits & 7) and not (d >> 16) & 0xFF and _roundup_bytes(bits) in (1, 2, 4, 8, 16)

    def array_resolve(self, v: _Vertex) -> None:
        """btf_array_resolve: index type first, then element type."""
        t = v.t
        elem_id, index_id, nelems = t.u32(0), t.u32(1), t.u32(2)
        it = self.by_id(index_id)
        if it is None or self.nosize(it) or it.kind in _SOURCE_ONLY:
            self.log_type(t, "Invalid index")
            raise self.fail()
        if not self.is_sink(it) and not self.resolved(index_id):
            self.push(it, index_id)
            return
        sized = self.id_size(index_id)
        if sized is None or sized[0].kind != Kind.INT or not self.int_is_regular(sized[0]):
            self.log_type(t, "Invalid index")
            raise self.fail()
        et = self.by_id(elem_id)
        if et is None or self.nosize(et) or et.kind in _SOURCE_ONLY:
            self.log_type(t, "Invalid elem")
            raise self.fail()
        if not self.is_sink(et) and not self.resolved(elem_id):
            self.push(et, elem_id)
            return
        sized = self.id_size(elem_id)
        if sized is None:
            self.log_type(t, "Invalid elem")
            raise self.fail()
        et, elem_id, esize = sized
        if et.kind == Kind.INT and not self.int_is_regular(et):
            self.log_type(t, "Invalid array of int")
            raise self.fail()
        if nelems and esize > U32 // nelems:
            self.log_type(t, "Array size overflows U32_MAX")
            raise self.fail()
        self.pop_resolved(elem_id, esize * nelems)

    def struct_resolve(self, v: _Vertex) -> None:
        """btf_struct_resolve: members in order, each checked once its type is resolved."""
        t = v.t
        members = t.triples()
        if v.next_member:
            last = members[v.next_member - 1]
            if not self.resolved(last[1]):  # WARN_ON_ONCE in the kernel
                raise self.fail()
            self.check_member(t, last, self.types[last[1]])
        for i in range(v.next_member, len(members)):
            m = members[i]
            mt = self.by_id(m[1])
            if mt is None or self.nosize(mt) or mt.kind in _SOURCE_ONLY:
                self.log_member(t, m, "Invalid member")
                raise self.fail()
            if not self.is_sink(mt) and not self.resolved(m[1]):
                v.next_member = i + 1
                self.push(mt, m[1])
                return
            self.check_member(t, m, mt)
        self.pop_resolved(0, 0)

    def datasec_resolve(self, v: _Vertex) -> None:
        """btf_datasec_resolve (a VAR resolved on the way is not size-checked afterwards)."""
        t = v.t
        self.mode = RESOLVE_TBD
        vsis = t.triples()
        for i in range(v.next_member, len(vsis)):
            vsi = vsis[i]
            vt = self.by_id(vsi[0])
            if vt is None or vt.kind != Kind.VAR:
                self.log_vsi(t, vsi, "Not a VAR kind member")
                raise self.fail()
            if not self.is_sink(vt) and not self.resolved(vsi[0]):
                v.next_member = i + 1
                self.push(vt, vsi[0])
                return
            sized = self.id_size(vt.st)
            if sized is None:
                self.log_vsi(t, vsi, "Invalid type")
                raise self.fail()
            if vsi[2] < sized[2]:
                self.log_vsi(t, vsi, "Invalid size")
                raise self.fail()
        self.pop_resolved(0, 0)

    def decl_tag_resolve(self, v: _Vertex) -> None:
        """btf_decl_tag_resolve."""
        t, next_id = v.t, v.t.st
        nt = self.by_id(next_id)
        targets = (Kind.FUNC, Kind.STRUCT, Kind.UNION, Kind.VAR, Kind.TYPEDEF)
        if nt is None or nt is _VOID or nt.kind not in targets:
            self.log_type(t, "Invalid type_id")
            raise self.fail()
        if not self.is_sink(nt) and not self.resolved(next_id):
            self.push(nt, next_id)
            return
        idx = struct.unpack("<i", t.extra[:4])[0]
        if idx != -1:
            if nt.kind in (Kind.VAR, Kind.TYPEDEF):
                self.log_type(t, "Invalid component_idx")
                raise self.fail()
            if nt.kind in (Kind.STRUCT, Kind.UNION):
                vlen = nt.vlen
            else:
                proto = self.by_id(nt.st)
                vlen = proto.vlen if proto is not None else 0
            if idx & U32 >= vlen:
                self.log_type(t, "Invalid component_idx")
                raise self.fail()
        self.pop_resolved(next_id, 0)

    def func_check(self, t: RawRecord) -> None:
        """btf_func_check: a FUNC points at a FUNC_PROTO whose arguments are all named."""
        proto = self.by_id(t.st)
        if proto is None or proto.kind != Kind.FUNC_PROTO:
            self.log_type(t, "Invalid type_id")
            raise self.fail()
        for i, (name, ty) in enumerate(proto.pairs()):
            if not name and ty:
                self.log_type(t, f"Invalid arg#{i + 1}")
                raise self.fail()

    def func_proto_check(self, t: RawRecord) -> None:
        """btf_func_proto_check: return type and arguments must resolve to sized types."""
        if t.st:
            rt = self.by_id(t.st)
            if rt is None or rt.kind in _SOURCE_ONLY:
                self.log_type(t, "Invalid return type")
                raise self.fail()
            if rt.kind in _NEEDS_RESOLVE and not self.resolved(t.st):
                self.resolve(rt, t.st)
            if self.id_size(t.st) is None:
                self.log_type(t, "Invalid return type")
                raise self.fail()
        args = t.pairs()
        if not args:
            return
        if not args[-1][1]:
            if args[-1][0]:
                self.log_type(t, f"Invalid arg#{len(args)}")
                raise self.fail()
            args = args[:-1]
        for i, (name, ty) in enumerate(args, 1):
            at = self.by_id(ty)
            if at is None or at.kind in _SOURCE_ONLY:
                self.log_type(t, f"Invalid arg#{i}")
                raise self.fail()
            if name and (not self.name_offset_valid(name) or not self.valid_identifier(name)):
                self.log_type(t, f"Invalid arg#{i}")
                raise self.fail()
            if at.kind in _NEEDS_RESOLVE and at is not _VOID and not self.resolved(ty):
                self.resolve(at, ty)
            if self.id_size(ty) is None:
                self.log_type(t, f"Invalid arg#{i}")
                raise self.fail()

    # -- struct members (the kinds' check_member / check_kflag_member ops) ------------------

    def check_member(self, st: RawRecord, m: tuple[int, int, int], mt: RawRecord) -> None:
        """Dispatch to ``check_kflag_member`` or ``check_member`` of the member type's kind."""
        k = mt.kind
        if k in _MODIFIERS:  # btf_modifier_check_member / _check_kflag_member
            sized = self.id_size(m[1])
            if sized is None:
                self.log_member(st, m, "Invalid member")
                raise self.fail()
            self.check_member(st, (m[0], sized[1], m[2]), sized[0])
            return
        if st.kflag:
            if k == Kind.INT:
                return self.int_check_kflag_member(st, m, mt)
            if k in (Kind.ENUM, Kind.ENUM64):
                return self.enum_check_kflag_member(st, m)
            if k in (Kind.PTR, Kind.ARRAY, Kind.STRUCT, Kind.UNION, Kind.FLOAT):
                if m[2] >> 24:  # btf_generic_check_kflag_member
                    self.log_member(st, m, "Invalid member bitfield_size")
                    raise self.fail()
            else:
                self.log_type(st, "Unsupported check_kflag_member", details=False)
                raise self.fail()
        if k == Kind.INT:
            return self.int_check_member(st, m, mt)
        if k == Kind.PTR:
            return self.sized_check_member(st, m, 8)
        if k == Kind.ARRAY:
            return self.sized_check_member(st, m, self.rsizes[m[1]])
        if k in (Kind.STRUCT, Kind.UNION, Kind.ENUM, Kind.ENUM64):
            return self.sized_check_member(st, m, mt.st)
        if k == Kind.FLOAT:
            return self.float_check_member(st, m, mt)
        self.log_type(st, "Unsupported check_member", details=False)
        raise self.fail()

    def exceeds(self, st: RawRecord, m: tuple[int, int, int]) -> VerifyError:
        self.log_member(st, m, "Member exceeds struct_size")
        return self.fail()

    def int_check_member(self, st: RawRecord, m: tuple[int, int, int], mt: RawRecord) -> None:
        """btf_int_check_member."""
        d = mt.u32(0)
        off = m[2]
        if U32 - off < (d >> 16) & 0xFF:
            self.log_member(st, m, "bits_offset exceeds U32_MAX")
            raise self.fail()
        off += (d >> 16) & 0xFF
        nbytes_off = off >> 3
        nr_copy = (d & 0xFF) + (off & 7)
        if nr_copy > 128:
            self.log_member(st, m, "nr_copy_bits exceeds 128")
            raise self.fail()
        if st.st < nbytes_off or st.st - nbytes_off < _roundup_bytes(nr_copy):
            raise self.exceeds(st, m)

    def int_check_kflag_member(self, st: RawRecord, m: tuple[int, int, int], mt: RawRecord) -> None:
        """btf_int_check_kflag_member."""
        if not self.int_is_regular(mt):
            self.log_member(st, m, "Invalid member base type")
            raise self.fail()
        nr_bits, off, int_bits = m[2] >> 24, m[2] & 0xFFFFFF, mt.u32(0) & 0xFF
        if not nr_bits:
            if off & 7:
                self.log_member(st, m, "Invalid member offset")
                raise self.fail()
            nr_bits = int_bits
        elif nr_bits > int_bits:
            self.log_member(st, m, "Invalid member bitfield_size")
            raise self.fail()
        nr_copy = nr_bits + (off & 7)
        if nr_copy > 128:
            self.log_member(st, m, "nr_copy_bits exceeds 128")
            raise self.fail()
        if st.st < off >> 3 or st.st - (off >> 3) < _roundup_bytes(nr_copy):
            raise self.exceeds(st, m)

    def sized_check_member(self, st: RawRecord, m: tuple[int, int, int], size: int) -> None:
        """btf_ptr/array/struct/enum_check_member: byte aligned and inside the struct."""
        if m[2] & 7:
            self.log_member(st, m, "Member is not byte aligned")
            raise self.fail()
        if (st.st - (m[2] >> 3)) & U32 < size:
            raise self.exceeds(st, m)

    def enum_check_kflag_member(self, st: RawRecord, m: tuple[int, int, int]) -> None:
        """btf_enum_check_kflag_member (the size used is sizeof(int) even for ENUM64)."""
        off, nr_bits = m[2] & 0xFFFFFF, m[2] >> 24
        if not nr_bits:
            if off & 7:
                self.log_member(st, m, "Member is not byte aligned")
                raise self.fail()
            nr_bits = 32
        elif nr_bits > 32:
            self.log_member(st, m, "Invalid member bitfield_size")
            raise self.fail()
        if st.st < _roundup_bytes(off + nr_bits):
            raise self.exceeds(st, m)

    def float_check_member(self, st: RawRecord, m: tuple[int, int, int], mt: RawRecord) -> None:
        """btf_float_check_member: aligned to min(8, size) bytes."""
        align_bits = min(8, mt.st) * 8
        if m[2] % align_bits:
            self.log_member(st, m, "Member is not properly aligned")
            raise self.fail()
        if (m[2] >> 3) + mt.st > st.st:
            raise self.exceeds(st, m)

    # -- btf_check_type_tags -----------------------------------------------------------------

    def check_type_tags(self) -> None:
        """btf_check_type_tags: in a modifier chain, type tags come first."""
        good_id = 0
        for i in range(1, len(self.types)):
            t = self.types[i]
            if t.kind not in _MODIFIERS:
                continue
            in_tags = t.kind == Kind.TYPE_TAG
            cur, limit = i, 32
            while t.kind in _MODIFIERS:
                if not limit:
                    self.vlog("Max chain length or cycle detected")
                    raise self.fail(_errno.ELOOP)
                limit -= 1
                if t.kind == Kind.TYPE_TAG:
                    if not in_tags:
                        self.vlog("Type tags don't precede modifiers")
                        raise self.fail()
                else:
                    in_tags = False
                if cur <= good_id:
                    break
                cur = t.st
                nt = self.by_id(cur)
                if nt is None:
                    raise self.fail()
                t = nt
            good_id = i

    # -- driver ------------------------------------------------------------------------------

    def run(self) -> None:
        """btf_parse: raises VerifyError with the kernel's errno, or returns with types checked."""
        if len(self.data) > BTF_MAX_SIZE:
            raise VerifyError(_errno.E2BIG)
        self.parse_hdr()
        self.parse_str_sec()
        self.parse_type_sec()
        self.check_type_tags()


def _s32(v: int) -> int:
    v &= U32
    return v - (1 << 32) if v >> 31 else v
