"""The JITs (:mod:`reference_vm.jit`) as targets: ``jit-x86_64`` and ``jit-arm64``.

Like the interpreter target: the program is decoded first (an invalid encoding becomes
``rejected:encoding``), r1/r2 = copy of ``-- mem`` and its length, the same instruction budget.
The program is translated for the architecture and run on the process-wide unicorn engine of
that architecture; a program the backend cannot translate is ``unsupported`` (a skip).
Whole-program (YAML) cases run their entry program with the case's maps (``wholeprog``), as
the interpreter target does; trampoline cases are skipped (``supports``).
"""

from __future__ import annotations

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

    def __init__(self, arch: str, budget: int = DEFAULT_BUDGET) -> None:
        from reference_vm import jit  # ImportError (no unicorn) -> "target not available"

        if arch not in jit.ARCHES:
            raise ValueError(f"unknown JIT architecture {arch!r}")
        self._run = jit.run
        self.arch = arch
        self.name = f"jit-{arch}"
        self.budget = budget

    def supports(self, case: Case) -> str | None:
        """Trampoline cases (fentry/fexit/fmod_ret) are not run by the JITs, nor cases whose
        entry is not their first program (the interpreter lays programs out back to back, so
        ``lddw`` function addresses would differ)."""
        if case.whole is not None:
            from reference_vm import trampoline

            if trampoline.is_trampoline_case(case.whole):
                return f"{self.name} does not model trampolines (fentry/fexit/fmod_ret)"
            entry = case.whole.entry or case.whole.programs[0].name
            if entry != case.whole.programs[0].name:
                return f"{self.name} runs a case's first program only"
        return None

    def run(self, case: Case, timeout: float) -> Outcome:
        if case.whole is not None:
            return self._run_whole(case.whole)
        try:
            program = decode_program(list(case.program))
        except EncodingError as e:
            return Outcome(error=rejected("encoding"), message=str(e))
        return self._run(program, case.mem or None, arch=self.arch, budget=self.budget)

    def _run_whole(self, case: YamlCase) -> Outcome:
        """A whole-program case: its maps created and filled as for the interpreter, its entry
        program run (a tail call into another program is reported as unsupported)."""
        from ..wholeprog import assembled, finish, make_env

        programs = assembled(case)
        env = make_env(case)
        entry = case.entry or case.programs[0].name
        outcome = self._run(programs[entry], case.mem, arch=self.arch, env=env,
                            budget=int(case.options.get("budget", self.budget)),
                            empty_slot_consumes_budget=bool(case.options.get("empty_slot_consumes_budget",
                                                                             False)))
        return finish(outcome, env)


def X86_64Target() -> JitTarget:  # noqa: N802 - a target factory, named like a class
    return JitTarget("x86_64")


def Arm64Target() -> JitTarget:  # noqa: N802
    return JitTarget("arm64")
