"""The diagonal-to-full Gaussian KL against torch's full-to-full KL (an oracle) and its properties."""
from __future__ import annotations

import torch
from torch.distributions import MultivariateNormal, kl_divergence

from models.gaussian_kl import kl_diagonal_to_full


def _random_tril(dim: int, gen: torch.Generator) -> torch.Tensor:
    a = torch.randn(dim, dim, generator=gen, dtype=torch.float64)
    return torch.linalg.cholesky(a @ a.T + 0.5 * torch.eye(dim, dtype=torch.float64))


def test_matches_torch_full_covariance_kl_on_a_batch():
    gen = torch.Generator().manual_seed(0)
    dim = 6
    q_loc = torch.randn(4, dim, generator=gen, dtype=torch.float64)
    q_scale = torch.rand(4, dim, generator=gen, dtype=torch.float64) + 0.2
    p_loc = torch.randn(4, dim, generator=gen, dtype=torch.float64)
    tril = _random_tril(dim, gen)
    ours = kl_diagonal_to_full(q_loc, q_scale, p_loc, tril)
    oracle = kl_divergence(MultivariateNormal(q_loc, scale_tril=torch.diag_embed(q_scale)),
                           MultivariateNormal(p_loc, scale_tril=tril.expand(4, dim, dim)))
    assert ours.shape == (4,)
    torch.testing.assert_close(ours, oracle, rtol=1e-10, atol=1e-10)


def test_zero_only_for_identical_gaussians_and_positive_otherwise():
    gen = torch.Generator().manual_seed(1)
    loc = torch.randn(3, dtype=torch.float64)
    scale = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)
    assert abs(float(kl_diagonal_to_full(loc, scale, loc, torch.diag(scale)))) < 1e-12
    tril = _random_tril(3, gen)
    assert float(kl_diagonal_to_full(loc, scale, loc, tril)) > 0
