"""The helper table: every helper function a program can call, by its Linux id.

One table holds each helper's id and name (include/uapi/linux/bpf.h ``___BPF_FUNC_MAPPER``),
its argument and return types (the verifier reads them) and its implementation (the
interpreter and the JITs' helper trampolines call it). An id that is not in the table is a
fault (``fault:unknown_helper``), never a silent zero.

Implementations take the :class:`~reference_vm.env.Environment` of the run and the five
argument registers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from .env import CLOCK_STEP_NS, Environment

HelperFn = Callable[[Environment, int, int, int, int, int], int]


@dataclass(frozen=True, slots=True)
class HelperDef:
    id: int
    name: str
    fn: HelperFn
    args: tuple[str, ...] = ()  # verifier argument types (Linux bpf_func_proto arg*_type names)
    ret: str = "RET_INTEGER"
    source: str = ""


def _ktime_get_ns(env: Environment, *_: int) -> int:
    """bpf_ktime_get_ns (id 5): monotonic; here a deterministic clock that advances per call."""
    env.clock_ns += CLOCK_STEP_NS
    return env.clock_ns


_DEFS = (
    HelperDef(5, "bpf_ktime_get_ns", _ktime_get_ns, (), "RET_INTEGER",
              "include/uapi/linux/bpf.h: u64 bpf_ktime_get_ns(void)"),
)


@dataclass(frozen=True)
class HelperTable:
    """An immutable id -> :class:`HelperDef` map; build a new one to add helpers."""

    by_id: Mapping[int, HelperDef] = field(default_factory=dict)

    def get(self, helper_id: int) -> HelperDef | None:
        return self.by_id.get(helper_id)

    def with_helpers(self, *defs: HelperDef) -> HelperTable:
        merged = dict(self.by_id)
        merged.update({d.id: d for d in defs})
        return HelperTable(MappingProxyType(merged))


DEFAULT_HELPERS = HelperTable(MappingProxyType({d.id: d for d in _DEFS}))
