"""The JITs (:mod:`reference_vm.jit`) as targets: ``jit-x86_64`` and ``jit-arm64``.

Like the interpreter target: the program is decoded first (an invalid encoding becomes
``rejected:encoding``), r1/r2 = copy of ``-- mem`` and its length, the same instruction budget.
The program is translated for the architecture and run on the process-wide unicorn engine of
that architecture; a program the backend cannot translate is ``unsupported`` (a skip).

Whole-program (YAML) cases go through the same steps as on the interpreter
(:func:`conformance.wholeprog.run_on_interpreter`): maps created and filled, the entry's
context built (with its converted pointer fields), all programs laid out in one pc space
(:func:`reference_vm.jit.run_programs`), so tail calls, ``lddw`` function addresses and exit
pcs agree; trampoline cases run the trampoline model with the JIT as its engine. The runner's
per-case timeout also bounds the run's wall-clock time from inside.
"""

from __future__ import annotations

import time

from reference_vm.errors import EncodingError
from reference_vm.insn import decode_program
from reference_vm.outcome import Outcome, rejected

from ..case import Case
from ..yaml_case import YamlCase

DEFAULT_BUDGET = 1_000_000


class JitTarget:
    """Runs a case on one JIT backend under unicorn."""

    in_process = True
    exact_errors = False

    def __init__(self, arch: str, budget: int = DEFAULT_BUDGET, **options: object) -> None:
        from reference_vm import jit  # ImportError (no unicorn) -> "target not available"

        if arch not in jit.ARCHES:
            raise ValueError(f"unknown JIT architecture {arch!r}")
        self.arch = arch
        self.name = f"jit-{arch}"
        self.budget = budget
        self.options = dict(options)

    def run(self, case: Case, timeout: float | None = None) -> Outcome:
        from reference_vm import jit

        if case.whole is not None:
            return self.run_whole(case.whole, timeout)
        try:
            program = decode_program(list(case.program))
        except EncodingError as e:
            return Outcome(error=rejected("encoding"), message=str(e))
        return jit.run(program, case.mem or None, arch=self.arch, budget=self.budget,
                             options=self.options, timeout=timeout)

    def run_whole(self, case: YamlCase, timeout: float | None = None) -> Outcome:
        """A whole-program case, as :func:`conformance.wholeprog.run_on_interpreter` runs it
        on the interpreter, with the JIT as the engine."""
        from reference_vm import jit, trampoline

        from ..wholeprog import assembled, entry_context, finish, load_check, make_env

        refused = load_check(case)
        if refused is not None:
            return refused
        deadline = time.monotonic() + timeout if timeout is not None else None
        programs = assembled(case)
        env = make_env(case)
        if trampoline.is_trampoline_case(case):
            engine = jit.runner(self.arch, options=self.options, deadline=deadline)
            outcome = trampoline.run_tracing_case(case, programs, env, engine=engine)
        else:
            entry = case.entry or case.programs[0].name
            r1, r2, pointers = entry_context(case, env)
            outcome = jit.run_programs(
                list(programs.items()), entry, env, r1=r1, r2=r2,
                budget=int(case.options.get("budget", self.budget)),
                empty_slot_consumes_budget=bool(case.options.get("empty_slot_consumes_budget", False)),
                ctx_pointers=pointers, arch=self.arch, options=self.options, deadline=deadline)
        return finish(outcome, env)


def X86_64Target() -> JitTarget:  # noqa: N802 - a target factory, named like a class
    return JitTarget("x86_64")


def Arm64Target() -> JitTarget:  # noqa: N802
    return JitTarget("arm64")
