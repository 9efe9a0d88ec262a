"""Shared fixtures for the runner, CLI, plugin and pytest-plugin tests.

Cases are written into ``tmp_path`` by the tests (mostly as ``-- raw`` words, so that they do
not depend on the assembler); expected values come from the bpf_conformance corpus or from
the instruction encodings, never from our interpreter.
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# Hypothesis profiles, chosen by HYPOTHESIS_PROFILE (tox sets "ci"): CI is derandomized, so a
# failure replays from the same seed; "nightly" searches far more examples.
settings.register_profile("dev", deadline=None)
settings.register_profile("ci", deadline=None, derandomize=True, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("nightly", deadline=None, max_examples=20_000, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO / "corpora" / "bpf_conformance"
FAKE_PLUGINS = REPO / "tests" / "data" / "plugins"

def load_bench_script(name: str):  # type: ignore[no-untyped-def]
    """``bench/<name>.py`` imported as a module (the bench scripts are not a package)."""
    spec = importlib.util.spec_from_file_location(name, REPO / "bench" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


#: Encoded instructions (RFC 9669 §3, little-endian 64-bit words as ``-- raw`` writes them).
MOV_R0_1 = "0x00000001000000b7"  # mov %r0, 1
MOV_R0_0 = "0x00000000000000b7"  # mov %r0, 0
MOV_R0_R2 = "0x00000000000020bf"  # mov %r0, %r2
EXIT = "0x0000000000000095"  # exit
BAD_OPCODE = "0x00000000000000ff"  # opcode 0xff: not an instruction
SDIV_R0_1 = "0x0000000100010037"  # sdiv %r0, 1 (ALU64 DIV K, offset 1: cpu v4, divmul64)
CALLX_R2 = "0x000000000000028d"  # callx %r2 (bpf_conformance's callx group)


def _module_available(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ImportError:
        return False


HAVE_ASM = _module_available("reference_vm.asm")
HAVE_INTERPRETER = _module_available("reference_vm.interpreter")
needs_asm = pytest.mark.skipif(not HAVE_ASM, reason="reference_vm.asm is not importable yet")
needs_interpreter = pytest.mark.skipif(not HAVE_INTERPRETER,
                                       reason="reference_vm.interpreter is not importable yet")


def raw_case(*words: str, result: str | None = None, error: str | None = None, mem: str | None = None) -> str:
    """The text of a ``.data`` file with a ``-- raw`` program."""
    text = "-- raw\n" + "\n".join(words) + "\n"
    if mem is not None:
        text += f"-- mem\n{mem}\n"
    if result is not None:
        text += f"-- result\n{result}\n"
    if error is not None:
        text += f"-- error\n{error}\n"
    return text


@pytest.fixture
def write_case(tmp_path: Path) -> Callable[..., Path]:
    """``write_case(name, text, subdir="cases")`` -> path of the new ``.data`` file."""

    def write(name: str, text: str, subdir: str = "cases") -> Path:
        d = tmp_path / subdir
        d.mkdir(parents=True, exist_ok=True)
        p = d / f"{name}.data"
        p.write_text(text, encoding="utf-8")
        return p

    return write


@pytest.fixture
def subprocess_env() -> dict[str, str]:
    """The environment for child processes: the repository importable from any directory."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env.pop("PYTEST_ADDOPTS", None)
    return env


@pytest.fixture
def run_cli(subprocess_env: dict[str, str]) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run ``python -m conformance.cli ARGS`` as a subprocess and capture its output."""

    def run(*args: str, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "conformance.cli", *map(str, args)], cwd=cwd or REPO,
                              env=subprocess_env, capture_output=True, text=True, timeout=timeout)

    return run


@pytest.fixture
def fake_plugin() -> Callable[[str], str]:
    """``fake_plugin("crash")`` -> the target spec of ``tests/data/plugins/crash.py``."""

    def spec(name: str, *args: str) -> str:
        return "plugin:" + shlex.join([sys.executable, str(FAKE_PLUGINS / f"{name}.py"), *args])

    return spec
