"""The live Linux kernel as a target: ``bpf(2)`` through ctypes, as root or with CAP_BPF only.

How a case is wired (r1/r2 = an mmapable map value, 64-bit r0 captured by an epilogue, mem read
back, verifier verdict + errno + message) is in :mod:`conformance.kernel.harness` and
:mod:`conformance.kernel.wiring`; docs/kernel-target.md has the whole picture.

Two modes (kernel-oracle.md §9, P8):

``kernel`` (:class:`KernelTarget`)
    loads in this process, with this process's privileges (root on the reference VM).
``kernel-capbpf`` (:class:`KernelCapBpfTarget`, or ``KernelTarget(capbpf=True)``)
    forks a child per case that keeps only CAP_BPF + CAP_NET_ADMIN (``capset``), so the
    verifier runs in its strict, unprivileged-like mode (Spectre masking, no pointer leaks,
    no uninitialised stack reads).

The capability probe (:mod:`conformance.kernel.probe`) runs on first use, not at import or
construction, and only once per process. When ``bpf()`` is unusable (no permission, no
syscall, TEST_RUN refused, the wiring self-test fails), :meth:`KernelTarget.supports` returns
the probe's reason for every case: the runner and the tests SKIP, never fail.
"""

from __future__ import annotations

from reference_vm.outcome import CRASH, TIMEOUT, UNSUPPORTED, Outcome

from ..case import Case
from ..kernel.probe import KernelCapabilities


class KernelTarget:
    """Runs cases on the running kernel (SOCKET_FILTER + TEST_RUN, kernel-oracle.md §4–§5)."""

    name = "kernel"
    #: Run in the runner's worker processes: killable at the timeout, and single-threaded, which
    #: the capbpf mode's fork needs.
    in_process = True
    #: Kernel messages are not comparable with other implementations' ``-- error`` texts.
    exact_errors = False

    def __init__(self, capbpf: bool = False) -> None:
        self.capbpf = capbpf
        if capbpf:
            self.name = "kernel-capbpf"
        self._caps: KernelCapabilities | None = None
        self._capbpf_reason: str | None = None

    @property
    def mode(self) -> str:
        """``root`` or ``capbpf`` (the privilege mode, as ``bpfcheck record`` writes it)."""
        return "capbpf" if self.capbpf else "root"

    def capabilities(self) -> KernelCapabilities:
        """The probe's findings (probed on first call)."""
        if self._caps is None:
            from ..kernel.probe import probe, probe_capbpf

            self._caps = probe()
            if self.capbpf and self._caps.usable:
                self._capbpf_reason = probe_capbpf()
        return self._caps

    def unavailable_reason(self) -> str | None:
        """Why this target cannot run anything on this machine, or None."""
        caps = self.capabilities()
        return caps.unusable if not caps.usable else self._capbpf_reason

    def applies_to(self, case: Case) -> bool:
        """Trampoline cases are outside this target's scope on a kernel that refuses fentry/fexit/
        fmod_ret loads (probed: EPERM before the verifier on this machine's kernel); the runner
        counts them as not run for this target instead of as skips. So are ``.data`` programs it
        does not load (:func:`conformance.kernel.harness.refusal`): programs that do not decode
        (this target wires a program first and loads nothing malformed) or that name maps by fd
        number — corpora/verifier/structure_raw, whose kernel answers the corpus generator
        recorded and on which the ``verifier`` target is judged; likewise whole-program cases it
        does not load (:func:`conformance.kernel.wholeprog.refusal`: helper ids outside the
        table, maps named by a bad fd). ``supports`` still gives the reason when asked."""
        if self.unavailable_reason() is not None:
            return True
        if case.whole is None:
            from ..kernel.harness import refusal

            return refusal(case) is None
        from ..kernel.wholeprog import refusal as whole_refusal

        return whole_refusal(case.whole, self.capabilities().trampolines) is None

    def supports(self, case: Case) -> str | None:
        """A skip reason: the kernel is unusable here, or the program is not one we load."""
        reason = self.unavailable_reason()
        if reason is not None:
            return f"kernel target unavailable: {reason}"
        if case.whole is not None:
            from ..kernel.wholeprog import refusal as whole_refusal

            return whole_refusal(case.whole, self.capabilities().trampolines)
        from ..kernel.harness import refusal

        return refusal(case)

    def run(self, case: Case, timeout: float) -> Outcome:
        reason = self.supports(case)
        if reason is not None:
            return Outcome(error=UNSUPPORTED, message=reason)
        from ..kernel.harness import run_case

        if case.whole is not None:
            from ..kernel.wholeprog import run_whole

            whole = case.whole
            job = lambda: run_whole(whole)  # noqa: E731
        else:
            job = lambda: run_case(case)  # noqa: E731
        if not self.capbpf:
            return job()
        from ..kernel.caps import CAPBPF_SET, ChildError, run_with_caps

        try:
            return run_with_caps(job, CAPBPF_SET, timeout)
        except ChildError as e:
            return Outcome(error=TIMEOUT if e.kind == "timeout" else CRASH, message=f"capbpf child: {e}")


class KernelCapBpfTarget(KernelTarget):
    """``kernel-capbpf``: the kernel target with a CAP_BPF + CAP_NET_ADMIN-only loader."""

    def __init__(self) -> None:
        super().__init__(capbpf=True)
