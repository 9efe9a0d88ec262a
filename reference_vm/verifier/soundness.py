"""Exhaustive soundness checks of the abstract domains at small widths.

The tnum operators and the scalar transfer functions (:mod:`.tnum`, :mod:`.ranges`) take the
register width as a parameter; at 4 to 8 bits every abstract operand and every concrete
member can be enumerated. The checkers here return counterexamples instead of asserting, so a
test can also show that a seeded bug (CVE-2021-3490's ``scalar32_min_max_and``,
:func:`cve_2021_3490_and`) *is* caught.

Best abstractions of binary tnum operators are computed without enumerating member pairs:
``best(A, B)`` is the pair (AND, OR) of all concrete results, and for a tnum ``A`` with an
unknown bit, ``best(A, B) = best(A0, B) ⊔ best(A1, B)`` where ``A0``/``A1`` fix that bit
(dynamic programming over the 3**n tnums of n bits).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from ..isa import AluOp, JmpOp
from . import ranges as rg
from . import tnum as tn
from .ranges import CondOp, Scalar
from .tnum import Tnum


def all_tnums(bits: int) -> list[Tnum]:
    """Every valid tnum of ``bits`` bits (3**bits), constants first, then by unknown-bit count."""
    out = [Tnum(0, 0)]
    for b in range(bits):
        bit = 1 << b
        out = [
            t
            for base in out
            for t in (base, Tnum(base.value | bit, base.mask), Tnum(base.value, base.mask | bit))
        ]
    out.sort(key=lambda t: bin(t.mask).count("1"))
    return out


@dataclass
class Report:
    """What a check found: how many cases, the unsound ones (with an example), and precision."""

    name: str
    cases: int = 0
    unsound: list[str] = field(default_factory=list)
    optimal: int = 0  # results equal to the best abstraction
    less_precise_than_reference: list[str] = field(default_factory=list)
    more_precise_than_reference: int = 0

    @property
    def sound(self) -> bool:
        return not self.unsound

    def add_unsound(self, text: str) -> None:
        if len(self.unsound) < 20:
            self.unsound.append(text)
        else:
            self.unsound[-1] = "... and more"


class BestTable:
    """best(A, B) of a concrete binary operation for every pair of ``bits``-bit tnums."""

    def __init__(self, op: Callable[[int, int], int], bits: int) -> None:
        self.bits = bits
        self.tnums = all_tnums(bits)
        self.index = {t: i for i, t in enumerate(self.tnums)}
        n = len(self.tnums)
        m = (1 << bits) - 1
        split: list[tuple[int, int] | None] = []  # (index of A0, index of A1); None: a constant
        for t in self.tnums:
            if t.mask == 0:
                split.append(None)
            else:
                bit = t.mask & -t.mask
                split.append(
                    (self.index[Tnum(t.value, t.mask ^ bit)], self.index[Tnum(t.value | bit, t.mask ^ bit)])
                )
        self.ands: list[list[int]] = [[]] * n
        self.ors: list[list[int]] = [[]] * n
        for i, a in enumerate(self.tnums):
            sp = split[i]
            if sp is None:
                ands = [0] * n
                ors = [0] * n
                for j, b in enumerate(self.tnums):
                    spb = split[j]
                    if spb is None:
                        r = op(a.value, b.value) & m
                        ands[j] = ors[j] = r
                    else:
                        ands[j] = ands[spb[0]] & ands[spb[1]]
                        ors[j] = ors[spb[0]] | ors[spb[1]]
            else:
                a0, a1 = sp
                ands = [x & y for x, y in zip(self.ands[a0], self.ands[a1], strict=True)]
                ors = [x | y for x, y in zip(self.ors[a0], self.ors[a1], strict=True)]
            self.ands[i] = ands
            self.ors[i] = ors

    def best(self, i: int, j: int) -> Tnum:
        a, o = self.ands[i][j], self.ors[i][j]
        return Tnum(a, o ^ a)

    def contains_all(self, i: int, j: int, r: Tnum) -> bool:
        nm = ~r.mask
        return self.ands[i][j] & nm == r.value and self.ors[i][j] & nm == r.value


def check_tnum_binary(
    name: str,
    abstract: Callable[[Tnum, Tnum], Tnum],
    concrete: Callable[[int, int], int],
    bits: int,
    reference: Callable[[Tnum, Tnum], Tnum] | None = None,
    table: BestTable | None = None,
) -> Report:
    """Every pair of ``bits``-bit tnums: soundness, optimality count, and precision against a
    reference implementation (``result ⊑ reference``: at least as precise)."""
    table = table or BestTable(concrete, bits)
    rep = Report(name)
    tnums = table.tnums
    for i, a in enumerate(tnums):
        for j, b in enumerate(tnums):
            r = abstract(a, b)
            rep.cases += 1
            if not table.contains_all(i, j, r):
                rep.add_unsound(f"{name}({a}, {b}) = {r}, but best is {table.best(i, j)}")
                continue
            if r == table.best(i, j):
                rep.optimal += 1
            if reference is not None:
                ref = reference(a, b)
                if not tn.tnum_in(ref, r):
                    if len(rep.less_precise_than_reference) < 20:
                        rep.less_precise_than_reference.append(f"{name}({a}, {b}) = {r}, reference {ref}")
                elif r != ref:
                    rep.more_precise_than_reference += 1
    return rep


def check_tnum_unary(
    name: str,
    abstract: Callable[[Tnum], Tnum],
    concrete: Callable[[int], int],
    bits: int,
    reference: Callable[[Tnum], Tnum] | None = None,
) -> Report:
    """Every tnum of ``bits`` bits and every member."""
    rep = Report(name)
    m = (1 << bits) - 1
    for a in all_tnums(bits):
        r = abstract(a)
        rep.cases += 1
        results = {concrete(x) & m for x in tn.members(a)}
        bad = [x for x in results if not tn.contains(r, x)]
        if bad:
            rep.add_unsound(f"{name}({a}) = {r} misses {bad[0]:#x}")
            continue
        if r == tn.best(results):
            rep.optimal += 1
        if reference is not None:
            ref = reference(a)
            if not tn.tnum_in(ref, r):
                rep.less_precise_than_reference.append(f"{name}({a}) = {r}, reference {ref}")
            elif r != ref:
                rep.more_precise_than_reference += 1
    return rep


def check_tnum_range(bits: int) -> Report:
    """tnum_range(lo, hi) holds every value of [lo, hi], for every pair lo <= hi."""
    rep = Report("tnum_range")
    top = 1 << bits
    for lo in range(top):
        for hi in range(lo, top):
            r = tn.range_(lo, hi, bits)
            rep.cases += 1
            # [lo, hi] holds values with every bit up to the highest differing bit of lo and hi
            # both 0 and 1 (and agrees with lo above it): those bits must be unknown.
            need = (1 << (lo ^ hi).bit_length()) - 1
            if r.mask & need != need or not tn.contains(r, lo):
                rep.add_unsound(f"tnum_range({lo:#x}, {hi:#x}) = {r}")
    return rep


# --- scalars ---------------------------------------------------------------------------------


def gamma(s: Scalar) -> list[int]:
    """The concrete members of a scalar state (enumerated through its tnum)."""
    return [x for x in tn.members(s.var_off) if s.contains(x)]


def scalar_family(bits: int) -> list[Scalar]:
    """A structured family of synced, non-empty scalar states at ``bits`` bits: every tnum,
    unsigned and signed ranges with boundary-heavy endpoints, half-width (32-bit) ranges with
    an unknown upper half, and their intersections with a few tnums. Deduplicated."""
    m = (1 << bits) - 1
    h = bits // 2
    hm = (1 << h) - 1
    out: dict[tuple[int, ...], Scalar] = {}

    def add(s: Scalar) -> None:
        if s.is_sane() and gamma(s):
            out.setdefault(s.key(), s)

    for t in all_tnums(bits) if bits <= 4 else []:
        add(Scalar.from_tnum(t, bits))
    points = sorted({0, 1, 2, hm - 1, hm, hm + 1, m >> 1, (m >> 1) + 1, m - 1, m, 3 * (m >> 2)})
    for i, lo in enumerate(points):
        for hi in points[i:]:
            add(Scalar.from_urange(lo, hi, bits))
    spoints = sorted({rg.sx(p, bits) for p in points})
    for i, lo in enumerate(spoints):
        for hi in spoints[i:]:
            add(Scalar.from_srange(lo, hi, bits))
    hpoints = sorted({0, 1, hm >> 1, (hm >> 1) + 1, hm})
    for i, lo in enumerate(hpoints):
        for hi in hpoints[i:]:
            s = Scalar(bits)
            s.u32_min, s.u32_max = lo, hi
            rg.reg_bounds_sync(s)
            add(s)
            s = Scalar(bits)
            s.s32_min, s.s32_max = rg.sx(lo, h), rg.sx(hi, h)
            if s.s32_min <= s.s32_max:
                rg.reg_bounds_sync(s)
                add(s)
    return list(out.values())


def random_scalar(rnd: random.Random, bits: int) -> Scalar:
    """A random synced scalar state built from a random concrete value set's constraints."""
    m = (1 << bits) - 1
    while True:
        kind = rnd.randrange(4)
        if kind == 0:
            v = rnd.getrandbits(bits)
            mask = rnd.getrandbits(bits) & rnd.getrandbits(bits)
            s = Scalar.from_tnum(Tnum(v & ~mask, mask), bits)
        elif kind == 1:
            a, b = sorted((rnd.getrandbits(bits), rnd.getrandbits(bits)))
            s = Scalar.from_urange(a, b, bits)
        elif kind == 2:
            a, b = sorted((rg.sx(rnd.getrandbits(bits), bits), rg.sx(rnd.getrandbits(bits), bits)))
            s = Scalar.from_srange(a, b, bits)
        else:
            v = rnd.getrandbits(bits)
            s = (
                Scalar.const(v, bits)
                if rnd.random() < 0.5
                else Scalar.from_urange(v, min(m, v + rnd.randrange(4)), bits)
            )
        if s.is_sane() and gamma(s):
            return s


def concrete_alu(op: AluOp, x: int, y: int, nbits: int) -> int:
    """The interpreter's semantics of ``x op y`` on ``nbits``-bit operands (div/mod by 0 as BPF)."""
    m = (1 << nbits) - 1
    x &= m
    y &= m
    if op is AluOp.BPF_ADD:
        return (x + y) & m
    if op is AluOp.BPF_SUB:
        return (x - y) & m
    if op is AluOp.BPF_MUL:
        return (x * y) & m
    if op is AluOp.BPF_DIV:
        return x // y if y else 0
    if op is AluOp.BPF_MOD:
        return x % y if y else x
    if op is AluOp.BPF_OR:
        return x | y
    if op is AluOp.BPF_AND:
        return x & y
    if op is AluOp.BPF_XOR:
        return x ^ y
    if op is AluOp.BPF_LSH:
        return (x << (y & (nbits - 1))) & m
    if op is AluOp.BPF_RSH:
        return x >> (y & (nbits - 1))
    if op is AluOp.BPF_ARSH:
        return (rg.sx(x, nbits) >> (y & (nbits - 1))) & m
    if op is AluOp.BPF_NEG:
        return -x & m
    if op is AluOp.BPF_MOV:
        return y
    raise ValueError(op)


def _alu_result(op: AluOp, x: int, y: int, bits: int, alu32: bool) -> int:
    if alu32:
        return concrete_alu(op, x, y, bits // 2)  # zero-extended
    return concrete_alu(op, x, y, bits)


def check_alu(
    op: AluOp,
    alu32: bool,
    states: Sequence[Scalar],
    pairs: Iterable[tuple[Scalar, Scalar]] | None = None,
    sample: int = 0,
    rnd: random.Random | None = None,
    transfer: Callable[[Scalar, Scalar, AluOp, bool], None] = rg.adjust_scalar,
) -> Report:
    """``dst = dst op src`` over every pair of ``states`` (or the given ``pairs``): every member
    pair's concrete result must be a member of the abstract result. With ``sample``, at most that
    many members of each operand are tried (random sampling at wider widths)."""
    rep = Report(f"{'alu32' if alu32 else 'alu64'} {op.name}")
    bits = states[0].bits if states else 64
    members = {id(s): gamma(s) for s in states}
    todo = pairs if pairs is not None else ((a, b) for a in states for b in states)
    for a, b in todo:
        if op in (AluOp.BPF_LSH, AluOp.BPF_RSH, AluOp.BPF_ARSH) and not rg.is_safe_to_compute(op, b, alu32):
            continue  # the verifier only computes shifts by a known in-range amount
        r = a.copy()
        transfer(r, b, op, alu32)
        rep.cases += 1
        ma = members.get(id(a)) or gamma(a)
        mb = members.get(id(b)) or gamma(b)
        if sample and rnd is not None:
            ma = rnd.sample(ma, min(sample, len(ma)))
            mb = rnd.sample(mb, min(sample, len(mb)))
        for x in ma:
            for y in mb:
                z = _alu_result(op, x, y, bits, alu32)
                if not r.contains(z):
                    rep.add_unsound(f"{rep.name}: {a!r} op {b!r} -> {r!r}; {x:#x} op {y:#x} = {z:#x} missing")
                    break
            else:
                continue
            break
    return rep


def check_unary(
    name: str, states: Sequence[Scalar], transfer: Callable[[Scalar], None], concrete: Callable[[int], int]
) -> Report:
    rep = Report(name)
    for a in states:
        r = a.copy()
        transfer(r)
        rep.cases += 1
        for x in gamma(a):
            z = concrete(x)
            if not r.contains(z):
                rep.add_unsound(f"{name}: {a!r} -> {r!r}; {x:#x} -> {z:#x} missing")
                break
    return rep


CONDS: tuple[CondOp, ...] = (
    JmpOp.BPF_JEQ,
    JmpOp.BPF_JNE,
    JmpOp.BPF_JGT,
    JmpOp.BPF_JGE,
    JmpOp.BPF_JLT,
    JmpOp.BPF_JLE,
    JmpOp.BPF_JSGT,
    JmpOp.BPF_JSGE,
    JmpOp.BPF_JSLT,
    JmpOp.BPF_JSLE,
    JmpOp.BPF_JSET,
)


def check_branch(
    op: CondOp,
    is32: bool,
    states: Sequence[Scalar],
    pairs: Iterable[tuple[Scalar, Scalar]] | None = None,
    sample: int = 0,
    rnd: random.Random | None = None,
) -> Report:
    """``if r1 op r2``: ``branch_taken`` never claims a branch that some member pair contradicts,
    and ``refine`` keeps every member pair that satisfies (jump) or falsifies (fall-through) the
    condition in the refined states."""
    name = op if isinstance(op, str) else op.name
    rep = Report(f"{'jmp32' if is32 else 'jmp64'} {name}")
    bits = states[0].bits if states else 64
    nbits = bits // 2 if is32 else bits
    members = {id(s): gamma(s) for s in states}
    todo = pairs if pairs is not None else ((a, b) for a in states for b in states)
    for a, b in todo:
        ma, mb = members.get(id(a)) or gamma(a), members.get(id(b)) or gamma(b)
        if sample and rnd is not None:
            ma = rnd.sample(ma, min(sample, len(ma)))
            mb = rnd.sample(mb, min(sample, len(mb)))
        rep.cases += 1
        taken = rg.branch_taken(a, b, op, is32)
        outcomes = {(x, y): rg.concrete_cond(op, x, y, nbits) for x in ma for y in mb}
        if taken == 1 and not all(outcomes.values()) or taken == 0 and any(outcomes.values()):
            rep.add_unsound(f"{rep.name}: branch_taken({a!r}, {b!r}) = {taken} is wrong")
            continue
        if taken != -1:
            continue
        t1, t2, f1, f2 = a.copy(), b.copy(), a.copy(), b.copy()
        rg.refine(t1, t2, f1, f2, op, is32)
        for (x, y), cond in outcomes.items():
            r1, r2 = (t1, t2) if cond else (f1, f2)
            if not (r1.contains(x) and r2.contains(y)):
                rep.add_unsound(
                    f"{rep.name}: refine({a!r}, {b!r}) {'taken' if cond else 'not taken'} "
                    f"-> {r1!r}, {r2!r} loses ({x:#x}, {y:#x})"
                )
                break
    return rep


def check_sync(states: Iterable[Scalar]) -> Report:
    """``reg_bounds_sync`` never removes a member of a (raw, unsynced) state."""
    rep = Report("reg_bounds_sync")
    for s in states:
        before = [x for x in tn.members(s.var_off) if s.contains(x)]
        r = s.copy()
        rg.reg_bounds_sync(r)
        rep.cases += 1
        lost = [x for x in before if not r.contains(x)]
        if lost:
            rep.add_unsound(f"sync({s!r}) = {r!r} loses {lost[0]:#x}")
    return rep


def raw_states(bits: int, limit: int | None = None, rnd: random.Random | None = None) -> list[Scalar]:
    """Unsynced states: a tnum with independent unsigned, signed and half-width bounds."""
    m = (1 << bits) - 1
    h = bits // 2
    hm = (1 << h) - 1
    pts = sorted({0, 1, hm, hm + 1, m >> 1, (m >> 1) + 1, m})
    uranges = [(lo, hi) for i, lo in enumerate(pts) for hi in pts[i:]]
    spts = sorted({rg.sx(p, bits) for p in pts})
    sranges = [(lo, hi) for i, lo in enumerate(spts) for hi in spts[i:]]
    hpts = sorted({0, 1, hm >> 1, (hm >> 1) + 1, hm})
    h_ranges = [(lo, hi) for i, lo in enumerate(hpts) for hi in hpts[i:]]
    out = []
    for t in all_tnums(bits):
        for ur in uranges:
            for sr in sranges:
                s = Scalar(bits)
                s.var_off = t
                s.umin, s.umax = ur
                s.smin, s.smax = sr
                out.append(s)
    if rnd is not None:
        for s in rnd.sample(out, min(len(out), limit or len(out))):
            lo, hi = rnd.choice(h_ranges)
            s.u32_min, s.u32_max = lo, hi
            slo, shi = sorted((rg.sx(rnd.choice(hpts), h), rg.sx(rnd.choice(hpts), h)))
            s.s32_min, s.s32_max = slo, shi
    if limit is not None and len(out) > limit:
        out = (rnd or random.Random(0)).sample(out, limit)
    return out


# --- a seeded bug ----------------------------------------------------------------------------


def cve_2021_3490_and(dst: Scalar, src: Scalar) -> None:
    """The unsound ``scalar32_min_max_and`` of Linux 5.7–5.12 (CVE-2021-3490): when both 32-bit
    subregisters are known it returned without setting the 32-bit bounds, leaving those of the
    old operand, which the 64-bit var_off then "confirms" in reg_bounds_sync. (Element-wise like
    the real function, so that bench/ranges_exhaustive.py can run it.)"""
    old = (dst.u32_min, dst.u32_max, dst.s32_min, dst.s32_max)
    known = rg._subregs_known(dst, src)
    dst.u32_min = tn.subreg(dst.var_off, dst.bits).value
    dst.u32_max = rg._min(dst.u32_max, src.u32_max)
    rg._s32_from_u32(dst)
    new = (dst.u32_min, dst.u32_max, dst.s32_min, dst.s32_max)
    kept = [rg._sel(known, o, n) for o, n in zip(old, new, strict=True)]
    dst.u32_min, dst.u32_max, dst.s32_min, dst.s32_max = kept
