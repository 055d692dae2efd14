"""Timing for the benchmark scripts: the ``--device``/``--threads`` options and wall clocks that wait for the GPU.

CUDA kernels run asynchronously, so a clock read right after a launch measures the launch, not the
work: :func:`timed` synchronises before and after. ``--device auto`` takes the GPU when there is one;
every table and row then says which device was measured.
"""
from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable, TypeVar

import torch

from core.device import resolve_device, set_threads

T = TypeVar("T")


def add_device_arguments(parser: argparse.ArgumentParser, threads: int | None = 1) -> None:
    """``--device auto|cpu|cuda`` (default auto) and ``--threads N`` (torch CPU threads)."""
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                        help="device to measure (auto: the GPU when there is one)")
    parser.add_argument("--threads", type=int, default=threads,
                        help="torch CPU threads" + (f" (default {threads})" if threads else " (default: torch's)"))


def setup_device(args: argparse.Namespace) -> torch.device:
    """Apply ``--threads`` and resolve ``--device`` (``cuda`` without a GPU is a one-line error)."""
    set_threads(args.threads)
    return resolve_device(args.device)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], T], device: torch.device) -> tuple[float, T]:
    """(seconds, fn()) with the device synchronised on both sides."""
    synchronize(device)
    start = time.perf_counter()
    out = fn()
    synchronize(device)
    return time.perf_counter() - start, out


def median_seconds(fn: Callable[[], object], device: torch.device, repeats: int, warmup: int = 1) -> list[float]:
    """``warmup`` untimed calls, then the seconds of ``repeats`` timed calls (the caller takes the median)."""
    for _ in range(warmup):
        fn()
    return [timed(fn, device)[0] for _ in range(repeats)]


def median(values: list[float]) -> float:
    return statistics.median(values)


def wall_and_cpu(fn: Callable[[], object], device: torch.device) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of one call of ``fn``, the device synchronised on both sides.

    CPU time (``time.process_time``, all threads of the process) is what other jobs on a shared machine
    disturb least: time the scheduler gives to them is not counted. Wall time is what a user waits."""
    synchronize(device)
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    synchronize(device)
    return time.perf_counter() - wall, time.process_time() - cpu


def interleaved(work: dict[str, Callable[[], object]], blocks: int, device: torch.device,
                warmup: int = 1) -> dict[str, list[tuple[float, float]]]:
    """``(wall, cpu)`` seconds of each callable in each of ``blocks`` rounds; every round calls each once.

    ``warmup`` untimed rounds first (allocations, lazy initialisation). The order within a round rotates,
    so that no callable always runs first (after another's caches) and load on the machine hits all alike."""
    names = list(work)
    for _ in range(warmup):
        for name in names:
            work[name]()
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
    for block in range(blocks):
        shift = block % len(names) if names else 0
        for name in names[shift:] + names[:shift]:
            times[name].append(wall_and_cpu(work[name], device))
    return times
