"""Assembler and disassembler for the two BPF assembly dialects, derived from :data:`isa.TABLE`.

Nothing here knows an opcode: every mnemonic, operand list and LLVM pattern is built at import
time from the rows of :mod:`reference_vm.isa` (RFC 9669 §3–§5 and Appendix A).

*uBPF dialect* (bpf_conformance ``src/bpf_assembler.cc``, the ``.data`` corpus): a row's
``mnemonic`` (or one of its ``aliases``) followed by comma-separated operands whose order is
derived from the row's :class:`~reference_vm.isa.Shape`: registers (``%rN``) and memory operands
(``[%rN+off]``, the BASE register with its MEMOFF offset) in field order dst, src; then the
immediate; then an offset used as a value (optional when 0); then the jump target (a label,
``+N`` or ``-N``, counted in 8-byte slots from the next instruction, RFC 9669 §4.3).

*LLVM dialect* (``llvm-objdump`` / ``llvm-mc -triple bpfel -mcpu=v4``): a row's ``llvm``
template, where ``{dst}``/``{src}`` are ``wN`` for READ/WRITE fields of 32-bit rows and ``rN``
otherwise, ``{off}`` is `` + 8`` / `` - 8``, ``{imm}`` a decimal number, ``{target}`` a label or
``+N``/``-N``; a template's `` + {imm}`` is a displacement omitted when zero (``skb[r1]``).

Both dialects may be mixed in one text; ``#`` starts a comment; ``name:`` defines a label
(optionally followed by an instruction on the same line). As in bpf_conformance, a jump to
``exit`` goes to the first ``exit`` instruction unless a label named ``exit`` exists.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import partial
from types import MappingProxyType

from .errors import AsmError, EncodingError
from .insn import Insn, check_fields, decode_program, encode_program, jump_target
from .isa import NUM_REGS, TABLE, Kind, OpDef, Use

__all__ = ["DIALECTS", "assemble", "assemble_bytes", "disassemble", "format_insn", "detect_dialect"]

DIALECTS = ("ubpf", "llvm")
_FIELDS = ("dst", "src", "off", "imm")
_REG_USES = (Use.READ, Use.WRITE)
_U64 = (1 << 64) - 1


class _Fail(Exception):
    """A parse failure inside one line; turned into :class:`AsmError` with the line number.

    ``mismatch`` marks "this operand is not of the kind this row wants" (another row sharing
    the mnemonic or template may still accept the line); ``position``/``wanted`` describe it.
    """

    def __init__(self, message: str, *, mismatch: bool = False, position: int = -1,
                 wanted: str = "", got: str = "", unknown: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.mismatch = mismatch
        self.position = position
        self.wanted = wanted
        self.got = got
        self.unknown = unknown  # nothing in this dialect looks like the statement


@dataclass
class _Parsed:
    """One parsed instruction before label resolution."""

    row: OpDef
    fields: dict[str, int]
    target: str | None = None  # label name for the row's JUMP field, resolved later
    line: int = 0
    pc: int = 0


# --- Numbers (bpf_conformance: hex if the token contains 0x; RFC 9669 §3 field widths) ----------

_NUM_BODY = r"(?:0[xX][0-9A-Fa-f]+|[0-9]+)"
_NUMBER = re.compile(rf"[+-]?{_NUM_BODY}", re.ASCII)
_LABEL = r"[A-Za-z_.][A-Za-z0-9_.]*"
_LABEL_RE = re.compile(_LABEL, re.ASCII)


def _number(token: str) -> int | None:
    """The value of a decimal or ``0x`` hex integer with optional sign, or None."""
    token = token.strip()
    if not _NUMBER.fullmatch(token):
        return None
    sign = -1 if token[0] == "-" else 1
    body = token.lstrip("+-")
    return sign * int(body, 16 if body[:2].lower() == "0x" else 10)


#: Named constants for immediates during one :func:`assemble` call (map indices, helper ids).
_SYMBOLS: ContextVar[Mapping[str, int]] = ContextVar("_SYMBOLS", default=MappingProxyType({}))
_REGISTER_NAME = re.compile(r"%?[rw][0-9]+", re.ASCII)


def _value(token: str, position: int = -1) -> int:
    """A number, or a symbol given to :func:`assemble` (``symbols=``); else a mismatch."""
    value = _number(token)
    if value is not None:
        return value
    name = token.strip()
    symbols = _SYMBOLS.get()
    if name in symbols:
        return symbols[name]
    if _LABEL_RE.fullmatch(name) and symbols:
        raise _Fail(f"unknown symbol {name!r} (known: {', '.join(sorted(symbols))})", mismatch=True,
                    position=position, wanted="a number or symbol", got=token)
    raise _Fail(f"expected a number, got {token!r}", mismatch=True, position=position,
                wanted="a number", got=token)


def _fit(value: int, bits: int, what: str, token: str) -> int:
    """Accept -2^(bits-1) .. 2^bits - 1 (values past the signed range wrap); return it signed."""
    if not -(1 << (bits - 1)) <= value < (1 << bits):
        raise _Fail(f"{what} {token.strip()} does not fit in {bits} bits")
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


def _fit_signed(value: int, bits: int, what: str, token: str) -> int:
    """Accept only the signed range (offsets are signed displacements, RFC 9669 §3, §4.3)."""
    if not -(1 << (bits - 1)) <= value < (1 << (bits - 1)):
        raise _Fail(f"{what} {token.strip()} out of range (signed {bits}-bit)")
    return value


def _imm_value(row: OpDef, value: int, token: str) -> int:
    """An immediate: 32 bits, or 64 bits (stored unsigned) for lddw (RFC 9669 §5.4)."""
    if row.kind is Kind.LDDW:
        return _fit(value, 64, "immediate", token) & _U64
    return _fit(value, 32, "immediate", token)


def _target_field(row: OpDef) -> str | None:
    """The field holding a row's jump target (``off`` for JA/Jcc, ``imm`` for gotol/local calls)."""
    return next((f for f in _FIELDS if getattr(row.shape, f) is Use.JUMP), None)


def _parse_target(fname: str, token: str, position: int = -1) -> tuple[int, str | None]:
    """A jump target: ``+N``/``-N``/``N`` (relative) or a label name (resolved later)."""
    token = token.strip()
    value = _number(token)
    if value is not None:
        return _fit_signed(value, 16 if fname == "off" else 32, "jump offset", token), None
    if _LABEL_RE.fullmatch(token):
        return 0, token
    raise _Fail(f"invalid jump target {token!r} (want a label, +N or -N)", mismatch=True,
                position=position, wanted="a jump target", got=token)


def _register(token: str, position: int = -1) -> int:
    """A ``%rN`` register (uBPF dialect)."""
    token = token.strip()
    m = re.fullmatch(r"%r([0-9]+)", token, re.ASCII)
    if m is None:
        raise _Fail(f"expected a register, got {token!r}", mismatch=True, position=position,
                    wanted="a register", got=token)
    n = int(m.group(1))
    if n >= NUM_REGS:
        raise _Fail(f"invalid register {token!r} (registers are %r0..%r{NUM_REGS - 1})")
    return n


# --- uBPF dialect -----------------------------------------------------------------------------

#: Operand kinds of the uBPF dialect, in the order they are written.
_REG, _MEM, _IMM, _OPT, _TARGET = "register", "memory operand", "immediate", "value", "jump target"


def _ubpf_operands(row: OpDef) -> tuple[tuple[str, str], ...]:
    """(kind, field) per operand, derived from the shape: regs/memory, imm, value off, target."""
    shape = row.shape
    ops: list[tuple[str, str]] = []
    for fname in ("dst", "src"):
        use = getattr(shape, fname)
        if use is Use.BASE:
            ops.append((_MEM, fname))
        elif use in _REG_USES:
            ops.append((_REG, fname))
    if shape.imm in (Use.VALUE, Use.HELPER):
        ops.append((_IMM, "imm"))
    if shape.off is Use.VALUE:
        ops.append((_OPT, "off"))
    target = _target_field(row)
    if target is not None:
        ops.append((_TARGET, target))
    return tuple(ops)


_UBPF_OPS: Mapping[str, tuple[tuple[str, str], ...]] = {r.name: _ubpf_operands(r) for r in TABLE}


def _ubpf_index() -> dict[str, tuple[OpDef, ...]]:
    index: dict[str, list[OpDef]] = {}
    for row in TABLE:
        for name in (row.mnemonic, *row.aliases):
            index.setdefault(" ".join(name.split()), []).append(row)
    return {k: tuple(v) for k, v in index.items()}


#: uBPF mnemonic (or alias, words joined by one space) -> rows, in table order.
_UBPF_INDEX = _ubpf_index()
_MAX_WORDS = max(len(k.split()) for k in _UBPF_INDEX)
_MULTIWORD_PREFIXES = {" ".join(k.split()[:n]) for k in _UBPF_INDEX for n in range(1, len(k.split()))}
_MEM_RE = re.compile(rf"\[\s*(%?[A-Za-z]*[0-9]*)\s*(?:([+-])\s*({_NUM_BODY})\s*)?\]", re.ASCII)


def _memory(token: str, position: int) -> tuple[int, int]:
    """``[%rN]``, ``[%rN+off]`` or ``[%rN-off]`` -> (register, signed 16-bit offset)."""
    token = token.strip()
    m = _MEM_RE.fullmatch(token)
    if m is None:
        raise _Fail(f"expected a memory operand like [%r1+8], got {token!r}", mismatch=True,
                    position=position, wanted="a memory operand", got=token)
    try:
        reg = _register(m.group(1))
    except _Fail as e:
        if e.mismatch:
            raise _Fail(f"expected a memory operand like [%r1+8], got {token!r}", mismatch=True,
                        position=position, wanted="a memory operand", got=token) from None
        raise
    off = 0
    if m.group(2):
        text = m.group(2) + m.group(3)
        off = _fit_signed(int(_number(text) or 0), 16, "offset", text)
    return reg, off


def _split_mnemonic(stmt: str) -> tuple[str, str]:
    """Split a uBPF statement into (mnemonic, operand text), longest known mnemonic first."""
    words = stmt.split()
    for n in range(min(_MAX_WORDS, len(words)), 0, -1):
        name = " ".join(words[:n])
        if name in _UBPF_INDEX:
            m = re.match(r"\s*" + r"\s+".join(re.escape(w) for w in words[:n]), stmt)
            assert m is not None
            return name, stmt[m.end():]
    shown = " ".join(words[:2]) if len(words) > 1 and words[0] in _MULTIWORD_PREFIXES else words[0]
    raise _Fail(f"unknown mnemonic {shown!r}", unknown=True)


def _parse_ubpf_row(row: OpDef, mnemonic: str, operands: list[str]) -> _Parsed:
    spec = _UBPF_OPS[row.name]
    required = sum(1 for kind, _ in spec if kind != _OPT)
    if not required <= len(operands) <= len(spec):
        wanted = str(required) if required == len(spec) else f"{required} or {len(spec)}"
        raise _Fail(f"wrong operand count for {mnemonic!r}: expected {wanted}, got {len(operands)}",
                    mismatch=True, position=-2, wanted=wanted)
    fields = dict.fromkeys(_FIELDS, 0)
    target = None
    for i, ((kind, fname), token) in enumerate(zip(spec, operands, strict=False)):
        if not token:
            raise _Fail(f"operand {i + 1} of {mnemonic!r} is empty")
        if kind == _REG:
            fields[fname] = _register(token, i)
        elif kind == _MEM:
            fields[fname], fields["off"] = _memory(token, i)
        elif kind in (_IMM, _OPT):
            value = _value(token, i)
            fields[fname] = (_imm_value(row, value, token) if kind == _IMM
                             else _fit_signed(value, 16, "offset", token))
        else:
            fields[fname], target = _parse_target(fname, token, i)
    return _Parsed(row, fields, target)


def _parse_ubpf(stmt: str) -> _Parsed:
    mnemonic, rest = _split_mnemonic(stmt)
    operands = [o.strip() for o in rest.split(",")] if rest.strip() else []
    return _first_success([partial(_parse_ubpf_row, row, mnemonic, operands)
                           for row in _UBPF_INDEX[mnemonic]], mnemonic, len(operands))


def _first_success(attempts: Sequence[Callable[[], _Parsed]], what: str | None, count: int) -> _Parsed:
    """Run the candidate parses in table order; if all fail, report the most telling error.

    A real error (bad register number, value out of range, a field rule) wins over "operand
    of the wrong kind"; among those, the candidate that got furthest is reported. ``what``
    names a uBPF mnemonic, for messages that list what each candidate wanted.
    """
    failures: list[_Fail] = []
    for attempt in attempts:
        try:
            return _finish(attempt())
        except _Fail as e:
            failures.append(e)
    real = [f for f in failures if not f.mismatch]
    if real:
        raise real[0]
    if what is not None and all(f.position == -2 for f in failures):
        wanted = " or ".join(sorted({f.wanted for f in failures}))
        raise _Fail(f"wrong operand count for {what!r}: expected {wanted}, got {count}")
    furthest = max(f.position for f in failures)
    same = [f for f in failures if f.position == furthest]
    if what is None or furthest < 0:
        raise same[0]
    wanted = " or ".join(dict.fromkeys(f.wanted for f in same))
    raise _Fail(f"operand {furthest + 1} of {what!r} must be {wanted}, got {same[0].got!r}")


def _finish(parsed: _Parsed) -> _Parsed:
    """Apply the row's selector and validity rules (RFC 9669 §3: unused fields are zero)."""
    row, fields = parsed.row, parsed.fields
    if row.select is not None:
        fields[row.select[0]] = row.select[1]
    try:
        check_fields(row, fields["dst"], fields["src"], fields["off"], fields["imm"])
    except EncodingError as e:
        raise _Fail(e.message) from None
    return parsed


# --- LLVM dialect ------------------------------------------------------------------------------

_TOKEN = re.compile(r"\{\w+\}|\s+|\w+|[^\w\s]", re.ASCII)
_DISP = re.compile(r"\s*\+\s*\{imm\}")


def _llvm_template(row: OpDef) -> str:
    """The row's template with `` + {imm}`` turned into a displacement ``{imm_disp}``."""
    return _DISP.sub("{imm_disp}", row.llvm)


def _is_displacement(name: str, row: OpDef) -> bool:
    """``{imm_disp}`` and a MEMOFF ``{off}`` print as `` + N`` / `` - N``."""
    return name == "imm_disp" or (name == "off" and row.shape.off is Use.MEMOFF)


def _placeholder_regex(name: str, group: str, row: OpDef) -> str:
    if name in ("dst", "src"):
        return rf"(?P<{group}>[rw][0-9]+)"
    if name == "target":
        return rf"(?P<{group}>[+-]?\s*{_NUM_BODY}|{_LABEL})"
    if _is_displacement(name, row):
        return rf"(?:(?P<{group}_sign>[+-])\s*(?P<{group}>{_NUM_BODY}))?"
    if name == "imm":  # a number, or a symbol passed to assemble()
        return rf"(?P<{group}>[+-]?{_NUM_BODY}|(?![rw][0-9]+\b){_LABEL})"
    if name == "off":
        return rf"(?P<{group}>[+-]?{_NUM_BODY})"
    raise AssertionError(f"{row.name}: unknown placeholder {{{name}}} in LLVM template {row.llvm!r}")


@dataclass(frozen=True)
class _LlvmPattern:
    row: OpDef
    regex: re.Pattern[str]
    groups: tuple[tuple[str, str], ...]  # (regex group, placeholder name)


def _compile_llvm(row: OpDef) -> _LlvmPattern:
    """Compile a template: literal words/punctuation, placeholders, flexible whitespace."""
    parts: list[str] = []
    groups: list[tuple[str, str]] = []
    seen: dict[str, int] = {}
    space = prev_word = False
    for tok in _TOKEN.findall(_llvm_template(row)):
        if tok.isspace():
            space = True
            continue
        if tok.startswith("{") and len(tok) > 2:
            name = tok[1:-1]
            seen[name] = seen.get(name, 0) + 1
            group = name if seen[name] == 1 else f"{name}_{seen[name]}"
            pattern = _placeholder_regex(name, group, row)
            starts_word = ends_word = not _is_displacement(name, row)
            groups.append((group, name))
        else:
            pattern = re.escape(tok)
            starts_word = ends_word = tok[0].isalnum() or tok[0] == "_"
        if parts:
            parts.append(r"\s+" if space and prev_word and starts_word else r"\s*")
        parts.append(pattern)
        prev_word, space = ends_word, False
    return _LlvmPattern(row, re.compile("".join(parts), re.ASCII), tuple(groups))


_LLVM_PATTERNS: tuple[_LlvmPattern, ...] = tuple(_compile_llvm(r) for r in TABLE)


def _llvm_register(row: OpDef, fname: str, text: str, position: int) -> int:
    """``rN``/``wN``: 32-bit rows want ``wN`` for READ/WRITE fields, memory bases want ``rN``."""
    n = int(text[1:])
    if n >= NUM_REGS:
        raise _Fail(f"invalid register {text!r} (registers are r0..r{NUM_REGS - 1})")
    use = getattr(row.shape, fname)
    memory_row = Use.BASE in (row.shape.dst, row.shape.src)
    want = "w" if row.width == 32 and use in _REG_USES else "r"
    if text[0] != want and not (memory_row and use in _REG_USES):
        bits = 32 if want == "w" else 64
        raise _Fail(f"register {text} must be written {want}{n} here ({bits}-bit operand)",
                    mismatch=True, position=position, wanted=f"a {bits}-bit register", got=text)
    return n


def _parse_llvm_pattern(pat: _LlvmPattern, m: re.Match[str]) -> _Parsed:
    row = pat.row
    fields = dict.fromkeys(_FIELDS, 0)
    target = None
    regs: dict[str, int] = {}
    for i, (group, name) in enumerate(pat.groups):
        text = m.group(group)
        if name in ("dst", "src"):
            n = _llvm_register(row, name, text, i)
            if group != name and regs.get(name) != n:
                raise _Fail(f"{row.llvm!r} needs the same register twice, got {regs[name]} and {n}")
            regs[name] = fields[name] = n
        elif name == "target":
            fname = _target_field(row)
            assert fname is not None
            fields[fname], target = _parse_target(fname, text.replace(" ", ""), i)
        elif text is not None:  # None: an omitted displacement
            token = (m.groupdict().get(group + "_sign") or "") + text
            value = _value(token, i)
            if name == "off":
                fields["off"] = _fit_signed(value, 16, "offset", token)
            else:
                fields["imm"] = _imm_value(row, value, token)
    return _Parsed(row, fields, target)


def _parse_llvm(stmt: str) -> _Parsed:
    stmt = stmt.strip()
    attempts: list[Callable[[], _Parsed]] = []
    for pat in _LLVM_PATTERNS:
        m = pat.regex.fullmatch(stmt)
        if m is not None:
            attempts.append(partial(_parse_llvm_pattern, pat, m))
    if not attempts:
        raise _Fail(f"unrecognized instruction {stmt!r}", unknown=True)
    return _first_success(attempts, None, 0)


# --- Dialect detection and the assembler --------------------------------------------------------

_LLVM_HINT = re.compile(r"=|goto|\bif\s|lock\s*\*|callx|(?<![%\w])[rw][0-9]+\b", re.ASCII)
_LABEL_DEF = re.compile(rf"\s*({_LABEL})\s*:(.*)", re.ASCII | re.DOTALL)


def detect_dialect(stmt: str) -> str:
    """``"llvm"`` if the statement looks like LLVM syntax (``=``, ``goto``, ``if``, ``rN``...)."""
    return "llvm" if _LLVM_HINT.search(stmt) else "ubpf"


_PARSERS: Mapping[str, Callable[[str], _Parsed]] = {"ubpf": _parse_ubpf, "llvm": _parse_llvm}


def _parse_statement(stmt: str, dialect: str | None) -> _Parsed:
    """Parse in the chosen (or detected) dialect first, then the other; report the first error."""
    first = dialect or detect_dialect(stmt)
    try:
        return _PARSERS[first](stmt)
    except _Fail as e:
        other = "llvm" if first == "ubpf" else "ubpf"
        try:
            return _PARSERS[other](stmt)
        except _Fail as e2:
            raise (e2 if e.unknown and not e2.unknown else e) from None


@dataclass
class _State:
    labels: dict[str, tuple[int, int]] = field(default_factory=dict)  # name -> (pc, line)
    parsed: list[_Parsed] = field(default_factory=list)
    first_exit: int | None = None
    pc: int = 0


def assemble(text: str, *, dialect: str | None = None, file: str | None = None,
             first_line: int = 1, symbols: Mapping[str, int] | None = None) -> list[Insn]:
    """Assemble ``text`` (either dialect, or both; see the module docstring) into instructions.

    ``dialect`` is the syntax tried first on each line and whose error is reported; ``None``
    guesses it per line (:func:`detect_dialect`). A line in the other syntax is still accepted,
    so mixed files and the disassembler's fall-backs (see :func:`format_insn`) assemble.
    ``first_line`` is the number of the first line of ``text`` within ``file``. An lddw is one
    :class:`Insn` occupying two slots; pcs and jump offsets count slots (RFC 9669 §5.4).

    Raises :class:`AsmError` naming ``file`` and the line for anything that is not a valid
    instruction (unknown mnemonic, operand count or kind, register, range, label, or a field
    rule of RFC 9669 §3 such as writing r10). Program-level rules (every jump lands on an
    instruction) are left to :func:`~reference_vm.insn.decode_program`.

    ``symbols`` names constants an immediate may be written as (``lddw_map_idx %r1, counters``,
    ``call bpf_map_lookup_elem``); a register name cannot be a symbol.
    """
    if dialect is not None and dialect not in DIALECTS:
        raise ValueError(f"unknown dialect {dialect!r} (want one of {DIALECTS})")
    for name in symbols or {}:
        if _REGISTER_NAME.fullmatch(name) or not _LABEL_RE.fullmatch(name):
            raise ValueError(f"{name!r} cannot be a symbol name")
    token = _SYMBOLS.set(dict(symbols or {}))
    try:
        return _assemble(text, dialect, file, first_line)
    finally:
        _SYMBOLS.reset(token)


def _assemble(text: str, dialect: str | None, file: str | None, first_line: int) -> list[Insn]:
    state = _State()
    for lineno, full in enumerate(text.splitlines(), start=first_line):
        stmt = full.split("#", 1)[0]
        try:
            while (m := _LABEL_DEF.fullmatch(stmt)) is not None:
                name, stmt = m.group(1), m.group(2)
                if name in state.labels:
                    raise _Fail(f"duplicate label {name!r} (first defined on line "
                                f"{state.labels[name][1]})")
                state.labels[name] = (state.pc, lineno)
            if not stmt.strip():
                continue
            parsed = _parse_statement(stmt, dialect)
        except _Fail as e:
            raise AsmError(e.message, file=file, line=lineno) from None
        parsed.line, parsed.pc = lineno, state.pc
        if parsed.row.kind is Kind.EXIT and state.first_exit is None:
            state.first_exit = state.pc
        state.parsed.append(parsed)
        state.pc += parsed.row.slots
    return [_resolve(p, state, file) for p in state.parsed]


def _resolve(p: _Parsed, state: _State, file: str | None) -> Insn:
    """Fill in a label target: offset relative to the next slot (RFC 9669 §4.3)."""
    if p.target is not None:
        if p.target in state.labels:
            dest = state.labels[p.target][0]
        elif p.target == "exit" and state.first_exit is not None:
            dest = state.first_exit
        else:
            raise AsmError(f"undefined label {p.target!r}", file=file, line=p.line)
        fname = _target_field(p.row)
        assert fname is not None
        delta = dest - (p.pc + 1)
        try:
            p.fields[fname] = _fit_signed(delta, 16 if fname == "off" else 32, "jump offset", str(delta))
        except _Fail as e:
            raise AsmError(f"{e.message} to label {p.target!r}", file=file, line=p.line) from None
    f = p.fields
    return Insn(p.row, f["dst"], f["src"], f["off"], f["imm"])


def assemble_bytes(text: str, *, dialect: str | None = None, file: str | None = None,
                   first_line: int = 1, symbols: Mapping[str, int] | None = None) -> bytes:
    """:func:`assemble`, encoded as little-endian 8-byte slots (RFC 9669 §3)."""
    return encode_program(assemble(text, dialect=dialect, file=file, first_line=first_line,
                                   symbols=symbols))


# --- Formatting and the disassembler -------------------------------------------------------------


def _s64(value: int) -> int:
    value &= _U64
    return value - (1 << 64) if value >> 63 else value


def _target_text(insn: Insn, pc: int | None, labels: Mapping[int, str] | None) -> str:
    fname = _target_field(insn.op)
    assert fname is not None
    bits = 32 if fname == "imm" else 16  # the field's width: an offset is its signed value
    delta = (getattr(insn, fname) + (1 << (bits - 1))) % (1 << bits) - (1 << (bits - 1))
    if pc is not None and labels:
        name = labels.get(pc + 1 + delta)
        if name is not None:
            return name
    return f"{delta:+d}"


def _ubpf_number(row: OpDef, value: int) -> str:
    """lddw's 64-bit value and 32-bit bit patterns in hex (as the corpus writes them), else decimal."""
    if row.kind is Kind.LDDW:
        return f"{value:#x}"
    return str(value) if -0x10000 < value < 0x10000 else f"{value & 0xFFFFFFFF:#x}"


def _format_ubpf(insn: Insn, target: str | None) -> str:
    parts = []
    for kind, fname in _UBPF_OPS[insn.op.name]:
        value = getattr(insn, fname)
        if kind == _REG:
            parts.append(f"%r{value}")
        elif kind == _MEM:
            parts.append(f"[%r{value}{insn.off:+d}]" if insn.off else f"[%r{value}]")
        elif kind == _IMM:
            parts.append(_ubpf_number(insn.op, value))
        elif kind == _OPT:
            if value:
                parts.append(str(value))
        else:
            parts.append(target or "")
    return insn.op.mnemonic + (" " + ", ".join(parts) if parts else "")


def _format_llvm(insn: Insn, target: str | None) -> str:
    row = insn.op

    def reg(fname: str) -> str:
        letter = "w" if row.width == 32 and getattr(row.shape, fname) in _REG_USES else "r"
        return f"{letter}{getattr(insn, fname)}"

    def disp(value: int) -> str:
        return f" + {value}" if value >= 0 else f" - {-value}"

    imm = _s64(insn.imm) if row.kind is Kind.LDDW else insn.imm
    return _llvm_template(row).format(
        dst=reg("dst"), src=reg("src"), imm=imm, target=target,
        off=disp(insn.off) if row.shape.off is Use.MEMOFF else insn.off,
        imm_disp=disp(insn.imm) if insn.imm else "")


def _same(insn: Insn, parsed: _Parsed, by_label: bool) -> bool:
    """Whether text parsed back gives ``insn`` (the jump field is skipped for a label)."""
    skip = _target_field(insn.op) if by_label else None
    return parsed.row is insn.op and all(
        parsed.fields[f] == getattr(insn, f) for f in _FIELDS if f != skip)


def format_insn(insn: Insn, *, dialect: str = "ubpf", pc: int | None = None,
                labels: Mapping[int, str] | None = None) -> str:
    """One instruction as text. Jump targets use ``labels[target_pc]`` when ``pc`` is given.

    Where the LLVM syntax cannot express an instruction (a template without a field the
    instruction uses, or a local call without a label: llvm-mc reads ``call +3`` as a helper
    call) the uBPF spelling is printed instead; :func:`assemble` reads both.
    """
    if dialect not in DIALECTS:
        raise ValueError(f"unknown dialect {dialect!r} (want one of {DIALECTS})")
    target = _target_text(insn, pc, labels) if _target_field(insn.op) else None
    if dialect == "ubpf":
        return _format_ubpf(insn, target)
    text = _format_llvm(insn, target)
    by_label = target is not None and target[0] not in "+-"
    try:
        if _same(insn, _parse_llvm(text), by_label):
            return text
    except _Fail:
        pass
    return _format_ubpf(insn, target)


def _program_items(program: Sequence[Insn | None] | bytes | bytearray) -> list[tuple[int, Insn]]:
    """(pc, insn) pairs; pcs count slots, a ``None`` after an lddw is its second slot."""
    if isinstance(program, (bytes, bytearray, memoryview)):
        program = decode_program(bytes(program))
    items: list[tuple[int, Insn]] = []
    pc = 0
    after_lddw = False
    for insn in program:
        if insn is None:
            if not after_lddw:
                raise ValueError(f"None at pc {pc} does not follow an lddw")
            after_lddw = False
            continue
        items.append((pc, insn))
        pc += insn.op.slots
        after_lddw = insn.op.slots == 2
    return items


def disassemble(program: Sequence[Insn | None] | bytes, *, dialect: str = "ubpf",
                labels: bool = True) -> str:
    """Print a program one instruction per line; the text reassembles to the same bytes.

    Raw bytes are decoded with :func:`~reference_vm.insn.decode_program` (its
    :class:`EncodingError` propagates). With ``labels`` every jump/call target inside the
    program gets a line ``L<pc>:`` and is referred to by that name; otherwise targets are
    printed as ``+N``/``-N``.
    """
    if dialect not in DIALECTS:
        raise ValueError(f"unknown dialect {dialect!r} (want one of {DIALECTS})")
    items = _program_items(program)
    names: dict[int, str] = {}
    if labels:
        pcs = {pc for pc, _ in items}
        for pc, insn in items:
            dest = jump_target(insn, pc)
            if dest is not None and dest in pcs:
                names[dest] = f"L{dest}"
    lines = []
    for pc, insn in items:
        if pc in names:
            lines.append(f"{names[pc]}:")
        lines.append(format_insn(insn, dialect=dialect, pc=pc, labels=names))
    return "".join(line + "\n" for line in lines)
