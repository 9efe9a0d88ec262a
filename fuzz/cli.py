"""``bpfcheck fuzz``: campaigns, replay, promotion of findings.

    bpfcheck fuzz --time 8h --jobs N --targets interpreter,jit-x86_64,jit-arm64 --state DIR [--seed S]
    bpfcheck fuzz --time 8h --jobs 64 --dask tcp://scheduler:8786 --state /shared/DIR
    bpfcheck fuzz replay SEED [--state DIR] [--targets ...]
    bpfcheck fuzz promote FINDING --expect r0=0x2a --source "RFC 9669 §4.1 ..." [--dest DIR]
    bpfcheck fuzz status --state DIR

Exit status: 0 when the campaign found nothing new (known findings excepted), 1 otherwise;
2 for bad input (one line, no traceback).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from reference_vm.errors import UsageError

EXIT_OK, EXIT_FOUND, EXIT_USAGE = 0, 1, 2
DEFAULT_MAPS = 0.25  # share of whole cases in a new campaign
REGRESSIONS = Path(__file__).resolve().parent.parent / "corpora" / "regressions"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog.removeprefix('bpfcheck').strip()}: {message}")


def _run_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="bpfcheck fuzz",
        description="Differential fuzzing campaign (see docs/fuzzing.md). "
        "Other actions: bpfcheck fuzz replay SEED | promote FINDING | status --state DIR.",
    )
    p.add_argument("--time", default="10m", help="how long to run: 90, 30s, 10m, 8h (default 10m)")
    p.add_argument("--jobs", "-j", type=int, default=os.cpu_count() or 1, help="worker processes")
    p.add_argument(
        "--targets",
        default="interpreter,jit-x86_64,jit-arm64",
        help="comma list; the first is the reference (plugin:PATH[ ARGS] allowed, once, last)",
    )
    p.add_argument(
        "--target", action="append", default=[], help="one target (repeatable; instead of --targets)"
    )
    p.add_argument("--state", required=True, help="state folder (created, or resumed)")
    p.add_argument("--seed", type=lambda s: int(s, 0), default=None, help="campaign seed (default: random)")
    p.add_argument(
        "--dask",
        metavar="ADDRESS",
        help="run the workers on a Dask cluster (tcp://host:8786), or "
        "local[:N] for a LocalCluster; the state folder must be on a shared filesystem",
    )
    p.add_argument("--inputs", type=int, default=32, help="inputs per program (default 32)")
    p.add_argument("--max-insns", type=int, default=40, help="instructions per program body (default 40)")
    p.add_argument("--budget", type=int, default=4096, help="instruction budget per run (default 4096)")
    p.add_argument("--long-jumps", action="store_true", help="also ~32767-instruction jumps (slow)")
    p.add_argument("--run-timeout", type=float, default=10.0, help="seconds per target run (default 10)")
    p.add_argument(
        "--hang-timeout",
        type=float,
        default=60.0,
        help="seconds without progress before a worker is killed and restarted (default 60)",
    )
    p.add_argument("--no-minimize", action="store_true", help="record findings without delta debugging")
    p.add_argument("--max-seeds", type=int, help="stop each worker after this many seeds (tests, CI)")
    p.add_argument("--known", help="known-findings YAML (default: fuzz/known-findings.yaml)")
    p.add_argument(
        "--allow-kernel",
        action="store_true",
        help="allow the kernel targets (kernel, kernel-capbpf): only programs bpfcheck's verifier "
        "accepts are loaded; skipped with the reason where bpf() is refused",
    )
    p.add_argument(
        "--verifier-aware",
        action="store_true",
        help="generate mostly programs the verifier accepts (initialised registers, checked "
        "offsets, counted loops); add the verifier target with --targets interpreter,...,verifier",
    )
    p.add_argument(
        "--maps",
        type=float,
        default=None,
        metavar="SHARE",
        help="share of programs generated as whole cases: two programs with an array, a hash map, "
        "a ring buffer and a prog array (default 0.25 for a new campaign, the stored share when "
        "resuming; 0 = none)",
    )
    p.add_argument(
        "--witness-inputs",
        type=int,
        default=1,
        help="inputs per program checked against the verifier's states (witness mode; default 1)",
    )
    p.add_argument("--quiet", "-q", action="store_true")
    return p


def main(argv: Sequence[str]) -> int:
    argv = list(argv)
    if argv[:1] == ["replay"]:
        return _replay(argv[1:])
    if argv[:1] == ["promote"]:
        return _promote(argv[1:])
    if argv[:1] == ["status"]:
        return _status(argv[1:])
    return _run(argv)


def _targets(args: argparse.Namespace) -> list[str]:
    from .targets import parse_targets

    specs = args.target or [args.targets]
    return parse_targets(specs, allow_kernel=args.allow_kernel)


def _kernel_available(targets: list[str], allow_kernel: bool) -> list[str]:
    """Kernel targets where ``bpf()`` is refused are left out, with the probe's reason."""
    from .targets import make_target, parse_targets

    kept = []
    for spec in targets:
        if spec.startswith("kernel"):
            reason = make_target(spec, allow_kernel=allow_kernel).unavailable_reason()
            if reason is not None:
                print(f"bpfcheck fuzz: {spec} target skipped: {reason}", flush=True)
                continue
        kept.append(spec)
    if len(kept) != len(targets):
        parse_targets(kept, allow_kernel=allow_kernel)  # still two targets, an engine first?
    return kept  # a kernel target verifies every program itself before it loads it


def _run(argv: list[str]) -> int:
    import random

    from .campaign import CampaignConfig, State, parse_duration, run_campaign

    args = _run_parser().parse_args(argv)
    if args.jobs < 1:
        raise UsageError("--jobs must be at least 1")
    if args.maps is not None and not 0 <= args.maps <= 1:
        raise UsageError("--maps must be between 0 and 1")
    if args.witness_inputs < 0:
        raise UsageError("--witness-inputs must be 0 or more")
    targets = _kernel_available(_targets(args), args.allow_kernel)
    state = State(args.state)
    seed = args.seed
    if seed is None:
        seed = state.config().seed if (state.root / "campaign.json").exists() else random.randrange(1 << 31)
    if args.maps is None:
        args.maps = state.config().maps if (state.root / "campaign.json").exists() else DEFAULT_MAPS
    cfg = CampaignConfig(
        seed=seed,
        targets=targets,
        jobs=args.jobs,
        inputs=args.inputs,
        max_insns=args.max_insns,
        budget=args.budget,
        run_timeout=args.run_timeout,
        hang_timeout=args.hang_timeout,
        minimize=not args.no_minimize,
        long_jumps=args.long_jumps,
        verifier_aware=args.verifier_aware,
        allow_kernel=args.allow_kernel,
        witness_inputs=args.witness_inputs,
        maps=args.maps,
    )
    from .targets import make_target

    for spec in targets:  # fail early, with one line, on a bad target
        make_target(spec, allow_kernel=args.allow_kernel)
    print(
        f"bpfcheck fuzz: seed {seed}, targets {', '.join(targets)}, {args.jobs} worker(s)"
        + (f" on dask {args.dask}" if args.dask else ""),
        flush=True,
    )
    new = run_campaign(
        cfg,
        args.state,
        seconds=parse_duration(args.time),
        max_seeds=args.max_seeds,
        dask=args.dask,
        known_file=args.known,
        quiet=args.quiet,
    )
    return EXIT_FOUND if new else EXIT_OK


def _replay(argv: list[str]) -> int:
    from .campaign import replay
    from .oracle import describe

    p = _Parser(
        prog="bpfcheck fuzz replay",
        description="Run the input of one seed (CAMPAIGN:WORKER:INDEX) "
        "again and print every target's outcome.",
    )
    p.add_argument("seed")
    p.add_argument("--state", help="the campaign's state folder (needed for mutated inputs)")
    p.add_argument("--targets", help="compare these targets instead of the campaign's")
    p.add_argument("--show", action="store_true", help="print the program too")
    args = p.parse_args(argv)
    targets = args.targets.split(",") if args.targets else None
    case, results, names = replay(args.seed, args.state, targets)
    if args.show:
        from reference_vm.asm import disassemble

        for name, program in getattr(case, "programs", (("main", case.program),)):
            print(
                f"{name}:" if hasattr(case, "programs") else "", end="\n" if hasattr(case, "programs") else ""
            )
            print(disassemble(list(program)), end="")
    bad = 0
    for n, r in enumerate(results):
        if r.divergences:
            bad += 1
            print(f"input {n} ({(r.mem or b'').hex() or 'no memory'}): DIVERGES: {r.coarse}")
            print("  " + describe(r, names).replace("\n", "\n  "))
    print(f"seed {args.seed}: {len(results)} inputs, {bad} diverging ({', '.join(names)})")
    return EXIT_FOUND if bad else EXIT_OK


_EXPECT = re.compile(r"r0=(-?(?:0x[0-9a-fA-F]+|\d+))$|error$")


def _promote(argv: list[str]) -> int:
    """Write a finding as a regression case, with an expected value that does not come from us."""
    from .minimize import atomic_write

    p = _Parser(
        prog="bpfcheck fuzz promote",
        description="Turn a confirmed finding into a regression case in "
        "corpora/regressions/. The expected value must come from the kernel (--expect-from kernel) "
        "or be given with --expect and cited with --source: never from bpfcheck's own targets.",
    )
    p.add_argument("finding", help="a finding folder (STATE/findings/ID) or its repro.data")
    p.add_argument("--expect", help="r0=VALUE or 'error'")
    p.add_argument("--expect-from", choices=("kernel",), help="take the expected value from the live kernel")
    p.add_argument("--source", help="where the expected value comes from (RFC section, kernel commit, ...)")
    p.add_argument("--name", help="case name (default: fuzz-ID)")
    p.add_argument(
        "--dest", default=str(REGRESSIONS), help="destination folder (default corpora/regressions)"
    )
    args = p.parse_args(argv)
    if args.expect_from == "kernel":
        raise UsageError(
            "--expect-from kernel: taking expected values from the kernel for promoted findings is "
            "not available yet (run the campaign with --allow-kernel --targets ...,kernel to "
            "compare with it); use --expect r0=... --source ..."
        )
    if not args.expect:
        raise UsageError(
            "give the expected value: --expect r0=VALUE (or error) with --source, or --expect-from kernel"
        )
    if not args.source or not args.source.strip():
        raise UsageError(
            "--source is required: say where the expected value comes from "
            "(an RFC 9669 section, a kernel source line or commit, a recorded kernel run)"
        )
    m = _EXPECT.match(args.expect.strip())
    if m is None:
        raise UsageError(f"--expect {args.expect!r}: want r0=VALUE (hex or decimal) or error")
    path = Path(args.finding)
    folder = path if path.is_dir() else path.parent
    repro = folder / "repro.data" if path.is_dir() else path
    try:
        text = repro.read_text()
    except OSError as e:
        raise UsageError(f"cannot read {repro}: {e.strerror}") from None
    meta: dict[str, object] = {}
    if (folder / "finding.json").exists():
        meta = json.loads((folder / "finding.json").read_text())
    fid = str(meta.get("id", folder.name))
    body: list[str] = []
    section = None
    for line in text.splitlines():
        if line.startswith("--"):
            section = line[2:].strip()
            if section in ("result", "error"):
                continue
        if section in ("result", "error") or (section is None and line.startswith("#")):
            continue  # the reproducer header and the reference target's value go
        body.append(line)
    head = [
        f"# Regression case from bpfcheck fuzz finding {fid} (seed {meta.get('seed', '?')}).",
        f"# signature: {meta.get('signature', '?')}",
        f"# expected: {args.source.strip()}",
        f"# promoted by bpfcheck fuzz promote; expected value given by the user ({args.expect}), "
        "not computed by bpfcheck",
    ]
    tail = ["-- error", ""] if m.group(1) is None else ["-- result", m.group(1)]
    name = args.name or f"fuzz-{fid}"
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise UsageError(f"--name {name!r}: letters, digits, _ . - only")
    dest = Path(args.dest) / f"{name}.data"
    if dest.exists():
        raise UsageError(f"{dest} exists already")
    out = "\n".join(head + body + tail) + "\n"
    from conformance.data_file import parse_data_text

    parse_data_text(out, str(dest))  # the case must read back
    atomic_write(dest, out)
    if (folder / "finding.json").exists():
        atomic_write(
            folder / "promoted.json",
            json.dumps({"case": str(dest), "expect": args.expect, "source": args.source}) + "\n",
        )
    print(f"wrote {dest}")
    return EXIT_OK


def _status(argv: list[str]) -> int:
    from .campaign import Progress, State, progress_line, read_lines

    p = _Parser(prog="bpfcheck fuzz status")
    p.add_argument("--state", required=True)
    args = p.parse_args(argv)
    state = State(args.state)
    cfg = state.config()
    prog = Progress.read(state, max(cfg.jobs, len(list(state.p("workers").glob("w*.json")))))
    restarts = sum(1 for e in read_lines(state.p("log.jsonl")) if e.get("ev") == "restart")
    print(f"seed {cfg.seed}, targets {', '.join(cfg.targets)}")
    print(progress_line(prog, 0, 0, cfg.jobs, restarts))
    for f in state.findings():
        print(
            f"finding {f['id']}: {f['signature']} seed {f.get('seed')}"
            + (f" (known: {f['known']})" if f.get("known") else "")
        )
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
