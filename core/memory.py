"""How much memory a job may take, so that sizes that cannot be allocated are refused before the work
(with the size they would need) rather than ending in an allocator error or the kernel's OOM killer."""
from __future__ import annotations

from pathlib import Path

import torch

from core.errors import DGMError

GIB = 2 ** 30


def available_bytes(device: torch.device | None = None) -> int | None:
    """Free memory of ``device``: CUDA's free bytes, or the host's MemAvailable (None when unknown)."""
    if device is not None and device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def check_fits(nbytes: float, what: str, hint: str, device: torch.device | None = None) -> None:
    """Refuse (one line) a job whose ``nbytes`` exceed the free memory of ``device``."""
    free = available_bytes(device)
    if free is not None and nbytes > free:
        raise DGMError(f"{what} needs about {nbytes / GIB:.1f} GiB but {free / GIB:.1f} GiB are free; {hint}")


def parameter_bytes(build: "callable") -> int | None:
    """Bytes of the parameters and buffers ``build()`` would allocate, counted on torch's meta device (no
    memory is taken); None if the builder cannot run there."""
    try:
        with torch.device("meta"):
            module = build()
    except Exception:  # a builder that computes with real values: skip the estimate, the real build will tell
        return None
    tensors = [*module.parameters(), *module.buffers()]
    return int(sum(t.numel() * t.element_size() for t in tensors))
