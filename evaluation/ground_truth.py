"""Experiments against a known log p(x) (probabilistic PCA): shared by the tests and the README figures.

    estimator_errors_vs_k      mean over examples of (estimate - log p(x)) for each estimator and K
    naive_error_by_dimension   mean of log p(x) - naive MC estimate at fixed K, per latent dimension L

Each returns means with their standard errors over examples (nats); log p(x) is PPCA's closed form.
"""
from __future__ import annotations

from typing import Sequence

import torch

from evaluation.diagnostics import standard_error
from evaluation.estimators import elbo, importance_sampled, naive_monte_carlo
from models.ppca import PPCA


def spoil_diagonal_guide(model: PPCA, shift: float = 0.3, log_scale: float = -0.4, seed: int = 7) -> PPCA:
    """Make the diagonal guide poorer than the mean-field optimum: shifted means (N(0, shift^2) per
    dimension) and scales multiplied by exp(log_scale) (too narrow, like an over-confident encoder)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        model.enc_bias += shift * torch.randn(model.latent_dim, generator=gen, dtype=model.enc_bias.dtype)
        model.enc_log_scale += log_scale
    return model


def estimator_errors_vs_k(model: PPCA, x: torch.Tensor, ks: Sequence[int], seed: int = 0
                          ) -> dict[str, list[tuple[int, float, float]]]:
    """{label: [(K, mean(estimate - log p(x)), SE), ...]} for naive MC, ELBO and IS (diagonal guide), and
    IS with the exact posterior as guide (zero error for every K)."""
    with torch.no_grad():
        truth = model.log_marginal(x).to(torch.float64)
    runs = {"naive_monte_carlo": (naive_monte_carlo, model.guide),
            "elbo": (elbo, model.diagonal_guide),
            "importance_sampled": (importance_sampled, model.diagonal_guide),
            "importance_sampled (exact posterior)": (importance_sampled, model.exact_guide)}
    out: dict[str, list[tuple[int, float, float]]] = {}
    for i, (label, (estimator, guide)) in enumerate(runs.items()):
        for k in ks:
            torch.manual_seed(seed + 1000 * i + k)
            error = estimator(model.model, guide, x, k) - truth
            out.setdefault(label, []).append((k, float(error.mean()), standard_error(error)))
    return out


def naive_error_by_dimension(dims: Sequence[int] = (1, 2, 5, 10, 20, 50), num_samples: int = 1000, n: int = 200,
                             data_dim: int = 60, weight_scale: float = 0.4, seed: int = 0
                             ) -> dict[int, tuple[float, float]]:
    """{L: (mean of log p(x) - naive MC estimate, SE)} on PPCAs with W_ij ~ N(0, weight_scale^2), D = data_dim."""
    out = {}
    for latent in dims:
        torch.manual_seed(seed + latent)
        model = PPCA.random(data_dim=data_dim, latent_dim=latent, weight_scale=weight_scale, seed=seed + latent)
        x = model.sample(n)
        with torch.no_grad():
            error = model.log_marginal(x) - naive_monte_carlo(model.model, model.guide, x, num_samples)
        out[latent] = (float(error.mean()), standard_error(error))
    return out
