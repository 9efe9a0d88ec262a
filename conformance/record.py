"""``bpfcheck record``: write the live kernel's answers into case files, with provenance.

For each ``.data`` case the kernel target (:mod:`conformance.targets.kernel`) runs the program;
its answer becomes the file's expectation: ``-- result`` with r0 in hex, or ``-- error`` with the
kernel's message (``invalid shift 64 (errno EINVAL)``). A comment line at the top records where
the expectation came from::

    # expected: Linux 6.18.44-fc-v769, root, recorded 2026-04-01 by bpfcheck record

Everything else in the file stays byte-identical (comments, labels, blank lines, line endings):
only the provenance line and the value line of the expectation section change, and a missing
expectation section is appended at the end. A file whose recorded answer is already the
kernel's is left alone (no date churn).

Only our own files are ever rewritten: those that already carry an ``# expected:`` line and those
under ``corpora/generated/``. The bundled bpf_conformance corpus (and any other file) is read,
never written. ``--check`` writes nothing: it reports drift (a case whose kernel answer differs
from its file) and exits 1 if there is any.

Expectations come from the kernel only, never from our interpreter.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from reference_vm.errors import CaseFormatError, UsageError
from reference_vm.outcome import Outcome

from .case import Case, case_from_data, find_case_files
from .data_file import _SECTIONS, parse_data_text

PROVENANCE_PREFIX = "# expected:"
CORPORA = Path(__file__).resolve().parent.parent / "corpora"
GENERATED_DIR = CORPORA / "generated"
#: Never written, whatever their content: third-party corpora bundled as they are.
FOREIGN_DIRS = (CORPORA / "bpf_conformance",)
EXIT_OK, EXIT_DRIFT, EXIT_USAGE = 0, 1, 2
_PROVENANCE = re.compile(r"^# expected: Linux (?P<release>\S+), (?P<mode>\w+), recorded (?P<date>[\d-]+)")


# --- Expectations -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Expectation:
    """What a case expects: ``r0``, or an ``error`` text (``""`` = any error)."""

    r0: int | None = None
    error: str | None = None

    def describe(self) -> str:
        if self.error is None:
            return f"r0 = {self.r0:#x}" if self.r0 is not None else "nothing"
        return f"error {self.error!r}" if self.error else "any error"

    def matches(self, other: Expectation) -> bool:
        """``other`` (the kernel's answer) agrees with this (the file's) expectation."""
        if self.error is not None:
            return other.error is not None and (not self.error or self.error == other.error)
        return other.error is None and self.r0 == other.r0


def error_text(message: str) -> str:
    """A kernel message as a ``-- error`` line: one line, no ``#`` (comment), no ``--`` (header)."""
    text = " ".join(message.split("#", 1)[0].split())
    return re.sub(r"-{2,}", lambda m: " ".join(m.group()), text)


def answer_of(outcome: Outcome) -> Expectation | None:
    """The kernel's answer as an expectation; None when the outcome is not an answer (skip, crash)."""
    if outcome.ok:
        return Expectation(r0=outcome.r0)
    if outcome.error_class in ("rejected", "fault"):
        return Expectation(error=error_text(outcome.message) or outcome.error)
    return None


def provenance_line(release: str, mode: str, day: dt.date) -> str:
    return f"{PROVENANCE_PREFIX} Linux {release}, {mode}, recorded {day.isoformat()} by bpfcheck record"


def _under(path: Path, folder: Path) -> bool:
    try:
        path.relative_to(folder)
    except ValueError:
        return False
    return True


def is_ours(path: str | Path, text: str) -> bool:
    """Whether ``record`` may write this file: it has a provenance line or is under corpora/generated/.

    Files of the bundled third-party corpora (:data:`FOREIGN_DIRS`) are never ours.
    """
    resolved = Path(path).resolve()
    if any(_under(resolved, d) for d in FOREIGN_DIRS):
        return False
    if any(line.startswith(PROVENANCE_PREFIX) for line in text.splitlines()):
        return True
    return _under(resolved, GENERATED_DIR)


# --- Reading and editing .data text ---------------------------------------------------------------


def _section_name(line: str) -> str | None | bool:
    """The section a header line opens (None for ignored ones); False when it is not a header."""
    content = line.split("#", 1)[0]
    if "--" not in content:
        return False
    for key, name in _SECTIONS:
        if key in content:
            return name
    return None


def _sections(lines: list[str]) -> list[tuple[int, int, str | None]]:
    """``(header index, end index, name)`` of every section, as data_file reads them."""
    heads = [(i, name) for i, line in enumerate(lines) if (name := _section_name(line)) is not False]
    return [(i, heads[k + 1][0] if k + 1 < len(heads) else len(lines), name)  # type: ignore[misc]
            for k, (i, name) in enumerate(heads)]


def parse_case(path: str, text: str) -> tuple[Case, Expectation | None]:
    """The case of a file and its current expectation (None when it has none yet).

    A file without ``-- result``/``-- error`` (a freshly generated one) is read as if it had a
    placeholder result, so that its program can be run.
    """
    lines = text.splitlines(keepends=True)
    names = {name for _, _, name in _sections(lines)}
    if "result" in names or "error" in names:
        data = parse_data_text(text, path)
        expectation = (Expectation(error=data.error) if data.error is not None
                       else Expectation(r0=data.result))
        return case_from_data(data), expectation
    sep = "" if not text or text.endswith(("\n", "\r")) else "\n"
    data = parse_data_text(f"{text}{sep}-- result\n0\n", path)
    return case_from_data(data), None


def _eol(lines: list[str]) -> str:
    for line in lines:
        if line.endswith("\r\n"):
            return "\r\n"
        if line.endswith("\n"):
            return "\n"
    return "\n"


def _split_eol(line: str) -> tuple[str, str]:
    body = line.rstrip("\r\n")
    return body, line[len(body):]


def _value_line(kind: str, exp: Expectation) -> str:
    return f"{exp.r0:#x}" if kind == "result" else (exp.error or "")


def _set_value(lines: list[str], start: int, end: int, kind: str, exp: Expectation, eol: str) -> None:
    """Replace the last value line of the section [start, end) (keeping any comment after it)."""
    value = _value_line(kind, exp)
    for i in range(end - 1, start, -1):
        body, ending = _split_eol(lines[i])
        content, hashed, comment = body.partition("#")
        if content.strip():
            if kind == "result":  # only the first token counts; keep what follows it
                lead = content[:len(content) - len(content.lstrip())]
                rest = content.lstrip()[len(content.split()[0]):]
                lines[i] = f"{lead}{value}{rest}{hashed}{comment}{ending}"
            else:
                lines[i] = f"{value}{' ' + hashed + comment if hashed else ''}{ending}"
            return
    lines.insert(start + 1, value + eol)


def with_expectation(text: str, exp: Expectation, provenance: str) -> str:
    """``text`` with ``exp`` as its expectation and ``provenance`` as its ``# expected:`` line."""
    lines = text.splitlines(keepends=True)
    eol = _eol(lines)
    kind, other = ("error", "result") if exp.error is not None else ("result", "error")
    sections = {name: (start, end) for start, end, name in _sections(lines) if name in (kind, other)}
    if kind in sections:
        _set_value(lines, *sections[kind], kind, exp, eol)
        if other in sections:  # an error section would win over the result (conformance.case.Case)
            start, end = sections[other]
            del lines[start:end]
    elif other in sections:
        start, end = sections[other]
        body, ending = _split_eol(lines[start])
        _, hashed, comment = body.partition("#")
        lines[start] = f"-- {kind}{' ' + hashed + comment if hashed else ''}{ending or eol}"
        keep = [ln for ln in lines[start + 1:end] if not ln.split("#", 1)[0].strip()]
        lines[start + 1:end] = [_value_line(kind, exp) + eol] + keep
    else:
        if lines and not lines[-1].endswith(("\n", "\r")):
            lines[-1] += eol
        lines += [f"-- {kind}{eol}", _value_line(kind, exp) + eol]
    for i, line in enumerate(lines):
        if line.startswith(PROVENANCE_PREFIX):
            lines[i] = provenance + _split_eol(line)[1]
            break
    else:
        lines.insert(0, provenance + eol)
    return "".join(lines)


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        os.chmod(tmp, path.stat().st_mode & 0o7777)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --- The command ------------------------------------------------------------------------------------


@dataclass
class _File:
    path: str
    text: str
    case: Case
    expectation: Expectation | None
    ours: bool


def _read(path: str) -> _File:
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise CaseFormatError(f"not UTF-8 text ({e.reason} at byte {e.start})", file=path) from None
    except OSError as e:
        raise CaseFormatError(f"cannot read: {e.strerror}", file=path) from None
    case, expectation = parse_case(path, text)
    return _File(path, text, case, expectation, is_ours(path, text))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", metavar="PATH", help=".data files, directories or glob patterns")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; report drift (a case whose kernel answer differs from its "
                             "file) and exit 1 if there is any")
    parser.add_argument("--mode", choices=("root", "capbpf"), default="root",
                        help="privilege mode of the loader: root (default) or capbpf (a child keeping "
                             "only CAP_BPF + CAP_NET_ADMIN)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per case in capbpf mode")
    parser.add_argument("--verbose", "-v", action="store_true",
                        help="also list new, unchanged and untouched files")


HELP = ("run cases on the live kernel and write its answers into the case files, with provenance")
DESCRIPTION = (
    "Run .data cases on the live Linux kernel (target 'kernel') and write each answer into its file: "
    "'-- result' (r0) or '-- error' (the kernel's message), plus a first line '# expected: Linux "
    "<release>, <mode>, recorded <date> by bpfcheck record'. The rest of the file is kept byte for byte. "
    "Only files that already carry an '# expected:' line or live under corpora/generated/ are ever "
    "written; other files (the bundled bpf_conformance corpus) are left untouched. With --check nothing "
    "is written: drift is reported and the exit status is 1 if any case drifted, 0 otherwise. "
    "Exit status 2: bad input, or bpf() is not usable here.")


def cmd_record(args: argparse.Namespace) -> int:
    """``bpfcheck record PATHS [--check] [--mode root|capbpf]``."""
    from .targets.kernel import KernelTarget

    if not args.timeout > 0:
        raise UsageError("--timeout must be positive")
    files = [_read(p) for p in find_case_files(args.paths)]  # all parsed before anything runs
    target = KernelTarget(capbpf=args.mode == "capbpf")
    reason = target.unavailable_reason()
    if reason is not None:
        raise UsageError(f"record: the kernel target is not usable here: {reason}")
    release = target.capabilities().release
    provenance = provenance_line(release, target.mode, dt.date.today())
    counts = {"recorded": 0, "unchanged": 0, "untouched": 0, "drift": 0, "skipped": 0, "errors": 0}

    def say(tag: str, f: _File, text: str) -> None:
        print(f"{tag} {f.path}: {text}", flush=True)

    for f in files:
        outcome = target.run(f.case, args.timeout)
        answer = answer_of(outcome)
        if answer is None:
            if outcome.error == "unsupported":
                counts["skipped"] += 1
                say("SKIP", f, outcome.message)
            else:
                counts["errors"] += 1
                say("ERROR", f, f"{outcome.error}: {outcome.message}")
            continue
        same = f.expectation is not None and f.expectation.matches(answer)
        if args.check:
            if not same:
                counts["drift"] += 1
                was = f.expectation.describe() if f.expectation else "no expectation"
                say("DRIFT", f, f"file expects {was}, the kernel gives {answer.describe()}")
            elif args.verbose:
                say("OK", f, answer.describe())
            continue
        if not f.ours:
            counts["untouched"] += 1
            if args.verbose or not same:
                say("UNTOUCHED", f, f"not ours (no '# expected:' line, not under corpora/generated/); "
                                    f"the kernel gives {answer.describe()}")
            continue
        has_provenance = any(ln.startswith(PROVENANCE_PREFIX) for ln in f.text.splitlines())
        if same and has_provenance:
            counts["unchanged"] += 1
            if args.verbose:
                say("UNCHANGED", f, answer.describe())
            continue
        _write_atomic(Path(f.path), with_expectation(f.text, answer, provenance))
        counts["recorded"] += 1
        if args.verbose or (f.expectation is not None and not same):  # new files: counted only
            was = f.expectation.describe() if f.expectation else "nothing"
            say("RECORDED", f, f"{answer.describe()} (was {was})")
    mode = f"Linux {release}, {target.mode}"
    if args.check:
        print(f"check ({mode}): {len(files)} cases, {counts['drift']} drifted, {counts['skipped']} skipped, "
              f"{counts['errors']} errors")
        return EXIT_DRIFT if counts["drift"] or counts["errors"] else EXIT_OK
    print(f"record ({mode}): {len(files)} cases, {counts['recorded']} recorded, {counts['unchanged']} "
          f"unchanged, {counts['untouched']} not ours (untouched), {counts['skipped']} skipped, "
          f"{counts['errors']} errors")
    return EXIT_DRIFT if counts["errors"] else EXIT_OK
