"""The GAN as a Pyro story and its networks: shapes, scales, the observation model, clear errors."""
from __future__ import annotations

import math

import pyro
import pyro.poutine as poutine
import pytest
import torch

from core.errors import DGMError
from data.specs import DATASETS
from models.gan import GAN, GANConfig
from models.registry import model_spec
from inference.objectives.registry import objective_for

SPECS = [DATASETS["digits"], DATASETS["binarized_digits"], DATASETS["mnist"], DATASETS["binarized_mnist"]]


def tiny(arch: str = "mlp", **overrides) -> GANConfig:
    config = GANConfig(arch=arch, latent_dim=5, hidden=(16, 24), channels=4, **overrides)
    config.validate()
    return config


def test_registered_with_the_adversarial_trainer() -> None:
    spec = model_spec("gan")
    assert spec.trainer == "adversarial" and spec.config_cls is GANConfig


@pytest.mark.parametrize("arch", ["mlp", "dcgan"])
@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_networks_map_codes_to_images_and_images_to_one_number(arch: str, spec) -> None:
    torch.manual_seed(0)
    gan = GAN(tiny(arch), spec).eval()
    z = torch.randn(3, 2, 5)  # any leading batch shape, as vectorised particles need
    images = gan.generate(z)
    assert images.shape == (3, 2, *spec.shape)
    assert images.min() >= 0 and images.max() <= 1
    assert gan.discriminator(images.flatten(0, 1)).shape == (6,)


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_samples_live_on_the_data_scale(spec) -> None:
    torch.manual_seed(0)
    gan = GAN(tiny("dcgan"), spec).eval()
    x = gan.sample(7)
    assert x.shape == (7, *spec.shape)
    assert torch.equal(x, x.round()) and x.min() >= 0 and x.max() <= spec.levels - 1
    gan.check_data(x)  # the model's own samples are valid data for it
    mean = gan.sample(7, mean=True)
    assert mean.min() >= 0 and mean.max() <= spec.levels - 1


def test_story_is_z_from_the_prior_and_binomial_pixels() -> None:
    """log p(x, z) of the trace equals log N(z; 0, I) + sum_d log Binomial(x_d; levels - 1, G(z)_d)."""
    spec = DATASETS["digits"]
    torch.manual_seed(0)
    gan = GAN(tiny(), spec).eval()
    x = torch.randint(0, spec.levels, (4, *spec.shape)).float()
    trace = poutine.trace(gan.model).get_trace(x)
    z = trace.nodes["z"]["value"]
    assert z.shape == (4, 5) and trace.nodes["x"]["is_observed"]
    expected_z = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
    probs = gan.generate(z)
    expected_x = torch.distributions.Binomial(spec.levels - 1, probs=probs).log_prob(x).flatten(1).sum(-1)
    assert torch.allclose(trace.nodes["z"]["fn"].log_prob(z), expected_z, atol=1e-5)
    assert torch.allclose(trace.nodes["x"]["fn"].log_prob(x), expected_x, atol=1e-3)


def test_binary_data_get_bernoulli_pixels() -> None:
    spec = DATASETS["binarized_digits"]
    torch.manual_seed(0)
    gan = GAN(tiny(), spec).eval()
    x = torch.randint(0, 2, (3, *spec.shape)).float()
    trace = poutine.trace(gan.model).get_trace(x)
    p = gan.generate(trace.nodes["z"]["value"])
    expected = (x * p.log() + (1 - x) * (1 - p).log()).flatten(1).sum(-1)
    assert torch.allclose(trace.nodes["x"]["fn"].log_prob(x), expected, atol=1e-3)


def test_guide_is_the_prior_so_importance_sampling_is_naive_monte_carlo() -> None:
    """With q(z | x) = p(z), log w = log p(x | z): both estimators see the same numbers for the same noise."""
    from evaluation.estimators import importance_sampled, naive_monte_carlo

    spec = DATASETS["binarized_digits"]
    torch.manual_seed(0)
    gan = GAN(tiny(), spec).eval()
    x = torch.randint(0, 2, (5, *spec.shape)).float()
    pyro.set_rng_seed(3)
    naive = naive_monte_carlo(gan.model, gan.guide, x, num_samples=16)
    pyro.set_rng_seed(3)
    iw = importance_sampled(gan.model, gan.guide, x, num_samples=16)
    assert torch.isfinite(naive).all()
    assert torch.allclose(naive, iw, atol=1e-6)
    assert (naive <= 0).all()  # log-probabilities of discrete data


def test_latent_size_mismatch_with_a_checkpoint_is_named() -> None:
    spec = DATASETS["digits"]
    saved = GAN(tiny(), spec).state_dict()
    other = GAN(GANConfig(arch="mlp", latent_dim=7, hidden=(16, 24)), spec)
    with pytest.raises(DGMError, match="latent_dim 5.*latent_dim 7"):
        other.load_state_dict(saved)


def test_codes_of_the_wrong_size_are_refused() -> None:
    gan = GAN(tiny(), DATASETS["digits"]).eval()
    with pytest.raises(DGMError, match="3 dimensions.*latent_dim 5"):
        gan.generate(torch.zeros(2, 3))


@pytest.mark.parametrize("field, value, message", [
    ("loss", "wasserstein", "unknown GAN loss 'wasserstein'"),
    ("latent_dim", 0, "--latent-dim"),
    ("adam_betas", (0.5,), "--adam-betas"),
    ("d_steps", 0, "--d-steps"),
    ("val_samples", -1, "--val-samples"),
    ("d_dropout", 1.0, "--d-dropout"),
])
def test_bad_options_are_one_line_errors(field: str, value, message: str) -> None:
    config = GANConfig(**{field: value})
    with pytest.raises(DGMError, match=message):
        config.validate()


def test_the_svi_objective_is_refused() -> None:
    with pytest.raises(DGMError, match="adversarial trainer"):
        objective_for(GAN(tiny(), DATASETS["digits"]))


def test_dcgan_discriminator_outputs_depend_on_each_example_alone() -> None:
    """No batch statistics in D: the per-example gradient penalty of WGAN-GP is well defined."""
    spec = DATASETS["mnist"]
    torch.manual_seed(0)
    gan = GAN(tiny("dcgan", d_dropout=0.0), spec).train()  # train mode: batch norm would use batch statistics
    x = torch.rand(4, *spec.shape)
    assert torch.allclose(gan.discriminator(x)[:1], gan.discriminator(x[:1]), atol=1e-6)
    assert math.prod(spec.shape) == 784


def test_gaussian_observation_is_the_dequantized_density_of_the_generators_image() -> None:
    """(x + u) / L ~ N(G(z), s^2): log p_int(x + u | z) = sum log N((x + u)/L; G(z), s^2) - D log L, with the
    noise u a latent site whose guide is its prior (so its ELBO term is zero)."""
    spec = DATASETS["digits"]
    gan = GAN(tiny(observation="gaussian", obs_sigma=0.07), spec)
    x = torch.randint(0, spec.levels, (3, *spec.shape)).float()
    guide = poutine.trace(gan.guide).get_trace(x)
    model = poutine.trace(poutine.replay(gan.model, trace=guide)).get_trace(x)
    z, u = guide.nodes["z"]["value"], guide.nodes["u"]["value"]
    assert 0 <= u.min() and u.max() < 1
    unit = torch.distributions.Normal(gan.generate(z), 0.07)
    expected = unit.log_prob((x + u) / spec.levels).sum((-3, -2, -1)) - spec.dim * math.log(spec.levels)
    torch.testing.assert_close(model.nodes["x"]["fn"].log_prob(model.nodes["x"]["value"]), expected)
    draws = gan.sample(4)
    assert set(draws.unique().tolist()) <= set(range(spec.levels))


def test_gaussian_observation_options_are_checked() -> None:
    with pytest.raises(DGMError, match="sigma must be a positive"):
        tiny(observation="gaussian", obs_sigma=0.0)
    with pytest.raises(DGMError, match="unknown --observation"):
        tiny(observation="poisson")
