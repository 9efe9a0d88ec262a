"""The JITs (:mod:`reference_vm.jit`) as targets: ``jit-x86_64`` and ``jit-arm64``.

Like the interpreter target: the program is decoded first (an invalid encoding becomes
``rejected:encoding``), r1/r2 = copy of ``-- mem`` and its length, the same instruction budget.
The program is translated for the architecture and run on the process-wide unicorn engine of
that architecture; a program the backend cannot translate is ``unsupported`` (a skip), and so
is a whole-program case (``supports``).
"""

from __future__ import annotations

from reference_vm.errors import EncodingError
from reference_vm.insn import decode_program
from reference_vm.outcome import Outcome, rejected

from ..case import Case

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
        """Whole-program cases (several programs, maps, attachments) are not run by the JITs."""
        if getattr(case, "whole", None) is not None:
            return f"{self.name} runs single programs; whole-program cases are interpreter-only for now"
        return None

    def run(self, case: Case, timeout: float) -> Outcome:
        try:
            program = decode_program(list(case.program))
        except EncodingError as e:
            return Outcome(error=rejected("encoding"), message=str(e))
        return self._run(program, case.mem or None, arch=self.arch, budget=self.budget)


def X86_64Target() -> JitTarget:  # noqa: N802 - a target factory, named like a class
    return JitTarget("x86_64")


def Arm64Target() -> JitTarget:  # noqa: N802
    return JitTarget("arm64")
