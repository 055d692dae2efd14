"""VAE decoders for grey levels: the dequantized Gaussian (a density of x + u on the integer scale whose
bin integrals are the discrete probabilities) and the discretized logistic mixture, through the same
Pyro story and estimators."""
from __future__ import annotations

import math

import pyro
import pyro.poutine as poutine
import pytest
import torch

from core.errors import DGMError
from data.specs import DATASETS
from evaluation import elbo, importance_sampled
from models.dequantized import dequantized_gaussian, quantize
from models.likelihoods import likelihood
from models.vae import VAE, VAEConfig

SPEC = DATASETS["digits"]  # 17 levels


def normal_cdf(t: torch.Tensor) -> torch.Tensor:
    return 0.5 * (1 + torch.erf(t / math.sqrt(2)))


def test_bin_integrals_of_the_dequantized_gaussian_are_the_discrete_probabilities() -> None:
    """P(x = k) = int_0^1 p_int(k + u) du = Phi(((k+1)/L - m) / s) - Phi((k/L - m) / s): the Jacobian 1/L
    of the scaling is inside the density, so the bins' integrals need no correction."""
    levels = 17
    loc = torch.tensor([0.1, 0.5, 0.93], dtype=torch.float64).view(1, 3, 1)
    scale = torch.tensor([0.05, 0.2, 0.01], dtype=torch.float64).view(1, 3, 1)
    density = dequantized_gaussian(loc, scale, levels)
    nodes = (torch.arange(4000, dtype=torch.float64) + 0.5) / 4000  # midpoint rule on [0, 1)
    for k in range(levels):
        y = (k + nodes).view(-1, 1, 1, 1).expand(-1, 1, 3, 1)
        pixel_density = density.base_dist.log_prob(y).exp()  # (nodes, 1, 3, 1), per pixel
        integral = pixel_density.mean(0)
        expected = normal_cdf(((k + 1) / levels - loc) / scale) - normal_cdf((k / levels - loc) / scale)
        torch.testing.assert_close(integral, expected, atol=1e-6, rtol=1e-4)


def test_gaussian_head_story_has_uniform_noise_site_and_the_jacobian() -> None:
    vae = VAE(VAEConfig(latent_dim=3, hidden=(16,), likelihood="gaussian"), SPEC)
    x = torch.randint(0, SPEC.levels, (4, *SPEC.shape)).float()
    guide = poutine.trace(vae.guide).get_trace(x)
    model = poutine.trace(poutine.replay(vae.model, trace=guide)).get_trace(x)
    u = guide.nodes["u"]["value"]
    assert u.shape == x.shape and 0 <= u.min() and u.max() < 1
    torch.testing.assert_close(model.nodes["x"]["value"], x + u)
    # log p_int(x + u | z) = log N((x + u) / L; loc, scale) - D log L
    params = vae.decoder(guide.nodes["z"]["value"])
    loc, log_scale = params.unflatten(-3, (2, 1)).unbind(-4)
    unit = torch.distributions.Normal(torch.sigmoid(loc), log_scale.clamp_min(-9).exp())
    expected = unit.log_prob((x + u) / SPEC.levels).sum((-3, -2, -1)) - SPEC.dim * math.log(SPEC.levels)
    torch.testing.assert_close(model.nodes["x"]["fn"].log_prob(x + u), expected)
    # the noise site's KL term is exactly zero: log q(u) = log p(u)
    torch.testing.assert_close(model.nodes["u"]["fn"].log_prob(u), guide.nodes["u"]["fn"].log_prob(u))


@pytest.mark.parametrize("name", ["gaussian", "logistic_mixture"])
def test_grey_level_vae_bounds_order_and_samples_on_the_levels(name: str) -> None:
    pyro.set_rng_seed(0)
    vae = VAE(VAEConfig(latent_dim=2, hidden=(16,), likelihood=name, mixture_components=2), SPEC).double()
    x = torch.randint(0, SPEC.levels, (6, *SPEC.shape)).double()
    with torch.no_grad():
        lower = elbo(vae.model, vae.guide, x, num_samples=400)
        is_estimate = importance_sampled(vae.model, vae.guide, x, num_samples=400)
    assert lower.shape == (6,) and torch.isfinite(lower).all()
    assert (is_estimate >= lower - 1e-9).all()  # log-mean-exp of the weights >= their mean
    draws = vae.sample(5)
    assert draws.shape == (5, *SPEC.shape) and set(draws.unique().tolist()) <= set(range(SPEC.levels))
    mean = vae.sample(5, mean=True)
    assert mean.min() >= 0 and mean.max() <= SPEC.levels - 1


def test_logistic_mixture_head_has_3m_outputs_a_pixel() -> None:
    assert likelihood("logistic_mixture", SPEC, mixture_components=3).params_per_pixel(SPEC.levels) == 9
    vae = VAE(VAEConfig(latent_dim=2, hidden=(8,), likelihood="logistic_mixture", mixture_components=3), SPEC)
    assert vae.decoder(torch.zeros(1, 2)).shape == (1, 9, 8, 8)


def test_quantize_floors_and_clamps() -> None:
    y = torch.tensor([-0.3, 0.0, 3.99, 16.5, 17.2])
    assert quantize(y, 17).tolist() == [0.0, 0.0, 3.0, 16.0, 16.0]


def test_invalid_grey_level_options() -> None:
    with pytest.raises(DGMError, match="mixture-components"):
        VAEConfig(mixture_components=0).validate()
    with pytest.raises(DGMError, match="unknown likelihood"):
        likelihood("poisson", SPEC)
