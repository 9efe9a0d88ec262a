"""``bpfcheck record``: kernel answers written into case files with provenance (conformance/record.py).

The text-editing tests run everywhere; the ones that ask the kernel SKIP with the capability
probe's reason where ``bpf(2)`` is unusable.
"""

from __future__ import annotations

import datetime as dt
import platform
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from conformance import record as rec
from conformance.cli import main as cli_main
from conformance.kernel.probe import probe

REPO = Path(__file__).resolve().parents[1]
CAPS = probe()
needs_kernel = pytest.mark.skipif(not CAPS.usable, reason=f"bpf() unusable here: {CAPS.unusable}")

OLD = "# expected: Linux 0.0-old, root, recorded 2000-01-01 by bpfcheck record"
#: A case with comments everywhere, a label, a mem section and a wrong result (r0 is 0x1122334455667788).
CASE = f"""{OLD}
# A comment that must survive.
-- asm
    mov %r0, 0   # keep this comment
    jeq %r2, 4, done
    mov %r0, 9
done:
    lddw %r0, 0x1122334455667788
    exit
-- mem
01 02 03 04
-- result   # header comment
0x5  # the value comment
"""


def _provenance() -> str:
    today = dt.date.today().isoformat()
    return f"# expected: Linux {platform.release()}, root, recorded {today} by bpfcheck record"


# --- Text editing (no kernel needed) ----------------------------------------------------------------------


def test_with_expectation_changes_only_provenance_and_value() -> None:
    new = rec.with_expectation(CASE, rec.Expectation(r0=0x1122334455667788), "# expected: NEW")
    old_lines, new_lines = CASE.splitlines(keepends=True), new.splitlines(keepends=True)
    assert len(old_lines) == len(new_lines)
    changed = [i for i, (a, b) in enumerate(zip(old_lines, new_lines, strict=True)) if a != b]
    assert changed == [0, len(old_lines) - 1]
    assert new_lines[0] == "# expected: NEW\n"
    assert new_lines[-1] == "0x1122334455667788  # the value comment\n"


def test_result_becomes_error_and_back_and_crlf_is_kept() -> None:
    crlf = CASE.replace("\n", "\r\n")
    shift = rec.Expectation(error="invalid shift 64 (errno EINVAL)")
    as_error = rec.with_expectation(crlf, shift, "# expected: E")
    assert "-- error # header comment\r\ninvalid shift 64 (errno EINVAL)\r\n" in as_error
    assert "-- result" not in as_error and "\n" not in as_error.replace("\r\n", "")
    back = rec.with_expectation(as_error, rec.Expectation(r0=7), "# expected: R")
    assert back.endswith("-- result # header comment\r\n0x7\r\n")


def test_missing_expectation_is_appended_and_provenance_inserted() -> None:
    text = "# generated\n-- asm\nmov %r0, 1\nexit"
    out = rec.with_expectation(text, rec.Expectation(r0=1), "# expected: P")
    assert out == "# expected: P\n# generated\n-- asm\nmov %r0, 1\nexit\n-- result\n0x1\n"
    case, expectation = rec.parse_case("<t>", text)
    assert expectation is None and len(case.program) == 2


def test_error_text_is_one_data_line() -> None:
    assert rec.error_text("Func#1 ('sub') is global -- x (errno EINVAL)") == "Func"
    assert rec.error_text("a -- b  c") == "a - - b c"


def test_bundled_corpus_is_never_ours() -> None:
    bundled = REPO / "corpora" / "bpf_conformance" / "add.data"
    assert not rec.is_ours(bundled, OLD + "\n" + bundled.read_text())
    assert rec.is_ours(REPO / "corpora" / "generated" / "x" / "y.data", "-- asm\nexit\n")
    assert rec.is_ours("/tmp/elsewhere.data", CASE) and not rec.is_ours("/tmp/elsewhere.data", "-- asm\n")


# --- Bad input (exit 2, one line; no kernel needed: files are read before the kernel is probed) ----


@pytest.mark.parametrize("text, fragment", [
    ("-- asm\nfrobnicate %r0\n-- result\n0\n", "frobnicate"),
    ("-- asm\nexit\n-- mem\nzz\n-- result\n0\n", "not a two-digit hex byte"),
    ("-- bogus\n", "unknown section header"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str,
                                          fragment: str) -> None:
    bad = tmp_path / "bad.data"
    bad.write_text(text)
    good = tmp_path / "good.data"
    good.write_text(CASE)
    assert cli_main(["record", str(good), str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("bpfcheck: ") and fragment in err
    assert good.read_text() == CASE  # nothing written before all files parse


def test_missing_path_and_bad_option_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["record", "/nonexistent/case.data"]) == 2
    assert cli_main(["record", "--mode", "nobody", "x.data"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and all(line.startswith("bpfcheck: ") for line in err)


def test_unusable_kernel_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from conformance.targets.kernel import KernelTarget

    monkeypatch.setattr(KernelTarget, "unavailable_reason", lambda self: "bpf() is not usable here: EPERM")
    f = tmp_path / "c.data"
    f.write_text(CASE)
    assert cli_main(["record", str(f)]) == 2
    assert "not usable here" in capsys.readouterr().err
    assert f.read_text() == CASE


# --- With the kernel -----------------------------------------------------------------------------------


@needs_kernel
def test_record_writes_provenance_and_keeps_the_rest(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "case.data"
    f.write_bytes(CASE.encode())
    assert cli_main(["record", str(f)]) == 0
    new = f.read_bytes().decode()
    assert new.splitlines()[0] == _provenance()
    assert new.splitlines()[-1] == "0x1122334455667788  # the value comment"
    assert new.splitlines()[1:-1] == CASE.splitlines()[1:-1]  # byte-identical otherwise
    assert "RECORDED" in capsys.readouterr().out
    before = f.read_bytes()
    assert cli_main(["record", str(f)]) == 0  # idempotent: same answer, no rewrite, no date churn
    assert f.read_bytes() == before


@needs_kernel
def test_record_writes_the_kernel_error(tmp_path: Path) -> None:
    f = tmp_path / "shift.data"
    f.write_text(f"{OLD}\n-- asm\nmov %r0, 1\nlsh %r0, 64\nexit\n-- result\n0x1\n")
    assert cli_main(["record", str(f)]) == 0
    assert f.read_text().endswith("-- error\ninvalid shift 64 (errno EINVAL)\n")
    assert cli_main(["record", "--check", str(f)]) == 0


@needs_kernel
def test_check_detects_a_tampered_expectation(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "case.data"
    f.write_text(CASE)
    assert cli_main(["record", str(f)]) == 0
    assert cli_main(["record", "--check", str(f)]) == 0
    tampered = f.read_text().replace("0x1122334455667788  #", "0x1122334455667789  #")
    f.write_text(tampered)
    capsys.readouterr()
    assert cli_main(["record", "--check", str(f)]) == 1
    out = capsys.readouterr().out
    assert "DRIFT" in out and "0x1122334455667789" in out and "1 drifted" in out
    assert f.read_text() == tampered  # --check writes nothing


RunCli = Callable[..., subprocess.CompletedProcess[str]]


@needs_kernel
def test_files_that_are_not_ours_are_untouched(tmp_path: Path, run_cli: RunCli) -> None:
    src = REPO / "corpora" / "bpf_conformance" / "lsh64-imm-high.data"
    copy = tmp_path / "lsh64-imm-high.data"
    copy.write_bytes(src.read_bytes())
    proc = run_cli("record", str(copy), str(src))
    assert proc.returncode == 0, proc.stderr
    assert copy.read_bytes() == src.read_bytes()
    assert "2 not ours (untouched)" in proc.stdout
    check = run_cli("record", "--check", str(src))
    assert check.returncode == 1 and "invalid shift 68" in check.stdout
