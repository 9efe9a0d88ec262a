"""JIT compilers from BPF to x86-64 and AArch64 machine code, executed under unicorn.

* :mod:`.common` — guest layout, control block, labels and branch relaxation, basic blocks,
  the translation driver;
* :mod:`.x86_64`, :mod:`.arm64` — one emitter per host instruction form and one lowering per
  instruction family (``LOWERINGS: dict[Kind, lowering]``);
* :mod:`.runtime` — one unicorn engine per architecture, the run loop, helper calls;
* :mod:`.printer` — ``side_by_side`` (BPF next to disassembled native code) and ``coverage``.

:func:`run` has the interpreter's signature and returns the same :class:`Outcome`, so the
interpreter is the oracle for every run.
"""

from __future__ import annotations

import importlib
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from types import ModuleType

from .. import outcome as oc
from ..env import Environment
from ..errors import EncodingError
from ..helpers import DEFAULT_HELPERS, HelperTable
from ..insn import Insn, decode_program
from ..interpreter import DEFAULT_BUDGET, EMPTY_SLOT_CONSUMES_BUDGET
from ..memory import MEM_BASE, STACK_TOP, standard_memory
from ..outcome import Outcome
from .common import CannotLower, Compiled, translate

#: Architecture name -> backend module.
ARCHES = {"x86_64": "reference_vm.jit.x86_64", "arm64": "reference_vm.jit.arm64"}

__all__ = ["ARCHES", "CannotLower", "Compiled", "backend", "clear_cache", "compile_program", "run"]


def backend(arch: str) -> ModuleType:
    """The backend module of ``arch``."""
    if arch not in ARCHES:
        raise ValueError(f"unknown JIT architecture {arch!r} (want one of {sorted(ARCHES)})")
    return importlib.import_module(ARCHES[arch])


def compile_program(program: Sequence[Insn | None], arch: str, *, maps: Sequence[object] = (),
                    **options: object) -> Compiled:
    """Translate a decoded program (pc-indexed, as from ``decode_program``) for ``arch``.

    ``maps`` resolve pseudo ``lddw`` as the interpreter does; ``options`` are backend options
    (arm64: ``lse``). Raises :class:`CannotLower` for what the backend cannot translate."""
    return _compile(program, arch, maps, options)


def _compile(program: Sequence[Insn | None], arch: str, maps: Sequence[object],
             options: Mapping[str, object]) -> Compiled:
    mod = backend(arch)
    try:
        opts = mod.options(**options)
    except TypeError as e:
        raise ValueError(f"{arch}: bad backend options {dict(options)}: {e}") from None
    return translate(mod, program, maps=maps, options=opts)


_CACHE: OrderedDict[tuple[object, ...], Compiled] = OrderedDict()
_CACHE_SIZE = 256


def _cached_compile(program: Sequence[Insn | None], arch: str, maps: Sequence[object],
                    options: Mapping[str, object]) -> Compiled:
    """:func:`compile_program`, remembering the last programs translated without maps, so that
    running one program on many inputs translates it (and unicorn translates its code) once."""
    if maps:
        return _compile(program, arch, maps, options)
    key = (arch, tuple(sorted(options.items())),
           tuple((i.op.name, i.dst, i.src, i.off, i.imm) if i is not None else None for i in program))
    compiled = _CACHE.get(key)
    if compiled is None:
        compiled = _CACHE[key] = _compile(program, arch, (), options)
        if len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    else:
        _CACHE.move_to_end(key)
    return compiled


def clear_cache() -> None:
    """Forget the translations :func:`run` remembers."""
    _CACHE.clear()


def run(program: Sequence[Insn | None] | bytes | bytearray, mem: bytes | None = None, *,
        arch: str = "x86_64", budget: int = DEFAULT_BUDGET, helpers: HelperTable = DEFAULT_HELPERS,
        env: Environment | None = None, compiled: Compiled | None = None,
        options: Mapping[str, object] | None = None,
        empty_slot_consumes_budget: bool = EMPTY_SLOT_CONSUMES_BUDGET) -> Outcome:
    """:func:`reference_vm.interpreter.run`, on the ``arch`` JIT under unicorn.

    r1 points to a copy of ``mem`` and r2 holds its length (r1 = r2 = 0 without ``mem``);
    r10 is the top of the outermost frame. ``compiled`` skips the translation (it must be the
    same program, translated with the same maps); ``options`` are backend options (arm64:
    ``lse``); ``empty_slot_consumes_budget`` is the interpreter's tail-call switch."""
    from .runtime import engine

    if isinstance(program, (bytes, bytearray)):
        try:
            program = decode_program(program)
        except EncodingError as e:
            return Outcome(error=oc.rejected("invalid_encoding"), message=str(e))
    if env is None:
        env = Environment(standard_memory(mem))
    regs = [0] * 11
    if mem is not None:
        regs[1], regs[2] = MEM_BASE, len(mem)
    regs[10] = STACK_TOP
    try:
        if compiled is None:
            compiled = _cached_compile(program, arch, env.maps, options or {})
        return engine(arch).run(compiled, env, regs, budget=budget, helpers=helpers,
                                empty_slot_consumes_budget=empty_slot_consumes_budget)
    except CannotLower as e:
        return Outcome(error=oc.UNSUPPORTED, message=str(e))
