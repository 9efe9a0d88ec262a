"""A pytest plugin that applies one mutant for the whole session (``BPFCHECK_MUTANT=NAME``).

``bench/mutants/run.py`` runs ``pytest -p bench.mutants.pytest_apply tests/test_tnum.py`` with it
to see whether the exhaustive soundness checks (:mod:`reference_vm.verifier.soundness`) kill a
verifier mutant: the mutant is applied in ``pytest_configure``, before the test modules are
imported, so tables of functions built at import see the mutated function.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

_STACK = contextlib.ExitStack()


def pytest_configure(config: Any) -> None:
    name = os.environ.get("BPFCHECK_MUTANT")
    if name:
        from bench.mutants import get_mutant

        _STACK.enter_context(get_mutant(name).applied())


def pytest_unconfigure(config: Any) -> None:
    _STACK.close()
