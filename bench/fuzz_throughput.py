"""Throughput of the differential oracle: full-state three-way comparisons (interpreter,
jit-x86_64, jit-arm64) per second on one core, for 40-instruction programs, the program
translated once and run on many inputs. ``python bench/fuzz_throughput.py [--seconds S]``.

Figures printed (all on one core, one process):

1. ``naive``: ``interpreter.run`` + ``jit.run`` x 2 per input (jit.run's own translation cache
   hit every time), compared field by field.
2. ``oracle``: :class:`fuzz.oracle.Oracle` — the interpreter's steps built once per program and
   its machine reset in place per input, each JIT's translation run directly on its engine —
   with the cost of each part per comparison.
3. ``campaign``: what a campaign worker does per program (generate, translate for both JITs,
   prepare, 32 inputs), i.e. comparisons per second including the per-program costs.
4. ``campaign + verifier``: the same on verifier-aware programs with the ``verifier`` target
   (verified once per program, soundness check per input, witness run on the first input),
   and the share of whole cases (maps, ring buffer, tail calls) a default campaign has.

The issue's target is >= 5,000 comparisons/s/core (2). Times are CPU time of this process
(``time.process_time``), so that other load on the machine does not count; figures are
measurements, not assertions.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fuzz.oracle import FULL, Oracle  # noqa: E402
from fuzz.strategies import GenConfig, RandomSource, generate  # noqa: E402
from reference_vm import interpreter, jit  # noqa: E402
from reference_vm.isa import Kind  # noqa: E402

STRAIGHT = (
    Kind.ALU,
    Kind.NEG,
    Kind.MOVSX,
    Kind.END,
    Kind.LOAD,
    Kind.LOADSX,
    Kind.STORE_IMM,
    Kind.STORE_REG,
    Kind.ATOMIC,
    Kind.LDDW,
)


def programs(n: int, inputs: int, seed: int = 1) -> list:
    """Generated 40-instruction straight-line programs (no jumps, calls), each with its inputs;
    only programs that run to their exit on the first input (a fault at pc 3 would flatter us)."""
    cfg = GenConfig(
        max_insns=40, inputs=inputs, kinds=STRAIGHT, helpers=False, calls=False, loops=False, pads=False
    )
    out = []
    src = RandomSource(seed)
    while len(out) < n:
        case = generate(src, cfg)
        body = [i for i in case.program if i is not None]
        if len(body) < 36:
            continue
        if interpreter.run(case.program, case.mems[0], budget=case.budget).error == "ok":
            out.append(case)
    return out


def bench_naive(cases: list, seconds: float) -> float:
    n, t0 = 0, time.process_time()
    while time.process_time() - t0 < seconds:
        for case in cases:
            for mem in case.mems:
                a = interpreter.run(case.program, mem, budget=case.budget)
                for arch in ("x86_64", "arm64"):
                    b = jit.run(case.program, mem, arch=arch, budget=case.budget)
                    assert all(getattr(a, f) == getattr(b, f) for f in FULL)
                n += 1
    return n / (time.process_time() - t0)


def bench_oracle(cases: list, seconds: float) -> tuple[float, dict[str, float]]:
    oracle = Oracle(["interpreter", "jit-x86_64", "jit-arm64"])
    prepared = [[t.prepare(c.program, c.budget, True) for t in oracle.targets] for c in cases]
    for c, ps in zip(cases, prepared, strict=True):  # warm: first runs (unicorn translation, self-check)
        for p in ps:
            p.run(c.mems[0])
    handles = [oracle.prepare(c.program, c.budget) for c in cases]
    n, t0 = 0, time.process_time()
    while time.process_time() - t0 < seconds:
        for c, h in zip(cases, handles, strict=True):
            for r in oracle.run(h, c.mems):
                assert not r.divergences
                n += 1
    rate_total = n / (time.process_time() - t0)
    # the parts, per comparison, on prepared programs
    parts: dict[str, float] = {}
    for k, name in enumerate(oracle.names):
        m, t0 = 0, time.process_time()
        while time.process_time() - t0 < seconds / 4:
            for c, ps in zip(cases, prepared, strict=True):
                for mem in c.mems:
                    ps[k].run(mem)
                    m += 1
        parts[name] = (time.process_time() - t0) / m * 1e6
    outs = [[p.run(c.mems[0]) for p in ps] for c, ps in zip(cases, prepared, strict=True)]
    m, t0 = 0, time.process_time()
    while time.process_time() - t0 < seconds / 8:
        for a, b, c in outs:
            all(getattr(a, f) == getattr(b, f) for f in FULL)
            all(getattr(a, f) == getattr(c, f) for f in FULL)
            m += 1
    parts["compare"] = (time.process_time() - t0) / m * 1e6
    m, t0 = 0, time.process_time()
    while time.process_time() - t0 < seconds / 8:
        for c, ps in zip(cases, prepared, strict=True):
            for mem in c.mems:
                reused = [p.run(mem) for p in ps]
                assert reused
                m += 1
    parts["three runs, no compare"] = (time.process_time() - t0) / m * 1e6
    return rate_total, parts


def bench_campaign(
    seconds: float, inputs: int, verifier: bool = False, maps: float = 0.0
) -> tuple[float, float, dict[str, int]]:
    from fuzz.strategies import case_from_seed
    from fuzz.wholeprog import whole_from_seed

    targets = ["interpreter", "jit-x86_64", "jit-arm64"] + (["verifier"] if verifier else [])
    oracle = Oracle(targets)
    cfg = GenConfig(inputs=inputs, verifier_aware=verifier)
    n = progs = 0
    seed = 0
    t0 = time.process_time()
    while time.process_time() - t0 < seconds:
        if maps and seed % round(1 / maps) == 0:
            n += len(oracle.check_whole(whole_from_seed(seed, cfg)))
        else:
            case = case_from_seed(seed, cfg)
            n += len(oracle.check(case.program, case.mems, case.budget))
        seed += 1
        progs += 1
    dt = time.process_time() - t0
    return n / dt, progs / dt, oracle.stats.get("verifier", {})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=5.0, help="per figure (default 5)")
    ap.add_argument("--programs", type=int, default=20)
    ap.add_argument("--inputs", type=int, default=32)
    a = ap.parse_args()
    cases = programs(a.programs, a.inputs)
    insns = sum(len([i for i in c.program if i is not None]) for c in cases) / len(cases)
    executed = sum(interpreter.run(c.program, c.mems[0], budget=c.budget).insn_count for c in cases) / len(
        cases
    )
    print(
        f"{len(cases)} generated straight-line programs, {insns:.1f} instructions on average "
        f"({executed:.1f} executed), {a.inputs} inputs each; one core"
    )
    naive = bench_naive(cases, a.seconds)
    print(
        f"  naive (interpreter.run + jit.run x2)   {naive:8,.0f} three-way comparisons/s "
        f"({1e6 / naive:6.1f} us each)"
    )
    rate, parts = bench_oracle(cases, a.seconds)
    print(
        f"  oracle (prepared once, reused)         {rate:8,.0f} three-way comparisons/s "
        f"({1e6 / rate:6.1f} us each)   target >= 5,000/s/core: {'met' if rate >= 5000 else 'NOT met'}"
    )
    for name, us in parts.items():
        print(f"      {name:26} {us:6.1f} us")
    camp, progs, _ = bench_campaign(a.seconds, a.inputs)
    print(
        f"  campaign worker (generate + translate + {a.inputs} inputs per program, all kinds of programs) "
        f"{camp:8,.0f} comparisons/s ({progs:.0f} programs/s)"
    )
    camp, progs, _ = bench_campaign(a.seconds, a.inputs, maps=0.25)
    print(
        f"  campaign worker, 1 in 4 a whole case (maps)   {camp:8,.0f} comparisons/s ({progs:.0f} programs/s)"
    )
    camp, progs, stats = bench_campaign(a.seconds, a.inputs, verifier=True, maps=0.25)
    print(
        f"  campaign worker + verifier (verifier-aware, 1 in 4 whole) {camp:8,.0f} comparisons/s "
        f"({progs:.0f} programs/s; verified {stats.get('verified', 0)}, accepted {stats.get('accepted', 0)}, "
        f"witness runs {stats.get('witness_runs', 0)})"
    )


if __name__ == "__main__":
    main()
