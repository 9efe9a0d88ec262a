"""The implementations a campaign compares, prepared once per program and run once per input.

``prepare(program, budget)`` does the per-program work (the interpreter builds its steps, a JIT
translates the program, a plugin does nothing) and returns an object whose ``run(mem)`` gives
the full :class:`~reference_vm.outcome.Outcome` for one input. That split is what makes "same
program, many inputs" cheap: the JIT code is translated (by us and by unicorn) once.

Spec strings (``--targets``): ``interpreter``, ``jit-x86_64``, ``jit-arm64``, ``jit-arm64-llsc``
(arm64 without LSE atomics), ``plugin:PATH[ ARGS]`` (a bpf_conformance plugin: r0 and
"error or not" only), ``mutant:NAME`` (the interpreter, a JIT or the verifier with one seeded
bug of :mod:`bench.mutants` applied: for testing the fuzzer itself).

Two targets are not execution engines and have a ``role``:

``verifier`` (``verifier-capbpf``: the CAP_BPF-only mode), role ``"verifier"``
    bpfcheck's verifier (:mod:`reference_vm.verifier`), run once per program (its verdict is
    cached per input length; all inputs of a generated case have one length). The program is
    verified as a ``.data`` case is (``witness_data``): a socket filter whose r1 points to a map
    value of ``len(mem)`` bytes and whose r2 is that length. The oracle (:mod:`fuzz.oracle`)
    turns its verdict into soundness and witness checks.
``kernel`` / ``kernel-capbpf``, role ``"kernel"``, only with ``--allow-kernel``
    the live kernel through ``bpf(2)`` (:class:`conformance.targets.kernel.KernelTarget`). A
    program is loaded **only** after bpfcheck's verifier accepted it (root mode) exactly as the
    kernel target loads it (wired: :func:`conformance.targets.verifier.verify_data`); the gate is
    inside this target, so no list of targets can bypass it. Where ``bpf()`` is refused the
    target is refused with the probe's reason.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

from reference_vm import interpreter
from reference_vm import outcome as oc
from reference_vm.env import Environment
from reference_vm.errors import UsageError
from reference_vm.helpers import DEFAULT_HELPERS, HelperTable
from reference_vm.insn import Insn
from reference_vm.isa import Kind, Use
from reference_vm.memory import MEM_BASE, STACK_TOP, standard_memory
from reference_vm.outcome import Outcome

#: Every field of an Outcome that the in-process targets observe and the oracle compares.
FULL = ("error", "r0", "regs", "memory", "insn_count", "exit_pc", "helper_calls", "maps", "ringbuf", "trace")
#: What a bpf_conformance plugin can tell: whether it failed, and r0.
PLUGIN_FIELDS = ("okness", "r0")

Program = Sequence[Insn | None]


class Prepared(Protocol):
    def run(self, mem: bytes | None) -> Outcome: ...


class FuzzTarget(Protocol):
    name: str
    fields: tuple[str, ...]

    def prepare(self, program: Program, budget: int) -> Prepared: ...


class LazyEnvironment(Environment):
    """An :class:`Environment` whose random generator is made on first use: seeding one costs
    about 6 us, a third of a JIT run, and few runs call bpf_get_prandom_u32. Same seed, same
    numbers (the interpreter fast path's self-check compares with a plain Environment)."""

    def __post_init__(self) -> None:
        pass

    def __getattr__(self, name: str) -> Any:
        if name == "prandom":
            value = random.Random(self.seed)
            self.prandom = value
            return value
        raise AttributeError(name)


class FastPathDrift(AssertionError):
    """The interpreter's reusable fast path disagreed with ``interpreter.run``: the interpreter's
    internals changed under it. Reported as a finding of the ``interpreter`` target."""


class _Unsupported:
    def __init__(self, message: str) -> None:
        self.message = message

    def run(self, mem: bytes | None) -> Outcome:
        return Outcome(error=oc.UNSUPPORTED, message=self.message)


def _initial_regs(mem: bytes | None) -> list[int]:
    regs = [0] * 11
    if mem is not None:
        regs[1], regs[2] = MEM_BASE, len(mem)
    regs[10] = STACK_TOP
    return regs


def same_outcome(a: Outcome, b: Outcome, fields: Sequence[str] = FULL) -> bool:
    return all(getattr(a, f) == getattr(b, f) for f in fields)


# --- The interpreter --------------------------------------------------------------------------


class _InterpreterPrepared:
    """The interpreter's steps built once and re-run per input: the machine's registers, frames
    and memory are reset in place (the steps hold references to them), the environment is new
    for every run. The first run of every program is checked against ``interpreter.run``."""

    def __init__(self, program: Program, budget: int, helpers: HelperTable, has_mem: bool) -> None:
        self.program, self.budget, self.helpers, self.has_mem = program, budget, helpers, has_mem
        self.memory = standard_memory(b"" if has_mem else None)
        self.stack = self.memory.region("stack")
        self.memregion = self.memory.region("mem") if has_mem else None
        self.zero = bytes(len(self.stack.data))
        m = interpreter.Machine(Environment(self.memory), helpers)
        self.steps = interpreter.prepare([("main", program)], m)
        self.m = m
        self.saved: dict[str, Any] = {}
        for slot in type(m).__slots__:
            value = getattr(m, slot)
            if isinstance(value, (list, dict)) and slot != "steps":
                self.saved[slot] = value.copy()
            elif isinstance(value, (int, bool)) or value is None:
                self.saved[slot] = value
        self.checked = False

    def run(self, mem: bytes | None) -> Outcome:
        if (mem is not None) != self.has_mem:
            return interpreter.run(self.program, mem, budget=self.budget, helpers=self.helpers)
        m = self.m
        for slot, value in self.saved.items():
            if slot == "helper_calls":
                m.helper_calls = []  # handed to the Outcome: a new list per run
            elif isinstance(value, list):
                getattr(m, slot)[:] = value
            elif isinstance(value, dict):
                d = getattr(m, slot)
                d.clear()
                d.update(value)
            else:
                setattr(m, slot, value)
        self.stack.data[:] = self.zero
        if self.memregion is not None:
            self.memregion.data[:] = mem  # type: ignore[index,assignment]
        m.env = LazyEnvironment(self.memory)
        m.regs[:] = _initial_regs(mem)
        out = interpreter._execute(m, self.steps, 0, self.budget)
        if not self.checked:
            self.checked = True
            plain = interpreter.run(self.program, mem, budget=self.budget, helpers=self.helpers)
            if not same_outcome(out, plain):
                diff = [f for f in FULL if getattr(out, f) != getattr(plain, f)]
                raise FastPathDrift(f"the interpreter fast path differs from interpreter.run in {diff}")
        return out


class _InterpreterPlain:
    def __init__(self, program: Program, budget: int, helpers: HelperTable) -> None:
        self.program, self.budget, self.helpers = program, budget, helpers

    def run(self, mem: bytes | None) -> Outcome:
        return interpreter.run(self.program, mem, budget=self.budget, helpers=self.helpers)


class InterpreterTarget:
    name = "interpreter"
    fields = FULL

    def __init__(self, helpers: HelperTable = DEFAULT_HELPERS, fast: bool = True) -> None:
        self.helpers = helpers
        self.fast = fast and all(hasattr(interpreter, a) for a in ("Machine", "prepare", "_execute"))

    def prepare(self, program: Program, budget: int, has_mem: bool = True) -> Prepared:
        if self.fast:
            return _InterpreterPrepared(program, budget, self.helpers, has_mem)
        return _InterpreterPlain(program, budget, self.helpers)

    def run_whole(self, case: Any, mem: bytes) -> Outcome:
        """A whole case (:mod:`fuzz.wholeprog`): several programs and maps, one input."""
        return case.run("interpreter", mem)  # type: ignore[no-any-return]


# --- The JITs ---------------------------------------------------------------------------------


class _JitPrepared:
    def __init__(self, compiled: Any, arch: str, budget: int, helpers: HelperTable) -> None:
        from reference_vm.jit.runtime import engine

        self.compiled, self.budget, self.helpers = compiled, budget, helpers
        self.engine = engine(arch)

    def run(self, mem: bytes | None) -> Outcome:
        from reference_vm.jit import CannotLower

        env = LazyEnvironment(standard_memory(mem))
        try:
            return self.engine.run(
                self.compiled, env, _initial_regs(mem), budget=self.budget, helpers=self.helpers
            )
        except CannotLower as e:
            return Outcome(error=oc.UNSUPPORTED, message=str(e))


class JitTarget:
    fields = FULL

    def __init__(
        self,
        arch: str,
        options: dict[str, object] | None = None,
        name: str | None = None,
        helpers: HelperTable = DEFAULT_HELPERS,
    ) -> None:
        from reference_vm import jit

        if arch not in jit.ARCHES:
            raise UsageError(f"unknown JIT architecture {arch!r}")
        self.arch, self.options, self.helpers = arch, dict(options or {}), helpers
        self.name = name or f"jit-{arch}"

    def prepare(self, program: Program, budget: int, has_mem: bool = True) -> Prepared:
        from reference_vm.jit import CannotLower, compile_program

        try:
            compiled = compile_program(program, self.arch, **self.options)  # type: ignore[arg-type]
        except CannotLower as e:
            return _Unsupported(str(e))
        return _JitPrepared(compiled, self.arch, budget, self.helpers)

    def run_whole(self, case: Any, mem: bytes) -> Outcome:
        return case.run(self.arch, mem, self.options)  # type: ignore[no-any-return]


# --- External plugins -----------------------------------------------------------------------


class _PluginPrepared:
    def __init__(self, target: Any, program: Program, timeout: float) -> None:
        from conformance.case import Case

        slots = tuple(raw for i in program if i is not None for raw in i.raw())
        self.make = lambda mem: Case(name="fuzz", path="<fuzz>", program=slots, mem=mem)
        self.target, self.timeout = target, timeout

    def run(self, mem: bytes | None) -> Outcome:
        return self.target.run(self.make(mem), self.timeout)  # type: ignore[no-any-return]


class PluginFuzzTarget:
    """A bpf_conformance plugin (one process per run): compared on r0 and ok/error only."""

    fields = PLUGIN_FIELDS

    def __init__(self, spec: str, timeout: float = 10.0) -> None:
        from conformance.targets.plugin import PluginTarget

        self.target = PluginTarget.from_spec(spec)
        self.name = self.target.name
        self.timeout = timeout

    def prepare(self, program: Program, budget: int, has_mem: bool = True) -> Prepared:
        return _PluginPrepared(self.target, program, self.timeout)


# --- bpfcheck's verifier ------------------------------------------------------------------------

#: An accepted program that exhausts the campaign's budget is run again with this budget before
#: it counts as "does not terminate" (the verifier bounds the work per path, not a run's length
#: at 4096 instructions).
SOUND_BUDGET = 1_000_000


def verifier_entry(mem_len: int | None) -> tuple[list[Any], dict[int, Any]]:
    """Maps and entry registers with which a generated program is verified: r1 points to a map
    value of ``mem_len`` bytes (``conformance.targets.verifier.witness_data``'s convention), r2 is
    ``mem_len``; without memory r1 = r2 = 0; with an empty input r1 is the (known) address."""
    from reference_vm.maps import MapSpec, MapType
    from reference_vm.verifier.state import MapInfo, Reg, T

    maps: list[Any] = []
    r1, r2 = Reg(), Reg()
    if mem_len:
        maps.append(MapSpec("mem", MapType.ARRAY, 4, mem_len, 1))
        r1.mark_ptr(T.MAP_VALUE, map=MapInfo(0, "mem", 2, "ARRAY", 4, mem_len, 1))
    else:
        r1.mark_known(MEM_BASE if mem_len == 0 else 0)
    r2.mark_known(mem_len or 0)
    return maps, {1: r1, 2: r2}


def raw_slots(program: Program) -> list[Any]:
    return [raw for i in program if i is not None for raw in i.raw()]


class _VerifierPrepared:
    """The verdict for one program, computed on the first run and cached per input length
    (exceptions and timeouts too: the verifier runs once per program)."""

    def __init__(self, program: Program, privileged: bool) -> None:
        self.program, self.privileged = program, privileged
        self.cache: dict[int | None, Outcome | Exception] = {}

    def run(self, mem: bytes | None) -> Outcome:
        key = None if mem is None else len(mem)
        hit = self.cache.get(key)
        if hit is None:
            try:
                hit = self.cache[key] = self._verify(key)
            except Exception as e:
                self.cache[key] = e
                raise
        if isinstance(hit, Exception):
            raise hit
        return hit

    def _verify(self, mem_len: int | None) -> Outcome:
        from reference_vm.verifier import verify

        maps, entry = verifier_entry(mem_len)
        res = verify(
            raw_slots(self.program), maps=maps, entry=entry, privileged=self.privileged, collect=True
        )
        extra = {"result": res, "maps": maps, "entry": entry}
        if res.accepted:
            return Outcome(error=oc.OK, message="accept", extra=extra)
        return Outcome(error=oc.rejected("verifier"), message=res.outcome_text(), extra=extra)


class VerifierFuzzTarget:
    """``verifier``: bpfcheck's verifier as a fuzz target (role ``verifier``, see the module
    docstring and :class:`fuzz.oracle.Oracle`)."""

    role = "verifier"
    fields: tuple[str, ...] = ()

    def __init__(self, privileged: bool = True) -> None:
        import reference_vm.verifier  # noqa: F401 - an ImportError is a usage error below

        self.privileged = privileged
        self.name = "verifier" if privileged else "verifier-capbpf"

    def prepare(self, program: Program, budget: int, has_mem: bool = True) -> Prepared:
        return _VerifierPrepared(program, self.privileged)

    def verify_whole(self, case: Any) -> Outcome:
        """Every program of a whole case (:meth:`fuzz.wholeprog.WholeCase.verify`)."""
        name, res = case.verify(self.privileged)
        if name is None:
            return Outcome(error=oc.OK, message="accept", extra={"result": res})
        return Outcome(
            error=oc.rejected("verifier"), message=f"{name}: {res.outcome_text()}", extra={"result": res}
        )


# --- The live kernel (only with --allow-kernel, only what our verifier accepts) -----------------


def _stack_depth(program: Program) -> int:
    """Bytes of the main frame a program may touch, statically: the lowest r10-relative offset
    of a memory access, or of ``rX = r10; rX += -N`` (helper buffers); at most 512."""
    low, prev = 0, None
    for i in program:
        if i is None:
            continue
        shape = i.op.shape
        if (shape.dst is Use.BASE and i.dst == 10) or (shape.src is Use.BASE and i.src == 10):
            low = min(low, i.off)
        if i.op.name == "add64_imm" and prev is not None and prev.op.name == "mov64_reg":
            if prev.src == 10 and prev.dst == i.dst:
                low = min(low, i.imm)
        prev = i
    return min(512, (-low + 7) // 8 * 8)


def _zero_stack_prefix(depth: int) -> list[Any]:
    """``*(u64 *)(r10 - 8k) = 0`` over the ``depth`` bytes the program uses: root may read
    uninitialised stack, which holds whatever the kernel left there (kernel pointers, seen in
    the first --allow-kernel run) where our engines have zeros; the prefix makes it defined
    without making the frame deeper than the program's own (the combined-stack limit)."""
    from reference_vm.isa import BY_NAME

    stdw = BY_NAME["stdw"]
    return [raw for k in range(1, depth // 8 + 1) for raw in Insn(stdw, dst=10, off=-8 * k, imm=0).raw()]


class _KernelPrepared:
    """What the kernel loads: a prefix that zeroes the main frame's stack, then the program
    (relative jumps and calls are unaffected; the verifier gate checks exactly this code)."""

    def __init__(self, target: Any, program: Program, capbpf: bool, timeout: float) -> None:
        self.target, self.capbpf, self.timeout = target, capbpf, timeout
        self.slots = tuple(_zero_stack_prefix(_stack_depth(program)) + raw_slots(program))
        # helpers (values differ by design) and callee frames (their stacks are not zeroed):
        # compared on ok/error only
        calls = (Kind.CALL, Kind.CALLX, Kind.CALL_LOCAL)
        self.helpers = any(i is not None and i.op.kind in calls for i in program)
        self.gates: dict[tuple[int | None, bool], Any] = {}

    def _verdict(self, case: Any, mem: bytes | None, privileged: bool) -> Any:
        from conformance.targets.verifier import verify_data

        key = (None if mem is None else len(mem), privileged)
        if key not in self.gates:
            self.gates[key] = verify_data(case, privileged)[0]
        return self.gates[key]

    def run(self, mem: bytes | None) -> Outcome:
        from conformance.case import Case
        from conformance.kernel.harness import refusal

        case = Case(name="fuzz", path="<fuzz>", program=self.slots, mem=mem)
        gate = self._verdict(case, mem, True)
        if gate.verdict != "accept":  # the safety rule: never load what our verifier rejects
            return Outcome(error=oc.UNSUPPORTED, message=f"not loaded: bpfcheck's verifier: {gate.text()}")
        reason = refusal(case)
        if reason is not None:
            return Outcome(error=oc.UNSUPPORTED, message=reason)
        ours = self._verdict(case, mem, False) if self.capbpf else gate
        out: Outcome = self.target.run(case, self.timeout)
        out.extra["ours"] = ours.text()
        out.extra["ours_accepts"] = ours.verdict == "accept"
        out.extra["compare"] = ("okness",) if self.helpers else ("okness", "r0")
        return out


class KernelFuzzTarget:
    """``kernel`` / ``kernel-capbpf`` (role ``kernel``): see the module docstring."""

    role = "kernel"
    fields = ("okness", "r0")

    def __init__(self, capbpf: bool = False, timeout: float = 10.0) -> None:
        from conformance.targets.kernel import KernelTarget

        self.target = KernelTarget(capbpf=capbpf)
        self.capbpf, self.timeout = capbpf, timeout
        self.name = self.target.name

    def unavailable_reason(self) -> str | None:
        """The probe's reason where ``bpf()`` cannot be used here (probed on first call)."""
        return self.target.unavailable_reason()  # type: ignore[no-any-return]

    def prepare(self, program: Program, budget: int, has_mem: bool = True) -> Prepared:
        return _KernelPrepared(self.target, program, self.capbpf, self.timeout)


# --- Mutants (seeded bugs, for testing the fuzzer) ------------------------------------------


class _PatchedPrepared:
    def __init__(self, inner: Prepared, patch: Callable[[], contextlib.AbstractContextManager[Any]]) -> None:
        self.inner, self.patch = inner, patch

    def run(self, mem: bytes | None) -> Outcome:
        with self.patch():
            return self.inner.run(mem)


class MutantTarget:
    """A built-in target with one mutant of :mod:`bench.mutants` applied while it prepares and
    runs (and only then: the other targets in the same process stay unmutated)."""

    def __init__(self, mutant_name: str) -> None:
        self.mutant = mutants_module().get_mutant(mutant_name)
        self.base: Any = make_target(self.mutant.target)
        self.name = f"mutant:{mutant_name}"
        self.fields = self.base.fields
        if role(self.base) is not None:
            self.role = role(self.base)

    def prepare(self, program: Program, budget: int, has_mem: bool = True) -> Prepared:
        with self.mutant.applied():
            inner = self.base.prepare(program, budget, has_mem)
        return _PatchedPrepared(inner, self.mutant.applied)

    def __getattr__(self, name: str) -> Any:
        """``run_whole`` / ``verify_whole`` of the base target, with the mutant applied."""
        if name not in ("run_whole", "verify_whole"):
            raise AttributeError(name)
        method = getattr(self.base, name)

        def patched(*args: Any) -> Any:
            with self.mutant.applied():
                return method(*args)

        return patched


def mutants_module() -> Any:
    """:mod:`bench.mutants` (a folder of the repository, not an installed package)."""
    import importlib
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    if (root / "bench" / "mutants" / "__init__.py").is_file() and str(root) not in sys.path:
        sys.path.append(str(root))
    try:
        return importlib.import_module("bench.mutants")
    except ImportError as e:
        raise UsageError(f"mutant targets need the repository's bench/mutants folder: {e}") from None


# --- Resolution ---------------------------------------------------------------------------------

KERNEL_REFUSED = (
    "generated programs are sent to the live kernel only with --allow-kernel (and only those "
    "bpfcheck's verifier accepts)"
)
BUILTIN = ("interpreter", "jit-x86_64", "jit-arm64", "jit-arm64-llsc", "verifier", "verifier-capbpf")


def make_target(spec: str, *, allow_kernel: bool = False, plugin_timeout: float = 10.0) -> Any:
    spec = spec.strip()
    if spec == "interpreter":
        return InterpreterTarget()
    if spec == "jit-x86_64":
        return JitTarget("x86_64")
    if spec == "jit-arm64":
        return JitTarget("arm64")
    if spec == "jit-arm64-llsc":
        return JitTarget("arm64", {"lse": False}, name="jit-arm64-llsc")
    if spec.startswith("plugin:"):
        return PluginFuzzTarget(spec[len("plugin:") :], plugin_timeout)
    if spec.startswith("mutant:"):
        return MutantTarget(spec[len("mutant:") :])
    if spec in ("verifier", "verifier-capbpf"):
        return VerifierFuzzTarget(privileged=spec == "verifier")
    if spec in ("kernel", "kernel-capbpf"):
        if not allow_kernel:
            raise UsageError(f"{spec}: {KERNEL_REFUSED}; --allow-kernel was not given")
        return KernelFuzzTarget(capbpf=spec == "kernel-capbpf")
    raise UsageError(
        f"unknown fuzz target {spec!r} (known: {', '.join(BUILTIN)}, kernel and kernel-capbpf with "
        "--allow-kernel, plugin:PATH[ ARGS], mutant:NAME)"
    )


def role(target: Any) -> str | None:
    """``"verifier"``, ``"kernel"`` or None (an execution engine)."""
    return getattr(target, "role", None)


def parse_targets(text: str | Sequence[str], *, allow_kernel: bool = False) -> list[str]:
    """``interpreter,jit-x86_64`` (or a list of such) -> target specs, checked; the first is the
    reference the others are compared with."""
    items: list[str] = []
    for part in [text] if isinstance(text, str) else list(text):
        items += [
            p.strip() for p in (part.split(",") if not part.startswith("plugin:") else [part]) if p.strip()
        ]
    if len(items) < 2:
        raise UsageError("fuzzing needs at least two targets to compare (e.g. interpreter,jit-x86_64)")
    if len(set(items)) != len(items):
        raise UsageError(f"a target is given twice: {', '.join(items)}")
    for spec in items:
        make_target(spec, allow_kernel=allow_kernel) if spec.startswith(("kernel",)) else None
    first = items[0]
    if first in STATIC_SPECS or first.startswith("kernel") or first.startswith("mutant:verifier"):
        raise UsageError(
            f"the first target is the reference and must execute programs ({first!r} does not): "
            "e.g. interpreter,verifier"
        )
    return items


#: Specs of targets that do not execute programs themselves.
STATIC_SPECS = ("verifier", "verifier-capbpf")


@contextlib.contextmanager
def nothing() -> Iterator[None]:
    yield
