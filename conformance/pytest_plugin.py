"""pytest plugin: bpf_conformance ``.data`` files as test items, one per case × target.

Registered as the ``pytest11`` entry point ``bpfcheck``. Node ids look like
``corpora/bpf_conformance/add.data::interpreter``. ``.data`` files are collected only

* under a path given with ``--bpf-cases PATH`` (repeatable; the paths are added to the
  collection, and replace the default ``testpaths`` when no other path is given),
* under a path given on the command line (``pytest corpora/bpf_conformance``), or
* under a path listed in the ini option ``bpf_case_paths`` (when pytest visits it),

so installing bpfcheck never turns unrelated projects' ``.data`` files into tests.

Targets come from ``--bpf-target`` (repeatable; default ``interpreter``); ``--bpf-cpu``,
``--bpf-groups``, ``--bpf-strict``, ``--bpf-timeout`` and ``--bpf-divergences`` mean what the
``bpfcheck run`` options of the same name mean (:mod:`conformance.runner`). Expected
divergences become strict xfails; a case that diverges differently from its recorded
``expect`` fails. In-process targets run in the pytest process (the interpreter's instruction
budget bounds them); use ``pytest -n auto`` (pytest-xdist) for parallelism.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reference_vm.errors import BpfCheckError
from reference_vm.outcome import Outcome

from . import runner as rn
from .case import Case, is_case_file, load_cases
from .divergence import Divergence
from .targets import Target

_STATE = pytest.StashKey["_State"]()


class CaseFailure(Exception):
    """A case × target that did not pass (FAIL or ERROR); xfail-able by a divergence entry."""

    def __init__(self, verdict: rn.Verdict, message: str, outcome: Outcome | None) -> None:
        super().__init__(message)
        self.verdict = verdict
        self.message = message
        self.outcome = outcome


class DivergenceChanged(Exception):
    """The target diverges, but not the way its divergence entry records (never xfailed)."""


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("bpfcheck", "bpfcheck conformance cases (.data files)")
    group.addoption("--bpf-cases", action="append", default=[], metavar="PATH",
                    help="collect the .data case files under PATH (repeatable)")
    group.addoption("--bpf-target", action="append", default=[], metavar="TARGET",
                    help="target to run every case on (repeatable; default: interpreter)")
    group.addoption("--bpf-cpu", default="v4", help="cpu version v1..v4 (default: v4)")
    group.addoption("--bpf-groups", action="append", default=[], metavar="LIST",
                    help="conformance groups (comma list or 'all'; default: the six RFC 9669 groups)")
    group.addoption("--bpf-strict", action="store_true", help="fail instead of skipping")
    group.addoption("--bpf-timeout", type=float, default=rn.DEFAULT_TIMEOUT, help="seconds per case")
    group.addoption("--bpf-divergences", action="append", default=[], metavar="FILE",
                    help="expected-divergence YAML file (repeatable)")
    parser.addini("bpf_case_paths", type="paths", default=[],
                  help="directories whose .data files are bpfcheck conformance cases")


class _State:
    """Per-session settings; targets and divergences are resolved on first use."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.roots: list[Path] = []
        self._targets: list[Target] | None = None
        self._divergences: dict[str, dict[str, Divergence]] | None = None
        self._options: rn.RunOptions | None = None

    def setup(self) -> tuple[list[Target], rn.RunOptions, dict[str, dict[str, Divergence]]]:
        if self._targets is None:
            from .divergence import resolve_divergences
            from .targets import get_target

            opt = self.config.getoption
            try:
                targets = [get_target(s) for s in (opt("bpf_target") or ["interpreter"])]
                self._options = rn.RunOptions(
                    groups=rn.parse_groups(opt("bpf_groups")) if opt("bpf_groups") else rn.DEFAULT_GROUPS,
                    cpu=rn.parse_cpu(opt("bpf_cpu")), strict=opt("bpf_strict"), timeout=opt("bpf_timeout"),
                    jobs=1)
                self._divergences, _ = resolve_divergences(opt("bpf_divergences"), [t.name for t in targets],
                                                         set())
            except BpfCheckError as e:
                raise pytest.UsageError(f"bpfcheck: {e}") from None
            self._targets = targets
        assert self._options is not None and self._divergences is not None
        return self._targets, self._options, self._divergences


def pytest_configure(config: pytest.Config) -> None:
    state = _State(config)
    config.stash[_STATE] = state
    cases = [str(p) for p in config.getoption("bpf_cases")]
    if cases:
        explicit = config.args_source == pytest.Config.ArgsSource.ARGS
        config.args[:] = [*config.args, *(c for c in cases if c not in config.args)] if explicit else cases
    if cases or config.getoption("bpf_target"):
        state.setup()  # bad options are usage errors now, not one collection error per file
    roots = [*cases, *config.getini("bpf_case_paths")]
    if config.args_source == pytest.Config.ArgsSource.ARGS:
        roots += [a.split("::", 1)[0] for a in config.args]
    state.roots = [Path(r).resolve() for r in roots]


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> DataFile | None:
    if file_path.suffix not in (".data", ".yaml", ".yml") or not is_case_file(file_path):
        return None
    state: _State = parent.config.stash[_STATE]
    path = file_path.resolve()
    if any(path == root or root in path.parents for root in state.roots):
        return DataFile.from_parent(parent, path=file_path)
    return None


class DataFile(pytest.File):
    """One case file: a ``.data`` file's items are the targets; a YAML file's items are
    ``case::target`` for each of its cases."""

    def collect(self) -> Iterator[CaseItem]:
        try:
            cases = load_cases([str(self.path)])
        except BpfCheckError as e:
            raise self.CollectError(f"bpfcheck: {e}") from None
        targets, options, divergences = self.config.stash[_STATE].setup()
        single = self.path.suffix == ".data"
        for case, target in ((c, t) for c in cases for t in targets):
            div = divergences.get(target.name, {}).get(case.name)
            name = target.name if single else f"{case.name}::{target.name}"
            item = CaseItem.from_parent(self, name=name, case=case, target=target, options=options,
                                        divergence=div)
            if div is not None:
                item.add_marker(pytest.mark.xfail(reason=div.reason, strict=True, raises=CaseFailure))
            reason = rn.skip_reason(case, target, options)
            if reason is not None and not options.strict:
                item.add_marker(pytest.mark.skip(reason=reason))  # reported at the item's location
            yield item


class CaseItem(pytest.Item):
    """One case on one target."""

    def __init__(self, *, case: Case, target: Target, options: rn.RunOptions, divergence: Divergence | None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.case = case
        self.target = target
        self.options = options
        self.divergence = divergence
        self.outcome: Outcome | None = None

    def _skip(self, reason: str) -> None:
        if self.options.strict:
            pytest.fail(f"skipped, and --bpf-strict counts skips as failures: {reason}", pytrace=False)
        pytest.skip(reason)

    def runtest(self) -> None:
        reason = rn.skip_reason(self.case, self.target, self.options)
        if reason is not None:
            self._skip(reason)
        outcome = rn.safe_run(self.target, self.case, rn.case_timeout(self.case, self.options.timeout))
        self.outcome = outcome
        exact = getattr(self.target, "exact_errors", False)
        verdict, message = rn.compare(self.case, outcome, exact)
        if verdict is rn.Verdict.SKIP:
            self._skip(message)
        if verdict is rn.Verdict.PASS:
            return
        div = self.divergence
        if div is not None and div.has_expect:
            judged, text = rn.judge(self.case, outcome, exact_errors=exact, divergence=div)
            if judged is not rn.Verdict.XFAIL:
                raise DivergenceChanged(text)
        raise CaseFailure(verdict, message, outcome)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException],
                     style: Any = None) -> str:
        exc = excinfo.value
        if isinstance(exc, (CaseFailure, DivergenceChanged)):
            verdict = exc.verdict.value if isinstance(exc, CaseFailure) else "FAIL"
            lines = [f"{verdict}: {exc}",
                     f"case:     {self.case.path}",
                     f"target:   {self.target.name}",
                     f"expected: {self.case.describe_expectation()}"]
            if self.outcome is not None:
                lines.append(f"actual:   {rn.describe_outcome(self.outcome)}")
                lines += ["final state:", *("  " + line for line in rn.state_lines(self.outcome))]
            return "\n".join(lines)
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, 0, f"{self.case.name} [{self.target.name}]"
