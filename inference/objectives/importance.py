"""Per-example importance log-weights of any Pyro model/guide pair, vectorised over samples.

For data x_1..x_N and K samples per example:

    proposal="guide":  z_nk ~ q(z | x_n),  log w_nk = log p(x_n, z_nk) - log q(z_nk | x_n)
    proposal="prior":  z_nk ~ p(z),        log w_nk = log p(x_n | z_nk)

Samples are drawn in one pass by an outer ``pyro.plate`` of size K left of the model's plates.
Every sample site must sit inside ``pyro.plate("data", N)`` so that its log-probability splits
into per-example terms. Returns log w of shape (K, N), the training dtype (callers accumulate in
float64).
"""
from __future__ import annotations

from typing import Any, Callable, Literal

import pyro
import pyro.poutine as poutine
from pyro.poutine.util import site_is_subsample
import torch

from core.errors import DGMError

DATA_PLATE = "data"
_PARTICLES = "_importance_particles"


def _vectorized(fn: Callable, num_samples: int, dim: int) -> Callable:
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        with pyro.plate(_PARTICLES, num_samples, dim=dim):
            return fn(*args, **kwargs)

    return wrapped


def per_example_log_prob(trace: Any, num_samples: int, num_examples: int, particle_dim: int,
                         observed: bool | None = None) -> torch.Tensor:
    """Sum of the sample sites' log-probabilities as a (K, N) tensor.

    ``observed``: True for observed sites only, False for latent sites only, None for all.
    """
    trace.compute_log_prob()
    total = None
    for name, site in trace.nodes.items():
        if site["type"] != "sample" or site_is_subsample(site):
            continue
        if observed is not None and site["is_observed"] != observed:
            continue
        frames = [f for f in site["cond_indep_stack"] if f.name == DATA_PLATE]
        if not frames:
            raise DGMError(f"sample site {name!r} is not inside pyro.plate({DATA_PLATE!r}, N): per-example "
                           "log-likelihoods need every per-example site in the data plate")
        log_prob = site["log_prob"]
        depth = -particle_dim
        log_prob = log_prob.reshape((1,) * max(0, depth - log_prob.dim()) + tuple(log_prob.shape))
        log_prob = log_prob.movedim((particle_dim, frames[0].dim), (0, 1))
        log_prob = log_prob.reshape(log_prob.shape[0], log_prob.shape[1], -1).sum(-1)
        log_prob = log_prob.expand(num_samples, num_examples)
        total = log_prob if total is None else total + log_prob
    if total is None:
        raise DGMError("the model has no sample sites to score")
    return total


def log_weights(model: Callable, guide: Callable, x: torch.Tensor, num_samples: int, *,
                proposal: Literal["guide", "prior"] = "guide", max_plate_nesting: int = 1) -> torch.Tensor:
    """log w of shape (K, N) for the N examples of ``x`` (see the module docstring)."""
    if num_samples < 1:
        raise DGMError(f"the number of samples K must be at least 1, got {num_samples}")
    dim = -(max_plate_nesting + 1)
    n = x.shape[0]
    if proposal == "prior":
        model_trace = poutine.trace(_vectorized(model, num_samples, dim)).get_trace(x)
        return per_example_log_prob(model_trace, num_samples, n, dim, observed=True)
    guide_trace = poutine.trace(_vectorized(guide, num_samples, dim)).get_trace(x)
    model_trace = poutine.trace(poutine.replay(_vectorized(model, num_samples, dim), trace=guide_trace)).get_trace(x)
    log_p = per_example_log_prob(model_trace, num_samples, n, dim)
    latent = [s for s in guide_trace.nodes.values()
              if s["type"] == "sample" and not s["is_observed"] and not site_is_subsample(s)]
    if not latent:
        return log_p
    return log_p - per_example_log_prob(guide_trace, num_samples, n, dim)
