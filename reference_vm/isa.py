"""The one BPF instruction table (RFC 9669 §3–§5 and Appendix A, plus Linux extensions).

Every other component reads this table: the decoder and its validity rules
(:mod:`reference_vm.insn`), the assembler and disassembler for both dialects
(:mod:`reference_vm.asm`), the interpreter's dispatch, the JIT lowering, the fuzz
strategies and the coverage reports. Nothing else in bpfcheck may match on raw opcode
bytes.

An instruction is 8 bytes (RFC 9669 §3)::

    +-------+-------+-------+--------+----------------+
    | 8 bit | 4 bit | 4 bit | 16 bit |     32 bit     |
    |opcode |  dst  |  src  | offset |   immediate    |   (dst is the low nibble)
    +-------+-------+-------+--------+----------------+

A row (:class:`OpDef`) is one *operation*: an opcode byte plus, where the opcode alone is
ambiguous, the value of the one field that selects it (``offset`` for sdiv/smod/movsx,
``imm`` for atomics and byte swaps, ``src`` for lddw and call). A row knows its mnemonic
in both assembly dialects, its operand shape (which fields it uses and how), the RFC
conformance group, the minimum cpu version (bpf_conformance's v1–v4) and the spec section.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum, IntEnum, StrEnum
from types import MappingProxyType

# --- Field constants (RFC 9669 §3 and §4) -------------------------------------------------


class Cls(IntEnum):
    """Instruction class, the low 3 bits of the opcode (RFC 9669 §3.3)."""

    BPF_LD = 0x00
    BPF_LDX = 0x01
    BPF_ST = 0x02
    BPF_STX = 0x03
    BPF_ALU = 0x04
    BPF_JMP = 0x05
    BPF_JMP32 = 0x06
    BPF_ALU64 = 0x07


BPF_K = 0x00  # source: 32-bit immediate (RFC 9669 §4)
BPF_X = 0x08  # source: src_reg

# Sizes and modes of load/store instructions (RFC 9669 §5).
BPF_W, BPF_H, BPF_B, BPF_DW = 0x00, 0x08, 0x10, 0x18
BPF_IMM, BPF_ABS, BPF_IND, BPF_MEM, BPF_MEMSX, BPF_ATOMIC = 0x00, 0x20, 0x40, 0x60, 0x80, 0xC0
SIZE_BYTES: Mapping[int, int] = MappingProxyType({BPF_B: 1, BPF_H: 2, BPF_W: 4, BPF_DW: 8})
SIZE_SUFFIX: Mapping[int, str] = MappingProxyType({1: "b", 2: "h", 4: "w", 8: "dw"})


class AluOp(IntEnum):
    """Arithmetic operation code, the high nibble of an ALU/ALU64 opcode (RFC 9669 §4.1)."""

    BPF_ADD = 0x00
    BPF_SUB = 0x10
    BPF_MUL = 0x20
    BPF_DIV = 0x30  # offset 1: SDIV
    BPF_OR = 0x40
    BPF_AND = 0x50
    BPF_LSH = 0x60
    BPF_RSH = 0x70
    BPF_NEG = 0x80
    BPF_MOD = 0x90  # offset 1: SMOD
    BPF_XOR = 0xA0
    BPF_MOV = 0xB0  # offset 8/16/32: MOVSX
    BPF_ARSH = 0xC0
    BPF_END = 0xD0


class JmpOp(IntEnum):
    """Jump operation code, the high nibble of a JMP/JMP32 opcode (RFC 9669 §4.3)."""

    BPF_JA = 0x00
    BPF_JEQ = 0x10
    BPF_JGT = 0x20
    BPF_JGE = 0x30
    BPF_JSET = 0x40
    BPF_JNE = 0x50
    BPF_JSGT = 0x60
    BPF_JSGE = 0x70
    BPF_CALL = 0x80
    BPF_EXIT = 0x90
    BPF_JLT = 0xA0
    BPF_JLE = 0xB0
    BPF_JSLT = 0xC0
    BPF_JSLE = 0xD0
    BPF_JCOND = 0xE0  # Linux: may_goto


# Atomic operations, carried in imm (RFC 9669 §5.3; Linux include/uapi/linux/bpf.h).
BPF_FETCH = 0x01
BPF_XCHG = 0xE0 | BPF_FETCH
BPF_CMPXCHG = 0xF0 | BPF_FETCH
BPF_LOAD_ACQ = 0x100  # Linux extension (6.15)
BPF_STORE_REL = 0x110  # Linux extension (6.15)

# Pseudo sources of the 64-bit immediate load (RFC 9669 §5.4; Linux BPF_PSEUDO_*).
BPF_PSEUDO_MAP_FD = 1
BPF_PSEUDO_MAP_VALUE = 2
BPF_PSEUDO_BTF_ID = 3
BPF_PSEUDO_FUNC = 4
BPF_PSEUDO_MAP_IDX = 5
BPF_PSEUDO_MAP_IDX_VALUE = 6

# Call sources (RFC 9669 §4.3.1).
BPF_PSEUDO_CALL = 1
BPF_PSEUDO_KFUNC_CALL = 2

NUM_REGS = 11  # r0..r10
BPF_REG_FP = 10  # frame pointer, read-only


class Kind(Enum):
    """Instruction family: what the interpreter, verifier and JITs dispatch on."""

    ALU = "alu"  # dst = dst op (src | imm), 32 or 64 bit
    NEG = "neg"  # dst = -dst
    MOVSX = "movsx"  # dst = sign_extend(src, bits)
    END = "end"  # byte swap / endianness conversion
    LOAD = "load"  # dst = *(uN *)(src + off)
    LOADSX = "loadsx"  # dst = *(sN *)(src + off)
    STORE_IMM = "store_imm"  # *(uN *)(dst + off) = imm
    STORE_REG = "store_reg"  # *(uN *)(dst + off) = src
    ATOMIC = "atomic"  # read-modify-write on *(dst + off)
    LOAD_ACQ = "load_acquire"  # Linux extension
    STORE_REL = "store_release"  # Linux extension
    LDDW = "lddw"  # 64-bit immediate, two slots
    LD_ABS = "ld_abs"  # legacy packet access
    LD_IND = "ld_ind"
    JA = "ja"  # pc += off (JMP) or pc += imm (JMP32, gotol)
    JCOND = "jcond"  # conditional jump
    MAY_GOTO = "may_goto"  # Linux extension
    CALL = "call"  # helper by static id
    CALL_LOCAL = "call_local"  # bpf-to-bpf call, pc-relative imm
    CALL_KFUNC = "call_kfunc"  # helper by BTF id
    CALLX = "callx"  # call through a register (LLVM / bpf_conformance extension)
    EXIT = "exit"


class Use(Enum):
    """How an instruction uses one field; decides validity and operand syntax."""

    ZERO = "zero"  # reserved, must be zero
    SELECT = "select"  # part of the opcode (selects the row); must equal OpDef.select value
    READ = "read"  # register operand that is read (r0..r10)
    WRITE = "write"  # register operand that is written (r0..r9)
    BASE = "base"  # base register of a memory access (r0..r10)
    VALUE = "value"  # immediate value
    MEMOFF = "memoff"  # signed 16-bit memory offset
    JUMP = "jump"  # jump target relative to the next instruction
    HELPER = "helper"  # helper id / BTF id


@dataclass(frozen=True, slots=True)
class Shape:
    """The operand shape: how each of dst/src/off/imm is used."""

    name: str
    dst: Use
    src: Use
    off: Use
    imm: Use


Z, SEL = Use.ZERO, Use.SELECT
SHAPES: Mapping[str, Shape] = MappingProxyType({
    s.name: s
    for s in (
        Shape("alu_imm", Use.WRITE, Z, Z, Use.VALUE),
        Shape("alu_reg", Use.WRITE, Use.READ, Z, Z),
        Shape("sdiv_imm", Use.WRITE, Z, SEL, Use.VALUE),
        Shape("sdiv_reg", Use.WRITE, Use.READ, SEL, Z),
        Shape("neg", Use.WRITE, Z, Z, Z),
        Shape("movsx", Use.WRITE, Use.READ, SEL, Z),
        Shape("end", Use.WRITE, Z, Z, SEL),
        Shape("load", Use.WRITE, Use.BASE, Use.MEMOFF, Z),
        Shape("store_imm", Use.BASE, Z, Use.MEMOFF, Use.VALUE),
        Shape("store_reg", Use.BASE, Use.READ, Use.MEMOFF, Z),
        Shape("atomic", Use.BASE, Use.READ, Use.MEMOFF, SEL),
        Shape("load_acq", Use.WRITE, Use.BASE, Use.MEMOFF, SEL),
        Shape("lddw", Use.WRITE, SEL, Z, Use.VALUE),
        Shape("lddw_func", Use.WRITE, SEL, Z, Use.JUMP),  # imm: pc-relative offset of a function
        Shape("ld_abs", Z, Z, Z, Use.VALUE),
        Shape("ld_ind", Z, Use.READ, Z, Use.VALUE),
        Shape("ja", Z, Z, Use.JUMP, Z),
        Shape("ja32", Z, Z, Z, Use.JUMP),
        Shape("jmp_imm", Use.READ, Z, Use.JUMP, Use.VALUE),
        Shape("jmp_reg", Use.READ, Use.READ, Use.JUMP, Z),
        Shape("may_goto", Z, Z, Use.JUMP, Z),
        Shape("call", Z, SEL, Z, Use.HELPER),
        Shape("call_local", Z, SEL, Z, Use.JUMP),
        Shape("call_kfunc", Z, SEL, Use.VALUE, Use.HELPER),
        Shape("callx", Use.READ, Z, Z, Z),
        Shape("exit", Z, Z, Z, Z),
    )
})


class Group(StrEnum):
    """Conformance groups: RFC 9669 §2.2, plus bpf_conformance's ``callx`` and Linux extensions."""

    BASE32 = "base32"
    BASE64 = "base64"
    ATOMIC32 = "atomic32"
    ATOMIC64 = "atomic64"
    DIVMUL32 = "divmul32"
    DIVMUL64 = "divmul64"
    PACKET = "packet"
    CALLX = "callx"
    LINUX = "linux"


#: Groups a runtime is asked for by default (RFC 9669 §2.2: all but the deprecated packet group).
DEFAULT_GROUPS = frozenset({Group.BASE32, Group.BASE64, Group.ATOMIC32, Group.ATOMIC64,
                            Group.DIVMUL32, Group.DIVMUL64})
ALL_GROUPS = frozenset(Group)
#: RFC 9669 §2.2: "base64: includes base32"; bpf_conformance treats atomic64/divmul64 likewise.
GROUP_IMPLIES: Mapping[Group, frozenset[Group]] = MappingProxyType({
    Group.BASE64: frozenset({Group.BASE32}),
    Group.ATOMIC64: frozenset({Group.ATOMIC32}),
    Group.DIVMUL64: frozenset({Group.DIVMUL32}),
})


@dataclass(frozen=True, slots=True)
class OpDef:
    """One row of the instruction table.

    ``mnemonic`` is the bpf_conformance/uBPF dialect (``add32``, ``ldxdw``, ``lock fetch add``);
    ``llvm`` is an LLVM-dialect template over ``{dst}``, ``{src}``, ``{imm}``, ``{off}``
    (signed memory offset, `` + 8`` / `` - 8``) and ``{target}`` (jump target), where a
    register prints as ``wN`` when ``width == 32`` and ``rN`` otherwise.
    """

    name: str  # unique key, e.g. "add32_imm", "lock_fetch_add64"
    opcode: int
    kind: Kind
    shape: Shape
    mnemonic: str
    llvm: str
    group: Group
    cpu: int  # minimum cpu version, 1..4 (bpf_conformance --cpu_version)
    spec: str  # e.g. "RFC 9669 §4.1"
    select: tuple[str, int] | None = None  # ("off"|"imm"|"src", value)
    extension: str | None = None  # None for RFC 9669; otherwise who defines it
    alu: AluOp | None = None
    jmp: JmpOp | None = None
    width: int = 64  # operation width in bits (ALU/JMP); register view in LLVM syntax
    size: int = 0  # memory access size in bytes; sign-extension source bits for movsx; swap bits
    signed: bool = False  # sdiv/smod, ldsx
    atomic: int | None = None  # atomic op in imm, without BPF_FETCH
    fetch: bool = False
    source: int = BPF_K  # BPF_K or BPF_X
    aliases: tuple[str, ...] = ()  # extra uBPF-dialect mnemonics accepted by the assembler

    @property
    def cls(self) -> Cls:
        return Cls(self.opcode & 0x07)

    @property
    def slots(self) -> int:
        """Number of 8-byte slots (2 for the 64-bit immediate load)."""
        return 2 if self.kind is Kind.LDDW else 1

    @property
    def executable(self) -> bool:
        """Whether the row runs without an outside environment (maps, packet ctx, kfuncs)."""
        return self.kind not in (Kind.LD_ABS, Kind.LD_IND, Kind.CALL_KFUNC) and not (
            self.kind is Kind.LDDW and self.select is not None and self.select[1] != 0)


# --- Building the rows ---------------------------------------------------------------------

_ROWS: list[OpDef] = []


def _row(**kw: object) -> None:
    _ROWS.append(OpDef(**kw))  # type: ignore[arg-type]


_BINOPS: tuple[tuple[AluOp, str, str], ...] = (
    (AluOp.BPF_ADD, "add", "+="), (AluOp.BPF_SUB, "sub", "-="), (AluOp.BPF_MUL, "mul", "*="),
    (AluOp.BPF_DIV, "div", "/="), (AluOp.BPF_OR, "or", "|="), (AluOp.BPF_AND, "and", "&="),
    (AluOp.BPF_LSH, "lsh", "<<="), (AluOp.BPF_RSH, "rsh", ">>="), (AluOp.BPF_MOD, "mod", "%="),
    (AluOp.BPF_XOR, "xor", "^="), (AluOp.BPF_MOV, "mov", "="), (AluOp.BPF_ARSH, "arsh", "s>>="),
)
_DIVMUL = {AluOp.BPF_MUL, AluOp.BPF_DIV, AluOp.BPF_MOD}

for _cls, _w, _sfx in ((Cls.BPF_ALU, 32, "32"), (Cls.BPF_ALU64, 64, "")):
    _base = Group.BASE32 if _w == 32 else Group.BASE64
    _dm = Group.DIVMUL32 if _w == 32 else Group.DIVMUL64
    for _op, _m, _sym in _BINOPS:
        for _src, _kind in ((BPF_K, "imm"), (BPF_X, "reg")):
            _opnd = "{imm}" if _src == BPF_K else "{src}"
            _row(name=f"{_m}{_w}_{_kind}", opcode=_cls | _src | _op, kind=Kind.ALU,
                 shape=SHAPES[f"alu_{_kind}"], mnemonic=_m + _sfx, llvm=f"{{dst}} {_sym} {_opnd}",
                 group=_dm if _op in _DIVMUL else _base, cpu=1, spec="RFC 9669 §4.1",
                 select=("off", 0) if _op in (AluOp.BPF_DIV, AluOp.BPF_MOD, AluOp.BPF_MOV) else None,
                 alu=_op, width=_w, source=_src)
        if _op in (AluOp.BPF_DIV, AluOp.BPF_MOD):  # SDIV/SMOD: offset 1 (RFC 9669 §4.1)
            for _src, _kind in ((BPF_K, "imm"), (BPF_X, "reg")):
                _opnd = "{imm}" if _src == BPF_K else "{src}"
                _row(name=f"s{_m}{_w}_{_kind}", opcode=_cls | _src | _op, kind=Kind.ALU,
                     shape=SHAPES[f"sdiv_{_kind}"], mnemonic=f"s{_m}{_sfx}",
                     llvm=f"{{dst}} s{_sym} {_opnd}", group=_dm, cpu=4, spec="RFC 9669 §4.1",
                     select=("off", 1), alu=_op, width=_w, signed=True, source=_src)
    _row(name=f"neg{_w}", opcode=_cls | BPF_K | AluOp.BPF_NEG, kind=Kind.NEG, shape=SHAPES["neg"],
         mnemonic="neg" + _sfx, llvm="{dst} = -{dst}", group=_base, cpu=1, spec="RFC 9669 §4.1",
         alu=AluOp.BPF_NEG, width=_w)
    # MOVSX: {MOV, X, ALU} with offset 8/16 (ALU) or 8/16/32 (ALU64) (RFC 9669 §4.1).
    for _bits in (8, 16) + ((32,) if _w == 64 else ()):
        _row(name=f"movsx{_bits}_{_w}", opcode=_cls | BPF_X | AluOp.BPF_MOV, kind=Kind.MOVSX,
             shape=SHAPES["movsx"], mnemonic=f"movsx{_bits}{_w}", llvm=f"{{dst}} = (s{_bits}){{src}}",
             group=_base, cpu=4, spec="RFC 9669 §4.1", select=("off", _bits), alu=AluOp.BPF_MOV,
             width=_w, size=_bits, signed=True, source=BPF_X)

# Byte swaps (RFC 9669 §4.2): ALU K = to little endian, ALU X = to big endian, ALU64 K = bswap.
for _opc, _m, _cpu, _al in ((Cls.BPF_ALU | BPF_K | AluOp.BPF_END, "le", 1, ()),
                            (Cls.BPF_ALU | BPF_X | AluOp.BPF_END, "be", 1, ()),
                            (Cls.BPF_ALU64 | BPF_K | AluOp.BPF_END, "bswap", 4, ("swap",))):
    for _bits in (16, 32, 64):
        _row(name=f"{_m}{_bits}", opcode=_opc, kind=Kind.END, shape=SHAPES["end"],
             mnemonic=f"{_m}{_bits}", llvm=f"{{dst}} = {_m}{_bits} {{dst}}",
             group=Group.BASE64 if _bits == 64 else Group.BASE32, cpu=_cpu, spec="RFC 9669 §4.2",
             select=("imm", _bits), alu=AluOp.BPF_END, width=64, size=_bits,
             source=_opc & BPF_X, aliases=tuple(f"{a}{_bits}" for a in _al))

# Loads and stores (RFC 9669 §5.1, §5.2).
for _sz, _n in ((BPF_B, 1), (BPF_H, 2), (BPF_W, 4), (BPF_DW, 8)):
    _s = SIZE_SUFFIX[_n]
    _g = Group.BASE64 if _n == 8 else Group.BASE32
    _ty = f"u{_n * 8}"
    _row(name=f"ldx{_s}", opcode=Cls.BPF_LDX | BPF_MEM | _sz, kind=Kind.LOAD, shape=SHAPES["load"],
         mnemonic=f"ldx{_s}", llvm=f"{{dst}} = *({_ty} *)({{src}}{{off}})", group=_g, cpu=1,
         spec="RFC 9669 §5.2", size=_n)
    _row(name=f"st{_s}", opcode=Cls.BPF_ST | BPF_MEM | _sz, kind=Kind.STORE_IMM,
         shape=SHAPES["store_imm"], mnemonic=f"st{_s}", llvm=f"*({_ty} *)({{dst}}{{off}}) = {{imm}}",
         group=_g, cpu=1, spec="RFC 9669 §5.2", size=_n)
    _row(name=f"stx{_s}", opcode=Cls.BPF_STX | BPF_MEM | _sz, kind=Kind.STORE_REG,
         shape=SHAPES["store_reg"], mnemonic=f"stx{_s}", llvm=f"*({_ty} *)({{dst}}{{off}}) = {{src}}",
         group=_g, cpu=1, spec="RFC 9669 §5.2", size=_n)
    if _n < 8:  # sign-extending loads (RFC 9669 §5.2, cpu v4)
        _row(name=f"ldxs{_s}", opcode=Cls.BPF_LDX | BPF_MEMSX | _sz, kind=Kind.LOADSX,
             shape=SHAPES["load"], mnemonic=f"ldxs{_s}",
             llvm=f"{{dst}} = *(s{_n * 8} *)({{src}}{{off}})", group=Group.BASE32, cpu=4,
             spec="RFC 9669 §5.2", size=_n, signed=True)
        # Legacy packet access (RFC 9669 §5.5; deprecated, group "packet").
        _row(name=f"ldabs{_s}", opcode=Cls.BPF_LD | BPF_ABS | _sz, kind=Kind.LD_ABS,
             shape=SHAPES["ld_abs"], mnemonic=f"ldabs{_s}", llvm=f"r0 = *({_ty} *)skb[{{imm}}]",
             group=Group.PACKET, cpu=1, spec="RFC 9669 §5.5", size=_n)
        _row(name=f"ldind{_s}", opcode=Cls.BPF_LD | BPF_IND | _sz, kind=Kind.LD_IND,
             shape=SHAPES["ld_ind"], mnemonic=f"ldind{_s}",
             llvm=f"r0 = *({_ty} *)skb[{{src}} + {{imm}}]", group=Group.PACKET, cpu=1,
             spec="RFC 9669 §5.5", size=_n)
    # Linux load-acquire / store-release (BPF_ATOMIC with imm 0x100 / 0x110), all sizes.
    _row(name=f"load_acquire{_n * 8}", opcode=Cls.BPF_STX | BPF_ATOMIC | _sz, kind=Kind.LOAD_ACQ,
         shape=SHAPES["load_acq"], mnemonic=f"load_acquire{_n * 8}",
         llvm=f"{{dst}} = load_acquire(({_ty} *)({{src}}{{off}}))", group=Group.LINUX, cpu=4,
         spec="Linux Documentation/bpf/standardization/instruction-set.rst", select=("imm", BPF_LOAD_ACQ),
         extension="linux 6.15", size=_n, width=64)
    _row(name=f"store_release{_n * 8}", opcode=Cls.BPF_STX | BPF_ATOMIC | _sz, kind=Kind.STORE_REL,
         shape=SHAPES["atomic"], mnemonic=f"store_release{_n * 8}",
         llvm=f"store_release(({_ty} *)({{dst}}{{off}}), {{src}})", group=Group.LINUX, cpu=4,
         spec="Linux Documentation/bpf/standardization/instruction-set.rst", select=("imm", BPF_STORE_REL),
         extension="linux 6.15", size=_n, width=64)

# Atomic read-modify-write (RFC 9669 §5.3): 32 and 64 bit only.
_ATOMICS = ((AluOp.BPF_ADD, "add", "+="), (AluOp.BPF_OR, "or", "|="), (AluOp.BPF_AND, "and", "&="),
            (AluOp.BPF_XOR, "xor", "^="))
for _sz, _w, _sfx in ((BPF_W, 32, "32"), (BPF_DW, 64, "")):
    _opc = Cls.BPF_STX | BPF_ATOMIC | _sz
    _g = Group.ATOMIC32 if _w == 32 else Group.ATOMIC64
    _ty = f"u{_w}"
    for _op, _m, _sym in _ATOMICS:
        _row(name=f"lock_{_m}{_w}", opcode=_opc, kind=Kind.ATOMIC, shape=SHAPES["atomic"],
             mnemonic=f"lock {_m}{_sfx}", llvm=f"lock *({_ty} *)({{dst}}{{off}}) {_sym} {{src}}",
             group=_g, cpu=3, spec="RFC 9669 §5.3", select=("imm", int(_op)), atomic=int(_op),
             width=_w, size=_w // 8)
        _row(name=f"lock_fetch_{_m}{_w}", opcode=_opc, kind=Kind.ATOMIC, shape=SHAPES["atomic"],
             mnemonic=f"lock fetch {_m}{_sfx}",
             llvm=f"{{src}} = atomic_fetch_{_m}(({_ty} *)({{dst}}{{off}}), {{src}})", group=_g, cpu=3,
             spec="RFC 9669 §5.3", select=("imm", int(_op) | BPF_FETCH), atomic=int(_op), fetch=True,
             width=_w, size=_w // 8)
    _x = "xchg32_32" if _w == 32 else "xchg_64"
    _c = "cmpxchg32_32" if _w == 32 else "cmpxchg_64"
    _r0 = "w0" if _w == 32 else "r0"
    _row(name=f"lock_xchg{_w}", opcode=_opc, kind=Kind.ATOMIC, shape=SHAPES["atomic"],
         mnemonic=f"lock xchg{_sfx}", llvm=f"{{src}} = {_x}({{dst}}{{off}}, {{src}})", group=_g, cpu=3,
         spec="RFC 9669 §5.3", select=("imm", BPF_XCHG), atomic=BPF_XCHG & ~BPF_FETCH, fetch=True,
         width=_w, size=_w // 8)
    _row(name=f"lock_cmpxchg{_w}", opcode=_opc, kind=Kind.ATOMIC, shape=SHAPES["atomic"],
         mnemonic=f"lock cmpxchg{_sfx}", llvm=f"{_r0} = {_c}({{dst}}{{off}}, {_r0}, {{src}})", group=_g,
         cpu=3, spec="RFC 9669 §5.3", select=("imm", BPF_CMPXCHG), atomic=BPF_CMPXCHG & ~BPF_FETCH,
         fetch=True, width=_w, size=_w // 8)

# 64-bit immediate load (RFC 9669 §5.4), src selects the pseudo source.
for _psrc, _pname, _llvm in ((0, "lddw", "{dst} = {imm} ll"),
                        (BPF_PSEUDO_MAP_FD, "lddw_map_fd", "{dst} = map_fd({imm}) ll"),
                        (BPF_PSEUDO_MAP_VALUE, "lddw_map_value", "{dst} = map_value({imm}) ll"),
                        (BPF_PSEUDO_BTF_ID, "lddw_btf_id", "{dst} = btf_id({imm}) ll"),
                        (BPF_PSEUDO_FUNC, "lddw_func", "{dst} = func({target}) ll"),
                        (BPF_PSEUDO_MAP_IDX, "lddw_map_idx", "{dst} = map_idx({imm}) ll"),
                        (BPF_PSEUDO_MAP_IDX_VALUE, "lddw_map_idx_value", "{dst} = map_idx_value({imm}) ll")):
    _row(name=_pname, opcode=Cls.BPF_LD | BPF_IMM | BPF_DW, kind=Kind.LDDW,
         shape=SHAPES["lddw_func" if _psrc == BPF_PSEUDO_FUNC else "lddw"],
         mnemonic=_pname, llvm=_llvm, group=Group.BASE64, cpu=1, spec="RFC 9669 §5.4",
         select=("src", _psrc), size=8)

# Jumps (RFC 9669 §4.3).
_JMPS = ((JmpOp.BPF_JEQ, "jeq", "==", 1), (JmpOp.BPF_JGT, "jgt", ">", 1), (JmpOp.BPF_JGE, "jge", ">=", 1),
         (JmpOp.BPF_JSET, "jset", "&", 1), (JmpOp.BPF_JNE, "jne", "!=", 1),
         (JmpOp.BPF_JSGT, "jsgt", "s>", 1), (JmpOp.BPF_JSGE, "jsge", "s>=", 1),
         (JmpOp.BPF_JLT, "jlt", "<", 2), (JmpOp.BPF_JLE, "jle", "<=", 2),
         (JmpOp.BPF_JSLT, "jslt", "s<", 2), (JmpOp.BPF_JSLE, "jsle", "s<=", 2))
for _cls, _w, _sfx in ((Cls.BPF_JMP, 64, ""), (Cls.BPF_JMP32, 32, "32")):
    for _jop, _m, _sym, _cpu in _JMPS:
        for _src, _kind in ((BPF_K, "imm"), (BPF_X, "reg")):
            _opnd = "{imm}" if _src == BPF_K else "{src}"
            _row(name=f"{_m}{_w}_{_kind}", opcode=_cls | _src | _jop, kind=Kind.JCOND,
                 shape=SHAPES[f"jmp_{_kind}"], mnemonic=_m + _sfx,
                 llvm=f"if {{dst}} {_sym} {_opnd} goto {{target}}",
                 group=Group.BASE64 if _w == 64 else Group.BASE32, cpu=3 if _w == 32 else _cpu,
                 spec="RFC 9669 §4.3", jmp=_jop, width=_w, source=_src)

_row(name="ja", opcode=Cls.BPF_JMP | JmpOp.BPF_JA, kind=Kind.JA, shape=SHAPES["ja"], mnemonic="ja",
     llvm="goto {target}", group=Group.BASE32, cpu=1, spec="RFC 9669 §4.3", jmp=JmpOp.BPF_JA)
_row(name="ja32", opcode=Cls.BPF_JMP32 | JmpOp.BPF_JA, kind=Kind.JA, shape=SHAPES["ja32"],
     mnemonic="ja32", llvm="gotol {target}", group=Group.BASE32, cpu=4, spec="RFC 9669 §4.3",
     jmp=JmpOp.BPF_JA, width=32, aliases=("gotol",))
_row(name="call", opcode=Cls.BPF_JMP | JmpOp.BPF_CALL, kind=Kind.CALL, shape=SHAPES["call"],
     mnemonic="call", llvm="call {imm}", group=Group.BASE32, cpu=1, spec="RFC 9669 §4.3.1",
     select=("src", 0), jmp=JmpOp.BPF_CALL, aliases=("call helper",))
_row(name="call_local", opcode=Cls.BPF_JMP | JmpOp.BPF_CALL, kind=Kind.CALL_LOCAL,
     shape=SHAPES["call_local"], mnemonic="call local", llvm="call {target}", group=Group.BASE32, cpu=3,
     spec="RFC 9669 §4.3.2", select=("src", BPF_PSEUDO_CALL), jmp=JmpOp.BPF_CALL)
_row(name="call_kfunc", opcode=Cls.BPF_JMP | JmpOp.BPF_CALL, kind=Kind.CALL_KFUNC,
     shape=SHAPES["call_kfunc"], mnemonic="call runtime", llvm="call btf({imm})", group=Group.BASE32, cpu=3,
     spec="RFC 9669 §4.3.1", select=("src", BPF_PSEUDO_KFUNC_CALL), jmp=JmpOp.BPF_CALL)
_row(name="callx", opcode=Cls.BPF_JMP | BPF_X | JmpOp.BPF_CALL, kind=Kind.CALLX, shape=SHAPES["callx"],
     mnemonic="call", llvm="callx {dst}", group=Group.CALLX, cpu=1,
     spec="bpf_conformance callx group (LLVM 19 / GCC encoding, register in dst)",
     extension="llvm", jmp=JmpOp.BPF_CALL, source=BPF_X)
_row(name="exit", opcode=Cls.BPF_JMP | JmpOp.BPF_EXIT, kind=Kind.EXIT, shape=SHAPES["exit"],
     mnemonic="exit", llvm="exit", group=Group.BASE32, cpu=1, spec="RFC 9669 §4.3",
     jmp=JmpOp.BPF_EXIT)
_row(name="may_goto", opcode=Cls.BPF_JMP | JmpOp.BPF_JCOND, kind=Kind.MAY_GOTO, shape=SHAPES["may_goto"],
     mnemonic="may_goto", llvm="may_goto {target}", group=Group.LINUX, cpu=4,
     spec="Linux kernel/bpf/verifier.c (BPF_JCOND, may_goto)", extension="linux 6.9",
     jmp=JmpOp.BPF_JCOND)

# --- The frozen table and its indexes --------------------------------------------------------

TABLE: tuple[OpDef, ...] = tuple(_ROWS)
BY_NAME: Mapping[str, OpDef] = MappingProxyType({r.name: r for r in TABLE})


def _index() -> Mapping[int, tuple[OpDef, ...]]:
    by_op: dict[int, list[OpDef]] = {}
    for r in TABLE:
        by_op.setdefault(r.opcode, []).append(r)
    for opcode, rows in by_op.items():
        fields = {r.select[0] if r.select else None for r in rows}
        if len(rows) > 1 and (None in fields or len(fields) != 1):
            raise AssertionError(f"opcode {opcode:#04x}: rows {[r.name for r in rows]} not selectable")
    return MappingProxyType({k: tuple(v) for k, v in sorted(by_op.items())})


#: opcode byte -> the rows that share it (one unless a field selects between them).
BY_OPCODE: Mapping[int, tuple[OpDef, ...]] = _index()
assert len(BY_NAME) == len(TABLE), "row names must be unique"

