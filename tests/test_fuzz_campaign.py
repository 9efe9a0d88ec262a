"""Campaigns survive SIGKILL, crashing and hanging workers, and run on a local Dask cluster.

Findings exist because a target is a seeded bug (``mutant:``, bench/mutants); the live kernel is
never a target here.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fuzz.campaign import CampaignConfig, State, read_lines, run_campaign

pytestmark = pytest.mark.slow

MUTANT = "mutant:interp-jmp32-compares-64"
SEEDS = 160


def _cmd(state: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "conformance.cli",
        "fuzz",
        "--time",
        "600s",
        "--jobs",
        "1",
        "--max-seeds",
        str(SEEDS),
        "--inputs",
        "4",
        "--no-minimize",
        "--targets",
        f"interpreter,{MUTANT}",
        "--state",
        str(state),
        "--seed",
        "9",
        "--quiet",
    ]


def _ids(state: Path) -> set[str]:
    return {f["id"] for f in State(state).findings()}


def _cursor(state: Path) -> int:
    try:
        return int(json.loads((state / "workers" / "w0.json").read_text())["next"])
    except (FileNotFoundError, ValueError, KeyError):
        return 0


def test_sigkill_at_a_random_moment_then_resume_loses_no_finding(tmp_path: Path, subprocess_env) -> None:
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    done = subprocess.run(_cmd(ref), env=subprocess_env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 1, done.stdout + done.stderr  # the mutant is found
    want = _ids(ref)
    assert want

    rng = random.Random(int.from_bytes(os.urandom(4), "little"))
    kill_after = rng.randrange(16, SEEDS - 16)  # seeds done before the kill (at least one batch)
    delay = rng.uniform(0.0, 0.3)
    proc = subprocess.Popen(
        _cmd(killed),
        env=subprocess_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 300
        while _cursor(killed) < kill_after and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(delay)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the supervisor and its worker, as a machine loss would
        except ProcessLookupError:
            pass
        proc.wait()
    at_kill = _cursor(killed)
    before = _ids(killed)
    logged = {e["id"] for e in read_lines(killed / "workers" / "w0.log") if e.get("ev") == "finding"}
    assert logged <= before, "a finding was logged before its folder was complete"
    assert before <= want

    again = subprocess.run(_cmd(killed), env=subprocess_env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 1, again.stdout + again.stderr
    after = _ids(killed)
    assert before <= after, "a finding recorded before the kill is gone"
    assert after == want, (
        f"killed at seed {at_kill} (+{delay:.2f} s): findings differ from the "
        f"uninterrupted run: missing {want - after}, extra {after - want}"
    )
    batches = sorted(
        tuple(e["seeds"]) for e in read_lines(killed / "workers" / "w0.log") if e.get("ev") == "batch"
    )
    covered = set()
    for first, last in batches:
        covered |= set(range(first, last))
    assert covered == set(range(SEEDS)), "every seed is logged in a completed batch"


def test_a_crashing_worker_is_restarted_and_the_seed_recorded(tmp_path: Path, monkeypatch) -> None:
    """A worker killed by a signal mid-batch: the slot supervisor records the seed in flight as a
    finding, skips it, restarts the worker and the campaign completes."""

    state = tmp_path / "st"
    cfg = CampaignConfig(
        seed=3, targets=["interpreter", "jit-x86_64"], jobs=1, inputs=2, minimize=False, hang_timeout=5.0
    )
    hook = tmp_path / "sitecustomize.py"
    # the worker dies by SIGSEGV in its 5th program (seed index 4), the first time only
    hook.write_text(
        "import os, signal, fuzz.oracle as o\n"
        f"MARK = {str(tmp_path / 'crashed')!r}\n"
        "orig = o.Oracle.check\n"
        "calls = [0]\n"
        "def check(self, *a, **k):\n"
        "    calls[0] += 1\n"
        "    if calls[0] == 5 and not os.path.exists(MARK):\n"
        "        open(MARK, 'w').close()\n"
        "        os.kill(os.getpid(), signal.SIGSEGV)\n"
        "    return orig(self, *a, **k)\n"
        "o.Oracle.check = check\n"
    )
    monkeypatch.setenv(
        "PYTHONPATH",
        os.pathsep.join(
            [str(tmp_path), str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")]
        ),
    )
    new = run_campaign(cfg, str(state), seconds=300, max_seeds=12, quiet=True)
    found = State(state).findings()
    crash = [f for f in found if f["signature"].startswith("worker-crash:SIGSEGV")]
    assert crash and crash[0]["seed"] == "3:0:4", found
    assert new >= 1
    assert (state / "workers" / "w0.skip").read_text().split() == ["4"]
    assert json.loads((state / "workers" / "w0.json").read_text())["next"] == 12
    assert any(e.get("ev") == "restart" for e in read_lines(state / "log.jsonl"))


def test_campaign_on_a_local_dask_cluster(tmp_path: Path) -> None:
    pytest.importorskip("distributed")
    state = tmp_path / "st"
    cfg = CampaignConfig(seed=4, targets=["interpreter", MUTANT], jobs=2, inputs=4, minimize=False)
    new = run_campaign(cfg, str(state), seconds=300, max_seeds=8, dask="local:2", quiet=True)
    assert new >= 1
    for k in range(2):
        assert json.loads((state / "workers" / f"w{k}.json").read_text())["next"] == 8
    events = [e["ev"] for e in read_lines(state / "log.jsonl")]
    assert events[0] == "start" and events[-1] == "stop"
    assert {f["worker"] for f in State(state).findings()} <= {0, 1}
