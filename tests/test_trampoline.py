"""Trampolines (reference_vm/trampoline.py): the corpus, the call order, the ctx layout.

Expected values come from the kernel sources and selftests the cases cite (net/bpf/test_run.c,
kernel/bpf/trampoline.c, arch/x86/net/bpf_jit_comp.c, tools/testing/selftests/bpf), never from
the model itself.

``reference_vm/maps.py`` is being written in parallel: once its ``ArrayMap`` has
``direct_value_address`` (what the interpreter's ``lddw map_value`` needs) the cases run on real
maps; until then the cases' ``array`` maps are played by :class:`FakeArrayMap` (one entry, a
direct value address, a ``{"0": hex}`` snapshot), which is all a trampoline case uses.
:func:`map_value` reads either snapshot format.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conformance.yaml_case import YamlCase, assemble_case, load_yaml_cases
from reference_vm import trampoline as tp
from reference_vm.asm import assemble
from reference_vm.env import Environment
from reference_vm.insn import decode_program, encode_program
from reference_vm.memory import Region, standard_memory
from reference_vm.outcome import Outcome
from reference_vm.program import Program, ProgType
from reference_vm.trampoline import (
    ARG_ADDR,
    B_ADDR,
    CTX_BASE,
    FUNCTIONS,
    RETVAL_ADDR,
    TraceEvent,
    TracingRun,
    TrampKind,
    run_tracing_case,
)
from reference_vm.trampoline import test_run_tracing as tracing_run  # not a pytest test

CORPUS = Path(__file__).resolve().parents[1] / "corpora" / "trampolines"
CASES = [c for f in sorted(CORPUS.glob("*.yaml")) for c in load_yaml_cases(f)]
MAP_BASE = 0x0000_7D00_0000_0000
M64 = (1 << 64) - 1


# --- A stand-in for reference_vm.maps (array maps with one entry) -------------------------

@dataclass
class FakeSpec:
    name: str
    type: str
    key_size: int
    value_size: int
    max_entries: int


class FakeArrayMap:
    """An ``array`` map with ``max_entries`` values in one region; ``direct_value_address``
    as Linux ``array_map_direct_value_addr`` (single-entry arrays only)."""

    def __init__(self, spec: FakeSpec, env: Environment, index: int) -> None:
        self.spec = spec
        start = MAP_BASE + index * 0x1_0000
        self.handle = start + 0x8000
        self.region = env.memory.add(Region(f"map:{spec.name}", start,
                                            bytearray(spec.value_size * spec.max_entries)))

    def direct_value_address(self, offset: int) -> int | None:
        if self.spec.max_entries != 1 or not 0 <= offset < self.spec.value_size:
            return None
        return self.region.start + offset

    def value(self, key: int = 0) -> bytes:
        size = self.spec.value_size
        return bytes(self.region.data[key * size:(key + 1) * size])

    def snapshot(self) -> dict[str, str]:
        return {str(k): self.value(k).hex() for k in range(self.spec.max_entries)}


def _real_maps() -> bool:
    try:
        from reference_vm.maps import ArrayMap
    except ImportError:
        return False
    return hasattr(ArrayMap, "direct_value_address")


REAL_MAPS = _real_maps()


def make_env(case: YamlCase) -> Environment:
    env = Environment(standard_memory(None))
    if REAL_MAPS:
        from reference_vm.maps import MapSpec, MapType, add_map

        for m in case.maps:
            bmap = add_map(env, MapSpec(m.name, MapType[m.type.upper()], m.key_size, m.value_size,
                                        m.max_entries, m.flags))
            for key, hexval in m.values.items():
                assert isinstance(key, int)
                bmap.sys_update(key.to_bytes(m.key_size, "little"), bytes.fromhex(hexval))
        return env
    for i, m in enumerate(case.maps):
        assert m.type == "array", f"{case.name}: the fake maps cover array maps only"
        fake = FakeArrayMap(FakeSpec(m.name, m.type, m.key_size, m.value_size, m.max_entries), env, i)
        for key, hexval in m.values.items():
            assert isinstance(key, int)
            data = bytes.fromhex(hexval)
            fake.region.data[key * m.value_size:key * m.value_size + len(data)] = data
        env.maps.append(fake)  # type: ignore[arg-type]
    return env


def run_case(case: YamlCase) -> Outcome:
    assembled = assemble_case(case, tp.helper_symbols())
    return run_tracing_case(case, assembled, make_env(case))


def map_value(snapshot: dict[str, Any], key: str, value_size: int) -> str | None:
    """The value hex of array index ``key`` in either snapshot format: the fake's ``{"0": hex}``
    or reference_vm.maps' ``{"entries": {key hex: value hex}}`` (all-zero values omitted)."""
    if "entries" not in snapshot:
        return snapshot.get(key)
    entries = snapshot["entries"]
    value = entries.get(int(key, 0).to_bytes(4, "little").hex())
    return value if value is not None else bytes(value_size).hex()


def check(case: YamlCase, out: Outcome) -> list[str]:
    """Where ``out`` differs from the case's expectation (empty: it passes)."""
    e, problems = case.expect, []
    if e.error is not None and not (out.error == e.error or out.error_class == e.error):
        problems.append(f"error {out.error!r} ({out.message}), expected {e.error!r}")
    if e.error is None and not out.ok:
        problems.append(f"error {out.error!r}: {out.message}")
    if e.r0 is not None and out.r0 != e.r0:
        problems.append(f"r0 {out.r0!r}, expected {e.r0:#x}")
    if e.verifier is not None and "message" in e.verifier and e.verifier["message"] not in out.message:
        problems.append(f"message {out.message!r} lacks {e.verifier['message']!r}")
    sizes = {m.name: m.value_size for m in case.maps}
    for name, entries in (e.maps or {}).items():
        for key, want in entries.items():
            got = map_value(out.maps.get(name, {}), key, sizes[name])
            if got != bytes.fromhex(want).hex():
                problems.append(f"map {name}[{key}] = {got}, expected {bytes.fromhex(want).hex()}")
    return problems


# --- The corpus -------------------------------------------------------------------------

def test_corpus_size_and_provenance() -> None:
    assert len(CASES) >= 24
    for c in CASES:
        assert tp.is_trampoline_case(c), c.name
        assert {"selftest", "source"} & set(c.provenance), c.name


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_corpus_case(case: YamlCase) -> None:
    out = run_case(case)
    assert check(case, out) == []


# --- Direct use of the model ------------------------------------------------------------

def prog(name: str, attach: str | None, text: str, symbols: dict[str, int] | None = None) -> Program:
    syms = {"bss": 0, **tp.helper_symbols(), **(symbols or {})}
    insns = decode_program(encode_program(assemble(text, symbols=syms)))
    return Program(name, tuple(insns), ProgType.TRACING, attach)


def env_with_bss(size: int = 64) -> tuple[Environment, FakeArrayMap]:
    env = Environment(standard_memory(None))
    bss = FakeArrayMap(FakeSpec("bss", "array", 4, size, 1), env, 0)
    env.maps.append(bss)  # type: ignore[arg-type]
    return env, bss


def u64s(data: bytes) -> list[int]:
    return [int.from_bytes(data[i:i + 8], "little") for i in range(0, len(data), 8)]


RET0 = "r0 = 0\nexit"


def copy_ctx(slots: int) -> str:
    """bss[i] = ctx[i] for i < slots."""
    return "\n".join(["r6 = map_idx_value(bss) ll"]
                     + [f"r2 = *(u64 *)(r1 + {8 * i})\n*(u64 *)(r6 + {8 * i}) = r2" for i in range(slots)]
                     + [RET0])


def stages(events: Sequence[TraceEvent], function: str) -> list[tuple[str, str | None]]:
    return [(e.stage, e.program) for e in events if e.function == function]


def test_order_fentry_fmod_ret_original_fexit() -> None:
    """Kinds run fentry -> fmod_ret -> original -> fexit whatever the attach order; within a
    kind, newest first (hlist_add_head)."""
    env, _ = env_with_bss()
    progs = [prog("x1", "fexit:bpf_modify_return_test", RET0),
             prog("m1", "fmod_ret:bpf_modify_return_test", RET0),
             prog("e1", "fentry:bpf_modify_return_test", RET0),
             prog("x2", "fexit:bpf_modify_return_test", RET0),
             prog("m2", "fmod_ret:bpf_modify_return_test", RET0),
             prog("e2", "fentry:bpf_modify_return_test", RET0)]
    out = tracing_run(progs, env, entry="m1")
    assert out.ok and out.r0 == (2 << 16) | 33
    assert stages(out.extra["events"], "bpf_modify_return_test") == [
        ("fentry", "e2"), ("fentry", "e1"), ("fmod_ret", "m2"), ("fmod_ret", "m1"),
        ("original", None), ("fexit", "x2"), ("fexit", "x1")]


def test_fmod_ret_nonzero_skips_rest_and_original() -> None:
    env, _ = env_with_bss()
    progs = [prog("m_old", "fmod_ret:bpf_modify_return_test", RET0),
             prog("m_new", "fmod_ret:bpf_modify_return_test", "r0 = 11\nexit"),
             prog("x", "fexit:bpf_modify_return_test", RET0)]
    out = tracing_run(progs, env, entry="m_new")
    assert stages(out.extra["events"], "bpf_modify_return_test") == [
        ("fmod_ret", "m_new"), ("skipped", None), ("fexit", "x")]
    # call 1: 11, b untouched (no side effect); call 2 (untraced): 29, b changed
    assert out.r0 == (1 << 16) | 40


def test_skipped_original_has_no_side_effect() -> None:
    """*b += 1 happens only in the original: with fmod_ret != 0 on both functions, b stays 2."""
    env, _ = env_with_bss()
    progs = [prog("m1", "fmod_ret:bpf_modify_return_test", "r0 = 1\nexit"),
             prog("m2", "fmod_ret:bpf_modify_return_test2", "r0 = 1\nexit")]
    run = TracingRun(progs, env)
    out = run.test_run(TrampKind.FMOD_RET)
    assert out.r0 == 2  # side_effect 0, ret 1 + 1
    assert run.b() == 2
    assert [e.stage for e in out.extra["events"]] == ["fmod_ret", "skipped", "fmod_ret", "skipped"]


def test_original_side_effect_visible_in_kernel_memory() -> None:
    env, _ = env_with_bss()
    run = TracingRun([], env)
    run.reset_frame()
    assert run.call("bpf_modify_return_test", (1, B_ADDR)) == 4
    assert run.b() == 3
    assert run.call("bpf_modify_return_test2", (1, B_ADDR, 3, 4, 5, 6, 7)) == 1 + 4 + 3 + 4 + 5 + 6 + 7


def test_ctx_layout_fexit_test6_and_r1() -> None:
    """ctx = u64 array of the arguments, then the return value; r1 is its address."""
    env, bss = env_with_bss()
    text = "*(u64 *)(r10 - 8) = r1\n" + copy_ctx(7).replace(RET0, "r2 = *(u64 *)(r10 - 8)\n"
                                                        "*(u64 *)(r6 + 56) = r2\n" + RET0)
    out = tracing_run([prog("x6", "fexit:bpf_fentry_test6", text)], env)
    assert out.ok, out.message
    vals = u64s(bss.value())
    assert vals[:7] == [16, 17, 18, 19, 20, 21, 111]
    assert vals[7] == CTX_BASE


def test_fentry_ctx_has_no_return_slot() -> None:
    """fentry sees nr_args slots only (btf_ctx_access refuses ctx[nr_args] for fentry): reading
    past them faults instead of returning an undefined value."""
    env, _ = env_with_bss()
    out = tracing_run([prog("e1", "fentry:bpf_fentry_test1", "r2 = *(u64 *)(r1 + 8)\n" + RET0)], env)
    assert out.error == "fault:oob_read"
    assert "bpf_fentry_test1" in out.message


def test_ctx_is_read_only() -> None:
    env, _ = env_with_bss()
    out = tracing_run([prog("e1", "fentry:bpf_fentry_test1", "*(u64 *)(r1 + 0) = 5\n" + RET0)], env)
    assert out.error == "fault:oob_write"


def test_kernel_objects_pointed_to() -> None:
    """test8 gets &arg (arg.a == NULL), test9 &retval (0), the modify_return tests &b (2)."""
    env, bss = env_with_bss()
    read8 = "\n".join(["r6 = map_idx_value(bss) ll", "r2 = *(u64 *)(r1 + 0)", "*(u64 *)(r6 + 0) = r2",
                       "r3 = *(u64 *)(r2 + 0)", "*(u64 *)(r6 + 8) = r3", RET0])
    out = tracing_run([prog("e8", "fentry:bpf_fentry_test8", read8)], env)
    assert out.ok, out.message
    assert u64s(bss.value())[:2] == [ARG_ADDR, 0]
    env, bss = env_with_bss()
    read9 = "\n".join(["r6 = map_idx_value(bss) ll", "r3 = *(u64 *)(r1 + 0)", "*(u64 *)(r6 + 0) = r3",
                       "r1 = r6", "r1 += 8", "r2 = 4", "call bpf_probe_read_kernel",
                       "*(u64 *)(r6 + 16) = r0", RET0])
    out = tracing_run([prog("e9", "fentry:bpf_fentry_test9", read9)], env)
    assert out.ok, out.message
    assert u64s(bss.value())[:3] == [RETVAL_ADDR, 0, 0]
    assert out.memory["kernel"][12:16] == (2).to_bytes(4, "little")


def test_argument_register_images() -> None:
    """The model's register convention (module docstring): narrow values extended to 32 bits
    by their C type, upper half zero; char is unsigned (-funsigned-char); 64-bit whole."""
    env, bss = env_with_bss()
    run = TracingRun([prog("x3", "fexit:bpf_fentry_test3", copy_ctx(4))], env)
    run.reset_frame()
    ret = run.call("bpf_fentry_test3", (-1, -2, -3))
    vals = u64s(bss.value())
    assert vals[:3] == [0xFF, 0xFFFF_FFFE, (-3) & M64]
    assert ret == 255 - 2 - 3 and vals[3] == 250
    env, bss = env_with_bss()
    run = TracingRun([prog("x5", "fexit:bpf_fentry_test5", copy_ctx(6))], env)
    run.reset_frame()
    assert run.call("bpf_fentry_test5", (0, 0, -1, -1, 0)) == -2
    vals = u64s(bss.value())
    assert vals[2:4] == [0xFFFF_FFFF, 0xFFFF_FFFF]  # short -1 and int -1: 32-bit extended
    assert vals[5] == 0xFFFF_FFFE  # the int return value -2


def test_function_signatures() -> None:
    """Argument counts and C results of the modelled functions (net/bpf/test_run.c)."""
    nargs = {f"bpf_fentry_test{i}": n for i, n in enumerate((1, 2, 3, 4, 5, 6, 1, 1, 1, 1), 1)}
    nargs |= {"bpf_modify_return_test": 2, "bpf_modify_return_test2": 7}
    assert {k: f.nr_args for k, f in FUNCTIONS.items()} == nargs
    assert {k for k, f in FUNCTIONS.items() if f.modifiable} == {
        "bpf_fentry_test1", "bpf_modify_return_test", "bpf_modify_return_test2"}
    # int return: (long)a + b + c + d truncated to 32 bits
    assert FUNCTIONS["bpf_fentry_test4"].call(standard_memory(None), ((1 << 32) + 1, 1, 1, 1)) == 4
    assert FUNCTIONS["bpf_fentry_test1"].call(standard_memory(None), (0x7FFF_FFFF,)) == -(1 << 31)


def test_fentry_sequence_stops_at_first_mismatch() -> None:
    env, _ = env_with_bss()
    progs = [prog("m1", "fmod_ret:bpf_fentry_test1", "r0 = 1\nexit"),
             prog("e2", "fentry:bpf_fentry_test2", RET0)]
    out = tracing_run(progs, env, kind="fentry")
    assert out.error == "fault:efault" and out.r0 is None
    assert {e.function for e in out.extra["events"]} == {"bpf_fentry_test1"}


def test_attach_errors() -> None:
    env, _ = env_with_bss()
    out = tracing_run([prog("m", "fmod_ret:bpf_fentry_test3", RET0)], env)
    assert out.error == "rejected:verifier" and out.message == "bpf_fentry_test3() is not modifiable"
    out = tracing_run([prog("e", "fentry:no_such_function", RET0)], env)
    assert out.error == "rejected:attach_target"
    many = [prog(f"e{i}", "fentry:bpf_fentry_test1", RET0) for i in range(tp.BPF_MAX_TRAMP_LINKS + 1)]
    assert tracing_run(many[:-1], env).ok
    assert tracing_run(many, env).error == "rejected:attach"
    out = tracing_run([Program("raw", (), ProgType.RAW, "fentry:bpf_fentry_test1")], env)
    assert out.error == "unsupported"


def test_libbpf_section_spelling() -> None:
    assert tp.parse_attach("fexit/bpf_fentry_test7") == (TrampKind.FEXIT, "bpf_fentry_test7")


def test_globals_accumulate_across_calls_and_programs() -> None:
    """All programs share one Environment: a counter bumped by fentry programs on test1..test10
    counts all ten calls."""
    env, bss = env_with_bss()
    bump = "r6 = map_idx_value(bss) ll\nr2 = *(u64 *)(r6 + 0)\nr2 += 1\n*(u64 *)(r6 + 0) = r2\n" + RET0
    progs = [prog(f"e{i}", f"fentry:bpf_fentry_test{i}", bump) for i in range(1, 11)]
    out = tracing_run(progs, env)
    assert out.ok and out.r0 == 0
    assert u64s(bss.value())[0] == 10
    assert out.insn_count == 10 * 6


def test_program_fault_stops_the_run() -> None:
    env, _ = env_with_bss()
    progs = [prog("e1", "fentry:bpf_fentry_test1", "r2 = *(u64 *)(r2 + 0)\n" + RET0),
             prog("e2", "fentry:bpf_fentry_test2", RET0)]
    out = tracing_run(progs, env)
    assert out.error == "fault:oob_read"
    assert "fentry program e1 on bpf_fentry_test1" in out.message
    assert "bpf_fentry_test2" not in {e.function for e in out.extra["events"]}


# --- Mutations: a wrong trampoline must fail the corpus ---------------------------------

def failing_cases() -> list[str]:
    return [c.name for c in CASES if check(c, run_case(c))]


def test_mutation_fexit_return_value(monkeypatch: pytest.MonkeyPatch) -> None:
    """fexit seeing a wrong return value (its bytes reversed) must fail cases."""
    real = tp.CType.register

    def reversed_ret(self: tp.CType, value: int) -> int:
        image = real(self, value)
        return int.from_bytes(image.to_bytes(8, "little"), "big") if self is tp.INT else image

    monkeypatch.setattr(tp.CType, "register", reversed_ret)
    failing = failing_cases()
    assert "fexit_test1" in failing and "modify_return_input_0" in failing


def test_mutation_attach_order(monkeypatch: pytest.MonkeyPatch) -> None:
    """Running programs oldest first (hlist_add_tail) must fail the order cases."""
    monkeypatch.setattr(tp.Trampoline, "run_order", lambda self, kind: list(self.links[kind]))
    failing = failing_cases()
    assert {"fentry_order_newest_first", "fmod_ret_nonzero_stops_the_chain"} <= set(failing)


def test_mutation_fmod_ret_does_not_skip(monkeypatch: pytest.MonkeyPatch) -> None:
    """A trampoline that always calls the original must fail the fmod_ret cases."""
    real = tp.TracingRun._run_program

    def run_program(self: TracingRun, name: str, function: str, stage: str) -> int:
        r0 = real(self, name, function, stage)
        return 0 if stage == "fmod_ret" else r0

    monkeypatch.setattr(tp.TracingRun, "_run_program", run_program)
    failing = set(failing_cases())
    assert {"modify_return_input_einval", "fmod_ret_skips_original"} <= failing


def test_mutation_kernel_arguments(monkeypatch: pytest.MonkeyPatch) -> None:
    seq = list(tp.FENTRY_SEQUENCE)
    seq[2] = ("bpf_fentry_test3", (4, 5, 7), 16)
    monkeypatch.setattr(tp, "FENTRY_SEQUENCE", tuple(seq))
    failing = set(failing_cases())
    assert {"fentry_test3", "fexit_test3", "fentry_test_all"} <= failing
