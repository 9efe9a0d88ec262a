"""Tracked numbers ("tnums"): the verifier's bit-level abstract domain (Linux kernel/bpf/tnum.c).

A tnum ``(value, mask)`` stands for every integer ``x`` with ``x & ~mask == value``: bits set in
``mask`` are unknown, the others are known and equal to the bit of ``value`` (which is 0 where
``mask`` is 1). The operators below are the kernel's algorithms (facts from kernel/bpf/tnum.c of
Linux 6.18; the code is written here), with the register width as a parameter, ``bits`` (64 for
the verifier, 8 or 6 in the exhaustive soundness tests, :mod:`reference_vm.verifier.soundness`).
"Sound" means: for all concrete members ``x`` of ``a`` and ``y`` of ``b``, ``x op y`` (modulo
``2**bits``) is a member of ``op(a, b)``.
"""

from __future__ import annotations

from typing import NamedTuple


class Tnum(NamedTuple):
    value: int
    mask: int

    def __str__(self) -> str:  # the kernel's tnum_strn
        return f"({self.value:#x}; {self.mask:#x})"


def umask(bits: int) -> int:
    return (1 << bits) - 1


def const(value: int, bits: int = 64) -> Tnum:
    return Tnum(value & umask(bits), 0)


def unknown(bits: int = 64) -> Tnum:
    return Tnum(0, umask(bits))


ZERO = Tnum(0, 0)
UNKNOWN = unknown(64)


def is_const(a: Tnum) -> bool:
    return a.mask == 0


def is_unknown(a: Tnum, bits: int = 64) -> bool:
    return a.mask == umask(bits)


def is_valid(a: Tnum) -> bool:
    return a.value & a.mask == 0


def contains(a: Tnum, x: int) -> bool:
    """``x`` is a member of ``a`` (x already reduced to the width)."""
    return x & ~a.mask == a.value


def members(a: Tnum) -> list[int]:
    """Every concrete member (2**popcount(mask) of them; for tests and witnesses)."""
    out = [a.value]
    m = a.mask
    while m:
        bit = m & -m
        out += [x | bit for x in out]
        m ^= bit
    return out


def range_(lo: int, hi: int, bits: int = 64) -> Tnum:
    """tnum_range: the tnum of the unsigned range ``[lo, hi]`` (kernel algorithm: the bits below
    the highest differing bit become unknown)."""
    chi = lo ^ hi
    n = chi.bit_length()
    if n > bits - 1:
        return unknown(bits)
    delta = (1 << n) - 1
    return Tnum(lo & ~delta & umask(bits), delta)


def lshift(a: Tnum, shift: int, bits: int = 64) -> Tnum:
    m = umask(bits)
    return Tnum((a.value << shift) & m, (a.mask << shift) & m)


def rshift(a: Tnum, shift: int) -> Tnum:
    return Tnum(a.value >> shift, a.mask >> shift)


def _sext(x: int, bits: int) -> int:
    return x - ((x >> (bits - 1) & 1) << bits)  # branch-free: also element-wise on arrays


def arshift(a: Tnum, shift: int, insn_bits: int = 64, bits: int = 64) -> Tnum:
    """tnum_arshift: arithmetic shift in ``insn_bits`` (32 for ALU, 64 for ALU64, i.e. half or
    full width), the result zero-extended to the register width."""
    m = umask(insn_bits)
    return Tnum((_sext(a.value & m, insn_bits) >> shift) & m, (_sext(a.mask & m, insn_bits) >> shift) & m)


def add(a: Tnum, b: Tnum, bits: int = 64) -> Tnum:
    m = umask(bits)
    sm = a.mask + b.mask
    sv = a.value + b.value
    sigma = sm + sv
    chi = sigma ^ sv
    mu = (chi | a.mask | b.mask) & m
    return Tnum(sv & ~mu & m, mu)


def sub(a: Tnum, b: Tnum, bits: int = 64) -> Tnum:
    m = umask(bits)
    dv = a.value - b.value
    alpha = dv + a.mask
    beta = dv - b.mask
    chi = alpha ^ beta
    mu = (chi | a.mask | b.mask) & m
    return Tnum(dv & ~mu & m, mu)


def neg(a: Tnum, bits: int = 64) -> Tnum:
    return sub(ZERO, a, bits)


def and_(a: Tnum, b: Tnum) -> Tnum:
    alpha = a.value | a.mask
    beta = b.value | b.mask
    v = a.value & b.value
    return Tnum(v, alpha & beta & ~v)


def or_(a: Tnum, b: Tnum) -> Tnum:
    v = a.value | b.value
    mu = a.mask | b.mask
    return Tnum(v, mu & ~v)


def xor(a: Tnum, b: Tnum) -> Tnum:
    v = a.value ^ b.value
    mu = a.mask | b.mask
    return Tnum(v & ~mu, mu)


def union(a: Tnum, b: Tnum) -> Tnum:
    """tnum_union: a tnum holding every member of ``a`` and of ``b``."""
    v = a.value & b.value
    mu = (a.value ^ b.value) | a.mask | b.mask
    return Tnum(v & ~mu, mu)


def mul(a: Tnum, b: Tnum, bits: int = 64) -> Tnum:
    """tnum_mul (Linux 6.17+): long multiplication over the bits of ``a``; a known-1 bit adds the
    shifted ``b``, an unknown bit takes the union of adding and not adding it."""
    acc = ZERO
    while a.value or a.mask:
        if a.value & 1:
            acc = add(acc, b, bits)
        elif a.mask & 1:
            acc = union(acc, add(acc, b, bits))
        a = rshift(a, 1)
        b = lshift(b, 1, bits)
    return acc


def intersect(a: Tnum, b: Tnum) -> Tnum:
    """tnum_intersect: the members of both (where they disagree on a known bit, the result
    claims 1: there is no member then)."""
    v = a.value | b.value
    mu = a.mask & b.mask
    return Tnum(v & ~mu, mu)


def overlap(a: Tnum, b: Tnum) -> bool:
    """tnum_overlap: whether ``a`` and ``b`` can have a common member."""
    mu = ~a.mask & ~b.mask
    return (a.value & mu) == (b.value & mu)


def cast(a: Tnum, size: int) -> Tnum:
    """tnum_cast: keep the low ``size`` bytes."""
    m = (1 << (size * 8)) - 1
    return Tnum(a.value & m, a.mask & m)


def cast_bits(a: Tnum, nbits: int) -> Tnum:
    m = (1 << nbits) - 1
    return Tnum(a.value & m, a.mask & m)


def subreg(a: Tnum, bits: int = 64) -> Tnum:
    """tnum_subreg: the low half (32 bits of a 64-bit register)."""
    return cast_bits(a, bits // 2)


def clear_subreg(a: Tnum, bits: int = 64) -> Tnum:
    h = bits // 2
    return lshift(rshift(a, h), h, bits)


def with_subreg(reg: Tnum, sub_: Tnum, bits: int = 64) -> Tnum:
    return or_(clear_subreg(reg, bits), subreg(sub_, bits))


def const_subreg(a: Tnum, value: int, bits: int = 64) -> Tnum:
    return with_subreg(a, const(value, bits), bits)


def subreg_is_const(a: Tnum, bits: int = 64) -> bool:
    return subreg(a, bits).mask == 0


def bswap(a: Tnum, nbits: int) -> Tnum:
    """tnum_bswap16/32/64: reverse the low ``nbits // 8`` bytes of value and mask (exact)."""
    n = nbits // 8
    m = (1 << nbits) - 1

    def sw(x: int) -> int:
        return int.from_bytes((x & m).to_bytes(n, "little"), "big")

    return Tnum(sw(a.value), sw(a.mask))


def min_member_ge(a: Tnum, y: int, bits: int = 64) -> int | None:
    """The smallest member of ``a`` that is >= ``y``, or None (the basis of the kernel's
    ``tnum_step``). ``y`` is raised to the first member by looking at the highest known bit
    where it disagrees with ``a`` (no per-bit loop: this runs at every conditional jump)."""
    if a.value | a.mask < y:
        return None
    diff = (y & ~a.mask) ^ a.value  # known bits where y disagrees with a
    if not diff:
        return y
    h = diff.bit_length() - 1
    low = (1 << (h + 1)) - 1
    if a.value >> h & 1:  # a known 1 where y has 0: above y already, the rest as small as possible
        return (y & ~low) | (a.value & low)
    # a known 0 where y has 1: raise the lowest unknown bit above h that y has clear
    free = a.mask & ~y & ~low & ((1 << bits) - 1)
    if not free:
        return None
    j = (free & -free).bit_length() - 1
    return (y & ~((1 << (j + 1)) - 1)) | (1 << j) | (a.value & ((1 << j) - 1))


def is_aligned(a: Tnum, size: int) -> bool:
    if not size:
        return True
    return not ((a.value | a.mask) & (size - 1))


def tnum_in(a: Tnum, b: Tnum) -> bool:
    """Every member of ``b`` is a member of ``a``."""
    if b.mask & ~a.mask:
        return False
    return a.value == b.value & ~a.mask


def best(values: list[int] | set[int]) -> Tnum:
    """The most precise tnum holding every one of ``values`` (not empty)."""
    it = iter(values)
    first = next(it)
    all_and = all_or = first
    for x in it:
        all_and &= x
        all_or |= x
    return Tnum(all_and, all_or ^ all_and)
