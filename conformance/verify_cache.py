"""Sharing verifier results between the worker processes of one run.

Every in-process engine (interpreter, both JITs) and the ``verifier`` target verify a
whole-program case before running it (:func:`conformance.wholeprog.load_check`), each in
whichever worker process the runner hands it to. A program at the verifier's complexity limit
takes tens of seconds to verify in Python, so :func:`conformance.runner.run` gives its workers a
directory (``BPFCHECK_VERIFY_CACHE``) where the first worker to verify a program leaves the
result, keyed by everything the verdict depends on; the others read it. One worker verifies a
key at a time (an exclusive lock file naming its pid; a lock left by a killed worker is taken
over). Without the variable nothing is cached.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pickle
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

ENV = "BPFCHECK_VERIFY_CACHE"
_POLL = 0.05
R = TypeVar("R")


def _key(parts: tuple[Any, ...]) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def cached(parts: tuple[Any, ...], compute: Callable[[], R]) -> R:
    """``compute()``, or the result another worker of this run computed for the same ``parts``."""
    folder = os.environ.get(ENV)
    if not folder:
        return compute()
    base = Path(folder) / _key(parts)
    done, lock = base.with_suffix(".pickle"), base.with_suffix(".lock")
    while True:
        with contextlib.suppress(OSError, pickle.UnpicklingError, EOFError):
            return pickle.loads(done.read_bytes())  # type: ignore[no-any-return]
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                holder = int(lock.read_text() or "0")
            except (OSError, ValueError):
                holder = 0
            if holder and not _alive(holder):
                with contextlib.suppress(OSError):
                    lock.unlink()
            time.sleep(_POLL)
            continue
        except OSError:
            return compute()  # the folder is gone: no cache
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        try:
            result = compute()
            tmp = base.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_bytes(pickle.dumps(result))
            os.replace(tmp, done)
            return result
        finally:
            with contextlib.suppress(OSError):
                lock.unlink()
