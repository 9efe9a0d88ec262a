"""Instructions at two levels: raw 8-byte slots and decoded, validated instructions.

:class:`RawInsn` is lossless: it holds any 8 bytes, valid or not (RFC 9669 §3, little-endian
``<BBhi>`` with dst in the low nibble). :class:`Insn` is a decoded instruction bound to its
row of :data:`reference_vm.isa.TABLE`; building one checks every validity rule the table
states and raises :class:`~reference_vm.errors.EncodingError` naming the field and value.
:func:`decode_program` adds the program-level rules (lddw pairs, jump targets).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .errors import EncodingError
from .isa import BPF_REG_FP, BY_OPCODE, Kind, OpDef, Use

_SLOT = struct.Struct("<BBhi")
U64 = (1 << 64) - 1


@dataclass(frozen=True, slots=True)
class RawInsn:
    """One 8-byte instruction slot, exactly as encoded (RFC 9669 §3)."""

    opcode: int
    dst: int  # 0..15
    src: int  # 0..15
    off: int  # signed 16 bit
    imm: int  # signed 32 bit

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview, at: int = 0) -> RawInsn:
        opcode, regs, off, imm = _SLOT.unpack_from(data, at)
        return cls(opcode, regs & 0x0F, regs >> 4, off, imm)

    def to_bytes(self) -> bytes:
        return _SLOT.pack(self.opcode, (self.src << 4) | self.dst, self.off, self.imm)

    @classmethod
    def from_u64(cls, word: int) -> RawInsn:
        """From a 64-bit little-endian word, as bpf_conformance's ``-- raw`` writes them."""
        return cls.from_bytes((word & U64).to_bytes(8, "little"))

    def to_u64(self) -> int:
        return int.from_bytes(self.to_bytes(), "little")

    def __str__(self) -> str:
        return (f"opcode={self.opcode:#04x} dst={self.dst} src={self.src} "
                f"off={self.off} imm={self.imm}")


def raw_program(data: bytes | bytearray | memoryview) -> list[RawInsn]:
    """Split bytes into slots; the length must be a multiple of 8."""
    if len(data) % 8:
        raise EncodingError(f"program length {len(data)} is not a multiple of 8 bytes")
    return [RawInsn.from_bytes(data, i) for i in range(0, len(data), 8)]


@dataclass(frozen=True, slots=True)
class Insn:
    """A decoded, valid instruction.

    ``imm`` is the signed 32-bit immediate, except for :data:`Kind.LDDW`, where it is the full
    64-bit value ``(next_imm << 32) | (imm & 0xffffffff)`` as an unsigned integer — but for
    ``lddw_func`` (src 4) the signed pc-relative offset of the function (next_imm must be 0).
    """

    op: OpDef
    dst: int = 0
    src: int = 0
    off: int = 0
    imm: int = 0

    @property
    def kind(self) -> Kind:
        return self.op.kind

    def raw(self) -> list[RawInsn]:
        """The instruction's slots (two for lddw)."""
        if self.op.kind is Kind.LDDW:
            lo = self.imm & 0xFFFFFFFF
            hi = 0 if self.op.shape.imm is Use.JUMP else (self.imm >> 32) & 0xFFFFFFFF
            return [RawInsn(self.op.opcode, self.dst, self.src, self.off, _s32(lo)),
                    RawInsn(0, 0, 0, 0, _s32(hi))]
        return [RawInsn(self.op.opcode, self.dst, self.src, self.off, self.imm)]

    def to_bytes(self) -> bytes:
        return b"".join(r.to_bytes() for r in self.raw())


def _s32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


def _field_value(raw: RawInsn, name: str) -> int:
    return int(getattr(raw, name))


def select_row(raw: RawInsn, pc: int | None = None) -> OpDef:
    """Find the table row for a raw slot, or raise naming the opcode/field that is wrong."""
    rows = BY_OPCODE.get(raw.opcode)
    if rows is None:
        raise EncodingError(f"unknown opcode {raw.opcode:#04x}", pc=pc, field="opcode",
                            value=raw.opcode)
    if rows[0].select is None:
        return rows[0]
    fname = rows[0].select[0]
    value = _field_value(raw, fname)
    for row in rows:
        assert row.select is not None
        if row.select[1] == value:
            return row
    allowed = ", ".join(f"{r.select[1]:#x}" for r in rows if r.select)
    raise EncodingError(f"opcode {raw.opcode:#04x} does not allow {_FIELD_NAMES[fname]} {value:#x} "
                        f"(allowed: {allowed})", pc=pc, field=fname, value=value)


_FIELD_NAMES = {"dst": "dst_reg", "src": "src_reg", "off": "offset", "imm": "imm"}


def check_fields(row: OpDef, dst: int, src: int, off: int, imm: int, pc: int | None = None) -> None:
    """Apply the row's validity rules to the four fields (RFC 9669 §3: unused fields are zero)."""
    for fname, use, value in (("dst", row.shape.dst, dst), ("src", row.shape.src, src),
                              ("off", row.shape.off, off), ("imm", row.shape.imm, imm)):
        label = _FIELD_NAMES[fname]
        if use is Use.ZERO and value != 0:
            raise EncodingError(f"{row.name} ({row.opcode:#04x}): {label} must be 0, got {value:#x}",
                                pc=pc, field=fname, value=value)
        if use in (Use.READ, Use.BASE, Use.WRITE) and value > BPF_REG_FP:
            raise EncodingError(f"{row.name} ({row.opcode:#04x}): {label} r{value} does not exist",
                                pc=pc, field=fname, value=value)
        if use is Use.WRITE and value == BPF_REG_FP:
            raise EncodingError(f"{row.name} ({row.opcode:#04x}): {label} r10 is read-only",
                                pc=pc, field=fname, value=value)


def decode(raw: RawInsn, pc: int | None = None, next_slot: RawInsn | None = None) -> Insn:
    """Decode one instruction (``next_slot`` is required for lddw's second slot)."""
    row = select_row(raw, pc)
    check_fields(row, raw.dst, raw.src, raw.off, raw.imm, pc)
    if row.kind is Kind.LDDW:
        if next_slot is None:
            raise EncodingError("lddw is missing its second slot", pc=pc, field="opcode",
                                value=raw.opcode)
        nxt = next_slot
        if nxt.opcode or nxt.dst or nxt.src or nxt.off:
            raise EncodingError("lddw second slot must have opcode, dst_reg, src_reg and offset 0, "
                                f"got {nxt}", pc=None if pc is None else pc + 1, field="opcode",
                                value=nxt.opcode)
        if row.shape.imm is Use.JUMP:  # lddw_func: a pc-relative function offset
            if nxt.imm:
                raise EncodingError(f"{row.name}: second slot imm must be 0, got {nxt.imm:#x}",
                                    pc=None if pc is None else pc + 1, field="imm", value=nxt.imm)
            return Insn(row, raw.dst, raw.src, raw.off, raw.imm)
        imm64 = ((nxt.imm & 0xFFFFFFFF) << 32) | (raw.imm & 0xFFFFFFFF)
        return Insn(row, raw.dst, raw.src, raw.off, imm64)
    return Insn(row, raw.dst, raw.src, raw.off, raw.imm)


def jump_target(insn: Insn, pc: int) -> int | None:
    """Absolute target pc of a jump or local call at ``pc``; None for other instructions."""
    shape = insn.op.shape
    if shape.off is Use.JUMP:
        return pc + 1 + insn.off
    if shape.imm is Use.JUMP:
        return pc + 1 + insn.imm
    return None


def decode_program(slots: Sequence[RawInsn] | bytes | bytearray) -> list[Insn | None]:
    """Decode a whole program into a list indexed by pc (lddw's second slot is ``None``).

    Program-level rules: every jump and local call lands on an instruction inside the
    program and not on the second slot of an lddw (RFC 9669 §4.3, §5.4).
    """
    if isinstance(slots, (bytes, bytearray)):
        slots = raw_program(slots)
    if not slots:
        raise EncodingError("empty program")
    out: list[Insn | None] = []
    pc = 0
    while pc < len(slots):
        nxt = slots[pc + 1] if pc + 1 < len(slots) else None
        insn = decode(slots[pc], pc, nxt)
        out.append(insn)
        if insn.op.kind is Kind.LDDW:
            out.append(None)
            pc += 2
        else:
            pc += 1
    for pc, slot in enumerate(out):
        if slot is None:
            continue
        target = jump_target(slot, pc)
        if target is None:
            continue
        what = "call" if slot.op.kind is Kind.CALL_LOCAL else "jump"
        if not 0 <= target < len(out):
            raise EncodingError(f"{what} out of range from insn {pc} to {target}", pc=pc,
                                field="imm" if slot.op.shape.imm is Use.JUMP else "off",
                                value=target)
        if out[target] is None:
            raise EncodingError(f"{what} from insn {pc} into the middle of lddw at {target - 1}",
                                pc=pc, field="off", value=target)
    return out


def encode_program(insns: Iterable[Insn]) -> bytes:
    return b"".join(i.to_bytes() for i in insns)
