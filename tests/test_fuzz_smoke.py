"""``fuzz-smoke`` inside the ordinary test run, sized to fit: every atheris harness for a few
seconds (seeded random inputs where atheris is not installed), then a short three-way campaign
on the interpreter and both JITs, and one with bpfcheck's verifier on verifier-aware programs
and whole cases. All must find nothing new on main (known, reported findings in
fuzz/known-findings.yaml excepted). ``tox -e fuzz-smoke`` runs the longer version."""

from __future__ import annotations

import importlib.util
import sys

import pytest

from fuzz.harnesses import HARNESSES

pytestmark = pytest.mark.slow
SECONDS = 4
HAVE_ATHERIS = importlib.util.find_spec("atheris") is not None


@pytest.mark.parametrize("name", HARNESSES)
def test_harness_finds_nothing(name: str, subprocess_env, tmp_path) -> None:
    import subprocess

    cmd = [sys.executable, "-m", "fuzz.harnesses", name, "--seconds", str(SECONDS)]
    if not HAVE_ATHERIS:
        cmd.append("--plain")
    proc = subprocess.run(cmd, env=subprocess_env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-30:])
    assert proc.returncode == 0, f"harness {name} found something:\n{tail}"
    assert "number_of_executed_units" in proc.stderr or "skipped" in proc.stdout, tail


def test_short_differential_campaign_finds_nothing_new(run_cli, tmp_path) -> None:
    res = run_cli(
        "fuzz",
        "--time",
        "120s",
        "--jobs",
        "1",
        "--max-seeds",
        "24",
        "--inputs",
        "8",
        "--targets",
        "interpreter,jit-x86_64,jit-arm64",
        "--state",
        tmp_path / "st",
        "--seed",
        "1",
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "0 new" in res.stdout


def test_short_verifier_campaign_finds_nothing_new(run_cli, tmp_path) -> None:
    """Verifier-aware programs and whole cases (maps, ring buffer, tail calls) on the interpreter,
    both JITs and bpfcheck's verifier (soundness and witness checks)."""
    res = run_cli(
        "fuzz",
        "--time",
        "120s",
        "--jobs",
        "1",
        "--max-seeds",
        "32",
        "--inputs",
        "8",
        "--verifier-aware",
        "--maps",
        "0.25",
        "--targets",
        "interpreter,jit-x86_64,jit-arm64,verifier",
        "--state",
        tmp_path / "st",
        "--seed",
        "2",
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "0 new" in res.stdout
