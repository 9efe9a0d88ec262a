"""Running a whole-program (YAML) case: maps created and filled, programs assembled, one run.

The steps are the same for every in-process engine (interpreter, JITs): :func:`assembled`
turns the case's text into decoded programs with map and helper names as symbols,
:func:`make_env` builds the :class:`~reference_vm.env.Environment` with every map created and
filled as the case says, and :func:`finish` adds what a consumer sees of each ring buffer.
:func:`check_state` compares the parts of an outcome a YAML expectation names (maps, ring
buffer records, trace lines, memory).

A whole-program case models ``BPF_PROG_LOAD``: before any engine runs it, :func:`load_check`
puts every program through bpfcheck's verifier (:mod:`reference_vm.verifier`, Linux 6.18's
rules), so a program the kernel refuses is refused here too (``rejected:verifier`` with the
kernel's message) instead of being executed. ``.data`` cases are ISA cases (RFC 9669 defines
no verifier) and run as they are.
"""

from __future__ import annotations

import functools
from typing import Any

from reference_vm.env import Environment
from reference_vm.errors import CaseFormatError
from reference_vm.helpers import DEFAULT_HELPERS
from reference_vm.insn import Insn
from reference_vm.memory import MAX_CALL_FRAMES, MEM_BASE, STACK_FRAMES, standard_memory
from reference_vm.outcome import Outcome

from .yaml_case import YamlCase, assemble_case


def helper_symbols() -> dict[str, int]:
    """Helper names a case's assembly may use for ``call`` (``bpf_map_lookup_elem`` …)."""
    names = {h.name: h.id for h in DEFAULT_HELPERS.by_id.values()}
    names.setdefault("bpf_tail_call", 12)
    names.setdefault("bpf_loop", 181)
    return names


def assembled(case: YamlCase) -> dict[str, list[Insn | None]]:
    if case.image is not None:  # an `elf:` case: the object's linked programs (docs/elf.md)
        return {p.name: list(p.insns) for p in case.image.programs}
    return assemble_case(case, helper_symbols())


def map_specs(case: YamlCase) -> list[Any]:
    """The :class:`~reference_vm.maps.MapSpec` of every map of the case, in declaration order."""
    from reference_vm.maps import MapError, MapSpec, MapType

    by_name: dict[str, MapSpec] = {}
    for m in case.maps:
        try:
            by_name[m.name] = MapSpec(m.name, MapType.parse(m.type), m.key_size, m.value_size,
                                      m.max_entries, m.flags, by_name[m.inner] if m.inner else None)
        except (MapError, KeyError) as e:
            message = e.message if isinstance(e, MapError) else f"unknown inner map {m.inner!r}"
            raise CaseFormatError(f"map {m.name!r}: {message}", file=case.path, line=m.line) from None
    return list(by_name.values())


def verify(case: YamlCase, privileged: bool = True) -> tuple[Any, dict[str, Any]]:
    """Verify every program of the case as the kernel target loads it, in order; the first
    program that is not accepted decides.

    What the kernel target (:mod:`conformance.kernel.wholeprog`) adds to a program and that
    changes what the program means is added here too: a ``raw`` program's prologue (r1 = the
    ``mem`` map value, r2 = its length; instruction numbers in messages are mapped back) and BTF
    func_info where the kernel refuses the program without it (callbacks; tail calls in a
    program with subprograms). The epilogue that only captures r0 is not: it would change
    messages (an r0 pointer "leaks into map" instead of "as return value"). Returns the deciding
    :class:`~reference_vm.verifier.VerifierResult` (None for a case without programs) and, per
    program, the processed-instruction count and the log's last lines (``"program"`` names the
    one that decided)."""
    from reference_vm.maps import MapSpec, MapType
    from reference_vm.program import FIRST_MAP_FD
    from reference_vm.verifier import verify as verify_program

    from .kernel.wholeprog import needs_func_info, prologue
    from .kernel.wiring import translate_message
    from .verify_cache import cached

    programs = assembled(case)
    maps = map_specs(case)
    mem_fd = None
    if case.mem is not None:
        mem_fd = FIRST_MAP_FD + len(maps)
        maps.append(MapSpec("mem", MapType.ARRAY, 4, max(len(case.mem), 1), 1, 1 << 10))  # mmapable
    info: dict[str, Any] = {}
    result = None
    for spec in case.programs:
        program = programs[spec.name]
        head = prologue(spec.prog_type, mem_fd, len(case.mem or b""))
        offset = sum(insn.op.slots for insn in head)
        slots = [slot for insn in [*head, *program] if insn is not None for slot in insn.raw()]
        prog_type = "socket_filter" if spec.prog_type == "raw" else spec.prog_type
        func_info = needs_func_info(program)
        result = cached(
            ("verify", bytes(b for slot in slots for b in slot.to_bytes()), prog_type,
             tuple((m.type, m.key_size, m.value_size, m.max_entries, m.flags, repr(m.inner_map))
                   for m in maps), privileged, func_info),
            functools.partial(verify_program, slots, prog_type=prog_type, maps=maps,
                              privileged=privileged, func_info=func_info))
        if result.verdict == "reject" and offset:
            result.message = translate_message(result.message, offset)
        info[spec.name] = {"insn_processed": result.insn_processed,
                           "log_tail": result.log.splitlines()[-3:]}
        if not result.accepted:
            info["program"] = spec.name
            break
    return result, info


def load_check(case: YamlCase) -> Outcome | None:
    """``rejected:verifier`` when bpfcheck's verifier refuses one of the case's programs (root
    mode), else None: the engine runs the case. A program the verifier cannot judge (it uses
    something the verifier does not model: ``unsupported``) runs unverified, as do tracing
    attachments (fentry/fexit/fmod_ret), which the verifier does not model either."""
    from reference_vm import trampoline
    from reference_vm.outcome import rejected

    if trampoline.is_trampoline_case(case):
        return None
    result, info = verify(case)
    if result is None or result.verdict != "reject":
        return None
    return Outcome(error=rejected("verifier"), message=f"{result.message} (errno {result.errno})",
                   extra={"verifier": info})


def _key_bytes(key: int | str, size: int, case: YamlCase, map_name: str) -> bytes:
    if isinstance(key, int):
        try:
            return key.to_bytes(size, "little")
        except OverflowError:
            raise CaseFormatError(f"map {map_name!r}: key {key} does not fit in {size} bytes",
                                  file=case.path, line=case.line) from None
    data = bytes.fromhex(key)
    if len(data) != size:
        raise CaseFormatError(f"map {map_name!r}: key {key!r} is {len(data)} bytes, key_size is {size}",
                              file=case.path, line=case.line)
    return data


def make_env(case: YamlCase) -> Environment:
    """An environment with the case's input memory and every map created and filled."""
    from reference_vm.maps import MapError, add_map

    ncpus = int(case.options.get("ncpus", 2))
    frames = STACK_FRAMES if any(m.type == "prog_array" for m in case.maps) else MAX_CALL_FRAMES
    env = Environment(standard_memory(case.mem, frames), ncpus=ncpus)
    for m, spec in zip(case.maps, map_specs(case), strict=True):
        try:
            bmap = add_map(env, spec)
        except MapError as e:
            raise CaseFormatError(f"map {m.name!r}: {e.message}", file=case.path, line=m.line) from None
        for index, prog in sorted(m.slots.items()):
            bmap.set(index, prog)  # type: ignore[attr-defined]
        for key, value_hex in m.values.items():
            value = bytes.fromhex(value_hex)
            per_cpu = "percpu" in m.type
            if per_cpu and len(value) <= m.value_size:
                slot = (m.value_size + 7) // 8 * 8
                value = (value + bytes(slot - len(value))) * ncpus
            try:
                bmap.sys_update(_key_bytes(key, m.key_size, case, m.name), value)
            except MapError as e:
                raise CaseFormatError(f"map {m.name!r} key {key!r}: {e.message}", file=case.path,
                                      line=m.line) from None
    return env


def entry_context(case: YamlCase, env: Environment) -> tuple[int, int, dict[int, int]]:
    """r1, r2 and the converted context fields at entry.

    ``raw`` programs get the input memory and its length (bpf_conformance's convention); typed
    programs get their context (:mod:`reference_vm.contexts`) built from ``ctx`` (the packet
    for skb/XDP types, the raw buffer for syscall, u64 arguments for tracing types).
    """
    from reference_vm.contexts import LAYOUTS, build_context
    from reference_vm.program import ProgType

    entry = next(p for p in case.programs if p.name == (case.entry or case.programs[0].name))
    pt = ProgType(entry.prog_type)
    if pt is ProgType.RAW or pt not in LAYOUTS:
        return (MEM_BASE, len(case.mem), {}) if case.mem is not None else (0, 0, {})
    layout = LAYOUTS[pt]
    if layout.fields and layout.struct in ("__sk_buff", "xdp_md"):
        inst = build_context(pt, env.memory, packet=case.ctx if case.ctx is not None else bytes(64))
    else:
        inst = build_context(pt, env.memory, raw=case.ctx or b"")
    pointers = {inst.address + off: value for off, value in inst.pointer_fields.items()}
    return inst.address, 0, pointers


def finish(outcome: Outcome, env: Environment) -> Outcome:
    """Add ring buffer contents as a consumer (libbpf's algorithm) would read them."""
    from reference_vm.maps import RingBufMap

    for bmap in env.maps:
        if isinstance(bmap, RingBufMap):
            outcome.ringbuf[bmap.spec.name] = [rec.hex() for rec in bmap.consume()]
    return outcome


def _map_value(snapshot: Any, key: str, key_size: int) -> str | None:
    """The value hex a map snapshot holds for ``key`` (an index or key hex); None if absent."""
    entries = snapshot.get("entries", {}) if isinstance(snapshot, dict) else {}
    k = int(key, 0).to_bytes(key_size, "little").hex() if key.isdigit() or key.startswith("0x") else key
    value = entries.get(k.replace(" ", ""))
    if value is None:
        return None
    return value if isinstance(value, str) else str(value)


def check_state(case: YamlCase, outcome: Outcome) -> str | None:
    """The first part of the expected state that the outcome does not match, or None."""
    e = case.expect
    sizes = {m.name: (m.key_size, m.value_size, m.type) for m in case.maps}
    for name, want in (e.maps or {}).items():
        if name not in outcome.maps:
            return f"map {name!r} was not reported"
        key_size, value_size, mtype = sizes.get(name, (4, 0, ""))
        for key, value in want.items():
            got = _map_value(outcome.maps[name], key, key_size)
            want_hex = value.replace(" ", "").lower()
            if mtype == "prog_array":
                slot = outcome.maps[name].get("slots", {}).get(str(int(key, 0)))
                if slot != value:
                    return f"map {name!r} slot {key}: expected {value!r}, got {slot!r}"
                continue
            if got is None and set(want_hex) <= {"0"}:
                continue  # absent from a snapshot = all zero (arrays) / not present (hashes)
            if got != want_hex:
                return f"map {name!r} key {key}: expected {want_hex or '(absent)'}, got {got}"
    for name, records in (e.ringbuf or {}).items():
        got_records = outcome.ringbuf.get(name)
        if got_records != records:
            return f"ring buffer {name!r}: expected records {records}, got {got_records}"
    if e.trace is not None and outcome.trace != e.trace:
        return f"trace: expected {e.trace}, got {outcome.trace}"
    if e.mem is not None and outcome.memory.get("mem", b"").hex() != e.mem:
        return f"mem after the run: expected {e.mem}, got {outcome.memory.get('mem', b'').hex()}"
    return None


def run_on_interpreter(case: YamlCase, budget: int) -> Outcome:
    """One run of a whole-program case on the reference interpreter."""
    from reference_vm import trampoline
    from reference_vm.interpreter import run_programs

    refused = load_check(case)
    if refused is not None:
        return refused
    programs = assembled(case)
    env = make_env(case)
    if trampoline.is_trampoline_case(case):
        outcome = trampoline.run_tracing_case(case, programs, env)
    else:
        entry = case.entry or case.programs[0].name
        r1, r2, pointers = entry_context(case, env)
        outcome = run_programs(list(programs.items()), entry, env, r1=r1, r2=r2,
                               budget=int(case.options.get("budget", budget)),
                               empty_slot_consumes_budget=bool(
                                   case.options.get("empty_slot_consumes_budget", False)),
                               ctx_pointers=pointers)
    return finish(outcome, env)
