"""bpfcheck's own verifier (:mod:`reference_vm.verifier`) as a target, and its comparison with
the kernel's verdicts.

``verifier`` (:class:`VerifierTarget`) runs only the static checker on a case:

* whole-program (YAML) cases: every program is verified with its program type and the case's
  maps (``lddw map_idx``/``map_fd`` resolve to them, as the kernel target's ``fd_array``);
* ``.data`` cases: the program is verified as the kernel target loads it (:mod:`conformance.
  kernel.wiring`: a socket filter whose r1 is the value of an array map of ``len(mem)`` bytes,
  every exit through the r0-capturing epilogue), and instruction numbers in messages are
  mapped back to the case's pcs; programs that do not decode are verified as they are.

A refusal is ``rejected:verifier`` with ``"<message> (errno NAME)"``, exactly as the kernel
target reports it, so the kernel's divergence entries read the same. An accepted program is
then run on the interpreter when the case expects values (r0, maps, ...), so value cases are
still judged; with ``witness=True`` every executed instruction is also checked against the
verifier's abstract state (:mod:`reference_vm.verifier.witness`).

With ``compare_messages`` (the default), a case that records the kernel's verdict and message
(``expect.verifier``, docs/case-format.md) and gets the same verdict but another message is an
``error:verifier_message`` outcome (an ERROR verdict naming both messages), so that message
disagreements are visible in a run; the known ones (Linux rejects RFC 9669 programs of the
bpf_conformance corpus) are declared with the kernel's in ``conformance/divergences/kernel.yaml``.

Comparison mode: ``python -m conformance.targets.verifier compare [--unpriv] PATH...`` prints
verdict and message agreement with the kernel for every case that has a kernel expectation:
``expect.verifier`` for YAML cases (``message_unpriv`` for ``--unpriv``), the ``-- error`` text
for the raw cases of corpora/verifier, and for other ``.data`` cases (root mode only) "accept"
unless the kernel target's divergence file (conformance/divergences/kernel.yaml) records a
rejection.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reference_vm.outcome import UNSUPPORTED, Outcome, rejected

from ..case import Case

DEFAULT_BUDGET = 1_000_000
MISMATCH = "error:verifier_message"
_ERRNO_TAIL = re.compile(r"^(.*?) ?\(errno ([A-Z0-9]+)\)$", re.S)


@dataclass
class Verdict:
    """A verifier verdict as the kernel gives it: accept, or errno + message."""

    verdict: str
    errno: str | None = None
    message: str = ""

    def text(self) -> str:
        if self.verdict == "unsupported":
            return f"unsupported: {self.message}"
        return "accept" if self.verdict == "accept" else f"{self.message} (errno {self.errno})"

    @classmethod
    def parse(cls, text: str) -> Verdict:
        """``accept`` or ``<message> (errno NAME)``."""
        if text.strip() == "accept":
            return cls("accept")
        m = _ERRNO_TAIL.match(text.strip())
        if m is None:
            return cls("reject", None, text.strip())
        return cls("reject", m.group(2), m.group(1))


# --- verifying a case ---------------------------------------------------------------------------


def verify_whole(case: Any, privileged: bool = True) -> tuple[Verdict, dict[str, Any]]:
    """Verify every program of a whole-program case (the kernel target loads them all)."""
    from ..wholeprog import verify

    result, info = verify(case, privileged)
    if result is None or result.accepted:
        return Verdict("accept"), info
    return Verdict(result.verdict, result.errno, result.message), info


def verify_data(case: Case, privileged: bool = True) -> tuple[Verdict, dict[str, Any]]:
    """Verify a ``.data`` case as the kernel target loads it (wired), messages mapped back."""
    from reference_vm.errors import EncodingError
    from reference_vm.maps import MapSpec, MapType
    from reference_vm.program import FIRST_MAP_FD
    from reference_vm.verifier import verify

    from ..kernel.wiring import RESULT_SIZE, translate_message, wire

    mem = case.mem
    maps = []
    mem_fd = None
    if mem is not None:
        maps.append(MapSpec("mem", MapType.ARRAY, 4, max(len(mem), 1), 1, 1 << 10))
        mem_fd = FIRST_MAP_FD
    maps.append(MapSpec("result", MapType.ARRAY, 4, RESULT_SIZE, 1, 1 << 10))
    result_fd = FIRST_MAP_FD + len(maps) - 1
    try:
        wired = wire(list(case.program), mem_fd=mem_fd, mem_len=len(mem or b""), result_fd=result_fd)
        res = verify(
            wired.code, prog_type="socket_filter", maps=maps, privileged=privileged, has_fd_array=False
        )
        offset = wired.offset
    except EncodingError:
        res = verify(
            list(case.program),
            prog_type="socket_filter",
            maps=maps,
            privileged=privileged,
            has_fd_array=False,
        )
        offset = 0
    info = {"insn_processed": res.insn_processed, "log_tail": res.log.splitlines()[-3:]}
    if res.accepted:
        return Verdict("accept"), info
    return Verdict(
        res.verdict, res.errno, translate_message(res.message, offset) if offset else res.message
    ), info


def verify_case(case: Case, privileged: bool = True) -> tuple[Verdict, dict[str, Any]]:
    if case.whole is not None:
        return verify_whole(case.whole, privileged)
    return verify_data(case, privileged)


# --- what the kernel said ---------------------------------------------------------------------------


def _kernel_divergences() -> dict[str, str]:
    from ..divergence import DEFAULT_DIR, load_divergences

    path = DEFAULT_DIR / "kernel.yaml"
    if not path.is_file():
        return {}
    return {
        name: d.expect_error or ""
        for name, d in load_divergences(path).entries.items()
        if d.expect_error is not None
    }


def kernel_expectation(
    case: Case, privileged: bool = True, divergences: dict[str, str] | None = None
) -> Verdict | None:
    """The kernel's verdict for a case, where it is known (see the module docstring)."""
    if case.whole is not None:
        v = case.whole.expect.verifier
        if not v:
            return None
        if privileged:
            if v.get("verdict") == "accept":
                return Verdict("accept")
            return Verdict("reject", v.get("errno"), str(v.get("message", "")))
        if "message_unpriv" not in v:
            return None
        return Verdict.parse(str(v["message_unpriv"]))
    if "corpora/verifier" in Path(case.path).as_posix():
        if case.expect_error is None:
            return Verdict("accept")
        if not privileged:
            text = _comment(case.path, "kernel capbpf")
            if text is None:
                return None
            errno, _, msg = text.partition(": ")
            return Verdict("accept") if errno == "accept" else Verdict("reject", errno, msg)
        return Verdict.parse(case.expect_error)
    if not privileged:
        return None  # other .data cases were recorded in root mode only
    if divergences is None:
        divergences = _kernel_divergences()
    if case.name in divergences and divergences[case.name]:
        return Verdict.parse(divergences[case.name])
    if case.expect_error is not None:
        return None  # an expected run-time error: the kernel's verdict is not recorded
    return Verdict("accept")


def _comment(path: str, key: str) -> str | None:
    try:
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            if line.startswith(f"# {key}: "):
                return line[len(f"# {key}: ") :]
    except OSError:
        return None
    return None


# --- the target ---------------------------------------------------------------------------------------


class VerifierTarget:
    """``verifier``: the static checker, Linux 6.18's rules, root mode (``privileged=False``: the
    CAP_BPF-only mode)."""

    name = "verifier"
    in_process = True
    exact_errors = False

    def __init__(
        self,
        privileged: bool = True,
        compare_messages: bool = True,
        witness: bool = False,
        budget: int = DEFAULT_BUDGET,
    ) -> None:
        import reference_vm.verifier  # noqa: F401 - ImportError -> "target not available"

        self.privileged = privileged
        self.compare_messages = compare_messages
        self.witness = witness
        self.budget = budget
        if not privileged:
            self.name = "verifier-capbpf"

    def applies_to(self, case: Case) -> bool:
        """Tracing attachments (fentry/fexit/fmod_ret) are outside this target's scope: the
        verifier does not model them (docs/verifier.md). The runner counts and prints them."""
        if case.whole is not None:
            from reference_vm import trampoline

            return not trampoline.is_trampoline_case(case.whole)
        return True

    def run(self, case: Case, timeout: float) -> Outcome:
        verdict, info = verify_case(case, self.privileged)
        extra: dict[str, Any] = {"verifier": verdict.text(), **info}
        if self.compare_messages:
            want = kernel_expectation(case, self.privileged)
            if (
                want is not None
                and want.verdict == verdict.verdict == "reject"
                and (want.message, want.errno) != (verdict.message, verdict.errno)
            ):
                extra["kernel"] = want.text()
                return Outcome(error=MISMATCH, message=verdict.text(), extra=extra)
        if verdict.verdict == "unsupported":
            return Outcome(error=UNSUPPORTED, message=verdict.message, extra=extra)
        if verdict.verdict == "reject":
            return Outcome(error=rejected("verifier"), message=verdict.text(), extra=extra)
        outcome = self._run_accepted(case)
        outcome.extra.update(extra)
        return outcome

    def _run_accepted(self, case: Case) -> Outcome:
        """An accepted program: run it when the case expects values (else just ``ok``)."""
        if case.whole is not None:
            e = case.whole.expect
            if e.r0 is None and e.error in (None, "ok") and not (e.maps or e.ringbuf or e.trace or e.mem):
                return Outcome()
            from ..wholeprog import run_on_interpreter

            return run_on_interpreter(case.whole, self.budget)
        from reference_vm.errors import EncodingError
        from reference_vm.insn import decode_program
        from reference_vm.interpreter import run

        try:
            program = decode_program(list(case.program))
        except EncodingError as e:
            return Outcome(error=rejected("encoding"), message=str(e))
        outcome = run(program, case.mem or None, budget=self.budget)
        if self.witness:
            rep = witness_data(case)
            outcome.extra["witness"] = {"runs": rep.runs, "violations": rep.violations, "faults": rep.faults}
            if rep.violations:
                return Outcome(error="error:witness", message=rep.violations[0], extra=outcome.extra)
        return outcome


def witness_data(case: Case) -> Any:
    """Witness check of a ``.data`` case: the verifier sees r1 = pointer to ``len(mem)`` bytes
    (or 0) and r2 = the length, the interpreter runs with the case's memory."""
    from reference_vm.maps import MapSpec, MapType
    from reference_vm.verifier.state import Reg, T
    from reference_vm.verifier.witness import run_witness

    mem = case.mem
    maps = []
    r1, r2 = Reg(), Reg()
    if mem is not None:
        maps.append(MapSpec("mem", MapType.ARRAY, 4, max(len(mem), 1), 1))
        from reference_vm.verifier.state import MapInfo

        r1.mark_ptr(T.MAP_VALUE, map=MapInfo(0, "mem", 2, "ARRAY", 4, max(len(mem), 1), 1))
    else:
        r1.mark_known(0)
    r2.mark_known(len(mem or b""))
    return run_witness(list(case.program), [()], maps=maps, entry={1: r1, 2: r2}, mem=mem)


# --- comparison mode ----------------------------------------------------------------------------------


@dataclass
class Comparison:
    case: Case
    kernel: Verdict
    ours: Verdict

    @property
    def verdict_agrees(self) -> bool:
        return self.kernel.verdict == self.ours.verdict

    @property
    def message_agrees(self) -> bool:
        return self.verdict_agrees and (
            self.kernel.verdict == "accept"
            or (self.kernel.message, self.kernel.errno) == (self.ours.message, self.ours.errno)
        )


def compare_cases(cases: list[Case], privileged: bool = True) -> list[Comparison]:
    divs = _kernel_divergences()
    scope = VerifierTarget(privileged=privileged).applies_to
    out = []
    for case in cases:
        if not scope(case):  # tracing attachments: not modelled
            continue
        want = kernel_expectation(case, privileged, divs)
        if want is None:
            continue
        ours, _ = verify_case(case, privileged)
        out.append(Comparison(case, want, ours))
    return out


def summary(comps: list[Comparison]) -> dict[str, Any]:
    rejects = [c for c in comps if c.kernel.verdict == "reject"]
    vagree = sum(c.verdict_agrees for c in comps)
    magree = sum(c.message_agrees for c in rejects)
    return {
        "cases": len(comps),
        "verdict_agree": vagree,
        "kernel_rejects": len(rejects),
        "message_agree": magree,
        "verdict_agreement": vagree / len(comps) if comps else 1.0,
        "message_agreement": magree / len(rejects) if rejects else 1.0,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m conformance.targets.verifier")
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("compare", help="agreement of bpfcheck's verifier with the kernel's verdicts")
    c.add_argument("paths", nargs="+")
    c.add_argument("--unpriv", action="store_true", help="the CAP_BPF-only mode (message_unpriv)")
    c.add_argument("--by-topic", action="store_true")
    args = ap.parse_args(argv)
    from ..case import load_cases

    cases = load_cases(args.paths)
    comps = compare_cases(cases, privileged=not args.unpriv)
    topics: Counter[str] = Counter()
    bad_topics: Counter[str] = Counter()
    for comp in comps:
        topics[comp.case.topic or "data"] += 1
        if not comp.message_agrees:
            bad_topics[comp.case.topic or "data"] += 1
            kind = "VERDICT" if not comp.verdict_agrees else "MESSAGE"
            print(f"{kind} {comp.case.name}: kernel {comp.kernel.text()!r}, verifier {comp.ours.text()!r}")
    s = summary(comps)
    if args.by_topic:
        for t in sorted(topics):
            print(f"  {t}: {topics[t] - bad_topics[t]}/{topics[t]}")
    print(
        f"{s['cases']} cases: verdicts agree {s['verdict_agree']} ({100 * s['verdict_agreement']:.1f}%), "
        f"messages agree {s['message_agree']}/{s['kernel_rejects']} rejections "
        f"({100 * s['message_agreement']:.1f}%)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
