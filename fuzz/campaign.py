"""Resumable differential fuzzing campaigns, on local processes or on a Dask cluster.

Everything lives in the state folder, written so that a SIGKILL at any moment loses nothing
(files are replaced atomically, logs are append-only, a torn last log line is ignored):

``campaign.json``          the configuration (seed, targets, generator); a resume must match it
``log.jsonl``              the supervisor's log: start, stop, worker restarts, crashes, hangs
``workers/wK.json``        worker K's cursor: next seed index, corpus size, coverage, counters
``workers/wK.log``         worker K's log: one line per batch of seeds (so every seed is logged,
                           as a range) and one per finding
``workers/wK.hb``          worker K's heartbeat (mmap: time, seed index in flight, pid)
``workers/wK.skip``        seeds that killed or hung worker K (recorded as findings, then skipped)
``corpus/HASH.bin``        interesting inputs (new coverage); ``corpus/wK.idx`` is worker K's view
                           of the corpus, in order (its own finds and those it synced from others)
``findings/pending/``      divergences not yet minimized (written before minimization starts)
``findings/ID/``           one folder per deduplicated finding: ``finding.json`` (written last),
                           ``repro.data`` (a reproducer: see :mod:`fuzz.minimize`)
``STOP``                   created to ask every worker to stop after its current batch

Seeds: the input of seed index ``i`` of worker ``K`` in a campaign with seed ``S`` is named
``S:K:I`` and derived only from that name and, for a mutated input, from the first ``n`` entries
of ``corpus/wK.idx`` where ``n`` is logged with the batch; ``bpfcheck fuzz replay S:K:I --state
DIR`` rebuilds it. A worker's batches are contiguous ranges of ``i``, and the cursor moves only
after a batch's findings and corpus entries are on disk, so a resumed campaign re-runs at most
the batch that was cut and never skips a seed.

Coverage: distinct (ISA row, outcome) pairs — a row counts for the outcome of a run when it
sits at or before the pc where the run ended — plus (outcome, log2 instruction count) pairs.
Edge coverage of our own Python code would need ``sys.monitoring`` (Python 3.12+) or
``sys.settrace``, which costs more than the runs themselves; see docs/fuzzing.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import mmap
import os
import random
import re
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from reference_vm.errors import UsageError

from .minimize import atomic_write, data_text, finding_json, minimize
from .oracle import Oracle, Result, describe, signature
from .strategies import INPUT_SIZE, GenConfig, case_from_bytes, mutate
from .wholeprog import WholeCase, pick_whole, whole_from_bytes, yaml_text

VERSION = 1
_HB = struct.Struct("<dqq")  # time, seed index in flight (-1: none), pid


@dataclass
class CampaignConfig:
    seed: int = 0
    targets: list[str] = field(default_factory=lambda: ["interpreter", "jit-x86_64", "jit-arm64"])
    jobs: int = 1
    inputs: int = 32  # inputs per program
    max_insns: int = 40
    budget: int = 4096
    batch: int = 16  # programs per batch (a cursor write per batch)
    fresh: float = 0.5  # share of fresh inputs once the corpus is not empty
    run_timeout: float = 10.0  # seconds per target run (SIGALRM)
    hang_timeout: float = 60.0  # seconds without a heartbeat before the worker is killed
    minimize: bool = True
    long_jumps: bool = False
    verifier_aware: bool = False  # generate mostly programs the verifier accepts
    allow_kernel: bool = False  # the kernel target may be used (only on verifier-accepted programs)
    witness_inputs: int = 1  # inputs per program checked in witness mode (with a verifier target)
    maps: float = 0.0  # share of seeds generated as whole cases (maps, ring buffer, tail calls)
    max_raw_per_signature: int = 5  # divergences written (and minimized) per coarse signature
    version: int = VERSION

    def gen(self) -> GenConfig:
        return GenConfig(
            max_insns=self.max_insns,
            inputs=self.inputs,
            budget=self.budget,
            long_jumps=self.long_jumps,
            verifier_aware=self.verifier_aware,
        )

    #: Fields that must not change when a campaign resumes (they decide what each seed is).
    IDENTITY = (
        "seed",
        "targets",
        "inputs",
        "max_insns",
        "budget",
        "fresh",
        "long_jumps",
        "verifier_aware",
        "maps",
        "version",
    )

    def is_whole(self, worker: int, index: int) -> bool:
        """Whether seed ``S:worker:index`` is a whole case (decided by its name alone)."""
        return pick_whole(derive(self.seed, worker, index), self.maps)

    def make_case(self, worker: int, index: int, data: bytes) -> Any:
        if self.is_whole(worker, index):
            return whole_from_bytes(data, self.gen())
        return case_from_bytes(data, self.gen())

    def oracle(self, targets: Sequence[str] | None = None) -> Oracle:
        return Oracle(
            list(targets or self.targets),
            run_timeout=self.run_timeout,
            allow_kernel=self.allow_kernel,
            witness_inputs=self.witness_inputs,
        )


# --- State folder ----------------------------------------------------------------------------


class State:
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def p(self, *parts: str) -> Path:
        return self.root.joinpath(*parts)

    def worker(self, k: int, ext: str) -> Path:
        return self.p("workers", f"w{k}.{ext}")

    def config(self) -> CampaignConfig:
        try:
            doc = json.loads(self.p("campaign.json").read_text())
        except FileNotFoundError:
            raise UsageError(f"{self.root}: not a campaign state folder (no campaign.json)") from None
        known = set(CampaignConfig.__dataclass_fields__)
        return CampaignConfig(**{k: v for k, v in doc.items() if k in known})

    def create_or_check(self, cfg: CampaignConfig, resume_ok: bool = True) -> CampaignConfig:
        path = self.p("campaign.json")
        if path.exists():
            old = self.config()
            for name in CampaignConfig.IDENTITY:
                if getattr(old, name) != getattr(cfg, name):
                    raise UsageError(
                        f"{self.root} holds a campaign with {name}={getattr(old, name)!r}, not "
                        f"{getattr(cfg, name)!r}: resume with the same settings or use a new --state"
                    )
        for sub in ("workers", "corpus", "findings/pending"):
            self.p(*sub.split("/")).mkdir(parents=True, exist_ok=True)
        atomic_write(path, json.dumps(asdict(cfg), indent=1, sort_keys=True) + "\n")
        return cfg

    def log(self, event: dict[str, Any], path: Path | None = None) -> None:
        append_line(path or self.p("log.jsonl"), event)

    def stop_requested(self) -> bool:
        return self.p("STOP").exists()

    def findings(self) -> list[dict[str, Any]]:
        out = []
        for f in sorted(self.p("findings").glob("*/finding.json")):
            try:
                out.append(json.loads(f.read_text()))
            except (OSError, ValueError):
                continue
        return out


def append_line(path: Path, event: dict[str, Any], durable: bool = False) -> None:
    """One JSON line, appended with a single write (O_APPEND); fsynced if ``durable``."""
    data = (json.dumps(event, sort_keys=True, separators=(",", ":")) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)


def read_lines(path: Path) -> list[dict[str, Any]]:
    """The complete lines of a JSON-lines log (a torn last line, from a kill, is skipped)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    out = []
    for line in text.splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def read_idx(path: Path) -> list[str]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    lines = text.split("\n")
    return [h for h in lines[:-1] if len(h) == 40]  # the last piece is "" or a torn line


# --- Seeds and inputs ------------------------------------------------------------------------


def seed_name(seed: int, worker: int, index: int) -> str:
    return f"{seed}:{worker}:{index}"


def parse_seed(text: str) -> tuple[int, int, int]:
    try:
        s, k, i = text.split(":")
        return int(s, 0), int(k, 0), int(i, 0)
    except ValueError:
        raise UsageError(
            f"bad seed {text!r}: want CAMPAIGN:WORKER:INDEX, as the log and findings write it"
        ) from None


def derive(seed: int, worker: int, index: int) -> int:
    return int.from_bytes(
        hashlib.blake2b(seed_name(seed, worker, index).encode(), digest_size=8).digest(), "little"
    )


def make_input(seed: int, worker: int, index: int, corpus: Sequence[str], load: Any, fresh: float) -> bytes:
    rng = random.Random(derive(seed, worker, index))
    if not corpus or rng.random() < fresh:
        return rng.randbytes(INPUT_SIZE)
    parent = load(corpus[rng.randrange(len(corpus))])
    other = load(corpus[rng.randrange(len(corpus))])
    return mutate(parent, rng, other)


# --- Coverage features -----------------------------------------------------------------------


def features(program: Sequence[Any], results: Iterable[Result], ref: str) -> set[tuple[str, str]]:
    first: dict[str, int] = {}
    for pc, insn in enumerate(program):
        if insn is not None and insn.op.name not in first:
            first[insn.op.name] = pc
    out: set[tuple[str, str]] = set()
    for r in results:
        o = r.outcomes.get(ref)
        if o is None:
            continue
        end = o.exit_pc if o.exit_pc is not None else len(program)
        for name, pc in first.items():
            if pc <= end:
                out.add((name, o.error))
        out.add((f"insns:{(o.insn_count or 0).bit_length()}", o.error))
        for t, other in r.outcomes.items():
            if other is not None and other.error == "unsupported":
                out.add((f"unsupported:{t}", ""))
            elif other is not None and "result" in other.extra:  # a verifier's verdict, by message
                out.add((f"{t}:{_DIGITS.sub('#', other.message or '')[:60]}", ""))
    return out


_DIGITS = re.compile(r"-?\d+")


# --- Known findings --------------------------------------------------------------------------


KNOWN_FILE = Path(__file__).with_name("known-findings.yaml")


def load_known(path: str | os.PathLike[str] | None = None) -> list[dict[str, str]]:
    """Known, reported findings (``match``: a substring of the signature, ``reason``): still
    recorded, but not counted as new (so CI's smoke campaign stays green until they are fixed)."""
    p = Path(path) if path else KNOWN_FILE
    if not p.exists():
        return []
    import yaml

    doc = yaml.safe_load(p.read_text()) or {}
    return [dict(e) for e in doc.get("known", []) or []]


def known_reason(sig: str, known: Sequence[dict[str, str]]) -> str | None:
    for entry in known:
        if entry.get("match") and entry["match"] in sig:
            return str(entry.get("reason", "known"))
    return None


# --- The worker --------------------------------------------------------------------------------


class Heartbeat:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a+b") as f:
            if os.fstat(f.fileno()).st_size < _HB.size:
                f.truncate(_HB.size)
        self.f = open(path, "r+b")  # noqa: SIM115 - kept open for the mmap
        self.mm = mmap.mmap(self.f.fileno(), _HB.size)
        self.pid = os.getpid()

    def beat(self, index: int) -> None:
        _HB.pack_into(self.mm, 0, time.time(), index, self.pid)

    @staticmethod
    def read(path: Path) -> tuple[float, int, int]:
        try:
            with open(path, "rb") as f:
                data = f.read(_HB.size)
        except FileNotFoundError:
            return 0.0, -1, 0
        if len(data) < _HB.size:
            return 0.0, -1, 0
        return _HB.unpack(data)


class Worker:
    """One worker process: batches of seeds, the oracle, corpus, findings, cursor."""

    def __init__(
        self,
        state: State,
        k: int,
        *,
        deadline: float | None = None,
        max_seeds: int | None = None,
        known: Sequence[dict[str, str]] = (),
    ) -> None:
        self.state, self.k = state, k
        self.cfg = state.config()
        self.deadline, self.max_seeds = deadline, max_seeds
        self.known = list(known)
        self.oracle = self.cfg.oracle()
        self.gen = self.cfg.gen()
        self.log_path = state.worker(k, "log")
        self.idx_path = state.p("corpus", f"w{k}.idx")
        cur = self._read_cursor()
        self.next = int(cur.get("next", 0))
        self.execs = int(cur.get("execs", 0))
        self.programs = int(cur.get("programs", 0))
        self.coverage: set[tuple[str, str]] = {tuple(x) for x in cur.get("coverage", [])}  # type: ignore[misc]
        self.sig_counts: dict[str, int] = dict(cur.get("sig_counts", {}))
        self.divergent = int(cur.get("divergent", 0))
        self.view = read_idx(self.idx_path)
        self.in_view = set(self.view)
        self.corpus_n = int(cur.get("corpus_n", len(self.view)))
        self._cache: dict[str, bytes] = {}
        self.stopping = False
        self.parent = os.getppid()

    def _read_cursor(self) -> dict[str, Any]:
        try:
            return dict(json.loads(self.state.worker(self.k, "json").read_text()))
        except (FileNotFoundError, ValueError):
            return {}

    def skip(self) -> set[int]:
        try:
            return {int(x) for x in self.state.worker(self.k, "skip").read_text().split()}
        except FileNotFoundError:
            return set()

    def load(self, h: str) -> bytes:
        data = self._cache.get(h)
        if data is None:
            data = self._cache[h] = self.state.p("corpus", f"{h}.bin").read_bytes()
        return data

    def _add_corpus(self, data: bytes) -> None:
        h = hashlib.sha1(data).hexdigest()
        if h in self.in_view:
            return
        path = self.state.p("corpus", f"{h}.bin")
        if not path.exists():
            atomic_write(path, data, durable=False)
        with open(self.idx_path, "a") as f:
            f.write(h + "\n")
        self.view.append(h)
        self.in_view.add(h)
        self._cache[h] = data

    def _sync(self) -> None:
        """Take the corpus entries other workers found (in a fixed order)."""
        new: list[str] = []
        for idx in sorted(self.state.p("corpus").glob("w*.idx")):
            if idx == self.idx_path:
                continue
            new += [h for h in read_idx(idx) if h not in self.in_view and h not in new]
        for h in new:
            try:
                self._add_corpus(self.load(h))
            except FileNotFoundError:
                continue

    def write_cursor(self) -> None:
        doc = {
            "next": self.next,
            "corpus_n": self.corpus_n,
            "execs": self.execs,
            "programs": self.programs,
            "coverage": sorted(self.coverage),
            "sig_counts": self.sig_counts,
            "divergent": self.divergent,
            "time": time.time(),
            "worker": self.k,
        }
        atomic_write(self.state.worker(self.k, "json"), json.dumps(doc, separators=(",", ":")), durable=False)

    def _should_stop(self) -> bool:
        if self.stopping or self.state.stop_requested():
            return True
        if self.deadline is not None and time.time() >= self.deadline:
            return True
        if self.max_seeds is not None and self.next >= self.max_seeds:
            return True
        return os.getppid() != self.parent  # the supervisor died: do not run on, orphaned

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor decides; it sends SIGTERM
        hb = Heartbeat(self.state.worker(self.k, "hb"))
        self._process_pending()
        while not self._should_stop():
            first = self.next
            last = first + self.cfg.batch
            if self.max_seeds is not None:
                last = min(last, self.max_seeds)
            corpus = self.view[: self.corpus_n]
            skip = self.skip()
            found: list[str] = []
            t0 = time.time()
            for i in range(first, last):
                if i in skip:
                    continue
                hb.beat(i)
                found += self.one(i, corpus)
            hb.beat(-1)
            append_line(
                self.log_path,
                {
                    "ev": "batch",
                    "seeds": [first, last],
                    "corpus_n": self.corpus_n,
                    "execs": self.execs,
                    "t": round(t0, 3),
                    "dt": round(time.time() - t0, 3),
                    "findings": found,
                },
            )
            self.next = last
            self.corpus_n = len(self.view)
            self.write_cursor()
            if self.cfg.jobs > 1:
                self._sync()
        return 0

    def _on_term(self, signum: int, frame: Any) -> None:
        self.stopping = True

    def one(self, i: int, corpus: Sequence[str]) -> list[str]:
        cfg = self.cfg
        name = seed_name(cfg.seed, self.k, i)
        data = make_input(cfg.seed, self.k, i, corpus, self.load, cfg.fresh)
        try:
            case = cfg.make_case(self.k, i, data)
        except Exception as e:  # noqa: BLE001 - the generator is a component too
            import traceback

            return [self._finding_exception(name, data, "generator", e, traceback.format_exc())]
        whole = isinstance(case, WholeCase)
        if whole:
            results = self.oracle.check_whole(case)
        else:
            results = self.oracle.check(case.program, case.mems, case.budget)
        self.execs += len(results)
        self.programs += 1
        feats = features(case.program, results, self.oracle.ref.name)
        if not feats <= self.coverage:
            self.coverage |= feats
            self._add_corpus(data)
        out = []
        seen: set[str] = set()
        for r in results:
            if not r.divergences:
                continue
            self.divergent += 1
            coarse = r.coarse
            if coarse in seen:
                continue
            seen.add(coarse)
            n = self.sig_counts.get(coarse, 0)
            self.sig_counts[coarse] = n + 1
            if n < cfg.max_raw_per_signature:
                fid = self._record_whole(name, data, case, r) if whole else self._record(name, data, case, r)
                if fid:
                    out.append(fid)
        return out

    # -- findings --

    def _record(self, name: str, data: bytes, case: Any, r: Result) -> str | None:
        pending = self.state.p("findings", "pending", f"{name.replace(':', '_')}.json")
        doc = {
            "seed": name,
            "input": data.hex(),
            "mem": r.mem.hex() if r.mem is not None else None,
            "coarse": r.coarse,
            "targets": self.oracle.names,
            "budget": case.budget,
            "describe": describe(r, self.oracle.names),
            "tracebacks": r.tracebacks,
        }
        atomic_write(pending, json.dumps(doc))
        return self._finish(pending, doc, case.program)

    def _record_whole(self, name: str, data: bytes, case: WholeCase, r: Result) -> str:
        """A whole case's divergence: recorded as it is (no minimization), with a YAML
        reproducer (docs/case-format.md)."""
        sig = signature(r.divergences, case.program) + "@whole"
        fid = hashlib.sha1(sig.encode()).hexdigest()[:12]
        folder = self.state.p("findings", fid)
        known = known_reason(sig, self.known)
        if not (folder / "finding.json").exists():
            finding = {
                "id": fid,
                "signature": sig,
                "coarse": r.coarse,
                "seed": name,
                "whole": True,
                "targets": self.oracle.names,
                "fields": sorted({f for d in r.divergences for f in d.fields}),
                "input": data.hex(),
                "mem": r.mem.hex() if r.mem is not None else None,
                "budget": case.budget,
                "programs": {
                    n: [f"0x{raw.to_u64():016x}" for i in p if i is not None for raw in i.raw()]
                    for n, p in case.programs
                },
                "describe": describe(r, self.oracle.names),
                "tracebacks": r.tracebacks,
                "time": time.time(),
                "worker": self.k,
                "known": known,
            }
            header = [
                f"bpfcheck fuzz finding {fid}, seed {name}: {sig}",
                f"expect: what the reference target ({self.oracle.ref.name}) did -- a reproducer, not a fact",
            ]
            ref = r.outcomes.get(self.oracle.ref.name)
            atomic_write(folder / "repro.yaml", yaml_text(case, r.mem, ref, header))
            atomic_write(folder / "finding.json", finding_json(finding))
        append_line(
            self.log_path,
            {"ev": "finding", "id": fid, "seed": name, "sig": sig, "known": known},
            durable=True,
        )
        return fid

    def _process_pending(self) -> None:
        """Divergences a killed worker wrote but did not minimize: finish them now."""
        prefix = f"{self.cfg.seed}_{self.k}_"
        for path in sorted(self.state.p("findings", "pending").glob(prefix + "*.json")):
            try:
                doc = json.loads(path.read_text())
                case = case_from_bytes(bytes.fromhex(doc["input"]), self.gen)
            except (OSError, ValueError, KeyError):
                continue
            self._finish(path, doc, case.program)

    def _finish(self, pending: Path, doc: dict[str, Any], program: Sequence[Any]) -> str | None:
        mem = bytes.fromhex(doc["mem"]) if doc.get("mem") is not None else None
        prog, small_mem, evals = list(program), mem, 0
        if self.cfg.minimize:
            try:
                m = minimize(program, mem, doc["budget"], self.oracle, doc["coarse"])
                prog, small_mem, evals = m.program, m.mem, m.evaluations
            except Exception:  # noqa: BLE001 - keep the unminimized finding
                pass
        result = self.oracle.check(prog, [small_mem], doc["budget"])[0]
        if result.coarse != doc["coarse"]:  # cannot reproduce after minimization: keep the original
            prog, small_mem = list(program), mem
            result = self.oracle.check(prog, [small_mem], doc["budget"])[0]
        sig = signature(result.divergences, prog) if result.divergences else doc["coarse"]
        fid = hashlib.sha1(sig.encode()).hexdigest()[:12]
        folder = self.state.p("findings", fid)
        known = known_reason(sig, self.known)
        if not (folder / "finding.json").exists():
            fields = sorted({f for d in result.divergences for f in d.fields})
            finding = {
                "id": fid,
                "signature": sig,
                "coarse": doc["coarse"],
                "seed": doc["seed"],
                "targets": doc["targets"],
                "fields": fields,
                "input": doc["input"],
                "mem": small_mem.hex() if small_mem is not None else None,
                "original_mem": doc.get("mem"),
                "budget": doc["budget"],
                "program": [f"0x{raw.to_u64():016x}" for i in prog if i is not None for raw in i.raw()],
                "describe": describe(result, self.oracle.names) if result.divergences else doc["describe"],
                "tracebacks": result.tracebacks or doc.get("tracebacks", {}),
                "minimize_evaluations": evals,
                "time": time.time(),
                "worker": self.k,
                "known": known,
            }
            ref = result.outcomes.get(self.oracle.ref.name)
            atomic_write(folder / "repro.data", data_text(finding, prog, small_mem, ref))
            atomic_write(folder / "finding.json", finding_json(finding))  # last: the commit point
        append_line(
            self.log_path,
            {"ev": "finding", "id": fid, "seed": doc["seed"], "sig": sig, "known": known},
            durable=True,
        )
        try:
            pending.unlink()
        except FileNotFoundError:
            pass
        return fid

    def _finding_exception(self, name: str, data: bytes, where: str, e: BaseException, tb: str) -> str:
        from .oracle import exception_detail

        sig = f"{where}:exception[{exception_detail(e)}]"
        fid = hashlib.sha1(sig.encode()).hexdigest()[:12]
        folder = self.state.p("findings", fid)
        if not (folder / "finding.json").exists():
            atomic_write(
                folder / "finding.json",
                finding_json(
                    {
                        "id": fid,
                        "signature": sig,
                        "coarse": sig,
                        "seed": name,
                        "targets": self.oracle.names,
                        "fields": ["exception"],
                        "input": data.hex(),
                        "tracebacks": {where: tb},
                        "time": time.time(),
                        "worker": self.k,
                        "known": known_reason(sig, self.known),
                    }
                ),
            )
        append_line(self.log_path, {"ev": "finding", "id": fid, "seed": name, "sig": sig})
        return fid


# --- Supervising one worker slot (locally, or inside a Dask task) ----------------------------


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    return env


def run_slot(
    state_dir: str,
    k: int,
    deadline: float | None,
    max_seeds: int | None = None,
    known_file: str | None = None,
    stop_event: Any = None,
    max_restarts: int = 1000,
) -> dict[str, Any]:
    """Run worker ``k`` as a child process until it finishes; restart it after a crash or a hang
    (recording the seed it was on as a finding and skipping it). Returns counters."""
    state = State(state_dir)
    cfg = state.config()
    hb_path = state.worker(k, "hb")
    restarts = crashes = hangs = 0
    while True:
        argv = [sys.executable, "-m", "fuzz.campaign", "worker", "--state", state_dir, "--worker", str(k)]
        if deadline is not None:
            argv += ["--deadline", repr(deadline)]
        if max_seeds is not None:
            argv += ["--max-seeds", str(max_seeds)]
        if known_file:
            argv += ["--known", known_file]
        started = time.time()
        proc = subprocess.Popen(argv, env=_child_env(), stdin=subprocess.DEVNULL)
        hung = False
        while proc.poll() is None:
            time.sleep(0.2)
            if stop_event is not None and stop_event.is_set():
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=max(30.0, cfg.hang_timeout))
                except subprocess.TimeoutExpired:
                    proc.kill()
                break
            beat, index, pid = Heartbeat.read(hb_path)
            last = max(beat, started) if pid == proc.pid else started
            if time.time() - last > cfg.hang_timeout and index >= 0:
                proc.kill()
                proc.wait()
                hung = True
                break
        code = proc.wait()
        if code == 0 and not hung:
            break
        if stop_event is not None and stop_event.is_set():
            break
        beat, index, pid = Heartbeat.read(hb_path)
        what = "hang" if hung else f"worker-crash:{_status(code)}"
        if index >= 0 and pid == proc.pid:
            _record_dead_seed(state, cfg, k, index, what)
        hangs += hung
        crashes += not hung
        state.log({"ev": "restart", "worker": k, "why": what, "seed_index": index, "t": time.time()})
        restarts += 1
        if restarts > max_restarts:
            state.log({"ev": "give-up", "worker": k, "t": time.time()})
            break
    return {"worker": k, "restarts": restarts, "crashes": crashes, "hangs": hangs}


def _status(code: int) -> str:
    if code < 0:
        try:
            return signal.Signals(-code).name
        except ValueError:
            return f"signal {-code}"
    return f"exit {code}"


def _record_dead_seed(state: State, cfg: CampaignConfig, k: int, index: int, what: str) -> None:
    name = seed_name(cfg.seed, k, index)
    sig = f"{what}|targets={','.join(cfg.targets)}"
    fid = hashlib.sha1(sig.encode()).hexdigest()[:12]
    folder = state.p("findings", fid)
    if not (folder / "finding.json").exists():
        atomic_write(
            folder / "finding.json",
            finding_json(
                {
                    "id": fid,
                    "signature": sig,
                    "coarse": sig,
                    "seed": name,
                    "targets": cfg.targets,
                    "fields": [what.split(":")[0]],
                    "time": time.time(),
                    "worker": k,
                    "note": f"worker {k} died or hung on this seed; replay it with "
                    f"bpfcheck fuzz replay {name} --state DIR",
                }
            ),
        )
    _append_skip(state, k, index)
    state.log({"ev": "finding", "id": fid, "seed": name, "sig": sig, "t": time.time()})


def _append_skip(state: State, k: int, index: int) -> None:
    with open(state.worker(k, "skip"), "a") as f:
        f.write(f"{index}\n")
        f.flush()
        os.fsync(f.fileno())


# --- Progress ----------------------------------------------------------------------------------


@dataclass
class Progress:
    execs: int = 0
    programs: int = 0
    coverage: int = 0
    corpus: int = 0
    findings: int = 0
    new_findings: int = 0
    divergent: int = 0

    @classmethod
    def read(cls, state: State, jobs: int) -> Progress:
        p = cls()
        cov: set[tuple[str, ...]] = set()
        for k in range(jobs):
            try:
                doc = json.loads(state.worker(k, "json").read_text())
            except (FileNotFoundError, ValueError):
                continue
            p.execs += int(doc.get("execs", 0))
            p.programs += int(doc.get("programs", 0))
            p.divergent += int(doc.get("divergent", 0))
            cov |= {tuple(x) for x in doc.get("coverage", [])}
        p.coverage = len(cov)
        p.corpus = len(list(state.p("corpus").glob("*.bin")))
        found = state.findings()
        p.findings = len(found)
        p.new_findings = sum(1 for f in found if not f.get("known"))
        return p


def _fmt_time(s: float) -> str:
    s = int(s)
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def progress_line(p: Progress, elapsed: float, rate: float, jobs: int, restarts: int) -> str:
    return (
        f"[{_fmt_time(elapsed)}] execs {p.execs:,} ({rate:,.0f}/s) | programs {p.programs:,} | "
        f"cov {p.coverage:,} | corpus {p.corpus:,} | findings {p.new_findings} new, "
        f"{p.findings - p.new_findings} known ({p.divergent:,} divergent runs) | "
        f"workers {jobs} | restarts {restarts}"
    )


# --- The campaign (the `bpfcheck fuzz` command) -------------------------------------------------


def parse_duration(text: str) -> float:
    t = text.strip().lower()
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        if t and t[-1] in units:
            return float(t[:-1]) * units[t[-1]]
        return float(t)
    except ValueError:
        raise UsageError(f"bad duration {text!r} (examples: 90, 30s, 10m, 8h)") from None


def run_campaign(
    cfg: CampaignConfig,
    state_dir: str,
    *,
    seconds: float | None,
    max_seeds: int | None = None,
    dask: str | None = None,
    known_file: str | None = None,
    quiet: bool = False,
    out: Any = None,
) -> int:
    """Start or resume a campaign; returns the number of new (not known) findings."""
    out = out or sys.stdout
    state = State(state_dir)
    state.create_or_check(cfg)
    try:
        state.p("STOP").unlink()
    except FileNotFoundError:
        pass
    deadline = time.time() + seconds if seconds is not None else None
    state.log(
        {
            "ev": "start",
            "t": time.time(),
            "jobs": cfg.jobs,
            "seconds": seconds,
            "dask": dask,
            "pid": os.getpid(),
        }
    )
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    results: list[dict[str, Any]] = []
    try:
        if dask:
            runner = threading.Thread(
                target=lambda: results.extend(
                    _run_dask(dask, state_dir, cfg, deadline, max_seeds, known_file, stop)
                ),
                daemon=True,
            )
        else:

            def local() -> None:
                threads = [
                    threading.Thread(
                        target=lambda k=k: results.append(
                            run_slot(state_dir, k, deadline, max_seeds, known_file, stop)
                        ),
                        daemon=True,
                    )
                    for k in range(cfg.jobs)
                ]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()

            runner = threading.Thread(target=local, daemon=True)
        runner.start()
        start = time.time()
        last_execs, last_t = Progress.read(state, cfg.jobs).execs, start
        tty = hasattr(out, "isatty") and out.isatty()
        next_print = 0.0
        while runner.is_alive():
            runner.join(timeout=1.0)
            if stop.is_set():
                atomic_write(state.p("STOP"), "stop\n")
            now = time.time()
            if quiet or now < next_print:
                continue
            p = Progress.read(state, cfg.jobs)
            rate = (p.execs - last_execs) / max(now - last_t, 1e-9)
            last_execs, last_t = p.execs, now
            restarts = sum(1 for e in read_lines(state.p("log.jsonl")) if e.get("ev") == "restart")
            line = progress_line(p, now - start, rate, cfg.jobs, restarts)
            out.write(("\r" + line + "\x1b[K") if tty else line + "\n")
            out.flush()
            next_print = now + (1.0 if tty else 10.0)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    p = Progress.read(state, cfg.jobs)
    state.log(
        {
            "ev": "stop",
            "t": time.time(),
            "execs": p.execs,
            "findings": p.findings,
            "interrupted": stop.is_set(),
        }
    )
    if not quiet:
        elapsed = max(time.time() - start, 1e-9)
        if hasattr(out, "isatty") and out.isatty():
            out.write("\n")
        out.write(
            progress_line(
                p,
                elapsed,
                p.execs / elapsed if not seconds else p.execs / elapsed,
                cfg.jobs,
                sum(r.get("restarts", 0) for r in results),
            )
            + "\n"
        )
        for f in state.findings():
            mark = f" (known: {f['known']})" if f.get("known") else ""
            out.write(f"finding {f['id']}: {f['signature']} seed {f.get('seed')}{mark}\n")
        out.write(f"state: {state.root.resolve()}\n")
    return p.new_findings


def _run_dask(
    address: str,
    state_dir: str,
    cfg: CampaignConfig,
    deadline: float | None,
    max_seeds: int | None,
    known_file: str | None,
    stop: threading.Event,
) -> list[dict[str, Any]]:
    """One long task per worker slot on a Dask cluster: each task supervises a worker process
    on its machine (run_slot), so crash/hang handling is the same as locally; the state folder
    is the shared findings store (it must be on a filesystem every machine mounts)."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise UsageError("--dask needs the distributed package: pip install 'bpfcheck[fuzz]'") from None
    cluster = None
    if address.startswith("local"):
        n = int(address.split(":", 1)[1]) if ":" in address else cfg.jobs
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None)
        client = Client(cluster)
    else:
        client = Client(address)
    try:
        futures = {
            k: client.submit(
                run_slot,
                os.path.abspath(state_dir),
                k,
                deadline,
                max_seeds,
                known_file,
                None,
                key=f"bpfcheck-fuzz-slot-{k}-{time.time_ns()}",
                pure=False,
            )
            for k in range(cfg.jobs)
        }
        done: list[dict[str, Any]] = []
        while futures:
            for k, fut in list(futures.items()):
                if fut.status == "finished":
                    done.append(fut.result())
                    del futures[k]
                elif fut.status in ("error", "cancelled", "lost"):
                    State(state_dir).log(
                        {"ev": "dask-resubmit", "worker": k, "status": fut.status, "t": time.time()}
                    )
                    if stop.is_set() or (deadline is not None and time.time() >= deadline):
                        del futures[k]
                        continue
                    futures[k] = client.submit(
                        run_slot,
                        os.path.abspath(state_dir),
                        k,
                        deadline,
                        max_seeds,
                        known_file,
                        None,
                        key=f"bpfcheck-fuzz-slot-{k}-{time.time_ns()}",
                        pure=False,
                    )
            time.sleep(0.5)
        return done
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


# --- Replay ---------------------------------------------------------------------------------


def replay(
    seed_text: str,
    state_dir: str | None,
    targets: Sequence[str] | None = None,
    cfg: CampaignConfig | None = None,
) -> tuple[Any, list[Result], list[str]]:
    """Rebuild the input of a seed and run it again: (case, results, target names)."""
    s, k, i = parse_seed(seed_text)
    corpus: list[str] = []
    load: Any = None
    if state_dir is not None:
        state = State(state_dir)
        cfg = state.config()
        if s != cfg.seed:
            raise UsageError(f"seed {seed_text} is not from this campaign (its seed is {cfg.seed})")
        n = None
        for e in read_lines(state.worker(k, "log")):
            if e.get("ev") == "batch" and e["seeds"][0] <= i < e["seeds"][1]:
                n = int(e["corpus_n"])
        if n is None:  # the batch was cut by a kill: it ran with the cursor's corpus size
            try:
                cur = json.loads(state.worker(k, "json").read_text())
                n = int(cur.get("corpus_n", 0)) if int(cur.get("next", 0)) <= i else 0
            except (FileNotFoundError, ValueError):
                n = 0
        corpus = read_idx(state.p("corpus", f"w{k}.idx"))[:n]

        def load(h: str) -> bytes:
            return state.p("corpus", f"{h}.bin").read_bytes()

    cfg = cfg or CampaignConfig(seed=s)
    if corpus and load is None:
        raise UsageError("a mutated input needs --state")
    data = make_input(s, k, i, corpus, load, cfg.fresh)
    case = cfg.make_case(k, i, data)
    oracle = cfg.oracle(targets)
    if isinstance(case, WholeCase):
        return case, oracle.check_whole(case), oracle.names
    return case, oracle.check(case.program, case.mems, case.budget), oracle.names


# --- Worker entry point (``python -m fuzz.campaign worker``) -----------------------------------


def _worker_main(argv: Sequence[str]) -> int:
    ap = argparse.ArgumentParser(prog="fuzz.campaign worker")
    ap.add_argument("--state", required=True)
    ap.add_argument("--worker", type=int, required=True)
    ap.add_argument("--deadline", type=float)
    ap.add_argument("--max-seeds", type=int)
    ap.add_argument("--known")
    a = ap.parse_args(argv)
    w = Worker(
        State(a.state), a.worker, deadline=a.deadline, max_seeds=a.max_seeds, known=load_known(a.known)
    )
    return w.run()


if __name__ == "__main__":
    if sys.argv[1:2] == ["worker"]:
        sys.exit(_worker_main(sys.argv[2:]))
    sys.exit("usage: python -m fuzz.campaign worker --state DIR --worker K")
