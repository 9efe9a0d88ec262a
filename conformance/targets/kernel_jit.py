"""``kernel-jit``: the live kernel's own x86-64 JIT image of each case, run under unicorn.

A ``.data`` case is wired and loaded exactly as the ``kernel`` target loads it (the same verifier
verdicts and messages); instead of ``BPF_PROG_TEST_RUN``, the JIT image is fetched with
``BPF_OBJ_GET_INFO_BY_FD`` and executed by unicorn (:mod:`conformance.kernel.jit_image`,
docs/kernel-jit.md). Whole-program YAML cases are not run (use ``kernel``).

The verifier is the kernel's, so the expected divergences are the ``kernel`` target's: they are
shared, not copied: ``conformance/divergences/kernel.yaml`` names both targets
(``targets: [kernel, kernel-jit]``, honoured by :func:`conformance.divergence.default_entries`).

Probing (bpf() usable, x86-64, unicorn and capstone importable, the JIT on, readable kallsyms
addresses, a self-test through the whole path) happens on first use, once per process; where it
fails every case SKIPs with the reason.
"""

from __future__ import annotations

from reference_vm.outcome import UNSUPPORTED, Outcome

from ..case import Case


class KernelJitTarget:
    """Runs the kernel JIT's image of each case under unicorn (kernel-oracle.md §10)."""

    name = "kernel-jit"
    #: Run in the runner's killable worker processes (unicorn runs in this process).
    in_process = True
    #: Kernel verifier messages are not comparable with other implementations' ``-- error`` texts.
    exact_errors = False

    def unavailable_reason(self) -> str | None:
        """Why this target cannot run anything on this machine, or None (probed once)."""
        from ..kernel.jit_image import probe

        return probe()

    def applies_to(self, case: Case) -> bool:
        """The scope of this target: single-program (.data) cases; whole-program cases with maps
        and several programs run on the ``kernel`` target; those the kernel target loads (see
        :meth:`KernelTarget.applies_to`)."""
        from ..kernel.harness import refusal

        return case.whole is None and refusal(case) is None

    def supports(self, case: Case) -> str | None:
        reason = self.unavailable_reason()
        if reason is not None:
            return f"kernel-jit target unavailable: {reason}"
        if case.whole is not None:
            return "kernel-jit runs .data cases only; whole-program cases run on the kernel target"
        from ..kernel.harness import refusal

        return refusal(case)

    def run(self, case: Case, timeout: float) -> Outcome:
        reason = self.supports(case)
        if reason is not None:
            return Outcome(error=UNSUPPORTED, message=reason)
        from ..kernel.jit_image import run_case

        return run_case(case)
