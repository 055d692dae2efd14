"""Keep freed heap memory in the process (glibc), so that buffers allocated and freed on every call do not
page-fault on every call.

glibc's malloc gives memory back to the kernel when the free space at the top of its heap passes
``M_TRIM_THRESHOLD``, which by default follows the largest recently freed block (twice glibc's dynamic
mmap threshold, at most 64 MiB). oneDNN allocates its working buffers (several MiB for a 1024 x 1024 product)
on every call and frees them after it: in a process with little else live at the top of the heap, each call's
buffer then comes back from the kernel as fresh pages, one minor page fault per 4 KiB (issue #18: a 128 x 1024
x 1024 layer forward + backward took 1.02x torch's time on this AMD EPYC with the defaults and 0.93x with the
freed memory kept; a VAE step with its 784 x 500 layers on oneDNN 3% more than on torch, level when kept).

:func:`keep_freed_memory` fixes the two thresholds (``mallopt``): blocks below ``MMAP_THRESHOLD`` come from the
heap, and up to ``TRIM_THRESHOLD`` of free memory stays in the process for the next call. The price is a
process that keeps up to that much memory it no longer uses, as torch's CUDA caching allocator does on the GPU.
It changes nothing where the C library is not glibc, or where the user has set glibc's malloc tunables
(``GLIBC_TUNABLES=glibc.malloc...`` or ``MALLOC_*_`` variables: theirs stay), or with ``DGM_HEAP=system``.
"""
from __future__ import annotations

import ctypes
import os
import platform
from functools import lru_cache

from core.errors import DGMError

#: glibc's mallopt parameters (malloc.h)
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
#: blocks of at least this size are mapped and unmapped on their own (glibc's largest dynamic value)
MMAP_THRESHOLD = 32 << 20
#: free memory at the top of the heap kept for later allocations
TRIM_THRESHOLD = 256 << 20
CHOICES: tuple[str, ...] = ("keep", "system")


def heap_choice() -> str:
    """``DGM_HEAP``: ``keep`` (default) or ``system`` (glibc's own thresholds)."""
    choice = os.environ.get("DGM_HEAP", "keep")
    if choice not in CHOICES:
        raise DGMError(f"unknown DGM_HEAP {choice!r}; choose one of {', '.join(CHOICES)}")
    return choice


def user_tuned_malloc() -> bool:
    """Whether the environment already sets glibc's malloc thresholds (then they are the user's to keep)."""
    return "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", "") or any(
        name.startswith("MALLOC_") and name.endswith("_") for name in os.environ)


@lru_cache(maxsize=1)
def keep_freed_memory() -> bool:
    """Set glibc's mmap and trim thresholds (module docstring) once per process; whether they were set."""
    if heap_choice() == "system" or user_tuned_malloc() or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # mallopt returns 1 on success; the mmap threshold first (setting either one stops glibc's dynamic tuning)
    return mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
