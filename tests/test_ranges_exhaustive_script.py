"""bench/ranges_exhaustive.py at 4 bits: the script that runs the verifier's range operators and
branch refinements on every pair of 8-bit intervals (run by hand, figures in docs/verifier.md)
must find nothing wrong in them, and must catch CVE-2021-3490's scalar32_min_max_and, an
unsound refinement and a sound but less-than-kernel-precise operator."""

from __future__ import annotations

import pytest
from conftest import load_bench_script

from reference_vm.isa import JmpOp
from reference_vm.verifier import ranges as rg

INTERVALS4 = 16 * 17 // 2  # 136


@pytest.fixture(scope="module")
def rx():
    return load_bench_script("ranges_exhaustive")


def test_every_4bit_pair_sound_and_as_precise_as_the_kernel(rx):
    checks = rx.all_checks()
    res = rx.run(checks, 4, 1, False)
    assert set(res) == set(checks) and len(checks) == 44
    for name, t in res.items():
        assert t.unsound == 0, (name, t.example)
        assert t.worse == 0, (name, t.worse_example)
        assert t.spot_bad == 0, name
        op = name.split(":")[1]
        passes = 2 if op in ("add", "sub", "mul", "jeq") else 1
        if op in ("add", "sub", "mul", "and", "or", "xor", "jeq", *rx.ORDER_CONDS):
            assert t.pairs == passes * INTERVALS4**2, name  # every pair of intervals
            assert t.spot > 0, name
    assert res["alu64:add"].optimal > 0
    assert res["jmp64:jne"].pairs == 2 * INTERVALS4 * 16  # every interval x every constant
    assert res["jmp32:jset"].pairs == 81 * 16  # every tnum x every constant


def test_cve_2021_3490_is_caught(rx):
    res = rx.run(["alu32:and"], 4, 1, True)
    assert res["alu32:and"].unsound > 0
    assert "alu32:and" in res["alu32:and"].example
    assert rx.main(["--width", "4", "--checks", "alu32:and", "--jobs", "1", "--mutant"]) == 1


def test_unsound_refinement_is_caught(rx, monkeypatch):
    real = rg.refine_cond_op

    def off_by_one(r1, r2, op, is32):  # "r1 <= r2" refined as "r1 < r2": drops r1 == r2
        real(r1, r2, JmpOp.BPF_JLT if op is JmpOp.BPF_JLE else op, is32)

    monkeypatch.setattr(rg, "refine_cond_op", off_by_one)
    res = rx.run(["jmp64:jle", "jmp64:jlt"], 4, 1, False)
    assert res["jmp64:jle"].unsound > 0 and res["jmp64:jlt"].unsound == 0


def test_less_precise_than_kernel_is_caught(rx, monkeypatch):
    def coarse_add(dst, src):  # sound: unbounded
        rg.mark64_unbounded(dst)

    monkeypatch.setattr(rg, "scalar_min_max_add", coarse_add)
    res = rx.run(["alu64:add"], 4, 1, False)
    assert res["alu64:add"].unsound == 0 and res["alu64:add"].worse > 0


@pytest.mark.parametrize(
    "argv",
    [["--checks", "alu64:div"], ["--width", "5"], ["--width", "12"], ["--jobs", "0"], ["--checks", ","]],
)
def test_bad_arguments_are_one_line_errors(rx, argv, capsys):
    assert rx.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("ranges_exhaustive: ") and err.count("\n") == 1
