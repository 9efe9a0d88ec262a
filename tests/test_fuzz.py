"""The fuzzing engine: generators, oracle, minimizer, reproducers, replay and promotion.

Expected values here come from the instruction encodings and from the seeded bugs of
bench/mutants (a mutant must be caught), never from comparing our targets with themselves.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fuzz import strategies as fs
from fuzz.campaign import CampaignConfig, State, Worker, make_input, parse_duration, parse_seed
from fuzz.minimize import data_text, from_items, minimize, to_items
from fuzz.oracle import Oracle, row_classes, signature
from fuzz.targets import InterpreterTarget, make_target, parse_targets, same_outcome
from reference_vm import interpreter, isa
from reference_vm.asm import assemble
from reference_vm.errors import UsageError
from reference_vm.insn import Insn, decode_program, encode_program
from reference_vm.isa import Kind, Use

REF = ["interpreter", "jit-x86_64", "jit-arm64"]


def prog(src: str) -> list[Insn | None]:
    return decode_program(encode_program(assemble(src)))


# --- Generators -------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(fs.fuzz_cases(inputs=2))
def test_generated_programs_are_valid_and_decode_to_themselves(case: fs.FuzzCase) -> None:
    assert tuple(decode_program(case.code)) == case.program
    assert len(case.mems) == 2
    assert len({len(m) if m is not None else None for m in case.mems}) == 1  # one layout per program


@settings(max_examples=200, deadline=None)
@given(fs.insns())
def test_single_instructions_fill_the_fields_their_shape_uses(insn: Insn) -> None:
    shape = insn.op.shape
    for name in ("dst", "src", "off", "imm"):
        use, value = getattr(shape, name), getattr(insn, name)
        if use is Use.ZERO:
            assert value == 0
        if use is Use.SELECT:
            assert insn.op.select == (name, value)
        if use is Use.WRITE:
            assert 0 <= value <= 9
    assert Insn(insn.op, insn.dst, insn.src, insn.off, insn.imm).to_bytes()  # encodable


@pytest.mark.parametrize("data", [b"", b"\x00" * 7, b"\xff" * 3000, bytes(range(256)) * 4])
def test_any_bytes_give_a_valid_program(data: bytes) -> None:
    case = fs.case_from_bytes(data)
    assert tuple(decode_program(case.code)) == case.program
    assert case.program[-1] is not None or case.program[-2].op.kind is Kind.LDDW


def test_the_byte_generator_is_deterministic_and_mutation_changes_little() -> None:
    a, b = fs.case_from_seed(7), fs.case_from_seed(7)
    assert a.program == b.program and a.mems == b.mems
    data = fs.fresh_input(7)
    child = fs.mutate(data, random.Random(1))
    assert child != data and abs(len(child) - len(data)) <= 64


def test_generated_programs_cover_every_family_and_the_value_pools() -> None:
    kinds, imms = set(), set()
    for seed in range(300):
        for insn in fs.case_from_seed(seed).program:
            if insn is not None:
                kinds.add(insn.op.kind)
                imms.add(insn.imm)
    want = {k for k in Kind if k not in (Kind.CALL_KFUNC,)}
    assert want <= kinds, want - kinds
    assert {0, 1, -1, 0x7FFFFFFF, -0x80000000, 31, 32, 63, 64} <= imms


def test_rows_come_from_the_isa_table_filtered_by_group_and_cpu() -> None:
    rows = fs.GenConfig(groups=frozenset({isa.Group.BASE32}), cpu=1).rows()
    assert all(r.group is isa.Group.BASE32 and r.cpu == 1 for rs in rows.values() for r in rs)
    case = fs.generate(
        fs.RandomSource(3), fs.GenConfig(groups=frozenset({isa.Group.BASE32, isa.Group.BASE64}), cpu=2)
    )
    assert all(i.op.cpu <= 2 for i in case.program if i is not None)


# --- Targets and oracle -----------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(fs.fuzz_cases(inputs=3, max_insns=24))
def test_interpreter_fast_path_equals_interpreter_run(case: fs.FuzzCase) -> None:
    """The reused machine gives exactly what a fresh interpreter.run gives, input after input."""
    has_mem = case.mems[0] is not None
    prepared = InterpreterTarget().prepare(case.program, case.budget, has_mem)
    for mem in case.mems:
        assert same_outcome(prepared.run(mem), interpreter.run(case.program, mem, budget=case.budget))


def test_targets_agree_on_generated_programs() -> None:
    oracle = Oracle(REF)
    for seed in range(6):
        case = fs.case_from_seed(seed, fs.GenConfig(inputs=4))
        for r in oracle.check(case.program, case.mems, case.budget):
            assert not [d for d in r.divergences if "_get_current_comm" not in d.detail], r.coarse


def test_a_seeded_bug_is_a_divergence_with_a_signature() -> None:
    oracle = Oracle(["interpreter", "mutant:interp-add32-no-zext", "jit-x86_64"])
    program = prog("lddw %r0, 0xffffffff\nadd32 %r0, 1\nexit")  # 0xffffffff + 1 carries into bit 32
    (r,) = oracle.check(program, [None], 100)
    assert r.outcomes["interpreter"].r0 == 0  # RFC 9669 §4.1: ALU results are zero-extended
    assert [d.target for d in r.divergences] == ["mutant:interp-add32-no-zext"]
    assert r.coarse == "mutant:interp-add32-no-zext:r0+regs"
    assert signature(r.divergences, program) == "mutant:interp-add32-no-zext:r0+regs#alu32:add,lddw"


def test_an_exception_in_a_target_is_a_finding() -> None:
    oracle = Oracle(["interpreter", "mutant:interp-sdiv-intmin-trap"])
    program = prog("lddw %r0, 0x8000000000000000\nsdiv %r0, -1\nexit")
    (r,) = oracle.check(program, [None], 100)
    (d,) = r.divergences
    assert d.fields == ("exception",) and d.detail.startswith("ArithmeticError@")
    assert "INT_MIN" in r.tracebacks[d.target]


def test_kernel_target_needs_allow_kernel() -> None:
    with pytest.raises(UsageError, match="--allow-kernel"):
        make_target("kernel")
    assert make_target("kernel", allow_kernel=True).role == "kernel"  # constructing it probes nothing
    with pytest.raises(UsageError, match="at least two"):
        parse_targets("interpreter")
    with pytest.raises(UsageError, match="--allow-kernel"):
        parse_targets("interpreter,kernel")


def test_row_classes_name_the_operation() -> None:
    program = prog("add32 %r0, 1\njset32 %r0, 1, +0\nlock cmpxchg [%r10-8], %r1\nstxb [%r10-1], %r1\nexit")
    assert row_classes(program) == ["alu32:add", "atomic64:cmpxchg", "jcond32:jset", "store_reg8"]


# --- Minimization and reproducers --------------------------------------------------------------


def test_items_round_trip_with_jumps_and_lddw() -> None:
    program = prog("lddw %r1, 0x100000000\njeq %r1, 0, +2\nmov %r0, 1\nja +1\nmov %r0, 2\nexit")
    assert from_items(to_items(program)) == program


def test_minimize_keeps_the_signature_and_removes_the_rest() -> None:
    oracle = Oracle(["interpreter", "mutant:interp-add32-no-zext"])
    src = "\n".join(
        [
            "mov %r3, 7",
            "stxdw [%r10-8], %r3",
            "lddw %r0, 0xfffffffe",
            "mov %r4, %r3",
            "jeq %r4, 1, +1",
            "add32 %r0, 5",
            "mul %r3, 3",
            "exit",
        ]
    )
    program = prog(src)
    mem = bytes(range(16))
    (r,) = oracle.check(program, [mem], 100)
    want = r.coarse
    assert want
    m = minimize(program, mem, 100, oracle, want)
    body = [i for i in m.program if i is not None]
    assert len(body) <= 3, body
    assert oracle.check(m.program, [m.mem], 100)[0].coarse == want
    assert m.mem == bytes(16)


def test_reproducer_is_a_data_file_marked_as_not_an_expectation(tmp_path: Path) -> None:
    from conformance.case import case_from_data
    from conformance.data_file import parse_data_text

    program = prog("lddw %r0, 0xffffffff\nadd32 %r0, 1\nexit")
    oracle = Oracle(["interpreter", "mutant:interp-add32-no-zext"])
    (r,) = oracle.check(program, [b"\x01\x02"], 100)
    finding = {"id": "abc", "signature": r.coarse, "seed": "1:0:2", "targets": oracle.names, "fields": ["r0"]}
    text = data_text(finding, program, b"\x01\x02", r.outcomes["interpreter"])
    assert "REPRODUCER, NOT A CONFORMANCE TEST" in text and "NOT an expected value" in text
    case = case_from_data(parse_data_text(text, "x.data"))
    assert case.expect_r0 == 0 and case.mem == b"\x01\x02"
    assert tuple(decode_program(list(case.program))) == tuple(program)


# --- Campaign pieces, replay, promote, CLI -------------------------------------------------------


def test_seeds_durations_and_inputs() -> None:
    assert parse_seed("42:1:1077") == (42, 1, 1077)
    with pytest.raises(UsageError):
        parse_seed("42")
    assert parse_duration("8h") == 8 * 3600 and parse_duration("90") == 90 and parse_duration("10m") == 600
    assert make_input(1, 0, 5, [], None, 0.5) == make_input(1, 0, 5, [], None, 0.5)
    assert make_input(1, 0, 5, [], None, 0.5) != make_input(1, 1, 5, [], None, 0.5)


def test_worker_records_findings_of_a_mutant_and_replay_reproduces_them(tmp_path: Path) -> None:
    from fuzz.campaign import replay

    state = State(tmp_path / "st")
    state.create_or_check(
        CampaignConfig(
            seed=11, targets=["interpreter", "mutant:interp-lddw-high-dropped"], inputs=4, minimize=False
        )
    )
    w = Worker(state, 0, max_seeds=16)
    assert w.run() == 0
    found = state.findings()
    assert found, "a mutant that drops lddw's high half must be found in 16 programs"
    cursor = json.loads(state.worker(0, "json").read_text())
    assert cursor["next"] == 16
    f = found[0]
    assert (tmp_path / "st" / "findings" / f["id"] / "repro.data").exists()
    _, results, names = replay(f["seed"], str(tmp_path / "st"))
    assert any(r.coarse == f["coarse"] for r in results)


def test_promote_requires_a_source_and_refuses_the_kernel_for_now(tmp_path: Path) -> None:
    from fuzz.cli import main

    folder = tmp_path / "f1"
    folder.mkdir()
    program = prog("mov %r0, 1\nexit")
    finding = {
        "id": "f1",
        "signature": "x",
        "seed": "1:0:0",
        "targets": ["interpreter", "y"],
        "fields": ["r0"],
    }
    (folder / "finding.json").write_text(json.dumps(finding))
    (folder / "repro.data").write_text(data_text(finding, program, None, interpreter.run(program)))
    dest = tmp_path / "regressions"
    with pytest.raises(UsageError, match="source"):
        main(["promote", str(folder), "--expect", "r0=1", "--dest", str(dest)])
    with pytest.raises(UsageError, match="not available"):
        main(["promote", str(folder), "--expect-from", "kernel", "--dest", str(dest)])
    assert (
        main(
            [
                "promote",
                str(folder),
                "--expect",
                "r0=0x1",
                "--source",
                "RFC 9669 §4.1 (mov)",
                "--dest",
                str(dest),
            ]
        )
        == 0
    )
    text = (dest / "fuzz-f1.data").read_text()
    assert "# expected: RFC 9669 §4.1 (mov)" in text and "REPRODUCER" not in text
    assert "-- result\n0x1\n" in text
    assert (folder / "promoted.json").exists()


def test_cli_campaign_and_replay(run_cli, tmp_path: Path) -> None:
    st = tmp_path / "state"
    res = run_cli(
        "fuzz",
        "--time",
        "60s",
        "--jobs",
        "1",
        "--max-seeds",
        "8",
        "--inputs",
        "4",
        "--no-minimize",
        "--targets",
        "interpreter,mutant:interp-jmp32-compares-64",
        "--state",
        st,
        "--seed",
        "5",
    )
    assert res.returncode == 1, res.stdout + res.stderr
    assert "finding" in res.stdout
    f = State(st).findings()[0]
    rep = run_cli("fuzz", "replay", f["seed"], "--state", st)
    assert rep.returncode == 1 and "DIVERGES" in rep.stdout, rep.stdout + rep.stderr
    bad = run_cli("fuzz", "--time", "1s", "--targets", "interpreter,kernel", "--state", tmp_path / "x")
    assert bad.returncode == 2 and "verifier" in bad.stderr and "Traceback" not in bad.stderr


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2**32))
def test_every_seed_generates(seed: int) -> None:
    case = fs.case_from_seed(seed, fs.GenConfig(inputs=1))
    assert case.program and len([i for i in case.program if i is not None]) <= 400
