"""A Linux-compatible static checker for BPF programs, with exhaustively checked abstract domains.

* :mod:`.tnum`, :mod:`.ranges` — the kernel's tnum and scalar-bounds domains (width-generic);
* :mod:`.soundness` — exhaustive soundness checks at small widths;
* :mod:`.structure` — the passes before abstract interpretation (CFG, opcodes, lddw, subprograms);
* :mod:`.state`, :mod:`.checker` — abstract interpretation over all paths with pruning;
* :mod:`.progtypes` — context access rules and helper availability per program type;
* :mod:`.witness` — run the interpreter and check concrete states against the abstract ones.

Entry point: :func:`verify`. docs/verifier.md lists what is modelled and what is not.
"""

from .checker import VerifierResult, verify

__all__ = ["VerifierResult", "verify"]
