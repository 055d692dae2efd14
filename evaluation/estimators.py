"""Estimators of log p(x) per example, for any Pyro model/guide pair (nats, float64).

With K samples per example (``inference.importance.log_weights`` gives log w of shape (K, N)):

    naive_monte_carlo   log (1/K) sum_k p(x | z_k),            z_k ~ p(z)       (unbiased in p, not log p)
    elbo                (1/K) sum_k log p(x, z_k) / q(z_k | x),  z_k ~ q(z | x)   (lower bound, any K)
    importance_sampled  log (1/K) sum_k p(x, z_k) / q(z_k | x),  z_k ~ q(z | x)   (IWAE bound L_K -> log p(x))
    exact               log p(x) of models with no latent site, or ``log_marginal(x)`` where defined

Signature (``shared/CONVENTIONS.md``)::

    f(model, guide, x, num_samples=K, *, chunk_size=None, return_log_weights=False)
        -> float64 tensor (N,)   or   (estimates (N,), log_weights (N, K))

Work is chunked over examples (``chunk_size``) and over samples, so that K = 5000 fits in memory.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Literal

import torch

from core.errors import DGMError
from inference.importance import log_weights

#: elements of one observation-sized tensor per pass (K_pass * n * D); bounds peak memory.
ELEMENT_BUDGET = 1 << 24


def _owner(fn: Callable) -> Any:
    return getattr(fn, "__self__", None)


def _prepare(model: Callable, x: torch.Tensor, num_samples: int) -> tuple[Any, int]:
    if not isinstance(num_samples, int) or num_samples < 1:
        raise DGMError(f"the number of samples K must be a positive integer, got {num_samples!r}")
    if not isinstance(x, torch.Tensor) or x.dim() < 1 or x.shape[0] == 0:
        raise DGMError("no examples to evaluate (empty split or limit 0)")
    owner = _owner(model)
    if owner is not None and hasattr(owner, "check_data"):
        owner.check_data(x)
    return owner, getattr(owner, "max_plate_nesting", 1)


def _chunks(n: int, size: int) -> list[slice]:
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


def _log_weight_matrix(model: Callable, guide: Callable, x: torch.Tensor, num_samples: int, chunk_size: int | None,
                       proposal: Literal["guide", "prior"], reduce: Callable[[torch.Tensor], torch.Tensor],
                       keep: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Reduce float64 log-weights (n, K) per example chunk; keep them all only if asked."""
    _, nesting = _prepare(model, x, num_samples)
    per_example = max(1, x[0].numel())
    n_chunk = chunk_size or max(1, min(x.shape[0], ELEMENT_BUDGET // per_example))
    estimates, kept = [], []
    with torch.no_grad():
        for rows in _chunks(x.shape[0], n_chunk):
            xc = x[rows]
            k_pass = max(1, ELEMENT_BUDGET // (xc.shape[0] * per_example))
            parts = [log_weights(model, guide, xc, k.stop - k.start, proposal=proposal, max_plate_nesting=nesting)
                     .to(torch.float64) for k in _chunks(num_samples, k_pass)]
            lw = torch.cat(parts, dim=0).T  # (n, K)
            if not torch.isfinite(lw).all():
                raise DGMError("non-finite log-weights: the data lies outside the model's support, or the "
                               "model is numerically broken")
            estimates.append(reduce(lw).cpu())
            if keep:
                kept.append(lw.cpu())
    return torch.cat(estimates), (torch.cat(kept) if keep else None)


def _log_mean_exp(lw: torch.Tensor) -> torch.Tensor:
    return torch.logsumexp(lw, dim=-1) - math.log(lw.shape[-1])


def _result(est: torch.Tensor, lw: torch.Tensor | None, return_log_weights: bool):
    return (est, lw) if return_log_weights else est


def naive_monte_carlo(model: Callable, guide: Callable, x: torch.Tensor, num_samples: int = 1000, *,
                      chunk_size: int | None = None, return_log_weights: bool = False):
    """log (1/K) sum_k p(x | z_k) with z_k from the prior: consistent, but needs K ~ exp(KL) samples."""
    est, lw = _log_weight_matrix(model, guide, x, num_samples, chunk_size, "prior", _log_mean_exp, return_log_weights)
    return _result(est, lw, return_log_weights)


def elbo(model: Callable, guide: Callable, x: torch.Tensor, num_samples: int = 1, *,
         chunk_size: int | None = None, return_log_weights: bool = False):
    """(1/K) sum_k log w_k with z_k ~ q(z|x): the evidence lower bound averaged over K samples."""
    est, lw = _log_weight_matrix(model, guide, x, num_samples, chunk_size, "guide", lambda w: w.mean(-1),
                                 return_log_weights)
    return _result(est, lw, return_log_weights)


def importance_sampled(model: Callable, guide: Callable, x: torch.Tensor, num_samples: int = 1000, *,
                       chunk_size: int | None = None, return_log_weights: bool = False):
    """log (1/K) sum_k w_k with z_k ~ q(z|x): the IWAE bound L_K, rising to log p(x) as K grows."""
    est, lw = _log_weight_matrix(model, guide, x, num_samples, chunk_size, "guide", _log_mean_exp,
                                 return_log_weights)
    return _result(est, lw, return_log_weights)


def exact(model: Callable, guide: Callable, x: torch.Tensor, num_samples: int = 1, *,
          chunk_size: int | None = None, return_log_weights: bool = False):
    """log p(x) exactly: the observed sites' log-probability of a model with no latent site, or
    ``log_marginal(x)`` where the model defines it. K is irrelevant; log_weights repeat the value K times."""
    owner, _ = _prepare(model, x, num_samples)
    if owner is not None and hasattr(owner, "log_marginal"):
        with torch.no_grad():
            est = torch.cat([owner.log_marginal(x[r]).to(torch.float64).cpu()
                             for r in _chunks(x.shape[0], chunk_size or 1000)])
    else:
        if owner is not None and getattr(owner, "has_latents", False):
            raise DGMError("the exact estimator needs a model without latent sample sites or with log_marginal(x)")
        est, _ = _log_weight_matrix(model, guide, x, 1, chunk_size, "guide", lambda w: w[:, 0], False)
    lw = est[:, None].expand(-1, num_samples) if return_log_weights else None
    return _result(est, lw, return_log_weights)


ESTIMATORS: dict[str, Callable] = {
    "naive_monte_carlo": naive_monte_carlo,
    "elbo": elbo,
    "importance_sampled": importance_sampled,
    "exact": exact,
}
