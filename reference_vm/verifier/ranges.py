"""Scalar bounds: the kernel's ``bpf_reg_state`` numeric part and its transfer functions.

A :class:`Scalar` is a tnum (``var_off``) plus unsigned and signed bounds of the whole register
(``umin``..``smax``) and of its low half (``u32_min``..``s32_max``: the 32-bit subregister of
a 64-bit register). Its concrete members are the integers that satisfy all nine constraints.
Everything follows Linux 6.18's kernel/bpf/verifier.c (facts and algorithms taken from the
kernel, the code written here):

* synchronisation: ``__update_reg_bounds`` (tnum -> bounds), ``__reg_deduce_bounds``
  (32 <-> 64, signed <-> unsigned), ``__reg_bound_offset`` (bounds -> tnum), together
  :func:`reg_bounds_sync`;
* ALU transfer functions: ``adjust_scalar_min_max_vals`` (:func:`adjust_scalar`) with its
  ``scalar{32,}_min_max_{add,sub,mul,and,or,xor,lsh,rsh,arsh}`` helpers, the zero extension of
  32-bit results, and the casts of narrow loads and sign-extending moves;
* branches: ``is_scalar_branch_taken`` (:func:`branch_taken`) and ``regs_refine_cond_op`` /
  ``reg_set_min_max`` (:func:`refine`).

The register width is a parameter (``Scalar.bits``, default 64; the half width is
``bits // 2``), so that the soundness checks (:mod:`.soundness`, ``tests/test_tnum.py``) can
run every algorithm exhaustively at 4 or 8 bits. Signed bounds are held as Python ints in
the signed range of their width.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from ..isa import AluOp, JmpOp
from . import tnum as tn
from .tnum import Tnum

#: The reverse of BPF_JSET (``!(a & b)``), as the kernel's ``BPF_JSET | BPF_X`` trick.
JSET_NOT = "jset_not"
CondOp = JmpOp | str


@dataclass(frozen=True)
class Width:
    """Masks and limits of one register width (64: u64/s64 and u32/s32 halves)."""

    bits: int

    @property
    def half(self) -> int:
        return self.bits // 2


@cache
def _limits(bits: int) -> tuple[int, int, int, int, int, int, int, int]:
    h = bits // 2
    return (
        (1 << bits) - 1,
        -(1 << (bits - 1)),
        (1 << (bits - 1)) - 1,
        (1 << h) - 1,
        -(1 << (h - 1)),
        (1 << (h - 1)) - 1,
        h,
        bits,
    )


def sx(x: int, bits: int) -> int:
    """The unsigned ``x`` (already reduced) as a signed ``bits``-bit integer (branch-free, so
    that it also works element-wise on numpy arrays)."""
    return x - ((x >> (bits - 1) & 1) << bits)


# --- element-wise selection -------------------------------------------------------------------
# The range operators (add ... arsh, the branch refinements) use these instead of ``if`` on
# values and the builtins ``min``/``max``. On Python ints they are the plain operations; when a
# Scalar's fields are numpy arrays they work element-wise, which is how
# bench/ranges_exhaustive.py runs these very functions on every pair of 8-bit intervals.


def _sel(cond, a, b):  # type: ignore[no-untyped-def]
    """``a if cond else b``."""
    if cond.__class__ is bool:
        return a if cond else b
    import numpy

    return numpy.where(cond, a, b)


def _max(a, b):  # type: ignore[no-untyped-def]
    if a.__class__ is int and b.__class__ is int:
        return a if a >= b else b
    import numpy

    return numpy.maximum(a, b)


def _not(c):  # type: ignore[no-untyped-def]
    return not c if c.__class__ is bool else ~c


def _min(a, b):  # type: ignore[no-untyped-def]
    if a.__class__ is int and b.__class__ is int:
        return a if a <= b else b
    import numpy

    return numpy.minimum(a, b)


class Scalar:
    """A scalar's abstract value: tnum + u64/s64 + u32/s32 bounds (64-bit naming; at another
    width the "32" fields are the low half)."""

    __slots__ = (
        "bits",
        "var_off",
        "umin",
        "umax",
        "smin",
        "smax",
        "u32_min",
        "u32_max",
        "s32_min",
        "s32_max",
    )

    bits: int
    var_off: Tnum
    umin: int
    umax: int
    smin: int
    smax: int
    u32_min: int
    u32_max: int
    s32_min: int
    s32_max: int

    def __init__(self, bits: int = 64) -> None:
        self.bits = bits
        mark_unknown(self)

    # --- construction -----------------------------------------------------------------------

    @classmethod
    def const(cls, value: int, bits: int = 64) -> Scalar:
        s = cls.__new__(cls)
        s.bits = bits
        mark_known(s, value)
        return s

    @classmethod
    def unknown(cls, bits: int = 64) -> Scalar:
        return cls(bits)

    @classmethod
    def from_tnum(cls, t: Tnum, bits: int = 64) -> Scalar:
        s = cls(bits)
        s.var_off = t
        reg_bounds_sync(s)
        return s

    @classmethod
    def from_urange(cls, lo: int, hi: int, bits: int = 64) -> Scalar:
        s = cls(bits)
        s.umin, s.umax = lo, hi
        reg_bounds_sync(s)
        return s

    @classmethod
    def from_srange(cls, lo: int, hi: int, bits: int = 64) -> Scalar:
        s = cls(bits)
        s.smin, s.smax = lo, hi
        reg_bounds_sync(s)
        return s

    def copy(self) -> Scalar:
        s = Scalar.__new__(Scalar)
        s.bits, s.var_off = self.bits, self.var_off
        s.umin, s.umax, s.smin, s.smax = self.umin, self.umax, self.smin, self.smax
        s.u32_min, s.u32_max, s.s32_min, s.s32_max = self.u32_min, self.u32_max, self.s32_min, self.s32_max
        return s

    def assign(self, other: Scalar) -> None:
        self.bits, self.var_off = other.bits, other.var_off
        self.umin, self.umax, self.smin, self.smax = other.umin, other.umax, other.smin, other.smax
        self.u32_min, self.u32_max = other.u32_min, other.u32_max
        self.s32_min, self.s32_max = other.s32_min, other.s32_max

    def key(self) -> tuple[int, ...]:
        return (
            self.var_off.value,
            self.var_off.mask,
            self.umin,
            self.umax,
            self.smin,
            self.smax,
            self.u32_min,
            self.u32_max,
            self.s32_min,
            self.s32_max,
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Scalar) and self.bits == other.bits and self.key() == other.key()

    def __hash__(self) -> int:
        return hash(self.key())

    # --- queries ----------------------------------------------------------------------------

    def is_const(self) -> bool:
        return self.var_off.mask == 0

    @property
    def value(self) -> int:
        return self.var_off.value

    def subreg_is_const(self) -> bool:
        return tn.subreg_is_const(self.var_off, self.bits)

    def contains(self, x: int) -> bool:
        """``x`` (unsigned, reduced to the width) satisfies every constraint."""
        m, _, _, hm, _, _, h, bits = _limits(self.bits)
        lo = x & hm
        return (
            tn.contains(self.var_off, x)
            and self.umin <= x <= self.umax
            and self.smin <= sx(x, bits) <= self.smax
            and self.u32_min <= lo <= self.u32_max
            and self.s32_min <= sx(lo, h) <= self.s32_max
        )

    def within(self, old: Scalar) -> bool:
        """Every bound of ``self`` lies within ``old``'s (the kernel's ``range_within`` plus
        ``tnum_in``): then every member of ``self`` is a member of ``old``."""
        return (
            old.umin <= self.umin
            and self.umax <= old.umax
            and old.smin <= self.smin
            and self.smax <= old.smax
            and old.u32_min <= self.u32_min
            and self.u32_max <= old.u32_max
            and old.s32_min <= self.s32_min
            and self.s32_max <= old.s32_max
            and tn.tnum_in(old.var_off, self.var_off)
        )

    def is_sane(self) -> bool:
        """``reg_bounds_sanity_check``: no bound contradicts another (a non-empty state)."""
        v = self.var_off
        lo = tn.subreg(v, self.bits)
        return (
            self.umin <= self.umax
            and self.smin <= self.smax
            and self.u32_min <= self.u32_max
            and self.s32_min <= self.s32_max
            and v.value & v.mask == 0
            and self.umin <= v.value | v.mask
            and self.umax >= v.value
            and self.u32_min <= lo.value | lo.mask
            and self.u32_max >= lo.value
        )

    def __repr__(self) -> str:
        return format_scalar(self)


# --- marking (kernel __mark_reg_*) ------------------------------------------------------------


def mark_known(s: Scalar, value: int) -> None:
    m, _, _, hm, _, _, h, bits = _limits(s.bits)
    value &= m
    s.var_off = Tnum(value, 0)
    s.umin = s.umax = value
    s.smin = s.smax = sx(value, bits)
    lo = value & hm
    s.u32_min = s.u32_max = lo
    s.s32_min = s.s32_max = sx(lo, h)


def mark32_known(s: Scalar, value: int) -> None:
    _, _, _, hm, _, _, h, bits = _limits(s.bits)
    value &= hm
    s.var_off = tn.const_subreg(s.var_off, value, bits)
    s.u32_min = s.u32_max = value
    s.s32_min = s.s32_max = sx(value, h)


def mark64_unbounded(s: Scalar) -> None:
    m, smin, smax, *_ = _limits(s.bits)
    s.umin, s.umax, s.smin, s.smax = 0, m, smin, smax


def mark32_unbounded(s: Scalar) -> None:
    _, _, _, hm, s32min, s32max, _, _ = _limits(s.bits)
    s.u32_min, s.u32_max, s.s32_min, s.s32_max = 0, hm, s32min, s32max


def mark_unbounded(s: Scalar) -> None:
    mark64_unbounded(s)
    mark32_unbounded(s)


def mark_unknown(s: Scalar) -> None:
    s.var_off = tn.unknown(s.bits)
    mark_unbounded(s)


# --- synchronisation ------------------------------------------------------------------------


def update_reg32_bounds(s: Scalar) -> None:
    _, _, _, hm, s32min, s32max, h, bits = _limits(s.bits)
    v = tn.subreg(s.var_off, bits)
    s.s32_min = _max(s.s32_min, sx(v.value | (v.mask & (1 << (h - 1))), h))
    s.s32_max = _min(s.s32_max, sx(v.value | (v.mask & s32max), h))
    s.u32_min = _max(s.u32_min, v.value)
    s.u32_max = _min(s.u32_max, v.value | v.mask)


def update_reg64_bounds(s: Scalar) -> None:
    _, _, smax, *_rest = _limits(s.bits)
    bits = s.bits
    v = s.var_off
    s.smin = max(s.smin, sx(v.value | (v.mask & (1 << (bits - 1))), bits))
    s.smax = min(s.smax, sx(v.value | (v.mask & smax), bits))
    s.umin = max(s.umin, v.value)
    s.umax = min(s.umax, v.value | v.mask)
    if v.mask and s.umin <= s.umax:
        # the u64 range and the tnum have one member in common: it is the value
        first = tn.min_member_ge(v, s.umin, bits)
        if first is not None and first <= s.umax:
            nxt = tn.min_member_ge(v, first + 1, bits) if first < (1 << bits) - 1 else None
            if nxt is None or nxt > s.umax:
                mark_known(s, first)


def update_reg_bounds(s: Scalar) -> None:
    update_reg32_bounds(s)
    update_reg64_bounds(s)


def reg32_deduce_bounds(s: Scalar) -> None:
    _, _, _, hm, _, _, h, bits = _limits(s.bits)
    umin, umax, smin, smax = s.umin, s.umax, s.smin & ((1 << bits) - 1), s.smax & ((1 << bits) - 1)
    # Upper halves of the u64 range equal: the low halves form a u32 range.
    if umin >> h == umax >> h:
        s.u32_min = max(s.u32_min, umin & hm)
        s.u32_max = min(s.u32_max, umax & hm)
        if sx(umin & hm, h) <= sx(umax & hm, h):
            s.s32_min = max(s.s32_min, sx(umin & hm, h))
            s.s32_max = min(s.s32_max, sx(umax & hm, h))
    if s.smin >> h == s.smax >> h:
        if smin & hm <= smax & hm:
            s.u32_min = max(s.u32_min, smin & hm)
            s.u32_max = min(s.u32_max, smax & hm)
        if sx(smin & hm, h) <= sx(smax & hm, h):
            s.s32_min = max(s.s32_min, sx(smin & hm, h))
            s.s32_max = min(s.s32_max, sx(smax & hm, h))
    # Upper halves are two consecutive numbers and the low halves cross from negative to
    # non-negative: the low halves still form an s32 range.
    if ((umin >> h) + 1) & hm == (umax >> h) & hm and sx(umin & hm, h) < 0 <= sx(umax & hm, h):
        s.s32_min = max(s.s32_min, sx(umin & hm, h))
        s.s32_max = min(s.s32_max, sx(umax & hm, h))
    if ((smin >> h) + 1) & hm == (smax >> h) & hm and sx(smin & hm, h) < 0 <= sx(smax & hm, h):
        s.s32_min = max(s.s32_min, sx(smin & hm, h))
        s.s32_max = min(s.s32_max, sx(smax & hm, h))
    # A u32 range that does not cross the sign boundary is also an s32 range, and back.
    if sx(s.u32_min, h) <= sx(s.u32_max, h):
        s.s32_min = max(s.s32_min, sx(s.u32_min, h))
        s.s32_max = min(s.s32_max, sx(s.u32_max, h))
    if s.s32_min & hm <= s.s32_max & hm:
        s.u32_min = max(s.s32_min & hm, s.u32_min)
        s.u32_max = min(s.s32_max & hm, s.u32_max)
    else:
        # the s32 range wraps around the u32 domain: learn from the end the u32 range touches
        if s.u32_max < s.s32_min & hm:
            s.s32_min = sx(s.u32_min, h)
            s.u32_max = min(s.u32_max, s.s32_max & hm)
        elif s.s32_max & hm < s.u32_min:
            s.s32_max = sx(s.u32_max, h)
            s.u32_min = max(s.u32_min, s.s32_min & hm)


def reg64_deduce_bounds(s: Scalar) -> None:
    m, _, _, _, _, _, _, bits = _limits(s.bits)
    if sx(s.umin, bits) <= sx(s.umax, bits):
        s.smin = max(s.smin, sx(s.umin, bits))
        s.smax = min(s.smax, sx(s.umax, bits))
    usmin, usmax = s.smin & m, s.smax & m
    if usmin <= usmax:
        s.umin = max(usmin, s.umin)
        s.umax = min(usmax, s.umax)
    else:
        # The s64 range wraps around the u64 domain: learn from the end the u64 range touches.
        if s.umax < usmin:
            s.smin = sx(s.umin, bits)
            s.umax = min(s.umax, usmax)
        elif usmax < s.umin:
            s.smax = sx(s.umax, bits)
            s.umin = max(s.umin, usmin)


def reg_deduce_mixed_bounds(s: Scalar) -> None:
    m, _, _, hm, s32min, s32max, h, bits = _limits(s.bits)
    hi = m & ~hm
    new_umin = (s.umin & hi) | s.u32_min
    new_umax = (s.umax & hi) | s.u32_max
    s.umin = max(s.umin, new_umin)
    s.umax = min(s.umax, new_umax)
    new_smin = sx(((s.smin & m) & hi) | s.u32_min, bits)
    new_smax = sx(((s.smax & m) & hi) | s.u32_max, bits)
    s.smin = max(s.smin, new_smin)
    s.smax = min(s.smax, new_smax)
    # After a sign-extending load: the upper bits are all 0s or all 1s.
    if s.s32_min >= 0 and s.smin >= s32min and s.smax <= s32max:
        s.smin, s.smax = s.s32_min, s.s32_max
        s.umin, s.umax = s.s32_min & m, s.s32_max & m
        s.var_off = tn.intersect(s.var_off, tn.range_(s.smin & m, s.smax & m, bits))


def reg_deduce_bounds(s: Scalar) -> None:
    reg32_deduce_bounds(s)
    reg64_deduce_bounds(s)
    reg_deduce_mixed_bounds(s)


def reg_bound_offset(s: Scalar) -> None:
    bits = s.bits
    var64 = tn.intersect(s.var_off, tn.range_(s.umin, s.umax, bits))
    var32 = tn.intersect(tn.subreg(var64, bits), tn.range_(s.u32_min, s.u32_max, bits))
    s.var_off = tn.or_(tn.clear_subreg(var64, bits), var32)


def reg_bounds_sync(s: Scalar) -> None:
    """The kernel's ``reg_bounds_sync``. A constant tnum has one member: the bounds are set to
    it directly (what the full synchronisation computes for a consistent state)."""
    if s.var_off.mask == 0 and s.contains(s.var_off.value):
        mark_known(s, s.var_off.value)
        return
    update_reg_bounds(s)
    reg_deduce_bounds(s)
    reg_deduce_bounds(s)
    reg_bound_offset(s)
    update_reg_bounds(s)


# --- 32 -> 64 and casts --------------------------------------------------------------------


def assign_32_into_64(s: Scalar) -> None:
    """``__reg_assign_32_into_64``."""
    _, _, _, hm, _, s32max, _, _ = _limits(s.bits)
    s.umin, s.umax = s.u32_min, s.u32_max
    if 0 <= s.s32_min <= s32max and 0 <= s.s32_max <= s32max:
        s.smin, s.smax = s.s32_min, s.s32_max
    else:
        s.smin, s.smax = 0, hm


def zext_32_to_64(s: Scalar) -> None:
    s.var_off = tn.subreg(s.var_off, s.bits)
    assign_32_into_64(s)


def coerce_reg_to_size(s: Scalar, size_bits: int) -> None:
    """``coerce_reg_to_size``: zero-extend the low ``size_bits`` (narrow loads)."""
    if size_bits >= s.bits:
        return
    mask = (1 << size_bits) - 1
    s.var_off = tn.cast_bits(s.var_off, size_bits)
    if s.umin & ~mask == s.umax & ~mask:
        s.umin &= mask
        s.umax &= mask
    else:
        s.umin, s.umax = 0, mask
    s.smin, s.smax = s.umin, s.umax
    if size_bits < s.bits // 2:
        mark32_unbounded(s)
    reg_bounds_sync(s)


def coerce_reg_to_size_sx(s: Scalar, size_bytes: int) -> None:
    """``coerce_reg_to_size_sx``: sign-extend the low ``size_bytes`` bytes to the full width
    (``movsx``, sign-extending loads). As in the kernel, the result is not re-synchronised."""
    sign_extend_bits(s, size_bytes * 8)


def coerce_subreg_to_size_sx(s: Scalar, size_bytes: int) -> None:
    """``coerce_subreg_to_size_sx``: ``w = (s8/s16) w`` within the low half (the caller then
    zero-extends and synchronises)."""
    sign_extend_sub_bits(s, size_bytes * 8)


def sign_extend_bits(s: Scalar, nbits: int) -> None:
    """The kernel's sign extension of the low ``nbits`` to the register width (any ``nbits``,
    so that the small-width tests can run it): exact for constants; when the signed bounds share
    their bits above ``nbits``, the extended bounds if they do not straddle zero; otherwise the
    full signed range of ``nbits`` (``set_sext64_default_val``)."""
    m, _, _, hm, s32min, s32max, h, bits = _limits(s.bits)
    low = (1 << nbits) - 1
    if s.var_off.mask == 0:
        mark_known(s, sx(s.var_off.value & low, nbits) & m)
        return
    usmin, usmax = s.smin & m, s.smax & m
    if usmin >> nbits == usmax >> nbits:
        a, b = sx(usmax & low, nbits), sx(usmin & low, nbits)
        lo, hi = min(a, b), max(a, b)
        if (lo >= 0) == (hi >= 0):
            s.smin = s.s32_min = lo
            s.smax = s.s32_max = hi
            s.umin, s.u32_min = lo & m, lo & hm
            s.umax, s.u32_max = hi & m, hi & hm
            s.var_off = tn.range_(lo & m, hi & m, bits)
            return
    lo, hi = -(1 << (nbits - 1)), (1 << (nbits - 1)) - 1
    s.smin, s.smax = lo, hi
    s.s32_min, s.s32_max = max(lo, s32min), min(hi, s32max)
    s.umin, s.u32_min, s.umax, s.u32_max = 0, 0, m, hm
    s.var_off = tn.unknown(bits)


def sign_extend_sub_bits(s: Scalar, nbits: int) -> None:
    """``coerce_subreg_to_size_sx`` for any ``nbits`` below the half width."""
    _, _, _, hm, _, _, h, bits = _limits(s.bits)
    low = (1 << nbits) - 1
    if tn.subreg_is_const(s.var_off, bits):
        v = sx(s.var_off.value & low, nbits) & hm
        s.var_off = Tnum(v, 0)
        s.s32_min = s.s32_max = sx(v, h)
        s.u32_min = s.u32_max = v
        return
    u32smin, u32smax = s.s32_min & hm, s.s32_max & hm
    if u32smin >> nbits == u32smax >> nbits:
        a, b = sx(u32smax & low, nbits), sx(u32smin & low, nbits)
        lo, hi = min(a, b), max(a, b)
        if (lo >= 0) == (hi >= 0):
            s.s32_min, s.s32_max = lo, hi
            s.u32_min, s.u32_max = lo & hm, hi & hm
            s.var_off = tn.subreg(tn.range_(lo & ((1 << bits) - 1), hi & ((1 << bits) - 1), bits), bits)
            return
    s.s32_min, s.s32_max = -(1 << (nbits - 1)), (1 << (nbits - 1)) - 1
    s.u32_min, s.u32_max = 0, hm
    s.var_off = tn.subreg(tn.unknown(bits), bits)


def _sign_extend(s: Scalar, size_bits: int, to_bits: int) -> None:
    """Sign extension of the low ``size_bits`` into the full width or the half width (tests)."""
    if to_bits == s.bits:
        sign_extend_bits(s, size_bits)
    else:
        sign_extend_sub_bits(s, size_bits)


def byte_swap(s: Scalar, nbits: int, swap: bool) -> None:
    """``BPF_END``: a swap permutes the tnum's bytes (the bounds are recomputed from it); 16/32-bit
    forms then truncate (``coerce_reg_to_size``). ``le`` on a little-endian host only truncates."""
    if swap:
        s.var_off = tn.bswap(s.var_off, nbits)
        mark_unbounded(s)
    if nbits < s.bits:
        coerce_reg_to_size(s, nbits)
    else:
        reg_bounds_sync(s)


# --- ALU transfer functions ------------------------------------------------------------------


def _add_ovf(a: int, b: int, lo: int, hi: int) -> tuple[int, bool]:
    """``a + b`` and whether it leaves ``[lo, hi]`` (the kernel's ``check_add_overflow``)."""
    r = a + b
    return r, (r < lo) | (r > hi)


def scalar32_min_max_add(dst: Scalar, src: Scalar) -> None:
    _, _, _, hm, s32min, s32max, _, _ = _limits(dst.bits)
    a, o1 = _add_ovf(dst.s32_min, src.s32_min, s32min, s32max)
    b, o2 = _add_ovf(dst.s32_max, src.s32_max, s32min, s32max)
    ovf = o1 | o2
    dst.s32_min, dst.s32_max = _sel(ovf, s32min, a), _sel(ovf, s32max, b)
    lo, hi = dst.u32_min + src.u32_min, dst.u32_max + src.u32_max
    # some but not all sums wrap: unbounded; none or all wrap: the wrapped ends
    some = (lo <= hm) & (hi > hm)
    dst.u32_min, dst.u32_max = _sel(some, 0, lo & hm), _sel(some, hm, hi & hm)


def scalar_min_max_add(dst: Scalar, src: Scalar) -> None:
    m, smin, smax, *_ = _limits(dst.bits)
    a, o1 = _add_ovf(dst.smin, src.smin, smin, smax)
    b, o2 = _add_ovf(dst.smax, src.smax, smin, smax)
    ovf = o1 | o2
    dst.smin, dst.smax = _sel(ovf, smin, a), _sel(ovf, smax, b)
    lo, hi = dst.umin + src.umin, dst.umax + src.umax
    some = (lo <= m) & (hi > m)
    dst.umin, dst.umax = _sel(some, 0, lo & m), _sel(some, m, hi & m)


def scalar32_min_max_sub(dst: Scalar, src: Scalar) -> None:
    _, _, _, hm, s32min, s32max, _, _ = _limits(dst.bits)
    a, o1 = _add_ovf(dst.s32_min, -src.s32_max, s32min, s32max)
    b, o2 = _add_ovf(dst.s32_max, -src.s32_min, s32min, s32max)
    ovf = o1 | o2
    dst.s32_min, dst.s32_max = _sel(ovf, s32min, a), _sel(ovf, s32max, b)
    lo, hi = dst.u32_min - src.u32_max, dst.u32_max - src.u32_min
    some = (lo < 0) & (hi >= 0)
    dst.u32_min, dst.u32_max = _sel(some, 0, lo & hm), _sel(some, hm, hi & hm)


def scalar_min_max_sub(dst: Scalar, src: Scalar) -> None:
    m, smin, smax, *_ = _limits(dst.bits)
    a, o1 = _add_ovf(dst.smin, -src.smax, smin, smax)
    b, o2 = _add_ovf(dst.smax, -src.smin, smin, smax)
    ovf = o1 | o2
    dst.smin, dst.smax = _sel(ovf, smin, a), _sel(ovf, smax, b)
    lo, hi = dst.umin - src.umax, dst.umax - src.umin
    some = (lo < 0) & (hi >= 0)
    dst.umin, dst.umax = _sel(some, 0, lo & m), _sel(some, m, hi & m)


def _mul_bounds(umin, umax, smin, smax, src_u, src_s, m, lo, hi):  # type: ignore[no-untyped-def]
    """The u and s bounds of a product (both halves of ``scalar{32,}_min_max_mul``): the ends'
    products, or unbounded when one of them overflows."""
    uhi, ulo = umax * src_u[1], umin * src_u[0]
    uovf = (uhi > m) | (ulo > m)
    p = (smin * src_s[0], smin * src_s[1], smax * src_s[0], smax * src_s[1])
    sovf = (p[0] < lo) | (p[0] > hi) | (p[1] < lo) | (p[1] > hi)
    sovf = sovf | (p[2] < lo) | (p[2] > hi) | (p[3] < lo) | (p[3] > hi)
    pmin = _min(_min(p[0], p[1]), _min(p[2], p[3]))
    pmax = _max(_max(p[0], p[1]), _max(p[2], p[3]))
    return (_sel(uovf, 0, ulo), _sel(uovf, m, uhi), _sel(sovf, lo, pmin), _sel(sovf, hi, pmax))


def scalar32_min_max_mul(dst: Scalar, src: Scalar) -> None:
    _, _, _, hm, s32min, s32max, _, _ = _limits(dst.bits)
    dst.u32_min, dst.u32_max, dst.s32_min, dst.s32_max = _mul_bounds(
        dst.u32_min,
        dst.u32_max,
        dst.s32_min,
        dst.s32_max,
        (src.u32_min, src.u32_max),
        (src.s32_min, src.s32_max),
        hm,
        s32min,
        s32max,
    )


def scalar_min_max_mul(dst: Scalar, src: Scalar) -> None:
    m, smin, smax, *_ = _limits(dst.bits)
    dst.umin, dst.umax, dst.smin, dst.smax = _mul_bounds(
        dst.umin, dst.umax, dst.smin, dst.smax, (src.umin, src.umax), (src.smin, src.smax), m, smin, smax
    )


def _s32_from_u32(dst: Scalar) -> None:
    _, _, _, _, s32min, s32max, h, _ = _limits(dst.bits)
    lo, hi = sx(dst.u32_min, h), sx(dst.u32_max, h)
    ok = lo <= hi  # the u32 range does not cross the sign boundary
    dst.s32_min, dst.s32_max = _sel(ok, lo, s32min), _sel(ok, hi, s32max)


def _s64_from_u64(dst: Scalar) -> None:
    _, smin, smax, *_r = _limits(dst.bits)
    bits = dst.bits
    lo, hi = sx(dst.umin, bits), sx(dst.umax, bits)
    ok = lo <= hi
    dst.smin, dst.smax = _sel(ok, lo, smin), _sel(ok, hi, smax)


def _subregs_known(dst: Scalar, src: Scalar) -> bool:
    bits = dst.bits
    return (tn.subreg(src.var_off, bits).mask == 0) & (tn.subreg(dst.var_off, bits).mask == 0)


def _mark_known_where(s: Scalar, known: bool, value: int) -> None:
    """``__mark_reg_known(s, value)`` where ``known`` holds (element-wise for arrays)."""
    if known.__class__ is bool:
        if known:
            mark_known(s, value)
        return
    k = Scalar.__new__(Scalar)
    k.bits = s.bits
    mark_known(k, value)
    for f in ("umin", "umax", "smin", "smax", "u32_min", "u32_max", "s32_min", "s32_max"):
        setattr(s, f, _sel(known, getattr(k, f), getattr(s, f)))


# scalar{32,}_min_max_{and,or,xor}: the var_off has already been computed (tnum_and/or/xor); a
# result with both operands known is that constant. The kernel's 64-bit functions end with
# __update_reg_bounds (not in the known case, where it changes nothing): adjust_scalar calls it.


def scalar32_min_max_and(dst: Scalar, src: Scalar) -> None:
    """Note the known/known case: CVE-2021-3490 was this function returning without updating the
    32-bit bounds there (``soundness.cve_2021_3490_and``)."""
    v = tn.subreg(dst.var_off, dst.bits)
    known = _subregs_known(dst, src)
    dst.u32_min = v.value
    dst.u32_max = _sel(known, v.value, _min(dst.u32_max, src.u32_max))
    _s32_from_u32(dst)


def scalar_min_max_and(dst: Scalar, src: Scalar) -> None:
    known = (src.var_off.mask == 0) & (dst.var_off.mask == 0)
    dst.umin = dst.var_off.value
    dst.umax = _min(dst.umax, src.umax)
    _s64_from_u64(dst)
    _mark_known_where(dst, known, dst.var_off.value)


def scalar32_min_max_or(dst: Scalar, src: Scalar) -> None:
    v = tn.subreg(dst.var_off, dst.bits)
    known = _subregs_known(dst, src)
    dst.u32_min = _sel(known, v.value, _max(dst.u32_min, src.u32_min))
    dst.u32_max = v.value | v.mask
    _s32_from_u32(dst)


def scalar_min_max_or(dst: Scalar, src: Scalar) -> None:
    known = (src.var_off.mask == 0) & (dst.var_off.mask == 0)
    dst.umin = _max(dst.umin, src.umin)
    dst.umax = dst.var_off.value | dst.var_off.mask
    _s64_from_u64(dst)
    _mark_known_where(dst, known, dst.var_off.value)


def scalar32_min_max_xor(dst: Scalar, src: Scalar) -> None:
    """Both subregisters known: the var_off is the constant, so these bounds are it (the kernel's
    ``__mark_reg32_known`` branch gives the same)."""
    v = tn.subreg(dst.var_off, dst.bits)
    dst.u32_min = v.value
    dst.u32_max = v.value | v.mask
    _s32_from_u32(dst)


def scalar_min_max_xor(dst: Scalar, src: Scalar) -> None:
    known = (src.var_off.mask == 0) & (dst.var_off.mask == 0)
    dst.umin = dst.var_off.value
    dst.umax = dst.var_off.value | dst.var_off.mask
    _s64_from_u64(dst)
    _mark_known_where(dst, known, dst.var_off.value)


# The shifts: ``src`` is a known amount below the width (is_safe_to_compute). As for and/or/xor,
# the kernel's trailing __update_reg{32,}_bounds is called by adjust_scalar.


def _scalar32_lsh_bounds(dst: Scalar, umin_val: int, umax_val: int) -> None:
    _, _, _, hm, s32min, s32max, h, _ = _limits(dst.bits)
    dst.s32_min, dst.s32_max = s32min, s32max
    if umax_val > h - 1:
        dst.u32_min, dst.u32_max = 0, hm
        return
    lost = dst.u32_max > 1 << (h - 1 - umax_val)  # the shift may push bits out
    dst.u32_min = _sel(lost, 0, dst.u32_min << umin_val)
    dst.u32_max = _sel(lost, hm, dst.u32_max << umax_val)


def scalar32_min_max_lsh(dst: Scalar, src: Scalar) -> None:
    bits = dst.bits
    sub_ = tn.subreg(dst.var_off, bits)
    _scalar32_lsh_bounds(dst, src.u32_min, src.u32_max)
    dst.var_off = tn.subreg(tn.lshift(sub_, src.u32_min, bits), bits)
    mark64_unbounded(dst)


def _scalar64_lsh_bounds(dst: Scalar, umin_val: int, umax_val: int) -> None:
    m, smin, smax, _, _, _, h, bits = _limits(dst.bits)
    # x << 32 is the low half, signed, times 2**32: the s32 bounds give the s64 ones
    if umin_val == h and umax_val == h:
        dst.smax = dst.s32_max << h
        dst.smin = dst.s32_min << h
    else:
        dst.smax = smax
        dst.smin = smin
    lost = dst.umax > 1 << (bits - 1 - umax_val)
    dst.umin = _sel(lost, 0, dst.umin << umin_val)
    dst.umax = _sel(lost, m, dst.umax << umax_val)


def scalar_min_max_lsh(dst: Scalar, src: Scalar) -> None:
    umin_val, umax_val = src.umin, src.umax
    _scalar64_lsh_bounds(dst, umin_val, umax_val)
    _scalar32_lsh_bounds(dst, umin_val, umax_val)
    dst.var_off = tn.lshift(dst.var_off, umin_val, dst.bits)


def scalar32_min_max_rsh(dst: Scalar, src: Scalar) -> None:
    _, _, _, _, s32min, s32max, _, bits = _limits(dst.bits)
    sub_ = tn.subreg(dst.var_off, bits)
    dst.s32_min, dst.s32_max = s32min, s32max
    dst.var_off = tn.rshift(sub_, src.u32_min)
    dst.u32_min = dst.u32_min >> src.u32_max
    dst.u32_max = dst.u32_max >> src.u32_min
    mark64_unbounded(dst)


def scalar_min_max_rsh(dst: Scalar, src: Scalar) -> None:
    _, smin, smax, *_r = _limits(dst.bits)
    dst.smin, dst.smax = smin, smax
    dst.var_off = tn.rshift(dst.var_off, src.umin)
    dst.umin = dst.umin >> src.umax
    dst.umax = dst.umax >> src.umin
    mark32_unbounded(dst)


def scalar32_min_max_arsh(dst: Scalar, src: Scalar) -> None:
    _, _, _, hm, _, _, h, bits = _limits(dst.bits)
    k = src.u32_min
    dst.s32_min = dst.s32_min >> k
    dst.s32_max = dst.s32_max >> k
    dst.var_off = tn.arshift(tn.subreg(dst.var_off, bits), k, h, bits)
    dst.u32_min, dst.u32_max = 0, hm
    mark64_unbounded(dst)


def scalar_min_max_arsh(dst: Scalar, src: Scalar) -> None:
    m, *_ = _limits(dst.bits)
    k = src.umin
    dst.smin = dst.smin >> k
    dst.smax = dst.smax >> k
    dst.var_off = tn.arshift(dst.var_off, k, dst.bits, dst.bits)
    dst.umin, dst.umax = 0, m
    mark32_unbounded(dst)


def is_safe_to_compute(op: AluOp, src: Scalar, alu32: bool) -> bool:
    """``is_safe_to_compute_dst_reg_range``: shifts need a constant amount below the width;
    div/mod (and anything else) make the result unknown."""
    if op in (
        AluOp.BPF_ADD,
        AluOp.BPF_SUB,
        AluOp.BPF_NEG,
        AluOp.BPF_AND,
        AluOp.BPF_XOR,
        AluOp.BPF_OR,
        AluOp.BPF_MUL,
    ):
        return True
    if op in (AluOp.BPF_LSH, AluOp.BPF_RSH, AluOp.BPF_ARSH):
        if alu32:
            const = src.subreg_is_const() and src.s32_min == src.s32_max and src.u32_min == src.u32_max
            return const and src.umax < src.bits // 2
        const = src.is_const() and src.smin == src.smax and src.umin == src.umax
        return const and src.umax < src.bits
    return False


#: The 32-bit and 64-bit bounds helpers of each operation (tests swap them for mutants).
OPS: dict[AluOp, tuple[str, str]] = {
    AluOp.BPF_ADD: ("scalar32_min_max_add", "scalar_min_max_add"),
    AluOp.BPF_SUB: ("scalar32_min_max_sub", "scalar_min_max_sub"),
    AluOp.BPF_MUL: ("scalar32_min_max_mul", "scalar_min_max_mul"),
    AluOp.BPF_AND: ("scalar32_min_max_and", "scalar_min_max_and"),
    AluOp.BPF_OR: ("scalar32_min_max_or", "scalar_min_max_or"),
    AluOp.BPF_XOR: ("scalar32_min_max_xor", "scalar_min_max_xor"),
}


_CONST_FOLD = frozenset(
    {
        AluOp.BPF_ADD,
        AluOp.BPF_SUB,
        AluOp.BPF_MUL,
        AluOp.BPF_AND,
        AluOp.BPF_OR,
        AluOp.BPF_XOR,
        AluOp.BPF_LSH,
        AluOp.BPF_RSH,
        AluOp.BPF_ARSH,
        AluOp.BPF_NEG,
    }
)


def _fold(op: AluOp, x: int, y: int, nbits: int) -> int:
    m = (1 << nbits) - 1
    x &= m
    y &= m
    if op is AluOp.BPF_ADD:
        return (x + y) & m
    if op is AluOp.BPF_SUB:
        return (x - y) & m
    if op is AluOp.BPF_MUL:
        return (x * y) & m
    if op is AluOp.BPF_AND:
        return x & y
    if op is AluOp.BPF_OR:
        return x | y
    if op is AluOp.BPF_XOR:
        return x ^ y
    if op is AluOp.BPF_LSH:
        return (x << y) & m
    if op is AluOp.BPF_RSH:
        return x >> y
    if op is AluOp.BPF_ARSH:
        return (sx(x, nbits) >> y) & m
    return -x & m  # BPF_NEG


def adjust_scalar(dst: Scalar, src: Scalar, op: AluOp, alu32: bool) -> None:
    """``adjust_scalar_min_max_vals``: ``dst = dst op src`` in place (``op`` may be BPF_NEG, with
    ``src`` ignored). ``src`` is not modified."""
    if dst.var_off.mask == 0 and (src.var_off.mask == 0 or op is AluOp.BPF_NEG) and op in _CONST_FOLD:
        # both operands known: the kernel's transfer functions give exactly the concrete result
        # (div/mod are not folded: the kernel makes them unknown)
        bits = dst.bits
        x, y = dst.var_off.value, src.var_off.value
        if op in (AluOp.BPF_LSH, AluOp.BPF_RSH, AluOp.BPF_ARSH) and not is_safe_to_compute(op, src, alu32):
            mark_unknown(dst)
            return
        mark_known(dst, _fold(op, x, y, bits // 2 if alu32 else bits))
        return
    if op is AluOp.BPF_NEG:
        old = dst.copy()
        mark_known(dst, 0)
        scalar32_min_max_sub(dst, old)
        scalar_min_max_sub(dst, old)
        dst.var_off = tn.neg(old.var_off, dst.bits)
    elif not is_safe_to_compute(op, src, alu32):
        mark_unknown(dst)
        return
    elif op in OPS:
        f32, f64 = OPS[op]
        g = globals()
        if op is AluOp.BPF_ADD:
            g[f32](dst, src)
            g[f64](dst, src)
            dst.var_off = tn.add(dst.var_off, src.var_off, dst.bits)
        elif op is AluOp.BPF_SUB:
            g[f32](dst, src)
            g[f64](dst, src)
            dst.var_off = tn.sub(dst.var_off, src.var_off, dst.bits)
        else:
            t = {
                AluOp.BPF_MUL: lambda a, b: tn.mul(a, b, dst.bits),
                AluOp.BPF_AND: tn.and_,
                AluOp.BPF_OR: tn.or_,
                AluOp.BPF_XOR: tn.xor,
            }[op]
            dst.var_off = t(dst.var_off, src.var_off)
            g[f32](dst, src)
            g[f64](dst, src)
            if op is not AluOp.BPF_MUL:
                update_reg_bounds(dst)  # the end of scalar_min_max_{and,or,xor}
    else:
        if op is AluOp.BPF_LSH:
            (scalar32_min_max_lsh if alu32 else scalar_min_max_lsh)(dst, src)
        elif op is AluOp.BPF_RSH:
            (scalar32_min_max_rsh if alu32 else scalar_min_max_rsh)(dst, src)
        else:
            (scalar32_min_max_arsh if alu32 else scalar_min_max_arsh)(dst, src)
        # the end of scalar{32,}_min_max_{lsh,rsh,arsh}
        (update_reg32_bounds if alu32 else update_reg_bounds)(dst)
    if alu32:
        zext_32_to_64(dst)
    reg_bounds_sync(dst)


# --- branches --------------------------------------------------------------------------------

#: ``rev_opcode``: the condition of the fall-through branch.
REVERSE: dict[CondOp, CondOp] = {
    JmpOp.BPF_JEQ: JmpOp.BPF_JNE,
    JmpOp.BPF_JNE: JmpOp.BPF_JEQ,
    JmpOp.BPF_JGE: JmpOp.BPF_JLT,
    JmpOp.BPF_JLT: JmpOp.BPF_JGE,
    JmpOp.BPF_JGT: JmpOp.BPF_JLE,
    JmpOp.BPF_JLE: JmpOp.BPF_JGT,
    JmpOp.BPF_JSGE: JmpOp.BPF_JSLT,
    JmpOp.BPF_JSLT: JmpOp.BPF_JSGE,
    JmpOp.BPF_JSGT: JmpOp.BPF_JSLE,
    JmpOp.BPF_JSLE: JmpOp.BPF_JSGT,
    JmpOp.BPF_JSET: JSET_NOT,
    JSET_NOT: JmpOp.BPF_JSET,
}
#: ``flip_opcode``: the same condition with the operands swapped.
FLIP: dict[CondOp, CondOp] = {
    JmpOp.BPF_JEQ: JmpOp.BPF_JEQ,
    JmpOp.BPF_JNE: JmpOp.BPF_JNE,
    JmpOp.BPF_JSET: JmpOp.BPF_JSET,
    JSET_NOT: JSET_NOT,
    JmpOp.BPF_JGT: JmpOp.BPF_JLT,
    JmpOp.BPF_JLT: JmpOp.BPF_JGT,
    JmpOp.BPF_JGE: JmpOp.BPF_JLE,
    JmpOp.BPF_JLE: JmpOp.BPF_JGE,
    JmpOp.BPF_JSGT: JmpOp.BPF_JSLT,
    JmpOp.BPF_JSLT: JmpOp.BPF_JSGT,
    JmpOp.BPF_JSGE: JmpOp.BPF_JSLE,
    JmpOp.BPF_JSLE: JmpOp.BPF_JSGE,
}


def is_reg_const(s: Scalar, is32: bool) -> bool:
    return s.subreg_is_const() if is32 else s.is_const()


def const_value(s: Scalar, is32: bool) -> int:
    return tn.subreg(s.var_off, s.bits).value if is32 else s.var_off.value


def concrete_cond(op: CondOp, x: int, y: int, nbits: int) -> bool:
    """The concrete meaning of a condition on ``nbits``-bit unsigned operands."""
    m = (1 << nbits) - 1
    x &= m
    y &= m
    if op is JmpOp.BPF_JEQ:
        return x == y
    if op is JmpOp.BPF_JNE:
        return x != y
    if op is JmpOp.BPF_JGT:
        return x > y
    if op is JmpOp.BPF_JGE:
        return x >= y
    if op is JmpOp.BPF_JLT:
        return x < y
    if op is JmpOp.BPF_JLE:
        return x <= y
    if op is JmpOp.BPF_JSET:
        return bool(x & y)
    if op == JSET_NOT:
        return not x & y
    a, b = sx(x, nbits), sx(y, nbits)
    if op is JmpOp.BPF_JSGT:
        return a > b
    if op is JmpOp.BPF_JSGE:
        return a >= b
    if op is JmpOp.BPF_JSLT:
        return a < b
    if op is JmpOp.BPF_JSLE:
        return a <= b
    raise ValueError(op)


def _taken(always, never):  # type: ignore[no-untyped-def]
    """1 where ``always`` holds, else 0 where ``never`` holds, else -1."""
    return _sel(always, 1, _sel(never, 0, -1))


def branch_taken(r1: Scalar, r2: Scalar, op: CondOp, is32: bool) -> int:
    """``is_scalar_branch_taken``: 1 (always), 0 (never) or -1 (unknown). Element-wise when
    ``r1``'s fields are arrays (``r2`` a plain Scalar when ``op`` is a JSET)."""
    bits = r1.bits
    if is32:
        t1, t2 = tn.subreg(r1.var_off, bits), tn.subreg(r2.var_off, bits)
        umin1, umax1, smin1, smax1 = r1.u32_min, r1.u32_max, r1.s32_min, r1.s32_max
        umin2, umax2, smin2, smax2 = r2.u32_min, r2.u32_max, r2.s32_min, r2.s32_max
    else:
        t1, t2 = r1.var_off, r2.var_off
        umin1, umax1, smin1, smax1 = r1.umin, r1.umax, r1.smin, r1.smax
        umin2, umax2, smin2, smax2 = r2.umin, r2.umax, r2.smin, r2.smax
    if op is JmpOp.BPF_JEQ or op is JmpOp.BPF_JNE:
        both_known = (t1.mask == 0) & (t2.mask == 0)
        disjoint = _not(tn.overlap(t1, t2)) | (umin1 > umax2) | (umax1 < umin2)
        disjoint = disjoint | (smin1 > smax2) | (smax1 < smin2)
        if not is32:
            disjoint = (
                disjoint
                | (r1.u32_min > r2.u32_max)
                | (r1.u32_max < r2.u32_min)
                | (r1.s32_min > r2.s32_max)
                | (r1.s32_max < r2.s32_min)
            )
        equal = both_known & (t1.value == t2.value)
        if op is JmpOp.BPF_JEQ:
            return _sel(both_known, _sel(equal, 1, 0), _sel(disjoint, 0, -1))
        return _sel(both_known, _sel(equal, 0, 1), _sel(disjoint, 1, -1))
    if op is JmpOp.BPF_JSET or op == JSET_NOT:
        a, b = (r1, r2)
        ta, tb = t1, t2
        if not is_reg_const(b, is32):
            a, b, ta, tb = b, a, tb, ta
        if not is_reg_const(b, is32):
            return -1
        res = _taken((~ta.mask & ta.value) & tb.value != 0, (ta.mask | ta.value) & tb.value == 0)
        if op == JSET_NOT:
            res = _sel(res >= 0, 1 - res, res)
        return res
    if op is JmpOp.BPF_JGT:
        return _taken(umin1 > umax2, umax1 <= umin2)
    if op is JmpOp.BPF_JSGT:
        return _taken(smin1 > smax2, smax1 <= smin2)
    if op is JmpOp.BPF_JLT:
        return _taken(umax1 < umin2, umin1 >= umax2)
    if op is JmpOp.BPF_JSLT:
        return _taken(smax1 < smin2, smin1 >= smax2)
    if op is JmpOp.BPF_JGE:
        return _taken(umin1 >= umax2, umax1 < umin2)
    if op is JmpOp.BPF_JSGE:
        return _taken(smin1 >= smax2, smax1 < smin2)
    if op is JmpOp.BPF_JLE:
        return _taken(umax1 <= umin2, umin1 > umax2)
    if op is JmpOp.BPF_JSLE:
        return _taken(smax1 <= smin2, smin1 > smax2)
    return -1


def refine_cond_op(r1: Scalar, r2: Scalar, op: CondOp, is32: bool) -> None:
    """``regs_refine_cond_op``: narrow ``r1`` and ``r2`` assuming ``r1 op r2`` holds. Written
    with :func:`_sel`/:func:`_min`/:func:`_max`, so it also runs on arrays of states (an operand
    whose constness decides the path, for JNE/JSET, must be a plain Scalar)."""
    bits = r1.bits
    _, _, _, hm, _, _, h, _ = _limits(bits)
    if op in (JmpOp.BPF_JGE, JmpOp.BPF_JGT, JmpOp.BPF_JSGE, JmpOp.BPF_JSGT):
        op = FLIP[op]
        r1, r2 = r2, r1
    if op is JmpOp.BPF_JEQ:
        if is32:
            r1.u32_min = _max(r1.u32_min, r2.u32_min)
            r1.u32_max = _min(r1.u32_max, r2.u32_max)
            r1.s32_min = _max(r1.s32_min, r2.s32_min)
            r1.s32_max = _min(r1.s32_max, r2.s32_max)
            r2.u32_min, r2.u32_max, r2.s32_min, r2.s32_max = r1.u32_min, r1.u32_max, r1.s32_min, r1.s32_max
            t = tn.intersect(tn.subreg(r1.var_off, bits), tn.subreg(r2.var_off, bits))
            r1.var_off = tn.with_subreg(r1.var_off, t, bits)
            r2.var_off = tn.with_subreg(r2.var_off, t, bits)
        else:
            r1.umin = _max(r1.umin, r2.umin)
            r1.umax = _min(r1.umax, r2.umax)
            r1.smin = _max(r1.smin, r2.smin)
            r1.smax = _min(r1.smax, r2.smax)
            r2.umin, r2.umax, r2.smin, r2.smax = r1.umin, r1.umax, r1.smin, r1.smax
            r1.var_off = tn.intersect(r1.var_off, r2.var_off)
            r2.var_off = r1.var_off
    elif op is JmpOp.BPF_JNE:
        if not is_reg_const(r2, is32):
            r1, r2 = r2, r1
        if not is_reg_const(r2, is32):
            return
        val = const_value(r2, is32)
        # a bound equal to the constant moves one step inwards
        if is32:
            r1.u32_min = _sel(r1.u32_min == val, r1.u32_min + 1, r1.u32_min)
            r1.u32_max = _sel(r1.u32_max == val, r1.u32_max - 1, r1.u32_max)
            r1.s32_min = _sel(r1.s32_min == sx(val, h), r1.s32_min + 1, r1.s32_min)
            r1.s32_max = _sel(r1.s32_max == sx(val, h), r1.s32_max - 1, r1.s32_max)
        else:
            r1.umin = _sel(r1.umin == val, r1.umin + 1, r1.umin)
            r1.umax = _sel(r1.umax == val, r1.umax - 1, r1.umax)
            r1.smin = _sel(r1.smin == sx(val, bits), r1.smin + 1, r1.smin)
            r1.smax = _sel(r1.smax == sx(val, bits), r1.smax - 1, r1.smax)
    elif op is JmpOp.BPF_JSET:
        if not is_reg_const(r2, is32):
            r1, r2 = r2, r1
        if not is_reg_const(r2, is32):
            return
        val = const_value(r2, is32)
        if val == 0 or val & (val - 1):
            return
        if is32:
            t = tn.or_(tn.subreg(r1.var_off, bits), Tnum(val, 0))
            r1.var_off = tn.with_subreg(r1.var_off, t, bits)
        else:
            r1.var_off = tn.or_(r1.var_off, Tnum(val, 0))
    elif op == JSET_NOT:
        if not is_reg_const(r2, is32):
            r1, r2 = r2, r1
        if not is_reg_const(r2, is32):
            return
        val = const_value(r2, is32)
        if is32:
            t = tn.and_(tn.subreg(r1.var_off, bits), Tnum(~val & hm, 0))
            r1.var_off = tn.with_subreg(r1.var_off, t, bits)
        else:
            r1.var_off = tn.and_(r1.var_off, Tnum(~val & ((1 << bits) - 1), 0))
        # Linux 6.18 derives the bounds from the new tnum alone on this branch (measured: after
        # ``r6 = (s16)r6``, the fall-through of ``if r6 & 8`` has lost [-32768, 32767]; the jump
        # branch keeps them)
        mark_unbounded(r1)
    elif op is JmpOp.BPF_JLE:
        if is32:
            r1.u32_max = _min(r1.u32_max, r2.u32_max)
            r2.u32_min = _max(r1.u32_min, r2.u32_min)
        else:
            r1.umax = _min(r1.umax, r2.umax)
            r2.umin = _max(r1.umin, r2.umin)
    elif op is JmpOp.BPF_JLT:
        if is32:
            r1.u32_max = _min(r1.u32_max, (r2.u32_max - 1) & hm)
            r2.u32_min = _max((r1.u32_min + 1) & hm, r2.u32_min)
        else:
            m = (1 << bits) - 1
            r1.umax = _min(r1.umax, (r2.umax - 1) & m)
            r2.umin = _max((r1.umin + 1) & m, r2.umin)
    elif op is JmpOp.BPF_JSLE:
        if is32:
            r1.s32_max = _min(r1.s32_max, r2.s32_max)
            r2.s32_min = _max(r1.s32_min, r2.s32_min)
        else:
            r1.smax = _min(r1.smax, r2.smax)
            r2.smin = _max(r1.smin, r2.smin)
    elif op is JmpOp.BPF_JSLT:
        if is32:
            r1.s32_max = _min(r1.s32_max, sx((r2.s32_max - 1) & hm, h))
            r2.s32_min = _max(sx((r1.s32_min + 1) & hm, h), r2.s32_min)
        else:
            m = (1 << bits) - 1
            r1.smax = _min(r1.smax, sx((r2.smax - 1) & m, bits))
            r2.smin = _max(sx((r1.smin + 1) & m, bits), r2.smin)


def refine(true1: Scalar, true2: Scalar, false1: Scalar, false2: Scalar, op: CondOp, is32: bool) -> None:
    """``reg_set_min_max`` on scalars: refine the copies for the jump (``true*``) and the
    fall-through (``false*``) branches of ``if r1 op r2`` and re-synchronise them. The caller
    has checked with :func:`branch_taken` that both branches are possible."""
    refine_cond_op(false1, false2, REVERSE[op], is32)
    reg_bounds_sync(false1)
    reg_bounds_sync(false2)
    refine_cond_op(true1, true2, op, is32)
    reg_bounds_sync(true1)
    reg_bounds_sync(true2)


# --- printing (the kernel's print_scalar_ranges / verbose_snum) -------------------------------


def _snum(v: int) -> str:
    """``verbose_snum``: decimal within [-32768, 32767], else hex of the 64-bit pattern."""
    return str(v) if -32768 <= v <= 32767 else f"{v & ((1 << 64) - 1):#x}"


def _unum(v: int) -> str:
    return str(v) if v <= 0xFFFF else f"{v:#x}"


def format_scalar(s: Scalar) -> str:
    """The kernel's ``print_reg_state`` for a scalar: a constant as a number, else
    ``scalar(...)`` with ``print_scalar_ranges``' merging of equal bounds (kernel/bpf/log.c)."""
    m, smin, smax, hm, s32min, s32max, h, bits = _limits(s.bits)
    if s.is_const():
        return _snum(sx(s.var_off.value, bits))

    def s32(v: int) -> int:
        return v if -32768 <= v <= 32767 else v & hm

    names = ("smin", "smax", "umin", "umax", "smin32", "smax32", "umin32", "umax32")
    vals = [s.smin, s.smax, s.umin, s.umax, s32(s.s32_min), s32(s.s32_max), s.u32_min, s.u32_max]
    omit = [s.smin == smin, s.smax == smax, s.umin == 0, s.umax == m, s.s32_min == s32min,
            s.s32_max == s32max, s.u32_min == 0, s.u32_max == hm]
    parts = []
    for i, name in enumerate(names):
        if omit[i]:
            continue
        val = vals[i]
        neg = name[0] == "s" and val < 0
        same = [name]
        for j in range(i + 2, len(names), 2):
            if omit[j] or (vals[j] & m) != (val & m):
                continue
            if (names[j][0] == "s" and vals[j] < 0) != neg:
                continue
            omit[j] = True
            same.append(names[j])
        parts.append("=".join(same) + "=" + (_snum(val) if name[0] == "s" else _unum(val)))
    if not tn.is_unknown(s.var_off, bits):
        t = s.var_off
        parts.append(f"var_off=({t.value:#x}; {t.mask:#x})")
    return "scalar(" + ",".join(parts) + ")"
