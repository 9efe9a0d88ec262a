"""The reference interpreter (:func:`reference_vm.interpreter.run`) as a target.

The program is decoded here first, so an invalid encoding becomes ``rejected:encoding``
with the decoder's message (pc and field) instead of reaching the interpreter. The
interpreter's instruction budget bounds every run; the runner's timeout is a second guard.
"""

from __future__ import annotations

from reference_vm.errors import EncodingError
from reference_vm.insn import decode_program
from reference_vm.outcome import Outcome, rejected

from ..case import Case

DEFAULT_BUDGET = 1_000_000


class InterpreterTarget:
    """Runs a case on the reference interpreter: r1/r2 = copy of ``-- mem`` and its length."""

    name = "interpreter"
    in_process = True
    exact_errors = False

    def __init__(self, budget: int = DEFAULT_BUDGET) -> None:
        from reference_vm.interpreter import run  # ImportError -> "target not available"

        self._run = run
        self.budget = budget

    def run(self, case: Case, timeout: float) -> Outcome:
        if case.whole is not None:
            from ..wholeprog import run_on_interpreter

            return run_on_interpreter(case.whole, self.budget)
        try:
            program = decode_program(list(case.program))
        except EncodingError as e:
            return Outcome(error=rejected("encoding"), message=str(e))
        return self._run(program, case.mem or None, budget=self.budget)
