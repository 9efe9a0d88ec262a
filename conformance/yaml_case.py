"""Reader for bpfcheck's whole-program case files (YAML), schema-checked with file:line errors.

The format is documented in ``docs/case-format.md``. A file holds one case (a mapping) or a
list of cases under ``cases:``. Every error names the file, the line of the offending node
and the field path (``cases[3].maps[0].type``), and is a
:class:`~reference_vm.errors.CaseFormatError`, never a YAML traceback.

The reader works on PyYAML's node graph (``yaml.compose``), not on plain Python values, so
that every value still knows its line.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from reference_vm.errors import AsmError, CaseFormatError, EncodingError

HEX = re.compile(r"^(?:[0-9a-fA-F]{2}(?:\s+|$))*$")
ERROR_RE = re.compile(r"^(ok|budget|fault(:[a-z_]+)?|rejected(:[a-z_]+)?)$")
MAP_TYPES = ("hash", "array", "prog_array", "percpu_hash", "percpu_array", "lru_hash",
             "array_of_maps", "hash_of_maps", "cgroup_storage", "ringbuf")


@dataclass
class Node:
    """A YAML value with where it came from."""

    value: Any
    line: int
    path: str


@dataclass
class Expectation:
    """What a run must produce. ``None`` fields are not checked."""

    r0: int | None = None
    error: str | None = None  # "ok", "fault", "fault:oob_read", "rejected", ...
    maps: dict[str, dict[str, str]] | None = None  # map -> key hex -> value hex (or slot -> name)
    ringbuf: dict[str, list[str]] | None = None  # map -> records (hex) as a consumer sees them
    trace: list[str] | None = None  # bpf_trace_printk lines
    mem: str | None = None  # input memory after the run, hex
    verifier: dict[str, Any] | None = None  # {verdict: accept|reject, errno: NAME, message: str}


@dataclass
class ProgramSpec:
    name: str
    asm: str
    asm_line: int
    prog_type: str = "raw"
    attach: str | None = None


@dataclass
class MapSpecText:
    name: str
    type: str
    key_size: int
    value_size: int
    max_entries: int
    flags: int = 0
    inner: str | None = None  # name of a map used as the inner-map template
    values: dict[int | str, str] = field(default_factory=dict)  # key (int or hex) -> value hex
    slots: dict[int, str] = field(default_factory=dict)  # prog_array index -> program name
    line: int = 0


@dataclass
class YamlCase:
    name: str
    path: str
    line: int
    programs: list[ProgramSpec]
    maps: list[MapSpecText]
    entry: str | None
    mem: bytes | None
    ctx: bytes | None
    expect: Expectation
    provenance: dict[str, str]
    description: str = ""
    topic: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    elf: str | None = None  # an `elf:` case's object (docs/elf.md), as written
    image: Any = None  # its reference_vm.elf.ElfImage: programs and maps come from it


class _Reader:
    def __init__(self, path: str) -> None:
        self.path = path

    def fail(self, node: Node | yaml.Node | None, message: str) -> CaseFormatError:
        line = node.line if isinstance(node, Node) else (node.start_mark.line + 1 if node else None)
        where = f"{node.path}: " if isinstance(node, Node) and node.path else ""
        return CaseFormatError(where + message, file=self.path, line=line)

    def wrap(self, node: yaml.Node, path: str) -> Node:
        """Turn a YAML node into plain values, keeping the line of every mapping and sequence."""
        line = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            out: dict[str, Node] = {}
            for k, v in node.value:
                if not isinstance(k, yaml.ScalarNode):
                    raise self.fail(k, f"{path}: a key must be a plain value")
                key = k.value
                if key in out:
                    raise self.fail(k, f"{path}: key {key!r} appears twice")
                out[key] = self.wrap(v, f"{path}.{key}" if path else key)
            return Node(out, line, path)
        if isinstance(node, yaml.SequenceNode):
            return Node([self.wrap(v, f"{path}[{i}]") for i, v in enumerate(node.value)], line, path)
        assert isinstance(node, yaml.ScalarNode)
        if node.style in ("|", ">"):  # a block scalar's text starts on the next line
            line += 1
        return Node(yaml.safe_load(yaml.serialize(node)) if node.tag != "tag:yaml.org,2002:str"
                    else node.value, line, path)

    # --- typed accessors -----------------------------------------------------------------

    def mapping(self, node: Node, allowed: set[str], required: frozenset[str] | set[str] = frozenset()
                ) -> dict[str, Node]:
        if not isinstance(node.value, dict):
            raise self.fail(node, f"expected a mapping, got {type(node.value).__name__}")
        unknown = set(node.value) - allowed
        if unknown:
            key = sorted(unknown)[0]
            raise self.fail(node.value[key], f"unknown field {key!r} (allowed: {', '.join(sorted(allowed))})")
        missing = required - set(node.value)
        if missing:
            raise self.fail(node, f"missing required field {sorted(missing)[0]!r}")
        return node.value

    def string(self, node: Node) -> str:
        if not isinstance(node.value, str):
            raise self.fail(node, f"expected a string, got {node.value!r}")
        return node.value

    def integer(self, node: Node, lo: int | None = None, hi: int | None = None) -> int:
        v = node.value
        if isinstance(v, str):
            try:
                v = int(v, 0)
            except ValueError:
                raise self.fail(node, f"expected an integer, got {node.value!r}") from None
        if not isinstance(v, int) or isinstance(v, bool):
            raise self.fail(node, f"expected an integer, got {node.value!r}")
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            raise self.fail(node, f"{v} is out of range [{lo}, {hi}]")
        return v

    def hexbytes(self, node: Node) -> bytes:
        text = self.string(node) if not isinstance(node.value, int) else f"{node.value:02x}"
        if not HEX.match(text.strip() + (" " if text.strip() else "")):
            raise self.fail(node, f"expected hex bytes like 'aa bb 01', got {text!r}")
        return bytes.fromhex(text)

    def seq(self, node: Node) -> list[Node]:
        if not isinstance(node.value, list):
            raise self.fail(node, f"expected a list, got {type(node.value).__name__}")
        return node.value


_CASE_FIELDS = {"name", "description", "topic", "prog_type", "programs", "maps", "entry", "mem", "ctx",
                "expect", "provenance", "options", "elf"}
_EXPECT_FIELDS = {"r0", "error", "maps", "ringbuf", "trace", "mem", "verifier"}
_PROVENANCE_FIELDS = {"kernel", "mode", "date", "recorded_by", "selftest", "rfc", "source", "note"}
_MAP_FIELDS = {"name", "type", "key_size", "value_size", "max_entries", "flags", "inner", "values", "slots"}
_PROG_FIELDS = {"name", "asm", "prog_type", "attach"}
U64 = (1 << 64) - 1


def _parse_case(r: _Reader, node: Node) -> YamlCase:
    f = r.mapping(node, _CASE_FIELDS, {"name", "expect", "provenance"})
    name = r.string(f["name"])
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise r.fail(f["name"], f"case name {name!r} may hold only letters, digits, '_', '.', '-'")
    image = None
    if "elf" in f:
        image, programs, maps = _elf_case(r, f)
    else:
        if "programs" not in f:
            raise r.fail(node, "missing required field 'programs'")
        default_type = r.string(f["prog_type"]) if "prog_type" in f else "raw"
        programs = _parse_programs(r, f["programs"], default_type)
        maps = [_parse_map(r, m) for m in r.seq(f["maps"])] if "maps" in f else []
    names = [m.name for m in maps]
    for m in maps:
        if names.count(m.name) > 1:
            raise r.fail(Node(None, m.line, f["maps"].path), f"map name {m.name!r} appears twice")
        for slot, prog in m.slots.items():
            if prog not in {p.name for p in programs}:
                raise r.fail(Node(None, m.line, f["maps"].path),
                             f"map {m.name!r} slot {slot}: no program named {prog!r}")
    entry = r.string(f["entry"]) if "entry" in f else None
    if entry is not None and entry not in {p.name for p in programs}:
        raise r.fail(f["entry"], f"entry {entry!r} is not one of the programs")
    prov = r.mapping(f["provenance"], _PROVENANCE_FIELDS)
    provenance = {k: str(v.value) for k, v in prov.items()}
    if not ({"kernel", "selftest", "rfc", "source"} & set(provenance)):
        raise r.fail(f["provenance"], "provenance needs one of kernel, selftest, rfc or source: "
                                      "expected values never come from bpfcheck itself")
    return YamlCase(
        name=name, path=r.path, line=node.line, programs=programs, maps=maps, entry=entry,
        mem=r.hexbytes(f["mem"]) if "mem" in f else None,
        ctx=r.hexbytes(f["ctx"]) if "ctx" in f else None,
        expect=_parse_expect(r, f["expect"]), provenance=provenance,
        description=r.string(f["description"]) if "description" in f else "",
        topic=r.string(f["topic"]) if "topic" in f else "",
        options=_parse_options(r, f["options"]) if "options" in f else {},
        elf=r.string(f["elf"]) if "elf" in f else None, image=image,
    )


def _parse_options(r: _Reader, node: Node) -> dict[str, Any]:
    """``options``: ``budget``, ``ncpus``, ``timeout`` (seconds) are positive integers."""
    fields = r.mapping(node, {"empty_slot_consumes_budget", "ncpus", "budget", "timeout"})
    return {k: (r.integer(v, lo=1) if k in ("ncpus", "budget", "timeout") else v.value)
            for k, v in fields.items()}


@functools.lru_cache(maxsize=32)
def _load_elf(path: str, _mtime_ns: int) -> Any:
    from reference_vm.elf import load_elf

    return load_elf(path)


def _elf_case(r: _Reader, f: dict[str, Node]) -> tuple[Any, list[ProgramSpec], list[MapSpecText]]:
    """An ``elf:`` case (docs/elf.md): its programs and maps are those of a BPF ELF object (path
    relative to the case file), loaded as libbpf would (:func:`reference_vm.elf.load_elf`)."""
    from reference_vm.elf import ElfError
    from reference_vm.maps import MapType

    node = f["elf"]
    for other in ("programs", "maps", "prog_type"):
        if other in f:
            raise r.fail(f[other], f"{other!r} cannot be combined with 'elf' (the object defines them)")
    path = Path(r.path).parent / r.string(node)
    try:
        image = _load_elf(str(path), path.stat().st_mtime_ns)
    except OSError as e:
        raise r.fail(node, f"cannot read {str(path)!r}: {e.strerror}") from None
    except ElfError as e:
        raise r.fail(node, str(e)) from None
    programs = [ProgramSpec(p.name, "", node.line, p.prog_type.value, p.attach) for p in image.programs]
    maps = []
    for spec in image.maps:
        mtype = MapType(spec.type).name.lower() if spec.type in MapType._value2member_map_ else spec.type_name
        init = image.init.get(spec.name)
        if mtype not in MAP_TYPES or spec.inner_map is not None or (init and init.inner):
            raise r.fail(node, f"map {spec.name!r} ({mtype}) cannot be run as a YAML case")
        values = {k.hex(): v.hex() for k, v in init.entries} if init else {}
        maps.append(MapSpecText(spec.name, mtype, spec.key_size, spec.value_size, spec.max_entries,
                                spec.flags, values=values, slots=dict(init.slots) if init else {},
                                line=node.line))
    return image, programs, maps


def _parse_programs(r: _Reader, node: Node, default_type: str) -> list[ProgramSpec]:
    out: list[ProgramSpec] = []
    if isinstance(node.value, dict):  # name: asm text
        for name, text in node.value.items():
            out.append(ProgramSpec(name, r.string(text), text.line, default_type))
    else:
        for item in r.seq(node):
            pf = r.mapping(item, _PROG_FIELDS, {"name", "asm"})
            out.append(ProgramSpec(r.string(pf["name"]), r.string(pf["asm"]), pf["asm"].line,
                                   r.string(pf["prog_type"]) if "prog_type" in pf else default_type,
                                   r.string(pf["attach"]) if "attach" in pf else None))
    if not out:
        raise r.fail(node, "no programs")
    seen: set[str] = set()
    for p in out:
        if p.name in seen:
            raise r.fail(node, f"program name {p.name!r} appears twice")
        seen.add(p.name)
    return out


def _parse_map(r: _Reader, node: Node) -> MapSpecText:
    f = r.mapping(node, _MAP_FIELDS, {"name", "type", "max_entries"})
    mtype = r.string(f["type"])
    if mtype not in MAP_TYPES:
        raise r.fail(f["type"], f"unknown map type {mtype!r} (known: {', '.join(MAP_TYPES)})")
    values: dict[int | str, str] = {}
    if "values" in f:
        for k, v in r.mapping(f["values"], set(f["values"].value)).items():
            key: int | str = int(k, 0) if re.fullmatch(r"(0x)?[0-9a-fA-F]+", k) and " " not in k else k
            values[key] = r.hexbytes(v).hex()
    slots = {}
    if "slots" in f:
        for k, v in r.mapping(f["slots"], set(f["slots"].value)).items():
            try:
                slots[int(k, 0)] = r.string(v)
            except ValueError:
                raise r.fail(v, f"slot index {k!r} is not an integer") from None
    return MapSpecText(
        name=r.string(f["name"]), type=mtype,
        key_size=r.integer(f["key_size"], 0, 1 << 16) if "key_size" in f else 4,
        value_size=r.integer(f["value_size"], 0, 1 << 24) if "value_size" in f else 4,
        max_entries=r.integer(f["max_entries"], 0, 1 << 32),
        flags=r.integer(f["flags"], 0) if "flags" in f else 0,
        inner=r.string(f["inner"]) if "inner" in f else None, values=values, slots=slots, line=node.line)


def _parse_expect(r: _Reader, node: Node) -> Expectation:
    f = r.mapping(node, _EXPECT_FIELDS)
    e = Expectation()
    if "r0" in f:
        e.r0 = r.integer(f["r0"], -(1 << 63), U64) & U64
    if "error" in f:
        e.error = r.string(f["error"])
        if not ERROR_RE.match(e.error):
            raise r.fail(f["error"], f"error {e.error!r} is not ok, budget, fault[:kind] or "
                                     "rejected[:reason]")
    if "maps" in f:
        e.maps = {name: {str(k): str(v.value) for k, v in r.mapping(m, set(m.value)).items()}
                  for name, m in r.mapping(f["maps"], set(f["maps"].value)).items()}
    if "ringbuf" in f:
        e.ringbuf = {name: [r.hexbytes(x).hex() for x in r.seq(lst)]
                     for name, lst in r.mapping(f["ringbuf"], set(f["ringbuf"].value)).items()}
    if "trace" in f:
        e.trace = [r.string(x) for x in r.seq(f["trace"])]
    if "mem" in f:
        e.mem = r.hexbytes(f["mem"]).hex()
    if "verifier" in f:
        vf = r.mapping(f["verifier"], {"verdict", "errno", "message", "message_unpriv", "mode"}, {"verdict"})
        e.verifier = {k: v.value for k, v in vf.items()}
        if e.verifier["verdict"] not in ("accept", "reject"):
            raise r.fail(vf["verdict"], "verdict must be accept or reject")
    if e.r0 is None and e.error is None and e.verifier is None:
        raise r.fail(node, "expect needs at least r0, error or verifier")
    return e


def load_yaml_cases(path: str | Path) -> list[YamlCase]:
    """Read and schema-check a case file; raise :class:`CaseFormatError` with file:line."""
    p = str(path)
    r = _Reader(p)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise CaseFormatError(f"not UTF-8 text ({e.reason} at byte {e.start})", file=p) from None
    except OSError as e:
        raise CaseFormatError(f"cannot read: {e.strerror}", file=p) from None
    try:
        root = yaml.compose(text)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        raise CaseFormatError(f"invalid YAML: {e.problem}", file=p,
                              line=mark.line + 1 if mark else None) from None
    except yaml.YAMLError as e:
        raise CaseFormatError(f"invalid YAML: {e}", file=p) from None
    if root is None:
        raise CaseFormatError("empty file", file=p)
    try:
        top = r.wrap(root, "")
    except yaml.YAMLError as e:
        raise CaseFormatError(f"invalid YAML value: {e}", file=p, line=root.start_mark.line + 1) from None
    if isinstance(top.value, dict) and "cases" in top.value:
        r.mapping(top, {"cases"})
        items = r.seq(top.value["cases"])
        if not items:
            raise r.fail(top.value["cases"], "'cases' is empty")
    else:
        items = [top]
    cases = [_parse_case(r, item) for item in items]
    seen: dict[str, int] = {}
    for c in cases:
        if c.name in seen:
            raise CaseFormatError(f"case name {c.name!r} also used on line {seen[c.name]}", file=p,
                                  line=c.line)
        seen[c.name] = c.line
    return cases


def assemble_case(case: YamlCase, helper_names: dict[str, int]) -> dict[str, list]:
    """Assemble every program of a case; map names and helper names are symbols."""
    from reference_vm.asm import assemble
    from reference_vm.insn import decode_program, encode_program

    symbols = dict(helper_names)
    symbols.update({m.name: i for i, m in enumerate(case.maps)})
    out = {}
    for prog in case.programs:
        try:
            insns = assemble(prog.asm, file=case.path, first_line=prog.asm_line, symbols=symbols)
            out[prog.name] = decode_program(encode_program(insns))
        except EncodingError as e:
            raise CaseFormatError(f"program {prog.name!r}: {e.message}", file=case.path,
                                  line=prog.asm_line) from None
        except AsmError:
            raise
    return out
