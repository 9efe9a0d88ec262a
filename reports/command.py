"""``bpfcheck report``: render a stored run, or compare two runs (the CI gate).

``bpfcheck report RUN.json [--format html|md|junit] [-o FILE] [--trends DIR]`` renders any
stored JSON result document (default: HTML on stdout). ``bpfcheck report --compare OLD.json
NEW.json`` prints regressions and fixes (:mod:`reports.compare`) and exits 1 on any regression,
0 otherwise. A file that is missing, not JSON or not a ``bpfcheck.run`` v1 document is one line
``bpfcheck: FILE: problem`` and exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from reference_vm.errors import UsageError

HELP = "render a stored run (html, md, junit) or compare two runs (CI gate)"
DESCRIPTION = ("Render a stored JSON result document (bpfcheck run --json, bpfcheck conformance) as a "
               "single-file HTML report, a Markdown summary or JUnit XML; or compare two documents and "
               "exit 1 if NEW has regressions against OLD.")
FORMATS = ("html", "md", "junit")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", nargs="?", metavar="RUN.json", help="the JSON result document to render")
    parser.add_argument("--format", "-f", choices=FORMATS, default=None, help="output format (default: html)")
    parser.add_argument("--output", "-o", metavar="FILE", help="write here instead of stdout")
    parser.add_argument("--compare", nargs=2, metavar=("OLD.json", "NEW.json"),
                        help="print regressions and fixes of NEW against OLD; exit 1 on any regression")
    parser.add_argument("--trends", metavar="DIR",
                        help="a directory of nightly campaign run documents to plot as trends (html)")


def _load(path: str) -> dict[str, Any]:
    from .document import DocumentError, load_document

    try:
        return load_document(path)
    except DocumentError as e:
        raise UsageError(str(e)) from None


def _emit(data: bytes, output: str | None) -> None:
    if output is None:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return
    try:
        Path(output).write_bytes(data)
    except OSError as e:
        raise UsageError(f"cannot write {output}: {e.strerror}") from None


def cmd_report(args: argparse.Namespace) -> int:
    if args.compare:
        if args.run is not None:
            raise UsageError("report: give either RUN.json or --compare OLD.json NEW.json, not both")
        if args.format is not None or args.trends is not None:
            raise UsageError("report: --format and --trends render one run; --compare prints text")
        from .compare import compare, format_comparison

        old_path, new_path = args.compare
        old, new = _load(old_path), _load(new_path)
        result = compare(old, new)
        _emit(format_comparison(result, old_path, new_path).encode(), args.output)
        return 1 if result.regressed else 0
    if args.run is None:
        raise UsageError("report: give RUN.json to render, or --compare OLD.json NEW.json")
    doc = _load(args.run)
    fmt = args.format or "html"
    if args.trends is not None and fmt != "html":
        raise UsageError("report: --trends is plotted in the html format only")
    if fmt == "junit":
        from .junit import render_junit

        data = render_junit(doc)
    elif fmt == "md":
        from .markdown import render_summary

        data = render_summary(doc).encode()
    else:
        from .document import DocumentError, trends_from_dir
        from .html import render_html

        try:
            extra = trends_from_dir(args.trends) if args.trends is not None else []
        except DocumentError as e:
            raise UsageError(str(e)) from None
        data = render_html(doc, extra).encode()
    _emit(data, args.output)
    return 0
