"""The VAE: shapes for every architecture and data set, likelihood heads, sampling, active units."""
from __future__ import annotations

import pyro.poutine as poutine
import pytest
import torch

from core.errors import DGMError
from data.specs import DATASETS
from models.likelihoods import LIKELIHOODS, likelihood
from models.registry import MODELS
from models.vae import VAE, VAEConfig, active_units


@pytest.mark.parametrize("arch", ["mlp", "conv"])
@pytest.mark.parametrize("dataset", ["binarized_digits", "digits", "binarized_mnist", "mnist"])
def test_model_and_guide_shapes(arch: str, dataset: str) -> None:
    spec = DATASETS[dataset]
    vae = VAE(VAEConfig(latent_dim=3, hidden=(16,), arch=arch), spec)
    x = torch.randint(0, spec.levels, (5, *spec.shape)).float()
    guide = poutine.trace(vae.guide).get_trace(x)
    model = poutine.trace(poutine.replay(vae.model, trace=guide)).get_trace(x)
    assert guide.nodes["z"]["value"].shape == (5, 3)
    assert model.nodes["x"]["fn"].event_shape == spec.shape and model.nodes["x"]["fn"].batch_shape == (5,)
    assert vae.sample(4).shape == (4, *spec.shape) and vae.sample(4, mean=True).shape == (4, *spec.shape)
    assert set(vae.sample(4).unique().tolist()) <= set(range(spec.levels))


@pytest.mark.parametrize("name", sorted(n for n, h in LIKELIHOODS.items() if not h.dequantized))
def test_each_likelihood_sums_to_one_over_a_pixels_levels(name: str) -> None:
    spec = DATASETS["binarized_digits"] if name == "bernoulli" else DATASETS["digits"]
    head = likelihood(name, spec)
    params = torch.randn(2, spec.shape[0] * head.params_per_pixel(spec.levels), *spec.shape[1:], dtype=torch.float64)
    total = torch.zeros(2, *spec.shape, dtype=torch.float64)
    base = head.distribution(params, spec).base_dist
    for level in range(spec.levels):
        total += base.log_prob(torch.full((2, *spec.shape), float(level), dtype=torch.float64)).exp()
    torch.testing.assert_close(total, torch.ones_like(total))
    mean = head.mean(params, spec)
    levels = torch.arange(spec.levels, dtype=torch.float64)
    expected = sum(base.log_prob(torch.full_like(mean, float(v))).exp() * v for v in levels)
    torch.testing.assert_close(mean, expected)


def test_bernoulli_refuses_multilevel_data_naming_what_it_accepts() -> None:
    with pytest.raises(DGMError, match="cannot represent mnist.*accepts: binarized_digits, binarized_mnist"):
        VAE(VAEConfig(likelihood="bernoulli"), DATASETS["mnist"])


def test_check_data_refuses_values_outside_the_support() -> None:
    vae = VAE(VAEConfig(latent_dim=2, hidden=(8,)), DATASETS["binarized_digits"])
    with pytest.raises(DGMError, match="integers in 0..1"):
        vae.check_data(torch.full((2, 1, 8, 8), 3.0))
    with pytest.raises(DGMError, match="shape"):
        vae.check_data(torch.zeros(2, 64))


def test_active_units_counts_latents_whose_posterior_mean_varies() -> None:
    vae = VAE(VAEConfig(latent_dim=4, hidden=(8,)), DATASETS["binarized_digits"])
    x = torch.bernoulli(torch.full((200, 1, 8, 8), 0.4))
    with torch.no_grad():
        last = vae.encoder.net[-1]
        last.weight.zero_()
        last.bias.zero_()
        last.weight[0, :] = 1.0  # only latent 0's mean depends on x
    assert active_units(vae, x) == 1


def test_invalid_options() -> None:
    with pytest.raises(DGMError, match="latent-dim"):
        VAEConfig(latent_dim=0).validate()
    with pytest.raises(DGMError, match="warmup"):
        VAEConfig(objective="iwae", kl_warmup_epochs=2).validate()


def test_registered() -> None:
    assert MODELS["vae"].config_cls is VAEConfig and MODELS["vae"].trainer == "svi"
