"""Soundness and precision of the verifier's abstract domains, exhaustively at small widths.

The operators of :mod:`reference_vm.verifier.tnum` and the transfer functions of
:mod:`reference_vm.verifier.ranges` take the register width as a parameter (the kernel's
algorithms, Linux 6.18 kernel/bpf/tnum.c and verifier.c, are width-generic). What is
exhaustive here:

* tnum binary operators (add, sub, mul, and, or, xor, union, intersect): **every pair of 6-bit
  tnums** (3**6 = 729, 531,441 pairs) against the best abstraction of all member pairs
  (computed by dynamic programming, :class:`~reference_vm.verifier.soundness.BestTable`);
* tnum unary operators (neg, lshift/rshift/arshift by every amount, cast, subreg): **every
  8-bit tnum** (6,561) and every member; tnum_range: **every 8-bit interval** (32,896);
* scalar ALU transfer functions (``adjust_scalar_min_max_vals``, 64- and 32-bit forms of add,
  sub, mul, and, or, xor, lsh, rsh, arsh, neg): **every pair of a 143-state family at 4 bits**
  (2-bit halves; every 4-bit tnum, boundary-heavy unsigned/signed ranges, half-width ranges),
  every member pair; branch refinement and ``is_branch_taken`` (11 conditions × 32/64 bit)
  over every pair of 96 states of the same family; ``reg_bounds_sync`` over 63,504 raw
  (unsynced) 4-bit states;
* random sampling at 8 bits (seeded): 1,500 random state pairs per ALU operation with 12
  sampled members each, 150 pairs per branch condition with 16 sampled members each, and
  64-bit spot checks with hypothesis.

Precision: add/sub/and/or/xor/neg/shifts/cast must equal the best abstraction (the kernel's
algorithms are optimal there); tnum_mul must be at least as precise as an independent
re-implementation of the kernel's algorithm (``_kernel_mul`` below, Linux 6.18: the union
form; the live 6.18.44 kernel printed ``var_off=(0x2; 0x1f0)`` for ``26 * (0x5; 0x8)``, the
union form's result, where the older hma form gives ``(0x2; 0x1d0)``).

The seeded bug: CVE-2021-3490's ``scalar32_min_max_and`` is injected and must be caught.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reference_vm.isa import AluOp
from reference_vm.verifier import ranges as rg
from reference_vm.verifier import soundness as sd
from reference_vm.verifier import tnum as tn
from reference_vm.verifier.ranges import Scalar
from reference_vm.verifier.tnum import Tnum

PAIR_BITS = 6
UNARY_BITS = 8
SCALAR_BITS = 4


def _kernel_mul(bits: int):
    """Linux 6.18 tnum_mul, written independently: u64 arithmetic emulated with a mask."""
    m = (1 << bits) - 1

    def add(av: int, am: int, bv: int, bm: int) -> tuple[int, int]:
        sm = (am + bm) & m
        sv = (av + bv) & m
        chi = ((sm + sv) & m) ^ sv
        mu = chi | am | bm
        return sv & ~mu & m, mu

    def mul(a: Tnum, b: Tnum) -> Tnum:
        av, am, bv, bm = a.value, a.mask, b.value, b.mask
        cv = cm = 0
        while av or am:
            if av & 1:
                cv, cm = add(cv, cm, bv, bm)
            elif am & 1:
                nv, nm = add(cv, cm, bv, bm)
                v = cv & nv
                mu = (cv ^ nv) | cm | nm
                cv, cm = v & ~mu, mu
            av, am = av >> 1, am >> 1
            bv, bm = (bv << 1) & m, (bm << 1) & m
        return Tnum(cv, cm)

    return mul


# --- tnums: every pair at 6 bits ------------------------------------------------------------

M6 = (1 << PAIR_BITS) - 1
BINARY = {
    "add": (lambda a, b: tn.add(a, b, PAIR_BITS), lambda x, y: x + y, True),
    "sub": (lambda a, b: tn.sub(a, b, PAIR_BITS), lambda x, y: x - y, True),
    "and": (tn.and_, lambda x, y: x & y, True),
    "or": (tn.or_, lambda x, y: x | y, True),
    "xor": (tn.xor, lambda x, y: x ^ y, True),
    "mul": (lambda a, b: tn.mul(a, b, PAIR_BITS), lambda x, y: x * y, False),
}


@pytest.mark.parametrize("name", sorted(BINARY))
def test_tnum_binary_every_6bit_pair(name):
    abstract, concrete, optimal = BINARY[name]
    reference = _kernel_mul(PAIR_BITS) if name == "mul" else None
    rep = sd.check_tnum_binary(name, abstract, concrete, PAIR_BITS, reference=reference)
    assert rep.cases == 3 ** (2 * PAIR_BITS)
    assert rep.sound, rep.unsound
    assert not rep.less_precise_than_reference, rep.less_precise_than_reference
    if optimal:
        assert rep.optimal == rep.cases  # the kernel's add/sub/and/or/xor are optimal
    else:
        assert rep.optimal > 0.9 * rep.cases


def test_tnum_union_and_intersect_every_6bit_pair():
    tnums = sd.all_tnums(PAIR_BITS)
    members = {t: set(tn.members(t)) for t in tnums}
    for a in tnums:
        for b in tnums:
            u = tn.union(a, b)
            assert tn.tnum_in(u, a) and tn.tnum_in(u, b)
            assert u == tn.best(members[a] | members[b])  # union is optimal
            common = members[a] & members[b]
            i = tn.intersect(a, b)
            assert tn.overlap(a, b) == bool(common)
            if common:
                assert i == tn.best(common)  # and intersect is exact when not empty


def test_tnum_in_and_contains_agree_with_members():
    tnums = sd.all_tnums(5)
    members = {t: set(tn.members(t)) for t in tnums}
    for a in tnums:
        for b in tnums:
            assert tn.tnum_in(a, b) == (members[b] <= members[a])


# --- tnums: unary, every 8-bit tnum ---------------------------------------------------------

M8 = (1 << UNARY_BITS) - 1


def _unary_ops():
    ops = {"neg": (lambda a: tn.neg(a, UNARY_BITS), lambda x: -x)}
    for k in range(UNARY_BITS):
        ops[f"lsh{k}"] = (lambda a, k=k: tn.lshift(a, k, UNARY_BITS), lambda x, k=k: x << k)
        ops[f"rsh{k}"] = (lambda a, k=k: tn.rshift(a, k), lambda x, k=k: x >> k)
        ops[f"arsh{k}"] = (
            lambda a, k=k: tn.arshift(a, k, UNARY_BITS, UNARY_BITS),
            lambda x, k=k: rg.sx(x, UNARY_BITS) >> k,
        )
    half = UNARY_BITS // 2
    for k in range(half):
        ops[f"arsh32_{k}"] = (
            lambda a, k=k: tn.arshift(tn.subreg(a, UNARY_BITS), k, half, UNARY_BITS),
            lambda x, k=k: (rg.sx(x & ((1 << half) - 1), half) >> k) & ((1 << half) - 1),
        )
    ops["subreg"] = (lambda a: tn.subreg(a, UNARY_BITS), lambda x: x & ((1 << half) - 1))
    ops["clear_subreg"] = (lambda a: tn.clear_subreg(a, UNARY_BITS), lambda x: x & ~((1 << half) - 1))
    ops["cast1"] = (lambda a: tn.cast_bits(a, 3), lambda x: x & 7)
    return ops


UNARY = _unary_ops()


@pytest.mark.parametrize("name", sorted(UNARY))
def test_tnum_unary_every_8bit_tnum(name):
    abstract, concrete = UNARY[name]
    rep = sd.check_tnum_unary(name, abstract, concrete, UNARY_BITS)
    assert rep.cases == 3**UNARY_BITS
    assert rep.sound, rep.unsound
    assert rep.optimal == rep.cases, f"{name}: {rep.cases - rep.optimal} results are not optimal"


def test_tnum_range_every_8bit_interval():
    rep = sd.check_tnum_range(UNARY_BITS)
    assert rep.cases == 256 * 257 // 2
    assert rep.sound, rep.unsound


def test_tnum_range_matches_the_kernel_examples():
    assert tn.range_(4, 4) == Tnum(4, 0)
    assert tn.range_(0, 7) == Tnum(0, 7)
    assert tn.range_(3, 4) == Tnum(0, 7)  # chi = 7, bits = 3
    assert tn.range_(0, (1 << 64) - 1) == tn.UNKNOWN
    assert tn.range_(1 << 63, (1 << 64) - 1) == Tnum(1 << 63, (1 << 63) - 1)


# --- 64-bit spot checks ---------------------------------------------------------------------

U64 = st.integers(0, (1 << 64) - 1)


@st.composite
def tnum64_and_member(draw):
    value, mask, noise = draw(U64), draw(U64), draw(U64)
    t = Tnum(value & ~mask, mask)
    return t, (value & ~mask) | (noise & mask)


@given(tnum64_and_member(), tnum64_and_member())
def test_tnum_binary_ops_are_sound_at_64_bits(a, b):
    (ta, x), (tb, y) = a, b
    m = (1 << 64) - 1
    assert tn.contains(tn.add(ta, tb), (x + y) & m)
    assert tn.contains(tn.sub(ta, tb), (x - y) & m)
    assert tn.contains(tn.mul(ta, tb), (x * y) & m)
    assert tn.contains(tn.and_(ta, tb), x & y)
    assert tn.contains(tn.or_(ta, tb), x | y)
    assert tn.contains(tn.xor(ta, tb), x ^ y)
    assert tn.contains(tn.neg(ta), -x & m)
    assert tn.contains(tn.arshift(ta, y & 63), (rg.sx(x, 64) >> (y & 63)) & m)


# --- scalars: ALU transfer functions, every pair of a 4-bit family --------------------------

FAMILY = sd.scalar_family(SCALAR_BITS)
BRANCH_FAMILY = FAMILY[::3] + FAMILY[1::3][:52]
BINARY_ALU = (
    AluOp.BPF_ADD,
    AluOp.BPF_SUB,
    AluOp.BPF_MUL,
    AluOp.BPF_AND,
    AluOp.BPF_OR,
    AluOp.BPF_XOR,
    AluOp.BPF_LSH,
    AluOp.BPF_RSH,
    AluOp.BPF_ARSH,
    AluOp.BPF_DIV,
    AluOp.BPF_MOD,
)


def test_family_size():
    assert len(FAMILY) == 143
    assert len(BRANCH_FAMILY) == 96
    assert all(s.is_sane() for s in FAMILY)


@pytest.mark.parametrize("alu32", [False, True], ids=["alu64", "alu32"])
@pytest.mark.parametrize("op", BINARY_ALU, ids=lambda o: o.name)
def test_alu_transfer_every_pair_at_4_bits(op, alu32):
    rep = sd.check_alu(op, alu32, FAMILY)
    assert rep.cases > 0
    assert rep.sound, rep.unsound


@pytest.mark.parametrize("alu32", [False, True], ids=["alu64", "alu32"])
def test_neg_transfer_every_state_at_4_bits(alu32):
    bits = SCALAR_BITS
    nbits = bits // 2 if alu32 else bits

    def transfer(s: Scalar) -> None:
        rg.adjust_scalar(s, s, AluOp.BPF_NEG, alu32)

    rep = sd.check_unary("neg", FAMILY, transfer, lambda x: -x & ((1 << nbits) - 1))
    assert rep.sound, rep.unsound


@pytest.mark.parametrize("alu32", [False, True], ids=["alu64", "alu32"])
@pytest.mark.parametrize("op", BINARY_ALU[:9], ids=lambda o: o.name)
def test_alu_transfer_random_pairs_at_8_bits(op, alu32):
    rnd = random.Random(f"{op.name}-{alu32}")
    states = [sd.random_scalar(rnd, 8) for _ in range(600)]
    if op in (AluOp.BPF_LSH, AluOp.BPF_RSH, AluOp.BPF_ARSH):
        shifts = [Scalar.const(k, 8) for k in range(4 if alu32 else 8)]
        pairs = [(rnd.choice(states), rnd.choice(shifts)) for _ in range(1500)]
    else:
        pairs = [(rnd.choice(states), rnd.choice(states)) for _ in range(1500)]
    rep = sd.check_alu(op, alu32, states, pairs=pairs, sample=12, rnd=rnd)
    assert rep.cases == 1500
    assert rep.sound, rep.unsound


def test_casts_and_sign_extension_every_state_at_8_bits():
    rnd = random.Random(7)
    states = sd.scalar_family(8) + [sd.random_scalar(rnd, 8) for _ in range(300)]
    for size_bits in (2, 4):
        rep = sd.check_unary(
            f"coerce{size_bits}",
            states,
            lambda s, n=size_bits: rg.coerce_reg_to_size(s, n),
            lambda x, n=size_bits: x & ((1 << n) - 1),
        )
        assert rep.sound, rep.unsound

    def sext(nbits, to_bits):
        def f(x: int) -> int:
            v = rg.sx(x & ((1 << nbits) - 1), nbits)
            return v & ((1 << to_bits) - 1)

        return f

    for nbits in (2, 4):  # "s8/s16" of an 8-bit register: 2 and 4 bits
        rep = sd.check_unary(
            f"sext{nbits}", states, lambda s, n=nbits: rg._sign_extend(s, n, 8), sext(nbits, 8)
        )
        assert rep.sound, rep.unsound
    rep = sd.check_unary(
        "sext2_32",
        states,
        lambda s: (rg._sign_extend(s, 2, 4), rg.zext_32_to_64(s), rg.reg_bounds_sync(s)),
        sext(2, 4),
    )
    assert rep.sound, rep.unsound


def test_zext_every_state_at_4_bits():
    rep = sd.check_unary(
        "zext", FAMILY, lambda s: (rg.zext_32_to_64(s), rg.reg_bounds_sync(s)), lambda x: x & 3
    )
    assert rep.sound, rep.unsound


# --- branches -------------------------------------------------------------------------------


@pytest.mark.parametrize("is32", [False, True], ids=["jmp64", "jmp32"])
@pytest.mark.parametrize("op", sd.CONDS, ids=lambda o: o.name)
def test_branch_refinement_every_pair_at_4_bits(op, is32):
    rep = sd.check_branch(op, is32, BRANCH_FAMILY)
    assert rep.cases == len(BRANCH_FAMILY) ** 2
    assert rep.sound, rep.unsound


@pytest.mark.parametrize("is32", [False, True], ids=["jmp64", "jmp32"])
def test_branch_refinement_random_pairs_at_8_bits(is32):
    rnd = random.Random(f"branch-{is32}")
    states = [sd.random_scalar(rnd, 8) for _ in range(200)]
    for op in sd.CONDS:
        pairs = [(rnd.choice(states), rnd.choice(states)) for _ in range(150)]
        rep = sd.check_branch(op, is32, states, pairs=pairs, sample=16, rnd=rnd)
        assert rep.sound, rep.unsound


def test_reg_bounds_sync_never_loses_a_member():
    rep = sd.check_sync(sd.raw_states(SCALAR_BITS))
    assert rep.cases == 81 * 28 * 28
    assert rep.sound, rep.unsound
    rnd = random.Random(3)
    rep = sd.check_sync(sd.raw_states(6, limit=4000, rnd=rnd))
    assert rep.sound, rep.unsound


# --- the seeded bug -------------------------------------------------------------------------


@pytest.mark.parametrize("alu32", [False, True], ids=["alu64", "alu32"])
def test_cve_2021_3490_mutant_is_caught(monkeypatch, alu32):
    """CVE-2021-3490: the 32-bit AND bounds kept the old operand's bounds when both subregisters
    were known. Injected into adjust_scalar, the exhaustive check must find counterexamples."""
    monkeypatch.setattr(rg, "scalar32_min_max_and", sd.cve_2021_3490_and)
    rep = sd.check_alu(AluOp.BPF_AND, alu32, FAMILY)
    assert not rep.sound
    # e.g. 0b??10 & 0b0001: low half 0 known, but the old u32 bounds claim 2.
    assert any("missing" in u for u in rep.unsound)


def test_cve_2021_3490_mutant_is_caught_by_random_sampling_at_8_bits(monkeypatch):
    monkeypatch.setattr(rg, "scalar32_min_max_and", sd.cve_2021_3490_and)
    rnd = random.Random(0)
    states = [Scalar.from_tnum(Tnum(v, 0xF0), 8) for v in range(16)] + [Scalar.const(v, 8) for v in range(16)]
    rep = sd.check_alu(AluOp.BPF_AND, False, states, sample=16, rnd=rnd)
    assert not rep.sound


# --- a few exact results of the kernel (from its verifier log) ------------------------------


def test_kernel_logged_states():
    # 6.18.44: r1 = *(u32 *)ctx; r1 &= 8; r1 |= 5; r0 = 26; r0 *= r1
    r1 = Scalar.from_urange(0, 0xFFFFFFFF)
    rg.adjust_scalar(r1, Scalar.const(8), AluOp.BPF_AND, False)
    assert rg.format_scalar(r1) == "scalar(smin=smin32=0,smax=umax=smax32=umax32=8,var_off=(0x0; 0x8))"
    rg.adjust_scalar(r1, Scalar.const(5), AluOp.BPF_OR, False)
    assert r1.var_off == Tnum(5, 8) and (r1.umin, r1.umax) == (5, 13)
    r0 = Scalar.const(26)
    rg.adjust_scalar(r0, r1, AluOp.BPF_MUL, False)
    assert r0.var_off == Tnum(2, 0x1F0) and (r0.umin, r0.umax) == (130, 338)
