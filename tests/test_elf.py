"""ELF loading (reference_vm/elf.py) on the fixtures of corpora/elf/ (docs/elf.md).

Three kinds of facts, none of them produced by bpfcheck:

* what the objects hold: sections, symbols and relocations as ``llvm-objdump-19 -dr`` and
  ``llvm-readelf-19 -s -r`` print them for the committed objects (written in here by hand);
* what the programs compute: the values each C source's header comment derives by hand from
  the C semantics and the Linux rules it cites (tail call limit, ring buffer records, the
  ``bpf_fentry_test*`` bodies of net/bpf/test_run.c);
* what the live kernel does with the same objects (when ``bpf(2)`` is usable): a small ctypes
  loader here creates the maps, loads every program with the object's BTF, func_info and
  line_info, fills the prog arrays, runs ``BPF_PROG_TEST_RUN`` and reads the maps and ring
  buffers back. The fexit object is not loaded: this kernel refuses tracing programs (EPERM,
  docs/trampolines.md), so it runs on the trampoline model only.

Malformed objects (truncated, wrong machine, garbage, a relocation against a missing symbol or
of an unsupported type) must give one :class:`ElfError` line naming the file and the section or
symbol; a hypothesis test mutates the objects' bytes and accepts nothing else.
"""

from __future__ import annotations

import ctypes
import io
import mmap
import os
import shutil
import struct
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conformance.case import load_cases
from conformance.kernel import syscall as sc
from conformance.kernel.btf_load import btf_load, btf_load_raw
from conformance.runner import Verdict, compare
from conformance.targets.interpreter import InterpreterTarget
from conformance.yaml_case import load_yaml_cases
from reference_vm import btf
from reference_vm.elf import (
    R_BPF_64_32,
    R_BPF_64_64,
    ElfError,
    ElfImage,
    image_env,
    internal_map_name,
    load_elf,
    object_name,
    run_image,
    section_def,
)
from reference_vm.env import Environment
from reference_vm.errors import CaseFormatError
from reference_vm.isa import BPF_PSEUDO_FUNC, BPF_PSEUDO_MAP_IDX, BPF_PSEUDO_MAP_IDX_VALUE, Kind
from reference_vm.maps import BPF_F_MMAPABLE, BPF_F_RDONLY_PROG, MapError, MapType
from reference_vm.program import ProgType

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "corpora" / "elf"
CASES = FIXTURES / "cases.yaml"
OBJECTS = ("tail_call.o", "subprogs.o", "ringbuf.o", "maps_globals.o", "fexit_test.o", "legacy_loop.o")
BYTES = {name: (FIXTURES / name).read_bytes() for name in OBJECTS}


def load(name: str) -> ElfImage:
    return load_elf(FIXTURES / name)


def u32(v: int) -> bytes:
    return v.to_bytes(4, "little")


def u64(v: int) -> bytes:
    return v.to_bytes(8, "little")


# --- What the objects hold (llvm-objdump-19 -dr, llvm-readelf-19 -s -r; written in by hand) ------

#: Programs: (function, section, its own instruction slots). ``.text`` functions are not programs.
WANT_PROGRAMS = {
    "tail_call.o": [("classify_zero", "tc", 2), ("classify_two", "tc", 7), ("chain", "tc", 11),
                    ("dispatch", "tc", 8), ("dispatch_empty", "tc", 6), ("dispatch_oob", "tc", 6)],
    "subprogs.o": [("sum_small", "socket", 6), ("sum_mixed", "socket", 15)],
    "ringbuf.o": [("produce", "xdp", 63)],
    "maps_globals.o": [("update", "socket", 57), ("read_counts", "socket", 23)],
    "fexit_test.o": [("test1", "fexit/bpf_fentry_test1", 19), ("test2", "fexit/bpf_fentry_test2", 19),
                     ("test3", "fexit/bpf_fentry_test3", 24)],
    "legacy_loop.o": [("loop_sum", "socket", 23)],
}
WANT_TYPES = {"tail_call.o": ProgType.SCHED_CLS, "subprogs.o": ProgType.SOCKET_FILTER,
              "ringbuf.o": ProgType.XDP, "maps_globals.o": ProgType.SOCKET_FILTER,
              "fexit_test.o": ProgType.TRACING, "legacy_loop.o": ProgType.SOCKET_FILTER}

#: Maps: BTF-defined maps in .maps order, then one array per global data section in section
#: order (name, type, key_size, value_size, max_entries, flags). Global data sizes are the
#: sections' sizes (llvm-readelf -S); libbpf names them <8 chars of the object>.<section>.
MM, RO = BPF_F_MMAPABLE, BPF_F_RDONLY_PROG
WANT_MAPS = {
    "tail_call.o": [("jmp_table", MapType.PROG_ARRAY, 4, 4, 4, 0),
                    ("tail_cal.data", MapType.ARRAY, 4, 4, 1, MM),
                    ("tail_cal.bss", MapType.ARRAY, 4, 8, 1, MM)],
    "subprogs.o": [("subprogs.data", MapType.ARRAY, 4, 16, 1, MM),
                   ("subprogs.bss", MapType.ARRAY, 4, 4, 1, MM)],
    # The string literal "bpf!" lands in .rodata.str1.1 (no DATASEC: not mmapable), unused by the code.
    "ringbuf.o": [("events", MapType.RINGBUF, 0, 0, 4096, 0), (".rodata.str1.1", MapType.ARRAY, 4, 5, 1, RO),
                  ("ringbuf.bss", MapType.ARRAY, 4, 4, 1, MM)],
    "maps_globals.o": [("counts", MapType.HASH, 4, 8, 8, 0), ("slots", MapType.ARRAY, 4, 4, 4, 0),
                       ("maps_glo.data", MapType.ARRAY, 4, 8, 1, MM),
                       ("maps_glo.rodata", MapType.ARRAY, 4, 24, 1, MM | RO),
                       ("maps_glo.bss", MapType.ARRAY, 4, 16, 1, MM)],
    "fexit_test.o": [("fexit_te.bss", MapType.ARRAY, 4, 32, 1, MM)],
    "legacy_loop.o": [("legacy_counts", MapType.ARRAY, 4, 8, 2, 0)],  # struct bpf_map_def in "maps"
}

#: Code relocations as llvm-objdump -dr prints them: (section, instruction index, symbol,
#: R_BPF type), resolved to (kind, map or subprogram, offset in the data map). Symbol offsets in
#: their sections are llvm-readelf -s values (chain_runs at .bss+4, rodata_tag at .rodata+8 ...).
WANT_RELOCATIONS = {
    "tail_call.o": {
        ("tc", 2, "hits", R_BPF_64_64, "map_value", "tail_cal.bss", 0),
        ("tc", 9, "chain_runs", R_BPF_64_64, "map_value", "tail_cal.bss", 4),
        ("tc", 14, "jmp_table", R_BPF_64_64, "map", "jmp_table", 0),
        ("tc", 20, "selector", R_BPF_64_64, "map_value", "tail_cal.data", 0),
        ("tc", 23, "jmp_table", R_BPF_64_64, "map", "jmp_table", 0),
        ("tc", 28, "jmp_table", R_BPF_64_64, "map", "jmp_table", 0),
        ("tc", 34, "jmp_table", R_BPF_64_64, "map", "jmp_table", 0),
    },
    "subprogs.o": {
        (".text", 8, "calls", R_BPF_64_64, "map_value", "subprogs.bss", 0),
        ("socket", 0, "inputs", R_BPF_64_64, "map_value", "subprogs.data", 0),
        ("socket", 4, ".text", R_BPF_64_32, "call", "sum_of_squares", 0),  # call -1: .text insn 0
        ("socket", 6, "inputs", R_BPF_64_64, "map_value", "subprogs.data", 0),
        ("socket", 10, ".text", R_BPF_64_32, "call", "sum_of_squares", 0),
        ("socket", 13, ".text", R_BPF_64_32, "call", "square", 0),  # call 0x6: .text insn 7
        ("socket", 17, ".text", R_BPF_64_32, "call", "clamp", 0),  # call 0xe: .text insn 15
    },
    "ringbuf.o": {
        ("xdp", 7, "events", R_BPF_64_64, "map", "events", 0),
        ("xdp", 22, "produced", R_BPF_64_64, "map_value", "ringbuf.bss", 0),
        ("xdp", 29, "events", R_BPF_64_64, "map", "events", 0),
        ("xdp", 38, "events", R_BPF_64_64, "map", "events", 0),
        ("xdp", 49, "events", R_BPF_64_64, "map", "events", 0),
        ("xdp", 56, "produced", R_BPF_64_64, "map_value", "ringbuf.bss", 0),
    },
    "maps_globals.o": {
        ("socket", 4, "rodata_step", R_BPF_64_64, "map_value", "maps_glo.rodata", 0),
        ("socket", 10, "counts", R_BPF_64_64, "map", "counts", 0),
        ("socket", 23, "counts", R_BPF_64_64, "map", "counts", 0),
        ("socket", 29, "slots", R_BPF_64_64, "map", "slots", 0),
        ("socket", 32, "data_counter", R_BPF_64_64, "map_value", "maps_glo.data", 0),
        ("socket", 39, "rodata_step", R_BPF_64_64, "map_value", "maps_glo.rodata", 0),
        ("socket", 42, "rodata_tag", R_BPF_64_64, "map_value", "maps_glo.rodata", 8),
        ("socket", 45, "last_tag", R_BPF_64_64, "map_value", "maps_glo.bss", 8),
        ("socket", 48, "bss_seen", R_BPF_64_64, "map_value", "maps_glo.bss", 0),
        ("socket", 63, "counts", R_BPF_64_64, "map", "counts", 0),
        ("socket", 69, "slots", R_BPF_64_64, "map", "slots", 0),
    },
    "fexit_test.o": {
        ("fexit/bpf_fentry_test1", 2, "fexit_calls", R_BPF_64_64, "map_value", "fexit_te.bss", 8),
        ("fexit/bpf_fentry_test1", 14, "test1_result", R_BPF_64_64, "map_value", "fexit_te.bss", 0),
        ("fexit/bpf_fentry_test2", 9, "test2_result", R_BPF_64_64, "map_value", "fexit_te.bss", 16),
        ("fexit/bpf_fentry_test2", 12, "fexit_calls", R_BPF_64_64, "map_value", "fexit_te.bss", 8),
        ("fexit/bpf_fentry_test3", 14, "test3_result", R_BPF_64_64, "map_value", "fexit_te.bss", 24),
        ("fexit/bpf_fentry_test3", 17, "fexit_calls", R_BPF_64_64, "map_value", "fexit_te.bss", 8),
    },
    "legacy_loop.o": {
        ("socket", 7, ".text", R_BPF_64_64, "func", "add_square", 0),  # `r2 = 0x0 ll` of the callback
        ("socket", 14, "legacy_counts", R_BPF_64_64, "map", "legacy_counts", 0),
    },
}


@pytest.mark.parametrize("name", OBJECTS)
def test_programs_by_section(name: str) -> None:
    image = load(name)
    have = [(p.name, image.info[p.name].section, image.info[p.name].insn_count) for p in image.programs]
    assert have == WANT_PROGRAMS[name]
    assert {p.prog_type for p in image.programs} == {WANT_TYPES[name]}
    assert image.license == "GPL"
    assert image.object_name == name.removesuffix(".o")


@pytest.mark.parametrize("name", OBJECTS)
def test_maps(name: str) -> None:
    image = load(name)
    have = [(m.name, m.type, m.key_size, m.value_size, m.max_entries, m.flags) for m in image.maps]
    assert have == WANT_MAPS[name]


@pytest.mark.parametrize("name", OBJECTS)
def test_relocations(name: str) -> None:
    image = load(name)
    have = {(r.section, r.offset, r.symbol, r.type, r.kind, r.target, r.addend) for r in image.relocations}
    assert have == WANT_RELOCATIONS[name]


def test_relocated_lddw_uses_map_indexes() -> None:
    """lddw of a map -> map_idx (src 5, imm = index); of a variable -> map_idx_value (src 6,
    upper imm = its offset): chain's `r6 = &chain_runs` (.bss + 4) and `r2 = &jmp_table`."""
    image = load("tail_call.o")
    chain = image.program("chain").insns
    runs, table = chain[0], chain[5]
    assert runs is not None and table is not None
    assert (runs.op.kind, runs.src, runs.dst, runs.imm) == (Kind.LDDW, BPF_PSEUDO_MAP_IDX_VALUE, 6,
                                                            4 << 32 | image.map_index("tail_cal.bss"))
    assert (table.src, table.dst, table.imm) == (BPF_PSEUDO_MAP_IDX, 2, image.map_index("jmp_table"))


def test_prog_array_slots_from_maps_initialiser() -> None:
    """`.values = {[0] = &classify_zero, [2] = &classify_two, [3] = &chain}`: .rel.maps
    R_BPF_64_ABS64 at .maps offsets 0x18, 0x28, 0x30 (the flexible `values` array starts at 24)."""
    image = load("tail_call.o")
    assert image.init["jmp_table"].slots == ((0, "classify_zero"), (2, "classify_two"), (3, "chain"))
    assert image.init["tail_cal.data"].entries == ((u32(0), u32(2)),)  # selector = 2
    assert "tail_cal.bss" not in image.init  # .bss: zero-filled
    rodata = load("maps_globals.o").init["maps_glo.rodata"].entries
    assert rodata == ((u32(0), u32(7) + bytes(4) + u64(0xDEAD) + u64(0xBEEF)),)


def test_subprograms_appended_per_program() -> None:
    """libbpf's layout: each program gets its own copies of the .text functions it reaches, depth
    first in call order, and the call offsets are fixed up.

    .text (objdump): sum_of_squares insns 0-6 (calls square: `call 0x5` at 1, `call 0x2` at 4),
    square 7-14, clamp 15-18. sum_small (6 slots) calls sum_of_squares at 4; sum_mixed (15
    slots) calls sum_of_squares at 4, square at 7, clamp at 11."""
    image = load("subprogs.o")
    small, mixed = image.info["sum_small"], image.info["sum_mixed"]
    assert (small.subprograms, small.subprogram_offsets) == (("sum_of_squares", "square"), (6, 13))
    assert mixed.subprograms == ("sum_of_squares", "square", "clamp")
    assert mixed.subprogram_offsets == (15, 22, 30)
    assert len(image.program("sum_small").insns) == 6 + 7 + 8
    assert len(image.program("sum_mixed").insns) == 15 + 7 + 8 + 4

    def calls(prog: str) -> list[tuple[int, int]]:
        return [(pc, pc + 1 + i.imm) for pc, i in enumerate(image.program(prog).insns)
                if i is not None and i.op.kind is Kind.CALL_LOCAL]

    assert calls("sum_small") == [(4, 6), (7, 13), (10, 13)]
    assert calls("sum_mixed") == [(4, 15), (7, 22), (11, 30), (16, 22), (19, 22)]
    # .BTF.ext func_info follows the code (adjust_prog_btf_ext_info): one record per function.
    assert [f.insn_off for f in small.func_info] == [0, 6, 13]
    assert [f.insn_off for f in mixed.func_info] == [0, 15, 22, 30]
    names = [image.btf.type_by_id(f.type_id).name for f in mixed.func_info]  # type: ignore[union-attr]
    assert names == ["sum_mixed", "sum_of_squares", "square", "clamp"]
    offs = [li.insn_off for li in mixed.line_info]
    assert offs == sorted(set(offs)) and {0, 15, 22, 30} <= set(offs)


def test_callback_address_becomes_lddw_func() -> None:
    """legacy_loop.c: `r2 = 0x0 ll` at insn 7 with R_BPF_64_64 against .text (add_square, .text
    insn 0) -> lddw src 4 (BPF_PSEUDO_FUNC) to the copy appended after the 23 own slots."""
    image = load("legacy_loop.o")
    lddw = image.program("loop_sum").insns[7]
    assert lddw is not None and (lddw.src, 7 + 1 + lddw.imm) == (BPF_PSEUDO_FUNC, 23)
    assert image.info["loop_sum"].subprograms == ("add_square",)
    assert [f.insn_off for f in image.info["loop_sum"].func_info] == [0, 23]


def test_tracing_programs_attach_from_section_names() -> None:
    image = load("fexit_test.o")
    assert [p.attach for p in image.programs] == [f"fexit:bpf_fentry_test{i}" for i in (1, 2, 3)]
    assert {i.expected_attach_type for i in image.info.values()} == {"BPF_TRACE_FEXIT"}


@pytest.mark.parametrize("name", OBJECTS)
def test_btf_is_fixed_up_as_libbpf_does(name: str) -> None:
    """clang leaves DATASEC sizes and VAR offsets 0 (the kernel refuses `size == 0`); after the
    fix-up the DATASECs carry the section sizes and the symbols' offsets."""
    image = load(name)
    assert image.btf is not None and image.btf_ext is not None
    elf = ELFFile(io.BytesIO(BYTES[name]))
    raw = elf.get_section_by_name(".BTF").data()
    with pytest.raises(btf.BtfError, match="size == 0"):
        btf.parse(raw)
    for t in image.btf.types:
        if isinstance(t, btf.Datasec):
            assert t.size == elf.get_section_by_name(t.name)["sh_size"]
            for vsi in t.vars:
                var = image.btf.type_by_id(vsi.type)
                assert isinstance(var, btf.Var)
                sym = elf.get_section_by_name(".symtab").get_symbol_by_name(var.name)[0]
                assert vsi.offset == sym["st_value"]


# --- The fixtures are reproducible ------------------------------------------------------------------

def test_build_script_fails_clearly_without_clang() -> None:
    proc = subprocess.run(["sh", str(REPO / "scripts" / "build_elf_fixtures.sh")], capture_output=True,
                          text=True, env={**os.environ, "CLANG": "clang-not-installed"}, check=False)
    assert proc.returncode == 1
    assert "'clang-not-installed' not found; install Debian's clang-19" in proc.stderr


@pytest.mark.skipif(shutil.which("clang-19") is None, reason="clang-19 is not installed")
@pytest.mark.parametrize("name", OBJECTS)
def test_committed_objects_rebuild_byte_for_byte(name: str, tmp_path: Path) -> None:
    """The objects are what scripts/build_elf_fixtures.sh makes from the sources (same flags)."""
    src = FIXTURES / "src"
    out = tmp_path / name
    subprocess.run(["clang-19", "-O2", "-g", "-target", "bpf", "-mcpu=v3", f"-fdebug-prefix-map={src}=.",
                    "-c", name.replace(".o", ".c"), "-o", str(out)], cwd=src, check=True)
    assert out.read_bytes() == BYTES[name]


# --- Naming conventions (libbpf facts) ---------------------------------------------------------

def test_internal_map_names() -> None:
    # libbpf internal_map_name's own examples: 'my_objec.rodata', '.rodata.abracad'.
    assert internal_map_name("my_object_name", ".rodata") == "my_objec.rodata"
    assert internal_map_name("my_object_name", ".bss") == "my_objec.bss"
    assert internal_map_name("my_object_name", ".rodata.abracadabra") == ".rodata.abracad"
    assert internal_map_name("x", ".data") == "x.data"
    assert object_name("/a/b/foo.bpf.o") == "foo"


@pytest.mark.parametrize(("section", "want"), [
    ("socket", ProgType.SOCKET_FILTER), ("tc", ProgType.SCHED_CLS), ("tc/ingress", ProgType.SCHED_CLS),
    ("classifier", ProgType.SCHED_CLS), ("xdp", ProgType.XDP), ("xdp.frags", ProgType.XDP),
    ("raw_tp/sys_enter", ProgType.RAW_TRACEPOINT), ("raw_tracepoint", ProgType.RAW_TRACEPOINT),
    ("tp_btf/sched_switch", ProgType.TRACING), ("fentry/f", ProgType.TRACING), ("fexit/f", ProgType.TRACING),
    ("fmod_ret/f", ProgType.TRACING), ("fentry.s/f", ProgType.TRACING), ("syscall", ProgType.SYSCALL),
    ("lsm/file_open", ProgType.LSM), ("flow_dissector", ProgType.FLOW_DISSECTOR),
    ("sk_lookup", ProgType.SK_LOOKUP), ("cgroup/sysctl", ProgType.CGROUP_SYSCTL),
    ("cgroup/getsockopt", ProgType.CGROUP_SOCKOPT),
    ("socketx", None), ("tcx/ingress", None), ("kprobe/f", None), ("socket/extra", None), ("xdpx", None),
])
def test_section_definitions(section: str, want: ProgType | None) -> None:
    d = section_def(section)
    assert (d.prog_type if d else None) == want


# --- What the programs compute (the C sources' header comments) ---------------------------------

#: (object, entry) -> (r0, {map: {key: value}}) as the C sources state them.
WANT_RUNS: dict[tuple[str, str], tuple[int, dict[str, dict[bytes, bytes]]]] = {
    ("tail_call.o", "dispatch"): (102, {"tail_cal.bss": {u32(0): u32(1) + u32(0)}}),
    ("tail_call.o", "dispatch_empty"): (1, {"tail_cal.bss": {u32(0): bytes(8)}}),
    ("tail_call.o", "dispatch_oob"): (2, {}),
    ("tail_call.o", "classify_zero"): (100, {}),
    ("tail_call.o", "chain"): (34, {"tail_cal.bss": {u32(0): u32(0) + u32(34)}}),
    ("subprogs.o", "sum_small"): (25, {"subprogs.bss": {u32(0): u32(2)}}),
    ("subprogs.o", "sum_mixed"): (746, {"subprogs.bss": {u32(0): u32(3)}}),
    ("ringbuf.o", "produce"): (2, {"ringbuf.bss": {u32(0): u32(3)}}),
    ("maps_globals.o", "update"): (13, {"counts": {u32(1): u64(7)}, "slots": {u32(2): u32(15)},
                                        "maps_glo.data": {u32(0): u64(12)},
                                        "maps_glo.bss": {u32(0): u64(1) + u64(0xBEEF)}}),
    ("maps_globals.o", "read_counts"): (0xFFFF_FFFF, {"counts": {u32(1): b""}}),  # b"": absent
    ("legacy_loop.o", "loop_sum"): (35, {"legacy_counts": {u32(1): u64(30), u32(0): u64(0)}}),
}
WANT_RECORDS = ["01000000" "cdab0000" "8877665544332211", "0807060504030201", "6270662100"]


def interp_value(env: Environment, name: str, key: bytes) -> bytes:
    """A map value as BPF_MAP_LOOKUP_ELEM gives it (b"" for a missing key)."""
    bmap = next(m for m in env.maps if m.spec.name == name)
    try:
        return bmap.sys_lookup(key)
    except MapError:
        return b""


@pytest.mark.parametrize(("name", "entry"), sorted(WANT_RUNS))
def test_runs_on_the_interpreter(name: str, entry: str) -> None:
    image = load(name)
    env = image_env(image)
    out = run_image(image, entry, env=env)
    r0, maps = WANT_RUNS[(name, entry)]
    assert (out.error, out.r0) == ("ok", r0), out.message
    for map_name, values in maps.items():
        for key, value in values.items():
            assert interp_value(env, map_name, key) == value, (map_name, key)
    if name == "ringbuf.o":
        assert out.ringbuf == {"events": WANT_RECORDS}


def test_maps_and_globals_persist_across_runs() -> None:
    """maps_globals.c: update twice (r0 13, then 21), then read_counts = 14 + 36 = 50."""
    image = load("maps_globals.o")
    env = image_env(image)
    assert [run_image(image, e, env=env).r0 for e in ("update", "update", "read_counts")] == [13, 21, 50]
    assert interp_value(env, "maps_glo.data", u32(0)) == u64(19)


def test_fexit_object_on_the_trampoline_model() -> None:
    """fexit_test.c: TEST_RUN of an fexit program calls bpf_fentry_test1..10 once each; the three
    fexit programs see (a, ret) = (1, 2), (2, 3, 5), (4, 5, 6, 15); retval 0."""
    image = load("fexit_test.o")
    env = image_env(image)
    out = run_image(image, "test2", env=env)
    assert (out.error, out.r0) == ("ok", 0), out.message
    bss = interp_value(env, "fexit_te.bss", u32(0))
    assert struct.unpack("<4Q", bss) == (1, 3, 1, 1)  # test1_result, fexit_calls, test2_, test3_result
    fexits = [(e.function, e.program) for e in out.extra["events"] if e.stage == "fexit"]
    assert fexits == [(f"bpf_fentry_test{i}", f"test{i}") for i in (1, 2, 3)]


# --- The YAML cases (corpora/elf/cases.yaml) through the runner -----------------------------------

def yaml_case_ids() -> list[str]:
    return [c.name for c in load_yaml_cases(CASES)]


@pytest.mark.parametrize("case_name", yaml_case_ids())
def test_yaml_cases_pass_on_the_interpreter(case_name: str) -> None:
    case = next(c for c in load_cases([str(CASES)]) if c.name == case_name)
    out = InterpreterTarget().run(case, timeout=60)
    verdict, message = compare(case, out, exact_errors=False)
    assert verdict is Verdict.PASS, message


def test_yaml_case_takes_programs_and_maps_from_the_object() -> None:
    case = next(c for c in load_yaml_cases(CASES) if c.name == "elf_tail_call_dispatch")
    assert [p.name for p in case.programs] == [p[0] for p in WANT_PROGRAMS["tail_call.o"]]
    assert {p.prog_type for p in case.programs} == {"sched_cls"}
    jmp = next(m for m in case.maps if m.name == "jmp_table")
    assert (jmp.type, jmp.slots) == ("prog_array", {0: "classify_zero", 2: "classify_two", 3: "chain"})
    data = next(m for m in case.maps if m.name == "tail_cal.data")
    assert data.values == {"00000000": "02000000"}


@pytest.mark.parametrize(("body", "match"), [
    ("elf: tail_call.o\n    programs: {p: exit}", "'programs' cannot be combined with 'elf'"),
    ("elf: missing.o", r"cases\[0\]\.elf: cannot read"),
    ("elf: garbage.o", r"cases\[0\]\.elf: .*garbage\.o: not an ELF file"),
])
def test_yaml_elf_errors(tmp_path: Path, body: str, match: str) -> None:
    (tmp_path / "tail_call.o").write_bytes(BYTES["tail_call.o"])
    (tmp_path / "garbage.o").write_bytes(b"garbage")
    path = tmp_path / "c.yaml"
    path.write_text(f"cases:\n  - name: c\n    {body}\n    expect: {{r0: 0}}\n"
                    "    provenance: {source: x}\n")
    with pytest.raises(CaseFormatError, match=match) as e:
        load_yaml_cases(path)
    assert str(e.value).startswith(f"{path}:") and "\n" not in str(e.value)


# --- Malformed objects -----------------------------------------------------------------------------

def section_range(data: bytes | bytearray, name: str) -> tuple[int, int]:
    sec = ELFFile(io.BytesIO(bytes(data))).get_section_by_name(name)
    return sec["sh_offset"], sec["sh_size"]


def symbol_index(data: bytes | bytearray, name: str) -> int:
    symtab = ELFFile(io.BytesIO(data)).get_section_by_name(".symtab")
    return next(i for i, s in enumerate(symtab.iter_symbols()) if s.name == name)


def one_line_error(data: bytes, match: str) -> str:
    with pytest.raises(ElfError, match=match) as e:
        load_elf(data, name="bad.o")
    text = str(e.value)
    assert text.startswith("bad.o: ") and "\n" not in text, text
    return text


def test_not_elf() -> None:
    one_line_error(b"garbage bytes, not an object" * 4, r"not an ELF file")
    one_line_error(b"", r"not an ELF file")


def test_truncated() -> None:
    data = BYTES["tail_call.o"]
    one_line_error(data[:40], r"truncated ELF header \(40 bytes")
    one_line_error(data[:1000], r"section header table truncated")  # the headers are at the end
    # A section whose bytes run past the end of the file: 'tc' moved to 64 bytes before the end.
    patched = bytearray(data)
    shoff, = struct.unpack_from("<Q", data, 40)
    index = next(i for i, s in enumerate(ELFFile(io.BytesIO(data)).iter_sections()) if s.name == "tc")
    struct.pack_into("<Q", patched, shoff + 64 * index + 24, len(data) - 64)  # sh_offset
    one_line_error(bytes(patched), rf"section 'tc' is truncated \(ends at byte {len(data) - 64 + 0x140}")


def test_wrong_machine() -> None:
    data = bytearray(BYTES["subprogs.o"])
    struct.pack_into("<H", data, 18, 62)  # EM_X86_64
    one_line_error(bytes(data), r"e_machine 62 is not EM_BPF \(247\)")


def test_relocation_against_missing_symbol() -> None:
    data = bytearray(BYTES["tail_call.o"])
    off, _ = section_range(data, ".reltc")
    r_info, = struct.unpack_from("<Q", data, off + 8)
    struct.pack_into("<Q", data, off + 8, (99 << 32) | (r_info & 0xFFFFFFFF))  # relocation #0 -> symbol #99
    one_line_error(bytes(data), r"section 'tc': relocation #0 against unknown symbol #99")


def test_unsupported_relocation_type() -> None:
    data = bytearray(BYTES["tail_call.o"])
    off, _ = section_range(data, ".reltc")
    r_info, = struct.unpack_from("<Q", data, off + 8)
    struct.pack_into("<Q", data, off + 8, (r_info & ~0xFFFFFFFF) | 3)  # R_BPF_64_ABS32 on the lddw of `hits`
    one_line_error(bytes(data), r"section 'tc' insn 2: unsupported relocation R_BPF_64_ABS32 against 'hits'")


def test_call_relocation_on_lddw() -> None:
    data = bytearray(BYTES["subprogs.o"])
    off, _ = section_range(data, ".relsocket")
    r_info, = struct.unpack_from("<Q", data, off + 8)
    struct.pack_into("<Q", data, off + 8, (r_info & ~0xFFFFFFFF) | R_BPF_64_32)
    one_line_error(bytes(data), r"unsupported relocation R_BPF_64_32 against 'inputs' on an lddw")


def test_relocation_against_a_non_map_symbol() -> None:
    """Point the lddw of `jmp_table` at the symbol `_license` (section 'license')."""
    data = bytearray(BYTES["tail_call.o"])
    off, size = section_range(data, ".reltc")
    lic = symbol_index(bytes(data), "_license")
    r_info, = struct.unpack_from("<Q", data, off + 16 * 2 + 8)  # relocation #2: jmp_table at tc insn 14
    struct.pack_into("<Q", data, off + 16 * 2 + 8, (lic << 32) | (r_info & 0xFFFFFFFF))
    one_line_error(bytes(data), r"section 'tc' insn 14: relocation against '_license' in section 'license'")


def test_unknown_program_section() -> None:
    """Rename section 'xdp' to 'kprobe/x'-like text: point its name at the symbol name
    'produced' in the shared string table (libbpf: missing BPF prog type)."""
    data = bytearray(BYTES["ringbuf.o"])
    shoff, = struct.unpack_from("<Q", data, 40)
    strtab_off, strtab_size = section_range(bytes(data), ".strtab")
    strtab = bytes(data[strtab_off:strtab_off + strtab_size])
    elf = ELFFile(io.BytesIO(bytes(data)))
    index = next(i for i, s in enumerate(elf.iter_sections()) if s.name == "xdp")
    struct.pack_into("<I", data, shoff + 64 * index, strtab.index(b"produced\0"))
    one_line_error(bytes(data), r"program 'produce': section 'produced' names no program type")


def test_bad_instruction_is_an_elf_error() -> None:
    data = bytearray(BYTES["ringbuf.o"])
    off, _ = section_range(data, "xdp")
    data[off + 8 * 5] = 0xFF  # insn 5: unknown opcode
    one_line_error(bytes(data), r"program 'produce' \(section 'xdp'\): insn 5: unknown opcode 0xff")


def structural_ranges(data: bytes) -> list[tuple[int, int]]:
    """Where a mutation can matter: the ELF and section headers, and every section that is not
    DWARF (which the loader never reads)."""
    elf = ELFFile(io.BytesIO(data))
    shoff, = struct.unpack_from("<Q", data, 40)
    out = [(0, 64), (shoff, len(data) - shoff)]
    for s in elf.iter_sections():
        if s["sh_type"] != "SHT_NOBITS" and s["sh_size"] and not s.name.startswith((".debug", ".rel.debug")):
            out.append((s["sh_offset"], s["sh_size"]))
    return out


RANGES = {name: structural_ranges(data) for name, data in BYTES.items()}


@st.composite
def mutated_object(draw: st.DrawFn) -> bytes:
    name = draw(st.sampled_from(OBJECTS))
    data = bytearray(BYTES[name])
    for _ in range(draw(st.integers(1, 6))):
        start, size = draw(st.sampled_from(RANGES[name]))
        pos = start + draw(st.integers(0, size - 1))
        if draw(st.booleans()):
            data[pos] = draw(st.integers(0, 255))
        else:  # a whole little-endian word: offsets, sizes, indexes
            word = draw(st.sampled_from([0, 1, 0xFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, len(data), 99]))
            struct.pack_into("<I", data, min(pos, len(data) - 4), word)
    if draw(st.booleans()):
        data = data[:draw(st.integers(0, len(data)))]
    return bytes(data)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_object())
def test_mutated_objects_raise_only_elf_errors(data: bytes) -> None:
    try:
        image = load_elf(data)
    except ElfError as e:
        assert "\n" not in str(e) and str(e).startswith("<bytes>: ")
        return
    assert image.programs  # a mutation the loader does not look at (or a harmless one)


def test_cli_reports_a_bad_object_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from conformance.cli import main

    obj = tmp_path / "trunc.o"
    obj.write_bytes(BYTES["tail_call.o"][:3000])
    path = tmp_path / "c.yaml"
    path.write_text("cases:\n  - name: c\n    elf: trunc.o\n    expect: {r0: 0}\n"
                    "    provenance: {source: x}\n")
    assert main(["run", "--target", "interpreter", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"bpfcheck: {path}:3: cases[0].elf: {obj}: section header table truncated (ends at byte "
                   f"{len(BYTES['tail_call.o'])}, the file has 3000)"]


def test_read_error_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(ElfError, match=r"missing\.o: cannot read"):
        load_elf(tmp_path / "missing.o")


# --- The live kernel ---------------------------------------------------------------------------------

KERNEL = sc.probe()
needs_kernel = pytest.mark.skipif(KERNEL is not None, reason=f"bpf() unusable here: {KERNEL}")
PROG_TYPES = {ProgType.SOCKET_FILTER: sc.BPF_PROG_TYPE_SOCKET_FILTER,
              ProgType.SCHED_CLS: sc.BPF_PROG_TYPE_SCHED_CLS, ProgType.XDP: 6}  # BPF_PROG_TYPE_XDP
BPF_MAP_UPDATE_ELEM, BPF_MAP_LOOKUP_ELEM, BPF_PROG_LOAD = 2, 1, 5


class KernelObject:
    """An :class:`ElfImage` loaded into the kernel the way libbpf would: every map created (global
    data filled), the object's BTF loaded, every program loaded with its func_info and line_info
    (lddw map_idx[_value] rewritten to map_fd/map_value with the real fds, as libbpf writes
    them), prog arrays filled with the program fds."""

    def __init__(self, image: ElfImage, stack: ExitStack) -> None:
        self.image = image
        self.map_fd: dict[str, int] = {}
        self.prog_fd: dict[str, int] = {}
        for spec in image.maps:
            fd = sc.map_create(spec.type, spec.key_size, spec.value_size, spec.max_entries, spec.flags)
            stack.callback(os.close, fd)
            self.map_fd[spec.name] = fd
        for name, init in image.init.items():
            for key, value in init.entries:
                sc.map_update_elem(self.map_fd[name], key, value)
        btf_fd, log = btf_load_raw(image.btf_blob)
        assert btf_fd >= 0, log
        stack.callback(os.close, btf_fd)
        fds = [self.map_fd[m.name] for m in image.maps]
        for p in image.programs:
            slots = []
            for insn in p.insns:
                if insn is None:
                    continue
                raw = insn.raw()
                if insn.op.kind is Kind.LDDW and insn.src in (BPF_PSEUDO_MAP_IDX, BPF_PSEUDO_MAP_IDX_VALUE):
                    raw[0] = replace(raw[0], src=raw[0].src - 4, imm=fds[raw[0].imm])  # 5 -> 1, 6 -> 2
                slots += raw
            code = b"".join(r.to_bytes() for r in slots)
            fd = self._prog_load(p.name, code, PROG_TYPES[p.prog_type], btf_fd)
            stack.callback(os.close, fd)
            self.prog_fd[p.name] = fd
        for name, init in image.init.items():
            for index, prog in init.slots:
                sc.map_update_elem(self.map_fd[name], u32(index), u32(self.prog_fd[prog]))

    def _prog_load(self, name: str, code: bytes, prog_type: int, btf_fd: int) -> int:
        """BPF_PROG_LOAD with BTF: prog_btf_fd @72, func_info_rec_size @76, func_info @80,
        func_info_cnt @88, line_info_rec_size @92, line_info @96, line_info_cnt @104."""
        info = self.image.info[name]
        insns = ctypes.create_string_buffer(code, len(code))
        lic = ctypes.create_string_buffer(self.image.license.encode())
        finfo = b"".join(struct.pack("<II", f.insn_off, f.type_id) for f in info.func_info)
        linfo = b"".join(struct.pack("<IIII", li.insn_off, li.file_name_off, li.line_off, li.line_col)
                         for li in info.line_info)
        fbuf = ctypes.create_string_buffer(finfo, len(finfo))
        lbuf = ctypes.create_string_buffer(linfo, len(linfo))
        log = ctypes.create_string_buffer(1 << 20)
        for level in (0, 1):
            attr = ctypes.create_string_buffer(sc.ATTR_SIZE)
            struct.pack_into("<IIQQIIQ", attr, 0, prog_type, len(code) // 8, ctypes.addressof(insns),
                             ctypes.addressof(lic), level, len(log) if level else 0,
                             ctypes.addressof(log) if level else 0)
            struct.pack_into("16s", attr, 48, name.encode()[:15])
            struct.pack_into("<IIQIIQI", attr, 72, btf_fd, 8, ctypes.addressof(fbuf), len(info.func_info), 16,
                             ctypes.addressof(lbuf), len(info.line_info))
            fd = sc._bpf(BPF_PROG_LOAD, attr)
            if fd >= 0:
                return fd
        raise AssertionError(f"{name}: PROG_LOAD {sc.errno_name(-fd)}: {sc.log_message(log.value.decode())}")

    def run(self, entry: str) -> int:
        return sc.prog_test_run(self.prog_fd[entry], bytes(64)).retval

    def value(self, map_name: str, key: bytes) -> bytes:
        spec = self.image.maps[self.image.map_index(map_name)]
        return sc.map_lookup_elem(self.map_fd[map_name], key, spec.value_size) or b""

    def records(self, map_name: str) -> Iterator[bytes]:
        """The ring buffer's records as a consumer sees them (kernel/bpf/ringbuf.c layout: the
        consumer page, then the producer page and the data area mapped twice; 8-byte headers
        with the BUSY (bit 31) and DISCARD (bit 30) flags)."""
        size = self.image.maps[self.image.map_index(map_name)].max_entries
        fd, page = self.map_fd[map_name], mmap.PAGESIZE
        with mmap.mmap(fd, page, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE) as cons, \
                mmap.mmap(fd, page + 2 * size, mmap.MAP_SHARED, mmap.PROT_READ, offset=page) as prod:
            pos, end = struct.unpack_from("<Q", cons)[0], struct.unpack_from("<Q", prod)[0]
            while pos < end:
                header, = struct.unpack_from("<I", prod, page + pos % size)
                assert not header & (1 << 31), "a record is still busy"
                length = header & ~(3 << 30)
                if not header & (1 << 30):
                    start = page + (pos + 8) % size
                    yield bytes(prod[start:start + length])
                pos += (length + 8 + 7) & ~7
            struct.pack_into("<Q", cons, 0, pos)


@needs_kernel
@pytest.mark.parametrize("name", OBJECTS)
def test_kernel_accepts_the_fixed_up_btf(name: str) -> None:
    """BTF_LOAD takes the fixed-up .BTF and refuses the raw one, as our parser does."""
    image = load(name)
    assert btf_load(image.btf_blob).accepted
    raw = ELFFile(io.BytesIO(BYTES[name])).get_section_by_name(".BTF").data()
    refused = btf_load(raw)
    assert (refused.errno_name, refused.message.endswith("size == 0")) == ("EINVAL", True)


@needs_kernel
@pytest.mark.parametrize(("name", "entry"), sorted(WANT_RUNS))
def test_runs_on_the_kernel(name: str, entry: str) -> None:
    r0, maps = WANT_RUNS[(name, entry)]
    with ExitStack() as stack:
        k = KernelObject(load(name), stack)
        assert k.run(entry) == r0 & 0xFFFFFFFF  # TEST_RUN's retval is the low 32 bits of r0
        for map_name, values in maps.items():
            for key, value in values.items():
                assert k.value(map_name, key) == value, (map_name, key)
        if name == "ringbuf.o":
            assert [r.hex() for r in k.records("events")] == WANT_RECORDS


@needs_kernel
def test_kernel_maps_and_globals_persist_across_runs() -> None:
    with ExitStack() as stack:
        k = KernelObject(load("maps_globals.o"), stack)
        assert [k.run(e) for e in ("update", "update", "read_counts")] == [13, 21, 50]
        assert k.value("maps_glo.data", u32(0)) == u64(19)
