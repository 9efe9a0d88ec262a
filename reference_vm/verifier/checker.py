"""Abstract interpretation over all paths (Linux 6.18 ``do_check``), with state pruning.

:func:`verify` runs the structural passes (:mod:`.structure`), then explores every path from
the entry in depth-first order, as the kernel does (the fall-through first, the jump target
pushed), with checkpoints at prune points: a state included in a completed checkpoint is
pruned; a state equal to an in-progress checkpoint (a loop that did not change anything) is
``infinite loop detected at insn N``. The first error on the first path that reaches one is the
verdict, with the kernel's errno and message; see docs/verifier.md for what is modelled and
what is not.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..helpers import DEFAULT_HELPERS, HelperTable
from ..insn import RawInsn, raw_program
from ..isa import (
    BPF_CMPXCHG,
    BPF_FETCH,
    BPF_PSEUDO_FUNC,
    BPF_X,
    AluOp,
    Cls,
    JmpOp,
    Kind,
    OpDef,
)
from . import ranges as rg
from . import tnum as tn
from .progtypes import (
    PKT_WRITE_TYPES,
    SKB_TYPES,
    TRACING_TYPES,
    ctx_access,
    func_id_name,
    helper_available,
)
from .ranges import Scalar, sx
from .state import (
    BPF_REG_SIZE,
    MAX_BPF_STACK,
    MAX_CALL_FRAMES,
    PKT_TYPES,
    STACK_INVALID,
    STACK_MISC,
    STACK_SPILL,
    STACK_ZERO,
    Frame,
    MapInfo,
    Ref,
    Reg,
    Slot,
    State,
    T,
    states_equal,
)
from .structure import (
    E2BIG,
    EACCES,
    EFAULT,
    EINVAL,
    EPERM,
    Reject,
    Structure,
    Unsupported,
    analyse,
    reserved_problem,
)

COMPLEXITY_LIMIT_INSNS = 1_000_000
BPF_F_RDONLY_PROG, BPF_F_WRONLY_PROG = 1 << 7, 1 << 8  # include/uapi/linux/bpf.h map_flags
COMPLEXITY_LIMIT_JMP_SEQ = 8192
BPF_MAX_VAR_OFF = 1 << 29
BPF_MAX_VAR_SIZ = 1 << 29
MAX_PACKET_OFF = 0xFFFF
U64 = (1 << 64) - 1
S64_MIN, S64_MAX = -(1 << 63), (1 << 63) - 1
ALU_STR = {
    AluOp.BPF_ADD: "+=",
    AluOp.BPF_SUB: "-=",
    AluOp.BPF_MUL: "*=",
    AluOp.BPF_DIV: "/=",
    AluOp.BPF_OR: "|=",
    AluOp.BPF_AND: "&=",
    AluOp.BPF_LSH: "<<=",
    AluOp.BPF_RSH: ">>=",
    AluOp.BPF_NEG: "neg",
    AluOp.BPF_MOD: "%=",
    AluOp.BPF_XOR: "^=",
    AluOp.BPF_MOV: "=",
    AluOp.BPF_ARSH: "s>>=",
    AluOp.BPF_END: "endian",
}
CALLER_SAVED = (0, 1, 2, 3, 4, 5)
MEM_TYPES_STR = "fp, pkt, pkt_meta, map_key, map_value, mem, ringbuf_mem, buf, trusted_ptr_"
MEM_ARG_TYPES = (T.STACK, T.PKT, T.PKT_META, T.MAP_KEY, T.MAP_VALUE, T.MEM)
MAP_TYPE_PROG_ARRAY, MAP_TYPE_PERF_EVENT_ARRAY, MAP_TYPE_RINGBUF = 3, 4, 27
MAP_TYPE_ARRAY, MAP_TYPE_PERCPU_ARRAY = 2, 6
MAP_TYPE_CGROUP_STORAGE, MAP_TYPE_ARRAY_OF_MAPS, MAP_TYPE_HASH_OF_MAPS = 19, 12, 13
BPF_FUNC_tail_call, BPF_FUNC_loop = 12, 181
RINGBUF_FUNCS = (130, 131, 134)


#: ``reg_not_null``: pointer types that are never NULL.
NOT_NULL_TYPES = (T.MAP_VALUE, T.MAP_KEY, T.SOCK_COMMON, T.MEM, T.MAP_PTR)


class _Exit(Exception):
    """The current path ended (exit of the main frame, or pruned)."""


@dataclass
class VerifierResult:
    """The verdict. ``message`` is the kernel-style error (the log's last-but-one line)."""

    verdict: str  # "accept" | "reject" | "unsupported"
    errno: str | None = None
    message: str = ""
    log: str = ""
    insn_processed: int = 0
    total_states: int = 0
    peak_states: int = 0
    stack_depth: list[int] = field(default_factory=list)
    #: pc -> joined abstract registers of the frame executing it (witness mode, ``collect=True``)
    states: dict[int, list[Any]] = field(default_factory=dict)
    live: list[int] = field(default_factory=list)

    @property
    def accepted(self) -> bool:
        return self.verdict == "accept"

    def outcome_text(self) -> str:
        return "accept" if self.accepted else f"{self.message} (errno {self.errno})"


@dataclass
class _Checkpoint:
    state: State
    pc: int
    hits: int = 0
    miss: int = 0


@dataclass
class _Meta:
    """``bpf_call_arg_meta``."""

    map: MapInfo | None = None
    raw_mode: bool = False
    access_size: int = 0
    regno: int = -1
    mem_size: int = 0
    release_regno: int = 0
    ref_obj_id: int = 0
    const_map_key: int = -1


class Joined:
    """The join of every abstract value a register had at one pc (witness mode)."""

    __slots__ = ("types", "scalar", "stack_off", "maybe_uninit")

    def __init__(self) -> None:
        self.types: set[T] = set()
        self.scalar: Scalar | None = None
        self.stack_off: tuple[int, int] | None = None  # (min, max) of fp offset, frame-relative
        self.maybe_uninit = False

    def add(self, r: Reg) -> None:
        self.types.add(r.type)
        if r.type == T.NOT_INIT:
            self.maybe_uninit = True
        elif r.type == T.SCALAR:
            if self.scalar is None:
                self.scalar = r.s.copy()
            else:
                j = self.scalar
                s = r.s
                j.var_off = tn.union(j.var_off, s.var_off)
                j.umin, j.umax = min(j.umin, s.umin), max(j.umax, s.umax)
                j.smin, j.smax = min(j.smin, s.smin), max(j.smax, s.smax)
                j.u32_min, j.u32_max = min(j.u32_min, s.u32_min), max(j.u32_max, s.u32_max)
                j.s32_min, j.s32_max = min(j.s32_min, s.s32_min), max(j.s32_max, s.s32_max)
        elif r.type == T.STACK:
            lo, hi = r.off + r.s.smin, r.off + r.s.smax
            if self.stack_off is None:
                self.stack_off = (lo, hi)
            else:
                self.stack_off = (min(self.stack_off[0], lo), max(self.stack_off[1], hi))


def _map_info(index: int, m: Any) -> MapInfo:
    """What the verifier keeps of a map spec (inner template included, index -1)."""
    inner = getattr(m, "inner_map", None)
    return MapInfo(
        index,
        getattr(m, "name", ""),
        int(m.type),
        getattr(m, "type_name", str(m.type)),
        m.key_size,
        m.value_size,
        m.max_entries,
        getattr(m, "flags", 0),
        _map_info(-1, inner) if inner is not None else None,
    )


class _StateLine:
    """A log line with a state, formatted only if it is still in the (rolling) log at the end:
    formatting costs ten times a copy, and most lines roll out of the log."""

    __slots__ = ("prefix", "state")

    def __init__(self, prefix: str, state: State) -> None:
        self.prefix, self.state = prefix, state

    def __str__(self) -> str:
        return self.prefix + self.state.format()


class Verifier:
    def __init__(
        self,
        slots: Sequence[RawInsn],
        *,
        prog_type: str = "socket_filter",
        maps: Sequence[Any] = (),
        privileged: bool = True,
        has_fd_array: bool = True,
        func_info: bool = False,
        helpers: HelperTable = DEFAULT_HELPERS,
        entry: dict[int, Reg] | None = None,
        collect: bool = False,
        log_lines: int = 4000,
    ) -> None:
        self.slots = list(slots)
        self.prog_type = prog_type
        self.maps = [_map_info(i, m) for i, m in enumerate(maps)]
        self.priv = privileged
        self.has_fd_array = has_fd_array
        self.func_info = func_info
        self.helpers = helpers
        self.entry = entry
        self.collect = collect
        self.log: deque[str | _StateLine] = deque(maxlen=log_lines)
        self.insn_processed = 0
        self.jmps_processed = 0
        self.prev_jmps = 0
        self.prev_insns = 0
        self.id_gen = 0
        self.checkpoints: dict[int, list[_Checkpoint]] = {}
        self.total_states = 0
        self.peak_states = 0
        self.cur_states = 0
        self.stack: list[tuple[State, int, int]] = []  # (state, pc, prev pc) to explore
        self.aux_ptr_type: dict[int, T] = {}
        self.nospec: set[int] = set()
        self._texts: dict[int, str] = {}
        self._problems: dict[int, str | None] = {}
        #: when a list: (pc, registers after the instruction) for every processed instruction, and
        #: the DFS events ("from", prev, pc) and ("safe", pc), in order (tests compare it with the
        #: kernel's level-2 log)
        self.trace: list[tuple[Any, ...]] | None = None
        self.stack_depth: list[int] = []
        self.joined: dict[int, list[Joined]] = {}
        self.st: Structure
        self.state: State
        self.pc = 0

    # --- entry point ----------------------------------------------------------------------

    def run(self) -> VerifierResult:
        try:
            if not self.priv and self.prog_type in TRACING_TYPES:
                raise Reject(EPERM, "")
            if len(self.slots) > COMPLEXITY_LIMIT_INSNS:
                raise Reject(E2BIG, "")
            self.st = analyse(self.slots, self.maps, self.has_fd_array, self.func_info)
            self.stack_depth = [0] * len(self.st.subprogs)
            self._do_check()
            self._check_max_stack_depth()
        except Unsupported as e:
            self.log.append(e.message)
            return self._result("unsupported", None, e.message)
        except Reject as e:
            self.log.extend(e.before)
            if e.message:
                self.log.append(e.message)
            self.log.extend(e.after)
            return self._result("reject", e.errno, e.message)
        return self._result("accept", None, "")

    def _result(self, verdict: str, errno: str | None, message: str) -> VerifierResult:
        tail = (
            f"processed {self.insn_processed} insns (limit {COMPLEXITY_LIMIT_INSNS}) max_states_per_insn "
            f"{max((len(v) for v in self.checkpoints.values()), default=0)} total_states {self.total_states} "
            f"peak_states {self.peak_states} mark_read 0"
        )
        with_tail = errno not in (EPERM, E2BIG) or self.insn_processed
        lines = [str(line) for line in self.log] + ([tail] if with_tail else [])
        states = {pc: js for pc, js in self.joined.items()} if self.collect else {}
        live = self.st.live_before if hasattr(self, "st") else []
        return VerifierResult(
            verdict,
            errno,
            message,
            "\n".join(lines) + "\n",
            self.insn_processed,
            self.total_states,
            self.peak_states,
            self.stack_depth,
            states,
            live,
        )

    # --- the DFS --------------------------------------------------------------------------

    def _initial_state(self) -> State:
        s = State()
        f = Frame(0, -1, 0)
        s.frames.append(f)
        regs = f.regs
        regs[10].mark_ptr(T.STACK, frameno=0)
        if self.entry is not None:
            for i, r in self.entry.items():
                regs[i] = r.copy()
        elif self.prog_type in ("raw",):
            regs[1].mark_ptr(T.CTX)
        else:
            regs[1].mark_ptr(T.CTX)
        return s

    def _do_check(self) -> None:
        self.state = self._initial_state()
        self.log.append("0: " + self.state.format())
        self.pc = 0
        prev = -1
        slots = self.st.slots
        n = len(slots)
        while True:
            try:
                while True:
                    pc = self.pc
                    if pc >= n:
                        raise Reject(EFAULT, f"invalid insn idx {pc} insn_cnt {n}")
                    self.insn_processed += 1
                    if self.insn_processed > COMPLEXITY_LIMIT_INSNS:
                        raise Reject(E2BIG, f"BPF program is too large. Processed {self.insn_processed} insn")
                    self.state.last_insn = prev
                    self.state.insn_idx = pc
                    if pc in self.st.prune_points and self._is_state_visited(pc):
                        self.log.append(f"{pc}: safe")
                        if self.trace is not None:
                            self.trace.append(("safe", pc))
                        raise _Exit
                    if self.state.speculative and pc in self.nospec:
                        raise _Exit
                    if self.collect and not self.state.speculative:
                        self._record(pc)
                    prev = pc
                    try:
                        self._do_insn(pc)
                        if self.trace is not None:
                            self.trace.append((pc, [r.copy() for r in self.state.regs]))
                    except Reject as e:
                        if self.state.speculative and e.errno in (EACCES, EINVAL, EPERM):
                            self.nospec.add(pc)
                            raise _Exit from None
                        raise
            except _Exit:
                self._update_branch_counts(self.state.parent)
                if not self.stack:
                    return
                self.state, self.pc, prev = self.stack.pop()
                self.log.append(_StateLine(f"from {prev} to {self.pc}: ", self.state.copy()))
                if self.trace is not None:
                    self.trace.append(("from", prev, self.pc))

    def _record(self, pc: int) -> None:
        js = self.joined.get(pc)
        if js is None:
            js = self.joined[pc] = [Joined() for _ in range(11)]
        regs = self.state.regs
        for i in range(11):
            js[i].add(regs[i])

    def _push(self, state: State, pc: int, prev: int) -> None:
        if state.parent is not None:
            state.parent.branches += 1
        self.stack.append((state, pc, prev))
        if len(self.stack) > COMPLEXITY_LIMIT_JMP_SEQ:
            raise Reject(EFAULT, f"The sequence of {len(self.stack)} jumps is too complex.")

    @staticmethod
    def _update_branch_counts(st: State | None) -> None:
        while st is not None:
            st.branches -= 1
            if st.branches:
                break
            st = st.parent

    def _live(self, state: State) -> list[int]:
        out = []
        for i in range(len(state.frames)):
            pc = state.insn_idx if i == len(state.frames) - 1 else state.frames[i + 1].callsite
            out.append(self.st.live_before[pc])
        return out

    def _precise(self, state: State) -> list[int]:
        out = []
        n = len(state.frames)
        for i in range(n):
            if i == n - 1:
                out.append(self.st.precise_before[state.insn_idx])
            else:
                nxt = state.frames[i + 1].callsite + 1
                out.append(self.st.precise_before[nxt] & 0b1111000000 if nxt < len(self.st.slots) else 0)
        return out

    def _is_state_visited(self, pc: int) -> bool:
        cur = self.state
        lst = self.checkpoints.setdefault(pc, [])
        force = pc in self.st.force_checkpoint
        # the kernel adds a checkpoint only after at least 2 jumps and 8 instructions
        add_new = force or (
            self.jmps_processed - self.prev_jmps >= 2 and self.insn_processed - self.prev_insns >= 8
        )
        live = None
        precise = None if self.collect else self._precise(cur)
        keep = []
        callback_site = pc in self.st.callback_sites
        for cp in lst:
            old = cp.state
            if live is None:
                live = self._live(cur)
            if callback_site:
                # is_state_visited: a callback-calling insn is a loop head without the
                # infinite-loop check; the same state again means the iterations converged
                if states_equal(old, cur, live, False, self.priv, precise, self.st.stack_precise):
                    cp.hits += 1
                    return True
            elif old.branches:
                row = self.st.rows[pc]
                if row is not None and row.kind is Kind.MAY_GOTO:
                    if old.may_goto != cur.may_goto and states_equal(old, cur, live, False, self.priv):
                        cp.hits += 1
                        return True
                if states_equal(old, cur, live, True, self.priv):
                    raise Reject(
                        EINVAL,
                        f"infinite loop detected at insn {pc}",
                        after=["cur state: " + cur.format(), "old state: " + old.format()],
                    )
                if (
                    not force
                    and self.jmps_processed - self.prev_jmps < 20
                    and self.insn_processed - self.prev_insns < 100
                ):
                    add_new = False
            elif states_equal(old, cur, live, False, self.priv, precise, self.st.stack_precise):
                cp.hits += 1
                return True
            # miss
            if add_new:
                cp.miss += 1
            n = 64 if force and old.branches else 3
            if cp.miss > cp.hits * n + n:
                continue  # evicted: unlikely to help pruning
            keep.append(cp)
        if len(keep) != len(lst):
            self.checkpoints[pc] = lst = keep
        if not add_new:
            return False
        self.total_states += 1
        self.cur_states += 1
        self.peak_states = max(self.peak_states, self.cur_states)
        self.prev_jmps, self.prev_insns = self.jmps_processed, self.insn_processed
        new = cur.copy()
        new.branches = 1
        new.parent = cur.parent
        cur.parent = new
        lst.append(_Checkpoint(new, pc))
        return False

    # --- registers --------------------------------------------------------------------------

    def _check_reg_arg(self, regno: int, src: bool, mark: bool = True) -> Reg:
        """``check_reg_arg``: SRC_OP (readable) or DST_OP (writable; ``mark`` -> unknown)."""
        if regno >= 11:
            raise Reject(EINVAL, f"R{regno} is invalid")
        r = self.state.regs[regno]
        if src:
            if r.type == T.NOT_INIT:
                raise Reject(EACCES, f"R{regno} !read_ok")
        else:
            if regno == 10:
                raise Reject(EACCES, "frame pointer is read only")
            if mark:
                r.mark_unknown()
        return r

    def _is_pointer_value(self, r: Reg) -> bool:
        """``is_pointer_value``: pointers count only in the unprivileged mode."""
        return not self.priv and r.type != T.SCALAR

    def _new_id(self) -> int:
        self.id_gen += 1
        return self.id_gen

    # --- dispatch -----------------------------------------------------------------------------

    def _do_insn(self, pc: int) -> None:
        raw = self.st.slots[pc]
        row = self.st.rows[pc]
        self.log.append(f"{pc}: ({raw.opcode:02x}) {self._text(pc, raw, row)}")
        if pc in self._problems:
            problem = self._problems[pc]
        else:
            problem = self._problems[pc] = reserved_problem(raw)
        if row is None or problem is not None:
            raise Reject(EINVAL, problem or f"unknown opcode {raw.opcode:02x}")
        k = row.kind
        nxt = pc + 1
        if k in (Kind.ALU, Kind.NEG, Kind.END, Kind.MOVSX):
            self._check_alu(pc, raw, row)
        elif k in (Kind.LOAD, Kind.LOADSX, Kind.LOAD_ACQ):
            self._check_load(pc, raw, row)
        elif k in (Kind.STORE_REG, Kind.STORE_REL):
            self._check_store_reg(pc, raw, row)
        elif k is Kind.STORE_IMM:
            self._check_store_imm(pc, raw, row)
        elif k is Kind.ATOMIC:
            self._check_atomic(pc, raw, row)
        elif k is Kind.LDDW:
            self._check_lddw(pc, raw, row)
            nxt = pc + 2
        elif k in (Kind.LD_ABS, Kind.LD_IND):
            self._check_ld_abs(pc, raw, row)
        elif k is Kind.JA:
            self.jmps_processed += 1
            nxt = pc + 1 + (raw.imm if row.width == 32 else raw.off)
        elif k is Kind.JCOND:
            self.jmps_processed += 1
            nxt = self._check_cond_jmp(pc, raw, row)
        elif k is Kind.MAY_GOTO:
            self.jmps_processed += 1
            nxt = self._check_may_goto(pc, raw)
        elif k is Kind.CALL:
            self.jmps_processed += 1
            self._check_helper_call(pc, raw)
        elif k is Kind.CALL_LOCAL:
            self.jmps_processed += 1
            nxt = self._check_func_call(pc, raw)
        elif k is Kind.EXIT:
            self.jmps_processed += 1
            nxt = self._check_exit(pc)
        else:
            raise Reject(EINVAL, f"unknown opcode {raw.opcode:02x}")
        self.pc = nxt

    def _text(self, pc: int, raw: RawInsn, row: OpDef | None) -> str:
        text = self._texts.get(pc)
        if text is None:
            text = self._texts[pc] = self._format(pc, raw, row)
        return text

    def _format(self, pc: int, raw: RawInsn, row: OpDef | None) -> str:
        if row is None:
            return "?"
        try:
            from ..asm import format_insn
            from ..insn import decode

            nxt = self.st.slots[pc + 1] if pc + 1 < len(self.st.slots) else None
            return format_insn(decode(raw, None, nxt), dialect="llvm", pc=pc)
        except Exception:  # noqa: BLE001 - a malformed slot still gets a log line
            return row.name

    # --- ALU --------------------------------------------------------------------------------

    def _check_alu(self, pc: int, raw: RawInsn, row: OpDef) -> None:
        regs = self.state.regs
        op = row.alu
        alu32 = row.cls is Cls.BPF_ALU
        if row.kind in (Kind.NEG, Kind.END):
            dst = self._check_reg_arg(raw.dst, True)
            if self._is_pointer_value(dst):
                raise Reject(EACCES, f"R{raw.dst} pointer arithmetic prohibited")
            if row.kind is Kind.NEG and dst.type == T.SCALAR:
                self._check_reg_arg(raw.dst, False, mark=False)
                rg.adjust_scalar(dst.s, dst.s, AluOp.BPF_NEG, alu32)
                dst.id = 0
            elif row.kind is Kind.END and dst.type == T.SCALAR:
                self._check_reg_arg(raw.dst, False, mark=False)
                swap = not alu32 or row.source == BPF_X  # bswap, or to-big-endian on this host
                rg.byte_swap(dst.s, row.size, swap)
                dst.id = 0
            else:
                self._check_reg_arg(raw.dst, False)
            return
        if op is AluOp.BPF_MOV:
            if row.source == BPF_X:
                self._check_reg_arg(raw.src, True)
            self._check_reg_arg(raw.dst, False, mark=False)
            dst = regs[raw.dst]
            if row.source != BPF_X:
                dst.mark_known(raw.imm & U64 if not alu32 else raw.imm & 0xFFFFFFFF)
                return
            src = regs[raw.src]
            if not alu32:
                if row.kind is not Kind.MOVSX:
                    self._assign_id_before_mov(src)
                    dst.assign(src)
                    return
                if self._is_pointer_value(src):
                    raise Reject(EACCES, f"R{raw.src} sign-extension part of pointer")
                if src.type == T.SCALAR:
                    no_sext = src.s.umax < (1 << (row.size - 1))
                    if no_sext:
                        self._assign_id_before_mov(src)
                    dst.assign(src)
                    if not no_sext:
                        dst.id, dst.add_const, dst.off = 0, 0, 0
                    rg.coerce_reg_to_size_sx(dst.s, row.size // 8)
                else:
                    dst.mark_unknown()
                return
            if self._is_pointer_value(src):
                raise Reject(EACCES, f"R{raw.src} partial copy of pointer")
            if src.type == T.SCALAR:
                if row.kind is Kind.MOVSX:
                    keep = src.s.umax < (1 << (row.size - 1))
                else:
                    keep = src.s.umax.bit_length() <= 32
                if keep:
                    self._assign_id_before_mov(src)
                dst.assign(src)
                if not keep:
                    dst.id, dst.add_const, dst.off = 0, 0, 0
                if row.kind is Kind.MOVSX:
                    rg.coerce_subreg_to_size_sx(dst.s, row.size // 8)
            else:
                dst.mark_unknown()
            rg.zext_32_to_64(dst.s)
            rg.reg_bounds_sync(dst.s)
            return
        # other ALU ops
        if row.source == BPF_X:
            self._check_reg_arg(raw.src, True)
        self._check_reg_arg(raw.dst, True)
        if op in (AluOp.BPF_DIV, AluOp.BPF_MOD) and row.source != BPF_X and raw.imm == 0:
            raise Reject(EINVAL, "div by zero")
        if op in (AluOp.BPF_LSH, AluOp.BPF_RSH, AluOp.BPF_ARSH) and row.source != BPF_X:
            size = 32 if alu32 else 64
            if raw.imm < 0 or raw.imm >= size:
                raise Reject(EINVAL, f"invalid shift {raw.imm}")
        self._check_reg_arg(raw.dst, False, mark=False)
        assert op is not None
        self._adjust_reg_min_max_vals(raw, row, op, alu32)

    def _maybe_fork_scalars(self, raw: RawInsn, dst: Reg, alu32: bool) -> None:
        """Linux 6.18 forks the state when ``dst`` of an AND/OR is a sign mask (-1 or 0, the
        ``x s>> 63`` idiom): the instruction is explored again with dst = 0 (measured: ``r6 |= 8``
        with r6 in [-1, 0] is processed twice, "from 4 to 4")."""
        s = dst.s
        if not alu32 and s.smin == -1 and s.smax == 0:
            half = False
        elif alu32 and s.s32_min == -1 and s.s32_max == 0:
            half = True
        else:
            return
        other = self.state.copy()
        o = other.regs[raw.dst]
        if half:
            rg.mark32_known(o.s, 0)
            rg.mark32_known(s, U64)
        else:
            rg.mark_known(o.s, 0)
            rg.mark_known(s, U64)
        o.id = dst.id = 0
        self._push(other, self.pc, self.pc)

    def _assign_id_before_mov(self, src: Reg) -> None:
        """``assign_scalar_id_before_mov``: a copied scalar gets an id, so that what a branch
        learns about one copy reaches the others (``sync_linked_regs``)."""
        if src.type != T.SCALAR:
            return
        if src.add_const:
            src.id, src.add_const, src.off = 0, 0, 0
        if not src.id and not src.s.is_const():
            src.id = self._new_id()

    def _adjust_reg_min_max_vals(self, raw: RawInsn, row: OpDef, op: AluOp, alu32: bool) -> None:
        regs = self.state.regs
        dst = regs[raw.dst]
        ptr = dst if dst.type != T.SCALAR else None
        if row.source == BPF_X:
            src = regs[raw.src]
            if src.type != T.SCALAR:
                if dst.type != T.SCALAR:
                    if op is AluOp.BPF_SUB and self.priv:
                        dst.mark_unknown()
                        return
                    raise Reject(EACCES, f"R{raw.dst} pointer {ALU_STR[op]} pointer prohibited")
                self._adjust_ptr(raw, row, op, alu32, src, dst)
                return
            if ptr is not None:
                self._adjust_ptr(raw, row, op, alu32, dst, src)
                return
        else:
            src = Reg()
            src.type = T.SCALAR
            src.s = Scalar.const(raw.imm & U64)
            if ptr is not None:
                self._adjust_ptr(raw, row, op, alu32, dst, src)
                return
        if op in (AluOp.BPF_AND, AluOp.BPF_OR) and not dst.s.is_const():
            self._maybe_fork_scalars(raw, dst, alu32)
        rg.adjust_scalar(dst.s, src.s, op, alu32)
        # rX += K / rX -= K on a linked scalar keeps the link, with the constant delta
        if op in (AluOp.BPF_ADD, AluOp.BPF_SUB) and dst.id and rg.is_reg_const(src.s, alu32):
            val = sx(rg.const_value(src.s, alu32), 32 if alu32 else 64)
            kind = 32 if alu32 else 64
            if -(1 << 31) <= val < (1 << 31) and not dst.add_const:  # no accumulation (Linux 6.18)
                if op is AluOp.BPF_SUB:
                    val = -val
                off = dst.off + val
                if -(1 << 31) <= off < (1 << 31):
                    dst.add_const, dst.off = kind, off
                    return
        dst.id, dst.add_const, dst.off = 0, 0, 0

    def _adjust_ptr(self, raw: RawInsn, row: OpDef, op: AluOp, alu32: bool, ptr: Reg, off: Reg) -> None:
        """``adjust_ptr_min_max_vals``: ``dst = ptr op off`` (the result goes to dst)."""
        regs = self.state.regs
        dst = regs[raw.dst]
        o = off.s
        known = o.is_const()
        smin_val, smax_val, umin_val, umax_val = o.smin, o.smax, o.umin, o.umax
        if (
            (known and (smin_val != smax_val or umin_val != umax_val))
            or smin_val > smax_val
            or umin_val > umax_val
        ):
            dst.mark_unknown()
            return
        if alu32:
            if op is AluOp.BPF_SUB and self.priv:
                dst.mark_unknown()
                return
            raise Reject(EACCES, f"R{raw.dst} 32-bit pointer arithmetic prohibited")
        if ptr.maybe_null:
            raise Reject(
                EACCES, f"R{raw.dst} pointer arithmetic on {ptr.type_str()} prohibited, null-check it first"
            )
        t = ptr.type
        if t in (T.CTX, T.MAP_VALUE, T.MAP_KEY, T.STACK, T.PKT_META, T.PKT, T.MEM, T.FUNC):
            pass
        elif t == T.MAP_PTR and known and smin_val == 0 and op is AluOp.BPF_ADD:
            pass
        else:
            raise Reject(EACCES, f"R{raw.dst} pointer arithmetic on {ptr.type_str()} prohibited")
        p = ptr.s
        smin_ptr, smax_ptr, umin_ptr, umax_ptr = p.smin, p.smax, p.umin, p.umax
        scalar_dst = off is dst  # scalar += pointer: the result goes to the scalar's register
        if not self._sane_offset(off, ptr.type_str()) or not self._sane_offset(ptr, ptr.type_str()):
            raise Reject(EINVAL, self._last_sane_msg)
        if not self.priv and row.source == BPF_X and op in (AluOp.BPF_ADD, AluOp.BPF_SUB):
            self._sanitize_ptr_alu(raw, op, ptr, off, scalar_dst)
        if scalar_dst:
            off = off.copy()
            o = off.s
            dst.assign(ptr)
        new = Scalar()
        if op is AluOp.BPF_ADD:
            if known and _fits_s32(ptr.off + smin_val):
                new = p.copy()
                dst.off = ptr.off + smin_val
                dst.s = new
            else:
                lo, hi = smin_ptr + smin_val, smax_ptr + smax_val
                new.smin, new.smax = (lo, hi) if _fits_s64(lo) and _fits_s64(hi) else (S64_MIN, (1 << 63) - 1)
                lo, hi = umin_ptr + umin_val, umax_ptr + umax_val
                new.umin, new.umax = (lo, hi) if hi <= U64 else (0, U64)
                new.var_off = tn.add(p.var_off, o.var_off)
                rg.mark32_unbounded(new)
                dst.s = new
                dst.off = ptr.off
                if ptr.is_pkt:
                    dst.id = self._new_id()
                    dst.range = 0
        elif op is AluOp.BPF_SUB:
            if scalar_dst:
                raise Reject(EACCES, f"R{raw.dst} tried to subtract pointer from scalar")
            if ptr.type == T.STACK:
                raise Reject(EACCES, f"R{raw.dst} subtraction from stack pointer prohibited")
            if known and _fits_s32(ptr.off - smin_val):
                new = p.copy()
                dst.off = ptr.off - smin_val
                dst.s = new
            else:
                lo, hi = smin_ptr - smax_val, smax_ptr - smin_val
                new.smin, new.smax = (lo, hi) if _fits_s64(lo) and _fits_s64(hi) else (S64_MIN, (1 << 63) - 1)
                if umin_ptr < umax_val:
                    new.umin, new.umax = 0, U64
                else:
                    new.umin, new.umax = umin_ptr - umax_val, umax_ptr - umin_val
                new.var_off = tn.sub(p.var_off, o.var_off)
                rg.mark32_unbounded(new)
                dst.s = new
                dst.off = ptr.off
                if ptr.is_pkt:
                    dst.id = self._new_id()
                    if smin_val < 0:
                        dst.range = 0
        elif op in (AluOp.BPF_AND, AluOp.BPF_OR, AluOp.BPF_XOR):
            raise Reject(EACCES, f"R{raw.dst} bitwise operator {ALU_STR[op]} on pointer prohibited")
        else:
            raise Reject(EACCES, f"R{raw.dst} pointer arithmetic with {ALU_STR[op]} operator prohibited")
        if not self._sane_offset(dst, ptr.type_str()):
            raise Reject(EINVAL, self._last_sane_msg)
        rg.reg_bounds_sync(dst.s)
        if not self.priv:
            self._sanitize_check_bounds(raw, dst)

    _last_sane_msg = ""

    def _sane_offset(self, r: Reg, tstr: str) -> bool:
        """``check_reg_sane_offset``."""
        s = r.s
        val = sx(s.var_off.value, 64)
        if s.is_const() and (val >= BPF_MAX_VAR_OFF or val <= -BPF_MAX_VAR_OFF):
            self._last_sane_msg = f"math between {tstr} pointer and {val} is not allowed"
            return False
        if r.off >= BPF_MAX_VAR_OFF or r.off <= -BPF_MAX_VAR_OFF:
            self._last_sane_msg = f"{tstr} pointer offset {r.off} is not allowed"
            return False
        if s.smin == S64_MIN:
            self._last_sane_msg = (
                f"math between {tstr} pointer and register with unbounded min value is not allowed"
            )
            return False
        if s.smin >= BPF_MAX_VAR_OFF or s.smin <= -BPF_MAX_VAR_OFF:
            self._last_sane_msg = f"value {s.smin} makes {tstr} pointer be out of bounds"
            return False
        return True

    def _sanitize_ptr_alu(self, raw: RawInsn, op: AluOp, ptr: Reg, off: Reg, scalar_dst: bool) -> None:
        """The unprivileged checks of ``sanitize_ptr_alu`` (register offsets only)."""
        err = "pointer arithmetic with it prohibited for !root"
        o = off.s
        if not o.is_const() and (o.smin < 0) != (o.smax < 0):
            which = raw.dst if scalar_dst else raw.src
            raise Reject(EACCES, f"R{which} has unknown scalar with mixed signed bounds, {err}")
        if ptr.type not in (T.STACK, T.MAP_VALUE):
            which = raw.src if scalar_dst else raw.dst
            raise Reject(EACCES, f"R{which} has pointer with unsupported alu operation, {err}")

    def _sanitize_check_bounds(self, raw: RawInsn, dst: Reg) -> None:
        if dst.type == T.STACK:
            off = dst.off + sx(dst.s.var_off.value, 64)
            if not dst.s.is_const():
                raise Reject(
                    EACCES,
                    f"R{raw.dst} variable stack access prohibited for !root, "
                    f"var_off={_tnum_str(dst.s.var_off)} off={off}",
                )
            if off >= 0 or off < -MAX_BPF_STACK:
                raise Reject(
                    EACCES,
                    f"R{raw.dst} stack pointer arithmetic goes out of range, prohibited for !root; off={off}",
                )
        elif dst.type == T.MAP_VALUE:
            try:
                self._check_map_region(raw.dst, dst, dst.off, 1, False, quiet=True)
            except Reject:
                raise Reject(
                    EACCES,
                    f"R{raw.dst} pointer arithmetic of map value goes out of range, prohibited for !root",
                ) from None

    # --- jumps ------------------------------------------------------------------------------

    def _check_cond_jmp(self, pc: int, raw: RawInsn, row: OpDef) -> int:
        regs = self.state.regs
        op: Any = row.jmp
        is32 = row.width == 32
        if row.source == BPF_X:
            src = self._check_reg_arg(raw.src, True)
            dst_pre = regs[raw.dst] if raw.dst < 11 else None
            both_pkt = (
                dst_pre is not None
                and (dst_pre.is_pkt or dst_pre.type == T.PKT_END)
                and (src.is_pkt or src.type == T.PKT_END)
            )
            if not both_pkt and self._is_pointer_value(src):
                raise Reject(EACCES, f"R{raw.src} pointer comparison prohibited")
        else:
            src = Reg()
            src.type = T.SCALAR
            src.s = Scalar.const(raw.imm & U64)
        dst = self._check_reg_arg(raw.dst, True)
        target = pc + 1 + raw.off
        pred = self._is_branch_taken(dst, src, op, is32)
        if pred == 1:
            if not self.priv:
                self._push_speculative(raw, row, pc + 1, pc)
            return target
        if pred == 0:
            if not self.priv:
                self._push_speculative(raw, row, target, pc)
            return pc + 1
        other = self.state.copy()
        self._push(other, target, pc)
        oregs = other.regs
        o_dst = oregs[raw.dst]
        o_src = oregs[raw.src] if row.source == BPF_X else src.copy()
        if dst.type == T.SCALAR and src.type == T.SCALAR:
            t1, t2 = o_dst.s, o_src.s
            f1, f2 = dst.s, src.s if row.source == BPF_X else src.s.copy()
            rg.refine(t1, t2, f1, f2, op, is32)
            if row.source == BPF_X:
                self._sync_linked(self.state, dst)
                self._sync_linked(self.state, src)
                self._sync_linked(other, o_dst)
                self._sync_linked(other, o_src)
            else:
                self._sync_linked(self.state, dst)
                self._sync_linked(other, o_dst)
        if (
            not is32
            and row.source != BPF_X
            and raw.imm == 0
            and op in (JmpOp.BPF_JEQ, JmpOp.BPF_JNE)
            and dst.maybe_null
        ):
            self._mark_ptr_or_null_regs(self.state, raw.dst, op is JmpOp.BPF_JNE)
            self._mark_ptr_or_null_regs(other, raw.dst, op is JmpOp.BPF_JEQ)
        elif not self._try_match_pkt_pointers(
            row, dst, src if row.source == BPF_X else None, self.state, other
        ) and self._is_pointer_value(dst):
            raise Reject(EACCES, f"R{raw.dst} pointer comparison prohibited")
        return pc + 1

    def _push_speculative(self, raw: RawInsn, row: OpDef, pc: int, prev: int) -> None:
        """``sanitize_speculative_path``: the branch the CPU may mispredict into is explored too
        (unprivileged mode), with the compared registers unknown; errors there end the path."""
        other = self.state.copy()
        other.speculative = True
        regs = other.regs
        regs[raw.dst].mark_unknown()
        if row.source == BPF_X:
            regs[raw.src].mark_unknown()
        self._push(other, pc, prev)

    def _is_branch_taken(self, r1: Reg, r2: Reg, op: Any, is32: bool) -> int:
        if (r1.is_pkt or r1.type == T.PKT_END) and (r2.is_pkt or r2.type == T.PKT_END) and not is32:
            return -1
        if r1.type != T.SCALAR or r2.type != T.SCALAR:
            if r2.type != T.SCALAR or not rg.is_reg_const(r2.s, is32):
                r1, r2 = r2, r1
                op = rg.FLIP[op]
            if r2.type != T.SCALAR or not rg.is_reg_const(r2.s, is32):
                return -1
            if r1.maybe_null or r1.type not in NOT_NULL_TYPES:
                return -1
            if rg.const_value(r2.s, is32) != 0:
                return -1
            if op is JmpOp.BPF_JEQ:
                return 0
            if op is JmpOp.BPF_JNE:
                return 1
            return -1
        return rg.branch_taken(r1.s, r2.s, op, is32)

    def _sync_linked(self, state: State, reg: Reg) -> None:
        """``sync_linked_regs``: registers that were copies of ``reg`` (possibly plus a constant)
        learn its new bounds."""
        if reg.type != T.SCALAR or not reg.id:
            return
        for r in state.all_regs():
            if r is reg or r.type != T.SCALAR or r.id != reg.id:
                continue
            if r.add_const and reg.add_const and r.add_const != reg.add_const:
                continue
            if (not r.add_const and not reg.add_const) or r.off == reg.off:
                r.s = reg.s.copy()
                continue
            delta = Scalar.const((r.off - reg.off) & U64)
            s = reg.s.copy()
            rg.scalar32_min_max_add(s, delta)
            rg.scalar_min_max_add(s, delta)
            s.var_off = tn.add(s.var_off, delta.var_off)
            if 32 in (r.add_const, reg.add_const):
                rg.zext_32_to_64(s)
            rg.reg_bounds_sync(s)
            r.s = s

    def _mark_ptr_or_null_regs(self, state: State, regno: int, is_null: bool) -> None:
        """``mark_ptr_or_null_regs``: after ``if rX == 0``, every register holding the same
        maybe-null pointer becomes the pointer (non-null branch) or the scalar 0."""
        reg = state.regs[regno]
        rid = reg.id
        ref = reg.ref_obj_id
        if ref and is_null:
            state.refs = [r for r in state.refs if r.id != ref]
        for r in state.all_regs():
            if r.maybe_null and r.id == rid:
                if is_null:
                    r.mark_known(0)
                else:
                    r.maybe_null = False
                    r.id = 0

    def _try_match_pkt_pointers(
        self, row: OpDef, dst: Reg, src: Reg | None, this: State, other: State
    ) -> bool:
        if src is None or row.width == 32:
            return False
        op = row.jmp

        def init_pkt(r: Reg) -> bool:
            return r.type == T.PKT and r.off == 0 and r.s.is_const() and r.s.value == 0

        left = (dst.type == T.PKT and src.type == T.PKT_END) or (dst.type == T.PKT_META and init_pkt(src))
        right = (dst.type == T.PKT_END and src.type == T.PKT) or (init_pkt(dst) and src.type == T.PKT_META)
        if not (left or right):
            return False
        if op is JmpOp.BPF_JGT:
            if left:
                _good_pkt(this, dst, False)
            else:
                _good_pkt(other, src, True)
        elif op is JmpOp.BPF_JLT:
            if left:
                _good_pkt(other, dst, True)
            else:
                _good_pkt(this, src, False)
        elif op is JmpOp.BPF_JGE:
            if left:
                _good_pkt(this, dst, True)
            else:
                _good_pkt(other, src, False)
        elif op is JmpOp.BPF_JLE:
            if left:
                _good_pkt(other, dst, False)
            else:
                _good_pkt(this, src, True)
        else:
            return False
        return True

    def _check_may_goto(self, pc: int, raw: RawInsn) -> int:
        """``may_goto``: both ways; the loop-back way counts a depth (the kernel prunes states
        that differ only in it)."""
        cur = self.state
        queued = cur.copy()
        queued.may_goto += 1
        # find_prev_entry: the latest loop entry at this pc on the current path, before this visit
        ancestors = set()
        st = cur.parent.parent if cur.parent is not None else None
        while st is not None:
            ancestors.add(id(st))
            st = st.parent
        prev = None
        for cp in self.checkpoints.get(pc, ()):
            if cp.state.branches and id(cp.state) in ancestors:
                prev = cp.state
        if prev is not None:
            _widen_scalars(prev, queued)
        self._push(queued, pc + 1, pc)
        return pc + 1 + raw.off

    # --- calls and exit --------------------------------------------------------------------

    def _check_func_call(self, pc: int, raw: RawInsn) -> int:
        state = self.state
        if len(state.frames) >= MAX_CALL_FRAMES:
            raise Reject(E2BIG, f"the call stack of {len(state.frames) + 1} frames is too deep")
        target = pc + raw.imm + 1
        caller = state.cur
        callee = Frame(len(state.frames), pc, self.st.subprog_of(target))
        callee.regs[10].mark_ptr(T.STACK, frameno=callee.frameno)
        for i in range(1, 6):
            callee.regs[i] = caller.regs[i].copy()
        state.frames.append(callee)
        for i in CALLER_SAVED:
            caller.regs[i].mark_not_init()
        self.log.append(f"caller:\n {state.format(len(state.frames) - 2)}\ncallee:\n {state.format()}")
        return target

    def _check_loop_call(self, pc: int) -> None:
        """``bpf_loop(nr_loops, callback_fn, callback_ctx, flags)``: the callback is verified as
        a loop body (``push_callback_call`` + ``set_loop_callback_state``): a state entering it
        (r1 = the unknown index, r2 = callback_ctx) is pushed, and its exit returns to this call,
        which is a forced checkpoint, until the states converge; this path goes on with r0
        unknown, as if the helper returned."""
        state = self.state
        regs = state.regs
        self._check_reg_arg(1, True)
        fn = self._check_reg_arg(2, True)
        if fn.type != T.FUNC:
            raise Reject(EACCES, f"R2 type={fn.type_str()} expected=func")
        ctx = self._check_reg_arg(3, True)
        if not (ctx.type == T.STACK or (ctx.type == T.SCALAR and ctx.s.is_const() and ctx.s.value == 0)):
            raise Reject(EACCES, f"R3 type={ctx.type_str()} expected=fp, scalar")
        self._check_reg_arg(4, True)
        if len(state.frames) >= MAX_CALL_FRAMES:
            raise Reject(E2BIG, f"the call stack of {len(state.frames) + 1} frames is too deep")
        cb = state.copy()
        callee = Frame(len(cb.frames), pc, fn.subprog, in_callback=True)
        callee.regs[10].mark_ptr(T.STACK, frameno=callee.frameno)
        callee.regs[1].mark_unknown()
        callee.regs[2] = cb.cur.regs[3].copy()
        cb.frames.append(callee)
        self._push(cb, self.st.subprogs[fn.subprog], pc)
        for i in CALLER_SAVED:
            regs[i].mark_not_init()
        regs[0].mark_unknown()

    def _check_exit(self, pc: int) -> int:
        state = self.state
        if len(state.frames) == 1 and state.refs:
            lines = [f"Unreleased reference id={r.id} alloc_insn={r.insn}" for r in state.refs]
            raise Reject(
                EINVAL, "BPF_EXIT instruction in main prog would lead to reference leak", before=lines
            )
        if len(state.frames) > 1:
            callee = state.frames[-1]
            r0 = callee.regs[0]
            if r0.type == T.STACK:
                raise Reject(EINVAL, "cannot return stack pointer to the caller")
            if callee.in_callback:  # prepare_func_exit: back to the callsite, r0 in [0, 1]
                if r0.type != T.SCALAR:
                    raise Reject(EACCES, "R0 not a scalar value")
                s = r0.s
                if not (0 <= s.smin and s.smax <= 1):
                    bounds = (f" smin={s.smin}" if s.smin > S64_MIN else "") + (
                        f" smax={s.smax}" if s.smax < S64_MAX else ""
                    )
                    raise Reject(
                        EINVAL,
                        f"At callback return the register R0 has{bounds or ' unknown scalar value'} "
                        "should have been in [0, 1]",
                    )
                state.frames.pop()
                self.log.append(f"returning from callee:\n {state.format()}")
                return callee.callsite
            state.frames.pop()
            caller = state.cur
            caller.regs[0] = r0.copy()
            self.log.append(f"returning from callee:\n {state.format()}")
            return callee.callsite + 1
        r0 = self._check_reg_arg(0, True)
        if self._is_pointer_value(r0):
            raise Reject(EACCES, "R0 leaks addr as return value")
        raise _Exit

    def _check_max_stack_depth(self) -> None:
        st = self.st
        depths = [(d + 15) // 16 * 16 for d in self.stack_depth]
        # walk the static call graph from the main program (check_max_stack_depth_subprog)
        calls: list[list[int]] = [[] for _ in st.subprogs]
        for pc, raw in enumerate(st.slots):
            from .structure import is_pseudo_call, is_pseudo_func

            if is_pseudo_call(raw) or is_pseudo_func(raw):
                calls[st.subprog_of(pc)].append(st.subprog_of(pc + raw.imm + 1))

        def walk(idx: int, depth: int, frame: int) -> None:
            if idx and idx in st.has_tail_call and depth >= 256:
                raise Reject(
                    EACCES,
                    f"tail_calls are not allowed when call stack of previous frames is "
                    f"{depth} bytes. Too large",
                )
            depth += depths[idx]
            if depth > MAX_BPF_STACK:
                raise Reject(EACCES, f"combined stack size of {frame + 1} calls is {depth}. Too large")
            for callee in calls[idx]:
                if frame + 1 >= MAX_CALL_FRAMES:
                    raise Reject(E2BIG, f"the call stack of {frame + 1} frames is too deep !")
                walk(callee, depth, frame + 1)

        walk(0, 0, 0)

    # --- helpers ----------------------------------------------------------------------------

    def _check_helper_call(self, pc: int, raw: RawInsn) -> None:
        fid = raw.imm
        name = func_id_name(fid)
        if not 0 <= fid < 212:
            raise Reject(EINVAL, f"invalid func {name}#{fid}")
        if fid == 0 or not helper_available(self.prog_type, fid, self.priv):
            raise Reject(EINVAL, f"program of this type cannot use helper {name}#{fid}")
        if fid == BPF_FUNC_loop:
            self._check_loop_call(pc)
            return
        if fid == BPF_FUNC_tail_call:
            args: tuple[str, ...] = ("ARG_PTR_TO_CTX", "ARG_CONST_MAP_PTR", "ARG_ANYTHING")
            ret = "RET_VOID"
        else:
            h = self.helpers.get(fid)
            if h is None:
                raise Unsupported(f"helper {name}#{fid} is not modelled by bpfcheck")
            args, ret = h.args, h.ret
        meta = _Meta()
        regs = self.state.regs
        for i, arg in enumerate(args):
            self._check_func_arg(pc, i + 1, arg, args, meta, name, fid)
        # raw-mode (uninitialised memory) arguments are written byte by byte
        for i in range(meta.access_size):
            self._check_mem_access(pc, meta.regno, i, 1, True, -1)
        if fid == BPF_FUNC_tail_call and (meta.map is None or meta.map.type != MAP_TYPE_PROG_ARRAY):
            raise Reject(EINVAL, "expected prog array map for tail call")
        if meta.release_regno:
            if meta.ref_obj_id:
                self._release_reference(meta.ref_obj_id)
            elif not regs[meta.release_regno].is_null():
                raise Reject(EINVAL, f"func {name}#{fid} reference has not been acquired before")
        if fid == BPF_FUNC_tail_call and self.state.refs:
            raise Reject(EINVAL, "tail_call would lead to reference leak")
        for i in CALLER_SAVED:
            regs[i].mark_not_init()
        r0 = regs[0]
        if ret == "RET_INTEGER":
            r0.mark_unknown()
        elif ret == "RET_VOID":
            r0.mark_not_init()
        elif ret.startswith("RET_PTR_TO_MAP_VALUE") and meta.map is not None and meta.map.inner is not None:
            # check_helper_call: a map-in-map lookup gives CONST_PTR_TO_MAP (inner_map_meta) or NULL
            r0.mark_ptr(T.MAP_PTR, map=meta.map.inner, maybe_null=True)
        elif ret.startswith("RET_PTR_TO_MAP_VALUE"):
            r0.mark_ptr(T.MAP_VALUE, map=meta.map)
            if ret.endswith("OR_NULL"):
                elide = (
                    fid == 1
                    and meta.map is not None
                    and meta.map.type in (MAP_TYPE_ARRAY, MAP_TYPE_PERCPU_ARRAY)
                    and 0 <= meta.const_map_key < meta.map.max_entries
                )
                r0.maybe_null = not elide
        elif ret == "RET_PTR_TO_RINGBUF_MEM_OR_NULL":
            r0.mark_ptr(T.MEM, ringbuf=True, mem_size=meta.mem_size, maybe_null=True)
        else:
            r0.mark_unknown()
        if r0.maybe_null:
            r0.id = self._new_id()
        if fid == 131:  # bpf_ringbuf_reserve acquires a reference
            rid = self._new_id()
            self.state.refs.append(Ref(rid, pc))
            r0.id = r0.ref_obj_id = rid
        self._check_map_func_compat(meta.map, fid, name)

    def _check_map_func_compat(self, m: MapInfo | None, fid: int, name: str) -> None:
        if m is None:
            return
        t = m.type
        bad = False
        if t == MAP_TYPE_PROG_ARRAY and fid != BPF_FUNC_tail_call:
            bad = True
        elif t == MAP_TYPE_RINGBUF and fid not in RINGBUF_FUNCS:
            bad = True
        elif t == MAP_TYPE_PERF_EVENT_ARRAY and fid not in (22, 25, 55):
            bad = True
        elif t == MAP_TYPE_CGROUP_STORAGE and fid != 81:
            bad = True
        elif t in (MAP_TYPE_ARRAY_OF_MAPS, MAP_TYPE_HASH_OF_MAPS) and fid != 1:
            bad = True
        if fid == BPF_FUNC_tail_call and t != MAP_TYPE_PROG_ARRAY:
            bad = True
        elif fid in (130, 131, 134) and t != MAP_TYPE_RINGBUF:
            bad = True
        elif fid == 25 and t != MAP_TYPE_PERF_EVENT_ARRAY:
            bad = True
        elif fid == 81 and t != MAP_TYPE_CGROUP_STORAGE:
            bad = True
        if bad:
            raise Reject(EINVAL, f"cannot pass map_type {t} into func {name}#{fid}")

    def _check_func_arg(
        self, pc: int, regno: int, arg: str, args: Sequence[str], meta: _Meta, name: str, fid: int
    ) -> None:
        base = arg.split(" | ")[0]
        flags = arg.split(" | ")[1:]
        reg = self._check_reg_arg(regno, True)
        if base == "ARG_ANYTHING":
            if self._is_pointer_value(reg):
                raise Reject(EACCES, f"R{regno} leaks addr into helper function")
            return
        if reg.is_pkt and not (self.prog_type in PKT_WRITE_TYPES or self.prog_type in SKB_TYPES):
            raise Reject(EACCES, "helper access to the packet is not allowed")
        release = "OBJ_RELEASE" in flags
        # check_reg_type
        if base == "ARG_CONST_MAP_PTR":
            ok, expected = reg.type == T.MAP_PTR, "map_ptr"
        elif base == "ARG_PTR_TO_CTX":
            ok, expected = reg.type == T.CTX and not reg.maybe_null, "ctx"
        elif base in (
            "ARG_PTR_TO_MAP_KEY",
            "ARG_PTR_TO_MAP_VALUE",
            "ARG_PTR_TO_MEM",
            "ARG_PTR_TO_UNINIT_MEM",
        ):
            ok = reg.type in MEM_ARG_TYPES and not reg.maybe_null
            expected = MEM_TYPES_STR
        elif base in ("ARG_CONST_SIZE", "ARG_CONST_SIZE_OR_ZERO", "ARG_CONST_ALLOC_SIZE_OR_ZERO"):
            ok, expected = reg.type == T.SCALAR, "scalar"
        elif base == "ARG_PTR_TO_RINGBUF_MEM":
            ok, expected = reg.type == T.MEM and reg.ringbuf and not reg.maybe_null, "ringbuf_mem"
        else:
            raise Unsupported(f"helper argument type {arg} is not modelled by bpfcheck")
        if not ok:
            raise Reject(EACCES, f"R{regno} type={reg.type_str()} expected={expected}")
        # check_func_arg_reg_off
        if release:
            if reg.off:
                raise Reject(
                    EINVAL,
                    f"R{regno} must have zero offset when passed to release func or trusted arg to kfunc",
                )
            self._check_ptr_off_reg(reg, regno, False)
        elif reg.type == T.CTX:
            self._check_ptr_off_reg(reg, regno, False)
        if release:
            if not reg.ref_obj_id and not reg.is_null():
                raise Reject(EINVAL, f"R{regno} must be referenced when passed to release function")
            meta.release_regno = regno
        if reg.ref_obj_id:
            if meta.ref_obj_id:
                raise Reject(
                    EACCES, f"more than one arg with ref_obj_id R{regno} {reg.ref_obj_id} {meta.ref_obj_id}"
                )
            meta.ref_obj_id = reg.ref_obj_id
        if base == "ARG_CONST_MAP_PTR":
            meta.map = reg.map
        elif base == "ARG_PTR_TO_MAP_KEY":
            assert meta.map is not None
            self._check_helper_mem_access(regno, meta.map.key_size, False, False, None)
            if meta.map.type in (MAP_TYPE_ARRAY, MAP_TYPE_PERCPU_ARRAY):
                meta.const_map_key = self._constant_map_key(reg, meta.map.key_size)
        elif base == "ARG_PTR_TO_MAP_VALUE":
            assert meta.map is not None
            self._check_helper_mem_access(regno, meta.map.value_size, False, False, meta)
        elif base == "ARG_PTR_TO_UNINIT_MEM":
            meta.raw_mode = True
        elif base == "ARG_PTR_TO_MEM":
            meta.raw_mode = False
        elif base in ("ARG_CONST_SIZE", "ARG_CONST_SIZE_OR_ZERO"):
            write = args[regno - 2].startswith("ARG_PTR_TO_UNINIT_MEM")
            self._check_mem_size_reg(reg, regno, write, base.endswith("OR_ZERO"), meta)
        elif base == "ARG_CONST_ALLOC_SIZE_OR_ZERO":
            if not reg.s.is_const():
                raise Reject(EACCES, f"R{regno} is not a known constant'")
            meta.mem_size = reg.s.value

    def _constant_map_key(self, key: Reg, key_size: int) -> int:
        """``get_constant_map_key`` (-1: not a constant)."""
        if key.type != T.STACK or not key.s.is_const():
            return -1
        frame = self.state.frames[key.frameno]
        stack_off = key.off + sx(key.s.value, 64)
        slot = -stack_off - 1
        spi, off = slot // BPF_REG_SIZE, slot % BPF_REG_SIZE
        s = frame.stack.get(spi)
        if s is None:
            return -1
        zero = 0
        i = off
        while i >= 0 and s.types[i] == STACK_ZERO:
            zero += 1
            i -= 1
        if zero >= key_size:
            return 0
        if not (s.is_spill() and s.spilled is not None and s.spilled.type == T.SCALAR):
            return -1
        spill = 0
        i = off
        while i >= 0 and s.types[i] == STACK_SPILL:
            spill += 1
            i -= 1
        if spill != key_size or not s.spilled.s.is_const():
            return -1
        return s.spilled.s.value

    def _check_mem_size_reg(self, reg: Reg, regno: int, write: bool, zero_ok: bool, meta: _Meta) -> None:
        s = reg.s
        m: _Meta | None = meta if s.is_const() else None
        if s.smin < 0:
            raise Reject(EACCES, f"R{regno} min value is negative, either use unsigned or 'var &= const'")
        if s.umin == 0 and not zero_ok:
            raise Reject(EACCES, f"R{regno} invalid zero-sized read: u64=[{s.umin},{s.umax}]")
        if s.umax >= BPF_MAX_VAR_SIZ:
            raise Reject(
                EACCES, f"R{regno} unbounded memory access, use 'var &= const' or 'if (var < const)'"
            )
        self._check_helper_mem_access(regno - 1, s.umax, write, zero_ok, m)

    def _check_helper_mem_access(
        self, regno: int, size: int, write: bool, zero_ok: bool, meta: _Meta | None
    ) -> None:
        reg = self.state.regs[regno]
        t = reg.type
        if t in PKT_TYPES:
            self._check_packet_access(regno, reg, reg.off, size, zero_ok)
        elif t == T.MAP_VALUE:
            self._check_map_region(regno, reg, reg.off, size, zero_ok)
        elif t == T.MEM:
            self._check_mem_region(regno, reg, reg.off, size, reg.mem_size, zero_ok)
        elif t == T.STACK:
            self._check_stack_range_initialized(regno, reg, reg.off, size, zero_ok, write, meta)
        else:
            if zero_ok and size == 0 and reg.is_null():
                return
            raise Reject(EACCES, f"R{regno} type={reg.type_str()} expected=fp")

    def _check_stack_range_initialized(
        self, regno: int, reg: Reg, off: int, size: int, zero_ok: bool, write: bool, meta: _Meta | None
    ) -> None:
        if size == 0 and not zero_ok:
            raise Reject(EACCES, "invalid zero-sized read")
        self._check_stack_bounds(regno, reg, off, size, write)
        frame = self.state.frames[reg.frameno]
        if reg.s.is_const():
            min_off = max_off = sx(reg.s.value, 64) + off
        else:
            if not self.priv:
                raise Reject(
                    EACCES,
                    f"R{regno} variable offset stack access prohibited for !root, "
                    f"var_off={_tnum_str(reg.s.var_off)}",
                )
            if meta is not None and meta.raw_mode:
                meta = None
            min_off, max_off = reg.s.smin + off, reg.s.smax + off
        if meta is not None and meta.raw_mode:
            meta.access_size = size
            meta.regno = regno
            return
        for i in range(min_off, max_off + size):
            slot = -i - 1
            spi = slot // BPF_REG_SIZE
            s = frame.stack.get(spi)
            k = slot % BPF_REG_SIZE
            stype = s.types[k] if s is not None else STACK_INVALID
            if stype == STACK_MISC:
                continue
            if stype == STACK_ZERO or (stype == STACK_INVALID and self.priv):
                if write:
                    frame.slot(spi).types[k] = STACK_MISC
                continue
            if (
                s is not None
                and s.is_spill()
                and s.spilled is not None
                and (s.spilled.type == T.SCALAR or self.priv)
            ):
                if write:
                    s.spilled.mark_unknown()
                    s.types = [STACK_MISC if x == STACK_SPILL else x for x in s.types]
                continue
            if reg.s.is_const():
                raise Reject(
                    EACCES, f"invalid read from stack R{regno} off {min_off}+{i - min_off} size {size}"
                )
            raise Reject(
                EACCES,
                f"invalid read from stack R{regno} var_off {_tnum_str(reg.s.var_off)}+"
                f"{i - min_off} size {size}",
            )

    def _release_reference(self, ref_id: int) -> None:
        st = self.state
        st.refs = [r for r in st.refs if r.id != ref_id]
        for r in st.all_regs():
            if r.ref_obj_id == ref_id:
                if self.priv:
                    r.mark_unknown()
                else:
                    r.mark_not_init()

    # --- memory -----------------------------------------------------------------------------

    def _check_load(self, pc: int, raw: RawInsn, row: OpDef) -> None:
        self._check_reg_arg(raw.src, True)
        self._check_reg_arg(raw.dst, False, mark=False)
        src_type = self.state.regs[raw.src].type
        # check_atomic_load: load-acquire is checked with strict alignment (strict_alignment_once)
        self._check_mem_access(
            pc, raw.src, raw.off, row.size, False, raw.dst,
            strict=row.kind is Kind.LOAD_ACQ, ldsx=row.kind is Kind.LOADSX,
        )
        self._save_aux_ptr_type(pc, src_type)

    def _check_store_reg(self, pc: int, raw: RawInsn, row: OpDef) -> None:
        self._check_reg_arg(raw.src, True)
        self._check_reg_arg(raw.dst, True)
        dst_type = self.state.regs[raw.dst].type
        # check_atomic_store: store-release too
        self._check_mem_access(
            pc, raw.dst, raw.off, row.size, True, raw.src, strict=row.kind is Kind.STORE_REL
        )
        self._save_aux_ptr_type(pc, dst_type)

    def _check_store_imm(self, pc: int, raw: RawInsn, row: OpDef) -> None:
        self._check_reg_arg(raw.dst, True)
        dst_type = self.state.regs[raw.dst].type
        self._check_mem_access(pc, raw.dst, raw.off, row.size, True, -1, st_imm=raw.imm)
        self._save_aux_ptr_type(pc, dst_type)

    def _save_aux_ptr_type(self, pc: int, t: T) -> None:
        prev = self.aux_ptr_type.get(pc)
        if prev is None:
            self.aux_ptr_type[pc] = t
        elif t != prev and (t in (T.CTX, T.SOCK_COMMON) or prev in (T.CTX, T.SOCK_COMMON)):
            raise Reject(EINVAL, "same insn cannot be used with different pointers")

    def _check_atomic(self, pc: int, raw: RawInsn, row: OpDef) -> None:
        regs = self.state.regs
        self._check_reg_arg(raw.src, True)
        self._check_reg_arg(raw.dst, True)
        cmpxchg = raw.imm == BPF_CMPXCHG
        if cmpxchg:
            self._check_reg_arg(0, True)
            if self._is_pointer_value(regs[0]):
                raise Reject(EACCES, "R0 leaks addr into mem")
        if self._is_pointer_value(regs[raw.src]):
            raise Reject(EACCES, f"R{raw.src} leaks addr into mem")
        dst = regs[raw.dst]
        if dst.type in (T.CTX, T.PKT, T.PKT_META, T.SOCK_COMMON):
            raise Reject(EACCES, f"BPF_ATOMIC stores into R{raw.dst} {dst.type_str()} is not allowed")
        load = -1
        if raw.imm & BPF_FETCH:
            load = 0 if cmpxchg else raw.src
            self._check_reg_arg(load, False)
        self._check_mem_access(pc, raw.dst, raw.off, row.size, False, -1, strict=True)
        if load >= 0:
            self._check_mem_access(pc, raw.dst, raw.off, row.size, False, load, strict=True)
        self._check_mem_access(pc, raw.dst, raw.off, row.size, True, -1, strict=True)

    def _check_lddw(self, pc: int, raw: RawInsn, row: OpDef) -> None:
        self._check_reg_arg(raw.dst, False, mark=False)
        dst = self.state.regs[raw.dst]
        if raw.src == 0:
            nxt = self.st.slots[pc + 1]
            dst.mark_known(((nxt.imm & 0xFFFFFFFF) << 32) | (raw.imm & 0xFFFFFFFF))
            return
        if raw.src == BPF_PSEUDO_FUNC:
            dst.mark_ptr(T.FUNC, subprog=self.st.subprog_of(pc + raw.imm + 1))
            return
        index, value_off = self.st.lddw_maps[pc]
        m = self.maps[index]
        if value_off < 0:
            dst.mark_ptr(T.MAP_PTR, map=m)
            return
        dst.mark_ptr(T.MAP_VALUE, map=m, off=value_off)

    def _check_ld_abs(self, pc: int, raw: RawInsn, row: OpDef) -> None:
        if self.prog_type not in SKB_TYPES:
            raise Reject(EINVAL, "BPF_LD_[ABS|IND] instructions not allowed for this program type")
        self._check_reg_arg(6, True)
        if self.state.refs:
            raise Reject(EINVAL, "BPF_LD_[ABS|IND] would lead to reference leak")
        regs = self.state.regs
        if regs[6].type != T.CTX:
            raise Reject(EINVAL, "at the time of BPF_LD_ABS|IND R6 != pointer to skb")
        if row.kind is Kind.LD_IND:
            self._check_reg_arg(raw.src, True)
        self._check_ptr_off_reg(regs[6], 6, False)
        for i in CALLER_SAVED:
            regs[i].mark_not_init()
        regs[0].mark_unknown()

    def _check_ptr_off_reg(self, reg: Reg, regno: int, fixed_ok: bool) -> None:
        """``__check_ptr_off_reg``."""
        if reg.off < 0:
            raise Reject(EACCES, f"negative offset {reg.type_str()} ptr R{regno} off={reg.off} disallowed")
        if not fixed_ok and reg.off:
            raise Reject(
                EACCES, f"dereference of modified {reg.type_str()} ptr R{regno} off={reg.off} disallowed"
            )
        if not reg.s.is_const() or reg.s.value:
            raise Reject(
                EACCES, f"variable {reg.type_str()} access var_off={_tnum_str(reg.s.var_off)} disallowed"
            )

    def _check_mem_access(
        self,
        pc: int,
        regno: int,
        off: int,
        size: int,
        write: bool,
        value_regno: int,
        strict: bool = False,
        ldsx: bool = False,
        st_imm: int | None = None,
    ) -> None:
        """``check_mem_access``."""
        regs = self.state.regs
        reg = regs[regno]
        self._check_ptr_alignment(reg, off, size, strict)
        off += reg.off
        t = reg.type
        value = regs[value_regno] if value_regno >= 0 else None
        if t == T.MAP_VALUE:
            if reg.maybe_null:
                raise Reject(EACCES, f"R{regno} invalid mem access '{reg.type_str()}'")
            if write and value is not None and self._is_pointer_value(value):
                raise Reject(EACCES, f"R{value_regno} leaks addr into map")
            self._check_map_access_type(reg, off, size, write)
            self._check_map_region(regno, reg, off, size, False)
            if not write and value is not None:
                value.mark_unknown()
        elif t == T.MEM:
            if reg.maybe_null:
                raise Reject(EACCES, f"R{regno} invalid mem access '{reg.type_str()}'")
            if write and value is not None and self._is_pointer_value(value):
                raise Reject(EACCES, f"R{value_regno} leaks addr into mem")
            self._check_mem_region(regno, reg, off, size, reg.mem_size, False)
            if not write and value is not None:
                value.mark_unknown()
        elif t == T.CTX:
            if write and value is not None and self._is_pointer_value(value):
                raise Reject(EACCES, f"R{value_regno} leaks addr into ctx")
            self._check_ptr_off_reg(reg, regno, False)
            rule = ctx_access(self.prog_type, off, size, write)
            if rule is None or (ldsx and rule.ptr is not None):
                raise Reject(EACCES, f"invalid bpf_context access off={off} size={size}")
            if not write and value is not None:
                if rule.ptr is None:
                    value.mark_unknown()
                else:
                    value.mark_ptr(rule.ptr, maybe_null=rule.maybe_null)
                    if rule.maybe_null:
                        value.id = self._new_id()
        elif t == T.STACK:
            self._check_stack_bounds(regno, reg, off, size, write)
            if write:
                self._check_stack_write(pc, reg, off, size, value_regno, st_imm)
            else:
                self._check_stack_read(reg, off, size, value_regno)
        elif t in PKT_TYPES:
            if write and self.prog_type not in PKT_WRITE_TYPES:
                raise Reject(EACCES, "cannot write into packet")
            if write and value is not None and self._is_pointer_value(value):
                raise Reject(EACCES, f"R{value_regno} leaks addr into packet")
            self._check_packet_access(regno, reg, off, size, False)
            if not write and value is not None:
                value.mark_unknown()
        elif t == T.MAP_PTR:
            self._map_ptr_access(regno, reg, off, size, write, value)
        else:
            raise Reject(EACCES, f"R{regno} invalid mem access '{reg.type_str()}'")
        if not write and value is not None and value.type == T.SCALAR and size < BPF_REG_SIZE:
            if ldsx:
                rg.coerce_reg_to_size_sx(value.s, size)
            else:
                rg.coerce_reg_to_size(value.s, size * 8)

    def _map_ptr_access(
        self, regno: int, reg: Reg, off: int, size: int, write: bool, value: Reg | None
    ) -> None:
        """``check_ptr_to_map_access``: root may read the map's kernel struct (through BTF; here
        any read in its first 256 bytes gives an unknown scalar, an approximation)."""
        assert reg.map is not None
        struct = {
            MAP_TYPE_ARRAY: "bpf_array",
            MAP_TYPE_PROG_ARRAY: "bpf_array",
            MAP_TYPE_PERCPU_ARRAY: "bpf_array",
            MAP_TYPE_RINGBUF: "bpf_ringbuf_map",
        }.get(reg.map.type, "bpf_htab")
        if not self.priv:
            raise Reject(EPERM, f"'struct {struct}' access is allowed only to CAP_PERFMON and CAP_SYS_ADMIN")
        if write:
            raise Reject(EACCES, f"only read from {struct} is supported")
        if off < 0 or off + size > 256:
            raise Reject(EACCES, f"access beyond struct {struct} at off {off} size {size}")
        if value is not None:
            value.mark_unknown()

    def _check_ptr_alignment(self, reg: Reg, off: int, size: int, strict: bool) -> None:
        t = reg.type
        if t in PKT_TYPES:
            if not strict or size == 1:
                return
            reg_off = tn.add(reg.s.var_off, tn.const(2 + reg.off + off))
            if not tn.is_aligned(reg_off, size):
                raise Reject(
                    EACCES,
                    f"misaligned packet access off 2+{_tnum_str(reg.s.var_off)}+{reg.off}+{off} size {size}",
                )
            return
        desc = {T.MAP_KEY: "key ", T.MAP_VALUE: "value ", T.CTX: "context ", T.STACK: "stack "}.get(t, "")
        if t == T.STACK:
            strict = True
        if not strict or size == 1:
            return
        reg_off = tn.add(reg.s.var_off, tn.const(reg.off + off))
        if not tn.is_aligned(reg_off, size):
            raise Reject(
                EACCES, f"misaligned {desc}access off {_tnum_str(reg.s.var_off)}+{reg.off}+{off} size {size}"
            )

    # map values, memory regions, packets

    @staticmethod
    def _check_map_access_type(reg: Reg, off: int, size: int, write: bool) -> None:
        """``check_map_access_type``: BPF_F_RDONLY_PROG / BPF_F_WRONLY_PROG maps."""
        m = reg.map
        if m is None:
            return
        if write and m.flags & BPF_F_RDONLY_PROG:
            raise Reject(EACCES, f"write into map forbidden, value_size={m.value_size} off={off} size={size}")
        if not write and m.flags & BPF_F_WRONLY_PROG:
            raise Reject(EACCES, f"read from map forbidden, value_size={m.value_size} off={off} size={size}")

    def _check_map_region(
        self, regno: int, reg: Reg, off: int, size: int, zero_ok: bool, quiet: bool = False
    ) -> None:
        assert reg.map is not None
        self._check_mem_region(regno, reg, off, size, reg.map.value_size, zero_ok, quiet)

    def _check_mem_region(
        self, regno: int, reg: Reg, off: int, size: int, mem_size: int, zero_ok: bool, quiet: bool = False
    ) -> None:
        """``check_mem_region_access``."""
        s = reg.s
        if s.smin < 0 and (s.smin == S64_MIN or not _fits_s32(off + s.smin) or s.smin + off < 0):
            raise Reject(
                EACCES,
                f"R{regno} min value is negative, either use unsigned index or do a if (index >=0) check.",
            )
        detail = self._mem_bounds(reg, s.smin + off, size, mem_size, zero_ok)
        if detail:
            raise Reject(
                EACCES, f"R{regno} min value is outside of the allowed memory range", before=[detail]
            )
        if s.umax >= BPF_MAX_VAR_OFF:
            raise Reject(
                EACCES, f"R{regno} unbounded memory access, make sure to bounds check any such access"
            )
        detail = self._mem_bounds(reg, s.umax + off, size, mem_size, zero_ok)
        if detail:
            raise Reject(
                EACCES, f"R{regno} max value is outside of the allowed memory range", before=[detail]
            )

    @staticmethod
    def _mem_bounds(reg: Reg, off: int, size: int, mem_size: int, zero_ok: bool) -> str | None:
        """``__check_mem_access``: None when [off, off+size) fits, else its message."""
        size_ok = size > 0 or (size == 0 and zero_ok)
        if off >= 0 and size_ok and off + size <= mem_size:
            return None
        if reg.type == T.MAP_VALUE:
            return f"invalid access to map value, value_size={mem_size} off={off} size={size}"
        if reg.type == T.MAP_KEY:
            return f"invalid access to map key, key_size={mem_size} off={off} size={size}"
        if reg.type in PKT_TYPES:
            return f"invalid access to packet, off={off} size={size}, R?(id={reg.id},off={off},r={mem_size})"
        return f"invalid access to memory, mem_size={mem_size} off={off} size={size}"

    def _check_packet_access(self, regno: int, reg: Reg, off: int, size: int, zero_ok: bool) -> None:
        if reg.s.smin < 0:
            raise Reject(
                EACCES,
                f"R{regno} min value is negative, either use unsigned index or do a if (index >=0) check.",
            )
        detail = self._mem_bounds(reg, off, size, reg.range, zero_ok)
        if detail:
            raise Reject(
                EACCES,
                f"R{regno} offset is outside of the packet",
                before=[detail.replace("R?", f"R{regno}")],
            )

    # the stack

    def _check_stack_bounds(self, regno: int, reg: Reg, off: int, size: int, write: bool) -> None:
        """``check_stack_access_within_bounds`` (and ``grow_stack_state``)."""
        frame = self.state.frames[reg.frameno]
        extra = " write to" if write else " read from"
        s = reg.s
        if s.is_const():
            min_off = sx(s.value, 64) + off
            max_off = min_off + size
        else:
            if s.smax >= BPF_MAX_VAR_OFF or s.smin <= -BPF_MAX_VAR_OFF:
                raise Reject(EACCES, f"invalid unbounded variable-offset{extra} stack R{regno}")
            min_off = s.smin + off
            max_off = s.smax + off + size
        min_valid = -MAX_BPF_STACK if (write or self.priv) else -frame.allocated
        err = None
        if min_off < min_valid or min_off > -1:
            err = EACCES
        elif max_off > 0:
            err = EINVAL
        if err:
            if s.is_const():
                raise Reject(err, f"invalid{extra} stack R{regno} off={off} size={size}")
            raise Reject(
                err,
                f"invalid variable-offset{extra} stack R{regno} var_off={_tnum_str(s.var_off)} "
                f"off={off} size={size}",
            )
        frame.grow(-min_off)
        sub = frame.subprog
        need = (-min_off + 7) // 8 * 8
        if self.stack_depth[sub] < need:
            self.stack_depth[sub] = need

    def _check_stack_write(
        self, pc: int, reg: Reg, off: int, size: int, value_regno: int, st_imm: int | None
    ) -> None:
        frame = self.state.frames[reg.frameno]
        cur = self.state.cur
        if not reg.s.is_const():
            self._check_stack_write_var(frame, reg, off, size, value_regno)
            return
        off = sx(reg.s.value, 64) + off
        slot = -off - 1
        spi = slot // BPF_REG_SIZE
        s = frame.slot(spi)
        if (
            not self.priv
            and s.is_spill()
            and s.spilled is not None
            and s.spilled.type != T.SCALAR
            and size != BPF_REG_SIZE
        ):
            raise Reject(EACCES, "attempt to corrupt spilled pointer on stack")
        value = cur.regs[value_regno] if value_regno >= 0 else None
        if value is not None and off % BPF_REG_SIZE == 0 and value.type == T.SCALAR:
            self._save_register_state(s, value, size)
        elif value is None and off % BPF_REG_SIZE == 0 and st_imm is not None:
            tmp = Reg()
            tmp.mark_known(st_imm & U64)
            self._save_register_state(s, tmp, size)
        elif value is not None and value.is_pointer:
            if size != BPF_REG_SIZE:
                raise Reject(EACCES, "invalid size of register spill")
            if frame is not cur and value.type == T.STACK:
                raise Reject(EINVAL, "cannot spill pointers to stack into stack frame of the caller")
            self._save_register_state(s, value, size)
        else:
            typ = STACK_MISC
            if s.is_spill():
                s.types = [STACK_MISC if t == STACK_SPILL else t for t in s.types]
            s.spilled = None
            if (value is not None and value.is_null()) or (value is None and st_imm == 0):
                typ = STACK_ZERO
            for i in range(size):
                s.types[(slot - i) % BPF_REG_SIZE] = typ

    def _save_register_state(self, s: Slot, value: Reg, size: int) -> None:
        if value.type == T.SCALAR:
            fits = value.s.umax.bit_length() <= size * 8
            if fits and not value.id and not value.s.is_const():
                value.id = self._new_id()
            s.spilled = value.copy()
            if not fits:
                s.spilled.id = 0
        else:
            s.spilled = value.copy()
        for i in range(BPF_REG_SIZE - 1, BPF_REG_SIZE - 1 - size, -1):
            s.types[i] = STACK_SPILL
        for i in range(BPF_REG_SIZE - size):
            if s.types[i] == STACK_SPILL:
                s.types[i] = STACK_MISC

    def _check_stack_write_var(self, frame: Frame, reg: Reg, off: int, size: int, value_regno: int) -> None:
        """``check_stack_write_var_off``: every byte that may be written becomes MISC (ZERO stays
        when zero is written), spilled registers there are destroyed."""
        lo, hi = reg.s.smin + off, reg.s.smax + off + size
        value = self.state.cur.regs[value_regno] if value_regno >= 0 else None
        zero = value is not None and value.is_null()
        for i in range(lo, hi):
            slot = -i - 1
            spi = slot // BPF_REG_SIZE
            s = frame.slot(spi)
            k = slot % BPF_REG_SIZE
            if s.is_spill():
                s.types = [STACK_MISC if t == STACK_SPILL else t for t in s.types]
                s.spilled = None
            if not (zero and s.types[k] == STACK_ZERO):
                if s.types[k] == STACK_INVALID and not self.priv:
                    raise Reject(
                        EACCES,
                        f"uninit stack in range of var-offset write prohibited for !root; "
                        f"insn {self.pc}, var_off: {_tnum_str(reg.s.var_off)}, off: {off}, "
                        f"size: {size}",
                    )
                s.types[k] = STACK_MISC

    def _check_stack_read(self, reg: Reg, off: int, size: int, value_regno: int) -> None:
        frame = self.state.frames[reg.frameno]
        cur = self.state.cur
        value = cur.regs[value_regno] if value_regno >= 0 else None
        if not reg.s.is_const():
            # check_stack_read_var_off: every byte must be readable; the result is unknown
            lo, hi = reg.s.smin + off, reg.s.smax + off + size
            zeros = True
            for i in range(lo, hi):
                slot = -i - 1
                s = frame.stack.get(slot // BPF_REG_SIZE)
                t = s.types[slot % BPF_REG_SIZE] if s is not None else STACK_INVALID
                if t == STACK_ZERO:
                    continue
                zeros = False
                if t in (STACK_MISC, STACK_SPILL) or (t == STACK_INVALID and self.priv):
                    continue
                raise Reject(
                    EACCES,
                    f"invalid variable-offset read from stack R{value_regno} "
                    f"var_off={_tnum_str(reg.s.var_off)} off={off} size={size}",
                )
            if value is not None:
                if zeros:
                    value.mark_known(0)
                else:
                    value.mark_unknown()
            return
        off = sx(reg.s.value, 64) + off
        slot = -off - 1
        spi = slot // BPF_REG_SIZE
        s = frame.stack.get(spi) or Slot()
        types = s.types
        if s.is_spill():
            spilled = s.spilled
            assert spilled is not None
            spill_size = 1
            i = BPF_REG_SIZE - 1
            while i > 0 and types[i - 1] == STACK_SPILL:
                spill_size += 1
                i -= 1
            if size != BPF_REG_SIZE or spill_size != BPF_REG_SIZE:
                if spilled.type != T.SCALAR:
                    raise Reject(EACCES, "invalid size of register fill")
                if value is None:
                    return
                if size <= spill_size and _narrow_ok(off, size, spill_size):
                    value.assign(spilled)
                    if spilled.s.umax >= (1 << (size * 8)):
                        value.id = 0
                else:
                    spill_cnt = zero_cnt = 0
                    for i in range(size):
                        t = types[(slot - i) % BPF_REG_SIZE]
                        if t == STACK_SPILL:
                            spill_cnt += 1
                        elif t == STACK_MISC:
                            pass
                        elif t == STACK_ZERO:
                            zero_cnt += 1
                        elif t == STACK_INVALID and self.priv:
                            pass
                        else:
                            raise Reject(EACCES, f"invalid read from stack off {off}+{i} size {size}")
                    if spill_cnt == size and spilled.s.is_const() and spilled.s.value == 0:
                        value.mark_known(0)
                    elif zero_cnt == size:
                        value.mark_known(0)
                    else:
                        value.mark_unknown()
            elif value is not None:
                value.assign(spilled)
            elif self._is_pointer_value(spilled):
                raise Reject(EACCES, f"leaking pointer from stack off {off}")
            return
        nzero = 0
        for i in range(size):
            t = types[(slot - i) % BPF_REG_SIZE]
            if t == STACK_MISC:
                continue
            if t == STACK_ZERO:
                nzero += 1
                continue
            if t == STACK_INVALID and self.priv:
                continue
            raise Reject(EACCES, f"invalid read from stack off {off}+{i} size {size}")
        if value is not None:
            if nzero == size:
                value.mark_known(0)
            else:
                value.mark_unknown()


def _narrow_ok(off: int, size: int, spill_size: int) -> bool:
    """``bpf_stack_narrow_access_ok`` (little endian): the read starts at the spill's start."""
    return off % BPF_REG_SIZE == 0


def _good_pkt(state: State, dst: Reg, right_open: bool) -> None:
    """``find_good_pkt_pointers``: every packet pointer with ``dst``'s id gets the range."""
    if dst.off < 0 or (dst.off == 0 and right_open):
        return
    if dst.s.umax > MAX_PACKET_OFF or dst.s.umax + dst.off > MAX_PACKET_OFF:
        return
    new_range = dst.off + (1 if right_open else 0)
    for r in state.all_regs():
        if r.type == dst.type and r.id == dst.id:
            r.range = max(r.range, new_range)


def _fits_s64(v: int) -> bool:
    return -(1 << 63) <= v < (1 << 63)


def _widen_scalars(old: State, cur: State) -> None:
    """``widen_imprecise_scalars`` (every scalar counts as imprecise here): scalars of ``cur``
    that differ from the previous loop entry ``old`` become unknown."""
    for fo, fc in zip(old.frames, cur.frames, strict=False):
        for ro, rc in zip(fo.regs, fc.regs, strict=True):
            if ro.type == T.SCALAR and rc.type == T.SCALAR and ro.s != rc.s:
                rc.mark_unknown()


def _fits_s32(v: int) -> bool:
    return -(1 << 31) <= v < (1 << 31)


def _tnum_str(t: tn.Tnum) -> str:
    """``tnum_strn``: a constant as a number (decimal up to 65535), else ``(value; mask)``."""
    if t.mask == 0:
        return str(t.value) if t.value <= 0xFFFF else f"{t.value:#x}"
    return f"({t.value:#x}; {t.mask:#x})"


def verify(
    program: Sequence[RawInsn] | bytes | bytearray,
    *,
    prog_type: str = "socket_filter",
    maps: Sequence[Any] = (),
    privileged: bool = True,
    has_fd_array: bool = True,
    func_info: bool = False,
    entry: dict[int, Reg] | None = None,
    collect: bool = False,
) -> VerifierResult:
    """Verify one program as ``BPF_PROG_LOAD`` would (log level 1).

    ``maps`` are :class:`reference_vm.maps.MapSpec` (or anything with ``type``, ``key_size``,
    ``value_size``, ``max_entries``): ``lddw`` map_idx N is ``maps[N]``, map_fd F is
    ``maps[F - 3]``. ``privileged``: root (True) or the CAP_BPF-only mode. ``func_info``: the
    load carries BTF func_info (the kernel target adds it where the kernel requires it). The
    verdict is ``accept``, ``reject``, or ``unsupported`` (the program uses something this
    verifier does not model; ``message`` says what). ``entry`` replaces
    the entry registers (tests). ``collect`` records the joined abstract state of every pc for
    the witness mode (:mod:`.witness`).
    """
    slots = raw_program(bytes(program)) if isinstance(program, (bytes, bytearray)) else list(program)
    v = Verifier(
        slots,
        prog_type=prog_type,
        maps=maps,
        privileged=privileged,
        has_fd_array=has_fd_array,
        func_info=func_info,
        entry=entry,
        collect=collect,
    )
    return v.run()
