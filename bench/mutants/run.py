"""Which mutants the conformance corpora kill, and which a short differential campaign kills.

    python bench/mutants/run.py [--minutes N] [--jobs J] [--only REGEX] [--markdown FILE]

* corpora: every case under ``corpora/`` (bpf_conformance ``.data`` and the YAML whole-program
  cases) on the mutant's target, judged by the runner against the case's expectation; a mutant
  is killed when a case that passes unmutated fails (or errors) mutated.
* campaign: the campaign's generator and oracle, reference = the interpreter, the mutated target
  compared with it on the full state, fresh seeds ``0, 1, 2, ...`` (every fourth one a whole case
  with maps, ring buffer and tail calls, :mod:`fuzz.wholeprog`) until the first divergence that
  involves the mutant (not one the reference shares, such as a known bug of a helper) or
  ``--minutes`` (default 10, per the issue; use a short setting in CI). A verifier mutant is the
  ``verifier`` target of that oracle, on verifier-aware programs: it is killed by a soundness
  finding (an accepted program faults), a witness violation or an exception.
* tests (verifier mutants only): ``tests/test_tnum.py``, the exhaustive soundness checks of the
  abstract domains, run with the mutant applied (``bench/mutants/pytest_apply.py``).

The corpora for verifier mutants are ``corpora/verifier`` (on the ``verifier`` target, which
compares verdicts and messages with the kernel's), without its four slow cases.

Prints a table (and ``--markdown`` writes it for docs/fuzzing.md). Mutants run in parallel in
``--jobs`` processes.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))  # after PYTHONPATH: the code under test may come from elsewhere

_BASE_TARGETS = {
    "interpreter": "conformance.targets.interpreter:InterpreterTarget",
    "jit-x86_64": "conformance.targets.jit:X86_64Target",
    "jit-arm64": "conformance.targets.jit:Arm64Target",
    "verifier": "conformance.targets.verifier:VerifierTarget",
}
_CASES: dict[str, object] = {}
#: corpora/verifier cases that take 10-50 s each (docs/verifier.md, Speed)
SLOW_VERIFIER_CASES = {"loop_unbounded_ctx", "loop_too_long", "branches_chain_15", "branches_chain_16"}


def _cases(target_name: str = ""):  # type: ignore[no-untyped-def]
    key = "verifier" if target_name == "verifier" else "all"
    if key not in _CASES:
        from conformance.case import load_cases

        if key == "verifier":
            cases = load_cases([str(ROOT / "corpora" / "verifier")])
            _CASES[key] = [c for c in cases if c.name not in SLOW_VERIFIER_CASES]
        else:
            _CASES[key] = load_cases([str(ROOT / "corpora")])
    return _CASES[key]


def _target(name: str):  # type: ignore[no-untyped-def]
    import importlib

    module, attr = _BASE_TARGETS[name].split(":")
    return getattr(importlib.import_module(module), attr)()


def _verdicts(target_name: str) -> dict[str, str]:
    from conformance.runner import compare, safe_run

    target = _target(target_name)
    out = {}
    for case in _cases(target_name):
        reason = target.supports(case) if hasattr(target, "supports") else None
        if reason is not None:
            continue
        verdict, _ = compare(case, safe_run(target, case, 10.0), exact_errors=False)
        out[f"{case.path}::{case.name}"] = str(verdict)
    return out


_BASELINE: dict[str, dict[str, str]] = {}


def corpora_kill(mutant_name: str) -> tuple[str | None, int]:
    """(name of the first case that kills the mutant or None, cases run)."""
    from bench.mutants import get_mutant

    m = get_mutant(mutant_name)
    base = _BASELINE.get(m.target)
    if base is None:
        base = _BASELINE[m.target] = _verdicts(m.target)
    with m.applied():
        mutated = _verdicts(m.target)
    for key, verdict in base.items():
        if verdict == "PASS" and mutated.get(key) != "PASS":
            return key.rsplit("/", 1)[-1], len(base)
    return None, len(base)


def campaign_kill(mutant_name: str, seconds: float) -> tuple[str | None, int, float]:
    """(seed and signature of the first divergence involving the mutant, execs, seconds)."""
    from bench.mutants import get_mutant
    from fuzz.oracle import Oracle
    from fuzz.strategies import GenConfig, case_from_seed
    from fuzz.wholeprog import whole_from_seed

    target = f"mutant:{mutant_name}"
    oracle = Oracle(["interpreter", target])
    aware = get_mutant(mutant_name).target == "verifier"
    cfg = GenConfig(inputs=32, verifier_aware=aware)
    t0 = time.monotonic()
    execs, seed = 0, 0
    while time.monotonic() - t0 < seconds:
        if seed % 4 == 3:
            results = oracle.check_whole(whole_from_seed(seed, GenConfig(inputs=8)))
        else:
            case = case_from_seed(seed, cfg)
            results = oracle.check(case.program, case.mems, case.budget)
        for r in results:
            execs += 1
            ref_exc = {d.detail for d in r.divergences if d.target == "interpreter"}
            for d in r.divergences:
                if d.target == target and not (d.fields == ("exception",) and d.detail in ref_exc):
                    return f"seed {seed}: {d.key}", execs, time.monotonic() - t0
        seed += 1
    return None, execs, time.monotonic() - t0


def tests_kill(mutant_name: str) -> str | None:
    """The first failing test of tests/test_tnum.py with the mutant applied, or None."""
    import os
    import subprocess

    env = dict(os.environ, BPFCHECK_MUTANT=mutant_name, PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-p", "no:xdist"]
    cmd += ["-p", "bench.mutants.pytest_apply", str(ROOT / "tests" / "test_tnum.py")]
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if res.returncode == 0:
        return None
    failed = [line for line in res.stdout.splitlines() if line.startswith("FAILED")]
    return failed[0].split()[1].split("::", 1)[-1][:60] if failed else f"exit {res.returncode}"


def evaluate(args: tuple[str, float, bool]) -> dict[str, object]:
    name, seconds, with_corpora = args
    from bench.mutants import MutantStale, get_mutant

    m = get_mutant(name)
    row: dict[str, object] = {
        "name": name,
        "target": m.target,
        "bug_class": m.bug_class,
        "history": m.history,
    }
    try:
        m.check()
    except MutantStale as e:
        row["stale"] = str(e)
        return row
    if with_corpora:
        row["corpora"], row["cases"] = corpora_kill(name)
    row["campaign"], row["execs"], row["seconds"] = campaign_kill(name, seconds)
    if m.target == "verifier":
        row["tests"] = tests_kill(name)
    return row


def table(rows: list[dict[str, object]], minutes: float) -> str:
    lines = [
        "| mutant | target | bug class | corpora | campaign (time to kill) | test_tnum.py |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "stale" in r:
            lines.append(f"| {r['name']} | {r['target']} | {r['bug_class']} | stale | stale | stale |")
            continue
        corp = "—" if "corpora" not in r else (f"killed ({r['corpora']})" if r["corpora"] else "**survives**")
        camp = (
            f"killed in {r['seconds']:.1f} s ({r['execs']:,} execs)"
            if r["campaign"]
            else f"**survives** {r['seconds']:.0f} s ({r['execs']:,} execs)"
        )
        tests = "—" if "tests" not in r else (f"killed ({r['tests']})" if r["tests"] else "**survives**")
        lines.append(f"| {r['name']} | {r['target']} | {r['bug_class']} | {corp} | {camp} | {tests} |")
    live = [r for r in rows if "stale" not in r]
    by_corpora = sum(1 for r in live if r.get("corpora"))
    by_campaign = sum(1 for r in live if r.get("campaign"))
    by_tests = sum(1 for r in live if r.get("tests"))
    either = sum(1 for r in live if r.get("corpora") or r.get("campaign") or r.get("tests"))
    lines.append("")
    lines.append(
        f"{len(rows)} mutants ({len(rows) - len(live)} stale): corpora kill {by_corpora}, a "
        f"{minutes:g}-minute campaign kills {by_campaign}, test_tnum.py kills {by_tests}, "
        f"all together {either}."
    )
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0, help="campaign time per mutant (default 10)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--only", help="regex of mutant names")
    ap.add_argument("--no-corpora", action="store_true")
    ap.add_argument("--markdown", help="write the table here")
    a = ap.parse_args()
    from bench.mutants import all_mutants

    names = [m.name for m in all_mutants() if not a.only or re.search(a.only, m.name)]
    work = [(n, a.minutes * 60, not a.no_corpora) for n in names]
    rows: list[dict[str, object]] = []
    t0 = time.monotonic()
    with ProcessPoolExecutor(max_workers=a.jobs) as pool:
        for row in pool.map(evaluate, work):
            rows.append(row)
            status = (
                "stale"
                if "stale" in row
                else (
                    f"corpora {'KILL' if row.get('corpora') else 'live'}  campaign "
                    f"{'KILL' if row.get('campaign') else 'live'} {row.get('seconds', 0):.1f}s"
                )
            )
            print(f"{row['name']:34} {status}", flush=True)
    text = table(rows, a.minutes)
    print()
    print(text)
    print(f"({time.monotonic() - t0:.0f} s)")
    if a.markdown:
        Path(a.markdown).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
