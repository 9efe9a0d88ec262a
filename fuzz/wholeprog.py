"""Whole-program fuzz cases: two programs and an environment of maps (docs/fuzzing.md).

A :class:`WholeCase` is what a single generated program cannot exercise: an array and a hash
map looked up (with the NULL check the verifier demands), updated and deleted through
helpers, a ring buffer written with ``bpf_ringbuf_reserve``/``submit``/``discard`` and
``bpf_ringbuf_output``, and a prog array whose slots 0 and 1 hold a second generated program
(``tail``), which the main program enters with ``bpf_tail_call`` (slot 2 is empty, index 7 is
out of range; ``tail`` may tail-call itself through slot 1 until the limit of 33).

The programs are verifier-aware (:class:`fuzz.strategies._AwareBuilder` plus the map
constructs): they are meant to be accepted, so a run that faults after bpfcheck's verifier
accepted both programs is a soundness finding. The engines run the case through their
multi-program entry (:func:`reference_vm.interpreter.run_programs`,
:func:`reference_vm.jit.run_programs`) on a fresh :class:`~reference_vm.env.Environment` per
input, and the oracle compares the full state, maps and ring-buffer records included.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from reference_vm import isa
from reference_vm.insn import Insn
from reference_vm.isa import Kind
from reference_vm.memory import MEM_BASE, STACK_FRAMES, standard_memory
from reference_vm.outcome import Outcome

from .strategies import (
    INPUT_SIZE,
    ByteSource,
    GenConfig,
    Source,
    _AwareBuilder,
    fresh_input,
)

Program = Sequence[Insn | None]

#: The environment every whole case has (indices are the ``lddw_map_idx`` immediates).
ARR, HASH, RB, JMP = 0, 1, 2, 3
ARR_VALUE, ARR_ENTRIES, HASH_ENTRIES, RB_SIZE, JMP_ENTRIES = 16, 4, 8, 4096, 3
HELPER = {"lookup": 1, "update": 2, "delete": 3, "tail_call": 12, "output": 130, "reserve": 131}
HELPER.update({"submit": 132, "discard": 133, "query": 134})


def map_specs() -> list[Any]:
    from reference_vm.maps import MapSpec, MapType

    return [
        MapSpec("arr", MapType.ARRAY, 4, ARR_VALUE, ARR_ENTRIES),
        MapSpec("hash", MapType.HASH, 4, 8, HASH_ENTRIES),
        MapSpec("rb", MapType.RINGBUF, 0, 0, RB_SIZE),
        MapSpec("jmp", MapType.PROG_ARRAY, 4, 4, JMP_ENTRIES),
    ]


@dataclass(frozen=True)
class WholeCase:
    """Programs (the first is the entry), initial map contents, inputs, budget."""

    programs: tuple[tuple[str, tuple[Insn | None, ...]], ...]
    hash: tuple[tuple[int, int], ...]  # initial (key, u64 value) pairs of the hash map
    mems: tuple[bytes, ...]  # per input: the array map's initial values (ARR_ENTRIES x ARR_VALUE)
    budget: int = 4096

    @property
    def program(self) -> tuple[Insn | None, ...]:
        """The entry program (what signatures and row classes look at)."""
        return self.programs[0][1]

    def environment(self, mem: bytes) -> Any:
        """A fresh environment: every map created and filled (the array from the input), the
        prog array's slots; the input is also the raw program's memory (r1/r2)."""
        from reference_vm.env import Environment
        from reference_vm.maps import add_map

        env = Environment(standard_memory(mem, STACK_FRAMES), ncpus=2)
        arr, hsh, _, jmp = (add_map(env, spec) for spec in map_specs())
        for k in range(ARR_ENTRIES):
            arr.sys_update(k.to_bytes(4, "little"), mem[k * ARR_VALUE : (k + 1) * ARR_VALUE])
        for key, value in self.hash:
            hsh.sys_update(key.to_bytes(4, "little"), value.to_bytes(8, "little"))
        jmp.set(0, "tail")  # type: ignore[attr-defined]
        jmp.set(1, "tail")  # type: ignore[attr-defined]
        return env

    def run(self, engine: str, mem: bytes, options: dict[str, object] | None = None) -> Outcome:
        """One run on ``interpreter`` or a JIT architecture (``x86_64``, ``arm64``)."""
        from conformance.wholeprog import finish

        env = self.environment(mem)
        progs = [(name, list(p)) for name, p in self.programs]
        r1, r2 = MEM_BASE, len(mem)
        if engine == "interpreter":
            from reference_vm.interpreter import run_programs

            out = run_programs(progs, "main", env, r1=r1, r2=r2, budget=self.budget)
        else:
            from reference_vm.jit import run_programs as jit_run

            out = jit_run(progs, "main", env, r1=r1, r2=r2, budget=self.budget, arch=engine, options=options)
        return finish(out, env)  # type: ignore[no-any-return]

    def verify(self, privileged: bool = True) -> tuple[str | None, Any]:
        """bpfcheck's verifier on every program as socket filters (r1 = the context, which the
        programs only hand to ``bpf_tail_call``), the case's maps by index: (the name of the
        first refused program or None, its result or the last one)."""
        from reference_vm.verifier import verify

        from .targets import raw_slots

        result = None
        for name, program in self.programs:
            result = verify(raw_slots(program), maps=map_specs(), privileged=privileged)
            if not result.accepted:
                return name, result
        return None, result


# --- The generator -------------------------------------------------------------------------------


class _MapBuilder(_AwareBuilder):
    """The verifier-aware builder plus map, ring buffer and tail-call constructs."""

    CONSTRUCTS = ("lookup", "lookup", "update", "delete", "ringbuf", "ringbuf", "output", "tail_call")

    def __init__(self, src: Source, cfg: GenConfig, tail: bool) -> None:
        super().__init__(src, replace(cfg, calls=False))
        self.tail = tail

    def lddw_map(self, reg: int, index: int) -> None:
        self.emit("lddw_map_idx", dst=reg, src=isa.BY_NAME["lddw_map_idx"].select[1], imm=index)  # type: ignore[index]

    def call(self, name: str) -> None:
        self.emit("call", imm=HELPER[name])

    def key(self, off: int, limit: int) -> None:
        s = self.s
        k = s.int(0, limit - 1) if s.chance(0.9) else s.pick((limit, 0x7FFFFFFF, -1))
        self.emit("stw", dst=10, off=off, imm=k)

    def restore_inner(self) -> None:
        first = len(self.items)
        self.restore()
        for k in range(first, len(self.items)):
            self.landable[k] = False

    def prologue(self) -> None:
        """r9 = r1 (the context, for tail calls); r0 and r2-r8 from immediates."""
        s = self.s
        self.emit("mov64_reg", dst=9, src=1)
        for reg in (0, 2, 3, 4, 5, 6, 7, 8):
            if s.chance(0.5):
                self.emit("lddw", dst=reg, imm=self.value64())
            else:
                self.emit("mov64_imm", dst=reg, imm=self.imm32())

    def guarded(self, reg: int, size: int) -> None:
        """``if reg == 0 goto out; access through reg (within size bytes); out: r0 = scalar``."""
        s = self.s
        check = self.emit("jeq64_imm", dst=reg, imm=0)
        for _ in range(s.int(1, 3)):
            row = s.pick(
                [
                    r
                    for k in (Kind.LOAD, Kind.STORE_REG, Kind.STORE_IMM, Kind.ATOMIC)
                    for r in self.rows.get(k, [])
                ]
            )
            if row.size > size or (row.kind is Kind.ATOMIC and "cmpxchg" in row.name and reg == 0):
                continue
            f = self.fields(row)
            off = row.size * s.int(0, (size - row.size) // row.size)
            if row.kind in (Kind.LOAD,):
                self.emit_inner(row, dst=s.pick((3, 4, 5, 6, 7)), src=reg, off=off)
            else:
                src = f.get("src", 0) if row.kind is not Kind.STORE_IMM else 0
                if src == reg and row.kind is not Kind.STORE_IMM:
                    src = 3
                self.emit_inner(row, dst=reg, src=src, off=off, imm=f.get("imm", 0))
        check.target = len(self.items)

    def construct(self) -> None:
        s = self.s
        what = s.pick(self.CONSTRUCTS)
        if what == "lookup":
            which = s.pick((ARR, HASH))
            self.key(-4, ARR_ENTRIES if which == ARR else HASH_ENTRIES)
            self.lddw_map(1, which)
            self.emit_inner("mov64_reg", dst=2, src=10)
            self.emit_inner("add64_imm", dst=2, imm=-4)
            self.emit_inner("call", imm=HELPER["lookup"])
            self.restore_inner()
            self.guarded(0, ARR_VALUE if which == ARR else 8)
            self.emit("mov64_imm", dst=0, imm=s.pick((0, 1, 7)))
        elif what == "update":
            which = s.pick((ARR, HASH))
            self.key(-4, ARR_ENTRIES if which == ARR else HASH_ENTRIES)
            self.emit_inner("stdw", dst=10, off=-24, imm=self.imm32())
            self.emit_inner("stdw", dst=10, off=-16, imm=self.imm32())
            self.lddw_map(1, which)
            self.landable[-1] = False
            self.emit_inner("mov64_reg", dst=2, src=10)
            self.emit_inner("add64_imm", dst=2, imm=-4)
            self.emit_inner("mov64_reg", dst=3, src=10)
            self.emit_inner("add64_imm", dst=3, imm=-24)
            self.emit_inner("mov64_imm", dst=4, imm=s.pick((0, 0, 1, 2)))  # ANY, NOEXIST, EXIST
            self.emit_inner("call", imm=HELPER["update"])
        elif what == "delete":
            self.key(-4, HASH_ENTRIES)
            self.lddw_map(1, s.pick((HASH, HASH, ARR)))
            self.landable[-1] = False
            self.emit_inner("mov64_reg", dst=2, src=10)
            self.emit_inner("add64_imm", dst=2, imm=-4)
            self.emit_inner("call", imm=HELPER["delete"])
        elif what == "ringbuf":
            size = s.pick((8, 16, 24))
            self.lddw_map(1, RB)
            self.emit_inner("mov64_imm", dst=2, imm=size)
            self.emit_inner("mov64_imm", dst=3, imm=0)
            self.emit_inner("call", imm=HELPER["reserve"])
            self.restore_inner()
            check = self.emit_inner("jeq64_imm", dst=0, imm=0)
            for off in range(0, size, 8):
                if s.chance(0.8):
                    self.emit_inner("stxdw", dst=0, src=s.pick((3, 4, 5, 6, 7, 8)), off=off)
            self.emit_inner("mov64_reg", dst=1, src=0)
            self.emit_inner("mov64_imm", dst=2, imm=s.pick((0, 0, 1, 2)))  # flags: wakeup bits
            self.emit_inner("call", imm=HELPER[s.pick(("submit", "submit", "discard"))])
            self.restore_inner()
            check.target = len(self.items)
            self.emit("mov64_imm", dst=0, imm=0)
        elif what == "output":
            self.emit("stxdw", dst=10, src=s.pick((3, 4, 5, 6, 7, 8)), off=-16)
            self.lddw_map(1, RB)
            self.landable[-1] = False
            self.emit_inner("mov64_reg", dst=2, src=10)
            self.emit_inner("add64_imm", dst=2, imm=-16)
            self.emit_inner("mov64_imm", dst=3, imm=s.pick((8, 16)))
            self.emit_inner("mov64_imm", dst=4, imm=0)
            self.emit_inner("call", imm=HELPER["output"])
        else:  # tail_call: main into slots 0/1/2 (empty)/7 (out of range); tail into slot 1 (itself)
            self.emit("mov64_reg", dst=1, src=9)
            self.lddw_map(2, JMP)
            self.landable[-1] = False
            slot = 1 if self.tail else s.pick((0, 0, 1, 2, 7))
            self.emit_inner("mov64_imm", dst=3, imm=slot)
            self.emit_inner("call", imm=HELPER["tail_call"])
            self.restore_inner()
            self.emit_inner("mov64_imm", dst=0, imm=s.pick((0, 1, -1)))  # bpf_tail_call is void
        self.restore()

    def body(self, n: int, depth: int) -> None:
        s = self.s
        start = len(self.items)
        for _ in range(s.int(1, 4)):
            super().body(s.int(1, max(1, n // 4)), depth)
            self.construct()
        for item in self.items[start:]:  # every jump stays inside the body it was made in
            if item.target is not None and item.target > len(self.items):
                item.target = len(self.items)

    def build_program(self) -> tuple[Insn | None, ...]:
        self.prologue()
        self.body(self.cfg.max_insns, 0)
        self.emit("exit")
        return tuple(self.layout())


def generate_whole(src: Source, cfg: GenConfig | None = None) -> WholeCase:
    """A whole case, every choice taken from ``src``."""
    cfg = cfg or GenConfig()
    s = src
    main_b = _MapBuilder(s, cfg, tail=False)
    main = main_b.build_program()
    tail_b = _MapBuilder(s, replace(cfg, max_insns=max(4, cfg.max_insns // 2)), tail=True)
    tail = tail_b.build_program()
    hsh = tuple((k, main_b.value64()) for k in range(HASH_ENTRIES) if s.chance(0.4))
    main_b.has_mem, main_b.mem_len = True, ARR_VALUE * ARR_ENTRIES
    mems = tuple(main_b.mem() or b"" for _ in range(max(1, cfg.inputs)))
    return WholeCase((("main", main), ("tail", tail)), hsh, mems, cfg.budget)


def whole_from_bytes(data: bytes, cfg: GenConfig | None = None) -> WholeCase:
    return generate_whole(ByteSource(data), cfg)


def whole_from_seed(seed: int, cfg: GenConfig | None = None) -> WholeCase:
    return whole_from_bytes(fresh_input(seed, INPUT_SIZE), cfg)


def yaml_text(case: WholeCase, mem: bytes | None, ref: Outcome | None, header: Sequence[str]) -> str:
    """A whole-program YAML case (docs/case-format.md) reproducing ``case`` on ``mem``. Its
    ``expect`` is what the reference target did, and its provenance says so: a reproducer, not
    a regression case (``bpfcheck fuzz promote`` is for those). The programs are socket filters
    (as verified): they only hand r1 to ``bpf_tail_call``, so the context changes r1's value
    (and the registers that copy it) but nothing else."""
    import json

    from reference_vm.asm import disassemble

    def q(text: str) -> str:
        return json.dumps(text)

    lines = [f"# {h}" for h in header]
    lines += ["cases:", "  - name: fuzz_repro", "    prog_type: socket_filter", "    maps:"]
    lines.append(
        f"      - {{name: arr, type: array, key_size: 4, value_size: {ARR_VALUE}, max_entries: {ARR_ENTRIES},"
    )
    values = ", ".join(
        f"{k}: {q((mem or b'')[k * ARR_VALUE : (k + 1) * ARR_VALUE].hex(' '))}" for k in range(ARR_ENTRIES)
    )
    lines.append(f"         values: {{{values}}}}}")
    hvalues = ", ".join(f"{k}: {q(v.to_bytes(8, 'little').hex(' '))}" for k, v in case.hash)
    lines.append(
        f"      - {{name: hash, type: hash, key_size: 4, value_size: 8, max_entries: {HASH_ENTRIES},"
    )
    lines.append(f"         values: {{{hvalues}}}}}")
    lines.append(f"      - {{name: rb, type: ringbuf, key_size: 0, value_size: 0, max_entries: {RB_SIZE}}}")
    lines.append(
        f"      - {{name: jmp, type: prog_array, key_size: 4, value_size: 4, max_entries: {JMP_ENTRIES},"
        " slots: {0: tail, 1: tail}}"
    )
    lines.append("    programs:")
    for name, program in case.programs:
        lines.append(f"      {name}: |")
        lines += [f"        {line}" for line in disassemble(list(program)).splitlines()]
    if mem is not None:
        lines.append(f"    mem: {q(mem.hex(' '))}")
    lines.append(f"    options: {{budget: {case.budget}, ncpus: 2}}")
    expect = ["error: " + (ref.error if ref is not None else "ok")]
    if ref is not None and ref.r0 is not None and ref.ok:
        expect.append(f"r0: {ref.r0:#x}")
    lines.append("    expect: {" + ", ".join(expect) + "}")
    lines.append("    provenance:")
    lines.append(
        "      source: bpfcheck fuzz reproducer; expect is the reference target's outcome, not a fact"
    )
    return "\n".join(lines) + "\n"


def pick_whole(name_seed: int, share: float) -> bool:
    """Whether seed ``name_seed`` (:func:`fuzz.campaign.derive`) is a whole case."""
    return share > 0 and random.Random(name_seed ^ 0x5EED).random() < share


__all__ = [
    "WholeCase",
    "generate_whole",
    "map_specs",
    "pick_whole",
    "whole_from_bytes",
    "whole_from_seed",
    "yaml_text",
]
