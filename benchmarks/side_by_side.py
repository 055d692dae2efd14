"""Side-by-side comparisons: ours against plain PyTorch and peer libraries on one piece of work.

A :class:`Comparison` is one row of the peer table (e.g. "MAF training step, batch 128"); its
:class:`Contender` s do the same work, ``ours`` first. Before anything is timed every other contender's
checked quantity (a loss, a mean log-likelihood, a batch of samples) is compared with ours on the same
weights and the same noise (:func:`check`); a contender that disagrees is reported and not timed.
Timing (:func:`measure`) calls the contenders in interleaved blocks (``benchmarks.timing.interleaved``)
and reports, per unit of work, the median CPU time of the process and the median wall time; the ratio
ours / contender is taken on CPU time (what other jobs on a shared machine disturb least).
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Callable

import torch

from benchmarks.timing import interleaved

#: relative tolerance of the checks: float32 sums over hundreds of terms agree to ~1e-6; 1e-4 leaves room
#: for different summation orders and still catches any real difference (a perturbed weight gives ~1e-2)
RTOL = 1e-4


@dataclass
class Contender:
    """One way of doing a comparison's work.

    ``work()`` is one timed call, ``units`` units of work (e.g. 20 training steps); ``value()`` the checked
    quantity on the comparison's fixed check inputs and noise; ``module`` the network it trains or
    evaluates (its parameters are counted, and a test perturbs them); ``matched`` says how its weights
    were made equal to ours."""

    name: str
    work: Callable[[], object]
    value: Callable[[], torch.Tensor]
    module: torch.nn.Module
    units: int = 1
    matched: str = ""
    check: str = ""

    @property
    def parameters(self) -> int:
        return sum(p.numel() for p in self.module.parameters())


@dataclass
class Comparison:
    """One row: ``title`` (work and sizes), ``unit`` (what one unit of work is), the ``dataset`` used,
    its contenders (``ours`` first) and the peers that were not installed (``skipped``)."""

    title: str
    unit: str
    dataset: str
    contenders: list[Contender]
    skipped: list[str] = field(default_factory=list)


def relative_difference(value: torch.Tensor, reference: torch.Tensor) -> float:
    """max |value - reference| / max |reference| (both as float64 on the CPU)."""
    value = torch.as_tensor(value).detach().to("cpu", torch.float64)
    reference = torch.as_tensor(reference).detach().to("cpu", torch.float64)
    if value.shape != reference.shape:
        return float("inf")
    return float((value - reference).abs().max() / reference.abs().max().clamp_min(1e-12))


def check(comparison: Comparison, rtol: float = RTOL) -> list[Contender]:
    """Fill each contender's ``check`` ("ok (rel 3e-07)" or "FAILED (...)") against ours; return those that pass.

    ``ours`` is computed first: some checks replay the noise ours drew (importance sampling)."""
    ours, *others = comparison.contenders
    reference = ours.value()
    ours.check = "reference"
    passed = [ours]
    for contender in others:
        try:
            difference = relative_difference(contender.value(), reference)
        except Exception as exc:  # a peer that cannot run this configuration is reported, not fatal
            contender.check = f"FAILED ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})"
            continue
        ok = difference < rtol
        contender.check = f"{'ok' if ok else 'FAILED'} (rel {difference:.1e})"
        if ok:
            passed.append(contender)
    return passed


@dataclass
class Timing:
    """Per unit of work: median and range of CPU seconds, median wall seconds, over the blocks."""

    cpu: float
    cpu_range: tuple[float, float]
    wall: float


def measure(contenders: list[Contender], blocks: int, device: torch.device, warmup: int = 1) -> dict[str, Timing]:
    """Interleaved blocks of every contender's ``work``; per-unit times by name."""
    times = interleaved({c.name: c.work for c in contenders}, blocks, device, warmup)
    result = {}
    for c in contenders:
        cpu = [t[1] / c.units for t in times[c.name]]
        wall = [t[0] / c.units for t in times[c.name]]
        result[c.name] = Timing(statistics.median(cpu), (min(cpu), max(cpu)), statistics.median(wall))
    return result


def ratio(timings: dict[str, Timing], name: str, attribute: str = "cpu") -> float:
    """ours / ``name`` of the median per-unit time (``cpu`` or ``wall``)."""
    return getattr(timings["ours"], attribute) / getattr(timings[name], attribute)
