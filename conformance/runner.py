"""Run cases × targets and judge each pair: PASS, FAIL, ERROR, SKIP, XFAIL or XPASS.

Differences from the stock bpf_conformance runner (``formats-and-corpora.md`` §2, "quirks"):

* An ``-- error`` case passes only if the target reports an error; a target that returns a
  value FAILs it (the stock runner reads a missing ``-- result`` as "r0 == 0").
* Error texts: a non-empty ``-- error`` text is compared exactly (after stripping trailing
  whitespace) for targets whose texts are comparable (``exact_errors``: plugins). Our own
  targets (interpreter, JITs, ...) are checked for the *error class* only: any
  ``fault:``/``rejected:``/``budget`` outcome satisfies an ``-- error`` case, because ``.data``
  texts are other implementations' messages; a text that is itself one of our classes
  (``fault``, ``fault:oob_read``, ``rejected``, ``budget``) must match the outcome's class.
* Crash, timeout and protocol garbage are ERROR verdicts, per case; the run goes on.
* SKIPs are reported, with the reason; ``strict`` turns each into a FAIL.
* Expected divergences (:mod:`conformance.divergence`) are strict XFAILs.

In-process targets (``in_process = True``) run in worker processes that are killed and
replaced at the per-case timeout; external targets run on threads (they spawn processes).
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import re
import tempfile
import threading
import traceback
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from reference_vm.isa import DEFAULT_GROUPS, Group
from reference_vm.outcome import CRASH, TIMEOUT, UNSUPPORTED, Outcome

from .case import Case, close_groups
from .divergence import Divergence
from .targets import Target

DEFAULT_TIMEOUT = 10.0
MAX_CPU = 4
#: Outcome error classes that mean "the target reported an error" (an -- error case passes).
REPORTED_ERROR_CLASSES = frozenset({"fault", "rejected", "budget"})
#: Outcome.error when the runner could not run an in-process target in a worker process.
WORKER_ERROR = "error:worker"
#: Outcome error classes that mean "the target itself broke" (ERROR verdict).
BROKEN_CLASSES = frozenset({"timeout", "crash", "error"})


class Verdict(StrEnum):
    PASS = "PASS"
    FAIL = "FAIL"
    ERROR = "ERROR"
    SKIP = "SKIP"
    XFAIL = "XFAIL"
    XPASS = "XPASS"

    @property
    def failed(self) -> bool:
        """FAIL, ERROR and XPASS make a run fail."""
        return self in (Verdict.FAIL, Verdict.ERROR, Verdict.XPASS)


@dataclass
class RunOptions:
    groups: frozenset[Group] = DEFAULT_GROUPS
    cpu: int = MAX_CPU
    strict: bool = False
    timeout: float = DEFAULT_TIMEOUT
    jobs: int = field(default_factory=lambda: os.cpu_count() or 1)


@dataclass
class Result:
    case: Case
    target: str
    verdict: Verdict
    message: str = ""
    outcome: Outcome | None = None
    divergence: Divergence | None = None

    def line(self) -> str:
        """The progress line printed for a non-passing result."""
        where = self.case.path if self.case.whole is None else f"{self.case.path}::{self.case.name}"
        text = f"{self.verdict.value} {where} [{self.target}]"
        return f"{text}: {self.message}" if self.message else text


# --- Parsing options --------------------------------------------------------------------------


def parse_groups(values: Iterable[str]) -> frozenset[Group]:
    """``--groups base32,base64`` (repeatable) or ``all``; implied groups are added."""
    from reference_vm.errors import UsageError
    from reference_vm.isa import ALL_GROUPS

    out: set[Group] = set()
    for value in values:
        for name in filter(None, (n.strip() for n in value.split(","))):
            if name == "all":
                out |= ALL_GROUPS
                continue
            try:
                out.add(Group(name))
            except ValueError:
                known = ", ".join(g.value for g in Group)
                raise UsageError(f"unknown group {name!r} (known: {known}, all)") from None
    if not out:
        raise UsageError("--groups needs at least one group name")
    return close_groups(out)


def parse_cpu(value: str) -> int:
    from reference_vm.errors import UsageError

    m = re.fullmatch(r"v?([1-4])", value.strip().lower())
    if m is None:
        raise UsageError(f"unknown cpu version {value!r} (expected v1, v2, v3 or v4)")
    return int(m.group(1))


def compile_regex(value: str | None, option: str) -> re.Pattern[str] | None:
    from reference_vm.errors import UsageError

    if value is None:
        return None
    try:
        return re.compile(value)
    except re.error as e:
        raise UsageError(f"{option}: bad regular expression {value!r}: {e}") from None


def select_cases(cases: Sequence[Case], include: re.Pattern[str] | None,
                 exclude: re.Pattern[str] | None) -> list[Case]:
    """Cases whose name matches ``include`` (if given) and not ``exclude`` (``re.search``)."""
    return [c for c in cases
            if (include is None or include.search(c.name)) and not (exclude and exclude.search(c.name))]


# --- Judging ----------------------------------------------------------------------------------


def skip_reason(case: Case, target: Target, options: RunOptions) -> str | None:
    """Why ``case`` is not run on ``target``: groups/cpu not enabled, or the target's own reason."""
    missing = case.groups - options.groups
    if missing:
        return (f"requires group {', '.join(sorted(g.value for g in missing))} "
                f"(enabled: {', '.join(sorted(g.value for g in options.groups))})")
    if case.cpu > options.cpu:
        return f"requires cpu v{case.cpu} (running v{options.cpu})"
    supports: Callable[[Case], str | None] | None = getattr(target, "supports", None)
    return supports(case) if supports is not None else None


def describe_outcome(outcome: Outcome) -> str:
    if outcome.ok:
        return f"r0 = {outcome.r0:#x}" if outcome.r0 is not None else "r0 = ?"
    return f"{outcome.error}: {outcome.message}" if outcome.message else outcome.error


def state_lines(outcome: Outcome, limit: int = 64) -> list[str]:
    """A readable dump of an outcome's final state (registers, non-zero memory windows)."""
    lines = [f"error: {outcome.error}" + (f" ({outcome.message})" if outcome.message else "")]
    if outcome.r0 is not None:
        lines.append(f"r0: {outcome.r0:#x}")
    if outcome.regs is not None:
        lines.append("regs: " + " ".join(f"r{i}={v:#x}" for i, v in enumerate(outcome.regs)))
    if outcome.insn_count is not None:
        lines.append(f"insns executed: {outcome.insn_count}, last pc: {outcome.exit_pc}")
    for name, data in sorted(outcome.memory.items()):
        nonzero = [i for i, b in enumerate(data) if b]
        if not nonzero:
            lines.append(f"{name}: {len(data)} bytes, all zero")
            continue
        lo, hi = nonzero[0], min(nonzero[-1] + 1, nonzero[0] + limit)
        more = " ..." if nonzero[-1] >= hi else ""
        lines.append(f"{name}: {len(data)} bytes, [{lo}:{hi}] = {data[lo:hi].hex(' ')}{more}")
    return lines


def _error_text_matches(expected: str, outcome: Outcome, exact: bool) -> bool:
    if not expected:
        return True
    if exact:
        return outcome.message.rstrip() == expected.rstrip()
    cls = expected.split(":", 1)[0]
    if cls in REPORTED_ERROR_CLASSES:
        return outcome.error == expected or (":" not in expected and outcome.error_class == expected)
    return True


def compare(case: Case, outcome: Outcome, exact_errors: bool) -> tuple[Verdict, str]:
    """Judge one outcome against the case's expectation (no divergences, no strictness)."""
    if outcome.error == UNSUPPORTED:
        return Verdict.SKIP, outcome.message or "the target does not support this case"
    if outcome.error_class in BROKEN_CLASSES:
        return Verdict.ERROR, describe_outcome(outcome)
    expected = case.describe_expectation()
    if case.expect_error is not None:
        if outcome.ok:
            return Verdict.FAIL, f"expected {expected}, got {describe_outcome(outcome)}"
        if outcome.error_class not in REPORTED_ERROR_CLASSES:
            return Verdict.ERROR, describe_outcome(outcome)
        if not _error_text_matches(case.expect_error, outcome, exact_errors):
            return Verdict.FAIL, f"expected error {case.expect_error!r}, got {describe_outcome(outcome)!r}"
        return Verdict.PASS, ""
    if outcome.ok and (case.expect_r0 is None or outcome.r0 == case.expect_r0):
        if case.whole is not None:
            from .wholeprog import check_state

            difference = check_state(case.whole, outcome)
            if difference is not None:
                return Verdict.FAIL, difference
        return Verdict.PASS, ""
    return Verdict.FAIL, f"expected {expected}, got {describe_outcome(outcome)}"


def _matches_expect(div: Divergence, outcome: Outcome) -> bool:
    if div.expect_r0 is not None:
        return outcome.ok and outcome.r0 == div.expect_r0
    assert div.expect_error is not None
    if outcome.ok:
        return False
    text = div.expect_error
    return (not text or outcome.message.rstrip() == text.rstrip() or outcome.error == text
            or outcome.error_class == text)


def judge(case: Case, outcome: Outcome, *, exact_errors: bool, divergence: Divergence | None = None,
          strict: bool = False) -> tuple[Verdict, str]:
    """The final verdict: :func:`compare`, then the divergence entry, then ``strict``."""
    verdict, message = compare(case, outcome, exact_errors)
    if divergence is not None and verdict is not Verdict.SKIP:
        if verdict is Verdict.PASS:
            verdict, message = Verdict.XPASS, f"listed as a divergence ({divergence.reason}) but passed"
        elif divergence.has_expect and not _matches_expect(divergence, outcome):
            recorded = (f"r0 = {divergence.expect_r0:#x}" if divergence.expect_r0 is not None
                        else f"error {divergence.expect_error!r}")
            verdict, message = Verdict.FAIL, (f"diverges differently than recorded in {divergence.file}:"
                                              f"{divergence.line}: recorded {recorded}, got "
                                              f"{describe_outcome(outcome)}")
        else:
            verdict, message = Verdict.XFAIL, f"{divergence.reason} ({message})"
    if verdict is Verdict.SKIP and strict:
        return Verdict.FAIL, f"skipped, and --strict counts skips as failures: {message}"
    return verdict, message


def skipped(reason: str, strict: bool) -> tuple[Verdict, str]:
    if strict:
        return Verdict.FAIL, f"skipped, and --strict counts skips as failures: {reason}"
    return Verdict.SKIP, reason


# --- Executing --------------------------------------------------------------------------------


def case_timeout(case: Case, timeout: float) -> float:
    """The run's per-case timeout, or more where a whole-program case asks for it
    (``options: {timeout: SECONDS}``: loading a program at the verifier's complexity limit)."""
    wanted = case.whole.options.get("timeout") if case.whole is not None else None
    return max(timeout, float(wanted)) if isinstance(wanted, (int, float)) else timeout


def safe_run(target: Target, case: Case, timeout: float) -> Outcome:
    """``target.run``, with a bug in the target turned into a ``crash`` outcome."""
    try:
        return target.run(case, timeout)
    except Exception as e:  # noqa: BLE001 - a broken target must not stop the run
        last = traceback.format_exception_only(type(e), e)[-1].strip()
        return Outcome(error=CRASH, message=f"target raised {last}")


def _worker_main(conn: Any) -> None:
    """Worker process for in-process targets: receive (target, case, timeout), send the Outcome."""
    conn.send("ready")
    while True:
        try:
            job = conn.recv()
        except EOFError:
            return
        if job is None:
            return
        target, case, timeout = job
        conn.send(safe_run(target, case, timeout))


class _Worker:
    """One worker process; killed and replaced when a case runs past its timeout."""

    _ctx = multiprocessing.get_context("spawn")

    def __init__(self) -> None:
        self.conn, child = self._ctx.Pipe()
        self.proc = self._ctx.Process(target=_worker_main, args=(child,), daemon=True)
        self.proc.start()
        child.close()
        if not self.conn.poll(120) or self.conn.recv() != "ready":
            self.close()
            raise RuntimeError("bpfcheck worker process did not start")

    def call(self, target: Target, case: Case, timeout: float) -> tuple[Outcome, bool]:
        """``(outcome, alive)``; ``alive`` is False when the worker had to be killed or died."""
        self.conn.send((target, case, timeout))
        if not self.conn.poll(timeout):
            self.close()
            return Outcome(error=TIMEOUT, message=f"no answer within {timeout:g} s (worker killed)"), False
        try:
            return self.conn.recv(), True
        except EOFError:
            self.proc.join(5)
            died = f"worker process died (exit code {self.proc.exitcode})"
            return Outcome(error=CRASH, message=died), False

    def close(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(5)
        self.conn.close()


class _WorkerPool:
    """Up to ``size`` worker processes, started on demand, shared by the runner's threads."""

    def __init__(self, size: int) -> None:
        self._idle: queue.SimpleQueue[_Worker] = queue.SimpleQueue()
        self._slots = threading.Semaphore(size)
        self._all: list[_Worker] = []
        self._lock = threading.Lock()

    def run(self, target: Target, case: Case, timeout: float) -> Outcome:
        with self._slots:
            try:
                worker = self._idle.get_nowait()
            except queue.Empty:
                try:
                    worker = _Worker()
                except (OSError, RuntimeError) as e:
                    return Outcome(error=WORKER_ERROR, message=f"cannot start a worker process: {e}")
                with self._lock:
                    self._all.append(worker)
            try:
                outcome, alive = worker.call(target, case, timeout)
            except Exception as e:  # noqa: BLE001 - pickling or pipe trouble must not stop the run
                worker.close()
                return Outcome(error=WORKER_ERROR, message=f"cannot hand the case to a worker: {e}")
            if alive:
                self._idle.put(worker)
            return outcome

    def close(self) -> None:
        with self._lock:
            for w in self._all:
                if w.proc.is_alive():
                    try:
                        w.conn.send(None)
                    except OSError:
                        pass
                w.proc.join(1)
                w.close()


@dataclass
class RunReport:
    """Everything a run produced, in deterministic order (cases as loaded × targets as given)."""

    results: list[Result]
    targets: list[str]
    options: RunOptions
    warnings: list[str] = field(default_factory=list)
    #: target -> number of cases outside its scope (``applies_to``); reported, never run or counted
    not_applicable: dict[str, int] = field(default_factory=dict)

    def counts(self, target: str | None = None) -> Counter[Verdict]:
        return Counter(r.verdict for r in self.results if target is None or r.target == target)

    @property
    def failed(self) -> bool:
        return any(r.verdict.failed for r in self.results)


def summary_line(counts: Counter[Verdict]) -> str:
    """``N passed, N failed, N skipped`` (+ ``, N xfailed``); failed includes ERROR and XPASS."""
    failed = counts[Verdict.FAIL] + counts[Verdict.ERROR] + counts[Verdict.XPASS]
    text = f"{counts[Verdict.PASS]} passed, {failed} failed, {counts[Verdict.SKIP]} skipped"
    if counts[Verdict.XFAIL]:
        text += f", {counts[Verdict.XFAIL]} xfailed"
    detail = [f"{counts[v]} {label}" for v, label in ((Verdict.ERROR, "errors"), (Verdict.XPASS, "xpassed"))
              if counts[v]]
    if detail:
        text += f" (failed: {', '.join(detail)})"
    return text


def run(cases: Sequence[Case], targets: Sequence[Target], options: RunOptions,
        divergences: dict[str, dict[str, Divergence]] | None = None,
        on_result: Callable[[Result], None] | None = None) -> RunReport:
    """Run every case on every target; ``divergences`` maps target name -> case name -> entry.

    A target with an ``applies_to(case)`` method declares its scope (``kernel-jit``: single-
    program cases): cases outside it are not run on it and are counted in
    ``RunReport.not_applicable`` instead of as skips, and the CLI prints that count.
    """
    with _verify_cache():
        return _run(cases, targets, options, divergences, on_result)


@contextmanager
def _verify_cache() -> Iterator[None]:
    """A folder the run's workers share verifier results through (:mod:`.verify_cache`)."""
    from .verify_cache import ENV

    if os.environ.get(ENV):
        yield
        return
    with tempfile.TemporaryDirectory(prefix="bpfcheck-verify-") as folder:
        os.environ[ENV] = folder
        try:
            yield
        finally:
            os.environ.pop(ENV, None)


def _run(cases: Sequence[Case], targets: Sequence[Target], options: RunOptions,
         divergences: dict[str, dict[str, Divergence]] | None,
         on_result: Callable[[Result], None] | None) -> RunReport:
    divergences = divergences or {}
    slots: list[Result | None] = [None] * (len(cases) * len(targets))
    not_applicable: dict[str, int] = {}
    lock = threading.Lock()
    pool = _WorkerPool(max(1, options.jobs))

    def finish(index: int, result: Result) -> None:
        with lock:
            slots[index] = result
            if on_result is not None:
                on_result(result)

    def execute(index: int, case: Case, target: Target, div: Divergence | None) -> None:
        timeout = case_timeout(case, options.timeout)
        if getattr(target, "in_process", False):
            outcome = pool.run(target, case, timeout)
        else:
            outcome = safe_run(target, case, timeout)
        verdict, message = judge(case, outcome, exact_errors=getattr(target, "exact_errors", False),
                                 divergence=div, strict=options.strict)
        finish(index, Result(case, target.name, verdict, message, outcome, div))

    try:
        with ThreadPoolExecutor(max_workers=max(1, options.jobs)) as executor:
            futures = []
            for ci, case in enumerate(cases):
                for ti, target in enumerate(targets):
                    index = ci * len(targets) + ti
                    applies = getattr(target, "applies_to", None)
                    if applies is not None and not applies(case):
                        not_applicable[target.name] = not_applicable.get(target.name, 0) + 1
                        continue
                    div = divergences.get(target.name, {}).get(case.name)
                    reason = skip_reason(case, target, options)
                    if reason is not None:
                        verdict, message = skipped(reason, options.strict)
                        finish(index, Result(case, target.name, verdict, message, None, div))
                        continue
                    futures.append(executor.submit(execute, index, case, target, div))
            for f in futures:
                f.result()
    finally:
        pool.close()
    results = [r for r in slots if r is not None]
    return RunReport(results, [t.name for t in targets], options, not_applicable=not_applicable)
