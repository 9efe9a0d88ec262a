"""Loading BPF ELF objects (``clang -target bpf -c x.c``) the way libbpf does, into an :class:`Image`.

:func:`load_elf` reads a relocatable ``EM_BPF`` object with pyelftools and returns an
:class:`ElfImage` (an :class:`~reference_vm.program.Image` plus what the object says besides:
licence, BTF, ``.BTF.ext`` records, the relocations applied). The conventions are libbpf's
(``tools/lib/bpf/libbpf.c``; ``Documentation/bpf/libbpf/program_types.rst``):

* **Programs.** Every global ``STT_FUNC`` symbol in an executable section other than ``.text`` is
  a program, named after the function (``bpf_object__add_programs``); the section name gives its
  type (``SEC("tc")`` -> ``sched_cls``, ``SEC("fexit/bpf_fentry_test1")`` -> ``tracing`` with
  ``attach = "fexit:bpf_fentry_test1"``; :data:`SECTION_DEFS`). Static functions in a program
  section are refused, as libbpf does ("program is static and not supported").
* **Subprograms.** Functions in ``.text`` are subprograms. Each program gets its own copy of every
  ``.text`` function it reaches, appended after its own code in the order the calls are met, and
  the call offsets are fixed up (``bpf_object__reloc_code`` / ``append_subprog``). A call with an
  ``R_BPF_64_32`` relocation targets instruction ``sym.st_value / 8 + imm + 1`` of ``.text``; a
  call without one (inside ``.text``) is pc-relative within its section.
* **Maps.** BTF-defined maps in ``.maps`` (a DATASEC of VARs whose struct members encode the
  numbers as ``int (*type)[N]`` and the key/value types as pointers, ``parse_btf_map_def``),
  legacy ``struct bpf_map_def`` maps in ``maps``, then one single-element ARRAY per global data
  section (``.data``, ``.rodata``, ``.bss`` and their ``.<name>.*`` variants) holding the section's
  bytes, named like libbpf's ``internal_map_name`` (``tail_cal.bss``). Map indexes follow that
  order. Prog arrays may be filled statically (``.values = {[0] = &prog}``: ``.rel.maps``
  relocations, ``bpf_object__collect_map_relos``), as may maps of maps.
* **Relocations** (``bpf_program__record_reloc``): an ``lddw`` with an ``R_BPF_64_64`` relocation
  against a map symbol becomes ``lddw_map_idx`` (src 5, imm = map index), against a global
  variable ``lddw_map_idx_value`` (src 6, upper imm = offset of the variable in its section plus
  the instruction's own imm), against a ``.text`` function ``lddw_func`` (src 4, a callback for
  ``bpf_loop``). libbpf writes map fds (src 1/2); the indexes are what an :class:`Image` uses.
* **BTF.** ``.BTF`` is fixed up as libbpf's ``btf_fixup_datasec`` does (clang leaves every DATASEC
  size and VAR offset 0: sizes come from the ELF sections, offsets from the symbols) and parsed
  by :func:`reference_vm.btf.parse`; ``.BTF.ext`` by :func:`reference_vm.btf.btf_ext_parse`. Its
  func_info and line_info records are moved along with the code (instruction indexes, per program,
  subprograms included), as libbpf's ``adjust_prog_btf_ext_info`` does.

Anything malformed raises :class:`ElfError`, one line naming the file and the section or symbol,
never a pyelftools traceback. ``docs/elf.md`` describes what is supported.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from elftools.common.exceptions import ELFError, ELFParseError, ELFRelocationError
from elftools.construct import ConstructError
from elftools.elf.elffile import ELFFile
from elftools.elf.relocation import RelocationSection
from elftools.elf.sections import Section, Symbol, SymbolTableSection

from .btf import Array as BtfArray
from .btf import Btf, BtfError, BtfExt, Datasec, FuncInfo, LineInfo, Ptr, Struct, Var, btf_ext_parse
from .btf import FuncProto as BtfFuncProto
from .btf import parse as btf_parse
from .btf.model import VAR_STATIC
from .env import Environment
from .errors import BpfCheckError, EncodingError
from .insn import Insn, RawInsn, decode_program
from .isa import BPF_PSEUDO_CALL, BPF_PSEUDO_FUNC, BPF_PSEUDO_MAP_IDX, BPF_PSEUDO_MAP_IDX_VALUE
from .maps import BPF_F_MMAPABLE, BPF_F_RDONLY_PROG, BPF_OBJ_NAME_LEN, FD_BASE, MapError, MapSpec, MapType
from .memory import MAX_CALL_FRAMES, STACK_FRAMES, standard_memory
from .outcome import Outcome
from .program import Image, MapInit, Program, ProgType

# --- ELF constants (include/uapi/linux/elf.h, elf(5); LLVM BPFELFObjectWriter) ------------------

EM_BPF = 247
ET_REL = 1
SHF_EXECINSTR = 0x4
#: ELF relocation types of the BPF target (llvm/BinaryFormat/ELFRelocs/BPF.def).
R_BPF_NONE = 0
R_BPF_64_64 = 1  # lddw: the 64-bit immediate of a map, global variable or function address
R_BPF_64_ABS64 = 2  # data: a 64-bit address (.maps initialisers, DWARF)
R_BPF_64_ABS32 = 3  # data: a 32-bit address (DWARF)
R_BPF_64_NODYLD32 = 4  # .BTF / .BTF.ext: section offsets, not applied at load time
R_BPF_64_32 = 10  # call: a bpf-to-bpf call (pc-relative, in instructions)
RELOC_NAMES = {R_BPF_NONE: "R_BPF_NONE", R_BPF_64_64: "R_BPF_64_64", R_BPF_64_ABS64: "R_BPF_64_ABS64",
               R_BPF_64_ABS32: "R_BPF_64_ABS32", R_BPF_64_NODYLD32: "R_BPF_64_NODYLD32",
               R_BPF_64_32: "R_BPF_64_32"}

INSN_SIZE = 8
#: ``Elf64_Shdr``: sh_name, sh_type, sh_flags, sh_addr, sh_offset, sh_size, sh_link, sh_info,
#: sh_addralign, sh_entsize.
_SHDR = struct.Struct("<IIQQQQIIQQ")
OPCODE_LDDW = 0x18  # BPF_LD | BPF_IMM | BPF_DW
OPCODE_CALL = 0x85  # BPF_JMP | BPF_CALL
TEXT = ".text"
BTF_MAPS_SEC = ".maps"
LEGACY_MAPS_SEC = "maps"
#: libbpf's ``struct bpf_map_def`` (the legacy ``maps`` section): type, key_size, value_size,
#: max_entries, map_flags.
LEGACY_MAP_DEF = struct.Struct("<5I")
#: Largest SHT_NOBITS section (``.bss``) we accept: a sanity bound that keeps a corrupted size
#: from becoming a map (or a zero-filled buffer) of exabytes.
MAX_NOBITS_SIZE = 1 << 30
PTR_SIZE = 8  # BPF pointers are 64-bit (libbpf's bpf_ptr_sz in bpf_object__collect_map_relos)


class ElfError(BpfCheckError):
    """A BPF ELF object that cannot be loaded; the message names the file and the section or
    symbol at fault (``x.o: section 'tc': relocation #3 against unknown symbol #99``)."""


# --- Section names -> program types (libbpf section_defs) --------------------------------------

@dataclass(frozen=True)
class SectionDef:
    """One row of libbpf's ``section_defs``: ``SEC("name")`` exactly, or with ``plus`` also
    ``SEC("name/extras")`` (the ``+`` of program_types.rst), giving the program type, the
    expected attach type (Linux ``enum bpf_attach_type`` name, informational) and, for trampoline
    programs, the :class:`~reference_vm.program.Program` ``attach`` kind."""

    prefix: str
    prog_type: ProgType
    plus: bool = False
    expected_attach_type: str = ""
    tramp: str | None = None  # "fentry", "fexit", "fmod_ret": Program.attach = "<tramp>:<function>"
    sleepable: bool = False

    def matches(self, section: str) -> bool:
        """libbpf ``sec_def_matches``: exact, or (``plus``) the name followed by ``/``."""
        if section == self.prefix:
            return True
        return self.plus and section.startswith(self.prefix + "/")


_P = ProgType
#: The program sections bpfcheck runs (Documentation/bpf/libbpf/program_types.rst), in libbpf's
#: matching order. Other libbpf sections (kprobe, tracepoint, cgroup_skb, ...) are refused.
SECTION_DEFS: tuple[SectionDef, ...] = (
    SectionDef("socket", _P.SOCKET_FILTER),
    SectionDef("sk_lookup", _P.SK_LOOKUP, expected_attach_type="BPF_SK_LOOKUP"),
    SectionDef("tc", _P.SCHED_CLS, plus=True),
    SectionDef("classifier", _P.SCHED_CLS),
    SectionDef("raw_tracepoint", _P.RAW_TRACEPOINT, plus=True),
    SectionDef("raw_tp", _P.RAW_TRACEPOINT, plus=True),
    SectionDef("tp_btf", _P.TRACING, plus=True, expected_attach_type="BPF_TRACE_RAW_TP"),
    SectionDef("fentry", _P.TRACING, plus=True, expected_attach_type="BPF_TRACE_FENTRY", tramp="fentry"),
    SectionDef("fmod_ret", _P.TRACING, plus=True, expected_attach_type="BPF_MODIFY_RETURN", tramp="fmod_ret"),
    SectionDef("fexit", _P.TRACING, plus=True, expected_attach_type="BPF_TRACE_FEXIT", tramp="fexit"),
    SectionDef("fentry.s", _P.TRACING, plus=True, expected_attach_type="BPF_TRACE_FENTRY", tramp="fentry",
               sleepable=True),
    SectionDef("fmod_ret.s", _P.TRACING, plus=True, expected_attach_type="BPF_MODIFY_RETURN",
               tramp="fmod_ret", sleepable=True),
    SectionDef("fexit.s", _P.TRACING, plus=True, expected_attach_type="BPF_TRACE_FEXIT", tramp="fexit",
               sleepable=True),
    SectionDef("lsm", _P.LSM, plus=True, expected_attach_type="BPF_LSM_MAC"),
    SectionDef("lsm.s", _P.LSM, plus=True, expected_attach_type="BPF_LSM_MAC", sleepable=True),
    SectionDef("flow_dissector", _P.FLOW_DISSECTOR, expected_attach_type="BPF_FLOW_DISSECTOR"),
    SectionDef("xdp.frags", _P.XDP, plus=True, expected_attach_type="BPF_XDP"),
    SectionDef("xdp", _P.XDP, plus=True, expected_attach_type="BPF_XDP"),
    SectionDef("cgroup/sysctl", _P.CGROUP_SYSCTL, expected_attach_type="BPF_CGROUP_SYSCTL"),
    SectionDef("cgroup/getsockopt", _P.CGROUP_SOCKOPT, expected_attach_type="BPF_CGROUP_GETSOCKOPT"),
    SectionDef("cgroup/setsockopt", _P.CGROUP_SOCKOPT, expected_attach_type="BPF_CGROUP_SETSOCKOPT"),
    SectionDef("syscall", _P.SYSCALL, sleepable=True),
)


def section_def(section: str) -> SectionDef | None:
    """The :class:`SectionDef` a program section name matches (libbpf ``find_sec_def``), or None."""
    for d in SECTION_DEFS:
        if d.matches(section):
            return d
    return None


def internal_map_name(obj_name: str, section: str) -> str:
    """libbpf ``internal_map_name``: up to 8 characters of the object name then the section name
    (``tail_cal.bss``, 15 characters at most); no object prefix for a section with a second dot
    (``.rodata.str1.1``); characters other than ``[A-Za-z0-9_.]`` become ``_``."""
    sfx_len = min(max(7, len(section)), BPF_OBJ_NAME_LEN - 1)
    pfx_len = 0 if "." in section[1:] else min(BPF_OBJ_NAME_LEN - sfx_len - 1, len(obj_name))
    name = (obj_name[:pfx_len] + section[:sfx_len])[:BPF_OBJ_NAME_LEN - 1]
    return "".join(c if c.isascii() and (c.isalnum() or c in "_.") else "_" for c in name)


def object_name(path: str) -> str:
    """libbpf's object name: the file's base name up to its first dot (``tail_call.o`` ->
    ``tail_call``), at most 15 characters."""
    return Path(path).name.split(".", 1)[0][:BPF_OBJ_NAME_LEN - 1]


# --- The result ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Relocation:
    """One relocation applied to a program's code (what ``llvm-objdump -dr`` shows, resolved).

    ``kind`` is libbpf's: ``map`` (RELO_LD64), ``map_value`` (RELO_DATA), ``call`` (RELO_CALL),
    ``func`` (RELO_SUBPROG_ADDR). ``offset`` is the instruction index in ``section``; ``target``
    the map or subprogram it resolved to; ``addend`` the offset into a global data map."""

    section: str
    offset: int
    type: int
    symbol: str
    kind: str
    target: str
    addend: int = 0


@dataclass(frozen=True)
class ProgramInfo:
    """What the object says about one program beyond its :class:`Program`."""

    name: str
    section: str
    insn_count: int  # its own instructions, before subprograms were appended
    subprograms: tuple[str, ...] = ()  # .text functions appended, in order
    subprogram_offsets: tuple[int, ...] = ()  # where each was placed (instruction index)
    expected_attach_type: str = ""
    attach_target: str = ""  # the part of the section name after "/" (a function, tracepoint, ...)
    sleepable: bool = False
    func_info: tuple[FuncInfo, ...] = ()  # insn_off in instructions, as BPF_PROG_LOAD wants
    line_info: tuple[LineInfo, ...] = ()


@dataclass(frozen=True)
class ElfImage(Image):
    """An :class:`Image` loaded from an ELF object, with what else the object held."""

    path: str = "<bytes>"
    object_name: str = ""
    license: str = ""
    kern_version: int | None = None
    btf: Btf | None = None
    btf_blob: bytes = b""  # .BTF after libbpf's DATASEC fix-up: what BTF_LOAD would get
    btf_ext: BtfExt | None = None
    info: dict[str, ProgramInfo] = field(default_factory=dict)
    relocations: tuple[Relocation, ...] = ()
    map_sections: dict[str, str] = field(default_factory=dict)  # map name -> ELF section it came from


# --- Loading ------------------------------------------------------------------------------------

#: Exceptions pyelftools (and the struct reads under it) raise on malformed input; turned into
#: :class:`ElfError` at the boundary.
_PARSE_ERRORS = (ELFError, ELFParseError, ELFRelocationError, ConstructError, struct.error, KeyError,
                 IndexError, ValueError, ZeroDivisionError, UnicodeDecodeError, OverflowError, EOFError)


def load_elf(source: str | Path | bytes | bytearray | memoryview, *, name: str | None = None) -> ElfImage:
    """Load a BPF ELF object (a path or its bytes) as libbpf would (module docstring).

    ``name`` is the object name for the global data maps' names (default: from the file name,
    ``obj`` for bytes). Raises :class:`ElfError`, one line naming the file and section/symbol.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        data, label = bytes(source), name or "<bytes>"
    else:
        label = str(source)
        try:
            data = Path(source).read_bytes()
        except OSError as e:
            raise ElfError(f"cannot read: {e.strerror or e}", file=label) from None
    loader = _Loader(data, label, name or (object_name(label) if label != "<bytes>" else "obj"))
    try:
        return loader.load()
    except ElfError:
        raise
    except BpfCheckError as e:  # e.g. EncodingError from a mangled instruction
        raise ElfError(f"{loader.where}: {e.message}", file=label) from None
    except _PARSE_ERRORS as e:
        text = " ".join(str(e).split()) or type(e).__name__
        raise ElfError(f"{loader.where}: malformed ELF ({type(e).__name__}: {text[:200]})",
                       file=label) from None
    except RecursionError:
        raise ElfError(f"{loader.where}: malformed ELF (nesting too deep)", file=label) from None


@dataclass
class _Sym:
    """A symbol table entry, with pyelftools' special section indexes (SHN_UNDEF ...) kept as text."""

    index: int
    name: str
    type: str  # STT_FUNC, STT_OBJECT, STT_SECTION, ...
    bind: str  # STB_GLOBAL, STB_LOCAL, STB_WEAK
    visibility: str
    shndx: int | str
    value: int
    size: int


@dataclass
class _Func:
    """A function symbol's code: ``count`` instructions from ``start`` in section ``sec``."""

    name: str
    sec: int
    sec_name: str
    start: int
    count: int
    is_text: bool


@dataclass
class _Rel:
    index: int  # position in its relocation section (libbpf's "relo #N")
    type: int
    sym: _Sym


@dataclass
class _MapDef:
    """A map being defined: its spec fields, where it lives, what initialises it."""

    name: str
    sec: int
    offset: int  # in its ELF section
    size: int
    type: int = 0
    key_size: int = 0
    value_size: int = 0
    max_entries: int = 0
    flags: int = 0
    inner: MapSpec | None = None
    values_offset: int | None = None  # byte offset of the `values` member in the definition
    init: bytes | None = None  # global data: the section's bytes (None: zero-filled)


class _Loader:
    """One load of one object: every step of libbpf's ``bpf_object_open`` that bpfcheck models."""

    def __init__(self, data: bytes, label: str, obj_name: str) -> None:
        self.data = data
        self.label = label
        self.obj_name = obj_name
        self.where = "ELF header"
        self.sections: list[Section] = []
        self.names: list[str] = []
        self.symbols: list[_Sym] = []
        self.funcs: list[_Func] = []
        self.relos: dict[int, dict[int, _Rel]] = {}
        self.maps: list[_MapDef] = []
        self.map_at: dict[tuple[int, int], int] = {}  # (section, offset) -> map index
        self.btf: Btf | None = None
        self.text_sec: int | None = None

    def fail(self, message: str) -> ElfError:
        return ElfError(" ".join(message.split()), file=self.label)

    # -- the ELF container --

    def _check_header(self) -> None:
        """The checks libbpf's ``bpf_object__elf_init`` makes (magic, class, byte order, type,
        machine), plus the bounds pyelftools does not check."""
        d = self.data
        if len(d) < 4 or d[:4] != b"\x7fELF":
            raise self.fail("not an ELF file (no \\x7fELF magic)")
        if len(d) < 64:
            raise self.fail(f"truncated ELF header ({len(d)} bytes, a 64-bit header has 64)")
        if d[4] != 2:
            raise self.fail(f"not a 64-bit ELF object (EI_CLASS {d[4]})")
        if d[5] != 1:
            raise self.fail(f"not a little-endian ELF object (EI_DATA {d[5]}); BPF objects for this "
                            "host are little-endian")
        e_type, e_machine = struct.unpack_from("<HH", d, 16)
        if e_machine != EM_BPF:
            raise self.fail(f"e_machine {e_machine} is not EM_BPF ({EM_BPF}): not a BPF object")
        if e_type != ET_REL:
            raise self.fail(f"e_type {e_type} is not ET_REL: libbpf loads relocatable objects only")
        shoff, = struct.unpack_from("<Q", d, 40)
        shentsize, shnum, shstrndx = struct.unpack_from("<HHH", d, 58)
        if shnum == 0:
            raise self.fail("no section header table (e_shnum 0)")
        if shentsize != 64:
            raise self.fail(f"e_shentsize {shentsize} is not 64")
        if shoff + shnum * shentsize > len(d):
            raise self.fail(f"section header table truncated (ends at byte {shoff + shnum * shentsize}, "
                            f"the file has {len(d)})")
        if shstrndx >= shnum:
            raise self.fail(f"e_shstrndx {shstrndx} is not a section (there are {shnum})")

    def _raw_section_names(self) -> list[str]:
        """Section names straight from the headers and ``.shstrtab`` (so that an error raised by
        pyelftools while it builds a section can still name it)."""
        d = self.data
        shoff, = struct.unpack_from("<Q", d, 40)
        shnum, shstrndx = struct.unpack_from("<HH", d, 60)
        headers = [_SHDR.unpack_from(d, shoff + _SHDR.size * i) for i in range(shnum)]
        str_off, str_size = headers[shstrndx][4], headers[shstrndx][5]
        strtab = d[str_off:str_off + str_size] if str_off < len(d) else b""
        return [_cstr(strtab, h[0], "utf-8") for h in headers]

    def _read_sections(self, elf: ELFFile) -> None:
        raw_names = self._raw_section_names()
        for i in range(elf.num_sections()):
            self.where = f"section #{i} '{raw_names[i]}'"
            sec = elf.get_section(i)
            name = sec.name
            self.where = f"section '{name}'"
            size, off = sec["sh_size"], sec["sh_offset"]
            if sec["sh_type"] != "SHT_NOBITS" and off + size > len(self.data):
                raise self.fail(f"section '{name}' is truncated (ends at byte {off + size}, the file "
                                f"has {len(self.data)})")
            self.sections.append(sec)
            self.names.append(name)

    def _bytes(self, i: int) -> bytes:
        """A section's contents; SHT_NOBITS sections read as zeros."""
        sec = self.sections[i]
        if sec["sh_type"] == "SHT_NOBITS":
            if sec["sh_size"] > MAX_NOBITS_SIZE:
                raise self.fail(f"section '{self.names[i]}': size {sec['sh_size']} is too large")
            return bytes(sec["sh_size"])
        return bytes(sec.data())

    def _is_exec(self, i: int) -> bool:
        sec = self.sections[i]
        return sec["sh_type"] == "SHT_PROGBITS" and bool(sec["sh_flags"] & SHF_EXECINSTR)

    def _read_symbols(self) -> None:
        tabs = [i for i, s in enumerate(self.sections) if isinstance(s, SymbolTableSection)
                and s["sh_type"] == "SHT_SYMTAB"]
        if len(tabs) != 1:
            raise self.fail(f"{'no' if not tabs else 'more than one'} symbol table (libbpf needs "
                            "exactly one)")
        tab = self.sections[tabs[0]]
        assert isinstance(tab, SymbolTableSection)
        self.where = f"symbol table '{self.names[tabs[0]]}'"
        if tab["sh_entsize"] != 24:
            raise self.fail(f"symbol table '{self.names[tabs[0]]}' has sh_entsize {tab['sh_entsize']}, "
                            "not 24")
        for n, entry in enumerate(tab.iter_symbols()):
            self.symbols.append(_sym(n, entry))
        for sym in self.symbols:
            if isinstance(sym.shndx, int) and sym.shndx >= len(self.sections):
                raise self.fail(f"symbol '{sym.name}' (#{sym.index}) is in section #{sym.shndx}, which does "
                                "not exist")

    # -- programs and subprograms --

    def _collect_functions(self) -> None:
        """``bpf_object__add_programs``: split executable sections at their function symbols."""
        for i in range(len(self.sections)):
            if not self._is_exec(i) or not self.sections[i]["sh_size"]:
                continue
            name = self.names[i]
            self.where = f"section '{name}'"
            size = self.sections[i]["sh_size"]
            if size % INSN_SIZE:
                raise self.fail(f"section '{name}': size {size} is not a multiple of {INSN_SIZE}")
            if name == TEXT:
                self.text_sec = i
            found = False
            for s in sorted((s for s in self.symbols if s.shndx == i and s.type == "STT_FUNC"),
                            key=lambda s: s.value):
                found = True
                if s.value % INSN_SIZE or s.size % INSN_SIZE or not s.size:
                    raise self.fail(f"section '{name}': function '{s.name}' at offset {s.value} size "
                                    f"{s.size} is not whole instructions")
                if s.value + s.size > size:
                    raise self.fail(f"section '{name}': function '{s.name}' crosses the section end")
                if name != TEXT and s.bind == "STB_LOCAL":
                    raise self.fail(f"section '{name}': program '{s.name}' is static, which libbpf does "
                                    "not support")
                self.funcs.append(_Func(s.name, i, name, s.value // INSN_SIZE, s.size // INSN_SIZE,
                                        name == TEXT))
            if not found:
                raise self.fail(f"section '{name}' holds code but no function symbol")

    def _collect_relocations(self) -> list[int]:
        """Relocation sections for code (``bpf_object__collect_prog_relos``); returns the indexes
        of the ``.rel.maps`` sections. Relocations of other sections (.BTF, DWARF) are not applied,
        as in libbpf."""
        maps_rel: list[int] = []
        for i, sec in enumerate(self.sections):
            kind = sec["sh_type"]
            if kind not in ("SHT_REL", "SHT_RELA"):
                continue
            target = sec["sh_info"]
            self.where = f"section '{self.names[i]}'"
            if not 0 < target < len(self.sections):
                raise self.fail(f"relocation section '{self.names[i]}' applies to section #{target}, "
                                "which does not exist")
            if self.names[target] == BTF_MAPS_SEC and kind == "SHT_REL":
                maps_rel.append(i)
                continue
            if not self._is_exec(target):
                continue
            if kind == "SHT_RELA":
                raise self.fail(f"relocation section '{self.names[i]}' is SHT_RELA; BPF objects use SHT_REL")
            table = self.relos.setdefault(target, {})
            size = self.sections[target]["sh_size"]
            for n, (off, rtype, sym) in enumerate(self._iter_relocs(i)):
                where = f"section '{self.names[target]}': relocation #{n}"
                if off % INSN_SIZE or off >= size:
                    raise self.fail(f"{where}: offset {off} is not an instruction of the section")
                table[off // INSN_SIZE] = _Rel(n, rtype, sym)
        return maps_rel

    def _iter_relocs(self, i: int) -> Iterator[tuple[int, int, _Sym]]:
        sec = self.sections[i]
        if not isinstance(sec, RelocationSection):
            raise self.fail(f"section '{self.names[i]}' is not a relocation section pyelftools can read")
        if sec["sh_entsize"] != 16:
            raise self.fail(f"relocation section '{self.names[i]}' has sh_entsize {sec['sh_entsize']}, "
                            "not 16")
        for n, rel in enumerate(sec.iter_relocations()):
            idx = rel["r_info_sym"]
            if idx >= len(self.symbols) or idx == 0:
                raise self.fail(f"section '{self.names[sec['sh_info']]}': relocation #{n} against unknown "
                                f"symbol #{idx} (the symbol table has {len(self.symbols)})")
            yield rel["r_offset"], rel["r_info_type"], self.symbols[idx]

    def _text_func_at(self, insn: int, prog: str, what: str) -> _Func:
        for f in self.funcs:
            if f.is_text and f.start == insn:
                return f
        if self.text_sec is None:
            raise self.fail(f"program '{prog}': {what} but there is no .text section")
        raise self.fail(f"program '{prog}': {what} targets .text instruction {insn}, which is not the "
                        "start of a function")

    def _link(self, main: _Func, raw: dict[int, list[RawInsn]], applied: list[Relocation]
              ) -> tuple[list[RawInsn], list[tuple[_Func, int]]]:
        """One program's code, as ``bpf_object__reloc_code`` builds it: its own instructions, then
        every .text function it reaches, each appended once, depth first in the order the calls
        are met (libbpf appends a subprogram and relocates it before going on); every relocation
        applied. Also returns the placed subprograms (function, instruction index), in order."""
        out = raw[main.sec][main.start:main.start + main.count]
        placed: dict[int, int] = {}  # .text start -> offset in `out`
        placements: list[tuple[_Func, int]] = []
        fresh: list[tuple[_Func, int]] = []  # appended by the instruction just relocated

        def place(f: _Func) -> int:
            if f.start not in placed:
                placed[f.start] = len(out)
                placements.append((f, len(out)))
                fresh.append((f, len(out)))
                out.extend(raw[f.sec][f.start:f.start + f.count])
            return placed[f.start]

        stack: list[tuple[_Func, int, int]] = [(main, 0, 0)]  # function, its offset, next instruction
        while stack:
            func, base, local = stack.pop()
            while local < func.count:
                local += self._reloc_insn(main, func, base, local, out, place, applied)
                if fresh:  # relocate the new subprogram first, then come back
                    stack.append((func, base, local))
                    sub, off = fresh.pop()
                    stack.append((sub, off, 0))
                    break
        return out, placements

    def _reloc_insn(self, main: _Func, func: _Func, base: int, local: int, out: list[RawInsn],
                    place: Callable[[_Func], int], applied: list[Relocation]) -> int:
        """Relocate the instruction ``local`` of ``func`` (at ``out[base + local]``); returns its
        size in slots."""
        pc = base + local
        insn = out[pc]
        sec_insn = func.start + local
        rel = self.relos.get(func.sec, {}).get(sec_insn)
        where = f"section '{func.sec_name}' insn {sec_insn}"
        self.where = where
        if insn.opcode == OPCODE_LDDW:
            if local + 1 >= func.count:
                raise self.fail(f"{where}: lddw is missing its second slot")
            if rel is not None:
                out[pc], out[pc + 1] = self._reloc_lddw(main, func, pc, sec_insn, insn, out[pc + 1], rel,
                                                        place, applied)
            return 2
        if insn.opcode == OPCODE_CALL and insn.src == BPF_PSEUDO_CALL:
            if rel is not None:
                self._check_type(rel, R_BPF_64_32, func, sec_insn, "a call")
                sym = rel.sym
                if self.text_sec is None or sym.shndx != self.text_sec:
                    raise self.fail(f"{where}: call relocation against '{sym.name}' in section "
                                    f"{self._sec_label(sym.shndx)}, not .text")
                if sym.value % INSN_SIZE:
                    raise self.fail(f"{where}: call relocation against '{sym.name}' at offset {sym.value}, "
                                    "not an instruction")
                target = sym.value // INSN_SIZE + insn.imm + 1
            elif func.is_text:  # a call within .text needs no relocation: pc-relative in the section
                target = sec_insn + insn.imm + 1
            else:
                raise self.fail(f"{where}: bpf-to-bpf call without a relocation outside .text")
            sub = self._text_func_at(target, main.name, f"the call at {where}")
            off = place(sub)
            out[pc] = replace(insn, imm=off - pc - 1)
            if rel is not None:
                applied.append(Relocation(func.sec_name, sec_insn, rel.type, self._sym_label(rel.sym), "call",
                                          sub.name))
        elif rel is not None:
            raise self.fail(f"{where}: relocation #{rel.index} against '{rel.sym.name}' is on an "
                            f"instruction with opcode {insn.opcode:#04x}, neither lddw nor call")
        return 1

    def _check_type(self, rel: _Rel, want: int, func: _Func, sec_insn: int, what: str) -> None:
        if rel.type != want:
            name = RELOC_NAMES.get(rel.type, f"type {rel.type}")
            raise self.fail(f"section '{func.sec_name}' insn {sec_insn}: unsupported relocation {name} "
                            f"against '{rel.sym.name}' on {what} (expected {RELOC_NAMES[want]})")

    def _sym_label(self, sym: _Sym) -> str:
        """A symbol as ``llvm-objdump -r`` names it: a section symbol by its section's name."""
        if sym.type == "STT_SECTION" and isinstance(sym.shndx, int) and 0 <= sym.shndx < len(self.names):
            return self.names[sym.shndx]
        return sym.name

    def _sec_label(self, shndx: int | str) -> str:
        if isinstance(shndx, int) and 0 <= shndx < len(self.names):
            return f"'{self.names[shndx]}'"
        return str(shndx)

    def _reloc_lddw(self, main: _Func, func: _Func, pc: int, sec_insn: int, insn: RawInsn, second: RawInsn,
                    rel: _Rel, place: Callable[[_Func], int], applied: list[Relocation]
                    ) -> tuple[RawInsn, RawInsn]:
        """``bpf_program__record_reloc`` + ``bpf_object__relocate_data`` for one lddw."""
        self._check_type(rel, R_BPF_64_64, func, sec_insn, "an lddw")
        sym = rel.sym
        where = f"section '{func.sec_name}' insn {sec_insn}"
        if sym.shndx == "SHN_UNDEF":
            raise self.fail(f"{where}: '{sym.name}' is an extern (__ksym/__kconfig), which bpfcheck does "
                            "not resolve")
        if not isinstance(sym.shndx, int) or sym.shndx == 0:
            raise self.fail(f"{where}: relocation against '{sym.name}' in special section {sym.shndx} "
                            "(an uninitialised global?)")
        sec_name = self.names[sym.shndx]
        if self._is_exec(sym.shndx):  # a callback's address (RELO_SUBPROG_ADDR)
            if sym.shndx != self.text_sec:
                raise self.fail(f"{where}: address of '{sym.name}' in '{sec_name}': subprograms must be "
                                "in .text")
            if sym.value % INSN_SIZE or insn.imm % INSN_SIZE:
                raise self.fail(f"{where}: address of '{sym.name}' at offset {sym.value}+{insn.imm} is "
                                "not an instruction")
            sub = self._text_func_at((sym.value + insn.imm) // INSN_SIZE, main.name, f"the lddw at {where}")
            off = place(sub)
            applied.append(Relocation(func.sec_name, sec_insn, rel.type, self._sym_label(sym), "func",
                                      sub.name))
            return (RawInsn(OPCODE_LDDW, insn.dst, BPF_PSEUDO_FUNC, 0, off - pc - 1), RawInsn(0, 0, 0, 0, 0))
        key = (sym.shndx, sym.value)
        defining = next((m for m in self.maps if m.sec == sym.shndx), None)
        if defining is None:
            raise self.fail(f"{where}: relocation against '{sym.name}' in section '{sec_name}', which holds "
                            "no map, global data or code")
        if defining.init is not None or sec_name not in (BTF_MAPS_SEC, LEGACY_MAPS_SEC):  # RELO_DATA
            index = self.maps.index(defining)
            addend = (insn.imm + sym.value) & 0xFFFFFFFF
            applied.append(Relocation(func.sec_name, sec_insn, rel.type, self._sym_label(sym), "map_value",
                                      defining.name, addend))
            return (RawInsn(OPCODE_LDDW, insn.dst, BPF_PSEUDO_MAP_IDX_VALUE, insn.off, index),
                    replace(second, imm=_s32(addend)))
        if key not in self.map_at:
            raise self.fail(f"{where}: '{sym.name}' at offset {sym.value} of '{sec_name}' is not a map")
        index = self.map_at[key]
        applied.append(Relocation(func.sec_name, sec_insn, rel.type, sym.name, "map", self.maps[index].name))
        return (RawInsn(OPCODE_LDDW, insn.dst, BPF_PSEUDO_MAP_IDX, insn.off, index), replace(second, imm=0))

    # -- BTF --

    def _load_btf(self) -> tuple[Btf | None, bytes, BtfExt | None]:
        i = self._find(".BTF")
        if i is None:
            return None, b"", None
        self.where = "section '.BTF'"
        blob = self._fixup_btf(self._bytes(i))
        try:
            btf = btf_parse(blob)
        except BtfError as e:
            raise self.fail(f"section '.BTF': {e.message}") from None
        ext = None
        j = self._find(".BTF.ext")
        if j is not None:
            self.where = "section '.BTF.ext'"
            try:
                ext = btf_ext_parse(self._bytes(j))
            except BtfError as e:
                raise self.fail(f"section '.BTF.ext': {e.message}") from None
        return btf, blob, ext

    def _find(self, name: str) -> int | None:
        for i, n in enumerate(self.names):
            if n == name:
                return i
        return None

    def _fixup_btf(self, blob: bytes) -> bytes:
        """libbpf ``btf_fixup_datasec``: clang leaves DATASEC sizes and VAR offsets 0; the size is
        the ELF section's, each VAR's offset its symbol's value; VARs are then sorted by offset.
        A VAR whose symbol is STV_HIDDEN (or local) becomes static, as libbpf does."""
        if len(blob) < 24:
            raise self.fail(f"section '.BTF': {len(blob)} bytes, shorter than the BTF header")
        magic, _version, _flags, hdr_len, type_off, type_len, str_off, str_len = struct.unpack_from(
            "<HBBIIIII", blob)
        if (magic != 0xEB9F or hdr_len < 24
                or hdr_len + max(type_off + type_len, str_off + str_len) > len(blob)):
            return blob  # let the BTF parser report what is wrong
        out = bytearray(blob)
        strings = blob[hdr_len + str_off:hdr_len + str_off + str_len]
        pos, end = hdr_len + type_off, hdr_len + type_off + type_len
        var_at: dict[int, int] = {}  # type id -> position of its VAR record
        datasecs: list[tuple[int, int]] = []  # (position, vlen)
        tid = 1
        while pos + 12 <= end:
            name_off, info = struct.unpack_from("<II", blob, pos)
            kind, vlen = (info >> 24) & 0x1F, info & 0xFFFF
            extra = _btf_extra(kind, vlen)
            if extra is None:
                return blob
            if kind == 14:  # VAR
                var_at[tid] = pos
            elif kind == 15:  # DATASEC
                datasecs.append((pos, vlen))
            pos += 12 + extra
            tid += 1
        for dpos, vlen in datasecs:
            name = _cstr(strings, struct.unpack_from("<I", blob, dpos)[0])
            if struct.unpack_from("<I", blob, dpos + 8)[0]:
                continue  # already fixed (a linked object)
            sec = self._find(name)
            if sec is None:
                raise self.fail(f"section '.BTF': DATASEC '{name}' has no ELF section (externs such as "
                                ".kconfig/.ksyms are not supported)")
            size = self.sections[sec]["sh_size"]
            if size > 0xFFFFFFFF:
                raise self.fail(f"section '.BTF': section '{name}' of {size} bytes is too large for a "
                                "DATASEC")
            struct.pack_into("<I", out, dpos + 8, size)
            vsis = []
            for k in range(vlen):
                vtype, _off, vsize = struct.unpack_from("<III", blob, dpos + 12 + 12 * k)
                vpos = var_at.get(vtype)
                if vpos is None:
                    raise self.fail(f"section '.BTF': DATASEC '{name}' entry {k} is not a VAR")
                vname = _cstr(strings, struct.unpack_from("<I", blob, vpos)[0])
                sym = next((s for s in self.symbols if s.shndx == sec and s.name == vname
                            and s.type == "STT_OBJECT"), None)
                if sym is None:
                    raise self.fail(f"section '.BTF': variable '{vname}' of DATASEC '{name}' has no symbol")
                if sym.value > 0xFFFFFFFF:
                    raise self.fail(f"section '.BTF': variable '{vname}' at offset {sym.value} is beyond "
                                    "what a DATASEC can hold")
                if sym.visibility == "STV_HIDDEN" or sym.bind == "STB_LOCAL":
                    struct.pack_into("<I", out, vpos + 12, VAR_STATIC)
                vsis.append((vtype, sym.value, vsize))
            for k, vsi in enumerate(sorted(vsis, key=lambda v: v[1])):
                struct.pack_into("<III", out, dpos + 12 + 12 * k, *vsi)
        return bytes(out)

    def _btf_maps(self) -> None:
        """``bpf_object__init_user_btf_maps`` / ``parse_btf_map_def`` for every VAR of ``.maps``."""
        sec = self._find(BTF_MAPS_SEC)
        if sec is None:
            return
        self.where = "section '.maps'"
        if self.btf is None:
            raise self.fail("section '.maps' defines maps with BTF, but the object has no .BTF")
        ds_id = self.btf.find(BTF_MAPS_SEC, Datasec)
        ds = self.btf.type_by_id(ds_id)
        if not isinstance(ds, Datasec):
            raise self.fail("section '.maps' has no DATASEC '.maps' in .BTF")
        for vsi in ds.vars:
            var = self.btf.type_by_id(vsi.type)
            assert isinstance(var, Var)
            self.where = f"map '{var.name}'"
            m = _MapDef(var.name, sec, vsi.offset, vsi.size)
            self._parse_map_def(m, var.type, var.name)
            self.map_at[(sec, vsi.offset)] = len(self.maps)
            self.maps.append(m)

    def _parse_map_def(self, m: _MapDef, type_id: int, label: str) -> None:
        btf = self.btf
        assert btf is not None
        t = btf.type_by_id(btf.skip_modifiers(type_id))
        if not isinstance(t, Struct) or t.kind.name != "STRUCT":
            raise self.fail(f"map '{label}': its definition is not a struct")
        for member in t.members:
            mt = btf.type_by_id(btf.skip_modifiers(member.type))
            if member.name in ("type", "max_entries", "key_size", "value_size", "map_flags", "numa_node",
                               "map_extra", "pinning"):
                value = self._map_int(mt, label, member.name)
                if member.name == "type":
                    m.type = value
                elif member.name == "max_entries":
                    m.max_entries = value
                elif member.name == "map_flags":
                    m.flags = value
                elif member.name in ("key_size", "value_size"):
                    self._set_size(m, member.name, value, label)
            elif member.name in ("key", "value"):
                if not isinstance(mt, Ptr):
                    raise self.fail(f"map '{label}': {member.name} spec is not a pointer")
                size = btf.resolve_size(mt.type)
                if size < 0:
                    raise self.fail(f"map '{label}': cannot determine the size of the {member.name} type")
                self._set_size(m, f"{member.name}_size", size, label)
            elif member.name == "values":
                self._map_values(m, member, mt, label)
            else:
                raise self.fail(f"map '{label}': unknown field '{member.name}'")

    def _map_int(self, t: Any, label: str, field_name: str) -> int:
        """libbpf ``get_map_field_int``: ``int (*name)[N]`` -> N."""
        btf = self.btf
        assert btf is not None
        if not isinstance(t, Ptr):
            raise self.fail(f"map '{label}': attr '{field_name}': expected PTR, got {type(t).__name__}")
        arr = btf.type_by_id(t.type)
        if not isinstance(arr, BtfArray):
            raise self.fail(f"map '{label}': attr '{field_name}': type [{t.type}] is not an array")
        return arr.nelems

    def _set_size(self, m: _MapDef, attr: str, size: int, label: str) -> None:
        old = getattr(m, attr)
        if old and old != size:
            raise self.fail(f"map '{label}': conflicting {attr.replace('_', ' ')} {old} != {size}")
        setattr(m, attr, size)

    def _map_values(self, m: _MapDef, member: Any, t: Any, label: str) -> None:
        """The ``values`` field: a prog array's programs or a map of maps' inner definition."""
        btf = self.btf
        assert btf is not None
        is_prog_array = m.type == MapType.PROG_ARRAY
        is_map_in_map = m.type in (MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS)
        if not (is_prog_array or is_map_in_map):
            raise self.fail(f"map '{label}': 'values' needs a prog array or a map of maps")
        self._set_size(m, "value_size", 4, label)
        if not isinstance(t, BtfArray) or t.nelems:
            raise self.fail(f"map '{label}': 'values' is not a flexible array")
        ptr = btf.type_by_id(btf.skip_modifiers(t.type))
        if not isinstance(ptr, Ptr):
            raise self.fail(f"map '{label}': 'values' is not an array of pointers")
        target = btf.type_by_id(btf.skip_modifiers(ptr.type))
        m.values_offset = member.bit_offset // 8
        if is_prog_array:
            if not isinstance(target, BtfFuncProto):
                raise self.fail(f"map '{label}': prog-array values must point to a function prototype")
            return
        inner = _MapDef(f"{label}.inner", m.sec, 0, 0)
        self._parse_map_def(inner, ptr.type, f"{label}.inner")
        m.inner = MapSpec(inner.name, inner.type, inner.key_size, inner.value_size, inner.max_entries,
                          inner.flags)

    def _legacy_maps(self) -> None:
        """``maps`` section: each symbol is a ``struct bpf_map_def`` (libbpf before 1.0)."""
        sec = self._find(LEGACY_MAPS_SEC)
        if sec is None:
            return
        self.where = "section 'maps'"
        data = self._bytes(sec)
        for s in sorted((s for s in self.symbols if s.shndx == sec and s.type != "STT_SECTION"
                         and s.name), key=lambda s: s.value):
            if s.value + LEGACY_MAP_DEF.size > len(data):
                raise self.fail(f"section 'maps': map '{s.name}' at offset {s.value} is shorter than "
                                f"struct bpf_map_def ({LEGACY_MAP_DEF.size} bytes)")
            mtype, ksize, vsize, nmax, flags = LEGACY_MAP_DEF.unpack_from(data, s.value)
            self.map_at[(sec, s.value)] = len(self.maps)
            self.maps.append(_MapDef(s.name, sec, s.value, LEGACY_MAP_DEF.size, mtype, ksize, vsize, nmax,
                                     flags))

    def _data_maps(self) -> None:
        """``bpf_object__init_global_data_maps``: one single-element array per data section."""
        for i, name in enumerate(self.names):
            sec = self.sections[i]
            kind = sec["sh_type"]
            is_data = kind == "SHT_PROGBITS" and (name in (".data", ".rodata")
                                                  or name.startswith((".data.", ".rodata.")))
            is_bss = kind == "SHT_NOBITS" and (name == ".bss" or name.startswith(".bss."))
            if not (is_data or is_bss) or not sec["sh_size"]:
                continue
            self.where = f"section '{name}'"
            if is_bss and sec["sh_size"] > MAX_NOBITS_SIZE:
                raise self.fail(f"section '{name}': size {sec['sh_size']} is too large")
            flags = BPF_F_RDONLY_PROG if name.startswith(".rodata") else 0
            if self._mmapable(name):
                flags |= BPF_F_MMAPABLE
            self.maps.append(_MapDef(internal_map_name(self.obj_name, name), i, 0, sec["sh_size"],
                                     MapType.ARRAY, 4, sec["sh_size"], 1, flags,
                                     init=None if is_bss else self._bytes(i)))

    def _mmapable(self, section: str) -> bool:
        """libbpf ``map_is_mmapable``: a DATASEC for the section with at least one global VAR."""
        if self.btf is None:
            return False
        ds = self.btf.type_by_id(self.btf.find(section, Datasec))
        if not isinstance(ds, Datasec):
            return False
        return any(isinstance(v := self.btf.type_by_id(vsi.type), Var) and v.linkage != VAR_STATIC
                   for vsi in ds.vars)

    def _map_relos(self, rel_secs: list[int], programs: dict[tuple[int, int], str]) -> dict[str, MapInit]:
        """``bpf_object__collect_map_relos``: ``.values`` initialisers of prog arrays and maps of
        maps (``R_BPF_64_ABS64`` relocations in ``.rel.maps``)."""
        slots: dict[str, list[tuple[int, str]]] = {}
        inner: dict[str, list[tuple[bytes, str]]] = {}
        for i in rel_secs:
            for n, (off, rtype, sym) in enumerate(self._iter_relocs(i)):
                where = f".maps relocation #{n}"
                self.where = where
                if rtype != R_BPF_64_ABS64:
                    rname = RELOC_NAMES.get(rtype, f"type {rtype}")
                    raise self.fail(f"{where}: unsupported relocation {rname} against '{sym.name}' "
                                    "(expected R_BPF_64_ABS64)")
                m = next((m for m in self.maps if m.sec == self.sections[i]["sh_info"]
                          and m.offset <= off and off + PTR_SIZE <= m.offset + m.size), None)
                if m is None or m.values_offset is None:
                    raise self.fail(f"{where}: offset {off} is not in the 'values' of a map")
                moff = off - m.offset - m.values_offset
                if moff < 0 or moff % PTR_SIZE:
                    raise self.fail(f"{where}: offset {off} is not a slot of map '{m.name}'")
                slot = moff // PTR_SIZE
                if slot >= m.max_entries:
                    raise self.fail(f"{where}: slot {slot} of map '{m.name}' is beyond max_entries "
                                    f"{m.max_entries}")
                if m.type == MapType.PROG_ARRAY:
                    key = (sym.shndx, sym.value // INSN_SIZE) if isinstance(sym.shndx, int) else None
                    prog = programs.get(key) if key is not None and sym.type == "STT_FUNC" else None
                    if prog is None:
                        raise self.fail(f"{where}: '{sym.name}' in slot {slot} of '{m.name}' is not a "
                                        "program")
                    slots.setdefault(m.name, []).append((slot, prog))
                else:
                    target = self.map_at.get((sym.shndx, sym.value)) if isinstance(sym.shndx, int) else None
                    if target is None:
                        raise self.fail(f"{where}: '{sym.name}' in slot {slot} of '{m.name}' is not a map")
                    inner.setdefault(m.name, []).append((slot.to_bytes(4, "little"), self.maps[target].name))
        return {name: MapInit(slots=tuple(sorted(slots.get(name, ()))), inner=tuple(inner.get(name, ())))
                for name in sorted(set(slots) | set(inner))}

    def _ext_records(self, ext: BtfExt | None, btf: Btf | None, func: _Func, at: int
                     ) -> tuple[list[FuncInfo], list[LineInfo]]:
        """The .BTF.ext records of ``func``'s code, as instruction indexes from ``at``."""
        if ext is None or btf is None:
            return [], []
        lo, hi = func.start * INSN_SIZE, (func.start + func.count) * INSN_SIZE
        fi: list[FuncInfo] = []
        li: list[LineInfo] = []
        for blocks, out in ((ext.func_info, fi), (ext.line_info, li)):
            for block in blocks:
                if _cstr(btf.strings, block.sec_name_off) != func.sec_name:
                    continue
                for r in block.records:
                    if lo <= r.insn_off < hi:
                        out.append(replace(r, insn_off=at + (r.insn_off - lo) // INSN_SIZE))  # type: ignore[arg-type]
        return fi, li

    # -- the whole load --

    def load(self) -> ElfImage:
        self._check_header()
        elf = ELFFile(io.BytesIO(self.data))
        self._read_sections(elf)
        self._read_symbols()
        license_text = ""
        kern_version = None
        for i, name in enumerate(self.names):
            if name == "license":  # libbpf: the licence string, up to its NUL
                license_text = self._bytes(i).split(b"\0", 1)[0].decode("latin-1")
            elif name == "version":  # libbpf: a u32 kernel version (ignored by kernels since 5.0)
                content = self._bytes(i)
                if len(content) != 4:
                    raise self.fail(f"section 'version': {len(content)} bytes, not 4")
                kern_version = int.from_bytes(content, "little")
        self._collect_functions()
        self.btf, btf_blob, btf_ext = self._load_btf()
        self._legacy_maps()
        self._btf_maps()
        self._data_maps()
        maps_rel = self._collect_relocations()

        mains = [f for f in self.funcs if not f.is_text]
        by_name: dict[str, _Func] = {}
        for f in mains:
            if f.name in by_name:
                raise self.fail(f"two programs are named '{f.name}'")
            by_name[f.name] = f
        raw: dict[int, list[RawInsn]] = {}
        for f in self.funcs:
            if f.sec not in raw:
                self.where = f"section '{f.sec_name}'"
                text = self._bytes(f.sec)
                raw[f.sec] = [RawInsn.from_bytes(text, k) for k in range(0, len(text), INSN_SIZE)]

        programs: list[Program] = []
        infos: dict[str, ProgramInfo] = {}
        applied: list[Relocation] = []
        for f in mains:
            self.where = f"program '{f.name}' (section '{f.sec_name}')"
            d = section_def(f.sec_name)
            if d is None:
                raise self.fail(f"program '{f.name}': section '{f.sec_name}' names no program type "
                                "bpfcheck models (libbpf: missing BPF prog type)")
            code, subs = self._link(f, raw, applied)
            self.where = f"program '{f.name}' (section '{f.sec_name}')"
            try:
                insns = decode_program(code)
            except EncodingError as e:
                raise self.fail(f"program '{f.name}' (section '{f.sec_name}'): {e.message}") from None
            target = f.sec_name.split("/", 1)[1] if "/" in f.sec_name else ""
            attach = f"{d.tramp}:{target}" if d.tramp and target else None
            programs.append(Program(f.name, tuple(insns), d.prog_type, attach))
            fi, li = self._ext_records(btf_ext, self.btf, f, 0)
            for fn, base in subs:
                sfi, sli = self._ext_records(btf_ext, self.btf, fn, base)
                fi += sfi
                li += sli
            infos[f.name] = ProgramInfo(f.name, f.sec_name, f.count, tuple(fn.name for fn, _ in subs),
                                        tuple(base for _, base in subs), d.expected_attach_type, target,
                                        d.sleepable, tuple(fi), tuple(li))
        if not programs:
            raise self.fail("no programs (no function in a program section)")

        prog_at = {(f.sec, f.start): f.name for f in mains}
        init = self._map_relos(maps_rel, prog_at)
        specs: list[MapSpec] = []
        for m in self.maps:
            specs.append(MapSpec(m.name, m.type, m.key_size, m.value_size, m.max_entries, m.flags, m.inner))
            if m.init is not None:
                init[m.name] = MapInit(entries=((bytes(4), m.init),))
        names = [m.name for m in self.maps]
        dup = next((n for n in names if names.count(n) > 1), None)
        if dup is not None:
            raise self.fail(f"two maps are named '{dup}'")
        return ElfImage(programs=tuple(programs), maps=tuple(specs), init=init, entry=None,
                        path=self.label, object_name=self.obj_name, license=license_text,
                        kern_version=kern_version, btf=self.btf, btf_blob=btf_blob, btf_ext=btf_ext,
                        info=infos, relocations=tuple(applied),
                        map_sections={m.name: self.names[m.sec] for m in self.maps})


def _sym(index: int, s: Symbol) -> _Sym:
    info, other = s["st_info"], s["st_other"]
    return _Sym(index, s.name, str(info["type"]), str(info["bind"]), str(other["visibility"]), s["st_shndx"],
                s["st_value"], s["st_size"])


def _s32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


def _cstr(strings: bytes, off: int, encoding: str = "latin-1") -> str:
    """The NUL-terminated string at ``off`` of a string table ("" if ``off`` is outside it)."""
    if not 0 <= off < len(strings):
        return ""
    end = strings.find(b"\0", off)
    return strings[off:end if end >= 0 else len(strings)].decode(encoding, errors="replace")


def _btf_extra(kind: int, vlen: int) -> int | None:
    """Bytes after the 12-byte ``struct btf_type`` for each kind (include/uapi/linux/btf.h)."""
    # PTR FWD TYPEDEF VOLATILE CONST RESTRICT FUNC FLOAT TYPE_TAG
    if kind in (2, 7, 8, 9, 10, 11, 12, 16, 18):
        return 0
    if kind in (1, 14, 17):  # INT VAR DECL_TAG
        return 4
    if kind == 3:  # ARRAY
        return 12
    if kind in (4, 5, 15, 19):  # STRUCT UNION DATASEC ENUM64
        return 12 * vlen
    if kind in (6, 13):  # ENUM FUNC_PROTO
        return 8 * vlen
    return None


# --- Running an image on the interpreter ---------------------------------------------------------

def image_env(image: Image, *, mem: bytes | None = None, ncpus: int = 2) -> Environment:
    """An environment with every map of ``image`` created (index = position) and initialised:
    global data from the section bytes, prog-array slots by program name, maps of maps by inner
    map (what libbpf's ``bpf_object__create_maps`` / ``init_prog_array`` do). Raises
    :class:`ElfError` where the kernel would refuse a map."""
    from .maps import MapType, add_map

    can_tail_call = any(spec.type == MapType.PROG_ARRAY for spec in image.maps)
    env = Environment(standard_memory(mem, STACK_FRAMES if can_tail_call else MAX_CALL_FRAMES),
                      ncpus=ncpus)
    where = getattr(image, "path", "<image>")
    by_name = {}
    for spec in image.maps:
        try:
            by_name[spec.name] = add_map(env, spec)
        except MapError as e:
            raise ElfError(f"map '{spec.name}': {e.message}", file=where) from None
    for name, init in image.init.items():
        bmap = by_name[name]
        try:
            for key, value in init.entries:
                bmap.sys_update(key, value)
            for slot, prog in init.slots:
                bmap.set(slot, prog)  # type: ignore[attr-defined]
            for key, inner_name in init.inner:
                bmap.sys_update(key, (FD_BASE + image.map_index(inner_name)).to_bytes(4, "little"))
        except MapError as e:
            raise ElfError(f"map '{name}': {e.message}", file=where) from None
    return env


def run_image(image: Image, entry: str | None = None, *, env: Environment | None = None, r1: int = 0,
              r2: int = 0, budget: int | None = None) -> Outcome:
    """One run of ``entry`` (default: the image's entry, else its first program) on the interpreter,
    with ``env`` (default: a fresh :func:`image_env`). A program attached to a trampoline
    (fentry/fexit/fmod_ret) runs as ``BPF_PROG_TEST_RUN`` of a tracing program does, with every
    attached program of the image (:func:`reference_vm.trampoline.test_run_tracing`). Ring buffer
    records are consumed into ``outcome.ringbuf`` as libbpf's consumer would read them."""
    from . import trampoline
    from .interpreter import DEFAULT_BUDGET, run_programs
    from .maps import RingBufMap

    env = env if env is not None else image_env(image)
    name = entry or image.entry or image.programs[0].name
    prog = image.program(name)
    limit = budget or DEFAULT_BUDGET
    if prog.attach is not None:
        outcome = trampoline.test_run_tracing(image.programs, env, entry=name, budget=limit)
    else:
        outcome = run_programs([(p.name, p.insns) for p in image.programs], name, env, r1=r1, r2=r2,
                               budget=limit)
    for bmap in env.maps:
        if isinstance(bmap, RingBufMap):
            outcome.ringbuf[bmap.spec.name] = [rec.hex() for rec in bmap.consume()]
    return outcome


def program_insns(image: Image) -> dict[str, list[Insn | None]]:
    """Every program's decoded instructions by name (the form whole-program runs take)."""
    return {p.name: list(p.insns) for p in image.programs}
