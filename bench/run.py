"""Benchmarks, printed side by side from one run: ``python bench/run.py [--n N]``.

1. The counting loop (2N+3 instructions)::

       mov %r0, 0
       mov %r1, N
     loop:
       add %r0, 1
       jlt %r0, %r1, loop
       exit

   run on the reference interpreter (BPF instructions per second) and, where ``bpf()`` works,
   as a socket filter through BPF_PROG_TEST_RUN (the kernel's own per-run duration), so the
   ratio of the two is measured in the same run.
2. The cost of one conformance case: every bundled bpf_conformance case assembled, decoded and
   run on the interpreter, mean time per case.

Figures are measurements, not assertions: this script never fails on a slow machine.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from conformance.data_file import load_data_file  # noqa: E402
from reference_vm import interpreter  # noqa: E402
from reference_vm.asm import assemble  # noqa: E402
from reference_vm.insn import decode_program, encode_program  # noqa: E402

LOOP = """
    mov %r0, 0
    mov %r1, {n}
loop:
    add %r0, 1
    jlt %r0, %r1, loop
    exit
"""


def _best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def bench_loop(n: int, repeat: int) -> dict[str, float]:
    insns = assemble(LOOP.format(n=n))
    program = decode_program(encode_program(insns))
    expected_count = 2 * n + 3
    out = interpreter.run(program, budget=expected_count)
    assert out.ok and out.r0 == n and out.insn_count == expected_count, out
    t = _best(lambda: interpreter.run(program, budget=expected_count), repeat)
    figures = {"interp_s": t, "interp_ips": expected_count / t}

    try:
        from conformance.kernel import syscall
    except OSError:  # no libc / bpf() here
        return figures
    reason = syscall.probe()
    if reason is not None:
        figures["kernel_skip"] = reason  # type: ignore[assignment]
        return figures
    try:
        fd = syscall.prog_load(encode_program(insns))
    except OSError as e:  # e.g. N too large for the verifier's 1M-instruction complexity limit
        figures["kernel_skip"] = f"the kernel refused the loop: {e}"  # type: ignore[assignment]
        return figures
    try:
        runs = 20
        res = syscall.prog_test_run(fd, repeat=runs)
        assert res.retval == n & 0xFFFFFFFF, res
        samples, walls = [], []
        for _ in range(repeat):
            t0 = time.perf_counter()
            samples.append(syscall.prog_test_run(fd, repeat=runs).duration_ns)
            walls.append((time.perf_counter() - t0) / runs)
        kernel_s = min(samples) / 1e9
        figures.update(kernel_s=kernel_s, kernel_ips=expected_count / kernel_s,
                       kernel_wall_s=min(walls), kernel_wall_ips=expected_count / min(walls))
    finally:
        os.close(fd)
    return figures


def bench_cases(repeat: int) -> dict[str, float]:
    files = sorted((ROOT / "corpora" / "bpf_conformance").glob("*.data"))
    cases = [load_data_file(f) for f in files]

    def one_pass() -> None:
        for c in cases:
            if c.raw is not None:
                prog = decode_program(c.raw)
            else:
                prog = decode_program(encode_program(assemble(c.asm_text or "", file=c.path,
                                                              first_line=c.asm_line)))
            interpreter.run(prog, c.mem)

    t = _best(one_pass, repeat)
    return {"cases": len(cases), "per_case_s": t / len(cases)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200_000,
                    help="loop iterations (default 200,000; the kernel verifier walks every iteration "
                         "and refuses more than about 499,000)")
    ap.add_argument("--repeat", type=int, default=3, help="samples per figure; the best is kept")
    args = ap.parse_args(argv)

    loop = bench_loop(args.n, args.repeat)
    cases = bench_cases(args.repeat)
    print(f"counting loop, N={args.n:,} ({2 * args.n + 3:,} BPF instructions)")
    print(f"  interpreter            {loop['interp_s'] * 1e3:10.1f} ms   "
          f"{loop['interp_ips'] / 1e6:8.2f} M insn/s")
    if "kernel_s" in loop:
        print(f"  kernel BPF_PROG_TEST_RUN {loop['kernel_s'] * 1e3:8.3f} ms   "
              f"{loop['kernel_ips'] / 1e6:8.1f} M insn/s   (JIT, {os.uname().release})")
        print(f"  kernel, wall clock/run   {loop['kernel_wall_s'] * 1e3:8.3f} ms   "
              f"{loop['kernel_wall_ips'] / 1e6:8.1f} M insn/s   (syscall included, repeat=20)")
        ratio = loop["kernel_ips"] / loop["interp_ips"]
        wall_ratio = loop["kernel_wall_ips"] / loop["interp_ips"]
        print(f"  ratio kernel/interpreter {ratio:8.0f}x (kernel-measured), {wall_ratio:.0f}x (wall clock)")
    else:
        print(f"  kernel                 skipped: {loop.get('kernel_skip', 'bpf() unavailable')}")
    print(f"conformance case cost ({cases['cases']} bpf_conformance cases, assemble + decode + run)")
    print(f"  interpreter            {cases['per_case_s'] * 1e6:10.1f} us per case")
    ips = loop["interp_ips"] / 1e6
    print(f"target: >= 5 M insn/s on the loop -> {'met' if ips >= 5 else 'NOT met'} ({ips:.2f} M)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
