"""JIT compilers from BPF to x86-64 and AArch64 machine code, executed under unicorn.

* :mod:`.common` — guest layout, control block, labels and branch relaxation, basic blocks,
  the translation driver;
* :mod:`.x86_64`, :mod:`.arm64` — one emitter per host instruction form and one lowering per
  instruction family (``LOWERINGS: dict[Kind, lowering]``);
* :mod:`.runtime` — one unicorn engine per architecture, the run loop, helper calls, tail
  calls, bpf_loop callbacks;
* :mod:`.printer` — ``side_by_side`` (BPF next to disassembled native code) and ``coverage``.

:func:`run` and :func:`run_programs` have the signatures of the interpreter's functions of the
same names and return the same :class:`Outcome`, so the interpreter is the oracle for every
run; :func:`runner` adapts :func:`run_programs` to the trampoline model's engine parameter.
"""

from __future__ import annotations

import importlib
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from types import ModuleType

from .. import outcome as oc
from ..env import Environment
from ..errors import EncodingError
from ..helpers import DEFAULT_HELPERS, HelperTable
from ..insn import Insn, decode_program
from ..interpreter import DEFAULT_BUDGET, EMPTY_SLOT_CONSUMES_BUDGET
from ..isa import Kind
from ..memory import MEM_BASE, STACK_TOP, standard_memory
from ..outcome import Outcome
from .common import CannotLower, Compiled, lddw_value, translate_programs

#: Architecture name -> backend module.
ARCHES = {"x86_64": "reference_vm.jit.x86_64", "arm64": "reference_vm.jit.arm64"}
M64 = (1 << 64) - 1

__all__ = ["ARCHES", "CannotLower", "Compiled", "backend", "clear_cache", "compile_program",
           "compile_programs", "run", "run_programs", "runner"]


def backend(arch: str) -> ModuleType:
    """The backend module of ``arch``."""
    if arch not in ARCHES:
        raise ValueError(f"unknown JIT architecture {arch!r} (want one of {sorted(ARCHES)})")
    return importlib.import_module(ARCHES[arch])


def compile_program(program: Sequence[Insn | None], arch: str, *, maps: Sequence[object] = (),
                    ctx_pointers: Mapping[int, int] | None = None, **options: object) -> Compiled:
    """Translate a decoded program (pc-indexed, as from ``decode_program``) for ``arch``.

    ``maps`` resolve pseudo ``lddw`` as the interpreter does; ``ctx_pointers`` are converted
    context fields (absolute address -> pointer); ``options`` are backend options (arm64:
    ``lse``). Raises :class:`CannotLower` for what the backend cannot translate."""
    return _compile([("main", program)], arch, maps, options, ctx_pointers)


def compile_programs(programs: Sequence[tuple[str, Sequence[Insn | None]]], arch: str, *,
                     maps: Sequence[object] = (), ctx_pointers: Mapping[int, int] | None = None,
                     **options: object) -> Compiled:
    """Translate several programs into one image, laid out in one pc space as the interpreter's
    ``run_programs`` lays them out (``Compiled.bases``)."""
    return _compile(programs, arch, maps, options, ctx_pointers)


def _compile(programs: Sequence[tuple[str, Sequence[Insn | None]]], arch: str, maps: Sequence[object],
             options: Mapping[str, object], ctx_pointers: Mapping[int, int] | None) -> Compiled:
    mod = backend(arch)
    try:
        opts = mod.options(**options)
    except TypeError as e:
        raise ValueError(f"{arch}: bad backend options {dict(options)}: {e}") from None
    return translate_programs(mod, programs, maps=maps, options=opts, ctx_pointers=ctx_pointers)


_CACHE: OrderedDict[tuple[object, ...], Compiled] = OrderedDict()
_CACHE_SIZE = 256


def _insn_key(program: Sequence[Insn | None]) -> tuple[object, ...]:
    return tuple((i.op.name, i.dst, i.src, i.off, i.imm) if i is not None else None for i in program)


def _cached_compile(programs: Sequence[tuple[str, Sequence[Insn | None]]], arch: str, maps: Sequence[object],
                    options: Mapping[str, object], ctx_pointers: Mapping[int, int] | None = None) -> Compiled:
    """:func:`compile_programs`, remembering the last images translated, so that running the
    same programs again (many inputs, or a trampoline's several runs) translates them (and
    unicorn translates their code) once. What the maps contribute to the code is the value of
    each pseudo ``lddw``, so those values are part of the key, not the maps themselves."""
    if len(programs) == 1 and not maps and not ctx_pointers:  # the common case, kept cheap
        key: tuple[object, ...] = (arch, tuple(sorted(options.items())), programs[0][0],
                                   _insn_key(programs[0][1]))
    else:
        base = 0
        resolved = []
        for _, program in programs:  # pcs of the flat layout, as lddw_value sees them
            resolved += [lddw_value(i, base + pc, maps)[0] for pc, i in enumerate(program)
                         if i is not None and i.op.kind is Kind.LDDW and i.src]
            base += len(program) + 1
        key = (arch, tuple(sorted(options.items())), tuple(sorted((ctx_pointers or {}).items())),
               tuple((name, _insn_key(program)) for name, program in programs), tuple(resolved))
    compiled = _CACHE.get(key)
    if compiled is None:
        compiled = _CACHE[key] = _compile(programs, arch, maps, options, ctx_pointers)
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
        empty_slot_consumes_budget: bool = EMPTY_SLOT_CONSUMES_BUDGET,
        timeout: float | None = None) -> Outcome:
    """:func:`reference_vm.interpreter.run`, on the ``arch`` JIT under unicorn.

    r1 points to a copy of ``mem`` and r2 holds its length (r1 = r2 = 0 without ``mem``);
    r10 is the top of the outermost frame. ``compiled`` skips the translation (it must be the
    same program, translated with the same maps); ``options`` are backend options (arm64:
    ``lse``); ``empty_slot_consumes_budget`` is the interpreter's tail-call switch; ``timeout``
    (seconds) ends a run that takes longer with ``Outcome(error="timeout")``."""
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
            compiled = _cached_compile([("main", program)], arch, env.maps, options or {})
        return engine(arch).run(compiled, env, regs, budget=budget, helpers=helpers,
                                empty_slot_consumes_budget=empty_slot_consumes_budget,
                                deadline=_deadline(timeout))
    except CannotLower as e:
        return Outcome(error=oc.UNSUPPORTED, message=str(e))


def _deadline(timeout: float | None) -> float | None:
    return time.monotonic() + timeout if timeout is not None else None


def run_programs(programs: Sequence[tuple[str, Sequence[Insn | None]]], entry: str, env: Environment, *,
                 r1: int = 0, r2: int = 0, budget: int = DEFAULT_BUDGET,
                 helpers: HelperTable = DEFAULT_HELPERS,
                 empty_slot_consumes_budget: bool = EMPTY_SLOT_CONSUMES_BUDGET,
                 ctx_pointers: dict[int, int] | None = None, arch: str = "x86_64",
                 options: Mapping[str, object] | None = None, timeout: float | None = None,
                 deadline: float | None = None) -> Outcome:
    """:func:`reference_vm.interpreter.run_programs` on the ``arch`` JIT: ``entry`` of a set of
    programs sharing ``env``, laid out in one pc space with the interpreter's numbering, so
    ``lddw`` function addresses, tail-call targets and exit pcs agree. ``deadline`` (a
    ``time.monotonic()`` value) or ``timeout`` bound the wall-clock time."""
    from .runtime import engine

    regs = [0] * 11
    regs[1], regs[2], regs[10] = r1 & M64, r2 & M64, STACK_TOP
    if deadline is None:
        deadline = _deadline(timeout)
    try:
        compiled = _cached_compile(programs, arch, env.maps, options or {}, ctx_pointers)
        return engine(arch).run(compiled, env, regs, budget=budget, helpers=helpers,
                                empty_slot_consumes_budget=empty_slot_consumes_budget,
                                entry=compiled.bases[entry], deadline=deadline)
    except CannotLower as e:
        return Outcome(error=oc.UNSUPPORTED, message=str(e))


def runner(arch: str, *, options: Mapping[str, object] | None = None,
           deadline: float | None = None) -> Callable[..., Outcome]:
    """:func:`run_programs` on ``arch`` with the interpreter's signature, for code that takes the
    engine as a parameter (:class:`reference_vm.trampoline.TracingRun`)."""
    def run_on_jit(programs: Sequence[tuple[str, Sequence[Insn | None]]], entry: str, env: Environment,
                   **kwargs: object) -> Outcome:
        return run_programs(programs, entry, env, arch=arch, options=options, deadline=deadline,
                            **kwargs)  # type: ignore[arg-type]
    return run_on_jit
