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


# ---- the closed-form maximum-likelihood fit (Tipping & Bishop 1999) -------------------------------------
def _mean_log_marginal_and_gradient(model: PPCA, x: torch.Tensor) -> tuple[float, list[torch.Tensor]]:
    model.zero_grad()
    value = model.log_marginal(x).mean()
    value.backward()
    return float(value.detach()), [p.grad.clone() for p in (model.weight, model.bias, model.log_noise)]


def test_closed_form_fit_is_the_maximum_of_the_exact_marginal():
    """On real vectors the fit returns the mean log p(x) it reaches, the gradient there is ~0, a perturbation of
    any parameter lowers it, and SVI (Adam on the exact marginal) from the default start does not beat it."""
    truth = PPCA.random(data_dim=8, latent_dim=2, weight_scale=1.0, noise=0.5, seed=1)
    x = truth.sample(400)
    model = PPCA.vectors(PPCAConfig(latent_dim=2, fit="closed_form"), 8).double()
    assert model.fits_in_closed_form
    reached = model.fit_closed_form(x)
    value, grads = _mean_log_marginal_and_gradient(model, x)
    assert reached == pytest.approx(value, rel=1e-10, abs=1e-9)
    assert max(float(g.abs().max()) for g in grads) < 1e-8
    with torch.no_grad():
        for param in (model.weight, model.bias, model.log_noise):
            for delta in (-0.02, 0.02):
                param += delta
                assert float(model.log_marginal(x).mean()) < value
                param -= delta
    svi = PPCA.vectors(PPCAConfig(latent_dim=2), 8).double()
    optimizer = torch.optim.Adam([svi.weight, svi.bias, svi.log_noise], lr=0.05)
    for _ in range(600):
        optimizer.zero_grad()
        (-svi.log_marginal(x).mean()).backward()
        optimizer.step()
    with torch.no_grad():
        assert float(svi.log_marginal(x).mean()) <= value + 1e-6
        assert float(svi.log_marginal(x).mean()) > value - 0.05  # SVI gets close: the same maximum


def test_closed_form_fit_of_bin_centres_is_exact_for_images():
    """--images centres: log p is closed form at x + 1/2, the fit is its maximum (gradient ~0) and the exact
    estimator applies; the dequantized fit maximises E_u log p(x + u), its returned value checked by Monte Carlo."""
    torch.manual_seed(0)
    spec = DatasetSpec("toy4", (1, 2, 2), 5, (0, 0, 0), "four pixels, five levels")
    x = torch.randint(0, 5, (300, 1, 2, 2)).float()
    x[:, 0, 0, 1] = x[:, 0, 0, 0]  # correlated pixels
    centres = PPCA(PPCAConfig(latent_dim=1, images="centres", fit="closed_form"), spec).double()
    assert centres.has_log_marginal and not centres.discrete_likelihood
    reached = centres.fit_closed_form(x)
    value, grads = _mean_log_marginal_and_gradient(centres, x)
    assert reached == pytest.approx(value, rel=1e-10)
    assert max(float(g.abs().max()) for g in grads) < 1e-7
    torch.testing.assert_close(exact(centres.model, centres.guide, x).mean(), torch.tensor(value, dtype=torch.float64))
    dequantized = PPCA(PPCAConfig(latent_dim=1, fit="closed_form"), spec).double()
    assert not dequantized.has_log_marginal and dequantized.discrete_likelihood
    bound = dequantized.fit_closed_form(x)
    with torch.no_grad():
        flat = dequantized.marginal()
        draws = torch.stack([flat.log_prob(x.reshape(300, -1).double() + torch.rand(300, 4, dtype=torch.float64))
                             for _ in range(200)])
    assert float(draws.mean()) == pytest.approx(bound, abs=4 * float(draws.mean(1).std()) + 1e-3)
    # the exact guide's ELBO is that bound, so the closed form beats a perturbed fit's ELBO too
    torch.manual_seed(1)
    fitted = float(elbo(dequantized.model, dequantized.guide, x, 200).mean())
    with torch.no_grad():
        dequantized.weight *= 1.3
    torch.manual_seed(1)
    assert float(elbo(dequantized.model, dequantized.guide, x, 200).mean()) < fitted


def test_random_rotation_keeps_the_likelihood_and_correlates_the_posterior():
    truth = PPCA.random(data_dim=6, latent_dim=3, weight_scale=1.0, noise=0.4, seed=2)
    x = truth.sample(300)
    principal = PPCA.vectors(PPCAConfig(latent_dim=3, guide="diagonal"), 6).double()
    rotated = PPCA.vectors(PPCAConfig(latent_dim=3, guide="diagonal", rotation="random"), 6).double()
    assert principal.fit_closed_form(x) == pytest.approx(rotated.fit_closed_form(x), rel=1e-12)
    with torch.no_grad():
        torch.testing.assert_close(principal.log_marginal(x), rotated.log_marginal(x))
        assert float(principal.kl_to_posterior(x).max()) < 1e-8  # orthogonal columns: the mean field is exact
        assert float(rotated.kl_to_posterior(x).mean()) > 1e-3


def test_closed_form_fit_from_the_command_line(tmp_path: Path, capsys):
    """--fit closed_form: one epoch writes a normal run directory whose validation ELBO beats 20 SVI epochs'."""
    import csv

    from inference.train import main as train_main
    from tests.conftest import cli

    runs = {}
    for name, options in (("closed", ["--fit", "closed_form", "--epochs", "1"]), ("svi", ["--epochs", "20", "--lr", "1e-2"])):
        out = tmp_path / name
        code, out_text, err = cli(train_main, ["ppca", "--dataset", "digits", "--latent-dim", "4", "--out", out,
                                               "--progress", "summary", *options], capsys)
        assert code == 0, err
        runs[name] = list(csv.DictReader((out / "metrics.csv").open()))
        assert {"config.json", "best.pt", "checkpoint.pt", "eval_test.json"} <= {p.name for p in out.iterdir()}
        assert "epoch 1  step" not in out_text and "trained epochs 1-" in out_text  # one summary line, no epoch rows
        assert ("closed-form maximum-likelihood fit" in out_text) == (name == "closed")
    assert len(runs["closed"]) == 1
    assert float(runs["closed"][0]["val_elbo"]) > max(float(r["val_elbo"]) for r in runs["svi"])
