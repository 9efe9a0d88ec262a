"""Every pair of W-bit tnums (default W = 8) through the verifier's binary tnum operators.

``python bench/tnum_exhaustive.py [--width 8] [--ops add,sub,...] [--jobs 2] [--mutant]``

This is a script, not a test: CI keeps the 6-bit version (``tests/test_tnum.py``); at 8 bits
there are 3**8 = 6,561 tnums, so 43,046,721 abstract pairs per operator and 2**16 concrete
pairs behind each abstract one on average (4.3 billion (x, y) per operator). For every pair
``(A, B)`` and operator ``op`` it checks:

* soundness: every ``x op y mod 2**W`` with ``x`` in A and ``y`` in B is a member of OUR
  ``op(A, B)`` (:mod:`reference_vm.verifier.tnum`);
* precision against the best abstraction: OUR result equals ``best(A, B)``, the tnum of the set
  of concrete results (value = AND of the results, mask = OR ^ AND);
* precision against the kernel: an independent numpy re-implementation of Linux 6.18's
  kernel/bpf/tnum.c (:func:`kernel_op`), run on u64 like the C code and truncated to W bits.
  OUR result must be at least as precise (``tnum_in(kernel, ours)``); pairs are counted as
  equal / better / worse.

How each side is computed:

* OUR operators are the functions of ``reference_vm.verifier.tnum`` themselves, called once per
  left operand A (a plain Python ``Tnum`` of ints) with the right operand B being *every* W-bit
  tnum at once (``Tnum(value_array, mask_array)``, numpy uint64). The functions are plain integer
  code whose control flow depends on A only (``tnum.mul`` loops over the bits of A), so the
  same lines run, element-wise over B; a spot check calls the scalar function on sampled pairs
  of every chunk (``spot`` column: 10,000+ pairs per operator at 8 bits) and must agree.
* The concrete side is an exact enumeration: the 2**W x 2**W table of ``x op y`` is reduced
  (AND and OR) over the members of A for every mask of A, then over the members of B for every
  mask of B; for union/intersect the set is gamma(A) U gamma(B) / gamma(A) n gamma(B).
* 32-bit ("subreg") forms: there is no separate 32-bit tnum operator. The kernel's ALU32 path
  calls the same tnum_add/sub/mul/and/or/xor on the 64-bit var_off and then keeps the low half
  (``tnum_subreg``/``zext_32_to_64``). So at width W the 32-bit variant is the W/2-bit operator,
  and what makes it correct is that truncation commutes with the operator: the ``subreg``
  column counts pairs where ``low_half(op_W(A, B)) == op_{W/2}(low_half(A), low_half(B))``
  (must be every pair); the W/2-bit operator itself is then checked by ``--width W/2``.

The kernel's algorithms (Linux 6.18, kernel/bpf/tnum.c; facts, the code below is written
here): tnum_add, tnum_sub, tnum_and, tnum_or, tnum_xor, tnum_intersect and tnum_union as in
kernel/bpf/tnum.c. tnum_mul is the long multiplication with a union for unknown bits of ``a``
(``acc = 0; while (a.value || a.mask) { if (a.value & 1) acc = tnum_add(acc, b); else if
(a.mask & 1) acc = tnum_union(acc, tnum_add(acc, b)); a >>= 1; b <<= 1; }``), from
"[PATCH v6 bpf-next 1/2] bpf: Improve the general precision of tnum_mul" (Nandakumar Edamana,
2025-08-26, Message-Id 20250826034524.2159515-1-nandakumar@nandakumar.co.in), merged for 6.18
and present e.g. in kernel-patches/bpf kernel/bpf/tnum.c at commit 03f586a193da. It replaced
the acc_v/acc_m form (``acc_v = a.value * b.value``, mask sum over the bits of ``a``) of
5.13-6.17. The live 6.18.44 kernel agrees with the union form (see ``tests/test_tnum.py``,
``26 * (0x5; 0x8)`` printed as ``(0x2; 0x1f0)``).

``--mutant`` swaps in a deliberately unsound tnum add (the mask without the carry term
``chi``) to show that the check catches it (exit status 1).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from reference_vm.verifier import tnum as tn  # noqa: E402
from reference_vm.verifier.tnum import Tnum  # noqa: E402

U64 = np.uint64
ALL_OPS = ("add", "sub", "mul", "and", "or", "xor", "union", "intersect")
ARITH = {  # the concrete operation on members (union/intersect are set operations)
    "add": lambda x, y: x + y,
    "sub": lambda x, y: x - y,
    "mul": lambda x, y: x * y,
    "and": lambda x, y: x & y,
    "or": lambda x, y: x | y,
    "xor": lambda x, y: x ^ y,
}
SPOT_PER_CHUNK = 40


# --- our operators ----------------------------------------------------------------------------


def mutant_add(a: Tnum, b: Tnum, bits: int = 64) -> Tnum:
    """A seeded bug: tnum_add whose mask forgets the carries (``mu = a.mask | b.mask``)."""
    m = tn.umask(bits)
    sv = a.value + b.value
    mu = (a.mask | b.mask) & m
    return Tnum(sv & ~mu & m, mu)


def our_op(name: str, width: int, mutant: bool = False) -> Callable[[Tnum, Tnum], Tnum]:
    """OUR operator (reference_vm.verifier.tnum) with the width bound."""
    if name == "add":
        f = mutant_add if mutant else tn.add
        return lambda a, b: f(a, b, width)
    if name == "sub":
        return lambda a, b: tn.sub(a, b, width)
    if name == "mul":
        return lambda a, b: tn.mul(a, b, width)
    return {"and": tn.and_, "or": tn.or_, "xor": tn.xor, "union": tn.union, "intersect": tn.intersect}[name]


# --- the kernel's algorithms, on numpy u64 (independent of reference_vm) ----------------------


def _k_add(av, am, bv, bm):
    sm = am + bm
    sv = av + bv
    sigma = sm + sv
    chi = sigma ^ sv
    mu = chi | am | bm
    return sv & ~mu, mu


def _k_union(av, am, bv, bm):
    v = av & bv
    mu = (av ^ bv) | am | bm
    return v & ~mu, mu


def kernel_op(name: str, av, am, bv, bm, width: int):
    """Linux 6.18 kernel/bpf/tnum.c on u64 arrays (wrapping like C), truncated to ``width``."""
    with np.errstate(over="ignore"):
        if name == "add":
            v, m = _k_add(av, am, bv, bm)
        elif name == "sub":
            dv = av - bv
            alpha = dv + am
            beta = dv - bm
            chi = alpha ^ beta
            m = chi | am | bm
            v = dv & ~m
        elif name == "and":
            alpha = av | am
            beta = bv | bm
            v = av & bv
            m = alpha & beta & ~v
        elif name == "or":
            v = av | bv
            m = (am | bm) & ~v
        elif name == "xor":
            m = am | bm
            v = (av ^ bv) & ~m
        elif name == "union":
            v, m = _k_union(av, am, bv, bm)
        elif name == "intersect":
            v0 = av | bv
            m = am & bm
            v = v0 & ~m
        elif name == "mul":
            # tnum_mul: the loop runs while a has a known-1 or unknown bit; a fixed ``width``
            # iterations is the same (a known-0 bit keeps acc).
            av, am, bv, bm = np.broadcast_arrays(av, am, bv, bm)
            v = np.zeros(av.shape, U64)
            m = np.zeros(av.shape, U64)
            for _ in range(width):
                one = (av & U64(1)).astype(bool)
                unk = (am & U64(1)).astype(bool)
                sv, sm = _k_add(v, m, bv, bm)
                uv, um = _k_union(v, m, sv, sm)
                v = np.where(one, sv, np.where(unk, uv, v))
                m = np.where(one, sm, np.where(unk, um, m))
                av, am = av >> U64(1), am >> U64(1)
                bv, bm = bv << U64(1), bm << U64(1)
        elif name == "mul_acc":
            # the form this replaced (5.13 to 6.17, the "-" lines of the patch): information only
            av, am, bv, bm = np.broadcast_arrays(av, am, bv, bm)
            acc_v = av * bv
            zero = np.zeros(av.shape, U64)
            v, m = zero, zero
            for _ in range(width):
                one = (av & U64(1)).astype(bool)
                unk = (am & U64(1)).astype(bool)
                term = np.where(one, bm, np.where(unk, bv | bm, zero))
                nv, nm = _k_add(v, m, zero, term)
                v, m = np.where(one | unk, nv, v), np.where(one | unk, nm, m)
                av, am = av >> U64(1), am >> U64(1)
                bv, bm = bv << U64(1), bm << U64(1)
            v, m = _k_add(acc_v, zero, v, m)
        else:
            raise ValueError(name)
    w = U64((1 << width) - 1)
    return v & w, m & w


# --- the W-bit tnums in a fixed order ---------------------------------------------------------


@cache
def layout(width: int):
    """Tnums ordered by mask, then value. Returns (values, masks, offset per mask, member
    permutation per mask): ``perm[m]`` lists 0..2**W-1 grouped by tnum (``x & ~m``), groups in
    the order of the values, so ``table[perm[m]].reshape(groups, members, ...)``."""
    size = 1 << width
    xs = np.arange(size, dtype=np.int64)
    values, masks, offset, perm = [], [], [], []
    n = 0
    for m in range(size):
        vs = sorted({x & ~m for x in range(size)})
        offset.append(n)
        n += len(vs)
        values += vs
        masks += [m] * len(vs)
        perm.append(np.argsort(((xs & ~m) << width) | xs, kind="stable"))
    return np.array(values, U64), np.array(masks, U64), offset, perm


def _index(width: int, v: int, m: int) -> int:
    values, masks, offset, _ = layout(width)
    lo = offset[m]
    g = 1 << (width - bin(m).count("1"))
    return lo + int(np.searchsorted(values[lo : lo + g], v))


@cache
def concrete_table(name: str, width: int) -> np.ndarray:
    x = np.arange(1 << width, dtype=np.int64)
    with np.errstate(over="ignore"):
        return (ARITH[name](x[:, None], x[None, :]) & ((1 << width) - 1)).astype(U64)


def best_rows(name: str, width: int, ma: int) -> tuple[np.ndarray, np.ndarray]:
    """AND and OR of the concrete results for every A with mask ``ma`` and every B: arrays of
    shape (tnums with mask ma, all tnums), exact (every member pair enters)."""
    values, masks, offset, perm = layout(width)
    size = 1 << width
    n = len(values)
    ga = 1 << (width - bin(ma).count("1"))
    if name in ARITH:
        t = concrete_table(name, width)[perm[ma]].reshape(ga, size // ga, size)
        xa = np.bitwise_and.reduce(t, axis=1)  # (ga, y): AND over the members of A
        xo = np.bitwise_or.reduce(t, axis=1)
        band = np.empty((ga, n), U64)
        bor = np.empty((ga, n), U64)
        for mb in range(size):
            gb = 1 << (width - bin(mb).count("1"))
            sl = slice(offset[mb], offset[mb] + gb)
            band[:, sl] = np.bitwise_and.reduce(xa[:, perm[mb]].reshape(ga, gb, size // gb), axis=2)
            bor[:, sl] = np.bitwise_or.reduce(xo[:, perm[mb]].reshape(ga, gb, size // gb), axis=2)
        return band, bor
    av = values[offset[ma] : offset[ma] + ga][:, None]
    am = U64(ma)
    bv, bm = values[None, :], masks[None, :]
    if name == "union":  # gamma(A) U gamma(B): AND of a tnum's members is value, OR is value|mask
        return av & bv, (av | am) | (bv | bm)
    if name == "intersect":  # gamma(A) n gamma(B) is the tnum (av|bv, am&bm) when not empty
        v = av | bv
        return np.broadcast_to(v, (ga, n)), np.broadcast_to(v | (am & bm), (ga, n))
    raise ValueError(name)


# --- one chunk: every A with a given mask, against every B ------------------------------------


@dataclass
class Counts:
    pairs: int = 0
    unsound: int = 0
    empty: int = 0  # intersect: pairs with no common member (every result is sound)
    kernel_unsound: int = 0
    equal_best: int = 0
    kernel_equal: int = 0
    kernel_better: int = 0  # ours strictly more precise than the kernel's
    kernel_worse: int = 0  # ours not contained in the kernel's result
    subreg_ok: int = 0
    # mul only, information: OUR mul against the acc_v/acc_m tnum_mul of 5.13-6.17
    old_unsound: int = 0
    old_equal: int = 0
    old_better: int = 0
    old_worse: int = 0
    spot: int = 0
    spot_mismatch: int = 0
    example: str = ""

    def merge(self, o: Counts) -> None:
        for f in fields(self):
            if f.name == "example":
                self.example = self.example or o.example
            else:
                setattr(self, f.name, getattr(self, f.name) + getattr(o, f.name))


def _as_array(x, shape) -> np.ndarray:
    return np.broadcast_to(np.asarray(x, dtype=U64), shape)


def our_rows(name: str, width: int, ma: int, mutant: bool) -> tuple[np.ndarray, np.ndarray]:
    """OUR operator for every A with mask ``ma`` (one call per A) and every B (vectorised)."""
    values, masks, offset, _ = layout(width)
    n = len(values)
    ga = 1 << (width - bin(ma).count("1"))
    f = our_op(name, width, mutant)
    b = Tnum(values, masks)
    rv = np.empty((ga, n), U64)
    rm = np.empty((ga, n), U64)
    for k in range(ga):
        r = f(Tnum(int(values[offset[ma] + k]), ma), b)
        rv[k] = _as_array(r.value, (n,))
        rm[k] = _as_array(r.mask, (n,))
    return rv, rm


@cache
def half_table(name: str, width: int, mutant: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """OUR operator at width/2 on every pair of width/2 tnums (scalar calls), and for every
    width-bit tnum the index of its low half."""
    h = width // 2
    hv, hm, _, _ = layout(h)
    f = our_op(name, h, mutant)
    nh = len(hv)
    tv = np.empty((nh, nh), U64)
    tm = np.empty((nh, nh), U64)
    for i in range(nh):
        a = Tnum(int(hv[i]), int(hm[i]))
        for j in range(nh):
            r = f(a, Tnum(int(hv[j]), int(hm[j])))
            tv[i, j], tm[i, j] = r.value, r.mask
    values, masks, _, _ = layout(width)
    low = (1 << h) - 1
    lowidx = np.array([_index(h, int(v) & low, int(m) & low) for v, m in zip(values, masks, strict=True)])
    return tv, tm, lowidx


def check_chunk(args: tuple[str, int, int, bool]) -> tuple[str, Counts]:
    name, width, ma, mutant = args
    values, masks, offset, _ = layout(width)
    n = len(values)
    ga = 1 << (width - bin(ma).count("1"))
    c = Counts(pairs=ga * n)
    band, bor = best_rows(name, width, ma)
    rv, rm = our_rows(name, width, ma, mutant)
    av = values[offset[ma] : offset[ma] + ga][:, None]
    am = np.full((ga, 1), ma, U64)
    kv, km = kernel_op(name, av, am, values[None, :], masks[None, :], width)
    kv, km = np.broadcast_to(kv, (ga, n)), np.broadcast_to(km, (ga, n))

    if name == "intersect":
        nonempty = (av & ~masks[None, :]) == (values[None, :] & ~am)  # the known bits agree
        c.empty = int((~nonempty).sum())
    else:
        nonempty = np.ones((ga, n), bool)
    # every concrete result r has r & ~mask == value  <=>  AND and OR of them both do
    sound = ((band & ~rm) == rv) & ((bor & ~rm) == rv) | ~nonempty
    ksound = ((band & ~km) == kv) & ((bor & ~km) == kv) | ~nonempty
    c.unsound = int((~sound).sum())
    c.kernel_unsound = int((~ksound).sum())
    c.equal_best = int(((rv == band) & (rm == (bor ^ band)) & nonempty).sum())
    inside = ((rm & ~km) == 0) & ((rv & ~km) == kv)  # tnum_in(kernel, ours)
    equal = (rv == kv) & (rm == km)
    c.kernel_equal = int(equal.sum())
    c.kernel_better = int((inside & ~equal).sum())
    c.kernel_worse = int((~inside).sum())
    if name == "mul":
        ov, om = kernel_op("mul_acc", av, am, values[None, :], masks[None, :], width)
        c.old_unsound = int((~(((band & ~om) == ov) & ((bor & ~om) == ov))).sum())
        oin = ((rm & ~om) == 0) & ((rv & ~om) == ov)
        oeq = (rv == ov) & (rm == om)
        c.old_equal = int(oeq.sum())
        c.old_better = int((oin & ~oeq).sum())
        c.old_worse = int((~oin).sum())
    if not c.example and c.unsound:
        i, j = (int(t[0]) for t in np.nonzero(~sound))
        c.example = (
            f"{name}({Tnum(int(av[i, 0]), ma)}, {Tnum(int(values[j]), int(masks[j]))}) = "
            f"{Tnum(int(rv[i, j]), int(rm[i, j]))}, best {Tnum(int(band[i, j]), int(bor[i, j] ^ band[i, j]))}"
        )
    if width >= 2 and width % 2 == 0:
        tv, tm, lowidx = half_table(name, width, mutant)
        la = lowidx[offset[ma] : offset[ma] + ga][:, None]
        lb = lowidx[None, :]
        low = U64((1 << (width // 2)) - 1)
        c.subreg_ok = int((((rv & low) == tv[la, lb]) & ((rm & low) == tm[la, lb])).sum())
    # spot check: OUR scalar function on sampled pairs of this chunk equals the vectorised run
    f = our_op(name, width, mutant)
    rnd = random.Random(f"{name}/{width}/{ma}")
    for _ in range(min(SPOT_PER_CHUNK, ga * n)):
        i, j = rnd.randrange(ga), rnd.randrange(n)
        r = f(Tnum(int(av[i, 0]), ma), Tnum(int(values[j]), int(masks[j])))
        c.spot += 1
        if (r.value, r.mask) != (int(rv[i, j]), int(rm[i, j])):
            c.spot_mismatch += 1
    return name, c


def run(
    width: int = 8, ops: tuple[str, ...] = ALL_OPS, jobs: int = 1, mutant: bool = False
) -> dict[str, Counts]:
    """Check every pair of ``width``-bit tnums for each operator; returns the counts per op."""
    layout(width)  # built before forking
    tasks = [(op, width, ma, mutant) for op in ops for ma in range(1 << width)]
    out = {op: Counts() for op in ops}
    if jobs <= 1:
        results = map(check_chunk, tasks)
        for name, c in results:
            out[name].merge(c)
    else:
        with mp.get_context("fork").Pool(jobs) as pool:
            for name, c in pool.imap_unordered(check_chunk, tasks, chunksize=4):
                out[name].merge(c)
    return out


def failed(res: dict[str, Counts], width: int) -> bool:
    n = 3 ** (2 * width)
    return any(
        c.pairs != n
        or c.unsound
        or c.kernel_worse
        or c.spot_mismatch
        or (width % 2 == 0 and c.subreg_ok != n)
        for c in res.values()
    )


def table(res: dict[str, Counts], width: int, mutant: bool) -> str:
    n = 3 ** (2 * width)
    head = (
        "| op | pairs | unsound | worse than kernel | equal to kernel | better than kernel "
        "| equal to best | subreg commutes | scalar spot checks |"
    )
    rows = [head, "|" + "---|" * 9]
    for op, c in res.items():
        label = f"{op} (mutant)" if mutant and op == "add" else op
        best = f"{c.equal_best:,} ({100 * c.equal_best / max(1, c.pairs - c.empty):.2f}%)"
        if c.empty:
            best += f"; {c.empty:,} pairs disjoint"
        sub = f"{c.subreg_ok:,}" if width % 2 == 0 else "n/a"
        rows.append(
            f"| {label} | {c.pairs:,} | {c.unsound:,} | {c.kernel_worse:,} | {c.kernel_equal:,} "
            f"| {c.kernel_better:,} | {best} | {sub} | {c.spot:,} ({c.spot_mismatch} differ) |"
        )
    assert all(c.pairs == n for c in res.values())
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width", type=int, default=8)
    ap.add_argument("--ops", default=",".join(ALL_OPS), help=f"comma-separated, from {','.join(ALL_OPS)}")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--mutant", action="store_true", help="use a seeded unsound tnum add (must be caught)")
    ns = ap.parse_args(argv)
    ops = tuple(o.strip() for o in ns.ops.split(",") if o.strip())
    bad = [o for o in ops if o not in ALL_OPS]
    if bad:
        ap.error(f"unknown ops {bad}")
    if ns.mutant and "add" not in ops:
        ap.error("--mutant replaces add: include it in --ops")
    t0 = time.perf_counter()
    res = run(ns.width, ops, ns.jobs, ns.mutant)
    dt = time.perf_counter() - t0
    n_t = 3**ns.width
    print(
        f"width {ns.width}: {n_t:,} tnums, {n_t * n_t:,} pairs per operator; jobs {ns.jobs}; "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    )
    print(table(res, ns.width, ns.mutant))
    for op, c in res.items():
        if c.kernel_unsound:
            print(f"note: the kernel re-implementation of {op} is unsound on {c.kernel_unsound:,} pairs")
        if op == "mul":
            print(
                f"information: OUR mul (6.18 union form) against the 5.13-6.17 acc_v/acc_m tnum_mul: "
                f"equal on {c.old_equal:,}, more precise on {c.old_better:,}, not contained in it on "
                f"{c.old_worse:,} pairs (that form: {c.old_unsound:,} unsound pairs)"
            )
        if c.example:
            print(f"counterexample: {c.example}")
    print(
        "32-bit variants: no separate tnum operator exists (ALU32 = the same tnum op, then "
        "tnum_subreg); 'subreg commutes' counts pairs where the low half of op_W equals "
        f"op_{ns.width // 2} on the low halves; op_{ns.width // 2} itself: --width {ns.width // 2}."
    )
    print(f"elapsed {dt:.1f} s")
    if failed(res, ns.width):
        print("FAIL: unsound, less precise than the kernel, or inconsistent pairs")
        return 1
    print("OK: sound on every pair and at least as precise as the kernel's algorithm")
    return 0


if __name__ == "__main__":
    sys.exit(main())
