"""Abstract verifier states: registers, stack slots, frames, references (Linux ``bpf_reg_state``,
``bpf_stack_state``, ``bpf_func_state``, ``bpf_verifier_state``) and their comparison.

Register types follow the kernel's ``enum bpf_reg_type`` for what is modelled (scalar, ctx,
map pointer, map value, stack, packet, packet meta, packet end, ring buffer memory, function
pointer, socket). A pointer's variable offset uses the same :class:`~.ranges.Scalar` as a
scalar's value; its fixed offset is ``off``. Comparison for state pruning is the kernel's
``regsafe``/``stacksafe``/``refsafe`` with two simplifications (docs/verifier.md): every scalar
counts as precise, and stack slots are compared without liveness.
"""

from __future__ import annotations

from enum import IntEnum

from . import tnum as tn
from .ranges import Scalar, format_scalar, sx

MAX_BPF_STACK = 512
BPF_REG_SIZE = 8
MAX_CALL_FRAMES = 8


class T(IntEnum):
    """Register types (``enum bpf_reg_type`` base types)."""

    NOT_INIT = 0
    SCALAR = 1
    CTX = 2
    MAP_PTR = 3  # CONST_PTR_TO_MAP
    MAP_VALUE = 4
    MAP_KEY = 5
    STACK = 6
    PKT_META = 7
    PKT = 8
    PKT_END = 9
    MEM = 10  # PTR_TO_MEM (ring buffer records: ringbuf flag)
    FUNC = 11
    SOCK_COMMON = 12


TYPE_NAMES = {
    T.NOT_INIT: "?",
    T.SCALAR: "scalar",
    T.CTX: "ctx",
    T.MAP_PTR: "map_ptr",
    T.MAP_VALUE: "map_value",
    T.MAP_KEY: "map_key",
    T.STACK: "fp",
    T.PKT_META: "pkt_meta",
    T.PKT: "pkt",
    T.PKT_END: "pkt_end",
    T.MEM: "mem",
    T.FUNC: "func",
    T.SOCK_COMMON: "sock_common",
}
PKT_TYPES = (T.PKT, T.PKT_META)

# Stack byte types (``enum bpf_stack_slot_type``) and their log characters.
STACK_INVALID, STACK_SPILL, STACK_MISC, STACK_ZERO = 0, 1, 2, 3
SLOT_CHARS = "?rm0"


class MapInfo:
    """What the verifier knows of a map (``struct bpf_map``): type id, sizes, name."""

    __slots__ = (
        "index", "name", "type", "type_name", "key_size", "value_size", "max_entries", "flags", "inner"
    )

    def __init__(
        self,
        index: int,
        name: str,
        type_: int,
        type_name: str,
        key_size: int,
        value_size: int,
        max_entries: int,
        flags: int = 0,
        inner: MapInfo | None = None,
    ) -> None:
        self.index, self.name, self.type, self.type_name = index, name, type_, type_name
        #: a map-in-map's template (``map->inner_map_meta``): what a lookup returns a pointer to
        self.inner = inner
        self.key_size, self.value_size, self.max_entries, self.flags = (
            key_size,
            value_size,
            max_entries,
            flags,
        )


class Reg:
    """One register (or spilled register)."""

    __slots__ = (
        "type",
        "s",
        "off",
        "id",
        "ref_obj_id",
        "map",
        "range",
        "mem_size",
        "frameno",
        "maybe_null",
        "ringbuf",
        "subprog",
        "add_const",
    )

    def __init__(self) -> None:
        self.type = T.NOT_INIT
        self.s = Scalar()
        self.off = 0
        self.id = 0
        self.ref_obj_id = 0
        self.map: MapInfo | None = None
        self.range = 0
        self.mem_size = 0
        self.frameno = 0
        self.maybe_null = False
        self.ringbuf = False
        self.subprog = 0
        self.add_const = 0  # a linked scalar: this = (the id's value) + off, in 32 or 64 bit

    def copy(self) -> Reg:
        r = Reg.__new__(Reg)
        r.type, r.s, r.off, r.id, r.ref_obj_id = self.type, self.s.copy(), self.off, self.id, self.ref_obj_id
        r.map, r.range, r.mem_size, r.frameno = self.map, self.range, self.mem_size, self.frameno
        r.maybe_null, r.ringbuf, r.subprog, r.add_const = (
            self.maybe_null,
            self.ringbuf,
            self.subprog,
            self.add_const,
        )
        return r

    def assign(self, o: Reg) -> None:
        self.type, self.off, self.id, self.ref_obj_id = o.type, o.off, o.id, o.ref_obj_id
        self.s = o.s.copy()
        self.map, self.range, self.mem_size, self.frameno = o.map, o.range, o.mem_size, o.frameno
        self.maybe_null, self.ringbuf, self.subprog, self.add_const = (
            o.maybe_null,
            o.ringbuf,
            o.subprog,
            o.add_const,
        )

    # --- marking ------------------------------------------------------------------------------

    def mark_not_init(self) -> None:
        self.__init__()  # type: ignore[misc]

    def mark_unknown(self) -> None:
        self.mark_not_init()
        self.type = T.SCALAR

    def mark_known(self, value: int) -> None:
        self.mark_not_init()
        self.type = T.SCALAR
        self.s = Scalar.const(value)

    def mark_ptr(self, t: T, **kw: object) -> None:
        """A pointer with fixed offset 0 and a known-zero variable part (``mark_reg_known_zero``)."""
        self.mark_not_init()
        self.type = t
        self.s = Scalar.const(0)
        for k, v in kw.items():
            setattr(self, k, v)

    # --- queries ------------------------------------------------------------------------------

    @property
    def is_pointer(self) -> bool:
        return self.type not in (T.NOT_INIT, T.SCALAR)

    @property
    def is_pkt(self) -> bool:
        return self.type in PKT_TYPES

    def is_const(self) -> bool:
        return self.type == T.SCALAR and self.s.is_const()

    def is_null(self) -> bool:
        return self.type == T.SCALAR and self.s.is_const() and self.s.value == 0

    def type_str(self) -> str:
        """``reg_type_str``."""
        base = TYPE_NAMES[self.type]
        if self.type == T.MEM and self.ringbuf:
            base = "ringbuf_mem"
        return base + ("_or_null" if self.maybe_null else "")

    def exact_key(self) -> tuple[object, ...]:
        return (
            self.type,
            self.s.key(),
            self.off,
            self.map.index if self.map else -1,
            self.range,
            self.mem_size,
            self.frameno,
            self.maybe_null,
            self.ringbuf,
            self.subprog,
            self.add_const,
        )

    def __repr__(self) -> str:
        return format_reg(self, 0)


def format_reg(r: Reg, frameno: int) -> str:
    """``print_reg_state``."""
    if r.type == T.SCALAR and r.s.is_const():
        return _snum(sx(r.s.value, 64))
    if r.type == T.SCALAR:
        inner = format_scalar(r.s)[len("scalar(") : -1]
        ident = [f"id={r.id}" + (f"{r.off:+d}" if r.add_const else "")] if r.id else []
        return "scalar(" + ",".join(ident + ([inner] if inner else [])) + ")"
    out = r.type_str()
    if r.type == T.STACK:
        if r.frameno != frameno:
            out += f"[{r.frameno}]"
        if r.s.is_const():
            return out + _snum(sx((r.s.value + r.off) & ((1 << 64) - 1), 64))
    parts = []
    if r.id:
        parts.append(f"id={r.id}")
    if r.ref_obj_id:
        parts.append(f"ref_obj_id={r.ref_obj_id}")
    if r.map is not None and r.type in (T.MAP_PTR, T.MAP_VALUE, T.MAP_KEY):
        if r.map.name:
            parts.append(f"map={r.map.name[:15]}")
        parts.append(f"ks={r.map.key_size},vs={r.map.value_size}")
    if r.type != T.SCALAR and r.off:
        parts.append(f"off={_snum(r.off)}")
    if r.is_pkt:
        parts.append(f"r={r.range}")
    if r.type == T.MEM:
        parts.append(f"sz={r.mem_size}")
    if r.s.is_const():
        if r.s.value:
            parts.append(f"imm={_snum(sx(r.s.value, 64))}")
        body = ",".join(parts)
    else:
        text = format_scalar(r.s)
        inner = text[len("scalar(") : -1]
        body = ",".join(parts + ([inner] if inner else []))
    return f"{out}({body})"


def _snum(v: int) -> str:
    return str(v) if -32768 <= v <= 32767 else f"{v & ((1 << 64) - 1):#x}"


class Slot:
    """One 8-byte stack slot: a type per byte (kernel ``slot_type[8]``: index 7 is the lowest
    address) and the spilled register, if any."""

    __slots__ = ("types", "spilled")

    def __init__(self) -> None:
        self.types = [STACK_INVALID] * BPF_REG_SIZE
        self.spilled: Reg | None = None

    def copy(self) -> Slot:
        s = Slot.__new__(Slot)
        s.types = list(self.types)
        s.spilled = self.spilled.copy() if self.spilled is not None else None
        return s

    def is_spill(self) -> bool:
        return self.types[BPF_REG_SIZE - 1] == STACK_SPILL and self.spilled is not None


class Frame:
    """One call frame (``bpf_func_state``)."""

    __slots__ = ("regs", "stack", "allocated", "callsite", "frameno", "subprog", "in_callback")

    def __init__(
        self, frameno: int = 0, callsite: int = -1, subprog: int = 0, in_callback: bool = False
    ) -> None:
        self.regs = [Reg() for _ in range(11)]
        self.stack: dict[int, Slot] = {}
        self.allocated = 0  # bytes, a multiple of 8
        self.callsite = callsite
        self.frameno = frameno
        self.subprog = subprog
        #: ``in_callback_fn``: a bpf_loop callback, which returns to its callsite
        self.in_callback = in_callback

    def copy(self) -> Frame:
        f = Frame.__new__(Frame)
        f.regs = [r.copy() for r in self.regs]
        f.stack = {k: v.copy() for k, v in self.stack.items()}
        f.allocated, f.callsite, f.frameno, f.subprog, f.in_callback = (
            self.allocated,
            self.callsite,
            self.frameno,
            self.subprog,
            self.in_callback,
        )
        return f

    def slot(self, spi: int) -> Slot:
        s = self.stack.get(spi)
        if s is None:
            s = self.stack[spi] = Slot()
        return s

    def grow(self, size: int) -> None:
        size = (size + BPF_REG_SIZE - 1) // BPF_REG_SIZE * BPF_REG_SIZE
        if size > self.allocated:
            self.allocated = size


class Ref:
    __slots__ = ("id", "insn")

    def __init__(self, id_: int, insn: int) -> None:
        self.id, self.insn = id_, insn


class State:
    """A verifier state: call frames, acquired references; ``parent`` and ``branches`` belong to
    the DFS bookkeeping (checkpoints)."""

    __slots__ = ("frames", "refs", "speculative", "parent", "branches", "insn_idx", "last_insn", "may_goto")

    def __init__(self) -> None:
        self.frames: list[Frame] = []
        self.refs: list[Ref] = []
        self.speculative = False
        self.parent: State | None = None
        self.branches = 0
        self.insn_idx = 0
        self.last_insn = -1
        self.may_goto = 0

    @property
    def cur(self) -> Frame:
        return self.frames[-1]

    @property
    def regs(self) -> list[Reg]:
        return self.frames[-1].regs

    def copy(self) -> State:
        s = State.__new__(State)
        s.frames = [f.copy() for f in self.frames]
        s.refs = [Ref(r.id, r.insn) for r in self.refs]
        s.speculative, s.parent, s.branches = self.speculative, self.parent, 0
        s.insn_idx, s.last_insn, s.may_goto = self.insn_idx, self.last_insn, self.may_goto
        return s

    def all_regs(self) -> list[Reg]:
        """Every register and spilled register of every frame (``bpf_for_each_reg_in_vstate``)."""
        out = []
        for f in self.frames:
            out.extend(f.regs)
            for slot in f.stack.values():
                if slot.spilled is not None and slot.is_spill():
                    out.append(slot.spilled)
        return out

    def format(self, frameno: int | None = None) -> str:
        f = self.frames[-1] if frameno is None else self.frames[frameno]
        parts = []
        if f.frameno:
            parts.append(f"frame{f.frameno}:")
        for i, r in enumerate(f.regs):
            if r.type != T.NOT_INIT:
                parts.append(f"R{i}={format_reg(r, f.frameno)}")
        for spi in sorted(f.stack):
            slot = f.stack[spi]
            if all(t == STACK_INVALID for t in slot.types):
                continue
            chars = "".join(SLOT_CHARS[t] for t in slot.types)
            if slot.is_spill() and slot.spilled is not None:
                j = next(i for i, t in enumerate(slot.types) if t == STACK_SPILL)
                parts.append(f"fp{-(spi + 1) * 8}={chars[:j]}{format_reg(slot.spilled, f.frameno)}")
            else:
                parts.append(f"fp{-(spi + 1) * 8}={chars}")
        if self.refs:
            parts.append("refs=" + ",".join(str(r.id) for r in self.refs))
        return " ".join(parts)


# --- comparison ------------------------------------------------------------------------------


class IdMap:
    """``check_ids``: a consistent one-to-one mapping of old ids to current ids."""

    __slots__ = ("fwd", "back", "tmp")

    def __init__(self) -> None:
        self.fwd: dict[int, int] = {}
        self.back: dict[int, int] = {}
        self.tmp = 1 << 40

    def check(self, old: int, cur: int) -> bool:
        if not old and not cur:
            return True
        if not old or not cur:
            return False
        a, b = self.fwd.get(old), self.back.get(cur)
        if a is None and b is None:
            self.fwd[old], self.back[cur] = cur, old
            return True
        return a == cur and b == old

    def check_scalar(self, old: int, cur: int) -> bool:
        """``check_scalar_ids``: an old scalar without an id is unconstrained."""
        if not old:
            return True
        if not cur:
            self.tmp += 1
            cur = self.tmp
        return self.check(old, cur)


def _range_within(old: Scalar, cur: Scalar) -> bool:
    return cur.within(old)


def regs_exact(old: Reg, cur: Reg, ids: IdMap) -> bool:
    return (
        old.exact_key() == cur.exact_key()
        and ids.check(old.id, cur.id)
        and ids.check(old.ref_obj_id, cur.ref_obj_id)
    )


def regsafe(old: Reg, cur: Reg, ids: IdMap, exact: bool, precise: bool = True) -> bool:
    """``regsafe``: is ``cur`` (at least as constrained as) ``old``? An imprecise scalar (one
    whose value cannot reach a check, ``precise=False``) matches any scalar."""
    if exact:
        return regs_exact(old, cur, ids)
    if old.type == T.NOT_INIT:
        return True
    if old.type != cur.type or old.maybe_null != cur.maybe_null or old.ringbuf != cur.ringbuf:
        return False
    t = old.type
    if t == T.SCALAR:
        if not precise:
            return True
        return _range_within(old.s, cur.s) and ids.check_scalar(
            old.id | old.add_const << 48, cur.id | cur.add_const << 48
        )
    if t in (T.MAP_VALUE, T.MAP_KEY, T.MEM):
        return (
            old.off == cur.off
            and old.map is cur.map
            and old.mem_size == cur.mem_size
            and _range_within(old.s, cur.s)
            and ids.check(old.id, cur.id)
            and ids.check(old.ref_obj_id, cur.ref_obj_id)
        )
    if t in PKT_TYPES:
        return (
            old.range <= cur.range
            and old.off == cur.off
            and ids.check(old.id, cur.id)
            and _range_within(old.s, cur.s)
        )
    if t == T.STACK:
        return regs_exact(old, cur, ids) and old.frameno == cur.frameno
    return regs_exact(old, cur, ids)


def stacksafe(
    old: Frame, cur: Frame, ids: IdMap, exact: bool, uninit_ok: bool = True, precise: bool = True
) -> bool:
    """``stacksafe``: every byte ``old`` knows something about, ``cur`` knows at least as much.
    ``precise=False``: no spilled scalar's value can matter (any scalar matches)."""
    spis = set(old.stack) | (set(cur.stack) if exact else set())
    for spi in spis:
        o = old.stack.get(spi)
        c = cur.stack.get(spi)
        otypes = o.types if o is not None else [STACK_INVALID] * 8
        ctypes = c.types if c is not None else [STACK_INVALID] * 8
        if exact:
            if otypes != ctypes:
                return False
            if o is not None and o.is_spill():
                assert c is not None and c.spilled is not None and o.spilled is not None
                if not regs_exact(o.spilled, c.spilled, ids):
                    return False
            continue
        for i in range(BPF_REG_SIZE):
            ot, ct = otypes[i], ctypes[i]
            if ot == STACK_INVALID or (ot == STACK_MISC and uninit_ok):
                continue
            if ot == STACK_MISC and ct == STACK_ZERO:
                continue
            if (
                ot == STACK_MISC
                and ct == STACK_SPILL
                and c is not None
                and c.spilled is not None
                and c.spilled.type == T.SCALAR
            ):
                continue
            if ot != ct:
                return False
        if o is not None and o.is_spill():
            if c is None or not c.is_spill():
                return False
            assert o.spilled is not None and c.spilled is not None
            if not regsafe(o.spilled, c.spilled, ids, False, precise):
                return False
    return True


def states_equal(
    old: State,
    cur: State,
    live: list[int],
    exact: bool,
    uninit_ok: bool = True,
    precise: list[int] | None = None,
    stack_precise: bool = True,
) -> bool:
    """``states_equal``: ``live[frame]`` is the bit set of live registers of each frame at its
    current pc (static liveness, as Linux 6.18's ``compute_live_registers``)."""
    if len(old.frames) != len(cur.frames):
        return False
    if old.speculative and not cur.speculative:
        return False
    ids = IdMap()
    if len(old.refs) != len(cur.refs):
        return False
    for a, b in zip(old.refs, cur.refs, strict=True):
        if not ids.check(a.id, b.id):
            return False
    for fi, (fo, fc) in enumerate(zip(old.frames, cur.frames, strict=True)):
        if fo.callsite != fc.callsite or fo.in_callback != fc.in_callback:
            return False
        mask = live[fi]
        pmask = precise[fi] if precise is not None else 0x7FF
        for i in range(11):
            if mask >> i & 1 and not regsafe(fo.regs[i], fc.regs[i], ids, exact, bool(pmask >> i & 1)):
                return False
        if not stacksafe(fo, fc, ids, exact, uninit_ok, stack_precise or precise is None):
            return False
    return True


def scalar_members_hint(s: Scalar) -> str:  # pragma: no cover - debugging aid
    return f"{tn.members(s.var_off)[:8]}"
