"""Diagnostics: k-hat separates light from heavy tails, ESS and standard error formulas, the paired bootstrap."""
from __future__ import annotations

import math

import numpy as np
import torch

from evaluation.diagnostics import bootstrap_difference, effective_sample_size, pareto_khat, standard_error


def test_khat_is_small_for_light_and_large_for_heavy_tailed_weights():
    """Log-normal weights exp(sigma * eps): sigma = 0.5 has all moments (k-hat ~ 0), sigma = 3 is
    practically infinite-variance at K = 5000 (k-hat > 0.7)."""
    gen = torch.Generator().manual_seed(0)
    light = 0.5 * torch.randn(20, 5000, generator=gen, dtype=torch.float64)
    heavy = 3.0 * torch.randn(20, 5000, generator=gen, dtype=torch.float64)
    assert pareto_khat(light).shape == (20,)
    assert np.all(pareto_khat(light) < 0.5) and np.all(pareto_khat(heavy) > 0.7)


def test_effective_sample_size():
    assert torch.allclose(effective_sample_size(torch.zeros(3, 40, dtype=torch.float64)),
                          torch.full((3,), 40.0, dtype=torch.float64))
    one_dominates = torch.tensor([[0.0] + [-1000.0] * 9], dtype=torch.float64)
    assert float(effective_sample_size(one_dominates)) == 1.0


def test_standard_error_is_sd_over_root_n():
    values = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64)
    assert math.isclose(standard_error(values), float(values.std()) / 2.0)
    assert standard_error(torch.tensor([5.0])) == 0.0


def test_paired_bootstrap_removes_shared_noise():
    """b = a + 0.1 + small noise, a itself very noisy: the paired interval excludes 0 and holds 0.1."""
    gen = torch.Generator().manual_seed(0)
    a = 10 * torch.randn(500, generator=gen, dtype=torch.float64)
    b = a + 0.1 + 0.05 * torch.randn(500, generator=gen, dtype=torch.float64)
    mean, low, high = bootstrap_difference(b, a)
    assert low < 0.1 < high and low > 0 and math.isclose(mean, float((b - a).mean()))
    assert bootstrap_difference(a, a) == (0.0, 0.0, 0.0)
