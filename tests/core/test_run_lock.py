"""The run-directory lock: a second writer is refused with the holder's PID; a dead holder's lock is taken."""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from core.errors import DGMError
from core.run_lock import RunLock
from inference.train import main as train_main
from tests.conftest import cli, lock_holder as _holder



def test_a_second_writer_is_refused_naming_the_holder_and_a_dead_holders_lock_is_recovered(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    proc = _holder(run)
    try:
        with pytest.raises(DGMError, match=f"in use by process {proc.pid}"):
            with RunLock(run, "evaluating"):
                pass
    finally:
        proc.send_signal(signal.SIGKILL)  # no clean-up at all: the kernel releases the lock
        proc.wait()
    with RunLock(run, "evaluating"):  # recovered without any manual step
        assert (run / ".lock.owner").read_text().count(str(os.getpid())) == 1
    assert not (run / ".lock.owner").exists()


def test_training_into_a_directory_another_process_writes_is_refused(tmp_path: Path, capsys) -> None:
    run = tmp_path / "busy"
    run.mkdir()
    proc = _holder(run)
    try:
        code, _, err = cli(train_main, ["vae", "--dataset", "binarized_digits", "--hidden", "8", "--epochs", "1",
                                        "--device", "cpu", "--out", run], capsys)
    finally:
        proc.kill()
        proc.wait()
    assert code == 2 and f"process {proc.pid}" in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in run.iterdir() if not p.name.startswith(".lock")) == []


def test_the_lock_is_reentrant_within_a_process(tmp_path: Path) -> None:
    with RunLock(tmp_path, "training"):
        with RunLock(tmp_path, "the final evaluation"):
            pass
        assert (tmp_path / ".lock.owner").exists()
    time.sleep(0)
    assert not (tmp_path / ".lock.owner").exists()
