"""Fake bpf_conformance plugin: reports a load error, like uBPF, on stdout (or stderr with --stderr)."""
import sys

sys.stdin.read()
message = "Failed to load code: unknown opcode 0x8d at PC 2  \n"
(sys.stderr if "--stderr" in sys.argv else sys.stdout).write(message)
sys.exit(1)
