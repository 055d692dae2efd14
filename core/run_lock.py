"""An exclusive lock per run directory, held by every command that writes into the run.

Training (fresh or resumed), evaluation and the other commands that write files into ``RUN_DIR``
take ``RUN_DIR/.lock`` for their whole run, so two writers can never interleave ``metrics.csv`` rows
or overwrite each other's checkpoints. The lock is an OS file lock (``filelock``, ``flock`` on Unix):
the kernel releases it when the holding process ends in any way, ``kill -9`` included, so a lock
left by a dead process is recovered automatically by the next command. Who holds it (PID, command,
since when) is written beside it in ``RUN_DIR/.lock.owner``, so that a refused writer can say.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path
from types import TracebackType

from filelock import FileLock, Timeout

from core.errors import DGMError
from core.run_dir import atomic_write_text, command_line

LOCK = ".lock"
OWNER = ".lock.owner"
#: files of the lock itself: not content of the run (a run directory holding only these is empty)
LOCK_FILES = (LOCK, OWNER)


def holder(run_dir: Path) -> str:
    """'process PID (command, since DATE)' of the lock's holder, as far as ``.lock.owner`` says."""
    try:
        owner = json.loads((Path(run_dir) / OWNER).read_text())
        return f"process {owner['pid']} ({owner['command']}, since {owner['since']})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


class RunLock:
    """``with RunLock(run_dir, "training"):`` -- the run directory for this process alone, or a one-line
    error naming the holder. Re-entrant within one process (nested commands share it)."""

    _held: dict[str, int] = {}

    def __init__(self, run_dir: str | os.PathLike, purpose: str):
        self.run_dir = Path(run_dir)
        self.purpose = purpose
        self._lock: FileLock | None = None

    def __enter__(self) -> "RunLock":
        key = str(self.run_dir.resolve())
        if RunLock._held.get(key):
            RunLock._held[key] += 1
            return self
        if not self.run_dir.is_dir():
            raise DGMError(f"{self.run_dir} is not a directory")
        self._lock = FileLock(str(self.run_dir / LOCK), timeout=0)
        try:
            self._lock.acquire()
        except Timeout:
            raise DGMError(f"{self.run_dir} is in use by {holder(self.run_dir)}; wait for it to finish or stop it "
                           f"before {self.purpose}") from None
        except OSError as exc:
            raise DGMError(f"cannot lock {self.run_dir} for {self.purpose}: {exc.strerror or exc}") from None
        RunLock._held[key] = 1
        owner = {"pid": os.getpid(), "command": command_line(), "purpose": self.purpose,
                 "since": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
        atomic_write_text(self.run_dir / OWNER, json.dumps(owner) + "\n")
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        key = str(self.run_dir.resolve())
        RunLock._held[key] -= 1
        if RunLock._held[key] or self._lock is None:
            return
        del RunLock._held[key]
        try:
            (self.run_dir / OWNER).unlink(missing_ok=True)
        except OSError:
            pass
        self._lock.release()
