"""``bpfcheck plugin``: the reference interpreter as a bpf_conformance plugin.

Protocol (``formats-and-corpora.md`` §2): ``bpfcheck plugin [<mem>]``, where ``<mem>`` is
the input memory as hex bytes (``aa  bb  ``); the program arrives on stdin in the same hex
format. On success r0 is printed in hex with a ``0x`` prefix (the stock runner reads it with
``stoull(s, 16)``, which accepts the prefix) and the exit status is 0. An invalid program or
a fault prints a one-line message on stderr and exits 1. ``--elf`` (hex-encoded ELF on stdin)
is not supported and is refused with exit status 2.
"""

from __future__ import annotations

import re
import sys
from typing import TextIO

from reference_vm.errors import EncodingError, UsageError
from reference_vm.insn import decode_program

_HEX = re.compile(r"(?:[0-9a-fA-F]{2})*")


def parse_hex(text: str, what: str) -> bytes:
    """Hex bytes separated by any whitespace (or none), as bpf_conformance's base16 encoding."""
    compact = "".join(text.split())
    if not _HEX.fullmatch(compact):
        raise UsageError(f"{what} is not hex bytes: {text.strip()[:60]!r}")
    return bytes.fromhex(compact)


def main(argv: list[str], stdin: TextIO | None = None, stdout: TextIO | None = None,
         stderr: TextIO | None = None) -> int:
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    mem: bytes | None = None
    for arg in argv:
        if arg == "--elf":
            raise UsageError("bpfcheck plugin: --elf is not supported (pass raw bytecode as hex on stdin)")
        if arg in ("-h", "--help"):
            stdout.write(__doc__ or "")
            return 0
        if arg.startswith("-"):
            raise UsageError(f"bpfcheck plugin: unknown option {arg!r} (usage: bpfcheck plugin [MEM-HEX])")
        if mem is not None:
            raise UsageError("bpfcheck plugin: more than one memory argument")
        mem = parse_hex(arg, "memory argument")
    code = parse_hex(stdin.read(), "program on stdin")
    try:
        program = decode_program(code)
    except EncodingError as e:
        stderr.write(f"invalid program: {e}\n")
        return 1
    from reference_vm.interpreter import run

    outcome = run(program, mem or None)
    if outcome.ok and outcome.r0 is not None:
        stdout.write(f"{outcome.r0:#x}\n")
        return 0
    message = " ".join(outcome.message.split())
    stderr.write(f"{outcome.error}: {message}\n" if message else f"{outcome.error}\n")
    return 1
