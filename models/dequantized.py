"""Continuous observation models of discrete images through uniform dequantization.

A decoder with a continuous density p(y | z) on images scaled to [0, 1) becomes a model of the
discrete data x in 0..L-1 (L levels) by observing the dequantized value on the integer scale,

    y = x + u,   u ~ U[0, 1)^D,              p_int(x + u | z) = p((x + u) / L | z) / L^D,

and by making u a latent site of the story whose guide is the same uniform. Every estimator then
bounds or estimates log P(x | ...) of the *discrete* data (conventions, "Units and signs"):

    log P(x) = log E_{u ~ U}[p_int(x + u)]  >=  E_u[log p_int(x + u)]           (nats)

and the L^D Jacobian (D log L nats) is part of the observation's log-density, so no caller adds it.
The ELBO's KL term of u is log q(u) - log p(u) = 0 exactly (uniform against uniform).
"""
from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import torch

from core.errors import DGMError

#: name of the dequantization-noise sample site in every story that uses it
NOISE_SITE = "u"
#: floor on log sigma of the decoder Gaussian: below a bin's width the density could only grow by
#: squeezing inside one bin, which the uniform noise already forbids; the floor keeps 1/sigma finite
MIN_LOG_SCALE = -9.0


def uniform_noise(x: torch.Tensor) -> dist.TorchDistribution:
    """U[0, 1)^(C, H, W) per image of ``x`` (N, C, H, W): prior and guide of the noise site."""
    return dist.Uniform(torch.zeros_like(x), torch.ones_like(x), validate_args=False).to_event(3)


def sample_noise(x: torch.Tensor) -> torch.Tensor:
    """Sample the site ``u`` ~ U[0, 1)^D inside the caller's data plate; returns u (N, C, H, W)."""
    return pyro.sample(NOISE_SITE, uniform_noise(x))


def dequantized_gaussian(loc: torch.Tensor, scale: torch.Tensor, levels: int) -> dist.TorchDistribution:
    """y = L v with v ~ N(loc, scale^2) per pixel on the unit scale: a density on the integer scale.

    A scaled Gaussian is the Gaussian of the scaled moments, so this is N(L loc, (L scale)^2) and

        log p(y) = sum_d [log N(y_d / L; loc_d, scale_d^2) - log L]   (nats), event shape (C, H, W)."""
    return dist.Normal(levels * loc, levels * scale, validate_args=False).to_event(3)


def quantize(y: torch.Tensor, levels: int) -> torch.Tensor:
    """Dequantized values on the integer scale -> the discrete levels: floor(y) clamped to 0..L-1."""
    return y.floor().clamp(0, levels - 1)


def check_sigma(sigma: float) -> None:
    """A fixed observation standard deviation (unit scale) must be positive and finite."""
    if not (isinstance(sigma, (int, float)) and math.isfinite(sigma) and sigma > 0):
        raise DGMError(f"the Gaussian observation's sigma must be a positive number, got {sigma!r}")
