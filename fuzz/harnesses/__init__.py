"""atheris harnesses: each feeds bytes to one reader or engine and checks that only the
documented error types escape (docs/fuzzing.md).

=============  ============================================  ==========================================
harness        what it runs                                  allowed to raise
=============  ============================================  ==========================================
decoder        ``decode_program`` (+ encode round trip)      ``EncodingError``
assembler      ``assemble`` (+ disassemble round trip)       ``AsmError``, ``EncodingError``
data           ``.data`` reader + ``case_from_data``         ``BpfCheckError`` (CaseFormatError, AsmError)
yaml           YAML whole-program case reader + assembly     ``BpfCheckError``
btf            ``reference_vm.btf.parse``                    ``BtfError``
elf            ``reference_vm.elf.load_elf`` (if present)    ``ElfError``
interpreter    raw bytes and generated programs, run         nothing (every run ends in an Outcome)
jit            generated programs on both JITs               nothing
verifier       raw bytes; verifier-aware programs and whole  nothing; and no soundness or witness
               cases through the oracle's verifier checks    finding
=============  ============================================  ==========================================

Run one: ``python -m fuzz.harnesses decoder --seconds 20``; all, each in its own process:
``python -m fuzz.harnesses --all --seconds 20`` (what ``tox -e fuzz-smoke`` does). Without atheris
(``--plain``) the same checks run on seeded random inputs.
"""

from __future__ import annotations

HARNESSES = ("decoder", "assembler", "data", "yaml", "btf", "elf", "interpreter", "jit", "verifier")
