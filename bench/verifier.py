"""Verifier benchmarks: ``python bench/verifier.py [--quick] [--kernel]``.

1. Straight-line programs of N ALU instructions (a mix of 64/32-bit add, xor, and, lsh on
   unknown inputs): verification time vs N and instructions processed per second.
2. Counted loops ``r0 += 1; if r0 < K goto`` (2K+2 instructions processed): time vs K.
3. Branchy programs: N diamonds on unknown bits (states, pruning).
4. The verifier corpus (corpora/verifier): mean time per case.

With ``--kernel`` (root and a working ``bpf()``), each program is also loaded into the running
kernel (log off, best of 3), so the kernel's verification time is measured in the same run.
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

from reference_vm.asm import assemble  # noqa: E402
from reference_vm.insn import encode_program  # noqa: E402
from reference_vm.verifier import verify  # noqa: E402

OPS = ("r0 += r2", "w0 ^= w2", "r0 &= 0xffff", "r2 <<= 3", "r0 -= 7", "w2 *= 3", "r0 |= r2", "r2 >>= 1")


def straight(n: int) -> bytes:
    body = "\n".join(OPS[i % len(OPS)] for i in range(n))
    return encode_program(assemble(f"r0 = *(u32 *)(r1 + 0)\nr2 = *(u32 *)(r1 + 4)\n{body}\nr0 = 0\nexit"))


def loop(k: int) -> bytes:
    return encode_program(assemble(f"r0 = 0\nl: r0 += 1\nif r0 < {k} goto l\nexit"))


def diamonds(n: int) -> bytes:
    body = "\n".join(f"if r1 & {1 << (i % 31)} goto +1\nr2 += {i}" for i in range(n))
    return encode_program(assemble(f"r1 = *(u32 *)(r1 + 0)\nr2 = 0\n{body}\nr0 = 0\nexit"))


def _best(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _kernel_time(code: bytes, repeat: int = 3) -> float | None:
    from conformance.kernel import syscall as sc

    try:
        best = float("inf")
        for _ in range(repeat):
            t0 = time.perf_counter()
            fd = sc.prog_load(code, sc.BPF_PROG_TYPE_SOCKET_FILTER)
            best = min(best, time.perf_counter() - t0)
            os.close(fd)
        return best
    except OSError:
        return None


def row(name: str, code: bytes, repeat: int, kernel: bool) -> None:
    t0 = time.perf_counter()
    res = verify(code)
    t = time.perf_counter() - t0
    if repeat > 1:
        t = min(t, _best(lambda: verify(code), repeat - 1))
    k = _kernel_time(code) if kernel else None
    kt = f"{k * 1e6:10.0f}" if k is not None else "         -"
    print(
        f"{name:24s} {len(code) // 8:7d} {res.insn_processed:10d} {res.total_states:7d} {res.verdict:7s}"
        f" {t * 1e3:10.2f} {res.insn_processed / t:12,.0f} {kt}"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller sizes (CI smoke run)")
    ap.add_argument("--kernel", action="store_true", help="also time BPF_PROG_LOAD on this kernel")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument(
        "--limit",
        action="store_true",
        help="also the programs at the 1,000,000-instruction complexity limit (minutes): a loop of "
        "499,999 iterations (1,000,000 processed, accepted), one of 500,000 (refused: too large), "
        "and a straight-line program of 200,000 instructions",
    )
    args = ap.parse_args(argv)
    sizes = (10, 100, 1000) if args.quick else (10, 100, 1000, 10000, 50000)
    loops = (10, 100, 1000) if args.quick else (10, 100, 1000, 10000, 100000)
    chains = (4, 8) if args.quick else (4, 8, 12, 16)
    print(
        f"{'program':24s} {'insns':>7s} {'processed':>10s} {'states':>7s} {'verdict':7s} {'ms':>10s} "
        f"{'insns/s':>12s} {'kernel us':>10s}"
    )
    for n in sizes:
        row(f"straight-line {n}", straight(n), args.repeat, args.kernel)
    for k in loops:
        row(f"loop x{k}", loop(k), args.repeat if k <= 10000 else 1, args.kernel)
    for n in chains:
        row(f"diamonds {n}", diamonds(n), args.repeat, args.kernel)
    if args.limit:
        row("straight-line 200000", straight(200_000), 1, args.kernel)
        row("loop x499999 (limit)", loop(499_999), 1, args.kernel)
        row("loop x500000 (over)", loop(500_000), 1, args.kernel)
    if not args.quick:
        from conformance.case import load_cases
        from conformance.targets.verifier import verify_case

        cases = [
            c
            for c in load_cases([str(ROOT / "corpora" / "verifier")])
            if c.name not in {"loop_unbounded_ctx", "loop_too_long", "branches_chain_15", "branches_chain_16"}
        ]
        t0 = time.perf_counter()
        for c in cases:
            verify_case(c)
        dt = time.perf_counter() - t0
        print(
            f"corpora/verifier: {len(cases)} cases (4 slow ones left out) in {dt:.1f} s, "
            f"{dt / len(cases) * 1e3:.2f} ms per case"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
