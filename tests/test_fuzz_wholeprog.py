"""Whole-program fuzz cases: two programs, an array, a hash map, a ring buffer, a prog array.

Expected values: the engines are compared with each other (differential), seeded bugs must be
caught, and the reproducer must read back and behave as the case did.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from fuzz.campaign import CampaignConfig, State, Worker, replay
from fuzz.oracle import Oracle
from fuzz.strategies import GenConfig
from fuzz.targets import JitTarget
from fuzz.wholeprog import HELPER, whole_from_seed, yaml_text
from reference_vm.insn import decode_program, encode_program
from reference_vm.isa import Kind

CFG = GenConfig(inputs=2)


def test_whole_cases_use_maps_ring_buffers_and_tail_calls() -> None:
    helpers: set[int] = set()
    maps: set[int] = set()
    for seed in range(25):
        case = whole_from_seed(seed, CFG)
        assert [n for n, _ in case.programs] == ["main", "tail"]
        for _, program in case.programs:
            code = encode_program([i for i in program if i is not None])
            assert decode_program(code) == list(program)
            for i in program:
                if i is not None and i.op.kind is Kind.CALL:
                    helpers.add(i.imm)
                if i is not None and i.op.name == "lddw_map_idx":
                    maps.add(i.imm)
        assert all(m is not None and len(m) == 64 for m in case.mems)
    assert maps == {0, 1, 2, 3}
    wanted = {"lookup", "update", "delete", "reserve", "submit", "output", "tail_call"}
    assert {HELPER[h] for h in wanted} <= helpers


def test_whole_cases_are_mostly_accepted_and_the_engines_agree() -> None:
    oracle = Oracle(["interpreter", "jit-x86_64", "jit-arm64", "verifier"])
    ringbuf_records = 0
    for seed in range(30):
        for r in oracle.check_whole(whole_from_seed(seed, CFG)):
            assert not r.divergences, (seed, [d.key for d in r.divergences])
            out = r.outcomes["interpreter"]
            assert out is not None
            ringbuf_records += len(out.ringbuf.get("rb", []))
    stats = oracle.stats["verifier"]
    assert stats["accepted"] / stats["verified"] > 0.6, stats
    assert ringbuf_records > 0


def test_the_tail_call_limit_mutant_is_caught_by_whole_cases() -> None:
    """interp-tail-call-limit-34 survives single-program campaigns (no prog arrays)."""
    oracle = Oracle(["interpreter", "mutant:interp-tail-call-limit-34"])
    hits = [
        seed
        for seed in range(40)
        for r in oracle.check_whole(whole_from_seed(seed, CFG))
        if any(d.target.startswith("mutant:") for d in r.divergences)
    ]
    assert hits


class _DropsRecords(JitTarget):
    """A JIT whose ring buffer loses its records (the oracle must compare them)."""

    def run_whole(self, case: Any, mem: bytes) -> Any:
        out = super().run_whole(case, mem)
        return dataclasses.replace(out, ringbuf={k: [] for k in out.ringbuf})


def test_ring_buffer_records_are_compared() -> None:
    oracle = Oracle(["interpreter", "jit-x86_64"])
    oracle.targets[1] = _DropsRecords("x86_64")
    found = [
        d.key
        for seed in range(30)
        for r in oracle.check_whole(whole_from_seed(seed, CFG))
        for d in r.divergences
        if r.outcomes["interpreter"] is not None and r.outcomes["interpreter"].ringbuf.get("rb")
    ]
    assert found and all("ringbuf" in k for k in found)


def test_the_yaml_reproducer_reads_back_and_runs_the_same(tmp_path: Path) -> None:
    from conformance.wholeprog import run_on_interpreter
    from conformance.yaml_case import load_yaml_cases

    compared = 0
    for seed in range(6):
        case = whole_from_seed(seed, CFG)
        mem = case.mems[0]
        ran = case.run("interpreter", mem)
        path = tmp_path / f"r{seed}.yaml"
        path.write_text(yaml_text(case, mem, ran, ["test"]))
        (yc,) = load_yaml_cases(path)
        again = run_on_interpreter(yc, case.budget)
        if again.error.startswith("rejected"):
            continue  # the loader verifies first (the whole case ran unverified)
        compared += 1
        assert (again.error, again.r0, again.maps, again.ringbuf) == (
            ran.error,
            ran.r0,
            ran.maps,
            ran.ringbuf,
        )
    assert compared >= 3


def test_a_campaign_with_maps_records_a_yaml_reproducer_and_replays_it(tmp_path: Path) -> None:
    state = State(tmp_path / "st")
    state.create_or_check(
        CampaignConfig(
            seed=3,
            targets=["interpreter", "mutant:interp-tail-call-limit-34"],
            inputs=2,
            minimize=False,
            maps=1.0,
        )
    )
    assert Worker(state, 0, max_seeds=24).run() == 0
    found = state.findings()
    assert found and all(f["signature"].endswith("@whole") for f in found)
    f = found[0]
    assert (tmp_path / "st" / "findings" / f["id"] / "repro.yaml").exists()
    _, results, _ = replay(f["seed"], str(tmp_path / "st"))
    assert any(r.coarse == f["coarse"] for r in results)
