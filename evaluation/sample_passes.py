"""Passes of importance samples over a data set, in bounded memory: what every sampling estimator reduces.

A pass draws K samples per example from one proposal (``"guide"``: z ~ q(z | x); ``"prior"``: z ~ p(z);
``"exact"``: none) and yields the float64 log-weights (n, K) of each chunk of examples
(``inference.objectives.importance.log_weights``). Several estimators reduce the same pass, so that,
e.g., the ELBO and importance sampling at one K see the same samples and their gap is paired.

Memory: examples go in chunks whose (n, K) float64 log-weights stay under ``LOG_WEIGHT_BUDGET`` entries,
samples in sub-passes whose observation-sized tensors (K_pass, n, D) stay under ``ELEMENT_BUDGET``
elements, so K = 5000 over 10,000 MNIST images needs tens of megabytes unless all log-weights are kept.
In the joint modes (one estimate per group, or of the whole data set) the data go in one chunk.

Speed: the guide's distributions are built once per chunk and sampled for every sub-pass
(``inference.objectives.guide_cache``) where that gives the plain trace's values bit for bit; each chunk's
first sub-pass is traced in full and checked, against the shared rules (``trace_checks``) and with Pyro's
validation of distribution arguments and values; the chunk's other sub-passes skip both checks.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np
import pyro
import torch
from pyro.infer.util import is_validation_enabled

from core.errors import DGMError
from evaluation.diagnostics import effective_sample_size, pareto_khat
from evaluation.program import Program
from inference.objectives.guide_cache import GuideCache
from inference.objectives.importance import Proposal, marks_enumeration, particle_dim, trace_guide, weighed_pass

#: elements of one observation-sized tensor per pass (K_pass * n * D): bounds peak memory; 2^20 (4 MiB of
#: float32) was the fastest on CPU of 2^20, 2^22, 2^24 (cache), see benchmarks/eval_throughput.py.
ELEMENT_BUDGET = 1 << 20
#: fewest samples per example in one pass, so that chunks of examples stay small enough for passes to be
#: batches of several samples (one Pyro trace per pass costs ~1 ms of Python)
MIN_SAMPLES_PER_PASS = 8
#: entries of one chunk's float64 log-weight matrix (n * K): 2^22 entries = 32 MiB.
LOG_WEIGHT_BUDGET = 1 << 22
#: k-hat (and ESS) are computed only from K >= 100 samples: PSIS fits the tail's largest ~3 sqrt(K) weights
KHAT_MIN_K = 100

Reducer = Callable[[torch.Tensor], torch.Tensor]


def check_num_samples(num_samples: Any) -> int:
    """K must be a positive integer (a one-line error otherwise)."""
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise DGMError(f"the number of samples K must be a positive integer, got {num_samples!r}")
    return num_samples


def check_chunk_size(chunk_size: Any) -> None:
    """``chunk_size`` (``--chunk-size``): None (chosen from a memory budget) or a positive integer."""
    if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1):
        raise DGMError(f"the chunk size (--chunk-size) must be a positive integer, got {chunk_size!r}")


def log_mean_exp(lw: torch.Tensor) -> torch.Tensor:
    """log (1/K) sum_k exp(lw_k) over the last dimension, stable (log-sum-exp)."""
    return torch.logsumexp(lw, dim=-1) - math.log(lw.shape[-1])


def check_estimates(est: torch.Tensor) -> torch.Tensor:
    """Refuse -inf estimates (e.g. an ELBO whose guide put a sample where p(x, z) = 0)."""
    if not torch.isfinite(est).all():
        bad = int((~torch.isfinite(est)).nonzero()[0])
        raise DGMError(f"the estimate of example {bad} is {float(est[bad])}: the data lies outside the support "
                       "of the model where the samples fell (or the guide is wider than the model's support)")
    return est


def chunks(n: int, size: int) -> list[slice]:
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


def examples_per_chunk(n_total: int, per_example: int, num_samples: int) -> int:
    """Examples per chunk: the (n, K) log-weights under LOG_WEIGHT_BUDGET, and passes of at least
    MIN_SAMPLES_PER_PASS samples within ELEMENT_BUDGET (``per_example``: elements of one example)."""
    per_example = max(1, per_example)
    return max(1, min(n_total, LOG_WEIGHT_BUDGET // num_samples,
                      ELEMENT_BUDGET // (per_example * min(num_samples, MIN_SAMPLES_PER_PASS))))


def samples_per_pass(n: int, per_example: int) -> int:
    """Samples per pass for a chunk of ``n`` examples: observation-sized tensors under ELEMENT_BUDGET."""
    return max(1, ELEMENT_BUDGET // (n * max(1, per_example)))


class _CacheDecision:
    """Whether the guide cache applies to this call: unknown until the first chunk's first pass is checked."""

    def __init__(self, enabled: bool):
        self.valid: bool | None = None if enabled else False


@torch.no_grad()
def _chunk_log_weights(program: Program, xc: torch.Tensor, num_samples: int, proposal: Proposal, nesting: int,
                       cache: _CacheDecision) -> torch.Tensor:
    """log w (U, K) float64 on the CPU for the examples ``xc``, in passes of at most ELEMENT_BUDGET elements."""
    passes = chunks(num_samples, samples_per_pass(xc.shape[0], xc[0].numel()))
    dim = particle_dim(nesting)
    guides = GuideCache(program.guide, xc, dim) if proposal == "guide" and len(passes) > 1 and cache.valid is not False \
        else None
    lw = None
    enumerate_sites = True
    for i, k in enumerate(passes):
        size = k.stop - k.start
        guide_trace = None
        if guides is not None:
            if cache.valid is None:  # first pass of the call: the plain trace, compared with the cache
                guide_trace = trace_guide(program.guide, xc, size, dim)
                cache.valid = guides.matches(guide_trace)
            elif cache.valid:
                guide_trace = guides.draw(size)
        # the first pass checks the traces (our rules and Pyro's argument and support validation); the others,
        # the same program on other samples, skip both (the same numbers, without a host sync per check)
        with pyro.validation_enabled(i == 0 and is_validation_enabled()):
            part, model_trace = weighed_pass(program.model, program.guide, xc, size, proposal=proposal,
                                             max_plate_nesting=nesting, unit=program.unit, guide_trace=guide_trace,
                                             validate=i == 0, enumerate=enumerate_sites)
        if i == 0:  # the enumeration handler costs ~0.3 ms of Python per pass: kept only where sites ask for it
            enumerate_sites = marks_enumeration(model_trace)
        if lw is None:
            # one preallocated (U, K) buffer: small tensors kept alive between the passes' large temporaries
            # fragment the heap (RSS grew by gigabytes at K = 5000 when the passes' results were concatenated)
            lw = torch.empty(part.shape[1], num_samples, dtype=torch.float64)
        lw[:, k] = part.T.to("cpu", torch.float64)
        if guides is not None and not cache.valid:
            guides = None
    assert lw is not None
    return lw


def program_log_weight_chunks(program: Program, x: torch.Tensor, num_samples: int, *, proposal: Proposal = "guide",
                              chunk_size: int | None = None, cache_guide: bool = True
                              ) -> Iterator[tuple[slice, torch.Tensor]]:
    """Yield ``(units, log_w)`` per chunk: log_w float64 (n, K) on the CPU for the units ``units`` (rows of x
    per example; in a joint mode the groups, or the one data set, in a single chunk).

    One-line errors for K < 1, no examples, data the owner refuses, programs the shared rules refuse,
    NaN or +inf log-weights, and a unit whose log-weights are all -inf (data outside the support of the
    model); a single -inf weight is legitimate (p(x | z) = 0 for that z)."""
    check_num_samples(num_samples)
    check_chunk_size(chunk_size)
    program.check_data(x)
    if proposal == "guide" and program.guide is None:
        raise DGMError("this estimator samples the guide: pass a guide (naive_monte_carlo, exact and ais need none)")
    n_total = x.shape[0]
    if program.unit.per_example:
        n_chunk = chunk_size or examples_per_chunk(n_total, x[0].numel(), num_samples)
        pieces = chunks(n_total, n_chunk)
    else:
        pieces = [slice(0, n_total)]
    nesting = program.plate_nesting(x[pieces[0]])
    cache = _CacheDecision(cache_guide)
    done = 0
    for rows in pieces:
        lw = _chunk_log_weights(program, x[rows], num_samples, proposal, nesting, cache)
        units = slice(done, done + lw.shape[0])
        done = units.stop
        broken = torch.isnan(lw) | (lw == math.inf)
        if broken.any():
            bad = int(broken.any(-1).nonzero()[0]) + units.start
            raise DGMError(f"NaN or +inf log-weights (first at example {bad}): the model is numerically broken")
        impossible = (lw == -math.inf).all(-1)
        if impossible.any():
            bad = int(impossible.nonzero()[0]) + units.start
            raise DGMError(f"every log-weight of example {bad} is -inf: the data lies outside the support "
                           "of the model")
        yield units, lw


def log_weight_chunks(model: Callable, guide: Callable | None, x: torch.Tensor, num_samples: int, *,
                      proposal: Proposal = "guide", chunk_size: int | None = None,
                      max_plate_nesting: int | None = None, joint: bool | str = False,
                      cache_guide: bool = True) -> Iterator[tuple[slice, torch.Tensor]]:
    """:func:`program_log_weight_chunks` of ``Program.of(model, guide, ...)`` (the conventions' arguments)."""
    program = Program.of(model, guide, max_plate_nesting=max_plate_nesting, joint=joint)
    return program_log_weight_chunks(program, x, num_samples, proposal=proposal, chunk_size=chunk_size,
                                     cache_guide=cache_guide)


@dataclass
class PassResult:
    """Estimates (U,) per reducer from one pass, per-unit k-hat and ESS (K >= KHAT_MIN_K, when asked), and
    the log-weights (U, K) when kept."""

    estimates: dict[str, torch.Tensor]
    khat: np.ndarray | None = None
    ess: torch.Tensor | None = None
    log_weights: torch.Tensor | None = None


def reduce_pass(program: Program, x: torch.Tensor, num_samples: int, proposal: Proposal,
                reducers: dict[str, Reducer], *, chunk_size: int | None = None, diagnose: bool = False,
                keep_log_weights: bool = False) -> PassResult:
    """One pass of K samples per unit, reduced chunk by chunk by every reducer ((n, K) -> (n,)), never holding
    all (N, K) log-weights unless ``keep_log_weights``; k-hat and ESS when ``diagnose`` and K >= KHAT_MIN_K."""
    parts: dict[str, list[torch.Tensor]] = {name: [] for name in reducers}
    khats: list[np.ndarray] = []
    esss: list[torch.Tensor] = []
    kept: list[torch.Tensor] = []
    diagnose = diagnose and num_samples >= KHAT_MIN_K
    for _, lw in program_log_weight_chunks(program, x, num_samples, proposal=proposal, chunk_size=chunk_size):
        for name, reduce in reducers.items():
            parts[name].append(reduce(lw))
        if diagnose:
            khats.append(pareto_khat(lw))
            esss.append(effective_sample_size(lw))
        if keep_log_weights:
            kept.append(lw)
    return PassResult({name: check_estimates(torch.cat(p)) for name, p in parts.items()},
                      np.concatenate(khats) if diagnose else None, torch.cat(esss) if diagnose else None,
                      torch.cat(kept) if keep_log_weights else None)
