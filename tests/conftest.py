"""Test-suite settings: offline, real data from ../shared/data when present, one torch thread."""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"

os.environ["DGM_OFFLINE"] = "1"  # tests never touch the network
# feature classifiers are trained once per test session, never read from (or written to) the user's cache
os.environ["DGM_CLASSIFIER_DIR"] = tempfile.mkdtemp(prefix="dgm-classifiers-")
os.environ.setdefault("MPLBACKEND", "Agg")
if SHARED_DATA.is_dir() and "DGM_DATA_DIR" not in os.environ:
    os.environ["DGM_DATA_DIR"] = str(SHARED_DATA)
torch.set_num_threads(1)  # small tensors: threads cost more than they give, and runs stay reproducible


@pytest.fixture
def shared_data() -> Path | None:
    """The real data folder beside the project, or None (tests then use synthetic data)."""
    return SHARED_DATA if SHARED_DATA.is_dir() else None


def cli(main, argv, capsys) -> tuple[int, str, str]:
    """Run a command-line ``main`` as its ``python -m`` entry point does; return (exit code, stdout, stderr)."""
    from core.errors import run_cli

    with pytest.raises(SystemExit) as exit_info:
        run_cli(main, [str(a) for a in argv])
    captured = capsys.readouterr()
    return int(exit_info.value.code or 0), captured.out, captured.err


HOLD_LOCK = ("import sys, time; from core.run_lock import RunLock\nwith RunLock(sys.argv[1], 'a test'):\n"
             "    print('held', flush=True)\n    time.sleep(120)\n")


def lock_holder(run: Path) -> subprocess.Popen:
    """Another process holding ``run``'s lock (kill it when done): the second writer of the lock tests."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(run)], cwd=Path(__file__).resolve().parents[1],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def tiny_vae_options(hidden: int = 8) -> list[str]:
    """Options of a seconds-long VAE training run on binarized digits (the bad-input tests' run)."""
    return ["--dataset", "binarized_digits", "--hidden", str(hidden), "--latent-dim", "2", "--epochs", "1",
            "--device", "cpu"]


def train_tiny_vae(out: Path, hidden: int = 8) -> Path:
    """Train the tiny VAE into ``out`` through the command line; returns ``out``."""
    # imported here, not at the top: the settings above must be in place before the project is imported
    from core.errors import run_cli
    from inference.train import main as train_main

    with pytest.raises(SystemExit) as info:
        run_cli(train_main, ["vae", *tiny_vae_options(hidden), "--out", str(out)])
    assert info.value.code == 0
    return out


def assert_one_line(result: tuple[int, str, str], *fragments: str, code: int | None = 2) -> None:
    """A command's failure: exit ``code`` (any non-zero when None), one ``error:`` line naming each fragment."""
    exit_code, _, err = result
    assert (exit_code != 0) if code is None else (exit_code == code), err
    assert err.startswith("error:") and err.count("\n") == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, err
