"""Probabilistic PCA: closed forms against brute force, the dequantized image mode, bad input, training."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch.distributions import MultivariateNormal, Normal

from core.errors import DGMError
from data.specs import DatasetSpec
from evaluation.estimators import elbo, exact, importance_sampled
from models.ppca import PPCA, PPCAConfig
from models.registry import MODELS


@pytest.fixture(scope="module")
def ppca() -> PPCA:
    return PPCA.random(data_dim=7, latent_dim=3, weight_scale=0.8, noise=0.6, seed=3)


def test_registered_with_its_config():
    assert MODELS["ppca"].config_cls is PPCAConfig


def test_log_marginal_equals_the_full_covariance_gaussian(ppca: PPCA):
    x = ppca.sample(20)
    with torch.no_grad():
        cov = ppca.weight @ ppca.weight.T + ppca.noise ** 2 * torch.eye(7, dtype=torch.float64)
        oracle = MultivariateNormal(ppca.bias, covariance_matrix=cov).log_prob(x)
        torch.testing.assert_close(ppca.log_marginal(x), oracle, rtol=1e-12, atol=1e-10)


def test_posterior_is_bayes_rule(ppca: PPCA):
    """log p(z) + log p(y | z) - log p(z | y) = log p(y) for any z: the posterior is exact."""
    x = ppca.sample(5)
    with torch.no_grad():
        z = torch.randn(11, 5, 3, dtype=torch.float64)
        prior = Normal(0.0, 1.0).log_prob(z).sum(-1)
        like = Normal(z @ ppca.weight.T + ppca.bias, ppca.noise).log_prob(x).sum(-1)
        implied = prior + like - ppca.posterior(x).log_prob(z)
        torch.testing.assert_close(implied, ppca.log_marginal(x).expand(11, 5), rtol=1e-12, atol=1e-9)


def test_mean_field_guide_is_the_kl_minimiser(ppca: PPCA):
    """Moving any parameter of the mean-field optimum raises KL(q || p(z | y))."""
    x = ppca.sample(10)
    with torch.no_grad():
        best = ppca.kl_to_posterior(x).mean()
        for param in (ppca.enc_bias, ppca.enc_log_scale):
            for delta in (-0.05, 0.05):
                param += delta
                assert ppca.kl_to_posterior(x).mean() > best
                param -= delta


def test_real_vector_data_is_checked(ppca: PPCA):
    good = ppca.sample(3)
    for bad, fragment in ((good[:, :5], "shape (N, 7)"), (good.clone().fill_(math.nan), "finite"),
                          (good.long(), "float tensor")):
        with pytest.raises(DGMError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
            ppca.check_data(bad)


def test_latent_dim_larger_than_data_is_refused():
    with pytest.raises(DGMError, match="exceeds the data dimension"):
        PPCA.vectors(PPCAConfig(latent_dim=5), data_dim=4)


TOY = DatasetSpec("toy", (1, 1, 1), 5, (0, 0, 0), "one pixel, five levels")


def test_dequantized_mode_estimates_the_discrete_probability():
    """One pixel, L = 1: P(x) = Phi((x + 1 - s mu) / (s tau)) - Phi((x - s mu) / (s tau)), tau^2 = w^2 + sigma^2.
    IS over (u, z) with the exact z-posterior is naive MC over u alone: within 4 standard errors of
    log P(x) at K = 20000; the ELBO (dequantization bound E_u log p(x + u)) stays below it."""
    torch.manual_seed(0)
    model = PPCA(PPCAConfig(latent_dim=1), TOY).double()
    with torch.no_grad():
        model.weight.fill_(0.15)
        model.bias.fill_(0.45)
        model.log_noise.fill_(math.log(0.2))
    assert not model.has_log_marginal
    x = torch.tensor([0.0, 1.0, 2.0, 3.0, 4.0], dtype=torch.float64).reshape(5, 1, 1, 1)
    s, tau = 5.0, math.hypot(0.15, 0.2)
    std = Normal(torch.tensor(s * 0.45, dtype=torch.float64), torch.tensor(s * tau, dtype=torch.float64))
    exact_p = (std.cdf(x.flatten() + 1) - std.cdf(x.flatten())).log()
    est, lw = importance_sampled(model.model, model.guide, x, 20000, return_log_weights=True)
    w = (lw - lw.max(-1, keepdim=True).values).exp()
    se = (w / w.mean(-1, keepdim=True)).std(-1) / math.sqrt(20000)  # delta method, per example
    assert ((est - exact_p).abs() <= 4 * se + 1e-12).all(), (est, exact_p, se)
    assert (elbo(model.model, model.guide, x, 2000) < exact_p).all()
    with pytest.raises(DGMError, match="no closed-form"):
        exact(model.model, model.guide, x)


def test_dequantized_samples_are_images_of_the_data_set():
    model = PPCA(PPCAConfig(latent_dim=1), TOY)
    images = model.sample(50)
    assert images.shape == (50, 1, 1, 1)
    assert torch.equal(images, images.round()) and images.min() >= 0 and images.max() <= 4


def test_trains_and_evaluates_from_the_command_line(tmp_path: Path, capsys):
    """`inference.train ppca` on binarized digits: the ELBO of the exact guide is the dequantized log-likelihood."""
    from inference.train import main as train_main
    from tests.conftest import cli

    out = tmp_path / "ppca"
    code, _, err = cli(train_main, ["ppca", "--dataset", "binarized_digits", "--epochs", "2", "--lr", "1e-2",
                                    "--latent-dim", "3", "--out", out], capsys)
    assert code == 0, err
    import csv

    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert float(rows[1]["val_elbo"]) > float(rows[0]["val_elbo"])  # learning happens
    assert (out / "eval_test.json").is_file()
