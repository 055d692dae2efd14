"""``core.heap``: with freed memory kept, buffers allocated and freed over and over stop page-faulting.

Each case runs in a fresh interpreter (the thresholds are process-wide and set once). First, whether a single
20 MiB tensor is mapped on its own (glibc's default in a fresh process) or taken from the heap (kept). Then ten
10 MiB tensors allocated, written and freed, eight times: the minor page faults of the last four rounds, and the
heap's size after the last free (glibc's ``mallinfo2``). Kept, the rounds after the second or third reuse the
process's memory: no faults, and the 100 MiB stay in the heap (six runs of ten rounds on this machine: 0 faults
from round 4 on). With glibc's own thresholds one run in three kept taking its 100 MiB from the kernel in every
round (about 20,500 faults of 4 KiB a round); the others settled after round 4, depending on what small
allocation sits at the top of the heap, so that side of the rounds is not asserted.
"""
from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from core.errors import DGMError
from core.heap import heap_choice, user_tuned_malloc

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = """
import ctypes, resource, torch
from core.heap import keep_freed_memory
kept = keep_freed_memory()
class Info(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]
mallinfo2 = ctypes.CDLL(None).mallinfo2
mallinfo2.restype = Info
before = mallinfo2().hblkhd
single = torch.empty(5 << 20)  # 20 MiB: mapped on its own under glibc's thresholds, from the heap when kept
mapped = (mallinfo2().hblkhd - before) >> 20
del single
faults = []
for _ in range(8):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    blocks = [torch.empty(10 << 18).fill_(1.0) for _ in range(10)]  # 10 x 10 MiB, every page written
    del blocks
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(kept, sum(faults[4:]), mallinfo2().arena >> 20, mapped)
"""


def run(**env: str) -> tuple[bool, int, int, int]:
    clean = {k: v for k, v in os.environ.items()
             if not (k == "GLIBC_TUNABLES" or (k.startswith("MALLOC_") and k.endswith("_")) or k == "DGM_HEAP")}
    out = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, env={**clean, **env, "PYTHONPATH": str(ROOT)},
                         capture_output=True, text=True, timeout=120, check=True).stdout.split()
    return out[0] == "True", int(out[1]), int(out[2]), int(out[3])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the thresholds are glibc's (mallopt)")
def test_kept_memory_is_reused_without_page_faults():
    kept, faults, heap_mib, mapped_mib = run(DGM_HEAP="keep")
    assert kept and faults < 1_000 and heap_mib >= 100 and mapped_mib == 0
    system, _, _, mapped_system_mib = run(DGM_HEAP="system")
    assert not system and mapped_system_mib >= 20  # glibc's own threshold in a fresh process: mapped


def test_the_users_own_malloc_settings_and_bad_choices():
    assert user_tuned_malloc() == ("glibc.malloc." in os.environ.get("GLIBC_TUNABLES", "")
                                   or any(k.startswith("MALLOC_") and k.endswith("_") for k in os.environ))
    kept, *_ = run(DGM_HEAP="keep", GLIBC_TUNABLES="glibc.malloc.trim_threshold=1000000")
    assert not kept  # the user's tunables are left alone


def test_unknown_heap_choice_is_a_one_line_error(monkeypatch):
    monkeypatch.setenv("DGM_HEAP", "jemalloc")
    with pytest.raises(DGMError, match="DGM_HEAP"):
        heap_choice()
