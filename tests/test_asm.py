"""The assembler and disassembler (:mod:`reference_vm.asm`) in both dialects.

Expected bytes in the have/want tables are written by hand from the RFC 9669 §3 encoding
(opcode byte, ``src << 4 | dst``, little-endian 16-bit offset, little-endian 32-bit imm);
LLVM-dialect examples were checked against ``llvm-mc-19 -triple bpfel -mcpu=v4 -show-encoding``
where llvm-mc accepts them. Everything else is a round trip (text -> bytes -> text -> bytes)
or a property of the corpus, never a value computed by the code under test.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import example as hypothesis_example
from hypothesis import strategies as st

from conformance.data_file import load_data_file
from reference_vm import isa
from reference_vm.asm import assemble, assemble_bytes, detect_dialect, disassemble, format_insn
from reference_vm.errors import AsmError, EncodingError
from reference_vm.insn import Insn, decode, decode_program, encode_program
from reference_vm.isa import Kind, Use

CORPUS_DIR = Path(__file__).resolve().parent.parent / "corpora" / "bpf_conformance"
CORPUS = sorted(CORPUS_DIR.glob("*.data"))
DIALECTS = ("ubpf", "llvm")


def h(text: str) -> bytes:
    """Bytes from hex written with optional spaces and ``|`` slot separators."""
    return bytes.fromhex(text.replace("|", " "))


# --- Have/want tables, one entry per shape at least (RFC 9669 §3-§5) ------------------------

UBPF_CASES = [
    # alu_imm / alu_reg (RFC 9669 §4.1)
    ("add32 %r0, 1", "04 00 0000 01000000"),
    ("add %r1, %r2", "0f 21 0000 00000000"),
    ("add32 %r0, -3", "04 00 0000 fdffffff"),
    ("mov %r0, 0xffffffff", "b7 00 0000 ffffffff"),
    ("mov32 %r9, 0x80000000", "b4 09 0000 00000080"),
    ("and %r0, -0x10", "57 00 0000 f0ffffff"),
    ("arsh32 %r1, %r2", "cc 21 0000 00000000"),
    ("mod %r0, 7", "97 00 0000 07000000"),
    # sdiv_imm / sdiv_reg: offset 1
    ("sdiv32 %r1, %r2", "3c 21 0100 00000000"),
    ("smod %r1, 3", "97 01 0100 03000000"),
    # neg, movsx, end (RFC 9669 §4.1, §4.2)
    ("neg %r3", "87 03 0000 00000000"),
    ("neg32 %r3", "84 03 0000 00000000"),
    ("movsx832 %r0, %r1", "bc 10 0800 00000000"),
    ("movsx3264 %r0, %r1", "bf 10 2000 00000000"),
    ("le16 %r0", "d4 00 0000 10000000"),
    ("be64 %r2", "dc 02 0000 40000000"),
    ("bswap32 %r0", "d7 00 0000 20000000"),
    ("swap32 %r0", "d7 00 0000 20000000"),
    # load / store_imm / store_reg (RFC 9669 §5.2)
    ("ldxw %r0, [%r1+0x2]", "61 10 0200 00000000"),
    ("ldxdw %r0, [%r10-8]", "79 a0 f8ff 00000000"),
    ("ldxb %r0, [%r1]", "71 10 0000 00000000"),
    ("ldxh %r4, [ %r5 + 6 ]", "69 54 0600 00000000"),
    ("ldxsh %r2, [%r3-2]", "89 32 feff 00000000"),
    ("stw [%r10-8], 5", "62 0a f8ff 05000000"),
    ("stb [%r10-1], 0xff", "72 0a ffff ff000000"),
    ("stxdw [%r10-8], %r1", "7b 1a f8ff 00000000"),
    # atomic (RFC 9669 §5.3) and the Linux load-acquire/store-release
    ("lock add [%r10-8], %r1", "db 1a f8ff 00000000"),
    ("lock fetch add32 [%r10-4], %r1", "c3 1a fcff 01000000"),
    ("lock xchg [%r10-8], %r1", "db 1a f8ff e1000000"),
    ("lock cmpxchg32 [%r10-8], %r1", "c3 1a f8ff f1000000"),
    ("lock fetch xor [%r2+16], %r3", "db 32 1000 a1000000"),
    ("load_acquire64 %r0, [%r1+0]", "db 10 0000 00010000"),
    ("store_release32 [%r1+0], %r2", "c3 21 0000 10010000"),
    # lddw (RFC 9669 §5.4): two slots, the second holds the high half
    ("lddw %r0, 0x1122334455667788", "18 00 0000 88776655 | 00 00 0000 44332211"),
    ("lddw %r1, -1", "18 01 0000 ffffffff | 00 00 0000 ffffffff"),
    ("lddw %r2, 18446744073709551615", "18 02 0000 ffffffff | 00 00 0000 ffffffff"),
    ("lddw_map_fd %r1, 3", "18 11 0000 03000000 | 00 00 0000 00000000"),
    # lddw src 4 (BPF_PSEUDO_FUNC): imm is the function's pc-relative offset, next imm 0
    ("lddw_func %r2, +3", "18 42 0000 03000000 | 00 00 0000 00000000"),
    # legacy packet access (RFC 9669 §5.5)
    ("ldabsb 5", "30 00 0000 05000000"),
    ("ldindh %r1, 4", "48 10 0000 04000000"),
    # jumps (RFC 9669 §4.3)
    ("ja +3", "05 00 0300 00000000"),
    ("ja -1", "05 00 ffff 00000000"),
    ("ja32 -2", "06 00 0000 feffffff"),
    ("gotol +2", "06 00 0000 02000000"),
    ("jeq %r1, 5, +1", "15 01 0100 05000000"),
    ("jne32 %r1, %r2, -2", "5e 21 feff 00000000"),
    ("jsge %r1, 0xffffffff, +0", "75 01 0000 ffffffff"),
    ("may_goto +2", "e5 00 0200 00000000"),
    # calls (RFC 9669 §4.3.1, §4.3.2) and exit
    ("call 5", "85 00 0000 05000000"),
    ("call helper 5", "85 00 0000 05000000"),
    ("call local +3", "85 10 0000 03000000"),
    ("call runtime 17", "85 20 0000 11000000"),
    ("call %r2", "8d 02 0000 00000000"),
    ("exit", "95 00 0000 00000000"),
]

LLVM_CASES = [
    ("w0 += 1", "04 00 0000 01000000"),
    ("r1 += r2", "0f 21 0000 00000000"),
    ("w1 s>>= w2", "cc 21 0000 00000000"),
    ("r0 = 4294967295", "b7 00 0000 ffffffff"),
    ("r0 = -1", "b7 00 0000 ffffffff"),
    ("w0 s/= w1", "3c 10 0100 00000000"),
    ("r1 s%= 3", "97 01 0100 03000000"),
    ("w3 = -w3", "84 03 0000 00000000"),
    ("r0 = (s8)r1", "bf 10 0800 00000000"),
    ("r0 = (s32)r1", "bf 10 2000 00000000"),
    ("r0 = be16 r0", "dc 00 0000 10000000"),
    ("r0 = bswap64 r0", "d7 00 0000 40000000"),
    ("r0 = *(s16 *)(r1 + 2)", "89 10 0200 00000000"),
    ("w0 = *(u32 *)(r1 - 8)", "61 10 f8ff 00000000"),
    ("r0 = *(u32 *)(r1 - 8)", "61 10 f8ff 00000000"),
    ("r0 = *(u8 *)(r1 + 0x10)", "71 10 1000 00000000"),
    ("*(u32 *)(r10 - 8) = 1", "62 0a f8ff 01000000"),
    ("*(u64 *)(r10 - 8) = r1", "7b 1a f8ff 00000000"),
    ("lock *(u32 *)(r10 - 8) += w1", "c3 1a f8ff 00000000"),
    ("r1 = atomic_fetch_add((u64 *)(r10 - 8), r1)", "db 1a f8ff 01000000"),
    ("w1 = xchg32_32(r10 - 8, w1)", "c3 1a f8ff e1000000"),
    ("r0 = cmpxchg_64(r10 - 8, r0, r1)", "db 1a f8ff f1000000"),
    ("r0 = load_acquire((u64 *)(r1 + 0))", "db 10 0000 00010000"),
    ("store_release((u32 *)(r1 + 0), w2)", "c3 21 0000 10010000"),
    ("r0 = 1234605616436508552 ll", "18 00 0000 88776655 | 00 00 0000 44332211"),
    ("r0 = -1 ll", "18 00 0000 ffffffff | 00 00 0000 ffffffff"),
    ("r1 = map_fd(3) ll", "18 11 0000 03000000 | 00 00 0000 00000000"),
    ("r2 = func(+3) ll", "18 42 0000 03000000 | 00 00 0000 00000000"),
    ("r0 = *(u8 *)skb[5]", "30 00 0000 05000000"),
    ("r0 = *(u16 *)skb[r1]", "48 10 0000 00000000"),
    ("r0 = *(u16 *)skb[r1 + 4]", "48 10 0000 04000000"),
    ("if w1 & w2 goto -1", "4e 21 ffff 00000000"),
    ("if r1 == 5 goto +1", "15 01 0100 05000000"),
    ("if r1 s>= -1 goto +0", "75 01 0000 ffffffff"),
    ("goto +2", "05 00 0200 00000000"),
    ("gotol +2", "06 00 0000 02000000"),
    ("call 5", "85 00 0000 05000000"),
    ("callx r2", "8d 02 0000 00000000"),
    ("call btf(17)", "85 20 0000 11000000"),
    ("may_goto +2", "e5 00 0200 00000000"),
    ("exit", "95 00 0000 00000000"),
]

# Programs with labels: pcs count slots, lddw takes two (RFC 9669 §5.4).
PROGRAM_CASES = [
    ("ja L\nexit\nL: exit", "05 00 0100 00000000 | 95 00 0000 00000000 | 95 00 0000 00000000"),
    ("ja L\nlddw %r0, 1\nL:\nexit",
     "05 00 0200 00000000 | 18 00 0000 01000000 | 00 00 0000 00000000 | 95 00 0000 00000000"),
    ("back:\nmov %r0, 0\njne %r0, 1, back",
     "b7 00 0000 00000000 | 55 00 feff 01000000"),
    # bpf_conformance: "exit" names the first exit instruction unless a label "exit" exists.
    ("jne %r0, %r1, exit\nmov %r0, 1\nexit\nexit",
     "5d 10 0100 00000000 | b7 00 0000 01000000 | 95 00 0000 00000000 | 95 00 0000 00000000"),
    ("ja exit\nexit\nexit:\nexit",
     "05 00 0100 00000000 | 95 00 0000 00000000 | 95 00 0000 00000000"),
    ("call local f\nexit\nf:\nexit", "85 10 0000 01000000 | 95 00 0000 00000000 | 95 00 0000 00000000"),
    ("ja32 L\nL: exit", "06 00 0000 00000000 | 95 00 0000 00000000"),
    # LLVM: "call <label>" is a local call, "call <number>" a helper call.
    ("call f\ncall 1\nexit\nf:\nexit",
     "85 10 0000 02000000 | 85 00 0000 01000000 | 95 00 0000 00000000 | 95 00 0000 00000000"),
    ("LBB0_1:\nif w0 != 0 goto LBB0_1\ngotol LBB0_1",
     "56 00 ffff 00000000 | 06 00 0000 feffffff"),
    # Mixed dialects, comments, blank lines, label and instruction on one line.
    ("# comment\n\nstart: mov %r0, 1   # trailing\nr0 += 2\n  goto start\n",
     "b7 00 0000 01000000 | 07 00 0000 02000000 | 05 00 fdff 00000000"),
]


@pytest.mark.parametrize("text,want", UBPF_CASES, ids=[c[0] for c in UBPF_CASES])
def test_ubpf_have_want(text: str, want: str) -> None:
    assert assemble_bytes(text, dialect="ubpf") == h(want)
    assert assemble_bytes(text) == h(want)


@pytest.mark.parametrize("text,want", LLVM_CASES, ids=[c[0] for c in LLVM_CASES])
def test_llvm_have_want(text: str, want: str) -> None:
    assert assemble_bytes(text, dialect="llvm") == h(want)
    assert assemble_bytes(text) == h(want)


@pytest.mark.parametrize("text,want", PROGRAM_CASES, ids=range(len(PROGRAM_CASES)))
def test_programs_have_want(text: str, want: str) -> None:
    assert assemble_bytes(text) == h(want)


def test_lddw_is_one_insn_with_64_bit_imm() -> None:
    insns = assemble("lddw %r3, 0x8000000000000001\nexit")
    assert len(insns) == 2
    assert insns[0].op.kind is Kind.LDDW
    assert (insns[0].dst, insns[0].imm) == (3, 0x8000000000000001)


def test_shapes_covered_by_tables() -> None:
    """Every operand shape of the table appears in both have/want tables."""
    def shapes(cases: list[tuple[str, str]]) -> set[str]:
        return {insn.op.shape.name for text, _ in cases for insn in assemble(text)}
    assert shapes(UBPF_CASES) == set(isa.SHAPES)
    assert shapes(LLVM_CASES) == set(isa.SHAPES) - {"call_local"}  # local calls need a label
    assert "call_local" in shapes(PROGRAM_CASES)


@pytest.mark.parametrize("text,dialect", [
    ("add %r0, 1", "ubpf"), ("lock add [%r10-8], %r1", "ubpf"), ("exit", "ubpf"),
    ("call 5", "ubpf"), ("r0 += 1", "llvm"), ("if w1 & w2 goto -1", "llvm"), ("goto +2", "llvm"),
    ("lock *(u32 *)(r10 - 8) += w1", "llvm"), ("callx r2", "llvm"), ("gotol +1", "llvm"),
])
def test_detect_dialect(text: str, dialect: str) -> None:
    assert detect_dialect(text) == dialect


# --- Every row of the table, in both dialects ----------------------------------------------


def example(row: isa.OpDef) -> Insn:
    """A valid instruction of ``row`` with non-trivial fields (jump to the next instruction)."""
    values = {Use.ZERO: 0, Use.SELECT: 0, Use.READ: 2, Use.WRITE: 3, Use.BASE: 10, Use.VALUE: 7,
              Use.MEMOFF: -8, Use.JUMP: 0, Use.HELPER: 5}
    fields = {f: values[getattr(row.shape, f)] for f in ("dst", "src", "off", "imm")}
    if row.shape.off is Use.VALUE:
        fields["off"] = 0
    if row.select is not None:
        fields[row.select[0]] = row.select[1]
    if row.kind is isa.Kind.LDDW and row.shape.imm is Use.JUMP:
        fields["imm"] = 1  # lddw_func: offsets count from the lddw's second slot (the exit after it)
    return Insn(row, **fields)


@pytest.mark.parametrize("row", isa.TABLE, ids=[r.name for r in isa.TABLE])
@pytest.mark.parametrize("dialect", DIALECTS)
def test_every_row_round_trips(row: isa.OpDef, dialect: str) -> None:
    insn = example(row)
    exit_ = Insn(isa.BY_NAME["exit"])
    program = encode_program([insn, exit_])
    text = disassemble(program, dialect=dialect)
    first = text.splitlines()[0]
    if dialect == "ubpf":
        assert first.startswith(row.mnemonic)
    else:  # the row's LLVM template, not the uBPF fall-back
        literals = [p.strip() for p in re.split(r"\{\w+\}", row.llvm) if p.strip()]
        assert not re.search(r"%r[0-9]", first) and all(p in first for p in literals), first
    for d in (dialect, None):
        assert assemble_bytes(text, dialect=d) == program
    alone = format_insn(insn, dialect=dialect)
    assert assemble_bytes(alone) == insn.to_bytes()


def test_every_alias_assembles_like_its_row() -> None:
    for row in isa.TABLE:
        canonical = format_insn(example(row))
        for alias in row.aliases:
            assert assemble_bytes(alias + canonical[len(row.mnemonic):]) == example(row).to_bytes()


def test_llvm_fallback_for_what_llvm_cannot_write() -> None:
    """A kfunc call with a BTF fd index and an unlabelled local call print the uBPF spelling."""
    kfunc = Insn(isa.BY_NAME["call_kfunc"], src=2, off=3, imm=17)
    local = Insn(isa.BY_NAME["call_local"], src=1, imm=4)
    assert format_insn(kfunc, dialect="llvm") == "call runtime 17, 3"
    assert format_insn(local, dialect="llvm") == "call local +4"
    assert assemble_bytes("call runtime 17, 3", dialect="llvm") == h("85 20 0300 11000000")
    assert format_insn(local, dialect="llvm", pc=0, labels={5: "f"}) == "call f"


# --- Random instructions and programs ---------------------------------------------------------


def _field(row: isa.OpDef, name: str) -> st.SearchStrategy[int]:
    use = getattr(row.shape, name)
    if row.select is not None and row.select[0] == name:
        return st.just(row.select[1])
    if use in (Use.ZERO, Use.SELECT):
        return st.just(0)
    if use in (Use.READ, Use.BASE):
        return st.integers(0, 10)
    if use is Use.WRITE:
        return st.integers(0, 9)
    if name == "off":
        return st.integers(-(1 << 15), (1 << 15) - 1)
    if row.kind is Kind.LDDW:
        return st.integers(0, (1 << 64) - 1)
    return st.integers(-(1 << 31), (1 << 31) - 1)


def _insn(row: isa.OpDef) -> st.SearchStrategy[Insn]:
    return st.builds(Insn, st.just(row), *(_field(row, f) for f in ("dst", "src", "off", "imm")))


INSNS = st.sampled_from(isa.TABLE).flatmap(_insn)


def _jump_field(row: isa.OpDef) -> str | None:
    return next((f for f in ("off", "imm") if getattr(row.shape, f) is Use.JUMP), None)


@st.composite
def programs(draw: st.DrawFn) -> list[Insn]:
    """Valid programs: every jump and local call lands on an instruction (RFC 9669 §4.3)."""
    insns = draw(st.lists(INSNS, min_size=1, max_size=12))
    pcs, pc = [], 0
    for insn in insns:
        pcs.append(pc)
        pc += insn.op.slots
    out = []
    for insn, at in zip(insns, pcs, strict=True):
        name = _jump_field(insn.op)
        if name is not None:
            fields = {f: getattr(insn, f) for f in ("dst", "src", "off", "imm")}
            fields[name] = draw(st.sampled_from(pcs)) - at - 1
            insn = Insn(insn.op, **fields)
        out.append(insn)
    return out


@given(INSNS)
@settings(max_examples=400)
# a 32-bit offset field holding 0x80000000 is printed as its signed value (found by hypothesis)
@hypothesis_example(Insn(isa.BY_NAME["lddw_func"], dst=0, src=4, imm=0x80000000))
def test_random_insn_round_trips(insn: Insn) -> None:
    for dialect in DIALECTS:
        text = format_insn(insn, dialect=dialect)
        for d in (dialect, None):
            assert assemble_bytes(text, dialect=d) == insn.to_bytes(), text


@given(programs())
@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
def test_random_program_round_trips(program: list[Insn]) -> None:
    data = encode_program(program)
    assert [i for i in decode_program(data) if i is not None] == program
    for dialect in DIALECTS:
        for labels in (True, False):
            text = disassemble(data, dialect=dialect, labels=labels)
            assert assemble_bytes(text, dialect=dialect) == data, text
            assert assemble_bytes(text) == data, text
            assert disassemble(program, dialect=dialect, labels=labels) == text


def test_disassemble_labels() -> None:
    data = assemble_bytes("ja +2\nlddw %r0, 5\nexit\njeq %r0, 0, -4")
    assert disassemble(data) == "ja L3\nL1:\nlddw %r0, 0x5\nL3:\nexit\njeq %r0, 0, L1\n"
    assert disassemble(data, dialect="llvm") == "goto L3\nL1:\nr0 = 5 ll\nL3:\nexit\nif r0 == 0 goto L1\n"
    assert disassemble(data, labels=False) == "ja +2\nlddw %r0, 0x5\nexit\njeq %r0, 0, -4\n"
    assert disassemble(data, dialect="llvm", labels=False) == (
        "goto +2\nr0 = 5 ll\nexit\nif r0 == 0 goto -4\n")


def test_disassemble_rejects_invalid_bytes() -> None:
    with pytest.raises(EncodingError):
        disassemble(h("ff 00 0000 00000000"))
    with pytest.raises(EncodingError):  # lddw without its second slot
        disassemble(h("18 00 0000 00000000"))
    with pytest.raises(EncodingError):  # jump out of the program
        disassemble(h("05 00 0500 00000000 | 95 00 0000 00000000"))


# --- The bpf_conformance corpus ---------------------------------------------------------------


def test_corpus_is_complete() -> None:
    assert len(CORPUS) == 313


@pytest.mark.parametrize("path", CORPUS, ids=[p.stem for p in CORPUS])
def test_corpus_round_trips(path: Path) -> None:
    case = load_data_file(path)
    assert case.asm_text is not None
    insns = assemble(case.asm_text, file=str(path), first_line=case.asm_line)
    data = encode_program(insns)
    decode_program(data)  # the corpus programs are valid
    for dialect in DIALECTS:
        for labels in (True, False):
            text = disassemble(data, dialect=dialect, labels=labels)
            assert assemble_bytes(text, dialect=dialect) == data, text
            assert assemble_bytes(text) == data, text


def test_lddw_data_asm_equals_raw() -> None:
    case = load_data_file(CORPUS_DIR / "lddw.data")
    assert case.asm_text is not None and case.raw is not None
    assert assemble_bytes(case.asm_text) == b"".join(r.to_bytes() for r in case.raw)
    assert [r.to_u64() for r in case.raw] == [0x5566778800000018, 0x1122334400000000, 0x95]


# --- Errors -----------------------------------------------------------------------------------

ERROR_CASES = [
    ("mov %r0, 1\nfoo %r1\nexit", 2, "unknown mnemonic 'foo'"),
    ("lock frob [%r10-8], %r1", 1, "unknown mnemonic 'lock frob'"),
    ("exit\nadd %r0, 1, 2", 2, "wrong operand count for 'add': expected 2, got 3"),
    ("jeq %r1, 5", 1, "wrong operand count for 'jeq'"),
    ("neg %r0, 1", 1, "wrong operand count for 'neg': expected 1, got 2"),
    ("call runtime 1, 2, 3", 1, "wrong operand count for 'call runtime': expected 1 or 2, got 3"),
    ("lock add [%r10-8]", 1, "wrong operand count for 'lock add': expected 2, got 1"),
    ("mov %r11, 1", 1, "invalid register '%r11'"),
    ("ldxw %r0, [%r12+4]", 1, "invalid register '%r12'"),
    ("add %r0, foo", 1, "operand 2 of 'add' must be a number or a register, got 'foo'"),
    ("ldxw %r0, %r1", 1, "operand 2 of 'ldxw' must be a memory operand, got '%r1'"),
    ("stxw [%r1], 5", 1, "operand 2 of 'stxw' must be a register, got '5'"),
    ("ja 1+2", 1, "operand 1 of 'ja' must be a jump target, got '1+2'"),
    ("mov %r0, 1\nja nowhere", 2, "undefined label 'nowhere'"),
    ("a:\nexit\n a :\nexit", 3, "duplicate label 'a' (first defined on line 1)"),
    ("mov32 %r0, 0x100000000", 1, "immediate 0x100000000 does not fit in 32 bits"),
    ("mov32 %r0, -2147483649", 1, "immediate -2147483649 does not fit in 32 bits"),
    ("lddw %r0, 0x10000000000000000", 1, "immediate 0x10000000000000000 does not fit in 64 bits"),
    ("ldxw %r0, [%r1+0x8000]", 1, "offset +0x8000 out of range (signed 16-bit)"),
    ("stw [%r1-32769], 1", 1, "offset -32769 out of range (signed 16-bit)"),
    ("ja +32768", 1, "jump offset +32768 out of range"),
    ("ja32 +2147483648", 1, "jump offset +2147483648 out of range"),
    ("mov %r10, 1", 1, "dst_reg r10 is read-only"),
    ("ldxdw %r10, [%r1]", 1, "dst_reg r10 is read-only"),
    ("r11 = 1", 1, "invalid register 'r11'"),
    ("w0 += r1", 1, "register r1 must be written w1 here (32-bit operand)"),
    ("r0 = be16 w0", 1, "register w0 must be written r0"),
    ("r0 = -r1", 1, "needs the same register twice"),
    ("r0 = frob(r1)", 1, "unrecognized instruction 'r0 = frob(r1)'"),
    ("goto nowhere", 1, "undefined label 'nowhere'"),
    ("w0 = 0x100000000", 1, "immediate 0x100000000 does not fit in 32 bits"),
    ("r0 = *(u8 *)(r1 + 32768)", 1, "offset +32768 out of range (signed 16-bit)"),
    ("ldxw %r0, [r1+2]", 1, "must be a memory operand, got '[r1+2]'"),
]


@pytest.mark.parametrize("text,line,message", ERROR_CASES, ids=[c[0] for c in ERROR_CASES])
def test_errors_name_line_and_problem(text: str, line: int, message: str) -> None:
    with pytest.raises(AsmError) as info:
        assemble(text, file="t.s", first_line=1)
    assert info.value.line == line
    assert info.value.file == "t.s"
    assert message in info.value.message
    assert "\n" not in str(info.value)


def test_error_line_counts_from_first_line() -> None:
    with pytest.raises(AsmError) as info:
        assemble("exit\n\n# c\nbogus", file="x.data", first_line=10)
    assert info.value.line == 13
    assert str(info.value) == "x.data:13: unknown mnemonic 'bogus'"


def test_far_label_is_out_of_range() -> None:
    text = "ja far\n" + "exit\n" * 40000 + "far: exit"
    with pytest.raises(AsmError) as info:
        assemble(text)
    assert info.value.line == 1
    assert "jump offset 40000 out of range" in info.value.message
    assert "'far'" in info.value.message
    assert len(assemble(text.replace("ja far", "ja32 far"))) == 40002


def test_unknown_dialect_is_a_usage_error() -> None:
    with pytest.raises(ValueError):
        assemble("exit", dialect="gas")


# --- Fuzz: any text gives instructions or an AsmError -------------------------------------------

_WORDS = sorted({w for r in isa.TABLE for w in (r.mnemonic, *r.aliases)}
                | {w for r in isa.TABLE for w in r.llvm.replace("{", " {").split()}) + [
    "%r0", "%r1", "%r10", "%r11", "%r99", "r0", "w1", "r10", "w12", "[%r1+8]", "[%r10-0x8]", "[", "]",
    "+", "-", ",", ":", "=", "(", ")", "*", "0", "-1", "0x", "0xffffffff", "4294967296", "+3", "-32769",
    "L1", "L1:", "exit:", "goto", "if", "ll", "local", "runtime", "helper", "fetch", "#", "\n", "٣",
    "99999999999999999999999"]


@given(st.text(max_size=300))
@settings(max_examples=400)
def test_fuzz_random_text_raises_only_asm_error(text: str) -> None:
    for dialect in (None, "ubpf", "llvm"):
        try:
            assemble(text, dialect=dialect)
        except AsmError:
            pass


@given(st.lists(st.lists(st.sampled_from(_WORDS), max_size=8).map(" ".join), max_size=6)
       .map("\n".join))
@settings(max_examples=600)
def test_fuzz_token_soup_raises_only_asm_error(text: str) -> None:
    for dialect in (None, "ubpf", "llvm"):
        try:
            insns = assemble(text, dialect=dialect)
        except AsmError:
            continue
        for insn in insns:  # whatever assembles is a valid instruction
            raw = insn.raw()
            assert decode(raw[0], next_slot=raw[1] if len(raw) > 1 else None) == insn


def test_symbols_stand_for_immediates_in_both_dialects() -> None:
    # lddw src 5 (BPF_PSEUDO_MAP_IDX) with imm 2, then call 1: RFC 9669 §5.4 / §4.3.1 encodings.
    symbols = {"counters": 2, "bpf_map_lookup_elem": 1}
    want = bytes.fromhex("1851000002000000" "0000000000000000" "8500000001000000")
    assert assemble_bytes("lddw_map_idx %r1, counters\ncall bpf_map_lookup_elem", symbols=symbols) == want
    assert assemble_bytes("r1 = map_idx(counters) ll\ncall bpf_map_lookup_elem", symbols=symbols) == want
    with pytest.raises(AsmError, match="number or symbol, got 'nosuch'"):
        assemble("lddw_map_idx %r1, nosuch", symbols=symbols)
    with pytest.raises(ValueError):
        assemble("exit", symbols={"r1": 1})
