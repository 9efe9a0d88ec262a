"""The :class:`Case` the runner works on, and :func:`load_cases` for files and directories.

A case is one bpf_conformance ``.data`` file (format: ``formats-and-corpora.md`` §1, read by
:mod:`conformance.data_file`) turned into what every target needs: the program as raw 8-byte
slots, the input memory, the expectation, and the conformance groups and cpu version the
program requires. The requirements come from the ISA table (:mod:`reference_vm.isa`), not
from bpf_conformance's ``opcode_names.h``: each decoded instruction contributes its row's
``group`` (closed under ``GROUP_IMPLIES``) and ``cpu``.

A program that does not decode (:class:`~reference_vm.errors.EncodingError`) is still a case:
an ``-- error`` test of an invalid encoding. It requires only base32 / v1, and every target
is expected to report an error.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path

from reference_vm.errors import EncodingError, UsageError
from reference_vm.insn import RawInsn, decode_program
from reference_vm.isa import GROUP_IMPLIES, Group

from .data_file import DataCase, load_data_file
from .yaml_case import YamlCase, load_yaml_cases

#: What a program needs at the least: every program ends with ``exit`` (base32, v1).
BASE_GROUPS = frozenset({Group.BASE32})
BASE_CPU = 1


@dataclass(frozen=True)
class Case:
    """One conformance case.

    ``expect_error`` is ``None`` when the case expects a value (``expect_r0``), ``""`` when any
    error will do, or the exact error text of a bpf_conformance ``-- error`` section. A case
    with an ``-- error`` section expects an error even if it also has a ``-- result`` (the stock
    runner's "no result means r0 == 0" quirk is not reproduced).
    """

    name: str
    path: str
    program: tuple[RawInsn, ...]
    mem: bytes | None = None
    expect_r0: int | None = None
    expect_error: str | None = None
    groups: frozenset[Group] = BASE_GROUPS
    cpu: int = BASE_CPU
    encoding_error: str | None = None  # why the program does not decode, if it does not
    whole: YamlCase | None = None  # a whole-program case (docs/case-format.md): maps, programs, ...
    topic: str = ""

    @property
    def expects_error(self) -> bool:
        return self.expect_error is not None

    def program_bytes(self) -> bytes:
        return b"".join(slot.to_bytes() for slot in self.program)

    def expected_json(self) -> dict[str, object]:
        return {"r0": self.expect_r0, "error": self.expect_error}

    def describe_expectation(self) -> str:
        if self.expect_error is None:
            return f"r0 = {self.expect_r0:#x}" if self.expect_r0 is not None else "r0 = ?"
        return f"an error ({self.expect_error!r})" if self.expect_error else "an error"


def close_groups(groups: set[Group] | frozenset[Group]) -> frozenset[Group]:
    """Add the groups each group implies (RFC 9669 §2.2: base64 includes base32, ...)."""
    out = set(groups)
    while True:
        implied = set().union(*(GROUP_IMPLIES.get(g, frozenset()) for g in out)) - out
        if not implied:
            return frozenset(out)
        out |= implied


def requirements(program: list[RawInsn] | tuple[RawInsn, ...]) -> tuple[frozenset[Group], int, str | None]:
    """``(groups, cpu, encoding_error)`` of a program, from the ISA table rows it uses."""
    try:
        decoded = decode_program(list(program))
    except EncodingError as e:
        return BASE_GROUPS, BASE_CPU, str(e)
    groups: set[Group] = set(BASE_GROUPS)
    cpu = BASE_CPU
    for insn in decoded:
        if insn is not None:
            groups.add(insn.op.group)
            cpu = max(cpu, insn.op.cpu)
    return close_groups(groups), cpu, None


def _assemble(data: DataCase) -> list[RawInsn]:
    from reference_vm.asm import assemble  # imported late: only asm cases need it

    assert data.asm_text is not None
    insns = assemble(data.asm_text, file=data.path, first_line=data.asm_line)
    return [slot for insn in insns for slot in insn.raw()]


def case_from_data(data: DataCase) -> Case:
    """Build a :class:`Case` from a parsed ``.data`` file (``-- raw`` wins over ``-- asm``)."""
    program = list(data.raw) if data.raw else _assemble(data)
    groups, cpu, encoding_error = requirements(program)
    return Case(name=data.name, path=data.path, program=tuple(program), mem=data.mem,
                expect_r0=data.result if data.error is None else None, expect_error=data.error,
                groups=groups, cpu=cpu, encoding_error=encoding_error)


def load_case(path: str | Path) -> Case:
    return case_from_data(load_data_file(path))


def find_case_files(paths: list[str]) -> list[str]:
    """Expand files, directories (``*.data``, recursively, sorted) and glob patterns.

    A directory or pattern without any case file is a :class:`UsageError` (an empty selection
    must not pass silently, unlike the stock runner's "Passed 0 out of 0").
    """
    out: list[str] = []
    seen: set[str] = set()
    for arg in paths:
        p = Path(arg)
        if p.is_dir():
            found = sorted(str(f) for f in p.rglob("*") if f.is_file() and is_case_file(f))
        elif p.is_file():
            found = [arg]
        else:
            matches = sorted(glob.glob(arg, recursive=True))
            found = []
            for m in matches:
                mp = Path(m)
                found += (sorted(str(f) for f in mp.rglob("*") if f.is_file() and is_case_file(f))
                          if mp.is_dir() else [m])
            if not matches and not glob.has_magic(arg):
                raise UsageError(f"no such file or directory: {arg}")
        if not found:
            raise UsageError(f"no case files found in {arg}")
        for f in found:
            key = os.path.realpath(f)
            if key not in seen:
                seen.add(key)
                out.append(f)
    return out


def is_case_file(path: Path) -> bool:
    """``.data`` files, and YAML files of whole-program cases (a top-level ``cases:`` mapping).

    Other YAML files in a corpus folder (the BTF corpus' lists, divergence files) are not
    runner cases and are passed over.
    """
    if path.suffix == ".data":
        return True
    if path.suffix not in (".yaml", ".yml"):
        return False
    try:
        with path.open(encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.strip() and not line.lstrip().startswith("#"):
                    return line.startswith("cases:")
    except OSError:
        return False
    return False


def case_from_yaml(case: YamlCase) -> Case:
    """A runner :class:`Case` for a whole-program case: requirements from all its programs."""
    from .wholeprog import assembled

    programs = assembled(case)
    slots = [slot for prog in programs.values() for insn in prog if insn is not None for slot in insn.raw()]
    groups, cpu, _ = requirements(slots)
    e = case.expect
    expect_error = None
    if e.error not in (None, "ok"):
        expect_error = e.error
    elif e.verifier is not None and e.verifier.get("verdict") == "reject":
        expect_error = "rejected"
    return Case(name=case.name, path=case.path, program=tuple(slots), mem=case.mem,
                expect_r0=e.r0 if expect_error is None else None, expect_error=expect_error,
                groups=groups, cpu=cpu, whole=case, topic=case.topic)


def load_cases(paths: list[str]) -> list[Case]:
    """Load every case under ``paths``; format and assembly errors raise with ``file:line``."""
    out: list[Case] = []
    for f in find_case_files(paths):
        if f.endswith(".data"):
            out.append(load_case(f))
        else:
            out.extend(case_from_yaml(c) for c in load_yaml_cases(f))
    return out
