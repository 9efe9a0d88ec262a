"""The JITs (x86-64, arm64 with LSE atomics, arm64 with LDAXR/STLXR loops) against the
reference interpreter.

The interpreter is the oracle here (it is tested on its own against RFC 9669 and Linux in
test_interpreter.py): every run compares the *full* outcome — error class, r0-r10, memory,
instruction count, exit pc, helper calls, maps and trace — never only r0.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from conformance.case import load_case
from reference_vm import interpreter, isa, jit
from reference_vm.asm import assemble
from reference_vm.env import Environment
from reference_vm.helpers import HelperDef
from reference_vm.insn import Insn, decode_program, encode_program, jump_target
from reference_vm.isa import Kind, Use
from reference_vm.jit import arm64, x86_64
from reference_vm.jit import common as c
from reference_vm.jit.printer import coverage, coverage_table, disassembler, side_by_side
from reference_vm.jit.runtime import Engine
from reference_vm.memory import MEM_BASE, STACK_TOP, Region, standard_memory

CORPUS = Path(__file__).resolve().parents[1] / "corpora" / "bpf_conformance"
CASES = sorted(CORPUS.glob("*.data"))
#: (test id, architecture, backend options)
CONFIGS = [("x86_64", "x86_64", {}), ("arm64", "arm64", {}), ("arm64-llsc", "arm64", {"lse": False})]
CONFIG_IDS = [cfg[0] for cfg in CONFIGS]
FIELDS = ("error", "r0", "regs", "memory", "insn_count", "exit_pc", "helper_calls", "maps", "ringbuf",
          "trace")
M64 = (1 << 64) - 1


def prog(src: str) -> list[Insn | None]:
    return decode_program(encode_program(assemble(src)))


def _diff(want: object, got: object) -> str:
    if isinstance(want, dict) and isinstance(got, dict) and set(want) == set(got):
        parts = []
        for k in want:
            a, b = want[k], got[k]
            if a != b and isinstance(a, bytes) and isinstance(b, bytes):
                at = next((i for i in range(min(len(a), len(b))) if a[i] != b[i]), min(len(a), len(b)))
                parts.append(f"{k}: first difference at byte {at}: "
                             f"{a[at:at + 8].hex()} != {b[at:at + 8].hex()}")
            elif a != b:
                parts.append(f"{k}: {a!r} != {b!r}")
        return "; ".join(parts)
    return f"{want!r} != {got!r}"


def assert_same(want, got, what: str = "") -> None:
    """Full-state equality (everything but the free-text message and ``extra``)."""
    diffs = [f"{f}: {_diff(getattr(want, f), getattr(got, f))}" for f in FIELDS
             if getattr(want, f) != getattr(got, f)]
    assert not diffs, f"{what}\n" + "\n".join(diffs) + f"\ninterpreter: {want.message}\njit: {got.message}"


def check(program, mem: bytes | None = None, *, budget: int = interpreter.DEFAULT_BUDGET,
          configs=CONFIGS, env_factory=None, helpers=interpreter.DEFAULT_HELPERS):
    """Run ``program`` on the interpreter and every JIT configuration; return the oracle."""
    if isinstance(program, str):
        program = prog(program)
    want = interpreter.run(program, mem, budget=budget, helpers=helpers,
                           env=env_factory() if env_factory else None)
    for name, arch, opts in configs:
        got = jit.run(program, mem, arch=arch, budget=budget, options=opts, helpers=helpers,
                      env=env_factory() if env_factory else None)
        assert_same(want, got, f"{name}")
    return want


# --- Dispatch tables and coverage ------------------------------------------------------------------

@pytest.mark.parametrize("backend", [x86_64, arm64], ids=["x86_64", "arm64"])
def test_lowering_table_covers_every_kind(backend) -> None:
    assert set(backend.LOWERINGS) == set(Kind)


@pytest.mark.parametrize("arch", ["x86_64", "arm64"])
def test_every_executable_row_lowers_to_native_code(arch: str) -> None:
    rows = coverage(arch)
    assert len(rows) == len(isa.TABLE)
    executable = [r for r in rows if r.executable]
    assert executable and all(r.status == "native" for r in executable), [
        (r.name, r.status, r.detail) for r in executable if r.status != "native"]
    # Rows that need an environment trap at run time (fault:unsupported), as in the interpreter.
    assert {r.name for r in rows if r.status == "trap"} == {
        "call_kfunc", "lddw_map_fd", "lddw_map_value", "lddw_btf_id", "lddw_map_idx", "lddw_map_idx_value"}


def test_coverage_table_and_side_by_side_print() -> None:
    table = coverage_table()
    assert "x86_64: 167/167 executable rows native" in table
    assert "arm64: 167/167 executable rows native" in table
    program = prog("mov %r0, 0\nl:\nadd %r0, 1\nstxb [%r10-1], %r0\njlt %r0, 3, l\ncall 5\nexit")
    for arch, needle in (("x86_64", "mov byte ptr [r11], al"), ("arm64", "strb w7, [x10]")):
        text = side_by_side(program, arch)
        assert needle in text
        assert "   2: stxb [%r10-1], %r0" in text and "L1:" in text and "(stubs, stop routine)" in text


# --- The bundled bpf_conformance corpus ----------------------------------------------------------

@pytest.mark.parametrize("config", CONFIGS, ids=CONFIG_IDS)
@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_corpus_case_full_outcome_matches_interpreter(path: Path, config) -> None:
    name, arch, opts = config
    case = load_case(path)
    program = decode_program(list(case.program))
    want = interpreter.run(program, case.mem or None)
    got = jit.run(program, case.mem or None, arch=arch, options=opts)
    assert_same(want, got, f"{path.name} on {name}")


def test_corpus_is_complete() -> None:
    assert len(CASES) == 313


def test_targets_are_registered() -> None:
    from conformance.targets import get_target

    case = load_case(CORPUS / "add.data")
    for name in ("jit-x86_64", "jit-arm64"):
        target = get_target(name)
        assert target.name == name
        out = target.run(case, 10.0)
        assert out.ok and out.r0 == case.expect_r0


# --- Targeted edge cases (anchors-and-bug-classes.md §2) -----------------------------------------

DIRTY = "lddw %r{r}, 0xdeadbeef{low:08x}"


@pytest.mark.parametrize("op", ["lsh", "rsh", "arsh"])
@pytest.mark.parametrize("width", ["", "32"])
@pytest.mark.parametrize("count", [0, 1, 31, 32, 33, 63, 64, 65, -1])
def test_shift_counts(op: str, width: str, count: int) -> None:
    imm = f"lddw %r0, 0x8000000180000001\n{op}{width} %r0, {count}\nexit"
    check(imm)
    # register counts, with the count in r4 (rcx on x86), the value in r4, or both
    for dst, src in ((0, 2), (0, 4), (4, 2), (4, 4), (6, 4), (3, 0)):
        src_text = f"lddw %r{src}, {(count & M64) | 0xabcdef0000000000:#x}\n" if src != dst else ""
        check(f"lddw %r{dst}, 0x8000000180000001\n{src_text}{op}{width} %r{dst}, %r{src}\n"
              f"mov %r0, %r{dst}\nexit")


INT_MINS = {"": 0x8000000000000000, "32": 0x80000000}


@pytest.mark.parametrize("op", ["div", "mod", "sdiv", "smod"])
@pytest.mark.parametrize("width", ["", "32"])
@pytest.mark.parametrize("divisor", [0, 1, -1, 2, -2, 0x7FFFFFFF, -0x80000000])
@pytest.mark.parametrize("dividend", ["int_min", "-7", "7", "dirty"])
def test_division_edge_cases(op: str, width: str, divisor: int, dividend: str) -> None:
    value = {"int_min": INT_MINS[width], "-7": (-7) & M64, "7": 7, "dirty": 0xFFFFFFFF00000005}[dividend]
    check(f"lddw %r0, {value:#x}\n{op}{width} %r0, {divisor}\nexit")
    # divisor in a register; dst/src on rax/rdx (r0/r3), dst == src
    for dst, src in ((0, 1), (3, 0), (0, 3), (1, 1), (7, 3)):
        dirty = divisor & M64 | (0x1234567800000000 if width else 0)
        set_src = f"lddw %r{src}, {dirty:#x}\n" if src != dst else ""
        check(f"lddw %r3, 0x3333333333333333\nlddw %r{dst}, {value:#x}\n{set_src}"
              f"{op}{width} %r{dst}, %r{src}\nmov %r0, %r{dst}\nlsh %r3, 1\nadd %r0, %r3\nexit")


_IMM_ROWS = [r for r in isa.TABLE if r.executable and r.shape.imm is Use.VALUE
             and r.kind in (Kind.ALU, Kind.JCOND)]


@pytest.mark.parametrize("imm", [0x7FFFFFFF, -0x80000000, -1, 0, 1, 0xFFF, 0x1000, -0x1000, 0x5555_5555])
@pytest.mark.parametrize("row", _IMM_ROWS, ids=[r.name for r in _IMM_ROWS])
def test_interesting_immediates_on_every_alu_and_jump(row: isa.OpDef, imm: int) -> None:
    for start in (0x8000000080000000, 0x7FFFFFFF, 0xFFFFFFFF80000000, 5):
        fields = {"dst": 6, "imm": imm}
        if row.select is not None:
            fields[row.select[0]] = row.select[1]
        if row.kind is Kind.JCOND:
            fields["off"] = 1
        body = [Insn(isa.BY_NAME["lddw"], dst=6, imm=start), Insn(isa.BY_NAME["mov64_imm"], dst=0, imm=1),
                Insn(row, **fields), Insn(isa.BY_NAME["mov64_imm"], dst=0, imm=2),
                Insn(isa.BY_NAME["add64_reg"], dst=0, src=6), Insn(isa.BY_NAME["exit"])]
        check(decode_program(encode_program(body)))


@pytest.mark.parametrize("size", ["b", "h", "w", "dw"])
def test_stores_and_loads_through_every_register(size: str) -> None:
    # Byte stores from sil/dil/bpl need a REX prefix on x86; r7 is r13 and r10 is rbp, whose
    # ModR/M encodings with a zero displacement are special.
    for src in range(11):
        text = f"lddw %r{src}, 0x8182838485868788\n" if src != 10 else ""
        check(f"{text}stx{size} [%r10-16], %r{src}\nldxdw %r0, [%r10-16]\nexit")
    for base in range(10):
        for off in (0, 8, -8, 127, 128, -129):
            check(f"mov %r{base}, %r10\nsub %r{base}, 256\nstdw [%r{base}{off:+d}], -3\n"
                  f"ldx{size} %r0, [%r{base}{off:+d}]\nmov %r9, %r{base}\nexit")
    check(f"stdw [%r10-8], 7\nldx{size} %r0, [%r10-8]\nexit")


@pytest.mark.parametrize("mem_len", [0, 1, 2, 3, 4, 7, 8, 9, 4095, 4096, 4097])
def test_loads_and_stores_at_the_edge_of_the_input(mem_len: int) -> None:
    mem = (bytes(range(256)) * 17)[:mem_len]
    for size, n in (("b", 1), ("h", 2), ("w", 4), ("dw", 8)):
        for off in sorted({0, mem_len - n, mem_len - n + 1, mem_len, 32767, -1}):
            if not -32768 <= off <= 32767:
                continue
            check(f"ldx{size} %r0, [%r1{off:+d}]\nexit", mem)
            check(f"stx{size} [%r1{off:+d}], %r1\nldxb %r0, [%r1+0]\nexit", mem)


def test_three_byte_input_and_ldxw() -> None:
    out = check("ldxw %r0, [%r1+0]\nexit", b"abc")
    assert out.error == "fault:oob_read" and out.insn_count == 1
    assert check("ldxh %r0, [%r1+1]\nexit", b"abc").r0 == 0x6362


@pytest.mark.parametrize("off", [0, -1, -7, -8, -9, -512, -4088, -4089, -4096, -4097, 1, 8])
def test_stack_edges(off: int) -> None:
    for size in ("b", "h", "w", "dw"):
        check(f"stdw [%r10-8], 1\nst{size} [%r10{off:+d}], -1\nldx{size} %r0, [%r10{off:+d}]\nexit")
        check(f"lock add [%r10{off:+d}], %r10\nexit")


def test_address_arithmetic_wraps() -> None:
    check(f"lddw %r2, {(-32768 - 8) & M64 | 0:#x}\nldxdw %r0, [%r2-32768]\nexit")
    check(f"lddw %r2, {(STACK_TOP + 32768 - 8) & M64:#x}\nstdw [%r2-32768], 9\nldxdw %r0, [%r10-8]\nexit")
    check("lddw %r2, 0xffffffffffffffff\nldxb %r0, [%r2+1]\nexit")


_ATOMICS = [r for r in isa.TABLE if r.kind is Kind.ATOMIC]


@pytest.mark.parametrize("row", _ATOMICS, ids=[r.name for r in _ATOMICS])
def test_atomics_with_every_operand_pairing(row: isa.OpDef) -> None:
    for dst, src in ((10, 1), (10, 0), (2, 2), (0, 0), (2, 0), (0, 2), (10, 10), (1, 10), (6, 7)):
        for off in (-8, -12, -13):  # aligned, 4-aligned, misaligned
            setup = [Insn(isa.BY_NAME["lddw"], dst=r, imm=v) for r, v in
                     ((0, 0x0123456789ABCDEF), (1, 0xFEDCBA9876543210), (6, 0x00FF00FF00FF00FF),
                      (7, 0xF0F0F0F0F0F0F0F0))]
            setup += [Insn(isa.BY_NAME["stdw"], dst=10, off=-16, imm=0x0123456789ABCDEF & 0x7FFFFFFF),
                      Insn(isa.BY_NAME["stdw"], dst=10, off=-8, imm=-2)]
            if dst != 10:
                setup += [Insn(isa.BY_NAME["mov64_reg"], dst=dst, src=10)]
            if src == dst and dst != 10:
                pass
            elif src != 10 and src not in (0, 1, 6, 7):
                setup.append(Insn(isa.BY_NAME["mov64_imm"], dst=src, imm=0x55))
            body = setup + [Insn(row, dst=dst, src=src, off=off, imm=row.select[1]),
                            Insn(isa.BY_NAME["ldxdw"], dst=9, src=10, off=-16),
                            Insn(isa.BY_NAME["ldxdw"], dst=8, src=10, off=-8),
                            Insn(isa.BY_NAME["exit"])]
            check(decode_program(encode_program(body)))


def test_cmpxchg_success_and_failure_zero_extend_r0() -> None:
    for expect in ("0x7", "0x8", "0xffffffff00000007"):
        check(f"stdw [%r10-8], 7\nlddw %r0, {expect}\nmov %r1, 9\nlock cmpxchg32 [%r10-8], %r1\n"
              "ldxdw %r2, [%r10-8]\nexit")
        check(f"stdw [%r10-8], 7\nlddw %r0, {expect}\nmov %r1, 9\nlock cmpxchg [%r10-8], %r1\n"
              "ldxdw %r2, [%r10-8]\nexit")


def test_read_only_region_faults_writes_only() -> None:
    """A run with a read-only region: loads work, stores and atomics fault with oob_write
    (atomics load first, as in the interpreter)."""
    base = 0x0000_7E80_0000_0000

    def env() -> Environment:
        memory = standard_memory(b"\x01\x02\x03\x04\x05")
        memory.add(Region("ro", base, bytearray(b"\x10\x20\x30\x40\x50\x60\x70\x80\x90"), writable=False))
        return Environment(memory)

    for body in ("ldxdw %r0, [%r2+1]", "ldxdw %r0, [%r2+2]", "stxb [%r2+0], %r1", "lock add32 [%r2+4], %r1",
                 "lock add32 [%r2+8], %r1", "lock fetch xor [%r2+0], %r1", "ldxb %r0, [%r1+4]"):
        check(f"lddw %r2, {base:#x}\n{body}\nexit", b"\x01\x02\x03\x04\x05", env_factory=env)


def test_regions_added_by_a_helper_during_the_run() -> None:
    """Map helpers allocate elements (new regions) mid-run: the JIT sees them once the helper
    returns (the region table is rewritten), also beyond the two inline-checked regions, and a
    region sharing a page with an earlier one keeps both contents."""
    base = 0x0000_7E80_0000_0000

    def alloc(env: Environment, size: int, writable: int, *_: int) -> int:
        regions = env.memory.regions
        start = base + 0x10 * sum(r.name.startswith("heap") for r in regions) + (size > 64) * 0x3000
        env.memory.add(Region(f"heap{len(regions)}", start, bytearray(range(size & 0xFF)),
                              writable=bool(writable)))
        return start

    helpers = interpreter.DEFAULT_HELPERS.with_helpers(HelperDef(200, "test_alloc", alloc))
    text = """
        mov %r1, 12
        mov %r2, 1
        call 200
        mov %r6, %r0
        stdw [%r6+4], -1
        mov %r1, 16
        mov %r2, 0
        call 200
        mov %r7, %r0
        ldxdw %r8, [%r7+8]
        ldxdw %r9, [%r6+0]
        mov %r1, 200
        mov %r2, 1
        call 200
        ldxb %r0, [%r0+199]
        add %r0, %r9
        {tail}
        exit
    """
    for tail in ("", "stb [%r7+0], 1", "lock add [%r6+4], %r6", "ldxdw %r1, [%r6+5]", "ldxw %r1, [%r7+13]",
                 "lock fetch add32 [%r7+0], %r8"):
        check(text.format(tail=tail), helpers=helpers)
        check(text.format(tail=tail), b"input", helpers=helpers)


def test_maps_with_elements_allocated_mid_run() -> None:
    """Array and hash maps: lookups, an in-place update through the returned pointer, and a hash
    update that allocates the element (a new region) the next lookup returns."""
    from reference_vm.maps import MapSpec, MapType, add_map

    def env() -> Environment:
        e = Environment(standard_memory(None))
        a = add_map(e, MapSpec("arr", MapType.parse("array"), 4, 8, 4, 0, None))
        a.sys_update((1).to_bytes(4, "little"), (40).to_bytes(8, "little"))
        add_map(e, MapSpec("h", MapType.parse("hash"), 4, 8, 8, 0, None))
        return e

    text = """
        lddw_map_idx %r1, 0
        stw [%r10-4], 1
        mov %r2, %r10
        add %r2, -4
        call 1
        jeq %r0, 0, +3
        ldxdw %r6, [%r0+0]
        add %r6, 5
        stxdw [%r0+0], %r6
        lddw_map_idx %r1, 1
        stw [%r10-8], 7
        stdw [%r10-16], 99
        mov %r2, %r10
        add %r2, -8
        mov %r3, %r10
        add %r3, -16
        mov %r4, 0
        call 2
        lddw_map_idx %r1, 1
        mov %r2, %r10
        add %r2, -8
        call 1
        ldxdw %r0, [%r0+{off}]
        add %r0, %r6
        exit
    """
    for off in (8, 1, 4096, 0):
        out = check(text.format(off=off), env_factory=env)
    assert out.ok and out.r0 == 99 + 45
    assert out.maps["h"]["entries"] == {"07000000": "6300000000000000"}


WHOLE = """
cases:
  - name: lookup_and_count
    maps:
      - {name: counters, type: array, key_size: 4, value_size: 8, max_entries: 2,
         values: {1: "29 00 00 00 00 00 00 00"}}
    programs:
      main: |
        lddw_map_idx %r1, counters
        stw [%r10-4], 1
        mov %r2, %r10
        add %r2, -4
        call bpf_map_lookup_elem
        jeq %r0, 0, +4
        mov %r1, 1
        lock add [%r0+0], %r1
        ldxdw %r0, [%r0+0]
        exit
        mov %r0, 0
        exit
    expect: {r0: 42, maps: {counters: {"1": "2a 00 00 00 00 00 00 00"}}}
    provenance: {source: "the array map's lookup_elem and an atomic add"}
  - name: tail_call_taken
    prog_type: socket_filter   # bpf_tail_call needs the context in r1 (the verifier checks it)
    maps:
      - {name: jmp_table, type: prog_array, key_size: 4, value_size: 4, max_entries: 4,
         slots: {0: target}}
    programs:
      main: |
        lddw_map_idx %r2, jmp_table
        mov %r3, {index}
        call bpf_tail_call
        mov %r0, 1
        exit
      target: |
        mov %r0, 42
        exit
    expect: {r0: 42}
    provenance: {source: "kernel/bpf/core.c JMP_TAIL_CALL"}
"""


def test_whole_program_cases_through_the_targets(tmp_path: Path) -> None:
    """A map lookup and a tail call taken (index 0), falling through (an empty slot, an index
    past max_entries) through the targets: the full outcome of the interpreter's."""
    from conformance.case import load_cases
    from conformance.targets import get_target

    for index in (0, 1, 9):
        path = tmp_path / f"whole{index}.yaml"
        path.write_text(WHOLE.replace("{index}", str(index)))
        cases = load_cases([str(path)])
        interp = get_target("interpreter")
        for case in cases:
            want = interp.run(case, 10.0)
            if case.name == "tail_call_taken":
                assert want.ok and want.r0 == (42 if index == 0 else 1)
            for name in ("jit-x86_64", "jit-arm64"):
                got = get_target(name).run(case, 10.0)
                assert_same(want, got, f"{case.name} on {name}")


def _branches(compiled: c.Compiled, pc: int, arch: str) -> list[tuple[str, int, int, int]]:
    """(mnemonic, size, address, target) of the native instructions of ``pc``."""
    start = compiled.bodies[pc]
    end = min(s for s in compiled.starts if s > start)
    out = []
    for i in disassembler(arch).disasm(compiled.code[start:end], start):
        target = int(i.op_str.lstrip("#"), 16) if i.op_str.lstrip("#").startswith("0x") else -1
        out.append((i.mnemonic, i.size, i.address, target))
    return out


@pytest.mark.parametrize("n", [1, 29, 30, 31, 40, 9000])
def test_far_jumps_x86(n: int) -> None:
    """``add rax, 1`` is 4 bytes: a few dozen of them put the target beyond a rel8 Jcc, 9000 of
    them beyond 32767 bytes; relaxation picks rel8 exactly when it reaches."""
    for taken in (0, 1):
        text = f"mov %r1, {taken}\nmov %r0, 0\njeq %r1, 0, +{n}\n" + "add %r0, 1\n" * n + "add %r0, 100\nexit"
        check(text)
    compiled = jit.compile_program(prog(text), "x86_64")
    ((_, size, addr, target),) = [b for b in _branches(compiled, 2, "x86_64") if b[0] == "je"]
    assert target == compiled.starts[3 + n]
    assert (size == 2) == (-128 <= target - (addr + 2) < 128)
    assert size == 2 if n == 1 else size == 6 if n >= 31 else True
    back = prog("mov %r0, 0\nl:\n" + "add %r0, 1\n" * n + f"jlt %r0, {3 * n}, l\nexit")
    check(back)
    compiled = jit.compile_program(back, "x86_64")
    ((_, size, addr, target),) = [b for b in _branches(compiled, n + 1, "x86_64") if b[0] == "jb"]
    assert target == compiled.starts[1]
    assert (size == 2) == (-128 <= target - (addr + 2) < 128)
    assert size == 2 if n == 1 else size == 6 if n >= 31 else True


def _ins(name: str, **fields: int) -> Insn:
    return Insn(isa.BY_NAME[name], **fields)


def test_far_conditional_branch_arm64() -> None:
    """B.cond reaches +-1 MiB: a jump over 25000 checked stores (> 1 MiB of AArch64 code)
    becomes B.!cond +8; B target, forwards and backwards."""
    n = 25000
    stores = [_ins("stxdw", dst=10, src=0, off=-8)] * n

    def same(program: list[Insn | None], compiled: c.Compiled) -> None:
        assert_same(interpreter.run(program), jit.run(program, arch="arm64", compiled=compiled), "arm64")

    for taken in (0, 1):
        program = decode_program(encode_program(
            [_ins("mov64_imm", dst=1, imm=taken), _ins("mov64_imm", dst=0), _ins("jeq64_imm", dst=1, off=n)]
            + stores + [_ins("add64_imm", dst=0, imm=7), _ins("exit")]))
        compiled = jit.compile_program(program, "arm64")
        assert compiled.bodies[n + 3] - compiled.bodies[2] > 1 << 20
        assert [b[0] for b in _branches(compiled, 2, "arm64")] == ["cmp", "b.ne", "b"]
        same(program, compiled)
    back = decode_program(encode_program(
        [_ins("mov64_imm", dst=0), _ins("add64_imm", dst=0, imm=1)] + stores
        + [_ins("jlt64_imm", dst=0, imm=2, off=-(n + 2)), _ins("exit")]))
    compiled = jit.compile_program(back, "arm64")
    assert [b[0] for b in _branches(compiled, n + 2, "arm64")] == ["cmp", "b.hs", "b"]
    same(back, compiled)


def test_budget_stops_inside_a_block_exactly() -> None:
    text = "mov %r0, 0\nl:\nadd %r0, 1\nstxdw [%r10-8], %r0\nadd %r0, 1\njlt %r0, 100, l\nexit"
    for budget in range(0, 40):
        check(text, budget=budget)
    # a fault before the budget runs out wins; one after it does not happen
    for budget in range(0, 6):
        check("mov %r0, 1\nmov %r1, 2\nldxw %r2, [%r1+0]\nmov %r3, 4\nexit", budget=budget)
    check("mov %r0, 0\nl:\nadd %r0, 1\nja l", budget=1000)


def test_falling_off_the_end_and_lddw_counting() -> None:
    out = check("mov %r0, 1\nlddw %r1, 0x100000000")
    assert out.error == "fault:pc_out_of_range" and out.insn_count == 3
    for budget in range(4):
        check("mov %r0, 1\nlddw %r1, 0x100000000", budget=budget)


def test_bpf_to_bpf_calls() -> None:
    text = """
        mov %r6, 6
        mov %r9, 9
        stdw [%r10-8], 1
        call local f
        ldxdw %r1, [%r10-8]
        add %r0, %r1
        add %r0, %r6
        add %r0, %r9
        exit
    f:
        stdw [%r10-8], 100
        mov %r6, 0
        mov %r9, %r10
        call local g
        mov %r0, %r10
        exit
    g:
        mov %r6, %r10
        stxdw [%r10-16], %r6
        exit
    """
    check(text)
    assert check("f:\ncall local f\nexit").error == "fault:call_depth"
    for depth in (6, 7, 8):
        calls = "".join(f"f{k}:\nmov %r6, {k}\ncall local f{k + 1}\nadd %r0, %r6\nexit\n"
                        for k in range(depth))
        check("mov %r0, 0\ncall local f0\nexit\n" + calls + f"f{depth}:\nmov %r0, %r10\nexit")
    # r10 written by an atomic fetch (src = r10) is saved and restored like any value
    check("stdw [%r10-8], 64\nlock fetch add [%r10-8], %r10\ncall local f\nmov %r0, %r10\nexit\n"
          "f:\nmov %r0, %r10\nexit")


def test_helpers_and_clobbering() -> None:
    check("call 5\nmov %r6, %r0\ncall 5\nsub %r0, %r6\nexit")
    assert check("call 999999\nexit").error == "fault:unknown_helper"
    check("lddw %r1, 0x100000000\ncall %r1\nexit")
    check("mov %r4, 5\ncall %r4\nmov %r0, %r4\nexit")
    check("call 7\nmov %r6, %r0\ncall 8\ncall 14\ncall 15\nexit")
    # helpers reading and writing memory: trace_printk formats from the stack, get_current_comm
    # writes to it (the engine's memory is synchronised around the call)
    check("stdw [%r10-8], 0x0a6425\nmov %r1, %r10\nadd %r1, -8\nmov %r2, 8\nmov %r3, 42\ncall 6\n"
          "mov %r1, %r10\nadd %r1, -32\nmov %r2, 16\ncall 16\nldxdw %r0, [%r10-32]\nexit")
    check("mov %r1, %r10\nadd %r1, -8\nmov %r2, 16\ncall 16\nexit")
    # tail call without a prog array: fault:tail_call in both
    check("mov %r2, 0\nmov %r3, 0\ncall 12\nexit")


def test_packet_loads() -> None:
    mem = bytes(range(1, 40))
    for ins in ("ldabsb 3", "ldabsh 3", "ldabsw 3", "ldabsw 36", "ldabsw 37", "ldabsh -1"):
        check(f"mov %r0, 9\n{ins}\nadd %r0, 1\nexit", mem)
    for src in (1, 4):
        for value in ("2", "-2", "0x100000002", "36"):
            for ins in (f"ldindb %r{src}, 1", f"ldindh %r{src}, 1", f"ldindw %r{src}, 0"):
                check(f"lddw %r{src}, {value}\n{ins}\nadd %r0, 1\nexit", mem)
    check("ldabsb 0\nexit")


def test_pseudo_lddw_and_kfunc() -> None:
    raw = [isa.BY_NAME["lddw_func"], isa.BY_NAME["lddw_map_fd"], isa.BY_NAME["lddw_btf_id"]]
    for row in raw:  # lddw_func's imm is pc-relative: +1 is the exit
        body = [Insn(isa.BY_NAME["mov64_imm"], dst=0, imm=1), Insn(row, dst=3, src=row.select[1], imm=1),
                Insn(isa.BY_NAME["exit"])]
        check(decode_program(encode_program(body)))
    kfunc = isa.BY_NAME["call_kfunc"]
    body = [Insn(kfunc, src=kfunc.select[1], imm=7), Insn(isa.BY_NAME["exit"])]
    check(decode_program(encode_program(body)))


def test_bpf_loop_runs_its_callbacks() -> None:
    """bpf_loop (helper 181) calls back into the program natively, once per iteration
    (tests/test_jit_programs.py has the edge cases)."""
    out = check("mov %r1, 3\nlddw_func %r2, cb\nmov %r3, 0\nmov %r4, 0\ncall 181\nexit\n"
                "cb:\nmov %r0, 0\nexit")
    assert out.ok and out.r0 == 3 and out.helper_calls[-1][0] == 181


def test_may_goto_budget_is_bpf_max_loops() -> None:
    """may_goto falls through BPF_MAX_LOOPS (8M) times, then jumps (about 25M instructions)."""
    out = check("mov %r0, 0\nl:\nmay_goto +2\nadd %r0, 1\nja l\nexit", budget=30_000_000,
                configs=CONFIGS[:2])
    assert out.ok and out.r0 == interpreter.BPF_MAX_LOOPS


def test_engine_reuse_and_code_area_wrap() -> None:
    """A fresh engine whose code area is nearly full: loading wraps, drops the translation
    cache, and old and new programs still run correctly."""
    for arch in ("x86_64", "arm64"):
        eng = Engine(arch)
        programs = [prog(f"mov %r0, {k}\nadd %r0, %r2\nexit") for k in range(4)]
        compiled = [jit.compile_program(p, arch) for p in programs]
        regs = [0, MEM_BASE, 3] + [0] * 7 + [STACK_TOP]

        def run(k: int, eng=eng, compiled=compiled, regs=regs):
            env = Environment(standard_memory(b"abc"))
            return eng.run(compiled[k], env, regs, budget=100, helpers=interpreter.DEFAULT_HELPERS)

        assert [run(k).r0 for k in range(4)] == [3, 4, 5, 6]
        eng._next = c.CODE_BASE + c.CODE_SIZE - 64  # force the next load to wrap
        eng._resident.clear()
        assert [run(k).r0 for k in (3, 2, 1, 0, 3)] == [6, 5, 4, 3, 6]
        assert eng._next < c.CODE_BASE + 4096


def test_memory_window_grows_with_larger_inputs() -> None:
    for n in (1, 5000, 3, 70000, 0, 4096):
        mem = bytes(k & 0xFF for k in range(n))
        check(f"mov %r2, %r1\nadd %r2, {max(n - 1, 0)}\nldxb %r0, [%r2+0]\nstxb [%r1+0], %r0\n"
              "ldxb %r3, [%r2+1]\nexit", mem)


# --- Emitters checked with capstone ---------------------------------------------------------------

def test_x86_emitters_decode_as_intended() -> None:
    cs = disassembler("x86_64")
    cases = [
        (x86_64.store(1, x86_64.RAX, 0, x86_64.RSI), "mov byte ptr [rax], sil"),
        (x86_64.store(1, x86_64.R11, 0, x86_64.RDI), "mov byte ptr [r11], dil"),
        (x86_64.store(1, x86_64.R13, 0, x86_64.RBP), "mov byte ptr [r13], bpl"),
        (x86_64.lea(x86_64.R11, x86_64.R13, 0), "lea r11, [r13]"),
        (x86_64.lea(x86_64.R11, x86_64.RBP, -8), "lea r11, [rbp - 8]"),
        (x86_64.lea(x86_64.R11, x86_64.R12, 0), "lea r11, [r12]"),
        (x86_64.lea(x86_64.R11, x86_64.RSP, 300), "lea r11, [rsp + 0x12c]"),
        (x86_64.load(8, x86_64.RAX, None, 0x1060), "mov rax, qword ptr [0x1060]"),
        (x86_64.movsx_rr(32, x86_64.RAX, x86_64.RSI, 8), "movsx eax, sil"),
        (x86_64.movzx_rr(x86_64.R13, x86_64.R13, 16), "movzx r13d, r13w"),
        (x86_64.rol16(x86_64.R14, 8), "rol r14w, 8"),
        (x86_64.bswap(32, x86_64.R15), "bswap r15d"),
        (x86_64.alu_ri(x86_64.CMP, 64, x86_64.RDI, -0x80000000), "cmp rdi, -0x80000000"),
        (x86_64.lock_cmpxchg(32, x86_64.R11, x86_64.RBX), "lock cmpxchg dword ptr [r11], ebx"),
        (x86_64.lock_xadd(64, x86_64.R11, x86_64.R8), "lock xadd qword ptr [r11], r8"),
        (x86_64.mov_ri64(x86_64.R9, 0x1122334455667788), "movabs r9, 0x1122334455667788"),
        (x86_64.shift_cl(x86_64.SAR, 32, x86_64.R11), "sar r11d, cl"),
        (x86_64.div(True, 64, x86_64.R11), "idiv r11"),
    ]
    for code, text in cases:
        got = [f"{i.mnemonic} {i.op_str}" for i in cs.disasm(code, 0)]
        assert got == [text], (code.hex(), got, text)


def _decode_bit_masks(n: int, immr: int, imms: int, width: int) -> int | None:
    """Arm ARM DecodeBitMasks (the pseudocode), for checking the encoder."""
    combined = (n << 6) | (~imms & 0x3F)
    if combined == 0:
        return None
    length = combined.bit_length() - 1
    size = 1 << length
    if size > width:
        return None
    levels = size - 1
    s, r = imms & levels, immr & levels
    if s == levels:
        return None
    elem = (1 << (s + 1)) - 1
    elem = ((elem >> r) | (elem << (size - r))) & ((1 << size) - 1)
    value = 0
    for k in range(width // size):
        value |= elem << (k * size)
    return value


@pytest.mark.parametrize("width", [32, 64])
def test_arm64_logical_immediates_round_trip(width: int) -> None:
    cs = disassembler("arm64")
    found: set[int] = set()
    for n in ((0, 1) if width == 64 else (0,)):
        for immr in range(64 if width == 64 else 32):
            for imms in range(64):
                value = _decode_bit_masks(n, immr, imms, width)
                if value is None or value in found:
                    continue
                found.add(value)
                fields = arm64.bitmask_imm(value, width)
                assert fields is not None and _decode_bit_masks(*fields, width) == value, hex(value)
                if len(found) % 97 == 0:
                    word = arm64.logical_imm(arm64.AND_, width // 64, 1, 2, fields)
                    (ins,) = cs.disasm(word, 0)
                    assert int(ins.op_str.split("#")[1], 16) == value
    assert len(found) == (5334 if width == 64 else 1302)  # the A64 logical immediates
    assert arm64.bitmask_imm(0, width) is None and arm64.bitmask_imm((1 << width) - 1, width) is None
    assert arm64.bitmask_imm(0b101, width) is None


def test_arm64_emitters_decode_as_intended() -> None:
    cs = disassembler("arm64")
    cases = [
        (arm64.lse(arm64.LSE_ADD, 3, 1, 1, 10), "ldaddal x1, x1, [x10]"),
        (arm64.lse(arm64.LSE_CLR, 2, 11, 31, 10, ordered=False), "stclr w11, [x10]"),
        (arm64.lse(arm64.LSE_SWP, 2, 0, 0, 10), "swpal w0, w0, [x10]"),
        (arm64.casal(3, 7, 19, 10), "casal x7, x19, [x10]"),
        (arm64.ldaxr(2, 11, 10), "ldaxr w11, [x10]"),
        (arm64.stlxr(3, 13, 12, 10), "stlxr w13, x12, [x10]"),
        (arm64.ldar_stlr(True, 1, 7, 10), "ldarh w7, [x10]"),
        (arm64.ldst(0, 2, 0, 10), "ldrsb x0, [x10]"),
        (arm64.bitfield(arm64.SBFM, 0, 7, 1, 0, 15), "sxth w7, w1"),
        (arm64.bitfield(arm64.UBFM, 1, 7, 7, 60, 59), "lsl x7, x7, #4"),
        (arm64.madd_msub(True, 1, 7, 12, 0, 7), "msub x7, x12, x0, x7"),
        (arm64.rev(arm64.REV16, 3, 3), "rev16 w3, w3"),
        (arm64.stp_pre(25, 30, arm64.SP, -16), "stp x25, x30, [sp, #-0x10]!"),
        (arm64.ldp_post(19, 20, arm64.SP, 16), "ldp x19, x20, [sp], #0x10"),
        (arm64.add_sub_imm(False, True, 0, arm64.ZR, 7, 1), "cmn w7, #1"),
    ]
    for code, text in cases:
        got = [f"{i.mnemonic} {i.op_str}" for i in cs.disasm(code, 0)]
        assert got == [text], (code.hex(), got, text)
    for value in (0, 1, 0xFFFF, 0x10000, 0xFFFF_FFFF, M64, 0x8000_0000_0000_0000, 0x1234_0000_5678_0000,
                  0xFFFF_1234_FFFF_FFFF):
        for sf in (0, 1):
            v = value & (M64 if sf else 0xFFFF_FFFF)
            acc = 0
            for ins in cs.disasm(arm64.mov_imm(sf, 5, v), 0):
                assert ins.mnemonic in ("mov", "movk", "movn", "movz"), ins.mnemonic
            # evaluate the sequence with the engine-free model of MOVZ/MOVN/MOVK
            for k in range(0, len(arm64.mov_imm(sf, 5, v)), 4):
                word = struct.unpack_from("<I", arm64.mov_imm(sf, 5, v), k)[0]
                opc, hw, imm16 = (word >> 29) & 3, (word >> 21) & 3, (word >> 5) & 0xFFFF
                mask = M64 if sf else 0xFFFF_FFFF
                if opc == arm64.MOVZ:
                    acc = imm16 << (16 * hw)
                elif opc == arm64.MOVN:
                    acc = ~(imm16 << (16 * hw)) & mask
                else:
                    acc = (acc & ~(0xFFFF << (16 * hw))) | (imm16 << (16 * hw))
            assert acc == v, hex(v)


# --- Random programs -----------------------------------------------------------------------------

_VALUES = [0, 1, -1, 2, 7, 8, 31, 32, 63, 64, 0xFF, 0x7FFF, 0x8000, 0x7FFFFFFF, -0x80000000, -8, -512, 4096]
_V64 = [0, 1, M64, 1 << 63, (1 << 63) - 1, 0x80000000, 0xFFFFFFFF, 0x1_0000_0000, 0xFFFFFFFF_00000000]
_STRAIGHT = [r for r in isa.TABLE if r.executable and r.kind not in
             (Kind.JA, Kind.JCOND, Kind.MAY_GOTO, Kind.CALL_LOCAL, Kind.EXIT, Kind.CALL, Kind.CALLX)]
_BRANCHING = [r for r in isa.TABLE if r.executable]
_HELPERS = [5, 7, 8, 14, 15, 6, 16, 999]


@st.composite
def _program(draw, rows) -> tuple[list[Insn | None], bytes | None, int]:
    """A valid program: registers seeded with interesting values, a body drawn from ``rows``,
    memory accesses mostly inside the stack or the input, jumps to real instructions."""
    mem = draw(st.none() | st.binary(max_size=24))
    insns: list[Insn] = []
    for r in draw(st.lists(st.integers(0, 9), max_size=4, unique=True)):
        insns.append(Insn(isa.BY_NAME["lddw"], dst=r, imm=draw(st.sampled_from(_V64) | st.integers(0, M64))))
    jumps: list[int] = []
    for _ in range(draw(st.integers(1, 16))):
        row = draw(st.sampled_from(rows))
        f: dict[str, int] = {}
        for name in ("dst", "src", "imm", "off"):
            use = getattr(row.shape, name)
            if use is Use.SELECT:
                f[name] = row.select[1]
            elif use is Use.BASE:
                f[name] = draw(st.sampled_from([10, 10, 10, 1, 1, 2, 6]))
            elif use is Use.READ:
                f[name] = draw(st.integers(0, 10))
            elif use is Use.WRITE:
                f[name] = draw(st.integers(0, 9))
            elif use is Use.VALUE:
                f[name] = draw(st.sampled_from(_VALUES) | st.integers(-(1 << 31), (1 << 31) - 1))
            elif use is Use.HELPER:
                f[name] = draw(st.sampled_from(_HELPERS))
            elif use is Use.MEMOFF:
                base = f["dst"] if row.shape.dst is Use.BASE else f["src"]
                size = max(row.size, 1)
                if base == 10:
                    f[name] = -draw(st.integers(size, 512 if draw(st.booleans()) else 4096))
                else:
                    f[name] = draw(st.integers(-2, 24))
            else:
                f[name] = 0
        if row.kind is Kind.LDDW:
            f["imm"] = draw(st.sampled_from(_V64) | st.integers(0, M64))
        if row.shape.off is Use.JUMP or row.shape.imm is Use.JUMP:
            jumps.append(len(insns))
        insns.append(Insn(row, **f))
    insns.append(Insn(isa.BY_NAME["exit"]))
    slots = []
    pos = 0
    for insn in insns:
        slots.append(pos)
        pos += insn.op.slots
    for k in jumps:  # point every jump at a real instruction (mostly forwards)
        target = draw(st.integers(max(0, k - 4), len(insns) - 1) if draw(st.integers(0, 3)) else
                      st.integers(k + 1, len(insns) - 1))
        delta = slots[target] - slots[k] - 1
        row = insns[k].op
        field = "imm" if row.shape.imm is Use.JUMP else "off"
        if field == "off" and not -32768 <= delta < 32768:
            delta = 0
        old = insns[k]
        insns[k] = Insn(row, dst=old.dst, src=old.src, off=delta if field == "off" else old.off,
                        imm=delta if field == "imm" else old.imm)
    program = decode_program(encode_program(insns))
    for pc, insn in enumerate(program):
        if insn is not None and jump_target(insn, pc) is not None:
            assert program[jump_target(insn, pc)] is not None
    budget = draw(st.sampled_from([1000, 1000, 200, 17, 3]))
    return program, mem, budget


@settings(max_examples=300, deadline=None)
@given(_program(_STRAIGHT))
def test_random_straight_line_programs_agree(case) -> None:
    program, mem, budget = case
    event(check(program, mem, budget=budget).error)


@settings(max_examples=300, deadline=None)
@given(_program(_BRANCHING))
def test_random_branching_programs_agree(case) -> None:
    program, mem, budget = case
    event(check(program, mem, budget=budget).error)
