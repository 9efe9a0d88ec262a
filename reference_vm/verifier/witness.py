"""Witness (soundness) mode: run the interpreter and check every concrete state against the
verifier's abstract states.

For an accepted program the verifier records, per pc, the join of the abstract registers of
every state it processed there (``verify(..., collect=True)``). The interpreter then runs the
program step by step (its own ``prepare``/steps, unchanged), and before each instruction every
register that is live there (static liveness, as the verifier's pruning uses) must lie in the
join: a scalar in the joined tnum and bounds, a stack pointer at a joined frame offset. A
concrete value outside the join is a *violation*: the verifier claimed something about a path
that the program actually takes with another value (an unsound transfer function, refinement or
pruning). An accepted program that faults in the interpreter is reported too.

Pruning is sound for this check because a pruned state is included in a checkpoint whose
continuation was explored and recorded; only dead registers may differ, and those are skipped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..env import Environment
from ..helpers import DEFAULT_HELPERS
from ..insn import RawInsn, decode_program
from ..interpreter import Fault, Machine, prepare
from ..memory import MEM_BASE, STACK_TOP, MemoryFault, standard_memory
from .checker import Joined, VerifierResult, verify
from .state import Reg, T

U64 = (1 << 64) - 1


@dataclass
class WitnessReport:
    verdict: str
    runs: int = 0
    steps: int = 0
    violations: list[str] = field(default_factory=list)
    faults: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations and not self.faults


def check_state(joined: list[Joined], live: int, regs: Sequence[int], fps: Sequence[int]) -> str | None:
    """The first register of ``regs`` outside its join, or None. ``fps`` are the frame pointers
    of the active frames (a stack pointer may point into any of them)."""
    for i in range(11):
        if not live >> i & 1:
            continue
        j = joined[i]
        if j.maybe_uninit or not j.types:
            continue
        v = regs[i] & U64
        if j.types == {T.SCALAR} and j.scalar is not None:
            if not j.scalar.contains(v):
                return f"r{i} = {v:#x} is not in {j.scalar!r}"
        elif j.types == {T.STACK} and j.stack_off is not None:
            lo, hi = j.stack_off
            if not any(lo <= ((v - fp + (1 << 63)) & U64) - (1 << 63) <= hi for fp in fps):
                return f"r{i} = {v:#x} is not a stack pointer at fp{lo:+}..fp{hi:+}"
    return None


def run_witness(
    program: Sequence[RawInsn],
    inputs: Sequence[tuple[int, ...]],
    *,
    prog_type: str = "socket_filter",
    maps: Sequence[Any] = (),
    entry: dict[int, Reg] | None = None,
    budget: int = 100_000,
    result: VerifierResult | None = None,
    mem: bytes | None = None,
) -> WitnessReport:
    """Verify ``program`` (unless ``result`` is given) and, if accepted, run it once per input
    tuple (the initial r1, r2, ...), checking every executed instruction.

    The entry state must describe the inputs: with ``entry`` (e.g. r1/r2 unknown scalars) the
    concrete runs start with those registers set from ``inputs``; with ``mem`` (bpf_conformance's
    convention) r1 points to a copy of it and r2 is its length. Contexts, maps and packets are not
    set up here.
    """
    res = result or verify(program, prog_type=prog_type, maps=maps, entry=entry, collect=True)
    rep = WitnessReport(res.verdict)
    if not res.accepted:
        return rep
    decoded = decode_program(list(program))
    for args in inputs:
        env = Environment(standard_memory(mem))
        m = Machine(env, DEFAULT_HELPERS)
        if mem is not None:
            m.regs[1], m.regs[2] = MEM_BASE, len(mem)
        for k, a in enumerate(args):
            m.regs[1 + k] = a & U64

        m.regs[10] = STACK_TOP
        m.budget = budget
        steps = prepare([("main", decoded)], m)
        pc, count = 0, 0
        rep.runs += 1
        try:
            while True:
                count += 1
                if count > budget:
                    rep.faults.append(f"inputs {args}: budget of {budget} exhausted")
                    break
                joined = res.states.get(pc)
                if joined is None:
                    rep.violations.append(f"inputs {args}: pc {pc} executed but never verified")
                    break
                fps = [m.regs[10]] + [f[5] for f in m.frames]
                bad = check_state(joined, res.live[pc], m.regs, fps)
                if bad is not None:
                    rep.violations.append(f"inputs {args}: pc {pc}: {bad}")
                    break
                pc = steps[pc]()
        except Fault as e:
            rep.faults.append(f"inputs {args}: pc {pc}: fault:{e.kind}: {e}")
        except MemoryFault as e:
            rep.faults.append(f"inputs {args}: pc {pc}: fault:{e.kind}: {e}")
        except Exception as e:  # noqa: BLE001 - the interpreter's private exit exception
            if type(e).__name__ != "_Exit":
                raise
        rep.steps += count
    return rep
