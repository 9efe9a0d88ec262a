"""The JITs on whole runs, against the interpreter's full outcome (error class, r0-r10, memory,
instruction count, exit pc, helper calls, maps, ring buffers, trace):

* every case of every corpus under ``corpora/`` (collected when the tests are collected, so new
  corpus files are covered without touching this file), on x86-64, arm64 and arm64 without LSE;
* several programs in one pc space: entry programs other than the first, ``lddw`` function
  addresses, tail calls taken natively (from subprograms and callbacks too) with Linux's count;
* ``bpf_loop`` callbacks with the interpreter's budget accounting, at every budget around the
  edges; faults, exits and budget exhaustion inside callbacks, nested loops, odd targets;
* ring buffers (the mirror mapped onto the same host memory), joined regions in general;
* converted context pointer fields; regions at kernel-half addresses; the trampoline model with
  the JIT as its engine; the wall-clock bound;
* random multi-program runs with tail calls and callbacks (hypothesis).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from conformance.case import find_case_files, load_cases
from conformance.targets.interpreter import InterpreterTarget
from conformance.targets.jit import JitTarget
from conformance.wholeprog import helper_symbols
from reference_vm import interpreter, isa, jit
from reference_vm.asm import assemble
from reference_vm.contexts import build_context
from reference_vm.env import Environment
from reference_vm.insn import Insn, decode_program, encode_program, jump_target
from reference_vm.isa import Kind, Use
from reference_vm.jit import runtime
from reference_vm.maps import MapSpec, MapType, add_map
from reference_vm.memory import MEM_BASE, Region, standard_memory

ROOT = Path(__file__).resolve().parents[1]
CORPORA = ROOT / "corpora"
#: Every case file of every corpus, as the runner finds them (``bpfcheck run corpora``).
CORPUS_FILES = find_case_files([str(CORPORA)]) if CORPORA.is_dir() else []
#: (test id, architecture, backend options)
CONFIGS = [("x86_64", "x86_64", {}), ("arm64", "arm64", {}), ("arm64-llsc", "arm64", {"lse": False})]
FIELDS = ("error", "r0", "regs", "memory", "insn_count", "exit_pc", "helper_calls", "maps", "ringbuf",
          "trace")
M64 = (1 << 64) - 1
BUDGET_EDGES = [*range(0, 40), 1000]


def assert_same(want, got, what: str = "") -> None:
    """Full-state equality (everything but the free-text message and ``extra``)."""
    diffs = [f"{f}: {getattr(want, f)!r} != {getattr(got, f)!r}" for f in FIELDS
             if getattr(want, f) != getattr(got, f)]
    assert not diffs, f"{what}\n" + "\n".join(diffs) + f"\ninterpreter: {want.message}\njit: {got.message}"


def prog(src: str, symbols: dict[str, int] | None = None) -> list[Insn | None]:
    """Assemble with helper names (``call bpf_loop``) and ``symbols`` (map names)."""
    return decode_program(encode_program(assemble(src, symbols={**helper_symbols(), **(symbols or {})})))


# --- Every corpus ---------------------------------------------------------------------------------

def _uses_atomics(path: str) -> bool:
    return "atomic" in path or path.endswith((".yaml", ".yml"))


@pytest.mark.parametrize("path", CORPUS_FILES, ids=[str(Path(p).relative_to(CORPORA)) for p in CORPUS_FILES])
def test_every_corpus_case_gives_the_interpreters_full_outcome(
    path: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each case of the file through the targets (whole-program cases included: maps, entry
    contexts, tail calls, callbacks, ring buffers, trampolines), as ``bpfcheck run`` runs them.
    The targets share verifier results as a run's workers do (conformance/verify_cache.py).
    Cases that ask for a longer timeout to be loaded (the verifier's complexity limit: tens of
    seconds each, the same rejection on every engine) are left to ``tox -e conformance``."""
    monkeypatch.setenv("BPFCHECK_VERIFY_CACHE", str(tmp_path))
    try:
        cases = load_cases([path])
    except Exception as e:  # a corpus file being written: nothing runs it, not even the interpreter
        pytest.skip(f"does not load: {e}")
    cases = [c for c in cases if c.whole is None or "timeout" not in c.whole.options]
    interp = InterpreterTarget()
    targets = [(name, JitTarget(arch, **opts)) for name, arch, opts in CONFIGS
               if not opts or _uses_atomics(path)]
    for case in cases:
        want = interp.run(case, 60.0)
        for name, target in targets:
            assert_same(want, target.run(case, 60.0), f"{case.name} on {name}")


def test_the_corpus_collection_sees_every_corpus() -> None:
    folders = {Path(p).relative_to(CORPORA).parts[0] for p in CORPUS_FILES}
    assert {"bpf_conformance", "generated", "trampolines", "elf"} <= folders
    assert sum(p.endswith(".data") for p in CORPUS_FILES) >= 6000
    assert sum(p.endswith(".yaml") for p in CORPUS_FILES) >= 5


# --- Running several programs ----------------------------------------------------------------------

def _prog_array_env(slots: dict[int, str], mem: bytes | None = None,
                    size: int = 4) -> Callable[[], Environment]:
    def make() -> Environment:
        env = Environment(standard_memory(mem))
        bmap = add_map(env, MapSpec("jmp", MapType.parse("prog_array"), 4, 4, size, 0, None))
        for index, name in slots.items():
            bmap.set(index, name)
        return env
    return make


def compare(programs: list[tuple[str, str]], entry: str | None = None, *, budgets=(1000,),
            slots: dict[int, str] | None = None, mem: bytes | None = None,
            empty_slot_consumes_budget: bool = False, configs=CONFIGS):
    """Run ``programs`` (assembly) on the interpreter and every JIT configuration at every
    budget, with a prog array ``jmp`` (map 0) holding ``slots``; returns the last oracle."""
    decoded = [(name, prog(text, {"jmp": 0})) for name, text in programs]
    entry = entry or decoded[0][0]
    make = _prog_array_env(slots or {}, mem)
    r1, r2 = (MEM_BASE, len(mem)) if mem is not None else (0, 0)
    want = None
    for budget in budgets:
        want = interpreter.run_programs(decoded, entry, make(), r1=r1, r2=r2, budget=budget,
                                        empty_slot_consumes_budget=empty_slot_consumes_budget)
        for name, arch, opts in configs:
            got = jit.run_programs(decoded, entry, make(), r1=r1, r2=r2, budget=budget, arch=arch,
                                   options=opts, empty_slot_consumes_budget=empty_slot_consumes_budget)
            assert_same(want, got, f"{name}, budget {budget}")
    return want


def test_entry_programs_other_than_the_first_and_function_addresses() -> None:
    """The interpreter's numbering: a program's pcs follow the previous program and its END,
    so lddw function addresses are absolute and exit pcs local."""
    a = "mov %r0, 1\nexit"
    b = "mov %r0, 2\nlddw_func %r3, f\nmov %r0, %r3\nexit\nf:\nexit"
    out = compare([("a", a), ("b", b), ("c", "ja +0\nmov %r0, 3")], "b")
    assert out.r0 == interpreter.FUNC_BASE + 8 * (3 + 5) and out.exit_pc == 4
    out = compare([("a", a), ("b", b), ("c", "ja +0\nmov %r0, 3")], "c", budgets=BUDGET_EDGES[:6])
    assert out.error == "fault:pc_out_of_range" and out.exit_pc == 2


TAIL = """
    mov %r6, 1
    stdw [%r10-8], 5
    lddw_map_idx %r2, jmp
    mov %r3, {index}
    call bpf_tail_call
    mov %r0, 77
    exit
"""
TARGETS = [("t1", "ldxdw %r0, [%r10-8]\nadd %r0, %r1\nadd %r0, %r6\nexit"), ("t2", "mov %r0, 42\nexit")]


@pytest.mark.parametrize("index", [0, 1, 2, 3, 4, -1])
@pytest.mark.parametrize("empty_slot_consumes_budget", [False, True])
def test_tail_calls_every_way_out(index: int, empty_slot_consumes_budget: bool) -> None:
    """Taken (same frame: r1, r6-r10 and the stack kept; r0, r2-r5 clobbered), an empty slot, an
    index past max_entries, into the caller itself; at every budget around the call."""
    compare([("main", TAIL.format(index=index)), *TARGETS], slots={0: "t1", 2: "t2", 3: "main"},
            budgets=BUDGET_EDGES, mem=b"xyz", empty_slot_consumes_budget=empty_slot_consumes_budget)


SELF_TAIL = """
    ldxdw %r0, [%r10-8]
    add %r0, 1
    stxdw [%r10-8], %r0
    lddw_map_idx %r2, jmp
    mov %r3, 0
    call bpf_tail_call
    ldxdw %r0, [%r10-8]
    exit
"""


def test_tail_calls_are_taken_natively_up_to_the_limit(monkeypatch) -> None:
    """33 tail calls (Linux MAX_TAIL_CALL_CNT) are taken by the native code; only the 34th, which
    falls through, goes to Python."""
    slow: list[int] = []
    python_path = runtime._Run._tail_call

    def spy(self, pc, regs):
        slow.append(pc)
        return python_path(self, pc, regs)

    monkeypatch.setattr(runtime._Run, "_tail_call", spy)
    out = compare([("main", SELF_TAIL)], slots={0: "main"}, budgets=(1000, 100, 293, 294, 295))
    assert out.ok and out.r0 == 34
    assert [h[2] for h in out.helper_calls] == [1] * 33 + [0]
    slow.clear()
    out = jit.run_programs([("main", prog(SELF_TAIL, {"jmp": 0}))], "main", _prog_array_env({0: "main"})())
    assert out.r0 == 34 and len(slow) == 1


def test_tail_calls_from_subprograms_and_callbacks() -> None:
    """From a bpf-to-bpf callee the target reuses the callee's frame and its exit returns to the
    caller (Linux allows this since 5.10); from a callback it returns to bpf_loop."""
    sub = """
        mov %r6, 5
        call local f
        add %r0, %r6
        exit
    f:
        mov %r6, 9
        stxdw [%r10-8], %r6
        lddw_map_idx %r2, jmp
        mov %r3, 0
        call bpf_tail_call
        mov %r0, 1
        exit
    """
    target = ("t", "ldxdw %r0, [%r10-8]\nmov %r6, 1000\nexit")
    out = compare([("main", sub), target], slots={0: "t"}, budgets=BUDGET_EDGES[:16] + [1000])
    assert out.ok and out.r0 == 9 + 5
    callback = """
        mov %r1, 3
        lddw_func %r2, cb
        mov %r3, 0
        mov %r4, 0
        call bpf_loop
        exit
    cb:
        lddw_map_idx %r2, jmp
        mov %r3, 0
        call bpf_tail_call
        mov %r0, 1
        exit
    """
    out = compare([("main", callback), ("t", "mov %r0, 0\nexit")], slots={0: "t"}, budgets=BUDGET_EDGES)
    assert out.ok and out.r0 == 3
    compare([("main", callback)], slots={0: "main"}, budgets=(1000, 5000))  # nesting to call_depth


def test_tail_call_faults_and_declines() -> None:
    compare([("main", "mov %r2, 0\nmov %r3, 0\ncall bpf_tail_call\nexit")])  # not a prog array
    compare([("main", "lddw_map_idx %r2, jmp\nlddw %r3, 0x100000000\ncall bpf_tail_call\nmov %r0, 3\nexit"),
             ("t", "exit")], slots={0: "t"})  # the index is a u32: 0x100000000 is slot 0
    # a slot naming a program the run does not have: unsupported, never a different result
    out = jit.run_programs([("main", prog(TAIL.format(index=0), {"jmp": 0}))], "main",
                           _prog_array_env({0: "elsewhere"})())
    assert out.error == "unsupported" and "elsewhere" in out.message


# --- bpf_loop ---------------------------------------------------------------------------------------

LOOP = """
    mov %r6, 7
    mov %r1, {n}
    lddw_func %r2, cb
    mov %r3, 5
    mov %r4, {flags}
    call bpf_loop
    add %r0, %r6
    exit
cb:
    mov %r6, 100
    add %r0, %r1
    {body}
    mov %r0, {ret}
    exit
"""
CALLBACK_BODIES = ["", "stxdw [%r10-8], %r1\nldxdw %r2, [%r10-8]", "ldxdw %r2, [%r10+8]", "ldabsb 100",
                   "call 5", "call 999", "call local g\nja +2\ng:\nmov %r0, %r10\nexit"]


@pytest.mark.parametrize("body", CALLBACK_BODIES)
@pytest.mark.parametrize("n", [0, 1, 3])
def test_bpf_loop_budget_accounting_at_every_edge(body: str, n: int) -> None:
    """Each callback invocation has the whole budget to itself, the instructions of callbacks
    count at the end (an ok over budget becomes ``budget``), running out inside a callback is
    reported at the bpf_loop's pc; faults and LD_ABS exits inside callbacks are reported there
    too, without the instruction each unwound level was executing (the interpreter's rules)."""
    for ret in (0, 1):
        compare([("main", LOOP.format(n=n, body=body, ret=ret, flags=0))], budgets=BUDGET_EDGES,
                mem=b"abc")


def test_bpf_loop_arguments() -> None:
    assert compare([("main", LOOP.format(n=3, body="", ret=0, flags=1))]).r0 == (-22 + 7) & M64
    assert compare([("main", LOOP.format(n=0x800001, body="", ret=0, flags=0))]).r0 == (-7 + 7) & M64
    for r2 in ("0", "0x7e0000000001", "0x7e0000100000", "0x7e0000000000"):  # callback addresses
        compare([("main", f"mov %r1, 1\nlddw %r2, {r2}\nmov %r3, 0\nmov %r4, 0\ncall bpf_loop\nexit")],
                budgets=(5, 1000))


@pytest.mark.parametrize("offset", [0, 8, 16, 24, 32, 40, 48, 56, 64, 72, 80])
def test_bpf_loop_callbacks_at_any_pc(offset: int) -> None:
    """A callback address may point anywhere: mid-block (the rest of the block is counted on
    entry), at an lddw's second slot or a program's END (both fault), into another program."""
    src = f"""
        lddw %r2, {interpreter.FUNC_BASE + offset:#x}
        mov %r1, 2
        mov %r3, 0
        mov %r4, 0
        call bpf_loop
        exit
        lddw %r0, 5
        mov %r0, 3
        add %r0, 1
        exit
    """
    compare([("main", src), ("other", "mov %r0, 0\nexit")], budgets=BUDGET_EDGES[:20] + [1000])


def test_nested_bpf_loops_and_the_call_depth() -> None:
    nest = """
        mov %r1, 2
        lddw_func %r2, cb
        mov %r3, 0
        mov %r4, 0
        call bpf_loop
        exit
    cb:
        stxdw [%r10-8], %r10
        mov %r1, 2
        lddw_func %r2, cb
        mov %r3, 0
        mov %r4, 0
        call bpf_loop
        exit
    """
    out = compare([("main", nest)], budgets=[*range(0, 60, 3), 1000])
    assert out.error == "fault:call_depth"
    limited = """
        mov %r1, 2
        lddw_func %r2, cb
        mov %r3, 3
        mov %r4, 0
        call bpf_loop
        exit
    cb:
        jeq %r2, 0, leaf
        mov %r3, %r2
        sub %r3, 1
        mov %r1, 2
        lddw_func %r2, cb
        mov %r4, 0
        call bpf_loop
        exit
    leaf:
        mov %r0, %r1
        exit
    """
    out = compare([("main", limited)], budgets=[*range(0, 80, 3), 1000])
    assert out.ok and out.r0 == 1  # the inner levels return 2, which stops each outer loop at once


# --- Memory: ring buffers, joined regions, contexts, kernel addresses ------------------------------------

RINGBUF = """
    mov %r6, 0
    lddw_map_idx %r1, 1
    mov %r2, {n}
    mov %r3, 0
    call bpf_ringbuf_reserve
    jeq %r0, 0, done
    mov %r6, %r0
    {body}
    mov %r1, %r6
    mov %r2, 0
    call bpf_ringbuf_submit
done:
    mov %r0, %r6
    exit
"""


def _ringbuf_env(pos: int, size: int) -> Callable[[], Environment]:
    def make() -> Environment:
        env = Environment(standard_memory(b"0123456789"))
        add_map(env, MapSpec("arr", MapType.parse("array"), 4, 8, 4, 0, None))
        rb = add_map(env, MapSpec("rb", MapType.parse("ringbuf"), 0, 0, size, 0, None))
        rb.rb.producer_pos = rb.rb.consumer_pos = rb.rb.pending_pos = pos  # type: ignore[attr-defined]
        return env
    return make


def _same_on_jits(program: list[Insn | None], make: Callable[[], Environment], **kwargs) -> object:
    want = interpreter.run_programs([("m", program)], "m", make(), **kwargs)
    for name, arch, opts in CONFIGS:
        got = jit.run_programs([("m", program)], "m", make(), arch=arch, options=opts, **kwargs)
        assert_same(want, got, name)
    return want


@pytest.mark.parametrize("size", [4096, 8192])
def test_ring_buffer_records_wrap_through_the_mirror(size: int) -> None:
    """A record reserved near the end of the ring lies partly in the mirror: the program writes it
    through the mirror's addresses (one host buffer mapped twice), straddles the boundary with
    misaligned 8-byte accesses and atomics, and reads past the mirror's end (a fault)."""
    bodies = ["stdw [%r6+0], 0x1111", "stdw [%r6+56], -1\nstw [%r6+60], 7",
              "lddw %r7, 0x0102030405060708\nstxdw [%r6+4], %r7\nldxdw %r8, [%r6+4]", "ldxdw %r9, [%r6-8]",
              "lock add [%r6+0], %r6", "lock fetch add32 [%r6+62], %r6", f"ldxdw %r9, [%r6+{2 * size - 8}]",
              f"stxdw [%r6+{2 * size - 8}], %r6"]
    for pos in (0, size - 8, size - 16, size - 72, 2 * size - 8):
        for n in (8, 60, 64):
            for body in bodies:
                _same_on_jits(prog(RINGBUF.format(n=n, body=body)), _ringbuf_env(pos, size))
    base = _ringbuf_env(0, size)().maps[1].rb.data_base  # type: ignore[attr-defined]
    for off in (-8, -1, 0, size - 8, size - 4, size - 1, size, 2 * size - 8, 2 * size - 4, 2 * size):
        for ins in ("ldxdw %r0, [%r2+0]", "stxdw [%r2+0], %r2", "lock add [%r2+0], %r2", "ldxb %r0, [%r2+0]"):
            _same_on_jits(prog(f"lddw %r2, {base + off:#x}\n{ins}\nexit"), _ringbuf_env(0, size))


def test_engine_memory_is_remapped_between_layouts() -> None:
    """A ring buffer's double mapping, then a run with an ordinary region where the mirror was,
    then the ring buffer again: the engine never leaves an alias where a region needs its own
    bytes."""
    make = _ringbuf_env(4088, 4096)
    mirror = make().maps[1].rb.mirror.start  # type: ignore[attr-defined]
    ring = prog(RINGBUF.format(n=64, body="stdw [%r6+0], 0x1111"))

    def plain() -> Environment:
        env = Environment(standard_memory(None))
        env.memory.add(Region("plain", mirror + 16, bytearray(b"\x05" * 8192)))
        return env

    other = prog(f"lddw %r2, {mirror + 16:#x}\nldxdw %r0, [%r2+4096]\nstxdw [%r2+0], %r2\nexit")
    for _ in range(2):
        _same_on_jits(ring, make)
        _same_on_jits(other, plain)


_BASE = 0x0000_7E80_0000_0000


@st.composite
def _joined_regions(draw):
    """Two to four regions back to back (some joined to the next, some read-only), maybe one
    apart, and accesses around their boundaries."""
    layout, at = [], _BASE + draw(st.integers(0, 64))
    for k in range(draw(st.integers(2, 4))):
        length = draw(st.integers(1, 24))
        layout.append((f"r{k}", at, length, draw(st.booleans()) or k == 0, draw(st.booleans())))
        at += length + (draw(st.sampled_from([0, 0, 0, 3])) if k else 0)
    edges = sorted({at - _BASE for _, start, n, _, _ in layout for at in (start, start + n)})
    accesses = []
    for _ in range(draw(st.integers(1, 3))):
        row = draw(st.sampled_from(["ldxb", "ldxh", "ldxw", "ldxdw", "stxb", "stxh", "stxw", "stxdw",
                                    "lock add32", "lock fetch or", "lock xchg32", "ldxsw"]))
        near = draw(st.sampled_from(edges)) + draw(st.integers(-8, 2))  # mostly across a boundary
        accesses.append((row, draw(st.integers(-9, at - _BASE + 2) | st.just(near))))
    return layout, accesses


@settings(max_examples=300, deadline=None)
@given(_joined_regions())
def test_joined_regions_have_the_interpreters_bounds(case) -> None:
    """``Region.joins_next``: an access may run from a region into the one starting at its end
    (and on along the chain) when every byte is covered (and, for writes, every piece is
    writable), exactly as the interpreter's ``Memory._joined`` decides."""
    layout, accesses = case

    def make() -> Environment:
        memory = standard_memory(None)
        for name, start, length, writable, joins in layout:
            memory.add(Region(name, start, bytearray((start + k) & 0xFF for k in range(length)),
                              writable=writable, joins_next=joins))
        return Environment(memory)

    lines = []
    for row, off in accesses:
        lines.append(f"lddw %r2, {_BASE + off:#x}")
        lines.append(f"{row} [%r2+0], %r2" if row.startswith(("stx", "lock")) else f"{row} %r0, [%r2+0]")
    program = prog("\n".join([*lines, "exit"]))
    out = _same_on_jits(program, make)
    event(out.error)  # type: ignore[attr-defined]


@pytest.mark.parametrize("prog_type", ["sched_cls", "xdp", "socket_filter"])
def test_converted_context_pointer_fields(prog_type: str) -> None:
    """A 4-byte load of ``data``/``data_end``/``data_meta`` through a pointer to the context
    yields the 64-bit packet pointer, whichever register and offset reach the field's address;
    other loads there read memory (the interpreter's ``_load`` with ``ctx_pointers``)."""
    def make() -> Environment:
        return Environment(standard_memory(None))

    env = make()
    inst = build_context(prog_type, env.memory, packet=bytes(range(60)))
    pointers = {inst.address + off: value for off, value in inst.pointer_fields.items()}

    def with_context() -> Environment:
        e = make()
        build_context(prog_type, e.memory, packet=bytes(range(60)))
        return e

    for off in [*sorted(inst.pointer_fields), 0, 4]:
        for adj in (0, 4, -4, 64, 1):
            for load in ("ldxw", "ldxdw", "ldxh", "ldxsw"):
                program = prog(f"mov %r2, %r1\nadd %r2, {adj}\n{load} %r0, [%r2{off:+d}]\n"
                               f"ldxw %r3, [%r1{off:+d}]\nexit")
                _same_on_jits(program, with_context, r1=inst.address, ctx_pointers=pointers)


def test_regions_at_kernel_addresses() -> None:
    """x86-64 under unicorn keeps 52 address bits: kernel-half regions (the trampoline model's)
    are mapped where the CPU looks for them, and bounds are still checked on 64 bits."""
    base = 0xFFFF_C900_0001_0000

    def make() -> Environment:
        env = Environment(standard_memory(None))
        env.memory.add(Region("kernel", base, bytearray(range(16)), writable=False))
        return env

    for body in ("ldxdw %r0, [%r2+8]", "ldxdw %r0, [%r2+9]", "stxb [%r2+0], %r2", "ldxb %r0, [%r2-1]"):
        _same_on_jits(prog(f"lddw %r2, {base:#x}\n{body}\nexit"), make)
    far = base & ((1 << 52) - 1)  # the same low 52 bits: outside every region
    _same_on_jits(prog(f"lddw %r2, {far:#x}\nldxdw %r0, [%r2+8]\nexit"), make)


def test_trampoline_model_with_the_jit_as_its_engine() -> None:
    """``TracingRun`` takes the engine that runs each program (``jit.runner``)."""
    from reference_vm import trampoline
    from reference_vm.program import Program, ProgType

    fentry = Program("fe", tuple(prog("ldxdw %r0, [%r1+0]\nexit")), ProgType.TRACING,
                     "fentry:bpf_fentry_test1")
    fexit = Program("fx", tuple(prog("ldxdw %r0, [%r1+8]\nexit")), ProgType.TRACING, "fexit:bpf_fentry_test2")

    def make() -> Environment:
        return Environment(standard_memory(None))

    want = trampoline.test_run_tracing([fentry, fexit], make())
    assert want.ok
    for _, arch, opts in CONFIGS:
        got = trampoline.test_run_tracing([fentry, fexit], make(), engine=jit.runner(arch, options=opts))
        assert_same(want, got, arch)
        assert got.extra["events"] == want.extra["events"]


@pytest.mark.parametrize("arch", ["x86_64", "arm64"])
def test_wall_clock_bound(arch: str) -> None:
    """No budget keeps a run past its timeout: the native counter gets at most SLICE
    instructions at a time, and every refill, helper stop and callback checks the clock."""
    for text in ("mov %r0, 0\nl:\nadd %r0, 1\nja l",
                 "mov %r1, 0x800000\nlddw_func %r2, cb\nmov %r3, 0\nmov %r4, 0\ncall 181\nexit\n"
                 "cb:\nmov %r0, 0\nexit"):
        start = time.monotonic()
        out = jit.run(prog(text), arch=arch, budget=10**15, timeout=0.3)
        assert out.error == "timeout" and time.monotonic() - start < 5, out.message


# --- Random multi-program runs -------------------------------------------------------------------------

_VALUES = [0, 1, -1, 2, 3, 7, 8, 63, 64, 0x7FFFFFFF, -0x80000000, -8, -512, 4096]
_ROWS = [r for r in isa.TABLE if r.executable and r.kind is not Kind.CALL]
_HELPERS = [5, 7, 8, 14, 15, 999]


def _ins(name: str, **fields: int) -> Insn:
    return Insn(isa.BY_NAME[name], **fields)


@st.composite
def _one_program(draw):
    """A valid program: some seeded registers, random instructions, tail calls into ``jmp``
    (map 0) and bpf_loop calls back into the program itself (``lddw_func`` at a random
    instruction), jumps to real instructions, an exit."""
    insns: list[Insn] = []
    for r in draw(st.lists(st.integers(0, 9), max_size=3, unique=True)):
        insns.append(_ins("lddw", dst=r, imm=draw(st.integers(0, M64))))
    jumps: list[int] = []
    funcs: list[int] = []
    for k in range(draw(st.integers(1, 10))):
        what = draw(st.sampled_from(["row"] * 4 + ["helper", "tail", "tail", "loop", "loop"] if k else
                                    ["row", "tail", "loop"]))  # early, before a fault ends the run
        if what == "tail":
            insns += [_ins("lddw_map_idx", dst=2, src=5, imm=0),
                      _ins("mov64_imm", dst=3, imm=draw(st.sampled_from([0, 0, 1, 2, 3, 4, -1]))),
                      _ins("call", imm=12)]
            continue
        if what == "loop":
            funcs.append(len(insns) + 1)
            insns += [_ins("mov64_imm", dst=1, imm=draw(st.integers(0, 2))),
                      _ins("lddw_func", dst=2, src=4, imm=0),
                      _ins("mov64_imm", dst=3, imm=draw(st.sampled_from(_VALUES))),
                      _ins("mov64_imm", dst=4, imm=draw(st.sampled_from([0, 0, 0, 1]))),
                      _ins("call", imm=181)]
            continue
        if what == "helper":
            insns.append(_ins("call", imm=draw(st.sampled_from(_HELPERS))))
            continue
        row = draw(st.sampled_from(_ROWS))
        f: dict[str, int] = {}
        for name in ("dst", "src", "imm", "off"):
            use = getattr(row.shape, name)
            if use is Use.SELECT:
                f[name] = row.select[1]
            elif use is Use.BASE:
                f[name] = draw(st.sampled_from([10, 10, 10, 1, 2, 6]))
            elif use is Use.READ:
                f[name] = draw(st.integers(0, 10))
            elif use is Use.WRITE:
                f[name] = draw(st.integers(0, 9))
            elif use is Use.VALUE:
                f[name] = draw(st.sampled_from(_VALUES))
            elif use is Use.MEMOFF:
                base = f["dst"] if row.shape.dst is Use.BASE else f["src"]
                f[name] = (-draw(st.integers(max(row.size, 1), 512)) if base == 10
                           else draw(st.integers(-2, 24)))
            else:
                f[name] = 0
        if row.kind is Kind.LDDW:
            if row.shape.imm is Use.JUMP:  # lddw_func: a function of this program
                funcs.append(len(insns))
                f["imm"] = 0
            elif row.select is None:
                f["imm"] = draw(st.integers(0, M64))
            else:  # map index / fd (map 0 is the prog array), BTF id
                f["imm"] = draw(st.integers(0, 4))
        elif row.shape.off is Use.JUMP or row.shape.imm is Use.JUMP:
            jumps.append(len(insns))
        insns.append(Insn(row, **f))
    insns.append(_ins("exit"))
    slots, pos = [], 0
    for insn in insns:
        slots.append(pos)
        pos += insn.op.slots
    for k in jumps + funcs:  # every jump (mostly forwards) and function at a real instruction
        backwards = draw(st.integers(0, 3)) == 0 or k in funcs
        target = draw(st.integers(0, len(insns) - 1) if backwards else st.integers(k + 1, len(insns) - 1))
        delta = slots[target] - slots[k] - 1
        old = insns[k]
        field = "imm" if old.op.shape.imm is Use.JUMP else "off"
        if field == "off" and not -32768 <= delta < 32768:
            delta = 0
        insns[k] = Insn(old.op, dst=old.dst, src=old.src, off=delta if field == "off" else old.off,
                        imm=delta if field == "imm" else old.imm)
    program = decode_program(encode_program(insns))
    for pc, insn in enumerate(program):
        if insn is not None and jump_target(insn, pc) is not None:
            assert program[jump_target(insn, pc)] is not None
    return program


@st.composite
def _run(draw):
    count = draw(st.integers(1, 3))
    programs = [(f"p{k}", draw(_one_program())) for k in range(count)]
    slots = {k: draw(st.sampled_from([p for p, _ in programs])) for k in range(4)
             if draw(st.integers(0, 3))}
    entry = draw(st.sampled_from([p for p, _ in programs]))
    mem = draw(st.none() | st.binary(max_size=16))
    return programs, entry, slots, mem, draw(st.sampled_from([300, 60, 17, 4])), draw(st.booleans())


@settings(max_examples=300, deadline=None)
@given(_run())
def test_random_programs_with_tail_calls_and_callbacks_agree(case) -> None:
    programs, entry, slots, mem, budget, empty_slot_consumes_budget = case
    make = _prog_array_env(slots, mem)
    r1, r2 = (MEM_BASE, len(mem)) if mem is not None else (0, 0)
    want = interpreter.run_programs(programs, entry, make(), r1=r1, r2=r2, budget=budget,
                                    empty_slot_consumes_budget=empty_slot_consumes_budget)
    for name, arch, opts in CONFIGS:
        got = jit.run_programs(programs, entry, make(), r1=r1, r2=r2, budget=budget, arch=arch, options=opts,
                               empty_slot_consumes_budget=empty_slot_consumes_budget)
        assert_same(want, got, name)
    event(want.error)
    event(f"tail calls taken: {sum(h[0] == 12 and h[2] == 1 for h in want.helper_calls) > 0}")
    event(f"callbacks: {sum(h[0] == 181 for h in want.helper_calls) > 0}")
