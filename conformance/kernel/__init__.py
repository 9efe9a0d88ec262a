"""The live Linux kernel as an oracle, through the ``bpf(2)`` system call (ctypes only)."""
