#!/usr/bin/env python3
"""Generate the verifier corpus (corpora/verifier/) with the live kernel's verdicts.

Each case is a small program modelled on a test_verifier topic (ALU bounds, branches, loops,
stack, ctx, map values and null checks, helper arguments, calls and frames, packets, ring
buffer references, privilege, structure). The program is loaded into the running kernel with
``BPF_PROG_LOAD`` twice: as root (this process) and from a child that keeps only CAP_BPF +
CAP_NET_ADMIN (:mod:`conformance.kernel.caps`). The kernel's verdict, errno and message (the
last-but-one log line, :func:`conformance.kernel.syscall.log_message`) become the case's
``expect.verifier``; bpfcheck's own verifier is never consulted for expectations.

Safety: every program is built here from the ISA table (assembled text or explicit fields);
nothing random reaches the kernel. Malformed encodings (reserved fields, unknown opcodes) are
hand-written slots, judged by the kernel's verifier before anything runs; no program is run.

Output: ``corpora/verifier/<category>.yaml`` (whole-program cases, docs/case-format.md) and
``corpora/verifier/structure_raw/*.data`` (programs the assembler cannot express, with the
kernel's message as ``-- error``). ``--only REGEX`` restricts the cases; ``--list`` lists them.
Agreement of bpfcheck's verifier with the recorded verdicts: ``python -m
conformance.targets.verifier compare corpora/verifier``.

    python scripts/gen_verifier_corpus.py            # record and write (needs root + bpf())
"""

from __future__ import annotations

import argparse
import ctypes
import datetime
import json
import os
import platform
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from reference_vm.insn import RawInsn, raw_program  # noqa: E402

OUT = REPO / "corpora" / "verifier"
MAP_TYPES = {
    "hash": 1,
    "array": 2,
    "prog_array": 3,
    "perf_event_array": 4,
    "percpu_hash": 5,
    "percpu_array": 6,
    "lru_hash": 9,
    "ringbuf": 27,
}
PROG_TYPES = {"socket_filter": 1, "sched_cls": 3, "xdp": 6, "raw_tracepoint": 17}


@dataclass
class MapDef:
    name: str
    type: str
    key_size: int
    value_size: int
    max_entries: int


@dataclass
class Case:
    name: str
    category: str
    asm: str | None = None
    raw: list[tuple[int, int, int, int, int]] | None = None
    prog_type: str = "socket_filter"
    maps: list[MapDef] = field(default_factory=list)
    description: str = ""
    #: context bytes for the execution targets (the kernel's verdict does not depend on them)
    ctx: bytes | None = None
    #: run options for the execution targets: ``budget`` (may_goto loops run BPF_MAX_LOOPS
    #: iterations), ``timeout`` (loading at the complexity limit takes seconds in Python)
    options: dict[str, int] = field(default_factory=dict)


# --- case families ------------------------------------------------------------------------------

A8 = MapDef("arr8", "array", 4, 8, 4)
A48 = MapDef("arr48", "array", 4, 48, 4)
H8 = MapDef("hash8", "hash", 8, 8, 16)
H16 = MapDef("hash16", "hash", 8, 16, 16)
RB = MapDef("rb", "ringbuf", 0, 0, 4096)
PA = MapDef("jmp_table", "prog_array", 4, 4, 4)

LOOKUP = """r1 = 0
*(u64 *)(r10 - 8) = r1
r2 = r10
r2 += -8
r1 = {map} ll
call bpf_map_lookup_elem
"""
# a lookup whose value pointer is in r6 and the exit path is "r0 = 0; exit"
WITH_VALUE = (
    LOOKUP
    + """if r0 == 0 goto out
r6 = r0
{body}
out:
r0 = 0
exit
"""
)


def lookup(map_name: str) -> str:
    return LOOKUP.format(
        map=f"r1 = map_idx({map_name})".split("= ", 1)[1] if False else f"map_idx({map_name})"
    )


def with_value(map_name: str, body: str) -> str:
    return WITH_VALUE.format(map=f"map_idx({map_name})", body=body.strip())


def _lookup_prefix(map_name: str) -> str:
    return LOOKUP.format(map=f"map_idx({map_name})").replace("r1 = map_idx", "r1 = map_idx")


def fam_alu_bounds() -> Iterator[Case]:
    """An unknown value from the map, narrowed by one ALU op, then used as an offset into a
    48-byte value: accepted iff the kernel's bounds prove ``off + 1 <= 48`` (and off >= 0)."""
    ops = [
        ("&=", [7, 15, 31, 47, 48, 63, 0x2F0, -1]),
        ("%=", [8, 48, 49]),
        ("/=", [2, 8]),
        (">>=", [1, 2, 3, 58, 59, 60]),
        ("s>>=", [58, 59, 60, 61]),
        ("<<=", [1, 2]),
    ]
    n = 0
    for width in ("r", "w"):
        for op, consts in ops:
            for k in consts:
                for load in ("u8", "u16", "u32", "u64"):
                    if op in ("<<=",) and load == "u64":
                        continue
                    n += 1
                    pre = f"r1 = *({load} *)(r6 + 0)"
                    opline = f"{width}1 {op} {k}"
                    body = f"{pre}\n{opline}\nr6 += r1\nr0 = *(u8 *)(r6 + 0)"
                    if width == "w" and op == "s>>=" and k > 31:
                        continue
                    if width == "w" and op in (">>=", "<<=") and k > 31:
                        continue
                    name = f"alu_{'alu32' if width == 'w' else 'alu64'}_{_opname(op)}_{_kname(k)}_{load}"
                    yield Case(
                        name,
                        "alu_bounds",
                        with_value("arr48", body),
                        maps=[A48],
                        description=f"{load} from a map value, then {opline}: a safe offset into 48 bytes?",
                    )
    # chains of two ops
    chains = [
        ("&= 0xff", "+= 10"),
        ("&= 0xf", "*= 3"),
        ("&= 0xf", "*= 4"),
        ("&= 7", "<<= 3"),
        ("&= 0x1f", "-= 1"),
        ("&= 0x1f", "+= 17"),
        ("&= 0x1f", "+= 16"),
        ("|= 1", "&= 0x2f"),
        ("&= 0x3f", "^= 0x10"),
        ("&= 0x3f", "^= 0x30"),
        (">>= 58", "+= 1"),
        ("&= 0xf", "s>>= 1"),
        ("&= 0x10", "|= 0x1f"),
        ("&= 0x1f", "|= 0x10"),
        ("= -r1", "&= 0x1f"),
        ("&= 0x2f", "neg"),
        ("&= 0xff", "/= 6"),
        ("&= 0xff", "%= 47"),
        ("&= 0xff", "%= 48"),
        ("&= 0xffff", ">>= 10"),
        ("&= 0xffff", ">>= 11"),
        ("&= 0x7", "*= 7"),
        ("&= 0x7", "*= 6"),
        ("&= 0xf", "<<= 2"),
        ("&= 0xf", "<<= 1"),
        ("&= 0x2f", "sub8"),
        ("&= 0x1f", "add_self"),
        ("&= 0xf", "mul_self"),
    ]
    for w in ("r", "w"):
        for a, b in chains:
            lines = ["r1 = *(u64 *)(r6 + 0)"]
            for part in (a, b):
                if part == "neg":
                    lines.append(f"{w}1 = -{w}1")
                elif part == "= -r1":
                    lines.append(f"{w}1 = -{w}1")
                elif part == "sub8":
                    lines.append(f"{w}1 -= 8")
                elif part == "add_self":
                    lines.append(f"{w}1 += {w}1")
                elif part == "mul_self":
                    lines.append(f"{w}1 *= {w}1")
                else:
                    lines.append(f"{w}1 {part}")
            body = "\n".join(lines) + "\nr6 += r1\nr0 = *(u8 *)(r6 + 0)"
            name = f"alu_chain_{'alu32' if w == 'w' else 'alu64'}_{_slug(a)}_{_slug(b)}"
            yield Case(
                name,
                "alu_bounds",
                with_value("arr48", body),
                maps=[A48],
                description=f"{a} then {b} on an unknown u64 before indexing 48 bytes",
            )
    # known constants through every op: the result indexes the value
    for w in ("r", "w"):
        for op in ("+=", "-=", "*=", "/=", "%=", "|=", "&=", "^=", "<<=", ">>=", "s>>="):
            for a, b in ((40, 7), (50, 3), (3, 50), (0x30, 0x10), (1, 5), (47, 1)):
                if op in ("<<=", ">>=", "s>>=") and b > 31:
                    continue
                body = f"{w}1 = {a}\n{w}1 {op} {b}\nr6 += r1\nr0 = *(u8 *)(r6 + 0)"
                name = f"alu_const_{'alu32' if w == 'w' else 'alu64'}_{_opname(op)}_{a}_{b}"
                yield Case(
                    name,
                    "alu_bounds",
                    with_value("arr48", body),
                    maps=[A48],
                    description=f"constants: {a} {op} {b} as an offset into 48 bytes",
                )


def fam_branches() -> Iterator[Case]:
    """An unknown u64 refined by one conditional jump, used as an offset into 48 bytes in the
    jump-taken or fall-through branch: the kernel's branch refinement decides."""
    conds = ["==", "!=", ">", ">=", "<", "<=", "s>", "s>=", "s<", "s<=", "&"]
    for w in ("r", "w"):
        for cond in conds:
            for k in (0, 1, 47, 48, -1):
                if cond == "&" and k not in (0, 1, 47):
                    continue
                for branch in ("taken", "fallthrough"):
                    lines = ["r1 = *(u64 *)(r6 + 0)"]
                    if w == "w":
                        lines.append("w1 = w1")
                    if branch == "taken":
                        lines.append(f"if {w}1 {cond} {k} goto use")
                        lines.append("goto out")
                    else:
                        lines.append(f"if {w}1 {cond} {k} goto out")
                    lines.append("use: r6 += r1")
                    lines.append("r0 = *(u8 *)(r6 + 0)")
                    body = "\n".join(lines)
                    name = f"jmp_{'jmp32' if w == 'w' else 'jmp64'}_{_condname(cond)}_{_kname(k)}_{branch}"
                    yield Case(
                        name,
                        "branches",
                        with_value("arr48", body),
                        maps=[A48],
                        description=f"index refined by 'if {w}1 {cond} {k}' ({branch} branch)",
                    )
    # two-sided bounds and register comparisons
    for lo, hi in ((0, 47), (1, 47), (0, 48), (-1, 47), (10, 20), (40, 50)):
        for signed in (False, True):
            c1, c2 = ("s<", "s>") if signed else ("<", ">")
            body = (
                f"r1 = *(u64 *)(r6 + 0)\nif r1 {c1} {lo} goto out\nif r1 {c2} {hi} goto out\n"
                "r6 += r1\nr0 = *(u8 *)(r6 + 0)"
            )
            name = f"jmp_range_{'s' if signed else 'u'}_{_kname(lo)}_{_kname(hi)}"
            yield Case(
                name,
                "branches",
                with_value("arr48", body),
                maps=[A48],
                description=f"index checked against [{lo}, {hi}] ({'signed' if signed else 'unsigned'})",
            )
    for cond in ("<", "<=", ">", "s<", "s<=", "!="):
        for bound in (47, 48):
            body = (
                f"r1 = *(u64 *)(r6 + 0)\nr2 = {bound}\nif r1 {cond} r2 goto use\ngoto out\n"
                "use: r6 += r1\nr0 = *(u8 *)(r6 + 0)"
            )
            yield Case(
                f"jmp_reg_{_condname(cond)}_{bound}",
                "branches",
                with_value("arr48", body),
                maps=[A48],
                description=f"index compared with a register holding {bound}",
            )
    # linked registers: a copy learns the bounds of the checked register
    for check in ("r2", "r1"):
        body = f"r1 = *(u64 *)(r6 + 0)\nr2 = r1\nif {check} > 40 goto out\nr6 += r1\nr0 = *(u8 *)(r6 + 0)"
        yield Case(
            f"jmp_linked_{check}",
            "branches",
            with_value("arr48", body),
            maps=[A48],
            description=f"r2 = r1; the check on {check} bounds r1 through scalar ids",
        )
    # dead branches: constant conditions (the other branch would be unsafe)
    for cond, k, v in (("==", 5, 5), ("==", 5, 6), (">", 3, 4), ("s<", -1, -2), ("&", 2, 3), ("&", 4, 3)):
        asm = f"r1 = {v}\nif r1 {cond} {k} goto l\nr0 = 0\nexit\nl: r0 = *(u64 *)(r10 - 64)\nr0 = 0\nexit"
        yield Case(
            f"jmp_dead_{_condname(cond)}_{_kname(k)}_{_kname(v)}",
            "branches",
            asm,
            description="a constant condition: the kernel only follows the possible branch",
        )


def fam_loops() -> Iterator[Case]:
    for bound in (1, 4, 10, 64, 100, 1000):
        for cond in ("<", "!=", "<="):
            asm = f"r0 = 0\nl: r0 += 1\nif r0 {cond} {bound} goto l\nexit"
            yield Case(
                f"loop_count_{_condname(cond)}_{bound}",
                "loops",
                asm,
                description=f"a counted loop r0 {cond} {bound}",
            )
    for step in (1, 2, 3, 7):
        asm = f"r0 = 0\nr1 = 0\nl: r1 += {step}\nr0 += r1\nif r1 < 30 goto l\nexit"
        yield Case(f"loop_step_{step}", "loops", asm, description=f"a loop stepping by {step}")
    yield Case(
        "loop_infinite_same",
        "loops",
        "r0 = 0\nl: if r0 == 0 goto l\nexit",
        description="a loop whose state never changes",
    )
    yield Case(
        "loop_infinite_body",
        "loops",
        "r0 = 0\nl: r1 = 1\nif r0 == 0 goto l\nexit",
        description="a loop body that does not change the loop condition",
    )
    yield Case(
        "loop_infinite_ja",
        "loops",
        "r0 = 0\nl: r1 = r0\ngoto l\nexit",
        description="an unconditional back-edge",
    )
    yield Case(
        "loop_unbounded_ctx",
        "loops",
        "r0 = 0\nr1 = *(u32 *)(r1 + 0)\nl: r0 += 1\nif r0 != r1 goto l\nexit",
        options={"timeout": 300},
        description="a loop bounded by an unknown value: too many states",
    )
    yield Case(
        "loop_too_long",
        "loops",
        "r0 = 0\nl: r0 += 1\nif r0 < 1000000 goto l\nexit",
        options={"timeout": 300},
        description="a loop of a million iterations exceeds the complexity limit",
    )
    yield Case(
        "loop_nested",
        "loops",
        "r0 = 0\nr1 = 0\no: r2 = 0\ni: r2 += 1\nr0 += 1\nif r2 < 5 goto i\nr1 += 1\nif r1 < 5 goto o\nexit",
        description="nested counted loops",
    )
    yield Case(
        "loop_down", "loops", "r0 = 10\nl: r0 -= 1\nif r0 s> 0 goto l\nexit", description="a count-down loop"
    )
    yield Case(
        "loop_may_goto",
        "loops",
        "r0 = 0\nl: may_goto out\nr0 += 1\ngoto l\nout: exit",
        options={"budget": 30_000_000, "timeout": 120},
        description="an open-ended loop bounded by may_goto",
    )
    yield Case(
        "loop_may_goto_const",
        "loops",
        "r0 = 0\nl: may_goto out\nr1 = 1\ngoto l\nout: exit",
        options={"budget": 30_000_000, "timeout": 120},
        description="may_goto around a body that changes nothing",
    )
    for n in (3, 8, 15, 16):
        body = "\n".join(f"if r1 & {1 << i} goto +1\nr0 += 1" for i in range(n))
        asm = f"r1 = *(u32 *)(r1 + 0)\nr0 = 0\n{body}\nexit"
        yield Case(
            f"branches_chain_{n}",
            "loops",
            asm,
            description=f"{n} sequential diamonds on unknown bits",
            options={"timeout": 120} if n >= 15 else {},
        )
    for n in (4, 8):
        body = "\n".join(f"if r1 & {1 << i} goto +1\nr2 = {i}" for i in range(n))
        asm = f"r1 = *(u32 *)(r1 + 0)\nr0 = 0\nr2 = 0\n{body}\nr0 = r2\nexit"
        yield Case(
            f"branches_chain_consts_{n}",
            "loops",
            asm,
            description=f"{n} diamonds assigning different constants",
        )


def fam_stack() -> Iterator[Case]:
    for size, sfx in ((1, "u8"), (2, "u16"), (4, "u32"), (8, "u64")):
        for off in (-512, -516, -8, -4, -2, -1, 0, 8, -6, -3, -511, -264):
            yield Case(
                f"stack_write_{sfx}_{_kname(off)}",
                "stack",
                f"r0 = 0\n*({sfx} *)(r10 {_off(off)}) = r0\nexit",
                description=f"a {size}-byte store at fp{off}",
            )
            yield Case(
                f"stack_read_init_{sfx}_{_kname(off)}",
                "stack",
                f"r0 = 0\n*(u64 *)(r10 - 8) = r0\n*(u64 *)(r10 - 16) = r0\nr0 = *({sfx} *)(r10 {_off(off)})\n"
                "r0 = 0\nexit",
                description=f"a {size}-byte load at fp{off} after initialising fp-16..fp-1",
            )
        for off in (-8, -16, -64, -512):
            yield Case(
                f"stack_read_uninit_{sfx}_{_kname(off)}",
                "stack",
                f"r0 = *({sfx} *)(r10 {_off(off)})\nr0 = 0\nexit",
                description="a load from stack nothing was written to (root: allowed)",
            )
            yield Case(
                f"stack_st_imm_{sfx}_{_kname(off)}",
                "stack",
                f"*({sfx} *)(r10 {_off(off)}) = 7\nr0 = *({sfx} *)(r10 {_off(off)})\nexit",
                description="store an immediate, load it back",
            )
    # partial initialisation
    for w, r in ((4, 8), (2, 4), (1, 8), (4, 4), (8, 4)):
        ws, rs = _sfx(w), _sfx(r)
        yield Case(
            f"stack_partial_w{w}_r{r}",
            "stack",
            f"r0 = 1\n*({ws} *)(r10 - 8) = r0\nr0 = *({rs} *)(r10 - 8)\nexit",
            description=f"write {w} bytes at fp-8, read {r}",
        )
    # spills and fills
    for reg, what in (("r1", "ctx"), ("r10", "fp")):
        for r in (8, 4, 1):
            yield Case(
                f"stack_spill_{what}_fill{r}",
                "stack",
                f"*(u64 *)(r10 - 8) = {reg}\nr0 = *({_sfx(r)} *)(r10 - 8)\nr0 = 0\nexit",
                description=f"spill a {what} pointer, fill {r} bytes",
            )
        yield Case(
            f"stack_spill_{what}_partial_overwrite",
            "stack",
            f"*(u64 *)(r10 - 8) = {reg}\nr0 = 0\n*(u32 *)(r10 - 8) = r0\nr0 = 0\nexit",
            description=f"overwrite half of a spilled {what} pointer",
        )
        yield Case(
            f"stack_spill_{what}_use",
            "stack",
            f"*(u64 *)(r10 - 16) = {reg}\nr2 = *(u64 *)(r10 - 16)\nr0 = *(u32 *)(r2 - 4)\nexit"
            if what == "fp"
            else f"*(u64 *)(r10 - 16) = {reg}\nr2 = *(u64 *)(r10 - 16)\nr0 = *(u32 *)(r2 + 0)\nexit",
            description=f"spill a {what} pointer and use the fill",
        )
    yield Case(
        "stack_spill_misaligned_ptr",
        "stack",
        "*(u32 *)(r10 - 12) = r1\nr0 = 0\nexit",
        description="a 4-byte store of a pointer",
    )
    for k in (4, 8, 16):
        yield Case(
            f"stack_spill_scalar_{k}",
            "stack",
            f"r1 = *(u32 *)(r1 + 0)\nr1 &= {k - 1}\n*(u64 *)(r10 - 8) = r1\nr2 = *(u64 *)(r10 - 8)\n"
            "r3 = r10\nr3 += -16\nr3 += r2\nr0 = *(u8 *)(r3 + 0)\nexit",
            description=f"a bounded scalar (0..{k - 1}) survives a spill/fill and indexes the stack",
        )
    # variable offsets into the stack
    for mask, base in ((7, -16), (15, -16), (7, -8), (0xFF, -256), (3, -4)):
        yield Case(
            f"stack_var_write_{mask}_{_kname(base)}",
            "stack",
            f"r2 = *(u32 *)(r1 + 0)\nr2 &= {mask}\nr3 = r10\nr3 += {base}\nr3 += r2\nr0 = 0\n"
            "*(u8 *)(r3 + 0) = r0\nexit",
            description=f"a store at fp{base} + (unknown & {mask})",
        )
        yield Case(
            f"stack_var_read_{mask}_{_kname(base)}",
            "stack",
            "r0 = 0\n"
            + "".join(f"*(u64 *)(r10 - {8 * i})= r0\n" for i in range(1, 33))
            + f"r2 = *(u32 *)(r1 + 0)\nr2 &= {mask}\nr3 = r10\nr3 += {base}\nr3 += r2\n"
            "r0 = *(u8 *)(r3 + 0)\nexit",
            description=f"a load at fp{base} + (unknown & {mask})",
        )
    yield Case("stack_fp_sub", "stack", "r0 = r10\nr0 -= 8\nr0 = 0\nexit", description="fp minus a constant")
    yield Case(
        "stack_fp_sub_reg",
        "stack",
        "r1 = 8\nr0 = r10\nr0 -= r1\nr0 = 0\nexit",
        description="fp minus a register",
    )
    yield Case(
        "stack_ptr_oob_arith",
        "stack",
        "r0 = r10\nr0 += -600\nr0 = 0\nexit",
        description="a stack pointer moved below the stack",
    )
    yield Case(
        "stack_ptr_oob_access",
        "stack",
        "r2 = r10\nr2 += -600\nr0 = *(u8 *)(r2 + 100)\nexit",
        description="a stack pointer moved below the stack, accessed back inside",
    )


def fam_ctx() -> Iterator[Case]:
    sweep = {
        "socket_filter": [
            0,
            2,
            4,
            8,
            16,
            40,
            48,
            52,
            56,
            64,
            66,
            68,
            72,
            76,
            80,
            84,
            88,
            140,
            144,
            152,
            160,
            164,
            168,
            176,
            180,
            184,
            188,
            192,
            200,
            -4,
        ],
        "sched_cls": [
            0,
            2,
            4,
            8,
            12,
            16,
            32,
            44,
            48,
            56,
            64,
            68,
            72,
            76,
            80,
            84,
            140,
            152,
            160,
            164,
            168,
            176,
            180,
            184,
            192,
        ],
        "xdp": [0, 2, 4, 8, 12, 16, 20, 24],
        "raw_tracepoint": [0, 4, 8, 88, 92, 96],
    }
    for pt, offs in sweep.items():
        for off in offs:
            for size in (1, 2, 4, 8):
                if off % size and not (off == 2 and size == 4):
                    continue
                s = _sfx(size)
                yield Case(
                    f"ctx_{pt}_read_{s}_{_kname(off)}",
                    "ctx",
                    f"r0 = *({s} *)(r1 {_off(off)})\nr0 = 0\nexit",
                    prog_type=pt,
                    description=f"{pt}: {size}-byte read of ctx+{off}",
                    # the u64 arguments TEST_RUN hands a raw tracepoint (MAX_BPF_FUNC_ARGS of them)
                    ctx=bytes(96) if pt == "raw_tracepoint" else None,
                )
                if pt in ("raw_tracepoint",):
                    continue
                yield Case(
                    f"ctx_{pt}_write_{s}_{_kname(off)}",
                    "ctx",
                    f"r0 = 0\n*({s} *)(r1 {_off(off)}) = r0\nexit",
                    prog_type=pt,
                    description=f"{pt}: {size}-byte write of ctx+{off}",
                )
                if size == 4:
                    yield Case(
                        f"ctx_{pt}_st_{s}_{_kname(off)}",
                        "ctx",
                        f"*({s} *)(r1 {_off(off)}) = 1\nr0 = 0\nexit",
                        prog_type=pt,
                        description=f"{pt}: immediate store to ctx+{off}",
                    )
    for pt in ("socket_filter", "sched_cls"):
        yield Case(
            f"ctx_{pt}_modified",
            "ctx",
            "r1 += 8\nr0 = *(u32 *)(r1 + 0)\nexit",
            prog_type=pt,
            description="load through a modified ctx pointer",
        )
        yield Case(
            f"ctx_{pt}_modified_neg",
            "ctx",
            "r1 += -8\nr0 = *(u32 *)(r1 + 8)\nexit",
            prog_type=pt,
            description="load through a ctx pointer moved back",
        )
        yield Case(
            f"ctx_{pt}_var",
            "ctx",
            "r2 = *(u32 *)(r1 + 0)\nr2 &= 4\nr1 += r2\nr0 = *(u32 *)(r1 + 0)\nexit",
            prog_type=pt,
            description="load through a ctx pointer with a variable offset",
        )
        yield Case(
            f"ctx_{pt}_return", "ctx", "r0 = r1\nexit", prog_type=pt, description="return the ctx pointer"
        )
        yield Case(
            f"ctx_{pt}_store_ptr",
            "ctx",
            "*(u64 *)(r1 + 48) = r1\nr0 = 0\nexit",
            prog_type=pt,
            description="store the ctx pointer into cb[]",
        )
        yield Case(
            f"ctx_{pt}_atomic",
            "ctx",
            "r2 = 1\nlock *(u32 *)(r1 + 48) += r2\nr0 = 0\nexit",
            prog_type=pt,
            description="an atomic add into the ctx",
        )
        yield Case(
            f"ctx_{pt}_ldsx",
            "ctx",
            "r0 = *(s16 *)(r1 + 0)\nexit",
            prog_type=pt,
            description="a sign-extending ctx load",
        )


def fam_maps() -> Iterator[Case]:
    for m in (A8, H8, A48):
        mv = f"map_idx({m.name})"
        pre = LOOKUP.format(map=mv)
        yield Case(
            f"map_{m.name}_no_null_check",
            "maps",
            pre + "r0 = *(u64 *)(r0 + 0)\nexit",
            maps=[m],
            description="dereference a lookup result without a NULL check",
        )
        yield Case(
            f"map_{m.name}_null_check",
            "maps",
            pre + "if r0 == 0 goto +1\nr0 = *(u64 *)(r0 + 0)\nexit",
            maps=[m],
            description="dereference after if (r0 == 0)",
        )
        yield Case(
            f"map_{m.name}_null_check_ne",
            "maps",
            pre + "if r0 != 0 goto +2\nr0 = 0\nexit\nr0 = *(u64 *)(r0 + 0)\nexit",
            maps=[m],
            description="dereference after if (r0 != 0)",
        )
        yield Case(
            f"map_{m.name}_null_check_copy",
            "maps",
            pre + "r1 = r0\nif r0 == 0 goto +1\nr0 = *(u64 *)(r1 + 0)\nexit",
            maps=[m],
            description="the NULL check of r0 also covers its copy r1",
        )
        yield Case(
            f"map_{m.name}_null_check_jne1",
            "maps",
            pre + "if r0 != 1 goto +1\nr0 = *(u64 *)(r0 + 0)\nr0 = 0\nexit",
            maps=[m],
            description="comparing the lookup result with 1 is not a NULL check",
        )
        yield Case(
            f"map_{m.name}_ptr_arith_before_check",
            "maps",
            pre + "r0 += 8\nr0 = 0\nexit",
            maps=[m],
            description="arithmetic on a maybe-NULL pointer",
        )
        yield Case(
            f"map_{m.name}_return_value_ptr",
            "maps",
            pre + "exit",
            maps=[m],
            description="return the lookup result",
        )
        for off in sorted(
            {-8, -1, 0, 1, 4, m.value_size - 8, m.value_size - 4, m.value_size - 1, m.value_size}
        ):
            for size in (1, 4, 8):
                s = _sfx(size)
                yield Case(
                    f"map_{m.name}_read_{s}_{_kname(off)}",
                    "maps",
                    pre + f"if r0 == 0 goto +1\nr0 = *({s} *)(r0 {_off(off)})\nr0 = 0\nexit",
                    maps=[m],
                    description=f"a {size}-byte read at value+{off} (value_size {m.value_size})",
                )
                yield Case(
                    f"map_{m.name}_write_{s}_{_kname(off)}",
                    "maps",
                    pre + f"if r0 == 0 goto +2\nr1 = 1\n*({s} *)(r0 {_off(off)}) = r1\nr0 = 0\nexit",
                    maps=[m],
                    description=f"a {size}-byte write at value+{off}",
                )
        yield Case(
            f"map_{m.name}_store_ptr",
            "maps",
            pre + "if r0 == 0 goto +1\n*(u64 *)(r0 + 0) = r10\nr0 = 0\nexit",
            maps=[m],
            description="store a stack pointer into a map value",
        )
        yield Case(
            f"map_{m.name}_atomic",
            "maps",
            pre + "if r0 == 0 goto +2\nr1 = 1\nlock *(u64 *)(r0 + 0) += r1\nr0 = 0\nexit",
            maps=[m],
            description="an atomic add into a map value",
        )
        yield Case(
            f"map_{m.name}_atomic_misaligned",
            "maps",
            pre + "if r0 == 0 goto +2\nr1 = 1\nlock *(u32 *)(r0 + 2) += r1\nr0 = 0\nexit",
            maps=[m],
            description="an atomic add at a misaligned value offset",
        )
    # keys
    for key_store, what in (
        ("*(u32 *)(r10 - 4) = r1", "u32 zero spill"),
        ("*(u32 *)(r10 - 4) = 1", "u32 imm 1"),
        ("*(u32 *)(r10 - 4) = 9", "u32 imm out of range"),
        ("*(u64 *)(r10 - 8) = r1", "u64 spill"),
    ):
        koff = -4 if "- 4" in key_store else -8
        asm = (
            f"r1 = 0\n{key_store}\nr2 = r10\nr2 += {koff}\nr1 = map_idx(arr8) ll\ncall bpf_map_lookup_elem\n"
            "r0 = *(u64 *)(r0 + 0)\nexit"
        )
        yield Case(
            f"map_array_const_key_{_slug(what)}",
            "maps",
            asm,
            maps=[A8],
            description=f"array lookup with a constant key ({what}): no NULL check needed?",
        )
    yield Case(
        "map_key_uninit",
        "maps",
        "r2 = r10\nr2 += -8\nr1 = map_idx(hash8) ll\ncall bpf_map_lookup_elem\nr0 = 0\nexit",
        maps=[H8],
        description="the key on the stack was never written",
    )
    yield Case(
        "map_key_short",
        "maps",
        "r1 = 0\n*(u32 *)(r10 - 8) = r1\nr2 = r10\nr2 += -4\n"
        "r1 = map_idx(hash8) ll\ncall bpf_map_lookup_elem\nr0 = 0\nexit",
        maps=[H8],
        description="an 8-byte key starting 4 bytes below the frame pointer",
    )
    yield Case(
        "map_key_partial",
        "maps",
        "r1 = 0\n*(u32 *)(r10 - 8) = r1\nr2 = r10\nr2 += -8\n"
        "r1 = map_idx(hash8) ll\ncall bpf_map_lookup_elem\nr0 = 0\nexit",
        maps=[H8],
        description="an 8-byte key with its upper half uninitialised",
    )
    yield Case(
        "map_key_in_value",
        "maps",
        LOOKUP.format(map="map_idx(hash8)")
        + "if r0 == 0 goto +4\nr2 = r0\nr1 = map_idx(hash8) ll\ncall bpf_map_lookup_elem\nr0 = 0\nexit",
        maps=[H8],
        description="a map value as the key of another lookup",
    )
    yield Case(
        "map_key_ctx",
        "maps",
        "r2 = r1\nr1 = map_idx(hash8) ll\ncall bpf_map_lookup_elem\nr0 = 0\nexit",
        maps=[H8],
        description="the ctx pointer as a key",
    )
    yield Case(
        "map_direct_value",
        "maps",
        "r1 = map_idx_value(arr8) ll\nr0 = *(u64 *)(r1 + 0)\nexit",
        maps=[A8],
        description="a direct map value pointer",
    )
    yield Case(
        "map_direct_value_off",
        "maps",
        "r1 = map_idx_value(arr8) ll\nr0 = *(u32 *)(r1 + 4)\nexit",
        maps=[A8],
        description="a direct map value pointer, offset 4",
    )
    yield Case(
        "map_direct_value_oob",
        "maps",
        "r1 = map_idx_value(arr8) ll\nr0 = *(u64 *)(r1 + 8)\nexit",
        maps=[A8],
        description="a direct map value pointer read past the value",
    )
    yield Case(
        "map_direct_value_hash",
        "maps",
        "r1 = map_idx_value(hash8) ll\nr0 = 0\nexit",
        maps=[H8],
        description="a direct value pointer into a hash map",
    )
    yield Case(
        "map_ptr_deref",
        "maps",
        "r1 = map_idx(arr8) ll\nr0 = *(u64 *)(r1 + 0)\nexit",
        maps=[A8],
        description="dereference the map pointer itself",
    )
    yield Case(
        "map_ptr_return", "maps", "r0 = map_idx(arr8) ll\nexit", maps=[A8], description="return a map pointer"
    )
    yield Case(
        "map_ptr_arith",
        "maps",
        "r1 = map_idx(arr8) ll\nr1 += 8\nr0 = 0\nexit",
        maps=[A8],
        description="arithmetic on a map pointer",
    )
    yield Case(
        "map_ptr_arith_zero",
        "maps",
        "r1 = map_idx(arr8) ll\nr1 += 0\nr0 = 0\nexit",
        maps=[A8],
        description="adding 0 to a map pointer",
    )
    # variable offsets
    for mask, size in ((7, 1), (7, 2), (0x2F, 1), (0x30, 1), (0x3F, 1), (0x28, 8), (0x20, 16)):
        access = f"r0 = *({_sfx(min(size, 8))} *)(r6 + {max(size - 8, 0)})"
        body = f"r1 = *(u64 *)(r6 + 0)\nr1 &= {mask}\nr6 += r1\n{access}"
        yield Case(
            f"map_var_off_{mask}_{size}",
            "maps",
            with_value("arr48", body),
            maps=[A48],
            description=f"value + (unknown & {mask}), {size}-byte access",
        )
    yield Case(
        "map_var_off_unbounded",
        "maps",
        with_value("arr48", "r1 = *(u64 *)(r6 + 0)\nr6 += r1\nr0 = *(u8 *)(r6 + 0)"),
        maps=[A48],
        description="value + an unbounded unknown",
    )
    yield Case(
        "map_var_off_negative",
        "maps",
        with_value(
            "arr48",
            "r1 = *(u64 *)(r6 + 0)\nif r1 s> 4 goto out\n"
            "if r1 s< -4 goto out\nr6 += r1\nr0 = *(u8 *)(r6 + 8)",
        ),
        maps=[A48],
        description="value + a value in [-4, 4], access at +8",
    )
    yield Case(
        "map_var_off_sub",
        "maps",
        with_value("arr48", "r1 = *(u64 *)(r6 + 0)\nr1 &= 7\nr6 -= r1\nr0 = *(u8 *)(r6 + 8)"),
        maps=[A48],
        description="value - (unknown & 7), access at +8",
    )
    yield Case(
        "map_update_ok",
        "maps",
        "r1 = 0\n*(u64 *)(r10 - 8) = r1\n*(u64 *)(r10 - 16) = r1\nr2 = r10\n"
        "r2 += -8\nr3 = r10\nr3 += -16\nr4 = 0\nr1 = map_idx(hash8) ll\ncall bpf_map_update_elem\nexit",
        maps=[H8],
        description="bpf_map_update_elem with key and value on the stack",
    )
    yield Case(
        "map_update_value_uninit",
        "maps",
        "r1 = 0\n*(u64 *)(r10 - 8) = r1\nr2 = r10\nr2 += -8\n"
        "r3 = r10\nr3 += -16\nr4 = 0\nr1 = map_idx(hash8) ll\ncall bpf_map_update_elem\nexit",
        maps=[H8],
        description="bpf_map_update_elem with an uninitialised value",
    )
    yield Case(
        "map_update_value_short",
        "maps",
        "r1 = 0\n*(u64 *)(r10 - 8) = r1\n*(u64 *)(r10 - 16) = r1\n"
        "r2 = r10\nr2 += -8\nr3 = r10\nr3 += -16\nr4 = 0\nr1 = map_idx(hash16) ll\n"
        "call bpf_map_update_elem\nexit",
        maps=[H16],
        description="bpf_map_update_elem: a 16-byte value with only 16 bytes of stack below",
    )
    yield Case(
        "map_update_from_value",
        "maps",
        LOOKUP.format(map="map_idx(hash8)")
        + "if r0 == 0 goto +6\nr3 = r0\nr2 = r10\nr2 += -8\nr4 = 0\nr1 = map_idx(hash8) ll\n"
        "call bpf_map_update_elem\nr0 = 0\nexit",
        maps=[H8],
        description="update with the value taken from a lookup",
    )
    yield Case(
        "map_delete_ok",
        "maps",
        "r1 = 0\n*(u64 *)(r10 - 8) = r1\nr2 = r10\nr2 += -8\n"
        "r1 = map_idx(hash8) ll\ncall bpf_map_delete_elem\nexit",
        maps=[H8],
        description="bpf_map_delete_elem",
    )
    yield Case(
        "map_two_maps",
        "maps",
        LOOKUP.format(map="map_idx(arr8)")
        + "if r0 == 0 goto +6\nr6 = r0\n"
        + "r2 = r10\nr2 += -8\nr1 = map_idx(hash8) ll\ncall bpf_map_lookup_elem\nr0 = *(u64 *)(r6 + 0)\n"
        "exit",
        maps=[A8, H8],
        description="a value pointer survives another helper call",
    )


def fam_helpers() -> Iterator[Case]:
    setups = {
        "scalar": "r{n} = 0",
        "ctx": "r{n} = r1" if True else "",
        "fp": "r{n} = r10\nr{n} += -8",
        "map": "r{n} = map_idx(hash8) ll",
        "uninit": "",
        "fp16": "r{n} = r10\nr{n} += -16",
    }
    protos = {
        "bpf_map_lookup_elem": ["map", "key"],
        "bpf_map_update_elem": ["map", "key", "value", "any"],
        "bpf_map_delete_elem": ["map", "key"],
        "bpf_ktime_get_ns": [],
        "bpf_get_prandom_u32": [],
        "bpf_trace_printk": ["mem", "size"],
        "bpf_get_current_comm": ["uninit_mem", "size"],
        "bpf_probe_read_kernel": ["uninit_mem", "size", "any"],
        "bpf_tail_call": ["ctx", "map", "any"],
    }
    good = {
        "map": "map",
        "key": "fp",
        "value": "fp16",
        "any": "scalar",
        "mem": "fp",
        "size": "scalar",
        "uninit_mem": "fp16",
        "ctx": "ctx",
    }
    map_for = {"bpf_tail_call": PA}
    for name, args in protos.items():
        m = map_for.get(name, H8)
        for i in range(len(args) + 1):
            for bad in ("scalar", "ctx", "fp", "map", "uninit"):
                if i < len(args) and bad == good[args[i]]:
                    continue
                if i == len(args) and bad != "scalar":
                    continue
                lines = ["r6 = r1", "r7 = 0", "*(u64 *)(r10 - 8) = r7", "*(u64 *)(r10 - 16) = r7"]
                for j, a in enumerate(args):
                    n = j + 1
                    kind = bad if j == i else good[a]
                    if a == "size" and kind == "scalar" and j != i:
                        lines.append(f"r{n} = 8")
                        continue
                    text = setups[kind].format(n=n)
                    if kind == "ctx":
                        text = f"r{n} = r6"
                    if kind == "map":
                        text = f"r{n} = map_idx({m.name}) ll"
                    if text:
                        lines.append(text)
                lines.append(f"call {name}")
                lines += ["r0 = 0", "exit"]
                label = "ok" if i == len(args) else f"arg{i + 1}_{bad}"
                yield Case(
                    f"helper_{name[4:]}_{label}",
                    "helpers",
                    "\n".join(lines),
                    maps=[m],
                    description=f"{name} with argument {i + 1} as {bad}"
                    if i < len(args)
                    else f"{name} with well-typed arguments",
                )
    for size in ("0", "8", "16", "unknown", "masked", "neg", "big"):
        sz = {
            "0": "r2 = 0",
            "8": "r2 = 8",
            "16": "r2 = 16",
            "unknown": "r2 = *(u32 *)(r6 + 0)",
            "masked": "r2 = *(u32 *)(r6 + 0)\nr2 &= 15",
            "neg": "r2 = -8",
            "big": "r2 = *(u32 *)(r6 + 0)\nr2 &= 15\nr2 += 1",
        }[size]
        for helper in ("bpf_get_current_comm", "bpf_trace_printk", "bpf_probe_read_kernel"):
            asm = (
                f"r6 = r1\nr1 = 0\n*(u64 *)(r10 - 8) = r1\n*(u64 *)(r10 - 16) = r1\n{sz}\n"
                "r1 = r10\nr1 += -16\n"
                + ("r3 = 0\n" if helper == "bpf_probe_read_kernel" else "")
                + f"call {helper}\nr0 = 0\nexit"
            )
            yield Case(
                f"helper_size_{helper[4:]}_{size}",
                "helpers",
                asm,
                description=f"{helper} with size {size} into 16 bytes of stack",
            )
    yield Case(
        "helper_clobbers_r1",
        "helpers",
        "call bpf_ktime_get_ns\nr0 = r1\nexit",
        description="r1 is unreadable after a helper call",
    )
    yield Case(
        "helper_clobbers_r5",
        "helpers",
        "r5 = 1\ncall bpf_get_prandom_u32\nr0 = r5\nexit",
        description="r5 is unreadable after a helper call",
    )
    yield Case(
        "helper_keeps_r6",
        "helpers",
        "r6 = 1\ncall bpf_get_prandom_u32\nr0 = r6\nexit",
        description="r6 survives a helper call",
    )
    yield Case(
        "helper_unknown_id", "helpers", "call 100000\nr0 = 0\nexit", description="a helper id out of range"
    )
    yield Case("helper_zero", "helpers", "call 0\nr0 = 0\nexit", description="helper 0 (unspec)")
    yield Case(
        "helper_local_storage",
        "helpers",
        "r1 = 0\nr2 = 0\ncall 81\nr0 = 0\nexit",
        description="bpf_get_local_storage in a socket filter",
    )
    yield Case(
        "helper_leak_ptr_arg",
        "helpers",
        "r1 = r10\ncall bpf_ktime_get_ns\nr0 = 0\nexit",
        description="ktime_get_ns takes no arguments",
    )
    yield Case(
        "helper_printk_fmt_in_value",
        "helpers",
        LOOKUP.format(map="map_idx(arr8)")
        + "if r0 == 0 goto +3\nr1 = r0\nr2 = 8\ncall bpf_trace_printk\nr0 = 0\nexit",
        maps=[A8],
        description="trace_printk with the format in a map value",
    )
    yield Case(
        "helper_lookup_prog_array",
        "helpers",
        LOOKUP.format(map="map_idx(jmp_table)") + "r0 = 0\nexit",
        maps=[PA],
        description="bpf_map_lookup_elem on a prog array",
    )
    yield Case(
        "helper_tail_call_wrong_map",
        "helpers",
        "r2 = map_idx(hash8) ll\nr3 = 0\ncall bpf_tail_call\nr0 = 0\nexit",
        maps=[H8],
        description="bpf_tail_call on a hash map",
    )
    yield Case(
        "helper_tail_call_plain",
        "helpers",
        "r2 = map_idx(jmp_table) ll\nr3 = 0\ncall bpf_tail_call\nr0 = 0\nexit",
        maps=[PA],
        description="bpf_tail_call",
    )
    yield Case(
        "helper_tail_call_modified_ctx",
        "helpers",
        "r1 += 4\nr2 = map_idx(jmp_table) ll\nr3 = 0\ncall bpf_tail_call\nr0 = 0\nexit",
        maps=[PA],
        description="bpf_tail_call with a modified ctx",
    )


def fam_calls() -> Iterator[Case]:
    yield Case("call_simple", "calls", "call sub\nexit\nsub: r0 = 1\nexit", description="a bpf-to-bpf call")
    yield Case("call_no_r0", "calls", "call sub\nexit\nsub: exit", description="a subprogram that sets no r0")
    yield Case(
        "call_args",
        "calls",
        "r1 = 1\nr2 = 2\ncall sub\nexit\nsub: r0 = r1\nr0 += r2\nexit",
        description="arguments in r1-r5",
    )
    yield Case(
        "call_arg_uninit",
        "calls",
        "call sub\nexit\nsub: r0 = r2\nexit",
        description="the callee reads an argument the caller did not set",
    )
    yield Case(
        "call_r6_callee",
        "calls",
        "r6 = 1\ncall sub\nr0 = r6\nexit\nsub: r0 = r6\nexit",
        description="the callee reads r6, which it did not set",
    )
    yield Case(
        "call_r6_preserved",
        "calls",
        "r6 = 7\ncall sub\nr0 = r6\nexit\nsub: r6 = 1\nr0 = 0\nexit",
        description="the caller's r6 after the call",
    )
    yield Case(
        "call_r1_clobbered",
        "calls",
        "r1 = 7\ncall sub\nr0 = r1\nexit\nsub: r0 = 0\nexit",
        description="the caller's r1 after the call",
    )
    yield Case(
        "call_pass_fp",
        "calls",
        "r1 = r10\nr1 += -8\ncall sub\nr0 = *(u64 *)(r10 - 8)\nexit\n"
        "sub: r2 = 5\n*(u64 *)(r1 + 0) = r2\nr0 = 0\nexit",
        description="the callee writes the caller's stack through a pointer",
    )
    yield Case(
        "call_pass_fp_read_uninit",
        "calls",
        "r1 = r10\nr1 += -8\ncall sub\nexit\nsub: r0 = *(u64 *)(r1 + 0)\nexit",
        description="the callee reads uninitialised caller stack",
    )
    yield Case(
        "call_return_fp",
        "calls",
        "call sub\nr0 = 0\nexit\nsub: r0 = r10\nexit",
        description="return the callee's stack pointer",
    )
    yield Case(
        "call_return_ctx",
        "calls",
        "call sub\nexit\nsub: r0 = r1\nexit",
        description="return the ctx pointer from a callee (then from main)",
    )
    yield Case(
        "call_return_ctx_used",
        "calls",
        "call sub\nr0 = *(u32 *)(r0 + 0)\nexit\nsub: r0 = r1\nexit",
        description="use a ctx pointer returned by a callee",
    )
    yield Case(
        "call_recursion", "calls", "call sub\nexit\nsub: call sub\nexit", description="infinite recursion"
    )
    yield Case(
        "call_self_main", "calls", "r0 = 0\ncall l\nl: exit", description="main calls into its own tail"
    )
    for depth in (6, 7, 8, 9):
        text = (
            "call f1\nexit\n"
            + "".join(f"f{i}: call f{i + 1}\nexit\n" for i in range(1, depth))
            + f"f{depth}: r0 = 0\nexit"
        )
        yield Case(f"call_depth_{depth}", "calls", text, description=f"a chain of {depth} nested calls")
    for main, sub in ((512, 8), (256, 256), (256, 264), (300, 300), (8, 504), (504, 8), (496, 16), (0, 512)):
        text = (
            (f"*(u8 *)(r10 - {main}) = 0\n" if main else "") + "call sub\nr0 = 0\nexit\n"
            "sub: " + (f"*(u8 *)(r10 - {sub}) = 0\n" if sub else "") + "r0 = 0\nexit"
        )
        yield Case(f"call_stack_{main}_{sub}", "calls", text, description=f"frames of {main} and {sub} bytes")
    for a, b, c in ((200, 200, 200), (160, 160, 160), (100, 200, 200), (128, 128, 256)):
        text = (
            f"*(u8 *)(r10 - {a}) = 0\ncall s1\nr0 = 0\nexit\n"
            f"s1: *(u8 *)(r10 - {b}) = 0\ncall s2\nr0 = 0\nexit\n"
            f"s2: *(u8 *)(r10 - {c}) = 0\nr0 = 0\nexit"
        )
        yield Case(
            f"call_stack3_{a}_{b}_{c}", "calls", text, description=f"three frames of {a}, {b}, {c} bytes"
        )
    yield Case(
        "call_fallthrough",
        "calls",
        "call sub\nexit\nsub: r0 = 0\nr1 = 1",
        description="a subprogram that falls off its end",
    )
    yield Case(
        "call_jump_out",
        "calls",
        "call sub\nl: exit\nsub: r0 = 0\ngoto l",
        description="jump out of a subprogram",
    )
    yield Case(
        "call_unreachable_sub",
        "calls",
        "r0 = 0\nexit\nsub: r0 = 1\nexit",
        description="a subprogram nobody calls",
    )
    yield Case(
        "call_in_branches",
        "calls",
        "r6 = *(u32 *)(r1 + 0)\nif r6 > 5 goto l\nr1 = 1\ncall sub\nexit\n"
        "l: r1 = 2\ncall sub\nexit\nsub: r0 = r1\nexit",
        description="the same subprogram from two call sites",
    )
    yield Case(
        "call_tail_call_in_sub",
        "calls",
        "r6 = r1\ncall sub\nexit\nsub: r2 = map_idx(jmp_table) ll\nr3 = 0\ncall bpf_tail_call\nr0 = 0\nexit",
        maps=[PA],
        description="a tail call from a subprogram",
    )
    yield Case(
        "call_tail_call_deep_stack",
        "calls",
        "*(u8 *)(r10 - 300) = 0\ncall sub\nr0 = 0\nexit\n"
        "sub: r2 = map_idx(jmp_table) ll\nr3 = 0\ncall bpf_tail_call\nr0 = 0\nexit",
        maps=[PA],
        description="a tail call below a 300-byte caller frame",
    )
    yield Case(
        "call_map_value_arg",
        "calls",
        LOOKUP.format(map="map_idx(arr8)")
        + "if r0 == 0 goto +3\nr1 = r0\ncall sub\nexit\nr0 = 0\nexit\nsub: r0 = *(u64 *)(r1 + 0)\nexit",
        maps=[A8],
        description="a map value pointer passed to a subprogram",
    )
    yield Case(
        "call_map_value_arg_oob",
        "calls",
        LOOKUP.format(map="map_idx(arr8)")
        + "if r0 == 0 goto +3\nr1 = r0\ncall sub\nexit\nr0 = 0\nexit\nsub: r0 = *(u64 *)(r1 + 8)\nexit",
        maps=[A8],
        description="a subprogram reads past a map value passed to it",
    )


def fam_packet() -> Iterator[Case]:
    def pkt(pt: str) -> str:
        return (
            "r2 = *(u32 *)(r1 + 76)\nr3 = *(u32 *)(r1 + 80)\n"
            if pt == "sched_cls"
            else "r2 = *(u32 *)(r1 + 0)\nr3 = *(u32 *)(r1 + 4)\n"
        )

    for pt in ("sched_cls", "xdp"):
        p = pkt(pt)
        yield Case(
            f"pkt_{pt}_no_check",
            "packet",
            p + "r0 = *(u8 *)(r2 + 0)\nexit",
            prog_type=pt,
            description="a packet read without a bounds check",
        )
        for checked in (1, 8, 14, 20):
            for off, size in sorted(
                {(0, 1), (checked - 1, 1), (checked - 4, 4), (checked, 1), (checked - 8, 8), (-1, 1)}
            ):
                if off < -1:
                    continue
                for cond in (">", "<", ">=", "<="):
                    if cond == ">":
                        chk = f"if r4 > r3 goto out\nr0 = *({_sfx(size)} *)(r2 {_off(off)})"
                    elif cond == ">=":
                        chk = f"if r4 >= r3 goto out\nr0 = *({_sfx(size)} *)(r2 {_off(off)})"
                    elif cond == "<":
                        chk = f"if r3 < r4 goto out\nr0 = *({_sfx(size)} *)(r2 {_off(off)})"
                    else:
                        chk = f"if r4 <= r3 goto ok\ngoto out\nok: r0 = *({_sfx(size)} *)(r2 {_off(off)})"
                    asm = p + f"r4 = r2\nr4 += {checked}\n{chk}\nr0 = 0\nexit\nout: r0 = 0\nexit"
                    yield Case(
                        f"pkt_{pt}_chk{checked}_{_condname(cond)}_{size}at{_kname(off)}",
                        "packet",
                        asm,
                        prog_type=pt,
                        description=f"check data+{checked} {cond} data_end, read {size} at {off}",
                    )
        yield Case(
            f"pkt_{pt}_write",
            "packet",
            p + "r4 = r2\nr4 += 8\nif r4 > r3 goto out\nr0 = 1\n*(u32 *)(r2 + 0) = r0\nout: r0 = 0\nexit",
            prog_type=pt,
            description="a checked packet write",
        )
        yield Case(
            f"pkt_{pt}_end_arith",
            "packet",
            p + "r3 += 1\nr0 = 0\nexit",
            prog_type=pt,
            description="arithmetic on data_end",
        )
        yield Case(
            f"pkt_{pt}_end_read",
            "packet",
            p + "r0 = *(u8 *)(r3 + 0)\nexit",
            prog_type=pt,
            description="a read through data_end",
        )
        yield Case(
            f"pkt_{pt}_var_off",
            "packet",
            p + "r4 = r2\nr4 += 14\nif r4 > r3 goto out\nr5 = *(u8 *)(r2 + 0)\n"
            "r5 &= 7\nr2 += r5\nr0 = *(u8 *)(r2 + 0)\nexit\nout: r0 = 0\nexit",
            prog_type=pt,
            description="a variable offset added after the check",
        )
        yield Case(
            f"pkt_{pt}_var_off_checked",
            "packet",
            p + "r5 = *(u32 *)(r1 + 0)\nr5 &= 7\nr2 += r5\nr4 = r2\n"
            "r4 += 8\nif r4 > r3 goto out\nr0 = *(u8 *)(r2 + 7)\nexit\nout: r0 = 0\nexit",
            prog_type=pt,
            description="a variable offset added before the check",
        )
        yield Case(
            f"pkt_{pt}_ptr_sub",
            "packet",
            p + "r0 = r3\nr0 -= r2\nexit",
            prog_type=pt,
            description="packet length as data_end - data",
        )
        yield Case(
            f"pkt_{pt}_return_ptr",
            "packet",
            p + "r0 = r2\nexit",
            prog_type=pt,
            description="return a packet pointer",
        )
        yield Case(
            f"pkt_{pt}_cmp_scalar",
            "packet",
            p + "r0 = 0\nif r2 > 100 goto +1\nr0 = 1\nexit",
            prog_type=pt,
            description="compare a packet pointer with a number",
        )
        yield Case(
            f"pkt_{pt}_store_ptr_stack",
            "packet",
            p + "*(u64 *)(r10 - 8) = r2\nr4 = *(u64 *)(r10 - 8)\n"
            "r5 = r4\nr5 += 4\nif r5 > r3 goto out\nr0 = *(u32 *)(r4 + 0)\nexit\nout: r0 = 0\nexit",
            prog_type=pt,
            description="spill and fill a packet pointer, then check it",
        )
    yield Case(
        "pkt_socket_filter_data",
        "packet",
        "r2 = *(u32 *)(r1 + 76)\nr0 = 0\nexit",
        description="socket filters have no direct packet access",
    )
    yield Case(
        "pkt_sched_cls_meta",
        "packet",
        "r2 = *(u32 *)(r1 + 140)\nr3 = *(u32 *)(r1 + 76)\nr4 = r2\n"
        "r4 += 4\nif r4 > r3 goto out\nr0 = *(u32 *)(r2 + 0)\nexit\nout: r0 = 0\nexit",
        prog_type="sched_cls",
        description="data_meta checked against data",
    )
    yield Case(
        "pkt_xdp_meta",
        "packet",
        "r2 = *(u32 *)(r1 + 8)\nr3 = *(u32 *)(r1 + 0)\nr4 = r2\n"
        "r4 += 4\nif r4 > r3 goto out\nr0 = *(u32 *)(r2 + 0)\nexit\nout: r0 = 0\nexit",
        prog_type="xdp",
        description="data_meta checked against data",
    )
    yield Case("pkt_ld_abs", "packet", "r6 = r1\nr0 = *(u8 *)skb[12]\nexit", description="legacy LD_ABS")
    yield Case(
        "pkt_ld_ind",
        "packet",
        "r6 = r1\nr2 = 2\nr0 = *(u16 *)skb[r2 + 10]\nexit",
        description="legacy LD_IND",
    )
    yield Case(
        "pkt_ld_abs_no_r6", "packet", "r0 = *(u8 *)skb[12]\nexit", description="LD_ABS without r6 = ctx"
    )
    yield Case(
        "pkt_ld_abs_r6_scalar",
        "packet",
        "r6 = 0\nr0 = *(u8 *)skb[12]\nexit",
        description="LD_ABS with r6 a scalar",
    )
    yield Case(
        "pkt_ld_abs_xdp",
        "packet",
        "r6 = r1\nr0 = *(u8 *)skb[12]\nexit",
        prog_type="xdp",
        description="LD_ABS in an XDP program",
    )
    yield Case(
        "pkt_ld_abs_clobbers",
        "packet",
        "r6 = r1\nr1 = 5\nr0 = *(u8 *)skb[12]\nr0 = r1\nexit",
        description="LD_ABS clobbers r1-r5",
    )


def fam_ringbuf() -> Iterator[Case]:
    res = "r1 = map_idx(rb) ll\nr2 = {size}\nr3 = 0\ncall bpf_ringbuf_reserve\n"
    for size in (8, 16, 0, 4096, 5000):
        for action in ("submit", "discard"):
            yield Case(
                f"rb_reserve_{size}_{action}",
                "ringbuf",
                res.format(size=size)
                + f"if r0 == 0 goto out\nr1 = r0\nr2 = 0\ncall bpf_ringbuf_{action}\nout: r0 = 0\nexit",
                maps=[RB],
                description=f"reserve {size} bytes and {action}",
            )
    yield Case(
        "rb_leak", "ringbuf", res.format(size=8) + "r0 = 0\nexit", maps=[RB], description="never released"
    )
    yield Case(
        "rb_leak_after_check",
        "ringbuf",
        res.format(size=8) + "if r0 == 0 goto out\nr0 = 0\nexit\nout: r0 = 0\nexit",
        maps=[RB],
        description="released on no path",
    )
    yield Case(
        "rb_leak_one_path",
        "ringbuf",
        res.format(size=8) + "if r0 == 0 goto out\nr6 = r0\n"
        "r7 = *(u32 *)(r6 + 0)\nif r7 > 5 goto skip\nr1 = r6\nr2 = 0\ncall bpf_ringbuf_submit\n"
        "skip: r0 = 0\nexit\n"
        "out: r0 = 0\nexit",
        maps=[RB],
        description="released on one path only",
    )
    yield Case(
        "rb_no_null_check",
        "ringbuf",
        res.format(size=8) + "r1 = r0\nr2 = 0\ncall bpf_ringbuf_submit\nr0 = 0\nexit",
        maps=[RB],
        description="submit without a NULL check",
    )
    yield Case(
        "rb_write_no_null_check",
        "ringbuf",
        res.format(size=8) + "r1 = 0\n*(u64 *)(r0 + 0) = r1\nr0 = 0\nexit",
        maps=[RB],
        description="write the record without a NULL check",
    )
    for off, size in ((0, 8), (4, 4), (8, 1), (-1, 1), (6, 4)):
        yield Case(
            f"rb_write_{size}at{_kname(off)}",
            "ringbuf",
            res.format(size=8)
            + f"if r0 == 0 goto out\nr1 = 1\n*({_sfx(size)} *)(r0 {_off(off)}) = r1\nr1 = r0\nr2 = 0\n"
            "call bpf_ringbuf_submit\nout: r0 = 0\nexit",
            maps=[RB],
            description=f"write {size} bytes at record+{off} of an 8-byte record",
        )
    yield Case(
        "rb_double_submit",
        "ringbuf",
        res.format(size=8) + "if r0 == 0 goto out\nr6 = r0\nr1 = r0\nr2 = 0\n"
        "call bpf_ringbuf_submit\nr1 = r6\nr2 = 0\ncall bpf_ringbuf_submit\nout: r0 = 0\nexit",
        maps=[RB],
        description="submit the same record twice",
    )
    yield Case(
        "rb_use_after_submit",
        "ringbuf",
        res.format(size=8) + "if r0 == 0 goto out\nr6 = r0\nr1 = r0\nr2 = 0\n"
        "call bpf_ringbuf_submit\nr0 = *(u64 *)(r6 + 0)\nexit\nout: r0 = 0\nexit",
        maps=[RB],
        description="read a record after submitting it",
    )
    yield Case(
        "rb_submit_scalar",
        "ringbuf",
        "r1 = 0\nr2 = 0\ncall bpf_ringbuf_submit\nr0 = 0\nexit",
        maps=[RB],
        description="submit a NULL scalar",
    )
    yield Case(
        "rb_submit_stack",
        "ringbuf",
        "r1 = r10\nr1 += -8\nr2 = 0\ncall bpf_ringbuf_submit\nr0 = 0\nexit",
        maps=[RB],
        description="submit a stack pointer",
    )
    yield Case(
        "rb_submit_modified",
        "ringbuf",
        res.format(size=8) + "if r0 == 0 goto out\nr0 += 4\nr1 = r0\nr2 = 0\n"
        "call bpf_ringbuf_submit\nout: r0 = 0\nexit",
        maps=[RB],
        description="submit a moved record pointer",
    )
    yield Case(
        "rb_size_unknown",
        "ringbuf",
        "r2 = *(u32 *)(r1 + 0)\nr1 = map_idx(rb) ll\nr3 = 0\ncall bpf_ringbuf_reserve\nr0 = 0\nexit",
        maps=[RB],
        description="reserve an unknown size",
    )
    yield Case(
        "rb_wrong_map",
        "ringbuf",
        res.format(size=8).replace("map_idx(rb)", "map_idx(arr8)") + "r0 = 0\nexit",
        maps=[A8],
        description="reserve from an array map",
    )
    yield Case(
        "rb_output_ok",
        "ringbuf",
        "r1 = 0\n*(u64 *)(r10 - 8) = r1\nr1 = map_idx(rb) ll\nr2 = r10\nr2 += -8\n"
        "r3 = 8\nr4 = 0\ncall bpf_ringbuf_output\nr0 = 0\nexit",
        maps=[RB],
        description="bpf_ringbuf_output",
    )
    yield Case(
        "rb_output_uninit",
        "ringbuf",
        "r1 = map_idx(rb) ll\nr2 = r10\nr2 += -8\nr3 = 8\nr4 = 0\ncall bpf_ringbuf_output\nr0 = 0\nexit",
        maps=[RB],
        description="ringbuf_output of uninitialised stack",
    )
    yield Case(
        "rb_query",
        "ringbuf",
        "r1 = map_idx(rb) ll\nr2 = 0\ncall bpf_ringbuf_query\nr0 = 0\nexit",
        maps=[RB],
        description="bpf_ringbuf_query",
    )
    yield Case(
        "rb_tail_call_holding",
        "ringbuf",
        res.format(size=8) + "if r0 == 0 goto out\nr6 = r0\nr1 = r6\n"
        "r1 = *(u64 *)(r10 - 8)\nr0 = 0\nexit\nout: r0 = 0\nexit",
        maps=[RB],
        description="exit while holding a record (read of uninitialised stack first)",
    )
    yield Case(
        "rb_ld_abs_holding",
        "ringbuf",
        "r6 = r1\n" + res.format(size=8) + "if r0 == 0 goto out\nr7 = r0\n"
        "r0 = *(u8 *)skb[0]\nr1 = r7\nr2 = 0\ncall bpf_ringbuf_submit\nout: r0 = 0\nexit",
        maps=[RB],
        description="LD_ABS while holding a record",
    )
    yield Case(
        "rb_two_records",
        "ringbuf",
        res.format(size=8)
        + "if r0 == 0 goto out\nr6 = r0\n"
        + res.format(size=8)
        + "if r0 == 0 goto o2\nr1 = r0\nr2 = 0\ncall bpf_ringbuf_submit\n"
        "o2: r1 = r6\nr2 = 0\ncall bpf_ringbuf_discard\nout: r0 = 0\nexit",
        maps=[RB],
        description="two records, both released",
    )
    yield Case(
        "rb_release_in_sub",
        "ringbuf",
        res.format(size=8) + "if r0 == 0 goto out\nr1 = r0\ncall sub\n"
        "out: r0 = 0\nexit\nsub: r2 = 0\ncall bpf_ringbuf_submit\nr0 = 0\nexit",
        maps=[RB],
        description="a subprogram releases the record",
    )


def fam_privilege() -> Iterator[Case]:
    yield Case("priv_return_fp", "privilege", "r0 = r10\nexit", description="return the frame pointer")
    yield Case(
        "priv_return_fp_minus", "privilege", "r0 = r10\nr0 += -8\nexit", description="return a stack address"
    )
    yield Case(
        "priv_ptr_to_scalar_mul", "privilege", "r0 = r10\nr0 *= 1\nexit", description="multiply a pointer"
    )
    yield Case("priv_ptr_or", "privilege", "r0 = r10\nr0 |= 0\nexit", description="or a pointer")
    yield Case("priv_ptr_xor_scalar", "privilege", "r0 = 0\nr0 ^= r1\nexit", description="scalar ^= pointer")
    yield Case(
        "priv_ptr_add_ptr", "privilege", "r0 = r1\nr0 += r10\nr0 = 0\nexit", description="pointer += pointer"
    )
    yield Case("priv_ptr_sub_ptr", "privilege", "r0 = r10\nr0 -= r1\nexit", description="pointer -= pointer")
    yield Case("priv_scalar_sub_ptr", "privilege", "r0 = 5\nr0 -= r10\nexit", description="scalar -= pointer")
    yield Case(
        "priv_scalar_add_ptr",
        "privilege",
        "r0 = -8\nr0 += r10\nr1 = 0\n*(u64 *)(r0 + 0) = r1\nr0 = 0\nexit",
        description="scalar += pointer makes a pointer",
    )
    yield Case(
        "priv_ptr_alu32", "privilege", "r0 = r1\nw0 += 1\nr0 = 0\nexit", description="32-bit ALU on a pointer"
    )
    yield Case(
        "priv_ptr_sub32", "privilege", "r0 = r1\nw0 -= w0\nexit", description="32-bit sub on a pointer"
    )
    yield Case("priv_ptr_mov32", "privilege", "w0 = w1\nexit", description="32-bit copy of a pointer")
    yield Case("priv_ptr_movsx", "privilege", "r0 = (s32)r1\nexit", description="sign-extend a pointer")
    yield Case("priv_ptr_neg", "privilege", "r0 = r1\nr0 = -r0\nr0 = 0\nexit", description="negate a pointer")
    yield Case(
        "priv_ptr_bswap",
        "privilege",
        "r0 = r1\nr0 = bswap32 r0\nr0 = 0\nexit",
        description="byte-swap a pointer",
    )
    yield Case(
        "priv_ptr_cmp_ptr",
        "privilege",
        "r0 = 0\nif r1 > r10 goto +1\nexit\nexit",
        description="compare two pointers",
    )
    yield Case(
        "priv_ptr_cmp_imm",
        "privilege",
        "r0 = 0\nif r1 == 5 goto +1\nexit\nexit",
        description="compare a pointer with a number",
    )
    yield Case(
        "priv_ptr_cmp_zero",
        "privilege",
        "r0 = 0\nif r1 == 0 goto +1\nexit\nexit",
        description="compare a ctx pointer with 0",
    )
    yield Case(
        "priv_ptr_to_helper",
        "privilege",
        "r6 = r1\nr1 = map_idx(hash8) ll\nr2 = r10\nr2 += -8\nr3 = r10\n"
        "r3 += -16\nr4 = r6\nr5 = 0\n*(u64 *)(r10 - 8) = r5\n*(u64 *)(r10 - 16) = r5\n"
        "call bpf_map_update_elem\n"
        "r0 = 0\nexit",
        maps=[H8],
        description="a pointer as the flags argument of a helper",
    )
    yield Case(
        "priv_ptr_in_map",
        "privilege",
        LOOKUP.format(map="map_idx(hash8)") + "if r0 == 0 goto +1\n*(u64 *)(r0 + 0) = r0\nr0 = 0\nexit",
        maps=[H8],
        description="store a pointer into a map value",
    )
    yield Case(
        "priv_uninit_stack_read",
        "privilege",
        "r0 = *(u64 *)(r10 - 8)\nexit",
        description="read uninitialised stack",
    )
    yield Case(
        "priv_uninit_stack_helper",
        "privilege",
        "r2 = r10\nr2 += -8\nr1 = map_idx(hash8) ll\ncall bpf_map_lookup_elem\nr0 = 0\nexit",
        maps=[H8],
        description="pass uninitialised stack to a helper",
    )
    yield Case(
        "priv_var_stack",
        "privilege",
        "r2 = *(u32 *)(r1 + 0)\nr2 &= 7\nr3 = r10\nr3 += -16\nr3 += r2\nr0 = 0\n*(u8 *)(r3 + 0) = r0\nexit",
        description="a variable stack offset",
    )
    yield Case(
        "priv_stack_oob_ptr",
        "privilege",
        "r0 = r10\nr0 += 8\nr0 = 0\nexit",
        description="a stack pointer above the frame",
    )
    yield Case(
        "priv_map_oob_ptr",
        "privilege",
        LOOKUP.format(map="map_idx(arr8)") + "if r0 == 0 goto +1\nr0 += 16\nr0 = 0\nexit",
        maps=[A8],
        description="a map value pointer moved past the value",
    )
    yield Case(
        "priv_map_mixed_bounds",
        "privilege",
        LOOKUP.format(map="map_idx(arr48)")
        + "if r0 == 0 goto out\nr1 = *(u64 *)(r0 + 0)\nif r1 s> 4 goto out\nif r1 s< -4 goto out\nr0 += r1\n"
        "out: r0 = 0\nexit",
        maps=[A48],
        description="a value pointer plus a value of either sign",
    )
    yield Case(
        "priv_spill_ptr_partial_overwrite",
        "privilege",
        "*(u64 *)(r10 - 8) = r1\nr0 = 0\n*(u8 *)(r10 - 8) = r0\nexit",
        description="overwrite one byte of a spilled pointer",
    )
    yield Case(
        "priv_trace_printk",
        "privilege",
        "r1 = 0\n*(u64 *)(r10 - 8) = r1\nr1 = r10\nr1 += -8\nr2 = 8\ncall bpf_trace_printk\nr0 = 0\nexit",
        description="bpf_trace_printk needs CAP_PERFMON",
    )
    yield Case(
        "priv_raw_tracepoint",
        "privilege",
        "r0 = 0\nexit",
        prog_type="raw_tracepoint",
        description="raw tracepoints need CAP_PERFMON",
    )
    yield Case(
        "priv_loop", "privilege", "r0 = 0\nl: r0 += 1\nif r0 < 10 goto l\nexit", description="a bounded loop"
    )
    yield Case(
        "priv_dead_branch_oob",
        "privilege",
        "r1 = 1\nif r1 == 1 goto +2\nr0 = *(u64 *)(r10 + 8)\nexit\nr0 = 0\nexit",
        description="an unsafe dead branch",
    )
    yield Case(
        "priv_atomic_uninit",
        "privilege",
        "r1 = 1\nlock *(u64 *)(r10 - 8) += r1\nr0 = 0\nexit",
        description="an atomic on uninitialised stack",
    )


def fam_structure() -> Iterator[Case]:
    yield Case(
        "st_unreachable", "structure", "r0 = 0\nexit\nr0 = 1\nexit", description="dead code after exit"
    )
    yield Case(
        "st_unreachable_jump", "structure", "r0 = 0\ngoto +1\nr0 = 1\nexit", description="code jumped over"
    )
    yield Case(
        "st_last_not_exit", "structure", "r0 = 0\nr0 += 1", description="the program falls off its end"
    )
    yield Case(
        "st_last_is_ja",
        "structure",
        "r0 = 0\nl: exit\ngoto l",
        description="the last instruction is a jump back",
    )
    yield Case("st_exit_only", "structure", "exit", description="exit without setting r0")
    yield Case(
        "st_r0_read_only_on_one_path",
        "structure",
        "r1 = *(u32 *)(r1 + 0)\nif r1 > 5 goto +1\nr0 = 1\nexit",
        description="r0 is set on one path only",
    )
    for reg in range(1, 10):
        yield Case(
            f"st_read_uninit_r{reg}",
            "structure",
            f"r0 = r{reg}\nexit",
            description=f"read r{reg} before writing it",
        )
    yield Case(
        "st_div_zero_imm", "structure", "r0 = 1\nr0 /= 0\nexit", description="division by an immediate 0"
    )
    yield Case(
        "st_mod_zero_imm32",
        "structure",
        "w0 = 1\nw0 %= 0\nexit",
        description="32-bit modulo by an immediate 0",
    )
    yield Case(
        "st_div_zero_reg",
        "structure",
        "r0 = 5\nr1 = 0\nr0 /= r1\nexit",
        description="division by a zero register",
    )
    yield Case(
        "st_sdiv_zero_imm",
        "structure",
        "r0 = 1\nr0 s/= 0\nexit",
        description="signed division by immediate 0",
    )
    for shift in (-1, 31, 32, 63, 64):
        for w in ("r", "w"):
            yield Case(
                f"st_shift_{w}_{_kname(shift)}",
                "structure",
                f"{w}0 = 1\n{w}0 <<= {shift}\nexit",
                description=f"shift by an immediate {shift}",
            )
    yield Case("st_lddw", "structure", "r0 = 0x123456789 ll\nexit", description="a 64-bit immediate")
    yield Case(
        "st_lddw_map_bad_fd",
        "structure",
        "r1 = map_fd(999) ll\nr0 = 0\nexit",
        description="an lddw naming a map fd that does not exist",
    )
    yield Case(
        "st_jump_to_exit", "structure", "r0 = 0\ngoto +0\nexit", description="a jump to the next instruction"
    )
    yield Case("st_gotol", "structure", "r0 = 0\ngotol +1\nexit\nexit", description="gotol over an exit")
    yield Case("st_movsx", "structure", "r0 = -1\nw0 = (s8)w0\nexit", description="movsx (cpu v4)")
    yield Case(
        "st_ldsx_stack",
        "structure",
        "r1 = -1\n*(u64 *)(r10 - 8) = r1\nr0 = *(s8 *)(r10 - 8)\nexit",
        description="a sign-extending stack load",
    )
    yield Case("st_bswap", "structure", "r0 = 0x1234\nr0 = bswap16 r0\nexit", description="bswap (cpu v4)")
    yield Case("st_sdiv_smod", "structure", "r0 = -7\nr0 s/= 2\nr0 s%= 3\nexit", description="sdiv and smod")
    yield Case(
        "st_cmpxchg",
        "structure",
        "r1 = 0\n*(u64 *)(r10 - 8) = r1\nr0 = 0\nr1 = 1\nr0 = cmpxchg_64(r10 - 8, r0, r1)\nexit",
        description="cmpxchg on the stack",
    )
    yield Case(
        "st_xchg_uninit_r0",
        "structure",
        "r1 = 0\n*(u64 *)(r10 - 8) = r1\nr1 = 1\nr0 = cmpxchg_64(r10 - 8, r0, r1)\nexit",
        description="cmpxchg with r0 unset",
    )
    yield Case(
        "st_atomic_fetch",
        "structure",
        "r1 = 0\n*(u64 *)(r10 - 8) = r1\nr1 = 1\nr1 = atomic_fetch_add((u64 *)(r10 - 8), r1)\nr0 = r1\nexit",
        description="atomic fetch-add",
    )
    yield Case(
        "st_atomic32",
        "structure",
        "r1 = 0\n*(u64 *)(r10 - 8) = r1\nw1 = 1\nlock *(u32 *)(r10 - 8) += w1\nr0 = 0\nexit",
        description="32-bit atomic add",
    )
    yield Case(
        "st_load_acquire",
        "structure",
        "r1 = 0\n*(u64 *)(r10 - 8) = r1\nr0 = load_acquire((u64 *)(r10 - 8))\nexit",
        description="load-acquire",
    )


def raw_structure() -> Iterator[Case]:
    E = (0x95, 0, 0, 0, 0)
    M = (0xB7, 0, 0, 0, 0)
    items = {
        "unknown_opcode_ff": [M, (0xFF, 0, 0, 0, 0), E],
        "unknown_opcode_callx": [M, (0x8D, 2, 0, 0, 0), E],
        "unknown_opcode_ldabs_dw": [M, (0x38, 0, 0, 0, 0), E],
        "alu_reserved_off": [M, (0x07, 0, 0, 1, 1), E],
        "alu_reserved_src": [M, (0x07, 0, 1, 0, 1), E],
        "alu_x_reserved_imm": [M, (0x0F, 0, 1, 0, 1), E],
        "alu32_reserved_off": [M, (0x04, 0, 0, 3, 1), E],
        "mov_reserved_src": [(0xB7, 0, 1, 0, 0), E],
        "mov_x_reserved_imm": [(0xBF, 0, 1, 0, 1), E],
        "movsx_bad_off": [M, (0xBF, 0, 1, 7, 0), E],
        "neg_reserved_imm": [M, (0x87, 0, 0, 0, 1), E],
        "end_bad_imm": [M, (0xD4, 0, 0, 0, 8), E],
        "sdiv_bad_off": [M, (0x37, 0, 0, 2, 1), E],
        "jmp_k_reserved_src": [M, (0x15, 0, 1, 0, 0), E],
        "jmp_x_reserved_imm": [M, (0x1D, 0, 1, 0, 1), E],
        "ja_reserved_imm": [M, (0x05, 0, 0, 0, 1), E],
        "ja32_reserved_off": [M, (0x06, 0, 0, 1, 0), E],
        "exit_reserved_imm": [M, (0x95, 0, 0, 0, 1)],
        "exit_reserved_dst": [M, (0x95, 1, 0, 0, 0)],
        "call_reserved_dst": [M, (0x85, 1, 0, 0, 5), E],
        "call_src_3": [M, (0x85, 0, 3, 0, 5), E],
        "ldx_reserved_imm": [M, (0x61, 0, 10, -4, 1), E],
        "st_reserved_src": [M, (0x62, 10, 1, -4, 1), E],
        "stx_reserved_imm": [M, (0x63, 10, 0, -4, 1), E],
        "atomic_bad_imm": [M, (0x7A, 10, 0, -8, 0), (0xDB, 10, 0, -8, 0x77), E],
        "jump_out_of_range": [M, (0x05, 0, 0, 5, 0), E],
        "jump_out_of_range_back": [M, (0x05, 0, 0, -5, 0), E],
        "jump_into_lddw": [M, (0x15, 0, 0, 1, 0), (0x18, 0, 0, 0, 1), (0, 0, 0, 0, 0), E],
        "ja_into_lddw": [(0x05, 0, 0, 1, 0), (0x18, 0, 0, 0, 1), (0, 0, 0, 0, 0), E],
        "lddw_bad_second": [(0x18, 0, 0, 0, 1), (0, 1, 0, 0, 0), E],
        "lddw_bad_src": [(0x18, 0, 7, 0, 1), (0, 0, 0, 0, 0), E],
        "lddw_last": [M, (0x18, 0, 0, 0, 1)],
        "lddw_map_fd_hi_imm": [(0x18, 1, 1, 0, 3), (0, 0, 0, 0, 5), M, E],
        "reg_dst_11": [(0xB7, 11, 0, 0, 0), E],
        "write_r10": [(0xB7, 10, 0, 0, 0), M, E],
        "add_r10": [(0x07, 10, 0, 0, 8), M, E],
        "load_into_r10": [(0x61, 10, 1, 0, 0), M, E],
        "reg_src_11": [(0xBF, 0, 11, 0, 0), E],
        "call_invalid_destination": [(0x85, 0, 1, 0, 100), M, E],
        "empty_loop_self": [(0x05, 0, 0, -1, 0), E],
    }
    for name, slots in items.items():
        yield Case(f"raw_{name}", "structure_raw", raw=list(slots), description=name.replace("_", " "))


CTX_READS = {
    "socket_filter": [(0, 4), (4, 4), (8, 4), (16, 4), (48, 8), (56, 4), (0, 1), (2, 2)],
    "sched_cls": [(0, 4), (8, 4), (16, 4), (48, 8), (72, 4), (0, 1), (2, 2)],
    "xdp": [(12, 4), (16, 4)],
}


def random_program(rnd, pt: str) -> tuple[str, list[MapDef]]:
    """A random well-formed program: blocks of scalar loads, ALU, forward branches, stack and
    map-value accesses, pointer arithmetic, helper calls and packet reads, with parameters
    drawn so that some are safe and some are not. Forward jumps only (always terminates)."""
    maps = [A48, H8]
    lines: list[str] = ["r9 = r1", "r6 = 0", "r7 = 0", "r8 = 0"]
    label = 0
    scal = ["r6", "r7", "r8"]

    def sc() -> str:
        return rnd.choice(scal)

    def imm() -> int:
        return rnd.choice(
            [0, 1, 2, 3, 4, 7, 8, 15, 16, 31, 32, 47, 48, 63, 64, 255, -1, -8, 1000, 0x7FFFFFFF]
        )

    for _ in range(rnd.randint(3, 9)):
        kind = rnd.choice(
            ["ctx", "alu", "alu", "branch", "stack", "stack", "map", "map", "fp", "helper", "pkt"]
        )
        if kind == "ctx":
            off, size = rnd.choice(CTX_READS[pt])
            if rnd.random() < 0.15:
                off += rnd.choice([1, 2, 4, 100])
            lines.append(f"{sc()} = *(u{size * 8} *)(r9 + {off})")
        elif kind == "alu":
            w = rnd.choice("rrw")
            op = rnd.choice(["+=", "-=", "*=", "&=", "|=", "^=", "<<=", ">>=", "s>>=", "/=", "%=", "="])
            if rnd.random() < 0.4:
                lines.append(f"{w}{sc()[1:]} {op} {w}{sc()[1:]}")
            else:
                k = imm()
                if op in ("<<=", ">>=", "s>>="):
                    k = rnd.randint(0, 31 if w == "w" else 63)
                if op in ("/=", "%=") and k == 0:
                    k = 5
                lines.append(f"{w}{sc()[1:]} {op} {k}")
        elif kind == "branch":
            label += 1
            cond = rnd.choice(["==", "!=", ">", ">=", "<", "<=", "s>", "s>=", "s<", "s<=", "&"])
            w = rnd.choice("rrw")
            lines.append(f"if {w}{sc()[1:]} {cond} {imm()} goto L{label}")
            lines.append(f"{sc()} {rnd.choice(['+=', '&=', '='])} {imm()}")
            lines.append(f"L{label}:")
        elif kind == "stack":
            size = rnd.choice([1, 2, 4, 8])
            off = (
                rnd.choice([-8, -16, -24, -64, -512, -4, -2, -1, -520, 0, 8])
                if rnd.random() < 0.3
                else -8 * rnd.randint(1, 8) + rnd.choice([0, 0, 0, size])
            )
            if rnd.random() < 0.5:
                lines.append(f"*(u{size * 8} *)(r10 {_off(off)}) = {sc()}")
            else:
                lines.append(f"{sc()} = *(u{size * 8} *)(r10 {_off(off)})")
        elif kind == "map":
            m = rnd.choice(maps)
            label += 1
            lines += [
                "r1 = 0",
                "*(u64 *)(r10 - 8) = r1",
                "r2 = r10",
                "r2 += -8",
                f"r1 = map_idx({m.name}) ll",
                "call bpf_map_lookup_elem",
            ]
            checked = rnd.random() < 0.85
            if checked:
                lines.append(f"if r0 == 0 goto L{label}")
            if rnd.random() < 0.5:
                v = sc()
                lines.append(f"r1 = {v}")
                if rnd.random() < 0.6:
                    lines.append(f"r1 &= {rnd.choice([7, 15, 31, 40, 47, 63])}")
                lines.append("r0 += r1")
            size = rnd.choice([1, 2, 4, 8])
            off = rnd.choice([0, 4, 8, 40, m.value_size - size, m.value_size, -4])
            if rnd.random() < 0.5:
                lines.append(f"{sc()} = *(u{size * 8} *)(r0 {_off(off)})")
            else:
                lines.append(f"*(u{size * 8} *)(r0 {_off(off)}) = {sc()}")
            lines.append(f"L{label}:")
        elif kind == "fp":
            lines.append("r1 = r10")
            if rnd.random() < 0.5:
                v = sc()
                lines += [
                    f"r2 = {v}",
                    f"r2 &= {rnd.choice([7, 15, 24, 63])}",
                    "r1 -= r2" if rnd.random() < 0.2 else "r1 += r2",
                ]
            lines.append(f"r1 += {rnd.choice([-8, -16, -32, -64, -512, 0, 8])}")
            size = rnd.choice([1, 2, 4, 8])
            if rnd.random() < 0.5:
                lines.append(f"*(u{size * 8} *)(r1 + 0) = {sc()}")
            else:
                lines.append(f"{sc()} = *(u{size * 8} *)(r1 + 0)")
        elif kind == "helper":
            h = rnd.choice(["ktime", "prandom", "update", "comm", "delete"])
            if h == "ktime":
                lines.append("call bpf_ktime_get_ns")
            elif h == "prandom":
                lines.append("call bpf_get_prandom_u32")
            elif h == "update":
                lines += [
                    "r1 = 0",
                    "*(u64 *)(r10 - 8) = r1",
                    "r2 = r10",
                    "r2 += -8",
                    "r3 = r10",
                    f"r3 += {rnd.choice([-8, -16, -56, -64])}",
                    f"r4 = {rnd.choice([0, 1, 2])}",
                    "r1 = map_idx(arr48) ll",
                    "call bpf_map_update_elem",
                ]
            elif h == "comm":
                lines += [
                    "r1 = r10",
                    f"r1 += {rnd.choice([-16, -8, -32])}",
                    f"r2 = {rnd.choice([0, 8, 16, 32])}",
                    "call bpf_get_current_comm",
                ]
            else:
                lines += ["r2 = r10", "r2 += -8", "r1 = map_idx(hash8) ll", "call bpf_map_delete_elem"]
            lines.append(f"{sc()} = r0")
        elif kind == "pkt" and pt != "socket_filter":
            d, e = (76, 80) if pt == "sched_cls" else (0, 4)
            label += 1
            n = rnd.choice([1, 4, 8, 14, 20])
            size = rnd.choice([1, 2, 4, 8])
            off = rnd.choice([0, n - size, n, n - 1, -1])
            lines += [
                f"r2 = *(u32 *)(r9 + {d})",
                f"r3 = *(u32 *)(r9 + {e})",
                "r4 = r2",
                f"r4 += {n}",
                f"if r4 > r3 goto L{label}",
                f"{sc()} = *(u{size * 8} *)(r2 {_off(off)})",
                f"L{label}:",
            ]
    lines += [f"r0 = {sc()}" if rnd.random() < 0.8 else "r0 = 0", "exit"]
    return "\n".join(lines), maps


def fam_random(seed: int = 20261122, count: int = 600) -> Iterator[Case]:
    """Random programs (held out: generated after the verifier was written, not tuned on)."""
    import random

    rnd = random.Random(seed)
    for i in range(count):
        pt = rnd.choice(["socket_filter", "sched_cls", "xdp"])
        asm, maps = random_program(rnd, pt)
        yield Case(
            f"random_{seed}_{i:04d}",
            "random",
            asm,
            prog_type=pt,
            maps=list(maps),
            description=f"random program {i} (seed {seed})",
        )


FAMILIES = [
    fam_alu_bounds,
    fam_branches,
    fam_loops,
    fam_stack,
    fam_ctx,
    fam_maps,
    fam_helpers,
    fam_calls,
    fam_packet,
    fam_ringbuf,
    fam_privilege,
    fam_structure,
    raw_structure,
    fam_random,
]


def all_cases() -> list[Case]:
    out: list[Case] = []
    seen: set[str] = set()
    for fam in FAMILIES:
        for c in fam():
            if c.name in seen:
                raise SystemExit(f"duplicate case name {c.name}")
            seen.add(c.name)
            out.append(c)
    return out


# --- helpers for names ---------------------------------------------------------------------------


def _kname(k: int) -> str:
    return f"m{-k}" if k < 0 else str(k)


def _off(off: int) -> str:
    return f"+ {off}" if off >= 0 else f"- {-off}"


def _sfx(size: int) -> str:
    return {1: "u8", 2: "u16", 4: "u32", 8: "u64"}[size]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_").lower() or "x"


def _opname(op: str) -> str:
    return {
        "+=": "add",
        "-=": "sub",
        "*=": "mul",
        "/=": "div",
        "%=": "mod",
        "|=": "or",
        "&=": "and",
        "^=": "xor",
        "<<=": "lsh",
        ">>=": "rsh",
        "s>>=": "arsh",
    }[op]


def _condname(c: str) -> str:
    return {
        "==": "eq",
        "!=": "ne",
        ">": "gt",
        ">=": "ge",
        "<": "lt",
        "<=": "le",
        "s>": "sgt",
        "s>=": "sge",
        "s<": "slt",
        "s<=": "sle",
        "&": "set",
    }[c]


# --- assembling -----------------------------------------------------------------------------------


def program_slots(c: Case) -> list[RawInsn]:
    if c.raw is not None:
        return [RawInsn(*s) for s in c.raw]
    from conformance.wholeprog import helper_symbols
    from reference_vm.asm import assemble

    symbols = dict(helper_symbols())
    symbols.update({m.name: i for i, m in enumerate(c.maps)})
    insns = assemble(c.asm or "", symbols=symbols)
    return [slot for insn in insns for slot in insn.raw()]


# --- recording on the kernel ------------------------------------------------------------------------


def _load_all(cases: list[tuple[str, bytes, int, list[MapDef]]]) -> dict[str, tuple[str, str]]:
    """Load every program (this process's privileges); name -> (errno name or "", message)."""
    from conformance.kernel import syscall as sc
    from conformance.kernel.btf_load import btf_load_raw
    from conformance.kernel.wholeprog import func_btf, func_info, needs_func_info
    from reference_vm.errors import EncodingError
    from reference_vm.insn import decode_program

    out = {}
    for name, code, ptype, maps in cases:
        fds: list[int] = []
        try:
            for m in maps:
                fds.append(sc.map_create(MAP_TYPES[m.type], m.key_size, m.value_size, m.max_entries))
            # BTF func_info where the kernel target adds it (conformance/kernel/wholeprog.py)
            try:
                program = decode_program(list(raw_program(code)))
            except EncodingError:
                program = []
            btf_fd, finfo = 0, None
            if program and needs_func_info(program):
                finfo = func_info(program, 0)
                btf_fd, _ = btf_load_raw(func_btf(len(finfo) // 8), log_size=0)
            try:
                fd = sc.prog_load(code, ptype, fd_array=fds, prog_btf_fd=max(btf_fd, 0), func_info=finfo)
            finally:
                if btf_fd > 0:
                    os.close(btf_fd)
            os.close(fd)
            out[name] = ("", "")
        except sc.BpfError as e:
            if e.cmd != "BPF_PROG_LOAD":
                out[name] = ("MAPFAIL", str(e))
            else:
                out[name] = (e.errno_name, e.message)
        finally:
            for f in fds:
                os.close(f)
    return out


def record(cases: list[Case]) -> dict[str, dict[str, list[str]]]:
    from conformance.kernel.caps import CAPBPF_SET, run_with_caps

    jobs = [
        (c.name, b"".join(s.to_bytes() for s in program_slots(c)), PROG_TYPES[c.prog_type], c.maps)
        for c in cases
    ]
    root = _load_all(jobs)
    unpriv: dict[str, tuple[str, str]] = {}
    for i in range(0, len(jobs), 200):
        unpriv.update(run_with_caps(lambda chunk=jobs[i : i + 200]: _load_all(chunk), CAPBPF_SET, 600))
    return {c.name: {"root": list(root[c.name]), "capbpf": list(unpriv[c.name])} for c in cases}


#: With log_level 1 the kernel sometimes appends its message to the line of the instruction it
#: was printing (``2: (a5) if r0 < 0xa goto pc-2 infinite loop detected at insn 1``); the message
#: is the part from one of these phrases on.
_GLUED = re.compile(
    r"^\d+: \([0-9a-f]{2}\) .*? ((?:infinite loop detected|BPF program is too large|"
    r"The sequence of).*)$"
)


def clean_message(message: str) -> str:
    m = _GLUED.match(message)
    return m.group(1) if m else message


def kernel_release() -> str:
    return platform.release()


# --- writing ---------------------------------------------------------------------------------------


def _q(text: str) -> str:
    return json.dumps(text)


def write_corpus(cases: list[Case], results: dict[str, dict[str, list[str]]], date: str) -> None:
    by_cat: dict[str, list[Case]] = {}
    for c in cases:
        by_cat.setdefault(c.category, []).append(c)
    OUT.mkdir(parents=True, exist_ok=True)
    kernel = kernel_release()
    for cat, items in by_cat.items():
        if cat == "structure_raw":
            d = OUT / "structure_raw"
            d.mkdir(exist_ok=True)
            for c in items:
                res = results[c.name]
                root_err, root_msg = res["root"][0], clean_message(res["root"][1])
                un_err, un_msg = res["capbpf"][0], clean_message(res["capbpf"][1])
                words = "\n".join(f"0x{s.to_u64():016x}" for s in program_slots(c))
                text = (
                    f"# {c.description}\n# expected: Linux {kernel}, root, recorded {date} by "
                    f"scripts/gen_verifier_corpus.py (BPF_PROG_LOAD of this program as a socket filter)\n"
                    f"# kernel root: {root_err or 'accept'}: {root_msg}\n"
                    f"# kernel capbpf: {un_err or 'accept'}: {un_msg}\n-- raw\n{words}\n"
                )
                text += f"-- error\n{root_msg} (errno {root_err})\n" if root_err else "-- result\n0x0\n"
                (d / f"{c.name}.data").write_text(text, encoding="utf-8")
            continue
        lines = [
            f"# Verifier corpus: {cat}. Expected verdicts, errnos and messages were recorded from",
            f"# BPF_PROG_LOAD on Linux {kernel} (root, and a CAP_BPF+CAP_NET_ADMIN-only child) by",
            "# scripts/gen_verifier_corpus.py; message = the last-but-one verifier log line.",
            '# message_unpriv: "accept" or "<message> (errno NAME)" for the CAP_BPF-only load.',
            "cases:",
        ]
        for c in items:
            res = results[c.name]
            root_err, root_msg = res["root"][0], clean_message(res["root"][1])
            un_err, un_msg = res["capbpf"][0], clean_message(res["capbpf"][1])
            lines.append(f"  - name: {c.name}")
            lines.append(f"    topic: verifier_{cat}")
            lines.append(f"    description: {_q(c.description)}")
            lines.append(f"    prog_type: {c.prog_type}")
            if c.maps:
                lines.append("    maps:")
                for m in c.maps:
                    lines.append(
                        f"      - {{name: {m.name}, type: {m.type}, key_size: {m.key_size}, "
                        f"value_size: {m.value_size}, max_entries: {m.max_entries}}}"
                    )
            if c.ctx is not None:
                lines.append(f"    ctx: {_q(c.ctx.hex(' '))}")
            if c.options:
                lines.append("    options: {" + ", ".join(f"{k}: {v}" for k, v in c.options.items()) + "}")
            lines.append("    programs:")
            lines.append("      main: |")
            for ln in (c.asm or "").strip().splitlines():
                lines.append(f"        {ln}")
            v = [f"verdict: {'reject' if root_err else 'accept'}"]
            if root_err:
                v += [f"errno: {root_err}", f"message: {_q(root_msg)}"]
            v.append(f"message_unpriv: {_q(f'{un_msg} (errno {un_err})' if un_err else 'accept')}")
            lines.append("    expect:")
            lines.append("      verifier: {" + ", ".join(v) + "}")
            lines.append(
                f"    provenance: {{kernel: {kernel}, mode: root+capbpf, date: {date}, "
                "recorded_by: scripts/gen_verifier_corpus.py}"
            )
        (OUT / f"{cat}.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")


# --- kernel register states (precision of the transfer functions at 64 bits) -----------------------

STATE_OPS = (
    "+=",
    "-=",
    "*=",
    "&=",
    "|=",
    "^=",
    "<<=",
    ">>=",
    "s>>=",
    "/=",
    "%=",
    "=",
    "neg",
    "be16",
    "le32",
    "s8",
    "s16",
    "s32",
)


def state_program(rnd) -> str:
    """Straight-line ALU code over ctx-loaded unknowns, narrowed and mixed, 64- and 32-bit,
    with a few conditional jumps over single instructions (refinement on both branches)."""
    lines = ["r9 = r1", "r6 = *(u32 *)(r9 + 0)", "r7 = *(u16 *)(r9 + 4)", "r8 = *(u8 *)(r9 + 8)"]
    regs = ["r6", "r7", "r8"]
    for _ in range(rnd.randint(4, 12)):
        dst, src = rnd.choice(regs), rnd.choice(regs)
        w = rnd.choice("rrw")
        op = rnd.choice(STATE_OPS)
        k = rnd.choice(
            [0, 1, 2, 3, 5, 7, 8, 15, 16, 31, 255, 0x7FFF, 0xFFFF, 0x7FFFFFFF, -1, -2, -16, -0x80000000]
        )
        if rnd.random() < 0.15:
            cond = rnd.choice(["==", "!=", ">", ">=", "<", "<=", "s>", "s>=", "s<", "s<=", "&"])
            lines.append(f"if {w}{dst[1:]} {cond} {k if rnd.random() < 0.6 else w + src[1:]} goto +1")
            lines.append(f"{dst} += 1")
            continue
        if op == "neg":
            lines.append(f"{w}{dst[1:]} = -{w}{dst[1:]}")
        elif op in ("be16", "le32"):
            lines.append(f"{dst} = {op} {dst}")
        elif op in ("s8", "s16", "s32"):
            if w == "w" and op == "s32":
                op = "s16"
            lines.append(f"{w}{dst[1:]} = ({op}){w}{src[1:]}")
        elif rnd.random() < 0.4 and op not in ("<<=", ">>=", "s>>="):
            lines.append(f"{w}{dst[1:]} {op} {w}{src[1:]}")
        else:
            if op in ("<<=", ">>=", "s>>="):
                k = rnd.randint(0, 31 if w == "w" else 63)
            if op in ("/=", "%=") and k == 0:
                k = 3
            lines.append(f"{w}{dst[1:]} {op} {k}")
    lines += ["r0 = 0", "exit"]
    return "\n".join(lines)


_STATE_TOKEN = re.compile(r"(R\d+)=((?:[^ (]|\((?:[^()]|\([^()]*\))*\))+)")


def record_states(seed: int = 6180044, count: int = 300) -> list[dict[str, object]]:
    """Load each program as root with log_level 2 and keep the kernel's register annotations
    (``N: (op) insn ; R1=... R2=...``, the registers an instruction wrote) of accepted programs, in
    processing order, with the DFS events (``from X to Y``: a popped branch; ``N: safe``: pruned)."""
    import random

    from conformance.kernel import syscall as sc

    rnd = random.Random(seed)
    out = []
    for i in range(count):
        asm = state_program(rnd)
        code = b"".join(s.to_bytes() for s in program_slots(Case("s", "s", asm)))
        try:
            fd = sc.prog_load(code, PROG_TYPES["socket_filter"], log_size=1 << 20)
        except sc.BpfError:
            continue
        os.close(fd)
        prog = ctypes.create_string_buffer(code, len(code))
        lic = ctypes.create_string_buffer(b"GPL")
        fd, log, _ = sc._load_once(prog, len(code) // 8, lic, 1, 2, 1 << 22, 0, 0, 0)
        if fd >= 0:
            os.close(fd)
        states: list[list[object]] = []  # [pc, {reg: state}] in the order the kernel processed them
        for line in log.splitlines():
            m = re.match(r"^(\d+): \([0-9a-f]{2}\) [^;]*; (.*)$", line)
            if m:
                states.append([int(m.group(1)), dict(_STATE_TOKEN.findall(m.group(2)))])
                continue
            m = re.match(r"^from (\d+) to (\d+):( safe)?", line)
            if m:  # the DFS popped a branch: a new path segment starts (and may be pruned at once)
                states.append(["from", int(m.group(1)), int(m.group(2))])
                if m.group(3):
                    states.append(["safe", int(m.group(2))])
                continue
            m = re.match(r"^(\d+): safe$", line)
            if m:
                states.append(["safe", int(m.group(1))])
        out.append({"name": f"states_{seed}_{i:04d}", "asm": asm, "states": states})
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", help="regular expression on case names")
    ap.add_argument("--list", action="store_true", help="list the cases and exit")
    ap.add_argument("--results", help="also save the raw kernel results (JSON) here")
    ap.add_argument("--from-results", help="write the corpus from results saved with --results (no kernel)")
    ap.add_argument(
        "--states",
        action="store_true",
        help="record the kernel's register states of ALU programs (corpora/verifier/kernel_states.json)",
    )
    args = ap.parse_args(argv)
    if args.states:
        data = {
            "kernel": kernel_release(),
            "date": datetime.date.today().isoformat(),
            "source": "BPF_PROG_LOAD log_level 2 (root), socket filter; "
            "scripts/gen_verifier_corpus.py --states",
            "programs": record_states(),
        }
        (OUT / "kernel_states.json").write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
        print(f"{len(data['programs'])} programs' states written")
        return 0
    cases = all_cases()
    if args.only:
        rx = re.compile(args.only)
        cases = [c for c in cases if rx.search(c.name)]
    if args.list:
        for c in cases:
            print(c.category, c.name)
        print(len(cases), "cases", file=sys.stderr)
        return 0
    if args.from_results:
        results = json.loads(Path(args.from_results).read_text(encoding="utf-8"))
        cases = [c for c in cases if c.name in results]
    else:
        results = record(cases)
    if any(r[m][0] == "MAPFAIL" for r in results.values() for m in r):
        raise SystemExit("map creation failed for some case: not writing")
    if args.results:
        Path(args.results).write_text(json.dumps(results, indent=1), encoding="utf-8")
    write_corpus(cases, results, datetime.date.today().isoformat())
    print(f"{len(cases)} cases written to {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
