"""Reader for bpf_conformance ``.data`` case files, exactly as the stock runner reads them.

Format (bpf_conformance ``src/bpf_test_parser.cc``): ``#`` starts a comment anywhere; a line
containing ``--`` starts a section chosen by substring, in this order: ``asm``, ``result``,
``mem``, ``raw``, ``no register offset`` (ignored), `` c`` (ignored), ``error``. ``-- raw``
replaces the assembly; only the last ``-- result`` line counts (hex if it contains ``0x``);
``-- mem`` is hex bytes; ``-- error`` holds the expected error text (empty: any error).

Where the stock runner silently skips (unknown section, no result and no error, no
instructions) this reader raises :class:`CaseFormatError` naming file and line. ``-- raw``
is read both as 64-bit words (``0x5566778800000018``) and, when every line holds exactly
eight two-digit hex tokens, as bytes (bpf_conformance ``negative/unused-*.data``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from reference_vm.errors import CaseFormatError
from reference_vm.insn import RawInsn

# Section names in the stock runner's matching order; None = ignored section.
_SECTIONS: tuple[tuple[str, str | None], ...] = (
    ("asm", "asm"), ("result", "result"), ("mem", "mem"), ("raw", "raw"),
    ("no register offset", None), (" c", None), ("error", "error"),
)
_BYTE = re.compile(r"^[0-9a-fA-F]{2}$")
U64 = (1 << 64) - 1


@dataclass
class DataCase:
    """One ``.data`` file. Line numbers are 1-based, for error messages."""

    path: str
    asm_text: str | None = None  # the asm section as written (comments included)
    asm_line: int = 0  # line number of the first line of asm_text
    raw: list[RawInsn] | None = None
    raw_line: int = 0
    mem: bytes | None = None
    result: int | None = None
    result_line: int = 0
    error: str | None = None  # None: no error expected; "": any error
    error_line: int = 0
    ignored_sections: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return Path(self.path).stem


def _number(token: str, path: str, line: int, what: str) -> int:
    try:
        if "0x" in token.lower():
            neg = token.startswith("-")
            value = int(token.lstrip("+-"), 16)
            return -value if neg else value
        return int(token, 10)
    except ValueError:
        raise CaseFormatError(f"{what}: {token!r} is not a number", file=path, line=line) from None


def parse_data_text(text: str, path: str = "<string>") -> DataCase:
    """Parse the text of a ``.data`` file; raise :class:`CaseFormatError` on malformed input."""
    case = DataCase(path=path)
    section: str | None = None
    section_start = 0
    collected: dict[str, list[tuple[int, str]]] = {}
    asm_lines: list[str] = []
    for lineno, full in enumerate(text.splitlines(), start=1):
        content = full.split("#", 1)[0]
        if "--" in content:
            header = content.strip()
            for key, name in _SECTIONS:
                if key in content:
                    section = name
                    break
            else:
                raise CaseFormatError(f"unknown section header {header!r} (known: asm, result, "
                                      "mem, raw, error, no register offset, c)", file=path, line=lineno)
            if section is None:
                case.ignored_sections.append(header)
            elif section in collected:
                raise CaseFormatError(f"section '-- {section}' appears twice", file=path, line=lineno)
            else:
                collected[section] = []
            section_start = lineno
            if section == "asm":
                case.asm_line = lineno + 1
            continue
        if section == "asm":
            asm_lines.append(full)
            continue
        if section is None:
            if content.strip() and section_start == 0:
                raise CaseFormatError(f"text before the first section: {content.strip()!r}",
                                      file=path, line=lineno)
            continue
        if content.strip() or section == "error":
            collected[section].append((lineno, content.strip()))

    if "asm" in collected:
        case.asm_text = "\n".join(asm_lines)
    if "raw" in collected:
        case.raw, case.raw_line = _parse_raw(collected["raw"], path)
    if "mem" in collected:
        case.mem = _parse_mem(collected["mem"], path)
    if "result" in collected:
        lines = collected["result"]
        if not lines:
            raise CaseFormatError("'-- result' section is empty", file=path, line=section_start)
        lineno, last = lines[-1]
        case.result = _number(last.split()[0], path, lineno, "result") & U64
        case.result_line = lineno
    if "error" in collected:
        lines = [(n, t) for n, t in collected["error"] if t]
        case.error = lines[-1][1] if lines else ""
        case.error_line = lines[-1][0] if lines else 0
    if case.result is None and case.error is None:
        raise CaseFormatError("no '-- result' or '-- error' section: nothing to check", file=path,
                              line=1)
    has_asm = case.asm_text is not None and any(
        ln.split("#", 1)[0].strip() for ln in asm_lines)
    if not has_asm and not case.raw:
        raise CaseFormatError("no instructions: neither '-- asm' nor '-- raw' holds any",
                              file=path, line=1)
    return case


def _parse_mem(lines: list[tuple[int, str]], path: str) -> bytes:
    out = bytearray()
    for lineno, text in lines:
        for tok in text.split():
            if not _BYTE.match(tok):
                raise CaseFormatError(f"-- mem: {tok!r} is not a two-digit hex byte", file=path,
                                      line=lineno)
            out.append(int(tok, 16))
    return bytes(out)


def _parse_raw(lines: list[tuple[int, str]], path: str) -> tuple[list[RawInsn], int]:
    if not lines:
        raise CaseFormatError("'-- raw' section is empty", file=path, line=0)
    first = lines[0][0]
    tokens = [(n, t) for n, text in lines for t in text.split()]
    as_bytes = all(len(text.split()) == 8 and all(_BYTE.match(t) for t in text.split())
                   for _, text in lines)
    if as_bytes:
        data = bytes(int(t, 16) for _, t in tokens)
        return [RawInsn.from_bytes(data, i) for i in range(0, len(data), 8)], first
    words = []
    for lineno, tok in tokens:
        value = _number(tok, path, lineno, "-- raw")
        if not -(1 << 63) <= value <= U64:
            raise CaseFormatError(f"-- raw: {tok!r} does not fit in 64 bits", file=path, line=lineno)
        words.append(RawInsn.from_u64(value))
    return words, first


def load_data_file(path: str | Path) -> DataCase:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise CaseFormatError(f"not UTF-8 text ({e.reason} at byte {e.start})", file=str(p)) from None
    except OSError as e:
        raise CaseFormatError(f"cannot read: {e.strerror}", file=str(p)) from None
    return parse_data_text(text, str(p))
