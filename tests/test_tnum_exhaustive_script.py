"""bench/tnum_exhaustive.py at 4 bits: the script that checks every pair of 8-bit tnums (run by
hand, figures in docs/verifier.md) must find nothing wrong in our operators and must catch a
seeded unsound add and a sound but less-than-kernel-precise operator."""

from __future__ import annotations

import pytest
from conftest import load_bench_script

from reference_vm.verifier.tnum import Tnum


@pytest.fixture(scope="module")
def te():
    return load_bench_script("tnum_exhaustive")


def test_every_4bit_pair_sound_and_as_precise_as_the_kernel(te):
    res = te.run(width=4, ops=te.ALL_OPS, jobs=1)
    assert set(res) == set(te.ALL_OPS)
    for op, c in res.items():
        assert c.pairs == 81 * 81, op
        assert c.unsound == 0, (op, c.example)
        assert c.kernel_worse == 0, op
        assert c.kernel_unsound == 0, op
        assert c.subreg_ok == c.pairs, op
        assert c.spot > 0 and c.spot_mismatch == 0, op
        if op not in ("mul", "intersect"):
            assert c.equal_best == c.pairs, op  # the kernel's add/sub/and/or/xor/union are optimal
    assert 0 < res["mul"].equal_best < res["mul"].pairs
    assert res["intersect"].equal_best + res["intersect"].empty == res["intersect"].pairs
    assert not te.failed(res, 4)


def test_mutant_add_is_caught(te):
    res = te.run(width=4, ops=("add",), jobs=1, mutant=True)
    assert res["add"].unsound > 0
    assert "add(" in res["add"].example
    assert te.failed(res, 4)
    assert te.main(["--width", "4", "--ops", "add", "--jobs", "1", "--mutant"]) == 1


def test_less_precise_than_kernel_is_caught(te, monkeypatch):
    real = te.our_op

    def coarse(name, width, mutant=False):
        if name != "xor":
            return real(name, width, mutant)
        return lambda a, b: Tnum(0, (1 << width) - 1)  # always "unknown"

    monkeypatch.setattr(te, "our_op", coarse)
    res = te.run(width=4, ops=("xor",), jobs=1)
    assert res["xor"].unsound == 0  # everything unknown is sound...
    assert res["xor"].kernel_worse > 0  # ...but less precise than tnum_xor
    assert te.failed(res, 4)
