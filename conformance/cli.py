"""``bpfcheck``: the command line.

Subcommands: ``run`` (cases × targets, :mod:`conformance.runner`), ``plugin`` (our interpreter
as a bpf_conformance plugin, :mod:`conformance.plugin_main`), ``record`` (kernel answers written
into case files, :mod:`conformance.record`), ``asm`` / ``disasm`` (thin wrappers over
:mod:`reference_vm.asm`), ``fuzz`` (differential fuzzing, :mod:`fuzz.cli`) and ``list-targets``.

Every :class:`~reference_vm.errors.BpfCheckError` (bad case file, bad option, invalid
encoding) ends the program with one line ``bpfcheck: file:line: message`` on stderr and exit
status 2; argparse errors do the same. Exit status 1 means a run had failures.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import threading
from pathlib import Path
from typing import NoReturn

from reference_vm.errors import BpfCheckError, CaseFormatError, UsageError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    """argparse, but errors become :class:`UsageError` (one line, exit status 2)."""

    def error(self, message: str) -> NoReturn:
        command = self.prog.removeprefix("bpfcheck").strip()
        raise UsageError(f"{command}: {message}" if command else message)


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="bpfcheck", description="eBPF conformance test suite")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = sub.add_parser("run", help="run conformance cases on targets",
                         description="Run .data cases on one or more targets and report verdicts.")
    run.add_argument("paths", nargs="+", metavar="PATH", help=".data files, directories or glob patterns")
    run.add_argument("--target", "-t", action="append", default=[], metavar="TARGET",
                     help="target to test (repeatable; default: interpreter); plugin:PATH[ ARGS] runs "
                          "a bpf_conformance plugin")
    run.add_argument("--cpu", default="v4", help="cpu version v1..v4 (default: v4)")
    run.add_argument("--groups", action="append", default=[], metavar="LIST",
                     help="comma list of conformance groups, or 'all' (default: the six RFC 9669 groups)")
    run.add_argument("--include", metavar="REGEX", help="only cases whose name matches")
    run.add_argument("--exclude", metavar="REGEX", help="leave out cases whose name matches")
    run.add_argument("--strict", action="store_true", help="count skips as failures")
    run.add_argument("--timeout", type=float, default=10.0, help="seconds per case (default: 10)")
    run.add_argument("--jobs", "-j", type=int, default=os.cpu_count() or 1,
                     help="parallel cases (default: the number of CPUs)")
    run.add_argument("--divergences", action="append", default=[], metavar="FILE",
                     help="expected-divergence YAML file (repeatable; default: "
                          "conformance/divergences/<target>.yaml if it exists)")
    run.add_argument("--json", metavar="FILE", help="write the JSON result document")
    run.add_argument("--junit", metavar="FILE", help="write JUnit XML")
    run.add_argument("--verbose", "-v", action="store_true", help="print a line for passing cases too")

    conf = sub.add_parser("conformance", help="the main job: every bundled corpus on every built-in target",
                          description="Run every bundled corpus on every built-in target available on "
                                      "this machine (cpu v4, all groups, strict) and write a report.")
    conf.add_argument("--report-dir", default="bpfcheck-report", metavar="DIR",
                      help="folder for results.json, junit.xml and summary.md (default: ./bpfcheck-report)")
    conf.add_argument("--target", "-t", action="append", default=[], metavar="TARGET",
                      help="run only these targets (default: every available built-in target)")
    conf.add_argument("--timeout", type=float, default=10.0, help="seconds per case (default: 10)")
    conf.add_argument("--jobs", "-j", type=int, default=os.cpu_count() or 1, help="parallel cases")

    sub.add_parser("plugin", help="act as a bpf_conformance plugin (argv: [MEM-HEX], stdin: program hex)",
                   add_help=False)

    asm = sub.add_parser("asm", help="assemble a file (or the -- asm section of a .data file)")
    asm.add_argument("file", metavar="FILE")
    asm.add_argument("--dialect", choices=("ubpf", "llvm"), default=None,
                     help="assembly dialect (default: detect)")
    asm.add_argument("--output", "-o", metavar="OUT", help="write the binary here instead of hex to stdout")

    disasm = sub.add_parser("disasm", help="disassemble raw bytecode or the program of a .data file")
    disasm.add_argument("file", metavar="FILE")
    disasm.add_argument("--dialect", choices=("ubpf", "llvm"), default="ubpf")

    from .record import DESCRIPTION as RECORD_DESCRIPTION
    from .record import HELP as RECORD_HELP
    from .record import add_arguments as record_arguments

    record_arguments(sub.add_parser("record", help=RECORD_HELP, description=RECORD_DESCRIPTION))

    from reports.command import DESCRIPTION as REPORT_DESCRIPTION
    from reports.command import HELP as REPORT_HELP
    from reports.command import add_arguments as report_arguments

    report_arguments(sub.add_parser("report", help=REPORT_HELP, description=REPORT_DESCRIPTION))

    jit = sub.add_parser("jit", help="print BPF and native code side by side, or per-backend coverage",
                         description="Translate a program (.data file, raw bytes or assembly) with a "
                                     "reference JIT and print each BPF instruction next to its native "
                                     "code (capstone); --coverage prints the ISA rows each backend lowers.")
    jit.add_argument("file", metavar="FILE", nargs="?")
    jit.add_argument("--arch", choices=("x86_64", "arm64"), default="x86_64")
    jit.add_argument("--dialect", choices=("ubpf", "llvm"), default="ubpf")
    jit.add_argument("--coverage", action="store_true", help="print the opcode coverage table and exit")

    btf = sub.add_parser("btf", help="validate a BTF blob as the kernel would and list its types",
                         description="Validate a raw BTF blob (e.g. /sys/kernel/btf/vmlinux or a .BTF "
                                     "section) in the kernel's order and with its messages.")
    btf.add_argument("file", metavar="FILE")
    btf.add_argument("--log", action="store_true", help="print the kernel-style level-1 log")

    sub.add_parser("fuzz", add_help=False,
                   help="differential fuzzing: campaign, replay SEED, promote FINDING (docs/fuzzing.md)")
    sub.add_parser("list-targets", help="list the known targets")
    return parser


def main(argv: list[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    try:
        if args_list[:1] == ["fuzz"]:
            from fuzz.cli import main as fuzz_main

            return fuzz_main(args_list[1:])
        plugin_args = _plugin_argv(args_list)
        if plugin_args is not None:
            from .plugin_main import main as plugin_main

            return plugin_main(plugin_args)
        args = _build_parser().parse_args(args_list)
        if args.command == "run":
            return _cmd_run(args)
        if args.command == "conformance":
            return _cmd_conformance(args)
        if args.command == "record":
            from .record import cmd_record

            return cmd_record(args)
        if args.command == "report":
            return _cmd_report(args)
        if args.command == "btf":
            return _cmd_btf(args)
        if args.command == "jit":
            return _cmd_jit(args)
        if args.command == "asm":
            return _cmd_asm(args)
        if args.command == "disasm":
            return _cmd_disasm(args)
        return _cmd_list_targets()
    except BpfCheckError as e:
        return _fail(str(e))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return EXIT_OK


_MEM_ARG = re.compile(r"[0-9a-fA-F\s]*")


def _plugin_argv(argv: list[str]) -> list[str] | None:
    """The plugin's own argv for ``bpfcheck plugin [MEM] ...`` and ``bpfcheck MEM plugin ...``.

    The second form is what bpf_conformance runs for ``--plugin_path bpfcheck --plugin_options
    plugin``: the memory argument comes right after the program path (``formats-and-corpora.md`` §2).
    """
    if argv[:1] == ["plugin"]:
        return argv[1:]
    if len(argv) >= 2 and argv[1] == "plugin" and _MEM_ARG.fullmatch(argv[0]):
        return [argv[0], *argv[2:]]
    return None


def _fail(message: str) -> int:
    sys.stderr.write("bpfcheck: " + " ".join(message.split()) + "\n")
    return EXIT_USAGE


# --- run ---------------------------------------------------------------------------------------


def _cmd_run(args: argparse.Namespace) -> int:
    from . import report as rp
    from . import runner as rn
    from .case import load_cases
    from .divergence import resolve_divergences
    from .targets import get_target

    if args.jobs < 1:
        raise UsageError("--jobs must be at least 1")
    if not args.timeout > 0:
        raise UsageError("--timeout must be positive")
    options = rn.RunOptions(groups=rn.parse_groups(args.groups) if args.groups else rn.DEFAULT_GROUPS,
                            cpu=rn.parse_cpu(args.cpu), strict=args.strict, timeout=args.timeout,
                            jobs=args.jobs)
    include = rn.compile_regex(args.include, "--include")
    exclude = rn.compile_regex(args.exclude, "--exclude")
    targets = [get_target(spec) for spec in (args.target or ["interpreter"])]
    names = [t.name for t in targets]
    if len(set(names)) != len(names):
        raise UsageError(f"a target is given twice: {', '.join(names)}")
    all_cases = load_cases(args.paths)
    cases = rn.select_cases(all_cases, include, exclude)
    if not cases:
        raise UsageError(f"no cases left after --include/--exclude (of {len(all_cases)} loaded)")
    divergences, warnings = resolve_divergences(args.divergences, names, {c.name for c in cases})
    for w in warnings:
        sys.stderr.write(f"bpfcheck: warning: {w}\n")

    lock = threading.Lock()

    def progress(result: rn.Result) -> None:
        if result.verdict is not rn.Verdict.PASS or args.verbose:
            with lock:
                print(result.line(), flush=True)

    report = rn.run(cases, targets, options, divergences, progress)
    report.warnings = warnings
    if len(targets) > 1 or report.not_applicable:
        for name in names:
            scope = report.not_applicable.get(name)
            outside = f" ({scope} cases outside this target's scope, not run)" if scope else ""
            print(f"{name}: {rn.summary_line(report.counts(name))}{outside}")
    print(rn.summary_line(report.counts()), flush=True)
    _write(args.json, rp.to_json(report).encode())
    _write(args.junit, rp.to_junit(report))
    return EXIT_FAILED if report.failed else EXIT_OK


def _cmd_conformance(args: argparse.Namespace) -> int:
    """The main job: bundled corpora × built-in targets, strict, with a report folder."""
    from reports.markdown import render_summary

    from . import report as rp
    from . import runner as rn
    from .case import load_cases
    from .divergence import resolve_divergences
    from .targets import BUILTIN, get_target

    corpora = Path(__file__).resolve().parent.parent / "corpora"
    targets, unavailable = [], []
    for name in args.target or sorted(BUILTIN):
        try:
            target = get_target(name)
        except UsageError as e:
            if args.target:
                raise
            unavailable.append(e.message)
            continue
        reason_fn = getattr(target, "unavailable_reason", None)
        reason = reason_fn() if reason_fn is not None else None
        if reason is not None and not args.target:
            unavailable.append(f"{name}: {reason}")  # e.g. no bpf() here: not a failure of the job
            continue
        targets.append(target)
    for reason in unavailable:
        print(f"bpfcheck: skipped target: {reason}", file=sys.stderr)
    names = [t.name for t in targets]
    cases = load_cases([str(corpora)])
    options = rn.RunOptions(groups=rn.parse_groups(["all"]), cpu=rn.MAX_CPU, strict=True,
                            timeout=args.timeout, jobs=args.jobs)
    divergences, warnings = resolve_divergences([], names, {c.name for c in cases})
    report = rn.run(cases, targets, options, divergences,
                    lambda r: print(r.line(), flush=True) if r.verdict is not rn.Verdict.PASS else None)
    report.warnings = warnings
    out = Path(args.report_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"cannot create {out}: {e.strerror}") from None
    doc_text = rp.to_json(report)
    _write(str(out / "results.json"), doc_text.encode())
    _write(str(out / "junit.xml"), rp.to_junit(report))
    doc = json.loads(doc_text)
    _write(str(out / "summary.md"), render_summary(doc).encode())
    from reports.html import render_html

    _write(str(out / "report.html"), render_html(doc).encode())
    for name in names:
        scope = report.not_applicable.get(name)
        outside = f" ({scope} cases outside this target's scope, not run)" if scope else ""
        print(f"{name}: {rn.summary_line(report.counts(name))}{outside}")
    print(f"report: {out.resolve()}")
    print(rn.summary_line(report.counts()), flush=True)
    return EXIT_FAILED if report.failed else EXIT_OK


def _cmd_report(args: argparse.Namespace) -> int:
    """Render a stored run document, or compare two (:mod:`reports.command`)."""
    from reports.command import cmd_report

    return cmd_report(args)


def _write(path: str | None, data: bytes) -> None:
    if path is None:
        return
    try:
        Path(path).write_bytes(data)
    except OSError as e:
        raise UsageError(f"cannot write {path}: {e.strerror}") from None


# --- asm / disasm / list-targets -------------------------------------------------------------------


def _read_text(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise CaseFormatError(f"not UTF-8 text ({e.reason} at byte {e.start})", file=path) from None
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror}") from None


def _cmd_asm(args: argparse.Namespace) -> int:
    from reference_vm.asm import assemble

    if args.file.endswith(".data"):
        from .data_file import load_data_file

        data = load_data_file(args.file)
        if data.asm_text is None:
            raise CaseFormatError("no '-- asm' section", file=args.file)
        insns = assemble(data.asm_text, dialect=args.dialect, file=args.file, first_line=data.asm_line)
    else:
        insns = assemble(_read_text(args.file), dialect=args.dialect, file=args.file)
    code = b"".join(i.to_bytes() for i in insns)
    if args.output:
        _write(args.output, code)
    else:
        for at in range(0, len(code), 8):
            print(" ".join(f"{b:02x}" for b in code[at:at + 8]))
    return EXIT_OK


def _cmd_disasm(args: argparse.Namespace) -> int:
    from reference_vm.errors import EncodingError
    from reference_vm.insn import decode_program

    if args.file.endswith(".data"):
        from .case import load_case

        code = load_case(args.file).program_bytes()
    else:
        try:
            code = Path(args.file).read_bytes()
        except OSError as e:
            raise UsageError(f"cannot read {args.file}: {e.strerror}") from None
    try:
        program = decode_program(code)
    except EncodingError as e:
        detail = f" (field {e.field} = {e.value:#x})" if e.field is not None and e.value is not None else ""
        raise EncodingError(e.message + detail, file=args.file) from None
    from reference_vm.asm import disassemble

    text = disassemble(program, dialect=args.dialect)
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return EXIT_OK


def _program_bytes(path: str) -> bytes:
    """The program of a ``.data`` file, a raw bytecode file, or an assembly text file."""
    if path.endswith(".data"):
        from .case import load_case

        return load_case(path).program_bytes()
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror}") from None
    if path.endswith((".s", ".asm", ".S")):
        from reference_vm.asm import assemble_bytes

        return assemble_bytes(_read_text(path), file=path)
    return data


def _cmd_jit(args: argparse.Namespace) -> int:
    from reference_vm.jit.printer import coverage_table, side_by_side

    if args.coverage:
        print(coverage_table())
        return EXIT_OK
    if args.file is None:
        raise UsageError("jit: give a FILE, or --coverage")
    from reference_vm.errors import EncodingError
    from reference_vm.insn import decode_program

    code = _program_bytes(args.file)
    try:
        program = decode_program(code)
    except EncodingError as e:
        raise e.located(args.file) from None
    text = side_by_side(program, args.arch, dialect=args.dialect)
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return EXIT_OK


def _cmd_btf(args: argparse.Namespace) -> int:
    from reference_vm.btf.parse import BtfError, parse

    try:
        blob = Path(args.file).read_bytes()
    except OSError as e:
        raise UsageError(f"cannot read {args.file}: {e.strerror}") from None
    try:
        btf = parse(blob)
    except BtfError as e:
        raise e.located(args.file) from None
    if args.log:
        sys.stdout.write(btf.log if btf.log.endswith("\n") else btf.log + "\n")
    else:
        print(f"{args.file}: valid BTF, {len(btf)} types")
    return EXIT_OK


def _cmd_list_targets() -> int:
    from .targets import get_target, known_targets

    for name, ref in known_targets().items():
        status = ""
        if not name.startswith("plugin:"):
            try:
                get_target(name)
            except UsageError as e:
                status = f"  (not available: {e.message})"
        print(f"{name:20} {ref}{status}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
