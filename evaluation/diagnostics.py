"""Diagnostics of importance weights and of differences between estimates.

Pareto k-hat per example from ArviZ's PSIS on the (N, K) log-weights (k-hat > 0.7: the estimate is
unreliable), and as the ELPDData that ``az.plot_khat`` draws; effective sample size ESS = (sum w)^2 / sum w^2;
standard error of a mean over examples.
"""
from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import torch


def pareto_khat(log_weights: torch.Tensor) -> np.ndarray:
    """PSIS Pareto shape k-hat for each row of ``log_weights`` (N, K), via ``arviz.psislw``."""
    import arviz as az

    lw = log_weights.detach().to(torch.float64).cpu().numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, khat = az.psislw(lw, reff=1.0)
    return np.asarray(khat, dtype=np.float64).reshape(lw.shape[0])


def effective_sample_size(log_weights: torch.Tensor) -> torch.Tensor:
    """ESS_n = (sum_k w_nk)^2 / sum_k w_nk^2 for each example, from log-weights (N, K)."""
    lw = log_weights.to(torch.float64)
    return torch.exp(2 * torch.logsumexp(lw, -1) - torch.logsumexp(2 * lw, -1))


def standard_error(values: torch.Tensor) -> float:
    """Standard error of the mean over examples: s / sqrt(N) (0 for a single example)."""
    v = values.to(torch.float64)
    return float(v.std(unbiased=True) / math.sqrt(v.numel())) if v.numel() > 1 else 0.0


def bootstrap_difference(a: torch.Tensor, b: torch.Tensor, num_resamples: int = 2000, level: float = 0.95,
                         seed: int = 0) -> tuple[float, float, float]:
    """Mean of a - b over the same examples with a percentile bootstrap interval (paired resampling)."""
    if a.shape != b.shape:
        raise ValueError("paired bootstrap needs estimates on the same examples")
    diff = (a - b).to(torch.float64)
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, diff.numel(), (num_resamples, diff.numel()), generator=gen)
    means = diff[idx].mean(-1)
    alpha = (1 - level) / 2
    low, high = torch.quantile(means, torch.tensor([alpha, 1 - alpha], dtype=torch.float64))
    return float(diff.mean()), float(low), float(high)


def khat_data(khat: np.ndarray, num_samples: int) -> Any:
    """Per-example k-hat as the ``arviz.ELPDData`` that ``az.plot_khat`` takes (an array there is
    deprecated): ``pareto_k`` over the dimension ``example`` and ArviZ's own threshold for ``num_samples``
    draws, ``good_k = min(1 - 1 / log10(S), 0.7)``."""
    import arviz as az
    import xarray as xr

    values = np.asarray(khat, dtype=np.float64).reshape(-1)
    good_k = min(1 - 1 / math.log10(num_samples), 0.7) if num_samples > 10 else 0.7
    pareto_k = xr.DataArray(values, dims=["example"], coords={"example": np.arange(values.size)})
    return az.ELPDData(data=[num_samples, values.size, pareto_k, good_k],
                       index=["n_samples", "n_data_points", "pareto_k", "good_k"])
