""".BTF.ext: func_info, line_info and core_relo sections (libbpf's container for PROG_LOAD data).

Layout (libbpf ``struct btf_ext_header``): ``<HBBI`` magic 0xeB9F, version 1, flags 0, hdr_len,
then ``func_info_off, func_info_len, line_info_off, line_info_len`` and optionally
``core_relo_off, core_relo_len`` (offsets relative to the end of the header). Each info section is
``u32 rec_size`` followed by blocks ``{u32 sec_name_off; u32 num_info; rec_size * num_info bytes}``.
Records: func_info ``{insn_off, type_id}`` (8 bytes), line_info ``{insn_off, file_name_off,
line_off, line_col}`` (16 bytes, line = line_col >> 10, column = line_col & 0x3ff), core_relo
``{insn_off, type_id, access_str_off, kind}`` (16 bytes). In the ELF section insn_off counts
bytes; PROG_LOAD wants instruction indices.

Container errors use libbpf's ``btf_ext_parse_hdr`` / ``btf_ext_setup_info`` texts; the record
checks of :func:`check_func_info` / :func:`check_line_info` use the verifier's
(kernel/bpf/verifier.c ``check_btf_func_early``, ``check_btf_line``).
"""

from __future__ import annotations

import errno as _errno
import struct
from dataclasses import dataclass

from .model import BTF_MAGIC, BTF_VERSION, Btf, Func
from .parse import BtfError

EXT_HDR_MIN = 24  # up to line_info_len
EXT_HDR_FULL = 32  # with core_relo_off/len
_SECTIONS = (("func_info", 8), ("line_info", 16), ("core_relo", 16))


class BtfExtError(BtfError):
    """A malformed .BTF.ext or an info record the verifier refuses."""

    def __init__(self, errno: int, message: str) -> None:
        super().__init__(errno, message)
        self.message = f"BTF.ext rejected, {self.errno_name}: {message}"
        self.args = (self.message,)


@dataclass(frozen=True)
class FuncInfo:
    insn_off: int
    type_id: int


@dataclass(frozen=True)
class LineInfo:
    insn_off: int
    file_name_off: int
    line_off: int
    line_col: int = 0

    @property
    def line(self) -> int:
        return self.line_col >> 10

    @property
    def column(self) -> int:
        return self.line_col & 0x3FF


@dataclass(frozen=True)
class CoreRelo:
    insn_off: int
    type_id: int
    access_str_off: int
    kind: int


@dataclass(frozen=True)
class ExtSection:
    """One block of records for the ELF section named by ``sec_name_off`` (in the .BTF strings)."""

    sec_name_off: int
    records: tuple[FuncInfo, ...] | tuple[LineInfo, ...] | tuple[CoreRelo, ...]


@dataclass(frozen=True)
class BtfExt:
    func_info: tuple[ExtSection, ...] = ()
    line_info: tuple[ExtSection, ...] = ()
    core_relo: tuple[ExtSection, ...] = ()
    func_info_rec_size: int = 8
    line_info_rec_size: int = 16
    core_relo_rec_size: int = 16


_RECORD = {"func_info": (FuncInfo, 2), "line_info": (LineInfo, 4), "core_relo": (CoreRelo, 4)}


def btf_ext_parse(data: bytes) -> BtfExt:
    """Parse .BTF.ext as libbpf's ``btf_ext__new`` does; raises BtfExtError."""
    if len(data) < 8 or len(data) < int.from_bytes(data[4:8], "little"):
        raise BtfExtError(_errno.EINVAL, "BTF.ext header not found")
    magic, version, flags, hdr_len = struct.unpack_from("<HBBI", data)
    if magic == 0x9FEB:
        raise BtfExtError(_errno.EOPNOTSUPP, "BTF.ext in non-native endianness is not supported")
    if magic != BTF_MAGIC:
        raise BtfExtError(_errno.EINVAL, f"Invalid BTF.ext magic:{magic:x}")
    if version != BTF_VERSION:
        raise BtfExtError(_errno.EOPNOTSUPP, f"Unsupported BTF.ext version:{version}")
    if flags:
        raise BtfExtError(_errno.EOPNOTSUPP, f"Unsupported BTF.ext flags:{flags:x}")
    if len(data) == hdr_len:
        raise BtfExtError(_errno.EINVAL, "BTF.ext has no data")
    if hdr_len < EXT_HDR_MIN:
        raise BtfExtError(_errno.EINVAL, f"BTF.ext header too short: hdr_len {hdr_len}")
    fields = struct.unpack_from("<6I", data.ljust(EXT_HDR_FULL, b"\0")[:EXT_HDR_FULL], 8)
    if hdr_len < EXT_HDR_FULL:
        fields = fields[:4] + (0, 0)
    out: dict[str, object] = {}
    for i, (desc, min_size) in enumerate(_SECTIONS):
        off, length = fields[2 * i], fields[2 * i + 1]
        rec_size, blocks = _setup_info(data, hdr_len, desc, min_size, off, length)
        out[desc] = blocks
        out[desc + "_rec_size"] = rec_size or min_size
    return BtfExt(**out)  # type: ignore[arg-type]


def _setup_info(data: bytes, hdr_len: int, desc: str, min_size: int, off: int,
                length: int) -> tuple[int, tuple[ExtSection, ...]]:
    """libbpf ``btf_ext_setup_info``: record size, then non-empty blocks filling the section."""
    if not length:
        return 0, ()
    if off & 3:
        raise BtfExtError(_errno.EINVAL, f".BTF.ext {desc} section is not aligned to 4 bytes")
    start = hdr_len + off
    if start + length > len(data):
        raise BtfExtError(_errno.EINVAL, f"{desc} section (off:{off} len:{length}) is beyond the end of "
                          "the ELF section .BTF.ext")
    if length < 4:
        raise BtfExtError(_errno.EINVAL, f".BTF.ext {desc} record size not found")
    rec_size = int.from_bytes(data[start:start + 4], "little")
    if rec_size < min_size or rec_size & 3:
        raise BtfExtError(_errno.EINVAL, f"{desc} section in .BTF.ext has invalid record size {rec_size}")
    pos, left = start + 4, length - 4
    if not left:
        raise BtfExtError(_errno.EINVAL, f"{desc} section in .BTF.ext has no records")
    cls, nwords = _RECORD[desc]
    blocks = []
    while left:
        if left < 8:
            raise BtfExtError(_errno.EINVAL, f"{desc} section header is not found in .BTF.ext")
        name_off, num = struct.unpack_from("<II", data, pos)
        total = 8 + num * rec_size
        if not num or left < total:
            raise BtfExtError(_errno.EINVAL, f"{desc} section has incorrect num_records in .BTF.ext")
        fmt = f"<{nwords}I"
        recs = tuple(cls(*struct.unpack_from(fmt, data, pos + 8 + j * rec_size)) for j in range(num))
        blocks.append(ExtSection(name_off, recs))  # type: ignore[arg-type]
        pos, left = pos + total, left - total
    return rec_size, tuple(blocks)


class BtfExtBuilder:
    """Collects blocks and writes a .BTF.ext (32-byte header, sections in the order above)."""

    def __init__(self) -> None:
        self.sections: dict[str, list[ExtSection]] = {"func_info": [], "line_info": [], "core_relo": []}

    def add_func_info(self, sec_name_off: int, records: list[FuncInfo] | list[tuple[int, int]]) -> None:
        self.sections["func_info"].append(ExtSection(sec_name_off, tuple(
            r if isinstance(r, FuncInfo) else FuncInfo(*r) for r in records)))

    def add_line_info(self, sec_name_off: int,
                      records: list[LineInfo] | list[tuple[int, int, int, int]]) -> None:
        self.sections["line_info"].append(ExtSection(sec_name_off, tuple(
            r if isinstance(r, LineInfo) else LineInfo(*r) for r in records)))

    def add_core_relo(self, sec_name_off: int,
                      records: list[CoreRelo] | list[tuple[int, int, int, int]]) -> None:
        self.sections["core_relo"].append(ExtSection(sec_name_off, tuple(
            r if isinstance(r, CoreRelo) else CoreRelo(*r) for r in records)))

    def build(self) -> BtfExt:
        sec = self.sections
        return BtfExt(func_info=tuple(sec["func_info"]), line_info=tuple(sec["line_info"]),
                      core_relo=tuple(sec["core_relo"]))

    def to_bytes(self) -> bytes:
        bodies: list[bytes] = []
        for desc, rec_size in _SECTIONS:
            blocks = self.sections[desc]
            if not blocks:
                bodies.append(b"")
                continue
            parts = [struct.pack("<I", rec_size)]
            for b in blocks:
                parts.append(struct.pack("<II", b.sec_name_off, len(b.records)))
                parts += [struct.pack(f"<{len(vars(r))}I", *vars(r).values()) for r in b.records]
            bodies.append(b"".join(parts))
        offsets, pos = [], 0
        for body in bodies:
            offsets += [pos if body else 0, len(body)]
            pos += len(body)
        return struct.pack("<HBBI6I", BTF_MAGIC, BTF_VERSION, 0, EXT_HDR_FULL, *offsets) + b"".join(bodies)


def check_func_info(btf: Btf, records: tuple[FuncInfo, ...] | list[FuncInfo]) -> None:
    """Verifier rules for PROG_LOAD func_info (insn_off in instructions): first at 0, increasing,
    each naming a FUNC (kernel/bpf/verifier.c check_btf_func_early)."""
    prev = 0
    for i, r in enumerate(records):
        if i == 0 and r.insn_off:
            raise BtfExtError(_errno.EINVAL, f"nonzero insn_off {r.insn_off} for the first func info record")
        if i and r.insn_off <= prev:
            raise BtfExtError(_errno.EINVAL, f"same or smaller insn offset ({r.insn_off}) than previous "
                              f"func info record ({prev})")
        if not isinstance(btf.type_by_id(r.type_id), Func):
            tid = r.type_id - (1 << 32) if r.type_id >> 31 else r.type_id
            raise BtfExtError(_errno.EINVAL, f"invalid type id {tid} in func info")
        prev = r.insn_off


def check_line_info(btf: Btf, records: tuple[LineInfo, ...] | list[LineInfo], prog_len: int) -> None:
    """Verifier rules for PROG_LOAD line_info: increasing insn_off inside the program, string
    offsets inside the BTF string section (kernel/bpf/verifier.c check_btf_line)."""
    prev = 0
    for i, r in enumerate(records):
        if (i and r.insn_off <= prev) or r.insn_off >= prog_len:
            raise BtfExtError(_errno.EINVAL, f"Invalid line_info[{i}].insn_off:{r.insn_off} "
                              f"(prev_offset:{prev} prog->len:{prog_len})")
        if r.line_off >= len(btf.strings) or r.file_name_off >= len(btf.strings):
            raise BtfExtError(_errno.EINVAL, f"Invalid line_info[{i}].line_off or .file_name_off")
        prev = r.insn_off
