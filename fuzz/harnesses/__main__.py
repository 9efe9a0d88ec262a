"""``python -m fuzz.harnesses NAME [--seconds S] [--plain]`` or ``--all``: see the package doc."""

from __future__ import annotations

import argparse
import os
import random
import re
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

from . import HARNESSES

_ROOT = Path(__file__).resolve().parents[2]


def _detail(e: BaseException) -> str:
    """``Type@path:function`` of the innermost frame of ours (as fuzz.oracle.exception_detail)."""
    for fr in reversed(traceback.extract_tb(e.__traceback__)):
        fn = fr.filename.replace("\\", "/")
        for top in ("reference_vm/", "conformance/", "fuzz/"):
            if top in fn:
                return f"{type(e).__name__}@{fn[fn.rindex(top) :]}:{fr.name}"
    return type(e).__name__


def _known() -> list[str]:
    """Signature substrings of known findings (fuzz/known-findings.yaml), read without YAML
    (PyYAML is imported by a harness under instrumentation, not here)."""
    path = _ROOT / "fuzz" / "known-findings.yaml"
    try:
        return re.findall(r'^\s*-\s*match:\s*"([^"]+)"', path.read_text(), re.M)
    except OSError:
        return []


def _wrap(body, allowed, known):  # type: ignore[no-untyped-def]
    def one(data: bytes) -> None:
        try:
            body(data)
        except allowed:
            pass
        except Exception as e:
            if any(k in _detail(e) for k in known):
                return
            raise

    return one


def _setup(name: str, instrument: bool):  # type: ignore[no-untyped-def]
    if instrument:
        import atheris

        with atheris.instrument_imports(include=["reference_vm", "conformance", "fuzz.strategies"]):
            from .targets import SETUPS

            return SETUPS[name]()
    from .targets import SETUPS

    return SETUPS[name]()


def run_one(name: str, seconds: float, plain: bool, runs: int | None, corpus: str | None) -> int:
    known = _known()
    made = _setup(name, instrument=not plain)
    if made is None:
        print(f"{name}: skipped (not available here)")
        return 0
    body, allowed = made
    one = _wrap(body, allowed, known)
    if plain:
        n, t0 = 0, time.monotonic()
        rng = random.Random(0)
        while time.monotonic() - t0 < seconds and (runs is None or n < runs):
            one(rng.randbytes(rng.choice((8, 16, 64, 256, 1024))))
            n += 1
        dt = time.monotonic() - t0
        print(
            f"stat::number_of_executed_units: {n}\nstat::average_exec_per_sec: {n / max(dt, 1e-9):.0f}",
            file=sys.stderr,
        )
        return 0
    import atheris

    artifacts = tempfile.mkdtemp(prefix=f"bpfcheck-{name}-")
    argv = [
        sys.argv[0],
        f"-max_total_time={max(1, int(seconds))}",
        f"-artifact_prefix={artifacts}/",
        "-print_final_stats=1",
        "-timeout=30",
        "-rss_limit_mb=4096",
    ]
    if runs is not None:
        argv.append(f"-runs={runs}")
    if not corpus:
        corpus = tempfile.mkdtemp(prefix=f"bpfcheck-{name}-corpus-")
        _seed_corpus(name, Path(corpus))
    os.makedirs(corpus, exist_ok=True)
    argv.append(corpus)
    atheris.Setup(argv, one)
    atheris.Fuzz()
    return 0


#: Seed inputs from the repository's corpora, per harness.
SEEDS = {
    "data": ["corpora/bpf_conformance/*.data"],
    "assembler": ["corpora/bpf_conformance/*.data"],
    "yaml": ["corpora/**/*.yaml"],
    "elf": ["corpora/elf/*.o"],
}


def _seed_corpus(name: str, folder: Path) -> None:
    files = [f for pattern in SEEDS.get(name, []) for f in sorted(_ROOT.glob(pattern))][:300]
    for k, f in enumerate(files):
        data = f.read_bytes()[: 1 << 16]
        if name == "assembler":  # just the asm section
            text = data.decode("utf-8", "replace")
            data = text.split("-- asm", 1)[-1].split("\n--", 1)[0].encode()
        (folder / f"seed{k}").write_bytes(data)
    if name == "decoder":
        from conformance.case import load_case

        for k, f in enumerate(sorted(_ROOT.glob("corpora/bpf_conformance/*.data"))[:200]):
            try:
                (folder / f"prog{k}").write_bytes(load_case(f).program_bytes())
            except Exception:  # noqa: BLE001 - a seed is optional
                continue


def run_all(seconds: float, plain: bool, names: list[str]) -> int:
    failed = []
    for name in names:
        cmd = [sys.executable, "-m", "fuzz.harnesses", name, "--seconds", str(seconds)] + (
            ["--plain"] if plain else []
        )
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_ROOT), env.get("PYTHONPATH", "")) if p)
        t0 = time.monotonic()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=seconds * 3 + 120)
        execs = re.search(r"stat::number_of_executed_units:\s*(\d+)", proc.stderr)
        rate = re.search(r"stat::average_exec_per_sec:\s*(\d+)", proc.stderr)
        cov = re.findall(r"cov: (\d+)", proc.stderr)
        status = "ok" if proc.returncode == 0 else f"FAILED (exit {proc.returncode})"
        if "skipped" in proc.stdout:
            status = proc.stdout.strip()
        print(
            f"{name:12} {status:10} {int(execs.group(1)) if execs else 0:>9,} execs  "
            f"{int(rate.group(1)) if rate else 0:>7,} exec/s  cov {cov[-1] if cov else '-':>6}  "
            f"{time.monotonic() - t0:5.1f} s",
            flush=True,
        )
        if proc.returncode != 0:
            failed.append(name)
            tail = "\n".join(proc.stderr.strip().splitlines()[-40:])
            print(f"--- {name} output (last lines) ---\n{tail}\n---", flush=True)
    print(f"{len(names) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m fuzz.harnesses")
    ap.add_argument("name", nargs="?", choices=HARNESSES)
    ap.add_argument("--all", action="store_true", help="every harness, each in its own process")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--runs", type=int)
    ap.add_argument("--plain", action="store_true", help="seeded random inputs, without atheris")
    ap.add_argument("--corpus", help="libFuzzer corpus folder (kept between runs)")
    a = ap.parse_args()
    if a.all or a.name is None:
        return run_all(a.seconds, a.plain, list(HARNESSES))
    return run_one(a.name, a.seconds, a.plain, a.runs, a.corpus)


if __name__ == "__main__":
    sys.exit(main())
