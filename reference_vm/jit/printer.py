"""What the JITs make of a program, for people: ``bpfcheck jit``'s printer and coverage table.

:func:`side_by_side` prints each BPF instruction next to the native instructions it became
(disassembled with capstone), then the out-of-line code (entry trampoline, stubs, the stop
routine). :func:`coverage` translates one instance of every ISA row and reports whether the
backend lowers it to native code, to a run-time trap (as the interpreter does for rows that
need an environment), or not at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from capstone import CS_ARCH_ARM64, CS_ARCH_X86, CS_MODE_64, CS_MODE_ARM, Cs

from ..asm import format_insn
from ..insn import Insn, decode_program, jump_target
from ..isa import TABLE, Kind, OpDef, Use
from . import compile_program
from .common import END, CannotLower, Compiled

_CAPSTONE = {"x86_64": (CS_ARCH_X86, CS_MODE_64), "arm64": (CS_ARCH_ARM64, CS_MODE_ARM)}
_LEFT = 36


def disassembler(arch: str) -> Cs:
    return Cs(*_CAPSTONE[arch])


def _native(cs: Cs, code: bytes, start: int, end: int) -> list[str]:
    out = []
    for ins in cs.disasm(code[start:end], start):
        out.append(f"{ins.address:06x}: {ins.mnemonic} {ins.op_str}".rstrip())
    return out


def side_by_side(program: Sequence[Insn | None] | bytes, arch: str, *, dialect: str = "ubpf",
                 compiled: Compiled | None = None) -> str:
    """Each BPF instruction (``pc: text``) beside its native code (``offset: instruction``).

    With ``compiled`` (e.g. from ``compile_programs``), its flat program is printed: every
    program in turn, pcs in the run's shared pc space."""
    if isinstance(program, (bytes, bytearray)):
        program = decode_program(bytes(program))
    if compiled is None:
        compiled = compile_program(program, arch)
    flat = compiled.program
    cs, code = disassembler(arch), compiled.code
    labels = {t: f"L{t}" for pc, insn in enumerate(flat) if isinstance(insn, Insn)
              for t in [jump_target(insn, pc)] if t is not None}
    names = {base: name for name, base in compiled.bases.items()}
    count = sum(isinstance(i, Insn) for i in flat)
    lines = [f"; {arch}: {count} BPF instructions -> {len(code)} bytes"]
    # (offset, left column) of every piece of code, in address order
    pieces: list[tuple[int, list[str]]] = [(compiled.entry, ["(entry)"])]
    for pc, insn in enumerate(flat):
        start = compiled.starts[pc]
        if insn is END:
            left = ["(end of program)"]
        elif insn is None:
            left = [f"(lddw {pc - 1}, 2nd slot)"]
        else:
            assert isinstance(insn, Insn)
            left = [f"{pc:4d}: {format_insn(insn, dialect=dialect, pc=pc, labels=labels)}"]
        if pc in labels:
            left.insert(0, f"{labels[pc]}:")
        if pc in names and len(compiled.bases) > 1:
            left.insert(0, f"<{names[pc]}>")
        pieces.append((start, left))
    pieces.append((compiled.cb_return, ["(callback return)"]))
    pieces.append((compiled.stubs, ["(stubs, stop routine)"]))
    pieces.sort(key=lambda piece: piece[0])

    def block(left: list[str], right: list[str]) -> None:
        for k in range(max(len(left), len(right), 1)):
            lt = left[k] if k < len(left) else ""
            rt = right[k] if k < len(right) else ""
            lines.append(f"{lt:<{_LEFT}}{rt}".rstrip())

    for k, (start, left) in enumerate(pieces):
        end = pieces[k + 1][0] if k + 1 < len(pieces) else len(code)
        block(left, _native(cs, code, start, end))
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class CoverageRow:
    """One ISA row on one backend: ``status`` is "native", "trap" or "no"."""

    name: str
    kind: Kind
    executable: bool
    status: str
    detail: str = ""


def sample(row: OpDef) -> Insn:
    """One valid instance of ``row`` (registers r1/r2, offset -8, small immediates)."""
    fields: dict[str, int] = {}
    for name in ("dst", "src", "off", "imm"):
        use = getattr(row.shape, name)
        if use is Use.SELECT:
            assert row.select is not None
            fields[name] = row.select[1]
        elif use in (Use.READ, Use.BASE, Use.WRITE):
            fields[name] = 1 if name == "dst" else 2
        elif use is Use.MEMOFF:
            fields[name] = -8
        elif use is Use.VALUE:
            fields[name] = 1
        elif use is Use.HELPER:
            fields[name] = 5
        else:
            fields[name] = 0
    return Insn(row, **fields)


def coverage(arch: str) -> list[CoverageRow]:
    """Translate ``row; exit`` for every row of the ISA table on ``arch``."""
    out = []
    for row in TABLE:
        insn = sample(row)
        program: list[Insn | None] = [insn, None] if row.kind is Kind.LDDW else [insn]
        program.append(Insn(next(r for r in TABLE if r.kind is Kind.EXIT)))
        try:
            compiled = compile_program(program, arch)
        except CannotLower as e:
            out.append(CoverageRow(row.name, row.kind, row.executable, "no", str(e)))
            continue
        why = compiled.unsupported.get(0)
        out.append(CoverageRow(row.name, row.kind, row.executable, "trap" if why else "native", why or ""))
    return out


def coverage_table(arches: Sequence[str] = ("x86_64", "arm64")) -> str:
    """ISA rows x backends, with a summary line per backend."""
    per_arch = {arch: coverage(arch) for arch in arches}
    names = [r.name for r in TABLE]
    width = max(len(n) for n in names) + 2
    lines = [f"{'row':<{width}}{'exec':<6}" + "".join(f"{a:<10}" for a in arches)]
    for k, name in enumerate(names):
        row = TABLE[k]
        lines.append(f"{name:<{width}}{'yes' if row.executable else 'no':<6}"
                     + "".join(f"{per_arch[a][k].status:<10}" for a in arches))
    for arch, rows in per_arch.items():
        executable = [r for r in rows if r.executable]
        native = sum(r.status == "native" for r in executable)
        other = sorted({r.status for r in rows if not r.executable})
        lines.append(f"{arch}: {native}/{len(executable)} executable rows native; "
                     f"non-executable rows: {', '.join(other)}")
    return "\n".join(lines) + "\n"
