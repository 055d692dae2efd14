"""log p(x) by quadrature over a 2-D latent grid: against PPCA's closed form, then as the ground truth
for importance sampling in a VAE with a 2-D latent space trained (briefly) on binarized digits."""
from __future__ import annotations

import math

import pytest
import torch

from core.errors import DGMError
from data import load_dataset
from evaluation.diagnostics import pareto_khat
from evaluation.estimators import importance_sampled
from evaluation.quadrature import log_marginal_grid
from models.ppca import PPCA


def test_quadrature_equals_the_closed_form_of_a_2d_ppca():
    model = PPCA.random(data_dim=10, latent_dim=2, weight_scale=0.9, noise=0.5, seed=4)
    x = model.sample(30)
    with torch.no_grad():
        truth = model.log_marginal(x)
    assert float((log_marginal_grid(model.model, x, limit=6.0, steps=121) - truth).abs().max()) < 1e-9


def test_quadrature_refuses_models_it_cannot_integrate():
    model = PPCA.random(data_dim=10, latent_dim=4, seed=0)
    with pytest.raises(DGMError, match="L <= 3"):
        log_marginal_grid(model.model, model.sample(2))
    with pytest.raises(DGMError, match="exactly one latent site 'w'"):
        log_marginal_grid(model.model, model.sample(2), site="w")


@pytest.fixture(scope="module")
def vae_2d():
    """A VAE with a 2-D latent space and a Bernoulli decoder, trained for ~3 s on binarized digits."""
    from inference.objectives.elbo import AnalyticKLTrace_ELBO
    from models.vae import VAE, VAEConfig

    torch.manual_seed(0)
    data = load_dataset("binarized_digits")
    model = VAE(VAEConfig(latent_dim=2, hidden=(64,)), data.spec)
    loss = AnalyticKLTrace_ELBO(max_plate_nesting=1)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    train = data.split("train")
    for epoch in range(15):
        for batch in torch.randperm(train.shape[0]).split(128):
            optimizer.zero_grad()
            (loss.differentiable_loss(model.model, model.guide, train[batch]) / len(batch)).backward()
            optimizer.step()
    return model.eval(), data.split("test")[:100]


def test_importance_sampling_agrees_with_quadrature_on_a_2d_vae(vae_2d):
    """Where k-hat < 0.7, IS at K = 5000 agrees with quadrature within max(0.05 nats, 3 SE):

    - on average over those examples, SE the Monte-Carlo standard error of the mean difference;
    - per example, SE_n the delta-method standard error of log(mean w), for all but 5% of them (a
      correct estimator exceeds 3 SE_n on ~0.3-1% of examples: its errors are skewed to the left; an
      estimator or quadrature off by 0.1 nats would exceed it on nearly all).
    The quadrature itself is checked at two resolutions."""
    model, x = vae_2d
    fine = log_marginal_grid(model.model, x, limit=5.0, steps=201)
    coarse = log_marginal_grid(model.model, x, limit=5.0, steps=141)
    # the two grids agree to the float32 rounding of the decoder (~1e-4 nats), 500 times below the tolerance
    assert float((fine - coarse).abs().max()) < 1e-3
    torch.manual_seed(1)
    k = 5000
    est, lw = importance_sampled(model.model, model.guide, x, k, return_log_weights=True)
    w = (lw - lw.max(-1, keepdim=True).values).exp()
    se = (w / w.mean(-1, keepdim=True)).std(-1) / math.sqrt(k)
    reliable = torch.as_tensor(pareto_khat(lw) < 0.7)
    assert reliable.float().mean() > 0.9, "too few reliable examples for the test to mean anything"
    error, se = (est - fine)[reliable], se[reliable]
    se_mean = float(se.pow(2).sum().sqrt()) / error.numel()
    assert abs(float(error.mean())) <= max(0.05, 3 * se_mean), (float(error.mean()), se_mean)
    within = error.abs() <= torch.clamp(3 * se, min=0.05)
    assert float(within.float().mean()) >= 0.95, error[~within]
