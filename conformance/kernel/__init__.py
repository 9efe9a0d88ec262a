"""The live Linux kernel as an oracle, through the ``bpf(2)`` system call (ctypes only).

:mod:`.syscall` (bpf_attr layouts and commands), :mod:`.wiring` (a case's program turned into a
kernel program: r1/r2 prologue, 64-bit r0 epilogue), :mod:`.harness` (one case: maps, load,
TEST_RUN, read-back), :mod:`.probe` (what this machine allows), :mod:`.caps` (the CAP_BPF-only
child). The target itself is :mod:`conformance.targets.kernel`; docs/kernel-target.md has the
whole picture, ../shared/reference/kernel-oracle.md the measured facts.
"""
