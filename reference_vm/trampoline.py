"""BPF trampolines: fentry, fmod_ret and fexit programs around modelled kernel functions.

The kernel on the test machine refuses tracing attachments, so this module reproduces, from the
kernel sources, what ``BPF_PROG_TEST_RUN`` does for a ``BPF_PROG_TYPE_TRACING`` program:

* **The kernel functions** (``net/bpf/test_run.c``): ``bpf_fentry_test1`` .. ``bpf_fentry_test10``,
  ``bpf_modify_return_test`` and ``bpf_modify_return_test2``, with their C signatures and
  bodies (:data:`FUNCTIONS`). The objects their pointer arguments point to (``struct
  bpf_fentry_test_t arg``, ``u32 retval``, ``int b``: locals of ``bpf_prog_test_run_tracing``)
  live in a small read-only region of kernel memory (:data:`KERNEL_BASE`), so programs read
  them with ``bpf_probe_read_kernel`` (helper 113) or, for ``struct`` pointers, a direct load.
* **The test run** (``bpf_prog_test_run_tracing``): for ``fentry``/``fexit`` programs it calls
  test1..test10 with the kernel's arguments, stopping at the first unexpected result (TEST_RUN
  then fails with ``-EFAULT``); for ``fmod_ret`` programs it calls ``bpf_modify_return_test(1,
  &b)`` and ``bpf_modify_return_test2(1, &b, 3, 4, (void *)5, 6, 7)``, counting in
  ``side_effect`` each call after which ``b != 2``; ``retval = ((u32)side_effect << 16) | ret``
  (``ret`` and ``side_effect`` are ``u16``).
* **The trampoline** (``kernel/bpf/trampoline.c`` and ``arch/x86/net/bpf_jit_comp.c``
  ``arch_prepare_bpf_trampoline``): the arguments are stored as a ``u64`` array, the *ctx*
  whose address every program gets in r1; then every fentry program runs; then the fmod_ret
  programs, each seeing the return slot ``ctx[nr_args]`` (zeroed before the first one), and the
  first one whose 64-bit r0 is not 0 stores it there and skips the rest *and* the original
  function (``invoke_bpf_mod_ret``: ``cmp QWORD PTR [rbp-8], 0; jne do_fexit``); otherwise the
  original runs and its return register is stored in the slot; then every fexit program runs
  and sees the slot; the caller gets the slot as the function's return value. Within one kind,
  programs run newest first: ``__bpf_trampoline_link_prog`` inserts with ``hlist_add_head`` and
  ``bpf_trampoline_get_progs`` walks the list from its head.

Register images (the ctx slots): since Linux 6.5 the x86-64 trampoline stores each argument
register whole (``save_args``: ``emit_stx(prog, BPF_DW, ...)``), so a slot holds whatever the
caller left in the register. The x86-64 ABI leaves the upper bits of narrow arguments undefined;
this model takes what clang-built callers do: ``char``/``short``/``int`` values are extended to
32 bits by their C type and the upper 32 bits are zero (every 32-bit register write clears
them), 64-bit and pointer values are stored whole. ``char`` is unsigned: the kernel builds with
``-funsigned-char`` since Linux 6.2. Every argument ``bpf_prog_test_run_tracing`` passes is
a small non-negative constant, for which all of this gives the plain value.

Programs run on :func:`reference_vm.interpreter.run_programs`, all sharing one
:class:`~reference_vm.env.Environment`, so their map and global-variable writes accumulate as
in the kernel. ``docs/trampolines.md`` describes the model and its sources.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from . import outcome as oc
from .env import Environment
from .helpers import DEFAULT_HELPERS, BPF_FUNC_tail_call, HelperTable
from .insn import Insn
from .interpreter import DEFAULT_BUDGET, run_programs
from .memory import Memory, MemoryFault, Region
from .outcome import Outcome
from .program import Program, ProgType

M64 = (1 << 64) - 1
M32 = 0xFFFF_FFFF

#: Kernel memory holding the locals of ``bpf_prog_test_run_tracing`` that the kernel functions
#: get pointers to (a kernel-stack address: vmap stacks live at 0xffffc900'00000000 on x86-64).
KERNEL_BASE = 0xFFFF_C900_0001_0000
#: ``struct bpf_fentry_test_t arg = {}`` (8 bytes: one pointer, NULL).
ARG_ADDR = KERNEL_BASE
#: ``u32 retval = 0`` (passed to ``bpf_fentry_test9``).
RETVAL_ADDR = KERNEL_BASE + 8
#: ``int b = 2`` (passed to ``bpf_modify_return_test`` and ``_test2``).
B_ADDR = KERNEL_BASE + 12
KERNEL_SIZE = 16
KERNEL_REGION = "kernel"
#: The trampoline's u64 argument array (a deeper frame of the same kernel stack); r1 of every
#: program. Mapped for the duration of one traced call.
CTX_BASE = 0xFFFF_C900_0000_F000
CTX_REGION = "tramp_ctx"
#: Linux BPF_MAX_TRAMP_LINKS (include/linux/bpf.h, x86-64): fentry + fmod_ret + fexit links of
#: one trampoline; one more fails with -E2BIG (``__bpf_trampoline_link_prog``).
BPF_MAX_TRAMP_LINKS = 38


class TrampKind(StrEnum):
    """Linux ``enum bpf_tramp_prog_type`` (the three a test run exercises), by SEC() prefix."""

    FENTRY = "fentry"
    FMOD_RET = "fmod_ret"
    FEXIT = "fexit"


# --- C types and the modelled kernel functions -------------------------------------------

@dataclass(frozen=True)
class CType:
    """A scalar C type as the x86-64 kernel sees it: width, signedness, pointer or not."""

    name: str
    bits: int
    signed: bool = False
    pointer: bool = False

    def value(self, raw: int) -> int:
        """The C value held in the low ``bits`` of ``raw`` (a conversion to this type)."""
        v = raw & ((1 << self.bits) - 1)
        if self.signed and v >> (self.bits - 1):
            v -= 1 << self.bits
        return v

    def register(self, value: int) -> int:
        """The 64-bit register image of ``value`` passed or returned as this type.

        Narrow types are extended to 32 bits by their signedness and zero above (module
        docstring); 64-bit types and pointers are stored whole.
        """
        v = self.value(value)
        return v & (M64 if self.bits == 64 else M32)


INT = CType("int", 32, signed=True)
U32 = CType("u32", 32)
SHORT = CType("short", 16, signed=True)
CHAR = CType("char", 8)  # unsigned: -funsigned-char (Linux >= 6.2)
U64 = CType("u64", 64)
PTR = CType("void *", 64, pointer=True)


@dataclass(frozen=True)
class KernelFunction:
    """A traceable kernel function of ``net/bpf/test_run.c``.

    ``body`` gets the run's memory and the arguments as C values and returns the result before
    its conversion to ``ret``; ``modifiable`` marks the functions fmod_ret may attach to (the
    ``bpf_test_modify_return_ids`` BTF set registered with ``register_btf_fmodret_id_set``).
    """

    name: str
    params: tuple[CType, ...]
    ret: CType
    body: Callable[[Memory, tuple[int, ...]], int]
    signature: str
    modifiable: bool = False

    @property
    def nr_args(self) -> int:
        return len(self.params)

    def call(self, memory: Memory, args: Sequence[int]) -> int:
        """Run the original function on C-typed ``args``; returns the C value of its result."""
        values = tuple(t.value(a) for t, a in zip(self.params, args, strict=True))
        return self.ret.value(self.body(memory, values))


def _modify_b(memory: Memory, b: int) -> int:
    """``*b += 1; return *b;`` on the kernel object ``b`` points to."""
    new = INT.value(memory.load(b, 4) + 1)
    _kernel_store(memory, b, 4, new)
    return new


def _kernel_store(memory: Memory, addr: int, size: int, value: int) -> None:
    """A store by kernel code: allowed in the read-only (to BPF) kernel region."""
    for r in memory.regions:
        if r.start <= addr and addr + size <= r.end:
            r.data[addr - r.start:addr - r.start + size] = (value & ((1 << (8 * size)) - 1)).to_bytes(
                size, "little")
            return
    raise MemoryFault("oob_write", addr, size, " (kernel function store)")


def _f(name: str, params: tuple[CType, ...], ret: CType, body: Callable[[Memory, tuple[int, ...]], int],
       signature: str, modifiable: bool = False) -> KernelFunction:
    return KernelFunction(name, params, ret, body, signature, modifiable)


FUNCTIONS: dict[str, KernelFunction] = {f.name: f for f in (
    _f("bpf_fentry_test1", (INT,), INT, lambda m, a: a[0] + 1,
       "int bpf_fentry_test1(int a) { return a + 1; }", modifiable=True),
    _f("bpf_fentry_test2", (INT, U64), INT, lambda m, a: a[0] + a[1],
       "int bpf_fentry_test2(int a, u64 b) { return a + b; }"),
    _f("bpf_fentry_test3", (CHAR, INT, U64), INT, lambda m, a: a[0] + a[1] + a[2],
       "int bpf_fentry_test3(char a, int b, u64 c) { return a + b + c; }"),
    _f("bpf_fentry_test4", (PTR, CHAR, INT, U64), INT, lambda m, a: a[0] + a[1] + a[2] + a[3],
       "int bpf_fentry_test4(void *a, char b, int c, u64 d) { return (long)a + b + c + d; }"),
    _f("bpf_fentry_test5", (U64, PTR, SHORT, INT, U64), INT, lambda m, a: sum(a),
       "int bpf_fentry_test5(u64 a, void *b, short c, int d, u64 e) "
       "{ return a + (long)b + c + d + e; }"),
    _f("bpf_fentry_test6", (U64, PTR, SHORT, INT, PTR, U64), INT, lambda m, a: sum(a),
       "int bpf_fentry_test6(u64 a, void *b, short c, int d, void *e, u64 f) "
       "{ return a + (long)b + c + d + (long)e + f; }"),
    _f("bpf_fentry_test7", (PTR,), INT, lambda m, a: a[0],
       "int bpf_fentry_test7(struct bpf_fentry_test_t *arg) { return (long)arg; }"),
    _f("bpf_fentry_test8", (PTR,), INT, lambda m, a: m.load(a[0], 8),
       "int bpf_fentry_test8(struct bpf_fentry_test_t *arg) { return (long)arg->a; }"),
    _f("bpf_fentry_test9", (PTR,), U32, lambda m, a: m.load(a[0], 4),
       "u32 bpf_fentry_test9(u32 *a) { return *a; }"),
    _f("bpf_fentry_test10", (PTR,), INT, lambda m, a: a[0],
       "int bpf_fentry_test10(const void *a) { return (long)a; }"),
    _f("bpf_modify_return_test", (INT, PTR), INT, lambda m, a: a[0] + _modify_b(m, a[1]),
       "int bpf_modify_return_test(int a, int *b) { *b += 1; return a + *b; }", modifiable=True),
    _f("bpf_modify_return_test2", (INT, PTR, SHORT, INT, PTR, CHAR, INT), INT,
       lambda m, a: a[0] + _modify_b(m, a[1]) + a[2] + a[3] + a[4] + a[5] + a[6],
       "int bpf_modify_return_test2(int a, int *b, short c, int d, void *e, char f, int g) "
       "{ *b += 1; return a + *b + c + d + (long)e + f + g; }", modifiable=True),
)}

#: ``bpf_prog_test_run_tracing``, BPF_TRACE_FENTRY / BPF_TRACE_FEXIT: the calls in order with
#: their arguments and the result each must return (the first mismatch fails with -EFAULT).
FENTRY_SEQUENCE: tuple[tuple[str, tuple[int, ...], int], ...] = (
    ("bpf_fentry_test1", (1,), 2),
    ("bpf_fentry_test2", (2, 3), 5),
    ("bpf_fentry_test3", (4, 5, 6), 15),
    ("bpf_fentry_test4", (7, 8, 9, 10), 34),
    ("bpf_fentry_test5", (11, 12, 13, 14, 15), 65),
    ("bpf_fentry_test6", (16, 17, 18, 19, 20, 21), 111),
    ("bpf_fentry_test7", (0,), 0),
    ("bpf_fentry_test8", (ARG_ADDR,), 0),
    ("bpf_fentry_test9", (RETVAL_ADDR,), 0),
    ("bpf_fentry_test10", (0,), 0),
)


# --- Attachment ------------------------------------------------------------------------

class AttachError(Exception):
    """A program that Linux would not load or attach; ``error`` is the Outcome error class."""

    def __init__(self, error: str, message: str) -> None:
        super().__init__(message)
        self.error = error


def parse_attach(spec: str) -> tuple[TrampKind, str]:
    """``"fentry:bpf_fentry_test1"`` (or libbpf's ``"fentry/bpf_fentry_test1"``) -> kind, function."""
    sep = ":" if ":" in spec else "/"
    prefix, _, func = spec.partition(sep)
    try:
        kind = TrampKind(prefix)
    except ValueError:
        raise AttachError(oc.UNSUPPORTED, f"attach {spec!r}: not fentry, fmod_ret or fexit") from None
    if not func:
        raise AttachError(oc.UNSUPPORTED, f"attach {spec!r}: no function name")
    return kind, func


@dataclass
class Trampoline:
    """The programs attached to one kernel function, per kind, in attach order."""

    function: KernelFunction
    links: dict[TrampKind, list[str]] = field(default_factory=lambda: {k: [] for k in TrampKind})

    def run_order(self, kind: TrampKind) -> list[str]:
        """The order the trampoline runs ``kind``'s programs in: newest link first
        (``hlist_add_head`` in ``__bpf_trampoline_link_prog``, walked from the head by
        ``bpf_trampoline_get_progs``)."""
        return list(reversed(self.links[kind]))

    @property
    def total_links(self) -> int:
        return sum(len(v) for v in self.links.values())


def attach(programs: Sequence[Program]) -> dict[str, Trampoline]:
    """Attach every program that names an ``attach`` target, in the order given.

    Raises :class:`AttachError` where Linux refuses: an unknown function (libbpf finds no BTF
    id for it), fmod_ret on a function outside the fmod_ret BTF set (verifier
    ``bpf_check_attach_target``, formerly ``check_attach_btf_id``: ``"%s() is not modifiable"``,
    -EINVAL), more than
    :data:`BPF_MAX_TRAMP_LINKS` links on one function (-E2BIG).
    """
    trampolines: dict[str, Trampoline] = {}
    for p in programs:
        if p.attach is None:
            continue
        kind, name = parse_attach(p.attach)
        if p.prog_type != ProgType.TRACING:
            raise AttachError(oc.UNSUPPORTED, f"{p.name}: {kind} needs prog_type tracing, not {p.prog_type}")
        fn = FUNCTIONS.get(name)
        if fn is None:
            raise AttachError(oc.rejected("attach_target"),
                              f"{p.name}: no kernel function {name!r} in the model (libbpf: failed to find "
                              f"kernel BTF type ID of '{name}': -ESRCH)")
        if kind is TrampKind.FMOD_RET and not fn.modifiable:
            raise AttachError(oc.rejected("verifier"), f"{name}() is not modifiable")
        tr = trampolines.setdefault(name, Trampoline(fn))
        if tr.total_links >= BPF_MAX_TRAMP_LINKS:
            raise AttachError(oc.rejected("attach"),
                              f"{p.name}: {name} already has {BPF_MAX_TRAMP_LINKS} links (-E2BIG)")
        tr.links[kind].append(p.name)
    return trampolines


# --- Running ---------------------------------------------------------------------------

@dataclass(frozen=True)
class TraceEvent:
    """One step of a traced call: a program run (its r0) or the original function (its result)."""

    function: str
    stage: str  # "fentry", "fmod_ret", "fexit", "original", "skipped"
    program: str | None
    value: int


class _Abort(Exception):
    """A program run that did not end with ``exit``: the test run stops with its outcome."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome.message)
        self.outcome = outcome


def _replace_region(memory: Memory, region: Region) -> Region:
    memory.regions = [r for r in memory.regions if r.name != region.name]
    return memory.add(region)


def _u64(data: bytearray, off: int) -> int:
    return int(struct.unpack_from("<Q", data, off)[0])


def _unmap(memory: Memory, name: str) -> None:
    memory.regions = [r for r in memory.regions if r.name != name]


class TracingRun:
    """One ``BPF_PROG_TEST_RUN`` of a tracing program: the attached trampolines, the shared
    environment, and what happened (:attr:`events`, instruction and helper totals)."""

    def __init__(self, programs: Sequence[Program], env: Environment, *, budget: int = DEFAULT_BUDGET,
                 helpers: HelperTable = DEFAULT_HELPERS,
                 engine: Callable[..., Outcome] = run_programs) -> None:
        self.engine = engine  # runs one program: run_programs' signature (the JITs: jit.runner)
        self.programs = [(p.name, p.insns) for p in programs]
        self.trampolines = attach(programs)
        self.env = env
        self.budget = budget
        self.helpers = helpers
        self.events: list[TraceEvent] = []
        self.insn_count = 0
        self.helper_calls: list[tuple[int, tuple[int, ...], int]] = []
        self.kernel = _replace_region(env.memory, Region(KERNEL_REGION, KERNEL_BASE, bytearray(KERNEL_SIZE),
                                                         writable=False))

    # kernel memory: the locals of bpf_prog_test_run_tracing

    def reset_frame(self) -> None:
        """``struct bpf_fentry_test_t arg = {}; u32 retval = 0; int b = 2;``"""
        self.kernel.data[:] = struct.pack("<QIi", 0, 0, 2)

    def b(self) -> int:
        return INT.value(self.env.memory.load(B_ADDR, 4))

    def set_b(self, value: int) -> None:
        _kernel_store(self.env.memory, B_ADDR, 4, value)

    # one program, one traced call

    def _run_program(self, name: str, function: str, stage: str) -> int:
        out = self.engine(self.programs, name, self.env, r1=CTX_BASE, budget=self.budget,
                          helpers=self.helpers)
        self.insn_count += out.insn_count or 0
        self.helper_calls.extend(out.helper_calls)
        if not out.ok:
            out.message = f"{stage} program {name} on {function}: {out.message}"
            raise _Abort(out)
        assert out.r0 is not None
        self.events.append(TraceEvent(function, stage, name, out.r0))
        return out.r0

    def call(self, name: str, args: Sequence[int]) -> int:
        """Call kernel function ``name`` through its trampoline; returns the C value the caller
        gets. Follows x86-64 ``arch_prepare_bpf_trampoline``: fentry, fmod_ret (the first
        non-zero r0 skips the rest and the original), original, fexit."""
        fn = FUNCTIONS[name]
        tr = self.trampolines.get(name)
        if tr is None or tr.total_links == 0:
            result = fn.call(self.env.memory, args)
            self.events.append(TraceEvent(name, "original", None, result))
            return result
        slots = [t.register(a) for t, a in zip(fn.params, args, strict=True)]
        ctx = bytearray(struct.pack(f"<{fn.nr_args}Q", *slots))  # only the arguments: fentry sees no ret
        _replace_region(self.env.memory, Region(CTX_REGION, CTX_BASE, ctx, writable=False))
        try:
            for prog in tr.run_order(TrampKind.FENTRY):
                self._run_program(prog, name, "fentry")
            ctx.extend(bytes(8))  # the return slot, [rbp - 8], zeroed before the first fmod_ret
            ret_off = 8 * fn.nr_args
            skipped = False
            for prog in tr.run_order(TrampKind.FMOD_RET):
                r0 = self._run_program(prog, name, "fmod_ret")
                struct.pack_into("<Q", ctx, ret_off, r0)
                if r0 != 0:
                    skipped = True
                    break
            if skipped:
                self.events.append(TraceEvent(name, "skipped", None, _u64(ctx, ret_off)))
            else:
                result = fn.call(self.env.memory, [t.value(s) for t, s in zip(fn.params, slots, strict=True)])
                self.events.append(TraceEvent(name, "original", None, result))
                struct.pack_into("<Q", ctx, ret_off, fn.ret.register(result))
            for prog in tr.run_order(TrampKind.FEXIT):
                self._run_program(prog, name, "fexit")
            return fn.ret.value(_u64(ctx, ret_off))
        finally:
            _unmap(self.env.memory, CTX_REGION)

    # bpf_prog_test_run_tracing

    def test_run(self, kind: TrampKind) -> Outcome:
        """``bpf_prog_test_run_tracing`` for a program of ``kind``; the outcome's r0 is the
        u32 ``retval`` TEST_RUN reports, or the error that stopped it."""
        self.reset_frame()
        side_effect = ret = 0
        try:
            if kind in (TrampKind.FENTRY, TrampKind.FEXIT):
                for name, args, want in FENTRY_SEQUENCE:
                    got = self.call(name, args)
                    if got != want:
                        return self._outcome(oc.fault("efault"), extra_message=(
                            f"bpf_prog_test_run_tracing: {name}{args} returned {got}, not {want}: -EFAULT"))
            else:
                ret = self.call("bpf_modify_return_test", (1, B_ADDR)) & 0xFFFF
                if self.b() != 2:
                    side_effect += 1
                self.set_b(2)
                ret = (ret + self.call("bpf_modify_return_test2", (1, B_ADDR, 3, 4, 5, 6, 7))) & 0xFFFF
                if self.b() != 2:
                    side_effect += 1
        except _Abort as a:
            return self._outcome(a.outcome.error, extra_message=a.outcome.message)
        except MemoryFault as f:  # a kernel function dereferenced a bad pointer: an oops
            return self._outcome(oc.CRASH, extra_message=f"kernel oops: {f}")
        return self._outcome(oc.OK, r0=((side_effect & 0xFFFF) << 16) | ret)

    def _outcome(self, error: str, *, r0: int | None = None, extra_message: str = "") -> Outcome:
        env = self.env
        return Outcome(
            error=error, r0=r0, memory=env.memory.snapshot(), insn_count=self.insn_count,
            helper_calls=self.helper_calls, message=extra_message,
            maps={m.spec.name: m.snapshot() for m in env.maps},
            trace=[t.decode("latin-1") for t in env.trace],
            extra={"retval": r0, "events": list(self.events)})


def entry_kind(programs: Sequence[Program], entry: str | None) -> TrampKind:
    """The kind of the program TEST_RUN is given (its ``expected_attach_type``)."""
    if entry is None:
        prog = programs[0] if programs else None
    else:
        prog = next((p for p in programs if p.name == entry), None)
    if prog is None:
        raise ValueError(f"no program named {entry!r}")
    if prog.attach is None:
        raise AttachError(oc.UNSUPPORTED, f"{prog.name}: TEST_RUN of a tracing program needs an fentry, "
                                          "fexit or fmod_ret attachment")
    return parse_attach(prog.attach)[0]


def test_run_tracing(programs: Sequence[Program], env: Environment, kind: TrampKind | str | None = None, *,
                     entry: str | None = None, budget: int = DEFAULT_BUDGET,
                     helpers: HelperTable = DEFAULT_HELPERS,
                     engine: Callable[..., Outcome] = run_programs) -> Outcome:
    """Reproduce ``BPF_PROG_TEST_RUN`` of a tracing program with ``programs`` attached.

    ``env`` holds the maps (created and filled) that all programs share; ``kind`` is the
    test-run program's attach kind, by default that of ``entry`` (default: the first program).
    Attach failures come back as the outcome (``rejected:...`` or ``unsupported``).
    """
    try:
        k = TrampKind(kind) if kind is not None else entry_kind(programs, entry)
        run = TracingRun(programs, env, budget=budget, helpers=helpers, engine=engine)
    except AttachError as e:
        return Outcome(error=e.error, message=str(e))
    return run.test_run(k)


# --- Whole-program YAML cases ----------------------------------------------------------

class _ProgramSpec(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def prog_type(self) -> str: ...
    @property
    def attach(self) -> str | None: ...


class TracingCase(Protocol):
    """What this module reads of a :class:`conformance.yaml_case.YamlCase`."""

    @property
    def programs(self) -> Sequence[_ProgramSpec]: ...
    @property
    def entry(self) -> str | None: ...
    @property
    def options(self) -> Mapping[str, Any]: ...


def helper_symbols(helpers: HelperTable = DEFAULT_HELPERS) -> dict[str, int]:
    """Helper names usable as symbols in a case's assembly (``assemble_case(case, ...)``)."""
    symbols = {d.name: d.id for d in helpers.by_id.values()}
    symbols.setdefault("bpf_tail_call", BPF_FUNC_tail_call)
    return symbols


def is_trampoline_case(case: TracingCase) -> bool:
    """Whether a case attaches any program to a trampoline (fentry, fmod_ret or fexit)."""
    kinds = {k.value for k in TrampKind}
    return any(p.attach and p.attach.replace("/", ":").split(":", 1)[0] in kinds for p in case.programs)


def run_tracing_case(case: TracingCase, assembled: Mapping[str, Sequence[Insn | None]], env: Environment, *,
                     helpers: HelperTable = DEFAULT_HELPERS,
                     engine: Callable[..., Outcome] = run_programs) -> Outcome:
    """Run a YAML trampoline case: TEST_RUN of its ``entry`` program (default: the first) with
    every program that names an ``attach`` attached, in the case's order.

    ``assembled`` is ``conformance.yaml_case.assemble_case(case, helper_symbols(helpers))``;
    ``env`` must already hold the case's maps, created and filled (as for ``run_programs``).
    """
    programs = [Program(p.name, tuple(assembled[p.name]), ProgType(p.prog_type), p.attach)
                for p in case.programs]
    budget = int(case.options.get("budget", DEFAULT_BUDGET)) if case.options else DEFAULT_BUDGET
    return test_run_tracing(programs, env, entry=case.entry, budget=budget, helpers=helpers, engine=engine)
