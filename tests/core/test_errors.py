"""run_cli's one-line endings for failures a user or the machine causes: here, a dead torchrun rank."""
from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from core.errors import peer_error

ROOT = Path(__file__).resolve().parents[2]
#: two ranks of a gloo job; rank 1 dies abruptly after the first barrier, rank 0 then needs it for an all-reduce
RANK = """
import os, sys, time, torch, torch.distributed as dist
from core.errors import run_cli
rank, port = int(sys.argv[1]), sys.argv[2]
os.environ["RANK"] = str(rank)
def main(argv):
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    dist.barrier()
    if rank == 1:
        os._exit(9)
    time.sleep(0.5)
    dist.all_reduce(torch.ones(3))
    return 0
run_cli(main)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_dead_rank_ends_the_survivor_with_one_line_naming_resume() -> None:
    port = str(_free_port())
    ranks = [subprocess.Popen([sys.executable, "-c", RANK, str(r), port], cwd=ROOT, stderr=subprocess.PIPE, text=True)
             for r in (1, 0)]
    _, err = ranks[1].communicate(timeout=120)
    ranks[0].wait(timeout=30)
    assert ranks[1].returncode == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith("error: rank 0: another process of this torchrun job stopped") and "--resume" in err


def test_only_lost_peers_under_torchrun_are_classified(monkeypatch) -> None:
    lost = RuntimeError("[../third_party/gloo/gloo/transport/tcp/pair.cc:561] Connection closed by peer [::1]:1")
    monkeypatch.delenv("RANK", raising=False)
    assert peer_error(lost) is None  # not under torchrun: not our call to make
    monkeypatch.setenv("RANK", "3")
    assert peer_error(lost).startswith("rank 3: ")
    assert peer_error(RuntimeError("mat1 and mat2 shapes cannot be multiplied")) is None  # a bug keeps its traceback
    assert peer_error(ValueError("Connection closed by peer")) is None
