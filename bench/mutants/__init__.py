"""Seeded bugs ("mutants") of our own interpreter, JITs and verifier, each re-creating a
historical bug class.

A mutant is a small textual patch of one function (or method: ``Class.method``) of one module,
compiled *in memory*: the function's source is read with :mod:`inspect`, ``old`` is replaced by
``new`` (it must occur exactly ``count`` times, otherwise the mutant is *stale* and says so),
the result is compiled in the module's namespace, and :meth:`Mutant.applied` swaps it in — the
module (or class) attribute and every registry that holds the original function
(``_FAMILIES``, ``LOWERINGS``) — and back out. The real files are never edited. Module-level
tables built from a patched function at import (``interpreter._ALU``) are rebuilt while the
mutant is applied (``rebuild``).

``bench/mutants/run.py`` reports which mutants the conformance corpora kill and which a short
differential campaign kills. The catalog is :mod:`bench.mutants.catalog`.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from types import FunctionType, ModuleType
from typing import Any


class MutantStale(Exception):
    """The code a mutant patches has changed: its ``old`` text is not there (exactly) any more."""


@dataclass(frozen=True)
class Mutant:
    name: str
    target: str  # the fuzz target it breaks: "interpreter", "jit-x86_64", "jit-arm64", "verifier"
    module: str
    function: str
    old: str
    new: str
    bug_class: str
    history: str  # the historical bug it re-creates
    count: int = 1
    rebuild: tuple[tuple[str, str], ...] = ()  # (module attribute, expression) to re-evaluate

    def _owner(self, mod: ModuleType) -> tuple[Any, str]:
        """The object holding the function (the module, or a class for ``Class.method``)."""
        if "." in self.function:
            cls, name = self.function.split(".", 1)
            return getattr(mod, cls), name
        return mod, self.function

    def _compile(self) -> tuple[ModuleType, FunctionType, FunctionType]:
        mod = importlib.import_module(self.module)
        owner, name = self._owner(mod)
        orig = owner.__dict__[name] if owner is not mod else getattr(mod, name)
        func = orig.__func__ if isinstance(orig, staticmethod) else orig
        src = textwrap.dedent(inspect.getsource(func))
        found = src.count(self.old)
        if found != self.count:
            raise MutantStale(
                f"mutant {self.name}: {self.module}.{self.function} contains the patched "
                f"text {found} times (want {self.count}): the code changed, update the mutant"
            )
        ns: dict[str, Any] = {}
        exec(compile(src.replace(self.old, self.new), f"<mutant {self.name}>", "exec"), mod.__dict__, ns)
        new = ns[name]
        return mod, orig, new  # a staticmethod stays one (the decorator is part of the source)

    def check(self) -> None:
        """Raise :class:`MutantStale` if the patch no longer applies."""
        self._compile()

    @contextlib.contextmanager
    def applied(self) -> Iterator[None]:
        mod, orig, new = _COMPILED.get(self.name) or _COMPILED.setdefault(self.name, self._compile())
        owner, name = self._owner(mod)
        swaps: list[tuple[Any, Any, Any, bool]] = [(owner, name, orig, True)]
        for value in list(vars(mod).values()):
            if isinstance(value, dict):
                for k, v in list(value.items()):
                    if v is orig:
                        swaps.append((value, k, orig, False))
        saved_rebuild = [(attr, getattr(mod, attr)) for attr, _ in self.rebuild]
        _reset_jit_caches()
        try:
            for obj, key, _, is_attr in swaps:
                if is_attr:
                    setattr(obj, key, new)
                else:
                    obj[key] = new
            for attr, expr in self.rebuild:
                setattr(mod, attr, eval(expr, mod.__dict__))  # noqa: S307 - our own catalog text
            yield
        finally:
            for obj, key, old, is_attr in swaps:
                if is_attr:
                    setattr(obj, key, old)
                else:
                    obj[key] = old
            for attr, value in saved_rebuild:
                setattr(mod, attr, value)
            _reset_jit_caches()


_COMPILED: dict[str, tuple[ModuleType, FunctionType, FunctionType]] = {}


def _reset_jit_caches() -> None:
    """Translations and limit tables made with (or without) a mutant must not be reused."""
    import sys

    jit = sys.modules.get("reference_vm.jit")
    if jit is not None:
        jit.clear_cache()
    runtime = sys.modules.get("reference_vm.jit.runtime")
    if runtime is not None:
        for eng in runtime._ENGINES.values():
            eng._limits.clear()


def all_mutants() -> list[Mutant]:
    from .catalog import MUTANTS

    return list(MUTANTS)


def get_mutant(name: str) -> Mutant:
    for m in all_mutants():
        if m.name == name:
            return m
    from reference_vm.errors import UsageError

    raise UsageError(f"unknown mutant {name!r} (see bench/mutants/catalog.py)")
