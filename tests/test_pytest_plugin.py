"""The pytest plugin, run as ``python -m pytest`` subprocesses in a scratch project.

``-p no:bpfcheck -p conformance.pytest_plugin`` loads the plugin whether or not the ``pytest11``
entry point is installed (blocking the entry point name avoids registering the module twice).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import (
    BAD_OPCODE,
    CALLX_R2,
    EXIT,
    MOV_R0_0,
    MOV_R0_1,
    REPO,
    needs_asm,
    needs_interpreter,
    raw_case,
)

PLUGIN_ARGS = ["-p", "no:bpfcheck", "-p", "conformance.pytest_plugin", "-p", "no:cacheprovider"]


@pytest.fixture
def project(tmp_path: Path, write_case) -> Path:
    """A scratch project: pytest.ini, one Python test, and .data cases under cases/."""
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_plain.py").write_text("def test_plain():\n    pass\n")
    write_case("one", raw_case(MOV_R0_1, EXIT, result="0x1"))
    write_case("zero", raw_case(MOV_R0_0, EXIT, result="0x0"))
    write_case("invalid", raw_case(MOV_R0_1, BAD_OPCODE, EXIT, error=""))
    write_case("callx", raw_case(MOV_R0_1, CALLX_R2, EXIT, result="0x1"))
    return tmp_path


@pytest.fixture
def pytest_run(subprocess_env):
    def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "pytest", *PLUGIN_ARGS, *args], cwd=cwd,
                              env=subprocess_env, capture_output=True, text=True, timeout=300)

    return run


def _collected(proc: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in proc.stdout.splitlines() if "::" in line]


def test_node_ids_are_file_and_target(project, pytest_run, fake_plugin):
    zero = fake_plugin("zero")
    proc = pytest_run("--bpf-cases", "cases", "--bpf-target", "interpreter", "--bpf-target", zero,
                      "--collect-only", "-q", cwd=project)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert _collected(proc) == [f"cases/{name}.data::{target}" for name in ("callx", "invalid", "one", "zero")
                                for target in ("interpreter", zero)]


@needs_asm
def test_corpus_node_id(pytest_run):
    proc = pytest_run("--bpf-cases", "corpora/bpf_conformance/add.data", "--collect-only", "-q", cwd=REPO)
    assert _collected(proc) == ["corpora/bpf_conformance/add.data::interpreter"]


def test_data_files_are_not_collected_by_default(project, pytest_run):
    for args in ([], ["test_plain.py"]):
        proc = pytest_run(*args, "--collect-only", "-q", cwd=project)
        assert _collected(proc) == ["test_plain.py::test_plain"], proc.stdout


def test_directory_on_the_command_line(project, pytest_run):
    proc = pytest_run("cases", "--collect-only", "-q", cwd=project)
    assert len(_collected(proc)) == 4 and all(n.endswith("::interpreter") for n in _collected(proc))


def test_ini_option(project, pytest_run):
    (project / "pytest.ini").write_text("[pytest]\nbpf_case_paths = cases\n")
    proc = pytest_run("--collect-only", "-q", cwd=project)
    assert len(_collected(proc)) == 5  # four cases and test_plain


def test_failure_shows_expected_and_actual(project, pytest_run, fake_plugin):
    proc = pytest_run("--bpf-cases", "cases", "--bpf-target", fake_plugin("zero"), "-rs", cwd=project)
    assert proc.returncode == 1
    out = proc.stdout
    assert "expected: r0 = 0x1" in out and "actual:   r0 = 0x0" in out
    assert "expected: an error" in out  # the -- error case answered with a value
    assert "requires group callx" in out  # the skip carries its reason
    assert "2 failed, 1 passed, 1 skipped" in out


def test_strict_turns_skips_into_failures(project, pytest_run, fake_plugin):
    proc = pytest_run("--bpf-cases", "cases/callx.data", "--bpf-target", fake_plugin("zero"), "--bpf-strict",
                      cwd=project)
    assert proc.returncode == 1 and "1 failed" in proc.stdout
    assert "--bpf-strict counts skips as failures" in proc.stdout


def test_divergences_are_strict_xfails(project, pytest_run, fake_plugin):
    div = project / "zero.yaml"
    div.write_text("divergences:\n"
                   "  - case: one\n    reason: always zero\n    expect: {r0: 0}\n"
                   "  - case: invalid\n    reason: never reports errors\n"
                   "  - case: zero\n    reason: stale entry\n")
    proc = pytest_run("--bpf-cases", "cases", "--bpf-target", fake_plugin("zero"), "--bpf-divergences", div,
                      "-rxX", cwd=project)
    assert proc.returncode == 1
    assert "XFAIL cases/one.data" in proc.stdout and "always zero" in proc.stdout
    assert "XFAIL cases/invalid.data" in proc.stdout
    assert "[XPASS(strict)] stale entry" in proc.stdout
    assert "1 failed, 1 skipped, 2 xfailed" in proc.stdout


def test_divergence_that_changed_is_a_failure(project, pytest_run, fake_plugin):
    div = project / "zero.yaml"
    div.write_text("- case: one\n  reason: recorded as 2\n  expect: {r0: 2}\n")
    proc = pytest_run("--bpf-cases", "cases/one.data", "--bpf-target", fake_plugin("zero"),
                      "--bpf-divergences", div, cwd=project)
    assert proc.returncode == 1 and "diverges differently than recorded" in proc.stdout


def test_malformed_case_is_a_one_line_collection_error(project, pytest_run, write_case):
    bad = write_case("bad", raw_case(MOV_R0_1, EXIT, mem="00 zz", result="1"))
    proc = pytest_run("--bpf-cases", "cases", cwd=project)
    assert proc.returncode == 2
    assert f"bpfcheck: {bad}:5: -- mem: 'zz' is not a two-digit hex byte" in proc.stdout
    assert "Traceback" not in proc.stdout and "data_file.py" not in proc.stdout


def test_unknown_target_is_a_usage_error(project, pytest_run):
    proc = pytest_run("--bpf-cases", "cases", "--bpf-target", "nope", cwd=project)
    assert proc.returncode == 4 and "unknown target 'nope'" in proc.stderr


@needs_interpreter
def test_xdist(project, pytest_run):
    proc = pytest_run("--bpf-cases", "cases", "-n", "2", cwd=project)
    assert proc.returncode == 0, proc.stdout
    assert "3 passed, 1 skipped" in proc.stdout
