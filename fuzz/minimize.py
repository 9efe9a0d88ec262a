"""Delta debugging of a divergence, and the reproducer files of a finding.

:func:`minimize` shrinks a (program, input) pair while the oracle still reports the *same*
coarse divergence signature (same targets, same differing state parts, same error change):

1. ddmin over instructions (Zeller's delta debugging: remove chunks of halving size); a jump
   or local call whose target was removed is retargeted to the next surviving instruction;
2. simpler immediates and offsets (0, 1, -1, then halving towards 0), one field at a time;
3. a simpler input (8-byte words, then bytes, set to zero).

:func:`write_reproducer` turns a finding into a bpf_conformance ``.data`` file whose
``-- result`` is the *reference target's* value: a reproducer, clearly marked as such in the
file, never an expectation. Expected values come from the kernel or a cited source, via
``bpfcheck fuzz promote`` (docs/fuzzing.md).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reference_vm.insn import Insn, jump_target
from reference_vm.isa import Use

from .oracle import Oracle


def atomic_write(path: str | os.PathLike[str], data: bytes | str, durable: bool = True) -> None:
    """Write a file so that readers (and a kill at any moment) see the old file or the new one,
    never a part: temp file in the same folder, ``os.replace``. ``durable`` adds an fsync, so that
    the file also survives a machine crash (a SIGKILL does not need it: the page cache stays)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    raw = data.encode() if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


# --- Programs as items with symbolic targets ---------------------------------------------------


@dataclass(frozen=True)
class _Item:
    insn: Insn
    target: int | None  # index of the item a jump or local call goes to


def to_items(program: Sequence[Insn | None]) -> list[_Item]:
    index: dict[int, int] = {}
    for pc, insn in enumerate(program):
        if insn is not None:
            index[pc] = len(index)
    items = []
    for pc, insn in enumerate(program):
        if insn is None:
            continue
        t = jump_target(insn, pc)
        items.append(_Item(insn, index.get(t) if t is not None else None))
    return items


def from_items(items: Sequence[_Item]) -> list[Insn | None]:
    slot, pos = [], 0
    for it in items:
        slot.append(pos)
        pos += it.insn.op.slots
    program: list[Insn | None] = []
    for k, it in enumerate(items):
        insn = it.insn
        if it.target is not None:
            t = min(it.target, len(items) - 1)
            delta = slot[t] - slot[k] - 1
            if insn.op.shape.imm is Use.JUMP:
                insn = Insn(insn.op, insn.dst, insn.src, insn.off, delta)
            elif -0x8000 <= delta < 0x8000:
                insn = Insn(insn.op, insn.dst, insn.src, delta, insn.imm)
            else:
                insn = Insn(insn.op, insn.dst, insn.src, 0, insn.imm)
        program.append(insn)
        if insn.op.slots == 2:
            program.append(None)
    return program


def _remove(items: Sequence[_Item], drop: set[int]) -> list[_Item]:
    keep = [k for k in range(len(items)) if k not in drop]
    new_index = {}
    j = 0
    for k in range(len(items)):  # removed targets go to the next survivor
        while j < len(keep) and keep[j] < k:
            j += 1
        new_index[k] = j
    return [_Item(items[k].insn, None if (t := items[k].target) is None else new_index[t]) for k in keep]


# --- Minimization ------------------------------------------------------------------------------


@dataclass
class Minimized:
    program: list[Insn | None]
    mem: bytes | None
    evaluations: int
    seconds: float


def minimize(
    program: Sequence[Insn | None],
    mem: bytes | None,
    budget: int,
    oracle: Oracle,
    want: str,
    *,
    max_evals: int = 1500,
    max_seconds: float = 30.0,
) -> Minimized:
    """The smallest program and input found that keep the coarse signature ``want``."""
    start = time.monotonic()
    evals = 0

    def same(items: Sequence[_Item], m: bytes | None) -> bool:
        nonlocal evals
        if not items or evals >= max_evals or time.monotonic() - start > max_seconds:
            return False
        evals += 1
        try:
            result = oracle.check(from_items(items), [m], budget)[0]
        except Exception:  # noqa: BLE001 - a candidate the oracle cannot even run: not the same
            return False
        return result.coarse == want

    items = to_items(program)
    items = _ddmin(items, lambda cand: same(cand, mem))
    items = _simplify_fields(items, lambda cand: same(cand, mem))
    mem = _simplify_mem(mem, lambda m: same(items, m))
    return Minimized(from_items(items), mem, evals, time.monotonic() - start)


def _ddmin(items: list[_Item], test: Callable[[list[_Item]], bool]) -> list[_Item]:
    n = 2
    while len(items) >= 2:
        chunk = max(1, len(items) // n)
        removed = False
        for lo in range(0, len(items), chunk):
            cand = _remove(items, set(range(lo, min(lo + chunk, len(items)))))
            if cand and test(cand):
                items = cand
                n = max(n - 1, 2)
                removed = True
                break
        if not removed:
            if chunk == 1:
                break
            n = min(n * 2, len(items))
    return items


def _candidates(value: int) -> list[int]:
    out = [0, 1, -1]
    v = value
    while v not in (0, 1, -1):
        v = int(v / 2)
        out.append(v)
    return [c for c in dict.fromkeys(out) if c != value]


def _simplify_fields(items: list[_Item], test: Callable[[list[_Item]], bool]) -> list[_Item]:
    for k in range(len(items)):
        for fname in ("imm", "off"):
            use = getattr(items[k].insn.op.shape, fname)
            if use not in (Use.VALUE, Use.MEMOFF):
                continue
            for value in _candidates(getattr(items[k].insn, fname)):
                insn = items[k].insn
                if insn.op.slots == 2 and fname == "imm":
                    value &= (1 << 64) - 1
                elif not -(1 << 31) <= value < (1 << 31) or (
                    fname == "off" and not -0x8000 <= value < 0x8000
                ):
                    continue
                new = Insn(
                    insn.op,
                    insn.dst,
                    insn.src,
                    value if fname == "off" else insn.off,
                    value if fname == "imm" else insn.imm,
                )
                cand = list(items)
                cand[k] = _Item(new, items[k].target)
                if test(cand):
                    items = cand
                    break
    return items


def _simplify_mem(mem: bytes | None, test: Callable[[bytes | None], bool]) -> bytes | None:
    if not mem:
        return mem
    cur = bytearray(mem)
    for unit in (8, 1):
        for at in range(0, len(cur), unit):
            if not any(cur[at : at + unit]):
                continue
            cand = bytearray(cur)
            cand[at : at + unit] = bytes(len(cand[at : at + unit]))
            if test(bytes(cand)):
                cur = cand
    return bytes(cur)


# --- Reproducer files --------------------------------------------------------------------------


def _raw_words(program: Sequence[Insn | None]) -> list[str]:
    return [f"0x{raw.to_u64():016x}" for i in program if i is not None for raw in i.raw()]


def data_text(
    finding: dict[str, Any], program: Sequence[Insn | None], mem: bytes | None, reference: Any
) -> str:
    """A bpf_conformance ``.data`` reproducer: ``-- asm`` when the disassembly reassembles to the
    same bytes (else ``-- raw`` with the assembly in comments), ``-- mem``, and the reference
    target's r0 (or ``-- error``), marked as a reproducer."""
    from reference_vm.asm import assemble, disassemble
    from reference_vm.insn import encode_program

    lines = [
        f"# bpfcheck fuzz finding {finding['id']} -- REPRODUCER, NOT A CONFORMANCE TEST",
        f"# signature: {finding['signature']}",
        f"# seed: {finding.get('seed')}  (replay: bpfcheck fuzz replay {finding.get('seed')} --state DIR)",
        f"# targets: {', '.join(finding.get('targets', []))}",
        "# The '-- result' / '-- error' below is what the REFERENCE TARGET"
        f" ({finding.get('targets', ['?'])[0]}) did.",
        "# It is NOT an expected value: expected values never come from our own implementation.",
        "# `bpfcheck fuzz promote` writes a regression case with a value from the kernel or a cited source.",
    ]
    fits = set(finding.get("fields", [])) & {"r0", "error", "exception", "timeout"}
    if not fits:
        lines.append(
            f"# note: the divergence is in {', '.join(finding.get('fields', []))}, which a .data case "
            "cannot check (r0 only): see finding.json"
        )
    for text in finding.get("describe", "").splitlines():
        lines.append(f"# {text[:300]}")
    code = encode_program([i for i in program if i is not None])
    asm = disassemble(program)
    try:
        same = encode_program(assemble(asm)) == code
    except Exception:  # noqa: BLE001
        same = False
    if same:
        lines.append("-- asm")
        lines += asm.rstrip("\n").splitlines()
    else:
        lines += ["# " + line for line in asm.rstrip("\n").splitlines()]
        lines.append("-- raw")
        lines += _raw_words(program)
    if mem:
        lines.append("-- mem")
        lines.append(" ".join(f"{b:02x}" for b in mem))
    if reference is not None and reference.error == "ok" and reference.r0 is not None:
        lines += ["-- result", f"0x{reference.r0:x}"]
    else:
        err = reference.error if reference is not None else "no outcome"
        lines += [f"# reference outcome: {err}", "-- error", ""]
    return "\n".join(lines) + "\n"


def finding_json(finding: dict[str, Any]) -> str:
    return json.dumps(finding, indent=1, sort_keys=True, default=str) + "\n"
