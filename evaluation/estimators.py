"""Estimators of log p(x) per example, for any Pyro model/guide pair (nats, float64).

With K samples per example (``inference.objectives.importance.log_weights`` gives log w of shape (K, N)):

    naive_monte_carlo   log (1/K) sum_k p(x | z_k),            z_k ~ p(z)       (unbiased in p, not log p)
    elbo                (1/K) sum_k log p(x, z_k) / q(z_k | x),  z_k ~ q(z | x)   (lower bound, any K)
    importance_sampled  log (1/K) sum_k p(x, z_k) / q(z_k | x),  z_k ~ q(z | x)   (IWAE bound L_K -> log p(x))
    exact               log p(x) of models with no latent site, or ``log_marginal(x)`` where defined

Signature (``shared/CONVENTIONS.md``)::

    f(model, guide, x, num_samples=K, *, chunk_size=None, return_log_weights=False)
        -> float64 tensor (N,)   or   (estimates (N,), log_weights (N, K))

The work streams through :func:`log_weight_chunks`: examples in chunks whose (n, K) float64
log-weight matrix stays under ``LOG_WEIGHT_BUDGET`` entries, samples in passes whose
observation-sized tensors (K_pass, n, D) stay under ``ELEMENT_BUDGET`` elements. So K = 5000 over
10,000 MNIST images needs tens of megabytes, not gigabytes, unless all log-weights are asked for.
Models with a dequantization site u in model and guide (a continuous density of discrete data,
e.g. ``models.ppca`` on images) need nothing special: u is one more latent site, ``elbo`` is the
dequantization lower bound and ``importance_sampled`` the importance-sampled log P(x).
"""
from __future__ import annotations

import math
from typing import Any, Callable, Iterator, Literal

import torch

from core.errors import DGMError
from inference.objectives.importance import log_weights

#: elements of one observation-sized tensor per pass (K_pass * n * D): bounds peak memory; 2^20 (4 MiB of
#: float32) was the fastest on CPU of 2^20, 2^22, 2^24 (cache), see benchmarks/eval_throughput.py.
ELEMENT_BUDGET = 1 << 20
#: fewest samples per example in one pass, so that chunks of examples stay small enough for passes to be
#: batches of several samples (one Pyro trace per pass costs ~1 ms of Python)
MIN_SAMPLES_PER_PASS = 8
#: entries of one chunk's float64 log-weight matrix (n * K): 2^22 entries = 32 MiB.
LOG_WEIGHT_BUDGET = 1 << 22

Proposal = Literal["guide", "prior"]


def _owner(fn: Callable) -> Any:
    return getattr(fn, "__self__", None)


def check_num_samples(num_samples: Any) -> int:
    """K must be a positive integer (a one-line error otherwise)."""
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise DGMError(f"the number of samples K must be a positive integer, got {num_samples!r}")
    return num_samples


def _prepare(model: Callable, x: torch.Tensor, num_samples: int) -> tuple[Any, int]:
    """Validate K and the data (through the model's ``check_data``); return (model object, plate nesting)."""
    check_num_samples(num_samples)
    if not isinstance(x, torch.Tensor) or x.dim() < 1 or x.shape[0] == 0:
        raise DGMError("no examples to evaluate (empty split or limit 0)")
    owner = _owner(model)
    if owner is not None and hasattr(owner, "check_data"):
        owner.check_data(x)
    return owner, getattr(owner, "max_plate_nesting", 1)


def _chunks(n: int, size: int) -> list[slice]:
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


@torch.no_grad()
def _chunk_log_weights(model: Callable, guide: Callable, xc: torch.Tensor, num_samples: int, proposal: Proposal,
                       nesting: int) -> torch.Tensor:
    """log w (n, K) float64 on the CPU for the examples ``xc``, in passes of at most ELEMENT_BUDGET elements."""
    k_pass = samples_per_pass(xc.shape[0], xc[0].numel())
    # one preallocated (n, K) buffer: small tensors kept alive between the passes' large temporaries
    # fragment the heap (RSS grew by gigabytes at K = 5000 when the passes' results were concatenated)
    lw = torch.empty(xc.shape[0], num_samples, dtype=torch.float64)
    for k in _chunks(num_samples, k_pass):
        lw[:, k] = log_weights(model, guide, xc, k.stop - k.start, proposal=proposal,
                               max_plate_nesting=nesting).T.to("cpu", torch.float64)
    return lw


def log_weight_chunks(model: Callable, guide: Callable, x: torch.Tensor, num_samples: int, *,
                      proposal: Proposal = "guide", chunk_size: int | None = None) -> Iterator[tuple[slice, torch.Tensor]]:
    """Yield ``(rows, log_w)`` per chunk of examples: log_w float64 of shape (n, K) on the CPU.

    ``proposal="guide"``: log w = log p(x, z) - log q(z | x), z ~ q; ``"prior"``: log w = log p(x | z),
    z ~ p(z). One-line errors for K < 1, no examples, data the model refuses, NaN or +inf log-weights,
    and an example whose log-weights are all -inf (data outside the support of the model); a single
    -inf weight is legitimate (p(x | z) = 0 for that z).
    """
    _, nesting = _prepare(model, x, num_samples)
    n_total = x.shape[0]
    n_chunk = chunk_size or examples_per_chunk(n_total, x[0].numel(), num_samples)
    for rows in _chunks(n_total, n_chunk):
        lw = _chunk_log_weights(model, guide, x[rows], num_samples, proposal, nesting)
        broken = torch.isnan(lw) | (lw == math.inf)
        if broken.any():
            bad = int(broken.any(-1).nonzero()[0]) + rows.start
            raise DGMError(f"NaN or +inf log-weights (first at example {bad}): the model is numerically broken")
        impossible = (lw == -math.inf).all(-1)
        if impossible.any():
            bad = int(impossible.nonzero()[0]) + rows.start
            raise DGMError(f"every log-weight of example {bad} is -inf: the data lies outside the support "
                           "of the model")
        yield rows, lw


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


def _reduce(model: Callable, guide: Callable, x: torch.Tensor, num_samples: int, chunk_size: int | None,
            proposal: Proposal, reduce: Callable[[torch.Tensor], torch.Tensor], return_log_weights: bool):
    estimates, kept = [], []
    for _, lw in log_weight_chunks(model, guide, x, num_samples, proposal=proposal, chunk_size=chunk_size):
        estimates.append(reduce(lw))
        if return_log_weights:
            kept.append(lw)
    est = check_estimates(torch.cat(estimates))
    return (est, torch.cat(kept)) if return_log_weights else est


def naive_monte_carlo(model: Callable, guide: Callable, x: torch.Tensor, num_samples: int = 1000, *,
                      chunk_size: int | None = None, return_log_weights: bool = False):
    """log (1/K) sum_k p(x | z_k), z_k ~ p(z): consistent, but needs K ~ exp(KL(p(z|x) || p(z))) samples."""
    return _reduce(model, guide, x, num_samples, chunk_size, "prior", log_mean_exp, return_log_weights)


def elbo(model: Callable, guide: Callable, x: torch.Tensor, num_samples: int = 1, *,
         chunk_size: int | None = None, return_log_weights: bool = False):
    """(1/K) sum_k log w_k, z_k ~ q(z|x): the evidence lower bound averaged over K samples."""
    return _reduce(model, guide, x, num_samples, chunk_size, "guide", lambda w: w.mean(-1), return_log_weights)


def importance_sampled(model: Callable, guide: Callable, x: torch.Tensor, num_samples: int = 1000, *,
                       chunk_size: int | None = None, return_log_weights: bool = False):
    """log (1/K) sum_k w_k, z_k ~ q(z|x): the IWAE bound L_K, rising to log p(x) as K grows."""
    return _reduce(model, guide, x, num_samples, chunk_size, "guide", log_mean_exp, return_log_weights)


def exact(model: Callable, guide: Callable, x: torch.Tensor, num_samples: int = 1, *,
          chunk_size: int | None = None, return_log_weights: bool = False):
    """log p(x) exactly: the observed sites' log-probability of a model with no latent site, or
    ``log_marginal(x)`` where the model defines it. K is irrelevant; log_weights repeat the value K times."""
    owner, _ = _prepare(model, x, num_samples)
    if owner is not None and hasattr(owner, "log_marginal"):
        with torch.no_grad():
            est = torch.cat([owner.log_marginal(x[r]).to(torch.float64).cpu()
                             for r in _chunks(x.shape[0], chunk_size or 1000)])
        if not torch.isfinite(est).all():
            raise DGMError("non-finite log p(x): the data lies outside the support of the model")
    else:
        if owner is not None and getattr(owner, "has_latents", False):
            raise DGMError("the exact estimator needs a model without latent sample sites or with log_marginal(x)")
        est = _reduce(model, guide, x, 1, chunk_size, "guide", lambda w: w[:, 0], False)
    if return_log_weights:
        return est, est[:, None].expand(-1, num_samples)
    return est


def has_exact(model: Any) -> bool:
    """Whether :func:`exact` applies to this model object: no latent sites, or a ``log_marginal``
    (a model whose ``log_marginal`` depends on the data set says so with ``has_log_marginal``)."""
    if not getattr(model, "has_latents", True):
        return True
    return bool(getattr(model, "has_log_marginal", callable(getattr(model, "log_marginal", None))))


ESTIMATORS: dict[str, Callable] = {
    "naive_monte_carlo": naive_monte_carlo,
    "elbo": elbo,
    "importance_sampled": importance_sampled,
    "exact": exact,
}
