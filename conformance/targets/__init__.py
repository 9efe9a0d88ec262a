"""Targets: the implementations under test, all behind one small protocol.

A target turns a :class:`~conformance.case.Case` into an :class:`~reference_vm.outcome.Outcome`.
Built-in targets are registered here by *lazy import strings* (after hypothesis'
``AVAILABLE_PROVIDERS``), so adding one (``jit-x86_64``, ``jit-arm64``, ``kernel``,
``verifier``) is one line in :data:`BUILTIN` and importing bpfcheck never imports them all.
Third-party targets may register through the ``bpfcheck.targets`` entry-point group.
``plugin:PATH[ ARGS]`` is an external bpf_conformance plugin (:mod:`.plugin`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Protocol, cast, runtime_checkable

from reference_vm.errors import UsageError
from reference_vm.outcome import Outcome

from ..case import Case

#: name -> "module:attribute" of a class (or factory) taking no arguments.
BUILTIN: dict[str, str] = {
    "interpreter": "conformance.targets.interpreter:InterpreterTarget",
    "jit-x86_64": "conformance.targets.jit:X86_64Target",
    "jit-arm64": "conformance.targets.jit:Arm64Target",
    "kernel": "conformance.targets.kernel:KernelTarget",
    "kernel-jit": "conformance.targets.kernel_jit:KernelJitTarget",
    "verifier": "conformance.targets.verifier:VerifierTarget",
}
PLUGIN_PREFIX = "plugin:"
ENTRY_POINT_GROUP = "bpfcheck.targets"


@runtime_checkable
class Target(Protocol):
    """What the runner needs from a target.

    ``run`` must not raise for anything the program does: faults, rejections, timeouts and
    crashes are outcomes. Optional members, looked up with ``getattr``:

    ``supports(case) -> str | None``
        A skip reason when the target cannot run ``case`` (SKIP verdict), else ``None``.
    ``in_process: bool``
        True when ``run`` executes Python code in the caller's process; the runner then runs
        it in a worker process it can kill at the timeout.
    ``exact_errors: bool``
        True when the target's error texts are comparable with ``-- error`` texts
        (bpf_conformance plugins); otherwise only the fact of an error is checked.
    """

    name: str

    def run(self, case: Case, timeout: float) -> Outcome: ...


def _load(ref: str) -> object:
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


def _registered() -> dict[str, str]:
    known = dict(BUILTIN)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        known.setdefault(ep.name, ep.value)
    return known


def known_targets() -> dict[str, str]:
    """Registered target names and their import strings, plus the ``plugin:`` form."""
    known = _registered()
    known["plugin:PATH[ ARGS]"] = "conformance.targets.plugin:PluginTarget"
    return known


def get_target(spec: str) -> Target:
    """Resolve ``interpreter``, ``plugin:PATH[ ARGS]`` or another registered name."""
    spec = spec.strip()
    if spec.startswith(PLUGIN_PREFIX):
        from .plugin import PluginTarget

        return PluginTarget.from_spec(spec[len(PLUGIN_PREFIX):])
    known = _registered()
    if spec not in known:
        names = ", ".join(sorted(known) + ["plugin:PATH[ ARGS]"])
        raise UsageError(f"unknown target {spec!r} (known targets: {names})")
    try:
        factory = _load(known[spec])
    except ImportError as e:
        raise UsageError(f"target {spec!r} is not available: {e}") from None
    return cast(Callable[[], Target], factory)()
