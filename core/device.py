"""Choosing the torch device from ``--device auto|cpu|cuda``."""
from __future__ import annotations

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


def set_threads(threads: int | None) -> None:
    """``--threads N``: torch's CPU threads (None keeps torch's choice); N < 1 is a one-line error."""
    if threads is None:
        return
    if threads < 1:
        raise DGMError(f"--threads must be at least 1, got {threads}")
    torch.set_num_threads(threads)
