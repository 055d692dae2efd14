"""The estimators against probabilistic PCA, where log p(x), p(z | x) and KL(q || p(z | x)) are closed-form.

Tolerances come from the estimators' own standard errors over examples (z-scores), never guesses.
"""
from __future__ import annotations

import math

import pytest
import torch

from evaluation.diagnostics import standard_error
from evaluation.estimators import elbo, exact, importance_sampled
from evaluation.ground_truth import naive_error_by_dimension, spoil_diagonal_guide
from models.ppca import PPCA

Z = 4.0  # z-score of every statistical assertion: a false failure has probability ~6e-5


@pytest.fixture(scope="module")
def setup() -> tuple[PPCA, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = spoil_diagonal_guide(PPCA.random(data_dim=12, latent_dim=4, weight_scale=0.7, seed=1))
    x = model.sample(400)
    with torch.no_grad():
        return model, x, model.log_marginal(x)


@pytest.mark.parametrize("num_samples", [1, 2, 10, 100, 1000])
def test_exact_posterior_guide_makes_is_and_elbo_exact_for_every_k(setup, num_samples):
    """With q = p(z | x) every weight is p(x, z) / p(z | x) = p(x): IS and ELBO equal log p(x) (float64 precision)."""
    model, x, log_px = setup
    est, lw = importance_sampled(model.model, model.exact_guide, x, num_samples, return_log_weights=True)
    assert est.dtype == torch.float64 and est.shape == (400,) and lw.shape == (400, num_samples)
    assert float((est - log_px).abs().max()) < 1e-9
    assert float((elbo(model.model, model.exact_guide, x, num_samples) - log_px).abs().max()) < 1e-9


def test_exact_posterior_guide_in_float32_agrees_to_float32_precision():
    model = PPCA.random(data_dim=12, latent_dim=4, weight_scale=0.7, seed=1, dtype=torch.float32)
    x = model.sample(100)
    with torch.no_grad():
        truth = model.double().log_marginal(x.double())
    model.float()
    est = importance_sampled(model.model, model.exact_guide, x, 50)
    # float32 sums of 12 + 4 log-densities of magnitude ~20: a few ulps of 1e-6 relative each
    assert float(((est - truth).abs() / truth.abs()).max()) < 2e-6


def test_exact_estimator_is_the_closed_form(setup):
    model, x, log_px = setup
    torch.testing.assert_close(exact(model.model, model.guide, x), log_px.to(torch.float64), rtol=0, atol=1e-12)


def test_elbo_mean_is_log_px_minus_the_closed_form_kl(setup):
    """E_q[log w] = log p(x) - KL(q || p(z | x)), with KL between a diagonal and a full Gaussian in closed form."""
    model, x, log_px = setup
    torch.manual_seed(1)
    with torch.no_grad():
        kl = model.kl_to_posterior(x)
    residual = elbo(model.model, model.diagonal_guide, x, 10) - (log_px - kl)
    se = standard_error(residual)
    assert abs(float(residual.mean())) < Z * se
    assert float(kl.mean()) > 50 * se  # the KL term is far above the noise: a wrong KL would fail


def test_importance_sampled_rises_towards_log_px_with_k(setup):
    """The gap log p(x) - L_K shrinks as K grows (each step beyond Z standard errors), and never goes
    significantly below 0 (L_K is a lower bound in expectation)."""
    model, x, log_px = setup
    torch.manual_seed(2)
    gaps, ses = [], []
    for k in (1, 10, 100, 1000):
        gap = log_px - importance_sampled(model.model, model.diagonal_guide, x, k)
        gaps.append(float(gap.mean()))
        ses.append(standard_error(gap))
    for (g1, s1), (g2, s2) in zip(zip(gaps, ses), zip(gaps[1:], ses[1:])):
        assert g1 - g2 > Z * math.hypot(s1, s2), (gaps, ses)
    assert gaps[-1] > -Z * ses[-1]


def test_naive_monte_carlo_error_grows_with_latent_dimension():
    """Prior samples rarely land where p(z | x) is: the error grows with L (1..50) at fixed K."""
    errors = naive_error_by_dimension()
    dims = sorted(errors)
    for small, large in zip(dims, dims[1:]):
        (e1, s1), (e2, s2) = errors[small], errors[large]
        assert e2 - e1 > Z * math.hypot(s1, s2) or (small <= 2 and e2 > e1), errors
    assert errors[1][0] < 0.05 and errors[50][0] > 50, errors  # fine in 1-D, hopeless in 50-D
