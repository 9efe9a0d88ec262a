"""``plugin:PATH[ ARGS]``: an external implementation speaking the bpf_conformance plugin protocol.

Protocol (``formats-and-corpora.md`` §2, bpf_conformance ``bpf_conformance_runner.cc``):

* argv: ``PATH [<mem>] [ARGS...]``; ``<mem>`` only when the case has input memory, as
  lowercase hex bytes each followed by two spaces (``aa  bb  ``); ARGS are the stock runner's
  ``--plugin_options``, split here with :func:`shlex.split`. uBPF's plugin, for one, only
  looks for the memory in ``argv[1]``, so the order matters.

  ``PATH`` is the first word, except that ``COMMAND -- ARGS`` makes every word before ``--``
  the command, and a Python interpreter keeps its own options and its script or ``-m MODULE``
  (``plugin:python -m conformance.cli plugin`` starts ``python -m conformance.cli [<mem>] plugin``).
* stdin: the program in the same hex format, a newline, then EOF.
* success: exit 0 and r0 in hex on stdout (``0x`` optional).
* failure: non-zero exit; the error text is stdout if it is non-empty, else stderr, with
  trailing whitespace stripped; it is compared exactly with ``-- error`` texts.

Where the stock runner is lenient we are strict: stdout that is not exactly one hex number
(``stoull`` would read ``0x3 trailing`` as 3) is ``error:plugin``. Each case has a timeout that
kills the plugin's whole process group (``timeout``); death by a signal is ``crash``; a missing
or non-executable PATH is ``error:plugin``. None of these stop the run.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess

from reference_vm.errors import UsageError
from reference_vm.outcome import CRASH, TIMEOUT, Outcome, fault

from ..case import Case

#: Outcome.error of a failure the plugin reported itself (non-zero exit). The protocol cannot
#: tell a refused program from a run-time fault, so both are ``fault:plugin``.
PLUGIN_FAILED = fault("plugin")
#: Outcome.error when the plugin did not follow the protocol (garbage output, cannot start).
PLUGIN_ERROR = "error:plugin"
_HEX_R0 = re.compile(r"(?:0[xX])?([0-9a-fA-F]+)")
U64 = (1 << 64) - 1


def hex_bytes(data: bytes) -> str:
    """bpf_conformance's base16 text: each byte as two lowercase hex digits and two spaces."""
    return "".join(f"{b:02x}  " for b in data)


def parse_r0(stdout: str) -> int | None:
    """r0 from a plugin's stdout: one hex number (optional ``0x``) in 64 bits, else None."""
    m = _HEX_R0.fullmatch(stdout.strip())
    if m is None:
        return None
    value = int(m.group(1), 16)
    return value if value <= U64 else None


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


class PluginTarget:
    """A bpf_conformance plugin process, started once per case."""

    in_process = False
    exact_errors = True

    def __init__(self, argv: list[str]) -> None:
        if not argv or argv[0] == "--":
            raise UsageError("plugin target needs a path: plugin:PATH[ ARGS]")
        self.argv = argv
        self.name = "plugin:" + shlex.join(argv)
        self.program, self.options = split_command(argv)

    @classmethod
    def from_spec(cls, spec: str) -> PluginTarget:
        """``PATH[ ARGS]`` split like a shell command line (``plugin:python -m conformance.cli plugin``)."""
        try:
            argv = shlex.split(spec)
        except ValueError as e:
            raise UsageError(f"bad plugin command {spec!r}: {e}") from None
        return cls(argv)

    def command(self, case: Case) -> list[str]:
        exe = self.program[0]
        if os.sep not in exe:
            exe = shutil.which(exe) or exe
        mem = [hex_bytes(case.mem)] if case.mem else []
        return [exe, *self.program[1:], *mem, *self.options]

    def run(self, case: Case, timeout: float) -> Outcome:
        argv = self.command(case)
        stdin = hex_bytes(case.program_bytes()) + "\n"
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, start_new_session=True)
        except OSError as e:
            return Outcome(error=PLUGIN_ERROR, message=f"cannot run {argv[0]}: {e.strerror or e}")
        try:
            out_b, err_b = proc.communicate(stdin.encode(), timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            try:
                proc.communicate(timeout=5)
            except subprocess.TimeoutExpired:  # a descendant left the group and holds the pipes
                for pipe in (proc.stdout, proc.stderr):
                    if pipe is not None:
                        pipe.close()
                proc.wait()
            return Outcome(error=TIMEOUT, message=f"no answer within {timeout:g} s (process group killed)")
        out = out_b.decode("utf-8", "replace")
        err = err_b.decode("utf-8", "replace")
        if proc.returncode < 0:
            sig = _signal_name(-proc.returncode)
            return Outcome(error=CRASH, message=f"killed by {sig}" + (f": {_short(err.strip())}"
                                                                         if err.strip() else ""),
                           extra={"signal": -proc.returncode})
        if proc.returncode != 0:
            text = out.rstrip() if out.strip() else err.rstrip()
            return Outcome(error=PLUGIN_FAILED, message=text, extra={"exit_status": proc.returncode})
        r0 = parse_r0(out)
        if r0 is None:
            return Outcome(error=PLUGIN_ERROR, message=f"stdout is not one hex r0: {_short(out)!r}")
        return Outcome(r0=r0)


_PYTHON = re.compile(r"(?:python|pypy)[0-9.]*(?:\.exe)?")
_PY_OPTS_WITH_VALUE = {"-X", "-W", "--check-hash-based-pycs"}


def split_command(words: list[str]) -> tuple[list[str], list[str]]:
    """``(command, plugin options)``: the memory argument goes between them."""
    if "--" in words:
        i = words.index("--")
        return words[:i], words[i + 1:]
    if not _PYTHON.fullmatch(os.path.basename(words[0])):
        return words[:1], words[1:]
    i = 1
    while i < len(words):
        w = words[i]
        if w in ("-m", "-c"):
            return words[:i + 2], words[i + 2:]
        if w in _PY_OPTS_WITH_VALUE:
            i += 2
        elif w.startswith("-"):
            i += 1
        else:
            return words[:i + 1], words[i + 1:]
    return words, []


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"
