"""The differential oracle: one program, many inputs, every target, the full final state.

:class:`Oracle` prepares a program on every target once (:mod:`fuzz.targets`) and then runs
each input on each of them. The first target is the reference; every other target's outcome
is compared with it on the fields both observe (in-process targets: error, r0-r10, memory,
instruction count, exit pc, helper calls, maps, ring buffer, trace; a plugin: ok/error and r0).
bpfcheck's verifier and the live kernel are targets too, with their own checks (see
:class:`Oracle`): an accepted program that faults, a witness violation, a kernel verdict that
differs from ours.
An ``unsupported`` outcome (a program a JIT cannot lower, a tail call it does not take) is not
compared. An exception escaping any component — our generator, a target's preparation or run,
the comparison itself — is a finding, never a crash of the campaign.

A divergence has a *signature* used to deduplicate findings (:func:`signature`): which targets
differ, in which part of the state, and (for a minimized program, :func:`row_classes`) which
instruction classes it contains.
"""

from __future__ import annotations

import signal
import threading
import traceback
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from reference_vm import interpreter
from reference_vm import outcome as oc
from reference_vm.errors import UsageError
from reference_vm.insn import Insn
from reference_vm.isa import Kind, OpDef
from reference_vm.outcome import Outcome

from .targets import FULL, PLUGIN_FIELDS, SOUND_BUDGET, make_target, raw_slots, role


class RunTimeout(Exception):
    """A target did not finish one run within the per-run timeout."""


@dataclass(frozen=True)
class Divergence:
    """One target disagreeing with the reference (or raising)."""

    target: str
    fields: tuple[str, ...]  # differing state parts, or ("exception",) / ("timeout",)
    detail: str = ""  # "ok->crash" for error changes; the exception type and place

    @property
    def key(self) -> str:
        return f"{self.target}:{'+'.join(self.fields)}" + (f"[{self.detail}]" if self.detail else "")


@dataclass
class Result:
    """The outcomes of one input on every target, and how they diverge."""

    mem: bytes | None
    outcomes: dict[str, Outcome | None]
    divergences: list[Divergence] = field(default_factory=list)
    tracebacks: dict[str, str] = field(default_factory=dict)

    @property
    def coarse(self) -> str:
        return coarse_signature(self.divergences)


def coarse_signature(divs: Iterable[Divergence]) -> str:
    """Targets and state parts that differ (what minimization must keep)."""
    return "|".join(sorted(d.key for d in divs))


def row_class(row: OpDef) -> str:
    """An instruction class for signatures: ``alu32:add``, ``jcond32:jset``, ``store8``,
    ``atomic64:cmpxchg``, ``call``..."""
    k = row.kind
    if k is Kind.ALU:
        name = row.name.split("_")[0].rstrip("0123456789")
        return f"alu{row.width}:{name}"
    if k is Kind.JCOND:
        return f"jcond{row.width}:{row.name.split('_')[0].rstrip('0123456789')}"
    if k is Kind.ATOMIC:
        return f"atomic{row.width}:{row.name.removeprefix('lock_').rstrip('0123456789')}"
    if k in (Kind.LOAD, Kind.LOADSX, Kind.STORE_IMM, Kind.STORE_REG, Kind.LOAD_ACQ, Kind.STORE_REL):
        return f"{k.value}{row.size * 8}"
    if k in (Kind.NEG, Kind.MOVSX, Kind.END):
        return row.name
    return k.value


def row_classes(program: Sequence[Insn | None]) -> list[str]:
    return sorted({row_class(i.op) for i in program if i is not None and i.op.kind is not Kind.EXIT})


def signature(divs: Iterable[Divergence], program: Sequence[Insn | None] | None = None) -> str:
    """The deduplication key: the coarse signature plus, for a (minimized) program, the
    classes of the instructions it contains."""
    coarse = coarse_signature(divs)
    if program is None:
        return coarse
    return coarse + "#" + ",".join(row_classes(program))


def _where(e: BaseException) -> str:
    """file:function of the innermost frame of ours (reference_vm/, conformance/, fuzz/)."""
    tb = traceback.extract_tb(e.__traceback__)
    for fr in reversed(tb):
        fn = fr.filename.replace("\\", "/")
        for top in ("reference_vm/", "conformance/", "fuzz/", "bench/"):
            if top in fn:
                return fn[fn.rindex(top) :] + ":" + fr.name
    return tb[-1].name if tb else "?"


def exception_detail(e: BaseException) -> str:
    return f"{type(e).__name__}@{_where(e)}"


def _err_kind(out: Outcome) -> str:
    return "ok" if out.error == oc.OK else "error"


def compare(
    ref: Outcome, other: Outcome, ref_fields: Sequence[str], other_fields: Sequence[str]
) -> tuple[tuple[str, ...], str]:
    """Differing fields of two outcomes, on what both observe; and the error change."""
    common = [f for f in FULL if f in ref_fields and f in other_fields]
    if "okness" in ref_fields or "okness" in other_fields:
        diffs = []
        if _err_kind(ref) != _err_kind(other):
            diffs.append("error")
        elif ref.ok and ref.r0 != other.r0:
            diffs.append("r0")
        detail = f"{_err_kind(ref)}->{other.error}" if diffs and diffs[0] == "error" else ""
        return tuple(diffs), detail
    diffs = [f for f in common if getattr(ref, f) != getattr(other, f)]
    detail = f"{ref.error}->{other.error}" if "error" in diffs else ""
    return tuple(diffs), detail


class _Alarm:
    """Per-run timeouts with SIGALRM (main thread only; elsewhere runs are unbounded here and
    the campaign's watchdog, which kills and restarts the worker, is the only guard)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.enabled = seconds > 0 and threading.current_thread() is threading.main_thread()
        if self.enabled:
            signal.signal(signal.SIGALRM, self._fire)

    @staticmethod
    def _fire(signum: int, frame: Any) -> None:
        raise RunTimeout("per-run timeout")

    def __enter__(self) -> None:
        if self.enabled:
            signal.setitimer(signal.ITIMER_REAL, self.seconds)

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            signal.setitimer(signal.ITIMER_REAL, 0)


@dataclass
class Prepared:
    targets: list[Any]  # per target: its prepared program, or None if preparing it raised
    failed: dict[str, tuple[str, str]]  # target -> (exception detail, traceback)
    program: Sequence[Insn | None] = ()
    budget: int = 0


#: Divergence fields of the static checks (role ``verifier`` / ``kernel`` targets).
SOUNDNESS, WITNESS, VERDICT = "soundness", "witness", "verdict"


class Oracle:
    """Targets by spec; :meth:`check` runs one program on many inputs.

    Execution targets (interpreter, JITs, plugins, their mutants) are compared with the first
    one, the reference. A ``verifier`` target (:class:`fuzz.targets.VerifierFuzzTarget`) is run
    once per program; when it accepts, three more things are findings of that target:

    * ``soundness``: the reference (the interpreter, when it is among the targets) faults on an
      input, or exhausts the budget even when run again with ``SOUND_BUDGET`` instructions;
    * ``witness``: on the first ``witness_inputs`` inputs of each program the interpreter is run
      step by step against the verifier's abstract states (:mod:`reference_vm.verifier.witness`)
      and a concrete register outside them is a violation;
    * an ``exception`` of the verifier itself (as for every target). A verifier that does not
      finish within the run timeout is counted (``stats``), not reported: its own bound is a
      million processed instructions, which the kernel reaches in 0.2 s and we in ~50 s
      (docs/verifier.md, precision tracking), so that is slowness, not a wrong verdict.

    A ``kernel`` target (only with ``allow_kernel``) loads a program only when bpfcheck's
    verifier accepts it (the gate is in the target); a kernel verdict that differs from ours in
    the same privilege mode is a ``verdict`` divergence, and an accepted program's run is
    compared with the reference on ok/error and r0 (ok/error only when it calls helpers, whose
    values differ between the kernel and us by design, or bpf-to-bpf calls, whose callee stacks
    hold kernel leftovers). The kernel gets the program behind a prefix that zeroes the stack.
    """

    def __init__(
        self,
        specs: Sequence[str],
        *,
        run_timeout: float = 10.0,
        allow_kernel: bool = False,
        witness_inputs: int = 1,
    ) -> None:
        self.specs = list(specs)
        self.targets = [make_target(s, allow_kernel=allow_kernel) for s in specs]
        self.names = [t.name for t in self.targets]
        self.alarm = _Alarm(run_timeout)
        self.unsupported = 0
        self.witness_inputs = witness_inputs
        self.roles = [role(t) for t in self.targets]
        execs = [t for t, r in zip(self.targets, self.roles, strict=True) if r is None]
        if not execs:
            raise UsageError("at least one target must execute programs (e.g. interpreter)")
        self.ref = execs[0]
        #: the target whose faults count against the verifier: the interpreter when present
        self.sound_ref = next((t for t in execs if t.name == "interpreter"), self.ref)
        #: per verifier target: programs verified, accepted, witness runs
        self.stats: dict[str, dict[str, int]] = {
            t.name: {"verified": 0, "accepted": 0, "witness_runs": 0, "timeouts": 0}
            for t, r in zip(self.targets, self.roles, strict=True)
            if r == "verifier"
        }

    def check(
        self,
        program: Sequence[Insn | None],
        mems: Sequence[bytes | None],
        budget: int,
        *,
        stop_at_first: bool = False,
    ) -> list[Result]:
        """Every input on every target; a :class:`Result` per input."""
        prepared = self.prepare(program, budget, any(m is not None for m in mems))
        return self.run(prepared, mems, stop_at_first=stop_at_first)

    def prepare(self, program: Sequence[Insn | None], budget: int, has_mem: bool = True) -> Prepared:
        """The per-program work on every target (translation, interpreter steps)."""
        prepared: list[Any] = []
        failed: dict[str, tuple[str, str]] = {}
        for t in self.targets:
            try:
                with self.alarm:
                    prepared.append(t.prepare(program, budget, has_mem))
            except Exception as e:  # noqa: BLE001 - any exception of a component is a finding
                prepared.append(None)
                failed[t.name] = (
                    exception_detail(e) if not isinstance(e, RunTimeout) else "prepare",
                    traceback.format_exc(),
                )
        return Prepared(prepared, failed, program, budget)

    def run(
        self, prepared: Prepared, mems: Sequence[bytes | None], *, stop_at_first: bool = False
    ) -> list[Result]:
        """Inputs on a prepared program."""
        results = []
        counted: set[str] = set()
        for n, mem in enumerate(mems):
            r = self._one(prepared, mem, witness=n < self.witness_inputs, counted=counted)
            results.append(r)
            if stop_at_first and r.divergences:
                break
        return results

    def _one(
        self, prep: Prepared, mem: bytes | None, *, witness: bool = False, counted: set[str] | None = None
    ) -> Result:
        outs: dict[str, Outcome | None] = {}
        excs: dict[str, tuple[str, str]] = dict(prep.failed)
        timeouts: set[str] = set()
        for t, p in zip(self.targets, prep.targets, strict=True):
            if p is None:
                outs[t.name] = None
                continue
            try:
                with self.alarm:
                    outs[t.name] = p.run(mem)
            except RunTimeout:
                outs[t.name] = None
                timeouts.add(t.name)
            except Exception as e:  # noqa: BLE001
                outs[t.name] = None
                excs[t.name] = (exception_detail(e), traceback.format_exc())
        result = Result(mem=mem, outcomes=outs)
        for t in self.targets:
            if t.name in excs:
                result.divergences.append(Divergence(t.name, ("exception",), excs[t.name][0]))
                result.tracebacks[t.name] = excs[t.name][1]
            elif t.name in timeouts:
                if t.name in self.stats:  # the verifier's own limit is 1M insns: slow, not wrong
                    if counted is not None and t.name not in counted:
                        counted.add(t.name)
                        self.stats[t.name]["timeouts"] += 1
                    continue
                result.divergences.append(Divergence(t.name, ("timeout",)))
        ref_t = self.ref
        ref = outs[ref_t.name]
        for t, r in zip(self.targets, self.roles, strict=True):
            out = outs[t.name]
            if out is None:
                continue
            if r == "verifier":
                self._verifier_checks(t, out, prep, mem, result, witness, counted)
            elif r == "kernel":
                self._kernel_checks(t, out, ref, result)
        if ref is None or ref.error == oc.UNSUPPORTED:
            return result
        for t, r in zip(self.targets, self.roles, strict=True):
            if t is ref_t or r is not None:
                continue
            out = outs[t.name]
            if out is None:
                continue
            if out.error == oc.UNSUPPORTED:
                self.unsupported += 1
                continue
            diffs, detail = compare(ref, out, ref_t.fields, t.fields)
            if diffs:
                result.divergences.append(Divergence(t.name, diffs, detail))
        return result

    # -- the static checks --

    def _verifier_checks(
        self,
        t: Any,
        out: Outcome,
        prep: Prepared,
        mem: bytes | None,
        result: Result,
        witness: bool,
        counted: set[str] | None,
    ) -> None:
        stats = self.stats[t.name]
        if counted is not None and t.name not in counted:
            counted.add(t.name)
            stats["verified"] += 1
            stats["accepted"] += out.error == oc.OK
        if out.error != oc.OK:
            return
        sound = result.outcomes.get(self.sound_ref.name)
        if sound is not None and sound.error not in (oc.OK, oc.UNSUPPORTED):
            error = sound.error
            if error == oc.BUDGET:  # long, not endless? run it again with the verifier's bound
                try:
                    with self.alarm:
                        error = interpreter.run(prep.program, mem, budget=SOUND_BUDGET).error
                except RunTimeout:
                    error = oc.TIMEOUT
            if error not in (oc.OK, oc.UNSUPPORTED):
                result.divergences.append(Divergence(t.name, (SOUNDNESS,), f"accept->{error}"))
        if not witness:
            return
        from reference_vm.verifier.witness import run_witness

        try:
            with self.alarm:
                rep = run_witness(
                    raw_slots(prep.program),
                    [()],
                    maps=out.extra["maps"],
                    entry=out.extra["entry"],
                    result=out.extra["result"],
                    mem=mem,
                    budget=max(prep.budget, 1),
                )
        except RunTimeout:
            return  # a long run: the soundness check above covers termination
        except Exception as e:  # noqa: BLE001 - the witness machinery is a component too
            result.divergences.append(Divergence(t.name, ("exception",), "witness:" + exception_detail(e)))
            result.tracebacks[t.name] = traceback.format_exc()
            return
        stats["witness_runs"] += 1
        if rep.violations:
            result.divergences.append(Divergence(t.name, (WITNESS,)))
            out.extra["witness"] = rep.violations[0]

    # -- whole cases (fuzz.wholeprog) --

    def check_whole(self, case: Any) -> list[Result]:
        """A whole case (several programs, maps) on every target that runs them (interpreter,
        JITs and their mutants; plugins and the kernel do not): each input's full state, maps
        and ring-buffer records included, compared with the reference; the verifier once per
        case, with the soundness check on every input (no witness: it follows one program)."""
        verdicts: dict[str, Outcome | None] = {}
        vexc: dict[str, tuple[str, str]] = {}
        for t, r in zip(self.targets, self.roles, strict=True):
            if r == "verifier":
                try:
                    with self.alarm:
                        verdicts[t.name] = t.verify_whole(case)
                except RunTimeout:
                    verdicts[t.name] = None
                    self.stats[t.name]["timeouts"] += 1
                except Exception as e:  # noqa: BLE001
                    verdicts[t.name] = None
                    vexc[t.name] = (exception_detail(e), traceback.format_exc())
                else:
                    out = verdicts[t.name]
                    self.stats[t.name]["verified"] += 1
                    self.stats[t.name]["accepted"] += out is not None and out.error == oc.OK
        runners = [
            t for t, r in zip(self.targets, self.roles, strict=True) if r is None and hasattr(t, "run_whole")
        ]
        results = []
        for mem in case.mems:
            outs: dict[str, Outcome | None] = dict(verdicts)
            result = Result(mem=mem, outcomes=outs)
            for name, (detail, tb) in vexc.items():
                result.divergences.append(Divergence(name, ("exception",), detail))
                result.tracebacks[name] = tb
            for t in runners:
                try:
                    with self.alarm:
                        outs[t.name] = t.run_whole(case, mem)
                except RunTimeout:
                    outs[t.name] = None
                    result.divergences.append(Divergence(t.name, ("timeout",)))
                except Exception as e:  # noqa: BLE001
                    outs[t.name] = None
                    result.divergences.append(Divergence(t.name, ("exception",), exception_detail(e)))
                    result.tracebacks[t.name] = traceback.format_exc()
            ref = outs.get(self.ref.name)
            sound = outs.get(self.sound_ref.name)
            for name, verdict in verdicts.items():
                if verdict is None or verdict.error != oc.OK or sound is None:
                    continue
                error = sound.error
                if error == oc.BUDGET:
                    try:
                        with self.alarm:
                            error = replace(case, budget=SOUND_BUDGET).run("interpreter", mem).error
                    except RunTimeout:
                        error = oc.TIMEOUT
                if error not in (oc.OK, oc.UNSUPPORTED):
                    result.divergences.append(Divergence(name, (SOUNDNESS,), f"accept->{error}"))
            if ref is not None and ref.error != oc.UNSUPPORTED:
                for t in runners:
                    out = outs.get(t.name)
                    if t is self.ref or out is None:
                        continue
                    if out.error == oc.UNSUPPORTED:
                        self.unsupported += 1
                        continue
                    diffs, detail = compare(ref, out, self.ref.fields, t.fields)
                    if diffs:
                        result.divergences.append(Divergence(t.name, diffs, detail))
            results.append(result)
        return results

    def _kernel_checks(self, t: Any, out: Outcome, ref: Outcome | None, result: Result) -> None:
        if out.error == oc.UNSUPPORTED or "ours_accepts" not in out.extra:
            return
        kernel_accepts = not out.error.startswith("rejected:")
        if kernel_accepts != out.extra["ours_accepts"]:
            detail = "accept->reject" if out.extra["ours_accepts"] else "reject->accept"
            result.divergences.append(Divergence(t.name, (VERDICT,), detail))
            return
        if not kernel_accepts or ref is None or ref.error in (oc.UNSUPPORTED, oc.BUDGET):
            return
        if "r0" in out.extra["compare"]:
            diffs, detail = compare(ref, out, self.ref.fields, ("okness", "r0"))
        else:
            diffs, detail = (("error",), f"{ref.error}->{out.error}") if ref.ok != out.ok else ((), "")
        if diffs:
            result.divergences.append(Divergence(t.name, diffs, detail))


def describe(result: Result, names: Sequence[str]) -> str:
    """A few lines: each target's error, r0 and the registers / memory bytes that differ."""
    lines = []
    ref = result.outcomes.get(names[0])
    for name in names:
        out = result.outcomes.get(name)
        if out is None:
            tb = result.tracebacks.get(name, "")
            lines.append(f"{name}: no outcome ({tb.strip().splitlines()[-1] if tb else 'timeout'})")
            continue
        text = f"{name}: {out.error}" + (f" r0={out.r0:#x}" if out.r0 is not None else "")
        text += f" insns={out.insn_count} exit_pc={out.exit_pc}"
        if ref is not None and out is not ref and ref.regs and out.regs and ref.regs != out.regs:
            regs = [
                f"r{k}={b:#x} (want {a:#x})"
                for k, (a, b) in enumerate(zip(ref.regs, out.regs, strict=True))
                if a != b
            ]
            text += " " + " ".join(regs)
        if ref is not None and out is not ref and out.memory and ref.memory != out.memory:
            for region, data in out.memory.items():
                want = ref.memory.get(region)
                if want is not None and want != data:
                    at = next((i for i in range(min(len(want), len(data))) if want[i] != data[i]), 0)
                    text += f" {region}[{at}]: {data[at : at + 8].hex()} (want {want[at : at + 8].hex()})"
        if out.message and out.error != oc.OK:
            text += f" ({out.message[:160]})"
        lines.append(text)
    return "\n".join(lines)


__all__ = [
    "FULL",
    "PLUGIN_FIELDS",
    "Divergence",
    "Oracle",
    "Result",
    "RunTimeout",
    "coarse_signature",
    "compare",
    "describe",
    "row_class",
    "row_classes",
    "signature",
]
