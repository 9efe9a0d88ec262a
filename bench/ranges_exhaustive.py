"""Every pair of W-bit intervals (default W = 8) through the verifier's range operators.

``python bench/ranges_exhaustive.py [--width 8] [--checks alu64:add,...] [--jobs 2] [--mutant]``

The scalar domain is a tnum plus unsigned and signed bounds of the register and of its low
half. The tnum operators are checked by ``bench/tnum_exhaustive.py``; this script checks the
*range* operators of ``reference_vm/verifier/ranges.py``, the functions themselves, on every
pair of W-bit intervals (2**W * (2**W + 1) / 2 = 32,896 intervals at 8 bits, so 1,082,146,816
pairs per check):

* ALU: ``scalar_min_max_{add,sub,mul,and,or,xor}`` (64-bit form, register of W bits) and
  ``scalar32_min_max_*`` (32-bit form: a register of 2W bits whose W-bit low half is the
  subregister), each on every pair of unsigned intervals (``u`` pass: the operands' unsigned
  bounds, and for and/or/xor their tnum, ``tnum_range`` of the interval, combined by the tnum
  operator as adjust_scalar does) and, for add/sub/mul, every pair of signed intervals (``s``
  pass); and/or/xor read no signed bound. lsh/rsh/arsh by every amount 0..W-1 on every interval
  (and lsh by the half width on every half-width signed interval, the s32 -> s64 rule); neg
  (``0 - x`` through the sub functions) on every interval.
* Branches: ``is_scalar_branch_taken`` and ``regs_refine_cond_op`` for JGT JGE JLT JLE (unsigned
  intervals), JSGT JSGE JSLT JSLE (signed), JEQ (both), 64-bit and 32-bit forms, on every pair;
  JNE on every interval against every constant; JSET and its reverse on every W-bit tnum against
  every constant.

For each pair the concrete side is exact: the table of ``x op y mod 2**W`` (or of the condition)
over all member pairs is reduced, first over ``y`` in B incrementally, then over ``x`` in every
interval A at once. An operator is *sound* when its output bounds hold the minimum and maximum
of the concrete results in both orders (unsigned, signed); a branch is sound when
``branch_taken`` never claims an outcome some member pair contradicts and, where it says -1,
the refined first operand holds every member that satisfies the condition with some member of
the second (bounds and tnum; JEQ: both operands). The second operand's refinement of a
condition is the first operand's of the flipped one (the code swaps them), which is checked
too.

Precision: an independent numpy transcription of Linux 6.18's formulas (kernel/bpf/verifier.c:
``scalar{32,}_min_max_*``, ``__scalar{32,64}_min_max_lsh``, ``is_scalar_branch_taken``,
``regs_refine_cond_op``; facts, the code written here) at the same width. OURS must be at least as
precise on every pair: every output interval inside the kernel's (``worse`` counts the pairs
where it is not), and a branch decided wherever the kernel decides it.

How OURS runs: the range functions are written with element-wise selections (``ranges._sel``,
``_min``, ``_max``) instead of ``if`` on values, so the right operand can be one interval (a
plain Scalar of ints) and the left every interval at once (a Scalar whose fields are numpy
int64 arrays); a scalar spot check of sampled pairs must agree with the vectorised results.

Not covered here: ``reg_bounds_sync`` and ``__update_reg_bounds`` (the synchronisation every
result goes through; ``tests/test_tnum.py`` checks them on raw 4-bit states) and the
combination of bounds with tnums tighter than their interval's.

``--mutant`` swaps in CVE-2021-3490's ``scalar32_min_max_and``
(``reference_vm.verifier.soundness.cve_2021_3490_and``) and must report it unsound (exit 1).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from reference_vm.isa import JmpOp  # noqa: E402
from reference_vm.verifier import ranges as rg  # noqa: E402
from reference_vm.verifier import soundness as sd  # noqa: E402
from reference_vm.verifier import tnum as tn  # noqa: E402
from reference_vm.verifier.ranges import JSET_NOT, Scalar  # noqa: E402
from reference_vm.verifier.tnum import Tnum  # noqa: E402

I64 = np.int64
FIELDS64 = ("umin", "umax", "smin", "smax")
FIELDS32 = ("u32_min", "u32_max", "s32_min", "s32_max")
BINARY = ("add", "sub", "mul", "and", "or", "xor")
SHIFTS = ("lsh", "rsh", "arsh")
ORDER_CONDS = {
    "jgt": JmpOp.BPF_JGT,
    "jge": JmpOp.BPF_JGE,
    "jlt": JmpOp.BPF_JLT,
    "jle": JmpOp.BPF_JLE,
    "jsgt": JmpOp.BPF_JSGT,
    "jsge": JmpOp.BPF_JSGE,
    "jslt": JmpOp.BPF_JSLT,
    "jsle": JmpOp.BPF_JSLE,
}
ARITH: dict[str, Callable] = {  # type: ignore[type-arg]
    "add": lambda x, y: x + y,
    "sub": lambda x, y: x - y,
    "mul": lambda x, y: x * y,
    "and": lambda x, y: x & y,
    "or": lambda x, y: x | y,
    "xor": lambda x, y: x ^ y,
}
TNUM_OP = {"and": tn.and_, "or": tn.or_, "xor": tn.xor}
SPOT = 3  # scalar spot checks per chunk


def all_checks() -> list[str]:
    out = []
    for form in ("alu64", "alu32"):
        out += [f"{form}:{op}" for op in (*BINARY, *SHIFTS, "neg")]
    for form in ("jmp64", "jmp32"):
        out += [f"{form}:{c}" for c in (*ORDER_CONDS, "jeq", "jne", "jset", "jset_not")]
    return out


# --- widths, intervals and exact reductions ---------------------------------------------------


@dataclass(frozen=True)
class Geometry:
    """W-bit operands: in the 64-bit form the register is W bits wide, in the 32-bit form it is
    2W bits and the W-bit subregister carries the operands."""

    w: int
    form64: bool

    @property
    def bits(self) -> int:
        return self.w if self.form64 else 2 * self.w

    @property
    def fields(self) -> tuple[str, str, str, str]:
        return FIELDS64 if self.form64 else FIELDS32  # type: ignore[return-value]


def sx(x, w: int):  # type: ignore[no-untyped-def]
    """Sign extension for the concrete side and the kernel transcription (kept apart from
    ``ranges.sx``, which is under test)."""
    return x - ((x >> (w - 1) & 1) << w)


@cache
def intervals(w: int, signed: bool) -> tuple[np.ndarray, np.ndarray]:
    """Every interval ``[lo, hi]`` of W-bit values in lexicographic order of (lo, hi): member
    index ``i`` is the value ``i`` (unsigned) or ``i - 2**(W-1)`` (signed)."""
    n = 1 << w
    a, b = np.triu_indices(n)
    off = (n >> 1) if signed else 0
    return (a - off).astype(I64), (b - off).astype(I64)


@cache
def _tri_index(w: int) -> tuple[np.ndarray, np.ndarray]:
    n = 1 << w
    a, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    idx = a + j
    valid = idx < n
    return np.minimum(idx, n - 1), valid


def tri(g: np.ndarray, ufunc: np.ufunc, fill: int) -> np.ndarray:
    """For rows ``g[k]`` (over member indices), the reduction of every interval of indices, in
    the order of :func:`intervals`: shape (k, number of intervals)."""
    w = (g.shape[-1]).bit_length() - 1
    idx, valid = _tri_index(w)
    m = g[:, idx]
    m[:, ~valid] = fill
    ufunc.accumulate(m, axis=2, out=m)
    return m[:, valid]


def members(w: int, signed: bool) -> np.ndarray:
    """Member index -> W-bit pattern."""
    n = 1 << w
    v = np.arange(n, dtype=I64) - ((n >> 1) if signed else 0)
    return v & (n - 1)


@dataclass
class Tally:
    """One check's counts."""

    name: str
    pairs: int = 0
    unsound: int = 0
    worse: int = 0  # less precise than the kernel's formulas
    better: int = 0
    optimal: int = 0  # output bounds equal the exact ones (ALU)
    spot: int = 0
    spot_bad: int = 0
    example: str = ""
    worse_example: str = ""
    passes: list[str] = field(default_factory=list)

    def merge(self, o: Tally) -> None:
        for f in ("pairs", "unsound", "worse", "better", "optimal", "spot", "spot_bad"):
            setattr(self, f, getattr(self, f) + getattr(o, f))
        self.example = self.example or o.example
        self.worse_example = self.worse_example or o.worse_example
        self.passes += [p for p in o.passes if p not in self.passes]


# --- scalars with array fields ----------------------------------------------------------------


def scalar(g: Geometry, bounds: dict[str, object], var_off: Tnum | None = None) -> Scalar:
    """A Scalar of ``g.bits`` bits: unbounded, with the given fields (ints or arrays)."""
    s = Scalar(g.bits)
    for f, v in bounds.items():
        setattr(s, f, v.copy() if isinstance(v, np.ndarray) else v)
    if var_off is not None:
        s.var_off = var_off
    return s


@cache
def range_tnums(w: int) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = intervals(w, False)
    ts = [tn.range_(int(a), int(b), w) for a, b in zip(lo, hi, strict=True)]
    return np.array([t.value for t in ts], I64), np.array([t.mask for t in ts], I64)


def operand(g: Geometry, signed: bool, sel: slice | np.ndarray | int) -> Scalar:
    """The interval(s) ``sel`` of the pass as a Scalar: bounds of the (sub)register from the
    interval, var_off its tnum_range (unsigned pass) or unknown (signed pass)."""
    lo, hi = intervals(g.w, signed)
    lo, hi = lo[sel], hi[sel]
    u_lo, u_hi, s_lo, s_hi = g.fields
    if signed:
        s = scalar(g, {s_lo: lo, s_hi: hi}, Tnum(0, (1 << g.w) - 1))
    else:
        tv, tm = range_tnums(g.w)
        s = scalar(g, {u_lo: lo, u_hi: hi}, Tnum(tv[sel], tm[sel]))
    if isinstance(sel, int):  # a plain Scalar of Python ints
        for f in s.__slots__[1:]:
            v = getattr(s, f)
            if isinstance(v, Tnum):
                s.var_off = Tnum(int(v.value), int(v.mask))
            else:
                setattr(s, f, int(v))
    return s


def outputs(s: Scalar, g: Geometry, n: int) -> list[np.ndarray]:
    return [np.broadcast_to(np.asarray(getattr(s, f), I64), (n,)) for f in g.fields]


def spot_ok(ours: list[np.ndarray], k: int, ref: Scalar, g: Geometry) -> bool:
    return all(int(o[k]) == getattr(ref, f) for o, f in zip(ours, g.fields, strict=True))


# --- the kernel's formulas (Linux 6.18), independent of reference_vm ---------------------------


def _kbounds(w: int):  # type: ignore[no-untyped-def]
    return (1 << w) - 1, -(1 << (w - 1)), (1 << (w - 1)) - 1


def kernel_alu(op: str, w: int, d: list, s: list, t: tuple | None) -> list:  # type: ignore[type-arg]
    """``scalar{32,}_min_max_<op>`` at W bits: returns [umin, umax, smin, smax]. ``t`` is the
    result var_off (and/or/xor) and the known flag."""
    um, smn, smx = _kbounds(w)
    dumin, dumax, dsmin, dsmax = d
    sumin, sumax, ssmin, ssmax = s
    if op in ("add", "sub"):
        if op == "add":
            a, b = dsmin + ssmin, dsmax + ssmax
            lo, hi = dumin + sumin, dumax + sumax
            lo_o, hi_o = lo > um, hi > um
            full = ~lo_o & hi_o  # !min_overflow && max_overflow
        else:
            a, b = dsmin - ssmax, dsmax - ssmin
            lo, hi = dumin - sumax, dumax - sumin
            lo_o, hi_o = lo < 0, hi < 0
            full = lo_o & ~hi_o  # min_underflow && !max_underflow
        so = (a < smn) | (a > smx) | (b < smn) | (b > smx)
        return [
            np.where(full, 0, lo & um),
            np.where(full, um, hi & um),
            np.where(so, smn, a),
            np.where(so, smx, b),
        ]
    if op == "mul":
        uo = (dumax * sumax > um) | (dumin * sumin > um)
        p = np.stack(np.broadcast_arrays(dsmin * ssmin, dsmin * ssmax, dsmax * ssmin, dsmax * ssmax))
        so = ((p < smn) | (p > smx)).any(axis=0)
        return [
            np.where(uo, 0, dumin * sumin),
            np.where(uo, um, dumax * sumax),
            np.where(so, smn, p.min(axis=0)),
            np.where(so, smx, p.max(axis=0)),
        ]
    assert t is not None
    tv, tmask, known = t
    if op == "and":
        umin, umax = tv, np.minimum(dumax, sumax)
    elif op == "or":
        umin, umax = np.maximum(dumin, sumin), tv | tmask
    else:
        umin, umax = tv, tv | tmask
    umin, umax = np.where(known, tv, umin), np.where(known, tv, umax)
    ok = sx(umin, w) <= sx(umax, w)
    return [umin, umax, np.where(ok, sx(umin, w), smn), np.where(ok, sx(umax, w), smx)]


def kernel_shift(op: str, w: int, form64: bool, k: int, d: list, s32: tuple | None) -> list:  # type: ignore[type-arg]
    """``__scalar{64,32}_min_max_{lsh,rsh,arsh}`` by the constant ``k`` at W bits. The 64-bit
    left shift by the half width takes its signed bounds from the s32 ones (6.18's form; some
    earlier kernels required them to be non-negative, which is less precise)."""
    um, smn, smx = _kbounds(w)
    umin, umax, smin, smax = d
    if op == "lsh":
        full = umax > (1 << (w - 1 - k))
        ru = [np.where(full, 0, umin << k), np.where(full, um, umax << k)]
        if form64 and s32 is not None and k == w // 2:
            return [*ru, s32[0] << k, s32[1] << k]
        return [*ru, smn, smx]
    if op == "rsh":
        return [umin >> k, umax >> k, smn, smx]
    return [0, um, smin >> k, smax >> k]


def kernel_taken(cond: str, w: int, r1: list, r2: list, t1=None, t2=None, sub=None):  # type: ignore[no-untyped-def]
    """``is_scalar_branch_taken`` on [umin, umax, smin, smax] (+ tnums for JEQ/JNE, + the other
    half's bounds ``sub`` = (r1 u32/s32 bounds, r2 u32/s32 bounds) for 64-bit JEQ/JNE)."""
    umin1, umax1, smin1, smax1 = r1
    umin2, umax2, smin2, smax2 = r2
    if cond in ("jeq", "jne"):
        (v1, m1), (v2, m2) = t1, t2
        both = (m1 == 0) & (m2 == 0)
        mu = ~m1 & ~m2
        disjoint = (v1 & mu) != (v2 & mu)  # tnum_overlap
        disjoint = disjoint | (umin1 > umax2) | (umax1 < umin2) | (smin1 > smax2) | (smax1 < smin2)
        if sub is not None:
            a, b = sub
            disjoint = disjoint | (a[0] > b[1]) | (a[1] < b[0]) | (a[2] > b[3]) | (a[3] < b[2])
        eq = np.where(both, np.where(v1 == v2, 1, 0), np.where(disjoint, 0, -1))
        return eq if cond == "jeq" else np.where(eq < 0, -1, 1 - eq)
    always, never = {
        "jgt": (umin1 > umax2, umax1 <= umin2),
        "jge": (umin1 >= umax2, umax1 < umin2),
        "jlt": (umax1 < umin2, umin1 >= umax2),
        "jle": (umax1 <= umin2, umin1 > umax2),
        "jsgt": (smin1 > smax2, smax1 <= smin2),
        "jsge": (smin1 >= smax2, smax1 < smin2),
        "jslt": (smax1 < smin2, smin1 >= smax2),
        "jsle": (smax1 <= smin2, smin1 > smax2),
    }[cond]
    return np.where(always, 1, np.where(never, 0, -1))


def kernel_refine(cond: str, w: int, r1: list, r2: list) -> tuple[list, list]:  # type: ignore[type-arg]
    """``regs_refine_cond_op`` on [umin, umax, smin, smax] for the ordering conditions and JEQ."""
    um = (1 << w) - 1
    r1, r2 = [np.asarray(x) for x in r1], [np.asarray(x) for x in r2]
    flip = {"jge": "jle", "jgt": "jlt", "jsge": "jsle", "jsgt": "jslt"}
    if cond in flip:
        b, a = kernel_refine(flip[cond], w, r2, r1)
        return a, b
    a, b = list(r1), list(r2)
    if cond == "jeq":
        a = [
            np.maximum(r1[0], r2[0]),
            np.minimum(r1[1], r2[1]),
            np.maximum(r1[2], r2[2]),
            np.minimum(r1[3], r2[3]),
        ]
        return a, list(a)
    if cond == "jle":
        a[1], b[0] = np.minimum(r1[1], r2[1]), np.maximum(r1[0], r2[0])
    elif cond == "jlt":
        a[1], b[0] = np.minimum(r1[1], (r2[1] - 1) & um), np.maximum((r1[0] + 1) & um, r2[0])
    elif cond == "jsle":
        a[3], b[2] = np.minimum(r1[3], r2[3]), np.maximum(r1[2], r2[2])
    elif cond == "jslt":
        a[3], b[2] = np.minimum(r1[3], sx((r2[3] - 1) & um, w)), np.maximum(sx((r1[2] + 1) & um, w), r2[2])
    return a, b


# --- comparing intervals ----------------------------------------------------------------------


def contains(out: list, lo_u, hi_u, lo_s, hi_s):  # type: ignore[no-untyped-def]
    """Output bounds [umin, umax, smin, smax] hold the exact extremes."""
    return (out[0] <= lo_u) & (hi_u <= out[1]) & (out[2] <= lo_s) & (hi_s <= out[3])


def precision(ours: list, kern: list) -> tuple[np.ndarray, np.ndarray]:
    """(worse, better) masks: OURS not inside the kernel's, strictly inside."""
    inside = (ours[0] >= kern[0]) & (ours[1] <= kern[1]) & (ours[2] >= kern[2]) & (ours[3] <= kern[3])
    same = (ours[0] == kern[0]) & (ours[1] == kern[1]) & (ours[2] == kern[2]) & (ours[3] == kern[3])
    return ~inside, inside & ~same


def _note(t: Tally, bad: np.ndarray, describe: Callable[[int], str], attr: str = "example") -> None:
    if bad.any() and not getattr(t, attr):
        setattr(t, attr, describe(int(np.flatnonzero(bad)[0])))


# --- ALU checks -------------------------------------------------------------------------------


def our_alu(op: str, g: Geometry, mutant: bool) -> Callable[[Scalar, Scalar], None]:
    if mutant and op == "and" and not g.form64:
        f = sd.cve_2021_3490_and
    else:
        f = getattr(rg, f"scalar{'' if g.form64 else '32'}_min_max_{op}")
    if op not in TNUM_OP:
        return f

    def with_tnum(dst: Scalar, src: Scalar) -> None:
        dst.var_off = TNUM_OP[op](dst.var_off, src.var_off)  # adjust_scalar's order
        f(dst, src)

    return with_tnum


def check_alu_binary(op: str, g: Geometry, signed: bool, c: int, mutant: bool) -> Tally:
    """Every left interval against the right intervals whose first member index is ``c``."""
    w = g.w
    t = Tally(f"{'alu64' if g.form64 else 'alu32'}:{op}", passes=["s" if signed else "u"])
    pat = members(w, signed)
    z = ARITH[op](pat[:, None], pat[None, :]) & ((1 << w) - 1)  # z[x, y]
    zs = sx(z, w)
    n = 1 << w
    ys = np.arange(c, n)
    # reductions over y in [c, d] for every d (rows), then over every interval of x
    cols = z[:, c:]
    gu_min = np.minimum.accumulate(cols, axis=1).T
    gu_max = np.maximum.accumulate(cols, axis=1).T
    gs_min = np.minimum.accumulate(zs[:, c:], axis=1).T
    gs_max = np.maximum.accumulate(zs[:, c:], axis=1).T
    lo_all, hi_all = intervals(w, signed)
    nA = len(lo_all)
    f = our_alu(op, g, mutant)
    u_lo, u_hi, s_lo, s_hi = g.fields
    big = 1 << (2 * w + 2)
    rnd = random.Random(c * 7919 + len(op))
    for chunk in np.array_split(np.arange(len(ys)), max(1, len(ys) // 16)):
        e_umin = tri(gu_min[chunk], np.minimum, big).ravel()
        e_umax = tri(gu_max[chunk], np.maximum, -big).ravel()
        e_smin = tri(gs_min[chunk], np.minimum, big).ravel()
        e_smax = tri(gs_max[chunk], np.maximum, -big).ravel()
        bidx = np.array([_interval_index(w, c, c + int(k)) for k in chunk])
        dst = operand(g, signed, np.tile(np.arange(nA), len(chunk)))
        src = operand(g, signed, np.repeat(bidx, nA))
        d_in = [np.broadcast_to(np.asarray(getattr(dst, x)), (len(chunk) * nA,)) for x in g.fields]
        s_in = [np.broadcast_to(np.asarray(getattr(src, x)), (len(chunk) * nA,)) for x in g.fields]
        tres = None
        if op in TNUM_OP:
            r = TNUM_OP[op](dst.var_off, src.var_off)
            # the kernel tests the *result* var_off (already computed) and the source
            known = (r.mask & ((1 << w) - 1) == 0) & (src.var_off.mask & ((1 << w) - 1) == 0)
            tres = ((r.value & ((1 << w) - 1)), r.mask & ((1 << w) - 1), known)
        f(dst, src)
        out = outputs(dst, g, len(chunk) * nA)
        ok = contains(out, e_umin, e_umax, e_smin, e_smax)
        t.pairs += ok.size
        t.unsound += int((~ok).sum())
        t.optimal += int(
            ((out[0] == e_umin) & (out[1] == e_umax) & (out[2] == e_smin) & (out[3] == e_smax)).sum()
        )
        kern = kernel_alu(op, w, d_in, s_in, tres)
        worse, better = precision(out, [np.broadcast_to(np.asarray(k), out[0].shape) for k in kern])
        t.worse += int(worse.sum())
        t.better += int(better.sum())

        def describe(i: int, out=out, d_in=d_in, s_in=s_in, e=(e_umin, e_umax, e_smin, e_smax)) -> str:
            pick = [[int(x[i]) for x in v] for v in (d_in, s_in, out, e)]
            return f"{t.name} [{'s' if signed else 'u'}] {pick[0]} op {pick[1]} -> {pick[2]}, exact {pick[3]}"

        _note(t, ~ok, describe)
        _note(t, worse, describe, "worse_example")
        for _ in range(SPOT):  # the same function on plain ints
            i = rnd.randrange(len(chunk) * nA)
            a = operand(g, signed, int(i % nA))
            b = operand(g, signed, int(bidx[i // nA]))
            our_alu(op, g, mutant)(a, b)
            t.spot += 1
            t.spot_bad += not spot_ok(out, i, a, g)
    return t


@cache
def _row_starts(w: int) -> np.ndarray:
    n = 1 << w
    return np.concatenate([[0], np.cumsum(np.arange(n, 0, -1))])


def _interval_index(w: int, a: int, b: int) -> int:
    return int(_row_starts(w)[a]) + (b - a)


def check_unary(op: str, g: Geometry, signed: bool, mutant: bool) -> Tally:
    """Shifts by every constant amount, and neg, on every interval."""
    w = g.w
    n = 1 << w
    m = n - 1
    t = Tally(f"{'alu64' if g.form64 else 'alu32'}:{op}", passes=["s" if signed else "u"])
    pat = members(w, signed)
    lo_all, _ = intervals(w, signed)
    nA = len(lo_all)
    amounts = range(w) if op in SHIFTS else [0]
    for k in amounts:
        if op == "lsh":
            z = (pat << k) & m
        elif op == "rsh":
            z = pat >> k
        elif op == "arsh":
            z = (sx(pat, w) >> k) & m
        else:
            z = -pat & m
        zs = sx(z, w)
        e = [
            tri(z[None], np.minimum, n)[0],
            tri(z[None], np.maximum, -n)[0],
            tri(zs[None], np.minimum, n)[0],
            tri(zs[None], np.maximum, -n)[0],
        ]
        x = operand(g, signed, np.arange(nA))
        d_in = [np.broadcast_to(np.asarray(getattr(x, f)), (nA,)) for f in g.fields]
        if op == "neg":
            res = scalar(g, {})
            rg.mark_known(res, 0)
            (rg.scalar_min_max_sub if g.form64 else rg.scalar32_min_max_sub)(res, x)
            kern = kernel_alu("sub", w, [0, 0, 0, 0], d_in, None)
        else:
            res = x
            src = Scalar.const(k, g.bits)
            getattr(rg, f"scalar{'' if g.form64 else '32'}_min_max_{op}")(res, src)
            kern = kernel_shift(op, w, g.form64, k, d_in, (x.s32_min, x.s32_max))
        out = outputs(res, g, nA)
        ok = contains(out, *e)
        t.pairs += nA
        t.unsound += int((~ok).sum())
        t.optimal += int(((out[0] == e[0]) & (out[1] == e[1]) & (out[2] == e[2]) & (out[3] == e[3])).sum())
        worse, better = precision(out, [np.broadcast_to(np.asarray(v), (nA,)) for v in kern])
        t.worse += int(worse.sum())
        t.better += int(better.sum())
        _note(
            t,
            ~ok,
            lambda i, k=k, out=out, d_in=d_in: (
                f"{t.name} {k}: {[int(v[i]) for v in d_in]} -> {[int(v[i]) for v in out]}"
            ),
        )
    if op == "lsh" and g.form64 and w >= 4:
        t.merge(check_lsh_half(g))
    return t


def check_lsh_half(g: Geometry) -> Tally:
    """``x << W/2`` in the 64-bit form: the signed bounds come from the s32 ones; every half-width
    signed interval of the low half."""
    w, h = g.w, g.w // 2
    t = Tally("alu64:lsh", passes=["s32"])
    lo_all, hi_all = intervals(h, True)
    x = Scalar(g.bits)
    x.s32_min, x.s32_max = lo_all.copy(), hi_all.copy()
    rg.scalar_min_max_lsh(x, Scalar.const(h, g.bits))
    for i, (a, b) in enumerate(zip(lo_all, hi_all, strict=True)):
        zs = [sx((v & ((1 << h) - 1)) << h & ((1 << w) - 1), w) for v in range(int(a), int(b) + 1)]
        smin, smax = int(np.asarray(x.smin)[i]), int(np.asarray(x.smax)[i])
        t.pairs += 1
        if not (smin <= min(zs) and max(zs) <= smax):
            t.unsound += 1
            t.example = t.example or f"alu64:lsh {h} s32 [{a}, {b}] -> s [{smin}, {smax}]"
        ks = (int(a) << h, int(b) << h)
        if smin < ks[0] or smax > ks[1]:
            t.worse += 1
        elif (smin, smax) != ks:
            t.better += 1
    return t


# --- branch checks ----------------------------------------------------------------------------


def concrete_cond(cond: str, x: np.ndarray, y: np.ndarray, w: int) -> np.ndarray:
    sxx, syy = sx(x, w), sx(y, w)
    return {
        "jeq": lambda: x == y,
        "jne": lambda: x != y,
        "jgt": lambda: x > y,
        "jge": lambda: x >= y,
        "jlt": lambda: x < y,
        "jle": lambda: x <= y,
        "jsgt": lambda: sxx > syy,
        "jsge": lambda: sxx >= syy,
        "jslt": lambda: sxx < syy,
        "jsle": lambda: sxx <= syy,
        "jset": lambda: (x & y) != 0,
        "jset_not": lambda: (x & y) == 0,
    }[cond]()


def cond_op(cond: str):  # type: ignore[no-untyped-def]
    return {"jeq": JmpOp.BPF_JEQ, "jne": JmpOp.BPF_JNE, "jset": JmpOp.BPF_JSET, "jset_not": JSET_NOT}.get(
        cond
    ) or ORDER_CONDS[cond]


def _sat_reductions(sat: np.ndarray, pat: np.ndarray, w: int) -> list[np.ndarray]:
    """For rows ``sat[k, x]`` (member x satisfies the condition with some member of B_k): over
    every interval A, [any, umin, umax, smin, smax, AND, OR] of the satisfying members."""
    n = 1 << w
    big = 1 << (w + 2)
    ps = sx(pat, w)
    return [
        tri(sat, np.logical_or, False),
        tri(np.where(sat, pat, big), np.minimum, big),
        tri(np.where(sat, pat, -big), np.maximum, -big),
        tri(np.where(sat, ps, big), np.minimum, big),
        tri(np.where(sat, ps, -big), np.maximum, -big),
        tri(np.where(sat, pat, n - 1), np.bitwise_and, n - 1),
        tri(np.where(sat, pat, 0), np.bitwise_or, 0),
    ]


def _judge_branch(
    t: Tally,
    cond: str,
    g: Geometry,
    taken,
    kern_taken,
    red,
    any_all,
    refined: list,
    kern_refined: list,
    describe,
) -> None:  # type: ignore[no-untyped-def]
    """Count one batch: ``red`` the reductions of :func:`_sat_reductions`, ``any_all`` (every
    pair satisfies), ``refined`` [(bounds, tnum)] of the operands whose refinement is checked."""
    anyp = red[0].ravel()
    allp = any_all.ravel()
    taken = np.broadcast_to(np.asarray(taken), anyp.shape)
    bad = ((taken == 1) & ~allp) | ((taken == 0) & anyp)
    open_ = (taken == -1) & anyp
    mw = (1 << g.w) - 1
    for (bounds, var_off), kb in zip(refined, kern_refined, strict=True):
        ok = contains(bounds, *(r.ravel() for r in red[1:5]))
        if var_off is not None:
            v, m = np.asarray(var_off.value) & mw, np.asarray(var_off.mask) & mw
            ok &= ((red[5].ravel() & ~m) == v) & ((red[6].ravel() & ~m) == v)
        bad |= open_ & ~ok
        if kb is not None:
            worse, better = precision(bounds, [np.broadcast_to(np.asarray(k), anyp.shape) for k in kb])
            t.worse += int((open_ & worse).sum())
            t.better += int((open_ & better).sum())
            _note(t, open_ & worse, describe, "worse_example")
    kt = np.broadcast_to(np.asarray(kern_taken), anyp.shape)
    undecided = (kt != -1) & (taken == -1)
    t.worse += int(undecided.sum())
    t.better += int(((kt == -1) & (taken != -1)).sum())
    t.pairs += anyp.size
    t.unsound += int(bad.sum())
    _note(t, bad, describe)


def check_branch_pair(cond: str, g: Geometry, signed: bool, c: int) -> Tally:
    """Ordering conditions and JEQ: every left interval against the right intervals whose first
    member index is ``c``."""
    w = g.w
    n = 1 << w
    is32 = not g.form64
    t = Tally(f"{'jmp32' if is32 else 'jmp64'}:{cond}", passes=["s" if signed else "u"])
    pat = members(w, signed)
    sat_xy = concrete_cond(cond, pat[:, None], pat[None, :], w)
    any_x = np.logical_or.accumulate(sat_xy[:, c:], axis=1).T  # [d, x]: some y in [c, d]
    all_x = np.logical_and.accumulate(sat_xy[:, c:], axis=1).T
    lo_all, _ = intervals(w, signed)
    nA = len(lo_all)
    op = cond_op(cond)
    rnd = random.Random(c * 104729 + len(cond))
    for chunk in np.array_split(np.arange(n - c), max(1, (n - c) // 16)):
        red = _sat_reductions(any_x[chunk], pat, w)
        every = tri(all_x[chunk], np.logical_and, True)
        bidx = np.array([_interval_index(w, c, c + int(k)) for k in chunk])
        r1 = operand(g, signed, np.tile(np.arange(nA), len(chunk)))
        r2 = operand(g, signed, np.repeat(bidx, nA))
        size = len(chunk) * nA
        b1 = [np.broadcast_to(np.asarray(getattr(r1, f)), (size,)) for f in g.fields]
        b2 = [np.broadcast_to(np.asarray(getattr(r2, f)), (size,)) for f in g.fields]
        taken = rg.branch_taken(r1, r2, op, is32)
        mw = n - 1
        t1 = (np.asarray(r1.var_off.value) & mw, np.asarray(r1.var_off.mask) & mw)
        t2 = (np.asarray(r2.var_off.value) & mw, np.asarray(r2.var_off.mask) & mw)
        sub = None
        if not is32:
            sub = ([getattr(r1, f) for f in FIELDS32], [getattr(r2, f) for f in FIELDS32])
        kt = kernel_taken(cond, w, b1, b2, t1, t2, sub)
        rg.refine_cond_op(r1, r2, op, is32)
        o1 = outputs(r1, g, size)
        k1, k2 = kernel_refine(cond, w, b1, b2)
        refined = [(o1, r1.var_off if cond == "jeq" else None)]
        kref = [k1]
        if cond == "jeq":  # the second operand gets the same bounds and tnum
            refined.append((outputs(r2, g, size), r2.var_off))
            kref.append(k2)

        def describe(i: int, b1=b1, b2=b2, o1=o1, taken=taken, size=size) -> str:
            tk = int(np.broadcast_to(np.asarray(taken), (size,))[i])
            return (
                f"{t.name} [{'s' if signed else 'u'}] {[int(x[i]) for x in b1]} vs {[int(x[i]) for x in b2]}:"
                f" taken {tk}, r1 -> {[int(x[i]) for x in o1]}"
            )

        _judge_branch(t, cond, g, taken, kt, red, every, refined, kref, describe)
        for _ in range(SPOT):  # the same functions on plain ints
            i = rnd.randrange(size)
            a = operand(g, signed, int(i % nA))
            b = operand(g, signed, int(bidx[i // nA]))
            tk = rg.branch_taken(a, b, op, is32)
            rg.refine_cond_op(a, b, op, is32)
            t.spot += 1
            same = tk == int(np.broadcast_to(np.asarray(taken), (size,))[i]) and spot_ok(o1, i, a, g)
            t.spot_bad += not same
    return t


def check_branch_const(cond: str, g: Geometry, signed: bool) -> Tally:
    """JNE: every interval against every constant. JSET and its reverse: every W-bit tnum
    against every constant (they refine the tnum only)."""
    w = g.w
    n = 1 << w
    is32 = not g.form64
    t = Tally(f"{'jmp32' if is32 else 'jmp64'}:{cond}", passes=["s" if signed else "u"])
    op = cond_op(cond)
    if cond == "jne":
        pat = members(w, signed)
        lo_all, _ = intervals(w, signed)
        nA = len(lo_all)
        for v in range(n):
            sat = concrete_cond(cond, pat, np.int64(v), w)[None]
            red = _sat_reductions(sat, pat, w)
            every = tri(sat, np.logical_and, True)
            r1 = operand(g, signed, np.arange(nA))
            r2 = Scalar.const(v, g.bits)  # 32-bit form: the subregister, upper half 0
            b1 = [np.broadcast_to(np.asarray(getattr(r1, f)), (nA,)) for f in g.fields]
            b2 = [getattr(r2, f) for f in g.fields]
            taken = rg.branch_taken(r1, r2, op, is32)
            mw = n - 1
            t1 = (np.asarray(r1.var_off.value) & mw, np.asarray(r1.var_off.mask) & mw)
            sub = None if is32 else ([getattr(r1, f) for f in FIELDS32], [getattr(r2, f) for f in FIELDS32])
            kt = kernel_taken(cond, w, b1, b2, t1, (v, 0), sub)
            rg.refine_cond_op(r1, r2, op, is32)
            o1 = outputs(r1, g, nA)
            sv = sx(v, w)
            kb = [
                np.where(b1[0] == v, b1[0] + 1, b1[0]),
                np.where(b1[1] == v, b1[1] - 1, b1[1]),
                np.where(b1[2] == sv, b1[2] + 1, b1[2]),
                np.where(b1[3] == sv, b1[3] - 1, b1[3]),
            ]
            _judge_branch(
                t,
                cond,
                g,
                taken,
                kt,
                red,
                every,
                [(o1, None)],
                [kb],
                lambda i, v=v, b1=b1, o1=o1: (
                    f"{t.name} {[int(x[i]) for x in b1]} != {v} -> {[int(x[i]) for x in o1]}"
                ),
            )
        return t
    # JSET / JSET_NOT on tnums: members via the all-tnums layout
    tv, tm = _all_tnums(w)
    x = np.arange(n, dtype=I64)
    member = (x[None, :] & ~tm[:, None]) == tv[:, None]  # [tnum, x]
    nT = len(tv)
    for v in range(n):
        sat = member & concrete_cond(cond, x, np.int64(v), w)[None, :]
        anyp = sat.any(axis=1)
        allp = (~member | concrete_cond(cond, x, np.int64(v), w)[None, :]).all(axis=1)
        andv = np.bitwise_and.reduce(np.where(sat, x[None, :], n - 1), axis=1)
        orv = np.bitwise_or.reduce(np.where(sat, x[None, :], 0), axis=1)
        r1 = Scalar(g.bits)
        r1.var_off = Tnum(tv.copy(), tm.copy())
        r2 = Scalar.const(v, g.bits)  # 32-bit form: the subregister, upper half 0
        taken = np.broadcast_to(np.asarray(rg.branch_taken(r1, r2, op, is32)), (nT,))
        kv = tv & v
        k_taken = np.where(kv != 0, 1, np.where(((tv | tm) & v) == 0, 0, -1))
        if cond == "jset_not":
            k_taken = np.where(k_taken < 0, -1, 1 - k_taken)
        rg.refine_cond_op(r1, r2, op, is32)
        rv, rm = np.asarray(r1.var_off.value) & (n - 1), np.asarray(r1.var_off.mask) & (n - 1)
        ok = ((andv & ~rm) == rv) & ((orv & ~rm) == rv)
        bad = ((taken == 1) & ~allp) | ((taken == 0) & anyp) | ((taken == -1) & anyp & ~ok)
        # the kernel: JSET with a power of two ORs it in (mask & ~v); the reverse ANDs its
        # complement (mask & ~v as well)
        p2 = v != 0 and v & (v - 1) == 0
        km2 = tm & ~v if cond == "jset_not" or p2 else tm
        worse = (taken == -1) & anyp & ((rm & ~km2) != 0)
        t.pairs += nT
        t.unsound += int(bad.sum())
        t.worse += int(worse.sum()) + int(((k_taken != -1) & (taken == -1)).sum())
        t.better += int(((taken == -1) & anyp & (rm != km2) & ~worse).sum())
        _note(t, bad, lambda i, v=v, tk=taken: f"{t.name} ({tv[i]:#x}; {tm[i]:#x}) & {v:#x}: taken {tk[i]}")
    return t


@cache
def _all_tnums(w: int) -> tuple[np.ndarray, np.ndarray]:
    ts = sd.all_tnums(w)
    return np.array([t.value for t in ts], I64), np.array([t.mask for t in ts], I64)


# --- driver -----------------------------------------------------------------------------------


def tasks(checks: list[str], w: int, mutant: bool) -> list[tuple]:  # type: ignore[type-arg]
    """(check, geometry, signed, c) work items; c = None for checks done in one piece."""
    out: list[tuple] = []  # type: ignore[type-arg]
    for name in checks:
        form, op = name.split(":")
        g = Geometry(w, form.endswith("64"))
        if form.startswith("alu"):
            if op in BINARY:
                for signed in (False, True) if op in ("add", "sub", "mul") else (False,):
                    out += [(name, g, signed, c, mutant) for c in range(1 << w)]
            else:
                out += [(name, g, signed, None, mutant) for signed in (False, True)]
        elif op in ORDER_CONDS:
            signed = op.startswith("js")
            out += [(name, g, signed, c, mutant) for c in range(1 << w)]
        elif op == "jeq":
            out += [(name, g, signed, c, mutant) for signed in (False, True) for c in range(1 << w)]
        elif op == "jne":
            out += [(name, g, signed, None, mutant) for signed in (False, True)]
        else:
            out.append((name, g, False, None, mutant))
    # big rows (small c) first, for load balance
    out.sort(key=lambda x: -1 if x[3] is None else x[3])
    return out


def run_task(item: tuple) -> Tally:  # type: ignore[type-arg]
    name, g, signed, c, mutant = item
    form, op = name.split(":")
    if form.startswith("alu"):
        if op in BINARY:
            return check_alu_binary(op, g, signed, c, mutant)
        return check_unary(op, g, signed, mutant)
    if c is not None:
        return check_branch_pair(op, g, signed, c)
    return check_branch_const(op, g, signed)


def run(checks: list[str], w: int, jobs: int, mutant: bool) -> dict[str, Tally]:
    res: dict[str, Tally] = {n: Tally(n) for n in checks}
    items = tasks(checks, w, mutant)
    if jobs > 1:
        with mp.get_context("fork").Pool(jobs) as pool:
            for r in pool.imap_unordered(run_task, items):
                res[r.name].merge(r)
    else:
        for it in items:
            r = run_task(it)
            res[r.name].merge(r)
    return res


def table(res: dict[str, Tally]) -> str:
    rows = [
        "| check | passes | pairs | unsound | worse than kernel | better | exact (ALU) | spot checks |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for t in res.values():
        rows.append(
            f"| {t.name} | {','.join(t.passes)} | {t.pairs:,} | {t.unsound:,} | {t.worse:,} | {t.better:,} | "
            f"{t.optimal:,} | {t.spot - t.spot_bad:,}/{t.spot:,} |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width", type=int, default=8)
    ap.add_argument("--checks", default="all", help="comma-separated, e.g. alu32:and,jmp64:jlt (default all)")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument(
        "--mutant", action="store_true", help="CVE-2021-3490's scalar32_min_max_and (must be caught)"
    )
    ns = ap.parse_args(argv)
    known = all_checks()
    checks = known if ns.checks == "all" else [c for c in ns.checks.split(",") if c]
    bad = [c for c in checks if c not in known]
    problem = (
        f"unknown check {(bad or [''])[0]!r} (known: {', '.join(known)})"
        if bad or not checks
        else "--width must be an even number from 4 to 10"
        if not 4 <= ns.width <= 10 or ns.width % 2
        else "--jobs must be at least 1"
        if ns.jobs < 1
        else ""
    )
    if problem:
        print(f"ranges_exhaustive: {problem}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    res = run(checks, ns.width, ns.jobs, ns.mutant)
    dt = time.perf_counter() - t0
    print(
        f"# Range operators, every pair of {ns.width}-bit intervals "
        f"({len(intervals(ns.width, False)[0]):,} intervals), {datetime.now(UTC):%Y-%m-%d}, "
        f"{ns.jobs} job(s){', MUTANT scalar32_min_max_and (CVE-2021-3490)' if ns.mutant else ''}"
    )
    print(table(res))
    for t in res.values():
        if t.example:
            print(f"unsound: {t.example}")
        if t.worse_example:
            print(f"worse than kernel: {t.worse_example}")
    print(f"elapsed {dt:.1f} s")
    failed = any(t.unsound or t.worse or t.spot_bad for t in res.values())
    if failed:
        print("FAIL: unsound, less precise than the kernel, or a spot check disagrees")
        return 1
    print("OK: sound on every pair and at least as precise as the kernel's formulas")
    return 0


if __name__ == "__main__":
    sys.exit(main())
