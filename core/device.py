"""Choosing the torch device from ``--device auto|cpu|cuda``."""
from __future__ import annotations

import functools
import os

import torch

from core.errors import DGMError


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when available, else CPU; ``cuda`` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise DGMError("--device cuda was asked for, but torch sees no CUDA device (use --device auto or cpu)")
    if name not in ("cpu", "cuda"):
        raise DGMError(f"unknown device {name!r}; use auto, cpu or cuda")
    return torch.device(name)


#: the help text of every command's ``--threads`` option
THREADS_HELP = ("torch CPU threads (default: the cores not already busy by the 1-minute load average, at least 1, "
                "so that a shared machine is not oversubscribed)")


@functools.lru_cache(maxsize=1)
def default_threads() -> int:
    """Cores not already busy: torch's own choice (its physical cores) less the 1-minute load average,
    at least 1. On a machine shared with other jobs torch's default oversubscribes the cores (one
    epoch of the MNIST VAE took 10x longer with its threads than with one thread at a load of 6).
    Decided once per process, so that every command run in one process computes alike."""
    try:
        busy = os.getloadavg()[0]
    except OSError:
        busy = 0.0
    return max(1, min(torch.get_num_threads(), (os.cpu_count() or 1) - int(round(busy))))


def set_threads(threads: int | None) -> int:
    """``--threads N``: torch's CPU threads (None: :func:`default_threads`); N < 1 is a one-line error.
    Returns the number set."""
    if threads is None:
        threads = default_threads()
    if threads < 1:
        raise DGMError(f"--threads must be at least 1, got {threads}")
    torch.set_num_threads(threads)
    return threads
