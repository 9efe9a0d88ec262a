"""The harness bodies. Each ``setup_NAME()`` imports what it tests (inside atheris'
instrumentation when fuzzing) and returns ``(one_input, allowed_exceptions)``."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from typing import Any

Body = Callable[[bytes], None]


def setup_decoder() -> tuple[Body, tuple[type[BaseException], ...]]:
    from reference_vm.errors import EncodingError
    from reference_vm.insn import decode_program, encode_program

    def one(data: bytes) -> None:
        if len(data) % 8:
            data = data[: len(data) - len(data) % 8]
        program = decode_program(data)
        again = encode_program([i for i in program if i is not None])
        assert again == data, f"decode/encode round trip changed {data.hex()} into {again.hex()}"

    return one, (EncodingError,)


def setup_assembler() -> tuple[Body, tuple[type[BaseException], ...]]:
    from reference_vm.asm import assemble, disassemble
    from reference_vm.errors import AsmError, EncodingError
    from reference_vm.insn import decode_program, encode_program

    def one(data: bytes) -> None:
        text = data.decode("utf-8", "replace")
        insns = assemble(text)
        if not insns:
            return
        code = encode_program(insns)
        try:
            program = decode_program(code)
        except EncodingError:
            return  # e.g. a jump out of the program: assembles, does not decode
        for dialect in ("ubpf", "llvm"):
            back = encode_program(assemble(disassemble(program, dialect=dialect)))
            assert back == code, f"{dialect} disassembly of {code.hex()} reassembles to {back.hex()}"

    return one, (AsmError, EncodingError)


def setup_data() -> tuple[Body, tuple[type[BaseException], ...]]:
    from conformance.case import case_from_data
    from conformance.data_file import parse_data_text
    from reference_vm.errors import BpfCheckError

    def one(data: bytes) -> None:
        case_from_data(parse_data_text(data.decode("utf-8", "replace"), "<fuzz>.data"))

    return one, (BpfCheckError,)


def setup_yaml() -> tuple[Body, tuple[type[BaseException], ...]]:
    from conformance.case import case_from_yaml
    from conformance.yaml_case import load_yaml_cases
    from reference_vm.errors import BpfCheckError

    fd, path = tempfile.mkstemp(suffix=".yaml")
    os.close(fd)

    def one(data: bytes) -> None:
        with open(path, "wb") as f:
            f.write(data)
        for case in load_yaml_cases(path):
            case_from_yaml(case)

    return one, (BpfCheckError,)


def setup_btf() -> tuple[Body, tuple[type[BaseException], ...]]:
    from reference_vm.btf import BtfError, parse

    def one(data: bytes) -> None:
        parse(data)

    return one, (BtfError,)


def setup_elf() -> tuple[Body, tuple[type[BaseException], ...]] | None:
    try:
        from reference_vm.elf import ElfError, load_elf
    except ImportError:
        return None

    def one(data: bytes) -> None:
        load_elf(data)

    return one, (ElfError,)


def setup_interpreter() -> tuple[Body, tuple[type[BaseException], ...]]:
    from fuzz.strategies import GenConfig, case_from_bytes
    from reference_vm import interpreter
    from reference_vm.errors import EncodingError
    from reference_vm.insn import decode_program

    cfg = GenConfig(inputs=2, budget=2000)

    def one(data: bytes) -> None:
        if data[:1] == b"\x00":  # raw bytes: whatever decodes
            body = data[1:]
            try:
                program = decode_program(body[: len(body) - len(body) % 8])
            except EncodingError:
                return
            _check(interpreter.run(program, data[-16:] or None, budget=2000))
            return
        case = case_from_bytes(data, cfg)
        for mem in case.mems:
            _check(interpreter.run(case.program, mem, budget=case.budget))

    return one, ()


def setup_jit() -> tuple[Body, tuple[type[BaseException], ...]]:
    from fuzz.strategies import GenConfig, case_from_bytes
    from reference_vm import jit

    cfg = GenConfig(inputs=2, budget=2000)

    def one(data: bytes) -> None:
        case = case_from_bytes(data, cfg)
        for arch in ("x86_64", "arm64"):
            for mem in case.mems:
                _check(jit.run(case.program, mem, arch=arch, budget=case.budget))

    return one, ()


def setup_verifier() -> tuple[Body, tuple[type[BaseException], ...]]:
    """bpfcheck's verifier: raw bytes (whatever decodes, as a socket filter over the input) and
    verifier-aware generated programs and whole cases through the oracle's verifier checks
    (soundness, witness): a divergence or an exception escaping the verifier is a finding."""
    from fuzz.oracle import Oracle
    from fuzz.strategies import GenConfig, case_from_bytes
    from fuzz.targets import VerifierFuzzTarget
    from fuzz.wholeprog import whole_from_bytes
    from reference_vm.insn import decode_program

    cfg = GenConfig(inputs=2, budget=2000, verifier_aware=True)
    oracle = Oracle(["interpreter", "verifier"], run_timeout=0)
    verifier = VerifierFuzzTarget()

    def one(data: bytes) -> None:
        if data[:1] == b"\x00":  # raw bytes
            body = data[1:]
            try:
                program = decode_program(body[: len(body) - len(body) % 8])
            except Exception:  # noqa: BLE001 - the decoder has its own harness
                return
            verifier.prepare(program, 2000).run(data[-16:])
            return
        if data[:1] == b"\x01":
            results = oracle.check_whole(whole_from_bytes(data[1:], cfg))
        else:
            case = case_from_bytes(data, cfg)
            results = oracle.check(case.program, case.mems, case.budget)
        for r in results:
            if r.divergences:
                raise AssertionError(f"verifier finding: {r.coarse}\n" + "\n".join(r.tracebacks.values()))

    return one, ()


def _check(out: Any) -> None:
    assert out.error_class in {"ok", "fault", "budget", "unsupported", "crash"}, out.error
    if out.error_class == "crash":
        raise AssertionError(f"a JIT crashed under unicorn: {out.message}")


SETUPS: dict[str, Callable[[], Any]] = {
    "decoder": setup_decoder,
    "assembler": setup_assembler,
    "data": setup_data,
    "yaml": setup_yaml,
    "btf": setup_btf,
    "elf": setup_elf,
    "interpreter": setup_interpreter,
    "jit": setup_jit,
    "verifier": setup_verifier,
}
