"""Witness (soundness) checks of the verifier: accepted programs, run on the interpreter, never
fault and never leave the verifier's abstract states.

Programs are generated from the ISA table (straight-line and forward-branching ALU/JMP code
with spills and fills, and small counted loops) over two unknown inputs r1/r2. For each
accepted program the interpreter runs it on several inputs (hypothesis-chosen plus boundary
values) and :func:`reference_vm.verifier.witness.run_witness` checks every executed instruction.
A seeded unsound transfer function (CVE-2021-3490) must be caught by the same machinery.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reference_vm.insn import Insn, RawInsn
from reference_vm.isa import BY_NAME
from reference_vm.verifier import ranges as rg
from reference_vm.verifier import soundness as sd
from reference_vm.verifier.state import Reg
from reference_vm.verifier.witness import run_witness

U64 = (1 << 64) - 1
REGS = (0, 1, 2, 3, 4, 5)
IMMS = (0, 1, 2, 3, 7, 8, 31, 32, 63, 255, 0x7FFF, 0x7FFFFFFF, -1, -2, -8, -0x80000000, 12345)
BINOPS = ("add", "sub", "mul", "div", "mod", "or", "and", "xor", "lsh", "rsh", "arsh", "mov")
CONDS = ("jeq", "jne", "jgt", "jge", "jlt", "jle", "jsgt", "jsge", "jslt", "jsle", "jset")
INPUTS = (
    0,
    1,
    2,
    7,
    8,
    0x7F,
    0x80,
    0xFF,
    0x7FFFFFFF,
    0x80000000,
    0xFFFFFFFF,
    1 << 32,
    (1 << 63) - 1,
    1 << 63,
    U64,
    U64 - 7,
)


def _entry() -> dict[int, Reg]:
    out = {}
    for i in (1, 2):
        r = Reg()
        r.mark_unknown()
        out[i] = r
    return out


@st.composite
def alu_insn(draw) -> Insn:
    kind = draw(st.sampled_from(("bin", "bin", "bin", "bin", "neg", "movsx", "end", "sdiv")))
    w = draw(st.sampled_from((32, 64)))
    dst = draw(st.sampled_from(REGS))
    src = draw(st.sampled_from(REGS))
    if kind == "bin":
        op = draw(st.sampled_from(BINOPS))
        if draw(st.booleans()):
            return Insn(BY_NAME[f"{op}{w}_reg"], dst=dst, src=src)
        imm = draw(st.sampled_from(IMMS))
        if op in ("lsh", "rsh", "arsh"):
            imm = draw(st.integers(0, w - 1))
        if op in ("div", "mod") and imm == 0:
            imm = 3
        return Insn(BY_NAME[f"{op}{w}_imm"], dst=dst, imm=imm)
    if kind == "neg":
        return Insn(BY_NAME[f"neg{w}"], dst=dst)
    if kind == "movsx":
        bits = draw(st.sampled_from((8, 16) + ((32,) if w == 64 else ())))
        return Insn(BY_NAME[f"movsx{bits}_{w}"], dst=dst, src=src, off=bits)
    if kind == "end":
        name = draw(
            st.sampled_from(("le16", "le32", "le64", "be16", "be32", "be64", "bswap16", "bswap32", "bswap64"))
        )
        row = BY_NAME[name]
        return Insn(row, dst=dst, imm=row.size)
    op = draw(st.sampled_from(("sdiv", "smod")))
    if draw(st.booleans()):
        return Insn(BY_NAME[f"{op}{w}_reg"], dst=dst, src=src, off=1)
    return Insn(BY_NAME[f"{op}{w}_imm"], dst=dst, off=1, imm=draw(st.sampled_from((1, -1, 3, -7, 0x7FFF))))


@st.composite
def programs(draw) -> list[Insn]:
    """r0, r3-r5 set from immediates, then a body of ALU ops, forward conditional jumps (at most
    four), stack spills/fills and an optional counted loop; exit."""
    prologue = [Insn(BY_NAME["mov64_imm"], dst=r, imm=draw(st.sampled_from(IMMS))) for r in (0, 3, 4, 5)]
    n = draw(st.integers(3, 18))
    body: list[tuple[str, Insn | int | tuple[int, ...]]] = []
    jumps = 0
    stored = False
    for _ in range(n):
        choice = draw(st.integers(0, 9))
        if choice <= 5:
            body.append(("insn", draw(alu_insn())))
        elif choice <= 7 and jumps < 4:
            jumps += 1
            w = draw(st.sampled_from((32, 64)))
            cond = draw(st.sampled_from(CONDS))
            dst = draw(st.sampled_from(REGS))
            if draw(st.booleans()):
                body.append(
                    ("jmp", Insn(BY_NAME[f"{cond}{w}_reg"], dst=dst, src=draw(st.sampled_from(REGS))))
                )
            else:
                body.append(
                    ("jmp", Insn(BY_NAME[f"{cond}{w}_imm"], dst=dst, imm=draw(st.sampled_from(IMMS))))
                )
        elif choice == 8:
            reg = draw(st.sampled_from(REGS))
            body.append(("insn", Insn(BY_NAME["stxdw"], dst=10, src=reg, off=-8)))
            stored = True
        elif stored:
            size = draw(st.sampled_from(("dw", "w", "h", "b")))
            body.append(
                ("insn", Insn(BY_NAME[f"ldx{size}"], dst=draw(st.sampled_from(REGS)), src=10, off=-8))
            )
    insns: list[Insn] = list(prologue)
    # resolve forward jumps: each skips 0..(rest of the body) instructions
    for i, (what, insn) in enumerate(body):
        assert isinstance(insn, Insn)
        if what == "jmp":
            skip = draw(st.integers(0, len(body) - i - 1))
            insn = Insn(insn.op, dst=insn.dst, src=insn.src, off=skip, imm=insn.imm)
        insns.append(insn)
    if draw(st.integers(0, 4)) == 0:  # a small counted loop around a copy of the body's ALU ops
        k = draw(st.integers(1, 4))
        loop = [Insn(BY_NAME["mov64_imm"], dst=6, imm=k)]
        inner = [i for w, i in body if w == "insn" and isinstance(i, Insn) and i.dst != 6 and i.src != 6][:5]
        loop += inner
        loop.append(Insn(BY_NAME["sub64_imm"], dst=6, imm=1))
        loop.append(Insn(BY_NAME["jne64_imm"], dst=6, imm=0, off=-(len(inner) + 2)))
        insns += loop
    insns.append(Insn(BY_NAME["exit"]))
    return insns


def _slots(insns: list[Insn]) -> list[RawInsn]:
    return [s for i in insns for s in i.raw()]


@settings(max_examples=3000, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(
    programs(),
    st.lists(
        st.tuples(
            st.sampled_from(INPUTS) | st.integers(0, U64), st.sampled_from(INPUTS) | st.integers(0, U64)
        ),
        min_size=3,
        max_size=6,
    ),
)
def test_accepted_programs_never_fault_and_stay_in_the_abstract_states(prog, inputs):
    rep = run_witness(_slots(prog), inputs, entry=_entry())
    assert rep.verdict == "accept"  # every register is initialised, shifts in range, no K division by 0
    assert not rep.faults, rep.faults
    assert not rep.violations, rep.violations


def test_witness_checks_every_executed_instruction():
    prog = [
        Insn(BY_NAME["mov64_reg"], dst=0, src=1),
        Insn(BY_NAME["and64_imm"], dst=0, imm=15),
        Insn(BY_NAME["jgt64_reg"], dst=0, src=2, off=1),
        Insn(BY_NAME["add64_imm"], dst=0, imm=3),
        Insn(BY_NAME["mul32_imm"], dst=0, imm=3),
        Insn(BY_NAME["exit"]),
    ]
    rep = run_witness(_slots(prog), [(5, 3), (U64, 2), (17, 100)], entry=_entry())
    assert rep.ok and rep.runs == 3 and rep.steps >= 15


def test_witness_catches_cve_2021_3490(monkeypatch):
    """r2 = (r1 << 32) | 3 (low half known 3, high half unknown); r2 &= 0xffffffff00000001.
    The unsound 32-bit AND keeps u32 bounds [3, 3] while the low half is 1."""
    prog = [
        Insn(BY_NAME["mov64_reg"], dst=2, src=1),
        Insn(BY_NAME["lsh64_imm"], dst=2, imm=32),
        Insn(BY_NAME["or64_imm"], dst=2, imm=3),
        Insn(BY_NAME["lddw"], dst=3, imm=0xFFFFFFFF00000001),
        Insn(BY_NAME["and64_reg"], dst=2, src=3),
        Insn(BY_NAME["mov64_reg"], dst=0, src=2),
        Insn(BY_NAME["exit"]),
    ]
    inputs = [(0x1234, 0), (0, 0), (U64, 0)]
    assert run_witness(_slots(prog), inputs, entry=_entry()).ok
    monkeypatch.setattr(rg, "scalar32_min_max_and", sd.cve_2021_3490_and)
    rep = run_witness(_slots(prog), inputs, entry=_entry())
    assert rep.verdict == "accept" and rep.violations, rep


@pytest.mark.parametrize(
    "name",
    [
        "add",
        "alu64-arith",
        "jset-reg",
        "stack",
        "subnet",
        "prime",
        "ldxb-all",
        "mov64-sign-extend",
        "call_local",
        "mul32-reg-overflow",
    ],
)
def test_witness_on_bpf_conformance_cases(name):
    from conftest import CORPUS

    from conformance.case import load_case
    from conformance.targets.verifier import witness_data

    case = load_case(CORPUS / f"{name}.data")
    rep = witness_data(case)
    assert rep.verdict == "accept"
    assert not rep.violations and not rep.faults, (rep.violations, rep.faults)
