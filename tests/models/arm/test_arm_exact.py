"""Exact log p(x) of the ARMs through the evaluation layer: ``evaluation.estimators.exact`` (which uses
the model's chunked ``log_marginal``) equals the observed site's log-probability in the Pyro trace
(the estimators' generic path for models with an empty guide) and the one-pass ``log_prob``."""
from __future__ import annotations

import pytest
import torch

import models.arm.autoregressive as autoregressive
from data import load_dataset
from evaluation.estimators import exact
from inference.objectives.elbo import AnalyticKLTrace_ELBO
from inference.objectives.importance import log_weights
from tests.models.arm.arm_testing import ARMS, build


@pytest.mark.parametrize("name", ARMS)
def test_exact_estimator_matches_the_trace_and_log_prob(name, monkeypatch):
    model = build(name, "digits", dtype=torch.float32, likelihood="logistic_mixture")
    x = load_dataset("digits").split("test")[:40]
    assert model.has_latents is False
    monkeypatch.setattr(autoregressive, "CHUNK", 16)  # log_marginal must stitch its chunks correctly
    est, lw = exact(model.model, model.guide, x, num_samples=3, return_log_weights=True)
    assert est.dtype == torch.float64 and est.shape == (40,) and lw.shape == (40, 3)
    with torch.no_grad():
        traced = log_weights(model.model, model.guide, x, 1)[0].double()  # empty guide: log w = log p(x)
        direct = model.log_prob(x).double()
    assert torch.allclose(est, traced, rtol=1e-6) and torch.allclose(est, direct, rtol=1e-6)
    assert (est < 0).all() and torch.isfinite(est).all()


def test_training_objective_is_exact_negative_log_likelihood():
    """Our ELBO on a model without latents: recon = log p(x), KL = 0, loss = -sum log p(x)."""
    model = build("pixelcnn", "binarized_digits")
    x = load_dataset("binarized_digits").split("val")[:10].double()
    objective = AnalyticKLTrace_ELBO(num_particles=1, max_plate_nesting=1)
    loss = objective.differentiable_loss(model.model, model.guide, x)
    log_p = model.log_prob(x)
    assert torch.allclose(loss, -log_p.sum()) and float(objective.components["kl"]) == 0.0
    assert torch.allclose(objective.components["recon"], log_p.sum().detach())
