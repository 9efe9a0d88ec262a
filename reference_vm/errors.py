"""One exception tree for everything bpfcheck rejects as bad input.

Every error carries where it happened (file, line, pc, field) so that the CLI can print
one line, ``file:line: problem``, and exit with status 2 instead of a traceback.
"""

from __future__ import annotations


class BpfCheckError(Exception):
    """Base of every error raised for bad input (not for bugs in bpfcheck itself)."""

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.file = file
        self.line = line

    def located(self, file: str | None = None, line: int | None = None) -> BpfCheckError:
        """Fill in the location if the raiser did not know it; returns self."""
        if self.file is None:
            self.file = file
        if self.line is None:
            self.line = line
        return self

    def __str__(self) -> str:
        where = ""
        if self.file is not None:
            where = f"{self.file}:{self.line}: " if self.line is not None else f"{self.file}: "
        elif self.line is not None:
            where = f"line {self.line}: "
        return where + self.message


class EncodingError(BpfCheckError):
    """An instruction whose raw encoding is not valid (RFC 9669 §3: reserved fields, unknown opcodes)."""

    def __init__(self, message: str, *, pc: int | None = None, field: str | None = None,
                 value: int | None = None, file: str | None = None, line: int | None = None) -> None:
        if pc is not None:
            message = f"insn {pc}: {message}"
        super().__init__(message, file=file, line=line)
        self.pc = pc
        self.field = field
        self.value = value


class AsmError(BpfCheckError):
    """Assembly text that cannot be assembled."""


class CaseFormatError(BpfCheckError):
    """A malformed case file (bpf_conformance ``.data`` or our YAML format)."""


class UsageError(BpfCheckError):
    """Bad command-line arguments or configuration."""
