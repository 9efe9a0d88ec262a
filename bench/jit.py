"""JIT benchmarks, printed side by side with the interpreter from the same run:
``python bench/jit.py [--n N] [--repeat R]``.

1. Translation time per BPF instruction (x86-64, arm64) for a 40-instruction program and for the
   counting loop.
2. The counting loop (2N+3 BPF instructions)::

       mov %r0, 0
       mov %r1, N
     loop:
       add %r0, 1
       jlt %r0, %r1, loop
       exit

   on each JIT under unicorn (translated once, engine reused), on the interpreter, and on the
   running kernel: ``BPF_PROG_TEST_RUN`` of the same loop loaded as a socket filter (the kernel's
   own JIT), with N within the verifier's complexity limit (it walks every iteration: 1M
   processed instructions; N = 200,000 by default) and the mean run time the kernel reports
   (``duration``, ``repeat`` runs per call). Skipped, with the reason, where bpf() is unusable.
3. Per-case overhead of a 40-instruction straight-line program (ALU, stores, loads) on a reused
   engine: the engine's run alone (code resident; the same environment, or a fresh one per
   run), ``jit.run`` of the same program again (translation cached), and ``jit.run`` of a
   program it has not seen (our translation + unicorn's translation of the new code), against
   ``interpreter.run``.

Figures are measurements, not assertions; targets (issue "JIT to x86-64 and arm64"): per case
<= 30 us on a reused engine, loop >= 100 M BPF insn/s.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from conformance.kernel import syscall  # noqa: E402
from reference_vm import interpreter, jit  # noqa: E402
from reference_vm.asm import assemble  # noqa: E402
from reference_vm.env import Environment  # noqa: E402
from reference_vm.helpers import DEFAULT_HELPERS  # noqa: E402
from reference_vm.insn import decode_program, encode_program  # noqa: E402
from reference_vm.jit.runtime import engine  # noqa: E402
from reference_vm.memory import STACK_TOP, standard_memory  # noqa: E402

ARCHES = ("x86_64", "arm64")
LOOP = """
    mov %r0, 0
    mov %r1, {n}
loop:
    add %r0, 1
    jlt %r0, %r1, loop
    exit
"""


def program_40():
    """40 straight-line instructions: ALU on registers and immediates, stack stores and loads."""
    lines = ["mov %r0, 1", "mov %r1, 2", "lddw %r2, 0x123456789"]
    for k in range(12):
        lines += [f"add %r0, %r{1 + k % 2}", f"stxdw [%r10-{8 * (k % 8 + 1)}], %r0",
                  f"ldxw %r3, [%r10-{8 * (k % 8 + 1)}]"]
    lines.append("exit")
    program = decode_program(encode_program(assemble("\n".join(lines))))
    assert sum(i is not None for i in program) == 40
    return program


def _best(fn: Callable[[], object], repeat: int, inner: int = 1) -> float:
    """Best of ``repeat`` samples of ``inner`` calls, per call."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        times.append((time.perf_counter() - t0) / inner)
    return min(times)


def bench_compile(program, repeat: int) -> dict[str, float]:
    n = sum(i is not None for i in program)
    return {arch: _best(lambda arch=arch: jit.compile_program(program, arch), repeat, 50) / n
            for arch in ARCHES}


def bench_loop(n: int, repeat: int) -> dict[str, float]:
    program = decode_program(encode_program(assemble(LOOP.format(n=n))))
    count = 2 * n + 3
    out: dict[str, float] = {}
    for arch in ARCHES:
        compiled = jit.compile_program(program, arch)
        res = jit.run(program, arch=arch, budget=count, compiled=compiled)
        assert res.ok and res.r0 == n and res.insn_count == count, res.message
        out[arch] = count / _best(lambda a=arch, c=compiled: jit.run(program, arch=a, budget=count,
                                                                      compiled=c), repeat)
    interp_n = min(n, 200_000)  # the interpreter at ~10 M/s: keep its share of the run short
    iprog = decode_program(encode_program(assemble(LOOP.format(n=interp_n))))
    icount = 2 * interp_n + 3
    assert interpreter.run(iprog, budget=icount).insn_count == icount
    out["interpreter"] = icount / _best(lambda: interpreter.run(iprog, budget=icount), repeat)
    return out


def bench_kernel(n: int, repeat: int, runs: int) -> tuple[float | None, str]:
    """BPF insn/s of the counting loop under ``BPF_PROG_TEST_RUN`` (best of ``repeat`` calls of
    ``runs`` runs each, by the kernel's ``duration``), or None and why it could not be run."""
    why = syscall.probe()
    if why is not None:
        return None, why
    code = encode_program(assemble(LOOP.format(n=n)))
    try:
        fd = syscall.prog_load(code, syscall.BPF_PROG_TYPE_SOCKET_FILTER)
    except OSError as e:
        return None, f"the verifier refused the loop with N={n:,}: {e}"
    try:
        best = None
        for _ in range(repeat):
            res = syscall.prog_test_run(fd, repeat=runs)
            assert res.retval == n & 0xFFFF_FFFF, res
            best = res.duration_ns if best is None else min(best, res.duration_ns)
    except OSError as e:
        return None, f"BPF_PROG_TEST_RUN failed: {e}"
    finally:
        os.close(fd)
    assert best is not None
    return (2 * n + 3) / max(best, 1) * 1e9, f"N={n:,}, {runs} runs per call, kernel-reported mean"


def bench_case(repeat: int, inner: int) -> dict[str, dict[str, float]]:
    program = program_40()
    want = interpreter.run(program)
    regs = [0] * 10 + [STACK_TOP]
    out: dict[str, dict[str, float]] = {}
    for arch in ARCHES:
        compiled = jit.compile_program(program, arch)
        eng = engine(arch)
        got = eng.run(compiled, Environment(standard_memory(None)), regs, budget=1000,
                      helpers=DEFAULT_HELPERS)
        assert got.ok and got.regs == want.regs and got.memory == want.memory
        env = Environment(standard_memory(None))
        out[arch] = {
            "engine": _best(lambda e=eng, c=compiled, env=env: e.run(c, env, regs, budget=1000,
                                                                     helpers=DEFAULT_HELPERS), repeat, inner),
            "fresh_env": _best(lambda e=eng, c=compiled: e.run(c, Environment(standard_memory(None)), regs,
                                                               budget=1000, helpers=DEFAULT_HELPERS),
                               repeat, inner),
            "jit.run": _best(lambda a=arch: jit.run(program, arch=a), repeat, inner),
            "new_program": _best(lambda a=arch: (jit.clear_cache(), jit.run(program, arch=a)), repeat,
                                 max(inner // 20, 1)),
        }
    out["interpreter"] = {"run": _best(lambda: interpreter.run(program), repeat, inner),
                          "env": _best(lambda: Environment(standard_memory(None)), repeat, inner)}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000_000, help="loop iterations on the JITs (default 10M)")
    ap.add_argument("--repeat", type=int, default=5, help="samples per figure; the best is kept")
    ap.add_argument("--inner", type=int, default=2000, help="runs per sample for per-case figures")
    ap.add_argument("--kernel-n", type=int, default=200_000,
                    help="loop iterations under BPF_PROG_TEST_RUN (the verifier walks them all; "
                         "default 200k)")
    ap.add_argument("--kernel-runs", type=int, default=100, help="TEST_RUN repeat per call (default 100)")
    args = ap.parse_args(argv)

    comp40 = bench_compile(program_40(), args.repeat)
    comp_loop = bench_compile(decode_program(encode_program(assemble(LOOP.format(n=10)))), args.repeat)
    loop = bench_loop(args.n, args.repeat)
    case = bench_case(args.repeat, args.inner)
    kernel, kernel_note = bench_kernel(args.kernel_n, args.repeat, args.kernel_runs)

    print("translation time per BPF instruction")
    for arch in ARCHES:
        print(f"  {arch:<12} {comp40[arch] * 1e6:8.1f} us (40-insn program)   "
              f"{comp_loop[arch] * 1e6:8.1f} us (counting loop, 5 insns)")
    print(f"counting loop (JITs: N={args.n:,}; interpreter: N={min(args.n, 200_000):,})")
    for name in (*ARCHES, "interpreter"):
        ratio = loop[name] / loop["interpreter"]
        extra = f"   {ratio:6.0f}x the interpreter" if name != "interpreter" else ""
        print(f"  {name:<12} {loop[name] / 1e6:10.1f} M BPF insn/s{extra}")
    if kernel is None:
        print(f"  {'kernel':<12} skipped: {kernel_note}")
    else:
        print(f"  {'kernel':<12} {kernel / 1e6:10.1f} M BPF insn/s   "
              f"{kernel / loop['interpreter']:6.0f}x the "
              f"interpreter, {kernel / loop['x86_64']:.1f}x jit-x86_64 (BPF_PROG_TEST_RUN, {kernel_note})")
    print("per case, 40-instruction program, reused engine")
    for arch in ARCHES:
        f = case[arch]
        print(f"  {arch:<12} engine run {f['engine'] * 1e6:6.1f} us   + fresh Environment "
              f"{f['fresh_env'] * 1e6:6.1f} us   jit.run {f['jit.run'] * 1e6:6.1f} us   "
              f"jit.run of a new program {f['new_program'] * 1e6:6.0f} us")
    i = case["interpreter"]
    print(f"  {'interpreter':<12} interpreter.run {i['run'] * 1e6:7.1f} us "
          f"(of which Environment + standard_memory {i['env'] * 1e6:.1f} us)")
    loop_ok = all(loop[a] >= 100e6 for a in ARCHES)
    case_ok = all(case[a]["engine"] <= 30e-6 for a in ARCHES)
    print(f"targets: loop >= 100 M insn/s -> {'met' if loop_ok else 'NOT met'}; "
          f"per case <= 30 us (engine run) -> {'met' if case_ok else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
