"""The verifier's passes before abstract interpretation, in the kernel's order (Linux 6.18
``bpf_check``): subprograms (``add_subprog_and_kfunc``: ``call to invalid destination``), jumps
and last instructions (``check_subprogs``), opcodes, reserved LDX fields and 64-bit immediates
(``resolve_pseudo_ldimm64``), then the control-flow graph (``check_cfg``: ``unreachable insn``,
``jump into the middle of ldimm64 insn``).

Work is done on raw slots (:class:`reference_vm.insn.RawInsn`), because the kernel judges raw
fields; rows come from the ISA table (:func:`reference_vm.insn.select_row`), never from opcode
bytes. Reserved-field problems of other classes are reported by the kernel only when the
abstract interpreter reaches the instruction; :func:`reserved_problem` gives that message.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ..errors import EncodingError
from ..insn import RawInsn, select_row
from ..isa import (
    BPF_ABS,
    BPF_IND,
    BPF_MEM,
    BPF_MEMSX,
    BPF_PSEUDO_FUNC,
    BPF_PSEUDO_MAP_FD,
    BPF_PSEUDO_MAP_IDX,
    BPF_PSEUDO_MAP_IDX_VALUE,
    BPF_PSEUDO_MAP_VALUE,
    BY_OPCODE,
    AluOp,
    Cls,
    JmpOp,
    Kind,
    OpDef,
    Use,
)

EINVAL, EACCES, E2BIG, EBADF, EPROTO, EPERM, EFAULT = (
    "EINVAL",
    "EACCES",
    "E2BIG",
    "EBADF",
    "EPROTO",
    "EPERM",
    "EFAULT",
)
BPF_MAX_VAR_OFF = 1 << 29


BPF_FUNC_TAIL_CALL, BPF_FUNC_LOOP = 12, 181


class Unsupported(Exception):
    """The program uses something bpfcheck's verifier does not model (a kfunc, a helper outside
    the table, callbacks): no verdict. Not a :class:`Reject`, so it is never mistaken for one."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Reject(Exception):
    """The verifier refuses the program: errno name and the kernel's message (the log line),
    plus lines the kernel prints before it (``Unreleased reference ...``)."""

    def __init__(
        self, errno: str, message: str, before: Sequence[str] = (), after: Sequence[str] = ()
    ) -> None:
        super().__init__(message)
        self.errno = errno
        self.message = message
        self.before = list(before)
        self.after = list(after)


def _cls(raw: RawInsn) -> int:
    return raw.opcode & 0x07


def _is_jmp_class(raw: RawInsn) -> bool:
    return _cls(raw) in (Cls.BPF_JMP, Cls.BPF_JMP32)


def _op(raw: RawInsn) -> int:
    return raw.opcode & 0xF0


def is_lddw(raw: RawInsn) -> bool:
    rows = BY_OPCODE.get(raw.opcode)
    if not rows:
        return False
    return rows[0].kind is Kind.LDDW


def _kind(raw: RawInsn) -> Kind | None:
    """The table's kind of a slot (None: not a Linux instruction)."""
    row = known_row(raw)
    return row.kind if row is not None else None


def is_pseudo_call(raw: RawInsn) -> bool:
    return _kind(raw) is Kind.CALL_LOCAL


def is_pseudo_func(raw: RawInsn) -> bool:
    return is_lddw(raw) and raw.src == BPF_PSEUDO_FUNC


def is_kfunc_call(raw: RawInsn) -> bool:
    return _kind(raw) is Kind.CALL_KFUNC


def _jump_dest(row: OpDef, raw: RawInsn, pc: int) -> int | None:
    """The pc a jump, local call or callback reference names (the field the table marks
    ``Use.JUMP``), else None."""
    if row.shape.off is Use.JUMP:
        return pc + 1 + raw.off
    if row.shape.imm is Use.JUMP:
        return pc + 1 + raw.imm
    return None


def known_row(raw: RawInsn) -> OpDef | None:
    """The table row of a slot, or None when the opcode/select field is not a Linux instruction.

    ``callx`` is in bpfcheck's table (bpf_conformance's callx group) but not in Linux's."""
    try:
        row = select_row(raw)
    except EncodingError:
        return None
    return None if row.kind is Kind.CALLX else row


def opcode_in_table(code: int) -> bool:
    """``bpf_opcode_in_insntable``: the opcode byte is a Linux instruction."""
    rows = BY_OPCODE.get(code)
    if not rows:
        return False
    return not all(r.kind is Kind.CALLX for r in rows)


def reserved_problem(raw: RawInsn) -> str | None:
    """The kernel's ``... uses reserved fields`` (or invalid atomic) message for a slot whose
    opcode is known, or None when every field the row does not use is zero and the selecting
    field is valid. Register numbers are not judged here (``R11 is invalid`` comes from
    check_reg_arg, in instruction order)."""
    rows = BY_OPCODE.get(raw.opcode)
    if not rows:
        return None
    row = known_row(raw)
    base = rows[0]
    if row is None:
        return _class_message(base, raw)
    for name, use in (
        ("dst", row.shape.dst),
        ("src", row.shape.src),
        ("off", row.shape.off),
        ("imm", row.shape.imm),
    ):
        if use is Use.ZERO and getattr(raw, name) != 0:
            return _class_message(row, raw)
    return None


def _class_message(row: OpDef, raw: RawInsn) -> str:
    kind = row.kind
    if kind in (Kind.ALU, Kind.MOVSX):
        return "BPF_MOV uses reserved fields" if row.alu is AluOp.BPF_MOV else "BPF_ALU uses reserved fields"
    if kind is Kind.NEG:
        return "BPF_NEG uses reserved fields"
    if kind is Kind.END:
        return "BPF_END uses reserved fields"
    if kind in (Kind.LOAD, Kind.LOADSX):
        return "BPF_LDX uses reserved fields"
    if kind is Kind.STORE_IMM:
        return "BPF_ST uses reserved fields"
    if kind is Kind.STORE_REG:
        return "BPF_STX uses reserved fields"
    if kind in (Kind.ATOMIC, Kind.LOAD_ACQ, Kind.STORE_REL):
        if raw.opcode in (0xDB, 0xC3) and known_row(raw) is None:  # W/DW atomics: imm selects
            return f"BPF_ATOMIC uses invalid atomic opcode {raw.imm & 0xFFFFFFFF:02x}"
        return "BPF_ATOMIC uses reserved fields"
    if kind is Kind.JA:
        return "BPF_JA uses reserved fields"
    if kind is Kind.EXIT:
        return "BPF_EXIT uses reserved fields"
    if kind in (Kind.CALL, Kind.CALL_LOCAL, Kind.CALL_KFUNC):
        return "BPF_CALL uses reserved fields"
    if kind in (Kind.LD_ABS, Kind.LD_IND):
        return "BPF_LD_[ABS|IND] uses reserved fields"
    if kind is Kind.MAY_GOTO:
        return f"invalid may_goto imm {raw.imm}"
    return "BPF_JMP/JMP32 uses reserved fields"


@dataclass
class Structure:
    """What the passes before do_check found."""

    slots: list[RawInsn]
    rows: list[OpDef | None]
    subprogs: list[int]  # start pcs, sorted, subprogs[0] == 0
    second_slot: set[int] = field(default_factory=set)  # pcs that are the 2nd half of an lddw
    lddw_maps: dict[int, tuple[int, int]] = field(default_factory=dict)  # pc -> (map index, value off|-1)
    prune_points: set[int] = field(default_factory=set)
    jmp_targets: set[int] = field(default_factory=set)
    force_checkpoint: set[int] = field(default_factory=set)
    #: ``calls_callback``: helper calls that run a callback (bpf_loop)
    callback_sites: set[int] = field(default_factory=set)
    has_tail_call: set[int] = field(default_factory=set)  # subprog indexes
    live_before: list[int] = field(default_factory=list)  # live register bit sets
    precise_before: list[int] = field(default_factory=list)  # registers whose value may matter
    #: whether a scalar spilled to the stack may matter (else pruning ignores spilled values)
    stack_precise: bool = True

    def subprog_of(self, pc: int) -> int:
        lo = 0
        for i, start in enumerate(self.subprogs):
            if start <= pc:
                lo = i
        return lo

    def subprog_end(self, idx: int) -> int:
        return self.subprogs[idx + 1] if idx + 1 < len(self.subprogs) else len(self.slots)


def analyse(
    slots: Sequence[RawInsn], maps: Sequence[object], has_fd_array: bool, func_info: bool = False
) -> Structure:
    """Run the pre-passes; raise :class:`Reject` with the kernel's message for the first problem.
    ``func_info``: the load carries BTF func_info (then tail calls in subprograms are allowed)."""
    slots = list(slots)
    n = len(slots)
    n_maps = len(maps)
    if n == 0:
        raise Reject(EINVAL, "")
    # add_subprog_and_kfunc
    starts = {0}
    for pc, raw in enumerate(slots):
        if is_pseudo_call(raw) or is_pseudo_func(raw):
            target = pc + raw.imm + 1
            if not 0 <= target < n:
                raise Reject(EINVAL, "call to invalid destination")
            starts.add(target)
        elif is_kfunc_call(raw):
            raise Unsupported("kernel function calls are not modelled by bpfcheck")
    subprogs = sorted(starts)
    # check_subprogs: like the kernel's, it runs before opcodes are validated, so it reads the
    # class and operation bits of every slot, known instruction or not (the only place here
    # that does; everything after resolve_pseudo_ldimm64 reads the table's rows)
    idx = 0
    start, end = 0, subprogs[1] if len(subprogs) > 1 else n
    for pc, raw in enumerate(slots):
        code = raw.opcode
        if _is_jmp_class(raw) and _op(raw) not in (JmpOp.BPF_EXIT, JmpOp.BPF_CALL):
            if code == Cls.BPF_JMP32 | JmpOp.BPF_JA:
                off = pc + raw.imm + 1
            else:
                off = pc + raw.off + 1
            if off < start or off >= end:
                raise Reject(EINVAL, f"jump out of range from insn {pc} to {off}")
        if pc == end - 1:
            if code not in (
                Cls.BPF_JMP | JmpOp.BPF_EXIT,
                Cls.BPF_JMP32 | JmpOp.BPF_JA,
                Cls.BPF_JMP | JmpOp.BPF_JA,
            ):
                raise Reject(EINVAL, "last insn is not an exit or jmp")
            idx += 1
            start = end
            end = subprogs[idx + 1] if idx + 1 < len(subprogs) else n
    # static subprograms are verified in their caller's context, which needs BTF for tail calls
    for pc, raw in enumerate(slots):
        if (
            not func_info
            and _kind(raw) is Kind.CALL
            and raw.imm == BPF_FUNC_TAIL_CALL
            and any(s <= pc for s in subprogs[1:])
        ):
            raise Reject(EINVAL, "tail_call is not allowed in subprogs without BTF")
    st = Structure(slots, [None] * n, subprogs)
    # resolve_pseudo_ldimm64
    pc = 0
    while pc < n:
        raw = slots[pc]
        cls = _cls(raw)
        if cls == Cls.BPF_LDX and ((raw.opcode & 0xE0) not in (BPF_MEM, BPF_MEMSX) or raw.imm != 0):
            raise Reject(EINVAL, "BPF_LDX uses reserved fields")
        if is_lddw(raw):
            nxt = slots[pc + 1] if pc + 1 < n else None
            if nxt is None or nxt.opcode or nxt.dst or nxt.src or nxt.off:
                raise Reject(EINVAL, "invalid bpf_ld_imm64 insn")
            src = raw.src
            if src not in (0, BPF_PSEUDO_FUNC):
                if src in (BPF_PSEUDO_MAP_VALUE, BPF_PSEUDO_MAP_IDX_VALUE):
                    pass
                elif src in (BPF_PSEUDO_MAP_FD, BPF_PSEUDO_MAP_IDX) and nxt.imm == 0:
                    pass
                else:
                    raise Reject(EINVAL, "unrecognized bpf_ld_imm64 insn")
                if src in (BPF_PSEUDO_MAP_IDX, BPF_PSEUDO_MAP_IDX_VALUE):
                    if not has_fd_array:
                        raise Reject(EPROTO, "fd_idx without fd_array is invalid")
                    index = raw.imm
                    if not 0 <= index < n_maps:
                        raise Reject(EBADF, f"fd {raw.imm} is not pointing to valid bpf_map")
                else:
                    from ..program import FIRST_MAP_FD

                    index = raw.imm - FIRST_MAP_FD
                    if not 0 <= index < n_maps:
                        raise Reject(EBADF, f"fd {raw.imm} is not pointing to valid bpf_map")
                value_off = -1
                if src in (BPF_PSEUDO_MAP_VALUE, BPF_PSEUDO_MAP_IDX_VALUE):
                    value_off = nxt.imm & 0xFFFFFFFF
                    if value_off >= BPF_MAX_VAR_OFF:
                        raise Reject(EINVAL, f"direct value offset of {value_off} is not allowed")
                    m = maps[index]
                    vs = getattr(m, "value_size", 0)
                    if getattr(m, "type", 0) != 2:  # only arrays have map_direct_value_addr
                        raise Reject(EINVAL, "no direct value access support for this map type")
                    if getattr(m, "max_entries", 0) != 1:  # array_map_direct_value_addr: -EOPNOTSUPP
                        raise Reject(
                            "ENOTSUPP",
                            f"invalid access to map value pointer, value_size={vs} off={value_off}",
                        )
                    if value_off >= vs:
                        raise Reject(
                            EINVAL, f"invalid access to map value pointer, value_size={vs} off={value_off}"
                        )
                st.lddw_maps[pc] = (index, value_off)
            st.rows[pc] = known_row(raw)
            st.second_slot.add(pc + 1)
            pc += 2
            continue
        if not opcode_in_table(raw.opcode):
            raise Reject(EINVAL, f"unknown opcode {raw.opcode:02x}")
        st.rows[pc] = known_row(raw)
        pc += 1
    _check_cfg(st)
    st.live_before = compute_live_regs(st)
    st.precise_before = compute_precise_regs(st)
    return st


def _successors(st: Structure, pc: int) -> list[int]:
    """check_cfg's ``visit_insn`` edges, from the table row (the second slot of an lddw, when
    jumped to, is an ordinary falling-through instruction, as for the kernel)."""
    raw = st.slots[pc]
    row = st.rows[pc]
    if row is None or (pc in st.second_slot and not is_lddw(raw)):
        return [pc + 1]  # a call/atomic whose select field is invalid: reported when reached
    if row.kind is Kind.EXIT:
        return []
    dest = _jump_dest(row, raw, pc)
    if row.kind is Kind.JA:
        assert dest is not None
        return [dest]
    return [pc + row.slots] if dest is None else [pc + row.slots, dest]


def _check_cfg(st: Structure) -> None:
    n = len(st.slots)
    seen = [False] * n
    stack = [0]
    seen[0] = True
    while stack:
        pc = stack.pop()
        raw = st.slots[pc]
        for w in _successors(st, pc):
            if not 0 <= w < n:
                raise Reject(EINVAL, f"jump out of range from insn {pc} to {w}")
            if not seen[w]:
                seen[w] = True
                stack.append(w)
        # prune and jump points (visit_insn)
        row = st.rows[pc]
        if row is None or (pc in st.second_slot and not is_lddw(raw)):
            continue
        k = row.kind
        dest = _jump_dest(row, raw, pc)
        if k is Kind.JA:
            assert dest is not None
            st.prune_points.add(dest)
            st.jmp_targets.add(dest)
        elif k in (Kind.CALL, Kind.CALL_LOCAL, Kind.CALL_KFUNC, Kind.CALLX):
            st.prune_points.add(pc + 1)
            if k is Kind.CALL_LOCAL:
                assert dest is not None
                st.prune_points.add(pc)
                st.prune_points.add(dest)
            if k is Kind.CALL and raw.imm == BPF_FUNC_TAIL_CALL:
                st.has_tail_call.add(st.subprog_of(pc))
            if k is Kind.CALL and raw.imm == BPF_FUNC_LOOP:  # visit_insn: a sync callback call
                st.callback_sites.add(pc)
                st.force_checkpoint.add(pc)
                st.prune_points.add(pc)
        elif k in (Kind.JCOND, Kind.MAY_GOTO):
            assert dest is not None
            st.prune_points.add(pc)
            st.prune_points.add(dest)  # push_insn marks BRANCH targets
            if k is Kind.MAY_GOTO:
                st.force_checkpoint.add(pc)
        elif dest is not None:  # lddw of a callback (BPF_PSEUDO_FUNC)
            st.prune_points.add(pc + 2)
            st.prune_points.add(dest)
    pc = 0
    while pc < n:
        if not seen[pc]:
            raise Reject(EINVAL, f"unreachable insn {pc}")
        if is_lddw(st.slots[pc]):
            if pc + 1 < n and seen[pc + 1]:
                raise Reject(EINVAL, f"jump into the middle of ldimm64 insn {pc}")
            pc += 2
            continue
        pc += 1


def compute_live_regs(st: Structure) -> list[int]:
    """Registers possibly read before written from each pc (``compute_live_registers``),
    per subprogram; calls read r1-r5 and define r0-r5, exit reads r0."""
    n = len(st.slots)
    use = [0] * n
    defs = [0] * n
    succ: list[list[int]] = [[] for _ in range(n)]
    all_args = 0b111110
    for pc in range(n):
        raw = st.slots[pc]
        row = st.rows[pc]
        if pc in st.second_slot:
            continue
        if row is None:
            use[pc] = 0x7FF
            succ[pc] = [pc + 1] if pc + 1 < n else []
            continue
        k = row.kind
        d, s = 1 << raw.dst if raw.dst <= 10 else 0, 1 << raw.src if raw.src <= 10 else 0
        if k is Kind.ALU:
            if row.alu is AluOp.BPF_MOV:
                use[pc] = s if row.source else 0
            else:
                use[pc] = d | (s if row.source else 0)
            defs[pc] = d
        elif k in (Kind.NEG, Kind.END):
            use[pc], defs[pc] = d, d
        elif k is Kind.MOVSX:
            use[pc], defs[pc] = s, d
        elif k in (Kind.LOAD, Kind.LOADSX, Kind.LOAD_ACQ):
            use[pc], defs[pc] = s, d
        elif k is Kind.STORE_IMM:
            use[pc] = d
        elif k in (Kind.STORE_REG, Kind.STORE_REL):
            use[pc] = d | s
        elif k is Kind.ATOMIC:
            use[pc] = d | s | (1 if row.atomic == 0xF0 else 0)
            if row.fetch:
                defs[pc] = 1 if row.atomic == 0xF0 else s
        elif k is Kind.LDDW:
            defs[pc] = d
        elif k in (Kind.LD_ABS, Kind.LD_IND):
            use[pc] = (1 << 6) | (s if k is Kind.LD_IND else 0)
            defs[pc] = 0b111111
        elif k is Kind.JCOND:
            use[pc] = d | (s if row.source else 0)
        elif k in (Kind.CALL, Kind.CALL_LOCAL, Kind.CALL_KFUNC):
            use[pc], defs[pc] = all_args, 0b111111
        elif k is Kind.EXIT:
            use[pc] = 1
        succ[pc] = [
            w for w in _successors(st, pc) if 0 <= w < n and not (k is Kind.CALL_LOCAL and w != pc + 1)
        ]
        if k is Kind.EXIT:
            succ[pc] = []
    live = [0] * (n + 1)
    changed = True
    while changed:
        changed = False
        for pc in range(n - 1, -1, -1):
            if pc in st.second_slot:
                continue
            out = 0
            for w in succ[pc]:
                out |= live[w]
            new = use[pc] | (out & ~defs[pc])
            if new != live[pc]:
                live[pc] = new
                changed = True
    for pc in st.second_slot:
        if pc < n:
            live[pc] = live[pc + 1] if pc + 1 < n else 0
    return live[:n]


def compute_precise_regs(st: Structure) -> list[int]:
    """A static stand-in for the kernel's precision tracking (``mark_chain_precision``): the
    registers whose *value* may reach a check from each pc — a memory access address, pointer
    arithmetic, a branch condition, a helper or subprogram argument, a subprogram's return
    value — directly or through moves, ALU operations and stack spills/fills. State pruning may
    ignore the value of any other scalar (the kernel ignores every scalar it has not marked
    precise, which is at most this set). Backward data flow to a fixed point."""
    n = len(st.slots)
    main_end = st.subprog_end(0)
    succ: list[list[int]] = []
    for pc in range(n):
        row = st.rows[pc]
        if pc in st.second_slot or row is None:
            succ.append([pc + 1] if pc + 1 < n else [])
            continue
        if row.kind is Kind.EXIT:
            succ.append([])
        else:
            succ.append(
                [
                    w
                    for w in _successors(st, pc)
                    if 0 <= w < n and not (row.kind is Kind.CALL_LOCAL and w != pc + 1)
                ]
            )
    rel = [0] * n
    stack_rel = False
    changed = True
    while changed:
        changed = False
        for pc in range(n - 1, -1, -1):
            if pc in st.second_slot:
                continue
            out = 0
            for w in succ[pc]:
                out |= rel[w]
            new = _precise_transfer(st, pc, out, stack_rel, pc >= main_end)
            if new < 0:  # a fill whose value matters: stored values matter too
                new = ~new
                if not stack_rel:
                    stack_rel = True
                    changed = True
            if new != rel[pc]:
                rel[pc] = new
                changed = True
    for pc in st.second_slot:
        if pc < n:
            rel[pc] = rel[pc + 1] if pc + 1 < n else 0
    # a spilled scalar matters when a load's result may reach a check, or when a helper may read
    # it from memory (a map key decides whether lookup's null check is elided, ...); bpf_loop
    # reads none
    st.stack_precise = stack_rel or any(
        st.rows[pc] is not None
        and st.rows[pc].kind in (Kind.CALL, Kind.CALL_KFUNC)  # type: ignore[union-attr]
        and not (st.slots[pc].src == 0 and st.slots[pc].imm == BPF_FUNC_LOOP)
        for pc in range(n)
        if pc not in st.second_slot
    )
    return rel


def _precise_transfer(st: Structure, pc: int, out: int, stack_rel: bool, in_subprog: bool) -> int:
    """Relevant registers before ``pc`` given those after; a negative result ``~x`` means x and
    "a fill from the stack is relevant"."""
    raw = st.slots[pc]
    row = st.rows[pc]
    if row is None:
        return 0x7FF
    k = row.kind
    d = 1 << raw.dst if raw.dst <= 10 else 0
    s = 1 << raw.src if raw.src <= 10 else 0
    x = row.source != 0
    if k is Kind.ALU:
        if row.alu is AluOp.BPF_MOV:
            return (out & ~d) | ((s if x else 0) if out & d else 0)
        return out | ((d | (s if x else 0)) if out & d else 0)
    if k in (Kind.NEG, Kind.END):
        return out
    if k is Kind.MOVSX:
        return (out & ~d) | (s if out & d else 0)
    if k in (Kind.LOAD, Kind.LOADSX, Kind.LOAD_ACQ):
        res = (out & ~d) | s
        return ~res if out & d else res
    if k is Kind.STORE_IMM:
        return out | d
    if k in (Kind.STORE_REG, Kind.STORE_REL):
        return out | d | (s if stack_rel else 0)
    if k is Kind.ATOMIC:
        res = out | d | s | (1 if row.atomic == 0xF0 else 0)
        return ~res if row.fetch else res
    if k is Kind.LDDW:
        return out & ~d
    if k in (Kind.LD_ABS, Kind.LD_IND):
        return (out & ~0b111111) | (1 << 6) | (s if k is Kind.LD_IND else 0)
    if k is Kind.JCOND:
        return out | d | (s if x else 0)
    if k in (Kind.CALL, Kind.CALL_LOCAL, Kind.CALL_KFUNC):
        return (out & ~0b111111) | 0b111110
    if k is Kind.EXIT:
        return 1 if in_subprog else 0
    return out


def ldx_mode_ok(raw: RawInsn) -> bool:  # pragma: no cover - kept for symmetry with the kernel's checks
    return (raw.opcode & 0xE0) in (BPF_MEM, BPF_MEMSX, BPF_ABS, BPF_IND)
