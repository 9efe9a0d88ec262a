"""Program generators for differential fuzzing, derived from the ISA table and the helper table.

One generator, three sources of choices:

* :class:`ByteSource` reads its choices from a byte string (libFuzzer / atheris style). A
  campaign's inputs are such byte strings: a fresh one is ``random.Random(seed).randbytes(n)``,
  a mutated one is a byte-level mutation of a corpus entry (:func:`mutate`), and because the
  generator is structure-aware a small change of the bytes is a small change of the program.
* :class:`RandomSource` draws from a :class:`random.Random` directly.
* :class:`HypothesisSource` draws from hypothesis (``st.composite``), so the tests get shrinking
  for free: :func:`fuzz_cases`, :func:`programs` and :func:`insns` are the strategies.

Everything the generator knows about instructions comes from :data:`reference_vm.isa.TABLE`:
which rows exist (filtered by group and cpu), their kind (what construct to build around
them: memory access, jump, call, ...) and their operand shape (which fields to fill and how:
``Use.WRITE`` gets a writable register, ``Use.MEMOFF`` an offset near a memory edge,
``Use.SELECT`` the row's selector, ``Use.ZERO`` zero, ...). Helper calls come from
:data:`reference_vm.helpers.DEFAULT_HELPERS`, their argument set-up from each helper's
verifier argument types.

Value pools aim at the bug classes of ``anchors-and-bug-classes.md`` §2: shift counts around
the width (0, 31, 32, 63, 64, negative), divisors 0 / 1 / -1 and INT_MIN, immediates 0x7fffffff
/ 0x80000000 / -1, powers of two ± 1, 64-bit values with dirty upper halves (loaded before
ALU32 operations), byte stores from every register, offsets at the edge of the stack and of
the input, jumps over runs of instructions sized around the x86 rel8 limit (and, with
``long_jumps``, around the 16-bit BPF offset limit).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, TypeVar

from reference_vm import isa
from reference_vm.helpers import DEFAULT_HELPERS, BPF_FUNC_loop, HelperTable
from reference_vm.insn import Insn, encode_program
from reference_vm.isa import AluOp, Group, Kind, OpDef, Use
from reference_vm.memory import MEM_BASE

T = TypeVar("T")
M64 = (1 << 64) - 1

# --- Value pools (anchors-and-bug-classes.md §2) --------------------------------------------------

_POW2 = [1 << k for k in (1, 2, 3, 4, 7, 8, 15, 16, 30)]
#: 32-bit immediates (signed, as the imm field holds them).
IMM32 = sorted(
    {
        0,
        1,
        -1,
        2,
        -2,
        3,
        7,
        8,
        16,
        31,
        32,
        33,
        63,
        64,
        65,
        127,
        128,
        255,
        256,
        0x7FFF,
        0x8000,
        0xFFFF,
        0x10000,
        0x7FFFFFFF,
        -0x80000000,
        -0x7FFFFFFF,
        -0x8000,
        -0x8001,
        0x55555555,
        -0x55555556,
        0x0F0F0F0F,
        -16,
        -512,
        4096,
        *_POW2,
        *(p - 1 for p in _POW2),
        *(p + 1 for p in _POW2),
        *(-p for p in _POW2),
    }
)
assert all(-(1 << 31) <= v < 1 << 31 for v in IMM32)
#: Shift counts: the widths' edges and beyond, negative counts (masked by BPF, not by every JIT).
SHIFTS = [
    0,
    1,
    7,
    8,
    15,
    16,
    31,
    32,
    33,
    47,
    63,
    64,
    65,
    127,
    128,
    -1,
    -31,
    -32,
    -63,
    -64,
    0x7FFFFFFF,
    -0x80000000,
]
#: Divisors (and dividends for the imm forms): 0, ±1, INT_MIN, the 32-bit edges, 2^n ± 1.
DIVISORS = [0, 1, -1, 2, -2, 3, 7, 0x7FFFFFFF, -0x80000000, 0x80000001 - (1 << 32), 0xFFFF, 0x10000, 16, -16]
#: 64-bit register values: sign edges, halves, dirty upper halves over small/neg low halves.
VALUES64 = sorted(
    {
        0,
        1,
        2,
        M64,
        M64 - 1,
        1 << 63,
        (1 << 63) - 1,
        (1 << 63) + 1,
        0x7FFFFFFF,
        0x80000000,
        0x80000001,
        0xFFFFFFFF,
        1 << 32,
        (1 << 32) + 1,
        0xFFFFFFFF_00000000,
        0xFFFFFFFF_80000000,
        0xFFFFFFFF_7FFFFFFF,
        0xDEADBEEF_00000005,
        0xDEADBEEF_FFFFFFFB,
        0x12345678_80000000,
        0x00000001_FFFFFFFF,
        0x80000000_00000001,
        0x55555555_55555555,
        0xAAAAAAAA_AAAAAAAA,
        0x0102030405060708,
        0xFF,
        0xFFFF,
        0x8000,
        0x80,
        0x7F,
        31,
        32,
        63,
        64,
        *((1 << k) - 1 for k in (8, 16, 48)),
        *((1 << k) + 1 for k in (8, 16, 48)),
    }
)
#: Immediates of the 32-bit logic operations as bit patterns (arm64 logical-immediate encodings).
BITMASKS = [
    0xFF,
    0xFF00,
    0xFFFF,
    0x0F0F0F0F,
    0x33333333,
    0x55555555,
    -0x55555556,
    0x7FFFFFFF,
    -0x80000000,
    0x00FF00FF,
    0x1,
    -2,
    0x3FFFFFFF,
    -0x100,
]
#: Offsets from a register that is not a known pointer.
SMALL_OFFSETS = [0, 1, -1, 2, 4, 8, -8, 7, 16, 0x7FFF, -0x8000]
#: Instruction counts for jumps over a run of fillers: around the x86 rel8 reach (in insns) and
#: BPF's 16-bit offset (only with ``long_jumps``).
PAD_RUNS = [15, 16, 17, 30, 31, 32, 33, 42, 63, 64, 126, 127, 128, 129]
LONG_PAD_RUNS = [32766, 32767]

_SHIFT_OPS = {AluOp.BPF_LSH, AluOp.BPF_RSH, AluOp.BPF_ARSH}
_DIV_OPS = {AluOp.BPF_DIV, AluOp.BPF_MOD}
_LOGIC_OPS = {AluOp.BPF_AND, AluOp.BPF_OR, AluOp.BPF_XOR}


# --- Sources of choices ---------------------------------------------------------------------------


class Source(Protocol):
    """Where the generator's choices come from."""

    def int(self, lo: int, hi: int) -> int: ...

    def pick(self, seq: Sequence[T]) -> T: ...

    def chance(self, p: float) -> bool: ...


class ByteSource:
    """Choices read from bytes; when the bytes run out every choice is its smallest value
    (``chance`` is then False), so any byte string, even empty, gives a valid program."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = bytes(data)
        self.pos = 0

    @property
    def exhausted(self) -> bool:
        return self.pos >= len(self.data)

    def _take(self, n: int) -> int:
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return int.from_bytes(chunk, "little")

    def int(self, lo: int, hi: int) -> int:
        span = hi - lo + 1
        if span <= 1:
            return lo
        return lo + self._take((span.bit_length() + 7) // 8) % span

    def pick(self, seq: Sequence[T]) -> T:
        return seq[self.int(0, len(seq) - 1)]

    def chance(self, p: float) -> bool:
        return self._take(1) >= 256 - round(p * 256) if p < 1 else True


class RandomSource:
    """Choices from a :class:`random.Random`."""

    __slots__ = ("rng",)

    def __init__(self, rng: random.Random | int) -> None:
        self.rng = rng if isinstance(rng, random.Random) else random.Random(rng)

    def int(self, lo: int, hi: int) -> int:
        return self.rng.randint(lo, hi)

    def pick(self, seq: Sequence[T]) -> T:
        return seq[self.rng.randrange(len(seq))]

    def chance(self, p: float) -> bool:
        return self.rng.random() < p


class HypothesisSource:
    """Choices drawn from hypothesis inside ``st.composite`` (shrinks towards small values)."""

    __slots__ = ("draw", "st")

    def __init__(self, draw: Callable[[Any], Any]) -> None:
        from hypothesis import strategies

        self.draw = draw
        self.st = strategies

    def int(self, lo: int, hi: int) -> int:
        return int(self.draw(self.st.integers(lo, hi)))

    def pick(self, seq: Sequence[T]) -> T:
        return seq[self.int(0, len(seq) - 1)]

    def chance(self, p: float) -> bool:
        return self.int(0, 255) >= 256 - round(p * 256) if p < 1 else True


# --- Configuration and the generated case ---------------------------------------------------------

#: Relative weight of each instruction family in a program body.
KIND_WEIGHTS: dict[Kind, int] = {
    Kind.ALU: 30,
    Kind.NEG: 2,
    Kind.MOVSX: 3,
    Kind.END: 4,
    Kind.LOAD: 6,
    Kind.LOADSX: 3,
    Kind.LOAD_ACQ: 1,
    Kind.STORE_IMM: 4,
    Kind.STORE_REG: 7,
    Kind.STORE_REL: 1,
    Kind.ATOMIC: 5,
    Kind.LDDW: 3,
    Kind.JCOND: 12,
    Kind.JA: 2,
    Kind.MAY_GOTO: 1,
    Kind.CALL: 2,
    Kind.CALLX: 1,
    Kind.CALL_LOCAL: 2,
    Kind.EXIT: 1,
    Kind.LD_ABS: 1,
    Kind.LD_IND: 1,
}


@dataclass(frozen=True)
class GenConfig:
    """What to generate. The defaults are a campaign's: every group, cpu v4, ~40 instructions."""

    max_insns: int = 40
    groups: frozenset[Group] = isa.ALL_GROUPS
    cpu: int = 4
    inputs: int = 16  # memory inputs per program ("same program, many inputs")
    max_mem_words: int = 8  # input memory: up to this many 8-byte words (and odd tails)
    helpers: bool = True
    calls: bool = True  # bpf-to-bpf calls into subprograms
    loops: bool = True  # backward jumps (bounded by the budget and by counters)
    pads: bool = True  # jumps over runs of fillers (branch relaxation)
    long_jumps: bool = False  # runs of ~32767 fillers: slow, off by default
    verifier_aware: bool = False  # mostly programs bpfcheck's verifier accepts (see _AwareBuilder)
    budget: int = 4096
    kinds: tuple[Kind, ...] | None = None  # restrict the body to these families
    helper_table: HelperTable = DEFAULT_HELPERS
    weights: dict[Kind, int] = field(default_factory=lambda: dict(KIND_WEIGHTS))

    def rows(self) -> dict[Kind, list[OpDef]]:
        return _rows(self.groups, self.cpu, self.kinds)


_ROW_CACHE: dict[tuple[object, ...], dict[Kind, list[OpDef]]] = {}


def _rows(groups: frozenset[Group], cpu: int, kinds: tuple[Kind, ...] | None) -> dict[Kind, list[OpDef]]:
    key = (groups, cpu, kinds)
    hit = _ROW_CACHE.get(key)
    if hit is not None:
        return hit
    out: dict[Kind, list[OpDef]] = {}
    for row in isa.TABLE:
        packet = row.kind in (Kind.LD_ABS, Kind.LD_IND)
        if not (row.executable or packet) or row.group not in groups or row.cpu > cpu:
            continue
        if kinds is not None and row.kind not in kinds:
            continue
        out.setdefault(row.kind, []).append(row)
    _ROW_CACHE[key] = out
    return out


@dataclass(frozen=True)
class FuzzCase:
    """A program (pc-indexed, as ``decode_program`` returns it), its inputs and its budget.

    Every input is run with r1 = a copy of it and r2 = its length (bpf_conformance's layout);
    ``None`` means no input memory (r1 = r2 = 0)."""

    program: tuple[Insn | None, ...]
    mems: tuple[bytes | None, ...]
    budget: int = 4096

    @property
    def code(self) -> bytes:
        return encode_program([i for i in self.program if i is not None])


# --- The builder ---------------------------------------------------------------------------------


@dataclass
class _Item:
    row: OpDef
    dst: int = 0
    src: int = 0
    off: int = 0
    imm: int = 0
    target: int | None = None  # index of the item a jump / local call goes to
    label: str | None = None  # symbolic target ("sub0", "end") resolved after layout


class _Builder:
    def __init__(self, src: Source, cfg: GenConfig) -> None:
        self.s = src
        self.cfg = cfg
        self.rows = cfg.rows()
        kinds = [k for k in self.rows if cfg.weights.get(k, 0) > 0]
        if not cfg.helpers:
            kinds = [k for k in kinds if k not in (Kind.CALL, Kind.CALLX)]
        if not cfg.calls:
            kinds = [k for k in kinds if k is not Kind.CALL_LOCAL]
        self.kinds = kinds
        self.cum: list[int] = []
        total = 0
        for k in kinds:
            total += cfg.weights[k]
            self.cum.append(total)
        self.total = total
        self.items: list[_Item] = []
        self.mem_len = 0
        self.has_mem = True
        self.subs = 0
        helpers = [h for h in cfg.helper_table.by_id.values() if h.id != BPF_FUNC_loop]
        self.helpers = sorted(helpers, key=lambda h: h.id)

    # -- small draws --
    def reg_write(self) -> int:
        """A register to write: rarely r1, the input pointer (so that memory accesses through
        it mostly stay valid)."""
        return self.s.pick((0, 0, 2, 3, 4, 5, 6, 7, 8, 9) * 3 + (1,))

    def reg_read(self) -> int:
        return self.s.int(0, 10)

    def imm32(self, pool: Sequence[int] = IMM32) -> int:
        if self.s.chance(0.75):
            return self.s.pick(pool)
        return self.s.int(-(1 << 31), (1 << 31) - 1)

    def value64(self) -> int:
        if self.s.chance(0.8):
            return self.s.pick(VALUES64)
        return self.s.int(0, M64)

    def kind(self) -> Kind:
        x = self.s.int(0, self.total - 1)
        for k, c in zip(self.kinds, self.cum, strict=True):
            if x < c:
                return k
        return self.kinds[-1]

    def memoff(self, base: int, size: int) -> int:
        s = self.s
        if base == 10:  # the stack: [r10 - 4096, r10) is mapped (8 frames of 512 bytes)
            if s.chance(0.95):
                return -size * s.int(1, 512 // size)
            return s.pick(
                (-size + 1, 0, -1, -512, -512 - size, -4096, -4096 - 1, -4096 + size - 1, -0x8000, 0x7FFF, 8)
            )
        if base == 1 and self.has_mem:
            n = self.mem_len
            if s.chance(0.95) and n >= size:
                return s.int(0, n - size)
            return s.pick((n - size, n - size + 1, n, -1, 0, n - 1, -size, 0x7FFF, -0x8000))
        return s.pick(SMALL_OFFSETS)

    def base(self) -> int:
        if not self.has_mem:
            return self.s.pick((10,) * 20 + (0, 6))
        return self.s.pick((10,) * 20 + (1,) * 16 + (0, 2, 6))

    # -- instructions --
    def emit(self, row: OpDef | str, **f: Any) -> _Item:
        if isinstance(row, str):
            row = isa.BY_NAME[row]
        item = _Item(row, **f)
        self.items.append(item)
        return item

    def fields(self, row: OpDef) -> dict[str, int]:
        """Fill the fields the row's shape uses (jumps and helpers are fixed up by the caller)."""
        f: dict[str, int] = {}
        shape = row.shape
        for name in ("dst", "src"):
            use = getattr(shape, name)
            if use is Use.WRITE:
                f[name] = self.reg_write()
            elif use is Use.READ:
                f[name] = self.reg_read()
            elif use is Use.BASE:
                f[name] = self.base()
            elif use is Use.SELECT:
                f[name] = row.select[1] if row.select else 0
            else:
                f[name] = 0
        for name in ("off", "imm"):
            use = getattr(shape, name)
            if use is Use.SELECT:
                f[name] = row.select[1] if row.select else 0
            elif use is Use.MEMOFF:
                base = f["dst"] if shape.dst is Use.BASE else f["src"]
                f[name] = self.memoff(base, max(row.size, 1))
            elif use is Use.VALUE:
                f[name] = self.value_for(row)
            else:
                f[name] = 0
        return f

    def value_for(self, row: OpDef) -> int:
        if row.kind is Kind.LDDW:
            return self.value64()
        if row.kind in (Kind.LD_ABS, Kind.LD_IND):
            return self.s.pick((0, 1, 2, self.mem_len - 1, self.mem_len, self.mem_len - 4, -1, 0x7FFFFFFF))
        if row.alu in _SHIFT_OPS:
            return self.imm32(SHIFTS)
        if row.alu in _DIV_OPS:
            return self.imm32(DIVISORS)
        if row.alu in _LOGIC_OPS:
            return self.imm32(BITMASKS + IMM32)
        return self.imm32()

    def body(self, n: int, depth: int) -> None:
        """``n`` instructions of random families; jumps go forward mostly, to an item of this
        body or to its end."""
        start = len(self.items)
        pending: list[tuple[_Item, int]] = []
        for _ in range(n):
            kind = self.kind()
            row = self.s.pick(self.rows[kind])
            if kind in (Kind.JA, Kind.JCOND, Kind.MAY_GOTO):
                item = self.emit(row, **self.fields(row))
                at = len(self.items) - 1
                if self.cfg.pads and self.s.chance(0.08):
                    self.pad(item)
                elif self.cfg.loops and self.s.chance(0.15) and at > start:
                    item.target = self.s.int(start, at)  # backwards: a loop
                else:
                    pending.append((item, at))
            elif kind is Kind.CALL:
                self.helper_call(row)
            elif kind is Kind.CALLX:
                self.helper_callx(row)
            elif kind is Kind.CALL_LOCAL:
                if depth < 3 and self.subs < 3:
                    self.emit(row, src=row.select[1] if row.select else 1, label=f"sub{self.subs}")
                    self.subs += 1
                elif self.subs:
                    self.emit(
                        row,
                        src=row.select[1] if row.select else 1,
                        label=f"sub{self.s.int(0, self.subs - 1)}",
                    )
            elif kind is Kind.EXIT:
                if self.s.chance(0.3):
                    self.emit(row)
            else:
                self.emit(row, **self.fields(row))
        end = len(self.items)
        for item, at in pending:
            item.target = self.s.int(at + 1, end)

    def pad(self, jump: _Item) -> None:
        """A run of fillers right after ``jump``, which jumps over it (or to its middle)."""
        runs = PAD_RUNS + (LONG_PAD_RUNS if self.cfg.long_jumps else [])
        n = self.s.pick(runs)
        first = len(self.items)
        for k in range(n):
            self.emit("add64_imm" if k % 2 else "mov32_imm", dst=self.s.pick((0, 3, 4)), imm=k)
        jump.target = len(self.items) if self.s.chance(0.8) else first + n // 2

    def helper_call(self, row: OpDef) -> None:
        s = self.s
        if not self.helpers or s.chance(0.05):
            self.emit(row, imm=s.pick((0, -1, 999, 0x7FFFFFFF, 212)))  # unknown ids: a fault
            return
        h = s.pick(self.helpers)
        self.helper_args(h.args)
        self.emit(row, imm=h.id)
        self.after_call()

    def after_call(self) -> None:
        """Helpers clobber r1-r5: mostly give r1 its input pointer back (a fixed address)."""
        if self.has_mem and self.s.chance(0.8):
            self.emit("lddw", dst=1, imm=MEM_BASE)

    def helper_callx(self, row: OpDef) -> None:
        reg = self.s.int(0, 9)
        h = self.s.pick(self.helpers) if self.helpers else None
        if h is not None:
            self.helper_args(h.args)
        if self.s.chance(0.9):
            self.emit("mov64_imm", dst=reg, imm=h.id if h is not None else 5)
        self.emit(row, dst=reg)
        self.after_call()

    def helper_args(self, args: Sequence[str]) -> None:
        """Set up r1..r5 from the helper's argument types: pointers to the stack or the input,
        sizes after them, anything else from the pools."""
        s = self.s
        for k, arg in enumerate(args[:5], start=1):
            if s.chance(0.1):
                continue  # leave whatever the register holds
            if "PTR" in arg and "MAP_PTR" not in arg:
                if s.chance(0.7) or not self.has_mem:
                    self.emit("mov64_reg", dst=k, src=10)
                    self.emit("add64_imm", dst=k, imm=-8 * s.int(1, 64))
                elif k != 1:
                    self.emit("mov64_reg", dst=k, src=1)
            elif "SIZE" in arg:
                self.emit("mov64_imm", dst=k, imm=s.pick((0, 1, 4, 8, 16, 17, 64, 512, 513, -1)))
            else:
                self.emit("mov64_imm", dst=k, imm=self.imm32())

    def prologue(self) -> None:
        """Registers from the input (so that inputs matter) and from 64-bit immediates."""
        s = self.s
        if self.has_mem and self.mem_len >= 8:
            words = self.mem_len // 8
            for reg in (0, 2, 3, 4, 5, 6, 7, 8, 9):
                if s.chance(0.55):
                    self.emit("ldxdw", dst=reg, src=1, off=8 * s.int(0, words - 1))
        for _ in range(s.int(0, 3)):
            self.emit("lddw", dst=self.reg_write(), imm=self.value64())

    def build(self) -> FuzzCase:
        s, cfg = self.s, self.cfg
        self.has_mem = not s.chance(0.05)
        words = s.int(1 if s.chance(0.9) else 0, cfg.max_mem_words)
        tail = s.pick((0, 0, 0, 1, 3, 7))
        self.mem_len = 8 * words + tail if self.has_mem else 0
        self.prologue()
        n = s.int(1, max(1, cfg.max_insns - len(self.items) - 1))
        self.body(n, 0)
        self.emit("exit")
        k = 0
        while k < self.subs:  # subprograms may call further ones
            self.items.append(
                _Item(isa.BY_NAME["mov64_imm"], dst=0, imm=s.pick((0, 1, -1, 42)), label=f"=sub{k}")
            )
            self.body(s.int(1, max(2, cfg.max_insns // 4)), 1 + k)
            self.emit("exit")
            k += 1
        program = self.layout()
        mems = tuple(self.mem() for _ in range(max(1, cfg.inputs)))
        return FuzzCase(program=tuple(program), mems=mems, budget=cfg.budget)

    def mem(self) -> bytes | None:
        if not self.has_mem:
            return None
        out = bytearray()
        while len(out) < self.mem_len:
            v = self.value64() if self.s.chance(0.85) else self.s.int(0, 255)
            out += v.to_bytes(8, "little")
        return bytes(out[: self.mem_len])

    def layout(self) -> list[Insn | None]:
        """Resolve labels and targets to offsets. The result is what ``decode_program`` would
        return for its encoding (the tests check that it always decodes to itself)."""
        items = self.items
        defs = {it.label[1:]: k for k, it in enumerate(items) if it.label and it.label.startswith("=")}
        for it in items:
            if it.label and not it.label.startswith("="):
                it.target = defs.get(it.label, len(items) - 1)
        slot = []
        pos = 0
        for it in items:
            slot.append(pos)
            pos += it.row.slots
        slot.append(pos)
        program: list[Insn | None] = []
        for k, it in enumerate(items):
            f = {"dst": it.dst, "src": it.src, "off": it.off, "imm": it.imm}
            if it.target is not None:
                target = min(it.target, len(items) - 1)  # past the end: the last exit
                delta = slot[target] - slot[k] - 1
                field_name = "imm" if it.row.shape.imm is Use.JUMP else "off"
                if field_name == "off" and not -0x8000 <= delta < 0x8000:
                    delta = 0
                f[field_name] = delta
            program.append(Insn(it.row, **f))
            if it.row.slots == 2:
                program.append(None)
        return program


# --- Verifier-aware generation ---------------------------------------------------------------

#: Families the verifier-aware mode draws from (no callx, which Linux does not know; no LD_ABS/
#: LD_IND, which need a socket buffer in r6; no lone ``ja`` or mid-body ``exit``, whose next
#: instruction would be unreachable: ``ja`` comes in if/else diamonds instead).
AWARE_WEIGHTS: dict[Kind, int] = {
    Kind.ALU: 30,
    Kind.NEG: 2,
    Kind.MOVSX: 3,
    Kind.END: 4,
    Kind.LOAD: 7,
    Kind.LOADSX: 3,
    Kind.LOAD_ACQ: 1,
    Kind.STORE_IMM: 4,
    Kind.STORE_REG: 7,
    Kind.STORE_REL: 1,
    Kind.ATOMIC: 4,
    Kind.LDDW: 3,
    Kind.JCOND: 10,
    Kind.MAY_GOTO: 1,
    Kind.CALL: 2,
    Kind.CALL_LOCAL: 2,
}
#: Constructs of the verifier-aware mode, per 100 body steps: an access through a pointer with
#: a variable offset that is masked or checked first, a counted loop, an if/else diamond.
AWARE_CONSTRUCTS = {"checked": 8, "loop": 4, "diamond": 5, "halves": 5}
#: Share of memory accesses placed one step outside the stack frame or the input on purpose
#: (the verifier must refuse them; one it accepts faults, or shows up in the witness check).
AWARE_NEAR_MISS = 0.02
#: Scalar registers the aware body writes / reads (r1 = the input, r9 = a copy of it, r8 = the
#: loop counter, r10 = the frame pointer).
_AW_WRITE = (0, 2, 3, 4, 5, 6, 7)
_AW_READ = (0, 2, 3, 4, 5, 6, 7, 8)
#: Stack bytes a frame uses: main + 3 subprograms stay under the 512-byte combined limit.
_AW_STACK_MAIN, _AW_STACK_SUB = 256, 64


class _AwareBuilder(_Builder):
    """Programs bpfcheck's verifier (Linux 6.18's rules, root) mostly accepts, for soundness and
    witness checks: every register initialised before it is read (r1's pointer kept in r9 and
    restored after calls), memory accesses aligned and inside the stack frame or the input (a
    map value of ``len(mem)`` bytes for the verifier), variable offsets masked or bounds-checked
    before use, shift immediates below the width and no division by an immediate zero, loops
    counted down in r8 (nothing jumps into their bodies), bpf-to-bpf calls only to later
    subprograms (no recursion), helpers a socket filter may call, and no unreachable code."""

    def __init__(self, src: Source, cfg: GenConfig) -> None:
        super().__init__(src, cfg)
        self.rows = {k: v for k, v in self.rows.items() if k in AWARE_WEIGHTS}
        if Kind.LDDW in self.rows:
            self.rows[Kind.LDDW] = [isa.BY_NAME["lddw"]]
        self.kinds = [k for k in self.kinds if k in self.rows and AWARE_WEIGHTS.get(k, 0) > 0]
        self.cum, total = [], 0
        for k in self.kinds:
            total += AWARE_WEIGHTS[k]
            self.cum.append(total)
        self.total = total
        from reference_vm.verifier.progtypes import helper_available

        self.helpers = [
            h
            for h in self.helpers
            if helper_available("socket_filter", h.id, True)
            and all(
                a == "ARG_ANYTHING" or "SIZE" in a or a.startswith(("ARG_PTR_TO_MEM", "ARG_PTR_TO_UNINIT"))
                for a in h.args
            )
        ]
        self.frame = -1  # -1: the main program; k: subprogram k
        self.landable: list[bool] = []

    # -- registers, offsets, values --
    def reg_write(self) -> int:
        return self.s.pick(_AW_WRITE)

    def reg_read(self) -> int:
        return self.s.pick(_AW_READ)

    def stack_limit(self) -> int:
        return _AW_STACK_MAIN if self.frame < 0 else _AW_STACK_SUB

    def base(self) -> int:
        return 10 if self.s.chance(0.5) or self.mem_len < 8 else 1

    def memoff(self, base: int, size: int) -> int:
        if self.s.chance(AWARE_NEAR_MISS):  # one step outside: the verifier must refuse it
            if base == 1:
                return self.s.pick((self.mem_len - size + 1, self.mem_len, -size, -1))
            return self.s.pick((0, -(512 + size), -size + 1 if size > 1 else 1))
        if base == 1 and self.mem_len >= size:
            return size * self.s.int(0, (self.mem_len - size) // size)
        return -size * self.s.int(1, self.stack_limit() // size)

    def fields(self, row: OpDef) -> dict[str, int]:
        f = super().fields(row)
        shape = row.shape
        if shape.dst is Use.BASE or shape.src is Use.BASE:
            size = max(row.size, 1)
            base = 1 if self.mem_len >= size and self.s.chance(0.5) else 10
            f["dst" if shape.dst is Use.BASE else "src"] = base
            f["off"] = self.memoff(base, size)
        if row.kind is Kind.ATOMIC:
            f["src"] = self.reg_write()  # fetch forms write it back
        return f

    def value_for(self, row: OpDef) -> int:
        if row.alu in _SHIFT_OPS:
            return self.s.int(0, row.width - 1)
        if row.alu in _DIV_OPS:
            return self.s.pick([d for d in DIVISORS if d != 0])
        return super().value_for(row)

    # -- layout helpers --
    def emit(self, row: OpDef | str, **f: Any) -> _Item:
        item = super().emit(row, **f)
        self.landable.append(True)
        return item

    def emit_inner(self, row: OpDef | str, **f: Any) -> _Item:
        """An instruction no jump may land on (the middle of a construct)."""
        item = self.emit(row, **f)
        self.landable[-1] = False
        return item

    def land(self, target: int) -> int:
        while target < len(self.landable) and not self.landable[target]:
            target += 1
        return target

    def simple(self, inner: bool = False) -> None:
        """One instruction of a family that neither jumps nor calls."""
        while True:
            kind = self.kind()
            if kind not in (Kind.JCOND, Kind.MAY_GOTO, Kind.CALL, Kind.CALL_LOCAL):
                break
        row = self.s.pick(self.rows[kind])
        (self.emit_inner if inner else self.emit)(row, **self.fields(row))

    def restore(self) -> None:
        """After a call: r1 = the input again (from r9), r2-r5 initialised."""
        self.emit("mov64_reg", dst=1, src=9)
        for k in (2, 3, 4, 5):
            self.emit("mov64_imm", dst=k, imm=self.imm32())

    # -- constructs --
    def checked_access(self) -> None:
        """``rT = r9 + (rX & mask)`` or ``if rX > limit goto skip; rT = r9 + rX``, then an access
        through rT: the verifier must track rX's bounds through the mask or the branch."""
        s = self.s
        row = s.pick([r for k in (Kind.LOAD, Kind.STORE_REG, Kind.STORE_IMM) for r in self.rows.get(k, [])])
        size = row.size
        if self.mem_len < size:
            return
        x = self.reg_write()
        t = s.pick([r for r in _AW_WRITE if r != x])
        room = self.mem_len - size  # largest offset that keeps the access inside
        if s.chance(0.5):
            mask = (1 << (room.bit_length() - 1)) - 1 if room else 0
            self.emit(s.pick(("and64_imm", "and32_imm")), dst=x, imm=mask)
            skip = None
            limit = mask
        else:
            limit = s.int(0, room)
            if s.chance(0.5):
                self.emit("mov32_reg", dst=x, src=x)  # zero-extended: a JMP32 check bounds it
                skip = self.emit_inner(s.pick(("jgt32_imm", "jge32_imm")), dst=x, imm=limit)
            else:
                skip = self.emit(s.pick(("jgt64_imm", "jge64_imm")), dst=x, imm=limit)
            if skip.row.name.startswith("jge"):
                skip.imm = limit + 1
        off = size * s.int(0, (room - limit) // size) if room - limit >= size else 0
        off = min(off, room - limit)
        if s.chance(AWARE_NEAR_MISS):
            off = room - limit + 1  # one byte too far when rX is at its limit
        self.emit_inner("mov64_reg", dst=t, src=9)
        self.emit_inner("add64_reg", dst=t, src=x)
        f = self.fields(row)
        if row.kind is Kind.LOAD:
            self.emit_inner(row, dst=t, src=t, off=off)
        else:
            self.emit_inner(row, dst=t, src=f.get("src", 0), imm=f.get("imm", 0), off=off)
            self.emit_inner("mov64_imm", dst=t, imm=0)
        if skip is not None:
            skip.target = len(self.items)  # past the access: landable (whatever comes next)

    def halves(self) -> None:
        """A register with one half known and the other not (``x <<= 32; x |= c``, ``x &=
        0xffffffff80000000``, ``x >>= 32``), then a logic or arithmetic op with a constant: the
        32- and 64-bit bounds must be kept apart (CVE-2021-3490, CVE-2021-31440 classes)."""
        s = self.s
        x = self.reg_write()
        first = s.pick((("lsh64_imm", 32), ("and64_imm", -0x80000000), ("rsh64_imm", 32), ("lsh64_imm", 31)))
        self.emit(first[0], dst=x, imm=first[1])
        self.emit(s.pick(("or64_imm", "xor64_imm", "add64_imm")), dst=x, imm=self.imm32(BITMASKS + IMM32))
        for _ in range(s.int(1, 2)):
            op = s.pick(
                ("and64_imm", "or64_imm", "xor64_imm", "and32_imm", "or32_imm", "add32_imm", "mul64_imm")
            )
            self.emit(op, dst=x, imm=self.imm32(BITMASKS + IMM32))

    def counted_loop(self) -> None:
        """``r8 = N; do { 1-5 simple insns } while (--r8 != 0)``: nothing jumps into the body."""
        s = self.s
        self.emit("mov64_imm", dst=8, imm=s.int(1, 6))
        start = len(self.items)
        for k in range(s.int(1, 5)):
            self.simple(inner=k > 0)
        self.emit_inner("add64_imm", dst=8, imm=-1)
        back = self.emit_inner(s.pick(("jne64_imm", "jgt64_imm", "jne32_imm")), dst=8, imm=0)
        back.target = start
        self.landable[start] = False

    def diamond(self) -> None:
        """``if (cond) { a } else { b }`` with a ``ja`` over the else part."""
        row = self.s.pick(self.rows[Kind.JCOND])
        cond = self.emit(row, **self.fields(row))
        for _ in range(self.s.int(1, 3)):
            self.simple()
        ja = self.emit(self.s.pick(self.rows.get(Kind.JA, [isa.BY_NAME["ja"]])))
        cond.target = len(self.items)
        for _ in range(self.s.int(1, 3)):
            self.simple()
        ja.target = len(self.items)

    def body(self, n: int, depth: int) -> None:
        s = self.s
        pending: list[tuple[_Item, int]] = []
        for _ in range(n):
            x = s.int(0, 99)
            if x < AWARE_CONSTRUCTS["checked"]:
                self.checked_access()
                continue
            x -= AWARE_CONSTRUCTS["checked"]
            if x < AWARE_CONSTRUCTS["loop"] and self.cfg.loops:
                self.counted_loop()
                continue
            x -= AWARE_CONSTRUCTS["loop"]
            if x < AWARE_CONSTRUCTS["diamond"] and Kind.JCOND in self.rows:
                self.diamond()
                continue
            x -= AWARE_CONSTRUCTS["diamond"]
            if x < AWARE_CONSTRUCTS["halves"]:
                self.halves()
                continue
            kind = self.kind()
            row = s.pick(self.rows[kind])
            if kind in (Kind.JCOND, Kind.MAY_GOTO):
                item = self.emit(row, **self.fields(row))
                if self.cfg.pads and kind is Kind.JCOND and s.chance(0.08):
                    self.pad(item)
                else:
                    pending.append((item, len(self.items) - 1))
            elif kind is Kind.CALL:
                self.helper_call(row)
            elif kind is Kind.CALL_LOCAL:
                self.local_call(row)
            else:
                self.emit(row, **self.fields(row))
        end = len(self.items)
        for item, at in pending:
            item.target = self.land(s.int(at + 1, end))

    def local_call(self, row: OpDef) -> None:
        src = row.select[1] if row.select else 1
        if self.subs < 3:
            self.emit(row, src=src, label=f"sub{self.subs}")
            self.subs += 1
        elif self.frame + 1 < self.subs:  # only later subprograms: no recursion
            self.emit(row, src=src, label=f"sub{self.s.int(self.frame + 1, self.subs - 1)}")
        else:
            return
        self.restore()

    def helper_call(self, row: OpDef) -> None:
        if not self.helpers:
            return
        h = self.s.pick(self.helpers)
        first = len(self.items)
        self.helper_args(h.args)
        self.emit(row, imm=h.id)
        for k in range(first + 1, len(self.items)):  # nothing jumps past the arguments' set-up
            self.landable[k] = False
        self.restore()

    def helper_args(self, args: Sequence[str]) -> None:
        s = self.s
        room = 0
        for k, arg in enumerate(args[:5], start=1):
            if "PTR" in arg:
                room = 8 * s.int(1, self.stack_limit() // 8)
                self.emit("mov64_reg", dst=k, src=10)
                self.emit("add64_imm", dst=k, imm=-room)
            elif "SIZE" in arg:
                self.emit("mov64_imm", dst=k, imm=s.int(0 if "ZERO" in arg else 1, max(1, min(room, 64))))
            else:
                self.emit("mov64_imm", dst=k, imm=self.imm32())

    def pad(self, jump: _Item) -> None:
        super().pad(jump)
        jump.target = self.land(jump.target or 0)

    def prologue(self) -> None:
        s = self.s
        self.emit("mov64_reg", dst=9, src=1)
        words = self.mem_len // 8
        for reg in (0, 2, 3, 4, 5, 6, 7, 8):
            if words and s.chance(0.6):
                self.emit("ldxdw", dst=reg, src=1, off=8 * s.int(0, words - 1))
            elif s.chance(0.5):
                self.emit("lddw", dst=reg, imm=self.value64())
            else:
                self.emit("mov64_imm", dst=reg, imm=self.imm32())

    def build(self) -> FuzzCase:
        s, cfg = self.s, self.cfg
        self.has_mem = True
        self.mem_len = 8 * s.int(1, cfg.max_mem_words) + s.pick((0, 0, 0, 1, 3, 7))
        self.prologue()
        self.body(s.int(1, max(1, cfg.max_insns - len(self.items) - 1)), 0)
        self.emit("exit")
        k = 0
        while k < self.subs:
            self.frame = k
            self.items.append(
                _Item(isa.BY_NAME["mov64_imm"], dst=0, imm=s.pick((0, 1, -1, 42)), label=f"=sub{k}")
            )
            self.landable.append(True)
            self.emit("mov64_reg", dst=9, src=1)
            for reg in (6, 7, 8):
                self.emit("mov64_imm", dst=reg, imm=self.imm32())
            self.body(s.int(1, max(2, cfg.max_insns // 4)), 1 + k)
            self.emit("exit")
            k += 1
        program = self.layout()
        mems = tuple(self.mem() for _ in range(max(1, cfg.inputs)))
        return FuzzCase(program=tuple(program), mems=mems, budget=cfg.budget)


def generate(src: Source, cfg: GenConfig | None = None) -> FuzzCase:
    """A valid program and its inputs, every choice taken from ``src``."""
    cfg = cfg or GenConfig()
    return (_AwareBuilder if cfg.verifier_aware else _Builder)(src, cfg).build()


#: Bytes a fresh campaign input has (more than any program consumes at the default size).
INPUT_SIZE = 2048


def case_from_bytes(data: bytes, cfg: GenConfig | None = None) -> FuzzCase:
    """The deterministic byte-level generator: the same bytes give the same case."""
    return generate(ByteSource(data), cfg)


def fresh_input(seed: int, size: int = INPUT_SIZE) -> bytes:
    return random.Random(seed).randbytes(size)


def case_from_seed(seed: int, cfg: GenConfig | None = None) -> FuzzCase:
    return case_from_bytes(fresh_input(seed), cfg)


# --- Byte-level mutation (for a corpus of inputs) ------------------------------------------------

_INTERESTING_BYTES = (0, 1, 0x7F, 0x80, 0xFF, 0x20, 0x3F, 0x40)


def mutate(data: bytes, rng: random.Random, other: bytes | None = None) -> bytes:
    """A libFuzzer-style mutation: 1-4 of bit flip, interesting byte, random byte, chunk
    insert / delete / duplicate, splice with ``other``."""
    out = bytearray(data or b"\0")
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(7)
        i = rng.randrange(len(out))
        if op == 0:
            out[i] ^= 1 << rng.randrange(8)
        elif op == 1:
            out[i] = rng.choice(_INTERESTING_BYTES)
        elif op == 2:
            out[i] = rng.randrange(256)
        elif op == 3 and len(out) > 8:
            n = rng.randint(1, min(16, len(out) - i))
            del out[i : i + n]
        elif op == 4:
            out[i:i] = rng.randbytes(rng.randint(1, 16))
        elif op == 5:
            j = rng.randrange(len(out))
            n = rng.randint(1, 16)
            out[i:i] = out[j : j + n]
        elif other:
            j = rng.randrange(len(other))
            out[i:] = other[j : j + len(out) - i]
    if not out:
        out.append(0)
    return bytes(out[: 4 * INPUT_SIZE])


# --- Hypothesis strategies ----------------------------------------------------------------------


def fuzz_cases(cfg: GenConfig | None = None, **overrides: Any) -> Any:
    """Strategy of :class:`FuzzCase` (``overrides`` are :class:`GenConfig` fields)."""
    from hypothesis import strategies as st

    config = replace(cfg or GenConfig(), **overrides)

    @st.composite
    def strategy(draw: Callable[[Any], Any]) -> FuzzCase:
        return generate(HypothesisSource(draw), config)

    return strategy()


def programs(cfg: GenConfig | None = None, **overrides: Any) -> Any:
    """Strategy of valid programs (pc-indexed instruction lists)."""
    return fuzz_cases(cfg, inputs=1, **overrides).map(lambda c: list(c.program))


def insns(rows: Sequence[OpDef] | None = None, *, jump_range: int = 3) -> Any:
    """Strategy of single instructions of ``rows`` (default: every executable row), fields filled
    from the row's shape and the pools; jumps get offsets in ``[-jump_range, jump_range]``
    (so a list of them may need ``decode_program`` to accept it)."""
    from hypothesis import strategies as st

    chosen = list(rows) if rows is not None else [r for r in isa.TABLE if r.executable]

    @st.composite
    def strategy(draw: Callable[[Any], Any]) -> Insn:
        src = HypothesisSource(draw)
        b = _Builder(src, GenConfig())
        b.mem_len = src.int(0, 24)
        row = src.pick(chosen)
        f = b.fields(row)
        if row.shape.off is Use.JUMP:
            f["off"] = src.int(-jump_range, jump_range)
        if row.shape.imm is Use.JUMP:
            f["imm"] = src.int(-jump_range, jump_range)
        if row.shape.imm is Use.HELPER:
            f["imm"] = src.pick([h.id for h in b.helpers] + [999])
        return Insn(row, **f)

    return strategy()
